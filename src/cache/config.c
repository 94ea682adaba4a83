/* SPDX-License-Identifier: Apache-2.0 */
/* veil-cache settings: the cache's rows of the shared configuration table (src/daemon/config.h), and the checks
 * that need the whole configuration. The configuration names what the cache may hold and who may have it: in a
 * TEE it is part of what is measured (sim_config, a Gramine manifest's trusted file, a CVM image). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cache.h"
#include "core/hex.h"

#define STR(f, d, doc) VD_STR(struct cc_config, f, d, NULL, doc)
#define LIST(f, doc) VD_LIST(struct cc_config, f, "", doc)
#define U64(f, d, lo, hi, doc) VD_U64(struct cc_config, f, d, NULL, lo, hi, doc)

static const struct vd_setting settings[] = {
    STR(socket, "", "the Unix socket runtimes connect to (required, but not with tee = sgx); created at start, "
                    "removed at stop"),
    STR(local_listen, "", "tee = sgx (required there, refused elsewhere): the loopback address A.B.C.D:PORT or "
                          "[::1]:PORT where runtimes in other enclaves connect: TLS 1.3, then mutual SGX local "
                          "attestation bound to the TLS session"),
    STR(socket_mode, "0660", "file mode of the socket (octal); the peer check below is what admits a process"),
    STR(allowed_uids, "", "user ids whose processes may connect, comma-separated; empty: the cache's own uid"),
    STR(listen, "127.0.0.1:8010", "address of /metrics and /health/{live,ready} (HTTP, loopback); empty: none"),
    STR(tee, "auto", "the TEE whose evidence the broker judges and whose local reports runtimes check: sim, sgx, "
                     "tdx, snp, or auto"),
    STR(sim_dir, "", "tee = sim: the simulation platform's directory (its key also derives the report key)"),
    STR(sim_config, "", "tee = sim: a configuration file measured with the executable (optional)"),
    STR(gramine_root, "", "tee = sgx: Gramine's attestation directory (default /dev/attestation)"),
    STR(tsm_root, "", "tee = tdx/snp: the configfs-tsm report directory"),
    STR(kbs_url, "", "the key broker: https://HOST:PORT (plain http only to a loopback broker with tee = sim)"),
    STR(kbs_cacert, "", "PEM CA bundle that verifies the broker's certificate (https)"),
    STR(kbs_pinned_pubkey, "", "the broker's TLS public key (PEM/DER file or sha256//BASE64), checked on top"),
    LIST(models, "a model whose key the cache holds: MODEL_ID@VERSION (fetched at start) or MODEL_ID (any version, "
                 "fetched when an allowed runtime first asks)"),
    LIST(allow, "MODEL_ID:MEASUREMENT: a runtime measurement (96 hex digits, SHA-384) allowed to get MODEL_ID's key; "
                "tee = sgx: MODEL_ID:MRENCLAVE (64 hex digits) or MODEL_ID:MRSIGNER:ISVPRODID:MIN_ISVSVN"),
    U64(default_lease_ttl_s, "300", VEIL_LEASE_TTL_MIN_S, VEIL_LEASE_TTL_MAX_S,
        "lease of a key whose broker sent no Veil-Lease-TTL (a Trustee KBS), seconds"),
    U64(runtime_lease_max_s, "300", 1, VEIL_LEASE_TTL_MAX_S,
        "longest lease handed to a runtime, seconds (never longer than the cache's own)"),
    U64(denied_retry_s, "10", 0, 3600, "after the broker refused a key, how long runtimes are told 'revoked' "
                                       "before it is asked again, seconds"),
    U64(key_timeout_s, "30", 1, 600, "timeout of each exchange with the key broker, seconds"),
    U64(max_connections, "64", 1, CC_MAX_CONNECTIONS, "simultaneous local connections"),
    U64(io_timeout_ms, "5000", 10, 600000, "a local connection idle for this long is closed, milliseconds"),
    U64(lock_memory, "1", 0, 1, "1: keys in mlock'ed memory (a key that cannot be locked is not taken); 0: only "
                                "excluded from core dumps"),
};

const struct vd_config_table cc_config_table = {"veil-cache", settings, sizeof settings / sizeof settings[0]};

/* Calls fn on each comma-separated item of list. */
static VEIL_RESULT each_item(const char *list, VEIL_RESULT (*fn)(struct cc_settings *, const char *),
                             struct cc_settings *s)
{
    for (const char *p = list; *p != '\0';) {
        size_t n = strcspn(p, ",");
        char item[512];
        VEIL_ENSURE(n > 0 && n < sizeof item, VEIL_ERR_ARG, "an empty or too long item in '%.64s'", list);
        memcpy(item, p, n);
        item[n] = '\0';
        VEIL_GUARD(fn(s, item));
        p += n + (p[n] == ',');
    }
    return VEIL_RESULT_OK;
}

