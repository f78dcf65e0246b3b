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
//!
//! When Redis cannot be reached the call fails fast (bounded connect and response timeouts,
//! and for a short cool-down after a failure no call is attempted at all), then follows
//! [`FailMode`]. The connection manager reconnects by itself; a failed settlement is retried
//! in the background for about half a minute.

use crate::limiter::{
    Admission, BackendHealth, BucketSpec, Decision, FailMode, Headroom, Kind, LimitError, Limiter,
    Refusal, Reservation, Room, new_id, system_ms,
};
use crate::memory::DEFAULT_LEASE;
use crate::window::wait_for;
use redis::Value;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

const ADMIT: &str = r#"
local function fmt(x) return string.format('%d', x) end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local nb = tonumber(ARGV[1])
local rid = ARGV[2]
local lease = tonumber(ARGV[3])
local used, latest = {}, {}
local fail = 0
for i = 1, nb do
  local b = 4 + (i - 1) * 5
  local kind, cap, g, n, cost = ARGV[b + 1], tonumber(ARGV[b + 2]), tonumber(ARGV[b + 3]), tonumber(ARGV[b + 4]), tonumber(ARGV[b + 5])
  local key = KEYS[i]
  local u, l = 0, -1
  if kind == 'p' then
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
    u = redis.call('ZCARD', key)
  else
    local low = math.floor(now / g) - n
    local h = redis.call('HMGET', key, 's', 'o', 'l')
    u = tonumber(h[1]) or 0
    local o = tonumber(h[2])
    l = tonumber(h[3]) or -1
    if o and o < low then
      if l < low then
        redis.call('DEL', key)
        u, l = 0, -1
      elseif low - o > 2 * n + 2 then
        local all = redis.call('HGETALL', key)
        u = 0
        for k = 1, #all, 2 do
          local idx = tonumber(all[k])
          if idx then
            if idx < low then redis.call('HDEL', key, all[k]) else u = u + tonumber(all[k + 1]) end
          end
        end
        redis.call('HSET', key, 's', fmt(u), 'o', fmt(low))
      else
        for j = o, low - 1 do
          local f = fmt(j)
          local v = tonumber(redis.call('HGET', key, f))
          if v then
            u = u - v
            redis.call('HDEL', key, f)
          end
        end
        if u < 0 then u = 0 end
        redis.call('HSET', key, 's', fmt(u), 'o', fmt(low))
      end
    end
  end
  used[i], latest[i] = u, l
  if fail == 0 and u + cost > cap then fail = i end
