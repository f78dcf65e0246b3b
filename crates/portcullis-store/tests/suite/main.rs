//! One store suite, run against SQLite (a temp file) and PostgreSQL (127.0.0.1:5432, database
//! `test`, a fresh schema per run, dropped afterwards). PostgreSQL being down fails the suite.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use portcullis_store::*;
use std::time::Duration;

mod alerts;
mod audit_log;
mod keys;
mod ledger;
mod migration;
mod policy_events;
mod redteam;
mod responses;
mod review;

use alerts::alerts_suite;
use audit_log::{audit_suite, replay_suite};
use keys::{key_cache_suite, keys_suite};
use ledger::ledger_suite;
use migration::migration_suite;
use policy_events::policy_events_suite;
use redteam::redteam_suite;
use responses::responses_suite;
use review::review_suite;

const PG: &str = "postgres://postgres@127.0.0.1:5432/test";

/// A PostgreSQL schema that exists for one test and is dropped after it.
struct PgSchema {
    name: String,
}

impl PgSchema {
    fn new() -> PgSchema {
        let mut b = [0u8; 6];
        getrandom_fill(&mut b);
        PgSchema {
            name: format!("portcullis_test_{}", hex_of(&b)),
        }
    }
    fn url(&self) -> String {
        format!("{PG}?schema={}", self.name)
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop the schema on a fresh runtime in a thread: Drop may run inside a test's runtime.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                sqlx::any::install_default_drivers();
                if let Ok(pool) = sqlx::AnyPool::connect(PG).await {
                    let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
                        .execute(&pool)
                        .await;
                    pool.close().await;
                }
            });
        })
        .join();
    }
}

fn getrandom_fill(b: &mut [u8]) {
    use std::hash::{BuildHasher, Hasher};
    for (i, x) in b.iter_mut().enumerate() {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_usize(i);
        *x = h.finish() as u8;
    }
}

