//! `portcullis review next|label|stats`, `promote` and `demote`: shadow mode measured by its
//! reviewers, and a guard's move between monitor and enforce gated on what they found.

use super::{BoxError, load};
use crate::config::Config;
use crate::review::promote::{self, PromoteError};
use crate::review::{queue, stats};
use clap::{Args, Subcommand};
use portcullis_core::Mode;
use portcullis_store::{Label, Store};
use std::path::PathBuf;

/// The config and store a review reads: the same flags as `serve`.
#[derive(Debug, Args)]
pub struct ReviewTarget {
    #[arg(long)]
    config: Option<PathBuf>,
    #[arg(long)]
    store: Option<String>,
    /// Days of audit records to look at (default: `[review] days`).
    #[arg(long)]
    days: Option<u32>,
}

impl ReviewTarget {
    async fn open(&self) -> Result<(Config, Store, i64), BoxError> {
        let mut config = load(self.config.as_ref(), self.store.clone())?;
        if let Some(d) = self.days {
            config.review.days = d.max(1);
        }
        let store = super::open_store(&config).await?;
        let since = config.review.since_ms(portcullis_store::now_ms());
        Ok((config, store, since))
    }
}

/// `portcullis review …`.
#[derive(Debug, Subcommand)]
pub enum ReviewCommand {
    /// Print the next unlabelled would-have-blocked verdict (a random sample of the period).
    Next {
        /// Only this guard's verdicts.
        #[arg(long)]
        guard: Option<String>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        target: ReviewTarget,
    },
    /// Label a would-have-blocked verdict: `right` (it should be blocked) or `wrong`.
    Label {
        /// The audit record id `review next` printed.
        id: String,
        /// `right` or `wrong`.
        label: String,
        /// The guard, when several would have blocked that request.
        #[arg(long)]
        guard: Option<String>,
        #[command(flatten)]
        target: ReviewTarget,
    },
    /// Per-guard shadow counters: would-block rate, traffic share, labelled precision.
    Stats {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        target: ReviewTarget,
    },
}

/// `portcullis promote GUARD` / `demote GUARD`.
#[derive(Debug, Args)]
pub struct ModeArgs {
    /// The guard whose section to change (`injection`, `pii`, …).
    guard: String,
    /// Promote even below `[review] min_precision` / `min_labels`.
    #[arg(long)]
    force: bool,
    /// A running gateway to reload at once (`http://127.0.0.1:8787`), through its admin API
    /// and `[admin] token_env`; without it, reload with SIGHUP.
    #[arg(long)]
    reload: Option<String>,
    #[command(flatten)]
    target: ReviewTarget,
}

/// Runs `review`.
pub async fn run(c: ReviewCommand) -> Result<(), BoxError> {
    match c {
        ReviewCommand::Next {
            guard,
            json,
            target,
        } => {
            let (_, store, since) = target.open().await?;
            let records = store.judged_records(since, true).await?;
            let labels = store.review_labels(since).await?;
            let queue = queue::pending(&records, &labels, guard.as_deref());
            let Some(next) = queue.first() else {
                eprintln!("Nothing to review: every would-have-blocked verdict is labelled.");
                return Ok(());
            };
            if json {
                println!("{}", serde_json::to_string(next)?);
            } else {
                println!(
                    "id: {}\nguard: {}\ntime: {}\nkinds: {}\nscore: {:.3}\nwaiting: {}",
                    next.id,
                    next.guard,
                    crate::auth::utc(next.time_ms),
                    next.kinds.join(", "),
                    next.score,
                    queue.len()
                );
                println!(
                    "label it: portcullis review label {} right|wrong --guard {}",
                    next.id, next.guard
                );
            }
            Ok(())
        }
        ReviewCommand::Label {
            id,
            label,
            guard,
            target,
        } => {
            let label = Label::parse(&label)
                .ok_or_else(|| format!("label '{label}': use right or wrong"))?;
            let (_, store, _) = target.open().await?;
            let record = store
                .judged_record(&id)
                .await?
                .ok_or_else(|| format!("no audit record with id '{id}'"))?;
            let guard = queue::resolve_guard(&record, guard.as_deref())?;
            store.label_verdict(&id, &guard, label).await?;
            println!("{id} {guard}: {}", label.as_str());
            Ok(())
        }
        ReviewCommand::Stats { json, target } => {
            let (config, store, since) = target.open().await?;
            let records = store.judged_records(since, false).await?;
            let labels = store.review_labels(since).await?;
            let tally = stats::tally(&records, &labels);
            if json {
                for s in tally.values() {
                    println!("{}", stats::to_json(s));
                }
                return Ok(());
            }
            println!(
                "last {} days, {} requests; promotion needs {} labels and precision >= {}",
                config.review.days,
                records.len(),
                config.review.min_labels,
                config.review.min_precision
            );
            println!(
                "{:<12} {:>9} {:>11} {:>13} {:>13} {:>8} {:>10} {:>15}",
                "guard",
                "monitored",
                "would_block",
                "would_block_%",
                "traffic_%",
                "labelled",
                "precision",
                "95% interval"
            );
            for s in tally.values() {
                println!(
                    "{:<12} {:>9} {:>11} {:>13} {:>13} {:>8} {:>10} {:>15}",
                    s.guard,
                    s.monitored,
                    s.would_block,
                    percent(s.would_block_rate()),
                    percent(s.traffic_share()),
                    s.labelled(),
                    s.precision().map_or("-".into(), |p| format!("{p:.3}")),
                    s.precision_interval()
                        .map_or("-".into(), |(lo, hi)| format!("{lo:.3}-{hi:.3}")),
                );
            }
            Ok(())
        }
    }
}

