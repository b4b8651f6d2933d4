/* Set algebra on map keys: union, difference, symmetric difference,
 * intersection and the subset tests, between two maps of the core.
 *
 * Why here: CowSet is a map whose values are all None (set.c).  Its
 * operators, written over Python iteration, made a Python object of every
 * element of one side and looked it up in the other: 6-19x set's time.  Two
 * sets of ours already hold their elements as keys with one notion of
 * equality (cow_val_equal, cow_val_hash), so each operation here walks one
 * map's log in order and looks each key up in the other by hash, making no
 * object: a step is a hash of the key's bytes, a lookup and, for a change,
 * a map write.
 *
 * Which side is walked is the caller's choice: for a union or a symmetric
 * difference it must be the source (its keys join), for an intersection the
 * side whose elements are kept (of two equal keys, 1 and True, set keeps
 * the walked side's), for a difference the smaller.
 *
 * Deleting is the dear step (a hole in the log, an index node rewritten, a
 * compaction now and then: ~2,900 instructions where a lookup is ~500), so
 * an operation that removes a good part of dst -- an intersection, a
 * difference or symmetric difference with a set not much smaller than dst --
 * collects the entries dst keeps into a new map as it walks (a
 * cow_map_builder: no lookups, one index build from the walk's hashes),
 * then swaps the new entries in (cow_map_swap: dst keeps its identity).  A
 * small change is made in place, where the rest stays shared with dst's
 * copies.  REBUILD_RATIO decides.
 *
 * Walking a map while writing another is safe: a map writes only nodes it
 * owns alone (a node two maps share is copied first), so the walked map's
 * nodes never change under the walk.  Walking a map while writing that very
 * map is not (a delete may compact its log), so each function either takes
 * the case dst == src as the identity it is (s - s is empty) or walks a
 * clone of dst (O(1), sharing every node).  A rebuild writes dst only once
 * its walks are done.
 *
 * Errors: a write's error stops the walk and is returned; a stored map's
 * corrupt bytes are recorded in the read scope (ref.h) and stop the walk at
 * the next key, before a poison key can join dst.
 */
#include "cowstore/set_algebra.h"

#include "cowstore/errors.h"
#include "cowstore/ref.h"

#include "cowstore/alloc.h"

/* A change of dst by a walk of src is made in place when src holds fewer
 * than 1/REBUILD_RATIO of dst's entries, else dst is rebuilt: a delete
 * costs about 4x (lookup + copy into a new map) per entry kept, so past a
 * quarter rebuilding is cheaper, and it leaves dst compact. */
#define REBUILD_RATIO 4

/* What a walk does with one entry of the walked map: COW_OK to go on, 1 to
 * stop with that answer (the predicates), or an error. */
typedef int (*entry_visit)(void *ctx, const cow_val *key, const cow_val *val, uint64_t hash);

/* Calls visit on every live entry of m in log order, with its key's hash:
 * COW_OK after the last, else visit's first non-COW_OK answer or the read
 * error.  key and val point where they lie, maybe in a stored leaf: a visit
 * keeps one with cow_val_copy (V7). */
static int
walk_entries(const cow_map *m, entry_visit visit, void *ctx)
{
    cow_vec_iter it;
    const cow_val *key, *val;
    uint64_t hash;
    int rc;
    cow_vec_iter_init(&it, &m->log, 0);
    while ((key = cow_vec_iter_next(&it)) != NULL && (val = cow_vec_iter_next(&it)) != NULL) {
        if ((rc = cow_ref_error()) != COW_OK)
            return rc;
        if (key->tag == COW_T_HOLE)
            continue;
        if ((rc = cow_val_hash(key, &hash)) < 0 || (rc = visit(ctx, key, val, hash)) != COW_OK)
            return rc;
    }
    return cow_ref_error();
}

/* Calls walk_entries on an O(1) clone of m, for a walk during which m may
 * change (the clone's nodes, shared, are copied before m writes them). */
static int
walk_clone(const cow_map *m, entry_visit visit, void *ctx)
{
    cow_map *walked = cow_map_clone(m);
    int rc;
    if (walked == NULL)
        return COW_ENOMEM;
    rc = walk_entries(walked, visit, ctx);
    cow_map_release(walked);
    return rc;
}

/* A rebuild's new map, filled with the entries a walk keeps (map.h
 * cow_map_builder: no lookups; the walk's hashes serve the index). */
