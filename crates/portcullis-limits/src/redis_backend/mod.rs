//! The Redis backend (`redis://HOST:PORT[/DB]`): the same sliding windows as the memory
//! backend, checked and charged by one Lua script per admission (every scope at once, on
//! Redis's clock), so any number of replicas together admit exactly what one process would.
//!
//! Keys (all under the configured prefix):
//! - `{prefix}:b:{scope}:{rpm|tpm|tph|tpd}` — a hash of slice index → usage, plus `s` (sum of
//!   counted slices), `o` (oldest slice that may remain), `l` (newest slice); expires a window
//!   and a slice after its last write.
//! - `{prefix}:b:{scope}:par` — a sorted set of reservation ids scored by lease expiry, so a
//!   replica that dies holding slots cannot leak them.
//! - `{prefix}:r:{reservation}` — present while a reservation is unsettled (same lease); the
//!   settle script deletes it first, which makes settling idempotent.
//! - `{prefix}:m…` — money budget counters, see `budgets`.
//!
//! When Redis cannot be reached the call fails fast (bounded connect and response timeouts,
//! and for a short cool-down after a failure no call is attempted at all), then follows
//! [`FailMode`]. The connection manager reconnects by itself; a failed settlement is retried
//! in the background for about half a minute.
//!
//! # Layout
//! - `admit.lua`, `settle.lua`: the two rate-limit scripts, one atomic call each way.
//! - `hold.lua`, `settle_hold.lua` and `budgets`: money budgets, one atomic call each way.
//! - `connection`: [`RedisOptions`] and the bounded, cooled-down call to Redis.
//! - `protocol`: script arguments and replies — bucket codes, numbers, a refusal read back.
//! - this file: [`RedisLimiter`], the [`Limiter`] the gateway holds.

mod budgets;
mod connection;
mod protocol;
#[cfg(test)]
mod tests;

pub use connection::RedisOptions;

use crate::budget_hold::{BudgetAdmission, BudgetDecision, BudgetHold};
use crate::limiter::{
    Admission, BackendHealth, BucketSpec, Decision, FailMode, Headroom, Kind, LimitError, Limiter,
    Reservation, Room, new_id, system_ms,
};
use crate::memory::Clock;
use crate::pricing::Money;
use connection::{Conn, Counters};
use protocol::{bad_reply, kind_code, num};
use redis::Value;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Checks and charges every bucket of an admission (its header gives KEYS, ARGV and reply).
const ADMIT: &str = include_str!("admit.lua");

/// Settles a reservation once (its header gives KEYS, ARGV and reply).
const SETTLE: &str = include_str!("settle.lua");

/// Checks and holds every budget of a request (its header gives KEYS, ARGV and reply).
const HOLD: &str = include_str!("hold.lua");

/// Settles a budget hold once (its header gives KEYS, ARGV and reply).
const SETTLE_HOLD: &str = include_str!("settle_hold.lua");

/// Limits shared through Redis by every replica.
pub struct RedisLimiter {
    conn: Conn,
    prefix: String,
    fail: FailMode,
    admit: redis::Script,
    settle: Arc<redis::Script>,
    hold: redis::Script,
    settle_hold: Arc<redis::Script>,
    lease: Duration,
    /// Budget periods and hold leases (rate windows use Redis's clock).
    clock: Clock,
}

impl std::fmt::Debug for RedisLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLimiter")
            .field("prefix", &self.prefix)
            .field("fail", &self.fail)
            .finish_non_exhaustive()
    }
}

impl RedisLimiter {
    /// A limiter on `url` with default [`RedisOptions`]; connects lazily, reconnects by itself.
    pub fn new(url: &str, prefix: &str, fail: FailMode) -> Result<Self, LimitError> {
        Self::with_options(url, prefix, fail, RedisOptions::default())
    }

    /// A limiter on `url` with explicit timeouts and lease.
    pub fn with_options(
        url: &str,
        prefix: &str,
        fail: FailMode,
        options: RedisOptions,
    ) -> Result<Self, LimitError> {
        let client =
            redis::Client::open(url).map_err(|e| LimitError::Url(format!("{url}: {e}")))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(options.timeout))
            .set_response_timeout(Some(options.timeout))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(10))
            .set_max_delay(options.cooldown.max(Duration::from_millis(10)));
        let manager = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| LimitError::Unavailable(format!("{url}: {e}")))?;
        Ok(RedisLimiter {
            conn: Conn {
                manager,
                counters: Arc::new(Counters {
                    reachable: AtomicBool::new(true),
                    ..Counters::default()
                }),
                timeout: options.timeout,
                cooldown: options.cooldown,
            },
            prefix: prefix.to_owned(),
            fail,
            admit: redis::Script::new(ADMIT),
            settle: Arc::new(redis::Script::new(SETTLE)),
            hold: redis::Script::new(HOLD),
            settle_hold: Arc::new(redis::Script::new(SETTLE_HOLD)),
            lease: options.lease,
            clock: Arc::new(system_ms),
        })
    }

    /// Budget periods and hold leases read time from `clock` (tests move it by hand); rate
    /// windows keep using Redis's own clock.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// How many calls found Redis unreachable (for metrics and alerts).
    pub fn failures(&self) -> u64 {
        self.conn.counters.errors.load(Ordering::Relaxed)
    }

    fn bucket_key(&self, b: &BucketSpec) -> String {
        format!("{}:b:{}", self.prefix, b.key)
    }

    fn marker_key(&self, id: &str) -> String {
        format!("{}:r:{id}", self.prefix)
    }

    fn down(&self, a: &Admission, e: LimitError) -> Result<Decision, LimitError> {
        let c = &self.conn.counters;
        match self.fail {
            FailMode::FailOpen => {
                c.degraded.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "limits backend down: admitting unchecked (fail_open)");
                Ok(Decision::Admitted(
                    Reservation::degraded(a.tokens),
                    Headroom::default(),
                ))
            }
            FailMode::FailClosed => {
                c.refused.fetch_add(1, Ordering::Relaxed);
                Err(e)
            }
        }
    }
}

