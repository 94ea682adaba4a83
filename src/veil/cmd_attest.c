/* SPDX-License-Identifier: Apache-2.0 */
/* veil attest collect / verify / sim-init */
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "core/file.h"
#include "core/hex.h"
#include "core/limits.h"
#include "veil/attest.h"

static const char attest_help[] =
    "usage: veil attest <collect|verify|sim-init> [options]\n\n"
    "Remote attestation (docs/spec/evidence.md, docs/spec/policy.md):\n"
    "  collect    inside a TEE: write evidence that binds 64 bytes of report data\n"
    "  verify     on the verifier: check evidence against vendor roots, print its claims, judge a policy\n"
    "  sim-init   create the key pair of a simulation TEE platform (development only: protects nothing)\n\n"
    "Run 'veil attest <subcommand> --help' for its options.\n";

static const char collect_help[] =
    "usage: veil attest collect --provider P --report-data HEX -o EVIDENCE.json [options]\n\n"
    "Collects attestation evidence from the TEE this process runs in and writes it as one JSON object\n"
    "(docs/spec/evidence.md). EVIDENCE is written under a temporary name and renamed on success ('-': stdout).\n\n"
    "  -p, --provider P        sim, sample, sgx (Gramine /dev/attestation), tdx or snp (configfs-tsm), or auto\n"
    "                          (detect sgx, tdx or snp; sim and sample are never detected) (required)\n"
    "      --report-data HEX   up to 64 bytes in hex, zero-padded to 64: what the evidence binds, e.g. a nonce\n"
    "                          or the SHA-384 of a public key (required)\n"
    "  -o, --output FILE       where to write the evidence (required)\n"
    "      --root DIR          the provider's root: sgx default /dev/attestation, tdx/snp default\n"
    "                          /sys/kernel/config/tsm/report (with auto: both)\n"
    "      --sim-dir DIR       sim: the platform key directory made by 'veil attest sim-init' (required for sim)\n"
    "      --sim-executable F  sim: the file measured as the executable (default: this veil binary)\n"
    "      --sim-config F      sim: a configuration file measured after it (optional)\n"
    "      --sim-svn N         sim: the security version number to report (default 0)\n"
    "  -h, --help              show this help\n\n"
    "The sim provider prints a warning: its evidence is signed by a key on this machine and proves nothing.\n";

static const char verify_help[] =
    "usage: veil attest verify EVIDENCE [options]\n\n"
    "Verifies EVIDENCE (a JSON file from 'veil attest collect' or a Trustee attester, or a raw SGX/TDX quote or\n"
    "SEV-SNP report with --type) against the vendors' roots and prints its claims. With --policy, also judges\n"
    "them; with --report-data, also checks the binding. Exit status 0: verified (and allowed); 1: refused, with\n"
    "one 'veil: error:' line naming the failed check; 2: usage error.\n\n"
    "  -t, --type T            auto (read it from the JSON), sgx, tdx, snp, sim or sample (default auto)\n"
    "      --collateral FILE   DCAP: collateral JSON (dcap-qvl's QuoteCollateralV3 layout)\n"
    "      --pccs URL          DCAP: fetch collateral from this PCCS/PCS base URL instead\n"
    "      --collateral-cache DIR  DCAP: cache fetched collateral here\n"
    "      --snp-cert FILE     SNP: the VCEK/VLEK (DER or PEM) when the evidence carries none\n"
    "      --now EPOCH         judge certificates and collateral at this time, in seconds since 1970\n"
    "                          (default: now)\n"
    "      --policy FILE       judge the claims against this policy (docs/spec/policy.md)\n"
    "      --report-data HEX   the report data the evidence must bind (hex, zero-padded to 64 bytes)\n"
    "      --sim-key PEM       trust this simulation platform public key (repeatable; sim evidence only)\n"
    "      --json              print the claims as one JSON object\n"
    "  -h, --help              show this help\n";

