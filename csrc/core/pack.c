/* Packed containers: encoding, decoding, shapes, and the node's hooks.
 * Layout, item codes and invariants P1..P8 are in cowstore/pack.h. */
#include <stdatomic.h>
#include <string.h>

#include "cowstore/alloc.h"
#include "cowstore/ext.h"
#include "cowstore/hash.h"
#include "cowstore/map.h"
#include "cowstore/node.h"
#include "cowstore/pack.h"
#include "cowstore/segment.h"
#include "cowstore/twin.h"
#include "cowstore/vec.h"

enum {
    PK_NONE = 0x00, PK_FALSE = 0x01, PK_TRUE = 0x02,
    PK_INT8 = 0x03, PK_INT16 = 0x04, PK_INT24 = 0x05, PK_INT32 = 0x06, PK_INT64 = 0x07,
    PK_FLOAT = 0x08,
    PK_WSTR = 0x09, PK_WBYTES = 0x0a, PK_WBIGINT = 0x0b,
    PK_STR = 0x0c, PK_BYTES = 0x0d,
    PK_SEXT = 0x0e, PK_WEXT = 0x0f,     /* extension leaves (ext.h): inline, by word */
    PK_CONTAINER = 0x10,            /* + kind_code(tag), 0x10..0x14 */
    PK_ISTR = 0x15,                 /* a repeated str by word: u8 index (P7) */
    PK_SSTR = 0x20,                 /* + length 0..COW_INLINE_MAX */
    PK_SMALLINT = 0x80,             /* + value 0..127 */
};
#define PK_SMALLINT_MAX 127
#define PK_CONTAINER_KINDS 5
/* The largest body offset a packed value holds (u16, pack.h P6, P8). */
#define PK_MAX_OFFSET 0xffffu
/* "Cannot be packed": internal result, never returned by the public calls. */
#define PK_NO 1

static const uint8_t container_tags[PK_CONTAINER_KINDS] = {
    COW_T_DICT, COW_T_FDICT, COW_T_LIST, COW_T_FLIST, COW_T_TUPLE,
};

/* The item code offset of a packable container tag, or -1. */
static int
kind_code(int tag)
{
    for (int k = 0; k < PK_CONTAINER_KINDS; k++)
        if (container_tags[k] == tag)
            return k;
    return -1;
}

static int is_dict_tag(int tag) { return tag == COW_T_DICT || tag == COW_T_FDICT; }

/* Bytes of the int of each code PK_INT8..PK_INT64. */
static const uint8_t int_widths[] = {1, 2, 3, 4, 8};
static size_t int_width(unsigned code) { return int_widths[code - PK_INT8]; }

/* The identity of the container at position pos of a container whose
 * identity is parent: nested containers store none (pack.h, P5), so it is
 * derived, the same at every materialisation. */
static uint32_t
nested_ident(uint32_t parent, size_t pos)
{
    return (uint32_t)cow_hash_mix64(((uint64_t)parent << 32) ^ (uint64_t)(pos + 1));
}

uint32_t
cow_container_ident(const cow_val *v)
{
    if (v->tag == COW_T_PACKED)
        return v->aux;
    return cow_tag_is_map(v->tag) ? cow_val_getmap(v)->ident : cow_val_getvec(v)->ident;
}

static long live_packs;
long cow_pack_live_nodes(void) { return live_packs; }

static unsigned nwords_of(const cow_pack *p) { return p->size >> COW_PACK_NWORDS_SHIFT; }
static size_t nbytes_of(const cow_pack *p) { return p->size & COW_PACK_NBYTES_MASK; }
static cow_word *words_of(const cow_pack *p) { return (cow_word *)(p + 1); }
static const uint8_t *items_of(const cow_pack *p) { return (const uint8_t *)(words_of(p) + nwords_of(p)); }

/* A reader of a pack's items: every read is checked against end (P3). */
typedef cow_pack_reader pk_in;

/* A reader at the body of v's container, at its offset in the node (P6);
 * a poison node, or an offset past the items, reads as empty. */
static inline __attribute__((always_inline)) pk_in
reader_of(const cow_val *v)
{
    const cow_pack *p = cow_ref_get(&v->u.w, COW_NK_PACK);
    size_t n = nbytes_of(p), off = cow_pack_offset(v);
    pk_in in = {items_of(p) + (off < n ? off : n), items_of(p) + n, p};
    return in;
}

/* Whether a reader that read v's whole body stands where the body must end:
 * a pack's own body ends its node; one of a batch (P6) is followed by the
 * next. */
static int
body_ended(const cow_val *v, const pk_in *in)
{
    return cow_pack_offset(v) != 0 || in->p == in->end;
}

/* A word of a pack names a blob: drop the reference it holds. */
static void
word_release(cow_word w)
{
    cow_val v = {0};
    v.tag = COW_T_BYTES;
    v.u.w = w;
    cow_val_release(&v);
}

void cow_pack_retain(cow_pack *p) { p->refcnt++; }   /* heap only: see cow_val_copy */

void
cow_pack_release(cow_pack *p)
{
    if (p == NULL || !cow_refcnt_drop(&p->refcnt))
        return;
    for (unsigned i = 0; i < nwords_of(p); i++)
        word_release(words_of(p)[i]);
    live_packs--;
    cow_free(p);
}

/* ---- shapes (P4) ----------------------------------------------------------
 * A direct-mapped cache of shape blobs, each holding one reference: bounded
 * memory however many key sets a program makes, and records made together
 * share their shape.  Used only while packing, which the binding does under
 * the GIL (the core's callers serialise, as for every heap node). */

#define SHAPE_CACHE_SLOTS 1024
#define SHAPE_MAX_BYTES (1 + COW_PACK_MAX_ITEMS * (1 + COW_PACK_INLINE_MAX))
static const uint64_t SHAPE_SEED = 0x6a09e667f3bcc909ULL;
static cow_blob *shape_cache[SHAPE_CACHE_SLOTS];
/* The repeated strings of batches (P7) are interned the same way, apart. */
static const uint64_t STRING_SEED = 0xbb67ae8584caa73bULL;
static cow_blob *string_cache[SHAPE_CACHE_SLOTS];

static void
blob_drop(cow_blob *b)
{
    if (b && cow_refcnt_drop(&b->refcnt))
        cow_free(b);
}

void
cow_pack_forget_shapes(void)
{
    for (size_t i = 0; i < SHAPE_CACHE_SLOTS; i++) {
        blob_drop(shape_cache[i]);
        blob_drop(string_cache[i]);
        shape_cache[i] = string_cache[i] = NULL;
    }
}

/* A new reference to the blob of these bytes interned in cache, or NULL. */
static cow_blob *
intern(cow_blob **cache, uint64_t seed, const uint8_t *bytes, size_t len)
{
    size_t slot = cow_hash_bytes(bytes, len, seed) % SHAPE_CACHE_SLOTS;
    cow_blob *b = cache[slot];
    cow_val v;
    if (b && cow_blob_len(b) == len && memcmp(cow_blob_data(b), bytes, len) == 0) {
        b->refcnt++;
        return b;
    }
    if (cow_val_blob(&v, COW_T_BYTES, bytes, len) < 0)
        return NULL;
    b = (cow_blob *)v.u.w;
    blob_drop(cache[slot]);
    cache[slot] = b;
    b->refcnt++;                        /* the cache's own reference */
    return b;
}

static cow_blob *
shape_intern(const uint8_t *bytes, size_t len)
{
    return intern(shape_cache, SHAPE_SEED, bytes, len);
}

/* ---- encoding ------------------------------------------------------------ */

/* The repeated strings a batch writes by word (P7): interned blobs. */
#define PK_SUBST_MAX 12
typedef struct pk_subst {
    unsigned n;
    cow_blob *blob[PK_SUBST_MAX];       /* each holds a reference */
} pk_subst;

typedef struct pk_out {
    uint8_t buf[COW_PACK_MAX_BYTES];
    size_t n;
    cow_word words[COW_PACK_MAX_WORDS];     /* exported; each holds a reference */
    unsigned nwords;
    const pk_subst *subst;              /* NULL, or strings to write by word */
    int keep_idents;                    /* refuse a nested container whose identity
                                         * its position does not derive (P5) */
} pk_out;

static int
put(pk_out *o, const void *p, size_t len)
{
    if (len > sizeof o->buf - o->n)
        return PK_NO;
    memcpy(o->buf + o->n, p, len);
    o->n += len;
    return COW_OK;
}

static int
put_byte(pk_out *o, unsigned b)
{
    uint8_t x = (uint8_t)b;
    return put(o, &x, 1);
}

