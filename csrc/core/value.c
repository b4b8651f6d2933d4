/* cow_val: constructors, reference counting, hashing, equality, ordering.
 * Layout and invariants V1..V6 are in cowstore/value.h. */
/* getentropy (glibc: unistd.h under the default feature set). */
#define _DEFAULT_SOURCE
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cowstore/alloc.h"
#include "cowstore/ext.h"
#include "cowstore/hash.h"
#include "cowstore/map.h"
#include "cowstore/node.h"
#include "cowstore/pack.h"
#include "cowstore/segment.h"
#include "cowstore/twin.h"
#include "cowstore/value.h"
#include "cowstore/vec.h"

static int
blob_new(cow_val *out, cow_tag tag, const void *data, size_t len)
{
    cow_blob *b = cow_malloc(cow_blob_head_size(len) + len);
    if (b == NULL)
        return COW_ENOMEM;
    b->refcnt = 1;
    b->len32 = len < COW_BLOB_HUGE ? (uint32_t)len : COW_BLOB_HUGE;
    if (b->len32 == COW_BLOB_HUGE) {
        uint64_t n = len;
        memcpy(b->body, &n, sizeof n);
    }
    if (len && data)
        memcpy(cow_blob_data(b), data, len);
    memset(out, 0, sizeof *out);
    out->tag = (uint8_t)tag;
    out->u.w = cow_word_of(b);
    return COW_OK;
}

static int
small_or_blob(cow_val *out, cow_tag small, cow_tag big, const void *data, size_t len)
{
    if (len > COW_INLINE_MAX)
        return blob_new(out, big, data, len);
    memset(out, 0, sizeof *out);
    out->tag = (uint8_t)small;
    out->slen = (uint8_t)len;
    cow_copy_short((char *)out + COW_INLINE_OFFSET, data, len);
    return COW_OK;
}

int
cow_val_str(cow_val *out, const char *utf8, size_t len)
{
    return small_or_blob(out, COW_T_SSTR, COW_T_STR, utf8, len);
}

int
cow_val_bytes(cow_val *out, const void *data, size_t len)
{
    return small_or_blob(out, COW_T_SBYTES, COW_T_BYTES, data, len);
}

int
cow_val_bigint(cow_val *out, const uint8_t *le_twos, size_t len)
{
    return blob_new(out, COW_T_BIGINT, le_twos, len);
}

int
cow_val_ext(cow_val *out, const void *data, size_t len)
{
    if (len == 0)
        return COW_EINVAL;              /* V8: a subtype byte at least */
    return small_or_blob(out, COW_T_SEXT, COW_T_EXT, data, len);
}

int
cow_val_blob(cow_val *out, cow_tag tag, const void *data, size_t len)
{
    return blob_new(out, tag, data, len);
}

static cow_val
view(cow_tag tag, const char *data, size_t len)
{
    cow_val v = {0};
    v.tag = (uint8_t)tag;
    v.aux = (uint32_t)len;
    v.u.ref = data;
    return v;
}

cow_val cow_val_str_view(const char *utf8, size_t len) { return view(COW_T_STR_VIEW, utf8, len); }
cow_val cow_val_bytes_view(const void *data, size_t len) { return view(COW_T_BYTES_VIEW, data, len); }

cow_val
cow_val_vec(cow_tag tag, cow_vec *vec)
{
    cow_val v = {0};
    v.tag = (uint8_t)tag;
    v.u.w = cow_word_of(vec);
    return v;
}

cow_val
cow_val_map(cow_tag tag, cow_map *map)
{
    cow_val v = {0};
    v.tag = (uint8_t)tag;
    v.u.w = cow_word_of(map);
    return v;
}

/* Spreads pids over the seed when there is no entropy (Knuth's multiplier). */
#define IDENT_PID_MUL 2654435761u
static uint32_t ident_counter;

uint32_t
cow_next_ident(void)
{
    return ++ident_counter;
}

