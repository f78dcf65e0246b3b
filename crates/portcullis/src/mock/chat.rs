//! The mock's chat completions, whole and streamed. When the request offers tools (and the
//! conversation does not end with a tool result), the mock calls one — the tool named by
//! `tool_choice`, else the first — with arguments built from its parameter schema, so a
//! tool-calling client can be tried against `--mock-upstream`.
//!
//! Faults for the gateway's tests, chosen by the model name: `mock-stall-<ms>` (a stream that
//! stops after its first piece for that long), `mock-cut-<n>` (a stream that ends after `n`
//! events, with no usage and no `[DONE]`), `mock-reset-<n>` (the connection breaks after `n`
//! events), `mock-garbage` (an event whose data is not JSON), `mock-bigindex` (a choice index
//! of 2^40), `mock-nousage` (ignores `stream_options.include_usage`), `mock-cr` (events
//! separated by CR alone). A request with `response_format: json_schema` is answered with
//! JSON that matches the schema; `mock-badjson-<n>` makes the first `n` attempts (counted by
//! the assistant turns a re-ask adds) JSON of the wrong shape — `mock-badjson-1` is invalid
//! then valid, `mock-badjson-99` always invalid.

use super::{Seen, answer, error, knob, last_user_text};
use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use portcullis_core::{ChatRequest, Role, tokens};
use serde_json::{Map, Value, json};
use std::sync::Arc;
use std::time::Duration;

const ID: &str = "chatcmpl-mock";
const CREATED: u64 = 1_700_000_000;

/// The tool call the mock makes: (name, arguments as JSON text).
fn tool_call(req: &ChatRequest) -> Option<(String, String)> {
    let tools = req.tools.as_ref().filter(|t| !t.is_empty())?;
    if req.tool_choice.as_ref().and_then(Value::as_str) == Some("none") {
        return None;
    }
    if req.messages.last().is_some_and(|m| m.role == Role::Tool) {
        return None;
    }
    let chosen = req
        .tool_choice
        .as_ref()
        .and_then(|c| c["function"]["name"].as_str());
    let tool = tools
        .iter()
        .find(|t| chosen.is_none_or(|n| t["function"]["name"].as_str() == Some(n)))?;
    let name = tool["function"]["name"].as_str()?.to_owned();
    let args = arguments(&tool["function"]["parameters"], &last_user_text(req));
    Some((name, args.to_string()))
}

/// Arguments that satisfy a JSON schema's required properties, deterministically.
pub(super) fn arguments(schema: &Value, text: &str) -> Value {
    let mut out = Map::new();
    let props = schema["properties"].as_object();
    let required: Vec<&str> = match schema["required"].as_array() {
        Some(r) => r.iter().filter_map(Value::as_str).collect(),
        None => props
            .map(|p| p.keys().map(String::as_str).collect())
            .unwrap_or_default(),
    };
    for name in required {
        let p = props
            .and_then(|p| p.get(name))
            .cloned()
            .unwrap_or(Value::Null);
        let value = if let Some(first) = p["enum"].as_array().and_then(|e| e.first()) {
            first.clone()
        } else {
            match p["type"].as_str() {
                Some("integer" | "number") => json!(1),
                Some("boolean") => json!(true),
                Some("array") => json!([]),
                Some("object") => arguments(&p, text),
                _ => Value::String(if text.is_empty() {
                    "example".into()
                } else {
                    text.into()
                }),
            }
        };
        out.insert(name.to_owned(), value);
    }
    Value::Object(out)
}

/// The answer to a request asking for `response_format: json_schema`: JSON that matches the
/// schema, or — while the conversation has fewer assistant turns than `mock-badjson-<n>` asks
/// (each re-ask adds one) — JSON of the wrong shape. `None` without a schema or with `MOCK_SAY:`.
fn json_answer(req: &ChatRequest) -> Option<String> {
    let rf = req.response_format.as_ref()?;
    if rf["type"].as_str() != Some("json_schema") || last_user_text(req).contains("MOCK_SAY:") {
        return None;
    }
    let schema = &rf["json_schema"]["schema"];
    let attempt = req
        .messages
        .iter()
        .filter(|m| m.role == Role::Assistant)
        .count() as u64;
    if knob(&req.model, "mock-badjson-").is_some_and(|bad| attempt < bad) {
        return Some(wrong_shape(schema));
    }
    Some(arguments(schema, &last_user_text(req)).to_string())
}

