/* Extension leaves: the parts of their bytes that hashing and equality read.
 * Layouts and invariants E1..E3 are in cowstore/ext.h; every read is
 * bounds-checked, since the bytes may come from a damaged file (E3). */
#include <math.h>
#include <string.h>

#include "cowstore/ext.h"
#include "cowstore/hash.h"

/* Seeds of the extension classes (distinct from hash.h's). */
#define EXT_SEED_TEMPORAL 0x3c6ef372fe94f82bULL
#define EXT_SEED_RATIONAL 0xa54ff53a5f1d36f1ULL
#define EXT_SEED_COMPLEX  0x510e527fade682d1ULL
#define EXT_SEED_BYTES    0x9b05688c2b3e6c1fULL
/* The longest varint: 64 bits at 7 per byte. */
#define EXT_VARINT_MAX 10
/* The bytes of a COMPLEX: subtype, real, imaginary. */
#define EXT_COMPLEX_LEN 17
/* The bytes of a temporal head: subtype and word. */
#define EXT_TEMPORAL_HEAD 9

/* What decides an extension value's equality. */
enum ext_class { CLASS_BYTES, CLASS_TEMPORAL, CLASS_RATIONAL, CLASS_COMPLEX };

typedef struct ext_key {
    int kind;                   /* enum cow_ext_numkey */
    const uint8_t *key;         /* the key's bytes, kind byte first */
    size_t keylen;
    int64_t i;
    double f;
    const uint8_t *big;
    size_t nbig;
} ext_key;

static void
span_of(const cow_val *v, const uint8_t **p, size_t *n)
{
    const char *c;
    cow_val_span(v, &c, n);
    *p = (const uint8_t *)c;
}

static int
get_varint(const uint8_t **p, const uint8_t *end, uint64_t *out)
{
    uint64_t x = 0;
    for (int k = 0; k < EXT_VARINT_MAX && *p < end; k++) {
        uint8_t b = *(*p)++;
        x |= (uint64_t)(b & 0x7f) << (7 * k);
        if (!(b & 0x80)) {
            *out = x;
            return 0;
        }
    }
    return -1;
}

/* A varint length, then that many bytes (at least one). */
static int
get_counted(const uint8_t **p, const uint8_t *end, const uint8_t **at, size_t *len)
{
    uint64_t n;
    if (get_varint(p, end, &n) < 0 || n == 0 || n > (uint64_t)(end - *p))
        return -1;
    *at = *p;
    *len = (size_t)n;
    *p += n;
    return 0;
}

static uint64_t
load_u64(const uint8_t *p)
{
    uint64_t x = 0;
    for (int k = 7; k >= 0; k--)
        x = x << 8 | p[k];
    return x;
}

