//! The DynamoDB store against DynamoDB Local, through the real SDK.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use im_e2e::stack::{fresh_store, mark_deleting, test_key, test_token_secret};
use im_shared::model::Secret;
use im_shared::model::{
    AppKey, Caller, GroupPatch, GroupSpec, GroupStatus, NewGroup, Standing, TencentKey, TokenKey,
    DEFAULT_MAX_MEMBERS,
};
use im_shared::model::{CloudId, MemberList};
use im_shared::store::dynamo::SyncSave;
use im_shared::store::{
    ConversationStore, DynamoStore, GroupStore, KeyStore, MemberStore, StoreError,
};
use im_shared::store::{Keys, Links};

/// An app's master key as the store reads it.
async fn master(store: &DynamoStore, app_id: &str) -> Option<Secret> {
    store.master_key(app_id).await.unwrap().map(|k| k.master)
}

fn caller(client: &str) -> Caller {
    Caller {
        app_id: "app".into(),
        client_id: client.into(),
        app_admin: false,
    }
}

fn app_admin() -> Caller {
    Caller {
        app_admin: true,
        ..caller("backend")
    }
}

/// The seed-API shapes of create and rename, over the richer store calls.
#[async_trait]
trait Simple {
    async fn create_group_simple(
        &self,
        c: &Caller,
        name: &str,
        m: &MemberList,
    ) -> Result<NewGroup, StoreError>;
    async fn rename_simple(&self, c: &Caller, id: u64, name: &str) -> Result<(), StoreError>;
}

#[async_trait]
impl Simple for DynamoStore {
    async fn create_group_simple(
        &self,
        c: &Caller,
        name: &str,
        m: &MemberList,
    ) -> Result<NewGroup, StoreError> {
        let spec = GroupSpec {
            name: name.into(),
            members: m.clone(),
            max_members: DEFAULT_MAX_MEMBERS,
            ..GroupSpec::default()
        };
        self.create_group(c, &spec, None).await.map(|c| c.group)
    }
    async fn rename_simple(&self, c: &Caller, id: u64, name: &str) -> Result<(), StoreError> {
        let patch = GroupPatch {
            name: Some(name.into()),
            ..GroupPatch::default()
        };
        self.update_group(c, id, &patch, None).await.map(|_| ())
    }
}

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
    let alice = caller("alice");
    let NewGroup {
        group_id,
        members: m,
        owner,
        ..
    } = store
        .create_group_simple(&alice, "team", &members(&["bob"]))
        .await
        .unwrap();
    assert_eq!(group_id, 1);
    assert_eq!(owner, "alice");
    assert_eq!(m.joined(), "alice:bob", "the creator is a member");
    assert_eq!(
        store.group_members(group_id).await.unwrap(),
        ["alice", "bob"]
    );
    let meta = store.group_meta(group_id).await.unwrap().unwrap();
    assert_eq!(
        (meta.group_name.as_str(), meta.owner.as_str(), meta.live),
        ("team", "alice", true)
    );

    store
        .rename_simple(&alice, group_id, "renamed")
        .await
        .unwrap();
    assert_eq!(
        store
            .group_meta(group_id)
            .await
            .unwrap()
            .unwrap()
            .group_name,
        "renamed"
    );

    // Re-adding a member is not an error and keeps one item per member.
    store
        .add_members(&alice, group_id, &members(&["carol", "alice"]))
        .await
        .unwrap();
    assert_eq!(
        store.group_members(group_id).await.unwrap(),
        ["alice", "bob", "carol"]
    );

    // Removing a non-member is harmless.
    store
        .remove_members(&alice, group_id, &members(&["bob", "zed"]))
        .await
        .unwrap();
    assert_eq!(
        store.group_members(group_id).await.unwrap(),
        ["alice", "carol"]
    );

    store.delete_group(&alice, group_id, None).await.unwrap();
    assert_eq!(store.group_meta(group_id).await.unwrap(), None);
    assert_eq!(items_of_group(&store, group_id).await, 0);
    for result in [
        store.rename_simple(&alice, group_id, "x").await,
        store.add_members(&alice, group_id, &members(&["x"])).await,
        store
            .remove_members(&alice, group_id, &members(&["carol"]))
            .await,
        store.delete_group(&alice, group_id, None).await,
    ] {
        assert!(matches!(result, Err(StoreError::NotFound)), "{result:?}");
    }
    // Nothing was written by the refused add.
    assert_eq!(items_of_group(&store, group_id).await, 0);

    // Ids are never reused.
    let next = store
        .create_group_simple(&alice, "again", &MemberList::default())
        .await
        .unwrap();
    assert_eq!(next.group_id, 2);
}

