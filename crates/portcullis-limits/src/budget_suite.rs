//! The budget behaviour every backend must share, written once and run against each
//! (`budget_suite!(name, make, finish)` expands to one test per case). A [`Rig`] has two
//! limiters: on Redis two instances on one prefix (two replicas), in memory one instance twice.

use crate::budget::{Budget, BudgetStatus, BudgetWindow};
use crate::budget_hold::{BudgetAdmission, BudgetDecision, BudgetHold, BudgetRefusal};
use crate::limiter::{Limiter, Scope};
use crate::memory::Clock;
use crate::pricing::Money;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::time::Duration;

/// 2026-11-24T15:00:00Z: nine hours before the end of the day.
pub const NOW: i64 = 1_795_532_400_000;

/// The lease every rig's limiters use.
pub const LEASE: Duration = Duration::from_secs(60);

/// A clock the test moves by hand.
#[derive(Clone)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    pub fn new() -> ManualClock {
        ManualClock(Arc::new(AtomicI64::new(NOW)))
    }
    pub fn clock(&self) -> Clock {
        let t = self.0.clone();
        Arc::new(move || t.load(Ordering::SeqCst))
    }
    pub fn advance(&self, d: Duration) {
        self.0.fetch_add(d.as_millis() as i64, Ordering::SeqCst);
    }
    pub fn set(&self, ms: i64) {
        self.0.store(ms, Ordering::SeqCst);
    }
}

/// Two replicas on one shared state, the clock they read, and the run's prefix.
pub struct Rig {
    pub a: Arc<dyn Limiter>,
    pub b: Arc<dyn Limiter>,
    pub clock: ManualClock,
    pub prefix: String,
}

/// A stand-in for the store's ledger: totals per scope, and how often it was read.
#[derive(Default)]
pub struct Ledger {
    pub spent: HashMap<String, Money>,
    pub reads: AtomicUsize,
}

impl Ledger {
    fn with(spent: &[(&str, Money)]) -> Ledger {
        Ledger {
            spent: spent.iter().map(|(s, m)| (s.to_string(), *m)).collect(),
            reads: AtomicUsize::new(0),
        }
    }
}

/// Holds `a` as the gateway would: seeding from `ledger` when asked (at most twice).
pub async fn hold(l: &dyn Limiter, a: &BudgetAdmission, ledger: &Ledger) -> BudgetDecision {
    let mut a = a.clone();
    for _ in 0..3 {
        match l.hold_budgets(&a).await.unwrap() {
            BudgetDecision::NeedSeed(need) => {
                assert!(!need.is_empty());
                ledger.reads.fetch_add(need.len(), Ordering::SeqCst);
                let seeds = need
                    .iter()
                    .map(|n| n.answer(ledger.spent.get(&n.scope).copied().unwrap_or(0)));
                a = a.seeded(seeds.collect::<Vec<_>>());
            }
            d => return d,
        }
    }
    panic!("still asking for seeds after two rounds")
}

/// The hold, failing the test on a refusal.
pub async fn held(l: &dyn Limiter, a: &BudgetAdmission) -> BudgetHold {
    match hold(l, a, &Ledger::default()).await {
        BudgetDecision::Held(h, _) => h,
        other => panic!("expected a hold for {a:?}, got {other:?}"),
    }
}

/// The refusal, failing the test on a hold.
pub async fn over(l: &dyn Limiter, a: &BudgetAdmission) -> BudgetRefusal {
    match hold(l, a, &Ledger::default()).await {
        BudgetDecision::Refused(f) => f,
        other => panic!("expected a refusal for {a:?}, got {other:?}"),
    }
}

fn user(u: &str) -> Scope {
    Scope::User(u.into())
}

