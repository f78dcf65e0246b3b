//! Gateway keys: `pk-` + 256 random bits, shown once, stored only as a SHA-256 hash, compared
//! in constant time, and cached briefly because authentication sits on every request (see
//! [`crate::key_cache`]: hits, misses, one query per key at a time).

use crate::key_cache::Cached;
pub use crate::key_cache::{CACHE_TTL, MISS_TTL};
use crate::{Fill, Store, StoreError, now_ms, random_with};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::Row;
use subtle::ConstantTimeEq;

/// What to create.
#[derive(Debug, Clone, Default)]
pub struct NewKey {
    pub user: String,
    pub team: Option<String>,
    /// May name the end user in the request's `user` field.
    pub service: bool,
    /// Limits and budgets attached to the key (opaque JSON owned by the gateway).
    pub limits: serde_json::Value,
    /// When the key stops working (ms since the epoch); `None`: never.
    pub expires_ms: Option<i64>,
}

/// A new key: the secret exists only here, once.
#[derive(Debug, Clone)]
pub struct CreatedKey {
    pub id: String,
    pub secret: String,
}

/// A stored key (never its secret).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyRecord {
    pub id: String,
    /// The first characters of the secret, to recognise a key in lists.
    pub prefix: String,
    pub user: String,
    pub team: Option<String>,
    pub service: bool,
    pub limits: serde_json::Value,
    pub created_ms: i64,
    pub revoked: bool,
    /// When the key stops working (ms since the epoch); `None`: never. When the key was
    /// presented with its previous (rotated-out) secret, the end of that secret's grace period
    /// if sooner.
    #[serde(default)]
    pub expires_ms: Option<i64>,
    /// Until when the secret replaced by the last rotation still works.
    #[serde(default)]
    pub previous_until_ms: Option<i64>,
    /// This record answers a request made with the previous secret (during its grace period).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub previous_secret: bool,
}

impl KeyRecord {
    /// Whether the key (or the secret it was presented with) has expired at `now_ms`.
    pub fn expired_at(&self, now_ms: i64) -> bool {
        self.expires_ms.is_some_and(|t| t <= now_ms)
    }
}

