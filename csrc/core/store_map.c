/* The store's mapping and the read snapshots that values pin.
 *
 * LMDB maps the file; values read from the store keep (segment, offset)
 * words, not pointers, so the map may move when it grows: the env table
 * (ref.h) is told the current base after every change.  A read transaction
 * ("snapshot") stays open while a value read from it may be alive (ST2). */
#include <string.h>
#include <unistd.h>

#include "cowstore/alloc.h"
#include "cowstore/errors.h"
#include "store_impl.h"

/* ---- the mapping ---------------------------------------------------------- */

/* LMDB's page header starts with the page's number (MDB_page.mp_pgno). */
typedef struct lmdb_page_head {
    size_t pgno;
} lmdb_page_head;

/* Where the map starts.  LMDB does not export it (me_mapaddr is only set for
 * MDB_FIXEDMAP), so it is found from a value read in a read transaction: the
 * page holding it starts at a page boundary (the map is page aligned) and
 * begins with its page number, so base = page - pgno * psize.  Checked: the
 * result must be page aligned and contain the value. */
static int
locate_map(cow_store *s, MDB_txn *txn, const char **base)
{
    MDB_val k = {6, "format"}, v;
    MDB_stat st;
    lmdb_page_head head;
    uintptr_t p, page;
    mdb_env_stat(s->env, &st);
    if (mdb_get(txn, s->meta, &k, &v) != 0)
        return store_msg(COW_ECORRUPT, "not a cowstore store (no format record)");
    p = (uintptr_t)v.mv_data;
    page = p - p % st.ms_psize;
    memcpy(&head, (const void *)page, sizeof head);
    if (head.pgno > SIZE_MAX / st.ms_psize || head.pgno * st.ms_psize > page
        || (page - head.pgno * st.ms_psize) % st.ms_psize != 0
        || p - (page - head.pgno * st.ms_psize) >= s->mapsize)
        return store_msg(COW_ECORRUPT, "cannot locate the store's map (bad page header)");
    *base = (const char *)(page - head.pgno * st.ms_psize);
    return COW_OK;
}

/* The store file's status, through LMDB's own descriptor. */
int
store_file_stat(cow_store *s, struct stat *st)
{
    int fd;
    if (mdb_env_get_fd(s->env, &fd) != 0 || fstat(fd, st) != 0)
        return store_msg(COW_ESTORE, "cannot stat the store file");
    return COW_OK;
}

/* Refreshes the env table's view of the mapping (txn: a read transaction):
 * its address may change when the map grows, and only bytes inside the file
 * may be read (past its end a mapped page raises SIGBUS). */
static int
sync_mapping(cow_store *s, MDB_txn *txn)
{
    MDB_envinfo info;
    struct stat st;
    const char *before = s->ref.base;
    int rc;
    mdb_env_info(s->env, &info);
    if ((rc = store_file_stat(s, &st)) < 0)
        return rc;
    s->mapsize = info.me_mapsize;
    s->ref.size = (size_t)st.st_size < info.me_mapsize ? (size_t)st.st_size : info.me_mapsize;
    rc = locate_map(s, txn, &s->ref.base);
    if (s->ref.base != before)
        cow_ref_moves++;            /* iterators holding page pointers re-find their place */
    return rc;
}

/* Doubles the map (or adopts a larger size another process set: size 0). */
int
store_grow_map(cow_store *s, size_t size)
{
    int mrc;
    if (s->ref.views > 0)       /* numpy arrays point into the map: it must stay */
        return store_msg(COW_ESTORE, "the store's map must grow, but numpy arrays read from "
                                      "it are alive; drop them or open it with a larger map_size");
    mrc = mdb_env_set_mapsize(s->env, size);
    if (mrc != 0)
        return store_mdb_fail(s, mrc, "growing the map");
    if (s->cur == NULL) {           /* no snapshot: the next begin_read syncs */
        s->ref.size = 0;
        return COW_OK;
    }
    return sync_mapping(s, s->cur);
}

/* ---- snapshots ------------------------------------------------------------ */

void
store_drop_old_snapshots(cow_store *s)
{
    for (size_t i = 0; i < s->nold; i++)
        mdb_txn_abort(s->old[i]);
    s->nold = 0;
}

/* Called by the env table when no value read from us is alive. */
void
store_on_unpinned(cow_ref_env *env)
{
    cow_store *s = env->ctx;
    if (s->pid != getpid())
        return;
    store_drop_old_snapshots(s);
    if (s->closing)
        store_close_if_unused(s);
}

/* Adopts the size another process grew the map to.  Remapping must not
 * race a write transaction of another thread here (LMDB refuses one, and
 * its commit reads the map), so a thread that is not the writer takes the
 * gate for the moment (ST5).  ECLOSED: s was closed meanwhile, and may be
 * gone. */
static int
adopt_grown_map(cow_store *s)
{
    int rc;
    if (store_owns_txn(s))
        return store_grow_map(s, 0);
    if ((rc = store_gate_acquire(s)) < 0)
        return rc;
    rc = store_grow_map(s, 0);
    store_gate_release(s);
    return rc;
}

