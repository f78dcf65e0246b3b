//! `POST /v1/scan`: the configured guards over messages or a text, without a model call.

use crate::app::App;
use crate::http::{RequestId, error_response, read_body};
use crate::scan::{ScanRequest, run};
use axum::Extension;
use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use portcullis_core::{ApiError, Context};
use std::sync::Arc;

/// `POST /v1/scan`.
pub async fn handler(
    State(app): State<Arc<App>>,
    Extension(RequestId(rid)): Extension<RequestId>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let caller = match app.authenticate(&headers).await {
        Ok(c) => c,
        Err(e) => return error_response(&e),
    };
    let bytes = match read_body(body, app.config.server.max_body_bytes).await {
        Ok(b) => b,
        Err(e) => return error_response(&e),
    };
    let scan: ScanRequest = match serde_json::from_slice(&bytes) {
        Ok(s) => s,
        Err(e) => {
            return error_response(&ApiError::invalid_request(format!(
                "Invalid scan request: {e}"
            )));
        }
    };
    let mut ctx = Context::new(rid, caller.principal(None));
    match run(&app.pipeline, scan, &mut ctx).await {
        Ok(v) => Json(v).into_response(),
        Err(e) => error_response(&e),
    }
}
