/* SPDX-License-Identifier: Apache-2.0 */
/* The SEV-SNP ATTESTATION_REPORT, field by field (SEV-SNP ABI specification 56860, Table 22). Offsets are in the
 * comments; the cursor enforces them by reading every byte in order and ending exactly at 0x4A0.
 *
 * What changed between versions:
 *   2  the original layout.
 *   3  CPUID_FAM_ID, CPUID_MOD_ID, CPUID_STEP at 0x188 (previously reserved).
 *   4  not accepted: no layout we have checked against a real report uses it (trustee's range is 3..5).
 *   5  LAUNCH_MIT_VECTOR at 0x1F8 and CURRENT_MIT_VECTOR at 0x200 (previously reserved).
 * Fields a version does not define must be zero, like every reserved field. */
#include <string.h>

#include "attest/snp.h"
#include "core/cursor.h"

static int all_zero(const uint8_t *p, size_t n)
{
    uint8_t acc = 0;
    for (size_t i = 0; i < n; i++)
        acc |= p[i];
    return acc == 0;
}

static VEIL_RESULT read_reserved(struct veil_cursor *c, size_t n, const char *what)
{
    const uint8_t *p = NULL;
    VEIL_GUARD(veil_cursor_bytes(c, n, &p));
    VEIL_ENSURE(all_zero(p, n), VEIL_ERR_EVIDENCE, "SEV-SNP report: reserved field %s is not zero", what);
    return VEIL_RESULT_OK;
}

/* 0x00..0x4F: the header up to REPORT_DATA. */
static VEIL_RESULT parse_header(struct veil_cursor *c, struct veil_snp_report *r)
{
    uint32_t key_info = 0;
    VEIL_GUARD(veil_cursor_u32le(c, &r->version));               /* 0x00 VERSION */
    VEIL_ENSURE(r->version == 2 || r->version == 3 || r->version == 5, VEIL_ERR_VERSION,
                "SEV-SNP report version %u is not supported (2, 3 and 5 are)", r->version);
    VEIL_GUARD(veil_cursor_u32le(c, &r->guest_svn));             /* 0x04 GUEST_SVN */
    VEIL_GUARD(veil_cursor_u64le(c, &r->policy));                /* 0x08 POLICY */
    VEIL_GUARD(veil_cursor_copy(c, r->family_id, sizeof r->family_id)); /* 0x10 FAMILY_ID */
    VEIL_GUARD(veil_cursor_copy(c, r->image_id, sizeof r->image_id));   /* 0x20 IMAGE_ID */
    VEIL_GUARD(veil_cursor_u32le(c, &r->vmpl));                  /* 0x30 VMPL */
    VEIL_GUARD(veil_cursor_u32le(c, &r->signature_algo));        /* 0x34 SIGNATURE_ALGO */
    VEIL_ENSURE(r->signature_algo == VEIL_SNP_SIG_ALGO_ECDSA_P384_SHA384, VEIL_ERR_UNSUPPORTED,
                "SEV-SNP report signature algorithm %u is not ECDSA P-384 with SHA-384 (1)", r->signature_algo);
    VEIL_GUARD(veil_cursor_u64le(c, &r->current_tcb));           /* 0x38 CURRENT_TCB */
    VEIL_GUARD(veil_cursor_u64le(c, &r->platform_info));         /* 0x40 PLATFORM_INFO */
    VEIL_GUARD(veil_cursor_u32le(c, &key_info));                 /* 0x48 KEY_INFO */
    VEIL_ENSURE((key_info >> 5) == 0, VEIL_ERR_EVIDENCE, "SEV-SNP report: reserved KEY_INFO bits are set");
    r->author_key_en = (int)(key_info & 1u);
    r->mask_chip_key = (int)((key_info >> 1) & 1u);
    uint32_t signing_key = (key_info >> 2) & 7u;
    VEIL_ENSURE(signing_key == VEIL_SNP_KEY_VCEK || signing_key == VEIL_SNP_KEY_VLEK, VEIL_ERR_UNSUPPORTED,
                "SEV-SNP report signing key %u is neither VCEK (0) nor VLEK (1)", signing_key);
    r->signing_key = (enum veil_snp_key)signing_key;
    return read_reserved(c, 4, "0x4C");                          /* 0x4C reserved */
}

