//! Money budgets: calendar periods (UTC day, UTC month — budgets are calendar by definition)
//! and the soft / hard evaluation of a request's worst case against what is spent and held.
//! Pure functions: no clock, no I/O; [`crate::budget_hold`] runs them on shared counters.

use crate::pricing::{Money, format_usd};
use serde::Deserialize;
use std::time::Duration;

const DAY_MS: i64 = 86_400_000;

/// The period a budget counts over, in UTC. Config: `"day"` or `"month"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BudgetWindow {
    /// The UTC calendar day.
    Day,
    /// The UTC calendar month.
    Month,
}

/// One concrete period: its key (`2026-11-24`, `2026-11`) and bounds in ms since the epoch.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Period {
    /// Stable name of the period, for ledger queries and once-per-period alerts.
    pub key: String,
    /// First instant (inclusive).
    pub start_ms: i64,
    /// First instant of the next period (exclusive).
    pub end_ms: i64,
}

/// Days since 1970-01-01 → (year, month 1–12, day 1–31), Howard Hinnant's algorithm.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// (year, month, day) → days since 1970-01-01.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

impl BudgetWindow {
    /// The period containing `now_ms`.
    pub fn period(self, now_ms: i64) -> Period {
        let days = now_ms.div_euclid(DAY_MS);
        let (y, m, d) = civil_from_days(days);
        match self {
            BudgetWindow::Day => Period {
                key: format!("{y:04}-{m:02}-{d:02}"),
                start_ms: days * DAY_MS,
                end_ms: (days + 1) * DAY_MS,
            },
            BudgetWindow::Month => {
                let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
                Period {
                    key: format!("{y:04}-{m:02}"),
                    start_ms: days_from_civil(y, m, 1) * DAY_MS,
                    end_ms: days_from_civil(ny, nm, 1) * DAY_MS,
                }
            }
        }
    }

    /// `day` or `month`, for messages and alert keys.
    pub fn name(self) -> &'static str {
        match self {
            BudgetWindow::Day => "day",
            BudgetWindow::Month => "month",
        }
    }
}

/// A money budget for one scope and window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Day or month.
    pub window: BudgetWindow,
    /// Hard limit in micro-dollars: a request whose worst case would cross it is refused.
    pub limit: Money,
    /// Soft threshold in percent of `limit` (default 80): crossing it raises an alert.
    pub soft_percent: u8,
}

/// The default soft threshold, in percent.
pub const DEFAULT_SOFT_PERCENT: u8 = 80;

/// Where a request stands against a budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BudgetStatus {
    /// Below the soft threshold even at worst case.
    Within,
    /// Admitted, but at worst case it reaches the soft threshold: alert once per period.
    Soft,
    /// Refused: at worst case it would cross the hard limit.
    Exceeded,
}

/// The outcome of checking a request against a budget, with what a 429 and an alert need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetCheck {
    /// Within, soft or exceeded.
    pub status: BudgetStatus,
    /// The budget's period (its key dedupes soft alerts).
    pub period: Period,
    /// Spent plus held plus this request's worst case.
    pub committed: Money,
    /// The hard limit.
    pub limit: Money,
    /// What is left before this request (never negative).
    pub remaining: Money,
    /// This request's worst case.
    pub worst: Money,
    /// Until the period ends (`Retry-After` for a refusal).
    pub resets_in: Duration,
}

impl Budget {
    /// A budget per UTC day of `limit` micro-dollars, soft threshold 80 %.
    pub fn daily(limit: Money) -> Budget {
        Budget {
            window: BudgetWindow::Day,
            limit,
            soft_percent: DEFAULT_SOFT_PERCENT,
        }
    }

    /// A budget per UTC month of `limit` micro-dollars, soft threshold 80 %.
    pub fn monthly(limit: Money) -> Budget {
        Budget {
            window: BudgetWindow::Month,
            ..Budget::daily(limit)
        }
    }

    /// The same budget with another soft threshold (percent, capped at 100).
    pub fn with_soft_percent(mut self, percent: u8) -> Budget {
        self.soft_percent = percent.min(100);
        self
    }

    /// The committed amount (spent + held + worst case) at which the soft alert fires.
    pub fn soft_threshold(&self) -> Money {
        let soft = i128::from(self.limit) * i128::from(self.soft_percent.min(100)) / 100;
        // At most `limit` (percent ≤ 100), so it fits; the fallback is never taken.
        Money::try_from(soft).unwrap_or(self.limit)
    }

    /// Checks a request: `spent` is the ledger's total for the current period, `held` the
    /// worst cases of requests in flight, `worst` this request's worst case.
    pub fn check(&self, now_ms: i64, spent: Money, held: Money, worst: Money) -> BudgetCheck {
        let period = self.window.period(now_ms);
        let before = spent.saturating_add(held);
        let committed = before.saturating_add(worst.max(0));
        let status = if committed > self.limit {
            BudgetStatus::Exceeded
        } else if committed >= self.soft_threshold() {
            BudgetStatus::Soft
        } else {
            BudgetStatus::Within
        };
        BudgetCheck {
            status,
            committed,
            limit: self.limit,
            remaining: self.limit.saturating_sub(before).max(0),
            worst: worst.max(0),
            resets_in: Duration::from_millis(period.end_ms.saturating_sub(now_ms).max(0) as u64),
            period,
        }
    }
}

