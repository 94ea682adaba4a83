/* SPDX-License-Identifier: Apache-2.0 */
/* The SQLite store: one file, WAL journal, synchronous=FULL (a commit is on disk before the broker answers) for
 * models, keys, policies and the audit log. Session rows (a challenge, then its attested mark) are committed with
 * synchronous=NORMAL: they survive a crash of the broker (the WAL is in the kernel's page cache), and only a power
 * loss or OS crash can lose the last of them, which forces the client to start over; the next FULL commit (the
 * release's audit record, at the latest) makes them durable too, in order. That saves two of the three fsyncs
 * of a key release. A lost attested mark could let the same attestation body be replayed once more, for a token
 * bound to the same TEE key, which only that TEE can use.
 * One connection serialised by a mutex: every operation is one transaction. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "core/json.h"
#include "kbs/kbs.h"
#include "group_commit.h"
#include "store.h"

enum sync_level { SYNC_FULL, SYNC_NORMAL };

/* Every statement this file runs is a string literal: each is compiled once per connection, on first use, and
 * kept (looked up by the literal's address). */
#define STMT_CACHE_SIZE 32u

struct stmt_slot {
    const char *sql;
    sqlite3_stmt *st;
};

struct sqlite_store {
    struct kbs_store base;
    sqlite3 *db;
    pthread_mutex_t lock;
    enum sync_level sync; /* the connection's current PRAGMA synchronous */
    struct stmt_slot cache[STMT_CACHE_SIZE];
    struct kbs_group_commit audit_queue; /* group commit of audit appends (group_commit.h) */
};

static const char schema[] =
    "CREATE TABLE IF NOT EXISTS models(model_id TEXT PRIMARY KEY, policy TEXT NOT NULL, created INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS keys(model_id TEXT NOT NULL REFERENCES models(model_id), version INTEGER NOT NULL,"
    " revoked INTEGER NOT NULL DEFAULT 0, sealed BLOB NOT NULL, created INTEGER NOT NULL,"
    " PRIMARY KEY(model_id, version));"
    "CREATE TABLE IF NOT EXISTS sessions(id TEXT PRIMARY KEY, tee TEXT NOT NULL, nonce TEXT NOT NULL,"
    " expires INTEGER NOT NULL, attested INTEGER NOT NULL DEFAULT 0, claims TEXT, tee_pubkey TEXT);"
    "CREATE INDEX IF NOT EXISTS sessions_expires ON sessions(expires);"
    "CREATE TABLE IF NOT EXISTS usage(model_id TEXT PRIMARY KEY REFERENCES models(model_id),"
    " policy TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS usage_counters(model_id TEXT NOT NULL REFERENCES models(model_id),"
    " client TEXT NOT NULL, used INTEGER NOT NULL, PRIMARY KEY(model_id, client));"
    "CREATE TABLE IF NOT EXISTS audit(seq INTEGER PRIMARY KEY, prev TEXT NOT NULL, hash TEXT NOT NULL,"
    " record TEXT NOT NULL);"
    "CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit"
    " BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;"
    "CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit"
    " BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;";

void kbs_session_cleanup(struct kbs_session *s)
{
    free(s->claims);
    free(s->tee_pubkey);
    s->claims = s->tee_pubkey = NULL;
}

void kbs_key_row_cleanup(struct kbs_key_row *r)
{
    veil_buf_cleanup(&r->sealed);
    free(r->policy);
    r->policy = NULL;
}

static struct sqlite_store *impl(struct kbs_store *s)
{
    return (struct sqlite_store *)(void *)s;
}

/* ---- statement helpers ---------------------------------------------------------------------------------- */

/* Gives a cached statement back: reset, parameters unbound. */
static void stmt_done(sqlite3_stmt **st)
{
    if (*st != NULL) {
        sqlite3_reset(*st);
        sqlite3_clear_bindings(*st);
    }
    *st = NULL;
}

static VEIL_RESULT db_fail(sqlite3 *db, const char *what)
{
    VEIL_BAIL(VEIL_ERR_IO, "store: %s: %s", what, sqlite3_errmsg(db));
}

/* The compiled statement for sql (a string literal), from the cache or compiled now; give it back with
 * stmt_done. Called with the store locked. */
