/* SPDX-License-Identifier: Apache-2.0 */
/* For VEIL_DEFER: cleanup functions that free an OpenSSL object through a pointer to it. Each accepts *p == NULL
 * (as the OpenSSL _free functions do). Includes the OpenSSL headers that declare the types. */
#ifndef VEIL_CRYPTO_OSSL_DEFER_H
#define VEIL_CRYPTO_OSSL_DEFER_H

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/params.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

static inline void veil_ossl_pkey_done(EVP_PKEY **p) { EVP_PKEY_free(*p); }
static inline void veil_ossl_pkey_ctx_done(EVP_PKEY_CTX **p) { EVP_PKEY_CTX_free(*p); }
static inline void veil_ossl_md_ctx_done(EVP_MD_CTX **p) { EVP_MD_CTX_free(*p); }
static inline void veil_ossl_cipher_ctx_done(EVP_CIPHER_CTX **p) { EVP_CIPHER_CTX_free(*p); }
static inline void veil_ossl_bio_done(BIO **p) { BIO_free(*p); }
static inline void veil_ossl_bn_done(BIGNUM **p) { BN_free(*p); }
static inline void veil_ossl_ecdsa_sig_done(ECDSA_SIG **p) { ECDSA_SIG_free(*p); }
static inline void veil_ossl_param_bld_done(OSSL_PARAM_BLD **p) { OSSL_PARAM_BLD_free(*p); }
static inline void veil_ossl_params_done(OSSL_PARAM **p) { OSSL_PARAM_free(*p); }
static inline void veil_ossl_x509_done(X509 **p) { X509_free(*p); }
static inline void veil_ossl_x509_store_done(X509_STORE **p) { X509_STORE_free(*p); }
static inline void veil_ossl_x509_store_ctx_done(X509_STORE_CTX **p) { X509_STORE_CTX_free(*p); }
static inline void veil_ossl_asn1_object_done(ASN1_OBJECT **p) { ASN1_OBJECT_free(*p); }

#endif
