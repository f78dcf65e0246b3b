//! The authentication cache: authentication sits on every request, so its answers are kept
//! briefly — keys found for [`CACHE_TTL`], keys *not* found (unknown or revoked) for
//! [`MISS_TTL`] — and concurrent lookups of one key share a single database query. Lookups that
//! do reach the database are capped at half the pool, so a flood of distinct bogus keys cannot
//! starve the audit log and the ledger of connections.
//!
//! Sizes are bounded: a full table first drops expired entries, then everything of its kind
//! (misses are kept apart from hits, so bogus keys never push out real ones).

use crate::StoreError;
use crate::keys::KeyRecord;
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::{OnceCell, Semaphore};

/// How long a successful authentication is trusted without asking the database again. A
/// revocation made by another process takes effect within this time.
pub const CACHE_TTL: Duration = Duration::from_secs(5);

/// How long "no such key" is remembered, so repeated bogus keys do not reach the database.
pub const MISS_TTL: Duration = Duration::from_secs(3);

/// Most keys found kept at once.
pub const MAX_HITS: usize = 100_000;

/// Most keys not found kept at once.
pub const MAX_MISSES: usize = 20_000;

/// Longest wait for a lookup slot before giving up as the pool would.
const SLOT_TIMEOUT: Duration = Duration::from_secs(5);

/// A monotonic clock for cache ages, replaceable so tests can move time by hand.
pub type CacheClock = Arc<dyn Fn() -> Instant + Send + Sync>;

type Hash = [u8; 32];
type Flight = Arc<OnceCell<Option<KeyRecord>>>;

/// What the cache knows about a key.
pub(crate) enum Cached {
    /// A live key, recently looked up.
    Hit(KeyRecord),
    /// Recently looked up and not found (or revoked).
    Miss,
    /// Ask the database.
    Unknown,
}

pub(crate) struct Cache {
    clock: CacheClock,
    hits: RwLock<HashMap<Hash, (KeyRecord, Instant)>>,
    misses: RwLock<HashMap<Hash, Instant>>,
    flights: Mutex<HashMap<Hash, Flight>>,
    /// Bumped by every revocation or change: a lookup begun before it is not cached.
    generation: AtomicU64,
    slots: Semaphore,
    lookups: AtomicU64,
}

impl Cache {
    /// A cache reading `clock`, letting `slots` lookups reach the database at once.
    pub(crate) fn new(clock: CacheClock, slots: usize) -> Cache {
        Cache {
            clock,
            hits: RwLock::default(),
            misses: RwLock::default(),
            flights: Mutex::default(),
            generation: AtomicU64::new(0),
            slots: Semaphore::new(slots.max(1)),
            lookups: AtomicU64::new(0),
        }
    }

    /// Lookups that reached the database since start.
    pub(crate) fn lookups(&self) -> u64 {
        self.lookups.load(Ordering::Relaxed)
    }

    pub(crate) fn get(&self, h: &Hash) -> Cached {
        let now = (self.clock)();
        if let Ok(hits) = self.hits.read()
            && let Some((rec, at)) = hits.get(h)
            && now.saturating_duration_since(*at) < CACHE_TTL
        {
            return Cached::Hit(rec.clone());
        }
        if let Ok(misses) = self.misses.read()
            && let Some(at) = misses.get(h)
            && now.saturating_duration_since(*at) < MISS_TTL
        {
            return Cached::Miss;
        }
        Cached::Unknown
    }

    fn put(&self, h: Hash, found: Option<KeyRecord>, generation: u64) {
        if self.generation.load(Ordering::SeqCst) != generation {
            return; // a key changed while we looked: do not cache what we saw before
        }
        let now = (self.clock)();
        match found {
            Some(rec) => {
                if let Ok(mut hits) = self.hits.write() {
                    if hits.len() >= MAX_HITS {
                        hits.retain(|_, (_, at)| now.saturating_duration_since(*at) < CACHE_TTL);
                        if hits.len() >= MAX_HITS {
                            hits.clear();
                        }
                    }
                    hits.insert(h, (rec, now));
                }
                if let Ok(mut misses) = self.misses.write() {
                    misses.remove(&h);
                }
            }
            None => {
                if let Ok(mut misses) = self.misses.write() {
                    if misses.len() >= MAX_MISSES {
                        misses.retain(|_, at| now.saturating_duration_since(*at) < MISS_TTL);
                        if misses.len() >= MAX_MISSES {
                            misses.clear();
                        }
                    }
                    misses.insert(h, now);
                }
                if let Ok(mut hits) = self.hits.write() {
                    hits.remove(&h);
                }
            }
        }
    }

