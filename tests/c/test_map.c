/* Criterion tests for csrc/core/map.c: the ordered HAMT map against a model of
 * Python's dict, with cow_map_check (H1..H5) after every step.
 *
 * The model is itself an entry log with holes, indexed by key id, so a step
 * costs O(1) however large the map: set appends a new key or updates a live
 * one in place, del marks a hole, popitem takes the last live entry.  The map
 * must list its live entries in exactly the model's order.
 *
 * Collisions come two ways.  Keys whose real 32-bit index hash collides were
 * found offline by a birthday search (the hash is stable, so they stay valid
 * forever) and work with every operation and the validator.  Many-way
 * collisions use a fake hash passed to set/find/del; since the map recomputes
 * real hashes when it builds an index (crossing COW_MAP_LINEAR_MAX, compacting)
 * and in popitem, those tests first insert fillers under their real hashes,
 * never pop, and stay below the compaction threshold.
 *
 * Allocation failure: with the counting allocator of cowtest.h installed,
 * each operation is run with 0, 1, 2... allocations allowed; every COW_ENOMEM
 * must leave the map (and any copy sharing its nodes) valid and unchanged. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "cowstore/hash.h"
#include "cowstore/map.h"
#include "cowstore/value.h"
#include "cowstore/vec.h"

#include "cowtest.h"

TestSuite(map, .fini = tu_leak_check);

/* ---- keys and values by id ------------------------------------------------ */

enum key_kind {
    K_INT,      /* int id */
    K_STR,      /* str: inline for even ids, blob for odd ones */
    K_MIX,      /* by id % 4: int, inline str, blob str, bytes equal to str id-2 */
    K_FORCED,   /* K_MIX below FILLERS, then ints built to collide (forced_key) */
};

static cow_val forced_key(int64_t id);
static int64_t forced_fillers(void);

/* Longest key text, with room to spare. */
#define KEY_BUF 64

static int
key_class(int kind, int64_t id)
{
    if (kind == K_MIX)
        return (int)(id % 4);
    return kind == K_INT ? 0 : 1 + (int)(id % 2);
}

/* Text of a str or bytes key into buf; returns its length. */
static size_t
key_text(int cls, int64_t id, char buf[KEY_BUF])
{
    int n;
    if (cls == 2)
        n = snprintf(buf, KEY_BUF, "a key long enough to be a blob %lld", (long long)id);
    else   /* class 3 is bytes holding the text of the class-1 key id - 2 */
        n = snprintf(buf, KEY_BUF, "k%lld", (long long)(cls == 3 ? id - 2 : id));
    cr_assert(n > 0 && n < KEY_BUF);
    return (size_t)n;
}

/* A new owned key for id. */
static cow_val
key_for(int kind, int64_t id)
{
    char buf[KEY_BUF];
    int cls;
    cow_val v;
    size_t n;
    if (kind == K_FORCED && id >= forced_fillers())
        return forced_key(id);
    cls = key_class(kind == K_FORCED ? K_MIX : kind, id);
    if (cls == 0)
        return cow_val_int(id);
    n = key_text(cls, id, buf);
    if (cls == 3)
        return tu_bytes(buf, n);
    cr_assert_eq(cow_val_str(&v, buf, n), COW_OK);
    return v;
}

/* A borrowed probe equal to key_for(kind, id) but built differently: a bool or
 * float for ints, a view into buf for str and bytes (V4). */
static cow_val
probe_for(int kind, int64_t id, char buf[KEY_BUF])
{
    int cls;
    size_t n;
    if (kind == K_FORCED && id >= forced_fillers())
        return forced_key(id);                          /* an int: nothing to release */
    cls = key_class(kind == K_FORCED ? K_MIX : kind, id);
    if (cls == 0)
        return id == 1 ? cow_val_bool(1) : id % 2 ? cow_val_float((double)id) : cow_val_int(id);
    n = key_text(cls, id, buf);
    return cls == 3 ? cow_val_bytes_view(buf, n) : cow_val_str_view(buf, n);
}

/* Values are versions: ints, with every fifth a blob str (real refcounts). */
static cow_val
val_for(int64_t ver)
{
    if (ver % 5 == 0)
        return tu_str("value version %lld, stored as a blob", (long long)ver);
    return cow_val_int(ver);
}

static int
val_is(const cow_val *v, int64_t ver)
{
    cow_val want = val_for(ver);
    int eq = cow_val_equal(v, &want) && v->tag == want.tag;
    cow_val_release(&want);
    return eq;
}

/* ---- the model and the harness ---------------------------------------------- */

typedef struct mentry {
    int64_t key, ver;
    int live;
} mentry;

typedef uint64_t (*hash_fn)(int kind, int64_t id);

typedef struct harness {
    cow_map *m;
    int kind;
    hash_fn hash;           /* NULL: the key's real hash */
    int check;              /* run cow_map_check after each step */
    mentry *log;
    size_t nlog, caplog, live;
    long *pos;              /* model log position of each key id, or -1 */
    int64_t maxkey;
    const char *what;       /* for failure messages */
} harness;

static void
h_init(harness *h, int kind, int64_t maxkey, hash_fn hash, int check, const char *what)
{
    memset(h, 0, sizeof *h);
    h->m = cow_map_new();
    cr_assert_not_null(h->m);
    h->kind = kind;
    h->hash = hash;
    h->check = check;
    h->maxkey = maxkey;
    h->what = what;
    h->pos = malloc((size_t)maxkey * sizeof *h->pos);
    cr_assert_not_null(h->pos);
    for (int64_t i = 0; i < maxkey; i++)
        h->pos[i] = -1;
}

static void
h_free(harness *h)
{
    cow_map_release(h->m);
    free(h->log);
    free(h->pos);
}

static uint64_t
h_hash(const harness *h, int64_t id)
{
    cow_val k;
    uint64_t out;
    if (h->hash)
        return h->hash(h->kind, id);
    k = key_for(h->kind, id);
    out = tu_hash(&k);
    cow_val_release(&k);
    return out;
}

static void
h_after(harness *h, const char *op, int64_t id)
{
    if (h->check)
        cr_assert_eq(cow_map_check(h->m), COW_OK, "%s: cow_map_check failed after %s(%lld)",
                     h->what, op, (long long)id);
    cr_assert_eq(cow_map_len(h->m), h->live, "%s: len after %s(%lld)", h->what, op,
                 (long long)id);
}

/* Allocations the next core call of an h_try_* may make before they fail
 * (tu_fail_after); < 0: unlimited.  Only the allocation-failure tests set it. */
static long h_budget = -1;

/* set(id) = ver on the map; on success the model follows.  Returns the rc. */
static int
h_try_set(harness *h, int64_t id, int64_t ver)
{
    cow_val key, val;
    uint64_t hash;
    int rc;
    cr_assert(id >= 0 && id < h->maxkey);
    key = key_for(h->kind, id);
    val = val_for(ver);
    hash = h_hash(h, id);
    tu_fail_after(h_budget);
    rc = cow_map_set(h->m, key, hash, val);
    tu_fail_after(-1);
    if (rc != COW_OK)
        return rc;
    if (h->pos[id] >= 0)
        h->log[h->pos[id]].ver = ver;           /* a re-assigned key keeps its place */
    else {
        if (h->nlog == h->caplog) {
            h->caplog = h->caplog ? 2 * h->caplog : 64;
            h->log = realloc(h->log, h->caplog * sizeof *h->log);
            cr_assert_not_null(h->log);
        }
        h->log[h->nlog] = (mentry){id, ver, 1};
        h->pos[id] = (long)h->nlog++;
        h->live++;
    }
    return rc;
}

static void
h_set(harness *h, int64_t id, int64_t ver)
{
    cr_assert_eq(h_try_set(h, id, ver), COW_OK, "%s: set(%lld)", h->what, (long long)id);
    h_after(h, "set", id);
}

static void
h_forget(harness *h, int64_t id)
{
    h->log[h->pos[id]].live = 0;
    h->pos[id] = -1;
    h->live--;
}

/* del(id) on the map, checking the outcome against the model, which follows
 * on success.  Returns the rc. */
static int
h_try_del(harness *h, int64_t id)
{
    char buf[KEY_BUF];
    cow_val probe = probe_for(h->kind, id, buf), out = cow_val_int(-12345);
    uint64_t hash = h_hash(h, id);
    int rc;
    tu_fail_after(h_budget);
    rc = cow_map_del(h->m, &probe, hash, &out);
    tu_fail_after(-1);
    if (rc < 0) {
        cr_assert(out.tag == COW_T_INT && out.u.i == -12345, "a failed del wrote *out");
        return rc;
    }
    if (h->pos[id] < 0) {
        cr_assert_eq(rc, COW_NOT_FOUND, "%s: del(%lld) of an absent key", h->what, (long long)id);
        cr_assert(out.tag == COW_T_INT && out.u.i == -12345, "del of an absent key wrote *out");
    }
    else {
        cr_assert_eq(rc, COW_FOUND, "%s: del(%lld) of a present key", h->what, (long long)id);
        cr_assert(val_is(&out, h->log[h->pos[id]].ver), "%s: del(%lld) value", h->what,
                  (long long)id);
        cow_val_release(&out);
        h_forget(h, id);
    }
    return rc;
}

static void
h_del(harness *h, int64_t id)
{
    cr_assert_geq(h_try_del(h, id), 0, "%s: del(%lld) failed", h->what, (long long)id);
    h_after(h, "del", id);
}

/* popitem on the map, checked against the model's last live entry. */
static int
h_try_popitem(harness *h)
{
    cow_val k = cow_val_none(), v = cow_val_none();
    size_t e = h->nlog;
    int rc;
    tu_fail_after(h_budget);
    rc = cow_map_popitem(h->m, &k, &v);
    tu_fail_after(-1);
    while (e > 0 && !h->log[e - 1].live)
        e--;
    if (e == 0) {
        cr_assert_eq(rc, COW_EKEY, "%s: popitem on an empty map", h->what);
        return rc;
    }
    if (rc < 0)
        return rc;
    mentry *last = &h->log[e - 1];
    cow_val want = key_for(h->kind, last->key);
    cr_assert_eq(rc, COW_OK, "%s: popitem", h->what);
    cr_assert(cow_val_equal(&k, &want), "%s: popitem returned a key other than the last (%lld)",
              h->what, (long long)last->key);
    cr_assert(val_is(&v, last->ver), "%s: popitem value", h->what);
    cow_val_release(&want);
    cow_val_release(&k);
    cow_val_release(&v);
    h_forget(h, last->key);
    return rc;
}

static void
h_popitem(harness *h)
{
    int rc = h_try_popitem(h);
    cr_assert(rc == COW_OK || rc == COW_EKEY, "%s: popitem failed: %d", h->what, rc);
    h_after(h, "popitem", -1);
}

static void
h_find(const harness *h, int64_t id)
{
    char buf[KEY_BUF];
    cow_val probe = probe_for(h->kind, id, buf);
    const cow_val *got = NULL;
    size_t e;
    int rc = tu_map_get(h->m, &probe, h_hash(h, id), &got);
    if (h->pos[id] < 0) {
        cr_assert_eq(rc, COW_NOT_FOUND, "%s: find(%lld) of an absent key", h->what,
                     (long long)id);
        return;
    }
    cr_assert_eq(rc, COW_FOUND, "%s: find(%lld) of a present key", h->what, (long long)id);
    cr_assert(val_is(got, h->log[h->pos[id]].ver), "%s: find(%lld) value", h->what,
              (long long)id);
    cr_assert_eq(cow_map_find(h->m, &probe, h_hash(h, id), &e), COW_FOUND);
    cr_assert(memcmp(tu_entry_val(h->m, e), got, sizeof *got) == 0,
              "find and get disagree on the entry");
}