static int
begin_read(cow_store *s, MDB_txn **out)
{
    int mrc, rc;
    for (int tries = 0; tries < COW_STORE_MAX_GROWTHS; tries++) {
        mrc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, out);
        if (mrc != MDB_MAP_RESIZED)
            break;
        if ((rc = adopt_grown_map(s)) < 0)
            return rc;
    }
    if (mrc != 0)
        return store_mdb_fail(s, mrc, "starting a read transaction");
    if ((rc = sync_mapping(s, *out)) < 0) {
        mdb_txn_abort(*out);
        *out = NULL;
    }
    return rc;
}

/* 1 when every segment a live value pins exists in snapshot t. */
static int
holds_pinned(cow_store *s, MDB_txn *t)
{
    const cow_u64map *p = &s->ref.seg_pins;
    for (size_t i = 0; i < p->cap; i++) {
        uint32_t seg = (uint32_t)(p->cells[i].key - 1);
        MDB_val k = {sizeof seg, &seg}, v;
        if (p->cells[i].key && p->cells[i].val && mdb_get(t, s->segs, &k, &v) != 0)
            return 0;
    }
    return 1;
}

/* Of the snapshots older than cur, keeps only the newest that still holds
 * every pinned segment: LMDB never reuses a page a reader can see, so that
 * one reader protects every pinned word.  When cur holds them all (values
 * whose segments no commit deleted: the common case), none is kept. */
static void
prune_snapshots(cow_store *s)
{
    if (s->ref.pins_untracked || s->nold == 0)
        return;
    if (holds_pinned(s, s->cur)) {
        store_drop_old_snapshots(s);
        return;
    }
    for (size_t i = s->nold; i-- > 0;) {
        if (holds_pinned(s, s->old[i])) {
            MDB_txn *keep = s->old[i];
            s->old[i] = s->old[--s->nold];
            store_drop_old_snapshots(s);
            s->old[s->nold++] = keep;
            return;
        }
    }   /* pins span segments no single snapshot holds: keep them all */
}

/* 1 when fresh is cur plus one commit of this process that deleted no
 * segment (clean_commit), and cur serves every pinned segment alone (no
 * older snapshot is open, ST2): fresh then holds every segment cur holds,
 * pinned ones included, and cur can go without holds_pinned looking up
 * each pinned segment -- a cost that grew with the values held, paid at
 * every commit of a process appending to a root it keeps reading. */
static int
follows_clean_commit(const cow_store *s, MDB_txn *fresh)
{
    return s->nold == 0 && !s->ref.pins_untracked && s->clean_commit != 0
           && mdb_txn_id(fresh) == s->clean_commit && mdb_txn_id(s->cur) + 1 == s->clean_commit;
}

/* Makes cur see the latest commit (ST2).  Keeps the previous snapshot open
 * if values read from it may be alive. */
int
store_refresh_snapshot(cow_store *s)
{
    MDB_envinfo info;
    MDB_txn *fresh;
    int rc;
    mdb_env_info(s->env, &info);
    if (s->cur && mdb_txn_id(s->cur) == info.me_last_txnid)
        return sync_mapping(s, s->cur);
    if ((rc = begin_read(s, &fresh)) < 0)
        return rc;
    if (s->cur) {
        if (s->ref.pins > 0 && !follows_clean_commit(s, fresh)) {
            if (s->nold == s->capold) {
                size_t cap = s->capold ? s->capold * 2 : 4;
                MDB_txn **o = cow_realloc(s->old, cap * sizeof *o);
                if (o == NULL) {
                    mdb_txn_abort(fresh);
                    return COW_ENOMEM;
                }
                s->old = o;
                s->capold = cap;
            }
            s->old[s->nold++] = s->cur;
        }
        else {
            store_drop_old_snapshots(s);
            mdb_txn_abort(s->cur);
        }
    }
    s->cur = fresh;
    prune_snapshots(s);
    return COW_OK;
}

/* The env table's segment lookup: the newest snapshot first, then older ones
 * (a pinned value may name a segment deleted since). */
int
store_lookup_segment(void *ctx, uint32_t seg, size_t *off, size_t *len)
{
    cow_store *s = ctx;
    MDB_val k = {sizeof seg, &seg}, v;
    for (size_t i = 0; i <= s->nold; i++) {
        MDB_txn *t = i == 0 ? s->cur : s->old[s->nold - i];
        if (t == NULL || mdb_get(t, s->segs, &k, &v) != 0)
            continue;
        size_t node_len;
        uint32_t nrefs;
        if ((const char *)v.mv_data < s->ref.base
            || (size_t)((const char *)v.mv_data - s->ref.base) >= s->ref.size
            || store_seg_trailer(v.mv_data, v.mv_size, &node_len, &nrefs) < 0)
            return COW_ECORRUPT;
        *off = (size_t)((const char *)v.mv_data - s->ref.base);
        *len = node_len;            /* nodes only: never the trailer */
        return COW_OK;
    }
    return COW_ECORRUPT;
}
