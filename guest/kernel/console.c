// SPDX-License-Identifier: MIT
/* Console on port 0xE9: one outb per byte, and a small printf.
 * Supports %s %c %d %u %x %p with the l modifier (%lu, %lx, %ld). */
#include "kernel.h"

void kputc(char c)
{
    outb(VMT_GUEST_CONSOLE_PORT, (uint8_t)c);
}

static void put_unsigned(uint64_t v, unsigned base)
{
    char buf[24];
    int n = 0;

    do {
        buf[n++] = "0123456789abcdef"[v % base];
        v /= base;
    } while (v);
    while (n)
        kputc(buf[--n]);
}

void kvprintf(const char *fmt, va_list ap)
{
    for (; *fmt; fmt++) {
        if (*fmt != '%') {
            kputc(*fmt);
            continue;
        }
        int is_long = 0;
        if (*++fmt == 'l') {
            is_long = 1;
            fmt++;
        }
        switch (*fmt) {
        case 's': {
            const char *s = va_arg(ap, const char *);
            while (*s)
                kputc(*s++);
            break;
        }
        case 'c':
            kputc((char)va_arg(ap, int));
            break;
        case 'd': {
            int64_t v = is_long ? va_arg(ap, int64_t) : va_arg(ap, int);
            if (v < 0) {
                kputc('-');
                v = -v;
            }
            put_unsigned((uint64_t)v, 10);
            break;
        }
        case 'u':
            put_unsigned(is_long ? va_arg(ap, uint64_t) : va_arg(ap, unsigned), 10);
            break;
        case 'x':
            put_unsigned(is_long ? va_arg(ap, uint64_t) : va_arg(ap, unsigned), 16);
            break;
        case 'p':
            kputc('0');
            kputc('x');
            put_unsigned((uint64_t)(uintptr_t)va_arg(ap, void *), 16);
            break;
        case '%':
            kputc('%');
            break;
        default:
            kputc('?');
            if (*fmt == '\0')
                return;
        }
    }
}

void kprintf(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    kvprintf(fmt, ap);
    va_end(ap);
}
