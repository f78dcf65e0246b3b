//! Model parameter policy: which models a caller may use, and for each sampling parameter
//! whether it is defaulted, clamped, forced or refused — so a prompt cannot buy itself a
//! hotter, longer or tool-wielding model than policy allows.

use crate::ConfigError;
use portcullis_core::guard::{Edit, GuardError, Input, Verdict};
use portcullis_core::{ApiError, ChatRequest, Context, Finding, Guard};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// Named parameter profiles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Preset {
    /// The brief's low-variance profile: temperature ≤ 0.3, top_p ≤ 0.9, max_tokens ≤ 500,
    /// penalties defaulted to 0.5.
    Conservative,
}

/// What to do with a numeric value outside `[min, max]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutOfRange {
    /// Bring it to the nearest bound.
    #[default]
    Clamp,
    /// Refuse the request with a 400 naming the parameter.
    Refuse,
}

/// The policy for one parameter.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ParamRule {
    /// Set when the request leaves the parameter out.
    pub default: Option<Value>,
    /// Lowest numeric value allowed.
    pub min: Option<f64>,
    /// Highest numeric value allowed.
    pub max: Option<f64>,
    /// Clamp or refuse values outside the range.
    pub out_of_range: OutOfRange,
    /// Always this value, whatever the request says (`null` strips the parameter).
    pub force: Option<Value>,
    /// The parameter may not be used at all.
    pub refuse: bool,
    /// For string-or-object parameters (`tool_choice`, `response_format`): allowed kinds,
    /// e.g. `["auto", "none"]` or `["text", "json_schema"]`.
    pub allowed: Vec<String>,
}

/// The governed parameters, in the order they are checked.
pub const GOVERNED: [&str; 10] = [
    "temperature",
    "top_p",
    "max_tokens",
    "frequency_penalty",
    "presence_penalty",
    "n",
    "logit_bias",
    "tools",
    "tool_choice",
    "response_format",
];

/// `[params]`: model allow-list, aliases, pinning, and one rule per governed parameter.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ParamsConfig {
    /// A named profile the rules below refine.
    pub preset: Option<Preset>,
    /// Models a caller may use (after aliases); empty allows any.
    pub models: Vec<String>,
    /// Friendly names mapped to real models, e.g. `fast = "gpt-4o-mini"`.
    pub aliases: BTreeMap<String, String>,
    /// Every request goes to this model, whatever it names.
    pub pin_model: Option<String>,
    pub temperature: Option<ParamRule>,
    pub top_p: Option<ParamRule>,
    /// Also governs `max_completion_tokens`.
    pub max_tokens: Option<ParamRule>,
    pub frequency_penalty: Option<ParamRule>,
    pub presence_penalty: Option<ParamRule>,
    pub n: Option<ParamRule>,
    pub logit_bias: Option<ParamRule>,
    pub tools: Option<ParamRule>,
    pub tool_choice: Option<ParamRule>,
    pub response_format: Option<ParamRule>,
    /// Policies for a team (`[params.teams.research]`), refining this one.
    pub teams: BTreeMap<String, ParamsConfig>,
    /// Policies for one gateway key (`[params.keys.<key id>]`, the id `keys list` prints),
    /// refining this one; a key wins over its team.
    pub keys: BTreeMap<String, ParamsConfig>,
    /// Policies for a route (`[params.routes.rag]`, chosen by the `x-portcullis-route` header),
    /// refining this one; a route wins over a team.
    pub routes: BTreeMap<String, ParamsConfig>,
}

/// The resolved policy: preset merged with explicit rules, validated.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ParamPolicy {
    models: Vec<String>,
    aliases: BTreeMap<String, String>,
    pin_model: Option<String>,
    rules: Vec<(&'static str, ParamRule)>,
}

fn conservative(name: &str) -> Option<ParamRule> {
    let ceiling = |v: f64| ParamRule {
        default: Some(Value::from(v)),
        max: Some(v),
        min: Some(0.0),
        ..ParamRule::default()
    };
    match name {
        "temperature" => Some(ceiling(0.3)),
        "top_p" => Some(ceiling(0.9)),
        "max_tokens" => Some(ParamRule {
            default: Some(Value::from(500)),
            max: Some(500.0),
            min: Some(1.0),
            ..ParamRule::default()
        }),
        "frequency_penalty" | "presence_penalty" => Some(ParamRule {
            default: Some(Value::from(0.5)),
            min: Some(-2.0),
            max: Some(2.0),
            ..ParamRule::default()
        }),
        _ => None,
    }
}

impl ParamsConfig {
    fn explicit(&self, name: &str) -> Option<&ParamRule> {
        match name {
            "temperature" => self.temperature.as_ref(),
            "top_p" => self.top_p.as_ref(),
            "max_tokens" => self.max_tokens.as_ref(),
            "frequency_penalty" => self.frequency_penalty.as_ref(),
            "presence_penalty" => self.presence_penalty.as_ref(),
            "n" => self.n.as_ref(),
            "logit_bias" => self.logit_bias.as_ref(),
            "tools" => self.tools.as_ref(),
            "tool_choice" => self.tool_choice.as_ref(),
            "response_format" => self.response_format.as_ref(),
            _ => None,
        }
    }