static VEIL_RESULT prepare(struct sqlite_store *s, const char *sql, sqlite3_stmt **out)
{
    size_t i = 0;
    while (i < STMT_CACHE_SIZE && s->cache[i].sql != NULL && s->cache[i].sql != sql)
        i++;
    VEIL_ENSURE(i < STMT_CACHE_SIZE, VEIL_ERR_INTERNAL, "store: statement cache is full");
    if (s->cache[i].sql == NULL) {
        if (sqlite3_prepare_v3(s->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &s->cache[i].st, NULL) != SQLITE_OK)
            return db_fail(s->db, "prepare");
        s->cache[i].sql = sql;
    }
    *out = s->cache[i].st;
    return VEIL_RESULT_OK;
}

static VEIL_RESULT exec(sqlite3 *db, const char *sql)
{
    if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK)
        return db_fail(db, sql);
    return VEIL_RESULT_OK;
}

/* Runs a statement that returns no rows. */
static VEIL_RESULT step_done(sqlite3 *db, sqlite3_stmt *st)
{
    if (sqlite3_step(st) != SQLITE_DONE)
        return db_fail(db, "step");
    return VEIL_RESULT_OK;
}

static char *column_text(sqlite3_stmt *st, int i)
{
    const unsigned char *t = sqlite3_column_text(st, i);
    return t != NULL ? strdup((const char *)t) : NULL;
}

/* Runs a cached statement that returns no rows (BEGIN, COMMIT, PRAGMA ...). */
static VEIL_RESULT run(struct sqlite_store *s, const char *sql)
{
    VEIL_DEFER(stmt_done) sqlite3_stmt *st = NULL;
    VEIL_GUARD(prepare(s, sql, &st));
    return step_done(s->db, st);
}

/* ---- transactions --------------------------------------------------------------------------------------- */

static void lock(struct sqlite_store *s)
{
    pthread_mutex_lock(&s->lock);
}

static void unlock(struct sqlite_store *s)
{
    pthread_mutex_unlock(&s->lock);
}

/* Commits when r is OK, else rolls back; returns r (or the commit failure). Releases the lock. */
static VEIL_RESULT finish(struct sqlite_store *s, struct veil_result r)
{
    if (veil_ok(r))
        r = run(s, "COMMIT");
    if (!veil_ok(r) && !sqlite3_get_autocommit(s->db))
        (void)sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    unlock(s);
    return r;
}

