//! The admin HTTP API, for operators during an incident: the kill switch and live reload.
//! It is off unless `[admin] token_env` names an environment variable holding a token; every
//! call then needs `Authorization: Bearer <token>` (compared in constant time). A gateway key
//! (`pk-…`) never opens it, and admin calls never pass the gateway's door (no lock-down, no
//! kill applies to them), so an operator can always lift what they set.
//!
//! - `GET /admin/kill`: the kills in force.
//! - `POST /admin/kill` `{"scope": "key|user|team|model|all", "id": "…", "reason": "…"}`.
//! - `DELETE /admin/kill/{scope}/{id}`, `DELETE /admin/kill/all`: lift one.
//! - `POST /admin/reload`: re-read the config file; 400 `config_invalid` with the error when
//!   it is refused (the old policy keeps serving).

use crate::http::error_response;
use crate::kill::{KillError, KillSwitch};
use crate::reload::Reloader;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use bytes::Bytes;
use portcullis_core::ApiError;
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// Shortest admin token accepted.
pub const MIN_TOKEN_LEN: usize = 16;

/// `[admin]`: the admin API and the kill switch's timers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Environment variable holding the admin API's token; no variable, no API.
    pub token_env: Option<String>,
    /// Seconds between re-reads of the kill list when replicas share Redis (news arrives at
    /// once; this is the safety net). Without Redis the list is re-read every second.
    pub kill_refresh_s: u64,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            token_env: None,
            kill_refresh_s: 30,
        }
    }
}

/// Why the admin API cannot start as configured.
#[derive(Debug, thiserror::Error)]
pub enum AdminTokenError {
    #[error(
        "admin.token_env: ${0} must hold at least {MIN_TOKEN_LEN} characters and must not be a gateway key (pk-…)"
    )]
    Weak(String),
}

/// The admin token named by `config`: `None` (API off) when no variable is named or it is
/// unset or empty; an error for a token too short or shaped like a gateway key.
pub fn token(config: &AdminConfig) -> Result<Option<String>, AdminTokenError> {
    let Some(var) = &config.token_env else {
        return Ok(None);
    };
    judge_token(var, std::env::var(var).ok())
}

/// The token `value` read from `var`, judged.
fn judge_token(var: &str, value: Option<String>) -> Result<Option<String>, AdminTokenError> {
    match value.filter(|t| !t.trim().is_empty()) {
        None => {
            tracing::warn!(var = %var, "admin API off: admin.token_env names an unset variable");
            Ok(None)
        }
        Some(t) if t.len() < MIN_TOKEN_LEN || t.starts_with("pk-") => {
            Err(AdminTokenError::Weak(var.to_owned()))
        }
        Some(t) => Ok(Some(t)),
    }
}

/// What admin calls act on.
pub struct Admin {
    token: Option<String>,
    kills: Arc<KillSwitch>,
    reloader: Arc<Reloader>,
}

impl Admin {
    /// The admin API with `token` (`None`: every admin path answers 404).
    pub fn new(token: Option<String>, kills: Arc<KillSwitch>, reloader: Arc<Reloader>) -> Admin {
        Admin {
            token,
            kills,
            reloader,
        }
    }

    /// The store the kill list and the review labels live in.
    pub fn store(&self) -> &portcullis_store::Store {
        self.kills.store()
    }

    /// The `[review]` settings the gateway serves now (after any reload).
    pub fn review_config(&self) -> crate::review::ReviewConfig {
        self.reloader.current().config.review.clone()
    }

    /// Whether `headers` carry the admin token, or the refusal.
    pub(crate) fn check(&self, headers: &HeaderMap) -> Result<(), Response> {
        let Some(expected) = &self.token else {
            return Err(error_response(&ApiError::new(
                404,
                "invalid_request_error",
                Some("unknown_url"),
                "The admin API is off on this gateway (set [admin] token_env to turn it on).",
            )));
        };
        let presented = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .unwrap_or("");
        if presented.starts_with("pk-") {
            return Err(error_response(&ApiError::authentication(
                "invalid_admin_token",
                "Gateway keys (pk-…) never open the admin API; send the admin token.",
            )));
        }
        if bool::from(presented.as_bytes().ct_eq(expected.as_bytes())) {
            Ok(())
        } else {
            Err(error_response(&ApiError::authentication(
                "invalid_admin_token",
                "Missing or wrong admin token; send 'Authorization: Bearer <token>' with the token in the variable [admin] token_env names.",
            )))
        }
    }
}

