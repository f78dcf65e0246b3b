//! The audit log: batches, queries, the digest chain, the ledger it books.

use super::*;

const KEY: &[u8] = b"test-key-0123456789abcdef0123456789";

fn config(spool: &std::path::Path) -> SpoolConfig {
    SpoolConfig {
        dir: spool.to_owned(),
        key: ChainKey::new(KEY),
        replica: "rep-a".into(),
        ..Default::default()
    }
}

/// A second connection to the store's database, to tamper with rows as an intruder would;
/// `table` is the audit table's qualified name.
pub struct Raw {
    pub pool: sqlx::AnyPool,
    pub table: String,
}

impl Raw {
    async fn exec(&self, sql: &str) {
        let sql = sql.replace("audit ", &format!("{} ", self.table));
        sqlx::query(&sql).execute(&self.pool).await.unwrap();
    }
}

pub async fn audit_suite(store: &Store, spool: &std::path::Path, raw: &Raw) {
    let w = AuditWriter::spawn(store.clone(), config(spool))
        .await
        .unwrap();
    for i in 0..10 {
        w.submit(AuditRecord {
            usage_estimated: i == 5,
            input_text: (i == 6).then(|| "user 7\n[EMAIL]\n".to_owned()),
            output_text: (i == 6).then(|| "é [CREDIT_CARD]".to_owned()),
            ..record(
                &format!("req_{i}"),
                if i % 2 == 0 { "bob" } else { "eve" },
                if i < 7 { "allowed" } else { "blocked" },
                1_000 + i,
            )
        });
    }
    w.close().await;
    let all = store.audit_query(&AuditFilter::default()).await.unwrap();
    assert_eq!(all.len(), 10);
    assert_eq!(all[0].request_id, "req_0");
    assert_eq!(all[9].request_id, "req_9");
    assert_eq!(all[3].verdicts[0]["guard"], "size");
    // Whether usage was estimated is stored, and chained like every other field.
    let estimated: Vec<_> = all.iter().map(|r| r.usage_estimated).collect();
    assert_eq!(estimated.iter().filter(|e| **e).count(), 1);
    assert!(all[5].usage_estimated);
    // Redacted texts come back as written (and are chained below); absent stays absent.
    assert_eq!(all[6].input_text.as_deref(), Some("user 7\n[EMAIL]\n"));
    assert_eq!(all[6].output_text.as_deref(), Some("é [CREDIT_CARD]"));
    assert_eq!((&all[5].input_text, &all[5].output_text), (&None, &None));
    // The chain links every record to the previous one, numbered from 1 for this replica.
    let key = ChainKey::new(KEY);
    assert_eq!(all[0].replica, "rep-a");
    assert_eq!(
        all.iter().map(|r| r.seq).collect::<Vec<_>>(),
        (1..=10).collect::<Vec<_>>()
    );
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
    let estimated: i64 = store
        .spend_report(GroupBy::User, 0)
        .await
        .unwrap()
        .iter()
        .map(|r| r.estimated_requests)
        .sum();
    assert_eq!(estimated, 1);
    assert_eq!(last2[1].request_id, "req_9");
    chain_suite(store, spool, raw).await;
}

