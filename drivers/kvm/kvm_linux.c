/* Linux boot for the KVM driver: a bzImage started through the 64-bit boot
 * protocol (Documentation/x86/boot.rst), with an initrd, a command line
 * and an e820 map, on the in-kernel interrupt controllers and PIT.
 *
 * The machine Linux sees: one vCPU with the host's supported CPUID (plus
 * the hypervisor bit, so the kernel finds kvmclock); RAM from 0, with the
 * legacy hole 0x9fc00..0xfffff reserved; an in-kernel PIC, IOAPIC, local
 * APIC and PIT (KVM_CREATE_IRQCHIP, KVM_CREATE_PIT2); COM1 (kvm_serial.c);
 * a keyboard controller that only knows the reset command. No ACPI, no
 * PCI, no MP table: the default command line says so (acpi=off pci=off),
 * and Linux then runs the local APIC in virtual-wire mode with the PIC
 * behind it.
 *
 * Power-off: the init script runs `reboot -f`; with reboot=k on the command
 * line the kernel resets the machine by writing 0xFE to port 0x64, which
 * ends the guest (VMT_KVM_EXITED, code 0). A panic (panic=-1 reboots the
 * same way) ends it as VMT_KVM_CRASHED, told apart by the panic banner
 * the kernel printed on the console just before. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/insn.h"
#include "drivers/kvm/kvm_internal.h"
#include "vmitap/log.h"

/* Guest-physical layout of what the VMM puts below 1 MiB. */
#define LX_GDT_PA 0x5000ull
#define LX_ZERO_PAGE_PA 0x7000ull /* struct boot_params */
#define LX_PML4_PA 0x9000ull      /* 0x9000..0xbfff: identity map of 1 GiB */
#define LX_STACK_TOP 0x8ff0ull
#define LX_CMDLINE_PA 0x20000ull
#define LX_CMDLINE_MAX 4096u
#define LX_LOW_RAM_END 0x9fc00ull /* then EBDA, VGA, BIOS: reserved */
#define LX_HIGH_RAM 0x100000ull
#define LX_MPTABLE_PA 0xf0000ull  /* in the reserved BIOS area, where Linux scans */
#define LX_IOAPIC_PA 0xfec00000u
#define LX_LAPIC_PA 0xfee00000u

/* boot_params / setup_header offsets (boot.rst, "the zero page") */
#define BP_EXT_RAMDISK_IMAGE 0x0c0
#define BP_EXT_RAMDISK_SIZE 0x0c4
#define BP_EXT_CMD_LINE_PTR 0x0c8
#define BP_E820_ENTRIES 0x1e8
#define BP_SETUP_SECTS 0x1f1
#define BP_VID_MODE 0x1fa
#define BP_BOOT_FLAG 0x1fe
#define BP_JUMP 0x200
#define BP_HEADER 0x202
#define BP_VERSION 0x206
#define BP_TYPE_OF_LOADER 0x210
#define BP_LOADFLAGS 0x211
#define BP_RAMDISK_IMAGE 0x218
#define BP_RAMDISK_SIZE 0x21c
#define BP_CMD_LINE_PTR 0x228
#define BP_INITRD_ADDR_MAX 0x22c
#define BP_KERNEL_ALIGNMENT 0x230
#define BP_RELOCATABLE 0x234
#define BP_XLOADFLAGS 0x236
#define BP_CMDLINE_SIZE 0x238
#define BP_PREF_ADDRESS 0x258
#define BP_INIT_SIZE 0x260
#define BP_E820_TABLE 0x2d0
#define XLF_KERNEL_64 0x01

#define E820_RAM 1
#define E820_RESERVED 2

#define KBD_STATUS_PORT 0x64
#define KBD_CMD_RESET 0xfe

const char *const vmt_kvm_linux_default_cmdline =
    "console=ttyS0 earlyprintk=ttyS0 nokaslr norandmaps acpi=off pci=off reboot=k panic=-1 "
    "io_delay=none pti=off mitigations=off 8250.nr_uarts=1 i8042.nopnp tsc=reliable noxsave init_on_alloc=0 "
    "cryptomgr.notests";

/* On a host that emulates the guest's kernel mode, its CPUID answers do not
 * all follow KVM_SET_CPUID2 (XSAVE and SMAP stayed visible), so the kernel
 * is also told on its command line to leave alone the features whose
 * instructions the emulator lacks (X86_FEATURE_* numbers, word * 32 + bit:
 * CX16 141, POPCNT 151, PCID 145, XSAVE 154, AVX 156, AES 153, PCLMULQDQ
 * 129, MOVBE 150, RDRAND 158, FSGSBASE 288, ERMS 297, INVPCID 298, RDSEED
 * 306, SMAP 308, RDPID 534, FSRM 580, RDTSCP 59, PKU 515, OSPKE 516), and
 * the SIMD extensions whose kernel users (blake2s in the random driver,
 * ...) the emulator cannot run: SSSE3 137, SSE4.1 147, SSE4.2 148, AVX2
 * 293, AVX-512F 304, BMI1 291, BMI2 296, ADX 307, SHA 317, GFNI 520, VAES
 * 521, VPCLMULQDQ 522. */
#define LX_EMU_CMDLINE                                                                              \
    " noxsave clearcpuid=141,151,145,154,156,153,129,150,158,288,297,298,306,308,534,580,59,515,516," \
    "137,147,148,293,304,291,296,307,317,520,521,522" LX_EMU_FASTER

/* And where every kernel instruction is emulated, the boot is shortened
 * by what a sampling profile of it showed (`vmt-kvm-run -P`, see
 * docs/linux.md):
 *  - initcalls that only serve ftrace and BPF users are skipped:
 *    ftrace_check_for_weak_functions (a kallsyms lookup for each of the
 *    40,000 ftrace records, 2 minutes here), tracer_init_tracefs (tracefs),
 *    trace_eval_init (the eval-map rewrite of every trace event's format),
 *    and the six that register BPF kfuncs, the first of which parses and
 *    verifies the kernel's whole BTF (50 s here; TCP cubic is one of them,
 *    TCP falls back to reno);
 *  - rodata=off skips the W+X audit that walks every kernel page-table
 *    entry after marking rodata read-only (kernel text and rodata stay
 *    writable in the guest, which a test VM can afford);
 *  - no_timer_check: the I/O APIC's timer-IRQ test (seconds of PIT ticks);
 *  - time is dilated: the timer tick alone cost more than half of the
 *    emulated time, so the kernel is told a TSC frequency LX_DILATION
 *    times the real one (tsc_early_khz, with kvm-clock off so the TSC is
 *    the clock): once it runs on the TSC, its clock, its timers and its
 *    tick run that many times slower than real time. */
