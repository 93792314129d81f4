// SPDX-License-Identifier: MIT
/* Boot, the parameter block, and what happens at the end of each round. */
#include "kernel.h"

struct run_params params;
static uint64_t selfcheck_interval, patch_round;

static void stats_init(void)
{
    volatile vmt_guest_stats *st = STATS;
    unsigned n = 0;

    memset(P2V(VMT_GUEST_STATS_PA), 0, 2 * PAGE_SIZE);
    st->magic = VMT_GUEST_STATS_MAGIC;
    st->abi_version = VMT_GUEST_ABI_VERSION;

    static const char *const kernel_names[] = {
#define X(name) #name,
        VMT_KERNEL_COUNTERS(X)
#undef X
    };
    static const char *const user_names[] = {
#define X(name) #name,
        VMT_USER_COUNTERS(X)
#undef X
    };
    for (unsigned k = 0; k < KCNT_COUNT; k++) {
        for (unsigned i = 0; kernel_names[k][i] && i < VMT_GUEST_NAME_LEN - 1; i++)
            st->counters[n].name[i] = kernel_names[k][i];
        n++;
    }
    for (unsigned u = 0; u < UCNT_COUNT; u++) {
        for (unsigned slot = 0; slot < UCNT_SLOTS; slot++) {
            unsigned i = 0;
            for (; user_names[u][i] && i < VMT_GUEST_NAME_LEN - 3; i++)
                st->counters[n].name[i] = user_names[u][i];
            if (slot > 0) { /* "name@P" */
                st->counters[n].name[i++] = '@';
                st->counters[n].name[i] = (char)('0' + slot - 1);
            }
            n++;
        }
    }
    st->ncounters = n;
}

static void params_init(uint64_t params_pa)
{
    const volatile vmt_guest_params *vp = P2V(params_pa);

    if (vp->magic == VMT_GUEST_PARAMS_MAGIC) {
        params.iterations = vp->iterations;
        params.seed = vp->seed;
        params.pager = vp->pager > 100 ? 100 : vp->pager;
        params.flags = vp->flags;
        params.ram_bytes = vp->ram_bytes;
    } else {
        kprintf("vmitap-guest: no parameter block at %lx, using defaults\n", params_pa);
    }
    if (params.iterations == 0)
        params.iterations = params.flags & (VMT_GUEST_F_EXIT_LOOP | VMT_GUEST_F_READ_LOOP)
                                ? VMT_GUEST_DEFAULT_EXIT_LOOP_ITERATIONS
                                : VMT_GUEST_DEFAULT_ITERATIONS;
    if (params.seed == 0)
        params.seed = VMT_GUEST_DEFAULT_SEED;
    kprintf("vmitap-guest: boot abi=%u iterations=%lu seed=%lu pager=%u flags=%x ram=%lx\n",
            VMT_GUEST_ABI_VERSION, params.iterations, params.seed, params.pager, params.flags,
            params.ram_bytes);
    if (params.ram_bytes != 0 && params.ram_bytes < VMT_GUEST_MIN_RAM)
        fatal(VMT_GUEST_EXIT_PARAMS, "guest RAM %lx is below the %lx the guest needs",
              params.ram_bytes, (uint64_t)VMT_GUEST_MIN_RAM);
    selfcheck_interval = params.iterations / 4 ? params.iterations / 4 : 1;
    patch_round = params.iterations / 2 ? params.iterations / 2 : 1;
}

/* VMT_GUEST_F_EXIT_LOOP: nothing but `iterations` port writes the VMM ignores. */
static void exit_loop(void)
{
    for (uint64_t i = 0; i < params.iterations; i++)
        outb(VMT_GUEST_NOP_PORT, (uint8_t)i);
    STATS->rounds = params.iterations;
    finish(VMT_GUEST_EXIT_OK);
}

/* VMT_GUEST_F_READ_LOOP: nothing but `iterations` reads of code. */
static void read_loop(void)
{
    const volatile uint64_t *code = (const volatile uint64_t *)(uintptr_t)patch_neighbor;
    uint64_t first = *code, differ = 0;

    for (uint64_t i = 1; i < params.iterations; i++)
        if (*code != first)
            differ++;
    STATS->rounds = params.iterations;
    STATS->selfcheck_runs = 1;
    STATS->selfcheck_mismatches = differ;
    finish(differ ? VMT_GUEST_EXIT_SELFCHECK : VMT_GUEST_EXIT_OK);
}

static void end_run(void)
{
    uint32_t code = VMT_GUEST_EXIT_OK;

    selfcheck_run();
    if (STATS->selfcheck_mismatches)
        code = VMT_GUEST_EXIT_SELFCHECK;
    else if (STATS->self_patch_errors)
        code = VMT_GUEST_EXIT_SELF_PATCH;
    finish(code);
}

/* Called by the scheduler each time every process has run once. */
void round_complete(void)
{
    uint64_t r = ++STATS->rounds;

    patch_tick();
    if ((params.flags & VMT_GUEST_F_KERNEL_INT3) && r % 10 == 0)
        kernel_int3_probe();
    if ((params.flags & VMT_GUEST_F_SELF_PATCH) && r == patch_round)
        self_patch_step();
    pager_tick();
    if (r == params.iterations)
        end_run();
    if (r % selfcheck_interval == 0) {
        selfcheck_run();
        kprintf("vmitap-guest: round %lu/%lu page_ins=%lu page_outs=%lu\n", r, params.iterations,
                STATS->page_ins, STATS->page_outs);
    }
}

void kmain(uint64_t params_pa);
void kmain(uint64_t params_pa)
{
    stats_init();
    params_init(params_pa);
    prng_seed(params.seed);
    trap_init();
    mm_init();
    if (params.flags & VMT_GUEST_F_EXIT_LOOP)
        exit_loop();
    if (params.flags & VMT_GUEST_F_READ_LOOP)
        read_loop();
    sched_init();
    pager_init();
    selfcheck_init();
    kprintf("vmitap-guest: %u processes, cr3", VMT_GUEST_NPROCS);
    for (unsigned i = 0; i < VMT_GUEST_NPROCS; i++)
        kprintf(" %lx", procs[i].cr3);
    kputc('\n');
    sched_start();
}
