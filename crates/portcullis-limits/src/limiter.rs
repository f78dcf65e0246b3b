//! The limiter contract: what is asked (`Admission`), what is answered (`Decision`), and the
//! `Limiter` trait both backends implement.
//!
//! Semantics, shared by every backend:
//! - Each (scope, limit) pair is a sliding window (see [`crate::window`]): requests per minute,
//!   tokens per minute / hour / day. Concurrency (`max_parallel`) is a count of leased slots.
//! - A request names several scopes (key, end user, team, global); it is admitted only if
//!   **every** limit of **every** scope has room, and then all are charged together, atomically.
//!   A refusal charges nothing.
//! - Tokens are reserved at admission (prompt + output ceiling) and corrected by
//!   [`Limiter::settle`] with the real usage.
//! - [`Limiter::release`] is for a call that failed: its tokens are refunded, its parallel slot
//!   freed, but **the request still counts toward `rpm`** — it reached the gateway and cost work,
//!   and refunding it would let a client that provokes failures retry without limit.
//! - Settling or releasing is idempotent: the second call does nothing.
//! - A parallel slot is a lease: if its holder dies without settling, it frees itself after the
//!   lease (15 minutes by default).

use crate::budget_hold::{BudgetAdmission, BudgetDecision, BudgetHold};
pub use crate::headers::{Headroom, Room, openai_duration};
use crate::pricing::Money;
use crate::window::Slicing;
use serde::Deserialize;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Limits for one scope; `None` means unlimited. Config: `rpm`, `tpm`, `tph`, `tpd`,
/// `max_parallel`, all unset by default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Requests per minute (sliding).
    pub rpm: Option<u64>,
    /// Tokens (prompt + output) per minute (sliding).
    pub tpm: Option<u64>,
    /// Tokens per hour (sliding).
    pub tph: Option<u64>,
    /// Tokens per day (sliding 24 h, not the calendar day).
    pub tpd: Option<u64>,
    /// Requests in flight at once.
    pub max_parallel: Option<u64>,
}

impl Limits {
    /// Whether nothing is limited, so a caller can skip the limiter.
    pub fn is_empty(&self) -> bool {
        *self == Limits::default()
    }

    /// Fields of `self`, falling back to `other` where unset (key settings over defaults).
    pub fn or(self, other: Limits) -> Limits {
        Limits {
            rpm: self.rpm.or(other.rpm),
            tpm: self.tpm.or(other.tpm),
            tph: self.tph.or(other.tph),
            tpd: self.tpd.or(other.tpd),
            max_parallel: self.max_parallel.or(other.max_parallel),
        }
    }

    fn get(&self, limit: Limit) -> Option<u64> {
        match limit {
            Limit::Rpm => self.rpm,
            Limit::Tpm => self.tpm,
            Limit::Tph => self.tph,
            Limit::Tpd => self.tpd,
            Limit::MaxParallel => self.max_parallel,
        }
    }
}

/// One of the five limits a scope can carry, so a refusal can say which one refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Limit {
    /// Requests per minute.
    Rpm,
    /// Tokens per minute.
    Tpm,
    /// Tokens per hour.
    Tph,
    /// Tokens per day.
    Tpd,
    /// Requests in flight.
    MaxParallel,
}

impl Limit {
    /// Every limit, in checking order.
    pub const ALL: [Limit; 5] = [
        Limit::Rpm,
        Limit::Tpm,
        Limit::Tph,
        Limit::Tpd,
        Limit::MaxParallel,
    ];

    /// The config name (`rpm`, `tpm`, `tph`, `tpd`, `max_parallel`).
    pub fn name(self) -> &'static str {
        match self {
            Limit::Rpm => "rpm",
            Limit::Tpm => "tpm",
            Limit::Tph => "tph",
            Limit::Tpd => "tpd",
            Limit::MaxParallel => "max_parallel",
        }
    }

    /// What it counts.
    pub fn kind(self) -> Kind {
        match self {
            Limit::Rpm => Kind::Requests,
            Limit::Tpm | Limit::Tph | Limit::Tpd => Kind::Tokens,
            Limit::MaxParallel => Kind::Parallel,
        }
    }

    /// The sliding window length (zero for concurrency, which has none).
    pub fn window(self) -> Duration {
        let s = self.slicing();
        Duration::from_millis((s.g_ms * s.n) as u64)
    }

    /// Slices: 1 s for the minute windows, 1 min for the hour, 10 min for the day.
    pub(crate) fn slicing(self) -> Slicing {
        match self {
            Limit::Rpm | Limit::Tpm => Slicing { g_ms: 1_000, n: 60 },
            Limit::Tph => Slicing {
                g_ms: 60_000,
                n: 60,
            },
            Limit::Tpd => Slicing {
                g_ms: 600_000,
                n: 144,
            },
            Limit::MaxParallel => Slicing { g_ms: 1, n: 0 },
        }
    }

    /// Short suffix of storage keys.
    pub(crate) fn suffix(self) -> &'static str {
        match self {
            Limit::MaxParallel => "par",
            other => other.name(),
        }
    }
}

