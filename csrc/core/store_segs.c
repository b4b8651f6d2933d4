/* Segments: writing them, and freeing the unreachable ones (mark and sweep).
 *
 * A segment is one LMDB value in `segs`, in overflow pages (which LMDB never
 * moves), laid out as
 *
 *   0 ......... nodes ......... node_len | zeros | refs[nrefs] | nrefs | node_len
 *                                                  u32 each      u32     u32
 *
 * the trailer at the very end of the value naming every other segment its
 * nodes point into.  Nothing else is written per segment: a commit adds its
 * new segments (keys only ever grow: appends to the B-tree's last leaf),
 * points the roots at them and updates the state record.  Earlier formats
 * kept a refcount record per segment and rewrote the records of every
 * segment a new one named: 36-108 KiB of scattered B-tree pages per
 * one-leaf commit, which every held version then pinned.
 *
 * Space comes back by sweeping: mark every segment reachable from a root
 * or from a value this process holds (its pins), through the trailers, then
 * delete the rest.  Holding values read from the store keeps their segments
 * -- and only those -- so no old snapshot has to stay open for them and
 * LMDB reuses every page freed after.  When sweeps run: store_compact.c.
 *
 * Invariants:
 *  SG1  a segment's trailer lies inside it: 8 + 4 * nrefs <= size - node_len.
 *  SG2  every segment a reachable segment names exists (a missing one is
 *       corruption); ids are never reused (state.next_seg only grows).
 *  SG3  state.seg_bytes and state.nsegs are the sums over `segs`.
 */
#include <string.h>

#include "cowstore/alloc.h"
#include "cowstore/errors.h"
#include "store_impl.h"

/* Fixed part of the trailer: nrefs and node_len. */
#define SEG_TRAILER_FIXED (2 * sizeof(uint32_t))

/* Smallest segment: past LMDB's largest in-page value (under half a page),
 * so every segment lives in overflow pages, which LMDB never moves. */
static size_t
seg_min(cow_store *s)
{
    MDB_stat st;
    mdb_env_stat(s->env, &st);
    return st.ms_psize / 2 + COW_REF_UNIT;
}

/* Segments fill one overflow page, trailer included.  LMDB reuses a freed
 * run of pages for a multi-page value only if it finds the run contiguous in
 * its freelist, and the page-at-a-time B-tree updates of every commit
 * fragment it: with 32 MiB, 256 KiB or 64 KiB segments the file grew by one
 * data size per compaction (4.5x after 4,000 one-change versions of a
 * 10^5-entry map, still rising); with one-page segments it settles at 2.8x. */
void
store_segw_init(cow_store *s, cow_segw *w, int copy_all)
{
    MDB_stat st;
    mdb_env_stat(s->env, &st);
    cow_segw_init(w, s->slot, copy_all, &store_sink, s);
    w->target = st.ms_psize - LMDB_PAGE_HEADER - SEG_TRAILER_FIXED;
    w->ref_cost = sizeof(uint32_t);
}

