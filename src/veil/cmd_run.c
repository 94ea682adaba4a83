/* SPDX-License-Identifier: Apache-2.0 */
/* veil run: runs a plain or sealed ONNX model on one .npy input with the engine, for developers and benchmarks. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "core/buf.h"
#include "core/file.h"
#include "core/limits.h"
#include "core/measure.h"
#include "npy.h"
#include "veil/engine.h"
#include "veil/kbs_client.h"

static const char run_help[] =
    "usage: veil run MODEL.onnx|MODEL.veil --input X.npy -o Y.npy [--key KEY] [--threads N]\n"
    "       veil run MODEL.veil --kbs URL --tee sim|sample|sgx|tdx|snp|auto [--sim-dir DIR] --input X.npy -o Y.npy\n\n"
    "Runs the whole model with Veil's engine (oneDNN) on one float32 C-order input and writes the first output.\n"
    "A sealed model (recognised by its magic) is authenticated and decrypted in memory with its key: read from\n"
    "KEY, or released by a key broker (veil-kbs) to this TEE after remote attestation (--kbs). Nothing but\n"
    "Y.npy is written. Dimension 0 of the input is the batch: a model with a symbolic batch is planned for it.\n\n"
    "  -i, --input X.npy     the input, a float32 .npy array in C order (required)\n"
    "  -o, --output Y.npy    where to write the first output (required)\n"
    "  -k, --key KEY         the model key file (a sealed model needs exactly one of --key and --kbs)\n"
    "      --kbs URL         fetch the model key from this key broker over Trustee's KBS protocol (RCAR 0.4.0):\n"
    "                        attest this TEE, then receive the key of the model id in the sealed file's header,\n"
    "                        encrypted to a fresh key that lives only in this process. The key never touches\n"
    "                        disk. https:// with a pinned broker (--kbs-cacert or --kbs-pinned-pubkey); plain\n"
    "                        http:// only with --tee sim, to a loopback address\n"
    "      --tee T           the TEE whose evidence is sent with --kbs (required with it): sgx (Gramine), tdx,\n"
    "                        snp (configfs-tsm), auto (detect one of those three), or, proving nothing, sim\n"
    "                        (simulation platform key in --sim-dir) and sample (unsigned evidence)\n"
    "      --sim-dir DIR     with --tee sim: the simulation platform (veil attest sim-init --dir DIR)\n"
    "      --key-version N   with --kbs: ask for key version N (default: the newest version not revoked)\n"
    "      --kbs-cacert PEM  with an https:// broker: trust this CA bundle instead of the system's store (a pin;\n"
    "                        required for every TEE but sim unless --kbs-pinned-pubkey is given)\n"
    "      --kbs-pinned-pubkey P  with an https:// broker: its TLS public key, a PEM/DER file or\n"
    "                        sha256//<base64> (libcurl's pinned public key)\n"
    "      --kbs-broker-key PEM  the broker's token-signing public key (the public half of veil-kbs's\n"
    "                        signing.pem): its attestation token must verify with it and name this TEE's key\n"
    "      --kbs-insecure-http  with --tee sim: allow http:// to a non-loopback broker (tests only: the session\n"
    "                        travels in clear)\n"
    "      --min-model-version N  refuse a sealed file whose model version is below N (anti-rollback); with --kbs\n"
    "                        the broker's minimum, when it sends one, applies too (the higher wins)\n"
    "      --threads N       OpenMP threads for the engine (default: all CPUs)\n"
    "      --precision P     fp32 (default) or bf16: convolutions and matrix products on bfloat16 (AMX or\n"
    "                        AVX512-BF16), accumulated and written in float32; refused on a CPU without bf16\n"
    "      --repeat N        run N times (for timing; the output of the last run is written)\n"
    "      --stats           print one JSON line to stdout: load time, median and p99 run time, this\n"
    "                        process's peak resident memory (VmHWM), and its resident memory (VmRSS) and\n"
    "                        peak (VmHWM) before the model was loaded\n"
    "  -h, --help            show this help\n";

enum { OPT_THREADS = 256, OPT_REPEAT, OPT_STATS, OPT_KBS, OPT_TEE, OPT_SIM_DIR, OPT_KEY_VERSION, OPT_KBS_CACERT,
       OPT_KBS_INSECURE_HTTP, OPT_KBS_PINNED_PUBKEY, OPT_KBS_BROKER_KEY, OPT_MIN_MODEL_VERSION, OPT_PRECISION };

#define BROKER_KEY_FILE_MAX 4096u

/* --kbs and the options that only make sense with it. */
struct run_kbs_args {
    const char *url, *tee, *sim_dir, *cacert, *pinned_pubkey, *broker_key;
    uint64_t key_version;
    int insecure_http, any_option;
};

