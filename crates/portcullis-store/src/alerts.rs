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
}
