//! A streamed Responses answer, judged event by event inside the shared relay
//! ([`crate::routes::stream::run`]: the client gone, the idle upstream, the books, the
//! record). Each piece of model-written text — an `output_text` or `refusal` part, a reasoning
//! text or summary, a function call's arguments — is a scanner lane with chat's hold-back
//! window: its `*.delta` events carry what the guards released (pseudonyms restored, split
//! placeholders whole), and its `*.done` events, the finished item and the final response
//! carry the text as released, so every view the SDKs build agrees. Text still held when a
//! part finishes goes out as one more delta first; a delta whose text is all held back is not
//! sent. Events are renumbered (`sequence_number`) as the relay adds and drops them; a guard's
//! refusal ends the stream with an `error` event.
//!
//! When nothing inspects the answer (no output guards, no pseudonyms) events pass through
//! byte for byte; usage is read from the final event either way, and the response's owner is
//! recorded when `response.created` names it, before the client sees the id.

use super::Owner;
use super::output::{self, Place};
use crate::routes::stream::{Judge, Step, malformed, with_blank_line};
use crate::upstream::sse;
use bytes::Bytes;
use portcullis_core::{ApiError, ChatRequest, Context, Pipeline, StreamScanner, Usage, tokens};
use serde_json::{Value, json};
use std::collections::HashMap;

/// Output items per response the relay accepts.
const MAX_ITEMS: usize = 4096;
/// Content parts (and summary parts) per item the relay accepts.
const MAX_PARTS: usize = 64;
/// Lanes per item: its arguments, its content parts, its summary parts.
const LANES_PER_ITEM: usize = 1 + 2 * MAX_PARTS;

/// The lane of the text at `place` in output item `item`.
fn lane(item: usize, place: Place) -> Result<usize, ApiError> {
    if item >= MAX_ITEMS {
        return Err(malformed("an output index out of range"));
    }
    let slot = match place {
        Place::Arguments => 0,
        Place::Content(i) if i < MAX_PARTS => 1 + i,
        Place::Summary(i) if i < MAX_PARTS => 1 + MAX_PARTS + i,
        _ => return Err(malformed("a content index out of range")),
    };
    Ok(item * LANES_PER_ITEM + slot)
}

/// Which index of an event names the part its text belongs to.
#[derive(Clone, Copy)]
enum Kind {
    Content,
    Summary,
    Arguments,
}

/// The text events: delta type, done type, the done event's text field, the part kind.
#[rustfmt::skip]
const TEXT_EVENTS: [(&str, &str, &str, Kind); 6] = [
    ("response.output_text.delta", "response.output_text.done", "text", Kind::Content),
    ("response.refusal.delta", "response.refusal.done", "refusal", Kind::Content),
    ("response.reasoning_text.delta", "response.reasoning_text.done", "text", Kind::Content),
    ("response.reasoning_summary_text.delta", "response.reasoning_summary_text.done", "text", Kind::Summary),
    ("response.function_call_arguments.delta", "response.function_call_arguments.done", "arguments", Kind::Arguments),
    ("response.custom_tool_call_input.delta", "response.custom_tool_call_input.done", "input", Kind::Arguments),
];

fn index(v: &Value, key: &str) -> usize {
    v[key]
        .as_u64()
        .map_or(usize::MAX, |n| n.min(usize::MAX as u64) as usize)
}

fn place_of(kind: Kind, v: &Value) -> Place {
    match kind {
        Kind::Content => Place::Content(index(v, "content_index")),
        Kind::Summary => Place::Summary(index(v, "summary_index")),
        Kind::Arguments => Place::Arguments,
    }
}

/// The delta event type of a part, from its item's type and the part's own type.
fn delta_type(item_type: &str, place: Place, part_type: &str) -> &'static str {
    match (place, item_type, part_type) {
        (Place::Arguments, "custom_tool_call", _) => "response.custom_tool_call_input.delta",
        (Place::Arguments, _, _) => "response.function_call_arguments.delta",
        (Place::Summary(_), _, _) => "response.reasoning_summary_text.delta",
        (Place::Content(_), _, "refusal") => "response.refusal.delta",
        (Place::Content(_), "reasoning", _) => "response.reasoning_text.delta",
        (Place::Content(_), _, _) => "response.output_text.delta",
    }
}

/// One lane's state.
struct Lane {
    delta_type: &'static str,
    item_id: String,
    item: usize,
    place: Place,
    /// What went to the client, as it went (edited, pseudonyms restored).
    released: String,
    /// Deltas arrived for it.
    seen: bool,
    /// Its last window was judged.
    closed: bool,
}

