// SPDX-License-Identifier: MIT
/* Demand paging of user code, and a pager that evicts it.
 *
 * User code pages start not present (PAGE_UNLOADED). The first fetch faults
 * and pager_page_in() loads the page from the ELF image into a fresh frame.
 * On rounds chosen by the PRNG (params.pager % of them) pager_tick() evicts
 * one resident code page picked at random: its entry is cleared and
 * flushed, but the frame keeps the bytes, like a swap cache. The next fault
 * pages it back: half of the time into the same frame, otherwise into a new
 * frame that gets a copy of the old one (a relocation), and the old frame is
 * freed. The shared library page is one page mapped in every process: it is
 * evicted from, and paged back into, all of them at once. */
#include "kernel.h"

struct upage shared_lib;

/* Page copies go through 64-bit loads: fewer reads for a VMM that traps them. */
static void copy_page(uint64_t dst_pa, uint64_t src_pa)
{
    volatile uint64_t *d = P2V(dst_pa);
    const volatile uint64_t *s = P2V(src_pa);

    for (unsigned i = 0; i < PAGE_SIZE / 8; i++)
        d[i] = s[i];
}

static void map_code(struct proc *p, struct upage *pg)
{
    if (p) {
        mm_map(p->cr3, pg->va, pg->frame, PTE_U);
        return;
    }
    for (unsigned i = 0; i < VMT_GUEST_NPROCS; i++)
        mm_map(procs[i].cr3, pg->va, pg->frame, PTE_U);
}

static void unmap_code(struct proc *p, struct upage *pg)
{
    if (p) {
        mm_unmap(p->cr3, pg->va);
        return;
    }
    for (unsigned i = 0; i < VMT_GUEST_NPROCS; i++)
        mm_unmap(procs[i].cr3, pg->va);
}

/* Bring a code page in; p is its process, NULL for the shared library. */
INSTRUMENTED void pager_page_in(struct proc *p, struct upage *pg);
INSTRUMENTED void pager_page_in(struct proc *p, struct upage *pg)
{
    KCOUNT(pager_page_in);
    if (pg->state == PAGE_UNLOADED) {
        pg->frame = frame_alloc();
        copy_page(pg->frame, pg->template_pa);
    } else if (prng_below(2)) {
        uint64_t frame = frame_alloc();
        copy_page(frame, pg->frame);
        frame_free(pg->frame);
        pg->frame = frame;
        STATS->relocations++;
    }
    pg->state = PAGE_RESIDENT;
    map_code(p, pg);
    STATS->page_ins++;
}

INSTRUMENTED void pager_page_out(struct proc *p, struct upage *pg);
INSTRUMENTED void pager_page_out(struct proc *p, struct upage *pg)
{
    KCOUNT(pager_page_out);
    unmap_code(p, pg);
    pg->state = PAGE_EVICTED;
    STATS->page_outs++;
}

/* The #PF handler's part: 1 if va is a user code page that is now in. */
int pager_fault(uint64_t va)
{
    uint64_t page = va & PAGE_MASK;
    struct upage *pg = NULL;
    struct proc *p = current;

    if (page == VMT_GUEST_USER_LIB_VA) {
        pg = &shared_lib;
        p = NULL;
    } else if (page >= VMT_GUEST_USER_CODE_VA &&
               page < VMT_GUEST_USER_CODE_VA + VMT_GUEST_USER_CODE_PAGES * PAGE_SIZE) {
        pg = &current->code[(page - VMT_GUEST_USER_CODE_VA) / PAGE_SIZE];
    }
    if (!pg || pg->state == PAGE_RESIDENT)
        return 0;
    pager_page_in(p, pg);
    return 1;
}

/* Once per round: maybe evict one resident code page. */
void pager_tick(void)
{
    enum { NPAGES = VMT_GUEST_NPROCS * VMT_GUEST_USER_CODE_PAGES + 1 };
    struct upage *resident[NPAGES];
    struct proc *owner[NPAGES];
    unsigned n = 0;

    if (params.pager == 0 || prng_below(100) >= params.pager)
        return;
    for (unsigned i = 0; i < VMT_GUEST_NPROCS; i++)
        for (unsigned j = 0; j < VMT_GUEST_USER_CODE_PAGES; j++)
            if (procs[i].code[j].state == PAGE_RESIDENT) {
                owner[n] = &procs[i];
                resident[n++] = &procs[i].code[j];
            }
    if (shared_lib.state == PAGE_RESIDENT) {
        owner[n] = NULL;
        resident[n++] = &shared_lib;
    }
    if (n) {
        unsigned k = (unsigned)prng_below(n);
        pager_page_out(owner[k], resident[k]);
    }
}

void pager_init(void)
{
    shared_lib = (struct upage){VMT_GUEST_USER_LIB_VA, 0, PAGE_UNLOADED,
                                (uint64_t)(uintptr_t)__ulib_load_pa};
    for (unsigned i = 0; i < VMT_GUEST_NPROCS; i++)
        for (unsigned j = 0; j < VMT_GUEST_USER_CODE_PAGES; j++)
            procs[i].code[j] =
                (struct upage){VMT_GUEST_USER_CODE_VA + j * PAGE_SIZE, 0, PAGE_UNLOADED,
                               (uint64_t)(uintptr_t)__uprog_load_pa + j * PAGE_SIZE};
}
