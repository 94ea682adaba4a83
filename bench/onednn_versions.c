/* The oneDNN version question (docs/internals/engine.md, "oneDNN version"): the same layers, as the engine creates
 * them, timed on whichever oneDNN this file is compiled against. bench/run.py builds it twice, against Debian's
 * libdnnl 2.6 and against oneDNN 3.x from PyPI, and runs the two binaries in turns.
 *
 *   onednn_versions MODEL DTYPE BATCH ROUNDS
 *     MODEL  resnet50: its 53 convolutions as the engine fuses them (BatchNorm folded; ReLU, and on each block's
 *                      last convolution the residual sum then ReLU, as post-ops) and the classifier's matmul
 *            bert:     BERT-base's matmuls at sequence 128, x12 layers: Q, K, V, output and both FFN matmuls as
 *                      2-D products with bias (the engine flattens a Linear layer's [batch, seq, k] input and adds no
 *                      activation post-op to a matmul), and the two attention matmuls per head on plain operands
 *                      (the engine materializes the transposes)
 *            bert_1x1: the same, the Linear layers as 1x1 convolutions over channels-last rows, as the engine
 *                      creates them on CPUs without AVX-512 (lib/engine/op_gemm.c, mm_as_conv1x1)
 *     DTYPE  f32 | bf16 (bf16 source and weights, f32 destination, as the engine's bf16 mode)
 *
 * Every layer gets the primitive oneDNN picks for format_tag_any (constant weights already in that layer's layout,
 * as the engine reorders them once at load), and runs on its own input: what is timed is the primitives alone, one
 * after the other, without the reorders, layer norms, softmaxes and element-wise operators between them. Prints one JSON line: the library's version, the kernels it chose (how many
 * layers each), the GFLOP of one pass and the wall time of each timed pass in ms.
 *
 * Compiled against oneDNN 2.x or 3.x; the two C APIs differ in how descriptors are made (the #if blocks below). */