void
cow_seed_idents(void)
{
    uint32_t seed;
    if (getentropy(&seed, sizeof seed) != 0)    /* no entropy: still apart per process */
        seed = (uint32_t)time(NULL) ^ (uint32_t)getpid() * IDENT_PID_MUL;
    ident_counter = seed;
}

/* The item size a dtype string names if it has the form of a stored kind
 * (value.h: order, kind, 1..COW_NDARRAY_MAX_ITEM in decimal, NUL), else 0.
 * numpy decides which sizes exist for a kind. */
static uint64_t
ndarray_item_size(const char *dtype)
{
    uint64_t size = 0;
    size_t i = 2;
    if (dtype[0] == 0 || strchr(COW_NDARRAY_ORDERS, dtype[0]) == NULL
        || dtype[1] == 0 || strchr(COW_NDARRAY_KINDS, dtype[1]) == NULL)
        return 0;
    for (; dtype[i] >= '0' && dtype[i] <= '9' && size <= COW_NDARRAY_MAX_ITEM; i++)
        size = size * 10 + (uint64_t)(dtype[i] - '0');
    if (dtype[i] != 0 || size == 0 || size > COW_NDARRAY_MAX_ITEM)
        return 0;
    return size;
}

/* 1 when nbytes is the product of the dimensions (each one a numpy intp)
 * and the item size, computed without overflow. */
static int
ndarray_size_ok(const cow_ndarray_head *h, const uint64_t *shape)
{
    uint64_t n = ndarray_item_size(h->dtype);
    if (n == 0)
        return 0;
    for (uint32_t i = 0; i < h->ndim; i++) {
        if (shape[i] > INT64_MAX || (shape[i] && n > UINT64_MAX / shape[i]))
            return 0;
        n *= shape[i];
    }
    return n == h->nbytes;
}

int
cow_val_ndarray(cow_val *out, const char *dtype, uint32_t ndim, const uint64_t *shape,
                const void *data, uint64_t nbytes)
{
    cow_ndarray_head head = {{0}, ndim, 0, nbytes};
    size_t off = sizeof head + (size_t)ndim * sizeof(uint64_t);
    cow_blob *b;
    int rc;
    if (ndim > COW_NDARRAY_MAX_DIM || strlen(dtype) >= sizeof head.dtype)
        return COW_EINVAL;
    memcpy(head.dtype, dtype, strlen(dtype));
    if (!ndarray_size_ok(&head, shape))
        return COW_EINVAL;              /* what cow_ndarray_parts would refuse */
    head.data_off = (uint32_t)off;
    if ((rc = blob_new(out, COW_T_NDARRAY, NULL, off + nbytes)) < 0)
        return rc;
    b = (cow_blob *)out->u.w;
    memcpy(cow_blob_data(b), &head, sizeof head);
    if (ndim)
        memcpy(cow_blob_data(b) + sizeof head, shape, ndim * sizeof(uint64_t));
    if (nbytes)
        memcpy(cow_blob_data(b) + off, data, nbytes);
    return COW_OK;
}

int
cow_ndarray_parts(const cow_val *v, const cow_ndarray_head **head, const uint64_t **shape,
                  const char **data)
{
    const cow_blob *b = cow_val_getblob(v);
    const char *bytes = cow_blob_data(b);
    size_t len = cow_blob_len(b);
    const cow_ndarray_head *h = (const cow_ndarray_head *)bytes;
    const uint64_t *dims = (const uint64_t *)(bytes + sizeof *h);
    if (len < sizeof *h || h->ndim > COW_NDARRAY_MAX_DIM
        || h->data_off != sizeof *h + h->ndim * sizeof(uint64_t)
        || h->data_off > len || len - h->data_off != h->nbytes
        || memchr(h->dtype, 0, sizeof h->dtype) == NULL || !ndarray_size_ok(h, dims))
        return COW_ECORRUPT;
    *head = h;
    *shape = dims;
    *data = bytes + h->data_off;
    return COW_OK;
}