/// `verify` proves the chain, names the first altered, missing or reordered row, and still
/// passes after a restart and after pruning (behind an anchor).
async fn chain_suite(store: &Store, spool: &std::path::Path, raw: &Raw) {
    let key = ChainKey::new(KEY);
    let report = store.audit_verify(&key, None).await.unwrap();
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.chains.len(), 1);
    assert_eq!(report.chains[0].records, 10);
    assert_eq!(report.chains[0].range, Some((1, 10)));
    // A writer started again continues the chain where it stopped.
    let w = AuditWriter::spawn(store.clone(), config(spool))
        .await
        .unwrap();
    w.submit(record("after_restart", "bob", "allowed", 2_000));
    w.close().await;
    let report = store.audit_verify(&key, None).await.unwrap();
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.chains[0].range, Some((1, 11)));
    // Another replica keeps its own chain beside it.
    let other = spool.with_file_name("spool-b");
    let b = AuditWriter::spawn(
        store.clone(),
        SpoolConfig {
            replica: "rep-b".into(),
            ..config(&other)
        },
    )
    .await
    .unwrap();
    b.submit(record("b_0", "carol", "allowed", 3_000));
    b.submit(record("b_1", "carol", "allowed", 3_001));
    b.close().await;
    let report = store.audit_verify(&key, None).await.unwrap();
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.chains.len(), 2);
    assert_eq!(report.chains[1].replica, "rep-b");
    assert_eq!(report.chains[1].range, Some((1, 2)));
    // Another key proves nothing.
    let wrong = ChainKey::new(b"not-the-key-0123456789abcdef01234");
    assert!(!store.audit_verify(&wrong, None).await.unwrap().ok());

    let first_error = |r: VerifyReport| r.chains[0].error.clone().unwrap();
    // Altered: a blocked request rewritten as allowed.
    raw.exec("UPDATE audit SET status = 200, outcome = 'allowed' WHERE seq = 8")
        .await;
    let e = first_error(store.audit_verify(&key, None).await.unwrap());
    assert_eq!(
        e,
        VerifyError::Altered {
            replica: "rep-a".into(),
            seq: 8,
            request_id: "req_7".into()
        }
    );
    assert!(e.to_string().contains("req_7"), "{e}");
    raw.exec("UPDATE audit SET status = 403, outcome = 'blocked' WHERE seq = 8")
        .await;
    assert!(store.audit_verify(&key, None).await.unwrap().ok());
    // Reordered: two rows swap places.
    raw.exec("UPDATE audit SET seq = 100 WHERE seq = 4").await;
    raw.exec("UPDATE audit SET seq = 4 WHERE seq = 5").await;
    raw.exec("UPDATE audit SET seq = 5 WHERE seq = 100").await;
    let e = first_error(store.audit_verify(&key, None).await.unwrap());
    assert_eq!(
        e,
        VerifyError::Altered {
            replica: "rep-a".into(),
            seq: 4,
            request_id: "req_4".into()
        }
    );
    raw.exec("UPDATE audit SET seq = 100 WHERE seq = 4").await;
    raw.exec("UPDATE audit SET seq = 4 WHERE seq = 5").await;
    raw.exec("UPDATE audit SET seq = 5 WHERE seq = 100").await;
    assert!(store.audit_verify(&key, None).await.unwrap().ok());
    // Deleted: the gap is named, with the record after it.
    raw.exec("DELETE FROM audit WHERE seq = 6").await;
    let e = first_error(store.audit_verify(&key, None).await.unwrap());
    assert_eq!(
        e,
        VerifyError::Missing {
            replica: "rep-a".into(),
            expected: 6,
            found: 7,
            request_id: "req_6".into()
        }
    );
    // --since after the gap proves the rest (linked to the record before the start).
    assert!(store.audit_verify(&key, Some(1_007)).await.unwrap().ok());
    // The last record deleted: the head says there was one more.
    raw.exec("DELETE FROM audit WHERE seq = 11").await;
    let e = first_error(store.audit_verify(&key, Some(1_007)).await.unwrap());
    assert_eq!(
        e,
        VerifyError::TailMissing {
            replica: "rep-a".into(),
            last: 10,
            head: 11
        }
    );
    // Retention: cutting everything before time 1_008 leaves an anchor at seq 8, and what
    // remains still verifies (the gap at 6 went with the cut; the tail is still missing).
    let pruned = store.audit_prune(&key, 1_008).await.unwrap();
    assert_eq!(pruned.anchors, vec![("rep-a".to_owned(), 8)]);
    assert_eq!(pruned.deleted, 7);
    let r = store.audit_verify(&key, None).await.unwrap();
    assert_eq!(r.chains[0].range, Some((9, 10)));
    assert!(matches!(
        r.chains[0].error,
        Some(VerifyError::TailMissing { .. })
    ));
    // An anchor moved by hand (to hide a cut) no longer matches its MAC.
    raw.exec(&"UPDATE audit_anchors SET seq = 9".replace(
        "audit_anchors",
        &raw.table.replace("audit", "audit_anchors"),
    ))
    .await;
    assert!(matches!(
        first_error(store.audit_verify(&key, None).await.unwrap()),
        VerifyError::BadAnchor { .. }
    ));
}

