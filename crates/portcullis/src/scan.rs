//! Scanning without a model call: `POST /v1/scan` and `portcullis scan` run the configured
//! guards over messages or a text and report verdicts and findings, for applications that
//! cannot route their traffic through the proxy.

use portcullis_core::{
    ApiError, ChatRequest, Context, Message, Outcome, Pipeline, Principal, Role, Source,
};
use serde::Deserialize;
use serde_json::{Value, json};

/// What to scan.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScanRequest {
    #[serde(default)]
    pub messages: Option<Vec<Message>>,
    #[serde(default)]
    pub text: Option<String>,
    /// `input` (default) or `output`.
    #[serde(default)]
    pub direction: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
}

/// Runs the pipeline over a scan request; returns the JSON report.
pub async fn run(
    pipeline: &Pipeline,
    scan: ScanRequest,
    ctx: &mut Context,
) -> Result<Value, ApiError> {
    let output = match scan.direction.as_deref() {
        None | Some("input") => false,
        Some("output") => true,
        Some(other) => {
            return Err(ApiError::invalid_request(format!(
                "'direction' must be 'input' or 'output', not '{other}'."
            ))
            .with_param("direction"));
        }
    };
    let model = scan.model.unwrap_or_else(|| "gpt-4o-mini".into());
    let (verdict, error, result) = if output {
        let Some(text) = scan.text else {
            return Err(
                ApiError::invalid_request("An output scan needs 'text'.").with_param("text")
            );
        };
        let req = ChatRequest {
            model,
            ..ChatRequest::default()
        };
        let mut answer =
            json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": text}}]});
        let r = pipeline.run_output(&req, &mut answer, ctx).await;
        let text = answer["choices"][0]["message"]["content"].clone();
        (r.is_ok(), r.err(), json!({"text": text}))
    } else {
        let messages = match (scan.messages, scan.text) {
            (Some(m), None) => m,
            (None, Some(t)) => vec![
                serde_json::from_value(json!({"role": "user", "content": t}))
                    .map_err(|e| ApiError::internal(e.to_string()))?,
            ],
            _ => {
                return Err(ApiError::invalid_request(
                    "Send either 'messages' (a chat) or 'text' (one piece of text).",
                ));
            }
        };
        let mut req = ChatRequest {
            model,
            messages,
            ..ChatRequest::default()
        };
        // No model call to run beside: checks configured to run concurrently judge here too.
        let mut r = pipeline.run_input(&mut req, ctx).await;
        if r.is_ok() {
            r = pipeline.run_beside(&req, ctx).await;
        }
        (r.is_ok(), r.err(), json!({"messages": req.messages}))
    };
    let outcome = if !verdict {
        "block"
    } else if ctx.outcomes().any(|o| o == Outcome::Transform) {
        "transform"
    } else if ctx.outcomes().any(|o| {
        matches!(
            o,
            Outcome::Flag | Outcome::WouldBlock | Outcome::WouldTransform
        )
    }) {
        "flag"
    } else {
        "allow"
    };
    let findings: Vec<_> = ctx.findings().cloned().collect();
    Ok(json!({
        "id": ctx.request_id,
        "direction": if output { "output" } else { "input" },
        "verdict": outcome,
        "error": error.map(|e| e.body()["error"].clone()),
        "findings": findings,
        "guards": ctx.trace,
        "result": result,
    }))
}

/// What one guard did to a judged text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardActs {
    pub guard: String,
    pub blocked: bool,
    pub altered: bool,
    /// Flagged it, or would have blocked or altered it in monitor mode.
    pub flagged: bool,
}

impl GuardActs {
    /// Whether the guard did anything at all.
    pub fn acted(&self) -> bool {
        self.blocked || self.altered || self.flagged
    }
}

/// How the configured input policy treats one text sent as a user message.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Judgement {
    /// Refused.
    pub blocked: bool,
    /// Let through, but the model would see different text from what the user wrote.
    pub altered: bool,
    /// Some guard flagged it (or would have acted, in monitor mode).
    pub flagged: bool,
    pub guards: Vec<GuardActs>,
    /// Finding kinds of the guards that acted, each once.
    pub kinds: Vec<String>,
}

/// Judges `text` as the gateway judges a user message: the whole input pipeline, including
/// the checks that run beside the upstream call, with no model call — the one way the `eval
/// traffic` measurement (and the red-team runner) push text through a policy.
pub async fn judge(pipeline: &Pipeline, text: &str) -> Judgement {
    judge_as(pipeline, text, Source::User).await
}

/// The conversation the gateway receives when `text` comes from `source`; the last message
/// holds the text (guards may add messages before it, never after). A user's text is one user message. A tool result follows the
/// user's question and the assistant's call, as a `tool` message. The chat API has no place
/// of its own for retrieved documents: applications hand them to the model as a retrieval
/// tool's result, so a document arrives (and is judged) as the result of `search_documents`.
pub fn messages_for(text: &str, source: Source) -> Vec<Message> {
    let tool = match source {
        Source::Tool => "fetch_url",
        Source::Document => "search_documents",
        _ => return vec![Message::text(Role::User, text)],
    };
    let mut call = Message::text(Role::Assistant, "");
    call.content = None;
    call.tool_calls = serde_json::from_value(json!([{
        "id": "call_1", "type": "function",
        "function": {"name": tool, "arguments": "{}"},
    }]))
    .ok();
    let mut result = Message::text(Role::Tool, text);
    result.tool_call_id = Some("call_1".into());
    let ask = "Use the tool, then answer my question from what it returns.";
    vec![Message::text(Role::User, ask), call, result]
}

/// Judges `text` as the gateway judges it when it comes from `source` (see [`messages_for`]):
/// a tool result or a document is judged by the policy for third-party text, in its place.
pub async fn judge_as(pipeline: &Pipeline, text: &str, source: Source) -> Judgement {
    let mut req = ChatRequest {
        model: "gpt-4o-mini".into(),
        messages: messages_for(text, source),
        ..ChatRequest::default()
    };
    let mut ctx = Context::new("judge", Principal::default());
    let mut result = pipeline.run_input(&mut req, &mut ctx).await;
    if result.is_ok() {
        result = pipeline.run_beside(&req, &mut ctx).await;
    }
    let blocked = result.is_err();
    let seen = req.messages.last().map(Message::joined_text);
    let altered = !blocked && seen.as_deref() != Some(text);
    let mut kinds: Vec<String> = Vec::new();
    let guards: Vec<GuardActs> = ctx
        .trace
        .iter()
        .map(|r| {
            let g = GuardActs {
                guard: r.guard.clone(),
                blocked: matches!(r.outcome, Outcome::Block | Outcome::ErrorClosed),
                altered: r.outcome == Outcome::Transform,
                flagged: matches!(
                    r.outcome,
                    Outcome::Flag | Outcome::WouldBlock | Outcome::WouldTransform
                ),
            };
            if g.acted() {
                for f in &r.findings {
                    if !kinds.contains(&f.kind) {
                        kinds.push(f.kind.clone());
                    }
                }
            }
            g
        })
        .collect();
    let flagged = guards.iter().any(|g| g.flagged);
    Judgement {
        blocked,
        altered,
        flagged,
        guards,
        kinds,
    }
}

/// A context for command-line scans.
pub fn cli_context() -> Context {
    Context::new("scan", Principal::default())
}
