//! `portcullis keys`: create, list, show, update, rotate and revoke gateway keys (`pk-…`),
//! stored only as hashes. A revocation or rotation is announced over Redis when the limits
//! live there, so every replica stops accepting the old secret within a second.

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
        /// The key stops working on this date (UTC midnight), e.g. 2027-01-01.
        #[arg(long, conflicts_with = "ttl")]
        expires: Option<String>,
        /// The key stops working this long from now: 90m, 24h, 30d.
        #[arg(long)]
        ttl: Option<String>,
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
        /// The limits URL; with `redis://…` every replica is told at once.
        #[arg(long = "limits")]
        limits_url: Option<String>,
    },
    /// Show one key (never its secret).
    Show {
        id: String,
        #[command(flatten)]
        store: StoreArgs,
        #[arg(long)]
        json: bool,
    },
    /// Give a key a new secret (printed alone on the last line); the old one keeps working
    /// for the grace period, then stops.
    Rotate {
        id: String,
        /// How long the old secret keeps working: 0, 90m, 24h, 7d.
        #[arg(long, default_value = "24h")]
        grace: String,
        #[command(flatten)]
        store: StoreArgs,
        /// The limits URL; with `redis://…` every replica is told at once.
        #[arg(long = "limits")]
        limits_url: Option<String>,
    },
}

/// `s` (`45s`, `90m`, `24h`, `30d`, or `0`) in milliseconds.
fn parse_duration_ms(s: &str) -> Result<i64, BoxError> {
    let s = s.trim();
    let bad = || format!("'{s}': use a duration like 0, 90m, 24h or 30d");
    if s == "0" {
        return Ok(0);
    }
    let (n, unit) = s.split_at(s.len().saturating_sub(1));
    let n: i64 = n.parse().map_err(|_| bad())?;
    let unit_ms = match unit {
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(bad().into()),
    };
    if n < 0 {
        return Err(bad().into());
    }
    n.checked_mul(unit_ms).ok_or_else(|| bad().into())
}

/// When a new key expires, from `--expires DATE` or `--ttl DURATION`.
fn expiry(expires: Option<&str>, ttl: Option<&str>, now_ms: i64) -> Result<Option<i64>, BoxError> {
    match (expires, ttl) {
        (Some(date), _) => {
            if !date.contains('-') {
                return Err(format!(
                    "--expires '{date}': use a date like 2027-01-01 (or --ttl 30d)"
                )
                .into());
            }
            let at = super::spend::parse_since(date, now_ms)?;
            if at <= now_ms {
                return Err(format!("--expires '{date}' is in the past").into());
            }
            Ok(Some(at))
        }
        (None, Some(ttl)) => {
            let ms = parse_duration_ms(ttl)?;
            if ms == 0 {
                return Err("--ttl must be longer than 0".into());
            }
            Ok(Some(now_ms.saturating_add(ms)))
        }
        (None, None) => Ok(None),
    }
}

/// Tells the replicas sharing the Redis in `config` (or `url`) that key `id` changed.
async fn announce(
    config: &crate::config::Config,
    url: Option<&String>,
    id: &str,
) -> Result<(), BoxError> {
    let url = url.unwrap_or(&config.limits.url);
    let news = crate::kill::news::News::from_limits(url, &config.limits.prefix)
        .map_err(|e| crate::http::redact_in(&e.to_string(), url))?;
    if let Some(news) = news {
        news.publish(&crate::kill::news::Event::Key(id.to_owned()))
            .await
            .map_err(|e| {
                format!(
                    "saved, but the replicas were not told at once ({}); they stop accepting the old secret within {} s",
                    crate::http::redact_in(&e.to_string(), url),
                    portcullis_store::keys::CACHE_TTL.as_secs()
                )
            })?;
    }
    Ok(())
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
        | KeysCommand::Revoke { store, .. }
        | KeysCommand::Show { store, .. }
        | KeysCommand::Rotate { store, .. } => store,
    };
    let config = load(store_args.config.as_ref(), store_args.store.clone())?;
    let store = super::open_store(&config).await?;
    match k {
        KeysCommand::Create {
            user,
            team,
            service,
            limits,
            expires,
            ttl,
            ..
        } => {
            let expires_ms = expiry(
                expires.as_deref(),
                ttl.as_deref(),
                portcullis_store::now_ms(),
            )?;
            let created = store
                .create_key(portcullis_store::NewKey {
                    user: user.clone(),
                    team: team.clone(),
                    service,
                    limits: serde_json::to_value(limits.policy())?,
                    expires_ms,
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
        KeysCommand::Revoke { id, limits_url, .. } => {
            store.revoke_key(&id).await?;
            eprintln!("Revoked key {id}.");
            announce(&config, limits_url.as_ref(), &id).await?;
        }
        KeysCommand::Show { id, json, .. } => {
            let k = store.get_key(&id).await?;
            if json {
                println!("{}", serde_json::to_string(&k)?);
            } else {
                let when = |ms: Option<i64>| ms.map_or("never".to_owned(), crate::auth::utc);
                println!("id:       {}", k.id);
                println!("prefix:   {}…", k.prefix);
                println!("user:     {}", k.user);
                println!("team:     {}", k.team.as_deref().unwrap_or("-"));
                println!("service:  {}", k.service);
                println!("created:  {}", crate::auth::utc(k.created_ms));
                println!("expires:  {}", when(k.expires_ms));
                if let Some(until) = k.previous_until_ms {
                    println!("previous secret valid until: {}", crate::auth::utc(until));
                }
                println!("revoked:  {}", k.revoked);
                println!("limits:   {}", k.limits);
            }
        }
        KeysCommand::Rotate {
            id,
            grace,
            limits_url,
            ..
        } => {
            let grace_ms = parse_duration_ms(&grace)?;
            let rotated = store.rotate_key(&id, grace_ms).await?;
            eprintln!(
                "Rotated key {id}; the old secret works until {}. The new one is shown once; store it now.",
                crate::auth::utc(portcullis_store::now_ms() + grace_ms)
            );
            announce(&config, limits_url.as_ref(), &id).await?;
            println!("{}", rotated.secret);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_expiry_dates_are_read_as_typed() {
        assert_eq!(parse_duration_ms("0").unwrap(), 0);
        assert_eq!(parse_duration_ms("90m").unwrap(), 5_400_000);
        assert_eq!(parse_duration_ms("30d").unwrap(), 2_592_000_000);
        assert!(parse_duration_ms("soon").is_err());
        assert!(parse_duration_ms("-1h").is_err());
        assert!(parse_duration_ms("").is_err());
        let now = 1_700_000_000_000;
        assert_eq!(
            expiry(Some("2027-01-01"), None, now).unwrap(),
            Some(1_798_761_600_000)
        );
        assert_eq!(
            expiry(None, Some("1d"), now).unwrap(),
            Some(now + 86_400_000)
        );
        assert_eq!(expiry(None, None, now).unwrap(), None);
        assert!(
            expiry(Some("2020-01-01"), None, now).is_err(),
            "in the past"
        );
        assert!(
            expiry(Some("30d"), None, now).is_err(),
            "a duration is --ttl"
        );
    }
}
