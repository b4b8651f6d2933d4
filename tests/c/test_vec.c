/* Criterion tests for csrc/core/vec.c: the persistent vector against a plain
 * C array model, with cow_vec_check (VEC1..VEC5) along the way, path copying
 * between copies, node accounting, iteration and the structural diff.
 *
 * Sizes are chosen to cross the shape changes: the tail filling (32), the root
 * leaf becoming an inner node (33 + 32), each trie level filling (1024 + 32,
 * 32768 + 32) and the same boundaries again on the way down. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "cowstore/value.h"
#include "cowstore/vec.h"

#include "cowtest.h"

TestSuite(vec, .fini = tu_leak_check);

/* Past the third trie level: len 32800 + 32 is the first with shift 15. */
#define BIG 33000

/* ---- the model ------------------------------------------------------------
 * An element is named by an id.  Every seventh id is stored as a blob string so
 * that copies and releases move real reference counts; the rest are ints. */

static cow_val
val_for(int64_t id)
{
    if (id % 7 == 0)
        return tu_str("vector element %lld, long enough for a blob", (long long)id);
    return cow_val_int(id);
}

static int
val_is(const cow_val *v, int64_t id)
{
    char buf[96];
    const char *p;
    size_t n;
    int len;
    if (id % 7 != 0)
        return v->tag == COW_T_INT && v->u.i == id;
    len = snprintf(buf, sizeof buf, "vector element %lld, long enough for a blob", (long long)id);
    cow_val_span(v, &p, &n);
    return v->tag == COW_T_STR && n == (size_t)len && memcmp(p, buf, n) == 0;
}

typedef struct model {
    int64_t *ids;
    size_t len, cap;
} model;

static void
model_push(model *m, int64_t id)
{
    if (m->len == m->cap) {
        m->cap = m->cap ? 2 * m->cap : 64;
        m->ids = realloc(m->ids, m->cap * sizeof *m->ids);
        cr_assert_not_null(m->ids);
    }
    m->ids[m->len++] = id;
}

static void
model_copy(model *dst, const model *src)
{
    dst->len = dst->cap = src->len;
    dst->ids = malloc((src->len ? src->len : 1) * sizeof *dst->ids);
    cr_assert_not_null(dst->ids);
    if (src->len)
        memcpy(dst->ids, src->ids, src->len * sizeof *dst->ids);
}

static void
vb_push_id(cow_vecbody *b, model *m, int64_t id)
{
    cr_assert_eq(cow_vb_push(b, val_for(id)), COW_OK, "push at len %zu", b->len);
    model_push(m, id);
}

static void
vb_pop_id(cow_vecbody *b, model *m)
{
    cow_val out;
    cr_assert_eq(cow_vb_pop(b, &out), COW_OK, "pop at len %zu", b->len);
    cr_assert(val_is(&out, m->ids[m->len - 1]), "pop at len %zu returned the wrong value",
              b->len + 1);
    cow_val_release(&out);
    m->len--;
}

static void
vb_set_id(cow_vecbody *b, model *m, size_t i, int64_t id)
{
    cr_assert_eq(cow_vb_set(b, i, val_for(id)), COW_OK, "set %zu of %zu", i, b->len);
    m->ids[i] = id;
}

/* The body holds exactly the model's values, and is well formed. */
static void
assert_matches(const cow_vecbody *b, const model *m, const char *what)
{
    cr_assert_eq(cow_vec_check(b), COW_OK, "%s: cow_vec_check failed at len %zu", what, b->len);
    cr_assert_eq(b->len, m->len, "%s: length", what);
    for (size_t i = 0; i < m->len; i++)
        cr_assert(val_is(tu_vb_get(b, i), m->ids[i]), "%s: element %zu of %zu", what, i,
                  m->len);
}

/* Lengths at which the shape changes, give or take one. */
static int
near_boundary(size_t len)
{
    static const size_t edges[] = {32, 64, 1024, 1056, 32768, 32800};
    for (size_t k = 0; k < sizeof edges / sizeof *edges; k++)
        if (len + 1 >= edges[k] && len <= edges[k] + 1)
            return 1;
    return 0;
}

/* ---- push, get, set, pop -------------------------------------------------- */

Test(vec, push_then_pop_across_every_level)
{
    long start = cow_vec_live_nodes();
    cow_vecbody b;
    model m = {0};
    cow_vb_init(&b);
    cr_assert_eq(cow_vec_check(&b), COW_OK);
    for (int64_t id = 1; id <= BIG; id++) {
        vb_push_id(&b, &m, id);
        if (b.len < 2200 || b.len % 61 == 0 || near_boundary(b.len))
            cr_assert_eq(cow_vec_check(&b), COW_OK, "check after push, len %zu", b.len);
        if (near_boundary(b.len))
            assert_matches(&b, &m, "growing");
    }
    assert_matches(&b, &m, "full");
    while (b.len > 0) {
        vb_pop_id(&b, &m);
        if (b.len < 2200 || b.len % 61 == 0 || near_boundary(b.len))
            cr_assert_eq(cow_vec_check(&b), COW_OK, "check after pop, len %zu", b.len);
        if (near_boundary(b.len))
            assert_matches(&b, &m, "shrinking");
    }
    cr_assert_null(b.tail);
    cr_assert_null(b.root);
    cr_assert_eq(cow_vec_live_nodes(), start, "nodes left after popping everything");
    free(m.ids);
}

