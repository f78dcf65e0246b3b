//! `[limits]`: rate, token and concurrency limits and money budgets, per key, end user, team
//! and the whole gateway.

use portcullis_limits::{FailMode, Limits};
use serde::Deserialize;
use std::collections::BTreeMap;

/// `[limits]`: where rate-limit state lives, and the limits and budgets of keys, end users,
/// teams and the whole gateway. A key's own limits (set by `keys create --rpm …`) override
/// `per_key`; a named user's or team's section overrides `per_user`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// `memory://` (one process) or `redis://…` (shared by replicas).
    pub url: String,
    /// Prefix of every Redis key, so several gateways can share one Redis.
    pub prefix: String,
    /// When the limits backend or the ledger cannot be reached.
    pub on_error: FailMode,
    /// Output tokens reserved for a request that sets no `max_tokens`.
    pub default_max_tokens: u64,
    /// Fraction of a budget at which an alert is raised (once per period).
    pub soft_budget: f64,
    pub per_key: Policy,
    pub per_user: Policy,
    pub users: BTreeMap<String, Policy>,
    pub teams: BTreeMap<String, Policy>,
    pub global: Policy,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            url: "memory://".into(),
            prefix: "portcullis".into(),
            on_error: FailMode::FailOpen,
            default_max_tokens: 4096,
            soft_budget: 0.8,
            per_key: Policy::default(),
            per_user: Policy::default(),
            users: BTreeMap::new(),
            teams: BTreeMap::new(),
            global: Policy::default(),
        }
    }
}

/// Limits and money budgets for one scope; unset means unlimited.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Policy {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rpm: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tpm: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tph: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tpd: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_parallel: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget_daily_usd: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget_monthly_usd: Option<f64>,
    /// Routes (`x-portcullis-route`) this scope may ask for; a route's policy only tightens.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub routes: Option<Vec<String>>,
}

impl Policy {
    /// Whether nothing is limited.
    pub fn is_empty(&self) -> bool {
        *self == Policy::default()
    }

    /// Fields of `self`, falling back to `other` where unset.
    pub fn or(self, other: &Policy) -> Policy {
        Policy {
            rpm: self.rpm.or(other.rpm),
            tpm: self.tpm.or(other.tpm),
            tph: self.tph.or(other.tph),
            tpd: self.tpd.or(other.tpd),
            max_parallel: self.max_parallel.or(other.max_parallel),
            budget_daily_usd: self.budget_daily_usd.or(other.budget_daily_usd),
            budget_monthly_usd: self.budget_monthly_usd.or(other.budget_monthly_usd),
            routes: self.routes.or_else(|| other.routes.clone()),
        }
    }

    /// The rate and concurrency part.
    pub fn limits(&self) -> Limits {
        Limits {
            rpm: self.rpm,
            tpm: self.tpm,
            tph: self.tph,
            tpd: self.tpd,
            max_parallel: self.max_parallel,
        }
    }
}
