//! `portcullis scan --explain`: per guard, the score, the threshold and what pushed the score
//! up, so a user can see why a prompt was judged as it was and report or tune a false
//! positive. It judges the text again with each detector's explanation (about twice a scan's
//! cost): never on the request path, and its excerpts contain the text, so it is for the
//! operator's terminal only, never for a refusal.

use crate::config::Config;
use portcullis_core::Finding;
use serde_json::{Value, json};

/// Contributions shown per detector.
const TOP: usize = 8;

/// The explanation of `text` judged as a user message under `config`, beside the `findings`
/// the scan itself reported (PII and secret recognisers explain themselves by name).
pub fn explain(config: &Config, text: &str, findings: &[Finding]) -> Value {
    let mut out = serde_json::Map::new();
    let on = |name: &str| config.pipeline.input.iter().any(|g| g == name);
    if on("injection") && config.injection.mode != portcullis_core::Mode::Off {
        let e = portcullis_injection::Detector::builtin().explain(text, false, TOP);
        let user = &config.injection.config.user;
        out.insert(
            "injection".into(),
            json!({
                "action_on_attack": format!("{:?}", user.action).to_lowercase(),
                "threshold": user.threshold.unwrap_or(e.threshold),
                "ungrounded_threshold": user.ungrounded_threshold,
                "detail": e,
            }),
        );
    }
    if on("moderation")
        && config.moderation.mode != portcullis_core::Mode::Off
        && config.moderation.config.provider == portcullis_moderation::ProviderKind::Local
    {
        let e = portcullis_moderation::explain(
            portcullis_moderation::classifier::Model::builtin(),
            text,
            TOP,
        );
        out.insert(
            "moderation".into(),
            json!({
                "thresholds": config.moderation.config.thresholds,
                "detail": e,
            }),
        );
    }
    let pii: Vec<Value> = findings
        .iter()
        .filter(|f| f.detector != "injection" && f.detector != "moderation")
        .map(|f| {
            json!({"kind": f.kind, "recogniser": f.detector, "score": f.score,
                   "span": f.span, "note": f.note, "obfuscated": f.obfuscated})
        })
        .collect();
    out.insert("recognisers".into(), Value::Array(pii));
    Value::Object(out)
}
