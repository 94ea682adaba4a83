/* SPDX-License-Identifier: Apache-2.0 */
/* lib/cache: the lease table and schedule, the local protocol's codec and channel binding, the simulation TEE's
 * local reports, and SGX local attestation against a fake /dev/attestation tree with an injected report key. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cache/lease.h"
#include "cache/local.h"
#include "core/cursor.h"
#include "core/hex.h"
#include "crypto/crypto.h"
#include "testutil.h"
#include "veil/attest.h"

static const uint8_t key32[32] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
                                  17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32};

/* ---- leases ----------------------------------------------------------------------------------------------- */

static struct veil_lease_grant grant(const char *model, uint32_t version, uint64_t ttl_ms, uint64_t fetched_ms)
{
    return (struct veil_lease_grant){.model_id = model, .key_version = version, .key = key32, .key_size = 32,
                                     .min_model_version = 3, .usage_policy = "{\"version\":1}", .ttl_ms = ttl_ms,
                                     .fetched_ms = fetched_ms};
}

static void test_lease_put_find_expire(void **state)
{
    (void)state;
    struct veil_lease_table t;
    veil_lease_table_init(&t, 0);
    struct veil_lease_grant g = grant("m", 1, 2000, 1000);
    assert_true(veil_ok(veil_lease_put(&t, &g)));
    struct veil_lease *l = veil_lease_find(&t, "m", 1);
    assert_non_null(l);
    assert_memory_equal(l->key.data, key32, 32);
    assert_int_equal(l->key_size, 32);
    assert_int_equal(l->min_model_version, 3);
    assert_string_equal(l->usage_policy, "{\"version\":1}");
    assert_int_equal(l->expires_ms, 3000); /* counted from the fetch's start */
    assert_int_equal(l->renew_ms, 2000);   /* at half the TTL */
    g.renew_early_ms = 100;                /* jitter: a little before half */
    assert_true(veil_ok(veil_lease_put(&t, &g)));
    assert_int_equal(l->renew_ms, 1900);
    g.renew_early_ms = 10000;              /* capped at a quarter of the TTL */
    assert_true(veil_ok(veil_lease_put(&t, &g)));
    assert_int_equal(l->renew_ms, 1500);
    g.renew_early_ms = 0;
    assert_true(veil_ok(veil_lease_put(&t, &g)));
    assert_null(veil_lease_find(&t, "m", 2));
    assert_null(veil_lease_find(&t, "n", 1));
    assert_int_equal(veil_lease_remaining_ms(l, 2500), 500);
    assert_int_equal(veil_lease_remaining_ms(l, 3000), 0);
    assert_int_equal(veil_lease_sublease_ms(l, 2500, 100), 100);
    assert_int_equal(veil_lease_sublease_ms(l, 2500, 10000), 500);
    /* a renewal replaces in place: a new expiry, the same slot */
    g = grant("m", 1, 2000, 2100);
    g.usage_policy = NULL;
    assert_true(veil_ok(veil_lease_put(&t, &g)));
    assert_int_equal(t.count, 1);
    assert_ptr_equal(veil_lease_find(&t, "m", 1), l);
    assert_int_equal(l->expires_ms, 4100);
    assert_null(l->usage_policy);
    assert_int_equal(veil_lease_expire(&t, 4099), 0);
    assert_int_equal(veil_lease_expire(&t, 4100), 1); /* at expiry without renewal: wiped */
    assert_null(veil_lease_find(&t, "m", 1));
    veil_lease_table_cleanup(&t);
}

