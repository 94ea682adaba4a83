/* SPDX-License-Identifier: Apache-2.0 */
/* KServe v2 / Open Inference Protocol (REST) codec for veil-runtime: the inference request parser and the response
 * builder, free of any HTTP server, engine call or clock (shared/reference/serving.md §2.6, §3, §4, §7).
 *
 * The engine takes C-order inputs of the model's data types (FP32, and INT64, INT32 or BOOL for token ids and
 * masks) and produces float32 outputs, so outputs on the wire are FP32 (the classification extension returns BYTES).
 * Choices where the protocol leaves room, all documented here:
 *   - Datatype: an input must say the datatype the model declares, for JSON and binary data alike (400 "input 'x'
 *     takes FP32, not INT64"). Nothing is converted: Triton refuses a datatype the model does not declare, and a
 *     silent INT64 or FP64 conversion could change values. INT64 and INT32 data must lie within +-2^24 (the engine
 *     computes integers exactly up to there), BOOL data is true/false in JSON and bytes 0 or 1 in binary.
 *   - Dynamic dims: dim 0 of -1 is the batch (1..max_batch, the same for every batched input); another dim of -1 is
 *     dynamic (a sequence length: 1..max_dim, per input; the engine checks that the inputs agree when it plans).
 *   - Non-finite numbers: JSON has no NaN or Infinity (a body spelling them is refused, naming them), a JSON number
 *     outside the float32 range is refused, and binary FP32 data holding a NaN or an infinity is refused: the
 *     engine accepts only finite inputs.
 *   - Framing (§4.4): no Inference-Header-Content-Length → the whole body is JSON; a value larger than the body →
 *     400; 0 (Triton's optional "raw binary request", §4.6) → 400 unsupported.
 *   - Request parameters: "binary_data_output" (bool) is honoured for the outputs not listed in "outputs" (Triton's
 *     behaviour, §4.1); "triton_*" keys are refused as Triton refuses them; "sequence_id", "sequence_start" and
 *     "sequence_end" are refused (no model served here keeps sequence state, Triton refuses them for such models
 *     too); "veil_*" keys are reserved and refused; other keys ("priority", "timeout", "headers", custom ones) are
 *     ignored. Unknown members of the request, of an input and of an output are ignored (clients add "model_name").
 *   - Duplicate JSON object members are refused (jansson's JSON_REJECT_DUPLICATES): an ambiguous request is not
 *     guessed at.
 *   - Shared memory ("shared_memory_region") is unsupported: 400.
 *   - Outputs: a JSON output holding a NaN or an infinity cannot be written (JSON has no such numbers): building
 *     fails and the daemon answers 500 naming the output and suggesting binary_data; binary outputs carry any bits.
 *   - Classification (§7): top-min(K, n) per batch row, descending, ties in no defined order, a NaN ranks below
 *     every number; elements "%f:%d" ("0.912345:281"), datatype BYTES, shape [batch, K'] or [K'].
 *   - Output shaping (the owner's usage policy, lib/serve/usage.h): classification_only refuses raw outputs at
 *     parse time (400, §7 (b)); K is clamped to max_top_k and the response says so in its "parameters"
 *     ({"veil_top_k_clamped": 5}); round_decimals rounds every returned score (raw floats and classification
 *     values, "veil_round_decimals" in the response's "parameters").
 *
 * Thread safety: every function here is reentrant; a request and a model may be shared read-only between threads.
 * Messages returned to the client are printable ASCII and never hold tensor data (only names, sizes and shapes). */
#ifndef VEIL_SERVE_KSERVE_H
#define VEIL_SERVE_KSERVE_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "core/buf.h"
#include "core/limits.h"
#include "core/result.h"
#include "veil/engine.h"