typedef struct rebuilt {
    cow_map *map;
    cow_map_builder mb;
} rebuilt;

static int
rebuilt_begin(rebuilt *r)
{
    if ((r->map = cow_map_new()) == NULL)
        return COW_ENOMEM;
    cow_map_build_begin(&r->mb, r->map);
    return COW_OK;
}

/* Keeps (key, val), which may lie in pages: new references taken. */
static int
rebuilt_keep(rebuilt *r, const cow_val *key, const cow_val *val, uint64_t hash)
{
    cow_val k, v;
    cow_val_copy(&k, key);
    cow_val_copy(&v, val);
    return cow_map_build_add(&r->mb, k, hash, v);      /* steals both */
}

/* Ends the rebuild: after a walk that answered rc == COW_OK, dst takes the
 * kept entries and keeps its identity (COW_OK, or an error with dst
 * unchanged); else the kept entries are dropped and rc returned. */
static int
rebuilt_end(rebuilt *r, cow_map *dst, int rc)
{
    if (rc != COW_OK)
        cow_map_build_abort(&r->mb);
    else if ((rc = cow_map_build_end(&r->mb)) == COW_OK)
        cow_map_swap(dst, r->map);
    cow_map_release(r->map);                /* dst's old entries, or the kept */
    return rc;
}

/* The maps a visit reads and writes. */
typedef struct set_pair {
    cow_map *dst;               /* written (NULL for the predicates) */
    const cow_map *other;       /* looked up */
    int keep_found;             /* which entries a filter keeps */
    rebuilt *into;              /* add_if_absent: dst's new entries, if not NULL */
} set_pair;

/* Whether map m holds key: COW_FOUND, COW_NOT_FOUND or an error. */
static int
holds(const cow_map *m, const cow_val *key, uint64_t hash)
{
    size_t entry;
    return cow_map_find(m, key, hash, &entry);
}

/* Adds key (a new reference taken; key may lie in pages) with value None
 * unless m holds it. */
static int
add_key(cow_map *m, const cow_val *key, uint64_t hash)
{
    cow_val k;
    int rc;
    cow_val_copy(&k, key);
    rc = cow_map_add(m, k, hash, cow_val_none());       /* steals k */
    return rc < 0 ? rc : COW_OK;
}

/* ---- filters: a walk that collects the entries kept, then a rebuild ---- */

/* A walk collecting the entries keep chooses into a rebuild. */
typedef struct filter_walk {
    cow_set_keep keep;
    void *ctx;
    rebuilt *kept;
} filter_walk;

static int
collect_kept(void *ctx, const cow_val *key, const cow_val *val, uint64_t hash)
{
    filter_walk *f = ctx;
    int rc = f->keep(f->ctx, key, val, hash);
    return rc <= 0 ? rc : rebuilt_keep(f->kept, key, val, hash);
}

/* Adds to the rebuild the entries of m that keep chooses, in m's order. */
static int
collect(const cow_map *m, cow_set_keep keep, void *ctx, rebuilt *kept)
{
    filter_walk f = {.keep = keep, .ctx = ctx, .kept = kept};
    return walk_entries(m, collect_kept, &f);
}

int
cow_set_filter(cow_map *m, cow_set_keep keep, void *ctx)
{
    rebuilt r;
    int rc = rebuilt_begin(&r);
    return rc != COW_OK ? rc : rebuilt_end(&r, m, collect(m, keep, ctx, &r));
}

/* cow_set_keep for a filter by membership in p->other. */
static int
found_as_wanted(void *ctx, const cow_val *key, const cow_val *val, uint64_t hash)
{
    const set_pair *p = ctx;
    int rc = holds(p->other, key, hash);
    return rc < 0 ? rc : (rc == COW_FOUND) == p->keep_found;
}

/* ---- the operations ------------------------------------------------------ */

static int
add_if_absent(void *ctx, const cow_val *key, const cow_val *val, uint64_t hash)
{
    set_pair *p = ctx;
    const cow_val none = cow_val_none();
    int rc;
    if (p->other != NULL && (rc = holds(p->other, key, hash)) != COW_FOUND)
        return rc;                  /* not in only_in: skipped (or an error) */
    return p->into ? rebuilt_keep(p->into, key, &none, hash) : add_key(p->dst, key, hash);
}

