/* SPDX-License-Identifier: Apache-2.0 */
/* The inference engine: runs a whole ONNX graph on oneDNN, inside the TEE, in memory it owns.
 *
 * Loading parses the graph with a bounded reader, refuses every operator and attribute it does not support
 * (naming it), infers shapes, fuses what oneDNN can fuse (Conv + BatchNormalization folded into the weights,
 * activations and residual Add as post-ops), plans the activation memory once, creates every oneDNN primitive
 * and reorders every weight into the layout its primitive prefers. Running copies the inputs in, executes the
 * planned primitives and copies the outputs out; nothing is allocated, and nothing is ever written to disk.
 *
 * Threads: Debian's oneDNN runs on OpenMP. The engine sets the OpenMP thread count of the calling thread to
 * options.threads while it loads and while it runs, and restores the previous value before returning.
 * An engine is not safe for concurrent veil_engine_run calls (activations live in one arena); use one engine
 * per thread, or serialise the calls. */
#ifndef VEIL_ENGINE_H
#define VEIL_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "veil/sealed.h"
#include "veil/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct veil_engine veil_engine;

#define VEIL_ENGINE_MAX_RANK 6u
VEIL_API size_t veil_engine_max_rank(void);

/* Compute precision (veil_engine_options.precision). FP32 is exact to float32 everywhere. BF16 runs convolutions,
 * Gemm and MatMul on bfloat16 operands (weights reordered to bf16 once at load, activations converted as they enter;
 * AMX or AVX512-BF16 kernels), accumulating and writing in float32; every other operator (softmax, normalisations,
 * reductions, element-wise) stays float32, and inputs and outputs are float32. Also float32: a convolution reading a
 * graph input, depthwise convolutions, a Gemm or MatMul writing a graph output, and any operator oneDNN has no bf16
 * kernel for. */
#define VEIL_ENGINE_FP32 0u
#define VEIL_ENGINE_BF16 1u

/* Options for loading. Zero-initialise; every zero field takes its default. */
struct veil_engine_options {
    unsigned threads;   /* OpenMP threads for load and run; default: every online CPU */
    uint64_t batch;     /* the size planned for a symbolic dimension 0 of the inputs; default 1 */
    int lock_memory;    /* nonzero: mlock weights and activations; fail with VEIL_ERR_NOMEM when refused */
    uint64_t symbolic_size; /* the size planned for a symbolic dim other than dim 0 (a sequence ...) that no
                             * veil_engine_shape names; default 0: such a dim must be named */
    uint32_t precision;     /* VEIL_ENGINE_FP32 (default) or VEIL_ENGINE_BF16: VEIL_ERR_UNSUPPORTED on a CPU
                             * without AVX512-BF16 or AMX (veil_engine_bf16_available) */
};

/* 1 when this CPU runs bf16 natively (AVX512-BF16 or AMX-BF16, as oneDNN detects it), else 0. */
VEIL_API int veil_engine_bf16_available(void);
/* Which QDQ convolutions and matrix products (MatMul, Gemm with constant weights) run on oneDNN's int8 kernels on
 * this CPU; each of them is exact, and every other one computes the same quantized arithmetic in float32
 * (docs/internals/engine.md, "int8"):
 *   VEIL_ENGINE_INT8_ALL   VNNI or AMX: int8 weights, u8 or s8 activations;
 *   VEIL_ENGINE_INT8_7BIT  AVX2, or AVX-512 without VNNI: u8 activations and weights within [-64, 64] (what
 *                          onnxruntime's quantize_static writes with reduce_range=True), where no int16 pair sum of
 *                          the kernels can saturate;
 *   VEIL_ENGINE_INT8_NONE  none. */
#define VEIL_ENGINE_INT8_NONE 0
#define VEIL_ENGINE_INT8_7BIT 1
#define VEIL_ENGINE_INT8_ALL 2
VEIL_API int veil_engine_int8_support(void);
/* 1 when some QDQ convolutions and products run on oneDNN's int8 kernels here (veil_engine_int8_support() is not
 * NONE), else 0. */
VEIL_API int veil_engine_int8_available(void);
/* The ISA oneDNN uses on this CPU, for logs: "avx512_core_amx", "avx512_core_bf16", "avx512_core", ... */
VEIL_API const char *veil_engine_cpu_isa(void);

