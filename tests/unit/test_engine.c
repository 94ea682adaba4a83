/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for lib/engine on small hand-built ONNX graphs: operators against naive C references, fusion
 * (Conv + BatchNormalization + Relu, in-place residual sum), and one expected error per documented failure. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/buf.h"
#include "engine/internal.h"
#include "onnx/pb.h"
#include "veil/engine.h"
#include "veil/sealed.h"

/* ---- a tiny ONNX builder --------------------------------------------------------------------------------- */

static void ok(struct veil_result r)
{
    if (r.status != VEIL_OK)
        fail_msg("unexpected failure %d: %s", (int)r.status, veil_last_error());
}

static void pv(struct veil_buf *b, uint32_t number, uint64_t v)
{
    ok(veil_pb_append_varint_field(b, number, v));
}

static void ps(struct veil_buf *b, uint32_t number, const char *s)
{
    ok(veil_pb_append_len(b, number, s, strlen(s)));
}

static void pm(struct veil_buf *b, uint32_t number, struct veil_buf *m)
{
    ok(veil_pb_append_len(b, number, m->data, m->size));
    veil_buf_cleanup(m);
}

struct attr {
    const char *name;
    int kind;            /* 'i' int, 'f' float, 'I' ints */
    int64_t i;
    float f;
    int64_t ints[4];
    uint32_t count;
};

#define A_INT(n, v) {(n), 'i', (v), 0, {0}, 0}
#define A_FLOAT(n, v) {(n), 'f', 0, (v), {0}, 0}
#define A_INTS2(n, a, b) {(n), 'I', 0, 0, {(a), (b)}, 2}
#define A_INTS4(n, a, b, c, d) {(n), 'I', 0, 0, {(a), (b), (c), (d)}, 4}

static void add_attr(struct veil_buf *node, const struct attr *a)
{
    struct veil_buf m = {0};
    ps(&m, 1, a->name);
    if (a->kind == 'i') {
        pv(&m, 20, 2);
        pv(&m, 3, (uint64_t)a->i);
    } else if (a->kind == 'f') {
        uint32_t bits;
        memcpy(&bits, &a->f, 4);
        pv(&m, 20, 1);
        ok(veil_pb_append_key(&m, 2, VEIL_PB_I32));
        ok(veil_buf_append_u32le(&m, bits));
    } else {
        pv(&m, 20, 7);
        for (uint32_t k = 0; k < a->count; k++)
            pv(&m, 8, (uint64_t)a->ints[k]);
    }
    pm(node, 5, &m);
}

/* ins is a comma-free list terminated by NULL. */
static void node(struct veil_buf *g, const char *op, const char *const *ins, const char *out,
                 const struct attr *attrs, size_t n_attrs)
{
    struct veil_buf m = {0};
    for (size_t i = 0; ins[i] != NULL; i++)
        ps(&m, 1, ins[i]);
    ps(&m, 2, out);
    ps(&m, 3, out);
    ps(&m, 4, op);
    for (size_t i = 0; i < n_attrs; i++)
        add_attr(&m, &attrs[i]);
    pm(g, 1, &m);
}

static void initializer(struct veil_buf *g, const char *name, const int64_t *dims, uint32_t rank, const float *data)
{
    struct veil_buf m = {0};
    size_t n = 1;
    for (uint32_t i = 0; i < rank; i++) {
        pv(&m, 1, (uint64_t)dims[i]);
        n *= (size_t)dims[i];
    }
    pv(&m, 2, 1);
    ps(&m, 8, name);
    ok(veil_pb_append_len(&m, 9, data, n * sizeof(float)));
    pm(g, 5, &m);
}

static void value_info_typed(struct veil_buf *g, uint32_t field, const char *name, const int64_t *dims,
                             uint32_t rank, uint64_t dtype)
{
    struct veil_buf shape = {0}, tensor = {0}, type = {0}, vi = {0};
    for (uint32_t i = 0; i < rank; i++) {
        struct veil_buf d = {0};
        pv(&d, 1, (uint64_t)dims[i]);
        pm(&shape, 1, &d);
    }
    pv(&tensor, 1, dtype);
    pm(&tensor, 2, &shape);
    pm(&type, 1, &tensor);
    ps(&vi, 1, name);
    pm(&vi, 2, &type);
    pm(g, field, &vi);
}

static void value_info(struct veil_buf *g, uint32_t field, const char *name, const int64_t *dims, uint32_t rank)
{
    value_info_typed(g, field, name, dims, rank, 1);
}

static void model(struct veil_buf *g, struct veil_buf *out)
{
    struct veil_buf opset = {0};
    *out = (struct veil_buf){0};
    pv(out, 1, 8);
    ps(&opset, 1, "");
    pv(&opset, 2, 17);
    pm(out, 8, &opset);
    pm(out, 7, g);
}

static void fill(float *p, size_t n, uint32_t seed)
{
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        p[i] = (float)((double)(seed >> 8) / (double)(1u << 24) * 2.0 - 1.0);
    }
}

/* ---- references ------------------------------------------------------------------------------------------ */

struct conv_ref {
    int64_t n, c, h, w, m, kh, kw, group, sh, sw, dh, dw, pt, pl, pb, pr;
};

static int64_t out_dim(int64_t in, int64_t k, int64_t s, int64_t d, int64_t p0, int64_t p1)
{
    return (in + p0 + p1 - ((k - 1) * d + 1)) / s + 1;
}

