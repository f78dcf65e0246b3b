//! The audit trail of one request, filled in along the path and written exactly once —
//! allowed, blocked or failed — through the store's non-blocking writer.

use crate::auth::Caller;
use crate::books::Books;
use portcullis_core::{ApiError, Context, Outcome, Principal, Usage};
use portcullis_store::AuditRecord;
use std::time::Instant;

/// What is known about a request so far.
#[derive(Debug)]
pub struct Trail {
    pub request_id: String,
    pub route: &'static str,
    pub started: Instant,
    pub key_id: Option<String>,
    pub user: Option<String>,
    pub team: Option<String>,
    pub model: Option<String>,
    pub stream: bool,
    pub status: u16,
    pub error_code: Option<String>,
    pub upstream_ms: Option<u64>,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cached_tokens: u64,
    pub cost_micros: i64,
}

impl Trail {
    /// A trail for a request that just arrived.
    pub fn new(request_id: String, route: &'static str) -> Self {
        Trail {
            request_id,
            route,
            started: Instant::now(),
            key_id: None,
            user: None,
            team: None,
            model: None,
            stream: false,
            status: 0,
            error_code: None,
            upstream_ms: None,
            prompt_tokens: 0,
            completion_tokens: 0,
            cached_tokens: 0,
            cost_micros: 0,
        }
    }

    /// Records who is calling.
    pub fn caller(&mut self, c: &Caller) {
        self.key_id = Some(c.key_id.clone());
        self.user = Some(c.user.clone());
        self.team = c.team.clone();
    }

    /// Records whom the request is charged to (the end user of a service key).
    pub fn principal(&mut self, p: &Principal) {
        self.user = Some(p.end_user.clone().unwrap_or_else(|| p.user.clone()));
    }

    /// Records real usage and its cost.
    pub fn usage(&mut self, u: Option<&Usage>, books: &Books, model: &str) {
        if let Some(u) = u {
            self.prompt_tokens = u.prompt_tokens;
            self.completion_tokens = u.completion_tokens;
            self.cached_tokens = u.cached_tokens;
            self.cost_micros = books.cost_micros(model, u).unwrap_or(0);
        }
    }

    /// The record to store.
    pub fn into_record(self, ctx: &Context, error: Option<&ApiError>) -> AuditRecord {
        let outcomes: Vec<Outcome> = ctx.outcomes().collect();
        let outcome = if self.status >= 400 || error.is_some() {
            if (400..500).contains(&self.status) && self.upstream_ms.is_none() {
                "blocked"
            } else {
                "failed"
            }
        } else if outcomes.iter().any(|o| {
            matches!(
                o,
                Outcome::Flag | Outcome::WouldBlock | Outcome::WouldTransform
            )
        }) {
            "flagged"
        } else {
            "allowed"
        };
        let error_code = self
            .error_code
            .or_else(|| error.and_then(|e| e.code.clone()));
        AuditRecord {
            request_id: self.request_id,
            time: portcullis_store::now_ms(),
            key_id: self.key_id,
            user: self.user,
            team: self.team,
            model: self.model,
            route: Some(self.route.to_owned()),
            status: self.status as i32,
            outcome: outcome.to_owned(),
            error_code,
            prompt_tokens: self.prompt_tokens as i64,
            completion_tokens: self.completion_tokens as i64,
            cached_tokens: self.cached_tokens as i64,
            cost_micros: self.cost_micros,
            latency_ms: self.started.elapsed().as_millis() as i64,
            upstream_ms: self.upstream_ms.map(|v| v as i64),
            stream: self.stream,
            verdicts: serde_json::to_value(&ctx.trace).unwrap_or_default(),
            ..AuditRecord::default()
        }
    }
}
