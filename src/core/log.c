// SPDX-License-Identifier: MIT
/* The log hook. The library never prints: messages go to the callback the
 * application installed, or nowhere. */
#include "vmitap/log.h"

#include <stddef.h>

static vmt_log_fn log_fn;
static void *log_user;

vmt_log_fn vmt_set_log_fn(vmt_log_fn fn, void *user)
{
    vmt_log_fn old = log_fn;
    log_fn = fn;
    log_user = user;
    return old;
}

void vmt_log(vmt_log_level level, const char *fmt, ...)
{
    if (!log_fn)
        return;
    va_list ap;
    va_start(ap, fmt);
    log_fn(log_user, level, fmt, ap);
    va_end(ap);
}
