//! A streamed chat answer, relayed event by event: output guards judge windows of text as it
//! arrives — each choice's content and each streamed tool call's arguments alike —
//! pseudonyms are restored, usage is read for the books, and the stream ends with an
//! OpenAI-style error event when a guard refuses or the upstream misbehaves.
//!
//! The relay notices a client that goes away at once (not on its next send) and cancels the
//! upstream; a stream that ends early for any reason books the prompt tokens counted by the
//! tokenizer plus the output tokens actually received, marked as estimated.

use crate::books::Spend;
use crate::lifecycle::{Ending, Exchange};
use crate::upstream::sse::{self, EventSplitter};
use axum::body::Body;
use axum::http::{HeaderValue, header};
use axum::response::Response;
use bytes::Bytes;
use futures_util::StreamExt;
use portcullis_core::{ApiError, ChatRequest, Context, Pipeline, StreamScanner, Usage, tokens};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// Choices per stream the relay accepts (a request may ask for at most this many).
const MAX_CHOICE: u64 = crate::routes::chat::MAX_CHOICES;
/// Tool calls per choice the relay accepts.
const MAX_TOOL_CALL: u64 = 128;
/// Lanes per choice: its content, then one per tool call.
const LANES_PER_CHOICE: usize = MAX_TOOL_CALL as usize + 1;

/// The lane of a choice's content.
fn content_lane(choice: usize) -> usize {
    choice * LANES_PER_CHOICE
}

/// The lane of a choice's `index`-th tool call's arguments.
fn tool_lane(choice: usize, call: usize) -> usize {
    choice * LANES_PER_CHOICE + 1 + call
}

/// What the relay keeps between events.
struct Relay<'a> {
    pipeline: &'a Pipeline,
    req: &'a ChatRequest,
    scanner: StreamScanner,
    inspect: bool,
    client_wants_usage: bool,
    usage: Option<Usage>,
    /// Output tokens received so far, counted with the model's tokenizer.
    received: u64,
    /// Some choice said why it finished: the answer is complete even without `[DONE]`.
    finished: bool,
    encoding: tokens::Encoding,
    /// The model the upstream's chunks named.
    served: Option<String>,
    /// Content sent with the event being judged, for the audit record's output MAC.
    delivered: String,
}

/// Relays the answer; sends the streaming response through `tx` at once, then runs the
/// stream to its end and finishes the exchange.
pub async fn relay(
    ex: Exchange,
    req: ChatRequest,
    resp: reqwest::Response,
    tx: oneshot::Sender<Response>,
    client_wants_usage: bool,
) {
    let app = ex.app().clone();
    let relay = Relay {
        pipeline: &app.pipeline,
        req: &req,
        scanner: StreamScanner::default(),
        inspect: app.pipeline.inspects_output() || !ex.ctx.vault.is_empty(),
        client_wants_usage,
        usage: None,
        received: 0,
        finished: false,
        encoding: tokens::Encoding::for_model(&req.model),
        served: None,
        delivered: String::new(),
    };
    run(ex, relay, resp, tx).await;
}

/// What the relay asks of the API a stream speaks (chat completions, Responses): how to
/// judge one upstream event, whether the answer is complete, what it cost, and how to end a
/// stream with an error. The rest — the client gone, the idle upstream, malformed framing,
/// the books and the audit record — is [`run`]'s, the same for every API.
pub(crate) trait Judge {
    /// Judges one upstream event (without its blank line).
    fn event(
        &mut self,
        ev: &Bytes,
        ctx: &mut Context,
    ) -> impl std::future::Future<Output = Result<Step, ApiError>> + Send;
    /// Whether the upstream said the answer is complete (a choice finished, a final event).
    fn finished(&self) -> bool;
    /// The usage the provider reported, once it has.
    fn usage(&self) -> Option<Usage>;
    /// The gateway's count of what the stream cost so far.
    fn estimate(&self) -> Usage;
    /// The event that ends the stream with `e`, as this API's SDKs raise it.
    fn error_event(&mut self, e: &ApiError) -> Bytes;
    /// The model the upstream's events named, once one has.
    fn served_model(&self) -> Option<&str>;
    /// The answer text the last judged event carries to the client (taken: the next call
    /// gives the next event's).
    fn take_delivered(&mut self) -> String;
}

