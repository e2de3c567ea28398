/* hasten's test harness for an exported model: runs hs_model_run() on each input of inputs.h and prints
 *   out <i> <hex of the output buffer's bytes (HS_MODEL_OUTPUT_SIZE hs_output_t values)>   one line per input
 * and, built for a Cortex-M board under QEMU (-DHS_ON_TARGET, with startup.c and link.ld):
 *   insn <i> <instructions of that hs_model_run call, to within 40>
 *   stack <deepest stack use of hs_model_run over all inputs, in bytes>
 * Exits 0; on target 3 when the model overflowed STACK_SIZE, 128 on a fault (startup.c).
 * Contract: model.h defines HS_MODEL_INPUT_SIZE, HS_MODEL_OUTPUT_SIZE, hs_output_t and declares hs_model_run();
 * inputs.h (written by toolchain.py) defines HS_N_INPUTS and hs_inputs[HS_N_INPUTS][HS_MODEL_INPUT_SIZE]. */
#include <stdint.h>
#include <stdio.h>

#include "model.h"

#ifdef HS_ON_TARGET
/* the test inputs are the harness's, not the model's: kept out of FLASH_SIZE (link.ld) */
#define HS_INPUTS_PLACE __attribute__((section(".hs_inputs")))
#endif
#include "inputs.h"

static hs_output_t output[HS_MODEL_OUTPUT_SIZE];

static void print_output(int i) {
    static const char digits[] = "0123456789abcdef";
    char buf[2 * 32 + 1];
    const uint8_t *bytes = (const uint8_t *)output;
    const int32_t size = (int32_t)sizeof(output);
    printf("out %d ", i);
    for (int32_t j = 0; j < size; j += 32) {
        int32_t n = size - j < 32 ? size - j : 32;
        for (int32_t k = 0; k < n; k++) {
            uint8_t b = bytes[j + k];
            buf[2 * k] = digits[b >> 4];
            buf[2 * k + 1] = digits[b & 15];
        }
        buf[2 * n] = 0;
        fputs(buf, stdout);
    }
    fputs("\n", stdout);
}

#ifdef HS_ON_TARGET
#define HS_STACK_PAINT 0xC0FFEE00u   /* the same value in startup.c */
extern uint32_t __stack_bottom__;
void hs_insn_counter_start(void);
uint64_t hs_insn_count(void);
int32_t hs_stack_used(const uint32_t *top);

int main(void) {
    int32_t stack = 0;
    hs_insn_counter_start();
    for (int i = 0; i < HS_N_INPUTS; i++) {
        /* paint the free stack here, inline: a function of its own would leave its frame unpainted */
        uint32_t *sp;
        __asm volatile("mov %0, sp" : "=r"(sp));
        for (volatile uint32_t *p = &__stack_bottom__; p < sp; p++) *p = HS_STACK_PAINT;
        uint64_t t0 = hs_insn_count();
        hs_model_run(hs_inputs[i], output);
        uint64_t t1 = hs_insn_count();
        int32_t used = hs_stack_used(sp);
        if (used < 0) {
            fprintf(stderr, "stack overflow: the model used more than STACK_SIZE on input %d\n", i);
            return 3;
        }
        if (used > stack) stack = used;
        print_output(i);
        printf("insn %d %llu\n", i, (unsigned long long)(t1 - t0));
    }
    printf("stack %ld\n", (long)stack);
    return 0;
}
#else
int main(void) {
    for (int i = 0; i < HS_N_INPUTS; i++) {
        hs_model_run(hs_inputs[i], output);
        print_output(i);
    }
    return 0;
}
#endif
