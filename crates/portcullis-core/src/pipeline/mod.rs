//! The pipeline: an ordered list of stages built from config. It, not the guards, owns mode
//! (enforce / monitor), failure policy, timeouts, the order, and applying each stage's edits
//! before the next stage runs — so a remote check never sees text an earlier guard removed.

mod edits;
mod rollout;
mod stage;

pub use rollout::{Rollout, RolloutBy};
pub use stage::{FailureMode, Mode, Stage};

use crate::chat::ChatRequest;
use crate::context::{Context, Direction, GuardRecord, Outcome};
use crate::error::ApiError;
use crate::guard::{Action, GuardError, Input, Output, Verdict, Window};
use crate::segment::{self, Segment};
use edits::{apply_input_edits, apply_text_edits};
use serde_json::Value;
use std::time::Instant;

/// Input stages then output stages, each run in order.
#[derive(Debug, Clone, Default)]
pub struct Pipeline {
    input: Vec<Stage>,
    beside: Vec<Stage>,
    output: Vec<Stage>,
}

impl Pipeline {
    /// A pipeline from its two ordered lists; `Off` stages are dropped here, once.
    pub fn new(input: Vec<Stage>, output: Vec<Stage>) -> Self {
        let on = |v: Vec<Stage>| -> Vec<Stage> {
            v.into_iter().filter(|s| s.mode != Mode::Off).collect()
        };
        let (beside, input) = on(input).into_iter().partition(|s| s.beside);
        Pipeline {
            input,
            beside,
            output: on(output),
        }
    }

    /// The input stages that run beside the upstream call.
    pub fn beside_stages(&self) -> &[Stage] {
        &self.beside
    }

    /// Runs the beside stages over the request as it was sent; `Err` means the answer must be
    /// discarded and the request refused. Their edits cannot apply (the request is gone) and
    /// are recorded as findings only.
    pub async fn run_beside(&self, req: &ChatRequest, ctx: &mut Context) -> Result<(), ApiError> {
        if self.beside.is_empty() {
            return Ok(());
        }
        let segments = req.segments();
        for stage in &self.beside {
            let (verdict, record, started) = judge_input(stage, req, &segments, ctx).await;
            let refusal = enforced_block(record.mode, verdict);
            conclude(stage, ctx, record, started, refusal)?;
        }
        Ok(())
    }

    /// The input stages, in order.
    pub fn input_stages(&self) -> &[Stage] {
        &self.input
    }

    /// The output stages, in order.
    pub fn output_stages(&self) -> &[Stage] {
        &self.output
    }

    /// Whether answers need inspecting at all (if not, streams pass through untouched).
    pub fn inspects_output(&self) -> bool {
        !self.output.is_empty()
    }

    /// Runs the input stages over `req`, applying their edits; `Err` is the refusal to send.
    pub async fn run_input(
        &self,
        req: &mut ChatRequest,
        ctx: &mut Context,
    ) -> Result<(), ApiError> {
        let mut segments = req.segments();
        for stage in &self.input {
            let (verdict, mut record, started) = judge_input(stage, req, &segments, ctx).await;
            let refusal = match verdict {
                Some(Verdict {
                    action: Action::Transform(edits),
                    ..
                }) if record.mode == Mode::Enforce => {
                    apply_input_edits(req, &mut segments, edits, ctx, &mut record);
                    segments = req.segments();
                    None
                }
                other => enforced_block(record.mode, other),
            };
            conclude(stage, ctx, record, started, refusal)?;
        }
        Ok(())
    }

    /// Runs the output stages over a complete (non-streamed) answer, applies their edits, then
    /// restores pseudonyms so the client sees its own values.
    pub async fn run_output(
        &self,
        req: &ChatRequest,
        resp: &mut Value,
        ctx: &mut Context,
    ) -> Result<(), ApiError> {
        let mut segments = segment::response_segments(resp);
        self.run_output_segments(req, &mut segments, None, ctx)
            .await?;
        for s in &mut segments {
            if !ctx.vault.is_empty() {
                s.text = ctx.vault.restore(&s.text);
            }
            segment::write_response(resp, s);
        }
        Ok(())
    }

    /// Runs the output stages over stream windows; edits land only in not-yet-sent text.
    pub async fn run_output_window(
        &self,
        req: &ChatRequest,
        windows: &mut [Segment],
        window: Window,
        ctx: &mut Context,
    ) -> Result<(), ApiError> {
        self.run_output_segments(req, windows, Some(window), ctx)
            .await
    }

