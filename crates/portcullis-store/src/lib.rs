//! Portcullis's durable state — gateway keys, the audit log, the spend ledger — behind one
//! handle with two backends chosen by URL: SQLite (embedded default, nothing to install) and
//! PostgreSQL (shared by replicas). One SQL dialect serves both (`$n` parameters, `ON CONFLICT`),
//! so there is one implementation to test, and the same suite runs against each.
//!
//! It depends on no other Portcullis crate: records arrive as plain structs, ready to store.
//!
//! # Layout
//! - [`open`] / [`Store`]: connection, schema isolation (`?schema=NAME` on PostgreSQL).
//! - `migrate`: tables created if missing, columns added to files and schemas made by older
//!   versions.
//! - [`keys`]: `pk-…` keys stored as SHA-256 hashes, made only from the OS random source.
//! - [`key_cache`]: the authentication cache — hits and misses kept briefly, one query per key
//!   at a time, at most half the pool busy with lookups.
//! - [`audit`]: records, queries, the per-replica keyed chain and its verification, the
//!   journaling [`AuditWriter`], retention behind anchors, CSV/JSON-lines export.
//! - [`alerts`]: the alerts the gateway raised, listed and counted per kind.
//! - [`ledger`]: spend per request, totals per scope and period, reports.
//! - [`responses`]: which gateway key created each stored Responses-API response.
//! - [`redteam`]: red-team runs — what each measured and whether it met its thresholds.
//! - [`kills`]: the kill switch's list — stopped keys, users, teams, models, lock-down.
//! - [`review`]: reviewers' labels on shadow-mode (would-have-blocked) verdicts.
//! - [`policy_events`]: each change of a guard's mode or rollout share, and who made it.

pub mod alerts;
pub mod audit;
pub mod key_cache;
pub mod keys;
pub mod kills;
pub mod ledger;
mod migrate;
pub mod policy_events;
pub mod redteam;
pub mod responses;
pub mod review;

pub use alerts::{AlertFilter, AlertSummary, StoredAlert};
pub use audit::{
    AuditFilter, AuditRecord, AuditWriter, ChainKey, ChainReport, PruneReport, SpoolConfig,
    TextMac, VerifyError, VerifyReport,
};
pub use key_cache::CacheClock;
pub use keys::{CreatedKey, KeyRecord, NewKey};
pub use kills::{Kill, KillScope};
pub use ledger::{GroupBy, SpendEntry, SpendRow, SpendScope};
pub use policy_events::PolicyEvent;
pub use redteam::RedteamRun;
pub use responses::ResponseOwner;
pub use review::{JudgedRecord, Label, ReviewLabel};

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{AnyPool, Executor};
use std::sync::Arc;
use std::time::Duration;

/// What went wrong with the store, said so that an operator can act on it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unsupported store URL '{0}': use sqlite://FILE or postgres://…")]
    Url(String),
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("no key with id '{0}'")]
    NoSuchKey(String),
    #[error("spool I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("bad stored data: {0}")]
    Data(String),
    /// The OS random source failed; no key is made from a weaker one.
    #[error(
        "the operating system's random source failed ({0}); refusing to create a key without it"
    )]
    Rng(String),
}

/// Which database a store talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A cheap-to-clone handle to the store.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    keys: Arc<key_cache::Cache>,
    /// Lookups the key cache may run at once (half the pool).
    lookup_slots: usize,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend)
            .finish()
    }
}

/// Splits `?schema=NAME` off a PostgreSQL URL.
fn split_schema(url: &str) -> (String, Option<String>) {
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_owned(), None);
    };
    let mut schema = None;
    let rest: Vec<&str> = query
        .split('&')
        .filter(|kv| match kv.strip_prefix("schema=") {
            Some(s) => {
                schema = Some(s.to_owned());
                false
            }
            None => true,
        })
        .collect();
    let url = if rest.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", rest.join("&"))
    };
    (url, schema)
}

fn valid_ident(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !s.starts_with(|c: char| c.is_ascii_digit())
}

