//! `portcullis`: the gateway and its command line, over the library crates (core, the
//! detectors, guards, limits, store). Nothing depends on this crate.
//!
//! # Layout
//! The request path reads top-down; each module uses only those below it.
//! - [`server`]: the router and the layers every route shares; health, readiness, metrics.
//! - [`routes`]: one handler module per route family (chat and its stream, the Responses API,
//!   embeddings and moderations, pass-through, scan).
//! - [`lifecycle`]: how a request ends — its one audit record and its metrics, however it ends.
//! - [`app`]: the running gateway, built once from config and shared by requests.
//! - The rooms a request passes through: [`auth`] (who is calling), [`guards`] (the pipeline
//!   built from config), [`books`] (admission, budgets, cost), [`upstream`] (the provider
//!   client, its SSE framing, its moderation endpoint), [`audit`] (the record of a request),
//!   [`audit_log`] (the `[audit]` section: chain key, replica, sinks, retention),
//!   [`audit_text`] (the redacted text a record keeps when policy says so).
//! - Below them all: [`config`] (the TOML file), [`http`] (shared HTTP shapes), [`metrics`]
//!   and [`anomaly`] (what operators watch), [`scrape`] (who may read `/metrics`),
//!   [`detect`] (token spikes, upstream latency, error rate), [`spool_watch`] (the audit
//!   backlog's gauges and its alert) and [`notify`] (alerts to the store and webhooks,
//!   deduplicated, retried in the background).
//! - [`structured`]: the JSON Schema an answer must match (policy or request), and the check.
//! - Beside the path: [`scan`] (guards without a model call), [`explain`] (why a text was
//!   judged as it was), [`traffic`] (the policy measured
//!   on labelled prompts), [`mock`] (the built-in model),
//!   [`cli`] (every command other than the request path).
//! - Incidents: [`kill`] (the kill switch and its news between replicas), [`reload`] (live
//!   reload of the config), [`admin`] (their HTTP API, behind an admin token).
//! - Releasing a policy: [`review`] (shadow-mode labels, per-guard counters, promotion),
//!   [`policy_history`] (each change of a guard's mode or rollout share, in the store),
//!   [`report`] (the compliance report: controls, checklist from facts, runbook).

pub mod admin;
pub mod anomaly;
pub mod app;
pub mod audit;
pub mod audit_log;
pub mod audit_text;
pub mod auth;
pub mod books;
pub mod cli;
pub mod config;
pub mod detect;
pub mod explain;
pub mod guards;
pub mod http;
pub mod kill;
pub mod lifecycle;
pub mod metrics;
pub mod mock;
pub mod notify;
pub mod policy_history;
pub mod redteam;
pub mod reload;
pub mod report;
pub mod review;
pub mod routes;
pub mod scan;
pub mod scrape;
pub mod server;
pub mod spool_watch;
pub mod structured;
pub mod traffic;
pub mod upstream;
