/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer harness for lib/engine: load the input as a plain ONNX model (parse, plan, fuse, build every oneDNN
 * primitive); when it loads and its activations are small, run it once on zeros and, when its first input is
 * float32, once on a NaN input, which must be refused. A crash, a leak or a sanitizer report is a bug; an error is not. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/internal.h"
#include "veil/engine.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_MAX_RUN_SIZE (64u << 20)

static void check(int cond, const char *what)
{
    if (!cond) {
        fprintf(stderr, "fuzz_engine: %s (%s)\n", what, veil_last_error());
        abort();
    }
}

static void run_once(veil_engine *e)
{
    size_t ni = veil_engine_input_count(e), no = veil_engine_output_count(e);
    float **in = calloc(ni + 1, sizeof *in), **out = calloc(no + 1, sizeof *out);
    size_t *is = calloc(ni + 1, sizeof *is), *os = calloc(no + 1, sizeof *os);
    check(in && out && is && os, "out of memory");
    struct veil_engine_io io;
    for (size_t i = 0; i < ni; i++) {
        check(veil_engine_input(e, i, &io) == VEIL_OK, "input info");
        in[i] = calloc(io.size / 4 + 1, sizeof(float));
        is[i] = io.size;
    }
    for (size_t i = 0; i < no; i++) {
        check(veil_engine_output(e, i, &io) == VEIL_OK, "output info");
        out[i] = calloc(io.size / 4 + 1, sizeof(float));
        os[i] = io.size;
    }
    veil_status st = veil_engine_run(e, (const float *const *)in, is, ni, out, os, no);
    check(st == VEIL_OK || st == VEIL_ERR_ARG, "run of a loaded model");
    if (ni > 0 && is[0] >= sizeof(float) && veil_engine_input_dtype(e, 0) == 1 /* float32: ints have no NaN */) {
        in[0][0] = NAN;
        check(veil_engine_run(e, (const float *const *)in, is, ni, out, os, no) == VEIL_ERR_ARG, "NaN refused");
    }
    for (size_t i = 0; i < ni; i++)
        free(in[i]);
    for (size_t i = 0; i < no; i++)
        free(out[i]);
    free(in);
    free(out);
    free(is);
    free(os);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct veil_engine_options o = {.threads = 1};
    veil_engine *e = NULL;
    veil_status st = veil_engine_load_onnx(data, size, &o, &e);
    check((st == VEIL_OK) == (e != NULL), "output set exactly on success");
    if (e != NULL && e->arena.size <= FUZZ_MAX_RUN_SIZE)
        run_once(e);
    else if (e != NULL) /* never run, so never written: skip wiping (touching) gigabytes of untouched pages, which */
        e->arena.size = 0; /* only costs the fuzzer time and its RSS limit (a mutated Tile or Resize plans them) */
    veil_engine_free(e);
    return 0;
}