/// N concurrent holds on two replicas against a budget that fits exactly K: K are held.
pub async fn concurrent_holds_never_exceed_the_budget(r: &Rig) {
    const WORST: Money = 1_000;
    let ledger = Arc::new(Ledger::with(&[("team:x", 3_000)]));
    let tasks: Vec<_> = (0..120)
        .map(|i| {
            let l = if i % 2 == 0 { r.a.clone() } else { r.b.clone() };
            let ledger = ledger.clone();
            tokio::spawn(async move {
                // Every request names four scopes; the team's day fits 23 more after 3,000 spent.
                let a = BudgetAdmission::new(WORST)
                    .budget(&Scope::Key("k".into()), Budget::daily(1_000_000_000))
                    .budget(
                        &user(&format!("u{}", i % 7)),
                        Budget::monthly(1_000_000_000),
                    )
                    .budget(&Scope::Team("x".into()), Budget::daily(26_000))
                    .budget(&Scope::Global, Budget::monthly(1_000_000_000));
                hold(&*l, &a, &ledger).await
            })
        })
        .collect();
    let (mut n, mut refusals) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            BudgetDecision::Held(h, s) => {
                n += 1;
                assert!(!h.degraded && h.worst == WORST);
                assert_eq!(s.len(), 4);
            }
            BudgetDecision::Refused(f) => {
                refusals += 1;
                assert_eq!(f.standing.scope, "team:x");
                assert!(!f.too_large);
            }
            BudgetDecision::NeedSeed(n) => panic!("{n:?}"),
        }
    }
    assert_eq!((n, refusals), (23, 97));
    // Both replicas see the same counter: not a micro-dollar more fits.
    let team = BudgetAdmission::new(1).budget(&Scope::Team("x".into()), Budget::daily(26_000));
    for l in [&r.a, &r.b] {
        let f = over(&**l, &team).await;
        assert_eq!(f.standing.check.remaining, 0);
    }
}

/// Settlement replaces the hold by the actual cost; release by zero; both only once.
pub async fn settlement_frees_the_difference(r: &Rig) {
    let l = &*r.a;
    let a = |worst| BudgetAdmission::new(worst).budget(&user("s"), Budget::daily(1_000));
    let h1 = held(l, &a(400)).await;
    let h2 = held(l, &a(400)).await;
    over(l, &a(201)).await;
    r.a.settle_budgets(&h1, 100).await.unwrap();
    // Settling twice (on either replica) does not refund twice.
    r.a.settle_budgets(&h1, 100).await.unwrap();
    r.b.settle_budgets(&h1, 0).await.unwrap();
    let h3 = held(l, &a(500)).await;
    over(l, &a(1)).await;
    r.b.release_budgets(&h2).await.unwrap();
    r.b.release_budgets(&h2).await.unwrap();
    let BudgetDecision::Held(h4, s) = hold(l, &a(400), &Ledger::default()).await else {
        panic!()
    };
    assert_eq!(s[0].check.committed, 1_000);
    over(l, &a(1)).await;
    // An actual cost above the hold counts in full.
    r.a.settle_budgets(&h3, 550).await.unwrap();
    r.a.settle_budgets(&h4, 0).await.unwrap();
    // 100 (h1) + 550 (h3) + 0 (h4): 350 left.
    let f = over(l, &a(351)).await;
    assert_eq!(f.standing.check.remaining, 350);
    held(l, &a(350)).await;
}

/// A new UTC day (or month) is a new counter, seeded from the ledger; refusals say when.
pub async fn periods_roll_over(r: &Rig) {
    let l = &*r.a;
    let day = |w| BudgetAdmission::new(w).budget(&user("p"), Budget::daily(1_000));
    let h = held(l, &day(1_000)).await;
    l.settle_budgets(&h, 1_000).await.unwrap();
    let f = over(l, &day(1)).await;
    // 15:00 → midnight UTC: nine hours, to the second.
    assert_eq!(f.retry_after(), Duration::from_secs(9 * 3_600));
    assert_eq!(f.retry_after_secs(), 9 * 3_600);
    assert_eq!(f.standing.check.period.key, "2026-11-24");
    // Half a second later, Retry-After rounds up, never down.
    r.clock.advance(Duration::from_millis(500));
    assert_eq!(over(l, &day(1)).await.retry_after_secs(), 9 * 3_600);
    // The last millisecond of the day is still the day.
    r.clock.set(BudgetWindow::Day.period(NOW).end_ms - 1);
    over(l, &day(1)).await;
    r.clock.advance(Duration::from_millis(1));
    let ledger = Ledger::with(&[("user:p", 300)]);
    let BudgetDecision::Held(_, s) = hold(l, &day(700), &ledger).await else {
        panic!()
    };
    assert_eq!(s[0].check.period.key, "2026-11-25");
    assert_eq!(ledger.reads.load(Ordering::SeqCst), 1);
    over(l, &day(1)).await;
    // Months: November's budget is full until December.
    let month = |w| BudgetAdmission::new(w).budget(&user("m"), Budget::monthly(5_000));
    let h = held(l, &month(5_000)).await;
    l.settle_budgets(&h, 5_000).await.unwrap();
    let f = over(l, &month(1)).await;
    assert_eq!(f.standing.check.period.key, "2026-11");
    r.clock.set(BudgetWindow::Month.period(NOW).end_ms);
    assert_eq!(
        over(l, &month(5_001)).await.standing.check.period.key,
        "2026-12"
    );
    held(l, &month(5_000)).await;
}

