/* SPDX-License-Identifier: Apache-2.0 */
/* The audit log's hash chain (docs/kbs.md, "Audit log"). */
#include <string.h>

#include "core/hex.h"
#include "core/secret.h"
#include "crypto/crypto.h"
#include "kbs/kbs.h"

VEIL_RESULT veil_kbs_audit_hash(const char *prev_hex, uint64_t seq, const char *record, size_t record_size,
                                char out_hex[VEIL_KBS_AUDIT_HASH_HEX_SIZE])
{
    static const char label[] = "veil-kbs-audit-v1";
    VEIL_ENSURE(prev_hex != NULL && strlen(prev_hex) == 64, VEIL_ERR_ARG, "audit: bad previous hash");
    VEIL_DEFER(veil_buf_cleanup) struct veil_buf b = {0};
    VEIL_GUARD(veil_buf_append(&b, label, sizeof label));
    VEIL_GUARD(veil_buf_append(&b, prev_hex, 64));
    VEIL_GUARD(veil_buf_append_u64le(&b, seq));
    VEIL_GUARD(veil_buf_append(&b, record, record_size));
    uint8_t digest[VEIL_SHA256_SIZE];
    VEIL_GUARD(veil_sha256(b.data, b.size, digest));
    veil_hex_encode(digest, sizeof digest, out_hex);
    return VEIL_RESULT_OK;
}

VEIL_RESULT veil_kbs_audit_check(const char *prev_hex, uint64_t expected_seq, uint64_t seq, const char *entry_prev,
                                 const char *record, size_t record_size, const char *entry_hash)
{
    VEIL_ENSURE(seq == expected_seq, VEIL_ERR_AUTH, "audit: entry %llu follows %llu (a gap or a reorder)",
                (unsigned long long)seq, (unsigned long long)(expected_seq - 1));
    VEIL_ENSURE(entry_prev != NULL && strlen(entry_prev) == 64 && strcmp(entry_prev, prev_hex) == 0, VEIL_ERR_AUTH,
                "audit: entry %llu does not link to its predecessor", (unsigned long long)seq);
    char h[VEIL_KBS_AUDIT_HASH_HEX_SIZE];
    VEIL_GUARD(veil_kbs_audit_hash(prev_hex, seq, record, record_size, h));
    VEIL_ENSURE(entry_hash != NULL && strlen(entry_hash) == 64 && strcmp(entry_hash, h) == 0, VEIL_ERR_AUTH,
                "audit: entry %llu was modified (its hash does not recompute)", (unsigned long long)seq);
    return VEIL_RESULT_OK;
}
