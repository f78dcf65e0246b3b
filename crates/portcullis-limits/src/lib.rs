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

pub mod budget;
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
pub use ceiling::Ceiling;
pub use headers::{ceil_millis, retry_after_secs, retry_headers};
pub use limiter::{
    Admission, BackendHealth, Decision, FailMode, Headroom, Kind, Limit, LimitError, Limiter,
    Limits, Refusal, Reservation, Room, Scope, limiter_from_url, openai_duration,
};
pub use memory::{Clock, MemoryLimiter};
pub use pricing::{
    BUILTIN_TABLE, Money, Price, Pricing, TokenUsage, UnknownModel, format_usd, parse_usd,
};
pub use redis_backend::{RedisLimiter, RedisOptions};