static void test_lease_schedule(void **state)
{
    (void)state;
    struct veil_lease_table t;
    veil_lease_table_init(&t, 0);
    uint64_t wake = 0;
    assert_null(veil_lease_next_due(&t, 0, &wake));
    assert_int_equal(wake, UINT64_MAX);
    struct veil_lease_grant a = grant("a", 1, 1000, 0), b = grant("b", 7, 4000, 0);
    assert_true(veil_ok(veil_lease_put(&t, &a)));
    assert_true(veil_ok(veil_lease_put(&t, &b)));
    assert_null(veil_lease_next_due(&t, 100, &wake));
    assert_int_equal(wake, 500);
    struct veil_lease *due = veil_lease_next_due(&t, 500, &wake);
    assert_non_null(due);
    assert_string_equal(due->model_id, "a");
    veil_lease_retry(due, 500, 10); /* at least VEIL_LEASE_MIN_RENEW_MS */
    assert_int_equal(due->renew_ms, 500 + VEIL_LEASE_MIN_RENEW_MS);
    veil_lease_retry(due, 500, 300);
    assert_int_equal(due->renew_ms, 800);
    assert_null(veil_lease_next_due(&t, 700, &wake));
    assert_int_equal(wake, 800);
    veil_lease_drop(&t, due);
    assert_int_equal(t.count, 1);
    assert_null(veil_lease_next_due(&t, 700, &wake));
    assert_int_equal(wake, 2000);
    /* a holder's schedule: expiry from the request's send time, renewal at half, never sooner than the floor */
    uint64_t exp = 0, renew = 0;
    veil_lease_schedule(1000, 2000, 1010, &exp, &renew);
    assert_int_equal(exp, 3000);
    assert_int_equal(renew, 2000);
    veil_lease_schedule(1000, 20, 1010, &exp, &renew);
    assert_int_equal(exp, 1020);
    assert_int_equal(renew, 1010 + VEIL_LEASE_MIN_RENEW_MS);
    veil_lease_table_cleanup(&t);
}

static void test_lease_bounds(void **state)
{
    (void)state;
    struct veil_lease_table t;
    veil_lease_table_init(&t, 0);
    struct veil_lease_grant g = grant("m", 1, 0, 0);
    assert_int_equal(veil_lease_put(&t, &g).status, VEIL_ERR_ARG); /* TTL 0 */
    g = grant("m", 1, VEIL_LEASE_MAX_MS + 1, 0);
    assert_int_equal(veil_lease_put(&t, &g).status, VEIL_ERR_ARG);
    g = grant("m", 0, 1000, 0);
    assert_int_equal(veil_lease_put(&t, &g).status, VEIL_ERR_ARG); /* version 0 */
    g = grant("bad/id", 1, 1000, 0);
    assert_int_equal(veil_lease_put(&t, &g).status, VEIL_ERR_ARG);
    g = grant("m", 1, 1000, 0);
    g.key_size = 8;
    assert_int_equal(veil_lease_put(&t, &g).status, VEIL_ERR_ARG);
    g.key_size = VEIL_LEASE_KEY_MAX_SIZE + 1;
    assert_int_equal(veil_lease_put(&t, &g).status, VEIL_ERR_ARG);
    assert_int_equal(t.count, 0);
    for (uint32_t v = 1; v <= VEIL_LEASE_MAX_ENTRIES; v++) {
        g = grant("m", v, 1000, 0);
        assert_true(veil_ok(veil_lease_put(&t, &g)));
    }
    g = grant("m", VEIL_LEASE_MAX_ENTRIES + 1, 1000, 0);
    assert_int_equal(veil_lease_put(&t, &g).status, VEIL_ERR_LIMIT);
    assert_int_equal(veil_lease_expire(&t, 1000), VEIL_LEASE_MAX_ENTRIES);
    assert_int_equal(t.count, 0);
    veil_lease_table_cleanup(&t);
}

/* ---- the codec -------------------------------------------------------------------------------------------- */

static uint8_t target48[48], report_sim[VEIL_LA_SIM_REPORT_SIZE];

/* Encodes m, checks the frame header, decodes the body into out (whose pointers point into *frame). */
static void round_trip(const struct veil_la_msg *m, struct veil_buf *frame, struct veil_la_msg *out)
{
    veil_buf_init(frame);
    assert_true(veil_ok(veil_la_encode(m, frame)));
    size_t size = 0;
    assert_true(veil_ok(veil_la_frame_size(frame->data, &size)));
    assert_int_equal(size, frame->size - 4);
    assert_true(veil_ok(veil_la_decode(frame->data + 4, size, out)));
    assert_int_equal(out->type, m->type);
}