static void conv_reference(const struct conv_ref *p, const float *x, const float *w, const float *b, float *y)
{
    int64_t oh = out_dim(p->h, p->kh, p->sh, p->dh, p->pt, p->pb), ow = out_dim(p->w, p->kw, p->sw, p->dw, p->pl, p->pr);
    int64_t cg = p->c / p->group, mg = p->m / p->group;
    for (int64_t n = 0; n < p->n; n++)
        for (int64_t m = 0; m < p->m; m++)
            for (int64_t i = 0; i < oh; i++)
                for (int64_t j = 0; j < ow; j++) {
                    double acc = b != NULL ? b[m] : 0;
                    int64_t g = m / mg;
                    for (int64_t c = 0; c < cg; c++)
                        for (int64_t u = 0; u < p->kh; u++)
                            for (int64_t v = 0; v < p->kw; v++) {
                                int64_t yy = i * p->sh - p->pt + u * p->dh, xx = j * p->sw - p->pl + v * p->dw;
                                if (yy < 0 || yy >= p->h || xx < 0 || xx >= p->w)
                                    continue;
                                acc += (double)x[((n * p->c + g * cg + c) * p->h + yy) * p->w + xx] *
                                       (double)w[((m * cg + c) * p->kh + u) * p->kw + v];
                            }
                    y[((n * p->m + m) * oh + i) * ow + j] = (float)acc;
                }
}

static void assert_close(const float *a, const float *b, size_t n, double tol)
{
    for (size_t i = 0; i < n; i++)
        if (fabs((double)a[i] - (double)b[i]) > tol * (1 + fabs((double)b[i])))
            fail_msg("element %zu: %.7g vs reference %.7g", i, (double)a[i], (double)b[i]);
}

static veil_engine *load(struct veil_buf *m)
{
    veil_engine *e = NULL;
    struct veil_engine_options o = {.threads = 2};
    veil_status st = veil_engine_load_onnx(m->data, m->size, &o, &e);
    if (st != VEIL_OK)
        fail_msg("load failed %d: %s", (int)st, veil_last_error());
    veil_buf_cleanup(m);
    return e;
}

static void run1(veil_engine *e, const float *x, size_t x_count, float *y, size_t y_count)
{
    const float *const in[1] = {x};
    float *const out[1] = {y};
    size_t is = x_count * sizeof(float), os = y_count * sizeof(float);
    veil_status st = veil_engine_run(e, in, &is, 1, out, &os, 1);
    if (st != VEIL_OK)
        fail_msg("run failed %d: %s", (int)st, veil_last_error());
}

/* A model with one Conv of parameters p; conv_attrs are the node's attributes. */
static void conv_model(const struct conv_ref *p, const float *w, const float *b, struct veil_buf *out)
{
    struct veil_buf g = {0};
    int64_t xd[4] = {p->n, p->c, p->h, p->w}, wd[4] = {p->m, p->c / p->group, p->kh, p->kw}, bd[1] = {p->m};
    int64_t yd[4] = {p->n, p->m, out_dim(p->h, p->kh, p->sh, p->dh, p->pt, p->pb),
                     out_dim(p->w, p->kw, p->sw, p->dw, p->pl, p->pr)};
    const struct attr attrs[] = {A_INTS2("strides", p->sh, p->sw), A_INTS2("dilations", p->dh, p->dw),
                                 A_INTS4("pads", p->pt, p->pl, p->pb, p->pr), A_INT("group", p->group),
                                 A_INTS2("kernel_shape", p->kh, p->kw)};
    const char *ins[] = {"x", "w", "b", NULL};
    node(&g, "Conv", ins, "y", attrs, 5);
    initializer(&g, "w", wd, 4, w);
    initializer(&g, "b", bd, 1, b);
    value_info(&g, 11, "x", xd, 4);
    value_info(&g, 12, "y", yd, 4);
    model(&g, out);
}

static void check_conv(const struct conv_ref *p)
{
    size_t xn = (size_t)(p->n * p->c * p->h * p->w), wn = (size_t)(p->m * (p->c / p->group) * p->kh * p->kw);
    size_t yn = (size_t)(p->n * p->m * out_dim(p->h, p->kh, p->sh, p->dh, p->pt, p->pb) *
                         out_dim(p->w, p->kw, p->sw, p->dw, p->pl, p->pr));
    float *x = malloc(xn * 4), *w = malloc(wn * 4), *b = malloc((size_t)p->m * 4), *y = malloc(yn * 4),
          *r = malloc(yn * 4);
    assert_non_null(x && w && b && y && r);
    fill(x, xn, 1);
    fill(w, wn, 2);
    fill(b, (size_t)p->m, 3);
    struct veil_buf m;
    conv_model(p, w, b, &m);
    veil_engine *e = load(&m);
    run1(e, x, xn, y, yn);
    conv_reference(p, x, w, b, r);
    assert_close(y, r, yn, 1e-5);
    veil_engine_free(e);
    free(x);
    free(w);
    free(b);
    free(y);
    free(r);
}

/* ---- operator tests -------------------------------------------------------------------------------------- */

static void test_conv_strided_padded_dilated(void **state)
{
    (void)state;
    struct conv_ref p = {.n = 2, .c = 3, .h = 7, .w = 6, .m = 4, .kh = 3, .kw = 3, .group = 1, .sh = 2, .sw = 1,
                         .dh = 1, .dw = 2, .pt = 1, .pl = 0, .pb = 1, .pr = 2};
    check_conv(&p);
}

