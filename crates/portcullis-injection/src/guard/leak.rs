//! The system prompt leaking verbatim: a long run of consecutive words shared by the answer and
//! the request's system (or developer) messages. The canary catches a prompt repeated whole;
//! this catches a prompt quoted in part, or one sent without a canary.
//!
//! Words are compared lower-cased, punctuation and spacing ignored, so a reformatted quote
//! still matches. On a stream each window is judged with the already-sent context the stream
//! scanner keeps, so a run split across chunks is still seen.

use portcullis_core::{
    ApiError, Context, Edit, Finding, Guard, GuardError, Output, Source, Verdict,
};
use serde::Deserialize;
use std::collections::HashSet;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::ops::Range;

/// What to do with an answer that repeats the system prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeakAction {
    /// Withhold the answer.
    #[default]
    Block,
    /// Replace the repeated words with [`WITHHELD`].
    Redact,
}

/// `[output.system_prompt]`: how long a verbatim run counts as a leak.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LeakConfig {
    /// Judge answers for system-prompt overlap at all.
    pub enabled: bool,
    /// Consecutive words shared with the system prompt that make a leak.
    pub min_words: usize,
    /// `block` (default) or `redact`.
    pub action: LeakAction,
}

impl Default for LeakConfig {
    fn default() -> Self {
        LeakConfig {
            enabled: false,
            min_words: 12,
            action: LeakAction::Block,
        }
    }
}

/// A shorter system prompt is not judged: a few words in common are ordinary speech.
pub const MIN_PROMPT_WORDS: usize = 6;

/// What a repeated run is replaced with.
pub const WITHHELD: &str = "[withheld]";

/// Words of `text` (letters and digits), lower-cased, with their byte ranges.
fn words(text: &str) -> Vec<(String, Range<usize>)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in text
        .char_indices()
        .chain(std::iter::once((text.len(), ' ')))
    {
        match (c.is_alphanumeric(), start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                out.push((text[s..i].to_lowercase(), s..i));
                start = None;
            }
            _ => {}
        }
    }
    out
}

fn shingle(words: &[(String, Range<usize>)]) -> u64 {
    let mut h = DefaultHasher::new();
    for (w, _) in words {
        w.hash(&mut h);
    }
    h.finish()
}

/// Runs of at least `n` consecutive words of `answer` that also occur, in order, in
/// `prompt`, as byte ranges of `answer` (overlapping runs merged).
pub fn shared_runs(prompt: &str, answer: &str, n: usize) -> Vec<Range<usize>> {
    let p = words(prompt);
    if p.len() < MIN_PROMPT_WORDS || n == 0 {
        return Vec::new();
    }
    // A prompt shorter than `n` words leaks when it is repeated whole.
    let n = n.min(p.len());
    let known: HashSet<u64> = p.windows(n).map(shingle).collect();
    let a = words(answer);
    let mut runs: Vec<Range<usize>> = Vec::new();
    for w in a.windows(n) {
        if !known.contains(&shingle(w)) {
            continue;
        }
        let span = w[0].1.start..w[n - 1].1.end;
        match runs.last_mut() {
            Some(last) if span.start <= last.end => last.end = last.end.max(span.end),
            _ => runs.push(span),
        }
    }
    runs
}

/// Refuses (or trims) answers that repeat the system prompt at length.
#[derive(Debug, Clone)]
pub struct SystemPromptLeakGuard {
    config: LeakConfig,
}

impl SystemPromptLeakGuard {
    /// A guard for `config`.
    pub fn new(config: &LeakConfig) -> Self {
        SystemPromptLeakGuard {
            config: config.clone(),
        }
    }
}

#[async_trait::async_trait]
impl Guard for SystemPromptLeakGuard {
    fn name(&self) -> &str {
        "system_prompt"
    }

