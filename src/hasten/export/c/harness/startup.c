/* Bare-metal start for QEMU's mps2 boards (Cortex-M3 an385, M4 an386, M7 an500) with semihosting, used by
 * hasten's harness (toolchain.py) to run an exported model and measure it.
 * Reset: enable the FPU where there is one, copy .data, zero .bss, paint the stack, open the semihosting
 * handles, exit(main()). Every fault exits with status 128, so a broken model never hangs QEMU.
 * Build with --specs=rdimon.specs -nostartfiles -T link.ld: newlib's own rdimon crt0 places the stack from
 * SYS_HEAPINFO, which on these boards points outside RAM (lockup).
 * Measures: hs_insn_count() counts instructions (SysTick under `qemu-system-arm -icount shift=0`), and
 * hs_stack_used() finds how deep the stack went below a point since it was painted (with HS_STACK_PAINT, by
 * the caller: see harness.c). */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

extern uint32_t __etext, __data_start__, __data_end__, __bss_start__, __bss_end__;
extern uint32_t __stack_bottom__, _estack;
extern char __heap_start__, __heap_end__;
extern int main(void);
extern void initialise_monitor_handles(void);

void Reset_Handler(void);
void SysTick_Handler(void);
static void Fault_Handler(void) { exit(128); }   /* NMI, HardFault, MemManage, BusFault, UsageFault... */

__attribute__((section(".vectors"), used)) static void *const vectors[16] = {
    &_estack, Reset_Handler, Fault_Handler, Fault_Handler, Fault_Handler, Fault_Handler, Fault_Handler,
    0, 0, 0, 0, Fault_Handler, Fault_Handler, 0, Fault_Handler, SysTick_Handler};

#define HS_STACK_PAINT 0xC0FFEE00u   /* the same value in harness.c */

void _init(void) {}
void _fini(void) {}

/* newlib's malloc (stdio buffers) grows here only: a fixed HEAP_SIZE between .bss and the stack, so that it
 * never overlaps the painted stack. */
void *_sbrk(ptrdiff_t incr) {
    static char *brk = &__heap_start__;
    if (incr < 0 || incr > &__heap_end__ - brk) {
        errno = ENOMEM;
        return (void *)-1;
    }
    char *prev = brk;
    brk += incr;
    return prev;
}

static inline uint32_t *current_sp(void) {
    uint32_t *sp;
    __asm volatile("mov %0, sp" : "=r"(sp));
    return sp;
}

/* Paint the free stack, from its bottom to just below the caller's frame. */
__attribute__((always_inline)) static inline void paint_below_sp(void) {
    uint32_t *sp = current_sp();
    for (volatile uint32_t *p = &__stack_bottom__; p < sp - 2; p++) *p = HS_STACK_PAINT;
}

void Reset_Handler(void) {
#if defined(__ARM_FP)
    *(volatile uint32_t *)0xE000ED88 |= 0xFu << 20;   /* CPACR: full access to CP10/CP11 */
    __asm volatile("dsb\n\tisb");
#endif
    memcpy(&__data_start__, &__etext, (size_t)((char *)&__data_end__ - (char *)&__data_start__));
    memset(&__bss_start__, 0, (size_t)((char *)&__bss_end__ - (char *)&__bss_start__));
    paint_below_sp();
    initialise_monitor_handles();
    exit(main());
}

/* Bytes of stack used below `top` since it was painted: down to the deepest word that is no longer paint.
 * Returns -1 when even the bottom word was overwritten (the stack overflowed STACK_SIZE). */
int32_t hs_stack_used(const uint32_t *top) {
    const uint32_t *p = &__stack_bottom__;
    if (*p != HS_STACK_PAINT) return -1;
    while (p < top && *p == HS_STACK_PAINT) p++;
    return (int32_t)((const char *)top - (const char *)p);
}

/* Instruction counter. Under `qemu-system-arm -icount shift=0` each instruction takes 1 ns of virtual time
 * and SysTick (processor clock, 25 MHz on mps2-an385/an386/an500) ticks once per 40 instructions: counts are
 * instructions (not cycles), to within 40, and identical from run to run. */
static volatile uint32_t systick_wraps;
void SysTick_Handler(void) { systick_wraps++; }

void hs_insn_counter_start(void) {
    volatile uint32_t *csr = (uint32_t *)0xE000E010, *rvr = (uint32_t *)0xE000E014, *cvr = (uint32_t *)0xE000E018;
    *rvr = 0xFFFFFFu;
    *cvr = 0;
    *csr = 7;                       /* processor clock, interrupt on wrap, enable */
    while (*cvr == 0) {}            /* wait for the first reload, so the first reading is not a wrap */
    systick_wraps = 0;
}

uint64_t hs_insn_count(void) {       /* instructions since hs_insn_counter_start(), to within 40 */
    uint32_t w, v;
    do { w = systick_wraps; v = *(volatile uint32_t *)0xE000E018; } while (w != systick_wraps);
    return ((uint64_t)w * 0x1000000u + (0xFFFFFFu - v)) * 40u;
}
