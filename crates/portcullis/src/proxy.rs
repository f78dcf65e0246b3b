//! The chat path (authenticate, parse, input guards, admission, upstream, output guards,
//! books) and the pass-through endpoints.

use crate::app::App;
use crate::audit::Trail;
use crate::server::{RequestId, error_response, read_body};
use crate::sse::{self, EventSplitter};
use axum::Extension;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::StreamExt;
use portcullis_core::{ApiError, ChatRequest, Context, StreamScanner, Usage};
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
        Err(e) => return app.refuse(trail, e),
    };
    trail.caller(&caller);
    let bytes = match read_body(body, app.config.server.max_body_bytes).await {
        Ok(b) => b,
        Err(e) => return app.refuse(trail, e),
    };
    let mut req = match parse_chat(&bytes) {
        Ok(r) => r,
        Err(e) => return app.refuse(trail, e),
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
        return app.refuse_with(trail, e, &ctx);
    }
    trail.model = Some(req.model.clone());
    let ticket = match app
        .books
        .admit(&caller, &ctx.principal, &req, &ctx.request_id)
        .await
    {
        Ok(t) => t,
        Err(e) => {
            return app
                .refuse_with(trail, e.error, &ctx)
                .with_headers(e.headers);
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
            return app.refuse_with(trail, ApiError::internal(e.to_string()), &ctx);
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
        return app.refuse_with(trail, refusal, &ctx);
    }
    let resp = match resp {
        Ok(r) => r,
        Err(e) => {
            app.books.release(ticket).await;
            trail.upstream_ms = Some(sent.elapsed().as_millis() as u64);
            return app.fail_with(trail, e, &ctx);
        }
    };
    let status = resp.status();
    let rate_headers = ticket.headers();
    if !status.is_success() {
        app.books.release(ticket).await;
        trail.upstream_ms = Some(sent.elapsed().as_millis() as u64);
        let response = pass_error(resp).await;
        trail.status = response.status().as_u16();
        app.finish(trail, &ctx, None);
        return response.with_headers(rate_headers);
    }
    if req.is_stream() {
        return stream_answer(app, trail, ctx, req, resp, ticket, client_wants_usage, sent)
            .with_headers(rate_headers);
    }
    let body = match resp.bytes().await {
        Ok(b) => b,
        Err(e) => {
            app.books.release(ticket).await;
            return app.fail_with(trail, crate::upstream::transport_error(&e), &ctx);
        }
    };
    trail.upstream_ms = Some(sent.elapsed().as_millis() as u64);
    let mut answer: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(_) => {
            app.books.release(ticket).await;
            return app.fail_with(
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
        return app.refuse_with(trail, e, &ctx).with_headers(rate_headers);
    }
    let out = serde_json::to_vec(&answer).unwrap_or_default();
    trail.status = 200;
    app.finish(trail, &ctx, None);
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

/// An upstream error, passed through with its status (and body when it is JSON).
async fn pass_error(resp: reqwest::Response) -> Response {
    let status = resp.status();
    let body = resp.bytes().await.unwrap_or_default();
    let json: Option<Value> = serde_json::from_slice(&body).ok();
    match json {
        Some(v) if v.get("error").is_some() => {
            let mut r = Response::new(Body::from(body));
            *r.status_mut() = status;
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            r
        }
        _ => {
            let text = String::from_utf8_lossy(&body);
            let snippet: String = text.chars().take(200).collect();
            let mut e = ApiError::new(
                status.as_u16(),
                if status.is_server_error() {
                    "server_error"
                } else {
                    "invalid_request_error"
                },
                None,
                format!("The upstream answered {status}: {snippet}"),
            );
            e.status = status.as_u16();
            error_response(&e)
        }
    }
}

/// Streams the answer through, event by event, guarding and restoring text as it goes.
#[allow(clippy::too_many_arguments)]
fn stream_answer(
    app: Arc<App>,
    mut trail: Trail,
    mut ctx: Context,
    req: ChatRequest,
    resp: reqwest::Response,
    ticket: crate::books::Ticket,
    client_wants_usage: bool,
    sent: Instant,
) -> Response {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(32);
    tokio::spawn(async move {
        let mut upstream = resp.bytes_stream();
        let mut splitter = EventSplitter::default();
        let mut scanner = StreamScanner::default();
        let inspect = app.pipeline.inspects_output() || !ctx.vault.is_empty();
        let mut usage: Option<Usage> = None;
        let mut outcome: Result<(), ApiError> = Ok(());
        let mut client_gone = false;
        let mut first = true;
        'read: while let Some(chunk) = upstream.next().await {
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    outcome = Err(crate::upstream::transport_error(&e));
                    break;
                }
            };
            if first {
                trail.upstream_ms = Some(sent.elapsed().as_millis() as u64);
                first = false;
            }
            for ev in splitter.push(&chunk) {
                match handle_event(
                    &app,
                    &ev,
                    &mut scanner,
                    inspect,
                    &req,
                    &mut ctx,
                    &mut usage,
                    client_wants_usage,
                )
                .await
                {
                    Ok(Some(out)) => {
                        if tx.send(Ok(out)).await.is_err() {
                            client_gone = true;
                            break 'read;
                        }
                    }
                    Ok(None) => {}
                    Err(e) => {
                        outcome = Err(e);
                        break 'read;
                    }
                }
            }
        }
        if let Err(e) = &outcome {
            // End the stream with an error event the SDKs raise as an APIError.
            let _ = tx.send(Ok(sse::event(&e.body().to_string()))).await;
        } else if !client_gone && let Some(rest) = splitter.finish() {
            let _ = tx.send(Ok(rest)).await;
        }
        app.books.settle(ticket, &req.model, usage.as_ref()).await;
        trail.usage(usage.as_ref(), &app.books, &req.model);
        match outcome {
            Ok(()) => {
                trail.status = 200;
                if client_gone {
                    trail.error_code = Some("client_disconnected".into());
                }
                app.finish(trail, &ctx, None);
            }
            Err(e) => {
                trail.status = e.status;
                app.finish(trail, &ctx, Some(&e));
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let mut r = Response::new(Body::from_stream(stream));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

/// Judges one event; returns the bytes to forward (`None` to drop it).
#[allow(clippy::too_many_arguments)]
async fn handle_event(
    app: &App,
    ev: &Bytes,
    scanner: &mut StreamScanner,
    inspect: bool,
    req: &ChatRequest,
    ctx: &mut Context,
    usage: &mut Option<Usage>,
    client_wants_usage: bool,
) -> Result<Option<Bytes>, ApiError> {
    let mut raw = ev.to_vec();
    raw.extend_from_slice(b"\n\n");
    let Some(data) = sse::data_of(ev) else {
        return Ok(Some(Bytes::from(raw)));
    };
    if data == "[DONE]" {
        if scanner.has_pending() {
            // Flush what guards held back, as one last chunk per choice.
            let mut out = Vec::new();
            for index in 0..8 {
                let text = scanner
                    .push(index, "", true, &app.pipeline, req, ctx)
                    .await?;
                if !text.is_empty() {
                    let v = serde_json::json!({"object": "chat.completion.chunk", "model": req.model,
                        "choices": [{"index": index, "delta": {"content": text}, "finish_reason": null}]});
                    out.extend_from_slice(&sse::event(&v.to_string()));
                }
            }
            out.extend_from_slice(&raw);
            return Ok(Some(Bytes::from(out)));
        }
        return Ok(Some(Bytes::from(raw)));
    }
    let has_usage = data.contains("\"usage\"") && !data.contains("\"usage\":null");
    if !inspect && !has_usage {
        return Ok(Some(Bytes::from(raw)));
    }
    let Ok(mut v) = serde_json::from_str::<Value>(&data) else {
        return Ok(Some(Bytes::from(raw)));
    };
    if let Some(u) = Usage::from_json(&v) {
        *usage = Some(u);
        let no_choices = v["choices"].as_array().is_none_or(Vec::is_empty);
        if !client_wants_usage {
            if no_choices {
                return Ok(None);
            }
            if let Some(o) = v.as_object_mut() {
                o.remove("usage");
            }
        }
    }
    if inspect && let Some(choices) = v["choices"].as_array_mut() {
        for c in choices.iter_mut() {
            let index = c["index"].as_u64().unwrap_or(0) as usize;
            let last = !c["finish_reason"].is_null();
            let delta = c["delta"]["content"].as_str().map(str::to_owned);
            if delta.is_none() && !last {
                continue;
            }
            let text = scanner
                .push(
                    index,
                    delta.as_deref().unwrap_or(""),
                    last,
                    &app.pipeline,
                    req,
                    ctx,
                )
                .await?;
            if delta.is_some() || !text.is_empty() {
                c["delta"]["content"] = Value::String(text);
            }
        }
    }
    Ok(Some(sse::event(&v.to_string())))
}

/// Extra response headers (rate-limit state) on any response.
pub trait WithHeaders {
    fn with_headers(self, h: Vec<(&'static str, String)>) -> Response;
}

impl WithHeaders for Response {
    fn with_headers(mut self, h: Vec<(&'static str, String)>) -> Response {
        for (k, v) in h {
            if let Ok(v) = HeaderValue::from_str(&v) {
                self.headers_mut().insert(k, v);
            }
        }
        self
    }
}

async fn passthrough(
    app: &App,
    headers: &HeaderMap,
    method: reqwest::Method,
    (route, path): (&'static str, &'static str),
    body: Option<Body>,
    rid: String,
) -> Response {
    let mut trail = Trail::new(rid, route);
    let caller = match app.authenticate(headers).await {
        Ok(c) => c,
        Err(e) => return app.refuse(trail, e),
    };
    trail.caller(&caller);
    let bytes = match body {
        Some(b) => match read_body(b, app.config.server.max_body_bytes).await {
            Ok(b) => {
                if serde_json::from_slice::<Value>(&b).is_err() {
                    return app.refuse(
                        trail,
                        ApiError::invalid_request(
                            "We could not parse the JSON body of your request.",
                        ),
                    );
                }
                Some(b.to_vec())
            }
            Err(e) => return app.refuse(trail, e),
        },
        None => None,
    };
    let sent = Instant::now();
    let resp = match app.upstream.send(method, path, bytes).await {
        Ok(r) => r,
        Err(e) => {
            let ctx = Context::new(trail.request_id.clone(), Default::default());
            return app.fail_with(trail, e, &ctx);
        }
    };
    trail.upstream_ms = Some(sent.elapsed().as_millis() as u64);
    let status = resp.status();
    if !status.is_success() {
        let r = pass_error(resp).await;
        trail.status = r.status().as_u16();
        app.finish(trail, &Context::new("", Default::default()), None);
        return r;
    }
    let ct = resp.headers().get(reqwest::header::CONTENT_TYPE).cloned();
    match resp.bytes().await {
        Ok(b) => {
            trail.status = status.as_u16();
            app.finish(trail, &Context::new("", Default::default()), None);
            let mut r = Response::new(Body::from(b));
            *r.status_mut() = status;
            if let Some(ct) = ct {
                r.headers_mut().insert(header::CONTENT_TYPE, ct);
            }
            r
        }
        Err(e) => app.fail_with(
            trail,
            crate::upstream::transport_error(&e),
            &Context::new("", Default::default()),
        ),
    }
}

/// `GET /v1/models`.
pub async fn models(
    State(app): State<Arc<App>>,
    Extension(RequestId(rid)): Extension<RequestId>,
    headers: HeaderMap,
) -> Response {
    passthrough(
        &app,
        &headers,
        reqwest::Method::GET,
        ("/v1/models", "/models"),
        None,
        rid,
    )
    .await
}

/// `POST /v1/embeddings`.
pub async fn embeddings(
    State(app): State<Arc<App>>,
    Extension(RequestId(rid)): Extension<RequestId>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    passthrough(
        &app,
        &headers,
        reqwest::Method::POST,
        ("/v1/embeddings", "/embeddings"),
        Some(body),
        rid,
    )
    .await
}

/// `POST /v1/moderations`.
pub async fn moderations(
    State(app): State<Arc<App>>,
    Extension(RequestId(rid)): Extension<RequestId>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    passthrough(
        &app,
        &headers,
        reqwest::Method::POST,
        ("/v1/moderations", "/moderations"),
        Some(body),
        rid,
    )
    .await
}

impl IntoResponse for crate::books::Refusal {
    fn into_response(self) -> Response {
        error_response(&self.error).with_headers(self.headers)
    }
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
