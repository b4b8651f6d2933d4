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
 *   +--------+------+-----+-------+-----+------------------------------+
 *   | refcnt | leaf | cap | count | pad | leaf: cow_val vals[cap]      |
 *   |  u32   |  u8  | u8  |  u8   | u8  | inner: cow_vnode *kids[32]   |
 *   +--------+------+-----+-------+-----+------------------------------+
 *
 * Operations: cow_vb_get (walk), cow_vb_set (vn_own along the path),
 * cow_vb_push (tail, or push_tail_into_trie when the tail is full),
 * cow_vb_pop (tail, or take_last_leaf when the tail empties).
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
 */
#include <stdlib.h>
#include <string.h>

#include "cowstore/alloc.h"
#include "cowstore/vec.h"

struct cow_vnode {
    uint32_t refcnt;
    uint8_t leaf;       /* 1: vals follow, 0: kids follow */
    uint8_t cap;        /* leaf: value slots allocated */
    uint8_t count;      /* leaf: value slots used */
    uint8_t pad;
};

/* A new tail starts with room for this many values, doubling up to 32, so a
 * small list costs a small node. */
#define COW_VEC_TAIL_MIN 4

static long live_nodes;

long cow_vec_live_nodes(void) { return live_nodes; }

static cow_val *vn_vals(cow_vnode *n) { return (cow_val *)(n + 1); }
static cow_vnode **vn_kids(cow_vnode *n) { return (cow_vnode **)(n + 1); }

static size_t
tailoff(size_t len)
{
    return len == 0 ? 0 : ((len - 1) >> COW_VEC_BITS) << COW_VEC_BITS;
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
    n->pad = 0;
    live_nodes++;
    return n;
}

static cow_vnode *
vn_inner_new(void)
{
    cow_vnode *n = cow_calloc(1, sizeof(cow_vnode) + COW_VEC_WIDTH * sizeof(cow_vnode *));
    if (n == NULL)
        return NULL;
    n->refcnt = 1;
    live_nodes++;
    return n;
}

static void
vn_release(cow_vnode *n)
{
    if (n == NULL || --n->refcnt > 0)
        return;
    if (n->leaf) {
        for (unsigned i = 0; i < n->count; i++)
            cow_val_release(&vn_vals(n)[i]);
    }
    else {
        for (unsigned i = 0; i < COW_VEC_WIDTH; i++)
            vn_release(vn_kids(n)[i]);
    }
    live_nodes--;
    cow_free(n);
}

/* Makes *slot exclusively owned with room for `cap` values (leaves); a shared
 * node is copied and the copy retains its children (VEC5). */
static int
vn_own(cow_vnode **slot, unsigned cap)
{
    cow_vnode *n = *slot, *c;
    if (n->refcnt == 1 && (!n->leaf || n->cap >= cap))
        return COW_OK;
    if (n->leaf) {
        c = vn_leaf_new(cap > n->cap ? cap : n->cap);
        if (c == NULL)
            return COW_ENOMEM;
        c->count = n->count;
        memcpy(vn_vals(c), vn_vals(n), n->count * sizeof(cow_val));
        for (unsigned i = 0; i < n->count; i++)
            cow_val_retain(&vn_vals(c)[i]);
    }
    else {
        c = vn_inner_new();
        if (c == NULL)
            return COW_ENOMEM;
        memcpy(vn_kids(c), vn_kids(n), COW_VEC_WIDTH * sizeof(cow_vnode *));
        for (unsigned i = 0; i < COW_VEC_WIDTH; i++)
            if (vn_kids(c)[i])
                vn_kids(c)[i]->refcnt++;
    }
    vn_release(n);
    *slot = c;
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
    vn_release(b->root);
    vn_release(b->tail);
    cow_vb_init(b);
}

void
cow_vb_dup(cow_vecbody *dst, const cow_vecbody *src)
{
    *dst = *src;
    if (dst->root)
        dst->root->refcnt++;
    if (dst->tail)
        dst->tail->refcnt++;
}

int
cow_vb_same(const cow_vecbody *a, const cow_vecbody *b)
{
    return a->len == b->len && a->root == b->root && a->tail == b->tail;
}

void
cow_vb_trim(cow_vecbody *b)
{
    cow_vnode *t = b->tail, *small;
    if (t == NULL || t->refcnt != 1 || t->cap == t->count)
        return;
    small = cow_realloc(t, sizeof(cow_vnode) + t->count * sizeof(cow_val));
    if (small == NULL)
        return;                      /* keeping the spare slots is harmless */
    small->cap = small->count;
    b->tail = small;
}

static cow_vnode *
leaf_for(const cow_vecbody *b, size_t i)
{
    cow_vnode *n;
    if (i >= tailoff(b->len))
        return b->tail;
    n = b->root;
    for (uint32_t level = b->shift; level > 0; level -= COW_VEC_BITS)
        n = vn_kids(n)[(i >> level) & COW_VEC_MASK];
    return n;
}

const cow_val *
cow_vb_get(const cow_vecbody *b, size_t i)
{
    return &vn_vals(leaf_for(b, i))[i & COW_VEC_MASK];
}

