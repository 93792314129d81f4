// SPDX-License-Identifier: MIT
/* Boot of the KVM driver's guest, as guest/abi.h specifies: PT_LOAD
 * segments at p_paddr, boot page tables, a flat 64-bit code segment, long
 * mode, the parameter block, RIP = entry, RSP = boot stack, RDI = params. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "drivers/kvm/kvm_internal.h"
#include "vmitap/log.h"

#define BOOT_GDT_PA 0x5000ull /* free page between the boot tables and the params */

#define PTE_P 1ull
#define PTE_W 2ull
#define PTE_PS 0x80ull

static vmt_status load_segments(vmt_kvm *k, Elf *e, const char *path, uint64_t *entry)
{
    GElf_Ehdr eh;
    size_t n;
    if (!gelf_getehdr(e, &eh) || eh.e_machine != EM_X86_64 || gelf_getclass(e) != ELFCLASS64 ||
        elf_getphdrnum(e, &n) != 0) {
        vmt_log(VMT_LOG_ERROR, "kvm: %s is not an x86-64 ELF executable", path);
        return VMT_E_INVALID;
    }
    size_t size;
    const uint8_t *img = (const uint8_t *)elf_rawfile(e, &size);
    uint64_t ram = k->ram_frames << VMT_PAGE_SHIFT;
    for (size_t i = 0; i < n; i++) {
        GElf_Phdr ph;
        if (!gelf_getphdr(e, (int)i, &ph) || ph.p_type != PT_LOAD)
            continue;
        if (ph.p_filesz > ph.p_memsz || ph.p_offset > size || ph.p_filesz > size - ph.p_offset ||
            ph.p_paddr >= ram || ph.p_memsz > ram - ph.p_paddr) {
            vmt_log(VMT_LOG_ERROR, "kvm: %s: segment %zu (paddr 0x%llx, %llu bytes) does not fit in %llu MiB of RAM",
                    path, i, (unsigned long long)ph.p_paddr, (unsigned long long)ph.p_memsz,
                    (unsigned long long)(ram >> 20));
            return VMT_E_OUT_OF_BOUNDS;
        }
        memcpy(k->raw + ph.p_paddr, img + ph.p_offset, ph.p_filesz);
        memset(k->raw + ph.p_paddr + ph.p_filesz, 0, ph.p_memsz - ph.p_filesz);
    }
    *entry = eh.e_entry;
    return VMT_OK;
}

static vmt_status load_elf(vmt_kvm *k, const char *path, uint64_t *entry)
{
    if (elf_version(EV_CURRENT) == EV_NONE)
        return VMT_E_DRIVER;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        vmt_log(VMT_LOG_ERROR, "kvm: cannot open guest %s: %s", path, strerror(errno));
        return VMT_E_INVALID;
    }
    Elf *e = elf_begin(fd, ELF_C_READ, NULL);
    vmt_status st = VMT_E_INVALID;
    if (!e || elf_kind(e) != ELF_K_ELF)
        vmt_log(VMT_LOG_ERROR, "kvm: %s is not an ELF file", path);
    else
        st = load_segments(k, e, path, entry);
    if (e)
        elf_end(e);
    close(fd);
    return st;
}

/* Identity map [0, 1 GiB) and the same at VMT_GUEST_KERNEL_VBASE, 2 MiB pages. */
static void build_page_tables(vmt_kvm *k)
{
    uint64_t *pml4 = (uint64_t *)(k->raw + VMT_GUEST_BOOT_PML4_PA);
    uint64_t *pdpt_lo = (uint64_t *)(k->raw + 0x2000), *pd = (uint64_t *)(k->raw + 0x3000);
    uint64_t *pdpt_hi = (uint64_t *)(k->raw + 0x4000);
    memset(pml4, 0, 4 * VMT_PAGE_SIZE);
    pml4[0] = 0x2000 | PTE_P | PTE_W;
    pml4[(VMT_GUEST_KERNEL_VBASE >> 39) & 511] = 0x4000 | PTE_P | PTE_W;
    pdpt_lo[0] = 0x3000 | PTE_P | PTE_W;
    pdpt_hi[(VMT_GUEST_KERNEL_VBASE >> 30) & 511] = 0x3000 | PTE_P | PTE_W;
    for (uint64_t i = 0; i < 512; i++)
        pd[i] = (i << 21) | PTE_P | PTE_W | PTE_PS;
}