static void test_codec_round_trip(void **state)
{
    (void)state;
    struct veil_buf f;
    struct veil_la_msg m, d;
    memset(target48, 0x48, sizeof target48);
    memset(report_sim, 0x5a, sizeof report_sim);

    memset(&m, 0, sizeof m);
    m.type = VEIL_LA_HELLO, m.kind = VEIL_LA_KIND_SIM, m.target = target48, m.target_size = 48;
    memset(m.nonce, 0x11, sizeof m.nonce);
    round_trip(&m, &f, &d);
    assert_memory_equal(d.nonce, m.nonce, sizeof m.nonce);
    assert_int_equal(d.target_size, 48);
    assert_memory_equal(d.target, target48, 48);
    veil_buf_cleanup(&f);

    m.type = VEIL_LA_CHALLENGE, m.report = report_sim, m.report_size = sizeof report_sim;
    round_trip(&m, &f, &d);
    assert_memory_equal(d.report, report_sim, sizeof report_sim);
    veil_buf_cleanup(&f);

    memset(&m, 0, sizeof m);
    m.type = VEIL_LA_ATTEST, m.kind = VEIL_LA_KIND_NONE;
    round_trip(&m, &f, &d);
    assert_int_equal(d.report_size, 0);
    veil_buf_cleanup(&f);

    m.type = VEIL_LA_READY;
    round_trip(&m, &f, &d);
    assert_int_equal(f.size, 6);
    veil_buf_cleanup(&f);

    m.type = VEIL_LA_RENEW, m.key_version = 7;
    strcpy(m.model_id, "resnet-50.v2");
    round_trip(&m, &f, &d);
    assert_string_equal(d.model_id, "resnet-50.v2");
    assert_int_equal(d.key_version, 7);
    veil_buf_cleanup(&f);

    memset(&m, 0, sizeof m);
    m.type = VEIL_LA_KEY, m.key_version = 2, m.min_model_version = 9, m.lease_ms = 1500, m.key = key32;
    m.key_size = 32, m.has_usage = 1, m.usage = "{\"version\":1}", m.usage_size = 13;
    veil_buf_init_secret(&f);
    assert_true(veil_ok(veil_la_encode(&m, &f)));
    assert_true(veil_ok(veil_la_decode(f.data + 4, f.size - 4, &d)));
    assert_memory_equal(d.key, key32, 32);
    assert_int_equal(d.lease_ms, 1500);
    assert_int_equal(d.min_model_version, 9);
    assert_int_equal(d.usage_size, 13);
    assert_memory_equal(d.usage, "{\"version\":1}", 13);
    veil_buf_cleanup(&f);

    memset(&m, 0, sizeof m);
    m.type = VEIL_LA_LEASE, m.lease_ms = 42, m.counts = "{\"alice\":3}", m.counts_size = 11;
    round_trip(&m, &f, &d);
    assert_int_equal(d.lease_ms, 42);
    assert_int_equal(d.counts_size, 11);
    assert_memory_equal(d.counts, "{\"alice\":3}", 11);
    veil_buf_cleanup(&f);

    veil_la_error_msg(&m, VEIL_LA_E_REVOKED, "key\nrevoked");
    round_trip(&m, &f, &d);
    assert_int_equal(d.error, VEIL_LA_E_REVOKED);
    assert_string_equal(d.message, "key?revoked"); /* made printable */
    assert_string_equal(veil_la_error_name(d.error), "revoked");
    veil_buf_cleanup(&f);
}

/* A body from hex-free bytes: version, type, then the payload. */
static int refused(const uint8_t *body, size_t size)
{
    struct veil_la_msg d;
    struct veil_result r = veil_la_decode(body, size, &d);
    return !veil_ok(r) && d.type == 0;
}

