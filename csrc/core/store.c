/* The store: named roots over LMDB, nodes in segments, space by refcounts.
 *
 * One LMDB environment (a file with MDB_NOSUBDIR, or a directory) holds four
 * named databases:
 *
 *   meta     "format" -> format record (below); "state" -> state record
 *   roots    root name (UTF-8 bytes) -> one 16-byte cow_val in page form
 *   segs     segment id (uint32, MDB_INTEGERKEY) -> segment bytes (segment.c)
 *   segmeta  segment id -> segment record (below)
 *
 * Format record (written once; checked on every open):
 *   0  u64  magic COW_STORE_MAGIC ("COWSTOR\0" read little-endian)
 *   8  u32  format version COW_STORE_FORMAT
 *  12  u32  byte-order mark 0x01020304 as written by a little-endian host
 *  16  u32  sizeof(cow_val) = 16      20  u32  sizeof(cow_word) = 8
 *
 * State record:
 *   0  u64 next segment id   8  u64 bytes in live segments
 *  16  u64 live bytes after the last compaction   24  u64 live segments
 *
 * Segment record: u32 refcount, u32 segment bytes, u32 nrefs, u32 flags,
 * then nrefs u32 ids of the segments it names.  A segment's refcount counts
 * the roots whose value names it plus the segments that name it; at zero
 * the segment and its record are deleted and the segments it named are
 * decremented (decref_segment), so deleting or replacing a root frees what
 * only it reached.  Refcounts are per segment, not per node, so a segment
 * stays while any of its nodes is reachable; commit therefore compacts once
 * live segments hold more than COW_STORE_GARBAGE_RATIO times the bytes the
 * last compaction kept (amortised O(1) per byte written).
 *
 * Values are lazily read through the process-wide env table (ref.h): this
 * store registers its map address and a segment lookup, and a read
 * transaction (a "snapshot") stays open while any value read from it may be
 * alive (pins > 0).  Segments are at least COW_STORE_SEG_MIN bytes so LMDB
 * keeps them in overflow pages, which it never moves once written.
 *
 * Invariants:
 *  ST1  every root value's word and every segment's refs name live segments
 *       (refcount >= 1); state.segment bytes is the sum of live segment sizes.
 *  ST2  cur is the newest read transaction this handle opened; of older
 *       ones at most the newest holding every segment a live value pins
 *       stays open (prune_snapshots), all close when pins reach 0.
 *  ST3  pid is the process that opened env; any entry point in another pid
 *       reopens first (cow_store_after_fork) and never uses the old handles.
 *  ST4  a process opens each file once (LMDB's rule: a second environment
 *       on the same file would drop the first one's locks when closed): open
 *       finds an open store by device and inode and counts one more opener.
 */
/* madvise() is not in C11 or strict POSIX. */
#define _DEFAULT_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lmdb.h>

#include "cowstore/alloc.h"
#include "cowstore/errors.h"
#include "cowstore/ref.h"
#include "cowstore/segment.h"
#include "cowstore/store.h"

#define COW_STORE_MAGIC UINT64_C(0x00524f5453574f43)   /* "COWSTOR\0" */
#define COW_STORE_FORMAT 1u
#define COW_STORE_BOM 0x01020304u
/* LMDB's page header on 64-bit hosts (MDB_page): an overflow page holds the
 * page size less this. */
#define LMDB_PAGE_HEADER 16
/* Named databases in one environment. */
#define COW_STORE_MAX_DBS 4
/* Compaction starts once live segments exceed this multiple of the bytes
 * the last compaction kept, plus COW_STORE_GARBAGE_SLACK (so small stores
 * are not rewritten every few commits). */
#define COW_STORE_GARBAGE_RATIO 1.25
#define COW_STORE_GARBAGE_SLACK ((uint64_t)1 << 19)
/* Grow the map ahead of a write once it is this full (1/2), so that a full
 * map rarely interrupts a transaction. */
#define COW_STORE_GROW_AT_DIV 2
/* Tries of a whole commit after growing the map (each doubles it). */
#define COW_STORE_MAX_GROWTHS 8

typedef struct pending_op {
    char *name;
    size_t nlen;
    int del;            /* 1: delete, 0: put v */
    cow_val v;          /* owned */
} pending_op;

typedef struct store_state {
    uint64_t next_seg;
    uint64_t seg_bytes;
    uint64_t live_bytes;
    uint64_t nsegs;
} store_state;

struct cow_store {
    struct cow_store *next;     /* every store open in this process (ST4) */
    dev_t dev;
    ino_t ino;
    int opens;                  /* cow_store_open calls not yet closed */
    MDB_env *env;
    MDB_dbi meta, roots, segs, segmeta;
    cow_ref_env ref;
    unsigned slot;
    char *path;
    unsigned flags;
    pid_t pid;
    MDB_txn *cur;           /* newest read snapshot (ST2) */
    MDB_txn **old;
    size_t nold, capold;
    MDB_txn *wtxn;          /* open write transaction */
    uint64_t wbase;         /* last txn id when the write began */
    pending_op *ops;
    size_t nops, capops;
    store_state state;      /* valid inside a write transaction */
    size_t mapsize;         /* current map size (kept for reopening after fork) */
    int closing;
    int bulk;               /* cow_store_set_bulk: count new segments live, never compact */
    int last_mdb;
    char msg[256];
};

