/* What the store's parts share (private to csrc/core/store*.c).
 *
 *   store.c          open, close, fork, error messages (and the design essay)
 *   store_map.c      the mapping and the read snapshots values pin
 *   store_roots.c    reading roots, and the writer's pending operations
 *   store_txn.c      write transactions: the writer gate, begin, commit
 *   store_segs.c     segment records and their refcounts
 *   store_compact.c  compaction and bulk mode
 *   store_stats.c    introspection
 *
 * Threads.  The core runs one caller at a time per process (the binding
 * holds the GIL around every call) except where it calls the block hooks:
 * waiting for the writer gate, LMDB's begin of a write transaction and its
 * commit.  Fields another thread may use meanwhile are never written by
 * the blocked thread while it waits; `busy` counts such threads so that a
 * close in another thread defers freeing the handle (ST5).
 */
#ifndef COWSTORE_STORE_IMPL_H
#define COWSTORE_STORE_IMPL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <lmdb.h>

#include "cowstore/ref.h"
#include "cowstore/segment.h"
#include "cowstore/store.h"
#include "cowstore/value.h"

#define COW_STORE_MAGIC UINT64_C(0x00524f5453574f43)   /* "COWSTOR\0" */
/* 6: a blob's header is 8 bytes (value.h; 24 before, with room for a
 * cached hash); 5: a hash index leaf is its entry number alone (map.c; before, 8 bytes
 * with the hash), and vector leaves may be packed (vec.c, compact.h); 4: packed values may name a body inside a batch node
 * (pack.h P6: an offset in bytes a format-3 reader ignores); 3: packed
 * containers (pack.h), a node kind and value tag format 2 lacks; 2:
 * segments carry their refs in a trailer and are freed by sweeps (no
 * segmeta database); 1 counted references per segment.  Files of formats
 * 1-5 are refused with a message that says how to convert them: every str
 * past 14 bytes is a blob, and every map past 8 entries has index nodes,
 * of the old layouts. */
#define COW_STORE_FORMAT 6u
#define COW_STORE_FORMAT_OLDEST_READ 6u
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
/* Tries of adopting the map size another process set, and of a whole
 * commit after doubling the map when the disk's free space is unknown
 * (else that bounds the growth: store_txn.c map_may_grow). */
#define COW_STORE_MAX_GROWTHS 8
/* A commit that fails with EIO while the filesystem has less than this
 * free (a few of the largest writes a commit makes at once) reports
 * ENOSPC: LMDB turns the short write of a full disk into EIO. */
#define COW_STORE_DISK_FULL_BYTES ((uint64_t)1 << 20)
/* A commit that let go of a segment sweeps right away if marking what
 * stays reachable reads at most this many segments (~1 MiB): cheaper than
 * a few B-tree page writes, and small stores give space back at once. */
#define COW_STORE_EAGER_SWEEP 256
/* Room for one error message (the store's path may be in it). */
#define COW_STORE_MSG_MAX 512

/* A put (del == 0) or delete of one root, applied at commit.  At most one
 * per name: a later operation on the name replaces the earlier one. */
typedef struct pending_op {
    char *name;
    size_t nlen;
    int del;            /* 1: delete, 0: put v */
    cow_val v;          /* owned */
    cow_val page;       /* v in page form, once the commit wrote it (not owned) */
    cow_val moved;      /* page as a compaction after the commit rewrote it:
                         * page becomes it once that compaction commits */
} pending_op;

/* The state record (store.c describes its bytes). */
typedef struct store_state {
    uint64_t next_seg;
    uint64_t seg_bytes;
    uint64_t live_bytes;        /* reachable at the last sweep, + additions since */
    uint64_t nsegs;
    uint64_t compact_bytes;     /* what a compaction would keep (an estimate) */
} store_state;

/* What a sweep found (store_sweep). */
typedef struct sweep_result {
    int ran;                /* 0: skipped (over budget, or pins unknown) */
    uint64_t kept;          /* bytes of the segments that stay */
    uint64_t reached;       /* of those, reachable from the roots */
} sweep_result;