static void test_conv_grouped_and_depthwise(void **state)
{
    (void)state;
    struct conv_ref grouped = {.n = 1, .c = 4, .h = 5, .w = 5, .m = 6, .kh = 3, .kw = 3, .group = 2, .sh = 1,
                               .sw = 1, .dh = 1, .dw = 1, .pt = 1, .pl = 1, .pb = 1, .pr = 1};
    check_conv(&grouped);
    struct conv_ref dw = {.n = 1, .c = 8, .h = 9, .w = 9, .m = 8, .kh = 3, .kw = 3, .group = 8, .sh = 2, .sw = 2,
                          .dh = 1, .dw = 1, .pt = 1, .pl = 1, .pb = 1, .pr = 1};
    check_conv(&dw);
}

/* x -> Conv(a) -> [Conv -> BN -> Relu] -> Add(., a) -> Relu: BN folded, relu and the residual add fused. */
static void test_conv_bn_relu_residual(void **state)
{
    (void)state;
    enum { C = 4, H = 5, N = C * H * H };
    struct conv_ref p = {.n = 1, .c = C, .h = H, .w = H, .m = C, .kh = 3, .kw = 3, .group = 1, .sh = 1, .sw = 1,
                         .dh = 1, .dw = 1, .pt = 1, .pl = 1, .pb = 1, .pr = 1};
    float x[N], w1[C * C * 9], w2[C * C * 9], b[C], gam[C], bet[C], mean[C], var[C], a[N], t[N], y[N], ref[N];
    fill(x, N, 1);
    fill(w1, C * C * 9, 2);
    fill(w2, C * C * 9, 3);
    fill(b, C, 4);
    fill(gam, C, 5);
    fill(bet, C, 6);
    fill(mean, C, 7);
    fill(var, C, 8);
    for (int i = 0; i < C; i++)
        var[i] = var[i] * var[i] + 0.5f;
    struct veil_buf g = {0}, m;
    int64_t xd[4] = {1, C, H, H}, wd[4] = {C, C, 3, 3}, cd[1] = {C};
    const struct attr ca[] = {A_INTS4("pads", 1, 1, 1, 1), A_INTS2("kernel_shape", 3, 3)};
    const struct attr bn[] = {A_FLOAT("epsilon", 1e-3f), A_FLOAT("momentum", 0.9f)};
    node(&g, "Conv", (const char *[]){"x", "w1", "b", NULL}, "a", ca, 2);
    node(&g, "Conv", (const char *[]){"a", "w2", NULL}, "c", ca, 2);
    node(&g, "BatchNormalization", (const char *[]){"c", "gam", "bet", "mean", "var", NULL}, "d", bn, 2);
    node(&g, "Relu", (const char *[]){"d", NULL}, "e", NULL, 0);
    node(&g, "Add", (const char *[]){"e", "a", NULL}, "f", NULL, 0);
    node(&g, "Relu", (const char *[]){"f", NULL}, "y", NULL, 0);
    initializer(&g, "w1", wd, 4, w1);
    initializer(&g, "w2", wd, 4, w2);
    initializer(&g, "b", cd, 1, b);
    initializer(&g, "gam", cd, 1, gam);
    initializer(&g, "bet", cd, 1, bet);
    initializer(&g, "mean", cd, 1, mean);
    initializer(&g, "var", cd, 1, var);
    value_info(&g, 11, "x", xd, 4);
    value_info(&g, 12, "y", xd, 4);
    model(&g, &m);
    veil_engine *e = load(&m);
    run1(e, x, N, y, N);
    conv_reference(&p, x, w1, b, a);
    conv_reference(&p, a, w2, NULL, t);
    for (int i = 0; i < N; i++) {
        int c = (i / (H * H)) % C;
        double d = ((double)t[i] - mean[c]) / sqrt((double)var[c] + 1e-3) * gam[c] + bet[c];
        d = d > 0 ? d : 0;
        d += a[i];
        ref[i] = (float)(d > 0 ? d : 0);
    }
    assert_close(y, ref, N, 1e-5);
    veil_engine_free(e);
}

/* GlobalAveragePool -> Flatten -> Gemm(alpha, beta, transB) -> Softmax. */
static void test_pool_flatten_gemm_softmax(void **state)
{
    (void)state;
    enum { C = 5, H = 3, K = 4 };
    float x[2 * C * H * H], w[K * C], c[K], y[2 * K], ref[2 * K];
    fill(x, sizeof x / 4, 1);
    fill(w, K * C, 2);
    fill(c, K, 3);
    struct veil_buf g = {0}, m;
    int64_t xd[4] = {2, C, H, H}, wd[2] = {K, C}, cd[1] = {K}, yd[2] = {2, K};
    const struct attr ga[] = {A_FLOAT("alpha", 0.5f), A_FLOAT("beta", 2.0f), A_INT("transB", 1)};
    const struct attr sa[] = {A_INT("axis", 1)};
    node(&g, "GlobalAveragePool", (const char *[]){"x", NULL}, "p", NULL, 0);
    node(&g, "Flatten", (const char *[]){"p", NULL}, "f", sa, 1);
    node(&g, "Gemm", (const char *[]){"f", "w", "c", NULL}, "l", ga, 3);
    node(&g, "Softmax", (const char *[]){"l", NULL}, "y", sa, 1);
    initializer(&g, "w", wd, 2, w);
    initializer(&g, "c", cd, 1, c);
    value_info(&g, 11, "x", xd, 4);
    value_info(&g, 12, "y", yd, 2);
    model(&g, &m);
    veil_engine *e = load(&m);
    run1(e, x, sizeof x / 4, y, 2 * K);
    for (int n = 0; n < 2; n++) {
        double l[K], mx = -1e30, sum = 0;
        for (int k = 0; k < K; k++) {
            l[k] = 2.0 * c[k];
            for (int ch = 0; ch < C; ch++) {
                double avg = 0;
                for (int i = 0; i < H * H; i++)
                    avg += x[(n * C + ch) * H * H + i];
                l[k] += 0.5 * w[k * C + ch] * avg / (H * H);
            }
            mx = l[k] > mx ? l[k] : mx;
        }
        for (int k = 0; k < K; k++)
            sum += exp(l[k] - mx);
        for (int k = 0; k < K; k++)
            ref[n * K + k] = (float)(exp(l[k] - mx) / sum);
    }
    assert_close(y, ref, 2 * K, 1e-5);
    veil_engine_free(e);
}