/* The name and planned shape of one graph input or output. Pointers live as long as the engine. */
struct veil_engine_io {
    const char *name;
    uint32_t rank;
    int64_t dims[VEIL_ENGINE_MAX_RANK];
    size_t size;        /* bytes of float32 data, C order */
};

/* The concrete shape to plan for one graph input whose dims the graph leaves symbolic (batch, sequence ...), as
 * exporters write dynamic axes. Fixed dims must be given as they are. */
struct veil_engine_shape {
    const char *name;   /* the graph input's name */
    uint32_t rank;
    int64_t dims[VEIL_ENGINE_MAX_RANK];
};

/* Loads a model whose initializers are held apart from its graph, as veil_model_open hands them out:
 * graph is a (stripped) ONNX ModelProto, tensors its extracted initializers in graph order. The engine reads
 * graph and tensors during the call only and keeps no reference to them: weights are folded and reordered
 * straight from the views into buffers the engine owns, so the caller may free them as soon as it returns.
 * *out is owned by the caller (veil_engine_free) and is NULL on failure. Fails with VEIL_ERR_ONNX (malformed
 * graph: cycle, missing initializer, bad attribute ...), VEIL_ERR_UNSUPPORTED (an operator, attribute or
 * data type the engine does not run, named in veil_last_error), VEIL_ERR_LIMIT, VEIL_ERR_ARG, VEIL_ERR_NOMEM. */
VEIL_API VEIL_WUR veil_status veil_engine_load(const uint8_t *graph, size_t graph_size,
                                               const struct veil_tensor_view *tensors, size_t tensor_count,
                                               const struct veil_engine_options *options, veil_engine **out);

/* Same, from a plain ONNX model held in memory (initializers embedded). */
VEIL_API VEIL_WUR veil_status veil_engine_load_onnx(const uint8_t *onnx, size_t size,
                                                    const struct veil_engine_options *options,
                                                    veil_engine **out);

/* Same, from an opened sealed model; the model may be freed as soon as this returns. The model may lend its large
 * (>= 1 MiB) float32 MatMul/Gemm weights and Gather tables to the engine, which then runs on them in place instead of
 * holding a second copy: always (in the plain layout) when its tensors total 1 GiB or more; for a smaller model, those
 * whose layout oneDNN chose is the plain one anyway, when they are at least half of the model's bytes (a
 * transformer's). Not when options->lock_memory is set and the model was opened without it. An engine that borrows
 * keeps the model's plaintext alive (a reference) until veil_engine_free, and veil_model_free only drops the
 * caller's reference. */
VEIL_API VEIL_WUR veil_status veil_engine_load_model(const veil_model *model,
                                                     const struct veil_engine_options *options,
                                                     veil_engine **out);

/* The same three loads, planning for the given input shapes (shapes may be NULL when count is 0). An input not
 * named there takes options.batch for a symbolic dim 0, as above; any other symbolic dim must be given. Fails with
 * VEIL_ERR_ARG for a shape that names no input, has another rank, or contradicts a fixed dim. One engine is one
 * plan: a caller serving several shapes keeps one engine per shape (a bounded cache). */
VEIL_API VEIL_WUR veil_status veil_engine_load_shaped(const uint8_t *graph, size_t graph_size,
                                                      const struct veil_tensor_view *tensors, size_t tensor_count,
                                                      const struct veil_engine_options *options,
                                                      const struct veil_engine_shape *shapes, size_t shape_count,
                                                      veil_engine **out);
VEIL_API VEIL_WUR veil_status veil_engine_load_onnx_shaped(const uint8_t *onnx, size_t size,
                                                           const struct veil_engine_options *options,
                                                           const struct veil_engine_shape *shapes,
                                                           size_t shape_count, veil_engine **out);
/* Loads a plain ONNX model from its file, reading ONNX external data (weights in files beside the model, as
 * exporters write models past protobuf's 2 GiB limit) from the model's directory: never from outside it (no
 * absolute path, no '..', no symbolic link leading out). The external tensors are read into memory first, so a
 * large model briefly needs about twice its weights; a sealed model (veil_engine_load_model) does not. */
