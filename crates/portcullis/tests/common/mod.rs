//! Runs the real `portcullis` binary for end-to-end tests: a private store in a temp dir, a
//! fresh key, a free loopback port, and a standalone mock upstream when asked.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(dead_code)]

pub mod fault_proxy;
pub mod node;
pub mod pg;
pub mod webhook;

use std::io::Write;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_portcullis");

/// The audit chain's secret every test gateway and command runs with (`PORTCULLIS_AUDIT_KEY`).
pub const AUDIT_KEY: &str = "test-audit-key-0123456789abcdef0123456789";

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// reqwest is built without a default TLS provider (the gateway installs ring); so do tests.
pub fn tls() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn wait_ready(url: &str, child: &mut Child) {
    tls();
    let deadline = Instant::now() + Duration::from_secs(60);
    let client = reqwest::blocking::Client::new();
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("process exited early: {status}");
        }
        if client
            .get(url)
            .send()
            .is_ok_and(|r| r.status().is_success())
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{url} not ready");
}

/// A child process killed when dropped.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A standalone mock upstream.
pub struct Mock {
    pub url: String,
    pub port: u16,
    _proc: Proc,
}

impl Mock {
    pub fn start() -> Mock {
        let port = free_port();
        let mut child = Command::new(BIN)
            .args(["mock-upstream", "--listen", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let url = format!("http://127.0.0.1:{port}/v1");
        wait_ready(&format!("{url}/models"), &mut child);
        Mock {
            url,
            port,
            _proc: Proc(child),
        }
    }

    /// What the mock received, oldest first.
    pub fn requests(&self) -> Vec<serde_json::Value> {
        tls();
        reqwest::blocking::get(format!("http://127.0.0.1:{}/_mock/requests", self.port))
            .unwrap()
            .json()
            .unwrap()
    }
}

/// A running gateway with its own store and a key.
pub struct Gateway {
    pub base: String,
    pub key: String,
    pub dir: tempfile::TempDir,
    pub store: String,
    pub config: Option<PathBuf>,
    /// Extra environment variables of the gateway process.
    pub env: Vec<(String, String)>,
    proc: Option<Proc>,
}

impl Gateway {
    /// A gateway in front of `upstream` (a URL, or `None` for the built-in mock), with an
    /// optional config file body.
    pub fn start(upstream: Option<&str>, config: Option<&str>) -> Gateway {
        Gateway::start_with_env(upstream, config, &[])
    }

    /// [`Gateway::start`] with extra environment variables for the gateway process.
    pub fn start_with_env(
        upstream: Option<&str>,
        config: Option<&str>,
        env: &[(&str, &str)],
    ) -> Gateway {
        let dir = tempfile::tempdir().unwrap();
        let store = format!("sqlite://{}/gw.db", dir.path().display());
        let config_path = config.map(|text| {
            let p = dir.path().join("gw.toml");
            let mut f = std::fs::File::create(&p).unwrap();
            f.write_all(
                text.replace("{dir}", &dir.path().display().to_string())
                    .as_bytes(),
            )
            .unwrap();
            p
        });
        let mut g = Gateway {
            base: String::new(),
            key: String::new(),
            dir,
            store,
            config: config_path,
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            proc: None,
        };
        g.key = g.create_key(&["--user", "alice", "--team", "research"]);
        g.launch(upstream);
        g
    }

    fn launch(&mut self, upstream: Option<&str>) {
        let port = free_port();
        let mut cmd = Command::new(BIN);
        cmd.args([
            "serve",
            "--store",
            &self.store,
            "--listen",
            &format!("127.0.0.1:{port}"),
        ]);
        match upstream {
            Some(u) => cmd.args(["--upstream", u]),
            None => cmd.arg("--mock-upstream"),
        };
        if let Some(c) = &self.config {
            cmd.arg("--config").arg(c);
        }
        let mut child = cmd
            .current_dir(self.dir.path())
            .env("OPENAI_API_KEY", "sk-provider-secret")
            .env("PORTCULLIS_AUDIT_KEY", AUDIT_KEY)
            .env("PORTCULLIS_LOG", "warn")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        wait_ready(&format!("http://127.0.0.1:{port}/healthz"), &mut child);
        self.base = format!("http://127.0.0.1:{port}");
        self.proc = Some(Proc(child));
    }

    /// Stops the gateway process gracefully (SIGTERM) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            let pid = p.0.id().to_string();
            let _ = Command::new("kill").args(["-TERM", &pid]).status();
            let _ = p.0.wait();
        }
    }

    /// Kills the gateway process outright (SIGKILL: no drain, no shutdown) and waits for it.
    pub fn kill9(&mut self) {
        if let Some(mut p) = self.proc.take() {
            let _ = p.0.kill();
            let _ = p.0.wait();
        }
    }

    /// Starts the gateway again (after `stop` or `kill9`), keeping its store and spool.
    pub fn relaunch(&mut self, upstream: Option<&str>) {
        self.launch(upstream);
    }

    /// Restarts the gateway against `upstream`, keeping its store.
    pub fn restart(&mut self, upstream: Option<&str>) {
        self.stop();
        self.launch(upstream);
    }

    /// Runs `portcullis` with this gateway's store and config; whatever the outcome.
    pub fn cli_output(&self, args: &[&str]) -> std::process::Output {
        let mut cmd = Command::new(BIN);
        cmd.args(args).args(["--store", &self.store]);
        if let Some(c) = &self.config {
            cmd.arg("--config").arg(c);
        }
        cmd.env("PORTCULLIS_AUDIT_KEY", AUDIT_KEY).output().unwrap()
    }

    /// Runs `portcullis` with this gateway's store; returns stdout.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = self.cli_output(args);
        assert!(
            out.status.success(),
            "portcullis {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Creates a key; returns the secret.
    pub fn create_key(&self, args: &[&str]) -> String {
        let mut all = vec!["keys", "create"];
        all.extend_from_slice(args);
        let out = self.cli(&all);
        out.lines().last().unwrap().trim().to_owned()
    }

    pub fn client(&self) -> reqwest::blocking::Client {
        tls();
        reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap()
    }

    /// POSTs JSON to `path` with `key`.
    pub fn post(
        &self,
        path: &str,
        key: &str,
        body: &serde_json::Value,
    ) -> reqwest::blocking::Response {
        self.client()
            .post(format!("{}{path}", self.base))
            .bearer_auth(key)
            .json(body)
            .send()
            .unwrap()
    }

    /// The Prometheus text at `/metrics`.
    pub fn metrics(&self) -> String {
        self.client()
            .get(format!("{}/metrics", self.base))
            .send()
            .unwrap()
            .text()
            .unwrap()
    }

    /// A one-message chat request body.
    pub fn chat_body(model: &str, text: &str) -> serde_json::Value {
        serde_json::json!({"model": model, "messages": [{"role": "user", "content": text}]})
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.stop();
    }
}