static char open_msg[256];
static cow_store *open_stores;

const char *
cow_store_errmsg(const cow_store *s)
{
    return s ? s->msg : open_msg;
}

/* Records an LMDB failure and returns the matching core code. */
static int
mdb_fail(cow_store *s, int mrc, const char *what)
{
    char *msg = s ? s->msg : open_msg;
    if (s)
        s->last_mdb = mrc;
    snprintf(msg, sizeof open_msg, "%s: %s", what, mdb_strerror(mrc));
    if (mrc == MDB_INVALID || mrc == MDB_CORRUPTED || mrc == MDB_PAGE_NOTFOUND
        || mrc == MDB_VERSION_MISMATCH || mrc == MDB_BAD_VALSIZE)
        return COW_ECORRUPT;
    if (mrc == EACCES && s && (s->flags & COW_STORE_READONLY))
        return COW_EREADONLY;
    if (mrc == ENOMEM)
        return COW_ENOMEM;
    return COW_ESTORE;
}

static int
set_msg(cow_store *s, int rc, const char *text)
{
    snprintf(s ? s->msg : open_msg, sizeof open_msg, "%s", text);
    return rc;
}

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
        return set_msg(s, COW_ECORRUPT, "not a cowstore store (no format record)");
    p = (uintptr_t)v.mv_data;
    page = p - p % st.ms_psize;
    memcpy(&head, (const void *)page, sizeof head);
    if (head.pgno > SIZE_MAX / st.ms_psize || head.pgno * st.ms_psize > page
        || (page - head.pgno * st.ms_psize) % st.ms_psize != 0
        || p - (page - head.pgno * st.ms_psize) >= s->mapsize)
        return set_msg(s, COW_ECORRUPT, "cannot locate the store's map (bad page header)");
    *base = (const char *)(page - head.pgno * st.ms_psize);
    return COW_OK;
}

/* The store file's status, through LMDB's own descriptor. */
static int
file_stat(cow_store *s, struct stat *st)
{
    int fd;
    if (mdb_env_get_fd(s->env, &fd) != 0 || fstat(fd, st) != 0)
        return set_msg(s, COW_ESTORE, "cannot stat the store file");
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
    int rc;
    mdb_env_info(s->env, &info);
    if ((rc = file_stat(s, &st)) < 0)
        return rc;
    s->mapsize = info.me_mapsize;
    s->ref.size = (size_t)st.st_size < info.me_mapsize ? (size_t)st.st_size : info.me_mapsize;
    return locate_map(s, txn, &s->ref.base);
}

/* Doubles the map (or adopts a larger size another process set: size 0). */
static int
grow_map(cow_store *s, size_t size)
{
    int mrc;
    if (s->ref.views > 0)       /* numpy arrays point into the map: it must stay */
        return set_msg(s, COW_ESTORE, "the store's map must grow, but numpy arrays read from "
                                      "it are alive; drop them or open it with a larger map_size");
    mrc = mdb_env_set_mapsize(s->env, size);
    if (mrc != 0)
        return mdb_fail(s, mrc, "growing the map");
    if (s->cur == NULL) {           /* no snapshot: the next begin_read syncs */
        s->ref.size = 0;
        return COW_OK;
    }
    return sync_mapping(s, s->cur);
}

/* ---- snapshots ------------------------------------------------------------ */

static void
drop_old_snapshots(cow_store *s)
{
    for (size_t i = 0; i < s->nold; i++)
        mdb_txn_abort(s->old[i]);
    s->nold = 0;
}

static void close_if_unused(cow_store *s);

/* Called by the env table when no value read from us is alive. */
static void
on_unpinned(cow_ref_env *env)
{
    cow_store *s = env->ctx;
    if (s->pid != getpid())
        return;
    drop_old_snapshots(s);
    if (s->closing)
        close_if_unused(s);
}

static int
begin_read(cow_store *s, MDB_txn **out)
{
    int mrc, rc;
    for (int tries = 0; tries < COW_STORE_MAX_GROWTHS; tries++) {
        mrc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, out);
        if (mrc != MDB_MAP_RESIZED)
            break;
        if (grow_map(s, 0) < 0)        /* another process grew it: adopt */
            return COW_ESTORE;
    }
    if (mrc != 0)
        return mdb_fail(s, mrc, "starting a read transaction");
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
        uint32_t seg = (uint32_t)(p->keys[i] - 1);
        MDB_val k = {sizeof seg, &seg}, v;
        if (p->keys[i] && p->vals[i] && mdb_get(t, s->segs, &k, &v) != 0)
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
        drop_old_snapshots(s);
        return;
    }
    for (size_t i = s->nold; i-- > 0;) {
        if (holds_pinned(s, s->old[i])) {
            MDB_txn *keep = s->old[i];
            s->old[i] = s->old[--s->nold];
            drop_old_snapshots(s);
            s->old[s->nold++] = keep;
            return;
        }
    }   /* pins span segments no single snapshot holds: keep them all */
}