static const char sim_init_help[] =
    "usage: veil attest sim-init --dir DIR\n\n"
    "Creates a simulation TEE platform key pair (ECDSA P-256) in DIR (created with mode 0700):\n"
    "DIR/platform.key (private, mode 0600) and DIR/platform.pub (give it to verifiers with --sim-key).\n"
    "Never replaces an existing key. The simulation TEE protects nothing; production policies refuse it.\n\n"
    "      --dir DIR   the platform directory (required)\n"
    "  -h, --help      show this help\n";

enum { OPT_REPORT_DATA = 256, OPT_ROOT, OPT_SIM_DIR, OPT_SIM_EXE, OPT_SIM_CONFIG, OPT_SIM_SVN, OPT_COLLATERAL,
       OPT_PCCS, OPT_CACHE, OPT_SNP_CERT, OPT_NOW, OPT_POLICY, OPT_SIM_KEY, OPT_JSON, OPT_DIR };

#define MAX_SIM_KEYS 16

struct attest_args {
    const char *cmd;
    const char *provider, *type, *report_data, *output, *root, *sim_dir, *sim_exe, *sim_config;
    const char *collateral, *pccs, *cache, *snp_cert, *policy, *dir, *input;
    const char *sim_keys[MAX_SIM_KEYS];
    size_t sim_key_count;
    uint64_t sim_svn, now;
    int has_now, json, help;
};

