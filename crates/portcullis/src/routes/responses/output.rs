//! The model-written text in a Responses answer: where it lives in each output item, how the
//! output guards judge a whole answer (and restore pseudonyms in it), and what it cost.
//!
//! The output guards speak chat completions, so a whole answer is judged as one: each piece of
//! text becomes a choice — an `output_text` or `refusal` part its content, a function call's
//! arguments its tool-call arguments, as chat's tool calls are judged — and the judged texts
//! go back to their places. The stream relay ([`super::stream`]) uses the same places, one
//! scanner lane each.

use portcullis_core::{ApiError, ChatRequest, Context, Pipeline, Usage, tokens};
use serde_json::{Value, json};

/// Where a piece of model-written text lives in an output item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Place {
    /// `content[i].text` (`output_text`, `reasoning_text`) or `content[i].refusal`.
    Content(usize),
    /// A function call's `arguments`, a custom tool call's `input`.
    Arguments,
    /// A reasoning item's `summary[i].text`.
    Summary(usize),
}

/// The field of an item holding a call's arguments.
fn arguments_field(item: &Value) -> Option<&'static str> {
    match item.get("type").and_then(Value::as_str) {
        Some("function_call") => Some("arguments"),
        Some("custom_tool_call") => Some("input"),
        _ => None,
    }
}

/// The text-bearing field of a content or summary part.
fn part_field(part: &Value) -> Option<&'static str> {
    if part.get("text").is_some_and(Value::is_string) {
        Some("text")
    } else if part.get("refusal").is_some_and(Value::is_string) {
        Some("refusal")
    } else {
        None
    }
}

/// Every piece of model-written text in an output item, with its place.
pub fn places(item: &Value) -> Vec<(Place, String)> {
    let mut out = Vec::new();
    if let Some(f) = arguments_field(item)
        && let Some(t) = item.get(f).and_then(Value::as_str)
    {
        out.push((Place::Arguments, t.to_owned()));
    }
    for (list, place) in [
        ("content", Place::Content as fn(usize) -> Place),
        ("summary", Place::Summary),
    ] {
        let Some(parts) = item.get(list).and_then(Value::as_array) else {
            continue;
        };
        for (i, p) in parts.iter().enumerate() {
            if let Some(t) = part_field(p).and_then(|f| p[f].as_str()) {
                out.push((place(i), t.to_owned()));
            }
        }
    }
    out
}

/// Writes `text` into an output item at `place`.
pub fn write(item: &mut Value, place: Place, text: &str) {
    let slot = match place {
        Place::Arguments => match arguments_field(item) {
            Some(f) => item.get_mut(f),
            None => None,
        },
        Place::Content(i) | Place::Summary(i) => {
            let list = if matches!(place, Place::Content(_)) {
                "content"
            } else {
                "summary"
            };
            item.get_mut(list)
                .and_then(|l| l.get_mut(i))
                .and_then(|p| part_field(p).and_then(|f| p.get_mut(f)))
        }
    };
    if let Some(s) = slot {
        *s = Value::String(text.to_owned());
    }
}

/// The SDKs' convenience `output_text`, when an answer carries it: every message's
/// `output_text` parts joined.
fn output_text(answer: &Value) -> String {
    let mut out = String::new();
    for item in answer["output"].as_array().into_iter().flatten() {
        if item["type"] != "message" {
            continue;
        }
        for p in item["content"].as_array().into_iter().flatten() {
            if p["type"] == "output_text"
                && let Some(t) = p["text"].as_str()
            {
                out.push_str(t);
            }
        }
    }
    out
}

/// Runs the output guards over a whole answer's text, applies their edits and restores
/// pseudonyms; `Err` is the refusal to send instead.
pub async fn guard(
    pipeline: &Pipeline,
    req: &ChatRequest,
    answer: &mut Value,
    ctx: &mut Context,
) -> Result<(), ApiError> {
    if !pipeline.inspects_output() && ctx.vault.is_empty() {
        return Ok(());
    }
    let mut found = Vec::new();
    for (i, item) in answer["output"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        found.extend(places(item).into_iter().map(|(p, t)| (i, p, t)));
    }
    let choices: Vec<Value> = found
        .iter()
        .enumerate()
        .map(|(k, (_, place, text))| match place {
            Place::Arguments => json!({"index": k, "message": {"role": "assistant",
                "content": null, "tool_calls": [{"type": "function",
                "function": {"name": "", "arguments": text}}]}}),
            _ => json!({"index": k, "message": {"role": "assistant", "content": text}}),
        })
        .collect();
    let mut chat = json!({"choices": choices});
    pipeline.run_output(req, &mut chat, ctx).await?;
    for (k, (i, place, _)) in found.iter().enumerate() {
        let m = &chat["choices"][k]["message"];
        let judged = match place {
            Place::Arguments => m["tool_calls"][0]["function"]["arguments"].as_str(),
            _ => m["content"].as_str(),
        };
        if let (Some(t), Some(item)) = (judged, answer["output"].get_mut(*i)) {
            write(item, *place, t);
        }
    }
    if answer.get("output_text").is_some_and(Value::is_string) {
        answer["output_text"] = Value::String(output_text(answer));
    }
    Ok(())
}

/// The usage of a response object (`input_tokens`, its cached part, `output_tokens` — which
/// include the reasoning tokens and are priced as output).
pub fn usage_of(response: &Value) -> Option<Usage> {
    let u = response.get("usage").filter(|u| u.is_object())?;
    let n = |p: &str| u.pointer(p).and_then(Value::as_u64).unwrap_or(0);
    let (input, output) = (n("/input_tokens"), n("/output_tokens"));
    // Reasoning tokens are part of `output_tokens`; a provider that reports them apart from
    // it still has them booked as output.
    let output = output.max(n("/output_tokens_details/reasoning_tokens"));
    Some(Usage {
        prompt_tokens: input,
        completion_tokens: output,
        total_tokens: n("/total_tokens").max(input.saturating_add(output)),
        cached_tokens: n("/input_tokens_details/cached_tokens"),
    })
}

/// The gateway's count of a whole answer that carried no usage: the prompt by the model's
/// tokenizer plus every piece of text the model wrote.
pub fn estimate(req: &ChatRequest, answer: &Value) -> Usage {
    let enc = tokens::Encoding::for_model(&req.model);
    let completion = answer["output"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(places)
        .fold(0u64, |n, (_, t)| n.saturating_add(enc.count(&t) as u64));
    let prompt = tokens::count_prompt(req);
    Usage {
        prompt_tokens: prompt,
        completion_tokens: completion,
        total_tokens: prompt.saturating_add(completion),
        cached_tokens: 0,
    }
}