#[tokio::test]
async fn roles_are_conditions_of_the_writes() {
    let store = fresh_store("store-roles").await;
    let (owner, admin, member, outsider) = (
        caller("owner"),
        caller("gadmin"),
        caller("member"),
        caller("outsider"),
    );
    let other_app = Caller {
        app_id: "other".into(),
        ..caller("owner")
    };
    let g = store
        .create_group_simple(&owner, "g", &members(&["gadmin", "member"]))
        .await
        .unwrap()
        .group_id;
    store
        .set_admins(&owner, g, &members(&["gadmin"]), Some(100))
        .await
        .unwrap();
    assert_eq!(
        store.group_meta(g).await.unwrap().unwrap().admins,
        BTreeSet::from(["gadmin".to_owned()])
    );

    let denied = |r: Result<(), StoreError>| matches!(r, Err(StoreError::Forbidden));
    let hidden = |r: Result<(), StoreError>| matches!(r, Err(StoreError::NotFound));
    // Rename: owner or group admin; a member is refused; an outsider or another app sees nothing.
    assert!(denied(store.rename_simple(&member, g, "x").await));
    assert!(hidden(store.rename_simple(&outsider, g, "x").await));
    assert!(hidden(store.rename_simple(&other_app, g, "x").await));
    store.rename_simple(&admin, g, "by admin").await.unwrap();
    // Only the owner grants admin.
    assert!(denied(
        store
            .set_admins(&admin, g, &members(&["member"]), Some(100))
            .await
    ));
    assert!(matches!(
        store.set_admins(&owner, g, &members(&["outsider"]), Some(100)).await,
        Err(StoreError::NotMembers(ids)) if ids == ["outsider"]
    ));
    // Any member adds; an outsider cannot.
    store
        .add_members(&member, g, &members(&["new1"]))
        .await
        .unwrap();
    assert!(hidden(
        store.add_members(&outsider, g, &members(&["new2"])).await
    ));
    // Removing others: owner or admin, never the owner; anyone may leave, except the owner.
    assert!(denied(
        store.remove_members(&member, g, &members(&["new1"])).await
    ));
    assert!(denied(
        store.remove_members(&admin, g, &members(&["owner"])).await
    ));
    assert!(denied(
        store.remove_members(&owner, g, &members(&["owner"])).await
    ));
    store
        .remove_members(&admin, g, &members(&["new1"]))
        .await
        .unwrap();
    store
        .remove_members(&member, g, &members(&["member"]))
        .await
        .unwrap();
    assert!(
        hidden(
            store
                .remove_members(&member, g, &members(&["member"]))
                .await
        ),
        "left already"
    );
    // An admin who leaves stops being an admin.
    store
        .remove_members(&admin, g, &members(&["gadmin"]))
        .await
        .unwrap();
    assert!(store
        .group_meta(g)
        .await
        .unwrap()
        .unwrap()
        .admins
        .is_empty());
    assert_eq!(store.group_members(g).await.unwrap(), ["owner"]);
    // Delete: the owner (or the app's backend) only.
    store
        .add_members(&owner, g, &members(&["m2"]))
        .await
        .unwrap();
    assert!(denied(store.delete_group(&caller("m2"), g, None).await));
    store.delete_group(&app_admin(), g, None).await.unwrap();
    assert_eq!(items_of_group(&store, g).await, 0);
}

