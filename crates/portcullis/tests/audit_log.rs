//! End-to-end: the audit log (issue 22). Requests of every outcome leave exactly one record
//! each, in a chain per replica keyed by the configured secret; `audit verify` proves it and,
//! once a row is altered or deleted in the database, fails naming that row; `audit query`
//! filters and `audit export` writes CSV and JSON lines; a JSON-lines sink gets every record.
//! (PostgreSQL outages and `kill -9` are in `faults.rs`.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{AUDIT_KEY, Gateway};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::io::Read;
use std::process::Command;

fn jsonl(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn request_id(r: &reqwest::blocking::Response) -> String {
    r.headers()["x-request-id"].to_str().unwrap().to_owned()
}

/// Runs SQL on the gateway's SQLite file, as an intruder with database access would.
fn sqlite(gw: &Gateway, sql: &str) {
    let db = gw.dir.path().join("gw.db");
    let out = Command::new("sqlite3").arg(&db).arg(sql).output().unwrap();
    assert!(
        out.status.success(),
        "sqlite3 {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `audit verify`: (success, stdout + stderr).
fn verify(gw: &Gateway, args: &[&str]) -> (bool, String) {
    let mut all = vec!["audit", "verify"];
    all.extend_from_slice(args);
    let out = gw.cli_output(&all);
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// HMAC-SHA256 of `text` under `key`, hex: what a verifier holding the secret computes.
fn hmac_hex(key: &str, text: &str) -> String {
    let mut m = Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes()).unwrap();
    m.update(text.as_bytes());
    hex::encode(m.finalize().into_bytes())
}

/// The content a client assembles from a chat stream.
fn streamed_text(raw: &str) -> String {
    raw.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect()
}

#[test]
fn records_name_the_model_served_mac_the_text_and_sum_up_a_stream_per_guard() {
    let mut gw = Gateway::start(
        None,
        Some("[output.links]\nenabled = true\nallow = [\"example.com\"]\naction = \"redact\"\n"),
    );
    let prompt = "MOCK_SAY: The answer, with a link to https://example.com/a and no secrets.";
    let r = gw.post(
        "/v1/chat/completions",
        &gw.key,
        &Gateway::chat_body("gpt-4o-mini", prompt),
    );
    assert_eq!(r.status(), 200);
    let whole_id = request_id(&r);
    let answer: Value = r.json().unwrap();
    // Streamed three characters at a time: a long answer in many windows.
    let long = "Words that go on and on, with https://example.com/b in the middle. ".repeat(12);
    let body = json!({"model": "gpt-4o-mini-mock-chars-3", "stream": true,
        "messages": [{"role": "system", "content": "be brief"},
            {"role": "user", "content": format!("MOCK_SAY: {long}")}]});
    let mut r = gw.post("/v1/chat/completions", &gw.key, &body);
    assert_eq!(r.status(), 200);
    let stream_id = request_id(&r);
    let mut raw = String::new();
    r.read_to_string(&mut raw).unwrap();
    let r = gw.post("/v1/scan", &gw.key, &json!({"text": "scan this"}));
    assert_eq!(r.status(), 200);
    let scan_id = request_id(&r);
    gw.stop();
    let records = jsonl(&gw.cli(&["audit", "query", "--format", "jsonl"]));
    let of = |id: &str| {
        records
            .iter()
            .find(|r| r["request_id"] == id)
            .unwrap()
            .clone()
    };

    let whole = of(&whole_id);
    assert_eq!(whole["model"], "gpt-4o-mini");
    assert_eq!(whole["model_served"], answer["model"], "{whole}");
    // A verifier holding the secret recomputes both MACs from the texts.
    let input = format!("user {}\n{prompt}\n", prompt.len());
    assert_eq!(whole["input_hmac"], hmac_hex(AUDIT_KEY, &input), "{whole}");
    let content = answer["choices"][0]["message"]["content"].as_str().unwrap();
    assert_eq!(
        whole["output_hmac"],
        hmac_hex(AUDIT_KEY, content),
        "{whole}"
    );

    let streamed = of(&stream_id);
    assert_eq!(streamed["model_served"], "gpt-4o-mini-mock-chars-3");
    let said = format!("MOCK_SAY: {long}");
    let input = format!("system 8\nbe brief\nuser {}\n{said}\n", said.len());
    assert_eq!(streamed["input_hmac"], hmac_hex(AUDIT_KEY, &input));
    let delivered = streamed_text(&raw);
    assert!(delivered.len() > 500, "{delivered}");
    assert_eq!(
        streamed["output_hmac"],
        hmac_hex(AUDIT_KEY, &delivered),
        "the concatenated deltas the client got"
    );
    // One verdict per output guard for the whole stream, however many windows it took.
    let outputs: Vec<&Value> = streamed["verdicts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["direction"] == "output")
        .collect();
    let guards: BTreeSet<&str> = outputs
        .iter()
        .map(|v| v["guard"].as_str().unwrap())
        .collect();
    assert!(guards.contains("links"), "{outputs:?}");
    assert_eq!(outputs.len(), guards.len(), "one per guard: {outputs:?}");
    for v in &outputs {
        assert!(v["windows"].as_u64().unwrap() > 10, "{v}");
    }
    let scanned = of(&scan_id);
    assert_eq!(
        scanned["input_hmac"],
        hmac_hex(AUDIT_KEY, "input 9\nscan this\n")
    );
    assert!(scanned.get("output_hmac").is_none(), "no answer: {scanned}");
    assert!(
        scanned.get("model_served").is_none(),
        "no upstream: {scanned}"
    );
    // Same input, same MAC: the whole request's prompt sent again.
    let mut again = Gateway::start(None, None);
    let r = again.post(
        "/v1/chat/completions",
        &again.key,
        &Gateway::chat_body("gpt-4o-mini", prompt),
    );
    let again_id = request_id(&r);
    again.stop();
    let rec = jsonl(&again.cli(&["audit", "query", "--format", "jsonl"]))
        .into_iter()
        .find(|r| r["request_id"] == again_id.as_str())
        .unwrap();
    assert_eq!(rec["input_hmac"], whole["input_hmac"]);
    // Filterable and exported like the model asked for.
    let served = gw.cli(&[
        "audit",
        "query",
        "--format",
        "jsonl",
        "--model-served",
        "gpt-4o-mini-mock-chars-3",
    ]);
    let ids: Vec<Value> = jsonl(&served)
        .into_iter()
        .map(|r| r["request_id"].clone())
        .collect();
    assert_eq!(ids, [json!(stream_id)]);
    let csv = gw.cli(&["audit", "export", "--format", "csv"]);
    assert!(
        csv.lines()
            .next()
            .unwrap()
            .ends_with("model_served,input_hmac,output_hmac")
    );
    assert!(
        csv.contains(whole["output_hmac"].as_str().unwrap()),
        "{csv}"
    );
}

#[test]
fn every_outcome_is_recorded_once_verified_and_a_tampered_row_is_named() {
    let mut gw = Gateway::start(
        None,
        Some(
            "[pii.actions]\nUS_SSN = \"block\"\n\
             [audit]\nreplica_id = \"gw-test\"\njsonl = \"{dir}/audit.jsonl\"\n",
        ),
    );
    let mut sent = Vec::new();
    for i in 0..3 {
        let r = gw.post(
            "/v1/chat/completions",
            &gw.key,
            &Gateway::chat_body("gpt-4o-mini", &format!("hello {i}")),
        );
        assert_eq!(r.status(), 200);
        sent.push(("allowed", request_id(&r)));
    }
    let r = gw.post(
        "/v1/chat/completions",
        &gw.key,
        &Gateway::chat_body("gpt-4o-mini", "my SSN is 536-32-3065"),
    );
    assert_eq!(r.status(), 403);
    let blocked = request_id(&r);
    sent.push(("blocked", blocked.clone()));
    let r = gw.post(
        "/v1/chat/completions",
        &gw.key,
        &Gateway::chat_body("mock-error-500", "x"),
    );
    assert_eq!(r.status(), 500);
    let failed = request_id(&r);
    sent.push(("failed", failed.clone()));
    let r = gw.post(
        "/v1/chat/completions",
        "pk-nope",
        &Gateway::chat_body("gpt-4o-mini", "x"),
    );
    assert_eq!(r.status(), 401);
    sent.push(("blocked", request_id(&r)));
    // The other routes, and a stream.
    let mut stream = Gateway::chat_body("gpt-4o-mini", "stream me");
    stream["stream"] = json!(true);
    for (path, body) in [
        ("/v1/chat/completions", stream),
        (
            "/v1/embeddings",
            json!({"model": "text-embedding-3-small", "input": "a b c"}),
        ),
        (
            "/v1/moderations",
            json!({"model": "omni-moderation-latest", "input": "some text"}),
        ),
        ("/v1/scan", json!({"text": "hello", "direction": "input"})),
    ] {
        let r = gw.post(path, &gw.key, &body);
        assert_eq!(r.status(), 200, "{path}");
        let id = request_id(&r);
        let _ = r.bytes().unwrap();
        sent.push(("allowed", id));
    }
    gw.stop(); // SIGTERM drains the writer

    // Exactly one record per request, numbered 1..=n in this replica's chain.
    let records = jsonl(&gw.cli(&["audit", "query", "--format", "jsonl"]));
    assert_eq!(records.len(), sent.len(), "{records:?}");
    let ids: BTreeSet<&str> = records
        .iter()
        .map(|r| r["request_id"].as_str().unwrap())
        .collect();
    let want: BTreeSet<&str> = sent.iter().map(|(_, id)| id.as_str()).collect();
    assert_eq!(ids, want);
    for (outcome, id) in &sent {
        let r = records
            .iter()
            .find(|r| r["request_id"] == id.as_str())
            .unwrap();
        assert_eq!(r["outcome"], *outcome, "{r}");
        assert_eq!(r["replica"], "gw-test");
    }
    let mut seqs: Vec<i64> = records.iter().map(|r| r["seq"].as_i64().unwrap()).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=sent.len() as i64).collect::<Vec<_>>());

    // The JSON-lines sink has the same records.
    let sink = std::fs::read_to_string(gw.dir.path().join("audit.jsonl")).unwrap();
    let sink_ids: BTreeSet<String> = jsonl(&sink)
        .iter()
        .map(|r| r["request_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        sink_ids.iter().map(String::as_str).collect::<BTreeSet<_>>(),
        want
    );

    // Filters.
    let by_status = jsonl(&gw.cli(&["audit", "query", "--status", "500", "--format", "jsonl"]));
    assert_eq!(by_status.len(), 1);
    assert_eq!(by_status[0]["request_id"], failed.as_str());
    let by_verdict = jsonl(&gw.cli(&[
        "audit",
        "query",
        "--verdict",
        "blocked",
        "--format",
        "jsonl",
    ]));
    assert_eq!(by_verdict.len(), 2);
    let team = jsonl(&gw.cli(&[
        "audit",
        "query",
        "--team",
        "research",
        "--model",
        "gpt-4o-mini",
        "--format",
        "jsonl",
    ]));
    assert!(
        team.iter()
            .all(|r| r["team"] == "research" && r["model"] == "gpt-4o-mini"),
        "{team:?}"
    );
    let team_ids: BTreeSet<&str> = team
        .iter()
        .map(|r| r["request_id"].as_str().unwrap())
        .collect();
    for (_, id) in &sent[..4] {
        assert!(team_ids.contains(id.as_str()), "{id} missing from {team:?}");
    }
    assert!(team_ids.contains(sent[6].1.as_str()), "the stream");
    assert!(
        !team_ids.contains(sent[7].1.as_str()),
        "embeddings ask another model"
    );
    let table = gw.cli(&["audit", "query", "--user", "alice"]);
    assert_eq!(table.lines().count(), 9, "{table}");
    assert!(table.contains(&blocked), "{table}");
    // Export: a header and a row per record; JSON lines, one object per record.
    let csv = gw.cli(&["audit", "export", "--format", "csv"]);
    assert_eq!(csv.lines().count(), sent.len() + 1, "{csv}");
    assert!(csv.starts_with("seq_id,replica,seq,request_id,"), "{csv}");
    let exported = jsonl(&gw.cli(&["audit", "export", "--format", "jsonl", "--status", "403"]));
    assert_eq!(exported.len(), 1);
    assert_eq!(exported[0]["request_id"], blocked.as_str());

    // The chain verifies...
    let (ok, out) = verify(&gw, &[]);
    assert!(ok, "{out}");
    assert!(
        out.contains("replica gw-test: ok, 10 records (seq 1..10)"),
        "{out}"
    );
    // ...a blocked request rewritten as allowed is named...
    sqlite(
        &gw,
        &format!(
            "UPDATE audit SET status = 200, outcome = 'allowed' WHERE request_id = '{blocked}'"
        ),
    );
    let (ok, out) = verify(&gw, &[]);
    assert!(!ok, "an altered row must fail verification: {out}");
    assert!(
        out.contains(&format!("record seq 4 (request {blocked}) was altered")),
        "{out}"
    );
    sqlite(
        &gw,
        &format!(
            "UPDATE audit SET status = 403, outcome = 'blocked' WHERE request_id = '{blocked}'"
        ),
    );
    assert!(verify(&gw, &[]).0);
    // ...a deleted one too, by its place and the record after the gap.
    sqlite(
        &gw,
        &format!("DELETE FROM audit WHERE request_id = '{failed}'"),
    );
    let (ok, out) = verify(&gw, &[]);
    assert!(!ok, "a deleted row must fail verification: {out}");
    assert!(out.contains("record seq 5 is missing"), "{out}");
    // Records keep coming after a restart, continuing the chain at seq 11.
    gw.relaunch(None);
    let r = gw.post(
        "/v1/chat/completions",
        &gw.key,
        &Gateway::chat_body("gpt-4o-mini", "after the restart"),
    );
    assert_eq!(r.status(), 200);
    let after = request_id(&r);
    gw.stop();
    let last = jsonl(&gw.cli(&["audit", "query", "--limit", "1", "--format", "jsonl"]));
    assert_eq!(last[0]["request_id"], after.as_str());
    assert_eq!(last[0]["seq"], 11);
    // Retention: cutting up to now leaves an anchor; the gap went with the cut.
    let pruned = gw.cli(&["audit", "prune", "--before", "0d"]);
    assert!(
        pruned.contains("replica gw-test: anchored at seq 11"),
        "{pruned}"
    );
    let (ok, out) = verify(&gw, &[]);
    assert!(ok, "{out}");
}

#[test]
fn without_a_key_nothing_is_claimed() {
    let mut gw = Gateway::start(
        None,
        Some("[audit]\nhmac_key_env = \"PORTCULLIS_NO_SUCH_KEY\"\n"),
    );
    let r = gw.post(
        "/v1/chat/completions",
        &gw.key,
        &Gateway::chat_body("gpt-4o-mini", "hi"),
    );
    assert_eq!(r.status(), 200);
    gw.stop();
    let records = jsonl(&gw.cli(&["audit", "query", "--format", "jsonl"]));
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["digest"], "", "no key, no digest");
    for field in ["input_hmac", "output_hmac"] {
        assert!(
            records[0].get(field).is_none(),
            "no key, no {field}: {}",
            records[0]
        );
    }
    assert_eq!(records[0]["model_served"], "gpt-4o-mini");
    assert_eq!(records[0]["seq"], 1, "still numbered: gaps stay visible");
    let (ok, out) = verify(&gw, &[]);
    assert!(!ok);
    assert!(
        out.contains("no key: $PORTCULLIS_NO_SUCH_KEY is not set"),
        "{out}"
    );
    let out = gw.cli_output(&["audit", "prune", "--before", "0d"]);
    assert!(
        !out.status.success(),
        "no anchor is written without the key"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("no key"));
}

#[test]
fn a_secret_too_short_to_be_one_stops_the_gateway_naming_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gw.toml");
    std::fs::write(&config, "[audit]\nhmac_key_env = \"SHORT_AUDIT_KEY\"\n").unwrap();
    let out = Command::new(common::BIN)
        .args([
            "serve",
            "--mock-upstream",
            "--listen",
            "127.0.0.1:0",
            "--store",
        ])
        .arg(format!("sqlite://{}/gw.db", dir.path().display()))
        .arg("--config")
        .arg(&config)
        .current_dir(dir.path())
        .env("SHORT_AUDIT_KEY", "hunter2")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("the audit HMAC key in $SHORT_AUDIT_KEY is 7 bytes; use at least 32"),
        "{err}"
    );
    assert!(
        !err.contains("hunter2"),
        "the secret is never printed: {err}"
    );
}