Test(vec, set_every_index_at_each_shape)
{
    static const size_t sizes[] = {1, 31, 32, 33, 64, 65, 1024, 1056, 1057, 1100, 32801};
    long start = cow_vec_live_nodes();
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
        cow_vecbody b;
        model m = {0};
        cow_vb_init(&b);
        for (size_t i = 0; i < sizes[s]; i++)
            vb_push_id(&b, &m, (int64_t)i);
        for (size_t i = 0; i < sizes[s]; i++)
            vb_set_id(&b, &m, i, (int64_t)(sizes[s] + 3 * i));
        assert_matches(&b, &m, "after setting every index");
        cow_vb_clear(&b);
        cr_assert_eq(b.len, 0);
        cr_assert_eq(cow_vec_check(&b), COW_OK);
        cr_assert_eq(cow_vec_live_nodes(), start, "size %zu leaked nodes", sizes[s]);
        free(m.ids);
    }
}

Test(vec, random_operations_against_model)
{
    long start = cow_vec_live_nodes();
    for (uint64_t seed = 1; seed <= 3; seed++) {
        uint64_t rng = seed;
        cow_vecbody b;
        model m = {0};
        cow_vb_init(&b);
        for (int step = 0; step < 12000; step++) {
            /* Alternate growing and shrinking phases to cross 1024 both ways. */
            int grow = (step / 3000) % 2 == 0;
            size_t r = tu_below(&rng, 100);
            if (b.len == 0 || r < (grow ? 55u : 15u))
                vb_push_id(&b, &m, (int64_t)tu_below(&rng, 1000000));
            else if (r < 70)
                vb_pop_id(&b, &m);
            else
                vb_set_id(&b, &m, tu_below(&rng, b.len), (int64_t)tu_below(&rng, 1000000));
            cr_assert_eq(cow_vec_check(&b), COW_OK, "seed %llu step %d", (unsigned long long)seed,
                         step);
            if (b.len) {
                size_t i = tu_below(&rng, b.len);
                cr_assert(val_is(tu_vb_get(&b, i), m.ids[i]), "seed %llu step %d index %zu",
                          (unsigned long long)seed, step, i);
            }
            if (step % 1000 == 999)
                assert_matches(&b, &m, "random");
        }
        assert_matches(&b, &m, "random, final");
        cow_vb_clear(&b);
        free(m.ids);
    }
    cr_assert_eq(cow_vec_live_nodes(), start);
}

Test(vec, out_of_range_and_empty)
{
    long start = cow_vec_live_nodes();
    cow_vecbody b;
    cow_val out = cow_val_int(42);
    cow_vb_init(&b);
    cr_assert_eq(cow_vb_pop(&b, &out), COW_EINDEX);
    cr_assert(out.tag == COW_T_INT && out.u.i == 42, "a failed pop must not touch *out");
    /* set steals its value even when it fails: the blob must be released. */
    cr_assert_eq(cow_vb_set(&b, 0, tu_str("a blob that set must release")), COW_EINDEX);
    cr_assert_eq(cow_vb_push(&b, cow_val_int(1)), COW_OK);
    cr_assert_eq(cow_vb_set(&b, 1, tu_str("another blob that set must release")), COW_EINDEX);
    cr_assert_eq(cow_vb_set(&b, (size_t)-1, cow_val_int(0)), COW_EINDEX);
    cr_assert_eq(b.len, 1);
    cr_assert_eq(cow_vec_check(&b), COW_OK);
    cow_vb_clear(&b);
    cr_assert_eq(cow_vec_live_nodes(), start);
}

/* ---- copies ----------------------------------------------------------------- */

/* Mutates b (and its model) by sets, pushes and pops in a seeded pattern. */
static void
scramble(cow_vecbody *b, model *m, uint64_t seed, int64_t id_base)
{
    uint64_t rng = seed;
    for (size_t i = 0; i < b->len; i += 97)
        vb_set_id(b, m, i, id_base + (int64_t)i);
    for (int k = 0; k < 40; k++)
        vb_push_id(b, m, id_base + 1000000 + k);
    for (int k = 0; k < 70 && b->len; k++)
        vb_pop_id(b, m);
    for (int k = 0; k < 20 && b->len; k++)
        vb_set_id(b, m, tu_below(&rng, b->len), id_base + 2000000 + k);
}

Test(vec, copies_are_isolated_both_ways)
{
    static const size_t sizes[] = {0, 5, 20, 33, 100, 1057, 1100, BIG};
    long start = cow_vec_live_nodes();
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
        cow_vecbody a, c;
        model ma = {0}, mc;
        cow_vb_init(&a);
        for (size_t i = 0; i < sizes[s]; i++)
            vb_push_id(&a, &ma, (int64_t)i);
        cow_vb_dup(&c, &a);
        model_copy(&mc, &ma);
        cr_assert(cow_vb_same(&a, &c));

        scramble(&c, &mc, 7 + s, 10000000);          /* the copy moves */
        assert_matches(&a, &ma, "original after mutating the copy");
        assert_matches(&c, &mc, "copy after mutating it");

        scramble(&a, &ma, 11 + s, 20000000);         /* the original moves */
        assert_matches(&c, &mc, "copy after mutating the original");
        assert_matches(&a, &ma, "original after mutating it");

        cow_vb_clear(&a);
        assert_matches(&c, &mc, "copy after clearing the original");
        cow_vb_clear(&c);
        cr_assert_eq(cow_vec_live_nodes(), start, "size %zu leaked nodes", sizes[s]);
        free(ma.ids);
        free(mc.ids);
    }
}