fn percent(x: Option<f64>) -> String {
    x.map_or("-".into(), |x| format!("{:.2}", x * 100.0))
}

/// Runs `promote` (`to = Enforce`, gated on the review floor) or `demote` (`to = Monitor`).
pub async fn set_mode(a: ModeArgs, to: Mode) -> Result<(), BoxError> {
    let path = a
        .target
        .config
        .clone()
        .ok_or("promote and demote rewrite the config file: pass --config FILE")?;
    if !promote::guard_names().contains(&a.guard.as_str()) {
        return Err(PromoteError::UnknownGuard(a.guard).into());
    }
    let (config, store, since) = a.target.open().await?;
    // A reload that cannot happen is said before the file changes, not after.
    let reload_with = match &a.reload {
        Some(base) => Some((base.clone(), admin_token(&config)?)),
        None => None,
    };
    if promote::section_mode(&config, &a.guard) == Some(to) {
        println!("{} is already {}; nothing changed", a.guard, to.as_str());
        return Ok(());
    }
    let mut how = if to == Mode::Enforce {
        "promote"
    } else {
        "demote"
    };
    if to == Mode::Enforce {
        let records = store.judged_records(since, false).await?;
        let labels = store.review_labels(since).await?;
        let tally = stats::tally(&records, &labels);
        match promote::check_floor(&a.guard, tally.get(&a.guard), &config.review) {
            Ok(()) => {}
            Err(e) if a.force => {
                eprintln!("warning: --force: {e}");
                how = "promote --force (below the review floor)";
            }
            Err(e) => return Err(e.into()),
        }
    }
    let was = promote::rewrite(&path, &a.guard, to)?;
    println!(
        "{}: {} -> {} in {}",
        a.guard,
        was.as_str(),
        to.as_str(),
        path.display()
    );
    record(&store, &config, &path, &a.guard, how).await;
    match reload_with {
        Some((base, token)) => reload(&base, &token).await,
        None => {
            println!("reload the gateway: kill -HUP <pid>, or POST /admin/reload");
            Ok(())
        }
    }
}

/// Records the change in the store's policy history; the file is already changed, so a store
/// that cannot take it is a warning, not a failure.
async fn record(store: &Store, before: &Config, path: &std::path::Path, guard: &str, how: &str) {
    let after = match Config::load(Some(path)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("warning: not recorded in the policy history: {e}");
            return;
        }
    };
    let who = crate::policy_history::operator();
    let change = crate::policy_history::Change {
        how,
        who: &who,
        now_ms: portcullis_store::now_ms(),
    };
    if let Err(e) =
        crate::policy_history::record_changes(store, &[guard], Some(before), &after, change).await
    {
        eprintln!("warning: not recorded in the policy history: {e}");
    }
}

/// The admin token `--reload` authenticates with.
fn admin_token(config: &Config) -> Result<String, BoxError> {
    Ok(crate::admin::token(&config.admin)?
        .ok_or("--reload needs the admin API: set [admin] token_env and that variable")?)
}

/// Asks the gateway at `base` to reload through its admin API.
async fn reload(base: &str, token: &str) -> Result<(), BoxError> {
    let url = format!("{}/admin/reload", base.trim_end_matches('/'));
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder().build()?;
    let resp = client
        .post(&url)
        .bearer_auth(token)
        .send()
        .await
        .map_err(|e| format!("reload via {url}: {e}; the file is changed, reload with SIGHUP"))?;
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    if !status.is_success() {
        return Err(format!("reload via {url} refused ({status}): {body}").into());
    }
    println!("reloaded: {body}");
    Ok(())
}
