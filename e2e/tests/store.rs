//! The DynamoDB store against DynamoDB Local, through the real SDK.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use common::*;
use im_shared::ids::MemberList;
use im_shared::keys::MasterKeys;
use im_shared::secret::Secret;
use im_shared::store::{DynamoStore, NewGroup, Store, StoreError};

fn members(ids: &[&str]) -> MemberList {
    MemberList::from_ids("m", ids.iter().copied(), 1000, 64).unwrap()
}

fn names(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i:03}")).collect()
}

fn list(ids: &[String]) -> MemberList {
    MemberList::from_ids("m", ids.iter().map(String::as_str), 1000, 64).unwrap()
}

/// Every item stored under the group's partition, whatever its state.
async fn items_of_group(store: &DynamoStore, id: u64) -> usize {
    store
        .client()
        .query()
        .table_name(store.table())
        .key_condition_expression("pk = :pk")
        .expression_attribute_values(":pk", AttributeValue::S(format!("GROUP#{id}")))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .count() as usize
}

#[tokio::test]
async fn group_lifecycle() {
    let store = fresh_store("store-life").await;
    let NewGroup {
        group_id,
        members: m,
        ..
    } = store
        .create_group("team", &members(&["bob", "alice"]))
        .await
        .unwrap();
    assert_eq!(group_id, 1);
    assert_eq!(m.joined(), "alice:bob");
    assert_eq!(
        store.group_members(group_id).await.unwrap(),
        ["alice", "bob"]
    );
    assert_eq!(
        store.group_name(group_id).await.unwrap().as_deref(),
        Some("team")
    );

    store.rename_group(group_id, "renamed").await.unwrap();
    assert_eq!(
        store.group_name(group_id).await.unwrap().as_deref(),
        Some("renamed")
    );

    // Re-adding a member is not an error and keeps one item per member.
    store
        .add_members(group_id, &members(&["carol", "alice"]))
        .await
        .unwrap();
    assert_eq!(
        store.group_members(group_id).await.unwrap(),
        ["alice", "bob", "carol"]
    );

    // Removing a non-member is harmless.
    store
        .remove_members(group_id, &members(&["bob", "zed"]))
        .await
        .unwrap();
    assert_eq!(
        store.group_members(group_id).await.unwrap(),
        ["alice", "carol"]
    );

    store.delete_group(group_id).await.unwrap();
    assert_eq!(store.group_name(group_id).await.unwrap(), None);
    assert_eq!(items_of_group(&store, group_id).await, 0);
    for result in [
        store.rename_group(group_id, "x").await,
        store.add_members(group_id, &members(&["x"])).await,
        store.remove_members(group_id, &members(&["alice"])).await,
        store.delete_group(group_id).await,
    ] {
        assert!(matches!(result, Err(StoreError::NotFound)), "{result:?}");
    }
    // Nothing was written by the refused add.
    assert_eq!(items_of_group(&store, group_id).await, 0);

    // Ids are never reused.
    let next = store
        .create_group("again", &MemberList::default())
        .await
        .unwrap();
    assert_eq!(next.group_id, 2);
}

#[tokio::test]
async fn unknown_groups_are_not_found_and_untouched() {
    let store = fresh_store("store-unknown").await;
    assert!(matches!(
        store.add_members(42, &members(&["a"])).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store.remove_members(42, &members(&["a"])).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store.rename_group(42, "n").await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store.delete_group(42).await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(items_of_group(&store, 42).await, 0);
}

#[tokio::test]
async fn delete_removes_every_member_item_of_a_large_group() {
    let store = fresh_store("store-large").await;
    let first = names("m", 99);
    let group = store
        .create_group("big", &list(&first))
        .await
        .unwrap()
        .group_id;
    let more = names("n", 99);
    store.add_members(group, &list(&more)).await.unwrap();
    assert_eq!(store.group_members(group).await.unwrap().len(), 198);
    assert_eq!(items_of_group(&store, group).await, 199);
    store.delete_group(group).await.unwrap();
    assert_eq!(items_of_group(&store, group).await, 0);
}

#[tokio::test]
async fn a_delete_interrupted_half_way_is_finished_by_the_next_delete() {
    let store = fresh_store("store-resume").await;
    let group = store
        .create_group("g", &list(&names("m", 30)))
        .await
        .unwrap()
        .group_id;
    // What a crash right after step 1 of delete_group leaves behind.
    store
        .client()
        .update_item()
        .table_name(store.table())
        .key("pk", AttributeValue::S(format!("GROUP#{group}")))
        .key("sk", AttributeValue::S("META".into()))
        .update_expression("SET #s = :d")
        .expression_attribute_names("#s", "status")
        .expression_attribute_values(":d", AttributeValue::S("deleting".into()))
        .send()
        .await
        .unwrap();
    // Already gone for every reader and writer...
    assert_eq!(store.group_name(group).await.unwrap(), None);
    assert!(matches!(
        store.add_members(group, &members(&["x"])).await,
        Err(StoreError::NotFound)
    ));
    // ...and the next delete (404 for its caller) removes what was left.
    assert!(matches!(
        store.delete_group(group).await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(items_of_group(&store, group).await, 0);
}

#[tokio::test]
async fn concurrent_creates_get_distinct_ids() {
    let store = Arc::new(fresh_store("store-ids").await);
    let tasks: Vec<_> = (0..25)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .create_group(&format!("g{i}"), &members(&["a"]))
                    .await
                    .unwrap()
                    .group_id
            })
        })
        .collect();
    let mut ids = BTreeSet::new();
    for t in tasks {
        assert!(ids.insert(t.await.unwrap()));
    }
    assert_eq!(ids, (1..=25).collect::<BTreeSet<u64>>());
}