/* Locks, sets the commit's durability (see the top of this file) and begins a write transaction. */
static VEIL_RESULT begin_sync(struct sqlite_store *s, enum sync_level sync)
{
    lock(s);
    struct veil_result r = VEIL_RESULT_OK;
    if (s->sync != sync) {
        r = run(s, sync == SYNC_FULL ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL");
        if (veil_ok(r))
            s->sync = sync;
    }
    if (veil_ok(r))
        r = run(s, "BEGIN IMMEDIATE");
    if (!veil_ok(r))
        unlock(s);
    return r;
}

static VEIL_RESULT begin(struct sqlite_store *s)
{
    return begin_sync(s, SYNC_FULL);
}

/* ---- audit chain ---------------------------------------------------------------------------------------- */

static VEIL_RESULT audit_tail(struct sqlite_store *s, uint64_t *seq, char prev[VEIL_KBS_AUDIT_HASH_HEX_SIZE])
{
    VEIL_DEFER(stmt_done) sqlite3_stmt *st = NULL;
    VEIL_GUARD(prepare(s, "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1", &st));
    int rc = sqlite3_step(st);
    if (rc == SQLITE_DONE) {
        *seq = 0;
        memcpy(prev, VEIL_KBS_AUDIT_GENESIS, sizeof VEIL_KBS_AUDIT_GENESIS);
        return VEIL_RESULT_OK;
    }
    VEIL_ENSURE(rc == SQLITE_ROW, VEIL_ERR_IO, "store: audit tail: %s", sqlite3_errmsg(s->db));
    const unsigned char *h = sqlite3_column_text(st, 1);
    VEIL_ENSURE(h != NULL && strlen((const char *)h) == 64, VEIL_ERR_FORMAT, "store: audit tail is corrupt");
    *seq = (uint64_t)sqlite3_column_int64(st, 0);
    memcpy(prev, h, 65);
    return VEIL_RESULT_OK;
}

/* Appends inside the caller's transaction. */
static VEIL_RESULT audit_add(struct sqlite_store *s, const char *record)
{
    if (record == NULL)
        return VEIL_RESULT_OK;
    uint64_t seq = 0;
    char prev[VEIL_KBS_AUDIT_HASH_HEX_SIZE], hash[VEIL_KBS_AUDIT_HASH_HEX_SIZE];
    VEIL_GUARD(audit_tail(s, &seq, prev));
    seq++;
    VEIL_GUARD(veil_kbs_audit_hash(prev, seq, record, strlen(record), hash));
    VEIL_DEFER(stmt_done) sqlite3_stmt *st = NULL;
    VEIL_GUARD(prepare(s, "INSERT INTO audit(seq, prev, hash, record) VALUES(?,?,?,?)", &st));
    sqlite3_bind_int64(st, 1, (sqlite3_int64)seq);
    sqlite3_bind_text(st, 2, prev, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, hash, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, record, -1, SQLITE_STATIC);
    return step_done(s->db, st);
}

/* Appends a batch in one transaction: one fsync for all of them. */
static VEIL_RESULT audit_batch(void *store, const struct kbs_audit_waiter *batch)
{
    struct sqlite_store *s = store;
    VEIL_GUARD(begin(s));
    struct veil_result r = VEIL_RESULT_OK;
    for (const struct kbs_audit_waiter *w = batch; w != NULL && veil_ok(r); w = w->next)
        r = audit_add(s, w->record);
    return finish(s, r);
}

static VEIL_RESULT sq_audit_append(struct kbs_store *base, const char *record)
{
    struct sqlite_store *s = impl(base);
    return kbs_group_commit_append(&s->audit_queue, record, audit_batch, s);
}

static VEIL_RESULT audit_entry(sqlite3_stmt *st, json_t *arr)
{
    json_t *e = json_pack("{s:I, s:s, s:s, s:s}", "seq", (json_int_t)sqlite3_column_int64(st, 0), "prev",
                          (const char *)sqlite3_column_text(st, 1), "hash", (const char *)sqlite3_column_text(st, 2),
                          "record", (const char *)sqlite3_column_text(st, 3));
    VEIL_ENSURE(e != NULL && json_array_append_new(arr, e) == 0, VEIL_ERR_NOMEM, "out of memory");
    return VEIL_RESULT_OK;
}

static VEIL_RESULT audit_rows(struct sqlite_store *s, uint64_t from, uint64_t limit, json_t *arr)
{
    VEIL_DEFER(stmt_done) sqlite3_stmt *st = NULL;
    VEIL_GUARD(prepare(s, "SELECT seq, prev, hash, record FROM audit WHERE seq >= ? ORDER BY seq LIMIT ?", &st));
    sqlite3_bind_int64(st, 1, (sqlite3_int64)from);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)limit);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        VEIL_GUARD(audit_entry(st, arr));
    VEIL_ENSURE(rc == SQLITE_DONE, VEIL_ERR_IO, "store: audit read: %s", sqlite3_errmsg(s->db));
    return VEIL_RESULT_OK;
}

static VEIL_RESULT sq_audit_read(struct kbs_store *base, uint64_t from, uint64_t limit, json_t **out)
{
    struct sqlite_store *s = impl(base);
    json_t *arr = json_array();
    VEIL_ENSURE(arr != NULL, VEIL_ERR_NOMEM, "out of memory");
    lock(s);
    struct veil_result r = audit_rows(s, from, limit, arr);
    unlock(s);
    if (!veil_ok(r)) {
        json_decref(arr);
        return r;
    }
    *out = arr;
    return VEIL_RESULT_OK;
}

/* ---- sessions ------------------------------------------------------------------------------------------- */

static VEIL_RESULT session_insert(struct sqlite_store *s, const struct kbs_session *sess, int64_t now)
{
    VEIL_DEFER(stmt_done) sqlite3_stmt *purge = NULL;
    VEIL_GUARD(prepare(s, "DELETE FROM sessions WHERE expires < ?", &purge));
    sqlite3_bind_int64(purge, 1, now);
    VEIL_GUARD(step_done(s->db, purge));
    VEIL_DEFER(stmt_done) sqlite3_stmt *st = NULL;
    VEIL_GUARD(prepare(s, "INSERT INTO sessions(id, tee, nonce, expires) VALUES(?,?,?,?)", &st));
    sqlite3_bind_text(st, 1, sess->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, sess->tee, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, sess->nonce, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, sess->expires);
    return step_done(s->db, st);
}

static VEIL_RESULT sq_session_create(struct kbs_store *base, const struct kbs_session *sess, int64_t now)
{
    struct sqlite_store *s = impl(base);
    VEIL_GUARD(begin_sync(s, SYNC_NORMAL));
    return finish(s, session_insert(s, sess, now));
}

static void copy_text(char *dst, size_t cap, const unsigned char *src)
{
    snprintf(dst, cap, "%s", src != NULL ? (const char *)src : "");
}

