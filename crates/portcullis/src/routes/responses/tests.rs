//! The mapping between Responses bodies and the pipeline's chat request, and the output
//! places, without a server.

use super::map::map;
use super::output;
use portcullis_core::segment::write_request;
use portcullis_core::{Context, Message, Pipeline, Principal, Role, Source};
use serde_json::{Map, Value, json};

fn obj(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap()
}

fn body() -> Map<String, Value> {
    obj(
        json!({"model": "gpt-4o-mini", "instructions": "be brief", "store": false,
        "max_output_tokens": 64,
        "input": [
            {"role": "developer", "content": "house rules"},
            {"type": "message", "role": "user", "content": [
                {"type": "input_text", "text": "hello"},
                {"type": "input_image", "image_url": "https://x/i.png"}]},
            {"type": "reasoning", "id": "rs_1", "summary": []},
            {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{\"a\":1}"},
            {"type": "function_call_output", "call_id": "c1", "output": "result"},
            {"type": "message", "role": "assistant", "content": [
                {"type": "output_text", "text": "earlier answer"}]}]}),
    )
}

#[test]
fn every_text_place_maps_to_a_message_with_its_source() {
    let m = map(&body()).unwrap();
    let segs = m.req.segments();
    let got: Vec<_> = segs.iter().map(|s| (s.source, s.text.as_str())).collect();
    assert_eq!(
        got,
        vec![
            (Source::System, "be brief"),
            (Source::System, "house rules"),
            (Source::User, "hello"),
            (Source::Assistant, "{\"a\":1}"),
            (Source::Tool, "result"),
            (Source::Assistant, "earlier answer"),
        ]
    );
    assert_eq!(m.req.max_completion_tokens, Some(64));
    assert_eq!(m.req.extra["store"], false);
    assert!(!m.req.extra.contains_key("input") && !m.req.extra.contains_key("instructions"));
    assert_eq!(m.req.messages[4].tool_call_id.as_deref(), Some("c1"));
    // The image counts at its floor when admission counts the prompt.
    let parts = serde_json::to_value(&m.req.messages[2].content).unwrap();
    assert_eq!(parts[1]["type"], "image_url");
}

#[test]
fn edits_go_back_where_they_came_from_and_nothing_else_changes() {
    let original = body();
    let mut m = map(&original).unwrap();
    for mut s in m.req.segments() {
        s.text = s.text.to_uppercase();
        write_request(&mut m.req, &s);
    }
    let mut raw = original.clone();
    m.write_back(&mut raw);
    let input = raw["input"].as_array().unwrap();
    assert_eq!(raw["instructions"], "BE BRIEF");
    assert_eq!(input[0]["content"], "HOUSE RULES");
    assert_eq!(input[1]["content"][0]["text"], "HELLO");
    assert_eq!(input[1]["content"][1], original["input"][1]["content"][1]);
    assert_eq!(
        input[2], original["input"][2],
        "a reasoning item passes untouched"
    );
    assert_eq!(input[3]["arguments"], "{\"A\":1}");
    assert_eq!(input[4]["output"], "RESULT");
    assert_eq!(input[4]["call_id"], "c1");
    assert_eq!(input[5]["content"][0]["text"], "EARLIER ANSWER");
    assert_eq!(raw["max_output_tokens"], 64);
    // Untouched, a body goes back exactly as it came.
    let m = map(&original).unwrap();
    let mut same = original.clone();
    m.write_back(&mut same);
    assert_eq!(same, original);
}

#[test]
fn inserted_messages_join_the_instructions_or_the_input_where_they_stand() {
    let mut m = map(&obj(json!({"model": "m", "input": "hi"}))).unwrap();
    m.req
        .messages
        .insert(0, Message::text(Role::System, "preamble"));
    m.req.messages.push(Message::text(Role::System, "after"));
    let mut raw = obj(json!({"model": "m", "input": "hi"}));
    m.write_back(&mut raw);
    assert_eq!(raw["instructions"], "preamble");
    assert_eq!(
        raw["input"],
        json!([{"role": "user", "content": "hi"}, {"role": "system", "content": "after"}])
    );
    let mut m = map(&body()).unwrap();
    m.req
        .messages
        .insert(0, Message::text(Role::System, "preamble"));
    let mut raw = body();
    m.write_back(&mut raw);
    assert_eq!(raw["instructions"], "preamble\n\nbe brief");
    assert_eq!(raw["input"], body()["input"]);
}

#[test]
fn parameters_the_guards_set_go_back_under_their_responses_names() {
    let mut m = map(&body()).unwrap();
    m.req.set_param("max_tokens", json!(32)).unwrap();
    m.req.set_param("max_completion_tokens", json!(32)).unwrap();
    m.req.set_param("temperature", json!(0.2)).unwrap();
    m.req.set_param("frequency_penalty", json!(0.5)).unwrap();
    m.req.set_param("store", Value::Null).unwrap();
    m.req.set_param("model", json!("gpt-4o")).unwrap();
    let mut raw = body();
    m.write_back(&mut raw);
    assert_eq!(raw["max_output_tokens"], 32);
    assert_eq!(raw["temperature"], 0.2);
    assert_eq!(raw["model"], "gpt-4o");
    assert!(!raw.contains_key("store"));
    assert!(
        !raw.contains_key("frequency_penalty") && !raw.contains_key("max_tokens"),
        "the Responses API has no such parameters"
    );
}

#[test]
fn malformed_bodies_are_refused_naming_the_field() {
    let param = |v: Value| map(&obj(v)).unwrap_err().param;
    assert_eq!(param(json!({"input": "x"})).as_deref(), Some("model"));
    assert_eq!(
        param(json!({"model": "m", "input": 5})).as_deref(),
        Some("input")
    );
    assert_eq!(
        param(json!({"model": "m", "input": [5]})).as_deref(),
        Some("input")
    );
    assert_eq!(
        param(json!({"model": "m", "input": "x", "max_output_tokens": "lots"})).as_deref(),
        Some("max_output_tokens")
    );
    assert_eq!(
        param(json!({"model": "m", "input": "x", "temperature": "hot"})).as_deref(),
        Some("temperature")
    );
    assert_eq!(
        param(json!({"model": "m", "instructions": ["x"]})).as_deref(),
        Some("instructions")
    );
    assert_eq!(
        param(json!({"model": "m", "messages": [{"role": "user", "content": "x"}]})).as_deref(),
        Some("messages"),
        "a chat body would pass upstream unjudged"
    );
    assert_eq!(
        param(json!({"model": "m", "input": "q", "portcullis": {"documents": ["d"]}})).as_deref(),
        Some("portcullis"),
        "the documents extension is not forwarded unread"
    );
}

#[tokio::test]
async fn a_whole_answer_has_its_pseudonyms_restored_in_every_place() {
    let mut answer = json!({"output": [
        {"type": "reasoning", "summary": [{"type": "summary_text", "text": "about [EMAIL_1]"}]},
        {"type": "message", "content": [
            {"type": "output_text", "text": "Write to [EMAIL_1]."},
            {"type": "refusal", "refusal": "not [EMAIL_1]"}]},
        {"type": "function_call", "name": "send", "arguments": "{\"to\":\"[EMAIL_1]\"}"}],
        "output_text": "Write to [EMAIL_1]."});
    let mut ctx = Context::new("r", Principal::default());
    ctx.vault
        .remember("[EMAIL_1]".into(), "ann@example.com".into());
    let req = map(&obj(json!({"model": "m", "input": "x"}))).unwrap().req;
    output::guard(&Pipeline::default(), &req, &mut answer, &mut ctx)
        .await
        .unwrap();
    assert_eq!(
        answer["output"][0]["summary"][0]["text"],
        "about ann@example.com"
    );
    assert_eq!(
        answer["output"][1]["content"][0]["text"],
        "Write to ann@example.com."
    );
    assert_eq!(
        answer["output"][1]["content"][1]["refusal"],
        "not ann@example.com"
    );
    assert_eq!(
        answer["output"][2]["arguments"],
        "{\"to\":\"ann@example.com\"}"
    );
    assert_eq!(answer["output_text"], "Write to ann@example.com.");
}

#[test]
fn responses_usage_is_booked_with_cached_and_reasoning_tokens() {
    let u = output::usage_of(&json!({"usage": {"input_tokens": 100,
        "input_tokens_details": {"cached_tokens": 40}, "output_tokens": 30,
        "output_tokens_details": {"reasoning_tokens": 20}, "total_tokens": 130}}))
    .unwrap();
    assert_eq!(
        (
            u.prompt_tokens,
            u.cached_tokens,
            u.completion_tokens,
            u.total_tokens
        ),
        (100, 40, 30, 130)
    );
    assert!(output::usage_of(&json!({"usage": null})).is_none());
    assert!(output::usage_of(&json!({"status": "queued"})).is_none());
}
