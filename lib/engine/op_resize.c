/* SPDX-License-Identifier: Apache-2.0 */
/* Resize (opset >= 11) of an [N, C, H, W] tensor over H and W, on oneDNN's resampling primitive: the forms where
 * oneDNN's coordinate rule is ONNX's, checked against onnxruntime (tests/python/test_onnx_conformance.py):
 *   - linear, coordinate_transformation_mode half_pixel, or pytorch_half_pixel (the same unless an output dim is
 *     1): F.interpolate(mode="bilinear", align_corners=False);
 *   - nearest at whole upscaling factors, with asymmetric + floor (F.interpolate(mode="nearest")) or half_pixel +
 *     round_prefer_floor / round_prefer_ceil (ONNX's default), which pick the same pixels there;
 *   and only where the output size is the input's times the scale exactly (or sizes are given): where ONNX floors a
 *   fractional product, its coordinates use the scale and oneDNN's the sizes' ratio.
 * Everything else (cubic, align_corners, tf_crop_and_resize, antialias, fractional nearest) is refused by name. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "engine/internal.h"
#include "onnx/onnx.h"

enum { RS_NEAREST, RS_LINEAR };
enum { CT_HALF_PIXEL, CT_PYTORCH_HALF_PIXEL, CT_ASYMMETRIC, CT_OTHER };
enum { NM_ROUND_PREFER_FLOOR, NM_ROUND_PREFER_CEIL, NM_FLOOR, NM_OTHER };

static int pick(const char *s, const char *const *names, int count, int other)
{
    for (int i = 0; i < count; i++)
        if (strcmp(s, names[i]) == 0)
            return i;
    return other;
}

VEIL_RESULT eng_resize_parse(struct eng_graph *g, struct eng_node *n)
{
    char label[160], mode[32], ct[32], nm[32], policy[32];
    eng_node_label(n, label, sizeof label);
    VEIL_ENSURE(g->opset >= 11, VEIL_ERR_UNSUPPORTED, "%s: Resize before opset 11 is not supported", label);
    VEIL_GUARD(eng_attr_string(n, "mode", mode, sizeof mode));
    VEIL_GUARD(eng_attr_string(n, "coordinate_transformation_mode", ct, sizeof ct));
    VEIL_GUARD(eng_attr_string(n, "nearest_mode", nm, sizeof nm));
    VEIL_GUARD(eng_attr_string(n, "keep_aspect_ratio_policy", policy, sizeof policy));
    int64_t antialias = 0, exclude = 0;
    float a = 0, extrapolation = 0;
    VEIL_GUARD(eng_attr_int(n, "antialias", 0, &antialias));
    VEIL_GUARD(eng_attr_int(n, "exclude_outside", 0, &exclude));
    VEIL_GUARD(eng_attr_float(n, "cubic_coeff_a", -0.75f, &a));
    VEIL_GUARD(eng_attr_float(n, "extrapolation_value", 0, &extrapolation));
    VEIL_ENSURE(eng_attr_get(n, "axes") == NULL, VEIL_ERR_UNSUPPORTED, "%s: the axes attribute is not supported",
                label);
    static const char *const modes[] = {"nearest", "linear"};
    static const char *const cts[] = {"half_pixel", "pytorch_half_pixel", "asymmetric"};
    static const char *const nms[] = {"round_prefer_floor", "round_prefer_ceil", "floor"};
    int m = mode[0] ? pick(mode, modes, 2, -1) : RS_NEAREST;
    VEIL_ENSURE(m >= 0, VEIL_ERR_UNSUPPORTED, "%s: mode '%s' is not supported (nearest and linear are)", label, mode);
    int c = ct[0] ? pick(ct, cts, 3, CT_OTHER) : CT_HALF_PIXEL;
    VEIL_ENSURE(c != CT_OTHER, VEIL_ERR_UNSUPPORTED, "%s: coordinate_transformation_mode '%s' is not supported "
                "(half_pixel, pytorch_half_pixel and asymmetric are)", label, ct);
    int r = nm[0] ? pick(nm, nms, 3, NM_OTHER) : NM_ROUND_PREFER_FLOOR;
    VEIL_ENSURE(m == RS_LINEAR || r != NM_OTHER, VEIL_ERR_UNSUPPORTED, "%s: nearest_mode '%s' is not supported",
                label, nm);
    VEIL_ENSURE(antialias == 0, VEIL_ERR_UNSUPPORTED, "%s: antialias is not supported", label);
    VEIL_ENSURE(!policy[0] || strcmp(policy, "stretch") == 0, VEIL_ERR_UNSUPPORTED, "%s: keep_aspect_ratio_policy "
                "'%s' is not supported (stretch is)", label, policy);
    VEIL_ENSURE(m == RS_LINEAR ? c != CT_ASYMMETRIC
                               : (c == CT_ASYMMETRIC) == (r == NM_FLOOR) && c != CT_PYTORCH_HALF_PIXEL,
                VEIL_ERR_UNSUPPORTED, "%s: %s with coordinate_transformation_mode '%s' and nearest_mode '%s' is not "
                "supported (linear with half_pixel or pytorch_half_pixel; nearest with asymmetric and floor, or "
                "half_pixel and a round_prefer mode)", label, modes[m], ct[0] ? ct : "half_pixel",
                nm[0] ? nm : "round_prefer_floor");
    n->fill_i = m;
    n->trans_a = c;
    return VEIL_RESULT_OK;
}

/* The output's H and W, from sizes or scales (floor(in x scale)); N and C must stay. */
VEIL_RESULT eng_resize_infer(struct eng_graph *g, struct eng_node *n)
{
    const struct eng_value *x = NULL;
    VEIL_GUARD(eng_input_act(g, n, 0, &x));
    char label[160];
    eng_node_label(n, label, sizeof label);
    VEIL_ENSURE(x->shape.rank == 4, VEIL_ERR_UNSUPPORTED, "%s: only 4-D (NCHW) inputs are supported", label);
    const struct eng_value *scales = n->input_count > 2 && n->inputs[2] >= 0 ? &g->values[n->inputs[2]] : NULL;
    const struct eng_value *sizes = n->input_count > 3 && n->inputs[3] >= 0 ? &g->values[n->inputs[3]] : NULL;
    if (scales != NULL && scales->size == 0)
        scales = NULL;
    VEIL_ENSURE((scales == NULL) != (sizes == NULL), VEIL_ERR_ONNX, "%s: exactly one of scales and sizes is needed",
                label);
    const struct eng_value *v = scales != NULL ? scales : sizes;
    VEIL_ENSURE(v->kind == VAL_CONST && v->shape.rank == 1 && v->shape.dims[0] == 4 &&
                v->dtype == (scales != NULL ? VEIL_ONNX_FLOAT : VEIL_ONNX_INT64), VEIL_ERR_UNSUPPORTED,
                "%s: scales (4 float32) or sizes (4 int64) must be a constant", label);
    struct eng_shape s = x->shape;
    for (uint32_t i = 0; i < 4; i++) {
        if (scales != NULL) {
            float f;
            memcpy(&f, v->data + 4 * i, 4);
            VEIL_ENSURE(f > 0 && f <= 1024, VEIL_ERR_ONNX, "%s: scale %g is out of range", label, (double)f);
            double want = (double)x->shape.dims[i] * (double)f;
            s.dims[i] = (int64_t)floor(want);
            VEIL_ENSURE(want == (double)s.dims[i], VEIL_ERR_UNSUPPORTED, "%s: scale %g of a dim of %" PRId64 " gives "
                        "no whole size; only scales that do are supported (or sizes)", label, (double)f,
                        x->shape.dims[i]);
        } else {
            memcpy(&s.dims[i], v->data + 8 * i, 8);
        }
        VEIL_ENSURE(s.dims[i] >= 1 && s.dims[i] <= 1024 * x->shape.dims[i], VEIL_ERR_ONNX, "%s: output dim %" PRId64
                    " is out of range", label, s.dims[i]);
    }
    VEIL_ENSURE(s.dims[0] == x->shape.dims[0] && s.dims[1] == x->shape.dims[1], VEIL_ERR_UNSUPPORTED, "%s: only H "
                "and W are resized", label);
    if (n->fill_i == RS_NEAREST)
        for (uint32_t i = 2; i < 4; i++)
            VEIL_ENSURE(s.dims[i] % x->shape.dims[i] == 0, VEIL_ERR_UNSUPPORTED, "%s: nearest resizing by a "
                        "fraction (%" PRId64 " to %" PRId64 ") is not supported; whole factors are", label,
                        x->shape.dims[i], s.dims[i]);
    if (n->trans_a == CT_PYTORCH_HALF_PIXEL)
        VEIL_ENSURE(s.dims[2] > 1 && s.dims[3] > 1, VEIL_ERR_UNSUPPORTED, "%s: pytorch_half_pixel to a size of 1 is "
                    "not supported", label);
    g->values[n->outputs[0]].shape = s;
    return VEIL_RESULT_OK;
}