#define LX_EMU_FASTER                                                                        \
    " rodata=off initcall_blacklist=ftrace_check_for_weak_functions,tracer_init_tracefs,trace_eval_init," \
    "cubictcp_register,bpf_rstat_kfunc_init,bpf_key_sig_kfuncs_init,kfunc_init,bpf_prog_test_run_init,"    \
    "bpf_tcp_ca_kfunc_init no-kvmclock no_timer_check"
#define LX_DILATION 10

/* Where int3 does not exit (the emulated AMD-V bed), a traced kernel has
 * its entry page (vector 3's handler) stepped at every interrupt: a timer
 * tick then took longer than the tick period and the guest made no
 * progress. Its time is dilated the same way (no-kvmclock, a TSC said to be
 * LX_DILATION times faster). */
static bool lx_entry_stepped(const vmt_kvm *k) { return !k->host.int3_exits && !k->host.int3_emulation && !k->emulated_cpl0; }

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t rd32(const uint8_t *p) { return (uint32_t)rd16(p) | (uint32_t)rd16(p + 2) << 16; }
static uint64_t rd64(const uint8_t *p) { return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32; }
static void wr16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static void wr32(uint8_t *p, uint32_t v) { wr16(p, (uint16_t)v); wr16(p + 2, (uint16_t)(v >> 16)); }

