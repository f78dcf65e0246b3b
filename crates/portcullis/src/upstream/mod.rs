//! The provider client: one pooled HTTP/1.1 + HTTP/2 client, the provider key added here and
//! nowhere else, and transport failures turned into the errors the SDKs expect (502 / 504).

pub mod moderation;
pub mod sse;

use crate::http::error_response;
use axum::body::Body;
use axum::http::header;
use axum::response::Response;
use portcullis_core::ApiError;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use serde_json::Value;
use std::time::Duration;

/// Where requests go and with which key.
#[derive(Clone)]
pub struct Upstream {
    client: reqwest::Client,
    base: String,
    auth: Option<HeaderValue>,
}

/// Why the client could not be built.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the upstream HTTP client: {0}")]
pub struct UpstreamBuildError(String);

impl Upstream {
    /// A client for `base_url` (including `/v1`), authenticating with `api_key` when given.
    pub fn new(
        base_url: &str,
        api_key: Option<&str>,
        timeout: Duration,
        connect_timeout: Duration,
    ) -> Result<Self, UpstreamBuildError> {
        // rustls is built with the ring provider only; make it the process default once.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(connect_timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(256)
            .tcp_nodelay(true)
            .build()
            .map_err(|e| UpstreamBuildError(e.to_string()))?;
        let auth = match api_key.filter(|k| !k.is_empty()) {
            Some(k) => Some(HeaderValue::from_str(&format!("Bearer {k}")).map_err(|_| {
                UpstreamBuildError("the provider key has invalid characters".into())
            })?),
            None => None,
        };
        Ok(Upstream {
            client,
            base: base_url.trim_end_matches('/').to_owned(),
            auth,
        })
    }

    /// Sends a request to `path` (relative to the base, e.g. `/chat/completions`).
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<reqwest::Response, ApiError> {
        let mut rb = self.client.request(method, format!("{}{path}", self.base));
        if let Some(a) = &self.auth {
            rb = rb.header(AUTHORIZATION, a.clone());
        }
        if let Some(b) = body {
            rb = rb.header(CONTENT_TYPE, "application/json").body(b);
        }
        rb.send().await.map_err(|e| transport_error(&e))
    }
}

/// A transport failure as the client should see it.
pub fn transport_error(e: &reqwest::Error) -> ApiError {
    if e.is_timeout() {
        ApiError::gateway_timeout("The upstream model provider did not answer in time.")
    } else if e.is_connect() {
        ApiError::bad_gateway("The upstream model provider is unreachable.")
    } else {
        ApiError::bad_gateway(format!("The upstream model provider failed: {e}"))
    }
}

/// An upstream error, passed through with its status (and body when it is JSON).
pub async fn pass_error(resp: reqwest::Response) -> Response {
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
