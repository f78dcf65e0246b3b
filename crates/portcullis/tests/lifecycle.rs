//! End-to-end: every request is admitted, guarded, booked and audited exactly once however it
//! ends — answered, refused, failed upstream, or abandoned by its client — and nothing goes
//! around the guards (issue 20). The real binary, the built-in mock upstream and its faults.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::Gateway;
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::time::{Duration, Instant};

/// Every audit record of the gateway's store (stop the gateway first: that drains the writer).
fn audit(gw: &Gateway) -> Vec<Value> {
    gw.cli(&["audit", "query", "--json", "--limit", "10000"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Retries `f` until it returns `Some`, for at most a generous bound (a liveness check, not a
/// timing assertion).
fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn client(timeout: Duration) -> reqwest::blocking::Client {
    common::tls();
    reqwest::blocking::Client::builder()
        .timeout(timeout)
        .build()
        .unwrap()
}

#[test]
fn abandoned_requests_free_their_slots_book_their_cost_and_say_client_closed() {
    let mut gw = Gateway::start(
        None,
        Some("[limits.per_key]\nmax_parallel = 2\nbudget_daily_usd = 5.0\n"),
    );
    let url = format!("{}/v1/chat/completions", gw.base);
    // Two requests that the clients give up on long before the slow model answers, with a
    // large max_tokens: their holds would lock the key out if they leaked.
    let body = json!({"model": "gpt-4o-mini-mock-slow-1500", "max_tokens": 100_000,
                      "messages": [{"role": "user", "content": "are you there"}]});
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let (url, key, body) = (url.clone(), gw.key.clone(), body.clone());
            std::thread::spawn(move || {
                let r = client(Duration::from_millis(300))
                    .post(&url)
                    .bearer_auth(&key)
                    .json(&body)
                    .send();
                assert!(r.is_err(), "the client was meant to hang up");
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    // Both parallel slots come back (a leaked one would hold for its 15-minute lease).
    let ok = Gateway::chat_body("gpt-4o-mini", "and now?");
    eventually("the parallel slots are free again", || {
        let s = gw.post("/v1/chat/completions", &gw.key, &ok).status();
        (s == 200).then_some(())
    });
    gw.stop();
    let records = audit(&gw);
    let closed: Vec<&Value> = records
        .iter()
        .filter(|r| r["outcome"] == "client_closed")
        .collect();
    assert_eq!(closed.len(), 2, "{records:?}");
    for r in closed {
        assert_eq!(r["error_code"], "client_closed");
        // The upstream call was finished in the background and its reported usage booked.
        assert!(r["completion_tokens"].as_i64().unwrap() > 0, "{r}");
        assert!(r["cost_micros"].as_i64().unwrap() > 0, "{r}");
    }
    let spend: Value = serde_json::from_str(&gw.cli(&["spend", "--by", "user", "--json"])).unwrap();
    let alice = spend
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["group"] == "alice")
        .unwrap();
    assert!(alice["requests"].as_i64().unwrap() >= 3, "{spend}");
}

#[test]
fn a_stream_abandoned_midway_books_what_was_received() {
    let mut gw = Gateway::start(None, None);
    let words = "one two three four five six seven eight nine ten ".repeat(6);
    let body = json!({"model": "gpt-4o-mini-mock-drip-50", "stream": true,
                      "messages": [{"role": "user", "content": format!("MOCK_SAY: {words}")}]});
    let mut resp = client(Duration::from_secs(30))
        .post(format!("{}/v1/chat/completions", gw.base))
        .bearer_auth(&gw.key)
        .json(&body)
        .send()
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    while got.windows(5).filter(|w| w == b"data:").count() < 10 {
        let n = resp.read(&mut buf).unwrap();
        assert!(n > 0, "the stream ended early");
        got.extend_from_slice(&buf[..n]);
    }
    drop(resp);
    // The relay notices at once and ends the request; wait until its record is written.
    std::thread::sleep(Duration::from_millis(500));
    gw.stop();
    let records = audit(&gw);
    let r = records
        .iter()
        .find(|r| r["stream"] == true)
        .unwrap_or_else(|| panic!("{records:?}"));
    assert_eq!(r["outcome"], "client_closed", "{r}");
    let completion = r["completion_tokens"].as_i64().unwrap();
    assert!(completion > 0, "what was received is booked: {r}");
    assert!(completion < 60, "not the whole answer: {r}");
    assert!(r["prompt_tokens"].as_i64().unwrap() > 0, "{r}");
    assert!(r["cost_micros"].as_i64().unwrap() > 0, "{r}");
}

/// Streams a chat with `model`; returns the whole body the client received.
fn stream_body(gw: &Gateway, model: &str, text: &str) -> String {
    let body = json!({"model": model, "stream": true,
                      "messages": [{"role": "user", "content": text}]});
    client(Duration::from_secs(60))
        .post(format!("{}/v1/chat/completions", gw.base))
        .bearer_auth(&gw.key)
        .json(&body)
        .send()
        .unwrap()
        .text()
        .unwrap()
}

#[test]
fn hostile_upstream_streams_end_with_an_error_event_and_are_booked() {
    let mut gw = Gateway::start(None, Some("[upstream]\nstream_idle_timeout_s = 1\n"));
    let cases = [
        ("gpt-4o-mini-mock-garbage", "upstream_malformed_stream"),
        ("gpt-4o-mini-mock-bigindex", "upstream_malformed_stream"),
        ("gpt-4o-mini-mock-reset-3", "upstream_error"),
        ("gpt-4o-mini-mock-cut-3", "upstream_truncated"),
        ("gpt-4o-mini-mock-stall-5000", "upstream_timeout"),
    ];
    for (model, code) in cases {
        let out = stream_body(&gw, model, "MOCK_SAY: a few words of answer");
        let last = out
            .split("\n\n")
            .filter(|e| e.starts_with("data:"))
            .last()
            .unwrap_or_else(|| panic!("{model}: {out}"));
        let v: Value = serde_json::from_str(last.trim_start_matches("data:").trim())
            .unwrap_or_else(|_| panic!("{model}: {out}"));
        assert_eq!(v["error"]["code"], code, "{model}: {out}");
    }
    // A provider that ignores stream_options still gets its stream booked (estimated).
    let out = stream_body(&gw, "gpt-4o-mini-mock-nousage", "MOCK_SAY: counted anyway");
    assert!(
        out.contains("[DONE]") && !out.contains("\"usage\":{"),
        "{out}"
    );
    assert!(!out.contains("tool_calls"), "events are not padded: {out}");
    // CR-only framing is framing too: the answer arrives whole.
    let out = stream_body(&gw, "gpt-4o-mini-mock-cr", "MOCK_SAY: carriage returns");
    assert!(
        out.contains("carriage ") && out.contains("returns"),
        "{out}"
    );
    // Still serving after all that.
    assert_eq!(
        gw.post(
            "/v1/chat/completions",
            &gw.key,
            &Gateway::chat_body("gpt-4o-mini", "ok")
        )
        .status(),
        200
    );
    gw.stop();
    let records = audit(&gw);
    assert_eq!(records.len(), cases.len() + 3, "{records:?}");
    for (model, code) in cases {
        let r = records.iter().find(|r| r["model"] == model).unwrap();
        assert_eq!(
            (r["outcome"].as_str(), r["error_code"].as_str()),
            (Some("failed"), Some(code))
        );
        assert!(
            r["prompt_tokens"].as_i64().unwrap() > 0,
            "an early end books the prompt: {r}"
        );
    }
    let nousage = records
        .iter()
        .find(|r| r["model"] == "gpt-4o-mini-mock-nousage")
        .unwrap();
    assert!(
        nousage["completion_tokens"].as_i64().unwrap() > 0,
        "{nousage}"
    );
}

#[test]
fn streamed_tool_calls_get_pseudonyms_restored_and_secrets_redacted() {
    // Moderation is not what this test is about: keep its verdicts out of the way.
    let gw = Gateway::start(None, Some("[moderation]\nmode = \"off\"\n"));
    let tools = json!([{"type": "function", "function": {"name": "send_mail",
        "parameters": {"type": "object", "properties": {"to": {"type": "string"}},
                       "required": ["to"]}}}]);
    let email = "jane.roe@example.org";
    for stream in [false, true] {
        let body = json!({"model": "gpt-4o-mini", "stream": stream, "tools": tools,
            "messages": [{"role": "user", "content": format!("write to {email}")}]});
        let r = gw.post("/v1/chat/completions", &gw.key, &body);
        assert_eq!(r.status(), 200);
        let text = r.text().unwrap();
        let args = if stream {
            tool_arguments_of_stream(&text)
        } else {
            let v: Value = serde_json::from_str(&text).unwrap();
            v["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]
                .as_str()
                .unwrap()
                .to_owned()
        };
        let args: Value = serde_json::from_str(&args).unwrap_or_else(|_| panic!("{args}"));
        assert_eq!(args["to"], format!("write to {email}"), "stream={stream}");
    }
    // With input scanning off, a key the model streams into tool arguments is redacted on
    // the way out.
    let gw = Gateway::start(
        None,
        Some("[pii]\ninput = false\n[moderation]\nmode = \"off\"\n"),
    );
    let key = "AKIAIOSFODNN7EXAMPLE";
    let body = json!({"model": "gpt-4o-mini-mock-chars-3", "stream": true, "tools": tools,
        "messages": [{"role": "user", "content": format!("use {key} please")}]});
    let text = gw
        .post("/v1/chat/completions", &gw.key, &body)
        .text()
        .unwrap();
    let args = tool_arguments_of_stream(&text);
    assert!(!args.contains(key) && !text.contains(key), "{text}");
    assert!(args.contains("[SECRET]"), "{args}");
}

/// The concatenated arguments of choice 0's first streamed tool call.
fn tool_arguments_of_stream(body: &str) -> String {
    let mut args = String::new();
    for ev in body.split("\n\n") {
        let Some(data) = ev.strip_prefix("data: ") else {
            continue;
        };
        let Ok(v) = serde_json::from_str::<Value>(data) else {
            continue;
        };
        for call in v["choices"][0]["delta"]["tool_calls"]
            .as_array()
            .into_iter()
            .flatten()
        {
            if let Some(a) = call["function"]["arguments"].as_str() {
                args.push_str(a);
            }
        }
    }
    args
}

#[test]
fn a_long_secret_in_a_stream_never_reaches_the_client() {
    let gw = Gateway::start(None, Some("[pii]\ninput = false\n"));
    let body_b64 = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7".repeat(60);
    let pem = format!("-----BEGIN PRIVATE KEY-----\n{body_b64}\n-----END PRIVATE KEY-----");
    let out = stream_body(
        &gw,
        "gpt-4o-mini-mock-chars-24",
        &format!("MOCK_SAY: here is the key {pem} keep it safe"),
    );
    assert!(
        !out.contains("MIIEvQIBADANBgkqhkiG9w0"),
        "the key leaked: {out}"
    );
    assert!(out.contains("keep"), "the answer goes on after it: {out}");
}

#[test]
fn embeddings_pass_admission_guards_and_the_books() {
    let mock = common::Mock::start();
    let mut gw = Gateway::start(Some(&mock.url), None);
    let limited = gw.create_key(&["--user", "bob", "--rpm", "1"]);
    // Token ids, as LangChain sends them: the text they spell is judged like any text.
    let ids = token_ids("Contact me at jane.roe@example.org today");
    let body = json!({"model": "text-embedding-3-small", "input": [ids]});
    let r = gw.post("/v1/embeddings", &limited, &body);
    assert_eq!(r.status(), 200, "{}", r.text().unwrap_or_default());
    let sent = mock
        .requests()
        .into_iter()
        .rfind(|r| r["path"] == "/v1/embeddings")
        .unwrap();
    let input = sent["body"]["input"].to_string();
    assert!(!input.contains("jane.roe"), "{input}");
    assert!(input.contains("[EMAIL_"), "{input}");
    // Embeddings are rate limited like chats.
    assert_eq!(gw.post("/v1/embeddings", &limited, &body).status(), 429);
    // Moderations too pass the door and leave a record.
    let r = gw.post("/v1/moderations", &gw.key, &json!({"input": "a calm text"}));
    assert_eq!(r.status(), 200);
    let r = gw.post("/v1/scan", &gw.key, &json!({"text": "hello"}));
    assert_eq!(r.status(), 200);
    gw.stop();
    let records = audit(&gw);
    let routes: Vec<&str> = records.iter().filter_map(|r| r["route"].as_str()).collect();
    for route in ["/v1/embeddings", "/v1/moderations", "/v1/scan"] {
        assert!(routes.contains(&route), "{routes:?}");
    }
    let priced = records
        .iter()
        .find(|r| r["route"] == "/v1/embeddings" && r["status"] == 200)
        .unwrap();
    assert!(priced["prompt_tokens"].as_i64().unwrap() > 0, "{priced}");
    assert!(priced["cost_micros"].as_i64().unwrap() > 0, "{priced}");
}

/// The cl100k token ids of `text` (what the mock and OpenAI's embeddings use).
fn token_ids(text: &str) -> Vec<u32> {
    portcullis_core::tokens::Encoding::Cl100k.encode(text)
}

#[test]
fn routes_must_be_granted_and_n_counts_in_the_reservation() {
    let gw = Gateway::start(
        None,
        Some("[params.routes.rag]\npin_model = \"gpt-4o-mini\"\n"),
    );
    let body = Gateway::chat_body("gpt-4o-mini", "hi");
    let ask = |key: &str| {
        gw.client()
            .post(format!("{}/v1/chat/completions", gw.base))
            .bearer_auth(key)
            .header("x-portcullis-route", "rag")
            .json(&body)
            .send()
            .unwrap()
    };
    let r = ask(&gw.key);
    assert_eq!(r.status(), 403);
    let v: Value = r.json().unwrap();
    assert_eq!(v["error"]["code"], "route_not_granted");
    let granted = gw.create_key(&["--user", "carol", "--route", "rag"]);
    assert_eq!(ask(&granted).status(), 200);
    // n = 50 choices of 100 tokens do not fit a 1,000-token minute; one choice does.
    let small = gw.create_key(&["--user", "dave", "--tpm", "1000"]);
    let mut many = json!({"model": "gpt-4o-mini", "max_tokens": 100, "n": 50,
                          "messages": [{"role": "user", "content": "hi"}]});
    assert_eq!(gw.post("/v1/chat/completions", &small, &many).status(), 429);
    many["n"] = json!(1);
    assert_eq!(gw.post("/v1/chat/completions", &small, &many).status(), 200);
}

#[test]
fn bogus_keys_are_braked_per_address_and_overload_is_refused_not_queued_forever() {
    let gw = Gateway::start(
        None,
        Some("[server]\nfailed_auth_per_minute = 5\nmax_in_flight = 1\nqueue_ms = 100\n"),
    );
    let body = Gateway::chat_body("gpt-4o-mini", "hi");
    for _ in 0..5 {
        assert_eq!(
            gw.post("/v1/chat/completions", "pk-bogus", &body).status(),
            401
        );
    }
    let r = gw.post("/v1/chat/completions", "pk-bogus", &body);
    assert_eq!(r.status(), 429);
    let v: Value = r.json().unwrap();
    assert_eq!(v["error"]["code"], "too_many_failed_authentications");

    // A second gateway without the brake: one place in flight, and a slow request holds it.
    let gw = Gateway::start(None, Some("[server]\nmax_in_flight = 1\nqueue_ms = 100\n"));
    let slow = Gateway::chat_body("gpt-4o-mini-mock-slow-2000", "slow");
    let (url, key) = (format!("{}/v1/chat/completions", gw.base), gw.key.clone());
    let t = std::thread::spawn(move || {
        client(Duration::from_secs(30))
            .post(url)
            .bearer_auth(key)
            .json(&slow)
            .send()
            .unwrap()
            .status()
            .as_u16()
    });
    let shed = eventually("the slow request holds the only place", || {
        let r = gw.post("/v1/chat/completions", &gw.key, &body);
        (r.status() == 503).then(|| r.json::<Value>().unwrap())
    });
    assert_eq!(shed["error"]["code"], "gateway_overloaded");
    assert_eq!(t.join().unwrap(), 200);
    assert_eq!(
        gw.post("/v1/chat/completions", &gw.key, &body).status(),
        200
    );
}

#[test]
fn a_client_that_never_finishes_its_headers_is_cut_off() {
    let gw = Gateway::start(None, Some("[server]\nheader_timeout_s = 1\n"));
    let addr = gw.base.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut buf = Vec::new();
    // The gateway closes the connection (with or without a 408) instead of waiting forever.
    let n = s.read_to_end(&mut buf);
    assert!(n.is_ok(), "the connection was closed by the gateway: {n:?}");
    // And it still serves everyone else.
    assert_eq!(
        gw.post(
            "/v1/chat/completions",
            &gw.key,
            &Gateway::chat_body("gpt-4o-mini", "ok")
        )
        .status(),
        200
    );
}
