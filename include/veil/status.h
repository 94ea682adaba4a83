/* SPDX-License-Identifier: Apache-2.0 */
/* Veil status codes: one enum for the whole library, grouped by category. */
#ifndef VEIL_STATUS_H
#define VEIL_STATUS_H

#ifdef __cplusplus
extern "C" {
#endif

#if defined(VEIL_BUILDING_LIBRARY)
#define VEIL_API __attribute__((visibility("default")))
#else
#define VEIL_API
#endif
#define VEIL_WUR __attribute__((warn_unused_result))

/*
 * Every public function that can fail returns a veil_status. Values come back through out-parameters,
 * which are left untouched (or set to NULL/0 where documented) on failure.
 *
 *   1xx  input: the bytes given to Veil are not acceptable (I/O, format, ONNX, limits)
 *   2xx  authentication: a key or a tag did not verify
 *   3xx  usage: the caller passed an invalid argument
 *   4xx  internal: memory, the crypto library, a bug
 */
typedef enum veil_status {
    VEIL_OK = 0,

    VEIL_ERR_IO = 100,       /* reading or writing a file failed */
    VEIL_ERR_FORMAT = 101,   /* not a well-formed sealed file */
    VEIL_ERR_VERSION = 102,  /* unsupported format version or required flag; a sealed model older than the
                              * required min_model_version (anti-rollback) */
    VEIL_ERR_TRUNCATED = 103,/* the input ends early or has trailing bytes */
    VEIL_ERR_ONNX = 104,     /* not a valid ONNX model */
    VEIL_ERR_UNSUPPORTED = 105, /* valid, but uses something Veil does not support */
    VEIL_ERR_LIMIT = 106,    /* exceeds a named limit */
    VEIL_ERR_EVIDENCE = 107, /* malformed attestation evidence, quote, report, certificate or collateral */

    VEIL_ERR_KEY = 200,      /* key unwrap failed: wrong model key, or the header or key wrap was modified */
    VEIL_ERR_AUTH = 201,     /* data authentication failed: modified, reordered, dropped or spliced chunks */
    VEIL_ERR_VERIFY = 202,   /* evidence did not verify: signature, certificate chain, CRL, binding, TCB */
    VEIL_ERR_POLICY = 203,   /* evidence verified but the policy refuses it */
    VEIL_ERR_EXPIRED = 204,  /* a certificate or collateral is outside its validity window at `now` */

    VEIL_ERR_ARG = 300,      /* invalid argument */

    VEIL_ERR_NOMEM = 400,    /* out of memory */
    VEIL_ERR_CRYPTO = 401,   /* the crypto library failed */
    VEIL_ERR_INTERNAL = 402  /* a bug in Veil */
} veil_status;

/* A short constant English description of a status ("authentication failed"). Never NULL. */
VEIL_API const char *veil_status_str(veil_status status);

/* The most recent failure's message on this thread, naming what failed at the format level
 * (never a secret, never a byte offset inside ciphertext). Valid until the next libveil call on this thread. */
VEIL_API const char *veil_last_error(void);

/* Library version string, e.g. "0.1.0". */
VEIL_API const char *veil_version(void);

/* Frees memory that libveil returned to the caller (strings, buffers). Accepts NULL. */
VEIL_API void veil_free(void *ptr);

#ifdef __cplusplus
}
#endif
#endif
