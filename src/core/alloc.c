// SPDX-License-Identifier: MIT
/* The internal allocator's hook (alloc.h). */
#include <string.h>

#include "core/alloc.h"

uint64_t vmt_alloc_fail_at;

int vmt_alloc_fail_now(void)
{
    return --vmt_alloc_fail_at == 0;
}

char *vmt_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = vmt_malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}
