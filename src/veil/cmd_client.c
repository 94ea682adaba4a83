/* SPDX-License-Identifier: Apache-2.0 */
/* veil client verify: check, before sending it any data, that a URL serves an attested veil-runtime
 * (docs/spec/runtime-attestation.md), then print its TLS key as a pin for unchanged clients. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <jansson.h>

#include "cli.h"
#include "core/buf.h"
#include "core/file.h"
#include "core/hex.h"
#include "core/limits.h"
#include "core/url.h"
#include "crypto/crypto.h"
#include "veil/client.h"

#define CLIENT_NONCE_SIZE 32u
#define CLIENT_DEFAULT_TIMEOUT_S 30u
#define CLIENT_MAX_TIMEOUT_S 3600u
#define CLIENT_MAX_SIM_KEYS 16
#define CLIENT_MAX_REQUIRED 16
#define CLIENT_URL_MAX 2048u
#define ATTESTATION_PATH "/v2/veil/attestation?nonce="

static const char client_help[] =
    "usage: veil client verify URL --policy FILE [options]\n\n"
    "Clients of a veil-runtime (docs/spec/runtime-attestation.md):\n"
    "  verify   check that URL serves an attested veil-runtime, and print its pinned TLS key\n\n"
    "Run 'veil client verify --help' for its options.\n";

static const char verify_help[] =
    "usage: veil client verify URL --policy FILE [options]\n\n"
    "Asks the veil-runtime at URL (https://host[:port][/prefix]) for attestation evidence bound to a fresh random\n"
    "nonce, to the key of the TLS certificate presented on that same connection and to every model it serves,\n"
    "verifies the evidence and judges it with a client policy. The certificate is self-signed inside the TEE, so\n"
    "no CA can vouch for it: the evidence does. On success prints the certificate's key hash, as hex and as the\n"
    "pin 'curl --pinnedpubkey' takes, so that unchanged clients can talk to this runtime only.\n"
    "Exit status 0: verified; 1: refused, with one 'veil: error:' line naming the failed check; 2: usage error.\n\n"
    "  -p, --policy FILE       the client policy (JSON; docs/spec/runtime-attestation.md, 'Client policy')\n"
    "                          (required)\n"
    "      --sim-key PEM       trust this simulation platform public key (repeatable; sim runtimes only)\n"
    "      --collateral FILE   DCAP (sgx, tdx): collateral JSON (dcap-qvl's QuoteCollateralV3 layout)\n"
    "      --snp-cert FILE     SNP: the VCEK/VLEK (DER or PEM) when the evidence carries none\n"
    "      --require-model ID  the runtime must serve a model with this model id (repeatable)\n"
    "      --save-cert FILE    write the verified server certificate (PEM) to FILE, e.g. for tritonclient's\n"
    "                          ssl_options={'ca_certs': FILE} or curl --cacert\n"
    "      --now EPOCH         judge certificates and collateral at this time (default: now)\n"
    "      --timeout SECONDS   whole-request timeout (default 30)\n"
    "      --insecure-http     allow http:// to a loopback address (simulation TEE only): NO channel binding,\n"
    "                          for development; the answer then proves nothing about the connection\n"
    "      --json              print the verification report as one JSON object\n"
    "  -h, --help              show this help\n\n"
    "The request goes straight to URL: no proxy, no redirect.\n";

enum { OPT_SIM_KEY = 256, OPT_COLLATERAL, OPT_SNP_CERT, OPT_REQUIRE, OPT_SAVE_CERT, OPT_NOW, OPT_TIMEOUT,
       OPT_INSECURE, OPT_JSON };

struct client_args {
    const char *cmd, *url, *policy, *collateral, *snp_cert, *save_cert;
    const char *sim_keys[CLIENT_MAX_SIM_KEYS];
    size_t sim_key_count;
    const char *required[CLIENT_MAX_REQUIRED];
    size_t required_count;
    uint64_t now, timeout;
    int has_now, insecure_http, json, help;
};

static const struct option client_opts[] = {
    {"policy", required_argument, NULL, 'p'},
    {"sim-key", required_argument, NULL, OPT_SIM_KEY},
    {"collateral", required_argument, NULL, OPT_COLLATERAL},
    {"snp-cert", required_argument, NULL, OPT_SNP_CERT},
    {"require-model", required_argument, NULL, OPT_REQUIRE},
    {"save-cert", required_argument, NULL, OPT_SAVE_CERT},
    {"now", required_argument, NULL, OPT_NOW},
    {"timeout", required_argument, NULL, OPT_TIMEOUT},
    {"insecure-http", no_argument, NULL, OPT_INSECURE},
    {"json", no_argument, NULL, OPT_JSON},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

static int apply_list(struct client_args *a, int c)
{
    if (c == OPT_SIM_KEY) {
        if (a->sim_key_count == CLIENT_MAX_SIM_KEYS)
            return cli_usage_error(a->cmd, "at most %d --sim-key options", CLIENT_MAX_SIM_KEYS);
        a->sim_keys[a->sim_key_count++] = optarg;
        return CLI_OK;
    }
    if (a->required_count == CLIENT_MAX_REQUIRED)
        return cli_usage_error(a->cmd, "at most %d --require-model options", CLIENT_MAX_REQUIRED);
    a->required[a->required_count++] = optarg;
    return CLI_OK;
}

static int apply_number(struct client_args *a, int c)
{
    if (c == OPT_NOW && cli_parse_u64(optarg, 0, INT64_MAX, &a->now) != 0)
        return cli_usage_error(a->cmd, "--now must be seconds since the epoch, not '%s'", optarg);
    if (c == OPT_TIMEOUT && cli_parse_u64(optarg, 1, CLIENT_MAX_TIMEOUT_S, &a->timeout) != 0)
        return cli_usage_error(a->cmd, "--timeout must be 1 to %u seconds, not '%s'", CLIENT_MAX_TIMEOUT_S, optarg);
    a->has_now |= c == OPT_NOW;
    return CLI_OK;
}

static int apply_opt(void *ctx, int c)
{
    struct client_args *a = ctx;
    switch (c) {
    case 'p': a->policy = optarg; return CLI_OK;
    case 'h': a->help = 1; return CLI_OK;
    case OPT_COLLATERAL: a->collateral = optarg; return CLI_OK;
    case OPT_SNP_CERT: a->snp_cert = optarg; return CLI_OK;
    case OPT_SAVE_CERT: a->save_cert = optarg; return CLI_OK;
    case OPT_INSECURE: a->insecure_http = 1; return CLI_OK;
    case OPT_JSON: a->json = 1; return CLI_OK;
    case OPT_SIM_KEY:
    case OPT_REQUIRE: return apply_list(a, c);
    default: return apply_number(a, c);
    }
}

/* ---- the URL ------------------------------------------------------------------------------------------------ */

