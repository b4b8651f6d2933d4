/* cow_val: one 16-byte tagged value, the element of every vector and map.
 *
 * Why: nodes must hold no Python objects (so they need no cyclic GC, can be
 * shared by copies without touching Python refcounts, and can later be written
 * to pages), and small values must cost nothing beyond their 16 bytes.
 *
 *   byte  0      1        2..3     4..7     8..15
 *        +------+--------+--------+--------+----------------------------+
 *        | tag  | slen   |   inline UTF-8 / bytes (slen <= 14)           |  SSTR, SBYTES
 *        | tag  |   -    |   -    |  aux   | u: i64 / f64 / pointer     |  everything else
 *        +------+--------+--------+--------+----------------------------+
 *
 * Invariants (cited as V1.. by tests and validators):
 *  V1  A str or bytes of at most COW_INLINE_MAX bytes is always inline
 *      (SSTR/SBYTES); a longer one is always a blob (STR/BYTES).  So equal
 *      strings have equal tags and byte-equality is string equality.
 *  V2  INT holds every integer that fits int64; BIGINT only those that do not,
 *      as minimal two's-complement little-endian bytes.
 *  V3  Numbers that compare equal (1, 1.0, True) hash equal: hashing goes
 *      through one canonical numeric form (cow_num).
 *  V4  *_VIEW values borrow memory owned elsewhere; they are probe keys for
 *      lookups and are never stored in a node.
 *  V5  A value owns one reference to its blob, vector or map; cow_val_retain /
 *      cow_val_release are the only ways to copy or drop one.
 *  V6  HOLE appears only as the key of a deleted entry in a map's entry log.
 *  V7  the blob, vector or map of a value is a cow_word (ref.h): read it with
 *      cow_val_getblob / getvec / getmap; copy a value that may lie in pages
 *      with cow_val_copy, never by assignment (the word must be exported).
 *  V8  An extension leaf (datetime, Decimal, UUID, class records: ext.h) of
 *      at most COW_INLINE_MAX bytes is always inline (SEXT), a longer one a
 *      blob (EXT), as V1 for strings; its first byte is its subtype.
 */
#ifndef COWSTORE_VALUE_H
#define COWSTORE_VALUE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "cowstore/errors.h"
#include "cowstore/hash.h"
#include "cowstore/ref.h"

typedef enum cow_tag {
    COW_T_HOLE = 0,     /* deleted map entry (V6) */
    COW_T_NONE,
    COW_T_BOOL,         /* u.i is 0 or 1 */
    COW_T_INT,          /* u.i */
    COW_T_BIGINT,       /* u.blob, V2 */
    COW_T_FLOAT,        /* u.f */
    COW_T_SSTR,         /* inline UTF-8 (V1) */
    COW_T_STR,          /* u.blob UTF-8 */
    COW_T_SBYTES,       /* inline bytes */
    COW_T_BYTES,        /* u.blob */
    COW_T_STR_VIEW,     /* u.ref + aux length, borrowed (V4) */
    COW_T_BYTES_VIEW,   /* u.ref + aux length, borrowed (V4) */
    COW_T_TUPLE,        /* u.vec, immutable */
    COW_T_LIST,         /* u.vec */
    COW_T_FLIST,        /* u.vec, frozen list */
    COW_T_DICT,         /* u.map */
    COW_T_FDICT,        /* u.map, frozen */
    COW_T_SET,          /* u.map whose values are all None */
    COW_T_FSET,         /* u.map, frozen set */
    COW_T_NDARRAY,      /* u.w blob: cow_ndarray_head, shape, C-order bytes */
    COW_T_PACKED,       /* u.w pack node; slen its container's tag, aux its
                         * identity (pack.h) */
    COW_T_SEXT,         /* inline extension leaf, 1..14 bytes (V8, ext.h) */
    COW_T_EXT,          /* u.blob extension leaf, > 14 bytes (V8, ext.h) */
    COW_T__COUNT
} cow_tag;

