//! A chat answer that must match a JSON Schema ([`crate::structured`]): the answer is read
//! whole, each choice's content parsed and validated; an invalid one is re-asked — the
//! conversation plus the invalid answer and a message listing the errors — up to `retries`
//! times, and the first valid answer goes through the output guards to the client. When the
//! re-asks run out the client gets 502 `invalid_model_output` with the errors, never the
//! invalid JSON. Every call's usage is added up for the books and the audit record.
//!
//! A client that streams gets the same answer as a stream, sent once it is valid: the gateway
//! asks the upstream for a whole answer (no time-to-first-token gain is possible when the
//! answer must be validated before any of it is released).

use crate::books::Spend;
use crate::http::WithHeaders;
use crate::lifecycle::Exchange;
use crate::structured::{Invalid, Schema, exhausted, reask_message};
use crate::upstream::{self, pass_error, sse};
use axum::body::Body;
use axum::http::{HeaderValue, header};
use axum::response::Response;
use bytes::Bytes;
use portcullis_core::{
    ApiError, ChatRequest, Direction, Finding, GuardRecord, Message, Outcome, Role, Usage,
};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::oneshot;

/// How the client asked to receive the answer.
#[derive(Debug, Clone, Copy)]
pub struct Delivery {
    /// The client asked for a stream.
    pub stream: bool,
    /// The client asked for a usage chunk at the end of its stream.
    pub usage: bool,
}

/// What the calls so far consumed.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    usage: Usage,
    /// Some call's usage is the gateway's count.
    estimated: bool,
}

impl Tally {
    fn add(&mut self, u: Usage, estimated: bool) {
        let t = &mut self.usage;
        t.prompt_tokens = t.prompt_tokens.saturating_add(u.prompt_tokens);
        t.completion_tokens = t.completion_tokens.saturating_add(u.completion_tokens);
        t.total_tokens = t.total_tokens.saturating_add(u.total_tokens);
        t.cached_tokens = t.cached_tokens.saturating_add(u.cached_tokens);
        self.estimated |= estimated;
    }

    fn spend(&self) -> Spend {
        if self.estimated {
            Spend::Estimated(self.usage)
        } else {
            Spend::Reported(self.usage)
        }
    }
}

