/* Persistent vector: a 32-way bit-partitioned trie with a tail.
 *
 * Why: O(log32 n) index and set, amortised O(1) push and pop at the end, and
 * O(1) copy by sharing nodes -- the structure of Clojure's PersistentVector.
 * Every node carries a reference count; a node referenced once is updated in
 * place, a shared one is copied first (path copying), so an uncopied vector
 * mutates almost like an array and a copy costs one increment.
 *
 * Worked example: len = 1000, so the tail holds indices 992..999 and the trie
 * holds 0..991 in 31 full leaves under one inner root (shift = 5).  Index 700
 * = 0b10101_11100: root->kids[700 >> 5 & 31 = 21] is a leaf; its vals[700 & 31
 * = 28] is the value.
 *
 * Node bytes (8-byte header, then the payload):
 *
 *   +--------+------+-----+-------+-------+----------------------------+
 *   | refcnt | leaf | cap | count | words | leaf: cow_val vals[cap]    |
 *   |  u32   |  u8  | u8  |  u8   |  u8   | inner: cow_vnode *kids[32] |
 *   +--------+------+-----+-------+-------+----------------------------+
 *
 * `words` is 1 on a heap packed leaf whose items may hold a word (a raw item
 * of a long str, a container...), so that copying or freeing one of short
 * keys and small ints retains and releases nothing without a scan; it is 0
 * everywhere else, pages included.
 *
 * A packed leaf (leaf == VN_PACKED, cap == count) holds its values as
 * compact items (compact.h), with the offset of every fourth one:
 *
 *   | header | u16 bytes | u16 mark[8] | items: `bytes` bytes              |
 *
 * item 4j starts at mark[j], so a read skips at most three items.  A full
 * tail entering the trie is packed when that saves a quarter of its bytes
 * (a map of short keys and small ints: ~14 bytes an entry, not 32); the
 * first write to a packed leaf unpacks it, as a path copy would copy it.
 * Reads return values by copy (cow_vb_get), so no caller holds a pointer
 * into a leaf; an iterator decodes a packed leaf once into its buffer.
 *
 * Operations: cow_vb_get (walk), cow_vb_set (vn_own along the path),
 * cow_vb_push (tail, or push_tail_into_trie when the tail is full),
 * cow_vb_pop (tail, or take_last_leaf when the tail empties),
 * cow_vb_append_range (another vector's values, a leaf at a time: shared
 * where the leaves line up, joined where they are offset).
 *
 * Invariants (checked by cow_vec_check):
 *  VEC1  len == 0 iff tail == NULL.
 *  VEC2  tail->count == len - tailoff(len), in 1..32, and tail->cap >= count.
 *  VEC3  every leaf in the trie holds exactly 32 values; root == NULL iff
 *        tailoff(len) == 0.
 *  VEC4  the trie is as shallow as possible: 32 << shift >= tailoff(len) >
 *        32 << (shift - 5) when shift > 0; kids past the last index are NULL.
 *  VEC5  refcnt >= 1 for every reachable node; a node with refcnt > 1 is never
 *        written.
 *  VEC6  child words follow ref.h: a stored child (bit 0 set) is never
 *        written; a write copies it to the heap (vn_own) with every word it
 *        holds exported, and the walk that reads a stored node checks its
 *        kind (leaf or inner) and, at a leaf, that the index is below count.
 *  VEC7  a packed leaf has cap == count; its items decode, end exactly at
 *        `bytes`, and mark[j] is where item 4j starts (packed_ok).  A read
 *        of a stored one checks each offset against `bytes` before use.
 *  VEC8  a heap packed leaf with an item that holds a word has words == 1
 *        (packed_ok); a stored one is written with words == 0 and never
 *        retains or releases.
 *
 * Stored node bytes are the heap bytes with refcnt = COW_REFCNT_STORED, child
 * words in page form and leaves trimmed to cap == count; a leaf is stored
 * packed when that pays, whatever its form on the heap.
 */
#include <stdlib.h>
#include <string.h>

#include "cowstore/alloc.h"
#include "cowstore/compact.h"
#include "cowstore/node.h"
#include "cowstore/prefetch.h"
#include "cowstore/ref.h"
#include "cowstore/segment.h"
#include "cowstore/twin.h"
#include "cowstore/vec.h"

enum { VN_INNER = 0, VN_LEAF = 1, VN_PACKED = 2 };

struct cow_vnode {
    uint32_t refcnt;
    uint8_t leaf;       /* VN_LEAF: vals follow, VN_PACKED: items, VN_INNER: kids */
    uint8_t cap;        /* leaf: value slots allocated */
    uint8_t count;      /* leaf: value slots used */
    uint8_t words;      /* heap packed leaf: an item may hold a word (above) */
};

/* Lines past its header prefetched when a walk reaches a leaf: a packed
 * leaf's marks lie in its first line and its items in the next three or so
 * (prefetch.h). */
#define VN_LEAF_PREFETCH_LINES 3

/* A packed leaf marks the offset of every VN_MARK_EVERY-th item. */
#define VN_MARK_EVERY 4
typedef struct vn_packed {
    uint16_t bytes;                                 /* of the items */
    uint16_t mark[COW_VEC_WIDTH / VN_MARK_EVERY];   /* item 4j starts at mark[j] */
} vn_packed;
/* A full leaf is packed when its items take at most this share of a plain
 * leaf's value bytes (a quarter saved, or it is not worth a decode). */
#define VN_PACK_NUM 3
#define VN_PACK_DEN 4

/* A new tail starts with room for this many values, doubling up to 32, so a
 * small list costs a small node. */
#define COW_VEC_TAIL_MIN 4

static long live_nodes;

long cow_vec_live_nodes(void) { return live_nodes; }

static size_t
tailoff(size_t len)
{
    return len == 0 ? 0 : ((len - 1) >> COW_VEC_BITS) << COW_VEC_BITS;
}

static cow_val *vn_vals(cow_vnode *n) { return (cow_val *)(n + 1); }
static cow_word *vn_kids(cow_vnode *n) { return (cow_word *)(n + 1); }
static vn_packed *vn_pk(cow_vnode *n) { return (vn_packed *)(n + 1); }
static const uint8_t *vn_items(cow_vnode *n) { return (const uint8_t *)(vn_pk(n) + 1); }

/* The node *wp names where one must exist (a walk): NULL -- possible only in
 * a corrupt stored node -- reads as poison. */
static cow_vnode *
vn_at(const cow_word *wp, int kind)
{
    cow_vnode *n = cow_ref_get(wp, kind);
    if (n == NULL) {
        cow_ref_set_error(COW_ECORRUPT);
        return cow_vec_poison(kind);
    }
    return n;
}

static int vn_stored(const cow_vnode *n) { return n->refcnt == COW_REFCNT_STORED; }

/* What a stored node holds is checked where it is used, not when the node is
 * resolved: a lookup touches one kid and one value of each node it passes
 * (VEC6).  A bad one reads as poison and records COW_ECORRUPT. */
static int
kid_ok(const cow_vnode *n, cow_word w)
{
    if (!vn_stored(n) || cow_word_page_ok(w))
        return 1;
    cow_ref_set_error(COW_ECORRUPT);
    return 0;
}

static const cow_val *corrupt_val(void);

static const cow_val *
stored_val_ok(const cow_val *v)
{
    return cow_val_check_stored(v) == COW_OK ? v : corrupt_val();
}

static const cow_val *
val_ok(const cow_vnode *leaf, const cow_val *v)
{
    return vn_stored(leaf) ? stored_val_ok(v) : v;
}

/* ---- packed leaves ------------------------------------------------------- */

static const cow_val *
corrupt_val(void)
{
    static const cow_val poison_val = {.tag = COW_T_NONE};
    cow_ref_set_error(COW_ECORRUPT);
    return &poison_val;
}

/* A value read out of stored leaf bytes at `at`, checked (VEC6) and with
 * its word exported: a copy leaves the pages, and a page-form word names its
 * store by where it lies (ref.h). */
static cow_val
stored_out(cow_val v, const cow_val *at)
{
    if (cow_val_check_stored(&v) < 0)
        return *corrupt_val();
    if (cow_tag_has_word(v.tag))
        v.u.w = cow_ref_export_from(v.u.w, (const char *)at + offsetof(cow_val, u));
    return v;
}

/* Decodes the item at pos of packed leaf n into *out; returns the next
 * position, or 0 (and poison in *out) when the bytes are bad. */
