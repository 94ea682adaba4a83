/* SPDX-License-Identifier: Apache-2.0 */
/* DCAP collateral from a PCCS or Intel's PCS (API v4), with an optional on-disk cache. Everything fetched or
 * cached is untrusted: it only becomes the collateral that dcap_verify.c checks (signatures, chains up to the
 * pinned root, CRLs, windows). Endpoints, as dcap-qvl's collateral.rs uses them, under {base}/{sgx|tdx}/
 * certification/v4/:
 *   pckcrl?ca=processor|platform&encoding=der   (sgx)  issuer chain in SGX-PCK-CRL-Issuer-Chain
 *   rootcacrl                                   (sgx)  a PCCS endpoint; DER or hex body
 *   tcb?fmspc=HEX                                      issuer chain in TCB-Info-Issuer-Chain or SGX-TCB-Info-...
 *   qe/identity?update=standard                        issuer chain in SGX-Enclave-Identity-Issuer-Chain
 * Issuer chains come URL-encoded in the headers. The signed bodies are {"tcbInfo":{...},"signature":"hex"} and
 * {"enclaveIdentity":{...},"signature":"hex"}: the signature covers the exact served bytes of the inner object. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <curl/curl.h>
#include <openssl/x509.h>

#include "attest/attest_internal.h"
#include "attest/dcap.h"
#include "core/buf.h"
#include "core/file.h"
#include "core/hex.h"
#include "core/limits.h"

#define MAX_URL 2048u

struct http_response {
    struct veil_buf body;
    struct veil_buf chain;       /* the raw (URL-encoded) issuer chain header, NUL-terminated when found */
    const char *const *headers;  /* names of the issuer chain header, NULL-terminated */
    int overflow;
};

static void response_done(struct http_response *r)
{
    veil_buf_cleanup(&r->body);
    veil_buf_cleanup(&r->chain);
}
static void curl_done(CURL **c) { curl_easy_cleanup(*c); }
static void string_done(char **s) { free(*s); }
static void buf_done(struct veil_buf *b) { veil_buf_cleanup(b); }

static size_t on_body(char *data, size_t size, size_t n, void *ctx)
{
    struct http_response *r = ctx;
    if (r->body.size + n > VEIL_DCAP_MAX_COLLATERAL_SIZE || !veil_ok(veil_buf_append(&r->body, data, n))) {
        r->overflow = 1;
        return 0; /* aborts the transfer */
    }
    (void)size;
    return n;
}

/* "Name: value\r\n" for one of the wanted names: keeps the value without surrounding whitespace. */
static size_t on_header(char *line, size_t size, size_t n, void *ctx)
{
    struct http_response *r = ctx;
    (void)size;
    const char *colon = memchr(line, ':', n);
    if (colon == NULL)
        return n;
    size_t name_size = (size_t)(colon - line);
    for (const char *const *h = r->headers; *h != NULL; h++) {
        if (strlen(*h) != name_size || strncasecmp(line, *h, name_size) != 0)
            continue;
        const char *v = colon + 1, *end = line + n;
        while (v < end && isspace((unsigned char)*v))
            v++;
        while (end > v && isspace((unsigned char)end[-1]))
            end--;
        veil_buf_cleanup(&r->chain);
        if ((size_t)(end - v) > VEIL_DCAP_MAX_PCCS_HEADER_SIZE || !veil_ok(veil_buf_append(&r->chain, v, (size_t)(end - v))) ||
            !veil_ok(veil_buf_append_u8(&r->chain, 0))) {
            r->overflow = 1;
            return 0;
        }
    }
    return n;
}

