//! The pipeline's contract, with small guards that redact, tattle, break and clamp.

use super::*;
use crate::chat::{Message, Role};
use crate::context::Principal;
use crate::finding::Finding;
use crate::guard::{Edit, Guard, GuardError};
use serde_json::Value;
use std::sync::Arc;

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
    let mut resp = serde_json::json!({"choices":[{"index":0,"message":{"content":"ok [S_1]"}}]});
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

#[tokio::test]
async fn a_rollout_enforces_for_its_share_and_monitors_the_rest() {
    let rollout = super::Rollout::new(50, super::RolloutBy::Key);
    let p = Pipeline::new(vec![stage(Tattler).rollout(Some(rollout))], vec![]);
    let in_share = |id: &str| rollout.enforces("tattler", id);
    let inside = (0..100).map(|i| format!("k{i}")).find(|k| in_share(k));
    let outside = (0..100).map(|i| format!("k{i}")).find(|k| !in_share(k));
    let (Some(inside), Some(outside)) = (inside, outside) else {
        panic!("50 % of 100 keys should give both kinds");
    };
    let ctx_for = |key: &str| {
        Context::new(
            "r",
            Principal {
                key_id: key.into(),
                ..Principal::default()
            },
        )
    };
    let mut c = ctx_for(&inside);
    let err = p.run_input(&mut request("secret"), &mut c).await;
    assert_eq!(err.unwrap_err().code.as_deref(), Some("saw"));
    assert_eq!(c.trace[0].mode, Mode::Enforce);
    assert_eq!(c.trace[0].outcome, Outcome::Block);
    for _ in 0..3 {
        let mut c = ctx_for(&outside);
        p.run_input(&mut request("secret"), &mut c).await.unwrap();
        assert_eq!(c.trace[0].mode, Mode::Monitor);
        assert_eq!(
            c.trace[0].outcome,
            Outcome::WouldBlock,
            "recorded, not enforced"
        );
    }
    let monitored = Pipeline::new(
        vec![stage(Tattler).mode(Mode::Monitor).rollout(Some(rollout))],
        vec![],
    );
    let mut c = ctx_for(&inside);
    monitored
        .run_input(&mut request("secret"), &mut c)
        .await
        .unwrap();
    assert_eq!(
        c.trace[0].mode,
        Mode::Monitor,
        "a rollout never raises monitor to enforce"
    );
}
