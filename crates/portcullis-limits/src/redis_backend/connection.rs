//! The connection to Redis: [`RedisOptions`], and one script call bounded by a timeout and
//! skipped altogether for a cool-down after a failure, with the counters health reports.

use crate::limiter::{LimitError, system_ms};
use crate::memory::DEFAULT_LEASE;
use redis::aio::ConnectionManager;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// Tuning of the Redis backend; the defaults suit a Redis on the local network.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RedisOptions {
    /// Longest wait for one call, connecting included (default 1 s).
    pub timeout: Duration,
    /// After a failed call, answer per the fail mode without trying Redis for this long
    /// (default 250 ms), so a dead Redis costs requests nothing.
    pub cooldown: Duration,
    /// How long an unsettled parallel slot or reservation lives (default 15 min).
    pub lease: Duration,
}

impl Default for RedisOptions {
    fn default() -> Self {
        RedisOptions {
            timeout: Duration::from_secs(1),
            cooldown: Duration::from_millis(250),
            lease: DEFAULT_LEASE,
        }
    }
}

#[derive(Default)]
pub(super) struct Counters {
    pub(super) reachable: AtomicBool,
    pub(super) errors: AtomicU64,
    pub(super) degraded: AtomicU64,
    pub(super) refused: AtomicU64,
    /// Local clock (ms) until which no call is attempted.
    pub(super) down_until: AtomicI64,
}

/// What a call needs, shareable with a background retry.
#[derive(Clone)]
pub(super) struct Conn {
    pub(super) manager: ConnectionManager,
    pub(super) counters: Arc<Counters>,
    pub(super) timeout: Duration,
    pub(super) cooldown: Duration,
}

impl Conn {
    pub(super) async fn invoke<T: redis::FromRedisValue>(
        &self,
        script: &redis::Script,
        keys: &[String],
        args: &[String],
    ) -> Result<T, LimitError> {
        if system_ms() < self.counters.down_until.load(Ordering::Relaxed) {
            return Err(LimitError::Unavailable(
                "Redis failed moments ago; waiting before trying again".into(),
            ));
        }
        let mut inv = script.prepare_invoke();
        for k in keys {
            inv.key(k);
        }
        for a in args {
            inv.arg(a);
        }
        let mut con = self.manager.clone();
        let out = tokio::time::timeout(self.timeout, inv.invoke_async::<T>(&mut con)).await;
        let err = match out {
            Ok(Ok(v)) => {
                self.counters.reachable.store(true, Ordering::Relaxed);
                self.counters.down_until.store(0, Ordering::Relaxed);
                return Ok(v);
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("Redis did not answer within {:?}", self.timeout),
        };
        self.counters.reachable.store(false, Ordering::Relaxed);
        self.counters.errors.fetch_add(1, Ordering::Relaxed);
        self.counters.down_until.store(
            system_ms() + self.cooldown.as_millis() as i64,
            Ordering::Relaxed,
        );
        Err(LimitError::Unavailable(err))
    }

    /// Calls `script` again in the background for about half a minute, so a settlement is not
    /// lost to a blip (the lease bounds the damage if Redis stays away); `what` is for the log.
    pub(super) fn retry_later(
        &self,
        script: Arc<redis::Script>,
        keys: Vec<String>,
        args: Vec<String>,
        what: &'static str,
    ) {
        let conn = self.clone();
        tokio::spawn(async move {
            for wait_ms in [300, 1_000, 2_000, 4_000, 8_000, 16_000] {
                tokio::time::sleep(Duration::from_millis(wait_ms)).await;
                if conn.invoke::<i64>(&script, &keys, &args).await.is_ok() {
                    return;
                }
            }
            tracing::warn!("gave up settling {what}; its lease will free it");
        });
    }
}
