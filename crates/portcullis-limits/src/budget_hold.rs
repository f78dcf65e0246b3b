//! Money budgets held at admission, shared by every replica: what is asked
//! ([`BudgetAdmission`]), what is answered ([`BudgetDecision`]) and what is settled
//! ([`BudgetHold`]). The backends ([`crate::MemoryLimiter`], [`crate::RedisLimiter`]) implement
//! it through [`crate::Limiter::hold_budgets`] and [`crate::Limiter::settle_budgets`].
//!
//! Semantics, shared by every backend:
//! - Each (scope, period) — `user:alice` on `2026-11-24`, `team:red` in `2026-11` — has one
//!   counter: **spent + held** in µ$. A hold checks the request's worst case against every
//!   budget it names and, only if all fit (`counter + worst ≤ limit`), adds it to all of them,
//!   atomically; else it holds nothing and names the first budget (in the order given) that
//!   would be exceeded.
//! - Settling replaces the hold by the actual cost (releasing = settling at zero); the second
//!   settlement does nothing. A hold not settled within the lease (15 minutes by default) is
//!   dropped from its counters, so a replica that dies mid-request does not block a budget for
//!   the rest of the month; its later settlement then adds the actual cost.
//! - The durable record of spend is the store's ledger. A counter the limiter does not have
//!   (first use of a period by this process, or Redis lost the key) must be **seeded** with the
//!   ledger's total for that scope and period: the hold answers [`BudgetDecision::NeedSeed`],
//!   the caller reads the ledger and asks again with [`SeedRequest::answer`]s. A seed for a
//!   counter that exists by then (another replica seeded it) is ignored. After that, no
//!   database round trip is needed for the rest of the period.
//! - Soft threshold: the first hold in a period that brings a counter to its budget's soft
//!   threshold (80 % by default) is marked [`BudgetStanding::alert`] — once per counter and
//!   period across replicas on Redis (again only if Redis loses the counter), once per process
//!   in memory.
//! - Amounts are clamped to `0..=`[`MAX_MONEY`] (2⁵³ − 1 µ$, about nine billion dollars,
//!   where Redis's Lua numbers stop being exact); a budget above it is effectively unlimited.
//! - Periods come from the limiter's clock (injectable), UTC calendar days and months.
//!   Counters expire [`PERIOD_MARGIN`] after their period ends.
//!
//! Known limits: a hold lost with a Redis key or a dead process is not in the re-seeded counter
//! until its cost reaches the ledger (the caller should settle *before* it books the ledger
//! entry, so a late settlement is counted, see [`crate::Limiter::settle_budgets`]); and a budget
//! removed and re-added within one period finds its counter as it was left.

use crate::budget::{Budget, BudgetCheck, BudgetWindow, Period};
use crate::headers::{openai_duration, retry_headers};
use crate::limiter::Scope;
use crate::pricing::{Money, format_usd};
use std::time::Duration;

/// The largest amount (µ$) a counter, budget or cost is taken as: 2⁵³ − 1.
pub const MAX_MONEY: Money = (1 << 53) - 1;

/// How long a budget counter outlives its period (clock skew between replicas, late
/// settlements); a period's counter is never read after that.
pub const PERIOD_MARGIN: Duration = Duration::from_secs(3_600);

/// `v` clamped to `0..=MAX_MONEY`.
pub(crate) fn money(v: Money) -> Money {
    v.clamp(0, MAX_MONEY)
}

/// A request's worst-case cost to hold against the budgets of the scopes it is charged to.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BudgetAdmission {
    /// `(scope id, budget)`: `("user:alice", Budget::daily(…))`; a scope may have a daily and a
    /// monthly budget. The same scope and window twice counts once, under the smaller limit.
    pub budgets: Vec<(String, Budget)>,
    /// The worst case in µ$ (see [`crate::Pricing::worst_case_of`]).
    pub worst: Money,
    /// Ledger totals for the counters a previous answer asked for.
    pub seeds: Vec<Seed>,
}

impl BudgetAdmission {
    /// Holds `worst` µ$, against no budget yet.
    pub fn new(worst: Money) -> BudgetAdmission {
        BudgetAdmission {
            worst,
            ..BudgetAdmission::default()
        }
    }

    /// Also holds against `budget` of `scope`.
    pub fn budget(mut self, scope: &Scope, budget: Budget) -> BudgetAdmission {
        self.budgets.push((scope.id(), budget));
        self
    }