void
cow_val_retain(const cow_val *v)
{
    if (!cow_tag_has_word(v->tag))
        return;
    if (cow_word_stored(v->u.w))
        cow_ref_pin(v->u.w, +1);
    else if (cow_tag_has_blob(v->tag))
        ((cow_blob *)v->u.w)->refcnt++;
    else if (cow_tag_is_vec(v->tag))
        cow_vec_retain((cow_vec *)v->u.w);
    else if (v->tag == COW_T_PACKED)
        cow_pack_retain((cow_pack *)v->u.w);
    else
        cow_map_retain((cow_map *)v->u.w);
}

void
cow_vals_release(cow_val *vals, size_t n)
{
    for (size_t i = 0; i < n; i++)
        cow_val_release(&vals[i]);
}

void
cow_val_copy(cow_val *dst, const cow_val *src)
{
    *dst = *src;
    if (cow_tag_has_word(src->tag)) {
        dst->u.w = cow_ref_export(&src->u.w);
        cow_val_retain(dst);
    }
}

/* ---- releasing deep nesting ----------------------------------------------
 * Freeing a container releases its values, so freeing nested heap
 * containers recurses once per level -- and a copy is O(1), so a loop of
 * x = CowDict({'a': x}) nests 10^5 levels without any recursion to build
 * them.  As CPython's trashcan does for its containers: past
 * RELEASE_DEPTH_MAX levels a container's release is deferred to a list of
 * the thread's, which the outermost release drains, each entry again from
 * depth 1.  The list is allocated only then; if it cannot grow, the release
 * recurses as before. */
#define RELEASE_DEPTH_MAX 512
static COW_THREAD_LOCAL unsigned release_depth;
static COW_THREAD_LOCAL cow_val *deferred;
static COW_THREAD_LOCAL size_t ndeferred, deferred_cap;

static int
release_defer(const cow_val *v)
{
    if (ndeferred == deferred_cap) {
        size_t cap = deferred_cap ? 2 * deferred_cap : 64;
        cow_val *grown = cow_realloc(deferred, cap * sizeof *grown);
        if (grown == NULL)
            return 0;
        deferred = grown;
        deferred_cap = cap;
    }
    deferred[ndeferred++] = *v;
    return 1;
}

static void
release_container(const cow_val *v)
{
    if (cow_tag_is_vec(v->tag))
        cow_vec_release((cow_vec *)v->u.w);
    else
        cow_map_release((cow_map *)v->u.w);
}

static void
release_nested(const cow_val *v)
{
    if (release_depth >= RELEASE_DEPTH_MAX && release_defer(v))
        return;
    release_depth++;
    release_container(v);
    if (release_depth == 1)
        while (ndeferred > 0) {
            cow_val next = deferred[--ndeferred];
            release_container(&next);
        }
    if (--release_depth == 0 && deferred != NULL) {
        cow_free(deferred);
        deferred = NULL;
        deferred_cap = 0;
    }
}

void
cow_val_release_word(cow_val *v)     /* v has a word (cow_tag_has_word) */
{
    if (cow_word_stored(v->u.w))
        cow_ref_pin(v->u.w, -1);
    else if (cow_tag_has_blob(v->tag)) {
        cow_blob *b = (cow_blob *)v->u.w;
        if (cow_refcnt_drop(&b->refcnt))
            cow_free(b);
    }
    else if (v->tag == COW_T_PACKED)
        cow_pack_release((cow_pack *)v->u.w);
    else
        release_nested(v);      /* a vector or a map */
    *v = cow_val_none();
}

int
cow_val_stored(const cow_val *v)
{
    return cow_tag_has_word(v->tag) && cow_word_stored(v->u.w);
}

int
cow_val_check_stored(const cow_val *v)
{
    if (v->tag >= COW_T__COUNT || v->tag == COW_T_STR_VIEW || v->tag == COW_T_BYTES_VIEW)
        return COW_ECORRUPT;
    if ((v->tag == COW_T_SSTR || v->tag == COW_T_SBYTES) && v->slen > COW_INLINE_MAX)
        return COW_ECORRUPT;
    if (v->tag == COW_T_SEXT && (v->slen == 0 || v->slen > COW_INLINE_MAX))
        return COW_ECORRUPT;            /* V8 */
    if (v->tag == COW_T_PACKED && v->slen != COW_T_DICT && v->slen != COW_T_FDICT
        && v->slen != COW_T_LIST && v->slen != COW_T_FLIST && v->slen != COW_T_TUPLE)
        return COW_ECORRUPT;    /* pack.h: the container tags a pack holds */
    if (cow_tag_has_word(v->tag) && (v->u.w == 0 || !cow_word_page_ok(v->u.w)))
        return COW_ECORRUPT;    /* V7: in pages, a value's word is a stored reference */
    return COW_OK;
}

