//! `portcullis alerts list`: the alerts the gateway raised, newest first, from the store.

use super::{BoxError, StoreArgs, load};
use clap::Subcommand;

/// `portcullis alerts …`
#[derive(Debug, Subcommand)]
pub enum AlertsCommand {
    /// The alerts raised (token spikes, flag bursts, upstream latency, error rate, …).
    List {
        #[command(flatten)]
        store: StoreArgs,
        /// Only this kind (`token_spike`, `user_flag_burst`, …).
        #[arg(long)]
        kind: Option<String>,
        /// Since a date (2026-11-01) or a duration back from now (24h, 7d).
        #[arg(long, default_value = "7d")]
        since: String,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: i64,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// Runs an `alerts` command.
pub async fn run(cmd: AlertsCommand) -> Result<(), BoxError> {
    let AlertsCommand::List {
        store,
        kind,
        since,
        limit,
        json,
    } = cmd;
    let since_ms = super::spend::parse_since(&since, portcullis_store::now_ms())?;
    let config = load(store.config.as_ref(), store.store)?;
    let store = super::open_store(&config).await?;
    let alerts = store
        .alerts(&portcullis_store::AlertFilter {
            since_ms: Some(since_ms),
            kind,
            limit: Some(limit),
        })
        .await?;
    for a in &alerts {
        if json {
            println!("{}", serde_json::to_string(a)?);
        } else {
            let when = chrono_like(a.time_ms);
            println!("{when}  {:<20} {:<20} {}", a.kind, a.subject, a.message);
        }
    }
    if !json && alerts.is_empty() {
        println!("no alerts since {since}");
    }
    Ok(())
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) for milliseconds since the epoch.
fn chrono_like(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil from days (Howard Hinnant).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn times_print_in_utc() {
        assert_eq!(super::chrono_like(0), "1970-01-01 00:00:00");
        assert_eq!(super::chrono_like(1_796_688_000_000), "2026-12-08 00:00:00");
        assert_eq!(super::chrono_like(951_825_600_000), "2000-02-29 12:00:00");
    }
}
