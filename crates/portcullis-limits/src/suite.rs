//! The behaviour every backend must share, written once and run against each
//! (`backend_suite!(name, make, finish)` expands to one test per case).

use crate::limiter::{Admission, Decision, Kind, Limit, Limiter, Limits, Refusal, Reservation};
use std::sync::Arc;
use std::time::Duration;

/// An admission of `tokens` charged to `(scope, limits)` pairs.
pub fn adm(scopes: &[(&str, Limits)], tokens: u64) -> Admission {
    Admission {
        scopes: scopes.iter().map(|(s, l)| (s.to_string(), *l)).collect(),
        tokens,
    }
}

/// The reservation if admitted.
pub async fn admitted(l: &dyn Limiter, a: &Admission) -> Option<Reservation> {
    match l.admit(a).await.unwrap() {
        Decision::Admitted(r, _) => Some(r),
        Decision::Refused(_) => None,
    }
}

/// The refusal, failing the test if admitted.
pub async fn refused(l: &dyn Limiter, a: &Admission) -> Refusal {
    match l.admit(a).await.unwrap() {
        Decision::Refused(f) => f,
        Decision::Admitted(..) => panic!("expected a refusal for {a:?}"),
    }
}

pub fn tpd(n: u64) -> Limits {
    Limits {
        tpd: Some(n),
        ..Limits::default()
    }
}

fn rpm(n: u64) -> Limits {
    Limits {
        rpm: Some(n),
        ..Limits::default()
    }
}

fn par(n: u64) -> Limits {
    Limits {
        max_parallel: Some(n),
        ..Limits::default()
    }
}

/// Exactly as many as fit are admitted; the next is refused with what the headers need.
pub async fn exact_capacity(l: &dyn Limiter, p: &str) {
    let s = format!("{p}key:a");
    let mut n = 0;
    for i in 0..10 {
        match l.admit(&adm(&[(&s, tpd(1_000))], 300)).await.unwrap() {
            Decision::Admitted(r, h) => {
                n += 1;
                assert!(!r.degraded);
                assert_eq!(r.tokens, 300);
                let t = h.tokens.unwrap();
                assert_eq!((t.limit, t.remaining), (1_000, 1_000 - 300 * (i + 1)));
                // Whole again once the newest charge leaves the day window.
                assert!(t.reset > Duration::from_secs(86_000));
                assert!(h.requests.is_none());
            }
            Decision::Refused(f) => {
                assert_eq!(f.kind, Kind::Tokens);
                assert_eq!(f.limit, Limit::Tpd);
                assert_eq!(f.scope, s);
                assert_eq!(f.bucket, format!("{s}:tpd"));
                assert_eq!((f.capacity, f.requested), (1_000, 300));
                assert!(!f.too_large);
                assert!(f.retry_after > Duration::from_secs(86_000));
                let t = f.headroom.tokens.unwrap();
                assert_eq!((t.limit, t.remaining), (1_000, 100));
                assert!(f.message().contains("tpd"), "{}", f.message());
            }
        }
    }
    assert_eq!(n, 3);
    // What still fits, fits exactly.
    assert!(admitted(l, &adm(&[(&s, tpd(1_000))], 100)).await.is_some());
    refused(l, &adm(&[(&s, tpd(1_000))], 1)).await;
}

/// Settling gives back the unused part; releasing refunds all; both only once.
pub async fn settle_and_release(l: &dyn Limiter, p: &str) {
    let s = format!("{p}key:s");
    let a = adm(&[(&s, tpd(1_000))], 500);
    let r1 = admitted(l, &a).await.unwrap();
    let r2 = admitted(l, &a).await.unwrap();
    refused(l, &adm(&[(&s, tpd(1_000))], 1)).await;
    l.settle(&r1, 200).await.unwrap();
    // Settling twice does not refund twice.
    l.settle(&r1, 200).await.unwrap();
    assert!(admitted(l, &adm(&[(&s, tpd(1_000))], 300)).await.is_some());
    refused(l, &adm(&[(&s, tpd(1_000))], 1)).await;
    l.release(&r2).await.unwrap();
    l.release(&r2).await.unwrap();
    assert!(admitted(l, &adm(&[(&s, tpd(1_000))], 500)).await.is_some());
    refused(l, &adm(&[(&s, tpd(1_000))], 1)).await;
}

