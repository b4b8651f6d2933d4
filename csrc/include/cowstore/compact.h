/* The compact form of one cow_val: the items of a packed vector leaf (vec.c).
 *
 * Why: a 16-byte cow_val spends most of its bytes on small values -- an int
 * below 2^23 needs 3, a 9-byte key 10.  A leaf of 32 values moved into a
 * vector's trie is rewritten as these items when that saves room, so a map's
 * entry log costs about what its keys and values are.
 *
 * Unlike a pack's items (pack.h), which decode to views, this form is exact:
 * decoding an item gives back the very bytes of the value encoded, so a
 * reader cannot tell a packed leaf from a plain one.  Values the short forms
 * do not reproduce bit for bit are kept whole (COW_CI_RAW, 16 bytes).
 *
 *   code byte     follows                       value
 *   0x00          -                             NONE
 *   0x01 / 0x02   -                             BOOL false / true
 *   0x03          -                             HOLE
 *   0x04 + k      k + 1 bytes (k = 0..7), LE    INT sign-extended
 *   0x0c          8 bytes                       FLOAT bits
 *   0x0d          16 bytes                      the cow_val as it is (COW_CI_RAW)
 *   0x10 + n      n bytes (n = 0..14)           SSTR of length n
 *   0x20 + n      n bytes                       SBYTES of length n
 *   0x30 + n      n bytes (n = 1..14)           SEXT of length n
 *
 * Invariants:
 *  C1  cow_ci_decode(cow_ci_encode(v)) is v byte for byte (checked when
 *      encoding: a value that would decode otherwise is written raw).
 *  C2  an item is at most COW_CI_MAX bytes; decoding never reads past the
 *      bytes it is given and rejects an unknown code or a short item.
 */
#ifndef COWSTORE_COMPACT_H
#define COWSTORE_COMPACT_H

#include <stddef.h>
#include <stdint.h>

#include <string.h>

#include "cowstore/hash.h"
#include "cowstore/value.h"

/* Longest item: a raw value and its code. */
#define COW_CI_MAX (1 + sizeof(cow_val))

/* Item codes (see the table above). */
enum cow_ci_code {
    COW_CI_NONE = 0x00,
    COW_CI_FALSE = 0x01,
    COW_CI_TRUE = 0x02,
    COW_CI_HOLE = 0x03,
    COW_CI_INT = 0x04,          /* + width - 1 */
    COW_CI_FLOAT = 0x0c,
    COW_CI_RAW = 0x0d,
    COW_CI_SSTR = 0x10,         /* + length */
    COW_CI_SBYTES = 0x20,
    COW_CI_SEXT = 0x30,
    COW_CI_SPAN_MASK = 0x0f,
};

/* Writes v's item at out (room for COW_CI_MAX); returns its length. */
size_t cow_ci_encode(const cow_val *v, uint8_t *out);
/* Writes v's item in exactly len bytes when it can -- its own length, or an
 * int in a wider width than it needs (it decodes the same) -- so it can
 * replace an item of that length in place; returns len, or 0. */
size_t cow_ci_encode_as(const cow_val *v, size_t len, uint8_t *out);

/* The reads are inline: a packed leaf's every read runs them. */

/* The length of the item at p, 0 if corrupt. */
static inline size_t
cow_ci_size(const uint8_t *p, size_t avail)
{
    size_t n;
    if (avail == 0)
        return 0;
    if (p[0] >= COW_CI_SSTR && p[0] <= COW_CI_SEXT + COW_INLINE_MAX)
        n = (p[0] & COW_CI_SPAN_MASK) <= COW_INLINE_MAX ? 1u + (p[0] & COW_CI_SPAN_MASK) : 0;
    else if (p[0] <= COW_CI_HOLE)
        n = 1;
    else if (p[0] < COW_CI_FLOAT)
        n = 2u + (p[0] - COW_CI_INT);
    else
        n = p[0] == COW_CI_FLOAT ? 9 : p[0] == COW_CI_RAW ? COW_CI_MAX : 0;
    return n <= avail ? n : 0;
}

