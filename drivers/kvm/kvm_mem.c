// SPDX-License-Identifier: MIT
/* Guest memory of the KVM driver: the memfd, the guest-visible mapping and
 * the memslots that give each frame its class (see kvm_internal.h). */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "drivers/kvm/kvm_internal.h"
#include "vmitap/log.h"

static uint64_t frames_total(const vmt_kvm *k) { return k->ram_frames + k->shadow_cap; }

vmt_status kvm_mem_init(vmt_kvm *k, uint64_t ram_bytes)
{
    k->ram_frames = ram_bytes >> VMT_PAGE_SHIFT;
    k->shadow_cap = KVM_SHADOW_FRAMES;
    k->shadow_next = k->ram_frames;
    k->nchunks = (uint32_t)(k->ram_frames / KVM_CHUNK_FRAMES);
    size_t total = (size_t)frames_total(k) << VMT_PAGE_SHIFT;

    k->mem_fd = memfd_create("vmitap-guest", MFD_CLOEXEC);
    if (k->mem_fd < 0 || ftruncate(k->mem_fd, (off_t)total) < 0) {
        vmt_log(VMT_LOG_ERROR, "kvm: guest memory memfd: %s", strerror(errno));
        return VMT_E_NOMEM;
    }
    k->raw = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_SHARED, k->mem_fd, 0);
    k->gmap = mmap(NULL, ram_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, k->mem_fd, 0);
    if (k->raw == MAP_FAILED || k->gmap == MAP_FAILED) {
        vmt_log(VMT_LOG_ERROR, "kvm: mapping guest memory: %s", strerror(errno));
        if (k->raw == MAP_FAILED)
            k->raw = NULL;
        if (k->gmap == MAP_FAILED)
            k->gmap = NULL;
        return VMT_E_NOMEM;
    }
    k->chunk_split = calloc(k->nchunks, 1);
    k->cls = calloc(k->ram_frames, 1);
    k->backing = malloc(k->ram_frames * sizeof *k->backing);
    k->fslot = malloc(k->ram_frames * sizeof *k->fslot);
    int nslots = ioctl(k->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_NR_MEMSLOTS);
    k->max_slots = nslots > 0 ? (uint32_t)nslots : 32;
    k->free_slots = malloc(k->max_slots * sizeof *k->free_slots);
    k->shadow_free = g_hash_table_new(g_direct_hash, g_direct_equal);
    k->shadow_used = g_hash_table_new(g_direct_hash, g_direct_equal);
    if (!k->chunk_split || !k->cls || !k->backing || !k->fslot || !k->free_slots)
        return VMT_E_NOMEM;
    for (uint64_t g = 0; g < k->ram_frames; g++) {
        k->backing[g] = g;
        k->fslot[g] = -1;
    }
    /* Chunk c uses slot c; the per-frame slots come from the rest. */
    for (uint32_t s = k->max_slots; s-- > k->nchunks;)
        k->free_slots[k->nfree_slots++] = s;
    for (uint32_t c = 0; c < k->nchunks; c++) {
        struct kvm_userspace_memory_region r = {
            .slot = c,
            .guest_phys_addr = (uint64_t)c * KVM_CHUNK_FRAMES << VMT_PAGE_SHIFT,
            .memory_size = (uint64_t)KVM_CHUNK_FRAMES << VMT_PAGE_SHIFT,
            .userspace_addr = (uint64_t)(uintptr_t)(k->gmap + ((size_t)c * KVM_CHUNK_FRAMES << VMT_PAGE_SHIFT)),
        };
        if (ioctl(k->vm_fd, KVM_SET_USER_MEMORY_REGION, &r) < 0) {
            vmt_log(VMT_LOG_ERROR, "kvm: memslot for chunk %u: %s", c, strerror(errno));
            return VMT_E_DRIVER;
        }
        k->ctr.memslot_ops++;
    }
    return VMT_OK;
}

void kvm_mem_fini(vmt_kvm *k)
{
    if (k->raw)
        munmap(k->raw, (size_t)frames_total(k) << VMT_PAGE_SHIFT);
    if (k->gmap)
        munmap(k->gmap, (size_t)k->ram_frames << VMT_PAGE_SHIFT);
    if (k->mem_fd >= 0)
        close(k->mem_fd);
    free(k->chunk_split);
    free(k->cls);
    free(k->backing);
    free(k->fslot);
    free(k->free_slots);
    if (k->shadow_free)
        g_hash_table_destroy(k->shadow_free);
    if (k->shadow_used)
        g_hash_table_destroy(k->shadow_used);
}

/* RAM, or an allocated shadow frame: what read/write may touch. */
bool kvm_pa_backed(const vmt_kvm *k, vmt_pa pa, size_t len)
{
    if (len == 0 || pa + len < pa)
        return false;
    vmt_gfn first = pa >> VMT_PAGE_SHIFT, last = (pa + len - 1) >> VMT_PAGE_SHIFT;
    for (vmt_gfn g = first; g <= last; g++) {
        if (g < k->ram_frames)
            continue;
        if (!g_hash_table_contains(k->shadow_used, GSIZE_TO_POINTER(g)))
            return false;
    }
    return true;
}

