//! Keys: creation, authentication, revocation, limits; the cache in front of them.

use super::*;

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
}
