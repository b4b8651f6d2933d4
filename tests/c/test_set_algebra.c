/* Criterion tests for csrc/core/set_algebra.c: each operation against a
 * model of Python's set (a membership array over small int keys, plus the
 * order the map must list them in), at sizes on both sides of the choice
 * between a change in place and a rebuild (REBUILD_RATIO) and of the
 * linear/indexed map (COW_MAP_LINEAR_MAX); with equal keys of two types
 * (1 and True), the operand being dst itself, copies sharing dst's nodes,
 * and every allocation failing in turn. */
#include <stdint.h>
#include <string.h>

#include <criterion/criterion.h>

#include "cowstore/errors.h"
#include "cowstore/map.h"
#include "cowstore/set_algebra.h"
#include "cowstore/value.h"

#include "cowtest.h"

TestSuite(set_algebra, .fini = tu_leak_check);

/* Keys are the ints [0, KEYS). */
#define KEYS 200

/* A set of ours and its model: in[k] and the keys in the map's order. */
typedef struct model {
    int in[KEYS];
    int order[KEYS];
    int n;
} model;

static void
model_add(model *s, int k)
{
    if (!s->in[k]) {
        s->in[k] = 1;
        s->order[s->n++] = k;
    }
}

/* Keeps the keys keep[] marks, in order. */
static void
model_keep(model *s, const int *keep)
{
    int w = 0;
    for (int i = 0; i < s->n; i++) {
        if (keep[s->order[i]])
            s->order[w++] = s->order[i];
        else
            s->in[s->order[i]] = 0;
    }
    s->n = w;
}

static void
add_int(cow_map *m, int64_t k)
{
    cow_val key = cow_val_int(k);
    cr_assert_eq(cow_map_set(m, key, tu_hash(&key), cow_val_none()), COW_OK);
}

/* A random set of about n keys, drawn from [0, KEYS), with its model. */
static cow_map *
random_set(uint64_t *rng, int n, model *s)
{
    cow_map *m = cow_map_new();
    memset(s, 0, sizeof *s);
    for (int i = 0; i < n; i++) {
        int k = (int)tu_below(rng, KEYS);
        if (!s->in[k])
            add_int(m, k);
        model_add(s, k);
    }
    return m;
}

/* The map lists exactly the model's keys in the model's order. */
static void
assert_matches(const cow_map *m, const model *s, const char *what)
{
    int i = 0;
    cr_assert_eq(cow_map_check(m), COW_OK, "%s: invariants", what);
    cr_assert_eq(cow_map_len(m), (size_t)s->n, "%s: %zu keys, model %d", what, cow_map_len(m), s->n);
    for (size_t e = 0; e < cow_map_entries(m); e++) {
        const cow_val *k = tu_entry_key(m, e);
        if (k->tag == COW_T_HOLE)
            continue;
        cr_assert_eq(k->tag, COW_T_INT, "%s", what);
        cr_assert_eq(k->u.i, s->order[i], "%s: key %d is %lld, model %d", what, i,
                     (long long)k->u.i, s->order[i]);
        i++;
    }
}

/* Sizes that put src below and above dst / REBUILD_RATIO, and both maps
 * below and above COW_MAP_LINEAR_MAX. */
static const int SIZES[] = {0, 1, 3, 8, 9, 20, 60, 150};
#define NSIZES (int)(sizeof SIZES / sizeof *SIZES)

enum { OP_ADD, OP_ADD_FOUND, OP_REMOVE, OP_TOGGLE, OP_KEEP, OP_DROP, NOPS };

static int
run_op(int op, cow_map *dst, const cow_map *src, const cow_map *third)
{
    switch (op) {
    case OP_ADD: return cow_set_add_keys(dst, src, NULL);
    case OP_ADD_FOUND: return cow_set_add_keys(dst, src, third);
    case OP_REMOVE: return cow_set_remove_keys(dst, src);
    case OP_TOGGLE: return cow_set_toggle_keys(dst, src);
    case OP_KEEP: return cow_set_keep_keys(dst, src, 1);
    default: return cow_set_keep_keys(dst, src, 0);
    }
}