    /// Adds the seeds a [`BudgetDecision::NeedSeed`] asked for.
    pub fn seeded(mut self, seeds: impl IntoIterator<Item = Seed>) -> BudgetAdmission {
        self.seeds.extend(seeds);
        self
    }
}

/// A counter the limiter lacks: read the ledger's total for `scope` since `period.start_ms`
/// and pass it back with [`SeedRequest::answer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedRequest {
    /// The scope id, as given in [`BudgetAdmission::budgets`].
    pub scope: String,
    /// Whose period it is.
    pub window: BudgetWindow,
    /// The period to total: ledger entries with `start_ms ≤ time < end_ms`.
    pub period: Period,
}

impl SeedRequest {
    /// The seed for this counter: `spent` is the ledger's total for the period.
    pub fn answer(&self, spent: Money) -> Seed {
        Seed {
            scope: self.scope.clone(),
            period_key: self.period.key.clone(),
            spent,
        }
    }
}

/// The ledger's total for one counter (a seed for another period is ignored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seed {
    /// The scope id.
    pub scope: String,
    /// The period's key (`2026-11-24`, `2026-11`).
    pub period_key: String,
    /// µ$ spent in that period per the ledger.
    pub spent: Money,
}

/// One (scope, period) counter a hold is in, so settlement finds it again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Counter {
    pub scope: String,
    pub period: Period,
}

impl Counter {
    /// The counter's name in a backend: `scope:period`.
    pub(crate) fn key(&self) -> String {
        format!("{}:{}", self.scope, self.period.key)
    }
}

/// Held by an admitted request until it is settled or released (exactly once; again is a no-op).
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetHold {
    pub(crate) id: String,
    pub(crate) counters: Vec<Counter>,
    /// The amount held on each counter (the worst case, clamped).
    pub worst: Money,
    /// When it was held, on the limiter's clock (ms since the epoch): book the ledger entry at
    /// this time so that ledger and counters agree on its period.
    pub at_ms: i64,
    /// Held without checking: the backend was down and policy is fail-open (alert).
    pub degraded: bool,
}

impl BudgetHold {
    /// A unique id (random), e.g. for logs.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Whether settling has anything to do.
    pub(crate) fn needs_settle(&self) -> bool {
        !self.degraded && !self.counters.is_empty()
    }

    pub(crate) fn degraded(worst: Money, at_ms: i64) -> BudgetHold {
        BudgetHold {
            id: crate::limiter::new_id(),
            counters: Vec::new(),
            worst,
            at_ms,
            degraded: true,
        }
    }
}

/// One budget as it stands, for a refusal or an alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetStanding {
    /// The scope id.
    pub scope: String,
    /// The budget checked.
    pub budget: Budget,
    /// Committed (spent + held + this request), remaining, period, time to reset.
    pub check: BudgetCheck,
    /// This hold is the first of the period to reach the soft threshold: alert now (the
    /// limiter says so once per counter and period).
    pub alert: bool,
}

impl BudgetStanding {
    /// A line for the soft alert: who, which budget, how much of it is committed.
    pub fn alert_message(&self) -> String {
        let pct = if self.check.limit > 0 {
            i128::from(self.check.committed) * 100 / i128::from(self.check.limit)
        } else {
            100
        };
        format!(
            "'{}' has committed {pct} % of its {} budget of {} ({} in period {})",
            self.scope,
            period_adjective(self.budget.window),
            format_usd(self.check.limit),
            format_usd(self.check.committed),
            self.check.period.key
        )
    }

    /// The same for every alert of this scope and period (dedupe key).
    pub fn alert_key(&self) -> String {
        self.check.alert_key(&self.scope)
    }
}

fn period_adjective(w: BudgetWindow) -> &'static str {
    match w {
        BudgetWindow::Day => "daily",
        BudgetWindow::Month => "monthly",
    }
}

/// Why a hold was refused: the budget that would be exceeded (answer 429 `insufficient_quota`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetRefusal {
    /// The budget that refused, as it stands (nothing was held).
    pub standing: BudgetStanding,
    /// The worst case alone exceeds the whole budget: it can never fit; lower `max_tokens` or `n`.
    pub too_large: bool,
}

impl BudgetRefusal {
    /// Until the period ends, when the budget is whole again.
    pub fn retry_after(&self) -> Duration {
        self.standing.check.resets_in
    }

