//! The command line: `serve`, `mock-upstream`, `scan`, `keys`, `eval`, `train`, `spend`.

mod alerts;
mod audit;
mod keys;
mod kill;
mod lab;
mod redteam;
mod report;
mod review;
mod spend;

use crate::app::App;
use crate::config::Config;
use clap::{Args, Parser, Subcommand};
use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;

/// Portcullis: a defence-in-depth gateway for LLM APIs.
#[derive(Debug, Parser)]
#[command(name = "portcullis", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway.
    Serve(ServeArgs),
    /// Run the built-in deterministic model as a standalone OpenAI-compatible server.
    MockUpstream {
        #[arg(long, default_value = "127.0.0.1:8788")]
        listen: String,
    },
    /// Run the configured guards over a text (argument, or `-`/nothing for stdin).
    Scan {
        #[arg(long)]
        config: Option<PathBuf>,
        /// Judge the text as a model's answer instead of a request.
        #[arg(long)]
        output: bool,
        /// Also show, per guard, the score, the threshold and what pushed the score up.
        #[arg(long)]
        explain: bool,
        text: Option<String>,
    },
    /// Validate a config file and build its pipeline, without serving.
    Check {
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Manage gateway keys.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Read the audit log.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// The alerts the gateway raised.
    #[command(subcommand)]
    Alerts(alerts::AlertsCommand),
    /// Print the spend ledger.
    Spend {
        #[command(flatten)]
        store: StoreArgs,
        /// Group by `user`, `team`, `key` or `model`.
        #[arg(long, default_value = "user")]
        by: String,
        /// Since when: a date (2026-11-01), or a duration back from now (24h, 7d).
        #[arg(long, default_value = "30d")]
        since: String,
        #[arg(long)]
        json: bool,
    },
    /// Score a detector on labelled data; prints metrics as one JSON line, last.
    Eval {
        /// `pii`, `injection` or `moderation` (a detector on its own), or `traffic` (the whole
        /// configured input policy, as the gateway applies it to user messages), or
        /// `grounding` (answers against their documents, the RAG sets).
        detector: String,
        #[arg(long, num_args = 1.., required = true)]
        data: Vec<PathBuf>,
        /// The policy `traffic` measures (default: the built-in defaults).
        #[arg(long)]
        config: Option<PathBuf>,
        /// `traffic`: also write one JSON line per row (file, index, verdict, guards, kinds).
        #[arg(long)]
        rows: Option<PathBuf>,
        /// `grounding`: also write one JSON line per record (file, index, score, predicted).
        #[arg(long)]
        predictions: Option<PathBuf>,
    },
    /// Run attack and benign suites through a policy; fail under the release thresholds.
    Redteam(redteam::RedteamArgs),
    /// Stop a key, user, team or model (403), or lock the whole gateway down (`all`: 503).
    Kill(kill::KillArgs),
    /// Lift a kill.
    Unkill(kill::UnkillArgs),
    /// Label shadow-mode (would-have-blocked) verdicts and see each guard's counters.
    #[command(subcommand)]
    Review(review::ReviewCommand),
    /// Switch a guard from monitor to enforce in the config file, if its labels allow.
    Promote(review::ModeArgs),
    /// Switch a guard from enforce back to monitor in the config file.
    Demote(review::ModeArgs),
    /// The compliance report: active controls, the pre-production checklist, traffic, runbook.
    Report(report::ReportArgs),
    /// Train a detector's model from labelled data and write its weights.
    Train {
        /// `pii`, `injection` or `moderation`.
        detector: String,
        #[arg(long, num_args = 1.., required = true)]
        data: Vec<PathBuf>,
        /// Where to write the weights (default: the file the build embeds).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
struct ServeArgs {
    #[arg(long)]
    config: Option<PathBuf>,
    #[arg(long)]
    listen: Option<String>,
    #[arg(long)]
    upstream: Option<String>,
    #[arg(long)]
    store: Option<String>,
    #[arg(long)]
    limits: Option<String>,
    /// Serve the built-in deterministic model instead of calling a provider.
    #[arg(long)]
    mock_upstream: bool,
}

#[derive(Debug, Args)]
pub struct StoreArgs {
    #[arg(long)]
    config: Option<PathBuf>,
    #[arg(long)]
    store: Option<String>,
}

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> Result<(), BoxError> {
    match cli.command {
        Command::Serve(a) => serve(a).await,
        Command::MockUpstream { listen } => {
            let l = tokio::net::TcpListener::bind(&listen).await?;
            eprintln!("portcullis mock upstream on http://{}/v1", l.local_addr()?);
            crate::mock::serve(l).await?;
            Ok(())
        }
        Command::Scan {
            config,
            output,
            explain,
            text,
        } => scan(config, output, explain, text).await,
        Command::Check { config } => {
            let c = load(config.as_ref(), None)?;
            let p = pipeline_from(&c)?;
            let names = |stages: &[portcullis_core::Stage]| {
                stages
                    .iter()
                    .map(|s| {
                        let share = s.rollout.map(|r| format!(" {}% by {:?}", r.percent, r.by));
                        format!(
                            "{}({:?}{})",
                            s.guard.name(),
                            s.mode,
                            share.unwrap_or_default()
                        )
                        .to_lowercase()
                    })
                    .collect::<Vec<_>>()
                    .join(" -> ")
            };
            println!("{}: ok", c.source);
            println!("input:  {}", names(p.input_stages()));
            println!("output: {}", names(p.output_stages()));
            Ok(())
        }
        Command::Keys(k) => keys::run(k).await,
        Command::Audit(a) => audit::run(a).await,
        Command::Alerts(a) => alerts::run(a).await,
        Command::Spend {
            store,
            by,
            since,
            json,
        } => spend::run(store, &by, &since, json).await,
        Command::Eval {
            detector,
            data,
            config,
            rows,
            predictions,
        } => {
            if detector == "traffic" {
                let pipeline = pipeline_from(&load(config.as_ref(), None)?)?;
                let report = crate::traffic::evaluate(&pipeline, &data, rows.as_deref()).await?;
                println!("{report}");
                Ok(())
            } else if detector == "grounding" {
                lab::eval_grounding(&data, predictions.as_deref())
            } else {
                lab::eval(&detector, &data)
            }
        }
        Command::Train {
            detector,
            data,
            out,
        } => lab::train(&detector, &data, out),
        Command::Redteam(a) => redteam::run(a).await,
        Command::Kill(a) => kill::kill(a).await,
        Command::Unkill(a) => kill::unkill(a).await,
        Command::Review(c) => review::run(c).await,
        Command::Promote(a) => review::set_mode(a, portcullis_core::Mode::Enforce).await,
        Command::Demote(a) => review::set_mode(a, portcullis_core::Mode::Monitor).await,
        Command::Report(a) => report::run(a).await,
    }
}

pub fn load(path: Option<&PathBuf>, store: Option<String>) -> Result<Config, BoxError> {
    let mut c = Config::load(path.map(|p| p.as_path()))?;
    if let Some(s) = store {
        c.store.url = s;
    }
    Ok(c)
}

async fn serve(a: ServeArgs) -> Result<(), BoxError> {
    portcullis_core::context::init_random()
        .map_err(|e| format!("the OS random source failed ({e}); refusing to start"))?;
    let overrides = crate::reload::Overrides {
        store: a.store,
        listen: a.listen,
        upstream: a.upstream,
        limits: a.limits,
        mock_upstream: a.mock_upstream,
    };
    let mut config = load(a.config.as_ref(), None)?;
    overrides.apply(&mut config);
    let admin_token = crate::admin::token(&config.admin)?;
    let upstream_url = if config.upstream.mock {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/v1", l.local_addr()?);
        tokio::spawn(async move {
            if let Err(e) = crate::mock::serve(l).await {
                tracing::error!(error = %e, "mock upstream stopped");
            }
        });
        url
    } else {
        config.upstream.base_url.clone()
    };
    let listen = config.server.listen.clone();
    let app = Arc::new(App::build(config, &upstream_url).await?);
    let who = format!("replica {}", app.audit.replica());
    crate::policy_history::record_served(&app.store, None, &app.config, "start", &who).await;
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, upstream = %upstream_url, "portcullis listening");
    eprintln!("portcullis listening on http://{addr}/v1 (upstream {upstream_url})");
    let refresh = if app.kills.news().is_some() {
        app.config.admin.kill_refresh_s
    } else {
        1
    };
    crate::kill::news::spawn(app.kills.clone(), std::time::Duration::from_secs(refresh));
    let reloader = Arc::new(crate::reload::Reloader::new(
        app.clone(),
        a.config.clone(),
        overrides,
    ));
    spawn_reload_on_hangup(reloader.clone());
    let admin = crate::admin::Admin::new(admin_token, app.kills.clone(), reloader.clone());
    let router = crate::admin::router(Arc::new(admin)).fallback_service(reloader.service());
    let header_timeout = std::time::Duration::from_secs(app.config.server.header_timeout_s.max(1));
    let drain = std::time::Duration::from_secs(app.config.upstream.timeout_s.min(30));
    crate::server::serve(listener, router, shutdown(), header_timeout, drain).await?;
    // Requests still finishing in the background (a stream whose client left, an answer being
    // booked) hold their places until their record is written: wait for all of them.
    let all = u32::try_from(app.config.server.max_in_flight.max(1)).unwrap_or(u32::MAX);
    if tokio::time::timeout(drain, app.in_flight.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!("shutdown: requests still running after the drain period");
    }
    app.audit.close().await;
    Ok(())
}

/// Reloads the config on every SIGHUP; a refused file is logged and the old policy stays.
fn spawn_reload_on_hangup(reloader: Arc<crate::reload::Reloader>) {
    #[cfg(unix)]
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hup = match signal(SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGHUP; reload with POST /admin/reload");
                return;
            }
        };
        while hup.recv().await.is_some() {
            if let Err(e) = reloader.reload(crate::reload::Trigger::Hangup).await {
                tracing::error!(error = %e, "config reload refused; the old policy keeps serving");
            }
        }
    });
    #[cfg(not(unix))]
    let _ = reloader;
}

