//! Shadow-mode review: reviewers' labels on guards' would-have-blocked verdicts, and the
//! audit verdicts they are counted against — the facts a guard's promotion is judged on.

use crate::{Store, StoreError, now_ms};
use serde::{Deserialize, Serialize};
use sqlx::Row;

/// A reviewer's judgement of one would-have-blocked verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Label {
    /// The guard was right: enforcing would have blocked something that should be blocked.
    Right,
    /// A false positive: enforcing would have refused a legitimate request.
    Wrong,
}

impl Label {
    /// The label as stored and typed.
    pub fn as_str(self) -> &'static str {
        match self {
            Label::Right => "right",
            Label::Wrong => "wrong",
        }
    }

    /// The label named `s` (`right` or `wrong`).
    pub fn parse(s: &str) -> Option<Label> {
        [Label::Right, Label::Wrong]
            .into_iter()
            .find(|l| l.as_str() == s)
    }
}

/// One stored label: which record, which guard's verdict, what the reviewer said.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReviewLabel {
    pub seq_id: String,
    pub guard: String,
    pub label: Label,
    pub time_ms: i64,
}

/// An audit record's id, time and guard verdicts (the JSON array the gateway wrote).
#[derive(Debug, Clone, PartialEq)]
pub struct JudgedRecord {
    pub seq_id: String,
    pub time_ms: i64,
    pub verdicts: serde_json::Value,
}

impl Store {
    /// Records (or replaces) the label on `guard`'s verdict in audit record `seq_id`.
    pub async fn label_verdict(
        &self,
        seq_id: &str,
        guard: &str,
        label: Label,
    ) -> Result<ReviewLabel, StoreError> {
        let l = ReviewLabel {
            seq_id: seq_id.to_owned(),
            guard: guard.to_owned(),
            label,
            time_ms: now_ms(),
        };
        sqlx::query(
            "INSERT INTO review_labels (seq_id, guard, label, time_ms) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (seq_id, guard) DO UPDATE SET label = excluded.label, time_ms = excluded.time_ms",
        )
        .bind(l.seq_id.clone())
        .bind(l.guard.clone())
        .bind(label.as_str())
        .bind(l.time_ms)
        .execute(self.pool())
        .await?;
        Ok(l)
    }

    /// Every label on a record written at or after `since_ms`.
    pub async fn review_labels(&self, since_ms: i64) -> Result<Vec<ReviewLabel>, StoreError> {
        let rows = sqlx::query(
            "SELECT l.seq_id, l.guard, l.label, l.time_ms FROM review_labels l \
             JOIN audit a ON a.seq_id = l.seq_id WHERE a.time_ms >= $1 ORDER BY l.seq_id",
        )
        .bind(since_ms)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                let label: String = row.try_get("label")?;
                Ok(ReviewLabel {
                    seq_id: row.try_get("seq_id")?,
                    guard: row.try_get("guard")?,
                    label: Label::parse(&label)
                        .ok_or_else(|| StoreError::Data(format!("review label '{label}'")))?,
                    time_ms: row.try_get("time_ms")?,
                })
            })
            .collect()
    }

    /// The guard verdicts of every audit record written at or after `since_ms`, oldest first;
    /// `would_block_only` keeps the records where some guard would have blocked.
    pub async fn judged_records(
        &self,
        since_ms: i64,
        would_block_only: bool,
    ) -> Result<Vec<JudgedRecord>, StoreError> {
        let filter = if would_block_only {
            " AND verdicts LIKE '%\"would_block\"%'"
        } else {
            ""
        };
        let sql = format!(
            "SELECT seq_id, time_ms, verdicts FROM audit WHERE time_ms >= $1{filter} ORDER BY seq_id"
        );
        let rows = sqlx::query(&sql)
            .bind(since_ms)
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(judged).collect()
    }

    /// One audit record's verdicts, if the record exists.
    pub async fn judged_record(&self, seq_id: &str) -> Result<Option<JudgedRecord>, StoreError> {
        let row = sqlx::query("SELECT seq_id, time_ms, verdicts FROM audit WHERE seq_id = $1")
            .bind(seq_id)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(judged).transpose()
    }
}

fn judged(row: &sqlx::any::AnyRow) -> Result<JudgedRecord, StoreError> {
    let verdicts: String = row.try_get("verdicts")?;
    Ok(JudgedRecord {
        seq_id: row.try_get("seq_id")?,
        time_ms: row.try_get("time_ms")?,
        verdicts: serde_json::from_str(&verdicts)
            .map_err(|e| StoreError::Data(format!("audit verdicts: {e}")))?,
    })
}
