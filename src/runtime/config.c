/* SPDX-License-Identifier: Apache-2.0 */
/* veil-runtime settings: the runtime's rows of the shared configuration table (src/daemon/config.h). */
#include <string.h>

#include "cache/local.h"
#include "runtime.h"

#define STR(f, d, dd, doc) VD_STR(struct rt_config, f, d, dd, doc)
#define LIST(f, doc) VD_LIST(struct rt_config, f, "", doc)
#define U64(f, d, dd, lo, hi, doc) VD_U64(struct rt_config, f, d, dd, lo, hi, doc)

static const struct vd_setting settings[] = {
    STR(listen, "127.0.0.1:8000", NULL,
        "address and port to serve KServe v2 on: IPv4 'A.B.C.D:PORT' or IPv6 '[ADDR]:PORT'"),
    STR(tls, "on", NULL, "'on': HTTPS with a key pair and self-signed certificate created in memory at start and "
                         "bound into the attestation; 'off': plain HTTP, allowed only on loopback with tee = sim"),
    STR(tee, "auto", "sim", "the TEE whose evidence proves this runtime: sim, sgx, tdx, snp, or auto (detect sgx, "
                            "tdx or snp)"),
    LIST(models, "a model to serve, NAME:PATH.veil (repeatable; the name clients use in /v2/models/NAME)"),
    STR(key_source, "kbs", NULL, "where model keys come from: 'kbs' (veil-kbs or a Trustee KBS over RCAR) or 'cache' "
                                 "(veil-cache on this node, keys under leases: --cache SOCKET)"),
    STR(kbs_url, "", NULL, "the key broker: https://HOST:PORT (plain http only to a loopback broker with tee = sim)"),
    STR(kbs_cacert, "", NULL, "PEM CA bundle that verifies the broker's certificate (https)"),
    STR(cache_socket, "", NULL, "key_source = cache: veil-cache's Unix socket, or with tee = sgx tls://127.0.0.1:PORT "
                                "(its local_listen: TLS 1.3 and mutual SGX local attestation)"),
    STR(cache_measurement, "", NULL, "key_source = cache: the cache's measurement (96 hex digits), checked when set; "
                                     "tee = sgx (required): its MRENCLAVE (64 hex) or MRSIGNER:ISVPRODID:MIN_ISVSVN"),
    STR(sim_dir, "", NULL, "tee = sim: the simulation platform's directory (veil attest sim-init)"),
    STR(sim_config, "", NULL, "tee = sim: a configuration file measured with the executable (optional)"),
    STR(gramine_root, "", NULL, "tee = sgx: Gramine's attestation directory (default /dev/attestation)"),
    STR(tsm_root, "", NULL, "tee = tdx/snp: the configfs-tsm report directory (default "
                            "/sys/kernel/config/tsm/report)"),
    U64(max_batch, "8", NULL, 1, 65536, "the largest batch one request may carry"),
    U64(max_dim, "4096", NULL, 1, VEIL_SERVE_MAX_DIM, "the largest size of a dynamic input dim other than the batch "
                                                     "(a sequence length) one request may give"),
    U64(plan_dim, "8", NULL, 1, VEIL_SERVE_MAX_DIM, "the size planned at load for such a dim (the model's first plan)"),
    STR(precision, "fp32", NULL, "the engine's precision for every model: fp32, or bf16 (convolutions and matrix "
                                 "products on bfloat16 with AMX; the owner's usage policy may forbid it)"),
    LIST(model_precision, "NAME:fp32|bf16: another precision for one model (repeatable)"),
    U64(workers, "2", NULL, 1, RT_MAX_WORKERS, "engine instances per planned batch size: requests of one model "
                                               "and batch size run concurrently up to this many"),
    U64(engine_threads, "0", NULL, 0, 256, "OpenMP threads of each engine instance; 0: online CPUs / workers"),
    U64(max_plans, "4", NULL, 1, RT_MAX_PLANS, "input shapes (batch sizes, sequence lengths) planned at once per "
                                               "model (least recently used idle plan evicted)"),
    U64(plan_rate, "2", NULL, 0, 1000, "new plans (input shapes not planned yet) made per second per model, "
                                       "after a burst of max_plans; past it such requests get 503 with Retry-After. "
                                       "0: no limit"),
    U64(lock_memory, "0", NULL, 0, 1, "1: mlock the decrypted weights and activations (fails when refused)"),
    U64(threads, "0", NULL, 0, 1024, "HTTP worker threads; 0: one thread per connection"),
    U64(max_connections, "256", NULL, 1, 65536, "simultaneous connections"),
    U64(connection_timeout_s, "60", NULL, 1, 3600, "idle connection timeout, seconds"),
    U64(max_body_size, "67108864", NULL, 1024, VEIL_SERVE_MAX_REQUEST_SIZE, "largest /infer body, bytes"),
    U64(drain_timeout_s, "30", NULL, 0, 3600, "on SIGTERM, how long requests under way may take to finish, seconds"),
    U64(key_timeout_s, "30", NULL, 1, 600, "timeout of each exchange with the key broker, seconds"),
};

