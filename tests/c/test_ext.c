/* Criterion tests for csrc/core/ext.c: extension leaves (cowstore/ext.h) --
 * inline or blob by length (value.h V8), Python's numeric equality with the
 * builtins' numbers (E1), datetimes by instant (E2), stable hashes, and
 * damaged bytes that neither crash nor read past their end (E3). */
#include <stdint.h>
#include <string.h>

#include <criterion/criterion.h>

#include "cowstore/ext.h"
#include "cowstore/hash.h"
#include "cowstore/value.h"

#include "cowtest.h"

TestSuite(ext, .fini = tu_leak_check);

/* Bytes from cowstore._ext.encode (Python), pinned: the format is stored. */
static const uint8_t DEC_ONE[] = {0x05, 0x01, 0x02, 0x00, 0x00};              /* Decimal(1) */
static const uint8_t DEC_TENTH[] = {0x05, 0x04, 0x01, 0x01, 0x01, 0x0a, 0x00, 0x01};
static const uint8_t FRAC_TENTH[] = {0x06, 0x04, 0x01, 0x01, 0x01, 0x0a};      /* 1/10 */
static const uint8_t COMPLEX_ONE[] = {0x07, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f, 0, 0, 0, 0, 0, 0, 0, 0};
/* 2024-01-01 12:00 UTC; the same instant at 13:00 +01:00; 12:00 naive. */
static const uint8_t DT_UTC[] = {0x01, 0x00, 0x90, 0x38, 0x1e, 0xe0, 0xcd, 0xe2, 0x28,
                                 0x00, 0x00, 0x00, 0x00, 0x00};
static const uint8_t DT_PLUS1[] = {0x01, 0x00, 0x34, 0xcc, 0xf4, 0xe0, 0xcd, 0xe2, 0x48,
                                   0x00, 0xa4, 0x93, 0xd6, 0x00};
static const uint8_t DT_NAIVE[] = {0x01, 0x00, 0x90, 0x38, 0x1e, 0xe0, 0xcd, 0xe2, 0x00};
/* Decimal(2**70): a BIG key, equal to the bigint 2**70. */
static const uint8_t DEC_2_70[] = {0x05, 0x03, 0x09, 0, 0, 0, 0, 0, 0, 0, 0, 0x40, 0x00, 0x00};
static const uint8_t TWO_70_LE[] = {0, 0, 0, 0, 0, 0, 0, 0, 0x40};

static cow_val
ext(const uint8_t *data, size_t len)
{
    cow_val v;
    cr_assert_eq(cow_val_ext(&v, data, len), COW_OK);
    return v;
}

static uint64_t
hash_of(const cow_val *v)
{
    uint64_t h = 0;
    cr_assert_eq(cow_val_hash(v, &h), COW_OK);
    return h;
}

/* a and b equal, hash equal and order 0 both ways. */
static void
assert_same_key(const cow_val *a, const cow_val *b)
{
    cr_assert(cow_val_equal(a, b) && cow_val_equal(b, a));
    cr_assert_eq(hash_of(a), hash_of(b));
    cr_assert_eq(cow_val_order(a, b), 0);
    cr_assert_eq(cow_val_order(b, a), 0);
}

Test(ext, inline_up_to_14_bytes_else_blob)
{
    cow_val a = ext(DT_UTC, sizeof DT_UTC), b = ext(COMPLEX_ONE, sizeof COMPLEX_ONE), c;
    cr_assert_eq(a.tag, COW_T_SEXT);
    cr_assert_eq(a.slen, sizeof DT_UTC);
    cr_assert_eq(b.tag, COW_T_EXT);
    cr_assert_eq(cow_val_ext(&c, DT_UTC, 0), COW_EINVAL);
    cow_val_copy(&c, &b);
    cow_val_release(&b);
    cr_assert_eq(c.tag, COW_T_EXT);
    cow_val_release(&c);
    cow_val_release(&a);
}

Test(ext, numbers_equal_the_builtins_they_equal)
{
    cow_val one = cow_val_int(1), fone = cow_val_float(1.0), t = cow_val_bool(1), big;
    cow_val d = ext(DEC_ONE, sizeof DEC_ONE), c = ext(COMPLEX_ONE, sizeof COMPLEX_ONE);
    cow_val d70 = ext(DEC_2_70, sizeof DEC_2_70);
    cr_assert_eq(cow_val_bigint(&big, TWO_70_LE, sizeof TWO_70_LE), COW_OK);
    assert_same_key(&d, &one);
    assert_same_key(&d, &fone);
    assert_same_key(&d, &t);
    assert_same_key(&c, &one);
    assert_same_key(&c, &d);
    assert_same_key(&d70, &big);
    cr_assert(!cow_val_equal(&d, &d70));
    cow_val_release(&big);
    cow_val_release(&c);
    cow_val_release(&d);
    cow_val_release(&d70);
}

