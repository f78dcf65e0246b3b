//! The one error shape clients see: OpenAI's `{"error":{"message","type","param","code"}}`
//! with the HTTP status the official SDKs map to the right exception.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// An error as the client receives it; every refusal and failure ends as one of these.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiError {
    /// HTTP status (400 bad request, 401 auth, 403 policy, 413, 429, 502, 504, …).
    pub status: u16,
    /// OpenAI's `type` (`invalid_request_error`, `authentication_error`, …).
    #[serde(rename = "type")]
    pub kind: String,
    /// Machine-readable `code`, e.g. `invalid_api_key`, `content_policy_violation`.
    pub code: Option<String>,
    /// What happened and what the caller can do about it.
    pub message: String,
    /// The request parameter at fault, when there is one.
    pub param: Option<String>,
}

impl ApiError {
    /// Any error, spelled out.
    pub fn new(status: u16, kind: &str, code: Option<&str>, message: impl Into<String>) -> Self {
        ApiError {
            status,
            kind: kind.to_owned(),
            code: code.map(str::to_owned),
            message: message.into(),
            param: None,
        }
    }

    /// Names the request parameter at fault.
    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    /// Replaces the machine-readable code.
    pub fn with_code(mut self, code: impl Into<String>) -> Self {
        self.code = Some(code.into());
        self
    }

    /// 400: the request is malformed or breaks a parameter rule.
    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(400, "invalid_request_error", None, message)
    }

    /// 401: no key, an unknown key, or a revoked one.
    pub fn authentication(code: &str, message: impl Into<String>) -> Self {
        Self::new(401, "authentication_error", Some(code), message)
    }

    /// 403: the gateway's policy refuses the request.
    pub fn policy(code: &str, message: impl Into<String>) -> Self {
        Self::new(403, "permission_error", Some(code), message)
    }

    /// 400 `content_policy_violation`: where OpenAI itself refuses content with a 400.
    pub fn content_policy(message: impl Into<String>) -> Self {
        Self::new(
            400,
            "invalid_request_error",
            Some("content_policy_violation"),
            message,
        )
    }

    /// 413: the body is larger than the gateway accepts.
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(
            413,
            "invalid_request_error",
            Some("request_too_large"),
            message,
        )
    }

    /// 429: a rate limit or token window is exhausted.
    pub fn rate_limited(message: impl Into<String>) -> Self {
        Self::new(429, "requests", Some("rate_limit_exceeded"), message)
    }

    /// 429 `insufficient_quota`: a money budget is spent.
    pub fn insufficient_quota(message: impl Into<String>) -> Self {
        Self::new(
            429,
            "insufficient_quota",
            Some("insufficient_quota"),
            message,
        )
    }

    /// 502: the provider could not be reached or answered nonsense.
    pub fn bad_gateway(message: impl Into<String>) -> Self {
        Self::new(502, "api_error", Some("upstream_unreachable"), message)
    }

    /// 504: the provider did not answer in time.
    pub fn gateway_timeout(message: impl Into<String>) -> Self {
        Self::new(504, "api_error", Some("upstream_timeout"), message)
    }

    /// 500: the gateway itself failed; the message never leaks internals.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "api_error", Some("internal_error"), message)
    }

    /// 503: a guard or store could not decide and policy says fail closed.
    pub fn unavailable(code: &str, message: impl Into<String>) -> Self {
        Self::new(503, "api_error", Some(code), message)
    }

    /// The JSON body, exactly as OpenAI shapes it.
    pub fn body(&self) -> Value {
        json!({"error": {
            "message": self.message,
            "type": self.kind,
            "param": self.param,
            "code": self.code,
        }})
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status, self.kind, self.message)
    }
}

impl std::error::Error for ApiError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_openai_shape() {
        let e = ApiError::invalid_request("bad temperature").with_param("temperature");
        assert_eq!(
            e.body(),
            json!({"error":{"message":"bad temperature","type":"invalid_request_error",
                "param":"temperature","code":null}})
        );
        assert_eq!(ApiError::content_policy("x").status, 400);
        assert_eq!(ApiError::policy("blocked", "x").status, 403);
    }
}