const struct vd_config_table rt_config_table = {"veil-runtime", settings, sizeof settings / sizeof settings[0]};

static VEIL_RESULT check_tls(const struct rt_config *c, veil_tee tee)
{
    VEIL_ENSURE(strcmp(c->tls, "on") == 0 || strcmp(c->tls, "off") == 0, VEIL_ERR_ARG,
                "tls must be 'on' or 'off', not '%.32s'", c->tls);
    if (strcmp(c->tls, "on") == 0)
        return VEIL_RESULT_OK;
    struct sockaddr_storage ss;
    int loopback = 0;
    VEIL_GUARD(vd_listen_parse(c->listen, &ss, &loopback));
    VEIL_ENSURE(loopback && tee == VEIL_TEE_SIM, VEIL_ERR_ARG,
                "tls = off is allowed only on a loopback address with tee = sim: a client cannot bind plain HTTP "
                "to the attestation");
    return VEIL_RESULT_OK;
}

/* Every NAME:PATH well formed, every name once. */
static VEIL_RESULT check_models(const char *models)
{
    char names[RT_MAX_MODELS][RT_MODEL_NAME_MAX + 1];
    size_t count = 0;
    char path[1024];
    for (const char *p = models; *p != '\0';) {
        size_t n = strcspn(p, ",");
        char spec[RT_MODEL_NAME_MAX + sizeof path + 2];
        VEIL_ENSURE(n < sizeof spec, VEIL_ERR_ARG, "model '%.64s...': too long", p);
        memcpy(spec, p, n);
        spec[n] = '\0';
        VEIL_ENSURE(count < RT_MAX_MODELS, VEIL_ERR_LIMIT, "at most %u models", RT_MAX_MODELS);
        VEIL_GUARD(rt_model_spec(spec, names[count], path, sizeof path));
        for (size_t i = 0; i < count; i++)
            VEIL_ENSURE(strcmp(names[i], names[count]) != 0, VEIL_ERR_ARG, "model name %s is given twice",
                        names[count]);
        count++;
        p += n + (p[n] == ',');
    }
    return VEIL_RESULT_OK;
}

static int precision_name(const char *s, size_t n)
{
    return (n == 4 && strncmp(s, "fp32", 4) == 0) || (n == 4 && strncmp(s, "bf16", 4) == 0);
}

/* precision, and every model_precision entry NAME:P naming a served model. */
static VEIL_RESULT check_precisions(const struct rt_config *c)
{
    VEIL_ENSURE(precision_name(c->precision, strlen(c->precision)), VEIL_ERR_ARG, "precision must be fp32 or bf16, "
                "not '%.32s'", c->precision);
    for (const char *p = c->model_precision; *p != '\0';) {
        size_t n = strcspn(p, ","), name = strcspn(p, ":");
        VEIL_ENSURE(name < n && precision_name(p + name + 1, n - name - 1), VEIL_ERR_ARG, "model_precision '%.*s': "
                    "expected NAME:fp32 or NAME:bf16", (int)(n < 64 ? n : 64), p);
        int known = 0;
        for (const char *m = c->models; *m != '\0' && !known;) {
            size_t mn = strcspn(m, ","), colon = strcspn(m, ":");
            known = colon == name && strncmp(m, p, name) == 0;
            m += mn + (m[mn] == ',');
        }
        VEIL_ENSURE(known, VEIL_ERR_ARG, "model_precision '%.*s': no model of that name is served", (int)name, p);
        p += n + (p[n] == ',');
    }
    return VEIL_RESULT_OK;
}