Test(vec, set_on_copy_copies_only_the_path)
{
    /* BIG has four levels (shift 15): a set in the trie copies root, two inner
     * nodes and the leaf; a set in the tail copies the tail alone. */
    long start = cow_vec_live_nodes(), before;
    cow_vecbody a, c;
    model m = {0};
    cow_vb_init(&a);
    for (int64_t i = 0; i < BIG; i++)
        vb_push_id(&a, &m, i);
    cr_assert_eq(a.shift, 15);
    cow_vb_dup(&c, &a);
    before = cow_vec_live_nodes();
    cr_assert_eq(cow_vb_set(&c, 12345, cow_val_int(-1)), COW_OK);
    cr_assert_eq(cow_vec_live_nodes() - before, 4, "a trie set must copy exactly its path");
    before = cow_vec_live_nodes();
    cr_assert_eq(cow_vb_set(&c, 12346, cow_val_int(-2)), COW_OK);
    cr_assert_eq(cow_vec_live_nodes(), before, "the path is now owned: no more copies");
    cr_assert_eq(cow_vb_set(&c, BIG - 1, cow_val_int(-3)), COW_OK);
    cr_assert_eq(cow_vec_live_nodes() - before, 1, "a tail set copies the tail only");
    cr_assert(val_is(tu_vb_get(&a, 12345), 12345));
    cr_assert(val_is(tu_vb_get(&a, BIG - 1), BIG - 1));
    cr_assert_eq(tu_vb_get(&c, 12345)->u.i, -1);
    cr_assert_eq(cow_vec_check(&a), COW_OK);
    cr_assert_eq(cow_vec_check(&c), COW_OK);
    cow_vb_clear(&a);
    cow_vb_clear(&c);
    cr_assert_eq(cow_vec_live_nodes(), start);
    free(m.ids);
}

Test(vec, refcounted_holder_own)
{
    long start = cow_vec_live_nodes();
    cow_vec *v = cow_vec_new(), *alias;
    cr_assert_not_null(v);
    for (int64_t i = 0; i < 100; i++)
        cr_assert_eq(cow_vb_push(&v->b, val_for(i)), COW_OK);
    alias = v;
    cr_assert_eq(tu_vec_own(&alias), COW_OK);
    cr_assert_eq(alias, v, "an unshared vector is owned already");
    cow_vec_retain(v);
    cr_assert_eq(tu_vec_own(&alias), COW_OK);
    cr_assert_neq(alias, v, "a shared vector gets a new header");
    cr_assert_eq(v->refcnt, 1);
    cr_assert_eq(cow_vec_len(alias), 100);
    cr_assert_eq(cow_vb_set(&alias->b, 50, cow_val_int(-50)), COW_OK);
    cr_assert(val_is(tu_vb_get(&v->b, 50), 50), "the original keeps its element");
    cr_assert_eq(tu_vb_get(&alias->b, 50)->u.i, -50);
    cow_vec_release(v);
    cow_vec_release(alias);
    cr_assert_eq(cow_vec_live_nodes(), start);
}

Test(vec, clone_shares_nodes_under_a_new_identity)
{
    long start = cow_vec_live_nodes(), nodes;
    cow_vec *v = cow_vec_new(), *c, *o;
    cr_assert_not_null(v);
    for (int64_t i = 0; i < 1100; i++)
        cr_assert_eq(cow_vb_push(&v->b, val_for(i)), COW_OK);
    nodes = cow_vec_live_nodes();
    c = cow_vec_clone(v);
    cr_assert_not_null(c);
    cr_assert_eq(cow_vec_live_nodes(), nodes, "a clone copies no node");
    cr_assert(cow_vb_same(&c->b, &v->b));
    cr_assert_neq(c->ident, v->ident, "a clone is a new object");
    cr_assert_eq(v->refcnt, 1, "the original stays unshared as a header");
    cr_assert_eq(cow_vb_set(&c->b, 5, cow_val_int(-5)), COW_OK);
    cr_assert_eq(cow_vb_set(&v->b, 6, cow_val_int(-6)), COW_OK);
    cr_assert(val_is(tu_vb_get(&v->b, 5), 5) && val_is(tu_vb_get(&c->b, 6), 6),
              "clone and original are isolated both ways");
    o = v;
    cow_vec_retain(v);
    cr_assert_eq(tu_vec_own(&o), COW_OK);
    cr_assert_neq(o, v);
    cr_assert_eq(o->ident, v->ident, "own keeps the identity: same object, new header");
    cr_assert_eq(cow_vec_check(&c->b), COW_OK);
    cr_assert_eq(cow_vec_check(&o->b), COW_OK);
    cow_vec_release(v);
    cow_vec_release(c);
    cow_vec_release(o);
    cr_assert_eq(cow_vec_live_nodes(), start);
}

/* ---- iteration -------------------------------------------------------------- */

Test(vec, iterator_from_any_start)
{
    static const size_t sizes[] = {0, 1, 32, 33, 1057, 32801};
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
        size_t len = sizes[s];
        size_t starts[] = {0, 1, 31, 32, 33, 63, 64, 500, 1023, 1024, 1055, 1056,
                           len ? len - 1 : 0, len, len + 5};
        cow_vecbody b;
        model m = {0};
        cow_vb_init(&b);
        for (size_t i = 0; i < len; i++)
            vb_push_id(&b, &m, (int64_t)(i * 3 + 1));
        for (size_t k = 0; k < sizeof starts / sizeof *starts; k++) {
            cow_vec_iter it;
            const cow_val *e;
            size_t i = starts[k];
            cow_vec_iter_init(&it, &b, starts[k]);
            while ((e = cow_vec_iter_next(&it)) != NULL) {
                cr_assert_lt(i, len, "iterator ran past the end (start %zu)", starts[k]);
                cr_assert(val_is(e, m.ids[i]), "len %zu start %zu: element %zu", len,
                          starts[k], i);
                i++;
            }
            cr_assert_eq(i, starts[k] < len ? len : starts[k],
                         "len %zu start %zu: iterator stopped early", len, starts[k]);
            cr_assert_null(cow_vec_iter_next(&it), "an exhausted iterator stays exhausted");
        }
        cow_vb_clear(&b);
        free(m.ids);
    }
}

