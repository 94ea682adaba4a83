/* SPDX-License-Identifier: Apache-2.0 */
/* Resize (opset >= 11) of an [N, C, H, W] tensor over H and W.
 *
 * On oneDNN's resampling primitive, the forms where oneDNN's coordinate rule is ONNX's (checked against onnxruntime,
 * tests/python/test_onnx_conformance.py):
 *   - linear with half_pixel, or pytorch_half_pixel (the same unless an output dim is 1): F.interpolate(mode=
 *     "bilinear", align_corners=False);
 *   - nearest at whole upscaling factors, with asymmetric + floor (F.interpolate(mode="nearest")) or half_pixel +
 *     round_prefer_floor / round_prefer_ceil (ONNX's default), which pick the same pixels there;
 *   and only where the output size is the input's times the scale exactly (or sizes are given).
 * Everything else the parser takes runs on the engine's kernel (eng_run_resize), which computes ONNX's definition
 * itself: nearest (any rounding), linear and cubic (cubic_coeff_a, exclude_outside), with half_pixel,
 * pytorch_half_pixel, align_corners, asymmetric, tf_half_pixel_for_nn or half_pixel_symmetric coordinates and any
 * scale; the same kernel folds a Resize of a constant at load (position embeddings interpolated at export). Refused
 * by name: antialias, tf_crop_and_resize, keep_aspect_ratio_policy other than stretch, the axes attribute. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/internal.h"
#include "onnx/onnx.h"

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
    VEIL_GUARD(eng_attr_float(n, "extrapolation_value", 0, &extrapolation)); /* tf_crop_and_resize only */
    VEIL_ENSURE(eng_attr_get(n, "axes") == NULL, VEIL_ERR_UNSUPPORTED, "%s: the axes attribute is not supported",
                label);
    static const char *const modes[] = {"nearest", "linear", "cubic"};
    static const char *const cts[] = {"half_pixel", "pytorch_half_pixel", "asymmetric", "align_corners",
                                      "tf_half_pixel_for_nn", "half_pixel_symmetric"};
    static const char *const nms[] = {"round_prefer_floor", "round_prefer_ceil", "floor", "ceil"};
    int m = mode[0] ? pick(mode, modes, 3, -1) : RS_NEAREST;
    VEIL_ENSURE(m >= 0, VEIL_ERR_ONNX, "%s: mode '%s' is not nearest, linear or cubic", label, mode);
    int c = ct[0] ? pick(ct, cts, 6, -1) : CT_HALF_PIXEL;
    VEIL_ENSURE(c >= 0, VEIL_ERR_UNSUPPORTED, "%s: coordinate_transformation_mode '%s' is not supported", label, ct);
    int r = nm[0] ? pick(nm, nms, 4, -1) : NM_ROUND_PREFER_FLOOR;
    VEIL_ENSURE(r >= 0, VEIL_ERR_ONNX, "%s: nearest_mode '%s' is not a rounding ONNX defines", label, nm);
    VEIL_ENSURE(antialias == 0, VEIL_ERR_UNSUPPORTED, "%s: antialias is not supported", label);
    VEIL_ENSURE(!policy[0] || strcmp(policy, "stretch") == 0, VEIL_ERR_UNSUPPORTED, "%s: keep_aspect_ratio_policy "
                "'%s' is not supported (stretch is)", label, policy);
    VEIL_ENSURE(exclude == 0 || exclude == 1, VEIL_ERR_ONNX, "%s: exclude_outside must be 0 or 1", label);
    n->resize = (struct eng_resize){.mode = (enum eng_resize_mode)m, .ct = (enum eng_resize_ct)c,
                                    .nm = (enum eng_resize_nm)r, .cubic_a = a, .exclude_outside = (int)exclude};
    return VEIL_RESULT_OK;
}

/* Whether oneDNN's resampling computes this Resize as ONNX defines it (the forms in the header); else the kernel. */
static int onednn_fits(const struct eng_node *n, const struct eng_shape *x, const struct eng_shape *y)
{
    const struct eng_resize *p = &n->resize;
    for (int i = 0; i < 2; i++)
        if (p->scale[i] != (double)y->dims[2 + i] / (double)x->dims[2 + i])
            return 0; /* a scale that gives no whole size: ONNX's coordinates use it, oneDNN's the sizes' ratio */
    if (p->mode == RS_LINEAR)
        return p->ct == CT_HALF_PIXEL || (p->ct == CT_PYTORCH_HALF_PIXEL && y->dims[2] > 1 && y->dims[3] > 1);
    if (p->mode != RS_NEAREST || y->dims[2] % x->dims[2] != 0 || y->dims[3] % x->dims[3] != 0)
        return 0;
    return (p->ct == CT_ASYMMETRIC && p->nm == NM_FLOOR) ||
           (p->ct == CT_HALF_PIXEL && (p->nm == NM_ROUND_PREFER_FLOOR || p->nm == NM_ROUND_PREFER_CEIL));
}