static size_t
packed_decode(cow_vnode *n, size_t pos, cow_val *out)
{
    const vn_packed *pk = vn_pk(n);
    const uint8_t *item = vn_items(n) + pos;
    size_t len = pos < pk->bytes ? cow_ci_decode(item, pk->bytes - pos, out) : 0;
    if (len == 0) {
        *out = *corrupt_val();
        return 0;
    }
    if (vn_stored(n))   /* a raw item holds the value after its code byte */
        *out = stored_out(*out, (const cow_val *)(item + 1));
    return pos + len;
}

/* Where item `slot` of packed leaf n starts: from the mark before it, skip.
 * Offsets of a stored leaf are checked against its bytes (VEC6): a bad one
 * gives SIZE_MAX, which packed_decode reads as corrupt. */
static inline size_t
packed_find(cow_vnode *n, unsigned slot)
{
    const vn_packed *pk = vn_pk(n);
    size_t pos = pk->mark[slot / VN_MARK_EVERY], len;
    for (unsigned k = slot % VN_MARK_EVERY; k > 0; k--) {
        if (pos >= pk->bytes || (len = cow_ci_size(vn_items(n) + pos, pk->bytes - pos)) == 0)
            return SIZE_MAX;
        pos += len;
    }
    return pos;
}

static cow_val
packed_get(cow_vnode *n, unsigned slot)
{
    cow_val v;
    packed_decode(n, packed_find(n, slot), &v);
    return v;
}

/* Values slot and slot + 1 by one skip: a map entry's key and value. */
static void
packed_get_pair(cow_vnode *n, unsigned slot, cow_val out[2])
{
    size_t next = packed_decode(n, packed_find(n, slot), &out[0]);
    packed_decode(n, next ? next : SIZE_MAX, &out[1]);
}

/* Writes v over the item at byte pos of an unshared heap packed leaf when
 * v's item can take that item's length (a counter, a flag, an int no
 * wider): 1 done (v stolen, a raw old value released), 0 the leaf must be
 * unpacked first (v untouched). */
static inline int
packed_write_at(cow_vnode *n, size_t pos, cow_val v)
{
    uint8_t item[COW_CI_MAX];
    const vn_packed *pk = vn_pk(n);
    size_t len;
    cow_val old;
    if (pos >= pk->bytes || (len = cow_ci_size(vn_items(n) + pos, pk->bytes - pos)) == 0
        || cow_ci_encode_as(&v, len, item) != len)
        return 0;
    /* Only a raw item can hold a word to release (packed_words). */
    if (vn_items(n)[pos] == COW_CI_RAW && cow_ci_decode(vn_items(n) + pos, len, &old) == len)
        cow_val_release(&old);
    n->words |= cow_tag_has_word(v.tag);
    cow_copy_bytes((uint8_t *)vn_items(n) + pos, item, len);     /* all but a raw item: no call */
    return 1;
}

/* packed_write_at over item `slot`. */
static int
packed_set_in_place(cow_vnode *n, unsigned slot, cow_val v)
{
    return packed_write_at(n, packed_find(n, slot), v);
}

/* Retains (+1) or releases (-1) the words of heap packed leaf n's values:
 * only raw items can hold one, so the others are skipped, not decoded. */
static void
packed_words(cow_vnode *n, int delta)
{
    const vn_packed *pk = vn_pk(n);
    size_t pos = 0, len;
    if (!n->words)
        return;
    for (unsigned i = 0; i < n->count && pos < pk->bytes; i++, pos += len) {
        cow_val v;
        if ((len = cow_ci_size(vn_items(n) + pos, pk->bytes - pos)) == 0)
            return;
        if (vn_items(n)[pos] != COW_CI_RAW || cow_ci_decode(vn_items(n) + pos, len, &v) == 0)
            continue;
        if (delta > 0)
            cow_val_retain(&v);
        else
            cow_val_release(&v);
    }
}

/* Every value of packed leaf n into out[0..count), in one pass. */
static void
packed_get_all(cow_vnode *n, cow_val *out)
{
    size_t pos = 0, len;
    unsigned i = 0;
    if (!vn_stored(n))          /* heap items are well formed (VEC7): no checks */
        for (; i < n->count && (len = cow_ci_decode(vn_items(n) + pos, vn_pk(n)->bytes - pos, &out[i])); i++)
            pos += len;
    for (; i < n->count; i++)   /* a stored leaf's, checked (or the rest: poison) */
        pos = packed_decode(n, pos, &out[i]);
}

/* Value `slot` (< count) of leaf n, borrowed, by copy. */
static cow_val
leaf_get(cow_vnode *n, unsigned slot)
{
    if (n->leaf == VN_PACKED)
        return packed_get(n, slot);
    if (vn_stored(n))
        return stored_out(vn_vals(n)[slot], &vn_vals(n)[slot]);
    return vn_vals(n)[slot];
}

/* vals[0..n) as the items of a packed leaf into *head and items; returns
 * their bytes, or 0 when packing would not save a quarter of the plain
 * leaf's value bytes (VN_PACK_NUM / VN_PACK_DEN). */
static size_t
pack_items(const cow_val *vals, unsigned n, vn_packed *head, uint8_t *items)
{
    size_t pos = 0;
    memset(head, 0, sizeof *head);
    for (unsigned i = 0; i < n; i++) {
        if (i % VN_MARK_EVERY == 0)
            head->mark[i / VN_MARK_EVERY] = (uint16_t)pos;
        pos += cow_ci_encode(&vals[i], items + pos);
    }
    if (n == 0 || (sizeof *head + pos) * VN_PACK_DEN > n * sizeof(cow_val) * VN_PACK_NUM)
        return 0;
    head->bytes = (uint16_t)pos;
    return pos;
}

/* A full heap leaf about to enter the trie, rewritten packed when that pays
 * (pack_items); its values move into the new node (no retain).  Returns the
 * leaf to keep: the old one when packing does not pay or memory is short
 * (packing is never needed). */
static cow_word
leaf_compacted(cow_word w)
{
    cow_vnode *t = (cow_vnode *)w, *p;
    uint8_t buf[COW_VEC_WIDTH * COW_CI_MAX];
    vn_packed head;
    size_t pos;
    if (cow_word_stored(w) || t->refcnt != 1 || t->leaf != VN_LEAF)
        return w;
    if ((pos = pack_items(vn_vals(t), t->count, &head, buf)) == 0)
        return w;
    if ((p = cow_malloc(sizeof(cow_vnode) + sizeof head + pos)) == NULL)
        return w;
    *p = (cow_vnode){1, VN_PACKED, t->count, t->count, 0};
    for (unsigned i = 0; i < t->count; i++)
        p->words |= cow_tag_has_word(vn_vals(t)[i].tag);
    memcpy(vn_pk(p), &head, sizeof head);
    memcpy((uint8_t *)vn_items(p), buf, pos);
    cow_free(t);                    /* one node for another: live_nodes stays */
    return cow_word_of(p);
}

/* Kid k of inner node n, where one must exist. */
static cow_vnode *
vn_kid(cow_vnode *n, size_t k, int kind)
{
    if (!kid_ok(n, vn_kids(n)[k]))
        return cow_vec_poison(kind);
    return vn_at(&vn_kids(n)[k], kind);
}

/* A new reference to the node *wp names, as a word valid anywhere (VEC6). */
static cow_word
vw_share(const cow_word *wp)
{
    cow_word w = cow_ref_export(wp);
    if (cow_word_stored(w))
        cow_ref_pin(w, +1);
    else if (w)
        ((cow_vnode *)w)->refcnt++;
    return w;
}

static void vn_release(cow_vnode *n);

static void
vw_release(cow_word w)
{
    if (cow_word_stored(w))
        cow_ref_pin(w, -1);
    else
        vn_release((cow_vnode *)w);
}

/* vw_release for a kid word, with the common case -- a heap kid another
 * node still holds -- done without a call. */
static inline void
kid_release(cow_word w)
{
    cow_vnode *k = (cow_vnode *)w;
    if (!cow_word_stored(w) && (k->refcnt & ~COW_REFCNT_TWIN) > 1)
        k->refcnt--;
    else
        vw_release(w);
}

/* The kids of a heap inner node, copied into `to` with a reference each: a
 * heap node's stored kid is in heap form already (ref.h), so there is
 * nothing to check or export, only a count to raise -- the whole cost of
 * copying a full inner node on a path copy, so it stays this short.
 * Returns how many there were. */
static unsigned
heap_kids_share(const cow_word *from, cow_word *to)
{
    unsigned i;
    for (i = 0; i < COW_VEC_WIDTH && from[i]; i++) {
        cow_word w = to[i] = from[i];
        if (cow_word_stored(w))
            cow_ref_pin(w, +1);
        else
            ((cow_vnode *)w)->refcnt++;
    }
    return i;
}

/* ---- stored nodes -------------------------------------------------------- */

