//! A gateway on the shared PostgreSQL through a TCP fault proxy ([`super::fault_proxy`]),
//! in a schema of its own (dropped after): the harness of the PostgreSQL outage tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::fault_proxy::FaultProxy;
use super::{BIN, Gateway, Proc, free_port};
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A name no other test run uses, for a Redis prefix or a PostgreSQL schema.
pub fn unique(tag: &str) -> String {
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

/// Drops a PostgreSQL schema when dropped (only that schema: the database is shared).
pub struct PgSchema(pub String);

impl Drop for PgSchema {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .args(["-h", "127.0.0.1", "-U", "postgres", "-d", "test", "-qc"])
            .arg(format!("DROP SCHEMA IF EXISTS {} CASCADE", self.0))
            .stdout(Stdio::null())
            .status();
    }
}

/// One answer, as the tests look at it.
pub struct Answer {
    pub status: u16,
    /// The request went through a real rate-limit decision (Redis answered): OpenAI's
    /// `x-ratelimit-*` headers are present. An unchecked (fail-open) admission has none.
    pub checked: bool,
    pub request_id: String,
    pub body: Value,
}

pub fn chat(client: &reqwest::blocking::Client, base: &str, key: &str, text: &str) -> Answer {
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

/// `portcullis audit query --json` on `store`: how many records each request id has.
pub fn audit_counts(store: &str) -> HashMap<String, usize> {
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

pub fn create_key(store: &str, user: &str) -> String {
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
pub fn journaled(spool: &std::path::Path) -> usize {
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
pub struct PgGateway {
    /// Dropped with the gateway: the schema goes away.
    pub schema: PgSchema,
    pub proxy: FaultProxy,
    /// The store URL without the proxy, for the CLI.
    pub direct: String,
    pub dir: tempfile::TempDir,
    pub config: std::path::PathBuf,
    pub spool: std::path::PathBuf,
    pub base: String,
    pub client: reqwest::blocking::Client,
    pub proc: Option<Proc>,
    /// Extra environment variables of the gateway process.
    pub env: Vec<(String, String)>,
}

impl PgGateway {
    /// A gateway on a new schema (not started yet: see [`PgGateway::launch`]).
    pub fn new(tag: &str) -> PgGateway {
        PgGateway::with_config(tag, "")
    }

    /// [`PgGateway::new`] with more config (TOML sections after `[store]` and `[audit]`).
    pub fn with_config(tag: &str, extra: &str) -> PgGateway {
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
                "[store]\nurl = \"{through}\"\nspool_dir = \"{}\"\n[audit]\nreplica_id = \"pg-gw\"\n{extra}",
                spool.display()
            ),
        )
        .unwrap();
        super::tls();
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
            env: Vec::new(),
        }
    }

    /// Starts the gateway (the store must be reachable) and waits until it is ready.
    pub fn launch(&mut self) {
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
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("PORTCULLIS_AUDIT_KEY", super::AUDIT_KEY)
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

    pub fn chat(&self, key: &str, text: &str) -> Answer {
        chat(&self.client, &self.base, key, text)
    }

    /// Waits until the journal holds at least `n` records.
    pub fn wait_journaled(&self, n: usize) {
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
    pub fn verify(&self) -> (bool, String) {
        let out = Command::new(BIN)
            .args(["audit", "verify", "--store", &self.direct, "--config"])
            .arg(&self.config)
            .env("PORTCULLIS_AUDIT_KEY", super::AUDIT_KEY)
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
    pub fn assert_each_once(&self, sent: &[String]) {
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