static void url_done(CURLU **u) { curl_url_cleanup(*u); }
static void curl_str_done(char **s) { curl_free(*s); }

/* https://, or with --insecure-http http:// to a loopback host; no query or fragment (a path is appended). */
static int url_check(const struct client_args *a)
{
    CURLU *u VEIL_DEFER(url_done) = curl_url();
    char *scheme VEIL_DEFER(curl_str_done) = NULL;
    char *host VEIL_DEFER(curl_str_done) = NULL;
    char *extra VEIL_DEFER(curl_str_done) = NULL;
    if (u == NULL)
        return cli_fail("out of memory");
    if (strlen(a->url) > CLIENT_URL_MAX || curl_url_set(u, CURLUPART_URL, a->url, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK)
        return cli_usage_error(a->cmd, "'%.200s' is not an https:// URL", a->url);
    if (curl_url_get(u, CURLUPART_QUERY, &extra, 0) == CURLUE_OK ||
        curl_url_get(u, CURLUPART_FRAGMENT, &extra, 0) == CURLUE_OK)
        return cli_usage_error(a->cmd, "the URL must not have a query or a fragment");
    if (strcmp(scheme, "https") == 0)
        return a->insecure_http ? cli_usage_error(a->cmd, "--insecure-http goes with an http:// URL only") : CLI_OK;
    if (strcmp(scheme, "http") != 0 || !a->insecure_http)
        return cli_usage_error(a->cmd, "the URL must be https:// (http:// only with --insecure-http), not %.16s://",
                               scheme);
    if (!veil_url_host_is_loopback(host))
        return cli_usage_error(a->cmd, "--insecure-http allows loopback addresses only (127.0.0.0/8, ::1, "
                                       "localhost), not %.200s", host);
    return CLI_OK;
}

/* ---- one request ---------------------------------------------------------------------------------------------- */

struct fetch {
    struct veil_buf body;
    int overflow;
    char *cert_pem; /* the leaf certificate of the connection that carried the answer (malloc'd) */
};

static void fetch_cleanup(struct fetch *f)
{
    veil_buf_cleanup(&f->body);
    free(f->cert_pem);
}

static size_t on_body(char *data, size_t size, size_t n, void *ctx)
{
    struct fetch *f = ctx;
    size_t len = size * n;
    if (len > VEIL_RUNTIME_ANSWER_MAX_SIZE - f->body.size) {
        f->overflow = 1;
        return 0;
    }
    return veil_ok(veil_buf_append(&f->body, data, len)) ? len : 0;
}

static int set_options(CURL *h, const struct client_args *a, const char *url, struct fetch *f)
{
    long timeout = (long)(a->timeout != 0 ? a->timeout : CLIENT_DEFAULT_TIMEOUT_S);
    /* No CA can vouch for a certificate made inside the TEE: peer verification is off, and the evidence binds the
     * certificate's key instead (checked after the answer arrives, before anything else is sent). */
    int ok = curl_easy_setopt(h, CURLOPT_URL, url) == CURLE_OK &&
             curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, a->insecure_http ? "http" : "https") == CURLE_OK &&
             curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L) == CURLE_OK &&
             curl_easy_setopt(h, CURLOPT_PROXY, "") == CURLE_OK &&
             curl_easy_setopt(h, CURLOPT_TIMEOUT, timeout) == CURLE_OK &&
             curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, timeout) == CURLE_OK &&
             curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L) == CURLE_OK &&
             curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L) == CURLE_OK &&
             curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L) == CURLE_OK &&
             curl_easy_setopt(h, CURLOPT_SSL_SESSIONID_CACHE, 0L) == CURLE_OK &&
             curl_easy_setopt(h, CURLOPT_CERTINFO, 1L) == CURLE_OK &&
             curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body) == CURLE_OK &&
             curl_easy_setopt(h, CURLOPT_WRITEDATA, f) == CURLE_OK;
    return ok ? CLI_OK : cli_fail("libcurl refused an option (is it older than 7.85?)");
}