/* Owns the leaf holding index i (< len) and every node above it; *leaf
 * receives it.  Copies hold equal values, so an error changes nothing. */
static int
own_leaf(cow_vecbody *b, size_t i, cow_vnode **leaf)
{
    cow_vnode **slot = &b->tail;
    int rc;
    if (i < tailoff(b->len)) {
        slot = &b->root;
        for (uint32_t level = b->shift; level > 0; level -= COW_VEC_BITS) {
            if ((rc = vn_own(slot, 0)) < 0)
                return rc;
            slot = &vn_kids(*slot)[(i >> level) & COW_VEC_MASK];
        }
    }
    if ((rc = vn_own(slot, (*slot)->cap)) < 0)
        return rc;
    *leaf = *slot;
    return COW_OK;
}

int
cow_vb_set(cow_vecbody *b, size_t i, cow_val v)
{
    cow_vnode *leaf;
    int rc = i < b->len ? own_leaf(b, i, &leaf) : COW_EINDEX;
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
    int rc;
    for (size_t i = from; i < to && i < b->len; i = (i | COW_VEC_MASK) + 1)
        if ((rc = own_leaf(b, i, &leaf)) < 0)
            return rc;
    return COW_OK;
}

/* A chain of inner nodes from `level` down to `leaf`. */
static cow_vnode *
new_path(uint32_t level, cow_vnode *leaf)
{
    cow_vnode *n, *kid;
    if (level == 0)
        return leaf;
    if ((kid = new_path(level - COW_VEC_BITS, leaf)) == NULL)
        return NULL;
    if ((n = vn_inner_new()) == NULL) {
        if (kid != leaf) {
            vn_kids(kid)[0] = NULL;   /* the leaf stays the caller's */
            vn_release(kid);
        }
        return NULL;
    }
    vn_kids(n)[0] = kid;
    return n;
}

static int
push_into(cow_vnode **slot, uint32_t level, size_t t0, cow_vnode *leaf)
{
    int rc = vn_own(slot, 0);
    cow_vnode **kid;
    if (rc < 0)
        return rc;
    kid = &vn_kids(*slot)[(t0 >> level) & COW_VEC_MASK];
    if (level == COW_VEC_BITS) {
        *kid = leaf;
        return COW_OK;
    }
    if (*kid == NULL)
        return (*kid = new_path(level - COW_VEC_BITS, leaf)) ? COW_OK : COW_ENOMEM;
    return push_into(kid, level - COW_VEC_BITS, t0, leaf);
}

/* Moves the full tail (first index t0) into the trie; on error nothing moved. */
static int
push_tail_into_trie(cow_vecbody *b, size_t t0)
{
    cow_vnode *top, *path;
    if (b->root == NULL) {
        b->root = b->tail;
        b->shift = 0;
        return COW_OK;
    }
    if (t0 == (size_t)1 << (b->shift + COW_VEC_BITS)) {     /* root is full */
        if ((top = vn_inner_new()) == NULL)
            return COW_ENOMEM;
        if ((path = new_path(b->shift, b->tail)) == NULL) {
            vn_release(top);
            return COW_ENOMEM;
        }
        vn_kids(top)[0] = b->root;
        vn_kids(top)[1] = path;
        b->root = top;
        b->shift += COW_VEC_BITS;
        return COW_OK;
    }
    return push_into(&b->root, b->shift, t0, b->tail);
}

