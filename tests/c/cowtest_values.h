/* Values for the tests of stored data (test_segment.c, test_store.c):
 * builders of nested values of every kind and a deep comparison of a heap
 * value with one read back from pages.  Needs cowtest.h first. */
#ifndef COWSTORE_TEST_COWTEST_VALUES_H
#define COWSTORE_TEST_COWTEST_VALUES_H

#include <stdint.h>
#include <string.h>

#include <criterion/criterion.h>

#include "cowstore/errors.h"
#include "cowstore/map.h"
#include "cowstore/ref.h"
#include "cowstore/value.h"
#include "cowstore/vec.h"

/* ---- values to write ---------------------------------------------------------- */

/* A bigint of n bytes (n >= 9: never fits int64) built from x, minimal (V2). */
static inline cow_val
mk_bigint(uint64_t x, size_t n)
{
    uint8_t b[32];
    cow_val v;
    cr_assert(n >= 9 && n <= sizeof b);
    for (size_t i = 0; i < n; i++)
        b[i] = (uint8_t)(x >> (8 * (i % 8))) ^ (uint8_t)i;
    b[n - 1] = (uint8_t)(0x40 | (x & 0x0f));     /* positive, top byte needed */
    cr_assert_eq(cow_val_bigint(&v, b, n), COW_OK);
    return v;
}

/* Key of id: an int, a short str or a long (blob) str. */
static inline cow_val
mk_key(int64_t id)
{
    switch (id % 3) {
    case 0: return cow_val_int(id);
    case 1: return tu_str("k%lld", (long long)id);
    default: return tu_str("a long key, stored as a blob: %lld", (long long)id);
    }
}

static inline void
map_put(cow_map *m, cow_val key, cow_val val)
{
    cr_assert_eq(cow_map_set(m, key, tu_hash(&key), val), COW_OK);
}

static inline cow_vec *
new_vec(void)
{
    cow_vec *v = cow_vec_new();
    cr_assert_not_null(v);
    return v;
}

static inline cow_map *
new_map(void)
{
    cow_map *m = cow_map_new();
    cr_assert_not_null(m);
    return m;
}

/* A scalar or blob value for id (every kind that has no children). */
static inline cow_val
mk_leafval(int64_t id)
{
    char raw[40];
    switch (id % 9) {
    case 0: return cow_val_int(id * 7919);
    case 1: return cow_val_float((double)id / 3.0);
    case 2: return cow_val_bool(id & 1);
    case 3: return cow_val_none();
    case 4: return tu_str("s%lld", (long long)id);
    case 5: return tu_str("a string longer than fourteen bytes #%lld", (long long)id);
    case 6: memset(raw, (int)id, sizeof raw); return tu_bytes(raw, 3 + (size_t)id % 30);
    case 7: return mk_bigint((uint64_t)id * 0x9e3779b97f4a7c15ULL, 9 + (size_t)id % 12);
    default: return cow_val_int(INT64_MIN + id);
    }
}

/* A nested value: depth 0 gives a leaf value, deeper ones containers of
 * every kind, with children from mk_nested(depth - 1). */
static inline cow_val
mk_nested(int64_t id, int depth)
{
    static const cow_tag vec_tags[] = {COW_T_LIST, COW_T_TUPLE, COW_T_FLIST};
    static const cow_tag map_tags[] = {COW_T_DICT, COW_T_FDICT, COW_T_SET, COW_T_FSET};
    int64_t n = 1 + id % 12;
    if (depth == 0 || id % 5 == 4)
        return mk_leafval(id);
    if (id % 2) {
        cow_vec *v = new_vec();
        for (int64_t i = 0; i < n; i++)
            cr_assert_eq(cow_vb_push(&v->b, mk_nested(id * 13 + i, depth - 1)), COW_OK);
        return cow_val_vec(vec_tags[id % 3], v);
    }
    cow_tag tag = map_tags[(id / 2) % 4];
    cow_map *m = new_map();
    for (int64_t i = 0; i < n; i++)
        map_put(m, mk_key(id * 17 + i),
                cow_tag_is_set(tag) ? cow_val_none() : mk_nested(id * 13 + i, depth - 1));
    return cow_val_map(tag, m);
}

/* A dict of n entries with nested values; every seventh key deleted again
 * (holes in the log) but the last. */
