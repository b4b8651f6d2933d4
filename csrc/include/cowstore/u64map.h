/* A small open-addressing hash table from nonzero 64-bit keys to 64-bit
 * values: the commit's "node already written" memo, its sets of referenced
 * segments and the stored twins (see u64map.c). */
#ifndef COWSTORE_U64MAP_H
#define COWSTORE_U64MAP_H

#include <stddef.h>
#include <stdint.h>

/* A cell: a key beside its value, so a hit reads one cache line. */
typedef struct cow_u64cell {
    uint64_t key;       /* 0 = empty cell */
    uint64_t val;
} cow_u64cell;

typedef struct cow_u64map {
    cow_u64cell *cells;
    size_t cap;         /* a power of two, or 0 before the first insert */
    size_t len;
} cow_u64map;

void cow_u64map_init(cow_u64map *m);
void cow_u64map_free(cow_u64map *m);
void cow_u64map_clear(cow_u64map *m);          /* keeps the memory */
/* COW_FOUND with *val set, or COW_NOT_FOUND. */
int cow_u64map_get(const cow_u64map *m, uint64_t key, uint64_t *val);
/* Inserts or replaces; COW_OK or COW_ENOMEM.  key must not be 0. */
int cow_u64map_put(cow_u64map *m, uint64_t key, uint64_t val);
/* Adds delta to key's value (a missing key counts from 0) by one probe;
 * the new value into *now.  COW_OK or COW_ENOMEM (nothing changed). */
int cow_u64map_add(cow_u64map *m, uint64_t key, uint64_t delta, uint64_t *now);
/* Grows the table so that n more keys go in without growing: COW_OK or
 * COW_ENOMEM. */
int cow_u64map_reserve(cow_u64map *m, size_t n);
/* Removes key: COW_FOUND or COW_NOT_FOUND. */
int cow_u64map_del(cow_u64map *m, uint64_t key);

#endif
