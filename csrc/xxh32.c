/* XXH32, written from the algorithm description in the xxHash specification
 * (doc/xxhash_spec.md in github.com/Cyan4973/xxHash, version 0.1.1). All
 * arithmetic is on uint32_t, so overflow wraps modulo 2^32 as the algorithm
 * requires, and every 32-bit lane is read byte by byte as little-endian, so
 * the digest does not depend on the host's byte order or on alignment. */
#include "xxh32.h"

#define PRIME32_1 UINT32_C(2654435761)
#define PRIME32_2 UINT32_C(2246822519)
#define PRIME32_3 UINT32_C(3266489917)
#define PRIME32_4 UINT32_C(668265263)
#define PRIME32_5 UINT32_C(374761393)

#define STRIPE_SIZE 16

static uint32_t rotate_left(uint32_t value, unsigned bits)
{
    /* Callers pass 1 <= bits <= 31, so neither shift is by 32. */
    return (value << bits) | (value >> (32u - bits));
}

static uint32_t read_le32(const uint8_t *bytes)
{
    return (uint32_t)bytes[0] | ((uint32_t)bytes[1] << 8) |
           ((uint32_t)bytes[2] << 16) | ((uint32_t)bytes[3] << 24);
}

static uint32_t accumulate_lane(uint32_t accumulator, uint32_t lane)
{
    accumulator += lane * PRIME32_2;
    accumulator = rotate_left(accumulator, 13);
    return accumulator * PRIME32_1;
}

uint32_t sk_xxh32(const void *data, size_t length, uint32_t seed)
{
    const uint8_t *bytes = (const uint8_t *)data;
    size_t position = 0;
    uint32_t hash;

    if (length >= STRIPE_SIZE) {
        uint32_t acc1 = seed + PRIME32_1 + PRIME32_2;
        uint32_t acc2 = seed + PRIME32_2;
        uint32_t acc3 = seed;
        uint32_t acc4 = seed - PRIME32_1;
        size_t last_stripe = length - STRIPE_SIZE;

        while (position <= last_stripe) {
            acc1 = accumulate_lane(acc1, read_le32(bytes + position));
            acc2 = accumulate_lane(acc2, read_le32(bytes + position + 4));
            acc3 = accumulate_lane(acc3, read_le32(bytes + position + 8));
            acc4 = accumulate_lane(acc4, read_le32(bytes + position + 12));
            position += STRIPE_SIZE;
        }
        hash = rotate_left(acc1, 1) + rotate_left(acc2, 7) +
               rotate_left(acc3, 12) + rotate_left(acc4, 18);
    } else {
        hash = seed + PRIME32_5;
    }

    /* Only the low 32 bits of the length take part. */
    hash += (uint32_t)length;

    while (length - position >= 4) {
        hash += read_le32(bytes + position) * PRIME32_3;
        hash = rotate_left(hash, 17) * PRIME32_4;
        position += 4;
    }
    while (position < length) {
        hash += (uint32_t)bytes[position] * PRIME32_5;
        hash = rotate_left(hash, 11) * PRIME32_1;
        position += 1;
    }

    hash ^= hash >> 15;
    hash *= PRIME32_2;
    hash ^= hash >> 13;
    hash *= PRIME32_3;
    hash ^= hash >> 16;
    return hash;
}