static VEIL_RESULT session_row(struct sqlite_store *s, const char *id, struct kbs_session *out, int *found)
{
    VEIL_DEFER(stmt_done) sqlite3_stmt *st = NULL;
    VEIL_GUARD(prepare(s, "SELECT id, tee, nonce, expires, attested, claims, tee_pubkey FROM sessions WHERE id = ?",
                       &st));
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    *found = rc == SQLITE_ROW;
    if (rc == SQLITE_DONE)
        return VEIL_RESULT_OK;
    VEIL_ENSURE(rc == SQLITE_ROW, VEIL_ERR_IO, "store: session read: %s", sqlite3_errmsg(s->db));
    copy_text(out->id, sizeof out->id, sqlite3_column_text(st, 0));
    copy_text(out->tee, sizeof out->tee, sqlite3_column_text(st, 1));
    copy_text(out->nonce, sizeof out->nonce, sqlite3_column_text(st, 2));
    out->expires = sqlite3_column_int64(st, 3);
    out->attested = sqlite3_column_int(st, 4) != 0;
    out->claims = column_text(st, 5);
    out->tee_pubkey = column_text(st, 6);
    return VEIL_RESULT_OK;
}

static VEIL_RESULT sq_session_get(struct kbs_store *base, const char *id, struct kbs_session *out, int *found)
{
    struct sqlite_store *s = impl(base);
    memset(out, 0, sizeof *out);
    lock(s);
    struct veil_result r = session_row(s, id, out, found);
    unlock(s);
    return r;
}

static VEIL_RESULT session_mark(struct sqlite_store *s, const char *id, const char *nonce, int64_t now, const char *claims,
                                const char *tee_pubkey, int *done)
{
    VEIL_DEFER(stmt_done) sqlite3_stmt *st = NULL;
    VEIL_GUARD(prepare(s,
                       "UPDATE sessions SET attested = 1, claims = ?, tee_pubkey = ? "
                       "WHERE id = ? AND nonce = ? AND attested = 0 AND expires >= ?",
                       &st));
    sqlite3_bind_text(st, 1, claims, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, tee_pubkey, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, nonce, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, now);
    VEIL_GUARD(step_done(s->db, st));
    *done = sqlite3_changes(s->db) == 1;
    return VEIL_RESULT_OK;
}

static VEIL_RESULT sq_session_attest(struct kbs_store *base, const char *id, const char *nonce, int64_t now,
                                     const char *claims, const char *tee_pubkey, int *done)
{
    struct sqlite_store *s = impl(base);
    VEIL_GUARD(begin_sync(s, SYNC_NORMAL));
    return finish(s, session_mark(s, id, nonce, now, claims, tee_pubkey, done));
}

/* ---- models and keys ------------------------------------------------------------------------------------ */

