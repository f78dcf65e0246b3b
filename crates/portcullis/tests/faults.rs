//! The shared stores failing under a running gateway (issue 20): a TCP proxy
//! ([`common::fault_proxy`]) sits between the gateway and the shared Redis or PostgreSQL and
//! is cut mid-run, then restored. The stores themselves are never touched: each test has its
//! own Redis key prefix or PostgreSQL schema, removed after.
//!
//! - Redis (rate limits) cut: `fail_open` keeps answering and counts an alert per unchecked
//!   admission; `fail_closed` refuses with 503 `limits_unavailable`; both check limits from
//!   Redis again once it is back.
//! - PostgreSQL (keys, audit log) cut: requests with a cached key keep being answered, their
//!   audit records wait in the journal on disk, and once the database is back every request
//!   sent has exactly one record and `audit verify` proves the chain; the same after a
//!   `kill -9` of the gateway with records in the journal; and while records pile up in the
//!   journal, the backlog gauges say so and one `audit_spool_growing` alert reaches a webhook.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::Gateway;
use common::fault_proxy::FaultProxy;
use common::pg::{PgGateway, audit_counts, chat, create_key, journaled, unique};
use common::webhook::Receiver;
use serde_json::Value;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Deletes the Redis keys under a prefix when dropped (only those: Redis is shared).
struct RedisPrefix(String);

impl Drop for RedisPrefix {
    fn drop(&mut self) {
        let Ok(out) = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", "6379", "--scan", "--pattern"])
            .arg(format!("{}:*", self.0))
            .output()
        else {
            return;
        };
        let keys: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect();
        if !keys.is_empty() {
            let _ = Command::new("redis-cli")
                .args(["-h", "127.0.0.1", "-p", "6379", "DEL"])
                .args(&keys)
                .stdout(Stdio::null())
                .status();
        }
    }
}

