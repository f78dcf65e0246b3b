//! The running gateway: configuration, the pipeline, the upstream client, the stores and the
//! books, built once at start-up and shared by every request.

use crate::audit::Trail;
use crate::books::Books;
use crate::config::Config;
use crate::server::error_response;
use crate::upstream::Upstream;
use axum::http::HeaderMap;
use axum::response::Response;
use portcullis_core::{ApiError, Context, Pipeline, Principal};
use portcullis_store::{AuditWriter, Store};
use std::sync::Arc;
use std::time::Duration;

/// Everything a request needs, shared.
pub struct App {
    pub config: Config,
    pub pipeline: Pipeline,
    pub upstream: Upstream,
    pub store: Store,
    pub audit: AuditWriter,
    pub books: Books,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Per-user counts of flagged requests, for the `user_flag_burst` alert.
    pub flags: crate::anomaly::FlagWatch,
}

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

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("store {url}: {message}")]
    Store { url: String, message: String },
    #[error("limits: {0}")]
    Limits(String),
    #[error(transparent)]
    Upstream(#[from] crate::upstream::UpstreamBuildError),
    #[error("guard '{guard}': {message}")]
    Guard { guard: String, message: String },
}

impl App {
    /// Builds the gateway from `config`, with `upstream_url` as the provider.
    pub async fn build(config: Config, upstream_url: &str) -> Result<App, StartError> {
        let api_key = std::env::var(&config.upstream.api_key_env).ok();
        let upstream = Upstream::new(
            upstream_url,
            api_key.as_deref(),
            Duration::from_secs(config.upstream.timeout_s),
            Duration::from_secs(config.upstream.connect_timeout_s),
        )?;
        let store = portcullis_store::open(&config.store.url)
            .await
            .map_err(|e| StartError::Store {
                url: config.store.url.clone(),
                message: e.to_string(),
            })?;
        let audit = AuditWriter::spawn(
            store.clone(),
            portcullis_store::SpoolConfig {
                dir: config.store.spool_dir.clone().into(),
                ..Default::default()
            },
        );
        let pipeline = crate::guards::build(&config, &upstream)?;
        tokio::task::spawn_blocking(crate::guards::warm_up)
            .await
            .ok();
        let metrics = Arc::new(crate::metrics::Metrics::default());
        let limiter = portcullis_limits::limiter_from_url(
            &config.limits.url,
            &config.limits.prefix,
            config.limits.on_error,
        )
        .map_err(|e| StartError::Limits(e.to_string()))?;
        let p = &config.pricing;
        let pricing = portcullis_limits::Pricing::builtin().with_overrides(
            &p.models,
            p.default,
            p.unknown_model,
        );
        let books = Books::new(
            limiter,
            pricing,
            config.limits.clone(),
            store.clone(),
            metrics.clone(),
        );
        let flags = crate::anomaly::FlagWatch::new(&config.alerts);
        Ok(App {
            flags,
            config,
            pipeline,
            upstream,
            store,
            audit,
            books,
            metrics,
        })
    }

    /// Checks the gateway key on a request.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Caller, ApiError> {
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
        match self.store.authenticate(secret).await {
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
                self.metrics.alert(
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

    /// Refuses a request before any guard ran.
    pub fn refuse(&self, trail: Trail, e: ApiError) -> Response {
        let ctx = Context::new(trail.request_id.clone(), Principal::default());
        self.refuse_with(trail, e, &ctx)
    }

    /// Refuses a request, recording the guards' verdicts so far.
    pub fn refuse_with(&self, mut trail: Trail, e: ApiError, ctx: &Context) -> Response {
        trail.status = e.status;
        self.finish(trail, ctx, Some(&e));
        error_response(&e)
    }

    /// Ends a request that failed after it was admitted (upstream down, timeout).
    pub fn fail_with(&self, trail: Trail, e: ApiError, ctx: &Context) -> Response {
        self.refuse_with(trail, e, ctx)
    }

    /// Writes the request's one audit record.
    pub fn finish(&self, trail: Trail, ctx: &Context, error: Option<&ApiError>) {
        let m = &self.metrics;
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
            && let Some(n) = self
                .flags
                .record(&ctx.principal.user, std::time::Instant::now())
        {
            m.alert(
                "user_flag_burst",
                &format!(
                    "user '{}' had {n} flagged or blocked requests within {} s",
                    ctx.principal.user, self.config.alerts.window_s
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
        self.audit.submit(record);
    }

    /// Each dependency and whether it answers.
    pub async fn readiness(&self) -> Vec<(&'static str, bool, String)> {
        let store = match self.store.ping().await {
            Ok(()) => (true, "ok".to_owned()),
            Err(e) => (false, e.to_string()),
        };
        let limits = match self.books.ping().await {
            Ok(()) => (true, "ok".to_owned()),
            Err(e) => (false, e),
        };
        vec![("store", store.0, store.1), ("limits", limits.0, limits.1)]
    }
}
