/* SPDX-License-Identifier: Apache-2.0 */
/* Attestation: collect evidence inside a TEE (providers), verify it on the broker (verifiers), judge the
 * resulting claims against a per-model policy. Parse, verify and judge are separate steps; the library never
 * reads the clock, the environment or the network on its own: `now`, paths and URLs are passed in. */
#ifndef VEIL_ATTEST_H
#define VEIL_ATTEST_H

#include <stddef.h>
#include <stdint.h>

#include "veil/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum veil_tee {
    VEIL_TEE_AUTO = 0,   /* collect: detect the hardware present; verify: read the type from the evidence */
    VEIL_TEE_SIM = 1,    /* simulation TEE: protects nothing */
    VEIL_TEE_SAMPLE = 2, /* Trustee's unsigned sample evidence: interoperability tests only */
    VEIL_TEE_SGX = 3,    /* Intel SGX through Gramine, DCAP quote v3 */
    VEIL_TEE_TDX = 4,    /* Intel TDX through configfs-tsm, DCAP quote v4/v5 */
    VEIL_TEE_SNP = 5     /* AMD SEV-SNP through configfs-tsm, attestation report */
} veil_tee;

#define VEIL_REPORT_DATA_SIZE 64u
#define VEIL_MEASUREMENT_MAX 48u
#define VEIL_MAX_ADVISORIES 32u

/* "sim", "sample", "sgx", "tdx", "snp" ("auto" for VEIL_TEE_AUTO). */
VEIL_API const char *veil_tee_name(veil_tee tee);
VEIL_API VEIL_WUR veil_status veil_tee_from_name(const char *name, veil_tee *out);

/* ---- Evidence providers (inside the TEE) ---------------------------------------------------------------- */

/* Where the providers look. Every NULL field takes its default; tests point them at fake trees. */
struct veil_provider_config {
    const char *sim_dir;          /* sim: directory of the platform key (veil attest sim-init); required for sim */
    const char *sim_executable;   /* sim: file whose SHA-384 is the measurement (default /proc/self/exe) */
    const char *sim_config;       /* sim: configuration file measured with it (optional) */
    const char *gramine_root;     /* sgx: default "/dev/attestation" */
    const char *tsm_root;         /* tdx/snp: default "/sys/kernel/config/tsm/report" */
    uint32_t sim_svn;             /* sim: the security version number the simulated TEE reports */
};

/* Finds the TEE this process runs in (sgx, tdx or snp); VEIL_ERR_UNSUPPORTED when there is none. sim and sample
 * are never detected: they must be asked for. */
VEIL_API VEIL_WUR veil_status veil_tee_detect(const struct veil_provider_config *config, veil_tee *out);

/* Collects evidence binding report_data. The evidence is a JSON object {"tee": NAME, ...}; see
 * docs/spec/evidence.md. *evidence_out is owned by the caller (veil_free). */
VEIL_API VEIL_WUR veil_status veil_evidence_collect(veil_tee tee, const struct veil_provider_config *config,
                                                    const uint8_t report_data[VEIL_REPORT_DATA_SIZE],
                                                    char **evidence_out);

/* Creates the simulation platform key pair (ECDSA P-256) in dir (mode 0700): platform.key (PKCS#8 PEM, 0600) and
 * platform.pub (PEM SubjectPublicKeyInfo, 0644). Refuses to replace an existing key. *public_pem_out (caller frees
 * with veil_free; may be NULL; NULL on error) is platform.pub's text: what verifiers must trust. */
VEIL_API VEIL_WUR veil_status veil_sim_init(const char *dir, char **public_pem_out);

/* ---- Claims ------------------------------------------------------------------------------------------------ */

/* The security patch levels (SPLs) of one SEV-SNP TCB_VERSION, decoded for the report's product line
 * (Milan/Genoa {BL, TEE, -, -, -, -, SNP, UCODE}; Turin {FMC, BL, TEE, SNP, -, -, -, UCODE}). fmc is 0 before
 * Turin. SPL numbers are per product line: values of different product lines are not comparable. */
struct veil_snp_tcb {
    uint8_t bootloader, tee, snp, microcode, fmc;
};

/* One normalized claims object, whatever the TEE. Sizes of 0 mean "absent for this TEE". */
struct veil_claims {
    veil_tee tee;
    uint8_t report_data[VEIL_REPORT_DATA_SIZE];
    uint8_t measurement[VEIL_MEASUREMENT_MAX]; /* SGX MRENCLAVE (32), TDX MRTD (48), SNP MEASUREMENT (48), sim (48) */
    size_t measurement_size;
    uint8_t signer[VEIL_MEASUREMENT_MAX];      /* SGX MRSIGNER (32); SNP ID key digest (48) when present */
    size_t signer_size;
    uint8_t rtmr[4][48];                       /* TDX RTMR0..3 */
    size_t rtmr_count;
    uint8_t config_id[64];                     /* SGX CONFIGID (64), TDX MRCONFIGID (48), SNP HOST_DATA (32) */
    size_t config_id_size;
    uint8_t mr_owner[48];                      /* TDX MROWNER */
    size_t mr_owner_size;
    uint8_t mr_owner_config[48];               /* TDX MROWNERCONFIG */
    size_t mr_owner_config_size;
    uint16_t product_id;                       /* SGX ISVPRODID */
    uint32_t svn;                              /* SGX ISVSVN, SNP GUEST_SVN, sim: from its configuration */
    int debug;                                 /* SGX ATTRIBUTES.DEBUG, TDX TD_ATTRIBUTES.DEBUG, SNP POLICY.DEBUG */
    uint32_t vmpl;                             /* SNP only */
    struct veil_snp_tcb reported_tcb;          /* SNP only: REPORTED_TCB, the TCB the VCEK/VLEK certifies */
    struct veil_snp_tcb committed_tcb;         /* SNP only: COMMITTED_TCB, the floor the firmware cannot roll
                                                * back below */
    char tcb_status[48];                       /* SGX/TDX (Intel's TCB info): UpToDate, SWHardeningNeeded,
                                                * ConfigurationNeeded, ConfigurationAndSWHardeningNeeded, OutOfDate,
                                                * OutOfDateConfigurationNeeded; "Simulated" (sim), "Unverified"
                                                * (sample); SNP: "NotJudged" (AMD publishes no TCB status: the
                                                * verifier only checks that the VCEK certifies REPORTED_TCB; the
                                                * policy's min_tcb judges reported_tcb and committed_tcb) */
    char advisories[VEIL_MAX_ADVISORIES][32];  /* e.g. INTEL-SA-00289 */
    size_t advisory_count;
};