/// What a limit counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Requests (the `-requests` headers).
    Requests,
    /// Tokens (the `-tokens` headers).
    Tokens,
    /// Requests in flight.
    Parallel,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Requests => "requests",
            Kind::Tokens => "tokens",
            Kind::Parallel => "parallel requests",
        }
    }
}

/// Who a request is charged to; its [`Scope::id`] names the windows in the backend.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Scope {
    /// A gateway key, by key id.
    Key(String),
    /// An end user (the `user` field of a service key's request).
    User(String),
    /// A team.
    Team(String),
    /// Everything through this gateway.
    Global,
}

impl Scope {
    /// The scope id: `key:…`, `user:…`, `team:…` or `global`.
    pub fn id(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Key(k) => write!(f, "key:{k}"),
            Scope::User(u) => write!(f, "user:{u}"),
            Scope::Team(t) => write!(f, "team:{t}"),
            Scope::Global => f.write_str("global"),
        }
    }
}

/// A request to admit: the scopes it is charged to and the tokens it may use.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Admission {
    /// `(scope id, limits)`, e.g. `("key:key_ab12", …)`, `("user:alice", …)`; see [`Scope`].
    pub scopes: Vec<(String, Limits)>,
    /// Tokens to reserve: prompt tokens plus the output ceiling (for `n` choices; see
    /// [`crate::Ceiling::tokens`]). Counted as at most [`MAX_COUNT`].
    pub tokens: u64,
}

impl Admission {
    /// An admission reserving `tokens`, charged to no scope yet.
    pub fn new(tokens: u64) -> Admission {
        Admission {
            scopes: Vec::new(),
            tokens,
        }
    }

    /// Also charges `scope` under `limits` (scopes with no limit are skipped).
    pub fn scope(mut self, scope: &Scope, limits: Limits) -> Admission {
        if !limits.is_empty() {
            self.scopes.push((scope.id(), limits));
        }
        self
    }

    pub(crate) fn buckets(&self) -> Vec<BucketSpec> {
        let mut out = Vec::new();
        for (scope, l) in &self.scopes {
            for limit in Limit::ALL {
                let Some(capacity) = l.get(limit) else {
                    continue;
                };
                let cost = match limit.kind() {
                    Kind::Tokens => exact(self.tokens),
                    Kind::Requests | Kind::Parallel => 1,
                };
                out.push(BucketSpec {
                    key: format!("{scope}:{}", limit.suffix()),
                    scope: scope.clone(),
                    limit,
                    capacity: exact(capacity),
                    cost,
                });
            }
        }
        out
    }
}

/// The largest count a window holds exactly: 2⁵³ − 1, where Redis's Lua numbers (doubles) stop
/// being exact. Larger limits and token counts (only a client asking for absurd `max_tokens`,
/// or a limit meant as "unlimited") are counted as this, on every backend alike, so no
/// client-chosen number can overflow a counter or make a script fail.
pub const MAX_COUNT: u64 = (1 << 53) - 1;

/// `v`, capped at [`MAX_COUNT`].
pub(crate) fn exact(v: u64) -> u64 {
    v.min(MAX_COUNT)
}

/// What settling `actual` tokens of a `reserved` reservation adds to its token windows.
pub(crate) fn settle_delta(actual: u64, reserved: u64) -> i64 {
    // Both at most 2^53 - 1: the difference fits an i64 with room to spare.
    exact(actual) as i64 - exact(reserved) as i64
}

/// One window of one scope, as charged by an admission.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct BucketSpec {
    pub key: String,
    pub scope: String,
    pub limit: Limit,
    pub capacity: u64,
    pub cost: u64,
}