/* The map's live entries, in log order, are exactly the model's. */
static void
h_verify(const harness *h)
{
    size_t me = 0, live = 0;
    cr_assert_eq(cow_map_len(h->m), h->live, "%s: len", h->what);
    for (size_t e = 0; e < cow_map_entries(h->m); e++) {
        const cow_val *k = tu_entry_key(h->m, e);
        cow_val want;
        if (k->tag == COW_T_HOLE)
            continue;
        while (me < h->nlog && !h->log[me].live)
            me++;
        cr_assert_lt(me, h->nlog, "%s: the map has more entries than the model", h->what);
        want = key_for(h->kind, h->log[me].key);
        cr_assert(cow_val_equal(k, &want) && k->tag == want.tag,
                  "%s: live entry %zu should have key %lld", h->what, live,
                  (long long)h->log[me].key);
        cr_assert(val_is(tu_entry_val(h->m, e), h->log[me].ver),
                  "%s: value of key %lld", h->what, (long long)h->log[me].key);
        cow_val_release(&want);
        me++;
        live++;
    }
    cr_assert_eq(live, h->live, "%s: the map lists %zu live entries, the model %zu", h->what,
                 live, h->live);
}

/* A copy of h sharing its map's nodes: cow_map_own on a retained map (the
 * same object, as the binding sees it) or cow_map_clone (a new one). */
static void
h_copy_by(harness *dst, harness *src, int clone, const char *what)
{
    long hnodes = cow_map_live_nodes(), vnodes = cow_vec_live_nodes();
    *dst = *src;
    dst->what = what;
    if (clone) {
        dst->m = cow_map_clone(src->m);
        cr_assert_not_null(dst->m);
        cr_assert_neq(dst->m->ident, src->m->ident, "a clone is a new object");
    }
    else {
        cow_map_retain(src->m);
        cr_assert_eq(tu_map_own(&dst->m), COW_OK);
        cr_assert_eq(dst->m->ident, src->m->ident, "own keeps the identity");
    }
    cr_assert_neq(dst->m, src->m, "a copy must have its own header");
    cr_assert_eq(src->m->refcnt, 1);
    cr_assert_eq(cow_map_live_nodes(), hnodes, "copying a map copies no index node");
    cr_assert_eq(cow_vec_live_nodes(), vnodes, "copying a map copies no log node");
    dst->log = malloc((src->caplog ? src->caplog : 1) * sizeof *dst->log);
    dst->pos = malloc((size_t)src->maxkey * sizeof *dst->pos);
    cr_assert(dst->log && dst->pos);
    if (src->nlog)
        memcpy(dst->log, src->log, src->nlog * sizeof *dst->log);
    memcpy(dst->pos, src->pos, (size_t)src->maxkey * sizeof *dst->pos);
}

static void
h_copy(harness *dst, harness *src, const char *what)
{
    h_copy_by(dst, src, 0, what);
}

/* One random step: set 50%, del 25%, popitem 5% (when allowed), find 20%. */
static void
h_random_step(harness *h, uint64_t *rng, int64_t ver, int allow_pop, int del_bias)
{
    size_t r = tu_below(rng, 100);
    int64_t id = (int64_t)tu_below(rng, (size_t)h->maxkey);
    if (r < 50u - (unsigned)del_bias)
        h_set(h, id, ver);
    else if (r < 75)
        h_del(h, id);
    else if (r < 80 && allow_pop)
        h_popitem(h);
    else
        h_find(h, id);
}

/* ---- dict semantics ----------------------------------------------------------- */

Test(map, insertion_order_like_python_dict)
{
    harness h;
    h_init(&h, K_STR, 16, NULL, 1, "order");
    h_set(&h, 0, 1);
    h_set(&h, 1, 2);
    h_set(&h, 2, 3);
    h_verify(&h);                   /* 0 1 2 */
    h_set(&h, 0, 10);               /* re-assigning keeps the position */
    h_verify(&h);                   /* 0 1 2 */
    cr_assert(val_is(tu_entry_val(h.m, 0), 10));
    h_del(&h, 0);
    h_set(&h, 0, 11);               /* delete then re-insert goes to the end */
    h_verify(&h);                   /* 1 2 0 */
    cr_assert_eq(h.log[h.pos[0]].key, 0);
    cr_assert_eq(h.pos[0], 3);
    h_popitem(&h);                  /* pops the last: 0 */
    h_verify(&h);                   /* 1 2 */
    cr_assert_eq(h.pos[0], -1);
    h_popitem(&h);
    h_popitem(&h);
    h_popitem(&h);                  /* empty: EKEY */
    cr_assert_eq(cow_map_len(h.m), 0);
    cr_assert_eq(cow_map_entries(h.m), 0, "trailing holes must be popped (H2)");
    h_free(&h);
}

Test(map, absent_keys_and_errors)
{
    cow_map *m = cow_map_new();
    cow_val k, v, probe = cow_val_str_view("nothing", 7);
    const cow_val *got = NULL;
    size_t e = 99;
    cr_assert_eq(cow_map_find(m, &probe, tu_hash(&probe), &e), COW_NOT_FOUND);
    cr_assert_eq(e, 99);
    cr_assert_eq(tu_map_get(m, &probe, tu_hash(&probe), &got), COW_NOT_FOUND);
    cr_assert_null(got);
    cr_assert_eq(cow_map_del(m, &probe, tu_hash(&probe), NULL), COW_NOT_FOUND);
    cr_assert_eq(cow_map_popitem(m, &k, &v), COW_EKEY);
    k = tu_str("nothing");
    cr_assert_eq(cow_map_set(m, k, tu_hash(&probe), tu_str("a value long enough for a blob")),
                 COW_OK);
    /* A str key is not found by a bytes probe with the same bytes. */
    cow_val bprobe = cow_val_bytes_view("nothing", 7);
    cr_assert_eq(cow_map_find(m, &bprobe, tu_hash(&bprobe), &e), COW_NOT_FOUND);
    cr_assert_eq(cow_map_del(m, &probe, tu_hash(&probe), NULL), COW_FOUND);
    cr_assert_eq(cow_map_len(m), 0);
    cr_assert_eq(cow_map_check(m), COW_OK);
    cow_map_release(m);
}

Test(map, replaced_and_deleted_values_are_released)
{
    cow_map *m = cow_map_new();
    cow_val k = cow_val_int(7), v = tu_str("a value long enough for a blob"), out;
    cow_blob *blob = cow_val_getblob(&v);
    uint64_t hk = tu_hash(&k);
    cow_val_retain(&v);             /* keep one reference to watch the count */
    cr_assert_eq(cow_map_set(m, k, hk, v), COW_OK);
    cr_assert_eq(blob->refcnt, 2);
    cr_assert_eq(cow_map_set(m, cow_val_float(7.0), hk, cow_val_int(1)), COW_OK);
    cr_assert_eq(blob->refcnt, 1, "a replaced value must be released");
    cr_assert_eq(cow_map_len(m), 1, "7.0 replaces the value of 7");
    cr_assert_eq(tu_entry_key(m, 0)->tag, COW_T_INT, "the original key object stays");
    cr_assert_eq(cow_map_set(m, cow_val_int(7), hk, v), COW_OK);
    cr_assert_eq(blob->refcnt, 1);
    cow_val_retain(&v);
    cr_assert_eq(cow_map_del(m, &k, hk, &out), COW_FOUND);
    cr_assert_eq(cow_val_getblob(&out), blob, "del hands the value over");
    cr_assert_eq(blob->refcnt, 2);
    cow_val_release(&out);
    cr_assert_eq(blob->refcnt, 1);
    cow_val_release(&v);
    cow_map_release(m);
}

Test(map, swap_exchanges_entries_and_keeps_identities)
{
    cow_map *a = cow_map_new(), *b;
    uint32_t ida = a->ident;
    for (int64_t i = 0; i < 40; i++) {
        cow_val k = cow_val_int(i);
        cr_assert_eq(cow_map_set(a, k, tu_hash(&k), cow_val_int(i)), COW_OK);
    }
    cr_assert_not_null(b = cow_map_clone(a));
    for (int64_t i = 40; i < 100; i++) {
        cow_val k = cow_val_int(i);
        cr_assert_eq(cow_map_set(a, k, tu_hash(&k), cow_val_int(i)), COW_OK);
    }
    cow_map_swap(a, b);             /* a as it was when cloned */
    cr_assert_eq(a->ident, ida);
    cr_assert_eq(a->refcnt, 1);
    cr_assert_eq(cow_map_len(a), 40);
    cr_assert_eq(cow_map_len(b), 100);
    cr_assert_eq(cow_map_check(a), COW_OK);
    cr_assert_eq(cow_map_check(b), COW_OK);
    cow_map_release(b);
    cr_assert_eq(cow_map_check(a), COW_OK);
    cow_map_release(a);
}

/* ---- random operations against the model ------------------------------------- */

static void
random_run(int kind, int64_t maxkey, uint64_t seed, int steps, const char *what)
{
    long vstart = cow_vec_live_nodes(), hstart = cow_map_live_nodes();
    uint64_t rng = seed;
    harness h;
    h_init(&h, kind, maxkey, NULL, 1, what);
    for (int step = 0; step < steps; step++) {
        /* Alternating phases: grow, then delete heavily (compaction). */
        int del_bias = (step / 500) % 2 ? 30 : 0;
        h_random_step(&h, &rng, step, 1, del_bias);
        if (step % 97 == 0)
            h_verify(&h);
    }
    h_verify(&h);
    for (int64_t id = 0; id < maxkey; id++)
        h_find(&h, id);
    h_free(&h);
    cr_assert_eq(cow_map_live_nodes(), hstart, "%s: index nodes leaked", what);
    cr_assert_eq(cow_vec_live_nodes(), vstart, "%s: log nodes leaked", what);
}

Test(map, random_ops_small_linear)
{
    for (uint64_t seed = 1; seed <= 20; seed++)
        random_run(K_MIX, 7, seed, 400, "linear, mixed keys");
}

Test(map, random_ops_crossing_linear_max)
{
    for (uint64_t seed = 1; seed <= 20; seed++) {
        random_run(K_INT, 14, seed, 600, "around COW_MAP_LINEAR_MAX, int keys");
        random_run(K_STR, 14, seed, 600, "around COW_MAP_LINEAR_MAX, str keys");
    }
}

Test(map, random_ops_large)
{
    random_run(K_INT, 300, 42, 6000, "int keys");
    random_run(K_STR, 300, 43, 6000, "str keys");
    random_run(K_MIX, 600, 44, 6000, "mixed keys");
    random_run(K_MIX, 2000, 45, 6000, "sparse mixed keys");
}