#[tokio::test]
async fn standing_for_signature_checks() {
    let store = fresh_store("store-standing").await;
    let owner = caller("owner");
    let g = store
        .create_group_simple(&owner, "g", &members(&["adm", "mem"]))
        .await
        .unwrap()
        .group_id;
    store
        .set_admins(&owner, g, &members(&["adm"]), Some(100))
        .await
        .unwrap();
    let st = |member, owner, admin| {
        GroupStatus::Live(Standing {
            member,
            owner,
            admin,
            owner_id: "owner".into(),
            named_members: Default::default(),
        })
    };
    assert_eq!(
        store.standing("app", g, "owner", &[]).await.unwrap(),
        st(true, true, false)
    );
    assert_eq!(
        store.standing("app", g, "adm", &[]).await.unwrap(),
        st(true, false, true)
    );
    assert_eq!(
        store.standing("app", g, "mem", &[]).await.unwrap(),
        st(true, false, false)
    );
    assert_eq!(
        store.standing("app", g, "nobody", &[]).await.unwrap(),
        st(false, false, false)
    );
    // Which of the named ids the group holds, for invite and kick signatures.
    let GroupStatus::Live(named) = store
        .standing("app", g, "adm", &["mem", "nobody", "owner", "adm"])
        .await
        .unwrap()
    else {
        panic!("a live group")
    };
    assert_eq!(
        named.named_members,
        ["adm", "mem", "owner"].map(String::from).into()
    );
    assert_eq!(
        store.standing("other-app", g, "owner", &[]).await.unwrap(),
        GroupStatus::Absent
    );
    assert_eq!(
        store.standing("app", g + 1000, "owner", &[]).await.unwrap(),
        GroupStatus::Absent
    );
}

