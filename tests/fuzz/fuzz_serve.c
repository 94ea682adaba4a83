/* SPDX-License-Identifier: Apache-2.0 */
/* lib/serve on arbitrary input: the KServe v2 request parser (and, when it accepts, the response builder on
 * synthetic outputs) and the usage-policy parser (and, when it accepts, admissions and the summary).
 *
 * Input: byte 0 picks the target. 'U': the rest is a usage policy. Anything else: a request, with the output
 * shaping picked by bits 0-1 of byte 0 and NaN outputs by bit 2; the bytes up to the first '\n' are the
 * Inference-Header-Content-Length value (an empty line: the header is absent, no '\n': the whole rest is the body
 * and the header is absent), the rest is the body.
 * Invariants: nothing crashes or leaks; a refused request is 400 or 413 with a non-empty printable message and
 * nothing to free; an accepted one has every input allocated at its size, 64-byte aligned, finite; a built
 * response's JSON header parses and the binary sizes it declares add up to the tail. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "serve/kserve.h"
#include "serve/usage.h"

static const struct veil_serve_io inputs[] = {{"x", 3, {-1, 2, 3}, 1}, {"y", 2, {-1, 4}, 1}};
static const struct veil_serve_io outputs[] = {{"probs", 2, {-1, 5}, 1}, {"feat", 2, {2, 2}, 1}};
static const struct veil_serve_model model = {"m", "1", inputs, outputs, 2, 2, 4, 0};
/* A transformer's: INT64 ids and a BOOL mask of [batch, sequence] (dynamic), INT32 positions [1, sequence]. */
static const struct veil_serve_io t_inputs[] = {{"ids", 2, {-1, -1}, 7}, {"mask", 2, {-1, -1}, 9},
                                                {"pos", 2, {1, -1}, 6}};
static const struct veil_serve_io t_outputs[] = {{"logits", 3, {-1, -1, 3}, 1}};
static const struct veil_serve_model t_model = {"t", NULL, t_inputs, t_outputs, 3, 1, 4, 16};
static const struct veil_serve_shaping shapings[4] = {
    {0, 0, -1}, {1, 2, -1}, {0, 3, 3}, {0, 0, 0},
};

static void check(int cond)
{
    if (!cond)
        abort();
}

/* Sum of parameters.binary_data_size over the response's outputs. */
static uint64_t declared_binary(const json_t *header)
{
    uint64_t sum = 0;
    const json_t *outs = json_object_get(header, "outputs");
    check(json_is_array(outs));
    for (size_t i = 0; i < json_array_size(outs); i++) {
        const json_t *size = json_object_get(json_object_get(json_array_get(outs, i), "parameters"),
                                             "binary_data_size");
        if (size != NULL)
            sum += (uint64_t)json_integer_value(size);
    }
    return sum;
}

static void respond(const struct veil_serve_request *req, const struct veil_serve_shaping *s, int nans)
{
    float *outs[2] = {NULL, NULL};
    for (size_t i = 0; i < 2; i++) {
        uint64_t count = 0;
        check(veil_ok(veil_serve_io_count(&outputs[i], req->batch, &count)));
        outs[i] = malloc((size_t)count * sizeof(float));
        check(outs[i] != NULL);
        for (uint64_t k = 0; k < count; k++) /* values from the inputs, so the fuzzer steers ranking and ties */
            outs[i][k] = req->inputs[k % 2][k % (req->input_sizes[k % 2] / sizeof(float))];
        if (nans)
            outs[i][0] = NAN, outs[i][count - 1] = -INFINITY;
    }
    struct veil_buf body;
    veil_buf_init(&body);
    size_t json_size = 0;
    struct veil_result r =
        veil_serve_response_build(&model, req, (const float *const *)outs, s, &body, &json_size);
    if (veil_ok(r)) {
        size_t header_size = json_size > 0 ? json_size : body.size;
        check(header_size <= body.size);
        json_t *header = json_loadb((const char *)body.data, header_size, 0, NULL);
        check(header != NULL);
        check(declared_binary(header) == (json_size > 0 ? body.size - json_size : 0));
        json_decref(header);
    } else {
        check(r.status == VEIL_ERR_ARG && nans); /* only a NaN or infinity in a JSON output is refused */
        check(body.size == 0);
    }
    veil_buf_cleanup(&body);
    free(outs[0]);
    free(outs[1]);
}

