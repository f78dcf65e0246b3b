//! The `grounding` output guard: an answer to a request that carried documents is scored
//! against them, and the policy annotates, flags or refuses it.

use crate::support::{Documents, Report, check};
use portcullis_core::chat::Role;
use portcullis_core::guard::{GuardError, Output, Verdict};
use portcullis_core::{ApiError, Context, Finding, Guard, Location};
use serde::Deserialize;

/// What an ungrounded answer gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroundingAction {
    /// Scored and recorded (the gateway adds the `x-portcullis-grounding` header).
    #[default]
    Annotate,
    /// Recorded as flagged when a claim is unsupported.
    Flag,
    /// Refused (403 `ungrounded_answer`) when a claim is unsupported, naming the claims.
    Block,
}

/// `[grounding]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GroundingConfig {
    pub action: GroundingAction,
    /// A claim whose support is under this is unsupported.
    pub threshold: f32,
    /// The most unsupported claims quoted in a refusal.
    pub max_listed: usize,
}

impl Default for GroundingConfig {
    fn default() -> Self {
        GroundingConfig {
            action: GroundingAction::Annotate,
            threshold: DEFAULT_THRESHOLD,
            max_listed: 5,
        }
    }
}

/// The claim support under which `eval grounding` and the guard call a claim unsupported.
pub const DEFAULT_THRESHOLD: f32 = 0.5;

/// The finding kind of the whole-answer score (its `score` is the answer's support).
pub const SCORE_KIND: &str = "grounding";
/// The finding kind of one unsupported claim (placed at its span).
pub const CLAIM_KIND: &str = "unsupported_claim";

/// Scores answers against the request's documents.
#[derive(Debug, Clone)]
pub struct GroundingGuard {
    config: GroundingConfig,
}

impl GroundingGuard {
    /// A guard for `config`; a threshold outside [0, 1] is refused.
    pub fn new(config: &GroundingConfig) -> Result<Self, String> {
        if !(0.0..=1.0).contains(&config.threshold) {
            return Err(format!(
                "threshold must be between 0 and 1, not {}",
                config.threshold
            ));
        }
        Ok(GroundingGuard {
            config: config.clone(),
        })
    }
}

#[async_trait::async_trait]
impl Guard for GroundingGuard {
    fn name(&self) -> &str {
        "grounding"
    }

    async fn check_output(
        &self,
        output: &Output<'_>,
        ctx: &Context,
    ) -> Result<Verdict, GuardError> {
        // A stream's windows are pieces of the answer, not claims: streams are not scored.
        if output.request.documents.is_empty() || output.window.is_some() {
            return Ok(Verdict::allow());
        }
        let mut docs = Documents::new(&output.request.documents);
        for m in output
            .request
            .messages
            .iter()
            .filter(|m| m.role == Role::User && !m.document)
        {
            docs.add_question(&ctx.vault.restore(&m.joined_text()));
        }
        let mut findings = Vec::new();
        let mut listed = Vec::new();
        let mut weakest = 1.0f32;
        for (i, seg) in output.segments.iter().enumerate() {
            if !matches!(seg.location, Location::Answer { .. }) {
                continue;
            }
            let text = ctx.vault.restore(&seg.text);
            let report = check(&text, &docs);
            weakest = weakest.min(report.support);
            for c in report.unsupported(self.config.threshold) {
                let quote = text.get(c.span.clone()).unwrap_or_default();
                listed.push(describe(quote, &c.missing));
                // Spans are in the answer the client receives (pseudonyms restored).
                findings.push(claim_finding(i, c, &report));
            }
        }
        let unsupported = findings.len();
        findings.insert(
            0,
            Finding::new(SCORE_KIND, "grounding", weakest)
                .note(format!("support={weakest:.2}; unsupported={unsupported}")),
        );
        Ok(match (self.config.action, unsupported) {
            (GroundingAction::Annotate, _) | (_, 0) => Verdict {
                action: portcullis_core::Action::Allow,
                findings,
            },
            (GroundingAction::Flag, _) => Verdict::flag(findings),
            (GroundingAction::Block, _) => {
                listed.truncate(self.config.max_listed);
                let msg = format!(
                    "The answer makes {unsupported} claim(s) the supplied documents do not support: {}",
                    listed.join("; ")
                );
                Verdict::block(ApiError::policy("ungrounded_answer", msg), findings)
            }
        })
    }
}

