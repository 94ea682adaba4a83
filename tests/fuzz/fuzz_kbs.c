/* SPDX-License-Identifier: Apache-2.0 */
/* veil-kbs request handlers (src/kbs) on arbitrary bodies, through the real routing table and an in-memory
 * SQLite store. The first input byte picks the endpoint; the rest is the body. Invariant: nothing crashes, and
 * every protocol refusal is 401 or 404. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kbsd.h"

static struct kbs_config cfg;
static struct kbs_ctx ctx;
static char cookie[KBS_SESSION_ID_SIZE + 1];
static char bearer[KBS_ADMIN_TOKEN_SIZE * 2 + 16];

static const char *lookup(void *conn, enum vd_lookup_kind kind, const char *key)
{
    (void)conn;
    if (kind == VD_COOKIE && strcmp(key, KBS_COOKIE_NAME) == 0)
        return cookie;
    if (kind == VD_HEADER && strcmp(key, "Authorization") == 0)
        return bearer;
    return NULL;
}

static void must(struct veil_result r)
{
    if (!veil_ok(r)) {
        fprintf(stderr, "fuzz_kbs setup: %s\n", veil_last_error());
        abort();
    }
}

static void setup(void)
{
    FILE *devnull = fopen("/dev/null", "w"); /* the daemon logs every refusal */
    if (devnull == NULL)
        abort();
    vd_log_to(devnull);
    must(kbs_config_defaults(&cfg, 1));
    must(kbs_store_sqlite_open(":memory:", &ctx.store));
    ctx.cfg = &cfg;
    must(veil_secure_alloc(&ctx.master, VEIL_KBS_MASTER_KEY_SIZE, 0));
    must(veil_jwk_generate(VEIL_JWK_EC_P256, &ctx.signer));
    strcpy(ctx.signer_kid, "fuzz");
    strcpy(ctx.admin_token, "fuzz-admin-token-fuzz-admin-token");
    snprintf(bearer, sizeof bearer, "Bearer %s", ctx.admin_token);
    must(veil_kbs_ratelimit_init(&ctx.ratelimit, 0, 1));
    ctx.allowed_tees[0] = VEIL_TEE_SAMPLE, ctx.allowed_tees[1] = VEIL_TEE_SIM, ctx.allowed_tee_count = 2;
    ctx.default_policy = strdup("{\"version\":1}");
    must(kbs_keys_seed_dev(&ctx));
    struct vd_request rq = {.method = "POST", .path = "/kbs/v0/auth", .client = "fuzz",
                             .body = (const uint8_t *)"{\"version\":\"0.4.0\",\"tee\":\"sample\"}", .lookup = lookup};
    rq.body_size = strlen((const char *)rq.body);
    struct vd_response rs = {0};
    kbs_dispatch(&ctx, &rq, &rs);
    if (rs.status != 200)
        abort();
    memcpy(cookie, rs.set_cookie + strlen(KBS_COOKIE_NAME) + 1, KBS_SESSION_ID_SIZE);
    free(rs.body);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    if (!ready)
        setup(), ready = 1;
    static const struct {
        const char *method, *path;
        int protocol;
    } targets[] = {
        {"POST", "/kbs/v0/auth", 1},
        {"POST", "/kbs/v0/attest", 1},
        {"POST", "/admin/v1/models/fuzz-model/rotate", 0},
        {"PUT", "/admin/v1/models/test-0/policy", 0},
        {"PUT", "/admin/v1/models/test-0/usage", 0},
    };
    if (size == 0)
        return 0;
    size_t t = data[0] % (sizeof targets / sizeof targets[0]);
    struct vd_request rq = {.method = targets[t].method, .path = targets[t].path, .client = "fuzz",
                             .body = data + 1, .body_size = size - 1, .lookup = lookup};
    struct vd_response rs = {0};
    kbs_dispatch(&ctx, &rq, &rs);
    if (targets[t].protocol && rs.status != 200 && rs.status != 401 && rs.status != 404)
        abort();
    free(rs.body);
    return 0;
}