static VEIL_RESULT curl_setup(CURL *c, const char *url, struct http_response *r)
{
    VEIL_ENSURE(curl_easy_setopt(c, CURLOPT_URL, url) == CURLE_OK &&
                    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https") == CURLE_OK &&
                    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L) == CURLE_OK &&
                    curl_easy_setopt(c, CURLOPT_TIMEOUT, VEIL_DCAP_PCCS_TIMEOUT_S) == CURLE_OK &&
                    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, VEIL_DCAP_PCCS_CONNECT_TIMEOUT_S) == CURLE_OK &&
                    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L) == CURLE_OK &&
                    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body) == CURLE_OK &&
                    curl_easy_setopt(c, CURLOPT_WRITEDATA, r) == CURLE_OK &&
                    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header) == CURLE_OK &&
                    curl_easy_setopt(c, CURLOPT_HEADERDATA, r) == CURLE_OK,
                VEIL_ERR_INTERNAL, "libcurl refused an option");
    return VEIL_RESULT_OK;
}

/* One GET: status 200, body within the limit, the issuer chain header when headers is not empty. */
static VEIL_RESULT http_get(const char *url, struct http_response *r)
{
    CURL *c VEIL_DEFER(curl_done) = curl_easy_init();
    long code = 0;
    VEIL_ENSURE(c != NULL, VEIL_ERR_NOMEM, "libcurl initialization failed");
    VEIL_GUARD(curl_setup(c, url, r));
    CURLcode rc = curl_easy_perform(c);
    VEIL_ENSURE(!r->overflow, VEIL_ERR_LIMIT, "PCCS: response from %s is too large", url);
    VEIL_ENSURE(rc == CURLE_OK, VEIL_ERR_IO, "PCCS: %s: %s", url, curl_easy_strerror(rc));
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    VEIL_ENSURE(code == 200, VEIL_ERR_IO, "PCCS: %s answered HTTP %ld", url, code);
    VEIL_ENSURE(r->headers[0] == NULL || r->chain.size > 0, VEIL_ERR_EVIDENCE, "PCCS: %s sent no %s header", url,
                r->headers[0]);
    return VEIL_RESULT_OK;
}

/* The issuer chain header, URL-decoded, as a malloc'd string. */
static VEIL_RESULT chain_decode(const struct http_response *r, char **out)
{
    int n = 0;
    char *s = curl_easy_unescape(NULL, (const char *)r->chain.data, (int)(r->chain.size - 1), &n);
    VEIL_ENSURE(s != NULL, VEIL_ERR_NOMEM, "out of memory");
    *out = strndup(s, (size_t)n);
    curl_free(s);
    VEIL_ENSURE(*out != NULL, VEIL_ERR_NOMEM, "out of memory");
    VEIL_ENSURE(strlen(*out) == (size_t)n, VEIL_ERR_EVIDENCE, "PCCS: an issuer chain contains NUL");
    return VEIL_RESULT_OK;
}

/* A CRL body: DER (starts with a SEQUENCE) or its hex (what PCCS serves for rootcacrl). */
static VEIL_RESULT crl_body(const struct veil_buf *b, uint8_t **out, size_t *size)
{
    VEIL_ENSURE(b->size > 0, VEIL_ERR_EVIDENCE, "PCCS: empty CRL");
    if (b->data[0] == 0x30) {
        *out = malloc(b->size);
        VEIL_ENSURE(*out != NULL, VEIL_ERR_NOMEM, "out of memory");
        memcpy(*out, b->data, b->size);
        *size = b->size;
        return VEIL_RESULT_OK;
    }
    size_t n = b->size;
    while (n > 0 && isspace(b->data[n - 1]))
        n--;
    VEIL_ENSURE(n % 2 == 0 && memchr(b->data, 0, n) == NULL, VEIL_ERR_EVIDENCE, "PCCS: CRL is neither DER nor hex");
    char *hex VEIL_DEFER(string_done) = strndup((const char *)b->data, n);
    *out = malloc(n / 2 + 1);
    VEIL_ENSURE(hex != NULL && *out != NULL, VEIL_ERR_NOMEM, "out of memory");
    *size = n / 2;
    return veil_hex_decode(VEIL_HEX_ANY_CASE, hex, n, *out, n / 2, VEIL_ERR_EVIDENCE, "PCCS: CRL");
}

