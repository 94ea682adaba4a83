/* SPDX-License-Identifier: Apache-2.0 */
/* The local protocol between veil-runtime (R) and veil-cache (C) on one node, and its local attestation
 * (docs/cache.md, "Protocol"; shared/reference/deployment.md §1.6–1.7). Daemon-free: a codec for the messages, the
 * channel binding, the simulation TEE's local reports (MACed with a node-local report key), and SGX REPORTs
 * (EREPORT through Gramine's /dev/attestation, verified with the report key of EGETKEY, which callers may inject).
 *
 * Every message travels in a frame: u32le body size (1..VEIL_LA_MAX_MESSAGE_SIZE), then the body:
 *
 *   u8 version (= 1) | u8 type | payload, all integers little-endian, nothing after the payload:
 *   HELLO       R->C  nonce_r[32] | u8 kind | u16 target_size | target            (R's target: whom C reports to)
 *   CHALLENGE   C->R  nonce_c[32] | u8 kind | u16 target_size | target | u16 report_size | report (C's, for R)
 *   ATTEST      R->C  u8 kind | u16 report_size | report                           (R's, for C)
 *   READY       C->R  (empty)                                                       (R may ask for keys now)
 *   KEY_REQUEST R->C  u32 key_version | u8 id_size | model_id
 *   KEY         C->R  u32 key_version | u64 min_model_version | u64 lease_ms | u8 key_size | key
 *                     | u8 has_usage | u32 usage_size | usage (JSON text; has_usage 0: none, usage_size 0)
 *                     | u32 counts_size | counts                   (the model's usage counts as the cache knows them)
 *   RENEW       R->C  u32 key_version | u8 id_size | model_id | u32 counts_size | counts  (R's unreported usage)
 *   LEASE       C->R  u64 lease_ms | u32 counts_size | counts       (the counts after R's report)
 *   ERROR       C->R  u16 code | u8 message_size | message (printable ASCII)
 *
 * kind names the local report: NONE (the peer check alone: both daemons inside one confidential VM), SIM
 * (target = the verifier's 48-byte measurement, report = VEIL_LA_SIM_REPORT_SIZE bytes) or SGX (target = a
 * 512-byte TARGETINFO, report = a 432-byte REPORT). Each side's report carries, as its 64 bytes of report data,
 *
 *   SHA-512("VEIL-LOCAL-ATTESTATION-V1" 0x00 || role || nonce_r || nonce_c || u16le(|target_r|) || target_r
 *           || u16le(|target_c|) || target_c [|| X])               role: 'R' in R's report, 'C' in C's
 *
 *   X = SSL_export_keying_material(ssl, 64, "EXPORTER-veil-local-attestation", no context)   (RFC 8446 §7.5)
 *
 * so that a report belongs to one handshake (both fresh nonces) and one direction (no reflection). X, 64 bytes, is
 * there only for kind SGX, whose messages always travel inside a TLS 1.3 session (two enclaves talk across the
 * untrusted host: TCP on loopback): it ties the reports to that session, whose keys only the two enclaves hold, so
 * that a host relaying the messages between two TLS sessions of its own (it can: the certificates are ephemeral
 * and unverified) gets reports bound to the other session's X. One exporter serves both directions: the role byte
 * in the hash separates them, as per-role exporter contexts would. Kinds NONE and SIM, on a Unix socket inside one
 * TEE, have no X (their binding is unchanged).
 *
 * counts: a usage count document (lib/serve/usage.h: JSON text {client name: count}, at most
 * VEIL_USAGE_COUNTS_MAX_SIZE bytes, no NUL; counts_size 0: none). The codec checks its bounds; its syntax is the
 * receiver's to check (veil_usage_counts_parse). Version 2 added the counts. */
#ifndef VEIL_CACHE_LOCAL_H
#define VEIL_CACHE_LOCAL_H

#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/result.h"
#include "kbs/kbs.h"
#include "serve/usage.h"
#include "veil/attest.h"

#define VEIL_LA_VERSION 2u
#define VEIL_LA_MAX_MESSAGE_SIZE (2u << 20) /* a key and a usage policy (at most 1 MiB) with room to spare */
#define VEIL_LA_USAGE_MAX_SIZE (1u << 20)
#define VEIL_LA_NONCE_SIZE 32u
#define VEIL_LA_BINDING_SIZE 64u
#define VEIL_LA_ERROR_MAX 200u
#define VEIL_LA_MAX_TARGET_SIZE 512u
#define VEIL_LA_MAX_REPORT_SIZE 432u
#define VEIL_LA_BINDING_DOMAIN "VEIL-LOCAL-ATTESTATION-V1"

