//! `portcullis keys`: create, list, update and revoke gateway keys (`pk-…`), stored only as
//! hashes.

use super::{BoxError, StoreArgs, load};
use clap::{Args, Subcommand};

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
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
pub struct LimitArgs {
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
    /// A route (`x-portcullis-route`) the key may use; repeat for several.
    #[arg(long = "route")]
    routes: Vec<String>,
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
            routes: (!self.routes.is_empty()).then(|| self.routes.clone()),
        }
    }
}

/// Runs a `keys` subcommand.
pub async fn run(k: KeysCommand) -> Result<(), BoxError> {
    let store_args = match &k {
        KeysCommand::Create { store, .. }
        | KeysCommand::Update { store, .. }
        | KeysCommand::List { store, .. }
        | KeysCommand::Revoke { store, .. } => store,
    };
    let config = load(store_args.config.as_ref(), store_args.store.clone())?;
    let store = super::open_store(&config).await?;
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
                    expires_ms: None,
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