/* The server's {"error": ...} text, printable ASCII only, or a placeholder. */
static void server_error(const struct fetch *f, char *out, size_t out_size)
{
    snprintf(out, out_size, "(no error message)");
    json_t *j = f->overflow ? NULL : json_loadb((const char *)f->body.data, f->body.size, 0, NULL);
    const char *e = json_string_value(json_object_get(j, "error"));
    size_t n = 0;
    for (; e != NULL && e[n] != '\0' && n + 1 < out_size; n++)
        out[n] = e[n] >= 0x20 && e[n] < 0x7f ? e[n] : '?';
    if (n > 0)
        out[n] = '\0';
    json_decref(j);
}

/* The PEM text of the first (leaf) certificate curl saw on this connection. */
static int leaf_certificate(CURL *h, struct fetch *f)
{
    struct curl_certinfo *ci = NULL;
    if (curl_easy_getinfo(h, CURLINFO_CERTINFO, &ci) != CURLE_OK || ci == NULL || ci->num_of_certs < 1)
        return cli_fail("libcurl reported no server certificate (is it built with OpenSSL?)");
    for (struct curl_slist *s = ci->certinfo[0]; s != NULL; s = s->next)
        if (strncmp(s->data, "Cert:", 5) == 0 && f->cert_pem == NULL)
            f->cert_pem = strdup(s->data + 5);
    return f->cert_pem != NULL ? CLI_OK : cli_fail("libcurl reported no server certificate");
}

static int fetch_answer(const struct client_args *a, const char *nonce_hex, struct fetch *f)
{
    char url[CLIENT_URL_MAX + sizeof ATTESTATION_PATH + 2 * CLIENT_NONCE_SIZE + 1];
    size_t n = strlen(a->url);
    while (n > 0 && a->url[n - 1] == '/')
        n--;
    snprintf(url, sizeof url, "%.*s%s%s", (int)n, a->url, ATTESTATION_PATH, nonce_hex);
    CURL *h = curl_easy_init();
    if (h == NULL)
        return cli_fail("cannot create a libcurl handle");
    int rc = set_options(h, a, url, f);
    CURLcode cc = rc == CLI_OK ? curl_easy_perform(h) : CURLE_OK;
    long http = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &http);
    char err[256];
    server_error(f, err, sizeof err);
    if (rc == CLI_OK && f->overflow)
        rc = cli_fail("the attestation answer exceeds %u bytes", VEIL_RUNTIME_ANSWER_MAX_SIZE);
    else if (rc == CLI_OK && cc != CURLE_OK)
        rc = cli_fail("cannot reach %.200s: %s", a->url, curl_easy_strerror(cc));
    else if (rc == CLI_OK && http != 200)
        rc = cli_fail("%.200s answered %ld to the attestation request: %s", a->url, http, err);
    if (rc == CLI_OK && !a->insecure_http)
        rc = leaf_certificate(h, f);
    curl_easy_cleanup(h);
    return rc;
}

