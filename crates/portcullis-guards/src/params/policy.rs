//! A resolved parameter policy applied to one request: the model pinned, aliased or refused,
//! then each governed parameter forced, defaulted, clamped or refused.

use super::{OutOfRange, ParamRule};
use portcullis_core::guard::Verdict;
use portcullis_core::{ApiError, ChatRequest, Finding};
use serde_json::Value;
use std::collections::BTreeMap;

/// The resolved policy: preset merged with explicit rules, validated.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ParamPolicy {
    pub(super) models: Vec<String>,
    pub(super) aliases: BTreeMap<String, String>,
    pub(super) pin_model: Option<String>,
    pub(super) rules: Vec<(&'static str, ParamRule)>,
}

fn refuse(param: &str, message: String) -> Verdict {
    Verdict::block(
        ApiError::invalid_request(message).with_param(param),
        vec![Finding::new("param_refused", "params", 1.0).note(param.to_owned())],
    )
}

/// The kind of a `tool_choice` / `response_format` value: its string, or its `type`.
fn kind_of(v: &Value) -> Option<&str> {
    v.as_str().or_else(|| v.get("type").and_then(Value::as_str))
}

impl ParamPolicy {
    /// The edits (or the refusal) this policy makes to `req`.
    pub fn apply(&self, req: &ChatRequest) -> Result<Vec<(String, Value)>, Verdict> {
        let mut sets: Vec<(String, Value)> = Vec::new();
        // Model: pin, alias, allow-list.
        let mut model = req.model.clone();
        if let Some(pin) = &self.pin_model {
            model = pin.clone();
        } else if let Some(real) = self.aliases.get(&model) {
            model = real.clone();
        }
        if !self.models.is_empty() && !self.models.contains(&model) {
            return Err(Verdict::block(
                ApiError::policy(
                    "model_not_allowed",
                    format!(
                        "The model '{model}' is not allowed by this gateway's policy; allowed: {}.",
                        self.models.join(", ")
                    ),
                )
                .with_param("model"),
                vec![Finding::new("model_not_allowed", "params", 1.0)],
            ));
        }
        if model != req.model {
            sets.push(("model".into(), Value::String(model)));
        }
        // `max_tokens` governs whichever output ceilings the request uses — both, when it sends
        // both (a provider may honour either).
        let mut checks: Vec<(&str, &ParamRule)> = Vec::with_capacity(self.rules.len() + 1);
        for (name, rule) in &self.rules {
            if *name == "max_tokens" {
                match (
                    req.max_tokens.is_some(),
                    req.max_completion_tokens.is_some(),
                ) {
                    (_, false) => checks.push(("max_tokens", rule)),
                    (false, true) => checks.push(("max_completion_tokens", rule)),
                    (true, true) => {
                        checks.push(("max_tokens", rule));
                        checks.push(("max_completion_tokens", rule));
                    }
                }
            } else {
                checks.push((name, rule));
            }
        }
        for (field, rule) in checks {
            let current = req.param(field);
            if rule.refuse {
                if current.is_some() {
                    return Err(refuse(
                        field,
                        format!("The parameter '{field}' is not allowed by this gateway's policy."),
                    ));
                }
                continue;
            }
            if let Some(forced) = &rule.force {
                if current.as_ref() != Some(forced) {
                    sets.push((field.to_owned(), forced.clone()));
                }
                continue;
            }
            let Some(value) = current else {
                if let Some(d) = &rule.default {
                    sets.push((field.to_owned(), d.clone()));
                }
                continue;
            };
            if !rule.allowed.is_empty() {
                let kind = kind_of(&value).unwrap_or("");
                if !rule.allowed.iter().any(|a| a == kind) {
                    return Err(refuse(
                        field,
                        format!(
                            "'{field}' of kind '{kind}' is not allowed; allowed: {}.",
                            rule.allowed.join(", ")
                        ),
                    ));
                }
            }
            if let Some(x) = value.as_f64() {
                let lo = rule.min.unwrap_or(f64::NEG_INFINITY);
                let hi = rule.max.unwrap_or(f64::INFINITY);
                if x < lo || x > hi {
                    match rule.out_of_range {
                        OutOfRange::Refuse => {
                            return Err(refuse(
                                field,
                                format!("'{field}' is {x}; this gateway allows {lo} to {hi}."),
                            ));
                        }
                        OutOfRange::Clamp => {
                            let c = x.clamp(lo, hi);
                            let v = if value.is_u64() || value.is_i64() {
                                Value::from(c.round() as i64)
                            } else {
                                Value::from(c)
                            };
                            sets.push((field.to_owned(), v));
                        }
                    }
                }
            }
        }
        Ok(sets)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::params::ParamsConfig;
    use serde_json::json;

    fn policy(toml_text: &str) -> ParamPolicy {
        let c: ParamsConfig = toml::from_str(toml_text).unwrap();
        c.resolve().unwrap()
    }

    pub(crate) fn req(v: Value) -> ChatRequest {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn conservative_preset_clamps_and_defaults() {
        let p = policy("preset = \"conservative\"");
        let sets = p
            .apply(&req(
                json!({"model":"m","messages":[],"temperature":1.2,"top_p":0.5}),
            ))
            .unwrap();
        let got: BTreeMap<_, _> = sets.into_iter().collect();
        assert_eq!(got["temperature"], json!(0.3));
        assert!(!got.contains_key("top_p"), "in-range values stay");
        assert_eq!(got["max_tokens"], json!(500));
        assert_eq!(got["frequency_penalty"], json!(0.5));
        assert_eq!(got["presence_penalty"], json!(0.5));
    }

    #[test]
    fn max_tokens_rule_governs_max_completion_tokens_too() {
        let p = policy("preset = \"conservative\"");
        let sets = p
            .apply(&req(
                json!({"model":"m","messages":[],"max_completion_tokens":4000}),
            ))
            .unwrap();
        assert!(sets.contains(&("max_completion_tokens".into(), json!(500))));
        assert!(!sets.iter().any(|(n, _)| n == "max_tokens"));
    }

    #[test]
    fn refusals_name_the_parameter() {
        let p = policy(
            "[logit_bias]\nrefuse = true\n[temperature]\nmax = 1.0\nout_of_range = \"refuse\"",
        );
        let err = p
            .apply(&req(
                json!({"model":"m","messages":[],"logit_bias":{"1":5}}),
            ))
            .unwrap_err();
        let portcullis_core::Action::Block(e) = err.action else {
            panic!()
        };
        assert_eq!((e.status, e.param.as_deref()), (400, Some("logit_bias")));
        let err = p
            .apply(&req(json!({"model":"m","messages":[],"temperature":1.5})))
            .unwrap_err();
        let portcullis_core::Action::Block(e) = err.action else {
            panic!()
        };
        assert_eq!(e.param.as_deref(), Some("temperature"));
    }

    #[test]
    fn models_aliases_and_kinds() {
        let p = policy(
            "models = [\"gpt-4o-mini\"]\n[aliases]\nfast = \"gpt-4o-mini\"\n[tool_choice]\nallowed = [\"auto\", \"none\"]",
        );
        let sets = p
            .apply(&req(json!({"model":"fast","messages":[]})))
            .unwrap();
        assert_eq!(sets, vec![("model".to_owned(), json!("gpt-4o-mini"))]);
        assert!(
            p.apply(&req(json!({"model":"gpt-4o","messages":[]})))
                .is_err()
        );
        let forced_fn = json!({"type":"function","function":{"name":"x"}});
        assert!(
            p.apply(&req(
                json!({"model":"gpt-4o-mini","messages":[],"tool_choice":forced_fn})
            ))
            .is_err()
        );
        assert!(
            p.apply(&req(
                json!({"model":"gpt-4o-mini","messages":[],"tool_choice":"auto"})
            ))
            .is_ok()
        );
    }
}
