/* Persistent vector: a 32-way bit-partitioned trie with a tail (see vec.c). */
#ifndef COWSTORE_VEC_H
#define COWSTORE_VEC_H

#include <stddef.h>
#include <stdint.h>

#include "cowstore/ref.h"
#include "cowstore/value.h"

/* Fan-out of every trie node: 5 index bits per level. */
#define COW_VEC_BITS 5
#define COW_VEC_WIDTH (1u << COW_VEC_BITS)
#define COW_VEC_MASK (COW_VEC_WIDTH - 1u)

typedef struct cow_vnode cow_vnode;

/* The shape of a vector, embedded by value in cow_vec and cow_map (whose
 * entry log is a vector): copying it means retaining root and tail. */
typedef struct cow_vecbody {
    size_t len;
    uint32_t shift;     /* index bits below the root: COW_VEC_BITS * (levels - 1) */
    cow_word root;      /* full leaves only; 0 while len <= COW_VEC_WIDTH */
    cow_word tail;      /* last 1..32 values; 0 when len == 0 */
} cow_vecbody;

/* A refcounted vector (list, frozen list or tuple payload). */
typedef struct cow_vec {
    uint32_t refcnt;
    uint32_t ident;         /* identity as the user sees it: kept by path
                             * copies (cow_vec_own), new for each new vec */
    cow_vecbody b;
} cow_vec;

/* Body operations: the caller owns the body (it is not shared); nodes are
 * shared between bodies and path-copied on write when their refcnt > 1. */
void cow_vb_init(cow_vecbody *b);
void cow_vb_clear(cow_vecbody *b);
void cow_vb_dup(cow_vecbody *dst, const cow_vecbody *src);
/* Value i < len, borrowed by copy (no reference taken; valid while the
 * body holds it): a packed leaf has no cow_val to point to.  A stored value's
 * word comes exported (ref.h), valid anywhere. */
cow_val cow_vb_get(const cow_vecbody *b, size_t i);
/* Values i and i + 1 (i even, i + 1 < len: one leaf holds both) by one walk,
 * into out[0] and out[1]: a map entry's key and value (borrowed, as above). */
void cow_vb_get_pair(const cow_vecbody *b, size_t i, cow_val out[2]);
/* The fast read of a map entry by a str probe [s, s + n): value i + 1 (i
 * even) into *val when value i is that str (COW_FOUND), COW_NOT_FOUND when
 * it is another value, COW_ASK_GENERAL when cow_vb_get_pair and
 * cow_val_equal must answer: a stored node on the path, or a key item kept
 * whole (raw).  val may be NULL: then only the key is compared.  It reads
 * heap nodes only, so it records no error. */
int cow_vb_heap_value_of_str(const cow_vecbody *b, size_t i, const char *s, size_t n, cow_val *val);
/* As cow_vb_heap_value_of_str for an int probe x: COW_FOUND when value i is
 * the int x, COW_NOT_FOUND when it is another int, COW_ASK_GENERAL for a
 * key of any other kind (a bool or float may equal x) or a stored node. */
int cow_vb_heap_value_of_int(const cow_vecbody *b, size_t i, int64_t x, cow_val *val);
/* The fast scan of a small map's log, all in one heap leaf (at most
 * COW_VEC_WIDTH values), for probe: an int, or a str (inline or a view).
 * COW_FOUND with the key's index in *i and the value after it in *val
 * (unless val is NULL); COW_NOT_FOUND; COW_ASK_GENERAL for a longer or
 * stored log, or when a key of another kind might equal the probe (a bool,
 * float or Decimal beside an int probe, an enum beside a str one). */
int cow_vb_heap_scan_keys(const cow_vecbody *b, const cow_val *probe, size_t *i, cow_val *val);
/* The fast overwrite of a map entry's value: when value i (i even) is the
 * str [s, s + n) and every node down to its packed leaf is an unshared
 * heap node, value i + 1 is replaced by val in place when val's item fits
 * the old one's bytes (COW_FOUND: val stolen); COW_NOT_FOUND when value i
 * is another value; COW_ASK_GENERAL when cow_vb_set must write it (a
 * shared or stored node on the way, a plain leaf, a raw key item, a value
 * that does not fit), val untouched. */
int cow_vb_heap_set_after_str(cow_vecbody *b, size_t i, const char *s, size_t n, cow_val val);
int cow_vb_set(cow_vecbody *b, size_t i, cow_val v);         /* steals v */
int cow_vb_push(cow_vecbody *b, cow_val v);                  /* steals v */
int cow_vb_pop(cow_vecbody *b, cow_val *out);                /* new reference in *out */
int cow_vb_same(const cow_vecbody *a, const cow_vecbody *b); /* same nodes: equal */
/* Where value i < len lies in its leaf, NULL when the leaf is packed: for
 * tests that damage stored bytes in place (readers use cow_vb_get). */
