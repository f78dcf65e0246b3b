//! Property test of the gateway's request parsing and bounds (issue 20), black-box: a few
//! hundred malformed and hostile bodies — structure-aware mutations of valid requests (any
//! field replaced by a value of another type, out-of-range numbers, huge or deep values, keys
//! removed or added) and byte-level damage (truncation, flipped bytes) — sent to every body
//! route of the real binary (guards on, built-in mock upstream). Deterministic: a fixed seed
//! drives a small PRNG, so a failure names the case that reproduces it.
//!
//! Properties: the gateway never answers 500 (an internal error is a bug: a panic, an
//! unchecked overflow, an unhandled parse) and never drops the connection; every refusal is an
//! OpenAI-shaped error; it is still healthy at the end. The fuzz targets in `fuzz/` cover the
//! same parser in-process with coverage guidance; this checks the whole request path.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::Gateway;
use serde_json::{Value, json};

/// xorshift64*: enough randomness for mutations, no dependency, same sequence everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Values that break assumptions: wrong types, extremes, empties, odd text, deep nesting.
fn nasty(rng: &mut Rng) -> Value {
    let deep = |depth: usize| {
        let mut v = json!("x");
        for _ in 0..depth {
            v = json!([v]);
        }
        v
    };
    match rng.below(22) {
        0 => Value::Null,
        1 => json!(true),
        2 => json!(-1),
        3 => json!(0),
        4 => json!(u64::MAX),
        5 => json!(i64::MIN),
        6 => json!(1.0e308),
        7 => json!(-0.5),
        8 => json!(""),
        9 => json!("x".repeat(8 * 1024)),
        10 => json!("\u{0}\u{200b}\u{202e}ｉｇｎｏｒｅ\u{feff}"),
        11 => json!({}),
        12 => json!([]),
        13 => deep(40),
        14 => deep(300),
        15 => json!([{"type": "text", "text": "a"}, {"type": "image_url"}, 7]),
        16 => json!({"role": "user", "content": null}),
        17 => json!({"include_usage": "yes"}),
        18 => json!([{"type": "function", "function": {"name": 5}}]),
        19 => json!(4_294_967_296u64),
        20 => json!("MOCK_SAY: 4111 1111 1111 1111 sk-proj-abcdefghijklmnopqrstuvwx01234567"),
        _ => json!([1, "two", null, {"three": [4]}]),
    }
}

/// Every place in `v` (object keys and array indices), depth first.
fn paths(v: &Value, at: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    out.push(at.clone());
    match v {
        Value::Object(m) => {
            for (k, c) in m {
                at.push(k.clone());
                paths(c, at, out);
                at.pop();
            }
        }
        Value::Array(a) => {
            for (i, c) in a.iter().enumerate() {
                at.push(i.to_string());
                paths(c, at, out);
                at.pop();
            }
        }
        _ => {}
    }
}

fn at_mut<'a>(v: &'a mut Value, path: &[String]) -> &'a mut Value {
    path.iter().fold(v, |v, k| match v {
        Value::Array(a) => &mut a[k.parse::<usize>().unwrap()],
        _ => &mut v[k.as_str()],
    })
}

/// One structure-aware mutation of `seed`.
fn mutate(seed: &Value, rng: &mut Rng) -> Value {
    let mut v = seed.clone();
    for _ in 0..1 + rng.below(3) {
        let mut all = Vec::new();
        paths(&v, &mut Vec::new(), &mut all);
        let path = rng.pick(&all).clone();
        match rng.below(4) {
            0 | 1 => *at_mut(&mut v, &path) = nasty(rng),
            2 => {
                if let Some((last, parent)) = path.split_last() {
                    match at_mut(&mut v, parent) {
                        Value::Object(m) => {
                            m.remove(last);
                        }
                        Value::Array(a) if !a.is_empty() => {
                            a.remove(last.parse::<usize>().unwrap());
                        }
                        _ => {}
                    }
                }
            }
            _ => {
                let key = rng
                    .pick(&[
                        "n",
                        "max_tokens",
                        "max_completion_tokens",
                        "stream",
                        "stream_options",
                        "tools",
                        "tool_choice",
                        "user",
                        "logit_bias",
                        "temperature",
                        "input",
                        "encoding_format",
                        "dimensions",
                        "messages",
                        "text",
                        "direction",
                    ])
                    .to_string();
                if let Value::Object(m) = at_mut(&mut v, &path) {
                    m.insert(key, nasty(rng));
                }
            }
        }
    }
    v
}

