//! Red-team runs (`portcullis redteam`): when each ran, against which policy, what it measured
//! and whether it met its thresholds — kept so the compliance report can show that the policy
//! in force was tested, and how it fared, release after release.

use crate::{Store, StoreError};
use sqlx::Row;

/// One run of the red-team harness.
#[derive(Debug, Clone, PartialEq)]
pub struct RedteamRun {
    /// Unique; the caller makes it (e.g. `rt_<ms>_<random>`).
    pub id: String,
    /// When it ran (ms since the epoch).
    pub time_ms: i64,
    /// The policy tested: the config file's path (or "defaults"), or the gateway's URL.
    pub config_source: String,
    /// The suites run, as named on the command line.
    pub suites: String,
    /// Attacks tried, blocked, flagged and passed.
    pub attacks: i64,
    pub blocked: i64,
    pub flagged: i64,
    pub passed: i64,
    /// Benign requests tried, and how many were blocked.
    pub benign: i64,
    pub false_positives: i64,
    /// Cases that could not be judged.
    pub errors: i64,
    pub block_rate: Option<f64>,
    pub false_positive_rate: Option<f64>,
    /// Per category: `{"<name>": {"attempts", "blocked", "flagged", "passed", …}}`.
    pub categories: serde_json::Value,
    pub min_block_rate: Option<f64>,
    pub max_false_positive_rate: Option<f64>,
    /// Whether every threshold was met.
    pub pass: bool,
}

impl Store {
    /// Records a run.
    pub async fn record_redteam_run(&self, r: &RedteamRun) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO redteam_runs (id, time_ms, config_source, suites, attacks, blocked, \
             flagged, passed, benign, false_positives, errors, block_rate, false_positive_rate, \
             categories, min_block_rate, max_false_positive_rate, pass) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
        )
        .bind(&r.id)
        .bind(r.time_ms)
        .bind(&r.config_source)
        .bind(&r.suites)
        .bind(r.attacks)
        .bind(r.blocked)
        .bind(r.flagged)
        .bind(r.passed)
        .bind(r.benign)
        .bind(r.false_positives)
        .bind(r.errors)
        .bind(r.block_rate)
        .bind(r.false_positive_rate)
        .bind(r.categories.to_string())
        .bind(r.min_block_rate)
        .bind(r.max_false_positive_rate)
        .bind(i64::from(r.pass))
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// The latest `limit` runs, newest first.
    pub async fn redteam_runs(&self, limit: i64) -> Result<Vec<RedteamRun>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, time_ms, config_source, suites, attacks, blocked, flagged, passed, \
             benign, false_positives, errors, block_rate, false_positive_rate, categories, \
             min_block_rate, max_false_positive_rate, pass \
             FROM redteam_runs ORDER BY time_ms DESC, id DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.into_iter()
            .map(|r| {
                let categories: String = r.try_get("categories")?;
                Ok(RedteamRun {
                    id: r.try_get("id")?,
                    time_ms: r.try_get("time_ms")?,
                    config_source: r.try_get("config_source")?,
                    suites: r.try_get("suites")?,
                    attacks: r.try_get("attacks")?,
                    blocked: r.try_get("blocked")?,
                    flagged: r.try_get("flagged")?,
                    passed: r.try_get("passed")?,
                    benign: r.try_get("benign")?,
                    false_positives: r.try_get("false_positives")?,
                    errors: r.try_get("errors")?,
                    block_rate: r.try_get("block_rate")?,
                    false_positive_rate: r.try_get("false_positive_rate")?,
                    categories: serde_json::from_str(&categories)
                        .map_err(|e| StoreError::Data(format!("redteam_runs.categories: {e}")))?,
                    min_block_rate: r.try_get("min_block_rate")?,
                    max_false_positive_rate: r.try_get("max_false_positive_rate")?,
                    pass: r.try_get::<i64, _>("pass")? != 0,
                })
            })
            .collect()
    }
}