/* MaxPool 3x3 stride 2 pad 1 with ceil_mode, against a reference. */
static void test_maxpool_ceil(void **state)
{
    (void)state;
    enum { H = 8 };
    float x[H * H], y[16], ref[16];
    fill(x, H * H, 9);
    struct veil_buf g = {0}, m;
    int64_t xd[4] = {1, 1, H, H}, yd[4] = {1, 1, 4, 4};
    const struct attr pa[] = {A_INTS2("kernel_shape", 3, 3), A_INTS2("strides", 2, 2), A_INTS4("pads", 0, 0, 0, 0),
                              A_INT("ceil_mode", 1)};
    node(&g, "MaxPool", (const char *[]){"x", NULL}, "y", pa, 4);
    value_info(&g, 11, "x", xd, 4);
    value_info(&g, 12, "y", yd, 4);
    model(&g, &m);
    veil_engine *e = load(&m);
    run1(e, x, H * H, y, 16);
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++) {
            float mx = -1e30f;
            for (int u = 0; u < 3; u++)
                for (int v = 0; v < 3; v++)
                    if (2 * i + u < H && 2 * j + v < H && x[(2 * i + u) * H + 2 * j + v] > mx)
                        mx = x[(2 * i + u) * H + 2 * j + v];
            ref[i * 4 + j] = mx;
        }
    assert_close(y, ref, 16, 0);
    veil_engine_free(e);
}

/* ---- refusals -------------------------------------------------------------------------------------------- */

static void expect_load_error(struct veil_buf *m, veil_status want, const char *needle)
{
    veil_engine *e = (veil_engine *)(uintptr_t)1;
    veil_status st = veil_engine_load_onnx(m->data, m->size, NULL, &e);
    veil_buf_cleanup(m);
    assert_null(e);
    if (st != want || strstr(veil_last_error(), needle) == NULL)
        fail_msg("expected status %d mentioning '%s', got %d: %s", (int)want, needle, (int)st, veil_last_error());
}

static void relu_graph(struct veil_buf *g, const int64_t *xd, uint32_t rank)
{
    value_info(g, 11, "x", xd, rank);
    value_info(g, 12, "y", xd, rank);
}

static void test_cycle_refused(void **state)
{
    (void)state;
    struct veil_buf g = {0}, m;
    int64_t xd[2] = {1, 4};
    node(&g, "Add", (const char *[]){"x", "b", NULL}, "a", NULL, 0);
    node(&g, "Relu", (const char *[]){"a", NULL}, "b", NULL, 0);
    node(&g, "Relu", (const char *[]){"a", NULL}, "y", NULL, 0);
    relu_graph(&g, xd, 2);
    model(&g, &m);
    expect_load_error(&m, VEIL_ERR_ONNX, "cycle");
}

static void test_unsupported_op_named(void **state)
{
    (void)state;
    struct veil_buf g = {0}, m;
    int64_t xd[2] = {1, 4};
    node(&g, "NonZero", (const char *[]){"x", NULL}, "y", NULL, 0);
    relu_graph(&g, xd, 2);
    model(&g, &m);
    expect_load_error(&m, VEIL_ERR_UNSUPPORTED, "NonZero");
}

static void test_unsupported_attribute_named(void **state)
{
    (void)state;
    struct veil_buf g = {0}, m;
    int64_t xd[2] = {1, 4};
    const struct attr a[] = {A_INT("approximate_gelu", 1)};
    node(&g, "Relu", (const char *[]){"x", NULL}, "y", a, 1);
    relu_graph(&g, xd, 2);
    model(&g, &m);
    expect_load_error(&m, VEIL_ERR_UNSUPPORTED, "approximate_gelu");
}

static void test_missing_initializer(void **state)
{
    (void)state;
    struct veil_buf g = {0}, m;
    int64_t xd[4] = {1, 1, 4, 4};
    node(&g, "Conv", (const char *[]){"x", "weights_nobody_gave", NULL}, "y", NULL, 0);
    relu_graph(&g, xd, 4);
    model(&g, &m);
    expect_load_error(&m, VEIL_ERR_ONNX, "weights_nobody_gave");
}

static void test_absurd_shape_refused(void **state)
{
    (void)state;
    struct veil_buf g = {0}, m;
    int64_t xd[4] = {1, 1000000, 1000000, 1000000};
    node(&g, "Relu", (const char *[]){"x", NULL}, "y", NULL, 0);
    relu_graph(&g, xd, 4);
    model(&g, &m);
    expect_load_error(&m, VEIL_ERR_LIMIT, "x");
}

/* oneDNN divides by zero dimensions in some kernels (found by fuzz_engine: MatMul on a batch of 0): empty tensors
 * are refused at load, by name, before any primitive is created. */