static void
run_model(int op, model *d, const model *s, const model *t)
{
    int keep[KEYS];
    switch (op) {
    case OP_ADD:
    case OP_ADD_FOUND:
        for (int i = 0; i < s->n; i++)
            if (op == OP_ADD || t->in[s->order[i]])
                model_add(d, s->order[i]);
        return;
    case OP_TOGGLE: {
        model out = {{0}, {0}, 0};
        for (int i = 0; i < d->n; i++)
            if (!s->in[d->order[i]])
                model_add(&out, d->order[i]);
        for (int i = 0; i < s->n; i++)
            if (!d->in[s->order[i]])
                model_add(&out, s->order[i]);
        *d = out;
        return;
    }
    default:
        for (int k = 0; k < KEYS; k++)
            keep[k] = op == OP_KEEP ? s->in[k] : !s->in[k];
        model_keep(d, keep);
    }
}

static const char *const OP_NAMES[] = {"add", "add_found", "remove", "toggle", "keep", "drop"};

Test(set_algebra, every_operation_matches_the_model_at_every_size)
{
    uint64_t rng = 7;
    for (int op = 0; op < NOPS; op++)
        for (int a = 0; a < NSIZES; a++)
            for (int b = 0; b < NSIZES; b++) {
                model d, s, t, before;
                cow_map *dst = random_set(&rng, SIZES[a], &d);
                cow_map *src = random_set(&rng, SIZES[b], &s);
                cow_map *third = random_set(&rng, 100, &t);
                cow_map *copy = cow_map_clone(dst);      /* shares dst's nodes */
                char what[64];
                before = d;
                snprintf(what, sizeof what, "%s, sizes %d and %d", OP_NAMES[op], SIZES[a], SIZES[b]);
                cr_assert_eq(run_op(op, dst, src, third), COW_OK, "%s", what);
                run_model(op, &d, &s, &t);
                assert_matches(dst, &d, what);
                assert_matches(copy, &before, what);    /* the copy never changes */
                cow_map_release(dst);
                cow_map_release(src);
                cow_map_release(third);
                cow_map_release(copy);
            }
}

Test(set_algebra, predicates_match_the_model)
{
    uint64_t rng = 11;
    for (int a = 0; a < NSIZES; a++)
        for (int b = 0; b < NSIZES; b++) {
            model x, y;
            cow_map *mx = random_set(&rng, SIZES[a], &x);
            cow_map *my = random_set(&rng, SIZES[b], &y);
            int all = 1, any = 0;
            for (int i = 0; i < x.n; i++) {
                all &= y.in[x.order[i]];
                any |= y.in[x.order[i]];
            }
            cr_assert_eq(cow_set_all_in(mx, my), all, "sizes %d %d", SIZES[a], SIZES[b]);
            cr_assert_eq(cow_set_any_in(mx, my), any, "sizes %d %d", SIZES[a], SIZES[b]);
            cr_assert_eq(cow_set_all_in(mx, mx), 1);
            cr_assert_eq(cow_set_any_in(mx, mx), x.n > 0);
            cow_map_release(mx);
            cow_map_release(my);
        }
    /* a subset of equal size is the set itself; one larger is never a subset */
    {
        model x, y;
        cow_map *mx = random_set(&rng, 30, &x), *my = cow_map_clone(mx);
        add_int(my, KEYS + 1);
        cr_assert_eq(cow_set_all_in(mx, my), 1);
        cr_assert_eq(cow_set_all_in(my, mx), 0);
        (void)y;
        cow_map_release(mx);
        cow_map_release(my);
    }
}

/* Of two equal keys (1 and True) the walked side's survives where a key
 * joins, and dst's where dst keeps one: set's rules. */
Test(set_algebra, equal_keys_of_two_types_keep_the_right_one)
{
    cow_map *ints = cow_map_new(), *bools = cow_map_new(), *found = cow_map_new();
    cow_val one = cow_val_int(1), yes = cow_val_bool(1);
    cr_assert_eq(cow_map_set(ints, one, tu_hash(&one), cow_val_none()), COW_OK);
    cr_assert_eq(cow_map_set(bools, yes, tu_hash(&yes), cow_val_none()), COW_OK);
    cr_assert_eq(cow_set_add_keys(ints, bools, NULL), COW_OK);      /* ints |= bools */
    cr_assert_eq(cow_map_len(ints), 1);
    cr_assert_eq(tu_entry_key(ints, 0)->tag, COW_T_INT);
    cr_assert_eq(cow_set_keep_keys(ints, bools, 1), COW_OK);        /* ints &= bools */
    cr_assert_eq(tu_entry_key(ints, 0)->tag, COW_T_INT);
    cr_assert_eq(cow_set_add_keys(found, bools, ints), COW_OK);     /* bools' element */
    cr_assert_eq(tu_entry_key(found, 0)->tag, COW_T_BOOL);
    cr_assert_eq(cow_set_toggle_keys(found, ints), COW_OK);         /* True ^ 1 */
    cr_assert_eq(cow_map_len(found), 0);
    cow_map_release(ints);
    cow_map_release(bools);
    cow_map_release(found);
}

