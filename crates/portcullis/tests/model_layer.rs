//! The model layer end to end: a key's own parameter policy, and input moderation that runs
//! beside the upstream call.

mod common;

use common::{Gateway, Mock};
use serde_json::{Value, json};

/// The chat bodies the mock upstream received, oldest first.
fn chats(mock: &Mock) -> Vec<Value> {
    mock.requests()
        .into_iter()
        .filter(|r| r["path"] == "/v1/chat/completions")
        .map(|r| r["body"].clone())
        .collect()
}

#[test]
fn a_key_gets_its_own_parameter_policy() {
    let mock = Mock::start();
    let mut gw = Gateway::start(
        Some(&mock.url),
        Some("[params]\npreset = \"conservative\"\n"),
    );
    let bob = gw.create_key(&["--user", "bob"]);
    let keys: Vec<Value> = serde_json::from_str(&gw.cli(&["keys", "list", "--json"])).unwrap();
    let bob_id = keys
        .iter()
        .find(|k| k["user"] == "bob")
        .and_then(|k| k["id"].as_str())
        .unwrap()
        .to_owned();
    let config = gw.config.clone().unwrap();
    std::fs::write(
        &config,
        format!(
            "[params]\npreset = \"conservative\"\n[params.keys.{bob_id}.temperature]\nforce = 0.0\n"
        ),
    )
    .unwrap();
    gw.restart(Some(&mock.url));

    let mut body = Gateway::chat_body("gpt-4o-mini", "per key");
    body["temperature"] = json!(0.9);
    assert_eq!(gw.post("/v1/chat/completions", &bob, &body).status(), 200);
    let sent = chats(&mock).pop().unwrap();
    assert_eq!(sent["temperature"], json!(0.0), "bob's key forces 0");
    assert_eq!(
        sent["max_tokens"],
        json!(500),
        "the rest of the preset still applies"
    );

    assert_eq!(
        gw.post("/v1/chat/completions", &gw.key, &body).status(),
        200
    );
    let sent = chats(&mock).pop().unwrap();
    assert_eq!(
        sent["temperature"],
        json!(0.3),
        "other keys keep the default policy"
    );
}

const CONCURRENT: &str = "[moderation]\nprovider = \"upstream\"\nconcurrent = true\n";

#[test]
fn concurrent_moderation_refuses_a_flagged_request_and_discards_its_answer() {
    let mock = Mock::start();
    let gw = Gateway::start(Some(&mock.url), Some(CONCURRENT));

    // The request reached the model (moderation ran beside the call), yet the client gets
    // the policy refusal, not the answer.
    let r = gw.post(
        "/v1/chat/completions",
        &gw.key,
        &Gateway::chat_body(
            "gpt-4o-mini",
            "MOCK_VIOLENCE MOCK_SAY: the forbidden answer",
        ),
    );
    assert_eq!(r.status(), 400);
    let err: Value = r.json().unwrap();
    assert_eq!(err["error"]["code"], "content_policy_violation");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("violence")
    );
    assert!(
        chats(&mock).iter().any(|b| b["messages"][0]["content"]
            .as_str()
            .unwrap()
            .contains("MOCK_VIOLENCE")),
        "the model was already asked"
    );
    let metrics = gw.metrics();
    assert!(
        metrics.lines().any(
            |l| l.starts_with("portcullis_tokens_total{") && l.contains("direction=\"input\"}")
        ),
        "the discarded answer's usage was booked: {metrics}"
    );

    // Streamed: refused before the first chunk, as a plain error response.
    let mut body = Gateway::chat_body("gpt-4o-mini", "MOCK_VIOLENCE MOCK_SAY: streamed");
    body["stream"] = json!(true);
    let r = gw.post("/v1/chat/completions", &gw.key, &body);
    assert_eq!(r.status(), 400);
    let text = r.text().unwrap();
    assert!(text.contains("content_policy_violation") && !text.contains("streamed"));

    // /v1/scan has no model call to run beside: the concurrent check judges there too.
    let r = gw.post(
        "/v1/scan",
        &gw.key,
        &json!({"text": "MOCK_VIOLENCE in a scan", "direction": "input"}),
    );
    assert_eq!(r.status(), 200);
    let report: Value = r.json().unwrap();
    assert_eq!(report["verdict"], "block", "{report}");

    // A calm request is answered as usual.
    let r = gw.post(
        "/v1/chat/completions",
        &gw.key,
        &Gateway::chat_body("gpt-4o-mini", "MOCK_SAY: all calm"),
    );
    assert_eq!(r.status(), 200);
    let answer: Value = r.json().unwrap();
    assert_eq!(answer["choices"][0]["message"]["content"], "all calm");
}

#[test]
fn repeated_flags_from_one_user_raise_an_alert_and_findings_are_counted() {
    let mock = Mock::start();
    let gw = Gateway::start(
        Some(&mock.url),
        Some("[moderation]\nprovider = \"upstream\"\n[alerts]\nflagged_per_user = 2\n"),
    );
    let flagged = Gateway::chat_body("gpt-4o-mini", "MOCK_VIOLENCE again");
    assert_eq!(
        gw.post("/v1/chat/completions", &gw.key, &flagged).status(),
        400
    );
    assert!(
        gw.metrics()
            .contains("portcullis_alerts_total{kind=\"user_flag_burst\"} 0"),
        "one flag is not a burst"
    );
    assert_eq!(
        gw.post("/v1/chat/completions", &gw.key, &flagged).status(),
        400
    );
    let text = gw.metrics();
    assert!(
        text.contains("portcullis_alerts_total{kind=\"user_flag_burst\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("portcullis_findings_total{guard=\"moderation\",kind=\"violence\"} 2"),
        "{text}"
    );
}
