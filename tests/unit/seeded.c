// SPDX-License-Identifier: MIT
#include "seeded.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

uint64_t seed_from_env(const char *env)
{
    const char *e = getenv(env);
    return e ? strtoull(e, NULL, 0) : (uint64_t)time(NULL);
}

uint64_t random_run_start(const char *what, const char *env, uint64_t ops, uint64_t valgrind_ops,
                          uint64_t *nops)
{
    uint64_t seed = seed_from_env(env);
    *nops = getenv("VMT_UNDER_VALGRIND") ? valgrind_ops : ops;
    printf("%s: seed %" PRIu64 " (replay with %s=%" PRIu64 "), %" PRIu64 " operations\n", what,
           seed, env, seed, *nops);
    return seed;
}