Test(map, many_keys_in_and_out)
{
    enum { N = 20000 };
    uint64_t rng = 99;
    int64_t *order = malloc(N * sizeof *order);
    harness h;
    cr_assert_not_null(order);
    h_init(&h, K_MIX, N, NULL, 0, "20000 keys");
    for (int64_t i = 0; i < N; i++) {
        h_set(&h, i, i);
        order[i] = i;
        if (i % 1000 == 999)
            cr_assert_eq(cow_map_check(h.m), COW_OK, "after %lld inserts", (long long)i + 1);
    }
    h_verify(&h);
    for (size_t i = N - 1; i > 0; i--) {        /* Fisher-Yates */
        size_t j = tu_below(&rng, i + 1);
        int64_t t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    for (size_t i = 0; i < N; i++) {
        h_del(&h, order[i]);
        if (i % 1000 == 0) {
            cr_assert_eq(cow_map_check(h.m), COW_OK, "after %zu deletes", i + 1);
            cr_assert_leq(cow_map_entries(h.m) - cow_map_len(h.m),
                          cow_map_len(h.m) > 16 ? cow_map_len(h.m) : 16,
                          "holes must not outnumber live entries for long");
        }
    }
    cr_assert_eq(cow_map_len(h.m), 0);
    cr_assert_eq(cow_map_entries(h.m), 0);
    cr_assert_null(h.m->index);
    h_free(&h);
    free(order);
    cr_assert_eq(cow_map_live_nodes(), 0);
    cr_assert_eq(cow_vec_live_nodes(), 0);
}

/* ---- thresholds ----------------------------------------------------------------- */

Test(map, index_appears_past_linear_max)
{
    harness h;
    h_init(&h, K_INT, 64, NULL, 1, "linear max");
    for (int64_t i = 0; i < COW_MAP_LINEAR_MAX; i++)
        h_set(&h, i, i);
    cr_assert_null(h.m->index, "%d entries need no index", COW_MAP_LINEAR_MAX);
    cr_assert_eq(cow_map_live_nodes(), 0);
    h_set(&h, COW_MAP_LINEAR_MAX, 100);
    cr_assert_not_null(h.m->index, "entry %d builds the index (H1)", COW_MAP_LINEAR_MAX + 1);
    cr_assert_gt(cow_map_live_nodes(), 0);
    for (int64_t i = 0; i <= COW_MAP_LINEAR_MAX; i++)
        h_find(&h, i);
    h_del(&h, 3);                   /* a hole in the middle: still 9 entries */
    cr_assert_not_null(h.m->index);
    h_del(&h, COW_MAP_LINEAR_MAX);  /* the last: popped, 8 entries */
    cr_assert_eq(cow_map_entries(h.m), COW_MAP_LINEAR_MAX);
    cr_assert_null(h.m->index, "back to %d entries drops the index (H1)", COW_MAP_LINEAR_MAX);
    cr_assert_eq(cow_map_live_nodes(), 0);
    h_set(&h, 40, 40);              /* the log still holds the hole: 9 entries */
    cr_assert_not_null(h.m->index);
    h_verify(&h);
    for (int64_t i = 0; i < 64; i++)
        h_find(&h, i);
    h_popitem(&h);
    cr_assert_null(h.m->index);
    h_verify(&h);
    h_free(&h);
    cr_assert_eq(cow_map_live_nodes(), 0);
}

Test(map, compaction_threshold)
{
    /* 40 entries: deleting from the front compacts once holes exceed live
     * entries (21 > 19), and not before. */
    harness h;
    h_init(&h, K_STR, 64, NULL, 1, "compaction");
    for (int64_t i = 0; i < 40; i++)
        h_set(&h, i, i);
    for (int64_t i = 0; i < 20; i++) {
        h_del(&h, i);
        cr_assert_eq(cow_map_entries(h.m), 40, "no compaction with %lld holes", (long long)i + 1);
    }
    h_del(&h, 20);
    cr_assert_eq(cow_map_entries(h.m), 19, "21 holes > 19 live: compacted");
    cr_assert_not_null(h.m->index);
    h_verify(&h);
    for (int64_t i = 0; i < 64; i++)
        h_find(&h, i);
    h_free(&h);

    /* 20 entries: holes dominate early, but compaction waits for 16 of them. */
    h_init(&h, K_INT, 64, NULL, 1, "compaction minimum");
    for (int64_t i = 0; i < 20; i++)
        h_set(&h, i, i);
    for (int64_t i = 0; i < COW_MAP_COMPACT_MIN - 1; i++) {
        h_del(&h, i);
        cr_assert_eq(cow_map_entries(h.m), 20);
    }
    h_del(&h, COW_MAP_COMPACT_MIN - 1);
    cr_assert_eq(cow_map_entries(h.m), 20 - COW_MAP_COMPACT_MIN);
    cr_assert_null(h.m->index, "compacted to 4 entries: no index (H1)");
    h_verify(&h);
    h_set(&h, 0, 1000);             /* re-inserted after compaction: goes last */
    h_verify(&h);
    h_free(&h);
    cr_assert_eq(cow_map_live_nodes(), 0);
}

/* ---- copies ------------------------------------------------------------------------ */

static void
copies_isolated(int kind, int64_t n, uint64_t seed, int clone)
{
    long vstart = cow_vec_live_nodes(), hstart = cow_map_live_nodes();
    uint64_t rng = seed;
    harness a, b;
    h_init(&a, kind, 4 * n + 8, NULL, 1, "original");
    for (int64_t i = 0; i < n; i++)
        h_set(&a, i, i);
    h_copy_by(&b, &a, clone, clone ? "clone" : "copy");
    cr_assert(cow_map_equal(a.m, b.m));
    for (int step = 0; step < 300; step++)     /* the copy moves */
        h_random_step(&b, &rng, 1000 + step, 1, 0);
    h_verify(&a);
    h_verify(&b);
    for (int64_t id = 0; id < a.maxkey; id++)
        h_find(&a, id);
    for (int step = 0; step < 300; step++)     /* the original moves */
        h_random_step(&a, &rng, 2000 + step, 1, 0);
    h_verify(&a);
    h_verify(&b);
    for (int64_t id = 0; id < b.maxkey; id++)
        h_find(&b, id);
    h_free(&a);
    h_verify(&b);
    h_free(&b);
    cr_assert_eq(cow_map_live_nodes(), hstart);
    cr_assert_eq(cow_vec_live_nodes(), vstart);
}

Test(map, copies_are_isolated_both_ways)
{
    for (int clone = 0; clone < 2; clone++) {
        copies_isolated(K_INT, 5, 1, clone);
        copies_isolated(K_STR, 9, 2, clone);
        copies_isolated(K_MIX, 60, 3, clone);
        copies_isolated(K_MIX, 1500, 4, clone);
    }
}

Test(map, shared_map_survives_release_of_copy)
{
    harness a, b;
    h_init(&a, K_STR, 100, NULL, 1, "original");
    for (int64_t i = 0; i < 50; i++)
        h_set(&a, i, i);
    h_copy(&b, &a, "copy");
    h_del(&b, 10);
    h_set(&b, 99, 99);
    h_free(&b);
    h_verify(&a);
    for (int64_t i = 0; i < 100; i++)
        h_find(&a, i);
    h_free(&a);
    cr_assert_eq(cow_map_live_nodes(), 0);
    cr_assert_eq(cow_vec_live_nodes(), 0);
}

/* ---- real collisions ---------------------------------------------------------------- */

/* The map's index hash: the 64-bit key hash folded to 32 bits (map.c). */
static uint32_t
fold32(uint64_t h)
{
    return (uint32_t)(h ^ (h >> 32));
}

/* Found offline by a birthday search over cow_val_hash: within each group the
 * keys' folded hashes are equal. */
static const int64_t INT_TRIPLE_A[3] = {3591099, 7897578, 12915933};
static const int64_t INT_TRIPLE_B[3] = {2644078, 5062211, 15250668};
static const char *const STR_PAIRS[][2] = {
    {"c15184", "collide-long-40441"},                   /* inline / blob */
    {"c296970", "c390300"},                             /* inline / inline */
    {"collide-long-233665", "collide-long-368945"},     /* blob / blob */
};

Test(map, real_collision_premise)
{
    for (int g = 0; g < 2; g++) {
        const int64_t *t = g ? INT_TRIPLE_B : INT_TRIPLE_A;
        cow_val a = cow_val_int(t[0]), b = cow_val_int(t[1]), c = cow_val_int(t[2]);
        cr_assert_eq(fold32(tu_hash(&a)), fold32(tu_hash(&b)), "int group %d", g);
        cr_assert_eq(fold32(tu_hash(&a)), fold32(tu_hash(&c)), "int group %d", g);
        cr_assert_neq(tu_hash(&a), tu_hash(&b), "full hashes differ: only the fold collides");
    }
    for (size_t p = 0; p < sizeof STR_PAIRS / sizeof *STR_PAIRS; p++) {
        cow_val a = cow_val_str_view(STR_PAIRS[p][0], strlen(STR_PAIRS[p][0]));
        cow_val b = cow_val_str_view(STR_PAIRS[p][1], strlen(STR_PAIRS[p][1]));
        cr_assert_eq(fold32(tu_hash(&a)), fold32(tu_hash(&b)), "str pair %zu", p);
    }
}

/* All the colliding keys as owned values, plus how many there are. */
#define NCOLL (6 + 2 * (int)(sizeof STR_PAIRS / sizeof *STR_PAIRS))

static cow_val
coll_key(int i)
{
    if (i < 3)
        return cow_val_int(INT_TRIPLE_A[i]);
    if (i < 6)
        return cow_val_int(INT_TRIPLE_B[i - 3]);
    return tu_str("%s", STR_PAIRS[(i - 6) / 2][(i - 6) % 2]);
}

static void
set_coll(cow_map *m, int i, int64_t ver)
{
    cow_val k = coll_key(i);
    uint64_t h = tu_hash(&k);
    cr_assert_eq(cow_map_set(m, k, h, val_for(ver)), COW_OK);
    cr_assert_eq(cow_map_check(m), COW_OK, "after setting colliding key %d", i);
}

static int
find_coll(const cow_map *m, int i, const cow_val **val)
{
    char buf[KEY_BUF];
    cow_val k = coll_key(i), probe = k;
    const char *p;
    size_t n;
    int rc;
    if (k.tag != COW_T_INT) {           /* probe str keys through a view */
        cow_val_span(&k, &p, &n);
        memcpy(buf, p, n);
        probe = cow_val_str_view(buf, n);
    }
    rc = tu_map_get(m, &probe, tu_hash(&probe), val);
    cow_val_release(&k);
    return rc;
}

Test(map, real_collisions_every_operation)
{
    for (uint64_t seed = 1; seed <= 12; seed++) {
        uint64_t rng = seed;
        int order[NCOLL], present[NCOLL] = {0};
        cow_map *m = cow_map_new();
        const cow_val *got;
        /* Fillers first in half the runs, so collisions meet the index both
         * through incremental inserts and through index_build. */
        int fillers = seed % 2 ? 10 : 0;
        for (int i = 0; i < fillers; i++) {
            cow_val k = cow_val_int(-1 - i);
            cr_assert_eq(cow_map_set(m, k, tu_hash(&k), cow_val_none()), COW_OK);
        }
        for (int i = 0; i < NCOLL; i++)
            order[i] = i;
        for (int i = NCOLL - 1; i > 0; i--) {
            int j = (int)tu_below(&rng, (size_t)i + 1), t = order[i];
            order[i] = order[j];
            order[j] = t;
        }
        for (int i = 0; i < NCOLL; i++) {
            set_coll(m, order[i], order[i]);
            present[order[i]] = 1;
            for (int k = 0; k < NCOLL; k++) {
                int rc = find_coll(m, k, &got);
                cr_assert_eq(rc, present[k] ? COW_FOUND : COW_NOT_FOUND,
                             "seed %llu: colliding key %d after inserting %d",
                             (unsigned long long)seed, k, order[i]);
                if (present[k])
                    cr_assert(val_is(got, k));
            }
        }
        /* Replace in place, delete half, pop the rest; validate each step. */
        for (int i = 0; i < NCOLL; i++)
            set_coll(m, i, 100 + i);
        for (int i = 0; i < NCOLL; i += 2) {
            cow_val k = coll_key(order[i]);
            cr_assert_eq(cow_map_del(m, &k, tu_hash(&k), NULL), COW_FOUND);
            cr_assert_eq(cow_map_check(m), COW_OK, "seed %llu: after deleting %d",
                         (unsigned long long)seed, order[i]);
            present[order[i]] = 0;
            cow_val_release(&k);
        }
        for (int k = 0; k < NCOLL; k++) {
            cr_assert_eq(find_coll(m, k, &got), present[k] ? COW_FOUND : COW_NOT_FOUND);
            if (present[k])
                cr_assert(val_is(got, 100 + k));
        }
        while (cow_map_len(m) > 0) {
            cow_val k, v;
            cr_assert_eq(cow_map_popitem(m, &k, &v), COW_OK);
            cr_assert_eq(cow_map_check(m), COW_OK, "seed %llu: after popitem",
                         (unsigned long long)seed);
            cow_val_release(&k);
            cow_val_release(&v);
        }
        cow_map_release(m);
        cr_assert_eq(cow_map_live_nodes(), 0);
    }
}

Test(map, real_collisions_in_copies)
{
    cow_map *a = cow_map_new(), *b;
    const cow_val *got;
    for (int i = 0; i < 10; i++) {
        cow_val k = cow_val_int(-1 - i);
        cr_assert_eq(cow_map_set(a, k, tu_hash(&k), cow_val_none()), COW_OK);
    }
    for (int i = 0; i < NCOLL; i++)
        set_coll(a, i, i);
    b = a;
    cow_map_retain(a);
    cr_assert_eq(tu_map_own(&b), COW_OK);
    for (int i = 0; i < NCOLL; i += 3) {          /* delete from the copy */
        cow_val k = coll_key(i);
        cr_assert_eq(cow_map_del(b, &k, tu_hash(&k), NULL), COW_FOUND);
        cow_val_release(&k);
    }
    set_coll(b, 1, 500);                          /* replace in the copy */
    set_coll(a, 2, 600);                          /* replace in the original */
    cr_assert_eq(cow_map_check(a), COW_OK);
    cr_assert_eq(cow_map_check(b), COW_OK);
    for (int i = 0; i < NCOLL; i++) {
        cr_assert_eq(find_coll(a, i, &got), COW_FOUND, "original lost colliding key %d", i);
        cr_assert(val_is(got, i == 2 ? 600 : i));
        cr_assert_eq(find_coll(b, i, &got), i % 3 ? COW_FOUND : COW_NOT_FOUND, "copy key %d", i);
        if (i % 3)
            cr_assert(val_is(got, i == 1 ? 500 : i));
    }
    cow_map_release(a);
    cr_assert_eq(cow_map_check(b), COW_OK);
    cow_map_release(b);
    cr_assert_eq(cow_map_live_nodes(), 0);
}

/* ---- real collisions: keys built to hash where a test wants ----------------------------- */

/* The index keeps no hashes (map.c): a split rehashes the key already in a
 * slot, so the hash given to cow_map_set must be the key's own.  Colliding
 * keys are built by running the stable hash (hash.c, pinned by test_hash.c)
 * backwards: each of its steps is a bijection on 64-bit words. */
#define ROUND_MUL 0x9fb21c651e98df25ULL     /* hash.c's word multiplier */

/* The inverse of an odd multiplier mod 2^64 (Newton: each step doubles the
 * correct low bits). */
static uint64_t
inv_mul(uint64_t m)
{
    uint64_t x = m;
    for (int i = 0; i < 6; i++)
        x *= 2 - m * x;
    return x;
}

/* x with x ^= x >> s undone. */
static uint64_t
unxorshift(uint64_t x, unsigned s)
{
    uint64_t y = x;
    for (unsigned k = s; k < 64; k += s)
        y = x ^ (y >> s);
    return y;
}

/* The x whose cow_hash_mix64 is h. */
static uint64_t
unmix64(uint64_t h)
{
    h = unxorshift(h, 31);
    h *= inv_mul(0x94d049bb133111ebULL);
    h = unxorshift(h, 27);
    h *= inv_mul(0xbf58476d1ce4e5b9ULL);
    return unxorshift(h, 30);
}

/* An int key whose hash is h. */
static cow_val
int_hashing_to(uint64_t h)
{
    cow_val k = cow_val_int((int64_t)unmix64(h));
    cr_assert_eq(tu_hash(&k), h);
    return k;
}

/* An 8-byte str (or bytes) key whose hash is h: one word, no tail. */
static cow_val
span_hashing_to(uint64_t h, int is_str)
{
    uint64_t x = unmix64(h), w, seed = is_str ? COW_SEED_STR : COW_SEED_BYTES;
    unsigned char raw[8];
    cow_val k;
    x ^= x >> 32;       /* self-inverse */
    w = (x * inv_mul(ROUND_MUL)) ^ (seed ^ 8 * ROUND_MUL);
    for (int i = 0; i < 8; i++)
        raw[i] = (unsigned char)(w >> (8 * i));
    if (is_str)
        cr_assert_eq(cow_val_str(&k, (const char *)raw, 8), COW_OK);
    else
        k = tu_bytes(raw, 8);
    cr_assert_eq(tu_hash(&k), h);
    return k;
}

/* The element hash a one- or two-entry map or set must add to acc_have
 * so that it hashes to h (cow_map_hash: mix(seed * M + acc + live)). */
static uint64_t
acc_needed(uint64_t h, uint64_t seed, uint64_t live, uint64_t acc_have)
{
    return unmix64(h) - seed * ROUND_MUL - live - acc_have;
}

/* The frozenset {a, b} hashing to h, b chosen to make it so; `swap` inserts
 * b first (the same set, built in the other order). */
static cow_val
fset_hashing_to(uint64_t h, int64_t a, int swap)
{
    cow_map *s = cow_map_new();
    cow_val ka = cow_val_int(a), kb, probe;
    uint64_t zero = cow_hash_mix64(0), ea = cow_hash_mix64(tu_hash(&ka) ^ zero);
    kb = int_hashing_to(unmix64(acc_needed(h, COW_SEED_SET, 2, ea)) ^ zero);
    cr_assert_eq(cow_map_set(s, swap ? kb : ka, tu_hash(swap ? &kb : &ka), cow_val_none()), COW_OK);
    cr_assert_eq(cow_map_set(s, swap ? ka : kb, tu_hash(swap ? &ka : &kb), cow_val_none()), COW_OK);
    probe = cow_val_map(COW_T_FSET, s);
    cr_assert_eq(tu_hash(&probe), h);
    return probe;
}

/* The tuple (k,) hashing to h (vec_hash: combine(combine(seed, hk), 1)). */
static cow_val
tuple_hashing_to(uint64_t h)
{
    cow_vec *t = cow_vec_new();
    uint64_t acc1 = (unmix64(h) - 1) * inv_mul(ROUND_MUL);
    cow_val tuple;
    cr_assert_eq(cow_vb_push(&t->b, int_hashing_to(unmix64(acc1) - COW_SEED_TUPLE * ROUND_MUL)),
                 COW_OK);
    tuple = cow_val_vec(COW_T_TUPLE, t);
    cr_assert_eq(tu_hash(&tuple), h);
    return tuple;
}

/* The frozen dict {k: 100} hashing to h. */
static cow_val
fdict_hashing_to(uint64_t h)
{
    cow_map *d = cow_map_new();
    cow_val v = cow_val_int(100), k, out;
    uint64_t hv = cow_hash_mix64(tu_hash(&v));
    k = int_hashing_to(unmix64(acc_needed(h, COW_SEED_MAP, 1, 0)) ^ hv);
    cr_assert_eq(cow_map_set(d, k, tu_hash(&k), v), COW_OK);
    out = cow_val_map(COW_T_FDICT, d);
    cr_assert_eq(tu_hash(&out), h);
    return out;
}

Test(map, colliding_keys_are_built_right)
{
    cow_val a = fset_hashing_to(0x1234, 7, 0), b = fset_hashing_to(0x1234, 7, 1);
    cr_assert(cow_val_equal(&a, &b));
    cow_val_release(&a);
    cow_val_release(&b);
}

/* Three classes of forced keys.  Class 0 keys share one 32-bit index hash
 * (collision nodes), class 1 differs from it only in bit 31 (a chain of
 * bitmap nodes down to the last level), class 2 only in bit 0 (split at the
 * root).  The 64-bit hashes differ by key: the index folds them to 32 bits. */
#define FAKE_HASH 0x5eed5eed12345678ULL
#define FILLERS 12

static uint64_t
forced_hash(int64_t id)
{
    static const uint32_t flip[3] = {0, 1u << 31, 1};
    uint32_t hi = (uint32_t)((uint64_t)id * 2654435761u) + 1u;
    uint32_t want = (uint32_t)(FAKE_HASH ^ (FAKE_HASH >> 32)) ^ flip[id % 3];
    return (uint64_t)hi << 32 | (hi ^ want);
}

static cow_val forced_key(int64_t id) { return int_hashing_to(forced_hash(id)); }
static int64_t forced_fillers(void) { return FILLERS; }

Test(map, forced_collisions_many_keys)
{
    enum { NKEYS = 90 };
    harness h;
    h_init(&h, K_FORCED, FILLERS + NKEYS, NULL, 0, "forced collisions");
    for (int64_t i = 0; i < FILLERS; i++)
        h_set(&h, i, i);
    cr_assert_not_null(h.m->index);
    for (int64_t i = FILLERS; i < FILLERS + NKEYS; i++) {
        h_set(&h, i, i);
        for (int64_t j = 0; j < FILLERS + NKEYS; j++)
            h_find(&h, j);
    }
    h_verify(&h);
    /* The classes collide as meant: in all 32 index bits, or all but one. */
    {
        cow_val a = key_for(K_FORCED, FILLERS), b = key_for(K_FORCED, FILLERS + 3);
        cow_val c = key_for(K_FORCED, FILLERS + 1);
        uint64_t ha = tu_hash(&a), hb = tu_hash(&b), hc = tu_hash(&c);
        cr_assert_neq(ha, hb);
        cr_assert_eq((uint32_t)(ha ^ ha >> 32), (uint32_t)(hb ^ hb >> 32));
        cr_assert_eq((uint32_t)(ha ^ ha >> 32) ^ (uint32_t)(hc ^ hc >> 32), 1u << 31);
    }
    for (int64_t i = FILLERS; i < FILLERS + NKEYS; i += 3)    /* a third go */
        h_del(&h, i);
    for (int64_t j = 0; j < FILLERS + NKEYS; j++)
        h_find(&h, j);
    for (int64_t i = FILLERS; i < FILLERS + NKEYS; i += 3)    /* and come back last */
        h_set(&h, i, 1000 + i);
    for (int64_t i = FILLERS + 1; i < FILLERS + NKEYS; i += 3)
        h_set(&h, i, 2000 + i);                                 /* in place */
    h_verify(&h);
    for (int64_t j = 0; j < FILLERS + NKEYS; j++)
        h_find(&h, j);
    cr_assert_eq(cow_map_entries(h.m) - cow_map_len(h.m), NKEYS / 3,
                 "the test relies on no compaction");
    h_free(&h);
    cr_assert_eq(cow_map_live_nodes(), 0);
    cr_assert_eq(cow_vec_live_nodes(), 0);
}

Test(map, forced_collisions_random_ops)
{
    /* Short runs, so holes never outnumber the live fillers: no compaction. */
    for (uint64_t seed = 1; seed <= 40; seed++) {
        uint64_t rng = seed;
        harness h;
        h_init(&h, K_FORCED, FILLERS + 40, NULL, 0, "forced collisions, random");
        for (int64_t i = 0; i < FILLERS; i++)
            h_set(&h, i, i);
        for (int step = 0; step < 150; step++) {
            int64_t id = FILLERS + (int64_t)tu_below(&rng, 40);
            size_t r = tu_below(&rng, 10);
            if (r < 5)
                h_set(&h, id, step);
            else if (r < 8)
                h_del(&h, id);
            else
                h_find(&h, id);
            cr_assert_leq(cow_map_entries(h.m) - cow_map_len(h.m), cow_map_len(h.m),
                          "seed %llu: the test relies on no compaction",
                          (unsigned long long)seed);
        }
        h_verify(&h);
        for (int64_t id = 0; id < FILLERS + 40; id++)
            h_find(&h, id);
        h_free(&h);
    }
    cr_assert_eq(cow_map_live_nodes(), 0);
}

/* Frozen sets as keys: all of one kind compare 0 under cow_val_order, so a
 * collision bucket holds them as one run that lookups scan (H4).  Every key
 * here hashes to FAKE_HASH. */
Test(map, forced_collisions_container_keys)
{
    enum { NSETS = 12 };
    cow_map *m = cow_map_new();
    const cow_val *got;
    for (int i = 0; i < FILLERS; i++) {
        cow_val k = cow_val_int(-1 - i);
        cr_assert_eq(cow_map_set(m, k, tu_hash(&k), cow_val_none()), COW_OK);
    }
    for (int i = 0; i < NSETS; i++)
        cr_assert_eq(cow_map_set(m, fset_hashing_to(FAKE_HASH, i, 0), FAKE_HASH, cow_val_int(i)),
                     COW_OK);
    /* The same hash, other kinds: a tuple, a frozen dict, an int, str, bytes. */
    cr_assert_eq(cow_map_set(m, tuple_hashing_to(FAKE_HASH), FAKE_HASH, cow_val_int(-5)), COW_OK);
    cr_assert_eq(cow_map_set(m, fdict_hashing_to(FAKE_HASH), FAKE_HASH, cow_val_int(-6)), COW_OK);
    cr_assert_eq(cow_map_set(m, int_hashing_to(FAKE_HASH), FAKE_HASH, cow_val_int(-7)), COW_OK);
    cr_assert_eq(cow_map_set(m, span_hashing_to(FAKE_HASH, 1), FAKE_HASH, cow_val_int(-8)), COW_OK);
    cr_assert_eq(cow_map_set(m, span_hashing_to(FAKE_HASH, 0), FAKE_HASH, cow_val_int(-9)), COW_OK);
    cr_assert_eq(cow_map_check(m), COW_OK);
    for (int i = 0; i < NSETS; i++) {
        cow_val probe = fset_hashing_to(FAKE_HASH, i, 1);    /* same set, other order */
        cr_assert_eq(tu_map_get(m, &probe, FAKE_HASH, &got), COW_FOUND, "frozenset %d", i);
        cr_assert_eq(got->u.i, i);
        cow_val_release(&probe);
    }
    {
        cow_val probes[] = {fset_hashing_to(FAKE_HASH, 1000, 0), tuple_hashing_to(FAKE_HASH),
                            fdict_hashing_to(FAKE_HASH), int_hashing_to(FAKE_HASH),
                            span_hashing_to(FAKE_HASH, 1), span_hashing_to(FAKE_HASH, 0)};
        for (int i = 0; i < 6; i++) {
            cr_assert_eq(tu_map_get(m, &probes[i], FAKE_HASH, &got),
                         i ? COW_FOUND : COW_NOT_FOUND, "probe %d", i);
            cr_assert(i == 0 || got->u.i == -4 - i, "probe %d", i);
            cow_val_release(&probes[i]);
        }
    }
    for (int i = 0; i < NSETS; i += 2) {
        cow_val probe = fset_hashing_to(FAKE_HASH, i, 0);
        cr_assert_eq(cow_map_del(m, &probe, FAKE_HASH, NULL), COW_FOUND, "del frozenset %d", i);
        cow_val_release(&probe);
    }
    cr_assert_eq(cow_map_check(m), COW_OK);
    for (int i = 0; i < NSETS; i++) {
        cow_val probe = fset_hashing_to(FAKE_HASH, i, 0);
        cr_assert_eq(tu_map_get(m, &probe, FAKE_HASH, &got), i % 2 ? COW_FOUND : COW_NOT_FOUND,
                     "frozenset %d after deletes", i);
        cow_val_release(&probe);
    }
    cow_map_release(m);
    cr_assert_eq(cow_map_live_nodes(), 0);
    cr_assert_eq(cow_vec_live_nodes(), 0);
}

/* ---- whole-map equality and hash ------------------------------------------------------ */

/* A map of ids[0..n) -> val_for(id * mult), inserted in the given order. */
static cow_map *
map_of(int kind, const int64_t *ids, size_t n, int64_t mult)
{
    cow_map *m = cow_map_new();
    for (size_t i = 0; i < n; i++) {
        cow_val k = key_for(kind, ids[i]);
        uint64_t h = tu_hash(&k);
        cr_assert_eq(cow_map_set(m, k, h, val_for(ids[i] * mult)), COW_OK);
    }
    cr_assert_eq(cow_map_check(m), COW_OK);
    return m;
}

static uint64_t
map_hash(const cow_map *m, int is_set)
{
    uint64_t h;
    cr_assert_eq(cow_map_hash(m, is_set, &h), COW_OK);
    return h;
}

Test(map, equal_and_hash_ignore_order)
{
    static const size_t sizes[] = {0, 1, 5, 8, 9, 100, 1000};
    uint64_t rng = 5;
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
        size_t n = sizes[s];
        int64_t *ids = malloc((n + 1) * sizeof *ids), *shuf = malloc((n + 1) * sizeof *shuf);
        cr_assert(ids && shuf);
        for (size_t i = 0; i < n; i++)
            ids[i] = shuf[i] = (int64_t)i;
        for (size_t i = n; i > 1; i--) {
            size_t j = tu_below(&rng, i);
            int64_t t = shuf[i - 1];
            shuf[i - 1] = shuf[j];
            shuf[j] = t;
        }
        cow_map *a = map_of(K_MIX, ids, n, 1), *b = map_of(K_MIX, shuf, n, 1);
        cow_map *c = map_of(K_MIX, shuf, n, 2);      /* same keys, other values */
        cr_assert(cow_map_equal(a, b), "size %zu: order must not matter", n);
        cr_assert(cow_map_equal(b, a));
        cr_assert_eq(map_hash(a, 0), map_hash(b, 0), "size %zu: dict hash depends on order", n);
        cr_assert_eq(map_hash(a, 1), map_hash(b, 1), "size %zu: set hash depends on order", n);
        cr_assert_eq(map_hash(a, 1), map_hash(c, 1), "size %zu: a set hash ignores values", n);
        if (n > 1) {
            cr_assert_not(cow_map_equal(a, c), "size %zu: values differ", n);
            cr_assert_neq(map_hash(a, 0), map_hash(c, 0));
            cr_assert_neq(map_hash(a, 0), map_hash(a, 1), "dict and set hashes stay apart");
        }
        if (n > 0) {                                 /* one key fewer */
            cow_map *d = map_of(K_MIX, shuf, n - 1, 1);
            cr_assert_not(cow_map_equal(a, d), "size %zu vs %zu", n, n - 1);
            cr_assert_not(cow_map_equal(d, a));
            cr_assert_neq(map_hash(a, 0), map_hash(d, 0));
            cow_map_release(d);
        }
        cow_map_release(a);
        cow_map_release(b);
        cow_map_release(c);
        free(ids);
        free(shuf);
    }
    cr_assert_eq(cow_map_live_nodes(), 0);
}

