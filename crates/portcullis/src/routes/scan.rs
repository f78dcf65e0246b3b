//! `POST /v1/scan`: the configured guards over messages or a text, without a model call —
//! metered like any request (rate and concurrency limits) and audited.

use crate::books::Claim;
use crate::http::{WithHeaders, error_response};
use crate::lifecycle::{Ending, Slot};
use crate::scan::{ScanRequest, run};
use axum::Extension;
use axum::Json;
use axum::body::Body;
use axum::response::{IntoResponse, Response};
use portcullis_core::{ApiError, tokens};

/// `POST /v1/scan`.
pub async fn handler(Extension(slot): Extension<Slot>, body: Body) -> Response {
    let Some(mut ex) = slot.take() else {
        return error_response(&ApiError::internal("The request lost its context."));
    };
    let app = ex.app().clone();
    let bytes = match super::read_body(&app, body).await {
        Ok(b) => b,
        Err(e) => return ex.refuse(e),
    };
    let scan: ScanRequest = match serde_json::from_slice(&bytes) {
        Ok(s) => s,
        Err(e) => {
            return ex.refuse(ApiError::invalid_request(format!(
                "Invalid scan request: {e}"
            )));
        }
    };
    let Some(caller) = ex.authenticated().cloned() else {
        return ex.refuse(ApiError::internal("The request lost its caller."));
    };
    ex.trail.input_text(&match (&scan.messages, &scan.text) {
        (Some(messages), _) => crate::audit::messages_input(messages, &[]),
        (None, text) => portcullis_store::audit::text_mac::canonical_input(
            text.iter().map(|t| ("input", t.as_str())),
        ),
    });
    let model = scan.model.clone().unwrap_or_else(|| "gpt-4o-mini".into());
    ex.trail.model = Some(model.clone());
    let enc = tokens::Encoding::for_model(&model);
    let mut text_tokens = scan.text.as_deref().map_or(0, |t| enc.count(t) as u64);
    for m in scan.messages.iter().flatten() {
        text_tokens = text_tokens.saturating_add(enc.count(&m.joined_text()) as u64);
    }
    let claim = Claim {
        model: &model,
        request_id: &ex.trail.request_id.clone(),
        prompt_tokens: text_tokens,
        output_tokens: 0,
    };
    match app.books.admit(&caller, &ex.ctx.principal, claim).await {
        Ok(t) => ex.admitted(t),
        Err(r) => return ex.refuse(r.error).with_headers(r.headers),
    }
    match run(&app.pipeline, scan, &mut ex.ctx).await {
        Ok(v) => {
            let r = Json(v).into_response().with_headers(ex.rate_headers());
            ex.finish(Ending::Answered(200));
            r
        }
        Err(e) => ex.refuse(e),
    }
}