    /// `Retry-After` in whole seconds, rounded up (at least 1).
    pub fn retry_after_secs(&self) -> u64 {
        crate::headers::retry_after_secs(self.retry_after())
    }

    /// `retry-after` and `retry-after-ms` for the 429, rounded up.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        retry_headers(self.retry_after())
    }

    /// A message naming the scope, the budget and the amounts, and when it resets.
    pub fn message(&self) -> String {
        let s = &self.standing;
        if self.too_large {
            return format!(
                "This request may cost up to {}, more than the whole {} budget of {} for '{}'. Lower max_tokens or n, or shorten the prompt.",
                format_usd(s.check.worst),
                period_adjective(s.budget.window),
                format_usd(s.check.limit),
                s.scope
            );
        }
        format!(
            "{} Try again in {}.",
            s.check.message(&s.scope, s.budget.window),
            openai_duration(self.retry_after())
        )
    }
}

/// The answer to a hold.
#[derive(Debug, Clone, PartialEq)]
pub enum BudgetDecision {
    /// Held on every budget: keep the hold and settle or release it exactly once. The
    /// standings are one per budget, in order; alert for those marked `alert`.
    Held(BudgetHold, Vec<BudgetStanding>),
    /// Nothing held: a budget would be exceeded.
    Refused(BudgetRefusal),
    /// Nothing held: these counters need their ledger totals; ask again with the seeds.
    NeedSeed(Vec<SeedRequest>),
}

/// One budget of an admission resolved against the clock.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Item {
    pub scope: String,
    pub budget: Budget,
    pub counter: Counter,
    /// The limit, clamped.
    pub limit: Money,
    /// The soft threshold, clamped.
    pub soft: Money,
    /// The ledger total passed for this counter, if any.
    pub seed: Option<Money>,
}

/// A budget admission resolved against the clock: what the backends execute.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Plan {
    pub now: i64,
    pub worst: Money,
    pub items: Vec<Item>,
}

impl BudgetAdmission {
    /// Resolves periods at `now`, clamps amounts, matches seeds and merges duplicate counters.
    pub(crate) fn plan(&self, now: i64) -> Plan {
        let mut items: Vec<Item> = Vec::with_capacity(self.budgets.len());
        for (scope, budget) in &self.budgets {
            let period = budget.window.period(now);
            let limit = money(budget.limit);
            let seed = self
                .seeds
                .iter()
                .find(|s| s.scope == *scope && s.period_key == period.key)
                .map(|s| money(s.spent));
            let counter = Counter {
                scope: scope.clone(),
                period,
            };
            if let Some(same) = items.iter_mut().find(|i| i.counter == counter) {
                if limit < same.limit {
                    same.limit = limit;
                    same.budget = *budget;
                    same.soft = money(budget.soft_threshold());
                }
                continue;
            }
            items.push(Item {
                scope: scope.clone(),
                budget: *budget,
                counter,
                limit,
                soft: money(budget.soft_threshold()),
                seed,
            });
        }
        Plan {
            now,
            worst: money(self.worst),
            items,
        }
    }
}

impl Plan {
    fn standing(&self, item: &Item, before: Money, alert: bool) -> BudgetStanding {
        let budget = Budget {
            limit: item.limit,
            ..item.budget
        };
        BudgetStanding {
            scope: item.scope.clone(),
            budget: item.budget,
            check: budget.check(self.now, money(before), 0, self.worst),
            alert,
        }
    }

    /// The refusal by `item`, whose counter stood at `before`.
    pub(crate) fn refused(&self, item: &Item, before: Money) -> BudgetDecision {
        BudgetDecision::Refused(BudgetRefusal {
            too_large: self.worst > item.limit,
            standing: self.standing(item, before, false),
        })
    }

    /// The request for seeds of items `missing`.
    pub(crate) fn need(&self, missing: &[usize]) -> BudgetDecision {
        BudgetDecision::NeedSeed(
            missing
                .iter()
                .filter_map(|i| self.items.get(*i))
                .map(|it| SeedRequest {
                    scope: it.scope.clone(),
                    window: it.budget.window,
                    period: it.counter.period.clone(),
                })
                .collect(),
        )
    }

    /// The grant: counters stood at `before` (one per item) and `alerts` fired.
    pub(crate) fn held(&self, id: String, before: &[Money], alerts: &[bool]) -> BudgetDecision {
        let standings = self
            .items
            .iter()
            .zip(before)
            .zip(alerts)
            .map(|((it, b), a)| self.standing(it, *b, *a))
            .collect();
        BudgetDecision::Held(
            BudgetHold {
                id,
                counters: self.items.iter().map(|i| i.counter.clone()).collect(),
                worst: self.worst,
                at_ms: self.now,
                degraded: false,
            },
            standings,
        )
    }

