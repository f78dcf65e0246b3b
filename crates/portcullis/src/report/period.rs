//! The report's period facts beyond traffic: the alerts raised, spend against the configured
//! budgets (from the ledger the gateway keeps, never re-priced) with the top spenders, and the
//! policy history — each change of a guard's mode or rollout share.

use crate::config::{Config, Policy};
use crate::policy_history::GuardState;
use portcullis_limits::BudgetWindow;
use portcullis_store::{AlertSummary, GroupBy, PolicyEvent, SpendScope, Store, StoreError};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

/// Most budget lines a report lists (the fullest first).
pub const MAX_BUDGET_LINES: usize = 50;
/// Top spenders listed per kind (key, user, team).
pub const TOP_SPENDERS: usize = 5;
/// Most policy changes a report lists (the newest).
pub const MAX_EVENTS: i64 = 1_000;

/// One budget of one key, user, team or the gateway, against what the ledger says it spent.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BudgetLine {
    /// `key key_1`, `user alice`, `team research`, `gateway`.
    pub scope: String,
    /// `day` or `month` (UTC calendar).
    pub window: &'static str,
    /// The budget's current period (`2026-11-24`, `2026-11`).
    pub period: String,
    pub limit_usd: f64,
    /// Spent in the budget's current period.
    pub spent_usd: f64,
    /// `spent_usd / limit_usd`.
    pub share: f64,
    /// Spent over the report's days.
    pub report_spend_usd: f64,
}

/// One of the period's largest spenders.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TopSpender {
    /// `key`, `user` or `team`.
    pub by: &'static str,
    pub name: String,
    pub requests: i64,
    pub spend_usd: f64,
}

/// Spend against budgets, and who spent most.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Spend {
    /// The fullest budgets first.
    pub budgets: Vec<BudgetLine>,
    /// Budget lines left out beyond [`MAX_BUDGET_LINES`].
    pub more_budgets: usize,
    pub top: Vec<TopSpender>,
}

/// The policy history the report reads.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct History {
    /// The period's changes, oldest first.
    pub events: Vec<PolicyEvent>,
    /// Each guard's latest change, whenever it was (for "since …").
    #[serde(skip)]
    pub latest: BTreeMap<String, PolicyEvent>,
}

/// The alerts of the period, per kind.
pub async fn alerts(store: &Store, since_ms: i64) -> Result<Vec<AlertSummary>, StoreError> {
    store.alert_summary(since_ms).await
}

/// The period's policy changes and each guard's latest.
pub async fn history(store: &Store, since_ms: i64) -> Result<History, StoreError> {
    Ok(History {
        events: store.policy_events(since_ms, MAX_EVENTS).await?,
        latest: store.latest_policy_events().await?,
    })
}

fn usd(micros: i64) -> f64 {
    micros as f64 / 1e6
}

/// Spend per name of `by` since `since_ms`, from the ledger.
async fn per_name(
    store: &Store,
    by: GroupBy,
    since_ms: i64,
) -> Result<HashMap<String, i64>, StoreError> {
    Ok(store
        .spend_report(by, since_ms)
        .await?
        .into_iter()
        .filter_map(|r| Some((r.group?, r.cost_micros)))
        .collect())
}

/// Spend per budget window's current period and over the report, for one kind of scope.
struct Ledger {
    day: HashMap<String, i64>,
    month: HashMap<String, i64>,
    report: HashMap<String, i64>,
}

impl Ledger {
    async fn read(
        store: &Store,
        by: GroupBy,
        since_ms: i64,
        now_ms: i64,
    ) -> Result<Ledger, StoreError> {
        Ok(Ledger {
            day: per_name(store, by, BudgetWindow::Day.period(now_ms).start_ms).await?,
            month: per_name(store, by, BudgetWindow::Month.period(now_ms).start_ms).await?,
            report: per_name(store, by, since_ms).await?,
        })
    }

    fn of(&self, name: &str) -> [i64; 3] {
        let get = |m: &HashMap<String, i64>| m.get(name).copied().unwrap_or(0);
        [get(&self.day), get(&self.month), get(&self.report)]
    }
}

fn has_budget(p: &Policy) -> bool {
    p.budget_daily_usd.is_some() || p.budget_monthly_usd.is_some()
}

/// The budget lines of one scope: `spent` is (this day, this month, the report's days).
fn lines(scope: String, p: &Policy, spent: [i64; 3], now_ms: i64) -> Vec<BudgetLine> {
    let [day, month, report] = spent;
    [
        (BudgetWindow::Day, p.budget_daily_usd, day),
        (BudgetWindow::Month, p.budget_monthly_usd, month),
    ]
    .into_iter()
    .filter_map(|(w, limit, spent)| {
        let limit = limit?;
        let spent_usd = usd(spent);
        Some(BudgetLine {
            scope: scope.clone(),
            window: w.name(),
            period: w.period(now_ms).key,
            limit_usd: limit,
            spent_usd,
            share: if limit > 0.0 { spent_usd / limit } else { 1.0 },
            report_spend_usd: usd(report),
        })
    })
    .collect()
}

