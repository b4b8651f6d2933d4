/* Criterion tests for csrc/core/value.c: invariants V1..V6 of cowstore/value.h,
 * Python's numeric equality across bool/int/float/bigint, and the contract of
 * cow_val_order (equal values compare 0; a consistent total preorder). */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include <criterion/criterion.h>

#include "cowstore/hash.h"
#include "cowstore/map.h"
#include "cowstore/value.h"
#include "cowstore/vec.h"

#include "cowtest.h"

TestSuite(value, .fini = tu_leak_check);

/* Python: (2**63).to_bytes(9, 'little', signed=True). */
static const uint8_t TWO_POW_63_LE[9] = {0, 0, 0, 0, 0, 0, 0, 0x80, 0};
/* Python: (-2**64).to_bytes(9, 'little', signed=True). */
static const uint8_t MINUS_TWO_POW_64_LE[9] = {0, 0, 0, 0, 0, 0, 0, 0, 0xff};
/* Python: (2**63 + 2048).to_bytes(9, 'little', signed=True); 2**63 + 2048 is
 * the double right after 2**63. */
static const uint8_t TWO_POW_63_PLUS_2048_LE[9] = {0, 0x08, 0, 0, 0, 0, 0, 0x80, 0};
/* int(1e300) == 0x17e43c8800759c << 944: 118 zero bytes, then these 7. */
#define E300_ZEROS 118
static const uint8_t E300_TOP[7] = {0x9c, 0x75, 0x00, 0x88, 0x3c, 0xe4, 0x17};
/* The same for -int(1e300) (two's complement; the low zero bytes stay zero). */
static const uint8_t MINUS_E300_TOP[7] = {0x64, 0x8a, 0xff, 0x77, 0xc3, 0x1b, 0xe8};

static cow_val
bigint(const uint8_t *le, size_t len)
{
    cow_val v;
    cr_assert_eq(cow_val_bigint(&v, le, len), COW_OK);
    return v;
}

static cow_val
bigint_e300(const uint8_t top[7])
{
    uint8_t buf[E300_ZEROS + 7] = {0};
    memcpy(buf + E300_ZEROS, top, 7);
    return bigint(buf, sizeof buf);
}

/* A tuple, flist or list of the given values (steals them). */
static cow_val
seq_of(cow_tag tag, size_t n, const cow_val *vals)
{
    cow_vec *vec = cow_vec_new();
    cr_assert_not_null(vec);
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(cow_vb_push(&vec->b, vals[i]), COW_OK);
    return cow_val_vec(tag, vec);
}

static int
sign(int x)
{
    return (x > 0) - (x < 0);
}

/* Asserts a == b both ways, order 0 and equal hashes (V3); steals a and b. */
static void
assert_same_number(cow_val a, cow_val b, const char *what)
{
    cr_assert(cow_val_equal(&a, &b), "%s: a != b", what);
    cr_assert(cow_val_equal(&b, &a), "%s: b != a", what);
    cr_assert_eq(cow_val_order(&a, &b), 0, "%s: order(a, b) != 0", what);
    cr_assert_eq(cow_val_order(&b, &a), 0, "%s: order(b, a) != 0", what);
    cr_assert_eq(tu_hash(&a), tu_hash(&b), "%s: equal numbers hash apart", what);
    cow_val_release(&a);
    cow_val_release(&b);
}

/* Asserts a != b both ways and a nonzero order; steals a and b. */
static void
assert_different(cow_val a, cow_val b, const char *what)
{
    cr_assert_not(cow_val_equal(&a, &b), "%s: a == b", what);
    cr_assert_not(cow_val_equal(&b, &a), "%s: b == a", what);
    cr_assert_neq(cow_val_order(&a, &b), 0, "%s: order(a, b) == 0", what);
    cow_val_release(&a);
    cow_val_release(&b);
}

/* ---- V1: inline versus blob strings ------------------------------------- */

Test(value, inline_boundary_str_and_bytes)
{
    const char *text = "0123456789abcdefghij";
    for (size_t len = 0; len <= 20; len++) {
        cow_val s, b;
        const char *p;
        size_t n;
        cr_assert_eq(cow_val_str(&s, text, len), COW_OK);
        cr_assert_eq(cow_val_bytes(&b, text, len), COW_OK);
        if (len <= COW_INLINE_MAX) {
            cr_assert_eq(s.tag, COW_T_SSTR, "str of %zu bytes must be inline", len);
            cr_assert_eq(b.tag, COW_T_SBYTES, "bytes of %zu bytes must be inline", len);
            cr_assert_eq(s.slen, len);
        }
        else {
            cr_assert_eq(s.tag, COW_T_STR, "str of %zu bytes must be a blob", len);
            cr_assert_eq(b.tag, COW_T_BYTES, "bytes of %zu bytes must be a blob", len);
            cr_assert_eq(cow_val_getblob(&s)->refcnt, 1);
            cr_assert_eq(cow_blob_len(cow_val_getblob(&s)), len);
        }
        cow_val_span(&s, &p, &n);
        cr_assert_eq(n, len);
        cr_assert(len == 0 || memcmp(p, text, len) == 0, "str span of %zu bytes", len);
        cow_val_span(&b, &p, &n);
        cr_assert_eq(n, len);
        cr_assert(len == 0 || memcmp(p, text, len) == 0, "bytes span of %zu bytes", len);
        cow_val_release(&s);
        cow_val_release(&b);
    }
}