Test(set_algebra, the_operand_may_be_dst_itself)
{
    uint64_t rng = 3;
    for (int op = 0; op < NOPS; op++) {
        model d;
        cow_map *dst = random_set(&rng, 40, &d);
        model before = d;
        int keep[KEYS] = {0};
        cr_assert_eq(run_op(op, dst, dst, dst), COW_OK, "%s", OP_NAMES[op]);
        if (op == OP_REMOVE || op == OP_TOGGLE || op == OP_DROP)
            model_keep(&d, keep);                   /* s - s, s ^ s: empty */
        assert_matches(dst, &d, OP_NAMES[op]);
        (void)before;
        cow_map_release(dst);
    }
}

/* Every allocation failing in turn: the operation fails whole (rebuilds,
 * which swap their result in last) or keeps a prefix (changes in place),
 * and the map stays valid, its copy untouched, nothing leaked. */
Test(set_algebra, allocation_failures_leave_valid_maps)
{
    tu_alloc_install();
    for (int op = 0; op < NOPS; op++)
        for (int big = 0; big < 2; big++) {
            int done = 0;
            for (long budget = 0; !done; budget++) {
                uint64_t rng = 5;
                model d, s, t;
                cow_map *dst = random_set(&rng, 100, &d);
                cow_map *src = random_set(&rng, big ? 80 : 10, &s);
                cow_map *third = random_set(&rng, 100, &t);
                cow_map *copy = cow_map_clone(dst);
                model before = d;
                int rc;
                tu_fail_after(budget);
                rc = run_op(op, dst, src, third);
                tu_fail_after(-1);
                cr_assert(rc == COW_OK || rc == COW_ENOMEM, "%s: rc %d", OP_NAMES[op], rc);
                cr_assert_eq(cow_map_check(dst), COW_OK, "%s at budget %ld", OP_NAMES[op], budget);
                assert_matches(copy, &before, OP_NAMES[op]);
                if (rc == COW_OK) {
                    run_model(op, &d, &s, &t);
                    assert_matches(dst, &d, OP_NAMES[op]);
                    done = 1;
                }
                else if (big && op != OP_ADD && op != OP_ADD_FOUND)
                    assert_matches(dst, &before, "a failed rebuild changes nothing");
                cow_map_release(dst);
                cow_map_release(src);
                cow_map_release(third);
                cow_map_release(copy);
                (void)tu_read_error();
            }
        }
    cr_assert_eq(tu_alloc.blocks, 0, "%ld blocks leaked", tu_alloc.blocks);
}

/* Adding into an empty set (an intersection's result) fills it by a
 * rebuild: every allocation failing in turn leaves it empty, never a
 * prefix, and success gives src's keys (those third holds) in src's order. */
Test(set_algebra, adding_into_an_empty_set_is_all_or_nothing)
{
    tu_alloc_install();
    for (int op = OP_ADD; op <= OP_ADD_FOUND; op++) {
        int done = 0;
        for (long budget = 0; !done; budget++) {
            uint64_t rng = 9;
            model d = {{0}, {0}, 0}, s, t;
            cow_map *dst = cow_map_new();
            cow_map *src = random_set(&rng, 150, &s);
            cow_map *third = random_set(&rng, 100, &t);
            int rc;
            cr_assert_not_null(dst);
            tu_fail_after(budget);
            rc = run_op(op, dst, src, third);
            tu_fail_after(-1);
            cr_assert(rc == COW_OK || rc == COW_ENOMEM, "%s: rc %d", OP_NAMES[op], rc);
            if (rc == COW_OK) {
                run_model(op, &d, &s, &t);
                done = 1;
            }
            assert_matches(dst, &d, rc == COW_OK ? OP_NAMES[op] : "a failed add changes nothing");
            cow_map_release(dst);
            cow_map_release(src);
            cow_map_release(third);
            (void)tu_read_error();
        }
    }
    cr_assert_eq(tu_alloc.blocks, 0, "%ld blocks leaked", tu_alloc.blocks);
}