static void test_codec_refusals(void **state)
{
    (void)state;
    uint8_t b[64] = {VEIL_LA_VERSION, VEIL_LA_READY};
    assert_false(refused(b, 2));
    b[0] = 1;
    assert_true(refused(b, 2)); /* another version (1: before usage counts) */
    b[0] = VEIL_LA_VERSION, b[1] = 0;
    assert_true(refused(b, 2)); /* unknown type */
    b[1] = 10;
    assert_true(refused(b, 2));
    b[1] = VEIL_LA_READY;
    assert_true(refused(b, 3));    /* a byte after the payload */
    assert_true(refused(b, 1));    /* truncated */
    assert_true(refused(NULL, 0)); /* nothing */
    /* RENEW: version 0, an empty id, a bad id, a truncated id; usage counts missing, over the cap, with a NUL */
    uint8_t renew[] = {VEIL_LA_VERSION, VEIL_LA_RENEW, 0, 0, 0, 0, 1, 'm', 2, 0, 0, 0, '{', '}'};
    assert_true(refused(renew, sizeof renew));
    renew[2] = 1;
    assert_false(refused(renew, sizeof renew));
    assert_true(refused(renew, 8));
    renew[8] = 0;
    assert_true(refused(renew, sizeof renew)); /* 0 bytes said, 2 sent */
    assert_false(refused(renew, 12));
    renew[8] = 2, renew[12] = 0;
    assert_true(refused(renew, sizeof renew));
    renew[12] = '{', renew[10] = 0x10; /* 1 MiB + 2 > VEIL_USAGE_COUNTS_MAX_SIZE */
    assert_true(refused(renew, sizeof renew));
    renew[10] = 0;
    renew[7] = '/';
    assert_true(refused(renew, sizeof renew));
    renew[7] = 'm', renew[6] = 0;
    assert_true(refused(renew, sizeof renew));
    renew[6] = 2;
    assert_true(refused(renew, sizeof renew));
    /* HELLO: a target whose size does not match its kind, an unknown kind */
    uint8_t hello[2 + 32 + 1 + 2 + 48] = {VEIL_LA_VERSION, VEIL_LA_HELLO};
    hello[34] = VEIL_LA_KIND_SIM, hello[35] = 48;
    assert_false(refused(hello, sizeof hello));
    hello[35] = 47;
    assert_true(refused(hello, sizeof hello));
    hello[35] = 48, hello[34] = 3;
    assert_true(refused(hello, sizeof hello));
    /* LEASE 0 and over the maximum */
    uint8_t lease[14] = {VEIL_LA_VERSION, VEIL_LA_LEASE};
    assert_true(refused(lease, sizeof lease));
    lease[2] = 1;
    assert_false(refused(lease, sizeof lease));
    memset(lease + 2, 0xff, 8);
    assert_true(refused(lease, sizeof lease));
    /* ERROR: unknown code, unprintable message, a message longer than said */
    uint8_t err[] = {VEIL_LA_VERSION, VEIL_LA_ERROR, VEIL_LA_E_INTERNAL, 0, 2, 'o', 'k'};
    assert_false(refused(err, sizeof err));
    err[2] = 99;
    assert_true(refused(err, sizeof err));
    err[2] = 1, err[6] = 0x07;
    assert_true(refused(err, sizeof err));
    err[6] = 'k', err[4] = 3;
    assert_true(refused(err, sizeof err));
    /* frame sizes */
    size_t n = 0;
    uint8_t hdr[4] = {0, 0, 0, 0};
    assert_int_equal(veil_la_frame_size(hdr, &n).status, VEIL_ERR_LIMIT);
    veil_store_u32le(hdr, VEIL_LA_MAX_MESSAGE_SIZE + 1);
    assert_int_equal(veil_la_frame_size(hdr, &n).status, VEIL_ERR_LIMIT);
    veil_store_u32le(hdr, VEIL_LA_MAX_MESSAGE_SIZE);
    assert_true(veil_ok(veil_la_frame_size(hdr, &n)));
}