/// JSON that breaks `schema`: each required property with a value of the wrong type, or text
/// that is not JSON at all when nothing is required.
fn wrong_shape(schema: &Value) -> String {
    let Some(required) = schema["required"].as_array().filter(|r| !r.is_empty()) else {
        return "Sure! Here is your JSON: {".into();
    };
    let mut out = Map::new();
    for name in required.iter().filter_map(Value::as_str) {
        let wrong = match schema["properties"][name]["type"].as_str() {
            Some("string") => json!(42),
            Some("array") => json!({}),
            Some("object") => json!([]),
            _ => json!("not the right type"),
        };
        out.insert(name.to_owned(), wrong);
    }
    Value::Object(out).to_string()
}

pub async fn chat(State(seen): State<Arc<Seen>>, headers: HeaderMap, body: Bytes) -> Response {
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
    let call = tool_call(&req);
    let text = if call.is_some() {
        String::new()
    } else {
        json_answer(&req).unwrap_or_else(|| answer(&req))
    };
    let prompt_tokens = tokens::count_prompt(&req);
    let enc = tokens::Encoding::for_model(&req.model);
    let per_choice = enc.count(&text) as u64
        + call
            .as_ref()
            .map_or(0, |(n, a)| enc.count(n) as u64 + enc.count(a) as u64);
    let n = req.n.unwrap_or(1).clamp(1, 8);
    let usage = json!({
        "prompt_tokens": prompt_tokens,
        "completion_tokens": per_choice * n,
        "total_tokens": prompt_tokens + per_choice * n,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0}
    });
    if !req.is_stream() {
        let message = match &call {
            Some((name, args)) => json!({"role": "assistant", "content": null, "refusal": null,
                "tool_calls": [{"id": "call_mock_0", "type": "function",
                                "function": {"name": name, "arguments": args}}]}),
            None => json!({"role": "assistant", "content": text, "refusal": null}),
        };
        let finish = if call.is_some() { "tool_calls" } else { "stop" };
        let choices: Vec<Value> = (0..n)
            .map(|i| {
                json!({"index": i, "message": message, "logprobs": null, "finish_reason": finish})
            })
            .collect();
        return Json(json!({
            "id": ID, "object": "chat.completion", "created": CREATED, "model": req.model,
            "choices": choices, "usage": usage, "system_fingerprint": "fp_mock"
        }))
        .into_response();
    }
    let events = stream_events(&req, &text, call.as_ref(), n, usage);
    let stream = relay(events, &req.model);
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| error(500, "could not build the stream"))
}

/// The events of a streamed answer, faults included.
fn stream_events(
    req: &ChatRequest,
    text: &str,
    call: Option<&(String, String)>,
    n: u64,
    usage: Value,
) -> Vec<Bytes> {
    let model = req.model.clone();
    let sep = if model.contains("mock-cr") {
        "\r\r"
    } else {
        "\n\n"
    };
    let chunk = |choices: Value, usage: Value| {
        let v = json!({"id": ID, "object": "chat.completion.chunk", "created": CREATED,
                       "model": model, "system_fingerprint": "fp_mock",
                       "choices": choices, "usage": usage});
        Bytes::from(format!("data: {v}{sep}"))
    };
    let include_usage = !req.model.contains("mock-nousage")
        && req
            .stream_options
            .as_ref()
            .and_then(|o| o.include_usage)
            .unwrap_or(false);
    let mut events = Vec::new();
    for i in 0..n {
        events.push(chunk(
            json!([{"index": i, "delta": {"role": "assistant", "content": ""}, "logprobs": null, "finish_reason": null}]),
            Value::Null,
        ));
    }
    if req.model.contains("mock-garbage") {
        events.push(Bytes::from(format!("data: {{not json{sep}")));
    }
    if req.model.contains("mock-bigindex") {
        events.push(chunk(
            json!([{"index": 1u64 << 40, "delta": {"content": "x"}, "finish_reason": null}]),
            Value::Null,
        ));
    }
    // Words with their trailing space (or `n`-character pieces), so the pieces concatenate
    // to the answer; a tool call's arguments in pieces of 8 characters.
    let split = |s: &str, size: Option<u64>| -> Vec<String> {
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
    };
    let finish = match call {
        Some((name, args)) => {
            for i in 0..n {
                events.push(chunk(
                    json!([{"index": i, "delta": {"tool_calls": [{"index": 0, "id": "call_mock_0",
                        "type": "function", "function": {"name": name, "arguments": ""}}]},
                        "finish_reason": null}]),
                    Value::Null,
                ));
            }
            for p in split(args, Some(knob(&req.model, "mock-chars-").unwrap_or(8))) {
                for i in 0..n {
                    events.push(chunk(
                        json!([{"index": i, "delta": {"tool_calls": [{"index": 0,
                            "function": {"arguments": p}}]}, "finish_reason": null}]),
                        Value::Null,
                    ));
                }
            }
            "tool_calls"
        }
        None => {
            for p in split(text, knob(&req.model, "mock-chars-")) {
                for i in 0..n {
                    events.push(chunk(
                        json!([{"index": i, "delta": {"content": p}, "logprobs": null, "finish_reason": null}]),
                        Value::Null,
                    ));
                }
            }
            "stop"
        }
    };
    for i in 0..n {
        events.push(chunk(
            json!([{"index": i, "delta": {}, "logprobs": null, "finish_reason": finish}]),
            Value::Null,
        ));
    }
    if include_usage {
        events.push(chunk(json!([]), usage));
    }
    events.push(Bytes::from(format!("data: [DONE]{sep}")));
    if let Some(k) = knob(&req.model, "mock-cut-") {
        events.truncate(k as usize);
    }
    events
}