/// Sends the streaming response through `tx` at once, then relays the upstream's events
/// through `judge` to the end and finishes the exchange.
pub(crate) async fn run<J: Judge>(
    mut ex: Exchange,
    mut judge: J,
    resp: reqwest::Response,
    tx: oneshot::Sender<Response>,
) {
    let app = ex.app().clone();
    let (body_tx, body_rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(32);
    let stream = futures_util::stream::unfold(body_rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let mut r = Response::new(Body::from_stream(stream));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    let r = crate::http::WithHeaders::with_headers(r, ex.rate_headers());
    let started = Instant::now();
    if tx.send(r).is_err() {
        ex.spent(Spend::Estimated(judge.estimate()));
        return ex.finish(Ending::ClientClosed);
    }
    let idle = Duration::from_secs(app.config.upstream.stream_idle_timeout_s.max(1));
    let mut upstream = resp.bytes_stream();
    let mut splitter = EventSplitter::default();
    let mut first = true;
    let mut ended_cleanly = false;
    let outcome: Result<(), Stop> = 'read: loop {
        let chunk = tokio::select! {
            biased;
            () = body_tx.closed() => break 'read Err(Stop::ClientGone),
            next = tokio::time::timeout(idle, upstream.next()) => match next {
                Err(_) => break 'read Err(Stop::Failed(ApiError::gateway_timeout(format!(
                    "The upstream stream sent nothing for {} s.", idle.as_secs()
                )))),
                Ok(None) => break 'read Ok(()),
                Ok(Some(Err(e))) => break 'read Err(Stop::Failed(crate::upstream::transport_error(&e))),
                Ok(Some(Ok(c))) => c,
            },
        };
        if first {
            ex.trail.upstream_ms = Some(started.elapsed().as_millis() as u64);
            first = false;
        }
        let events = match splitter.push(&chunk) {
            Ok(evs) => evs,
            Err(e) => break 'read Err(Stop::Failed(malformed(&e.to_string()))),
        };
        for ev in events {
            let step = judge.event(&ev, &mut ex.ctx).await;
            ex.trail.served(judge.served_model());
            let delivered = judge.take_delivered();
            match step {
                Ok(Step::Send(out)) => {
                    if body_tx.send(Ok(out)).await.is_err() {
                        break 'read Err(Stop::ClientGone);
                    }
                    ex.trail.output_text(&delivered);
                }
                Ok(Step::Skip) => {}
                Ok(Step::Done(out)) => {
                    ended_cleanly = true;
                    if body_tx.send(Ok(out)).await.is_err() {
                        break 'read Err(Stop::ClientGone);
                    }
                    ex.trail.output_text(&delivered);
                }
                Err(e) => break 'read Err(Stop::Failed(e)),
            }
        }
    };
    // The upstream is dropped here: a stream cut short stops the provider generating.
    drop(upstream);
    let outcome = match outcome {
        Ok(()) if !ended_cleanly => match splitter.finish() {
            // A last event without its blank line is judged like any other.
            Some(rest) => match judge.event(&rest, &mut ex.ctx).await {
                Ok(Step::Send(out) | Step::Done(out)) => {
                    if body_tx.send(Ok(out)).await.is_ok() {
                        ex.trail.served(judge.served_model());
                        ex.trail.output_text(&judge.take_delivered());
                    }
                    Ok(())
                }
                Ok(Step::Skip) => Ok(()),
                Err(e) => Err(Stop::Failed(e)),
            },
            None => Ok(()),
        },
        other => other,
    };
    // A stream that stops before the answer was complete and without its end was cut short.
    let outcome = match outcome {
        Ok(()) if !ended_cleanly && !judge.finished() => Err(Stop::Failed(
            ApiError::bad_gateway("The upstream stream ended before the answer was complete.")
                .with_code("upstream_truncated"),
        )),
        other => other,
    };
    ex.spent(match (judge.usage(), &outcome) {
        (Some(u), Ok(())) => Spend::Reported(u),
        _ => Spend::Estimated(judge.estimate()),
    });
    match outcome {
        Ok(()) => ex.finish(Ending::Answered(200)),
        Err(Stop::ClientGone) => ex.finish(Ending::ClientClosed),
        Err(Stop::Failed(e)) => {
            // End the stream with an error event the SDKs raise as an APIError.
            let _ = body_tx.send(Ok(judge.error_event(&e))).await;
            ex.finish(Ending::Failed(e));
        }
    }
}

