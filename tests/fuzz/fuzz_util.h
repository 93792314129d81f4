// SPDX-License-Identifier: MIT
/* Shared by the libFuzzer targets: reading the input as a stream of small
 * numbers (missing bytes read as 0, so every input is valid), and a check
 * that reports a broken invariant and aborts (libFuzzer then saves the
 * input as a crash). */
#ifndef VMT_TESTS_FUZZ_UTIL_H
#define VMT_TESTS_FUZZ_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct fz {
    const uint8_t *p;
    size_t n, i;
} fz;

static inline fz fz_new(const uint8_t *p, size_t n)
{
    return (fz){p, n, 0};
}

static inline int fz_done(const fz *f)
{
    return f->i >= f->n;
}

static inline uint8_t fz_u8(fz *f)
{
    return f->i < f->n ? f->p[f->i++] : (f->i++, 0);
}

static inline uint64_t fz_u64(fz *f)
{
    uint64_t x = 0;
    for (int b = 0; b < 8; b++)
        x |= (uint64_t)fz_u8(f) << (8 * b);
    return x;
}

/* A number below n (n > 0). */
static inline unsigned fz_pick(fz *f, unsigned n)
{
    return fz_u8(f) % n;
}

#define FUZZ_CHECK(cond, ...)                                                                   \
    do {                                                                                        \
        if (!(cond)) {                                                                          \
            fprintf(stderr, "%s:%d: invariant broken: %s: ", __FILE__, __LINE__, #cond);        \
            fprintf(stderr, __VA_ARGS__);                                                       \
            fputc('\n', stderr);                                                                \
            abort();                                                                            \
        }                                                                                       \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif
