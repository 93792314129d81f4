// SPDX-License-Identifier: MIT
/* Memory for the manager's open-addressing tables (the armed set and the
 * views' pending indexes): zeroed, 64-byte aligned, and for large tables
 * mapped directly from the kernel and prefaulted.
 *
 * Why not g_new0: a table grows by moving every entry into a new, larger
 * one, so over a table's growth from empty the manager writes about three
 * times its final size of fresh memory. Faulting it in one 4 KiB page at
 * a time, as the rehash first wrote to it, was more than half the cost of
 * growing the armed set (about 40 of 70 ns per insert at N = 131072,
 * docs/PERFORMANCE.md W1); one madvise per table does the same zeroing
 * without the faults (about 25 ns). Large tables are also mapped and
 * unmapped directly: from malloc, glibc's growing mmap threshold would soon
 * put them on the heap, where the replaced ones linger as fragments in the
 * resident set. */
#ifndef VMITAP_BPM_TABLEMEM_H
#define VMITAP_BPM_TABLEMEM_H

#include <stddef.h>

/* Zeroed memory for a table of bytes, 64-byte aligned (the return value);
 * *mem and *map_bytes are what bpm_table_release needs. NULL when out of
 * memory (or when the alloc.h test hook fails it). */
void *bpm_table_alloc(size_t bytes, void **mem, size_t *map_bytes);
/* Frees what bpm_table_alloc returned in *mem (NULL: nothing). */
void bpm_table_release(void *mem, size_t map_bytes);

#endif /* VMITAP_BPM_TABLEMEM_H */