/* ---- verification ------------------------------------------------------------------------------------------- */

struct inputs {
    struct veil_buf policy;
    struct veil_buf keys[CLIENT_MAX_SIM_KEYS];
    const char *key_text[CLIENT_MAX_SIM_KEYS];
};

static void inputs_cleanup(struct inputs *in)
{
    veil_buf_cleanup(&in->policy);
    for (size_t i = 0; i < CLIENT_MAX_SIM_KEYS; i++)
        veil_buf_cleanup(&in->keys[i]);
}

static int read_inputs(const struct client_args *a, struct inputs *in)
{
    int rc = cli_read_text(a->policy, VEIL_POLICY_MAX_SIZE, &in->policy);
    for (size_t i = 0; rc == CLI_OK && i < a->sim_key_count; i++) {
        rc = cli_read_text(a->sim_keys[i], VEIL_SIM_KEY_MAX_SIZE, &in->keys[i]);
        in->key_text[i] = (const char *)in->keys[i].data;
    }
    return rc;
}

/* veil_runtime_verify with the options of the command line; *report is the library's JSON text. */
static int verify(const struct client_args *a, const struct inputs *in, const uint8_t *nonce, const struct fetch *f,
                  char **report)
{
    uint8_t spki[VEIL_SPKI_SHA256_SIZE];
    veil_status st = VEIL_OK;
    if (!a->insecure_http &&
        (st = veil_cert_spki_sha256((const uint8_t *)f->cert_pem, strlen(f->cert_pem), spki)) != VEIL_OK)
        return cli_fail_status(st);
    veil_client_policy *p = NULL;
    if ((st = veil_client_policy_parse((const char *)in->policy.data, in->policy.size, &p)) != VEIL_OK)
        return cli_fail("%s: %s", a->policy, veil_last_error());
    struct veil_verify_options vo = {.now = a->has_now ? a->now : (uint64_t)time(NULL),
                                     .collateral_path = a->collateral, .snp_cert_path = a->snp_cert,
                                     .sim_trusted_keys = in->key_text, .sim_trusted_key_count = a->sim_key_count};
    struct veil_runtime_verify_options o = {.nonce = nonce, .nonce_size = CLIENT_NONCE_SIZE,
                                            .tls_spki_sha256 = a->insecure_http ? NULL : spki,
                                            .insecure_no_channel_binding = a->insecure_http, .verify = &vo,
                                            .required_model_ids = a->required,
                                            .required_model_count = a->required_count};
    st = veil_runtime_verify((const char *)f->body.data, f->body.size, p, &o, report);
    veil_client_policy_free(p);
    return st == VEIL_OK ? CLI_OK : cli_fail_status(st);
}

static int save_certificate(const char *path, const char *pem)
{
    struct veil_outfile out;
    struct veil_result r = veil_outfile_open(&out, path, 0644);
    if (veil_ok(r))
        r = veil_file_write_all(out.fd, pem, strlen(pem));
    if (veil_ok(r))
        r = veil_outfile_commit(&out);
    veil_outfile_cleanup(&out);
    return veil_ok(r) ? CLI_OK : cli_fail_status(r.status);
}

/* ---- output --------------------------------------------------------------------------------------------------- */

static void print_models(const json_t *models)
{
    size_t i;
    const json_t *m;
    if (json_array_size(models) == 0)
        printf("%-17s (none)\n", "models:");
    json_array_foreach(models, i, m)
        printf("%-17s %s (model id %s, version %lld, key version %lld)\n", i == 0 ? "models:" : "",
               json_string_value(json_object_get(m, "name")), json_string_value(json_object_get(m, "model_id")),
               (long long)json_integer_value(json_object_get(m, "model_version")),
               (long long)json_integer_value(json_object_get(m, "key_version")));
}

static void print_text(const struct client_args *a, const json_t *r)
{
    const json_t *claims = json_object_get(r, "claims"), *ch = json_object_get(r, "channel");
    printf("verified: %s serves an attested veil-runtime (tee %s, tcb %s)\n", a->url,
           json_string_value(json_object_get(r, "tee")), json_string_value(json_object_get(claims, "tcb_status")));
    const char *m = json_string_value(json_object_get(claims, "measurement"));
    if (m != NULL)
        printf("%-17s %s\n", "measurement:", m);
    printf("%-17s %lld\n", "svn:", (long long)json_integer_value(json_object_get(claims, "svn")));
    print_models(json_object_get(r, "models"));
    if (a->insecure_http) {
        printf("%-17s none (plain HTTP): nothing binds this answer to any connection\n", "channel:");
        return;
    }
    const char *pin = json_string_value(json_object_get(ch, "curl_pin"));
    printf("%-17s %s\n%-17s %s\n", "tls spki sha256:", json_string_value(json_object_get(ch, "tls_spki_sha256")),
           "curl pin:", pin);
    if (a->save_cert != NULL)
        printf("%-17s %s\n", "certificate:", a->save_cert);
    size_t n = strlen(a->url);
    while (n > 0 && a->url[n - 1] == '/')
        n--;
    printf("\nTalk to this runtime only: curl --pinnedpubkey '%s' -k %.*s/v2/health/ready\n", pin, (int)n, a->url);
}

