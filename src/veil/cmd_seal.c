/* SPDX-License-Identifier: Apache-2.0 */
/* veil seal / inspect / unseal / rewrap / reseal */
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "core/limits.h"

static const char seal_help[] =
    "usage: veil seal MODEL.onnx -o OUT.veil --model-id ID --key KEY [options]\n\n"
    "Encrypts every weight of an ONNX model, and by default its graph, under a fresh data key wrapped by the\n"
    "model key (docs/spec/sealed-format.md). OUT is written under a temporary name and renamed on success.\n"
    "A model with ONNX external data (weights in files beside it, as exporters write models past 2 GiB) is\n"
    "read from its directory, never from outside it; the sealed file holds everything.\n\n"
    "  -o, --output OUT        the sealed file to write (required)\n"
    "      --model-id ID       the model's id at the key broker: 1-128 of [A-Za-z0-9._-] (required)\n"
    "  -k, --key KEY           the model key file, 32 raw bytes (required; see 'veil keygen')\n"
    "      --key-version N     version of the model key (default 1)\n"
    "      --model-version N   owner-chosen monotonic model version for anti-rollback (default 1)\n"
    "      --public-graph      store the graph unencrypted (still authenticated); weights stay encrypted\n"
    "      --chunk-size N      bytes per AES-GCM chunk, a power of two from 4096 to 2^30 (default 1048576)\n"
    "      --threads N         encryption threads (default: all CPUs)\n"
    "  -h, --help              show this help\n";

static const char inspect_help[] =
    "usage: veil inspect FILE.veil [--json]\n\n"
    "Checks the layout of a sealed file and prints its public header: model id, versions, sizes. Needs no key\n"
    "and authenticates nothing (only unseal or a runtime holding the key can).\n\n"
    "      --json   print one JSON object\n"
    "  -h, --help   show this help\n";

static const char unseal_help[] =
    "usage: veil unseal FILE.veil -o MODEL.onnx --key KEY [--threads N]\n\n"
    "Owner-side recovery: authenticates every byte, then writes the original ONNX model (mode 0600) under a\n"
    "temporary name renamed on success. Nothing is written unless the whole file verifies. A model past\n"
    "protobuf's 2 GiB limit is written with ONNX external data: MODEL.onnx plus MODEL.onnx.ID.data\n"
    "(ID: 16 hex digits of the sealed file's id).\n\n"
    "  -o, --output MODEL.onnx   the model to write (required)\n"
    "  -k, --key KEY             the model key file (required)\n"
    "      --threads N           decryption threads (default: all CPUs)\n"
    "  -h, --help                show this help\n";

static const char rewrap_help[] =
    "usage: veil rewrap FILE.veil --key OLD --new-key NEW --new-key-version N [-o OUT.veil]\n\n"
    "Rotates the model key: re-wraps the file's data key under NEW without re-encrypting any weight. Writes\n"
    "OUT (default: FILE itself, replaced atomically on success). This is rotation, not compromise recovery:\n"
    "the data key is unchanged, so OLD plus an old copy of FILE still decrypts OUT. After a leak use\n"
    "'veil reseal'.\n\n"
    "  -k, --key OLD               the current model key file (required)\n"
    "      --new-key NEW           the new model key file (required)\n"
    "      --new-key-version N     the new key's version, >= 1 (required)\n"
    "  -o, --output OUT            where to write (default: replace FILE)\n"
    "  -h, --help                  show this help\n";

static const char reseal_help[] =
    "usage: veil reseal FILE.veil --key OLD [--new-key NEW --new-key-version N] [--model-version V] [-o OUT.veil]\n\n"
    "Compromise recovery: authenticates and decrypts FILE, then seals the same model again under a fresh data\n"
    "key and a fresh file id, re-encrypting every weight. Unlike 'veil rewrap' (key rotation, which keeps the\n"
    "data key), an old model key together with an old copy of FILE reveals nothing about OUT. Model id, chunk\n"
    "size and public-graph setting are kept. Writes OUT (default: FILE itself, replaced atomically on success).\n"
    "After a leak: reseal under a new key (and a higher --model-version), register the new key version at the\n"
    "broker, revoke the old one, and raise the policy's min_model_version.\n\n"
    "  -k, --key OLD               the current model key file (required)\n"
    "      --new-key NEW           a new model key file (default: keep OLD)\n"
    "      --new-key-version N     the new key's version, >= 1 (required with --new-key)\n"
    "      --model-version V       a new model version, not lower than FILE's (default: FILE's)\n"
    "      --threads N             decryption/encryption threads (default: all CPUs)\n"
    "  -o, --output OUT            where to write (default: replace FILE)\n"
    "  -h, --help                  show this help\n";