/* The output's H and W, from sizes or scales (floor(in x scale)), and the scales the coordinates use; N and C must
 * stay. */
static VEIL_RESULT resize_shape(struct eng_graph *g, struct eng_node *n, const struct eng_shape *xs,
                                struct eng_shape *out)
{
    char label[160];
    eng_node_label(n, label, sizeof label);
    VEIL_ENSURE(xs->rank == 4, VEIL_ERR_UNSUPPORTED, "%s: only 4-D (NCHW) inputs are supported", label);
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
    struct eng_shape s = *xs;
    for (uint32_t i = 0; i < 4; i++) {
        double scale = 0;
        if (scales != NULL) {
            float f;
            memcpy(&f, v->data + 4 * i, 4);
            VEIL_ENSURE(f > 0 && f <= 1024, VEIL_ERR_ONNX, "%s: scale %g is out of range", label, (double)f);
            scale = f;
            s.dims[i] = (int64_t)floor((double)xs->dims[i] * scale);
            VEIL_ENSURE(n->resize.ct != CT_ALIGN_CORNERS || (double)s.dims[i] == (double)xs->dims[i] * scale,
                        VEIL_ERR_UNSUPPORTED, "%s: align_corners with a scale (%g) that gives no whole size is not "
                        "supported: ONNX's reference aligns to the unrounded length, onnxruntime and PyTorch to the "
                        "output's", label, (double)f);
        } else {
            memcpy(&s.dims[i], v->data + 8 * i, 8);
        }
        VEIL_ENSURE(s.dims[i] >= 1 && s.dims[i] <= 1024 * xs->dims[i], VEIL_ERR_ONNX, "%s: output dim %" PRId64
                    " is out of range", label, s.dims[i]);
        if (i >= 2)
            n->resize.scale[i - 2] = scales != NULL ? scale : (double)s.dims[i] / (double)xs->dims[i];
    }
    VEIL_ENSURE(s.dims[0] == xs->dims[0] && s.dims[1] == xs->dims[1], VEIL_ERR_UNSUPPORTED, "%s: only H "
                "and W are resized", label);
    *out = s;
    return VEIL_RESULT_OK;
}

VEIL_RESULT eng_resize_infer(struct eng_graph *g, struct eng_node *n)
{
    const struct eng_value *x = NULL;
    VEIL_GUARD(eng_input_act(g, n, 0, &x));
    return resize_shape(g, n, &x->shape, &g->values[n->outputs[0]].shape);
}

/* ---- the kernel ------------------------------------------------------------------------------------------ */

/* The input coordinate of output coordinate o along one axis (in: its input size, out: its output size). */
static double source_coord(const struct eng_resize *p, int i, int64_t o, int64_t in, int64_t out)
{
    double s = p->scale[i], x = (double)o;
    switch (p->ct) {
    case CT_PYTORCH_HALF_PIXEL: return out > 1 ? (x + 0.5) / s - 0.5 : -0.5;
    case CT_ASYMMETRIC: return x / s;
    case CT_ALIGN_CORNERS: return out > 1 ? x * (double)(in - 1) / (double)(out - 1) : 0.0;
    case CT_TF_HALF_PIXEL_FOR_NN: return (x + 0.5) / s;
    case CT_HALF_PIXEL_SYMMETRIC: {
        double adjustment = (double)out / (s * (double)in), center = (double)in / 2;
        return center * (1 - adjustment) + (x + 0.5) / s - 0.5;
    }
    case CT_HALF_PIXEL: break;
    }
    return (x + 0.5) / s - 0.5;
}

/* Up to 4 taps (indices into [0, in), weights) for one output coordinate, as ONNX's reference takes them: the
 * neighbours of the source coordinate, the input's edge repeated beyond it (or, with exclude_outside, left out and
 * the weights renormalised). */
