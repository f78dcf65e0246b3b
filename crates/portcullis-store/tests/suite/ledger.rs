//! The spend ledger: idempotent entries, totals per scope and time, reports.

use super::*;

pub async fn ledger_suite(store: &Store) {
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
        usage_estimated: id == "r2",
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
    // Whether usage was estimated is kept with each entry.
    let ann = by_user
        .iter()
        .find(|r| r.group.as_deref() == Some("ann"))
        .unwrap();
    assert_eq!((ann.requests, ann.estimated_requests), (2, 1));
    assert_eq!(by_model[0].estimated_requests, 0);
}