Test(value, inline_boundary_is_exactly_14)
{
    cow_val a = tu_str("%s", "abcdefghijklmn"), b = tu_str("%s", "abcdefghijklmno");
    cr_assert_eq(COW_INLINE_MAX, 14);
    cr_assert_eq(a.tag, COW_T_SSTR);
    cr_assert_eq(b.tag, COW_T_STR);
    /* The last inline byte must not spill past the 16-byte value. */
    cr_assert_eq(((const char *)&a)[COW_INLINE_OFFSET + 13], 'n');
    cow_val_release(&a);
    cow_val_release(&b);
}

Test(value, views_equal_and_hash_like_owned)
{
    const char *texts[] = {"", "x", "abcdefghijklmn", "abcdefghijklmno",
                           "a considerably longer string for a blob"};
    for (size_t i = 0; i < sizeof texts / sizeof *texts; i++) {
        size_t len = strlen(texts[i]);
        cow_val s = tu_str("%s", texts[i]), sv = cow_val_str_view(texts[i], len);
        cow_val b = tu_bytes(texts[i], len), bv = cow_val_bytes_view(texts[i], len);
        cr_assert(cow_val_equal(&s, &sv), "str vs view '%s'", texts[i]);
        cr_assert(cow_val_equal(&b, &bv), "bytes vs view '%s'", texts[i]);
        cr_assert_eq(cow_val_order(&s, &sv), 0);
        cr_assert_eq(tu_hash(&s), tu_hash(&sv), "str hash vs view '%s'", texts[i]);
        cr_assert_eq(tu_hash(&b), tu_hash(&bv), "bytes hash vs view '%s'", texts[i]);
        /* A blob caches its hash: asking again must give the same answer. */
        cr_assert_eq(tu_hash(&s), tu_hash(&sv));
        cr_assert_eq(tu_hash(&s), cow_hash_bytes(texts[i], len, COW_SEED_STR));
        cr_assert_eq(tu_hash(&b), cow_hash_bytes(texts[i], len, COW_SEED_BYTES));
        cow_val_release(&s);
        cow_val_release(&b);
        cow_val_release(&sv);       /* views own nothing: release is a no-op */
        cr_assert_eq(sv.tag, COW_T_NONE);
    }
}

/* ---- V5: reference counting --------------------------------------------- */

Test(value, retain_release_balance_blob)
{
    cow_val s = tu_str("%s", "a string well past fourteen bytes"), copy;
    cow_blob *blob = cow_val_getblob(&s);
    cr_assert_eq(blob->refcnt, 1);
    copy = s;
    cow_val_retain(&copy);
    cr_assert_eq(blob->refcnt, 2);
    cow_val_retain(&copy);
    cr_assert_eq(blob->refcnt, 3);
    cow_val_release(&copy);
    cr_assert_eq(copy.tag, COW_T_NONE, "release must leave NONE");
    cr_assert_eq(blob->refcnt, 2);
    copy = s;
    cow_val_release(&copy);
    cr_assert_eq(blob->refcnt, 1);
    cr_assert(cow_val_equal(&s, &s));
    cow_val_release(&s);            /* frees: LeakSanitizer checks the balance */
    cow_val_release(&s);            /* releasing NONE again is harmless */
}

Test(value, retain_release_balance_containers)
{
    long vnodes = cow_vec_live_nodes(), hnodes = cow_map_live_nodes();
    cow_val items[40], t, m, alias;
    cow_map *map = cow_map_new();
    for (int i = 0; i < 40; i++)
        items[i] = tu_str("element number %d of the tuple", i);
    t = seq_of(COW_T_TUPLE, 40, items);
    cr_assert_eq(cow_val_getvec(&t)->refcnt, 1);
    for (int i = 0; i < 20; i++) {
        cow_val k = cow_val_int(i);
        cr_assert_eq(cow_map_set(map, k, tu_hash(&k), cow_val_int(-i)), COW_OK);
    }
    m = cow_val_map(COW_T_FDICT, map);
    cr_assert_gt(cow_vec_live_nodes(), vnodes);
    cr_assert_gt(cow_map_live_nodes(), hnodes);

    alias = t;
    cow_val_retain(&alias);
    cr_assert_eq(cow_val_getvec(&t)->refcnt, 2);
    cow_val_release(&alias);
    cr_assert_eq(cow_val_getvec(&t)->refcnt, 1);
    alias = m;
    cow_val_retain(&alias);
    cr_assert_eq(map->refcnt, 2);
    cow_val_release(&alias);
    cr_assert_eq(map->refcnt, 1);

    cow_val_release(&t);
    cow_val_release(&m);
    cr_assert_eq(cow_vec_live_nodes(), vnodes);
    cr_assert_eq(cow_map_live_nodes(), hnodes);
}

/* A map holding a list holding a map ... nested far deeper than the C
 * stack could recurse (one frame chain per level): releasing the outermost
 * frees every level, deferred past a bound (value.c, "releasing deep
 * nesting"), with no node left behind; and a copy of the middle, held
 * meanwhile, keeps its half alive until released itself. */