static void test_empty_tensors_refused(void **state)
{
    (void)state;
    struct veil_buf g = {0}, m;
    int64_t batch0[2] = {0, 4};
    node(&g, "Relu", (const char *[]){"x", NULL}, "y", NULL, 0);
    relu_graph(&g, batch0, 2);
    model(&g, &m);
    expect_load_error(&m, VEIL_ERR_UNSUPPORTED, "batch of 0");

    struct veil_buf g2 = {0}, m2;
    int64_t xd[2] = {1, 4}, wd[2] = {4, 0}, yd[2] = {1, 0};
    const float none[1] = {0};
    initializer(&g2, "w", wd, 2, none); /* 0 elements */
    node(&g2, "MatMul", (const char *[]){"x", "w", NULL}, "y", NULL, 0);
    value_info(&g2, 11, "x", xd, 2);
    value_info(&g2, 12, "y", yd, 2);
    model(&g2, &m2);
    expect_load_error(&m2, VEIL_ERR_UNSUPPORTED, "empty tensor");
}

static void test_wrong_input_and_nan(void **state)
{
    (void)state;
    struct veil_buf g = {0}, m;
    int64_t xd[2] = {2, 3};
    node(&g, "Relu", (const char *[]){"x", NULL}, "y", NULL, 0);
    relu_graph(&g, xd, 2);
    model(&g, &m);
    veil_engine *e = load(&m);
    float x[6] = {-1, 2, -3, 4, -5, 6}, y[6];
    const float *const in[1] = {x};
    float *const out[1] = {y};
    size_t small = 5 * sizeof(float), right = sizeof x, os = sizeof y;
    assert_int_equal(veil_engine_run(e, in, &small, 1, out, &os, 1), VEIL_ERR_ARG);
    assert_non_null(strstr(veil_last_error(), "'x'"));
    assert_int_equal(veil_engine_run(e, in, &right, 0, out, &os, 1), VEIL_ERR_ARG);
    x[4] = NAN;
    assert_int_equal(veil_engine_run(e, in, &right, 1, out, &os, 1), VEIL_ERR_ARG);
    assert_non_null(strstr(veil_last_error(), "NaN"));
    x[4] = INFINITY;
    assert_int_equal(veil_engine_run(e, in, &right, 1, out, &os, 1), VEIL_ERR_ARG);
    x[4] = -5;
    assert_int_equal(veil_engine_run(e, in, &right, 1, out, &os, 1), VEIL_OK);
    assert_true(y[0] == 0 && y[5] == 6);
    veil_engine_free(e);
}

/* Every truncation and a bit flip at every byte of a small valid model: an error or a model, never a crash. */
static void test_malformed_never_crashes(void **state)
{
    (void)state;
    struct veil_buf m;
    struct conv_ref p = {.n = 1, .c = 2, .h = 4, .w = 4, .m = 2, .kh = 3, .kw = 3, .group = 1, .sh = 1, .sw = 1,
                         .dh = 1, .dw = 1, .pt = 1, .pl = 1, .pb = 1, .pr = 1};
    float w[36], b[2];
    fill(w, 36, 1);
    fill(b, 2, 2);
    conv_model(&p, w, b, &m);
    for (size_t n = 0; n < m.size; n++) {
        veil_engine *e = NULL;
        assert_int_not_equal(veil_engine_load_onnx(m.data, n, NULL, &e), VEIL_OK);
        assert_null(e);
    }
    for (size_t i = 0; i < m.size; i++) {
        for (int bit = 0; bit < 8; bit += 3) {
            m.data[i] ^= (uint8_t)(1u << bit);
            veil_engine *e = NULL;
            struct veil_engine_options o = {.threads = 1};
            if (veil_engine_load_onnx(m.data, m.size, &o, &e) == VEIL_OK)
                veil_engine_free(e);
            m.data[i] ^= (uint8_t)(1u << bit);
        }
    }
    veil_buf_cleanup(&m);
}

/* TensorFlow-style "same" padding as exporters leave it: the pads computed by shape arithmetic (Concat, Slice,
 * Cast of constants) feed a Pad that the engine folds into the Conv; the output is flattened through
 * Shape -> Gather -> Unsqueeze -> Concat -> Reshape, evaluated at load. */
