//! `portcullis redteam`: the release gate. Runs the attack and benign suites through a policy
//! (in process against a config, or over HTTP against a running gateway), prints the per-
//! category table, records the run in the store for the compliance report, and exits non-zero
//! when a threshold is missed so a CI pipeline can refuse the release.
//!
//! `portcullis redteam corpus` regenerates the committed built-in corpus from its seeds;
//! `portcullis redteam mutate` shows what the mutators make of a prompt.

use super::BoxError;
use crate::redteam::report::{Report, Thresholds};
use crate::redteam::target::{Http, Target, run_all};
use crate::redteam::{Case, corpus, generate, mutate};
use clap::{Args, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct RedteamArgs {
    #[command(subcommand)]
    action: Option<RedteamAction>,
    /// The policy to test in process (default: the built-in defaults).
    #[arg(long, conflicts_with = "target")]
    config: Option<PathBuf>,
    /// Test a running gateway over HTTP instead (its base URL, e.g. http://127.0.0.1:8787).
    #[arg(long)]
    target: Option<String>,
    /// The gateway key (`pk-…`) for --target.
    #[arg(long, env = "PORTCULLIS_KEY", hide_env_values = true)]
    key: Option<String>,
    /// The model named in requests to --target.
    #[arg(long, default_value = "gpt-4o-mini")]
    model: String,
    /// A suite to run: builtin (default), attacks, benign, an attack category, or a file
    /// (.txt, .jsonl, garak .json, promptfoo .yaml/.json). Repeatable.
    #[arg(long = "suite")]
    suites: Vec<String>,
    /// Also try each attack disguised by these mutators (`all` or a list: base64,leetspeak,…).
    #[arg(long)]
    mutate: Option<String>,
    /// Fail unless at least this share of attacks is blocked (0–1).
    #[arg(long)]
    min_block_rate: Option<f64>,
    /// Fail if more than this share of benign requests is blocked (0–1).
    #[arg(long)]
    max_false_positive_rate: Option<f64>,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Cases judged at once (default: the number of cores in process, 8 over HTTP).
    #[arg(long)]
    concurrency: Option<usize>,
    /// Examples shown per category of what got through (and of false positives).
    #[arg(long, default_value_t = 3)]
    examples: usize,
    /// With --target: read the model's answers to attacks that got through (canary and
    /// refusal detection). Meaningful only with a real model upstream.
    #[arg(long, requires = "target")]
    judge: bool,
    /// The store to record the run in (default: the config's store).
    #[arg(long)]
    store: Option<String>,
    /// Do not record the run.
    #[arg(long)]
    no_record: bool,
}

#[derive(Debug, Subcommand)]
enum RedteamAction {
    /// Regenerate the built-in corpus (attacks.jsonl, benign.jsonl) from its seeds.
    Corpus {
        /// The corpus folder; seeds are read from its `seeds/`.
        #[arg(long, default_value = "crates/portcullis/redteam")]
        dir: PathBuf,
    },
    /// Print the variants the mutators make of a prompt (argument, or `-`/nothing for stdin).
    Mutate {
        /// `all` or a list of mutators.
        #[arg(long, default_value = "all")]
        with: String,
        text: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Table,
    Json,
    Md,
    Html,
}

/// Runs the command; an unmet threshold is an error, after the report is printed.
pub async fn run(a: RedteamArgs) -> Result<(), BoxError> {
    match a.action {
        Some(RedteamAction::Corpus { dir }) => return write_corpus(&dir),
        Some(RedteamAction::Mutate { with, text }) => return show_mutations(&with, text),
        None => {}
    }
    for (flag, v) in [
        ("--min-block-rate", a.min_block_rate),
        ("--max-false-positive-rate", a.max_false_positive_rate),
    ] {
        if v.is_some_and(|v| !(0.0..=1.0).contains(&v)) {
            return Err(format!("{flag} must be between 0 and 1").into());
        }
    }
    let mutators = match &a.mutate {
        Some(m) => mutate::parse_list(m)?,
        None => Vec::new(),
    };
    let cases = corpus::with_mutations(corpus::load(&a.suites)?, &mutators);
    let config = super::load(a.config.as_ref(), a.store.clone())?;
    let (target, source, concurrency) = match &a.target {
        Some(url) => {
            let key = a
                .key
                .as_deref()
                .ok_or("--target needs a gateway key: --key pk-… or PORTCULLIS_KEY")?;
            let http = Http::new(url, key, &a.model, a.judge)?;
            http.check().await?;
            (Target::Http(http), url.clone(), a.concurrency.unwrap_or(8))
        }
        None => {
            let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
            let p = super::pipeline_from(&config)?;
            (
                Target::InProcess(p),
                config.source.clone(),
                a.concurrency.unwrap_or(cores),
            )
        }
    };
    let started = Instant::now();
    let cases = Arc::new(cases);
    let bar = progress(cases.len());
    let outcomes = run_all(Arc::new(target), cases.clone(), concurrency, |_, _| {
        bar.inc(1)
    })
    .await;
    bar.finish_and_clear();
    let thresholds = Thresholds {
        min_block_rate: a.min_block_rate,
        max_false_positive_rate: a.max_false_positive_rate,
    };
    let mut report = Report::new(&cases, &outcomes, a.examples, thresholds);
    report.seconds = started.elapsed().as_secs_f64();
    if !a.no_record {
        record(&config, &report, &source, &a.suites).await?;
    }
    match a.format {
        Format::Table => print!("{}", report.table()),
        Format::Md => print!("{}", report.markdown()),
        Format::Html => print!("{}", report.html()),
        Format::Json => {
            let mut j = report.json();
            j["target"] = source.into();
            println!("{j}");
        }
    }
    if report.passed() {
        Ok(())
    } else {
        Err(format!("red team: {}", report.failures.join("; ")).into())
    }
}

/// A progress bar on stderr (drawn only when stderr is a terminal).
fn progress(n: usize) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(n as u64);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{spinner} red team [{bar:40}] {pos}/{len} ({per_sec}, {eta} left)",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// Records the run in the config's store, for the compliance report.
async fn record(
    config: &crate::config::Config,
    report: &Report,
    source: &str,
    suites: &[String],
) -> Result<(), BoxError> {
    let store = super::open_store(config).await?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let mut b = [0u8; 4];
    getrandom::fill(&mut b).map_err(|e| format!("the OS random source failed: {e}"))?;
    let j = report.json();
    let run = portcullis_store::RedteamRun {
        id: format!("rt_{now}_{}", hex::encode(b)),
        time_ms: now,
        config_source: source.to_owned(),
        suites: if suites.is_empty() {
            "builtin".into()
        } else {
            suites.join(",")
        },
        attacks: report.attacks.attempts as i64,
        blocked: report.attacks.blocked as i64,
        flagged: report.attacks.flagged as i64,
        passed: report.attacks.passed as i64,
        benign: report.benign.attempts as i64,
        false_positives: report.benign.blocked as i64,
        errors: (report.attacks.errors + report.benign.errors) as i64,
        block_rate: report.block_rate(),
        false_positive_rate: report.false_positive_rate(),
        categories: j["categories"].clone(),
        min_block_rate: report.thresholds.min_block_rate,
        max_false_positive_rate: report.thresholds.max_false_positive_rate,
        pass: report.passed(),
    };
    store
        .record_redteam_run(&run)
        .await
        .map_err(|e| format!("cannot record the run (use --no-record to skip): {e}"))?;
    store.close().await;
    Ok(())
}

fn write_corpus(dir: &std::path::Path) -> Result<(), BoxError> {
    let read = |name: &str| {
        let p = dir.join("seeds").join(name);
        std::fs::read_to_string(&p).map_err(|e| format!("cannot read {}: {e}", p.display()))
    };
    let (attacks, goals, benign) = (
        read("attacks.txt")?,
        read("goals.txt")?,
        read("benign.txt")?,
    );
    let seeds = generate::Seeds {
        attacks: &attacks,
        goals: &goals,
        benign: &benign,
    };
    for (name, cases) in [
        ("attacks.jsonl", generate::attacks(seeds)?),
        ("benign.jsonl", generate::benign(seeds)?),
    ] {
        let p = dir.join(name);
        std::fs::write(&p, generate::to_jsonl(&cases))
            .map_err(|e| format!("cannot write {}: {e}", p.display()))?;
        eprintln!("{}: {} cases", p.display(), cases.len());
    }
    Ok(())
}

fn show_mutations(with: &str, text: Option<String>) -> Result<(), BoxError> {
    let text = match text.as_deref() {
        None | Some("-") => {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)?;
            s.trim_end().to_owned()
        }
        Some(t) => t.to_owned(),
    };
    for m in mutate::parse_list(with)? {
        let case = Case {
            id: "prompt".into(),
            label: crate::redteam::Label::Attack,
            category: "prompt".into(),
            source: crate::redteam::Origin::User,
            mutator: None,
            canary: None,
            text: text.clone(),
        };
        println!("{}", serde_json::to_string(&case.mutated(m))?);
    }
    Ok(())
}