Test(map, equal_across_holes_and_numeric_keys)
{
    /* a: 30 keys with 10 deleted (holes in its log); b: the 20 survivors
     * inserted fresh, backwards, with float keys for the even ints. */
    cow_map *a = cow_map_new(), *b = cow_map_new();
    for (int64_t i = 0; i < 30; i++) {
        cow_val k = cow_val_int(i);
        cr_assert_eq(cow_map_set(a, k, tu_hash(&k), val_for(i)), COW_OK);
    }
    for (int64_t i = 0; i < 30; i += 3) {
        cow_val k = cow_val_int(i);
        cr_assert_eq(cow_map_del(a, &k, tu_hash(&k), NULL), COW_FOUND);
    }
    cr_assert_gt(cow_map_entries(a), cow_map_len(a), "a must keep holes");
    for (int64_t i = 29; i >= 0; i--) {
        if (i % 3 == 0)
            continue;
        cow_val k = i % 2 ? cow_val_int(i) : cow_val_float((double)i);
        cr_assert_eq(cow_map_set(b, k, tu_hash(&k), val_for(i)), COW_OK);
    }
    cr_assert(cow_map_equal(a, b));
    cr_assert(cow_map_equal(b, a));
    cr_assert_eq(map_hash(a, 0), map_hash(b, 0));
    /* 1 == True == 1.0 as values too. */
    cow_val k1 = cow_val_int(1);
    cr_assert_eq(cow_map_set(a, cow_val_int(1), tu_hash(&k1), cow_val_float(1.0)), COW_OK);
    cr_assert_eq(cow_map_set(b, cow_val_int(1), tu_hash(&k1), cow_val_bool(1)), COW_OK);
    cr_assert(cow_map_equal(a, b));
    cr_assert_eq(map_hash(a, 0), map_hash(b, 0));
    cr_assert_eq(cow_map_set(b, cow_val_int(1), tu_hash(&k1), cow_val_int(2)), COW_OK);
    cr_assert_not(cow_map_equal(a, b));
    cow_map_release(a);
    cow_map_release(b);
}

