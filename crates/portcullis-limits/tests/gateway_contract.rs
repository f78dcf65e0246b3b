//! The API as the gateway (`crates/portcullis`) uses it: if this stops compiling, the gateway
//! does too. Kept in step with `books.rs`, `app.rs` and `config.rs` there.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use portcullis_limits::{
    Admission, Decision, FailMode, Limiter, Limits, Money, Price, Pricing, Reservation,
    UnknownModel, limiter_from_url,
};
use std::collections::BTreeMap;
use std::sync::Arc;

#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize, serde::Serialize)]
struct Policy {
    limits: Limits,
}

#[derive(Debug, Clone, Default, serde::Deserialize)]
struct PricingConfig {
    models: BTreeMap<String, Price>,
    default: Option<Price>,
    #[serde(default)]
    unknown_model: UnknownModel,
}

#[derive(Debug, Clone, serde::Deserialize)]
struct LimitsConfig {
    on_error: FailMode,
}

#[tokio::test]
async fn the_gateway_contract_holds() {
    let limiter: Arc<dyn Limiter> = limiter_from_url("memory://", "portcullis", FailMode::FailOpen)
        .map_err(|e| e.to_string())
        .unwrap();
    let p: PricingConfig = toml::from_str(
        "unknown_model = 'refuse'\n[models]\n'my-ft' = { input = 3.0, cached_input = 1.5, output = 12.0 }",
    )
    .unwrap();
    let pricing = Pricing::builtin().with_overrides(&p.models, p.default, p.unknown_model);
    assert!(pricing.price("gpt-4o-mini").is_some());
    assert!(pricing.price("nope").is_none());
    let worst: Money = pricing.worst_case("my-ft", 1_000, 1_000).unwrap();
    assert_eq!(worst, 15_000);
    let cost: Option<i64> = pricing.cost("my-ft", 1_000, 500, 0);
    assert_eq!(cost, Some(2_250));

    let policy: Policy = serde_json::from_value(serde_json::json!({"limits": {"rpm": 5}})).unwrap();
    assert_eq!(policy.limits.rpm, Some(5));
    let c: LimitsConfig = toml::from_str("on_error = 'fail_closed'").unwrap();
    assert!(c.on_error == FailMode::FailClosed);
    let limits: Vec<(String, Limits)> = vec![(
        "key:k".to_owned(),
        Limits {
            rpm: Some(1),
            tpm: Some(100),
            tph: None,
            tpd: None,
            max_parallel: Some(1),
        },
    )];
    let admission = Admission {
        scopes: limits,
        tokens: 60,
    };
    let held: Option<Reservation> = match limiter.admit(&admission).await {
        Ok(Decision::Admitted(r, head)) => {
            assert!(!r.degraded);
            let headers: Vec<(&'static str, String)> = head.headers();
            assert_eq!(headers.len(), 6);
            Some(r)
        }
        Ok(Decision::Refused(_)) => panic!("refused"),
        Err(e) => panic!("{e}"),
    };
    match limiter.admit(&admission).await {
        Ok(Decision::Refused(f)) => {
            let mut headers = f.headroom.headers();
            headers.push(("retry-after", f.retry_after.as_secs().max(1).to_string()));
            headers.push(("retry-after-ms", f.retry_after.as_millis().to_string()));
            assert!(!f.message().is_empty());
            assert!(
                headers
                    .iter()
                    .any(|(k, _)| *k == "x-ratelimit-reset-requests")
            );
        }
        other => panic!("{other:?}"),
    }
    let r = held.unwrap();
    let actual = r.tokens;
    limiter.settle(&r, actual).await.unwrap();
    limiter.release(&r).await.unwrap();
    limiter.ping().await.unwrap();
}

/// Money budgets as the gateway holds them: worst case from a `Ceiling` (with `n`), a hold on
/// every budgeted scope, seeds from the ledger when asked, alerts, settlement, 429 headers.
#[tokio::test]
async fn the_gateway_budget_contract_holds() {
    use portcullis_limits::{
        Budget, BudgetAdmission, BudgetDecision, BudgetHold, Ceiling, Scope, SeedRequest,
    };
    // A fixed clock (2026-11-24T15:00Z) so that no day ends mid-test.
    let limiter: Arc<dyn Limiter> = Arc::new(portcullis_limits::MemoryLimiter::with_clock(
        Arc::new(|| 1_795_532_400_000),
    ));
    let pricing = Pricing::builtin();
    // 1,000 prompt tokens, max_tokens 500, n = 2 → gpt-4o: 2,500 + 2 × 5,000 µ$.
    let ceiling = Ceiling::new(1_000, 500, Some(2));
    assert_eq!(ceiling.tokens(), 2_000); // Admission::new(ceiling.tokens()) for token windows
    let worst: Money = pricing.worst_case_of("gpt-4o", ceiling).unwrap();
    assert_eq!(worst, 12_500);
    let ask = BudgetAdmission::new(worst)
        .budget(&Scope::Key("k1".into()), Budget::daily(1_000_000))
        .budget(
            &Scope::User("alice".into()),
            Budget::daily(40_000).with_soft_percent(80),
        )
        .budget(&Scope::User("alice".into()), Budget::monthly(5_000_000))
        .budget(&Scope::Global, Budget::monthly(100_000_000));
    // The ledger, as `Store::spend_total(scope, since_ms)` would answer.
    let ledger = |r: &SeedRequest| -> Money {
        assert!(r.period.start_ms < r.period.end_ms);
        if r.scope == "user:alice" { 10_000 } else { 0 }
    };
    let hold = |ask: BudgetAdmission| {
        let limiter = limiter.clone();
        async move {
            let mut ask = ask;
            for _ in 0..3 {
                match limiter.hold_budgets(&ask).await.unwrap() {
                    BudgetDecision::NeedSeed(need) => {
                        ask = ask
                            .seeded(need.iter().map(|r| r.answer(ledger(r))).collect::<Vec<_>>());
                    }
                    other => return other,
                }
            }
            panic!("seeds never enough")
        }
    };
    let held: BudgetHold = match hold(ask.clone()).await {
        BudgetDecision::Held(h, standings) => {
            assert!(!h.degraded);
            assert!(standings.iter().all(|s| !s.alert)); // 22,500 of 40,000 < 80 %
            h
        }
        other => panic!("{other:?}"),
    };
    // The second request crosses 80 % of alice's day: alert once (key = scope + period).
    match hold(ask.clone()).await {
        BudgetDecision::Held(h, standings) => {
            let alerts: Vec<_> = standings.iter().filter(|s| s.alert).collect();
            assert_eq!(alerts.len(), 1);
            assert!(alerts[0].alert_key().starts_with("user:alice:"));
            assert!(!alerts[0].alert_message().is_empty());
            limiter.release_budgets(&h).await.unwrap();
        }
        other => panic!("{other:?}"),
    }
    // Settle with the real cost before booking the ledger entry (at `held.at_ms`).
    limiter.settle_budgets(&held, 9_000).await.unwrap();
    limiter.settle_budgets(&held, 9_000).await.unwrap(); // idempotent
    // 19,000 spent: a third 12,500 fits (31,500), a fourth would pass 40,000 → 429
    // insufficient_quota.
    assert!(matches!(hold(ask.clone()).await, BudgetDecision::Held(..)));
    match hold(ask).await {
        BudgetDecision::Refused(f) => {
            assert_eq!(f.standing.scope, "user:alice");
            let headers: Vec<(&'static str, String)> = f.headers();
            assert_eq!(headers[0].0, "retry-after");
            assert_eq!(headers[0].1, f.retry_after_secs().to_string());
            assert!(f.message().contains("user:alice"));
        }
        other => panic!("{other:?}"),
    }
}