enum veil_la_type {
    VEIL_LA_HELLO = 1,
    VEIL_LA_CHALLENGE = 2,
    VEIL_LA_ATTEST = 3,
    VEIL_LA_READY = 4,
    VEIL_LA_KEY_REQUEST = 5,
    VEIL_LA_KEY = 6,
    VEIL_LA_RENEW = 7,
    VEIL_LA_LEASE = 8,
    VEIL_LA_ERROR = 9,
};

enum veil_la_kind { VEIL_LA_KIND_NONE = 0, VEIL_LA_KIND_SIM = 1, VEIL_LA_KIND_SGX = 2 };

/* ERROR codes (docs/cache.md, "Errors"). */
enum veil_la_error {
    VEIL_LA_E_BAD_MESSAGE = 1,   /* malformed, unexpected in this state, or of another version */
    VEIL_LA_E_PEER = 2,          /* the connecting process is not an allowed peer (uid, executable) */
    VEIL_LA_E_REPORT = 3,        /* the local report does not verify (MAC, target, binding, measurement) */
    VEIL_LA_E_NOT_ALLOWED = 4,   /* this runtime's measurement may not have this model's key */
    VEIL_LA_E_REVOKED = 5,       /* the broker refused the key (revoked version, policy no longer allows the node) */
    VEIL_LA_E_UNAVAILABLE = 6,   /* no valid lease, and the broker cannot be reached now */
    VEIL_LA_E_INTERNAL = 7,
};

/* One decoded message. Pointers point into the decoded body (borrowed: valid while it is). */
struct veil_la_msg {
    uint8_t type;
    uint8_t kind;                                 /* HELLO, CHALLENGE, ATTEST */
    uint8_t nonce[VEIL_LA_NONCE_SIZE];            /* HELLO, CHALLENGE */
    const uint8_t *target;                        /* HELLO, CHALLENGE */
    size_t target_size;
    const uint8_t *report;                        /* CHALLENGE, ATTEST */
    size_t report_size;
    char model_id[VEIL_KBS_MODEL_ID_MAX + 1];     /* KEY_REQUEST, RENEW */
    uint32_t key_version;                         /* KEY_REQUEST, RENEW, KEY (1..2^32-1) */
    uint64_t min_model_version;                   /* KEY */
    uint64_t lease_ms;                            /* KEY, LEASE (1..VEIL_LEASE_MAX_MS) */
    const uint8_t *key;                           /* KEY (16..64 bytes) */
    size_t key_size;
    int has_usage;                                /* KEY */
    const char *usage;                            /* KEY: not NUL-terminated; usage_size bytes */
    size_t usage_size;
    const char *counts;                           /* KEY, RENEW, LEASE: not NUL-terminated; counts_size bytes */
    size_t counts_size;                           /* 0: none */
    uint16_t error;                               /* ERROR */
    char message[VEIL_LA_ERROR_MAX + 1];          /* ERROR, NUL-terminated */
};

/* Target and report sizes of a kind (0 for NONE); VEIL_ERR_FORMAT for an unknown kind. */
VEIL_RESULT veil_la_kind_sizes(uint8_t kind, size_t *target_size, size_t *report_size);

/* Parses one body (without its frame header): strict, bounded, every field checked as documented above.
 * VEIL_ERR_FORMAT (or VEIL_ERR_TRUNCATED / VEIL_ERR_LIMIT) on anything else; *out is then zeroed. */
VEIL_RESULT veil_la_decode(const uint8_t *body, size_t size, struct veil_la_msg *out);
/* Appends the frame (u32le size, then the body) of m to out. For KEY, out should be a secret buffer. The same
 * checks as the decoder: what one side encodes, the other decodes. */
VEIL_RESULT veil_la_encode(const struct veil_la_msg *m, struct veil_buf *out);
/* The u32le frame header: the body size, checked against 1..VEIL_LA_MAX_MESSAGE_SIZE. */
VEIL_RESULT veil_la_frame_size(const uint8_t header[4], size_t *size);

/* What frames travel on (io.c): a connected stream socket, and the TLS session on it when there is one (kind SGX,
 * between two enclaves: lib/cache/tls.c); ssl NULL: the socket itself (a Unix socket inside one TEE). The caller
 * owns both, and the socket's timeouts (SO_RCVTIMEO / SO_SNDTIMEO), which bound TLS reads and writes too. */
