/* Child words: one 8-byte slot that names a node on the heap or in a store.
 *
 * Every pointer from a node or value to another node (vector and index
 * children, a vector body's root and tail, a map's index, a value's blob,
 * vector or map) is a cow_word.  Heap nodes are at least 8-byte aligned, so
 * bit 0 tells the two kinds apart:
 *
 *   bit 0 = 0   a heap pointer (0 is NULL)
 *   bit 0 = 1   a stored reference:
 *
 *    63 ................ 32 | 31 ............. 8 | 7 ....... 1 | 0
 *   |      segment id       | offset / 8 in seg  | env slot    | 1 |
 *
 * A segment is one LMDB value holding many packed nodes (store.c).  Inside
 * pages the slot bits are 0: "the store these pages belong to", found from
 * the address of the word itself (the mapping that contains it).  A word
 * copied out of pages into the heap gets the slot filled in (cow_word_share),
 * so a heap word always names its store without context.  Offsets are from
 * the segment start and segments never move, so a word stays valid when the
 * map is remapped at another address (only the env's base changes).
 *
 * Stored nodes are never written: their refcnt field holds COW_REFCNT_STORED,
 * which is never 1, so every write path-copies them to the heap first, as it
 * does a shared heap node.  Retaining or releasing a stored word counts a pin
 * on its env instead: the store keeps every read transaction it opened alive
 * while pins remain, so the pages under a pinned word are never reused.
 *
 * Reading stored bytes is bounds-checked: cow_ref_resolve returns a node only
 * if its header and whole body lie inside its segment and the header is sane;
 * otherwise it returns an empty poison node of the requested kind and records
 * the error in the calling thread's read scope (below): COW_ECORRUPT, or
 * COW_ENOMEM when the segment cache could not grow.  Walks therefore never
 * fault on a hostile file, and go on over poison to their natural end.
 *
 * Read scopes.  A walk cannot return the error of every node it resolves
 * (cow_vb_get returns a value, cow_val_equal a truth, an iterator NULL at
 * its end), so resolution records the first error in a slot, and whoever
 * must report the errors of a stretch of reads brackets it with a scope:
 *
 *     int outer = cow_ref_scope_enter();      saves the slot and clears it
 *     ... reads: cow_map_get, cow_vec_iter_next, cow_val_equal ...
 *     int err = cow_ref_scope_leave(outer);   the first error met in
 *                                             between; the slot is outer's again
 *
 * The slot is _Thread_local, so an error is only ever seen by the thread
 * whose read met it, and scopes nest: an inner scope reports its own errors
 * only, and an error of the outer scope survives the inner one.  The scopes
 * that exist: one per call of a binding entry point (csrc/python/cowpy.h,
 * COWPY_ENTRY), so the Python call that met an error is the one that raises
 * it; and one per segment writer (cow_segw_init .. cow_segw_free), whose
 * reads' first error becomes the write's result.  Nothing else keeps error
 * state: no later call, in this thread or another, can see this error.
 */
#ifndef COWSTORE_REF_H
#define COWSTORE_REF_H

#include <stddef.h>
#include <stdint.h>

#include "cowstore/u64map.h"

typedef uintptr_t cow_word;

_Static_assert(sizeof(cow_word) == 8, "cowstore needs 64-bit pointers");

/* Bit 0 set: a stored reference. */
#define COW_REF_STORED ((cow_word)1)
/* Env slot bits 1..7; slot 0 means "the env containing this word". */
#define COW_REF_SLOT_SHIFT 1
#define COW_REF_SLOT_MASK ((cow_word)0x7f)
#define COW_REF_MAX_ENVS 128
/* Offset within the segment in 8-byte units, bits 8..31: a node starts in the
 * first 128 MiB of its segment (a bigger one has a segment of its own). */