static void test_folded_pads_and_shape_arithmetic(void **state)
{
    (void)state;
    const struct conv_ref p = {.n = 1, .c = 3, .h = 5, .w = 5, .m = 2, .kh = 3, .kw = 3, .group = 1, .sh = 1,
                               .sw = 1, .dh = 1, .dw = 1, .pt = 1, .pl = 0, .pb = 2, .pr = 1};
    float x[75], w[54], b[2], y[48], r[48];
    fill(x, 75, 1);
    fill(w, 54, 2);
    fill(b, 2, 3);
    struct veil_buf g = {0}, m;
    const struct attr begin[] = {A_INTS4("value_ints", 0, 0, 1, 0)}, end[] = {A_INTS4("value_ints", 0, 0, 2, 1)};
    const struct attr zero[] = {A_INT("value_int", 0)}, eight[] = {{"value_ints", 'I', 0, 0, {8}, 1}};
    const struct attr axis0[] = {{"value_ints", 'I', 0, 0, {0}, 1}}, minus1[] = {{"value_ints", 'I', 0, 0, {-1}, 1}};
    const struct attr cat[] = {A_INT("axis", 0)}, to64[] = {A_INT("to", 7)}, gax[] = {A_INT("axis", 0)};
    node(&g, "Constant", (const char *[]){NULL}, "begin", begin, 1);
    node(&g, "Constant", (const char *[]){NULL}, "end", end, 1);
    node(&g, "Constant", (const char *[]){NULL}, "zero", zero, 1);
    node(&g, "Constant", (const char *[]){NULL}, "eight", eight, 1);
    node(&g, "Constant", (const char *[]){NULL}, "axis0", axis0, 1);
    node(&g, "Constant", (const char *[]){NULL}, "minus1", minus1, 1);
    node(&g, "Concat", (const char *[]){"begin", "end", NULL}, "pads8", cat, 1);
    node(&g, "Slice", (const char *[]){"pads8", "axis0", "eight", NULL}, "sliced", NULL, 0);
    node(&g, "Cast", (const char *[]){"sliced", NULL}, "pads", to64, 1);
    node(&g, "Pad", (const char *[]){"x", "pads", NULL}, "xp", NULL, 0);
    node(&g, "Conv", (const char *[]){"xp", "w", "b", NULL}, "c", NULL, 0);
    node(&g, "Shape", (const char *[]){"x", NULL}, "shape", NULL, 0);
    node(&g, "Gather", (const char *[]){"shape", "zero", NULL}, "n", gax, 1);
    node(&g, "Unsqueeze", (const char *[]){"n", "axis0", NULL}, "n1", NULL, 0);
    node(&g, "Concat", (const char *[]){"n1", "minus1", NULL}, "flat", cat, 1);
    node(&g, "Reshape", (const char *[]){"c", "flat", NULL}, "y", NULL, 0);
    int64_t xd[4] = {1, 3, 5, 5}, wd[4] = {2, 3, 3, 3}, bd[1] = {2}, yd[2] = {1, 48};
    initializer(&g, "w", wd, 4, w);
    initializer(&g, "b", bd, 1, b);
    value_info(&g, 11, "x", xd, 4);
    value_info(&g, 12, "y", yd, 2);
    model(&g, &m);
    veil_engine *e = load(&m);
    struct veil_engine_io out;
    assert_int_equal(veil_engine_output(e, 0, &out), VEIL_OK);
    assert_int_equal(out.rank, 2);
    assert_int_equal(out.dims[1], 48);
    run1(e, x, 75, y, 48);
    conv_reference(&p, x, w, b, r);
    assert_close(y, r, 48, 1e-5);
    veil_engine_free(e);
}

static void test_fold_only_op_on_activation_refused(void **state)
{
    (void)state;
    struct veil_buf g = {0}, m;
    int64_t xd[2] = {2, 2};
    node(&g, "Range", (const char *[]){"x", "x", "x", NULL}, "y", NULL, 0); /* Range runs at load only */
    relu_graph(&g, xd, 2);
    model(&g, &m);
    expect_load_error(&m, VEIL_ERR_UNSUPPORTED, "only on constants");
}

/* A zero Pad that no Conv alone reads runs on the engine's kernel: zeros around the input. */
static void test_pad_without_conv(void **state)
{
    (void)state;
    struct veil_buf g = {0}, m;
    int64_t xd[2] = {2, 2};
    const struct attr pads[] = {A_INTS4("value_ints", 0, 1, 0, 1)}; /* rows: none; columns: one before, one after */
    node(&g, "Constant", (const char *[]){NULL}, "pads", pads, 1);
    node(&g, "Pad", (const char *[]){"x", "pads", NULL}, "y", NULL, 0);
    int64_t yd[2] = {2, 4};
    value_info(&g, 11, "x", xd, 2);
    value_info(&g, 12, "y", yd, 2);
    model(&g, &m);
    veil_engine *e = load(&m);
    const float x[4] = {1, 2, 3, 4}, ref[8] = {0, 1, 2, 0, 0, 3, 4, 0};
    float y[8];
    run1(e, x, 4, y, 8);
    assert_close(y, ref, 8, 0);
    veil_engine_free(e);
}

/* A Constant node holding a float tensor (AttributeProto: name 1, t 5, type 20 = TENSOR). */
static void constant_node(struct veil_buf *g, const char *out, const int64_t *dims, uint32_t rank, const float *data)
{
    struct veil_buf t = {0}, a = {0}, n = {0};
    size_t count = 1;
    for (uint32_t i = 0; i < rank; i++) {
        pv(&t, 1, (uint64_t)dims[i]);
        count *= (size_t)dims[i];
    }
    pv(&t, 2, 1);
    ok(veil_pb_append_len(&t, 9, data, count * sizeof(float)));
    ps(&a, 1, "value");
    pm(&a, 5, &t);
    pv(&a, 20, 4);
    ps(&n, 2, out);
    ps(&n, 3, out);
    ps(&n, 4, "Constant");
    pm(&n, 5, &a);
    pm(g, 1, &n);
}

static void seal_to(const struct veil_buf *m, const char *path, const uint8_t key[32])
{
    struct veil_seal_options so = {.model_id = "sealed", .threads = 1};
    if (veil_seal(m->data, m->size, key, 32, &so, path) != VEIL_OK)
        fail_msg("seal failed: %s", veil_last_error());
}

static veil_model *open_sealed(const char *path, const uint8_t key[32])
{
    veil_model *model = NULL;
    if (veil_model_open(path, key, 32, NULL, &model) != VEIL_OK)
        fail_msg("open failed: %s", veil_last_error());
    return model;
}

