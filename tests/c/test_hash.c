/* Criterion tests for csrc/core/hash.c.
 *
 * Hashes are persisted and shared between processes, so cow_hash_bytes must
 * return the same number for the same input forever.  The pinned values below
 * were computed once (and cross-checked against an independent Python
 * transcription of the algorithm); a change to any of them is a format break,
 * never a test to update casually. */
#include <stdint.h>
#include <string.h>

#include <criterion/criterion.h>

#include "cowstore/hash.h"

#include "cowtest.h"

TestSuite(hash, .fini = tu_leak_check);

static const struct {
    const char *data;
    size_t len;
    uint64_t seed;
    uint64_t want;
} PINNED[] = {
    {"", 0, COW_SEED_STR, 0xe220a8397b1dcdafULL},
    {"a", 1, COW_SEED_STR, 0xe8e70fde5d0b825aULL},
    {"a\0", 2, COW_SEED_STR, 0xb8569b51d9d33f0bULL},
    {"abcdefgh", 8, COW_SEED_STR, 0x00fa6da7698548c5ULL},
    {"hello, world!", 13, COW_SEED_STR, 0xcaffdd9d293efc8fULL},
    /* tails of 3, 4, 7 and 3 bytes after a word: each way the tail is read */
    {"abc", 3, COW_SEED_STR, 0x92bf852f96ff253eULL},
    {"abcd", 4, COW_SEED_STR, 0x420b6e7ab9d9ff6aULL},
    {"abcdefg", 7, COW_SEED_STR, 0x892934912c24c36cULL},
    {"key12345678", 11, COW_SEED_STR, 0x4e3db8960c62b771ULL},
    {"The quick brown fox jumps over the lazy dog", 43, COW_SEED_STR, 0xc4a3ad2fe18a5d35ULL},
    {"a", 1, COW_SEED_BYTES, 0x78d82548b582da33ULL},
    {"", 0, 0, 0},
};

Test(hash, pinned_outputs_never_change)
{
    for (size_t i = 0; i < sizeof PINNED / sizeof *PINNED; i++) {
        uint64_t got = cow_hash_bytes(PINNED[i].data, PINNED[i].len, PINNED[i].seed);
        cr_assert_eq(got, PINNED[i].want, "pinned hash %zu: got 0x%016llx, want 0x%016llx",
                     i, (unsigned long long)got, (unsigned long long)PINNED[i].want);
    }
}

Test(hash, pinned_mix64)
{
    cr_assert_eq(cow_hash_mix64(0), 0);
    cr_assert_eq(cow_hash_mix64(1), 0x5692161d100b05e5ULL);
}

Test(hash, mix64_is_injective_on_a_sample)
{
    /* Bijective by construction; a sample of consecutive inputs must not
     * collide, and nearby inputs must not map to nearby outputs. */
    enum { N = 4096 };
    static uint64_t out[N];
    for (uint64_t x = 0; x < N; x++) {
        out[x] = cow_hash_mix64(x);
        for (uint64_t y = 0; y < x; y++)
            cr_assert_neq(out[x], out[y], "mix64(%llu) == mix64(%llu)",
                          (unsigned long long)x, (unsigned long long)y);
    }
    cr_assert_gt(__builtin_popcountll(out[1] ^ out[2]), 16);
}

Test(hash, seeds_separate_kinds)
{
    static const uint64_t seeds[] = {COW_SEED_STR, COW_SEED_BYTES, COW_SEED_BIGINT,
                                     COW_SEED_TUPLE, COW_SEED_FLOAT, COW_SEED_MAP,
                                     COW_SEED_SET};
    const char *inputs[] = {"", "a", "abcdefgh", "a longer input spanning words"};
    size_t ns = sizeof seeds / sizeof *seeds;
    for (size_t i = 0; i < sizeof inputs / sizeof *inputs; i++) {
        size_t len = strlen(inputs[i]);
        for (size_t a = 0; a < ns; a++)
            for (size_t b = a + 1; b < ns; b++)
                cr_assert_neq(cow_hash_bytes(inputs[i], len, seeds[a]),
                              cow_hash_bytes(inputs[i], len, seeds[b]),
                              "'%s': seeds %zu and %zu give one hash", inputs[i], a, b);
    }
}

Test(hash, length_matters)
{
    /* The tail is zero-padded, so only the mixed-in length tells these apart. */
    static const char z[17] = {0};
    cr_assert_neq(cow_hash_bytes("a", 1, COW_SEED_STR), cow_hash_bytes("a\0", 2, COW_SEED_STR));
    cr_assert_neq(cow_hash_bytes("", 0, COW_SEED_STR), cow_hash_bytes(z, 1, COW_SEED_STR));
    cr_assert_neq(cow_hash_bytes("abcdefgh", 8, COW_SEED_STR),
                  cow_hash_bytes("abcdefgh\0", 9, COW_SEED_STR));
    for (size_t a = 0; a <= 16; a++)
        for (size_t b = a + 1; b <= 16; b++)
            cr_assert_neq(cow_hash_bytes(z, a, COW_SEED_BYTES), cow_hash_bytes(z, b, COW_SEED_BYTES),
                          "%zu and %zu zero bytes share a hash", a, b);
}

Test(hash, every_byte_matters)
{
    /* Flipping one bit anywhere in a 3-word input changes the hash. */
    unsigned char buf[24];
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = (unsigned char)(i * 37 + 11);
    uint64_t base = cow_hash_bytes(buf, sizeof buf, COW_SEED_BYTES);
    for (size_t i = 0; i < sizeof buf; i++)
        for (int bit = 0; bit < 8; bit++) {
            buf[i] ^= (unsigned char)(1u << bit);
            cr_assert_neq(cow_hash_bytes(buf, sizeof buf, COW_SEED_BYTES), base,
                          "flipping byte %zu bit %d kept the hash", i, bit);
            buf[i] ^= (unsigned char)(1u << bit);
        }
    cr_assert_eq(cow_hash_bytes(buf, sizeof buf, COW_SEED_BYTES), base);
}

Test(hash, independent_of_alignment)
{
    /* Words are loaded bytewise as little-endian: the address is irrelevant. */
    const char *text = "alignment must not matter to a stable hash";
    size_t len = strlen(text);
    uint64_t want = cow_hash_bytes(text, len, COW_SEED_STR);
    char buf[64 + 8];
    for (size_t off = 0; off < 8; off++) {
        memcpy(buf + off, text, len);
        cr_assert_eq(cow_hash_bytes(buf + off, len, COW_SEED_STR), want, "offset %zu", off);
    }
}

Test(hash, combine_is_order_dependent)
{
    uint64_t a = cow_hash_bytes("a", 1, COW_SEED_STR), b = cow_hash_bytes("b", 1, COW_SEED_STR);
    uint64_t ab = cow_hash_combine(cow_hash_combine(COW_SEED_TUPLE, a), b);
    uint64_t ba = cow_hash_combine(cow_hash_combine(COW_SEED_TUPLE, b), a);
    cr_assert_neq(ab, ba);
    cr_assert_eq(ab, cow_hash_combine(cow_hash_combine(COW_SEED_TUPLE, a), b), "deterministic");
}