#define COW_REF_OFF_SHIFT 8
#define COW_REF_OFF_MASK ((cow_word)0xffffff)
#define COW_REF_UNIT 8
/* The first offset a word cannot name. */
#define COW_REF_MAX_SEGMENT ((size_t)(COW_REF_OFF_MASK + 1) * COW_REF_UNIT)
/* Segment id, bits 32..63. */
#define COW_REF_SEG_SHIFT 32

/* The refcnt of every node written to pages: never 1, never changed. */
#define COW_REFCNT_STORED UINT32_MAX

/* What a resolved word must be; decides the validation and the poison. */
typedef enum cow_node_kind {
    COW_NK_VLEAF,       /* vector leaf (vec.c) */
    COW_NK_VINNER,      /* vector inner node */
    COW_NK_VANY,        /* either: the caller checks the leaf flag */
    COW_NK_HNODE,       /* hash index node (map.c) */
    COW_NK_VEC,         /* cow_vec header */
    COW_NK_MAP,         /* cow_map header */
    COW_NK_BLOB,        /* cow_blob */
    COW_NK_PACK,        /* cow_pack: a packed container (pack.h) */
    COW_NK__COUNT
} cow_node_kind;

static inline int cow_word_stored(cow_word w) { return (int)(w & COW_REF_STORED); }
static inline unsigned cow_word_slot(cow_word w) { return (unsigned)((w >> COW_REF_SLOT_SHIFT) & COW_REF_SLOT_MASK); }
static inline uint32_t cow_word_seg(cow_word w) { return (uint32_t)(w >> COW_REF_SEG_SHIFT); }
static inline size_t cow_word_off(cow_word w) { return (size_t)((w >> COW_REF_OFF_SHIFT) & COW_REF_OFF_MASK) * COW_REF_UNIT; }
static inline cow_word
cow_word_make(uint32_t seg, size_t off, unsigned slot)
{
    return ((cow_word)seg << COW_REF_SEG_SHIFT) | ((cow_word)(off / COW_REF_UNIT) << COW_REF_OFF_SHIFT)
           | ((cow_word)slot << COW_REF_SLOT_SHIFT) | COW_REF_STORED;
}
static inline cow_word cow_word_of(const void *p) { return (cow_word)p; }
/* A word read out of pages is well formed: 0 or a stored reference in page
 * form (slot 0).  Anything else -- a heap pointer, another env's slot --
 * could only come from a corrupt or hostile file, and is never followed. */
static inline int cow_word_page_ok(cow_word w) { return w == 0 || (w & (COW_REF_STORED | (COW_REF_SLOT_MASK << COW_REF_SLOT_SHIFT))) == COW_REF_STORED; }

/* Out of line: the stored case of cow_ref_get (never NULL, see above). */
void *cow_ref_resolve(const cow_word *wp, int kind);

/* The node *wp names (borrowed): a heap pointer as is (possibly NULL), a
 * stored reference resolved and checked. */
static inline void *
cow_ref_get(const cow_word *wp, int kind)
{
    cow_word w = *wp;
    return cow_word_stored(w) ? cow_ref_resolve(wp, kind) : (void *)w;
}

/* *wp as a word that is valid anywhere (the slot filled in), without taking
 * a reference. */
cow_word cow_ref_export(const cow_word *wp);
/* As cow_ref_export for word w read from address `where` (which may be
 * unaligned: a packed leaf's item). */
cow_word cow_ref_export_from(cow_word w, const void *where);
/* Whether *a and *b name one node (or none), told from the words without
 * resolving them; a heap node and its stored twin (twin.h) count as one.  Comparing words read from two fixed nodes, pass the same
 * *one_map (-1 at first): it caches whether those nodes lie in one store's
 * pages, so equal page-form words need no lookup of their store after the
 * first; NULL caches nothing. */
int cow_word_same(const cow_word *a, const cow_word *b, int *one_map);
/* A stored word in heap form: count one pin on its env (+1) or drop one (-1). */
void cow_ref_pin(cow_word w, int delta);
/* Counts a raw pointer into the map a stored word names (+1 / -1). */
void cow_ref_view(cow_word w, int delta);