static uint8_t *read_file(const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat sb;
    if (fd < 0 || fstat(fd, &sb) < 0) {
        vmt_log(VMT_LOG_ERROR, "kvm: cannot open %s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return NULL;
    }
    uint8_t *buf = malloc(sb.st_size ? (size_t)sb.st_size : 1);
    size_t got = 0;
    while (buf && got < (size_t)sb.st_size) {
        ssize_t n = read(fd, buf + got, (size_t)sb.st_size - got);
        if (n <= 0) {
            vmt_log(VMT_LOG_ERROR, "kvm: reading %s failed", path);
            free(buf);
            buf = NULL;
            break;
        }
        got += (size_t)n;
    }
    close(fd);
    *len = got;
    return buf;
}

/* ---- VM-level devices: must exist before the vCPU is created ---- */

vmt_status kvm_linux_vm_init(vmt_kvm *k)
{
    if (ioctl(k->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_IRQCHIP) <= 0 ||
        ioctl(k->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_PIT2) <= 0) {
        vmt_log(VMT_LOG_ERROR, "kvm: Linux boot needs KVM_CAP_IRQCHIP and KVM_CAP_PIT2");
        return VMT_E_UNSUPPORTED;
    }
    /* With an interrupt controller, an interrupt can be delivered just as a
     * single-step starts: the step would then end at the handler's first
     * instruction, not after the stepped one (a breakpoint stepped over
     * would hit again on return). BLOCKIRQ holds interrupts during steps. */
    int dbg2 = ioctl(k->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_SET_GUEST_DEBUG2);
    k->step_blockirq = dbg2 > 0 && (dbg2 & KVM_GUESTDBG_BLOCKIRQ);
    if (!k->step_blockirq)
        vmt_log(VMT_LOG_WARN, "kvm: no KVM_GUESTDBG_BLOCKIRQ: an interrupt may land inside a single-step");
    if (ioctl(k->vm_fd, KVM_CREATE_IRQCHIP, 0) < 0) {
        vmt_log(VMT_LOG_ERROR, "kvm: KVM_CREATE_IRQCHIP: %s", strerror(errno));
        return VMT_E_DRIVER;
    }
    /* flags 0: the PIT's speaker port (0x61) is emulated in the kernel too,
     * which Linux's PIT-based TSC calibration reads. */
    struct kvm_pit_config pit = {.flags = 0};
    if (ioctl(k->vm_fd, KVM_CREATE_PIT2, &pit) < 0) {
        vmt_log(VMT_LOG_ERROR, "kvm: KVM_CREATE_PIT2: %s", strerror(errno));
        return VMT_E_DRIVER;
    }
    return VMT_OK;
}

/* ---- images ---- */

typedef struct lx_image {
    uint8_t *file;
    size_t len;
    bool elf;         /* an uncompressed vmlinux rather than a bzImage */
    size_t setup_len; /* bzImage: real-mode part, (setup_sects + 1) * 512 */
    uint64_t load_pa; /* bzImage: where the protected-mode part goes */
    uint64_t end_pa;  /* end of the memory the kernel needs at boot */
    uint64_t entry;   /* 64-bit entry point (physical) */
} lx_image;

static vmt_status check_bzimage(const char *path, lx_image *im, uint64_t ram)
{
    const uint8_t *f = im->file;
    if (im->len < BP_INIT_SIZE + 4 || rd16(f + BP_BOOT_FLAG) != 0xaa55 || memcmp(f + BP_HEADER, "HdrS", 4) != 0) {
        vmt_log(VMT_LOG_ERROR, "kvm: %s is not a bzImage (no HdrS header)", path);
        return VMT_E_INVALID;
    }
    if (rd16(f + BP_VERSION) < 0x020c || !(rd16(f + BP_XLOADFLAGS) & XLF_KERNEL_64)) {
        vmt_log(VMT_LOG_ERROR, "kvm: %s: boot protocol 0x%x lacks the 64-bit entry", path, rd16(f + BP_VERSION));
        return VMT_E_INVALID;
    }
    unsigned sects = f[BP_SETUP_SECTS] ? f[BP_SETUP_SECTS] : 4;
    im->setup_len = (size_t)(sects + 1) * 512;
    /* A relocatable kernel is best loaded where it was linked to run, so it
     * decompresses in place. */
    im->load_pa = f[BP_RELOCATABLE] ? rd64(f + BP_PREF_ADDRESS) : LX_HIGH_RAM;
    uint64_t need = rd32(f + BP_INIT_SIZE);
    uint64_t body = im->len - im->setup_len;
    if (im->setup_len >= im->len || (need < body ? body : need) > ram - im->load_pa || im->load_pa >= ram) {
        vmt_log(VMT_LOG_ERROR, "kvm: %s needs %llu MiB at 0x%llx: not enough guest RAM", path,
                (unsigned long long)(need >> 20), (unsigned long long)im->load_pa);
        return VMT_E_OUT_OF_BOUNDS;
    }
    im->end_pa = im->load_pa + (need < body ? body : need);
    im->entry = im->load_pa + 0x200; /* startup_64 of the decompressor */
    return VMT_OK;
}

/* An uncompressed vmlinux (ELF): its PT_LOAD segments at their physical
 * addresses, entered at e_entry (the physical startup_64) by the same
 * 64-bit protocol. Skips the decompressor, which matters where the
 * hypervisor runs guest kernel code slowly. */
static vmt_status load_vmlinux(vmt_kvm *k, const char *path, lx_image *im)
{
    const uint8_t *f = im->file;
    uint64_t ram = k->ram_frames << VMT_PAGE_SHIFT;
    if (im->len < 64 || f[4] != 2 /* ELFCLASS64 */ || rd16(f + 18) != 62 /* EM_X86_64 */) {
        vmt_log(VMT_LOG_ERROR, "kvm: %s is not an x86-64 ELF", path);
        return VMT_E_INVALID;
    }
    uint64_t phoff = rd64(f + 32);
    unsigned phentsize = rd16(f + 54), phnum = rd16(f + 56);
    if (phentsize < 56 || phoff > im->len || (uint64_t)phnum * phentsize > im->len - phoff)
        return VMT_E_INVALID;
    for (unsigned i = 0; i < phnum; i++) {
        const uint8_t *ph = f + phoff + (size_t)i * phentsize;
        if (rd32(ph) != 1 /* PT_LOAD */)
            continue;
        uint64_t off = rd64(ph + 8), pa = rd64(ph + 24), filesz = rd64(ph + 32), memsz = rd64(ph + 40);
        if (filesz > memsz || off > im->len || filesz > im->len - off || pa >= ram || memsz > ram - pa) {
            vmt_log(VMT_LOG_ERROR, "kvm: %s: segment %u does not fit in guest RAM", path, i);
            return VMT_E_OUT_OF_BOUNDS;
        }
        memcpy(k->raw + pa, f + off, filesz);
        memset(k->raw + pa + filesz, 0, memsz - filesz);
        if (pa + memsz > im->end_pa)
            im->end_pa = pa + memsz;
    }
    im->entry = rd64(f + 24);
    return VMT_OK;
}

/* The initrd goes as high as RAM and the kernel's limit allow, page aligned,
 * above the memory the kernel decompresses into. */
static vmt_status load_initrd(vmt_kvm *k, const lx_image *im, const char *path, uint8_t *bp)
{
    size_t len;
    uint8_t *rd = read_file(path, &len);
    if (!rd)
        return VMT_E_INVALID;
    uint64_t ram = k->ram_frames << VMT_PAGE_SHIFT;
    uint64_t top = ram, max = im->elf ? 0x7fffffff : rd32(im->file + BP_INITRD_ADDR_MAX);
    if (max && top > max + 1)
        top = max + 1;
    uint64_t kernel_end = im->end_pa;
    uint64_t at = (top - len) & ~(uint64_t)(VMT_PAGE_SIZE - 1);
    if (len > top || at < kernel_end) {
        vmt_log(VMT_LOG_ERROR, "kvm: initrd %s (%zu KiB) does not fit above the kernel", path, len >> 10);
        free(rd);
        return VMT_E_OUT_OF_BOUNDS;
    }
    memcpy(k->raw + at, rd, len);
    free(rd);
    wr32(bp + BP_RAMDISK_IMAGE, (uint32_t)at);
    wr32(bp + BP_RAMDISK_SIZE, (uint32_t)len);
    wr32(bp + BP_EXT_RAMDISK_IMAGE, (uint32_t)(at >> 32));
    wr32(bp + BP_EXT_RAMDISK_SIZE, (uint32_t)((uint64_t)len >> 32));
    return VMT_OK;
}

static void add_e820(uint8_t *bp, uint64_t addr, uint64_t size, uint32_t type)
{
    uint8_t n = bp[BP_E820_ENTRIES];
    uint8_t *e = bp + BP_E820_TABLE + 20u * n;
    memcpy(e, &addr, 8);
    memcpy(e + 8, &size, 8);
    memcpy(e + 16, &type, 4);
    bp[BP_E820_ENTRIES] = (uint8_t)(n + 1);
}

static vmt_status fill_zero_page(vmt_kvm *k, const lx_image *im, const vmt_kvm_opts *o)
{
    uint8_t *bp = k->raw + LX_ZERO_PAGE_PA;
    memset(bp, 0, VMT_PAGE_SIZE);
    if (im->elf) { /* no setup header in a vmlinux: the fields Linux reads */
        wr16(bp + BP_BOOT_FLAG, 0xaa55);
        memcpy(bp + BP_HEADER, "HdrS", 4);
        wr16(bp + BP_VERSION, 0x020f);
        wr32(bp + BP_KERNEL_ALIGNMENT, 0x200000);
    } else { /* the setup header as the image has it: 0x1f1 up to the end the jump at 0x200 says */
        size_t hdr_end = BP_HEADER + im->file[BP_JUMP + 1];
        memcpy(bp + BP_SETUP_SECTS, im->file + BP_SETUP_SECTS, hdr_end - BP_SETUP_SECTS);
    }
    bp[BP_TYPE_OF_LOADER] = 0xff; /* no registered loader id */
    wr16(bp + BP_VID_MODE, 0xffff); /* "normal": no video mode set */

    const char *base = o->cmdline ? o->cmdline : vmt_kvm_linux_default_cmdline;
    char cmd[LX_CMDLINE_MAX];
    int clen;
    int tsc_khz = k->emulated_cpl0 || lx_entry_stepped(k) ? ioctl(k->vcpu_fd, KVM_GET_TSC_KHZ, 0) : 0;
    if (k->emulated_cpl0 && tsc_khz > 0)
        clen = snprintf(cmd, sizeof cmd, "%s%s tsc_early_khz=%lld", base, LX_EMU_CMDLINE,
                        (long long)tsc_khz * LX_DILATION);
    else if (tsc_khz > 0)
        clen = snprintf(cmd, sizeof cmd, "%s no-kvmclock tsc_early_khz=%lld", base,
                        (long long)tsc_khz * LX_DILATION);
    else
        clen = snprintf(cmd, sizeof cmd, "%s%s", base, k->emulated_cpl0 ? LX_EMU_CMDLINE : "");
    size_t cmax = im->elf ? 0 : rd32(im->file + BP_CMDLINE_SIZE);
    if (clen < 0 || (size_t)clen >= sizeof cmd || (cmax && (size_t)clen > cmax)) {
        vmt_log(VMT_LOG_ERROR, "kvm: kernel command line too long (%d bytes)", clen);
        return VMT_E_INVALID;
    }
    memcpy(k->raw + LX_CMDLINE_PA, cmd, (size_t)clen + 1);
    wr32(bp + BP_CMD_LINE_PTR, (uint32_t)LX_CMDLINE_PA);
    wr32(bp + BP_EXT_CMD_LINE_PTR, 0);

    uint64_t ram = k->ram_frames << VMT_PAGE_SHIFT;
    add_e820(bp, 0, LX_LOW_RAM_END, E820_RAM);
    add_e820(bp, LX_LOW_RAM_END, LX_HIGH_RAM - LX_LOW_RAM_END, E820_RESERVED);
    add_e820(bp, LX_HIGH_RAM, ram - LX_HIGH_RAM, E820_RAM);
    if (o->initrd_path)
        return load_initrd(k, im, o->initrd_path, bp);
    return VMT_OK;
}

/* ---- CPU ---- */

/* Identity map of [0, 1 GiB) in 2 MiB pages: covers the kernel, the zero
 * page, the command line and the initrd, as the 64-bit entry requires. */
static void identity_map(vmt_kvm *k)
{
    uint64_t *pml4 = (uint64_t *)(k->raw + LX_PML4_PA);
    uint64_t *pdpt = pml4 + 512, *pd = pml4 + 1024;
    memset(pml4, 0, 3 * VMT_PAGE_SIZE);
    pml4[0] = (LX_PML4_PA + 0x1000) | 3;
    pdpt[0] = (LX_PML4_PA + 0x2000) | 3;
    for (uint64_t i = 0; i < 512; i++)
        pd[i] = (i << 21) | 0x83; /* present, writable, 2 MiB */
}

static void flat(struct kvm_segment *s, uint16_t sel, uint8_t type, bool code)
{
    *s = (struct kvm_segment){.selector = sel, .limit = 0xffffffff, .type = type, .present = 1,
                              .s = 1, .g = 1, .l = code, .db = !code};
}

/* Where the host's KVM runs guest kernel code in its instruction emulator
 * (kvm_pvm, a software hypervisor without hardware virtualization), the
 * CPU features whose instructions the emulator lacks are hidden, so the
 * kernel picks the alternatives it can run: CMPXCHG16B (SLUB), POPCNT,
 * PCID, XSAVE (and AVX, which needs it), AES-NI, PCLMULQDQ, MOVBE, RDRAND;
 * FSGSBASE, SMAP (stac/clac), INVPCID, RDSEED; RDPID. ERMS and FSRM
 * too: without them memcpy/memset use rep movsq/stosq instead of the byte
 * forms, which the emulator runs one element at a time (8 times fewer). */
#define LX_EMU_MISSING_1_ECX ((1u << 13) | (1u << 23) | (1u << 17) | (1u << 26) | (1u << 27) | (1u << 28) | \
                              (1u << 25) | (1u << 1) | (1u << 22) | (1u << 30))