struct ssl_st;
struct veil_la_conn {
    int fd;
    struct ssl_st *ssl;
};

/* Sends m as one frame on c (no SIGPIPE on a plain socket; with TLS, whose writes are OpenSSL's, the process ignores
 * SIGPIPE, as the daemons do). VEIL_ERR_IO when the peer is gone or the send times out; the encoder's errors
 * otherwise. Key material is wiped from the frame buffer before return. */
VEIL_RESULT veil_la_send(const struct veil_la_conn *c, const struct veil_la_msg *m);
/* Receives one frame into body (a caller's buffer: secret when a KEY may come) and decodes it into m, whose
 * pointers point into body. VEIL_ERR_IO: the peer closed, the read timed out or failed; VEIL_ERR_LIMIT: a frame
 * size out of bounds; VEIL_ERR_FORMAT / VEIL_ERR_TRUNCATED: a malformed body. */
VEIL_RESULT veil_la_recv(const struct veil_la_conn *c, struct veil_buf *body, struct veil_la_msg *m);
/* The runtime's side: receives the next message, which must be of type want. An ERROR from the cache becomes
 * VEIL_ERR_POLICY for its definitive answers (peer, report, not-allowed, revoked: stop using the key) and
 * VEIL_ERR_IO for the others (the cache cannot say now); another type is VEIL_ERR_FORMAT. */
VEIL_RESULT veil_la_expect(const struct veil_la_conn *c, struct veil_buf *body, uint8_t want, struct veil_la_msg *m);

/* An ERROR message with code and a printable message (truncated to fit). */
void veil_la_error_msg(struct veil_la_msg *m, uint16_t code, const char *message);
/* A short name of an error code, for logs and metrics ("bad-message", "peer", ...). */
const char *veil_la_error_name(uint16_t code);

/* The channel binding of one handshake for role 'R' or 'C' (see above); exporter: X (VEIL_LA_EXPORTER_SIZE bytes)
 * for kind SGX, NULL for the others. */
VEIL_RESULT veil_la_binding(uint8_t role, const uint8_t nonce_r[VEIL_LA_NONCE_SIZE],
                            const uint8_t nonce_c[VEIL_LA_NONCE_SIZE], const uint8_t *target_r, size_t target_r_size,
                            const uint8_t *target_c, size_t target_c_size, const uint8_t *exporter,
                            uint8_t out[VEIL_LA_BINDING_SIZE]);

/* ---- the TLS channel of kind SGX (tls.c) ---------------------------------------------------------------------
 * TLS 1.3 only, on TCP loopback. The cache (server) presents an ephemeral P-256 key and self-signed certificate
 * made in memory at start (veil_selfsigned_create); the runtime (client) verifies no certificate: what the TLS
 * session gives is confidentiality and integrity toward whoever holds its keys, and the EREPORTs bound to X (above)
 * prove that the two ends are the expected enclaves. */

#define VEIL_LA_EXPORTER_LABEL "EXPORTER-veil-local-attestation"
#define VEIL_LA_EXPORTER_SIZE 64u

struct ssl_ctx_st;
/* A TLS 1.3-only context: server (its fresh certificate and key inside) or client (no verification). The caller
 * frees it with veil_la_tls_ctx_free. */
VEIL_RESULT veil_la_tls_ctx_new(int server, struct ssl_ctx_st **out);
void veil_la_tls_ctx_free(struct ssl_ctx_st *ctx);
/* The TLS handshake (accept when ctx is a server's, connect otherwise) on the connected socket fd, bounded by its
 * timeouts; on success c = {fd, the session}. VEIL_ERR_IO when the peer does not complete a TLS 1.3 handshake. */
VEIL_RESULT veil_la_tls_open(struct ssl_ctx_st *ctx, int fd, struct veil_la_conn *c);
/* Sends close_notify (best effort) and frees the session; the socket stays the caller's. Accepts c->ssl NULL. */
void veil_la_tls_close(struct veil_la_conn *c);
/* X of c's session (VEIL_ERR_ARG when c has none). */
VEIL_RESULT veil_la_tls_exporter(const struct veil_la_conn *c, uint8_t out[VEIL_LA_EXPORTER_SIZE]);