/// The value of `portcullis_alerts_total{kind="<kind>"}` in a metrics page (0 when absent).
fn alerts(metrics: &str, kind: &str) -> u64 {
    let head = format!("portcullis_alerts_total{{kind=\"{kind}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&head))
        .map_or(0, |v| v.trim().parse::<f64>().unwrap() as u64)
}

/// A gateway whose rate limits live in the shared Redis, through a proxy.
fn redis_gateway(on_error: &str) -> (Gateway, FaultProxy, RedisPrefix) {
    let proxy = FaultProxy::start(6379);
    let prefix = RedisPrefix(unique(on_error));
    let config = format!(
        "[limits]\nurl = \"redis://127.0.0.1:{}/0\"\nprefix = \"{}\"\non_error = \"{on_error}\"\n\
         [limits.per_key]\nrpm = 100000\n",
        proxy.port, prefix.0
    );
    let gw = Gateway::start(None, Some(&config));
    (gw, proxy, prefix)
}

/// After a restore: requests are checked against Redis again. The connection manager
/// reconnects on its own; on a loaded machine one call may still miss its timeout, so this
/// asks for three checked answers in a row within a bounded number of tries.
fn assert_checked_again(gw: &Gateway, client: &reqwest::blocking::Client) {
    let mut in_a_row = 0;
    for _ in 0..150 {
        let a = chat(client, &gw.base, &gw.key, "after");
        if a.status == 200 && a.checked {
            in_a_row += 1;
            if in_a_row == 3 {
                return;
            }
        } else {
            in_a_row = 0;
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    panic!("rate limits were not checked against Redis again after it came back");
}

#[test]
fn redis_cut_fail_open_keeps_answering_counts_alerts_and_recovers() {
    let (gw, proxy, _prefix) = redis_gateway("fail_open");
    let client = gw.client();
    let before = chat(&client, &gw.base, &gw.key, "before");
    assert_eq!(before.status, 200, "{}", before.body);
    assert!(before.checked, "limits are checked while Redis is up");
    let alerts_before = alerts(&gw.metrics(), "limits_backend_down");

    proxy.cut();
    let during = 5;
    for i in 0..during {
        let a = chat(&client, &gw.base, &gw.key, &format!("during {i}"));
        assert_eq!(
            a.status, 200,
            "fail_open answers while Redis is cut: {}",
            a.body
        );
        assert!(!a.checked, "no limit headers without a limits backend");
    }
    let raised = alerts(&gw.metrics(), "limits_backend_down") - alerts_before;
    assert!(
        raised >= during,
        "every unchecked admission counts an alert ({raised} for {during} requests)"
    );

    proxy.restore();
    assert_checked_again(&gw, &client);
}

#[test]
fn redis_cut_fail_closed_refuses_with_503_and_recovers() {
    let (gw, proxy, _prefix) = redis_gateway("fail_closed");
    let client = gw.client();
    assert_eq!(chat(&client, &gw.base, &gw.key, "before").status, 200);

    proxy.cut();
    for i in 0..5 {
        let a = chat(&client, &gw.base, &gw.key, &format!("during {i}"));
        assert_eq!(a.status, 503, "fail_closed refuses while Redis is cut");
        assert_eq!(a.body["error"]["code"], "limits_unavailable", "{}", a.body);
        let message = a.body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("rate limits") && message.contains("fail_closed"),
            "the refusal says why: {message}"
        );
    }
    assert!(alerts(&gw.metrics(), "limits_backend_down") >= 5);

    proxy.restore();
    assert_checked_again(&gw, &client);
}

#[test]
fn postgres_cut_keeps_answering_spools_the_audit_and_books_each_request_once() {
    let mut gw = PgGateway::new("pg");
    let warm_key = create_key(&gw.direct, "warm");
    let key = create_key(&gw.direct, "during");
    gw.launch();

    let mut sent = Vec::new();
    for i in 0..5 {
        let a = gw.chat(&warm_key, &format!("warm {i}"));
        assert_eq!(a.status, 200, "{}", a.body);
        sent.push(a.request_id);
    }
    // The key used during the outage is looked up now, so the cut finds it cached.
    let a = gw.chat(&key, "looked up");
    assert_eq!(a.status, 200, "{}", a.body);
    sent.push(a.request_id);

    gw.proxy.cut();
    let during = 8;
    for i in 0..during {
        let a = gw.chat(&key, &format!("during the outage {i}"));
        assert_eq!(
            a.status, 200,
            "a cached key is served while the store is cut: {}",
            a.body
        );
        sent.push(a.request_id);
    }
    // The records of those requests cannot reach the database: they wait on disk.
    gw.wait_journaled(during);
    let deadline = Instant::now() + Duration::from_secs(60);
    while gw.proxy.refused() == 0 {
        assert!(
            Instant::now() < deadline,
            "the gateway never tried the store during the cut"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    gw.proxy.restore();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let total: usize = audit_counts(&gw.direct).values().sum();
        if total >= sent.len() && journaled(&gw.spool) == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the journal was not replayed: {total} of {} records in the store",
            sent.len()
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // Stop the gateway (SIGTERM: its audit writer drains), then count once more.
    if let Some(p) = gw.proc.take() {
        let _ = Command::new("kill")
            .args(["-TERM", &p.0.id().to_string()])
            .status();
        let mut p = p;
        let _ = p.0.wait();
    }
    gw.assert_each_once(&sent);

    // Someone with database access rewrites a record from the outage: verify names it.
    let victim = &sent[8];
    let out = Command::new("psql")
        .args(["-h", "127.0.0.1", "-U", "postgres", "-d", "test", "-qc"])
        .arg(format!(
            "UPDATE {}.audit SET status = 503 WHERE request_id = '{victim}'",
            gw.schema.0
        ))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (ok, out) = gw.verify();
    assert!(!ok, "an altered row must fail verification: {out}");
    assert!(
        out.contains(&format!("(request {victim}) was altered")),
        "{out}"
    );
}

#[test]
fn kill_9_with_records_in_the_journal_loses_none_and_doubles_none() {
    let mut gw = PgGateway::new("kill");
    let key = create_key(&gw.direct, "k9");
    gw.launch();
    let mut sent = Vec::new();
    for i in 0..3 {
        let a = gw.chat(&key, &format!("before {i}"));
        assert_eq!(a.status, 200, "{}", a.body);
        sent.push(a.request_id);
    }
    // With the store cut, records can only be in the journal when the process dies.
    gw.proxy.cut();
    for i in 0..6 {
        let a = gw.chat(&key, &format!("journaled {i}"));
        assert_eq!(a.status, 200, "{}", a.body);
        sent.push(a.request_id);
    }
    gw.wait_journaled(6);
    drop(gw.proc.take()); // SIGKILL: no drain, no shutdown
    assert!(journaled(&gw.spool) >= 6, "the journal survives the kill");
    gw.proxy.restore();

    // The next start replays the journal, and the chain goes on from where it stopped.
    gw.launch();
    for i in 0..2 {
        let a = gw.chat(&key, &format!("after {i}"));
        assert_eq!(a.status, 200, "{}", a.body);
        sent.push(a.request_id);
    }
    let deadline = Instant::now() + Duration::from_secs(90);
    while audit_counts(&gw.direct).values().sum::<usize>() < sent.len() {
        assert!(
            Instant::now() < deadline,
            "the journal was not replayed after the restart"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Killed again right after the replay: whatever is still in the journal is already in
    // the store, and replaying it once more must not double it.
    drop(gw.proc.take());
    gw.launch();
    if let Some(mut p) = gw.proc.take() {
        let _ = Command::new("kill")
            .args(["-TERM", &p.0.id().to_string()])
            .status();
        let _ = p.0.wait();
    }
    assert_eq!(journaled(&gw.spool), 0, "a clean stop leaves no journal");
    gw.assert_each_once(&sent);
}

/// The value of the gauge `name` in a metrics page.
fn gauge(metrics: &str, name: &str) -> u64 {
    let head = format!("{name} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&head))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {metrics}"))
}

#[test]
fn a_cut_audit_store_fills_the_backlog_gauges_and_alerts_a_webhook_once() {
    const VAR: &str = "PORTCULLIS_TEST_SPOOL_WEBHOOK";
    let hook = Receiver::start(0);
    let mut gw = PgGateway::with_config(
        "spool",
        &format!(
            "[alerts]\nflagged_per_user = 0\n[alerts.audit_spool]\ncheck_s = 1\nwindow_s = 2\n\
             min_growth = 3\n[alerts.token_spike]\nenabled = false\n\
             [alerts.upstream_latency]\nenabled = false\n[alerts.error_rate]\nenabled = false\n\
             [alerts.webhook]\nurl_env = \"{VAR}\"\nformat = \"json\"\n"
        ),
    );
    gw.env.push((VAR.into(), hook.url.clone()));
    let key = create_key(&gw.direct, "spool");
    gw.launch();
    let metrics = |gw: &PgGateway| {
        gw.client
            .get(format!("{}/metrics", gw.base))
            .send()
            .unwrap()
            .text()
            .unwrap()
    };
    // Ordinary traffic (the key is cached by it): the backlog drains, nothing fires.
    for i in 0..5 {
        assert_eq!(gw.chat(&key, &format!("before {i}")).status, 200);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while gauge(&metrics(&gw), "portcullis_audit_pending_records") > 0 {
        assert!(Instant::now() < deadline, "the backlog never drained");
        std::thread::sleep(Duration::from_millis(100));
    }

    gw.proxy.cut();
    // Requests keep coming while the store is cut, until the alert arrives (bounded). Each
    // is recorded whatever its answer: once the cached key expires it is a 503 refusal.
    // (Other alerts may come too: the key store is down as well.)
    let spool_alerts = || -> Vec<Value> {
        hook.accepted()
            .into_iter()
            .filter(|a| a["kind"] == "audit_spool_growing")
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut during = 0;
    while spool_alerts().is_empty() {
        assert!(
            Instant::now() < deadline,
            "no alert after {during} requests with the store cut"
        );
        gw.chat(&key, &format!("during {during}"));
        during += 1;
        std::thread::sleep(Duration::from_millis(150));
    }
    let page = metrics(&gw);
    assert!(
        gauge(&page, "portcullis_audit_pending_records") >= 3,
        "{page}"
    );
    assert!(gauge(&page, "portcullis_audit_journal_bytes") > 0, "{page}");
    // The backlog goes on growing: still one alert.
    for i in 0..15 {
        gw.chat(&key, &format!("still cut {i}"));
        std::thread::sleep(Duration::from_millis(150));
    }
    let got = spool_alerts();
    assert_eq!(got.len(), 1, "exactly one alert: {:?}", hook.accepted());
    assert_eq!(got[0]["subject"], "pg-gw");
    assert!(
        got[0]["details"]["pending"].as_u64().unwrap() >= 3,
        "{}",
        got[0]
    );
    assert_eq!(alerts(&metrics(&gw), "audit_spool_growing"), 1);

    // Back: the journal is replayed and the gauges fall to zero.
    gw.proxy.restore();
    let deadline = Instant::now() + Duration::from_secs(90);
    while gauge(&metrics(&gw), "portcullis_audit_pending_records") > 0 {
        assert!(Instant::now() < deadline, "the journal was not replayed");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(spool_alerts().len(), 1, "no second alert");
}