struct run_args {
    const char *model, *input, *output, *key;
    uint64_t threads, repeat, min_model_version;
    uint32_t precision;
    int stats;
    struct run_kbs_args kbs;
};

/* --stats: wall-clock times (the CLI may read the clock; the library never does). */
struct run_stats {
    double load_s;
    long base_rss_kib, base_hwm_kib; /* VmRSS and VmHWM before the load: the process's own baseline */
    double *run_s;      /* one per run */
    uint64_t runs;
};

static void stats_print(struct run_stats *st)
{
    qsort(st->run_s, st->runs, sizeof *st->run_s, veil_double_cmp);
    double p50 = st->runs % 2 ? st->run_s[st->runs / 2] : (st->run_s[st->runs / 2 - 1] + st->run_s[st->runs / 2]) / 2;
    uint64_t k = (uint64_t)ceil(0.99 * (double)st->runs);
    printf("{\"load_s\": %.6f, \"runs\": %llu, \"p50_s\": %.6f, \"p99_s\": %.6f, \"min_s\": %.6f, "
           "\"peak_rss_kib\": %ld, \"base_rss_kib\": %ld, \"base_hwm_kib\": %ld}\n", st->load_s,
           (unsigned long long)st->runs, p50, st->run_s[k ? k - 1 : 0], st->run_s[0], veil_peak_rss_kib(),
           st->base_rss_kib, st->base_hwm_kib);
}

