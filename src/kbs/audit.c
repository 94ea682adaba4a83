/* SPDX-License-Identifier: Apache-2.0 */
/* Audit records: every release and every denial (and every key or policy change) as one JSON object, chained
 * by the store (lib/kbs/audit.c). */
#include <stdlib.h>
#include <string.h>

#include "core/hex.h"
#include "kbsd.h"
#include "metrics.h"

static int add_str(json_t *o, const char *key, const char *v)
{
    return v == NULL || json_object_set_new(o, key, json_string(v)) == 0;
}

static int add_claims(json_t *o, const struct veil_claims *c)
{
    if (c == NULL)
        return 1;
    char hex[2 * VEIL_MEASUREMENT_MAX + 1] = "";
    if (c->measurement_size <= VEIL_MEASUREMENT_MAX)
        veil_hex_encode(c->measurement, c->measurement_size, hex);
    return add_str(o, "measurement", hex) && add_str(o, "tcb_status", c->tcb_status) &&
           add_str(o, "tee", veil_tee_name(c->tee));
}

/* The session as its tag: the cookie is a bearer secret until it expires, and the audit log is kept for years. */
static const char *session_tag(const char *session, char tag[VD_TAG_SIZE])
{
    if (session == NULL)
        return NULL;
    vd_log_tag(session, tag);
    return tag;
}

char *kbs_audit_record(const struct kbs_audit_event *e)
{
    char tag[VD_TAG_SIZE];
    json_t *o = json_pack("{s:I, s:s, s:s}", "ts", (json_int_t)vd_now(), "event", e->event, "decision", e->decision);
    if (o == NULL)
        return NULL;
    int ok = add_str(o, "reason", e->reason) && add_str(o, "client", e->client) &&
             add_str(o, "session", session_tag(e->session, tag)) && add_str(o, "model", e->model) &&
             (e->key_version == 0 || json_object_set_new(o, "key_version", json_integer(e->key_version)) == 0) &&
             (e->claims != NULL ? add_claims(o, e->claims) : add_str(o, "tee", e->tee));
    char *text = ok ? json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(o);
    return text;
}

/* The metrics of a protocol decision: a key release, or a refusal at /auth, /attest or /resource (a model key or a
 * usage policy). A usage policy released is not a key released: it is not counted. */
static void count_decision(const struct kbs_audit_event *e)
{
    int key = strcmp(e->event, "release") == 0;
    int protocol = key || strcmp(e->event, "auth") == 0 || strcmp(e->event, "attest") == 0 ||
                   strcmp(e->event, "usage-release") == 0 || strcmp(e->event, "usage-report") == 0;
    int released = strcmp(e->decision, "release") == 0;
    if (protocol && ((released && key) || strcmp(e->decision, "deny") == 0))
        kbs_metrics_decision(e->claims != NULL ? veil_tee_name(e->claims->tee) : e->tee, released);
}

int kbs_audit(struct kbs_ctx *k, const struct kbs_audit_event *e)
{
    char *record = kbs_audit_record(e);
    struct veil_result r = record != NULL ? k->store->ops->audit_append(k->store, record)
                                          : veil_error_raise(VEIL_ERR_NOMEM, __FILE__, __LINE__, "out of memory");
    char tag[VD_TAG_SIZE];
    vd_log(e->decision[0] == 'd' ? "warn" : "info", e->event, "{s:s, s:s, s:s?, s:s?, s:s?}", "decision",
           e->decision, "reason", e->reason != NULL ? e->reason : "", "client", e->client, "model", e->model,
           "session", session_tag(e->session, tag));
    if (!veil_ok(r)) {
        vd_log("error", "audit-failed", "{s:s}", "detail", veil_last_error());
        kbs_metrics_audit_failure();
    }
    if (veil_ok(r) || strcmp(e->decision, "release") != 0)
        count_decision(e); /* a release whose record failed is refused (rcar.c), not counted */
    free(record);
    return veil_ok(r);
}