/* body == {"<name>":<inner>,"signature":"<128 hex>"}: the signed inner bytes and the signature. The inner part
 * must be one JSON object on its own, so a "signature" inside it cannot be mistaken for the outer one. */
static VEIL_RESULT signed_split(const struct veil_buf *b, const char *name, char **inner, size_t *inner_size,
                                uint8_t sig[VEIL_DCAP_SIG_SIZE])
{
    char prefix[64], hex[2 * VEIL_DCAP_SIG_SIZE + 1];
    static const char mid[] = ",\"signature\":\"";
    size_t p = (size_t)snprintf(prefix, sizeof prefix, "{\"%s\":", name);
    size_t tail = sizeof mid - 1 + 2 * VEIL_DCAP_SIG_SIZE + 2;
    VEIL_ENSURE(b->size > p + tail && memcmp(b->data, prefix, p) == 0, VEIL_ERR_EVIDENCE,
                "PCCS: the %s body is not {\"%s\":...,\"signature\":...}", name, name);
    const uint8_t *t = b->data + b->size - tail;
    VEIL_ENSURE(memcmp(t, mid, sizeof mid - 1) == 0 && memcmp(b->data + b->size - 2, "\"}", 2) == 0,
                VEIL_ERR_EVIDENCE, "PCCS: the %s body does not end with its signature", name);
    memcpy(hex, t + sizeof mid - 1, 2 * VEIL_DCAP_SIG_SIZE);
    hex[2 * VEIL_DCAP_SIG_SIZE] = '\0';
    VEIL_GUARD(veil_hex_decode(VEIL_HEX_ANY_CASE, hex, strlen(hex), sig, VEIL_DCAP_SIG_SIZE, VEIL_ERR_EVIDENCE,
                               "PCCS: signature"));
    *inner_size = b->size - p - tail;
    *inner = strndup((const char *)b->data + p, *inner_size);
    VEIL_ENSURE(*inner != NULL, VEIL_ERR_NOMEM, "out of memory");
    VEIL_ENSURE(strlen(*inner) == *inner_size, VEIL_ERR_EVIDENCE, "PCCS: the %s body contains NUL", name);
    return VEIL_RESULT_OK;
}

struct pccs_urls {
    char pck_crl[MAX_URL], root_crl[MAX_URL], tcb[MAX_URL], qe[MAX_URL];
};

static VEIL_RESULT urls_make(const char *base, int tdx, const uint8_t fmspc[VEIL_DCAP_FMSPC_SIZE], int processor,
                             struct pccs_urls *u)
{
    char hex[2 * VEIL_DCAP_FMSPC_SIZE + 1];
    size_t n = strlen(base);
    while (n > 0 && base[n - 1] == '/')
        n--;
    veil_hex_encode(fmspc, VEIL_DCAP_FMSPC_SIZE, hex);
    for (char *h = hex; *h; h++)
        *h = (char)toupper((unsigned char)*h);
    const char *tee = tdx ? "tdx" : "sgx";
    int a = snprintf(u->pck_crl, MAX_URL, "%.*s/sgx/certification/v4/pckcrl?ca=%s&encoding=der", (int)n, base,
                     processor ? "processor" : "platform");
    int b = snprintf(u->root_crl, MAX_URL, "%.*s/sgx/certification/v4/rootcacrl", (int)n, base);
    int c = snprintf(u->tcb, MAX_URL, "%.*s/%s/certification/v4/tcb?fmspc=%s", (int)n, base, tee, hex);
    int d = snprintf(u->qe, MAX_URL, "%.*s/%s/certification/v4/qe/identity?update=standard", (int)n, base, tee);
    VEIL_ENSURE(a > 0 && a < (int)MAX_URL && b > 0 && b < (int)MAX_URL && c > 0 && c < (int)MAX_URL && d > 0 &&
                    d < (int)MAX_URL,
                VEIL_ERR_ARG, "PCCS: the URL is too long");
    return VEIL_RESULT_OK;
}

