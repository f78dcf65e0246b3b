//! The mock's Responses API, so `serve --mock-upstream` can demonstrate — and the tests can
//! drive — the gateway's Responses routes: `POST /v1/responses` (whole, or streamed with the
//! official event sequence from `response.created` to `response.completed` with usage),
//! `GET /v1/responses/{id}` (also replayed as a stream with `?stream=true`), `DELETE
//! /v1/responses/{id}` and `GET /v1/responses/{id}/input_items`, over responses kept in
//! memory (the latest [`KEEP`]).
//!
//! It answers like the chat mock — `Echo: <last user text>`, or the text after `MOCK_SAY:` —
//! and, when function tools are offered and the input does not end with a tool's output,
//! calls one (the one `tool_choice` names, else the first) with arguments built from its
//! schema, streamed too. An unknown `previous_response_id` is a 404. Model-name knobs as for
//! chat: `mock-error-<status>`, `mock-slow-<ms>`, `mock-drip-<ms>`, `mock-chars-<n>`,
//! `mock-cut-<n>` (the stream ends after `n` events).

use super::chat::{arguments, relay};
use super::{Seen, error, knob};
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use portcullis_core::{ChatRequest, Message, Role, tokens};
use serde_json::{Value, json};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How many responses the mock keeps.
const KEEP: usize = 256;
const CREATED: u64 = 1_700_000_000;

/// The mock's state: what it received, and the responses it keeps.
struct Mock {
    seen: Arc<Seen>,
    kept: Mutex<Kept>,
}

/// Responses by id, oldest first, with the input items each was made from.
#[derive(Default)]
struct Kept {
    order: VecDeque<String>,
    by_id: HashMap<String, (Value, Vec<Value>)>,
}

/// The Responses routes, recording requests in `seen`.
pub(super) fn router(seen: Arc<Seen>) -> Router {
    let state = Arc::new(Mock {
        seen,
        kept: Mutex::new(Kept::default()),
    });
    Router::new()
        .route("/v1/responses", post(create))
        .route("/v1/responses/{id}", get(retrieve).delete(delete))
        .route("/v1/responses/{id}/input_items", get(input_items))
        .with_state(state)
}

/// A fresh id: `prefix` and 24 random hex digits (unique across mock restarts too).
fn new_id(prefix: &str) -> String {
    let mut b = [0u8; 12];
    let _ = getrandom::fill(&mut b);
    format!("{prefix}_{}", hex::encode(b))
}

fn not_found(id: &str) -> Response {
    error(404, &format!("Response with id '{id}' not found."))
}

/// The input as items, each with an id (as the API lists them).
fn items_of(input: &Value) -> Vec<Value> {
    let items = match input {
        Value::String(s) => vec![json!({"type": "message", "role": "user",
            "content": [{"type": "input_text", "text": s}]})],
        Value::Array(a) => a.clone(),
        _ => Vec::new(),
    };
    items
        .into_iter()
        .map(|mut item| {
            if item.get("role").is_some() && item.get("type").is_none() {
                item["type"] = json!("message");
            }
            if let Some(s) = item
                .get("content")
                .and_then(Value::as_str)
                .map(str::to_owned)
            {
                item["content"] = json!([{"type": "input_text", "text": s}]);
            }
            if item.get("id").is_none_or(Value::is_null) {
                let prefix = match item["type"].as_str() {
                    Some("message") => "msg",
                    Some("function_call_output") => "fco",
                    _ => "item",
                };
                item["id"] = json!(new_id(prefix));
            }
            item
        })
        .collect()
}

/// The text of an item's content or output (a string, or its parts' texts joined).
fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p["text"].as_str())
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

/// The function call the mock makes, if any: (name, arguments as JSON text).
fn tool_call(raw: &Value, items: &[Value], user_text: &str) -> Option<(String, String)> {
    let tools = raw["tools"].as_array().filter(|t| !t.is_empty())?;
    if raw["tool_choice"] == "none" {
        return None;
    }
    if items
        .last()
        .is_some_and(|i| i["type"] == "function_call_output")
    {
        return None;
    }
    let chosen = raw["tool_choice"]["name"].as_str();
    let tool = tools.iter().find(|t| {
        t["type"] == "function" && chosen.is_none_or(|n| t["name"].as_str() == Some(n))
    })?;
    let name = tool["name"].as_str()?.to_owned();
    Some((name, arguments(&tool["parameters"], user_text).to_string()))
}