/// Byte-level damage: truncation, a flipped byte, a duplicated span.
fn damage(bytes: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut b = bytes.to_vec();
    match rng.below(3) {
        0 => b.truncate(rng.below(b.len().max(1))),
        1 => {
            let i = rng.below(b.len().max(1));
            if let Some(x) = b.get_mut(i) {
                *x ^= 1 << rng.below(8);
            }
        }
        _ => {
            let i = rng.below(b.len().max(1));
            let j = (i + rng.below(16)).min(b.len());
            let span = b[i..j].to_vec();
            b.splice(i..i, span);
        }
    }
    b
}

#[test]
fn hostile_bodies_get_clean_answers_never_500() {
    let gw = Gateway::start(
        None,
        Some(
            "[pii]\nmode = \"enforce\"\n[injection]\nmode = \"enforce\"\n\
             [moderation]\nprovider = \"local\"\nmode = \"enforce\"\n",
        ),
    );
    let client = gw.client();
    let chat = json!({"model": "gpt-4o-mini", "max_tokens": 20, "n": 1,
        "stream_options": {"include_usage": true}, "user": "u",
        "tools": [{"type": "function", "function": {"name": "f", "parameters":
            {"type": "object", "properties": {"a": {"type": "string"}}}}}],
        "messages": [{"role": "system", "content": "Be brief."},
                     {"role": "user", "content": [{"type": "text", "text": "hello there"}]},
                     {"role": "assistant", "content": null, "tool_calls": [{"id": "c", "type": "function",
                        "function": {"name": "f", "arguments": "{\"a\":\"x\"}"}}]},
                     {"role": "tool", "tool_call_id": "c", "content": "done"}]});
    let seeds = [
        ("/v1/chat/completions", chat.clone()),
        ("/v1/chat/completions", {
            let mut s = chat;
            s["stream"] = json!(true);
            s
        }),
        (
            "/v1/embeddings",
            json!({"model": "text-embedding-3-small", "input": ["a b c", [1, 2, 3]], "dimensions": 8}),
        ),
        (
            "/v1/moderations",
            json!({"model": "omni-moderation-latest", "input": ["some text", "more"]}),
        ),
        (
            "/v1/scan",
            json!({"text": "mail bob@example.com", "direction": "input", "model": "gpt-4o-mini",
                   "messages": [{"role": "user", "content": "hi"}]}),
        ),
    ];
    let mut rng = Rng(0x5eed_0020);
    let cases = 320;
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    for case in 0..cases {
        let (path, seed) = rng.pick(&seeds);
        let value = mutate(seed, &mut rng);
        let mut body = serde_json::to_vec(&value).unwrap();
        if rng.below(4) == 0 {
            body = damage(&body, &mut rng);
        }
        let resp = client
            .post(format!("{}{path}", gw.base))
            .bearer_auth(&gw.key)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .unwrap_or_else(|e| {
                panic!(
                    "case {case}: the connection failed ({e}) for {path} {}",
                    String::from_utf8_lossy(&body)
                )
            });
        let status = resp.status().as_u16();
        let text = resp
            .text()
            .unwrap_or_else(|e| panic!("case {case}: the answer broke off ({e}) for {path}"));
        *statuses.entry(status).or_default() += 1;
        let shown = || String::from_utf8_lossy(&body[..body.len().min(2000)]).into_owned();
        assert!(
            status != 500,
            "case {case}: internal error for {path} {}: {text}",
            shown()
        );
        if status >= 400 {
            let err: Value = serde_json::from_str(&text).unwrap_or_else(|_| {
                panic!(
                    "case {case}: {status} is not JSON for {path} {}: {text}",
                    shown()
                )
            });
            assert!(
                err["error"]["message"].is_string() && err["error"]["type"].is_string(),
                "case {case}: {status} is not an OpenAI-shaped error: {text}"
            );
        }
    }
    let health = client
        .get(format!("{}/healthz", gw.base))
        .send()
        .unwrap()
        .status();
    assert!(
        health.is_success(),
        "the gateway is unhealthy after the run"
    );
    eprintln!("statuses over {cases} cases: {statuses:?}");
}
