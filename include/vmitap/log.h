// SPDX-License-Identifier: MIT
/* vmitap — diagnostics. The library never prints; it hands messages to a
 * callback the application installs.
 *
 * Thread-safety: the callback is process-wide and is called from whatever
 * thread runs library code, so it must be thread-safe if the application
 * uses vmitap from several threads. vmt_set_log_fn is not synchronised:
 * call it before other threads use the library. */
#ifndef VMITAP_LOG_H
#define VMITAP_LOG_H

#include "vmitap/api.h"

#include <stdarg.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum vmt_log_level {
    VMT_LOG_ERROR = 0,
    VMT_LOG_WARN,
    VMT_LOG_INFO,
    VMT_LOG_DEBUG,
    VMT_LOG_TRACE,
} vmt_log_level;

typedef void (*vmt_log_fn)(void *user, vmt_log_level level, const char *fmt, va_list ap);

/* Installs the process-wide log callback (NULL: discard everything, the
 * default) and returns the previous one. Like libbpf_set_print(), this is
 * the one piece of process-wide state: logging is a property of the
 * application, not of a VM. Not thread-safe against concurrent logging. */
VMT_API vmt_log_fn vmt_set_log_fn(vmt_log_fn fn, void *user);

/* Used by the library and its drivers. */
VMT_API void vmt_log(vmt_log_level level, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

#ifdef __cplusplus
}
#endif
#endif /* VMITAP_LOG_H */
