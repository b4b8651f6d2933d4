/* Segment records and their refcounts.
 *
 * Every segment has a record in `segmeta` (store.c gives its bytes): how
 * many roots and segments name it, and which segments it names.  Writing a
 * segment counts the references it makes; a root moving away from a value,
 * or a freed segment, drops one; at zero the segment goes, transitively.
 * The segment writer (segment.c) reaches this file through store_sink. */
#include <string.h>

#include "cowstore/alloc.h"
#include "cowstore/errors.h"
#include "store_impl.h"

/* Segment record header (then nrefs u32 ids). */
typedef struct seg_record {
    uint32_t refcnt;
    uint32_t bytes;
    uint32_t nrefs;
    uint32_t flags;         /* SEG_COUNTED */
} seg_record;

/* The segment's bytes are counted in state.live_bytes (written by a fresh
 * commit or a compaction), so freeing it subtracts them. */
#define SEG_COUNTED 1u

/* Smallest segment: past LMDB's largest in-page value (under half a page),
 * so every segment lives in overflow pages, which LMDB never moves. */
static size_t
seg_min(cow_store *s)
{
    MDB_stat st;
    mdb_env_stat(s->env, &st);
    return st.ms_psize / 2 + COW_REF_UNIT;
}

/* Segments fill one overflow page.  LMDB reuses a freed run of pages for a
 * multi-page value only if it finds the run contiguous in its freelist, and
 * the page-at-a-time B-tree updates of every commit fragment it: with 32 MiB,
 * 256 KiB or 64 KiB segments the file grew by one data size per compaction
 * (4.5x after 4,000 one-change versions of a 10^5-entry map, still rising);
 * with one-page segments it settles at 2.8x. */
size_t
store_seg_target(cow_store *s)
{
    MDB_stat st;
    mdb_env_stat(s->env, &st);
    return st.ms_psize - LMDB_PAGE_HEADER;
}

static int
sink_new_id(void *ctx, uint32_t *seg)
{
    cow_store *s = ctx;
    if (s->state.next_seg > UINT32_MAX)
        return store_msg(COW_EOVERFLOW, "segment ids exhausted: compact into a new store");
    *seg = (uint32_t)s->state.next_seg++;
    return COW_OK;
}

/* Puts a segment record back with a new header (v: its current bytes, which
 * LMDB owns: they are copied). */
static int
rewrite_record(cow_store *s, MDB_val *k, const MDB_val *v, const seg_record *rec)
{
    MDB_val nv = {v->mv_size, NULL};
    int mrc;
    if ((nv.mv_data = cow_malloc(v->mv_size)) == NULL)
        return COW_ENOMEM;
    memcpy(nv.mv_data, v->mv_data, v->mv_size);
    memcpy(nv.mv_data, rec, sizeof *rec);
    mrc = mdb_put(s->wtxn, s->segmeta, k, &nv, 0);
    cow_free(nv.mv_data);
    return mrc ? store_mdb_fail(s, mrc, "writing a segment record") : COW_OK;
}

/* The record of the segment *k names, in the write transaction: *v its bytes
 * (LMDB's own), *rec its header, checked against its length.  COW_FOUND,
 * COW_NOT_FOUND or an error. */
static int
read_record(cow_store *s, MDB_val *k, MDB_val *v, seg_record *rec)
{
    int mrc = mdb_get(s->wtxn, s->segmeta, k, v);
    if (mrc == MDB_NOTFOUND)
        return COW_NOT_FOUND;
    if (mrc != 0)
        return store_mdb_fail(s, mrc, "reading a segment record");
    if (v->mv_size < sizeof *rec)
        return store_msg(COW_ECORRUPT, "corrupt segment record");
    memcpy(rec, v->mv_data, sizeof *rec);
    if (v->mv_size != sizeof *rec + (size_t)rec->nrefs * sizeof(uint32_t))
        return store_msg(COW_ECORRUPT, "corrupt segment record");
    return COW_FOUND;
}

/* Adds delta to a segment's refcount; at zero deletes it and returns its
 * refs through *freed (caller frees) so the caller can continue. */
