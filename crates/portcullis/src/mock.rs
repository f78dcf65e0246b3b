//! The built-in deterministic model: an OpenAI-compatible upstream that needs no key and no
//! network, so the gateway can be tried — and tested — anywhere.
//!
//! It answers chat with `Echo: <last user message>`, or with the text after `MOCK_SAY:` in
//! the last user message verbatim (so tests can make the "model" say anything). Model names
//! inject faults: `mock-error-<status>` answers with that status, `mock-slow-<ms>` waits before
//! answering, `mock-drip-<ms>` waits between stream chunks, `mock-chars-<n>` streams `n`
//! characters per chunk instead of a word. `GET /_mock/requests` returns what
//! it received, so tests can check what the gateway sent upstream.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use portcullis_core::{ChatRequest, Content, Role, tokens};
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How many received requests the mock remembers.
const REMEMBER: usize = 64;

/// What the mock received, for tests.
#[derive(Default)]
struct Seen {
    requests: Mutex<VecDeque<Value>>,
}

impl Seen {
    fn push(&self, path: &str, headers: &HeaderMap, body: Value) {
        let auth = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        if let Ok(mut q) = self.requests.lock() {
            if q.len() == REMEMBER {
                q.pop_front();
            }
            q.push_back(json!({"path": path, "authorization": auth, "body": body}));
        }
    }
}

/// The mock's routes, mounted at `/v1` like the real API.
pub fn router() -> Router {
    let seen = Arc::new(Seen::default());
    Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/models", get(models))
        .route("/v1/embeddings", post(embeddings))
        .route("/v1/moderations", post(moderations))
        .route("/_mock/requests", get(requests))
        .with_state(seen)
}

/// Serves the mock on `listener` until the process ends.
pub async fn serve(listener: tokio::net::TcpListener) -> std::io::Result<()> {
    axum::serve(listener, router()).await
}

async fn requests(State(seen): State<Arc<Seen>>) -> Json<Value> {
    let list: Vec<Value> = seen
        .requests
        .lock()
        .map(|q| q.iter().cloned().collect())
        .unwrap_or_default();
    Json(Value::Array(list))
}

fn error(status: u16, message: &str) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let kind = if status >= 500 {
        "server_error"
    } else {
        "invalid_request_error"
    };
    (
        code,
        Json(json!({"error": {"message": message, "type": kind, "param": null, "code": null}})),
    )
        .into_response()
}