    /// Whether this config changes anything (so the guard can be left out of the pipeline).
    pub fn is_empty(&self) -> bool {
        *self == ParamsConfig::default()
    }

    /// `self` refined by `over`: its set fields win, the rest are inherited.
    fn refined_by(&self, over: &ParamsConfig) -> ParamsConfig {
        let pick = |a: &Option<ParamRule>, b: &Option<ParamRule>| match (a, b) {
            (Some(base), Some(o)) => Some(merge(base.clone(), o)),
            (base, o) => o.clone().or_else(|| base.clone()),
        };
        let mut aliases = self.aliases.clone();
        aliases.extend(over.aliases.clone());
        ParamsConfig {
            preset: over.preset.or(self.preset),
            models: if over.models.is_empty() {
                self.models.clone()
            } else {
                over.models.clone()
            },
            aliases,
            pin_model: over.pin_model.clone().or_else(|| self.pin_model.clone()),
            temperature: pick(&self.temperature, &over.temperature),
            top_p: pick(&self.top_p, &over.top_p),
            max_tokens: pick(&self.max_tokens, &over.max_tokens),
            frequency_penalty: pick(&self.frequency_penalty, &over.frequency_penalty),
            presence_penalty: pick(&self.presence_penalty, &over.presence_penalty),
            n: pick(&self.n, &over.n),
            logit_bias: pick(&self.logit_bias, &over.logit_bias),
            tools: pick(&self.tools, &over.tools),
            tool_choice: pick(&self.tool_choice, &over.tool_choice),
            response_format: pick(&self.response_format, &over.response_format),
            teams: BTreeMap::new(),
            keys: BTreeMap::new(),
            routes: BTreeMap::new(),
        }
    }

    /// Merges the preset with explicit rules and checks that every rule makes sense.
    pub fn resolve(&self) -> Result<ParamPolicy, ConfigError> {
        let mut rules = Vec::new();
        for name in GOVERNED {
            let preset = match self.preset {
                Some(Preset::Conservative) => conservative(name),
                None => None,
            };
            let rule = match (self.explicit(name), preset) {
                (Some(e), Some(p)) => merge(p, e),
                (Some(e), None) => e.clone(),
                (None, Some(p)) => p,
                (None, None) => continue,
            };
            if let (Some(lo), Some(hi)) = (rule.min, rule.max)
                && lo > hi
            {
                return Err(ConfigError(format!(
                    "params.{name}: min ({lo}) is above max ({hi})"
                )));
            }
            if let Some(d) = rule.default.as_ref().and_then(Value::as_f64)
                && (rule.min.is_some_and(|lo| d < lo) || rule.max.is_some_and(|hi| d > hi))
            {
                return Err(ConfigError(format!(
                    "params.{name}: default {d} is outside [min, max]"
                )));
            }
            rules.push((name, rule));
        }
        for (alias, target) in &self.aliases {
            if !self.models.is_empty() && !self.models.contains(target) {
                return Err(ConfigError(format!(
                    "params.aliases.{alias}: '{target}' is not in params.models"
                )));
            }
        }
        Ok(ParamPolicy {
            models: self.models.clone(),
            aliases: self.aliases.clone(),
            pin_model: self.pin_model.clone(),
            rules,
        })
    }
}

fn merge(base: ParamRule, over: &ParamRule) -> ParamRule {
    ParamRule {
        default: over.default.clone().or(base.default),
        min: over.min.or(base.min),
        max: over.max.or(base.max),
        out_of_range: over.out_of_range,
        force: over.force.clone().or(base.force),
        refuse: over.refuse || base.refuse,
        allowed: if over.allowed.is_empty() {
            base.allowed
        } else {
            over.allowed.clone()
        },
    }
}

/// Applies a [`ParamPolicy`] to every request: the route's, else the team's, else the default.
#[derive(Debug, Clone)]
pub struct ParamsGuard {
    policy: ParamPolicy,
    teams: BTreeMap<String, ParamPolicy>,
    keys: BTreeMap<String, ParamPolicy>,
    routes: BTreeMap<String, ParamPolicy>,
}

impl ParamsGuard {
    /// A guard from config, validated.
    pub fn new(config: &ParamsConfig) -> Result<Self, ConfigError> {
        let scoped = |map: &BTreeMap<String, ParamsConfig>, kind: &str| {
            map.iter()
                .map(|(name, c)| {
                    config
                        .refined_by(c)
                        .resolve()
                        .map(|p| (name.clone(), p))
                        .map_err(|e| ConfigError(format!("{kind}.{name}: {}", e.0)))
                })
                .collect::<Result<BTreeMap<_, _>, _>>()
        };
        Ok(ParamsGuard {
            policy: config.resolve()?,
            teams: scoped(&config.teams, "teams")?,
            keys: scoped(&config.keys, "keys")?,
            routes: scoped(&config.routes, "routes")?,
        })
    }

