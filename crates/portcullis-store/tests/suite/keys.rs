//! Keys: creation, authentication, revocation, limits; the cache in front of them.

use super::*;
use portcullis_store::keys::{CACHE_TTL, MISS_TTL};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

pub async fn keys_suite(store: &Store) {
    let created = store
        .create_key(NewKey {
            user: "alice".into(),
            team: Some("research".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(created.secret.starts_with("pk-") && created.secret.len() >= 40);
    let rec = store.authenticate(&created.secret).await.unwrap().unwrap();
    assert_eq!(
        (rec.user.as_str(), rec.team.as_deref(), rec.service),
        ("alice", Some("research"), false)
    );
    // Unknown and near-miss secrets are refused.
    assert!(store.authenticate("pk-nope").await.unwrap().is_none());
    // The last character changed to another one (replacing it by a fixed 'x' was the key
    // itself whenever the key ended in 'x').
    let mut near = created.secret.clone();
    let last = near.pop().unwrap();
    near.push(if last == 'x' { 'y' } else { 'x' });
    assert_ne!(near, created.secret);
    assert!(store.authenticate(&near).await.unwrap().is_none());
    // Lists never carry secrets.
    let list = store.list_keys().await.unwrap();
    assert_eq!(list.len(), 1);
    assert!(
        !serde_json::to_string(&list)
            .unwrap()
            .contains(&created.secret)
    );
    // Revocation takes effect at once in this process, cache included.
    store.revoke_key(&created.id).await.unwrap();
    assert!(store.authenticate(&created.secret).await.unwrap().is_none());
    assert!(store.list_keys().await.unwrap()[0].revoked);
    assert!(matches!(
        store.revoke_key("key_missing").await,
        Err(StoreError::NoSuchKey(_))
    ));
    // Limits attach to keys.
    let svc = store
        .create_key(NewKey {
            user: "app".into(),
            service: true,
            ..Default::default()
        })
        .await
        .unwrap();
    store
        .update_key_limits(&svc.id, &serde_json::json!({"rpm": 5}))
        .await
        .unwrap();
    let rec = store.authenticate(&svc.secret).await.unwrap().unwrap();
    assert!(rec.service);
    assert_eq!(rec.limits["rpm"], 5);
    rotation_and_expiry(store).await;
    kills(store).await;
}

/// A rotated key answers to its new secret at once and to the old one only during the grace
/// period; an expiry date is stored and reported, not enforced by the store.
async fn rotation_and_expiry(store: &Store) {
    let k = store
        .create_key(NewKey {
            user: "dave".into(),
            expires_ms: Some(now_ms() + 3_600_000),
            ..Default::default()
        })
        .await
        .unwrap();
    let rec = store.authenticate(&k.secret).await.unwrap().unwrap();
    assert!(rec.expires_ms.is_some() && !rec.expired_at(now_ms()));
    assert!(rec.expired_at(now_ms() + 3_600_001));
    let new = store.rotate_key(&k.id, 60_000).await.unwrap();
    assert_eq!(new.id, k.id);
    assert_ne!(new.secret, k.secret);
    let fresh = store.authenticate(&new.secret).await.unwrap().unwrap();
    assert!(!fresh.previous_secret && !fresh.expired_at(now_ms()));
    let old = store.authenticate(&k.secret).await.unwrap().unwrap();
    assert!(old.previous_secret && !old.expired_at(now_ms()));
    assert!(
        old.expired_at(now_ms() + 61_000),
        "the old secret ends with its grace period"
    );
    // Rotating again with no grace: the secret before stops at once.
    let newer = store.rotate_key(&k.id, 0).await.unwrap();
    let before = store.authenticate(&new.secret).await.unwrap().unwrap();
    assert!(before.expired_at(now_ms()));
    assert!(
        store.authenticate(&k.secret).await.unwrap().is_none(),
        "only one previous secret is kept"
    );
    assert!(store.authenticate(&newer.secret).await.unwrap().is_some());
    store.revoke_key(&k.id).await.unwrap();
    assert!(store.rotate_key(&k.id, 0).await.is_err());
    assert!(matches!(
        store.rotate_key("key_missing", 0).await,
        Err(StoreError::NoSuchKey(_))
    ));
}

/// Kills are stored, replaced, listed and lifted.
async fn kills(store: &Store) {
    assert!(store.kills().await.unwrap().is_empty());
    store
        .kill(KillScope::User, "mallory", "abuse")
        .await
        .unwrap();
    store
        .kill(KillScope::User, "mallory", "abuse, again")
        .await
        .unwrap();
    store.kill(KillScope::All, "*", "incident 7").await.unwrap();
    let all = store.kills().await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(
        (all[0].scope, all[0].target.as_str()),
        (KillScope::All, "*")
    );
    assert_eq!(all[1].reason, "abuse, again");
    assert!(store.unkill(KillScope::User, "mallory").await.unwrap());
    assert!(!store.unkill(KillScope::User, "mallory").await.unwrap());
    assert_eq!(store.kills().await.unwrap().len(), 1);
}

/// A clock for the key cache that the test moves by hand.
fn manual_clock() -> (CacheClock, Arc<AtomicU64>) {
    let start = Instant::now();
    let ms = Arc::new(AtomicU64::new(0));
    let m = ms.clone();
    (
        Arc::new(move || start + Duration::from_millis(m.load(Ordering::SeqCst))),
        ms,
    )
}

/// Authenticates `secret` `n` times at once on clones of `store`.
async fn at_once(store: &Store, secret: &str, n: usize) -> Vec<Option<KeyRecord>> {
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let (s, k) = (store.clone(), secret.to_owned());
            tokio::spawn(async move { s.authenticate(&k).await.unwrap() })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

/// Misses are cached briefly, concurrent lookups of one key share one query, and a key
/// revoked by another process stops working within the cache's TTL.
pub async fn key_cache_suite(url: &str) {
    let (clock, ms) = manual_clock();
    let store = open(url).await.unwrap().with_cache_clock(clock.clone());
    let replica = open(url).await.unwrap().with_cache_clock(clock);
    // A flood of one bogus key: one database query, however many arrive at once or after.
    let bogus = "pk-0000000000000000000000000000000000000000000000bogus";
    assert!(at_once(&store, bogus, 64).await.iter().all(Option::is_none));
    assert!(at_once(&store, bogus, 16).await.iter().all(Option::is_none));
    assert_eq!(store.key_lookups(), 1);
    // Once the miss has aged out, the database is asked again (once).
    ms.fetch_add(MISS_TTL.as_millis() as u64, Ordering::SeqCst);
    assert!(at_once(&store, bogus, 16).await.iter().all(Option::is_none));
    assert_eq!(store.key_lookups(), 2);
    // A live key: one query for many concurrent requests, then served from the cache.
    let k = store
        .create_key(NewKey {
            user: "carol".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let found = at_once(&store, &k.secret, 64).await;
    assert!(
        found
            .iter()
            .all(|r| r.as_ref().is_some_and(|r| r.id == k.id))
    );
    assert_eq!(store.key_lookups(), 3);
    // The other replica caches it too; this one revokes it: refused here at once, and there
    // as soon as its cached entry is CACHE_TTL old.
    assert!(replica.authenticate(&k.secret).await.unwrap().is_some());
    store.revoke_key(&k.id).await.unwrap();
    assert!(store.authenticate(&k.secret).await.unwrap().is_none());
    ms.fetch_add(CACHE_TTL.as_millis() as u64, Ordering::SeqCst);
    assert!(replica.authenticate(&k.secret).await.unwrap().is_none());
    // A revoked key is remembered as a miss: repeated tries do not reach the database.
    let before = replica.key_lookups();
    assert!(
        at_once(&replica, &k.secret, 16)
            .await
            .iter()
            .all(Option::is_none)
    );
    assert_eq!(replica.key_lookups(), before);
}
