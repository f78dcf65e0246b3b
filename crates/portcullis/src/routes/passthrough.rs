//! `GET /v1/models`, passed through to the provider after the door (authenticated, audited).

use crate::http::error_response;
use crate::lifecycle::{Ending, Slot};
use crate::upstream::{self, pass_error};
use axum::Extension;
use axum::body::Body;
use axum::http::header;
use axum::response::Response;
use portcullis_core::ApiError;
use std::time::Instant;

/// The largest model list accepted from the provider.
const MODELS_LIMIT: usize = 4 * 1024 * 1024;

/// `GET /v1/models`.
pub async fn models(Extension(slot): Extension<Slot>) -> Response {
    let Some(mut ex) = slot.take() else {
        return error_response(&ApiError::internal("The request lost its context."));
    };
    let app = ex.app().clone();
    let sent = Instant::now();
    let resp = app
        .upstream
        .send(reqwest::Method::GET, "/models", None)
        .await;
    ex.trail.upstream_ms = Some(sent.elapsed().as_millis() as u64);
    let resp = match resp {
        Ok(r) => r,
        Err(e) => return ex.fail(e),
    };
    let status = resp.status();
    if !status.is_success() {
        let r = pass_error(resp).await;
        ex.finish(Ending::Answered(r.status().as_u16()));
        return r;
    }
    let ct = resp.headers().get(reqwest::header::CONTENT_TYPE).cloned();
    match upstream::read_limited(resp, MODELS_LIMIT).await {
        Ok(b) => {
            let mut r = Response::new(Body::from(b));
            *r.status_mut() = status;
            if let Some(ct) = ct {
                r.headers_mut().insert(header::CONTENT_TYPE, ct);
            }
            ex.finish(Ending::Answered(status.as_u16()));
            r
        }
        Err(e) => ex.fail(e),
    }
}
