//! The HTTP surface: the routes, the layers every route shares (request id), and the
//! operational endpoints (health, readiness, metrics).

use crate::app::App;
use crate::http::{RequestId, error_response};
use crate::routes;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use portcullis_core::ApiError;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The gateway's routes over `app`.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(routes::chat::chat))
        .route("/v1/models", get(routes::passthrough::models))
        .route("/v1/embeddings", post(routes::passthrough::embeddings))
        .route("/v1/moderations", post(routes::passthrough::moderations))
        .route("/v1/scan", post(routes::scan::handler))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .layer(middleware::from_fn(request_id))
        .with_state(app)
}

/// Makes an id unique to this process run: a random prefix and a counter.
fn next_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    static PREFIX: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let prefix = PREFIX.get_or_init(|| {
        let mut b = [0u8; 6];
        let _ = getrandom::fill(&mut b);
        hex::encode(b)
    });
    format!(
        "req_{prefix}{:08x}",
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

async fn request_id(mut req: Request, next: Next) -> Response {
    let id = next_id();
    req.extensions_mut().insert(RequestId(id.clone()));
    let mut resp = next.run(req).await;
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    resp
}

async fn not_found(req: Request) -> Response {
    error_response(&ApiError::new(
        404,
        "invalid_request_error",
        Some("unknown_url"),
        format!(
            "Unknown request URL: {} {}. This gateway serves /v1/chat/completions, /v1/models, /v1/embeddings, /v1/moderations and /v1/scan.",
            req.method(),
            req.uri().path()
        ),
    ))
}

async fn healthz() -> Response {
    Json(json!({"status": "ok"})).into_response()
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        app.metrics.render(),
    )
        .into_response()
}

async fn readyz(State(app): State<Arc<App>>) -> Response {
    let checks = app.readiness().await;
    let ready = checks.iter().all(|(_, ok, _)| *ok);
    let body: serde_json::Map<String, serde_json::Value> = checks
        .into_iter()
        .map(|(name, ok, detail)| (name.to_owned(), json!({"ok": ok, "detail": detail})))
        .collect();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(json!({"ready": ready, "checks": body}))).into_response()
}