/// Reads, validates and re-asks until an answer matches `schema` or the re-asks run out,
/// then answers the client (`first` is the upstream's successful response to `req`, which
/// was sent without streaming).
pub async fn complete(
    mut ex: Exchange,
    req: ChatRequest,
    first: reqwest::Response,
    schema: Arc<Schema>,
    tx: oneshot::Sender<Response>,
    delivery: Delivery,
) {
    let app = ex.app().clone();
    let started = Instant::now();
    let retries = app.schemas.retries();
    let mut convo = req.clone();
    let mut tally = Tally::default();
    let mut failures: Vec<Invalid> = Vec::new();
    let mut resp = first;
    let mut answer = loop {
        let answer = match read_answer(&app, resp).await {
            Ok(a) => a,
            Err(e) => {
                ex.spent(if failures.is_empty() {
                    Spend::Unknown
                } else {
                    Spend::Estimated(tally.usage)
                });
                return super::chat::deliver(tx, ex.fail(e));
            }
        };
        ex.trail.served(answer["model"].as_str());
        match Usage::from_json(&answer) {
            Some(u) => tally.add(u, false),
            None => tally.add(super::chat::estimate_answer(&convo, &answer), true),
        }
        ex.spent(tally.spend());
        let Err((invalid, content)) = check_choices(&schema, &answer) else {
            break answer;
        };
        failures.push(invalid);
        let calls = failures.len() as u32;
        if calls > retries {
            let last = invalid_last(&failures);
            record(&mut ex, &failures, calls, started, Outcome::Block);
            return super::chat::deliver(tx, ex.fail(exhausted(&schema, calls, &last)));
        }
        convo.messages.push(Message::text(Role::Assistant, content));
        convo.messages.push(Message::text(
            Role::User,
            reask_message(&invalid_last(&failures)),
        ));
        let body = match serde_json::to_vec(&convo) {
            Ok(b) => b,
            Err(e) => return super::chat::deliver(tx, ex.fail(ApiError::internal(e.to_string()))),
        };
        let next = app
            .upstream
            .send(reqwest::Method::POST, "/chat/completions", Some(body))
            .await;
        resp = match next {
            Ok(r) if r.status().is_success() => r,
            Ok(r) => {
                let headers = ex.rate_headers();
                let response = pass_error(r).await.with_headers(headers);
                let code = response.status().as_u16();
                return super::chat::finish_delivery(ex, tx, response, code);
            }
            Err(e) => {
                if Spend::of_failure(&e) == Spend::Unknown {
                    // The re-ask may have run: count its prompt at least.
                    let prompt = portcullis_core::tokens::count_prompt(&convo);
                    tally.add(
                        Usage {
                            prompt_tokens: prompt,
                            total_tokens: prompt,
                            ..Usage::default()
                        },
                        true,
                    );
                    ex.spent(tally.spend());
                }
                return super::chat::deliver(tx, ex.fail(e));
            }
        };
    };
    let calls = failures.len() as u32 + 1;
    let outcome = if failures.is_empty() {
        Outcome::Allow
    } else {
        Outcome::Transform
    };
    record(&mut ex, &failures, calls, started, outcome);
    if calls > 1 {
        // The client pays for every call: its usage says so.
        answer["usage"] = usage_json(&tally.usage);
    }
    if let Err(e) = app
        .pipeline
        .run_output(&req, &mut answer, &mut ex.ctx)
        .await
    {
        return super::chat::deliver(tx, ex.fail(e));
    }
    ex.trail.chat_answer(&answer);
    let r = if delivery.stream {
        as_stream(&answer, delivery.usage)
    } else {
        let mut r = Response::new(Body::from(serde_json::to_vec(&answer).unwrap_or_default()));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        r
    };
    let mut r = r.with_headers(ex.rate_headers());
    r.headers_mut()
        .insert("x-portcullis-schema-attempts", HeaderValue::from(calls));
    super::chat::finish_delivery(ex, tx, r, 200);
}

fn invalid_last(failures: &[Invalid]) -> Invalid {
    failures.last().cloned().unwrap_or(Invalid {
        errors: vec![],
        masked: vec![],
    })
}

/// The body of a whole answer, as JSON.
async fn read_answer(app: &crate::app::App, resp: reqwest::Response) -> Result<Value, ApiError> {
    let body = upstream::read_limited(resp, app.config.upstream.max_answer_bytes).await?;
    serde_json::from_slice(&body).map_err(|_| {
        ApiError::bad_gateway("The upstream answered with something that is not JSON.")
    })
}

/// Checks every choice's content; the first invalid one, with its text, is returned. A choice
/// without content (a tool call, a refusal) has nothing to validate.
fn check_choices(schema: &Schema, answer: &Value) -> Result<(), (Invalid, String)> {
    for c in answer["choices"].as_array().into_iter().flatten() {
        if let Some(text) = c["message"]["content"].as_str() {
            schema.check(text).map_err(|e| (e, text.to_owned()))?;
        }
    }
    Ok(())
}

/// Records the schema check in the audit trace: one finding per invalid answer (errors
/// without the answer's values) and how many upstream calls it took.
fn record(ex: &mut Exchange, failures: &[Invalid], calls: u32, started: Instant, outcome: Outcome) {
    let findings = failures
        .iter()
        .enumerate()
        .map(|(i, f)| {
            Finding::new("schema_invalid", "jsonschema", 1.0).note(format!(
                "attempt {}: {}",
                i + 1,
                f.masked.join("; ")
            ))
        })
        .collect();
    ex.ctx.trace.push(GuardRecord {
        guard: "schema".into(),
        direction: Direction::Output,
        // Schema enforcement is not a pipeline stage and has no rollout: it always enforces.
        mode: portcullis_core::pipeline::Mode::Enforce,
        outcome,
        findings,
        changes: if calls > 1 {
            vec![format!("upstream_calls: 1 -> {calls}")]
        } else {
            Vec::new()
        },
        error: None,
        micros: started.elapsed().as_micros() as u64,
        windows: 0,
    });
}

fn usage_json(u: &Usage) -> Value {
    json!({"prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens,
        "total_tokens": u.total_tokens, "prompt_tokens_details": {"cached_tokens": u.cached_tokens}})
}

