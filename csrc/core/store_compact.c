/* Compaction: rewrite every root's reachable nodes into fresh segments.
 *
 * Refcounts are per segment, so a segment stays while any of its nodes is
 * reachable; commit compacts once live segments outgrow what the last
 * compaction kept (store_needs_compaction), amortised O(1) per byte
 * written.  Bulk mode turns that off for long appends. */
#include <string.h>

#include "cowstore/alloc.h"
#include "cowstore/errors.h"
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
    if (a->tag != b->tag)
        return 0;
    if (cow_tag_has_word(a->tag) && cow_word_stored(a->u.w))
        return cow_word_stored(b->u.w) && cow_store_word_id(a) == cow_store_word_id(b);
    return memcmp(&a->u, &b->u, sizeof a->u) == 0;
}

/* The commit's puts (s->done) follow their roots from old pages to new. */
static void
follow_moves(cow_store *s, const root_list *l, const cow_val *old, const cow_val *moved)
{
    for (size_t j = 0; j < s->ndone; j++) {
        pending_op *op = &s->done[j];
        for (size_t i = 0; !op->del && i < l->n; i++)
            if (l->lens[i] == op->nlen && memcmp(l->names[i], op->name, op->nlen) == 0
                && same_value(&op->page, &old[i]))
                op->page = moved[i];
    }
}

/* Rewrites every root into fresh segments (the copy_all writer shares what
 * roots share), then moves each root over: the old segments drop to zero. */
static int
apply_compaction(cow_store *s)
{
    root_list l = {0};
    cow_segw w;
    cow_val *pages = NULL, *heap = NULL;
    root_change *changes = NULL;
    uint64_t first = s->state.next_seg;
    int rc = cow_store_names(s, collect_name, &l);
    cow_segw_init(&w, s->slot, 1, &store_sink, s);
    w.target = store_seg_target(s);
    if (rc == COW_OK && l.n && ((pages = cow_calloc(l.n, sizeof *pages)) == NULL
                                || (heap = cow_calloc(l.n, sizeof *heap)) == NULL
                                || (changes = cow_calloc(l.n, sizeof *changes)) == NULL))
        rc = COW_ENOMEM;
    for (size_t i = 0; i < l.n && rc == COW_OK; i++) {
        if ((rc = cow_store_get(s, l.names[i], l.lens[i], &heap[i])) == COW_FOUND) {
            cow_segw_value(&w, &heap[i], &pages[i]);
            rc = w.rc;
        }
    }
    if (rc == COW_OK)
        rc = cow_segw_finish(&w);
    for (size_t i = 0; i < l.n && rc == COW_OK; i++)
        changes[i] = (root_change){l.names[i], l.lens[i], &pages[i]};
    if (rc == COW_OK)
        rc = store_apply_roots(s, changes, l.n);
    if (rc == COW_OK)
        follow_moves(s, &l, heap, pages);
    if (rc == COW_OK)
        rc = store_count_live(s, first, s->state.next_seg);
    if (rc == COW_OK) {
        s->state.live_bytes = s->state.seg_bytes;    /* only the rewritten ones remain */
        rc = store_write_state(s);
    }
    for (size_t i = 0; i < l.n; i++) {
        if (heap)
            cow_val_release(&heap[i]);
        cow_free(l.names[i]);
    }
    cow_free(l.names);
    cow_free(l.lens);
    cow_free(pages);
    cow_free(heap);
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
    return store_commit_write(s, apply_compaction);
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

/* Live segments outgrew the bytes the last compaction kept (store.c). */
int
store_needs_compaction(const cow_store *s)
{
    double limit = COW_STORE_GARBAGE_RATIO * (double)s->state.live_bytes
                   + (double)COW_STORE_GARBAGE_SLACK;
    return !s->bulk && (double)s->state.seg_bytes > limit;
}

void
cow_store_set_bulk(cow_store *s, int on)
{
    s->bulk = on != 0;
}
