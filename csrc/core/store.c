/* The store: named roots over LMDB, nodes in segments, space by sweeping.
 *
 * One LMDB environment (a file with MDB_NOSUBDIR, or a directory) holds three
 * named databases:
 *
 *   meta     "format" -> format record (below); "state" -> state record
 *   roots    root name (UTF-8 bytes) -> one 16-byte cow_val in page form
 *   segs     segment id (uint32, MDB_INTEGERKEY) -> segment bytes, ending in
 *            the ids of the segments they name (store_segs.c)
 *
 * Format record (written once; checked on every open):
 *   0  u64  magic COW_STORE_MAGIC ("COWSTOR\0" read little-endian)
 *   8  u32  format version COW_STORE_FORMAT
 *  12  u32  byte-order mark 0x01020304 as written by a little-endian host
 *  16  u32  sizeof(cow_val) = 16      20  u32  sizeof(cow_word) = 8
 *
 * State record:
 *   0  u64 next segment id   8  u64 bytes in segments
 *  16  u64 live bytes: reachable at the last sweep, plus what commits that
 *          dropped nothing added since      24  u64 segments
 *  32  u64 compact bytes: what a compaction would keep, estimated
 *
 * A commit writes only new segments, the roots and the state record; what
 * became unreachable is freed by a sweep (mark from the roots and from the
 * values this process holds, then delete the rest): right away in small
 * stores, otherwise once segments pass COW_STORE_GARBAGE_RATIO times the
 * live bytes (amortised O(1) per byte written).  A segment stays while any
 * of its nodes is reachable, so once the live bytes pass that ratio of what
 * a compaction would keep, commit compacts: every root rewritten into
 * fresh segments, the old ones swept (store_compact.c).
 *
 * Values are lazily read through the process-wide env table (ref.h): this
 * store registers its map address and a segment lookup, and a read
 * transaction (a "snapshot") stays open while any value read from it may be
 * alive (pins > 0).  Segments are at least COW_STORE_SEG_MIN bytes so LMDB
 * keeps them in overflow pages, which it never moves once written.
 *
 * Invariants:
 *  ST1  every root value's word and every segment's refs name existing
 *       segments (SG2); state.segment bytes is the sum of segment sizes.
 *  ST2  cur is the newest read transaction this handle opened; of older
 *       ones at most the newest holding every segment a live value pins
 *       stays open (prune_snapshots), all close when pins reach 0.
 *  ST3  pid is the process that opened env; any entry point in another pid
 *       reopens first (cow_store_after_fork) and never uses the old handles.
 *  ST4  a process opens each file once (LMDB's rule: a second environment
 *       on the same file would drop the first one's locks when closed): open
 *       finds an open store by device and inode and counts one more opener.
 *  ST5  one thread at a time writes: the writer holds the handle's gate from
 *       begin to the end of commit or abort, and only it reads or changes
 *       wtxn, ops and state; other threads read committed snapshots and
 *       never see its pending operations.  The handle is freed only when no
 *       thread holds the gate or waits inside a call (busy == 0).
 *
 * The parts: store_impl.h lists which file does what.
 */
/* madvise() is not in C11 or strict POSIX. */
#define _DEFAULT_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cowstore/alloc.h"
#include "cowstore/errors.h"
#include "cowstore/hash.h"
#include "cowstore/pack.h"
#include "store_impl.h"

/* The calling thread's last error: threads never see each other's. */
static _Thread_local struct {
    char msg[COW_STORE_MSG_MAX];
    int mdb;                    /* the LMDB code behind it, 0 if none */
} last_error;
static cow_store *open_stores;  /* ST4 */

const char *
cow_store_errmsg(void)
{
    return last_error.msg;
}

int
store_last_mdb(void)
{
    return last_error.mdb;
}

/* Records an LMDB failure and returns the matching core code. */
int
store_mdb_fail(cow_store *s, int mrc, const char *what)
{
    last_error.mdb = mrc;
    snprintf(last_error.msg, sizeof last_error.msg, "%s: %s", what, mdb_strerror(mrc));
    if (mrc == MDB_INVALID || mrc == MDB_CORRUPTED || mrc == MDB_PAGE_NOTFOUND
        || mrc == MDB_VERSION_MISMATCH || mrc == MDB_BAD_VALSIZE)
        return COW_ECORRUPT;
    if (mrc == EACCES && s && (s->flags & COW_STORE_READONLY))
        return COW_EREADONLY;
    if (mrc == ENOMEM)
        return COW_ENOMEM;
    return COW_ESTORE;
}

