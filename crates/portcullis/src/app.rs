//! The running gateway: configuration, the pipeline, the upstream client, the stores and the
//! books, built once at start-up and shared by every request.

use crate::books::Books;
use crate::config::Config;
use crate::upstream::Upstream;
use axum::http::HeaderMap;
use portcullis_core::{ApiError, Pipeline};
use portcullis_store::{AuditWriter, Store};
use std::sync::Arc;
use std::time::Duration;

/// Everything a request needs, shared.
pub struct App {
    pub config: Config,
    pub pipeline: Arc<Pipeline>,
    /// The guards for embedding and moderation input ([`crate::guards::TEXT_GUARDS`]).
    pub text_pipeline: Arc<Pipeline>,
    pub upstream: Upstream,
    pub store: Store,
    pub audit: Arc<AuditWriter>,
    pub books: Books,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Per-user counts of flagged requests, for the `user_flag_burst` alert.
    pub flags: Arc<crate::anomaly::FlagWatch>,
    /// Token spikes, upstream latency and error rate ([`crate::detect`]).
    pub detectors: Arc<crate::detect::Detectors>,
    /// Places for requests in flight (`server.max_in_flight`).
    pub in_flight: Arc<tokio::sync::Semaphore>,
    /// Failed authentications per client address.
    pub failed_auths: Arc<crate::auth::FailedAuths>,
    /// Stopped keys, users, teams and models, and the lock-down ([`crate::kill`]).
    pub kills: Arc<crate::kill::KillSwitch>,
    /// Bounds the guard work running on the blocking pool at once.
    pub heavy: Arc<tokio::sync::Semaphore>,
    /// The JSON Schemas answers must match (`[output.schema]`), compiled.
    pub schemas: crate::structured::Schemas,
    /// Who may read `/metrics` (`[metrics] token_env`).
    pub scrape: Arc<crate::scrape::ScrapeGate>,
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
    #[error(transparent)]
    Guard(#[from] crate::guards::BuildError),
    #[error("kill switch: {0}")]
    Kill(String),
    #[error("audit: {0}")]
    Audit(String),
    #[error(transparent)]
    Scrape(#[from] crate::scrape::ScrapeTokenError),
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
                url: crate::http::redact_url(&config.store.url),
                message: crate::http::redact_in(&e.to_string(), &config.store.url),
            })?;
        let audit = Arc::new(
            crate::audit_log::start(&config, &store)
                .await
                .map_err(StartError::Audit)?,
        );
        let schemas = crate::structured::Schemas::load(&config.output.schema, &config.source)?;
        let pipeline = crate::guards::build(&config, &upstream)?;
        let text_pipeline = Arc::new(crate::guards::build_text(&config, &upstream)?);
        tokio::task::spawn_blocking(crate::guards::warm_up)
            .await
            .ok();
        let metrics = Arc::new(crate::metrics::Metrics::default());
        let scrape = Arc::new(crate::scrape::ScrapeGate::from_config(&config.metrics)?);
        metrics.deliver_to(crate::notify::Notifier::spawn(
            &config.alerts,
            Some(store.clone()),
            metrics.alert_deliveries.clone(),
        ));
        let detectors = Arc::new(crate::detect::Detectors::new(&config.alerts));
        crate::spool_watch::spawn(
            Arc::downgrade(&audit),
            Arc::downgrade(&metrics),
            &config.alerts.audit_spool,
        );
        let limiter = portcullis_limits::limiter_from_url(
            &config.limits.url,
            &config.limits.prefix,
            config.limits.on_error,
        )
        .map_err(|e| {
            StartError::Limits(crate::http::redact_in(&e.to_string(), &config.limits.url))
        })?;
        let p = &config.pricing;
        let pricing = portcullis_limits::Pricing::builtin().with_overrides(
            &p.models,
            p.default,
            p.unknown_model,
        );
        let news = crate::kill::news::News::from_limits(&config.limits.url, &config.limits.prefix)
            .map_err(|e| {
                StartError::Kill(crate::http::redact_in(&e.to_string(), &config.limits.url))
            })?;
        let kills = Arc::new(crate::kill::KillSwitch::new(store.clone(), news));
        kills.refresh().await.map_err(|e| StartError::Store {
            url: crate::http::redact_url(&config.store.url),
            message: crate::http::redact_in(&e.to_string(), &config.store.url),
        })?;
        let books = Books::new(
            limiter,
            pricing,
            config.limits.clone(),
            store.clone(),
            metrics.clone(),
        )
        .with_kills(kills.clone());
        let flags = Arc::new(crate::anomaly::FlagWatch::new(&config.alerts));
        let in_flight = Arc::new(tokio::sync::Semaphore::new(
            config.server.max_in_flight.max(1),
        ));
        let failed_auths = Arc::new(crate::auth::FailedAuths::new(
            config.server.failed_auth_per_minute,
        ));
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Ok(App {
            flags,
            detectors,
            in_flight,
            failed_auths,
            kills,
            heavy: Arc::new(tokio::sync::Semaphore::new(cores)),
            schemas,
            scrape,
            config,
            pipeline: Arc::new(pipeline),
            text_pipeline,
            upstream,
            store,
            audit,
            books,
            metrics,
        })
    }

    /// The gateway under `config` (re-read from its file): new guards, limits, prices and
    /// alerts; the same store, audit writer, limiter state, upstream client, requests in
    /// flight and kill switch. Settings that only a restart can change must be unchanged
    /// ([`crate::reload::restart_needed`] checks them first).
    pub fn reconfigured(&self, config: Config) -> Result<App, StartError> {
        let schemas = crate::structured::Schemas::load(&config.output.schema, &config.source)?;
        let pipeline = crate::guards::build(&config, &self.upstream)?;
        let text_pipeline = crate::guards::build_text(&config, &self.upstream)?;
        let p = &config.pricing;
        let pricing = portcullis_limits::Pricing::builtin().with_overrides(
            &p.models,
            p.default,
            p.unknown_model,
        );
        let books = self.books.reconfigured(pricing, config.limits.clone());
        let flags = if format!("{:?}", config.alerts) == format!("{:?}", self.config.alerts) {
            self.flags.clone()
        } else {
            Arc::new(crate::anomaly::FlagWatch::new(&config.alerts))
        };
        let detectors = if format!("{:?}", config.alerts) == format!("{:?}", self.config.alerts) {
            self.detectors.clone()
        } else {
            Arc::new(crate::detect::Detectors::new(&config.alerts))
        };
        let failed_auths =
            if config.server.failed_auth_per_minute == self.config.server.failed_auth_per_minute {
                self.failed_auths.clone()
            } else {
                Arc::new(crate::auth::FailedAuths::new(
                    config.server.failed_auth_per_minute,
                ))
            };
        Ok(App {
            config,
            pipeline: Arc::new(pipeline),
            text_pipeline: Arc::new(text_pipeline),
            upstream: self.upstream.clone(),
            store: self.store.clone(),
            audit: self.audit.clone(),
            books,
            metrics: self.metrics.clone(),
            flags,
            detectors,
            in_flight: self.in_flight.clone(),
            failed_auths,
            kills: self.kills.clone(),
            heavy: self.heavy.clone(),
            schemas,
            scrape: self.scrape.clone(),
        })
    }

    /// Checks the gateway key on a request.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<crate::auth::Caller, ApiError> {
        crate::auth::authenticate(&self.store, &self.metrics, headers).await
    }

    /// Each dependency and whether it answers.
    pub async fn readiness(&self) -> Vec<(&'static str, bool, String)> {
        let store = match self.store.ping().await {
            Ok(()) => (true, "ok".to_owned()),
            Err(e) => (
                false,
                crate::http::redact_in(&e.to_string(), &self.config.store.url),
            ),
        };
        let limits = match self.books.ping().await {
            Ok(()) => (true, "ok".to_owned()),
            Err(e) => (false, crate::http::redact_in(&e, &self.config.limits.url)),
        };
        vec![("store", store.0, store.1), ("limits", limits.0, limits.1)]
    }
}