/* ---- stored blobs --------------------------------------------------------- */

/* A stored blob: the heap bytes with refcnt COW_REFCNT_STORED. */
cow_word
cow_blob_write_node(cow_segw *w, const void *node, int kind)
{
    const cow_blob *b = node;
    size_t len = cow_blob_len(b), hsize = cow_blob_head_size(len);
    char head[sizeof(cow_blob) + sizeof(uint64_t)];
    uint32_t stored = COW_REFCNT_STORED;
    memcpy(head, b, hsize);
    memcpy(head, &stored, sizeof stored);
    return cow_segw_emit(w, head, hsize, cow_blob_data(b), len, NULL, 0);
}

static cow_blob poison_blob = {COW_REFCNT_STORED, 0};

void *cow_blob_poison(int kind) { return &poison_blob; }

size_t
cow_blob_stored_size(const void *p, size_t avail, int kind)
{
    const cow_blob *b = p;
    size_t hsize = sizeof(cow_blob), len;
    if (avail < hsize || b->refcnt != COW_REFCNT_STORED)
        return 0;
    if (b->len32 == COW_BLOB_HUGE && avail < (hsize += sizeof(uint64_t)))
        return 0;
    len = cow_blob_len(b);
    return len <= avail - hsize && cow_blob_head_size(len) == hsize ? hsize + len : 0;
}

void
cow_val_span(const cow_val *v, const char **data, size_t *len)
{
    switch (v->tag) {
    case COW_T_SSTR:
    case COW_T_SBYTES:
    case COW_T_SEXT:
        *data = (const char *)v + COW_INLINE_OFFSET;
        *len = v->slen <= COW_INLINE_MAX ? v->slen : 0;   /* V1; pages may lie */
        return;
    case COW_T_STR_VIEW:
    case COW_T_BYTES_VIEW:
        *data = v->u.ref;
        *len = v->aux;
        return;
    case COW_T_STR:
    case COW_T_BYTES:
    case COW_T_BIGINT:
    case COW_T_NDARRAY:
    case COW_T_EXT:
        *data = cow_blob_data(cow_val_getblob(v));
        *len = cow_blob_len(cow_val_getblob(v));
        return;
    default:
        *data = NULL;
        *len = 0;
    }
}

/* ---- canonical numbers (V3) ----------------------------------------------
 * Every number maps to one of: an int64 (INT, BOOL, integral floats in range),
 * a bigint byte string (BIGINT, integral floats beyond int64) or a
 * non-integral float.  Equal numbers have equal canonical forms. */

enum { NUM_INT, NUM_BIG, NUM_FLT };
/* A double is below 2^1024: 128 magnitude bytes plus a sign byte. */
#define NUM_BUF_BYTES 130
/* 2^63 as a double: integral doubles at or beyond it do not fit int64. */
#define TWO_POW_63 9223372036854775808.0

typedef struct cow_num {
    int kind;
    int64_t i;
    double f;
    const uint8_t *big;
    size_t nbig;
    uint8_t buf[NUM_BUF_BYTES];
} cow_num;

size_t
cow_bigint_minimal_len(const uint8_t *le, size_t len)
{
    while (len > 1) {
        uint8_t top = le[len - 1], next = le[len - 2];
        if ((top == 0x00 && !(next & 0x80)) || (top == 0xff && (next & 0x80)))
            len--;
        else
            break;
    }
    return len;
}

