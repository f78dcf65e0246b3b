//! The kill switch's durable half: which keys, users, teams and models are stopped (and
//! whether the whole gateway is locked down), with the reason, so a kill survives restarts and
//! every replica reads the same list.

use crate::{Store, StoreError, now_ms};
use serde::{Deserialize, Serialize};
use sqlx::Row;

/// What a kill stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KillScope {
    /// Every request (lock-down); its target is `*`.
    All,
    Key,
    User,
    Team,
    Model,
}

impl KillScope {
    /// Every scope, in the order they are checked.
    pub const ALL: [KillScope; 5] = [
        KillScope::All,
        KillScope::Key,
        KillScope::User,
        KillScope::Team,
        KillScope::Model,
    ];

    /// The scope's name as stored and typed (`all`, `key`, `user`, `team`, `model`).
    pub fn as_str(self) -> &'static str {
        match self {
            KillScope::All => "all",
            KillScope::Key => "key",
            KillScope::User => "user",
            KillScope::Team => "team",
            KillScope::Model => "model",
        }
    }

    /// The scope named `s`, if any.
    pub fn parse(s: &str) -> Option<KillScope> {
        KillScope::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl std::fmt::Display for KillScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One stopped key, user, team or model, or the lock-down.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kill {
    pub scope: KillScope,
    /// The key id, user, team or model name; `*` for [`KillScope::All`].
    pub target: String,
    /// Why, as told to refused clients.
    pub reason: String,
    pub created_ms: i64,
}

impl Store {
    /// Stops `scope`/`target` (again, with a new reason, if already stopped).
    pub async fn kill(
        &self,
        scope: KillScope,
        target: &str,
        reason: &str,
    ) -> Result<Kill, StoreError> {
        let kill = Kill {
            scope,
            target: target.to_owned(),
            reason: reason.to_owned(),
            created_ms: now_ms(),
        };
        sqlx::query(
            "INSERT INTO kills (scope, target, reason, created_ms) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (scope, target) DO UPDATE SET reason = $3, created_ms = $4",
        )
        .bind(scope.as_str())
        .bind(&kill.target)
        .bind(&kill.reason)
        .bind(kill.created_ms)
        .execute(self.pool())
        .await?;
        Ok(kill)
    }

    /// Lifts a kill; whether there was one.
    pub async fn unkill(&self, scope: KillScope, target: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM kills WHERE scope = $1 AND target = $2")
            .bind(scope.as_str())
            .bind(target)
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Every kill in force, by scope then target.
    pub async fn kills(&self) -> Result<Vec<Kill>, StoreError> {
        let rows = sqlx::query(
            "SELECT scope, target, reason, created_ms FROM kills ORDER BY scope, target",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                let scope: String = row.try_get("scope")?;
                Ok(Kill {
                    scope: KillScope::parse(&scope)
                        .ok_or_else(|| StoreError::Data(format!("unknown kill scope '{scope}'")))?,
                    target: row.try_get("target")?,
                    reason: row.try_get("reason")?,
                    created_ms: row.try_get("created_ms")?,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_round_trip_by_name() {
        for s in KillScope::ALL {
            assert_eq!(KillScope::parse(s.as_str()), Some(s));
        }
        assert_eq!(KillScope::parse("everything"), None);
    }
}