#define LX_EMU_MISSING_7_EBX ((1u << 0) | (1u << 20) | (1u << 10) | (1u << 18) | (1u << 9))
#define LX_EMU_MISSING_7_ECX (1u << 22)
#define LX_EMU_MISSING_7_EDX (1u << 4)

static vmt_status set_cpuid(vmt_kvm *k)
{
    const unsigned max = 256;
    struct kvm_cpuid2 *cpuid = calloc(1, sizeof *cpuid + max * sizeof(struct kvm_cpuid_entry2));
    if (!cpuid)
        return VMT_E_NOMEM;
    cpuid->nent = max;
    vmt_status st = VMT_OK;
    if (ioctl(k->kvm_fd, KVM_GET_SUPPORTED_CPUID, cpuid) < 0) {
        vmt_log(VMT_LOG_ERROR, "kvm: KVM_GET_SUPPORTED_CPUID: %s", strerror(errno));
        st = VMT_E_DRIVER;
    }
    for (unsigned i = 0; st == VMT_OK && i < cpuid->nent; i++) {
        struct kvm_cpuid_entry2 *e = &cpuid->entries[i];
        if (e->function == 1) {
            e->ecx |= 1u << 31; /* running under a hypervisor: look for KVM's leaves */
            if (k->emulated_cpl0)
                e->ecx &= ~LX_EMU_MISSING_1_ECX;
        }
        if (e->function == 7 && e->index == 0 && k->emulated_cpl0) {
            e->ebx &= ~LX_EMU_MISSING_7_EBX;
            e->ecx &= ~LX_EMU_MISSING_7_ECX;
            e->edx &= ~LX_EMU_MISSING_7_EDX;
        }
    }
    if (st == VMT_OK && ioctl(k->vcpu_fd, KVM_SET_CPUID2, cpuid) < 0) {
        vmt_log(VMT_LOG_ERROR, "kvm: KVM_SET_CPUID2: %s", strerror(errno));
        st = VMT_E_DRIVER;
    }
    free(cpuid);
    return st;
}

/* MTRRs enabled with write-back as the default type. A vCPU starts with
 * MTRRs off, i.e. all memory uncacheable; where the hypervisor honours
 * the guest's memory types (shadow paging) that makes the guest run
 * orders of magnitude slower (the kernel's decompression alone took
 * minutes). Firmware would have done this. */
static vmt_status set_mtrr_wb(vmt_kvm *k)
{
    struct kvm_msrs *msrs = calloc(1, sizeof *msrs + sizeof(struct kvm_msr_entry));
    if (!msrs)
        return VMT_E_NOMEM;
    msrs->nmsrs = 1;
    msrs->entries[0].index = 0x2ff; /* MTRRdefType */
    msrs->entries[0].data = (1u << 11) | 6; /* enabled, write-back */
    int r = ioctl(k->vcpu_fd, KVM_SET_MSRS, msrs);
    free(msrs);
    if (r != 1) {
        vmt_log(VMT_LOG_ERROR, "kvm: setting MTRRdefType failed");
        return VMT_E_DRIVER;
    }
    return VMT_OK;
}

/* LINT0 delivers the PIC's interrupts (ExtINT), LINT1 is NMI: what a PC
 * firmware leaves behind, and what virtual-wire mode expects. */
