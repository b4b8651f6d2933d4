/* Stable 64-bit hashing (see cowstore/hash.h).
 *
 * Bytes are consumed 8 at a time as little-endian words, each folded in with a
 * multiply-xorshift round; the tail is padded with its length so "a" and "a\0"
 * differ.  Not cryptographic: collisions an attacker builds are absorbed by the
 * maps' sorted collision buckets. */
#include <string.h>

#include "cowstore/hash.h"

/* 64-bit multipliers from the splitmix64 / murmur3 finalisers. */
#define MIX_MUL1 0xbf58476d1ce4e5b9ULL
#define MIX_MUL2 0x94d049bb133111ebULL
#define ROUND_MUL 0x9fb21c651e98df25ULL

uint64_t
cow_hash_mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= MIX_MUL1;
    x ^= x >> 27;
    x *= MIX_MUL2;
    x ^= x >> 31;
    return x;
}

static uint64_t
load_le32(const unsigned char *p)
{
    return (uint64_t)p[0] | (uint64_t)p[1] << 8 | (uint64_t)p[2] << 16 | (uint64_t)p[3] << 24;
}

/* The last 1..7 bytes as a little-endian word padded with zeros, without a
 * variable-length copy (a call per hash): 4..7 bytes are two overlapping
 * 4-byte loads, whose shared bytes land on the same places. */
static uint64_t
load_tail(const unsigned char *p, size_t len)
{
    uint64_t w = 0;
    if (len >= 4)
        return load_le32(p) | load_le32(p + len - 4) << (8 * (len - 4));
    for (size_t i = 0; i < len; i++)
        w |= (uint64_t)p[i] << (8 * i);
    return w;
}

uint64_t
cow_hash_bytes(const void *data, size_t len, uint64_t seed)
{
    const unsigned char *p = data;
    uint64_t h = seed ^ ((uint64_t)len * ROUND_MUL);
    while (len >= 8) {
        h = (h ^ cow_load_le64(p)) * ROUND_MUL;
        h ^= h >> 32;
        p += 8;
        len -= 8;
    }
    if (len)
        h = (h ^ load_tail(p, len)) * ROUND_MUL;
    return cow_hash_mix64(h);
}

uint64_t
cow_hash_combine(uint64_t acc, uint64_t h)
{
    return cow_hash_mix64(acc * ROUND_MUL + h);
}