static void test_codec_key_refusals(void **state)
{
    (void)state;
    struct veil_la_msg m;
    memset(&m, 0, sizeof m);
    m.type = VEIL_LA_KEY, m.key_version = 1, m.lease_ms = 1000, m.key = key32, m.key_size = 32;
    struct veil_buf f;
    veil_buf_init_secret(&f);
    assert_true(veil_ok(veil_la_encode(&m, &f)));
    struct veil_la_msg d;
    uint8_t *body = f.data + 4;
    size_t size = f.size - 4;
    size_t key_len_at = 2 + 4 + 8 + 8;
    body[key_len_at] = 8; /* a key under the minimum */
    assert_false(veil_ok(veil_la_decode(body, size, &d)));
    body[key_len_at] = 32;
    body[key_len_at + 1 + 32] = 1; /* has_usage with 0 bytes */
    assert_false(veil_ok(veil_la_decode(body, size, &d)));
    body[key_len_at + 1 + 32] = 2;
    assert_false(veil_ok(veil_la_decode(body, size, &d)));
    body[key_len_at + 1 + 32] = 0;
    assert_true(veil_ok(veil_la_decode(body, size, &d)));
    assert_int_equal(d.has_usage, 0);
    veil_buf_cleanup(&f);
    /* the encoder refuses what the decoder would: an oversized model id, an empty key */
    memset(&m, 0, sizeof m);
    m.type = VEIL_LA_KEY_REQUEST, m.key_version = 1;
    memset(m.model_id, 'a', VEIL_KBS_MODEL_ID_MAX);
    veil_buf_init(&f);
    assert_true(veil_ok(veil_la_encode(&m, &f)));
    veil_buf_cleanup(&f);
    m.model_id[0] = '.';
    assert_int_equal(veil_la_encode(&m, &f).status, VEIL_ERR_ARG);
    assert_int_equal(f.size, 0);
    memset(&m, 0, sizeof m);
    m.type = VEIL_LA_KEY, m.key_version = 1, m.lease_ms = 1000, m.key = key32, m.key_size = 0;
    assert_int_equal(veil_la_encode(&m, &f).status, VEIL_ERR_ARG);
    m.type = 77;
    assert_int_equal(veil_la_encode(&m, &f).status, VEIL_ERR_ARG);
    veil_buf_cleanup(&f);
}

static void test_binding(void **state)
{
    (void)state;
    uint8_t nr[32], nc[32], a[64], b[64];
    memset(nr, 1, sizeof nr), memset(nc, 2, sizeof nc);
    assert_true(veil_ok(veil_la_binding('R', nr, nc, target48, 48, target48, 48, NULL, a)));
    assert_true(veil_ok(veil_la_binding('R', nr, nc, target48, 48, target48, 48, NULL, b)));
    assert_memory_equal(a, b, 64);
    assert_true(veil_ok(veil_la_binding('C', nr, nc, target48, 48, target48, 48, NULL, b)));
    assert_memory_not_equal(a, b, 64); /* no reflection */
    nc[0] ^= 1;
    assert_true(veil_ok(veil_la_binding('R', nr, nc, target48, 48, target48, 48, NULL, b)));
    assert_memory_not_equal(a, b, 64); /* another handshake */
    assert_true(veil_ok(veil_la_binding('R', nr, nc, NULL, 0, NULL, 0, NULL, b)));
    assert_int_equal(veil_la_binding('X', nr, nc, NULL, 0, NULL, 0, NULL, b).status, VEIL_ERR_ARG);
}

/* ---- sim local reports --------------------------------------------------------------------------------------- */

