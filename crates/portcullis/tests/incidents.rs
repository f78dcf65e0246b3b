//! Incident tools, driving the real binary: the kill switch per scope over the CLI and the
//! admin API, lock-down, persistence across restarts, propagation between two replicas sharing
//! Redis (kill and key revocation), key rotation with a grace period, expired keys, and live
//! reload (a broken file refused, the old policy kept; a good one taking effect).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{BIN, free_port, tls};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TOKEN: &str = "admin-token-for-incident-tests";

/// One gateway process over a config file, with the admin token in its environment.
struct Node {
    base: String,
    child: Child,
}

impl Node {
    fn start(config: &Path, dir: &Path) -> Node {
        Node::start_with(config, dir, None)
    }

    /// A gateway in front of `upstream` (a base URL), or the built-in model.
    fn start_with(config: &Path, dir: &Path, upstream: Option<&str>) -> Node {
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

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// A chat request with `key` and `messages` user messages; status and body.
    fn chat(&self, key: &str, model: &str, messages: usize) -> (u16, Value) {
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
    fn admin(&self, method: &str, path: &str, token: &str, body: Option<Value>) -> (u16, Value) {
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

fn client() -> reqwest::blocking::Client {
    tls();
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// Runs `portcullis args… --config config`; stdout, or a panic with stderr.
fn cli(config: &Path, args: &[&str]) -> String {
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
fn create_key(config: &Path, args: &[&str]) -> (String, String) {
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
fn eventually(within: Duration, mut probe: impl FnMut() -> bool) -> bool {
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
fn setup(extra: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gw.toml");
    write_config(&config, dir.path(), extra);
    (dir, config)
}

fn write_config(config: &Path, dir: &Path, extra: &str) {
    std::fs::write(
        config,
        format!(
            "[store]\nurl = \"sqlite://{d}/gw.db\"\nspool_dir = \"{d}/spool\"\n{extra}",
            d = dir.display()
        ),
    )
    .unwrap();
}

fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

const ADMIN: &str = "[admin]\ntoken_env = \"PORTCULLIS_ADMIN_TOKEN\"\n";

#[test]
fn each_scope_is_killed_and_lifted_over_the_cli_and_a_kill_survives_a_restart() {
    let (dir, config) = setup("");
    let (alice_id, alice) = create_key(&config, &["--user", "alice", "--team", "research"]);
    let (_, bob) = create_key(&config, &["--user", "bob", "--team", "ops"]);
    let mut node = Node::start(&config, dir.path());
    assert_eq!(node.chat(&alice, "gpt-4o-mini", 1).0, 200);
    let cases = [
        ("key", alice_id.as_str(), "key_killed"),
        ("user", "alice", "user_killed"),
        ("team", "research", "team_killed"),
    ];
    for (scope, id, want) in cases {
        cli(&config, &["kill", scope, id, "--reason", "incident 42"]);
        // Without Redis the gateway re-reads the list every second.
        assert!(
            eventually(Duration::from_secs(5), || node
                .chat(&alice, "gpt-4o-mini", 1)
                .0
                == 403),
            "kill {scope} did not take effect"
        );
        let (_, body) = node.chat(&alice, "gpt-4o-mini", 1);
        assert_eq!(code(&body), want);
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("incident 42")
        );
        assert_eq!(
            node.chat(&bob, "gpt-4o-mini", 1).0,
            200,
            "others are untouched"
        );
        cli(&config, &["unkill", scope, id]);
        assert!(
            eventually(Duration::from_secs(5), || node
                .chat(&alice, "gpt-4o-mini", 1)
                .0
                == 200),
            "unkill {scope} did not take effect"
        );
    }
    // A model: refused for everyone, other models served.
    cli(
        &config,
        &[
            "kill",
            "model",
            "gpt-4o-mini",
            "--reason",
            "provider incident",
        ],
    );
    assert!(eventually(Duration::from_secs(5), || node
        .chat(&bob, "gpt-4o-mini", 1)
        .0
        == 403));
    assert_eq!(code(&node.chat(&alice, "gpt-4o-mini", 1).1), "model_killed");
    assert_eq!(node.chat(&alice, "gpt-4o", 1).0, 200);
    // The kill is in the store: a restarted gateway still refuses.
    drop(node);
    node = Node::start(&config, dir.path());
    assert_eq!(code(&node.chat(&bob, "gpt-4o-mini", 1).1), "model_killed");
    assert!(cli(&config, &["kill", "list"]).contains("provider incident"));
    cli(&config, &["unkill", "model", "gpt-4o-mini"]);
    // Lock-down: every request, whatever its key, gets 503.
    cli(
        &config,
        &["kill", "all", "--reason", "breach under investigation"],
    );
    assert!(eventually(Duration::from_secs(5), || node
        .chat(&alice, "gpt-4o-mini", 1)
        .0
        == 503));
    let (status, body) = node.chat(&bob, "gpt-4o", 1);
    assert_eq!((status, code(&body)), (503, "gateway_locked_down"));
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("breach under investigation")
    );
    assert_eq!(node.chat("pk-bogus", "gpt-4o", 1).0, 503);
    cli(&config, &["unkill", "all"]);
    assert!(eventually(Duration::from_secs(5), || node
        .chat(&bob, "gpt-4o-mini", 1)
        .0
        == 200));
}

#[test]
fn the_admin_api_kills_and_lifts_behind_its_token_only() {
    let (dir, config) = setup("");
    let (_, alice) = create_key(&config, &["--user", "alice"]);
    // No token configured: the admin API does not exist.
    let node = Node::start(&config, dir.path());
    assert_eq!(node.admin("GET", "/admin/kill", TOKEN, None).0, 404);
    drop(node);
    write_config(&config, dir.path(), ADMIN);
    let node = Node::start(&config, dir.path());
    let (status, body) = node.admin("GET", "/admin/kill", &alice, None);
    assert_eq!(
        (status, code(&body)),
        (401, "invalid_admin_token"),
        "a gateway key never opens it"
    );
    assert_eq!(
        node.admin("GET", "/admin/kill", "wrong-token-of-some-length", None)
            .0,
        401
    );
    let (status, body) = node.admin("GET", "/admin/kill", TOKEN, None);
    assert_eq!((status, body["kills"].as_array().unwrap().len()), (200, 0));
    // Kill a user: this process applies it at once.
    let (status, _) = node.admin(
        "POST",
        "/admin/kill",
        TOKEN,
        Some(json!({"scope": "user", "id": "alice", "reason": "leaked key"})),
    );
    assert_eq!(status, 200);
    let (status, body) = node.chat(&alice, "gpt-4o-mini", 1);
    assert_eq!((status, code(&body)), (403, "user_killed"));
    let (_, body) = node.admin("GET", "/admin/kill", TOKEN, None);
    assert_eq!(body["kills"][0]["target"], "alice");
    assert_eq!(
        node.admin("DELETE", "/admin/kill/user/alice", TOKEN, None)
            .0,
        200
    );
    assert_eq!(node.chat(&alice, "gpt-4o-mini", 1).0, 200);
    // Lock-down refuses the API but never the admin API, so it can be lifted.
    let all = Some(json!({"scope": "all", "reason": "drill"}));
    assert_eq!(node.admin("POST", "/admin/kill", TOKEN, all).0, 200);
    assert_eq!(
        code(&node.chat(&alice, "gpt-4o-mini", 1).1),
        "gateway_locked_down"
    );
    assert_eq!(node.admin("DELETE", "/admin/kill/all", TOKEN, None).0, 200);
    assert_eq!(node.chat(&alice, "gpt-4o-mini", 1).0, 200);
    // Bad requests are OpenAI-shaped 400s.
    let (status, body) = node.admin(
        "POST",
        "/admin/kill",
        TOKEN,
        Some(json!({"scope": "planet", "id": "x"})),
    );
    assert_eq!(status, 400);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("planet")
    );
    assert_eq!(
        node.admin("POST", "/admin/kill", TOKEN, Some(json!({"scope": "user"})))
            .0,
        400
    );
}

#[test]
fn a_kill_and_a_revocation_reach_another_replica_over_redis_within_a_second() {
    let prefix = format!("incidents_{}_{}", std::process::id(), free_port());
    // The periodic re-read is an hour: only the news over Redis can explain a quick change.
    let (dir, config) = setup(&format!(
        "[limits]\nurl = \"redis://127.0.0.1:6379/0\"\nprefix = \"{prefix}\"\n[admin]\nkill_refresh_s = 3600\n"
    ));
    let (alice_id, alice) = create_key(&config, &["--user", "alice"]);
    let a = Node::start(&config, dir.path());
    let b = Node::start(&config, dir.path());
    assert_eq!(a.chat(&alice, "gpt-4o-mini", 1).0, 200);
    assert_eq!(b.chat(&alice, "gpt-4o-mini", 1).0, 200);
    // Let both replicas finish subscribing (the subscription re-reads the list on connect).
    std::thread::sleep(Duration::from_millis(500));
    cli(
        &config,
        &["kill", "user", "alice", "--reason", "redis drill"],
    );
    for node in [&a, &b] {
        assert!(
            eventually(Duration::from_secs(3), || node
                .chat(&alice, "gpt-4o-mini", 1)
                .0
                == 403),
            "the kill did not reach {}",
            node.base
        );
    }
    cli(&config, &["unkill", "user", "alice"]);
    for node in [&a, &b] {
        assert!(eventually(Duration::from_secs(3), || node
            .chat(&alice, "gpt-4o-mini", 1)
            .0
            == 200));
    }
    // Revocation: B has the key cached (5 s); the news makes it forget at once.
    assert_eq!(b.chat(&alice, "gpt-4o-mini", 1).0, 200);
    cli(&config, &["keys", "revoke", &alice_id]);
    assert!(
        eventually(Duration::from_secs(3), || b
            .chat(&alice, "gpt-4o-mini", 1)
            .0
            == 401),
        "the revocation did not reach the replica before its cache expired"
    );
    assert_eq!(a.chat(&alice, "gpt-4o-mini", 1).0, 401);
}

#[test]
fn a_rotated_key_keeps_its_old_secret_for_the_grace_period_and_expired_keys_get_401() {
    let (dir, config) = setup("");
    let (id, old) = create_key(&config, &["--user", "carol"]);
    let (_, short) = create_key(&config, &["--user", "dora", "--ttl", "1s"]);
    let (_, long) = create_key(&config, &["--user", "erin", "--expires", "2099-01-01"]);
    let node = Node::start(&config, dir.path());
    assert_eq!(node.chat(&long, "gpt-4o-mini", 1).0, 200);
    std::thread::sleep(Duration::from_millis(1100));
    let (status, body) = node.chat(&short, "gpt-4o-mini", 1);
    assert_eq!((status, code(&body)), (401, "key_expired"));
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("expired at")
    );
    let shown = cli(&config, &["keys", "show", &id]);
    assert!(
        shown.contains("user:     carol") && shown.contains("expires:  never"),
        "{shown}"
    );
    // Rotation with a short grace: both secrets work, then only the new one.
    assert_eq!(node.chat(&old, "gpt-4o-mini", 1).0, 200);
    let new = cli(&config, &["keys", "rotate", &id, "--grace", "4s"])
        .lines()
        .last()
        .unwrap()
        .trim()
        .to_owned();
    assert_ne!(new, old);
    assert_eq!(node.chat(&new, "gpt-4o-mini", 1).0, 200);
    assert_eq!(
        node.chat(&old, "gpt-4o-mini", 1).0,
        200,
        "the old secret works during the grace"
    );
    assert!(cli(&config, &["keys", "show", &id]).contains("previous secret valid until"));
    // After the grace (and the cache's 5 s), the old secret is refused and says why.
    assert!(eventually(Duration::from_secs(15), || node
        .chat(&old, "gpt-4o-mini", 1)
        .0
        == 401));
    let (_, body) = node.chat(&old, "gpt-4o-mini", 1);
    assert_eq!(code(&body), "key_expired");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("rotated")
    );
    assert_eq!(node.chat(&new, "gpt-4o-mini", 1).0, 200);
}

#[test]
fn a_broken_reload_is_refused_and_the_old_policy_keeps_serving_then_a_good_one_applies() {
    let strict = format!("{ADMIN}[size]\nmax_messages = 1\n");
    let (dir, config) = setup(&strict);
    let (_, key) = create_key(&config, &["--user", "alice"]);
    let node = Node::start(&config, dir.path());
    assert_eq!(node.chat(&key, "gpt-4o-mini", 1).0, 200);
    let refused = node.chat(&key, "gpt-4o-mini", 2).0;
    assert!(
        (400..500).contains(&refused),
        "two messages are over the limit: {refused}"
    );
    // A file that fails validation: the admin API says why, the old policy stays.
    write_config(
        &config,
        dir.path(),
        &format!("{ADMIN}[size]\nmax_messages = \"many\"\n"),
    );
    let (status, body) = node.admin("POST", "/admin/reload", TOKEN, None);
    assert_eq!((status, code(&body)), (400, "config_invalid"));
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("size: invalid type"),
        "{body}"
    );
    node.signal("-HUP");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        node.chat(&key, "gpt-4o-mini", 2).0,
        refused,
        "the old policy keeps serving"
    );
    assert_eq!(node.chat(&key, "gpt-4o-mini", 1).0, 200);
    // A setting only a restart can change is refused too, naming it (a changed listen
    // address would be, but the --listen flag is applied again over the file).
    write_config(
        &config,
        dir.path(),
        &format!("{ADMIN}[server]\nmax_in_flight = 5\n"),
    );
    let (status, body) = node.admin("POST", "/admin/reload", TOKEN, None);
    assert_eq!(status, 400);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("server.max_in_flight"),
        "{body}"
    );
    // A good file over SIGHUP takes effect.
    write_config(
        &config,
        dir.path(),
        &format!("{ADMIN}[size]\nmax_messages = 10\n"),
    );
    node.signal("-HUP");
    assert!(
        eventually(Duration::from_secs(5), || node
            .chat(&key, "gpt-4o-mini", 2)
            .0
            == 200),
        "the reloaded policy did not take effect"
    );
    // And back over the admin API.
    write_config(&config, dir.path(), &strict);
    let (status, body) = node.admin("POST", "/admin/reload", TOKEN, None);
    assert_eq!((status, body["reloaded"].as_bool()), (200, Some(true)));
    assert_eq!(node.chat(&key, "gpt-4o-mini", 2).0, refused);
}

