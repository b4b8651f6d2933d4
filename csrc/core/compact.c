/* The compact form of one cow_val (see cowstore/compact.h). */
#include <string.h>

#include "cowstore/compact.h"

enum {
    CI_NONE = 0x00,
    CI_FALSE = 0x01,
    CI_TRUE = 0x02,
    CI_HOLE = 0x03,
    CI_INT = 0x04,          /* + width - 1 */
    CI_FLOAT = 0x0c,
    CI_RAW = 0x0d,
    CI_SSTR = 0x10,         /* + length */
    CI_SBYTES = 0x20,
    CI_SEXT = 0x30,
    CI_SPAN_MASK = 0x0f,
};

/* Bytes of the narrowest two's complement form of i: 1..8. */
static unsigned
int_width(int64_t i)
{
    unsigned w = 1;
    while (w < 8 && (i < -((int64_t)1 << (8 * w - 1)) || i >= ((int64_t)1 << (8 * w - 1))))
        w++;
    return w;
}

static size_t
put_le(uint8_t *out, uint64_t x, unsigned width)
{
    for (unsigned k = 0; k < width; k++)
        out[k] = (uint8_t)(x >> (8 * k));
    return width;
}

static size_t
encode_short(const cow_val *v, uint8_t *out)
{
    uint64_t bits;
    switch (v->tag) {
    case COW_T_NONE: out[0] = CI_NONE; return 1;
    case COW_T_HOLE: out[0] = CI_HOLE; return 1;
    case COW_T_BOOL: out[0] = v->u.i ? CI_TRUE : CI_FALSE; return 1;
    case COW_T_INT: {
        unsigned w = int_width(v->u.i);
        out[0] = (uint8_t)(CI_INT + w - 1);
        return 1 + put_le(out + 1, (uint64_t)v->u.i, w);
    }
    case COW_T_FLOAT:
        memcpy(&bits, &v->u.f, sizeof bits);
        out[0] = CI_FLOAT;
        return 1 + put_le(out + 1, bits, 8);
    case COW_T_SSTR: case COW_T_SBYTES: case COW_T_SEXT:
        if (v->slen > COW_INLINE_MAX)
            return 0;
        out[0] = (uint8_t)((v->tag == COW_T_SSTR ? CI_SSTR : v->tag == COW_T_SBYTES ? CI_SBYTES
                                                                                 : CI_SEXT)
                           + v->slen);
        memcpy(out + 1, (const char *)v + COW_INLINE_OFFSET, v->slen);
        return 1u + v->slen;
    default:
        return 0;
    }
}

size_t
cow_ci_encode(const cow_val *v, uint8_t *out)
{
    cow_val back;
    size_t n = encode_short(v, out);
    if (n && cow_ci_decode(out, n, &back) == n && memcmp(&back, v, sizeof back) == 0)
        return n;                                   /* C1 */
    out[0] = CI_RAW;
    memcpy(out + 1, v, sizeof *v);
    return COW_CI_MAX;
}

size_t
cow_ci_size(const uint8_t *p, size_t avail)
{
    size_t n;
    if (avail == 0)
        return 0;
    if (p[0] >= CI_SSTR && p[0] <= CI_SEXT + COW_INLINE_MAX)
        n = (p[0] & CI_SPAN_MASK) <= COW_INLINE_MAX ? 1u + (p[0] & CI_SPAN_MASK) : 0;
    else if (p[0] <= CI_HOLE)
        n = 1;
    else if (p[0] < CI_FLOAT)
        n = 2u + (p[0] - CI_INT);
    else
        n = p[0] == CI_FLOAT ? 9 : p[0] == CI_RAW ? COW_CI_MAX : 0;
    return n <= avail ? n : 0;
}

static uint64_t
get_le(const uint8_t *p, unsigned width)
{
    uint64_t x = 0;
    for (unsigned k = 0; k < width; k++)
        x |= (uint64_t)p[k] << (8 * k);
    return x;
}

size_t
cow_ci_decode(const uint8_t *p, size_t avail, cow_val *out)
{
    size_t n = cow_ci_size(p, avail);
    unsigned w;
    if (n == 0 || p[0] == CI_SEXT)
        return 0;                           /* an empty SEXT breaks V8 */
    if (p[0] == CI_RAW) {
        memcpy(out, p + 1, sizeof *out);
        return n;
    }
    memset(out, 0, sizeof *out);
    if (p[0] >= CI_SSTR) {
        out->tag = (uint8_t)(p[0] < CI_SBYTES ? COW_T_SSTR : p[0] < CI_SEXT ? COW_T_SBYTES
                                                                          : COW_T_SEXT);
        out->slen = (uint8_t)(n - 1);
        memcpy((char *)out + COW_INLINE_OFFSET, p + 1, n - 1);
        return n;
    }
    switch (p[0]) {
    case CI_NONE: out->tag = COW_T_NONE; break;
    case CI_HOLE: out->tag = COW_T_HOLE; break;
    case CI_FALSE: case CI_TRUE: out->tag = COW_T_BOOL; out->u.i = p[0] == CI_TRUE; break;
    case CI_FLOAT: {
        uint64_t bits = get_le(p + 1, 8);
        out->tag = COW_T_FLOAT;
        memcpy(&out->u.f, &bits, sizeof bits);
        break;
    }
    default:                                /* CI_INT + width - 1 */
        w = (unsigned)(n - 1);
        out->tag = COW_T_INT;
        out->u.i = (int64_t)(get_le(p + 1, w) << (64 - 8 * w)) >> (64 - 8 * w);
        break;
    }
    return n;
}
