//! The Redis backend against the real Redis on 127.0.0.1:6379 (keys under a per-run prefix,
//! deleted afterwards; never flushed) and against private, throwaway servers it stops.

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

/// Two replicas on one fresh prefix, reading one clock the test moves.
async fn rig() -> crate::budget_suite::Rig {
    let p = prefix();
    let clock = crate::budget_suite::ManualClock::new();
    let options = RedisOptions {
        lease: crate::budget_suite::LEASE,
        ..RedisOptions::default()
    };
    let replica = || -> Arc<dyn Limiter> {
        Arc::new(
            RedisLimiter::with_options(SHARED, &p, FailMode::FailClosed, options)
                .unwrap()
                .with_clock(clock.clock()),
        )
    };
    let (a, b) = (replica(), replica());
    a.ping()
        .await
        .expect("Redis on 127.0.0.1:6379 must be reachable");
    crate::budget_suite::Rig {
        a,
        b,
        clock,
        prefix: p,
    }
}

crate::budget_suite::budget_suite!(budgets, rig(), cleanup);

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
        let dying = RedisLimiter::with_options(SHARED, &p, FailMode::FailClosed, options).unwrap();
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budget_keys_expire_with_their_period_and_a_lost_counter_is_seeded_again() {
    use crate::budget::Budget;
    use crate::budget_hold::{BudgetAdmission, BudgetDecision, PERIOD_MARGIN};
    use crate::budget_suite::{Ledger, hold};
    let r = rig().await;
    let a = BudgetAdmission::new(100).budget(&crate::Scope::Team("k".into()), Budget::daily(1_000));
    let ledger = Ledger::default();
    let BudgetDecision::Held(h, _) = hold(&*r.a, &a, &ledger).await else {
        panic!()
    };
    let client = redis::Client::open(SHARED).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}:m*", r.prefix))
        .query_async(&mut con)
        .await
        .unwrap();
    // Counter, lease set, settlement marker.
    assert_eq!(keys.len(), 3, "{keys:?}");
    // The day ends in 9 h (test clock); every key lives that long plus the margin, no longer.
    let most = 9 * 3_600_000 + PERIOD_MARGIN.as_millis() as i64;
    for k in &keys {
        let ttl: i64 = redis::cmd("PTTL")
            .arg(k)
            .query_async(&mut con)
            .await
            .unwrap();
        assert!(ttl > most - 60_000 && ttl <= most, "{k}: {ttl}");
    }
    r.a.settle_budgets(&h, 40).await.unwrap();
    let marker: i64 = redis::cmd("EXISTS")
        .arg(format!("{}:mr:{}", r.prefix, h.id()))
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(marker, 0);
    // Redis loses the counter (eviction, restart): the next hold asks for the ledger again.
    let _: i64 = redis::cmd("DEL")
        .arg(format!("{}:m:team:k:2026-11-24", r.prefix))
        .query_async(&mut con)
        .await
        .unwrap();
    let reads = ledger.reads.load(std::sync::atomic::Ordering::SeqCst);
    assert!(matches!(
        r.b.hold_budgets(&a).await.unwrap(),
        BudgetDecision::NeedSeed(n) if n.len() == 1
    ));
    let ledger = Ledger {
        spent: [("team:k".to_owned(), 40)].into(),
        ..Ledger::default()
    };
    let BudgetDecision::Held(_, s) = hold(&*r.b, &a, &ledger).await else {
        panic!()
    };
    assert_eq!((reads, s[0].check.committed), (1, 140));
    cleanup(r.prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budgets_follow_the_fail_mode_when_redis_is_unreachable() {
    use crate::budget::Budget;
    use crate::budget_hold::{BudgetAdmission, BudgetDecision};
    let url = format!("redis://127.0.0.1:{}/0", free_port());
    let a = BudgetAdmission::new(100).budget(&crate::Scope::Global, Budget::daily(1_000));
    let open = RedisLimiter::new(&url, "t", FailMode::FailOpen).unwrap();
    for _ in 0..3 {
        match open.hold_budgets(&a).await {
            Ok(BudgetDecision::Held(h, s)) => {
                assert!(h.degraded && s.is_empty());
                // Nothing was held, so there is nothing to settle: no error, no Redis call.
                open.settle_budgets(&h, 100).await.unwrap();
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(open.health().degraded_admissions >= 3);
    let closed = RedisLimiter::new(&url, "t", FailMode::FailClosed).unwrap();
    assert!(matches!(
        closed.hold_budgets(&a).await,
        Err(LimitError::Unavailable(_))
    ));
    assert!(closed.health().unavailable_refusals >= 1);
}
