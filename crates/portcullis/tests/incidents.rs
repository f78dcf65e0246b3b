//! Incident tools, driving the real binary: the kill switch per scope over the CLI and the
//! admin API, lock-down, persistence across restarts, propagation between two replicas sharing
//! Redis (kill and key revocation) and catching up when Redis comes back, key rotation with a
//! grace period, expired keys. Live reload is in `reload.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::node::{
    ADMIN, Node, TOKEN, cli, code, create_key, eventually, private_redis, setup, write_config,
};
use common::{BIN, free_port};
use serde_json::json;
use std::process::Command;
use std::time::{Duration, Instant};

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

/// Polls `probe` until `deadline`; whether it turned true by then.
fn by(deadline: Instant, probe: impl FnMut() -> bool) -> bool {
    eventually(deadline.saturating_duration_since(Instant::now()), probe)
}

/// The figure: a change reaches every replica within one second of the command.
const ONE_SECOND: Duration = Duration::from_secs(1);

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
    // Each deadline counts from the moment the command returns, for both replicas.
    cli(
        &config,
        &["kill", "user", "alice", "--reason", "redis drill"],
    );
    let deadline = Instant::now() + ONE_SECOND;
    for node in [&a, &b] {
        assert!(
            by(deadline, || node.chat(&alice, "gpt-4o-mini", 1).0 == 403),
            "the kill did not reach {} within a second",
            node.base
        );
    }
    cli(&config, &["unkill", "user", "alice"]);
    let deadline = Instant::now() + ONE_SECOND;
    for node in [&a, &b] {
        assert!(
            by(deadline, || node.chat(&alice, "gpt-4o-mini", 1).0 == 200),
            "the unkill did not reach {} within a second",
            node.base
        );
    }
    // Revocation: both replicas have the key cached (5 s); the news makes them forget at once.
    assert_eq!(a.chat(&alice, "gpt-4o-mini", 1).0, 200);
    assert_eq!(b.chat(&alice, "gpt-4o-mini", 1).0, 200);
    cli(&config, &["keys", "revoke", &alice_id]);
    let deadline = Instant::now() + ONE_SECOND;
    for node in [&a, &b] {
        assert!(
            by(deadline, || node.chat(&alice, "gpt-4o-mini", 1).0 == 401),
            "the revocation did not reach {} within a second (its cache holds a key 5 s)",
            node.base
        );
    }
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
