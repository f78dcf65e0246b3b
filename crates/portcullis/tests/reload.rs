//! Live reload, driving the real binary: a broken file (or a restart-only change) is refused
//! over SIGHUP and the admin API and the old policy keeps serving; a good one takes effect; a
//! request in flight across a reload finishes under the policy it started with.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::node::{
    ADMIN, Node, TOKEN, cli, client, code, create_key, eventually, setup, write_config,
};
use serde_json::{Value, json};
use std::time::Duration;

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

#[test]
fn reloads_that_change_a_guards_mode_or_share_are_recorded_once_in_the_policy_history() {
    let (dir, config) = setup(&format!("{ADMIN}[injection]\nmode = \"monitor\"\n"));
    let node = Node::start(&config, dir.path());
    let report = || -> Value {
        serde_json::from_str(&cli(&config, &["report", "--format", "json"])).unwrap()
    };
    let changes = || -> Vec<(String, String, String, String)> {
        report()["history"]["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                let s = |k: &str| e[k].as_str().unwrap().to_owned();
                (s("how"), s("from"), s("to"), s("who"))
            })
            .collect()
    };
    // Released to 10 % of users over SIGHUP.
    write_config(
        &config,
        dir.path(),
        &format!("{ADMIN}[injection]\nrollout = 10\nrollout_by = \"user\"\n"),
    );
    node.signal("-HUP");
    assert!(
        eventually(Duration::from_secs(5), || changes().len() == 2),
        "{:?}",
        changes()
    );
    // A refused file records nothing; a reload that changes no mode records nothing.
    write_config(
        &config,
        dir.path(),
        &format!("{ADMIN}[injection]\nrollout = 130\n"),
    );
    assert_eq!(node.admin("POST", "/admin/reload", TOKEN, None).0, 400);
    write_config(
        &config,
        dir.path(),
        &format!(
            "{ADMIN}[injection]\nrollout = 10\nrollout_by = \"user\"\n[size]\nmax_messages = 9\n"
        ),
    );
    assert_eq!(node.admin("POST", "/admin/reload", TOKEN, None).0, 200);
    // To everyone over the admin API: recorded before the API answers.
    write_config(&config, dir.path(), ADMIN);
    assert_eq!(node.admin("POST", "/admin/reload", TOKEN, None).0, 200);
    let got = changes();
    let steps: Vec<(&str, &str, &str)> = got
        .iter()
        .map(|(h, f, t, _)| (h.as_str(), f.as_str(), t.as_str()))
        .collect();
    assert_eq!(
        steps,
        [
            ("start", "unrecorded", "monitor"),
            ("reload (SIGHUP)", "monitor", "enforce 10% by user"),
            ("reload (admin API)", "enforce 10% by user", "enforce"),
        ]
    );
    assert!(got.iter().all(|c| c.3.starts_with("replica ")), "{got:?}");
    let r = report();
    let limited = r["checklist"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["item"].as_str().unwrap().starts_with("Limited release"))
        .unwrap()
        .clone();
    let evidence = limited["evidence"].as_str().unwrap();
    assert!(
        limited["done"] == true
            && evidence.contains("injection: monitored (never blocks) since ")
            && evidence.contains(", enforced for 10 % of users (monitored for the rest) since ")
            && evidence.ends_with("(reload (admin API))"),
        "{limited}"
    );
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