static void fill_params(vmt_kvm *k, uint64_t ram, const vmt_kvm_opts *o)
{
    vmt_guest_params p = {
        .magic = VMT_GUEST_PARAMS_MAGIC,
        .abi_version = VMT_GUEST_ABI_VERSION,
        .flags = o->guest_flags,
        .ram_bytes = ram,
        .iterations = o->iterations,
        .seed = o->seed,
        .pager = o->pager,
    };
    memcpy(k->raw + VMT_GUEST_PARAMS_PA, &p, sizeof p);
}

static void seg(struct kvm_segment *s, uint16_t sel, uint8_t type, bool code)
{
    memset(s, 0, sizeof *s);
    s->selector = sel;
    s->limit = 0xffffffff;
    s->type = type;
    s->present = 1;
    s->s = 1;
    s->g = 1;
    s->l = code;
    s->db = !code;
}

static vmt_status setup_cpu(vmt_kvm *k, uint64_t entry)
{
    /* Let the guest see the host's CPU features (SSE, NX, ...). */
    struct kvm_cpuid2 *cpuid = calloc(1, sizeof *cpuid + 256 * sizeof(struct kvm_cpuid_entry2));
    if (!cpuid)
        return VMT_E_NOMEM;
    cpuid->nent = 256;
    if (ioctl(k->kvm_fd, KVM_GET_SUPPORTED_CPUID, cpuid) < 0 || ioctl(k->vcpu_fd, KVM_SET_CPUID2, cpuid) < 0) {
        vmt_log(VMT_LOG_ERROR, "kvm: setting CPUID: %s", strerror(errno));
        free(cpuid);
        return VMT_E_DRIVER;
    }
    free(cpuid);
    /* null, 64-bit code (0x08), data (0x10) */
    uint64_t *gdt = (uint64_t *)(k->raw + BOOT_GDT_PA);
    gdt[0] = 0;
    gdt[1] = 0x00af9b000000ffffull;
    gdt[2] = 0x00cf93000000ffffull;

    struct kvm_sregs sr;
    if (ioctl(k->vcpu_fd, KVM_GET_SREGS, &sr) < 0)
        return VMT_E_DRIVER;
    seg(&sr.cs, 0x08, 0xb, true);
    seg(&sr.ds, 0x10, 0x3, false);
    sr.es = sr.fs = sr.gs = sr.ss = sr.ds;
    sr.gdt.base = BOOT_GDT_PA;
    sr.gdt.limit = 3 * 8 - 1;
    sr.cr3 = VMT_GUEST_BOOT_PML4_PA;
    sr.cr4 = 0x20 | 0x200 | 0x400;       /* PAE, OSFXSR, OSXMMEXCPT */
    sr.cr0 = 0x80000000u | 0x20 | 0x2 | 0x1 | 0x10; /* PG, NE, MP, PE, ET */
    sr.efer = 0x100 | 0x400 | 0x800;     /* LME, LMA, NXE */
    if (ioctl(k->vcpu_fd, KVM_SET_SREGS, &sr) < 0) {
        vmt_log(VMT_LOG_ERROR, "kvm: setting long mode: %s", strerror(errno));
        return VMT_E_DRIVER;
    }
    struct kvm_regs r = {.rip = entry, .rsp = VMT_GUEST_BOOT_STACK_TOP, .rdi = VMT_GUEST_PARAMS_PA, .rflags = 2};
    if (ioctl(k->vcpu_fd, KVM_SET_REGS, &r) < 0)
        return VMT_E_DRIVER;
    return VMT_OK;
}

vmt_status kvm_boot_load(vmt_kvm *k, const char *path, const vmt_kvm_opts *o)
{
    uint64_t entry;
    vmt_status st = load_elf(k, path, &entry);
    if (st != VMT_OK)
        return st;
    build_page_tables(k);
    fill_params(k, k->ram_frames << VMT_PAGE_SHIFT, o);
    return setup_cpu(k, entry);
}
