/* Write transactions: the writer gate, begin, commit and abort.
 *
 * LMDB lets one write transaction run at a time per environment, and binds
 * it to the thread that began it.  The gate (a mutex per handle) makes the
 * threads of this process take turns before they reach LMDB's lock: the
 * thread holding it is the writer, owns the handle's write state and alone
 * may put, delete, commit or abort (ST5).  Waiting for the gate, for LMDB's
 * writer lock (another process) and for the commit's fsync happen inside the
 * block hooks, where the binding lets other Python threads run.
 *
 * A commit converts every pending put into page form (segment.c writes the
 * nodes the store does not hold yet), then moves the roots: every new
 * reference is counted before any old one is dropped (store_apply_roots),
 * so any sequence of puts and deletes, moves included, commits as it would
 * one operation at a time. */
/* madvise() is not in C11 or strict POSIX. */
#define _DEFAULT_SOURCE
#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "cowstore/alloc.h"
#include "cowstore/errors.h"
#include "cowstore/twin.h"
#include "store_impl.h"

static cow_store_block_fn block_hook;
static cow_store_unblock_fn unblock_hook;

void
cow_store_set_block_hooks(cow_store_block_fn block, cow_store_unblock_fn unblock)
{
    block_hook = block;
    unblock_hook = unblock;
}

/* Runs around a call that may wait on another thread or process: s->busy
 * keeps the handle alive meanwhile (ST5). */
static void *
block_begin(cow_store *s)
{
    s->busy++;
    return block_hook ? block_hook() : NULL;
}

static void
block_end(cow_store *s, void *token)
{
    if (unblock_hook)
        unblock_hook(token);
    s->busy--;
}

/* ---- the gate ----------------------------------------------------------------- */

void
store_gate_init(cow_store *s)
{
    pthread_mutex_init(&s->gate, NULL);
    s->has_writer = 0;
}

int
store_owns_txn(const cow_store *s)
{
    return s->has_writer && s->pid == getpid() && pthread_equal(s->writer, pthread_self());
}

int
cow_store_in_txn(const cow_store *s)
{
    return store_owns_txn(s);
}

/* Takes the gate, waiting outside the hooks while another thread holds it.
 * ECLOSED when s was closed meanwhile: s may then be gone. */
int
store_gate_acquire(cow_store *s)
{
    int rc;
    if (pthread_mutex_trylock(&s->gate) != 0) {
        void *token = block_begin(s);
        pthread_mutex_lock(&s->gate);
        block_end(s, token);
    }
    s->writer = pthread_self();
    s->has_writer = 1;
    if (s->opens > 0)
        return COW_OK;
    rc = store_msg(COW_ECLOSED, "store is closed");
    store_gate_release(s);
    return rc;
}

/* Lets the next writer in; closes s if its last opener left meanwhile (s
 * may then be gone). */
void
store_gate_release(cow_store *s)
{
    s->has_writer = 0;
    pthread_mutex_unlock(&s->gate);
    store_close_if_unused(s);
}

/* ---- begin -------------------------------------------------------------------- */

static int
read_state(cow_store *s)
{
    MDB_val k = {5, "state"}, v;
    int mrc = mdb_get(s->wtxn, s->meta, &k, &v);
    memset(&s->state, 0, sizeof s->state);
    s->state.next_seg = 1;          /* segment 0 is never used: word 0 is NULL-like */
    if (mrc == MDB_NOTFOUND)
        return COW_OK;
    if (mrc != 0)
        return store_mdb_fail(s, mrc, "reading the state record");
    if (v.mv_size != sizeof s->state)
        return store_msg(COW_ECORRUPT, "corrupt state record");
    memcpy(&s->state, v.mv_data, sizeof s->state);
    return COW_OK;
}

int
store_write_state(cow_store *s)
{
    MDB_val k = {5, "state"}, v = {sizeof s->state, &s->state};
    int mrc = mdb_put(s->wtxn, s->meta, &k, &v, 0);
    return mrc ? store_mdb_fail(s, mrc, "writing the state record") : COW_OK;
}

/* Grows the map before a write when it is half full: a full map in the
 * middle of a commit costs a retry (see store_commit_write).  The writer
 * only, before its LMDB transaction begins. */