/* ---- structural diff -------------------------------------------------------- */

typedef struct visits {
    size_t idx[4096];
    size_t n;
} visits;

static int
record_visit(void *ctx, size_t index)
{
    visits *v = ctx;
    cr_assert_lt(v->n, sizeof v->idx / sizeof *v->idx);
    v->idx[v->n++] = index;
    return COW_OK;
}

static int
cmp_size(const void *a, const void *b)
{
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return (x > y) - (x < y);
}

/* Runs the diff both ways and checks it visits exactly want[0..n). */
static void
assert_diff(const cow_vecbody *a, const cow_vecbody *b, const size_t *want, size_t n,
            const char *what)
{
    for (int dir = 0; dir < 2; dir++) {
        visits *v = calloc(1, sizeof *v);
        cr_assert_not_null(v);
        cr_assert_eq(cow_vb_diff_blocks(dir ? b : a, dir ? a : b, record_visit, v), COW_OK);
        qsort(v->idx, v->n, sizeof *v->idx, cmp_size);
        cr_assert_eq(v->n, n, "%s (dir %d): %zu blocks visited, want %zu", what, dir, v->n, n);
        for (size_t i = 0; i < n; i++)
            cr_assert_eq(v->idx[i], want[i], "%s (dir %d): visit %zu is %zu, want %zu", what,
                         dir, i, v->idx[i], want[i]);
        free(v);
    }
}

static void
build(cow_vecbody *b, size_t len)
{
    cow_vb_init(b);
    for (size_t i = 0; i < len; i++)
        cr_assert_eq(cow_vb_push(b, cow_val_int((int64_t)i)), COW_OK);
}

Test(vec, diff_of_a_fresh_copy_is_empty)
{
    static const size_t sizes[] = {0, 10, 32, 33, 1100, BIG};
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
        cow_vecbody a, c;
        build(&a, sizes[s]);
        cow_vb_dup(&c, &a);
        assert_diff(&a, &c, NULL, 0, "fresh copy");
        cow_vb_clear(&a);
        cow_vb_clear(&c);
    }
}

Test(vec, diff_visits_exactly_the_blocks_set)
{
    cow_vecbody a, c;
    /* tailoff(5000) = 4992: index 4999 is in the tail. */
    static const size_t want[] = {0, 672, 4000, 4992};
    build(&a, 5000);
    cow_vb_dup(&c, &a);
    cr_assert_eq(cow_vb_set(&c, 5, cow_val_int(-1)), COW_OK);
    cr_assert_eq(cow_vb_set(&c, 700, cow_val_int(-1)), COW_OK);
    cr_assert_eq(cow_vb_set(&c, 701, cow_val_int(-1)), COW_OK);
    cr_assert_eq(cow_vb_set(&c, 4000, cow_val_int(-1)), COW_OK);
    cr_assert_eq(cow_vb_set(&c, 4999, cow_val_int(-1)), COW_OK);
    assert_diff(&a, &c, want, 4, "five sets in four blocks");
    cow_vb_clear(&a);
    cow_vb_clear(&c);
}

Test(vec, diff_across_three_levels)
{
    cow_vecbody a, c;
    static const size_t want[] = {0, 1024, 32736, 32768};
    build(&a, 32832);            /* shift 15, tail 32800..32831 */
    cow_vb_dup(&c, &a);
    cr_assert_eq(cow_vb_set(&c, 31, cow_val_int(-1)), COW_OK);
    cr_assert_eq(cow_vb_set(&c, 1024, cow_val_int(-1)), COW_OK);
    cr_assert_eq(cow_vb_set(&c, 32767, cow_val_int(-1)), COW_OK);
    cr_assert_eq(cow_vb_set(&c, 32768, cow_val_int(-1)), COW_OK);
    assert_diff(&a, &c, want, 4, "sets at level boundaries");
    cow_vb_clear(&a);
    cow_vb_clear(&c);
}

Test(vec, diff_after_push_and_pop)
{
    cow_vecbody a, grown, shrunk, tiny;
    cow_val out;
    static const size_t want_grown[] = {4992, 5024, 5056, 5088};
    /* Popping 40 of 5000 leaves the trie leaf 4928..4959 (shared with a) as the
     * tail: only the blocks a has and the copy lost differ. */
    static const size_t want_shrunk[] = {4960, 4992};
    size_t want_tiny[5000 / 32], nt = 0;
    long start = cow_vec_live_nodes();
    build(&a, 5000);

    cow_vb_dup(&grown, &a);
    for (int k = 0; k < 100; k++)
        cr_assert_eq(cow_vb_push(&grown, cow_val_int(-k)), COW_OK);
    assert_diff(&a, &grown, want_grown, 4, "copy grown by 100");

    cow_vb_dup(&shrunk, &a);
    for (int k = 0; k < 40; k++) {
        cr_assert_eq(cow_vb_pop(&shrunk, &out), COW_OK);
        cow_val_release(&out);
    }
    assert_diff(&a, &shrunk, want_shrunk, 2, "copy shrunk by 40");

    /* Different trie heights: the shallower trie is compared with the deeper
     * one's leftmost subtree.  len 40 keeps leaf 0 shared; its tail is a copy. */
    cow_vb_dup(&tiny, &a);
    while (tiny.len > 40) {
        cr_assert_eq(cow_vb_pop(&tiny, &out), COW_OK);
        cow_val_release(&out);
    }
    cr_assert_eq(cow_vec_check(&tiny), COW_OK);
    for (size_t k = 32; k < 5000; k += 32)
        want_tiny[nt++] = k;
    assert_diff(&a, &tiny, want_tiny, nt, "copy shrunk to 40");

    cow_vb_clear(&a);
    cow_vb_clear(&grown);
    cow_vb_clear(&shrunk);
    cow_vb_clear(&tiny);
    cr_assert_eq(cow_vec_live_nodes(), start);
}