Test(map, copy_equals_original_until_changed)
{
    int64_t ids[50];
    for (int i = 0; i < 50; i++)
        ids[i] = i;
    cow_map *a = map_of(K_STR, ids, 50, 1), *b = a;
    cow_map_retain(a);
    cr_assert_eq(tu_map_own(&b), COW_OK);
    cr_assert(cow_map_equal(a, b));
    cr_assert_eq(map_hash(a, 0), map_hash(b, 0));
    cow_val k = key_for(K_STR, 7);
    cr_assert_eq(cow_map_set(b, k, tu_hash(&k), val_for(-1)), COW_OK);
    cr_assert_not(cow_map_equal(a, b));
    cr_assert_neq(map_hash(a, 0), map_hash(b, 0));
    cow_map_release(a);
    cow_map_release(b);
}

/* ---- NaN keys and huge collision buckets --------------------------------------------- */

Test(map, nan_keys_keep_the_index_valid)
{
    /* NaN never equals itself, so each NaN set adds an entry; equal bit
     * patterns share a full hash, so they meet in one collision bucket that
     * must still satisfy H4. */
    cow_map *m = cow_map_new();
    cow_val nan = cow_val_float(NAN), k, v;
    const cow_val *got;
    uint64_t hn = tu_hash(&nan);
    for (int i = 0; i < 10; i++) {
        k = cow_val_int(i);
        cr_assert_eq(cow_map_set(m, k, tu_hash(&k), cow_val_none()), COW_OK);
    }
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(cow_map_set(m, cow_val_float(NAN), hn, cow_val_int(i)), COW_OK);
        cr_assert_eq(cow_map_len(m), 11u + (unsigned)i, "every NaN is a new key");
        cr_assert_eq(cow_map_check(m), COW_OK, "after inserting NaN key %d", i);
    }
    cr_assert_eq(tu_map_get(m, &nan, hn, &got), COW_NOT_FOUND);
    cr_assert_eq(cow_map_del(m, &nan, hn, NULL), COW_NOT_FOUND);
    for (int i = 3; i >= 0; i--) {
        cr_assert_eq(cow_map_popitem(m, &k, &v), COW_OK);
        cr_assert(k.tag == COW_T_FLOAT && isnan(k.u.f) && v.u.i == i, "popitem order");
        cr_assert_eq(cow_map_check(m), COW_OK, "after popping NaN key %d", i);
    }
    cr_assert_eq(cow_map_len(m), 10);
    cow_map_release(m);
    cr_assert_eq(cow_map_live_nodes(), 0);
}

