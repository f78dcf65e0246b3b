//! The request lifecycle: one [`Exchange`] per request, opened at the door and finished exactly
//! once — answered, refused, failed, abandoned by the client, or cut short by a panic. Finishing
//! settles the admission ticket with what was really spent and writes the one audit record;
//! an exchange dropped unfinished (its handler future dropped because the client hung up, or a
//! stream task that panicked) finishes itself in `Drop`, so no ending can escape the books.
//! Pingora's `logging` phase is the model: one hook, whatever happened before it.

use crate::app::App;
use crate::audit::{Trail, Verdict};
use crate::auth::Caller;
use crate::books::{Books, Spend, Ticket};
use crate::http::{MODE_HEADER, WithHeaders, error_response, mode_header};
use axum::response::Response;
use portcullis_core::{ApiError, Context, Principal};
use std::sync::{Arc, Mutex};
use tokio::sync::OwnedSemaphorePermit;

/// How a request ended.
#[derive(Debug)]
pub enum Ending {
    /// An answer went out with this status (a pass-through error status included).
    Answered(u16),
    /// Refused before the upstream call: authentication, parsing, a guard, admission.
    Refused(ApiError),
    /// Failed after admission: the upstream, or an output guard, or the gateway itself.
    Failed(ApiError),
    /// The client went away before the answer was complete.
    ClientClosed,
    /// The task serving the request panicked.
    Panicked,
}

/// One request from the door to its audit record.
pub struct Exchange {
    app: Arc<App>,
    pub trail: Trail,
    /// The guards' context: principal, nonce, pseudonym vault, the trace of verdicts.
    pub ctx: Context,
    caller: Option<Caller>,
    ticket: Option<Ticket>,
    spend: Spend,
    /// A place in the gateway's bounded set of requests in flight, held until the end.
    permit: Option<OwnedSemaphorePermit>,
    finished: bool,
}

impl Exchange {
    /// Opens the exchange of a request that just arrived on `route`.
    pub fn new(app: Arc<App>, request_id: String, route: &'static str) -> Exchange {
        let ctx = Context::new(request_id.clone(), Principal::default());
        let trail = Trail::new(request_id, route)
            .keyed(app.audit.text_mac())
            .copied(app.config.audit.text_copy());
        Exchange {
            app,
            trail,
            ctx,
            caller: None,
            ticket: None,
            spend: Spend::Nothing,
            permit: None,
            finished: false,
        }
    }

    /// The shared gateway this request runs in.
    pub fn app(&self) -> &Arc<App> {
        &self.app
    }

    /// Holds a place among the requests in flight until the exchange ends.
    pub fn hold(&mut self, permit: OwnedSemaphorePermit) {
        self.permit = Some(permit);
    }

    /// Records the authenticated caller.
    pub fn caller(&mut self, c: &Caller) {
        self.trail.caller(c);
        if let Ok(p) = c.principal(None) {
            self.ctx.principal = p;
        }
        self.caller = Some(c.clone());
    }

    /// The authenticated caller (set at the door for every API route).
    pub fn authenticated(&self) -> Option<&Caller> {
        self.caller.as_ref()
    }

    /// Records whom the request is charged to.
    pub fn principal(&mut self, p: Principal) {
        self.trail.principal(&p);
        self.ctx.principal = p;
    }

    /// Keeps the admission ticket until the end.
    pub fn admitted(&mut self, t: Ticket) {
        self.ticket = Some(t);
    }

    /// The `x-ratelimit-*` headers of the admission, if any, and the guards' modes
    /// (`x-portcullis-mode`) once a guard has judged the request.
    pub fn rate_headers(&self) -> Vec<(&'static str, String)> {
        let mut h = self
            .ticket
            .as_ref()
            .map(Ticket::headers)
            .unwrap_or_default();
        h.extend(mode_header(&self.ctx.trace).map(|v| (MODE_HEADER, v)));
        h
    }

    /// The output ceiling reserved at admission (0 before admission).
    pub fn reserved_output(&self) -> u64 {
        self.ticket.as_ref().map_or(0, |t| t.output_tokens)
    }

    /// Records what the request consumed so far (the last word wins).
    pub fn spent(&mut self, s: Spend) {
        self.spend = s;
    }

    /// Ends the request with a refusal (before the upstream call) and returns its response.
    pub fn refuse(self, e: ApiError) -> Response {
        let resp = error_response(&e).with_headers(self.rate_headers());
        self.finish(Ending::Refused(e));
        resp
    }

    /// Ends the request with a failure after admission and returns its response.
    pub fn fail(self, e: ApiError) -> Response {
        let resp = error_response(&e).with_headers(self.rate_headers());
        self.finish(Ending::Failed(e));
        resp
    }

