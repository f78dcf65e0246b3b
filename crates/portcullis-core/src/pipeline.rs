//! The pipeline: an ordered list of stages built from config. It, not the guards, owns mode
//! (enforce / monitor), failure policy, timeouts, the order, and applying each stage's edits
//! before the next stage runs — so a remote check never sees text an earlier guard removed.

use crate::chat::ChatRequest;
use crate::context::{Context, Direction, GuardRecord, Outcome};
use crate::error::ApiError;
use crate::guard::{Action, Edit, Guard, GuardError, Input, Output, Verdict, Window};
use crate::segment::{self, Segment};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How a stage acts on its verdicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Blocks and transforms take effect.
    #[default]
    Enforce,
    /// Verdicts are recorded, nothing is changed or refused: for trying a policy out.
    Monitor,
    /// The stage does not run.
    Off,
}

/// What happens when a guard cannot decide (provider down, timeout).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureMode {
    /// Let the request through and record the error.
    #[default]
    FailOpen,
    /// Refuse the request with 503.
    FailClosed,
}

/// One guard in its place, with how the pipeline treats it.
#[derive(Clone)]
pub struct Stage {
    pub guard: Arc<dyn Guard>,
    pub mode: Mode,
    pub on_error: FailureMode,
    pub timeout: Option<Duration>,
    /// An input check that runs while the upstream call is under way (it may block or flag,
    /// not edit): its latency hides behind the model's, and a refusal discards the answer.
    pub beside: bool,
}

impl Stage {
    /// An enforcing, fail-open stage with no timeout.
    pub fn new(guard: Arc<dyn Guard>) -> Self {
        Stage {
            guard,
            mode: Mode::Enforce,
            on_error: FailureMode::FailOpen,
            timeout: None,
            beside: false,
        }
    }

    /// Runs the stage beside the upstream call instead of before it.
    pub fn beside(mut self, beside: bool) -> Self {
        self.beside = beside;
        self
    }

    /// Sets the mode.
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// Sets the failure policy.
    pub fn on_error(mut self, on_error: FailureMode) -> Self {
        self.on_error = on_error;
        self
    }

    /// Sets the timeout.
    pub fn timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }
}

impl std::fmt::Debug for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stage")
            .field("guard", &self.guard.name())
            .field("mode", &self.mode)
            .field("on_error", &self.on_error)
            .field("timeout", &self.timeout)
            .finish()
    }
}

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
            let refusal = enforced_block(stage, verdict);
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
                }) if stage.mode == Mode::Enforce => {
                    apply_input_edits(req, &mut segments, edits, ctx, &mut record);
                    segments = req.segments();
                    None
                }
                other => enforced_block(stage, other),
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
            let mut record = record(stage, Direction::Output);
            let verdict = settle(stage, result, &mut record);
            let refusal = match verdict {
                Some(Verdict {
                    action: Action::Transform(edits),
                    ..
                }) if stage.mode == Mode::Enforce => {
                    let floor = window.map_or(0, |w| w.editable_from);
                    apply_text_edits(segments, &edits, floor);
                    None
                }
                other => enforced_block(stage, other),
            };
            conclude(stage, ctx, record, started, refusal)?;
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
    let mut record = record(stage, Direction::Input);
    let verdict = settle(stage, result, &mut record);
    (verdict, record, started)
}

