//! A gateway process over a config file for the incident tests (kill switch, admin API,
//! reload): the admin token in its environment, chat and admin calls, the CLI over the same
//! config, and a private `redis-server`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::{BIN, free_port, tls};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const TOKEN: &str = "admin-token-for-incident-tests";

/// One gateway process over a config file, with the admin token in its environment.
pub struct Node {
    pub base: String,
    child: Child,
}

impl Node {
    pub fn start(config: &Path, dir: &Path) -> Node {
        Node::start_with(config, dir, None)
    }

    /// A gateway in front of `upstream` (a base URL), or the built-in model.
    pub fn start_with(config: &Path, dir: &Path, upstream: Option<&str>) -> Node {
        let port = free_port();
        let mut cmd = Command::new(BIN);
        match upstream {
            Some(u) => cmd.args(["serve", "--upstream", u]),
            None => cmd.args(["serve", "--mock-upstream"]),
        };
        let mut child = cmd
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--config")
            .arg(config)
            .current_dir(dir)
            .env("PORTCULLIS_ADMIN_TOKEN", TOKEN)
            .env("PORTCULLIS_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        tls();
        let deadline = Instant::now() + Duration::from_secs(60);
        while !reqwest::blocking::get(format!("{base}/healthz"))
            .is_ok_and(|r| r.status().is_success())
        {
            if let Ok(Some(s)) = child.try_wait() {
                panic!("gateway exited early: {s}");
            }
            assert!(Instant::now() < deadline, "gateway not ready");
            std::thread::sleep(Duration::from_millis(50));
        }
        Node { base, child }
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// A chat request with `key` and `messages` user messages; status and body.
    pub fn chat(&self, key: &str, model: &str, messages: usize) -> (u16, Value) {
        let msgs: Vec<Value> = (0..messages)
            .map(|i| json!({"role": "user", "content": format!("MOCK_SAY: hello {i}")}))
            .collect();
        let r = client()
            .post(format!("{}/v1/chat/completions", self.base))
            .bearer_auth(key)
            .json(&json!({"model": model, "messages": msgs}))
            .send()
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().unwrap_or(Value::Null))
    }

    /// An admin call; status and body.
    pub fn admin(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let url = format!("{}{path}", self.base);
        let c = client();
        let req = match method {
            "GET" => c.get(url),
            "DELETE" => c.delete(url),
            _ => c.post(url),
        }
        .bearer_auth(token);
        let req = match body {
            Some(b) => req.json(&b),
            None => req,
        };
        let r = req.send().unwrap();
        let status = r.status().as_u16();
        (status, r.json().unwrap_or(Value::Null))
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

pub fn client() -> reqwest::blocking::Client {
    tls();
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// Runs `portcullis args… --config config`; stdout, or a panic with stderr.
pub fn cli(config: &Path, args: &[&str]) -> String {
    let out = Command::new(BIN)
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "portcullis {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Creates a key; (id, secret).
pub fn create_key(config: &Path, args: &[&str]) -> (String, String) {
    let mut all = vec!["keys", "create"];
    all.extend_from_slice(args);
    let secret = cli(config, &all).lines().last().unwrap().trim().to_owned();
    let keys: Value = serde_json::from_str(&cli(config, &["keys", "list", "--json"])).unwrap();
    let prefix = &secret[..10];
    let id = keys
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["prefix"] == prefix)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    (id, secret)
}

/// Polls `probe` until it returns true, for at most `within`; whether it did.
pub fn eventually(within: Duration, mut probe: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if probe() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A temp dir with `gw.toml` holding `extra` after a store in the dir.
pub fn setup(extra: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gw.toml");
    write_config(&config, dir.path(), extra);
    (dir, config)
}

pub fn write_config(config: &Path, dir: &Path, extra: &str) {
    std::fs::write(
        config,
        format!(
            "[store]\nurl = \"sqlite://{d}/gw.db\"\nspool_dir = \"{d}/spool\"\n{extra}",
            d = dir.display()
        ),
    )
    .unwrap();
}

pub fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

pub const ADMIN: &str = "[admin]\ntoken_env = \"PORTCULLIS_ADMIN_TOKEN\"\n";

/// A private `redis-server` on `port`, killed when dropped.
pub fn private_redis(port: u16) -> super::Proc {
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "redis-server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    super::Proc(child)
}
