/* The segment writer: turns heap nodes into packed, position-independent
 * page bytes.
 *
 * Why segments: a lookup hops through ~8 nodes; one LMDB search per hop
 * would cost ~0.7 us each.  Instead a commit packs the nodes it writes into
 * LMDB values ("segments", kept by LMDB in overflow pages that never move;
 * the store closes one at w->target bytes, one page: store.c says why), and a
 * child word names (segment, offset): a hop is pointer arithmetic inside the
 * map (ref.h).
 *
 * Order: children first (post-order), so a node is complete when appended
 * and a full segment can be put at any node boundary; the node writers in
 * vec.c, map.c and value.c call cow_segw_ref on each child, then
 * cow_segw_emit.  Words that already name a node of the target store are
 * kept as they are -- that is the structural sharing on disk: a commit of a
 * container derived from a stored one writes only its heap nodes, the
 * changed paths.  The memo writes a node shared by several parents (copies
 * on the heap, or one stored subtree during compaction) once.
 *
 * Segment bytes: nodes back to back, each 8-byte aligned (offsets are in
 * 8-byte units, ref.h), no header -- the segment's metadata (its references
 * to other segments, for reclaiming space) lives in its own record, so a
 * segment is written once and never rewritten.
 *
 * Invariants:
 *  S1  every page word emitted names a node appended earlier (in a segment
 *      of this write: put already, or still open and put by cow_segw_finish)
 *      or a node the target already held.
 *  S2  the refs put with a segment are exactly the other segments its nodes'
 *      words name.
 *  S3  up to COW_SEGW_OPEN segments are open at once; a node goes to one
 *      holding a child of it if it fits there, else to the fullest it fits
 *      (best fit), a node bigger than the target to a new one, and the
 *      fullest is closed when another must open.  (One open
 *      segment closed at the first node that did not fit: pages of 1 KiB
 *      record batches and 0.5 KiB leaves kept 15% of their room empty.)
 */
#include <string.h>

#include "cowstore/alloc.h"
#include "cowstore/errors.h"
#include "cowstore/node.h"
#include "cowstore/segment.h"
#include "cowstore/twin.h"

void
cow_segw_init(cow_segw *w, unsigned slot, int copy_all, const cow_segw_sink *sink, void *ctx)
{
    memset(w, 0, sizeof *w);
    w->outer_error = cow_ref_scope_enter();    /* only errors met while writing count */
    w->slot = slot;
    w->target = COW_SEG_TARGET;
    w->copy_all = copy_all;
    w->sink = sink;
    w->ctx = ctx;
    cow_u64map_init(&w->memo);
    cow_u64map_init(&w->live);
}

void
cow_segw_free(cow_segw *w)
{
    for (unsigned i = 0; i < w->nopen; i++) {
        cow_free(w->open[i].buf);
        cow_u64map_free(&w->open[i].refs);
    }
    w->nopen = 0;
    cow_u64map_free(&w->memo);
    cow_u64map_free(&w->live);
    cow_ref_scope_leave(w->outer_error);       /* w->rc reported what it held */
}

static void
fail(cow_segw *w, int rc)
{
    if (w->rc == COW_OK)
        w->rc = rc;
}

/* Fails the write if a read of the source met an error (poison would be
 * written as data): checked after each resolution and before each put, as
 * node writers record errors of the values they copy too. */
static int
read_failed(cow_segw *w)
{
    int rc = cow_ref_error();
    if (rc < 0)
        fail(w, rc);
    return rc < 0;
}

/* Puts open segment i and closes it (the last open one takes its place). */
static int
put_open_segment(cow_segw *w, unsigned i)
{
    cow_segw_open *o = &w->open[i];
    uint32_t *refs = NULL;
    size_t n = 0;
    int rc;
    if (read_failed(w) || w->rc < 0)
        return w->rc;
    if (o->refs.len && (refs = cow_malloc(o->refs.len * sizeof *refs)) == NULL) {
        fail(w, COW_ENOMEM);
        return w->rc;
    }
    for (size_t k = 0; k < o->refs.cap; k++)
        if (o->refs.cells[k].key)
            refs[n++] = (uint32_t)(o->refs.cells[k].key - 1);
    rc = w->sink->put(w->ctx, o->seg, o->buf, o->len, refs, n);
    cow_free(refs);
    if (rc < 0)
        fail(w, rc);
    w->bytes += o->len;
    w->segments++;
    cow_free(o->buf);
    cow_u64map_free(&o->refs);
    *o = w->open[--w->nopen];
    return w->rc;
}

static size_t
align8(size_t n)
{
    return (n + (COW_REF_UNIT - 1)) & ~(size_t)(COW_REF_UNIT - 1);
}