Test(ext, decimal_and_fraction_of_one_ratio_are_equal)
{
    cow_val d = ext(DEC_TENTH, sizeof DEC_TENTH), f = ext(FRAC_TENTH, sizeof FRAC_TENTH);
    cow_val tenth = cow_val_float(0.1);
    assert_same_key(&d, &f);
    cr_assert(!cow_val_equal(&d, &tenth));      /* 0.1 the float is not 1/10 */
    cow_val_release(&d);
    cow_val_release(&f);
}

Test(ext, aware_datetimes_equal_by_instant_naive_apart)
{
    cow_val u = ext(DT_UTC, sizeof DT_UTC), p = ext(DT_PLUS1, sizeof DT_PLUS1);
    cow_val n = ext(DT_NAIVE, sizeof DT_NAIVE);
    assert_same_key(&u, &p);
    cr_assert(!cow_val_equal(&u, &n));
    cr_assert_neq(cow_val_order(&u, &n), 0);
    cr_assert_eq(cow_val_order(&u, &n), -cow_val_order(&n, &u));
    cow_val_release(&u);
    cow_val_release(&p);
    cow_val_release(&n);
}

Test(ext, hashes_are_stable)
{
    /* Pinned: the hash places keys in stored maps, so it must never change. */
    cow_val u = ext(DT_UTC, sizeof DT_UTC), f = ext(FRAC_TENTH, sizeof FRAC_TENTH);
    cow_val one = cow_val_int(1);
    cr_assert_eq(hash_of(&u), UINT64_C(0x167df58406f1130b));
    cr_assert_eq(hash_of(&f), UINT64_C(0xa0af43d7b30625d2));
    cr_assert_eq(hash_of(&one), cow_hash_mix64(1));
    cow_val_release(&u);
    cow_val_release(&f);
}

Test(ext, unhashable_ones_refuse)
{
    static const uint8_t snan[] = {0x05, 0x06, 0x06, 0x00};
    static const uint8_t row[] = {0x12 | 0x80, 0x03, 'm', ':', 'R', 'N'};
    cow_val s = ext(snan, sizeof snan), r = ext(row, sizeof row);
    uint64_t h;
    cr_assert_eq(cow_val_hash(&s, &h), COW_ETYPE);
    cr_assert_eq(cow_val_hash(&r, &h), COW_ETYPE);
    cr_assert(!cow_val_equal(&s, &s));          /* NaNs equal nothing */
    cow_val_release(&s);
    cow_val_release(&r);
}

Test(ext, stored_inline_length_is_checked)
{
    cow_val v = ext(DT_NAIVE, sizeof DT_NAIVE);
    cr_assert_eq(cow_val_check_stored(&v), COW_OK);
    v.slen = 0;
    cr_assert_eq(cow_val_check_stored(&v), COW_ECORRUPT);
    v.slen = COW_INLINE_MAX + 1;
    cr_assert_eq(cow_val_check_stored(&v), COW_ECORRUPT);
}

Test(ext, damaged_bytes_compare_by_bytes)
{
    /* Truncated keys and times, a length past the end, an endless varint:
     * each parses as damaged (E3) and is only ever equal to itself. */
    static const uint8_t bad[][12] = {
        {0x05, 0x03, 0x7f, 0x01},
        {0x05, 0x04, 0x01, 0x01, 0x05},
        {0x06, 0x01, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
        {0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x08},
        {0x07, 0x00},
        {0x06, 0x02, 0x00},
    };
    static const size_t lens[] = {4, 5, 12, 9, 2, 3};
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        cow_val a = ext(bad[i], lens[i]), b = ext(bad[i], lens[i]), one = cow_val_int(1);
        uint64_t h;
        cr_assert_eq(cow_val_hash(&a, &h), COW_OK, "case %zu", i);
        cr_assert(cow_val_equal(&a, &b), "case %zu", i);
        cr_assert(!cow_val_equal(&a, &one), "case %zu", i);
        cow_val_release(&a);
        cow_val_release(&b);
    }
}
