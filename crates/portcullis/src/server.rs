//! The HTTP surface: the routes; the door every API request passes (request id, a bounded
//! place among the requests in flight, body size, the failed-authentication brake,
//! authentication, the request's [`Exchange`]); the operational endpoints (health, readiness,
//! metrics); and the accept loop with its header-read timeout and graceful shutdown.

use crate::app::App;
use crate::http::{RequestId, error_response};
use crate::lifecycle::{Ending, Exchange, Slot};
use crate::routes;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use portcullis_core::ApiError;
use serde_json::json;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The gateway's routes over `app`.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(routes::chat::chat))
        .route("/v1/models", get(routes::passthrough::models))
        .route("/v1/embeddings", post(routes::text::embeddings))
        .route("/v1/moderations", post(routes::text::moderations))
        .route("/v1/scan", post(routes::scan::handler))
        .route("/v1/responses", post(routes::responses::create))
        .route(
            "/v1/responses/{id}",
            get(routes::responses::retrieve).delete(routes::responses::delete),
        )
        .route(
            "/v1/responses/{id}/input_items",
            get(routes::responses::input_items),
        )
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(app.clone(), door))
        .with_state(app)
}

/// Paths that are not API requests: no key, no exchange, no audit record.
const OPERATIONAL: [&str; 3] = ["/healthz", "/readyz", "/metrics"];

/// The route name a request is audited under.
fn route_name(path: &str) -> &'static str {
    match path.trim_end_matches('/') {
        "/v1/chat/completions" => "/v1/chat/completions",
        "/v1/models" => "/v1/models",
        "/v1/embeddings" => "/v1/embeddings",
        "/v1/moderations" => "/v1/moderations",
        "/v1/scan" => "/v1/scan",
        "/v1/responses" => "/v1/responses",
        p => match p
            .strip_prefix("/v1/responses/")
            .map(|id| id.split_once('/'))
        {
            Some(None) => "/v1/responses/{id}",
            Some(Some((_, "input_items"))) => "/v1/responses/{id}/input_items",
            _ => "unknown",
        },
    }
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

fn with_request_id(mut resp: Response, id: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    resp
}

/// The layer every API request passes: it opens the request's exchange, and whatever the
/// handler leaves unfinished (a route that never took the exchange) it finishes.
async fn door(State(app): State<Arc<App>>, mut req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    if OPERATIONAL.contains(&path.as_str()) {
        return next.run(req).await;
    }
    let id = next_id();
    let ex = Exchange::new(app.clone(), id.clone(), route_name(&path));
    let resp = match enter(&app, ex, &mut req).await {
        Ok(slot) => {
            req.extensions_mut().insert(RequestId(id.clone()));
            req.extensions_mut().insert(slot.clone());
            // A bug in a guard must cost one request a 500, not the connection: the panic
            // unwinds through the handler (its exchange records `internal_error`) and stops here.
            let run = std::panic::AssertUnwindSafe(next.run(req));
            let resp = match futures_util::FutureExt::catch_unwind(run).await {
                Ok(resp) => resp,
                Err(_) => error_response(&ApiError::internal(
                    "The gateway failed while handling this request; it was recorded.",
                )),
            };
            if let Some(ex) = slot.take() {
                ex.finish(Ending::Answered(resp.status().as_u16()));
            }
            resp
        }
        Err(refused) => refused,
    };
    with_request_id(resp, &id)
}

/// Admits a request through the door, or refuses it (the refusal is its audit record).
async fn enter(app: &Arc<App>, mut ex: Exchange, req: &mut Request) -> Result<Slot, Response> {
    let queue = Duration::from_millis(app.config.server.queue_ms);
    match tokio::time::timeout(queue, app.in_flight.clone().acquire_owned()).await {
        Ok(Ok(permit)) => ex.hold(permit),
        _ => {
            return Err(ex.refuse(ApiError::unavailable(
                "gateway_overloaded",
                "The gateway is serving as many requests as it is configured to; try again shortly.",
            )));
        }
    }
    if let Some(locked) = app.kills.current().lockdown() {
        return Err(ex.refuse(locked));
    }
    let max = app.config.server.max_body_bytes;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(ex.refuse(ApiError::too_large(format!(
            "The request body is larger than this gateway accepts ({max} bytes)."
        ))));
    }
    let addr = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let now = Instant::now();
    if let Some(a) = addr
        && app.failed_auths.blocked(a, now)
    {
        return Err(ex.refuse(crate::auth::too_many_failures()));
    }
    match app.authenticate(req.headers()).await {
        Ok(caller) => {
            ex.caller(&caller);
            if let Some(killed) = app.kills.current().caller(&caller) {
                return Err(ex.refuse(killed));
            }
            Ok(Slot::new(ex))
        }
        Err(e) if ex.trail.route == "unknown" => {
            ex.dismiss();
            let _ = e;
            Err(not_found_response(req.method(), req.uri().path()))
        }
        Err(e) => {
            if let (Some(a), 401) = (addr, e.status) {
                app.failed_auths.failed(a, now);
            }
            Err(ex.refuse(e))
        }
    }
}

async fn not_found(req: Request) -> Response {
    not_found_response(req.method(), req.uri().path())
}

fn not_found_response(method: &axum::http::Method, path: &str) -> Response {
    error_response(&ApiError::new(
        404,
        "invalid_request_error",
        Some("unknown_url"),
        format!(
            "Unknown request URL: {method} {path}. This gateway serves /v1/chat/completions, /v1/responses, /v1/models, /v1/embeddings, /v1/moderations and /v1/scan."
        ),
    ))
}

async fn healthz() -> Response {
    Json(json!({"status": "ok"})).into_response()
}

async fn metrics(State(app): State<Arc<App>>, headers: axum::http::HeaderMap) -> Response {
    crate::scrape::handler(&app, &headers).await
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

/// Serves `router` on `listener` until `shutdown` resolves, then lets requests in flight
/// finish (up to `drain`). A client gets `header_timeout` to send its request headers.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl std::future::Future<Output = ()>,
    header_timeout: Duration,
    drain: Duration,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto::Builder;
    use tower::ServiceExt;
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    builder.http2().timer(TokioTimer::new());
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, addr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<_>| {
            req.extensions_mut().insert(ConnectInfo(addr));
            router.clone().oneshot(req.map(axum::body::Body::new))
        });
        let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
        let conn = graceful.watch(conn.into_owned());
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
    drop(listener);
    if tokio::time::timeout(drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("shutdown: requests still in flight after the drain period");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_audited_under_their_route_and_strangers_as_unknown() {
        assert_eq!(route_name("/v1/chat/completions"), "/v1/chat/completions");
        assert_eq!(route_name("/v1/embeddings/"), "/v1/embeddings");
        assert_eq!(route_name("/v1/files"), "unknown");
        assert_eq!(route_name("/v1/responses"), "/v1/responses");
        assert_eq!(route_name("/v1/responses/resp_1"), "/v1/responses/{id}");
        assert_eq!(
            route_name("/v1/responses/resp_1/input_items"),
            "/v1/responses/{id}/input_items"
        );
        assert_eq!(route_name("/v1/responses/resp_1/cancel"), "unknown");
        assert!(OPERATIONAL.contains(&"/healthz"));
    }
}
