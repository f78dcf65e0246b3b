//! The built-in deterministic model: an OpenAI-compatible upstream that needs no key and no
//! network, so the gateway can be tried — and tested — anywhere.
//!
//! It answers chat with `Echo: <last user message>`, or with the text after `MOCK_SAY:` in
//! the last user message verbatim (so tests can make the "model" say anything). Model names
//! inject faults: `mock-error-<status>` answers with that status, `mock-slow-<ms>` waits before
//! answering, `mock-drip-<ms>` waits between stream chunks, `mock-chars-<n>` streams `n`
//! characters per chunk instead of a word; more stream faults are in [`chat`]. When the
//! request offers tools, the mock calls one. The Responses API is served too, over responses
//! kept in memory ([`responses`]). `GET /_mock/requests` returns what it received, so tests
//! can check what the gateway sent upstream.

mod chat;
mod responses;
mod text;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use portcullis_core::{ChatRequest, Content, Role};
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

/// How many received requests the mock remembers.
const REMEMBER: usize = 64;

/// What the mock received, for tests.
#[derive(Default)]
pub(crate) struct Seen {
    requests: Mutex<VecDeque<Value>>,
}

impl Seen {
    pub(crate) fn push(&self, path: &str, headers: &HeaderMap, body: Value) {
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
        .route("/v1/chat/completions", post(chat::chat))
        .route("/v1/models", get(text::models))
        .route("/v1/embeddings", post(text::embeddings))
        .route("/v1/moderations", post(text::moderations))
        .route("/_mock/requests", get(requests))
        .with_state(seen.clone())
        .merge(responses::router(seen))
}

/// Serves the mock on `listener` until the process ends.
pub async fn serve(listener: tokio::net::TcpListener) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    // As a provider's edge does: without it, Nagle holds each small SSE event back until the
    // client's delayed ACK (40 ms), and every stream measured through the mock starts late.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
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

pub(crate) fn error(status: u16, message: &str) -> Response {
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
pub(crate) fn knob(model: &str, prefix: &str) -> Option<u64> {
    let at = model.find(prefix)?;
    let digits: String = model[at + prefix.len()..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

pub(crate) fn last_user_text(req: &ChatRequest) -> String {
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
}
