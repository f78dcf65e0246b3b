//! `[params]` as written: the presets, one rule per governed parameter, the team, key and
//! route refinements, and their resolution into a validated [`ParamPolicy`].

use super::ParamPolicy;
use crate::ConfigError;
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
    pub(super) fn refined_by(&self, over: &ParamsConfig) -> ParamsConfig {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_rules_are_refused_at_start_up() {
        let c: ParamsConfig = toml::from_str("[temperature]\nmin = 1.0\nmax = 0.5").unwrap();
        assert!(c.resolve().unwrap_err().0.contains("params.temperature"));
        assert!(toml::from_str::<ParamsConfig>("[temperature]\nmaximum = 1").is_err());
    }
}