    async fn run_output_segments(
        &self,
        req: &ChatRequest,
        segments: &mut [Segment],
        window: Option<Window>,
        ctx: &mut Context,
    ) -> Result<(), ApiError> {
        for stage in &self.output {
            let started = Instant::now();
            let result = {
                let output = Output {
                    request: req,
                    segments,
                    window,
                };
                call(stage, stage.guard.check_output(&output, ctx)).await
            };
            let mut record = record(stage, Direction::Output, ctx);
            let verdict = settle(stage, result, &mut record);
            let refusal = match verdict {
                Some(Verdict {
                    action: Action::Transform(edits),
                    ..
                }) if record.mode == Mode::Enforce => {
                    let floor = window.map_or(0, |w| w.editable_from);
                    apply_text_edits(segments, &edits, floor);
                    None
                }
                other => enforced_block(record.mode, other),
            };
            conclude_window(stage, ctx, record, started, refusal, window)?;
        }
        Ok(())
    }
}

/// Asks one input stage for its verdict on the request as it stands.
async fn judge_input(
    stage: &Stage,
    req: &ChatRequest,
    segments: &[Segment],
    ctx: &Context,
) -> (Option<Verdict>, GuardRecord, Instant) {
    let started = Instant::now();
    let input = Input {
        request: req,
        segments,
    };
    let result = call(stage, stage.guard.check_input(&input, ctx)).await;
    let mut record = record(stage, Direction::Input, ctx);
    let verdict = settle(stage, result, &mut record);
    (verdict, record, started)
}

/// The refusal in a verdict, when the stage enforces for this request (a monitoring stage —
/// or one outside its rollout share — only records).
fn enforced_block(mode: Mode, verdict: Option<Verdict>) -> Option<ApiError> {
    match verdict {
        Some(Verdict {
            action: Action::Block(e),
            ..
        }) if mode == Mode::Enforce => Some(e),
        _ => None,
    }
}

/// Records a stage's verdict; `Err` when it refused or failed closed.
fn conclude(
    stage: &Stage,
    ctx: &mut Context,
    record: GuardRecord,
    started: Instant,
    refusal: Option<ApiError>,
) -> Result<(), ApiError> {
    conclude_window(stage, ctx, record, started, refusal, None)
}

/// [`conclude`] for an output stage, which may have judged one window of a stream: its verdict
/// is then folded into the stage's one verdict on the whole stream.
fn conclude_window(
    stage: &Stage,
    ctx: &mut Context,
    mut record: GuardRecord,
    started: Instant,
    refusal: Option<ApiError>,
    window: Option<Window>,
) -> Result<(), ApiError> {
    let failed_closed = record.outcome == Outcome::ErrorClosed;
    record.micros = started.elapsed().as_micros() as u64;
    match window {
        Some(w) => ctx.record_window(record, w.lane, w.offset),
        None => ctx.trace.push(record),
    }
    if let Some(e) = refusal {
        return Err(e);
    }
    if failed_closed {
        return Err(fail_closed_error(stage));
    }
    Ok(())
}

async fn call<F>(stage: &Stage, fut: F) -> Result<Verdict, GuardError>
where
    F: std::future::Future<Output = Result<Verdict, GuardError>>,
{
    match stage.timeout {
        Some(t) => match tokio::time::timeout(t, fut).await {
            Ok(r) => r,
            Err(_) => Err(GuardError::Timeout(t.as_millis() as u64)),
        },
        None => fut.await,
    }
}

/// A blank record of `stage`'s verdict, in the mode the stage runs in for this principal.
fn record(stage: &Stage, direction: Direction, ctx: &Context) -> GuardRecord {
    GuardRecord {
        guard: stage.guard.name().to_owned(),
        direction,
        mode: stage.mode_for(&ctx.principal),
        outcome: Outcome::Allow,
        findings: Vec::new(),
        changes: Vec::new(),
        error: None,
        micros: 0,
        windows: 0,
    }
}

/// Turns a guard's result into an outcome under the stage's mode and failure policy; returns
/// the verdict when it is still to be acted on.
fn settle(
    stage: &Stage,
    result: Result<Verdict, GuardError>,
    record: &mut GuardRecord,
) -> Option<Verdict> {
    match result {
        Err(e) => {
            record.error = Some(e.to_string());
            record.outcome = match stage.on_error {
                FailureMode::FailOpen => Outcome::ErrorOpen,
                FailureMode::FailClosed => Outcome::ErrorClosed,
            };
            None
        }
        Ok(v) => {
            let monitor = record.mode == Mode::Monitor;
            record.outcome = match (&v.action, monitor) {
                (Action::Allow, _) => Outcome::Allow,
                (Action::Flag, _) => Outcome::Flag,
                (Action::Transform(e), _) if e.is_empty() => Outcome::Allow,
                (Action::Transform(_), false) => Outcome::Transform,
                (Action::Transform(_), true) => Outcome::WouldTransform,
                (Action::Block(_), false) => Outcome::Block,
                (Action::Block(_), true) => Outcome::WouldBlock,
            };
            record.findings = v.findings.clone();
            Some(v)
        }
    }
}

fn fail_closed_error(stage: &Stage) -> ApiError {
    ApiError::unavailable(
        "guard_unavailable",
        format!(
            "The '{}' check could not run and policy is fail_closed; try again shortly.",
            stage.guard.name()
        ),
    )
}

#[cfg(test)]
mod tests;