impl BudgetCheck {
    /// A message for a refusal (`insufficient_quota`) naming the scope and the amounts.
    pub fn message(&self, scope: &str, window: BudgetWindow) -> String {
        format!(
            "The {} budget of {} for '{scope}' would be exceeded ({} left, this request may cost up to {}). It resets at the start of the next UTC {}.",
            match window {
                BudgetWindow::Day => "daily",
                BudgetWindow::Month => "monthly",
            },
            format_usd(self.limit),
            format_usd(self.remaining),
            format_usd(self.worst),
            window.name()
        )
    }

    /// A key that is the same for every soft alert of `scope` in this period (alert once).
    pub fn alert_key(&self, scope: &str) -> String {
        format!("{scope}:{}", self.period.key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2026-11-24T15:00:00Z
    const NOW: i64 = 1_795_532_400_000;

    #[test]
    fn periods_are_utc_calendar_days_and_months() {
        let d = BudgetWindow::Day.period(NOW);
        assert_eq!(d.key, "2026-11-24");
        assert_eq!(d.start_ms, 1_795_478_400_000);
        assert_eq!(d.end_ms, d.start_ms + DAY_MS);
        let m = BudgetWindow::Month.period(NOW);
        assert_eq!(m.key, "2026-11");
        assert_eq!(m.start_ms, 1_793_491_200_000); // 2026-11-01
        assert_eq!(m.end_ms, m.start_ms + 30 * DAY_MS); // 2026-12-01
        // Boundaries: the first instant of a period is in it, the last ms of the previous is not.
        assert_eq!(BudgetWindow::Month.period(m.start_ms).key, "2026-11");
        assert_eq!(BudgetWindow::Month.period(m.start_ms - 1).key, "2026-10");
        assert_eq!(BudgetWindow::Day.period(d.end_ms).key, "2026-11-25");
        // December rolls into January; February of a leap year has 29 days.
        let dec = BudgetWindow::Month.period(days_from_civil(2026, 12, 31) * DAY_MS);
        assert_eq!(dec.key, "2026-12");
        assert_eq!(dec.end_ms, days_from_civil(2027, 1, 1) * DAY_MS);
        let feb = BudgetWindow::Month.period(days_from_civil(2028, 2, 10) * DAY_MS);
        assert_eq!((feb.end_ms - feb.start_ms) / DAY_MS, 29);
        assert_eq!(BudgetWindow::Day.period(0).key, "1970-01-01");
        assert_eq!(BudgetWindow::Day.period(-1).key, "1969-12-31");
    }

    #[test]
    fn extreme_amounts_saturate_instead_of_wrapping() {
        let c = Budget::daily(1_000).check(NOW, Money::MAX, Money::MAX, Money::MAX);
        assert_eq!(
            (c.status, c.remaining, c.committed),
            (BudgetStatus::Exceeded, 0, Money::MAX)
        );
        let c = Budget::daily(Money::MIN).check(NOW, -5, 0, 0);
        assert_eq!((c.status, c.remaining), (BudgetStatus::Exceeded, 0));
        let c = Budget::monthly(Money::MAX).with_soft_percent(200);
        assert_eq!(c.soft_threshold(), Money::MAX);
        assert_eq!(Budget::daily(1_000).soft_threshold(), 800);
    }

    #[test]
    fn civil_round_trips() {
        for days in (-800_000..800_000).step_by(997) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn soft_and_hard_limits_count_the_worst_case() {
        let b = Budget::daily(10_000_000); // $10
        assert_eq!(
            b.check(NOW, 5_000_000, 0, 2_000_000).status,
            BudgetStatus::Within
        );
        // 8.0 of 10 at worst case: the soft threshold (80 %) is reached.
        let c = b.check(NOW, 5_000_000, 1_000_000, 2_000_000);
        assert_eq!(c.status, BudgetStatus::Soft);
        assert_eq!(c.remaining, 4_000_000);
        // Exactly the limit is allowed; a micro-dollar more is not.
        assert_eq!(
            b.check(NOW, 8_000_000, 0, 2_000_000).status,
            BudgetStatus::Soft
        );
        let c = b.check(NOW, 8_000_000, 0, 2_000_001);
        assert_eq!(c.status, BudgetStatus::Exceeded);
        assert_eq!(c.resets_in, Duration::from_secs(9 * 3600));
        let msg = c.message("user:alice", BudgetWindow::Day);
        assert!(
            msg.contains("$10.000000") && msg.contains("user:alice"),
            "{msg}"
        );
        assert_eq!(c.alert_key("user:alice"), "user:alice:2026-11-24");
        // Already over (spend booked after admission): refused, nothing left.
        let c = b.check(NOW, 12_000_000, 0, 0);
        assert_eq!((c.status, c.remaining), (BudgetStatus::Exceeded, 0));
        // Another threshold.
        let b = Budget::monthly(100).with_soft_percent(50);
        assert_eq!(b.check(NOW, 49, 0, 0).status, BudgetStatus::Within);
        assert_eq!(b.check(NOW, 50, 0, 0).status, BudgetStatus::Soft);
        assert_eq!(b.check(NOW, 0, 0, 0).period.key, "2026-11");
    }
}