static struct {
    cow_vnode h;
    cow_word words[2 * COW_VEC_WIDTH];  /* read as 32 NONE values or 32 kids */
} poison_leaf, poison_inner;
static cow_vec poison_vec;

/* Every poison word is 1: as a kid, a stored word outside every mapping
 * (resolves to poison again); as a value, NONE. */
static void
poison_init(void)
{
    if (poison_leaf.h.refcnt == COW_REFCNT_STORED)
        return;
    for (size_t i = 0; i < 2 * COW_VEC_WIDTH; i++)
        poison_leaf.words[i] = poison_inner.words[i] = COW_REF_STORED;
    poison_leaf.h = (cow_vnode){COW_REFCNT_STORED, 1, COW_VEC_WIDTH, COW_VEC_WIDTH, 0};
    poison_inner.h = (cow_vnode){COW_REFCNT_STORED, 0, 0, 0, 0};
    poison_vec.refcnt = COW_REFCNT_STORED;
}

void *
cow_vec_poison(int kind)
{
    poison_init();
    if (kind == COW_NK_VEC)
        return &poison_vec;
    return kind == COW_NK_VINNER ? (void *)&poison_inner : (void *)&poison_leaf;
}

/* The shape of a stored body is consistent: a walk of len values takes
 * shift / 5 inner levels (VEC4), so it meets a leaf exactly at level 0. */
int
cow_vb_stored_ok(const cow_vecbody *b)
{
    size_t trie = tailoff(b->len);
    if (b->shift % COW_VEC_BITS || b->shift > COW_VEC_MAX_SHIFT
        || !cow_word_page_ok(b->root) || !cow_word_page_ok(b->tail))
        return 0;
    if (trie == 0)
        return b->shift == 0;
    return ((size_t)COW_VEC_WIDTH << b->shift) >= trie
           && (b->shift == 0 || trie > (size_t)COW_VEC_WIDTH << (b->shift - COW_VEC_BITS));
}

size_t
cow_vec_stored_size(const void *p, size_t avail, int kind)
{
    const cow_vnode *n = p;
    size_t size;
    if (n->refcnt != COW_REFCNT_STORED)
        return 0;
    if (kind == COW_NK_VEC) {
        size = sizeof(cow_vec);
        return avail >= size && cow_vb_stored_ok(&((const cow_vec *)p)->b) ? size : 0;
    }
    if (n->leaf > VN_PACKED || (kind == COW_NK_VLEAF && !n->leaf)
        || (kind == COW_NK_VINNER && n->leaf))
        return 0;
    if (n->leaf && (n->cap > COW_VEC_WIDTH || n->count > n->cap))
        return 0;
    if (n->leaf == VN_PACKED) {     /* items are checked where they are read */
        size = sizeof(cow_vnode) + sizeof(vn_packed);
        if (n->cap != n->count || avail < size)
            return 0;
        size += ((const vn_packed *)(n + 1))->bytes;
    }
    else
        size = sizeof(cow_vnode)
               + (n->leaf ? n->cap * sizeof(cow_val) : COW_VEC_WIDTH * sizeof(cow_word));
    return size <= avail ? size : 0;
}

static cow_vnode *
vn_leaf_new(unsigned cap)
{
    cow_vnode *n = cow_malloc(sizeof(cow_vnode) + cap * sizeof(cow_val));
    if (n == NULL)
        return NULL;
    n->refcnt = 1;
    n->leaf = 1;
    n->cap = (uint8_t)cap;
    n->count = 0;
    n->words = 0;
    live_nodes++;
    return n;
}

/* An inner node whose kids the caller fills: every slot, or a prefix and
 * then vn_clear_from the rest. */
static cow_vnode *
vn_inner_raw(void)
{
    cow_vnode *n = cow_malloc(sizeof(cow_vnode) + COW_VEC_WIDTH * sizeof(cow_word));
    if (n == NULL)
        return NULL;
    *n = (cow_vnode){1, VN_INNER, 0, 0, 0};
    live_nodes++;
    return n;
}

static void
vn_clear_from(cow_vnode *n, unsigned first)
{
    memset(&vn_kids(n)[first], 0, (COW_VEC_WIDTH - first) * sizeof(cow_word));
}

static cow_vnode *
vn_inner_new(void)
{
    cow_vnode *n = vn_inner_raw();
    if (n != NULL)
        vn_clear_from(n, 0);
    return n;
}

static void
vn_release(cow_vnode *n)
{
    if (n == NULL || !cow_refcnt_drop(&n->refcnt))
        return;
    if (n->leaf == VN_PACKED)
        packed_words(n, -1);
    else if (n->leaf) {
        for (unsigned i = 0; i < n->count; i++)
            if (cow_tag_has_word(vn_vals(n)[i].tag))     /* scalars hold nothing */
                cow_val_release(&vn_vals(n)[i]);
    }
    else {
        for (unsigned i = 0; i < COW_VEC_WIDTH && vn_kids(n)[i]; i++)
            kid_release(vn_kids(n)[i]);     /* kids are a prefix (VEC4); see vn_own */
    }
    live_nodes--;
    cow_free(n);
}

/* Makes *slot exclusively owned with room for `cap` values (leaves); a shared
 * or stored node is copied and the copy retains its children (VEC5, VEC6).
 * `kind` is what the walk expects there (COW_NK_VLEAF / VINNER). */
static int
vn_own(cow_word *slot, unsigned cap, int kind)
{
    cow_vnode *n = vn_at(slot, kind), *c;
    if (n->refcnt == 1 && (!n->leaf || (n->leaf == VN_LEAF && n->cap >= cap)))
        return COW_OK;
    if (n->refcnt == 1 && n->leaf == VN_LEAF && !cow_word_stored(*slot)) {
        /* a heap leaf of ours alone, too small (a tail growing 4, 8, 16,
         * 32): grown where it lies, its values moved as they are, where a
         * copy retained each and released the old (~50 of ~460
         * instructions an entry of a map built from a dict) */
        if ((c = cow_realloc(n, sizeof(cow_vnode) + cap * sizeof(cow_val))) == NULL)
            return COW_ENOMEM;
        c->cap = (uint8_t)cap;
        *slot = cow_word_of(c);
        return COW_OK;
    }
    if (n->leaf) {
        c = vn_leaf_new(cap > n->cap ? cap : n->cap);
        if (c == NULL)
            return COW_ENOMEM;
        c->count = n->count;
        if (n->leaf == VN_PACKED) {     /* unpacked for writing (words exported) */
            packed_get_all(n, vn_vals(c));
            for (unsigned i = 0; i < n->count; i++)
                cow_val_retain(&vn_vals(c)[i]);
        }
        else if (vn_stored(n)) {
            for (unsigned i = 0; i < n->count; i++)
                cow_val_copy(&vn_vals(c)[i], val_ok(n, &vn_vals(n)[i]));
        }
        else {                  /* heap values hold heap-form words: copy, retain */
            memcpy(vn_vals(c), vn_vals(n), n->count * sizeof(cow_val));
            for (unsigned i = 0; i < n->count; i++)
                cow_val_retain(&vn_vals(c)[i]);
        }
    }
    else {
        unsigned i = 0;
        c = vn_inner_raw();
        if (c == NULL)
            return COW_ENOMEM;
        /* Kids are a prefix of the slots (VEC4): the copy stops at the first
         * empty one, as most slots of a small trie's nodes are (a walk past
         * a hole in a hostile stored node reads poison either way). */
        if (vn_stored(n)) {
            for (; i < COW_VEC_WIDTH && vn_kids(n)[i]; i++)
                vn_kids(c)[i] = kid_ok(n, vn_kids(n)[i]) ? vw_share(&vn_kids(n)[i]) : 0;
        }
        else
            i = heap_kids_share(vn_kids(n), vn_kids(c));
        vn_clear_from(c, i);
    }
    vw_release(*slot);
    *slot = cow_word_of(c);
    return COW_OK;
}

void
cow_vb_init(cow_vecbody *b)
{
    memset(b, 0, sizeof *b);
}

void
cow_vb_clear(cow_vecbody *b)
{
    vw_release(b->root);
    vw_release(b->tail);
    cow_vb_init(b);
}

void
cow_vb_dup(cow_vecbody *dst, const cow_vecbody *src)
{
    dst->len = src->len;
    dst->shift = src->shift;
    dst->root = vw_share(&src->root);
    dst->tail = vw_share(&src->tail);
}

int
cow_vb_same(const cow_vecbody *a, const cow_vecbody *b)
{
    return a->len == b->len && cow_word_same(&a->root, &b->root, NULL)
           && cow_word_same(&a->tail, &b->tail, NULL);
}