/// A journal left by a crash (and a spool file of an older version) is replayed at start, in
/// order, once; lines that are not records are moved aside and counted, not dropped silently.
pub async fn replay_suite(store: &Store, spool: &std::path::Path) {
    std::fs::create_dir_all(spool).unwrap();
    // What an older version left: unchained records in audit-spool.jsonl.
    let old = AuditRecord {
        seq_id: "0000000000500-old-1".into(),
        ..record("legacy_spooled", "bob", "allowed", 500)
    };
    std::fs::write(
        spool.join("audit-spool.jsonl"),
        format!("{}\n", serde_json::to_string(&old).unwrap()),
    )
    .unwrap();
    // What a killed writer left: sealed records, one garbage line and a torn last line.
    let w = AuditWriter::spawn(store.clone(), config(spool))
        .await
        .unwrap();
    w.close().await;
    let mut lines = Vec::new();
    for i in 0..3 {
        let mut r = record(&format!("crashed_{i}"), "bob", "allowed", 600 + i);
        r.replica = "rep-a".into();
        r.seq = i + 1;
        r.seq_id = format!("{:013}-rep-a-{:012}", r.time, r.seq);
        let prev = lines
            .last()
            .map(|l: &AuditRecord| l.digest.clone())
            .unwrap_or_default();
        r.digest = audit::chain_digest(&ChainKey::new(KEY), &prev, &r);
        lines.push(r);
    }
    let mut text = String::new();
    for (i, r) in lines.iter().enumerate() {
        text.push_str(&serde_json::to_string(r).unwrap());
        text.push('\n');
        if i == 0 {
            text.push_str("this is not a record\n");
        }
    }
    text.push_str("{\"request_id\":\"torn");
    let own = spool.join("rep-a");
    std::fs::write(own.join("audit-journal-000000000090.jsonl"), text).unwrap();
    // What another replica left when it died (its lock went with it): replayed too.
    let orphan_dir = spool.join("rep-z");
    std::fs::create_dir_all(&orphan_dir).unwrap();
    let mut orphan = record("orphan", "zed", "allowed", 650);
    orphan.replica = "rep-z".into();
    orphan.seq = 1;
    orphan.seq_id = "0000000000650-rep-z-000000000001".into();
    orphan.digest = audit::chain_digest(&ChainKey::new(KEY), "", &orphan);
    std::fs::write(
        orphan_dir.join("audit-journal-000000000001.jsonl"),
        format!("{}\n", serde_json::to_string(&orphan).unwrap()),
    )
    .unwrap();

    let w = AuditWriter::spawn(store.clone(), config(spool))
        .await
        .unwrap();
    // The chain goes on after the journal's last record, not the store's.
    w.submit(record("after_crash", "bob", "allowed", 700));
    w.flush().await;
    assert_eq!(w.spooled(), 0, "everything journaled is in the store");
    assert_eq!(w.rejected(), 2, "the garbage line and the torn one");
    w.close().await;
    let all = store.audit_query(&AuditFilter::default()).await.unwrap();
    let ids: Vec<&str> = all.iter().map(|r| r.request_id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "legacy_spooled",
            "crashed_0",
            "crashed_1",
            "crashed_2",
            "orphan",
            "after_crash"
        ]
    );
    assert_eq!(all[5].seq, 4);
    let rejected = std::fs::read_to_string(own.join("audit-spool.rejected")).unwrap();
    assert_eq!(rejected, "this is not a record\n{\"request_id\":\"torn\n");
    assert!(!spool.join("audit-spool.jsonl").exists());
    assert!(!own.join("audit-journal-000000000090.jsonl").exists());
    assert!(!orphan_dir.join("audit-journal-000000000001.jsonl").exists());
    // While a writer runs, its journal is its own: a second one for the same replica waits,
    // then refuses, naming the fix.
    let w = AuditWriter::spawn(store.clone(), config(spool))
        .await
        .unwrap();
    let second = AuditWriter::spawn(store.clone(), config(spool)).await;
    let err = second.err().unwrap().to_string();
    assert!(err.contains("in use by another running gateway"), "{err}");
    w.close().await;
    let report = store.audit_verify(&ChainKey::new(KEY), None).await.unwrap();
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.legacy, 1);
    assert_eq!(report.chains[0].records, 4);
    assert_eq!(report.chains[1].replica, "rep-z");
    assert_eq!(report.chains[1].records, 1);
}