#[tokio::test]
async fn unknown_groups_are_not_found_and_untouched() {
    let store = fresh_store("store-unknown").await;
    let nf = |r: Result<(), StoreError>| matches!(r, Err(StoreError::NotFound));
    for who in [caller("a"), app_admin()] {
        assert!(nf(store.add_members(&who, 42, &members(&["a"])).await));
        assert!(nf(store.remove_members(&who, 42, &members(&["a"])).await));
        assert!(nf(store.rename_simple(&who, 42, "n").await));
        assert!(nf(store.delete_group(&who, 42, None).await));
        assert!(nf(store
            .set_admins(&who, 42, &members(&["a"]), Some(100))
            .await));
    }
    assert_eq!(items_of_group(&store, 42).await, 0);
}
#[tokio::test]
async fn delete_removes_every_member_item_of_a_large_group() {
    let store = fresh_store("store-large").await;
    let owner = caller("owner");
    let group = store
        .create_group_simple(&owner, "big", &list(&names("m", 96)))
        .await
        .unwrap()
        .group_id;
    store
        .add_members(&owner, group, &list(&names("n", 96)))
        .await
        .unwrap();
    assert_eq!(store.group_members(group).await.unwrap().len(), 193);
    assert_eq!(items_of_group(&store, group).await, 194);
    store.delete_group(&owner, group, None).await.unwrap();
    assert_eq!(items_of_group(&store, group).await, 0);
}
#[tokio::test]
async fn a_delete_interrupted_half_way_is_finished_by_its_owner_or_the_backend_only() {
    let store = fresh_store("store-resume").await;
    let owner = caller("owner");
    let group = store
        .create_group_simple(&owner, "g", &list(&names("m", 30)))
        .await
        .unwrap()
        .group_id;
    // What a crash right after step 1 of delete_group leaves behind.
    mark_deleting(&store, group).await;
    // Already gone for every reader and writer...
    assert!(!store.group_meta(group).await.unwrap().unwrap().live);
    // ...though its conversation is not free yet: signatures on it are refused.
    assert_eq!(
        store.standing("app", group, "owner", &[]).await.unwrap(),
        GroupStatus::Deleting
    );
    let add = store.add_members(&owner, group, &members(&["x"])).await;
    assert!(matches!(add, Err(StoreError::NotFound)));
    // A member's delete finishes nothing (404: for it the group is gone)...
    let delete = store.delete_group(&caller("m001"), group, None).await;
    assert!(matches!(delete, Err(StoreError::NotFound)));
    assert_eq!(items_of_group(&store, group).await, 32);
    // ...the app's backend's does (404 too: it had already been deleted).
    let finish = store.delete_group(&app_admin(), group, None).await;
    assert!(matches!(finish, Err(StoreError::NotFound)));
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
                    .create_group_simple(&caller("a"), &format!("g{i}"), &members(&["b"]))
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
    let group = store
        .create_group_simple(&caller("owner"), "race", &list(&leaving))
        .await
        .unwrap()
        .group_id;

    // 96 requests at once on one group: each adds or removes one distinct member, and
    // every add is sent three times (same member) to race against itself. Half of the
    // leavers leave by themselves, the owner removes the other half.
    let mut tasks = Vec::new();
    for id in &joining {
        for _ in 0..3 {
            let (store, id) = (store.clone(), id.clone());
            tasks.push(tokio::spawn(async move {
                store
                    .add_members(&caller("owner"), group, &members(&[&id]))
                    .await
            }));
        }
    }
    for (i, id) in leaving.iter().enumerate() {
        let (store, id) = (store.clone(), id.clone());
        let who = if i % 2 == 0 {
            caller(&id)
        } else {
            caller("owner")
        };
        tasks.push(tokio::spawn(async move {
            store.remove_members(&who, group, &members(&[&id])).await
        }));
    }
    assert!(tasks.len() >= 20);
    for t in tasks {
        t.await.unwrap().expect("every concurrent write succeeds");
    }
    let expected: BTreeSet<String> = joining
        .iter()
        .cloned()
        .chain(["owner".to_owned()])
        .collect();
    let actual: BTreeSet<String> = store
        .group_members(group)
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(actual, expected);
}
#[tokio::test]
async fn token_keys_add_list_retire() {
    let store = fresh_store("store-tokens").await;
    let secret = Secret::new(test_token_secret());
    assert!(matches!(
        store.create_token_key("k1", "no-app", &secret).await,
        Err(StoreError::NotFound)
    ));
    store
        .create_app("app", &Secret::new(test_key()))
        .await
        .unwrap();
    store.create_token_key("k1", "app", &secret).await.unwrap();
    store.create_token_key("k2", "app", &secret).await.unwrap();
    assert!(matches!(
        store.create_token_key("k1", "app", &secret).await,
        Err(StoreError::AlreadyExists)
    ));
    assert_eq!(store.token_key("k1").await.unwrap().unwrap().secret, secret);
    store.retire_token_key("k1").await.unwrap();
    assert!(
        store.token_key("k1").await.unwrap().is_none(),
        "retired keys verify nothing"
    );
    assert!(
        store.token_key("k2").await.unwrap().is_some(),
        "others stay active"
    );
    assert!(
        matches!(
            store.create_token_key("k1", "app", &secret).await,
            Err(StoreError::AlreadyExists)
        ),
        "never reused"
    );
    assert!(matches!(
        store.retire_token_key("nope").await,
        Err(StoreError::NotFound)
    ));
    let listed = store.list_token_keys().await.unwrap();
    assert_eq!(
        listed,
        [
            ("k1".to_owned(), "app".to_owned(), "retired".to_owned()),
            ("k2".to_owned(), "app".to_owned(), "active".to_owned())
        ]
    );
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
    assert_eq!(master(&store, "app-a").await, Some(k1.clone()));
    store.rotate_app("app-a", &k2).await.unwrap();
    assert_eq!(master(&store, "app-a").await, Some(k2));
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

/// The real store, counting the key reads that reach DynamoDB.
struct Counting {
    inner: DynamoStore,
    reads: AtomicUsize,
}

#[async_trait]
impl KeyStore for Counting {
    async fn master_key(&self, app_id: &str) -> Result<Option<AppKey>, StoreError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.inner.master_key(app_id).await
    }
    async fn token_key(&self, kid: &str) -> Result<Option<TokenKey>, StoreError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.inner.token_key(kid).await
    }
    async fn reserved_ids(
        &self,
        app_id: &str,
    ) -> Result<im_shared::model::ReservedIds, StoreError> {
        self.inner.reserved_ids(app_id).await
    }
    async fn tencent_key(&self, app_id: &str) -> Result<Option<TencentKey>, StoreError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.inner.tencent_key(app_id).await
    }
}