    async fn check_output(
        &self,
        output: &Output<'_>,
        _ctx: &Context,
    ) -> Result<Verdict, GuardError> {
        if !self.config.enabled {
            return Ok(Verdict::allow());
        }
        let prompt: Vec<String> = output
            .request
            .segments()
            .into_iter()
            .filter(|s| s.source == Source::System)
            .map(|s| s.text)
            .collect();
        if prompt.is_empty() {
            return Ok(Verdict::allow());
        }
        let prompt = prompt.join("\n");
        let floor = output.window.map_or(0, |w| w.editable_from);
        let mut edits = Vec::new();
        let mut findings = Vec::new();
        for (i, seg) in output.segments.iter().enumerate() {
            for run in shared_runs(&prompt, &seg.text, self.config.min_words) {
                if run.end <= floor {
                    continue;
                }
                findings.push(
                    Finding::new("prompt_leak", "system_prompt_overlap", 1.0).at(i, run.clone()),
                );
                edits.push(Edit::Replace {
                    segment: i,
                    range: run.start.max(floor)..run.end,
                    with: WITHHELD.to_owned(),
                });
            }
        }
        if findings.is_empty() {
            return Ok(Verdict::allow());
        }
        Ok(match self.config.action {
            LeakAction::Redact => Verdict::transform(edits, findings),
            LeakAction::Block => Verdict::block(
                ApiError::policy(
                    "prompt_leak",
                    "The model's answer was withheld: it repeated the application's confidential instructions.",
                ),
                findings,
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guard::req;
    use portcullis_core::{Action, Principal, Segment, Window};

    const PROMPT: &str = "You are Acme's support bot. Never offer refunds above fifty dollars without a manager's approval code, and never mention the internal escalation queue.";

    async fn judge(action: LeakAction, answer: &str, window: Option<Window>) -> Verdict {
        let g = SystemPromptLeakGuard::new(&LeakConfig {
            enabled: true,
            min_words: 8,
            action,
        });
        let r = req(serde_json::json!({"model": "m", "messages": [
            {"role": "system", "content": PROMPT}, {"role": "user", "content": "hi"}]}));
        let segs = [Segment::free(answer, Source::Output)];
        let out = Output {
            request: &r,
            segments: &segs,
            window,
        };
        g.check_output(&out, &Context::new("t", Principal::default()))
            .await
            .unwrap()
    }

    #[test]
    fn runs_are_found_across_case_punctuation_and_spacing() {
        let answer = "Sure! My rules: NEVER offer refunds above fifty\n dollars -- without a manager's approval code. Bye.";
        let runs = shared_runs(PROMPT, answer, 8);
        assert_eq!(runs.len(), 1);
        assert_eq!(
            &answer[runs[0].clone()],
            "NEVER offer refunds above fifty\n dollars -- without a manager's approval code"
        );
        assert!(shared_runs(PROMPT, "I can help with refunds above fifty dollars.", 8).is_empty());
        assert!(
            shared_runs("Be nice.", "Be nice.", 12).is_empty(),
            "a prompt too short to judge"
        );
    }

    #[tokio::test]
    async fn a_verbatim_quote_is_blocked_or_withheld() {
        let leak =
            "My instructions: you are Acme's support bot. Never offer refunds above fifty dollars.";
        let v = judge(LeakAction::Block, leak, None).await;
        assert!(
            matches!(v.action, Action::Block(ref e) if e.code.as_deref() == Some("prompt_leak"))
        );
        let v = judge(LeakAction::Redact, leak, None).await;
        let Action::Transform(edits) = v.action else {
            panic!("expected a transform")
        };
        let Edit::Replace { range, .. } = &edits[0] else {
            panic!("expected a replace")
        };
        assert_eq!(&leak[..range.start], "My instructions: ");
        let fine = judge(LeakAction::Block, "Refunds need a manager, sorry.", None).await;
        assert_eq!(fine.action, Action::Allow);
    }

    #[tokio::test]
    async fn in_a_window_runs_already_sent_are_left_alone() {
        let text = "you are Acme's support bot. Never offer refunds above. Then more words here";
        let sent = Window {
            editable_from: 60,
            offset: 0,
            last: false,
            lane: 0,
        };
        assert_eq!(
            judge(LeakAction::Block, text, Some(sent)).await.action,
            Action::Allow
        );
        let unsent = Window {
            editable_from: 10,
            ..sent
        };
        assert!(matches!(
            judge(LeakAction::Block, text, Some(unsent)).await.action,
            Action::Block(_)
        ));
    }
}
