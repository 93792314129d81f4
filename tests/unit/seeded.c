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
    if (e && *e)
        return strtoull(e, NULL, 0);
    /* A fresh seed for every run and every call: the clock in nanoseconds,
     * a stack address (randomized per process) and a counter, mixed (two
     * tests started in the same second, or two runs in one test, never
     * share a seed). */
    static uint64_t calls;
    struct timespec ts = {0};
    timespec_get(&ts, TIME_UTC);
    uint64_t s = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
    s ^= (uint64_t)(uintptr_t)&ts << 16;
    s += ++calls * 0x9e3779b97f4a7c15ull;
    return splitmix64(&s) >> 1; /* below 2^63: easy to paste back */
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
