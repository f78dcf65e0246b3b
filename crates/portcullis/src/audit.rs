//! The audit trail of one request: what is known about it, filled in along the path, and the
//! record it becomes when the request ends (see [`crate::lifecycle`]).

use crate::auth::Caller;
use portcullis_core::{Context, Outcome, Principal, Usage};
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
    pub upstream_ms: Option<u64>,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cached_tokens: u64,
    pub cost_micros: i64,
    /// The usage is the gateway's count, not the provider's report.
    pub usage_estimated: bool,
}

/// How a request ended, as the audit record says it.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// HTTP status sent (499 when the client hung up first).
    pub status: u16,
    /// `allowed`, `flagged`, `blocked`, `failed` or `client_closed`.
    pub outcome: &'static str,
    pub error_code: Option<String>,
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
            upstream_ms: None,
            prompt_tokens: 0,
            completion_tokens: 0,
            cached_tokens: 0,
            cost_micros: 0,
            usage_estimated: false,
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

    /// Records the usage booked and its cost.
    pub fn usage(&mut self, u: &Usage, cost_micros: i64, estimated: bool) {
        self.prompt_tokens = u.prompt_tokens;
        self.completion_tokens = u.completion_tokens;
        self.cached_tokens = u.cached_tokens;
        self.cost_micros = cost_micros;
        self.usage_estimated = estimated;
    }

    /// Whether some guard flagged the request (or would have acted, in monitor mode).
    pub fn flagged(ctx: &Context) -> bool {
        ctx.outcomes().any(|o| {
            matches!(
                o,
                Outcome::Flag | Outcome::WouldBlock | Outcome::WouldTransform
            )
        })
    }

    /// The record to store.
    pub fn into_record(self, ctx: &Context, verdict: Verdict) -> AuditRecord {
        AuditRecord {
            request_id: self.request_id,
            time: portcullis_store::now_ms(),
            key_id: self.key_id,
            user: self.user,
            team: self.team,
            model: self.model,
            route: Some(self.route.to_owned()),
            status: i32::from(verdict.status),
            outcome: verdict.outcome.to_owned(),
            error_code: verdict.error_code,
            prompt_tokens: self.prompt_tokens as i64,
            completion_tokens: self.completion_tokens as i64,
            cached_tokens: self.cached_tokens as i64,
            cost_micros: self.cost_micros,
            latency_ms: self.started.elapsed().as_millis() as i64,
            upstream_ms: self.upstream_ms.map(|v| v as i64),
            stream: self.stream,
            verdicts: serde_json::to_value(&ctx.trace).unwrap_or_default(),
            usage_estimated: self.usage_estimated,
            ..AuditRecord::default()
        }
    }
}
