//! The review queue over the admin API, for reviewers without a shell: `GET
//! /admin/review/next[?guard=G]`, `POST /admin/review/label` `{"id", "label", "guard"?}`,
//! `GET /admin/review/stats` — the same queue, labels and counters as `portcullis review`,
//! over the period `[review] days` of the live config.

use super::{queue, stats};
use crate::admin::Admin;
use crate::http::error_response;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use portcullis_core::ApiError;
use portcullis_store::Label;
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;

fn unavailable(e: impl std::fmt::Display) -> Response {
    error_response(&ApiError::unavailable(
        "store_unavailable",
        format!("The review store could not be read: {e}"),
    ))
}

fn since(admin: &Admin) -> i64 {
    admin.review_config().since_ms(portcullis_store::now_ms())
}

/// `?guard=` on `next`.
#[derive(Debug, Deserialize)]
pub struct NextQuery {
    guard: Option<String>,
}

/// `GET /admin/review/next`: the queue's head and its length (`next: null` when empty).
pub async fn next(
    State(admin): State<Arc<Admin>>,
    headers: HeaderMap,
    Query(q): Query<NextQuery>,
) -> Response {
    if let Err(r) = admin.check(&headers) {
        return r;
    }
    let (store, since) = (admin.store(), since(&admin));
    let (records, labels) = match (
        store.judged_records(since, true).await,
        store.review_labels(since).await,
    ) {
        (Ok(r), Ok(l)) => (r, l),
        (Err(e), _) | (_, Err(e)) => return unavailable(e),
    };
    let pending = queue::pending(&records, &labels, q.guard.as_deref());
    axum::Json(json!({"next": pending.first(), "waiting": pending.len()})).into_response()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LabelBody {
    id: String,
    label: String,
    #[serde(default)]
    guard: Option<String>,
}

/// `POST /admin/review/label`.
pub async fn label(State(admin): State<Arc<Admin>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(r) = admin.check(&headers) {
        return r;
    }
    let bad = |m: String| error_response(&ApiError::invalid_request(m));
    let b: LabelBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => {
            return bad(format!(
                "Body must be {{\"id\": \"AUDIT_ID\", \"label\": \"right|wrong\", \"guard\": \"…\"}}: {e}"
            ));
        }
    };
    let Some(label) = Label::parse(&b.label) else {
        return bad(format!("label '{}': use right or wrong", b.label));
    };
    let store = admin.store();
    let record = match store.judged_record(&b.id).await {
        Ok(Some(r)) => r,
        Ok(None) => {
            return error_response(
                &ApiError::new(
                    404,
                    "invalid_request_error",
                    Some("unknown_record"),
                    format!("No audit record with id '{}'.", b.id),
                )
                .with_param("id"),
            );
        }
        Err(e) => return unavailable(e),
    };
    let guard = match queue::resolve_guard(&record, b.guard.as_deref()) {
        Ok(g) => g,
        Err(m) => return bad(m),
    };
    match store.label_verdict(&b.id, &guard, label).await {
        Ok(l) => axum::Json(json!({"labelled": l})).into_response(),
        Err(e) => unavailable(e),
    }
}

/// `GET /admin/review/stats`: every guard's counters, as `review stats --json`.
pub async fn counters(State(admin): State<Arc<Admin>>, headers: HeaderMap) -> Response {
    if let Err(r) = admin.check(&headers) {
        return r;
    }
    let (store, since) = (admin.store(), since(&admin));
    let (records, labels) = match (
        store.judged_records(since, false).await,
        store.review_labels(since).await,
    ) {
        (Ok(r), Ok(l)) => (r, l),
        (Err(e), _) | (_, Err(e)) => return unavailable(e),
    };
    let guards: Vec<serde_json::Value> = stats::tally(&records, &labels)
        .values()
        .map(stats::to_json)
        .collect();
    axum::Json(json!({"guards": guards})).into_response()
}