/* Longest str/bytes stored inline: 16 bytes less the tag and length bytes. */
#define COW_INLINE_MAX 14
/* Where inline bytes start inside a cow_val. */
#define COW_INLINE_OFFSET 2

/* The most bytes cow_equal_short and cow_copy_short take. */
#define COW_SHORT_MAX 16

/* Whether n <= 16 bytes at a and b are equal, by two overlapping loads of
 * 8, 4, 2 or 1 bytes each (a short key against a probe: no call). */
static inline int
cow_equal_short(const void *a, const void *b, size_t n)
{
    const char *x = (const char *)a, *y = (const char *)b;
    uint64_t a8, b8, c8, d8;
    uint32_t a4, b4, c4, d4;
    uint16_t a2, b2, c2, d2;
    if (n >= 8) {
        memcpy(&a8, x, 8), memcpy(&b8, x + n - 8, 8), memcpy(&c8, y, 8), memcpy(&d8, y + n - 8, 8);
        return ((a8 ^ c8) | (b8 ^ d8)) == 0;
    }
    if (n >= 4) {
        memcpy(&a4, x, 4), memcpy(&b4, x + n - 4, 4), memcpy(&c4, y, 4), memcpy(&d4, y + n - 4, 4);
        return ((a4 ^ c4) | (b4 ^ d4)) == 0;
    }
    if (n >= 2) {
        memcpy(&a2, x, 2), memcpy(&b2, x + n - 2, 2), memcpy(&c2, y, 2), memcpy(&d2, y + n - 2, 2);
        return ((a2 ^ c2) | (b2 ^ d2)) == 0;
    }
    return n == 0 || x[0] == y[0];
}

/* Copies n <= 16 bytes as two overlapping moves of 8, 4, 2 or 1 bytes.
 * Inline bytes are copied on every read and write of a short str, and a
 * memcpy of a length the compiler cannot bound is inlined as `rep movsq`
 * past 8 bytes, whose start-up cost made items() of 9-byte keys 25 ns an
 * item slower than this. */
static inline void
cow_copy_short(void *dst, const void *src, size_t n)
{
    char *d = (char *)dst;
    const char *s = (const char *)src;
    uint64_t a8, b8;
    uint32_t a4, b4;
    uint16_t a2, b2;
    if (n >= 8) {
        memcpy(&a8, s, 8), memcpy(&b8, s + n - 8, 8);
        memcpy(d, &a8, 8), memcpy(d + n - 8, &b8, 8);
    }
    else if (n >= 4) {
        memcpy(&a4, s, 4), memcpy(&b4, s + n - 4, 4);
        memcpy(d, &a4, 4), memcpy(d + n - 4, &b4, 4);
    }
    else if (n >= 2) {
        memcpy(&a2, s, 2), memcpy(&b2, s + n - 2, 2);
        memcpy(d, &a2, 2), memcpy(d + n - 2, &b2, 2);
    }
    else if (n == 1)
        d[0] = s[0];
}

/* Whether n bytes at a and b are equal; copies n bytes: short ones (keys,
 * inline strs, items) with no call, longer ones by the library. */
static inline int
cow_bytes_equal(const void *a, const void *b, size_t n)
{
    return n <= COW_SHORT_MAX ? cow_equal_short(a, b, n) : memcmp(a, b, n) == 0;
}

static inline void
cow_copy_bytes(void *dst, const void *src, size_t n)
{
    if (n <= COW_SHORT_MAX)
        cow_copy_short(dst, src, n);
    else
        memcpy(dst, src, n);
}

struct cow_blob;
struct cow_vec;
struct cow_map;

typedef struct cow_val {
    uint8_t tag;        /* enum cow_tag */
    uint8_t slen;       /* inline length for SSTR/SBYTES */
    uint8_t inl[2];     /* first inline bytes; the rest overlay aux and u */
    uint32_t aux;       /* length of a *_VIEW */
    union {
        int64_t i;
        double f;
        cow_word w;         /* blob, vector or map (V7) */
        const char *ref;    /* *_VIEW bytes */
    } u;
} cow_val;

