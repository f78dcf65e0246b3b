//! The command line: `serve`, `mock-upstream`, `scan`, `keys`, `eval`, `train`, `spend`.

mod lab;

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
        text: Option<String>,
    },
    /// Validate a config file and build its pipeline, without serving.
    Check {
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Manage gateway keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Read the audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
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
        /// `pii`, `injection` or `moderation`.
        detector: String,
        #[arg(long, num_args = 1.., required = true)]
        data: Vec<PathBuf>,
    },
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
struct StoreArgs {
    #[arg(long)]
    config: Option<PathBuf>,
    #[arg(long)]
    store: Option<String>,
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Create a key; the key itself is printed alone on the last line.
    Create {
        #[arg(long)]
        user: String,
        #[arg(long)]
        team: Option<String>,
        /// May name the end user in the request's `user` field.
        #[arg(long)]
        service: bool,
        #[command(flatten)]
        limits: LimitArgs,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Change the limits and budgets of a key (unset flags are left as they are).
    Update {
        id: String,
        #[command(flatten)]
        limits: LimitArgs,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List keys (never the secrets).
    List {
        #[command(flatten)]
        store: StoreArgs,
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key by id.
    Revoke {
        id: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// Limits and budgets that attach to a key.
#[derive(Debug, Args, Default)]
struct LimitArgs {
    /// Requests per minute.
    #[arg(long)]
    rpm: Option<u64>,
    /// Tokens per minute.
    #[arg(long)]
    tpm: Option<u64>,
    /// Tokens per hour.
    #[arg(long)]
    tph: Option<u64>,
    /// Tokens per day.
    #[arg(long)]
    tpd: Option<u64>,
    /// Requests in flight at once.
    #[arg(long)]
    max_parallel: Option<u64>,
    /// Daily budget in USD.
    #[arg(long)]
    budget_daily: Option<f64>,
    /// Monthly budget in USD.
    #[arg(long)]
    budget_monthly: Option<f64>,
}

impl LimitArgs {
    fn policy(&self) -> crate::config::Policy {
        crate::config::Policy {
            rpm: self.rpm,
            tpm: self.tpm,
            tph: self.tph,
            tpd: self.tpd,
            max_parallel: self.max_parallel,
            budget_daily_usd: self.budget_daily,
            budget_monthly_usd: self.budget_monthly,
        }
    }
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Print audit records, newest last.
    Query {
        #[command(flatten)]
        store: StoreArgs,
        #[arg(long)]
        user: Option<String>,
        #[arg(long)]
        outcome: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: i64,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

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
            text,
        } => scan(config, output, text).await,
        Command::Check { config } => {
            let c = load(config.as_ref(), None)?;
            let upstream = crate::upstream::Upstream::new(
                &c.upstream.base_url,
                None,
                std::time::Duration::from_secs(1),
                std::time::Duration::from_secs(1),
            )?;
            let p = crate::guards::build(&c, &upstream)?;
            let names = |stages: &[portcullis_core::Stage]| {
                stages
                    .iter()
                    .map(|s| format!("{}({:?})", s.guard.name(), s.mode).to_lowercase())
                    .collect::<Vec<_>>()
                    .join(" -> ")
            };
            println!("{}: ok", c.source);
            println!("input:  {}", names(p.input_stages()));
            println!("output: {}", names(p.output_stages()));
            Ok(())
        }
        Command::Keys(k) => keys(k).await,
        Command::Audit(a) => audit(a).await,
        Command::Spend {
            store,
            by,
            since,
            json,
        } => spend(store, &by, &since, json).await,
        Command::Eval { detector, data } => lab::eval(&detector, &data),
        Command::Train {
            detector,
            data,
            out,
        } => lab::train(&detector, &data, out),
    }
}

fn load(path: Option<&PathBuf>, store: Option<String>) -> Result<Config, BoxError> {
    let mut c = Config::load(path.map(|p| p.as_path()))?;
    if let Some(s) = store {
        c.store.url = s;
    }
    Ok(c)
}

async fn serve(a: ServeArgs) -> Result<(), BoxError> {
    let mut config = load(a.config.as_ref(), a.store)?;
    if let Some(l) = a.listen {
        config.server.listen = l;
    }
    if let Some(u) = a.upstream {
        config.upstream.base_url = u;
    }
    if let Some(l) = a.limits {
        config.limits.url = l;
    }
    if a.mock_upstream {
        config.upstream.mock = true;
    }
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
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, upstream = %upstream_url, "portcullis listening");
    eprintln!("portcullis listening on http://{addr}/v1 (upstream {upstream_url})");
    let router = crate::server::router(app.clone());
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown())
        .await?;
    app.audit.close().await;
    Ok(())
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

async fn scan(config: Option<PathBuf>, output: bool, text: Option<String>) -> Result<(), BoxError> {
    let config = load(config.as_ref(), None)?;
    let text = match text.as_deref() {
        None | Some("-") => {
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s)?;
            s
        }
        Some(t) => t.to_owned(),
    };
    let upstream = crate::upstream::Upstream::new(
        &config.upstream.base_url,
        None,
        std::time::Duration::from_secs(config.upstream.timeout_s),
        std::time::Duration::from_secs(config.upstream.connect_timeout_s),
    )?;
    let pipeline = crate::guards::build(&config, &upstream)?;
    let mut ctx = crate::scan::cli_context();
    let req = crate::scan::ScanRequest {
        messages: None,
        text: Some(text),
        direction: Some(if output { "output" } else { "input" }.into()),
        model: None,
    };
    let report = crate::scan::run(&pipeline, req, &mut ctx)
        .await
        .map_err(|e| e.message)?;
    println!("{report}");
    Ok(())
}

async fn keys(k: KeysCommand) -> Result<(), BoxError> {
    let store_args = match &k {
        KeysCommand::Create { store, .. }
        | KeysCommand::Update { store, .. }
        | KeysCommand::List { store, .. }
        | KeysCommand::Revoke { store, .. } => store,
    };
    let config = load(store_args.config.as_ref(), store_args.store.clone())?;
    let store = portcullis_store::open(&config.store.url).await?;
    match k {
        KeysCommand::Create {
            user,
            team,
            service,
            limits,
            ..
        } => {
            let created = store
                .create_key(portcullis_store::NewKey {
                    user: user.clone(),
                    team: team.clone(),
                    service,
                    limits: serde_json::to_value(limits.policy())?,
                })
                .await?;
            eprintln!(
                "Created key {} for user '{user}'{}. It is shown once; store it now.",
                created.id,
                team.map(|t| format!(" (team '{t}')")).unwrap_or_default()
            );
            println!("{}", created.secret);
        }
        KeysCommand::List { json, .. } => {
            let keys = store.list_keys().await?;
            if json {
                println!("{}", serde_json::to_string(&keys)?);
            } else {
                println!(
                    "{:<24} {:<16} {:<12} {:<8} {:<8}",
                    "ID", "USER", "TEAM", "SERVICE", "REVOKED"
                );
                for k in keys {
                    println!(
                        "{:<24} {:<16} {:<12} {:<8} {:<8}",
                        k.id,
                        k.user,
                        k.team.as_deref().unwrap_or("-"),
                        k.service,
                        k.revoked
                    );
                }
            }
        }
        KeysCommand::Update { id, limits, .. } => {
            let current = store.get_key(&id).await?;
            let old: crate::config::Policy =
                serde_json::from_value(current.limits).unwrap_or_default();
            let new = limits.policy().or(&old);
            store
                .update_key_limits(&id, &serde_json::to_value(&new)?)
                .await?;
            eprintln!("Updated key {id}: {}", serde_json::to_string(&new)?);
        }
        KeysCommand::Revoke { id, .. } => {
            store.revoke_key(&id).await?;
            eprintln!("Revoked key {id}.");
        }
    }
    Ok(())
}

async fn audit(a: AuditCommand) -> Result<(), BoxError> {
    match a {
        AuditCommand::Query {
            store,
            user,
            outcome,
            limit,
            json,
        } => {
            let config = load(store.config.as_ref(), store.store)?;
            let store = portcullis_store::open(&config.store.url).await?;
            let records = store
                .audit_query(&portcullis_store::AuditFilter {
                    user,
                    outcome,
                    limit: Some(limit),
                    ..Default::default()
                })
                .await?;
            for r in records {
                if json {
                    println!("{}", serde_json::to_string(&r)?);
                } else {
                    println!(
                        "{} {} {:<8} {:<4} {:<12} {:<16} {} ms",
                        r.time,
                        r.request_id,
                        r.outcome,
                        r.status,
                        r.user.as_deref().unwrap_or("-"),
                        r.model.as_deref().unwrap_or("-"),
                        r.latency_ms
                    );
                }
            }
            Ok(())
        }
    }
}

/// Milliseconds since the epoch for `since`: `YYYY-MM-DD` (UTC) or `<n>h` / `<n>d` back from now.
fn parse_since(since: &str, now_ms: i64) -> Result<i64, BoxError> {
    let s = since.trim();
    if let Some(h) = s.strip_suffix('h') {
        return Ok(now_ms - h.parse::<i64>()? * 3_600_000);
    }
    if let Some(d) = s.strip_suffix('d') {
        return Ok(now_ms - d.parse::<i64>()? * 86_400_000);
    }
    let parts: Vec<&str> = s.split('-').collect();
    if let [y, m, d] = parts[..] {
        let (y, m, d): (i64, i64, i64) = (y.parse()?, m.parse()?, d.parse()?);
        // Days from civil (Howard Hinnant).
        let y = if m <= 2 { y - 1 } else { y };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let mp = (m + 9) % 12;
        let doy = (153 * mp + 2) / 5 + d - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        return Ok((era * 146_097 + doe - 719_468) * 86_400_000);
    }
    Err(
        format!("--since '{since}': use a date like 2026-11-01 or a duration like 24h or 7d")
            .into(),
    )
}

async fn spend(store: StoreArgs, by: &str, since: &str, json: bool) -> Result<(), BoxError> {
    use portcullis_store::GroupBy;
    let group = match by {
        "user" => GroupBy::User,
        "team" => GroupBy::Team,
        "key" => GroupBy::Key,
        "model" => GroupBy::Model,
        other => return Err(format!("--by '{other}': use user, team, key or model").into()),
    };
    let since_ms = parse_since(since, crate::audit::chrono_now_ms())?;
    let config = load(store.config.as_ref(), store.store)?;
    let store = portcullis_store::open(&config.store.url).await?;
    let rows = store.spend_report(group, since_ms).await?;
    if json {
        println!("{}", serde_json::to_string(&rows)?);
        return Ok(());
    }
    println!(
        "{:<28} {:>9} {:>12} {:>12} {:>14}",
        by.to_uppercase(),
        "REQUESTS",
        "PROMPT",
        "COMPLETION",
        "COST (USD)"
    );
    let mut total = 0;
    for r in &rows {
        total += r.cost_micros;
        println!(
            "{:<28} {:>9} {:>12} {:>12} {:>14.6}",
            r.group.as_deref().unwrap_or("-"),
            r.requests,
            r.prompt_tokens,
            r.completion_tokens,
            r.cost_micros as f64 / 1e6
        );
    }
    println!(
        "{:<28} {:>9} {:>12} {:>12} {:>14.6}",
        "TOTAL",
        "",
        "",
        "",
        total as f64 / 1e6
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_accepts_dates_and_durations() {
        assert_eq!(parse_since("2026-11-01", 0).unwrap(), 1_793_491_200_000);
        assert_eq!(parse_since("1970-01-01", 0).unwrap(), 0);
        assert_eq!(
            parse_since("24h", 100_000_000).unwrap(),
            100_000_000 - 86_400_000
        );
        assert_eq!(
            parse_since("7d", 1_000_000_000).unwrap(),
            1_000_000_000 - 7 * 86_400_000
        );
        assert!(parse_since("yesterday", 0).is_err());
    }
}
