// SPDX-License-Identifier: MIT
/* A minimal 16550A UART for the Linux guest of the KVM driver: COM1 at
 * I/O ports 0x3f8..0x3ff, IRQ 4 on the in-kernel interrupt controller.
 *
 * Just enough of the chip for Linux's 8250 driver to find a 16550A and to
 * drive it both ways it does: the boot console polls LSR and writes THR;
 * the tty (the init script's stdio) is interrupt driven, so the THR-empty
 * and data-ready interrupts are real. Transmission is instantaneous: a
 * byte written to THR goes to the console buffer at once and THR is empty
 * again. Received bytes come from vmt_kvm_serial_input. Baud rate, parity
 * and modem lines are stored and otherwise ignored; in loopback mode the
 * modem status mirrors MCR and transmitted bytes are received. */
#include <string.h>
#include <sys/ioctl.h>

#include "drivers/kvm/kvm_internal.h"
#include "vmitap/log.h"

enum {
    UART_RX = 0, UART_IER = 1, UART_IIR = 2, UART_LCR = 3,
    UART_MCR = 4, UART_LSR = 5, UART_MSR = 6, UART_SCR = 7,
};
#define IER_RDI 0x01
#define IER_THRI 0x02
#define IIR_NONE 0x01
#define IIR_THRI 0x02
#define IIR_RDI 0x04
#define IIR_FIFO 0xc0
#define FCR_ENABLE 0x01
#define FCR_CLEAR_RX 0x02
#define LCR_DLAB 0x80
#define MCR_OUT2 0x08
#define MCR_LOOP 0x10
#define LSR_DR 0x01
#define LSR_THRE 0x20
#define LSR_TEMT 0x40
#define MSR_IDLE 0xb0 /* DCD, DSR, CTS: a terminal is there */

static size_t rx_count(const kvm_uart *u) { return (size_t)(u->rx_head - u->rx_tail); }

static void rx_push(kvm_uart *u, uint8_t b)
{
    if (rx_count(u) < sizeof u->rx)
        u->rx[u->rx_head++ % sizeof u->rx] = b;
}

static uint8_t iir_of(const kvm_uart *u)
{
    uint8_t fifo = (u->fcr & FCR_ENABLE) ? IIR_FIFO : 0;
    if ((u->ier & IER_RDI) && rx_count(u))
        return fifo | IIR_RDI;
    if ((u->ier & IER_THRI) && u->thri_pending)
        return fifo | IIR_THRI;
    return fifo | IIR_NONE;
}

/* The line follows "an interrupt is pending", gated by OUT2 as on a PC;
 * the PIC sees an edge each time it rises. */
static void update_irq(vmt_kvm *k)
{
    kvm_uart *u = &k->uart;
    bool level = !(iir_of(u) & IIR_NONE) && (u->mcr & MCR_OUT2);
    if (level == u->irq_level)
        return;
    struct kvm_irq_level irq = {.irq = KVM_UART_IRQ, .level = level};
    if (ioctl(k->vm_fd, KVM_IRQ_LINE, &irq) < 0)
        vmt_log(VMT_LOG_WARN, "kvm: serial: KVM_IRQ_LINE failed");
    u->irq_level = level;
}

static void transmit(vmt_kvm *k, uint8_t b)
{
    kvm_uart *u = &k->uart;
    if (u->mcr & MCR_LOOP)
        rx_push(u, b);
    else if (k->console_len + 1 < KVM_CONSOLE_MAX) {
        k->console[k->console_len++] = (char)b;
        k->console[k->console_len] = 0;
    }
    u->thri_pending = true; /* THR is empty again at once */
}

static void uart_out(vmt_kvm *k, unsigned reg, uint8_t v)
{
    kvm_uart *u = &k->uart;
    bool dlab = u->lcr & LCR_DLAB;
    switch (reg) {
    case UART_RX:
        if (dlab)
            u->dll = v;
        else
            transmit(k, v);
        break;
    case UART_IER:
        if (dlab) {
            u->dlm = v;
            break;
        }
        u->ier = v & 0x0f;
        if (u->ier & IER_THRI)
            u->thri_pending = true; /* THR is empty: THRI fires when enabled */
        break;
    case UART_IIR: /* FCR */
        u->fcr = v;
        if (v & FCR_CLEAR_RX)
            u->rx_tail = u->rx_head;
        break;
    case UART_LCR: u->lcr = v; break;
    case UART_MCR: u->mcr = v & 0x1f; break;
    case UART_SCR: u->scr = v; break;
    default: break; /* LSR, MSR: read-only */
    }
}

static uint8_t uart_in(vmt_kvm *k, unsigned reg)
{
    kvm_uart *u = &k->uart;
    bool dlab = u->lcr & LCR_DLAB;
    switch (reg) {
    case UART_RX:
        if (dlab)
            return u->dll;
        return rx_count(u) ? u->rx[u->rx_tail++ % sizeof u->rx] : 0;
    case UART_IER: return dlab ? u->dlm : u->ier;
    case UART_IIR: {
        uint8_t iir = iir_of(u);
        if ((iir & 0x0f) == IIR_THRI)
            u->thri_pending = false; /* reading IIR acknowledges THRE */
        return iir;
    }
    case UART_LCR: return u->lcr;
    case UART_MCR: return u->mcr;
    case UART_LSR: return LSR_THRE | LSR_TEMT | (rx_count(u) ? LSR_DR : 0);
    case UART_MSR:
        if (u->mcr & MCR_LOOP) /* DTR->DSR, RTS->CTS, OUT1->RI, OUT2->DCD */
            return (uint8_t)(((u->mcr & 1) << 5) | ((u->mcr & 2) << 3) | ((u->mcr & 4) << 4) | ((u->mcr & 8) << 4));
        return MSR_IDLE;
    case UART_SCR: return u->scr;
    default: return 0xff;
    }
}

bool kvm_serial_io(vmt_kvm *k, uint16_t port, bool out, uint8_t *data, size_t size, size_t count)
{
    if (port < KVM_UART_BASE || port > KVM_UART_BASE + 7)
        return false;
    unsigned reg = port - KVM_UART_BASE;
    for (size_t i = 0; i < count; i++) {
        uint8_t *p = data + i * size;
        if (out)
            uart_out(k, reg, p[0]);
        else {
            memset(p, 0, size);
            p[0] = uart_in(k, reg);
        }
    }
    update_irq(k);
    return true;
}

vmt_status vmt_kvm_serial_input(vmt_kvm *k, const void *buf, size_t len)
{
    if (!k || (!buf && len))
        return VMT_E_INVALID;
    if (!k->linux_boot)
        return VMT_E_UNSUPPORTED;
    if (len > sizeof k->uart.rx - rx_count(&k->uart))
        return VMT_E_NOMEM;
    for (size_t i = 0; i < len; i++)
        rx_push(&k->uart, ((const uint8_t *)buf)[i]);
    update_irq(k);
    return VMT_OK;
}