/* width bytes at p, little-endian. */
static inline uint64_t
cow_ci_get_le(const uint8_t *p, unsigned width)
{
    uint64_t x = 0;
    for (unsigned k = 0; k < width; k++)
        x |= (uint64_t)p[k] << (8 * k);
    return x;
}

/* The int of an item of n bytes (code, then n - 1 bytes) at p, where avail
 * bytes are readable: one load when 8 follow the code, else byte by byte. */
static inline int64_t
cow_ci_int_at(const uint8_t *p, size_t n, size_t avail)
{
    unsigned shift = (unsigned)(64 - 8 * (n - 1));
    uint64_t x = avail > sizeof(uint64_t) ? cow_load_le64(p + 1) : cow_ci_get_le(p + 1, (unsigned)(n - 1));
    return (int64_t)(x << shift) >> shift;
}

/* An inline item of n bytes at p (code, then n - 1 <= COW_INLINE_MAX bytes)
 * as a value of tag into *out. */
static inline __attribute__((always_inline)) size_t
cow_ci_inline_span(const uint8_t *p, size_t n, int tag, cow_val *out)
{
    *out = (cow_val){.tag = (uint8_t)tag, .slen = (uint8_t)(n - 1)};
    cow_copy_short((char *)out + COW_INLINE_OFFSET, p + 1, n - 1);
    return n;
}

/* cow_ci_decode of any item but an int or a short str (which it reads
 * itself). */
static inline size_t
cow_ci_decode_other(const uint8_t *p, size_t avail, cow_val *out)
{
    size_t n = cow_ci_size(p, avail);
    if (n == 0 || p[0] == COW_CI_SEXT)
        return 0;                           /* an empty SEXT breaks V8 */
    if (p[0] == COW_CI_RAW) {
        memcpy(out, p + 1, sizeof *out);
        return n;
    }
    if (p[0] >= COW_CI_SSTR) {
        if (n - 1 > COW_INLINE_MAX)         /* never (cow_ci_size): said for gcc's bounds */
            return 0;
        return cow_ci_inline_span(p, n, p[0] < COW_CI_SBYTES ? COW_T_SSTR
                                        : p[0] < COW_CI_SEXT ? COW_T_SBYTES : COW_T_SEXT, out);
    }
    memset(out, 0, sizeof *out);
    switch (p[0]) {
    case COW_CI_NONE: out->tag = COW_T_NONE; break;
    case COW_CI_HOLE: out->tag = COW_T_HOLE; break;
    case COW_CI_FALSE: case COW_CI_TRUE: out->tag = COW_T_BOOL; out->u.i = p[0] == COW_CI_TRUE; break;
    default: {                              /* COW_CI_FLOAT: 8 bytes of bits */
        uint64_t bits = cow_load_le64(p + 1);
        out->tag = COW_T_FLOAT;
        memcpy(&out->u.f, &bits, sizeof bits);
        break;
    }
    }
    return n;
}

/* Reads the item at p (avail bytes there) into *out, bitwise (a word is
 * borrowed, as a leaf's slot would be); returns its length, 0 if corrupt.
 * An int and a short str (a map's commonest value and key) are read here,
 * inlined everywhere; the rest where the compiler chooses (left to it, the
 * whole was a call). */
static inline __attribute__((always_inline)) size_t
cow_ci_decode(const uint8_t *p, size_t avail, cow_val *out)
{
    if (avail > 0 && (unsigned)(p[0] - COW_CI_INT) < (unsigned)(COW_CI_FLOAT - COW_CI_INT)) {
        size_t n = 2u + (p[0] - COW_CI_INT);
        if (n > avail)
            return 0;
        *out = cow_val_int(cow_ci_int_at(p, n, avail));
        return n;
    }
    if (avail > 0 && (unsigned)(p[0] - COW_CI_SSTR) <= COW_INLINE_MAX) {
        size_t n = 1u + (p[0] - COW_CI_SSTR);
        return n > avail ? 0 : cow_ci_inline_span(p, n, COW_T_SSTR, out);
    }
    return cow_ci_decode_other(p, avail, out);
}

#endif
