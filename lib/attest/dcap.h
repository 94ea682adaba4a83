/* SPDX-License-Identifier: Apache-2.0 */
/* DCAP internals (lib/attest/verifiers/dcap_*.c): the quote parser, the collateral parser, the PCCS client and the
 * verifier's steps. Layouts are in shared/reference/attestation.md section 5 (Intel's "SGX ECDSA Quote Library
 * API" and "TDX DCAP Quoting Library API" documents); matching follows dcap-qvl (src/verify.rs), which follows
 * Intel's QVL.
 *
 * What the verifier decides, and what it leaves to the policy (lib/attest/policy.c):
 *   - refused here: anything that does not parse, any signature, chain, CRL or binding that does not verify, a
 *     certificate or collateral outside its window at options->now (VEIL_ERR_EXPIRED), a platform below every
 *     TCB level or Revoked, a QE that does not match its identity (or is a debug enclave), TD attributes with
 *     reserved bits set or SEPT_VE_DISABLE clear, a non-zero MRSERVICETD (TD 1.5) -- claims cannot carry those;
 *   - reported, not refused: the enclave's or TD's DEBUG bit (claims->debug), the TCB status and advisories.
 *     A debug enclave or TD protects nothing: the policy refuses it unless it explicitly allows debug.
 *
 * Known differences from Intel's QVL, all shared with dcap-qvl 0.7.0: TD 1.5's TEE_TCB_SVN2 (the module running
 * now, for the relaunch advice) is parsed but not evaluated -- the status is that of TEE_TCB_SVN; only TCB info
 * version 3 (sgxtcbcomponents arrays) is accepted. */
#ifndef VEIL_ATTEST_DCAP_H
#define VEIL_ATTEST_DCAP_H

#include <stddef.h>
#include <stdint.h>

#include "core/result.h"
#include "veil/attest.h"

#define VEIL_DCAP_HEADER_SIZE 48u
#define VEIL_DCAP_REPORT_SIZE 384u   /* SGX REPORTBODY */
#define VEIL_DCAP_TD10_SIZE 584u
#define VEIL_DCAP_TD15_SIZE 648u
#define VEIL_DCAP_SIG_SIZE 64u       /* ECDSA P-256 r || s, big-endian */
#define VEIL_DCAP_KEY_SIZE 64u       /* P-256 public point x || y, big-endian */
#define VEIL_DCAP_TEE_SGX 0x00000000u
#define VEIL_DCAP_TEE_TDX 0x00000081u
#define VEIL_DCAP_KEY_ECDSA_P256 2u
#define VEIL_DCAP_CERT_PCK_CHAIN 5u  /* PEM: PCK leaf, PCK Platform/Processor CA, Intel SGX Root CA */
#define VEIL_DCAP_CERT_QE_REPORT 6u  /* QE report certification data (v4/v5) */
#define VEIL_DCAP_FMSPC_SIZE 6u
#define VEIL_DCAP_PCEID_SIZE 2u

enum veil_dcap_body { VEIL_DCAP_BODY_SGX = 1, VEIL_DCAP_BODY_TD10 = 2, VEIL_DCAP_BODY_TD15 = 3 };

/* SGX REPORTBODY: the enclave's report in a v3 quote and the QE's report in every version. */
struct veil_dcap_report {
    uint8_t cpusvn[16];
    uint32_t miscselect;
    uint8_t attributes[16];  /* flags u64 LE (DEBUG = bit 1) then XFRM */
    uint8_t mrenclave[32];
    uint8_t mrsigner[32];
    uint8_t configid[64];
    uint16_t isvprodid;
    uint16_t isvsvn;
    uint8_t report_data[64];
};

/* TD report body (TDREPORT10; TD15 adds the last two fields). */
struct veil_dcap_td_report {
    uint8_t tee_tcb_svn[16];
    uint8_t mr_seam[48];
    uint8_t mr_signer_seam[48];
    uint8_t seam_attributes[8];
    uint64_t td_attributes;
    uint8_t xfam[8];
    uint8_t mrtd[48];
    uint8_t mrconfigid[48];
    uint8_t mrowner[48];
    uint8_t mrownerconfig[48];
    uint8_t rtmr[4][48];
    uint8_t report_data[64];
    uint8_t tee_tcb_svn2[16];   /* TD15 only */
    uint8_t mr_service_td[48];  /* TD15 only */
};

