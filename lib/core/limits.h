/* SPDX-License-Identifier: Apache-2.0 */
/* Every maximum Veil applies to untrusted input, in one place. */
#ifndef VEIL_CORE_LIMITS_H
#define VEIL_CORE_LIMITS_H

#include <stdint.h>

/* Sealed format (docs/spec/sealed-format.md, section 10). */
#define VEIL_SEALED_MIN_HEADER_SIZE 64u
#define VEIL_SEALED_MAX_HEADER_SIZE (16u << 20)
#define VEIL_SEALED_MAX_SECTIONS 1000000u
#define VEIL_SEALED_MAX_SECTION_SIZE (UINT64_C(1) << 40)
#define VEIL_SEALED_MAX_DATA_SIZE (UINT64_C(1) << 42)
#define VEIL_SEALED_MIN_CHUNK_SIZE (1u << 12)
#define VEIL_SEALED_MAX_CHUNK_SIZE (1u << 30)

/* ONNX input. Protobuf itself caps a message at 2 GiB. */
#define VEIL_ONNX_MAX_MODEL_SIZE (UINT64_C(2) << 30)
#define VEIL_ONNX_MAX_RANK 32u
#define VEIL_ONNX_MAX_NAME_SIZE 4096u
#define VEIL_ONNX_MAX_LOCATION_SIZE 4096u /* an external data path, like PATH_MAX */
#define VEIL_ONNX_MAX_DEPTH 64u

/* SEV-SNP: a VCEK/VLEK is about 1.4 KiB in DER; the cap leaves room for PEM armour and unusual extensions. */
#define VEIL_SNP_CERT_MAX_SIZE (16u << 10)

/* DCAP (SGX quote v3, TDX quote v4/v5) and its collateral. A real quote is about 5 KiB, collateral about 20 KiB. */
#define VEIL_DCAP_MAX_QUOTE_SIZE (64u << 10)
#define VEIL_DCAP_MAX_CERT_DATA_SIZE (32u << 10)  /* the PEM PCK chain inside a quote */
#define VEIL_DCAP_MAX_CHAIN_CERTS 8u              /* certificates in one PEM chain */
#define VEIL_DCAP_MAX_COLLATERAL_SIZE (1u << 20)  /* collateral JSON file, one PCCS response, one cache entry */
#define VEIL_DCAP_MAX_TCB_LEVELS 512u             /* TCB levels in tcbInfo, enclaveIdentity or a module identity */
#define VEIL_DCAP_MAX_MODULE_IDENTITIES 64u       /* tdxModuleIdentities */
#define VEIL_DCAP_MAX_LEVEL_ADVISORIES 64u        /* advisoryIDs of one TCB level */
#define VEIL_DCAP_PCCS_TIMEOUT_S 30L              /* whole-request timeout of one PCCS fetch */
#define VEIL_DCAP_PCCS_CONNECT_TIMEOUT_S 10L
#define VEIL_DCAP_MAX_PCCS_HEADER_SIZE (64u << 10) /* one issuer-chain response header, URL-encoded */

/* Key files. */
#define VEIL_KEY_FILE_MAX_SIZE 64u

/* Inference engine (lib/engine). */
#define VEIL_ENGINE_MAX_NODES 100000u
#define VEIL_ENGINE_MAX_VALUES 1000000u
#define VEIL_ENGINE_MAX_NODE_IO 1024u          /* inputs or outputs of one node */
#define VEIL_ENGINE_MAX_ATTRS 64u              /* attributes of one node */
#define VEIL_ENGINE_MAX_ATTR_INTS 64u          /* elements of an INTS or FLOATS attribute */
#define VEIL_ENGINE_MAX_BATCH 65536u
#define VEIL_ENGINE_MAX_ACTIVATION_SIZE (UINT64_C(1) << 34)  /* bytes of one activation */
#define VEIL_ENGINE_MAX_ARENA_SIZE (UINT64_C(1) << 36)       /* bytes of all activations together */
#define VEIL_ENGINE_MAX_CONST_SIZE (UINT64_C(1) << 30)       /* bytes of one Constant node's tensor */
#define VEIL_ENGINE_MAX_WINDOW 65536u          /* a kernel, stride, dilation or pad of Conv and pooling */

/* Threads. */
#define VEIL_MAX_THREADS 256u

/* Attestation evidence, providers and policies (docs/spec/evidence.md, docs/spec/policy.md). */
#define VEIL_EVIDENCE_MAX_SIZE (1u << 20)     /* one evidence JSON document or raw quote/report */
#define VEIL_TSM_OUTBLOB_MAX_SIZE (64u << 10) /* configfs-tsm outblob (the kernel caps it at 32 KiB) */
#define VEIL_TSM_AUXBLOB_MAX_SIZE (64u << 10) /* configfs-tsm auxblob: the SNP certificate table */
#define VEIL_GRAMINE_QUOTE_MAX_SIZE (64u << 10) /* Gramine's QUOTE_MAX_SIZE is 8 KiB */
#define VEIL_SIM_KEY_MAX_SIZE (16u << 10)     /* a PEM key of the simulation platform */
#define VEIL_SIM_MAX_TRUSTED_KEYS 64u
#define VEIL_POLICY_MAX_SIZE (1u << 20)
#define VEIL_POLICY_MAX_LIST 256u             /* entries in one policy list (measurements, signers ...) */

/* Trustee KBS protocol (RCAR 0.4.0), JOSE and JCS (lib/protocol). */
#define VEIL_RCAR_MAX_BODY_SIZE (4u << 20)   /* one Request, Challenge or Attestation body (evidence inside) */
#define VEIL_RCAR_MAX_NONCE_SIZE 1024u       /* a challenge nonce string (Trustee sends 44 characters) */
#define VEIL_RCAR_MAX_TEE_NAME_SIZE 32u      /* "az-snp-vtpm" is the longest known name */
#define VEIL_JSON_MAX_DEPTH 64u              /* nesting of any JSON value Veil canonicalises */
#define VEIL_JOSE_MAX_HEADER_SIZE (8u << 10) /* a decoded JWE or JWT protected header */
#define VEIL_JWE_MAX_SIZE (2u << 20)         /* a decoded JWE ciphertext (resources are keys: bytes, not MiB) */
#define VEIL_JWT_MAX_SIZE (256u << 10)       /* a compact JWT, all three parts (EAR claims carry evidence) */
#define VEIL_KBS_CLIENT_MAX_RESPONSE_SIZE (4u << 20) /* one broker answer to the TEE-side client (lib/kbs/client.c) */
#define VEIL_JWK_RSA_MIN_BITS 2048u
#define VEIL_JWK_RSA_MAX_BITS 8192u

#endif
