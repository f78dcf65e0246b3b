//! `POST /v1/chat/completions`: read and bound the body, input guards, admission, then the
//! upstream call and the answer in a task of their own — so a client that hangs up does not
//! cut the provider's call short of being booked — and output guards (a streamed answer goes
//! to [`super::stream`]).

use crate::books::{Claim, Spend};
use crate::http::{WithHeaders, error_response};
use crate::lifecycle::{Ending, Exchange, Slot};
use crate::upstream::{self, pass_error};
use axum::Extension;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;
use portcullis_core::{ApiError, ChatRequest, Usage, tokens};
use serde_json::Value;
use std::time::Instant;
use tokio::sync::oneshot;

/// `POST /v1/chat/completions`.
pub async fn chat(Extension(slot): Extension<Slot>, headers: HeaderMap, body: Body) -> Response {
    let Some(mut ex) = slot.take() else {
        return error_response(&ApiError::internal("The request lost its context."));
    };
    let app = ex.app().clone();
    let bytes = match super::read_body(&app, body).await {
        Ok(b) => b,
        Err(e) => return ex.refuse(e),
    };
    let req = match parse_chat(&bytes) {
        Ok(r) => r,
        Err(e) => return ex.refuse(e),
    };
    ex.trail.model = Some(req.model.clone());
    ex.trail.stream = req.is_stream();
    ex.trail.chat_input(&req);
    let Some(caller) = ex.authenticated().cloned() else {
        return ex.refuse(ApiError::internal("The request lost its caller."));
    };
    match caller.principal(req.user.as_deref()) {
        Ok(p) => ex.principal(p),
        Err(e) => return ex.refuse(e),
    }
    if let Err(e) = super::route_of(&app, &caller, &headers, &mut ex) {
        return ex.refuse(e);
    }
    let server = &app.config.server;
    let (req, judged) = crate::guards::run_input(
        &app.pipeline,
        &app.heavy,
        server.offload_bytes,
        req,
        &mut ex.ctx,
    )
    .await;
    ex.trail.model = Some(req.model.clone());
    if let Err(e) = judged {
        return ex.refuse(e);
    }
    // A required JSON Schema: the answer is validated and may be re-asked, so admission
    // holds every call's tokens and cost (see routes::structured).
    let mut req = req;
    let schema = match app.schemas.required(&req, ex.ctx.route.as_deref()) {
        Ok(s) => s,
        Err(e) => return ex.refuse(e),
    };
    if let Some(s) = &schema {
        crate::structured::announce(&mut req, s);
    }
    let (prompt_tokens, output_tokens) = (
        tokens::count_prompt(&req),
        output_ceiling(&req, app.books.default_max_tokens()),
    );
    let (prompt_tokens, output_tokens) = match &schema {
        Some(_) => {
            crate::structured::reask_claim(prompt_tokens, output_tokens, app.schemas.retries())
        }
        None => (prompt_tokens, output_tokens),
    };
    let claim = Claim {
        model: &req.model,
        request_id: &ex.trail.request_id.clone(),
        prompt_tokens,
        output_tokens,
    };
    match app.books.admit(&caller, &ex.ctx.principal, claim).await {
        Ok(t) => ex.admitted(t),
        Err(r) => return ex.refuse(r.error).with_headers(r.headers),
    }
    let (tx, rx) = oneshot::channel();
    tokio::spawn(answer(ex, req, tx, schema));
    match rx.await {
        Ok(resp) => resp,
        Err(_) => error_response(&ApiError::internal(
            "The gateway failed while answering; the request was recorded.",
        )),
    }
}

/// The most output tokens a request can use over all its choices: the larger of
/// `max_tokens` and `max_completion_tokens` (both are governed), or the default, times `n`.
pub fn output_ceiling(req: &ChatRequest, default: u64) -> u64 {
    let per_choice = match (req.max_tokens, req.max_completion_tokens) {
        (None, None) => default,
        (a, b) => a.unwrap_or(0).max(b.unwrap_or(0)),
    };
    per_choice.saturating_mul(req.n.unwrap_or(1).max(1))
}

