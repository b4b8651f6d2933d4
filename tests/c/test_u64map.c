/* Criterion tests for csrc/core/u64map.c: the commit's open-addressing table
 * against a plain array model.
 *
 * Keys come from the seeded PRNG (never 0) plus hostile families: multiples
 * of large powers of two, which all share their low bits and would pile onto
 * one home cell without the hash mix, and the extremes 1 and UINT64_MAX.
 * After every growth the table is checked against U1 (power-of-two capacity,
 * at most half full) and U2 (each key sits in the unbroken run of full cells
 * that starts at its home cell). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "cowstore/errors.h"
#include "cowstore/hash.h"
#include "cowstore/u64map.h"

#include "cowtest.h"

TestSuite(u64map, .fini = tu_leak_check);

/* Enough keys for nine doublings past the first table (64 cells). */
#define MANY 20000
/* First capacity the table allocates (u64map.c: U64MAP_MIN_CAP). */
#define FIRST_CAP 64

/* U1 and U2 over the whole table; returns the number of full cells. */
static size_t
check_table(const cow_u64map *m)
{
    size_t full = 0;
    if (m->cap == 0) {
        cr_assert_eq(m->len, 0);
        return 0;
    }
    cr_assert_eq(m->cap & (m->cap - 1), 0, "U1: cap %zu is not a power of two", m->cap);
    cr_assert_leq(m->len * 2, m->cap, "U1: len %zu over half of cap %zu", m->len, m->cap);
    for (size_t i = 0; i < m->cap; i++) {
        if (m->cells[i].key == 0)
            continue;
        full++;
        /* U2: from its home cell to i every cell is full. */
        for (size_t j = (size_t)cow_hash_mix64(m->cells[i].key) & (m->cap - 1); j != i;
             j = (j + 1) & (m->cap - 1))
            cr_assert_neq(m->cells[j].key, 0, "U2: key %llx cut off from its home by cell %zu",
                          (unsigned long long)m->cells[i].key, j);
    }
    cr_assert_eq(full, m->len, "len %zu but %zu full cells", m->len, full);
    return full;
}

static uint64_t
val_of(uint64_t key, unsigned version)
{
    return key * 3 + version;
}

/* Every key of keys[0..n) maps to val_of(key, ver[i]). */
static void
check_model(const cow_u64map *m, const uint64_t *keys, const unsigned *ver, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint64_t v = 0;
        cr_assert_eq(cow_u64map_get(m, keys[i], &v), COW_FOUND, "key %zu lost", i);
        cr_assert_eq(v, val_of(keys[i], ver[i]), "key %zu has a stale value", i);
    }
}

/* Fills keys with n distinct nonzero keys: random ones mixed with multiples
 * of 2^32 and 2^20 (same low bits) and the extremes. */
static void
make_keys(uint64_t *keys, size_t n, uint64_t seed)
{
    cow_u64map seen;
    cow_u64map_init(&seen);
    for (size_t i = 0; i < n;) {
        uint64_t k, dummy;
        switch (i % 4) {
        case 0: k = tu_rand(&seed); break;
        case 1: k = (uint64_t)(i / 4 + 1) << 32; break;
        case 2: k = (uint64_t)(i / 4 + 1) << 20; break;
        default: k = i == 3 ? UINT64_MAX : i == 7 ? 1 : tu_rand(&seed) | 1; break;
        }
        while (k == 0 || cow_u64map_get(&seen, k, &dummy) == COW_FOUND)
            k = tu_rand(&seed);     /* the families overlap (2^32 = 4096 * 2^20) */
        cr_assert_eq(cow_u64map_put(&seen, k, 1), COW_OK);
        keys[i++] = k;
    }
    cow_u64map_free(&seen);
}

