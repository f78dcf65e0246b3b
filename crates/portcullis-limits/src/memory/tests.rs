//! The memory backend: the shared suites, and what only a hand-moved clock can show
//! (windows sliding, leases lapsing, idle scopes swept).

use super::*;
use crate::limiter::{Limit, Limits};
use crate::suite::{adm, admitted, refused};
use std::sync::atomic::{AtomicI64, Ordering};

/// A limiter whose clock the test moves.
fn manual() -> (MemoryLimiter, Arc<AtomicI64>) {
    let t = Arc::new(AtomicI64::new(1_800_000_000_000));
    let c = t.clone();
    (
        MemoryLimiter::with_clock(Arc::new(move || c.load(Ordering::SeqCst))),
        t,
    )
}

fn advance(t: &AtomicI64, ms: i64) {
    t.fetch_add(ms, Ordering::SeqCst);
}

fn tpm(n: u64) -> Limits {
    Limits {
        tpm: Some(n),
        ..Limits::default()
    }
}

crate::suite::backend_suite!(
    shared,
    async { (MemoryLimiter::default(), String::new()) },
    crate::suite::nothing
);

crate::budget_suite::budget_suite!(
    budgets,
    async {
        let clock = crate::budget_suite::ManualClock::new();
        let l: Arc<dyn Limiter> = Arc::new(
            MemoryLimiter::with_clock(clock.clock()).with_lease(crate::budget_suite::LEASE),
        );
        crate::budget_suite::Rig {
            a: l.clone(),
            b: l,
            clock,
            prefix: String::new(),
        }
    },
    crate::suite::nothing
);

#[tokio::test]
async fn the_window_slides_no_trailing_minute_exceeds_the_limit() {
    let (l, t) = manual();
    let a = adm(&[("k", tpm(1_000))], 400);
    // t=0: 400, t=20s: 400, t=40s: refused (800 + 400 > 1000).
    assert!(admitted(&l, &a).await.is_some());
    advance(&t, 20_000);
    assert!(admitted(&l, &a).await.is_some());
    advance(&t, 20_000);
    let f = refused(&l, &a).await;
    // The first 400 leave after 60–61 s: from t=40 s that is at most 21 s away.
    assert!(f.retry_after > Duration::from_secs(19) && f.retry_after <= Duration::from_secs(21));
    // Just before the first charge is a minute old: still refused.
    advance(&t, 19_900);
    refused(&l, &a).await;
    // Past a minute and a slice after the first charge: it has left the window.
    advance(&t, 1_200);
    assert!(admitted(&l, &a).await.is_some());
    // Now 800 in the trailing minute (t=20 s and t=61 s): 200 fit, 201 do not.
    assert!(
        admitted(&l, &adm(&[("k", tpm(1_000))], 200))
            .await
            .is_some()
    );
    refused(&l, &adm(&[("k", tpm(1_000))], 1)).await;
}

#[tokio::test]
async fn no_calendar_edge_doubles_the_limit() {
    // A fixed minute bucket would admit 10 at 00:59.9 and 10 more at 01:00.0.
    let (l, t) = manual();
    let rpm = Limits {
        rpm: Some(10),
        ..Limits::default()
    };
    let a = adm(&[("k", rpm)], 0);
    // Align just before a minute boundary.
    let now = t.load(Ordering::SeqCst);
    advance(&t, 60_000 - now.rem_euclid(60_000) - 100);
    for _ in 0..10 {
        assert!(admitted(&l, &a).await.is_some());
    }
    advance(&t, 200);
    refused(&l, &a).await;
    advance(&t, 30_000);
    refused(&l, &a).await;
    advance(&t, 31_000);
    assert!(admitted(&l, &a).await.is_some());
}

#[tokio::test]
async fn hour_and_day_windows_hold_longer_than_the_minute() {
    let (l, t) = manual();
    let lim = Limits {
        tpm: Some(1_000),
        tph: Some(1_500),
        tpd: Some(2_000),
        ..Limits::default()
    };
    let a = adm(&[("k", lim)], 1_000);
    assert!(admitted(&l, &a).await.is_some());
    advance(&t, 62_000);
    // The minute is free again but the hour is not.
    let f = refused(&l, &a).await;
    assert_eq!(f.limit, Limit::Tph);
    assert!(f.retry_after > Duration::from_secs(55 * 60));
    advance(&t, 3_600_000);
    assert!(admitted(&l, &a).await.is_some());
    advance(&t, 3_700_000);
    // Hour free, day holds 2,000.
    let f = refused(&l, &a).await;
    assert_eq!(f.limit, Limit::Tpd);
    // The token headers show the tightest window: the day, with nothing left.
    let tokens = f.headroom.tokens.unwrap();
    assert_eq!((tokens.limit, tokens.remaining), (2_000, 0));
    advance(&t, 86_400_000);
    assert!(admitted(&l, &a).await.is_some());
}

#[tokio::test]
async fn settling_after_the_window_moved_on_changes_nothing() {
    let (l, t) = manual();
    let a = adm(&[("k", tpm(1_000))], 1_000);
    let r = admitted(&l, &a).await.unwrap();
    advance(&t, 62_000);
    let r2 = admitted(&l, &a).await.unwrap();
    // r's slice has left the window: its settlement must not refund r2's usage.
    l.settle(&r, 0).await.unwrap();
    refused(&l, &adm(&[("k", tpm(1_000))], 1)).await;
    l.settle(&r2, 600).await.unwrap();
    assert!(
        admitted(&l, &adm(&[("k", tpm(1_000))], 400))
            .await
            .is_some()
    );
}

#[tokio::test]
async fn settling_above_the_reservation_charges_the_excess() {
    let (l, _t) = manual();
    let r = admitted(&l, &adm(&[("k", tpm(1_000))], 300)).await.unwrap();
    l.settle(&r, 900).await.unwrap();
    assert!(
        admitted(&l, &adm(&[("k", tpm(1_000))], 100))
            .await
            .is_some()
    );
    refused(&l, &adm(&[("k", tpm(1_000))], 1)).await;
}

#[tokio::test]
async fn a_leaked_parallel_slot_frees_itself_after_its_lease() {
    let (l, t) = manual();
    let l = l.with_lease(Duration::from_secs(30));
    let par = Limits {
        max_parallel: Some(1),
        ..Limits::default()
    };
    let a = adm(&[("k", par)], 0);
    let _leaked = admitted(&l, &a).await.unwrap();
    refused(&l, &a).await;
    advance(&t, 31_000);
    assert!(admitted(&l, &a).await.is_some());
}

#[tokio::test]
async fn idle_scopes_are_swept() {
    let (l, t) = manual();
    for i in 0..SWEEP_EVERY {
        let s = format!("u{i}");
        admitted(&l, &adm(&[(&s, tpm(10))], 1)).await.unwrap();
    }
    advance(&t, 120_000);
    for _ in 0..SWEEP_EVERY {
        admitted(&l, &adm(&[("same", tpm(u64::MAX))], 1))
            .await
            .unwrap();
    }
    assert!(l.state.lock().unwrap().windows.len() < 10);
}