int
store_grow_ahead(cow_store *s)
{
    MDB_envinfo info;
    MDB_stat st;
    mdb_env_info(s->env, &info);
    mdb_env_stat(s->env, &st);
    if ((uint64_t)(info.me_last_pgno + 1) * st.ms_psize * COW_STORE_GROW_AT_DIV < info.me_mapsize)
        return COW_OK;
    return store_grow_map(s, info.me_mapsize * 2);
}

/* mdb_txn_begin for writing: waits for LMDB's writer lock (held by another
 * process) outside the hooks. */
static int
txn_begin_write(cow_store *s)
{
    MDB_txn *txn = NULL;
    void *token = block_begin(s);
    int mrc = mdb_txn_begin(s->env, NULL, 0, &txn);
    block_end(s, token);
    s->wtxn = mrc == 0 ? txn : NULL;
    return mrc;
}

/* Begins the LMDB write transaction; the caller holds the gate. */
int
store_begin_write(cow_store *s)
{
    MDB_envinfo info;
    int mrc, rc;
    for (int tries = 0; tries < COW_STORE_MAX_GROWTHS; tries++) {
        mrc = txn_begin_write(s);
        if (mrc != MDB_MAP_RESIZED)
            break;
        if ((rc = store_grow_map(s, 0)) < 0)     /* another process grew it: adopt */
            return rc;
    }
    if (mrc != 0)
        return store_mdb_fail(s, mrc, "starting a write transaction");
    mdb_env_info(s->env, &info);
    s->wbase = info.me_last_txnid;
    s->dropped = 0;
    s->sweep_all = 0;
    s->deleted_bytes = 0;
    s->swept = (sweep_result){0};
    s->deleted_segs = 0;
    if ((rc = read_state(s)) < 0 || (rc = store_refresh_snapshot(s)) < 0) {
        mdb_txn_abort(s->wtxn);
        s->wtxn = NULL;
    }
    return rc;
}

int
cow_store_begin(cow_store *s)
{
    int rc;
    if ((rc = store_enter(s)) < 0)
        return rc;
    if (s->flags & COW_STORE_READONLY)
        return store_msg(COW_EREADONLY, "store is readonly");
    if (store_owns_txn(s))
        return store_msg(COW_EINVAL, "a transaction is already open on this store in this thread");
    if ((rc = store_gate_acquire(s)) < 0)
        return rc;
    if ((rc = store_grow_ahead(s)) < 0 || (rc = store_begin_write(s)) < 0)
        store_gate_release(s);
    return rc;
}

/* ---- commit and abort ------------------------------------------------------------ */

/* Aborts the LMDB transaction if still open. */
static void
drop_wtxn(cow_store *s)
{
    if (s->wtxn)
        mdb_txn_abort(s->wtxn);
    s->wtxn = NULL;
}

/* Ends the transaction: LMDB's and the pending operations; the gate stays
 * held. */
static void
end_txn(cow_store *s)
{
    drop_wtxn(s);
    store_clear_ops(s);
}

void
cow_store_abort(cow_store *s)
{
    if (!store_owns_txn(s))
        return;
    end_txn(s);
    store_gate_release(s);
}

/* Writes every pending op into the open write transaction. */
static int
apply_ops(cow_store *s)
{
    cow_segw w;
    cow_val *pages = NULL;
    root_change *changes = NULL;
    uint64_t before = s->state.seg_bytes;
    int rc = COW_ENOMEM;
    if (s->nops && ((pages = cow_calloc(s->nops, sizeof *pages)) == NULL
                    || (changes = cow_calloc(s->nops, sizeof *changes)) == NULL))
        goto done;
    store_segw_init(s, &w, 0);
    w.twins = 1;
    for (size_t i = 0; i < s->nops && w.rc == COW_OK; i++)
        if (!s->ops[i].del)
            cow_segw_value(&w, &s->ops[i].v, &pages[i]);
    rc = cow_segw_finish(&w);
    if (rc == COW_EOVERFLOW && cow_store_errmsg()[0] == '\0')     /* the sink names its own */
        store_msg(rc, "cannot store containers nested this deep: a store takes 256 levels "
                  "(small containers packed into their parent do not count)");
    else if (rc == COW_ECORRUPT)
        store_msg(rc, "a value read from a store failed validation (corrupt pages)");
    for (size_t i = 0; i < s->nops; i++) {
        s->ops[i].page = pages[i];
        changes[i] = (root_change){s->ops[i].name, s->ops[i].nlen,
                                   s->ops[i].del ? NULL : &pages[i]};
    }
    if (rc == COW_OK)
        rc = store_apply_roots(s, changes, s->nops);
    if (rc == COW_OK)
        rc = store_account_commit(s, s->state.seg_bytes - before, w.kept == 0);
    if (rc == COW_OK)
        rc = store_write_state(s);
    cow_u64map_free(&s->written);
    s->written = w.memo;                /* made twins if the commit holds */
    cow_u64map_init(&w.memo);
    cow_segw_free(&w);
done:
    cow_free(changes);
    cow_free(pages);
    return rc;
}