/// An upstream that answers every chat completion with `answer`, holding the first request
/// until `release` is sent: a request kept in flight across a reload.
fn held_upstream(answer: &'static str) -> (String, std::sync::mpsc::Sender<()>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    let (release, held) = std::sync::mpsc::channel::<()>();
    let held = std::sync::Arc::new(std::sync::Mutex::new(Some(held)));
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let held = held.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut length = 0;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap();
                    }
                    if line == "\r\n" {
                        break;
                    }
                }
                let mut body = vec![0; length];
                reader.read_exact(&mut body).unwrap();
                // The first request waits for the test's word.
                let first = held.lock().unwrap().take();
                if let Some(rx) = first {
                    let _ = rx.recv();
                }
                let json = json!({
                    "id": "chatcmpl-held", "object": "chat.completion", "created": 0,
                    "model": "gpt-4o-mini",
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": answer}}],
                    "usage": {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10}
                })
                .to_string();
                let mut out = stream;
                let _ = write!(
                    out,
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{json}",
                    json.len()
                );
            });
        }
    });
    (url, release)
}

#[test]
fn a_request_in_flight_finishes_under_the_policy_it_started_with() {
    let answer = "Write to bob.stone@example.org about it.";
    let (upstream, release) = held_upstream(answer);
    let (dir, config) = setup(ADMIN);
    let (_, key) = create_key(&config, &["--user", "alice"]);
    let node = Node::start_with(&config, dir.path(), Some(&upstream));
    let base = node.base.clone();
    let k = key.clone();
    let in_flight = std::thread::spawn(move || {
        client()
            .post(format!("{base}/v1/chat/completions"))
            .bearer_auth(k)
            .json(&json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .unwrap()
            .json::<Value>()
            .unwrap()
    });
    std::thread::sleep(Duration::from_millis(500));
    // The new policy refuses e-mail addresses in answers.
    write_config(
        &config,
        dir.path(),
        &format!("{ADMIN}[pii.output_actions]\nEMAIL = \"block\"\n"),
    );
    assert_eq!(node.admin("POST", "/admin/reload", TOKEN, None).0, 200);
    let (status, body) = node.chat(&key, "gpt-4o-mini", 1);
    assert!(
        (400..500).contains(&status),
        "a new request is judged by the new policy: {body}"
    );
    assert_eq!(code(&body), "pii_blocked", "{body}");
    assert!(!body.to_string().contains("bob.stone@example.org"));
    // The request that started before the reload is answered under the old policy.
    release.send(()).unwrap();
    let old = in_flight.join().unwrap();
    assert_eq!(old["choices"][0]["message"]["content"], answer, "{old}");
}

/// A private `redis-server` on `port`, killed when dropped.
fn private_redis(port: u16) -> common::Proc {
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
    common::Proc(child)
}

#[test]
fn a_replica_that_lost_redis_catches_up_on_reconnect() {
    let port = free_port();
    let redis = private_redis(port);
    let (dir, config) = setup(&format!(
        "[limits]\nurl = \"redis://127.0.0.1:{port}/0\"\n[admin]\nkill_refresh_s = 3600\n"
    ));
    let (_, alice) = create_key(&config, &["--user", "alice"]);
    let node = Node::start(&config, dir.path());
    assert_eq!(node.chat(&alice, "gpt-4o-mini", 1).0, 200);
    drop(redis);
    // Redis is down: the kill is saved, the CLI says the replicas were not told.
    let out = Command::new(BIN)
        .args([
            "kill",
            "user",
            "alice",
            "--reason",
            "while redis was down",
            "--config",
        ])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("saved in the store"), "{err}");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        node.chat(&alice, "gpt-4o-mini", 1).0,
        200,
        "no news and no re-read yet (the timer is an hour)"
    );
    // Redis is back: the replica re-subscribes and re-reads the list.
    let _redis = private_redis(port);
    assert!(
        eventually(Duration::from_secs(10), || node
            .chat(&alice, "gpt-4o-mini", 1)
            .0
            == 403),
        "the replica did not catch up on reconnect"
    );
}