Test(vec, diff_random_edits_are_sound)
{
    /* Random edits on a copy: every block the diff skips must be equal in
     * both, and every block it visits must have been touched by an edit. */
    for (uint64_t seed = 1; seed <= 6; seed++) {
        uint64_t rng = seed * 1000003;
        cow_vecbody a, c;
        size_t len = 100 + tu_below(&rng, 3000);
        size_t nblocks = (len + 200) / 32 + 2;
        unsigned char *touched = calloc(nblocks, 1), *seen = calloc(nblocks, 1);
        visits *v = calloc(1, sizeof *v);
        cr_assert(touched && seen && v);
        build(&a, len);
        cow_vb_dup(&c, &a);
        for (int k = 0; k < 30; k++) {
            size_t r = tu_below(&rng, 10), i;
            cow_val out;
            if (r < 6) {
                i = tu_below(&rng, c.len);
                cr_assert_eq(cow_vb_set(&c, i, cow_val_int(-(int64_t)i)), COW_OK);
                touched[i / 32] = 1;
            }
            else if (r < 8 && c.len < len + 150) {
                touched[c.len / 32] = 1;
                cr_assert_eq(cow_vb_push(&c, cow_val_int(-1)), COW_OK);
            }
            else {
                cr_assert_eq(cow_vb_pop(&c, &out), COW_OK);
                cow_val_release(&out);
                touched[c.len / 32] = 1;
            }
        }
        cr_assert_eq(cow_vb_diff_blocks(&a, &c, record_visit, v), COW_OK);
        for (size_t k = 0; k < v->n; k++) {
            cr_assert_eq(v->idx[k] % 32, 0, "seed %llu: visit %zu is not a block start",
                         (unsigned long long)seed, v->idx[k]);
            cr_assert(touched[v->idx[k] / 32], "seed %llu: untouched block %zu visited",
                      (unsigned long long)seed, v->idx[k]);
            cr_assert_not(seen[v->idx[k] / 32], "seed %llu: block %zu visited twice",
                          (unsigned long long)seed, v->idx[k]);
            seen[v->idx[k] / 32] = 1;
        }
        size_t maxlen = a.len > c.len ? a.len : c.len;
        for (size_t i = 0; i < maxlen; i++) {
            if (seen[i / 32])
                continue;
            cr_assert(i < a.len && i < c.len, "seed %llu: skipped block %zu differs in length",
                      (unsigned long long)seed, i / 32 * 32);
            cr_assert(cow_val_equal(tu_vb_get(&a, i), tu_vb_get(&c, i)),
                      "seed %llu: skipped block holds a changed index %zu",
                      (unsigned long long)seed, i);
        }
        cow_vb_clear(&a);
        cow_vb_clear(&c);
        free(touched);
        free(seen);
        free(v);
    }
}

static int
stop_at_second(void *ctx, size_t index)
{
    int *calls = ctx;
    return ++*calls == 2 ? COW_EINVAL : COW_OK;
}

Test(vec, diff_stops_at_visitor_error)
{
    cow_vecbody a, c;
    int calls = 0;
    build(&a, 2000);
    cow_vb_dup(&c, &a);
    for (size_t i = 0; i < 2000; i += 100)
        cr_assert_eq(cow_vb_set(&c, i, cow_val_int(-1)), COW_OK);
    cr_assert_eq(cow_vb_diff_blocks(&a, &c, stop_at_second, &calls), COW_EINVAL);
    cr_assert_eq(calls, 2, "the walk must stop at the first error");
    cow_vb_clear(&a);
    cow_vb_clear(&c);
}

/* ---- allocation failure ------------------------------------------------------- */

enum { VOP_PUSH, VOP_POP, VOP_SET_FIRST, VOP_SET_LAST, VOP_COUNT };

/* One operation on b (and its model) with `budget` allocations allowed. */
static int
try_op(cow_vecbody *b, model *m, int op, long budget)
{
    cow_val v = val_for(7 * 1000003), out = cow_val_none();
    int rc;
    tu_fail_after(budget);
    switch (op) {
    case VOP_PUSH: rc = cow_vb_push(b, v); break;
    case VOP_POP: rc = cow_vb_pop(b, &out); break;
    case VOP_SET_FIRST: rc = cow_vb_set(b, 0, v); break;
    default: rc = cow_vb_set(b, b->len - 1, v); break;
    }
    tu_fail_after(-1);
    if (op == VOP_POP)
        cow_val_release(&v);        /* pop took nothing */
    if (rc < 0)
        return rc;
    switch (op) {
    case VOP_PUSH: model_push(m, 7 * 1000003); break;
    case VOP_POP:
        cr_assert(val_is(&out, m->ids[--m->len]), "pop returned the wrong value");
        cow_val_release(&out);
        break;
    case VOP_SET_FIRST: m->ids[0] = 7 * 1000003; break;
    default: m->ids[m->len - 1] = 7 * 1000003; break;
    }
    return rc;
}