static const struct option run_opts[] = {
    {"input", required_argument, NULL, 'i'},
    {"output", required_argument, NULL, 'o'},
    {"key", required_argument, NULL, 'k'},
    {"threads", required_argument, NULL, OPT_THREADS},
    {"repeat", required_argument, NULL, OPT_REPEAT},
    {"stats", no_argument, NULL, OPT_STATS},
    {"kbs", required_argument, NULL, OPT_KBS},
    {"tee", required_argument, NULL, OPT_TEE},
    {"sim-dir", required_argument, NULL, OPT_SIM_DIR},
    {"key-version", required_argument, NULL, OPT_KEY_VERSION},
    {"kbs-cacert", required_argument, NULL, OPT_KBS_CACERT},
    {"kbs-insecure-http", no_argument, NULL, OPT_KBS_INSECURE_HTTP},
    {"kbs-pinned-pubkey", required_argument, NULL, OPT_KBS_PINNED_PUBKEY},
    {"kbs-broker-key", required_argument, NULL, OPT_KBS_BROKER_KEY},
    {"min-model-version", required_argument, NULL, OPT_MIN_MODEL_VERSION},
    {"precision", required_argument, NULL, OPT_PRECISION},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

static int parse_kbs_opt(struct run_kbs_args *k, int c)
{
    k->any_option = 1;
    switch (c) {
    case OPT_TEE: k->tee = optarg; return CLI_OK;
    case OPT_SIM_DIR: k->sim_dir = optarg; return CLI_OK;
    case OPT_KBS_CACERT: k->cacert = optarg; return CLI_OK;
    case OPT_KBS_INSECURE_HTTP: k->insecure_http = 1; return CLI_OK;
    case OPT_KBS_PINNED_PUBKEY: k->pinned_pubkey = optarg; return CLI_OK;
    case OPT_KBS_BROKER_KEY: k->broker_key = optarg; return CLI_OK;
    default: break;
    }
    if (cli_parse_u64(optarg, 1, UINT32_MAX, &k->key_version) != 0)
        return cli_usage_error("run", "--key-version must be a whole number from 1 to %u", UINT32_MAX);
    return CLI_OK;
}

static int parse_opt(struct run_args *a, int c)
{
    switch (c) {
    case OPT_KBS: a->kbs.url = optarg; return CLI_OK;
    case OPT_TEE:
    case OPT_SIM_DIR:
    case OPT_KEY_VERSION:
    case OPT_KBS_CACERT:
    case OPT_KBS_PINNED_PUBKEY:
    case OPT_KBS_BROKER_KEY:
    case OPT_KBS_INSECURE_HTTP: return parse_kbs_opt(&a->kbs, c);
    case OPT_MIN_MODEL_VERSION:
        if (cli_parse_u64(optarg, 1, UINT64_MAX >> 1, &a->min_model_version) != 0)
            return cli_usage_error("run", "--min-model-version must be a whole number from 1 to 2^63-1");
        return CLI_OK;
    case 'i': a->input = optarg; return CLI_OK;
    case 'o': a->output = optarg; return CLI_OK;
    case 'k': a->key = optarg; return CLI_OK;
    case OPT_THREADS:
        if (cli_parse_u64(optarg, 1, VEIL_MAX_THREADS, &a->threads) != 0)
            return cli_usage_error("run", "--threads must be a whole number from 1 to %u", VEIL_MAX_THREADS);
        return CLI_OK;
    case OPT_REPEAT:
        if (cli_parse_u64(optarg, 1, 1000000, &a->repeat) != 0)
            return cli_usage_error("run", "--repeat must be a whole number from 1 to 1000000");
        return CLI_OK;
    case OPT_STATS: a->stats = 1; return CLI_OK;
    case OPT_PRECISION:
        if (strcmp(optarg, "fp32") != 0 && strcmp(optarg, "bf16") != 0)
            return cli_usage_error("run", "--precision must be fp32 or bf16, not '%.32s'", optarg);
        a->precision = strcmp(optarg, "bf16") == 0 ? VEIL_ENGINE_BF16 : VEIL_ENGINE_FP32;
        return CLI_OK;
    case ':': return cli_usage_error("run", "an option needs a value");
    default: return cli_usage_error("run", "unknown option");
    }
}

/* --kbs: exactly one key source, a TEE named, --sim-dir exactly for sim; its options only with it. */
static int check_kbs_args(const struct run_args *a)
{
    const struct run_kbs_args *k = &a->kbs;
    if (k->url == NULL)
        return k->any_option ? cli_usage_error("run", "--tee, --sim-dir, --key-version, --kbs-cacert, "
                                                      "--kbs-pinned-pubkey, --kbs-broker-key and "
                                                      "--kbs-insecure-http go with --kbs URL")
                             : CLI_OK;
    if (a->key != NULL)
        return cli_usage_error("run", "give the model key with --key or fetch it with --kbs, not both");
    veil_tee tee;
    if (k->tee == NULL)
        return cli_usage_error("run", "--kbs needs --tee: the TEE whose evidence is sent (sgx, tdx, snp, auto; "
                                      "sim or sample for development)");
    if (veil_tee_from_name(k->tee, &tee) != VEIL_OK)
        return cli_usage_error("run", "--tee must be sim, sample, sgx, tdx, snp or auto, not '%s'", k->tee);
    if ((tee == VEIL_TEE_SIM) != (k->sim_dir != NULL))
        return cli_usage_error("run", tee == VEIL_TEE_SIM ? "--tee sim needs --sim-dir DIR (see 'veil attest sim-init')"
                                                          : "--sim-dir goes with --tee sim only");
    if (k->insecure_http && tee != VEIL_TEE_SIM)
        return cli_usage_error("run", "--kbs-insecure-http goes with --tee sim only: every other TEE needs https://");
    return CLI_OK;
}

static int parse_args(int argc, char **argv, struct run_args *a, int *help)
{
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":i:o:k:h", run_opts, NULL)) != -1) {
        if (c == 'h') {
            *help = 1;
            return CLI_OK;
        }
        int rc = parse_opt(a, c);
        if (rc != CLI_OK)
            return rc;
    }
    if (optind != argc - 1)
        return cli_usage_error("run", "give exactly one model");
    a->model = argv[optind];
    if (a->input == NULL || a->output == NULL)
        return cli_usage_error("run", "--input and --output are required");
    return check_kbs_args(a);
}