static double
load_f64(const uint8_t *p)
{
    uint64_t bits = load_u64(p);
    double f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* The numeric key of a DECIMAL or FRACTION (E1); -1 when damaged. */
static int
parse_key(const uint8_t *p, size_t n, ext_key *k)
{
    const uint8_t *q = p + 1, *end = p + n, *d;
    uint64_t u;
    size_t nd;
    if (n < 2)
        return -1;
    k->key = q;
    k->kind = *q++;
    switch (k->kind) {
    case COW_EXT_K_INT:
        if (get_varint(&q, end, &u) < 0)
            return -1;
        k->i = (int64_t)(u >> 1) ^ -(int64_t)(u & 1);      /* zigzag */
        break;
    case COW_EXT_K_FLOAT:
        if (end - q < 8)
            return -1;
        k->f = load_f64(q);
        q += 8;
        break;
    case COW_EXT_K_BIG:
    case COW_EXT_K_DEC:
        if (get_counted(&q, end, &k->big, &k->nbig) < 0)
            return -1;
        break;
    case COW_EXT_K_RATIO:
        if (get_counted(&q, end, &d, &nd) < 0 || get_counted(&q, end, &d, &nd) < 0)
            return -1;
        break;
    case COW_EXT_K_NAN:
    case COW_EXT_K_SNAN:
        break;
    default:
        return -1;
    }
    k->keylen = (size_t)(q - k->key);
    return 0;
}

static int is_tag_ext(int t) { return t == COW_T_SEXT || t == COW_T_EXT; }

int
cow_ext_number(const cow_val *v, int *kind, int64_t *i, double *f,
               const uint8_t **big, size_t *nbig)
{
    const uint8_t *p;
    size_t n;
    ext_key k;
    if (!is_tag_ext(v->tag))
        return 0;
    span_of(v, &p, &n);
    if (n == EXT_COMPLEX_LEN && p[0] == COW_EXT_COMPLEX && load_f64(p + 9) == 0.0) {
        *kind = COW_EXT_NUM_FLOAT;
        *f = load_f64(p + 1);
        return 1;
    }
    if (n == 0 || (p[0] != COW_EXT_DECIMAL && p[0] != COW_EXT_FRACTION) || parse_key(p, n, &k) < 0)
        return 0;
    switch (k.kind) {
    case COW_EXT_K_INT: *kind = COW_EXT_NUM_INT; *i = k.i; return 1;
    case COW_EXT_K_BIG: *kind = COW_EXT_NUM_BIG; *big = k.big; *nbig = k.nbig; return 1;
    case COW_EXT_K_FLOAT: *kind = COW_EXT_NUM_FLOAT; *f = k.f; return 1;
    }
    return 0;
}

/* A temporal value's subtype, awareness and the time its equality uses. */
typedef struct ext_time { int subtype, aware; int64_t t; } ext_time;

static int
parse_time(const uint8_t *p, size_t n, ext_time *out)
{
    uint64_t word, off = 0;
    if (n < EXT_TEMPORAL_HEAD)
        return -1;
    word = load_u64(p + 1);
    out->subtype = p[0];
    out->aware = (int)(word >> COW_EXT_AWARE_BIT & 1);
    out->t = (int64_t)(word & ((1ULL << COW_EXT_US_BITS) - 1));
    if (out->aware) {
        if (n < EXT_TEMPORAL_HEAD + COW_EXT_OFFSET_BYTES)
            return -1;
        for (int k = COW_EXT_OFFSET_BYTES - 1; k >= 0; k--)
            off = off << 8 | p[EXT_TEMPORAL_HEAD + k];
        if (off >> (8 * COW_EXT_OFFSET_BYTES - 1))                 /* sign-extend */
            off |= ~0ULL << (8 * COW_EXT_OFFSET_BYTES);
        out->t -= (int64_t)off;
    }
    return 0;
}

/* How v compares, its parsed parts in *tm or *k (E3: damaged is BYTES). */
static int
classify(const cow_val *v, const uint8_t **p, size_t *n, ext_time *tm, ext_key *k)
{
    span_of(v, p, n);
    if (*n == 0)
        return CLASS_BYTES;
    switch ((*p)[0]) {
    case COW_EXT_DATETIME:
    case COW_EXT_TIME:
        return parse_time(*p, *n, tm) < 0 ? CLASS_BYTES : CLASS_TEMPORAL;
    case COW_EXT_DECIMAL:
    case COW_EXT_FRACTION:
        return parse_key(*p, *n, k) < 0 ? CLASS_BYTES : CLASS_RATIONAL;
    case COW_EXT_COMPLEX:
        return *n == EXT_COMPLEX_LEN ? CLASS_COMPLEX : CLASS_BYTES;
    }
    return CLASS_BYTES;
}

/* The bits a float hashes and orders by: -0.0 as 0.0, since they are equal. */
static uint64_t
float_bits(double f)
{
    uint64_t b;
    if (f == 0.0)
        f = 0.0;
    memcpy(&b, &f, sizeof b);
    return b;
}

int
cow_ext_hash(const cow_val *v, uint64_t *out)
{
    const uint8_t *p;
    size_t n;
    ext_time tm;
    ext_key k;
    switch (classify(v, &p, &n, &tm, &k)) {
    case CLASS_TEMPORAL:
        *out = cow_hash_combine(EXT_SEED_TEMPORAL ^ (uint64_t)(tm.subtype << 1 | tm.aware),
                                (uint64_t)tm.t);
        return COW_OK;
    case CLASS_RATIONAL:
        if (k.kind == COW_EXT_K_SNAN)
            return COW_ETYPE;               /* as Python: a signaling NaN is no key */
        *out = cow_hash_bytes(k.key, k.keylen, EXT_SEED_RATIONAL);
        return COW_OK;
    case CLASS_COMPLEX:
        *out = cow_hash_combine(cow_hash_mix64(float_bits(load_f64(p + 1)) ^ EXT_SEED_COMPLEX),
                                float_bits(load_f64(p + 9)));
        return COW_OK;
    }
    if (n && (p[0] & COW_EXT_UNHASHABLE))
        return COW_ETYPE;
    *out = cow_hash_bytes(p, n, EXT_SEED_BYTES);
    return COW_OK;
}

static int
cmp_i64(int64_t a, int64_t b)
{
    return (a > b) - (a < b);
}

static int
cmp_span(const uint8_t *a, size_t na, const uint8_t *b, size_t nb)
{
    if (na != nb)
        return na < nb ? -1 : 1;
    return na ? memcmp(a, b, na) : 0;
}

/* Order and equality in one walk: *eq is set when the two are equal. */
static int
ext_compare(const cow_val *a, const cow_val *b, int *eq)
{
    const uint8_t *pa, *pb;
    size_t na, nb;
    ext_time ta, tb;
    ext_key ka, kb;
    int ca = classify(a, &pa, &na, &ta, &ka), cb = classify(b, &pb, &nb, &tb, &kb), c;
    *eq = 0;
    if (ca != cb)
        return ca < cb ? -1 : 1;
    switch (ca) {
    case CLASS_TEMPORAL:
        c = ta.subtype != tb.subtype ? cmp_i64(ta.subtype, tb.subtype)
          : ta.aware != tb.aware ? cmp_i64(ta.aware, tb.aware) : cmp_i64(ta.t, tb.t);
        *eq = c == 0;
        return c;
    case CLASS_RATIONAL:
        c = cmp_span(ka.key, ka.keylen, kb.key, kb.keylen);
        *eq = c == 0 && ka.kind != COW_EXT_K_NAN && ka.kind != COW_EXT_K_SNAN;
        return c;
    case CLASS_COMPLEX: {
        double ra = load_f64(pa + 1), rb = load_f64(pb + 1);
        double ia = load_f64(pa + 9), ib = load_f64(pb + 9);
        *eq = ra == rb && ia == ib;
        if (*eq)
            return 0;
        c = float_bits(ra) != float_bits(rb) ? (float_bits(ra) < float_bits(rb) ? -1 : 1)
          : float_bits(ia) != float_bits(ib) ? (float_bits(ia) < float_bits(ib) ? -1 : 1) : 0;
        return c;
    }
    }
    c = cmp_span(pa, na, pb, nb);
    *eq = c == 0;
    return c;
}

int
cow_ext_equal(const cow_val *a, const cow_val *b)
{
    int eq;
    ext_compare(a, b, &eq);
    return eq;
}

int
cow_ext_order(const cow_val *a, const cow_val *b)
{
    int eq;
    return ext_compare(a, b, &eq);
}
