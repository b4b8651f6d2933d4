/* Helpers shared by the Criterion tests of the C core (tests/c/test_*.c).
 *
 * A seeded PRNG so every random sequence replays exactly from its seed (the
 * seed goes into each failure message), constructors for owned values that
 * fail the test instead of returning an error code, an allocator that counts
 * blocks and fails on demand (error paths), and a leak check.
 *
 * Why the leak check: each test runs in a forked worker that has already
 * reported "passed" when LeakSanitizer's exit-time check runs, so a leak there
 * prints a report but fails nothing.  tu_leak_check, the .fini of every suite,
 * runs that check inside the test and aborts on a leak, which Criterion
 * reports and which fails `make ctest`. */
#ifndef COWSTORE_TEST_COWTEST_H
#define COWSTORE_TEST_COWTEST_H

#include <stdarg.h>
#include <stdlib.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <criterion/criterion.h>

#include "cowstore/alloc.h"
#include "cowstore/map.h"
#include "cowstore/value.h"
#include "cowstore/vec.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#endif

/* Suite teardown: abort the test if anything it allocated is unreachable. */
static inline void
tu_leak_check(void)
{
#if defined(__SANITIZE_ADDRESS__)
    if (__lsan_do_recoverable_leak_check()) {
        fputs("tu_leak_check: LeakSanitizer found leaks (report above)\n", stderr);
        abort();
    }
#endif
}

/* ---- a counting allocator that can be told to fail ------------------------
 * tu_alloc_install() routes the core's allocations (cowstore/alloc.h) through
 * here; tu_alloc.blocks counts live blocks, and tu_fail_after(n) lets n more
 * allocations succeed and fails every one after that (n < 0: none fail). */

typedef struct tu_alloc_state {
    long blocks;        /* live blocks */
    long calls;         /* successful malloc/calloc/realloc calls */
    long reallocs;      /* successful realloc calls */
    long budget;        /* allocations left before failing; < 0: unlimited */
    long failures;      /* allocations refused */
} tu_alloc_state;

static tu_alloc_state tu_alloc = {0, 0, 0, -1, 0};

/* Each block is preceded by a max-aligned header (its size, for realloc). */
#define TU_ALLOC_HEADER 16

static inline int
tu_alloc_permit(void)
{
    if (tu_alloc.budget == 0) {
        tu_alloc.failures++;
        return 0;
    }
    if (tu_alloc.budget > 0)
        tu_alloc.budget--;
    return 1;
}

static inline void *
tu_malloc(size_t size)
{
    char *p;
    if (!tu_alloc_permit() || (p = malloc(TU_ALLOC_HEADER + size)) == NULL)
        return NULL;
    tu_alloc.blocks++;
    tu_alloc.calls++;
    return p + TU_ALLOC_HEADER;
}

static inline void *
tu_calloc(size_t count, size_t size)
{
    char *p;
    if (size && count > (SIZE_MAX - TU_ALLOC_HEADER) / size)
        return NULL;
    if ((p = tu_malloc(count * size)) != NULL)
        memset(p, 0, count * size);
    return p;
}

static inline void
tu_free(void *p)
{
    if (p == NULL)
        return;
    tu_alloc.blocks--;
    free((char *)p - TU_ALLOC_HEADER);
}

static inline void *
tu_realloc(void *p, size_t size)
{
    char *q;
    if (p == NULL)
        return tu_malloc(size);
    if (!tu_alloc_permit()
        || (q = realloc((char *)p - TU_ALLOC_HEADER, TU_ALLOC_HEADER + size)) == NULL)
        return NULL;
    tu_alloc.calls++;
    tu_alloc.reallocs++;
    return q + TU_ALLOC_HEADER;
}

/* Call first in a test, before the core allocates anything. */
static inline void
tu_alloc_install(void)
{
    static const cow_allocator a = {tu_malloc, tu_calloc, tu_realloc, tu_free};
    cow_set_allocator(&a);
}

static inline void
tu_fail_after(long n)
{
    tu_alloc.budget = n;
}

/* The read error recorded since the last call (cowstore/ref.h), COW_OK if
 * none: a test's body runs in its thread's outermost read scope, so taking
 * the error is closing that scope and starting the next. */
static inline int
tu_read_error(void)
{
    return cow_ref_scope_leave(COW_OK);
}

/* splitmix64: one 64-bit state, full period, good enough for test sequences. */
static inline uint64_t
tu_rand(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Uniform enough in [0, n) for test sizes (n far below 2^32). */
static inline size_t
tu_below(uint64_t *state, size_t n)
{
    return (size_t)(tu_rand(state) % n);
}

/* An owned str value from a printf format: inline or blob by its length (V1). */
static inline cow_val
tu_str(const char *fmt, ...)
{
    char buf[256];
    va_list ap;
    cow_val v;
    int n;
    va_start(ap, fmt);
    n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    cr_assert(n >= 0 && (size_t)n < sizeof buf, "tu_str: format too long");
    cr_assert_eq(cow_val_str(&v, buf, (size_t)n), COW_OK);
    return v;
}

/* An owned bytes value (inline or blob by length). */
static inline cow_val
tu_bytes(const void *data, size_t len)
{
    cow_val v;
    cr_assert_eq(cow_val_bytes(&v, data, len), COW_OK);
    return v;
}

/* cow_val_hash of a value that must be hashable. */
static inline uint64_t
tu_hash(const cow_val *v)
{
    uint64_t h = 0;
    cr_assert_eq(cow_val_hash(v, &h), COW_OK, "value of tag %d is unhashable", v->tag);
    return h;
}

/* cow_map_own / cow_vec_own on a plain heap pointer (they take a word). */
static inline int
tu_map_own(cow_map **m)
{
    cow_word w = cow_word_of(*m);
    int rc = cow_map_own(&w);
    *m = (cow_map *)w;
    return rc;
}

static inline int
tu_vec_own(cow_vec **v)
{
    cow_word w = cow_word_of(*v);
    int rc = cow_vec_own(&w);
    *v = (cow_vec *)w;
    return rc;
}

/* Test sugar over the reads that return borrowed copies (vec.h, map.h):
 * the copy kept in a per-thread ring and a pointer to it returned, valid
 * for the next TU_RING reads -- enough for the comparisons tests make. */
#define TU_RING 64
static inline const cow_val *
tu_keep(cow_val v)
{
    static _Thread_local cow_val ring[TU_RING];
    static _Thread_local unsigned next;
    cow_val *slot = &ring[next++ % TU_RING];
    *slot = v;
    return slot;
}

static inline const cow_val *tu_vb_get(const cow_vecbody *b, size_t i) { return tu_keep(cow_vb_get(b, i)); }
static inline const cow_val *tu_entry_key(const cow_map *m, size_t e) { return tu_keep(cow_map_entry_key(m, e)); }
static inline const cow_val *tu_entry_val(const cow_map *m, size_t e) { return tu_keep(cow_map_entry_val(m, e)); }

/* cow_map_get with *val pointing at the ring. */
static inline int
tu_map_get(const cow_map *m, const cow_val *key, uint64_t hash, const cow_val **val)
{
    cow_val v;
    int rc = cow_map_get(m, key, hash, &v);
    if (rc == COW_FOUND)
        *val = tu_keep(v);
    return rc;
}

#endif