/* The claims as a JSON object (hex for byte strings). *json_out is owned by the caller (veil_free). */
VEIL_API VEIL_WUR veil_status veil_claims_to_json(const struct veil_claims *claims, char **json_out);

/* ---- Verification (on the broker) ------------------------------------------------------------------------- */

struct veil_verify_options {
    uint64_t now;                        /* seconds since the epoch: certificates and collateral are judged at it */
    const char *collateral_path;         /* DCAP: collateral JSON file (dcap-qvl's QuoteCollateralV3 layout) */
    const char *pccs_url;                /* DCAP: fetch collateral from a PCCS/PCS base URL instead (libcurl) */
    const char *collateral_cache_dir;    /* DCAP: where fetched collateral is cached (optional) */
    const char *const *sim_trusted_keys; /* sim: trusted simulation platforms' P-256 public keys, each PEM text
                                          * (NUL-terminated) like platform.pub: "-----BEGIN PUBLIC KEY-----",
                                          * base64 lines (LF or CRLF), "-----END PUBLIC KEY-----"; blanks around it
                                          * allowed. A malformed one fails the call with VEIL_ERR_ARG. Borrowed. */
    size_t sim_trusted_key_count;
    const char *snp_cert_path;           /* SNP: VCEK/VLEK (DER or PEM) when the evidence carries no certificate */
};

/* Parses and verifies evidence (JSON from a provider, or a raw quote/report when type is sgx/tdx/snp) against
 * vendor roots and fills *claims. Does not judge policy. On failure *claims is zeroed and the status names the
 * failed step: VEIL_ERR_EVIDENCE (malformed), VEIL_ERR_VERIFY, VEIL_ERR_EXPIRED. */
VEIL_API VEIL_WUR veil_status veil_evidence_verify(const uint8_t *evidence, size_t size, veil_tee type,
                                                   const struct veil_verify_options *options,
                                                   struct veil_claims *claims);

/* ---- Policy ------------------------------------------------------------------------------------------------ */

/* A per-model reference-value policy (docs/spec/policy.md): allowed measurements per TEE type (and TDX RTMRs,
 * MRCONFIGID, MROWNER, MROWNERCONFIG), minimum svn, accepted TCB statuses (SGX, TDX) or minimum TCB (SEV-SNP),
 * debug forbidden unless allowed, sim/sample forbidden unless allowed. Opaque. */
typedef struct veil_policy veil_policy;

VEIL_API VEIL_WUR veil_status veil_policy_parse(const char *json, size_t size, veil_policy **out);
VEIL_API void veil_policy_free(veil_policy *policy);
/* The default policy: refuses everything but verified hardware TEEs with UpToDate TCB (SGX, TDX), debug off;
 * no measurement list, no TDX workload pin and no SEV-SNP min_tcb, so it refuses everything until those are
 * added. */
VEIL_API VEIL_WUR veil_status veil_policy_default(veil_policy **out);
/* The policy's "min_model_version" (0 when absent or policy is NULL). Not judged by veil_policy_check: the key
 * broker returns it with the released key and the TEE passes it to veil_model_open (min_model_version). */
VEIL_API uint64_t veil_policy_min_model_version(const veil_policy *policy);
/* The policy's "lease_ttl_s": how long a key cache may hold a released key before it must renew it with fresh
 * evidence (docs/cache.md), VEIL_POLICY_LEASE_TTL_MIN_S..MAX_S; VEIL_POLICY_LEASE_TTL_DEFAULT_S when absent (or
 * policy is NULL). Not judged by veil_policy_check: the key broker sends it with the key (Veil-Lease-TTL). */
#define VEIL_POLICY_LEASE_TTL_MIN_S 1u
#define VEIL_POLICY_LEASE_TTL_MAX_S 86400u
#define VEIL_POLICY_LEASE_TTL_DEFAULT_S 300u
VEIL_API uint64_t veil_policy_lease_ttl_s(const veil_policy *policy);

/* Judges claims. VEIL_OK, or VEIL_ERR_POLICY with veil_last_error() naming the first failed check.
 * expected_report_data (may be NULL) must equal claims->report_data. */
VEIL_API VEIL_WUR veil_status veil_policy_check(const veil_policy *policy, const struct veil_claims *claims,
                                                const uint8_t *expected_report_data);

#ifdef __cplusplus
}
#endif
#endif