int
cow_vb_from(cow_vecbody *b, cow_val *vals, size_t n)
{
    cow_vnode *tail;
    int rc = COW_OK;
    if (n > COW_VEC_WIDTH) {            /* past one leaf: the general way */
        for (size_t i = 0; i < n; i++)
            if (rc == COW_OK)
                rc = cow_vb_push(b, vals[i]);
            else
                cow_val_release(&vals[i]);
        if (rc < 0)
            cow_vb_clear(b);
        return rc;
    }
    if (n == 0)
        return COW_OK;
    if ((tail = vn_leaf_new((unsigned)n)) == NULL) {
        for (size_t i = 0; i < n; i++)
            cow_val_release(&vals[i]);
        return COW_ENOMEM;
    }
    memcpy(vn_vals(tail), vals, n * sizeof(cow_val));
    tail->count = (uint8_t)n;
    b->tail = cow_word_of(tail);
    b->len = n;
    return COW_OK;
}

cow_val *
cow_vb_full_tail(cow_vecbody *b)
{
    cow_vnode *t = (cow_vnode *)b->tail;
    if (t == NULL || cow_word_stored(b->tail) || t->refcnt != 1 || t->leaf != VN_LEAF
        || t->count != COW_VEC_WIDTH)
        return NULL;
    return vn_vals(t);
}

void
cow_vb_trim(cow_vecbody *b)
{
    cow_vnode *t = (cow_vnode *)b->tail, *small;
    if (t == NULL || cow_word_stored(b->tail) || t->refcnt != 1 || t->leaf != VN_LEAF
        || t->cap == t->count)
        return;
    small = cow_realloc(t, sizeof(cow_vnode) + t->count * sizeof(cow_val));
    if (small == NULL)
        return;                      /* keeping the spare slots is harmless */
    small->cap = small->count;
    b->tail = cow_word_of(small);
}

/* The leaf holding index i < len; checks a stored one holds it (VEC6). */
static cow_vnode *
leaf_for(const cow_vecbody *b, size_t i)
{
    cow_vnode *n;
    if (i >= tailoff(b->len)) {
        n = vn_at(&b->tail, COW_NK_VLEAF);
    }
    else {
        n = vn_at(&b->root, b->shift ? COW_NK_VINNER : COW_NK_VLEAF);
        for (uint32_t level = b->shift; level > 0; level -= COW_VEC_BITS)
            n = vn_kid(n, (i >> level) & COW_VEC_MASK,
                       level > COW_VEC_BITS ? COW_NK_VINNER : COW_NK_VLEAF);
        cow_prefetch_tail(n, VN_LEAF_PREFETCH_LINES);
        if (!n->leaf) {                 /* poison standing in for an inner node */
            cow_ref_set_error(COW_ECORRUPT);
            n = cow_vec_poison(COW_NK_VLEAF);
        }
    }
    if ((i & COW_VEC_MASK) >= n->count) {
        cow_ref_set_error(COW_ECORRUPT);
        return cow_vec_poison(COW_NK_VLEAF);
    }
    return n;
}

const cow_val *
cow_vb_slot(const cow_vecbody *b, size_t i)
{
    cow_vnode *n = leaf_for(b, i);
    return n->leaf == VN_PACKED ? NULL : &vn_vals(n)[i & COW_VEC_MASK];
}

cow_val
cow_vb_get(const cow_vecbody *b, size_t i)
{
    return leaf_get(leaf_for(b, i), i & COW_VEC_MASK);
}

void
cow_vb_get_pair(const cow_vecbody *b, size_t i, cow_val out[2])
{
    cow_vnode *n = leaf_for(b, i);
    unsigned slot = i & COW_VEC_MASK;
    if (slot + 1 >= n->count) {
        out[0] = out[1] = *corrupt_val();     /* a stored leaf shorter than its vector */
        return;
    }
    if (n->leaf == VN_PACKED) {
        packed_get_pair(n, slot, out);
        return;
    }
    out[0] = leaf_get(n, slot);
    out[1] = leaf_get(n, slot + 1);
}

/* The heap leaf holding index i < len, or NULL when a stored node lies on
 * the way -- or, with `owned`, a shared one (a write must copy it first).
 * The walk the general read makes, without its checks: heap nodes are well
 * formed. */
static inline cow_vnode *
heap_leaf_for(const cow_vecbody *b, size_t i, int owned)
{
    cow_word w = i >= tailoff(b->len) ? b->tail : b->root;
    uint32_t level = i >= tailoff(b->len) ? 0 : b->shift;
    for (;; level -= COW_VEC_BITS) {
        if (cow_word_stored(w) || (owned && ((cow_vnode *)w)->refcnt != 1))
            return NULL;
        if (level == 0)
            return (cow_vnode *)w;
        w = vn_kids((cow_vnode *)w)[(i >> level) & COW_VEC_MASK];
        if (level == COW_VEC_BITS)
            cow_prefetch_tail((const void *)w, VN_LEAF_PREFETCH_LINES);
    }
}

/* Whether packed item `item` (the leaf's bytes end at `end`) is the str
 * [s, s + n): COW_FOUND or COW_NOT_FOUND, COW_ASK_GENERAL for a raw item
 * or a hole.
 * A str of at most COW_INLINE_MAX bytes is an inline item and a longer one
 * a raw one (V1, C1), and no other kind of value equals a str. */
static inline __attribute__((always_inline)) int
item_is_str(const uint8_t *item, const uint8_t *end, const char *s, size_t n)
{
    if (item[0] == COW_CI_RAW || item[0] == COW_CI_HOLE)
        return COW_ASK_GENERAL;         /* a hole: the general path reports it */
    if (n > COW_INLINE_MAX || item[0] != COW_CI_SSTR + n || (size_t)(end - item) <= n)
        return COW_NOT_FOUND;
    return cow_equal_short(item + 1, s, n) ? COW_FOUND : COW_NOT_FOUND;
}

int
cow_vb_heap_value_of_str(const cow_vecbody *b, size_t i, const char *s, size_t n, cow_val *val)
{
    cow_vnode *at = i + 1 < b->len ? heap_leaf_for(b, i, 0) : NULL;
    unsigned slot = i & COW_VEC_MASK;
    cow_val probe;
    size_t pos;
    int rc;
    if (at == NULL || slot + 1 >= at->count)
        return COW_ASK_GENERAL;
    if (at->leaf != VN_PACKED) {
        if (vn_vals(at)[slot].tag == COW_T_HOLE)
            return COW_ASK_GENERAL;
        probe = cow_val_str_view(s, n);
        if (val != NULL)
            *val = vn_vals(at)[slot + 1];
        return cow_val_equal(&vn_vals(at)[slot], &probe) ? COW_FOUND : COW_NOT_FOUND;
    }
    if ((pos = packed_find(at, slot)) >= vn_pk(at)->bytes)
        return COW_ASK_GENERAL;
    rc = item_is_str(vn_items(at) + pos, vn_items(at) + vn_pk(at)->bytes, s, n);
    pos += 1 + n;                       /* the value's item, decoded in place (heap: no checks) */
    if (rc == COW_FOUND && val != NULL
        && (pos >= vn_pk(at)->bytes || cow_ci_decode(vn_items(at) + pos, vn_pk(at)->bytes - pos, val) == 0))
        return COW_ASK_GENERAL;
    return rc;
}

int
cow_vb_heap_value_of_int(const cow_vecbody *b, size_t i, int64_t x, cow_val *val)
{
    cow_vnode *at = i + 1 < b->len ? heap_leaf_for(b, i, 0) : NULL;
    unsigned slot = i & COW_VEC_MASK;
    size_t pos, len, bytes;
    cow_val key;
    if (at == NULL || slot + 1 >= at->count)
        return COW_ASK_GENERAL;
    if (at->leaf != VN_PACKED) {
        key = vn_vals(at)[slot];
        if (key.tag == COW_T_INT && val != NULL)
            *val = vn_vals(at)[slot + 1];
    }
    else {                              /* the key's item, then the value's, decoded in place */
        bytes = vn_pk(at)->bytes;
        if ((pos = packed_find(at, slot)) >= bytes
            || (len = cow_ci_decode(vn_items(at) + pos, bytes - pos, &key)) == 0)
            return COW_ASK_GENERAL;
        pos += len;
        if (key.tag == COW_T_INT && key.u.i == x && val != NULL
            && (pos >= bytes || cow_ci_decode(vn_items(at) + pos, bytes - pos, val) == 0))
            return COW_ASK_GENERAL;
    }
    if (key.tag != COW_T_INT)
        return COW_ASK_GENERAL;
    return key.u.i == x ? COW_FOUND : COW_NOT_FOUND;
}