static VEIL_RESULT add_uid(struct cc_settings *s, const char *item)
{
    errno = 0;
    char *end = NULL;
    unsigned long v = strtoul(item, &end, 10);
    VEIL_ENSURE(item[0] >= '0' && item[0] <= '9' && errno == 0 && *end == '\0' && v < UINT32_MAX, VEIL_ERR_ARG,
                "allowed_uids: '%.32s' is not a user id", item);
    VEIL_ENSURE(s->uid_count < CC_MAX_UIDS, VEIL_ERR_LIMIT, "allowed_uids: at most %u", CC_MAX_UIDS);
    s->uids[s->uid_count++] = (uid_t)v;
    return VEIL_RESULT_OK;
}

static VEIL_RESULT add_model(struct cc_settings *s, const char *item)
{
    VEIL_ENSURE(s->model_count < CC_MAX_MODELS, VEIL_ERR_LIMIT, "models: at most %u", CC_MAX_MODELS);
    struct cc_model *m = &s->models[s->model_count];
    struct veil_result r = veil_kbs_resource_tag_parse(item, m->id, &m->version);
    VEIL_ENSURE(veil_ok(r), VEIL_ERR_ARG, "models: '%.64s' is not MODEL_ID or MODEL_ID@VERSION", item);
    for (size_t i = 0; i < s->model_count; i++)
        VEIL_ENSURE(strcmp(s->models[i].id, m->id) != 0 || s->models[i].version != m->version, VEIL_ERR_ARG,
                    "models: '%.64s' is given twice", item);
    s->model_count++;
    return VEIL_RESULT_OK;
}

static VEIL_RESULT add_allow(struct cc_settings *s, const char *item)
{
    VEIL_ENSURE(s->allow_count < CC_MAX_ALLOW, VEIL_ERR_LIMIT, "allow: at most %u", CC_MAX_ALLOW);
    const char *colon = strchr(item, ':');
    VEIL_ENSURE(colon != NULL && colon > item, VEIL_ERR_ARG, "allow: '%.64s' is not MODEL_ID:MEASUREMENT", item);
    struct cc_allow *a = &s->allow[s->allow_count];
    size_t n = (size_t)(colon - item);
    VEIL_ENSURE(n <= VEIL_KBS_MODEL_ID_MAX && veil_ok(veil_kbs_model_id_check(item, n)), VEIL_ERR_ARG,
                "allow: '%.64s' does not start with a model id", item);
    memcpy(a->model, item, n);
    a->model[n] = '\0';
    const char *id = colon + 1;
    if (strlen(id) == 2 * CC_MEASUREMENT_SIZE) {
        VEIL_GUARD(veil_hex_decode(VEIL_HEX_ANY_CASE, id, strlen(id), a->measurement, sizeof a->measurement,
                                   VEIL_ERR_ARG, "allow: the measurement (96 hex digits)"));
    } else if (veil_ok(veil_sgx_identity_parse(id, &a->sgx_id))) {
        a->sgx = 1;
    } else {
        VEIL_BAIL(VEIL_ERR_ARG, "allow: '%.64s' is not MODEL_ID:MEASUREMENT (96 hex digits) nor, with tee = sgx, "
                  "MODEL_ID:MRENCLAVE (64 hex digits) or MODEL_ID:MRSIGNER:ISVPRODID:MIN_ISVSVN", item);
    }
    s->allow_count++;
    return VEIL_RESULT_OK;
}

static int model_configured(const struct cc_settings *s, const char *id)
{
    for (size_t i = 0; i < s->model_count; i++)
        if (strcmp(s->models[i].id, id) == 0)
            return 1;
    return 0;
}

static VEIL_RESULT check_tee(const struct cc_config *c, struct cc_settings *s)
{
    VEIL_ENSURE(veil_tee_from_name(c->tee, &s->tee) == VEIL_OK, VEIL_ERR_ARG,
                "tee must be sim, sgx, tdx, snp or auto, not '%.32s'", c->tee);
    VEIL_ENSURE(s->tee != VEIL_TEE_SAMPLE, VEIL_ERR_ARG, "tee = sample proves nothing; use sim for development");
    VEIL_ENSURE(s->tee != VEIL_TEE_SIM || c->sim_dir[0] != '\0', VEIL_ERR_ARG,
                "tee = sim needs sim_dir (create one with veil attest sim-init DIR)");
    return VEIL_RESULT_OK;
}

/* local_listen: a loopback address (the channel between two enclaves of one host never leaves it). */
static VEIL_RESULT check_local_listen(const struct cc_config *c)
{
    if (c->local_listen[0] == '\0')
        return VEIL_RESULT_OK;
    struct sockaddr_storage ss;
    int loopback = 0;
    if (!veil_ok(vd_listen_parse(c->local_listen, &ss, &loopback)))
        VEIL_BAIL(VEIL_ERR_ARG, "local_listen: '%.64s' is not A.B.C.D:PORT or [V6]:PORT", c->local_listen);
    VEIL_ENSURE(loopback, VEIL_ERR_ARG, "local_listen: '%.64s' is not a loopback address (127.0.0.0/8 or [::1]): the "
                "channel between two enclaves of this host stays on loopback", c->local_listen);
    return VEIL_RESULT_OK;
}

