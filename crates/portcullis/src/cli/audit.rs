//! `portcullis audit`: read, export, verify and prune the audit log.

use super::spend::parse_since;
use super::{BoxError, StoreArgs, load};
use clap::{Args, Subcommand, ValueEnum};
use portcullis_store::audit::export::{CSV_HEADER, csv_row};
use portcullis_store::{AuditFilter, AuditRecord};
use std::io::Write;

/// The `audit` subcommands; each takes the same `--config` and `--store` flags as `serve`.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Print audit records, newest last.
    Query {
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        filter: FilterArgs,
        #[arg(long, default_value_t = 100)]
        limit: i64,
        /// `table`, or `jsonl` (one JSON object per record).
        #[arg(long, value_enum, default_value_t = QueryFormat::Table)]
        format: QueryFormat,
        /// Same as `--format jsonl`.
        #[arg(long, hide = true)]
        json: bool,
    },
    /// Write every matching record, oldest first, as CSV or JSON lines on stdout.
    Export {
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        filter: FilterArgs,
        #[arg(long, value_enum, default_value_t = ExportFormat::Jsonl)]
        format: ExportFormat,
    },
    /// Prove every replica's chain (or from --since); non-zero exit naming the first broken,
    /// missing or reordered record.
    Verify {
        #[command(flatten)]
        store: StoreArgs,
        /// From the first record at or after this time: a date (2026-11-01) or a duration back
        /// from now (24h, 7d).
        #[arg(long)]
        since: Option<String>,
    },
    /// Delete records older than --before, leaving an anchor so that `verify` still passes.
    Prune {
        #[command(flatten)]
        store: StoreArgs,
        /// A date (2026-11-01) or a duration back from now (90d).
        #[arg(long)]
        before: String,
    },
}

/// Which records: every filter is optional and they combine with AND.
#[derive(Debug, Args)]
pub struct FilterArgs {
    /// At or after: a date (2026-11-01) or a duration back from now (24h, 7d).
    #[arg(long)]
    since: Option<String>,
    /// Before: a date or a duration back from now.
    #[arg(long)]
    until: Option<String>,
    #[arg(long)]
    user: Option<String>,
    /// The gateway key's id (`key_…`).
    #[arg(long)]
    key: Option<String>,
    #[arg(long)]
    team: Option<String>,
    /// The model asked for.
    #[arg(long)]
    model: Option<String>,
    /// The model that answered (as the upstream named it).
    #[arg(long)]
    model_served: Option<String>,
    /// `allowed`, `flagged`, `blocked` or `failed`.
    #[arg(long, visible_alias = "verdict")]
    outcome: Option<String>,
    /// HTTP status returned to the client.
    #[arg(long)]
    status: Option<i32>,
}

impl FilterArgs {
    fn filter(self) -> Result<AuditFilter, BoxError> {
        let now = portcullis_store::now_ms();
        let time = |t: Option<String>| t.map(|t| parse_since(&t, now)).transpose();
        Ok(AuditFilter {
            since_ms: time(self.since)?,
            until_ms: time(self.until)?,
            key_id: self.key,
            user: self.user,
            team: self.team,
            model: self.model,
            model_served: self.model_served,
            outcome: self.outcome,
            status: self.status,
            ..AuditFilter::default()
        })
    }
}

/// How `audit query` prints records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum QueryFormat {
    Table,
    Jsonl,
}

/// How `audit export` writes records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    Csv,
    Jsonl,
}

/// Records read per query while exporting.
const EXPORT_PAGE: i64 = 5_000;