/* The index of word w (exported, a blob) in o, adding it with a new
 * reference; one slot per distinct word. */
static int
add_word(pk_out *o, cow_word w, unsigned *idx)
{
    cow_val v = {0};
    for (unsigned i = 0; i < o->nwords; i++)
        if (o->words[i] == w) {
            *idx = i;
            return COW_OK;
        }
    if (o->nwords == COW_PACK_MAX_WORDS)
        return PK_NO;
    v.tag = COW_T_BYTES;
    v.u.w = w;
    cow_val_retain(&v);
    *idx = o->nwords;
    o->words[o->nwords++] = w;
    return COW_OK;
}

static int
put_word(pk_out *o, unsigned code, const cow_word *wp)
{
    unsigned idx;
    int rc = add_word(o, cow_ref_export(wp), &idx);
    if (rc == COW_OK && (rc = put_byte(o, code)) == COW_OK)
        rc = put_byte(o, idx);
    return rc;
}

static int
put_int(pk_out *o, int64_t i)
{
    if (i >= 0 && i <= PK_SMALLINT_MAX)
        return put_byte(o, PK_SMALLINT + (unsigned)i);
    unsigned code = PK_INT8;
    while (code < PK_INT64 && (i < -((int64_t)1 << (8 * int_width(code) - 1))
                               || i >= ((int64_t)1 << (8 * int_width(code) - 1))))
        code++;                         /* the narrowest two's-complement width */
    size_t width = int_width(code);
    int rc = put_byte(o, code);
    return rc ? rc : put(o, &i, width);     /* little-endian: the low bytes */
}

/* str / bytes: inline up to COW_PACK_INLINE_MAX bytes, else by word. */
static int
put_span(pk_out *o, const cow_val *v, int is_str)
{
    const char *p;
    size_t len;
    int rc;
    cow_val_span(v, &p, &len);
    if (is_str && len <= COW_INLINE_MAX)
        return (rc = put_byte(o, PK_SSTR + (unsigned)len)) ? rc : put(o, p, len);
    if (len <= COW_PACK_INLINE_MAX) {
        if ((rc = put_byte(o, is_str ? PK_STR : PK_BYTES)) || (rc = put_byte(o, (unsigned)len)))
            return rc;
        return put(o, p, len);
    }
    if (v->tag != COW_T_STR && v->tag != COW_T_BYTES)
        return PK_NO;
    return put_word(o, is_str ? PK_WSTR : PK_WBYTES, &v->u.w);
}

static int put_value(pk_out *o, const cow_val *v, unsigned depth);
static int copy_body(pk_out *o, pk_in *in, int tag, unsigned depth);

/* put_value of entry pos of a general container of identity parent: with
 * o->keep_idents, PK_NO for a container whose identity is not the one the
 * pack will derive for that position (P5) -- it would read back as another
 * container.  A general one's own entries are checked as it is written; a
 * packed one's derive from its identity already. */
static int
put_entry(pk_out *o, const cow_val *v, uint32_t parent, size_t pos, unsigned depth)
{
    if (o->keep_idents && (v->tag == COW_T_PACKED || cow_tag_is_map(v->tag) || cow_tag_is_vec(v->tag))
        && cow_container_ident(v) != nested_ident(parent, pos))
        return PK_NO;
    return put_value(o, v, depth);
}

/* A dict body from its n entries (keys[i], vals[i], borrowed): the shape's
 * word, then the values in the shape's order. */
static int
put_dict_body(pk_out *o, const cow_val *keys, const cow_val *vals, size_t n, uint32_t ident,
              unsigned depth)
{
    uint8_t shape[SHAPE_MAX_BYTES];
    size_t at = 1;
    unsigned idx;
    cow_blob *b;
    int rc;
    if (n > COW_PACK_MAX_ITEMS)
        return PK_NO;
    shape[0] = (uint8_t)n;
    for (size_t i = 0; i < n; i++) {
        const char *p;
        size_t len;
        if (keys[i].tag != COW_T_SSTR && keys[i].tag != COW_T_STR)
            return PK_NO;               /* P2: shapes hold str keys */
        cow_val_span(&keys[i], &p, &len);
        if (len > COW_PACK_INLINE_MAX)
            return PK_NO;
        shape[at++] = (uint8_t)len;
        memcpy(shape + at, p, len);
        at += len;
    }
    if ((b = shape_intern(shape, at)) == NULL)
        return COW_ENOMEM;
    rc = add_word(o, cow_word_of(b), &idx);
    blob_drop(b);                       /* o holds its own reference now */
    if (rc || (rc = put_byte(o, idx)))
        return rc;
    for (size_t i = 0; i < n && rc == COW_OK; i++)
        rc = put_entry(o, &vals[i], ident, i, depth);
    return rc;
}

/* A general map's body: its live entries, in order, by put_dict_body.  A
 * stored map whose log holds more live entries than its length claims
 * (hostile pages) stays general rather than overrun the arrays. */
static int
put_map_body(pk_out *o, const cow_map *m, unsigned depth)
{
    cow_val keys[COW_PACK_MAX_ITEMS], vals[COW_PACK_MAX_ITEMS];
    size_t n = 0;
    if (cow_map_len(m) > COW_PACK_MAX_ITEMS)
        return PK_NO;
    for (size_t e = 0; e < cow_map_entries(m); e++) {
        cow_val k = cow_map_entry_key(m, e);
        if (k.tag == COW_T_HOLE)
            continue;
        if (n == COW_PACK_MAX_ITEMS)
            return PK_NO;
        keys[n] = k;
        vals[n++] = cow_map_entry_val(m, e);
    }
    return put_dict_body(o, keys, vals, n, m->ident, depth);
}

/* A list or tuple body from its n items (borrowed): the count, the items. */
static int
put_seq_body(pk_out *o, const cow_val *items, size_t n, unsigned depth)
{
    int rc;
    if (n > COW_PACK_MAX_ITEMS)
        return PK_NO;
    rc = put_byte(o, (unsigned)n);
    for (size_t i = 0; i < n && rc == COW_OK; i++)
        rc = put_value(o, &items[i], depth);
    return rc;
}

/* A general vector's body, as put_seq_body writes it.  Its items are read
 * where they lie: a stored word is relative to its slot (ref.h), so a copy
 * of a stored item elsewhere would name other bytes. */
static int
put_vec_body(pk_out *o, const cow_vec *vec, unsigned depth)
{
    cow_vec_iter it;
    const cow_val *e;
    int rc;
    if (vec->b.len > COW_PACK_MAX_ITEMS)
        return PK_NO;
    if ((rc = put_byte(o, (unsigned)vec->b.len)))
        return rc;
    cow_vec_iter_init(&it, &vec->b, 0);
    for (size_t i = 0; rc == COW_OK && (e = cow_vec_iter_next(&it)) != NULL; i++)
        rc = put_entry(o, e, vec->ident, i, depth);
    return rc;
}

/* A container item: code, body (P5: no identity). */
static int
put_container(pk_out *o, const cow_val *v, unsigned depth)
{
    int tag = v->tag == COW_T_PACKED ? v->slen : v->tag, code = kind_code(tag), rc;
    if (code < 0 || depth >= COW_PACK_MAX_DEPTH)
        return PK_NO;
    if ((rc = put_byte(o, PK_CONTAINER + (unsigned)code)))
        return rc;
    if (v->tag == COW_T_PACKED) {
        pk_in in = reader_of(v);
        return copy_body(o, &in, tag, depth + 1);
    }
    return is_dict_tag(tag) ? put_map_body(o, cow_val_getmap(v), depth + 1)
                            : put_vec_body(o, cow_val_getvec(v), depth + 1);
}

static int
put_value(pk_out *o, const cow_val *v, unsigned depth)
{
    switch (v->tag) {
    case COW_T_NONE: return put_byte(o, PK_NONE);
    case COW_T_BOOL: return put_byte(o, v->u.i ? PK_TRUE : PK_FALSE);
    case COW_T_INT: return put_int(o, v->u.i);
    case COW_T_FLOAT: {
        int rc = put_byte(o, PK_FLOAT);
        return rc ? rc : put(o, &v->u.f, sizeof v->u.f);
    }
    case COW_T_SSTR:
    case COW_T_STR: return put_span(o, v, 1);
    case COW_T_SBYTES:
    case COW_T_BYTES: return put_span(o, v, 0);
    case COW_T_BIGINT: return put_word(o, PK_WBIGINT, &v->u.w);
    case COW_T_SEXT: {
        int rc = put_byte(o, PK_SEXT);
        if (rc == COW_OK && (rc = put_byte(o, v->slen)) == COW_OK)
            rc = put(o, (const char *)v + COW_INLINE_OFFSET, v->slen);
        return rc;
    }
    case COW_T_EXT: return put_word(o, PK_WEXT, &v->u.w);
    default: return put_container(o, v, depth);
    }
}

