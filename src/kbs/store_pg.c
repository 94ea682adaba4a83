/* SPDX-License-Identifier: Apache-2.0 */
/* The PostgreSQL store (libpq), for several broker replicas sharing one database: the same operations and the
 * same answers as store_sqlite.c, on tables prefixed kbs_ (so the database may hold other things).
 *
 * Durability: every transaction that writes a model, key, policy or audit record commits with
 * synchronous_commit = on (PostgreSQL's default; a default of off is raised to on on each connection): the commit
 * is flushed to the server's WAL before the broker answers. The two statements that write session rows (the challenge, then its attested mark) turn it off
 * for their own transaction (set_config('synchronous_commit', 'off', true), i.e. SET LOCAL, inside the
 * statement): those rows survive a crash of any broker replica (the server holds them); a crash of the database
 * server or its machine can lose the last of them (at most 3 x wal_writer_delay, 0.6 s by default), which forces
 * those clients to start over; the next synchronous commit (the release's audit record, at the latest) flushes
 * them too, in order. That saves two of the three WAL flushes of a key release. A lost attested mark could let
 * the same attestation body be replayed once more, for a token bound to the same TEE key, which only that TEE can
 * use.
 *
 * Concurrency: a pool of connections (a mutex and a condition variable hand them out), each with its statements
 * prepared once. Each operation is one transaction, or one statement. The nonce is consumed by one conditional
 * UPDATE whose row count says whether it was; the next key version comes from UPDATE ... RETURNING on the
 * model's row (which also serialises rotations of one model); every audit append first locks the one-row table
 * kbs_audit_tail (SELECT ... FOR UPDATE), so appends from every replica form one linear chain, and the record is
 * written in the same transaction as the change it records. Audit records without a change of their own (releases
 * and refusals) are group-committed per replica, as in store_sqlite.c. Triggers make kbs_audit append-only.
 *
 * Failures: a connection found broken is reset (PQreset) before its next use; an operation whose first statement
 * fails on a broken connection is retried once on the reset connection (a transaction's first statement is
 * BEGIN; the single-statement writes are conditional: a repeated session insert fails on its key, a repeated
 * attested mark matches no row, so a retry never consumes a nonce twice). Otherwise a store failure is
 * VEIL_ERR_IO with PostgreSQL's message, never the conninfo and never its password. */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "core/json.h"
#include "core/secret.h"
#include "kbs/kbs.h"
#include "group_commit.h"
#include "store.h"

#define PG_MAX_PARAMS 5
#define PG_MAX_POOL 256u
#define PG_CONNECT_TIMEOUT "10" /* seconds; a connect_timeout in the conninfo overrides it */
/* pg_advisory_xact_lock key serialising schema creation when several replicas start at once ("veil-kbs"). */
#define PG_SCHEMA_LOCK "7162384562913567347"

/* ---- schema and statements ------------------------------------------------------------------------------ */

static const char schema[] =
    "BEGIN;"
    "SELECT pg_advisory_xact_lock(" PG_SCHEMA_LOCK ");"
    "CREATE TABLE IF NOT EXISTS kbs_models(model_id TEXT PRIMARY KEY, policy TEXT NOT NULL, created BIGINT NOT NULL,"
    " last_version BIGINT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS kbs_keys(model_id TEXT NOT NULL REFERENCES kbs_models(model_id),"
    " version BIGINT NOT NULL, revoked INTEGER NOT NULL DEFAULT 0, sealed BYTEA NOT NULL, created BIGINT NOT NULL,"
    " PRIMARY KEY(model_id, version));"
    "CREATE TABLE IF NOT EXISTS kbs_sessions(id TEXT PRIMARY KEY, tee TEXT NOT NULL, nonce TEXT NOT NULL,"
    " expires BIGINT NOT NULL, attested INTEGER NOT NULL DEFAULT 0, claims TEXT, tee_pubkey TEXT);"
    "CREATE INDEX IF NOT EXISTS kbs_sessions_expires ON kbs_sessions(expires);"
    "CREATE TABLE IF NOT EXISTS kbs_usage(model_id TEXT PRIMARY KEY REFERENCES kbs_models(model_id),"
    " policy TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS kbs_usage_counters(model_id TEXT NOT NULL REFERENCES kbs_models(model_id),"
    " client TEXT NOT NULL, used BIGINT NOT NULL, PRIMARY KEY(model_id, client));"
    "CREATE TABLE IF NOT EXISTS kbs_audit(seq BIGINT PRIMARY KEY, prev TEXT NOT NULL, hash TEXT NOT NULL,"
    " record TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS kbs_audit_tail(one BOOLEAN PRIMARY KEY CHECK (one), seq BIGINT NOT NULL,"
    " hash TEXT NOT NULL);"
    "INSERT INTO kbs_audit_tail(one, seq, hash) VALUES (TRUE, 0, '" VEIL_KBS_AUDIT_GENESIS "')"
    " ON CONFLICT DO NOTHING;"
    "DO $$BEGIN"
    " IF to_regprocedure('kbs_audit_append_only()') IS NULL THEN"
    "  CREATE FUNCTION kbs_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS"
    "   'BEGIN RAISE EXCEPTION ''the audit log is append-only''; END';"
    " END IF;"
    " IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'kbs_audit_no_change'"
    "  AND tgrelid = 'kbs_audit'::regclass) THEN"
    "  CREATE TRIGGER kbs_audit_no_change BEFORE UPDATE OR DELETE OR TRUNCATE ON kbs_audit"
    "   FOR EACH STATEMENT EXECUTE FUNCTION kbs_audit_append_only();"
    " END IF;"
    "END$$;"
    "COMMIT";

enum stmt {
    ST_SESSION_CREATE,
    ST_SESSION_GET,
    ST_SESSION_ATTEST,
    ST_MODEL_INSERT,
    ST_KEY_INSERT,
    ST_NEXT_VERSION,
    ST_KEY_GET,
    ST_KEY_GET_LATEST,
    ST_KEY_REVOKE,
    ST_POLICY_SET,
    ST_MODEL_EXISTS,
    ST_USAGE_PUT,
    ST_USAGE_DELETE,
    ST_USAGE_GET,
    ST_COUNTER_ADD,
    ST_COUNTERS_GET,
    ST_MODEL_GET,
    ST_MODEL_LIST,
    ST_AUDIT_TAIL,
    ST_AUDIT_INSERT,
    ST_AUDIT_READ,
    ST_COUNT
};