/* key_source = cache: a Unix socket inside one TEE, or tls://ADDR:PORT on loopback between two SGX enclaves, whose
 * cache must be pinned by its SGX identity. tee = auto is checked again once the TEE is known (keys_cache.c). */
static VEIL_RESULT check_cache(const struct rt_config *c, veil_tee tee)
{
    VEIL_ENSURE(c->cache_socket[0] != '\0', VEIL_ERR_ARG,
                "key_source = cache: set cache_socket (or --cache PATH, or --cache tls://127.0.0.1:PORT with SGX)");
    if (strncmp(c->cache_socket, "tls://", 6) != 0) {
        VEIL_ENSURE(strlen(c->cache_socket) < 108, VEIL_ERR_ARG, "cache_socket: longer than 107 bytes");
        VEIL_ENSURE(tee != VEIL_TEE_SGX, VEIL_ERR_ARG, "key_source = cache with tee = sgx: two enclaves cannot share a "
                    "Unix socket; use cache_socket = tls://127.0.0.1:PORT (the cache's local_listen)");
        return VEIL_RESULT_OK;
    }
    VEIL_ENSURE(tee == VEIL_TEE_SGX || tee == VEIL_TEE_AUTO, VEIL_ERR_ARG, "cache_socket = tls://...: the TLS "
                "transport is for two SGX enclaves (tee = sgx); inside one TEE give the cache's Unix socket");
    struct sockaddr_storage ss;
    int loopback = 0;
    if (!veil_ok(vd_listen_parse(c->cache_socket + 6, &ss, &loopback)))
        VEIL_BAIL(VEIL_ERR_ARG, "cache_socket: '%.64s' is not tls://A.B.C.D:PORT or tls://[V6]:PORT", c->cache_socket);
    VEIL_ENSURE(loopback, VEIL_ERR_ARG, "cache_socket: '%.64s' is not a loopback address (the channel between two "
                "enclaves of one host stays on loopback)", c->cache_socket);
    VEIL_ENSURE(c->cache_measurement[0] != '\0', VEIL_ERR_ARG, "cache_socket = tls://...: set cache_measurement, the "
                "cache's MRENCLAVE (64 hex digits) or MRSIGNER:ISVPRODID:MIN_ISVSVN");
    struct veil_sgx_identity id;
    return veil_sgx_identity_parse(c->cache_measurement, &id);
}

VEIL_RESULT rt_config_finish(struct rt_config *c, veil_tee *tee)
{
    VEIL_ENSURE(veil_tee_from_name(c->tee, tee) == VEIL_OK, VEIL_ERR_ARG,
                "tee must be sim, sgx, tdx, snp or auto, not '%.32s'", c->tee);
    VEIL_ENSURE(*tee != VEIL_TEE_SAMPLE, VEIL_ERR_ARG, "tee = sample proves nothing; use sim for development");
    VEIL_ENSURE(*tee != VEIL_TEE_SIM || c->sim_dir[0] != '\0', VEIL_ERR_ARG,
                "tee = sim needs sim_dir (create one with veil attest sim-init DIR)");
    VEIL_ENSURE(c->models[0] != '\0', VEIL_ERR_ARG, "no model to serve: give --model NAME:PATH.veil");
    VEIL_GUARD(check_models(c->models));
    VEIL_GUARD(check_precisions(c));
    VEIL_ENSURE(strcmp(c->key_source, "kbs") == 0 || strcmp(c->key_source, "cache") == 0, VEIL_ERR_ARG,
                "key_source must be 'kbs' or 'cache', not '%.32s'", c->key_source);
    if (strcmp(c->key_source, "cache") == 0) {
        VEIL_GUARD(check_cache(c, *tee));
        VEIL_ENSURE(c->kbs_url[0] == '\0', VEIL_ERR_ARG, "key_source = cache takes no kbs_url (the cache talks to the "
                    "broker)");
    } else {
        VEIL_ENSURE(c->kbs_url[0] != '\0', VEIL_ERR_ARG, "no key broker: set kbs_url (or --kbs URL)");
    }
    return check_tls(c, *tee);
}