#[tokio::test]
async fn a_warm_function_reads_each_key_once_per_ttl() {
    let inner = fresh_store("store-cache").await;
    let key = Secret::new(test_key());
    inner.create_app("cached-app", &key).await.unwrap();
    inner
        .create_token_key(
            "cached-kid",
            "cached-app",
            &Secret::new(test_token_secret()),
        )
        .await
        .unwrap();
    let counting = Arc::new(Counting {
        inner,
        reads: AtomicUsize::new(0),
    });
    let keys = Keys::new(counting.clone(), Duration::from_secs(1));

    for _ in 0..5 {
        assert_eq!(
            keys.master_key("cached-app")
                .await
                .unwrap()
                .map(|k| k.master),
            Some(key.clone())
        );
        assert!(keys.master_key("missing-app").await.unwrap().is_none());
        let token_key = keys.token_key("cached-kid").await.unwrap().unwrap();
        assert_eq!(token_key.app_id, "cached-app");
        assert!(keys.token_key("missing-kid").await.unwrap().is_none());
    }
    assert_eq!(counting.reads.load(Ordering::SeqCst), 4, "one read per id");

    tokio::time::sleep(Duration::from_millis(1200)).await;
    keys.master_key("cached-app").await.unwrap();
    assert_eq!(
        counting.reads.load(Ordering::SeqCst),
        5,
        "re-read after the TTL"
    );
}
#[tokio::test]
async fn member_items_carry_the_client_index_keys() {
    let store = fresh_store("store-gsi").await;
    let group = store
        .create_group_simple(&caller("zoe"), "g", &MemberList::default())
        .await
        .unwrap()
        .group_id;
    let out = store
        .client()
        .query()
        .table_name(store.table())
        .index_name("gsi1")
        .key_condition_expression("gsi1pk = :c")
        .expression_attribute_values(":c", AttributeValue::S("CLIENT#app:zoe".into()))
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

#[tokio::test]
async fn the_member_limit_holds_under_concurrent_adds() {
    let store = Arc::new(fresh_store("store-limit").await);
    let owner = caller("owner");
    let spec = GroupSpec {
        name: "small".into(),
        members: members(&["a", "b"]),
        max_members: 10,
        ..GroupSpec::default()
    };
    let g = store
        .create_group(&owner, &spec, None)
        .await
        .unwrap()
        .group
        .group_id;
    assert_eq!(store.group_for(&owner, g).await.unwrap().member_count, 3);
    // 30 requests at once, each adding one new member: exactly 7 fit.
    let tasks: Vec<_> = (0..30)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .add_members(&caller("owner"), g, &members(&[&format!("n{i:02}")]))
                    .await
            })
        })
        .collect();
    let (mut added, mut full) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            Ok(()) => added += 1,
            Err(StoreError::Full {
                max: 10, adding: 1, ..
            }) => full += 1,
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!((added, full), (7, 23));
    let meta = store.group_for(&owner, g).await.unwrap();
    assert_eq!(meta.member_count, 10);
    assert_eq!(
        store.group_members(g).await.unwrap().len(),
        10,
        "count and items agree"
    );
    // A request that would overflow adds nobody, even the part that would fit.
    let two = members(&["x1", "x2"]);
    store
        .remove_members(&owner, g, &members(&["a"]))
        .await
        .unwrap();
    assert!(matches!(
        store.add_members(&owner, g, &two).await,
        Err(StoreError::Full { count: 9, .. })
    ));
    assert_eq!(store.group_for(&owner, g).await.unwrap().member_count, 9);
    // Re-adding members is free and does not count twice.
    store
        .add_members(&owner, g, &members(&["b", "owner"]))
        .await
        .unwrap();
    assert_eq!(store.group_for(&owner, g).await.unwrap().member_count, 9);
}

#[tokio::test]
async fn members_and_a_clients_groups_page_by_page() {
    let store = fresh_store("store-pages").await;
    let owner = caller("owner");
    let g = store
        .create_group_simple(&owner, "g", &members(&["m1", "m2", "m3", "m4"]))
        .await
        .unwrap()
        .group_id;
    store
        .set_admins(&owner, g, &members(&["m2"]), Some(100))
        .await
        .unwrap();
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let (meta, page) = store
            .members_page(&caller("m1"), g, 2, after.as_deref())
            .await
            .unwrap();
        assert!(page.items.len() <= 2);
        for (id, joined) in &page.items {
            assert!(!joined.is_empty());
            seen.push((id.clone(), meta.role_of(id)));
        }
        match page.next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    assert_eq!(
        seen,
        [
            ("m1".into(), "member"),
            ("m2".into(), "admin"),
            ("m3".into(), "member"),
            ("m4".into(), "member"),
            ("owner".into(), "owner")
        ]
        .map(|(a, b): (String, &str)| (a, b))
    );
    assert!(matches!(
        store.members_page(&caller("outsider"), g, 2, None).await,
        Err(StoreError::NotFound)
    ));

    // m1's groups: three, one deleted afterwards.
    let g2 = store
        .create_group_simple(&caller("m1"), "mine", &MemberList::default())
        .await
        .unwrap()
        .group_id;
    let g3 = store
        .create_group_simple(&owner, "third", &members(&["m1"]))
        .await
        .unwrap()
        .group_id;
    store.delete_group(&owner, g3, None).await.unwrap();
    let mut ids = Vec::new();
    let mut after = None;
    for _ in 0..10 {
        let page = store
            .client_groups(&caller("m1"), "m1", 1, after)
            .await
            .unwrap();
        ids.extend(page.items.iter().map(|m| (m.group_id, m.role_of("m1"))));
        after = page.next;
        if after.is_none() {
            break;
        }
    }
    assert_eq!(ids, [(g, "member"), (g2, "owner")]);
    // Another app's client of the same name is in none of them.
    let other = Caller {
        app_id: "other".into(),
        ..caller("m1")
    };
    assert!(store
        .client_groups(&other, "m1", 10, None)
        .await
        .unwrap()
        .items
        .is_empty());
}