/* Two's-complement bytes of an integral double with |f| >= 2^63. */
static void
num_from_big_double(cow_num *n, double f)
{
    int exp;
    double mant = frexp(fabs(f), &exp);          /* |f| = mant * 2^exp */
    uint64_t m = (uint64_t)ldexp(mant, 53);      /* 53 significant bits */
    int shift = exp - 53;                        /* >= 11 since |f| >= 2^63 */
    memset(n->buf, 0, sizeof n->buf);
    for (int bit = 0; bit < 53; bit++)
        if (m >> bit & 1) {
            int pos = bit + shift;
            n->buf[pos / 8] |= (uint8_t)(1u << (pos % 8));
        }
    if (f < 0) {                                 /* negate: invert, add one */
        int carry = 1;
        for (size_t k = 0; k < sizeof n->buf; k++) {
            int x = (uint8_t)~n->buf[k] + carry;
            n->buf[k] = (uint8_t)x;
            carry = x >> 8;
        }
    }
    n->kind = NUM_BIG;
    n->big = n->buf;
    n->nbig = cow_bigint_minimal_len(n->buf, sizeof n->buf);
}

/* An int, bigint or float as the canonical form of a double. */
static void
num_from_double(cow_num *n, double f)
{
    if (isfinite(f) && floor(f) == f) {
        if (f >= -TWO_POW_63 && f < TWO_POW_63) {
            n->kind = NUM_INT;
            n->i = (int64_t)f;
        }
        else
            num_from_big_double(n, f);
        return;
    }
    n->kind = NUM_FLT;
    n->f = f;
}

/* An extension value equal to a number (ext.h E1) as that number. */
static void
num_canon_ext(const cow_val *v, cow_num *n)
{
    int kind = COW_EXT_NUM_INT;
    double f = 0;
    n->i = 0;                           /* a value no number: callers check first */
    cow_ext_number(v, &kind, &n->i, &f, &n->big, &n->nbig);
    if (kind == COW_EXT_NUM_FLOAT)
        num_from_double(n, f);
    else
        n->kind = kind == COW_EXT_NUM_INT ? NUM_INT : NUM_BIG;
}

static void
num_canon(const cow_val *v, cow_num *n)
{
    switch (v->tag) {
    case COW_T_BOOL:
    case COW_T_INT:
        n->kind = NUM_INT;
        n->i = v->u.i;
        return;
    case COW_T_BIGINT:
        n->kind = NUM_BIG;
        n->big = (const uint8_t *)cow_blob_data(cow_val_getblob(v));
        n->nbig = cow_blob_len(cow_val_getblob(v));
        return;
    case COW_T_SEXT:
    case COW_T_EXT:
        num_canon_ext(v, n);
        return;
    default:
        num_from_double(n, v->u.f);
    }
}

static uint64_t
num_hash(const cow_val *v)
{
    cow_num n;
    uint64_t bits;
    num_canon(v, &n);
    if (n.kind == NUM_INT)
        return cow_val_int_hash(n.i);
    if (n.kind == NUM_BIG)
        return cow_hash_bytes(n.big, n.nbig, COW_SEED_BIGINT);
    memcpy(&bits, &n.f, sizeof bits);
    return cow_hash_mix64(bits ^ COW_SEED_FLOAT);
}

static int
cmp_u64(uint64_t a, uint64_t b)
{
    return (a > b) - (a < b);
}

static int
num_order(const cow_val *a, const cow_val *b)
{
    cow_num x, y;
    num_canon(a, &x);
    num_canon(b, &y);
    if (x.kind != y.kind)
        return x.kind < y.kind ? -1 : 1;
    if (x.kind == NUM_INT)
        return (x.i > y.i) - (x.i < y.i);
    if (x.kind == NUM_BIG) {
        if (x.nbig != y.nbig)
            return x.nbig < y.nbig ? -1 : 1;
        return memcmp(x.big, y.big, x.nbig);
    }
    if (x.f == y.f)
        return 0;
    uint64_t bx, by;
    memcpy(&bx, &x.f, sizeof bx);
    memcpy(&by, &y.f, sizeof by);
    return cmp_u64(bx, by);     /* NaNs by their bits: see num_is_nan */
}

