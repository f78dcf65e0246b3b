//! `portcullis kill` / `unkill`: stop a key, user, team or model, or lock the whole gateway
//! down, and lift it again. Written to the store (it survives restarts) and announced over
//! Redis when the limits live there, so every replica applies it within a second.

use super::{BoxError, load};
use crate::kill::{KillSwitch, news::News};
use clap::Args;
use std::path::PathBuf;

/// Where the kill list lives and whom to tell: the same flags as `serve`.
#[derive(Debug, Args)]
pub struct ControlArgs {
    #[arg(long)]
    config: Option<PathBuf>,
    #[arg(long)]
    store: Option<String>,
    /// The limits URL; with `redis://…` every replica sharing it is told at once.
    #[arg(long)]
    limits: Option<String>,
}

impl ControlArgs {
    /// The store and news channel these flags name.
    pub async fn open(&self) -> Result<(portcullis_store::Store, Option<News>), BoxError> {
        let mut config = load(self.config.as_ref(), self.store.clone())?;
        if let Some(l) = &self.limits {
            config.limits.url = l.clone();
        }
        let store = super::open_store(&config).await?;
        let news = News::from_limits(&config.limits.url, &config.limits.prefix)
            .map_err(|e| crate::http::redact_in(&e.to_string(), &config.limits.url))?;
        Ok((store, news))
    }
}

/// `portcullis kill SCOPE [ID] [--reason …]`, or `portcullis kill list`.
#[derive(Debug, Args)]
pub struct KillArgs {
    /// `key`, `user`, `team`, `model` (with an id), `all` (lock-down), or `list`.
    scope: String,
    /// The key id, user, team or model name.
    id: Option<String>,
    /// Why: told to every refused client, and listed.
    #[arg(long, default_value = "")]
    reason: String,
    #[command(flatten)]
    control: ControlArgs,
}

/// `portcullis unkill SCOPE [ID]`.
#[derive(Debug, Args)]
pub struct UnkillArgs {
    /// `key`, `user`, `team`, `model` (with an id) or `all`.
    scope: String,
    id: Option<String>,
    #[command(flatten)]
    control: ControlArgs,
}

/// Runs `kill`.
pub async fn kill(a: KillArgs) -> Result<(), BoxError> {
    let (store, news) = a.control.open().await?;
    if a.scope == "list" {
        let kills = store.kills().await?;
        if kills.is_empty() {
            eprintln!("Nothing is killed.");
        }
        for k in kills {
            println!(
                "{:<6} {:<24} {}  {}",
                k.scope,
                k.target,
                crate::auth::utc(k.created_ms),
                k.reason
            );
        }
        return Ok(());
    }
    let (scope, target) = crate::kill::parse_target(&a.scope, a.id.as_deref())?;
    let switch = KillSwitch::new(store, news);
    switch.kill(scope, &target, &a.reason).await?;
    if scope == portcullis_store::KillScope::All {
        eprintln!("Locked down: every request is refused with 503 until 'portcullis unkill all'.");
    } else {
        eprintln!("Killed {scope} '{target}': its requests are refused with 403.");
    }
    Ok(())
}

/// Runs `unkill`.
pub async fn unkill(a: UnkillArgs) -> Result<(), BoxError> {
    let (store, news) = a.control.open().await?;
    let (scope, target) = crate::kill::parse_target(&a.scope, a.id.as_deref())?;
    let switch = KillSwitch::new(store, news);
    if switch.unkill(scope, &target).await? {
        eprintln!("Lifted the kill on {scope} '{target}'.");
    } else {
        eprintln!("{scope} '{target}' was not killed; nothing changed.");
    }
    Ok(())
}