static VEIL_RESULT model_exists(struct sqlite_store *s, const char *model_id, int *found)
{
    VEIL_DEFER(stmt_done) sqlite3_stmt *st = NULL;
    VEIL_GUARD(prepare(s, "SELECT 1 FROM models WHERE model_id = ?", &st));
    sqlite3_bind_text(st, 1, model_id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    VEIL_ENSURE(rc == SQLITE_ROW || rc == SQLITE_DONE, VEIL_ERR_IO, "store: %s", sqlite3_errmsg(s->db));
    *found = rc == SQLITE_ROW;
    return VEIL_RESULT_OK;
}

static VEIL_RESULT key_insert(struct sqlite_store *s, const char *model_id, uint32_t version, int64_t now,
                              kbs_key_writer writer, void *ctx)
{
    VEIL_DEFER(veil_buf_cleanup) struct veil_buf sealed = {0};
    char *audit = NULL;
    VEIL_GUARD(writer(ctx, model_id, version, &sealed, &audit));
    VEIL_DEFER(stmt_done) sqlite3_stmt *st = NULL;
    struct veil_result r =
        prepare(s, "INSERT INTO keys(model_id, version, sealed, created) VALUES(?,?,?,?)", &st);
    if (veil_ok(r)) {
        sqlite3_bind_text(st, 1, model_id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, version);
        sqlite3_bind_blob(st, 3, sealed.data, (int)sealed.size, SQLITE_STATIC);
        sqlite3_bind_int64(st, 4, now);
        r = step_done(s->db, st);
    }
    if (veil_ok(r))
        r = audit_add(s, audit);
    free(audit);
    return r;
}

static VEIL_RESULT model_insert(struct sqlite_store *s, const char *model_id, const char *policy, int64_t now,
                                kbs_key_writer writer, void *ctx, int *created)
{
    int found = 0;
    VEIL_GUARD(model_exists(s, model_id, &found));
    *created = !found;
    if (found)
        return VEIL_RESULT_OK;
    VEIL_DEFER(stmt_done) sqlite3_stmt *st = NULL;
    VEIL_GUARD(prepare(s, "INSERT INTO models(model_id, policy, created) VALUES(?,?,?)", &st));
    sqlite3_bind_text(st, 1, model_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, policy, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, now);
    VEIL_GUARD(step_done(s->db, st));
    return key_insert(s, model_id, 1, now, writer, ctx);
}

static VEIL_RESULT sq_model_create(struct kbs_store *base, const char *model_id, const char *policy, int64_t now,
                                   kbs_key_writer writer, void *ctx, int *created)
{
    struct sqlite_store *s = impl(base);
    VEIL_GUARD(begin(s));
    return finish(s, model_insert(s, model_id, policy, now, writer, ctx, created));
}

static VEIL_RESULT next_version(struct sqlite_store *s, const char *model_id, uint32_t *version)
{
    VEIL_DEFER(stmt_done) sqlite3_stmt *st = NULL;
    VEIL_GUARD(prepare(s, "SELECT COALESCE(MAX(version), 0) FROM keys WHERE model_id = ?", &st));
    sqlite3_bind_text(st, 1, model_id, -1, SQLITE_STATIC);
    VEIL_ENSURE(sqlite3_step(st) == SQLITE_ROW, VEIL_ERR_IO, "store: %s", sqlite3_errmsg(s->db));
    sqlite3_int64 v = sqlite3_column_int64(st, 0);
    VEIL_ENSURE(v >= 0 && v < (sqlite3_int64)UINT32_MAX, VEIL_ERR_LIMIT, "store: no key version left");
    *version = (uint32_t)(v + 1);
    return VEIL_RESULT_OK;
}

static VEIL_RESULT key_append(struct sqlite_store *s, const char *model_id, int64_t now, kbs_key_writer writer, void *ctx,
                              uint32_t *version, int *found)
{
    VEIL_GUARD(model_exists(s, model_id, found));
    if (!*found)
        return VEIL_RESULT_OK;
    VEIL_GUARD(next_version(s, model_id, version));
    return key_insert(s, model_id, *version, now, writer, ctx);
}

static VEIL_RESULT sq_key_add(struct kbs_store *base, const char *model_id, int64_t now, kbs_key_writer writer,
                              void *ctx, uint32_t *version, int *found)
{
    struct sqlite_store *s = impl(base);
    VEIL_GUARD(begin(s));
    return finish(s, key_append(s, model_id, now, writer, ctx, version, found));
}

static VEIL_RESULT key_row(struct sqlite_store *s, const char *model_id, uint32_t version, struct kbs_key_row *out,
                           int *found)
{
    VEIL_DEFER(stmt_done) sqlite3_stmt *st = NULL;
    VEIL_GUARD(prepare(s,
                       version != 0
                           ? "SELECT k.version, k.revoked, k.sealed, m.policy FROM keys k JOIN models m USING(model_id)"
                             " WHERE k.model_id = ? AND k.version = ?"
                           : "SELECT k.version, k.revoked, k.sealed, m.policy FROM keys k JOIN models m USING(model_id)"
                             " WHERE k.model_id = ? AND k.revoked = 0 ORDER BY k.version DESC LIMIT 1",
                       &st));
    sqlite3_bind_text(st, 1, model_id, -1, SQLITE_STATIC);
    if (version != 0)
        sqlite3_bind_int64(st, 2, version);
    int rc = sqlite3_step(st);
    VEIL_ENSURE(rc == SQLITE_ROW || rc == SQLITE_DONE, VEIL_ERR_IO, "store: %s", sqlite3_errmsg(s->db));
    *found = rc == SQLITE_ROW;
    if (!*found)
        return VEIL_RESULT_OK;
    out->version = (uint32_t)sqlite3_column_int64(st, 0);
    out->revoked = sqlite3_column_int(st, 1) != 0;
    VEIL_GUARD(veil_buf_append(&out->sealed, sqlite3_column_blob(st, 2), (size_t)sqlite3_column_bytes(st, 2)));
    out->policy = column_text(st, 3);
    VEIL_ENSURE(out->policy != NULL, VEIL_ERR_NOMEM, "out of memory");
    return VEIL_RESULT_OK;
}

static VEIL_RESULT sq_key_get(struct kbs_store *base, const char *model_id, uint32_t version,
                              struct kbs_key_row *out, int *found)
{
    struct sqlite_store *s = impl(base);
    lock(s);
    struct veil_result r = key_row(s, model_id, version, out, found);
    unlock(s);
    return r;
}

/* Runs one UPDATE with (text, int?) parameters and appends the audit record when a row changed. */
static VEIL_RESULT update_audited(struct sqlite_store *s, const char *sql, const char *a, const char *b, int64_t n,
                                  const char *audit, int *found)
{
    VEIL_DEFER(stmt_done) sqlite3_stmt *st = NULL;
    VEIL_GUARD(prepare(s, sql, &st));
    sqlite3_bind_text(st, 1, a, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, b, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, n);
    VEIL_GUARD(step_done(s->db, st));
    *found = sqlite3_changes(s->db) == 1;
    return *found ? audit_add(s, audit) : VEIL_RESULT_OK;
}

static VEIL_RESULT sq_key_revoke(struct kbs_store *base, const char *model_id, uint32_t version, const char *audit,
                                 int *found)
{
    struct sqlite_store *s = impl(base);
    VEIL_GUARD(begin(s));
    return finish(s, update_audited(s, "UPDATE keys SET revoked = 1 WHERE model_id = ?1 AND ?2 = ?2 AND version = ?3",
                                    model_id, "", version, audit, found));
}

static VEIL_RESULT sq_policy_set(struct kbs_store *base, const char *model_id, const char *policy, const char *audit,
                                 int *found)
{
    struct sqlite_store *s = impl(base);
    VEIL_GUARD(begin(s));
    return finish(s, update_audited(s, "UPDATE models SET policy = ?2 WHERE model_id = ?1 AND ?3 = ?3", model_id,
                                    policy, 0, audit, found));
}

/* ---- usage policies ------------------------------------------------------------------------------------- */

static VEIL_RESULT usage_write(struct sqlite_store *s, const char *model_id, const char *usage, const char *audit,
                               int *found)
{
    VEIL_GUARD(model_exists(s, model_id, found));
    if (!*found)
        return VEIL_RESULT_OK;
    VEIL_DEFER(stmt_done) sqlite3_stmt *st = NULL;
    VEIL_GUARD(prepare(s,
                       usage != NULL ? "INSERT INTO usage(model_id, policy) VALUES(?1, ?2)"
                                       " ON CONFLICT(model_id) DO UPDATE SET policy = excluded.policy"
                                     : "DELETE FROM usage WHERE model_id = ?1",
                       &st));
    sqlite3_bind_text(st, 1, model_id, -1, SQLITE_STATIC);
    if (usage != NULL)
        sqlite3_bind_text(st, 2, usage, -1, SQLITE_STATIC);
    VEIL_GUARD(step_done(s->db, st));
    return audit_add(s, audit);
}

static VEIL_RESULT sq_usage_set(struct kbs_store *base, const char *model_id, const char *usage, const char *audit,
                                int *found)
{
    struct sqlite_store *s = impl(base);
    *found = 0;
    VEIL_GUARD(begin(s));
    return finish(s, usage_write(s, model_id, usage, audit, found));
}

static VEIL_RESULT usage_row(struct sqlite_store *s, const char *model_id, char **usage, int *found)
{
    VEIL_DEFER(stmt_done) sqlite3_stmt *st = NULL;
    VEIL_GUARD(prepare(s, "SELECT u.policy FROM models m LEFT JOIN usage u USING(model_id) WHERE m.model_id = ?",
                       &st));
    sqlite3_bind_text(st, 1, model_id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    VEIL_ENSURE(rc == SQLITE_ROW || rc == SQLITE_DONE, VEIL_ERR_IO, "store: %s", sqlite3_errmsg(s->db));
    *found = rc == SQLITE_ROW;
    if (!*found || sqlite3_column_type(st, 0) == SQLITE_NULL)
        return VEIL_RESULT_OK;
    *usage = column_text(st, 0);
    VEIL_ENSURE(*usage != NULL, VEIL_ERR_NOMEM, "out of memory");
    return VEIL_RESULT_OK;
}

static VEIL_RESULT sq_usage_get(struct kbs_store *base, const char *model_id, char **usage, int *found)
{
    struct sqlite_store *s = impl(base);
    *usage = NULL;
    *found = 0;
    lock(s);
    struct veil_result r = usage_row(s, model_id, usage, found);
    unlock(s);
    return r;
}

/* ---- usage counters -------------------------------------------------------------------------------------- */

static VEIL_RESULT counter_add(struct sqlite_store *s, const char *model_id, const char *client, json_int_t n)
{
    VEIL_DEFER(stmt_done) sqlite3_stmt *st = NULL;
    VEIL_GUARD(prepare(s, "INSERT INTO usage_counters(model_id, client, used) VALUES(?1, ?2, ?3)"
                          " ON CONFLICT(model_id, client) DO UPDATE SET used = min(used + excluded.used, ?4)",
                       &st));
    sqlite3_bind_text(st, 1, model_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, client, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, n);
    sqlite3_bind_int64(st, 4, (sqlite3_int64)KBS_USAGE_COUNT_MAX);
    return step_done(s->db, st);
}

static VEIL_RESULT counters_read(struct sqlite_store *s, const char *model_id, json_t *totals)
{
    VEIL_DEFER(stmt_done) sqlite3_stmt *st = NULL;
    VEIL_GUARD(prepare(s, "SELECT client, used FROM usage_counters WHERE model_id = ?", &st));
    sqlite3_bind_text(st, 1, model_id, -1, SQLITE_STATIC);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        VEIL_ENSURE(json_object_set_new(totals, (const char *)sqlite3_column_text(st, 0),
                                        json_integer(sqlite3_column_int64(st, 1))) == 0,
                    VEIL_ERR_NOMEM, "out of memory");
    VEIL_ENSURE(rc == SQLITE_DONE, VEIL_ERR_IO, "store: %s", sqlite3_errmsg(s->db));
    return VEIL_RESULT_OK;
}

static VEIL_RESULT counters_update(struct sqlite_store *s, const char *model_id, const json_t *deltas, json_t *totals,
                                   int *found)
{
    VEIL_GUARD(model_exists(s, model_id, found));
    if (!*found)
        return VEIL_RESULT_OK;
    const char *client;
    const json_t *n;
    json_object_foreach((json_t *)(uintptr_t)deltas, client, n)
        VEIL_GUARD(counter_add(s, model_id, client, json_integer_value(n)));
    return counters_read(s, model_id, totals);
}

static VEIL_RESULT sq_usage_count(struct kbs_store *base, const char *model_id, const json_t *deltas, json_t *totals,
                                  int *found)
{
    struct sqlite_store *s = impl(base);
    *found = 0;
    if (json_object_size(deltas) == 0) { /* a read: no write transaction, no sync */
        lock(s);
        struct veil_result r = model_exists(s, model_id, found);
        if (veil_ok(r) && *found)
            r = counters_read(s, model_id, totals);
        unlock(s);
        return r;
    }
    VEIL_GUARD(begin(s));
    return finish(s, counters_update(s, model_id, deltas, totals, found));
}

static VEIL_RESULT versions_of(struct sqlite_store *s, const char *model_id, json_t *arr)
{
    VEIL_DEFER(stmt_done) sqlite3_stmt *st = NULL;
    VEIL_GUARD(prepare(s, "SELECT version, revoked, created FROM keys WHERE model_id = ? ORDER BY version", &st));
    sqlite3_bind_text(st, 1, model_id, -1, SQLITE_STATIC);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        json_t *v = json_pack("{s:I, s:b, s:I}", "version", (json_int_t)sqlite3_column_int64(st, 0), "revoked",
                              sqlite3_column_int(st, 1) != 0, "created", (json_int_t)sqlite3_column_int64(st, 2));
        VEIL_ENSURE(v != NULL && json_array_append_new(arr, v) == 0, VEIL_ERR_NOMEM, "out of memory");
    }
    VEIL_ENSURE(rc == SQLITE_DONE, VEIL_ERR_IO, "store: %s", sqlite3_errmsg(s->db));
    return VEIL_RESULT_OK;
}

/* {"model_id", "versions", and "policy" when with_policy}. */
static VEIL_RESULT model_object(struct sqlite_store *s, sqlite3_stmt *st, int with_policy, json_t **out)
{
    const char *id = (const char *)sqlite3_column_text(st, 0);
    json_t *m = json_pack("{s:s, s:I, s:[]}", "model_id", id, "created", (json_int_t)sqlite3_column_int64(st, 2),
                          "versions");
    VEIL_ENSURE(m != NULL, VEIL_ERR_NOMEM, "out of memory");
    struct veil_result r = versions_of(s, id, json_object_get(m, "versions"));
    if (veil_ok(r) && with_policy) {
        json_t *p = json_loads((const char *)sqlite3_column_text(st, 1), 0, NULL);
        r = p != NULL ? veil_json_set(m, "policy", p) : veil_error_raise(VEIL_ERR_FORMAT, __FILE__, __LINE__,
                                                                         "store: a stored policy is not JSON");
    }
    if (!veil_ok(r)) {
        json_decref(m);
        return r;
    }
    *out = m;
    return VEIL_RESULT_OK;
}

static VEIL_RESULT models_query(struct sqlite_store *s, const char *model_id, json_t *arr)
{
    VEIL_DEFER(stmt_done) sqlite3_stmt *st = NULL;
    VEIL_GUARD(prepare(s,
                       model_id != NULL ? "SELECT model_id, policy, created FROM models WHERE model_id = ?"
                                        : "SELECT model_id, policy, created FROM models ORDER BY model_id",
                       &st));
    if (model_id != NULL)
        sqlite3_bind_text(st, 1, model_id, -1, SQLITE_STATIC);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        json_t *m = NULL;
        VEIL_GUARD(model_object(s, st, model_id != NULL, &m));
        VEIL_ENSURE(json_array_append_new(arr, m) == 0, VEIL_ERR_NOMEM, "out of memory");
    }
    VEIL_ENSURE(rc == SQLITE_DONE, VEIL_ERR_IO, "store: %s", sqlite3_errmsg(s->db));
    return VEIL_RESULT_OK;
}

