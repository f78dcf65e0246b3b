//! End-to-end limits, budgets and the ledger: two replicas sharing Redis and PostgreSQL,
//! budgets across a restart, 429s with OpenAI's headers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{BIN, Gateway, free_port};
use serde_json::{Value, json};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn unique(tag: &str) -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "portcullis_e2e_{tag}_{}_{}",
        std::process::id(),
        t % 1_000_000_000
    )
}

/// A PostgreSQL schema and a Redis key prefix that belong to this test only, removed after.
struct SharedState {
    schema: String,
    prefix: String,
}

impl Drop for SharedState {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .args(["-h", "127.0.0.1", "-U", "postgres", "-d", "test", "-qc"])
            .arg(format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema))
            .stdout(Stdio::null())
            .status();
        let keys = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "--scan", "--pattern"])
            .arg(format!("{}:*", self.prefix))
            .output();
        if let Ok(out) = keys {
            let keys: Vec<String> = String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(str::to_owned)
                .collect();
            if !keys.is_empty() {
                let _ = Command::new("redis-cli")
                    .args(["-h", "127.0.0.1", "DEL"])
                    .args(&keys)
                    .stdout(Stdio::null())
                    .status();
            }
        }
    }
}

struct Replica {
    base: String,
    child: Child,
}

impl Drop for Replica {
    fn drop(&mut self) {
        // SIGTERM: the gateway drains its audit writer before it exits.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

fn replica(config: &std::path::Path, dir: &std::path::Path) -> Replica {
    let port = free_port();
    let child = Command::new(BIN)
        .args([
            "serve",
            "--mock-upstream",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--config",
        ])
        .arg(config)
        .current_dir(dir)
        .env("PORTCULLIS_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    common::tls();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !reqwest::blocking::get(format!("{base}/readyz")).is_ok_and(|r| r.status().is_success()) {
        assert!(Instant::now() < deadline, "replica not ready");
        std::thread::sleep(Duration::from_millis(50));
    }
    Replica { base, child }
}

#[test]
fn two_replicas_sharing_redis_and_postgres_admit_exactly_k() {
    let state = SharedState {
        schema: unique("s"),
        prefix: unique("p"),
    };
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gw.toml");
    std::fs::write(
        &config,
        format!(
            "[store]\nurl = \"postgres://postgres@127.0.0.1:5432/test?schema={}\"\nspool_dir = \"{}/spool\"\n\
             [limits]\nurl = \"redis://127.0.0.1:6379/0\"\nprefix = \"{}\"\non_error = \"fail_closed\"\n",
            state.schema,
            dir.path().display(),
            state.prefix
        ),
    )
    .unwrap();
    let a = replica(&config, dir.path());
    let b = replica(&config, dir.path());
    // The answer is exactly `max_tokens` long, so settling changes nothing and the admitted
    // count does not depend on timing: K requests fit the daily token budget, whatever order
    // the 200 arrive in. Calibrate the request's real usage with an unlimited key first.
    let text = "MOCK_SAY: hello";
    let calib = Command::new(BIN)
        .args(["keys", "create", "--user", "calibrate", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let calib_key = String::from_utf8(calib.stdout)
        .unwrap()
        .lines()
        .last()
        .unwrap()
        .trim()
        .to_owned();
    let probe: Value = reqwest::blocking::Client::new()
        .post(format!("{}/v1/chat/completions", a.base))
        .bearer_auth(&calib_key)
        .json(&json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]}))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let prompt = probe["usage"]["prompt_tokens"].as_u64().unwrap();
    let completion = probe["usage"]["completion_tokens"].as_u64().unwrap();
    let body = json!({"model": "gpt-4o-mini-mock-slow-300", "max_tokens": completion,
                      "messages": [{"role": "user", "content": text}]});
    let per_request = prompt + completion;
    let k = 37;
    let out = Command::new(BIN)
        .args([
            "keys",
            "create",
            "--user",
            "load",
            "--tpd",
            &(per_request * k).to_string(),
            "--config",
        ])
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .last()
        .unwrap()
        .trim()
        .to_owned();
    let bases = Arc::new([a.base.clone(), b.base.clone()]);
    let handles: Vec<_> = (0..200)
        .map(|i| {
            let (bases, key, body) = (bases.clone(), key.clone(), body.clone());
            std::thread::spawn(move || {
                let c = reqwest::blocking::Client::builder()
                    .timeout(Duration::from_secs(60))
                    .build()
                    .unwrap();
                let r = c
                    .post(format!("{}/v1/chat/completions", bases[i % 2]))
                    .bearer_auth(&key)
                    .json(&body)
                    .send()
                    .unwrap();
                r.status().as_u16()
            })
        })
        .collect();
    let statuses: Vec<u16> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let ok = statuses.iter().filter(|s| **s == 200).count();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    // Policy is fail_closed: on a loaded machine a Redis call can miss its timeout and that
    // request is refused with 503 (charged nothing). Such refusals may leave room unused,
    // but nothing may ever be over-admitted, and every request gets one of the three answers.
    let unavailable = statuses.iter().filter(|s| **s == 503).count();
    assert_eq!(ok + limited + unavailable, 200, "statuses: {statuses:?}");
    assert!(ok <= k as usize, "over-admitted: {ok} > {k}; {statuses:?}");
    assert!(
        ok + unavailable >= k as usize,
        "a refusal without a reason: {ok} admitted, {unavailable} unavailable; {statuses:?}"
    );
    drop(a);
    drop(b);
    // The ledger and the audit log agree to the cent (to the micro-dollar, in fact).
    let spend: Value = serde_json::from_slice(
        &Command::new(BIN)
            .args(["spend", "--by", "user", "--json", "--config"])
            .arg(&config)
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let load = spend
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["group"] == "load")
        .unwrap();
    // Every admitted request is booked once; a 503 (Redis missed its timeout) spent nothing.
    assert_eq!(
        load["requests"], ok as u64,
        "ledger rows != admitted requests"
    );
    let audit = Command::new(BIN)
        .args([
            "audit", "query", "--json", "--limit", "1000", "--user", "load", "--config",
        ])
        .arg(&config)
        .output()
        .unwrap();
    let records: Vec<Value> = String::from_utf8(audit.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), 200);
    let audited: i64 = records
        .iter()
        .map(|r| r["cost_micros"].as_i64().unwrap())
        .sum();
    assert!(audited > 0);
    // The ledger and the audit log agree to the micro-dollar.
    assert_eq!(load["cost_micros"].as_i64().unwrap(), audited);
}

