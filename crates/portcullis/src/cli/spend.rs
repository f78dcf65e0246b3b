//! `portcullis spend`: the spend ledger grouped by user, team, key or model.

use super::{BoxError, StoreArgs, load};

/// Milliseconds since the epoch for `since`: `YYYY-MM-DD` (UTC) or `<n>h` / `<n>d` back from now.
pub(super) fn parse_since(since: &str, now_ms: i64) -> Result<i64, BoxError> {
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

/// Prints the ledger since `since`, grouped `by`.
pub async fn run(store: StoreArgs, by: &str, since: &str, json: bool) -> Result<(), BoxError> {
    use portcullis_store::GroupBy;
    let group = match by {
        "user" => GroupBy::User,
        "team" => GroupBy::Team,
        "key" => GroupBy::Key,
        "model" => GroupBy::Model,
        other => return Err(format!("--by '{other}': use user, team, key or model").into()),
    };
    let since_ms = parse_since(since, portcullis_store::now_ms())?;
    let config = load(store.config.as_ref(), store.store)?;
    let store = super::open_store(&config).await?;
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
