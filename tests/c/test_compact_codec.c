/* The compact item codec (compact.h): every value kind round-trips byte for
 * byte (C1) at every width boundary, an int is written in its narrowest
 * width, a value of a word-holding kind is written raw, and hostile item
 * bytes -- unknown codes, short items -- are refused without reading past
 * the bytes given (C2; ASan checks the reads: each buffer is exactly as long
 * as the bytes it is given). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "cowstore/compact.h"

#include "cowtest.h"

/* v encodes to want_len bytes and decodes back to the same 16 bytes, from
 * a buffer of exactly that length. */
static void
round_trips(const cow_val *v, size_t want_len)
{
    uint8_t item[COW_CI_MAX];
    size_t len = cow_ci_encode(v, item);
    uint8_t *exact = malloc(len);
    cow_val back;
    cr_assert_eq(len, want_len, "tag %d: %zu bytes, want %zu", v->tag, len, want_len);
    memcpy(exact, item, len);
    cr_assert_eq(cow_ci_size(exact, len), len);
    cr_assert_eq(cow_ci_decode(exact, len, &back), len);
    cr_assert_eq(memcmp(&back, v, sizeof back), 0, "tag %d does not round-trip", v->tag);
    for (size_t short_by = 1; short_by <= len; short_by++)
        cr_assert_eq(cow_ci_decode(exact, len - short_by, &back), 0, "a short item is refused");
    free(exact);
}

Test(compact, ints_in_their_narrowest_width)
{
    for (unsigned w = 1; w <= 8; w++) {
        int64_t hi = w == 8 ? INT64_MAX : ((int64_t)1 << (8 * w - 1)) - 1;
        int64_t lo = w == 8 ? INT64_MIN : -((int64_t)1 << (8 * w - 1));
        cow_val edge[] = {cow_val_int(hi), cow_val_int(lo)};
        for (int k = 0; k < 2; k++)
            round_trips(&edge[k], 1 + w);
        if (w < 8) {                                    /* one past: one byte more */
            cow_val past[] = {cow_val_int(hi + 1), cow_val_int(lo - 1)};
            for (int k = 0; k < 2; k++)
                round_trips(&past[k], 2 + w);
        }
    }
    {
        cow_val zero = cow_val_int(0);
        round_trips(&zero, 2);
    }
}

Test(compact, scalars_and_inline_spans)
{
    cow_val fixed[] = {cow_val_none(), cow_val_hole(), cow_val_bool(0), cow_val_bool(1)};
    double floats[] = {0.0, -0.0, 1.5, -1e308, INFINITY, NAN};
    char text[COW_INLINE_MAX];
    for (int i = 0; i < 4; i++)
        round_trips(&fixed[i], 1);
    for (int i = 0; i < 6; i++) {
        cow_val f = cow_val_float(floats[i]);
        round_trips(&f, 9);
    }
    memset(text, 'x', sizeof text);
    for (size_t n = 0; n <= COW_INLINE_MAX; n++) {
        cow_val s, b;
        cr_assert_eq(cow_val_str(&s, text, n), COW_OK);
        cr_assert_eq(cow_val_bytes(&b, text, n), COW_OK);
        round_trips(&s, 1 + n);
        round_trips(&b, 1 + n);
    }
}

/* Values holding a word (a blob, a container) are written whole. */
Test(compact, words_are_written_raw)
{
    cow_val blob = tu_str("a string longer than fourteen bytes");
    cow_vec *vec = cow_vec_new();
    cow_val list = cow_val_vec(COW_T_LIST, vec);
    round_trips(&blob, COW_CI_MAX);
    round_trips(&list, COW_CI_MAX);
    cow_val_release(&blob);
    cow_val_release(&list);
}

/* C1 for any bytes: a value of a short-form kind whose other bytes are not
 * what the short form keeps (padding set, a bool of 2, an empty inline
 * leaf) is written raw, and every value decodes back byte for byte.  Half
 * the rounds start canonical and flip one byte, so both answers are met. */