static int report(const struct client_args *a, const char *text)
{
    json_t *r = json_loads(text, 0, NULL);
    if (r == NULL)
        return cli_fail("out of memory");
    size_t i;
    const json_t *w;
    json_array_foreach(json_object_get(r, "warnings"), i, w)
        cli_warn("%s", json_string_value(w));
    if (a->json) {
        json_object_set_new(r, "url", json_string(a->url));
        if (a->save_cert != NULL)
            json_object_set_new(r, "certificate_file", json_string(a->save_cert));
        char *s = json_dumps(r, JSON_COMPACT);
        if (s != NULL)
            printf("%s\n", s);
        free(s);
    } else {
        print_text(a, r);
    }
    json_decref(r);
    return CLI_OK;
}

/* ---- the command ---------------------------------------------------------------------------------------------- */

static int run_verify(const struct client_args *a)
{
    uint8_t nonce[CLIENT_NONCE_SIZE];
    char nonce_hex[2 * CLIENT_NONCE_SIZE + 1];
    if (!veil_ok(veil_random(nonce, sizeof nonce)))
        return cli_fail("cannot draw a random nonce");
    veil_hex_encode(nonce, sizeof nonce, nonce_hex);
    struct inputs in = {0};
    struct fetch f = {0};
    char *text = NULL;
    int rc = read_inputs(a, &in);
    if (rc == CLI_OK)
        rc = fetch_answer(a, nonce_hex, &f);
    if (rc == CLI_OK)
        rc = verify(a, &in, nonce, &f, &text);
    if (rc == CLI_OK && a->save_cert != NULL)
        rc = save_certificate(a->save_cert, f.cert_pem);
    if (rc == CLI_OK)
        rc = report(a, text);
    veil_free(text);
    fetch_cleanup(&f);
    inputs_cleanup(&in);
    return rc;
}

static int cmd_client_verify(int argc, char **argv)
{
    static const int allowed[] = {'p', OPT_SIM_KEY, OPT_COLLATERAL, OPT_SNP_CERT, OPT_REQUIRE, OPT_SAVE_CERT,
                                  OPT_NOW, OPT_TIMEOUT, OPT_INSECURE, OPT_JSON, 0};
    struct client_args a = {.cmd = "client verify"};
    const struct cli_getopt_spec spec = {a.cmd, ":p:h", client_opts, allowed, apply_opt};
    int rc = cli_getopt(argc, argv, &spec, &a);
    if (rc != CLI_OK || a.help)
        return a.help ? (fputs(verify_help, stdout), CLI_OK) : rc;
    if (optind >= argc)
        return cli_usage_error(a.cmd, "missing URL");
    a.url = argv[optind++];
    if (optind < argc)
        return cli_usage_error(a.cmd, "unexpected argument '%s'", argv[optind]);
    if (a.policy == NULL)
        return cli_usage_error(a.cmd, "--policy FILE is required");
    if (a.insecure_http && a.save_cert != NULL)
        return cli_usage_error(a.cmd, "--save-cert needs https://: plain HTTP has no certificate");
    if ((rc = url_check(&a)) != CLI_OK)
        return rc;
    if (a.insecure_http)
        cli_warn("--insecure-http: plain HTTP, NO channel binding; anyone on the path can read and change the "
                 "traffic; for development with the simulation TEE only");
    return run_verify(&a);
}

int cmd_client(int argc, char **argv)
{
    if (argc < 2) {
        fputs(client_help, stderr);
        return CLI_USAGE;
    }
    const char *sub = argv[1];
    if (strcmp(sub, "--help") == 0 || strcmp(sub, "-h") == 0 || strcmp(sub, "help") == 0) {
        fputs(client_help, stdout);
        return CLI_OK;
    }
    if (strcmp(sub, "verify") == 0)
        return cmd_client_verify(argc - 1, argv + 1);
    fprintf(stderr, "veil client: unknown subcommand '%s'\n\n%s", sub, client_help);
    return CLI_USAGE;
}