#[async_trait::async_trait]
impl Limiter for RedisLimiter {
    async fn admit(&self, a: &Admission) -> Result<Decision, LimitError> {
        let specs = a.buckets();
        let id = new_id();
        if specs.is_empty() {
            let r = Reservation {
                id,
                buckets: specs,
                at_ms: system_ms(),
                tokens: a.tokens,
                degraded: false,
            };
            return Ok(Decision::Admitted(r, Headroom::default()));
        }
        let marker = specs
            .iter()
            .any(|s| matches!(s.limit.kind(), Kind::Tokens | Kind::Parallel));
        let mut keys: Vec<String> = specs.iter().map(|s| self.bucket_key(s)).collect();
        if marker {
            keys.push(self.marker_key(&id));
        }
        let mut args = vec![
            specs.len().to_string(),
            id.clone(),
            self.lease.as_millis().max(1).to_string(),
            u8::from(marker).to_string(),
        ];
        for s in &specs {
            let slicing = s.limit.slicing();
            args.extend([
                kind_code(s.limit.kind()).to_owned(),
                s.capacity.to_string(),
                slicing.g_ms.to_string(),
                slicing.n.to_string(),
                s.cost.to_string(),
            ]);
        }
        let reply: Vec<Value> = match self.conn.invoke(&self.admit, &keys, &args).await {
            Ok(v) => v,
            Err(e) => return self.down(a, e),
        };
        if reply.first().map(num) != Some(1) {
            return Self::refusal(&specs, &reply);
        }
        let now = reply.get(1).map(num).ok_or_else(bad_reply)?;
        let mut head = Headroom::default();
        for (s, v) in specs.iter().zip(reply.iter().skip(2)) {
            if s.limit.kind() != Kind::Parallel {
                let slicing = s.limit.slicing();
                head.note(
                    s.limit.kind(),
                    Room {
                        limit: s.capacity,
                        remaining: s.capacity.saturating_sub(num(v).max(0) as u64),
                        reset: slicing.reset(Some(slicing.slice(now)), now),
                    },
                );
            }
        }
        let r = Reservation {
            id,
            buckets: specs,
            at_ms: now,
            tokens: a.tokens,
            degraded: false,
        };
        Ok(Decision::Admitted(r, head))
    }

    async fn settle(&self, r: &Reservation, actual_tokens: u64) -> Result<(), LimitError> {
        if r.degraded || !r.needs_settle() {
            return Ok(());
        }
        let (keys, args) = self.settle_call(r, actual_tokens);
        match self.conn.invoke::<i64>(&self.settle, &keys, &args).await {
            Ok(_) => Ok(()),
            Err(e) => {
                self.conn
                    .retry_later(self.settle.clone(), keys, args, "a rate-limit reservation");
                Err(e)
            }
        }
    }

    async fn hold_budgets(&self, b: &BudgetAdmission) -> Result<BudgetDecision, LimitError> {
        self.hold_plan(&b.plan((self.clock)())).await
    }

    async fn settle_budgets(&self, h: &BudgetHold, actual: Money) -> Result<(), LimitError> {
        self.settle_hold(h, actual).await
    }

    async fn ping(&self) -> Result<(), LimitError> {
        let mut con = self.conn.manager.clone();
        let ping = redis::cmd("PING");
        match tokio::time::timeout(self.conn.timeout, ping.query_async::<String>(&mut con)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(LimitError::Unavailable(e.to_string())),
            Err(_) => Err(LimitError::Unavailable(
                "Redis did not answer in time".into(),
            )),
        }
    }

    fn health(&self) -> BackendHealth {
        let c = &self.conn.counters;
        BackendHealth {
            reachable: c.reachable.load(Ordering::Relaxed),
            errors: c.errors.load(Ordering::Relaxed),
            degraded_admissions: c.degraded.load(Ordering::Relaxed),
            unavailable_refusals: c.refused.load(Ordering::Relaxed),
        }
    }
}
