/* Persistent insertion-ordered hash map.
 *
 * Why this shape: a dict must iterate in insertion order, keep a re-assigned
 * key in its place, and pop the last item; a HAMT alone has no order.  So, as
 * CPython's compact dict splits "indices" from "entries", a cow_map is
 *
 *   log    a persistent vector (vec.c) of entries in insertion order: entry i
 *          is the key at log[2i] and the value at log[2i+1]; a deleted entry
 *          keeps its slot with key = HOLE until the log is compacted;
 *   index  a CHAMP-style hash array mapped trie from a key's 32-bit hash to
 *          its entry number, path-copied like the log.  Maps of at most
 *          COW_MAP_LINEAR_MAX entries have no index and are scanned.
 *
 * Lookup: hash the key (stable, hash.c), walk the index 5 bits per level, then
 * compare the probe with the key in the log at the entry the leaf names.
 * Iteration walks the log and skips holes.
 *
 * Worked example: hash32 = 0x2C5 = 0b..._10110_00101.  Level 0 uses bits 0..4
 * (5): bit 5 of the root's datamap says "a leaf is here" and the leaf's rank
 * among set bits (popcount of lower bits) is its position; if bit 5 of the
 * nodemap is set instead, descend into the child and use bits 5..9 (22).
 *
 * Index node bytes (16-byte header, then child words, then leaves):
 *
 *   +--------+------+-------+---------+---------+-----------+---------------+
 *   | refcnt | kind | count | datamap | nodemap | kid  x k  | entry  x d    |
 *   |  u32   | u16  |  u16  |   u32   |   u32   | 8 bytes   | u32 each      |
 *   +--------+------+-------+---------+---------+-----------+---------------+
 *   bitmap node: d = popcount(datamap), k = popcount(nodemap), count unused.
 *   collision node: d = count leaves with one hash32, sorted by key; k = 0.
 *
 * A leaf is only an entry number (format 5; formats 2-4 kept the hash32
 * beside it): the hash bits that place it are its path, and a probe is
 * compared with the key in the log, which a hit reads anyway.  Splitting a
 * slot rehashes the key already there.  Kids come first so that they stay
 * 8-byte aligned after any number of 4-byte leaves.
 *
 * Depth bound: 32 hash bits at 5 per level fill levels 0..6 (shifts 0..30,
 * the last taking 2 bits); keys whose whole hash32 collides sit in a collision
 * node at level 7.  Max depth therefore 8 nodes.
 *
 * Invariants (cow_map_check):
 *  H1  index != NULL iff the log holds more than COW_MAP_LINEAR_MAX entries.
 *  H2  live == number of entries whose key is not a HOLE; the last entry of
 *      the log is never a HOLE (trailing holes are popped at once).
 *  H3  with an index, every live entry appears in it exactly once, under the
 *      hash32 of its key; no hole appears.
 *  H4  a collision node's leaves are ordered by cow_val_order of their keys;
 *      lookups binary-search to the first key not below the probe and scan the
 *      run that compares equal (a run longer than one only for map/set keys
 *      and NaNs).
 *  H5  canonical shape: a non-root bitmap node holds >= 2 leaves or >= 1
 *      child; a collision node (never the root) holds >= 2 leaves.  So equal
 *      maps built in any order have the same index shape.
 *  H6  child words follow ref.h (as VEC6 in vec.c): a stored node is never
 *      written; lookups check an index leaf's entry number against the log
 *      before reading it, so a lying stored index cannot read out of bounds.
 */
#include <stdlib.h>
#include <string.h>

#include "cowstore/alloc.h"
#include "cowstore/hash.h"
#include "cowstore/map.h"
#include "cowstore/node.h"
#include "cowstore/prefetch.h"
#include "cowstore/ref.h"
#include "cowstore/segment.h"
#include "cowstore/twin.h"

enum { HN_BITMAP = 0, HN_COLLISION = 1 };
/* Bits of the hash consumed per level, and the shift at which they run out. */
#define HN_BITS 5
#define HN_HASH_BITS 32

/* Lines past its header prefetched when a walk reaches an index node: a
 * node of the deep, sparse levels a large map misses on spans one to three
 * (prefetch.h). */
#define HN_PREFETCH_LINES 2

/* An index leaf: the number of the entry it names. */
typedef uint32_t cow_hleaf;

struct cow_hnode {
    uint32_t refcnt;
    uint16_t kind;
    uint16_t count;
    uint32_t datamap;
    uint32_t nodemap;
};

static long live_hnodes;
long cow_map_live_nodes(void) { return live_hnodes; }

static uint32_t hash32(uint64_t h) { return (uint32_t)(h ^ (h >> 32)); }
/* Population count: one instruction where the target has one (setup.py
 * asks for POPCNT when the CPU building the extension has it: x86-64 since
 * 2008); else SWAR, since the baseline x86-64 target has no POPCNT and
 * __builtin_popcount would call into libgcc.  d[k] at 10^3: 64 -> 58 ns. */
static inline unsigned
popc(uint32_t x)
{
#if defined(__POPCNT__) || defined(__aarch64__)
    return (unsigned)__builtin_popcount(x);
#else
    x = x - ((x >> 1) & 0x55555555u);
    x = (x & 0x33333333u) + ((x >> 2) & 0x33333333u);
    x = (x + (x >> 4)) & 0x0f0f0f0fu;
    return (x * 0x01010101u) >> 24;
#endif
}
static uint32_t bit_at(uint32_t h, unsigned shift) { return 1u << ((h >> shift) & 31u); }

static unsigned
hn_nleaves(const cow_hnode *n)
{
    return n->kind == HN_COLLISION ? n->count : popc(n->datamap);
}

static inline unsigned hn_nkids(const cow_hnode *n) { return n->kind == HN_BITMAP ? popc(n->nodemap) : 0; }
static inline cow_word *hn_kids(const cow_hnode *n) { return (cow_word *)(n + 1); }
static inline cow_hleaf *hn_leaves(const cow_hnode *n) { return (cow_hleaf *)(hn_kids(n) + hn_nkids(n)); }

static size_t
hn_size(unsigned nleaves, unsigned nkids)
{
    return sizeof(cow_hnode) + nkids * sizeof(cow_word) + nleaves * sizeof(cow_hleaf);
}

/* The node *wp names where one must exist; NULL (corrupt pages) is poison. */
static inline cow_hnode *
hn_at(const cow_word *wp)
{
    cow_hnode *n = cow_ref_get(wp, COW_NK_HNODE);
    if (n == NULL) {
        cow_ref_set_error(COW_ECORRUPT);
        return cow_map_poison(COW_NK_HNODE);
    }
    return n;
}

static void hn_release(cow_hnode *n);

/* A kid word of a stored node is checked where it is followed (H6): it must
 * name a stored node.  A bad one records COW_ECORRUPT. */
static inline int
kid_ok(const cow_hnode *n, cow_word w)
{
    if (n->refcnt != COW_REFCNT_STORED || (w != 0 && cow_word_page_ok(w)))
        return 1;
    cow_ref_set_error(COW_ECORRUPT);
    return 0;
}

/* Every kid of n is well formed (checked before n is copied). */
static int
kids_ok(const cow_hnode *n)
{
    for (unsigned i = 0; n->kind == HN_BITMAP && i < popc(n->nodemap); i++)
        if (!kid_ok(n, hn_kids(n)[i]))
            return 0;
    return 1;
}

/* Kid i of bitmap node n. */
static inline cow_hnode *
hn_kid(const cow_hnode *n, unsigned i)
{
    if (!kid_ok(n, hn_kids(n)[i]))
        return cow_map_poison(COW_NK_HNODE);
    return hn_at(&hn_kids(n)[i]);
}

/* A new reference to the node *wp names, as a word valid anywhere (H6). */
static cow_word
hw_share(const cow_word *wp)
{
    cow_word w = cow_ref_export(wp);
    if (cow_word_stored(w))
        cow_ref_pin(w, +1);
    else if (w)
        ((cow_hnode *)w)->refcnt++;
    return w;
}