Test(value, releasing_deep_nesting_frees_every_level_without_recursing)
{
    enum { LEVELS = 200000 };
    long vnodes = cow_vec_live_nodes(), hnodes = cow_map_live_nodes();
    cow_val v = cow_val_int(0), middle = cow_val_none();
    for (int i = 0; i < LEVELS; i++) {
        if (i % 2) {
            cow_map *map = cow_map_new();
            cow_val k = cow_val_int(i);
            cr_assert_not_null(map);
            cr_assert_eq(cow_map_set(map, k, tu_hash(&k), v), COW_OK);
            v = cow_val_map(COW_T_DICT, map);
        }
        else
            v = seq_of(COW_T_LIST, 1, &v);
        if (i == LEVELS / 2)
            cow_val_copy(&middle, &v);
    }
    cow_val_release(&v);
    cr_assert_gt(cow_vec_live_nodes(), vnodes, "the held middle keeps its levels");
    cow_val_release(&middle);
    cr_assert_eq(cow_vec_live_nodes(), vnodes);
    cr_assert_eq(cow_map_live_nodes(), hnodes);
}

/* ---- V2, V3: numbers ---------------------------------------------------- */

Test(value, one_equals_one_point_zero_equals_true)
{
    assert_same_number(cow_val_int(1), cow_val_float(1.0), "1 == 1.0");
    assert_same_number(cow_val_int(1), cow_val_bool(1), "1 == True");
    assert_same_number(cow_val_float(1.0), cow_val_bool(1), "1.0 == True");
    assert_same_number(cow_val_int(0), cow_val_bool(0), "0 == False");
    assert_same_number(cow_val_int(-7), cow_val_float(-7.0), "-7 == -7.0");
    assert_same_number(cow_val_int(1LL << 53), cow_val_float(9007199254740992.0), "2**53");
    assert_same_number(cow_val_int(INT64_MIN), cow_val_float(-9223372036854775808.0),
                       "-2**63 is an int64");
    assert_different(cow_val_int(2), cow_val_bool(1), "2 != True");
    assert_different(cow_val_int(INT64_MAX), cow_val_float(9223372036854775808.0),
                     "2**63 - 1 != 2.0**63");
}

Test(value, negative_zero_and_fractions)
{
    assert_same_number(cow_val_float(-0.0), cow_val_int(0), "-0.0 == 0");
    assert_same_number(cow_val_float(-0.0), cow_val_float(0.0), "-0.0 == 0.0");
    assert_same_number(cow_val_float(-0.0), cow_val_bool(0), "-0.0 == False");
    assert_same_number(cow_val_float(0.5), cow_val_float(0.5), "0.5 == 0.5");
    assert_different(cow_val_float(0.5), cow_val_int(0), "0.5 != 0");
    assert_different(cow_val_float(0.5), cow_val_int(1), "0.5 != 1");
    assert_different(cow_val_float(0.5), cow_val_float(-0.5), "0.5 != -0.5");
    assert_different(cow_val_float(1.5), cow_val_float(2.5), "1.5 != 2.5");
    assert_different(cow_val_float(INFINITY), cow_val_float(-INFINITY), "inf != -inf");
    cow_val i0 = cow_val_int(0), half = cow_val_float(0.5);
    cr_assert_neq(tu_hash(&i0), tu_hash(&half), "0 and 0.5 should not share a hash");
}

Test(value, nan_never_equal_but_orders_consistently)
{
    cow_val a = cow_val_float(NAN), b = cow_val_float(NAN), neg = cow_val_float(-NAN);
    cow_val one = cow_val_float(1.5);
    cr_assert_not(cow_val_equal(&a, &b));
    cr_assert_not(cow_val_equal(&a, &a));
    cr_assert_eq(tu_hash(&a), tu_hash(&b), "hashing NaN is deterministic");
    /* A collision bucket sorts NaN keys like any other (H4): the order must
     * be antisymmetric even though NaN never equals itself. */
    cr_assert_eq(sign(cow_val_order(&a, &b)), -sign(cow_val_order(&b, &a)),
                 "order(nan, nan) is not antisymmetric");
    cr_assert_eq(sign(cow_val_order(&a, &neg)), -sign(cow_val_order(&neg, &a)));
    cr_assert_neq(cow_val_order(&a, &neg), 0, "NaNs of other bits are apart");
    cr_assert_eq(sign(cow_val_order(&a, &one)), -sign(cow_val_order(&one, &a)));
    cr_assert_neq(cow_val_order(&a, &one), 0);
}