struct cow_store {
    struct cow_store *next;     /* every store open in this process (ST4) */
    dev_t dev;
    ino_t ino;
    int opens;                  /* cow_store_open calls not yet closed */
    MDB_env *env;
    MDB_dbi meta, roots, segs;
    cow_ref_env ref;
    unsigned slot;
    char *path;
    unsigned flags;
    pid_t pid;
    MDB_txn *cur;           /* newest read snapshot (ST2) */
    MDB_txn **old;
    size_t nold, capold;
    /* The writer: the thread holding `gate` owns everything below up to
     * `state` (ST5). */
    pthread_mutex_t gate;
    pthread_t writer;
    int has_writer;
    MDB_txn *wtxn;          /* open write transaction */
    uint64_t wbase;         /* last txn id when the write began */
    pending_op *ops;
    size_t nops, capops;
    store_state state;      /* valid inside a write transaction */
    int dropped;            /* this transaction moved a root off a segment */
    int sweep_all;          /* ...and its caller knows that freed much
                             * (cow_store_sweep_at_commit) */
    uint64_t deleted_bytes; /* what the roots it deleted reached (store_apply_roots) */
    sweep_result swept;     /* the sweep of this transaction, if any */
    int deleted_segs;       /* ...and whether it deleted segments */
    uint64_t clean_commit;  /* this process's last commit if it deleted no
                             * segment (0: none): the snapshot it made holds
                             * every segment the one before it held */
    /* The puts of the commit just made, kept while the compaction that may
     * follow it runs (their pages follow the roots it moves), until they
     * are reported (cow_store_commit_each). */
    pending_op *done;
    size_t ndone;
    /* The nodes the transaction's commit wrote (the writer's memo: address
     * -> page word); the heap ones become stored twins (twin.h) once it
     * holds. */
    cow_u64map written;
    int busy;               /* threads blocked inside a call on this store */
    size_t mapsize;         /* current map size (kept for reopening after fork) */
    int closing;
    int bulk;               /* cow_store_set_bulk: count new segments live, never sweep
                             * or compact */
};

/* A change of one root at commit: applied by store_apply_roots. */
typedef struct root_change {
    const char *name;
    size_t nlen;
    const cow_val *v;       /* the new value in page form; NULL deletes */
} root_change;

/* The segment a value's word names, or 0 (not a stored reference). */
static inline uint32_t
store_val_segment(const cow_val *v)
{
    return cow_tag_has_word(v->tag) && cow_word_stored(v->u.w) ? cow_word_seg(v->u.w) : 0;
}

/* A value read out of s's pages, in heap form: its word names s's slot. */
static inline void
store_val_to_heap(const cow_store *s, cow_val *v)
{
    if (cow_val_stored(v))
        v->u.w |= (cow_word)s->slot << COW_REF_SLOT_SHIFT;
}

/* store.c */
int store_mdb_fail(cow_store *s, int mrc, const char *what);
int store_msg(int rc, const char *text);
int store_last_mdb(void);
int store_enter(cow_store *s);
void store_close_if_unused(cow_store *s);

/* store_map.c */
int store_file_stat(cow_store *s, struct stat *st);
int store_grow_map(cow_store *s, size_t size);
int store_refresh_snapshot(cow_store *s);
void store_drop_old_snapshots(cow_store *s);
void store_on_unpinned(cow_ref_env *env);
int store_lookup_segment(void *ctx, uint32_t seg, size_t *off, size_t *len);

/* store_roots.c */
int store_root_record(const MDB_val *v, cow_val *out);
void store_clear_ops(cow_store *s);
void store_free_ops(pending_op *ops, size_t n);

/* store_txn.c */
int store_owns_txn(const cow_store *s);
void store_gate_init(cow_store *s);
int store_gate_acquire(cow_store *s);
void store_gate_release(cow_store *s);
int store_grow_ahead(cow_store *s);
int store_begin_write(cow_store *s);
int store_commit_write(cow_store *s, int (*apply)(cow_store *));
int store_write_state(cow_store *s);

/* store_segs.c */
extern const cow_segw_sink store_sink;
void store_segw_init(cow_store *s, cow_segw *w, int copy_all);
int store_seg_trailer(const char *seg, size_t size, size_t *node_len, uint32_t *nrefs);
int store_apply_roots(cow_store *s, const root_change *changes, size_t n);
int store_sweep(cow_store *s, size_t budget, sweep_result *out);

/* store_compact.c */
int store_account_commit(cow_store *s, uint64_t written, int fresh);
int store_compact_locked(cow_store *s);
int store_needs_compaction(const cow_store *s);

#endif