VEIL_RESULT eng_resize_build(struct veil_engine *e, struct eng_node *n)
{
    int x = n->inputs[0];
    const struct eng_shape *ys = &e->g.values[n->out].shape;
    dnnl_memory_desc_t src = e->g.values[x].md, dst;
    dnnl_dims_t yd = {ys->dims[0], ys->dims[1], ys->dims[2], ys->dims[3]};
    ENG_GUARD_DNNL(dnnl_memory_desc_init_by_tag(&dst, 4, yd, dnnl_f32, dnnl_format_tag_any), n, "descriptor");
    dnnl_resampling_desc_t desc; /* the factors from the dims: out / in, which the scale is (eng_resize_infer) */
    ENG_GUARD_DNNL(dnnl_resampling_forward_desc_init(&desc, dnnl_forward_inference, n->fill_i == RS_LINEAR ?
                   dnnl_resampling_linear : dnnl_resampling_nearest, NULL, &src, &dst), n, "resampling setup");
    dnnl_primitive_attr_t attr = NULL;
    VEIL_GUARD(eng_attr_new(n, NULL, 0, &attr));
    dnnl_primitive_desc_t pd = NULL;
    dnnl_status_t st = dnnl_primitive_desc_create(&pd, &desc, attr, e->dnnl, NULL);
    dnnl_primitive_attr_destroy(attr);
    ENG_GUARD_DNNL(st, n, "resampling");
    struct eng_step *s = NULL;
    struct veil_result r = eng_step_new(e, n, pd, &s);
    if (veil_ok(r))
        r = eng_value_set_md(e, n->out, dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0));
    dnnl_primitive_desc_destroy(pd);
    VEIL_GUARD(r);
    size_t step = (size_t)(s - e->steps);
    VEIL_GUARD(eng_step_value(e, s, DNNL_ARG_SRC, x, 0));
    return eng_step_value(e, &e->steps[step], DNNL_ARG_DST, n->out, 1);
}