Test(vec, allocation_failure_changes_nothing, .timeout = 20)
{
    /* Push, pop and set on a body whose nodes a copy shares (so every write
     * path-copies), failed at each allocation in turn: on COW_ENOMEM the body
     * and its copy read as before, and nothing leaks (set and push steal). */
    static const size_t sizes[] = {1, 4, 32, 33, 64, 65, 1056, 1057, 1100};
    long failures = 0;
    tu_alloc_install();
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++)
        for (int op = 0; op < VOP_COUNT; op++)
            for (long budget = 0;; budget++) {
                cow_vecbody b, copy;
                model m = {0}, mc;
                int rc;
                cow_vb_init(&b);
                for (size_t i = 0; i < sizes[s]; i++)
                    vb_push_id(&b, &m, (int64_t)i);
                cow_vb_dup(&copy, &b);
                model_copy(&mc, &m);
                rc = try_op(&b, &m, op, budget);
                cr_assert(rc == COW_OK || rc == COW_ENOMEM, "size %zu op %d: rc %d", sizes[s],
                          op, rc);
                failures += rc == COW_ENOMEM;
                assert_matches(&b, &m, rc ? "after a failed operation" : "after the operation");
                assert_matches(&copy, &mc, "the copy");
                cow_vb_clear(&b);
                cow_vb_clear(&copy);
                free(m.ids);
                free(mc.ids);
                cr_assert_eq(tu_alloc.blocks, 0, "size %zu op %d budget %ld: leak", sizes[s],
                             op, budget);
                if (rc == COW_OK)
                    break;
            }
    cr_assert_gt(failures, 20, "too few operations failed to test anything");
}

Test(vec, own_makes_later_writes_infallible, .timeout = 20)
{
    /* cow_vb_own's contract: once the range is owned, sets in it and pops
     * down to its start (index from removed too: at a leaf's start, the
     * leaf before becomes the tail) allocate nothing, even on a shared body. */
    static const size_t froms[] = {0, 1, 31, 32, 500, 1023, 1024, 1099};
    tu_alloc_install();
    for (size_t f = 0; f < sizeof froms / sizeof *froms; f++) {
        cow_vecbody b, copy;
        model m = {0}, mc;
        size_t from = froms[f];
        cow_vb_init(&b);
        for (size_t i = 0; i < 1100; i++)
            vb_push_id(&b, &m, (int64_t)i);
        cow_vb_dup(&copy, &b);
        model_copy(&mc, &m);
        for (long budget = 0;; budget++) {                    /* own itself may fail */
            tu_fail_after(budget);
            int rc = cow_vb_own(&b, from, b.len);
            tu_fail_after(-1);
            if (rc == COW_OK)
                break;
            cr_assert_eq(rc, COW_ENOMEM);
            assert_matches(&b, &m, "after a failed own");       /* reads as before */
        }
        long refused = tu_alloc.failures;
        for (size_t i = from; i < b.len; i += 7)
            vb_set_id(&b, &m, i, -(int64_t)i);                  /* ints: no allocation */
        tu_fail_after(0);
        for (size_t i = from; i < b.len; i += 7) {
            int64_t id = 7 * (int64_t)i + 1;                    /* an int (val_for) */
            cr_assert_eq(cow_vb_set(&b, i, cow_val_int(id)), COW_OK, "set %zu", i);
            m.ids[i] = id;
        }
        while (b.len > from) {
            cow_val out;
            cr_assert_eq(cow_vb_pop(&b, &out), COW_OK, "from %zu: pop at len %zu", from, b.len);
            m.len--;
            cr_assert(val_is(&out, m.ids[m.len]), "from %zu: pop at len %zu", from, b.len + 1);
            cow_val_release(&out);
        }
        tu_fail_after(-1);
        cr_assert_eq(tu_alloc.failures, refused, "from %zu: an owned write allocated", from);
        assert_matches(&b, &m, "after owned writes");
        assert_matches(&copy, &mc, "the copy");
        cow_vb_clear(&b);
        cow_vb_clear(&copy);
        free(m.ids);
        free(mc.ids);
        cr_assert_eq(tu_alloc.blocks, 0);
    }
}

/* cow_vb_trim gives spare tail slots back without changing any value, and
 * leaves a shared tail alone. */
Test(vec, trim_keeps_values_and_shared_tails)
{
    cow_vecbody b, c;
    cow_vb_init(&b);
    for (int i = 0; i < 37; i++)
        cr_assert_eq(cow_vb_push(&b, cow_val_int(i)), COW_OK);
    cow_vb_dup(&c, &b);
    cow_vb_trim(&b);                       /* shared with c: untouched */
    cr_assert_eq(b.tail, c.tail);
    cow_vb_clear(&c);
    cow_vb_trim(&b);
    cr_assert_eq(cow_vec_check(&b), COW_OK);
    for (int i = 0; i < 37; i++)
        cr_assert_eq(tu_vb_get(&b, (size_t)i)->u.i, i);
    cr_assert_eq(cow_vb_push(&b, cow_val_int(37)), COW_OK);   /* grows again */
    cr_assert_eq(tu_vb_get(&b, 37)->u.i, 37);
    cr_assert_eq(cow_vec_check(&b), COW_OK);
    cow_vb_clear(&b);
}

/* A pair read by one walk is the two values cow_vb_get reads, at every
 * position of every leaf (a map entry's key and value). */
Test(vec, pairs_are_the_values_at_i_and_i_plus_1)
{
    cow_vecbody b;
    cow_vb_init(&b);
    for (int64_t i = 0; i < 2 * 1100; i++)
        cr_assert_eq(cow_vb_push(&b, cow_val_int(i)), COW_OK);
    for (size_t i = 0; i + 1 < b.len; i += 2) {
        cow_val p[2];
        cow_vb_get_pair(&b, i, p);
        cr_assert(p[0].u.i == (int64_t)i && p[1].u.i == (int64_t)i + 1);
        cr_assert(memcmp(&p[0], tu_vb_get(&b, i), sizeof p[0]) == 0);
        cr_assert(memcmp(&p[1], tu_vb_get(&b, i + 1), sizeof p[1]) == 0);
    }
    cow_vb_clear(&b);
}

/* ---- packed leaves (VEC7) ------------------------------------------------------------ */