    /// The policy for a request with gateway key `key`, from `team`, on `route` (the most
    /// specific one configured: route, then key, then team, then the default).
    pub fn policy_for(
        &self,
        key: Option<&str>,
        team: Option<&str>,
        route: Option<&str>,
    ) -> &ParamPolicy {
        route
            .and_then(|r| self.routes.get(r))
            .or_else(|| key.and_then(|k| self.keys.get(k)))
            .or_else(|| team.and_then(|t| self.teams.get(t)))
            .unwrap_or(&self.policy)
    }
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
        for (name, rule) in &self.rules {
            // `max_tokens` governs whichever output ceiling the request uses.
            let field = if *name == "max_tokens" && req.max_completion_tokens.is_some() {
                "max_completion_tokens"
            } else {
                name
            };
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

#[async_trait::async_trait]
impl Guard for ParamsGuard {
    fn name(&self) -> &str {
        "params"
    }

    async fn check_input(&self, input: &Input<'_>, ctx: &Context) -> Result<Verdict, GuardError> {
        let policy = self.policy_for(
            Some(ctx.principal.key_id.as_str()),
            ctx.principal.team.as_deref(),
            ctx.route.as_deref(),
        );
        Ok(match policy.apply(input.request) {
            Err(refusal) => refusal,
            Ok(sets) if sets.is_empty() => Verdict::allow(),
            Ok(sets) => {
                let findings = sets
                    .iter()
                    .map(|(n, _)| Finding::new("param_changed", "params", 1.0).note(n.clone()))
                    .collect();
                let edits = sets
                    .into_iter()
                    .map(|(name, value)| Edit::SetParam { name, value })
                    .collect();
                Verdict::transform(edits, findings)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy(toml_text: &str) -> ParamPolicy {
        let c: ParamsConfig = toml::from_str(toml_text).unwrap();
        c.resolve().unwrap()
    }

    fn req(v: Value) -> ChatRequest {
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

    #[test]
    fn bad_rules_are_refused_at_start_up() {
        let c: ParamsConfig = toml::from_str("[temperature]\nmin = 1.0\nmax = 0.5").unwrap();
        assert!(c.resolve().unwrap_err().0.contains("params.temperature"));
        assert!(toml::from_str::<ParamsConfig>("[temperature]\nmaximum = 1").is_err());
    }

    #[tokio::test]
    async fn teams_and_routes_refine_the_default() {
        let g = ParamsGuard::new(
            &toml::from_str(
                "preset = \"conservative\"\n[teams.research.temperature]\nmax = 1.0\n[routes.rag]\npin_model = \"gpt-4o-mini\"\n[keys.k-1.temperature]\nforce = 0.0",
            )
            .unwrap(),
        )
        .unwrap();
        let r = req(json!({"model":"gpt-4o","messages":[],"temperature":0.8}));
        let sets = |team: Option<&str>, route: Option<&str>| -> BTreeMap<String, Value> {
            g.policy_for(None, team, route)
                .apply(&r)
                .unwrap()
                .into_iter()
                .collect()
        };
        assert_eq!(sets(None, None)["temperature"], json!(0.3));
        let research = sets(Some("research"), None);
        assert!(
            !research.contains_key("temperature"),
            "0.8 is within the team's range"
        );
        assert_eq!(research["max_tokens"], json!(500), "the rest is inherited");
        assert_eq!(
            sets(Some("research"), Some("rag"))["model"],
            json!("gpt-4o-mini")
        );
        let key: BTreeMap<String, Value> = g
            .policy_for(Some("k-1"), Some("research"), None)
            .apply(&r)
            .unwrap()
            .into_iter()
            .collect();
        assert_eq!(
            key["temperature"],
            json!(0.0),
            "a key's policy wins over its team's"
        );
        assert_eq!(key["max_tokens"], json!(500));
        assert!(
            ParamsGuard::new(
                &toml::from_str("[teams.x.temperature]\nmin = 2.0\nmax = 1.0").unwrap()
            )
            .is_err()
        );
    }

    #[tokio::test]
    async fn the_guard_reports_what_it_changed() {
        let g = ParamsGuard::new(&toml::from_str("preset = \"conservative\"").unwrap()).unwrap();
        let r =
            req(json!({"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":0.9}));
        let segs = r.segments();
        let ctx = Context::new("t", portcullis_core::Principal::default());
        let v = g
            .check_input(
                &Input {
                    request: &r,
                    segments: &segs,
                },
                &ctx,
            )
            .await
            .unwrap();
        assert!(matches!(v.action, portcullis_core::Action::Transform(ref e) if e.len() == 5));
        assert!(
            v.findings
                .iter()
                .any(|f| f.note.as_deref() == Some("temperature"))
        );
    }
}