int
cow_set_add_keys(cow_map *dst, const cow_map *src, const cow_map *only_in)
{
    set_pair p = {.dst = dst, .other = only_in, .keep_found = 0};
    rebuilt r;
    int rc;
    if (src == dst && only_in == NULL)
        return COW_OK;              /* s | s is s */
    if (src == dst)                 /* dst changes as it is walked */
        return walk_clone(src, add_if_absent, &p);
    if (cow_map_len(dst) != 0)
        return walk_entries(src, add_if_absent, &p);
    /* Into an empty dst (an intersection's result): src's keys are
     * distinct, so each one kept is appended with no lookup in dst and the
     * index is built once at the end (A & B at 10^4: 834 instructions an
     * element of B, where an insert each took 1,093). */
    if ((rc = rebuilt_begin(&r)) != COW_OK)
        return rc;
    p.into = &r;
    return rebuilt_end(&r, dst, walk_entries(src, add_if_absent, &p));
}

/* Whether a change of dst by each key of src is best made in place. */
static int
in_place(const cow_map *dst, const cow_map *src)
{
    return cow_map_len(src) < cow_map_len(dst) / REBUILD_RATIO;
}

static int
remove_key(void *ctx, const cow_val *key, const cow_val *val, uint64_t hash)
{
    set_pair *p = ctx;
    int rc = cow_map_del(p->dst, key, hash, NULL);
    return rc < 0 ? rc : COW_OK;
}

int
cow_set_remove_keys(cow_map *dst, const cow_map *src)
{
    set_pair p = {.dst = dst, .other = src, .keep_found = 0};
    if (src == dst) {               /* s - s is empty */
        cow_map_clear(dst);
        return COW_OK;
    }
    if (in_place(dst, src))
        return walk_entries(src, remove_key, &p);
    return cow_set_filter(dst, found_as_wanted, &p);
}

static int
toggle_key(void *ctx, const cow_val *key, const cow_val *val, uint64_t hash)
{
    set_pair *p = ctx;
    cow_val k;
    int rc;
    cow_val_copy(&k, key);
    rc = cow_map_toggle(p->dst, k, hash, cow_val_none());   /* steals k */
    return rc < 0 ? rc : COW_OK;
}

int
cow_set_toggle_keys(cow_map *dst, const cow_map *src)
{
    set_pair p = {.dst = dst, .other = src, .keep_found = 0};
    rebuilt r;
    int rc;
    if (src == dst) {               /* s ^ s is empty */
        cow_map_clear(dst);
        return COW_OK;
    }
    if (in_place(dst, src))
        return walk_entries(src, toggle_key, &p);
    if ((rc = rebuilt_begin(&r)) != COW_OK)
        return rc;
    /* dst's keys src lacks, then src's dst lacks: the order in place gives */
    if ((rc = collect(dst, found_as_wanted, &p, &r)) == COW_OK) {
        p.other = dst;
        rc = collect(src, found_as_wanted, &p, &r);
    }
    return rebuilt_end(&r, dst, rc);
}

int
cow_set_keep_keys(cow_map *dst, const cow_map *other, int keep_found)
{
    set_pair p = {.dst = dst, .other = other, .keep_found = 1};
    if (!keep_found)
        return cow_set_remove_keys(dst, other);
    if (other == dst)
        return COW_OK;              /* s & s is s */
    return cow_set_filter(dst, found_as_wanted, &p);
}

/* A predicate's visit: stops (1) at the first key whose presence in other
 * is p->keep_found. */
static int
stop_at(void *ctx, const cow_val *key, const cow_val *val, uint64_t hash)
{
    set_pair *p = ctx;
    int rc = holds(p->other, key, hash);
    if (rc < 0)
        return rc;
    return (rc == COW_FOUND) == p->keep_found ? 1 : COW_OK;
}

int
cow_set_all_in(const cow_map *a, const cow_map *b)
{
    set_pair p = {.dst = NULL, .other = b, .keep_found = 0};      /* stop at a key b lacks */
    int rc;
    if (a == b)
        return 1;
    if (cow_map_len(a) > cow_map_len(b))
        return 0;                   /* more distinct keys than b holds */
    rc = walk_entries(a, stop_at, &p);
    return rc < 0 ? rc : rc == COW_OK;
}

int
cow_set_any_in(const cow_map *a, const cow_map *b)
{
    set_pair p = {.dst = NULL, .other = b, .keep_found = 1};      /* stop at a key b holds */
    int rc;
    if (a == b)
        return cow_map_len(a) > 0;
    rc = walk_entries(a, stop_at, &p);
    return rc < 0 ? rc : rc == 1;
}