    /// Forgets key `id` at once (revoked or changed here), and anything being looked up.
    pub(crate) fn forget_key(&self, id: &str) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut hits) = self.hits.write() {
            hits.retain(|_, (rec, _)| rec.id != id);
        }
        if let Ok(mut flights) = self.flights.lock() {
            flights.clear();
        }
    }

    /// Forgets every key at once, and anything being looked up.
    pub(crate) fn forget_all(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut hits) = self.hits.write() {
            hits.clear();
        }
        if let Ok(mut misses) = self.misses.write() {
            misses.clear();
        }
        if let Ok(mut flights) = self.flights.lock() {
            flights.clear();
        }
    }

    /// The answer for `h`: one `lookup` at a time per key (others wait for its answer), at most
    /// `slots` lookups at once; the answer is cached.
    pub(crate) async fn single_flight<F, Fut>(
        &self,
        h: Hash,
        lookup: F,
    ) -> Result<Option<KeyRecord>, StoreError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<KeyRecord>, StoreError>>,
    {
        let generation = self.generation.load(Ordering::SeqCst);
        let flight: Flight = match self.flights.lock() {
            Ok(mut f) => f.entry(h).or_default().clone(),
            Err(_) => Flight::default(),
        };
        let out = flight
            .get_or_try_init(|| async {
                // A flight that just landed may have answered after our caller looked.
                match self.get(&h) {
                    Cached::Hit(rec) => return Ok(Some(rec)),
                    Cached::Miss => return Ok(None),
                    Cached::Unknown => {}
                }
                let _slot = tokio::time::timeout(SLOT_TIMEOUT, self.slots.acquire())
                    .await
                    .map_err(|_| StoreError::Db(sqlx::Error::PoolTimedOut))?
                    .map_err(|_| StoreError::Db(sqlx::Error::PoolClosed))?;
                self.lookups.fetch_add(1, Ordering::Relaxed);
                let found = lookup().await?;
                self.put(h, found.clone(), generation);
                Ok::<_, StoreError>(found)
            })
            .await
            .cloned();
        if let Ok(mut f) = self.flights.lock()
            && f.get(&h).is_some_and(|g| Arc::ptr_eq(g, &flight))
        {
            f.remove(&h);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    fn manual() -> (CacheClock, Arc<AtomicU64>) {
        let start = Instant::now();
        let ms = Arc::new(AtomicU64::new(0));
        let m = ms.clone();
        (
            Arc::new(move || start + Duration::from_millis(m.load(Ordering::SeqCst))),
            ms,
        )
    }

    fn rec(id: &str) -> KeyRecord {
        KeyRecord {
            id: id.into(),
            prefix: "pk-x".into(),
            user: "u".into(),
            team: None,
            service: false,
            limits: serde_json::Value::Null,
            created_ms: 0,
            revoked: false,
            expires_ms: None,
            previous_until_ms: None,
            previous_secret: false,
        }
    }

    #[tokio::test]
    async fn misses_are_remembered_briefly_and_hits_longer() {
        let (clock, ms) = manual();
        let c = Cache::new(clock, 2);
        let (bogus, real) = ([1; 32], [2; 32]);
        c.single_flight(bogus, || async { Ok(None) }).await.unwrap();
        c.single_flight(real, || async { Ok(Some(rec("k"))) })
            .await
            .unwrap();
        assert!(matches!(c.get(&bogus), Cached::Miss));
        assert!(matches!(c.get(&real), Cached::Hit(_)));
        ms.store(MISS_TTL.as_millis() as u64, Ordering::SeqCst);
        assert!(matches!(c.get(&bogus), Cached::Unknown));
        assert!(matches!(c.get(&real), Cached::Hit(_)));
        ms.store(CACHE_TTL.as_millis() as u64, Ordering::SeqCst);
        assert!(matches!(c.get(&real), Cached::Unknown));
        assert_eq!(c.lookups(), 2);
    }

    #[tokio::test]
    async fn the_tables_stay_bounded() {
        let (clock, _) = manual();
        let c = Cache::new(clock, 2);
        for i in 0..MAX_MISSES as u32 + 10 {
            let mut h = [0; 32];
            h[..4].copy_from_slice(&i.to_le_bytes());
            c.put(h, None, 0);
        }
        c.put([9; 32], Some(rec("k")), 0);
        assert!(c.misses.read().unwrap().len() <= MAX_MISSES);
        // Bogus keys never push out real ones.
        assert!(matches!(c.get(&[9; 32]), Cached::Hit(_)));
    }

    #[tokio::test]
    async fn a_lookup_begun_before_a_revocation_is_not_cached() {
        let (clock, _) = manual();
        let c = Cache::new(clock, 2);
        let h = [3; 32];
        let found = c
            .single_flight(h, || async {
                c.forget_key("k"); // revoked while the query ran
                Ok(Some(rec("k")))
            })
            .await
            .unwrap();
        assert!(found.is_some());
        assert!(matches!(c.get(&h), Cached::Unknown));
    }

    #[tokio::test]
    async fn forgetting_everything_drops_hits_misses_and_lookups_under_way() {
        let (clock, _) = manual();
        let c = Cache::new(clock, 2);
        let (hit, miss) = ([5; 32], [6; 32]);
        c.single_flight(hit, || async { Ok(Some(rec("k"))) })
            .await
            .unwrap();
        c.single_flight(miss, || async { Ok(None) }).await.unwrap();
        let found = c
            .single_flight([7; 32], || async {
                c.forget_all(); // news missed while this query ran
                Ok(Some(rec("j")))
            })
            .await
            .unwrap();
        assert!(found.is_some());
        for h in [hit, miss, [7; 32]] {
            assert!(matches!(c.get(&h), Cached::Unknown));
        }
    }

    #[tokio::test]
    async fn a_failed_lookup_is_not_cached_and_the_next_one_tries_again() {
        let (clock, _) = manual();
        let c = Cache::new(clock, 1);
        let h = [4; 32];
        let err = c
            .single_flight(h, || async { Err(StoreError::Data("down".into())) })
            .await;
        assert!(err.is_err());
        assert!(matches!(c.get(&h), Cached::Unknown));
        let ok = c.single_flight(h, || async { Ok(None) }).await.unwrap();
        assert!(ok.is_none());
        assert_eq!(c.lookups(), 2);
    }
}
