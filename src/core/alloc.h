// SPDX-License-Identifier: MIT
/* The library's one allocator for the breakpoint manager, the page-table
 * monitor, the interceptor, the controllers and the tracer: malloc and
 * friends behind a test hook that can fail the Nth allocation.
 *
 * Why not GLib's allocator: g_malloc aborts when out of memory and cannot
 * be hooked (g_mem_set_vtable is a no-op since GLib 2.46), so no GLib
 * container sits on a path that must report VMT_E_NOMEM; those paths use
 * vmt_htab (htab.h) and plain arrays from here.
 *
 * The hook is internal (not in include/, not public ABI): tests set
 * vmt_alloc_fail_at. It costs one load and a predictable branch per
 * allocation. A test sweeps an operation's allocations by setting it to
 * 1, 2, ... until the operation runs with the counter still above 0 (the
 * fault never fired: the operation makes fewer allocations). */
#ifndef VMITAP_CORE_ALLOC_H
#define VMITAP_CORE_ALLOC_H

#include <stdint.h>
#include <stdlib.h>

/* 0: no fault armed. Otherwise the allocation that brings it to 0 fails
 * (it counts down by one per allocation): set it to N and the Nth
 * allocation from now fails, once. */
extern uint64_t vmt_alloc_fail_at;

/* Slow path of the hook: true if this allocation is the one to fail. */
int vmt_alloc_fail_now(void);

static inline int vmt_alloc_fails(void)
{
    return __builtin_expect(vmt_alloc_fail_at != 0, 0) && vmt_alloc_fail_now();
}

static inline void *vmt_malloc(size_t n)
{
    return vmt_alloc_fails() ? NULL : malloc(n);
}

static inline void *vmt_calloc(size_t count, size_t size)
{
    return vmt_alloc_fails() ? NULL : calloc(count, size);
}

/* On failure the old block is left as it was (realloc semantics). */
static inline void *vmt_realloc(void *p, size_t n)
{
    return vmt_alloc_fails() ? NULL : realloc(p, n);
}

/* count * size bytes, NULL on overflow as on failure. */
static inline void *vmt_reallocarray(void *p, size_t count, size_t size)
{
    if (size && count > SIZE_MAX / size)
        return NULL;
    return vmt_realloc(p, count * size);
}

/* Room for `need` items of `size` bytes in the array `items` of capacity
 * *cap: the array itself when it has room, else a larger one (doubled, at
 * least min_cap and need) with *cap updated. NULL when out of memory:
 * items and *cap are as they were. */
static inline void *vmt_grow_array(void *items, size_t *cap, size_t need, size_t size,
                                   size_t min_cap)
{
    if (need <= *cap)
        return items;
    size_t n = *cap ? 2 * *cap : min_cap;
    if (n < need)
        n = need;
    void *p = vmt_reallocarray(items, n, size);
    if (p)
        *cap = n;
    return p;
}

char *vmt_strdup(const char *s);

static inline void vmt_free(void *p)
{
    free(p);
}

#endif /* VMITAP_CORE_ALLOC_H */
