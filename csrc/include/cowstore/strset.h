/* A set of long strings by content, for one conversion: equal str values met
 * while converting one Python structure share one blob.
 *
 * Why: real documents repeat long strings (the same description under many
 * operations, the same message in many records).  A blob is immutable (V1),
 * so sharing one is invisible to readers; it saves the bytes in the heap and,
 * since a commit writes a node once however often it is named (segment.c's
 * memo), in the store.  msgpack writes every repeat; cowstore writes one.
 *
 * Layout: open addressing with linear probing over a power-of-two array of
 * blob pointers (NULL = empty).  A slot's hash is recomputed from the blob's
 * bytes when the table grows, so a slot costs 8 bytes.
 *
 * Invariants:
 *  S1  the table is at most half full; each slot holds one reference to its
 *      blob, which no two slots share (blobs of equal bytes are one).
 *  S2  growing first drops the blobs only the set still holds (a string a
 *      pack copied inline, or a value since released), then sizes the table
 *      for four times the blobs left: the set keeps at most about three dead
 *      blobs per live one, so a conversion's peak stays near its result's. */
#ifndef COWSTORE_STRSET_H
#define COWSTORE_STRSET_H

#include <stddef.h>

#include "cowstore/value.h"

typedef struct cow_strset {
    struct cow_blob **slots;
    size_t cap;         /* a power of two, or 0 before the first insert */
    size_t used;
} cow_strset;

void cow_strset_init(cow_strset *s);
/* Drops the set's references (its blobs live on in the values that hold them). */
void cow_strset_free(cow_strset *s);
/* *out = an owned str of UTF-8 [utf8, utf8 + len), as cow_val_str makes, but
 * a blob equal bytes already have in s is shared, and a new one joins s.
 * COW_OK or COW_ENOMEM. */
int cow_strset_str(cow_strset *s, const char *utf8, size_t len, cow_val *out);
/* Blobs the set holds (tests). */
size_t cow_strset_len(const cow_strset *s);

#endif