/// The `/admin` routes over `admin`.
pub fn router(admin: Arc<Admin>) -> Router {
    Router::new()
        .route("/admin/kill", get(list).post(kill))
        .route("/admin/kill/all", delete(unkill_all))
        .route("/admin/kill/{scope}/{id}", delete(unkill))
        .route("/admin/reload", post(reload))
        .route("/admin/review/next", get(crate::review::http::next))
        .route("/admin/review/label", post(crate::review::http::label))
        .route("/admin/review/stats", get(crate::review::http::counters))
        .with_state(admin)
}

fn kill_error(e: KillError) -> Response {
    match e {
        KillError::Store(_) | KillError::News(_) => {
            tracing::error!(error = %e, "admin: kill switch change failed");
            error_response(&ApiError::unavailable(
                "kill_switch_unavailable",
                e.to_string(),
            ))
        }
        _ => error_response(&ApiError::invalid_request(e.to_string())),
    }
}

async fn list(State(admin): State<Arc<Admin>>, headers: HeaderMap) -> Response {
    if let Err(r) = admin.check(&headers) {
        return r;
    }
    match admin.kills.store().kills().await {
        Ok(kills) => axum::Json(json!({"kills": kills})).into_response(),
        Err(e) => kill_error(e.into()),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KillBody {
    scope: String,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    reason: String,
}

async fn kill(State(admin): State<Arc<Admin>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = admin.check(&headers) {
        return r;
    }
    let b: KillBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => {
            return error_response(&ApiError::invalid_request(format!(
                "Body must be {{\"scope\": \"key|user|team|model|all\", \"id\": \"…\", \"reason\": \"…\"}}: {e}"
            )));
        }
    };
    let (scope, target) = match crate::kill::parse_target(&b.scope, b.id.as_deref()) {
        Ok(t) => t,
        Err(e) => return kill_error(e),
    };
    match admin.kills.kill(scope, &target, &b.reason).await {
        Ok(k) => axum::Json(json!({"kill": k})).into_response(),
        Err(e) => kill_error(e),
    }
}

async fn lift(admin: &Admin, scope: &str, id: Option<&str>) -> Response {
    let (scope, target) = match crate::kill::parse_target(scope, id) {
        Ok(t) => t,
        Err(e) => return kill_error(e),
    };
    match admin.kills.unkill(scope, &target).await {
        Ok(was) => axum::Json(json!({"lifted": was, "scope": scope, "id": target})).into_response(),
        Err(e) => kill_error(e),
    }
}

async fn unkill(
    State(admin): State<Arc<Admin>>,
    headers: HeaderMap,
    Path((scope, id)): Path<(String, String)>,
) -> Response {
    if let Err(r) = admin.check(&headers) {
        return r;
    }
    lift(&admin, &scope, Some(&id)).await
}

async fn unkill_all(State(admin): State<Arc<Admin>>, headers: HeaderMap) -> Response {
    if let Err(r) = admin.check(&headers) {
        return r;
    }
    lift(&admin, "all", None).await
}

async fn reload(State(admin): State<Arc<Admin>>, headers: HeaderMap) -> Response {
    if let Err(r) = admin.check(&headers) {
        return r;
    }
    match admin
        .reloader
        .reload(crate::reload::Trigger::AdminApi)
        .await
    {
        Ok(source) => axum::Json(json!({"reloaded": true, "source": source})).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "config reload refused; the old policy keeps serving");
            error_response(&ApiError::invalid_request(e.to_string()).with_code("config_invalid"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_variable_no_api_and_weak_tokens_are_refused() {
        assert!(token(&AdminConfig::default()).unwrap().is_none());
        assert!(judge_token("T", None).unwrap().is_none());
        assert!(judge_token("T", Some("  ".into())).unwrap().is_none());
        assert!(judge_token("T", Some("short".into())).is_err());
        let looks_like_a_key = format!("pk-{}", "a".repeat(40));
        assert!(judge_token("T", Some(looks_like_a_key)).is_err());
        let good = "a-long-enough-admin-token".to_owned();
        assert_eq!(judge_token("T", Some(good.clone())).unwrap(), Some(good));
    }
}
