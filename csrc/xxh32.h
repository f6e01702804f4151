/* XXH32 hash, seed 0 or any other seed. */
#ifndef STOREKIT_XXH32_H
#define STOREKIT_XXH32_H

#include <stddef.h>
#include <stdint.h>

/* Returns the XXH32 digest of `length` bytes at `data`. `data` may be NULL
 * when `length` is 0. The result equals xxhash.xxh32_intdigest(data, seed)
 * from the Python xxhash package. */
uint32_t sk_xxh32(const void *data, size_t length, uint32_t seed);

#endif