/* Records a message for rc and returns rc. */
int
store_msg(int rc, const char *text)
{
    last_error.mdb = 0;
    snprintf(last_error.msg, sizeof last_error.msg, "%s", text);
    return rc;
}

/* ---- open and close -------------------------------------------------------- */

/* Format n was written by cowstore 0.n (see COW_STORE_FORMAT). */
static int
old_format(uint32_t n)
{
    char msg[COW_STORE_MSG_MAX];
    snprintf(msg, sizeof msg, "store format %u, written by cowstore 0.%u; this version reads "
             "format %u only: export each root with cowstore 0.%u (`cowstore export OLD NAME "
             "NAME.json`) and import it here (`cowstore import NEW NAME NAME.json`)",
             n, n, COW_STORE_FORMAT, n);
    return store_msg(COW_ESTORE, msg);
}

static int
check_format(cow_store *s, MDB_txn *txn, int create)
{
    uint32_t rec[6] = {0};
    uint64_t magic = COW_STORE_MAGIC;
    MDB_val k = {6, "format"}, v;
    int mrc = mdb_get(txn, s->meta, &k, &v);
    if (mrc == MDB_NOTFOUND && create) {
        memcpy(rec, &magic, sizeof magic);
        rec[2] = COW_STORE_FORMAT;
        rec[3] = COW_STORE_BOM;
        rec[4] = sizeof(cow_val);
        rec[5] = sizeof(cow_word);
        v.mv_size = sizeof rec;
        v.mv_data = rec;
        mrc = mdb_put(txn, s->meta, &k, &v, 0);
        return mrc ? store_mdb_fail(s, mrc, "writing the format record") : COW_OK;
    }
    if (mrc != 0)
        return mrc == MDB_NOTFOUND ? store_msg(COW_ECORRUPT, "not a cowstore store (no format record)")
                                   : store_mdb_fail(s, mrc, "reading the format record");
    if (v.mv_size != sizeof rec)
        return store_msg(COW_ECORRUPT, "format record has the wrong size");
    memcpy(rec, v.mv_data, sizeof rec);
    memcpy(&magic, rec, sizeof magic);
    if (magic != COW_STORE_MAGIC)
        return store_msg(COW_ECORRUPT, "not a cowstore store (bad magic)");
    if (rec[3] != COW_STORE_BOM)
        return store_msg(COW_ECORRUPT, "store written on a host of the other byte order");
    if (rec[2] < COW_STORE_FORMAT_OLDEST_READ)
        return old_format(rec[2]);
    if (rec[2] > COW_STORE_FORMAT || rec[4] != sizeof(cow_val) || rec[5] != sizeof(cow_word))
        return store_msg(COW_ECORRUPT, "unsupported store format version");
    return COW_OK;
}

/* Opens the databases in one transaction: a write one that creates what is
 * missing when create, else a read one.  *missing is set when a database
 * is absent (a new file). */
static int
open_dbs_in(cow_store *s, int create, int *missing)
{
    unsigned f = create ? MDB_CREATE : 0;
    MDB_txn *txn;
    int rc, mrc = mdb_txn_begin(s->env, NULL, create ? 0 : MDB_RDONLY, &txn);
    *missing = 0;
    if (mrc != 0)
        return store_mdb_fail(s, mrc, "opening the store");
    if ((mrc = mdb_dbi_open(txn, "meta", f, &s->meta)) != 0
        || (mrc = mdb_dbi_open(txn, "roots", f, &s->roots)) != 0
        || (mrc = mdb_dbi_open(txn, "segs", f | MDB_INTEGERKEY, &s->segs)) != 0) {
        mdb_txn_abort(txn);
        *missing = mrc == MDB_NOTFOUND;
        if (*missing)
            return store_msg(COW_ECORRUPT, "not a cowstore store (missing databases)");
        return store_mdb_fail(s, mrc, "opening the store's databases");
    }
    if ((rc = check_format(s, txn, create)) < 0) {
        mdb_txn_abort(txn);
        return rc;
    }
    mrc = mdb_txn_commit(txn);
    return mrc ? store_mdb_fail(s, mrc, "opening the store") : COW_OK;
}