/// Opens the store at `url`, creating tables (and the PostgreSQL schema) if needed.
pub async fn open(url: &str) -> Result<Store, StoreError> {
    install_default_drivers();
    let (backend, url, schema) = if let Some(path) = url.strip_prefix("sqlite://") {
        let url = if path == ":memory:" || path.is_empty() {
            "sqlite::memory:".to_owned()
        } else if path.contains('?') {
            format!("sqlite://{path}")
        } else {
            format!("sqlite://{path}?mode=rwc")
        };
        (Backend::Sqlite, url, None)
    } else if url.starts_with("sqlite:") {
        (Backend::Sqlite, url.to_owned(), None)
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let (u, s) = split_schema(url);
        if let Some(s) = &s
            && !valid_ident(s)
        {
            return Err(StoreError::Url(format!(
                "{url} (schema must be letters, digits, _)"
            )));
        }
        (Backend::Postgres, u, s)
    } else {
        return Err(StoreError::Url(url.to_owned()));
    };
    let pool_size = if backend == Backend::Sqlite { 4 } else { 16 };
    let mut opts = AnyPoolOptions::new()
        .acquire_timeout(Duration::from_secs(5))
        .max_connections(pool_size);
    if backend == Backend::Sqlite {
        opts = opts.after_connect(|conn, _| {
            Box::pin(async move {
                conn.execute("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000;")
                    .await?;
                Ok(())
            })
        });
    }
    if let Some(schema) = schema.clone() {
        // Create the schema with a plain connection first, then pin every pooled connection to it.
        let boot = AnyPoolOptions::new()
            .max_connections(1)
            .connect(&url)
            .await?;
        boot.execute(format!("CREATE SCHEMA IF NOT EXISTS {schema}").as_str())
            .await?;
        boot.close().await;
        opts = opts.after_connect(move |conn, _| {
            let schema = schema.clone();
            Box::pin(async move {
                conn.execute(format!("SET search_path TO {schema}").as_str())
                    .await?;
                Ok(())
            })
        });
    }
    let pool = opts.connect(&url).await?;
    migrate::run(&pool, backend).await?;
    let lookup_slots = (pool_size as usize / 2).max(1);
    Ok(Store {
        pool,
        backend,
        keys: Arc::new(key_cache::Cache::new(
            Arc::new(std::time::Instant::now),
            lookup_slots,
        )),
        lookup_slots,
    })
}

impl Store {
    /// This store with an empty key cache reading `clock` (tests move time by hand); call it
    /// right after [`open`], before the handle is cloned.
    pub fn with_cache_clock(mut self, clock: CacheClock) -> Store {
        self.keys = Arc::new(key_cache::Cache::new(clock, self.lookup_slots));
        self
    }

    /// Which backend this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Whether the database answers (for `/readyz`).
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Closes the pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// How the store asks for random bytes: the OS source in production, a stand-in in tests.
pub(crate) type Fill = fn(&mut [u8]) -> Result<(), getrandom::Error>;

/// `N` random bytes from `fill`, or [`StoreError::Rng`] when it fails: secrets are never
/// made from anything weaker (a clock is guessable), so the caller must refuse.
pub(crate) fn random_with<const N: usize>(fill: Fill) -> Result<[u8; N], StoreError> {
    let mut b = [0u8; N];
    fill(&mut b).map_err(|e| StoreError::Rng(e.to_string()))?;
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_random_source_is_refused_not_replaced() {
        let broken: Fill = |_| Err(getrandom::Error::UNSUPPORTED);
        assert!(matches!(random_with::<48>(broken), Err(StoreError::Rng(_))));
        let sevens: Fill = |b| {
            b.fill(7);
            Ok(())
        };
        assert_eq!(random_with::<3>(sevens).unwrap(), [7, 7, 7]);
    }

    #[test]
    fn schema_is_split_off_postgres_urls() {
        assert_eq!(
            split_schema("postgres://h/test?schema=x_1"),
            ("postgres://h/test".into(), Some("x_1".into()))
        );
        assert_eq!(
            split_schema("postgres://h/test?sslmode=disable&schema=s"),
            ("postgres://h/test?sslmode=disable".into(), Some("s".into()))
        );
        assert_eq!(
            split_schema("postgres://h/test"),
            ("postgres://h/test".into(), None)
        );
        assert!(valid_ident("portcullis_test_1"));
        assert!(!valid_ident("x; DROP TABLE keys"));
    }
}
