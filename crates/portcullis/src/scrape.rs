//! Who may read `/metrics`: open by default (the usual Prometheus set-up on a private
//! network), or behind a bearer token when `[metrics] token_env` names a variable holding one.
//! Each scrape also pings the store and the limits backend so their health is a metric.

use crate::app::App;
use crate::http::error_response;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use portcullis_core::ApiError;
use serde::Deserialize;
use subtle::ConstantTimeEq;

/// `[metrics]`: access to the `/metrics` endpoint.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Environment variable holding the token a scraper must send as
    /// `Authorization: Bearer <token>`; no variable named, no token asked.
    pub token_env: Option<String>,
}

/// Why the metrics endpoint cannot start as configured.
#[derive(Debug, thiserror::Error)]
pub enum ScrapeTokenError {
    /// The variable is named but holds nothing: serving metrics openly would ignore the
    /// operator's wish, so the gateway refuses to start instead.
    #[error("metrics.token_env: ${0} is unset or empty; set it or remove metrics.token_env")]
    Unset(String),
}

/// The token `/metrics` asks for, if any.
#[derive(Debug, Clone, Default)]
pub struct ScrapeGate {
    token: Option<String>,
}

impl ScrapeGate {
    /// The gate `config` describes, reading the token from the environment.
    pub fn from_config(config: &MetricsConfig) -> Result<ScrapeGate, ScrapeTokenError> {
        let Some(var) = &config.token_env else {
            return Ok(ScrapeGate::default());
        };
        Self::with_token(var, std::env::var(var).ok())
    }

    /// The gate for the token `value` read from `var`.
    fn with_token(var: &str, value: Option<String>) -> Result<ScrapeGate, ScrapeTokenError> {
        match value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()) {
            None => Err(ScrapeTokenError::Unset(var.to_owned())),
            Some(token) => Ok(ScrapeGate { token: Some(token) }),
        }
    }

    /// Whether `headers` may read the metrics, or the 401 to send.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), Response> {
        let Some(expected) = &self.token else {
            return Ok(());
        };
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .unwrap_or("");
        if bool::from(presented.as_bytes().ct_eq(expected.as_bytes())) {
            Ok(())
        } else {
            Err(error_response(&ApiError::authentication(
                "invalid_metrics_token",
                "Missing or wrong metrics token; send 'Authorization: Bearer <token>' with the token in the variable [metrics] token_env names.",
            )))
        }
    }
}

/// `GET /metrics`: the gate, a fresh health reading of the backends, then the exposition.
pub async fn handler(app: &App, headers: &HeaderMap) -> Response {
    if let Err(refused) = app.scrape.check(headers) {
        return refused;
    }
    for (backend, ok, _) in app.readiness().await {
        app.metrics.backend(backend, ok);
    }
    crate::spool_watch::refresh(&app.audit, &app.metrics);
    (
        // prometheus-client writes OpenMetrics text (counter families typed without their
        // `_total`, a closing `# EOF`), so say so: Prometheus then keeps the types and units.
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        app.metrics.render(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bearer(t: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Ok(v) = format!("Bearer {t}").parse() {
            h.insert(header::AUTHORIZATION, v);
        }
        h
    }

    #[test]
    fn no_token_configured_lets_every_scrape_in() {
        let gate = ScrapeGate::from_config(&MetricsConfig::default()).unwrap();
        assert!(gate.check(&HeaderMap::new()).is_ok());
    }

    #[test]
    fn a_token_is_required_and_compared_exactly() {
        let gate = ScrapeGate::with_token("M", Some("s3cret-scrape".into())).unwrap();
        assert!(gate.check(&bearer("s3cret-scrape")).is_ok());
        let wrong = gate.check(&bearer("s3cret")).unwrap_err();
        assert_eq!(wrong.status(), 401);
        assert_eq!(gate.check(&HeaderMap::new()).unwrap_err().status(), 401);
    }

    #[test]
    fn a_named_but_unset_variable_refuses_to_start() {
        let e = ScrapeGate::with_token("PORTCULLIS_METRICS_TOKEN", Some("  ".into())).unwrap_err();
        assert!(e.to_string().contains("$PORTCULLIS_METRICS_TOKEN"), "{e}");
    }
}