static uint8_t mp_checksum(const uint8_t *p, size_t n)
{
    uint8_t sum = 0;
    for (size_t i = 0; i < n; i++)
        sum = (uint8_t)(sum + p[i]);
    return (uint8_t)-sum;
}

/* An Intel MultiProcessor Specification 1.4 table: the one CPU, an ISA
 * bus, the in-kernel I/O APIC with ISA IRQ n on its pin n (KVM's default
 * routing; 2 is the PIC cascade), ExtINT on LINT0 and NMI on LINT1.
 * Without any such table (no ACPI either) Linux chooses "virtual wire, no
 * configuration", never starts the local APIC timer and ticks on the PIT:
 * 250 real-time interrupts a second, which dilation cannot slow down and
 * which cost most of the emulated time on kvm_pvm. With it, the tick is
 * the TSC-deadline timer. */
static void write_mptable(vmt_kvm *k)
{
    uint8_t *fp = k->raw + LX_MPTABLE_PA, *t = fp + 16, *e = t + 44;
    uint16_t n = 0;
    memset(fp, 0, 1024);
    e[0] = 0; /* processor: LAPIC 0, version 0x14, enabled + bootstrap */
    e[2] = 0x14;
    e[3] = 0x03;
    wr32(e + 4, 0x600);
    wr32(e + 8, 0x201); /* FPU, APIC */
    e += 20, n++;
    e[0] = 1; /* bus 0: ISA */
    memcpy(e + 2, "ISA   ", 6);
    e += 8, n++;
    e[0] = 2; /* I/O APIC 1, version 0x11, enabled */
    e[1] = 1;
    e[2] = 0x11;
    e[3] = 1;
    wr32(e + 4, LX_IOAPIC_PA);
    e += 8, n++;
    for (uint8_t irq = 0; irq < 16; irq++) {
        if (irq == 2)
            continue;
        e[0] = 3; /* I/O interrupt: INT, conforming, bus 0 IRQ irq -> I/O APIC 1 pin irq */
        e[5] = irq;
        e[6] = 1;
        e[7] = irq;
        e += 8, n++;
    }
    for (uint8_t lint = 0; lint < 2; lint++) {
        e[0] = 4; /* local interrupt: ExtINT on LINT0, NMI on LINT1, every LAPIC */
        e[1] = lint ? 1 : 3;
        e[6] = 0xff;
        e[7] = lint;
        e += 8, n++;
    }
    uint16_t len = (uint16_t)(e - t);
    memcpy(t, "PCMP", 4);
    wr16(t + 4, len);
    t[6] = 4; /* spec 1.4 */
    memcpy(t + 8, "VMITAP  ", 8);
    memcpy(t + 16, "MICROVM     ", 12);
    wr16(t + 34, n);
    wr32(t + 36, LX_LAPIC_PA);
    t[7] = mp_checksum(t, len);
    memcpy(fp, "_MP_", 4); /* floating pointer: config table right after it */
    wr32(fp + 4, (uint32_t)(LX_MPTABLE_PA + 16));
    fp[8] = 1; /* length in 16-byte units */
    fp[9] = 4;
    fp[10] = mp_checksum(fp, 16);
}

static vmt_status set_lapic_lints(vmt_kvm *k)
{
    struct kvm_lapic_state la;
    if (ioctl(k->vcpu_fd, KVM_GET_LAPIC, &la) < 0)
        return VMT_E_DRIVER;
    uint32_t lvt0 = 0x700, lvt1 = 0x400; /* ExtINT, NMI; unmasked */
    memcpy(la.regs + 0x350, &lvt0, 4);
    memcpy(la.regs + 0x360, &lvt1, 4);
    return ioctl(k->vcpu_fd, KVM_SET_LAPIC, &la) < 0 ? VMT_E_DRIVER : VMT_OK;
}

static vmt_status enter_64bit(vmt_kvm *k, uint64_t entry)
{
    uint64_t *gdt = (uint64_t *)(k->raw + LX_GDT_PA);
    memset(gdt, 0, 4 * 8);
    gdt[2] = 0x00af9b000000ffffull; /* __BOOT_CS 0x10: 64-bit code */
    gdt[3] = 0x00cf93000000ffffull; /* __BOOT_DS 0x18: flat data */
    struct kvm_sregs sr;
    if (ioctl(k->vcpu_fd, KVM_GET_SREGS, &sr) < 0)
        return VMT_E_DRIVER;
    flat(&sr.cs, 0x10, 0xb, true);
    flat(&sr.ds, 0x18, 0x3, false);
    sr.es = sr.fs = sr.gs = sr.ss = sr.ds;
    sr.gdt.base = LX_GDT_PA;
    sr.gdt.limit = 4 * 8 - 1;
    sr.cr3 = LX_PML4_PA;
    sr.cr4 = 0x20;                                  /* PAE */
    sr.cr0 = 0x80000000u | 0x20 | 0x10 | 0x2 | 0x1; /* PG NE ET MP PE */
    sr.efer = 0x100 | 0x400;                        /* LME LMA */
    if (ioctl(k->vcpu_fd, KVM_SET_SREGS, &sr) < 0) {
        vmt_log(VMT_LOG_ERROR, "kvm: entering long mode: %s", strerror(errno));
        return VMT_E_DRIVER;
    }
    /* Interrupts off; RSI = the zero page, as the 64-bit protocol says. */
    struct kvm_regs r = {.rip = entry, .rsi = LX_ZERO_PAGE_PA, .rsp = LX_STACK_TOP, .rflags = 2};
    return ioctl(k->vcpu_fd, KVM_SET_REGS, &r) < 0 ? VMT_E_DRIVER : VMT_OK;
}

/* A CMOS real-time clock (ports 0x70/0x71) that reads the host's UTC time:
 * without one, every read of its status said "update in progress" and
 * the kernel polled it with delays (10 ms each time, dilated). Format as
 * register B asks (BCD unless DM, 24-hour when 24H); no update cycle, no
 * alarm or periodic interrupts; the other registers are plain storage. */
#define CMOS_INDEX_PORT 0x70
#define CMOS_DATA_PORT 0x71
enum { RTC_SEC = 0, RTC_MIN = 2, RTC_HOUR = 4, RTC_WDAY = 6, RTC_MDAY = 7, RTC_MON = 8, RTC_YEAR = 9,
       RTC_REG_A = 10, RTC_REG_B = 11, RTC_REG_C = 12, RTC_REG_D = 13, RTC_CENTURY = 0x32 };
#define RTC_B_24H 0x02
#define RTC_B_BINARY 0x04