/// Runs an `audit` subcommand.
pub async fn run(a: AuditCommand) -> Result<(), BoxError> {
    match a {
        AuditCommand::Query {
            store,
            filter,
            limit,
            format,
            json,
        } => {
            let config = load(store.config.as_ref(), store.store)?;
            let store = super::open_store(&config).await?;
            let records = store
                .audit_query(&AuditFilter {
                    limit: Some(limit),
                    ..filter.filter()?
                })
                .await?;
            let mut out = std::io::stdout().lock();
            for r in records {
                if json || format == QueryFormat::Jsonl {
                    writeln!(out, "{}", serde_json::to_string(&r)?)?;
                } else {
                    writeln!(out, "{}", table_row(&r))?;
                }
            }
            Ok(())
        }
        AuditCommand::Export {
            store,
            filter,
            format,
        } => {
            let config = load(store.config.as_ref(), store.store)?;
            let store = super::open_store(&config).await?;
            let mut f = AuditFilter {
                limit: Some(EXPORT_PAGE),
                after_seq_id: Some(String::new()),
                ..filter.filter()?
            };
            let mut out = std::io::stdout().lock();
            if format == ExportFormat::Csv {
                writeln!(out, "{CSV_HEADER}")?;
            }
            loop {
                let page = store.audit_query(&f).await?;
                for r in &page {
                    match format {
                        ExportFormat::Csv => writeln!(out, "{}", csv_row(r))?,
                        ExportFormat::Jsonl => writeln!(out, "{}", serde_json::to_string(r)?)?,
                    }
                }
                match page.last() {
                    Some(last) if page.len() as i64 == EXPORT_PAGE => {
                        f.after_seq_id = Some(last.seq_id.clone());
                    }
                    _ => break,
                }
            }
            out.flush()?;
            Ok(())
        }
        AuditCommand::Verify { store, since } => {
            let config = load(store.config.as_ref(), store.store)?;
            let key = config.audit.chain_key()?;
            if !key.is_set() {
                return Err(format!(
                    "no key: ${} is not set, so the audit log's integrity cannot be proven \
                     (set it to the secret the gateway writes with)",
                    config.audit.hmac_key_env
                )
                .into());
            }
            let since_ms = since
                .map(|s| parse_since(&s, portcullis_store::now_ms()))
                .transpose()?;
            let store = super::open_store(&config).await?;
            let report = store.audit_verify(&key, since_ms).await?;
            for c in &report.chains {
                let range = c
                    .range
                    .map_or("no records".to_owned(), |(a, b)| format!("seq {a}..{b}"));
                match &c.error {
                    None => println!("replica {}: ok, {} records ({range})", c.replica, c.records),
                    Some(e) => println!(
                        "replica {}: FAILED after {} good records: {e}",
                        c.replica, c.records
                    ),
                }
            }
            if report.legacy > 0 {
                println!(
                    "{} records from before per-replica chains cannot be proven (not counted)",
                    report.legacy
                );
            }
            match report.chains.iter().find_map(|c| c.error.as_ref()) {
                Some(e) => Err(format!("audit log verification failed: {e}").into()),
                None => {
                    println!("verified: {} chains", report.chains.len());
                    Ok(())
                }
            }
        }
        AuditCommand::Prune { store, before } => {
            let config = load(store.config.as_ref(), store.store)?;
            let key = config.audit.chain_key()?;
            if !key.is_set() {
                // An anchor without the key's MAC would make every later verify fail.
                return Err(format!(
                    "no key: ${} is not set; prune writes an anchor MACed with the audit \
                     secret, so run it with the secret the gateway writes with",
                    config.audit.hmac_key_env
                )
                .into());
            }
            let before_ms = parse_since(&before, portcullis_store::now_ms())?;
            let store = super::open_store(&config).await?;
            let r = store.audit_prune(&key, before_ms).await?;
            println!("deleted {} records", r.deleted);
            for (replica, seq) in r.anchors {
                println!("replica {replica}: anchored at seq {seq}");
            }
            Ok(())
        }
    }
}

fn table_row(r: &AuditRecord) -> String {
    format!(
        "{} {} {:<8} {:<4} {:<12} {:<12} {:<16} {:<24} {} ms",
        r.time,
        r.request_id,
        r.outcome,
        r.status,
        r.user.as_deref().unwrap_or("-"),
        r.team.as_deref().unwrap_or("-"),
        r.model.as_deref().unwrap_or("-"),
        r.model_served.as_deref().unwrap_or("-"),
        r.latency_ms
    )
}
