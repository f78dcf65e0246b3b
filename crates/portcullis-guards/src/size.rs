//! Bounds a request before any other guard spends time on it: message count, prompt tokens
//! (counted with the model's real tokenizer, offline) and the output ceiling.

use portcullis_core::guard::{GuardError, Input, Verdict};
use portcullis_core::{ApiError, Context, Finding, Guard, tokens};
use serde::Deserialize;

/// Limits on one request; `0` disables a limit.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SizeConfig {
    /// Most messages in one request.
    pub max_messages: usize,
    /// Most prompt tokens (text, names, tool calls and definitions).
    pub max_prompt_tokens: u64,
    /// Highest `max_tokens` / `max_completion_tokens` a request may ask for.
    pub max_output_tokens: u64,
}

impl Default for SizeConfig {
    fn default() -> Self {
        SizeConfig {
            max_messages: 1_000,
            max_prompt_tokens: 128_000,
            max_output_tokens: 0,
        }
    }
}

/// Refuses requests larger than policy allows.
#[derive(Debug, Clone)]
pub struct SizeGuard {
    config: SizeConfig,
}

impl SizeGuard {
    /// A guard enforcing `config`.
    pub fn new(config: &SizeConfig) -> Self {
        SizeGuard {
            config: config.clone(),
        }
    }
}

fn refuse(code: &str, param: &str, message: String) -> Verdict {
    Verdict::block(
        ApiError::new(400, "invalid_request_error", Some(code), message).with_param(param),
        vec![Finding::new(code, "size", 1.0)],
    )
}

#[async_trait::async_trait]
impl Guard for SizeGuard {
    fn name(&self) -> &str {
        "size"
    }

    async fn check_input(&self, input: &Input<'_>, _ctx: &Context) -> Result<Verdict, GuardError> {
        let c = &self.config;
        let req = input.request;
        if c.max_messages > 0 && req.messages.len() > c.max_messages {
            return Ok(refuse(
                "too_many_messages",
                "messages",
                format!(
                    "This request has {} messages; the limit is {}.",
                    req.messages.len(),
                    c.max_messages
                ),
            ));
        }
        if c.max_output_tokens > 0
            && let Some(n) = req.max_output_tokens().filter(|n| *n > c.max_output_tokens)
        {
            let param = if req.max_completion_tokens.is_some() {
                "max_completion_tokens"
            } else {
                "max_tokens"
            };
            return Ok(refuse(
                "output_limit_exceeded",
                param,
                format!("{param} is {n}; the limit is {}.", c.max_output_tokens),
            ));
        }
        // The tokenizer runs only when the bytes could reach the limit.
        if c.max_prompt_tokens > 0 && tokens::prompt_ceiling(req) > c.max_prompt_tokens {
            let n = tokens::count_prompt(req);
            if n > c.max_prompt_tokens {
                return Ok(refuse(
                    "context_length_exceeded",
                    "messages",
                    format!(
                        "This request has {n} prompt tokens; the limit is {}. Shorten the messages.",
                        c.max_prompt_tokens
                    ),
                ));
            }
        }
        Ok(Verdict::allow())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_core::{Action, ChatRequest, Principal};

    fn req(json: &str) -> ChatRequest {
        serde_json::from_str(json).unwrap()
    }

    async fn check(g: &SizeGuard, r: &ChatRequest) -> Verdict {
        let ctx = Context::new("t", Principal::default());
        let segs = r.segments();
        g.check_input(
            &Input {
                request: r,
                segments: &segs,
            },
            &ctx,
        )
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn counts_real_tokens_and_refuses_past_the_limit() {
        let g = SizeGuard::new(&SizeConfig {
            max_prompt_tokens: 20,
            ..SizeConfig::default()
        });
        let small =
            req(r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hello world"}]}"#);
        assert_eq!(check(&g, &small).await.action, Action::Allow);
        let long = "word ".repeat(50);
        let big = req(&format!(
            r#"{{"model":"gpt-4o","messages":[{{"role":"user","content":"{long}"}}]}}"#
        ));
        match check(&g, &big).await.action {
            Action::Block(e) => {
                assert_eq!(e.status, 400);
                assert_eq!(e.code.as_deref(), Some("context_length_exceeded"));
                assert_eq!(e.param.as_deref(), Some("messages"));
            }
            other => panic!("expected a block, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn names_the_output_parameter_used() {
        let g = SizeGuard::new(&SizeConfig {
            max_output_tokens: 100,
            ..SizeConfig::default()
        });
        let r = req(r#"{"model":"o3","messages":[],"max_completion_tokens":1000}"#);
        match check(&g, &r).await.action {
            Action::Block(e) => assert_eq!(e.param.as_deref(), Some("max_completion_tokens")),
            other => panic!("expected a block, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn too_many_messages_is_refused() {
        let g = SizeGuard::new(&SizeConfig {
            max_messages: 1,
            ..SizeConfig::default()
        });
        let r = req(
            r#"{"model":"m","messages":[{"role":"user","content":"a"},{"role":"user","content":"b"}]}"#,
        );
        assert!(matches!(check(&g, &r).await.action, Action::Block(_)));
    }
}
