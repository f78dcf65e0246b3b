//! Policy history: each change of a guard's mode or rollout share — by a reload (SIGHUP, the
//! admin API), `portcullis promote`/`demote`, or a start with a changed file — kept with when,
//! from what, to what, and who or what made it, so that the compliance report can say since
//! when a guard enforces for whom ("limited release" from the settings *and* their history).

use crate::{Store, StoreError};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use std::collections::BTreeMap;

/// One change of one guard's policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyEvent {
    /// Milliseconds since the Unix epoch.
    pub time_ms: i64,
    /// The guard (`injection`, `moderation`, …).
    pub guard: String,
    /// Its state before, as the gateway writes it (`monitor`, `enforce 10% by user`, `off`).
    pub from: String,
    /// Its state after.
    pub to: String,
    /// How the change was made: `promote`, `demote`, `reload (SIGHUP)`, `reload (admin API)`,
    /// `start`.
    pub how: String,
    /// Who made it: the operator's login for a command, the replica for a reload.
    pub who: String,
}

impl Store {
    /// Keeps one policy change.
    pub async fn record_policy_event(&self, e: &PolicyEvent) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO policy_events (time_ms, guard, from_state, to_state, how, who) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(e.time_ms)
        .bind(&e.guard)
        .bind(&e.from)
        .bind(&e.to)
        .bind(&e.how)
        .bind(&e.who)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Changes since `since_ms`, oldest first (at most `limit`, the newest of them).
    pub async fn policy_events(
        &self,
        since_ms: i64,
        limit: i64,
    ) -> Result<Vec<PolicyEvent>, StoreError> {
        let rows = sqlx::query(
            "SELECT time_ms, guard, from_state, to_state, how, who FROM policy_events \
             WHERE time_ms >= $1 ORDER BY time_ms DESC, guard LIMIT $2",
        )
        .bind(since_ms)
        .bind(limit.max(0))
        .fetch_all(self.pool())
        .await?;
        let mut events = rows
            .iter()
            .map(|row| {
                Ok(PolicyEvent {
                    time_ms: row.try_get("time_ms")?,
                    guard: row.try_get("guard")?,
                    from: row.try_get("from_state")?,
                    to: row.try_get("to_state")?,
                    how: row.try_get("how")?,
                    who: row.try_get("who")?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        events.reverse();
        Ok(events)
    }

    /// Each guard's latest recorded change (what the history says it is now).
    pub async fn latest_policy_events(&self) -> Result<BTreeMap<String, PolicyEvent>, StoreError> {
        let rows = sqlx::query(
            "SELECT e.time_ms, e.guard, e.from_state, e.to_state, e.how, e.who FROM policy_events e \
             JOIN (SELECT guard, MAX(time_ms) AS t FROM policy_events GROUP BY guard) m \
             ON e.guard = m.guard AND e.time_ms = m.t ORDER BY e.time_ms",
        )
        .fetch_all(self.pool())
        .await?;
        let mut out = BTreeMap::new();
        for row in &rows {
            let e = PolicyEvent {
                time_ms: row.try_get("time_ms")?,
                guard: row.try_get("guard")?,
                from: row.try_get("from_state")?,
                to: row.try_get("to_state")?,
                how: row.try_get("how")?,
                who: row.try_get("who")?,
            };
            out.insert(e.guard.clone(), e);
        }
        Ok(out)
    }
}