/// The group item's `places_left`, as stored.
async fn places_left(store: &DynamoStore, group_id: u64) -> Option<u64> {
    let out = store
        .client()
        .get_item()
        .table_name(store.table())
        .key("pk", AttributeValue::S(format!("GROUP#{group_id}")))
        .key("sk", AttributeValue::S("META".into()))
        .consistent_read(true)
        .send()
        .await
        .unwrap();
    out.item()?.get("places_left")?.as_n().ok()?.parse().ok()
}

#[tokio::test]
async fn places_left_follow_every_change() {
    let store = fresh_store("store-free").await;
    let owner = caller("owner");
    let spec = GroupSpec {
        name: "five".into(),
        members: members(&["a"]),
        max_members: 5,
        ..GroupSpec::default()
    };
    let g = store
        .create_group(&owner, &spec, None)
        .await
        .unwrap()
        .group
        .group_id;
    assert_eq!(places_left(&store, g).await, Some(3));

    // In step with the count: an add and a removal, an add with one already a member, a
    // removal with one who is not, a leave.
    store
        .add_members(&owner, g, &members(&["b"]))
        .await
        .unwrap();
    assert_eq!(places_left(&store, g).await, Some(2));
    store
        .remove_members(&owner, g, &members(&["a"]))
        .await
        .unwrap();
    assert_eq!(places_left(&store, g).await, Some(3));
    store
        .add_members(&owner, g, &members(&["b", "c", "d"]))
        .await
        .unwrap();
    assert_eq!(places_left(&store, g).await, Some(1));
    store
        .remove_members(&owner, g, &members(&["d", "zed"]))
        .await
        .unwrap();
    assert_eq!(places_left(&store, g).await, Some(2));
    store
        .remove_members(&caller("c"), g, &members(&["c"]))
        .await
        .unwrap();
    assert_eq!(places_left(&store, g).await, Some(3));
    let meta = store.group_for(&owner, g).await.unwrap();
    assert_eq!((meta.member_count, meta.max_members), (2, 5));

    // Full, reported exactly: 2 members, 4 more do not fit in 5; 3 do.
    assert!(matches!(
        store
            .add_members(&owner, g, &members(&["p", "q", "r", "s"]))
            .await,
        Err(StoreError::Full {
            count: 2,
            max: 5,
            adding: 4
        })
    ));
    store
        .add_members(&owner, g, &members(&["p", "q", "r"]))
        .await
        .unwrap();
    assert_eq!(places_left(&store, g).await, Some(0));
    assert!(matches!(
        store.add_members(&owner, g, &members(&["t"])).await,
        Err(StoreError::Full {
            count: 5,
            max: 5,
            adding: 1
        })
    ));
}

#[tokio::test]
async fn the_caches_hold_a_bounded_number_of_ids() {
    let store = Arc::new(fresh_store("store-bounds").await);
    let keys = Keys::with_capacity(store.clone(), Duration::from_secs(60), 20);
    let links = Links::with_capacity(store.clone(), Duration::from_secs(60), 20);
    for i in 0..200 {
        assert!(keys.token_key(&format!("kid-{i}")).await.unwrap().is_none());
        assert!(keys
            .master_key(&format!("app-{i}"))
            .await
            .unwrap()
            .is_none());
        assert!(links
            .conversation_group("app", &format!("conv-{i}"))
            .await
            .unwrap()
            .is_none());
    }
    let (masters, tokens) = keys.held();
    assert!(
        masters <= 20 && tokens <= 20,
        "{masters} master keys, {tokens} token keys"
    );
    assert!(links.held() <= 20, "{} links", links.held());
    assert!(links.held() > 0, "the link cache holds nothing");
}

