// SPDX-License-Identifier: MIT
/* Where the bundled guest ELF is: vmt_kvm_default_guest().
 *
 * No build-tree path is compiled in. The guest is installed as
 * DATADIR/vmitap/vmitap-guest.elf, and found from the file that holds this
 * code: libvmitap.so, or the program itself when it is linked with
 * libvmitap.a. From that file's directory the library tries, in order:
 *   1. LIB->DATA/vmitap/   (installed shared library: lib/ -> ../share)
 *   2. BIN->DATA/vmitap/   (installed program linked statically: bin/ -> ../share)
 *   3. share/vmitap/ in the directory itself and up to 4 levels above it:
 *      the uninstalled build tree, which keeps a copy of the guest in
 *      BUILD/share/vmitap/ for its own library, tools and tests.
 * The two relative paths are computed by CMake from the install dirs
 * (VMITAP_REL_LIB_DATA, VMITAP_REL_BIN_DATA), so a prefix chosen at install
 * time (cmake --install --prefix) works. $VMITAP_GUEST overrides all. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <limits.h>
#include <link.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "drivers/kvm/kvm_internal.h"

#ifndef VMITAP_REL_LIB_DATA
#define VMITAP_REL_LIB_DATA "../share"
#endif
#ifndef VMITAP_REL_BIN_DATA
#define VMITAP_REL_BIN_DATA "../share"
#endif
#define GUEST_FILE "vmitap/vmitap-guest.elf"
#define UP_LEVELS 4

static char guest_path[PATH_MAX];
static pthread_once_t guest_once = PTHREAD_ONCE_INIT;

/* The directory of the file (shared library or program) this code is in
 * (found from the address of one of its variables), resolved; false if it
 * cannot be known. */
static bool module_dir(char *out, size_t len)
{
    Dl_info info;
    struct link_map *map = NULL;
    char file[PATH_MAX];
    if (!dladdr1(guest_path, &info, (void **)&map, RTLD_DL_LINKMAP))
        return false;
    /* The main program's link map has an empty name; dli_fname would then
     * be argv[0], which need not be a path at all. */
    const char *name = map && map->l_name && map->l_name[0] ? map->l_name : "/proc/self/exe";
    if (!realpath(name, file))
        return false;
    char *slash = strrchr(file, '/');
    if (!slash || (size_t)(slash - file) >= len)
        return false;
    *slash = '\0';
    snprintf(out, len, "%s", file[0] ? file : "/");
    return true;
}

static bool try_path(const char *dir, const char *rel)
{
    char p[PATH_MAX];
    int n = snprintf(p, sizeof p, "%s/%s/" GUEST_FILE, dir, rel);
    if (n < 0 || (size_t)n >= sizeof p || access(p, R_OK) != 0)
        return false;
    if (!realpath(p, guest_path)) /* lib/../share/... -> share/... */
        snprintf(guest_path, sizeof guest_path, "%s", p);
    return true;
}

static void find_guest(void)
{
    char dir[PATH_MAX];
    /* Not found: name the installed location, so errors say where the
     * guest was expected. */
    snprintf(guest_path, sizeof guest_path, "share/" GUEST_FILE);
    if (!module_dir(dir, sizeof dir))
        return;
    if (snprintf(guest_path, sizeof guest_path, "%s/" VMITAP_REL_LIB_DATA "/" GUEST_FILE, dir) < 0)
        guest_path[0] = '\0';
    if (try_path(dir, VMITAP_REL_LIB_DATA) || try_path(dir, VMITAP_REL_BIN_DATA))
        return;
    char rel[PATH_MAX] = "share"; /* then ../share, ../../share, ... */
    for (int i = 0; i <= UP_LEVELS; i++) {
        if (try_path(dir, rel))
            return;
        size_t used = strlen(rel);
        if (used + 4 > sizeof rel)
            break;
        memmove(rel + 3, rel, used + 1);
        memcpy(rel, "../", 3);
    }
}

const char *vmt_kvm_default_guest(void)
{
    const char *env = getenv("VMITAP_GUEST");
    if (env && *env)
        return env;
    pthread_once(&guest_once, find_guest);
    return guest_path;
}