Test(value, bigint_equals_integral_float)
{
    assert_same_number(bigint(TWO_POW_63_LE, 9), cow_val_float(9223372036854775808.0),
                       "2**63 == 2.0**63");
    assert_same_number(bigint(MINUS_TWO_POW_64_LE, 9),
                       cow_val_float(-18446744073709551616.0), "-2**64 == -2.0**64");
    assert_same_number(bigint(TWO_POW_63_PLUS_2048_LE, 9),
                       cow_val_float(9223372036854777856.0), "2**63+2048");
    assert_same_number(bigint_e300(E300_TOP), cow_val_float(1e300), "int(1e300) == 1e300");
    assert_same_number(bigint_e300(MINUS_E300_TOP), cow_val_float(-1e300),
                       "-int(1e300) == -1e300");
    assert_different(bigint(TWO_POW_63_LE, 9), cow_val_float(9223372036854777856.0),
                     "2**63 != 2.0**63 + 2048");
    assert_different(bigint(TWO_POW_63_LE, 9), bigint(MINUS_TWO_POW_64_LE, 9),
                     "2**63 != -2**64");
    assert_different(bigint(TWO_POW_63_LE, 9), cow_val_int(INT64_MAX), "2**63 != 2**63-1");
    assert_different(bigint_e300(E300_TOP), cow_val_float(INFINITY), "int(1e300) != inf");
}

