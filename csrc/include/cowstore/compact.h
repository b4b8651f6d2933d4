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
 * do not reproduce bit for bit are kept whole (CI_RAW, 16 bytes).
 *
 *   code byte     follows                       value
 *   0x00          -                             NONE
 *   0x01 / 0x02   -                             BOOL false / true
 *   0x03          -                             HOLE
 *   0x04 + k      k + 1 bytes (k = 0..7), LE    INT sign-extended
 *   0x0c          8 bytes                       FLOAT bits
 *   0x0d          16 bytes                      the cow_val as it is (CI_RAW)
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

#include "cowstore/value.h"

/* Longest item: a raw value and its code. */
#define COW_CI_MAX (1 + sizeof(cow_val))

/* Writes v's item at out (room for COW_CI_MAX); returns its length. */
size_t cow_ci_encode(const cow_val *v, uint8_t *out);
/* Reads the item at p (avail bytes there) into *out, bitwise (a word is
 * borrowed, as a leaf's slot would be); returns its length, 0 if corrupt. */
size_t cow_ci_decode(const uint8_t *p, size_t avail, cow_val *out);
/* The length of the item at p, 0 if corrupt. */
size_t cow_ci_size(const uint8_t *p, size_t avail);

#endif
