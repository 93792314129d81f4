// SPDX-License-Identifier: MIT
/* Memory for the manager's open-addressing tables (tablemem.h). */
#define _DEFAULT_SOURCE /* mmap, MAP_ANONYMOUS, madvise */
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "bpm/tablemem.h"
#include "core/alloc.h"

/* Tables of at least this size are mapped directly and prefaulted. */
#define MAP_MIN_BYTES (256u * 1024)
/* Tables of at least one huge page are aligned to 2 MiB and offered to
 * transparent huge pages: random slot accesses then miss the TLB less,
 * and growing the table takes 512 times fewer page faults. */
#define HUGE_BYTES (2u * 1024 * 1024)

/* Prefaults a new table in one call rather than one fault per page as it
 * is first written: every page of a new table is written anyway (a growth
 * moves the entries in at a load of at least 3/8, at random slots), so this
 * adds nothing to the resident set. A hint: kernels before 5.14 refuse it
 * and the pages fault in one by one as before. */
static void populate(void *p, size_t bytes)
{
#ifdef MADV_POPULATE_WRITE
    madvise(p, bytes, MADV_POPULATE_WRITE);
#else
    (void)p;
    (void)bytes;
#endif
}

/* Anonymous zeroed memory of bytes (a multiple of 4 KiB), 2 MiB-aligned
 * when at least that large, prefaulted; NULL when out of memory. */
static void *map_table(size_t bytes)
{
    size_t slack = bytes >= HUGE_BYTES ? HUGE_BYTES : 0;
    char *raw = mmap(NULL, bytes + slack, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                     -1, 0);
    if (raw == MAP_FAILED)
        return NULL;
    if (!slack) {
        populate(raw, bytes);
        return raw;
    }
    size_t head = (HUGE_BYTES - (uintptr_t)raw % HUGE_BYTES) % HUGE_BYTES;
    if (head)
        munmap(raw, head);
    if (slack - head)
        munmap(raw + head + bytes, slack - head);
    madvise(raw + head, bytes, MADV_HUGEPAGE); /* a hint: failure changes nothing */
    populate(raw + head, bytes);
    return raw + head;
}

void *bpm_table_alloc(size_t bytes, void **mem, size_t *map_bytes)
{
    void *m;
    size_t mb = 0;
    if (vmt_alloc_fails() || bytes > SIZE_MAX - 4096)
        return NULL;
    if (bytes >= MAP_MIN_BYTES) {
        mb = (bytes + 4095) & ~(size_t)4095;
        m = map_table(mb);
    } else {
        m = calloc(bytes + 63, 1);
    }
    if (!m)
        return NULL;
    *mem = m;
    *map_bytes = mb;
    return (void *)(((uintptr_t)m + 63) & ~(uintptr_t)63);
}

void bpm_table_release(void *mem, size_t map_bytes)
{
    if (map_bytes)
        munmap(mem, map_bytes);
    else
        free(mem);
}