/* Whether key is probe (an int or a str), for cow_vb_heap_scan_keys: 1,
 * 0, or -1 when only the general comparison can tell.  It decides an int
 * key against an int probe and a str key against a str probe; of the other
 * kinds it rules out only those that never equal the probe's -- a str,
 * bytes or None against an int, a number, bytes or None against a str --
 * and leaves the rest (another number, an extension leaf such as a Decimal
 * or an enum, a container) to the general path. */
static int
scan_match(const cow_val *key, const cow_val *probe)
{
    int t = key->tag;
    if (probe->tag == COW_T_INT) {
        if (t == COW_T_INT)
            return key->u.i == probe->u.i;
        return cow_tag_is_str(t) || cow_tag_is_bytes(t) || t == COW_T_NONE ? 0 : -1;
    }
    if (cow_tag_is_str(t))
        return cow_val_equal(key, probe);
    return cow_tag_is_number(t) || cow_tag_is_bytes(t) || t == COW_T_NONE ? 0 : -1;
}

int
cow_vb_heap_scan_keys(const cow_vecbody *b, const cow_val *probe, size_t *i, cow_val *val)
{
    cow_vnode *leaf = (cow_vnode *)b->tail;
    cow_val item[2];
    size_t pos = 0, len;
    int unsure = 0, match;
    if (b->len > COW_VEC_WIDTH || b->tail == 0 || cow_word_stored(b->tail) || leaf->count < b->len)
        return COW_ASK_GENERAL;
    for (size_t k = 0; k + 1 < b->len; k += 2) {
        if (leaf->leaf != VN_PACKED) {
            item[0] = vn_vals(leaf)[k];
            item[1] = vn_vals(leaf)[k + 1];
        }
        else if ((len = cow_ci_decode(vn_items(leaf) + pos, vn_pk(leaf)->bytes - pos, &item[0])) == 0
                 || (pos += len) >= vn_pk(leaf)->bytes
                 || (len = cow_ci_decode(vn_items(leaf) + pos, vn_pk(leaf)->bytes - pos, &item[1])) == 0)
            return COW_ASK_GENERAL;
        else
            pos += len;
        if ((match = scan_match(&item[0], probe)) > 0) {
            *i = k;
            if (val != NULL)
                *val = item[1];
            return COW_FOUND;
        }
        unsure |= match < 0;
    }
    return unsure ? COW_ASK_GENERAL : COW_NOT_FOUND;
}

int
cow_vb_heap_set_after_str(cow_vecbody *b, size_t i, const char *s, size_t n, cow_val val)
{
    cow_vnode *leaf = i + 1 < b->len ? heap_leaf_for(b, i, 1) : NULL;
    size_t pos;
    int rc;
    if (leaf == NULL || leaf->leaf != VN_PACKED || (i & COW_VEC_MASK) + 1 >= leaf->count
        || (pos = packed_find(leaf, i & COW_VEC_MASK)) >= vn_pk(leaf)->bytes)
        return COW_ASK_GENERAL;
    rc = item_is_str(vn_items(leaf) + pos, vn_items(leaf) + vn_pk(leaf)->bytes, s, n);
    if (rc != COW_FOUND)
        return rc;
    return packed_write_at(leaf, pos + 1 + n, val) ? COW_FOUND : COW_ASK_GENERAL;
}

/* Makes the heap packed leaf *slot names unshared, as a packed copy (its
 * words retained) when it is shared: a path copy of half the bytes. */
static int
packed_own(cow_word *slot)
{
    cow_vnode *n = (cow_vnode *)*slot, *c;
    size_t size = sizeof(cow_vnode) + sizeof(vn_packed) + vn_pk(n)->bytes;
    if (n->refcnt == 1)
        return COW_OK;
    if ((c = cow_malloc(size)) == NULL)
        return COW_ENOMEM;
    memcpy(c, n, size);
    c->refcnt = 1;
    live_nodes++;
    packed_words(c, +1);
    vn_release(n);
    *slot = cow_word_of(c);
    return COW_OK;
}

/* Owns every inner node above the leaf holding index i (< len), not the
 * leaf; *slot receives the word naming that leaf (b->tail for the tail). */
static int
own_above(cow_vecbody *b, size_t i, cow_word **slot)
{
    int rc;
    *slot = &b->tail;
    if (i >= tailoff(b->len))
        return COW_OK;
    *slot = &b->root;
    for (uint32_t level = b->shift; level > 0; level -= COW_VEC_BITS) {
        /* an unshared heap node is owned already: no call (vn_own's test) */
        int owned = !cow_word_stored(**slot) && ((cow_vnode *)**slot)->refcnt == 1;
        if (!owned && (rc = vn_own(*slot, 0, COW_NK_VINNER)) < 0)
            return rc;
        *slot = &vn_kids((cow_vnode *)**slot)[(i >> level) & COW_VEC_MASK];
    }
    return COW_OK;
}

/* Owns the leaf holding index i (< len) and every node above it; *leaf
 * receives it.  Copies hold equal values, so an error changes nothing.
 * With keep_packed, an unshared heap packed leaf is left packed. */
static int
own_leaf(cow_vecbody *b, size_t i, cow_vnode **leaf, int keep_packed)
{
    cow_word *slot;
    int rc = own_above(b, i, &slot);
    if (rc < 0)
        return rc;
    keep_packed = keep_packed && !cow_word_stored(*slot)
                  && ((cow_vnode *)*slot)->leaf == VN_PACKED;
    if (keep_packed ? (rc = packed_own(slot)) < 0 : (rc = vn_own(slot, 0, COW_NK_VLEAF)) < 0)
        return rc;
    *leaf = (cow_vnode *)*slot;
    if ((i & COW_VEC_MASK) >= (*leaf)->count) {
        cow_ref_set_error(COW_ECORRUPT);
        return COW_ECORRUPT;
    }
    return COW_OK;
}

int
cow_vb_set(cow_vecbody *b, size_t i, cow_val v)
{
    cow_vnode *leaf;
    int rc = i < b->len ? own_leaf(b, i, &leaf, 1) : COW_EINDEX;
    if (rc == COW_OK && leaf->leaf == VN_PACKED) {
        if (packed_set_in_place(leaf, i & COW_VEC_MASK, v))
            return COW_OK;
        rc = own_leaf(b, i, &leaf, 0);          /* unpacked: the path is owned */
    }
    if (rc < 0) {
        cow_val_release(&v);
        return rc;
    }
    cow_val_release(&vn_vals(leaf)[i & COW_VEC_MASK]);
    vn_vals(leaf)[i & COW_VEC_MASK] = v;
    return COW_OK;
}

int
cow_vb_own(cow_vecbody *b, size_t from, size_t to)
{
    cow_vnode *leaf;
    cow_word *slot;
    int rc;
    /* Popping index `from` at a leaf's start makes the leaf before it the
     * tail as it is (take_last_leaf moves it): only the nodes above it are
     * written, so it is not owned -- a packed one stays packed, and a
     * delete-then-add at a leaf boundary neither unpacks nor repacks it. */
    if (from > 0 && from < b->len && (from & COW_VEC_MASK) == 0
        && (rc = own_above(b, from - 1, &slot)) < 0)
        return rc;
    for (size_t i = from; i < to && i < b->len; i = (i | COW_VEC_MASK) + 1)
        if ((rc = own_leaf(b, i, &leaf, 0)) < 0)
            return rc;
    return COW_OK;
}

/* A chain of inner nodes from `level` down to `leaf` (a word the caller
 * keeps owning if this fails); 0 when out of memory. */
static cow_word
new_path(uint32_t level, cow_word leaf)
{
    cow_vnode *n;
    cow_word kid;
    if (level == 0)
        return leaf;
    if ((kid = new_path(level - COW_VEC_BITS, leaf)) == 0)
        return 0;
    if ((n = vn_inner_new()) == NULL) {
        if (kid != leaf) {
            vn_kids((cow_vnode *)kid)[0] = 0;
            vn_release((cow_vnode *)kid);
        }
        return 0;
    }
    vn_kids(n)[0] = kid;
    return cow_word_of(n);
}

static int
push_into(cow_word *slot, uint32_t level, size_t t0, cow_word leaf)
{
    int rc = vn_own(slot, 0, COW_NK_VINNER);
    cow_word *kid;
    if (rc < 0)
        return rc;
    kid = &vn_kids((cow_vnode *)*slot)[(t0 >> level) & COW_VEC_MASK];
    if (level == COW_VEC_BITS) {
        *kid = leaf;
        return COW_OK;
    }
    if (*kid == 0)
        return (*kid = new_path(level - COW_VEC_BITS, leaf)) ? COW_OK : COW_ENOMEM;
    return push_into(kid, level - COW_VEC_BITS, t0, leaf);
}

