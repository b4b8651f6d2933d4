/* Criterion tests for csrc/core/parcel.c: invariants P1-P2 of
 * cowstore/parcel.h.
 *
 * What is proved:
 *  - round trips: a rich nested value, a blob, a scalar, a store-free
 *    parcel read back identical (expect_same) from a copy of its bytes;
 *  - P2: release(owner) runs exactly once, when the last value read from
 *    the parcel is released (at once for a root that names no node), and
 *    the env slot is free again;
 *  - hostile headers are refused with COW_ECORRUPT (magic, version, size,
 *    segment count, root tag, root word), a misaligned buffer COW_EINVAL,
 *    and nothing is kept or released;
 *  - hostile tables and segments: random byte flips anywhere in the parcel
 *    never crash a full walk (ASan), and are reported as COW_ECORRUPT. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "cowstore/errors.h"
#include "cowstore/map.h"
#include "cowstore/parcel.h"
#include "cowstore/ref.h"
#include "cowstore/value.h"
#include "cowstore/vec.h"

#include "cowtest.h"
#include "cowtest_values.h"

TestSuite(parcel, .fini = tu_leak_check);

/* Rounds of random flips (each on a fresh copy of the parcel). */
#define FLIP_ROUNDS 300
/* Entries a walk visits per container, nesting it follows, values in all. */
#define WALK_LIMIT 2000
#define WALK_MAX_DEPTH 32
#define WALK_BUDGET 200000

/* The owner handed to cow_parcel_open: counts its releases. */
typedef struct owner {
    char *buf;
    int released;
} owner;

static void
count_release(void *p)
{
    ((owner *)p)->released++;
}

/* v's parcel in a fresh malloc'd (16-byte aligned) buffer. */
static char *
build(const cow_val *v, size_t *len)
{
    cow_parcel_out out;
    char *buf;
    cr_assert_eq(cow_parcel_build(v, &out), COW_OK);
    *len = cow_parcel_size(&out);
    buf = malloc(*len);
    cr_assert_not_null(buf);
    cow_parcel_emit(&out, buf);
    cow_parcel_out_free(&out);
    return buf;
}

Test(parcel, round_trip_rich_value_and_release_once)
{
    cow_val v = mk_rich(300, 3), back, child;
    owner o = {0};
    size_t len;
    o.buf = build(&v, &len);
    cr_assert_eq(cow_parcel_open(o.buf, len, count_release, &o, &back), COW_OK);
    cr_assert_eq(cow_parcel_open_count(), 1);
    expect_same(&v, &back, 0);
    cr_assert_eq(tu_read_error(), COW_OK);
    /* a value read out of the parcel keeps it open after the root goes */
    cow_val_copy(&child, tu_entry_val(cow_val_getmap(&back), 0));
    cow_val_release(&back);
    cr_assert_eq(o.released, 0);
    cow_val_release(&child);
    cr_assert_eq(o.released, 1, "released once, when the last value went");
    cr_assert_eq(cow_parcel_open_count(), 0);
    free(o.buf);
    cow_val_release(&v);
}

Test(parcel, blob_and_scalar_roots)
{
    cow_val blob = tu_str("a string long enough to be a blob, not inline"), back;
    cow_val scalar = cow_val_int(42);
    owner o = {0};
    size_t len;
    o.buf = build(&blob, &len);
    cr_assert_eq(cow_parcel_open(o.buf, len, count_release, &o, &back), COW_OK);
    cr_assert(cow_val_equal(&blob, &back));
    cow_val_release(&back);
    cr_assert_eq(o.released, 1);
    free(o.buf);
    o.released = 0;
    o.buf = build(&scalar, &len);
    cr_assert_eq(cow_parcel_open(o.buf, len, count_release, &o, &back), COW_OK);
    cr_assert_eq(o.released, 1, "a root naming no node releases at once");
    cr_assert_eq(back.tag, COW_T_INT);
    cr_assert_eq(back.u.i, 42);
    free(o.buf);
    cow_val_release(&blob);
}

/* Opens a damaged header: refused with want, nothing kept or released. */
static void
expect_refused(char *buf, size_t len, int want)
{
    owner o = {buf, 0};
    cow_val back;
    cr_assert_eq(cow_parcel_open(buf, len, count_release, &o, &back), want);
    cr_assert_eq(o.released, 0);
    cr_assert_eq(cow_parcel_open_count(), 0);
}