static void cmos_init(vmt_kvm *k)
{
    k->cmos[RTC_REG_A] = 0x26; /* 32.768 kHz time base, 1024 Hz rate, UIP clear */
    k->cmos[RTC_REG_B] = RTC_B_24H;
    k->cmos[RTC_REG_D] = 0x80; /* valid RAM and time */
}

static uint8_t cmos_time_reg(const vmt_kvm *k, unsigned reg)
{
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    int v;
    bool pm = false;
    switch (reg) {
    case RTC_SEC: v = tm.tm_sec; break;
    case RTC_MIN: v = tm.tm_min; break;
    case RTC_HOUR:
        v = tm.tm_hour;
        if (!(k->cmos[RTC_REG_B] & RTC_B_24H)) {
            pm = v >= 12;
            v = v % 12 ? v % 12 : 12;
        }
        break;
    case RTC_WDAY: v = tm.tm_wday + 1; break;
    case RTC_MDAY: v = tm.tm_mday; break;
    case RTC_MON: v = tm.tm_mon + 1; break;
    case RTC_YEAR: v = tm.tm_year % 100; break;
    default: v = 19 + tm.tm_year / 100; break; /* RTC_CENTURY */
    }
    uint8_t b = (k->cmos[RTC_REG_B] & RTC_B_BINARY) ? (uint8_t)v : (uint8_t)((v / 10) << 4 | v % 10);
    return pm ? (uint8_t)(b | 0x80) : b;
}

static uint8_t cmos_read(const vmt_kvm *k)
{
    unsigned r = k->cmos_index;
    switch (r) {
    case RTC_SEC: case RTC_MIN: case RTC_HOUR: case RTC_WDAY:
    case RTC_MDAY: case RTC_MON: case RTC_YEAR: case RTC_CENTURY:
        return cmos_time_reg(k, r);
    case RTC_REG_C:
        return 0; /* no interrupt flags */
    default:
        return k->cmos[r];
    }
}

static void cmos_write(vmt_kvm *k, uint8_t v)
{
    unsigned r = k->cmos_index;
    if (r == RTC_REG_A)
        v &= 0x7f; /* UIP is read-only */
    if (r != RTC_REG_C && r != RTC_REG_D)
        k->cmos[r] = v;
}


vmt_status kvm_linux_boot(vmt_kvm *k, const vmt_kvm_opts *o)
{
    lx_image im = {0};
    k->emulated_cpl0 = vmt_kvm_emulates_kernel_mode();
    cmos_init(k);
    im.file = read_file(o->kernel_path, &im.len);
    if (!im.file)
        return VMT_E_INVALID;
    im.elf = im.len >= 4 && memcmp(im.file, "\177ELF", 4) == 0;
    vmt_status st = im.elf ? load_vmlinux(k, o->kernel_path, &im)
                           : check_bzimage(o->kernel_path, &im, k->ram_frames << VMT_PAGE_SHIFT);
    if (st == VMT_OK && !im.elf)
        memcpy(k->raw + im.load_pa, im.file + im.setup_len, im.len - im.setup_len);
    if (st == VMT_OK)
        st = fill_zero_page(k, &im, o);
    if (st == VMT_OK)
        write_mptable(k);
    if (st == VMT_OK) {
        identity_map(k);
        st = set_cpuid(k);
    }
    if (st == VMT_OK)
        st = set_lapic_lints(k);
    if (st == VMT_OK)
        st = set_mtrr_wb(k);
    if (st == VMT_OK)
        st = enter_64bit(k, im.entry);
    if (st == VMT_OK)
        vmt_log(VMT_LOG_INFO, "kvm: Linux %s (%s, %zu KiB), entry 0x%llx", o->kernel_path,
                im.elf ? "vmlinux" : "bzImage", im.len >> 10, (unsigned long long)im.entry);
    free(im.file);
    return st;
}

bool vmt_kvm_emulates_kernel_mode(void)
{
    return access("/sys/module/kvm_pvm", F_OK) == 0;
}

/* Reads the instruction bytes at rip into b[15] (zeros past what could be
 * read): all 15, or up to the end of rip's page when the next one cannot
 * be read. Returns the count read, 0 if none. */
static size_t read_insn(vmt_kvm *k, uint64_t cr3, uint64_t rip, uint8_t b[15])
{
    memset(b, 0, 15);
    if (kvm_va_read(k, cr3, rip, b, 15) == VMT_OK)
        return 15;
    size_t n = VMT_PAGE_SIZE - (rip & (VMT_PAGE_SIZE - 1));
    return n < 15 && kvm_va_read(k, cr3, rip, b, n) == VMT_OK ? n : 0;
}

/* Instructions kvm_pvm's emulator fails on that have no effect the guest
 * could see if skipped: fwait (the kernel runs it in fpu__drop only to
 * discard pending x87 exceptions), the fences, and ldmxcsr (the kernel's
 * kernel_fpu_begin loads the default MXCSR, which the vCPU already has:
 * nothing in this guest's user space changes it). */
static unsigned skippable_len(const uint8_t *b, size_t n)
{
    unsigned len = vmt_insn_len(b, n);
    if (b[0] == 0x9b)
        return len; /* fwait */
    if (b[0] == 0x0f && b[1] == 0xae && (b[2] == 0xe8 || b[2] == 0xf0 || b[2] == 0xf8))
        return len; /* lfence, mfence, sfence */
    if (b[0] == 0x0f && b[1] == 0xae && (b[2] >> 6) != 3 && ((b[2] >> 3) & 7) == 2)
        return len; /* ldmxcsr m32 */
    return 0;
}

/* kvm_pvm also reported emulation failures at ordinary instructions (a
 * nop at the start of the interrupt entry code, right after an interrupt
 * was delivered) that may run when the vCPU tries again or steps. So on
 * such a host a skippable instruction is stepped over by hand, any other
 * failure is resumed once, then single-stepped once, and only a third
 * failure at the same rip in a row is a crash. */
