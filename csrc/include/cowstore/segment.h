/* Writing nodes into segments: the serializer of a commit (see segment.c). */
#ifndef COWSTORE_SEGMENT_H
#define COWSTORE_SEGMENT_H

#include <stddef.h>
#include <stdint.h>

#include "cowstore/ref.h"
#include "cowstore/u64map.h"
#include "cowstore/value.h"
#include "cowstore/vec.h"

/* A segment is closed before it would pass the writer's target (a node
 * never spans two segments; a bigger node gets a segment of its own).  This
 * default suits tests; the store uses one LMDB page's worth (store.c). */
#define COW_SEG_TARGET ((size_t)4000)
/* Most child words one node holds: 32 kids (vector inner node, hash node)
 * or values, or a map header's root, tail and index. */
#define COW_SEGW_MAX_KIDS 32
/* The writer recurses (children first), ~6 frames of under 1 KiB per nested
 * container, up to 13 more inside a large one.  Containers nested deeper
 * than COW_SEGW_MAX_NESTING cannot be stored (COW_EOVERFLOW), which keeps the
 * stack under ~5 MiB; COW_SEGW_MAX_DEPTH bounds the node chain too, so
 * corrupt pages describing a cycle get an error, not a stack overflow. */
#define COW_SEGW_MAX_NESTING 256
#define COW_SEGW_MAX_DEPTH (COW_SEGW_MAX_NESTING * 20)

/* Where finished segments go (store.c writes them to LMDB; tests keep them
 * in memory). */
typedef struct cow_segw_sink {
    int (*new_id)(void *ctx, uint32_t *seg);
    /* 1 if segment seg of the target still exists (a value read before a
     * commit freed its segment must be copied, not referenced), 0 if not,
     * or an error.  May be NULL: every segment of the target is live. */
    int (*seg_live)(void *ctx, uint32_t seg);
    /* Stores segment `seg`; refs are the other segments its nodes name. */
    int (*put)(void *ctx, uint32_t seg, const char *bytes, size_t len,
               const uint32_t *refs, size_t nrefs);
} cow_segw_sink;

/* Segments a writer keeps open at once: a node goes to the fullest one it
 * fits (best fit), so a segment is closed full rather than as soon as one
 * node does not fit it. */
#define COW_SEGW_OPEN 4

/* A segment being filled. */
typedef struct cow_segw_open {
    char *buf;              /* its bytes */
    size_t len, cap;
    uint32_t seg;           /* its id */
    cow_u64map refs;        /* segment id + 1 -> 1: what its nodes name elsewhere */
} cow_segw_open;

typedef struct cow_segw {
    unsigned slot;          /* the target store's env slot */
    int copy_all;           /* 1: rewrite nodes already in the target too (compaction) */
    const cow_segw_sink *sink;
    void *ctx;
    cow_segw_open open[COW_SEGW_OPEN];
    unsigned nopen;         /* open[0..nopen) are open */
    cow_u64map memo;        /* node address -> page word: each node written once
                             * (a store makes the heap ones twins once its
                             * commit holds) */
    cow_u64map live;        /* segment id + 1 -> 1 live / 2 freed, as seg_live said */
    int twins;              /* keep the stored twins (twin.h) of heap nodes */
    uint64_t bytes;         /* bytes of segments put so far */
    uint64_t segments;      /* segments put so far */
    uint64_t nodes;         /* nodes emitted so far */
    uint64_t kept;          /* words kept because the target held their node
                             * (stored words and twins) */
    size_t target;          /* segment size to close at (COW_SEG_TARGET unless set) */
    size_t ref_cost;        /* bytes each distinct segment named adds to the
                             * open one (the store's trailer); counted against
                             * target.  0 unless set. */
    unsigned depth;         /* current node recursion depth (COW_SEGW_MAX_DEPTH) */
    unsigned nesting;       /* current container nesting (COW_SEGW_MAX_NESTING) */
    int rc;                 /* first error; every later call is a no-op */
    int outer_error;        /* the enclosing read scope's error (ref.h) */
} cow_segw;

/* init opens a read scope (ref.h) that free closes: an error met reading
 * the source (poison) becomes w->rc, never the caller's scope's error.
 * Every init is paired with one free, innermost first. */
void cow_segw_init(cow_segw *w, unsigned slot, int copy_all,
                   const cow_segw_sink *sink, void *ctx);
void cow_segw_free(cow_segw *w);
/* *dst = src with every word in page form, writing whatever it reaches that
 * the target does not hold yet.  Check w->rc afterwards. */
void cow_segw_value(cow_segw *w, const cow_val *src, cow_val *dst);
/* Puts the open segment (if any).  Returns w->rc. */
int cow_segw_finish(cow_segw *w);

/* The bytes and nodes the n values would take written together into an
 * empty store: shared nodes count once, nothing is written.  What `du`
 * reports as a subtree's size.  COW_OK or an error (COW_ECORRUPT for a
 * stored value failing validation). */
int cow_segw_measure(const cow_val *vals, size_t n, uint64_t *bytes, uint64_t *nodes);

/* ---- for the modules that own node layouts ------------------------------- */

/* The page word for the node *wp names (0 stays 0). */
cow_word cow_segw_ref(cow_segw *w, const cow_word *wp, int kind);
/* Appends a finished node made of head (hsize bytes) then body (bsize bytes,
 * may be NULL), padded to 8 bytes; kids are the page words it holds (at
 * most COW_SEGW_MAX_KIDS + 3), recorded as references of its segment.
 * Returns the node's page word, or 0 with w->rc set. */
cow_word cow_segw_emit(cow_segw *w, const void *head, size_t hsize, const void *body,
                       size_t bsize, const cow_word *kids, size_t nkids);

/* Each kind's node writer: the table in cowstore/node.h. */
/* A vector body (of a vector or a map's log) with page words. */
void cow_vb_write(cow_segw *w, const cow_vecbody *src, cow_vecbody *dst);

#endif