/* Named limits for untrusted requests. */
#define VEIL_SERVE_MAX_INPUTS 64u                /* inputs of a served model and of one request */
#define VEIL_SERVE_MAX_OUTPUTS 64u               /* outputs of a served model and of one request */
#define VEIL_SERVE_MAX_ID_SIZE 256u              /* bytes of the request "id" */
#define VEIL_SERVE_MAX_NAME_SIZE 256u            /* bytes of a model, input or output name */
#define VEIL_SERVE_MAX_REQUEST_SIZE (1u << 28)   /* a whole body (JSON header and binary tail): 413 above */
#define VEIL_SERVE_MAX_JSON_SIZE (16u << 20)     /* the JSON header */
#define VEIL_SERVE_MAX_JSON_VALUES (1u << 21)    /* JSON values in the header (bounds jansson's memory, ~50 B each) */
#define VEIL_SERVE_MAX_DEPTH 100u                /* JSON nesting (Triton's cap) */
#define VEIL_SERVE_MAX_TOP_K 1000000u            /* the largest classification K (Triton's element cap) */
#define VEIL_SERVE_MAX_ROUND_DECIMALS 9
#define VEIL_SERVE_MSG_SIZE 256u                 /* a message buffer large enough for every message */
#define VEIL_SERVE_MAX_DIM (1u << 20)            /* the largest dynamic dim a model may declare */
#define VEIL_SERVE_MAX_INT (1 << 24)             /* INT64 / INT32 input values lie within +-this */

/* One model input or output. dims[0] == -1 marks the batch dimension (1..max_batch), another dim of -1 a dynamic
 * one (1..max_dim); every other dimension is fixed and positive. */
struct veil_serve_io {
    const char *name;
    uint32_t rank;
    int64_t dims[VEIL_ENGINE_MAX_RANK];
    int32_t dtype;              /* inputs: the ONNX data type taken (0 or 1 FP32, 6 INT32, 7 INT64, 9 BOOL); outputs:
                                   FP32 (0 or 1) */
};

/* A concrete shape. */
struct veil_serve_shape {
    uint32_t rank;
    int64_t dims[VEIL_ENGINE_MAX_RANK];
};

/* A served model, as the daemon describes it (names borrowed; they must outlive every call that takes it). */
struct veil_serve_model {
    const char *name;
    const char *version;        /* NULL: not versioned ("model_version" and "versions" left out) */
    const struct veil_serve_io *inputs, *outputs;
    size_t input_count, output_count;
    uint64_t max_batch;         /* the largest batch when some input has a batch dimension (1..VEIL_ENGINE_MAX_BATCH) */
    uint64_t max_dim;           /* the largest dynamic dim when some io has one (1..VEIL_SERVE_MAX_DIM) */
};

/* Output shaping from the owner's usage policy. All zero but round_decimals = -1 means "none"; a NULL pointer
 * wherever one is taken means the same. */
struct veil_serve_shaping {
    int classification_only;    /* nonzero: raw outputs are refused; only classification (top-k) is returned */
    uint32_t max_top_k;         /* 0: no clamp; otherwise K is clamped to it */
    int round_decimals;         /* -1: none; 0..VEIL_SERVE_MAX_ROUND_DECIMALS: scores rounded to that many decimals */
};

/* One requested output. */
struct veil_serve_output_req {
    uint32_t index;             /* the model output */
    int binary;                 /* 1: in the binary tail; 0: JSON "data" */
    uint32_t top_k;             /* 0: the raw FP32 tensor; otherwise classification with this K (after the clamp) */
};

/* A parsed inference request. Caller-owned: veil_serve_request_parse initialises it, veil_serve_request_cleanup
 * frees it. */
struct veil_serve_request {
    char id[VEIL_SERVE_MAX_ID_SIZE + 1];
    int has_id;                                 /* "id" was given (it is echoed, even when empty) */
    uint64_t batch;                             /* dim 0 of the batched inputs; 1 when no input has a batch dim */
    size_t input_count;                         /* == model->input_count */
    float *inputs[VEIL_SERVE_MAX_INPUTS];       /* model input order, 64-byte aligned (aligned_alloc), owned; of
                                                   the input's data type (the engine's pointer cast) */
    size_t input_sizes[VEIL_SERVE_MAX_INPUTS];  /* bytes of data in inputs[i] */
    struct veil_serve_shape input_shapes[VEIL_SERVE_MAX_INPUTS]; /* as the client sent them */
    int output_shapes_set;                      /* the caller filled output_shapes (the plan that ran) */
    struct veil_serve_shape output_shapes[VEIL_SERVE_MAX_OUTPUTS]; /* model output order */
    size_t output_count;
    struct veil_serve_output_req outputs[VEIL_SERVE_MAX_OUTPUTS]; /* the response's order */
    uint32_t top_k_clamped;                     /* nonzero: some K was clamped to this value by the policy */
};