static const char *const pck_crl_headers[] = {"SGX-PCK-CRL-Issuer-Chain", NULL};
static const char *const no_headers[] = {NULL};
static const char *const tcb_headers[] = {"TCB-Info-Issuer-Chain", "SGX-TCB-Info-Issuer-Chain", NULL};
static const char *const qe_headers[] = {"SGX-Enclave-Identity-Issuer-Chain", "Enclave-Identity-Issuer-Chain", NULL};

static VEIL_RESULT fetch_crls(const struct pccs_urls *u, struct veil_dcap_collateral *c)
{
    struct http_response pck VEIL_DEFER(response_done) = {.headers = pck_crl_headers};
    struct http_response root VEIL_DEFER(response_done) = {.headers = no_headers};
    VEIL_GUARD(http_get(u->pck_crl, &pck));
    VEIL_GUARD(crl_body(&pck.body, &c->pck_crl, &c->pck_crl_size));
    VEIL_GUARD(chain_decode(&pck, &c->pck_crl_issuer_chain));
    VEIL_GUARD(http_get(u->root_crl, &root));
    return crl_body(&root.body, &c->root_ca_crl, &c->root_ca_crl_size);
}

static VEIL_RESULT fetch_signed(const struct pccs_urls *u, struct veil_dcap_collateral *c)
{
    struct http_response tcb VEIL_DEFER(response_done) = {.headers = tcb_headers};
    struct http_response qe VEIL_DEFER(response_done) = {.headers = qe_headers};
    VEIL_GUARD(http_get(u->tcb, &tcb));
    VEIL_GUARD(signed_split(&tcb.body, "tcbInfo", &c->tcb_info_json, &c->tcb_info_json_size, c->tcb_info_sig));
    VEIL_GUARD(chain_decode(&tcb, &c->tcb_info_issuer_chain));
    VEIL_GUARD(http_get(u->qe, &qe));
    VEIL_GUARD(signed_split(&qe.body, "enclaveIdentity", &c->qe_identity_json, &c->qe_identity_json_size,
                            c->qe_identity_sig));
    VEIL_GUARD(chain_decode(&qe, &c->qe_identity_issuer_chain));
    VEIL_GUARD(veil_dcap_tcb_info_parse(c->tcb_info_json, c->tcb_info_json_size, &c->tcb_info));
    return veil_dcap_qe_identity_parse(c->qe_identity_json, c->qe_identity_json_size, &c->qe_identity);
}

/* ---- Cache ----------------------------------------------------------------------------------------------- */

static VEIL_RESULT cache_path(const char *dir, int tdx, const uint8_t fmspc[VEIL_DCAP_FMSPC_SIZE], int processor,
                              char *out, size_t size)
{
    char hex[2 * VEIL_DCAP_FMSPC_SIZE + 1];
    veil_hex_encode(fmspc, VEIL_DCAP_FMSPC_SIZE, hex);
    int n = snprintf(out, size, "%s/dcap-%s-%s-%s.json", dir, tdx ? "tdx" : "sgx", hex,
                     processor ? "processor" : "platform");
    VEIL_ENSURE(n > 0 && (size_t)n < size, VEIL_ERR_ARG, "PCCS: the cache path is too long");
    return VEIL_RESULT_OK;
}

/* A cached entry is used while now is inside the windows of its tcbInfo, its enclaveIdentity and both CRLs. */
static int crl_fresh(const uint8_t *der, size_t size, uint64_t now)
{
    const unsigned char *p = der;
    X509_CRL *crl = d2i_X509_CRL(NULL, &p, (long)size);
    time_t t = (time_t)now;
    int ok = crl != NULL && X509_CRL_get0_nextUpdate(crl) != NULL &&
             X509_cmp_time(X509_CRL_get0_lastUpdate(crl), &t) < 0 &&
             X509_cmp_time(X509_CRL_get0_nextUpdate(crl), &t) > 0;
    X509_CRL_free(crl);
    return ok;
}