/* Whether a node of `size` naming up to nkids segments fits open segment o. */
static int
fits(const cow_segw *w, const cow_segw_open *o, size_t size, size_t nkids)
{
    return o->len + size + (o->refs.len + nkids) * w->ref_cost <= w->target;
}

/* Opens a new segment (closing the fullest when COW_SEGW_OPEN are open);
 * its index, or -1 with w->rc set. */
static int
open_segment(cow_segw *w)
{
    cow_segw_open *o;
    int rc;
    if (w->nopen == COW_SEGW_OPEN) {
        unsigned fullest = 0;
        for (unsigned i = 1; i < w->nopen; i++)
            if (w->open[i].len > w->open[fullest].len)
                fullest = i;
        if (put_open_segment(w, fullest) < 0)
            return -1;
    }
    o = &w->open[w->nopen];
    memset(o, 0, sizeof *o);
    cow_u64map_init(&o->refs);
    if ((rc = w->sink->new_id(w->ctx, &o->seg)) < 0) {
        fail(w, rc);
        return -1;
    }
    return (int)w->nopen++;
}

/* Whether open segment o holds one of the node's children. */
static int
holds_a_kid(const cow_segw_open *o, const cow_word *kids, size_t nkids)
{
    for (size_t i = 0; i < nkids; i++)
        if (cow_word_stored(kids[i]) && cow_word_seg(kids[i]) == o->seg)
            return 1;
    return 0;
}

/* The open segment a node of `size` goes to, with room made for it: one
 * that holds a child of it if one fits (a read hopping from it to that
 * child stays in the segment), else the fullest that fits (best fit), else
 * a new one -- a node bigger than the target gets one of its own.  NULL
 * with w->rc set on error. */
static cow_segw_open *
room_for(cow_segw *w, size_t size, const cow_word *kids, size_t nkids)
{
    int best = -1, near = 0;
    cow_segw_open *o;
    for (unsigned i = 0; i < w->nopen; i++) {
        int kin;
        if (!fits(w, &w->open[i], size, nkids))
            continue;
        kin = holds_a_kid(&w->open[i], kids, nkids);
        if (best < 0 || kin > near || (kin == near && w->open[i].len > w->open[best].len)) {
            best = (int)i;
            near = kin;
        }
    }
    if (best < 0 && (best = open_segment(w)) < 0)
        return NULL;
    o = &w->open[best];
    if (o->len + size > o->cap) {
        size_t cap = o->cap ? o->cap : 4096;
        char *b;
        while (cap < o->len + size)
            cap *= 2;
        if ((b = cow_realloc(o->buf, cap)) == NULL) {
            fail(w, COW_ENOMEM);
            return NULL;
        }
        o->buf = b;
        o->cap = cap;
    }
    return o;
}

cow_word
cow_segw_emit(cow_segw *w, const void *head, size_t hsize, const void *body, size_t bsize,
              const cow_word *kids, size_t nkids)
{
    size_t size = align8(hsize + bsize), off;
    cow_segw_open *o;
    if (w->rc < 0 || (o = room_for(w, size, kids, nkids)) == NULL)
        return 0;
    if (o->len / COW_REF_UNIT > COW_REF_OFF_MASK) {
        fail(w, COW_EOVERFLOW);         /* a node starting past 128 MiB: cannot be named */
        return 0;
    }
    off = o->len;
    memcpy(o->buf + off, head, hsize);
    if (bsize)
        memcpy(o->buf + off + hsize, body, bsize);
    memset(o->buf + off + hsize + bsize, 0, size - hsize - bsize);
    o->len += size;
    w->nodes++;
    for (size_t i = 0; i < nkids; i++) {
        if (cow_word_stored(kids[i]) && cow_word_seg(kids[i]) != o->seg
            && cow_u64map_put(&o->refs, (uint64_t)cow_word_seg(kids[i]) + 1, 1) < 0) {
            fail(w, COW_ENOMEM);
            return 0;
        }
    }
    return cow_word_make(o->seg, off, 0);
}

static cow_word
write_node(cow_segw *w, const void *node, int kind)
{
    return cow_node_ops_of(kind)->write(w, node, kind);
}

/* Whether the target still holds segment seg (asked once per segment). */
static int
target_holds(cow_segw *w, uint32_t seg)
{
    uint64_t known;
    int live;
    if (w->sink->seg_live == NULL)
        return 1;
    if (cow_u64map_get(&w->live, (uint64_t)seg + 1, &known) == COW_FOUND)
        return known == 1;
    if ((live = w->sink->seg_live(w->ctx, seg)) < 0) {
        fail(w, live);
        return 1;
    }
    if (cow_u64map_put(&w->live, (uint64_t)seg + 1, live ? 1 : 2) < 0)
        fail(w, COW_ENOMEM);
    return live;
}