static void
hw_release(cow_word w)
{
    if (cow_word_stored(w))
        cow_ref_pin(w, -1);
    else
        hn_release((cow_hnode *)w);
}

/* ---- stored nodes -------------------------------------------------------- */

static cow_hnode poison_hnode = {COW_REFCNT_STORED, HN_BITMAP, 0, 0, 0};
static cow_map poison_map = {COW_REFCNT_STORED, 0, 0, {0, 0, 0, 0}, 0};

void *
cow_map_poison(int kind)
{
    return kind == COW_NK_MAP ? (void *)&poison_map : (void *)&poison_hnode;
}

size_t
cow_map_stored_size(const void *p, size_t avail, int kind)
{
    size_t size;
    if (kind == COW_NK_MAP) {
        const cow_map *m = p;
        size = sizeof(cow_map);
        if (avail < size || m->refcnt != COW_REFCNT_STORED || m->log.len % 2
            || m->live > m->log.len / 2 || !cow_vb_stored_ok(&m->log)
            || !cow_word_page_ok(m->index))
            return 0;
        return size;
    }
    const cow_hnode *n = p;
    if (avail < sizeof(cow_hnode) || n->refcnt != COW_REFCNT_STORED || n->kind > HN_COLLISION)
        return 0;
    size = hn_size(hn_nleaves(n), hn_nkids(n));
    return size <= avail ? size : 0;
}

static cow_hnode *
hn_new(int kind, unsigned nleaves, unsigned nkids)
{
    cow_hnode *n = cow_malloc(hn_size(nleaves, nkids));
    if (n == NULL)
        return NULL;
    n->refcnt = 1;
    n->kind = (uint16_t)kind;
    n->count = (uint16_t)(kind == HN_COLLISION ? nleaves : 0);
    n->datamap = n->nodemap = 0;
    live_hnodes++;
    return n;
}

static void
hn_release(cow_hnode *n)
{
    if (n == NULL || !cow_refcnt_drop(&n->refcnt))
        return;
    if (n->kind == HN_BITMAP)
        for (unsigned i = 0; i < popc(n->nodemap); i++)
            hw_release(hn_kids(n)[i]);
    live_hnodes--;
    cow_free(n);
}

/* Makes *slot exclusively owned (same shape), copying a shared or stored
 * node; the copy holds its own references to the children (H6). */
static int
hn_own(cow_word *slot)
{
    cow_hnode *n = hn_at(slot), *c;
    size_t size;
    if (n->refcnt == 1)
        return COW_OK;
    if (!kids_ok(n))
        return COW_ECORRUPT;
    size = hn_size(hn_nleaves(n), hn_nkids(n));
    if ((c = cow_malloc(size)) == NULL)
        return COW_ENOMEM;
    memcpy(c, n, size);
    c->refcnt = 1;
    live_hnodes++;
    if (n->kind == HN_BITMAP)
        for (unsigned i = 0; i < popc(n->nodemap); i++)
            hn_kids(c)[i] = hw_share(&hn_kids(n)[i]);
    hw_release(*slot);
    *slot = cow_word_of(c);
    return COW_OK;
}

/* ---- keys through the log ----------------------------------------------- */

static size_t nentries(const cow_map *m);

/* Key of an entry named by an index leaf into kv[0], its value beside it
 * into kv[1] (one log walk reads both; borrowed copies, vec.h); a number past
 * the log (only from a corrupt stored index, H6) reads as a HOLE, which
 * equals no probe. */
static void
entry_pair(const cow_map *m, uint32_t entry, cow_val kv[2])
{
    if (entry >= nentries(m)) {
        cow_ref_set_error(COW_ECORRUPT);
        kv[0] = kv[1] = cow_val_hole();
        return;
    }
    cow_vb_get_pair(&m->log, 2 * (size_t)entry, kv);
}

/* The key alone (borrowed copy), checked as by entry_pair. */
static cow_val
entry_key(const cow_map *m, uint32_t entry)
{
    if (entry >= nentries(m)) {
        cow_ref_set_error(COW_ECORRUPT);
        return cow_val_hole();
    }
    return cow_vb_get(&m->log, 2 * (size_t)entry);
}

/* entry_pair and entry_key for the entry an index leaf names.  H3: no leaf
 * names a hole, so only damaged pages (or a map path-copied from them) do,
 * and the read records corruption, as one past the log does; the hole then
 * equals no probe.  (A small map's scan reads holes as a matter of course,
 * through entry_pair and entry_key.) */
static void
leaf_pair(const cow_map *m, cow_hleaf leaf, cow_val kv[2])
{
    entry_pair(m, leaf, kv);
    if (kv[0].tag == COW_T_HOLE)
        cow_ref_set_error(COW_ECORRUPT);
}

static cow_val
leaf_key(const cow_map *m, cow_hleaf leaf)
{
    cow_val k = entry_key(m, leaf);
    if (k.tag == COW_T_HOLE)
        cow_ref_set_error(COW_ECORRUPT);
    return k;
}

/* cow_val_order of two entries' keys, or of one's and a probe. */
static int
key_order(const cow_map *m, uint32_t entry, const cow_val *probe)
{
    cow_val k = entry_key(m, entry);
    return cow_val_order(&k, probe);
}

static int
keys_order(const cow_map *m, uint32_t a, uint32_t b)
{
    cow_val kb = entry_key(m, b);
    return key_order(m, a, &kb);
}