Test(map, collision_bucket_limit, .timeout = 120)
{
    /* A collision node counts its leaves in 16 bits.  The hash is unseeded
     * and invertible, so hostile input can make any number of keys share one
     * 32-bit hash; past the limit the map must refuse the key (COW_EOVERFLOW)
     * rather than lose the bucket.  Quadratic copying makes this slow under
     * ASan (~30 s), so it runs only with COWSTORE_SLOW_TESTS=1. */
    enum { LIMIT = UINT16_MAX };
    cow_map *m;
    size_t e;
    if (getenv("COWSTORE_SLOW_TESTS") == NULL)
        cr_skip_test("set COWSTORE_SLOW_TESTS=1 to run (about 30 s under ASan)");
    m = cow_map_new();
    for (int i = 0; i < FILLERS; i++) {
        cow_val k = cow_val_int(-1 - i);
        cr_assert_eq(cow_map_set(m, k, tu_hash(&k), cow_val_none()), COW_OK);
    }
    for (int64_t i = 0; i < LIMIT; i++) {
        cow_val k = int_hashing_to(forced_hash(3 * i));
        cr_assert_eq(cow_map_set(m, k, tu_hash(&k), cow_val_none()), COW_OK,
                     "colliding key %lld", (long long)i);
    }
    cr_assert_eq(cow_map_set(m, int_hashing_to(forced_hash(3 * LIMIT)), forced_hash(3 * LIMIT),
                             tu_str("a blob that the refused set must release")),
                 COW_EOVERFLOW);
    cr_assert_eq(cow_map_len(m), FILLERS + LIMIT, "a refused key leaves no entry");
    cr_assert_eq(cow_map_entries(m), FILLERS + LIMIT);
    for (int64_t i = 0; i <= LIMIT; i++) {
        cow_val k = int_hashing_to(forced_hash(3 * i));
        cr_assert_eq(cow_map_find(m, &k, tu_hash(&k), &e), i < LIMIT ? COW_FOUND : COW_NOT_FOUND,
                     "colliding key %lld", (long long)i);
    }
    cow_map_release(m);
    cr_assert_eq(cow_map_live_nodes(), 0);
}
/* ---- allocation failure --------------------------------------------------------------- */

enum { OP_SET_NEW, OP_SET_OLD, OP_DEL, OP_DEL_LAST, OP_POP };

typedef struct fault_case {
    const char *what;
    int kind;
    int64_t n;          /* keys 0..n-1 are inserted first */
    int64_t predel;     /* then keys 0..predel-1 deleted */
    int shared;         /* a copy shares every node while the operation runs */
    int op;
    int64_t gap;        /* and keys n-1-gap..n-2, the ones before the last */
} fault_case;

static int
run_op(harness *h, const fault_case *fc)
{
    switch (fc->op) {
    case OP_SET_NEW: return h_try_set(h, fc->n + 5, 1000);
    case OP_SET_OLD: return h_try_set(h, fc->n - 1, 1000);
    case OP_DEL: return h_try_del(h, fc->predel + (fc->n - fc->predel) / 2);
    case OP_DEL_LAST: return h_try_del(h, fc->n - 1);
    default: return h_try_popitem(h);
    }
}

/* Runs the operation with 0, 1, 2... allocations allowed until it succeeds.
 * Each failure must report COW_ENOMEM and leave the map (and its copy)
 * valid and unchanged, and usable: the same operation then succeeds. */
static void
fault_run(const fault_case *fc)
{
    long failures = 0;
    for (long budget = 0;; budget++) {
        harness h, copy;
        int rc;
        h_init(&h, fc->kind, fc->n + 8, NULL, 1, fc->what);
        for (int64_t i = 0; i < fc->n; i++)
            h_set(&h, i, i);
        for (int64_t i = 0; i < fc->predel; i++)
            h_del(&h, i);
        for (int64_t i = fc->n - 1 - fc->gap; i < fc->n - 1; i++)
            h_del(&h, i);
        if (fc->shared)
            h_copy(&copy, &h, "copy");
        h_budget = budget;
        rc = run_op(&h, fc);
        h_budget = -1;
        if (rc == COW_ENOMEM) {
            failures++;
            cr_assert_eq(cow_map_check(h.m), COW_OK, "%s: invalid after failing with %ld "
                         "allocations", fc->what, budget);
            h_verify(&h);                   /* the model did not move */
            cr_assert_geq(run_op(&h, fc), 0, "%s: retry after failure", fc->what);
            cr_assert_eq(cow_map_check(h.m), COW_OK);
            h_verify(&h);
        }
        else {
            cr_assert_geq(rc, 0, "%s: rc %d with %ld allocations", fc->what, rc, budget);
            h_after(&h, fc->what, budget);
            h_verify(&h);
        }
        if (fc->shared) {
            cr_assert_eq(cow_map_check(copy.m), COW_OK);
            h_verify(&copy);
            h_free(&copy);
        }
        h_free(&h);
        cr_assert_eq(tu_alloc.blocks, 0, "%s: %ld blocks leaked after failing at %ld",
                     fc->what, tu_alloc.blocks, budget);
        if (rc != COW_ENOMEM)
            break;
    }
    cr_assert_gt(failures, 0, "%s: the operation never allocated", fc->what);
}

Test(map, allocation_failure_leaves_map_intact, .timeout = 20)
{
    static const fault_case cases[] = {
        {"set new, linear", K_STR, 4, 0, 0, OP_SET_NEW, 0},
        {"set new, builds the index", K_STR, 8, 0, 0, OP_SET_NEW, 0},
        {"set new, indexed", K_MIX, 40, 0, 0, OP_SET_NEW, 0},
        {"set new, indexed, shared", K_MIX, 40, 0, 1, OP_SET_NEW, 0},
        {"set new, log tail into trie, shared", K_INT, 16, 0, 1, OP_SET_NEW, 0},
        {"replace, shared", K_MIX, 40, 0, 1, OP_SET_OLD, 0},
        {"del, indexed", K_MIX, 40, 0, 0, OP_DEL, 0},
        {"del, indexed, shared", K_MIX, 40, 0, 1, OP_DEL, 0},
        {"del, compacts", K_STR, 40, 20, 0, OP_DEL, 0},
        {"del, compacts, shared", K_STR, 40, 20, 1, OP_DEL, 0},
        {"del last, shared", K_MIX, 40, 0, 1, OP_DEL_LAST, 0},
        {"del last, drops the index, shared", K_INT, 9, 0, 1, OP_DEL_LAST, 0},
        {"del last after holes, shared", K_STR, 40, 10, 1, OP_DEL_LAST, 0},
        {"popitem, shared", K_MIX, 40, 0, 1, OP_POP, 0},
        {"popitem, linear, shared", K_INT, 5, 0, 1, OP_POP, 0},
        {"popitem after holes, shared", K_STR, 40, 10, 1, OP_POP, 0},
        /* The trailing holes these expose span three log leaves. */
        {"del last behind holes, shared", K_STR, 40, 0, 1, OP_DEL_LAST, 19},
        {"popitem behind holes, shared", K_MIX, 40, 0, 1, OP_POP, 19},
        {"del last behind holes, unshared", K_INT, 40, 0, 0, OP_DEL_LAST, 19},
    };
    tu_alloc_install();
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        fault_run(&cases[i]);
}

Test(map, allocation_failure_random, .timeout = 20)
{
    /* Random maps and operations, each failed at a random allocation. */
    tu_alloc_install();
    for (uint64_t seed = 1; seed <= 300; seed++) {
        uint64_t rng = seed;
        int64_t n = 1 + (int64_t)tu_below(&rng, 120);
        fault_case fc = {"random", (int)tu_below(&rng, 3), n, 0, (int)tu_below(&rng, 2),
                         (int)tu_below(&rng, 5), 0};
        harness h, copy;
        int rc;
        h_init(&h, fc.kind, 4 * n + 8, NULL, 1, "random fault");
        for (int step = 0; step < 3 * n; step++)
            h_random_step(&h, &rng, step, 1, (int)tu_below(&rng, 30));
        if (fc.shared)
            h_copy(&copy, &h, "copy");
        h_budget = (long)tu_below(&rng, 6);
        switch (fc.op) {
        case OP_SET_NEW:
        case OP_SET_OLD: rc = h_try_set(&h, (int64_t)tu_below(&rng, (size_t)h.maxkey), 1000); break;
        case OP_POP: rc = h_try_popitem(&h); break;
        default: rc = h_try_del(&h, (int64_t)tu_below(&rng, (size_t)h.maxkey)); break;
        }
        h_budget = -1;
        cr_assert(rc >= 0 || rc == COW_ENOMEM || rc == COW_EKEY, "seed %llu: rc %d",
                  (unsigned long long)seed, rc);
        cr_assert_eq(cow_map_check(h.m), COW_OK, "seed %llu: invalid after rc %d",
                     (unsigned long long)seed, rc);
        h_verify(&h);               /* unchanged on failure, updated on success */
        if (fc.shared) {
            cr_assert_eq(cow_map_check(copy.m), COW_OK);
            h_verify(&copy);
            h_free(&copy);
        }
        h_free(&h);
        cr_assert_eq(tu_alloc.blocks, 0, "seed %llu: blocks leaked", (unsigned long long)seed);
    }
    cr_assert_gt(tu_alloc.failures, 0, "no allocation was ever refused");
}

Test(map, allocation_failure_in_collision_buckets, .timeout = 20)
{
    /* Deleting colliding keys walks collision nodes and lifts the last two
     * of a bucket into their parent (H5): each step must fail cleanly. */
    tu_alloc_install();
    for (int victim = 0; victim < NCOLL; victim++)
        for (int shared = 0; shared < 2; shared++)
            for (long budget = 0;; budget++) {
                cow_map *m = cow_map_new(), *copy = NULL;
                const cow_val *got;
                cow_val k;
                int rc;
                for (int i = 0; i < 10; i++) {
                    k = cow_val_int(-1 - i);
                    cr_assert_eq(cow_map_set(m, k, tu_hash(&k), cow_val_none()), COW_OK);
                }
                for (int i = 0; i < NCOLL; i++)
                    set_coll(m, i, i);
                if (shared) {
                    copy = m;
                    cow_map_retain(m);
                    cr_assert_eq(tu_map_own(&m), COW_OK);
                }
                k = coll_key(victim);
                uint64_t hk = tu_hash(&k);
                tu_fail_after(budget);
                rc = cow_map_del(m, &k, hk, NULL);
                tu_fail_after(-1);
                cow_val_release(&k);
                cr_assert(rc == COW_FOUND || rc == COW_ENOMEM, "victim %d: rc %d", victim, rc);
                cr_assert_eq(cow_map_check(m), COW_OK, "victim %d budget %ld", victim, budget);
                for (int i = 0; i < NCOLL; i++) {
                    int want = i == victim && rc == COW_FOUND ? COW_NOT_FOUND : COW_FOUND;
                    cr_assert_eq(find_coll(m, i, &got), want, "victim %d budget %ld key %d",
                                 victim, budget, i);
                    if (copy)
                        cr_assert_eq(find_coll(copy, i, &got), COW_FOUND);
                }
                cow_map_release(m);
                cow_map_release(copy);
                cr_assert_eq(tu_alloc.blocks, 0);
                if (rc == COW_FOUND)
                    break;
            }
}

