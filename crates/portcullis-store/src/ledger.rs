//! The spend ledger: what each request cost, in integer micro-dollars, so that budgets survive
//! restarts and every replica sees the same totals.

use crate::{Store, StoreError};
use serde::Serialize;
use sqlx::Row;

/// One request's spend.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SpendEntry {
    pub request_id: String,
    pub time_ms: i64,
    pub key_id: Option<String>,
    pub user: Option<String>,
    pub team: Option<String>,
    pub model: Option<String>,
    pub cost_micros: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    /// The tokens and cost are the gateway's estimate, not the upstream's `usage`.
    pub usage_estimated: bool,
}

/// Whose spend to total.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpendScope {
    Key(String),
    User(String),
    Team(String),
    Global,
}

/// How to group a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupBy {
    Key,
    User,
    Team,
    Model,
}

/// One line of a spend report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SpendRow {
    pub group: Option<String>,
    pub requests: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub cost_micros: i64,
    /// How many of `requests` were booked from estimated usage.
    pub estimated_requests: i64,
}

impl Store {
    /// Records a request's spend; recording the same request twice changes nothing.
    pub async fn record_spend(&self, e: &SpendEntry) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO spend (request_id, time_ms, key_id, user_name, team, model, cost_micros, \
             prompt_tokens, completion_tokens, usage_estimated) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (request_id) DO NOTHING",
        )
        .bind(&e.request_id)
        .bind(e.time_ms)
        .bind(e.key_id.clone())
        .bind(e.user.clone())
        .bind(e.team.clone())
        .bind(e.model.clone())
        .bind(e.cost_micros)
        .bind(e.prompt_tokens)
        .bind(e.completion_tokens)
        .bind(i64::from(e.usage_estimated))
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Total micro-dollars spent by `scope` since `since_ms`.
    pub async fn spend_total(&self, scope: &SpendScope, since_ms: i64) -> Result<i64, StoreError> {
        let (col, val) = match scope {
            SpendScope::Key(k) => ("key_id", Some(k)),
            SpendScope::User(u) => ("user_name", Some(u)),
            SpendScope::Team(t) => ("team", Some(t)),
            SpendScope::Global => ("", None),
        };
        // SUM over no rows is NULL; CAST keeps the type an integer on both backends.
        let row = match val {
            Some(v) => {
                sqlx::query(&format!(
                    "SELECT CAST(COALESCE(SUM(cost_micros), 0) AS BIGINT) AS total FROM spend WHERE {col} = $1 AND time_ms >= $2"
                ))
                .bind(v.clone())
                .bind(since_ms)
                .fetch_one(self.pool())
                .await?
            }
            None => {
                sqlx::query("SELECT CAST(COALESCE(SUM(cost_micros), 0) AS BIGINT) AS total FROM spend WHERE time_ms >= $1")
                    .bind(since_ms)
                    .fetch_one(self.pool())
                    .await?
            }
        };
        Ok(row.try_get("total")?)
    }

    /// Spend since `since_ms`, grouped, largest first.
    pub async fn spend_report(
        &self,
        by: GroupBy,
        since_ms: i64,
    ) -> Result<Vec<SpendRow>, StoreError> {
        let col = match by {
            GroupBy::Key => "key_id",
            GroupBy::User => "user_name",
            GroupBy::Team => "team",
            GroupBy::Model => "model",
        };
        let rows = sqlx::query(&format!(
            "SELECT {col} AS grp, CAST(COUNT(*) AS BIGINT) AS n, CAST(SUM(prompt_tokens) AS BIGINT) AS p, \
             CAST(SUM(completion_tokens) AS BIGINT) AS c, CAST(SUM(cost_micros) AS BIGINT) AS cost, \
             CAST(SUM(usage_estimated) AS BIGINT) AS est FROM spend WHERE time_ms >= $1 GROUP BY {col} ORDER BY cost DESC, grp"
        ))
        .bind(since_ms)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(SpendRow {
                    group: r.try_get("grp")?,
                    requests: r.try_get("n")?,
                    prompt_tokens: r.try_get("p")?,
                    completion_tokens: r.try_get("c")?,
                    cost_micros: r.try_get("cost")?,
                    estimated_requests: r.try_get("est")?,
                })
            })
            .collect()
    }
}
