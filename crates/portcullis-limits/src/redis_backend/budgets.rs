//! Budget holds on Redis: one `hold.lua` call checks and holds every budget of a request,
//! one `settle_hold.lua` call settles it (see [`crate::budget_hold`] for the semantics).
//!
//! Keys (under the configured prefix), per (scope, period) counter:
//! - `{prefix}:m:{scope}:{period}` — a hash: `v` spent + held (µ$), `a` soft alert fired,
//!   `h:{hold}` the amount each unsettled hold has in `v`;
//! - `{prefix}:ml:{scope}:{period}` — a sorted set of hold ids scored by lease expiry;
//! - `{prefix}:mr:{hold}` — present while a hold is unsettled; settlement deletes it first.
//!
//! All expire [`crate::PERIOD_MARGIN`] after their period ends. Periods and leases use the
//! limiter's clock ([`RedisLimiter::with_clock`]), not Redis's, since budgets follow the UTC
//! calendar and tests must be able to move it; replicas' clocks are assumed NTP-synced.

use super::RedisLimiter;
use super::protocol::{bad_reply, num};
use crate::budget_hold::{BudgetDecision, BudgetHold, Counter, Plan, money};
use crate::limiter::{FailMode, LimitError, new_id};
use crate::pricing::Money;
use redis::Value;
use std::sync::atomic::Ordering;

impl RedisLimiter {
    fn counter_keys(&self, c: &Counter) -> [String; 2] {
        let k = c.key();
        [
            format!("{}:m:{k}", self.prefix),
            format!("{}:ml:{k}", self.prefix),
        ]
    }

    fn hold_marker(&self, id: &str) -> String {
        format!("{}:mr:{id}", self.prefix)
    }

    /// Holds per `plan` in one script call, or answers per the fail mode when Redis is down.
    pub(super) async fn hold_plan(&self, plan: &Plan) -> Result<BudgetDecision, LimitError> {
        let id = new_id();
        if plan.items.is_empty() {
            return Ok(plan.held(id, &[], &[]));
        }
        let mut keys = Vec::with_capacity(2 * plan.items.len() + 1);
        let mut args = vec![
            plan.items.len().to_string(),
            id.clone(),
            plan.now.to_string(),
            self.lease.as_millis().max(1).to_string(),
            plan.worst.to_string(),
            plan.marker_ttl_ms().to_string(),
        ];
        for item in &plan.items {
            keys.extend(self.counter_keys(&item.counter));
            args.extend([
                item.limit.to_string(),
                item.soft.to_string(),
                plan.ttl_ms(item).to_string(),
                item.seed.map(|s| s.to_string()).unwrap_or_default(),
            ]);
        }
        keys.push(self.hold_marker(&id));
        let reply: Vec<Value> = match self.conn.invoke(&self.hold, &keys, &args).await {
            Ok(v) => v,
            Err(e) => return self.budgets_down(plan, e),
        };
        let item = |v: Option<&Value>| {
            let i = v.map(num).ok_or_else(bad_reply)?;
            usize::try_from(i - 1)
                .ok()
                .filter(|i| *i < plan.items.len())
                .ok_or_else(bad_reply)
        };
        match reply.first().map(num) {
            Some(1) => {
                let mut before = Vec::with_capacity(plan.items.len());
                let mut alerts = Vec::with_capacity(plan.items.len());
                for pair in reply.get(1..).unwrap_or_default().chunks_exact(2) {
                    before.push(money(num(&pair[0])));
                    alerts.push(num(&pair[1]) == 1);
                }
                if before.len() != plan.items.len() {
                    return Err(bad_reply());
                }
                Ok(plan.held(id, &before, &alerts))
            }
            Some(0) => {
                let i = item(reply.get(1))?;
                let before = reply.get(2).map(num).ok_or_else(bad_reply)?;
                Ok(plan.refused(&plan.items[i], money(before)))
            }
            Some(2) => {
                let missing = reply
                    .iter()
                    .skip(1)
                    .map(|v| item(Some(v)))
                    .collect::<Result<Vec<usize>, _>>()?;
                Ok(plan.need(&missing))
            }
            _ => Err(bad_reply()),
        }
    }

    fn budgets_down(&self, plan: &Plan, e: LimitError) -> Result<BudgetDecision, LimitError> {
        let c = &self.conn.counters;
        match self.fail {
            FailMode::FailOpen => {
                c.degraded.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "limits backend down: admitting over budgets unchecked (fail_open)");
                Ok(BudgetDecision::Held(
                    BudgetHold::degraded(plan.worst, plan.now),
                    Vec::new(),
                ))
            }
            FailMode::FailClosed => {
                c.refused.fetch_add(1, Ordering::Relaxed);
                Err(e)
            }
        }
    }

    /// Settles `h` at `actual` once; retried in the background if Redis does not answer.
    pub(super) async fn settle_hold(
        &self,
        h: &BudgetHold,
        actual: Money,
    ) -> Result<(), LimitError> {
        if !h.needs_settle() {
            return Ok(());
        }
        let mut keys = vec![self.hold_marker(&h.id)];
        for c in &h.counters {
            keys.extend(self.counter_keys(c));
        }
        let args = vec![
            h.counters.len().to_string(),
            h.id.clone(),
            money(actual).to_string(),
        ];
        match self
            .conn
            .invoke::<i64>(&self.settle_hold, &keys, &args)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => {
                self.conn
                    .retry_later(self.settle_hold.clone(), keys, args, "a budget hold");
                Err(e)
            }
        }
    }
}