/* Moves the full tail (first index t0) into the trie as it is; on error
 * nothing moved. */
static int
insert_tail(cow_vecbody *b, size_t t0)
{
    cow_vnode *top;
    cow_word path;
    if (b->root == 0) {
        b->root = b->tail;
        b->shift = 0;
        return COW_OK;
    }
    if (t0 == (size_t)1 << (b->shift + COW_VEC_BITS)) {     /* root is full */
        if ((top = vn_inner_new()) == NULL)
            return COW_ENOMEM;
        if ((path = new_path(b->shift, b->tail)) == 0) {
            vn_release(top);
            return COW_ENOMEM;
        }
        vn_kids(top)[0] = b->root;
        vn_kids(top)[1] = path;
        b->root = cow_word_of(top);
        b->shift += COW_VEC_BITS;
        return COW_OK;
    }
    return push_into(&b->root, b->shift, t0, b->tail);
}

/* Moves the full tail (first index t0) into the trie, packed when that
 * pays; on error nothing moved. */
static int
push_tail_into_trie(cow_vecbody *b, size_t t0)
{
    b->tail = leaf_compacted(b->tail);
    return insert_tail(b, t0);
}

int
cow_vb_push(cow_vecbody *b, cow_val v)
{
    size_t tl = b->len - tailoff(b->len);
    int rc;
    cow_vnode *tail;
    if (b->len == 0) {
        if ((tail = vn_leaf_new(COW_VEC_TAIL_MIN)) == NULL)
            goto nomem;
        b->tail = cow_word_of(tail);
    }
    else if (tl < COW_VEC_WIDTH) {
        unsigned cap = vn_at(&b->tail, COW_NK_VLEAF)->cap;
        if (tl >= cap)
            cap = tl * 2 < COW_VEC_WIDTH ? (unsigned)tl * 2 : COW_VEC_WIDTH;
        if ((rc = vn_own(&b->tail, cap, COW_NK_VLEAF)) < 0)
            goto fail;
    }
    else {
        cow_vnode *fresh = vn_leaf_new(COW_VEC_TAIL_MIN);
        if (fresh == NULL)
            goto nomem;
        if ((rc = push_tail_into_trie(b, b->len - COW_VEC_WIDTH)) < 0) {
            vn_release(fresh);
            goto fail;
        }
        b->tail = cow_word_of(fresh);
    }
    tail = (cow_vnode *)b->tail;
    if (tail->count != (b->len & COW_VEC_MASK) || tail->cap <= tail->count) {
        /* only a corrupt stored tail gets here */
        rc = COW_ECORRUPT;
        goto fail;
    }
    vn_vals(tail)[tail->count++] = v;
    b->len++;
    return COW_OK;
nomem:
    rc = COW_ENOMEM;
fail:
    cow_val_release(&v);
    return rc;
}

/* Detaches the last leaf of the trie (first index t0), freeing inner nodes
 * it leaves empty.  The caller receives the trie's reference to the leaf. */
static int
take_last_leaf(cow_word *slot, uint32_t level, size_t t0, cow_word *leaf)
{
    int rc;
    size_t idx;
    cow_word *kids;
    if (level == 0) {
        *leaf = *slot;
        *slot = 0;
        return COW_OK;
    }
    if ((rc = vn_own(slot, 0, COW_NK_VINNER)) < 0)
        return rc;
    idx = (t0 >> level) & COW_VEC_MASK;
    kids = vn_kids((cow_vnode *)*slot);
    if ((rc = take_last_leaf(&kids[idx], level - COW_VEC_BITS, t0, leaf)) < 0)
        return rc;
    if (idx == 0 && kids[0] == 0) {
        vn_release((cow_vnode *)*slot);
        *slot = 0;
    }
    return COW_OK;
}

/* Restores VEC4 after the trie lost its last leaf (the root is owned). */
static void
collapse_root(cow_vecbody *b)
{
    while (b->root && b->shift > 0 && vn_kids((cow_vnode *)b->root)[1] == 0) {
        cow_word only = vw_share(&vn_kids((cow_vnode *)b->root)[0]);
        vw_release(b->root);
        b->root = only;
        b->shift -= COW_VEC_BITS;
    }
    if (b->root == 0)
        b->shift = 0;
}

int
cow_vb_pop(cow_vecbody *b, cow_val *out)
{
    cow_word leaf = 0;
    cow_vnode *tail;
    cow_val v;
    int rc;
    if (b->len == 0)
        return COW_EINDEX;
    tail = leaf_for(b, b->len - 1);
    v = leaf_get(tail, (b->len - 1) & COW_VEC_MASK);
    cow_val_retain(&v);
    if (b->len - tailoff(b->len) == 1) {
        if (b->len > 1) {
            rc = take_last_leaf(&b->root, b->shift, b->len - 1 - COW_VEC_WIDTH, &leaf);
            if (rc < 0)
                goto fail;
            collapse_root(b);
        }
        vw_release(b->tail);
        b->tail = leaf;
    }
    else {
        if ((rc = vn_own(&b->tail, 0, COW_NK_VLEAF)) < 0)
            goto fail;
        tail = (cow_vnode *)b->tail;
        cow_val_release(&vn_vals(tail)[--tail->count]);
    }
    b->len--;
    *out = v;
    return COW_OK;
fail:
    cow_val_release(&v);
    return rc;
}

/* ---- appending a range of another vector --------------------------------
 *
 * Rebuilding a list around an insert, a delete or a slice moves every
 * value after it.  Pushing them one by one decodes and re-encodes every
 * packed leaf: ~290 instructions a value, 120x list's memmove.  Here a
 * range goes over a leaf at a time: where source and destination leaves
 * line up, the leaf itself is shared (a reference, nothing copied); where
 * they are offset, each new leaf joins the end of one source leaf to the
 * start of the next -- packed items as bytes, or values with a reference
 * each. */

/* The word naming the leaf that holds index i < len, or NULL (COW_ECORRUPT
 * recorded) when a stored inner node on the way is bad. */
static const cow_word *
leaf_word(const cow_vecbody *b, size_t i)
{
    const cow_word *wp = &b->tail;
    if (i >= tailoff(b->len))
        return wp;
    wp = &b->root;
    for (uint32_t level = b->shift; level > 0; level -= COW_VEC_BITS) {
        cow_vnode *n = vn_at(wp, COW_NK_VINNER);
        size_t k = (i >> level) & COW_VEC_MASK;
        if (n == cow_vec_poison(COW_NK_VINNER) || n->leaf || !kid_ok(n, vn_kids(n)[k]))
            return NULL;
        wp = &vn_kids(n)[k];
    }
    return wp;
}

/* Appends full leaf `leaf` (the reference is taken over) to b, whose length
 * is a multiple of the width: the old tail enters the trie, packed when that
 * pays if `compact` (a tail of pushed values; a leaf this section made is in
 * its final form already). */
static int
push_full_leaf(cow_vecbody *b, cow_word leaf, int compact)
{
    int rc = COW_OK;
    if (b->len > 0)
        rc = compact ? push_tail_into_trie(b, b->len - COW_VEC_WIDTH)
                     : insert_tail(b, b->len - COW_VEC_WIDTH);
    if (rc < 0) {
        vw_release(leaf);
        return rc;
    }
    b->tail = leaf;
    b->len += COW_VEC_WIDTH;
    return COW_OK;
}

/* The length of the item a code starts when its bytes can be copied as
 * they are (compact.h's table), or 0: a raw item (its word needs a
 * reference, or an export from pages), an empty SEXT or an unknown code
 * (corrupt: the value path reports them).  Codes from COPYABLE_CODES on
 * are all 0. */
#define COPYABLE_CODES 0x40
static const uint8_t copyable_item_len[COPYABLE_CODES] = {
    1, 1, 1, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 0, 0, 0,                 /* NONE .. FLOAT, RAW */
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 0,           /* SSTR of 0..14 */
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 0,           /* SBYTES */
    0, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 0,           /* SEXT of 1..14 */
};

/* Appends the items [first, first + count) of packed leaf n to items (at
 * *pos; item *done of the new leaf, marked every VN_MARK_EVERY): COW_OK,
 * or COW_ASK_GENERAL for an item copied bytes cannot carry or that runs
 * past the leaf's bytes (copyable_item_len). */