/* ---- the fast str read (cow_map_get_str) ---------------------------------- */

/* cow_map_get_str against cow_map_get for the str probe [s, s + n): the same
 * answer and the same value bytes, or COW_ASK_GENERAL.  Returns its answer. */
static int
get_str_agrees(const cow_map *m, const char *s, size_t n)
{
    cow_val probe = cow_val_str_view(s, n), fast, slow;
    uint64_t h = tu_hash(&probe);
    int rc = cow_map_get_str(m, s, n, h, &fast), want = cow_map_get(m, &probe, h, &slow);
    if (rc == COW_ASK_GENERAL)
        return rc;
    cr_assert_eq(rc, want, "probe %.*s: fast %d, general %d", (int)n, s, rc, want);
    if (rc == COW_FOUND)
        cr_assert_eq(memcmp(&fast, &slow, sizeof fast), 0, "probe %.*s: another value", (int)n, s);
    return rc;
}

/* Maps of mixed keys (ints, inline and blob strs, bytes with a str's text),
 * with holes, of sizes that cross the linear scan and fill packed log
 * leaves, and the real colliding strs: every str probe, present or absent,
 * gets the general answer from the fast path, which answers most itself
 * and hands on the rest (a map with no index, a blob key's raw item in a
 * packed leaf, a collision node). */
Test(map, get_str_agrees_with_get)
{
    static const size_t sizes[] = {3, COW_MAP_LINEAR_MAX + 1, 200, 3000};
    int answered = 0, handed_on = 0;
    for (size_t si = 0; si < sizeof sizes / sizeof *sizes; si++) {
        cow_map *m = cow_map_new();
        uint64_t rng = si + 1;
        for (int64_t id = 0; id < (int64_t)sizes[si]; id++) {
            cow_val k = key_for(K_MIX, id);
            cr_assert_eq(cow_map_set(m, k, tu_hash(&k), val_for(id)), COW_OK);
        }
        for (size_t i = 0; i < sizes[si] / 5; i++) {     /* holes, then a few updates */
            char buf[KEY_BUF];
            cow_val p = probe_for(K_MIX, (int64_t)tu_below(&rng, sizes[si]), buf);
            (void)cow_map_del(m, &p, tu_hash(&p), NULL);
        }
        for (int c = 0; c < NCOLL; c++)
            set_coll(m, c, c);
        cr_assert_eq(cow_map_check(m), COW_OK);
        for (int64_t id = 0; id < (int64_t)sizes[si] + 50; id++) {
            for (int cls = 1; cls <= 2; cls++) {
                char buf[KEY_BUF];
                size_t n = key_text(cls, id, buf);
                int rc = get_str_agrees(m, buf, n);
                answered += rc != COW_ASK_GENERAL;
                handed_on += rc == COW_ASK_GENERAL;
            }
        }
        for (size_t p = 0; p < sizeof STR_PAIRS / sizeof *STR_PAIRS; p++)
            for (int j = 0; j < 2; j++)
                get_str_agrees(m, STR_PAIRS[p][j], strlen(STR_PAIRS[p][j]));
        for (int64_t id = 1; id < (int64_t)sizes[si]; id += 4) {
            /* Near misses: a key's text with its last byte changed, some of
             * which the index leads to that key, so only the bytes differ. */
            char buf[KEY_BUF];
            size_t n = key_text(1, id, buf);
            for (int c = 0; c < 256; c++) {
                buf[n - 1] = (char)c;
                get_str_agrees(m, buf, n);
            }
        }
        cow_map_release(m);
    }
    cr_assert(answered > 1000 && handed_on > 20, "%d answered, %d handed on", answered, handed_on);
}

/* The fast overwrite (cow_vb_heap_set_after_str behind cow_map_set): values
 * rewritten in place in packed leaves -- same width, narrower, wider (which
 * the general write unpacks for) -- read back right, and a copy taken
 * before keeps every old value (its shared path is never written in place). */
Test(map, overwrite_in_place_keeps_copies_apart)
{
    enum { N = 3000 };
    cow_map *m = cow_map_new(), *copy;
    for (int64_t id = 0; id < N; id++) {
        cow_val k = key_for(K_STR, 2 * id);             /* even ids: inline strs */
        cr_assert_eq(cow_map_set(m, k, tu_hash(&k), cow_val_int(id)), COW_OK);
    }
    copy = cow_map_clone(m);
    for (int round = 1; round <= 3; round++) {
        for (int64_t id = 0; id < N; id++) {
            int64_t want = round == 1 ? -id : round == 2 ? id % 7 : id << 40;
            cow_val k = key_for(K_STR, 2 * id);
            cr_assert_eq(cow_map_set(m, k, tu_hash(&k), cow_val_int(want)), COW_OK);
        }
        cr_assert_eq(cow_map_check(m), COW_OK);
        for (int64_t id = 0; id < N; id++) {
            char buf[KEY_BUF];
            cow_val p = probe_for(K_STR, 2 * id, buf);
            const cow_val *got;
            int64_t want = round == 1 ? -id : round == 2 ? id % 7 : id << 40;
            cr_assert_eq(tu_map_get(m, &p, tu_hash(&p), &got), COW_FOUND);
            cr_assert(got->tag == COW_T_INT && got->u.i == want, "round %d, id %lld", round,
                      (long long)id);
            cr_assert_eq(tu_map_get(copy, &p, tu_hash(&p), &got), COW_FOUND);
            cr_assert(got->tag == COW_T_INT && got->u.i == id, "the copy changed at %lld",
                      (long long)id);
        }
    }
    cow_map_release(copy);
    cow_map_release(m);
}

/* Deleting the last entry where the log's cut falls at a leaf's end moves
 * that leaf into the tail as it is: a packed leaf stays packed and a copy's
 * leaf is not copied (it was unpacked, then packed again by the next add:
 * a delete-then-add cost ~4,000 instructions at every 16th size). */
Test(map, deleting_the_last_entry_at_a_leaf_boundary_keeps_the_leaf)
{
    enum { N = 33 };                /* 66 log slots: leaves [0, 32), [32, 64), tail [64, 66) */
    char buf[16];
    cow_map *m = cow_map_new(), *copy;
    cow_val k;
    for (int i = 0; i < N; i++) {
        int n = snprintf(buf, sizeof buf, "k%d", i);
        cr_assert_eq(cow_val_str(&k, buf, (size_t)n), COW_OK);
        cr_assert_eq(cow_map_set(m, k, tu_hash(&k), cow_val_int(i)), COW_OK);
    }
    cr_assert_null(cow_vb_slot(&m->log, 63), "the log's second leaf is packed");
    copy = m;
    cow_map_retain(copy);
    cr_assert_eq(cow_map_own((cow_word *)&m), COW_OK);
    long nodes = cow_vec_live_nodes();
    k = cow_val_str_view("k32", 3);
    cr_assert_eq(cow_map_del(m, &k, tu_hash(&k), NULL), COW_FOUND);
    cr_assert_eq(m->log.len, 64);
    cr_assert_null(cow_vb_slot(&m->log, 63), "the leaf became the tail still packed");
    cr_assert_leq(cow_vec_live_nodes(), nodes + 1, "the shared leaf was copied");
    cr_assert_eq(cow_val_str(&k, "k32", 3), COW_OK);
    cr_assert_eq(cow_map_set(m, k, tu_hash(&k), cow_val_int(-1)), COW_OK);
    cr_assert_eq(cow_map_check(m), COW_OK);
    cr_assert_eq(cow_map_check(copy), COW_OK);
    for (int i = 0; i < N; i++) {
        const cow_val *got;
        int n = snprintf(buf, sizeof buf, "k%d", i);
        cow_val probe = cow_val_str_view(buf, (size_t)n);
        cr_assert_eq(tu_map_get(m, &probe, tu_hash(&probe), &got), COW_FOUND);
        cr_assert_eq(got->u.i, i == 32 ? -1 : i);
        cr_assert_eq(tu_map_get(copy, &probe, tu_hash(&probe), &got), COW_FOUND);
        cr_assert_eq(got->u.i, i);
    }
    cow_map_release(m);
    cow_map_release(copy);
}

/* cow_map_fill builds the index in bulk (index_build: bucketed top-down);
 * it must give a valid index (H3, H5: the shape inserts give) that finds
 * every key -- at sizes around each level's fill, with real colliding keys
 * (a collision node, its leaves sorted by key: H4) among the rest. */
Test(map, index_built_in_bulk_finds_every_key)
{
    static const size_t sizes[] = {9, 10, 31, 32, 33, 100, 1023, 1024, 1025, 5000};
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
        size_t n = sizes[s], k = 0;
        cow_val *kv = calloc(2 * (n + NCOLL), sizeof *kv);
        cow_map *bulk = cow_map_new(), *inserted = cow_map_new();
        cr_assert_not_null(kv);
        for (int c = 0; c < NCOLL && k < n; c++, k++)
            kv[2 * k] = coll_key(NCOLL - 1 - c);    /* out of key order */
        for (int64_t i = 0; k < n; i++, k++)
            kv[2 * k] = i % 3 ? cow_val_int(-1000 - i) : tu_str("bulk key %lld", (long long)i);
        for (k = 0; k < n; k++) {
            cow_val key;
            kv[2 * k + 1] = cow_val_int((int64_t)k);
            cow_val_copy(&key, &kv[2 * k]);
            cr_assert_eq(cow_map_set(inserted, key, tu_hash(&key), cow_val_int((int64_t)k)), COW_OK);
        }
        cr_assert_eq(cow_map_fill(bulk, kv, n), COW_OK, "n = %zu", n);
        cr_assert_eq(cow_map_check(bulk), COW_OK, "n = %zu", n);
        cr_assert_eq(cow_map_len(bulk), n);
        cr_assert_eq(cow_map_equal(bulk, inserted), 1, "n = %zu", n);
        for (size_t e = 0; e < n; e++) {
            const cow_val *key = tu_entry_key(inserted, e), *got;
            cr_assert_eq(tu_map_get(bulk, key, tu_hash(key), &got), COW_FOUND, "n = %zu, entry %zu", n, e);
            cr_assert_eq(got->u.i, (int64_t)e);
        }
        cow_map_release(bulk);
        cow_map_release(inserted);
        free(kv);
    }
}

/* The bulk build fails whole on allocation failure, at every step. */
Test(map, index_built_in_bulk_survives_allocation_failure)
{
    tu_alloc_install();
    for (long budget = 0;; budget++) {
        cow_val kv[2 * 200];
        cow_map *m = cow_map_new();
        int rc;
        for (int i = 0; i < 200; i++) {
            kv[2 * i] = cow_val_int(i * 7919);
            kv[2 * i + 1] = cow_val_none();
        }
        tu_fail_after(budget);
        rc = cow_map_fill(m, kv, 200);
        tu_fail_after(-1);
        cr_assert(rc == COW_OK || rc == COW_ENOMEM);
        cr_assert_eq(cow_map_check(m), COW_OK);
        cr_assert_eq(cow_map_len(m), rc == COW_OK ? 200 : 0);
        cow_map_release(m);
        if (rc == COW_OK)
            break;
    }
    cr_assert_eq(tu_alloc.blocks, 0, "%ld blocks leaked", tu_alloc.blocks);
    cr_assert_eq(cow_map_live_nodes(), 0);
}