uint8_t *kvm_frame_raw(vmt_kvm *k, vmt_gfn gfn) { return k->raw + ((size_t)gfn << VMT_PAGE_SHIFT); }

/* A frame's own content: during a one-step content swap (kvm_run.c,
 * add_temp) it is parked in swap_save, and the frame holds another view's
 * bytes for the guest; read/write/allocate see and change the parked copy,
 * which goes back into the frame after the step. */
uint8_t *kvm_frame_content(vmt_kvm *k, vmt_gfn gfn)
{
    for (unsigned i = 0; i < k->step.ntemp; i++)
        if (k->step.temp[i].swap && k->step.temp[i].backing == gfn)
            return k->swap_save[i];
    return kvm_frame_raw(k, gfn);
}

void kvm_raw_copy(vmt_kvm *k, vmt_pa pa, void *buf, size_t len, bool write)
{
    uint8_t *p = buf;
    while (len) {
        size_t off = pa & (VMT_PAGE_SIZE - 1), n = VMT_PAGE_SIZE - off;
        if (n > len)
            n = len;
        uint8_t *frame = kvm_frame_content(k, pa >> VMT_PAGE_SHIFT) + off;
        if (write)
            memcpy(frame, p, n);
        else
            memcpy(p, frame, n);
        pa += n;
        p += n;
        len -= n;
    }
}

static vmt_status set_slot(vmt_kvm *k, uint32_t slot, vmt_gfn gfn, uint64_t frames, uint32_t flags)
{
    struct kvm_userspace_memory_region r = {
        .slot = slot,
        .flags = flags,
        .guest_phys_addr = gfn << VMT_PAGE_SHIFT,
        .memory_size = frames << VMT_PAGE_SHIFT,
        .userspace_addr = (uint64_t)(uintptr_t)(k->gmap + ((size_t)gfn << VMT_PAGE_SHIFT)),
    };
    k->ctr.memslot_ops++;
    if (ioctl(k->vm_fd, KVM_SET_USER_MEMORY_REGION, &r) < 0) {
        vmt_log(VMT_LOG_ERROR, "kvm: memslot %u at gfn 0x%llx (%llu frames, flags %u): %s", slot,
                (unsigned long long)gfn, (unsigned long long)frames, flags, strerror(errno));
        return VMT_E_DRIVER;
    }
    return VMT_OK;
}

/* Gives frame gfn a memslot of its own for class cls (none for a hole). */
static vmt_status frame_slot_set(vmt_kvm *k, vmt_gfn gfn, unsigned cls)
{
    vmt_status st;
    if (k->fslot[gfn] >= 0) {
        uint32_t s = (uint32_t)k->fslot[gfn];
        if ((st = set_slot(k, s, gfn, 0, 0)) != VMT_OK)
            return st;
        k->fslot[gfn] = -1;
        k->free_slots[k->nfree_slots++] = s;
    }
    if (cls == CLASS_HOLE)
        return VMT_OK;
    if (k->nfree_slots == 0) {
        vmt_log(VMT_LOG_ERROR, "kvm: out of memslots (%u)", k->max_slots);
        return VMT_E_NOMEM;
    }
    uint32_t s = k->free_slots[--k->nfree_slots];
    if ((st = set_slot(k, s, gfn, 1, cls == CLASS_RO ? KVM_MEM_READONLY : 0)) != VMT_OK) {
        k->free_slots[k->nfree_slots++] = s;
        return st;
    }
    k->fslot[gfn] = (int32_t)s;
    return VMT_OK;
}

/* Replaces the chunk's single memslot by one memslot per frame. Done once
 * per chunk: every frame of an unsplit chunk is NORMAL. */
static vmt_status chunk_split(vmt_kvm *k, uint32_t c)
{
    if (k->nfree_slots < KVM_CHUNK_FRAMES) {
        vmt_log(VMT_LOG_ERROR, "kvm: not enough memslots to split chunk %u", c);
        return VMT_E_NOMEM;
    }
    vmt_status st = set_slot(k, c, (vmt_gfn)c * KVM_CHUNK_FRAMES, 0, 0);
    if (st != VMT_OK)
        return st;
    k->chunk_split[c] = 1;
    for (vmt_gfn g = (vmt_gfn)c * KVM_CHUNK_FRAMES; g < (vmt_gfn)(c + 1) * KVM_CHUNK_FRAMES; g++)
        if ((st = frame_slot_set(k, g, CLASS_NORMAL)) != VMT_OK)
            return st;
    return VMT_OK;
}

static vmt_status remap(vmt_kvm *k, vmt_gfn gfn, vmt_gfn backing)
{
    void *at = k->gmap + ((size_t)gfn << VMT_PAGE_SHIFT);
    void *p = mmap(at, VMT_PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, k->mem_fd,
                   (off_t)(backing << VMT_PAGE_SHIFT));
    k->ctr.remaps++;
    if (p == MAP_FAILED) {
        vmt_log(VMT_LOG_ERROR, "kvm: remapping gfn 0x%llx: %s", (unsigned long long)gfn, strerror(errno));
        return VMT_E_DRIVER;
    }
    return VMT_OK;
}

