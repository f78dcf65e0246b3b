//! The in-memory backend: one process, no setup; the default (`memory://`).
//!
//! # Layout
//! - this file: [`MemoryLimiter`] and its sliding windows and parallel slots.
//! - `budgets`: money budget counters (spent + held per scope and period).
//! - `tests`: the shared suites run in memory, and cases only a hand-moved clock shows.

mod budgets;

use crate::budget_hold::{BudgetAdmission, BudgetDecision, BudgetHold};
use crate::limiter::{
    Admission, BucketSpec, Decision, Headroom, Kind, LimitError, Limiter, Refusal, Reservation,
    Room, new_id, settle_delta, system_ms,
};
use crate::pricing::Money;
use crate::window::{Slicing, wait_for};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// A source of time in ms since the epoch, replaceable so tests can move time by hand.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// How long a parallel slot is held if its holder never settles.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(15 * 60);

/// Sweep expired state at least this many admissions apart, so idle scopes do not pile up.
const SWEEP_EVERY: u64 = 4096;

/// One window's usage per slice, oldest first, with its running total.
#[derive(Debug, Default)]
struct SliceLog {
    slices: VecDeque<(i64, u64)>,
    sum: u64,
}

impl SliceLog {
    fn prune(&mut self, low: i64) {
        while let Some(&(i, amount)) = self.slices.front() {
            if i >= low {
                break;
            }
            self.sum = self.sum.saturating_sub(amount);
            self.slices.pop_front();
        }
    }

    fn add(&mut self, i: i64, amount: u64) {
        self.sum = self.sum.saturating_add(amount);
        match self.slices.back_mut() {
            Some((last, a)) if *last == i => *a = a.saturating_add(amount),
            _ => self.slices.push_back((i, amount)),
        }
    }

    /// Adds `delta` to slice `i` if it is still held, never below zero.
    fn adjust(&mut self, i: i64, delta: i64) {
        let Some(slot) = self.slices.iter_mut().find(|(j, _)| *j == i) else {
            return;
        };
        let before = slot.1;
        slot.1 = before.saturating_add_signed(delta);
        self.sum = self.sum.saturating_sub(before).saturating_add(slot.1);
    }

    fn latest(&self) -> Option<i64> {
        self.slices.back().map(|(i, _)| *i)
    }

    fn as_vec(&self) -> Vec<(i64, u64)> {
        self.slices.iter().copied().collect()
    }
}

#[derive(Default)]
struct State {
    windows: HashMap<String, SliceLog>,
    /// Parallel slots per window: reservation id → lease expiry.
    slots: HashMap<String, HashMap<String, i64>>,
    /// Reservations not yet settled: id → lease expiry.
    live: HashMap<String, i64>,
    admissions: u64,
    next_sweep: u64,
}

impl State {
    fn sweep(&mut self, now: i64) {
        self.windows.retain(|key, w| {
            let slicing = slicing_of(key);
            w.prune(slicing.low(now));
            !w.slices.is_empty()
        });
        self.slots.retain(|_, s| {
            s.retain(|_, exp| *exp > now);
            !s.is_empty()
        });
        self.live.retain(|_, exp| *exp > now);
    }

    fn slot_count(&mut self, key: &str, now: i64) -> u64 {
        self.slots.get_mut(key).map_or(0, |s| {
            s.retain(|_, exp| *exp > now);
            s.len() as u64
        })
    }
}

/// The slicing of a stored window from its key's suffix (for sweeping).
fn slicing_of(key: &str) -> Slicing {
    use crate::limiter::Limit;
    let limit = match key.rsplit(':').next() {
        Some("tph") => Limit::Tph,
        Some("tpd") => Limit::Tpd,
        _ => Limit::Tpm,
    };
    limit.slicing()
}

/// One process's limits, in memory.
pub struct MemoryLimiter {
    state: Mutex<State>,
    budgets: Mutex<budgets::Budgets>,
    clock: Clock,
    lease: Duration,
}

impl Default for MemoryLimiter {
    fn default() -> Self {
        MemoryLimiter::with_clock(Arc::new(system_ms))
    }
}

impl std::fmt::Debug for MemoryLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryLimiter")
            .field("lease", &self.lease)
            .finish_non_exhaustive()
    }
}

impl MemoryLimiter {
    /// A limiter reading time from `clock` (tests move time by hand).
    pub fn with_clock(clock: Clock) -> Self {
        MemoryLimiter {
            state: Mutex::new(State::default()),
            budgets: Mutex::new(budgets::Budgets::default()),
            clock,
            lease: DEFAULT_LEASE,
        }
    }

    /// Parallel slots and budget holds not settled within `lease` free themselves.
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    fn lock(&self) -> Result<MutexGuard<'_, State>, LimitError> {
        self.state
            .lock()
            .map_err(|_| LimitError::Unavailable("limiter state poisoned by a panic".into()))
    }

    fn lock_budgets(&self) -> Result<MutexGuard<'_, budgets::Budgets>, LimitError> {
        self.budgets
            .lock()
            .map_err(|_| LimitError::Unavailable("budget state poisoned by a panic".into()))
    }
}