/* SET LOCAL synchronous_commit = off, as an expression: for the transaction of the statement that evaluates it. */
#define RELAXED_COMMIT "SELECT set_config('synchronous_commit', 'off', true)"
#define KEY_COLUMNS "SELECT k.version, k.revoked, k.sealed, m.policy FROM kbs_keys k JOIN kbs_models m USING (model_id)"
#define MODEL_ROWS " m.created, k.version, k.revoked, k.created FROM kbs_models m LEFT JOIN kbs_keys k USING (model_id)"

static const struct {
    const char *name;
    const char *sql;
} stmts[ST_COUNT] = {
    /* Inserts a session and drops those that expired before $5; commits asynchronously (see the top). */
    [ST_SESSION_CREATE] = {"kbs_session_create",
                           "WITH relaxed AS (" RELAXED_COMMIT "),"
                           " purge AS (DELETE FROM kbs_sessions WHERE expires < $5::bigint)"
                           " INSERT INTO kbs_sessions(id, tee, nonce, expires)"
                           " SELECT $1, $2, $3, $4::bigint FROM relaxed"},
    [ST_SESSION_GET] = {"kbs_session_get",
                        "SELECT id, tee, nonce, expires, attested, claims, tee_pubkey FROM kbs_sessions WHERE id = $1"},
    /* Consumes the nonce: one conditional UPDATE; commits asynchronously (see the top). */
    [ST_SESSION_ATTEST] = {"kbs_session_attest",
                           "UPDATE kbs_sessions SET attested = 1, claims = $1, tee_pubkey = $2"
                           " FROM (" RELAXED_COMMIT ") AS relaxed"
                           " WHERE id = $3 AND nonce = $4 AND attested = 0 AND expires >= $5::bigint"},
    [ST_MODEL_INSERT] = {"kbs_model_insert",
                         "INSERT INTO kbs_models(model_id, policy, created, last_version)"
                         " VALUES ($1, $2, $3::bigint, 1) ON CONFLICT (model_id) DO NOTHING"},
    [ST_KEY_INSERT] = {"kbs_key_insert", "INSERT INTO kbs_keys(model_id, version, sealed, created)"
                                         " VALUES ($1, $2::bigint, $3::bytea, $4::bigint)"},
    [ST_NEXT_VERSION] = {"kbs_next_version", "UPDATE kbs_models SET last_version = last_version + 1"
                                             " WHERE model_id = $1 RETURNING last_version"},
    [ST_KEY_GET] = {"kbs_key_get", KEY_COLUMNS " WHERE k.model_id = $1 AND k.version = $2::bigint"},
    [ST_KEY_GET_LATEST] = {"kbs_key_get_latest",
                           KEY_COLUMNS " WHERE k.model_id = $1 AND k.revoked = 0 ORDER BY k.version DESC LIMIT 1"},
    [ST_KEY_REVOKE] = {"kbs_key_revoke",
                       "UPDATE kbs_keys SET revoked = 1 WHERE model_id = $1 AND version = $2::bigint"},
    [ST_POLICY_SET] = {"kbs_policy_set", "UPDATE kbs_models SET policy = $2 WHERE model_id = $1"},
    /* FOR SHARE: the model row stays as it is until the usage write commits. */
    [ST_MODEL_EXISTS] = {"kbs_model_exists", "SELECT 1 FROM kbs_models WHERE model_id = $1 FOR SHARE"},
    [ST_USAGE_PUT] = {"kbs_usage_put", "INSERT INTO kbs_usage(model_id, policy) VALUES ($1, $2)"
                                       " ON CONFLICT (model_id) DO UPDATE SET policy = EXCLUDED.policy"},
    [ST_USAGE_DELETE] = {"kbs_usage_delete", "DELETE FROM kbs_usage WHERE model_id = $1"},
    [ST_USAGE_GET] = {"kbs_usage_get", "SELECT u.policy FROM kbs_models m LEFT JOIN kbs_usage u USING (model_id)"
                                       " WHERE m.model_id = $1"},
    [ST_COUNTER_ADD] = {"kbs_counter_add",
                         "INSERT INTO kbs_usage_counters(model_id, client, used) VALUES ($1, $2, $3::bigint)"
                         " ON CONFLICT (model_id, client)"
                         " DO UPDATE SET used = LEAST(kbs_usage_counters.used + EXCLUDED.used, $4::bigint)"},
    [ST_COUNTERS_GET] = {"kbs_counters_get", "SELECT client, used FROM kbs_usage_counters WHERE model_id = $1"},
    [ST_MODEL_GET] = {"kbs_model_get", "SELECT m.model_id, m.policy," MODEL_ROWS " WHERE m.model_id = $1"
                                       " ORDER BY k.version"},
    /* Byte order of model ids, as SQLite's BINARY collation, whatever the database's collation. */
    [ST_MODEL_LIST] = {"kbs_model_list", "SELECT m.model_id, NULL::text," MODEL_ROWS
                                         " ORDER BY m.model_id COLLATE \"C\", k.version"},
    [ST_AUDIT_TAIL] = {"kbs_audit_tail", "SELECT seq, hash FROM kbs_audit_tail WHERE one FOR UPDATE"},
    [ST_AUDIT_INSERT] = {"kbs_audit_insert",
                         "WITH tail AS (UPDATE kbs_audit_tail SET seq = $1::bigint, hash = $3 WHERE one)"
                         " INSERT INTO kbs_audit(seq, prev, hash, record) VALUES ($1::bigint, $2, $3, $4)"},
    [ST_AUDIT_READ] = {"kbs_audit_read", "SELECT seq, prev, hash, record FROM kbs_audit WHERE seq >= $1::bigint"
                                         " ORDER BY seq LIMIT $2::bigint"},
};

/* ---- the store and its pool ----------------------------------------------------------------------------- */

struct pg_store;

struct pg_conn {
    PGconn *db;
    int prepared; /* every statement of stmts[] is prepared on db */
    const struct pg_store *owner;
};

struct pg_store {
    struct kbs_store base;
    char *conninfo;
    char *password; /* the conninfo's password, if any: never let it reach an error message */
    struct pg_conn *conns;
    unsigned count;
    unsigned *idle; /* indexes of the connections not in use */
    unsigned idle_count;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct kbs_group_commit audit_queue; /* group commit of audit appends (group_commit.h) */
};

static struct pg_store *impl(struct kbs_store *s)
{
    return (struct pg_store *)(void *)s;
}

static void res_done(PGresult **r)
{
    PQclear(*r);
    *r = NULL;
}

static void str_done(char **s)
{
    free(*s);
    *s = NULL;
}

