//! Review labels: stored, replaced on relabel, read back per period; would-block records found.

use super::*;

pub async fn review_suite(store: &Store) {
    let shadow = serde_json::json!([
        {"guard": "size", "outcome": "allow", "mode": "enforce"},
        {"guard": "injection", "outcome": "would_block", "mode": "monitor"}
    ]);
    let records: Vec<AuditRecord> = (0..4)
        .map(|i| AuditRecord {
            seq_id: format!("0000{i}"),
            verdicts: if i % 2 == 0 {
                shadow.clone()
            } else {
                serde_json::json!([{"guard": "size", "outcome": "allow"}])
            },
            ..record(&format!("req_{i}"), "ann", "allowed", 1_000 + i)
        })
        .collect();
    store.audit_insert(&records).await.unwrap();

    let all = store.judged_records(0, false).await.unwrap();
    assert_eq!(all.len(), 4);
    let shadowed = store.judged_records(0, true).await.unwrap();
    let ids: Vec<&str> = shadowed.iter().map(|r| r.seq_id.as_str()).collect();
    assert_eq!(ids, ["00000", "00002"]);
    assert_eq!(shadowed[0].verdicts[1]["guard"], "injection");
    assert_eq!(store.judged_records(1_001, true).await.unwrap().len(), 1);
    assert!(store.judged_record("nope").await.unwrap().is_none());
    assert_eq!(
        store.judged_record("00002").await.unwrap().unwrap().time_ms,
        1_002
    );

    store
        .label_verdict("00000", "injection", Label::Wrong)
        .await
        .unwrap();
    store
        .label_verdict("00000", "injection", Label::Right)
        .await
        .unwrap();
    store
        .label_verdict("00002", "injection", Label::Wrong)
        .await
        .unwrap();
    let labels = store.review_labels(0).await.unwrap();
    let got: Vec<(&str, Label)> = labels
        .iter()
        .map(|l| (l.seq_id.as_str(), l.label))
        .collect();
    assert_eq!(got, [("00000", Label::Right), ("00002", Label::Wrong)]);
    assert_eq!(store.review_labels(1_001).await.unwrap().len(), 1);
}