async fn shutdown() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// The store `config` names; errors never show its password.
pub async fn open_store(config: &Config) -> Result<portcullis_store::Store, BoxError> {
    let url = &config.store.url;
    portcullis_store::open(url).await.map_err(|e| {
        format!(
            "store {}: {}",
            crate::http::redact_url(url),
            crate::http::redact_in(&e.to_string(), url)
        )
        .into()
    })
}

/// The pipeline `config` describes, for commands that judge text without serving.
fn pipeline_from(config: &Config) -> Result<portcullis_core::Pipeline, BoxError> {
    let api_key = std::env::var(&config.upstream.api_key_env).ok();
    let upstream = crate::upstream::Upstream::new(
        &config.upstream.base_url,
        api_key.as_deref(),
        std::time::Duration::from_secs(config.upstream.timeout_s),
        std::time::Duration::from_secs(config.upstream.connect_timeout_s),
    )?;
    Ok(crate::guards::build(config, &upstream)?)
}

async fn scan(
    config: Option<PathBuf>,
    output: bool,
    explain: bool,
    text: Option<String>,
) -> Result<(), BoxError> {
    let config = load(config.as_ref(), None)?;
    let text = match text.as_deref() {
        None | Some("-") => {
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s)?;
            s
        }
        Some(t) => t.to_owned(),
    };
    let pipeline = pipeline_from(&config)?;
    let mut ctx = crate::scan::cli_context();
    let req = crate::scan::ScanRequest {
        messages: None,
        text: Some(text.clone()),
        direction: Some(if output { "output" } else { "input" }.into()),
        model: None,
    };
    let mut report = crate::scan::run(&pipeline, req, &mut ctx)
        .await
        .map_err(|e| e.message)?;
    if explain {
        let findings: Vec<portcullis_core::Finding> = ctx.findings().cloned().collect();
        report["explain"] = crate::explain::explain(&config, &text, &findings);
    }
    println!("{report}");
    Ok(())
}