    /// How long the counter of `item` lives from now (its period and the margin).
    pub(crate) fn ttl_ms(&self, item: &Item) -> i64 {
        item.counter
            .period
            .end_ms
            .saturating_sub(self.now)
            .saturating_add(PERIOD_MARGIN.as_millis() as i64)
            .max(1)
    }

    /// How long the hold's settlement marker lives: as long as its longest counter.
    pub(crate) fn marker_ttl_ms(&self) -> i64 {
        self.items.iter().map(|i| self.ttl_ms(i)).max().unwrap_or(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2026-11-24T15:00:00Z
    const NOW: i64 = 1_795_532_400_000;

    #[test]
    fn a_plan_resolves_periods_matches_seeds_and_merges_duplicates() {
        let a = BudgetAdmission::new(500)
            .budget(&Scope::User("a".into()), Budget::daily(10_000))
            .budget(&Scope::User("a".into()), Budget::monthly(100_000))
            .budget(&Scope::User("a".into()), Budget::daily(5_000))
            .budget(&Scope::Global, Budget::daily(Money::MAX))
            .seeded([
                Seed {
                    scope: "user:a".into(),
                    period_key: "2026-11-24".into(),
                    spent: 7,
                },
                Seed {
                    scope: "user:a".into(),
                    period_key: "2026-11-23".into(),
                    spent: 9,
                },
            ]);
        let p = a.plan(NOW);
        assert_eq!(p.items.len(), 3);
        assert_eq!(p.items[0].counter.key(), "user:a:2026-11-24");
        assert_eq!((p.items[0].limit, p.items[0].seed), (5_000, Some(7)));
        assert_eq!(p.items[0].soft, 4_000);
        assert_eq!(p.items[1].counter.key(), "user:a:2026-11");
        assert_eq!(p.items[1].seed, None);
        assert_eq!(
            (p.items[2].counter.key(), p.items[2].limit),
            ("global:2026-11-24".into(), MAX_MONEY)
        );
        // The day's counter lives to its end plus the margin: 9 h + 1 h.
        assert_eq!(p.ttl_ms(&p.items[0]), 10 * 3_600_000);
        assert!(p.marker_ttl_ms() > 6 * 86_400_000);
        let need = p.need(&[1]);
        let BudgetDecision::NeedSeed(n) = need else {
            panic!("{need:?}")
        };
        assert_eq!(n[0].answer(42).period_key, "2026-11");
        assert_eq!(
            n[0].period.start_ms,
            BudgetWindow::Month.period(NOW).start_ms
        );
    }

    #[test]
    fn amounts_are_clamped() {
        let p = BudgetAdmission::new(Money::MAX)
            .budget(&Scope::Global, Budget::daily(-5))
            .plan(NOW);
        assert_eq!((p.worst, p.items[0].limit), (MAX_MONEY, 0));
        assert_eq!(BudgetAdmission::new(-1).plan(NOW).worst, 0);
    }

    #[test]
    fn refusals_say_what_and_when_rounded_up() {
        let p = BudgetAdmission::new(3_000_000)
            .budget(&Scope::Team("red".into()), Budget::daily(10_000_000))
            .plan(NOW + 500);
        let BudgetDecision::Refused(f) = p.refused(&p.items[0], 8_000_000) else {
            panic!()
        };
        assert!(!f.too_large);
        assert_eq!(f.standing.check.remaining, 2_000_000);
        // 9 h minus half a second, rounded up to 9 h.
        assert_eq!(f.retry_after_secs(), 9 * 3_600);
        assert_eq!(f.headers()[0], ("retry-after", (9 * 3_600).to_string()));
        let m = f.message();
        assert!(
            m.contains("team:red") && m.contains("daily") && m.contains("9h0m0s"),
            "{m}"
        );
        let p = BudgetAdmission::new(20_000_000)
            .budget(&Scope::Global, Budget::daily(10_000_000))
            .plan(NOW);
        let BudgetDecision::Refused(f) = p.refused(&p.items[0], 0) else {
            panic!()
        };
        assert!(
            f.too_large && f.message().contains("max_tokens"),
            "{}",
            f.message()
        );
    }
}