/* Small values are packed when a full leaf enters the trie; a write that
 * fits an item's length goes in place (the leaf stays packed), a wider one
 * unpacks the leaf; a copy taken before keeps its packed leaf and values;
 * blob values keep their references right through packing, unpacking,
 * popping and clearing (ASan's leak check and the live-node count). */
Test(vec, packed_leaves_read_write_and_share)
{
    enum { N = 32 * 5 + 7 };
    cow_vecbody b, copy;
    cow_vec_iter it;
    const cow_val *x;
    cow_vb_init(&b);
    for (int64_t i = 0; i < N; i++)
        cr_assert_eq(cow_vb_push(&b, i % 16 == 5 ? tu_str("a blob string, #%lld", (long long)i)
                                                 : cow_val_int(i)), COW_OK);
    cr_assert_eq(cow_vec_check(&b), COW_OK);
    cr_assert_null(cow_vb_slot(&b, 0), "a leaf of small ints is packed");
    cr_assert_not_null(cow_vb_slot(&b, N - 1), "the tail stays plain");
    cow_vec_iter_init(&it, &b, 0);
    for (int64_t i = 0; i < N; i++) {
        cow_val v = cow_vb_get(&b, (size_t)i);
        cr_assert_not_null(x = cow_vec_iter_next(&it));
        cr_assert(cow_val_equal(&v, x), "index %lld", (long long)i);
        cr_assert_eq(v.tag, i % 16 == 5 ? COW_T_STR : COW_T_INT);
        if (v.tag == COW_T_INT)
            cr_assert_eq(v.u.i, i);
    }
    cow_vb_dup(&copy, &b);
    cr_assert_eq(cow_vb_set(&b, 3, cow_val_int(-1)), COW_OK);          /* shared: path copy */
    cr_assert_eq(cow_vb_set(&b, 4, cow_val_int(-2)), COW_OK);          /* now in place */
    cr_assert_null(cow_vb_slot(&b, 4), "a write that fits keeps the leaf packed");
    cr_assert_eq(cow_vb_get(&b, 3).u.i, -1);
    cr_assert_eq(cow_vb_get(&b, 4).u.i, -2);
    cr_assert_eq(cow_vb_get(&copy, 3).u.i, 3, "the copy keeps its value");
    cr_assert_null(cow_vb_slot(&copy, 3));
    cr_assert_eq(cow_vb_set(&b, 6, cow_val_int(INT64_MAX)), COW_OK);  /* wider: unpacks */
    cr_assert_not_null(cow_vb_slot(&b, 6));
    cr_assert_eq(cow_vb_get(&b, 6).u.i, INT64_MAX);
    cr_assert_eq(cow_vb_get(&b, 5).tag, COW_T_STR);
    cr_assert_eq(cow_vec_check(&b), COW_OK);
    cr_assert_eq(cow_vec_check(&copy), COW_OK);
    for (int64_t i = N - 1; i >= 0; i--) {                             /* pops through */
        cow_val v;
        cr_assert_eq(cow_vb_pop(&copy, &v), COW_OK);
        cr_assert_eq(v.tag, i % 16 == 5 ? COW_T_STR : COW_T_INT);
        if (v.tag == COW_T_INT)
            cr_assert_eq(v.u.i, i);
        cow_val_release(&v);
        cr_assert_eq(cow_vec_check(&copy), COW_OK);
    }
    cow_vb_clear(&copy);
    cow_vb_clear(&b);
    cr_assert_eq(cow_vec_live_nodes(), 0);
}

/* A leaf whose values would not shrink by a quarter stays plain. */
Test(vec, leaves_of_blobs_stay_plain)
{
    cow_vecbody b;
    cow_vb_init(&b);
    for (int64_t i = 0; i < 64; i++)
        cr_assert_eq(cow_vb_push(&b, tu_str("a blob string, #%lld", (long long)i)), COW_OK);
    cr_assert_not_null(cow_vb_slot(&b, 0));
    cow_vb_clear(&b);
    cr_assert_eq(cow_vec_live_nodes(), 0);
}

/* VEC8: a packed leaf's copy retains the blob of its one raw item, wherever
 * that item sits, and a leaf of ints alone copies and frees retaining
 * nothing; ASan and the leak check see a missed or extra reference. */
Test(vec, packed_leaf_words_flag_covers_its_blobs)
{
    for (int64_t at = -1; at < 32; at += 32) {     /* no blob; a blob last in leaf 0 */
        cow_vecbody b, copy;
        cow_vb_init(&b);
        for (int64_t i = 0; i < 64; i++)
            cr_assert_eq(cow_vb_push(&b, i == at ? tu_str("the only blob, #%lld", (long long)i)
                                                 : cow_val_int(i)), COW_OK);
        cr_assert_null(cow_vb_slot(&b, 0), "leaf 0 is packed");
        cr_assert_eq(cow_vec_check(&b), COW_OK);
        cow_vb_dup(&copy, &b);
        cr_assert_eq(cow_vb_set(&copy, 0, cow_val_int(-1)), COW_OK);  /* path copy */
        cr_assert_null(cow_vb_slot(&copy, 0), "the copy's leaf stays packed");
        cr_assert_eq(cow_vec_check(&copy), COW_OK);
        cow_vb_clear(&b);
        if (at >= 0) {
            cow_val v = cow_vb_get(&copy, (size_t)at);
            const char *p;
            size_t n;
            cr_assert_eq(v.tag, COW_T_STR);
            cow_val_span(&v, &p, &n);
            cr_assert(n == 18 && memcmp(p, "the only blob, #31", 18) == 0);
        }
        cr_assert_eq(cow_vb_get(&copy, 0).u.i, -1);
        cow_vb_clear(&copy);
        cr_assert_eq(cow_vec_live_nodes(), 0);
    }
}