/* cow_map_get_int and cow_map_find's int walk compare int keys as ints: a
 * key equal to the probe but of another type (True, 2.0) sends the lookup
 * to the general path, which finds it; an int whose hash32 collides with
 * another's is absent.  Maps built by inserts (heap leaves) and by fill
 * (packed leaves). */
Test(map, int_fast_walk_defers_to_equal_keys_of_other_types)
{
    for (int filled = 0; filled < 2; filled++) {
        enum { N = 40 };
        cow_val kv[2 * N];
        cow_map *m = cow_map_new();
        cow_val got, probe;
        size_t e;
        kv[0] = cow_val_bool(1);                 /* equal to 1 */
        kv[2] = cow_val_float(2.0);              /* equal to 2 */
        kv[4] = cow_val_int(INT_TRIPLE_A[1]);    /* hash32 of A[0] and A[2] too */
        for (int i = 3; i < N; i++)
            kv[2 * i] = cow_val_int(i);
        for (int i = 0; i < N; i++)
            kv[2 * i + 1] = cow_val_int(100 + i);
        if (filled)
            cr_assert_eq(cow_map_fill(m, kv, N), COW_OK);
        else
            for (int i = 0; i < N; i++)
                cr_assert_eq(cow_map_set(m, kv[2 * i], tu_hash(&kv[2 * i]), kv[2 * i + 1]), COW_OK);
        cr_assert_eq(cow_map_get_int(m, 7, cow_val_int_hash(7), &got), COW_FOUND);
        cr_assert_eq(got.u.i, 107);
        cr_assert_eq(cow_map_get_int(m, 1, cow_val_int_hash(1), &got), COW_ASK_GENERAL);
        cr_assert_eq(cow_map_get_int(m, 2, cow_val_int_hash(2), NULL), COW_ASK_GENERAL);
        for (int64_t x = 1; x <= 2; x++) {
            probe = cow_val_int(x);
            cr_assert_eq(cow_map_find(m, &probe, tu_hash(&probe), &e), COW_FOUND, "%lld", (long long)x);
            cr_assert_eq(e, (size_t)(x - 1));
        }
        cr_assert_eq(cow_map_get_int(m, INT_TRIPLE_A[1], cow_val_int_hash(INT_TRIPLE_A[1]), &got),
                     COW_FOUND);
        for (int c = 0; c < 3; c += 2) {
            probe = cow_val_int(INT_TRIPLE_A[c]);
            cr_assert_neq(cow_map_get_int(m, INT_TRIPLE_A[c], tu_hash(&probe), NULL), COW_FOUND);
            cr_assert_eq(cow_map_find(m, &probe, tu_hash(&probe), &e), COW_NOT_FOUND);
        }
        cr_assert_eq(cow_map_check(m), COW_OK);
        cow_map_release(m);
    }
}

/* A map with no index (H1) is scanned by the fast walks: int and str
 * probes find their keys in heap and packed leaves, a key of another type
 * that may equal an int probe defers to the general path, and holes are
 * passed over. */
Test(map, small_maps_are_scanned_by_the_fast_walks)
{
    for (int filled = 0; filled < 2; filled++) {
        cow_val kv[12];
        cow_map *m = cow_map_new();
        cow_val got, probe;
        size_t e;
        kv[0] = cow_val_int(-7);
        kv[2] = tu_str("short");
        kv[4] = tu_str("a str long enough to be kept in a blob, not inline");
        kv[6] = cow_val_float(2.0);
        kv[8] = cow_val_int(1 << 20);
        kv[10] = tu_str("gone");
        for (int i = 0; i < 6; i++)
            kv[2 * i + 1] = cow_val_int(100 + i);
        if (filled)
            cr_assert_eq(cow_map_fill(m, kv, 6), COW_OK);
        else
            for (int i = 0; i < 6; i++)
                cr_assert_eq(cow_map_set(m, kv[2 * i], tu_hash(&kv[2 * i]), kv[2 * i + 1]), COW_OK);
        probe = tu_str("gone");
        cr_assert_eq(cow_map_del(m, &probe, tu_hash(&probe), NULL), COW_FOUND);
        cow_val_release(&probe);
        cr_assert_eq(cow_map_get_int(m, -7, cow_val_int_hash(-7), &got), COW_FOUND);
        cr_assert_eq(got.u.i, 100);
        cr_assert_eq(cow_map_get_int(m, 1 << 20, cow_val_int_hash(1 << 20), &got), COW_FOUND);
        cr_assert_eq(got.u.i, 104);
        cr_assert_eq(cow_map_get_int(m, 5, cow_val_int_hash(5), NULL), COW_ASK_GENERAL);  /* 2.0 */
        cr_assert_eq(cow_map_get_str(m, "short", 5, cow_val_int_hash(0), &got), COW_FOUND);
        cr_assert_eq(got.u.i, 101);
        const char *lng = "a str long enough to be kept in a blob, not inline";
        cr_assert_eq(cow_map_get_str(m, lng, strlen(lng), 0, &got), COW_FOUND);
        cr_assert_eq(got.u.i, 102);
        cr_assert_eq(cow_map_get_str(m, "gone", 4, 0, NULL), COW_NOT_FOUND);
        cr_assert_eq(cow_map_get_str(m, "shor", 4, 0, NULL), COW_NOT_FOUND);
        probe = cow_val_int(2);
        cr_assert_eq(cow_map_find(m, &probe, tu_hash(&probe), &e), COW_FOUND);   /* 2 == 2.0 */
        cr_assert_eq(e, 3);
        cr_assert_eq(cow_map_check(m), COW_OK);
        cow_map_release(m);
    }
}

/* ---- cow_map_builder and cow_map_toggle --------------------------------- */

/* Key i of a build whose keys repeat: 1, True, 1.0 are one key; the triples
 * of colliding int hashes sit in one collision node; every 5th key repeats
 * an earlier one. */
static cow_val
build_key(int i)
{
    switch (i % 7) {
    case 0: return cow_val_int(1);
    case 1: return cow_val_bool(1);
    case 2: return cow_val_float(1.0);
    case 3: return cow_val_int(INT_TRIPLE_A[i % 3]);
    default: return i % 5 == 0 ? cow_val_int((i / 5) * 1000) : cow_val_int(i * 1000);
    }
}

/* Whether a and b hold equal keys of one type, in one order, with equal
 * values. */
static void
assert_same_entries(const cow_map *a, const cow_map *b)
{
    size_t ea = 0, eb = 0;
    cr_assert_eq(cow_map_len(a), cow_map_len(b));
    for (size_t k = 0; k < cow_map_len(a); k++, ea++, eb++) {
        while (cow_map_entry_key(a, ea).tag == COW_T_HOLE)
            ea++;
        while (cow_map_entry_key(b, eb).tag == COW_T_HOLE)
            eb++;
        cow_val ka = cow_map_entry_key(a, ea), kb = cow_map_entry_key(b, eb);
        cow_val va = cow_map_entry_val(a, ea), vb = cow_map_entry_val(b, eb);
        cr_assert(ka.tag == kb.tag && cow_val_equal(&ka, &kb), "key %zu", k);
        cr_assert(cow_val_equal(&va, &vb), "value %zu", k);
    }
}

/* A build gives what a cow_map_set per entry gives, equal keys included
 * (the first key's place and form, the last value), with and without an
 * index, and a map that passes cow_map_check. */
Test(map, builder_matches_inserts_and_merges_equal_keys)
{
    static const int sizes[] = {0, 1, 3, COW_MAP_LINEAR_MAX, COW_MAP_LINEAR_MAX + 1, 40, 700};
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
        cow_map *built = cow_map_new(), *inserted = cow_map_new();
        cow_map_builder b;
        cow_map_build_begin(&b, built);
        for (int i = 0; i < sizes[s]; i++) {
            cow_val k = build_key(i);
            cr_assert_eq(cow_map_build_add(&b, k, tu_hash(&k), cow_val_int(i)), COW_OK);
            k = build_key(i);
            cr_assert_eq(cow_map_set(inserted, k, tu_hash(&k), cow_val_int(i)), COW_OK);
        }
        cr_assert_eq(cow_map_build_end(&b), COW_OK, "size %d", sizes[s]);
        cr_assert_eq(cow_map_check(built), COW_OK, "size %d", sizes[s]);
        assert_same_entries(built, inserted);
        for (int i = 0; i < sizes[s]; i++) {
            cow_val k = build_key(i), got;
            cr_assert_eq(cow_map_get(built, &k, tu_hash(&k), &got), COW_FOUND);
        }
        cow_map_release(built);
        cow_map_release(inserted);
    }
}

/* Out of memory at any allocation of a build (the adds, the index, the
 * merge of equal keys): each failing step says so, abort or end leaves the
 * map empty and valid, and nothing leaks. */
Test(map, builder_survives_allocation_failure)
{
    tu_alloc_install();
    for (long budget = 0;; budget++) {
        cow_map *m = cow_map_new();
        cow_map_builder b;
        int rc = COW_OK;
        cow_map_build_begin(&b, m);
        tu_fail_after(budget);
        for (int i = 0; i < 200 && rc == COW_OK; i++) {
            cow_val k = build_key(i);
            rc = cow_map_build_add(&b, k, tu_hash(&k), cow_val_int(i));
        }
        if (rc == COW_OK)
            rc = cow_map_build_end(&b);
        else
            cow_map_build_abort(&b);
        tu_fail_after(-1);
        cr_assert(rc == COW_OK || rc == COW_ENOMEM, "budget %ld: %d", budget, rc);
        cr_assert_eq(cow_map_check(m), COW_OK);
        if (rc != COW_OK)
            cr_assert_eq(cow_map_len(m), 0);
        cow_map_release(m);
        if (rc == COW_OK)
            break;
    }
    cr_assert_eq(tu_alloc.blocks, 0, "%ld blocks leaked", tu_alloc.blocks);
    cr_assert_eq(cow_map_live_nodes(), 0);
}

/* cow_map_toggle removes a present key and adds an absent one, keeping
 * order as del and set would, in maps with and without an index. */
Test(map, toggle_removes_present_and_adds_absent)
{
    for (int n = 4; n <= 40; n += 36) {
        cow_map *m = cow_map_new(), *model = cow_map_new();
        for (int i = 0; i < n; i++) {
            cow_val k = cow_val_int(i);
            cr_assert_eq(cow_map_set(m, k, tu_hash(&k), cow_val_none()), COW_OK);
            cr_assert_eq(cow_map_set(model, k, tu_hash(&k), cow_val_none()), COW_OK);
        }
        for (int i = 0; i < n + 10; i += 3) {
            cow_val k = cow_val_int(i);
            int present = i < n;
            cr_assert_eq(cow_map_toggle(m, k, tu_hash(&k), cow_val_none()),
                         present ? COW_FOUND : COW_NOT_FOUND, "key %d", i);
            if (present)
                cr_assert_eq(cow_map_del(model, &k, tu_hash(&k), NULL), COW_FOUND);
            else
                cr_assert_eq(cow_map_set(model, k, tu_hash(&k), cow_val_none()), COW_OK);
            cr_assert_eq(cow_map_check(m), COW_OK);
        }
        assert_same_entries(m, model);
        cow_map_release(m);
        cow_map_release(model);
    }
}
