//! The endpoints passed through to the provider after authentication: `GET /v1/models`,
//! `POST /v1/embeddings`, `POST /v1/moderations`.

use crate::app::App;
use crate::audit::Trail;
use crate::http::{RequestId, read_body};
use crate::lifecycle;
use crate::upstream::pass_error;
use axum::Extension;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::Response;
use portcullis_core::{ApiError, Context};
use serde_json::Value;
use std::sync::Arc;
use std::time::Instant;

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
        Err(e) => return lifecycle::refuse(app, trail, e),
    };
    trail.caller(&caller);
    let bytes = match body {
        Some(b) => match read_body(b, app.config.server.max_body_bytes).await {
            Ok(b) => {
                if serde_json::from_slice::<Value>(&b).is_err() {
                    return lifecycle::refuse(
                        app,
                        trail,
                        ApiError::invalid_request(
                            "We could not parse the JSON body of your request.",
                        ),
                    );
                }
                Some(b.to_vec())
            }
            Err(e) => return lifecycle::refuse(app, trail, e),
        },
        None => None,
    };
    let sent = Instant::now();
    let resp = match app.upstream.send(method, path, bytes).await {
        Ok(r) => r,
        Err(e) => {
            let ctx = Context::new(trail.request_id.clone(), Default::default());
            return lifecycle::fail_with(app, trail, e, &ctx);
        }
    };
    trail.upstream_ms = Some(sent.elapsed().as_millis() as u64);
    let status = resp.status();
    if !status.is_success() {
        let r = pass_error(resp).await;
        trail.status = r.status().as_u16();
        lifecycle::finish(app, trail, &Context::new("", Default::default()), None);
        return r;
    }
    let ct = resp.headers().get(reqwest::header::CONTENT_TYPE).cloned();
    match resp.bytes().await {
        Ok(b) => {
            trail.status = status.as_u16();
            lifecycle::finish(app, trail, &Context::new("", Default::default()), None);
            let mut r = Response::new(Body::from(b));
            *r.status_mut() = status;
            if let Some(ct) = ct {
                r.headers_mut().insert(header::CONTENT_TYPE, ct);
            }
            r
        }
        Err(e) => lifecycle::fail_with(
            app,
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