/// A window's room at `used`, whole again when slice `latest` leaves.
fn room(s: &BucketSpec, used: u64, latest: Option<i64>, now: i64) -> Room {
    Room {
        limit: s.capacity,
        remaining: s.capacity.saturating_sub(used),
        reset: s.limit.slicing().reset(latest, now),
    }
}

#[async_trait::async_trait]
impl Limiter for MemoryLimiter {
    async fn admit(&self, a: &Admission) -> Result<Decision, LimitError> {
        let specs = a.buckets();
        let now = (self.clock)();
        let lease_ms = self.lease.as_millis() as i64;
        let mut st = self.lock()?;
        st.admissions += 1;
        if st.admissions >= st.next_sweep {
            st.sweep(now);
            // Sweeping costs the size of the state; spacing sweeps by it keeps that O(1) per
            // admission however many scopes there are.
            let size = (st.windows.len() + st.slots.len() + st.live.len()) as u64;
            st.next_sweep = st.admissions + SWEEP_EVERY.max(size);
        }
        // Check every window first; charge only if all have room.
        let mut used = Vec::with_capacity(specs.len());
        let mut refused = None;
        for (i, s) in specs.iter().enumerate() {
            let u = match s.limit.kind() {
                Kind::Parallel => st.slot_count(&s.key, now),
                Kind::Requests | Kind::Tokens => st.windows.get_mut(&s.key).map_or(0, |w| {
                    w.prune(s.limit.slicing().low(now));
                    w.sum
                }),
            };
            used.push(u);
            if refused.is_none() && u.saturating_add(s.cost) > s.capacity {
                refused = Some(i);
            }
        }
        let mut head = Headroom::default();
        if let Some(i) = refused {
            for (s, u) in specs.iter().zip(&used) {
                let latest = st.windows.get(&s.key).and_then(SliceLog::latest);
                head.note(s.limit.kind(), room(s, *u, latest, now));
            }
            let s = &specs[i];
            let wait = match s.limit.kind() {
                Kind::Parallel => Some(Duration::from_secs(1)),
                _ => {
                    let slices = st.windows.get(&s.key).map(SliceLog::as_vec);
                    wait_for(
                        s.limit.slicing(),
                        &slices.unwrap_or_default(),
                        used[i],
                        s.capacity,
                        s.cost,
                        now,
                    )
                }
            };
            return Ok(Decision::Refused(Refusal {
                bucket: s.key.clone(),
                scope: s.scope.clone(),
                limit: s.limit,
                kind: s.limit.kind(),
                capacity: s.capacity,
                requested: s.cost,
                too_large: wait.is_none(),
                retry_after: wait.unwrap_or(s.limit.window()),
                headroom: head,
            }));
        }
        let id = new_id();
        for (s, u) in specs.iter().zip(&used) {
            match s.limit.kind() {
                Kind::Parallel => {
                    st.slots
                        .entry(s.key.clone())
                        .or_default()
                        .insert(id.clone(), now + lease_ms);
                }
                Kind::Requests | Kind::Tokens => {
                    let slicing = s.limit.slicing();
                    st.windows
                        .entry(s.key.clone())
                        .or_default()
                        .add(slicing.slice(now), s.cost);
                    head.note(
                        s.limit.kind(),
                        room(s, u.saturating_add(s.cost), Some(slicing.slice(now)), now),
                    );
                }
            }
        }
        let r = Reservation {
            id,
            buckets: specs,
            at_ms: now,
            tokens: a.tokens,
            degraded: false,
        };
        if r.needs_settle() {
            st.live.insert(r.id.clone(), now + lease_ms);
        }
        Ok(Decision::Admitted(r, head))
    }

    async fn settle(&self, r: &Reservation, actual_tokens: u64) -> Result<(), LimitError> {
        let now = (self.clock)();
        let mut st = self.lock()?;
        if st.live.remove(&r.id).is_none() {
            return Ok(()); // already settled, expired, degraded or nothing to settle
        }
        let delta = settle_delta(actual_tokens, r.tokens);
        for s in &r.buckets {
            match s.limit.kind() {
                Kind::Parallel => {
                    if let Some(slots) = st.slots.get_mut(&s.key) {
                        slots.remove(&r.id);
                    }
                }
                Kind::Tokens if delta != 0 => {
                    let slicing = s.limit.slicing();
                    if let Some(w) = st.windows.get_mut(&s.key) {
                        w.prune(slicing.low(now));
                        w.adjust(slicing.slice(r.at_ms), delta);
                    }
                }
                Kind::Tokens | Kind::Requests => {}
            }
        }
        Ok(())
    }

    async fn hold_budgets(&self, b: &BudgetAdmission) -> Result<BudgetDecision, LimitError> {
        let plan = b.plan((self.clock)());
        if plan.items.is_empty() {
            return Ok(plan.held(new_id(), &[], &[]));
        }
        let lease_ms = self.lease.as_millis() as i64;
        Ok(self.lock_budgets()?.hold(&plan, new_id(), lease_ms))
    }

    async fn settle_budgets(&self, h: &BudgetHold, actual: Money) -> Result<(), LimitError> {
        if !h.needs_settle() {
            return Ok(());
        }
        let now = (self.clock)();
        self.lock_budgets()?.settle(h, actual, now);
        Ok(())
    }

    async fn ping(&self) -> Result<(), LimitError> {
        self.lock().map(|_| ())
    }
}

#[cfg(test)]
mod tests;
