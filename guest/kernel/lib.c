// SPDX-License-Identifier: MIT
/* The few libc functions the compiler may call, and the guest's PRNG. */
#include "kernel.h"

void *memcpy(void *dst, const void *src, size_t n)
{
    uint8_t *d = dst;
    const uint8_t *s = src;

    while (n--)
        *d++ = *s++;
    return dst;
}

void *memset(void *dst, int c, size_t n)
{
    uint8_t *d = dst;

    while (n--)
        *d++ = (uint8_t)c;
    return dst;
}

int memcmp(const void *a, const void *b, size_t n)
{
    const uint8_t *x = a, *y = b;

    for (; n; n--, x++, y++)
        if (*x != *y)
            return *x < *y ? -1 : 1;
    return 0;
}

/* xorshift64*: small, and the same sequence for the same seed. */
static uint64_t prng_state = 1;

void prng_seed(uint64_t seed)
{
    /* One splitmix64 step, so that small seeds give unrelated streams. */
    uint64_t z = seed + 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    prng_state = (z ^ (z >> 31)) | 1;
}

uint64_t prng_next(void)
{
    prng_state ^= prng_state >> 12;
    prng_state ^= prng_state << 25;
    prng_state ^= prng_state >> 27;
    return prng_state * 0x2545f4914f6cdd1dull;
}

uint64_t prng_below(uint64_t n)
{
    return prng_next() % n;
}