static int collateral_fresh(const struct veil_dcap_collateral *c, uint64_t now)
{
    return now >= c->tcb_info.issue_date && now <= c->tcb_info.next_update && now >= c->qe_identity.issue_date &&
           now <= c->qe_identity.next_update && crl_fresh(c->root_ca_crl, c->root_ca_crl_size, now) &&
           crl_fresh(c->pck_crl, c->pck_crl_size, now);
}

/* 1 when a fresh entry was loaded into c; 0 (c cleaned) on a miss, a stale or an unreadable entry. */
static int cache_load(const char *path, uint64_t now, struct veil_dcap_collateral *c)
{
    struct veil_buf b VEIL_DEFER(buf_done);
    struct stat st;
    veil_buf_init(&b);
    if (stat(path, &st) != 0 || !veil_ok(veil_file_read_all(path, VEIL_DCAP_MAX_COLLATERAL_SIZE, &b)) ||
        !veil_ok(veil_dcap_collateral_parse(b.data, b.size, c)) || !collateral_fresh(c, now)) {
        veil_dcap_collateral_cleanup(c);
        return 0;
    }
    return 1;
}

static void outfile_done(struct veil_outfile *f) { veil_outfile_cleanup(f); }

static VEIL_RESULT cache_store(const char *path, const struct veil_dcap_collateral *c)
{
    char *json VEIL_DEFER(string_done) = NULL;
    struct veil_outfile f VEIL_DEFER(outfile_done) = {.fd = -1};
    VEIL_GUARD(veil_dcap_collateral_dump(c, &json));
    VEIL_GUARD(veil_outfile_open(&f, path, 0600));
    VEIL_GUARD(veil_file_write_all(f.fd, json, strlen(json)));
    return veil_outfile_commit(&f);
}

VEIL_RESULT veil_dcap_pccs_fetch(const struct veil_dcap_quote *quote, const uint8_t fmspc[VEIL_DCAP_FMSPC_SIZE],
                                 int processor_ca, const struct veil_verify_options *options,
                                 struct veil_dcap_collateral *out, int *fetched)
{
    struct pccs_urls u;
    char path[4096];
    int tdx = quote->body_type != VEIL_DCAP_BODY_SGX;
    const char *dir = options->collateral_cache_dir;
    VEIL_ENSURE(options->pccs_url != NULL, VEIL_ERR_ARG, "PCCS: no URL given");
    *fetched = 0;
    if (dir != NULL) {
        VEIL_GUARD(cache_path(dir, tdx, fmspc, processor_ca, path, sizeof path));
        if (cache_load(path, options->now, out))
            return VEIL_RESULT_OK;
    }
    VEIL_GUARD(urls_make(options->pccs_url, tdx, fmspc, processor_ca, &u));
    VEIL_GUARD(fetch_crls(&u, out));
    VEIL_GUARD(fetch_signed(&u, out));
    *fetched = 1;
    return VEIL_RESULT_OK;
}

VEIL_RESULT veil_dcap_pccs_cache_store(const struct veil_dcap_quote *quote,
                                       const uint8_t fmspc[VEIL_DCAP_FMSPC_SIZE], int processor_ca,
                                       const struct veil_verify_options *options,
                                       const struct veil_dcap_collateral *c)
{
    char path[4096];
    if (options->collateral_cache_dir == NULL)
        return VEIL_RESULT_OK;
    VEIL_GUARD(cache_path(options->collateral_cache_dir, quote->body_type != VEIL_DCAP_BODY_SGX, fmspc,
                          processor_ca, path, sizeof path));
    return cache_store(path, c);
}