/// Held by an admitted request until it is settled or released.
#[derive(Debug, Clone, PartialEq)]
pub struct Reservation {
    pub(crate) id: String,
    pub(crate) buckets: Vec<BucketSpec>,
    /// When it was charged, on the backend's clock (ms since the epoch).
    pub(crate) at_ms: i64,
    /// Tokens reserved.
    pub tokens: u64,
    /// Admitted without checking because the backend was down and policy is fail-open.
    pub degraded: bool,
}

impl Reservation {
    /// A unique id (random), e.g. for logs.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Whether settling has anything to do (token windows or parallel slots).
    pub(crate) fn needs_settle(&self) -> bool {
        self.buckets
            .iter()
            .any(|b| matches!(b.limit.kind(), Kind::Tokens | Kind::Parallel))
    }

    pub(crate) fn degraded(tokens: u64) -> Reservation {
        Reservation {
            id: new_id(),
            buckets: Vec::new(),
            at_ms: 0,
            tokens,
            degraded: true,
        }
    }
}

/// Why a request was refused: which scope and limit, and when to retry.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    /// The window that refused, `scope:limit`, e.g. `user:alice:tpm`.
    pub bucket: String,
    /// The scope that refused, e.g. `user:alice`.
    pub scope: String,
    /// The limit that refused.
    pub limit: Limit,
    /// What that limit counts.
    pub kind: Kind,
    /// The configured value of that limit.
    pub capacity: u64,
    /// What this request asked of it.
    pub requested: u64,
    /// The request can never fit (it asks more than the whole limit): lower `max_tokens`.
    pub too_large: bool,
    /// Time until enough capacity frees up (`Retry-After`); a whole window if `too_large`.
    pub retry_after: Duration,
    /// Request and token windows as they stand (nothing was charged).
    pub headroom: Headroom,
}

impl Refusal {
    /// A message that says what was exceeded and when to retry.
    pub fn message(&self) -> String {
        if self.too_large {
            return format!(
                "Request too large for '{}': it needs {} {} but the {} limit is {}. Lower max_tokens or shorten the prompt.",
                self.scope,
                self.requested,
                self.kind.label(),
                self.limit.name(),
                self.capacity
            );
        }
        format!(
            "Rate limit reached for {} on '{}' ({} = {}). Try again in {}.",
            self.kind.label(),
            self.scope,
            self.limit.name(),
            self.capacity,
            openai_duration(self.retry_after.max(Duration::from_millis(1)))
        )
    }

    /// `Retry-After` in whole seconds, rounded up (at least 1): waiting that long suffices.
    pub fn retry_after_secs(&self) -> u64 {
        crate::headers::retry_after_secs(self.retry_after)
    }

    /// Every header a 429 carries: `x-ratelimit-*` as they stand, `retry-after` and
    /// `retry-after-ms`, all rounded up.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let mut h = self.headroom.headers();
        h.extend(crate::headers::retry_headers(self.retry_after));
        h
    }
}

/// The limiter's answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Admitted: keep the reservation, settle or release it once; send the headroom headers.
    Admitted(Reservation, Headroom),
    /// Refused: answer 429 with the refusal's message and `Retry-After`.
    Refused(Refusal),
}

/// Behaviour when the shared backend cannot be reached. Config: `on_error`, default `fail_open`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailMode {
    /// Admit (the reservation is marked `degraded`; alert): availability over exactness.
    #[default]
    FailOpen,
    /// Refuse with [`LimitError::Unavailable`] (alert): no unmetered traffic.
    FailClosed,
}

/// What can go wrong, said so that an operator can act on it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LimitError {
    /// The URL names no backend this crate has.
    #[error("unsupported limits URL '{0}': use memory:// or redis://HOST:PORT[/DB]")]
    Url(String),
    /// The backend did not answer (fail-closed refusals carry this).
    #[error("limits backend unavailable: {0}")]
    Unavailable(String),
}

/// Counters of backend trouble, for metrics and alerts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BackendHealth {
    /// Whether the last call reached the backend.
    pub reachable: bool,
    /// Calls that failed to reach it (errors and timeouts) since start.
    pub errors: u64,
    /// Requests admitted unchecked under `fail_open`.
    pub degraded_admissions: u64,
    /// Requests refused under `fail_closed` because it was down.
    pub unavailable_refusals: u64,
}