enum { OPT_MODEL_ID = 256, OPT_KEY_VERSION, OPT_MODEL_VERSION, OPT_PUBLIC_GRAPH, OPT_CHUNK_SIZE, OPT_THREADS,
       OPT_JSON, OPT_NEW_KEY, OPT_NEW_KEY_VERSION };

struct cli_args {
    const char *cmd;
    const char *input, *output, *key, *new_key, *model_id;
    uint64_t key_version, model_version, chunk_size, threads, new_key_version;
    int public_graph, json, help;
};

static const struct option all_opts[] = {
    {"output", required_argument, NULL, 'o'},
    {"key", required_argument, NULL, 'k'},
    {"model-id", required_argument, NULL, OPT_MODEL_ID},
    {"key-version", required_argument, NULL, OPT_KEY_VERSION},
    {"model-version", required_argument, NULL, OPT_MODEL_VERSION},
    {"public-graph", no_argument, NULL, OPT_PUBLIC_GRAPH},
    {"chunk-size", required_argument, NULL, OPT_CHUNK_SIZE},
    {"threads", required_argument, NULL, OPT_THREADS},
    {"json", no_argument, NULL, OPT_JSON},
    {"new-key", required_argument, NULL, OPT_NEW_KEY},
    {"new-key-version", required_argument, NULL, OPT_NEW_KEY_VERSION},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

static int number_opt(struct cli_args *a, const char *name, uint64_t min, uint64_t max, uint64_t *out)
{
    if (cli_parse_u64(optarg, min, max, out) != 0)
        return cli_usage_error(a->cmd, "--%s must be a whole number from %llu to %llu, not '%s'", name,
                               (unsigned long long)min, (unsigned long long)max, optarg);
    return CLI_OK;
}

static int apply_opt(void *ctx, int c)
{
    struct cli_args *a = ctx;
    switch (c) {
    case 'o': a->output = optarg; return CLI_OK;
    case 'k': a->key = optarg; return CLI_OK;
    case 'h': a->help = 1; return CLI_OK;
    case OPT_MODEL_ID: a->model_id = optarg; return CLI_OK;
    case OPT_PUBLIC_GRAPH: a->public_graph = 1; return CLI_OK;
    case OPT_JSON: a->json = 1; return CLI_OK;
    case OPT_NEW_KEY: a->new_key = optarg; return CLI_OK;
    case OPT_KEY_VERSION: return number_opt(a, "key-version", 1, UINT32_MAX, &a->key_version);
    case OPT_NEW_KEY_VERSION: return number_opt(a, "new-key-version", 1, UINT32_MAX, &a->new_key_version);
    case OPT_MODEL_VERSION: return number_opt(a, "model-version", 1, UINT64_MAX, &a->model_version);
    case OPT_CHUNK_SIZE: return number_opt(a, "chunk-size", 4096, 1u << 30, &a->chunk_size);
    case OPT_THREADS: return number_opt(a, "threads", 1, VEIL_MAX_THREADS, &a->threads);
    default: return cli_usage_error(a->cmd, "unknown option");
    }
}

/* allowed: the option characters/ids this command accepts, as a list ending in 0. */
static int parse_args(int argc, char **argv, const int *allowed, struct cli_args *a)
{
    const struct cli_getopt_spec spec = {a->cmd, ":o:k:h", all_opts, allowed, apply_opt};
    int rc = cli_getopt(argc, argv, &spec, a);
    if (rc != CLI_OK || a->help)
        return rc;
    if (optind >= argc)
        return cli_usage_error(a->cmd, "missing input file");
    a->input = argv[optind];
    if (optind + 1 != argc)
        return cli_usage_error(a->cmd, "unexpected argument '%s'", argv[optind + 1]);
    return CLI_OK;
}

static int require(const struct cli_args *a, const char *value, const char *what)
{
    return value != NULL ? CLI_OK : cli_usage_error(a->cmd, "%s is required", what);
}

static int do_seal(const struct cli_args *a)
{
    struct veil_secure_mem key = {0};
    int rc = cli_read_key(a->key, &key);
    if (rc != CLI_OK)
        return rc;
    struct cli_progress bar;
    cli_progress_init(&bar, "sealing");
    struct veil_seal_options opt = {.model_id = a->model_id, .key_version = (uint32_t)a->key_version,
                                    .model_version = a->model_version, .chunk_size = (uint32_t)a->chunk_size,
                                    .public_graph = a->public_graph, .threads = (unsigned)a->threads,
                                    .progress = cli_progress_cb, .progress_ctx = &bar};
    veil_status st = veil_seal_file(a->input, key.data, key.size, &opt, a->output);
    cli_progress_finish(&bar);
    veil_secure_free(&key);
    return st == VEIL_OK ? CLI_OK : cli_fail_status(st);
}

int cmd_seal(int argc, char **argv)
{
    static const int allowed[] = {'o', 'k', OPT_MODEL_ID, OPT_KEY_VERSION, OPT_MODEL_VERSION, OPT_PUBLIC_GRAPH,
                                  OPT_CHUNK_SIZE, OPT_THREADS, 0};
    struct cli_args a = {.cmd = "seal"};
    int rc = parse_args(argc, argv, allowed, &a);
    if (rc != CLI_OK || a.help)
        return a.help ? (fputs(seal_help, stdout), CLI_OK) : rc;
    if ((rc = require(&a, a.output, "-o OUT.veil")) != CLI_OK || (rc = require(&a, a.key, "--key KEY")) != CLI_OK ||
        (rc = require(&a, a.model_id, "--model-id ID")) != CLI_OK)
        return rc;
    return do_seal(&a);
}

static void print_info(const struct veil_sealed_info *i)
{
    printf("model id:        %s\n", i->model_id);
    printf("format:          %u.%u\n", i->format_major, i->format_minor);
    printf("model version:   %llu\n", (unsigned long long)i->model_version);
    printf("key version:     %u\n", i->key_version);
    printf("graph:           %s, %llu bytes\n", i->public_graph ? "public" : "encrypted",
           (unsigned long long)i->graph_size);
    printf("tensors:         %llu, %llu bytes\n", (unsigned long long)i->tensor_count,
           (unsigned long long)i->tensor_data_size);
    printf("chunk size:      %u\n", i->chunk_size);
    printf("file id:         ");
    for (size_t k = 0; k < sizeof i->file_id; k++)
        printf("%02x", i->file_id[k]);
    printf("\nfile size:       %llu\n", (unsigned long long)i->file_size);
}

int cmd_inspect(int argc, char **argv)
{
    static const int allowed[] = {OPT_JSON, 0};
    struct cli_args a = {.cmd = "inspect"};
    int rc = parse_args(argc, argv, allowed, &a);
    if (rc != CLI_OK || a.help)
        return a.help ? (fputs(inspect_help, stdout), CLI_OK) : rc;
    if (a.json) {
        char *json = NULL;
        veil_status st = veil_inspect_json(a.input, &json);
        if (st != VEIL_OK)
            return cli_fail_status(st);
        printf("%s\n", json);
        veil_free(json);
        return CLI_OK;
    }
    struct veil_sealed_info info;
    veil_status st = veil_inspect_file(a.input, &info);
    if (st != VEIL_OK)
        return cli_fail_status(st);
    print_info(&info);
    return CLI_OK;
}

static int do_unseal(const struct cli_args *a)
{
    struct veil_secure_mem key = {0};
    int rc = cli_read_key(a->key, &key);
    if (rc != CLI_OK)
        return rc;
    struct cli_progress bar;
    cli_progress_init(&bar, "unsealing");
    struct veil_open_options opt = {.threads = (unsigned)a->threads, .progress = cli_progress_cb,
                                    .progress_ctx = &bar};
    veil_status st = veil_unseal_file(a->input, key.data, key.size, &opt, a->output);
    cli_progress_finish(&bar);
    veil_secure_free(&key);
    return st == VEIL_OK ? CLI_OK : cli_fail_open(st, a->input, a->key);
}

int cmd_unseal(int argc, char **argv)
{
    static const int allowed[] = {'o', 'k', OPT_THREADS, 0};
    struct cli_args a = {.cmd = "unseal"};
    int rc = parse_args(argc, argv, allowed, &a);
    if (rc != CLI_OK || a.help)
        return a.help ? (fputs(unseal_help, stdout), CLI_OK) : rc;
    if ((rc = require(&a, a.output, "-o MODEL.onnx")) != CLI_OK || (rc = require(&a, a.key, "--key KEY")) != CLI_OK)
        return rc;
    return do_unseal(&a);
}

static int do_rewrap(const struct cli_args *a)
{
    struct veil_secure_mem old_key = {0}, new_key = {0};
    int rc = cli_read_key(a->key, &old_key);
    if (rc == CLI_OK)
        rc = cli_read_key(a->new_key, &new_key);
    if (rc == CLI_OK) {
        veil_status st = veil_rewrap_file(a->input, old_key.data, old_key.size, new_key.data, new_key.size,
                                          (uint32_t)a->new_key_version, a->output ? a->output : a->input);
        rc = st == VEIL_OK ? CLI_OK : cli_fail_open(st, a->input, a->key);
    }
    veil_secure_free(&old_key);
    veil_secure_free(&new_key);
    return rc;
}

int cmd_rewrap(int argc, char **argv)
{
    static const int allowed[] = {'o', 'k', OPT_NEW_KEY, OPT_NEW_KEY_VERSION, 0};
    struct cli_args a = {.cmd = "rewrap"};
    int rc = parse_args(argc, argv, allowed, &a);
    if (rc != CLI_OK || a.help)
        return a.help ? (fputs(rewrap_help, stdout), CLI_OK) : rc;
    if ((rc = require(&a, a.key, "--key OLD")) != CLI_OK || (rc = require(&a, a.new_key, "--new-key NEW")) != CLI_OK)
        return rc;
    if (a.new_key_version == 0)
        return cli_usage_error(a.cmd, "--new-key-version N is required");
    return do_rewrap(&a);
}

static int do_reseal(const struct cli_args *a)
{
    struct veil_secure_mem old_key = {0}, new_key = {0};
    int rc = cli_read_key(a->key, &old_key);
    if (rc == CLI_OK && a->new_key != NULL)
        rc = cli_read_key(a->new_key, &new_key);
    if (rc == CLI_OK) {
        struct cli_progress bar;
        cli_progress_init(&bar, "resealing");
        struct veil_reseal_options opt = {.new_key_version = (uint32_t)a->new_key_version,
                                          .model_version = a->model_version, .threads = (unsigned)a->threads,
                                          .progress = cli_progress_cb, .progress_ctx = &bar};
        veil_status st = veil_reseal_file(a->input, old_key.data, old_key.size, new_key.data, new_key.size, &opt,
                                          a->output ? a->output : a->input);
        cli_progress_finish(&bar);
        rc = st == VEIL_OK ? CLI_OK : cli_fail_open(st, a->input, a->key);
    }
    veil_secure_free(&old_key);
    veil_secure_free(&new_key);
    return rc;
}

int cmd_reseal(int argc, char **argv)
{
    static const int allowed[] = {'o', 'k', OPT_NEW_KEY, OPT_NEW_KEY_VERSION, OPT_MODEL_VERSION, OPT_THREADS, 0};
    struct cli_args a = {.cmd = "reseal"};
    int rc = parse_args(argc, argv, allowed, &a);
    if (rc != CLI_OK || a.help)
        return a.help ? (fputs(reseal_help, stdout), CLI_OK) : rc;
    if ((rc = require(&a, a.key, "--key OLD")) != CLI_OK)
        return rc;
    if ((a.new_key != NULL) != (a.new_key_version != 0))
        return cli_usage_error(a.cmd, "--new-key and --new-key-version go together");
    return do_reseal(&a);
}