    /// Drops a request that is no API request at all — an unknown URL without a valid key —
    /// with no audit record (scanners knock on every door; their noise is not the log's).
    pub fn dismiss(mut self) {
        self.finished = true;
        self.permit.take();
    }

    /// Ends the request.
    pub fn finish(mut self, ending: Ending) {
        self.conclude(ending);
    }

    /// The one place a request ends: books, metrics, alerts, audit.
    fn conclude(&mut self, ending: Ending) {
        if self.finished {
            return;
        }
        self.finished = true;
        let app = self.app.clone();
        let model = self.trail.model.clone().unwrap_or_default();
        let spend = self.spend;
        if let Some(ticket) = self.ticket.take() {
            if let Some(u) = Books::usage_of(&ticket, &spend) {
                let cost = app.books.cost_micros(&model, &u).unwrap_or(0);
                self.trail.usage(&u, cost, spend.estimated());
            }
            // Settling talks to the limiter and the ledger: off this (possibly dropping) path.
            let books_app = app.clone();
            match tokio::runtime::Handle::try_current() {
                Ok(rt) => {
                    rt.spawn(async move { books_app.books.settle(ticket, &model, spend).await });
                }
                Err(_) => drop(ticket),
            }
        }
        let verdict = self.verdict(&ending);
        let trail = std::mem::replace(&mut self.trail, Trail::new(String::new(), ""));
        record(&app, trail, &self.ctx, verdict);
        self.permit.take();
    }

    fn verdict(&self, ending: &Ending) -> Verdict {
        match ending {
            Ending::Answered(status) => Verdict {
                status: *status,
                outcome: if *status >= 500 || (*status >= 400 && self.trail.upstream_ms.is_some()) {
                    "failed"
                } else if *status >= 400 {
                    "blocked"
                } else if Trail::flagged(&self.ctx) {
                    "flagged"
                } else {
                    "allowed"
                },
                error_code: None,
            },
            Ending::Refused(e) => Verdict {
                status: e.status,
                outcome: if e.status >= 500 { "failed" } else { "blocked" },
                error_code: e.code.clone(),
            },
            Ending::Failed(e) => Verdict {
                status: e.status,
                outcome: if (400..500).contains(&e.status) {
                    "blocked"
                } else {
                    "failed"
                },
                error_code: e.code.clone(),
            },
            Ending::ClientClosed => Verdict {
                status: 499,
                outcome: "client_closed",
                error_code: Some("client_closed".into()),
            },
            Ending::Panicked => Verdict {
                status: 500,
                outcome: "failed",
                error_code: Some("internal_error".into()),
            },
        }
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        if !self.finished {
            let ending = if std::thread::panicking() {
                Ending::Panicked
            } else {
                Ending::ClientClosed
            };
            self.conclude(ending);
        }
    }
}

/// Counts the request in the metrics, raises the per-user flag alert, and submits its record.
fn record(app: &App, trail: Trail, ctx: &Context, verdict: Verdict) {
    let m = &app.metrics;
    // Every guard's verdict is counted (not short-circuited): one flag makes the request
    // flagged.
    let flagged = ctx
        .trace
        .iter()
        .fold(false, |flagged, g| m.observe_guard(g) | flagged);
    if flagged
        && let Some(n) = app
            .flags
            .record(&ctx.principal.user, std::time::Instant::now())
    {
        m.alert_about(
            "user_flag_burst",
            &ctx.principal.user,
            &format!(
                "user '{}' had {n} flagged or blocked requests within {} s",
                ctx.principal.user, app.config.alerts.window_s
            ),
            serde_json::json!({"flagged": n, "window_s": app.config.alerts.window_s}),
        );
    }
    let record = trail.into_record(ctx, verdict);
    m.observe_request(&record);
    for f in app.detectors.observe(&record, std::time::Instant::now()) {
        m.alert_about(f.kind, &f.subject, &f.message, f.details);
    }
    app.audit.submit(record);
}

/// Where the door leaves a request's exchange for its handler to take; whatever is left when
/// the handler returns (a route that never took it) is finished by the door.
#[derive(Clone, Default)]
pub struct Slot(Arc<Mutex<Option<Exchange>>>);

impl Slot {
    /// A slot holding `ex`.
    pub fn new(ex: Exchange) -> Slot {
        Slot(Arc::new(Mutex::new(Some(ex))))
    }

    /// Takes the exchange out (once).
    pub fn take(&self) -> Option<Exchange> {
        self.0.lock().ok().and_then(|mut g| g.take())
    }
}
