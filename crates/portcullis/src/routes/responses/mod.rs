//! The Responses API (`POST /v1/responses` and the stored-response routes in [`stored`]),
//! through the same lifecycle as a chat completion: the door's authentication and bounds,
//! the input guards, admission, the upstream call in a task of its own, the output guards,
//! the books and one audit record. Applications that moved to the Responses API would
//! otherwise bypass every guard; what is new here is only the mapping between Responses items
//! and the pipeline's segments ([`map`], [`output`]) and a stream judge for Responses events
//! ([`stream`]) inside the shared relay.
//!
//! The provider stores responses under the one provider key, so the gateway records which
//! gateway key created each one (`portcullis-store`'s `responses` table): another key cannot
//! read, delete, list the input of, or continue (`previous_response_id`) a response it did not
//! create — it gets the same 404 as for an id that does not exist. A chain stays with the end
//! user who began it. `conversation` is refused: the gateway does not proxy the Conversations
//! API and could not say whose a conversation is.

mod map;
mod output;
mod stored;
mod stream;
#[cfg(test)]
mod tests;

pub use stored::{delete, input_items, retrieve};

use crate::app::App;
use crate::books::{Claim, Spend};
use crate::http::{WithHeaders, error_response};
use crate::lifecycle::{Exchange, Slot};
use crate::metrics::Metrics;
use crate::routes::chat::{call_beside, deliver, finish_delivery, output_ceiling};
use crate::upstream::{self, pass_error};
use axum::Extension;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;
use portcullis_core::{ApiError, ChatRequest, tokens};
use portcullis_store::{ResponseOwner, Store};
use serde_json::{Map, Value};
use std::sync::Arc;
use tokio::sync::oneshot;

/// Whom a new response belongs to; recorded as soon as the provider names it.
#[derive(Clone)]
pub struct Owner {
    store: Store,
    metrics: Arc<Metrics>,
    key_id: String,
    end_user: Option<String>,
}

impl Owner {
    /// Records that response `id` is this owner's. A failure is alerted, not fatal: the
    /// answer still goes out, and the response is then not found by anyone.
    async fn record(&self, id: &str) {
        let row = ResponseOwner {
            id: id.to_owned(),
            key_id: self.key_id.clone(),
            end_user: self.end_user.clone(),
            created_ms: portcullis_store::now_ms(),
        };
        if let Err(e) = self.store.record_response(&row).await {
            self.metrics.alert(
                "response_owner_unrecorded",
                &format!("cannot record which key created response {id}: {e}"),
            );
        }
    }
}

/// The answer for a response id the caller may not see, exactly as for one that does not
/// exist.
fn not_found(id: &str) -> ApiError {
    ApiError::new(
        404,
        "invalid_request_error",
        None,
        format!("Response with id '{id}' not found."),
    )
}

/// `POST /v1/responses`.
pub async fn create(Extension(slot): Extension<Slot>, headers: HeaderMap, body: Body) -> Response {
    let Some(mut ex) = slot.take() else {
        return error_response(&ApiError::internal("The request lost its context."));
    };
    let app = ex.app().clone();
    let bytes = match super::read_body(&app, body).await {
        Ok(b) => b,
        Err(e) => return ex.refuse(e),
    };
    let mut raw: Map<String, Value> = match serde_json::from_slice(&bytes) {
        Ok(Value::Object(o)) => o,
        _ => {
            return ex.refuse(ApiError::invalid_request(
                "We could not parse the JSON body of your request. Send a JSON object.",
            ));
        }
    };
    ex.trail.model = raw.get("model").and_then(Value::as_str).map(str::to_owned);
    ex.trail.stream = raw.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let Some(caller) = ex.authenticated().cloned() else {
        return ex.refuse(ApiError::internal("The request lost its caller."));
    };
    match caller.principal(raw.get("user").and_then(Value::as_str)) {
        Ok(p) => ex.principal(p),
        Err(e) => return ex.refuse(e),
    }
    if let Err(e) = super::route_of(&app, &caller, &headers, &mut ex) {
        return ex.refuse(e);
    }
    if raw.get("conversation").is_some_and(|c| !c.is_null()) {
        return ex.refuse(
            ApiError::invalid_request(
                "'conversation' is not supported through this gateway; continue a conversation with 'previous_response_id' or send its items in 'input'.",
            )
            .with_param("conversation"),
        );
    }
    if let Err(e) = chain(&app, &mut ex, &raw).await {
        return ex.refuse(e);
    }
    let mut mapped = match map::map(&raw) {
        Ok(m) => m,
        Err(e) => return ex.refuse(e),
    };
    ex.trail.chat_input(&mapped.req);
    let s = &app.config.server;
    let req = std::mem::take(&mut mapped.req);
    let (req, judged) =
        crate::guards::run_input(&app.pipeline, &app.heavy, s.offload_bytes, req, &mut ex.ctx)
            .await;
    mapped.req = req;
    ex.trail.model = Some(mapped.req.model.clone());
    if let Err(e) = judged {
        return ex.refuse(e);
    }
    mapped.write_back(&mut raw);
    let req = mapped.req;
    let claim = Claim {
        model: &req.model,
        request_id: &ex.trail.request_id.clone(),
        prompt_tokens: tokens::count_prompt(&req),
        output_tokens: output_ceiling(&req, app.books.default_max_tokens()),
    };
    match app.books.admit(&caller, &ex.ctx.principal, claim).await {
        Ok(t) => ex.admitted(t),
        Err(r) => return ex.refuse(r.error).with_headers(r.headers),
    }
    let body = match serde_json::to_vec(&raw) {
        Ok(b) => b,
        Err(e) => return ex.fail(ApiError::internal(e.to_string())),
    };
    // A response the provider does not store (`store: false`) has no owner to remember.
    let stored = raw.get("store") != Some(&Value::Bool(false));
    let owner = stored.then(|| Owner {
        store: app.store.clone(),
        metrics: app.metrics.clone(),
        key_id: caller.key_id.clone(),
        end_user: ex.ctx.principal.end_user.clone(),
    });
    let (tx, rx) = oneshot::channel();
    tokio::spawn(answer(ex, req, body, owner, tx));
    match rx.await {
        Ok(resp) => resp,
        Err(_) => error_response(&ApiError::internal(
            "The gateway failed while answering; the request was recorded.",
        )),
    }
}

