//! Alerts: kept in full (details included), listed newest first, by kind and since a time,
//! and counted per kind over a period.

use super::*;

pub async fn alerts_suite(store: &Store) {
    let alert = |t: i64, kind: &str, subject: &str| StoredAlert {
        time_ms: t,
        kind: kind.into(),
        subject: subject.into(),
        message: format!("{kind} for {subject}"),
        details: serde_json::json!({"observed": t, "baseline": 1.5}),
    };
    assert!(
        store
            .alerts(&AlertFilter::default())
            .await
            .unwrap()
            .is_empty()
    );
    for a in [
        alert(100, "token_spike", "mallory"),
        alert(200, "user_flag_burst", "eve"),
        alert(300, "token_spike", "trudy"),
    ] {
        store.record_alert(&a).await.unwrap();
    }
    let all = store.alerts(&AlertFilter::default()).await.unwrap();
    assert_eq!(
        all,
        vec![
            alert(300, "token_spike", "trudy"),
            alert(200, "user_flag_burst", "eve"),
            alert(100, "token_spike", "mallory"),
        ]
    );
    let spikes = store
        .alerts(&AlertFilter {
            kind: Some("token_spike".into()),
            since_ms: Some(150),
            limit: None,
        })
        .await
        .unwrap();
    assert_eq!(spikes, vec![alert(300, "token_spike", "trudy")]);
    let one = store
        .alerts(&AlertFilter {
            limit: Some(1),
            ..AlertFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(one.len(), 1);
    // Counted per kind for the report: most frequent first, with the period's first and last
    // time, how many subjects, and the newest message as a sample.
    let summary = store.alert_summary(0).await.unwrap();
    assert_eq!(
        summary,
        vec![
            AlertSummary {
                kind: "token_spike".into(),
                count: 2,
                first_ms: 100,
                last_ms: 300,
                subjects: 2,
                sample: "token_spike for trudy".into(),
            },
            AlertSummary {
                kind: "user_flag_burst".into(),
                count: 1,
                first_ms: 200,
                last_ms: 200,
                subjects: 1,
                sample: "user_flag_burst for eve".into(),
            },
        ]
    );
    let recent = store.alert_summary(250).await.unwrap();
    assert_eq!(recent.len(), 1);
    assert_eq!((recent[0].count, recent[0].first_ms), (1, 300));
}
