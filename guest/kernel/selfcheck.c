// SPDX-License-Identifier: MIT
/* The self-check of the guest's own code, and the self-patching step.
 *
 * selfcheck_init() records a checksum of every kernel text page and of
 * every page of the user code image; selfcheck_run() reads the kernel text
 * and every user code frame (resident or evicted) with plain data loads and
 * compares. A backend that hides its breakpoints leaves them equal.
 *
 * With VMT_GUEST_F_SELF_PATCH the kernel rewrites patch_target at run time
 * (new first instruction, new return value), reads the bytes back, runs the
 * new code, and updates the expected checksum of that page from its own
 * copy of what it wrote. */
#include "kernel.h"

#define KTEXT_MAX_PAGES 16

static uint64_t ktext_sum[KTEXT_MAX_PAGES];
static unsigned ktext_pages;
static uint64_t lib_sum, code_sum[VMT_GUEST_USER_CODE_PAGES];
static int patched;
static uint8_t page_buf[PAGE_SIZE] __attribute__((aligned(8)));

/* FNV-1a over 64-bit words, read with 64-bit loads (fewer reads to trap). */
static uint64_t page_sum(const void *page)
{
    const volatile uint64_t *w = page;
    uint64_t h = 0xcbf29ce484222325ull;

    for (unsigned i = 0; i < PAGE_SIZE / 8; i++)
        h = (h ^ w[i]) * 0x100000001b3ull;
    return h;
}

void selfcheck_init(void)
{
    ktext_pages = (unsigned)((__ktext_end - __ktext_start) / PAGE_SIZE);
    if (ktext_pages > KTEXT_MAX_PAGES)
        fatal(VMT_GUEST_EXIT_SELFCHECK, "kernel text has %u pages, more than %u", ktext_pages,
              KTEXT_MAX_PAGES);
    for (unsigned i = 0; i < ktext_pages; i++)
        ktext_sum[i] = page_sum(__ktext_start + i * PAGE_SIZE);
    lib_sum = page_sum(P2V(shared_lib.template_pa));
    for (unsigned j = 0; j < VMT_GUEST_USER_CODE_PAGES; j++)
        code_sum[j] = page_sum(P2V(procs[0].code[j].template_pa));
}

static unsigned check_page(const char *what, uint64_t va, const void *page, uint64_t expected)
{
    if (page_sum(page) == expected)
        return 0;
    if (STATS->selfcheck_mismatches < 8)
        kprintf("vmitap-guest: selfcheck: %s page %lx changed\n", what, va);
    return 1;
}

INSTRUMENTED uint64_t selfcheck_run(void)
{
    KCOUNT(selfcheck_run);
    uint64_t bad = 0;

    for (unsigned i = 0; i < ktext_pages; i++) {
        const char *page = __ktext_start + i * PAGE_SIZE;
        bad += check_page("kernel", (uint64_t)(uintptr_t)page, page, ktext_sum[i]);
    }
    if (shared_lib.state != PAGE_UNLOADED)
        bad += check_page("shared library", shared_lib.frame, P2V(shared_lib.frame), lib_sum);
    for (unsigned p = 0; p < VMT_GUEST_NPROCS; p++)
        for (unsigned j = 0; j < VMT_GUEST_USER_CODE_PAGES; j++) {
            const struct upage *pg = &procs[p].code[j];
            if (pg->state != PAGE_UNLOADED)
                bad += check_page("user code", pg->frame, P2V(pg->frame), code_sum[j]);
        }
    STATS->selfcheck_runs++;
    STATS->selfcheck_mismatches += bad;
    return bad;
}

/* The patch page (guest.ld gives .text.patch a page of its own): the
 * patched function and an untouched neighbour, both instrumented. */
INSTRUMENTED __attribute__((section(".text.patch"), aligned(64))) int patch_target(void)
{
    KCOUNT(patch_target);
    return 1;
}

INSTRUMENTED __attribute__((section(".text.patch"), aligned(64))) void patch_neighbor(void)
{
    KCOUNT(patch_neighbor);
}

static void patch_error(const char *what)
{
    if (STATS->self_patch_errors == 0)
        kprintf("vmitap-guest: self-patch: %s\n", what);
    STATS->self_patch_errors++;
}

/* Calls patch_target and checks that the code that ran is the expected one. */
static void call_patch_target(void)
{
    int v = patch_target();

    if (v == 1)
        STATS->patch_v1_calls++;
    else if (v == 2)
        STATS->patch_v2_calls++;
    if (v != (patched ? 2 : 1))
        patch_error("patch_target returned an unexpected value");
}

/* Once per round. */
void patch_tick(void)
{
    patch_neighbor();
    call_patch_target();
}

void self_patch_step(void)
{
    /* The new body: mov $2,%eax; addq $1,<counter>; ret. It counts in the
     * same counter and starts with another instruction than the old one. */
    uint64_t counter = (uint64_t)(uintptr_t)&STATS->counters[KCNT_patch_target].calls;
    /* clang-format off */
    uint8_t code[16] = {
        0xb8, 0x02, 0x00, 0x00, 0x00,   /* mov $2, %eax */
        0x48, 0x83, 0x04, 0x25,         /* addq $1, disp32 (absolute, sign-extended) */
        (uint8_t)counter, (uint8_t)(counter >> 8), (uint8_t)(counter >> 16), (uint8_t)(counter >> 24),
        0x01,                           /* the immediate 1 */
        0xc3,                           /* ret */
    };
    /* clang-format on */
    uint8_t *dst = (uint8_t *)(uintptr_t)patch_target;
    uint64_t page = (uint64_t)(uintptr_t)dst & PAGE_MASK;
    uint64_t ktext = (uint64_t)(uintptr_t)__ktext_start;
    volatile uint64_t *dst64 = (volatile uint64_t *)dst;

    /* The write is 16 bytes; the last one is the old byte after the new code. */
    code[15] = dst[15];
    if ((uint8_t *)(uintptr_t)patch_neighbor > dst &&
        (uint8_t *)(uintptr_t)patch_neighbor < dst + sizeof(code)) {
        patch_error("patch_target is too small to patch");
        return;
    }
    call_patch_target();

    const volatile uint64_t *src = (const volatile uint64_t *)(uintptr_t)page;
    for (unsigned i = 0; i < PAGE_SIZE / 8; i++) /* 64-bit reads, as in page_sum */
        ((uint64_t *)page_buf)[i] = src[i];
    memcpy(page_buf + ((uint64_t)(uintptr_t)dst - page), code, sizeof(code));
    ktext_sum[(page - ktext) / PAGE_SIZE] = page_sum(page_buf);

    uint64_t lo, hi;
    memcpy(&lo, code, 8);
    memcpy(&hi, code + 8, 8);
    dst64[0] = lo;
    dst64[1] = hi;
    STATS->self_patches++;
    patched = 1;
    kprintf("vmitap-guest: self-patch: patch_target rewritten at %p\n", (void *)dst);

    for (unsigned i = 0; i < sizeof(code); i++)
        if (((volatile uint8_t *)dst)[i] != code[i]) {
            patch_error("patch_target does not read back as written");
            break;
        }
    call_patch_target();
}