/* ---- decoding (P3) -------------------------------------------------------- */

static int
get(pk_in *in, void *dst, size_t len)
{
    if (len > (size_t)(in->end - in->p))
        return COW_ECORRUPT;
    cow_copy_short(dst, in->p, len);    /* a code, an int or a float: <= 8 */
    in->p += len;
    return COW_OK;
}

static int
get_byte(pk_in *in, unsigned *b)
{
    uint8_t x = 0;
    int rc = get(in, &x, 1);
    *b = x;
    return rc;
}

/* The word at index idx of the node (in place: a page-form word resolves by
 * its own address), checked against the node's word count. */
static int
word_at(pk_in *in, unsigned idx, const cow_word **wp)
{
    if (idx >= nwords_of(in->node))
        return COW_ECORRUPT;
    *wp = &words_of(in->node)[idx];
    return COW_OK;
}

/* The shape blob a dict body names: its key count and key bytes. */
static inline __attribute__((always_inline)) int
get_shape(pk_in *in, const cow_word **wp, unsigned *count, const uint8_t **keys,
          const uint8_t **end)
{
    unsigned idx;
    const cow_blob *b;
    int rc;
    if ((rc = get_byte(in, &idx)) || (rc = word_at(in, idx, wp)))
        return rc;
    b = cow_ref_get(*wp, COW_NK_BLOB);
    if ((cow_word_stored(**wp) && cow_ref_error() < 0) || cow_blob_len(b) == 0)
        return COW_ECORRUPT;            /* only a stored word resolves with an error */
    *count = (uint8_t)cow_blob_data(b)[0];
    *keys = (const uint8_t *)cow_blob_data(b) + 1;
    *end = (const uint8_t *)cow_blob_data(b) + cow_blob_len(b);
    return *count <= COW_PACK_MAX_ITEMS ? COW_OK : COW_ECORRUPT;
}

/* The next key of a shape: its bytes and length, bounds-checked. */
static int
next_key(const uint8_t **keys, const uint8_t *end, const uint8_t **key, size_t *len)
{
    if (*keys >= end || (size_t)(end - *keys - 1) < **keys)
        return COW_ECORRUPT;
    *len = **keys;
    *key = *keys + 1;
    *keys += 1 + *len;
    return COW_OK;
}

/* ident: the identity the item gets if it is a container (nested_ident). */
static int get_value(pk_in *in, cow_val *out, unsigned depth, uint32_t ident);

static int
get_inline(pk_in *in, cow_val *out, size_t len, int is_str)
{
    if (len > (size_t)(in->end - in->p))
        return COW_ECORRUPT;
    int rc = is_str ? cow_val_str(out, (const char *)in->p, len)
                    : cow_val_bytes(out, in->p, len);
    in->p += len;
    return rc;
}

/* The value of tag a word item names, borrowed: its word exported, no
 * reference taken. */
static int
get_word_view(pk_in *in, cow_val *out, int tag)
{
    unsigned idx;
    const cow_word *wp;
    int rc;
    if ((rc = get_byte(in, &idx)) || (rc = word_at(in, idx, &wp)))
        return rc;
    memset(out, 0, sizeof *out);
    out->tag = (uint8_t)tag;
    out->u.w = cow_ref_export(wp);
    return COW_OK;
}

/* Whether an item of this code is a word index. */
static int
is_word_code(unsigned code)
{
    return (code >= PK_WSTR && code <= PK_WBIGINT) || code == PK_WEXT || code == PK_ISTR;
}

/* The value tag of a word item's code. */
static int
word_tag(unsigned code)
{
    return code == PK_WSTR || code == PK_ISTR ? COW_T_STR : code == PK_WBYTES ? COW_T_BYTES
           : code == PK_WEXT ? COW_T_EXT : COW_T_BIGINT;
}

static int
get_word_value(pk_in *in, cow_val *out, int tag)
{
    int rc = get_word_view(in, out, tag);
    if (rc)
        return rc;
    if (tag != COW_T_BIGINT) {          /* V1, V8: a word holds only a long one */
        const cow_blob *b = cow_ref_get(&out->u.w, COW_NK_BLOB);
        if (cow_ref_error() < 0 || cow_blob_len(b) <= (tag == COW_T_EXT ? COW_INLINE_MAX : COW_PACK_INLINE_MAX))
            return COW_ECORRUPT;
    }
    cow_val_retain(out);
    return COW_OK;
}

/* The word of a repeated str (P7), borrowed as a STR value, and its blob,
 * checked to hold 1..COW_PACK_INLINE_MAX bytes. */
static int
get_istr_word(pk_in *in, cow_val *word, const cow_blob **b)
{
    int rc = get_word_view(in, word, COW_T_STR);
    if (rc)
        return rc;
    *b = cow_ref_get(&word->u.w, COW_NK_BLOB);
    if (cow_ref_error() < 0 || cow_blob_len(*b) == 0 || cow_blob_len(*b) > COW_PACK_INLINE_MAX)
        return COW_ECORRUPT;
    return COW_OK;
}

/* A repeated str by word (P7) as a borrowed view of its blob's bytes. */
static int
get_istr_view(pk_in *in, cow_val *out)
{
    cow_val word;
    const cow_blob *b;
    int rc = get_istr_word(in, &word, &b);
    if (rc == COW_OK) {
        *out = cow_val_str_view(cow_blob_data(b), cow_blob_len(b));
        out->slen = COW_VIEW_REPEATED;
    }
    return rc;
}

/* The same str as a value of its own in canonical form (V1): inline when
 * short, else the interned blob itself. */
static int
get_istr_value(pk_in *in, cow_val *out)
{
    const cow_blob *b;
    int rc = get_istr_word(in, out, &b);
    if (rc)
        return rc;
    if (cow_blob_len(b) <= COW_INLINE_MAX)
        return cow_val_str(out, cow_blob_data(b), cow_blob_len(b));
    cow_val_retain(out);
    return COW_OK;
}

/* An inline extension leaf: u8 length (1..14, V8), the bytes. */
static int
get_sext(pk_in *in, cow_val *out)
{
    unsigned len;
    int rc = get_byte(in, &len);
    if (rc)
        return rc;
    if (len == 0 || len > COW_INLINE_MAX || len > (size_t)(in->end - in->p))
        return COW_ECORRUPT;
    memset(out, 0, sizeof *out);
    out->tag = COW_T_SEXT;
    out->slen = (uint8_t)len;
    cow_copy_short((char *)out + COW_INLINE_OFFSET, in->p, len);
    in->p += len;
    return COW_OK;
}

static int
get_int(pk_in *in, cow_val *out, unsigned code)
{
    size_t width = int_width(code);
    uint8_t raw[8];
    int64_t i = 0;
    int rc = get(in, raw, width);
    if (rc)
        return rc;
    cow_copy_short(&i, raw, width);
    if (width < 8 && (raw[width - 1] & 0x80))
        i |= (int64_t)(~(uint64_t)0 << (8 * width));    /* sign-extend */
    *out = cow_val_int(i);
    return COW_OK;
}

/* The next key of a shape as a value, refused if an earlier one equals it
 * (only hostile pages repeat a key: maps need distinct keys). */
static int
get_key(const uint8_t **keys, const uint8_t *kend, const cow_val *kv, unsigned i, cow_val *k)
{
    const uint8_t *key;
    size_t klen;
    int rc;
    if ((rc = next_key(keys, kend, &key, &klen)) || (rc = cow_val_str(k, (const char *)key, klen)))
        return rc;
    for (unsigned j = 0; j < i; j++)
        if (cow_val_equal(&kv[2 * j], k)) {
            cow_val_release(k);
            return COW_ECORRUPT;
        }
    return COW_OK;
}

/* Decodes every entry first, then fills the map in one go (cow_map_fill). */
static int
get_dict_body(pk_in *in, cow_map *m, unsigned depth)
{
    cow_val kv[2 * COW_PACK_MAX_ITEMS];
    const cow_word *wp;
    const uint8_t *keys, *kend;
    unsigned count, i;
    int rc = get_shape(in, &wp, &count, &keys, &kend);
    for (i = 0; i < count && rc == COW_OK; i++) {
        if ((rc = get_key(&keys, kend, kv, i, &kv[2 * i])))
            break;
        if ((rc = get_value(in, &kv[2 * i + 1], depth, nested_ident(m->ident, i)))) {
            cow_val_release(&kv[2 * i]);
            break;
        }
    }
    if (rc < 0) {
        cow_vals_release(kv, 2 * (size_t)i);
        return rc;
    }
    return cow_map_fill(m, kv, count);
}

