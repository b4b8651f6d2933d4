/* When space comes back: sweeps after commits, and compaction.
 *
 * A sweep (store_segs.c) frees unreachable segments; its cost is one read
 * per reachable segment, so a commit sweeps only when that is cheap (a small
 * store, COW_STORE_EAGER_SWEEP) or when segments outgrew the live bytes by
 * COW_STORE_GARBAGE_RATIO (+ SLACK): amortised O(1) per byte written.
 *
 * A segment stays while any of its nodes is reachable, so after a sweep the
 * live bytes may still hold dead nodes; once they pass the ratio of what a
 * compaction would keep, commit compacts: every root's reachable nodes are
 * rewritten into fresh segments (shared subtrees once) and the old ones
 * swept.  Live bytes only grow between sweeps, except by what a deleted
 * root reached (store_apply_roots).  A root replaced by an unrelated value
 * (an import over a dataset) shows as garbage only when the committer says
 * so (cow_store_sweep_at_commit).  Bulk mode turns sweeps and compaction
 * off for long appends, whose commits add live data only. */
#include <string.h>

#include "cowstore/alloc.h"
#include "cowstore/errors.h"
#include "cowstore/twin.h"
#include "store_impl.h"

typedef struct root_list {
    char **names;
    size_t *lens;
    size_t n, cap;
} root_list;

static int
collect_name(void *ctx, const char *name, size_t len)
{
    root_list *l = ctx;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        char **nn = cow_realloc(l->names, cap * sizeof *nn);
        size_t *nl;
        if (nn == NULL)
            return COW_ENOMEM;
        l->names = nn;
        if ((nl = cow_realloc(l->lens, cap * sizeof *nl)) == NULL)
            return COW_ENOMEM;
        l->lens = nl;
        l->cap = cap;
    }
    if ((l->names[l->n] = cow_malloc(len)) == NULL)
        return COW_ENOMEM;
    memcpy(l->names[l->n], name, len);
    l->lens[l->n++] = len;
    return COW_OK;
}

/* Same value: one stored word, whichever slot form each side is in. */
static int
same_value(const cow_val *a, const cow_val *b)
{
    if (a->tag != b->tag || memcmp(a->inl, b->inl, sizeof a->inl) != 0)
        return 0;                       /* (a packed value's body offset) */
    if (cow_tag_has_word(a->tag) && cow_word_stored(a->u.w))
        return cow_word_stored(b->u.w) && cow_store_word_id(a) == cow_store_word_id(b);
    return memcmp(&a->u, &b->u, sizeof a->u) == 0;
}

/* The commit's puts (s->done) follow their roots from old pages to new,
 * in op->moved: op->page stays as it was until the compaction commits (a
 * failed try must leave it, and a retry starts from it). */
static void
follow_moves(cow_store *s, const root_list *l, const cow_val *old, const cow_val *moved)
{
    for (size_t j = 0; j < s->ndone; j++) {
        pending_op *op = &s->done[j];
        op->moved = op->page;
        for (size_t i = 0; !op->del && i < l->n; i++)
            if (l->lens[i] == op->nlen && memcmp(l->names[i], op->name, op->nlen) == 0
                && same_value(&op->page, &old[i]))
                op->moved = moved[i];
    }
}

/* Writes every root of l afresh into w (copy_all): old[i] its value before
 * (the bits only, for follow_moves), pages[i] after, in page form.  The
 * values read are let go of at once, so that the sweep after does not
 * count them as held. */
static int
rewrite_roots(cow_store *s, cow_segw *w, const root_list *l, cow_val *old, cow_val *pages)
{
    int rc = COW_OK;
    for (size_t i = 0; i < l->n && rc == COW_OK; i++) {
        cow_val read;
        if ((rc = cow_store_get(s, l->names[i], l->lens[i], &read)) == COW_FOUND) {
            cow_segw_value(w, &read, &pages[i]);
            rc = w->rc;
            old[i] = read;
            cow_val_release(&read);
        }
    }
    return rc == COW_OK ? cow_segw_finish(w) : rc;
}

/* Rewrites every root into fresh segments (the copy_all writer shares what
 * roots share), moves each root over, then sweeps the old segments. */
