//! Who is calling: the gateway key on a request, checked against the store (hashed,
//! constant-time, briefly cached there), and the principal a request is charged to.

use crate::metrics::Metrics;
use axum::http::HeaderMap;
use portcullis_core::{ApiError, Principal};
use portcullis_store::Store;

/// The authenticated gateway key behind a request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub key_id: String,
    pub user: String,
    pub team: Option<String>,
    /// May name the end user in the request's `user` field.
    pub service: bool,
    /// The key's own limits and budgets (JSON of a `config::Policy`).
    pub limits: serde_json::Value,
}

impl Caller {
    /// Whom the request is charged to: the key's user, or the end user a service key names.
    pub fn principal(&self, end_user: Option<&str>) -> Principal {
        Principal {
            key_id: self.key_id.clone(),
            user: self.user.clone(),
            team: self.team.clone(),
            policy: None,
            end_user: if self.service {
                end_user.filter(|u| !u.is_empty()).map(str::to_owned)
            } else {
                None
            },
        }
    }
}

/// Checks the gateway key on a request.
pub async fn authenticate(
    store: &Store,
    metrics: &Metrics,
    headers: &HeaderMap,
) -> Result<Caller, ApiError> {
    let Some(value) = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return Err(ApiError::authentication(
            "missing_api_key",
            "You didn't provide an API key. Send your gateway key (pk-…) as 'Authorization: Bearer pk-…'.",
        ));
    };
    let secret = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .unwrap_or(value)
        .trim();
    match store.authenticate(secret).await {
        Ok(Some(k)) => Ok(Caller {
            key_id: k.id,
            user: k.user,
            team: k.team,
            service: k.service,
            limits: k.limits,
        }),
        Ok(None) => Err(ApiError::authentication(
            "invalid_api_key",
            "Incorrect API key provided. Use a gateway key created with 'portcullis keys create' that has not been revoked.",
        )),
        Err(e) => {
            metrics.alert(
                "key_store_unavailable",
                &format!("cannot check API keys: {e}"),
            );
            Err(ApiError::unavailable(
                "key_store_unavailable",
                "The gateway cannot check API keys right now; try again shortly.",
            ))
        }
    }
}
