//! A streamed chat answer, relayed event by event: output guards judge windows of text as it
//! arrives, pseudonyms are restored, usage is read for the books, and the stream ends with an
//! OpenAI-style error event when a guard refuses.

use crate::app::App;
use crate::audit::Trail;
use crate::lifecycle;
use crate::upstream::sse::{self, EventSplitter};
use axum::body::Body;
use axum::http::{HeaderValue, header};
use axum::response::Response;
use bytes::Bytes;
use futures_util::StreamExt;
use portcullis_core::{ApiError, ChatRequest, Context, StreamScanner, Usage};
use serde_json::Value;
use std::sync::Arc;
use std::time::Instant;

/// Streams the answer through, event by event, guarding and restoring text as it goes.
#[allow(clippy::too_many_arguments)]
pub fn answer(
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
                lifecycle::finish(&app, trail, &ctx, None);
            }
            Err(e) => {
                trail.status = e.status;
                lifecycle::finish(&app, trail, &ctx, Some(&e));
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
