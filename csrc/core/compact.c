/* The compact form of one cow_val (see cowstore/compact.h). */
#include <string.h>

#include "cowstore/compact.h"

/* Bytes of the narrowest two's complement form of i: 1..8. */
static unsigned
int_width(int64_t i)
{
    uint64_t magnitude = (uint64_t)(i ^ (i >> 63));     /* ~i for a negative i */
    unsigned bits = magnitude ? 65u - (unsigned)__builtin_clzll(magnitude) : 1u;   /* with a sign bit */
    return (bits + 7) / 8;
}

/* x's low width bytes (1..8), little-endian: x as 8 such bytes, then a
 * short copy of width of them, not a loop per byte. */
static size_t
put_le(uint8_t *out, uint64_t x, unsigned width)
{
    uint64_t le = cow_load_le64(&x);        /* its own inverse: a swap or nothing */
    cow_copy_short(out, &le, width);
    return width;
}

static size_t
encode_short(const cow_val *v, uint8_t *out)
{
    uint64_t bits;
    switch (v->tag) {
    case COW_T_NONE: out[0] = COW_CI_NONE; return 1;
    case COW_T_HOLE: out[0] = COW_CI_HOLE; return 1;
    case COW_T_BOOL: out[0] = v->u.i ? COW_CI_TRUE : COW_CI_FALSE; return 1;
    case COW_T_INT: {
        unsigned w = int_width(v->u.i);
        out[0] = (uint8_t)(COW_CI_INT + w - 1);
        return 1 + put_le(out + 1, (uint64_t)v->u.i, w);
    }
    case COW_T_FLOAT:
        memcpy(&bits, &v->u.f, sizeof bits);
        out[0] = COW_CI_FLOAT;
        return 1 + put_le(out + 1, bits, 8);
    case COW_T_SSTR: case COW_T_SBYTES: case COW_T_SEXT:
        if (v->slen > COW_INLINE_MAX)
            return 0;
        out[0] = (uint8_t)((v->tag == COW_T_SSTR ? COW_CI_SSTR : v->tag == COW_T_SBYTES ? COW_CI_SBYTES
                                                                                 : COW_CI_SEXT)
                           + v->slen);
        cow_copy_short(out + 1, (const char *)v + COW_INLINE_OFFSET, v->slen);
        return 1u + v->slen;
    default:
        return 0;
    }
}

/* Whether v's short form decodes to v byte for byte (C1), told without a
 * decode: the form keeps the tag, the number or the inline bytes, and
 * nothing else, so every other byte must be zero; a bool must be 0 or 1,
 * and an inline leaf (SEXT) must not be empty. */
static int
short_form_exact(const cow_val *v)
{
    cow_val kept = {0};
    kept.tag = v->tag;
    switch (v->tag) {
    case COW_T_BOOL:
        kept.u.i = v->u.i == 1;
        break;
    case COW_T_INT:
    case COW_T_FLOAT:
        kept.u = v->u;
        break;
    case COW_T_SEXT:
        if (v->slen == 0)
            return 0;
        /* fall through */
    case COW_T_SSTR:
    case COW_T_SBYTES:
        kept.slen = v->slen;
        cow_copy_short((char *)&kept + COW_INLINE_OFFSET, (const char *)v + COW_INLINE_OFFSET, v->slen);
        break;
    }
    return memcmp(&kept, v, sizeof kept) == 0;
}

/* short_form_exact for an int, in one load: its first word is the tag,
 * every other byte zero. */
_Static_assert(offsetof(cow_val, u) == sizeof(uint64_t), "an int's tag word is its first 8 bytes");
static int
int_form_exact(const cow_val *v)
{
    return cow_load_le64(v) == COW_T_INT;
}

size_t
cow_ci_encode(const cow_val *v, uint8_t *out)
{
    size_t n = encode_short(v, out);
    if (n && short_form_exact(v))
        return n;                                   /* C1 */
    out[0] = COW_CI_RAW;
    memcpy(out + 1, v, sizeof *v);
    return COW_CI_MAX;
}


size_t
cow_ci_encode_as(const cow_val *v, size_t len, uint8_t *out)
{
    /* An int (a counter, a flag: the common overwrite) in any width it fits,
     * its own or wider, as long as its short form is exact (C1). */
    if (v->tag == COW_T_INT && len >= 2 && len <= 9 && int_width(v->u.i) <= len - 1
        && int_form_exact(v)) {
        out[0] = (uint8_t)(COW_CI_INT + len - 2);
        put_le(out + 1, (uint64_t)v->u.i, (unsigned)(len - 1));
        return len;
    }
    return cow_ci_encode(v, out) == len ? len : 0;
}