static int
apply_compaction(cow_store *s)
{
    root_list l = {0};
    cow_segw w;
    cow_val *pages = NULL, *old = NULL;
    root_change *changes = NULL;
    uint64_t written = 0, before = s->state.seg_bytes;
    int rc = cow_store_names(s, collect_name, &l);
    store_segw_init(s, &w, 1);
    if (rc == COW_OK && l.n && ((pages = cow_calloc(l.n, sizeof *pages)) == NULL
                                || (old = cow_calloc(l.n, sizeof *old)) == NULL
                                || (changes = cow_calloc(l.n, sizeof *changes)) == NULL))
        rc = COW_ENOMEM;
    if (rc == COW_OK)
        rc = rewrite_roots(s, &w, &l, old, pages);
    written = s->state.seg_bytes - before;
    for (size_t i = 0; i < l.n && rc == COW_OK; i++)
        changes[i] = (root_change){l.names[i], l.lens[i], &pages[i]};
    if (rc == COW_OK && (rc = store_apply_roots(s, changes, l.n)) == COW_OK)
        follow_moves(s, &l, old, pages);
    /* The rewrite is what a compaction keeps.  Values held here keep old
     * segments through the sweep, but are not counted as live: once let go
     * of, the next commit's sweep frees them. */
    if (rc == COW_OK && (rc = store_sweep(s, 0, &s->swept)) == COW_OK) {
        s->state.live_bytes = s->state.compact_bytes = written;
        rc = store_write_state(s);
    }
    for (size_t i = 0; i < l.n; i++)
        cow_free(l.names[i]);
    cow_free(l.names);
    cow_free(l.lens);
    cow_free(pages);
    cow_free(old);
    cow_free(changes);
    cow_segw_free(&w);
    return rc;
}

/* Compacts in a transaction of its own; the caller holds the gate. */
int
store_compact_locked(cow_store *s)
{
    int rc;
    if ((rc = store_grow_ahead(s)) < 0 || (rc = store_begin_write(s)) < 0)
        return rc;
    cow_twin_forget_slot(s->slot);      /* T3: every segment moves */
    if ((rc = store_commit_write(s, apply_compaction)) < 0)
        return rc;
    for (size_t i = 0; i < s->ndone; i++)
        s->done[i].page = s->done[i].moved;
    return COW_OK;
}

int
cow_store_compact(cow_store *s)
{
    int rc;
    if ((rc = store_enter(s)) < 0)
        return rc;
    if (store_owns_txn(s))
        return store_msg(COW_EINVAL, "compact() inside a transaction");
    if (s->flags & COW_STORE_READONLY)
        return store_msg(COW_EREADONLY, "store is readonly");
    if ((rc = store_gate_acquire(s)) < 0)
        return rc;
    rc = store_compact_locked(s);
    store_gate_release(s);          /* last: s may be gone after it */
    return rc;
}

/* bytes > RATIO * base + SLACK: grown past the bound garbage may take. */
static int
outgrew(uint64_t bytes, uint64_t base)
{
    return (double)bytes > COW_STORE_GARBAGE_RATIO * (double)base + (double)COW_STORE_GARBAGE_SLACK;
}

/* After a commit wrote `written` bytes of segments (fresh: none of them
 * reuses a stored node) and moved its roots: the state's estimates, and a
 * sweep when one is due. */
int
store_account_commit(cow_store *s, uint64_t written, int fresh)
{
    int rc, outgrow;
    /* All added is live when nothing became garbage, and in bulk mode,
     * where a commit lets go of an old tail only: counted as garbage, the
     * appends would look outgrown at the first ordinary commit after, and
     * its sweep would read a page of every segment (an import's resident
     * set, 35 MiB for 64 MiB of JSON Lines, went to 63). */
    if (!s->dropped || s->bulk)
        s->state.live_bytes += written;
    s->state.live_bytes -= s->deleted_bytes < s->state.live_bytes ? s->deleted_bytes
                                                                  : s->state.live_bytes;
    if (!s->dropped || fresh || s->bulk)
        s->state.compact_bytes += written;
    outgrow = outgrew(s->state.seg_bytes, s->state.live_bytes);
    if (s->bulk || (!s->dropped && !outgrow))
        return COW_OK;
    /* dropped: sweep if cheap; outgrown, or asked to: whatever it costs */
    rc = store_sweep(s, outgrow || s->sweep_all ? 0 : COW_STORE_EAGER_SWEEP, &s->swept);
    if (rc < 0 || !s->swept.ran)
        return rc;
    s->state.live_bytes = s->swept.kept;
    if (s->swept.reached < s->state.compact_bytes)
        s->state.compact_bytes = s->swept.reached;
    return COW_OK;
}

/* What the roots reach, as the last sweep found, outgrew what a compaction
 * would keep (what values held here keep on top is left out: compacting
 * cannot free it). */
int
store_needs_compaction(const cow_store *s)
{
    return !s->bulk && s->swept.ran && outgrew(s->swept.reached, s->state.compact_bytes);
}

void
cow_store_set_bulk(cow_store *s, int on)
{
    s->bulk = on != 0;
}

int
cow_store_sweep_at_commit(cow_store *s)
{
    if (!store_owns_txn(s))
        return store_msg(COW_EINVAL, "sweep_at_commit outside a transaction");
    s->sweep_all = 1;
    return COW_OK;
}
