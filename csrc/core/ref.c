/* Child words and stored references: resolution, pins, the env table.
 *
 * See cowstore/ref.h for the word layout.  This file knows no node layout:
 * each module answers "how big is this stored node, and is its header sane"
 * (cow_*_stored_size) and supplies a poison node; this file only checks that
 * the answer lies inside the segment the word names.
 *
 * Invariants:
 *  R1  a registered env's segment cache holds, for each cached id, the offset
 *      and length LMDB reported for that segment; ids are never reused, so an
 *      entry stays right for as long as any pinned word can name it.  Every
 *      cached id sits in the run of full slots from its home (id & (cap - 1);
 *      nothing is ever removed but all at once), and `last`, when set, points
 *      at a slot of the current table.
 *  R2  cow_ref_resolve returns either a node whose bytes [p, p + size) lie in
 *      [base + off, base + off + len) of its segment, or a poison node with
 *      an error recorded in the calling thread's read scope: COW_ENOMEM if
 *      the segment cache could not grow, else COW_ECORRUPT.
 *  R3  a heap-form stored word (slot != 0) accounts for exactly one pin of
 *      its env while it is owned by heap memory.
 *  R4  the read-error slot is per thread and holds the first error of the
 *      innermost open scope only (ref.h, "Read scopes").
 *
 * Not thread-safe, like the rest of the core: the binding holds the GIL.
 * The read-error slot is the exception (R4): it says which call met an
 * error, and a thread that takes over the GIL must not inherit it.
 */
#include <string.h>

#include "cowstore/alloc.h"
#include "cowstore/errors.h"
#include "cowstore/node.h"
#include "cowstore/ref.h"
#include "cowstore/twin.h"

/* First segment cache size: the segments of a small store without growing. */
#define SPANS_MIN_CAP 64

static cow_ref_env *envs[COW_REF_MAX_ENVS];
static unsigned active[COW_REF_MAX_ENVS];   /* registered slots, compact */
static unsigned nactive;
/* The current read scope's first error (R4). */
static COW_THREAD_LOCAL int read_error;
_Atomic unsigned long cow_ref_moves;

int
cow_ref_scope_enter(void)
{
    int outer = read_error;
    read_error = COW_OK;
    return outer;
}

int
cow_ref_scope_leave(int outer)
{
    int err = read_error;
    read_error = outer;
    return err;
}

int
cow_ref_error(void)
{
    return read_error;
}

void
cow_ref_set_error(int err)
{
    if (read_error == COW_OK)
        read_error = err;
}

int
cow_ref_env_add(cow_ref_env *env)
{
    for (unsigned slot = 1; slot < COW_REF_MAX_ENVS; slot++) {
        if (envs[slot] == NULL) {
            envs[slot] = env;
            active[nactive++] = slot;
            return (int)slot;
        }
    }
    return COW_EOVERFLOW;
}

void
cow_ref_env_remove(unsigned slot)
{
    if (slot == 0 || slot >= COW_REF_MAX_ENVS || envs[slot] == NULL)
        return;
    cow_ref_env_forget(envs[slot]);
    cow_twin_forget_slot(slot);     /* T3: the slot may name another store next */
    cow_u64map_free(&envs[slot]->seg_pins);
    envs[slot] = NULL;
    for (unsigned i = 0; i < nactive; i++) {
        if (active[i] == slot) {
            active[i] = active[--nactive];
            break;
        }
    }
}

cow_ref_env *
cow_ref_env_at(unsigned slot)
{
    return slot < COW_REF_MAX_ENVS ? envs[slot] : NULL;
}

void
cow_ref_env_forget(cow_ref_env *env)
{
    cow_free(env->spans);
    env->spans = NULL;
    env->last = NULL;
    env->nspans = env->capspans = 0;
}

/* The slot of the env whose mapping holds address p, or 0. */
static unsigned
slot_containing(const void *p)
{
    for (unsigned i = 0; i < nactive; i++) {
        cow_ref_env *e = envs[active[i]];
        if ((uintptr_t)p - (uintptr_t)e->base < e->size)
            return active[i];
    }
    return 0;
}

/* The slot of segment seg in a span table of cap slots (a power of two):
 * the one holding it, or the empty one where it would go. */
static cow_seg_span *
span_slot(cow_seg_span *spans, size_t cap, uint32_t seg)
{
    size_t i = seg & (cap - 1);
    while (spans[i].len != 0 && spans[i].seg != seg)
        i = (i + 1) & (cap - 1);
    return &spans[i];
}

/* Doubles the span table (or makes the first one), rehashing every span. */
static int
spans_grow(cow_ref_env *env)
{
    size_t cap = env->capspans ? 2 * env->capspans : SPANS_MIN_CAP;
    cow_seg_span *spans = cow_calloc(cap, sizeof *spans);
    if (spans == NULL)
        return COW_ENOMEM;
    for (size_t i = 0; i < env->capspans; i++)
        if (env->spans[i].len != 0)
            *span_slot(spans, cap, env->spans[i].seg) = env->spans[i];
    cow_free(env->spans);
    env->spans = spans;
    env->capspans = cap;
    env->last = NULL;
    return COW_OK;
}

/* Where segment seg of env lies, checked to be inside the map and 8-byte
 * aligned (nodes are read as structs): from the cache, or asked of the
 * env's lookup and cached (R1). */
