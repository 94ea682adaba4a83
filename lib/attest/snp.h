/* SPDX-License-Identifier: Apache-2.0 */
/* SEV-SNP internals shared by lib/attest/verifiers/snp_*.c, the unit tests and the fuzzer: the ATTESTATION_REPORT
 * parser (AMD SEV-SNP ABI specification 56860, Table 22 "ATTESTATION_REPORT Structure"), the VCEK/VLEK certificate
 * reader and the chain up to the embedded AMD roots. veil_snp_verify (attest/verifiers.h) coordinates them. */
#ifndef VEIL_ATTEST_SNP_H
#define VEIL_ATTEST_SNP_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/x509.h>

#include "core/result.h"

#define VEIL_SNP_REPORT_SIZE 0x4A0u   /* the whole report */
#define VEIL_SNP_SIGNED_SIZE 0x2A0u   /* "bytes 0h to 29Fh" are signed */
#define VEIL_SNP_SIG_COMPONENT_SIZE 72u /* R and S: little-endian, zero-extended to 72 bytes */
#define VEIL_SNP_P384_SIZE 48u        /* the meaningful low bytes of R and S */
#define VEIL_SNP_CHIP_ID_SIZE 64u
#define VEIL_SNP_SIG_ALGO_ECDSA_P384_SHA384 1u
#define VEIL_SNP_POLICY_DEBUG (UINT64_C(1) << 19)

/* KEY_INFO.SIGNING_KEY (bits 4:2). */
enum veil_snp_key {
    VEIL_SNP_KEY_VCEK = 0, /* Versioned Chip Endorsement Key, signed by the ASK */
    VEIL_SNP_KEY_VLEK = 1  /* Versioned Loaded Endorsement Key, signed by the ASVK */
};

enum veil_snp_product {
    VEIL_SNP_PRODUCT_UNKNOWN = 0,
    VEIL_SNP_PRODUCT_MILAN = 1,
    VEIL_SNP_PRODUCT_GENOA = 2,
    VEIL_SNP_PRODUCT_TURIN = 3
};

/* The security patch levels of a TCB_VERSION, whatever the product's byte layout. */
enum veil_snp_spl { VEIL_SNP_SPL_BOOTLOADER, VEIL_SNP_SPL_TEE, VEIL_SNP_SPL_SNP, VEIL_SNP_SPL_MICROCODE,
                    VEIL_SNP_SPL_FMC, VEIL_SNP_SPL_COUNT };

/* Every field of the report, decoded; the reserved fields are checked to be zero and not kept. */
struct veil_snp_report {
    uint32_t version;        /* 2, 3 or 5 */
    uint32_t guest_svn;
    uint64_t policy;
    uint8_t family_id[16];
    uint8_t image_id[16];
    uint32_t vmpl;
    uint32_t signature_algo; /* always VEIL_SNP_SIG_ALGO_ECDSA_P384_SHA384 after a successful parse */
    uint64_t current_tcb;
    uint64_t platform_info;
    int author_key_en;       /* KEY_INFO bit 0 */
    int mask_chip_key;       /* KEY_INFO bit 1 */
    enum veil_snp_key signing_key;
    uint8_t report_data[64];
    uint8_t measurement[48];
    uint8_t host_data[32];
    uint8_t id_key_digest[48];
    uint8_t author_key_digest[48];
    uint8_t report_id[32];
    uint8_t report_id_ma[32];
    uint64_t reported_tcb;   /* the TCB the VCEK was derived from */
    uint8_t cpuid_fam_id, cpuid_mod_id, cpuid_step; /* version >= 3; zero in version 2 */
    uint8_t chip_id[VEIL_SNP_CHIP_ID_SIZE];
    uint64_t committed_tcb;
    uint8_t current_build, current_minor, current_major;
    uint8_t committed_build, committed_minor, committed_major;
    uint64_t launch_tcb;
    uint64_t launch_mit_vector;  /* version >= 5; zero before */
    uint64_t current_mit_vector; /* version >= 5; zero before */
    uint8_t sig_r[VEIL_SNP_SIG_COMPONENT_SIZE]; /* little-endian, as in the report */
    uint8_t sig_s[VEIL_SNP_SIG_COMPONENT_SIZE];
};

/* Parses exactly VEIL_SNP_REPORT_SIZE bytes. VEIL_ERR_EVIDENCE for a wrong size or a nonzero reserved field,
 * VEIL_ERR_VERSION for an unknown version, VEIL_ERR_UNSUPPORTED for another signature algorithm or signing key. */
VEIL_RESULT veil_snp_report_parse(const uint8_t *data, size_t size, struct veil_snp_report *out);
/* The product line named by CPUID_FAM_ID/CPUID_MOD_ID (version >= 3); UNKNOWN for version 2 or another CPU. */
enum veil_snp_product veil_snp_product_from_cpuid(const struct veil_snp_report *r);
const char *veil_snp_product_name(enum veil_snp_product p);
/* Splits a TCB_VERSION into its SPLs: Milan/Genoa {BL, TEE, -, -, -, -, SNP, UCODE}, Turin {FMC, BL, TEE, SNP,
 * -, -, -, UCODE}. FMC is 0 before Turin. */
void veil_snp_tcb_decode(uint64_t tcb, enum veil_snp_product p, uint8_t spl[VEIL_SNP_SPL_COUNT]);

/* ---- VCEK / VLEK ------------------------------------------------------------------------------------------ */

/* A certificate in DER (exactly size bytes) or PEM. VEIL_ERR_EVIDENCE when it does not parse, VEIL_ERR_LIMIT
 * past VEIL_SNP_CERT_MAX_SIZE. *out is owned by the caller (X509_free). */
VEIL_RESULT veil_snp_cert_parse(const uint8_t *data, size_t size, X509 **out);

/* The AMD extensions of a VCEK/VLEK (OIDs under 1.3.6.1.4.1.3704.1). */
struct veil_snp_cert_ext {
    uint8_t spl[VEIL_SNP_SPL_COUNT];
    int has_spl[VEIL_SNP_SPL_COUNT];
    uint8_t hwid[VEIL_SNP_CHIP_ID_SIZE]; /* VCEK only */
    size_t hwid_size;                    /* 0 when absent */
};
/* Reads the extensions with OpenSSL's ASN.1 decoders. An extension that is present twice or whose value is not
 * what AMD specifies (a DER INTEGER 0..255 for SPLs; 64 raw bytes or an OCTET STRING for hwID, 8 for Turin) is
 * VEIL_ERR_EVIDENCE; absent ones are reported absent and judged by veil_snp_tcb_check. */
VEIL_RESULT veil_snp_cert_ext_read(const X509 *cert, struct veil_snp_cert_ext *out);
/* Step 5: every SPL of the reported TCB equals the certificate's (all four, plus FMC on Turin, must be present),
 * and for a VCEK the hwID equals CHIP_ID. VEIL_ERR_VERIFY on any mismatch or missing extension. */
VEIL_RESULT veil_snp_tcb_check(const struct veil_snp_report *r, enum veil_snp_product p,
                               const struct veil_snp_cert_ext *ext);

/* Step 3: cert -> ASK (VCEK) or ASVK (VLEK) -> self-signed ARK of one of the embedded product lines, judged at
 * now. The product line is the one whose intermediate issued cert. VEIL_ERR_EXPIRED when a certificate is
 * outside its validity window, VEIL_ERR_VERIFY otherwise. */
VEIL_RESULT veil_snp_chain_verify(X509 *cert, enum veil_snp_key key, uint64_t now, enum veil_snp_product *product);

#endif