/* The store's databases: opened in a read transaction when the file has
 * them, so that opening (and reopening after fork) never waits for
 * another process's writer -- nor deadlocks on a writer lock the forking
 * parent holds; created in a write transaction only in a new, writable
 * file. */
static int
open_dbs(cow_store *s)
{
    int missing, rc = open_dbs_in(s, 0, &missing);
    if (rc < 0 && missing && !(s->flags & COW_STORE_READONLY))
        rc = open_dbs_in(s, 1, &missing);
    return rc;
}

/* The file must hold every page LMDB's meta says is used: a truncated file
 * would fault (SIGBUS) on the first read past its end. */
static int
check_length(cow_store *s)
{
    MDB_envinfo info;
    MDB_stat st;
    struct stat fs;
    int rc;
    mdb_env_info(s->env, &info);
    mdb_env_stat(s->env, &st);
    if ((rc = store_file_stat(s, &fs)) < 0)
        return rc;
    if ((uint64_t)(info.me_last_pgno + 1) * st.ms_psize > (uint64_t)fs.st_size)
        return store_msg(COW_ECORRUPT, "store file is truncated");
    return COW_OK;
}

static int
open_env(cow_store *s, size_t map)
{
    unsigned f = MDB_NOTLS;
    int mrc;
    if (!(s->flags & COW_STORE_DIR))
        f |= MDB_NOSUBDIR;
    if (s->flags & COW_STORE_READONLY)
        f |= MDB_RDONLY;
    if (s->flags & COW_STORE_NOSYNC)
        f |= MDB_NOSYNC;
    if ((mrc = mdb_env_create(&s->env)) != 0)
        return store_mdb_fail(s, mrc, "creating the environment");
    mdb_env_set_maxreaders(s->env, COW_STORE_MAX_READERS);
    mdb_env_set_maxdbs(s->env, COW_STORE_MAX_DBS);
    mdb_env_set_mapsize(s->env, map);
    if ((mrc = mdb_env_open(s->env, s->path, f, 0644)) != 0) {
        mdb_env_close(s->env);
        s->env = NULL;
        return store_mdb_fail(s, mrc, s->path);
    }
    mdb_reader_check(s->env, NULL);     /* free slots of dead processes */
    return COW_OK;
}

/* stat() of the data file a path names: the file itself, or LMDB's data.mdb
 * inside a directory store. */
static int
path_stat(const char *path, unsigned flags, struct stat *st)
{
    char full[4096];
    snprintf(full, sizeof full, "%s%s", path, flags & COW_STORE_DIR ? "/data.mdb" : "");
    return stat(full, st);
}

/* The store already open on path's file (ST4), or NULL. */
static cow_store *
find_open(const char *path, unsigned flags)
{
    struct stat st;
    if (path_stat(path, flags, &st) != 0)
        return NULL;
    for (cow_store *s = open_stores; s; s = s->next)
        if (s->dev == st.st_dev && s->ino == st.st_ino)
            return s;
    return NULL;
}

int
cow_store_open(const char *path, unsigned flags, size_t map, cow_store **out)
{
    cow_store *s = find_open(path, flags);
    struct stat st;
    int rc, slot;
    *out = NULL;
    if (s) {
        if ((s->flags & COW_STORE_READONLY) && !(flags & COW_STORE_READONLY))
            return store_msg(COW_EREADONLY, "the store is already open readonly in this "
                                                "process; close it before opening it for writing");
        s->opens++;
        s->closing = 0;
        *out = s;
        return COW_OK;
    }
    s = cow_calloc(1, sizeof *s);
    if (s == NULL || (s->path = cow_malloc(strlen(path) + 1)) == NULL) {
        cow_free(s);
        return store_msg(COW_ENOMEM, "out of memory");
    }
    strcpy(s->path, path);
    store_gate_init(s);
    s->flags = flags;
    s->pid = getpid();
    if ((rc = open_env(s, map ? map : COW_STORE_DEFAULT_MAP)) < 0)
        goto fail;
    if ((rc = check_length(s)) < 0 || (rc = open_dbs(s)) < 0)
        goto fail;
    s->ref.lookup = store_lookup_segment;
    s->ref.ctx = s;
    s->ref.unpinned = store_on_unpinned;
    if ((slot = cow_ref_env_add(&s->ref)) < 0) {
        rc = store_msg(COW_EOVERFLOW, "too many stores open in this process");
        goto fail;
    }
    s->slot = (unsigned)slot;
    if ((rc = store_refresh_snapshot(s)) < 0) {
        cow_ref_env_remove(s->slot);
        goto fail;
    }
    if ((rc = store_file_stat(s, &st)) < 0) {
        cow_ref_env_remove(s->slot);
        goto fail;
    }
    s->dev = st.st_dev;             /* the identity find_open and fork compare */
    s->ino = st.st_ino;
    s->opens = 1;
    s->next = open_stores;
    open_stores = s;
    *out = s;
    return COW_OK;
fail:
    if (s->env)
        mdb_env_close(s->env);
    pthread_mutex_destroy(&s->gate);
    cow_free(s->path);
    cow_free(s);
    return rc;
}