/* Checks a model description: names present, unique and at most VEIL_SERVE_MAX_NAME_SIZE bytes, 1..MAX inputs
 * and outputs, rank <= VEIL_ENGINE_MAX_RANK, dims positive except a batch dim 0 of -1, max_batch in
 * 1..VEIL_ENGINE_MAX_BATCH when any batch dim exists, element counts without overflow. VEIL_ERR_ARG otherwise. */
VEIL_RESULT veil_serve_model_check(const struct veil_serve_model *model);

/* Elements of io for a given batch (the batch replaces a -1 dim 0). VEIL_ERR_LIMIT on overflow, VEIL_ERR_ARG for an
 * io with a dynamic dim. */
VEIL_RESULT veil_serve_io_count(const struct veil_serve_io *io, uint64_t batch, uint64_t *out);

/* Parses one POST .../infer body. ihcl is the Inference-Header-Content-Length header value, or NULL when absent.
 * shaping may be NULL.
 * On success req holds the inputs (model order, ready for veil_engine_run: the caller passes
 * (const float *const *)req->inputs and req->input_sizes) and the requested outputs, *http_status is 200 and msg
 * is "". On failure req is cleaned up (nothing to free), *http_status is 400 (bad request), 413 (body over
 * VEIL_SERVE_MAX_REQUEST_SIZE) or 500 (out of memory, model misdescribed), and msg (at most msg_size bytes,
 * NUL-terminated, printable ASCII) says why for the client ({"error": msg}). The result's status is VEIL_ERR_ARG
 * for a refused request, VEIL_ERR_NOMEM or VEIL_ERR_INTERNAL otherwise. */
VEIL_RESULT veil_serve_request_parse(const struct veil_serve_model *model, const uint8_t *body, size_t body_size,
                                     const char *ihcl, const struct veil_serve_shaping *shaping,
                                     struct veil_serve_request *req, int *http_status, char *msg, size_t msg_size);

/* Frees the input buffers and zeroes req. Accepts a zeroed or already cleaned-up request. */
void veil_serve_request_cleanup(struct veil_serve_request *req);

/* Builds the response body, appended to out (normally empty): the JSON header
 * {"model_name", "model_version"?, "id"?, "parameters"?, "outputs": [...]} followed by the binary tail in
 * "outputs" order. outputs[i] holds model output i for req->batch (veil_serve_io_count floats); entries of outputs
 * not requested may be NULL. *json_size is the Inference-Header-Content-Length to send, or 0 when no output is
 * binary (the whole body is then JSON: Content-Type application/json). The outputs' shapes are req->output_shapes
 * when req->output_shapes_set (a model with dynamic dims: what the engine that ran made), else the model's with the
 * batch. shaping (may be NULL) must be the one given to the parser. On failure out is emptied and the daemon answers 500 with veil_last_error(), which is client-safe:
 * VEIL_ERR_ARG when a JSON output holds a NaN or an infinity, VEIL_ERR_NOMEM. */
VEIL_RESULT veil_serve_response_build(const struct veil_serve_model *model, const struct veil_serve_request *req,
                                      const float *const *outputs, const struct veil_serve_shaping *shaping,
                                      struct veil_buf *out, size_t *json_size);

/* The model metadata object of GET /v2/models/<m> (§2.5): {"name", "versions": [version], "platform": "veil_onnx",
 * "inputs": [...], "outputs": [...]} with the batch and dynamic dims as -1 and each input's datatype (outputs FP32). The members of extra (may be NULL;
 * e.g. {"parameters": {...}} carrying veil_usage_summary_json) are added; a member clashing with one of those above
 * fails with VEIL_ERR_ARG. Caller owns *out (json_decref). */
VEIL_RESULT veil_serve_model_metadata_json(const struct veil_serve_model *model, const json_t *extra, json_t **out);

#endif
