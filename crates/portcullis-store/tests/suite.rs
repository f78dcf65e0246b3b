//! One store suite, run against SQLite (a temp file) and PostgreSQL (127.0.0.1:5432, database
//! `test`, a fresh schema per run, dropped afterwards). PostgreSQL being down fails the suite.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use portcullis_store::*;
use std::time::Duration;

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

async fn keys_suite(store: &Store) {
    let created = store
        .create_key(NewKey {
            user: "alice".into(),
            team: Some("research".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(created.secret.starts_with("pk-") && created.secret.len() >= 40);
    let rec = store.authenticate(&created.secret).await.unwrap().unwrap();
    assert_eq!(
        (rec.user.as_str(), rec.team.as_deref(), rec.service),
        ("alice", Some("research"), false)
    );
    // Unknown and near-miss secrets are refused.
    assert!(store.authenticate("pk-nope").await.unwrap().is_none());
    let mut near = created.secret.clone();
    near.pop();
    near.push('x');
    assert!(store.authenticate(&near).await.unwrap().is_none());
    // Lists never carry secrets.
    let list = store.list_keys().await.unwrap();
    assert_eq!(list.len(), 1);
    assert!(
        !serde_json::to_string(&list)
            .unwrap()
            .contains(&created.secret)
    );
    // Revocation takes effect at once in this process, cache included.
    store.revoke_key(&created.id).await.unwrap();
    assert!(store.authenticate(&created.secret).await.unwrap().is_none());
    assert!(store.list_keys().await.unwrap()[0].revoked);
    assert!(matches!(
        store.revoke_key("key_missing").await,
        Err(StoreError::NoSuchKey(_))
    ));
    // Limits attach to keys.
    let svc = store
        .create_key(NewKey {
            user: "app".into(),
            service: true,
            ..Default::default()
        })
        .await
        .unwrap();
    store
        .update_key_limits(&svc.id, &serde_json::json!({"rpm": 5}))
        .await
        .unwrap();
    let rec = store.authenticate(&svc.secret).await.unwrap().unwrap();
    assert!(rec.service);
    assert_eq!(rec.limits["rpm"], 5);
}

async fn audit_suite(store: &Store, spool: &std::path::Path) {
    let w = AuditWriter::spawn(
        store.clone(),
        SpoolConfig {
            dir: spool.to_owned(),
            ..Default::default()
        },
    );
    for i in 0..10 {
        w.submit(record(
            &format!("req_{i}"),
            if i % 2 == 0 { "bob" } else { "eve" },
            if i < 7 { "allowed" } else { "blocked" },
            1_000 + i,
        ));
    }
    w.close().await;
    let all = store.audit_query(&AuditFilter::default()).await.unwrap();
    assert_eq!(all.len(), 10);
    assert_eq!(all[0].request_id, "req_0");
    assert_eq!(all[9].request_id, "req_9");
    assert_eq!(all[3].verdicts[0]["guard"], "size");
    // The chain links every record to the previous one.
    let key = SpoolConfig::default().chain_key;
    let mut prev = String::new();
    for r in &all {
        assert_eq!(
            r.digest,
            audit::chain_digest(&key, &prev, r),
            "chain broken at {}",
            r.request_id
        );
        prev = r.digest.clone();
    }
    let mut tampered = all[4].clone();
    assert_eq!(tampered.outcome, "allowed");
    tampered.status = 403;
    tampered.outcome = "blocked".into();
    assert_ne!(
        audit::chain_digest(&key, &all[3].digest, &tampered),
        all[4].digest,
        "an edited record no longer matches its digest"
    );
    let bob = store
        .audit_query(&AuditFilter {
            user: Some("bob".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(bob.len(), 5);
    let blocked = store
        .audit_query(&AuditFilter {
            outcome: Some("blocked".into()),
            since_ms: Some(1_008),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        blocked
            .iter()
            .map(|r| r.request_id.as_str())
            .collect::<Vec<_>>(),
        ["req_8", "req_9"]
    );
    let last2 = store
        .audit_query(&AuditFilter {
            limit: Some(2),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(last2.len(), 2);
    // Every record that used tokens is booked in the spend ledger by the same writer.
    let booked: i64 = store
        .spend_report(GroupBy::User, 0)
        .await
        .unwrap()
        .iter()
        .map(|r| r.requests)
        .sum();
    assert_eq!(booked, 10);
    assert_eq!(last2[1].request_id, "req_9");
}

async fn ledger_suite(store: &Store) {
    let e = |id: &str, user: &str, team: &str, model: &str, cost: i64, t: i64| SpendEntry {
        request_id: id.into(),
        time_ms: t,
        key_id: Some(format!("key_{user}")),
        user: Some(user.into()),
        team: Some(team.into()),
        model: Some(model.into()),
        cost_micros: cost,
        prompt_tokens: 10,
        completion_tokens: 5,
    };
    store
        .record_spend(&e("r1", "ann", "red", "gpt-4o", 1_250, 100))
        .await
        .unwrap();
    store
        .record_spend(&e("r2", "ann", "red", "gpt-4o-mini", 75, 200))
        .await
        .unwrap();
    store
        .record_spend(&e("r3", "ben", "blue", "gpt-4o", 10_000, 300))
        .await
        .unwrap();
    // Idempotent by request id.
    store
        .record_spend(&e("r1", "ann", "red", "gpt-4o", 1_250, 100))
        .await
        .unwrap();
    assert_eq!(
        store
            .spend_total(&SpendScope::User("ann".into()), 0)
            .await
            .unwrap(),
        1_325
    );
    assert_eq!(
        store
            .spend_total(&SpendScope::User("ann".into()), 150)
            .await
            .unwrap(),
        75
    );
    assert_eq!(
        store
            .spend_total(&SpendScope::Team("blue".into()), 0)
            .await
            .unwrap(),
        10_000
    );
    assert_eq!(
        store
            .spend_total(&SpendScope::Key("key_ann".into()), 0)
            .await
            .unwrap(),
        1_325
    );
    assert_eq!(
        store.spend_total(&SpendScope::Global, 0).await.unwrap(),
        11_325
    );
    assert_eq!(
        store
            .spend_total(&SpendScope::User("nobody".into()), 0)
            .await
            .unwrap(),
        0
    );
    let by_model = store.spend_report(GroupBy::Model, 0).await.unwrap();
    assert_eq!(by_model[0].group.as_deref(), Some("gpt-4o"));
    assert_eq!((by_model[0].requests, by_model[0].cost_micros), (2, 11_250));
    let by_user = store.spend_report(GroupBy::User, 0).await.unwrap();
    assert_eq!(by_user.len(), 2);
}

mod sqlite {
    use super::*;

    fn url(dir: &tempfile::TempDir) -> String {
        format!("sqlite://{}/store.db", dir.path().display())
    }

    #[tokio::test]
    async fn keys() {
        let d = tempfile::tempdir().unwrap();
        keys_suite(&open(&url(&d)).await.unwrap()).await;
    }

    #[tokio::test]
    async fn audit() {
        let d = tempfile::tempdir().unwrap();
        audit_suite(&open(&url(&d)).await.unwrap(), &d.path().join("spool")).await;
    }

    #[tokio::test]
    async fn ledger() {
        let d = tempfile::tempdir().unwrap();
        ledger_suite(&open(&url(&d)).await.unwrap()).await;
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
        audit_suite(&open(&s.url()).await.unwrap(), &d.path().join("spool")).await;
    }

    #[tokio::test]
    async fn ledger() {
        let s = PgSchema::new();
        ledger_suite(&open(&s.url()).await.unwrap()).await;
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
        );
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