static int
get_vec_body(pk_in *in, cow_vec *vec, unsigned depth)
{
    cow_val vals[COW_PACK_MAX_ITEMS];
    unsigned count, i;
    int rc = get_byte(in, &count);
    if (rc == COW_OK && count > COW_PACK_MAX_ITEMS)
        rc = COW_ECORRUPT;
    for (i = 0; i < count && rc == COW_OK; i++)
        if ((rc = get_value(in, &vals[i], depth, nested_ident(vec->ident, i))))
            break;
    if (rc < 0) {
        cow_vals_release(vals, i);
        return rc;
    }
    return cow_vb_from(&vec->b, vals, count);
}

/* A general container of `tag` and identity from a body. */
static int
get_container(pk_in *in, cow_val *out, int tag, uint32_t ident, unsigned depth)
{
    int rc;
    if (depth >= COW_PACK_MAX_DEPTH)
        return COW_ECORRUPT;            /* P2 never packs deeper */
    if (is_dict_tag(tag)) {
        cow_map *m = cow_map_new();
        if (m == NULL)
            return COW_ENOMEM;
        m->ident = ident;
        *out = cow_val_map((cow_tag)tag, m);
        rc = get_dict_body(in, m, depth + 1);
    }
    else {
        cow_vec *vec = cow_vec_new();
        if (vec == NULL)
            return COW_ENOMEM;
        vec->ident = ident;
        *out = cow_val_vec((cow_tag)tag, vec);
        rc = get_vec_body(in, vec, depth + 1);
    }
    if (rc < 0)
        cow_val_release(out);
    return rc;
}

static int
get_value(pk_in *in, cow_val *out, unsigned depth, uint32_t ident)
{
    unsigned code;
    double f;
    int rc = get_byte(in, &code);
    if (rc)
        return rc;
    if (code >= PK_SMALLINT) {
        *out = cow_val_int((int64_t)(code - PK_SMALLINT));
        return COW_OK;
    }
    if (code >= PK_SSTR && code <= PK_SSTR + COW_INLINE_MAX)
        return get_inline(in, out, code - PK_SSTR, 1);
    if (code >= PK_CONTAINER && code < PK_CONTAINER + PK_CONTAINER_KINDS)
        return get_container(in, out, container_tags[code - PK_CONTAINER], ident, depth);
    switch (code) {
    case PK_NONE: *out = cow_val_none(); return COW_OK;
    case PK_FALSE:
    case PK_TRUE: *out = cow_val_bool(code == PK_TRUE); return COW_OK;
    case PK_INT8: case PK_INT16: case PK_INT24: case PK_INT32: case PK_INT64:
        return get_int(in, out, code);
    case PK_FLOAT:
        if ((rc = get(in, &f, sizeof f)) == COW_OK)
            *out = cow_val_float(f);
        return rc;
    case PK_WSTR: case PK_WBYTES: case PK_WBIGINT: case PK_WEXT:
        return get_word_value(in, out, word_tag(code));
    case PK_ISTR: return get_istr_value(in, out);
    case PK_SEXT: return get_sext(in, out);
    case PK_STR:
    case PK_BYTES: {
        unsigned len;
        if ((rc = get_byte(in, &len)))
            return rc;
        return get_inline(in, out, len, code == PK_STR);
    }
    }
    return COW_ECORRUPT;
}

/* ---- reading one entry in place ------------------------------------------ */

/* Bytes of an item of fixed size, its code included, or 0 for one of
 * variable size (containers, words, long strs, inline extension leaves):
 * one load per item, for skip_item on every field before the one read and
 * for the decode of a fixed-size item (get_fixed_view). */
#define F16_(x) x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x
static const uint8_t fixed_sizes[256] = {
    /* 0x00: None, False, True; int8..int64; float; words, long strs, sext */
    1, 1, 1, 2, 3, 4, 5, 9, 9, 0, 0, 0, 0, 0, 0, 0,
    F16_(0),                                    /* 0x10: containers, istr */
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 0,   /* 0x20: sstr */
    F16_(0), F16_(0), F16_(0), F16_(0), F16_(0),            /* 0x30..0x7f: no item */
    F16_(1), F16_(1), F16_(1), F16_(1), F16_(1), F16_(1), F16_(1), F16_(1), /* small ints */
};
#undef F16_
_Static_assert(PK_INT8 == 3 && PK_FLOAT == 8 && PK_SSTR == 0x20 && COW_INLINE_MAX == 14
               && PK_SMALLINT == 0x80, "fixed_sizes is laid out for these codes");

/* The size of the fixed-size item at p if it lies wholly before end, else
 * 0 (a variable-size item, or a truncated one: the slow paths check and
 * refuse it, P3). */
static inline size_t
fixed_size_at(const uint8_t *p, const uint8_t *end)
{
    size_t size = p < end ? fixed_sizes[*p] : 0;
    return size <= (size_t)(end - p) ? size : 0;
}

static int skip_item_slow(pk_in *in, unsigned depth);

/* Steps over the next n items of one body at depth (P3: checked like a
 * full decode).  The scalars of fixed size and the word items (a record's
 * repeated strs, P7) -- most items of a record, and the fields before a
 * lookup's -- are stepped over in a tight loop; the rest, and truncated
 * items, go to skip_item_slow. */
static inline int
skip_items(pk_in *in, unsigned n, unsigned depth)
{
    const uint8_t *p = in->p, *end = in->end;
    int rc;
    for (; n; n--) {
        size_t size = fixed_size_at(p, end);
        if (size) {
            p += size;
            continue;
        }
        if (end - p >= 2 && is_word_code(*p) && p[1] < nwords_of(in->node)) {
            p += 2;
            continue;
        }
        in->p = p;
        if ((rc = skip_item_slow(in, depth)))
            return rc;
        p = in->p;
    }
    in->p = p;
    return COW_OK;
}

/* Steps over one item: skip_items'. */
static inline int
skip_item(pk_in *in, unsigned depth)
{
    return skip_items(in, 1, depth);
}

static int
skip_item_slow(pk_in *in, unsigned depth)
{
    unsigned code, len, count, idx;
    int rc;
    if ((rc = get_byte(in, &code)))
        return rc;
    if (fixed_sizes[code])
        len = fixed_sizes[code] - 1u;   /* a truncated fixed-size item: checked below */
    else if (code >= PK_CONTAINER && code < PK_CONTAINER + PK_CONTAINER_KINDS) {
        const cow_word *wp;
        const uint8_t *keys, *kend;
        if (depth >= COW_PACK_MAX_DEPTH)
            return COW_ECORRUPT;
        if (is_dict_tag(container_tags[code - PK_CONTAINER]))
            rc = get_shape(in, &wp, &count, &keys, &kend);
        else if ((rc = get_byte(in, &count)) == COW_OK && count > COW_PACK_MAX_ITEMS)
            rc = COW_ECORRUPT;
        return rc ? rc : skip_items(in, count, depth + 1);
    }
    else if (is_word_code(code))
        return (rc = get_byte(in, &idx)) ? rc : idx < nwords_of(in->node) ? COW_OK : COW_ECORRUPT;
    else if (code == PK_STR || code == PK_BYTES || code == PK_SEXT) {
        if ((rc = get_byte(in, &len)))
            return rc;
    }
    else
        return COW_ECORRUPT;
    if (len > (size_t)(in->end - in->p))
        return COW_ECORRUPT;
    in->p += len;
    return COW_OK;
}

/* The container item whose code the reader just read, at entry pos of
 * parent, as a packed value naming the node at its body (P8).  With step,
 * the reader steps over the body, checked as a full decode would be (P3):
 * a cursor's next item follows it.  A lookup's or an index's view is left
 * unwalked: every later read of it has a checked reader of its own (P3),
 * and d["tags"] no longer decodes the list twice. */
static int
get_nested_view(pk_in *in, const cow_val *parent, unsigned code, size_t pos, int step,
                cow_val *out)
{
    size_t off = (size_t)(in->p - items_of(in->node));
    int rc;
    in->p--;                            /* skip_item reads the code again */
    if (step && (rc = skip_item(in, 0)))
        return rc;
    if (off > PK_MAX_OFFSET)
        return COW_ECORRUPT;            /* P2 never packs so many bytes */
    memset(out, 0, sizeof *out);
    out->tag = COW_T_PACKED;
    out->slen = (uint8_t)container_tags[code - PK_CONTAINER];
    out->aux = nested_ident(parent->aux, pos);
    out->u.w = cow_ref_export(&parent->u.w);
    cow_pack_set_offset(out, off);
    return COW_OK;
}

