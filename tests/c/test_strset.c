/* Criterion tests for csrc/core/strset.c: long strings shared within one
 * conversion (S1, S2 in cowstore/strset.h).
 *
 * Checked: equal long strings come back as one blob, short ones inline (V1)
 * and never in the set; the set's own references are its only ones after the
 * values go, and growing drops those (S2) so the set stays bounded by the
 * strings still held; an allocation failure while growing still gives a
 * correct, unshared value; the blocks the counting allocator sees all come
 * back when values and set are dropped. */
#include <stdio.h>
#include <string.h>

#include <criterion/criterion.h>

#include "cowstore/errors.h"
#include "cowstore/strset.h"
#include "cowstore/value.h"

#include "cowtest.h"

TestSuite(strset, .fini = tu_leak_check);

/* Distinct strings: more than the set's first tables hold, so it grows. */
#define MANY 5000
#define TEXT_MAX 64

/* The i-th test string, COW_INLINE_MAX + 1 bytes or longer. */
static size_t
text_of(char *buf, size_t i)
{
    return (size_t)snprintf(buf, TEXT_MAX, "a long string, number %zu", i);
}

static const cow_blob *
blob_of(const cow_val *v)
{
    cr_assert_eq(v->tag, COW_T_STR);
    return cow_val_getblob(v);
}

static void
assert_holds(const cow_val *v, const char *s, size_t len)
{
    const cow_blob *b = blob_of(v);
    cr_assert_eq(cow_blob_len(b), len);
    cr_assert_eq(memcmp(cow_blob_data(b), s, len), 0);
}

Test(strset, equal_long_strings_share_one_blob)
{
    cow_strset s;
    cow_val a, b, c;
    char buf[TEXT_MAX], other[TEXT_MAX];
    size_t n = text_of(buf, 7), m = text_of(other, 8);
    tu_alloc_install();
    cow_strset_init(&s);
    cr_assert_eq(cow_strset_str(&s, buf, n, &a), COW_OK);
    cr_assert_eq(cow_strset_str(&s, buf, n, &b), COW_OK);
    cr_assert_eq(cow_strset_str(&s, other, m, &c), COW_OK);
    cr_assert_eq(blob_of(&a), blob_of(&b), "S1: equal bytes, one blob");
    cr_assert_neq(blob_of(&a), blob_of(&c));
    cr_assert_eq(blob_of(&a)->refcnt, 3, "two values and the set");
    assert_holds(&b, buf, n);
    assert_holds(&c, other, m);
    cr_assert_eq(cow_strset_len(&s), 2);
    cow_strset_free(&s);
    cr_assert_eq(blob_of(&a)->refcnt, 2, "the set's reference dropped");
    assert_holds(&a, buf, n);
    cow_val_release(&a);
    cow_val_release(&b);
    cow_val_release(&c);
    cr_assert_eq(tu_alloc.blocks, 0);
}

Test(strset, short_strings_stay_inline_and_out_of_the_set)
{
    cow_strset s;
    cow_val v;
    const char *text = "fourteen bytes";      /* COW_INLINE_MAX exactly */
    cow_strset_init(&s);
    for (size_t len = 0; len <= COW_INLINE_MAX; len++) {
        cr_assert_eq(cow_strset_str(&s, text, len, &v), COW_OK);
        cr_assert_eq(v.tag, COW_T_SSTR, "V1 at length %zu", len);
        cr_assert_eq(v.slen, len);
        cr_assert_eq(memcmp((char *)&v + COW_INLINE_OFFSET, text, len), 0);
    }
    cr_assert_eq(cow_strset_len(&s), 0);
    cr_assert_null(s.slots, "no table for short strings");
    cow_strset_free(&s);
}

Test(strset, growing_drops_blobs_only_the_set_holds)
{
    cow_strset s;
    cow_val kept[MANY / 10];
    char buf[TEXT_MAX];
    size_t nkept = 0;
    tu_alloc_install();
    cow_strset_init(&s);
    for (size_t i = 0; i < MANY; i++) {
        cow_val v;
        size_t n = text_of(buf, i);
        cr_assert_eq(cow_strset_str(&s, buf, n, &v), COW_OK);
        if (i % 10 == 0)
            kept[nkept++] = v;
        else
            cow_val_release(&v);          /* as a pack that copied it inline */
        cr_assert_leq(cow_strset_len(&s) * 2, s.cap, "S1: at most half full");
        cr_assert_leq(cow_strset_len(&s), 4 * nkept + 64, "S2: dead blobs bounded at %zu", i);
    }
    for (size_t i = 0; i < MANY; i += 10) {   /* the kept ones are still shared */
        cow_val again;
        size_t n = text_of(buf, i);
        cr_assert_eq(cow_strset_str(&s, buf, n, &again), COW_OK);
        cr_assert_eq(blob_of(&again), blob_of(&kept[i / 10]), "string %zu", i);
        assert_holds(&again, buf, n);
        cow_val_release(&again);
    }
    cow_strset_free(&s);
    cow_vals_release(kept, nkept);
    cr_assert_eq(tu_alloc.blocks, 0, "every blob and table freed");
}

Test(strset, failed_growth_gives_an_unshared_value)
{
    cow_strset s;
    cow_val v, w;
    char buf[TEXT_MAX];
    size_t n = text_of(buf, 1);
    tu_alloc_install();
    cow_strset_init(&s);
    tu_fail_after(0);
    cr_assert_eq(cow_strset_str(&s, buf, n, &w), COW_ENOMEM, "no blob at all");
    tu_fail_after(1);                   /* the blob, not the table */
    cr_assert_eq(cow_strset_str(&s, buf, n, &v), COW_OK);
    assert_holds(&v, buf, n);
    cr_assert_eq(blob_of(&v)->refcnt, 1, "not in the set");
    cr_assert_eq(cow_strset_len(&s), 0);
    tu_fail_after(-1);
    cr_assert_eq(cow_strset_str(&s, buf, n, &w), COW_OK);
    cr_assert_neq(blob_of(&w), blob_of(&v));
    cow_val_release(&v);
    cow_val_release(&w);
    cow_strset_free(&s);
    cr_assert_eq(tu_alloc.blocks, 0);
}