static int
seg_adjust(cow_store *s, uint32_t seg, int delta, uint32_t **freed, size_t *nfreed)
{
    MDB_val k = {sizeof seg, &seg}, v;
    seg_record rec;
    int mrc, rc = read_record(s, &k, &v, &rec);
    *nfreed = 0;
    if (rc == COW_NOT_FOUND)
        return store_msg(COW_ECORRUPT, "a root or segment names a missing segment");
    if (rc < 0)
        return rc;
    if (delta < 0 && rec.refcnt == 0)
        return store_msg(COW_ECORRUPT, "corrupt segment record");
    rec.refcnt = (uint32_t)((int64_t)rec.refcnt + delta);
    if (rec.refcnt == 0) {
        if (rec.nrefs && (*freed = cow_malloc(rec.nrefs * sizeof(uint32_t))) == NULL)
            return COW_ENOMEM;
        if (rec.nrefs)
            memcpy(*freed, (char *)v.mv_data + sizeof rec, rec.nrefs * sizeof(uint32_t));
        *nfreed = rec.nrefs;
        if ((mrc = mdb_del(s->wtxn, s->segmeta, &k, NULL)) != 0
            || (mrc = mdb_del(s->wtxn, s->segs, &k, NULL)) != 0)
            return store_mdb_fail(s, mrc, "deleting a segment");
        s->state.seg_bytes -= rec.bytes < s->state.seg_bytes ? rec.bytes : s->state.seg_bytes;
        if (rec.flags & SEG_COUNTED)
            s->state.live_bytes -= rec.bytes < s->state.live_bytes ? rec.bytes
                                                                    : s->state.live_bytes;
        s->state.nsegs -= s->state.nsegs > 0;
        return COW_OK;
    }
    return rewrite_record(s, &k, &v, &rec);
}

static int
seg_incref(cow_store *s, uint32_t seg)
{
    uint32_t *freed = NULL;
    size_t n;
    return seg_adjust(s, seg, +1, &freed, &n);
}

/* Drops one reference; frees every segment that reaches zero, transitively
 * (an explicit stack: chains of versions are long). */
static int
seg_decref(cow_store *s, uint32_t seg)
{
    uint32_t *stack = NULL, *freed;
    size_t n = 0, cap = 0, nfreed;
    int rc = COW_OK;
    for (;;) {
        freed = NULL;
        if ((rc = seg_adjust(s, seg, -1, &freed, &nfreed)) < 0)
            break;
        if (nfreed && n + nfreed > cap) {
            uint32_t *bigger;
            cap = (n + nfreed) * 2;
            if ((bigger = cow_realloc(stack, cap * sizeof *stack)) == NULL) {
                cow_free(freed);
                rc = COW_ENOMEM;
                break;
            }
            stack = bigger;
        }
        if (nfreed)
            memcpy(stack + n, freed, nfreed * sizeof *stack);
        n += nfreed;
        cow_free(freed);
        if (n == 0)
            break;
        seg = stack[--n];
    }
    cow_free(stack);
    return rc;
}

static int
sink_put(void *ctx, uint32_t seg, const char *bytes, size_t len, const uint32_t *refs, size_t nrefs)
{
    cow_store *s = ctx;
    size_t size = len < seg_min(s) ? seg_min(s) : len;
    MDB_val k = {sizeof seg, &seg}, v = {size, NULL};
    seg_record rec = {0, (uint32_t)size, (uint32_t)nrefs, 0};
    char *meta;
    int mrc, rc;
    if (size > UINT32_MAX)
        return store_msg(COW_EOVERFLOW, "a single value over 4 GiB cannot be stored");
    if ((mrc = mdb_put(s->wtxn, s->segs, &k, &v, MDB_RESERVE | MDB_NOOVERWRITE)) != 0)
        return store_mdb_fail(s, mrc, "writing a segment");
    memcpy(v.mv_data, bytes, len);
    memset((char *)v.mv_data + len, 0, size - len);
    if ((meta = cow_malloc(sizeof rec + nrefs * sizeof(uint32_t))) == NULL)
        return COW_ENOMEM;
    memcpy(meta, &rec, sizeof rec);
    if (nrefs)
        memcpy(meta + sizeof rec, refs, nrefs * sizeof(uint32_t));
    v.mv_size = sizeof rec + nrefs * sizeof(uint32_t);
    v.mv_data = meta;
    mrc = mdb_put(s->wtxn, s->segmeta, &k, &v, MDB_NOOVERWRITE);
    cow_free(meta);
    if (mrc != 0)
        return store_mdb_fail(s, mrc, "writing a segment record");
    for (size_t i = 0; i < nrefs; i++)
        if ((rc = seg_incref(s, refs[i])) < 0)
            return rc;
    s->state.seg_bytes += size;
    s->state.nsegs++;
    return COW_OK;
}