/* libpq's message on one line, with the password (if it ever appears) masked. */
static void message_clean(const struct pg_store *s, const char *in, char *out, size_t cap)
{
    size_t n = 0, pw = s->password != NULL ? strlen(s->password) : 0;
    for (const char *p = in != NULL ? in : ""; *p != '\0' && n + 4 < cap;) {
        if (pw > 0 && strncmp(p, s->password, pw) == 0) {
            memcpy(out + n, "***", 3);
            n += 3;
            p += pw;
            continue;
        }
        out[n++] = *p == '\n' || *p == '\r' || *p == '\t' ? ' ' : *p;
        p++;
    }
    while (n > 0 && out[n - 1] == ' ')
        n--;
    out[n] = '\0';
}

static VEIL_RESULT pg_fail(const struct pg_conn *c, const PGresult *res, const char *what)
{
    char msg[320];
    const char *text = res != NULL ? PQresultErrorMessage(res) : "";
    message_clean(c->owner, text[0] != '\0' ? text : PQerrorMessage(c->db), msg, sizeof msg);
    VEIL_BAIL(VEIL_ERR_IO, "store: PostgreSQL: %s: %s", what, msg[0] != '\0' ? msg : "no detail");
}

/* ---- statements ------------------------------------------------------------------------------------------- */

struct pg_params {
    int count;
    const char *values[PG_MAX_PARAMS];
    int lengths[PG_MAX_PARAMS];
    int formats[PG_MAX_PARAMS];
    char numbers[PG_MAX_PARAMS][24];
};

static void param_text(struct pg_params *p, const char *v)
{
    p->values[p->count] = v;
    p->lengths[p->count] = 0;
    p->formats[p->count++] = 0;
}

static void param_int(struct pg_params *p, int64_t v)
{
    snprintf(p->numbers[p->count], sizeof p->numbers[0], "%" PRId64, v);
    param_text(p, p->numbers[p->count]);
}

/* A binary parameter (bytea): the bytes as they are. */
static VEIL_RESULT param_bytes(struct pg_params *p, const uint8_t *data, size_t size)
{
    VEIL_ENSURE(size <= INT_MAX, VEIL_ERR_LIMIT, "store: value too large");
    p->values[p->count] = size > 0 ? (const char *)data : "";
    p->lengths[p->count] = (int)size;
    p->formats[p->count++] = 1;
    return VEIL_RESULT_OK;
}

/* Runs a prepared statement; *out receives its result (rows in binary form when binary). */
static VEIL_RESULT query(struct pg_conn *c, enum stmt id, const struct pg_params *p, int binary, PGresult **out)
{
    PGresult *res = PQexecPrepared(c->db, stmts[id].name, p->count, p->values, p->lengths, p->formats, binary);
    ExecStatusType st = res != NULL ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        struct veil_result r = pg_fail(c, res, stmts[id].name);
        PQclear(res);
        return r;
    }
    *out = res;
    return VEIL_RESULT_OK;
}

/* Runs one or more SQL commands without parameters. */
static VEIL_RESULT command(struct pg_conn *c, const char *sql, const char *what)
{
    VEIL_DEFER(res_done) PGresult *res = PQexec(c->db, sql);
    ExecStatusType st = res != NULL ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
        return pg_fail(c, res, what);
    return VEIL_RESULT_OK;
}

/* Rows changed by an INSERT, UPDATE or DELETE. */
static long affected(PGresult *res)
{
    return strtol(PQcmdTuples(res), NULL, 10);
}

static VEIL_RESULT get_i64(const PGresult *res, int row, int col, int64_t *out)
{
    const char *v = PQgetvalue(res, row, col);
    char *end = NULL;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    VEIL_ENSURE(!PQgetisnull(res, row, col) && end != v && *end == '\0' && errno == 0, VEIL_ERR_FORMAT,
                "store: a stored number is malformed");
    *out = n;
    return VEIL_RESULT_OK;
}

/* A big-endian integer column of a binary result (int4 or int8). */
static VEIL_RESULT get_be(const PGresult *res, int row, int col, int size, int64_t *out)
{
    VEIL_ENSURE(!PQgetisnull(res, row, col) && PQgetlength(res, row, col) == size, VEIL_ERR_FORMAT,
                "store: a stored number is malformed");
    const unsigned char *v = (const unsigned char *)PQgetvalue(res, row, col);
    uint64_t n = (v[0] & 0x80u) != 0 ? UINT64_MAX : 0; /* sign extension for int4 */
    for (int i = 0; i < size; i++)
        n = (n << 8) | v[i];
    *out = (int64_t)n;
    return VEIL_RESULT_OK;
}

static char *get_text(const PGresult *res, int row, int col)
{
    return PQgetisnull(res, row, col) ? NULL : strdup(PQgetvalue(res, row, col));
}

/* ---- connections ----------------------------------------------------------------------------------------- */

static VEIL_RESULT prepare_all(struct pg_conn *c)
{
    for (size_t i = 0; i < ST_COUNT; i++) {
        VEIL_DEFER(res_done) PGresult *res = PQprepare(c->db, stmts[i].name, stmts[i].sql, 0, NULL);
        if (res == NULL || PQresultStatus(res) != PGRES_COMMAND_OK)
            return pg_fail(c, res, "prepare");
    }
    c->prepared = 1;
    return VEIL_RESULT_OK;
}