#[tokio::test]
async fn concurrent_adds_and_removes_lose_nothing_and_resurrect_nothing() {
    let store = Arc::new(fresh_store("store-race").await);
    let leaving = names("leave", 24);
    let joining = names("join", 24);
    let stay = vec!["owner".to_owned()];
    let initial: Vec<String> = leaving.iter().chain(&stay).cloned().collect();
    let group = store
        .create_group("race", &list(&initial))
        .await
        .unwrap()
        .group_id;

    // 48 requests at once on one group: each adds or removes one distinct member, and
    // every add is sent twice more (same member) to race against itself.
    let mut tasks = Vec::new();
    for id in &joining {
        for _ in 0..3 {
            let (store, id) = (store.clone(), id.clone());
            tasks.push(tokio::spawn(async move {
                store.add_members(group, &members(&[&id])).await
            }));
        }
    }
    for id in &leaving {
        let (store, id) = (store.clone(), id.clone());
        tasks.push(tokio::spawn(async move {
            store.remove_members(group, &members(&[&id])).await
        }));
    }
    assert!(tasks.len() >= 20);
    for t in tasks {
        t.await.unwrap().expect("every concurrent write succeeds");
    }
    let expected: BTreeSet<String> = joining.iter().chain(&stay).cloned().collect();
    let actual: BTreeSet<String> = store
        .group_members(group)
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(actual, expected);
}

#[tokio::test]
async fn apps_add_rotate_list_remove() {
    let store = fresh_store("store-apps").await;
    let (k1, k2) = (Secret::new(test_key()), Secret::new(test_key()));
    store.create_app("app-a", &k1).await.unwrap();
    store.create_app("app-b", &k1).await.unwrap();
    assert!(matches!(
        store.create_app("app-a", &k2).await,
        Err(StoreError::AlreadyExists)
    ));
    assert_eq!(store.master_key("app-a").await.unwrap(), Some(k1.clone()));
    store.rotate_app("app-a", &k2).await.unwrap();
    assert_eq!(store.master_key("app-a").await.unwrap(), Some(k2));
    assert!(matches!(
        store.rotate_app("nope", &k1).await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(store.list_apps().await.unwrap(), ["app-a", "app-b"]);
    store.remove_app("app-b").await.unwrap();
    assert!(matches!(
        store.remove_app("app-b").await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(store.master_key("app-b").await.unwrap(), None);
    assert_eq!(store.list_apps().await.unwrap(), ["app-a"]);
}

/// The real store, counting the master-key reads that reach DynamoDB.
struct Counting {
    inner: DynamoStore,
    reads: AtomicUsize,
}

#[async_trait]
impl Store for Counting {
    async fn master_key(&self, app_id: &str) -> Result<Option<Secret>, StoreError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.inner.master_key(app_id).await
    }
    async fn create_group(&self, n: &str, m: &MemberList) -> Result<NewGroup, StoreError> {
        self.inner.create_group(n, m).await
    }
    async fn rename_group(&self, id: u64, n: &str) -> Result<(), StoreError> {
        self.inner.rename_group(id, n).await
    }
    async fn delete_group(&self, id: u64) -> Result<(), StoreError> {
        self.inner.delete_group(id).await
    }
    async fn add_members(&self, id: u64, m: &MemberList) -> Result<(), StoreError> {
        self.inner.add_members(id, m).await
    }
    async fn remove_members(&self, id: u64, m: &MemberList) -> Result<(), StoreError> {
        self.inner.remove_members(id, m).await
    }
}

#[tokio::test]
async fn a_warm_function_reads_each_master_key_once_per_ttl() {
    let inner = fresh_store("store-cache").await;
    let key = Secret::new(test_key());
    inner.create_app("cached-app", &key).await.unwrap();
    let counting = Arc::new(Counting {
        inner,
        reads: AtomicUsize::new(0),
    });
    let keys = MasterKeys::new(counting.clone(), Duration::from_secs(1));

    for _ in 0..5 {
        assert_eq!(keys.get("cached-app").await.unwrap(), key);
        assert_eq!(
            keys.get("missing-app").await.unwrap_err().status().as_u16(),
            404
        );
    }
    assert_eq!(counting.reads.load(Ordering::SeqCst), 2, "one read per app");

    tokio::time::sleep(Duration::from_millis(1200)).await;
    keys.get("cached-app").await.unwrap();
    assert_eq!(
        counting.reads.load(Ordering::SeqCst),
        3,
        "re-read after the TTL"
    );
}

#[tokio::test]
async fn member_items_carry_the_client_index_keys() {
    let store = fresh_store("store-gsi").await;
    let group = store
        .create_group("g", &members(&["zoe"]))
        .await
        .unwrap()
        .group_id;
    let out = store
        .client()
        .query()
        .table_name(store.table())
        .index_name("gsi1")
        .key_condition_expression("gsi1pk = :c")
        .expression_attribute_values(":c", AttributeValue::S("CLIENT#zoe".into()))
        .send()
        .await
        .unwrap();
    let items: Vec<HashMap<String, AttributeValue>> = out.items().to_vec();
    assert_eq!(items.len(), 1);
    assert_eq!(
        items[0]["gsi1sk"],
        AttributeValue::S(format!("GROUP#{group:020}"))
    );
}
