//! Alerts: kept in full (details included), listed newest first, by kind and since a time.

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
}