/* A NaN orders as its bit pattern, so a collision bucket can sort NaN keys
 * (H4 needs an antisymmetric order), yet it equals nothing, itself included. */
static int
num_is_nan(const cow_val *v)
{
    cow_num n;
    if (v->tag == COW_T_FLOAT)
        return isnan(v->u.f);
    num_canon(v, &n);
    return n.kind == NUM_FLT && isnan(n.f);
}

/* 1 for numbers: the numeric tags and extension values equal to one (E1). */
static int
is_number(const cow_val *v)
{
    int kind;
    int64_t i;
    double f;
    const uint8_t *big;
    size_t nbig;
    return cow_tag_is_number(v->tag) || cow_ext_number(v, &kind, &i, &f, &big, &nbig);
}

/* ---- nesting bound --------------------------------------------------------- */

/* Containers nested deeper than this are refused by the recursive walks
 * (hash, equality, order), so that they get an error, not a stack overflow:
 * heap ones (a loop of x = CowDict({'a': x}) nests without recursing) get
 * COW_EDEPTH, a RecursionError as dict's walks raise, and stored ones
 * COW_ECORRUPT -- a commit refuses nesting this deep (cow_store_put), so
 * only pages describing a cycle get here. */
#define COW_MAX_NESTING 4096
static COW_THREAD_LOCAL unsigned nesting;   /* per thread: walks in two threads do not add up */

/* Enters container v's walk: COW_OK, or the error (recorded in the read
 * scope too) when the bound is reached. */
static int
nest_enter(const cow_val *v)
{
    if (nesting >= COW_MAX_NESTING) {
        int err = cow_word_stored(v->u.w) ? COW_ECORRUPT : COW_EDEPTH;
        cow_ref_set_error(err);
        return err;
    }
    nesting++;
    return COW_OK;
}

static void nest_leave(void) { nesting--; }

/* ---- hashing ------------------------------------------------------------ */

static uint64_t
span_hash(const cow_val *v, uint64_t seed)
{
    const char *p;
    size_t n;
    cow_val_span(v, &p, &n);
    return cow_hash_bytes(p, n, seed);
}

static int hash_impl(const cow_val *v, int frozen, uint64_t *out);

static int
vec_hash(const cow_vec *vec, uint64_t seed, int frozen, uint64_t *out)
{
    cow_vec_iter it;
    const cow_val *e;
    uint64_t acc = seed, h;
    cow_vec_iter_init(&it, &vec->b, 0);
    while ((e = cow_vec_iter_next(&it)) != NULL) {
        int rc = hash_impl(e, frozen, &h);
        if (rc < 0)
            return rc;
        acc = cow_hash_combine(acc, h);
    }
    *out = cow_hash_combine(acc, vec->b.len);
    return COW_OK;
}

/* frozen: inside a frozen container, whose nested containers are read back
 * frozen, so mutable tags hash by content there. */
static int hash_walk(const cow_val *v, int frozen, uint64_t *out);

/* A packed value as the general container it holds (pack.h, P1), owned by
 * *tmp, which the caller releases; any other value as itself.  A damaged pack
 * reads as None, its error recorded in the read scope. */
static const cow_val *
general(const cow_val *v, cow_val *tmp)
{
    int rc;
    *tmp = cow_val_none();
    if (v->tag != COW_T_PACKED)
        return v;
    if ((rc = cow_pack_unpack(v, tmp)) < 0) {
        cow_ref_set_error(rc);
        *tmp = cow_val_none();
    }
    return tmp;
}

static int
hash_packed(const cow_val *v, int frozen, uint64_t *out)
{
    cow_val tmp;
    int rc = hash_impl(general(v, &tmp), frozen, out);
    cow_val_release(&tmp);
    return rc;
}

static int
hash_impl(const cow_val *v, int frozen, uint64_t *out)
{
    int rc;
    if (v->tag == COW_T_PACKED)
        return hash_packed(v, frozen, out);
    if (!cow_tag_is_vec(v->tag) && !cow_tag_is_map(v->tag))
        return hash_walk(v, frozen, out);
    if ((rc = nest_enter(v)) < 0)
        return rc;
    rc = hash_walk(v, frozen, out);
    nest_leave();
    return rc;
}