/* A refcounted immutable byte string: a long str or bytes, a bigint, an
 * array or an extension leaf.  The same bytes in the heap and in pages
 * (refcnt COW_REFCNT_STORED there):
 *
 *   +--------+--------+---------------------------+
 *   | refcnt |  len   | bytes                     |   len < COW_BLOB_HUGE
 *   |  u32   |  u32   |                           |
 *   +--------+--------+---------+-----------------+
 *   | refcnt |  HUGE  | u64 len | bytes           |   4 GiB - 1 bytes or more
 *   +--------+--------+---------+-----------------+
 *
 * An 8-byte header: format 5 spent 24 bytes (a 64-bit length and a cached
 * hash), which weighed on every key of 15 bytes or more.  Hashes are
 * computed when asked for (a map caches nothing per key either: it rehashes
 * a key only to split an index slot).  Read through cow_blob_len and
 * cow_blob_data. */
#define COW_BLOB_HUGE UINT32_MAX
typedef struct cow_blob {
    uint32_t refcnt;
    uint32_t len32;     /* the length, or COW_BLOB_HUGE: a u64 length leads body */
    char body[];
} cow_blob;

static inline size_t
cow_blob_len(const cow_blob *b)
{
    uint64_t n;
    if (b->len32 != COW_BLOB_HUGE)
        return b->len32;
    memcpy(&n, b->body, sizeof n);
    return (size_t)n;
}

static inline char *
cow_blob_data(const cow_blob *b)
{
    return (char *)b->body + (b->len32 == COW_BLOB_HUGE ? sizeof(uint64_t) : 0);
}

/* Header bytes of a blob of len bytes. */
static inline size_t
cow_blob_head_size(size_t len)
{
    return sizeof(cow_blob) + (len >= COW_BLOB_HUGE ? sizeof(uint64_t) : 0);
}

static inline cow_val cow_val_none(void) { cow_val v = {0}; v.tag = COW_T_NONE; return v; }
static inline cow_val cow_val_hole(void) { cow_val v = {0}; v.tag = COW_T_HOLE; return v; }
static inline cow_val cow_val_bool(int b) { cow_val v = {0}; v.tag = COW_T_BOOL; v.u.i = !!b; return v; }
static inline cow_val cow_val_int(int64_t i) { cow_val v = {0}; v.tag = COW_T_INT; v.u.i = i; return v; }
static inline cow_val cow_val_float(double f) { cow_val v = {0}; v.tag = COW_T_FLOAT; v.u.f = f; return v; }

/* Owned str/bytes/bigint values; a blob is allocated only past COW_INLINE_MAX
 * (bigints always use one).  Return COW_OK or COW_ENOMEM. */
int cow_val_str(cow_val *out, const char *utf8, size_t len);
int cow_val_bytes(cow_val *out, const void *data, size_t len);
int cow_val_bigint(cow_val *out, const uint8_t *le_twos, size_t len);
/* A blob of any length (never inline) under `tag`: shapes (pack.h). */
int cow_val_blob(cow_val *out, cow_tag tag, const void *data, size_t len);
/* A borrowed probe key (V4); len must fit 32 bits (else make an owned value). */
/* The slen of a STR_VIEW of a repeated str (pack.h P7): one str a pack's
 * records share, which a reader may make once and share too. */
#define COW_VIEW_REPEATED 1
cow_val cow_val_str_view(const char *utf8, size_t len);
cow_val cow_val_bytes_view(const void *data, size_t len);
/* Wraps a container: steals the caller's reference to vec/map. */
cow_val cow_val_vec(cow_tag tag, struct cow_vec *vec);
cow_val cow_val_map(cow_tag tag, struct cow_map *map);

/* A fresh container identity (cow_vec.ident, cow_map.ident); wraps at 2^32,
 * harmless since identities are only compared along one path. */
uint32_t cow_next_ident(void);
/* Starts this process's identities at a random point; called at start and
 * in a forked child.  A container read from a parcel or store carries the
 * identities of the process that wrote it, and a view stays attached while
 * its slot holds its identity: counters that all started at 0 let a
 * container from another process pass for the local one it replaced.  A
 * false match now needs a 2^-32 coincidence. */