/// Checks `previous_response_id`: the caller's key must have created it, and the chain stays
/// with its end user — a continuation naming none is charged to the chain's, one naming
/// another is not found.
async fn chain(app: &App, ex: &mut Exchange, raw: &Map<String, Value>) -> Result<(), ApiError> {
    let id = match raw.get("previous_response_id") {
        None | Some(Value::Null) => return Ok(()),
        Some(Value::String(id)) => id,
        Some(_) => {
            return Err(
                ApiError::invalid_request("'previous_response_id' must be a string.")
                    .with_param("previous_response_id"),
            );
        }
    };
    let gone = || {
        not_found(id)
            .with_code("previous_response_not_found")
            .with_param("previous_response_id")
    };
    let key = ex.ctx.principal.key_id.clone();
    let owner = stored::owned(app, &key, id)
        .await
        .map_err(|e| if e.status == 404 { gone() } else { e })?;
    let mut p = ex.ctx.principal.clone();
    match (&owner.end_user, &p.end_user) {
        (a, b) if a == b => {}
        (Some(a), None) => {
            p.end_user = Some(a.clone());
            ex.principal(p);
        }
        _ => return Err(gone()),
    }
    Ok(())
}

/// The upstream call and the answer; runs to the end even when the client has gone.
async fn answer(
    ex: Exchange,
    req: ChatRequest,
    body: Vec<u8>,
    owner: Option<Owner>,
    tx: oneshot::Sender<Response>,
) {
    let app = ex.app().clone();
    let (mut ex, resp) = match call_beside(ex, &req, "/responses", body, output::usage_of).await {
        Ok(called) => called,
        Err(ended) => return deliver(tx, ended),
    };
    if !resp.status().is_success() {
        let response = pass_error(resp).await.with_headers(ex.rate_headers());
        let code = response.status().as_u16();
        return finish_delivery(ex, tx, response, code);
    }
    if req.is_stream() {
        let events = stream::Events::new(&app.pipeline, &req, &ex.ctx, owner);
        return crate::routes::stream::run(ex, events, resp, tx).await;
    }
    let mut answer = match read_json(&app, resp).await {
        Ok(v) => v,
        Err(e) => {
            ex.spent(Spend::Unknown);
            return deliver(tx, ex.fail(e));
        }
    };
    ex.spent(match output::usage_of(&answer) {
        Some(u) => Spend::Reported(u),
        // A background response is still running: book the whole reservation.
        None if matches!(answer["status"].as_str(), Some("queued" | "in_progress")) => {
            Spend::Unknown
        }
        None => Spend::Estimated(output::estimate(&req, &answer)),
    });
    if let (Some(o), Some(id)) = (&owner, answer["id"].as_str()) {
        o.record(id).await;
    }
    ex.trail.served(answer["model"].as_str());
    if let Err(e) = output::guard(&app.pipeline, &req, &mut answer, &mut ex.ctx).await {
        return deliver(tx, ex.fail(e));
    }
    delivered_text(&mut ex, &answer);
    let r = json_response(&answer).with_headers(ex.rate_headers());
    finish_delivery(ex, tx, r, 200);
}

/// Records the answer text a complete response delivers (its messages' `output_text` parts,
/// in order) for the audit record's output MAC.
fn delivered_text(ex: &mut Exchange, answer: &Value) {
    ex.trail.output_text("");
    for item in answer["output"].as_array().into_iter().flatten() {
        for part in item["content"].as_array().into_iter().flatten() {
            if part["type"] == "output_text"
                && let Some(t) = part["text"].as_str()
            {
                ex.trail.output_text(t);
            }
        }
    }
}

/// Reads a whole JSON answer within the configured size.
async fn read_json(app: &App, resp: reqwest::Response) -> Result<Value, ApiError> {
    let body = upstream::read_limited(resp, app.config.upstream.max_answer_bytes).await?;
    serde_json::from_slice(&body).map_err(|_| {
        ApiError::bad_gateway("The upstream answered with something that is not JSON.")
    })
}

fn json_response(v: &Value) -> Response {
    let mut r = Response::new(Body::from(serde_json::to_vec(v).unwrap_or_default()));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}