static int
hash_walk(const cow_val *v, int frozen, uint64_t *out)
{
    int t = v->tag;
    if (is_number(v)) {
        *out = num_hash(v);
        return COW_OK;
    }
    if (cow_tag_is_str(t)) {
        *out = span_hash(v, COW_SEED_STR);
        return COW_OK;
    }
    if (cow_tag_is_bytes(t)) {
        *out = span_hash(v, COW_SEED_BYTES);
        return COW_OK;
    }
    switch (t) {
    case COW_T_NONE:
        *out = COW_HASH_NONE;
        return COW_OK;
    case COW_T_SEXT:
    case COW_T_EXT:
        return cow_ext_hash(v, out);
    case COW_T_TUPLE:
        return vec_hash(cow_val_getvec(v), COW_SEED_TUPLE, frozen, out);
    case COW_T_LIST:
    case COW_T_FLIST:
        if (!frozen && t == COW_T_LIST)
            break;
        return vec_hash(cow_val_getvec(v), COW_SEED_TUPLE ^ COW_SEED_MAP, 1, out);
    case COW_T_DICT:
    case COW_T_FDICT:
        if (!frozen && t == COW_T_DICT)
            break;
        return cow_map_hash(cow_val_getmap(v), 0, out);
    case COW_T_SET:
    case COW_T_FSET:
        if (!frozen && t == COW_T_SET)
            break;
        return cow_map_hash(cow_val_getmap(v), 1, out);
    }
    return COW_ETYPE;
}

int
cow_val_hash(const cow_val *v, uint64_t *out)
{
    return hash_impl(v, 0, out);
}

int
cow_val_hash_content(const cow_val *v, uint64_t *out)
{
    return hash_impl(v, 1, out);
}


/* ---- equality and order ------------------------------------------------- */

static int
span_order(const cow_val *a, const cow_val *b)
{
    const char *pa, *pb;
    size_t na, nb;
    cow_val_span(a, &pa, &na);
    cow_val_span(b, &pb, &nb);
    if (na != nb)
        return na < nb ? -1 : 1;
    return na ? memcmp(pa, pb, na) : 0;
}

static int
vec_equal(const cow_vec *a, const cow_vec *b)
{
    cow_vec_iter ia, ib;
    const cow_val *x, *y;
    if (a == b || cow_vb_same(&a->b, &b->b))
        return 1;
    if (a->b.len != b->b.len)
        return 0;
    cow_vec_iter_init(&ia, &a->b, 0);
    cow_vec_iter_init(&ib, &b->b, 0);
    while ((x = cow_vec_iter_next(&ia)) != NULL) {
        y = cow_vec_iter_next(&ib);
        if (!cow_val_equal(x, y))
            return 0;
    }
    return 1;
}

/* Kinds that can be equal to each other share a rank. */
static int
rank(int t)
{
    if (cow_tag_is_number(t)) return 1;
    if (cow_tag_is_str(t)) return 2;
    if (cow_tag_is_bytes(t)) return 3;
    switch (t) {
    case COW_T_NONE: return 0;
    case COW_T_TUPLE: return 4;
    case COW_T_LIST:
    case COW_T_FLIST: return 5;
    case COW_T_DICT:
    case COW_T_FDICT: return 6;
    case COW_T_SET:
    case COW_T_FSET: return 7;
    case COW_T_NDARRAY: return 8;   /* equal when dtype, shape and bytes are */
    case COW_T_SEXT:
    case COW_T_EXT: return 9;       /* extension leaves that are no numbers */
    }
    return 10;
}

/* A value's rank: numbers among extension leaves rank as numbers (E1). */
static int
vrank(const cow_val *v)
{
    return is_number(v) ? 1 : rank(v->tag);
}

static int equal_walk(const cow_val *a, const cow_val *b);

/* The tag a value has as a Python object: a pack's container's. */
static int logical_tag(const cow_val *v) { return v->tag == COW_T_PACKED ? v->slen : v->tag; }