static VEIL_RESULT models_locked(struct sqlite_store *s, const char *model_id, json_t **out)
{
    json_t *arr = json_array();
    VEIL_ENSURE(arr != NULL, VEIL_ERR_NOMEM, "out of memory");
    lock(s);
    struct veil_result r = models_query(s, model_id, arr);
    unlock(s);
    if (!veil_ok(r)) {
        json_decref(arr);
        return r;
    }
    *out = arr;
    return VEIL_RESULT_OK;
}

static VEIL_RESULT sq_model_list(struct kbs_store *base, json_t **out)
{
    return models_locked(impl(base), NULL, out);
}

static VEIL_RESULT sq_model_get(struct kbs_store *base, const char *model_id, json_t **out)
{
    json_t *arr = NULL;
    VEIL_GUARD(models_locked(impl(base), model_id, &arr));
    json_t *m = json_array_get(arr, 0);
    *out = m != NULL ? json_incref(m) : NULL;
    json_decref(arr);
    return VEIL_RESULT_OK;
}

/* ---- open / close --------------------------------------------------------------------------------------- */

static void sq_close(struct kbs_store *base)
{
    if (base == NULL)
        return;
    struct sqlite_store *s = impl(base);
    for (size_t i = 0; i < STMT_CACHE_SIZE; i++)
        sqlite3_finalize(s->cache[i].st);
    sqlite3_close_v2(s->db);
    pthread_mutex_destroy(&s->lock);
    kbs_group_commit_destroy(&s->audit_queue);
    free(s);
}