/* get_entry_view's items of variable size. */
static int
get_entry_view_slow(pk_in *in, const cow_val *parent, size_t pos, int step, cow_val *out)
{
    const uint8_t *at = in->p;
    unsigned code, len;
    int rc;
    if ((rc = get_byte(in, &code)))
        return rc;
    if (code >= PK_CONTAINER && code < PK_CONTAINER + PK_CONTAINER_KINDS)
        return get_nested_view(in, parent, code, pos, step, out);
    if ((code >= PK_SSTR && code <= PK_SSTR + COW_INLINE_MAX) || code == PK_STR || code == PK_BYTES) {
        len = code - PK_SSTR;
        if (code == PK_STR || code == PK_BYTES)
            if ((rc = get_byte(in, &len)))
                return rc;
        if (len > (size_t)(in->end - in->p))
            return COW_ECORRUPT;
        *out = code == PK_BYTES ? cow_val_bytes_view(in->p, len)
                                : cow_val_str_view((const char *)in->p, len);
        in->p += len;
        return COW_OK;
    }
    if (code == PK_ISTR)
        return get_istr_view(in, out);
    if (is_word_code(code))
        return get_word_view(in, out, word_tag(code));
    in->p = at;                         /* SEXT (an unknown code: refused there) */
    return get_value(in, out, 0, 0);
}

/* The fixed-size item at p, of size bytes (fixed_size_at), borrowed: a
 * number, None, a bool, or a short str as a view into the node. */
static inline __attribute__((always_inline)) void
get_fixed_view(const uint8_t *p, size_t size, cow_val *out)
{
    unsigned code = *p;
    int64_t i = 0;
    double f;
    if (code >= PK_SMALLINT)
        *out = cow_val_int((int64_t)(code - PK_SMALLINT));
    else if (code >= PK_SSTR)
        *out = cow_val_str_view((const char *)p + 1, size - 1);
    else if (code == PK_FLOAT) {
        memcpy(&f, p + 1, sizeof f);
        *out = cow_val_float(f);
    }
    else if (code >= PK_INT8) {
        cow_copy_short(&i, p + 1, size - 1);
        if (size < 9 && (p[size - 1] & 0x80))
            i |= (int64_t)(~(uint64_t)0 << (8 * (size - 1)));     /* sign-extend */
        *out = cow_val_int(i);
    }
    else
        *out = code == PK_NONE ? cow_val_none() : cow_val_bool(code == PK_TRUE);
}

/* The item at the reader, entry pos of parent, borrowed (pack.h): views
 * into the node, words exported without a reference, a nested container
 * as a packed value (P8), stepped over when step (get_nested_view).  The
 * fixed-size items, most of a record's, are decoded here in line. */
static inline __attribute__((always_inline)) int
get_entry_view(pk_in *in, const cow_val *parent, size_t pos, int step, cow_val *out)
{
    size_t size = fixed_size_at(in->p, in->end);
    if (size) {
        get_fixed_view(in->p, size, out);
        in->p += size;
        return COW_OK;
    }
    return get_entry_view_slow(in, parent, pos, step, out);
}

/* ---- field hints ----------------------------------------------------------
 * A program reads the same few fields of many records of one shape, so the
 * scan of the shape's keys is remembered: the offset and position a key was
 * last found at, per (shape key bytes, probe key bytes) address pair, in a
 * direct-mapped table.  A hint only says which key to compare first -- that
 * key is bounds-checked and compared as the scan compares, and its offset
 * checked to be where the hint's position starts -- so a stale or colliding
 * one (a freed shape, an address reused by other bytes) costs the scan,
 * never a wrong answer.  Each slot is one relaxed atomic word (a tag
 * of the address pair, the key's offset, its position), so threads reading
 * at once may only lose hints; a thread-local table would not fit the
 * static TLS a loaded extension may use. */
#define FIELD_HINT_BITS 8
#define FIELD_HINT_MUL 0x9e3779b97f4a7c15ULL   /* 2^64 / golden ratio: spreads addresses */
#define FIELD_HINT_OFF_SHIFT 8                  /* slot word: tag:40 | off:16 | pos:8 */
#define FIELD_HINT_TAG_SHIFT 24
static _Atomic uint64_t field_hints[1u << FIELD_HINT_BITS];

/* The hint slot of an address pair, and the tag its word carries. */
static _Atomic uint64_t *
field_hint_of(const uint8_t *keys, const char *key, uint64_t *tag)
{
    uint64_t h = ((uint64_t)(uintptr_t)keys ^ (uint64_t)(uintptr_t)key >> 3) * FIELD_HINT_MUL;
    *tag = (h << FIELD_HINT_BITS) >> FIELD_HINT_TAG_SHIFT;
    return &field_hints[h >> (64 - FIELD_HINT_BITS)];
}

/* Whether shape key [k, k + len) is the probe key. */
static int
key_is(const uint8_t *k, size_t len, const char *key, size_t klen)
{
    return len == klen && cow_bytes_equal(k, key, len);
}

/* Whether the shape key whose entry starts at keys + off is key. */
static int
key_at(const uint8_t *keys, const uint8_t *kend, size_t off, const char *key, size_t klen)
{
    const uint8_t *at = keys + off, *k;
    size_t len;
    return off < (size_t)(kend - keys) && next_key(&at, kend, &k, &len) == COW_OK
           && key_is(k, len, key, klen);
}

/* Whether key number pos of the shape's keys [keys, kend) starts at off.  A
 * stale hint's key can match at its offset as another position: another
 * shape at the hint's address ("", "xxxxxxxxxxxxxx", "tags" where
 * "yyyyyyyyyyyyyyy", "tags" was) holds it at the same offset as its third
 * key, not its second, and the hint's position would read another field. */
static int
key_starts_at(const uint8_t *keys, const uint8_t *kend, unsigned pos, size_t off)
{
    size_t o = 0, n = (size_t)(kend - keys);
    for (unsigned i = 0; i < pos; i++) {
        if (o >= off || o >= n)
            return 0;
        o += 1 + (size_t)keys[o];
    }
    return o == off;
}

/* The position of key in the shape's keys [keys, kend) of count keys, by
 * its hint or a scan (which leaves a hint): COW_FOUND, COW_NOT_FOUND or
 * COW_ECORRUPT. */
static int
find_field(const uint8_t *keys, const uint8_t *kend, unsigned count, const char *key,
           size_t klen, unsigned *pos)
{
    uint64_t tag, hint;
    _Atomic uint64_t *slot = field_hint_of(keys, key, &tag);
    const uint8_t *k, *at = keys;
    size_t len;
    int rc;
    hint = atomic_load_explicit(slot, memory_order_relaxed);
    if (hint >> FIELD_HINT_TAG_SHIFT == tag && (uint8_t)hint < count
        && key_at(keys, kend, (uint16_t)(hint >> FIELD_HINT_OFF_SHIFT), key, klen)
        && key_starts_at(keys, kend, (uint8_t)hint, (uint16_t)(hint >> FIELD_HINT_OFF_SHIFT))) {
        *pos = (uint8_t)hint;
        return COW_FOUND;
    }
    for (unsigned i = 0; i < count; i++) {
        if ((rc = next_key(&at, kend, &k, &len)))
            return rc;
        if (key_is(k, len, key, klen)) {
            hint = tag << FIELD_HINT_TAG_SHIFT | (uint64_t)(k - 1 - keys) << FIELD_HINT_OFF_SHIFT | i;
            atomic_store_explicit(slot, hint, memory_order_relaxed);
            *pos = i;
            return COW_FOUND;
        }
    }
    return COW_NOT_FOUND;
}

/* ---- caller memos ---------------------------------------------------------
 * A memo holds the heap shape blob it names (P4: interned per process), so
 * while memoised that address is those bytes: a dict body naming the same
 * word has the same keys, and the memo's position needs no check against
 * them.  Shapes in pages are not memoised (a store closed and another
 * mapped may put other bytes at an address). */

void
cow_pack_memo_clear(cow_pack_memo *memo)
{
    blob_drop((cow_blob *)memo->shape);
    memo->shape = 0;
}