/* Makes the guest see frame `backing` at gfn with class cls. */
vmt_status kvm_install(vmt_kvm *k, vmt_gfn gfn, unsigned cls, vmt_gfn backing)
{
    vmt_status st;
    if (k->backing[gfn] != backing) {
        if ((st = remap(k, gfn, backing)) != VMT_OK)
            return st;
        k->backing[gfn] = backing;
    }
    if (k->cls[gfn] != cls) {
        uint32_t c = (uint32_t)(gfn / KVM_CHUNK_FRAMES);
        if (!k->chunk_split[c] && (st = chunk_split(k, c)) != VMT_OK)
            return st;
        if ((st = frame_slot_set(k, gfn, cls)) != VMT_OK)
            return st;
        k->cls[gfn] = (uint8_t)cls;
    }
    return VMT_OK;
}

unsigned kvm_class_of(vmt_access a)
{
    /* Page tables the CPU walks stay writable: the walk is a write for
     * nested paging (kvm_ptw.c finds the guest's writes instead). */
    if ((a & KVM_ACCESS_WALK) && (a & VMT_ACCESS_R))
        return CLASS_NORMAL;
    if ((a & VMT_ACCESS_R) && (a & VMT_ACCESS_X))
        return (a & VMT_ACCESS_W) ? CLASS_NORMAL : CLASS_RO;
    return CLASS_HOLE;
}

/* What an execute-only frame shows while the vCPU runs in it (emulated,
 * one instruction at a time): the instruction at RIP must be fetched from
 * the view's backing (where a breakpoint's int3 is), but the frame is then
 * natively readable, and an instruction reading its own frame must see
 * what a read event answered in the default view would give. So the
 * frame shows view 0's bytes unless the byte at RIP differs between the
 * two (the int3 of a breakpoint, which reads nothing). */
static vmt_gfn xo_backing(vmt_kvm *k, vmt_gfn gfn, vmt_gfn backing)
{
    vmt_access acc0;
    vmt_gfn orig;
    kvm_view_lookup(kvm_view_get(k, 0), gfn, &acc0, &orig);
    vmt_pa pa;
    if (orig == backing || kvm_va_to_pa(k, kvm_cr3(k), kvm_rip(k), &pa) != VMT_OK)
        return backing;
    size_t off = pa & (VMT_PAGE_SIZE - 1);
    if ((pa >> VMT_PAGE_SHIFT) == gfn && kvm_frame_raw(k, backing)[off] != kvm_frame_raw(k, orig)[off])
        return backing;
    return orig;
}

vmt_status kvm_sync_frame(vmt_kvm *k, vmt_gfn gfn)
{
    for (unsigned i = 0; i < k->step.ntemp; i++)
        if (k->step.temp[i].gfn == gfn)
            return kvm_install(k, gfn, k->step.temp[i].cls, k->step.temp[i].backing);
    vmt_access acc;
    vmt_gfn backing;
    kvm_view_lookup(kvm_view_get(k, k->active), gfn, &acc, &backing);
    unsigned cls = kvm_class_of(acc);
    bool passing = k->step.passthrough && gfn == k->pt_gfn;
    if (!passing && ((k->bp_trap && gfn == k->bp_gfn) || (k->db_trap && gfn == k->db_gfn) ||
                     (k->pf_trap && gfn == k->pf_gfn)))
        cls = CLASS_HOLE;
    if (k->es_trap && gfn == k->es_gfn && cls == CLASS_NORMAL)
        cls = CLASS_RO;
    for (unsigned i = 0; i < k->nxo; i++)
        if (k->xo_gfn[i] == gfn && cls == CLASS_HOLE) {
            cls = CLASS_RO; /* running in an execute-only frame */
            backing = xo_backing(k, gfn, backing);
        }
    return kvm_install(k, gfn, cls, backing);
}

/* Guest-visible RAM; beyond RAM reads as 0xff (no device there). */
vmt_status kvm_guest_read(void *d, vmt_pa pa, void *buf, size_t len)
{
    vmt_kvm *k = d;
    if (pa >= (k->ram_frames << VMT_PAGE_SHIFT) || len > (k->ram_frames << VMT_PAGE_SHIFT) - pa)
        return VMT_E_OUT_OF_BOUNDS;
    memcpy(buf, k->gmap + pa, len);
    return VMT_OK;
}

vmt_status kvm_guest_write(vmt_kvm *k, vmt_pa pa, const void *buf, size_t len)
{
    if (pa >= (k->ram_frames << VMT_PAGE_SHIFT) || len > (k->ram_frames << VMT_PAGE_SHIFT) - pa)
        return VMT_E_OUT_OF_BOUNDS;
    memcpy(k->gmap + pa, buf, len);
    return VMT_OK;
}
