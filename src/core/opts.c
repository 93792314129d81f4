// SPDX-License-Identifier: MIT
/* The options-struct rule (vmitap/api.h, src/core/opts.h). */
#include "core/opts.h"

#include <string.h>

#include "vmitap/version.h"

static size_t read_sz(const void *s)
{
    size_t sz;
    memcpy(&sz, s, sizeof sz);
    return sz;
}

vmt_status vmt_opts_load(void *dst, size_t known, const void *opts)
{
    if (!opts) {
        memset(dst, 0, known);
        return VMT_OK;
    }
    size_t sz = read_sz(opts);
    if (sz < sizeof(size_t))
        return VMT_E_INVALID; /* 0: nobody sized it; else not even sz fits */
    /* A newer caller's fields this library does not know must be unset:
     * it asked for something that would otherwise be silently ignored. */
    const unsigned char *tail = opts;
    for (size_t i = known; i < sz; i++)
        if (tail[i] != 0)
            return VMT_E_INVALID;
    size_t n = sz < known ? sz : known;
    memset(dst, 0, known);
    memcpy(dst, opts, n);
    return VMT_OK;
}

vmt_status vmt_out_store(void *dst, const void *src, size_t known)
{
    if (!dst)
        return VMT_E_INVALID;
    size_t sz = read_sz(dst);
    if (sz < sizeof(size_t))
        return VMT_E_INVALID;
    unsigned char *d = dst;
    size_t n = sz < known ? sz : known;
    memcpy(d + sizeof sz, (const unsigned char *)src + sizeof sz, n - sizeof sz);
    if (sz > n)
        memset(d + n, 0, sz - n); /* fields of a newer caller this library does not fill */
    return VMT_OK;
}

const char *vmt_version(void)
{
    return VMITAP_VERSION_STRING;
}
