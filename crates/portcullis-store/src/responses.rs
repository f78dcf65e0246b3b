//! Who created each stored Responses-API response: its id, the gateway key that made it, and
//! the end user a service key named. The provider keeps responses under the one provider
//! key; without this record any gateway key holding an id could read, delete or continue a
//! conversation another key started. The gateway answers "not found" for any id whose row
//! is missing or names another key.

use crate::{Store, StoreError};
use sqlx::Row;

/// One response and whose it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseOwner {
    /// The provider's response id (`resp_…`).
    pub id: String,
    /// The gateway key that created it.
    pub key_id: String,
    /// The end user a service key named when it was created (`<key id>/<user>`).
    pub end_user: Option<String>,
    /// When the gateway first saw it (ms since the epoch).
    pub created_ms: i64,
}

impl Store {
    /// Records who created a response; the first record of an id wins (a repeated or
    /// conflicting record changes nothing, so an id can never change hands).
    pub async fn record_response(&self, r: &ResponseOwner) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO responses (id, key_id, end_user, created_ms) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(&r.id)
        .bind(&r.key_id)
        .bind(r.end_user.clone())
        .bind(r.created_ms)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Who created response `id`, if the gateway recorded it.
    pub async fn response_owner(&self, id: &str) -> Result<Option<ResponseOwner>, StoreError> {
        let row =
            sqlx::query("SELECT id, key_id, end_user, created_ms FROM responses WHERE id = $1")
                .bind(id)
                .fetch_optional(self.pool())
                .await?;
        row.map(|r| {
            Ok(ResponseOwner {
                id: r.try_get("id")?,
                key_id: r.try_get("key_id")?,
                end_user: r.try_get("end_user")?,
                created_ms: r.try_get("created_ms")?,
            })
        })
        .transpose()
    }

    /// Forgets response `id` when `key_id` owns it; whether a row went.
    pub async fn forget_response(&self, id: &str, key_id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM responses WHERE id = $1 AND key_id = $2")
            .bind(id)
            .bind(key_id)
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected() > 0)
    }
}
