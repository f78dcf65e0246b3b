//! Who is calling: the gateway key on a request, checked against the store (hashed,
//! constant-time, briefly cached there), the principal a request is charged to, and a brake on
//! clients that keep presenting bad keys.

use crate::metrics::Metrics;
use axum::http::HeaderMap;
use portcullis_core::{ApiError, Principal};
use portcullis_store::Store;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The longest end-user name a service key may put in `user` (bytes).
pub const MAX_END_USER: usize = 128;

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
    /// Whom the request is charged to: the key's user, or the end user a service key names in
    /// `user`. A service key's end users live in the key's own namespace (`<key id>/<user>`),
    /// so a key naming "alice" spends its own end user's limits, never the real user alice's.
    pub fn principal(&self, end_user: Option<&str>) -> Result<Principal, ApiError> {
        let end_user = match end_user.filter(|u| self.service && !u.is_empty()) {
            Some(u) if u.len() > MAX_END_USER || u.chars().any(char::is_control) => {
                return Err(ApiError::invalid_request(format!(
                    "'user' must be at most {MAX_END_USER} bytes of printable text."
                ))
                .with_param("user"));
            }
            Some(u) => Some(format!("{}/{u}", self.key_id)),
            None => None,
        };
        Ok(Principal {
            key_id: self.key_id.clone(),
            user: self.user.clone(),
            team: self.team.clone(),
            policy: None,
            end_user,
        })
    }
}

/// Failed authentications per client address over a sliding minute: past the limit, a client
/// is refused before its key is looked up, so a flood of bogus keys never reaches the store.
pub struct FailedAuths {
    per_minute: u32,
    seen: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

/// Addresses tracked at most; beyond this the oldest windows are forgotten.
const MAX_ADDRESSES: usize = 65_536;

impl FailedAuths {
    /// A brake allowing `per_minute` failures per address (0: off).
    pub fn new(per_minute: u32) -> Self {
        FailedAuths {
            per_minute,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `addr` is over its limit at `now`.
    pub fn blocked(&self, addr: IpAddr, now: Instant) -> bool {
        if self.per_minute == 0 {
            return false;
        }
        self.seen.lock().is_ok_and(|m| {
            m.get(&addr).is_some_and(|(start, n)| {
                now.duration_since(*start) < Duration::from_secs(60) && *n >= self.per_minute
            })
        })
    }

    /// Counts one failure by `addr` at `now`.
    pub fn failed(&self, addr: IpAddr, now: Instant) {
        if self.per_minute == 0 {
            return;
        }
        if let Ok(mut m) = self.seen.lock() {
            if m.len() >= MAX_ADDRESSES && !m.contains_key(&addr) {
                m.retain(|_, (start, _)| now.duration_since(*start) < Duration::from_secs(60));
                if m.len() >= MAX_ADDRESSES {
                    return;
                }
            }
            let e = m.entry(addr).or_insert((now, 0));
            if now.duration_since(e.0) >= Duration::from_secs(60) {
                *e = (now, 0);
            }
            e.1 = e.1.saturating_add(1);
        }
    }
}

/// The refusal for an address over its failed-authentication limit.
pub fn too_many_failures() -> ApiError {
    ApiError::rate_limited(
        "Too many failed authentications from this address; wait a minute and use a valid gateway key.",
    )
    .with_code("too_many_failed_authentications")
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
        Ok(Some(k)) if k.expired_at(portcullis_store::now_ms()) => Err(expired(&k)),
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

/// The refusal for a key past its expiry date, or a rotated-out secret past its grace period.
fn expired(k: &portcullis_store::KeyRecord) -> ApiError {
    let when = utc(k.expires_ms.unwrap_or(0));
    let message = if k.previous_secret {
        format!(
            "This is the previous secret of gateway key {}: the key was rotated and the old secret stopped working at {when}. Use the new secret.",
            k.id
        )
    } else {
        format!(
            "Gateway key {} expired at {when}. Ask for a new key ('portcullis keys create' or 'keys rotate').",
            k.id
        )
    };
    ApiError::authentication("key_expired", message)
}

/// `ms` since the epoch as `YYYY-MM-DD HH:MM UTC`.
pub fn utc(ms: i64) -> String {
    let day = portcullis_limits::BudgetWindow::Day.period(ms);
    let minutes = (ms - day.start_ms) / 60_000;
    format!("{} {:02}:{:02} UTC", day.key, minutes / 60, minutes % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(service: bool) -> Caller {
        Caller {
            key_id: "key_1".into(),
            user: "svc".into(),
            team: None,
            service,
            limits: serde_json::Value::Null,
        }
    }

    #[test]
    fn a_service_keys_end_users_live_in_its_own_namespace() {
        let p = caller(true).principal(Some("alice")).unwrap();
        assert_eq!(p.end_user.as_deref(), Some("key_1/alice"));
        let p = caller(false).principal(Some("alice")).unwrap();
        assert_eq!(p.end_user, None, "an ordinary key cannot name an end user");
        let long = "a".repeat(MAX_END_USER + 1);
        let e = caller(true).principal(Some(&long)).unwrap_err();
        assert_eq!((e.status, e.param.as_deref()), (400, Some("user")));
        assert!(caller(true).principal(Some("bob\n")).is_err());
    }

    #[test]
    fn expiry_messages_say_when_and_what_to_do() {
        assert_eq!(utc(1_798_761_600_000 + 90 * 60_000), "2027-01-01 01:30 UTC");
        let mut k = portcullis_store::KeyRecord {
            id: "key_1".into(),
            prefix: "pk-x".into(),
            user: "u".into(),
            team: None,
            service: false,
            limits: serde_json::Value::Null,
            created_ms: 0,
            revoked: false,
            expires_ms: Some(1_798_761_600_000),
            previous_until_ms: None,
            previous_secret: false,
        };
        let e = expired(&k);
        assert_eq!((e.status, e.code.as_deref()), (401, Some("key_expired")));
        assert!(
            e.message.contains("expired at 2027-01-01 00:00 UTC"),
            "{}",
            e.message
        );
        k.previous_secret = true;
        assert!(expired(&k).message.contains("rotated"));
    }

    #[test]
    fn an_address_is_braked_after_its_failures_for_a_minute() {
        let f = FailedAuths::new(3);
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        let t = Instant::now();
        for _ in 0..3 {
            assert!(!f.blocked(a, t));
            f.failed(a, t);
        }
        assert!(f.blocked(a, t));
        assert!(!f.blocked(b, t), "other addresses are not affected");
        assert!(!f.blocked(a, t + Duration::from_secs(61)));
        assert!(!FailedAuths::new(0).blocked(a, t));
    }
}
