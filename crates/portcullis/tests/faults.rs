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
//!   `kill -9` of the gateway with records in the journal.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::fault_proxy::FaultProxy;
use common::{BIN, Gateway, Proc, free_port};
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A name no other test run uses, for a Redis prefix or a PostgreSQL schema.
fn unique(tag: &str) -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "portcullis_faults_{tag}_{}_{}",
        std::process::id(),
        t % 1_000_000_000
    )
}

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

/// Drops a PostgreSQL schema when dropped (only that schema: the database is shared).
struct PgSchema(String);

impl Drop for PgSchema {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .args(["-h", "127.0.0.1", "-U", "postgres", "-d", "test", "-qc"])
            .arg(format!("DROP SCHEMA IF EXISTS {} CASCADE", self.0))
            .stdout(Stdio::null())
            .status();
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

/// One answer, as the tests look at it.
struct Answer {
    status: u16,
    /// The request went through a real rate-limit decision (Redis answered): OpenAI's
    /// `x-ratelimit-*` headers are present. An unchecked (fail-open) admission has none.
    checked: bool,
    request_id: String,
    body: Value,
}

fn chat(client: &reqwest::blocking::Client, base: &str, key: &str, text: &str) -> Answer {
    let r = client
        .post(format!("{base}/v1/chat/completions"))
        .bearer_auth(key)
        .json(&Gateway::chat_body("gpt-4o-mini", text))
        .send()
        .unwrap();
    let status = r.status().as_u16();
    let checked = r.headers().contains_key("x-ratelimit-remaining-requests");
    let request_id = r
        .headers()
        .get("x-request-id")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = r.json().unwrap_or(Value::Null);
    Answer {
        status,
        checked,
        request_id,
        body,
    }
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

/// `portcullis audit query --json` on `store`: how many records each request id has.
fn audit_counts(store: &str) -> HashMap<String, usize> {
    let out = Command::new(BIN)
        .args([
            "audit", "query", "--json", "--limit", "100000", "--store", store,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "audit query failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut counts = HashMap::new();
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let r: Value = serde_json::from_str(line).unwrap();
        *counts
            .entry(r["request_id"].as_str().unwrap().to_owned())
            .or_insert(0) += 1;
    }
    counts
}

fn create_key(store: &str, user: &str) -> String {
    let out = Command::new(BIN)
        .args(["keys", "create", "--user", user, "--store", store])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .last()
        .unwrap()
        .trim()
        .to_owned()
}

/// Records waiting in the gateway's audit journals under `spool` (one directory per replica:
/// lines of every segment).
fn journaled(spool: &std::path::Path) -> usize {
    let Ok(dirs) = std::fs::read_dir(spool) else {
        return 0;
    };
    let mut n = 0;
    for dir in dirs.filter_map(|e| e.ok()).filter(|e| e.path().is_dir()) {
        for f in std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
        {
            if f.file_name()
                .to_str()
                .is_some_and(|n| n.starts_with("audit-journal-"))
            {
                n += std::fs::read_to_string(f.path())
                    .unwrap_or_default()
                    .lines()
                    .filter(|l| !l.trim().is_empty())
                    .count();
            }
        }
    }
    n
}

/// A gateway on PostgreSQL through `proxy`, its schema, config, spool and HTTP client.
struct PgGateway {
    /// Dropped with the gateway: the schema goes away.
    schema: PgSchema,
    proxy: FaultProxy,
    /// The store URL without the proxy, for the CLI.
    direct: String,
    dir: tempfile::TempDir,
    config: std::path::PathBuf,
    spool: std::path::PathBuf,
    base: String,
    client: reqwest::blocking::Client,
    proc: Option<Proc>,
}

impl PgGateway {
    fn new(tag: &str) -> PgGateway {
        let schema = PgSchema(unique(tag));
        let proxy = FaultProxy::start(5432);
        let direct = format!(
            "postgres://postgres@127.0.0.1:5432/test?schema={}",
            schema.0
        );
        let through = format!(
            "postgres://postgres@127.0.0.1:{}/test?schema={}",
            proxy.port, schema.0
        );
        let dir = tempfile::tempdir().unwrap();
        let spool = dir.path().join("spool");
        let config = dir.path().join("gw.toml");
        std::fs::write(
            &config,
            format!(
                "[store]\nurl = \"{through}\"\nspool_dir = \"{}\"\n[audit]\nreplica_id = \"pg-gw\"\n",
                spool.display()
            ),
        )
        .unwrap();
        common::tls();
        let client = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        PgGateway {
            schema,
            proxy,
            direct,
            dir,
            config,
            spool,
            base: String::new(),
            client,
            proc: None,
        }
    }

    /// Starts the gateway (the store must be reachable) and waits until it is ready.
    fn launch(&mut self) {
        let port = free_port();
        let mut child = Command::new(BIN)
            .args([
                "serve",
                "--mock-upstream",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--config",
            ])
            .arg(&self.config)
            .current_dir(self.dir.path())
            .env("PORTCULLIS_LOG", "warn")
            .env("PORTCULLIS_AUDIT_KEY", common::AUDIT_KEY)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        self.base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self
            .client
            .get(format!("{}/readyz", self.base))
            .send()
            .is_ok_and(|r| r.status().is_success())
        {
            assert!(child.try_wait().unwrap().is_none(), "the gateway exited");
            assert!(
                Instant::now() < deadline,
                "the gateway did not become ready"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        self.proc = Some(Proc(child));
    }

    fn chat(&self, key: &str, text: &str) -> Answer {
        chat(&self.client, &self.base, key, text)
    }

    /// Waits until the journal holds at least `n` records.
    fn wait_journaled(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while journaled(&self.spool) < n {
            assert!(
                Instant::now() < deadline,
                "{} of {n} audit records journaled while the store was cut",
                journaled(&self.spool)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `portcullis audit verify` on the store directly: (success, stdout and stderr).
    fn verify(&self) -> (bool, String) {
        let out = Command::new(BIN)
            .args(["audit", "verify", "--store", &self.direct, "--config"])
            .arg(&self.config)
            .env("PORTCULLIS_AUDIT_KEY", common::AUDIT_KEY)
            .output()
            .unwrap();
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }

    /// Asserts that the store holds exactly one record for each of `sent`, and that the
    /// chain verifies.
    fn assert_each_once(&self, sent: &[String]) {
        let counts = audit_counts(&self.direct);
        let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
        assert!(
            twice.is_empty(),
            "requests recorded more than once: {twice:?}"
        );
        let recorded: BTreeSet<&String> = counts.keys().collect();
        let expected: BTreeSet<&String> = sent.iter().collect();
        assert_eq!(expected.len(), sent.len(), "request ids are unique");
        assert_eq!(
            recorded, expected,
            "exactly the requests sent are in the audit log"
        );
        let (ok, out) = self.verify();
        assert!(ok, "audit verify failed: {out}");
        assert!(
            out.contains(&format!("replica pg-gw: ok, {} records", sent.len())),
            "{out}"
        );
    }
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