/// The refusal in a verdict, when the stage enforces (a monitoring stage only records).
fn enforced_block(stage: &Stage, verdict: Option<Verdict>) -> Option<ApiError> {
    match verdict {
        Some(Verdict {
            action: Action::Block(e),
            ..
        }) if stage.mode == Mode::Enforce => Some(e),
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
    finish(ctx, record, started);
    if let Some(e) = refusal {
        return Err(e);
    }
    if let Some(Outcome::ErrorClosed) = ctx.trace.last().map(|r| r.outcome) {
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

fn record(stage: &Stage, direction: Direction) -> GuardRecord {
    GuardRecord {
        guard: stage.guard.name().to_owned(),
        direction,
        outcome: Outcome::Allow,
        findings: Vec::new(),
        changes: Vec::new(),
        error: None,
        micros: 0,
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
            let monitor = stage.mode == Mode::Monitor;
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

fn finish(ctx: &mut Context, mut record: GuardRecord, started: Instant) {
    record.micros = started.elapsed().as_micros() as u64;
    ctx.trace.push(record);
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

fn apply_input_edits(
    req: &mut ChatRequest,
    segments: &mut [Segment],
    edits: Vec<Edit>,
    ctx: &mut Context,
    record: &mut GuardRecord,
) {
    let touched = apply_text_edits(segments, &edits, 0);
    for i in touched {
        segment::write_request(req, &segments[i]);
    }
    let mut inserts = Vec::new();
    for edit in edits {
        match edit {
            Edit::Replace { .. } => {}
            Edit::Remember {
                placeholder,
                original,
            } => ctx.vault.remember(placeholder, original),
            Edit::SetParam { name, value } => {
                let before = req.param(&name);
                match req.set_param(&name, value.clone()) {
                    Ok(()) => record.changes.push(format!(
                        "{name}: {} -> {}",
                        before.map_or_else(|| "absent".to_owned(), |v| v.to_string()),
                        if value.is_null() {
                            "absent".to_owned()
                        } else {
                            value.to_string()
                        }
                    )),
                    Err(e) => record.error = Some(format!("could not set {e}")),
                }
            }
            Edit::InsertMessage { index, message } => inserts.push((index, message)),
        }
    }
    inserts.sort_by_key(|(i, _)| std::cmp::Reverse(*i));
    for (index, message) in inserts {
        let at = index.min(req.messages.len());
        req.messages.insert(at, message);
        record.changes.push(format!("messages: inserted at {at}"));
    }
}

/// Applies `Replace` edits to segments (byte ranges, at or after `floor`); overlapping or
/// malformed edits are skipped rather than trusted. Returns the segments that changed.
fn apply_text_edits(segments: &mut [Segment], edits: &[Edit], floor: usize) -> Vec<usize> {
    let mut per_segment: Vec<(usize, std::ops::Range<usize>, &str)> = edits
        .iter()
        .filter_map(|e| match e {
            Edit::Replace {
                segment,
                range,
                with,
            } => Some((*segment, range.clone(), with.as_str())),
            _ => None,
        })
        .collect();
    // Earliest (then longest) edit wins an overlap; then apply from the end backwards so the
    // earlier ranges stay valid.
    per_segment.sort_by(|a, b| (a.0, a.1.start, b.1.end).cmp(&(b.0, b.1.start, a.1.end)));
    let mut kept: Vec<(usize, std::ops::Range<usize>, &str)> = Vec::new();
    for (seg, range, with) in per_segment {
        let Some(s) = segments.get(seg) else {
            continue;
        };
        let valid = range.start <= range.end
            && range.end <= s.text.len()
            && range.start >= floor
            && s.text.is_char_boundary(range.start)
            && s.text.is_char_boundary(range.end);
        let overlaps =
            matches!(kept.last(), Some((ls, lr, _)) if *ls == seg && range.start < lr.end);
        if valid && !overlaps {
            kept.push((seg, range, with));
        }
    }
    let mut touched = Vec::new();
    for (seg, range, with) in kept.into_iter().rev() {
        segments[seg].text.replace_range(range, with);
        if touched.last() != Some(&seg) {
            touched.push(seg);
        }
    }
    touched.reverse();
    touched
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::{Message, Role};
    use crate::context::Principal;
    use crate::finding::Finding;
    use crate::guard::GuardError;

    struct Redactor;
    #[async_trait::async_trait]
    impl Guard for Redactor {
        fn name(&self) -> &str {
            "redactor"
        }
        async fn check_input(&self, input: &Input<'_>, _: &Context) -> Result<Verdict, GuardError> {
            let mut edits = Vec::new();
            for (i, s) in input.segments.iter().enumerate() {
                if let Some(at) = s.text.find("secret") {
                    edits.push(Edit::Replace {
                        segment: i,
                        range: at..at + 6,
                        with: "[S_1]".into(),
                    });
                    edits.push(Edit::Remember {
                        placeholder: "[S_1]".into(),
                        original: "secret".into(),
                    });
                }
            }
            Ok(Verdict::transform(
                edits,
                vec![Finding::new("S", "test", 1.0)],
            ))
        }
    }

    /// Blocks when it sees the text an earlier stage should have removed.
    struct Tattler;
    #[async_trait::async_trait]
    impl Guard for Tattler {
        fn name(&self) -> &str {
            "tattler"
        }
        async fn check_input(&self, input: &Input<'_>, _: &Context) -> Result<Verdict, GuardError> {
            if input.segments.iter().any(|s| s.text.contains("secret")) {
                return Ok(Verdict::block(ApiError::policy("saw", "saw it"), vec![]));
            }
            Ok(Verdict::allow())
        }
        async fn check_output(&self, out: &Output<'_>, _: &Context) -> Result<Verdict, GuardError> {
            if out.segments.iter().any(|s| s.text.contains("forbidden")) {
                return Ok(Verdict::block(ApiError::policy("out", "withheld"), vec![]));
            }
            Ok(Verdict::allow())
        }
    }

    struct Broken;
    #[async_trait::async_trait]
    impl Guard for Broken {
        fn name(&self) -> &str {
            "broken"
        }
        async fn check_input(&self, _: &Input<'_>, _: &Context) -> Result<Verdict, GuardError> {
            Err(GuardError::Unavailable("down".into()))
        }
    }

    struct Clamp;
    #[async_trait::async_trait]
    impl Guard for Clamp {
        fn name(&self) -> &str {
            "clamp"
        }
        async fn check_input(&self, input: &Input<'_>, _: &Context) -> Result<Verdict, GuardError> {
            if input.request.temperature.unwrap_or(1.0) > 0.3 {
                return Ok(Verdict::transform(
                    vec![Edit::SetParam {
                        name: "temperature".into(),
                        value: Value::from(0.3),
                    }],
                    vec![],
                ));
            }
            Ok(Verdict::allow())
        }
    }

    fn request(text: &str) -> ChatRequest {
        ChatRequest {
            model: "m".into(),
            messages: vec![Message::text(Role::User, text)],
            ..Default::default()
        }
    }

    fn ctx() -> Context {
        Context::new("req-1", Principal::default())
    }

    fn stage(g: impl Guard + 'static) -> Stage {
        Stage::new(Arc::new(g))
    }

    #[tokio::test]
    async fn beside_stages_judge_the_request_as_sent_and_never_edit_it() {
        // The tattler runs beside the call: the ordinary stages pass the request, and the
        // refusal comes from run_beside, after the redactor's edit (so it sees no secret
        // here) or before any edit when the redactor is off.
        let p = Pipeline::new(
            vec![
                stage(Redactor),
                stage(Tattler).beside(true),
                stage(Clamp).beside(true),
            ],
            vec![],
        );
        assert_eq!(p.input_stages().len(), 1);
        assert_eq!(p.beside_stages().len(), 2);
        let mut req = request("my secret is out");
        req.temperature = Some(0.9);
        let mut c = ctx();
        p.run_input(&mut req, &mut c).await.unwrap();
        assert!(p.run_beside(&req, &mut c).await.is_ok());
        assert_eq!(
            req.temperature,
            Some(0.9),
            "a beside stage cannot edit what was sent"
        );

        let p = Pipeline::new(vec![stage(Tattler).beside(true)], vec![]);
        let mut req = request("my secret is out");
        let mut c = ctx();
        p.run_input(&mut req, &mut c).await.unwrap();
        let e = p.run_beside(&req, &mut c).await.unwrap_err();
        assert_eq!(e.code.as_deref(), Some("saw"));
        assert_eq!(c.trace.last().map(|r| r.guard.as_str()), Some("tattler"));
    }

    #[tokio::test]
    async fn edits_apply_before_the_next_stage_and_restore_in_the_answer() {
        let p = Pipeline::new(vec![stage(Redactor), stage(Tattler)], vec![stage(Tattler)]);
        let mut req = request("my secret is out");
        let mut c = ctx();
        p.run_input(&mut req, &mut c).await.unwrap();
        assert_eq!(req.messages[0].joined_text(), "my [S_1] is out");
        let outcomes: Vec<_> = c.outcomes().collect();
        assert_eq!(outcomes, vec![Outcome::Transform, Outcome::Allow]);
        let mut resp =
            serde_json::json!({"choices":[{"index":0,"message":{"content":"ok [S_1]"}}]});
        p.run_output(&req, &mut resp, &mut c).await.unwrap();
        assert_eq!(resp["choices"][0]["message"]["content"], "ok secret");
    }

    #[tokio::test]
    async fn monitor_mode_records_but_does_not_act() {
        let p = Pipeline::new(
            vec![
                stage(Redactor).mode(Mode::Monitor),
                stage(Tattler).mode(Mode::Monitor),
            ],
            vec![],
        );
        let mut req = request("my secret");
        let mut c = ctx();
        p.run_input(&mut req, &mut c).await.unwrap();
        assert_eq!(req.messages[0].joined_text(), "my secret");
        let outcomes: Vec<_> = c.outcomes().collect();
        assert_eq!(outcomes, vec![Outcome::WouldTransform, Outcome::WouldBlock]);
    }

    #[tokio::test]
    async fn blocks_stop_the_pipeline_and_off_stages_never_run() {
        let p = Pipeline::new(
            vec![stage(Tattler), stage(Redactor).mode(Mode::Off)],
            vec![],
        );
        let mut c = ctx();
        let err = p
            .run_input(&mut request("secret"), &mut c)
            .await
            .unwrap_err();
        assert_eq!(err.code.as_deref(), Some("saw"));
        assert_eq!(c.trace.len(), 1);
    }

    #[tokio::test]
    async fn failure_mode_decides_when_a_guard_cannot() {
        let open = Pipeline::new(vec![stage(Broken)], vec![]);
        let mut c = ctx();
        open.run_input(&mut request("x"), &mut c).await.unwrap();
        assert_eq!(c.trace[0].outcome, Outcome::ErrorOpen);
        let closed = Pipeline::new(
            vec![stage(Broken).on_error(FailureMode::FailClosed)],
            vec![],
        );
        let mut c = ctx();
        let err = closed
            .run_input(&mut request("x"), &mut c)
            .await
            .unwrap_err();
        assert_eq!(err.status, 503);
        assert_eq!(c.trace[0].outcome, Outcome::ErrorClosed);
    }

    #[tokio::test]
    async fn param_changes_are_recorded() {
        let p = Pipeline::new(vec![stage(Clamp)], vec![]);
        let mut req = request("x");
        req.temperature = Some(1.5);
        let mut c = ctx();
        p.run_input(&mut req, &mut c).await.unwrap();
        assert_eq!(req.temperature, Some(0.3));
        assert_eq!(c.trace[0].changes, vec!["temperature: 1.5 -> 0.3"]);
    }

    #[tokio::test]
    async fn output_blocks_withhold_the_answer() {
        let p = Pipeline::new(vec![], vec![stage(Tattler)]);
        let mut resp = serde_json::json!({"choices":[{"message":{"content":"forbidden"}}]});
        let err = p
            .run_output(&request("x"), &mut resp, &mut ctx())
            .await
            .unwrap_err();
        assert_eq!(err.code.as_deref(), Some("out"));
    }

    #[test]
    fn bad_edits_are_skipped_not_trusted() {
        let mut segs = vec![Segment::free("héllo world", crate::Source::User)];
        let edits = vec![
            Edit::Replace {
                segment: 0,
                range: 0..2,
                with: "X".into(),
            }, // splits 'é'
            Edit::Replace {
                segment: 0,
                range: 7..12,
                with: "W".into(),
            },
            Edit::Replace {
                segment: 0,
                range: 8..10,
                with: "Y".into(),
            }, // overlaps
            Edit::Replace {
                segment: 3,
                range: 0..1,
                with: "Z".into(),
            },
        ];
        let touched = apply_text_edits(&mut segs, &edits, 0);
        assert_eq!(touched, vec![0]);
        assert_eq!(segs[0].text, "héllo W");
    }
}
