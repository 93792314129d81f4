// SPDX-License-Identifier: MIT
/* Example: build AMD64 page tables in the mock driver and translate
 * addresses through the core, printing every step of each walk.
 *
 * The mock is an in-memory guest; the same vmt_core calls work on the KVM
 * driver. Exits non-zero if a translation disagrees with the mapping the
 * example made, so it doubles as a smoke test. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "vmitap/vmitap.h"

static const char *const level_names[4] = {"PML4E", "PDPTE", "PDE  ", "PTE  "};

static const char *page_size_name(unsigned shift)
{
    return shift == 30 ? "1 GiB" : shift == 21 ? "2 MiB" : "4 KiB";
}

/* One address to translate and what the example expects. */
typedef struct probe {
    const char *what;
    vmt_va va;
    vmt_status want;
    vmt_pa want_pa; /* when want == VMT_OK */
} probe;

/* Prints the walk of one address; returns 0 if it went as expected. */
static int show_walk(vmt_core *core, vmt_pa root, const probe *p)
{
    vmt_walk w;
    memset(&w, 0, sizeof w);
    vmt_status st = vmt_core_walk(core, vmt_ctx(p->va, root), &w);
    printf("%s\n  va 0x%016" PRIx64 "\n", p->what, p->va);
    if (st == VMT_OK || st == VMT_E_TRANSLATION) {
        for (unsigned i = 0; i < w.levels; i++)
            printf("  %s at pa 0x%09" PRIx64 " = 0x%016" PRIx64 "%s\n", level_names[i],
                   w.entry_pa[i], w.entry[i], (w.entry[i] & VMT_PTE_P) ? "" : "  (not present)");
    }
    if (st == VMT_OK)
        printf("  -> pa 0x%" PRIx64 " in a %s page\n", w.pa, page_size_name(w.page_shift));
    else
        printf("  -> error: %s\n", vmt_status_str(st));
    int bad = st != p->want || (st == VMT_OK && w.pa != p->want_pa);
    if (bad)
        printf("  !! expected %s\n", vmt_status_str(p->want));
    return bad;
}

/* Builds the example's address space; returns its root, or 0. */
static vmt_pa build_tables(vmt_mock *mock)
{
    vmt_pa root;
    if (vmt_mock_new_root(mock, &root) != VMT_OK)
        return 0;
    int bad = 0;
    /* User code: one 4 KiB page, and the next one too (for the read below). */
    bad |= vmt_mock_map(mock, root, 0x0000555555554000ull, 0x5000, VMT_MOCK_4K, VMT_PTE_U);
    bad |= vmt_mock_map(mock, root, 0x0000555555555000ull, 0x9000, VMT_MOCK_4K, VMT_PTE_U);
    /* Kernel text: a 2 MiB page. Direct map: a 1 GiB page. */
    bad |= vmt_mock_map(mock, root, 0xffffffff81000000ull, 0x1000000, VMT_MOCK_2M, 0);
    bad |= vmt_mock_map(mock, root, 0xffff888000000000ull, 0, VMT_MOCK_1G, VMT_PTE_W | VMT_PTE_NX);
    /* A page the guest has paged out: mapped, then its PTE marked not present. */
    bad |= vmt_mock_map(mock, root, 0x00007ffff7a00000ull, 0x7000, VMT_MOCK_4K, VMT_PTE_U);
    bad |= vmt_mock_unmap(mock, root, 0x00007ffff7a00000ull, 1);
    return bad ? 0 : root;
}

int main(void)
{
    vmt_core *core;
    vmt_mock *mock;
    if (vmt_mock_core_new(NULL, &core, &mock) != VMT_OK) {
        fprintf(stderr, "translate: cannot create the mock driver\n");
        return 1;
    }
    vmt_pa root = build_tables(mock);
    if (!root) {
        fprintf(stderr, "translate: cannot build the page tables\n");
        vmt_core_free(core);
        return 1;
    }
    printf("page tables built in the mock driver, root (CR3) at pa 0x%" PRIx64 "\n\n", root);

    const probe probes[] = {
        {"4 KiB user page", 0x0000555555554abcull, VMT_OK, 0x5abc},
        {"2 MiB kernel page", 0xffffffff81012345ull, VMT_OK, 0x1012345},
        {"1 GiB direct-map page", 0xffff888012345678ull, VMT_OK, 0x12345678},
        {"paged-out page (PTE not present)", 0x00007ffff7a00010ull, VMT_E_TRANSLATION, 0},
        {"never mapped (PML4E not present)", 0x0000700000000000ull, VMT_E_TRANSLATION, 0},
        {"non-canonical address", 0x0000900000000000ull, VMT_E_INVALID, 0},
    };
    int bad = 0;
    for (size_t i = 0; i < sizeof probes / sizeof probes[0]; i++) {
        bad |= show_walk(core, root, &probes[i]);
        printf("\n");
    }

    /* A virtual read across a page boundary: the two halves live in
     * frames 0x5000 and 0x9000, which are not adjacent. */
    const char left[] = "hello, ", right[] = "world";
    bad |= vmt_core_write(core, 0x6000 - (sizeof left - 1), left, sizeof left - 1) != VMT_OK;
    bad |= vmt_core_write(core, 0x9000, right, sizeof right) != VMT_OK;
    char text[16] = {0};
    vmt_va va = 0x0000555555555000ull - (sizeof left - 1);
    vmt_status st = vmt_core_read_va(core, vmt_ctx(va, root), text, sizeof left - 1 + sizeof right);
    printf("read_va 0x%016" PRIx64 " across a page boundary: %s \"%s\"\n", va, vmt_status_str(st),
           text);
    bad |= st != VMT_OK || strcmp(text, "hello, world") != 0;

    vmt_core_free(core);
    return bad;
}