static int
equal_packed(const cow_val *a, const cow_val *b)
{
    cow_val ta, tb;
    int eq;
    if (rank(logical_tag(a)) != rank(logical_tag(b)))
        return 0;
    if (a->tag == b->tag && cow_pack_offset(a) == cow_pack_offset(b)
        && cow_word_same(&a->u.w, &b->u.w, NULL))
        return 1;                       /* one body of one node (pack.h P6) */
    eq = cow_val_equal(general(a, &ta), general(b, &tb));
    cow_val_release(&ta);
    cow_val_release(&tb);
    return eq;
}

int
cow_val_equal(const cow_val *a, const cow_val *b)
{
    int eq;
    const char *pa, *pb;
    size_t na, nb;
    /* The hot case: a key found in a map (short, inline) against a probe (a
     * view of the caller's str), told apart with no call. */
    if (cow_val_str_bytes(a, &pa, &na) && cow_val_str_bytes(b, &pb, &nb))
        return na == nb && cow_bytes_equal(pa, pb, na);
    if (cow_tag_is_str(a->tag) && cow_tag_is_str(b->tag))
        return span_order(a, b) == 0;
    if (a->tag == COW_T_PACKED || b->tag == COW_T_PACKED)
        return equal_packed(a, b);
    if (!cow_tag_is_vec(a->tag) && !cow_tag_is_map(a->tag))
        return equal_walk(a, b);
    if (nest_enter(a) < 0)
        return 0;
    eq = equal_walk(a, b);
    nest_leave();
    return eq;
}

static int
equal_walk(const cow_val *a, const cow_val *b)
{
    int ra = vrank(a);
    if (ra != vrank(b))
        return 0;
    switch (ra) {
    case 0: return 1;
    case 1: return num_order(a, b) == 0 && !num_is_nan(a);
    case 2:
    case 3:
    case 8: return span_order(a, b) == 0;
    case 4:
    case 5: return vec_equal(cow_val_getvec(a), cow_val_getvec(b));
    case 6:
    case 7: return cow_map_equal(cow_val_getmap(a), cow_val_getmap(b));
    case 9: return cow_ext_equal(a, b);
    }
    return 0;
}

static int
vec_order(const cow_vec *a, const cow_vec *b)
{
    cow_vec_iter ia, ib;
    const cow_val *x, *y;
    if (a->b.len != b->b.len)
        return a->b.len < b->b.len ? -1 : 1;
    cow_vec_iter_init(&ia, &a->b, 0);
    cow_vec_iter_init(&ib, &b->b, 0);
    while ((x = cow_vec_iter_next(&ia)) != NULL) {
        y = cow_vec_iter_next(&ib);
        int c = cow_val_order(x, y);
        if (c)
            return c;
    }
    return 0;
}

static int order_walk(const cow_val *a, const cow_val *b);

static int
order_packed(const cow_val *a, const cow_val *b)
{
    cow_val ta, tb;
    int c = cow_val_order(general(a, &ta), general(b, &tb));
    cow_val_release(&ta);
    cow_val_release(&tb);
    return c;
}

int
cow_val_order(const cow_val *a, const cow_val *b)
{
    int c;
    if (a->tag == COW_T_PACKED || b->tag == COW_T_PACKED)
        return order_packed(a, b);
    if (!cow_tag_is_vec(a->tag) && !cow_tag_is_map(a->tag))
        return order_walk(a, b);
    if (nest_enter(a) < 0)
        return 0;
    c = order_walk(a, b);
    nest_leave();
    return c;
}

static int
order_walk(const cow_val *a, const cow_val *b)
{
    int ra = vrank(a), rb = vrank(b);
    if (ra != rb)
        return ra < rb ? -1 : 1;
    switch (ra) {
    case 1: return num_order(a, b);
    case 2:
    case 3:
    case 8: return span_order(a, b);
    case 4:
    case 5: return vec_order(cow_val_getvec(a), cow_val_getvec(b));
    case 9: return cow_ext_order(a, b);
    }
    return 0;
}