static inline cow_val
mk_rich(int64_t n, int depth)
{
    cow_map *m = new_map();
    for (int64_t i = 0; i < n; i++)
        map_put(m, mk_key(i), mk_nested(i, depth));
    for (int64_t i = 3; i + 1 < n; i += 7) {
        cow_val k = mk_key(i);
        cr_assert_eq(cow_map_del(m, &k, tu_hash(&k), NULL), COW_FOUND);
        cow_val_release(&k);
    }
    return cow_val_map(COW_T_DICT, m);
}

/* ---- comparison ------------------------------------------------------------------ */

/* Deepest nesting expect_same follows (it recurses per level). */
#define TV_MAX_DEPTH 1024

/* a (heap) and b (read back) are the same value: same tags, same bytes,
 * same container identities, same entry order including holes. */
static inline void
expect_same(const cow_val *a, const cow_val *b, int depth)
{
    cr_assert_lt(depth, TV_MAX_DEPTH);
    cr_assert_eq(a->tag, b->tag, "tag %d read back as %d", a->tag, b->tag);
    if (cow_tag_is_vec(a->tag)) {
        const cow_vec *va = cow_val_getvec(a), *vb = cow_val_getvec(b);
        cow_vec_iter ia, ib;
        const cow_val *x;
        cr_assert_eq(vb->ident, va->ident, "vector identity not kept");
        cr_assert_eq(cow_vec_len(vb), cow_vec_len(va));
        cr_assert_eq(cow_vec_check(&vb->b), COW_OK, "VEC1..VEC5 on the stored vector");
        cow_vec_iter_init(&ia, &va->b, 0);
        cow_vec_iter_init(&ib, &vb->b, 0);
        while ((x = cow_vec_iter_next(&ia)) != NULL)
            expect_same(x, cow_vec_iter_next(&ib), depth + 1);
        cr_assert_null(cow_vec_iter_next(&ib));
    }
    else if (cow_tag_is_map(a->tag)) {
        const cow_map *ma = cow_val_getmap(a), *mb = cow_val_getmap(b);
        cr_assert_eq(mb->ident, ma->ident, "map identity not kept");
        cr_assert_eq(cow_map_len(mb), cow_map_len(ma));
        cr_assert_eq(cow_map_entries(mb), cow_map_entries(ma));
        cr_assert_eq(cow_map_check(mb), COW_OK, "H1..H5 on the stored map");
        for (size_t e = 0; e < cow_map_entries(ma); e++) {
            /* locals, not the ring (cowtest.h): the recursion reads more */
            cow_val ka = cow_map_entry_key(ma, e), kb = cow_map_entry_key(mb, e);
            cow_val va = cow_map_entry_val(ma, e), vb = cow_map_entry_val(mb, e), found;
            expect_same(&ka, &kb, depth + 1);
            if (ka.tag == COW_T_HOLE)
                continue;
            expect_same(&va, &vb, depth + 1);
            cr_assert_eq(cow_map_get(mb, &ka, tu_hash(&ka), &found), COW_FOUND,
                         "stored index lost a key");
            expect_same(&va, &found, depth + 1);
        }
    }
    else if (a->tag == COW_T_FLOAT) {
        cr_assert_eq(memcmp(&a->u.f, &b->u.f, sizeof a->u.f), 0);
    }
    else if (a->tag != COW_T_HOLE) {
        const char *pa, *pb;
        size_t na, nb;
        cr_assert(cow_val_equal(a, b), "value of tag %d differs", a->tag);
        if (cow_tag_has_word(a->tag)) {
            cow_val_span(a, &pa, &na);
            cow_val_span(b, &pb, &nb);
            cr_assert(na == nb && memcmp(pa, pb, na) == 0);
        }
    }
    if (depth == 0) {
        cr_assert(cow_val_equal(a, b), "cow_val_equal disagrees");
        cr_assert_eq(tu_read_error(), COW_OK, "reading the stored value recorded an error (S1, R2)");
    }
}

/* A new reference to the root's map, owned on the heap (path copy of the
 * stored header, identity kept). */
static inline cow_val
own_map(const cow_val *stored)
{
    cow_val d;
    cow_val_copy(&d, stored);
    cr_assert_eq(cow_map_own(&d.u.w), COW_OK);
    cr_assert_not(cow_word_stored(d.u.w));
    return d;
}

#endif