/* An empty table answers NOT_FOUND without allocating; freeing it is safe. */
Test(u64map, empty)
{
    cow_u64map m;
    uint64_t v = 42;
    cow_u64map_init(&m);
    cr_assert_eq(cow_u64map_get(&m, 1, &v), COW_NOT_FOUND);
    cr_assert_eq(cow_u64map_get(&m, UINT64_MAX, &v), COW_NOT_FOUND);
    cr_assert_eq(v, 42, "a miss must not write *val");
    cr_assert_eq(m.cap, 0);
    cow_u64map_clear(&m);
    check_table(&m);
    cow_u64map_free(&m);
    cow_u64map_free(&m);        /* idempotent: free leaves an empty table */
}

/* Growth: MANY distinct keys, each readable after every insert that grew the
 * table (U1, U2 hold at each capacity); absent keys stay absent. */
Test(u64map, growth_against_model)
{
    uint64_t seed = 0x7536344d4150ULL;
    uint64_t *keys = calloc(MANY, sizeof *keys);
    unsigned *ver = calloc(MANY, sizeof *ver);
    cow_u64map m;
    size_t last_cap = 0, growths = 0;
    cr_assert(keys && ver);
    make_keys(keys, MANY, seed);
    cow_u64map_init(&m);
    for (size_t i = 0; i < MANY; i++) {
        cr_assert_eq(cow_u64map_put(&m, keys[i], val_of(keys[i], 0)), COW_OK);
        cr_assert_eq(m.len, i + 1);
        if (m.cap != last_cap) {
            cr_assert(last_cap == 0 ? m.cap == FIRST_CAP : m.cap == 2 * last_cap,
                      "cap went %zu -> %zu", last_cap, m.cap);
            last_cap = m.cap;
            growths++;
            check_table(&m);
            check_model(&m, keys, ver, i + 1);
        }
    }
    cr_assert_geq(growths, 9, "only %zu growths for %d keys", growths, MANY);
    check_table(&m);
    check_model(&m, keys, ver, MANY);
    for (int i = 0; i < 1000; i++) {     /* absent keys (odd multiples of 2^40) */
        uint64_t v;
        cr_assert_eq(cow_u64map_get(&m, ((uint64_t)(2 * i + 1) << 40) | 2, &v), COW_NOT_FOUND);
    }
    cow_u64map_free(&m);
    free(keys);
    free(ver);
}

/* Replace: putting a present key changes its value only -- no new cell, no
 * growth -- and the other keys keep theirs. */
Test(u64map, replace_keeps_len)
{
    uint64_t seed = 0x5245504cULL;
    enum { N = 3000, ROUNDS = 4 };
    uint64_t keys[N];
    unsigned ver[N] = {0};
    cow_u64map m;
    size_t cap;
    make_keys(keys, N, seed);
    cow_u64map_init(&m);
    for (size_t i = 0; i < N; i++)
        cr_assert_eq(cow_u64map_put(&m, keys[i], val_of(keys[i], 0)), COW_OK);
    cap = m.cap;
    for (unsigned r = 1; r <= ROUNDS; r++) {
        for (size_t j = 0; j < N / 2; j++) {
            size_t i = tu_below(&seed, N);
            ver[i] = r;
            cr_assert_eq(cow_u64map_put(&m, keys[i], val_of(keys[i], r)), COW_OK);
        }
        cr_assert_eq(m.len, N, "replacing added cells");
        cr_assert_eq(m.cap, cap, "replacing grew the table");
        check_model(&m, keys, ver, N);
    }
    check_table(&m);
    cow_u64map_free(&m);
}

/* Clear: empties the table but keeps its memory; the old keys are gone and
 * the table fills again correctly (no stale value resurfaces). */
