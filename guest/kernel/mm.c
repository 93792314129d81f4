// SPDX-License-Identifier: MIT
/* Physical frames and page tables.
 *
 * Frames for page tables and user pages come from a pool at
 * [POOL_START, POOL_END) of guest-physical memory. Every address space maps
 * the kernel half the same way: guest-physical [0, 1 GiB) at
 * VMT_GUEST_KERNEL_VBASE + pa with 2 MiB pages, so the kernel image is one
 * 2 MiB page and the kernel reaches any frame through P2V(). Only the image
 * page is executable. */
#include "kernel.h"

#define POOL_START (4ull << 20)
#define POOL_END (8ull << 20)
#define POOL_FRAMES ((POOL_END - POOL_START) / PAGE_SIZE)

static uint64_t pool_used[POOL_FRAMES / 64];
static uint64_t pool_cursor; /* next frame to try: allocation rotates through the pool */

static uint64_t kernel_pml4[512] __attribute__((aligned(4096)));
static uint64_t kernel_pdpt[512] __attribute__((aligned(4096)));
static uint64_t kernel_pd[512] __attribute__((aligned(4096)));

#define PML4_INDEX(va) (((va) >> 39) & 511)
#define PDPT_INDEX(va) (((va) >> 30) & 511)
#define PD_INDEX(va) (((va) >> 21) & 511)
#define PT_INDEX(va) (((va) >> 12) & 511)

void mm_init(void)
{
    uint64_t kva = VMT_GUEST_KERNEL_VBASE;

    for (uint64_t i = 0; i < 512; i++) {
        uint64_t pa = i << 21;
        kernel_pd[i] = pa | PTE_P | PTE_W | PTE_PS | (pa == VMT_GUEST_KERNEL_PA ? 0 : PTE_NX);
    }
    kernel_pdpt[PDPT_INDEX(kva)] = V2P(kernel_pd) | PTE_P | PTE_W;
    kernel_pml4[PML4_INDEX(kva)] = V2P(kernel_pdpt) | PTE_P | PTE_W;
    write_cr3(V2P(kernel_pml4));
}

uint64_t frame_alloc(void)
{
    for (uint64_t n = 0; n < POOL_FRAMES; n++) {
        uint64_t i = (pool_cursor + n) % POOL_FRAMES;
        if (!(pool_used[i / 64] & (1ull << (i % 64)))) {
            pool_used[i / 64] |= 1ull << (i % 64);
            pool_cursor = i + 1;
            uint64_t pa = POOL_START + i * PAGE_SIZE;
            volatile uint64_t *w = P2V(pa);
            /* 64-bit stores: a freed frame may still be write-trapped by a
             * host that has not yet seen it leave the page tables. */
            for (unsigned k = 0; k < PAGE_SIZE / 8; k++)
                w[k] = 0;
            return pa;
        }
    }
    fatal(VMT_GUEST_EXIT_NOMEM, "out of frames");
}

void frame_free(uint64_t pa)
{
    uint64_t i = (pa - POOL_START) / PAGE_SIZE;

    pool_used[i / 64] &= ~(1ull << (i % 64));
}

/* A new address space: empty user half, the shared kernel half. */
uint64_t mm_new_address_space(void)
{
    uint64_t pml4 = frame_alloc();
    uint64_t *t = P2V(pml4);

    t[PML4_INDEX(VMT_GUEST_KERNEL_VBASE)] = kernel_pml4[PML4_INDEX(VMT_GUEST_KERNEL_VBASE)];
    return pml4;
}

/* The level-1 entry for a user `va`, creating missing tables. */
static uint64_t *user_pte(uint64_t cr3, uint64_t va)
{
    uint64_t *table = P2V(cr3);
    unsigned shift[3] = {39, 30, 21};

    for (int level = 0; level < 3; level++) {
        uint64_t *e = &table[(va >> shift[level]) & 511];
        if (!(*e & PTE_P))
            *e = frame_alloc() | PTE_P | PTE_W | PTE_U;
        table = P2V(*e & PTE_ADDR);
    }
    return &table[PT_INDEX(va)];
}

void mm_map(uint64_t cr3, uint64_t va, uint64_t pa, uint64_t flags)
{
    *user_pte(cr3, va) = pa | flags | PTE_P;
}

/* Clear the whole entry (a not-present entry keeps no frame number) and
 * flush it if this address space is the one loaded; the others are
 * flushed when their CR3 is loaded (no global user pages, no PCID). */
void mm_unmap(uint64_t cr3, uint64_t va)
{
    uint64_t loaded;

    *user_pte(cr3, va) = 0;
    __asm__ volatile("mov %%cr3, %0" : "=r"(loaded));
    if ((loaded & PTE_ADDR) == cr3)
        invlpg(va);
}