/* ---- simulation TEE local reports (sim.c) --------------------------------------------------------------------
 *
 *   report = measurement[48] || report_data[64] || mac[32]
 *   mac    = HMAC-SHA256(report_key, "VEIL-SIM-LOCAL-REPORT-V1" 0x00 || target[48] || measurement || report_data)
 *   report_key = HKDF-SHA256(ikm = the bytes of SIM_DIR/platform.key, info = "VEIL-SIM-REPORT-KEY-V1")
 *
 * As SGX's report key, the simulation report key is known only on this node (to processes that can read the
 * simulation platform's private key, which, like everything in the simulation, protects nothing). */

#define VEIL_LA_SIM_MEASUREMENT_SIZE 48u
#define VEIL_LA_SIM_MAC_SIZE 32u
#define VEIL_LA_SIM_REPORT_SIZE (VEIL_LA_SIM_MEASUREMENT_SIZE + VEIL_REPORT_DATA_SIZE + VEIL_LA_SIM_MAC_SIZE)
#define VEIL_LA_SIM_REPORT_KEY_SIZE 32u
#define VEIL_LA_SIM_REPORT_DOMAIN "VEIL-SIM-LOCAL-REPORT-V1"
#define VEIL_LA_SIM_KEY_INFO "VEIL-SIM-REPORT-KEY-V1"

/* The node's simulation report key, derived from sim_dir's platform key (out: a caller's secret buffer). */
VEIL_RESULT veil_la_sim_report_key(const char *sim_dir, uint8_t out[VEIL_LA_SIM_REPORT_KEY_SIZE]);
/* The measurement a simulated TEE has when it runs exe with no configuration file (lib/attest/tees/sim.c's formula):
 * the identity in sim local reports. exe may be "/proc/PID/exe". */
VEIL_RESULT veil_la_sim_measure(const char *exe, uint8_t out[VEIL_LA_SIM_MEASUREMENT_SIZE]);
/* A report of measurement for target, binding report_data. */
VEIL_RESULT veil_la_sim_report(const uint8_t key[VEIL_LA_SIM_REPORT_KEY_SIZE],
                               const uint8_t target[VEIL_LA_SIM_MEASUREMENT_SIZE],
                               const uint8_t measurement[VEIL_LA_SIM_MEASUREMENT_SIZE],
                               const uint8_t report_data[VEIL_REPORT_DATA_SIZE],
                               uint8_t out[VEIL_LA_SIM_REPORT_SIZE]);
/* Verifies a report made for self (this verifier's measurement): the MAC in constant time, then that the report
 * data equals expected. The reporter's measurement goes to measurement_out. VEIL_ERR_AUTH: the MAC (another key,
 * another target, a changed byte); VEIL_ERR_VERIFY: another binding (a replayed or relayed report). */
VEIL_RESULT veil_la_sim_verify(const uint8_t key[VEIL_LA_SIM_REPORT_KEY_SIZE],
                               const uint8_t self[VEIL_LA_SIM_MEASUREMENT_SIZE], const uint8_t *report,
                               size_t report_size, const uint8_t expected[VEIL_REPORT_DATA_SIZE],
                               uint8_t measurement_out[VEIL_LA_SIM_MEASUREMENT_SIZE]);

/* ---- SGX local attestation (sgx.c) ---------------------------------------------------------------------------
 * REPORT (432 bytes): body 0..383 (CPUSVN 0, MISCSELECT 16, ATTRIBUTES 48 (flags u64, xfrm u64), MRENCLAVE 64,
 * MRSIGNER 128, CONFIGID 192, ISVPRODID 256, ISVSVN 258, CONFIGSVN 260, ISVFAMILYID 304, REPORTDATA 320),
 * KEYID 384..415 (outside the MAC), MAC 416..431 = AES-128-CMAC(report key of the target, bytes 0..383).
 * Exercised here only against fake /dev/attestation trees and injected report keys: never on SGX hardware. */

#define VEIL_SGX_TARGETINFO_SIZE 512u
#define VEIL_SGX_REPORT_SIZE 432u
#define VEIL_SGX_REPORT_BODY_SIZE 384u
#define VEIL_SGX_KEYID_SIZE 32u
#define VEIL_SGX_REPORT_KEY_SIZE 16u
#define VEIL_SGX_MR_SIZE 32u
#define VEIL_SGX_FLAG_INIT UINT64_C(0x1)
#define VEIL_SGX_FLAG_DEBUG UINT64_C(0x2)
#define VEIL_SGX_FLAG_MODE64BIT UINT64_C(0x4)

struct veil_sgx_report {
    uint64_t flags, xfrm;
    uint32_t miscselect;
    uint8_t mrenclave[VEIL_SGX_MR_SIZE];
    uint8_t mrsigner[VEIL_SGX_MR_SIZE];
    uint16_t isv_prod_id, isv_svn, config_svn;
    uint8_t report_data[VEIL_REPORT_DATA_SIZE];
    uint8_t key_id[VEIL_SGX_KEYID_SIZE];
};