bool kvm_linux_emulation_retry(vmt_kvm *k, uint64_t rip)
{
    if (!k->linux_boot || !k->emulated_cpl0)
        return false;
    vmt_regs r;
    uint8_t b[15];
    size_t got;
    if (kvm_regs_get(k, &r) == VMT_OK && (got = read_insn(k, r.cr3, rip, b)) != 0) {
        unsigned n = skippable_len(b, got);
        if (n) {
            r.rip += n;
            k->emu_retries++;
            return kvm_regs_set(k, &r) == VMT_OK;
        }
    }
    if (rip != k->retry_rip) {
        k->retry_rip = rip;
        k->retries = 0;
    }
    if (k->retries >= 2)
        return false;
    if (++k->retries == 2)
        k->step.fast = true; /* one silent single-step */
    k->emu_retries++;
    vmt_log(VMT_LOG_DEBUG, "kvm: emulation failure at 0x%llx resumed (try %u)", (unsigned long long)rip,
            k->retries);
    return true;
}

/* ---- SYSCALL on kvm_pvm ---- */

#define MSR_STAR 0xc0000081u
#define MSR_LSTAR 0xc0000082u
#define RFLAGS_RF (1ull << 16)

bool kvm_linux_wants_pf_trap(const vmt_kvm *k) { return k->linux_boot && k->emulated_cpl0; }

/* kvm_pvm runs a SYSCALL from guest user mode only half-way: RCX, R11,
 * RFLAGS (masked) and RIP = LSTAR are set, but CS and SS keep their user
 * selectors, so the vCPU fetches the kernel's entry code at CPL 3 and the
 * guest takes a #PF there (its init then dies of SIGSEGV). That #PF is
 * recognised at its delivery, before the guest's handler ran anything:
 * its frame (error code, RIP, CS, RFLAGS, RSP, SS on the stack) says RIP =
 * LSTAR at CPL 3, and the instruction before RCX is a SYSCALL (0f 05). The
 * delivery is then undone and the SYSCALL finished as the SDM says: CS and
 * SS from STAR, RSP and RFLAGS as they were (the stack the delivery used
 * is below the kernel's RSP0 and unused); GS is untouched, as kvm_pvm left
 * it. Only CR2 keeps the fault's address. The entry code's first
 * instructions, up to its switch to the kernel stack, are then run by hand
 * (run_window, below) before the vCPU runs again. */
static unsigned run_window(vmt_kvm *k, vmt_regs *n);

bool kvm_linux_fix_syscall(vmt_kvm *k, const vmt_regs *r)
{
    uint64_t f[6], lstar, star; /* error code, RIP, CS, RFLAGS, RSP, SS */
    uint8_t insn[2];
    if (kvm_va_read(k, r->cr3, r->rsp, f, sizeof f) != VMT_OK || (f[2] & 3) != 3 ||
        kvm_msr_get(k, MSR_LSTAR, &lstar) != VMT_OK || f[1] != lstar ||
        kvm_va_read(k, r->cr3, r->rcx - 2, insn, 2) != VMT_OK || insn[0] != 0x0f || insn[1] != 0x05 ||
        kvm_msr_get(k, MSR_STAR, &star) != VMT_OK)
        return false;
    vmt_pa lpa;
    if (!k->layout_warned && (kvm_va_to_pa(k, r->cr3, lstar, &lpa) != VMT_OK || (lpa >> VMT_PAGE_SHIFT) != k->pf_gfn)) {
        /* Linux 6.1 keeps entry_SYSCALL_64 and its SYSRETQ on its #PF
         * handler's page; elsewhere nothing steps them into our hands. */
        vmt_log(VMT_LOG_WARN, "kvm: LSTAR 0x%llx is not on the #PF handler's page: its SYSRETQ will run unhelped",
                (unsigned long long)lstar);
        k->layout_warned = true;
    }
    vmt_regs n = *r;
    uint16_t kcs = (uint16_t)((star >> 32) & 0xfffc);
    n.rip = lstar;
    n.cs = kcs;
    n.ss = (uint16_t)(kcs + 8);
    n.rsp = f[4];
    n.rflags = f[3] & ~RFLAGS_RF;
    run_window(k, &n);
    if (kvm_regs_set(k, &n) != VMT_OK)
        return false;
    k->syscall_fixups++;
    vmt_log(VMT_LOG_TRACE,
            "kvm: SYSCALL %llu finished by hand: rcx 0x%llx rsp 0x%llx rflags 0x%llx rax %llu gs 0x%llx kgs 0x%llx",
            (unsigned long long)k->syscall_fixups, (unsigned long long)n.rcx, (unsigned long long)n.rsp,
            (unsigned long long)n.rflags, (unsigned long long)n.rax, (unsigned long long)n.gs_base,
            (unsigned long long)n.kernel_gs_base);
    return true;
}

/* The way back has the same flaw (kvm_pvm's SYSRETQ leaves CS and SS at
 * the kernel's), and both ways have a window where the vCPU is at CPL 0
 * with the user's stack or GS.base: between the SYSCALL and the entry
 * code's switch to the kernel stack, and between the exit code's pop of
 * the user RSP and the SYSRETQ. On real hardware RFLAGS.IF = 0 covers it;
 * kvm_pvm injects interrupts at single-steps regardless of IF and of
 * KVM_GUESTDBG_BLOCKIRQ, and an interrupt taken there runs on the user
 * stack with the user's GS (a double fault). Linux's entry and exit code
 * sit on its #PF handler's page, which the #PF trap keeps a hole, so they
 * are single-stepped; whenever a step leaves the vCPU in that window the
 * instructions up to its end, or up to the end of that page, are done
 * here, by hand, with no VM entry in between. The same holds for the
 * first instructions of an interrupt or exception from user mode, which
 * run at CPL 0 with the user's GS.base until the entry code's SWAPGS (on
 * another page: not stepped). Only the forms these stretches consist of
 * are known (SWAPGS, JMP, CALL, PUSH imm8, POP RSP, MOV RSP to/from
 * %gs:disp32, NOP, CLD, SYSRETQ); any other instruction ends the hand-run
 * with a warning. SYSRETQ is done as
 * the SDM says: RIP = RCX, RFLAGS = R11 (RF, VM cleared), CS =
 * STAR[63:48] + 16, SS = STAR[63:48] + 8, both at RPL 3. */
static bool kernel_addr(uint64_t a) { return (a >> 63) != 0; }

static bool unsafe_window(const vmt_regs *r)
{
    return (r->cs & 3) == 0 && (!kernel_addr(r->rsp) || !kernel_addr(r->gs_base));
}