/// Why a stream stopped early.
enum Stop {
    ClientGone,
    Failed(ApiError),
}

/// What to do with one upstream event.
pub(crate) enum Step {
    /// Forward these bytes.
    Send(Bytes),
    /// Forward nothing.
    Skip,
    /// The stream's last event (chat's `[DONE]`, with whatever the guards still held): the
    /// stream is complete.
    Done(Bytes),
}

/// The error for an upstream stream that breaks its own framing.
pub(crate) fn malformed(what: &str) -> ApiError {
    ApiError::bad_gateway(format!("The upstream stream is malformed: {what}."))
        .with_code("upstream_malformed_stream")
}

impl Judge for Relay<'_> {
    async fn event(&mut self, ev: &Bytes, ctx: &mut Context) -> Result<Step, ApiError> {
        self.judge(ev, ctx).await
    }

    fn finished(&self) -> bool {
        self.finished
    }

    fn usage(&self) -> Option<Usage> {
        self.usage
    }

    fn estimate(&self) -> Usage {
        let prompt = tokens::count_prompt(self.req);
        Usage {
            prompt_tokens: prompt,
            completion_tokens: self.received,
            total_tokens: prompt.saturating_add(self.received),
            cached_tokens: 0,
        }
    }

    fn error_event(&mut self, e: &ApiError) -> Bytes {
        sse::event(&e.body().to_string())
    }

    fn served_model(&self) -> Option<&str> {
        self.served.as_deref()
    }

    fn take_delivered(&mut self) -> String {
        std::mem::take(&mut self.delivered)
    }
}