Test(u64map, clear_then_reuse)
{
    uint64_t seed = 0x434c454152ULL;
    enum { N = 500 };
    uint64_t keys[N], v;
    unsigned ver[N] = {0};
    cow_u64map m;
    cow_u64cell *mem;
    size_t cap;
    make_keys(keys, N, seed);
    cow_u64map_init(&m);
    for (size_t i = 0; i < N; i++)
        cr_assert_eq(cow_u64map_put(&m, keys[i], val_of(keys[i], 7)), COW_OK);
    cap = m.cap;
    mem = m.cells;
    cow_u64map_clear(&m);
    cr_assert_eq(m.len, 0);
    cr_assert_eq(m.cap, cap, "clear must keep the table");
    cr_assert_eq(m.cells, mem, "clear must keep the memory");
    check_table(&m);
    for (size_t i = 0; i < N; i++)
        cr_assert_eq(cow_u64map_get(&m, keys[i], &v), COW_NOT_FOUND, "key %zu survived clear", i);
    /* Refill with half the keys under new values. */
    for (size_t i = 0; i < N; i += 2)
        cr_assert_eq(cow_u64map_put(&m, keys[i], val_of(keys[i], 0)), COW_OK);
    cr_assert_eq(m.len, N / 2);
    for (size_t i = 0; i < N; i++) {
        int rc = cow_u64map_get(&m, keys[i], &v);
        if (i % 2) {
            cr_assert_eq(rc, COW_NOT_FOUND);
        }
        else {
            cr_assert_eq(rc, COW_FOUND);
            cr_assert_eq(v, val_of(keys[i], ver[i]));
        }
    }
    check_table(&m);
    cow_u64map_free(&m);
}

/* A failed growth (its one allocation) returns COW_ENOMEM and leaves the
 * table exactly as it was: same memory, every key readable. */
Test(u64map, growth_failure_keeps_table)
{
    uint64_t seed = 0x454e4f4d454dULL;
    enum { N = FIRST_CAP / 2 };     /* the next new key must grow the table */
    uint64_t keys[N + 1];
    unsigned ver[N + 1] = {0};
    tu_alloc_install();
    make_keys(keys, N + 1, seed);
    {
        cow_u64map m;
        uint64_t v;
        cow_u64map_init(&m);
        for (size_t i = 0; i < N; i++)
            cr_assert_eq(cow_u64map_put(&m, keys[i], val_of(keys[i], 0)), COW_OK);
        cr_assert_eq(m.cap, FIRST_CAP);
        tu_fail_after(0);
        cr_assert_eq(cow_u64map_put(&m, keys[N], 5), COW_ENOMEM);
        tu_fail_after(-1);
        cr_assert_eq(m.len, N);
        cr_assert_eq(m.cap, FIRST_CAP);
        check_table(&m);
        check_model(&m, keys, ver, N);
        cr_assert_eq(cow_u64map_get(&m, keys[N], &v), COW_NOT_FOUND);
        /* With memory back, the same insert succeeds. */
        cr_assert_eq(cow_u64map_put(&m, keys[N], 5), COW_OK);
        cr_assert_eq(cow_u64map_get(&m, keys[N], &v), COW_FOUND);
        cr_assert_eq(v, 5);
        cow_u64map_free(&m);
    }
    cr_assert_eq(tu_alloc.blocks, 0, "%ld blocks leaked", tu_alloc.blocks);
}

/* Delete: random puts and deletes of keys from the hostile families against
 * a presence model; after every batch U1/U2 hold (a deletion closes its
 * hole, so no run breaks), every present key reads its value, every deleted
 * one is gone, and deleting an absent key answers NOT_FOUND. */
