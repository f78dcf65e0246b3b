//! `portcullis report`: the compliance report from the live config and the audit store.

use super::{BoxError, load, pipeline_from};
use clap::{Args, ValueEnum};
use std::path::PathBuf;

/// How the report is written.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    Md,
    Html,
    Json,
}

/// `portcullis report [--format md|html|json] [--days N]`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    #[arg(long, value_enum, default_value = "md")]
    format: Format,
    /// The period traffic, blocks, spend and shadow precision cover.
    #[arg(long, default_value_t = 7)]
    days: u32,
    #[arg(long)]
    config: Option<PathBuf>,
    #[arg(long)]
    store: Option<String>,
    /// Write here instead of standard output.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// Runs `report`.
pub async fn run(a: ReportArgs) -> Result<(), BoxError> {
    if a.days == 0 {
        return Err("--days: must be at least 1".into());
    }
    let config = load(a.config.as_ref(), a.store.clone())?;
    let pipeline = pipeline_from(&config)?;
    let store = super::open_store(&config).await?;
    let report = crate::report::gather(
        &config,
        &pipeline,
        &store,
        a.days,
        portcullis_store::now_ms(),
    )
    .await?;
    let text = match a.format {
        Format::Md => crate::report::render::markdown(&report),
        Format::Html => crate::report::render::html(&report),
        Format::Json => serde_json::to_string_pretty(&report)? + "\n",
    };
    match a.out {
        Some(p) => {
            std::fs::write(&p, text).map_err(|e| format!("cannot write {}: {e}", p.display()))?
        }
        None => print!("{text}"),
    }
    Ok(())
}
