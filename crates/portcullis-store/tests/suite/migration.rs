//! Files and schemas made by the first release open with this one: the columns added since
//! appear, old rows keep their values and read back as before, new rows use the new columns.

use super::*;
use sqlx::{Connection, Executor};

/// The schema exactly as the first release created it (before `usage_estimated`).
const V1: &str = r#"
CREATE TABLE IF NOT EXISTS keys (
    id TEXT PRIMARY KEY,
    hash TEXT NOT NULL UNIQUE,
    prefix TEXT NOT NULL,
    user_name TEXT NOT NULL,
    team TEXT,
    service BIGINT NOT NULL DEFAULT 0,
    limits TEXT NOT NULL DEFAULT '{}',
    created_ms BIGINT NOT NULL,
    revoked_ms BIGINT
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
    digest TEXT NOT NULL
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
    completion_tokens BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS spend_key ON spend (key_id, time_ms);
CREATE INDEX IF NOT EXISTS spend_user ON spend (user_name, time_ms);
CREATE INDEX IF NOT EXISTS spend_team ON spend (team, time_ms);
CREATE INDEX IF NOT EXISTS spend_time ON spend (time_ms);
"#;

/// Creates the first release's tables through `conn`, with one audit row and one spend row.
pub async fn create_v1(conn: &mut sqlx::AnyConnection) {
    for stmt in V1.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        conn.execute(stmt).await.unwrap();
    }
    conn.execute(
        "INSERT INTO audit (seq_id, request_id, time_ms, user_name, status, outcome, \
         prompt_tokens, verdicts, digest) VALUES ('0001', 'old', 5, 'old', 200, 'allowed', 3, '[]', 'd')",
    )
    .await
    .unwrap();
    conn.execute(
        "INSERT INTO spend (request_id, time_ms, user_name, cost_micros, prompt_tokens) \
         VALUES ('old', 5, 'old', 700, 3)",
    )
    .await
    .unwrap();
    use sha2::Digest;
    let hash = hex_of(&sha2::Sha256::digest(LEGACY_SECRET.as_bytes()));
    conn.execute(
        format!(
            "INSERT INTO keys (id, hash, prefix, user_name, created_ms) \
             VALUES ('key_legacy', '{hash}', 'pk-legacy0', 'old', 5)"
        )
        .as_str(),
    )
    .await
    .unwrap();
}

/// The secret of the key the first release's tables hold.
const LEGACY_SECRET: &str = "pk-legacy000000000000000000000000000000000000000000";

/// Opens `url`, whose tables [`create_v1`] made, and checks old and new rows.
pub async fn migration_suite(url: &str) {
    let store = open(url).await.unwrap();
    let old = store.audit_query(&AuditFilter::default()).await.unwrap();
    assert_eq!(old.len(), 1);
    assert_eq!(
        (old[0].request_id.as_str(), old[0].usage_estimated),
        ("old", false)
    );
    assert_eq!(
        store
            .spend_total(&SpendScope::User("old".into()), 0)
            .await
            .unwrap(),
        700
    );
    store
        .record_spend(&SpendEntry {
            request_id: "new".into(),
            time_ms: 9,
            user: Some("new".into()),
            cost_micros: 40,
            usage_estimated: true,
            ..SpendEntry::default()
        })
        .await
        .unwrap();
    store
        .audit_insert(&[AuditRecord {
            seq_id: "0002".into(),
            usage_estimated: true,
            ..record("new", "new", "allowed", 9)
        }])
        .await
        .unwrap();
    let all = store.audit_query(&AuditFilter::default()).await.unwrap();
    let estimated: Vec<_> = all
        .iter()
        .map(|r| (r.request_id.as_str(), r.usage_estimated))
        .collect();
    assert_eq!(estimated, [("old", false), ("new", true)]);
    let report = store.spend_report(GroupBy::User, 0).await.unwrap();
    let row = |u: &str| {
        report
            .iter()
            .find(|r| r.group.as_deref() == Some(u))
            .unwrap()
            .clone()
    };
    assert_eq!(
        (row("old").estimated_requests, row("new").estimated_requests),
        (0, 1)
    );
    // A key made by the first release still works, never expires, and can be rotated.
    let legacy = store.authenticate(LEGACY_SECRET).await.unwrap().unwrap();
    assert_eq!(
        (legacy.id.as_str(), legacy.expires_ms),
        ("key_legacy", None)
    );
    let rotated = store.rotate_key("key_legacy", 60_000).await.unwrap();
    assert!(store.authenticate(&rotated.secret).await.unwrap().is_some());
    assert!(
        store
            .authenticate(LEGACY_SECRET)
            .await
            .unwrap()
            .unwrap()
            .previous_secret
    );
    // Tables added since the first release are there too.
    responses_suite(&store).await;
    assert!(store.kills().await.unwrap().is_empty());
    store.close().await;
    // Opening again — twice at once, as two replicas starting together — changes nothing.
    let (a, b) = tokio::join!(open(url), open(url));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(
        a.audit_query(&AuditFilter::default()).await.unwrap().len(),
        2
    );
    a.close().await;
    b.close().await;
}

/// A legacy SQLite file in `dir`; its URL.
pub async fn legacy_sqlite(dir: &std::path::Path) -> String {
    sqlx::any::install_default_drivers();
    let path = dir.join("v1.db");
    let mut conn = sqlx::AnyConnection::connect(&format!("sqlite://{}?mode=rwc", path.display()))
        .await
        .unwrap();
    create_v1(&mut conn).await;
    conn.close().await.unwrap();
    format!("sqlite://{}", path.display())
}

/// A legacy PostgreSQL schema `schema`; its URL.
pub async fn legacy_postgres(schema: &PgSchema) -> String {
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(PG).await.unwrap();
    conn.execute(format!("CREATE SCHEMA {}", schema.name).as_str())
        .await
        .unwrap();
    conn.execute(format!("SET search_path TO {}", schema.name).as_str())
        .await
        .unwrap();
    create_v1(&mut conn).await;
    conn.close().await.unwrap();
    schema.url()
}