/* The page word of a heap node's stored twin when twins are kept and the
 * target still holds it (T3), else 0. */
static cow_word
twin_held(cow_segw *w, const void *node)
{
    cow_word twin;
    if (!w->twins || cow_twin_find(node, &twin) != COW_FOUND
        || cow_word_slot(twin) != w->slot || !target_holds(w, cow_word_seg(twin)))
        return 0;
    w->kept++;
    return twin & ~(COW_REF_SLOT_MASK << COW_REF_SLOT_SHIFT);
}

cow_word
cow_segw_ref(cow_segw *w, const cow_word *wp, int kind)
{
    cow_word x = cow_ref_export(wp), page;
    const void *node;
    uint64_t memo;
    if (x == 0 || w->rc < 0)
        return 0;
    if (cow_word_stored(x) && cow_word_slot(x) == w->slot && !w->copy_all
        && target_holds(w, cow_word_seg(x))) {
        w->kept++;
        return x & ~(COW_REF_SLOT_MASK << COW_REF_SLOT_SHIFT);   /* already there */
    }
    node = cow_ref_get(wp, kind);
    if (read_failed(w))
        return 0;
    if (cow_u64map_get(&w->memo, (uint64_t)(uintptr_t)node, &memo) == COW_FOUND)
        return (cow_word)memo;
    if (!cow_word_stored(x) && (page = twin_held(w, node)) != 0)
        return page;
    if (w->depth >= COW_SEGW_MAX_DEPTH) {
        fail(w, COW_ECORRUPT);          /* only pages describing a cycle nest this deep */
        return 0;
    }
    w->depth++;
    page = write_node(w, node, kind);
    w->depth--;
    if (page && cow_u64map_put(&w->memo, (uint64_t)(uintptr_t)node, page) < 0)
        fail(w, COW_ENOMEM);
    return page;
}

static int
kind_of_tag(int tag)
{
    if (cow_tag_is_vec(tag))
        return COW_NK_VEC;
    if (cow_tag_is_map(tag))
        return COW_NK_MAP;
    if (tag == COW_T_PACKED)
        return COW_NK_PACK;
    return COW_NK_BLOB;
}

void
cow_segw_value(cow_segw *w, const cow_val *src, cow_val *dst)
{
    *dst = *src;
    if (src->tag == COW_T_STR_VIEW || src->tag == COW_T_BYTES_VIEW) {
        fail(w, COW_EINVAL);            /* V4: probe keys are never stored */
        return;
    }
    if (!cow_tag_has_word(src->tag))
        return;
    if (kind_of_tag(src->tag) == COW_NK_BLOB) {
        dst->u.w = cow_segw_ref(w, &src->u.w, COW_NK_BLOB);
        return;
    }
    if (w->nesting >= COW_SEGW_MAX_NESTING) {
        fail(w, COW_EOVERFLOW);         /* see COW_SEGW_MAX_NESTING */
        return;
    }
    w->nesting++;
    dst->u.w = cow_segw_ref(w, &src->u.w, kind_of_tag(src->tag));
    w->nesting--;
}

int
cow_segw_finish(cow_segw *w)
{
    while (w->nopen > 0 && w->rc == COW_OK)
        put_open_segment(w, 0);
    return w->rc;
}

/* ---- measuring ------------------------------------------------------------------ */

/* A sink that numbers segments and drops them. */
static int
count_new_id(void *ctx, uint32_t *seg)
{
    uint32_t *next = ctx;
    *seg = (*next)++;
    return COW_OK;
}

static int
count_put(void *ctx, uint32_t seg, const char *bytes, size_t len, const uint32_t *refs,
          size_t nrefs)
{
    return COW_OK;
}

static const cow_segw_sink count_sink = {count_new_id, NULL, count_put};

int
cow_segw_measure(const cow_val *vals, size_t n, uint64_t *bytes, uint64_t *nodes)
{
    cow_segw w;
    uint32_t next_seg = 1;
    int rc;
    /* copy_all: every reachable node is written, whichever store holds it. */
    cow_segw_init(&w, 0, 1, &count_sink, &next_seg);
    for (size_t i = 0; i < n && w.rc == COW_OK; i++) {
        cow_val page;
        cow_segw_value(&w, &vals[i], &page);
    }
    rc = cow_segw_finish(&w);
    *bytes = w.bytes;
    *nodes = w.nodes;
    cow_segw_free(&w);
    return rc;
}