Test(value, hashes_are_pinned)
{
    /* Hashes are persisted with maps: like cow_hash_bytes (test_hash.c) they
     * must never change.  Computed once, cross-checked in Python. */
    cow_val s = tu_str("abc"), b = tu_bytes("abc", 3), big = bigint(TWO_POW_63_LE, 9);
    cow_val items[] = {cow_val_int(1), tu_str("abc")};
    cow_val t = seq_of(COW_T_TUPLE, 2, items), empty = seq_of(COW_T_TUPLE, 0, NULL);
    const struct { cow_val v; uint64_t want; } cases[] = {
        {cow_val_none(), 0x5f356495b0a4d9e3ULL},
        {cow_val_int(1), 0x5692161d100b05e5ULL},
        {cow_val_bool(1), 0x5692161d100b05e5ULL},
        {cow_val_int(-1), 0xb4d055fcf2cbbd7bULL},
        {cow_val_float(0.5), 0x00c23b9a765f4e87ULL},
        {cow_val_float(9223372036854775808.0), 0xf749d9955a405c60ULL},
        {big, 0xf749d9955a405c60ULL},
        {s, 0x92bf852f96ff253eULL},
        {b, 0x45ef68b0382ba824ULL},
        {t, 0x3da7d29c02aff814ULL},
        {empty, 0x45ece41f5438ef39ULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        uint64_t got = tu_hash(&cases[i].v);
        cr_assert_eq(got, cases[i].want, "pinned value hash %zu: got 0x%016llx", i,
                     (unsigned long long)got);
    }
    cow_val *owned[] = {&s, &b, &big, &t, &empty};
    for (size_t i = 0; i < sizeof owned / sizeof *owned; i++)
        cow_val_release(owned[i]);
}

Test(value, bigint_minimal_len)
{
    static const struct { uint8_t le[4]; size_t len, want; } cases[] = {
        {{0x00}, 1, 1},                     /* 0 */
        {{0x00, 0x00, 0x00}, 3, 1},         /* 0 with padding */
        {{0x7f, 0x00}, 2, 1},               /* 127 */
        {{0x80, 0x00}, 2, 2},               /* 128 needs the sign byte */
        {{0x80, 0x00, 0x00, 0x00}, 4, 2},   /* 128 padded */
        {{0xff, 0xff}, 2, 1},               /* -1 */
        {{0xff, 0xff, 0xff, 0xff}, 4, 1},   /* -1 padded */
        {{0x80, 0xff}, 2, 1},               /* -128 */
        {{0x7f, 0xff}, 2, 2},               /* -129 */
        {{0x00, 0x80, 0xff, 0xff}, 4, 2},   /* -32768 */
        {{0x00, 0x80, 0x00, 0x00}, 4, 3},   /* 32768 */
        {{0x01, 0x02, 0x03, 0x04}, 4, 4},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        cr_assert_eq(cow_bigint_minimal_len(cases[i].le, cases[i].len), cases[i].want,
                     "case %zu", i);
    cr_assert_eq(cow_bigint_minimal_len(TWO_POW_63_LE, 9), 9);
    cr_assert_eq(cow_bigint_minimal_len(MINUS_TWO_POW_64_LE, 9), 9);
    cr_assert_eq(cow_bigint_minimal_len(NULL, 0), 0);
}

/* ---- str, bytes and containers ------------------------------------------ */

Test(value, str_is_not_bytes)
{
    const char *texts[] = {"", "abc", "fifteen bytes!!", "a blob-sized string of text"};
    for (size_t i = 0; i < sizeof texts / sizeof *texts; i++) {
        size_t len = strlen(texts[i]);
        cow_val s = tu_str("%s", texts[i]), b = tu_bytes(texts[i], len);
        cow_val sv = cow_val_str_view(texts[i], len), bv = cow_val_bytes_view(texts[i], len);
        cr_assert_not(cow_val_equal(&s, &b), "str == bytes for '%s'", texts[i]);
        cr_assert_not(cow_val_equal(&sv, &bv), "str view == bytes view for '%s'", texts[i]);
        cr_assert_not(cow_val_equal(&s, &bv));
        cr_assert_neq(cow_val_order(&s, &b), 0);
        cr_assert_neq(tu_hash(&s), tu_hash(&b), "str and bytes '%s' share a hash", texts[i]);
        cow_val_release(&s);
        cow_val_release(&b);
    }
}

Test(value, tuple_equality_and_hash)
{
    long vnodes = cow_vec_live_nodes();
    cow_val a_items[] = {cow_val_int(1), tu_str("x"), cow_val_float(2.0),
                         tu_str("a string long enough for a blob")};
    cow_val b_items[] = {cow_val_float(1.0), cow_val_str_view("x", 1), cow_val_int(2),
                         tu_str("a string long enough for a blob")};
    cow_val c_items[] = {cow_val_int(2), tu_str("x"), cow_val_float(1.0),
                         tu_str("a string long enough for a blob")};
    cow_val a = seq_of(COW_T_TUPLE, 4, a_items), b = seq_of(COW_T_TUPLE, 4, b_items);
    cow_val c = seq_of(COW_T_TUPLE, 4, c_items);
    cow_val fl_items[] = {cow_val_int(1), tu_str("x"), cow_val_float(2.0),
                          tu_str("a string long enough for a blob")};
    cow_val fl = seq_of(COW_T_FLIST, 4, fl_items);
    cow_val empty = seq_of(COW_T_TUPLE, 0, NULL), empty2 = seq_of(COW_T_TUPLE, 0, NULL);
    cow_val short_items[] = {cow_val_int(1)};
    cow_val shorter = seq_of(COW_T_TUPLE, 1, short_items);

    cr_assert(cow_val_equal(&a, &b), "(1, 'x', 2.0, s) == (1.0, 'x', 2, s)");
    cr_assert_eq(cow_val_order(&a, &b), 0);
    cr_assert_eq(tu_hash(&a), tu_hash(&b));
    cr_assert_not(cow_val_equal(&a, &c), "element order matters");
    cr_assert_neq(tu_hash(&a), tu_hash(&c));
    cr_assert_not(cow_val_equal(&a, &fl), "a tuple is not a (frozen) list");
    cr_assert_neq(tu_hash(&a), tu_hash(&fl));
    cr_assert(cow_val_equal(&empty, &empty2));
    cr_assert_eq(tu_hash(&empty), tu_hash(&empty2));
    cr_assert_not(cow_val_equal(&a, &shorter));
    cr_assert_not(cow_val_equal(&empty, &shorter));

    cow_val *all[] = {&a, &b, &c, &fl, &empty, &empty2, &shorter};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        cow_val_release(all[i]);
    cr_assert_eq(cow_vec_live_nodes(), vnodes);
}

Test(value, nested_tuple_hash)
{
    cow_val inner1[] = {cow_val_int(3), cow_val_bool(1)};
    cow_val inner2[] = {cow_val_float(3.0), cow_val_int(1)};
    cow_val outer1[] = {seq_of(COW_T_TUPLE, 2, inner1), cow_val_none()};
    cow_val outer2[] = {seq_of(COW_T_TUPLE, 2, inner2), cow_val_none()};
    cow_val a = seq_of(COW_T_TUPLE, 2, outer1), b = seq_of(COW_T_TUPLE, 2, outer2);
    cr_assert(cow_val_equal(&a, &b));
    cr_assert_eq(tu_hash(&a), tu_hash(&b));
    cow_val_release(&a);
    cow_val_release(&b);
}

Test(value, mutable_containers_unhashable)
{
    cow_val items[] = {cow_val_int(1)};
    cow_val list = seq_of(COW_T_LIST, 1, items);
    cow_val dict = cow_val_map(COW_T_DICT, cow_map_new());
    cow_val set = cow_val_map(COW_T_SET, cow_map_new());
    cow_val fset = cow_val_map(COW_T_FSET, cow_map_new());
    uint64_t h;
    cr_assert_eq(cow_val_hash(&list, &h), COW_ETYPE);
    cr_assert_eq(cow_val_hash(&dict, &h), COW_ETYPE);
    cr_assert_eq(cow_val_hash(&set, &h), COW_ETYPE);
    cr_assert_eq(cow_val_hash(&fset, &h), COW_OK);
    cr_assert(cow_val_equal(&set, &fset), "set() == frozenset()");
    cr_assert_not(cow_val_equal(&dict, &set), "{} != set()");
    cow_val_release(&list);
    cow_val_release(&dict);
    cow_val_release(&set);
    cow_val_release(&fset);
}

/* ---- cow_val_order: consistent with equality ----------------------------- */

#define NVALS 40

static size_t
order_corpus(cow_val *v)
{
    static const char s14[] = "abcdefghijklmn", s15[] = "abcdefghijklmno";
    size_t n = 0;
    v[n++] = cow_val_none();
    v[n++] = cow_val_bool(0);
    v[n++] = cow_val_bool(1);
    v[n++] = cow_val_int(0);
    v[n++] = cow_val_int(1);
    v[n++] = cow_val_int(-1);
    v[n++] = cow_val_int(INT64_MAX);
    v[n++] = cow_val_int(INT64_MIN);
    v[n++] = cow_val_float(-0.0);
    v[n++] = cow_val_float(0.5);
    v[n++] = cow_val_float(1.0);
    v[n++] = cow_val_float(-2.5);
    v[n++] = cow_val_float(9223372036854775808.0);
    v[n++] = cow_val_float(-18446744073709551616.0);
    v[n++] = cow_val_float(1e300);
    v[n++] = cow_val_float(INFINITY);
    v[n++] = cow_val_float(-INFINITY);
    v[n++] = bigint(TWO_POW_63_LE, 9);
    v[n++] = bigint(MINUS_TWO_POW_64_LE, 9);
    v[n++] = bigint_e300(E300_TOP);
    v[n++] = bigint_e300(MINUS_E300_TOP);
    v[n++] = tu_str("");
    v[n++] = tu_str("abc");
    v[n++] = cow_val_str_view("abc", 3);
    v[n++] = tu_str("abd");
    v[n++] = tu_str("%s", s14);
    v[n++] = tu_str("%s", s15);
    v[n++] = cow_val_str_view(s15, 15);
    v[n++] = tu_bytes("abc", 3);
    v[n++] = tu_bytes(s15, 15);
    v[n++] = cow_val_bytes_view(s15, 15);
    v[n++] = tu_bytes("", 0);
    {
        cow_val t1[] = {cow_val_int(1), tu_str("abc")};
        cow_val t2[] = {cow_val_float(1.0), cow_val_str_view("abc", 3)};
        cow_val t3[] = {cow_val_int(2)};
        cow_val t4[] = {cow_val_int(1), tu_str("abc")};
        v[n++] = seq_of(COW_T_TUPLE, 2, t1);
        v[n++] = seq_of(COW_T_TUPLE, 2, t2);
        v[n++] = seq_of(COW_T_TUPLE, 1, t3);
        v[n++] = seq_of(COW_T_TUPLE, 0, NULL);
        v[n++] = seq_of(COW_T_FLIST, 2, t4);
    }
    cr_assert_leq(n, NVALS);
    return n;
}

Test(value, order_consistent_with_equality)
{
    cow_val v[NVALS];
    size_t n = order_corpus(v);
    for (size_t i = 0; i < n; i++) {
        cr_assert(cow_val_equal(&v[i], &v[i]), "value %zu not equal to itself", i);
        for (size_t j = 0; j < n; j++) {
            int eq = cow_val_equal(&v[i], &v[j]);
            int ord = cow_val_order(&v[i], &v[j]);
            cr_assert_eq(eq, cow_val_equal(&v[j], &v[i]), "equality not symmetric %zu %zu", i, j);
            cr_assert_eq(eq, ord == 0, "values %zu, %zu: equal %d but order %d", i, j, eq, ord);
            cr_assert_eq(sign(ord), -sign(cow_val_order(&v[j], &v[i])),
                         "order not antisymmetric for %zu, %zu", i, j);
            if (eq)
                cr_assert_eq(tu_hash(&v[i]), tu_hash(&v[j]), "equal %zu, %zu hash apart", i, j);
        }
    }
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < n; j++)
            for (size_t k = 0; k < n; k++)
                if (cow_val_order(&v[i], &v[j]) <= 0 && cow_val_order(&v[j], &v[k]) <= 0)
                    cr_assert_leq(cow_val_order(&v[i], &v[k]), 0,
                                  "order not transitive: %zu <= %zu <= %zu", i, j, k);
    for (size_t i = 0; i < n; i++)
        cow_val_release(&v[i]);
}

Test(value, maps_order_zero_but_compare_by_content)
{
    cow_map *a = cow_map_new(), *b = cow_map_new();
    cow_val k = cow_val_int(1);
    cr_assert_eq(cow_map_set(a, k, tu_hash(&k), cow_val_int(10)), COW_OK);
    k = cow_val_int(2);
    cr_assert_eq(cow_map_set(b, k, tu_hash(&k), cow_val_int(10)), COW_OK);
    cow_val va = cow_val_map(COW_T_FDICT, a), vb = cow_val_map(COW_T_FDICT, b);
    /* H4 relies on this: unequal maps share an order class. */
    cr_assert_eq(cow_val_order(&va, &vb), 0);
    cr_assert_not(cow_val_equal(&va, &vb));
    cow_val_release(&va);
    cow_val_release(&vb);
}

/* ---- contents of frozen containers ---------------------------------------- */

/* A one-entry map {key: val} wrapped as tag (steals val). */
static cow_val
map1(cow_tag tag, int64_t key, cow_val val)
{
    cow_map *m = cow_map_new();
    cow_val k = cow_val_int(key);
    cr_assert_not_null(m);
    cr_assert_eq(cow_map_set(m, k, tu_hash(&k), val), COW_OK);
    return cow_val_map(tag, m);
}

/* cow_val_hash_content of a value that must have one. */
static uint64_t
content_hash(const cow_val *v)
{
    uint64_t h = 0;
    cr_assert_eq(cow_val_hash_content(v, &h), COW_OK, "tag %d has no content hash", v->tag);
    return h;
}

Test(value, hash_content_reads_mutables_as_frozen)
{
    cow_val li[] = {cow_val_int(1), tu_str("a str long enough for a blob")};
    cow_val fi[] = {cow_val_float(1.0), tu_str("a str long enough for a blob")};
    cow_val list = seq_of(COW_T_LIST, 2, li), flist = seq_of(COW_T_FLIST, 2, fi);
    cow_val dict = map1(COW_T_DICT, 1, cow_val_int(2)), fdict = map1(COW_T_FDICT, 1, cow_val_int(2));
    cow_val set = map1(COW_T_SET, 1, cow_val_none()), fset = map1(COW_T_FSET, 1, cow_val_none());
    uint64_t h;
    /* Mutable containers: no hash of their own, their frozen twin's as content. */
    cr_assert_eq(cow_val_hash(&list, &h), COW_ETYPE);
    cr_assert_eq(content_hash(&list), tu_hash(&flist));
    cr_assert_eq(cow_val_hash(&dict, &h), COW_ETYPE);
    cr_assert_eq(content_hash(&dict), tu_hash(&fdict));
    cr_assert_eq(cow_val_hash(&set, &h), COW_ETYPE);
    cr_assert_eq(content_hash(&set), tu_hash(&fset));
    /* Everything else: the content hash is the hash. */
    cow_val scalars[] = {cow_val_none(), cow_val_int(-3), cow_val_float(0.25), flist, fset};
    for (size_t i = 0; i < sizeof scalars / sizeof *scalars; i++)
        cr_assert_eq(content_hash(&scalars[i]), tu_hash(&scalars[i]), "value %zu", i);
    cow_val_release(&list);
    cow_val_release(&flist);
    cow_val_release(&dict);
    cow_val_release(&fdict);
    cow_val_release(&set);
    cow_val_release(&fset);
}

Test(value, frozen_containers_hash_nested_mutables_by_content)
{
    /* A tuple is hashable only if its items are, as in Python; a frozen list
     * or frozen dict reads its nested containers back frozen, so they hash
     * by content there, equal to the same value built frozen. */
    cow_val a1[] = {cow_val_int(5)}, a2[] = {cow_val_int(5)};
    cow_val inner_list = seq_of(COW_T_LIST, 1, a1), inner_flist = seq_of(COW_T_FLIST, 1, a2);
    cow_val t_items[] = {inner_list};
    cow_val tuple = seq_of(COW_T_TUPLE, 1, t_items);
    uint64_t h;
    cr_assert_eq(cow_val_hash(&tuple, &h), COW_ETYPE, "(list,) is unhashable");
    cr_assert_eq(cow_val_hash_content(&tuple, &h), COW_OK);

    cow_val b1[] = {cow_val_int(5)}, b2[] = {cow_val_float(5.0)};
    cow_val fl_of_list_items[] = {seq_of(COW_T_LIST, 1, b1)};
    cow_val fl_of_flist_items[] = {seq_of(COW_T_FLIST, 1, b2)};
    cow_val fl_of_list = seq_of(COW_T_FLIST, 1, fl_of_list_items);
    cow_val fl_of_flist = seq_of(COW_T_FLIST, 1, fl_of_flist_items);
    cr_assert(cow_val_equal(&fl_of_list, &fl_of_flist));
    cr_assert_eq(tu_hash(&fl_of_list), tu_hash(&fl_of_flist));

    cow_val fd_list = map1(COW_T_FDICT, 7, inner_flist);
    cow_val c1[] = {cow_val_int(5)};
    cow_val fd_mut = map1(COW_T_FDICT, 7, seq_of(COW_T_LIST, 1, c1));
    cr_assert(cow_val_equal(&fd_list, &fd_mut));
    cr_assert_eq(tu_hash(&fd_list), tu_hash(&fd_mut), "{7: [5]} frozen hashes as {7: (5,) frozen}");

    cow_val_release(&tuple);
    cow_val_release(&fl_of_list);
    cow_val_release(&fl_of_flist);
    cow_val_release(&fd_list);
    cow_val_release(&fd_mut);
}

Test(value, identities_are_fresh)
{
    uint32_t a = cow_next_ident(), b = cow_next_ident();
    cow_vec *v = cow_vec_new();
    cow_map *m = cow_map_new();
    cr_assert_neq(a, b);
    cr_assert(v->ident != a && v->ident != b && m->ident != v->ident && m->ident != b);
    cow_vec_release(v);
    cow_map_release(m);
}

/* ---- numpy array leaves ------------------------------------------------------- */

/* A heap NDARRAY value of a 3x4 "<f8" array; its header is writable for
 * the tests to damage (a stored one reads through the same check). */
static cow_val
nd_3x4(void)
{
    static const uint64_t shape[2] = {3, 4};
    double data[12];
    cow_val v;
    for (int i = 0; i < 12; i++)
        data[i] = i;
    cr_assert_eq(cow_val_ndarray(&v, "<f8", 2, shape, data, sizeof data), COW_OK);
    return v;
}

static cow_ndarray_head *
nd_head(cow_val *v)
{
    return (cow_ndarray_head *)cow_blob_data(cow_val_getblob(v));
}

static int
nd_parts(const cow_val *v)
{
    const cow_ndarray_head *h;
    const uint64_t *shape;
    const char *data;
    return cow_ndarray_parts(v, &h, &shape, &data);
}

/* What cow_val_ndarray writes, cow_ndarray_parts reads back: dtype, shape,
 * and the data right after the shape, 8-byte aligned. */
Test(value, ndarray_parts_round_trip)
{
    cow_val v = nd_3x4();
    const cow_ndarray_head *h;
    const uint64_t *shape;
    const char *data;
    cr_assert_eq(cow_ndarray_parts(&v, &h, &shape, &data), COW_OK);
    cr_assert_str_eq(h->dtype, "<f8");
    cr_assert(h->ndim == 2 && shape[0] == 3 && shape[1] == 4 && h->nbytes == 96);
    cr_assert_eq((uintptr_t)data % 8, 0);
    cr_assert_eq(((const double *)data)[11], 11.0);
    cow_val_release(&v);
}

/* Every header field that no longer agrees with the others or with the
 * stored kinds' dtype form is COW_ECORRUPT: the binding hands numpy only a
 * header of that form, so a damaged one raises CorruptStoreError, never
 * numpy's TypeError or ValueError. */
Test(value, damaged_ndarray_headers_are_corrupt)
{
    static const char *const bad_dtypes[] = {
        "", "<", "<f", "f8", "=f8", "<O8", "<U2", "<V8", "<M8", "<f0", "<f33",
        "<f99999", "<f8x", "<f4",       /* the last: 12 items of 4 bytes are not 96 */
    };
    cow_val v = nd_3x4();
    cow_ndarray_head *h = nd_head(&v), saved = *h;
    uint64_t *shape = (uint64_t *)(h + 1);
    for (size_t i = 0; i < sizeof bad_dtypes / sizeof bad_dtypes[0]; i++) {
        memset(h->dtype, 0, sizeof h->dtype);
        memcpy(h->dtype, bad_dtypes[i], strlen(bad_dtypes[i]));
        cr_assert_eq(nd_parts(&v), COW_ECORRUPT, "dtype \"%s\"", bad_dtypes[i]);
    }
    memset(h->dtype, 'f', sizeof h->dtype);
    cr_assert_eq(nd_parts(&v), COW_ECORRUPT, "dtype without a NUL");
    *h = saved;
    shape[1] = 5;
    cr_assert_eq(nd_parts(&v), COW_ECORRUPT, "a dimension changed");
    shape[0] = (uint64_t)1 << 62;
    shape[1] = 1 << 4;
    cr_assert_eq(nd_parts(&v), COW_ECORRUPT, "a product that overflows");
    shape[0] = 3;
    shape[1] = 4;
    h->ndim = COW_NDARRAY_MAX_DIM + 1;
    cr_assert_eq(nd_parts(&v), COW_ECORRUPT, "ndim past numpy's limit");
    *h = saved;
    h->nbytes = 88;
    cr_assert_eq(nd_parts(&v), COW_ECORRUPT, "nbytes not the data's length");
    *h = saved;
    cr_assert_eq(nd_parts(&v), COW_OK, "control: the saved header is sound");
    cow_val_release(&v);
}

/* The writer refuses what the reader would: a dtype outside the stored
 * kinds' form, or a shape whose size is not nbytes. */
Test(value, ndarray_writer_refuses_what_the_reader_would)
{
    static const uint64_t shape[1] = {4};
    static const char data[32];
    cow_val v;
    cr_assert_eq(cow_val_ndarray(&v, "|O8", 1, shape, data, 32), COW_EINVAL);
    cr_assert_eq(cow_val_ndarray(&v, "<f8", 1, shape, data, 24), COW_EINVAL);
    cr_assert_eq(cow_val_ndarray(&v, "<i4", 1, shape, data, 16), COW_OK);
    cr_assert_eq(nd_parts(&v), COW_OK);
    cow_val_release(&v);
    cr_assert_eq(cow_val_ndarray(&v, "|b1", 0, shape, data, 1), COW_OK, "a 0-d array");
    cow_val_release(&v);
}

/* The short copy and compare of inline bytes (value.h): every length up to
 * 16 copies exactly its bytes (not one more: the canary after them stays),
 * and a difference at any one place is seen. */
Test(value, short_copy_and_compare_cover_every_byte)
{
    for (size_t n = 0; n <= 16; n++) {
        char src[16], dst[17], other[16];
        for (size_t i = 0; i < sizeof src; i++)
            src[i] = (char)('a' + i);
        memset(dst, '#', sizeof dst);
        cow_copy_short(dst, src, n);
        cr_assert_eq(memcmp(dst, src, n), 0, "length %zu: copy differs", n);
        cr_assert_eq(dst[n], '#', "length %zu: a byte past the end was written", n);
        cr_assert(cow_equal_short(src, dst, n), "length %zu: equal bytes differ", n);
        for (size_t at = 0; at < n; at++) {
            memcpy(other, src, sizeof other);
            other[at] ^= 0x20;
            cr_assert(!cow_equal_short(src, other, n), "length %zu: byte %zu not compared", n, at);
        }
    }
}

/* The tag masks (one bit test each) say what the tags' kinds say, and a
 * byte past the tags (a page's lie) holds neither a blob nor a word. */
Test(value, tag_masks_match_the_kinds)
{
    for (int t = 0; t < 256; t++) {
        int blob = t == COW_T_BIGINT || t == COW_T_STR || t == COW_T_BYTES || t == COW_T_NDARRAY
                   || t == COW_T_EXT;
        int word = blob || cow_tag_is_vec(t) || cow_tag_is_map(t) || t == COW_T_PACKED;
        cr_assert_eq(cow_tag_has_blob(t), blob, "tag %d", t);
        cr_assert_eq(cow_tag_has_word(t), word, "tag %d", t);
    }
}