/// A group's hold (the mirror's record that its later records wait for): the earliest
/// stopped record holds, never one the cursor already passed; the save that passes it
/// lifts it; a reconcile's clear lifts it too.
#[tokio::test]
async fn a_sync_hold_keeps_the_earliest_record_until_the_cursor_passes_it() {
    use im_shared::model::SyncStatus;
    use im_shared::store::dynamo::padded_sequence;
    let store = fresh_store("sync-hold").await;
    let group = 42;
    let held = |c: Option<im_shared::store::dynamo::SyncCursor>| {
        c.and_then(|c| c.held)
            .map(|h| (h.seq.trim_start_matches('0').to_owned(), h.why))
    };
    // Nothing applied yet: a stop at 500 holds the group.
    store
        .hold_sync(group, CloudId::LeanCloud, "500", "a 503")
        .await
        .unwrap();
    let cursor = store
        .sync_cursor(group, CloudId::LeanCloud)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cursor.seq, "", "no record applied");
    assert_eq!(cursor.report.status, SyncStatus::Ok);
    assert_eq!(held(Some(cursor)), Some(("500".into(), "a 503".into())));
    // A later record stopping (behind it) does not move the hold; an earlier one does.
    store
        .hold_sync(group, CloudId::LeanCloud, "700", "later")
        .await
        .unwrap();
    assert_eq!(
        held(store.sync_cursor(group, CloudId::LeanCloud).await.unwrap()),
        Some(("500".into(), "a 503".into()))
    );
    store
        .hold_sync(group, CloudId::LeanCloud, "400", "earlier")
        .await
        .unwrap();
    assert_eq!(
        held(store.sync_cursor(group, CloudId::LeanCloud).await.unwrap()),
        Some(("400".into(), "earlier".into()))
    );
    // Applying up to 399 keeps it; reaching it lifts it.
    store
        .save_sync(group, CloudId::LeanCloud, "399", &SyncSave::OK)
        .await
        .unwrap();
    assert!(held(store.sync_cursor(group, CloudId::LeanCloud).await.unwrap()).is_some());
    store
        .save_sync(
            group,
            CloudId::LeanCloud,
            "400",
            &SyncSave {
                release: true,
                ..SyncSave::OK
            },
        )
        .await
        .unwrap();
    let cursor = store
        .sync_cursor(group, CloudId::LeanCloud)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cursor.seq.trim_start_matches('0'), "400");
    assert_eq!(cursor.held, None);
    // A stop at a record the cursor covers (a slower, concurrent try) holds nothing.
    store
        .hold_sync(group, CloudId::LeanCloud, "350", "stale")
        .await
        .unwrap();
    assert_eq!(
        held(store.sync_cursor(group, CloudId::LeanCloud).await.unwrap()),
        None
    );
    // A reconcile's clear lifts a hold, and stands in for its record: the cursor moves
    // to it, so a later redrive of it is skipped.
    store
        .hold_sync(group, CloudId::LeanCloud, "800", "a 500")
        .await
        .unwrap();
    let hold = store
        .sync_cursor(group, CloudId::LeanCloud)
        .await
        .unwrap()
        .unwrap()
        .held
        .unwrap();
    store
        .clear_sync_failure(group, CloudId::LeanCloud, Some(&hold.seq))
        .await
        .unwrap();
    let cursor = store
        .sync_cursor(group, CloudId::LeanCloud)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (cursor.held, cursor.seq.trim_start_matches('0')),
        (None, "800")
    );
    // Without a hold (or with one applied meanwhile), only the state is cleared.
    store
        .clear_sync_failure(group, CloudId::LeanCloud, Some(&padded_sequence("700")))
        .await
        .unwrap();
    store
        .clear_sync_failure(group, CloudId::LeanCloud, None)
        .await
        .unwrap();
    let cursor = store
        .sync_cursor(group, CloudId::LeanCloud)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            cursor.held,
            cursor.seq.trim_start_matches('0'),
            cursor.report.status
        ),
        (None, "800", SyncStatus::Ok)
    );
}