void cow_seed_idents(void);

/* Takes one more reference to what a heap-form value holds (V5). */
void cow_val_retain(const cow_val *v);
void cow_vals_release(cow_val *vals, size_t n);     /* each of vals[0..n) */
/* *dst = a new reference to *src, which may lie in a stored node (V7). */
void cow_val_copy(cow_val *dst, const cow_val *src);

/* Borrowed: what a BIGINT/STR/BYTES, vector-tagged or map-tagged value holds. */
static inline struct cow_blob *cow_val_getblob(const cow_val *v) { return (struct cow_blob *)cow_ref_get(&v->u.w, COW_NK_BLOB); }
static inline struct cow_vec *cow_val_getvec(const cow_val *v) { return (struct cow_vec *)cow_ref_get(&v->u.w, COW_NK_VEC); }
static inline struct cow_map *cow_val_getmap(const cow_val *v) { return (struct cow_map *)cow_ref_get(&v->u.w, COW_NK_MAP); }
/* 1 when the value's blob/vector/map is in a store's pages. */
int cow_val_stored(const cow_val *v);
/* Checks a value read from pages: a storable tag, a sane inline length. */
int cow_val_check_stored(const cow_val *v);

/* A numpy array leaf: the blob's bytes are this header, then ndim u64
 * dimensions, then the array's C-order bytes at data_off (a multiple of 8,
 * so the data is 8-byte aligned wherever the blob lies: heap blocks and
 * stored nodes are).  Stored by value; read back as a read-only view. */
typedef struct cow_ndarray_head {
    char dtype[8];          /* numpy's dtype.str ("<f8", "|b1"), NUL padded */
    uint32_t ndim;
    uint32_t data_off;      /* from the start of the blob's data */
    uint64_t nbytes;        /* the array's bytes: blob length - data_off */
} cow_ndarray_head;
/* Most dimensions of a stored array: numpy 1's limit (NPY_MAXDIMS); numpy 2
 * allows 64, and such arrays are refused. */
#define COW_NDARRAY_MAX_DIM 32
/* The dtype kinds stored: plain bytes numpy views in place (bool, signed,
 * unsigned, float, complex).  Their dtype.str is byte order, kind, item size:
 * "|b1", "<i8", ">c16". */
#define COW_NDARRAY_KINDS "biufc"
/* The byte orders dtype.str names ('|': not applicable, one-byte items). */
#define COW_NDARRAY_ORDERS "<>|"
/* The largest item size of those kinds (complex256, "<c32"). */
#define COW_NDARRAY_MAX_ITEM 32

/* An owned NDARRAY value: copies data (nbytes) and shape. */
int cow_val_ndarray(cow_val *out, const char *dtype, uint32_t ndim, const uint64_t *shape,
                    const void *data, uint64_t nbytes);
/* The parts of an NDARRAY value, checked (stored bytes may lie): the
 * layout against the blob's length, the dtype against the form above, and
 * nbytes against shape times item size.  COW_OK or COW_ECORRUPT. */
int cow_ndarray_parts(const cow_val *v, const cow_ndarray_head **head, const uint64_t **shape,
                      const char **data);

/* Length of the minimal two's-complement form of a little-endian integer (V2). */
size_t cow_bigint_minimal_len(const uint8_t *le, size_t len);

/* Pointer and length of a str/bytes/bigint value (any representation). */
void cow_val_span(const cow_val *v, const char **data, size_t *len);

static inline int cow_tag_is_str(int t) { return t == COW_T_SSTR || t == COW_T_STR || t == COW_T_STR_VIEW; }
/* The bytes of an inline str or a str view, as cow_val_span gives them but
 * with no call (the hot keys and probes): 1, or 0 for any other value. */