static int is_sealed(const char *path, int *sealed)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return cli_fail("cannot open %s", path);
    char magic[8] = {0};
    size_t n = fread(magic, 1, sizeof magic, f);
    fclose(f);
    *sealed = n == sizeof magic && memcmp(magic, "\x89VEIL\r\n\x1a", sizeof magic) == 0;
    return CLI_OK;
}

static void warn_development_tee(veil_tee tee)
{
    if (tee == VEIL_TEE_SIM)
        cli_warn("SIMULATION TEE: the evidence is signed by a key on an ordinary machine; it protects nothing and "
                 "a broker should release keys to it only for development");
    else if (tee == VEIL_TEE_SAMPLE)
        cli_warn("SAMPLE TEE: the evidence is unsigned and proves nothing; for interoperability tests only");
}

/* --kbs-broker-key: the PEM text, NUL-terminated, into b. */
static int read_broker_key(const char *path, struct veil_buf *b)
{
    if (path == NULL)
        return CLI_OK;
    struct veil_result r = veil_file_read_all(path, BROKER_KEY_FILE_MAX, b);
    if (veil_ok(r))
        r = veil_buf_append_u8(b, 0);
    return veil_ok(r) ? CLI_OK : cli_fail_status(r.status);
}

/* The model key released by the broker for the model id in the sealed file's header, into locked memory, and the
 * release's minimum model version (0: none). */
static int fetch_key(const struct run_args *a, const struct veil_sealed_info *info, struct veil_secure_mem *key,
                     uint64_t *min_model_version)
{
    const struct run_kbs_args *k = &a->kbs;
    veil_tee tee = VEIL_TEE_AUTO;
    if (veil_tee_from_name(k->tee, &tee) != VEIL_OK)
        return cli_usage_error("run", "--tee must be sim, sample, sgx, tdx, snp or auto, not '%s'", k->tee);
    warn_development_tee(tee);
    VEIL_DEFER(veil_buf_cleanup) struct veil_buf pem = {0};
    int rc = read_broker_key(k->broker_key, &pem);
    if (rc != CLI_OK)
        return rc;
    struct veil_provider_config pc = {.sim_dir = k->sim_dir};
    struct veil_kbs_fetch_options o = {.url = k->url, .cacert = k->cacert, .allow_insecure_http = k->insecure_http,
                                       .tee = tee, .provider = &pc, .tls_pinned_pubkey = k->pinned_pubkey,
                                       .broker_pubkey_pem = k->broker_key ? (const char *)pem.data : NULL,
                                       .now = (uint64_t)time(NULL)}; /* the CLI may read the clock */
    if (!veil_ok(veil_secure_alloc(key, veil_key_size(), 0)))
        return cli_fail("cannot allocate memory for the key");
    size_t size = 0;
    veil_status st = veil_kbs_fetch_release(&o, info->model_id, (uint32_t)k->key_version, key->data, key->size,
                                            &size, min_model_version);
    if (st != VEIL_OK) {
        veil_secure_free(key);
        return cli_fail_status(st);
    }
    key->size = size;
    return CLI_OK;
}