/// The upstream call and the answer; runs to the end even when the client has gone.
async fn answer(
    ex: Exchange,
    mut req: ChatRequest,
    tx: oneshot::Sender<Response>,
    schema: Option<std::sync::Arc<crate::structured::Schema>>,
) {
    let app = ex.app().clone();
    let client_wants_usage = req
        .stream_options
        .as_ref()
        .and_then(|o| o.include_usage)
        .unwrap_or(false);
    let client_streams = req.is_stream();
    if schema.is_some() {
        // An answer that must be validated is asked for whole; a streaming client gets it
        // as a stream once it is valid.
        req.stream = None;
        req.stream_options = None;
    }
    if req.is_stream() && !client_wants_usage {
        // The books need real usage; ask for it and strip it before the client sees it.
        let opts = req.stream_options.get_or_insert_with(Default::default);
        opts.include_usage = Some(true);
    }
    let body = match serde_json::to_vec(&req) {
        Ok(b) => b,
        Err(e) => return deliver(tx, ex.fail(ApiError::internal(e.to_string()))),
    };
    let (mut ex, resp) =
        match call_beside(ex, &req, "/chat/completions", body, Usage::from_json).await {
            Ok(called) => called,
            Err(ended) => return deliver(tx, ended),
        };
    let status = resp.status();
    if !status.is_success() {
        let headers = ex.rate_headers();
        let response = pass_error(resp).await.with_headers(headers);
        let code = response.status().as_u16();
        return finish_delivery(ex, tx, response, code);
    }
    if let Some(schema) = schema {
        let delivery = super::structured::Delivery {
            stream: client_streams,
            usage: client_wants_usage,
        };
        return super::structured::complete(ex, req, resp, schema, tx, delivery).await;
    }
    if req.is_stream() {
        return super::stream::relay(ex, req, resp, tx, client_wants_usage).await;
    }
    let body = match upstream::read_limited(resp, app.config.upstream.max_answer_bytes).await {
        Ok(b) => b,
        Err(e) => {
            ex.spent(Spend::Unknown);
            return deliver(tx, ex.fail(e));
        }
    };
    let mut answer: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(_) => {
            ex.spent(Spend::Unknown);
            return deliver(
                tx,
                ex.fail(ApiError::bad_gateway(
                    "The upstream answered with something that is not JSON.",
                )),
            );
        }
    };
    ex.spent(match Usage::from_json(&answer) {
        Some(u) => Spend::Reported(u),
        None => Spend::Estimated(estimate_answer(&req, &answer)),
    });
    if let Err(e) = app
        .pipeline
        .run_output(&req, &mut answer, &mut ex.ctx)
        .await
    {
        ex.trail.served(answer["model"].as_str());
        return deliver(tx, ex.fail(e));
    }
    ex.trail.chat_answer(&answer);
    let out = serde_json::to_vec(&answer).unwrap_or_default();
    let mut r = Response::new(Body::from(out));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(v) = grounding_header(&ex.ctx) {
        r.headers_mut().insert(GROUNDING_HEADER, v);
    }
    let r = r.with_headers(ex.rate_headers());
    finish_delivery(ex, tx, r, 200);
}

/// The header that carries an answer's groundedness (`0.42; unsupported=2`).
pub const GROUNDING_HEADER: &str = "x-portcullis-grounding";

/// The grounding guard's score of this answer as a header value, when it scored one.
fn grounding_header(ctx: &portcullis_core::Context) -> Option<HeaderValue> {
    use portcullis_grounding::guard::{CLAIM_KIND, SCORE_KIND};
    let record = ctx.trace.iter().rev().find(|r| r.guard == "grounding")?;
    let score = record.findings.iter().find(|f| f.kind == SCORE_KIND)?;
    let unsupported = record
        .findings
        .iter()
        .filter(|f| f.kind == CLAIM_KIND)
        .count();
    HeaderValue::from_str(&format!("{:.2}; unsupported={unsupported}", score.score)).ok()
}