async fn create(State(m): State<Arc<Mock>>, headers: HeaderMap, body: Bytes) -> Response {
    let raw: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return error(400, &format!("invalid JSON: {e}")),
    };
    m.seen.push("/v1/responses", &headers, raw.clone());
    let Some(model) = raw["model"].as_str().map(str::to_owned) else {
        return error(400, "'model' is required");
    };
    if let Some(status) = knob(&model, "mock-error-") {
        return error(status as u16, "the mock upstream was asked to fail");
    }
    if let Some(ms) = knob(&model, "mock-slow-") {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if let Some(prev) = raw["previous_response_id"].as_str() {
        let known = m.kept.lock().is_ok_and(|k| k.by_id.contains_key(prev));
        if !known {
            let body = json!({"error": {"message": format!("Previous response with id '{prev}' not found."),
                "type": "invalid_request_error", "param": "previous_response_id",
                "code": "previous_response_not_found"}});
            return (axum::http::StatusCode::NOT_FOUND, Json(body)).into_response();
        }
    }
    let items = items_of(&raw["input"]);
    let user_text = items
        .iter()
        .rev()
        .find(|i| i["role"] == "user")
        .map(|i| text_of(&i["content"]))
        .unwrap_or_default();
    let enc = tokens::Encoding::for_model(&model);
    let mut input_tokens = enc.count(raw["instructions"].as_str().unwrap_or("")) as u64;
    for i in &items {
        let text = text_of(&i["content"]) + &text_of(&i["output"]);
        input_tokens +=
            3 + enc.count(&text) as u64 + enc.count(i["arguments"].as_str().unwrap_or("")) as u64;
    }
    let (item, said) = match tool_call(&raw, &items, &user_text) {
        Some((name, args)) => (
            json!({"type": "function_call", "id": new_id("fc"), "call_id": new_id("call"),
                "name": name, "arguments": args, "status": "completed"}),
            args,
        ),
        None => {
            let req = ChatRequest {
                messages: vec![Message::text(Role::User, user_text)],
                ..ChatRequest::default()
            };
            let text = super::answer(&req);
            (
                json!({"type": "message", "id": new_id("msg"), "status": "completed",
                    "role": "assistant", "content": [{"type": "output_text", "text": text,
                    "annotations": [], "logprobs": []}]}),
                text,
            )
        }
    };
    let output_tokens = enc.count(&said) as u64;
    let field = |k: &str, default: Value| raw.get(k).cloned().unwrap_or(default);
    let response = json!({
        "id": new_id("resp"), "object": "response", "created_at": CREATED, "status": "completed",
        "background": false, "error": null, "incomplete_details": null,
        "instructions": field("instructions", Value::Null),
        "max_output_tokens": field("max_output_tokens", Value::Null),
        "model": model, "output": [item], "parallel_tool_calls": field("parallel_tool_calls", json!(true)),
        "previous_response_id": field("previous_response_id", Value::Null),
        "reasoning": {"effort": null, "summary": null}, "store": field("store", json!(true)),
        "temperature": field("temperature", json!(1.0)), "text": {"format": {"type": "text"}},
        "tool_choice": field("tool_choice", json!("auto")), "tools": field("tools", json!([])),
        "top_p": field("top_p", json!(1.0)), "truncation": "disabled",
        "usage": {"input_tokens": input_tokens, "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": output_tokens, "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": input_tokens + output_tokens},
        "user": field("user", Value::Null), "metadata": field("metadata", json!({})),
    });
    if let Ok(mut k) = m.kept.lock() {
        let id = response["id"].as_str().unwrap_or_default().to_owned();
        if k.order.len() == KEEP
            && let Some(old) = k.order.pop_front()
        {
            k.by_id.remove(&old);
        }
        k.order.push_back(id.clone());
        k.by_id.insert(id, (response.clone(), items));
    }
    if raw["stream"] == true {
        stream(&response)
    } else {
        Json(response).into_response()
    }
}

/// The stream of events that builds `response`, with the model's timing faults.
fn stream(response: &Value) -> Response {
    let model = response["model"].as_str().unwrap_or_default();
    let mut events = events(response, knob(model, "mock-chars-"));
    if let Some(k) = knob(model, "mock-cut-") {
        events.truncate(k as usize);
    }
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(relay(events, model)))
        .unwrap_or_else(|_| error(500, "could not build the stream"))
}

/// Text in pieces: words with their trailing space, or `size` characters each.
fn pieces(s: &str, size: Option<u64>) -> Vec<String> {
    match size.filter(|n| *n > 0) {
        Some(k) => {
            let chars: Vec<char> = s.chars().collect();
            chars
                .chunks(k as usize)
                .map(|c| c.iter().collect())
                .collect()
        }
        None => s.split_inclusive(' ').map(str::to_owned).collect(),
    }
}