/* ---- read scopes (see above) ------------------------------------------- */

/* A thread-local read on every call (the scope's slot).  The initial-exec
 * model reads it at a fixed offset from the thread pointer, where the
 * default for a dlopen'ed extension calls __tls_get_addr each time; glibc
 * keeps static TLS room for a few such words in modules loaded later. */
#if defined(__GNUC__)
#define COW_THREAD_LOCAL _Thread_local __attribute__((tls_model("initial-exec")))
#else
#define COW_THREAD_LOCAL _Thread_local
#endif

/* Opens a scope: returns the enclosing scope's error (pass it to the
 * matching cow_ref_scope_leave) and clears the slot. */
int cow_ref_scope_enter(void);
/* Closes the scope opened by the cow_ref_scope_enter that returned outer:
 * returns the scope's first error (COW_OK if none) and restores outer.  At a
 * thread's outermost level (a test's body), cow_ref_scope_leave(COW_OK)
 * takes the error recorded so far and starts afresh. */
int cow_ref_scope_leave(int outer);

/* How many times a store's mapping has moved to another address (its map
 * grew: store_map.c).  Words stay valid across a move, pointers into pages
 * do not: a reader that keeps some from one call to the next (an iterator's
 * leaf, a pack cursor) notes this count and finds its place again from its
 * word when it changed. */
extern _Atomic unsigned long cow_ref_moves;

/* The current scope's first error, left in place (walks that stop at the
 * first error ask it after each resolution). */
int cow_ref_error(void);
/* Records err in the current scope unless it holds an error already: a
 * decoding error found outside the resolver (a bad entry number, a value tag
 * that cannot be stored). */
void cow_ref_set_error(int err);

/* Each kind's checks and poison node: the table in cowstore/node.h. */

/* ---- the env table (filled by store.c; tests may install fakes) ---------- */

/* Where segment `seg` lives: its bytes are base + *off .. + *len.  Returns
 * COW_OK or an error when the segment does not exist. */
typedef int (*cow_ref_seg_lookup)(void *ctx, uint32_t seg, size_t *off, size_t *len);

typedef struct cow_ref_env {
    const char *base;           /* current address of the mapping */
    size_t size;                /* bytes mapped */
    cow_ref_seg_lookup lookup;  /* fills the segment cache on a miss */
    void *ctx;
    long pins;                  /* heap-form words naming this env */
    cow_u64map seg_pins;        /* segment id + 1 -> pins naming it (0s linger) */
    int pins_untracked;         /* a seg_pins update failed: assume every
                                 * snapshot is needed until pins reach 0 */
    long views;                 /* raw pointers into the map handed out (numpy
                                 * views): while > 0 the map must not move */
    /* Called when pins drops to 0 (the store may now close what it kept
     * open for them); may be NULL. */
    void (*unpinned)(struct cow_ref_env *env);
    /* The segment cache (ref.c R1): open addressing over a power-of-two
     * table kept at most half full, home slot = id (ids are handed out in
     * sequence), so a hit reads one 16-byte slot. */
    struct cow_seg_span *spans;
    size_t nspans, capspans;    /* slots used, slots */
    const struct cow_seg_span *last;    /* resolved last (most hops stay in one), or NULL */
} cow_ref_env;

/* Where a cached segment lies in its env's map.  len == 0: an empty slot
 * (no segment is empty). */
typedef struct cow_seg_span {
    uint32_t seg;
    uint32_t len;
    uint64_t off;
} cow_seg_span;

/* Registers env in a free slot (1..127); returns the slot or a negative error. */
int cow_ref_env_add(cow_ref_env *env);
void cow_ref_env_remove(unsigned slot);
cow_ref_env *cow_ref_env_at(unsigned slot);
/* Forgets the cached segment addresses (after a segment was deleted by
 * this process it must be looked up again if ever named). */
void cow_ref_env_forget(cow_ref_env *env);

#endif