/// The relay's judge for the Responses API.
pub struct Events<'a> {
    pipeline: &'a Pipeline,
    req: &'a ChatRequest,
    scanner: StreamScanner,
    inspect: bool,
    owner: Option<Owner>,
    lanes: HashMap<usize, Lane>,
    item_ids: HashMap<usize, String>,
    seq: u64,
    usage: Option<Usage>,
    received: u64,
    prompt: u64,
    finished: bool,
    encoding: tokens::Encoding,
    /// The model the upstream's response named.
    served: Option<String>,
    /// Answer text (`output_text` deltas) sent with the event being judged.
    delivered: String,
}

impl<'a> Events<'a> {
    /// A judge for the answer to `req`, recording the response's `owner` when it is created.
    pub fn new(
        pipeline: &'a Pipeline,
        req: &'a ChatRequest,
        ctx: &Context,
        owner: Option<Owner>,
    ) -> Self {
        Events {
            pipeline,
            req,
            scanner: StreamScanner::default(),
            inspect: pipeline.inspects_output() || !ctx.vault.is_empty(),
            owner,
            lanes: HashMap::new(),
            item_ids: HashMap::new(),
            seq: 0,
            usage: None,
            received: 0,
            prompt: tokens::count_prompt(req),
            finished: false,
            encoding: tokens::Encoding::for_model(&req.model),
            served: None,
            delivered: String::new(),
        }
    }

    /// An event out, renumbered, with its `event:` line.
    fn emit(&mut self, mut v: Value) -> Vec<u8> {
        self.note_delivered(&v);
        if let Some(o) = v.as_object_mut() {
            o.insert("sequence_number".into(), Value::from(self.seq));
        }
        self.seq += 1;
        let kind = v["type"].as_str().unwrap_or("message").to_owned();
        format!("event: {kind}\ndata: {v}\n\n").into_bytes()
    }

    /// Keeps the answer text an event going to the client carries, for the output MAC.
    fn note_delivered(&mut self, v: &Value) {
        if v["type"] == "response.output_text.delta"
            && let Some(t) = v["delta"].as_str()
        {
            self.delivered.push_str(t);
        }
    }

    /// A delta event carrying `text` for `lane`.
    fn delta(&mut self, lane: usize, text: &str) -> Vec<u8> {
        let Some(l) = self.lanes.get(&lane) else {
            return Vec::new();
        };
        let mut v = json!({"type": l.delta_type, "item_id": l.item_id,
            "output_index": l.item, "delta": text});
        match l.place {
            Place::Content(i) => v["content_index"] = Value::from(i),
            Place::Summary(i) => v["summary_index"] = Value::from(i),
            Place::Arguments => {}
        }
        if l.delta_type == "response.output_text.delta" {
            v["logprobs"] = json!([]);
        }
        self.emit(v)
    }

    fn open(&mut self, lane: usize, item: usize, place: Place, delta_type: &'static str) {
        let item_id = self.item_ids.get(&item).cloned().unwrap_or_default();
        self.lanes.entry(lane).or_insert(Lane {
            delta_type,
            item_id,
            item,
            place,
            released: String::new(),
            seen: false,
            closed: false,
        });
    }

    /// Finishes a lane: judges what it still holds — or, for text that never streamed, the
    /// whole `upstream` text — and returns the events releasing it and the lane's full text.
    async fn settle(
        &mut self,
        lane: usize,
        upstream: &str,
        ctx: &mut Context,
    ) -> Result<(Vec<u8>, String), ApiError> {
        let Some(l) = self.lanes.get(&lane) else {
            return Ok((Vec::new(), upstream.to_owned()));
        };
        if l.closed {
            return Ok((Vec::new(), l.released.clone()));
        }
        let text = if l.seen {
            String::new()
        } else {
            self.count(upstream);
            upstream.to_owned()
        };
        let out = self
            .scanner
            .push(lane, &text, true, self.pipeline, self.req, ctx)
            .await?;
        let events = if out.is_empty() {
            Vec::new()
        } else {
            self.delta(lane, &out)
        };
        let l = self.lanes.get_mut(&lane).map(|l| {
            l.released.push_str(&out);
            l.closed = true;
            l.released.clone()
        });
        Ok((events, l.unwrap_or_default()))
    }