static int
gather_items(cow_vnode *n, unsigned first, unsigned count, uint8_t *items, size_t *pos,
             vn_packed *head, unsigned *done)
{
    const uint8_t *from = vn_items(n);
    size_t at = first ? packed_find(n, first) : 0, end = vn_pk(n)->bytes, start = at, len;
    for (unsigned k = 0; k < count; k++, at += len) {
        if (at >= end || from[at] >= COPYABLE_CODES || (len = copyable_item_len[from[at]]) == 0
            || len > end - at)
            return COW_ASK_GENERAL;
        if ((*done + k) % VN_MARK_EVERY == 0)
            head->mark[(*done + k) / VN_MARK_EVERY] = (uint16_t)(*pos + at - start);
    }
    memcpy(items + *pos, from + start, at - start);     /* the items, in one copy */
    *pos += at - start;
    *done += count;
    return COW_OK;
}

/* The packed leaf of a's values from slot r on, then b's first r values:
 * their items copied as bytes.  COW_ASK_GENERAL when an item cannot be. */
static int
join_packed(cow_vnode *a, cow_vnode *b, unsigned r, cow_word *out)
{
    uint8_t items[COW_VEC_WIDTH * COW_CI_MAX];
    vn_packed head;
    size_t pos = 0;
    unsigned done = 0;
    cow_vnode *p;
    int rc;
    memset(&head, 0, sizeof head);
    if ((rc = gather_items(a, r, COW_VEC_WIDTH - r, items, &pos, &head, &done)) != COW_OK
        || (rc = gather_items(b, 0, r, items, &pos, &head, &done)) != COW_OK)
        return rc;          /* COW_ASK_GENERAL is not negative */
    if ((p = cow_malloc(sizeof(cow_vnode) + sizeof head + pos)) == NULL)
        return COW_ENOMEM;
    *p = (cow_vnode){1, VN_PACKED, COW_VEC_WIDTH, COW_VEC_WIDTH, 0};
    head.bytes = (uint16_t)pos;
    memcpy(vn_pk(p), &head, sizeof head);
    memcpy((uint8_t *)vn_items(p), items, pos);
    live_nodes++;
    *out = cow_word_of(p);
    return COW_OK;
}

/* The leaf of a's values from slot r on, then b's first r values, a
 * reference each (a stored one's words exported, leaf_get): packed when
 * both were and that pays, else plain (plain leaves did not pay). */
static int
join_values(cow_vnode *a, cow_vnode *b, unsigned r, cow_word *out)
{
    cow_vnode *p = vn_leaf_new(COW_VEC_WIDTH);
    if (p == NULL)
        return COW_ENOMEM;
    for (unsigned k = 0; k < COW_VEC_WIDTH; k++) {
        cow_val v = k < COW_VEC_WIDTH - r ? leaf_get(a, r + k) : leaf_get(b, k - (COW_VEC_WIDTH - r));
        cow_val_copy(&vn_vals(p)[k], &v);
    }
    p->count = COW_VEC_WIDTH;
    *out = cow_word_of(p);
    if (a->leaf == VN_PACKED && b->leaf == VN_PACKED)
        *out = leaf_compacted(*out);
    return COW_OK;
}

/* Appends src's 32 values from index i (i + 32 <= len) to b, whose length
 * is a multiple of the width, a leaf at a time (above); `compact` as for
 * push_full_leaf. */
static int
append_leaf_of(cow_vecbody *b, const cow_vecbody *src, size_t i, int compact)
{
    unsigned r = (unsigned)(i & COW_VEC_MASK);
    const cow_word *wp;
    cow_vnode *first, *next;
    cow_word leaf;
    int rc;
    if (r == 0) {                       /* lined up: share the leaf */
        if ((wp = leaf_word(src, i)) == NULL)
            return COW_ECORRUPT;
        first = vn_at(wp, COW_NK_VLEAF);
        if (first == cow_vec_poison(COW_NK_VLEAF) || first->count != COW_VEC_WIDTH) {
            cow_ref_set_error(COW_ECORRUPT);
            return COW_ECORRUPT;
        }
        return push_full_leaf(b, vw_share(wp), compact);
    }
    first = leaf_for(src, i);           /* leaf_for records a bad stored node */
    next = leaf_for(src, i + COW_VEC_WIDTH - 1);
    if (first == cow_vec_poison(COW_NK_VLEAF) || next == cow_vec_poison(COW_NK_VLEAF))
        return COW_ECORRUPT;
    if (first->count != COW_VEC_WIDTH) {  /* a stored trie leaf short of VEC3 */
        cow_ref_set_error(COW_ECORRUPT);
        return COW_ECORRUPT;
    }
    rc = first->leaf == VN_PACKED && next->leaf == VN_PACKED ? join_packed(first, next, r, &leaf)
                                                             : COW_ASK_GENERAL;
    if (rc == COW_ASK_GENERAL)
        rc = join_values(first, next, r, &leaf);
    return rc < 0 ? rc : push_full_leaf(b, leaf, compact);
}

int
cow_vb_append_range(cow_vecbody *b, const cow_vecbody *src, size_t from, size_t to)
{
    int rc = COW_OK, made = 0;         /* b's tail is a leaf append_leaf_of made */
    to = to < src->len ? to : src->len;
    while (from < to && rc == COW_OK) {
        if ((b->len & COW_VEC_MASK) == 0 && to - from >= COW_VEC_WIDTH) {
            rc = append_leaf_of(b, src, from, !made);
            from += COW_VEC_WIDTH;
            made = 1;
        }
        else {
            cow_val v = cow_vb_get(src, from++), c;
            cow_val_copy(&c, &v);
            rc = cow_vb_push(b, c);
            made = 0;
        }
    }
    return rc;
}

void
cow_vec_iter_init(cow_vec_iter *it, const cow_vecbody *b, size_t start)
{
    it->b = b;
    it->i = start;
    it->leaf = NULL;
    it->leaf_base = 0;
    it->leaf_count = 0;
    it->leaf_stored = 0;
    it->leaf_packed = 0;
    it->fast_end = 0;
}

const cow_val *
cow_vec_iter_step(cow_vec_iter *it)
{
    size_t i = it->i, end;
    if (i >= it->b->len)
        return NULL;
    if (it->leaf == NULL || i < it->leaf_base || i - it->leaf_base >= it->leaf_count) {
        cow_vnode *n = leaf_for(it->b, i);      /* checks i against its count */
        it->leaf = vn_vals(n);
        it->leaf_base = i & ~(size_t)COW_VEC_MASK;
        it->leaf_count = n->count;
        it->leaf_stored = vn_stored(n);
        it->leaf_packed = n->leaf == VN_PACKED;
        if (it->leaf_packed)                    /* decoded (and checked) once */
            packed_get_all(n, it->unpacked);
        end = it->leaf_base + it->leaf_count < it->b->len ? it->leaf_base + it->leaf_count
                                                          : it->b->len;
        it->fast_end = (it->leaf_stored && !it->leaf_packed) || i >= end ? 0 : end;
    }
    if (it->leaf_packed) {
        it->i++;
        return &it->unpacked[i - it->leaf_base];
    }
    if (it->leaf_stored) {
        it->i++;
        return stored_val_ok(&it->leaf[i - it->leaf_base]);
    }
    it->i++;
    return &it->leaf[i - it->leaf_base];
}

/* ---- structural diff ---------------------------------------------------- */

/* Kid k of inner node n (NULL for no node), resolved for a walk at level. */
static cow_vnode *
kid_or_null(cow_vnode *n, size_t k, uint32_t level)
{
    if (n == NULL || vn_kids(n)[k] == 0)
        return NULL;
    return vn_kid(n, k, level > COW_VEC_BITS ? COW_NK_VINNER : COW_NK_VLEAF);
}

static int
diff_walk(cow_vnode *a, cow_vnode *b, uint32_t level, size_t base, size_t limit,
          cow_vec_visit visit, void *ctx)
{
    static const cow_word none = 0;
    int rc, one_map = -1;
    if (a == b || base >= limit)
        return COW_OK;
    if (level == 0)
        return visit(ctx, base);
    for (size_t k = 0; k < COW_VEC_WIDTH; k++) {
        size_t kbase = base + (k << level);
        if (kbase >= limit)
            break;
        if (cow_word_same(a ? &vn_kids(a)[k] : &none, b ? &vn_kids(b)[k] : &none, &one_map))
            continue;                   /* shared: skipped without resolving it */
        rc = diff_walk(kid_or_null(a, k, level), kid_or_null(b, k, level), level - COW_VEC_BITS,
                       kbase, limit, visit, ctx);
        if (rc < 0)
            return rc;
    }
    return COW_OK;
}

/* The subtree of b's trie that covers [0, 32 << shift). */
static cow_vnode *
descend_to(const cow_vecbody *b, uint32_t shift)
{
    cow_vnode *n;
    if (b->root == 0)
        return NULL;
    n = vn_at(&b->root, b->shift ? COW_NK_VINNER : COW_NK_VLEAF);
    for (uint32_t s = b->shift; n && s > shift; s -= COW_VEC_BITS)
        n = kid_or_null(n, 0, s);
    return n;
}