static void
memo_set(cow_pack_memo *memo, cow_word shape, unsigned pos, unsigned count)
{
    ((cow_blob *)shape)->refcnt++;      /* before the drop: it may be the same blob */
    cow_pack_memo_clear(memo);
    memo->shape = shape;
    memo->pos = (uint8_t)pos;
    memo->count = (uint8_t)count;
}

/* The position of key in the shape of the dict body at the reader, which
 * it reads past, and the shape's key count: from *memo when the body names
 * the memo's shape, else by find_field, memoised when the shape is on the
 * heap (memo may be NULL). */
static inline __attribute__((always_inline)) int
field_pos(pk_in *in, const char *key, size_t klen, cow_pack_memo *memo, unsigned *pos,
          unsigned *count)
{
    const cow_word *wp;
    const uint8_t *keys, *kend;
    int rc;
    if (memo != NULL && memo->shape != 0 && in->p < in->end && *in->p < nwords_of(in->node)
        && words_of(in->node)[*in->p] == memo->shape) {
        in->p++;
        *pos = memo->pos;
        *count = memo->count;
        return COW_FOUND;
    }
    if ((rc = get_shape(in, &wp, count, &keys, &kend))
        || (rc = find_field(keys, kend, *count, key, klen, pos)) != COW_FOUND)
        return rc;
    if (memo != NULL && !cow_word_stored(*wp))
        memo_set(memo, *wp, *pos, *count);
    return COW_FOUND;
}

int
cow_pack_lookup(const cow_val *v, const char *key, size_t klen, cow_val *out)
{
    return cow_pack_lookup_memo(v, key, klen, NULL, out);
}

int
cow_pack_lookup_memo(const cow_val *v, const char *key, size_t klen, cow_pack_memo *memo,
                     cow_val *out)
{
    pk_in in = reader_of(v);
    unsigned pos, count;
    int rc;
    if (!is_dict_tag(v->slen))
        return COW_ECORRUPT;
    if ((rc = field_pos(&in, key, klen, memo, &pos, &count)) != COW_FOUND)
        return rc;
    if ((rc = skip_items(&in, pos, 0)))
        return rc;
    return (rc = get_entry_view(&in, v, pos, 0, out)) ? rc : COW_FOUND;
}

int
cow_pack_index(const cow_val *v, size_t i, cow_val *out)
{
    pk_in in = reader_of(v);
    unsigned count;
    int rc;
    if (is_dict_tag(v->slen) || kind_code(v->slen) < 0)
        return COW_ECORRUPT;
    if ((rc = get_byte(&in, &count)))
        return rc;
    if (i >= count)
        return COW_NOT_FOUND;
    if ((rc = skip_items(&in, (unsigned)i, 0)))
        return rc;
    return (rc = get_entry_view(&in, v, i, 0, out)) ? rc : COW_FOUND;
}

int
cow_pack_cursor_init(cow_pack_cursor *c, const cow_val *v)
{
    const cow_word *wp;
    int rc;
    memset(c, 0, sizeof *c);
    c->in = reader_of(v);
    c->v = v;
    if (kind_code(v->slen) < 0)
        return COW_ECORRUPT;
    if (!is_dict_tag(v->slen))
        rc = get_byte(&c->in, &c->count);
    else if ((rc = get_shape(&c->in, &wp, &c->count, &c->keys, &c->kend)) == COW_OK)
        c->shape = c->keys - 1;
    return rc == COW_OK && c->count > COW_PACK_MAX_ITEMS ? COW_ECORRUPT : rc;
}

int
cow_pack_cursor_next(cow_pack_cursor *c, const char **key, size_t *klen, cow_val *val)
{
    const uint8_t *k;
    int rc;
    if (c->pos >= c->count)
        return COW_NOT_FOUND;
    if (c->shape) {
        if ((rc = next_key(&c->keys, c->kend, &k, klen)))
            return rc;
        *key = (const char *)k;
    }
    if ((rc = get_entry_view(&c->in, c->v, c->pos, 1, val)))
        return rc;
    c->pos++;
    return COW_FOUND;
}

size_t
cow_pack_cursor_shape(const cow_pack_cursor *c, const uint8_t **shape)
{
    *shape = c->shape;
    return c->shape ? (size_t)(c->kend - c->shape) : 0;
}

int
cow_pack_count(const cow_val *v, size_t *n)
{
    pk_in in = reader_of(v);
    const cow_word *wp;
    const uint8_t *keys, *kend;
    unsigned count;
    int rc = is_dict_tag(v->slen) ? get_shape(&in, &wp, &count, &keys, &kend)
                                  : get_byte(&in, &count);
    if (rc == COW_OK && count > COW_PACK_MAX_ITEMS)
        rc = COW_ECORRUPT;
    *n = count;
    return rc;
}


/* ---- transcoding: a packed child inlined into a new pack ----------------- */

/* A word index of the source, re-numbered for o. */
static int
copy_word_index(pk_out *o, pk_in *in)
{
    unsigned idx, mine;
    const cow_word *wp;
    int rc;
    if ((rc = get_byte(in, &idx)) || (rc = word_at(in, idx, &wp))
        || (rc = add_word(o, cow_ref_export(wp), &mine)))
        return rc;
    return put_byte(o, mine);
}

static int copy_item(pk_out *o, pk_in *in, unsigned depth);

/* The bytes of an inline str item [at, end): its code, a length byte for
 * the longer ones, the UTF-8.  0 when the item is no inline str. */
static size_t
inline_str_of(const uint8_t *at, const uint8_t *end, const uint8_t **bytes)
{
    size_t head = at[0] == PK_STR ? 2 : 1;
    if (!((at[0] >= PK_SSTR && at[0] <= PK_SSTR + COW_INLINE_MAX) || at[0] == PK_STR))
        return 0;
    *bytes = at + head;
    return (size_t)(end - at) - head;
}

/* Writes the inline str item [at, end) by word if it is one of o's repeated
 * strings (P7): COW_OK, PK_NO (not one, or no word left: copy it), or an
 * error. */
static int
put_subst(pk_out *o, const uint8_t *at, const uint8_t *end)
{
    const uint8_t *bytes;
    size_t len = inline_str_of(at, end, &bytes);
    unsigned idx;
    int rc;
    if (o->n + 2 > sizeof o->buf)
        return PK_NO;                   /* (nor would the copy fit) */
    for (unsigned i = 0; len && i < o->subst->n; i++) {
        const cow_blob *b = o->subst->blob[i];
        if (cow_blob_len(b) != len || memcmp(cow_blob_data(b), bytes, len) != 0)
            continue;
        if ((rc = add_word(o, cow_word_of(b), &idx)) != COW_OK)
            return rc;
        o->buf[o->n++] = PK_ISTR;
        o->buf[o->n++] = (uint8_t)idx;
        return COW_OK;
    }
    return PK_NO;
}

static int
copy_body(pk_out *o, pk_in *in, int tag, unsigned depth)
{
    unsigned count;
    int rc;
    if (depth >= COW_PACK_MAX_DEPTH)
        return PK_NO;
    if (is_dict_tag(tag)) {
        pk_in shape = *in;              /* read for its key count; its index is copied */
        const cow_word *wp;
        const uint8_t *keys, *kend;
        if ((rc = get_shape(&shape, &wp, &count, &keys, &kend)) || (rc = copy_word_index(o, in)))
            return rc;
    }
    else if ((rc = get_byte(in, &count)) || (rc = put_byte(o, count)))
        return rc;
    for (unsigned i = 0; i < count && rc == COW_OK; i++)
        rc = copy_item(o, in, depth);
    return rc;
}

/* One item: a container's body and a word's index are written anew for o;
 * any other item's bytes are copied as they are (skip_item finds its end). */
static int
copy_item(pk_out *o, pk_in *in, unsigned depth)
{
    const uint8_t *at = in->p;
    unsigned code;
    int rc;
    if ((rc = get_byte(in, &code)))
        return rc;
    if (code >= PK_CONTAINER && code < PK_CONTAINER + PK_CONTAINER_KINDS)
        return (rc = put_byte(o, code)) ? rc
               : copy_body(o, in, container_tags[code - PK_CONTAINER], depth + 1);
    if (is_word_code(code))
        return (rc = put_byte(o, code)) ? rc : copy_word_index(o, in);
    in->p = at;
    if ((rc = skip_item(in, depth)))
        return rc;
    if (o->subst && (rc = put_subst(o, at, in->p)) != PK_NO)
        return rc;
    return put(o, at, (size_t)(in->p - at));
}

/* ---- walking a pack (cow_pack_visit) --------------------------------------- */

static int visit_body(pk_in *in, int tag, const cow_pack_visitor *vis, void *ctx, unsigned depth);

