/* The KVM micro-VM driver: VM lifecycle, the driver table, and the small
 * public API of vmitap/kvm.h. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "drivers/kvm/kvm_internal.h"
#include "vmitap/log.h"

#ifndef VMITAP_GUEST_ELF
#define VMITAP_GUEST_ELF "guest/vmitap-guest.elf"
#endif

#define DEFAULT_RAM (64ull << 20)
#define MAX_RAM (1ull << 30) /* what the boot page tables map */

static const char *kvm_need_caps(int kvm_fd)
{
    static const struct {
        int cap;
        const char *name;
    } caps[] = {
        {KVM_CAP_READONLY_MEM, "KVM_CAP_READONLY_MEM"},
        {KVM_CAP_SET_GUEST_DEBUG, "KVM_CAP_SET_GUEST_DEBUG"},
        {KVM_CAP_IMMEDIATE_EXIT, "KVM_CAP_IMMEDIATE_EXIT"},
        {KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY"},
    };
    for (size_t i = 0; i < sizeof caps / sizeof caps[0]; i++)
        if (ioctl(kvm_fd, KVM_CHECK_EXTENSION, caps[i].cap) <= 0)
            return caps[i].name;
    return NULL;
}

bool vmt_kvm_available(char *why, size_t len)
{
    int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        if (why)
            snprintf(why, len, "cannot open /dev/kvm: %s", strerror(errno));
        return false;
    }
    const char *missing = NULL;
    int ver = ioctl(fd, KVM_GET_API_VERSION, 0);
    if (ver != KVM_API_VERSION)
        missing = "KVM API version 12";
    else
        missing = kvm_need_caps(fd);
    close(fd);
    if (missing && why)
        snprintf(why, len, "/dev/kvm lacks %s", missing);
    return missing == NULL;
}

vmt_status vmt_kvm_host_probe(vmt_kvm_host *out)
{
    if (!out)
        return VMT_E_INVALID;
    char why[256];
    if (!vmt_kvm_available(why, sizeof why)) {
        vmt_log(VMT_LOG_ERROR, "kvm: %s", why);
        return VMT_E_UNSUPPORTED;
    }
    int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return VMT_E_UNSUPPORTED;
    kvm_probe_host(fd, out);
    close(fd);
    return VMT_OK;
}

const char *vmt_kvm_default_guest(void)
{
    const char *env = getenv("VMITAP_GUEST");
    return env && *env ? env : VMITAP_GUEST_ELF;
}

void vmt_kvm_free(vmt_kvm *k)
{
    if (!k)
        return;
    for (unsigned i = 0; i < KVM_EXIT_REASONS_LOGGED; i++)
        if (k->exit_reasons[i])
            vmt_log(VMT_LOG_DEBUG, "kvm: %llu exits of reason %u", (unsigned long long)k->exit_reasons[i], i);
    vmt_log(VMT_LOG_DEBUG, "kvm: page tables: %llu writes found, %llu #PF entries, %llu returns, %llu dropped",
            (unsigned long long)k->ptw.writes, (unsigned long long)k->ptw.faults,
            (unsigned long long)k->ptw.returns, (unsigned long long)k->ptw.dropped);
    if (k->have_timer)
        timer_delete(k->timer);
    kvm_views_fini(k);
    kvm_mem_fini(k);
    if (k->run)
        munmap(k->run, k->run_size);
    if (k->vcpu_fd >= 0)
        close(k->vcpu_fd);
    if (k->vm_fd >= 0)
        close(k->vm_fd);
    if (k->kvm_fd >= 0)
        close(k->kvm_fd);
    free(k->console);
    free(k);
}

