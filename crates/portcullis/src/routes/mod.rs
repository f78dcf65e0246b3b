//! The request handlers, one module per route family (chat and its stream, the Responses
//! API, text endpoints, pass-through, scan). Each takes its request's exchange from
//! the door, runs it through the rooms below (guards, books, upstream) and ends it through
//! [`crate::lifecycle`].

pub mod chat;
pub mod passthrough;
pub mod responses;
pub mod scan;
pub mod stream;
pub mod structured;
pub mod text;

use crate::app::App;
use crate::auth::Caller;
use crate::config::Policy;
use crate::lifecycle::Exchange;
use axum::body::Body;
use axum::http::HeaderMap;
use portcullis_core::ApiError;
use std::time::Duration;

/// Reads the body within the configured size and time.
async fn read_body(app: &App, body: Body) -> Result<bytes::Bytes, ApiError> {
    let s = &app.config.server;
    let limit = Duration::from_secs(s.body_timeout_s.max(1));
    match tokio::time::timeout(limit, crate::http::read_body(body, s.max_body_bytes)).await {
        Ok(r) => r,
        Err(_) => Err(ApiError::new(
            408,
            "invalid_request_error",
            Some("request_timeout"),
            format!(
                "The request body did not arrive within {} s.",
                limit.as_secs()
            ),
        )),
    }
}

/// The route a request asks for in `x-portcullis-route`, when the caller is granted it: a key
/// may use only the routes its own policy, its team's or `per_key` lists.
fn route_of(
    app: &App,
    caller: &Caller,
    headers: &HeaderMap,
    ex: &mut Exchange,
) -> Result<(), ApiError> {
    let Some(route) = headers
        .get("x-portcullis-route")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|r| !r.is_empty())
    else {
        return Ok(());
    };
    let c = &app.config.limits;
    let key: Policy = serde_json::from_value(caller.limits.clone()).unwrap_or_default();
    let team = caller.team.as_ref().and_then(|t| c.teams.get(t));
    let granted = [Some(&key), team, Some(&c.per_key)]
        .into_iter()
        .flatten()
        .filter_map(|p| p.routes.as_ref())
        .any(|routes| routes.iter().any(|r| r == route));
    if !granted {
        return Err(ApiError::policy(
            "route_not_granted",
            format!(
                "This key may not use the route '{route}' (x-portcullis-route). Grant it with 'portcullis keys update ID --route {route}' or in the team's [limits.teams.NAME] routes."
            ),
        ));
    }
    ex.ctx.route = Some(route.to_owned());
    Ok(())
}