static int
visit_item(pk_in *in, const cow_pack_visitor *vis, void *ctx, unsigned depth)
{
    cow_val v;
    unsigned code;
    int rc;
    if (in->p >= in->end)
        return COW_ECORRUPT;
    code = *in->p;
    if (code >= PK_CONTAINER && code < PK_CONTAINER + PK_CONTAINER_KINDS) {
        in->p++;
        return visit_body(in, container_tags[code - PK_CONTAINER], vis, ctx, depth + 1);
    }
    if ((rc = get_entry_view(in, NULL, 0, 1, &v)))     /* a scalar: no parent needed */
        return rc;
    return vis->scalar(ctx, &v);
}

static int
visit_body(pk_in *in, int tag, const cow_pack_visitor *vis, void *ctx, unsigned depth)
{
    const uint8_t *keys = NULL, *kend = NULL, *k;
    const cow_word *wp;
    unsigned count;
    size_t len;
    int rc;
    if (depth >= COW_PACK_MAX_DEPTH)
        return COW_ECORRUPT;
    if (is_dict_tag(tag))
        rc = get_shape(in, &wp, &count, &keys, &kend);
    else if ((rc = get_byte(in, &count)) == COW_OK && count > COW_PACK_MAX_ITEMS)
        rc = COW_ECORRUPT;
    if (rc || (rc = vis->begin(ctx, tag, count)))
        return rc;
    for (unsigned i = 0; i < count; i++) {
        if (keys && ((rc = next_key(&keys, kend, &k, &len))
                     || (rc = vis->key(ctx, (const char *)k, len))))
            return rc;
        if ((rc = visit_item(in, vis, ctx, depth)))
            return rc;
    }
    return vis->end(ctx, tag);
}

int
cow_pack_visit(const cow_val *v, const cow_pack_visitor *vis, void *ctx)
{
    pk_in in = reader_of(v);
    int rc;
    if (kind_code(v->slen) < 0)
        return COW_ECORRUPT;
    if ((rc = visit_body(&in, v->slen, vis, ctx, 0)))
        return rc;
    return body_ended(v, &in) ? COW_OK : COW_ECORRUPT;
}

/* ---- the public calls ------------------------------------------------------ */

static void
out_release(pk_out *o)
{
    for (unsigned i = 0; i < o->nwords; i++)
        word_release(o->words[i]);
    o->nwords = 0;
}

/* The node o describes; its words' references pass to it.  NULL when out of
 * memory (o left as it was). */
static cow_pack *
node_from(pk_out *o)
{
    cow_pack *p = cow_malloc(sizeof *p + o->nwords * sizeof(cow_word) + o->n);
    if (p == NULL)
        return NULL;
    p->refcnt = 1;
    p->size = (uint32_t)o->n | (uint32_t)o->nwords << COW_PACK_NWORDS_SHIFT;
    memcpy(words_of(p), o->words, o->nwords * sizeof(cow_word));
    memcpy((uint8_t *)items_of(p), o->buf, o->n);
    o->nwords = 0;
    live_packs++;
    return p;
}

/* A writer with nothing written.  Packs are written on the stack (~4.4 KiB,
 * in calls that do not recurse): from the heap, past pymalloc's small
 * blocks, its malloc and free took ~1,000 instructions of the ~14,000 a
 * record's freeze costs. */
static void
out_init(pk_out *o)
{
    o->n = 0;
    o->nwords = 0;
    o->subst = NULL;
    o->keep_idents = 0;
}

/* Ends a pack whose body o holds, its writing having answered rc: the node,
 * tagged tag, with identity ident, into *out: COW_FOUND (*out owned),
 * COW_NOT_FOUND (P2) or an error, o's words released. */
static int
pack_end(pk_out *o, int rc, int tag, uint32_t ident, cow_val *out)
{
    cow_pack *p = NULL;
    if (rc == COW_OK && (p = node_from(o)) == NULL)
        rc = COW_ENOMEM;
    if (rc != COW_OK) {
        out_release(o);
        return rc == PK_NO ? COW_NOT_FOUND : rc;
    }
    memset(out, 0, sizeof *out);
    out->tag = COW_T_PACKED;
    out->slen = (uint8_t)tag;
    out->aux = ident;
    out->u.w = cow_word_of(p);
    return COW_FOUND;
}

/* cow_pack_make, and with keep_idents cow_pack_repack. */
static int
pack_general(const cow_val *v, int keep_idents, cow_val *out)
{
    pk_out o;
    int dict = is_dict_tag(v->tag);
    if (kind_code(v->tag) < 0)
        return COW_NOT_FOUND;
    out_init(&o);
    o.keep_idents = keep_idents;
    return pack_end(&o, dict ? put_map_body(&o, cow_val_getmap(v), 0)
                             : put_vec_body(&o, cow_val_getvec(v), 0),
                    v->tag, dict ? cow_val_getmap(v)->ident : cow_val_getvec(v)->ident, out);
}

int
cow_pack_make(const cow_val *v, cow_val *out)
{
    return pack_general(v, 0, out);
}

int
cow_pack_repack(const cow_val *v, cow_val *out)
{
    return pack_general(v, 1, out);
}

/* The writes of a dict body's items but the one at pos, taken from its
 * reader, into o (whose shape word the caller wrote), val written there. */
static int
copy_body_with(pk_out *o, pk_in *in, unsigned count, unsigned pos, const cow_val *val)
{
    int rc = COW_OK;
    for (unsigned i = 0; i < count && rc == COW_OK; i++)
        if (i != pos)
            rc = copy_item(o, in, 0);
        else if ((rc = skip_item(in, 0)) == COW_OK)
            rc = put_value(o, val, 0);
    return rc;
}

int
cow_pack_with_field(const cow_val *v, const char *key, size_t klen, cow_pack_memo *memo,
                    const cow_val *val, cow_val *out)
{
    pk_in in = reader_of(v), shape_in = in;
    unsigned count, pos;
    pk_out o;
    int rc;
    if (!is_dict_tag(v->slen))
        return COW_ECORRUPT;
    if (val->tag == COW_T_PACKED || cow_tag_is_map(val->tag) || cow_tag_is_vec(val->tag))
        return COW_NOT_FOUND;           /* its identity would be derived (P5) */
    if ((rc = field_pos(&shape_in, key, klen, memo, &pos, &count)) != COW_FOUND)
        return rc;
    out_init(&o);
    if ((rc = copy_word_index(&o, &in)) == COW_OK)     /* the same shape */
        rc = copy_body_with(&o, &in, count, pos, val);
    return pack_end(&o, rc, v->slen, v->aux, out);
}

int
cow_pack_make_dict(const cow_val *keys, const cow_val *vals, size_t n, cow_val *out)
{
    pk_out o;
    out_init(&o);
    return pack_end(&o, put_dict_body(&o, keys, vals, n, 0, 0), COW_T_DICT, cow_next_ident(), out);
}

int
cow_pack_make_seq(int tag, const cow_val *items, size_t n, cow_val *out)
{
    pk_out o;
    if (is_dict_tag(tag) || kind_code(tag) < 0)
        return COW_NOT_FOUND;
    out_init(&o);
    return pack_end(&o, put_seq_body(&o, items, n, 0), tag, cow_next_ident(), out);
}

/* ---- batches (P6) ---------------------------------------------------------- */

/* A batch being built: o holds a list body (count byte, then one container
 * item per member); at[i] is the member's value, off[i] where its body
 * starts. */
/* Distinct strings a batch counts to find its repeated ones (P7). */
#define TALLY_SLOTS 256

typedef struct str_tally {
    struct { const char *p; size_t len; unsigned count; } cell[TALLY_SLOTS];
    unsigned used;
} str_tally;

typedef struct pk_batch {
    pk_out o;
    cow_val *at[COW_PACK_MAX_ITEMS];
    size_t off[COW_PACK_MAX_ITEMS];
    unsigned n;
    str_tally tally;
    pk_subst subst;
} pk_batch;

/* Counts one str of a member (a visitor's scalar: inline strs come as views
 * into the node, which outlives the count). */
static int
tally_scalar(void *ctx, const cow_val *v)
{
    str_tally *t = ctx;
    size_t len = v->aux, h;
    if (v->tag != COW_T_STR_VIEW || len < 2)
        return COW_OK;                  /* one byte costs what its word index would */
    h = cow_hash_bytes(v->u.ref, len, STRING_SEED) % TALLY_SLOTS;
    for (;; h = (h + 1) % TALLY_SLOTS) {
        if (t->cell[h].p == NULL) {
            if (2 * t->used >= TALLY_SLOTS)
                return COW_OK;          /* enough distinct ones seen */
            t->cell[h].p = v->u.ref;
            t->cell[h].len = len;
            t->cell[h].count = 1;
            t->used++;
            return COW_OK;
        }
        if (t->cell[h].len == len && memcmp(t->cell[h].p, v->u.ref, len) == 0) {
            t->cell[h].count++;
            return COW_OK;
        }
    }
}