/* Notices ("relation already exists, skipping", "no transaction in progress") are not worth a log line. */
static void notice_ignore(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

static void conn_connect(const struct pg_store *s, struct pg_conn *c)
{
    /* Array entries before dbname (the expanded conninfo) are defaults the conninfo may override. */
    static const char *const keys[] = {"fallback_application_name", "connect_timeout", "dbname", NULL};
    const char *values[] = {"veil-kbs", PG_CONNECT_TIMEOUT, s->conninfo, NULL};
    c->db = PQconnectdbParams(keys, values, 1);
    if (c->db != NULL)
        PQsetNoticeProcessor(c->db, notice_ignore, NULL);
}

/* A server, database or role default of synchronous_commit = off would make every commit asynchronous: this
 * connection raises it to on (stronger settings, remote_write or remote_apply for a synchronous standby, stay). */
#define DURABLE_DEFAULT \
    "SELECT set_config('synchronous_commit', 'on', false) WHERE current_setting('synchronous_commit') = 'off'"

/* The row locks that keep the audit chain linear and key versions unique wait for each other; under a server,
 * database or role default of repeatable read or serializable the waiter would fail instead of proceeding. */
#define READ_COMMITTED "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL READ COMMITTED"

/* Makes c usable: connects, or resets a broken connection or one left inside a transaction, and prepares the
 * statements. */
static VEIL_RESULT conn_ready(struct pg_conn *c)
{
    int idle = c->db != NULL && PQstatus(c->db) == CONNECTION_OK && PQtransactionStatus(c->db) == PQTRANS_IDLE;
    if (idle && c->prepared)
        return VEIL_RESULT_OK;
    c->prepared = 0;
    if (c->db == NULL)
        conn_connect(c->owner, c);
    else if (!idle)
        PQreset(c->db);
    VEIL_ENSURE(c->db != NULL, VEIL_ERR_NOMEM, "out of memory");
    if (PQstatus(c->db) != CONNECTION_OK)
        return pg_fail(c, NULL, "cannot connect");
    struct veil_result r = command(c, DURABLE_DEFAULT, "configure");
    if (veil_ok(r))
        r = command(c, READ_COMMITTED, "configure");
    if (veil_ok(r))
        r = prepare_all(c);
    if (!veil_ok(r)) { /* start from a fresh session next time: some statements may exist already */
        PQfinish(c->db);
        c->db = NULL;
    }
    return r;
}

static int conn_broken(const struct pg_conn *c)
{
    return c->db == NULL || PQstatus(c->db) != CONNECTION_OK;
}

static struct pg_conn *acquire(struct pg_store *s)
{
    pthread_mutex_lock(&s->lock);
    while (s->idle_count == 0)
        pthread_cond_wait(&s->cond, &s->lock);
    struct pg_conn *c = &s->conns[s->idle[--s->idle_count]];
    pthread_mutex_unlock(&s->lock);
    return c;
}

static void release(struct pg_store *s, struct pg_conn *c)
{
    pthread_mutex_lock(&s->lock);
    s->idle[s->idle_count++] = (unsigned)(c - s->conns);
    pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

/* ---- operations: one transaction each (or one read) ----------------------------------------------------- */

enum pg_tx {
    TX_ONE,   /* one statement, its own transaction: reads, and the session writes */
    TX_BLOCK, /* BEGIN ... COMMIT */
};

typedef struct veil_result (*pg_fn)(struct pg_conn *c, void *arg);

/* Commits when r is OK (the commit must really commit), else rolls back; returns r or the commit failure. */
static VEIL_RESULT finish(struct pg_conn *c, struct veil_result r)
{
    if (veil_ok(r)) {
        VEIL_DEFER(res_done) PGresult *res = PQexec(c->db, "COMMIT");
        if (res == NULL || PQresultStatus(res) != PGRES_COMMAND_OK || strcmp(PQcmdStatus(res), "COMMIT") != 0)
            r = pg_fail(c, res, conn_broken(c) ? "commit's outcome unknown (the connection broke): check the "
                                                 "model's versions before retrying"
                                               : "commit");
        else
            return VEIL_RESULT_OK;
    }
    if (!conn_broken(c))
        PQclear(PQexec(c->db, "ROLLBACK"));
    return r;
}

/* One try; *retry says whether its first statement failed, on a connection now broken (see the top). */
static VEIL_RESULT attempt(struct pg_conn *c, enum pg_tx tx, pg_fn fn, void *arg, int *retry)
{
    *retry = 0;
    if (tx == TX_BLOCK) {
        struct veil_result r = command(c, "BEGIN", "begin");
        *retry = !veil_ok(r) && conn_broken(c);
        if (!veil_ok(r))
            return r;
        return finish(c, fn(c, arg));
    }
    struct veil_result r = fn(c, arg);
    *retry = !veil_ok(r) && conn_broken(c);
    return r;
}

static VEIL_RESULT run_op(struct pg_store *s, enum pg_tx tx, pg_fn fn, void *arg)
{
    struct pg_conn *c = acquire(s);
    int retry = 0;
    struct veil_result r = conn_ready(c);
    if (veil_ok(r))
        r = attempt(c, tx, fn, arg, &retry);
    if (retry) { /* e.g. the server restarted since this connection's last use */
        r = conn_ready(c);
        if (veil_ok(r))
            r = attempt(c, tx, fn, arg, &retry);
    }
    release(s, c);
    return r;
}

/* ---- audit chain ---------------------------------------------------------------------------------------- */

/* The chain's end, locked until the transaction ends: appends from every replica take turns. */
struct audit_tail {
    int64_t seq;
    char hash[VEIL_KBS_AUDIT_HASH_HEX_SIZE];
};

static VEIL_RESULT audit_lock(struct pg_conn *c, struct audit_tail *t)
{
    VEIL_DEFER(res_done) PGresult *res = NULL;
    VEIL_GUARD(query(c, ST_AUDIT_TAIL, &(struct pg_params){0}, 0, &res));
    VEIL_ENSURE(PQntuples(res) == 1, VEIL_ERR_FORMAT, "store: the audit tail row is missing");
    VEIL_GUARD(get_i64(res, 0, 0, &t->seq));
    const char *h = PQgetvalue(res, 0, 1);
    VEIL_ENSURE(t->seq >= 0 && t->seq < INT64_MAX && strlen(h) == 64, VEIL_ERR_FORMAT, "store: audit tail is corrupt");
    memcpy(t->hash, h, sizeof t->hash);
    return VEIL_RESULT_OK;
}

/* Appends after the locked tail t (and moves t, in the table and here). */
static VEIL_RESULT audit_insert(struct pg_conn *c, struct audit_tail *t, const char *record)
{
    char hash[VEIL_KBS_AUDIT_HASH_HEX_SIZE];
    VEIL_GUARD(veil_kbs_audit_hash(t->hash, (uint64_t)t->seq + 1, record, strlen(record), hash));
    struct pg_params p = {0};
    param_int(&p, t->seq + 1);
    param_text(&p, t->hash);
    param_text(&p, hash);
    param_text(&p, record);
    VEIL_DEFER(res_done) PGresult *res = NULL;
    VEIL_GUARD(query(c, ST_AUDIT_INSERT, &p, 0, &res));
    t->seq++;
    memcpy(t->hash, hash, sizeof t->hash);
    return VEIL_RESULT_OK;
}

/* Appends inside the caller's transaction. */
static VEIL_RESULT audit_add(struct pg_conn *c, const char *record)
{
    if (record == NULL)
        return VEIL_RESULT_OK;
    struct audit_tail t;
    VEIL_GUARD(audit_lock(c, &t));
    return audit_insert(c, &t, record);
}

/* Appends a batch in one transaction: one WAL flush for all of them. */
static VEIL_RESULT audit_batch_tx(struct pg_conn *c, void *arg)
{
    struct audit_tail t;
    VEIL_GUARD(audit_lock(c, &t));
    for (const struct kbs_audit_waiter *w = arg; w != NULL; w = w->next)
        VEIL_GUARD(audit_insert(c, &t, w->record));
    return VEIL_RESULT_OK;
}

static VEIL_RESULT audit_batch(void *store, const struct kbs_audit_waiter *batch)
{
    return run_op(store, TX_BLOCK, audit_batch_tx, (void *)(uintptr_t)batch);
}

static VEIL_RESULT pg_audit_append(struct kbs_store *base, const char *record)
{
    struct pg_store *s = impl(base);
    return kbs_group_commit_append(&s->audit_queue, record, audit_batch, s);
}

struct audit_read_args {
    uint64_t from, limit;
    json_t *arr;
};

static VEIL_RESULT audit_entry(const PGresult *res, int row, json_t *arr)
{
    int64_t seq = 0;
    VEIL_GUARD(get_i64(res, row, 0, &seq));
    json_t *e = json_pack("{s:I, s:s, s:s, s:s}", "seq", (json_int_t)seq, "prev", PQgetvalue(res, row, 1), "hash",
                          PQgetvalue(res, row, 2), "record", PQgetvalue(res, row, 3));
    VEIL_ENSURE(e != NULL && json_array_append_new(arr, e) == 0, VEIL_ERR_NOMEM, "out of memory");
    return VEIL_RESULT_OK;
}

static VEIL_RESULT audit_read_tx(struct pg_conn *c, void *arg)
{
    struct audit_read_args *a = arg;
    struct pg_params p = {0};
    param_int(&p, a->from > INT64_MAX ? INT64_MAX : (int64_t)a->from);
    param_int(&p, a->limit > INT64_MAX ? INT64_MAX : (int64_t)a->limit);
    VEIL_DEFER(res_done) PGresult *res = NULL;
    VEIL_GUARD(query(c, ST_AUDIT_READ, &p, 0, &res));
    for (int i = 0; i < PQntuples(res); i++)
        VEIL_GUARD(audit_entry(res, i, a->arr));
    return VEIL_RESULT_OK;
}

static VEIL_RESULT pg_audit_read(struct kbs_store *base, uint64_t from, uint64_t limit, json_t **out)
{
    struct audit_read_args a = {from, limit, json_array()};
    VEIL_ENSURE(a.arr != NULL, VEIL_ERR_NOMEM, "out of memory");
    struct veil_result r = run_op(impl(base), TX_ONE, audit_read_tx, &a);
    if (!veil_ok(r)) {
        json_decref(a.arr);
        return r;
    }
    *out = a.arr;
    return VEIL_RESULT_OK;
}

/* ---- sessions ------------------------------------------------------------------------------------------- */

struct session_args {
    const struct kbs_session *in;
    struct kbs_session *out;
    const char *id, *nonce, *claims, *tee_pubkey;
    int64_t now;
    int *flag;
};

static VEIL_RESULT session_create_tx(struct pg_conn *c, void *arg)
{
    struct session_args *a = arg;
    struct pg_params p = {0};
    param_text(&p, a->in->id);
    param_text(&p, a->in->tee);
    param_text(&p, a->in->nonce);
    param_int(&p, a->in->expires);
    param_int(&p, a->now);
    VEIL_DEFER(res_done) PGresult *res = NULL;
    return query(c, ST_SESSION_CREATE, &p, 0, &res);
}

static VEIL_RESULT pg_session_create(struct kbs_store *base, const struct kbs_session *sess, int64_t now)
{
    struct session_args a = {.in = sess, .now = now};
    return run_op(impl(base), TX_ONE, session_create_tx, &a);
}

static void copy_text(char *dst, size_t cap, const PGresult *res, int col)
{
    snprintf(dst, cap, "%s", PQgetvalue(res, 0, col));
}

static VEIL_RESULT session_get_tx(struct pg_conn *c, void *arg)
{
    struct session_args *a = arg;
    struct pg_params p = {0};
    param_text(&p, a->id);
    VEIL_DEFER(res_done) PGresult *res = NULL;
    VEIL_GUARD(query(c, ST_SESSION_GET, &p, 0, &res));
    *a->flag = PQntuples(res) == 1;
    if (!*a->flag)
        return VEIL_RESULT_OK;
    struct kbs_session *o = a->out;
    copy_text(o->id, sizeof o->id, res, 0);
    copy_text(o->tee, sizeof o->tee, res, 1);
    copy_text(o->nonce, sizeof o->nonce, res, 2);
    int64_t attested = 0;
    VEIL_GUARD(get_i64(res, 0, 3, &o->expires));
    VEIL_GUARD(get_i64(res, 0, 4, &attested));
    o->attested = attested != 0;
    o->claims = get_text(res, 0, 5);
    o->tee_pubkey = get_text(res, 0, 6);
    VEIL_ENSURE((o->claims != NULL || PQgetisnull(res, 0, 5)) && (o->tee_pubkey != NULL || PQgetisnull(res, 0, 6)),
                VEIL_ERR_NOMEM, "out of memory");
    return VEIL_RESULT_OK;
}

static VEIL_RESULT pg_session_get(struct kbs_store *base, const char *id, struct kbs_session *out, int *found)
{
    memset(out, 0, sizeof *out);
    struct session_args a = {.out = out, .id = id, .flag = found};
    return run_op(impl(base), TX_ONE, session_get_tx, &a);
}

static VEIL_RESULT session_attest_tx(struct pg_conn *c, void *arg)
{
    struct session_args *a = arg;
    struct pg_params p = {0};
    param_text(&p, a->claims);
    param_text(&p, a->tee_pubkey);
    param_text(&p, a->id);
    param_text(&p, a->nonce);
    param_int(&p, a->now);
    VEIL_DEFER(res_done) PGresult *res = NULL;
    VEIL_GUARD(query(c, ST_SESSION_ATTEST, &p, 0, &res));
    *a->flag = affected(res) == 1;
    return VEIL_RESULT_OK;
}

static VEIL_RESULT pg_session_attest(struct kbs_store *base, const char *id, const char *nonce, int64_t now,
                                     const char *claims, const char *tee_pubkey, int *done)
{
    struct session_args a = {.id = id, .nonce = nonce, .now = now, .claims = claims, .tee_pubkey = tee_pubkey,
                             .flag = done};
    *done = 0;
    return run_op(impl(base), TX_ONE, session_attest_tx, &a);
}

/* ---- models and keys ------------------------------------------------------------------------------------ */

struct key_args {
    const char *model_id, *policy, *audit;
    int64_t now;
    kbs_key_writer writer;
    void *ctx;
    uint32_t version;
    uint32_t *version_out;
    struct kbs_key_row *row;
    int *flag;
};

/* Seals the key with the writer, stores it and appends the writer's audit record. */
static VEIL_RESULT key_insert(struct pg_conn *c, const struct key_args *a, uint32_t version)
{
    VEIL_DEFER(veil_buf_cleanup) struct veil_buf sealed = {0};
    VEIL_DEFER(str_done) char *audit = NULL;
    VEIL_GUARD(a->writer(a->ctx, a->model_id, version, &sealed, &audit));
    struct pg_params p = {0};
    param_text(&p, a->model_id);
    param_int(&p, version);
    VEIL_GUARD(param_bytes(&p, sealed.data, sealed.size));
    param_int(&p, a->now);
    VEIL_DEFER(res_done) PGresult *res = NULL;
    VEIL_GUARD(query(c, ST_KEY_INSERT, &p, 0, &res));
    return audit_add(c, audit);
}

static VEIL_RESULT model_create_tx(struct pg_conn *c, void *arg)
{
    struct key_args *a = arg;
    struct pg_params p = {0};
    param_text(&p, a->model_id);
    param_text(&p, a->policy);
    param_int(&p, a->now);
    VEIL_DEFER(res_done) PGresult *res = NULL;
    VEIL_GUARD(query(c, ST_MODEL_INSERT, &p, 0, &res));
    *a->flag = affected(res) == 1; /* 0: the model exists (perhaps created by another replica just now) */
    return *a->flag ? key_insert(c, a, 1) : VEIL_RESULT_OK;
}

static VEIL_RESULT pg_model_create(struct kbs_store *base, const char *model_id, const char *policy, int64_t now,
                                   kbs_key_writer writer, void *ctx, int *created)
{
    struct key_args a = {.model_id = model_id, .policy = policy, .now = now, .writer = writer, .ctx = ctx,
                         .flag = created};
    *created = 0;
    return run_op(impl(base), TX_BLOCK, model_create_tx, &a);
}

/* Takes the next version number: the model's row stays locked until the commit, so rotations of one model (from
 * any replica) take turns. */
static VEIL_RESULT key_add_tx(struct pg_conn *c, void *arg)
{
    struct key_args *a = arg;
    struct pg_params p = {0};
    param_text(&p, a->model_id);
    VEIL_DEFER(res_done) PGresult *res = NULL;
    VEIL_GUARD(query(c, ST_NEXT_VERSION, &p, 0, &res));
    *a->flag = PQntuples(res) == 1;
    if (!*a->flag)
        return VEIL_RESULT_OK;
    int64_t v = 0;
    VEIL_GUARD(get_i64(res, 0, 0, &v));
    VEIL_ENSURE(v >= 1 && v <= (int64_t)UINT32_MAX, VEIL_ERR_LIMIT, "store: no key version left");
    *a->version_out = (uint32_t)v;
    return key_insert(c, a, (uint32_t)v);
}

static VEIL_RESULT pg_key_add(struct kbs_store *base, const char *model_id, int64_t now, kbs_key_writer writer,
                              void *ctx, uint32_t *version, int *found)
{
    struct key_args a = {.model_id = model_id, .now = now, .writer = writer, .ctx = ctx, .version_out = version,
                         .flag = found};
    *found = 0;
    return run_op(impl(base), TX_BLOCK, key_add_tx, &a);
}

/* Binary result: version int8, revoked int4, sealed bytea, policy text. */
static VEIL_RESULT key_row_read(const PGresult *res, struct kbs_key_row *out)
{
    int64_t version = 0, revoked = 0;
    VEIL_GUARD(get_be(res, 0, 0, 8, &version));
    VEIL_GUARD(get_be(res, 0, 1, 4, &revoked));
    VEIL_ENSURE(version >= 1 && version <= (int64_t)UINT32_MAX && !PQgetisnull(res, 0, 2) && !PQgetisnull(res, 0, 3),
                VEIL_ERR_FORMAT, "store: a key row is malformed");
    out->version = (uint32_t)version;
    out->revoked = revoked != 0;
    VEIL_GUARD(veil_buf_append(&out->sealed, PQgetvalue(res, 0, 2), (size_t)PQgetlength(res, 0, 2)));
    out->policy = strndup(PQgetvalue(res, 0, 3), (size_t)PQgetlength(res, 0, 3));
    VEIL_ENSURE(out->policy != NULL, VEIL_ERR_NOMEM, "out of memory");
    return VEIL_RESULT_OK;
}

static VEIL_RESULT key_get_tx(struct pg_conn *c, void *arg)
{
    struct key_args *a = arg;
    struct pg_params p = {0};
    param_text(&p, a->model_id);
    if (a->version != 0)
        param_int(&p, a->version);
    VEIL_DEFER(res_done) PGresult *res = NULL;
    VEIL_GUARD(query(c, a->version != 0 ? ST_KEY_GET : ST_KEY_GET_LATEST, &p, 1, &res));
    *a->flag = PQntuples(res) == 1;
    return *a->flag ? key_row_read(res, a->row) : VEIL_RESULT_OK;
}

static VEIL_RESULT pg_key_get(struct kbs_store *base, const char *model_id, uint32_t version,
                              struct kbs_key_row *out, int *found)
{
    struct key_args a = {.model_id = model_id, .version = version, .row = out, .flag = found};
    *found = 0;
    return run_op(impl(base), TX_ONE, key_get_tx, &a);
}

/* An UPDATE of one row (key_revoke, policy_set) and, when it matched, its audit record. */
struct update_args {
    enum stmt id;
    const char *a, *b;
    int64_t n;
    const char *audit;
    int *found;
};

static VEIL_RESULT update_audited_tx(struct pg_conn *c, void *arg)
{
    struct update_args *u = arg;
    struct pg_params p = {0};
    param_text(&p, u->a);
    if (u->b != NULL)
        param_text(&p, u->b);
    else
        param_int(&p, u->n);
    VEIL_DEFER(res_done) PGresult *res = NULL;
    VEIL_GUARD(query(c, u->id, &p, 0, &res));
    *u->found = affected(res) == 1;
    return *u->found ? audit_add(c, u->audit) : VEIL_RESULT_OK;
}

static VEIL_RESULT pg_key_revoke(struct kbs_store *base, const char *model_id, uint32_t version, const char *audit,
                                 int *found)
{
    struct update_args u = {ST_KEY_REVOKE, model_id, NULL, version, audit, found};
    *found = 0;
    return run_op(impl(base), TX_BLOCK, update_audited_tx, &u);
}

static VEIL_RESULT pg_policy_set(struct kbs_store *base, const char *model_id, const char *policy, const char *audit,
                                 int *found)
{
    struct update_args u = {ST_POLICY_SET, model_id, policy, 0, audit, found};
    *found = 0;
    return run_op(impl(base), TX_BLOCK, update_audited_tx, &u);
}

/* ---- usage policies ------------------------------------------------------------------------------------- */

struct usage_args {
    const char *model_id, *usage, *audit;
    char **out;
    int *found;
};

static VEIL_RESULT usage_set_tx(struct pg_conn *c, void *arg)
{
    struct usage_args *a = arg;
    struct pg_params p = {0};
    param_text(&p, a->model_id);
    VEIL_DEFER(res_done) PGresult *exists = NULL;
    VEIL_GUARD(query(c, ST_MODEL_EXISTS, &p, 0, &exists));
    *a->found = PQntuples(exists) == 1;
    if (!*a->found)
        return VEIL_RESULT_OK;
    if (a->usage != NULL)
        param_text(&p, a->usage);
    VEIL_DEFER(res_done) PGresult *res = NULL;
    VEIL_GUARD(query(c, a->usage != NULL ? ST_USAGE_PUT : ST_USAGE_DELETE, &p, 0, &res));
    return audit_add(c, a->audit);
}

static VEIL_RESULT pg_usage_set(struct kbs_store *base, const char *model_id, const char *usage, const char *audit,
                                int *found)
{
    struct usage_args a = {.model_id = model_id, .usage = usage, .audit = audit, .found = found};
    *found = 0;
    return run_op(impl(base), TX_BLOCK, usage_set_tx, &a);
}

static VEIL_RESULT usage_get_tx(struct pg_conn *c, void *arg)
{
    struct usage_args *a = arg;
    struct pg_params p = {0};
    param_text(&p, a->model_id);
    VEIL_DEFER(res_done) PGresult *res = NULL;
    VEIL_GUARD(query(c, ST_USAGE_GET, &p, 0, &res));
    *a->found = PQntuples(res) == 1;
    if (!*a->found || PQgetisnull(res, 0, 0))
        return VEIL_RESULT_OK;
    *a->out = get_text(res, 0, 0);
    VEIL_ENSURE(*a->out != NULL, VEIL_ERR_NOMEM, "out of memory");
    return VEIL_RESULT_OK;
}

static VEIL_RESULT pg_usage_get(struct kbs_store *base, const char *model_id, char **usage, int *found)
{
    struct usage_args a = {.model_id = model_id, .out = usage, .found = found};
    *usage = NULL;
    *found = 0;
    return run_op(impl(base), TX_ONE, usage_get_tx, &a);
}

/* ---- usage counters -------------------------------------------------------------------------------------- */

struct counter_args {
    const char *model_id;
    const json_t *deltas;
    json_t *totals;
    int *found;
};

static VEIL_RESULT counters_read(struct pg_conn *c, const char *model_id, json_t *totals)
{
    struct pg_params p = {0};
    param_text(&p, model_id);
    VEIL_DEFER(res_done) PGresult *res = NULL;
    VEIL_GUARD(query(c, ST_COUNTERS_GET, &p, 0, &res));
    for (int row = 0; row < PQntuples(res); row++) {
        int64_t used = 0;
        VEIL_GUARD(get_i64(res, row, 1, &used));
        VEIL_ENSURE(json_object_set_new(totals, PQgetvalue(res, row, 0), json_integer(used)) == 0, VEIL_ERR_NOMEM,
                    "out of memory");
    }
    return VEIL_RESULT_OK;
}

/* The model row is held FOR SHARE (ST_MODEL_EXISTS); concurrent reports on one counter serialise on its row. */
static VEIL_RESULT usage_count_tx(struct pg_conn *c, void *arg)
{
    struct counter_args *a = arg;
    struct pg_params p = {0};
    param_text(&p, a->model_id);
    VEIL_DEFER(res_done) PGresult *exists = NULL;
    VEIL_GUARD(query(c, ST_MODEL_EXISTS, &p, 0, &exists));
    *a->found = PQntuples(exists) == 1;
    if (!*a->found)
        return VEIL_RESULT_OK;
    const char *client;
    const json_t *n;
    json_object_foreach((json_t *)(uintptr_t)a->deltas, client, n) {
        struct pg_params q = {0};
        param_text(&q, a->model_id);
        param_text(&q, client);
        param_int(&q, json_integer_value(n));
        param_int(&q, KBS_USAGE_COUNT_MAX);
        VEIL_DEFER(res_done) PGresult *res = NULL;
        VEIL_GUARD(query(c, ST_COUNTER_ADD, &q, 0, &res));
    }
    return counters_read(c, a->model_id, a->totals);
}

static VEIL_RESULT pg_usage_count(struct kbs_store *base, const char *model_id, const json_t *deltas, json_t *totals,
                                  int *found)
{
    struct counter_args a = {.model_id = model_id, .deltas = deltas, .totals = totals, .found = found};
    *found = 0;
    return run_op(impl(base), TX_BLOCK, usage_count_tx, &a);
}

/* ---- model reads: one joined query, rows ordered by model then version ----------------------------------- */

struct models_args {
    const char *model_id; /* NULL: every model, without policies */
    json_t *arr;
};

/* {"model_id", "created", "versions": [], and "policy" when the row carries one}, appended to arr. */
static VEIL_RESULT model_begin(const PGresult *res, int row, json_t *arr, json_t **out)
{
    int64_t created = 0;
    VEIL_GUARD(get_i64(res, row, 2, &created));
    json_t *m = json_pack("{s:s, s:I, s:[]}", "model_id", PQgetvalue(res, row, 0), "created", (json_int_t)created,
                          "versions");
    VEIL_ENSURE(m != NULL && json_array_append_new(arr, m) == 0, VEIL_ERR_NOMEM, "out of memory");
    *out = m;
    if (PQgetisnull(res, row, 1))
        return VEIL_RESULT_OK;
    json_t *p = json_loads(PQgetvalue(res, row, 1), 0, NULL);
    VEIL_ENSURE(p != NULL, VEIL_ERR_FORMAT, "store: a stored policy is not JSON");
    return veil_json_set(m, "policy", p);
}

static VEIL_RESULT version_add(const PGresult *res, int row, json_t *model)
{
    if (PQgetisnull(res, row, 3))
        return VEIL_RESULT_OK; /* a model without key rows (LEFT JOIN) */
    int64_t version = 0, revoked = 0, created = 0;
    VEIL_GUARD(get_i64(res, row, 3, &version));
    VEIL_GUARD(get_i64(res, row, 4, &revoked));
    VEIL_GUARD(get_i64(res, row, 5, &created));
    json_t *v = json_pack("{s:I, s:b, s:I}", "version", (json_int_t)version, "revoked", revoked != 0, "created",
                          (json_int_t)created);
    VEIL_ENSURE(v != NULL && json_array_append_new(json_object_get(model, "versions"), v) == 0, VEIL_ERR_NOMEM,
                "out of memory");
    return VEIL_RESULT_OK;
}

static VEIL_RESULT models_tx(struct pg_conn *c, void *arg)
{
    struct models_args *a = arg;
    struct pg_params p = {0};
    if (a->model_id != NULL)
        param_text(&p, a->model_id);
    VEIL_DEFER(res_done) PGresult *res = NULL;
    VEIL_GUARD(query(c, a->model_id != NULL ? ST_MODEL_GET : ST_MODEL_LIST, &p, 0, &res));
    json_t *model = NULL;
    for (int i = 0; i < PQntuples(res); i++) {
        const char *id = PQgetvalue(res, i, 0);
        if (model == NULL || strcmp(json_string_value(json_object_get(model, "model_id")), id) != 0)
            VEIL_GUARD(model_begin(res, i, a->arr, &model));
        VEIL_GUARD(version_add(res, i, model));
    }
    return VEIL_RESULT_OK;
}

static VEIL_RESULT models_read(struct kbs_store *base, const char *model_id, json_t **out)
{
    struct models_args a = {model_id, json_array()};
    VEIL_ENSURE(a.arr != NULL, VEIL_ERR_NOMEM, "out of memory");
    struct veil_result r = run_op(impl(base), TX_ONE, models_tx, &a);
    if (!veil_ok(r)) {
        json_decref(a.arr);
        return r;
    }
    *out = a.arr;
    return VEIL_RESULT_OK;
}

static VEIL_RESULT pg_model_list(struct kbs_store *base, json_t **out)
{
    return models_read(base, NULL, out);
}

static VEIL_RESULT pg_model_get(struct kbs_store *base, const char *model_id, json_t **out)
{
    json_t *arr = NULL;
    VEIL_GUARD(models_read(base, model_id, &arr));
    json_t *m = json_array_get(arr, 0);
    *out = m != NULL ? json_incref(m) : NULL;
    json_decref(arr);
    return VEIL_RESULT_OK;
}

/* ---- open / close --------------------------------------------------------------------------------------- */

static void secret_free(char **s)
{
    if (*s != NULL)
        veil_wipe(*s, strlen(*s));
    free(*s);
    *s = NULL;
}

static void pg_close(struct kbs_store *base)
{
    if (base == NULL)
        return;
    struct pg_store *s = impl(base);
    for (unsigned i = 0; s->conns != NULL && i < s->count; i++)
        PQfinish(s->conns[i].db);
    free(s->conns);
    free(s->idle);
    secret_free(&s->conninfo);
    secret_free(&s->password);
    pthread_cond_destroy(&s->cond);
    pthread_mutex_destroy(&s->lock);
    kbs_group_commit_destroy(&s->audit_queue);
    free(s);
}

static const struct kbs_store_ops pg_ops = {
    .close = pg_close,
    .session_create = pg_session_create,
    .session_get = pg_session_get,
    .session_attest = pg_session_attest,
    .model_create = pg_model_create,
    .key_add = pg_key_add,
    .key_get = pg_key_get,
    .key_revoke = pg_key_revoke,
    .policy_set = pg_policy_set,
    .usage_set = pg_usage_set,
    .usage_get = pg_usage_get,
    .usage_count = pg_usage_count,
    .model_get = pg_model_get,
    .model_list = pg_model_list,
    .audit_append = pg_audit_append,
    .audit_read = pg_audit_read,
};

/* Checks the conninfo's syntax and keeps its password aside, to mask it in messages. libpq's own parse error may
 * quote a piece of the conninfo, so it is not repeated. */
static VEIL_RESULT conninfo_check(struct pg_store *s)
{
    char *err = NULL;
    PQconninfoOption *opts = PQconninfoParse(s->conninfo, &err);
    PQfreemem(err);
    VEIL_ENSURE(opts != NULL, VEIL_ERR_ARG,
                "store: pg_conninfo is not a libpq connection string ('key=value ...' or 'postgresql://...')");
    for (PQconninfoOption *o = opts; o->keyword != NULL; o++)
        if (strcmp(o->keyword, "password") == 0 && o->val != NULL && o->val[0] != '\0')
            s->password = strdup(o->val);
    PQconninfoFree(opts);
    return VEIL_RESULT_OK;
}

static VEIL_RESULT pool_init(struct pg_store *s, unsigned pool_size)
{
    s->conns = calloc(pool_size, sizeof *s->conns);
    s->idle = calloc(pool_size, sizeof *s->idle);
    VEIL_ENSURE(s->conns != NULL && s->idle != NULL, VEIL_ERR_NOMEM, "out of memory");
    s->count = pool_size;
    for (unsigned i = 0; i < pool_size; i++) {
        s->conns[i].owner = s;
        s->idle[s->idle_count++] = pool_size - 1 - i;
    }
    return VEIL_RESULT_OK;
}

/* Connects the whole pool, creating the schema first (under an advisory lock: replicas may start together). */
static VEIL_RESULT pool_connect(struct pg_store *s)
{
    struct pg_conn *first = &s->conns[0];
    conn_connect(s, first);
    VEIL_ENSURE(first->db != NULL, VEIL_ERR_NOMEM, "out of memory");
    if (PQstatus(first->db) != CONNECTION_OK)
        return pg_fail(first, NULL, "cannot connect");
    VEIL_GUARD(command(first, schema, "create schema"));
    for (unsigned i = 0; i < s->count; i++)
        VEIL_GUARD(conn_ready(&s->conns[i]));
    return VEIL_RESULT_OK;
}

VEIL_RESULT kbs_store_pg_open(const char *conninfo, unsigned pool_size, struct kbs_store **out)
{
    VEIL_ENSURE(pool_size >= 1 && pool_size <= PG_MAX_POOL, VEIL_ERR_ARG, "store: pool size must be 1..%u",
                PG_MAX_POOL);
    VEIL_ENSURE(PQisthreadsafe() == 1, VEIL_ERR_UNSUPPORTED, "store: libpq is not thread-safe");
    struct pg_store *s = calloc(1, sizeof *s);
    VEIL_ENSURE(s != NULL, VEIL_ERR_NOMEM, "out of memory");
    s->base.ops = &pg_ops;
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->cond, NULL);
    kbs_group_commit_init(&s->audit_queue);
    s->conninfo = strdup(conninfo);
    struct veil_result r = s->conninfo != NULL ? conninfo_check(s)
                                               : veil_error_raise(VEIL_ERR_NOMEM, __FILE__, __LINE__, "out of memory");
    if (veil_ok(r))
        r = pool_init(s, pool_size);
    if (veil_ok(r))
        r = pool_connect(s);
    if (!veil_ok(r)) {
        pg_close(&s->base);
        return r;
    }
    *out = &s->base;
    return VEIL_RESULT_OK;
}
