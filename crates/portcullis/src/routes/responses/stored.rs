//! The stored-response routes — `GET /v1/responses/{id}` (whole, or replayed as a stream with
//! `?stream=true`), `DELETE /v1/responses/{id}`, `GET /v1/responses/{id}/input_items` —
//! answered only for the key that created the response; any other key, and any id the
//! gateway never saw, gets the same 404 without the provider being asked.
//!
//! A retrieved answer passes the output guards again: the provider keeps the model's text as
//! the model wrote it, so whatever the guards withheld or redacted when it was first sent must
//! not come back through a retrieval. Pseudonyms cannot be restored there (a request's
//! pseudonym vault lives only as long as the request), so a retrieved answer or input list
//! shows the placeholders the provider saw.

use super::{not_found, read_json, stream};
use crate::app::App;
use crate::http::error_response;
use crate::lifecycle::{Ending, Exchange, Slot};
use crate::upstream::{self, pass_error};
use axum::Extension;
use axum::body::Body;
use axum::extract::{Path, RawQuery};
use axum::http::{HeaderValue, header};
use axum::response::Response;
use portcullis_core::{ApiError, ChatRequest};
use portcullis_store::ResponseOwner;
use std::time::Instant;
use tokio::sync::oneshot;

/// Response ids as the provider makes them; anything else cannot be one (and must not reach
/// the provider's URL path).
fn valid_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The owner of response `id` when it is the key `key_id`; else not found.
pub(super) async fn owned(app: &App, key_id: &str, id: &str) -> Result<ResponseOwner, ApiError> {
    if !valid_id(id) {
        return Err(not_found(id));
    }
    match app.store.response_owner(id).await {
        Ok(Some(o)) if o.key_id == key_id => Ok(o),
        Ok(_) => Err(not_found(id)),
        Err(e) => {
            app.metrics.alert(
                "response_store_unavailable",
                &format!("cannot read which key created a response: {e}"),
            );
            Err(ApiError::unavailable(
                "response_store_unavailable",
                "The gateway cannot check who created this response right now; try again shortly.",
            ))
        }
    }
}

/// Takes the exchange and checks the caller owns response `id`.
async fn open(slot: &Slot, id: &str) -> Result<Exchange, Response> {
    let Some(ex) = slot.take() else {
        return Err(error_response(&ApiError::internal(
            "The request lost its context.",
        )));
    };
    let Some(key) = ex.authenticated().map(|c| c.key_id.clone()) else {
        return Err(ex.refuse(ApiError::internal("The request lost its caller.")));
    };
    let app = ex.app().clone();
    match owned(&app, &key, id).await {
        Ok(_) => Ok(ex),
        Err(e) => Err(ex.refuse(e)),
    }
}

/// Calls the provider for a stored response.
async fn call(
    ex: &mut Exchange,
    method: reqwest::Method,
    path: String,
) -> Result<reqwest::Response, ApiError> {
    let app = ex.app().clone();
    let sent = Instant::now();
    let resp = app.upstream.send(method, &path, None).await;
    ex.trail.upstream_ms = Some(sent.elapsed().as_millis() as u64);
    resp
}

fn with_query(path: String, query: Option<String>) -> String {
    match query.filter(|q| !q.is_empty()) {
        Some(q) => format!("{path}?{q}"),
        None => path,
    }
}

/// Passes the provider's answer on as it came (an error scrubbed), and finishes.
async fn pass(ex: Exchange, resp: reqwest::Response) -> Response {
    let status = resp.status();
    if !status.is_success() {
        let r = pass_error(resp).await;
        ex.finish(Ending::Answered(r.status().as_u16()));
        return r;
    }
    let app = ex.app().clone();
    match upstream::read_limited(resp, app.config.upstream.max_answer_bytes).await {
        Ok(b) => {
            let mut r = Response::new(Body::from(b));
            *r.status_mut() = status;
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            ex.finish(Ending::Answered(status.as_u16()));
            r
        }
        Err(e) => ex.fail(e),
    }
}