/// A release refunds tokens but the request still counts toward `rpm`.
pub async fn release_keeps_the_request_counted(l: &dyn Limiter, p: &str) {
    let s = format!("{p}key:r");
    let lim = Limits {
        rpm: Some(2),
        tpd: Some(100),
        ..Limits::default()
    };
    for _ in 0..2 {
        let r = admitted(l, &adm(&[(&s, lim)], 100)).await.unwrap();
        l.release(&r).await.unwrap();
    }
    let f = refused(l, &adm(&[(&s, lim)], 100)).await;
    assert_eq!(f.limit, Limit::Rpm);
    // Tokens were refunded: the token window is whole.
    assert_eq!(f.headroom.tokens.unwrap().remaining, 100);
    assert_eq!(f.headroom.requests.unwrap().remaining, 0);
}

/// If one scope refuses, no scope is charged — whichever position it has.
pub async fn all_scopes_or_none(l: &dyn Limiter, p: &str) {
    let (k, u, t) = (
        format!("{p}key:b"),
        format!("{p}user:b"),
        format!("{p}team:b"),
    );
    let scopes = |a: u64, b: u64, c: u64| {
        [
            (k.as_str(), tpd(a)),
            (u.as_str(), tpd(b)),
            (t.as_str(), tpd(c)),
        ]
    };
    assert!(
        admitted(l, &adm(&scopes(1_000, 500, 1_000), 400))
            .await
            .is_some()
    );
    // The user (middle) refuses: neither key nor team is charged.
    let f = refused(l, &adm(&scopes(1_000, 500, 1_000), 400)).await;
    assert_eq!(f.scope, u);
    // The team (last) refuses under a tighter limit: key and user are not charged either.
    let f = refused(l, &adm(&scopes(1_000, 1_000, 400), 400)).await;
    assert_eq!(f.scope, t);
    // Each still holds exactly the first 400.
    for s in [&k, &u, &t] {
        assert!(admitted(l, &adm(&[(s, tpd(1_000))], 600)).await.is_some());
        refused(l, &adm(&[(s, tpd(1_000))], 1)).await;
    }
    // Refusal headers show the tightest windows of all the scopes, charged or not.
    let f = refused(
        l,
        &adm(
            &[(&format!("{p}key:fresh"), tpd(50)), (&k, tpd(1_000))],
            100,
        ),
    )
    .await;
    assert_eq!(f.scope, format!("{p}key:fresh"));
    assert!(f.too_large);
    assert_eq!(f.headroom.tokens.unwrap().remaining, 0);
}

/// Parallel slots are held until settled or released, once each.
pub async fn parallel_slots(l: &dyn Limiter, p: &str) {
    let c = format!("{p}key:c");
    let a = adm(&[(&c, par(2))], 1);
    let a1 = admitted(l, &a).await.unwrap();
    let a2 = admitted(l, &a).await.unwrap();
    let f = refused(l, &a).await;
    assert_eq!((f.kind, f.limit), (Kind::Parallel, Limit::MaxParallel));
    assert!(f.retry_after > Duration::ZERO);
    l.settle(&a1, 1).await.unwrap();
    let a3 = admitted(l, &a).await.unwrap();
    refused(l, &a).await;
    // Releasing a1 again must not free a slot that a2 or a3 holds.
    l.release(&a1).await.unwrap();
    refused(l, &a).await;
    l.release(&a2).await.unwrap();
    l.settle(&a3, 1).await.unwrap();
    assert!(admitted(l, &a).await.is_some());
    assert!(admitted(l, &a).await.is_some());
}

/// Requests per minute with OpenAI headers.
pub async fn requests_per_minute(l: &dyn Limiter, p: &str) {
    let d = format!("{p}key:d");
    let Decision::Admitted(_, h) = l.admit(&adm(&[(&d, rpm(2))], 0)).await.unwrap() else {
        panic!("first request refused")
    };
    let r = h.requests.unwrap();
    assert_eq!((r.limit, r.remaining), (2, 1));
    assert!(r.reset > Duration::from_secs(59) && r.reset <= Duration::from_secs(61));
    let headers = h.headers();
    for (name, value) in [
        ("x-ratelimit-limit-requests", "2"),
        ("x-ratelimit-remaining-requests", "1"),
    ] {
        assert!(
            headers.iter().any(|(k, v)| *k == name && v == value),
            "{headers:?}"
        );
    }
    assert!(admitted(l, &adm(&[(&d, rpm(2))], 0)).await.is_some());
    let f = refused(l, &adm(&[(&d, rpm(2))], 0)).await;
    // The first request leaves the window 60–61 s after it came.
    assert!(f.retry_after > Duration::from_secs(58) && f.retry_after <= Duration::from_secs(61));
    // Retry-After is rounded up: waiting exactly that long is enough.
    let secs = f.retry_after_secs();
    assert!(Duration::from_secs(secs) >= f.retry_after && secs >= 1);
    let headers = f.headers();
    let get = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(get("retry-after"), Some(secs.to_string()));
    let ms: u128 = get("retry-after-ms").unwrap().parse().unwrap();
    assert!(Duration::from_millis(ms as u64) >= f.retry_after);
    assert_eq!(get("x-ratelimit-remaining-requests").as_deref(), Some("0"));
}