static const struct option attest_opts[] = {
    {"provider", required_argument, NULL, 'p'},
    {"type", required_argument, NULL, 't'},
    {"output", required_argument, NULL, 'o'},
    {"report-data", required_argument, NULL, OPT_REPORT_DATA},
    {"root", required_argument, NULL, OPT_ROOT},
    {"sim-dir", required_argument, NULL, OPT_SIM_DIR},
    {"sim-executable", required_argument, NULL, OPT_SIM_EXE},
    {"sim-config", required_argument, NULL, OPT_SIM_CONFIG},
    {"sim-svn", required_argument, NULL, OPT_SIM_SVN},
    {"collateral", required_argument, NULL, OPT_COLLATERAL},
    {"pccs", required_argument, NULL, OPT_PCCS},
    {"collateral-cache", required_argument, NULL, OPT_CACHE},
    {"snp-cert", required_argument, NULL, OPT_SNP_CERT},
    {"now", required_argument, NULL, OPT_NOW},
    {"policy", required_argument, NULL, OPT_POLICY},
    {"sim-key", required_argument, NULL, OPT_SIM_KEY},
    {"json", no_argument, NULL, OPT_JSON},
    {"dir", required_argument, NULL, OPT_DIR},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

static int apply_number(struct attest_args *a, int c)
{
    if (c == OPT_SIM_SVN && cli_parse_u64(optarg, 0, UINT32_MAX, &a->sim_svn) != 0)
        return cli_usage_error(a->cmd, "--sim-svn must be a whole number from 0 to %u, not '%s'", UINT32_MAX,
                               optarg);
    if (c == OPT_NOW && cli_parse_u64(optarg, 0, INT64_MAX, &a->now) != 0)
        return cli_usage_error(a->cmd, "--now must be seconds since the epoch, not '%s'", optarg);
    a->has_now |= c == OPT_NOW;
    return CLI_OK;
}

static int apply_opt(void *ctx, int c)
{
    struct attest_args *a = ctx;
    switch (c) {
    case 'p': a->provider = optarg; return CLI_OK;
    case 't': a->type = optarg; return CLI_OK;
    case 'o': a->output = optarg; return CLI_OK;
    case 'h': a->help = 1; return CLI_OK;
    case OPT_REPORT_DATA: a->report_data = optarg; return CLI_OK;
    case OPT_ROOT: a->root = optarg; return CLI_OK;
    case OPT_SIM_DIR: a->sim_dir = optarg; return CLI_OK;
    case OPT_SIM_EXE: a->sim_exe = optarg; return CLI_OK;
    case OPT_SIM_CONFIG: a->sim_config = optarg; return CLI_OK;
    case OPT_COLLATERAL: a->collateral = optarg; return CLI_OK;
    case OPT_PCCS: a->pccs = optarg; return CLI_OK;
    case OPT_CACHE: a->cache = optarg; return CLI_OK;
    case OPT_SNP_CERT: a->snp_cert = optarg; return CLI_OK;
    case OPT_POLICY: a->policy = optarg; return CLI_OK;
    case OPT_JSON: a->json = 1; return CLI_OK;
    case OPT_DIR: a->dir = optarg; return CLI_OK;
    case OPT_SIM_KEY:
        if (a->sim_key_count == MAX_SIM_KEYS)
            return cli_usage_error(a->cmd, "at most %d --sim-key options", MAX_SIM_KEYS);
        a->sim_keys[a->sim_key_count++] = optarg;
        return CLI_OK;
    default: return apply_number(a, c);
    }
}

/* allowed: the options this subcommand accepts, ending in 0; want_input: one positional argument. */
static int parse_args(int argc, char **argv, const int *allowed, int want_input, struct attest_args *a)
{
    const struct cli_getopt_spec spec = {a->cmd, ":p:t:o:h", attest_opts, allowed, apply_opt};
    int rc = cli_getopt(argc, argv, &spec, a);
    if (rc != CLI_OK || a->help)
        return rc;
    if (want_input) {
        if (optind >= argc)
            return cli_usage_error(a->cmd, "missing evidence file");
        a->input = argv[optind++];
    }
    if (optind < argc)
        return cli_usage_error(a->cmd, "unexpected argument '%s'", argv[optind]);
    return CLI_OK;
}

/* 1 to 64 bytes of hex, zero-padded to 64. */
static int parse_report_data(const struct attest_args *a, const char *hex, uint8_t out[VEIL_REPORT_DATA_SIZE])
{
    size_t n = strlen(hex);
    if (n == 0 || n % 2 != 0 || n > 2 * VEIL_REPORT_DATA_SIZE)
        return cli_usage_error(a->cmd, "--report-data must be 2 to 128 hex digits (an even number)");
    memset(out, 0, VEIL_REPORT_DATA_SIZE);
    if (!veil_ok(veil_hex_decode(VEIL_HEX_ANY_CASE, hex, n, out, n / 2, VEIL_ERR_ARG, "--report-data")))
        return cli_usage_error(a->cmd, "--report-data is not hex");
    return CLI_OK;
}

static int require(const struct attest_args *a, const char *value, const char *what)
{
    return value != NULL ? CLI_OK : cli_usage_error(a->cmd, "%s is required", what);
}

static void warn_sim(void)
{
    cli_warn("SIMULATION TEE: this evidence is signed by a key on an ordinary machine; it protects nothing and "
             "must never be trusted in production");
}

/* ---- collect ------------------------------------------------------------------------------------------ */

static int write_output(const char *path, const char *text)
{
    if (strcmp(path, "-") == 0)
        return printf("%s\n", text) < 0 ? cli_fail("cannot write the evidence to stdout") : CLI_OK;
    struct veil_outfile f;
    struct veil_result r = veil_outfile_open(&f, path, 0644);
    if (veil_ok(r))
        r = veil_file_write_all(f.fd, text, strlen(text));
    if (veil_ok(r))
        r = veil_file_write_all(f.fd, "\n", 1);
    if (veil_ok(r))
        r = veil_outfile_commit(&f);
    veil_outfile_cleanup(&f);
    return veil_ok(r) ? CLI_OK : cli_fail_status(r.status);
}

static int do_collect(const struct attest_args *a, veil_tee tee, const uint8_t *rd)
{
    struct veil_provider_config cfg = {.sim_dir = a->sim_dir, .sim_executable = a->sim_exe,
                                       .sim_config = a->sim_config, .sim_svn = (uint32_t)a->sim_svn};
    if (a->root != NULL) {
        cfg.gramine_root = tee == VEIL_TEE_SGX || tee == VEIL_TEE_AUTO ? a->root : NULL;
        cfg.tsm_root = tee == VEIL_TEE_TDX || tee == VEIL_TEE_SNP || tee == VEIL_TEE_AUTO ? a->root : NULL;
    }
    if (tee == VEIL_TEE_SIM)
        warn_sim();
    char *evidence = NULL;
    veil_status st = veil_evidence_collect(tee, &cfg, rd, &evidence);
    if (st != VEIL_OK)
        return cli_fail_status(st);
    int rc = write_output(a->output, evidence);
    veil_free(evidence);
    return rc;
}

static int cmd_collect(int argc, char **argv)
{
    static const int allowed[] = {'p', 'o', OPT_REPORT_DATA, OPT_ROOT, OPT_SIM_DIR, OPT_SIM_EXE, OPT_SIM_CONFIG,
                                  OPT_SIM_SVN, 0};
    struct attest_args a = {.cmd = "attest collect"};
    int rc = parse_args(argc, argv, allowed, 0, &a);
    if (rc != CLI_OK || a.help)
        return a.help ? (fputs(collect_help, stdout), CLI_OK) : rc;
    if ((rc = require(&a, a.provider, "--provider P")) != CLI_OK ||
        (rc = require(&a, a.report_data, "--report-data HEX")) != CLI_OK ||
        (rc = require(&a, a.output, "-o EVIDENCE.json")) != CLI_OK)
        return rc;
    veil_tee tee = VEIL_TEE_AUTO;
    if (veil_tee_from_name(a.provider, &tee) != VEIL_OK)
        return cli_usage_error(a.cmd, "--provider must be sim, sample, sgx, tdx, snp or auto, not '%s'", a.provider);
    if (tee == VEIL_TEE_SIM && a.sim_dir == NULL)
        return cli_usage_error(a.cmd, "--provider sim needs --sim-dir DIR (see 'veil attest sim-init')");
    uint8_t rd[VEIL_REPORT_DATA_SIZE];
    if ((rc = parse_report_data(&a, a.report_data, rd)) != CLI_OK)
        return rc;
    return do_collect(&a, tee, rd);
}

/* ---- verify ------------------------------------------------------------------------------------------- */

struct verify_inputs {
    struct veil_buf evidence, policy;
    struct veil_buf keys[MAX_SIM_KEYS];
    const char *key_text[MAX_SIM_KEYS];
};

static void verify_inputs_cleanup(struct verify_inputs *in)
{
    veil_buf_cleanup(&in->evidence);
    veil_buf_cleanup(&in->policy);
    for (size_t i = 0; i < MAX_SIM_KEYS; i++)
        veil_buf_cleanup(&in->keys[i]);
}

static int read_inputs(const struct attest_args *a, struct verify_inputs *in)
{
    int rc = cli_read_text(a->input, VEIL_EVIDENCE_MAX_SIZE, &in->evidence);
    if (rc == CLI_OK && a->policy != NULL)
        rc = cli_read_text(a->policy, VEIL_POLICY_MAX_SIZE, &in->policy);
    for (size_t i = 0; rc == CLI_OK && i < a->sim_key_count; i++) {
        rc = cli_read_text(a->sim_keys[i], VEIL_SIM_KEY_MAX_SIZE, &in->keys[i]);
        in->key_text[i] = (const char *)in->keys[i].data;
    }
    return rc;
}

static void print_hex(const char *label, const uint8_t *p, size_t n)
{
    printf("%-13s ", label);
    for (size_t i = 0; i < n; i++)
        printf("%02x", p[i]);
    putchar('\n');
}

/* TDX registers and SEV-SNP TCBs: what a tdx policy pins and an snp policy's min_tcb judges. */
static void print_tee_specific(const struct veil_claims *c)
{
    static const char *const rtmr[] = {"rtmr0:", "rtmr1:", "rtmr2:", "rtmr3:"};
    for (size_t i = 0; i < c->rtmr_count && i < 4; i++)
        print_hex(rtmr[i], c->rtmr[i], sizeof c->rtmr[i]);
    if (c->tee == VEIL_TEE_TDX && c->config_id_size > 0)
        print_hex("mrconfigid:", c->config_id, c->config_id_size);
    if (c->mr_owner_size > 0)
        print_hex("mrowner:", c->mr_owner, c->mr_owner_size);
    if (c->mr_owner_config_size > 0)
        print_hex("mrownercfg:", c->mr_owner_config, c->mr_owner_config_size);
    if (c->tee != VEIL_TEE_SNP)
        return;
    const struct veil_snp_tcb *t[] = {&c->reported_tcb, &c->committed_tcb};
    static const char *const label[] = {"reported tcb:", "committed tcb:"};
    for (size_t i = 0; i < 2; i++)
        printf("%-13s bootloader %u, tee %u, snp %u, microcode %u, fmc %u\n", label[i], t[i]->bootloader, t[i]->tee,
               t[i]->snp, t[i]->microcode, t[i]->fmc);
}

static int print_claims(const struct veil_claims *c, int json)
{
    if (json) {
        char *s = NULL;
        veil_status st = veil_claims_to_json(c, &s);
        if (st != VEIL_OK)
            return cli_fail_status(st);
        printf("%s\n", s);
        veil_free(s);
        return CLI_OK;
    }
    printf("%-13s %s\n", "tee:", veil_tee_name(c->tee));
    printf("%-13s %.*s\n", "tcb status:", (int)sizeof c->tcb_status, c->tcb_status);
    if (c->measurement_size > 0)
        print_hex("measurement:", c->measurement, c->measurement_size);
    if (c->signer_size > 0)
        print_hex("signer:", c->signer, c->signer_size);
    printf("%-13s %u\n%-13s %u\n%-13s %s\n", "product id:", c->product_id, "svn:", c->svn, "debug:",
           c->debug ? "yes" : "no");
    print_tee_specific(c);
    for (size_t i = 0; i < c->advisory_count && i < VEIL_MAX_ADVISORIES; i++)
        printf("%-13s %.*s\n", "advisory:", (int)sizeof c->advisories[i], c->advisories[i]);
    print_hex("report data:", c->report_data, sizeof c->report_data);
    return CLI_OK;
}

static int judge(const struct attest_args *a, const struct verify_inputs *in, const struct veil_claims *c,
                 const uint8_t *rd)
{
    if (a->policy == NULL) {
        if (rd != NULL && veil_ct_compare(rd, c->report_data, VEIL_REPORT_DATA_SIZE) != 0)
            return cli_fail("report data does not match the expected value");
        return CLI_OK;
    }
    veil_policy *p = NULL;
    veil_status st = veil_policy_parse((const char *)in->policy.data, in->policy.size, &p);
    if (st != VEIL_OK)
        return cli_fail_status(st);
    st = veil_policy_check(p, c, rd);
    veil_policy_free(p);
    return st == VEIL_OK ? CLI_OK : cli_fail_status(st);
}

static int do_verify(const struct attest_args *a, veil_tee type, const uint8_t *rd)
{
    struct verify_inputs in = {0};
    int rc = read_inputs(a, &in);
    struct veil_claims claims = {0};
    if (rc == CLI_OK) {
        struct veil_verify_options o = {.now = a->has_now ? a->now : (uint64_t)time(NULL),
                                        .collateral_path = a->collateral, .pccs_url = a->pccs,
                                        .collateral_cache_dir = a->cache, .sim_trusted_keys = in.key_text,
                                        .sim_trusted_key_count = a->sim_key_count, .snp_cert_path = a->snp_cert};
        veil_status st = veil_evidence_verify(in.evidence.data, in.evidence.size, type, &o, &claims);
        rc = st == VEIL_OK ? CLI_OK : cli_fail_status(st);
    }
    if (rc == CLI_OK && claims.tee == VEIL_TEE_SIM)
        warn_sim();
    if (rc == CLI_OK && claims.tee == VEIL_TEE_SAMPLE)
        cli_warn("SAMPLE TEE: this evidence is unsigned and proves nothing");
    if (rc == CLI_OK)
        rc = judge(a, &in, &claims, rd);
    if (rc == CLI_OK)
        rc = print_claims(&claims, a->json);
    if (rc == CLI_OK && a->policy != NULL) /* stdout stays one JSON object with --json */
        fprintf(a->json ? stderr : stdout, "policy:       %s allows this evidence%s\n", a->policy,
                rd != NULL ? " (report data checked)" : "");
    verify_inputs_cleanup(&in);
    return rc;
}

static int cmd_verify(int argc, char **argv)
{
    static const int allowed[] = {'t', OPT_COLLATERAL, OPT_PCCS, OPT_CACHE, OPT_SNP_CERT, OPT_NOW, OPT_POLICY,
                                  OPT_REPORT_DATA, OPT_SIM_KEY, OPT_JSON, 0};
    struct attest_args a = {.cmd = "attest verify"};
    int rc = parse_args(argc, argv, allowed, 1, &a);
    if (rc != CLI_OK || a.help)
        return a.help ? (fputs(verify_help, stdout), CLI_OK) : rc;
    if (a.collateral != NULL && a.pccs != NULL)
        return cli_usage_error(a.cmd, "give --collateral or --pccs, not both");
    veil_tee type = VEIL_TEE_AUTO;
    if (a.type != NULL && veil_tee_from_name(a.type, &type) != VEIL_OK)
        return cli_usage_error(a.cmd, "--type must be auto, sgx, tdx, snp, sim or sample, not '%s'", a.type);
    uint8_t rd[VEIL_REPORT_DATA_SIZE];
    if (a.report_data != NULL && (rc = parse_report_data(&a, a.report_data, rd)) != CLI_OK)
        return rc;
    return do_verify(&a, type, a.report_data != NULL ? rd : NULL);
}

/* ---- sim-init ----------------------------------------------------------------------------------------- */

static int cmd_sim_init(int argc, char **argv)
{
    static const int allowed[] = {OPT_DIR, 0};
    struct attest_args a = {.cmd = "attest sim-init"};
    int rc = parse_args(argc, argv, allowed, 0, &a);
    if (rc != CLI_OK || a.help)
        return a.help ? (fputs(sim_init_help, stdout), CLI_OK) : rc;
    if ((rc = require(&a, a.dir, "--dir DIR")) != CLI_OK)
        return rc;
    veil_status st = veil_sim_init(a.dir, NULL);
    if (st != VEIL_OK)
        return cli_fail_status(st);
    cli_warn("SIMULATION TEE: a platform key on an ordinary machine protects nothing; for development only");
    printf("created %s/platform.key (private) and %s/platform.pub\n"
           "verifiers trust this platform with: veil attest verify EVIDENCE --sim-key %s/platform.pub\n",
           a.dir, a.dir, a.dir);
    return CLI_OK;
}

int cmd_attest(int argc, char **argv)
{
    if (argc < 2) {
        fputs(attest_help, stderr);
        return CLI_USAGE;
    }
    const char *sub = argv[1];
    if (strcmp(sub, "--help") == 0 || strcmp(sub, "-h") == 0 || strcmp(sub, "help") == 0) {
        fputs(attest_help, stdout);
        return CLI_OK;
    }
    if (strcmp(sub, "collect") == 0)
        return cmd_collect(argc - 1, argv + 1);
    if (strcmp(sub, "verify") == 0)
        return cmd_verify(argc - 1, argv + 1);
    if (strcmp(sub, "sim-init") == 0)
        return cmd_sim_init(argc - 1, argv + 1);
    fprintf(stderr, "veil attest: unknown subcommand '%s'\n\n%s", sub, attest_help);
    return CLI_USAGE;
}