/* One instruction of the window on *r; false if its form is not known. */
static bool step_by_hand(vmt_kvm *k, vmt_regs *r)
{
    uint8_t b[15];
    size_t got = read_insn(k, r->cr3, r->rip, b);
    if (got == 0)
        return false;
    unsigned len = vmt_insn_len(b, got);
    int32_t d32;
    memcpy(&d32, b + 5, 4);
    uint64_t v, star;
    if (b[0] == 0x0f && b[1] == 0x01 && b[2] == 0xf8) { /* swapgs */
        v = r->gs_base;
        r->gs_base = r->kernel_gs_base;
        r->kernel_gs_base = v;
        r->rip += 3;
    } else if (b[0] == 0x90) {
        r->rip += 1;
    } else if (len && b[0] == 0x0f && b[1] == 0x1f) { /* nopl r/m (the kernel's patched-in NOPs) */
        r->rip += len;
    } else if (len && b[0] == 0x66 && b[1] == 0x0f && b[2] == 0x1f) { /* nopw r/m */
        r->rip += len;
    } else if (b[0] == 0xfc) { /* cld */
        r->rflags &= ~(1ull << 10);
        r->rip += 1;
    } else if (b[0] == 0x6a || b[0] == 0xe8) { /* push imm8, call rel32 */
        int32_t rel;
        memcpy(&rel, b + 1, 4);
        v = b[0] == 0x6a ? (uint64_t)(int64_t)(int8_t)b[1] : r->rip + 5;
        if (kvm_va_write(k, r->cr3, r->rsp - 8, &v, 8) != VMT_OK)
            return false;
        r->rsp -= 8;
        r->rip += b[0] == 0x6a ? 2 : 5 + (uint64_t)(int64_t)rel;
    } else if (b[0] == 0xeb) {
        r->rip += 2 + (uint64_t)(int64_t)(int8_t)b[1];
    } else if (b[0] == 0xe9) {
        int32_t rel;
        memcpy(&rel, b + 1, 4);
        r->rip += 5 + (uint64_t)(int64_t)rel;
    } else if (b[0] == 0x5c) { /* pop %rsp */
        if (kvm_va_read(k, r->cr3, r->rsp, &v, 8) != VMT_OK)
            return false;
        r->rsp = v;
        r->rip += 1;
    } else if (b[0] == 0x65 && b[1] == 0x48 && b[3] == 0x24 && b[4] == 0x25 && (b[2] == 0x89 || b[2] == 0x8b)) {
        uint64_t at = r->gs_base + (uint64_t)(int64_t)d32; /* mov %rsp, %gs:d32 / mov %gs:d32, %rsp */
        if (b[2] == 0x89 ? kvm_va_write(k, r->cr3, at, &r->rsp, 8) != VMT_OK
                         : kvm_va_read(k, r->cr3, at, &r->rsp, 8) != VMT_OK)
            return false;
        r->rip += 9;
    } else if (b[0] == 0x48 && b[1] == 0x0f && b[2] == 0x07) { /* sysretq */
        if (kvm_msr_get(k, MSR_STAR, &star) != VMT_OK)
            return false;
        uint16_t base = (uint16_t)((star >> 48) & 0xfffc);
        r->rip = r->rcx;
        r->rflags = (r->r11 & 0x3c7fd7ull) | 2;
        r->cs = (uint16_t)((base + 16) | 3);
        r->ss = (uint16_t)((base + 8) | 3);
    } else {
        return false;
    }
    return true;
}

/* Runs *n by hand while it is in the window and on the trapped page;
 * returns how many instructions were done. */
static unsigned run_window(vmt_kvm *k, vmt_regs *n)
{
    unsigned done = 0;
    vmt_pa pa;
    while (unsafe_window(n) && done < 16 && kvm_va_to_pa(k, n->cr3, n->rip, &pa) == VMT_OK &&
           (pa >> VMT_PAGE_SHIFT) == k->pf_gfn) {
        if (!step_by_hand(k, n)) {
            vmt_log(VMT_LOG_WARN, "kvm: unknown instruction at 0x%llx in the CPL 0 window with user stack/GS",
                    (unsigned long long)n->rip);
            break;
        }
        done++;
    }
    return done;
}

bool kvm_linux_window_by_hand(vmt_kvm *k, vmt_regs *r)
{
    if (!kvm_linux_wants_pf_trap(k))
        return false;
    vmt_regs n = *r;
    unsigned done = run_window(k, &n);
    if (!done || kvm_regs_set(k, &n) != VMT_OK)
        return false;
    vmt_log(VMT_LOG_TRACE, "kvm: %u instructions by hand, now at 0x%llx cs 0x%x rsp 0x%llx", done,
            (unsigned long long)n.rip, n.cs, (unsigned long long)n.rsp);
    *r = n;
    return true;
}

/* ---- port I/O of the board ---- */

/* The reset that `reboot -f` (reboot=k) ends with: the guest is over. */
static void board_reset(vmt_kvm *k)
{
    const char *panic = strstr(k->console, "Kernel panic - not syncing");
    if (panic) {
        const char *eol = strchr(panic, '\n');
        int n = eol ? (int)(eol - panic) : (int)strlen(panic);
        kvm_crash(k, "%.*s", n > 200 ? 200 : n, panic);
        return;
    }
    k->exit_code = 0;
    k->state = VMT_KVM_EXITED;
    vmt_log(VMT_LOG_INFO, "kvm: Linux reset the machine (reboot): guest finished");
}

int kvm_linux_io(vmt_kvm *k, uint16_t port, bool out, uint8_t *data, size_t size, size_t count)
{
    if (kvm_serial_io(k, port, out, data, size, count))
        return KVM_LINUX_IO_DONE;
    if ((port == CMOS_INDEX_PORT || port == CMOS_DATA_PORT) && size == 1) {
        for (size_t i = 0; i < count; i++) {
            if (port == CMOS_INDEX_PORT && out)
                k->cmos_index = data[i] & 0x7f; /* bit 7: NMI mask */
            else if (port == CMOS_INDEX_PORT)
                data[i] = k->cmos_index;
            else if (out)
                cmos_write(k, data[i]);
            else
                data[i] = cmos_read(k);
        }
        return KVM_LINUX_IO_DONE;
    }
    if (port == KBD_STATUS_PORT) {
        if (out && data[0] == KBD_CMD_RESET) {
            board_reset(k);
            return KVM_LINUX_IO_STOP;
        }
        /* Status "output buffer full, input buffer empty", for ever: the
         * i8042 driver finds no controller (its flush never ends), and
         * the reboot path's wait for an empty input buffer is immediate. */
        if (!out)
            memset(data, 0x01, size * count);
        return KVM_LINUX_IO_DONE;
    }
    return KVM_LINUX_IO_NOT_MINE;
}
