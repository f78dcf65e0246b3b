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
