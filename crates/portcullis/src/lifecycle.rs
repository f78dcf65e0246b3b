//! How a request ends: refused before or by the guards, failed after admission, or answered —
//! each ending writes the request's one audit record and counts it in the metrics.

use crate::app::App;
use crate::audit::Trail;
use crate::http::error_response;
use axum::response::Response;
use portcullis_core::{ApiError, Context, Principal};

/// Refuses a request before any guard ran.
pub fn refuse(app: &App, trail: Trail, e: ApiError) -> Response {
    let ctx = Context::new(trail.request_id.clone(), Principal::default());
    refuse_with(app, trail, e, &ctx)
}

/// Refuses a request, recording the guards' verdicts so far.
pub fn refuse_with(app: &App, mut trail: Trail, e: ApiError, ctx: &Context) -> Response {
    trail.status = e.status;
    finish(app, trail, ctx, Some(&e));
    error_response(&e)
}

/// Ends a request that failed after it was admitted (upstream down, timeout).
pub fn fail_with(app: &App, trail: Trail, e: ApiError, ctx: &Context) -> Response {
    refuse_with(app, trail, e, ctx)
}

/// Writes the request's one audit record.
pub fn finish(app: &App, trail: Trail, ctx: &Context, error: Option<&ApiError>) {
    let m = &app.metrics;
    m.latency.observe(trail.started.elapsed().as_secs_f64());
    if let Some(ms) = trail.upstream_ms {
        m.upstream_latency.observe(ms as f64 / 1000.0);
    }
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
        m.alert(
            "user_flag_burst",
            &format!(
                "user '{}' had {n} flagged or blocked requests within {} s",
                ctx.principal.user, app.config.alerts.window_s
            ),
        );
    }
    let record = trail.into_record(ctx, error);
    m.requests
        .get_or_create(&crate::metrics::RequestLabels {
            route: record.route.clone().unwrap_or_default(),
            status: record.status as u16,
            outcome: record.outcome.clone(),
        })
        .inc();
    for (kind, n) in [
        ("prompt", record.prompt_tokens),
        ("completion", record.completion_tokens),
        ("cached", record.cached_tokens),
    ] {
        if n > 0 {
            m.tokens
                .get_or_create(&crate::metrics::KindLabels { kind: kind.into() })
                .inc_by(n as u64);
        }
    }
    if record.cost_micros > 0 {
        m.cost_micros.inc_by(record.cost_micros as u64);
    }
    app.audit.submit(record);
}
