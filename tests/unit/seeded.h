// SPDX-License-Identifier: MIT
/* Seeds and random numbers for the randomized unit tests: every run prints
 * its seed, and the same seed replays the same run. */
#ifndef VMT_TESTS_UNIT_SEEDED_H
#define VMT_TESTS_UNIT_SEEDED_H

#include <stdint.h>

/* splitmix64: advances *state and returns the next 64 random bits. Small,
 * fast and well mixed, which is all a test needs. */
uint64_t splitmix64(uint64_t *state);

/* The number in environment variable env (a replay), else a fresh seed
 * (clock, a stack address and a call counter mixed: distinct for every run). */
uint64_t seed_from_env(const char *env);

/* Starts a randomized run called what: returns its seed (seed_from_env of
 * env) and sets *nops to ops, or to valgrind_ops under VMT_UNDER_VALGRIND,
 * then prints both and how to replay the run. */
uint64_t random_run_start(const char *what, const char *env, uint64_t ops, uint64_t valgrind_ops,
                          uint64_t *nops);

#endif