impl Relay<'_> {
    fn count(&mut self, text: &str) {
        self.received = self
            .received
            .saturating_add(self.encoding.count(text) as u64);
    }

    /// Judges one event.
    async fn judge(&mut self, ev: &Bytes, ctx: &mut Context) -> Result<Step, ApiError> {
        let data = match sse::data_of(ev) {
            Ok(Some(d)) => d,
            // Comments, `event:`/`id:`/`retry:` lines: forwarded as they came.
            Ok(None) => return Ok(Step::Send(with_blank_line(ev))),
            Err(_) => return Err(malformed("an event that is not UTF-8")),
        };
        if data.trim() == "[DONE]" {
            let mut out = self.flush(ctx).await?;
            out.extend_from_slice(&sse::event("[DONE]"));
            return Ok(Step::Done(Bytes::from(out)));
        }
        let mut v: Value = serde_json::from_str(&data)
            .map_err(|_| malformed("an event whose data is not JSON"))?;
        if self.served.is_none() {
            self.served = v["model"].as_str().map(str::to_owned);
        }
        if v.get("error").is_some_and(|e| !e.is_null()) {
            // The provider ended the stream with an error event: pass it on, scrubbed.
            let message = v["error"]["message"].as_str().unwrap_or("stream failed");
            return Err(ApiError::bad_gateway(format!(
                "The upstream model provider failed mid-stream: {}",
                crate::upstream::scrub(message)
            ))
            .with_code("upstream_error"));
        }
        if let Some(u) = Usage::from_json(&v) {
            self.usage = Some(u);
            let no_choices = v["choices"].as_array().is_none_or(Vec::is_empty);
            if !self.client_wants_usage {
                if no_choices {
                    return Ok(Step::Skip);
                }
                if let Some(o) = v.as_object_mut() {
                    o.remove("usage");
                }
            }
        }
        let Some(choices) = v.get_mut("choices").and_then(Value::as_array_mut) else {
            return Ok(Step::Send(sse::event(&v.to_string())));
        };
        for c in choices.iter_mut() {
            let index = c["index"].as_u64().unwrap_or(0);
            if index >= MAX_CHOICE {
                return Err(malformed("a choice index out of range"));
            }
            let choice = index as usize;
            let last = !c["finish_reason"].is_null();
            self.finished |= last;
            if let Some(text) = c["delta"]["content"].as_str().map(str::to_owned) {
                self.count(&text);
                if self.inspect {
                    let out = self.push(content_lane(choice), &text, last, ctx).await?;
                    c["delta"]["content"] = Value::String(out);
                }
            } else if last && self.inspect {
                let out = self.push(content_lane(choice), "", true, ctx).await?;
                if !out.is_empty() {
                    c["delta"]["content"] = Value::String(out);
                }
            }
            let calls = c
                .get_mut("delta")
                .and_then(|d| d.get_mut("tool_calls"))
                .and_then(Value::as_array_mut);
            if let Some(calls) = calls {
                for call in calls.iter_mut() {
                    let i = call["index"].as_u64().unwrap_or(0);
                    if i >= MAX_TOOL_CALL {
                        return Err(malformed("a tool call index out of range"));
                    }
                    let Some(args) = call["function"]["arguments"].as_str().map(str::to_owned)
                    else {
                        continue;
                    };
                    self.count(&args);
                    if self.inspect {
                        let lane = tool_lane(choice, i as usize);
                        let out = self.push(lane, &args, false, ctx).await?;
                        call["function"]["arguments"] = Value::String(out);
                    }
                }
            }
            if last && self.inspect {
                // The choice is complete: release what its tool calls still hold.
                let mut extra = Vec::new();
                for lane in self.scanner.pending_lanes() {
                    if lane / LANES_PER_CHOICE == choice && lane % LANES_PER_CHOICE != 0 {
                        let out = self.push(lane, "", true, ctx).await?;
                        extra.push(json!({"index": lane % LANES_PER_CHOICE - 1,
                            "function": {"arguments": out}}));
                    }
                }
                if !extra.is_empty() {
                    let calls = c["delta"]
                        .as_object_mut()
                        .map(|d| d.entry("tool_calls").or_insert_with(|| json!([])));
                    if let Some(Value::Array(a)) = calls {
                        a.extend(extra);
                    }
                }
            }
            if let Some(sent) = c["delta"]["content"].as_str() {
                self.delivered.push_str(sent);
            }
        }
        Ok(Step::Send(sse::event(&v.to_string())))
    }

    async fn push(
        &mut self,
        lane: usize,
        text: &str,
        last: bool,
        ctx: &mut Context,
    ) -> Result<String, ApiError> {
        self.scanner
            .push(lane, text, last, self.pipeline, self.req, ctx)
            .await
    }

    /// What the guards still hold when the stream completes, as one last chunk per lane.
    async fn flush(&mut self, ctx: &mut Context) -> Result<Vec<u8>, ApiError> {
        let mut out = Vec::new();
        for lane in self.scanner.pending_lanes() {
            let text = self.push(lane, "", true, ctx).await?;
            if text.is_empty() {
                continue;
            }
            let choice = lane / LANES_PER_CHOICE;
            let delta = if lane % LANES_PER_CHOICE == 0 {
                self.delivered.push_str(&text);
                json!({"content": text})
            } else {
                json!({"tool_calls": [{"index": lane % LANES_PER_CHOICE - 1,
                    "function": {"arguments": text}}]})
            };
            let v = json!({"object": "chat.completion.chunk", "model": self.req.model,
                "choices": [{"index": choice, "delta": delta, "finish_reason": null}]});
            out.extend_from_slice(&sse::event(&v.to_string()));
        }
        Ok(out)
    }
}

/// An event forwarded as it came, with its blank line back.
pub(crate) fn with_blank_line(ev: &Bytes) -> Bytes {
    let mut raw = ev.to_vec();
    raw.extend_from_slice(b"\n\n");
    Bytes::from(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lanes_of_choices_and_tool_calls_never_collide() {
        let mut seen = std::collections::HashSet::new();
        for choice in 0..4 {
            assert!(seen.insert(content_lane(choice)));
            for call in 0..MAX_TOOL_CALL as usize {
                assert!(seen.insert(tool_lane(choice, call)));
            }
        }
        assert_eq!(tool_lane(1, 0) / LANES_PER_CHOICE, 1);
    }
}
