//! Response ownership: the first record of an id wins, lookups see it, only its key forgets it.

use super::*;

pub async fn responses_suite(store: &Store) {
    let owner = |id: &str, key: &str, end_user: Option<&str>| ResponseOwner {
        id: id.into(),
        key_id: key.into(),
        end_user: end_user.map(str::to_owned),
        created_ms: 100,
    };
    assert_eq!(store.response_owner("resp_1").await.unwrap(), None);
    store
        .record_response(&owner("resp_1", "key_a", Some("key_a/ann")))
        .await
        .unwrap();
    store
        .record_response(&owner("resp_2", "key_b", None))
        .await
        .unwrap();
    // A second record of the same id cannot hand it to another key.
    store
        .record_response(&owner("resp_1", "key_b", None))
        .await
        .unwrap();
    assert_eq!(
        store.response_owner("resp_1").await.unwrap(),
        Some(owner("resp_1", "key_a", Some("key_a/ann")))
    );
    assert_eq!(
        store.response_owner("resp_2").await.unwrap(),
        Some(owner("resp_2", "key_b", None))
    );
    // Only the owning key forgets it.
    assert!(!store.forget_response("resp_1", "key_b").await.unwrap());
    assert!(store.response_owner("resp_1").await.unwrap().is_some());
    assert!(store.forget_response("resp_1", "key_a").await.unwrap());
    assert_eq!(store.response_owner("resp_1").await.unwrap(), None);
    assert!(!store.forget_response("resp_1", "key_a").await.unwrap());
}