VEIL_API VEIL_WUR veil_status veil_engine_load_onnx_file(const char *path, const struct veil_engine_options *options,
                                                         const struct veil_engine_shape *shapes, size_t shape_count,
                                                         veil_engine **out);
VEIL_API VEIL_WUR veil_status veil_engine_load_model_shaped(const veil_model *model,
                                                            const struct veil_engine_options *options,
                                                            const struct veil_engine_shape *shapes,
                                                            size_t shape_count, veil_engine **out);

/* veil_engine_load_model_shaped for a caller that opened the model for this one engine (veil run, the Python
 * Engine.from_sealed): once the engine holds its own copy of a weight (packed, converted or folded) and no node left
 * to build reads it, the model's plaintext of that weight is wiped and its pages go back to the system (made
 * inaccessible), so the load's peak holds the weights about once instead of twice. Weights the engine runs on in
 * place stay until the model is freed. Fails with VEIL_ERR_ARG when the model is shared (an engine holds it).
 * Afterwards, and also after a failed load, the released tensors are gone: veil_model_tensor refuses them, the model
 * can plan no other engine, and the caller frees it. */
VEIL_API VEIL_WUR veil_status veil_engine_load_model_releasing(veil_model *model,
                                                               const struct veil_engine_options *options,
                                                               const struct veil_engine_shape *shapes,
                                                               size_t shape_count, veil_engine **out);

VEIL_API size_t veil_engine_input_count(const veil_engine *engine);
VEIL_API size_t veil_engine_output_count(const veil_engine *engine);
/* Fail with VEIL_ERR_ARG when index is out of range. */
VEIL_API VEIL_WUR veil_status veil_engine_input(const veil_engine *engine, size_t index,
                                                struct veil_engine_io *out);
VEIL_API VEIL_WUR veil_status veil_engine_output(const veil_engine *engine, size_t index,
                                                 struct veil_engine_io *out);

/* 1 when the graph leaves dim 0 of input index symbolic (the batch: options.batch was planned for it), else 0
 * (also for a bad index). An engine planned for another batch is another load with another options.batch. */
VEIL_API int veil_engine_input_batched(const veil_engine *engine, size_t index);

/* Bit i set when the graph declares dim i of input (output) index symbolic (dim 0: the batch; others: a sequence
 * ...), whatever was planned for it; 0 for a bad index or an output declared without a shape. */
VEIL_API uint32_t veil_engine_input_symbolic(const veil_engine *engine, size_t index);
VEIL_API uint32_t veil_engine_output_symbolic(const veil_engine *engine, size_t index);

/* The ONNX data type (TensorProto.DataType: 1 float32, 6 int32, 7 int64, 9 bool) of graph input index, which
 * veil_engine_run reads from the caller's buffer (its size counts elements of that type); 0 for a bad index.
 * Outputs are always float32. Integer inputs (token ids, masks, positions) must lie within +-2^24, and so must the
 * integers the graph computes from them: veil_engine_run fails with VEIL_ERR_ARG when one reaches 2^24. */
VEIL_API int32_t veil_engine_input_dtype(const veil_engine *engine, size_t index);

/* How many of the engine's convolutions and matrix products run on oneDNN's int8 kernels (an int8 QDQ model's,
 * where veil_engine_int8_support() takes them); 0 for a float model, or where every one computes in float32. */
VEIL_API size_t veil_engine_int8_nodes(const veil_engine *engine);

/* Runs the graph once. inputs[i] holds input_sizes[i] bytes of C-order data for graph input i (float32 unless
 * veil_engine_input_dtype says otherwise: pass other types through the pointer cast), which must equal its planned
 * size; outputs[i] receives output i (output_sizes[i] must equal its size). Fails with
 * VEIL_ERR_ARG on a wrong count or size, or when an input holds a NaN or an infinity; the outputs are then
 * zeroed. */
VEIL_API VEIL_WUR veil_status veil_engine_run(veil_engine *engine, const float *const *inputs,
                                              const size_t *input_sizes, size_t input_count,
                                              float *const *outputs, const size_t *output_sizes,
                                              size_t output_count);

/* Wipes the weights and activations and frees the engine. Accepts NULL. */
VEIL_API void veil_engine_free(veil_engine *engine);

#ifdef __cplusplus
}
#endif
#endif