/// Sends the response; the exchange already ended.
pub(crate) fn deliver(tx: oneshot::Sender<Response>, resp: Response) {
    let _ = tx.send(resp);
}

/// Ends the exchange — answered, or closed when nobody is there any more to receive the answer
/// (the spend booked all the same) — then sends the response: a client that has its answer
/// can count on its record being written.
pub(crate) fn finish_delivery(
    mut ex: Exchange,
    tx: oneshot::Sender<Response>,
    resp: Response,
    status: u16,
) {
    if tx.is_closed() {
        ex.trail.undelivered();
        ex.finish(Ending::ClientClosed);
    } else {
        ex.finish(Ending::Answered(status));
        let _ = tx.send(resp);
    }
}

/// Sends the request upstream while the checks configured to run beside the call (concurrent
/// moderation) judge it; their refusal wins over whatever the model said. On a refusal or a
/// failed call the exchange is finished, with what the call cost booked (`usage_of` reads the
/// route's usage), and the response to send is the error.
pub(crate) async fn call_beside(
    mut ex: Exchange,
    req: &ChatRequest,
    path: &str,
    body: Vec<u8>,
    usage_of: fn(&Value) -> Option<Usage>,
) -> Result<(Exchange, reqwest::Response), Response> {
    let app = ex.app().clone();
    let sent = Instant::now();
    let call = app.upstream.send(reqwest::Method::POST, path, Some(body));
    let (beside, resp) = tokio::join!(app.pipeline.run_beside(req, &mut ex.ctx), call);
    ex.trail.upstream_ms = Some(sent.elapsed().as_millis() as u64);
    if let Err(refusal) = beside {
        ex.spent(discarded_spend(&app, req, resp, usage_of).await);
        return Err(ex.refuse(refusal));
    }
    match resp {
        Ok(r) => Ok((ex, r)),
        Err(e) => {
            ex.spent(Spend::of_failure(&e));
            Err(ex.fail(e))
        }
    }
}

/// The spend of an answer a beside check refused: a complete answer was paid for and its
/// usage is booked; a stream is cut at once (the provider stops generating) and its prompt
/// counted.
async fn discarded_spend(
    app: &crate::app::App,
    req: &ChatRequest,
    resp: Result<reqwest::Response, ApiError>,
    usage_of: fn(&Value) -> Option<Usage>,
) -> Spend {
    match resp {
        Ok(r) if r.status().is_success() && !req.is_stream() => {
            let body = upstream::read_limited(r, app.config.upstream.max_answer_bytes)
                .await
                .ok();
            match body
                .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                .and_then(|v| usage_of(&v))
            {
                Some(u) => Spend::Reported(u),
                None => Spend::Unknown,
            }
        }
        Ok(r) if r.status().is_success() => Spend::Estimated(Usage {
            prompt_tokens: tokens::count_prompt(req),
            ..Usage::default()
        }),
        Ok(_) => Spend::Nothing,
        Err(e) => Spend::of_failure(&e),
    }
}

/// The gateway's count of a complete answer that carried no usage: the prompt by the
/// model's tokenizer, and every choice's text and tool-call arguments.
pub(crate) fn estimate_answer(req: &ChatRequest, answer: &Value) -> Usage {
    let enc = tokens::Encoding::for_model(&req.model);
    let mut completion = 0u64;
    for c in answer["choices"].as_array().into_iter().flatten() {
        let m = &c["message"];
        if let Some(t) = m["content"].as_str() {
            completion = completion.saturating_add(enc.count(t) as u64);
        }
        for call in m["tool_calls"].as_array().into_iter().flatten() {
            if let Some(a) = call["function"]["arguments"].as_str() {
                completion = completion.saturating_add(enc.count(a) as u64);
            }
        }
    }
    let prompt = tokens::count_prompt(req);
    Usage {
        prompt_tokens: prompt,
        completion_tokens: completion,
        total_tokens: prompt.saturating_add(completion),
        cached_tokens: 0,
    }
}

