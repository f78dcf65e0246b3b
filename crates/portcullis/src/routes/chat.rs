//! `POST /v1/chat/completions`: authenticate, parse and bound, input guards, admission,
//! the upstream call (streamed answers go to [`super::stream`]), output guards, books.

use crate::app::App;
use crate::audit::Trail;
use crate::http::{RequestId, WithHeaders, read_body};
use crate::lifecycle;
use crate::upstream::pass_error;
use axum::Extension;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;
use portcullis_core::{ApiError, ChatRequest, Context, Usage};
use serde_json::Value;
use std::sync::Arc;
use std::time::Instant;

/// `POST /v1/chat/completions`.
pub async fn chat(
    State(app): State<Arc<App>>,
    Extension(RequestId(rid)): Extension<RequestId>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let mut trail = Trail::new(rid.clone(), "/v1/chat/completions");
    let caller = match app.authenticate(&headers).await {
        Ok(c) => c,
        Err(e) => return lifecycle::refuse(&app, trail, e),
    };
    trail.caller(&caller);
    let bytes = match read_body(body, app.config.server.max_body_bytes).await {
        Ok(b) => b,
        Err(e) => return lifecycle::refuse(&app, trail, e),
    };
    let mut req = match parse_chat(&bytes) {
        Ok(r) => r,
        Err(e) => return lifecycle::refuse(&app, trail, e),
    };
    trail.model = Some(req.model.clone());
    trail.stream = req.is_stream();
    let mut ctx = Context::new(rid, caller.principal(req.user.as_deref()));
    ctx.route = headers
        .get("x-portcullis-route")
        .and_then(|v| v.to_str().ok())
        .filter(|r| !r.is_empty())
        .map(str::to_owned);
    trail.principal(&ctx.principal);
    if let Err(e) = app.pipeline.run_input(&mut req, &mut ctx).await {
        trail.model = Some(req.model.clone());
        return lifecycle::refuse_with(&app, trail, e, &ctx);
    }
    trail.model = Some(req.model.clone());
    let ticket = match app
        .books
        .admit(&caller, &ctx.principal, &req, &ctx.request_id)
        .await
    {
        Ok(t) => t,
        Err(e) => {
            return lifecycle::refuse_with(&app, trail, e.error, &ctx).with_headers(e.headers);
        }
    };
    let client_wants_usage = req
        .stream_options
        .as_ref()
        .and_then(|o| o.include_usage)
        .unwrap_or(false);
    if req.is_stream() && !client_wants_usage {
        // The books need real usage; ask for it and strip it before the client sees it.
        let opts = req.stream_options.get_or_insert_with(Default::default);
        opts.include_usage = Some(true);
    }
    let body = match serde_json::to_vec(&req) {
        Ok(b) => b,
        Err(e) => {
            app.books.release(ticket).await;
            return lifecycle::refuse_with(&app, trail, ApiError::internal(e.to_string()), &ctx);
        }
    };
    let sent = Instant::now();
    let call = app
        .upstream
        .send(reqwest::Method::POST, "/chat/completions", Some(body));
    // Checks configured to run beside the call (concurrent moderation) judge the request
    // while the model answers; their refusal wins over whatever the model said.
    let (beside, resp) = tokio::join!(app.pipeline.run_beside(&req, &mut ctx), call);
    if let Err(refusal) = beside {
        trail.upstream_ms = Some(sent.elapsed().as_millis() as u64);
        discard_answer(&app, ticket, &req, resp, &mut trail).await;
        return lifecycle::refuse_with(&app, trail, refusal, &ctx);
    }
    let resp = match resp {
        Ok(r) => r,
        Err(e) => {
            app.books.release(ticket).await;
            trail.upstream_ms = Some(sent.elapsed().as_millis() as u64);
            return lifecycle::fail_with(&app, trail, e, &ctx);
        }
    };
    let status = resp.status();
    let rate_headers = ticket.headers();
    if !status.is_success() {
        app.books.release(ticket).await;
        trail.upstream_ms = Some(sent.elapsed().as_millis() as u64);
        let response = pass_error(resp).await;
        trail.status = response.status().as_u16();
        lifecycle::finish(&app, trail, &ctx, None);
        return response.with_headers(rate_headers);
    }
    if req.is_stream() {
        return super::stream::answer(app, trail, ctx, req, resp, ticket, client_wants_usage, sent)
            .with_headers(rate_headers);
    }
    let body = match resp.bytes().await {
        Ok(b) => b,
        Err(e) => {
            app.books.release(ticket).await;
            return lifecycle::fail_with(&app, trail, crate::upstream::transport_error(&e), &ctx);
        }
    };
    trail.upstream_ms = Some(sent.elapsed().as_millis() as u64);
    let mut answer: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(_) => {
            app.books.release(ticket).await;
            return lifecycle::fail_with(
                &app,
                trail,
                ApiError::bad_gateway("The upstream answered with something that is not JSON."),
                &ctx,
            );
        }
    };
    let usage = Usage::from_json(&answer);
    app.books.settle(ticket, &req.model, usage.as_ref()).await;
    trail.usage(usage.as_ref(), &app.books, &req.model);
    if let Err(e) = app.pipeline.run_output(&req, &mut answer, &mut ctx).await {
        return lifecycle::refuse_with(&app, trail, e, &ctx).with_headers(rate_headers);
    }
    let out = serde_json::to_vec(&answer).unwrap_or_default();
    trail.status = 200;
    lifecycle::finish(&app, trail, &ctx, None);
    let mut r = Response::new(Body::from(out));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r.with_headers(rate_headers)
}

/// Drops an answer a beside check refused. A complete answer was paid for, so its usage is
/// booked; a stream is cut (the provider stops generating) and its reservation released.
async fn discard_answer(
    app: &App,
    ticket: crate::books::Ticket,
    req: &ChatRequest,
    resp: Result<reqwest::Response, ApiError>,
    trail: &mut Trail,
) {
    let answer = match resp {
        Ok(r) if r.status().is_success() && !req.is_stream() => r.bytes().await.ok(),
        _ => None,
    };
    let usage = answer
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .and_then(|v| Usage::from_json(&v));
    match usage {
        Some(u) => {
            app.books.settle(ticket, &req.model, Some(&u)).await;
            trail.usage(Some(&u), &app.books, &req.model);
        }
        None => app.books.release(ticket).await,
    }
}

/// Parses and bounds a chat request; errors name the field at fault.
fn parse_chat(bytes: &[u8]) -> Result<ChatRequest, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let req: ChatRequest = serde_path_to_error::deserialize(de).map_err(|e| {
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
    Ok(req)
}

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
    }
}
