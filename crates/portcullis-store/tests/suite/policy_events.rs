//! Policy history: changes kept as made, listed oldest first since a time, and each guard's
//! latest change found.

use super::*;

pub async fn policy_events_suite(store: &Store) {
    let event = |t: i64, guard: &str, from: &str, to: &str, how: &str| PolicyEvent {
        time_ms: t,
        guard: guard.into(),
        from: from.into(),
        to: to.into(),
        how: how.into(),
        who: "ops".into(),
    };
    assert!(store.policy_events(0, 100).await.unwrap().is_empty());
    assert!(store.latest_policy_events().await.unwrap().is_empty());
    let history = [
        event(
            100,
            "moderation",
            "monitor",
            "enforce 10% by user",
            "promote",
        ),
        event(200, "injection", "enforce", "monitor", "demote"),
        event(
            300,
            "moderation",
            "enforce 10% by user",
            "enforce",
            "reload (SIGHUP)",
        ),
    ];
    for e in &history {
        store.record_policy_event(e).await.unwrap();
    }
    assert_eq!(store.policy_events(0, 100).await.unwrap(), history.to_vec());
    assert_eq!(
        store.policy_events(150, 100).await.unwrap(),
        history[1..].to_vec()
    );
    // A limit keeps the newest, still listed oldest first.
    assert_eq!(
        store.policy_events(0, 2).await.unwrap(),
        history[1..].to_vec()
    );
    let latest = store.latest_policy_events().await.unwrap();
    assert_eq!(latest.len(), 2);
    assert_eq!(latest["moderation"], history[2]);
    assert_eq!(latest["injection"], history[1]);
}