/// The official event sequence for a finished response.
fn events(response: &Value, chars: Option<u64>) -> Vec<Bytes> {
    let mut out = Vec::new();
    let mut push = |mut v: Value| {
        v["sequence_number"] = json!(out.len());
        let kind = v["type"].as_str().unwrap_or_default().to_owned();
        out.push(Bytes::from(format!("event: {kind}\ndata: {v}\n\n")));
    };
    let mut early = response.clone();
    early["status"] = json!("in_progress");
    early["output"] = json!([]);
    early["usage"] = Value::Null;
    push(json!({"type": "response.created", "response": early}));
    push(json!({"type": "response.in_progress", "response": early}));
    for (oi, item) in response["output"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let id = item["id"].clone();
        let mut added = item.clone();
        added["status"] = json!("in_progress");
        match item["type"].as_str() {
            Some("function_call") => {
                added["arguments"] = json!("");
                push(
                    json!({"type": "response.output_item.added", "output_index": oi, "item": added}),
                );
                let args = item["arguments"].as_str().unwrap_or_default();
                for p in pieces(args, Some(chars.unwrap_or(8))) {
                    push(json!({"type": "response.function_call_arguments.delta",
                        "item_id": id, "output_index": oi, "delta": p}));
                }
                push(
                    json!({"type": "response.function_call_arguments.done", "item_id": id,
                    "output_index": oi, "name": item["name"], "arguments": args}),
                );
            }
            _ => {
                added["content"] = json!([]);
                push(
                    json!({"type": "response.output_item.added", "output_index": oi, "item": added}),
                );
                for (ci, part) in item["content"].as_array().into_iter().flatten().enumerate() {
                    let text = part["text"].as_str().unwrap_or_default();
                    push(json!({"type": "response.content_part.added", "item_id": id,
                        "output_index": oi, "content_index": ci, "part": {"type": "output_text",
                        "text": "", "annotations": [], "logprobs": []}}));
                    for p in pieces(text, chars) {
                        push(json!({"type": "response.output_text.delta", "item_id": id,
                            "output_index": oi, "content_index": ci, "delta": p, "logprobs": []}));
                    }
                    push(json!({"type": "response.output_text.done", "item_id": id,
                        "output_index": oi, "content_index": ci, "text": text, "logprobs": []}));
                    push(json!({"type": "response.content_part.done", "item_id": id,
                        "output_index": oi, "content_index": ci, "part": part}));
                }
            }
        }
        push(json!({"type": "response.output_item.done", "output_index": oi, "item": item}));
    }
    push(json!({"type": "response.completed", "response": response}));
    out
}

async fn retrieve(
    State(m): State<Arc<Mock>>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let found = m
        .kept
        .lock()
        .ok()
        .and_then(|k| k.by_id.get(&id).map(|(r, _)| r.clone()));
    match found {
        Some(r) if query.is_some_and(|q| q.split('&').any(|kv| kv == "stream=true")) => stream(&r),
        Some(r) => Json(r).into_response(),
        None => not_found(&id),
    }
}

async fn delete(State(m): State<Arc<Mock>>, Path(id): Path<String>) -> Response {
    let gone = m.kept.lock().ok().and_then(|mut k| {
        k.order.retain(|i| *i != id);
        k.by_id.remove(&id)
    });
    match gone {
        Some(_) => {
            Json(json!({"id": id, "object": "response.deleted", "deleted": true})).into_response()
        }
        None => not_found(&id),
    }
}

async fn input_items(
    State(m): State<Arc<Mock>>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let found = m
        .kept
        .lock()
        .ok()
        .and_then(|k| k.by_id.get(&id).map(|(_, items)| items.clone()));
    let Some(mut items) = found else {
        return not_found(&id);
    };
    // Newest first unless `order=asc`.
    if !query.is_some_and(|q| q.split('&').any(|kv| kv == "order=asc")) {
        items.reverse();
    }
    Json(
        json!({"object": "list", "data": items, "first_id": items.first().map(|i| i["id"].clone()),
        "last_id": items.last().map(|i| i["id"].clone()), "has_more": false}),
    )
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(e: &Bytes) -> Value {
        let s = std::str::from_utf8(e).unwrap();
        let line = s.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
        serde_json::from_str(line).unwrap()
    }

    #[test]
    fn a_streamed_answer_follows_the_official_sequence_and_rebuilds_the_text() {
        let response = json!({"id": "resp_1", "model": "m", "output": [
            {"type": "message", "id": "msg_1", "role": "assistant",
             "content": [{"type": "output_text", "text": "Echo: a b c", "annotations": []}]}],
            "usage": {"input_tokens": 3, "output_tokens": 4}});
        let evs: Vec<Value> = events(&response, None).iter().map(data).collect();
        let kinds: Vec<&str> = evs.iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(
            kinds[..4],
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added"
            ]
        );
        assert_eq!(kinds.last(), Some(&"response.completed"));
        let text: String = evs
            .iter()
            .filter(|e| e["type"] == "response.output_text.delta")
            .map(|e| e["delta"].as_str().unwrap())
            .collect();
        assert_eq!(text, "Echo: a b c");
        assert!(
            evs.iter()
                .enumerate()
                .all(|(i, e)| e["sequence_number"] == i)
        );
        assert!(evs[0]["response"]["usage"].is_null());
    }

    #[test]
    fn offered_function_tools_are_called_until_a_tool_answered() {
        let raw = json!({"tools": [{"type": "function", "name": "weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
            "required": ["city"]}}]});
        let items = items_of(&json!("Paris"));
        let (name, args) = tool_call(&raw, &items, "Paris").unwrap();
        assert_eq!(
            (name.as_str(), args.as_str()),
            ("weather", r#"{"city":"Paris"}"#)
        );
        let answered = items_of(&json!([{"role": "user", "content": "Paris"},
            {"type": "function_call_output", "call_id": "c", "output": "sunny"}]));
        assert!(tool_call(&raw, &answered, "Paris").is_none());
        assert!(answered.iter().all(|i| i["id"].is_string()));
    }
}