#define _POSIX_C_SOURCE 200809L
#include <dnnl.h>
#include <dnnl_debug.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CHECK(call)                                                                                                  \
    do {                                                                                                             \
        dnnl_status_t st_ = (call);                                                                                  \
        if (st_ != dnnl_success) {                                                                                   \
            fprintf(stderr, "onednn_versions: %s: %s\n", #call, dnnl_status2str(st_));                              \
            exit(1);                                                                                                 \
        }                                                                                                            \
    } while (0)

enum kind { CONV, MATMUL };

struct layer {
    enum kind kind;
    int relu, sum, bias; /* post-ops: sum (the residual, into dst) before relu */
    /* CONV: n c h w -> oc, k x k, stride, pad. MATMUL: b x (m x k) . (k x n); weights constant or an activation */
    long n, c, h, w, oc, k, stride, pad;
    int nhwc; /* CONV: source and destination in the plain channels-last layout (acdb), not format_tag_any */
    long b, m, kk, nn;
    int wconst;
};

#define MAX_LAYERS 256
static struct layer layers[MAX_LAYERS];
static int n_layers;

static void add(struct layer l)
{
    if (n_layers == MAX_LAYERS) {
        fprintf(stderr, "onednn_versions: too many layers\n");
        exit(1);
    }
    layers[n_layers++] = l;
}

static void conv(long n, long c, long h, long oc, long k, long stride, long pad, int relu, int sum)
{
    add((struct layer){.kind = CONV, .relu = relu, .sum = sum, .bias = 1, .n = n, .c = c, .h = h, .w = h, .oc = oc,
                       .k = k, .stride = stride, .pad = pad});
}

/* b == 1 with constant weights: a 2-D product (m x k) . (k x n); else batched, both operands plain */
static void matmul(long b, long m, long k, long n, int wconst, int bias)
{
    add((struct layer){.kind = MATMUL, .bias = bias, .b = b, .m = m, .kk = k, .nn = n, .wconst = wconst});
}

/* torchvision's resnet50 (v1.5: the stride on the 3x3), BatchNorm folded into the convolutions as the engine does */
static void resnet50(long n)
{
    static const int blocks[4] = {3, 4, 6, 3};
    conv(n, 3, 224, 64, 7, 2, 3, 1, 0);
    long in = 64, h = 56;
    for (int s = 0; s < 4; s++) {
        long width = 64L << s, out = width * 4;
        for (int b = 0; b < blocks[s]; b++) {
            long stride = (b == 0 && s > 0) ? 2 : 1;
            conv(n, in, h, width, 1, 1, 0, 1, 0);
            conv(n, width, h, width, 3, stride, 1, 1, 0);
            if (b == 0)
                conv(n, in, h, out, 1, stride, 0, 0, 0); /* the shortcut's projection */
            h /= stride;
            conv(n, width, h, out, 1, 1, 0, 1, 1); /* + the shortcut, then ReLU */
            in = out;
        }
    }
    matmul(1, n, 2048, 1000, 1, 1);
}

static void linear_mm(long m, long k, long n)
{
    matmul(1, m, k, n, 1, 1);
}

/* A Linear layer (m x k) . (k x n) as a 1x1 convolution over m pixels, channels last: the same bytes in and out */
static void linear_1x1(long m, long k, long n)
{
    add((struct layer){.kind = CONV, .bias = 1, .n = 1, .c = k, .h = m, .w = 1, .oc = n, .k = 1, .stride = 1,
                       .nhwc = 1});
}

static void bert(long n, int as_1x1)
{
    const long seq = 128, hidden = 768, heads = 12, ffn = 3072;
    for (int l = 0; l < 12; l++) {
        void (*linear)(long, long, long) = as_1x1 ? linear_1x1 : linear_mm;
        for (int i = 0; i < 3; i++)
            linear(n * seq, hidden, hidden);                   /* Q, K, V */
        matmul(n * heads, seq, hidden / heads, seq, 0, 0);     /* Q . K^T (K^T materialized) */
        matmul(n * heads, seq, seq, hidden / heads, 0, 0);     /* softmax . V */
        linear(n * seq, hidden, hidden);                       /* output */
        linear(n * seq, hidden, ffn);                          /* FFN in (its GELU is a separate operator) */
        linear(n * seq, ffn, hidden);                          /* FFN out */
    }
}

#if DNNL_VERSION_MAJOR >= 3
typedef dnnl_memory_desc_t md_t;
#define MD(m) (m)
static md_t md_make(int nd, const dnnl_dims_t d, dnnl_data_type_t dt, dnnl_format_tag_t tag)
{
    md_t m;
    CHECK(dnnl_memory_desc_create_with_tag(&m, nd, d, dt, tag));
    return m;
}
static void md_free(md_t m) { dnnl_memory_desc_destroy(m); }
static void append_eltwise(dnnl_post_ops_t po, dnnl_alg_kind_t alg)
{
    CHECK(dnnl_post_ops_append_eltwise(po, alg, 0.f, 0.f));
}
static void append_sum(dnnl_post_ops_t po) { CHECK(dnnl_post_ops_append_sum(po, 1.f, 0, dnnl_data_type_undef)); }
#else
typedef dnnl_memory_desc_t md_t;
#define MD(m) (&(m))
static md_t md_make(int nd, const dnnl_dims_t d, dnnl_data_type_t dt, dnnl_format_tag_t tag)
{
    md_t m;
    CHECK(dnnl_memory_desc_init_by_tag(&m, nd, d, dt, tag));
    return m;
}
static void md_free(md_t m) { (void)m; }
static void append_eltwise(dnnl_post_ops_t po, dnnl_alg_kind_t alg)
{
    CHECK(dnnl_post_ops_append_eltwise(po, 1.f, alg, 0.f, 0.f));
}
static void append_sum(dnnl_post_ops_t po) { CHECK(dnnl_post_ops_append_sum(po, 1.f)); }
#endif

struct prim {
    dnnl_primitive_t p;
    dnnl_memory_t src, wei, bias, dst;
    char impl[64];
};

static dnnl_primitive_attr_t make_attr(const struct layer *l)
{
    dnnl_primitive_attr_t attr;
    dnnl_post_ops_t po;
    CHECK(dnnl_primitive_attr_create(&attr));
    CHECK(dnnl_post_ops_create(&po));
    if (l->sum)
        append_sum(po);
    if (l->relu)
        append_eltwise(po, dnnl_eltwise_relu);
    CHECK(dnnl_primitive_attr_set_post_ops(attr, po));
    dnnl_post_ops_destroy(po);
    return attr;
}

/* the memory the primitive wants for one argument, filled with 0x3c bytes: small finite values in every type */
static dnnl_memory_t alloc_for(dnnl_engine_t eng, dnnl_primitive_desc_t pd, dnnl_query_t what, int index)
{
    dnnl_memory_t m;
    CHECK(dnnl_memory_create(&m, dnnl_primitive_desc_query_md(pd, what, index), eng, DNNL_MEMORY_ALLOCATE));
    void *p;
    CHECK(dnnl_memory_get_data_handle(m, &p));
    memset(p, 0x3c, dnnl_memory_desc_get_size(dnnl_primitive_desc_query_md(pd, what, index)));
    return m;
}

static dnnl_primitive_desc_t conv_pd(dnnl_engine_t eng, const struct layer *l, dnnl_data_type_t st,
                                     dnnl_data_type_t wt, dnnl_data_type_t dt)
{
    long oh = (l->h + 2 * l->pad - l->k) / l->stride + 1, ow = (l->w + 2 * l->pad - l->k) / l->stride + 1;
    dnnl_dims_t sd = {l->n, l->c, l->h, l->w}, wd = {l->oc, l->c, l->k, l->k}, bd = {l->oc}, dd = {l->n, l->oc, oh, ow};
    dnnl_dims_t strides = {l->stride, l->stride}, dil = {0, 0}, pad = {l->pad, l->pad};
    dnnl_format_tag_t act = l->nhwc ? dnnl_acdb : dnnl_format_tag_any;
    md_t s = md_make(4, sd, st, act), w = md_make(4, wd, wt, dnnl_format_tag_any);
    md_t b = md_make(1, bd, dnnl_f32, dnnl_a), d = md_make(4, dd, dt, act);
    dnnl_primitive_attr_t attr = make_attr(l);
    dnnl_primitive_desc_t pd;
#if DNNL_VERSION_MAJOR >= 3
    CHECK(dnnl_convolution_forward_primitive_desc_create(&pd, eng, dnnl_forward_inference, dnnl_convolution_direct,
                                                         MD(s), MD(w), MD(b), MD(d), strides, dil, pad, pad, attr));
#else
    dnnl_convolution_desc_t cd;
    CHECK(dnnl_dilated_convolution_forward_desc_init(&cd, dnnl_forward_inference, dnnl_convolution_direct, MD(s),
                                                     MD(w), MD(b), MD(d), strides, dil, pad, pad));
    CHECK(dnnl_primitive_desc_create(&pd, &cd, attr, eng, NULL));
#endif
    dnnl_primitive_attr_destroy(attr);
    md_free(s), md_free(w), md_free(b), md_free(d);
    return pd;
}

static dnnl_primitive_desc_t matmul_pd(dnnl_engine_t eng, const struct layer *l, dnnl_data_type_t st,
                                       dnnl_data_type_t wt, dnnl_data_type_t dt)
{
    int flat = l->b == 1 && l->wconst, nd = flat ? 2 : 3;
    dnnl_dims_t sd = {l->b, l->m, l->kk}, wd = {l->b, l->kk, l->nn}, bd = {1, 1, l->nn}, dd = {l->b, l->m, l->nn};
    if (flat) {
        sd[0] = l->m, sd[1] = l->kk, wd[0] = l->kk, wd[1] = l->nn, bd[0] = 1, bd[1] = l->nn, dd[0] = l->m,
        dd[1] = l->nn;
    }
    dnnl_format_tag_t plain = flat ? dnnl_ab : dnnl_abc;
    /* constant weights: the layout oneDNN wants; an activation (attention): plain */
    md_t s = md_make(nd, sd, st, plain), w = md_make(nd, wd, wt, l->wconst ? dnnl_format_tag_any : plain);
    md_t b = md_make(nd, bd, dnnl_f32, plain), d = md_make(nd, dd, dt, plain);
    dnnl_primitive_attr_t attr = make_attr(l);
    dnnl_primitive_desc_t pd;
#if DNNL_VERSION_MAJOR >= 3
    CHECK(dnnl_matmul_primitive_desc_create(&pd, eng, MD(s), MD(w), l->bias ? MD(b) : NULL, MD(d), attr));
#else
    dnnl_matmul_desc_t mdesc;
    CHECK(dnnl_matmul_desc_init(&mdesc, MD(s), MD(w), l->bias ? MD(b) : NULL, MD(d)));
    CHECK(dnnl_primitive_desc_create(&pd, &mdesc, attr, eng, NULL));
#endif
    dnnl_primitive_attr_destroy(attr);
    md_free(s), md_free(w), md_free(b), md_free(d);
    return pd;
}

static void build(dnnl_engine_t eng, const struct layer *l, const char *dtype, struct prim *out)
{
    dnnl_data_type_t st = dnnl_f32, wt = dnnl_f32, dt = dnnl_f32;
    if (!strcmp(dtype, "bf16"))
        st = wt = dnnl_bf16;
    dnnl_primitive_desc_t pd = l->kind == CONV ? conv_pd(eng, l, st, wt, dt) : matmul_pd(eng, l, st, wt, dt);
    const char *impl = "?";
    CHECK(dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl));
    snprintf(out->impl, sizeof out->impl, "%s", impl);
    CHECK(dnnl_primitive_create(&out->p, pd));
    out->src = alloc_for(eng, pd, dnnl_query_src_md, 0);
    out->wei = alloc_for(eng, pd, dnnl_query_weights_md, 0);
    out->bias = l->bias ? alloc_for(eng, pd, dnnl_query_weights_md, 1) : NULL; /* the bias is weights index 1 */
    out->dst = alloc_for(eng, pd, dnnl_query_dst_md, 0);
    dnnl_primitive_desc_destroy(pd);
}