/* A parsed quote. Pointers borrow the caller's buffer. */
struct veil_dcap_quote {
    uint16_t version;
    uint16_t key_type;
    uint32_t tee_type;
    uint16_t qe_svn;
    uint16_t pce_svn;
    uint8_t qe_vendor_id[16];
    uint16_t body_type;                    /* enum veil_dcap_body */
    struct veil_dcap_report sgx;           /* body_type SGX */
    struct veil_dcap_td_report td;         /* body_type TD10 / TD15 */
    const uint8_t *signed_data;            /* header (+ v5 body descriptor) + body: what isv_sig covers */
    size_t signed_size;
    uint8_t isv_sig[VEIL_DCAP_SIG_SIZE];
    uint8_t attest_key[VEIL_DCAP_KEY_SIZE];
    const uint8_t *qe_report_raw;          /* VEIL_DCAP_REPORT_SIZE bytes: what qe_report_sig covers */
    struct veil_dcap_report qe_report;
    uint8_t qe_report_sig[VEIL_DCAP_SIG_SIZE];
    const uint8_t *qe_auth;
    size_t qe_auth_size;
    const uint8_t *cert_data;              /* type 5 PEM chain, trailing NUL padding removed */
    size_t cert_size;
};

/* Parses a quote field by field (section 5). Trailing bytes after the signature data are accepted only when
 * they are all zero (configfs-tsm and dstack pad quotes); anything else is VEIL_ERR_EVIDENCE. */
VEIL_RESULT veil_dcap_quote_parse(const uint8_t *quote, size_t size, struct veil_dcap_quote *out);

/* ---- Collateral ------------------------------------------------------------------------------------------ */

/* In order of severity, as dcap-qvl's TcbStatus::severity(): the merge keeps the worse. */
enum veil_dcap_tcb_status {
    VEIL_DCAP_UP_TO_DATE = 0,
    VEIL_DCAP_SW_HARDENING_NEEDED = 1,
    VEIL_DCAP_CONFIGURATION_NEEDED = 2,
    VEIL_DCAP_CONFIGURATION_AND_SW_HARDENING_NEEDED = 3,
    VEIL_DCAP_OUT_OF_DATE = 4,
    VEIL_DCAP_OUT_OF_DATE_CONFIGURATION_NEEDED = 5,
    VEIL_DCAP_REVOKED = 6
};
const char *veil_dcap_tcb_status_name(enum veil_dcap_tcb_status s);

/* A status with its advisories (at most VEIL_MAX_ADVISORIES after merging). */
struct veil_dcap_status {
    enum veil_dcap_tcb_status status;
    char advisories[VEIL_MAX_ADVISORIES][32];
    size_t advisory_count;
};
/* dcap-qvl's TcbStatusWithAdvisory::merge: the worse status; advisories of a, then those of b not yet there. */
VEIL_RESULT veil_dcap_status_merge(struct veil_dcap_status *a, const struct veil_dcap_status *b);

struct veil_dcap_tcb_level {
    uint8_t sgx[16];        /* sgxtcbcomponents[].svn */
    uint8_t tdx[16];        /* tdxtcbcomponents[].svn (TDX) */
    uint16_t pcesvn;
    struct veil_dcap_status status;
};

struct veil_dcap_module_level {
    uint8_t isvsvn;
    struct veil_dcap_status status;
};

struct veil_dcap_module_identity {
    char id[16];            /* "TDX_03" */
    uint8_t mrsigner[48];
    uint8_t attributes[8];
    uint8_t attributes_mask[8];
    struct veil_dcap_module_level *levels;
    size_t level_count;
};

struct veil_dcap_tcb_info {
    int tdx;                /* id "TDX" (else "SGX") */
    uint64_t version;
    uint64_t issue_date, next_update;  /* seconds since the epoch */
    uint8_t fmspc[VEIL_DCAP_FMSPC_SIZE];
    uint8_t pceid[VEIL_DCAP_PCEID_SIZE];
    struct veil_dcap_tcb_level *levels; /* in Intel QVL's canonical order (highest first) */
    size_t level_count;
    int has_module;                     /* tdxModule (required for TDX) */
    struct veil_dcap_module_identity module;  /* tdxModule: mrsigner, attributes, mask; no levels */
    struct veil_dcap_module_identity *identities;
    size_t identity_count;
};