int
cow_vb_diff_blocks(const cow_vecbody *a, const cow_vecbody *b,
                   cow_vec_visit visit, void *ctx)
{
    size_t ta = tailoff(a->len), tb = tailoff(b->len);
    size_t common = ta < tb ? ta : tb;
    size_t end = a->len > b->len ? a->len : b->len;
    uint32_t shift = a->shift < b->shift ? a->shift : b->shift;
    int rc;
    if (cow_vb_same(a, b))
        return COW_OK;
    if (common > 0) {
        rc = diff_walk(descend_to(a, shift), descend_to(b, shift), shift, 0, common,
                       visit, ctx);
        if (rc < 0)
            return rc;
    }
    for (size_t k = common; k < end; k += COW_VEC_WIDTH) {
        if (k < a->len && k < b->len && leaf_for(a, k) == leaf_for(b, k))
            continue;     /* one node: same values, same count */
        if (k >= ta && ta == tb && a->len == b->len && cow_word_same(&a->tail, &b->tail, NULL))
            continue;     /* a tail and its stored twin */
        if ((rc = visit(ctx, k)) < 0)
            return rc;
    }
    return COW_OK;
}

/* ---- writing to a segment ------------------------------------------------ */

void
cow_vb_write(cow_segw *w, const cow_vecbody *src, cow_vecbody *dst)
{
    dst->len = src->len;
    dst->shift = src->shift;
    dst->root = cow_segw_ref(w, &src->root, src->shift ? COW_NK_VINNER : COW_NK_VLEAF);
    dst->tail = cow_segw_ref(w, &src->tail, COW_NK_VLEAF);
}

/* Stored vnodes are the heap bytes with refcnt COW_REFCNT_STORED and page
 * words; a leaf keeps only its used slots (cap == count). */
cow_word
cow_vec_write_node(cow_segw *w, const void *node, int kind)
{
    cow_word kids[COW_VEC_WIDTH];
    size_t nkids = 0;
    if (kind == COW_NK_VEC) {
        const cow_vec *v = node;
        cow_vec out;
        memset(&out, 0, sizeof out);    /* no stray padding bytes in the file */
        out.refcnt = COW_REFCNT_STORED;
        out.ident = v->ident;
        cow_vb_write(w, &v->b, &out.b);
        kids[0] = out.b.root;
        kids[1] = out.b.tail;
        return cow_segw_emit(w, &out, sizeof out, NULL, 0, kids, 2);
    }
    cow_vnode *n = (cow_vnode *)node;
    if (n->leaf) {                  /* stored packed when that pays */
        cow_val vals[COW_VEC_WIDTH];
        cow_vnode head = {COW_REFCNT_STORED, VN_LEAF, n->count, n->count, 0};
        struct { vn_packed pk; uint8_t items[COW_VEC_WIDTH * COW_CI_MAX]; } body;
        for (unsigned i = 0; i < n->count; i++) {
            cow_val v = leaf_get(n, i);
            cow_segw_value(w, &v, &vals[i]);
            if (cow_tag_has_word(vals[i].tag))
                kids[nkids++] = vals[i].u.w;
        }
        if (pack_items(vals, n->count, &body.pk, body.items) == 0)
            return cow_segw_emit(w, &head, sizeof head, vals, n->count * sizeof(cow_val),
                                 kids, nkids);
        head.leaf = VN_PACKED;
        return cow_segw_emit(w, &head, sizeof head, &body, sizeof body.pk + body.pk.bytes,
                             kids, nkids);
    }
    cow_vnode head = {COW_REFCNT_STORED, 0, 0, 0, 0};
    for (unsigned i = 0; i < COW_VEC_WIDTH; i++)
        kids[i] = kid_ok(n, vn_kids(n)[i]) ? cow_segw_ref(w, &vn_kids(n)[i], COW_NK_VANY) : 0;
    return cow_segw_emit(w, &head, sizeof head, kids, sizeof kids, kids, COW_VEC_WIDTH);
}

/* ---- the refcounted holder ---------------------------------------------- */

cow_vec *
cow_vec_new(void)
{
    cow_vec *v = cow_calloc(1, sizeof *v);
    if (v) {
        v->refcnt = 1;
        v->ident = cow_next_ident();
    }
    return v;
}

void cow_vec_retain(cow_vec *v) { v->refcnt++; }   /* heap only: see cow_val_copy */
size_t cow_vec_len(const cow_vec *v) { return v->b.len; }

void
cow_vec_release(cow_vec *v)
{
    if (v == NULL || !cow_refcnt_drop(&v->refcnt))
        return;
    cow_vb_clear(&v->b);
    cow_free(v);
}

cow_vec *
cow_vec_clone(const cow_vec *v)
{
    cow_vec *c = cow_vec_new();
    if (c)
        cow_vb_dup(&c->b, &v->b);
    return c;
}

int
cow_vec_own(cow_word *w)
{
    cow_vec *v = cow_ref_get(w, COW_NK_VEC), *c;
    if (v->refcnt == 1)
        return COW_OK;
    if ((c = cow_vec_clone(v)) == NULL)
        return COW_ENOMEM;
    c->ident = v->ident;
    if (cow_word_stored(*w))
        cow_ref_pin(*w, -1);
    else
        cow_vec_release(v);
    *w = cow_word_of(c);
    return COW_OK;
}

/* ---- validation --------------------------------------------------------- */

/* 1 for the poison standing in for a stored node that failed its checks
 * (the read error stays recorded in the caller's scope). */
static int
vn_poison(const cow_vnode *n)
{
    return n == cow_vec_poison(COW_NK_VLEAF) || n == cow_vec_poison(COW_NK_VINNER);
}

/* A packed leaf's items decode, fill its bytes exactly and sit at its marks,
 * and its words flag covers them (VEC7, VEC8; true of any other node). */
static int
packed_ok(const cow_vnode *n)
{
    cow_vnode *p = (cow_vnode *)n;
    size_t pos = 0;
    if (n->leaf != VN_PACKED)
        return 1;
    for (unsigned i = 0; i < n->count; i++) {
        cow_val v;
        if (i % VN_MARK_EVERY == 0 && vn_pk(p)->mark[i / VN_MARK_EVERY] != pos)
            return 0;
        if ((pos = packed_decode(p, pos, &v)) == 0)
            return 0;
        if (cow_tag_has_word(v.tag) && !n->words && !vn_stored(p))
            return 0;                   /* VEC8: packed_words would skip it */
    }
    return pos == vn_pk(p)->bytes && n->cap == n->count;
}

static int
check_node(const cow_vnode *n, uint32_t level, size_t base, size_t limit)
{
    if (n == NULL || n->refcnt < 1 || vn_poison(n))
        return COW_EINVAL;                                    /* VEC5 */
    if (level == 0)
        return n->leaf && n->count == COW_VEC_WIDTH && packed_ok(n) ? COW_OK : COW_EINVAL; /* VEC3 */
    if (n->leaf)
        return COW_EINVAL;
    for (size_t k = 0; k < COW_VEC_WIDTH; k++) {
        size_t kbase = base + (k << level);
        const cow_vnode *kid = vn_kids((cow_vnode *)n)[k] == 0 ? NULL
                               : vn_kid((cow_vnode *)n, k, COW_NK_VANY);
        if ((kbase < limit) != (kid != NULL))
            return COW_EINVAL;                                /* VEC4 */
        if (kid && check_node(kid, level - COW_VEC_BITS, kbase, limit) < 0)
            return COW_EINVAL;
    }
    return COW_OK;
}

int
cow_vec_check(const cow_vecbody *b)
{
    size_t to = tailoff(b->len);
    const cow_vnode *tail = cow_ref_get(&b->tail, COW_NK_VLEAF);
    if ((b->len == 0) != (tail == NULL))
        return COW_EINVAL;                                    /* VEC1 */
    if (tail && (tail->count != b->len - to || tail->count > tail->cap
                 || !tail->leaf || tail->refcnt < 1 || !packed_ok(tail)))
        return COW_EINVAL;                                    /* VEC2 */
    if ((to == 0) != (b->root == 0))
        return COW_EINVAL;                                    /* VEC3 */
    if (b->root == 0)
        return b->shift == 0 ? COW_OK : COW_EINVAL;
    if ((size_t)COW_VEC_WIDTH << b->shift < to
        || (b->shift > 0 && to <= (size_t)COW_VEC_WIDTH << (b->shift - COW_VEC_BITS)))
        return COW_EINVAL;                                    /* VEC4 */
    return check_node(cow_ref_get(&b->root, COW_NK_VANY), b->shift, 0, to);
}
