//! Admission control and cost for Portcullis — the "denial of wallet" defence.
//!
//! It depends on no other Portcullis crate (the gateway maps its requests onto [`Admission`]s),
//! and on Redis only through the [`redis_backend`].
//!
//! # Layout
//! - [`limiter`]: the contract — [`Limits`] per [`Scope`], an [`Admission`] to check, the
//!   [`Decision`] (with everything `x-ratelimit-*` and `Retry-After` need), the [`Limiter`]
//!   trait, [`FailMode`] and [`limiter_from_url`].
//! - [`headers`]: what a client is told — `x-ratelimit-*`, `Retry-After` — always rounded up.
//! - [`ceiling`]: a request's worst case in tokens ([`Ceiling`]: prompt + `n` × output
//!   ceiling), saturating, as client-chosen numbers must be.
//! - [`window`]: sliding windows counted in slices (no calendar edges; no trailing window ever
//!   holds more than the limit), shared by both backends.
//! - [`memory`]: [`MemoryLimiter`], the default, for one process.
//! - [`redis_backend`]: [`RedisLimiter`], one atomic Lua script per admission, for replicas.
//! - [`pricing`]: the dated OpenAI price table and exact integer costs ([`Money`] in µ$).
//! - [`budget`]: UTC day / month periods and soft / hard budget checks ([`BudgetWindow`]).
//! - [`budget_hold`]: money budgets held at admission on either backend — check and hold in
//!   one atomic step across replicas, settle, seed from the ledger ([`BudgetAdmission`]).
//!
//! # Example
//! ```
//! use portcullis_limits::{Admission, Decision, Limiter, Limits, MemoryLimiter, Scope};
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let limiter = MemoryLimiter::default();
//! let per_user = Limits { tpm: Some(10_000), max_parallel: Some(4), ..Limits::default() };
//! let req = Admission::new(1_200).scope(&Scope::User("alice".into()), per_user);
//! match limiter.admit(&req).await.unwrap() {
//!     Decision::Admitted(reservation, headroom) => {
//!         assert_eq!(headroom.tokens.unwrap().remaining, 8_800);
//!         // ... call upstream, then reconcile with the real usage:
//!         limiter.settle(&reservation, 700).await.unwrap();
//!     }
//!     Decision::Refused(refusal) => panic!("{}", refusal.message()),
//! }
//! # });
//! ```
//!
//! Money budgets, held and settled the same way (seeded from the ledger when asked):
//! ```
//! use portcullis_limits::{Budget, BudgetAdmission, BudgetDecision, Limiter, MemoryLimiter, Scope};
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let limiter = MemoryLimiter::default();
//! let mut ask = BudgetAdmission::new(12_500) // worst case, µ$ (Pricing::worst_case_of)
//!     .budget(&Scope::User("alice".into()), Budget::daily(10_000_000));
//! let hold = loop {
//!     match limiter.hold_budgets(&ask).await.unwrap() {
//!         // First use of this period here: pass the ledger's totals (Store::spend_total).
//!         BudgetDecision::NeedSeed(need) => {
//!             ask = ask.seeded(need.iter().map(|n| n.answer(0)).collect::<Vec<_>>())
//!         }
//!         BudgetDecision::Held(hold, _standings) => break hold,
//!         BudgetDecision::Refused(refusal) => panic!("{}", refusal.message()),
//!     }
//! };
//! // ... call upstream, then replace the hold by the real cost:
//! limiter.settle_budgets(&hold, 8_000).await.unwrap();
//! # });
//! ```

pub mod budget;
pub mod budget_hold;
#[cfg(test)]
mod budget_suite;
pub mod ceiling;
pub mod headers;
pub mod limiter;
pub mod memory;
pub mod pricing;
pub mod redis_backend;
#[cfg(test)]
mod suite;
pub mod window;

pub use budget::{Budget, BudgetCheck, BudgetStatus, BudgetWindow, DEFAULT_SOFT_PERCENT, Period};
pub use budget_hold::{
    BudgetAdmission, BudgetDecision, BudgetHold, BudgetRefusal, BudgetStanding, MAX_MONEY,
    PERIOD_MARGIN, Seed, SeedRequest,
};
pub use ceiling::Ceiling;
pub use headers::{ceil_millis, retry_after_secs, retry_headers};
pub use limiter::{
    Admission, BackendHealth, Decision, FailMode, Headroom, Kind, Limit, LimitError, Limiter,
    Limits, MAX_COUNT, Refusal, Reservation, Room, Scope, limiter_from_url, openai_duration,
};
pub use memory::{Clock, MemoryLimiter};
pub use pricing::{
    BUILTIN_TABLE, Money, Price, Pricing, TokenUsage, UnknownModel, format_usd, parse_usd,
};
pub use redis_backend::{RedisLimiter, RedisOptions};
