/* Stable hashing: the same bytes give the same 64-bit hash in every process,
 * platform and Python version (no per-process seed), because maps are shared
 * across processes and persisted.  Hostile inputs can still collide: maps keep
 * colliding keys in sorted buckets, so a lookup among k of them costs
 * O(log k) comparisons; an insert adds one memmove of the bucket (8k bytes),
 * and a bucket is capped at COW_MAP_MAX_COLLISIONS keys. */
#ifndef COWSTORE_HASH_H
#define COWSTORE_HASH_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* The 8 bytes at p (unaligned) as a little-endian number: one load on
 * little-endian hosts.  The hash reads words so; packed items keep their
 * ints and floats so (compact.h). */
static inline uint64_t
cow_load_le64(const void *p)
{
    uint64_t x;
    memcpy(&x, p, sizeof x);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    x = __builtin_bswap64(x);
#endif
    return x;
}

/* Hash of a byte string, mixed with a per-kind seed (str vs bytes vs bigint). */
uint64_t cow_hash_bytes(const void *data, size_t len, uint64_t seed);
/* A strong 64-bit finaliser (bijective). */
uint64_t cow_hash_mix64(uint64_t x);
/* Order-dependent combination, for tuples and lists. */
uint64_t cow_hash_combine(uint64_t acc, uint64_t h);

/* Seeds that keep the hash families of different kinds apart. */
#define COW_SEED_STR    0x9e3779b97f4a7c15ULL
#define COW_SEED_BYTES  0xc2b2ae3d27d4eb4fULL
#define COW_SEED_BIGINT 0x165667b19e3779f9ULL
#define COW_SEED_TUPLE  0x27d4eb2f165667c5ULL
#define COW_SEED_FLOAT  0x85ebca77c2b2ae63ULL
#define COW_SEED_MAP    0xff51afd7ed558ccdULL
#define COW_SEED_SET    0xc4ceb9fe1a85ec53ULL
#define COW_HASH_NONE   0x5f356495b0a4d9e3ULL

#endif