/// Parses and bounds a chat request; errors name the field at fault.
fn parse_chat(bytes: &[u8]) -> Result<ChatRequest, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let mut req: ChatRequest = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            ApiError::invalid_request(format!(
                "We could not parse the JSON body of your request ({inner}). Send a JSON object."
            ))
        } else {
            let param = path.split(['.', '[']).next().unwrap_or("").to_owned();
            let mut err = ApiError::invalid_request(format!("Invalid value at '{path}': {inner}"));
            if !param.is_empty() && param != "?" {
                err = err.with_param(param);
            }
            err
        }
    })?;
    if req.model.trim().is_empty() {
        return Err(ApiError::invalid_request("'model' must not be empty.").with_param("model"));
    }
    if req.messages.is_empty() {
        return Err(
            ApiError::invalid_request("'messages' must contain at least one message.")
                .with_param("messages"),
        );
    }
    if req.n.is_some_and(|n| n == 0 || n > MAX_CHOICES) {
        return Err(
            ApiError::invalid_request(format!("'n' must be between 1 and {MAX_CHOICES}."))
                .with_param("n"),
        );
    }
    // Retrieved documents (`portcullis: {documents}`) become document messages; the
    // extension itself never reaches the provider.
    let docs = req.take_documents()?;
    req.attach_documents(docs);
    Ok(req)
}

/// The most choices one request may ask for (OpenAI's own ceiling is 128).
pub const MAX_CHOICES: u64 = 128;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_errors_are_bad_requests_naming_the_field() {
        let e = parse_chat(b"{not json").unwrap_err();
        assert_eq!(e.status, 400);
        let e = parse_chat(br#"{"model":"m","messages":"hi"}"#).unwrap_err();
        assert_eq!((e.status, e.param.as_deref()), (400, Some("messages")));
        let e = parse_chat(br#"{"model":"m","messages":[]}"#).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages"));
        let e = parse_chat(
            br#"{"model":"m","messages":[{"role":"user","content":"x"}],"temperature":"hot"}"#,
        )
        .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("temperature"));
        assert!(parse_chat(br#"{"model":"m","messages":[{"role":"user","content":"x"}]}"#).is_ok());
        let e = parse_chat(br#"{"model":"m","messages":[{"role":"user","content":"x"}],"n":0}"#)
            .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("n"));
        let e = parse_chat(
            br#"{"model":"m","messages":[{"role":"user","content":"x"}],"portcullis":{"documents":[1]}}"#,
        )
        .unwrap_err();
        assert_eq!(
            (e.status, e.param.as_deref()),
            (400, Some("portcullis.documents[0]"))
        );
        let r = parse_chat(
            br#"{"model":"m","messages":[{"role":"user","content":"x"}],"portcullis":{"documents":["d"]}}"#,
        )
        .unwrap();
        assert_eq!(r.documents, ["d"]);
        assert!(r.messages[0].document && !r.extra.contains_key("portcullis"));
    }

    #[test]
    fn the_output_ceiling_governs_both_names_and_every_choice() {
        let req = |v: Value| serde_json::from_value::<ChatRequest>(v).unwrap();
        let base = serde_json::json!({"model": "m", "messages": []});
        assert_eq!(output_ceiling(&req(base.clone()), 4096), 4096);
        let mut both = base.clone();
        both["max_tokens"] = 100.into();
        both["max_completion_tokens"] = 100_000.into();
        assert_eq!(output_ceiling(&req(both.clone()), 4096), 100_000);
        both["n"] = 100.into();
        assert_eq!(output_ceiling(&req(both), 4096), 10_000_000);
        let mut huge = base;
        huge["max_tokens"] = u64::MAX.into();
        huge["n"] = 128.into();
        assert_eq!(output_ceiling(&req(huge), 4096), u64::MAX, "saturates");
    }
}
