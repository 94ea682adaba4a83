/* SPDX-License-Identifier: Apache-2.0 */
/* Internals of the attestation core shared by lib/attest (tee.c, evidence.c, claims.c, policy.c; providers/,
 * tees/): the providers' building blocks, the sim TEE's constants, the SNP certificate table. The TEE descriptors
 * are in attest/tee.h, their table in attest/tee_table.h. Hex, base64 and the JSON glue are lib/core's
 * (core/hex.h, core/base64.h, core/json.h), included here for them. Tests include this header to drive the
 * providers against fake trees (the configfs-tsm hook). */
#ifndef VEIL_ATTEST_INTERNAL_H
#define VEIL_ATTEST_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "core/base64.h"
#include "core/buf.h"
#include "core/hex.h"
#include "core/json.h"
#include "core/result.h"
#include "veil/attest.h"

#define VEIL_SHA384_SIZE 48u

/* ---- providers/tsm.c, providers/detect.c: configfs-tsm and detection --------------------------------------- */

/* Points of a configfs-tsm request at which a test may act on the entry directory: a fake configfs is a plain
 * directory, so the test creates the attribute files after mkdir, changes them mid-request, and removes them
 * before rmdir. Production code passes NULL. */
enum veil_tsm_stage { VEIL_TSM_AFTER_MKDIR, VEIL_TSM_AFTER_INBLOB, VEIL_TSM_BEFORE_RMDIR };
struct veil_tsm_hook {
    void (*fn)(enum veil_tsm_stage stage, const char *entry_dir, void *ctx);
    void *ctx;
};

#define VEIL_TSM_DEFAULT_ROOT "/sys/kernel/config/tsm/report"
#define VEIL_GRAMINE_DEFAULT_ROOT "/dev/attestation"
#define VEIL_SNP_REPORT_SIZE 1184u

struct veil_tee_desc;

/* config->tsm_root, or VEIL_TSM_DEFAULT_ROOT when it (or config) is NULL; likewise gramine_root. */
const char *veil_tsm_root(const struct veil_provider_config *config);
const char *veil_gramine_root(const struct veil_provider_config *config);
/* Creates an entry, reads its provider (the TEE whose descriptor names it: "tdx_guest" -> tdx, "sev_guest" ->
 * snp), removes it. */
VEIL_RESULT veil_tsm_probe(const char *root, const struct veil_tsm_hook *hook, veil_tee *out);
/* One report of the TEE tee (its descriptor's tsm spec): outblob (the TD quote or the SNP report) and, when the
 * spec asks for it, the auxblob when non-empty. */
VEIL_RESULT veil_tsm_collect(const char *root, const struct veil_tee_desc *tee,
                             const uint8_t report_data[VEIL_REPORT_DATA_SIZE], const struct veil_tsm_hook *hook,
                             struct veil_buf *outblob, struct veil_buf *auxblob);
VEIL_RESULT veil_tee_detect_hooked(const struct veil_provider_config *config, const struct veil_tsm_hook *hook,
                                   veil_tee *out);

/* ---- providers/gramine.c ------------------------------------------------------------------------------- */

VEIL_RESULT veil_gramine_collect(const char *root, const uint8_t report_data[VEIL_REPORT_DATA_SIZE],
                                 struct veil_buf *quote);

/* ---- evidence.c, providers/io.c ------------------------------------------------------------------------ */

VEIL_RESULT veil_evidence_collect_hooked(veil_tee tee, const struct veil_provider_config *config,
                                         const uint8_t report_data[VEIL_REPORT_DATA_SIZE],
                                         const struct veil_tsm_hook *hook, char **evidence_out);
/* Reads a file of unknown size (configfs and Gramine pseudo files report no useful st_size) until end of file;
 * VEIL_ERR_LIMIT past max_size. */
VEIL_RESULT veil_read_stream(const char *path, size_t max_size, struct veil_buf *out);
/* A small text attribute (provider, generation, attestation_type) without its trailing newline. */
VEIL_RESULT veil_read_attr(const char *path, char *out, size_t out_size);
/* Writes the 64 report-data bytes to path in one write(2), then closes it. Gramine's user_report_data and
 * configfs-tsm's inblob both take the data from a single write, and configfs commits on close, so a failed close
 * is a failed write. */
VEIL_RESULT veil_write_report_data(const char *path, const uint8_t report_data[VEIL_REPORT_DATA_SIZE]);
/* "dir/name" into out; VEIL_ERR_ARG when it does not fit. */
VEIL_RESULT veil_path_join(char *out, size_t out_size, const char *dir, const char *name);

/* ---- tees/sim.c ---------------------------------------------------------------------------------------- */

#define VEIL_SIM_KEY_FILE "platform.key"
#define VEIL_SIM_PUB_FILE "platform.pub"
#define VEIL_SIM_TBS_DOMAIN "VEIL-SIM-EVIDENCE-V2"
#define VEIL_SIM_MEASUREMENT_DOMAIN "VEIL-SIM-MEASUREMENT-V1"
/* domain (20) + NUL + measurement (48) + report_data (64) + svn (4) + SHA-384 of the key's SPKI DER (48) */
#define VEIL_SIM_TBS_SIZE (21u + 48u + 64u + 4u + 48u)
/* The platform key: ECDSA P-256. Its DER SubjectPublicKeyInfo (named curve, uncompressed point) is 91 bytes: a
 * fixed 27-byte prefix ending in 0x04, then X and Y (32 bytes each); in base64, 124 characters. */
#define VEIL_SIM_COORD_SIZE 32u
#define VEIL_SIM_SPKI_SIZE 91u
#define VEIL_SIM_SPKI_B64_SIZE 124u
/* An ECDSA P-256 signature in DER (Ecdsa-Sig-Value): at most 2 + 2 * (2 + 33) bytes. */
#define VEIL_SIM_SIG_MAX_SIZE 72u

/* The sim TEE's measurement of the program open at exe_fd (named exe in messages) run without a configuration file:
 * what veil-cache computes for a local peer (lib/cache/sim.c), by the provider's own formula. */
VEIL_RESULT veil_sim_measure_fd(int exe_fd, const char *exe, uint8_t out[VEIL_SHA384_SIZE]);

/* ---- tees/snp.c ---------------------------------------------------------------------------------------- */

/* Finds the VCEK (or else the VLEK) in an SNP certificate table (configfs-tsm auxblob, GHCB layout):
 * {guid[16], u32 offset, u32 length}... ending in an all-zero entry. *cert points into aux; NULL when none. */
VEIL_RESULT veil_snp_auxblob_cert(const uint8_t *aux, size_t size, const uint8_t **cert, size_t *cert_size);

#endif