/* Derives the report key for key_id (EGETKEY, KEYNAME = REPORT). Injectable: tests pass their own. */
typedef VEIL_RESULT (*veil_sgx_report_key_fn)(void *ctx, const uint8_t key_id[VEIL_SGX_KEYID_SIZE],
                                              uint8_t key[VEIL_SGX_REPORT_KEY_SIZE]);
/* The real one: ENCLU[EGETKEY] with a 512-byte-aligned KEYREQUEST (KEYNAME 3 at 0, KEYID at 40). Only inside an
 * SGX enclave (elsewhere the instruction faults): never called by the tests of this repository. */
VEIL_RESULT veil_sgx_egetkey_report_key(void *ctx, const uint8_t key_id[VEIL_SGX_KEYID_SIZE],
                                        uint8_t key[VEIL_SGX_REPORT_KEY_SIZE]);

/* Who may report to us: MRENCLAVE in the list, or MRSIGNER equal to signer with ISVPRODID product_id and
 * ISVSVN >= min_svn (when signer is set). DEBUG enclaves are refused unless allow_debug. */
struct veil_sgx_peer_policy {
    const uint8_t (*mrenclaves)[VEIL_SGX_MR_SIZE];
    size_t mrenclave_count;
    const uint8_t *signer; /* VEIL_SGX_MR_SIZE bytes or NULL */
    uint16_t product_id, min_svn;
    int allow_debug;
};

/* An enclave identity one policy admits: an MRENCLAVE, or an MRSIGNER with a product id and a minimum ISVSVN. */
struct veil_sgx_identity {
    int by_signer;
    uint8_t mr[VEIL_SGX_MR_SIZE]; /* MRENCLAVE, or MRSIGNER when by_signer */
    uint16_t product_id, min_svn;
};

/* "MRENCLAVE" (64 hex digits) or "MRSIGNER:ISVPRODID:MIN_ISVSVN" (64 hex digits, then two decimal numbers
 * 0..65535). VEIL_ERR_ARG otherwise. */
VEIL_RESULT veil_sgx_identity_parse(const char *text, struct veil_sgx_identity *out);
/* The policy admitting exactly id's enclaves, DEBUG refused; it points into id (which must outlive it). */
void veil_sgx_identity_policy(const struct veil_sgx_identity *id, struct veil_sgx_peer_policy *out);

/* Parses the fields of a REPORT (no verification). */
VEIL_RESULT veil_sgx_report_parse(const uint8_t *report, size_t size, struct veil_sgx_report *out);
/* AES-128-CMAC over the body (bytes 0..383). */
VEIL_RESULT veil_sgx_report_mac(const uint8_t key[VEIL_SGX_REPORT_KEY_SIZE], const uint8_t *body,
                                uint8_t mac[16]);
/* deployment.md §1.7 step 5: (a) MAC with the report key for the report's KEYID, compared in constant time
 * (VEIL_ERR_AUTH); (b) ATTRIBUTES INIT and MODE64BIT set, DEBUG clear unless allowed, identity per the policy
 * (VEIL_ERR_POLICY); (c) REPORTDATA equal to expected, the binding of this channel (VEIL_ERR_VERIFY). */
VEIL_RESULT veil_sgx_report_verify(const uint8_t *report, size_t size, veil_sgx_report_key_fn key_fn, void *ctx,
                                   const struct veil_sgx_peer_policy *policy,
                                   const uint8_t expected[VEIL_REPORT_DATA_SIZE], struct veil_sgx_report *out);
/* The same, where step (b) passes when any one of count policies admits the report (count >= 1). */
VEIL_RESULT veil_sgx_report_verify_any(const uint8_t *report, size_t size, veil_sgx_report_key_fn key_fn, void *ctx,
                                       const struct veil_sgx_peer_policy *policies, size_t count,
                                       const uint8_t expected[VEIL_REPORT_DATA_SIZE], struct veil_sgx_report *out);
/* Step (b) alone on a report already verified: does any of count policies admit it? VEIL_ERR_POLICY if none does
 * (or count is 0). The cache uses it per request, with the policies of the model asked for. */
VEIL_RESULT veil_sgx_report_admit_any(const struct veil_sgx_report *r, const struct veil_sgx_peer_policy *policies,
                                      size_t count);