static int
segment_span(cow_ref_env *env, uint32_t seg, const cow_seg_span **span)
{
    cow_seg_span *slot;
    size_t off, n;
    int rc;
    if (env->last != NULL && env->last->seg == seg) {
        *span = env->last;
        return COW_OK;
    }
    if (env->capspans != 0 && (slot = span_slot(env->spans, env->capspans, seg))->len != 0) {
        *span = env->last = slot;
        return COW_OK;
    }
    if (env->lookup == NULL || (rc = env->lookup(env->ctx, seg, &off, &n)) < 0)
        return COW_ECORRUPT;
    if (off > env->size || n > env->size - off || n == 0 || n > UINT32_MAX
        || (uintptr_t)(env->base + off) % COW_REF_UNIT != 0)
        return COW_ECORRUPT;
    if (2 * (env->nspans + 1) > env->capspans && (rc = spans_grow(env)) < 0)
        return rc;
    slot = span_slot(env->spans, env->capspans, seg);
    *slot = (cow_seg_span){seg, (uint32_t)n, off};
    env->nspans++;
    *span = env->last = slot;
    return COW_OK;
}

/* Out of line and cold: the resolve that succeeds, every read's, then keeps
 * few registers and no call but the size check. */
#if defined(__GNUC__)
__attribute__((noinline, cold))
#endif
static void *
poison(int kind, int err)
{
    cow_ref_set_error(err);
    return cow_node_ops_of(kind)->poison(kind);
}

static size_t
stored_size(const void *p, size_t avail, int kind)
{
    return cow_node_ops_of(kind)->stored_size(p, avail, kind);
}

/* The env a stored word names, or NULL. */
static cow_ref_env *
env_of(const cow_word *wp, cow_word w)
{
    unsigned slot = cow_word_slot(w);
    if (slot == 0)
        slot = slot_containing(wp);
    return slot ? envs[slot] : NULL;
}

void *
cow_ref_resolve(const cow_word *wp, int kind)
{
    cow_word w = *wp;
    cow_ref_env *env = env_of(wp, w);
    const cow_seg_span *span;
    const char *p;
    size_t len, off = cow_word_off(w);
    int rc;
    if (env == NULL)
        return poison(kind, COW_ECORRUPT);
    if ((rc = segment_span(env, cow_word_seg(w), &span)) < 0)
        return poison(kind, rc);
    len = span->len;
    if (off >= len || len - off < COW_REF_UNIT)
        return poison(kind, COW_ECORRUPT);
    p = env->base + span->off + off;
    if (stored_size(p, len - off, kind) == 0)
        return poison(kind, COW_ECORRUPT);
    return (void *)p;
}

cow_word
cow_ref_export(const cow_word *wp)
{
    return cow_ref_export_from(*wp, wp);
}

cow_word
cow_ref_export_from(cow_word w, const void *where)
{
    unsigned slot;
    if (!cow_word_stored(w) || cow_word_slot(w) != 0)
        return w;
    slot = slot_containing(where);
    /* A word outside every mapping (a poison node's) stays slot 0 and
     * resolves to poison again wherever it is copied. */
    return w | ((cow_word)slot << COW_REF_SLOT_SHIFT);
}

static int
exports_equal(const cow_word *a, const cow_word *b)
{
    return cow_ref_export(a) == cow_ref_export(b);
}

/* Whether heap node `heap` (or none) has the stored node *stored as its
 * twin: the same bytes (twin.h T1).  A stale twin never matches, as
 * segment ids are never reused in a store. */
static int
twin_of(cow_word heap, const cow_word *stored)
{
    cow_word twin;
    if (heap == 0 || !(*(const uint32_t *)heap & COW_REFCNT_TWIN)
        || cow_twin_find((const void *)heap, &twin) != COW_FOUND)
        return 0;
    return twin == cow_ref_export(stored);
}

int
cow_word_same(const cow_word *a, const cow_word *b, int *one_map)
{
    cow_word wa = *a, wb = *b;
    if (cow_word_stored(wa) != cow_word_stored(wb))
        return cow_word_stored(wa) ? twin_of(wb, a) : twin_of(wa, b);
    if (!cow_word_stored(wa))
        return wa == wb;                /* heap nodes or none on both sides */
    if (cow_word_slot(wa) && cow_word_slot(wb))
        return wa == wb;                /* both name their store */
    if (cow_word_slot(wa) || cow_word_slot(wb))
        return exports_equal(a, b);
    if (wa != wb)                       /* both in pages: another segment or offset */
        return 0;
    if (one_map == NULL)
        return exports_equal(a, b);
    if (*one_map < 0)
        *one_map = exports_equal(a, b);
    return *one_map;
}

void
cow_ref_view(cow_word w, int delta)
{
    cow_ref_env *env = cow_word_stored(w) ? envs[cow_word_slot(w)] : NULL;
    if (env)
        env->views += delta;
}

void
cow_ref_pin(cow_word w, int delta)
{
    cow_ref_env *env = envs[cow_word_slot(w)];
    uint64_t key = (uint64_t)cow_word_seg(w) + 1, now;
    if (env == NULL)
        return;
    env->pins += delta;
    if (cow_u64map_add(&env->seg_pins, key, (uint64_t)(int64_t)delta, &now) < 0)
        env->pins_untracked = 1;
    if (env->pins == 0) {
        cow_u64map_clear(&env->seg_pins);
        env->pins_untracked = 0;
        if (env->unpinned)
            env->unpinned(env);
    }
}