struct veil_dcap_qe_level {
    uint16_t isvsvn;
    struct veil_dcap_status status;
};

struct veil_dcap_qe_identity {
    int td_qe;              /* id "TD_QE" (else "QE") */
    uint64_t version;
    uint64_t issue_date, next_update;
    uint8_t miscselect[4], miscselect_mask[4];
    uint8_t attributes[16], attributes_mask[16];
    uint8_t mrsigner[32];
    uint16_t isvprodid;
    struct veil_dcap_qe_level *levels;  /* in the served order (highest first) */
    size_t level_count;
};

/* Collateral in dcap-qvl's QuoteCollateralV3 layout. Every member is owned. */
struct veil_dcap_collateral {
    char *pck_crl_issuer_chain;
    uint8_t *root_ca_crl;
    size_t root_ca_crl_size;
    uint8_t *pck_crl;
    size_t pck_crl_size;
    char *tcb_info_issuer_chain;
    char *tcb_info_json;                /* the exact signed bytes */
    size_t tcb_info_json_size;
    uint8_t tcb_info_sig[VEIL_DCAP_SIG_SIZE];
    char *qe_identity_issuer_chain;
    char *qe_identity_json;
    size_t qe_identity_json_size;
    uint8_t qe_identity_sig[VEIL_DCAP_SIG_SIZE];
    struct veil_dcap_tcb_info tcb_info;       /* parsed from tcb_info_json (not yet trusted) */
    struct veil_dcap_qe_identity qe_identity; /* parsed from qe_identity_json (not yet trusted) */
};

void veil_dcap_collateral_init(struct veil_dcap_collateral *c);
void veil_dcap_collateral_cleanup(struct veil_dcap_collateral *c);
/* Parses dcap-qvl's collateral JSON (hex CRLs and signatures, PEM chains, tcb_info / qe_identity strings) and
 * the tcbInfo / enclaveIdentity inside. Signatures and windows are checked later, by the verifier. */
VEIL_RESULT veil_dcap_collateral_parse(const uint8_t *json, size_t size, struct veil_dcap_collateral *c);
/* Serializes c into the same layout (for the cache). *out is malloc'd. */
VEIL_RESULT veil_dcap_collateral_dump(const struct veil_dcap_collateral *c, char **out);
/* Parses one signed tcbInfo / enclaveIdentity object (its exact bytes). */
VEIL_RESULT veil_dcap_tcb_info_parse(const char *json, size_t size, struct veil_dcap_tcb_info *out);
void veil_dcap_tcb_info_cleanup(struct veil_dcap_tcb_info *t);
VEIL_RESULT veil_dcap_qe_identity_parse(const char *json, size_t size, struct veil_dcap_qe_identity *out);
void veil_dcap_qe_identity_cleanup(struct veil_dcap_qe_identity *q);
/* "2025-06-19T10:56:11Z" (the only form Intel serves) into seconds since the epoch. */
VEIL_RESULT veil_dcap_parse_time(const char *s, uint64_t *out);

/* ---- PCCS (dcap_pccs.c) ---------------------------------------------------------------------------------- */

/* Fetches the collateral for a parsed quote from options->pccs_url (PCS/PCCS v4 API), or takes it from the cache
 * in options->collateral_cache_dir when an entry there is fresh at options->now (the windows of its tcbInfo,
 * enclaveIdentity and CRLs). *fetched says it came from the network. Either way it is untrusted until verified. */
VEIL_RESULT veil_dcap_pccs_fetch(const struct veil_dcap_quote *quote, const uint8_t fmspc[VEIL_DCAP_FMSPC_SIZE],
                                 int processor_ca, const struct veil_verify_options *options,
                                 struct veil_dcap_collateral *out, int *fetched);
/* Writes fetched collateral to the cache (atomically, mode 0600) once it has verified; nothing without a cache. */
VEIL_RESULT veil_dcap_pccs_cache_store(const struct veil_dcap_quote *quote,
                                       const uint8_t fmspc[VEIL_DCAP_FMSPC_SIZE], int processor_ca,
                                       const struct veil_verify_options *options,
                                       const struct veil_dcap_collateral *c);