/* mdb_txn_commit, with its fsync outside the hooks. */
static int
txn_commit(cow_store *s)
{
    void *token = block_begin(s);
    int mrc = mdb_txn_commit(s->wtxn);
    block_end(s, token);
    s->wtxn = NULL;
    return mrc;
}

static int
is_map_full(int rc)
{
    return rc == COW_ESTORE && store_last_mdb() == MDB_MAP_FULL;
}

/* The store file's descriptor and its filesystem's figures: 0, or -1 when
 * they cannot be had. */
static int
file_fs(cow_store *s, int *fd, struct statvfs *fs)
{
    return mdb_env_get_fd(s->env, fd) == 0 && fstatvfs(*fd, fs) == 0 ? 0 : -1;
}

/* What the store's file could grow to: its size plus the filesystem's
 * free space (0: unknown). */
static uint64_t
disk_room(cow_store *s)
{
    struct statvfs fs;
    struct stat st;
    int fd;
    if (file_fs(s, &fd, &fs) < 0 || fstat(fd, &st) != 0)
        return 0;
    return (uint64_t)st.st_size + (uint64_t)fs.f_bfree * fs.f_frsize;
}

/* Whether a commit that filled the map may double it and try again: while
 * the map is smaller than the room on disk, the map ran out, not the disk.
 * Doubling stops below twice that room, so any commit that fits on disk
 * commits, however small the map began; each try redoes the work up to
 * where the map filled, so all of them cost at most twice the last. */
static int
map_may_grow(cow_store *s, int tries)
{
    uint64_t room = disk_room(s);
    if (room == 0)
        return tries < COW_STORE_MAX_GROWTHS;
    if (s->mapsize < room)
        return 1;
    store_msg(COW_ESTORE, "the store's map is full (MDB_MAP_FULL) and the disk has no room to grow it: "
                          "free space on the disk, or compact the store");
    return 0;
}

/* LMDB reports a full disk met while writing the commit as EIO (a short
 * write): it is named for what it is when the filesystem has next to
 * nothing left. */
static int
commit_failed(cow_store *s, int mrc)
{
    struct statvfs fs;
    int fd;
    if (mrc == EIO && file_fs(s, &fd, &fs) == 0
        && (uint64_t)fs.f_bavail * fs.f_frsize < COW_STORE_DISK_FULL_BYTES)
        mrc = ENOSPC;
    return store_mdb_fail(s, mrc, "committing");
}

/* Commits the open write transaction, growing the map and retrying when it
 * fills -- unless another writer slipped in while the lock was released for
 * the growth, which would make the transaction's reads stale.  The gate
 * stays held throughout; the transaction is over either way. */
int
store_commit_write(cow_store *s, int (*apply)(cow_store *))
{
    int rc, mrc;
    s->clean_commit = 0;
    for (int tries = 0;; tries++) {
        store_msg(COW_OK, "");
        rc = apply(s);
        uint64_t id = s->wtxn ? mdb_txn_id(s->wtxn) : 0;
        if (rc == COW_OK && (mrc = txn_commit(s)) == 0) {
            s->clean_commit = s->deleted_segs ? 0 : id;
            return COW_OK;
        }
        if (rc == COW_OK)
            rc = commit_failed(s, mrc);
        drop_wtxn(s);
        if (!is_map_full(rc) || !map_may_grow(s, tries))
            return rc;
        uint64_t base = s->wbase;
        if ((rc = store_grow_map(s, s->mapsize * 2)) < 0 || (rc = store_begin_write(s)) < 0)
            return rc;
        if (s->wbase != base) {
            drop_wtxn(s);
            return store_msg(COW_ECONFLICT, "the map had to grow while another process "
                                            "committed: retry the transaction");
        }
    }
}