/* 0x50..0x187: the guest's measurements and identities. */
static VEIL_RESULT parse_identity(struct veil_cursor *c, struct veil_snp_report *r)
{
    VEIL_GUARD(veil_cursor_copy(c, r->report_data, sizeof r->report_data));       /* 0x50 REPORT_DATA */
    VEIL_GUARD(veil_cursor_copy(c, r->measurement, sizeof r->measurement));       /* 0x90 MEASUREMENT */
    VEIL_GUARD(veil_cursor_copy(c, r->host_data, sizeof r->host_data));           /* 0xC0 HOST_DATA */
    VEIL_GUARD(veil_cursor_copy(c, r->id_key_digest, sizeof r->id_key_digest));   /* 0xE0 ID_KEY_DIGEST */
    VEIL_GUARD(veil_cursor_copy(c, r->author_key_digest, sizeof r->author_key_digest)); /* 0x110 */
    VEIL_GUARD(veil_cursor_copy(c, r->report_id, sizeof r->report_id));           /* 0x140 REPORT_ID */
    VEIL_GUARD(veil_cursor_copy(c, r->report_id_ma, sizeof r->report_id_ma));     /* 0x160 REPORT_ID_MA */
    return veil_cursor_u64le(c, &r->reported_tcb);                                /* 0x180 REPORTED_TCB */
}

/* 0x188..0x29F: CPUID (v3+), CHIP_ID, firmware versions and TCBs, mitigation vectors (v5). */
static VEIL_RESULT parse_platform(struct veil_cursor *c, struct veil_snp_report *r)
{
    VEIL_GUARD(veil_cursor_u8(c, &r->cpuid_fam_id));                /* 0x188 CPUID_FAM_ID (v3+) */
    VEIL_GUARD(veil_cursor_u8(c, &r->cpuid_mod_id));                /* 0x189 CPUID_MOD_ID (v3+) */
    VEIL_GUARD(veil_cursor_u8(c, &r->cpuid_step));                  /* 0x18A CPUID_STEP (v3+) */
    VEIL_ENSURE(r->version >= 3 || (r->cpuid_fam_id | r->cpuid_mod_id | r->cpuid_step) == 0, VEIL_ERR_EVIDENCE,
                "SEV-SNP report version 2: reserved CPUID bytes are not zero");
    VEIL_GUARD(read_reserved(c, 0x15, "0x18B"));                    /* 0x18B reserved */
    VEIL_GUARD(veil_cursor_copy(c, r->chip_id, sizeof r->chip_id)); /* 0x1A0 CHIP_ID */
    VEIL_GUARD(veil_cursor_u64le(c, &r->committed_tcb));            /* 0x1E0 COMMITTED_TCB */
    VEIL_GUARD(veil_cursor_u8(c, &r->current_build));               /* 0x1E8 CURRENT_BUILD */
    VEIL_GUARD(veil_cursor_u8(c, &r->current_minor));               /* 0x1E9 CURRENT_MINOR */
    VEIL_GUARD(veil_cursor_u8(c, &r->current_major));               /* 0x1EA CURRENT_MAJOR */
    VEIL_GUARD(read_reserved(c, 1, "0x1EB"));                       /* 0x1EB reserved */
    VEIL_GUARD(veil_cursor_u8(c, &r->committed_build));             /* 0x1EC COMMITTED_BUILD */
    VEIL_GUARD(veil_cursor_u8(c, &r->committed_minor));             /* 0x1ED COMMITTED_MINOR */
    VEIL_GUARD(veil_cursor_u8(c, &r->committed_major));             /* 0x1EE COMMITTED_MAJOR */
    VEIL_GUARD(read_reserved(c, 1, "0x1EF"));                       /* 0x1EF reserved */
    VEIL_GUARD(veil_cursor_u64le(c, &r->launch_tcb));               /* 0x1F0 LAUNCH_TCB */
    VEIL_GUARD(veil_cursor_u64le(c, &r->launch_mit_vector));        /* 0x1F8 LAUNCH_MIT_VECTOR (v5) */
    VEIL_GUARD(veil_cursor_u64le(c, &r->current_mit_vector));       /* 0x200 CURRENT_MIT_VECTOR (v5) */
    VEIL_ENSURE(r->version >= 5 || (r->launch_mit_vector | r->current_mit_vector) == 0, VEIL_ERR_EVIDENCE,
                "SEV-SNP report version %u: reserved mitigation-vector bytes are not zero", r->version);
    return read_reserved(c, 0x98, "0x208");                         /* 0x208 reserved */
}

/* One signature component: 72 little-endian bytes, of which only the low 48 may be nonzero for P-384. */
static VEIL_RESULT parse_sig_component(struct veil_cursor *c, uint8_t out[VEIL_SNP_SIG_COMPONENT_SIZE],
                                       const char *what)
{
    VEIL_GUARD(veil_cursor_copy(c, out, VEIL_SNP_SIG_COMPONENT_SIZE));
    VEIL_ENSURE(all_zero(out + VEIL_SNP_P384_SIZE, VEIL_SNP_SIG_COMPONENT_SIZE - VEIL_SNP_P384_SIZE),
                VEIL_ERR_EVIDENCE, "SEV-SNP report: signature %s is longer than 48 bytes", what);
    return VEIL_RESULT_OK;
}