fn hash(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

fn base62(bytes: &[u8]) -> String {
    // Rejection-free mapping is fine here: 48 bytes of entropy over 62 symbols keeps > 256 bits.
    bytes
        .iter()
        .map(|b| ALPHABET[(*b as usize) % 62] as char)
        .collect()
}

/// A fresh key id and secret from `fill`; an error if `fill` fails (never a weaker fallback).
pub(crate) fn generate(fill: Fill) -> Result<CreatedKey, StoreError> {
    let secret = format!("pk-{}", base62(&random_with::<48>(fill)?));
    let id = format!("key_{}", hex::encode(random_with::<8>(fill)?));
    Ok(CreatedKey { id, secret })
}

fn record(row: &sqlx::any::AnyRow) -> Result<KeyRecord, StoreError> {
    let limits: String = row.try_get("limits")?;
    Ok(KeyRecord {
        id: row.try_get("id")?,
        prefix: row.try_get("prefix")?,
        user: row.try_get("user_name")?,
        team: row.try_get("team")?,
        service: row.try_get::<i64, _>("service")? != 0,
        limits: serde_json::from_str(&limits).map_err(|e| StoreError::Data(e.to_string()))?,
        created_ms: row.try_get("created_ms")?,
        revoked: row.try_get::<Option<i64>, _>("revoked_ms")?.is_some(),
        expires_ms: row.try_get("expires_ms")?,
        previous_until_ms: row.try_get("prev_until_ms")?,
        previous_secret: false,
    })
}

const COLUMNS: &str = "id, hash, prefix, user_name, team, service, limits, created_ms, revoked_ms, \
                       expires_ms, prev_hash, prev_until_ms";

/// Whether the hex digest `stored` is `h`, compared in constant time.
fn same_hash(stored: Option<&str>, h: &[u8; 32]) -> bool {
    stored
        .and_then(|s| hex::decode(s).ok())
        .is_some_and(|s| bool::from(s.as_slice().ct_eq(h)))
}

impl Store {
    /// Creates a key for `new`; the returned secret is not stored anywhere. Fails with
    /// [`StoreError::Rng`] (nothing stored) if the OS random source fails.
    pub async fn create_key(&self, new: NewKey) -> Result<CreatedKey, StoreError> {
        let CreatedKey { id, secret } = generate(getrandom::fill)?;
        let limits = if new.limits.is_null() {
            "{}".to_owned()
        } else {
            new.limits.to_string()
        };
        sqlx::query(
            "INSERT INTO keys (id, hash, prefix, user_name, team, service, limits, created_ms, \
             expires_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&id)
        .bind(hex::encode(hash(&secret)))
        .bind(secret[..10].to_owned())
        .bind(&new.user)
        .bind(new.team.clone())
        .bind(i64::from(new.service))
        .bind(limits)
        .bind(now_ms())
        .bind(new.expires_ms)
        .execute(self.pool())
        .await?;
        Ok(CreatedKey { id, secret })
    }

    /// Gives key `id` a new secret; the old one keeps working for `grace_ms` more (0: stops at
    /// once). Limits, history and id stay. Fails for unknown or revoked keys.
    pub async fn rotate_key(&self, id: &str, grace_ms: i64) -> Result<CreatedKey, StoreError> {
        let CreatedKey { secret, .. } = generate(getrandom::fill)?;
        let done = sqlx::query(
            "UPDATE keys SET prev_hash = hash, prev_until_ms = $1, hash = $2, prefix = $3 \
             WHERE id = $4 AND revoked_ms IS NULL",
        )
        .bind(now_ms().saturating_add(grace_ms.max(0)))
        .bind(hex::encode(hash(&secret)))
        .bind(secret[..10].to_owned())
        .bind(id)
        .execute(self.pool())
        .await?;
        self.keys.forget_key(id);
        if done.rows_affected() == 0 {
            let rec = self.get_key(id).await?;
            if rec.revoked {
                return Err(StoreError::Data(format!(
                    "key '{id}' is revoked; create a new key instead of rotating it"
                )));
            }
        }
        Ok(CreatedKey {
            id: id.to_owned(),
            secret,
        })
    }

    /// Forgets what this process cached about key `id` (changed by another process).
    pub fn forget_key(&self, id: &str) {
        self.keys.forget_key(id);
    }

    /// Forgets every cached authentication (after missing news of changes, e.g. a reconnect).
    pub fn forget_all_keys(&self) {
        self.keys.forget_all();
    }

    /// The live key a secret belongs to; `None` for unknown or revoked keys. Answers are
    /// cached ([`CACHE_TTL`] for keys found, [`MISS_TTL`] for keys not found), and concurrent
    /// calls for one secret share one database query.
    pub async fn authenticate(&self, secret: &str) -> Result<Option<KeyRecord>, StoreError> {
        let h = hash(secret);
        match self.keys.get(&h) {
            Cached::Hit(rec) => return Ok(Some(rec)),
            Cached::Miss => return Ok(None),
            Cached::Unknown => {}
        }
        self.keys.single_flight(h, || self.lookup(h)).await
    }

    /// Authentications that reached the database (cache misses) since the store was opened,
    /// for metrics: a steady climb under a flood of bogus keys means distinct keys.
    pub fn key_lookups(&self) -> u64 {
        self.keys.lookups()
    }

    /// The live key stored under hash `h`, from the database.
    async fn lookup(&self, h: [u8; 32]) -> Result<Option<KeyRecord>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM keys WHERE hash = $1 OR prev_hash = $1"
        ))
        .bind(hex::encode(h))
        .fetch_optional(self.pool())
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let mut rec = record(&row)?;
        if same_hash(row.try_get::<Option<String>, _>("hash")?.as_deref(), &h) {
            // the current secret
        } else if same_hash(
            row.try_get::<Option<String>, _>("prev_hash")?.as_deref(),
            &h,
        ) {
            let until = rec.previous_until_ms.unwrap_or(0);
            rec.expires_ms = Some(rec.expires_ms.map_or(until, |e| e.min(until)));
            rec.previous_secret = true;
        } else {
            return Ok(None);
        }
        Ok((!rec.revoked).then_some(rec))
    }

    /// Every key, newest first.
    pub async fn list_keys(&self) -> Result<Vec<KeyRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM keys ORDER BY created_ms DESC, id"
        ))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(record).collect()
    }

    /// One key by id.
    pub async fn get_key(&self, id: &str) -> Result<KeyRecord, StoreError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM keys WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref()
            .map(record)
            .transpose()?
            .ok_or_else(|| StoreError::NoSuchKey(id.to_owned()))
    }

    /// Revokes a key by id; this process forgets it at once, others within [`CACHE_TTL`].
    pub async fn revoke_key(&self, id: &str) -> Result<(), StoreError> {
        let done =
            sqlx::query("UPDATE keys SET revoked_ms = $1 WHERE id = $2 AND revoked_ms IS NULL")
                .bind(now_ms())
                .bind(id)
                .execute(self.pool())
                .await?;
        if done.rows_affected() == 0 {
            self.get_key(id).await?;
        }
        self.keys.forget_key(id);
        Ok(())
    }

    /// Replaces the limits and budgets attached to a key.
    pub async fn update_key_limits(
        &self,
        id: &str,
        limits: &serde_json::Value,
    ) -> Result<(), StoreError> {
        let done = sqlx::query("UPDATE keys SET limits = $1 WHERE id = $2")
            .bind(limits.to_string())
            .bind(id)
            .execute(self.pool())
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NoSuchKey(id.to_owned()));
        }
        self.keys.forget_key(id);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_refused_when_the_random_source_fails() {
        let broken: Fill = |_| Err(getrandom::Error::UNSUPPORTED);
        assert!(matches!(generate(broken), Err(StoreError::Rng(_))));
        let k = generate(getrandom::fill).unwrap();
        assert!(k.secret.starts_with("pk-") && k.secret.len() == 51);
        assert!(k.id.starts_with("key_") && k.id.len() == 20);
        assert_ne!(generate(getrandom::fill).unwrap().secret, k.secret);
    }
}