static void test_sim_reports(void **state)
{
    (void)state;
    char *dir = tu_tmpdir();
    const char *plat = tu_path(0, dir, "plat");
    assert_int_equal(veil_sim_init(plat, NULL), VEIL_OK);
    uint8_t key[32], again[32], other[32];
    assert_true(veil_ok(veil_la_sim_report_key(plat, key)));
    assert_true(veil_ok(veil_la_sim_report_key(plat, again)));
    assert_memory_equal(key, again, 32); /* a node-local constant */
    const char *plat2 = tu_path(1, dir, "plat2");
    assert_int_equal(veil_sim_init(plat2, NULL), VEIL_OK);
    assert_true(veil_ok(veil_la_sim_report_key(plat2, other)));
    assert_memory_not_equal(key, other, 32);
    assert_int_equal(veil_la_sim_report_key(tu_path(2, dir, "none"), again).status, VEIL_ERR_IO);

    uint8_t me[48], them[48], rd[64], rd2[64], rep[VEIL_LA_SIM_REPORT_SIZE], seen[48];
    memset(me, 0xc0, sizeof me), memset(them, 0x70, sizeof them), memset(rd, 0x33, sizeof rd);
    memcpy(rd2, rd, sizeof rd), rd2[63] ^= 1;
    assert_true(veil_ok(veil_la_sim_report(key, me, them, rd, rep)));
    assert_true(veil_ok(veil_la_sim_verify(key, me, rep, sizeof rep, rd, seen)));
    assert_memory_equal(seen, them, 48);
    /* for another target, with another node's key, a changed byte, a replay into another handshake */
    assert_int_equal(veil_la_sim_verify(key, them, rep, sizeof rep, rd, seen).status, VEIL_ERR_AUTH);
    assert_int_equal(veil_la_sim_verify(other, me, rep, sizeof rep, rd, seen).status, VEIL_ERR_AUTH);
    for (size_t i = 0; i < sizeof rep; i += 37) {
        rep[i] ^= 0x80;
        assert_int_equal(veil_la_sim_verify(key, me, rep, sizeof rep, rd, seen).status, VEIL_ERR_AUTH);
        rep[i] ^= 0x80;
    }
    assert_int_equal(veil_la_sim_verify(key, me, rep, sizeof rep, rd2, seen).status, VEIL_ERR_VERIFY);
    assert_int_equal(veil_la_sim_verify(key, me, rep, sizeof rep - 1, rd, seen).status, VEIL_ERR_FORMAT);
    tu_rmdir(dir);
    free(dir);
}

/* The local identity is the sim provider's own measurement of the executable (without a configuration file). */
static void test_sim_measure_matches_provider(void **state)
{
    (void)state;
    char *dir = tu_tmpdir();
    const char *plat = tu_path(0, dir, "plat");
    const char *exe = tu_path(1, dir, "app.bin");
    assert_int_equal(veil_sim_init(plat, NULL), VEIL_OK);
    tu_write(exe, "an executable, as far as measurement goes", 41);
    struct veil_provider_config pc = {.sim_dir = plat, .sim_executable = exe};
    uint8_t rd[64] = {0}, mine[48], want[48];
    char *ev = NULL;
    assert_int_equal(veil_evidence_collect(VEIL_TEE_SIM, &pc, rd, &ev), VEIL_OK);
    json_t *j = json_loads(ev, 0, NULL);
    assert_non_null(j);
    const char *hex = json_string_value(json_object_get(j, "measurement"));
    assert_non_null(hex);
    assert_true(veil_ok(veil_hex_decode(VEIL_HEX_LOWER, hex, strlen(hex), want, sizeof want, VEIL_ERR_FORMAT, "m")));
    assert_true(veil_ok(veil_la_sim_measure(exe, mine)));
    assert_memory_equal(mine, want, 48);
    assert_int_equal(veil_la_sim_measure(tu_path(2, dir, "none"), mine).status, VEIL_ERR_IO);
    json_decref(j);
    free(ev);
    tu_rmdir(dir);
    free(dir);
}

/* ---- SGX local attestation ----------------------------------------------------------------------------------- */

/* A stand-in for EGETKEY: a target enclave's report key for a KEYID, derived from that enclave's secret. */
struct fake_cpu {
    uint8_t secret[32];
};

static struct veil_result fake_report_key(void *ctx, const uint8_t key_id[VEIL_SGX_KEYID_SIZE], uint8_t key[16])
{
    const struct fake_cpu *cpu = ctx;
    uint8_t in[64], d[32];
    memcpy(in, cpu->secret, 32), memcpy(in + 32, key_id, 32);
    struct veil_result r = veil_sha256(in, sizeof in, d);
    memcpy(key, d, 16);
    return r;
}

static void make_report(const struct fake_cpu *target, uint64_t flags, const uint8_t mrenclave[32],
                        const uint8_t rd[64], uint8_t rep[VEIL_SGX_REPORT_SIZE])
{
    memset(rep, 0, VEIL_SGX_REPORT_SIZE);
    veil_store_u64le(rep + 48, flags);
    veil_store_u64le(rep + 56, 0xe7);
    memcpy(rep + 64, mrenclave, 32);
    memset(rep + 128, 0x5e, 32);      /* MRSIGNER */
    veil_store_u16le(rep + 256, 9);   /* ISVPRODID */
    veil_store_u16le(rep + 258, 4);   /* ISVSVN */
    memcpy(rep + 320, rd, 64);
    memset(rep + 384, 0x4b, 32);      /* KEYID */
    uint8_t key[16];
    assert_true(veil_ok(fake_report_key((void *)(uintptr_t)target, rep + 384, key)));
    assert_true(veil_ok(veil_sgx_report_mac(key, rep, rep + 416)));
}