/* 0x2A0..0x49F: SIGNATURE (Table 139 "ECDSA P-384 with SHA-384 Signature Format"). */
static VEIL_RESULT parse_signature(struct veil_cursor *c, struct veil_snp_report *r)
{
    VEIL_GUARD(parse_sig_component(c, r->sig_r, "R"));                       /* 0x2A0 R */
    VEIL_GUARD(parse_sig_component(c, r->sig_s, "S"));                       /* 0x2E8 S */
    return read_reserved(c, VEIL_SNP_REPORT_SIZE - 0x330u, "0x330 (signature)"); /* 0x330 reserved */
}

VEIL_RESULT veil_snp_report_parse(const uint8_t *data, size_t size, struct veil_snp_report *out)
{
    VEIL_ENSURE(data != NULL && out != NULL, VEIL_ERR_ARG, "SEV-SNP report: NULL argument");
    VEIL_ENSURE(size == VEIL_SNP_REPORT_SIZE, VEIL_ERR_EVIDENCE,
                "SEV-SNP report is %zu bytes, not %u", size, VEIL_SNP_REPORT_SIZE);
    struct veil_snp_report r;
    memset(&r, 0, sizeof r);
    struct veil_cursor c = veil_cursor_make(data, size);
    VEIL_GUARD(parse_header(&c, &r));
    VEIL_GUARD(parse_identity(&c, &r));
    VEIL_GUARD(parse_platform(&c, &r));
    VEIL_ENSURE(c.off == VEIL_SNP_SIGNED_SIZE, VEIL_ERR_INTERNAL, "SEV-SNP report: signed region mis-parsed");
    VEIL_GUARD(parse_signature(&c, &r));
    VEIL_GUARD(veil_cursor_expect_end(&c));
    *out = r;
    return VEIL_RESULT_OK;
}

/* AMD family 19h: models 00h-0Fh Milan, 10h-1Fh and A0h-AFh Genoa (Bergamo, Siena); family 1Ah: Turin. */
enum veil_snp_product veil_snp_product_from_cpuid(const struct veil_snp_report *r)
{
    if (r->version < 3)
        return VEIL_SNP_PRODUCT_UNKNOWN;
    if (r->cpuid_fam_id == 0x19 && r->cpuid_mod_id <= 0x0F)
        return VEIL_SNP_PRODUCT_MILAN;
    if (r->cpuid_fam_id == 0x19 && ((r->cpuid_mod_id >= 0x10 && r->cpuid_mod_id <= 0x1F) ||
                                    (r->cpuid_mod_id >= 0xA0 && r->cpuid_mod_id <= 0xAF)))
        return VEIL_SNP_PRODUCT_GENOA;
    if (r->cpuid_fam_id == 0x1A)
        return VEIL_SNP_PRODUCT_TURIN;
    return VEIL_SNP_PRODUCT_UNKNOWN;
}

const char *veil_snp_product_name(enum veil_snp_product p)
{
    switch (p) {
    case VEIL_SNP_PRODUCT_MILAN: return "Milan";
    case VEIL_SNP_PRODUCT_GENOA: return "Genoa";
    case VEIL_SNP_PRODUCT_TURIN: return "Turin";
    case VEIL_SNP_PRODUCT_UNKNOWN: break;
    }
    return "unknown";
}

static uint8_t tcb_byte(uint64_t tcb, unsigned index)
{
    return (uint8_t)(tcb >> (8u * index));
}

void veil_snp_tcb_decode(uint64_t tcb, enum veil_snp_product p, uint8_t spl[VEIL_SNP_SPL_COUNT])
{
    int turin = p == VEIL_SNP_PRODUCT_TURIN;
    spl[VEIL_SNP_SPL_FMC] = turin ? tcb_byte(tcb, 0) : 0;
    spl[VEIL_SNP_SPL_BOOTLOADER] = tcb_byte(tcb, turin ? 1 : 0);
    spl[VEIL_SNP_SPL_TEE] = tcb_byte(tcb, turin ? 2 : 1);
    spl[VEIL_SNP_SPL_SNP] = tcb_byte(tcb, turin ? 3 : 6);
    spl[VEIL_SNP_SPL_MICROCODE] = tcb_byte(tcb, 7);
}