/// Admission control over some backend.
#[async_trait::async_trait]
pub trait Limiter: Send + Sync {
    /// Admits `a` (charging every window of every scope) or refuses it (charging none).
    /// `Err` only when the backend is down and policy is fail-closed.
    async fn admit(&self, a: &Admission) -> Result<Decision, LimitError>;
    /// Corrects the reservation to the tokens really used and frees its parallel slot.
    async fn settle(&self, r: &Reservation, actual_tokens: u64) -> Result<(), LimitError>;
    /// Refunds a failed call's tokens and frees its parallel slot; its request still counts.
    async fn release(&self, r: &Reservation) -> Result<(), LimitError> {
        self.settle(r, 0).await
    }
    /// Holds `b.worst` against every budget of `b` at once, or holds nothing and says which
    /// budget refused, or which counters need seeding from the ledger (see
    /// [`crate::budget_hold`]). `Err` only when the backend is down and policy is fail-closed.
    async fn hold_budgets(&self, b: &BudgetAdmission) -> Result<BudgetDecision, LimitError>;
    /// Replaces a hold by the `actual` cost (µ$); the second call does nothing. Call it before
    /// booking the ledger entry.
    async fn settle_budgets(&self, h: &BudgetHold, actual: Money) -> Result<(), LimitError>;
    /// Frees a hold whose call cost nothing (settles it at zero).
    async fn release_budgets(&self, h: &BudgetHold) -> Result<(), LimitError> {
        self.settle_budgets(h, 0).await
    }
    /// Whether the backend answers (for readiness probes).
    async fn ping(&self) -> Result<(), LimitError>;
    /// Trouble counters (for metrics and alerts); an in-process backend is always reachable.
    fn health(&self) -> BackendHealth {
        BackendHealth {
            reachable: true,
            ..BackendHealth::default()
        }
    }
}

/// A limiter for `url`: `memory://` (one process) or `redis://HOST:PORT[/DB]` (shared by
/// replicas; keys under `prefix`, behaviour when Redis is down per `fail`).
pub fn limiter_from_url(
    url: &str,
    prefix: &str,
    fail: FailMode,
) -> Result<Arc<dyn Limiter>, LimitError> {
    if url.starts_with("memory://") {
        Ok(Arc::new(crate::MemoryLimiter::default()))
    } else if url.starts_with("redis://") || url.starts_with("rediss://") {
        Ok(Arc::new(crate::RedisLimiter::new(url, prefix, fail)?))
    } else {
        Err(LimitError::Url(url.to_owned()))
    }
}

/// Wall-clock ms since the epoch.
pub(crate) fn system_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A random id: unique across replicas (a pid or a clock would not be in containers).
pub(crate) fn new_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_config_is_strict_and_defaults_to_unlimited() {
        let l: Limits = toml::from_str("rpm = 60\ntpd = 100000").unwrap();
        assert_eq!(l.rpm, Some(60));
        assert_eq!(l.tpd, Some(100_000));
        assert_eq!(l.tpm, None);
        assert!(toml::from_str::<Limits>("rpn = 60").is_err());
        assert!(Limits::default().is_empty());
        let merged = Limits {
            rpm: Some(1),
            ..Limits::default()
        }
        .or(l);
        assert_eq!((merged.rpm, merged.tpd), (Some(1), Some(100_000)));
    }

    #[test]
    fn fail_mode_parses_snake_case() {
        #[derive(Deserialize)]
        struct C {
            on_error: FailMode,
        }
        let c: C = toml::from_str("on_error = 'fail_closed'").unwrap();
        assert_eq!(c.on_error, FailMode::FailClosed);
        assert_eq!(FailMode::default(), FailMode::FailOpen);
    }

    #[test]
    fn scopes_name_their_windows() {
        let a = Admission::new(50)
            .scope(
                &Scope::Key("k1".into()),
                Limits {
                    rpm: Some(10),
                    tpm: Some(100),
                    ..Limits::default()
                },
            )
            .scope(&Scope::User("bob".into()), Limits::default())
            .scope(
                &Scope::Team("red".into()),
                Limits {
                    max_parallel: Some(2),
                    ..Limits::default()
                },
            );
        let b = a.buckets();
        let keys: Vec<_> = b.iter().map(|b| (b.key.as_str(), b.cost)).collect();
        assert_eq!(
            keys,
            [("key:k1:rpm", 1), ("key:k1:tpm", 50), ("team:red:par", 1)]
        );
        assert_eq!(Scope::Global.id(), "global");
    }

    #[test]
    fn ids_are_unique() {
        assert_ne!(new_id(), new_id());
        assert_eq!(new_id().len(), 32);
    }
}