int
cow_vb_push(cow_vecbody *b, cow_val v)
{
    size_t tl = b->len - tailoff(b->len);
    int rc;
    if (b->len == 0) {
        if ((b->tail = vn_leaf_new(COW_VEC_TAIL_MIN)) == NULL)
            goto nomem;
    }
    else if (tl < COW_VEC_WIDTH) {
        unsigned cap = b->tail->cap;
        if (tl == cap)
            cap = cap * 2 < COW_VEC_WIDTH ? cap * 2 : COW_VEC_WIDTH;
        if ((rc = vn_own(&b->tail, cap)) < 0)
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
        b->tail = fresh;
    }
    vn_vals(b->tail)[b->tail->count++] = v;
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
take_last_leaf(cow_vnode **slot, uint32_t level, size_t t0, cow_vnode **leaf)
{
    int rc;
    size_t idx;
    if (level == 0) {
        *leaf = *slot;
        *slot = NULL;
        return COW_OK;
    }
    if ((rc = vn_own(slot, 0)) < 0)
        return rc;
    idx = (t0 >> level) & COW_VEC_MASK;
    if ((rc = take_last_leaf(&vn_kids(*slot)[idx], level - COW_VEC_BITS, t0, leaf)) < 0)
        return rc;
    if (idx == 0 && vn_kids(*slot)[0] == NULL) {
        vn_release(*slot);
        *slot = NULL;
    }
    return COW_OK;
}

/* Restores VEC4 after the trie lost its last leaf. */
static void
collapse_root(cow_vecbody *b)
{
    while (b->root && b->shift > 0 && vn_kids(b->root)[1] == NULL) {
        cow_vnode *only = vn_kids(b->root)[0];
        only->refcnt++;
        vn_release(b->root);
        b->root = only;
        b->shift -= COW_VEC_BITS;
    }
    if (b->root == NULL)
        b->shift = 0;
}

int
cow_vb_pop(cow_vecbody *b, cow_val *out)
{
    cow_vnode *leaf = NULL;
    cow_val v;
    int rc;
    if (b->len == 0)
        return COW_EINDEX;
    v = vn_vals(b->tail)[b->tail->count - 1];
    cow_val_retain(&v);
    if (b->tail->count == 1) {
        if (b->len > 1) {
            rc = take_last_leaf(&b->root, b->shift, b->len - 1 - COW_VEC_WIDTH, &leaf);
            if (rc < 0)
                goto fail;
            collapse_root(b);
        }
        vn_release(b->tail);
        b->tail = leaf;
    }
    else {
        if ((rc = vn_own(&b->tail, b->tail->cap)) < 0)
            goto fail;
        cow_val_release(&vn_vals(b->tail)[--b->tail->count]);
    }
    b->len--;
    *out = v;
    return COW_OK;
fail:
    cow_val_release(&v);
    return rc;
}

void
cow_vec_iter_init(cow_vec_iter *it, const cow_vecbody *b, size_t start)
{
    it->b = b;
    it->i = start;
    it->leaf = NULL;
    it->leaf_base = 0;
}

const cow_val *
cow_vec_iter_next(cow_vec_iter *it)
{
    size_t i = it->i;
    if (i >= it->b->len)
        return NULL;
    if (it->leaf == NULL || i - it->leaf_base >= COW_VEC_WIDTH || i < it->leaf_base) {
        it->leaf = vn_vals(leaf_for(it->b, i));
        it->leaf_base = i & ~(size_t)COW_VEC_MASK;
    }
    it->i++;
    return &it->leaf[i - it->leaf_base];
}

/* ---- structural diff ---------------------------------------------------- */

static int
diff_walk(cow_vnode *a, cow_vnode *b, uint32_t level, size_t base, size_t limit,
          cow_vec_visit visit, void *ctx)
{
    int rc;
    if (a == b || base >= limit)
        return COW_OK;
    if (level == 0)
        return visit(ctx, base);
    for (size_t k = 0; k < COW_VEC_WIDTH; k++) {
        cow_vnode *ka = a ? vn_kids(a)[k] : NULL, *kb = b ? vn_kids(b)[k] : NULL;
        size_t kbase = base + (k << level);
        if ((rc = diff_walk(ka, kb, level - COW_VEC_BITS, kbase, limit, visit, ctx)) < 0)
            return rc;
    }
    return COW_OK;
}

/* The subtree of b's trie that covers [0, 32 << shift). */
static cow_vnode *
descend_to(const cow_vecbody *b, uint32_t shift)
{
    cow_vnode *n = b->root;
    for (uint32_t s = b->shift; n && s > shift; s -= COW_VEC_BITS)
        n = vn_kids(n)[0];
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
        if ((rc = visit(ctx, k)) < 0)
            return rc;
    }
    return COW_OK;
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

void cow_vec_retain(cow_vec *v) { v->refcnt++; }
size_t cow_vec_len(const cow_vec *v) { return v->b.len; }

void
cow_vec_release(cow_vec *v)
{
    if (v == NULL || --v->refcnt > 0)
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
cow_vec_own(cow_vec **v)
{
    cow_vec *c;
    if ((*v)->refcnt == 1)
        return COW_OK;
    if ((c = cow_vec_clone(*v)) == NULL)
        return COW_ENOMEM;
    c->ident = (*v)->ident;
    cow_vec_release(*v);
    *v = c;
    return COW_OK;
}

/* ---- validation --------------------------------------------------------- */

static int
check_node(const cow_vnode *n, uint32_t level, size_t base, size_t limit)
{
    if (n == NULL || n->refcnt < 1)
        return COW_EINVAL;                                    /* VEC5 */
    if (level == 0)
        return n->leaf && n->count == COW_VEC_WIDTH ? COW_OK : COW_EINVAL;  /* VEC3 */
    if (n->leaf)
        return COW_EINVAL;
    for (size_t k = 0; k < COW_VEC_WIDTH; k++) {
        size_t kbase = base + (k << level);
        const cow_vnode *kid = vn_kids((cow_vnode *)n)[k];
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
    if ((b->len == 0) != (b->tail == NULL))
        return COW_EINVAL;                                    /* VEC1 */
    if (b->tail && (b->tail->count != b->len - to || b->tail->count > b->tail->cap
                    || !b->tail->leaf || b->tail->refcnt < 1))
        return COW_EINVAL;                                    /* VEC2 */
    if ((to == 0) != (b->root == NULL))
        return COW_EINVAL;                                    /* VEC3 */
    if (b->root == NULL)
        return b->shift == 0 ? COW_OK : COW_EINVAL;
    if ((size_t)COW_VEC_WIDTH << b->shift < to
        || (b->shift > 0 && to <= (size_t)COW_VEC_WIDTH << (b->shift - COW_VEC_BITS)))
        return COW_EINVAL;                                    /* VEC4 */
    return check_node(b->root, b->shift, 0, to);
}