    /// Settles every text place of output item `item` (index `at`) and writes the texts
    /// released into it; returns the events releasing what was still held.
    async fn settle_item(
        &mut self,
        at: usize,
        item: &mut Value,
        ctx: &mut Context,
    ) -> Result<Vec<u8>, ApiError> {
        let mut out = Vec::new();
        let item_type = item["type"].as_str().unwrap_or("").to_owned();
        if let Some(id) = item["id"].as_str() {
            self.item_ids.entry(at).or_insert_with(|| id.to_owned());
        }
        for (place, text) in output::places(item) {
            let part_type = match place {
                Place::Content(i) => item["content"][i]["type"].as_str().unwrap_or(""),
                _ => "",
            };
            let kind = delta_type(&item_type, place, part_type);
            let lane = lane(at, place)?;
            self.open(lane, at, place, kind);
            let (events, full) = self.settle(lane, &text, ctx).await?;
            out.extend(events);
            output::write(item, place, &full);
        }
        Ok(out)
    }

    fn count(&mut self, text: &str) {
        self.received = self
            .received
            .saturating_add(self.encoding.count(text) as u64);
    }

    async fn judge(&mut self, ev: &Bytes, ctx: &mut Context) -> Result<Step, ApiError> {
        let data = match sse::data_of(ev) {
            Ok(Some(d)) => d,
            Ok(None) => return Ok(Step::Send(with_blank_line(ev))),
            Err(_) => return Err(malformed("an event that is not UTF-8")),
        };
        if data.trim() == "[DONE]" {
            return Ok(Step::Done(with_blank_line(ev)));
        }
        let mut v: Value = serde_json::from_str(&data)
            .map_err(|_| malformed("an event whose data is not JSON"))?;
        if !self.inspect
            && let Some(n) = v["sequence_number"].as_u64()
        {
            self.seq = n.saturating_add(1);
        }
        let kind = v["type"].as_str().unwrap_or("").to_owned();
        if kind == "error" || (kind.is_empty() && v.get("error").is_some_and(Value::is_object)) {
            let message = v["message"]
                .as_str()
                .or_else(|| v["error"]["message"].as_str())
                .unwrap_or("stream failed");
            return Err(ApiError::bad_gateway(format!(
                "The upstream model provider failed mid-stream: {}",
                crate::upstream::scrub(message)
            ))
            .with_code("upstream_error"));
        }
        match kind.as_str() {
            "response.created" => {
                self.served = v["response"]["model"].as_str().map(str::to_owned);
                if let (Some(o), Some(id)) = (&self.owner, v["response"]["id"].as_str()) {
                    o.record(id).await;
                }
            }
            "response.output_item.added" => {
                if let Some(id) = v["item"]["id"].as_str() {
                    self.item_ids
                        .insert(index(&v, "output_index"), id.to_owned());
                }
            }
            "response.completed" | "response.incomplete" | "response.failed" => {
                self.finished = true;
                self.usage = output::usage_of(&v["response"]);
            }
            _ => {}
        }
        if let Some(&(delta_kind, _, _, part)) = TEXT_EVENTS.iter().find(|e| e.0 == kind) {
            let Some(delta) = v["delta"].as_str().map(str::to_owned) else {
                return self.pass(ev, v);
            };
            self.count(&delta);
            if !self.inspect {
                self.note_delivered(&v);
                return Ok(Step::Send(with_blank_line(ev)));
            }
            let item = index(&v, "output_index");
            let place = place_of(part, &v);
            let lane = lane(item, place)?;
            if let Some(id) = v["item_id"].as_str() {
                self.item_ids.entry(item).or_insert_with(|| id.to_owned());
            }
            self.open(lane, item, place, delta_kind);
            let out = self
                .scanner
                .push(lane, &delta, false, self.pipeline, self.req, ctx)
                .await?;
            if let Some(l) = self.lanes.get_mut(&lane) {
                l.seen = true;
                l.released.push_str(&out);
            }
            if out.is_empty() {
                // All of it held back for now: the events are renumbered, so none is missed.
                return Ok(Step::Skip);
            }
            v["delta"] = Value::String(out);
            return Ok(Step::Send(Bytes::from(self.emit(v))));
        }
        if !self.inspect {
            return self.pass(ev, v);
        }
        let mut out = Vec::new();
        if let Some(&(delta_kind, _, field, part)) = TEXT_EVENTS.iter().find(|e| e.1 == kind) {
            let item = index(&v, "output_index");
            let place = place_of(part, &v);
            let lane = lane(item, place)?;
            self.open(lane, item, place, delta_kind);
            let upstream = v[field].as_str().unwrap_or("").to_owned();
            let (events, full) = self.settle(lane, &upstream, ctx).await?;
            out.extend(events);
            v[field] = Value::String(full);
        }
        match kind.as_str() {
            "response.content_part.done" | "response.reasoning_summary_part.done" => {
                let item = index(&v, "output_index");
                let (place, part_type) = if kind == "response.content_part.done" {
                    (place_of(Kind::Content, &v), v["part"]["type"].as_str())
                } else {
                    (place_of(Kind::Summary, &v), Some("summary_text"))
                };
                let field = ["text", "refusal"]
                    .into_iter()
                    .find(|f| v["part"][*f].is_string());
                if let Some(field) = field {
                    let lane = lane(item, place)?;
                    let item_type = if part_type == Some("reasoning_text") {
                        "reasoning"
                    } else {
                        ""
                    };
                    let dk = delta_type(item_type, place, part_type.unwrap_or(""));
                    self.open(lane, item, place, dk);
                    let upstream = v["part"][field].as_str().unwrap_or("").to_owned();
                    let (events, full) = self.settle(lane, &upstream, ctx).await?;
                    out.extend(events);
                    v["part"][field] = Value::String(full);
                }
            }
            "response.output_item.done" => {
                let at = index(&v, "output_index");
                out.extend(self.settle_item(at, &mut v["item"], ctx).await?);
            }
            "response.completed" | "response.incomplete" | "response.failed" => {
                let n = v["response"]["output"].as_array().map_or(0, Vec::len);
                for at in 0..n {
                    let mut item = v["response"]["output"][at].take();
                    out.extend(self.settle_item(at, &mut item, ctx).await?);
                    v["response"]["output"][at] = item;
                }
                // Lanes the final response does not list still release what they hold.
                for lane in self.scanner.pending_lanes() {
                    let (events, _) = self.settle(lane, "", ctx).await?;
                    out.extend(events);
                }
                out.extend(self.emit(v));
                return Ok(Step::Done(Bytes::from(out)));
            }
            _ => {}
        }
        out.extend(self.emit(v));
        Ok(Step::Send(Bytes::from(out)))
    }