static void
unlink_open(cow_store *s)
{
    for (cow_store **p = &open_stores; *p; p = &(*p)->next)
        if (*p == s) {
            *p = s->next;
            return;
        }
}

/* Closes for real once no opener, no value read from s and no thread
 * inside a call on s remain (ST5); otherwise the last of them closes. */
void
store_close_if_unused(cow_store *s)
{
    if (s->opens > 0)
        return;
    if (s->ref.pins > 0 || s->busy > 0 || s->has_writer) {
        s->closing = 1;
        return;
    }
    unlink_open(s);
    cow_ref_env_remove(s->slot);
    if (s->pid == getpid() && s->env) {
        store_drop_old_snapshots(s);
        if (s->cur)
            mdb_txn_abort(s->cur);
        mdb_env_close(s->env);
    }   /* else: the parent's handles; never touched after fork (ST3) */
    store_clear_ops(s);
    cow_u64map_free(&s->written);
    pthread_mutex_destroy(&s->gate);
    cow_free(s->ops);
    cow_free(s->old);
    cow_free(s->path);
    cow_free(s);
}

void
cow_store_close(cow_store *s)
{
    if (s == NULL || s->opens == 0)
        return;
    if (--s->opens == 0 && store_owns_txn(s)) {
        cow_store_abort(s);         /* its end of the transaction closes */
        return;
    }
    store_close_if_unused(s);
}

int
cow_store_after_fork_all(void)
{
    int rc = COW_OK, r;
    for (cow_store *s = open_stores; s; s = s->next)
        if ((r = cow_store_after_fork(s)) < 0 && rc == COW_OK)
            rc = r;
    return rc;
}

int
cow_store_after_fork(cow_store *s)
{
    struct stat st;
    int rc;
    if (s->pid == getpid())
        return s->env ? COW_OK : store_msg(COW_ECLOSED, "store could not be reopened after fork");
    /* The parent's env, transactions and map stay as they are: its mapping
     * stays valid in this process and keeps serving values read before. */
    s->env = NULL;
    s->cur = s->wtxn = NULL;
    s->nold = 0;
    store_clear_ops(s);
    store_gate_init(s);         /* the forking thread is the only one here */
    s->busy = 0;
    s->pid = getpid();
    /* Reopen the very file: never create a new one where it was removed. */
    if (path_stat(s->path, s->flags, &st) != 0 || st.st_dev != s->dev || st.st_ino != s->ino)
        return store_msg(COW_ECLOSED, "the store file was removed or replaced after fork");
    if ((rc = open_env(s, s->mapsize)) < 0 || (rc = open_dbs(s)) < 0
        || (rc = store_refresh_snapshot(s)) < 0) {
        if (s->env)
            mdb_env_close(s->env);
        s->env = NULL;
        s->cur = NULL;
    }
    return rc;
}

/* Every entry point: a handle used in a forked child reopens first (ST3). */
int
store_enter(cow_store *s)
{
    if (s->opens == 0)
        return store_msg(COW_ECLOSED, "store is closed");
    if (s->pid != getpid() || s->env == NULL)
        return cow_store_after_fork(s);
    return COW_OK;
}

unsigned
cow_store_slot(const cow_store *s)
{
    return s->slot;
}

uint64_t
cow_store_word_id(const cow_val *v)
{
    uint64_t id;
    if (!cow_tag_has_word(v->tag) || !cow_word_stored(v->u.w))
        return 0;
    id = (uint64_t)(v->u.w & ~(COW_REF_SLOT_MASK << COW_REF_SLOT_SHIFT));
    if (v->tag == COW_T_PACKED && cow_pack_offset(v) != 0)
        id ^= cow_hash_mix64(cow_pack_offset(v));   /* members of one batch differ */
    return id;
}
