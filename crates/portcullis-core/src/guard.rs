//! The guard contract: a guard inspects (it never mutates) and returns a verdict; the pipeline
//! owns mode, failure policy, timeout, order and the application of edits.

use crate::chat::{ChatRequest, Message};
use crate::context::Context;
use crate::error::ApiError;
use crate::finding::Finding;
use crate::segment::Segment;
use serde_json::Value;
use std::ops::Range;

/// What an input guard sees: the typed request and all its text as segments.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    pub request: &'a ChatRequest,
    pub segments: &'a [Segment],
}

/// What an output guard sees: the request as sent upstream and the answer's text.
#[derive(Debug, Clone, Copy)]
pub struct Output<'a> {
    pub request: &'a ChatRequest,
    pub segments: &'a [Segment],
    /// Set when the answer is streamed: the segments are windows, not whole answers.
    pub window: Option<Window>,
}

/// A stream window: `segments[i].text[..editable_from]` was already sent (context only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Byte offset in each window's text where not-yet-sent text starts.
    pub editable_from: usize,
    /// Byte offset of the window's start within the whole answer so far.
    pub offset: usize,
    /// The answer is complete: this is the last window.
    pub last: bool,
    /// Which stream lane (a choice's content, a tool call's arguments) the window is of:
    /// findings are recorded in that lane, so one guard's verdict over the whole stream
    /// places each finding.
    pub lane: usize,
}

/// A guard's judgement.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub action: Action,
    /// What justified the action (also recorded for `Allow` in monitor-style guards).
    pub findings: Vec<Finding>,
}

/// What the guard wants done.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Nothing to see.
    Allow,
    /// Suspicious: let it through, record it.
    Flag,
    /// Let it through after these edits.
    Transform(Vec<Edit>),
    /// Refuse, with the error the client should see.
    Block(ApiError),
}

/// One change a guard asks the pipeline to make.
#[derive(Debug, Clone, PartialEq)]
pub enum Edit {
    /// Replace a byte range of a segment's text.
    Replace {
        segment: usize,
        range: Range<usize>,
        with: String,
    },
    /// Remember a reversible placeholder: the pipeline restores `original` in the answer.
    Remember {
        placeholder: String,
        original: String,
    },
    /// Set a request parameter (JSON `null` removes it); recorded as sent upstream.
    SetParam { name: String, value: Value },
    /// Insert a message at `index` of `messages` (e.g. a boundary preamble).
    InsertMessage { index: usize, message: Message },
}

impl Verdict {
    /// Nothing found.
    pub fn allow() -> Self {
        Verdict {
            action: Action::Allow,
            findings: Vec::new(),
        }
    }

    /// Allowed, but worth recording.
    pub fn flag(findings: Vec<Finding>) -> Self {
        Verdict {
            action: Action::Flag,
            findings,
        }
    }

    /// Allowed after edits.
    pub fn transform(edits: Vec<Edit>, findings: Vec<Finding>) -> Self {
        Verdict {
            action: Action::Transform(edits),
            findings,
        }
    }

    /// Refused.
    pub fn block(error: ApiError, findings: Vec<Finding>) -> Self {
        Verdict {
            action: Action::Block(error),
            findings,
        }
    }
}

/// The guard could not decide (a provider down, a timeout): the stage's failure mode decides.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GuardError {
    #[error("guard timed out after {0} ms")]
    Timeout(u64),
    #[error("guard provider unavailable: {0}")]
    Unavailable(String),
    #[error("guard failed: {0}")]
    Failed(String),
}

/// A check on requests, answers or both. Implement only the directions the guard judges.
#[async_trait::async_trait]
pub trait Guard: Send + Sync {
    /// Stable name used in config, audit records and metrics.
    fn name(&self) -> &str;

    /// Judge a request before it goes upstream.
    async fn check_input(&self, _input: &Input<'_>, _ctx: &Context) -> Result<Verdict, GuardError> {
        Ok(Verdict::allow())
    }

    /// Judge an answer (or a window of a streamed answer) before the client sees it.
    async fn check_output(
        &self,
        _output: &Output<'_>,
        _ctx: &Context,
    ) -> Result<Verdict, GuardError> {
        Ok(Verdict::allow())
    }
}