/* Makes cur see the latest commit (ST2).  Keeps the previous snapshot open
 * if values read from it may be alive. */
static int
refresh_snapshot(cow_store *s)
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
        if (s->ref.pins > 0) {
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
            drop_old_snapshots(s);
            mdb_txn_abort(s->cur);
        }
    }
    s->cur = fresh;
    prune_snapshots(s);
    return COW_OK;
}

/* The env table's segment lookup: the newest snapshot first, then older ones
 * (a pinned value may name a segment deleted since). */
static int
lookup_segment(void *ctx, uint32_t seg, size_t *off, size_t *len)
{
    cow_store *s = ctx;
    MDB_val k = {sizeof seg, &seg}, v;
    for (size_t i = 0; i <= s->nold; i++) {
        MDB_txn *t = i == 0 ? s->cur : s->old[s->nold - i];
        if (t == NULL || mdb_get(t, s->segs, &k, &v) != 0)
            continue;
        if ((const char *)v.mv_data < s->ref.base
            || (size_t)((const char *)v.mv_data - s->ref.base) >= s->ref.size)
            return COW_ECORRUPT;
        *off = (size_t)((const char *)v.mv_data - s->ref.base);
        *len = v.mv_size;
        return COW_OK;
    }
    return COW_ECORRUPT;
}

/* ---- open and close -------------------------------------------------------- */

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
        return mrc ? mdb_fail(s, mrc, "writing the format record") : COW_OK;
    }
    if (mrc != 0)
        return mrc == MDB_NOTFOUND ? set_msg(s, COW_ECORRUPT, "not a cowstore store (no format record)")
                                   : mdb_fail(s, mrc, "reading the format record");
    if (v.mv_size != sizeof rec)
        return set_msg(s, COW_ECORRUPT, "format record has the wrong size");
    memcpy(rec, v.mv_data, sizeof rec);
    memcpy(&magic, rec, sizeof magic);
    if (magic != COW_STORE_MAGIC)
        return set_msg(s, COW_ECORRUPT, "not a cowstore store (bad magic)");
    if (rec[3] != COW_STORE_BOM)
        return set_msg(s, COW_ECORRUPT, "store written on a host of the other byte order");
    if (rec[2] != COW_STORE_FORMAT || rec[4] != sizeof(cow_val) || rec[5] != sizeof(cow_word))
        return set_msg(s, COW_ECORRUPT, "unsupported store format version");
    return COW_OK;
}