/* The key from --key or --kbs (with the broker's minimum model version, 0 when it sent none). */
static int model_key(const struct run_args *a, struct veil_sealed_info *info, struct veil_secure_mem *key,
                     uint64_t *broker_min)
{
    if (a->key == NULL && a->kbs.url == NULL)
        return cli_usage_error("run", "%s is a sealed model: give its key with --key, or fetch it with --kbs",
                               a->model);
    if (a->key != NULL)
        return cli_read_key(a->key, key);
    veil_status st = veil_inspect_file(a->model, info);
    return st != VEIL_OK ? cli_fail_status(st) : fetch_key(a, info, key, broker_min);
}

/* A released key that does not open the file: most often the file is wrapped under an older key version. */
static int open_failed(const struct run_args *a, const struct veil_sealed_info *info, veil_status st)
{
    if (st != VEIL_ERR_KEY || a->kbs.url == NULL)
        return cli_fail_open(st, a->model, a->key != NULL ? a->key : "the key");
    if (a->kbs.key_version == 0)
        return cli_fail("the key broker's newest key of '%s' does not open %s; its header names key version %u "
                        "(try --key-version %u)", info->model_id, a->model, info->key_version, info->key_version);
    return cli_fail("key version %llu of '%s' released by the key broker does not open %s; its header names key "
                    "version %u", (unsigned long long)a->kbs.key_version, info->model_id, a->model, info->key_version);
}

static int load_sealed(const struct run_args *a, const struct veil_engine_options *opts, veil_engine **out)
{
    struct veil_secure_mem key = {0};
    struct veil_sealed_info info;
    memset(&info, 0, sizeof info);
    uint64_t broker_min = 0;
    int rc = model_key(a, &info, &key, &broker_min);
    if (rc != CLI_OK)
        return rc;
    struct veil_open_options oo = {.threads = opts->threads,
                                   .min_model_version = broker_min > a->min_model_version ? broker_min
                                                                                          : a->min_model_version};
    veil_model *model = NULL;
    veil_status st = veil_model_open(a->model, key.data, key.size, &oo, &model);
    veil_secure_free(&key);
    if (st != VEIL_OK)
        return open_failed(a, &info, st);
    /* the model is opened for this engine alone: each weight's plaintext goes once the engine has its own copy */
    st = veil_engine_load_model_releasing(model, opts, NULL, 0, out);
    veil_model_free(model); /* the engine keeps its weights: its own copy, or (a large model) a reference */
    return st == VEIL_OK ? CLI_OK : cli_fail_status(st);
}

static int load_plain(const struct run_args *a, const struct veil_engine_options *opts, veil_engine **out)
{
    veil_status st = veil_engine_load_onnx_file(a->model, opts, NULL, 0, out); /* with its external data */
    return st == VEIL_OK ? CLI_OK : cli_fail_status(st);
}

static void shape_text(uint32_t rank, const int64_t *dims, char *buf, size_t size)
{
    int n = snprintf(buf, size, "(");
    for (uint32_t i = 0; i < rank && n > 0 && (size_t)n < size; i++)
        n += snprintf(buf + n, size - (size_t)n, "%s%lld", i ? ", " : "", (long long)dims[i]);
    if (n > 0 && (size_t)n < size)
        snprintf(buf + n, size - (size_t)n, ")");
}

static int check_input(veil_engine *e, const struct npy_array *x, struct veil_engine_io *in)
{
    if (veil_engine_input_count(e) != 1)
        return cli_fail("the model takes %zu inputs; veil run feeds exactly one", veil_engine_input_count(e));
    veil_status st = veil_engine_input(e, 0, in);
    if (st != VEIL_OK)
        return cli_fail_status(st);
    if (in->rank == x->rank && memcmp(in->dims, x->dims, x->rank * sizeof x->dims[0]) == 0)
        return CLI_OK;
    char want[160], got[160];
    shape_text(in->rank, in->dims, want, sizeof want);
    shape_text(x->rank, x->dims, got, sizeof got);
    return cli_fail("input '%s' must have shape %s; %s has shape %s", in->name, want, "the .npy file", got);
}