end
if fail > 0 then
  local out = {0, fmt(now), fail}
  for i = 1, nb do
    out[#out + 1] = fmt(used[i])
    out[#out + 1] = fmt(latest[i])
  end
  local b = 4 + (fail - 1) * 5
  if ARGV[b + 1] ~= 'p' then
    local all = redis.call('HGETALL', KEYS[fail])
    for k = 1, #all, 2 do
      if tonumber(all[k]) then
        out[#out + 1] = all[k]
        out[#out + 1] = all[k + 1]
      end
    end
  end
  return out
end
local out = {1, fmt(now)}
for i = 1, nb do
  local b = 4 + (i - 1) * 5
  local kind, g, n = ARGV[b + 1], tonumber(ARGV[b + 3]), tonumber(ARGV[b + 4])
  local key = KEYS[i]
  if kind == 'p' then
    redis.call('ZADD', key, fmt(now + lease), rid)
    redis.call('PEXPIRE', key, lease + 1000)
  else
    local cur = fmt(math.floor(now / g))
    redis.call('HINCRBY', key, cur, ARGV[b + 5])
    redis.call('HINCRBY', key, 's', ARGV[b + 5])
    redis.call('HSETNX', key, 'o', cur)
    redis.call('HSET', key, 'l', cur)
    redis.call('PEXPIRE', key, (n + 2) * g)
  end
  out[#out + 1] = fmt(used[i] + tonumber(ARGV[b + 5]))
end
if ARGV[4] == '1' then
  redis.call('SET', KEYS[nb + 1], '1', 'PX', lease)
end
return out
"#;

const SETTLE: &str = r#"
local function fmt(x) return string.format('%d', x) end
if redis.call('DEL', KEYS[1]) == 0 then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local nb = tonumber(ARGV[1])
local rid = ARGV[2]
local at = tonumber(ARGV[3])
for i = 1, nb do
  local b = 3 + (i - 1) * 4
  local kind, g, n, d = ARGV[b + 1], tonumber(ARGV[b + 2]), tonumber(ARGV[b + 3]), tonumber(ARGV[b + 4])
  local key = KEYS[i + 1]
  if kind == 'p' then
    redis.call('ZREM', key, rid)
  elseif kind == 't' and d ~= 0 then
    local slice = math.floor(at / g)
    if slice >= math.floor(now / g) - n then
      local f = fmt(slice)
      local v = tonumber(redis.call('HGET', key, f)) or 0
      if v + d < 0 then d = -v end
      if d ~= 0 then
        redis.call('HINCRBY', key, f, fmt(d))
        if redis.call('HINCRBY', key, 's', fmt(d)) < 0 then redis.call('HSET', key, 's', '0') end
        redis.call('HSETNX', key, 'o', f)
        redis.call('HSETNX', key, 'l', f)
        if redis.call('PTTL', key) < 0 then redis.call('PEXPIRE', key, (n + 2) * g) end
      end
    end
  end
end
return 1
"#;

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
struct Counters {
    reachable: AtomicBool,
    errors: AtomicU64,
    degraded: AtomicU64,
    refused: AtomicU64,
    /// Local clock (ms) until which no call is attempted.
    down_until: AtomicI64,
}

/// What a call needs, shareable with a background retry.
#[derive(Clone)]
struct Conn {
    manager: ConnectionManager,
    counters: Arc<Counters>,
    timeout: Duration,
    cooldown: Duration,
}

impl Conn {
    async fn invoke<T: redis::FromRedisValue>(
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
}

/// Limits shared through Redis by every replica.
pub struct RedisLimiter {
    conn: Conn,
    prefix: String,
    fail: FailMode,
    admit: redis::Script,
    settle: Arc<redis::Script>,
    lease: Duration,
}

impl std::fmt::Debug for RedisLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLimiter")
            .field("prefix", &self.prefix)
            .field("fail", &self.fail)
            .finish_non_exhaustive()
    }
}

fn kind_code(k: Kind) -> &'static str {
    match k {
        Kind::Requests => "r",
        Kind::Tokens => "t",
        Kind::Parallel => "p",
    }
}

fn num(v: &Value) -> i64 {
    match v {
        Value::Int(i) => *i,
        Value::BulkString(b) => std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.parse::<f64>().ok())
            .map_or(0, |f| f as i64),
        Value::SimpleString(s) => s.parse::<f64>().map_or(0, |f| f as i64),
        _ => 0,
    }
}

fn bad_reply() -> LimitError {
    LimitError::Unavailable("unexpected reply from the Redis limit script".into())
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
            lease: options.lease,
        })
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

    fn refusal(specs: &[BucketSpec], reply: &[Value]) -> Result<Decision, LimitError> {
        let now = reply.get(1).map(num).ok_or_else(bad_reply)?;
        let fail = reply.get(2).map(num).ok_or_else(bad_reply)?;
        let s = specs
            .get((fail as usize).wrapping_sub(1))
            .ok_or_else(bad_reply)?;
        let mut head = Headroom::default();
        let mut used_fail = 0;
        for (i, spec) in specs.iter().enumerate() {
            let used = reply.get(3 + 2 * i).map(num).ok_or_else(bad_reply)?.max(0) as u64;
            let latest = reply.get(4 + 2 * i).map(num).filter(|l| *l >= 0);
            if i + 1 == fail as usize {
                used_fail = used;
            }
            if spec.limit.kind() != Kind::Parallel {
                head.note(
                    spec.limit.kind(),
                    Room {
                        limit: spec.capacity,
                        remaining: spec.capacity.saturating_sub(used),
                        reset: spec.limit.slicing().reset(latest, now),
                    },
                );
            }
        }
        let wait = match s.limit.kind() {
            Kind::Parallel => Some(Duration::from_secs(1)),
            Kind::Requests | Kind::Tokens => {
                let slices: Vec<(i64, u64)> = reply
                    .get(3 + 2 * specs.len()..)
                    .unwrap_or_default()
                    .chunks_exact(2)
                    .map(|p| (num(&p[0]), num(&p[1]).max(0) as u64))
                    .collect();
                wait_for(
                    s.limit.slicing(),
                    &slices,
                    used_fail,
                    s.capacity,
                    s.cost,
                    now,
                )
            }
        };
        Ok(Decision::Refused(Refusal {
            bucket: s.key.clone(),
            scope: s.scope.clone(),
            limit: s.limit,
            kind: s.limit.kind(),
            capacity: s.capacity,
            requested: s.cost,
            too_large: wait.is_none(),
            retry_after: wait.unwrap_or(s.limit.window()),
            headroom: head,
        }))
    }

    fn settle_call(&self, r: &Reservation, actual_tokens: u64) -> (Vec<String>, Vec<String>) {
        let delta = actual_tokens as i64 - r.tokens as i64;
        let mut keys = vec![self.marker_key(&r.id)];
        let mut args = vec![
            r.buckets.len().to_string(),
            r.id.clone(),
            r.at_ms.to_string(),
        ];
        for s in &r.buckets {
            keys.push(self.bucket_key(s));
            let slicing = s.limit.slicing();
            let d = if s.limit.kind() == Kind::Tokens {
                delta
            } else {
                0
            };
            args.extend([
                kind_code(s.limit.kind()).to_owned(),
                slicing.g_ms.to_string(),
                slicing.n.to_string(),
                d.to_string(),
            ]);
        }
        (keys, args)
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
                // Try again in the background so slots and refunds are not lost to a blip;
                // the lease bounds the damage if Redis stays away.
                let (conn, script) = (self.conn.clone(), self.settle.clone());
                tokio::spawn(async move {
                    for wait_ms in [300, 1_000, 2_000, 4_000, 8_000, 16_000] {
                        tokio::time::sleep(Duration::from_millis(wait_ms)).await;
                        if conn.invoke::<i64>(&script, &keys, &args).await.is_ok() {
                            return;
                        }
                    }
                    tracing::warn!(
                        "gave up settling a rate-limit reservation; its lease will free it"
                    );
                });
                Err(e)
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limiter::Limits;
    use crate::suite::{adm, admitted, tpd};

    const SHARED: &str = "redis://127.0.0.1:6379/0";

    /// A key prefix no other run shares.
    fn prefix() -> String {
        format!("portcullis-test-{}", new_id())
    }

    async fn make() -> (RedisLimiter, String) {
        let p = prefix();
        let l = RedisLimiter::new(SHARED, &p, FailMode::FailClosed).unwrap();
        l.ping()
            .await
            .expect("Redis on 127.0.0.1:6379 must be reachable");
        (l, p)
    }

    /// Deletes this run's keys from the shared Redis (never FLUSHDB).
    async fn cleanup(prefix: String) {
        let client = redis::Client::open(SHARED).unwrap();
        let mut con = client.get_multiplexed_async_connection().await.unwrap();
        let mut cursor = 0u64;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{prefix}:*"))
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut con)
                .await
                .unwrap();
            if !keys.is_empty() {
                let _: i64 = redis::cmd("DEL")
                    .arg(&keys)
                    .query_async(&mut con)
                    .await
                    .unwrap();
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        let left: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{prefix}:*"))
            .query_async(&mut con)
            .await
            .unwrap();
        assert!(left.is_empty(), "keys left behind: {left:?}");
    }

    crate::suite::backend_suite!(shared, make(), cleanup);

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_replicas_admit_exactly_what_one_would() {
        let p = prefix();
        let a: Arc<dyn Limiter> =
            Arc::new(RedisLimiter::new(SHARED, &p, FailMode::FailClosed).unwrap());
        let b: Arc<dyn Limiter> =
            Arc::new(RedisLimiter::new(SHARED, &p, FailMode::FailClosed).unwrap());
        // Three scopes per request, as the gateway sends them; the team's token day admits 37.
        let lim = |n| Limits {
            rpm: Some(1_000),
            tpd: Some(n),
            max_parallel: Some(500),
            ..Limits::default()
        };
        let tasks: Vec<_> = (0..200)
            .map(|i| {
                let l = if i % 2 == 0 { a.clone() } else { b.clone() };
                tokio::spawn(async move {
                    let req = adm(
                        &[
                            ("key:k", lim(1_000_000)),
                            (&format!("user:u{}", i % 7), lim(1_000_000)),
                            ("team:x", lim(3_700)),
                        ],
                        100,
                    );
                    matches!(l.admit(&req).await.unwrap(), Decision::Admitted(..))
                })
            })
            .collect();
        let mut n = 0;
        for t in tasks {
            n += usize::from(t.await.unwrap());
        }
        assert_eq!(n, 37);
        // Both replicas see the same state afterwards.
        for l in [&a, &b] {
            assert!(
                admitted(&**l, &adm(&[("team:x", lim(3_700))], 1))
                    .await
                    .is_none()
            );
        }
        cleanup(p).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dead_replicas_slots_expire_with_their_lease() {
        let p = prefix();
        let options = RedisOptions {
            lease: Duration::from_millis(600),
            ..RedisOptions::default()
        };
        let par = Limits {
            max_parallel: Some(1),
            ..Limits::default()
        };
        let a = adm(&[("key:p", par)], 0);
        {
            let dying =
                RedisLimiter::with_options(SHARED, &p, FailMode::FailClosed, options).unwrap();
            assert!(admitted(&dying, &a).await.is_some());
            // Dropped without settling: the replica "died".
        }
        let other = RedisLimiter::with_options(SHARED, &p, FailMode::FailClosed, options).unwrap();
        assert!(admitted(&other, &a).await.is_none());
        tokio::time::sleep(Duration::from_millis(800)).await;
        assert!(admitted(&other, &a).await.is_some());
        cleanup(p).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn keys_expire_and_stay_under_the_prefix() {
        let (l, p) = make().await;
        let lim = Limits {
            rpm: Some(10),
            tpm: Some(1_000),
            tph: Some(10_000),
            tpd: Some(100_000),
            max_parallel: Some(3),
        };
        let r = admitted(&l, &adm(&[("key:t", lim)], 10)).await.unwrap();
        let client = redis::Client::open(SHARED).unwrap();
        let mut con = client.get_multiplexed_async_connection().await.unwrap();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{p}:*"))
            .query_async(&mut con)
            .await
            .unwrap();
        assert_eq!(keys.len(), 6, "{keys:?}"); // 5 windows + the reservation marker
        for k in &keys {
            let ttl: i64 = redis::cmd("PTTL")
                .arg(k)
                .query_async(&mut con)
                .await
                .unwrap();
            assert!(ttl > 0, "{k} has no expiry");
        }
        l.settle(&r, 5).await.unwrap();
        let marker: i64 = redis::cmd("EXISTS")
            .arg(format!("{p}:r:{}", r.id()))
            .query_async(&mut con)
            .await
            .unwrap();
        assert_eq!(marker, 0);
        cleanup(p).await;
    }

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    /// A private, throwaway Redis (never the shared one): no persistence.
    async fn private_redis(port: u16) -> tokio::process::Child {
        let child = tokio::process::Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server must be installed");
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        child
    }

    async fn stop(mut child: tokio::process::Child) {
        // By PID, this child only.
        child.kill().await.unwrap();
        let _ = child.wait().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lost_redis_follows_the_fail_mode_and_recovers() {
        let port = free_port();
        let url = format!("redis://127.0.0.1:{port}/0");
        let server = private_redis(port).await;
        let open: Arc<dyn Limiter> =
            Arc::new(RedisLimiter::new(&url, "t", FailMode::FailOpen).unwrap());
        let closed: Arc<dyn Limiter> =
            Arc::new(RedisLimiter::new(&url, "t", FailMode::FailClosed).unwrap());
        let a = adm(
            &[
                ("key:z", tpd(1_000_000)),
                (
                    "user:z",
                    Limits {
                        max_parallel: Some(100),
                        ..Limits::default()
                    },
                ),
            ],
            10,
        );
        let held = admitted(&*open, &a).await.unwrap();
        assert!(!held.degraded);
        assert!(closed.admit(&a).await.is_ok());
        stop(server).await;

        // Down: fail-open admits (degraded), fail-closed refuses; neither hangs nor panics,
        // and many requests at once stay bounded by the timeout.
        let started = std::time::Instant::now();
        let burst: Vec<_> = (0..50)
            .map(|i| {
                let (l, a) = (
                    if i % 2 == 0 {
                        open.clone()
                    } else {
                        closed.clone()
                    },
                    a.clone(),
                );
                tokio::spawn(async move { (i % 2 == 0, l.admit(&a).await) })
            })
            .collect();
        for t in burst {
            match t.await.unwrap() {
                (true, Ok(Decision::Admitted(r, h))) => {
                    assert!(r.degraded);
                    assert_eq!(h, Headroom::default());
                    open.settle(&r, 3).await.unwrap();
                }
                (false, Err(LimitError::Unavailable(_))) => {}
                other => panic!("unexpected while Redis is down: {other:?}"),
            }
        }
        // Generous bound (not a timing assertion): nothing waits for a TCP timeout.
        assert!(started.elapsed() < Duration::from_secs(10));
        assert!(open.settle(&held, 10).await.is_err());
        let h = open.health();
        assert!(!h.reachable && h.errors > 0 && h.degraded_admissions > 0);
        assert!(closed.health().unavailable_refusals > 0);
        assert!(matches!(
            closed.ping().await,
            Err(LimitError::Unavailable(_))
        ));

        // Back on the same port: both recover by themselves.
        let server = private_redis(port).await;
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        for l in [&open, &closed] {
            loop {
                match l.admit(&a).await {
                    Ok(Decision::Admitted(r, _)) if !r.degraded => break,
                    _ => {}
                }
                assert!(std::time::Instant::now() < deadline, "did not recover");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            assert!(l.health().reachable);
        }
        stop(server).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_unreachable_url_fails_fast_per_mode() {
        let url = format!("redis://127.0.0.1:{}/0", free_port());
        let open = RedisLimiter::new(&url, "t", FailMode::FailOpen).unwrap();
        let a = adm(&[("key:z", tpd(10))], 1);
        for _ in 0..3 {
            assert!(matches!(open.admit(&a).await, Ok(Decision::Admitted(r, _)) if r.degraded));
        }
        let closed = limiter_from_url_checked(&url);
        assert!(closed.admit(&a).await.is_err());
        assert!(matches!(
            crate::limiter_from_url("mysql://x", "p", FailMode::FailOpen),
            Err(LimitError::Url(_))
        ));
    }

    fn limiter_from_url_checked(url: &str) -> Arc<dyn Limiter> {
        crate::limiter_from_url(url, "t", FailMode::FailClosed).unwrap()
    }
}