    /// Forwards an event as it came (untouched) when nothing was added before it, else
    /// renumbered.
    fn pass(&mut self, ev: &Bytes, v: Value) -> Result<Step, ApiError> {
        let done = self.finished
            && matches!(
                v["type"].as_str(),
                Some("response.completed" | "response.incomplete" | "response.failed")
            );
        let out = if self.inspect {
            Bytes::from(self.emit(v))
        } else {
            self.note_delivered(&v);
            with_blank_line(ev)
        };
        Ok(if done {
            Step::Done(out)
        } else {
            Step::Send(out)
        })
    }
}

impl Judge for Events<'_> {
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
        Usage {
            prompt_tokens: self.prompt,
            completion_tokens: self.received,
            total_tokens: self.prompt.saturating_add(self.received),
            cached_tokens: 0,
        }
    }

    /// The Responses stream's `error` event (`type`, `code`, `message`, `param`,
    /// `sequence_number`), with the chat-style `error` object beside them, which both
    /// official SDKs raise as an `APIError`.
    fn error_event(&mut self, e: &ApiError) -> Bytes {
        let v = json!({"type": "error", "code": e.code, "message": e.message,
            "param": e.param, "error": e.body()["error"]});
        Bytes::from(self.emit(v))
    }

    fn served_model(&self) -> Option<&str> {
        self.served.as_deref()
    }

    fn take_delivered(&mut self) -> String {
        std::mem::take(&mut self.delivered)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lanes_of_items_and_parts_never_collide_and_are_bounded() {
        let mut seen = std::collections::HashSet::new();
        for item in 0..3 {
            assert!(seen.insert(lane(item, Place::Arguments).unwrap()));
            for i in 0..MAX_PARTS {
                assert!(seen.insert(lane(item, Place::Content(i)).unwrap()));
                assert!(seen.insert(lane(item, Place::Summary(i)).unwrap()));
            }
        }
        assert!(lane(MAX_ITEMS, Place::Arguments).is_err());
        assert!(lane(0, Place::Content(MAX_PARTS)).is_err());
        assert!(lane(0, Place::Summary(usize::MAX)).is_err());
    }

    #[test]
    fn parts_stream_as_their_own_delta_events() {
        let t = |item, place, part| delta_type(item, place, part);
        assert_eq!(
            t("message", Place::Content(0), "output_text"),
            "response.output_text.delta"
        );
        assert_eq!(
            t("message", Place::Content(1), "refusal"),
            "response.refusal.delta"
        );
        assert_eq!(
            t("function_call", Place::Arguments, ""),
            "response.function_call_arguments.delta"
        );
        assert_eq!(
            t("reasoning", Place::Summary(0), "summary_text"),
            "response.reasoning_summary_text.delta"
        );
    }
}