/* Position of the first leaf whose key is not ordered below probe (H4). */
static unsigned
coll_lower_bound(const cow_map *m, const cow_hnode *n, const cow_val *probe)
{
    unsigned lo = 0, hi = n->count;
    while (lo < hi) {
        unsigned mid = (lo + hi) / 2;
        if (key_order(m, hn_leaves(n)[mid], probe) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Whether entry e's key is key, e being one an index leaf names (named:
 * read by leaf_pair and leaf_key) or one a scan meets; the entry's key and
 * value into kv, unless kv is NULL (a caller that wants only where it is:
 * no value decoded). */
static int
entry_is(const cow_map *m, uint32_t e, const cow_val *key, cow_val kv[2], int named)
{
    cow_val k;
    if (kv == NULL) {
        k = named ? leaf_key(m, e) : entry_key(m, e);
        return cow_val_equal(&k, key);
    }
    if (named)
        leaf_pair(m, e, kv);
    else
        entry_pair(m, e, kv);
    return cow_val_equal(&kv[0], key);
}

/* Lookups set *entry and, unless kv is NULL, *kv (the entry's key, its
 * value at kv[1]). */
static int
coll_find(const cow_map *m, const cow_hnode *n, const cow_val *key, size_t *entry,
          cow_val kv_out[2])
{
    cow_val kv_local[2], *kv = kv_out ? kv_out : kv_local;
    for (unsigned i = coll_lower_bound(m, n, key); i < n->count; i++) {
        leaf_pair(m, hn_leaves(n)[i], kv);
        if (cow_val_order(&kv[0], key) != 0)
            break;
        if (cow_val_equal(&kv[0], key)) {
            *entry = hn_leaves(n)[i];
            return COW_FOUND;
        }
    }
    return COW_NOT_FOUND;
}

static int
index_find(const cow_map *m, const cow_val *key, uint32_t h, size_t *entry, cow_val kv[2])
{
    const cow_hnode *n = hn_at(&m->index);
    for (unsigned shift = 0; shift <= HN_HASH_BITS + HN_BITS; shift += HN_BITS) {
        uint32_t bit;
        if (n->kind == HN_COLLISION)    /* reached by every bit of h: its hash32 */
            return coll_find(m, n, key, entry, kv);
        bit = bit_at(h, shift);
        if (n->datamap & bit) {
            cow_hleaf lf = hn_leaves(n)[popc(n->datamap & (bit - 1))];
            if (!entry_is(m, lf, key, kv, 1))
                return COW_NOT_FOUND;
            *entry = lf;
            return COW_FOUND;
        }
        if (!(n->nodemap & bit))
            return COW_NOT_FOUND;
        n = hn_kid(n, popc(n->nodemap & (bit - 1)));
        cow_prefetch_tail(n, HN_PREFETCH_LINES);
    }
    cow_ref_set_error(COW_ECORRUPT);    /* deeper than H5 allows: corrupt pages */
    return COW_NOT_FOUND;
}

static size_t
nentries(const cow_map *m)
{
    return m->log.len / 2;
}

static int
find_entry(const cow_map *m, const cow_val *key, uint64_t hash, size_t *entry, cow_val kv[2])
{
    if (m->index)
        return index_find(m, key, hash32(hash), entry, kv);
    for (size_t e = 0; e < nentries(m); e++) {
        if (entry_is(m, (uint32_t)e, key, kv, 0)) {
            *entry = e;
            return COW_FOUND;
        }
    }
    return COW_NOT_FOUND;
}

/* The index walk of index_find over heap nodes, for the entry a str's hash
 * leads to (its key still to compare): COW_FOUND with *entry, COW_NOT_FOUND,
 * or COW_ASK_GENERAL at a stored node or a collision node. */
static int
heap_index_entry(const cow_map *m, uint32_t h, uint32_t *entry)
{
    cow_word w = m->index;
    for (unsigned shift = 0; shift < HN_HASH_BITS && !cow_word_stored(w); shift += HN_BITS) {
        const cow_hnode *n = (const cow_hnode *)w;
        uint32_t bit = bit_at(h, shift);
        if (n->kind != HN_BITMAP)
            return COW_ASK_GENERAL;
        if (n->datamap & bit) {
            *entry = hn_leaves(n)[popc(n->datamap & (bit - 1))];
            return COW_FOUND;
        }
        if (!(n->nodemap & bit))
            return COW_NOT_FOUND;
        w = hn_kids(n)[popc(n->nodemap & (bit - 1))];
        cow_prefetch_tail((const void *)w, HN_PREFETCH_LINES);
    }
    return COW_ASK_GENERAL;
}

/* The entry the index names for hash by the fast walk: COW_FOUND (a log
 * entry, its key still to compare), COW_NOT_FOUND, or COW_ASK_GENERAL (no
 * index, a stored or collision node). */
static inline __attribute__((always_inline)) int
heap_entry_for(const cow_map *m, uint64_t hash, uint32_t *entry)
{
    int rc;
    if (m->index == 0 || (rc = heap_index_entry(m, hash32(hash), entry)) == COW_ASK_GENERAL)
        return COW_ASK_GENERAL;
    return rc == COW_FOUND && *entry >= nentries(m) ? COW_ASK_GENERAL : rc;
}

/* The fast walks' answer for a map with no index (H1: a few entries): a
 * scan of its one heap leaf (cow_vb_heap_scan_keys). */
static int
scan_fast(const cow_map *m, const cow_val *probe, uint32_t *entry, cow_val *val)
{
    size_t i;
    int rc = cow_vb_heap_scan_keys(&m->log, probe, &i, val);
    if (rc == COW_FOUND)
        *entry = (uint32_t)(i / 2);
    return rc;
}

/* The entry of str [s, s + n) whose hash is hash, and its value unless val
 * is NULL, by the fast walk: as cow_map_find, or COW_ASK_GENERAL. */
static int
find_str_fast(const cow_map *m, const char *s, size_t n, uint64_t hash, uint32_t *entry,
              cow_val *val)
{
    int rc;
    if (m->index == 0) {
        cow_val probe = cow_val_str_view(s, n);
        return scan_fast(m, &probe, entry, val);
    }
    rc = heap_entry_for(m, hash, entry);
    return rc == COW_FOUND ? cow_vb_heap_value_of_str(&m->log, 2 * (size_t)*entry, s, n, val) : rc;
}

/* find_str_fast for an int key x. */
static int
find_int_fast(const cow_map *m, int64_t x, uint64_t hash, uint32_t *entry, cow_val *val)
{
    int rc;
    if (m->index == 0) {
        cow_val probe = cow_val_int(x);
        return scan_fast(m, &probe, entry, val);
    }
    rc = heap_entry_for(m, hash, entry);
    return rc == COW_FOUND ? cow_vb_heap_value_of_int(&m->log, 2 * (size_t)*entry, x, val) : rc;
}

int
cow_map_find(const cow_map *m, const cow_val *key, uint64_t hash, size_t *entry)
{
    const char *s;
    size_t n;
    uint32_t e;
    int rc = COW_ASK_GENERAL;
    /* A str or int key (a write's, a del's) of a heap map: the fast walk first. */
    if (cow_val_str_bytes(key, &s, &n))
        rc = find_str_fast(m, s, n, hash, &e, NULL);
    else if (key->tag == COW_T_INT)
        rc = find_int_fast(m, key->u.i, hash, &e, NULL);
    if (rc == COW_ASK_GENERAL)
        return find_entry(m, key, hash, entry, NULL);
    if (rc == COW_FOUND)
        *entry = e;
    return rc;
}

int
cow_map_get_entry(const cow_map *m, const cow_val *key, uint64_t hash, cow_val kv[2])
{
    size_t e;
    return find_entry(m, key, hash, &e, kv);
}

int
cow_map_get_str(const cow_map *m, const char *s, size_t n, uint64_t hash, cow_val *val)
{
    uint32_t e;
    return find_str_fast(m, s, n, hash, &e, val);
}

int
cow_map_get_int(const cow_map *m, int64_t x, uint64_t hash, cow_val *val)
{
    uint32_t e;
    return find_int_fast(m, x, hash, &e, val);
}

/* ---- index insertion ---------------------------------------------------- */

/* A subtree at `shift` holding two leaves with distinct entries, whose keys
 * hash to ha and hb. */
static cow_hnode *
hn_pair(const cow_map *m, unsigned shift, cow_hleaf a, uint32_t ha, cow_hleaf b, uint32_t hb)
{
    cow_hnode *n, *kid;
    uint32_t ba, bb;
    if (shift >= HN_HASH_BITS) {
        if ((n = hn_new(HN_COLLISION, 2, 0)) == NULL)
            return NULL;
        if (keys_order(m, b, a) < 0) {
            cow_hleaf t = a;
            a = b;
            b = t;
        }
        hn_leaves(n)[0] = a;
        hn_leaves(n)[1] = b;
        return n;
    }
    ba = bit_at(ha, shift);
    bb = bit_at(hb, shift);
    if (ba != bb) {
        if ((n = hn_new(HN_BITMAP, 2, 0)) == NULL)
            return NULL;
        n->datamap = ba | bb;
        hn_leaves(n)[ba < bb ? 0 : 1] = a;
        hn_leaves(n)[ba < bb ? 1 : 0] = b;
        return n;
    }
    if ((kid = hn_pair(m, shift + HN_BITS, a, ha, b, hb)) == NULL)
        return NULL;
    if ((n = hn_new(HN_BITMAP, 0, 1)) == NULL) {
        hn_release(kid);
        return NULL;
    }
    n->nodemap = ba;
    hn_kids(n)[0] = cow_word_of(kid);
    return n;
}

/* A copy of bitmap node n with leaf position `drop` removed (or none if
 * drop < 0), leaf `add` inserted at position `addpos` (if addpos >= 0), and
 * child `kid` inserted at child position `kidpos` (if kidpos >= 0). */
static cow_hnode *
hn_rebuild(const cow_hnode *n, uint32_t datamap, uint32_t nodemap, int drop,
           int addpos, cow_hleaf add, int dropkid, int kidpos, cow_hnode *kid)
{
    cow_hnode *c;
    unsigned w = 0;
    if (!kids_ok(n))
        return NULL;                    /* kid_ok recorded COW_ECORRUPT */
    if ((c = hn_new(HN_BITMAP, popc(datamap), popc(nodemap))) == NULL)
        return NULL;
    c->datamap = datamap;
    c->nodemap = nodemap;
    for (unsigned r = 0; r <= hn_nleaves(n); r++) {
        if ((int)r == addpos)
            hn_leaves(c)[w++] = add;
        if (r < hn_nleaves(n) && (int)r != drop)
            hn_leaves(c)[w++] = hn_leaves(n)[r];
    }
    w = 0;
    for (unsigned r = 0; r <= popc(n->nodemap); r++) {
        if ((int)r == kidpos)
            hn_kids(c)[w++] = cow_word_of(kid);
        if (r < popc(n->nodemap) && (int)r != dropkid)
            hn_kids(c)[w++] = hw_share(&hn_kids(n)[r]);
    }
    return c;
}

static int
replace(cow_word *slot, cow_hnode *c)
{
    if (c == NULL)
        return COW_ENOMEM;
    hw_release(*slot);
    *slot = cow_word_of(c);
    return COW_OK;
}

static int
coll_insert(const cow_map *m, cow_word *slot, cow_hleaf leaf)
{
    cow_hnode *n = hn_at(slot), *c;
    unsigned pos;
    if (n->count == COW_MAP_MAX_COLLISIONS)
        return COW_EOVERFLOW;           /* count would wrap: refuse, never lose the bucket */
    cow_val probe = entry_key(m, leaf);
    pos = coll_lower_bound(m, n, &probe);
    if (n->refcnt == 1) {              /* unshared: grow in place, one memmove */
        c = cow_realloc(n, hn_size(n->count + 1u, 0));
        if (c == NULL)
            return COW_ENOMEM;
        memmove(hn_leaves(c) + pos + 1, hn_leaves(c) + pos, (c->count - pos) * sizeof(cow_hleaf));
        hn_leaves(c)[pos] = leaf;
        c->count++;
        *slot = cow_word_of(c);
        return COW_OK;
    }
    if ((c = hn_new(HN_COLLISION, n->count + 1u, 0)) == NULL)
        return COW_ENOMEM;
    memcpy(hn_leaves(c), hn_leaves(n), pos * sizeof(cow_hleaf));
    hn_leaves(c)[pos] = leaf;
    memcpy(hn_leaves(c) + pos + 1, hn_leaves(n) + pos, (n->count - pos) * sizeof(cow_hleaf));
    return replace(slot, c);
}

/* The common insert into an unshared node: grow it where it lies instead of
 * building a copy (the leaves after it move up by one). */
static int
hn_add_leaf_in_place(cow_word *slot, uint32_t bit, cow_hleaf leaf)
{
    cow_hnode *n = (cow_hnode *)*slot;
    unsigned nleaves = popc(n->datamap), nkids = popc(n->nodemap);
    unsigned pos = popc(n->datamap & (bit - 1));
    cow_hnode *g = cow_realloc(n, hn_size(nleaves + 1, nkids));
    if (g == NULL)
        return COW_ENOMEM;
    memmove(hn_leaves(g) + pos + 1, hn_leaves(g) + pos, (nleaves - pos) * sizeof(cow_hleaf));
    hn_leaves(g)[pos] = leaf;
    g->datamap |= bit;
    *slot = cow_word_of(g);
    return COW_OK;
}

static int key_hash32(const cow_val *key, uint32_t *h);

/* Inserts the leaf of an entry whose key hashes to h. */
static int
hn_insert(const cow_map *m, cow_word *slot, unsigned shift, cow_hleaf leaf, uint32_t h)
{
    cow_hnode *n = hn_at(slot), *sub;
    uint32_t bit, hold;
    int rc;
    if (n->kind == HN_COLLISION)
        return coll_insert(m, slot, leaf);
    bit = bit_at(h, shift);
    if (n->nodemap & bit) {
        if ((rc = hn_own(slot)) < 0)
            return rc;
        n = (cow_hnode *)*slot;
        if (shift >= HN_HASH_BITS)
            return COW_ECORRUPT;          /* a bitmap node below level 6: bad pages */
        return hn_insert(m, &hn_kids(n)[popc(n->nodemap & (bit - 1))], shift + HN_BITS, leaf, h);
    }
    if (n->datamap & bit) {       /* two leaves share this slot: push both down */
        int pos = (int)popc(n->datamap & (bit - 1));
        cow_val held = leaf_key(m, hn_leaves(n)[pos]);
        if (held.tag == COW_T_HOLE)     /* damage, recorded (hashing it says COW_ETYPE) */
            return COW_ECORRUPT;
        if ((rc = key_hash32(&held, &hold)) < 0)
            return rc;
        if ((sub = hn_pair(m, shift + HN_BITS, hn_leaves(n)[pos], hold, leaf, h)) == NULL)
            return COW_ENOMEM;
        cow_hnode *c = hn_rebuild(n, n->datamap & ~bit, n->nodemap | bit, pos, -1, leaf,
                                  -1, (int)popc(n->nodemap & (bit - 1)), sub);
        if (c == NULL)
            hn_release(sub);
        return replace(slot, c);
    }
    if (n->refcnt == 1)
        return hn_add_leaf_in_place(slot, bit, leaf);
    return replace(slot, hn_rebuild(n, n->datamap | bit, n->nodemap, -1,
                                    (int)popc(n->datamap & (bit - 1)), leaf, -1, -1, NULL));
}

/* ---- index deletion ----------------------------------------------------- */

/* When the subtree under n holds exactly two leaves (by H5: a chain of
 * single-child nodes down to one node holding both), deleting `entry` must
 * lift the other into n's parent.  Returns 1 and sets *other then, 0 when
 * the subtree is larger, COW_EKEY when entry is not one of the two. */
static int
pair_other(const cow_hnode *n, uint32_t entry, cow_hleaf *other)
{
    for (unsigned depth = 0; n->kind == HN_BITMAP && n->datamap == 0 && popc(n->nodemap) == 1;
         depth++) {
        if (depth > HN_HASH_BITS / HN_BITS + 1)
            return COW_ECORRUPT;          /* deeper than H5 allows */
        n = hn_kid(n, 0);
    }
    if (hn_nleaves(n) != 2 || (n->kind == HN_BITMAP && n->nodemap))
        return 0;
    for (unsigned i = 0; i < 2; i++)
        if (hn_leaves(n)[i] == entry) {
            *other = hn_leaves(n)[1 - i];
            return 1;
        }
    return COW_EKEY;
}

static int
coll_delete(cow_word *slot, uint32_t entry)
{
    cow_hnode *n = hn_at(slot), *c;
    unsigned pos = 0;
    while (pos < n->count && hn_leaves(n)[pos] != entry)
        pos++;
    if (pos == n->count)
        return COW_EKEY;
    if ((c = hn_new(HN_COLLISION, n->count - 1u, 0)) == NULL)
        return COW_ENOMEM;
    memcpy(hn_leaves(c), hn_leaves(n), pos * sizeof(cow_hleaf));
    memcpy(hn_leaves(c) + pos, hn_leaves(n) + pos + 1,
           (n->count - pos - 1) * sizeof(cow_hleaf));
    return replace(slot, c);
}

/* Atomic: the one node it changes is rebuilt last, in one allocation, so on
 * error the index is as before (path copies by hn_own are equal to their
 * originals). */
static int
hn_delete(cow_word *slot, unsigned shift, uint32_t h, uint32_t entry)
{
    cow_hnode *n = hn_at(slot);
    uint32_t bit;
    cow_hleaf up = 0;
    int rc, kpos;
    if (n->kind == HN_COLLISION)
        return coll_delete(slot, entry);
    bit = bit_at(h, shift);
    if (n->datamap & bit) {
        int pos = (int)popc(n->datamap & (bit - 1));
        if (hn_leaves(n)[pos] != entry)
            return COW_EKEY;
        return replace(slot, hn_rebuild(n, n->datamap & ~bit, n->nodemap, pos, -1, up,
                                        -1, -1, NULL));
    }
    if (!(n->nodemap & bit))
        return COW_EKEY;
    kpos = (int)popc(n->nodemap & (bit - 1));
    if ((rc = pair_other(hn_kid(n, (unsigned)kpos), entry, &up)) < 0)
        return rc;
    if (rc)     /* H5: the child's subtree shrinks to one leaf; lift it here */
        return replace(slot, hn_rebuild(n, n->datamap | bit, n->nodemap & ~bit, -1,
                                        (int)popc(n->datamap & (bit - 1)), up, kpos, -1, NULL));
    /* The child keeps two leaves or more, so it stays a node of its own. */
    if (shift >= HN_HASH_BITS)
        return COW_ECORRUPT;
    if ((rc = hn_own(slot)) < 0)
        return rc;
    return hn_delete(&hn_kids((cow_hnode *)*slot)[kpos], shift + HN_BITS, h, entry);
}

/* ---- the map ------------------------------------------------------------ */

cow_map *
cow_map_new(void)
{
    cow_map *m = cow_calloc(1, sizeof *m);
    if (m) {
        m->refcnt = 1;
        m->ident = cow_next_ident();
    }
    return m;
}

void cow_map_retain(cow_map *m) { m->refcnt++; }   /* heap only: see cow_val_copy */
size_t cow_map_len(const cow_map *m) { return m->live; }
size_t cow_map_entries(const cow_map *m) { return nentries(m); }
cow_val cow_map_entry_key(const cow_map *m, size_t e) { return cow_vb_get(&m->log, 2 * e); }
cow_val cow_map_entry_val(const cow_map *m, size_t e) { return cow_vb_get(&m->log, 2 * e + 1); }

void
cow_map_clear(cow_map *m)
{
    cow_vb_clear(&m->log);
    hw_release(m->index);
    m->index = 0;
    m->live = 0;
}

void
cow_map_release(cow_map *m)
{
    if (m == NULL || !cow_refcnt_drop(&m->refcnt))
        return;
    cow_map_clear(m);
    cow_free(m);
}

cow_map *
cow_map_clone(const cow_map *m)
{
    cow_map *c = cow_map_new();
    if (c == NULL)
        return NULL;
    c->live = m->live;
    cow_vb_dup(&c->log, &m->log);
    c->index = hw_share(&m->index);
    return c;
}

void
cow_map_swap(cow_map *a, cow_map *b)
{
    cow_map t = *a;
    a->live = b->live;
    a->log = b->log;
    a->index = b->index;
    b->live = t.live;
    b->log = t.log;
    b->index = t.index;
}

int
cow_map_own(cow_word *w)
{
    cow_map *m = cow_ref_get(w, COW_NK_MAP), *c;
    if (m->refcnt == 1)
        return COW_OK;
    if ((c = cow_map_clone(m)) == NULL)
        return COW_ENOMEM;
    c->ident = m->ident;
    if (cow_word_stored(*w))
        cow_ref_pin(*w, -1);
    else
        cow_map_release(m);
    *w = cow_word_of(c);
    return COW_OK;
}

int
cow_map_get(const cow_map *m, const cow_val *key, uint64_t hash, cow_val *val)
{
    cow_val kv[2];
    int rc = cow_map_get_entry(m, key, hash, kv);
    if (rc == COW_FOUND)
        *val = kv[1];
    return rc;
}

static int
key_hash32(const cow_val *key, uint32_t *h)
{
    uint64_t full;
    int rc = cow_val_hash(key, &full);
    *h = hash32(full);
    return rc;
}

/* ---- bulk index build ----------------------------------------------------
 * A fresh index over every live entry is built top-down from the entries'
 * hashes, not by an insert per entry (which grew a node with a realloc per
 * leaf: ~900 instructions an entry at 10^4): the items of a subtree are
 * bucketed by their 5-bit chunk at its level (a counting sort), a bucket of
 * one is a leaf, a larger bucket a child built the same way one level down,
 * and a bucket still full past the last chunk a collision node, its leaves
 * sorted by key (H4).  Each node is allocated once, at its final size.  The
 * shape is the one inserts give: H5 fixes it whatever the order. */

/* index_build's answer when asked to check that no two keys are equal and
 * two are (a map being built from entries whose keys may repeat). */
#define INDEX_EQUAL_KEYS 3

/* An entry in a bulk build: its key's hash32 and its number. */
typedef struct hn_item {
    uint32_t h;
    cow_hleaf entry;
} hn_item;

/* Sorts items[0..n) by key order (H4), stably, with scratch of n items:
 * a merge sort, as a collision bucket may be large. */
static void
coll_sort(const cow_map *m, hn_item *items, hn_item *scratch, size_t n)
{
    size_t half = n / 2, i = 0, j = half, w = 0;
    if (n < 2)
        return;
    coll_sort(m, items, scratch, half);
    coll_sort(m, items + half, scratch, n - half);
    while (i < half || j < n)
        scratch[w++] = j == n || (i < half && keys_order(m, items[i].entry, items[j].entry) <= 0)
                       ? items[i++] : items[j++];
    memcpy(items, scratch, n * sizeof *items);
}

/* Whether items[0..n), sorted by key order, hold two equal keys: equal keys
 * order 0, but so do keys that are not equal (maps of one kind, NaNs: see
 * cow_val_order), so each run of keys ordered 0 is compared pairwise. */
static int
coll_has_equal(const cow_map *m, const hn_item *items, size_t n)
{
    for (size_t run = 0, i = 1; i <= n; i++) {
        if (i < n && keys_order(m, items[run].entry, items[i].entry) == 0)
            continue;
        for (size_t a = run; a + 1 < i; a++)
            for (size_t b = a + 1; b < i; b++) {
                cow_val ka = entry_key(m, items[a].entry), kb = entry_key(m, items[b].entry);
                if (cow_val_equal(&ka, &kb))
                    return 1;
            }
        run = i;
    }
    return 0;
}

static int
coll_build(const cow_map *m, hn_item *items, hn_item *scratch, size_t n, int check_equal,
           cow_hnode **out)
{
    coll_sort(m, items, scratch, n);
    if (check_equal && coll_has_equal(m, items, n))
        return INDEX_EQUAL_KEYS;
    if (n > COW_MAP_MAX_COLLISIONS)
        return COW_EOVERFLOW;
    if ((*out = hn_new(HN_COLLISION, (unsigned)n, 0)) == NULL)
        return COW_ENOMEM;
    for (size_t i = 0; i < n; i++)
        hn_leaves(*out)[i] = items[i].entry;
    return COW_OK;
}

/* Builds the subtree at `shift` over items[0..n), n >= 2, into *out;
 * scratch holds n items.  With check_equal, INDEX_EQUAL_KEYS when two keys
 * are equal.  On error nothing is left allocated. */
static int
hn_build(const cow_map *m, hn_item *items, hn_item *scratch, size_t n, unsigned shift,
         int check_equal, cow_hnode **out)
{
    size_t count[1u << HN_BITS] = {0}, start[1u << HN_BITS], at = 0;
    unsigned leaves = 0, kids = 0;
    uint32_t datamap = 0, nodemap = 0;
    cow_hnode *node, *kid;
    int rc = COW_OK;
    if (shift >= HN_HASH_BITS)
        return coll_build(m, items, scratch, n, check_equal, out);
    for (size_t i = 0; i < n; i++)
        count[(items[i].h >> shift) & 31u]++;
    for (unsigned b = 0; b < (1u << HN_BITS); b++) {
        start[b] = at;
        at += count[b];
        datamap |= count[b] == 1 ? 1u << b : 0;
        nodemap |= count[b] > 1 ? 1u << b : 0;
    }
    for (size_t i = 0; i < n; i++)          /* bucketed, stably, into scratch */
        scratch[start[(items[i].h >> shift) & 31u]++] = items[i];
    if ((node = hn_new(HN_BITMAP, popc(datamap), popc(nodemap))) == NULL)
        return COW_ENOMEM;
    node->datamap = datamap;
    node->nodemap = nodemap;
    memset(hn_kids(node), 0, popc(nodemap) * sizeof(cow_word));    /* released if we fail */
    for (unsigned b = 0, first = 0; b < (1u << HN_BITS) && rc == COW_OK; first += count[b++]) {
        if (count[b] == 1)
            hn_leaves(node)[leaves++] = scratch[first].entry;
        else if (count[b] > 1 && (rc = hn_build(m, scratch + first, items + first, count[b],
                                                 shift + HN_BITS, check_equal, &kid)) == COW_OK)
            hn_kids(node)[kids++] = cow_word_of(kid);
    }
    if (rc != COW_OK) {
        hn_release(node);
        return rc;
    }
    *out = node;
    return COW_OK;
}

/* The items of every live entry of m into items (room for nentries(m)):
 * their count, or an error. */
static int
index_items(const cow_map *m, hn_item *items, size_t *count)
{
    size_t n = 0, e = 0, entries = nentries(m);
    cow_vec_iter it;
    const cow_val *key;
    int rc = COW_OK;
    cow_vec_iter_init(&it, &m->log, 0);
    /* a stored log shorter than it claims hands out poison up to its length
     * and records the error, which cow_ref_error() reports */
    for (; e < entries && (key = cow_vec_iter_next(&it)) != NULL && cow_vec_iter_next(&it) != NULL;
         e++) {
        if (key->tag == COW_T_HOLE)
            continue;
        items[n].entry = (cow_hleaf)e;
        if ((rc = key_hash32(key, &items[n++].h)) < 0)
            return rc;
    }
    *count = n;
    return cow_ref_error();
}

/* Builds a fresh index over every live entry (H1, H3) into *out.  h32, when
 * not NULL, holds each entry's hash32 (a log without holes: the keys are
 * not read to hash them).  With check_equal, INDEX_EQUAL_KEYS (nothing
 * built) when two keys are equal. */
static int
index_build(cow_map *m, const uint32_t *h32, int check_equal, cow_word *out)
{
    size_t n = nentries(m);
    hn_item *items = cow_malloc(2 * (n ? n : 1) * sizeof *items);
    cow_hnode *root = NULL;
    int rc = COW_OK;
    if (items == NULL)
        return COW_ENOMEM;
    if (h32 == NULL)
        rc = index_items(m, items, &n);
    else
        for (size_t e = 0; e < n; e++)
            items[e] = (hn_item){h32[e], (cow_hleaf)e};
    if (rc == COW_OK && n < 2 && (root = hn_new(HN_BITMAP, (unsigned)n, 0)) != NULL) {
        root->datamap = n ? bit_at(items[0].h, 0) : 0;      /* H1 allows it: tests do */
        if (n)
            hn_leaves(root)[0] = items[0].entry;
    }
    else if (rc == COW_OK && n >= 2)
        rc = hn_build(m, items, items + n, n, 0, check_equal, &root);
    if (rc == COW_OK && root == NULL)
        rc = COW_ENOMEM;
    cow_free(items);
    if (rc == COW_OK)
        *out = cow_word_of(root);
    return rc;
}

/* set_str_fast's answer when it wrote the value itself. */
#define SET_WRITTEN 3

/* The fast overwrite of a str key's value in a heap map: SET_WRITTEN when
 * written in place (the path was unshared; val stolen), COW_FOUND
 * with *entry when the key is there but the general write must copy the
 * path, COW_NOT_FOUND when it is absent (an insert follows), else
 * COW_ASK_GENERAL. */
static int
set_str_fast(cow_map *m, const cow_val *key, uint64_t hash, cow_val val, size_t *entry)
{
    const char *s;
    size_t n;
    uint32_t e;
    int rc;
    if (!cow_val_str_bytes(key, &s, &n))
        return COW_ASK_GENERAL;
    if ((rc = heap_entry_for(m, hash, &e)) != COW_FOUND)
        return rc;
    *entry = e;
    if ((rc = cow_vb_heap_set_after_str(&m->log, 2 * (size_t)e, s, n, val)) != COW_ASK_GENERAL)
        return rc == COW_FOUND ? SET_WRITTEN : rc;
    return cow_vb_heap_value_of_str(&m->log, 2 * (size_t)e, s, n, NULL);   /* after a copy */
}

/* Appends the entry (key, val), key absent from m and n = nentries(m):
 * steals both on every path; COW_OK or an error (m unchanged). */
static int
append_entry(cow_map *m, size_t n, cow_val key, uint64_t hash, cow_val val)
{
    cow_val undo;
    int rc = COW_OK;
    if (n >= COW_MAP_MAX_ENTRIES) {
        cow_val_release(&key);
        cow_val_release(&val);
        return COW_EOVERFLOW;
    }
    if ((rc = cow_vb_push(&m->log, key)) < 0) {
        cow_val_release(&val);
        return rc;
    }
    if ((rc = cow_vb_push(&m->log, val)) < 0)
        goto undo_key;
    if (m->index)
        rc = hn_insert(m, &m->index, 0, (cow_hleaf)n, hash32(hash));
    else if (n + 1 > COW_MAP_LINEAR_MAX)
        rc = index_build(m, NULL, 0, &m->index);
    if (rc < 0) {
        cow_vb_pop(&m->log, &undo);
        cow_val_release(&undo);
        goto undo_key;
    }
    m->live++;
    return COW_OK;
undo_key:
    cow_vb_pop(&m->log, &undo);
    cow_val_release(&undo);
    return rc;
}

int
cow_map_set(cow_map *m, cow_val key, uint64_t hash, cow_val val)
{
    size_t e, n = nentries(m);
    int rc = set_str_fast(m, &key, hash, val, &e);
    if (rc == SET_WRITTEN) {
        cow_val_release(&key);
        return COW_OK;
    }
    if (rc == COW_ASK_GENERAL)
        rc = cow_map_find(m, &key, hash, &e);
    if (rc == COW_FOUND) {
        cow_val_release(&key);
        return cow_vb_set(&m->log, 2 * e + 1, val);
    }
    if (rc < 0) {
        cow_val_release(&key);
        cow_val_release(&val);
        return rc;
    }
    return append_entry(m, n, key, hash, val);
}

int
cow_map_add(cow_map *m, cow_val key, uint64_t hash, cow_val val)
{
    size_t e;
    int rc = cow_map_find(m, &key, hash, &e);
    if (rc != COW_NOT_FOUND) {
        cow_val_release(&key);
        cow_val_release(&val);
        return rc;
    }
    rc = append_entry(m, nentries(m), key, hash, val);
    return rc < 0 ? rc : COW_NOT_FOUND;
}

int
cow_map_fill(cow_map *m, cow_val *kv, size_t n)
{
    int rc;
    if (n > COW_MAP_MAX_ENTRIES || cow_map_entries(m) != 0) {
        for (size_t i = 0; i < 2 * n; i++)
            cow_val_release(&kv[i]);
        return n > COW_MAP_MAX_ENTRIES ? COW_EOVERFLOW : COW_EINVAL;
    }
    if ((rc = cow_vb_from(&m->log, kv, 2 * n)) < 0)
        return rc;
    m->live = n;
    if (n > COW_MAP_LINEAR_MAX && (rc = index_build(m, NULL, 0, &m->index)) < 0)
        cow_map_clear(m);
    return rc;
}

/* ---- building a map from many entries (cow_map_builder) ------------------ */

void
cow_map_build_begin(cow_map_builder *b, cow_map *m)
{
    b->map = m;
    b->h32 = b->small;
    b->cap = sizeof b->small / sizeof b->small[0];
}

/* Frees the builder's hashes (the map is the caller's). */
static void
build_free(cow_map_builder *b)
{
    if (b->h32 != b->small)
        cow_free(b->h32);
    b->h32 = NULL;
    b->cap = 0;
}

int
cow_map_build_add(cow_map_builder *b, cow_val key, uint64_t hash, cow_val val)
{
    size_t n = nentries(b->map);
    cow_val undo;
    int rc = COW_ENOMEM;
    if (n >= COW_MAP_MAX_ENTRIES) {
        rc = COW_EOVERFLOW;
        goto fail;
    }
    if (n == b->cap) {
        size_t cap = 2 * b->cap;
        uint32_t *h32 = cow_realloc(b->h32 == b->small ? NULL : b->h32, cap * sizeof *h32);
        if (h32 == NULL)
            goto fail;
        if (b->h32 == b->small)
            memcpy(h32, b->small, sizeof b->small);
        b->h32 = h32;
        b->cap = cap;
    }
    if ((rc = cow_vb_push(&b->map->log, key)) < 0) {
        cow_val_release(&val);
        return rc;
    }
    if ((rc = cow_vb_push(&b->map->log, val)) < 0) {
        cow_vb_pop(&b->map->log, &undo);
        cow_val_release(&undo);
        return rc;
    }
    b->h32[n] = hash32(hash);
    b->map->live++;
    return COW_OK;
fail:
    cow_val_release(&key);
    cow_val_release(&val);
    return rc;
}

void
cow_map_build_abort(cow_map_builder *b)
{
    cow_map_clear(b->map);
    build_free(b);
}

/* Whether two of the first n <= COW_MAP_LINEAR_MAX entries, of hash32s h32,
 * have equal keys (a small map's check: no index to find them). */
static int
small_has_equal(const cow_map *m, const uint32_t *h32, size_t n)
{
    for (size_t a = 0; a + 1 < n; a++)
        for (size_t b = a + 1; b < n; b++) {
            cow_val ka, kb;
            if (h32[a] != h32[b])
                continue;
            ka = entry_key(m, (uint32_t)a);
            kb = entry_key(m, (uint32_t)b);
            if (cow_val_equal(&ka, &kb))
                return 1;
        }
    return 0;
}

/* Replaces m's entries, some of whose keys are equal, by what inserting them
 * one by one gives: each key at its first place with its last value. */
static int
merge_equal_keys(cow_map *m)
{
    cow_map *merged = cow_map_new();
    int rc = merged ? COW_OK : COW_ENOMEM;
    for (size_t e = 0; e < nentries(m) && rc == COW_OK; e++) {
        cow_val kv[2];
        uint64_t hash;
        entry_pair(m, (uint32_t)e, kv);
        if ((rc = cow_val_hash(&kv[0], &hash)) < 0)
            break;
        cow_val_retain(&kv[0]);
        cow_val_retain(&kv[1]);
        rc = cow_map_set(merged, kv[0], hash, kv[1]);
    }
    if (rc == COW_OK)
        cow_map_swap(m, merged);
    if (merged)
        cow_map_release(merged);
    return rc;
}

int
cow_map_build_end(cow_map_builder *b)
{
    cow_map *m = b->map;
    size_t n = nentries(m);
    int rc = COW_OK;
    if (n > COW_MAP_LINEAR_MAX)
        rc = index_build(m, b->h32, 1, &m->index);
    else if (small_has_equal(m, b->h32, n))
        rc = INDEX_EQUAL_KEYS;
    if (rc == INDEX_EQUAL_KEYS)
        rc = merge_equal_keys(m);
    cow_vb_trim(&m->log);
    if (rc < 0)
        cow_map_clear(m);
    build_free(b);
    return rc;
}

/* Rewrites the log without holes and rebuilds the index (amortised O(1)). */
static int
compact(cow_map *m)
{
    cow_map fresh = {0};
    int rc = COW_OK;
    for (size_t e = 0; e < nentries(m) && rc == COW_OK; e++) {
        cow_val kv[2];
        entry_pair(m, (uint32_t)e, kv);
        if (kv[0].tag == COW_T_HOLE)
            continue;
        cow_val k = kv[0], v = kv[1];
        cow_val_retain(&k);
        cow_val_retain(&v);
        if ((rc = cow_vb_push(&fresh.log, k)) == COW_OK)
            rc = cow_vb_push(&fresh.log, v);
        else
            cow_val_release(&v);
    }
    if (rc == COW_OK && nentries(&fresh) > COW_MAP_LINEAR_MAX)
        rc = index_build(&fresh, NULL, 0, &fresh.index);
    if (rc < 0) {
        cow_map_clear(&fresh);
        return rc;
    }
    fresh.live = m->live;
    cow_map_clear(m);
    m->log = fresh.log;
    m->index = fresh.index;
    m->live = fresh.live;
    return COW_OK;
}

/* The start of the run of holes that ends just before entry `end`: once the
 * entries from `end` on are gone, the log is cut there (H2). */
static size_t
trailing_start(const cow_map *m, size_t end)
{
    while (end > 0 && entry_key(m, (uint32_t)(end - 1)).tag == COW_T_HOLE)
        end--;
    return end;
}

/* Owns the log nodes that removing entry e writes: e's leaf or, when e is the
 * last entry, those the pops down to the trailing holes' start write. */
static int
own_for_removal(cow_map *m, size_t e)
{
    size_t keep;
    if (e + 1 < nentries(m))
        return cow_vb_own(&m->log, 2 * e, 2 * e + 2);
    keep = trailing_start(m, e);
    return cow_vb_own(&m->log, 2 * keep, m->log.len);
}

/* After a removal whose log nodes own_for_removal owned: pop trailing holes
 * (H2; cannot fail), drop a no longer needed index (H1), and compact when
 * holes dominate -- best effort: a failed compaction leaves a valid map, and
 * the next removal tries again. */
static void
settle(cow_map *m)
{
    cow_val dead;
    size_t keep = trailing_start(m, nentries(m));
    while (nentries(m) > keep) {
        cow_vb_pop(&m->log, &dead);     /* a NONE value, then a HOLE key */
        cow_vb_pop(&m->log, &dead);
    }
    if (m->index && nentries(m) <= COW_MAP_LINEAR_MAX) {
        hw_release(m->index);
        m->index = 0;
    }
    size_t holes = nentries(m) - m->live;
    if (holes > m->live && holes >= COW_MAP_COMPACT_MIN)
        compact(m);
}

/* Removes entry e, of key hash `hash`: its value moved to *out (or
 * released).  COW_FOUND or an error.  Removals do everything that can fail
 * first -- owning the log nodes they write, then the atomic index deletion
 * -- so an error leaves the map as it was, and the updates after them
 * cannot fail. */
static int
remove_entry(cow_map *m, size_t e, uint64_t hash, cow_val *out)
{
    cow_val val;
    int rc;
    if ((rc = own_for_removal(m, e)) < 0
        || (m->index && (rc = hn_delete(&m->index, 0, hash32(hash), (uint32_t)e)) < 0))
        return rc;
    val = cow_map_entry_val(m, e);
    cow_val_retain(&val);
    cow_vb_set(&m->log, 2 * e + 1, cow_val_none());
    cow_vb_set(&m->log, 2 * e, cow_val_hole());
    m->live--;
    settle(m);
    if (out)
        *out = val;
    else
        cow_val_release(&val);
    return COW_FOUND;
}

int
cow_map_del(cow_map *m, const cow_val *key, uint64_t hash, cow_val *out)
{
    size_t e;
    int rc = cow_map_find(m, key, hash, &e);
    return rc == COW_FOUND ? remove_entry(m, e, hash, out) : rc;
}

int
cow_map_toggle(cow_map *m, cow_val key, uint64_t hash, cow_val val)
{
    size_t e;
    int rc = cow_map_find(m, &key, hash, &e);
    if (rc == COW_NOT_FOUND) {
        rc = append_entry(m, nentries(m), key, hash, val);
        return rc < 0 ? rc : COW_NOT_FOUND;
    }
    cow_val_release(&key);
    cow_val_release(&val);
    return rc == COW_FOUND ? remove_entry(m, e, hash, NULL) : rc;
}

int
cow_map_popitem(cow_map *m, cow_val *key, cow_val *val)
{
    size_t e = nentries(m);
    uint32_t h;
    int rc;
    if (m->live == 0)
        return COW_EKEY;
    e--;                                     /* H2: the last entry is live */
    if ((rc = own_for_removal(m, e)) < 0)
        return rc;
    if (m->index) {
        cow_val last = entry_key(m, (uint32_t)e);
        if ((rc = key_hash32(&last, &h)) < 0
            || (rc = hn_delete(&m->index, 0, h, (uint32_t)e)) < 0)
            return rc;
    }
    cow_vb_pop(&m->log, val);
    cow_vb_pop(&m->log, key);
    m->live--;
    settle(m);
    return COW_OK;
}

/* ---- whole-map operations ----------------------------------------------- */

int
cow_map_equal(const cow_map *a, const cow_map *b)
{
    if (a == b || (cow_vb_same(&a->log, &b->log) && a->live == b->live))
        return 1;
    if (a->live != b->live)
        return 0;
    for (size_t e = 0; e < nentries(a); e++) {
        cow_val kv[2], vb;
        uint64_t h;
        entry_pair(a, (uint32_t)e, kv);
        if (kv[0].tag == COW_T_HOLE)
            continue;
        if (cow_val_hash(&kv[0], &h) < 0 || cow_map_get(b, &kv[0], h, &vb) != COW_FOUND
            || !cow_val_equal(&kv[1], &vb))
            return 0;
    }
    return 1;
}

int
cow_map_hash(const cow_map *m, int is_set, uint64_t *out)
{
    uint64_t acc = 0, hk, hv = 0;
    int rc;
    for (size_t e = 0; e < nentries(m); e++) {
        cow_val kv[2];
        entry_pair(m, (uint32_t)e, kv);
        if (kv[0].tag == COW_T_HOLE)
            continue;
        if ((rc = cow_val_hash(&kv[0], &hk)) < 0)
            return rc;
        if (!is_set && (rc = cow_val_hash_content(&kv[1], &hv)) < 0)
            return rc;
        acc += cow_hash_mix64(hk ^ cow_hash_mix64(hv));   /* order-insensitive */
    }
    *out = cow_hash_combine(is_set ? COW_SEED_SET : COW_SEED_MAP, acc + m->live);
    return COW_OK;
}

/* ---- writing to a segment ------------------------------------------------ */

/* Stored index nodes and map headers are the heap bytes with refcnt
 * COW_REFCNT_STORED and page words. */
cow_word
cow_map_write_node(cow_segw *w, const void *node, int kind)
{
    cow_word kids[COW_SEGW_MAX_KIDS];
    if (kind == COW_NK_MAP) {
        const cow_map *m = node;
        cow_map out;
        memset(&out, 0, sizeof out);    /* no stray padding bytes in the file */
        out.refcnt = COW_REFCNT_STORED;
        out.ident = m->ident;
        out.live = m->live;
        cow_vb_write(w, &m->log, &out.log);
        out.index = cow_segw_ref(w, &m->index, COW_NK_HNODE);
        kids[0] = out.log.root;
        kids[1] = out.log.tail;
        kids[2] = out.index;
        return cow_segw_emit(w, &out, sizeof out, NULL, 0, kids, 3);
    }
    const cow_hnode *n = node;
    cow_hnode head = *n;
    size_t nkids = n->kind == HN_BITMAP ? popc(n->nodemap) : 0;
    head.refcnt = COW_REFCNT_STORED;
    if (nkids == 0)         /* a collision node may hold far more than 32 leaves */
        return cow_segw_emit(w, &head, sizeof head, hn_leaves(n),
                             hn_nleaves(n) * sizeof(cow_hleaf), NULL, 0);
    for (size_t i = 0; i < nkids; i++)
        kids[i] = kid_ok(n, hn_kids(n)[i]) ? cow_segw_ref(w, &hn_kids(n)[i], COW_NK_HNODE) : 0;
    /* kids then leaves, as one body */
    struct { cow_word k[COW_SEGW_MAX_KIDS]; cow_hleaf l[COW_SEGW_MAX_KIDS]; } body;
    size_t nl = hn_nleaves(n);
    memcpy(body.k, kids, nkids * sizeof(cow_word));
    memcpy((char *)body.k + nkids * sizeof(cow_word), hn_leaves(n), nl * sizeof(cow_hleaf));
    return cow_segw_emit(w, &head, sizeof head, &body,
                         nkids * sizeof(cow_word) + nl * sizeof(cow_hleaf), kids, nkids);
}

/* ---- validation (H1..H5) ------------------------------------------------ */

/* Bits of hash32 that the path to a node at `shift` fixed. */
static uint32_t
path_mask(unsigned shift)
{
    return shift >= HN_HASH_BITS ? UINT32_MAX : (1u << shift) - 1u;
}

/* H3 for one leaf at slot `slot` of a node at `shift` whose path fixed
 * `prefix`: it names a live entry whose key hashes there. */
static int
check_leaf(const cow_map *m, cow_hleaf lf, unsigned shift, uint32_t prefix, unsigned slot)
{
    uint32_t h;
    cow_val k = lf < nentries(m) ? entry_key(m, lf) : cow_val_hole();
    if (k.tag == COW_T_HOLE || key_hash32(&k, &h) < 0 || (h & path_mask(shift)) != prefix)
        return COW_EINVAL;
    return shift >= HN_HASH_BITS || ((h >> shift) & 31u) == slot ? COW_OK : COW_EINVAL;
}

static int
check_node(const cow_map *m, const cow_hnode *n, unsigned shift, uint32_t prefix,
           int is_root, size_t *seen)
{
    unsigned leaf = 0, kid = 0;
    if (n->kind == HN_COLLISION) {
        if (shift < HN_HASH_BITS || n->count < 2)
            return COW_EINVAL;                                      /* H5 */
        for (unsigned i = 0; i < n->count; i++) {
            if (check_leaf(m, hn_leaves(n)[i], shift, prefix, 0) < 0)
                return COW_EINVAL;                                  /* H3 */
            if (i && keys_order(m, hn_leaves(n)[i - 1], hn_leaves(n)[i]) > 0)
                return COW_EINVAL;                                  /* H4 */
        }
        *seen += n->count;
        return COW_OK;
    }
    if (shift >= HN_HASH_BITS || (n->datamap & n->nodemap)
        || (!is_root && popc(n->nodemap) == 0 && popc(n->datamap) < 2))
        return COW_EINVAL;                                          /* H5 */
    for (unsigned slot = 0; slot < 32; slot++) {
        if (n->datamap & (1u << slot)) {
            if (check_leaf(m, hn_leaves(n)[leaf++], shift, prefix, slot) < 0)
                return COW_EINVAL;                                  /* H3 */
            (*seen)++;
        }
        else if ((n->nodemap & (1u << slot))
                 && check_node(m, hn_kid(n, kid++), shift + HN_BITS,
                               prefix | (uint32_t)slot << shift, 0, seen) < 0)
            return COW_EINVAL;
    }
    return COW_OK;
}

int
cow_map_check(const cow_map *m)
{
    size_t live = 0, seen = 0;
    if (m->log.len % 2 || cow_vec_check(&m->log) < 0)
        return COW_EINVAL;
    for (size_t e = 0; e < nentries(m); e++)
        live += entry_key(m, (uint32_t)e).tag != COW_T_HOLE;
    if (live != m->live || (nentries(m) && entry_key(m, (uint32_t)(nentries(m) - 1)).tag == COW_T_HOLE))
        return COW_EINVAL;                                          /* H2 */
    if ((m->index != 0) != (nentries(m) > COW_MAP_LINEAR_MAX))
        return COW_EINVAL;                                          /* H1 */
    if (m->index && (check_node(m, hn_at(&m->index), 0, 0, 1, &seen) < 0 || seen != live))
        return COW_EINVAL;                                          /* H3 */
    return COW_OK;
}