static int
sink_seg_live(void *ctx, uint32_t seg)
{
    cow_store *s = ctx;
    MDB_val k = {sizeof seg, &seg}, v;
    seg_record rec;
    int rc = read_record(s, &k, &v, &rec);
    return rc < 0 ? rc : rc == COW_FOUND;
}

const cow_segw_sink store_sink = {sink_new_id, sink_seg_live, sink_put};

/* The segment a root value's word names, or 0. */
static uint32_t
root_segment(const cow_val *v)
{
    return cow_tag_has_word(v->tag) && cow_word_stored(v->u.w) ? cow_word_seg(v->u.w) : 0;
}

/* Points root c->name at c->v (NULL deletes it), counting the reference
 * its segment gains; *old is the segment the previous value named (0 for
 * none), still counted. */
static int
move_root(cow_store *s, const root_change *c, uint32_t *old)
{
    MDB_val k = {c->nlen, (void *)c->name}, cur;
    int mrc = mdb_get(s->wtxn, s->roots, &k, &cur);
    *old = 0;
    if (mrc == 0 && cur.mv_size == sizeof(cow_val)) {
        cow_val prev;
        memcpy(&prev, cur.mv_data, sizeof prev);
        *old = root_segment(&prev);
    }
    else if (mrc != 0 && mrc != MDB_NOTFOUND)
        return store_mdb_fail(s, mrc, "reading a root");
    if (c->v) {
        MDB_val data = {sizeof *c->v, (void *)c->v};
        if ((mrc = mdb_put(s->wtxn, s->roots, &k, &data, 0)) != 0)
            return store_mdb_fail(s, mrc, "writing a root");
        return root_segment(c->v) ? seg_incref(s, root_segment(c->v)) : COW_OK;
    }
    if (mrc == 0 && (mrc = mdb_del(s->wtxn, s->roots, &k, NULL)) != 0)
        return store_mdb_fail(s, mrc, "deleting a root");
    return COW_OK;
}

/* Applies every change, then drops the references the old values held: a
 * value moved from one root to another (or deleted here and put there) is
 * counted by its new root before its old root lets go, so its segments are
 * never freed in between. */
int
store_apply_roots(cow_store *s, const root_change *changes, size_t n)
{
    uint32_t *olds = n ? cow_calloc(n, sizeof *olds) : NULL;
    int rc = COW_OK;
    if (n && olds == NULL)
        return COW_ENOMEM;
    for (size_t i = 0; i < n && rc == COW_OK; i++)
        rc = move_root(s, &changes[i], &olds[i]);
    for (size_t i = 0; i < n && rc == COW_OK; i++)
        if (olds[i])
            rc = seg_decref(s, olds[i]);
    cow_free(olds);
    return rc;
}

/* Flags segments [first, end) as counted in live_bytes and counts them. */
int
store_count_live(cow_store *s, uint64_t first, uint64_t end)
{
    for (uint64_t id = first; id < end; id++) {
        uint32_t seg = (uint32_t)id;
        MDB_val k = {sizeof seg, &seg}, v;
        seg_record rec;
        int rc = read_record(s, &k, &v, &rec);
        if (rc == COW_NOT_FOUND)
            continue;                   /* already freed again */
        if (rc < 0)
            return rc;
        rec.flags |= SEG_COUNTED;
        if ((rc = rewrite_record(s, &k, &v, &rec)) < 0)
            return rc;
        s->state.live_bytes += rec.bytes;
    }
    return COW_OK;
}

/* Writes every pending op into the open write transaction. */
