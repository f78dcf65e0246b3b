//! The schema: tables created if missing (the current shape), then columns that later
//! versions added, added to tables an older version created — on SQLite files and PostgreSQL
//! schemas alike, safe to run by several processes at once.

use crate::{Backend, StoreError};
use sqlx::{AnyPool, Executor};

const MIGRATION: &str = r#"
CREATE TABLE IF NOT EXISTS keys (
    id TEXT PRIMARY KEY,
    hash TEXT NOT NULL UNIQUE,
    prefix TEXT NOT NULL,
    user_name TEXT NOT NULL,
    team TEXT,
    service BIGINT NOT NULL DEFAULT 0,
    limits TEXT NOT NULL DEFAULT '{}',
    created_ms BIGINT NOT NULL,
    revoked_ms BIGINT,
    expires_ms BIGINT,
    prev_hash TEXT,
    prev_until_ms BIGINT
);
CREATE TABLE IF NOT EXISTS audit (
    seq_id TEXT PRIMARY KEY,
    request_id TEXT NOT NULL,
    time_ms BIGINT NOT NULL,
    key_id TEXT,
    user_name TEXT,
    team TEXT,
    model TEXT,
    route TEXT,
    status BIGINT NOT NULL,
    outcome TEXT NOT NULL,
    error_code TEXT,
    prompt_tokens BIGINT NOT NULL DEFAULT 0,
    completion_tokens BIGINT NOT NULL DEFAULT 0,
    cached_tokens BIGINT NOT NULL DEFAULT 0,
    cost_micros BIGINT NOT NULL DEFAULT 0,
    latency_ms BIGINT NOT NULL DEFAULT 0,
    upstream_ms BIGINT,
    stream BIGINT NOT NULL DEFAULT 0,
    verdicts TEXT NOT NULL DEFAULT '[]',
    digest TEXT NOT NULL,
    usage_estimated BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS audit_time ON audit (time_ms);
CREATE INDEX IF NOT EXISTS audit_user ON audit (user_name, time_ms);
CREATE TABLE IF NOT EXISTS spend (
    request_id TEXT PRIMARY KEY,
    time_ms BIGINT NOT NULL,
    key_id TEXT,
    user_name TEXT,
    team TEXT,
    model TEXT,
    cost_micros BIGINT NOT NULL,
    prompt_tokens BIGINT NOT NULL DEFAULT 0,
    completion_tokens BIGINT NOT NULL DEFAULT 0,
    usage_estimated BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS spend_key ON spend (key_id, time_ms);
CREATE INDEX IF NOT EXISTS spend_user ON spend (user_name, time_ms);
CREATE INDEX IF NOT EXISTS spend_team ON spend (team, time_ms);
CREATE INDEX IF NOT EXISTS spend_time ON spend (time_ms);
CREATE TABLE IF NOT EXISTS responses (
    id TEXT PRIMARY KEY,
    key_id TEXT NOT NULL,
    end_user TEXT,
    created_ms BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS responses_key ON responses (key_id, created_ms);
CREATE TABLE IF NOT EXISTS redteam_runs (
    id TEXT PRIMARY KEY,
    time_ms BIGINT NOT NULL,
    config_source TEXT NOT NULL,
    suites TEXT NOT NULL,
    attacks BIGINT NOT NULL,
    blocked BIGINT NOT NULL,
    flagged BIGINT NOT NULL,
    passed BIGINT NOT NULL,
    benign BIGINT NOT NULL,
    false_positives BIGINT NOT NULL,
    errors BIGINT NOT NULL DEFAULT 0,
    block_rate DOUBLE PRECISION,
    false_positive_rate DOUBLE PRECISION,
    categories TEXT NOT NULL DEFAULT '{}',
    min_block_rate DOUBLE PRECISION,
    max_false_positive_rate DOUBLE PRECISION,
    pass BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS redteam_runs_time ON redteam_runs (time_ms);
CREATE TABLE IF NOT EXISTS kills (
    scope TEXT NOT NULL,
    target TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    created_ms BIGINT NOT NULL,
    PRIMARY KEY (scope, target)
);
CREATE TABLE IF NOT EXISTS audit_heads (
    replica TEXT PRIMARY KEY,
    seq BIGINT NOT NULL,
    digest TEXT NOT NULL,
    time_ms BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_anchors (
    replica TEXT PRIMARY KEY,
    seq BIGINT NOT NULL,
    digest TEXT NOT NULL,
    mac TEXT NOT NULL,
    time_ms BIGINT NOT NULL
);
"#;

/// Shadow-mode review: a reviewer's label on one guard's would-have-blocked verdict in one
/// audit record (`right` = it should have blocked). A separate step so it reads on its own.
const REVIEW_LABELS: &str = r#"
CREATE TABLE IF NOT EXISTS review_labels (
    seq_id TEXT NOT NULL,
    guard TEXT NOT NULL,
    label TEXT NOT NULL,
    time_ms BIGINT NOT NULL,
    PRIMARY KEY (seq_id, guard)
);
CREATE INDEX IF NOT EXISTS review_labels_guard ON review_labels (guard, time_ms)
"#;

/// Columns added after the first release: `(table, column, declaration)`. Append only.
const ADDED: &[(&str, &str, &str)] = &[
    ("audit", "usage_estimated", "BIGINT NOT NULL DEFAULT 0"),
    ("spend", "usage_estimated", "BIGINT NOT NULL DEFAULT 0"),
    ("keys", "expires_ms", "BIGINT"),
    ("keys", "prev_hash", "TEXT"),
    ("keys", "prev_until_ms", "BIGINT"),
    ("audit", "replica", "TEXT"),
    ("audit", "seq", "BIGINT"),
    ("audit", "model_served", "TEXT"),
    ("audit", "input_hmac", "TEXT"),
    ("audit", "output_hmac", "TEXT"),
    ("audit", "input_text", "TEXT"),
    ("audit", "output_text", "TEXT"),
];

/// Statements that need the added columns (run after them). Append only.
const AFTER_ADDED: &[&str] = &[
    "CREATE INDEX IF NOT EXISTS keys_prev_hash ON keys (prev_hash)",
    "CREATE INDEX IF NOT EXISTS audit_chain ON audit (replica, seq)",
];

/// Step "alerts table": the alerts the gateway raised (`portcullis alerts list`). Its own
/// step so that other tables' migrations and this one never edit the same lines.
const ALERTS_TABLE: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS alerts (\n\
        time_ms BIGINT NOT NULL,\n\
        kind TEXT NOT NULL,\n\
        subject TEXT NOT NULL,\n\
        message TEXT NOT NULL,\n\
        details TEXT NOT NULL DEFAULT '{}'\n\
    )",
    "CREATE INDEX IF NOT EXISTS alerts_time ON alerts (time_ms)",
];

/// Step "policy events": each change of a guard's mode or rollout share (reloads, promote,
/// demote), for the compliance report's rollout history. Its own step, like the alerts table.
const POLICY_EVENTS: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS policy_events (\n\
        time_ms BIGINT NOT NULL,\n\
        guard TEXT NOT NULL,\n\
        from_state TEXT NOT NULL,\n\
        to_state TEXT NOT NULL,\n\
        how TEXT NOT NULL,\n\
        who TEXT NOT NULL DEFAULT ''\n\
    )",
    "CREATE INDEX IF NOT EXISTS policy_events_time ON policy_events (time_ms)",
    "CREATE INDEX IF NOT EXISTS policy_events_guard ON policy_events (guard, time_ms)",
];

/// Brings the schema behind `pool` up to date.
pub(crate) async fn run(pool: &AnyPool, backend: Backend) -> Result<(), StoreError> {
    for stmt in MIGRATION
        .split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        pool.execute(stmt).await?;
    }
    for (table, column, decl) in ADDED {
        ensure_column(pool, backend, table, column, decl).await?;
    }
    for stmt in AFTER_ADDED {
        pool.execute(*stmt).await?;
    }
    for stmt in ALERTS_TABLE {
        pool.execute(*stmt).await?;
    }
    for stmt in REVIEW_LABELS
        .split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        pool.execute(stmt).await?;
    }
    for stmt in POLICY_EVENTS {
        pool.execute(*stmt).await?;
    }
    Ok(())
}

/// Whether `table` has `column` (a query naming a missing column fails on both backends).
async fn has_column(pool: &AnyPool, table: &str, column: &str) -> bool {
    sqlx::query(&format!("SELECT {column} FROM {table} WHERE 1 = 0"))
        .fetch_optional(pool)
        .await
        .is_ok()
}

/// Adds `column` to `table` unless it is there (another process may add it meanwhile).
async fn ensure_column(
    pool: &AnyPool,
    backend: Backend,
    table: &str,
    column: &str,
    decl: &str,
) -> Result<(), StoreError> {
    if has_column(pool, table, column).await {
        return Ok(());
    }
    // SQLite has no ADD COLUMN IF NOT EXISTS; a lost race shows up as an error we re-check.
    let sql = match backend {
        Backend::Postgres => {
            format!("ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column} {decl}")
        }
        Backend::Sqlite => format!("ALTER TABLE {table} ADD COLUMN {column} {decl}"),
    };
    match pool.execute(sql.as_str()).await {
        Ok(_) => Ok(()),
        Err(_) if has_column(pool, table, column).await => Ok(()),
        Err(e) => Err(e.into()),
    }
}