static const struct kbs_store_ops sqlite_ops = {
    .close = sq_close,
    .session_create = sq_session_create,
    .session_get = sq_session_get,
    .session_attest = sq_session_attest,
    .model_create = sq_model_create,
    .key_add = sq_key_add,
    .key_get = sq_key_get,
    .key_revoke = sq_key_revoke,
    .policy_set = sq_policy_set,
    .usage_set = sq_usage_set,
    .usage_get = sq_usage_get,
    .usage_count = sq_usage_count,
    .model_get = sq_model_get,
    .model_list = sq_model_list,
    .audit_append = sq_audit_append,
    .audit_read = sq_audit_read,
};

static VEIL_RESULT configure(sqlite3 *db)
{
    VEIL_GUARD(exec(db, "PRAGMA journal_mode=WAL"));
    VEIL_GUARD(exec(db, "PRAGMA synchronous=FULL"));
    VEIL_GUARD(exec(db, "PRAGMA foreign_keys=ON"));
    VEIL_ENSURE(sqlite3_busy_timeout(db, 10000) == SQLITE_OK, VEIL_ERR_IO, "store: busy timeout");
    return exec(db, schema);
}

VEIL_RESULT kbs_store_sqlite_open(const char *path, struct kbs_store **out)
{
    struct sqlite_store *s = calloc(1, sizeof *s);
    VEIL_ENSURE(s != NULL, VEIL_ERR_NOMEM, "out of memory");
    s->base.ops = &sqlite_ops;
    pthread_mutex_init(&s->lock, NULL);
    kbs_group_commit_init(&s->audit_queue);
    int rc = sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, NULL);
    struct veil_result r = rc == SQLITE_OK ? configure(s->db)
                                           : veil_error_raise(VEIL_ERR_IO, __FILE__, __LINE__,
                                                              "store: cannot open %s", path);
    if (!veil_ok(r)) {
        sq_close(&s->base);
        return r;
    }
    *out = &s->base;
    return VEIL_RESULT_OK;
}