VEIL_RESULT cc_config_for_tee(const struct cc_config *c, struct cc_settings *s, veil_tee tee)
{
    int sgx = tee == VEIL_TEE_SGX;
    s->kind = tee == VEIL_TEE_SIM ? VEIL_LA_KIND_SIM : sgx ? VEIL_LA_KIND_SGX : VEIL_LA_KIND_NONE;
    if (sgx) {
        VEIL_ENSURE(c->local_listen[0] != '\0', VEIL_ERR_ARG, "tee = sgx: set local_listen = 127.0.0.1:PORT (two "
                    "enclaves cannot share a Unix socket: runtimes connect over TLS on loopback)");
        VEIL_ENSURE(c->socket[0] == '\0', VEIL_ERR_ARG, "tee = sgx takes no socket (two enclaves cannot share a Unix "
                    "socket): runtimes connect to local_listen");
    } else {
        VEIL_ENSURE(c->socket[0] != '\0', VEIL_ERR_ARG, "no socket: set socket (or --socket PATH)");
        VEIL_ENSURE(c->local_listen[0] == '\0', VEIL_ERR_ARG, "local_listen is the transport between SGX enclaves "
                    "(tee = sgx); inside one TEE runtimes use the Unix socket");
    }
    for (size_t i = 0; i < s->allow_count; i++)
        VEIL_ENSURE(s->allow[i].sgx == sgx, VEIL_ERR_ARG, "allow: the entry for %s is %s; with tee = %s each entry is "
                    "%s", s->allow[i].model, s->allow[i].sgx ? "an SGX identity" : "a 96-digit measurement",
                    veil_tee_name(tee), sgx ? "MODEL_ID:MRENCLAVE (64 hex digits) or MODEL_ID:MRSIGNER:ISVPRODID:"
                    "MIN_ISVSVN" : "MODEL_ID:MEASUREMENT (96 hex digits)");
    return VEIL_RESULT_OK;
}

static VEIL_RESULT check_socket(const struct cc_config *c, struct cc_settings *s)
{
    VEIL_ENSURE(c->socket[0] != '\0' || c->local_listen[0] != '\0', VEIL_ERR_ARG,
                "no socket: set socket (or --socket PATH), or with tee = sgx local_listen");
    VEIL_ENSURE(strlen(c->socket) < 108, VEIL_ERR_ARG, "socket path longer than 107 bytes");
    VEIL_GUARD(check_local_listen(c));
    char *end = NULL;
    unsigned long mode = strtoul(c->socket_mode, &end, 8);
    VEIL_ENSURE(c->socket_mode[0] != '\0' && *end == '\0' && mode <= 0777, VEIL_ERR_ARG,
                "socket_mode must be an octal file mode such as 0660, not '%.16s'", c->socket_mode);
    s->socket_mode = (unsigned)mode;
    VEIL_GUARD(each_item(c->allowed_uids, add_uid, s));
    if (s->uid_count == 0)
        s->uids[s->uid_count++] = getuid();
    return VEIL_RESULT_OK;
}

VEIL_RESULT cc_config_finish(const struct cc_config *c, struct cc_settings *s)
{
    memset(s, 0, sizeof *s);
    VEIL_GUARD(check_tee(c, s));
    VEIL_GUARD(check_socket(c, s));
    VEIL_ENSURE(c->kbs_url[0] != '\0', VEIL_ERR_ARG, "no key broker: set kbs_url (or --kbs URL)");
    VEIL_GUARD(each_item(c->models, add_model, s));
    VEIL_ENSURE(s->model_count > 0, VEIL_ERR_ARG, "no model: give --model MODEL_ID[@VERSION]");
    VEIL_GUARD(each_item(c->allow, add_allow, s));
    for (size_t i = 0; i < s->allow_count; i++)
        VEIL_ENSURE(model_configured(s, s->allow[i].model), VEIL_ERR_ARG,
                    "allow names model %s, which is not among models", s->allow[i].model);
    VEIL_ENSURE(s->allow_count > 0, VEIL_ERR_ARG,
                "no runtime may get a key: give --allow MODEL_ID:MEASUREMENT (the runtime's sim or executable "
                "measurement)");
    if (c->listen[0] != '\0') {
        struct sockaddr_storage ss;
        int loopback = 0;
        VEIL_GUARD(vd_listen_parse(c->listen, &ss, &loopback));
        VEIL_ENSURE(loopback, VEIL_ERR_ARG, "listen: /metrics is plain HTTP, so only on a loopback address");
        VEIL_ENSURE(strcmp(c->listen, c->local_listen) != 0, VEIL_ERR_ARG, "listen and local_listen are one address");
    }
    return s->tee == VEIL_TEE_AUTO ? VEIL_RESULT_OK : cc_config_for_tee(c, s, s->tee);
}