static void test_sgx_verify(void **state)
{
    (void)state;
    struct fake_cpu cache_enclave, other_enclave;
    memset(cache_enclave.secret, 0xca, 32), memset(other_enclave.secret, 0x07, 32);
    static const uint8_t runtime_mr[1][32] = {{0x52, 0x52}};
    uint8_t unknown_mr[32] = {0x99}, signer[32], x_now[64], x_old[64], x_other[64], rep[VEIL_SGX_REPORT_SIZE];
    memset(signer, 0x5e, sizeof signer);
    memset(x_now, 0x01, 64), memset(x_old, 0x02, 64), memset(x_other, 0x03, 64);
    uint64_t good = VEIL_SGX_FLAG_INIT | VEIL_SGX_FLAG_MODE64BIT;
    struct veil_sgx_peer_policy p = {.mrenclaves = runtime_mr, .mrenclave_count = 1};
    struct veil_sgx_report out;

    make_report(&cache_enclave, good, runtime_mr[0], x_now, rep);
    assert_true(veil_ok(veil_sgx_report_verify(rep, sizeof rep, fake_report_key, &cache_enclave, &p, x_now, &out)));
    assert_memory_equal(out.mrenclave, runtime_mr[0], 32);
    assert_int_equal(out.isv_prod_id, 9);
    assert_int_equal(out.isv_svn, 4);
    /* bound to another TLS exporter (another session), or replayed from an older one */
    assert_int_equal(veil_sgx_report_verify(rep, sizeof rep, fake_report_key, &cache_enclave, &p, x_other, &out).status,
                     VEIL_ERR_VERIFY);
    make_report(&cache_enclave, good, runtime_mr[0], x_old, rep);
    assert_int_equal(veil_sgx_report_verify(rep, sizeof rep, fake_report_key, &cache_enclave, &p, x_now, &out).status,
                     VEIL_ERR_VERIFY);
    /* a report made for another target enclave: its MAC is under that enclave's report key */
    make_report(&other_enclave, good, runtime_mr[0], x_now, rep);
    assert_int_equal(veil_sgx_report_verify(rep, sizeof rep, fake_report_key, &cache_enclave, &p, x_now, &out).status,
                     VEIL_ERR_AUTH);
    /* a changed body byte; a changed KEYID (outside the MAC, but it selects the key) */
    make_report(&cache_enclave, good, runtime_mr[0], x_now, rep);
    rep[260] ^= 1;
    assert_int_equal(veil_sgx_report_verify(rep, sizeof rep, fake_report_key, &cache_enclave, &p, x_now, &out).status,
                     VEIL_ERR_AUTH);
    rep[260] ^= 1, rep[390] ^= 1;
    assert_int_equal(veil_sgx_report_verify(rep, sizeof rep, fake_report_key, &cache_enclave, &p, x_now, &out).status,
                     VEIL_ERR_AUTH);
    /* DEBUG, not initialised, an identity not allowed */
    make_report(&cache_enclave, good | VEIL_SGX_FLAG_DEBUG, runtime_mr[0], x_now, rep);
    assert_int_equal(veil_sgx_report_verify(rep, sizeof rep, fake_report_key, &cache_enclave, &p, x_now, &out).status,
                     VEIL_ERR_POLICY);
    p.allow_debug = 1;
    assert_true(veil_ok(veil_sgx_report_verify(rep, sizeof rep, fake_report_key, &cache_enclave, &p, x_now, &out)));
    p.allow_debug = 0;
    make_report(&cache_enclave, VEIL_SGX_FLAG_MODE64BIT, runtime_mr[0], x_now, rep);
    assert_int_equal(veil_sgx_report_verify(rep, sizeof rep, fake_report_key, &cache_enclave, &p, x_now, &out).status,
                     VEIL_ERR_POLICY);
    make_report(&cache_enclave, good, unknown_mr, x_now, rep);
    assert_int_equal(veil_sgx_report_verify(rep, sizeof rep, fake_report_key, &cache_enclave, &p, x_now, &out).status,
                     VEIL_ERR_POLICY);
    /* ... unless MRSIGNER, product id and a minimum ISVSVN admit it */
    p.signer = signer, p.product_id = 9, p.min_svn = 4;
    assert_true(veil_ok(veil_sgx_report_verify(rep, sizeof rep, fake_report_key, &cache_enclave, &p, x_now, &out)));
    p.min_svn = 5;
    assert_int_equal(veil_sgx_report_verify(rep, sizeof rep, fake_report_key, &cache_enclave, &p, x_now, &out).status,
                     VEIL_ERR_POLICY);
    p.min_svn = 4, p.product_id = 8;
    assert_int_equal(veil_sgx_report_verify(rep, sizeof rep, fake_report_key, &cache_enclave, &p, x_now, &out).status,
                     VEIL_ERR_POLICY);
    assert_int_equal(veil_sgx_report_verify(rep, sizeof rep - 1, fake_report_key, &cache_enclave, &p, x_now, &out)
                         .status,
                     VEIL_ERR_FORMAT);
}

