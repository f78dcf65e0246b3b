//! Alerts the gateway raised, kept so that `portcullis alerts list` can show what happened
//! after the webhook message scrolled away (and when no webhook was configured at all).

use crate::{Store, StoreError};
use serde::{Deserialize, Serialize};
use sqlx::Row;

/// One raised alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredAlert {
    /// Milliseconds since the Unix epoch.
    pub time_ms: i64,
    /// What was detected: `token_spike`, `user_flag_burst`, `upstream_latency`, …
    pub kind: String,
    /// Whom or what it is about (a user, a guard, `upstream`).
    pub subject: String,
    /// The sentence a person reads.
    pub message: String,
    /// The detector's figures (observed value, baseline, threshold), as JSON.
    pub details: serde_json::Value,
}

/// Which alerts to list.
#[derive(Debug, Clone, Default)]
pub struct AlertFilter {
    pub since_ms: Option<i64>,
    pub kind: Option<String>,
    pub limit: Option<i64>,
}

/// The alerts of one kind over a period, for the compliance report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertSummary {
    pub kind: String,
    pub count: i64,
    /// The first and last alert of the kind in the period (ms since the epoch).
    pub first_ms: i64,
    pub last_ms: i64,
    /// How many subjects (users, guards, …) the alerts were about.
    pub subjects: i64,
    /// The last alert's message, as a sample of what was said.
    pub sample: String,
}

impl Store {
    /// Keeps one alert.
    pub async fn record_alert(&self, a: &StoredAlert) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO alerts (time_ms, kind, subject, message, details) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(a.time_ms)
        .bind(&a.kind)
        .bind(&a.subject)
        .bind(&a.message)
        .bind(a.details.to_string())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Alerts matching `f`, newest first.
    pub async fn alerts(&self, f: &AlertFilter) -> Result<Vec<StoredAlert>, StoreError> {
        let rows = sqlx::query(
            "SELECT time_ms, kind, subject, message, details FROM alerts \
             WHERE time_ms >= $1 AND ($2 = '' OR kind = $2) ORDER BY time_ms DESC LIMIT $3",
        )
        .bind(f.since_ms.unwrap_or(0))
        .bind(f.kind.clone().unwrap_or_default())
        .bind(f.limit.unwrap_or(100))
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                let details: String = row.try_get("details")?;
                Ok(StoredAlert {
                    time_ms: row.try_get("time_ms")?,
                    kind: row.try_get("kind")?,
                    subject: row.try_get("subject")?,
                    message: row.try_get("message")?,
                    details: serde_json::from_str(&details)
                        .map_err(|e| StoreError::Data(format!("alert details: {e}")))?,
                })
            })
            .collect()
    }

    /// Alerts since `since_ms`, counted per kind: most frequent first.
    pub async fn alert_summary(&self, since_ms: i64) -> Result<Vec<AlertSummary>, StoreError> {
        let rows = sqlx::query(
            "SELECT kind, CAST(COUNT(*) AS BIGINT) AS n, MIN(time_ms) AS first_ms, \
             MAX(time_ms) AS last_ms, CAST(COUNT(DISTINCT subject) AS BIGINT) AS subjects \
             FROM alerts WHERE time_ms >= $1 GROUP BY kind ORDER BY n DESC, kind",
        )
        .bind(since_ms)
        .fetch_all(self.pool())
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let kind: String = row.try_get("kind")?;
            let last = self
                .alerts(&AlertFilter {
                    since_ms: Some(since_ms),
                    kind: Some(kind.clone()),
                    limit: Some(1),
                })
                .await?;
            out.push(AlertSummary {
                count: row.try_get("n")?,
                first_ms: row.try_get("first_ms")?,
                last_ms: row.try_get("last_ms")?,
                subjects: row.try_get("subjects")?,
                sample: last.first().map(|a| a.message.clone()).unwrap_or_default(),
                kind,
            });
        }
        Ok(out)
    }
}