/// Counters start from the ledger's total, once per period; seeds never reset a counter.
pub async fn seeding(r: &Rig) {
    let (l, b) = (&*r.a, &*r.b);
    let a = |w| {
        BudgetAdmission::new(w)
            .budget(&user("q"), Budget::daily(1_000))
            .budget(&user("q"), Budget::monthly(10_000))
            .budget(&Scope::Team("t".into()), Budget::daily(100_000))
    };
    // The first hold asks for every counter, with its period; nothing is held.
    let BudgetDecision::NeedSeed(need) = l.hold_budgets(&a(100)).await.unwrap() else {
        panic!("a fresh limiter must ask for seeds")
    };
    let asked: Vec<_> = need
        .iter()
        .map(|n| (n.scope.as_str(), n.period.key.as_str(), n.window))
        .collect();
    assert_eq!(
        asked,
        [
            ("user:q", "2026-11-24", BudgetWindow::Day),
            ("user:q", "2026-11", BudgetWindow::Month),
            ("team:t", "2026-11-24", BudgetWindow::Day),
        ]
    );
    assert_eq!(
        need[1].period.start_ms,
        BudgetWindow::Month.period(NOW).start_ms
    );
    // Seeded: the day's counter starts at 900 of 1,000.
    let seeds: Vec<_> = need
        .iter()
        .map(|n| {
            n.answer(if n.window == BudgetWindow::Day {
                900
            } else {
                4_000
            })
        })
        .collect();
    let f = match l.hold_budgets(&a(101).seeded(seeds.clone())).await.unwrap() {
        BudgetDecision::Refused(f) => f,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        (f.standing.scope.as_str(), f.standing.check.remaining),
        ("user:q", 100)
    );
    // Seeded now: no more questions, on either replica; a stale seed does not reset anything.
    let stale: Vec<_> = need.iter().map(|n| n.answer(0)).collect();
    let BudgetDecision::Held(h, s) = b.hold_budgets(&a(100).seeded(stale)).await.unwrap() else {
        panic!()
    };
    assert_eq!(s[0].check.committed, 1_000);
    assert_eq!(s[1].check.committed, 4_100);
    over(l, &a(1)).await;
    l.release_budgets(&h).await.unwrap();
    // A budget that already refuses does so before any seed is asked for.
    let more = BudgetAdmission::new(101)
        .budget(&user("fresh"), Budget::daily(1_000))
        .budget(&user("q"), Budget::daily(1_000));
    let f = match l.hold_budgets(&more).await.unwrap() {
        BudgetDecision::Refused(f) => f,
        other => panic!("{other:?}"),
    };
    assert_eq!(f.standing.scope, "user:q");
    // A seed for another period is no answer.
    let wrong = crate::budget_hold::Seed {
        scope: "user:fresh".into(),
        period_key: "2026-11-23".into(),
        spent: 0,
    };
    let fresh = BudgetAdmission::new(1).budget(&user("fresh"), Budget::daily(1_000));
    assert!(matches!(
        l.hold_budgets(&fresh.clone().seeded([wrong]))
            .await
            .unwrap(),
        BudgetDecision::NeedSeed(_)
    ));
}