/// Client-chosen numbers as large as `u64::MAX` neither wrap nor break the backend (a Redis
/// script error would be read as "backend down" and, under fail-open, admit unchecked).
pub async fn huge_numbers(l: &dyn Limiter, p: &str) {
    let s = format!("{p}key:h");
    let f = refused(l, &adm(&[(&s, tpd(1_000))], u64::MAX)).await;
    assert!(f.too_large);
    assert_eq!(f.headroom.tokens.unwrap().remaining, 1_000);
    // A limit meant as unlimited admits the largest request, and settles at any figure.
    let big = Limits {
        rpm: Some(u64::MAX),
        tpm: Some(u64::MAX),
        tpd: Some(u64::MAX),
        max_parallel: Some(u64::MAX),
        ..Limits::default()
    };
    let u = format!("{p}user:h");
    let r = admitted(l, &adm(&[(&u, big)], u64::MAX)).await.unwrap();
    assert!(!r.degraded);
    l.settle(&r, u64::MAX).await.unwrap();
    // Counted as MAX_COUNT: nothing more fits, and the counters did not wrap to "empty".
    let f = refused(l, &adm(&[(&u, big)], 1)).await;
    assert_eq!(f.headroom.tokens.unwrap().remaining, 0);
    assert_eq!(f.capacity, crate::limiter::MAX_COUNT);
    let r = admitted(l, &adm(&[(&u, big)], 0)).await.unwrap();
    l.settle(&r, 0).await.unwrap();
}

/// A request bigger than a whole limit is refused as too large, with a message that says so.
pub async fn too_large(l: &dyn Limiter, p: &str) {
    let e = format!("{p}key:e");
    let f = refused(l, &adm(&[(&e, tpd(1_000))], 1_001)).await;
    assert!(f.too_large);
    assert!(f.message().contains("max_tokens"), "{}", f.message());
    assert!(
        admitted(l, &adm(&[(&e, tpd(1_000))], 1_000))
            .await
            .is_some()
    );
}

/// No scopes, or scopes without limits: admitted, and settling is harmless.
pub async fn unlimited(l: &dyn Limiter, p: &str) {
    let r = admitted(l, &adm(&[], 5)).await.unwrap();
    l.settle(&r, 9).await.unwrap();
    let f = format!("{p}key:f");
    let r = admitted(l, &adm(&[(&f, Limits::default())], 5))
        .await
        .unwrap();
    l.release(&r).await.unwrap();
    l.ping().await.unwrap();
    assert!(l.health().reachable);
}

/// Many concurrent callers on one limiter: exactly what fits.
pub async fn concurrent_exact(l: Arc<dyn Limiter>, p: &str) {
    let g = format!("{p}key:g");
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let (l, g) = (l.clone(), g.clone());
            tokio::spawn(async move {
                admitted(&*l, &adm(&[(&g, tpd(2_500))], 100))
                    .await
                    .is_some()
            })
        })
        .collect();
    let mut n = 0;
    for t in tasks {
        n += usize::from(t.await.unwrap());
    }
    assert_eq!(n, 25);
}

/// Nothing to clean up.
pub async fn nothing(_: String) {}

/// One test per shared case for a backend: `make` is an async expression giving
/// `(limiter, scope prefix)`; `finish(prefix)` cleans up after each.
macro_rules! backend_suite {
    ($name:ident, $make:expr, $finish:path) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            use crate::suite;

            macro_rules! case {
                ($case:ident) => {
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $case() {
                        let (l, p) = $make.await;
                        suite::$case(&l, &p).await;
                        $finish(p).await;
                    }
                };
            }
            case!(exact_capacity);
            case!(settle_and_release);
            case!(release_keeps_the_request_counted);
            case!(all_scopes_or_none);
            case!(parallel_slots);
            case!(requests_per_minute);
            case!(too_large);
            case!(unlimited);
            case!(huge_numbers);

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn concurrent_exact() {
                let (l, p) = $make.await;
                suite::concurrent_exact(std::sync::Arc::new(l), &p).await;
                $finish(p).await;
            }
        }
    };
}

pub(crate) use backend_suite;