/// `GET /v1/responses/{id}`.
pub async fn retrieve(
    Extension(slot): Extension<Slot>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let mut ex = match open(&slot, &id).await {
        Ok(ex) => ex,
        Err(r) => return r,
    };
    let streamed = query
        .as_deref()
        .is_some_and(|q| q.split('&').any(|kv| kv == "stream=true"));
    ex.trail.stream = streamed;
    let path = with_query(format!("/responses/{id}"), query);
    let resp = match call(&mut ex, reqwest::Method::GET, path).await {
        Ok(r) => r,
        Err(e) => return ex.fail(e),
    };
    if !resp.status().is_success() {
        return pass(ex, resp).await;
    }
    let (tx, rx) = oneshot::channel();
    tokio::spawn(answer(ex, resp, streamed, tx));
    match rx.await {
        Ok(r) => r,
        Err(_) => error_response(&ApiError::internal(
            "The gateway failed while answering; the request was recorded.",
        )),
    }
}

/// A stored answer through the output guards, whole or streamed.
async fn answer(
    mut ex: Exchange,
    resp: reqwest::Response,
    streamed: bool,
    tx: oneshot::Sender<Response>,
) {
    let app = ex.app().clone();
    let req = ChatRequest::default();
    if streamed {
        let events = stream::Events::new(&app.pipeline, &req, &ex.ctx, None);
        return crate::routes::stream::run(ex, events, resp, tx).await;
    }
    let mut answer = match read_json(&app, resp).await {
        Ok(v) => v,
        Err(e) => {
            let _ = tx.send(ex.fail(e));
            return;
        }
    };
    let req = ChatRequest {
        model: answer["model"].as_str().unwrap_or_default().to_owned(),
        ..ChatRequest::default()
    };
    ex.trail.model = Some(req.model.clone()).filter(|m| !m.is_empty());
    if let Err(e) = super::output::guard(&app.pipeline, &req, &mut answer, &mut ex.ctx).await {
        let _ = tx.send(ex.fail(e));
        return;
    }
    crate::routes::chat::finish_delivery(ex, tx, super::json_response(&answer), 200);
}

/// `DELETE /v1/responses/{id}`: the provider deletes it, then the gateway forgets its owner.
pub async fn delete(Extension(slot): Extension<Slot>, Path(id): Path<String>) -> Response {
    let mut ex = match open(&slot, &id).await {
        Ok(ex) => ex,
        Err(r) => return r,
    };
    let resp = match call(&mut ex, reqwest::Method::DELETE, format!("/responses/{id}")).await {
        Ok(r) => r,
        Err(e) => return ex.fail(e),
    };
    let status = resp.status().as_u16();
    if resp.status().is_success() || status == 404 {
        let app = ex.app().clone();
        let key = ex.ctx.principal.key_id.clone();
        if let Err(e) = app.store.forget_response(&id, &key).await {
            tracing::warn!(error = %e, "could not forget a deleted response's owner");
        }
    }
    pass(ex, resp).await
}

/// `GET /v1/responses/{id}/input_items` (its query — `after`, `limit`, `order`, `include` —
/// passed on).
pub async fn input_items(
    Extension(slot): Extension<Slot>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let mut ex = match open(&slot, &id).await {
        Ok(ex) => ex,
        Err(r) => return r,
    };
    let path = with_query(format!("/responses/{id}/input_items"), query);
    match call(&mut ex, reqwest::Method::GET, path).await {
        Ok(resp) => pass(ex, resp).await,
        Err(e) => ex.fail(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_provider_shaped_ids_reach_the_provider() {
        assert!(valid_id("resp_67ccd2bed1ec8190b14f964abc054267"));
        assert!(!valid_id("../files"));
        assert!(!valid_id("resp_1/input_items"));
        assert!(!valid_id(""));
        assert!(!valid_id(&"a".repeat(129)));
    }
}