#[test]
fn text_is_kept_only_when_policy_says_so_and_then_redacted() {
    let address = "jane.doe@example.com";
    let prompt = format!("MOCK_SAY: write to {address} about card 4111 1111 1111 1111");
    let mut gw = Gateway::start(None, Some("[audit]\ntext = \"redacted\"\n"));
    let r = gw.post(
        "/v1/chat/completions",
        &gw.key,
        &Gateway::chat_body("gpt-4o-mini", &prompt),
    );
    let id = request_id(&r);
    gw.stop();
    let exported = jsonl(&gw.cli(&["audit", "export", "--format", "jsonl"]));
    let rec = exported.iter().find(|r| r["request_id"] == id).unwrap();
    let input = rec["input_text"].as_str().expect("input_text kept");
    assert!(input.starts_with("user "), "canonical form: {input}");
    assert!(input.contains("[EMAIL]"), "{input}");
    assert!(input.contains("[CREDIT_CARD]"), "{input}");
    for raw in [address, "4111"] {
        assert!(!input.contains(raw), "{input}");
        assert!(
            !rec.to_string().contains(raw),
            "nowhere in the record: {rec}"
        );
    }
    // The answer (the mock says the prompt back) is kept as delivered, redacted the same way.
    let output = rec["output_text"].as_str().expect("output_text kept");
    assert!(output.contains("write to"), "{output}");
    let (ok, out) = verify(&gw, &[]);
    assert!(ok, "{out}");

    // The default keeps no text at all.
    let mut plain = Gateway::start(None, None);
    let r = plain.post(
        "/v1/chat/completions",
        &plain.key,
        &Gateway::chat_body("gpt-4o-mini", &prompt),
    );
    let id = request_id(&r);
    plain.stop();
    let rec = jsonl(&plain.cli(&["audit", "export", "--format", "jsonl"]))
        .into_iter()
        .find(|r| r["request_id"] == id.as_str())
        .unwrap();
    assert!(rec["input_hmac"].is_string(), "{rec}");
    for field in ["input_text", "output_text"] {
        assert!(rec.get(field).is_none(), "{rec}");
    }
}