static vmt_status create_vm(vmt_kvm *k)
{
    k->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (k->kvm_fd < 0) {
        vmt_log(VMT_LOG_ERROR, "kvm: cannot open /dev/kvm: %s", strerror(errno));
        return VMT_E_UNSUPPORTED;
    }
    const char *missing = kvm_need_caps(k->kvm_fd);
    if (ioctl(k->kvm_fd, KVM_GET_API_VERSION, 0) != KVM_API_VERSION || missing) {
        vmt_log(VMT_LOG_ERROR, "kvm: /dev/kvm lacks %s", missing ? missing : "API version 12");
        return VMT_E_UNSUPPORTED;
    }
    kvm_probe_host(k->kvm_fd, &k->host);
    k->vm_fd = ioctl(k->kvm_fd, KVM_CREATE_VM, 0);
    if (k->vm_fd < 0) {
        vmt_log(VMT_LOG_ERROR, "kvm: KVM_CREATE_VM: %s", strerror(errno));
        return VMT_E_DRIVER;
    }
    ioctl(k->vm_fd, KVM_SET_TSS_ADDR, 0xfffbd000ul); /* needed on Intel only */
    /* Without it, a fetch from a frame in no memslot (our execute traps)
     * that KVM fails to emulate queues #UD for the guest (CPL 0: delivered
     * on the next entry; CPL 3: delivered without any exit). With it the
     * failure exits and the vCPU resumes cleanly (KVM's api.rst). */
    if (ioctl(k->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_EXIT_ON_EMULATION_FAILURE) > 0) {
        struct kvm_enable_cap cap = {.cap = KVM_CAP_EXIT_ON_EMULATION_FAILURE, .args = {1}};
        if (ioctl(k->vm_fd, KVM_ENABLE_CAP, &cap) < 0) {
            vmt_log(VMT_LOG_ERROR, "kvm: enabling KVM_CAP_EXIT_ON_EMULATION_FAILURE: %s", strerror(errno));
            return VMT_E_DRIVER;
        }
    }
    vmt_status st = k->linux_boot ? kvm_linux_vm_init(k) : VMT_OK; /* linux: irqchip, PIT */
    if (st != VMT_OK)
        return st;
    k->vcpu_fd = ioctl(k->vm_fd, KVM_CREATE_VCPU, 0);
    int sz = ioctl(k->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
    if (k->vcpu_fd < 0 || sz <= 0) {
        vmt_log(VMT_LOG_ERROR, "kvm: KVM_CREATE_VCPU: %s", strerror(errno));
        return VMT_E_DRIVER;
    }
    k->run_size = (size_t)sz;
    k->run = mmap(NULL, k->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, k->vcpu_fd, 0);
    if (k->run == MAP_FAILED) {
        k->run = NULL;
        return VMT_E_NOMEM;
    }
    return VMT_OK;
}

/* vmt_kvm_opts.kick_signal 0 (documented in vmitap/kvm.h) */
#define VMT_KVM_DEFAULT_KICK_SIGNAL (SIGRTMIN + 3)

/* The kick is taken with sigtimedwait while it is blocked: a real-time
 * signal or SIGUSR1/2, never one the kernel sends for a fault or a stop. */
static bool kick_signal_ok(int sig)
{
    return (sig >= SIGRTMIN && sig <= SIGRTMAX) || sig == SIGUSR1 || sig == SIGUSR2;
}

vmt_status vmt_kvm_new(const vmt_kvm_opts *opts, vmt_kvm **out)
{
    vmt_kvm_opts o = {0};
    if (!out)
        return VMT_E_INVALID;
    if (opts)
        memcpy(&o, opts, opts->sz && opts->sz < sizeof o ? opts->sz : sizeof o);
    int kick = o.kick_signal ? o.kick_signal : VMT_KVM_DEFAULT_KICK_SIGNAL;
    if (!kick_signal_ok(kick))
        return VMT_E_INVALID;
    uint64_t ram = o.ram_bytes ? (o.ram_bytes + (2ull << 20) - 1) & ~((2ull << 20) - 1) : DEFAULT_RAM;
    if (ram < (4ull << 20) || ram > MAX_RAM)
        return VMT_E_INVALID;
    vmt_kvm *k = calloc(1, sizeof *k);
    if (!k)
        return VMT_E_NOMEM;
    k->kvm_fd = k->vm_fd = k->vcpu_fd = k->mem_fd = -1;
    k->kick_sig = kick;
    k->xo = (o.flags & VMT_KVM_F_EMULATE_EXECUTE_ONLY) != 0;
    k->lazy_kgs = (o.flags & VMT_KVM_F_LAZY_KERNEL_GS_BASE) != 0;
    k->linux_boot = o.kernel_path != NULL; /* linux */
    k->console = calloc(1, KVM_CONSOLE_MAX);
    vmt_status st = k->console ? create_vm(k) : VMT_E_NOMEM;
    if (st == VMT_OK)
        st = kvm_mem_init(k, ram);
    if (st == VMT_OK)
        st = kvm_views_init(k);
    if (st == VMT_OK)
        st = k->linux_boot ? kvm_linux_boot(k, &o) /* linux */
                           : kvm_boot_load(k, o.guest_path ? o.guest_path : vmt_kvm_default_guest(), &o);
    if (st == VMT_OK)
        st = kvm_sync_init(k);
    if (st == VMT_OK)
        st = kvm_debug_init(k);
    if (st != VMT_OK) {
        vmt_kvm_free(k);
        return st;
    }
    *out = k;
    return VMT_OK;
}

/* ---- driver ops not in kvm_views.c ---- */

static vmt_status op_info(void *d, vmt_driver_info *out)
{
    vmt_kvm *k = d;
    if (!out)
        return VMT_E_INVALID;
    *out = (vmt_driver_info){
        .max_gfn = k->ram_frames,
        .vcpus = 1,
        .caps = VMT_CAP_VIEWS | VMT_CAP_FAST_SINGLESTEP | VMT_CAP_EMULATE | (k->xo ? VMT_CAP_EXECUTE_ONLY : 0u),
    };
    return VMT_OK;
}

static vmt_status op_pause(void *d)
{
    ((vmt_kvm *)d)->paused = true;
    return VMT_OK;
}

static vmt_status op_resume(void *d)
{
    ((vmt_kvm *)d)->paused = false;
    return VMT_OK;
}

static vmt_status op_get_regs(void *d, vmt_vcpu vcpu, vmt_regs *out)
{
    if (vcpu != 0 || !out)
        return VMT_E_INVALID;
    return kvm_regs_get_exact(d, out);
}

static vmt_status op_set_regs(void *d, vmt_vcpu vcpu, const vmt_regs *regs)
{
    vmt_kvm *k = d;
    if (vcpu != 0 || !regs)
        return VMT_E_INVALID;
    if (k->read_pending) {
        /* KVM re-executes the reading instruction with the data we give
         * it and would overwrite these registers: use resp.set_regs. */
        vmt_log(VMT_LOG_WARN, "kvm: set_regs during a read event: use the response's set_regs");
        return VMT_E_CONFLICT;
    }
    return kvm_regs_set(k, regs);
}

/* Only single-step is switchable: memory-access and breakpoint events
 * follow from access rights and int3 bytes and are always reported. */
static vmt_status op_monitor(void *d, vmt_event_reason what, bool enable)
{
    vmt_kvm *k = d;
    switch (what) {
    case VMT_EVENT_SINGLESTEP:
        k->monitor_ss = enable;
        return VMT_OK;
    case VMT_EVENT_SOFTWARE_BREAKPOINT:
        if (k->linux_boot) { /* linux: the #BP trap only while someone listens */
            k->bp_monitor = enable;
            return VMT_OK;
        }
        return enable ? VMT_OK : VMT_E_UNSUPPORTED;
    case VMT_EVENT_MEMORY_ACCESS:
        return enable ? VMT_OK : VMT_E_UNSUPPORTED;
    default:
        return VMT_E_INVALID;
    }
}

static void op_destroy(void *d) { vmt_kvm_free(d); }

static const vmt_driver_ops kvm_ops = {
    .name = "kvm",
    .info = op_info,
    .read = kvm_op_read,
    .write = kvm_op_write,
    .get_access = kvm_op_get_access,
    .set_access = kvm_op_set_access,
    .create_view = kvm_op_create_view,
    .destroy_view = kvm_op_destroy_view,
    .switch_view = kvm_op_switch_view,
    .change_view_gfn = kvm_op_change_view_gfn,
    .reset_view_gfn = kvm_op_reset_view_gfn,
    .allocate_gfn = kvm_op_allocate_gfn,
    .free_gfn = kvm_op_free_gfn,
    .pause = op_pause,
    .resume = op_resume,
    .get_regs = op_get_regs,
    .set_regs = op_set_regs,
    .monitor = op_monitor,
    .wait_for_event = kvm_wait_for_event,
    .destroy = op_destroy,
};

const vmt_driver_ops *vmt_kvm_driver_ops(void) { return &kvm_ops; }

vmt_status vmt_kvm_core_new(const vmt_kvm_opts *opts, vmt_core **out, vmt_kvm **kvm_out)
{
    vmt_kvm *k;
    if (!out)
        return VMT_E_INVALID;
    vmt_status st = vmt_kvm_new(opts, &k);
    if (st != VMT_OK)
        return st;
    vmt_core *c;
    if ((st = vmt_core_new(&kvm_ops, k, &c)) != VMT_OK)
        return st; /* the core destroyed k */
    *out = c;
    if (kvm_out)
        *kvm_out = k;
    return VMT_OK;
}

/* ---- state ---- */

vmt_kvm_state vmt_kvm_get_state(const vmt_kvm *k) { return k ? k->state : VMT_KVM_CRASHED; }
uint32_t vmt_kvm_exit_code(const vmt_kvm *k) { return k ? k->exit_code : 0; }
const char *vmt_kvm_crash_reason(const vmt_kvm *k) { return k && k->state == VMT_KVM_CRASHED ? k->crash : ""; }

const char *vmt_kvm_console(const vmt_kvm *k, size_t *len)
{
    if (len)
        *len = k ? k->console_len : 0;
    return k ? k->console : "";
}

const struct vmt_guest_stats *vmt_kvm_guest_stats(const vmt_kvm *k)
{
    return k ? (const struct vmt_guest_stats *)(k->raw + VMT_GUEST_STATS_PA) : NULL;
}

void vmt_kvm_counters_get(const vmt_kvm *k, vmt_kvm_counters *out)
{
    if (k && out)
        *out = k->ctr;
}

/* Unobserved run: every event is answered the way that lets the guest go
 * on as if nobody watched. */
static vmt_status unobserved(void *user, const vmt_event *ev, vmt_response *resp)
{
    (void)user;
    resp->action = ev->reason == VMT_EVENT_SOFTWARE_BREAKPOINT ? VMT_ACTION_REINJECT : VMT_ACTION_CONTINUE;
    return VMT_OK;
}

vmt_status vmt_kvm_run(vmt_kvm *k, int timeout_ms)
{
    if (!k)
        return VMT_E_INVALID;
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        int left = -1;
        if (timeout_ms >= 0) {
            clock_gettime(CLOCK_MONOTONIC, &t);
            long ms = (t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000;
            if (ms >= timeout_ms)
                return VMT_E_TIMEOUT;
            left = (int)(timeout_ms - ms);
        }
        vmt_status st = kvm_wait_for_event(k, left, unobserved, NULL);
        if (st != VMT_OK)
            return st;
    }
}