fn hex_of(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn record(id: &str, user: &str, outcome: &str, time: i64) -> AuditRecord {
    AuditRecord {
        request_id: id.into(),
        time,
        user: Some(user.into()),
        key_id: Some("key_1".into()),
        status: if outcome == "allowed" { 200 } else { 403 },
        outcome: outcome.into(),
        prompt_tokens: 12,
        verdicts: serde_json::json!([{"guard": "size", "outcome": "allow"}]),
        ..AuditRecord::default()
    }
}

mod sqlite {
    use super::*;

    fn url(dir: &tempfile::TempDir) -> String {
        format!("sqlite://{}/store.db", dir.path().display())
    }

    #[tokio::test]
    async fn alerts() {
        let d = tempfile::tempdir().unwrap();
        alerts_suite(&open(&url(&d)).await.unwrap()).await;
    }

    #[tokio::test]
    async fn keys() {
        let d = tempfile::tempdir().unwrap();
        keys_suite(&open(&url(&d)).await.unwrap()).await;
    }

    #[tokio::test]
    async fn audit() {
        let d = tempfile::tempdir().unwrap();
        let store = open(&url(&d)).await.unwrap();
        let raw = audit_log::Raw {
            pool: sqlx::AnyPool::connect(&url(&d)).await.unwrap(),
            table: "audit".into(),
        };
        audit_suite(&store, &d.path().join("spool"), &raw).await;
    }

    #[tokio::test]
    async fn audit_journal_replay() {
        let d = tempfile::tempdir().unwrap();
        replay_suite(&open(&url(&d)).await.unwrap(), &d.path().join("spool")).await;
    }

    #[tokio::test]
    async fn ledger() {
        let d = tempfile::tempdir().unwrap();
        ledger_suite(&open(&url(&d)).await.unwrap()).await;
    }

    #[tokio::test]
    async fn responses() {
        let d = tempfile::tempdir().unwrap();
        responses_suite(&open(&url(&d)).await.unwrap()).await;
    }

    #[tokio::test]
    async fn redteam_runs() {
        let d = tempfile::tempdir().unwrap();
        redteam_suite(&open(&url(&d)).await.unwrap()).await;
    }

    #[tokio::test]
    async fn review_labels() {
        let d = tempfile::tempdir().unwrap();
        review_suite(&open(&url(&d)).await.unwrap()).await;
    }

    #[tokio::test]
    async fn policy_events() {
        let d = tempfile::tempdir().unwrap();
        policy_events_suite(&open(&url(&d)).await.unwrap()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn key_cache() {
        let d = tempfile::tempdir().unwrap();
        key_cache_suite(&url(&d)).await;
    }

    #[tokio::test]
    async fn a_first_release_file_is_migrated() {
        let d = tempfile::tempdir().unwrap();
        migration_suite(&migration::legacy_sqlite(d.path()).await).await;
    }

    #[tokio::test]
    async fn reopening_keeps_everything() {
        let d = tempfile::tempdir().unwrap();
        let s = open(&url(&d)).await.unwrap();
        let k = s
            .create_key(NewKey {
                user: "u".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        s.close().await;
        let s = open(&url(&d)).await.unwrap();
        assert!(s.authenticate(&k.secret).await.unwrap().is_some());
    }
}

mod postgres {
    use super::*;

    #[tokio::test]
    async fn a_record_the_database_refuses_is_set_aside_without_holding_back_the_rest() {
        let schema = PgSchema::new();
        let store = open(&schema.url()).await.unwrap();
        let d = tempfile::tempdir().unwrap();
        let w = AuditWriter::spawn(
            store.clone(),
            SpoolConfig {
                dir: d.path().to_owned(),
                replica: "rep-p".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        w.submit(record("ok_1", "u", "allowed", 1));
        // PostgreSQL text cannot hold NUL: the database refuses this row, whatever the retry.
        w.submit(record("bad\0nul", "u", "allowed", 2));
        w.submit(record("ok_2", "u", "allowed", 3));
        w.flush().await;
        assert_eq!(w.rejected(), 1);
        assert_eq!(
            w.spooled(),
            0,
            "nothing is left waiting behind the bad record"
        );
        w.close().await;
        let all = store.audit_query(&AuditFilter::default()).await.unwrap();
        let ids: Vec<&str> = all.iter().map(|r| r.request_id.as_str()).collect();
        assert_eq!(ids, ["ok_1", "ok_2"]);
        let rejected =
            std::fs::read_to_string(d.path().join("rep-p").join("audit-spool.rejected")).unwrap();
        assert!(rejected.contains("bad\\u0000nul"), "{rejected}");
    }

    #[tokio::test]
    async fn alerts() {
        let s = PgSchema::new();
        alerts_suite(&open(&s.url()).await.unwrap()).await;
    }

    #[tokio::test]
    async fn keys() {
        let s = PgSchema::new();
        keys_suite(
            &open(&s.url())
                .await
                .expect("PostgreSQL on 127.0.0.1:5432 must be reachable"),
        )
        .await;
    }

    #[tokio::test]
    async fn audit() {
        let s = PgSchema::new();
        let d = tempfile::tempdir().unwrap();
        let store = open(&s.url()).await.unwrap();
        let raw = audit_log::Raw {
            pool: sqlx::AnyPool::connect(PG).await.unwrap(),
            table: format!("{}.audit", s.name),
        };
        audit_suite(&store, &d.path().join("spool"), &raw).await;
    }

    #[tokio::test]
    async fn ledger() {
        let s = PgSchema::new();
        ledger_suite(&open(&s.url()).await.unwrap()).await;
    }

    #[tokio::test]
    async fn responses() {
        let s = PgSchema::new();
        responses_suite(&open(&s.url()).await.unwrap()).await;
    }

    #[tokio::test]
    async fn redteam_runs() {
        let s = PgSchema::new();
        redteam_suite(&open(&s.url()).await.unwrap()).await;
    }

    #[tokio::test]
    async fn review_labels() {
        let s = PgSchema::new();
        review_suite(&open(&s.url()).await.unwrap()).await;
    }

    #[tokio::test]
    async fn policy_events() {
        let s = PgSchema::new();
        policy_events_suite(&open(&s.url()).await.unwrap()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn key_cache() {
        let s = PgSchema::new();
        key_cache_suite(&s.url()).await;
    }

    #[tokio::test]
    async fn a_first_release_schema_is_migrated() {
        let s = PgSchema::new();
        migration_suite(&migration::legacy_postgres(&s).await).await;
    }

    /// A TCP proxy in front of PostgreSQL that the test can cut and restore.
    struct Cuttable {
        port: u16,
        cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
    }

    async fn cuttable_proxy() -> Cuttable {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let c = cut.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                if c.load(Ordering::SeqCst) {
                    continue; // dropped: connection refused-ish
                }
                let c2 = c.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect("127.0.0.1:5432").await
                    else {
                        return;
                    };
                    let (mut ri, mut wi) = inbound.split();
                    let (mut ro, mut wo) = outbound.split();
                    let watch = async {
                        while !c2.load(Ordering::SeqCst) {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    };
                    tokio::select! {
                        _ = tokio::io::copy(&mut ri, &mut wo) => {},
                        _ = tokio::io::copy(&mut ro, &mut wi) => {},
                        _ = watch => {},
                    }
                });
            }
        });
        Cuttable { port, cut }
    }

    #[tokio::test]
    async fn audit_spools_while_the_store_is_down_and_replays_after() {
        use std::sync::atomic::Ordering;
        let schema = PgSchema::new();
        let proxy = cuttable_proxy().await;
        let url = format!(
            "postgres://postgres@127.0.0.1:{}/test?schema={}",
            proxy.port, schema.name
        );
        let store = open(&url).await.unwrap();
        let d = tempfile::tempdir().unwrap();
        let w = AuditWriter::spawn(
            store.clone(),
            SpoolConfig {
                dir: d.path().to_owned(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        w.submit(record("before", "u", "allowed", 1));
        w.flush().await;
        proxy.cut.store(true, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(100)).await;
        for i in 0..5 {
            w.submit(record(&format!("during_{i}"), "u", "allowed", 10 + i));
        }
        w.flush().await;
        assert_eq!(
            w.spooled(),
            5,
            "records wait on disk while the store is down"
        );
        proxy.cut.store(false, Ordering::SeqCst);
        // The writer replays by itself once the store answers again.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while w.spooled() > 0 {
            assert!(std::time::Instant::now() < deadline, "spool never replayed");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        w.close().await;
        let all = store.audit_query(&AuditFilter::default()).await.unwrap();
        let ids: Vec<&str> = all.iter().map(|r| r.request_id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "before", "during_0", "during_1", "during_2", "during_3", "during_4"
            ]
        );
    }
}