static int run_and_write(veil_engine *e, const struct run_args *a, const struct npy_array *x, struct run_stats *stats)
{
    struct veil_engine_io in, out;
    int rc = check_input(e, x, &in);
    if (rc != CLI_OK)
        return rc;
    veil_status st = veil_engine_output(e, 0, &out);
    if (st != VEIL_OK)
        return cli_fail_status(st);
    if (veil_engine_output_count(e) > 1)
        cli_warn("the model has %zu outputs; writing the first ('%s')", veil_engine_output_count(e), out.name);
    size_t out_count = veil_engine_output_count(e);
    float **outs = calloc(out_count, sizeof *outs);
    size_t *sizes = calloc(out_count, sizeof *sizes);
    for (size_t i = 0; outs != NULL && sizes != NULL && i < out_count; i++) {
        struct veil_engine_io io;
        if (veil_engine_output(e, i, &io) == VEIL_OK && (outs[i] = malloc(io.size ? io.size : 1)) != NULL)
            sizes[i] = io.size;
    }
    const float *const inputs[1] = {x->data};
    size_t in_size = x->count * sizeof(float);
    st = VEIL_ERR_NOMEM;
    for (uint64_t k = 0; k < stats->runs && outs != NULL && sizes != NULL; k++) {
        double t0 = veil_now_s();
        if ((st = veil_engine_run(e, inputs, &in_size, 1, outs, sizes, out_count)) != VEIL_OK)
            break;
        stats->run_s[k] = veil_now_s() - t0;
    }
    rc = st == VEIL_OK ? CLI_OK : st == VEIL_ERR_NOMEM && (outs == NULL || sizes == NULL)
                                      ? cli_fail("out of memory") : cli_fail_status(st);
    if (rc == CLI_OK) {
        struct veil_result r = npy_write(a->output, outs[0], out.rank, out.dims);
        rc = veil_ok(r) ? CLI_OK : cli_fail_status(r.status);
    }
    for (size_t i = 0; outs != NULL && i < out_count; i++)
        free(outs[i]);
    free(outs);
    free(sizes);
    return rc;
}

int cmd_run(int argc, char **argv)
{
    struct run_args a = {0};
    int help = 0, sealed = 0;
    int rc = parse_args(argc, argv, &a, &help);
    if (help) {
        fputs(run_help, stdout);
        return CLI_OK;
    }
    if (rc != CLI_OK || (rc = is_sealed(a.model, &sealed)) != CLI_OK)
        return rc;
    if (!sealed && a.kbs.url != NULL)
        return cli_usage_error("run", "%s is not a sealed model: --kbs fetches the key of a sealed one", a.model);
    if (!sealed && a.min_model_version != 0)
        return cli_usage_error("run", "%s is not a sealed model: --min-model-version judges a sealed header", a.model);
    struct npy_array x = {0};
    struct veil_result r = npy_read(a.input, VEIL_ENGINE_MAX_ACTIVATION_SIZE, &x);
    if (!veil_ok(r))
        return cli_fail_status(r.status);
    struct veil_engine_options opts = {.threads = (unsigned)a.threads, .batch = x.rank > 0 ? (uint64_t)x.dims[0] : 0,
                                       .precision = a.precision};
    veil_engine *e = NULL;
    struct run_stats stats = {.runs = a.repeat ? a.repeat : 1};
    stats.run_s = calloc(stats.runs, sizeof *stats.run_s);
    if (stats.run_s == NULL) {
        npy_array_cleanup(&x);
        return cli_fail("out of memory");
    }
    stats.base_rss_kib = veil_rss_kib();
    stats.base_hwm_kib = veil_peak_rss_kib();
    double t0 = veil_now_s();
    rc = sealed ? load_sealed(&a, &opts, &e) : load_plain(&a, &opts, &e);
    stats.load_s = veil_now_s() - t0;
    if (rc == CLI_OK)
        rc = run_and_write(e, &a, &x, &stats);
    if (rc == CLI_OK && a.stats)
        stats_print(&stats);
    free(stats.run_s);
    veil_engine_free(e);
    npy_array_cleanup(&x);
    return rc;
}