const cow_val *cow_vb_slot(const cow_vecbody *b, size_t i);
/* Fills an empty body with vals[0..n) (stolen on every path) in one
 * allocation when they fit one leaf.  COW_OK or COW_ENOMEM (body empty). */
int cow_vb_from(cow_vecbody *b, cow_val *vals, size_t n);
/* The values of a full tail that is on the heap and not shared, to be
 * replaced in place by equal ones (pack.h batches); else NULL. */
cow_val *cow_vb_full_tail(cow_vecbody *b);
/* Gives an unshared tail's unused slots back (a vector built to its final
 * size keeps no spare capacity); a shared tail is left alone. */
void cow_vb_trim(cow_vecbody *b);
/* Appends src's values [from, to) to b (another body), a reference each:
 * whole leaves shared where the two line up, joined a leaf at a time where
 * they do not.  COW_ENOMEM or COW_ECORRUPT leave b valid, holding a prefix
 * of the range. */
int cow_vb_append_range(cow_vecbody *b, const cow_vecbody *src, size_t from, size_t to);
/* Owns the leaves holding indices [from, to) and the nodes above them,
 * copying shared ones, without changing a value: on error the body reads as
 * before.  Afterwards cow_vb_set in that range cannot fail, nor cow_vb_pop
 * while to == len and it removes index from or one above it.
 * Lets a caller do its fallible work before an update it cannot undo. */
int cow_vb_own(cow_vecbody *b, size_t from, size_t to);

/* Sequential reader: amortised O(1) per step. */
typedef struct cow_vec_iter {
    const cow_vecbody *b;
    size_t i;
    const cow_val *leaf;    /* current leaf values */
    size_t leaf_base;       /* index of leaf[0] */
    size_t leaf_count;      /* values leaf holds (a stored leaf may hold fewer
                             * than its vector's length claims) */
    size_t fast_end;        /* below it, the current leaf's values need no
                             * check: a heap leaf's, or a packed leaf's
                             * (checked when decoded), within the length */
    int leaf_stored;        /* leaf is in pages: check each value handed out */
    int leaf_packed;        /* values come from unpacked (no pointer to it is
                             * kept, so an iterator may be moved) */
    cow_val unpacked[COW_VEC_WIDTH];    /* a packed leaf's values, decoded once */
} cow_vec_iter;
void cow_vec_iter_init(cow_vec_iter *it, const cow_vecbody *b, size_t start);
/* cow_vec_iter_next past the fast window: a new leaf, a stored one, or the
 * end. */
const cow_val *cow_vec_iter_step(cow_vec_iter *it);
/* NULL at end; the value stays valid until the iterator leaves its leaf of
 * 32 (an entry's key and value, at 2i and 2i + 1, share one).  Inline: a
 * step inside a heap or packed leaf is an index and a test. */
static inline const cow_val *
cow_vec_iter_next(cow_vec_iter *it)
{
    size_t i = it->i;
    if (i < it->fast_end) {
        it->i = i + 1;
        return it->leaf_packed ? &it->unpacked[i - it->leaf_base] : &it->leaf[i - it->leaf_base];
    }
    return cow_vec_iter_step(it);
}

/* Calls visit(ctx, start) for the first index of every 32-value block that
 * may differ between a and b: blocks held in different nodes, and every block
 * reaching past the shorter trie (shared subtrees are skipped).  Cost
 * O(changed blocks * log n). */
typedef int (*cow_vec_visit)(void *ctx, size_t index);
int cow_vb_diff_blocks(const cow_vecbody *a, const cow_vecbody *b,
                       cow_vec_visit visit, void *ctx);

cow_vec *cow_vec_new(void);
void cow_vec_retain(cow_vec *v);
void cow_vec_release(cow_vec *v);
/* A new vector with a new identity sharing every node of v (O(1)). */
cow_vec *cow_vec_clone(const cow_vec *v);
/* Makes the vector *w names exclusively owned and on the heap (copies the
 * header if shared or stored, keeping its identity). */
int cow_vec_own(cow_word *w);
size_t cow_vec_len(const cow_vec *v);

/* Deepest trie: 64-bit indices at 5 bits per level, so at most 12 inner
 * levels above the leaves (shift 60 covers bits 60..64). */
#define COW_VEC_MAX_SHIFT 60
/* 1 when a stored body's len and shift agree (VEC4), so walks of it end at
 * leaves; checked before a stored vector or map header is used. */
int cow_vb_stored_ok(const cow_vecbody *b);

/* Debug validator: checks invariants VEC1..VEC4 and VEC7; returns COW_OK or COW_EINVAL. */
int cow_vec_check(const cow_vecbody *b);
/* Number of live vector nodes in this process (for leak tests). */
long cow_vec_live_nodes(void);

#endif