static double flops(const struct layer *l)
{
    if (l->kind == CONV) {
        double oh = (double)((l->h + 2 * l->pad - l->k) / l->stride + 1);
        double ow = (double)((l->w + 2 * l->pad - l->k) / l->stride + 1);
        return 2.0 * l->n * l->oc * oh * ow * l->c * l->k * l->k;
    }
    return 2.0 * l->b * l->m * l->kk * l->nn;
}

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static void run_all(dnnl_stream_t stream, struct prim *p)
{
    for (int i = 0; i < n_layers; i++) {
        dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, p[i].src}, {DNNL_ARG_WEIGHTS, p[i].wei}, {DNNL_ARG_DST, p[i].dst},
                                   {DNNL_ARG_BIAS, p[i].bias}};
        CHECK(dnnl_primitive_execute(p[i].p, stream, p[i].bias ? 4 : 3, args));
    }
    CHECK(dnnl_stream_wait(stream));
}

/* the kernels chosen, as "name": layers, in first-seen order */
static void print_impls(const struct prim *p)
{
    printf("\"kernels\": {");
    int first = 1;
    for (int i = 0; i < n_layers; i++) {
        int seen = 0, count = 0;
        for (int j = 0; j < n_layers; j++) {
            seen |= j < i && !strcmp(p[j].impl, p[i].impl);
            count += !strcmp(p[j].impl, p[i].impl);
        }
        if (!seen)
            printf("%s\"%s\": %d", first ? "" : ", ", p[i].impl, count), first = 0;
    }
    printf("}");
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: onednn_versions resnet50|bert f32|bf16 BATCH ROUNDS\n");
        return 2;
    }
    const char *model = argv[1], *dtype = argv[2];
    long batch = atol(argv[3]), rounds = atol(argv[4]);
    if (batch < 1 || batch > 64 || rounds < 1 || rounds > 100000 ||
        (strcmp(dtype, "f32") && strcmp(dtype, "bf16"))) {
        fprintf(stderr, "onednn_versions: bad batch, rounds or dtype\n");
        return 2;
    }
    if (!strcmp(model, "resnet50"))
        resnet50(batch);
    else if (!strcmp(model, "bert"))
        bert(batch, 0);
    else if (!strcmp(model, "bert_1x1"))
        bert(batch, 1);
    else {
        fprintf(stderr, "onednn_versions: unknown model %s\n", model);
        return 2;
    }
    dnnl_engine_t eng;
    dnnl_stream_t stream;
    CHECK(dnnl_engine_create(&eng, dnnl_cpu, 0));
    CHECK(dnnl_stream_create(&stream, eng, dnnl_stream_default_flags));
    struct prim *p = calloc((size_t)n_layers, sizeof *p);
    double gflop = 0;
    for (int i = 0; i < n_layers; i++) {
        build(eng, &layers[i], dtype, &p[i]);
        gflop += flops(&layers[i]) / 1e9;
    }
    for (int i = 0; i < 3; i++)
        run_all(stream, p);
    const dnnl_version_t *v = dnnl_version();
    printf("{\"dnnl\": \"%d.%d.%d\", \"model\": \"%s\", \"dtype\": \"%s\", \"batch\": %ld, \"layers\": %d, "
           "\"gflop\": %.3f, ",
           v->major, v->minor, v->patch, model, dtype, batch, n_layers, gflop);
    print_impls(p);
    printf(", \"ms\": [");
    for (long r = 0; r < rounds; r++) {
        double t0 = now_ms();
        run_all(stream, p);
        printf("%s%.3f", r ? ", " : "", now_ms() - t0);
    }
    printf("]}\n");
    for (int i = 0; i < n_layers; i++) {
        dnnl_primitive_destroy(p[i].p);
        dnnl_memory_destroy(p[i].src), dnnl_memory_destroy(p[i].wei), dnnl_memory_destroy(p[i].dst);
        if (p[i].bias)
            dnnl_memory_destroy(p[i].bias);
    }
    free(p);
    dnnl_stream_destroy(stream);
    dnnl_engine_destroy(eng);
    return 0;
}
