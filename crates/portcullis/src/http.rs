//! The HTTP shapes every route shares: the request id, an [`ApiError`] as an OpenAI-shaped
//! response, extra response headers, and a bounded body read.

use axum::Json;
use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use portcullis_core::ApiError;

/// The request id a response carries in `x-request-id`, also in the audit record.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// An [`ApiError`] as an HTTP response.
pub fn error_response(e: &ApiError) -> Response {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = (status, Json(e.body())).into_response();
    if e.status == 429 {
        resp.headers_mut()
            .entry(header::RETRY_AFTER)
            .or_insert(HeaderValue::from_static("1"));
    }
    resp
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

/// The header naming the mode each guard ran in for this request, so a caller inside or
/// outside a staged rollout can tell which (`injection=monitor, pii=enforce`).
pub const MODE_HEADER: &str = "x-portcullis-mode";

/// The [`MODE_HEADER`] value for the guards that judged the request so far, each guard once
/// (a streamed answer's windows repeat them); `None` before any guard ran.
pub fn mode_header(trace: &[portcullis_core::GuardRecord]) -> Option<String> {
    let mut seen: Vec<(&str, &str)> = Vec::new();
    for r in trace {
        if !seen.iter().any(|(g, _)| *g == r.guard) {
            seen.push((&r.guard, r.mode.as_str()));
        }
    }
    if seen.is_empty() {
        return None;
    }
    let parts: Vec<String> = seen.iter().map(|(g, m)| format!("{g}={m}")).collect();
    Some(parts.join(", "))
}

/// Reads a whole request body up to `limit` bytes; bigger bodies are a 413.
pub async fn read_body(body: Body, limit: usize) -> Result<bytes::Bytes, ApiError> {
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let too_big = std::error::Error::source(&e)
            .is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
            || e.to_string().contains("length limit");
        if too_big {
            ApiError::too_large(format!(
                "The request body is larger than this gateway accepts ({limit} bytes)."
            ))
        } else {
            ApiError::invalid_request(format!("Could not read the request body: {e}"))
        }
    })
}

/// `url` with its password (and any query string) hidden, for messages and `/readyz`:
/// `postgres://gw:secret@db/x?sslmode=require` → `postgres://gw:***@db/x`.
pub fn redact_url(url: &str) -> String {
    let (base, _query) = url.split_once('?').unwrap_or((url, ""));
    let Some((scheme, rest)) = base.split_once("://") else {
        return base.to_owned();
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((user, host)) => {
            let user = user.split_once(':').map_or(user, |(u, _)| u);
            format!("{scheme}://{user}:***@{host}{path}")
        }
        None => base.to_owned(),
    }
}

/// `text` with every occurrence of `url` replaced by its redacted form (errors from drivers
/// sometimes quote the URL they were given).
pub fn redact_in(text: &str, url: &str) -> String {
    if url.is_empty() {
        return text.to_owned();
    }
    text.replace(url, &redact_url(url))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mode_header_names_each_guard_once_in_order() {
        use portcullis_core::{Direction, GuardRecord, Mode, Outcome};
        let rec = |guard: &str, mode| GuardRecord {
            guard: guard.into(),
            direction: Direction::Input,
            mode,
            outcome: Outcome::Allow,
            findings: Vec::new(),
            changes: Vec::new(),
            error: None,
            micros: 0,
            windows: 0,
        };
        assert_eq!(mode_header(&[]), None);
        let trace = [
            rec("pii", Mode::Enforce),
            rec("injection", Mode::Monitor),
            rec("pii", Mode::Enforce),
        ];
        assert_eq!(
            mode_header(&trace).as_deref(),
            Some("pii=enforce, injection=monitor")
        );
    }

    #[test]
    fn urls_lose_their_passwords_and_queries() {
        assert_eq!(
            redact_url("postgres://gw:s3cret@db.internal:5432/portcullis?sslmode=require"),
            "postgres://gw:***@db.internal:5432/portcullis"
        );
        assert_eq!(
            redact_url("redis://:pw@cache:6379/2"),
            "redis://:***@cache:6379/2"
        );
        assert_eq!(
            redact_url("sqlite://portcullis.db"),
            "sqlite://portcullis.db"
        );
        assert_eq!(redact_url("memory://"), "memory://");
        let msg = "cannot connect to postgres://a:b@h/x: refused";
        assert!(!redact_in(msg, "postgres://a:b@h/x").contains(":b@"));
    }
}