static int
open_dbs(cow_store *s)
{
    int create = !(s->flags & COW_STORE_READONLY);
    unsigned f = create ? MDB_CREATE : 0;
    MDB_txn *txn;
    int rc, mrc = mdb_txn_begin(s->env, NULL, create ? 0 : MDB_RDONLY, &txn);
    if (mrc != 0)
        return mdb_fail(s, mrc, "opening the store");
    if ((mrc = mdb_dbi_open(txn, "meta", f, &s->meta)) != 0
        || (mrc = mdb_dbi_open(txn, "roots", f, &s->roots)) != 0
        || (mrc = mdb_dbi_open(txn, "segs", f | MDB_INTEGERKEY, &s->segs)) != 0
        || (mrc = mdb_dbi_open(txn, "segmeta", f | MDB_INTEGERKEY, &s->segmeta)) != 0) {
        mdb_txn_abort(txn);
        if (mrc == MDB_NOTFOUND)
            return set_msg(s, COW_ECORRUPT, "not a cowstore store (missing databases)");
        return mdb_fail(s, mrc, "opening the store's databases");
    }
    if ((rc = check_format(s, txn, create)) < 0) {
        mdb_txn_abort(txn);
        return rc;
    }
    mrc = mdb_txn_commit(txn);
    return mrc ? mdb_fail(s, mrc, "opening the store") : COW_OK;
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
    if ((rc = file_stat(s, &fs)) < 0)
        return rc;
    if ((uint64_t)(info.me_last_pgno + 1) * st.ms_psize > (uint64_t)fs.st_size)
        return set_msg(s, COW_ECORRUPT, "store file is truncated");
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
        return mdb_fail(s, mrc, "creating the environment");
    mdb_env_set_maxreaders(s->env, COW_STORE_MAX_READERS);
    mdb_env_set_maxdbs(s->env, COW_STORE_MAX_DBS);
    mdb_env_set_mapsize(s->env, map);
    if ((mrc = mdb_env_open(s->env, s->path, f, 0644)) != 0) {
        mdb_env_close(s->env);
        s->env = NULL;
        return mdb_fail(s, mrc, s->path);
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
            return set_msg(NULL, COW_EREADONLY, "the store is already open readonly in this "
                                                "process; close it before opening it for writing");
        s->opens++;
        s->closing = 0;
        *out = s;
        return COW_OK;
    }
    s = cow_calloc(1, sizeof *s);
    if (s == NULL || (s->path = cow_malloc(strlen(path) + 1)) == NULL) {
        cow_free(s);
        return set_msg(NULL, COW_ENOMEM, "out of memory");
    }
    strcpy(s->path, path);
    s->flags = flags;
    s->pid = getpid();
    if ((rc = open_env(s, map ? map : COW_STORE_DEFAULT_MAP)) < 0)
        goto fail;
    if ((rc = check_length(s)) < 0 || (rc = open_dbs(s)) < 0)
        goto fail;
    s->ref.lookup = lookup_segment;
    s->ref.ctx = s;
    s->ref.unpinned = on_unpinned;
    if ((slot = cow_ref_env_add(&s->ref)) < 0) {
        rc = set_msg(s, COW_EOVERFLOW, "too many stores open in this process");
        goto fail;
    }
    s->slot = (unsigned)slot;
    if ((rc = refresh_snapshot(s)) < 0) {
        cow_ref_env_remove(s->slot);
        goto fail;
    }
    if ((rc = file_stat(s, &st)) < 0) {
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
    snprintf(open_msg, sizeof open_msg, "%s", s->msg);
    if (s->env)
        mdb_env_close(s->env);
    cow_free(s->path);
    cow_free(s);
    return rc;
}

static void
clear_ops(cow_store *s)
{
    for (size_t i = 0; i < s->nops; i++) {
        cow_free(s->ops[i].name);
        cow_val_release(&s->ops[i].v);
    }
    s->nops = 0;
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

/* Closes for real once no opener and no value read from s remain. */
static void
close_if_unused(cow_store *s)
{
    if (s->opens > 0)
        return;
    if (s->ref.pins > 0) {      /* values still read from us: close when they go */
        s->closing = 1;
        return;
    }
    unlink_open(s);
    cow_ref_env_remove(s->slot);
    if (s->pid == getpid() && s->env) {
        drop_old_snapshots(s);
        if (s->cur)
            mdb_txn_abort(s->cur);
        mdb_env_close(s->env);
    }   /* else: the parent's handles; never touched after fork (ST3) */
    clear_ops(s);
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
    if (--s->opens == 0 && s->wtxn)
        cow_store_abort(s);
    close_if_unused(s);
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
        return s->env ? COW_OK : set_msg(s, COW_ECLOSED, "store could not be reopened after fork");
    /* The parent's env, transactions and map stay as they are: its mapping
     * stays valid in this process and keeps serving values read before. */
    s->env = NULL;
    s->cur = s->wtxn = NULL;
    s->nold = 0;
    clear_ops(s);
    s->pid = getpid();
    /* Reopen the very file: never create a new one where it was removed. */
    if (path_stat(s->path, s->flags, &st) != 0 || st.st_dev != s->dev || st.st_ino != s->ino)
        return set_msg(s, COW_ECLOSED, "the store file was removed or replaced after fork");
    if ((rc = open_env(s, s->mapsize)) < 0 || (rc = open_dbs(s)) < 0
        || (rc = refresh_snapshot(s)) < 0) {
        if (s->env)
            mdb_env_close(s->env);
        s->env = NULL;
        s->cur = NULL;
    }
    return rc;
}

/* Every entry point: a handle used in a forked child reopens first (ST3). */
static int
enter(cow_store *s)
{
    if (s->opens == 0)
        return set_msg(s, COW_ECLOSED, "store is closed");
    if (s->pid != getpid() || s->env == NULL)
        return cow_store_after_fork(s);
    return COW_OK;
}

/* ---- reading ------------------------------------------------------------------ */

static pending_op *
find_op(cow_store *s, const char *name, size_t nlen)
{
    for (size_t i = 0; i < s->nops; i++)
        if (s->ops[i].nlen == nlen && memcmp(s->ops[i].name, name, nlen) == 0)
            return &s->ops[i];
    return NULL;
}

/* A root value read in txn, checked: the 16 bytes in page form (LMDB keeps
 * small values only 2-byte aligned, so they are copied out). */
static int
read_root(cow_store *s, MDB_txn *txn, const char *name, size_t nlen, cow_val *out)
{
    MDB_val k = {nlen, (void *)name}, v;
    int mrc;
    if (nlen == 0 || nlen > (size_t)mdb_env_get_maxkeysize(s->env))
        return COW_NOT_FOUND;
    mrc = mdb_get(txn, s->roots, &k, &v);
    if (mrc == MDB_NOTFOUND)
        return COW_NOT_FOUND;
    if (mrc != 0)
        return mdb_fail(s, mrc, "reading a root");
    if (v.mv_size != sizeof(cow_val))
        return set_msg(s, COW_ECORRUPT, "corrupt root record");
    memcpy(out, v.mv_data, sizeof *out);
    if (cow_val_check_stored(out) < 0)
        return set_msg(s, COW_ECORRUPT, "corrupt root record");
    return COW_FOUND;
}

int
cow_store_get(cow_store *s, const char *name, size_t nlen, cow_val *out)
{
    cow_val page;
    pending_op *op;
    int rc;
    if ((rc = enter(s)) < 0)
        return rc;
    if ((op = find_op(s, name, nlen)) != NULL) {
        if (op->del)
            return COW_NOT_FOUND;
        cow_val_copy(out, &op->v);
        return COW_FOUND;
    }
    if (!s->wtxn && (rc = refresh_snapshot(s)) < 0)
        return rc;
    if ((rc = read_root(s, s->cur, name, nlen, &page)) != COW_FOUND)
        return rc;
    if (cow_val_stored(&page))      /* the word in heap form names us */
        page.u.w |= (cow_word)s->slot << COW_REF_SLOT_SHIFT;
    *out = page;
    cow_val_retain(out);            /* pins the snapshot */
    return COW_FOUND;
}

int
cow_store_names(cow_store *s, int (*visit)(void *ctx, const char *name, size_t len), void *ctx)
{
    MDB_cursor *c;
    MDB_val k, v;
    int rc, mrc;
    if ((rc = enter(s)) < 0 || (!s->wtxn && (rc = refresh_snapshot(s)) < 0))
        return rc;
    if ((mrc = mdb_cursor_open(s->cur, s->roots, &c)) != 0)
        return mdb_fail(s, mrc, "listing roots");
    rc = COW_OK;
    for (mrc = mdb_cursor_get(c, &k, &v, MDB_FIRST); mrc == 0 && rc == COW_OK;
         mrc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        pending_op *op = find_op(s, k.mv_data, k.mv_size);
        if (op == NULL || !op->del)
            rc = visit(ctx, k.mv_data, k.mv_size);
    }
    mdb_cursor_close(c);
    if (rc == COW_OK && mrc != MDB_NOTFOUND)
        rc = mdb_fail(s, mrc, "listing roots");
    for (size_t i = 0; i < s->nops && rc == COW_OK; i++) {     /* new names */
        cow_val page;
        if (!s->ops[i].del && read_root(s, s->cur, s->ops[i].name, s->ops[i].nlen, &page) == COW_NOT_FOUND)
            rc = visit(ctx, s->ops[i].name, s->ops[i].nlen);
    }
    return rc;
}

/* ---- write transactions -------------------------------------------------------- */

int
cow_store_in_txn(const cow_store *s)
{
    return s->wtxn != NULL;
}

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
        return mdb_fail(s, mrc, "reading the state record");
    if (v.mv_size != sizeof s->state)
        return set_msg(s, COW_ECORRUPT, "corrupt state record");
    memcpy(&s->state, v.mv_data, sizeof s->state);
    return COW_OK;
}

static int
write_state(cow_store *s)
{
    MDB_val k = {5, "state"}, v = {sizeof s->state, &s->state};
    int mrc = mdb_put(s->wtxn, s->meta, &k, &v, 0);
    return mrc ? mdb_fail(s, mrc, "writing the state record") : COW_OK;
}

/* Grows the map before a write when it is half full: a full map in the
 * middle of a commit costs a retry (see commit_ops). */
static int
grow_ahead(cow_store *s)
{
    MDB_envinfo info;
    MDB_stat st;
    mdb_env_info(s->env, &info);
    mdb_env_stat(s->env, &st);
    if ((uint64_t)(info.me_last_pgno + 1) * st.ms_psize * COW_STORE_GROW_AT_DIV < info.me_mapsize)
        return COW_OK;
    return grow_map(s, info.me_mapsize * 2);
}

static cow_store_block_fn block_hook;
static cow_store_unblock_fn unblock_hook;

void
cow_store_set_block_hooks(cow_store_block_fn block, cow_store_unblock_fn unblock)
{
    block_hook = block;
    unblock_hook = unblock;
}

/* mdb_txn_begin for writing: waits for the writer lock, so other threads of
 * this process may run meanwhile (the hooks). */
static int
txn_begin_write(cow_store *s)
{
    void *token = block_hook ? block_hook() : NULL;
    int mrc = mdb_txn_begin(s->env, NULL, 0, &s->wtxn);
    if (unblock_hook)
        unblock_hook(token);
    return mrc;
}

static int
begin_write(cow_store *s)
{
    MDB_envinfo info;
    int mrc, rc;
    for (int tries = 0; tries < COW_STORE_MAX_GROWTHS; tries++) {
        mrc = txn_begin_write(s);
        if (mrc != MDB_MAP_RESIZED)
            break;
        if ((rc = grow_map(s, 0)) < 0)
            return rc;
    }
    if (mrc != 0) {
        s->wtxn = NULL;
        return mdb_fail(s, mrc, "starting a write transaction");
    }
    mdb_env_info(s->env, &info);
    s->wbase = info.me_last_txnid;
    if ((rc = read_state(s)) < 0 || (rc = refresh_snapshot(s)) < 0) {
        mdb_txn_abort(s->wtxn);
        s->wtxn = NULL;
    }
    return rc;
}

int
cow_store_begin(cow_store *s)
{
    int rc;
    if ((rc = enter(s)) < 0)
        return rc;
    if (s->flags & COW_STORE_READONLY)
        return set_msg(s, COW_EREADONLY, "store is readonly");
    if (s->wtxn)
        return set_msg(s, COW_EINVAL, "a transaction is already open on this store");
    if ((rc = grow_ahead(s)) < 0)
        return rc;
    return begin_write(s);
}

static int
add_op(cow_store *s, const char *name, size_t nlen, int del, const cow_val *v)
{
    pending_op *op = find_op(s, name, nlen);
    if (nlen == 0 || nlen > (size_t)mdb_env_get_maxkeysize(s->env))
        return set_msg(s, COW_EINVAL, "root names must be 1 to 511 bytes of UTF-8");
    if (op == NULL) {
        if (s->nops == s->capops) {
            size_t cap = s->capops ? s->capops * 2 : 4;
            pending_op *o = cow_realloc(s->ops, cap * sizeof *o);
            if (o == NULL)
                return COW_ENOMEM;
            s->ops = o;
            s->capops = cap;
        }
        op = &s->ops[s->nops];
        if ((op->name = cow_malloc(nlen)) == NULL)
            return COW_ENOMEM;
        memcpy(op->name, name, nlen);
        op->nlen = nlen;
        op->v = cow_val_none();
        s->nops++;
    }
    cow_val_release(&op->v);
    op->del = del;
    if (!del)
        cow_val_copy(&op->v, v);
    return COW_OK;
}

int
cow_store_put(cow_store *s, const char *name, size_t nlen, const cow_val *v)
{
    int rc;
    if ((rc = enter(s)) < 0)
        return rc;
    if (!s->wtxn)
        return set_msg(s, COW_EINVAL, "put outside a transaction");
    return add_op(s, name, nlen, 0, v);
}

int
cow_store_del(cow_store *s, const char *name, size_t nlen)
{
    cow_val cur;
    int rc;
    if ((rc = enter(s)) < 0)
        return rc;
    if (!s->wtxn)
        return set_msg(s, COW_EINVAL, "delete outside a transaction");
    if ((rc = cow_store_get(s, name, nlen, &cur)) != COW_FOUND)
        return rc;
    cow_val_release(&cur);
    rc = add_op(s, name, nlen, 1, NULL);
    return rc < 0 ? rc : COW_FOUND;
}

void
cow_store_abort(cow_store *s)
{
    if (s->wtxn && s->pid == getpid())
        mdb_txn_abort(s->wtxn);
    s->wtxn = NULL;
    clear_ops(s);
}

/* ---- segments and their refcounts --------------------------------------------- */

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
static size_t
seg_target(cow_store *s)
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
        return set_msg(s, COW_EOVERFLOW, "segment ids exhausted: compact into a new store");
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
    return mrc ? mdb_fail(s, mrc, "writing a segment record") : COW_OK;
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
        return mdb_fail(s, mrc, "reading a segment record");
    if (v->mv_size < sizeof *rec)
        return set_msg(s, COW_ECORRUPT, "corrupt segment record");
    memcpy(rec, v->mv_data, sizeof *rec);
    if (v->mv_size != sizeof *rec + (size_t)rec->nrefs * sizeof(uint32_t))
        return set_msg(s, COW_ECORRUPT, "corrupt segment record");
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
        return set_msg(s, COW_ECORRUPT, "a root or segment names a missing segment");
    if (rc < 0)
        return rc;
    if (delta < 0 && rec.refcnt == 0)
        return set_msg(s, COW_ECORRUPT, "corrupt segment record");
    rec.refcnt = (uint32_t)((int64_t)rec.refcnt + delta);
    if (rec.refcnt == 0) {
        if (rec.nrefs && (*freed = cow_malloc(rec.nrefs * sizeof(uint32_t))) == NULL)
            return COW_ENOMEM;
        if (rec.nrefs)
            memcpy(*freed, (char *)v.mv_data + sizeof rec, rec.nrefs * sizeof(uint32_t));
        *nfreed = rec.nrefs;
        if ((mrc = mdb_del(s->wtxn, s->segmeta, &k, NULL)) != 0
            || (mrc = mdb_del(s->wtxn, s->segs, &k, NULL)) != 0)
            return mdb_fail(s, mrc, "deleting a segment");
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
        return set_msg(s, COW_EOVERFLOW, "a single value over 4 GiB cannot be stored");
    if ((mrc = mdb_put(s->wtxn, s->segs, &k, &v, MDB_RESERVE | MDB_NOOVERWRITE)) != 0)
        return mdb_fail(s, mrc, "writing a segment");
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
        return mdb_fail(s, mrc, "writing a segment record");
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

static const cow_segw_sink store_sink = {sink_new_id, sink_seg_live, sink_put};

/* The segment a root value's word names, or 0. */
static uint32_t
root_segment(const cow_val *v)
{
    return cow_tag_has_word(v->tag) && cow_word_stored(v->u.w) ? cow_word_seg(v->u.w) : 0;
}

/* Replaces (or with v == NULL deletes) root `name`, moving its segment
 * reference from the old value to the new one. */
static int
set_root(cow_store *s, const char *name, size_t nlen, const cow_val *v)
{
    MDB_val k = {nlen, (void *)name}, cur;
    uint32_t old = 0;
    int rc, mrc = mdb_get(s->wtxn, s->roots, &k, &cur);
    if (mrc == 0 && cur.mv_size == sizeof(cow_val)) {
        cow_val prev;
        memcpy(&prev, cur.mv_data, sizeof prev);
        old = root_segment(&prev);
    }
    else if (mrc != 0 && mrc != MDB_NOTFOUND)
        return mdb_fail(s, mrc, "reading a root");
    if (v) {
        MDB_val data = {sizeof *v, (void *)v};
        if ((mrc = mdb_put(s->wtxn, s->roots, &k, &data, 0)) != 0)
            return mdb_fail(s, mrc, "writing a root");
        if (root_segment(v) && (rc = seg_incref(s, root_segment(v))) < 0)
            return rc;
    }
    else if (mrc == 0 && (mrc = mdb_del(s->wtxn, s->roots, &k, NULL)) != 0)
        return mdb_fail(s, mrc, "deleting a root");
    return old ? seg_decref(s, old) : COW_OK;
}

/* Flags segments [first, end) as counted in live_bytes and counts them. */
static int
count_live(cow_store *s, uint64_t first, uint64_t end)
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
static int
apply_ops(cow_store *s)
{
    cow_segw w;
    cow_val *pages = NULL;
    uint64_t first = s->state.next_seg;
    int rc = COW_OK;
    if (s->nops && (pages = cow_calloc(s->nops, sizeof *pages)) == NULL)
        return COW_ENOMEM;
    cow_segw_init(&w, s->slot, 0, &store_sink, s);
    w.target = seg_target(s);
    for (size_t i = 0; i < s->nops && w.rc == COW_OK; i++)
        if (!s->ops[i].del)
            cow_segw_value(&w, &s->ops[i].v, &pages[i]);
    /* A fresh write is all live; in bulk mode what it replaces is assumed
     * negligible (appends replace only the old tail's path). */
    if ((rc = cow_segw_finish(&w)) == COW_OK && (w.kept == 0 || s->bulk))
        rc = count_live(s, first, s->state.next_seg);
    if (rc == COW_EOVERFLOW)
        set_msg(s, rc, "cannot store containers nested more than 256 levels deep");
    else if (rc == COW_ECORRUPT)
        set_msg(s, rc, "a value read from a store failed validation (corrupt pages)");
    for (size_t i = 0; i < s->nops && rc == COW_OK; i++)
        rc = set_root(s, s->ops[i].name, s->ops[i].nlen, s->ops[i].del ? NULL : &pages[i]);
    if (rc == COW_OK)
        rc = write_state(s);
    cow_segw_free(&w);
    cow_free(pages);
    return rc;
}

static int
is_map_full(cow_store *s, int rc)
{
    return rc == COW_ESTORE && s->last_mdb == MDB_MAP_FULL;
}

/* Commits the open write transaction, growing the map and retrying when it
 * fills -- unless another writer slipped in while the lock was released for
 * the growth, which would make the transaction's reads stale. */
static int
commit_write(cow_store *s, int (*apply)(cow_store *))
{
    int rc, mrc;
    for (int tries = 0;; tries++) {
        s->last_mdb = 0;
        rc = apply(s);
        if (rc == COW_OK) {
            mrc = mdb_txn_commit(s->wtxn);
            s->wtxn = NULL;
            if (mrc == 0)
                return COW_OK;
            rc = mdb_fail(s, mrc, "committing");
        }
        else {
            mdb_txn_abort(s->wtxn);
            s->wtxn = NULL;
        }
        if (!is_map_full(s, rc) || tries == COW_STORE_MAX_GROWTHS)
            return rc;
        uint64_t base = s->wbase;
        if ((rc = grow_map(s, s->mapsize * 2)) < 0 || (rc = begin_write(s)) < 0)
            return rc;
        if (s->wbase != base) {
            cow_store_abort(s);
            return set_msg(s, COW_ECONFLICT, "the map had to grow while another process "
                                             "committed: retry the transaction");
        }
    }
}

static int maybe_compact(cow_store *s);

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

int
cow_store_commit(cow_store *s)
{
    int rc;
    if ((rc = enter(s)) < 0)
        return rc;
    s->msg[0] = '\0';
    if (!s->wtxn)
        return set_msg(s, COW_EINVAL, "no transaction is open");
    rc = commit_write(s, apply_ops);
    clear_ops(s);
    if (rc == COW_OK && s->bulk)
        drop_mapped_pages(s);
    if (rc == COW_OK)
        rc = maybe_compact(s);
    return rc;
}

/* ---- compaction ------------------------------------------------------------------ */

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

/* Rewrites every root into fresh segments (the copy_all writer shares what
 * roots share), then moves each root over: the old segments drop to zero. */
static int
apply_compaction(cow_store *s)
{
    root_list l = {0};
    cow_segw w;
    cow_val *pages = NULL, *heap = NULL;
    uint64_t first = s->state.next_seg;
    int rc = cow_store_names(s, collect_name, &l);
    cow_segw_init(&w, s->slot, 1, &store_sink, s);
    w.target = seg_target(s);
    if (rc == COW_OK && l.n && ((pages = cow_calloc(l.n, sizeof *pages)) == NULL
                                || (heap = cow_calloc(l.n, sizeof *heap)) == NULL))
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
        rc = set_root(s, l.names[i], l.lens[i], &pages[i]);
    if (rc == COW_OK)
        rc = count_live(s, first, s->state.next_seg);
    if (rc == COW_OK) {
        s->state.live_bytes = s->state.seg_bytes;    /* only the rewritten ones remain */
        rc = write_state(s);
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
    cow_segw_free(&w);
    return rc;
}

int
cow_store_compact(cow_store *s)
{
    int rc;
    if ((rc = enter(s)) < 0)
        return rc;
    if (s->wtxn)
        return set_msg(s, COW_EINVAL, "compact() inside a transaction");
    if ((rc = cow_store_begin(s)) < 0)
        return rc;
    return commit_write(s, apply_compaction);
}

static int
maybe_compact(cow_store *s)
{
    double limit = COW_STORE_GARBAGE_RATIO * (double)s->state.live_bytes
                   + (double)COW_STORE_GARBAGE_SLACK;
    if (s->bulk || (double)s->state.seg_bytes <= limit)
        return COW_OK;
    return cow_store_compact(s);
}

void
cow_store_set_bulk(cow_store *s, int on)
{
    s->bulk = on != 0;
}

/* ---- introspection --------------------------------------------------------------- */

/* Pages on LMDB's freelist (database 0): each record is an ID list whose
 * first word counts the page numbers after it. */
static int
count_free_pages(cow_store *s, uint64_t *out)
{
    MDB_cursor *c;
    MDB_val k, v;
    int mrc;
    *out = 0;
    if ((mrc = mdb_cursor_open(s->cur, 0, &c)) != 0)
        return mdb_fail(s, mrc, "reading the freelist");
    while ((mrc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) == 0) {
        size_t n;
        if (v.mv_size < sizeof n)
            continue;
        memcpy(&n, v.mv_data, sizeof n);
        if (n < v.mv_size / sizeof n)       /* a hostile count is not believed */
            *out += n;
    }
    mdb_cursor_close(c);
    return mrc == MDB_NOTFOUND ? COW_OK : mdb_fail(s, mrc, "reading the freelist");
}

static int
db_stats(cow_store *s, MDB_dbi dbi, cow_store_db_stats *out)
{
    MDB_stat st;
    int mrc = mdb_stat(s->cur, dbi, &st);
    if (mrc != 0)
        return mdb_fail(s, mrc, "reading statistics");
    out->entries = st.ms_entries;
    out->depth = st.ms_depth;
    out->branch_pages = st.ms_branch_pages;
    out->leaf_pages = st.ms_leaf_pages;
    out->overflow_pages = st.ms_overflow_pages;
    return COW_OK;
}

int
cow_store_stats_get(cow_store *s, cow_store_stats *out)
{
    MDB_envinfo info;
    MDB_stat st;
    MDB_val k = {5, "state"}, v;
    MDB_dbi dbis[COW_STORE_NDBS];
    store_state state = {0};
    int rc;
    if ((rc = enter(s)) < 0 || (!s->wtxn && (rc = refresh_snapshot(s)) < 0))
        return rc;
    memset(out, 0, sizeof *out);
    dbis[COW_STORE_DB_META] = s->meta;
    dbis[COW_STORE_DB_ROOTS] = s->roots;
    dbis[COW_STORE_DB_SEGS] = s->segs;
    dbis[COW_STORE_DB_SEGMETA] = s->segmeta;
    for (int i = 0; i < COW_STORE_NDBS; i++)
        if ((rc = db_stats(s, dbis[i], &out->dbs[i])) < 0)
            return rc;
    if ((rc = count_free_pages(s, &out->free_pages)) < 0)
        return rc;
    mdb_env_info(s->env, &info);
    mdb_env_stat(s->env, &st);
    if (mdb_get(s->cur, s->meta, &k, &v) == 0 && v.mv_size == sizeof state)
        memcpy(&state, v.mv_data, sizeof state);
    out->roots = out->dbs[COW_STORE_DB_ROOTS].entries;
    out->segments = state.nsegs;
    out->segment_bytes = state.seg_bytes;
    out->live_bytes = state.live_bytes;
    out->page_size = st.ms_psize;
    out->file_bytes = (uint64_t)(info.me_last_pgno + 1) * st.ms_psize;
    out->map_bytes = info.me_mapsize;
    out->last_txn = info.me_last_txnid;
    out->readers_used = info.me_numreaders;
    out->readers_max = info.me_maxreaders;
    out->pins = (uint64_t)s->ref.pins;
    out->format_version = COW_STORE_FORMAT;
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
    return cow_tag_has_word(v->tag) && cow_word_stored(v->u.w)
               ? (uint64_t)(v->u.w & ~(COW_REF_SLOT_MASK << COW_REF_SLOT_SHIFT)) : 0;
}