/* EREPORT through a fake Gramine tree: the peer's TARGETINFO and the report data are written, the report read. */
static void test_sgx_gramine_tree(void **state)
{
    (void)state;
    char *dir = tu_tmpdir();
    uint8_t ti[VEIL_SGX_TARGETINFO_SIZE], peer_ti[VEIL_SGX_TARGETINFO_SIZE], rd[64], rep[VEIL_SGX_REPORT_SIZE];
    uint8_t got[VEIL_SGX_REPORT_SIZE];
    memset(ti, 0x71, sizeof ti), memset(peer_ti, 0x9e, sizeof peer_ti), memset(rd, 0xbd, sizeof rd);
    memset(rep, 0xee, sizeof rep);
    tu_write(tu_path(0, dir, "my_target_info"), ti, sizeof ti);
    tu_write(tu_path(0, dir, "target_info"), "", 0);
    tu_write(tu_path(0, dir, "user_report_data"), "", 0);
    assert_int_equal(veil_sgx_report_create(dir, peer_ti, rd, got).status, VEIL_ERR_IO); /* no report file */
    tu_write(tu_path(0, dir, "report"), rep, sizeof rep);
    uint8_t mine[VEIL_SGX_TARGETINFO_SIZE];
    assert_true(veil_ok(veil_sgx_my_target_info(dir, mine)));
    assert_memory_equal(mine, ti, sizeof ti);
    assert_true(veil_ok(veil_sgx_report_create(dir, peer_ti, rd, got)));
    assert_memory_equal(got, rep, sizeof rep);
    size_t n = 0;
    uint8_t *w = tu_read(tu_path(0, dir, "target_info"), &n);
    assert_int_equal(n, sizeof peer_ti);
    assert_memory_equal(w, peer_ti, n);
    free(w);
    w = tu_read(tu_path(0, dir, "user_report_data"), &n);
    assert_int_equal(n, sizeof rd);
    assert_memory_equal(w, rd, n);
    free(w);
    tu_write(tu_path(0, dir, "report"), rep, 100); /* a short report */
    assert_int_equal(veil_sgx_report_create(dir, peer_ti, rd, got).status, VEIL_ERR_FORMAT);
    tu_rmdir(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lease_put_find_expire), cmocka_unit_test(test_lease_schedule),
        cmocka_unit_test(test_lease_bounds),          cmocka_unit_test(test_codec_round_trip),
        cmocka_unit_test(test_codec_refusals),        cmocka_unit_test(test_codec_key_refusals),
        cmocka_unit_test(test_binding),               cmocka_unit_test(test_sim_reports),
        cmocka_unit_test(test_sim_measure_matches_provider), cmocka_unit_test(test_sgx_verify),
        cmocka_unit_test(test_sgx_gramine_tree),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