/* Drops this process's mapping of the file's pages; they stay in the page
 * cache and the next read faults them back in, so values read stay valid
 * (the map is a shared, read-only file mapping).  Bulk loads do it after
 * every commit: each page a commit touches makes the kernel map the cached
 * pages around it too (fault-around), so without it the resident set grows
 * with all the data written. */
static void
drop_mapped_pages(cow_store *s)
{
    if (s->ref.base != NULL)
        (void)madvise((void *)s->ref.base, s->ref.size, MADV_DONTNEED);
}

/* Hands each put of the commit just made (s->done) to done(), as a stored
 * value (in heap form, borrowed) read from a snapshot that holds it --
 * unless another process already replaced it and its nodes are gone: then
 * it is skipped.  The commit stands whatever happens here, so without a
 * snapshot (no reader slot left, say) nothing is reported: each put value
 * then stays in heap form.  Only done()'s own error is returned. */
static int
report_puts(cow_store *s, cow_store_put_fn done, void *ctx)
{
    int rc = COW_OK;
    if (store_refresh_snapshot(s) < 0)
        return store_msg(COW_OK, "");
    for (size_t i = 0; i < s->ndone && rc == COW_OK; i++) {
        cow_val v = s->done[i].page;
        uint32_t seg = store_val_segment(&v);
        MDB_val k = {sizeof seg, &seg}, data;
        if (s->done[i].del || (seg && mdb_get(s->cur, s->segs, &k, &data) != 0))
            continue;
        store_val_to_heap(s, &v);
        rc = done(ctx, s->done[i].name, s->done[i].nlen, &v);
    }
    return rc;
}

/* After a commit: its operations become s->done, out of the writer's view,
 * their values let go of (only names and pages are needed, and a value
 * held would keep its segments through a compaction's sweep). */
static void
move_ops_to_done(cow_store *s)
{
    for (size_t i = 0; i < s->nops; i++) {
        cow_val_release(&s->ops[i].v);
        s->ops[i].v = cow_val_none();
    }
    s->done = s->ops;
    s->ndone = s->nops;
    s->ops = NULL;
    s->nops = s->capops = 0;
}

static void
free_done(cow_store *s)
{
    store_free_ops(s->done, s->ndone);
    cow_free(s->done);
    s->done = NULL;
    s->ndone = 0;
}

/* What follows a commit LMDB made durable: none of it may make the commit
 * look failed (a caller told so would run it again).  A compaction that
 * fails is skipped, and is due again at the next commit that sweeps. */
static int
after_commit(cow_store *s, cow_store_put_fn done, void *ctx)
{
    if (s->bulk)
        drop_mapped_pages(s);
    if (store_needs_compaction(s) && store_compact_locked(s) < 0)
        store_msg(COW_OK, "");
    return done ? report_puts(s, done, ctx) : COW_OK;
}

int
cow_store_commit_each(cow_store *s, cow_store_put_fn done, void *ctx)
{
    int rc;
    if (!store_owns_txn(s))
        return store_msg(COW_EINVAL, "no transaction is open in this thread");
    if (s->opens == 0)
        rc = store_msg(COW_ECLOSED, "store is closed");
    else
        rc = store_commit_write(s, apply_ops);
    if (rc == COW_OK)
        cow_twin_note_written(&s->written, s->slot);
    cow_u64map_free(&s->written);
    drop_wtxn(s);
    move_ops_to_done(s);
    if (rc == COW_OK)
        rc = after_commit(s, done, ctx);
    free_done(s);
    store_gate_release(s);          /* last: s may be gone after it */
    return rc;
}

int
cow_store_commit(cow_store *s)
{
    return cow_store_commit_each(s, NULL, NULL);
}