static int tally_begin(void *ctx, int tag, size_t n) { return COW_OK; }
static int tally_key(void *ctx, const char *k, size_t len) { return COW_OK; }
static int tally_end(void *ctx, int tag) { return COW_OK; }
static const cow_pack_visitor tally_visitor = {tally_begin, tally_key, tally_scalar, tally_end};

/* Bytes a str saves in each batch written by word, less its word there:
 * its count spread over the batches the members will fill. */
static long
subst_saving(size_t len, unsigned count, size_t batches)
{
    long per_batch = (long)(count / batches);
    return per_batch < 2 ? 0 : per_batch * ((long)len - 1) - (long)sizeof(cow_word);
}

/* The strings worth writing by word, most saving first, interned; batches
 * is how many nodes the members will take. */
static void
choose_subst(str_tally *t, pk_subst *s, size_t batches)
{
    s->n = 0;
    while (s->n < PK_SUBST_MAX) {
        size_t best = TALLY_SLOTS;
        long most = 0;
        for (size_t i = 0; i < TALLY_SLOTS; i++) {
            long saving = t->cell[i].p ? subst_saving(t->cell[i].len, t->cell[i].count, batches) : 0;
            if (saving > most) {
                most = saving;
                best = i;
            }
        }
        if (best == TALLY_SLOTS)
            return;
        t->cell[best].count = 0;        /* chosen */
        s->blob[s->n] = intern(string_cache, STRING_SEED, (const uint8_t *)t->cell[best].p,
                               t->cell[best].len);
        s->n += s->blob[s->n] != NULL;  /* out of memory: written inline */
    }
}

static void
subst_release(pk_subst *s)
{
    for (unsigned i = 0; i < s->n; i++)
        blob_drop(s->blob[i]);
    s->n = 0;
}

/* Adds packed value *v as the next member: COW_OK, PK_NO when it does not
 * fit (the batch left as it was) or an error. */
static int
batch_add(pk_batch *b, cow_val *v)
{
    size_t n = b->o.n;
    unsigned nwords = b->o.nwords;
    int rc;
    if (b->n == COW_PACK_MAX_ITEMS)
        return PK_NO;
    if ((rc = put_container(&b->o, v, 0)) == COW_OK
        && b->o.n + b->o.nwords * sizeof(cow_word) > COW_PACK_BATCH_MAX_BYTES)
        rc = PK_NO;
    if (rc != COW_OK) {
        while (b->o.nwords > nwords)
            word_release(b->o.words[--b->o.nwords]);
        b->o.n = n;
        return rc;
    }
    b->at[b->n] = v;
    b->off[b->n++] = n + 1;             /* past the item's code byte */
    return COW_OK;
}

/* Makes the node of a batch of two or more members and points them at it;
 * starts the next batch either way.  COW_OK or COW_ENOMEM (members kept as
 * they were). */
static int
batch_flush(pk_batch *b)
{
    cow_pack *p = NULL;
    int rc = COW_OK;
    if (b->n >= 2) {
        b->o.buf[0] = (uint8_t)b->n;    /* the list body's count */
        if ((p = node_from(&b->o)) == NULL)
            rc = COW_ENOMEM;
    }
    for (unsigned i = 0; p && i < b->n; i++) {
        cow_val member = *b->at[i];
        cow_pack_retain(p);
        b->at[i]->u.w = cow_word_of(p);
        cow_pack_set_offset(b->at[i], b->off[i]);
        cow_val_release(&member);
    }
    cow_pack_release(p);                /* the members hold it now */
    out_release(&b->o);
    b->o.n = 1;                         /* room for the count */
    b->n = 0;
    return rc;
}

/* A pack of its own, on the heap, that nothing else holds: moving it into a
 * batch costs no sharing. */
static int
is_lone_pack(const cow_val *v)
{
    return v->tag == COW_T_PACKED && cow_pack_offset(v) == 0 && !cow_word_stored(v->u.w)
           && ((const cow_pack *)v->u.w)->refcnt == 1;
}

int
cow_pack_batch(cow_val *vals, size_t n, size_t stride)
{
    pk_batch *b;
    size_t lone = 0, bytes = 0;
    int rc = COW_OK;
    for (size_t i = 0; i < n && lone < 2; i++)
        lone += (size_t)is_lone_pack(&vals[i * stride]);
    if (lone < 2)
        return COW_OK;                  /* nothing to share a node with */
    if ((b = cow_malloc(sizeof *b)) == NULL)
        return COW_ENOMEM;
    b->o.n = 1;
    b->o.nwords = 0;
    b->o.subst = &b->subst;
    b->n = 0;
    memset(&b->tally, 0, sizeof b->tally);
    for (size_t i = 0; i < n; i++) {
        const cow_val *v = &vals[i * stride];
        if (is_lone_pack(v)) {
            const cow_pack *p = (const cow_pack *)v->u.w;
            bytes += nbytes_of(p) + nwords_of(p) * sizeof(cow_word);
            (void)cow_pack_visit(v, &tally_visitor, &b->tally);
        }
    }
    choose_subst(&b->tally, &b->subst, bytes / COW_PACK_BATCH_MAX_BYTES + 1);
    for (size_t i = 0; i < n && rc == COW_OK; i++) {
        cow_val *v = &vals[i * stride];
        if (!is_lone_pack(v))
            continue;
        if ((rc = batch_add(b, v)) == PK_NO && (rc = batch_flush(b)) == COW_OK
            && (rc = batch_add(b, v)) == PK_NO)
            rc = COW_OK;                /* too big to share a node: stays alone */
    }
    if (rc == COW_OK)
        rc = batch_flush(b);
    else
        out_release(&b->o);
    subst_release(&b->subst);
    cow_free(b);
    return rc;
}

int
cow_pack_unpack(const cow_val *v, cow_val *out)
{
    pk_in in = reader_of(v);
    int rc;
    if (cow_ref_error() < 0 || kind_code(v->slen) < 0)
        return COW_ECORRUPT;
    if ((rc = get_container(&in, out, v->slen, v->aux, 0)) < 0)
        return rc;
    if (!body_ended(v, &in)) {
        cow_val_release(out);
        return COW_ECORRUPT;            /* bytes past the container */
    }
    return COW_OK;
}

/* ---- stored nodes ----------------------------------------------------------- */

static cow_pack poison_pack = {COW_REFCNT_STORED, 0};

void *cow_pack_poison(int kind) { return &poison_pack; }

size_t
cow_pack_stored_size(const void *node, size_t avail, int kind)
{
    const cow_pack *p = node;
    size_t size;
    if (avail < sizeof *p || p->refcnt != COW_REFCNT_STORED || nwords_of(p) > COW_PACK_MAX_WORDS
        || nbytes_of(p) > COW_PACK_MAX_BYTES)
        return 0;
    size = sizeof *p + nwords_of(p) * sizeof(cow_word) + nbytes_of(p);
    if (size > avail)
        return 0;
    for (unsigned i = 0; i < nwords_of(p); i++)
        if (words_of(p)[i] == 0 || !cow_word_page_ok(words_of(p)[i]))
            return 0;
    return size;
}

/* Stored: the heap bytes with refcnt COW_REFCNT_STORED and page words. */
cow_word
cow_pack_write_node(cow_segw *w, const void *node, int kind)
{
    const cow_pack *p = node;
    cow_pack head = {COW_REFCNT_STORED, p->size};
    struct { cow_word words[COW_PACK_MAX_WORDS]; uint8_t items[COW_PACK_MAX_BYTES]; } body;
    unsigned k = nwords_of(p);
    if (k > COW_PACK_MAX_WORDS || nbytes_of(p) > COW_PACK_MAX_BYTES) {
        cow_ref_set_error(COW_ECORRUPT);
        return 0;
    }
    for (unsigned i = 0; i < k; i++)
        body.words[i] = cow_segw_ref(w, &words_of(p)[i], COW_NK_BLOB);
    memcpy((uint8_t *)body.words + k * sizeof(cow_word), items_of(p), nbytes_of(p));
    return cow_segw_emit(w, &head, sizeof head, &body, k * sizeof(cow_word) + nbytes_of(p),
                         body.words, k);
}
