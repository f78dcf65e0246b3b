//! `portcullis audit`: read the audit log.

use super::{BoxError, StoreArgs, load};
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
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

/// Runs an `audit` subcommand.
pub async fn run(a: AuditCommand) -> Result<(), BoxError> {
    match a {
        AuditCommand::Query {
            store,
            user,
            outcome,
            limit,
            json,
        } => {
            let config = load(store.config.as_ref(), store.store)?;
            let store = super::open_store(&config).await?;
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