static veil_engine *load_sealed_opts(const struct veil_buf *m, const char *path, int lock)
{
    uint8_t key[32];
    memset(key, 7, sizeof key);
    seal_to(m, path, key);
    veil_model *model = open_sealed(path, key);
    veil_engine *e = NULL;
    struct veil_engine_options o = {.threads = 2, .lock_memory = lock};
    veil_status st = veil_engine_load_model(model, &o, &e);
    veil_model_free(model); /* the caller's reference: an engine that borrows keeps the model alive */
    if (st != VEIL_OK)
        fail_msg("load failed %d: %s", (int)st, veil_last_error());
    return e;
}

/* The weights a sealed model lends to the engine (enum eng_borrow). y = x.w + x.Identity(cst) + Gather(t, ids): w and
 * the embedding table t are initializers of 1 MiB; cst is a Constant node, which the engine owns and never lends.
 *   0: a large model (the threshold lowered here): w is lent in its plain layout, t too; the model is kept;
 *   1: a small one: t is lent (the gather kernel reads plain rows), w only where the product is a matmul on the
 *      plain layout oneDNN chose itself (on AVX2 it is a 1x1 convolution with its own weights); what is lent is at
 *      least half of the model, which is kept;
 *   2: the same with an unused 4 MiB initializer: less than half is lent, so everything is copied after all and the
 *      model is not kept;
 *   3: mode 1 with lock_memory, from a model opened without it: nothing lent.
 * The caller's reference is dropped (and the model wiped, when not kept) before every run. */
static void test_lent_weights(void **state)
{
    (void)state;
    enum { K = 256, N = 1024, R = 256 }; /* 1 MiB each: ENG_BORROW_MIN_TENSOR */
    float *w = malloc(K * N * 4), *c = malloc(K * N * 4), *t = malloc(R * N * 4), *big = calloc(4 * K * N, 4);
    float x[K], y[N], r[N];
    assert_non_null(w && c && t && big);
    fill(w, K * N, 4);
    fill(c, K * N, 5);
    fill(t, R * N, 7);
    fill(x, K, 6);
    const int64_t id = 37;
    for (int j = 0; j < N; j++) {
        double acc = t[id * N + j];
        for (int k = 0; k < K; k++)
            acc += (double)x[k] * ((double)w[k * N + j] + (double)c[k * N + j]);
        r[j] = (float)acc;
    }
    int64_t wd[2] = {K, N}, td[2] = {R, N}, bd[2] = {4 * K, N}, xd[2] = {1, K}, idd[1] = {1}, yd[2] = {1, N};
    char dir[] = "/tmp/veil-test-lent-XXXXXX", path[64];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/m.veil", dir);
    uint64_t saved = eng_borrow_min_model;
    for (int mode = 0; mode < 4; mode++) {
        struct veil_buf g = {0}, m;
        node(&g, "MatMul", (const char *[]){"x", "w", NULL}, "a", NULL, 0);
        constant_node(&g, "cst", wd, 2, c);
        node(&g, "Identity", (const char *[]){"cst", NULL}, "ci", NULL, 0);
        node(&g, "MatMul", (const char *[]){"x", "ci", NULL}, "b", NULL, 0);
        node(&g, "Gather", (const char *[]){"t", "ids", NULL}, "e", NULL, 0);
        node(&g, "Add", (const char *[]){"a", "b", NULL}, "ab", NULL, 0);
        node(&g, "Add", (const char *[]){"ab", "e", NULL}, "y", NULL, 0);
        initializer(&g, "w", wd, 2, w);
        initializer(&g, "t", td, 2, t);
        if (mode == 2)
            initializer(&g, "unused", bd, 2, big);
        value_info(&g, 11, "x", xd, 2);
        value_info_typed(&g, 11, "ids", idd, 1, 7);
        value_info(&g, 12, "y", yd, 2);
        model(&g, &m);
        eng_borrow_min_model = mode == 0 ? 0 : saved;
        veil_engine *e = load_sealed_opts(&m, path, mode == 3);
        size_t lent = eng_borrowed_count(e);
        if (mode == 0)
            assert_int_equal(lent, 2);
        else if (mode == 1)
            assert_true(lent == 1 || lent == 2);
        else
            assert_int_equal(lent, 0);
        assert_int_equal(e->model != NULL, lent > 0);
        const void *in[2] = {x, &id};
        size_t is[2] = {sizeof x, sizeof id}, os = sizeof y;
        float *out[1] = {y};
        memset(y, 0, sizeof y);
        if (veil_engine_run(e, (const float *const *)in, is, 2, out, &os, 1) != VEIL_OK)
            fail_msg("run failed: %s", veil_last_error());
        assert_close(y, r, N, 1e-4);
        veil_engine_free(e);
        veil_buf_cleanup(&m);
    }
    eng_borrow_min_model = saved;
    unlink(path);
    rmdir(dir);
    free(w);
    free(c);
    free(t);
    free(big);
}

/* No whole page of [p, p + size) is resident any more. */
static void assert_given_back(const uint8_t *p, size_t size)
{
    uintptr_t first = ((uintptr_t)p + 4095u) & ~(uintptr_t)4095u, end = ((uintptr_t)p + size) & ~(uintptr_t)4095u;
    unsigned char *vec = calloc((end - first) / 4096 + 1, 1);
    assert_non_null(vec);
    assert_int_equal(mincore((void *)first, end - first, vec), 0);
    for (size_t i = 0; i < (end - first) / 4096; i++)
        assert_int_equal(vec[i] & 1u, 0);
    free(vec);
}

/* veil_engine_load_model_releasing: y = x.w + Gather(t, ids) + s, w and t of 1 MiB, s of 4 KiB, in that order in the
 * model's data region. The engine computes what the ordinary load computes; afterwards every weight it does not run
 * on in place is gone from the model (veil_model_tensor refuses it), the whole pages of each are no longer resident,
 * nor the page w and t share when both are gone, and the engine runs on after the model is freed. A model another
 * engine holds (a lending one) cannot be consumed. */