#[test]
fn budgets_refuse_before_spending_and_survive_a_restart() {
    let mut gw = Gateway::start(None, None);
    let key = gw.create_key(&["--user", "spender", "--budget-daily", "0.02"]);
    let long = "the quick brown fox jumps over the lazy dog. ".repeat(120);
    let body = json!({"model": "gpt-4o", "max_tokens": 1200, "messages": [{"role": "user", "content": long}]});
    let r = gw.post("/v1/chat/completions", &key, &body);
    assert_eq!(r.status(), 200);
    let r = gw.post("/v1/chat/completions", &key, &body);
    assert_eq!(r.status(), 429);
    let e: Value = r.json().unwrap();
    assert_eq!(e["error"]["code"], "insufficient_quota");
    assert_eq!(e["error"]["type"], "insufficient_quota");
    // A cheaper request still fits the rest of the budget.
    let small = json!({"model": "gpt-4o", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]});
    assert_eq!(gw.post("/v1/chat/completions", &key, &small).status(), 200);
    gw.restart(None);
    assert_eq!(
        gw.post("/v1/chat/completions", &key, &body).status(),
        429,
        "spend survives a restart"
    );
    let table = gw.cli(&["spend", "--by", "user"]);
    assert!(table.contains("spender"), "{table}");
}

#[test]
fn rate_limits_answer_429_with_openai_headers() {
    let gw = Gateway::start(None, None);
    let key = gw.create_key(&["--user", "quick", "--rpm", "2", "--tpm", "100000"]);
    let body = Gateway::chat_body("gpt-4o-mini", "hello");
    let r = gw.post("/v1/chat/completions", &key, &body);
    assert_eq!(r.status(), 200);
    let h = r.headers();
    assert_eq!(h["x-ratelimit-limit-requests"], "2");
    assert_eq!(h["x-ratelimit-remaining-requests"], "1");
    assert_eq!(h["x-ratelimit-limit-tokens"], "100000");
    assert!(
        h.contains_key("x-ratelimit-reset-requests")
            && h.contains_key("x-ratelimit-remaining-tokens")
    );
    assert_eq!(gw.post("/v1/chat/completions", &key, &body).status(), 200);
    let r = gw.post("/v1/chat/completions", &key, &body);
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    // A sliding window frees the first request's slot one window (+ one slice) after it.
    assert!((1..=62).contains(&retry), "retry-after {retry}");
    assert_eq!(r.headers()["x-ratelimit-remaining-requests"], "0");
    let e: Value = r.json().unwrap();
    assert_eq!(e["error"]["code"], "rate_limit_exceeded");
    // Another key is not affected.
    assert_eq!(
        gw.post("/v1/chat/completions", &gw.key, &body).status(),
        200
    );
}

#[test]
fn a_lost_redis_follows_fail_closed_and_the_gateway_recovers() {
    let port = free_port();
    let start_redis = || {
        Command::new("redis-server")
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
            .stdout(Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut redis = start_redis();
    std::thread::sleep(Duration::from_millis(300));
    let gw = Gateway::start(
        None,
        Some(&format!(
            "[limits]\nurl = \"redis://127.0.0.1:{port}/0\"\non_error = \"fail_closed\"\n[limits.per_key]\nrpm = 1000\n"
        )),
    );
    let body = Gateway::chat_body("gpt-4o-mini", "hi");
    assert_eq!(
        gw.post("/v1/chat/completions", &gw.key, &body).status(),
        200
    );
    redis.kill().unwrap();
    redis.wait().unwrap();
    let r = gw.post("/v1/chat/completions", &gw.key, &body);
    assert_eq!(r.status(), 503);
    let metrics = gw.metrics();
    assert!(
        metrics
            .lines()
            .filter_map(|l| l.strip_prefix("portcullis_alerts_total{kind=\"limits_backend_down\"} "))
            .any(|v| v.trim() != "0"),
        "{metrics}"
    );
    let mut redis = start_redis();
    let deadline = Instant::now() + Duration::from_secs(30);
    while gw.post("/v1/chat/completions", &gw.key, &body).status() != 200 {
        assert!(Instant::now() < deadline, "gateway did not recover");
        std::thread::sleep(Duration::from_millis(200));
    }
    redis.kill().unwrap();
    redis.wait().unwrap();
}