static int taps(const struct eng_resize *p, int i, int64_t o, int64_t in, int64_t out, int64_t *idx, double *w)
{
    double x = source_coord(p, i, o, in, out), f = floor(x), r = x - f;
    int64_t base = (int64_t)f;
    if (p->mode == RS_NEAREST) {
        int up = r > 0.5 || (r == 0.5 && p->nm == NM_ROUND_PREFER_CEIL) || (r > 0 && p->nm == NM_CEIL);
        if (p->nm == NM_FLOOR || (r == 0.5 && p->nm == NM_ROUND_PREFER_FLOOR))
            up = 0;
        int64_t k = base + up;
        idx[0] = k < 0 ? 0 : k >= in ? in - 1 : k;
        w[0] = 1;
        return 1;
    }
    int count = p->mode == RS_LINEAR ? 2 : 4;
    double a = p->cubic_a, sum = 0;
    if (p->mode == RS_LINEAR) {
        w[0] = 1 - r;
        w[1] = r;
    } else { /* Keys' cubic convolution at distances 1 + r, r, 1 - r, 2 - r */
        double q = 1 - r;
        w[0] = ((a * (r + 1) - 5 * a) * (r + 1) + 8 * a) * (r + 1) - 4 * a;
        w[1] = ((a + 2) * r - (a + 3)) * r * r + 1;
        w[2] = ((a + 2) * q - (a + 3)) * q * q + 1;
        w[3] = ((a * (q + 1) - 5 * a) * (q + 1) + 8 * a) * (q + 1) - 4 * a;
        base -= 1;
    }
    for (int t = 0; t < count; t++) {
        int64_t k = base + t;
        if (p->exclude_outside && (k < 0 || k >= in))
            w[t] = 0;
        idx[t] = k < 0 ? 0 : k >= in ? in - 1 : k;
        sum += w[t];
    }
    for (int t = 0; p->exclude_outside && sum != 0 && t < count; t++)
        w[t] /= sum;
    return count;
}

void eng_run_resize(const struct eng_kernel *k, const float *in, float *out)
{
    int64_t planes = k->in.dims[0] * k->in.dims[1], ih = k->in.dims[2], iw = k->in.dims[3];
    int64_t oh = k->out.dims[2], ow = k->out.dims[3];
#pragma omp parallel for schedule(static) if (planes * oh >= 64)
    for (int64_t q = 0; q < planes * oh; q++) {
        int64_t plane = q / oh, y = q % oh, yi[4], xi[4];
        double yw[4], xw[4];
        int ny = taps(&k->resize, 0, y, ih, oh, yi, yw);
        const float *src = in + plane * ih * iw;
        float *dst = out + plane * oh * ow + y * ow;
        for (int64_t x = 0; x < ow; x++) {
            int nx = taps(&k->resize, 1, x, iw, ow, xi, xw);
            double v = 0;
            for (int a = 0; a < ny; a++)
                for (int b = 0; b < nx; b++)
                    v += yw[a] * xw[b] * (double)src[yi[a] * iw + xi[b]];
            dst[x] = (float)v;
        }
    }
}

VEIL_RESULT eng_fold_resize(struct eng_graph *g, struct eng_node *n, struct eng_value *out)
{
    const float *in = NULL;
    size_t count = 0;
    char label[160];
    const struct eng_value *x = &g->values[n->inputs[0]];
    VEIL_ENSURE(x->dtype == VEIL_ONNX_FLOAT, VEIL_ERR_UNSUPPORTED, "%s: only a float32 constant is resized at load",
                eng_node_label(n, label, sizeof label));
    VEIL_GUARD(eng_const_floats(g, n, 0, &in, &count));
    struct eng_kernel k = {.op = KOP_RESIZE, .inputs = 1, .in = x->shape};
    VEIL_GUARD(resize_shape(g, n, &k.in, &k.out));
    k.resize = n->resize;
    VEIL_GUARD(eng_fold_alloc(n, out, VEIL_ONNX_FLOAT, &k.out, ENG_MAX_FOLD_COUNT));
    eng_run_resize(&k, in, (float *)(void *)out->owned);
    return VEIL_RESULT_OK;
}

VEIL_RESULT eng_resize_build(struct veil_engine *e, struct eng_node *n)
{
    int x = n->inputs[0];
    const struct eng_shape *ys = &e->g.values[n->out].shape;
    if (!onednn_fits(n, &e->g.values[x].shape, ys)) {
        struct eng_kernel k = {.op = KOP_RESIZE, .inputs = 1, .in = e->g.values[x].shape, .out = *ys,
                               .resize = n->resize};
        return eng_step_kernel(e, n, &k, n->inputs, n->out);
    }
    dnnl_memory_desc_t src = e->g.values[x].md, dst;
    dnnl_dims_t yd = {ys->dims[0], ys->dims[1], ys->dims[2], ys->dims[3]};
    ENG_GUARD_DNNL(dnnl_memory_desc_init_by_tag(&dst, 4, yd, dnnl_f32, dnnl_format_tag_any), n, "descriptor");
    dnnl_resampling_desc_t desc; /* the factors from the dims: out / in, which the scale is (eng_resize_infer) */
    ENG_GUARD_DNNL(dnnl_resampling_forward_desc_init(&desc, dnnl_forward_inference, n->resize.mode == RS_LINEAR ?
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