static void test_releasing_load(void **state)
{
    (void)state;
    enum { K = 256, N = 1024, R = 256 };
    float *w = malloc(K * N * 4), *t = malloc(R * N * 4), sv[N], x[K], y[N], r[N];
    assert_non_null(w && t);
    fill(w, K * N, 4);
    fill(t, R * N, 7);
    fill(sv, N, 8);
    fill(x, K, 6);
    const int64_t id = 11;
    for (int j = 0; j < N; j++) {
        double acc = (double)t[id * N + j] + (double)sv[j];
        for (int k = 0; k < K; k++)
            acc += (double)x[k] * (double)w[k * N + j];
        r[j] = (float)acc;
    }
    int64_t wd[2] = {K, N}, td[2] = {R, N}, sd[1] = {N}, xd[2] = {1, K}, idd[1] = {1}, yd[2] = {1, N};
    struct veil_buf g = {0}, m;
    node(&g, "MatMul", (const char *[]){"x", "w", NULL}, "a", NULL, 0);
    node(&g, "Gather", (const char *[]){"t", "ids", NULL}, "e", NULL, 0);
    node(&g, "Add", (const char *[]){"a", "e", NULL}, "ae", NULL, 0);
    node(&g, "Add", (const char *[]){"ae", "s", NULL}, "y", NULL, 0);
    initializer(&g, "w", wd, 2, w);
    initializer(&g, "t", td, 2, t);
    initializer(&g, "s", sd, 1, sv);
    value_info(&g, 11, "x", xd, 2);
    value_info_typed(&g, 11, "ids", idd, 1, 7);
    value_info(&g, 12, "y", yd, 2);
    model(&g, &m);
    uint8_t key[32];
    memset(key, 9, sizeof key);
    char dir[] = "/tmp/veil-test-release-XXXXXX", path[64];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/m.veil", dir);
    seal_to(&m, path, key);

    veil_model *model = open_sealed(path, key);
    struct veil_tensor_view before[3];
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(veil_model_tensor(model, i, &before[i]), VEIL_OK);
    veil_engine *e = NULL;
    struct veil_engine_options o = {.threads = 2};
    if (veil_engine_load_model_releasing(model, &o, NULL, 0, &e) != VEIL_OK)
        fail_msg("load failed: %s", veil_last_error());
    size_t lent = eng_borrowed_count(e), gone = 0;
    int is_gone[3] = {0};
    for (size_t i = 0; i < 3; i++) {
        struct veil_tensor_view v;
        if (veil_model_tensor(model, i, &v) == VEIL_OK)
            continue;
        assert_non_null(strstr(veil_last_error(), "is gone: an engine consumed this model"));
        assert_given_back(before[i].data, before[i].size);
        is_gone[i] = 1;
        gone++;
    }
    assert_int_equal(gone, 3 - lent);
    const uint8_t *w_start = before[0].data, *t_end = (const uint8_t *)before[1].data + before[1].size;
    if (is_gone[0] && is_gone[1])
        assert_given_back(w_start, (size_t)(t_end - w_start));
    veil_model_free(model);
    const void *in[2] = {x, &id};
    size_t is[2] = {sizeof x, sizeof id}, os = sizeof y;
    float *out[1] = {y};
    if (veil_engine_run(e, (const float *const *)in, is, 2, out, &os, 1) != VEIL_OK)
        fail_msg("run failed: %s", veil_last_error());
    assert_close(y, r, N, 1e-4);
    veil_engine_free(e);

    uint64_t saved = eng_borrow_min_model;
    eng_borrow_min_model = 0; /* the first engine lends, and holds the model */
    model = open_sealed(path, key);
    veil_engine *holder = NULL, *second = NULL;
    assert_int_equal(veil_engine_load_model(model, &o, &holder), VEIL_OK);
    assert_true(eng_borrowed_count(holder) > 0);
    assert_int_equal(veil_engine_load_model_releasing(model, &o, NULL, 0, &second), VEIL_ERR_ARG);
    assert_null(second);
    assert_non_null(strstr(veil_last_error(), "the model is shared"));
    eng_borrow_min_model = saved;
    veil_model_free(model);
    veil_engine_free(holder);
    veil_buf_cleanup(&m);
    unlink(path);
    rmdir(dir);
    free(w);
    free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conv_strided_padded_dilated),
        cmocka_unit_test(test_conv_grouped_and_depthwise),
        cmocka_unit_test(test_conv_bn_relu_residual),
        cmocka_unit_test(test_pool_flatten_gemm_softmax),
        cmocka_unit_test(test_maxpool_ceil),
        cmocka_unit_test(test_cycle_refused),
        cmocka_unit_test(test_empty_tensors_refused),
        cmocka_unit_test(test_unsupported_op_named),
        cmocka_unit_test(test_unsupported_attribute_named),
        cmocka_unit_test(test_missing_initializer),
        cmocka_unit_test(test_absurd_shape_refused),
        cmocka_unit_test(test_wrong_input_and_nan),
        cmocka_unit_test(test_malformed_never_crashes),
        cmocka_unit_test(test_folded_pads_and_shape_arithmetic),
        cmocka_unit_test(test_fold_only_op_on_activation_refused),
        cmocka_unit_test(test_pad_without_conv),
        cmocka_unit_test(test_lent_weights),
        cmocka_unit_test(test_releasing_load),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