Test(compact, any_bytes_round_trip_exactly)
{
    static const cow_tag tags[] = {COW_T_NONE, COW_T_HOLE, COW_T_BOOL, COW_T_INT, COW_T_FLOAT,
                                   COW_T_SSTR, COW_T_SBYTES, COW_T_SEXT};
    int raw = 0, short_form = 0;
    srand(20261205);
    for (int round = 0; round < 200000; round++) {
        uint8_t item[COW_CI_MAX], bytes[sizeof(cow_val)];
        cow_val v, back;
        size_t len;
        for (size_t i = 0; i < sizeof bytes; i++)
            bytes[i] = (uint8_t)rand();
        memcpy(&v, bytes, sizeof v);
        v.tag = tags[rand() % (int)(sizeof tags / sizeof tags[0])];
        v.slen = (uint8_t)(rand() % (COW_INLINE_MAX + 2));
        if (round % 2) {                /* canonical, then maybe one byte off */
            cow_val c = {0};
            c.tag = v.tag;
            c.slen = v.tag >= COW_T_SSTR ? v.slen % (COW_INLINE_MAX + 1) : 0;
            if (c.tag == COW_T_INT || c.tag == COW_T_FLOAT)
                c.u = v.u;
            else if (c.tag == COW_T_BOOL)
                c.u.i = v.u.i & 1;
            else
                memcpy((char *)&c + COW_INLINE_OFFSET, (char *)&v + COW_INLINE_OFFSET, c.slen);
            if (rand() % 4 == 0)
                ((uint8_t *)&c)[1 + rand() % (sizeof c - 1)] ^= (uint8_t)(1 + rand() % 255);
            v = c;
        }
        len = cow_ci_encode(&v, item);
        cr_assert_eq(cow_ci_decode(item, len, &back), len);
        cr_assert_eq(memcmp(&back, &v, sizeof v), 0, "round %d, tag %d: not exact", round, v.tag);
        if (len == COW_CI_MAX)
            raw++;
        else
            short_form++;
    }
    cr_assert(raw > 1000 && short_form > 1000, "both forms met: %d raw, %d short", raw, short_form);
}

/* Writing in a given length: an int widens to fill it; anything that cannot
 * fit it exactly is refused (the caller unpacks instead). */
Test(compact, encode_as_widens_ints_only)
{
    uint8_t item[COW_CI_MAX];
    cow_val minus = cow_val_int(-1), big = cow_val_int(INT64_C(1) << 40), back;
    cow_val none = cow_val_none();
    for (size_t len = 2; len <= 9; len++) {
        cr_assert_eq(cow_ci_encode_as(&minus, len, item), len);
        cr_assert_eq(cow_ci_decode(item, len, &back), len);
        cr_assert(back.tag == COW_T_INT && back.u.i == -1);
    }
    cr_assert_eq(cow_ci_encode_as(&big, 4, item), 0, "too narrow");
    cr_assert_eq(cow_ci_encode_as(&none, 2, item), 0, "no padding for other kinds");
    cr_assert_eq(cow_ci_encode_as(&minus, 1, item), 0);
}

/* Every int width's edges, written in every length they fit (their own and
 * each wider one): exactly len bytes written, the same int read back; a
 * byte that is not the int's (a stray aux) breaks C1, so it is refused. */
Test(compact, encode_as_writes_edge_ints_in_every_width)
{
    for (unsigned w = 1; w <= 8; w++) {
        int64_t hi = w == 8 ? INT64_MAX : ((int64_t)1 << (8 * w - 1)) - 1;
        int64_t lo = w == 8 ? INT64_MIN : -((int64_t)1 << (8 * w - 1));
        int64_t edges[] = {hi, lo};
        for (int k = 0; k < 2; k++)
            for (size_t len = 1; len <= 9; len++) {
                uint8_t item[COW_CI_MAX + 1];
                cow_val v = cow_val_int(edges[k]), back;
                memset(item, 0xa5, sizeof item);
                if (len < 1 + w) {
                    cr_assert_eq(cow_ci_encode_as(&v, len, item), 0, "%lld in %zu", (long long)edges[k], len);
                    continue;
                }
                cr_assert_eq(cow_ci_encode_as(&v, len, item), len);
                cr_assert_eq(item[len], 0xa5, "a byte past the item was written");
                cr_assert_eq(cow_ci_decode(item, len, &back), len);
                cr_assert(back.tag == COW_T_INT && back.u.i == edges[k], "%lld in %zu", (long long)edges[k], len);
            }
    }
    {
        uint8_t item[COW_CI_MAX];
        cow_val stray = cow_val_int(7);
        stray.aux = 1;
        cr_assert_eq(cow_ci_encode_as(&stray, 2, item), 0, "not exact: written raw, not in place");
    }
}

/* Every code byte, every available length up to an item's longest: sizes
 * and decodes never read past avail, and codes no item has are refused. */
Test(compact, hostile_items_are_refused_in_bounds)
{
    static const uint8_t unknown[] = {0x0e, 0x0f, 0x1f, 0x2f, 0x30, 0x3f, 0x40, 0x80, 0xff};
    for (unsigned code = 0; code < 256; code++)
        for (size_t avail = 0; avail <= COW_CI_MAX; avail++) {
            uint8_t *p = malloc(avail ? avail : 1);
            cow_val v;
            size_t n;
            memset(p, 0xa5, avail ? avail : 1);
            if (avail)
                p[0] = (uint8_t)code;
            n = cow_ci_size(p, avail);
            cr_assert_leq(n, avail);
            cr_assert_leq(cow_ci_decode(p, avail, &v), avail);
            free(p);
        }
    for (size_t i = 0; i < sizeof unknown; i++) {
        uint8_t p[COW_CI_MAX];
        cow_val v;
        memset(p, 0, sizeof p);
        p[0] = unknown[i];
        cr_assert_eq(cow_ci_decode(p, sizeof p, &v), 0, "code %#x", unknown[i]);
    }
}