static void request(uint8_t mode, const uint8_t *data, size_t size)
{
    const uint8_t *nl = memchr(data, '\n', size);
    char ihcl[64];
    const char *header = NULL;
    if (nl != NULL) {
        size_t n = (size_t)(nl - data);
        if (n >= sizeof ihcl)
            return;
        memcpy(ihcl, data, n);
        ihcl[n] = '\0';
        if (memchr(ihcl, '\0', n) != NULL)
            return; /* an HTTP header value holds no NUL */
        header = n > 0 ? ihcl : NULL;
        size -= n + 1;
        data = nl + 1;
    }
    const struct veil_serve_shaping *s = &shapings[mode & 3];
    struct veil_serve_request req;
    char msg[VEIL_SERVE_MSG_SIZE];
    int status = 0;
    struct veil_result r = veil_serve_request_parse(&model, size > 0 ? data : NULL, size, header, s, &req, &status,
                                                    msg, sizeof msg);
    if (!veil_ok(r)) {
        check(status == 400 || status == 413);
        check(r.status == VEIL_ERR_ARG && msg[0] != '\0');
        for (const char *p = msg; *p != '\0'; p++)
            check(*p >= 0x20 && *p <= 0x7e);
        for (size_t i = 0; i < VEIL_SERVE_MAX_INPUTS; i++)
            check(req.inputs[i] == NULL);
        return;
    }
    check(status == 200 && msg[0] == '\0');
    check(req.batch >= 1 && req.batch <= model.max_batch && req.input_count == 2 && req.output_count >= 1);
    for (size_t i = 0; i < 2; i++) {
        uint64_t count = 0;
        check(veil_ok(veil_serve_io_count(&inputs[i], req.batch, &count)));
        check(req.inputs[i] != NULL && (uintptr_t)req.inputs[i] % 64 == 0);
        check(req.input_sizes[i] == count * sizeof(float));
        for (uint64_t k = 0; k < count; k++)
            check(isfinite(req.inputs[i][k]));
    }
    for (size_t j = 0; j < req.output_count; j++)
        check(req.outputs[j].top_k > 0 || !s->classification_only);
    respond(&req, s, mode & 4);
    veil_serve_request_cleanup(&req);
}

/* Typed inputs and dynamic dims: integers within +-2^24, bools 0 or 1, each input's shape within the bounds, and the
 * response built from the shapes a plan would have made. */
static void typed_request(const uint8_t *data, size_t size)
{
    struct veil_serve_request req;
    char msg[VEIL_SERVE_MSG_SIZE];
    int status = 0;
    struct veil_result r = veil_serve_request_parse(&t_model, size > 0 ? data : NULL, size, NULL, NULL, &req,
                                                    &status, msg, sizeof msg);
    if (!veil_ok(r)) {
        check(status == 400 || status == 413);
        for (size_t i = 0; i < VEIL_SERVE_MAX_INPUTS; i++)
            check(req.inputs[i] == NULL);
        return;
    }
    static const size_t width[] = {8, 1, 4};
    for (size_t i = 0; i < 3; i++) {
        const struct veil_serve_shape *sh = &req.input_shapes[i];
        check(sh->rank == 2 && sh->dims[1] >= 1 && sh->dims[1] <= 16);
        size_t count = (size_t)(sh->dims[0] * sh->dims[1]);
        check(req.input_sizes[i] == count * width[i]);
        for (size_t k = 0; k < count; k++) {
            int64_t v = i == 0 ? ((const int64_t *)(const void *)req.inputs[0])[k]
                               : i == 1 ? ((const uint8_t *)req.inputs[1])[k]
                                        : ((const int32_t *)(const void *)req.inputs[2])[k];
            check(i == 1 ? (v == 0 || v == 1) : (v >= -VEIL_SERVE_MAX_INT && v <= VEIL_SERVE_MAX_INT));
        }
    }
    float logits[4 * 16 * 3] = {0};
    const float *outs[] = {logits};
    req.output_shapes_set = 1;
    req.output_shapes[0] = (struct veil_serve_shape){3, {(int64_t)req.batch, req.input_shapes[0].dims[1], 3}};
    struct veil_buf body;
    veil_buf_init(&body);
    size_t json_size = 0;
    check(veil_ok(veil_serve_response_build(&t_model, &req, outs, NULL, &body, &json_size)));
    veil_buf_cleanup(&body);
    veil_serve_request_cleanup(&req);
}

static void policy(const uint8_t *data, size_t size)
{
    struct veil_usage_policy *p = NULL;
    if (!veil_ok(veil_usage_parse((const char *)data, size, &p))) {
        check(p == NULL);
        return;
    }
    static const char *const auth[] = {NULL, "Bearer alice-secret-key", "Bearer x", "Basic x"};
    for (uint64_t t = 0; t < 8; t++) {
        struct veil_usage_decision d;
        check(veil_ok(veil_usage_admit(p, auth[t % 4], t * 300, &d)));
        check(d.status == 0 || d.status == 401 || d.status == 429);
        check((d.status == 0) == (d.reason == NULL));
    }
    json_t *summary = NULL;
    check(veil_ok(veil_usage_summary_json(p, &summary)));
    json_decref(summary);
    veil_usage_free(p);
}

/* A usage count document: parsed strictly; what parses adds up without passing the caps. */
static void counts(const uint8_t *data, size_t size)
{
    json_t *c = NULL;
    if (!veil_ok(veil_usage_counts_parse((const char *)data, size, (int)(size & 1), &c))) {
        check(c == NULL);
        return;
    }
    json_t *acc = json_deep_copy(c);
    check(acc != NULL && veil_ok(veil_usage_counts_add(acc, c, 1)) && veil_ok(veil_usage_counts_add(acc, c, -1)));
    const char *name;
    json_t *v;
    json_object_foreach(acc, name, v) {
        check(json_integer_value(v) >= 0 && (uint64_t)json_integer_value(v) <= VEIL_USAGE_MAX_BUDGET);
    }
    json_decref(acc);
    json_decref(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    if (data[0] == 'U')
        policy(data + 1, size - 1);
    else if (data[0] == 'C')
        counts(data + 1, size - 1);
    else if (data[0] == 'T')
        typed_request(data + 1, size - 1);
    else
        request(data[0], data + 1, size - 1);
    return 0;
}