fn claim_finding(segment: usize, c: &crate::ClaimSupport, _r: &Report) -> Finding {
    let note = if c.missing.is_empty() {
        "little word overlap with the documents".to_owned()
    } else {
        format!("not in the documents: {}", c.missing.join(", "))
    };
    Finding::new(CLAIM_KIND, "grounding", 1.0 - c.support)
        .at(segment, c.span.clone())
        .note(note)
}

fn describe(claim: &str, missing: &[String]) -> String {
    let short: String = claim.chars().take(120).collect();
    if missing.is_empty() {
        format!("\"{short}\"")
    } else {
        format!("\"{short}\" ({})", missing.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_core::{ChatRequest, Principal, Segment};

    fn request(docs: &[&str]) -> ChatRequest {
        let mut r: ChatRequest = serde_json::from_value(serde_json::json!({
            "model": "m", "messages": [{"role": "user", "content": "When did Barker retire?"}]}))
        .unwrap();
        r.attach_documents(docs.iter().map(|d| d.to_string()).collect());
        r
    }

    async fn judge(action: GroundingAction, docs: &[&str], answer: &str) -> Verdict {
        let g = GroundingGuard::new(&GroundingConfig {
            action,
            ..Default::default()
        })
        .unwrap();
        let req = request(docs);
        let segs = [Segment {
            location: Location::Answer { choice: 0 },
            source: portcullis_core::Source::Output,
            text: answer.into(),
        }];
        let out = Output {
            request: &req,
            segments: &segs,
            window: None,
        };
        let ctx = Context::new("r", Principal::default());
        g.check_output(&out, &ctx).await.unwrap()
    }

    const DOC: &str = "Bob Barker hosted The Price Is Right until he retired in 2007.";

    #[tokio::test]
    async fn actions_follow_the_policy_and_name_the_unsupported_claims() {
        let bad = "Barker retired in 2007. He then moved to Paris in 2011.";
        let v = judge(GroundingAction::Annotate, &[DOC], bad).await;
        assert_eq!(v.action, portcullis_core::Action::Allow);
        assert_eq!(v.findings[0].kind, SCORE_KIND);
        let claim = &v.findings[1];
        assert_eq!(claim.kind, CLAIM_KIND);
        assert_eq!(claim.span, Some(24..bad.len()));
        assert!(
            claim.note.as_deref().unwrap().contains("Paris, 2011"),
            "{claim:?}"
        );
        let v = judge(GroundingAction::Flag, &[DOC], bad).await;
        assert_eq!(v.action, portcullis_core::Action::Flag);
        let v = judge(GroundingAction::Block, &[DOC], bad).await;
        let portcullis_core::Action::Block(e) = v.action else {
            panic!("{v:?}")
        };
        assert_eq!(
            (e.status, e.code.as_deref()),
            (403, Some("ungrounded_answer"))
        );
        assert!(
            e.message.contains("He then moved to Paris in 2011."),
            "{}",
            e.message
        );
        let ok = judge(GroundingAction::Block, &[DOC], "Barker retired in 2007.").await;
        assert_eq!(ok.action, portcullis_core::Action::Allow);
    }

    #[tokio::test]
    async fn requests_without_documents_are_not_scored() {
        let v = judge(GroundingAction::Block, &[], "Anything at all, in 1999.").await;
        assert!(v.findings.is_empty());
        assert!(
            GroundingGuard::new(&GroundingConfig {
                threshold: 2.0,
                ..Default::default()
            })
            .is_err()
        );
    }
}