/// Sends `events` with the timing faults the model name asks for.
pub(super) fn relay(
    events: Vec<Bytes>,
    model: &str,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + use<> {
    let drip = knob(model, "mock-drip-").map(Duration::from_millis);
    let stall = knob(model, "mock-stall-").map(Duration::from_millis);
    let reset = knob(model, "mock-reset-");
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(16);
    tokio::spawn(async move {
        for (i, e) in events.into_iter().enumerate() {
            if reset == Some(i as u64) {
                let _ = tx
                    .send(Err(std::io::Error::other("the mock was asked to reset")))
                    .await;
                return;
            }
            if let Some(d) = drip {
                tokio::time::sleep(d).await;
            }
            if i == 2
                && let Some(s) = stall
            {
                tokio::time::sleep(s).await;
            }
            if tx.send(Ok(e)).await.is_err() {
                return;
            }
        }
    });
    futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(v: Value) -> ChatRequest {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn offered_tools_are_called_with_schema_shaped_arguments() {
        let tools = json!([{"type": "function", "function": {"name": "get_weather",
            "parameters": {"type": "object", "properties": {
                "city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]},
                "days": {"type": "integer"}}, "required": ["city", "unit"]}}}]);
        let r = req(json!({"model": "m", "tools": tools,
            "messages": [{"role": "user", "content": "Paris"}]}));
        let (name, args) = tool_call(&r).unwrap();
        assert_eq!(name, "get_weather");
        let args: Value = serde_json::from_str(&args).unwrap();
        assert_eq!(args, json!({"city": "Paris", "unit": "c"}));
        // After the tool answered, the mock answers in words.
        let done = req(json!({"model": "m", "tools": tools, "messages": [
            {"role": "user", "content": "Paris"},
            {"role": "assistant", "tool_calls": [{"id": "c", "type": "function",
                "function": {"name": "get_weather", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c", "content": "sunny"}]}));
        assert!(tool_call(&done).is_none());
        let none = req(json!({"model": "m", "tools": tools, "tool_choice": "none",
            "messages": [{"role": "user", "content": "x"}]}));
        assert!(tool_call(&none).is_none());
    }

    #[test]
    fn json_schema_requests_get_matching_json_or_the_wrong_shape_first() {
        let schema = json!({"type": "object", "properties": {"name": {"type": "string"},
            "age": {"type": "integer"}}, "required": ["name", "age"]});
        let rf = json!({"type": "json_schema", "json_schema": {"name": "p", "schema": schema}});
        let first = req(json!({"model": "mock-badjson-1", "response_format": rf,
            "messages": [{"role": "user", "content": "Ann"}]}));
        let bad: Value = serde_json::from_str(&json_answer(&first).unwrap()).unwrap();
        assert_eq!(bad, json!({"name": 42, "age": "not the right type"}));
        let again = req(json!({"model": "mock-badjson-1", "response_format": rf,
            "messages": [{"role": "user", "content": "Ann"},
                {"role": "assistant", "content": "{}"}, {"role": "user", "content": "fix it"}]}));
        let good: Value = serde_json::from_str(&json_answer(&again).unwrap()).unwrap();
        assert_eq!(good, json!({"name": "fix it", "age": 1}));
        let plain = req(json!({"model": "m", "messages": [{"role": "user", "content": "x"}]}));
        assert!(json_answer(&plain).is_none());
    }

    #[test]
    fn faults_shape_the_stream() {
        let r = req(json!({"model": "mock-cut-3", "stream": true,
            "messages": [{"role": "user", "content": "one two three four"}]}));
        let evs = stream_events(&r, "Echo: one two", None, 1, Value::Null);
        assert_eq!(evs.len(), 3);
        let r = req(json!({"model": "mock-cr", "stream": true,
            "messages": [{"role": "user", "content": "x"}]}));
        let evs = stream_events(&r, "Echo: x", None, 1, Value::Null);
        assert!(evs.iter().all(|e| e.ends_with(b"\r\r")));
    }
}