/* Where a segment's nodes end and its refs start, checked (SG1). */
int
store_seg_trailer(const char *seg, size_t size, size_t *node_len, uint32_t *nrefs)
{
    uint32_t n, len;
    if (size < SEG_TRAILER_FIXED)
        return COW_ECORRUPT;
    memcpy(&n, seg + size - SEG_TRAILER_FIXED, sizeof n);
    memcpy(&len, seg + size - sizeof len, sizeof len);
    if (len > size - SEG_TRAILER_FIXED || n > (size - SEG_TRAILER_FIXED - len) / sizeof(uint32_t))
        return COW_ECORRUPT;
    *node_len = len;
    *nrefs = n;
    return COW_OK;
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

/* The most bytes of one segment.  LMDB writes a segment, one overflow
 * value, in one write(), which Linux cuts at 0x7ffff000 bytes
 * (MAX_RW_COUNT); LMDB takes the short write for EIO, so a bigger one
 * failed as 'Input/output error', leaving the file 2 GiB longer.  A margin
 * is left for the overflow page's header at any page size. */
#define SEG_MAX_BYTES ((size_t)0x7ffff000 - 65536)

static int
sink_put(void *ctx, uint32_t seg, const char *bytes, size_t len, const uint32_t *refs, size_t nrefs)
{
    cow_store *s = ctx;
    size_t need = len + nrefs * sizeof(uint32_t) + SEG_TRAILER_FIXED;
    size_t size = need < seg_min(s) ? seg_min(s) : need;
    MDB_val k = {sizeof seg, &seg}, v = {size, NULL};
    uint32_t tail[2] = {(uint32_t)nrefs, (uint32_t)len};
    char *p;
    int mrc;
    if (size > SEG_MAX_BYTES)
        return store_msg(COW_EOVERFLOW, "a single value (an array, a string) of 2 GiB or more "
                                        "cannot be stored: split it");
    if ((mrc = mdb_put(s->wtxn, s->segs, &k, &v, MDB_RESERVE | MDB_NOOVERWRITE)) != 0)
        return store_mdb_fail(s, mrc, "writing a segment");
    p = v.mv_data;
    memcpy(p, bytes, len);
    memset(p + len, 0, size - need);
    if (nrefs)
        memcpy(p + size - need + len, refs, nrefs * sizeof(uint32_t));
    memcpy(p + size - SEG_TRAILER_FIXED, tail, sizeof tail);
    s->state.seg_bytes += size;
    s->state.nsegs++;
    return COW_OK;
}

/* A segment exists until a sweep finds it unreachable; one the writer
 * reuses is reachable from then on (a sweep only runs after the roots
 * moved). */
static int
sink_seg_live(void *ctx, uint32_t seg)
{
    cow_store *s = ctx;
    MDB_val k = {sizeof seg, &seg}, v;
    int mrc = mdb_get(s->wtxn, s->segs, &k, &v);
    if (mrc == MDB_NOTFOUND)
        return 0;
    return mrc ? store_mdb_fail(s, mrc, "reading a segment") : 1;
}

const cow_segw_sink store_sink = {sink_new_id, sink_seg_live, sink_put};

/* Points root c->name at c->v (NULL deletes it); *prev_seg: the segment
 * the previous value named (which may now be garbage), else 0. */
static int
move_root(cow_store *s, const root_change *c, uint32_t *prev_seg)
{
    MDB_val k = {c->nlen, (void *)c->name}, cur;
    int mrc = mdb_get(s->wtxn, s->roots, &k, &cur);
    *prev_seg = 0;
    if (mrc == 0 && cur.mv_size == sizeof(cow_val)) {
        cow_val prev;
        memcpy(&prev, cur.mv_data, sizeof prev);
        *prev_seg = store_val_segment(&prev);
    }
    else if (mrc != 0 && mrc != MDB_NOTFOUND)
        return store_mdb_fail(s, mrc, "reading a root");
    if (c->v) {
        MDB_val data = {sizeof *c->v, (void *)c->v};
        mrc = mdb_put(s->wtxn, s->roots, &k, &data, 0);
        return mrc ? store_mdb_fail(s, mrc, "writing a root") : COW_OK;
    }
    if (mrc == 0 && (mrc = mdb_del(s->wtxn, s->roots, &k, NULL)) != 0)
        return store_mdb_fail(s, mrc, "deleting a root");
    return COW_OK;
}

static int reach_bytes(cow_store *s, uint32_t seg, uint64_t *bytes);

/* Whether one of changes[0..n) gives a root a value in segment seg. */
static int
seg_kept_by(const root_change *changes, size_t n, uint32_t seg)
{
    for (size_t i = 0; i < n; i++)
        if (changes[i].v && store_val_segment(changes[i].v) == seg)
            return 1;
    return 0;
}

/* Applies every change; s->dropped records whether a root let go of a
 * segment, s->deleted_bytes what a deleted root reached (at most what its
 * deletion frees: a sweep finds how much).  Live bytes only grow between
 * sweeps, so without it a dataset deleted from a store past the eager
 * sweep's budget would never look like garbage.  A value moved to another
 * root of the same commit (an import's move) is not counted; a replaced
 * value is not measured (a new version shares most of the old one).
 * Nothing is freed here (a sweep does that from what the roots reach after
 * the whole transaction), so any order of puts and deletes is safe. */
int
store_apply_roots(cow_store *s, const root_change *changes, size_t n)
{
    int rc = COW_OK;
    for (size_t i = 0; i < n && rc == COW_OK; i++) {
        uint32_t seg;
        uint64_t reached;
        if ((rc = move_root(s, &changes[i], &seg)) < 0 || seg == 0)
            continue;
        s->dropped = 1;
        /* An estimate: a store too damaged to measure is left to sweeps. */
        if (!changes[i].v && !seg_kept_by(changes, n, seg) && reach_bytes(s, seg, &reached) == COW_OK)
            s->deleted_bytes += reached;
    }
    return rc;
}

/* ---- mark and sweep ------------------------------------------------------------ */

typedef struct mark_state {
    cow_u64map marked;      /* segment id + 1 -> 1 */
    uint32_t *stack;
    size_t n, cap;
    uint64_t bytes;         /* bytes of the marked segments */
    size_t budget;          /* most segments to mark; 0: no limit */
} mark_state;

/* A positive result of marking: the budget ran out, nothing is swept. */
#define MARK_OVER_BUDGET 1

static int
push(mark_state *m, uint32_t seg)
{
    uint64_t seen;
    if (seg == 0 || cow_u64map_get(&m->marked, (uint64_t)seg + 1, &seen))
        return COW_OK;
    if (m->budget && m->marked.len >= m->budget)
        return MARK_OVER_BUDGET;
    if (cow_u64map_put(&m->marked, (uint64_t)seg + 1, 1) < 0)
        return COW_ENOMEM;
    if (m->n == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 256;
        uint32_t *st = cow_realloc(m->stack, cap * sizeof *st);
        if (st == NULL)
            return COW_ENOMEM;
        m->stack = st;
        m->cap = cap;
    }
    m->stack[m->n++] = seg;
    return COW_OK;
}

/* Marks what seg names (SG2: each must exist). */
static int
mark_refs(cow_store *s, mark_state *m, uint32_t seg)
{
    MDB_val k = {sizeof seg, &seg}, v;
    size_t node_len;
    uint32_t nrefs, ref;
    int rc, mrc = mdb_get(s->wtxn, s->segs, &k, &v);
    if (mrc == MDB_NOTFOUND)
        return store_msg(COW_ECORRUPT, "a root or segment names a missing segment");
    if (mrc != 0)
        return store_mdb_fail(s, mrc, "reading a segment");
    if (store_seg_trailer(v.mv_data, v.mv_size, &node_len, &nrefs) < 0)
        return store_msg(COW_ECORRUPT, "corrupt segment trailer");
    m->bytes += v.mv_size;
    for (uint32_t i = 0; i < nrefs; i++) {
        memcpy(&ref, (const char *)v.mv_data + v.mv_size - SEG_TRAILER_FIXED
                         - (size_t)(nrefs - i) * sizeof ref, sizeof ref);
        if ((rc = push(m, ref)) != COW_OK)
            return rc;
    }
    return COW_OK;
}

/* The roots' segments: every root record must be sane, or nothing is
 * swept (a damaged root might name segments that look unreachable). */
static int
mark_roots(cow_store *s, mark_state *m)
{
    MDB_cursor *c;
    MDB_val k, v;
    cow_val root;
    int rc = COW_OK, mrc;
    if ((mrc = mdb_cursor_open(s->wtxn, s->roots, &c)) != 0)
        return store_mdb_fail(s, mrc, "listing roots");
    while (rc == COW_OK && (mrc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) == 0)
        if ((rc = store_root_record(&v, &root)) == COW_OK)
            rc = push(m, store_val_segment(&root));
    mdb_cursor_close(c);
    if (rc == COW_OK && mrc != MDB_NOTFOUND)
        rc = store_mdb_fail(s, mrc, "listing roots");
    return rc;
}

/* Segments values alive in this process name: kept, so that no snapshot
 * has to stay open for them.  Those already gone (another process swept
 * them) are served by the snapshot they were read from, as before. */
static int
mark_pins(cow_store *s, mark_state *m)
{
    const cow_u64map *p = &s->ref.seg_pins;
    MDB_val k, v;
    int rc;
    for (size_t i = 0; i < p->cap; i++) {
        uint32_t seg = (uint32_t)(p->cells[i].key - 1);
        k = (MDB_val){sizeof seg, &seg};
        if (!p->cells[i].key || !p->cells[i].val || mdb_get(s->wtxn, s->segs, &k, &v) != 0)
            continue;
        if ((rc = push(m, seg)) != COW_OK)
            return rc;
    }
    return COW_OK;
}

/* Marks what seg-stacked segments reach. */
static int
mark_closure(cow_store *s, mark_state *m)
{
    int rc = COW_OK;
    while (rc == COW_OK && m->n > 0)
        rc = mark_refs(s, m, m->stack[--m->n]);
    return rc;
}

/* Bytes of the segments reachable from seg, its own included (read from
 * their trailers: a page each). */
static int
reach_bytes(cow_store *s, uint32_t seg, uint64_t *bytes)
{
    mark_state m = {0};
    int rc;
    cow_u64map_init(&m.marked);
    if ((rc = push(&m, seg)) == COW_OK)
        rc = mark_closure(s, &m);
    *bytes = m.bytes;
    cow_u64map_free(&m.marked);
    cow_free(m.stack);
    return rc;
}

/* Marks from the roots, then from the pins; *reached: bytes the roots
 * alone reach. */
static int
mark_all(cow_store *s, mark_state *m, uint64_t *reached)
{
    int rc = mark_roots(s, m);
    if (rc == COW_OK)
        rc = mark_closure(s, m);
    *reached = m->bytes;
    if (rc == COW_OK)
        rc = mark_pins(s, m);
    return rc == COW_OK ? mark_closure(s, m) : rc;
}

/* The ids of every segment not marked, ascending: *out (caller frees). */
static int
list_unmarked(cow_store *s, const mark_state *m, uint32_t **out, size_t *n)
{
    MDB_cursor *c;
    MDB_val k, v;
    uint64_t seen;
    uint32_t seg, *ids = NULL, *bigger;
    size_t cap = 0;
    int rc = COW_OK, mrc;
    *n = 0;
    *out = NULL;
    if ((mrc = mdb_cursor_open(s->wtxn, s->segs, &c)) != 0)
        return store_mdb_fail(s, mrc, "sweeping segments");
    while (rc == COW_OK && (mrc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) == 0) {
        if (k.mv_size != sizeof seg) {
            rc = store_msg(COW_ECORRUPT, "a segment key of the wrong size");
            break;
        }
        memcpy(&seg, k.mv_data, sizeof seg);
        if (cow_u64map_get(&m->marked, (uint64_t)seg + 1, &seen))
            continue;
        if (*n == cap) {
            cap = cap ? cap * 2 : 64;
            if ((bigger = cow_realloc(ids, cap * sizeof *ids)) == NULL) {
                rc = COW_ENOMEM;
                break;
            }
            ids = bigger;
        }
        ids[(*n)++] = seg;
    }
    mdb_cursor_close(c);
    if (rc == COW_OK && mrc != MDB_NOTFOUND)
        rc = store_mdb_fail(s, mrc, "sweeping segments");
    *out = ids;
    return rc;
}

/* LMDB's header of an overflow run (mdb.c's MDB_page, which lmdb.h does not
 * export): a segment's bytes follow it in the run's first page.  Reads never
 * use it, but mdb_del frees the run by it, trusting its flags and page
 * count: damaged, they abort the process in mdb_ovpage_free (found by the
 * fuzzer) or free pages still in use.  So a sweep checks it first. */
#define LMDB_PAGE_HEADER 16         /* PAGEHDRSZ */
#define LMDB_PAGE_FLAGS_AT 10       /* u16 mp_flags */
#define LMDB_PAGE_COUNT_AT 12       /* u32 mp_pages: the run's length */
#define LMDB_P_OVERFLOW 0x04        /* the only flag of a run on disk */

/* Whether the overflow run holding segment value v (in the file's map; a
 * run this transaction wrote is LMDB's own memory, not checked) has the
 * header LMDB wrote: its own page number, only the overflow flag, and as
 * many pages as v's size takes (mdb.c OVPAGES). */
static int
seg_run_intact(const cow_store *s, const MDB_val *v)
{
    const char *data = v->mv_data, *page = data - LMDB_PAGE_HEADER;
    MDB_stat st;
    uint64_t pgno;
    uint32_t pages;
    uint16_t flags;
    if (data < s->ref.base || data >= s->ref.base + s->ref.size)
        return 1;
    mdb_env_stat(s->env, &st);
    if ((size_t)(page - s->ref.base) % st.ms_psize != 0)
        return 0;                   /* every segment is a run (seg_min_size) */
    memcpy(&pgno, page, sizeof pgno);
    memcpy(&flags, page + LMDB_PAGE_FLAGS_AT, sizeof flags);
    memcpy(&pages, page + LMDB_PAGE_COUNT_AT, sizeof pages);
    return pgno == (uint64_t)(page - s->ref.base) / st.ms_psize && flags == LMDB_P_OVERFLOW
           && pages == (LMDB_PAGE_HEADER - 1 + v->mv_size) / st.ms_psize + 1;
}

/* Deletes every segment not marked (SG3 kept). */
static int
sweep_unmarked(cow_store *s, const mark_state *m)
{
    uint32_t *ids;
    size_t n;
    int mrc = 0, rc = list_unmarked(s, m, &ids, &n);
    for (size_t i = 0; i < n && rc == COW_OK; i++) {
        MDB_val k = {sizeof ids[i], &ids[i]}, v;
        if ((mrc = mdb_get(s->wtxn, s->segs, &k, &v)) == 0 && !seg_run_intact(s, &v)) {
            rc = store_msg(COW_ECORRUPT, "a segment's overflow page header is damaged");
            break;
        }
        if (mrc != 0 || (mrc = mdb_del(s->wtxn, s->segs, &k, NULL)) != 0) {
            rc = store_mdb_fail(s, mrc, "deleting a segment");
            break;
        }
        s->state.seg_bytes -= v.mv_size < s->state.seg_bytes ? v.mv_size : s->state.seg_bytes;
        s->state.nsegs -= s->state.nsegs > 0;
        s->deleted_segs = 1;
    }
    cow_free(ids);
    return rc;
}

/* Frees every segment no root and no value alive here reaches, unless that
 * takes marking more than `budget` segments (0: no limit).  Inside the
 * writer's transaction.  While the pins are not known (an allocation failed
 * recording one) nothing is freed. */
int
store_sweep(cow_store *s, size_t budget, sweep_result *out)
{
    mark_state m = {.budget = budget};
    uint64_t reached = 0;
    int rc = COW_OK;
    *out = (sweep_result){0, s->state.seg_bytes, s->state.seg_bytes};
    if (s->ref.pins_untracked)
        return COW_OK;
    cow_u64map_init(&m.marked);
    rc = mark_all(s, &m, &reached);
    if (rc == COW_OK && (rc = sweep_unmarked(s, &m)) == COW_OK)
        *out = (sweep_result){1, m.bytes, reached};
    if (rc == MARK_OVER_BUDGET)
        rc = COW_OK;
    cow_u64map_free(&m.marked);
    cow_free(m.stack);
    return rc;
}
