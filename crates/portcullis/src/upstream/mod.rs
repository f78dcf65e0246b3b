//! The provider client: one pooled HTTP/1.1 + HTTP/2 client, the provider key added here and
//! nowhere else, and transport failures turned into the errors the SDKs expect (502 / 504).

pub mod moderation;
pub mod sse;

use crate::http::error_response;
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

/// A transport failure as the client should see it. The code says whether the request
/// reached the provider (`upstream_unreachable`: it did not, so nothing was spent).
pub fn transport_error(e: &reqwest::Error) -> ApiError {
    if e.is_timeout() {
        ApiError::gateway_timeout("The upstream model provider did not answer in time.")
    } else if e.is_connect() {
        ApiError::bad_gateway("The upstream model provider is unreachable.")
    } else {
        ApiError::bad_gateway("The upstream model provider failed mid-answer.")
            .with_code("upstream_error")
    }
}

/// Reads a whole (non-streamed) answer, up to `max` bytes: a provider that sends more is
/// treated as broken rather than trusted with the gateway's memory.
pub async fn read_limited(mut resp: reqwest::Response, max: usize) -> Result<Vec<u8>, ApiError> {
    let mut out = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(c)) => {
                if out.len().saturating_add(c.len()) > max {
                    return Err(ApiError::bad_gateway(format!(
                        "The upstream answer is larger than this gateway accepts ({max} bytes)."
                    ))
                    .with_code("upstream_answer_too_large"));
                }
                out.extend_from_slice(&c);
            }
            Ok(None) => return Ok(out),
            Err(e) => return Err(transport_error(&e)),
        }
    }
}

/// The provider's error bodies, bounded when read.
const ERROR_BODY_LIMIT: usize = 64 * 1024;

/// An upstream error passed on with its status, type, code and param, and its message
/// scrubbed of what identifies the provider account (key fragments, organisation and project
/// ids): clients only ever hold gateway keys.
pub async fn pass_error(resp: reqwest::Response) -> Response {
    let status = resp.status();
    let body = read_limited(resp, ERROR_BODY_LIMIT)
        .await
        .unwrap_or_default();
    let json: Option<Value> = serde_json::from_slice(&body).ok();
    let provider = json.as_ref().map(|v| &v["error"]).filter(|e| e.is_object());
    let kind = provider
        .and_then(|e| e["type"].as_str())
        .unwrap_or(if status.is_server_error() {
            "server_error"
        } else {
            "invalid_request_error"
        });
    let message = match provider.and_then(|e| e["message"].as_str()) {
        Some(m) => scrub(m),
        None => scrub(
            &String::from_utf8_lossy(&body)
                .chars()
                .take(200)
                .collect::<String>(),
        ),
    };
    let mut e = ApiError::new(
        status.as_u16(),
        kind,
        provider.and_then(|e| e["code"].as_str()),
        format!(
            "The upstream model provider answered {}: {message}",
            status.as_u16()
        ),
    );
    if let Some(p) = provider.and_then(|e| e["param"].as_str()) {
        e = e.with_param(p);
    }
    error_response(&e)
}

/// Removes what would identify the provider account from a provider's message: API key
/// fragments (`sk-…`, "ending in …"), organisation and project ids, long opaque tokens.
pub fn scrub(message: &str) -> String {
    let mut out = Vec::new();
    let mut hide_next = false;
    for word in message.split(' ') {
        let core = word
            .trim_matches(|c: char| !c.is_ascii_alphanumeric() && c != '-' && c != '_' && c != '*');
        let secretish = ["sk-", "org-", "org_", "proj_", "proj-", "key-", "sess-"]
            .iter()
            .any(|p| core.starts_with(p))
            || (core.len() >= 20
                && core
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_*".contains(c)));
        if hide_next || secretish {
            out.push(word.replace(core, "[redacted]"));
        } else {
            out.push(word.to_owned());
        }
        hide_next = matches!(core, "in" | "ending") && out.len() >= 2 && {
            let prev = &out[out.len() - 2];
            prev.ends_with("ending") || prev.ends_with("ends")
        };
    }
    out.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_messages_lose_key_fragments_and_account_ids() {
        let m = scrub(
            "Incorrect API key provided: sk-proj-abc***************wxyz. You can find your API key at https://platform.openai.com/account/api-keys.",
        );
        assert!(!m.contains("sk-proj") && !m.contains("wxyz"), "{m}");
        assert!(m.contains("Incorrect API key provided"), "{m}");
        let m = scrub(
            "Rate limit reached for gpt-4o in organization org-AbCdEf123456 on tokens per min.",
        );
        assert!(!m.contains("AbCdEf123456"), "{m}");
        assert!(m.contains("gpt-4o"), "model names stay: {m}");
        let m = scrub("Your key ending in 9xQz was rejected.");
        assert!(!m.contains("9xQz"), "{m}");
    }
}