/// A numeric suffix after `prefix` in the model name (`mock-slow-250` → 250).
fn knob(model: &str, prefix: &str) -> Option<u64> {
    let at = model.find(prefix)?;
    let digits: String = model[at + prefix.len()..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

fn last_user_text(req: &ChatRequest) -> String {
    let Some(m) = req.messages.iter().rev().find(|m| m.role == Role::User) else {
        return String::new();
    };
    match &m.content {
        Some(Content::Text(t)) => t.clone(),
        Some(Content::Parts(parts)) => parts
            .iter()
            .filter_map(|p| p.text.as_deref())
            .collect::<Vec<_>>()
            .join(" "),
        None => String::new(),
    }
}

/// The deterministic answer to a request.
pub fn answer(req: &ChatRequest) -> String {
    let text = last_user_text(req);
    match text.find("MOCK_SAY:") {
        Some(at) => text[at + "MOCK_SAY:".len()..].trim_start().to_owned(),
        None => format!("Echo: {text}"),
    }
}

async fn chat(State(seen): State<Arc<Seen>>, headers: HeaderMap, body: Bytes) -> Response {
    let raw: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return error(400, &format!("invalid JSON: {e}")),
    };
    seen.push("/v1/chat/completions", &headers, raw.clone());
    let req: ChatRequest = match serde_json::from_value(raw) {
        Ok(r) => r,
        Err(e) => return error(400, &format!("invalid request: {e}")),
    };
    if let Some(status) = knob(&req.model, "mock-error-") {
        return error(status as u16, "the mock upstream was asked to fail");
    }
    if let Some(ms) = knob(&req.model, "mock-slow-") {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let text = answer(&req);
    let prompt_tokens = tokens::count_prompt(&req);
    let enc = tokens::Encoding::for_model(&req.model);
    let completion_tokens = enc.count(&text) as u64;
    let n = req.n.unwrap_or(1).clamp(1, 8);
    let id = "chatcmpl-mock";
    let created = 1_700_000_000u64;
    let usage = json!({
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens * n,
        "total_tokens": prompt_tokens + completion_tokens * n,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0}
    });
    if !req.is_stream() {
        let choices: Vec<Value> = (0..n)
            .map(|i| {
                json!({"index": i, "message": {"role": "assistant", "content": text, "refusal": null},
                       "logprobs": null, "finish_reason": "stop"})
            })
            .collect();
        return Json(json!({
            "id": id, "object": "chat.completion", "created": created, "model": req.model,
            "choices": choices, "usage": usage, "system_fingerprint": "fp_mock"
        }))
        .into_response();
    }
    let include_usage = req
        .stream_options
        .as_ref()
        .and_then(|o| o.include_usage)
        .unwrap_or(false);
    let drip = knob(&req.model, "mock-drip-").map(Duration::from_millis);
    let model = req.model.clone();
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(16);
    tokio::spawn(async move {
        let chunk = |choices: Value, usage: Value| {
            let v = json!({"id": id, "object": "chat.completion.chunk", "created": created,
                           "model": model, "system_fingerprint": "fp_mock",
                           "choices": choices, "usage": usage});
            Bytes::from(format!("data: {v}\n\n"))
        };
        let mut events = Vec::new();
        for i in 0..n {
            events.push(chunk(
                json!([{"index": i, "delta": {"role": "assistant", "content": ""}, "logprobs": null, "finish_reason": null}]),
                Value::Null,
            ));
        }
        // Words with their trailing space (or `n`-character pieces), so the pieces
        // concatenate to the answer.
        let pieces: Vec<String> = match knob(&req.model, "mock-chars-").filter(|n| *n > 0) {
            Some(n) => {
                let chars: Vec<char> = text.chars().collect();
                chars
                    .chunks(n as usize)
                    .map(|c| c.iter().collect())
                    .collect()
            }
            None => text.split_inclusive(' ').map(str::to_owned).collect(),
        };
        for p in &pieces {
            for i in 0..n {
                events.push(chunk(
                    json!([{"index": i, "delta": {"content": p}, "logprobs": null, "finish_reason": null}]),
                    Value::Null,
                ));
            }
        }
        for i in 0..n {
            events.push(chunk(
                json!([{"index": i, "delta": {}, "logprobs": null, "finish_reason": "stop"}]),
                Value::Null,
            ));
        }
        if include_usage {
            events.push(chunk(json!([]), usage));
        }
        events.push(Bytes::from_static(b"data: [DONE]\n\n"));
        for e in events {
            if let Some(d) = drip {
                tokio::time::sleep(d).await;
            }
            if tx.send(Ok(e)).await.is_err() {
                return;
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| error(500, "could not build the stream"))
}

async fn models() -> Json<Value> {
    let list: Vec<Value> = ["gpt-4o-mini", "gpt-4o", "gpt-4.1-mini", "text-embedding-3-small", "omni-moderation-latest"]
        .iter()
        .map(|m| json!({"id": m, "object": "model", "created": 1_700_000_000u64, "owned_by": "portcullis-mock"}))
        .collect();
    Json(json!({"object": "list", "data": list}))
}

/// A deterministic unit vector for `text`.
fn embed(text: &str, dims: usize) -> Vec<f32> {
    let mut v = vec![0f32; dims];
    for (i, b) in text.bytes().enumerate() {
        let h = (b as usize)
            .wrapping_mul(2_654_435_761)
            .wrapping_add(i * 40_503);
        v[h % dims] += if h & 1 == 0 { 1.0 } else { -1.0 };
    }
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-6);
    v.iter_mut().for_each(|x| *x /= norm);
    v
}

async fn embeddings(State(seen): State<Arc<Seen>>, headers: HeaderMap, body: Bytes) -> Response {
    let raw: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return error(400, &format!("invalid JSON: {e}")),
    };
    seen.push("/v1/embeddings", &headers, raw.clone());
    let inputs: Vec<String> = match &raw["input"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a
            .iter()
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
            .collect(),
        _ => return error(400, "'input' must be a string or an array"),
    };
    let dims = raw["dimensions"].as_u64().unwrap_or(16).clamp(1, 3072) as usize;
    let base64 = raw["encoding_format"].as_str() == Some("base64");
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let v = embed(t, dims);
            let embedding = if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                Value::String(b64(&bytes))
            } else {
                json!(v)
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    let tokens: usize = inputs
        .iter()
        .map(|t| tokens::Encoding::Cl100k.count(t))
        .sum();
    Json(
        json!({"object": "list", "data": data, "model": raw["model"],
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}),
    )
    .into_response()
}

/// Standard base64 with padding (what the SDKs decode embeddings with).
fn b64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for c in bytes.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for (k, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if k <= c.len() {
                out.push(A[(n >> shift & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The categories OpenAI's moderation endpoint reports.
pub const CATEGORIES: [&str; 13] = [
    "harassment",
    "harassment/threatening",
    "hate",
    "hate/threatening",
    "illicit",
    "illicit/violent",
    "self-harm",
    "self-harm/intent",
    "self-harm/instructions",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
];

/// The mock's moderation: a fixed trigger word per category, so tests know what is flagged.
fn moderate(text: &str) -> Value {
    let lower = text.to_lowercase();
    let triggers = [
        ("violence", "mock_violence"),
        ("harassment", "mock_harassment"),
        ("hate", "mock_hate"),
        ("self-harm", "mock_self_harm"),
        ("sexual", "mock_sexual"),
        ("illicit", "mock_illicit"),
    ];
    let mut categories = serde_json::Map::new();
    let mut scores = serde_json::Map::new();
    let mut flagged = false;
    for c in CATEGORIES {
        let hit = triggers
            .iter()
            .any(|(cat, word)| *cat == c && lower.contains(word));
        flagged |= hit;
        categories.insert(c.into(), Value::Bool(hit));
        scores.insert(c.into(), json!(if hit { 0.97 } else { 0.001 }));
    }
    json!({"flagged": flagged, "categories": categories, "category_scores": scores})
}

async fn moderations(State(seen): State<Arc<Seen>>, headers: HeaderMap, body: Bytes) -> Response {
    let raw: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return error(400, &format!("invalid JSON: {e}")),
    };
    seen.push("/v1/moderations", &headers, raw.clone());
    if let Some(status) = raw["model"].as_str().and_then(|m| knob(m, "mock-error-")) {
        return error(status as u16, "the mock upstream was asked to fail");
    }
    let inputs: Vec<String> = match &raw["input"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a
            .iter()
            .map(|v| match v {
                Value::String(s) => s.clone(),
                other => other["text"].as_str().unwrap_or("").to_owned(),
            })
            .collect(),
        _ => return error(400, "'input' must be a string or an array"),
    };
    let results: Vec<Value> = inputs.iter().map(|t| moderate(t)).collect();
    Json(json!({"id": "modr-mock", "model": raw["model"].as_str().unwrap_or("omni-moderation-latest"),
                "results": results}))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knobs_and_answers() {
        assert_eq!(knob("mock-error-500", "mock-error-"), Some(500));
        assert_eq!(knob("gpt-4o", "mock-error-"), None);
        let r: ChatRequest = serde_json::from_value(json!({"model":"m","messages":[
            {"role":"user","content":"hello"}]}))
        .unwrap();
        assert_eq!(answer(&r), "Echo: hello");
        let r: ChatRequest = serde_json::from_value(json!({"model":"m","messages":[
            {"role":"user","content":"MOCK_SAY: exactly this"}]}))
        .unwrap();
        assert_eq!(answer(&r), "exactly this");
    }

    #[test]
    fn base64_matches_the_standard() {
        assert_eq!(b64(b""), "");
        assert_eq!(b64(b"f"), "Zg==");
        assert_eq!(b64(b"fo"), "Zm8=");
        assert_eq!(b64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn moderation_flags_only_its_triggers() {
        assert_eq!(
            moderate("a MOCK_VIOLENCE text")["categories"]["violence"],
            json!(true)
        );
        assert_eq!(moderate("a calm text")["flagged"], json!(false));
    }
}
