//! Live reload: SIGHUP or `POST /admin/reload` re-reads the config file and swaps in a gateway
//! built from it. A file that fails validation (or changes what only a restart can change) is
//! refused with the error and the old policy keeps serving. Requests already in flight hold
//! the gateway they started with, so they finish under their policy; new ones get the new one.
//!
//! What is swapped is the whole router over an [`App`]: each request picks the current router
//! once, at its start ([`Reloader::service`]).

use crate::app::{App, StartError};
use crate::config::{Config, ConfigError};
use arc_swap::ArcSwap;
use axum::Router;
use axum::extract::Request;
use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;

/// The `serve` flags that override the file; applied again on every reload.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub store: Option<String>,
    pub listen: Option<String>,
    pub upstream: Option<String>,
    pub limits: Option<String>,
    pub mock_upstream: bool,
}

impl Overrides {
    /// `config` with these flags applied.
    pub fn apply(&self, config: &mut Config) {
        if let Some(s) = &self.store {
            config.store.url = s.clone();
        }
        if let Some(l) = &self.listen {
            config.server.listen = l.clone();
        }
        if let Some(u) = &self.upstream {
            config.upstream.base_url = u.clone();
        }
        if let Some(l) = &self.limits {
            config.limits.url = l.clone();
        }
        if self.mock_upstream {
            config.upstream.mock = true;
        }
    }
}

/// Why a reload was refused; the old policy keeps serving.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Build(#[from] StartError),
    #[error("{}: changing {} needs a restart; nothing was reloaded", .origin, .keys.join(", "))]
    RestartNeeded {
        origin: String,
        keys: Vec<&'static str>,
    },
}

/// The settings a running gateway cannot change, which differ between `old` and `new`.
pub fn restart_needed(old: &Config, new: &Config) -> Vec<&'static str> {
    // Compared by their Debug form: these sections are plain data, and a field added later
    // is then covered without touching this list.
    let same =
        |a: &dyn std::fmt::Debug, b: &dyn std::fmt::Debug| format!("{a:?}") == format!("{b:?}");
    let mut keys = Vec::new();
    if old.server.listen != new.server.listen {
        keys.push("server.listen");
    }
    if old.server.max_in_flight != new.server.max_in_flight {
        keys.push("server.max_in_flight");
    }
    if !same(&old.store, &new.store) {
        keys.push("[store]");
    }
    if !same(&old.upstream, &new.upstream) {
        keys.push("[upstream]");
    }
    if old.limits.url != new.limits.url || old.limits.prefix != new.limits.prefix {
        keys.push("limits.url/limits.prefix");
    }
    if !same(&old.admin, &new.admin) {
        keys.push("[admin]");
    }
    // The audit writer (journal, chain key, sinks) carries over a reload as it started.
    if !same(&old.audit, &new.audit) {
        keys.push("[audit]");
    }
    if old.metrics != new.metrics {
        keys.push("[metrics]");
    }
    if old.alerts.webhook != new.alerts.webhook || old.alerts.cooldown_s != new.alerts.cooldown_s {
        keys.push("alerts.webhook/alerts.cooldown_s");
    }
    // The audit backlog's watcher runs from start, like the writer it watches.
    if old.alerts.audit_spool != new.alerts.audit_spool {
        keys.push("alerts.audit_spool");
    }
    keys
}

/// What asked for a reload, as the policy history records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// SIGHUP.
    Hangup,
    /// `POST /admin/reload`.
    AdminApi,
}

impl Trigger {
    /// `reload (SIGHUP)` or `reload (admin API)`.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Hangup => "reload (SIGHUP)",
            Trigger::AdminApi => "reload (admin API)",
        }
    }
}

/// Swaps the serving gateway for one built from the config file.
pub struct Reloader {
    path: Option<PathBuf>,
    overrides: Overrides,
    app: ArcSwap<App>,
    router: Arc<ArcSwap<Router>>,
    /// One reload at a time.
    busy: tokio::sync::Mutex<()>,
}

impl Reloader {
    /// A reloader serving `app`, re-reading `path` (the defaults when `None`) with `overrides`.
    pub fn new(app: Arc<App>, path: Option<PathBuf>, overrides: Overrides) -> Reloader {
        let router = Arc::new(ArcSwap::from_pointee(crate::server::router(app.clone())));
        Reloader {
            path,
            overrides,
            app: ArcSwap::new(app),
            router,
            busy: tokio::sync::Mutex::new(()),
        }
    }

    /// The gateway serving new requests now.
    pub fn current(&self) -> Arc<App> {
        self.app.load_full()
    }

    /// A service that hands each request to the router current when it arrives.
    pub fn service(
        &self,
    ) -> impl tower::Service<
        Request,
        Response = axum::response::Response,
        Error = Infallible,
        Future = impl Send + 'static,
    > + Clone
    + Send
    + Sync
    + 'static {
        let router = self.router.clone();
        tower::service_fn(move |req: Request| {
            let current = router.load_full();
            async move {
                use tower::ServiceExt;
                Router::clone(&current).oneshot(req).await
            }
        })
    }

    /// Re-reads the config and swaps it in; the source it came from, or why not. A change of
    /// a guard's mode or rollout share is recorded in the store's policy history.
    pub async fn reload(&self, trigger: Trigger) -> Result<String, ReloadError> {
        let _one = self.busy.lock().await;
        let mut config = Config::load(self.path.as_deref())?;
        self.overrides.apply(&mut config);
        let old = self.app.load_full();
        let keys = restart_needed(&old.config, &config);
        if !keys.is_empty() {
            return Err(ReloadError::RestartNeeded {
                origin: config.source,
                keys,
            });
        }
        let source = config.source.clone();
        let app = Arc::new(old.reconfigured(config)?);
        self.router
            .store(Arc::new(crate::server::router(app.clone())));
        self.app.store(app.clone());
        tracing::info!(source = %source, "config reloaded");
        let who = format!("replica {}", app.audit.replica());
        crate::policy_history::record_served(
            &app.store,
            Some(&old.config),
            &app.config,
            trigger.as_str(),
            &who,
        )
        .await;
        Ok(source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_settings_a_running_gateway_cannot_change_need_a_restart() {
        let old = Config::default();
        let mut new = Config::default();
        new.server.max_body_bytes = 1;
        new.injection.mode = portcullis_core::Mode::Monitor;
        assert!(restart_needed(&old, &new).is_empty());
        new.server.listen = "127.0.0.1:1".into();
        new.store.url = "sqlite://other.db".into();
        assert_eq!(restart_needed(&old, &new), ["server.listen", "[store]"]);
        new.alerts.audit_spool.window_s = 1;
        assert_eq!(
            restart_needed(&old, &new),
            ["server.listen", "[store]", "alerts.audit_spool"]
        );
    }

    #[test]
    fn flags_override_the_file_on_every_read() {
        let o = Overrides {
            store: Some("sqlite://x.db".into()),
            mock_upstream: true,
            ..Overrides::default()
        };
        let mut c = Config::default();
        o.apply(&mut c);
        assert_eq!(
            (c.store.url.as_str(), c.upstream.mock),
            ("sqlite://x.db", true)
        );
    }
}
