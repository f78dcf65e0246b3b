//! Budget counters in memory: the semantics of [`crate::budget_hold`] under one lock.

use crate::budget_hold::{BudgetDecision, BudgetHold, Plan, money};
use crate::pricing::Money;
use std::collections::{BTreeSet, HashMap};

/// Sweep expired counters at least this many holds apart.
const SWEEP_EVERY: u64 = 4096;

/// One (scope, period) counter: spent + held, and the holds in it.
#[derive(Debug, Default)]
struct Counter {
    /// Spent + held, µ$.
    value: Money,
    /// The soft alert of this period has fired.
    alerted: bool,
    /// Hold id → (amount held, lease expiry).
    holds: HashMap<String, (Money, i64)>,
    /// (lease expiry, hold id), oldest first.
    leases: BTreeSet<(i64, String)>,
    /// When the counter is forgotten (its period's end plus the margin).
    expires_at: i64,
}

impl Counter {
    /// Drops holds whose lease ran out: their amounts leave the counter.
    fn sweep(&mut self, now: i64) {
        while let Some((exp, id)) = self.leases.first().cloned() {
            if exp > now {
                break;
            }
            self.leases.pop_first();
            if let Some((amount, _)) = self.holds.remove(&id) {
                self.value = (self.value - amount).max(0);
            }
        }
    }
}

/// Every budget counter of one process.
#[derive(Debug, Default)]
pub(super) struct Budgets {
    counters: HashMap<String, Counter>,
    /// Holds not yet settled: id → when the marker lapses.
    live: HashMap<String, i64>,
    holds: u64,
    next_sweep: u64,
}

impl Budgets {
    fn maybe_sweep(&mut self, now: i64) {
        self.holds += 1;
        if self.holds < self.next_sweep {
            return;
        }
        self.counters.retain(|_, c| c.expires_at > now);
        self.live.retain(|_, exp| *exp > now);
        let size = (self.counters.len() + self.live.len()) as u64;
        self.next_sweep = self.holds + SWEEP_EVERY.max(size);
    }

    /// The live counter `key`, created from `seed` (to live until `expires_at`) if missing.
    fn counter(
        &mut self,
        key: &str,
        seed: Option<Money>,
        now: i64,
        expires_at: i64,
    ) -> Option<&mut Counter> {
        if self.counters.get(key).is_some_and(|c| c.expires_at <= now) {
            self.counters.remove(key);
        }
        if !self.counters.contains_key(key) {
            let value = seed?;
            self.counters.insert(
                key.to_owned(),
                Counter {
                    value,
                    expires_at,
                    ..Counter::default()
                },
            );
        }
        let c = self.counters.get_mut(key)?;
        c.sweep(now);
        Some(c)
    }

    /// Checks every budget of `plan` and holds all or none (see [`crate::budget_hold`]).
    pub(super) fn hold(&mut self, plan: &Plan, id: String, lease_ms: i64) -> BudgetDecision {
        let now = plan.now;
        self.maybe_sweep(now);
        let mut before: Vec<Option<Money>> = Vec::with_capacity(plan.items.len());
        for item in &plan.items {
            let expires_at = now.saturating_add(plan.ttl_ms(item));
            let v = self
                .counter(&item.counter.key(), item.seed, now, expires_at)
                .map(|c| c.value);
            before.push(v);
        }
        // A budget already known to refuse settles it, seeds or not.
        for (item, v) in plan.items.iter().zip(&before) {
            if let Some(v) = v
                && v.saturating_add(plan.worst) > item.limit
            {
                return plan.refused(item, *v);
            }
        }
        let missing: Vec<usize> = (0..before.len()).filter(|i| before[*i].is_none()).collect();
        if !missing.is_empty() {
            return plan.need(&missing);
        }
        let before: Vec<Money> = before.into_iter().map(Option::unwrap_or_default).collect();
        let mut alerts = Vec::with_capacity(before.len());
        for (item, v) in plan.items.iter().zip(&before) {
            let ttl = plan.ttl_ms(item);
            let Some(c) = self.counters.get_mut(&item.counter.key()) else {
                alerts.push(false);
                continue;
            };
            c.value = money(c.value.saturating_add(plan.worst));
            let lease_end = now.saturating_add(lease_ms);
            c.holds.insert(id.clone(), (plan.worst, lease_end));
            c.leases.insert((lease_end, id.clone()));
            c.expires_at = c.expires_at.max(now.saturating_add(ttl));
            let alert = !c.alerted && v.saturating_add(plan.worst) >= item.soft;
            c.alerted |= alert;
            alerts.push(alert);
        }
        self.live
            .insert(id.clone(), now.saturating_add(plan.marker_ttl_ms()));
        plan.held(id, &before, &alerts)
    }

    /// Replaces hold `h` by `actual`, once.
    pub(super) fn settle(&mut self, h: &BudgetHold, actual: Money, now: i64) {
        let Some(exp) = self.live.remove(&h.id) else {
            return; // settled before, or lapsed
        };
        if exp <= now {
            return;
        }
        let actual = money(actual);
        for counter in &h.counters {
            let Some(c) = self.counters.get_mut(&counter.key()) else {
                continue; // forgotten: the ledger will seed it
            };
            if c.expires_at <= now {
                continue;
            }
            let delta = match c.holds.remove(&h.id) {
                Some((held, lease_end)) => {
                    c.leases.remove(&(lease_end, h.id.clone()));
                    actual - held
                }
                // Its lease ran out and took the hold away: the cost still happened.
                None => actual,
            };
            c.value = money(c.value.saturating_add(delta));
        }
    }
}