/// The first hold of a period that reaches the soft threshold says so; later ones do not.
pub async fn soft_alert_once_per_period(r: &Rig) {
    let a = |w| BudgetAdmission::new(w).budget(&user("s"), Budget::daily(1_000));
    let standing = |d: BudgetDecision| match d {
        BudgetDecision::Held(_, s) => s.into_iter().next().unwrap(),
        other => panic!("{other:?}"),
    };
    let none = Ledger::default();
    let s = standing(hold(&*r.a, &a(500), &none).await);
    assert_eq!((s.check.status, s.alert), (BudgetStatus::Within, false));
    let s = standing(hold(&*r.b, &a(299), &none).await);
    assert_eq!((s.check.status, s.alert), (BudgetStatus::Within, false));
    // 500 + 299 + 1 = 800 = 80 %: this one alerts, on whichever replica.
    let s = standing(hold(&*r.a, &a(1), &none).await);
    assert_eq!((s.check.status, s.alert), (BudgetStatus::Soft, true));
    assert_eq!(s.alert_key(), "user:s:2026-11-24");
    assert!(s.alert_message().contains("80 %"), "{}", s.alert_message());
    let s = standing(hold(&*r.b, &a(100), &none).await);
    assert_eq!((s.check.status, s.alert), (BudgetStatus::Soft, false));
    // The next day alerts again.
    r.clock.advance(Duration::from_secs(9 * 3_600));
    let s = standing(hold(&*r.a, &a(900), &none).await);
    assert_eq!((s.check.period.key.as_str(), s.alert), ("2026-11-25", true));
}

/// A hold never settled (its replica died) leaves the counter after its lease; settling it
/// late still counts its cost.
pub async fn leases_free_a_dead_holders_budget(r: &Rig) {
    let a = |w| BudgetAdmission::new(w).budget(&user("d"), Budget::daily(1_000));
    let orphan = held(&*r.a, &a(800)).await;
    over(&*r.b, &a(201)).await;
    r.clock.advance(LEASE + Duration::from_secs(1));
    let h = held(&*r.b, &a(1_000)).await;
    r.b.release_budgets(&h).await.unwrap();
    // The orphan's call did finish, late: its cost is real.
    r.a.settle_budgets(&orphan, 300).await.unwrap();
    let f = over(&*r.a, &a(701)).await;
    assert_eq!(f.standing.check.remaining, 700);
    r.a.settle_budgets(&orphan, 300).await.unwrap();
    held(&*r.a, &a(700)).await;
}

/// No budgets, zero costs, too-large requests and absurd amounts behave.
pub async fn edges(r: &Rig) {
    let l = &*r.a;
    let BudgetDecision::Held(h, s) = l.hold_budgets(&BudgetAdmission::new(5)).await.unwrap() else {
        panic!()
    };
    assert!(s.is_empty() && !h.degraded);
    l.settle_budgets(&h, 9).await.unwrap();
    let a = |w| BudgetAdmission::new(w).budget(&user("e"), Budget::daily(1_000));
    let f = over(l, &a(1_001)).await;
    assert!(
        f.too_large && f.message().contains("max_tokens"),
        "{}",
        f.message()
    );
    let f = over(l, &a(Money::MAX)).await;
    assert!(f.too_large);
    let h = held(l, &a(0)).await;
    l.settle_budgets(&h, Money::MAX).await.unwrap();
    // Counted as MAX_MONEY, never wrapped to "nothing spent".
    let f = over(l, &a(0)).await;
    assert_eq!((f.standing.check.remaining, f.too_large), (0, false));
    let unlimited =
        BudgetAdmission::new(Money::MAX).budget(&user("big"), Budget::monthly(Money::MAX));
    let h = held(l, &unlimited).await;
    l.settle_budgets(&h, -5).await.unwrap();
    held(l, &unlimited).await;
}

/// One test per shared case for a backend: `make` is an async expression giving a [`Rig`];
/// `finish(prefix)` cleans up after each.
macro_rules! budget_suite {
    ($name:ident, $make:expr, $finish:path) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            use crate::budget_suite;

            macro_rules! case {
                ($case:ident) => {
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $case() {
                        let rig: budget_suite::Rig = $make.await;
                        let prefix = rig.prefix.clone();
                        // Run the case as a task so that cleanup happens even if it fails.
                        let run = tokio::spawn(async move { budget_suite::$case(&rig).await });
                        let outcome = run.await;
                        $finish(prefix).await;
                        if let Err(e) = outcome {
                            std::panic::resume_unwind(e.into_panic());
                        }
                    }
                };
            }
            case!(concurrent_holds_never_exceed_the_budget);
            case!(settlement_frees_the_difference);
            case!(periods_roll_over);
            case!(seeding);
            case!(soft_alert_once_per_period);
            case!(leases_free_a_dead_holders_budget);
            case!(edges);
        }
    };
}

pub(crate) use budget_suite;