/* This enclave's TARGETINFO (Gramine: ROOT/my_target_info). */
VEIL_RESULT veil_sgx_my_target_info(const char *gramine_root, uint8_t out[VEIL_SGX_TARGETINFO_SIZE]);
/* EREPORT for target through Gramine (ROOT: /dev/attestation by default): writes target_info, then
 * user_report_data, then reads report — under one process-wide lock, the peer's TARGETINFO always written just
 * before the report is read (deployment.md §1.7, "Pitfalls"). Do not collect quotes concurrently (they share the
 * pseudo-files). */
VEIL_RESULT veil_sgx_report_create(const char *gramine_root, const uint8_t target_info[VEIL_SGX_TARGETINFO_SIZE],
                                   const uint8_t report_data[VEIL_REPORT_DATA_SIZE],
                                   uint8_t out[VEIL_SGX_REPORT_SIZE]);

/* ---- the SGX handshake over TLS (sgx_channel.c) ------------------------------------------------------------
 * HELLO (nonce_r, TI_R), CHALLENGE (nonce_c, TI_C, REP_C), ATTEST (REP_R), READY, on a veil_la_conn with a TLS
 * session. REP_C = EREPORT(TI_R, B('C')), REP_R = EREPORT(TI_C, B('R')), B with X of this session (above). Each
 * side verifies the other's REPORT (veil_sgx_report_verify_any: MAC under its own report key, attributes and
 * identity against its policies, REPORTDATA = the binding it computes itself). No SO_PEERCRED, no /proc/PID/exe:
 * across two enclaves the REPORT is the identity. */

/* How this enclave makes and checks REPORTs: injectable so the protocol runs without SGX (the tests pass their own;
 * the daemons veil_la_sgx_gramine_report and veil_sgx_egetkey_report_key). Both get ctx. */
struct veil_la_sgx_ops {
    /* EREPORT: this enclave's REPORT for target_info, carrying report_data. */
    VEIL_RESULT (*report)(void *ctx, const uint8_t target_info[VEIL_SGX_TARGETINFO_SIZE],
                          const uint8_t report_data[VEIL_REPORT_DATA_SIZE], uint8_t out[VEIL_SGX_REPORT_SIZE]);
    /* EGETKEY(REPORT): this enclave's report key for a KEYID. */
    veil_sgx_report_key_fn report_key;
    void *ctx;
};

/* veil_sgx_report_create under Gramine; ctx: the attestation directory (char *, NULL or "" for /dev/attestation). */
VEIL_RESULT veil_la_sgx_gramine_report(void *ctx, const uint8_t target_info[VEIL_SGX_TARGETINFO_SIZE],
                                       const uint8_t report_data[VEIL_REPORT_DATA_SIZE],
                                       uint8_t out[VEIL_SGX_REPORT_SIZE]);

/* One side of the handshake. */
struct veil_la_sgx_side {
    uint8_t target_info[VEIL_SGX_TARGETINFO_SIZE]; /* this enclave's (veil_sgx_my_target_info, read at start) */
    struct veil_la_sgx_ops ops;
    const struct veil_sgx_peer_policy *peers;      /* the other end must be admitted by one of these */
    size_t peer_count;
};

/* The runtime's side, on a TLS conn: sends HELLO, verifies the cache's REPORT in CHALLENGE (for us, of an identity
 * self->peers admit, bound to this session), sends ATTEST, waits for READY. The cache's verified REPORT goes to
 * cache. VEIL_ERR_POLICY: the cache's REPORT is refused, or the cache refused us (veil_la_expect); VEIL_ERR_IO: the
 * connection failed; VEIL_ERR_FORMAT: an unexpected message. */
VEIL_RESULT veil_la_sgx_connect(const struct veil_la_conn *c, const struct veil_la_sgx_side *self,
                                struct veil_buf *body, struct veil_sgx_report *cache);
/* The cache's side, on a TLS conn: HELLO, CHALLENGE, ATTEST verified (for us, of an identity one of self->peers
 * admits, bound to this session), READY sent. The runtime's verified REPORT goes to runtime (the caller checks it
 * per model with veil_sgx_report_admit_any). On failure *refusal is the ERROR code to answer with (bad-message,
 * report, internal), or 0 when the connection failed (nothing to answer); the caller sends it and closes. */
VEIL_RESULT veil_la_sgx_accept(const struct veil_la_conn *c, const struct veil_la_sgx_side *self,
                               struct veil_buf *body, struct veil_sgx_report *runtime, uint16_t *refusal);

#endif