Test(parcel, hostile_headers_are_refused)
{
    cow_val v = mk_rich(20, 2);
    cow_parcel_head head;
    size_t len;
    char *buf = build(&v, &len), *orig = malloc(len), *shifted = malloc(len + 8);
    cr_assert(orig && shifted);
    memcpy(orig, buf, len);
    expect_refused(buf, len - 8, COW_ECORRUPT);                 /* size != length */
    expect_refused(buf, 16, COW_ECORRUPT);                      /* shorter than a header */
    buf[0] ^= 1;                                                /* magic */
    expect_refused(buf, len, COW_ECORRUPT);
    memcpy(buf, orig, len);
    memcpy(&head, buf, sizeof head);
    head.version = COW_PARCEL_VERSION + 1;
    memcpy(buf, &head, sizeof head);
    expect_refused(buf, len, COW_ECORRUPT);
    memcpy(&head, orig, sizeof head);
    head.nsegs = UINT32_MAX;                                    /* table past the end */
    memcpy(buf, &head, sizeof head);
    expect_refused(buf, len, COW_ECORRUPT);
    memcpy(&head, orig, sizeof head);
    head.root.tag = COW_T_STR_VIEW;                             /* never stored */
    memcpy(buf, &head, sizeof head);
    expect_refused(buf, len, COW_ECORRUPT);
    memcpy(&head, orig, sizeof head);
    head.root.u.w = (cow_word)buf;                              /* a heap pointer */
    memcpy(buf, &head, sizeof head);
    expect_refused(buf, len, COW_ECORRUPT);
    memcpy(shifted + 4, orig, len);                             /* not 8-byte aligned */
    expect_refused(shifted + 4, len, COW_EINVAL);
    free(buf);
    free(orig);
    free(shifted);
    cow_val_release(&v);
}

static size_t walk_budget;

/* Reads everything reachable from v; never asserts on content. */
static void
walk(const cow_val *v, int depth)
{
    uint64_t h;
    if (depth >= WALK_MAX_DEPTH || walk_budget == 0)
        return;
    walk_budget--;
    (void)cow_val_hash(v, &h);
    if (cow_tag_is_vec(v->tag)) {
        const cow_vec *vec = cow_val_getvec(v);
        cow_vec_iter it;
        const cow_val *x;
        size_t i = 0;
        cow_vec_iter_init(&it, &vec->b, 0);
        while (i++ < WALK_LIMIT && (x = cow_vec_iter_next(&it)) != NULL)
            walk(x, depth + 1);
    }
    else if (cow_tag_is_map(v->tag)) {
        const cow_map *m = cow_val_getmap(v);
        size_t ne = cow_map_entries(m);
        for (size_t e = 0; e < ne && e < WALK_LIMIT; e++) {
            cow_val k = cow_map_entry_key(m, e), val = cow_map_entry_val(m, e), found;
            walk(&k, depth + 1);
            walk(&val, depth + 1);
            if (cow_val_hash(&k, &h) == COW_OK)
                (void)cow_map_get(m, &k, h, &found);
        }
    }
}

/* Flips in the table and the segments (past the header, which
 * hostile_headers covers): walks never fault, many are detected. */
Test(parcel, random_flips_never_crash)
{
    cow_val v = mk_rich(60, 3), back;
    uint64_t seed = 0x50415243ULL;
    size_t len, detected = 0;
    char *orig = build(&v, &len), *buf = malloc(len);
    cr_assert_not_null(buf);
    for (int r = 0; r < FLIP_ROUNDS; r++) {
        owner o = {buf, 0};
        int flips = 1 + (int)tu_below(&seed, 8);
        memcpy(buf, orig, len);
        for (int i = 0; i < flips; i++) {
            size_t at = sizeof(cow_parcel_head) + tu_below(&seed, len - sizeof(cow_parcel_head));
            buf[at] ^= (char)(1u << tu_below(&seed, 8));
        }
        if (cow_parcel_open(buf, len, count_release, &o, &back) < 0) {
            detected++;
            continue;
        }
        walk_budget = WALK_BUDGET;
        walk(&back, 0);
        (void)cow_val_equal(&v, &back);
        detected += tu_read_error() == COW_ECORRUPT;
        cow_val_release(&back);
        cr_assert_eq(o.released, 1);
    }
    cr_assert_gt(detected, FLIP_ROUNDS / 20, "only %zu of %d corruptions detected", detected,
                 FLIP_ROUNDS);
    cr_assert_eq(cow_parcel_open_count(), 0);
    free(buf);
    free(orig);
    cow_val_release(&v);
}