/* ---- appending a range ----------------------------------------------------- */

/* A body of n values: ids from `first`, a blob every `blob_every`-th (0: none,
 * so every trie leaf is packed), with the model. */
static void
range_source(cow_vecbody *b, model *m, size_t n, int blob_every)
{
    cow_vb_init(b);
    for (size_t i = 0; i < n; i++) {
        int64_t id = blob_every && i % (size_t)blob_every == 0 ? 7 * (int64_t)i : 7 * (int64_t)i + 1;
        vb_push_id(b, m, id);
    }
}

/* cow_vb_append_range gives the source's values in order after what the
 * destination held, at every alignment of the two: lined-up leaves shared,
 * offset ones joined (packed items as bytes, or values), the rest pushed;
 * the source reads as before and the result passes cow_vec_check. */
Test(vec, append_range_matches_the_source_at_every_offset, .timeout = 60)
{
    static const size_t froms[] = {0, 1, 5, 31, 32, 33, 100, 1023, 1024, 1050};
    static const size_t prefixes[] = {0, 1, 31, 32, 40};
    static const int blobs[] = {0, 7, 40};   /* none; many (plain or raw items); one a leaf or so */
    for (size_t s = 0; s < sizeof blobs / sizeof *blobs; s++) {
        cow_vecbody src;
        model ms = {0};
        range_source(&src, &ms, 1100, blobs[s]);
        for (size_t f = 0; f < sizeof froms / sizeof *froms; f++) {
            size_t from = froms[f];
            size_t tos[] = {from, from + 1, from + 31, from + 32, from + 33, from + 97, ms.len};
            for (size_t t = 0; t < sizeof tos / sizeof *tos; t++)
                for (size_t p = 0; p < sizeof prefixes / sizeof *prefixes; p++) {
                    size_t to = tos[t] < ms.len ? tos[t] : ms.len;
                    cow_vecbody dst;
                    model md = {0};
                    cow_vb_init(&dst);
                    for (size_t i = 0; i < prefixes[p]; i++)
                        vb_push_id(&dst, &md, -(int64_t)i - 1);
                    cr_assert_eq(cow_vb_append_range(&dst, &src, from, to), COW_OK,
                                 "blobs %d: [%zu, %zu) after %zu", blobs[s], from, to, prefixes[p]);
                    for (size_t i = from; i < to; i++)
                        model_push(&md, ms.ids[i]);
                    assert_matches(&dst, &md, "the appended body");
                    cow_vb_clear(&dst);
                    free(md.ids);
                }
        }
        assert_matches(&src, &ms, "the source");
        cow_vb_clear(&src);
        free(ms.ids);
    }
    cr_assert_eq(cow_vec_live_nodes(), 0);
}

/* Lined-up leaves are shared, not copied: appending 33 whole leaves of a
 * packed source makes only the destination's inner nodes, and the leaves
 * stay packed. */
Test(vec, append_range_shares_lined_up_leaves)
{
    cow_vecbody src, dst;
    model m = {0};
    range_source(&src, &m, 33 * 32 + 5, 0);
    long before = cow_vec_live_nodes();
    cow_vb_init(&dst);
    cr_assert_eq(cow_vb_append_range(&dst, &src, 0, 33 * 32), COW_OK);
    cr_assert_leq(cow_vec_live_nodes() - before, 3, "%ld nodes made for 33 shared leaves",
                  cow_vec_live_nodes() - before);
    cr_assert_null(cow_vb_slot(&dst, 0), "a shared leaf is the packed one");
    cr_assert_eq(cow_vb_set(&dst, 0, cow_val_int(-5)), COW_OK);    /* a shared leaf: path copy */
    cr_assert_eq(cow_vb_get(&src, 0).u.i, 1, "the source keeps its value");
    m.len = 33 * 32;
    m.ids[0] = -5;
    assert_matches(&dst, &m, "the appended body");
    cow_vb_clear(&dst);
    cow_vb_clear(&src);
    free(m.ids);
    cr_assert_eq(cow_vec_live_nodes(), 0);
}

/* Out of memory at any allocation, the destination is left valid, holding
 * what it had and a prefix of the range, and nothing leaks. */
Test(vec, append_range_allocation_failure_leaves_a_valid_prefix, .timeout = 30)
{
    static const size_t froms[] = {0, 3};
    long failures = 0;
    tu_alloc_install();
    for (size_t f = 0; f < sizeof froms / sizeof *froms; f++)
        for (long budget = 0;; budget++) {
            cow_vecbody src, dst;
            model ms = {0}, md = {0};
            int rc;
            range_source(&src, &ms, 1100, 7);
            cow_vb_init(&dst);
            vb_push_id(&dst, &md, -1);
            tu_fail_after(budget);
            rc = cow_vb_append_range(&dst, &src, froms[f], ms.len);
            tu_fail_after(-1);
            cr_assert(rc == COW_OK || rc == COW_ENOMEM, "rc %d", rc);
            failures += rc == COW_ENOMEM;
            cr_assert_eq(cow_vec_check(&dst), COW_OK, "budget %ld: a failed append broke it", budget);
            cr_assert_leq(dst.len, 1 + ms.len - froms[f]);
            for (size_t i = froms[f]; md.len < dst.len; i++)
                model_push(&md, ms.ids[i]);
            assert_matches(&dst, &md, "the prefix appended");
            assert_matches(&src, &ms, "the source");
            cow_vb_clear(&dst);
            cow_vb_clear(&src);
            free(ms.ids);
            free(md.ids);
            cr_assert_eq(tu_alloc.blocks, 0, "budget %ld: leak", budget);
            if (rc == COW_OK)
                break;
        }
    cr_assert_gt(failures, 20, "too few appends failed to test anything");
}