Test(u64map, delete_against_model)
{
    uint64_t seed = 0x44454c4554ULL;
    enum { N = 4000, STEPS = 40000, BATCH = 1000 };
    uint64_t *keys = calloc(N, sizeof *keys);
    unsigned *ver = calloc(N, sizeof *ver);
    char *present = calloc(N, 1);
    cow_u64map m;
    size_t live = 0;
    cr_assert(keys && ver && present);
    make_keys(keys, N, seed);
    cow_u64map_init(&m);
    for (unsigned step = 1; step <= STEPS; step++) {
        size_t i = tu_below(&seed, N);
        if (tu_below(&seed, 3) == 0) {
            cr_assert_eq(cow_u64map_del(&m, keys[i]), present[i] ? COW_FOUND : COW_NOT_FOUND,
                         "delete of key %zu (present %d)", i, present[i]);
            live -= present[i];
            present[i] = 0;
        } else {
            ver[i] = step;
            cr_assert_eq(cow_u64map_put(&m, keys[i], val_of(keys[i], step)), COW_OK);
            live += !present[i];
            present[i] = 1;
        }
        cr_assert_eq(m.len, live);
        if (step % BATCH)
            continue;
        check_table(&m);
        for (size_t k = 0; k < N; k++) {
            uint64_t v = 0;
            cr_assert_eq(cow_u64map_get(&m, keys[k], &v), present[k] ? COW_FOUND : COW_NOT_FOUND,
                         "key %zu: present %d", k, present[k]);
            if (present[k])
                cr_assert_eq(v, val_of(keys[k], ver[k]), "key %zu has a stale value", k);
        }
    }
    for (size_t k = 0; k < N; k++)
        if (present[k])
            cr_assert_eq(cow_u64map_del(&m, keys[k]), COW_FOUND);
    cr_assert_eq(m.len, 0);
    check_table(&m);
    cow_u64map_free(&m);
    free(keys);
    free(ver);
    free(present);
}

/* Add: counts raised and lowered by one probe, against a model of counts,
 * through every growth; a key is created at its first add (from 0), a count
 * back at 0 stays a key, and an add that cannot grow the table changes
 * nothing. */
Test(u64map, add_against_model)
{
    enum { KEYS = 3000, ROUNDS = 60000 };
    uint64_t seed = 0x414444ULL, *keys = calloc(KEYS, sizeof *keys);
    int64_t *count = calloc(KEYS, sizeof *count);
    cow_u64map m;
    uint64_t now, v;
    size_t present = 0;
    cr_assert(keys && count);
    make_keys(keys, KEYS, seed);
    cow_u64map_init(&m);
    for (int r = 0; r < ROUNDS; r++) {
        size_t k = tu_below(&seed, r < ROUNDS / 2 ? KEYS : 64);     /* spread, then churn a few */
        int64_t delta = count[k] > 0 && tu_below(&seed, 3) == 0 ? -1 : 1;
        int was = cow_u64map_get(&m, keys[k], &v) == COW_FOUND;
        cr_assert_eq(cow_u64map_add(&m, keys[k], (uint64_t)delta, &now), COW_OK);
        count[k] += delta;
        present += !was;
        cr_assert_eq(now, (uint64_t)count[k], "round %d: count %lld, map says %llu", r,
                     (long long)count[k], (unsigned long long)now);
        cr_assert_eq(m.len, present);
    }
    check_table(&m);
    for (size_t k = 0; k < KEYS; k++)
        if (cow_u64map_get(&m, keys[k], &v) == COW_FOUND)
            cr_assert_eq(v, (uint64_t)count[k]);
        else
            cr_assert_eq(count[k], 0, "a counted key is missing");
    cow_u64map_free(&m);
    tu_alloc_install();
    {
        cow_u64map full;
        enum { N = FIRST_CAP / 2 };
        cow_u64map_init(&full);
        for (size_t i = 0; i < N; i++)
            cr_assert_eq(cow_u64map_add(&full, keys[i], 1, &now), COW_OK);
        tu_fail_after(0);
        cr_assert_eq(cow_u64map_add(&full, keys[N], 1, &now), COW_ENOMEM);
        tu_fail_after(-1);
        cr_assert_eq(full.len, N);
        cr_assert_eq(cow_u64map_get(&full, keys[N], &v), COW_NOT_FOUND);
        cow_u64map_free(&full);
    }
    cr_assert_eq(tu_alloc.blocks, 0, "%ld blocks leaked", tu_alloc.blocks);
    free(keys);
    free(count);
}