/* ---- Verifier steps (dcap_verify.c, dcap_x509.c) -------------------------------------------------------- */

/* The PCK leaf's SGX extension (OID 1.2.840.113741.1.13.1). */
struct veil_dcap_pck_ext {
    uint8_t ppid[16];
    uint8_t comp_svn[16];   /* .2.1 .. .2.16 */
    uint16_t pcesvn;        /* .2.17 */
    uint8_t cpusvn[16];     /* .2.18 */
    uint8_t pceid[VEIL_DCAP_PCEID_SIZE];
    uint8_t fmspc[VEIL_DCAP_FMSPC_SIZE];
    int processor_ca;       /* issued by the PCK Processor CA (else Platform CA) */
};

/* Steps 1-5 only (parse, PCK chain to the pinned root at `now` -- CRLs when given --, QE report signature, QE
 * report data binding, quote signature), then the claims of the quote body without a TCB status. For tests
 * and tools that have a quote but no collateral; veil_dcap_verify never stops here. crls may be NULL. */
VEIL_RESULT veil_dcap_verify_signatures(const uint8_t *quote, size_t size, uint64_t now,
                                        const struct veil_dcap_collateral *crls, struct veil_dcap_quote *parsed,
                                        struct veil_dcap_pck_ext *pck, struct veil_claims *claims);
/* The whole verification with parsed collateral. */
VEIL_RESULT veil_dcap_verify_collateral(const uint8_t *quote, size_t size, const struct veil_dcap_collateral *c,
                                        uint64_t now, struct veil_claims *claims);

/* OpenSSL helpers (dcap_x509.c). Chains are PEM text; the pinned root is lib/attest/intel_root.h. */
struct veil_dcap_x509;  /* opaque: a verified leaf certificate */
/* Verifies a PEM chain (leaf first) up to the pinned Intel root at `now`, with the CRLs of c when c is not NULL
 * (every certificate of the chain, the root included, must be covered). When root_last, the chain's last
 * certificate must be the pinned root itself. *leaf_out (may be NULL) receives the leaf (free with _free). */
VEIL_RESULT veil_dcap_chain_verify(const char *pem, size_t pem_size, int root_last, uint64_t now,
                                   const struct veil_dcap_collateral *c, struct veil_dcap_x509 **leaf_out);
void veil_dcap_x509_free(struct veil_dcap_x509 *x);
/* The subject common name of the certificate Intel signs TCB info and QE identity with. */
#define VEIL_DCAP_TCB_SIGNING_CN "Intel SGX TCB Signing"
/* The signer of a collateral object (TCB info, QE identity) must be Intel's TCB signing certificate, not any
 * leaf that chains to the root (a PCK certificate does): subject CN exactly VEIL_DCAP_TCB_SIGNING_CN, issued by
 * the pinned Intel SGX Root CA itself, not a CA. VEIL_ERR_VERIFY otherwise; what names the object. */
VEIL_RESULT veil_dcap_tcb_signer_check(const struct veil_dcap_x509 *signer, const char *what);
/* The first certificate of a PEM chain, NOT verified: only to learn what collateral to fetch. */
VEIL_RESULT veil_dcap_leaf_read(const char *pem, size_t pem_size, struct veil_dcap_x509 **out);
/* ECDSA P-256 / SHA-256 over data with the leaf's key; raw r || s. VEIL_ERR_VERIFY when it does not verify. */
VEIL_RESULT veil_dcap_verify_sig_cert(const struct veil_dcap_x509 *leaf, const uint8_t *data, size_t size,
                                      const uint8_t sig[VEIL_DCAP_SIG_SIZE], const char *what);
/* Same with a raw P-256 point x || y. */
VEIL_RESULT veil_dcap_verify_sig_raw(const uint8_t key[VEIL_DCAP_KEY_SIZE], const uint8_t *data, size_t size,
                                     const uint8_t sig[VEIL_DCAP_SIG_SIZE], const char *what);
VEIL_RESULT veil_dcap_pck_ext_parse(const struct veil_dcap_x509 *leaf, struct veil_dcap_pck_ext *out);

#endif
