//! The audit log: batches, queries, the digest chain, the ledger it books.

use super::*;

pub async fn audit_suite(store: &Store, spool: &std::path::Path) {
    let w = AuditWriter::spawn(
        store.clone(),
        SpoolConfig {
            dir: spool.to_owned(),
            ..Default::default()
        },
    );
    for i in 0..10 {
        w.submit(AuditRecord {
            usage_estimated: i == 5,
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
    let estimated: i64 = store
        .spend_report(GroupBy::User, 0)
        .await
        .unwrap()
        .iter()
        .map(|r| r.estimated_requests)
        .sum();
    assert_eq!(estimated, 1);
    assert_eq!(last2[1].request_id, "req_9");
}