/// Spend against every configured budget — keys (their own or `per_key`), users (named or
/// `per_user`), teams, the gateway — and the period's top spenders.
pub async fn spend(
    config: &Config,
    store: &Store,
    since_ms: i64,
    now_ms: i64,
) -> Result<Spend, StoreError> {
    let l = &config.limits;
    let mut out: Vec<BudgetLine> = Vec::new();

    let keys = Ledger::read(store, GroupBy::Key, since_ms, now_ms).await?;
    for k in store.list_keys().await?.into_iter().filter(|k| !k.revoked) {
        let own: Policy = serde_json::from_value(k.limits.clone()).unwrap_or_default();
        let p = own.clone().or(&l.per_key);
        // A key on the `per_key` default is listed when it spent; one with its own budget always.
        if has_budget(&p) && (has_budget(&own) || keys.of(&k.id)[2] > 0) {
            out.extend(lines(format!("key {}", k.id), &p, keys.of(&k.id), now_ms));
        }
    }

    let users = Ledger::read(store, GroupBy::User, since_ms, now_ms).await?;
    let policy_of = |u: &str| l.users.get(u).cloned().unwrap_or_default().or(&l.per_user);
    let mut names: Vec<&String> = l.users.keys().collect();
    let mut spenders: Vec<&String> = users
        .report
        .keys()
        .filter(|u| !l.users.contains_key(*u))
        .collect();
    spenders.sort();
    names.extend(spenders);
    for u in names {
        let p = policy_of(u);
        if has_budget(&p) {
            out.extend(lines(format!("user {u}"), &p, users.of(u), now_ms));
        }
    }

    let teams = Ledger::read(store, GroupBy::Team, since_ms, now_ms).await?;
    for (t, p) in l.teams.iter().filter(|(_, p)| has_budget(p)) {
        out.extend(lines(format!("team {t}"), p, teams.of(t), now_ms));
    }

    if has_budget(&l.global) {
        let total = |from| store.spend_total(&SpendScope::Global, from);
        let spent = [
            total(BudgetWindow::Day.period(now_ms).start_ms).await?,
            total(BudgetWindow::Month.period(now_ms).start_ms).await?,
            total(since_ms).await?,
        ];
        out.extend(lines("gateway".into(), &l.global, spent, now_ms));
    }

    out.sort_by(|a, b| {
        b.share
            .total_cmp(&a.share)
            .then_with(|| a.scope.cmp(&b.scope))
    });
    let more_budgets = out.len().saturating_sub(MAX_BUDGET_LINES);
    out.truncate(MAX_BUDGET_LINES);

    let mut top = Vec::new();
    for (by, name) in [
        (GroupBy::Key, "key"),
        (GroupBy::User, "user"),
        (GroupBy::Team, "team"),
    ] {
        let rows = store.spend_report(by, since_ms).await?;
        top.extend(
            rows.into_iter()
                .filter(|r| r.cost_micros > 0)
                .filter_map(|r| {
                    Some(TopSpender {
                        by: name,
                        name: r.group?,
                        requests: r.requests,
                        spend_usd: usd(r.cost_micros),
                    })
                })
                .take(TOP_SPENDERS),
        );
    }
    Ok(Spend {
        budgets: out,
        more_budgets,
        top,
    })
}

/// How each guard's policy went over the period, for the checklist's "Limited release":
/// `moderation: enforced for 10 % of users (…) since …, enforced for 100 % since …`; and
/// whether any of it was a limited release (monitor, or a share).
pub fn timelines(h: &History) -> (Vec<String>, bool) {
    let mut order: Vec<&str> = Vec::new();
    for e in &h.events {
        if !order.contains(&e.guard.as_str()) {
            order.push(&e.guard);
        }
    }
    let mut staged = false;
    let lines = order
        .into_iter()
        .map(|g| {
            let steps: Vec<String> = h
                .events
                .iter()
                .filter(|e| e.guard == g)
                .map(|e| {
                    let to = GuardState::parse(&e.to);
                    staged |= to.is_some_and(|s| s.staged())
                        || GuardState::parse(&e.from).is_some_and(|s| s.staged());
                    format!(
                        "{} since {} ({})",
                        to.map_or(e.to.clone(), |s| s.describe()),
                        crate::auth::utc(e.time_ms),
                        e.how
                    )
                })
                .collect();
            format!("{g}: {}", steps.join(", "))
        })
        .collect();
    (lines, staged)
}