static inline int
cow_val_str_bytes(const cow_val *v, const char **data, size_t *len)
{
    if (v->tag == COW_T_SSTR) {
        *data = (const char *)v + COW_INLINE_OFFSET;
        *len = v->slen <= COW_INLINE_MAX ? v->slen : 0;     /* V1; pages may lie */
        return 1;
    }
    if (v->tag == COW_T_STR_VIEW) {
        *data = v->u.ref;
        *len = v->aux;
        return 1;
    }
    return 0;
}
static inline int cow_tag_is_bytes(int t) { return t == COW_T_SBYTES || t == COW_T_BYTES || t == COW_T_BYTES_VIEW; }
static inline int cow_tag_is_number(int t) { return t >= COW_T_BOOL && t <= COW_T_FLOAT; }
static inline int cow_tag_is_vec(int t) { return t == COW_T_TUPLE || t == COW_T_LIST || t == COW_T_FLIST; }
static inline int cow_tag_is_map(int t) { return t >= COW_T_DICT && t <= COW_T_FSET; }
#define COW_TAG_BIT(t) (1u << (t))
#define COW_BLOB_TAGS (COW_TAG_BIT(COW_T_BIGINT) | COW_TAG_BIT(COW_T_STR) | COW_TAG_BIT(COW_T_BYTES) \
                       | COW_TAG_BIT(COW_T_NDARRAY) | COW_TAG_BIT(COW_T_EXT))
#define COW_WORD_TAGS (COW_BLOB_TAGS | COW_TAG_BIT(COW_T_TUPLE) | COW_TAG_BIT(COW_T_LIST)        \
                       | COW_TAG_BIT(COW_T_FLIST) | COW_TAG_BIT(COW_T_DICT) | COW_TAG_BIT(COW_T_FDICT) \
                       | COW_TAG_BIT(COW_T_SET) | COW_TAG_BIT(COW_T_FSET) | COW_TAG_BIT(COW_T_PACKED))
_Static_assert(COW_T__COUNT <= 32, "a tag set is one 32-bit mask");
/* 1 when a value of this tag holds a blob; a cow_word (inline, one bit
 * test each: every copy and release of a value asks it).  A tag read from a
 * page may be any byte: past the tags, neither. */
static inline int
cow_tag_has_blob(int t)
{
    return (unsigned)t < COW_T__COUNT && (COW_BLOB_TAGS >> t) & 1u;
}
static inline int
cow_tag_has_word(int t)
{
    return (unsigned)t < COW_T__COUNT && (COW_WORD_TAGS >> t) & 1u;
}
static inline int cow_tag_is_set(int t) { return t == COW_T_SET || t == COW_T_FSET; }

/* Drops v, leaving it NONE.  A value without a word (the commonest:
 * ints, short strs) costs a test here, no call. */
void cow_val_release_word(cow_val *v);
static inline void
cow_val_release(cow_val *v)
{
    if (cow_tag_has_word(v->tag))
        cow_val_release_word(v);
    else
        *v = cow_val_none();
}

/* Stable hash (same in every process and version).  COW_ETYPE for mutable
 * containers (LIST, DICT, SET), which are unhashable as in Python. */
int cow_val_hash(const cow_val *v, uint64_t *out);
/* cow_val_hash of the int i (any number equal to i hashes alike). */
static inline uint64_t cow_val_int_hash(int64_t i) { return cow_hash_mix64((uint64_t)i); }
/* The hash a frozen container gives its contents: like cow_val_hash, but
 * nested mutable containers hash by content (they read back frozen). */
int cow_val_hash_content(const cow_val *v, uint64_t *out);
/* Python equality: 1 == 1.0 == True == Decimal(1) (ext.h E1), str != bytes,
 * dict == frozen dict, list != tuple, set == frozenset.  No errors: both
 * values are well formed (damaged extension bytes compare as bytes, E3). */
int cow_val_equal(const cow_val *a, const cow_val *b);
/* Ordering for collision buckets: consistent with cow_val_equal (equal values
 * compare 0); maps and sets of one kind compare 0 to each other, as do NaNs of
 * one bit pattern (never equal), so a bucket scans such a run linearly (see
 * map.c, invariant H4). */
int cow_val_order(const cow_val *a, const cow_val *b);

#endif