/// A whole answer as the chunks of a chat completion stream, ending with `[DONE]`.
pub fn stream_events(answer: &Value, include_usage: bool) -> Vec<Bytes> {
    let base = |choices: Value| {
        json!({"id": answer["id"], "object": "chat.completion.chunk", "created": answer["created"],
            "model": answer["model"], "system_fingerprint": answer["system_fingerprint"],
            "choices": choices})
    };
    let mut out = Vec::new();
    let choices = answer["choices"].as_array().cloned().unwrap_or_default();
    for c in &choices {
        let m = &c["message"];
        let mut delta = json!({"role": "assistant", "content": m["content"]});
        if !m["refusal"].is_null() {
            delta["refusal"] = m["refusal"].clone();
        }
        if let Some(calls) = m["tool_calls"].as_array() {
            let indexed: Vec<Value> = calls
                .iter()
                .enumerate()
                .map(|(i, call)| {
                    let mut call = call.clone();
                    call["index"] = json!(i);
                    call
                })
                .collect();
            delta["tool_calls"] = Value::Array(indexed);
        }
        out.push(base(
            json!([{"index": c["index"], "delta": delta, "logprobs": null,
            "finish_reason": null}]),
        ));
        out.push(base(
            json!([{"index": c["index"], "delta": {}, "logprobs": null,
            "finish_reason": c["finish_reason"]}]),
        ));
    }
    if include_usage && !answer["usage"].is_null() {
        let mut last = base(json!([]));
        last["usage"] = answer["usage"].clone();
        out.push(last);
    }
    let mut events: Vec<Bytes> = out.iter().map(|v| sse::event(&v.to_string())).collect();
    events.push(sse::event("[DONE]"));
    events
}

fn as_stream(answer: &Value, include_usage: bool) -> Response {
    let body: Vec<u8> = stream_events(answer, include_usage).concat();
    let mut r = Response::new(Body::from(body));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_whole_answer_streams_as_chunks_that_add_up_to_it() {
        let answer = json!({"id": "c1", "created": 1, "model": "m", "object": "chat.completion",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "{\"a\":1}"},
                "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}});
        let events = stream_events(&answer, true);
        let datas: Vec<Value> = events
            .iter()
            .filter_map(|e| sse::data_of(e).ok().flatten())
            .filter(|d| d != "[DONE]")
            .map(|d| serde_json::from_str(&d).unwrap())
            .collect();
        let text: String = datas
            .iter()
            .filter_map(|d| d["choices"][0]["delta"]["content"].as_str())
            .collect();
        assert_eq!(text, "{\"a\":1}");
        assert_eq!(datas[1]["choices"][0]["finish_reason"], "stop");
        assert_eq!(datas[2]["usage"]["total_tokens"], 7);
        assert_eq!(
            sse::data_of(events.last().unwrap()).unwrap().unwrap(),
            "[DONE]"
        );
        assert_eq!(
            stream_events(&answer, false).len(),
            3,
            "no usage chunk unasked"
        );
    }

    #[test]
    fn tallies_add_every_call_and_remember_estimates() {
        let mut t = Tally::default();
        let u = Usage {
            prompt_tokens: 10,
            completion_tokens: 5,
            total_tokens: 15,
            cached_tokens: 0,
        };
        t.add(u, false);
        assert_eq!(t.spend(), Spend::Reported(u));
        t.add(u, true);
        let Spend::Estimated(sum) = t.spend() else {
            panic!("an estimated call makes the whole estimated")
        };
        assert_eq!((sum.prompt_tokens, sum.completion_tokens), (20, 10));
    }

    #[test]
    fn choices_without_content_are_not_validated() {
        let s = Schema::compile(json!({"type": "object"}), "t").unwrap();
        let tool = json!({"choices": [{"message": {"content": null, "tool_calls": []}}]});
        assert!(check_choices(&s, &tool).is_ok());
        let bad =
            json!({"choices": [{"message": {"content": "{}"}}, {"message": {"content": "[]"}}]});
        let (_, text) = check_choices(&s, &bad).unwrap_err();
        assert_eq!(text, "[]");
    }
}
