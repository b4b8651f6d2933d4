/* An LMDB-backed store of named roots (see store.c for the on-disk layout). */
#ifndef COWSTORE_STORE_H
#define COWSTORE_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "cowstore/value.h"

typedef struct cow_store cow_store;

/* cow_store_open flags. */
#define COW_STORE_READONLY 0x1  /* refuse writes; open an existing store only */
#define COW_STORE_NOSYNC   0x2  /* durable=False: commits skip fsync */
#define COW_STORE_DIR      0x4  /* path is a directory (LMDB's data.mdb inside) */

/* Initial map size when the caller names none: address space only (the
 * file grows with its data), doubled whenever a commit finds it full. */
#define COW_STORE_DEFAULT_MAP ((size_t)64 << 30)
/* Reader slots: one per open snapshot per process (LMDB's default is 126). */
#define COW_STORE_MAX_READERS 4096

/* Opens (creating unless READONLY) the store at path.  On failure *out is
 * NULL and the error is returned; cow_store_errmsg() then describes it. */
int cow_store_open(const char *path, unsigned flags, size_t map_size, cow_store **out);
/* A process opens a file once: opening a store already open here returns
 * the same handle with one more opener (LMDB forbids two environments on one
 * file in a process).  Closing drops an opener; the environment closes when
 * no opener remains and no value read from it is alive (pins reach zero). */
void cow_store_close(cow_store *s);
/* After fork, in the child: reopen the environment (LMDB handles must not
 * cross fork) without touching the parent's; values read before keep
 * resolving.  Called by every entry point when the pid changed. */
int cow_store_after_fork(cow_store *s);
int cow_store_after_fork_all(void);     /* every store open in this process */

/* The message for the calling thread's last store error (LMDB's own text
 * for LMDB errors); other threads' errors never overwrite it. */
const char *cow_store_errmsg(void);

/* Reads root `name`: *out is a new reference to it (a stored value, pinned),
 * COW_FOUND or COW_NOT_FOUND. */
int cow_store_get(cow_store *s, const char *name, size_t nlen, cow_val *out);
/* Calls visit(ctx, name, len) for every root name, in byte order. */
int cow_store_names(cow_store *s, int (*visit)(void *ctx, const char *name, size_t len),
                    void *ctx);

/* Write transactions belong to the thread that begins them.  begin waits
 * for the handle's writer gate (other threads of this process) and LMDB's
 * writer lock (other processes), both outside the block hooks, and
 * refreshes the snapshot that get() reads, so reads inside see the latest
 * committed state.  put/del/commit/abort act on the calling thread's
 * transaction only (EINVAL without one); other threads' get() and names()
 * never see its pending operations.  put/del apply at commit, in order,
 * every new root reference counted before an old one is dropped; commit
 * writes new nodes only, frees what became unreachable, and syncs unless
 * NOSYNC (its fsync outside the hooks).  On any error the store is as
 * before begin, and the transaction is over.
 *
 * Threads: the core expects one caller at a time per process (the
 * binding's GIL), except that while one thread is inside the block hooks
 * others may call in. */
int cow_store_begin(cow_store *s);
int cow_store_put(cow_store *s, const char *name, size_t nlen, const cow_val *v);
int cow_store_del(cow_store *s, const char *name, size_t nlen);  /* FOUND / NOT_FOUND */
int cow_store_commit(cow_store *s);
/* commit, then done(ctx, name, len, value) for every put, value borrowed:
 * the stored twin of what was put (a container's root in the new pages),
 * which a caller may adopt in place of its heap nodes.  A put that another
 * process replaced (and freed) right after this commit is not reported.
 * An error from done() is returned after the commit, which stands. */
typedef int (*cow_store_put_fn)(void *ctx, const char *name, size_t nlen, const cow_val *value);
int cow_store_commit_each(cow_store *s, cow_store_put_fn done, void *ctx);
void cow_store_abort(cow_store *s);             /* no-op without a transaction */
int cow_store_in_txn(const cow_store *s);       /* the calling thread has one */

/* Hooks around waits on other threads or processes and around LMDB calls
 * that may block (the binding releases the GIL there); the blocked thread
 * touches nothing another thread may use meanwhile. */
typedef void *(*cow_store_block_fn)(void);
typedef void (*cow_store_unblock_fn)(void *token);
void cow_store_set_block_hooks(cow_store_block_fn block, cow_store_unblock_fn unblock);

/* Rewrites every root's reachable nodes into fresh segments and frees the
 * old ones (also run by commit once garbage outgrows live data). */
int cow_store_compact(cow_store *s);

/* Bulk loading (on != 0): commits never sweep or compact and count all
 * they write as live, and unmap the file pages this process touched (the
 * page cache keeps them), so the resident set does not grow with the file.
 * Meant for appending large data in many commits, each replacing only a
 * path's worth of old nodes; without it the growth would look like garbage
 * and trigger compaction after compaction, each rewriting the whole store
 * in one transaction. */
void cow_store_set_bulk(cow_store *s, int on);

/* The commit of the caller's open write transaction sweeps, however many
 * segments that reads: for a caller that knows it lets go of much, e.g.
 * an import replacing a root, whose old dataset no estimate shows as
 * garbage (live bytes only grow between sweeps).  COW_EINVAL outside a
 * transaction of the caller's. */
int cow_store_sweep_at_commit(cow_store *s);

/* The store's LMDB databases, in stats order (store.c describes each). */
enum { COW_STORE_DB_META, COW_STORE_DB_ROOTS, COW_STORE_DB_SEGS, COW_STORE_NDBS };

/* One database's B-tree, as LMDB's mdb_stat reports it. */
typedef struct cow_store_db_stats {
    uint64_t entries;
    uint64_t depth;
    uint64_t branch_pages;
    uint64_t leaf_pages;
    uint64_t overflow_pages;
} cow_store_db_stats;

typedef struct cow_store_stats {
    uint64_t roots;
    uint64_t segments;
    uint64_t segment_bytes;      /* bytes in segments (garbage not yet swept too) */
    uint64_t live_bytes;         /* reachable at the last sweep, plus additions since */
    uint64_t file_bytes;         /* pages LMDB uses (last page + 1) * page size */
    uint64_t map_bytes;          /* current map size */
    uint64_t page_size;
    uint64_t last_txn;
    uint64_t readers_used;
    uint64_t readers_max;
    uint64_t pins;               /* values read from this store alive here */
    uint64_t free_pages;         /* on LMDB's freelist: reused by later commits */
    cow_store_db_stats dbs[COW_STORE_NDBS];
    uint32_t format_version;
} cow_store_stats;
int cow_store_stats_get(cow_store *s, cow_store_stats *out);

/* The env slot values of this store carry (for tests and pickling checks). */
unsigned cow_store_slot(const cow_store *s);
/* The segment id and offset a stored value's word names (0 for others);
 * for a member of a packed batch, mixed with its body offset (pack.h P6). */
uint64_t cow_store_word_id(const cow_val *v);

#endif
