//! Groups mirrored into the app's IM cloud, end to end: HTTP writes on the local server,
//! DynamoDB Local's stream, the local server's poller, the same handler the
//! `sync-conversations` function runs, and a stand-in of the vendor's REST API
//! (`im_e2e::im_cloud`) that holds conversations and can fail on purpose.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use futures::future::join_all;
use im_e2e::http::{Api, BACKEND};
use im_e2e::im_cloud::{Conversation, FaultKind, ImCloudStandIn};
use im_e2e::repo::{read_json, repo_root};
use im_e2e::sqs::SqsStandIn;
use im_e2e::stack::{admin_command, change_group_item, env, fresh_store, test_key};
use im_shared::model::{CloudId, ImCloud, OnDelete, Secret};
use im_shared::store::dynamo::padded_sequence;
use im_shared::store::ConversationStore;
use im_sync::vendor::{RetryPolicy, Vendor};
use im_sync::{StreamEvent, StreamRecord, Syncer};
use reqwest::Method;
use serde_json::{json, Value};

/// The client id the apps of these tests send system messages as.
const SYSTEM: &str = "imsystem";

/// An app on the local server whose groups are mirrored into its own stand-in.
pub(crate) struct Mirrored {
    pub(crate) api: Api,
    pub(crate) cloud: ImCloudStandIn,
}

pub(crate) async fn mirrored(prefix: &str, system_messages: bool, on_delete: OnDelete) -> Mirrored {
    let api = Api::local(prefix).await;
    let cloud = ImCloudStandIn::start(&api.app.app_id, &api.app.master_key).await;
    // Slow answers come later than the local server's attempt time-out (scripts/test.sh).
    cloud.set_slow_delay(Duration::from_millis(1500));
    let settings = ImCloud::new(
        cloud.url(),
        true,
        system_messages,
        Some(SYSTEM.to_owned()),
        on_delete,
    )
    .unwrap();
    api.store
        .set_im_cloud(&api.app.app_id, &settings)
        .await
        .unwrap();
    Mirrored { api, cloud }
}

/// Runs an `im-admin` command off the test's thread, so that the stand-in it talks to
/// (served on that thread) goes on answering.
pub(crate) async fn run(mut command: std::process::Command) -> std::process::Output {
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

/// [`run`]: whether the command succeeded, and all it printed.
pub(crate) async fn run_printed(command: std::process::Command) -> (bool, String) {
    let out = run(command).await;
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), printed)
}

/// Waits (up to two minutes: the stream is shared by every test, and a poisoned record
/// holds it while it is retried) until `done` holds.
pub(crate) async fn eventually<F, Fut>(what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !done().await {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

impl Mirrored {
    pub(crate) async fn create(&self, owner: &str, name: &str, members: &str) -> u64 {
        self.api
            .create(
                owner,
                json!({"group_name": name, "member_client_ids": members}),
            )
            .await
    }

    pub(crate) async fn add(&self, by: &str, id: u64, members: &str) {
        let resp = self
            .api
            .send(
                by,
                Method::POST,
                format!("/im/group/{id}/member"),
                Some(json!({ "member_client_ids": members })),
            )
            .await;
        assert_eq!(resp.status(), 201);
    }

    async fn remove(&self, by: &str, id: u64, members: &str) {
        let resp = self
            .api
            .send(
                by,
                Method::DELETE,
                format!("/im/group/{id}/member?member_client_ids={members}"),
                None,
            )
            .await;
        assert_eq!(resp.status(), 204);
    }

    pub(crate) async fn rename(&self, by: &str, id: u64, name: &str) {
        let resp = self
            .api
            .send(
                by,
                Method::PUT,
                format!("/im/group/{id}"),
                Some(json!({ "group_name": name })),
            )
            .await;
        assert_eq!(resp.status(), 200);
    }

    pub(crate) async fn group(&self, client: &str, id: u64) -> Value {
        let resp = self.api.get(client, format!("/im/group/{id}")).await;
        assert_eq!(resp.status(), 200);
        resp.json().await.unwrap()
    }

    pub(crate) async fn members(&self, id: u64) -> BTreeSet<String> {
        self.api
            .store
            .group_members(id)
            .await
            .unwrap()
            .into_iter()
            .collect()
    }

    /// The group's one conversation, when the group names it and its members are the
    /// group's; `None` otherwise (not yet, or never).
    pub(crate) async fn in_step(&self, id: u64) -> Option<Conversation> {
        let meta = self.api.store.group_meta(id).await.unwrap()?;
        let linked = meta.conversation_id?;
        let conversation = self.cloud.conversation(&linked)?;
        let members = self.members(id).await;
        (conversation.members == members).then_some(conversation)
    }

    pub(crate) async fn wait_in_step(&self, id: u64) -> Conversation {
        eventually(
            &format!("group {id} and its conversation agree"),
            || async { self.in_step(id).await.is_some() },
        )
        .await;
        self.in_step(id).await.unwrap()
    }

    /// The system messages' attributes in conversation `c`, in order.
    pub(crate) fn events(&self, c: &str) -> Vec<Value> {
        self.cloud
            .messages(c)
            .into_iter()
            .map(|m| {
                assert_eq!(m.from_client, SYSTEM);
                assert_eq!(m.message["_lctype"], -1);
                m.message["_lcattrs"].clone()
            })
            .collect()
    }
}

#[tokio::test]
async fn a_group_and_every_change_to_it_reach_its_conversation() {
    let m = mirrored("mirror-life", true, OnDelete::Keep).await;
    let id = m.create("alice", "crew", "bob:carol").await;
    let c = m.wait_in_step(id).await;
    assert_eq!(c.name.as_deref(), Some("crew"));
    assert_eq!(c.attr["type"], "group");
    assert_eq!(c.attr["group_id"], id);
    // The marker the service wrote before the create: 128 random bits, in hex.
    let marker = c.attr["mirror_marker"].as_str().unwrap();
    assert!(marker.len() == 32 && marker.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(m.cloud.conversations_for_group(id).len(), 1);
    // The owner sees the link and the sync state; a member sees the link only.
    let seen = m.group("alice", id).await;
    assert_eq!(seen["conversation_id"], c.id.as_str());
    assert_eq!(seen["sync"]["status"], "ok");
    assert!(m.group("bob", id).await.get("sync").is_none());

    m.add("alice", id, "dave").await;
    m.remove("alice", id, "carol").await;
    m.remove("bob", id, "bob").await;
    m.rename("alice", id, "crew2").await;
    let resp = m
        .api
        .send(
            "alice",
            Method::POST,
            format!("/im/group/{id}/owner"),
            Some(json!({"client_id": "dave"})),
        )
        .await;
    assert_eq!(resp.status(), 200);
    eventually("every change reached the conversation", || async {
        m.events(&c.id).len() == 6
    })
    .await;
    let c = m.wait_in_step(id).await;
    assert_eq!(
        c.members,
        BTreeSet::from(["alice".to_owned(), "dave".to_owned()])
    );
    assert_eq!(c.name.as_deref(), Some("crew2"));
    let g = json!(id);
    assert_eq!(
        m.events(&c.id),
        [
            json!({"event": "created", "group_id": g, "members": ["alice", "bob", "carol"], "by": "alice"}),
            json!({"event": "members_added", "group_id": g, "members": ["dave"], "by": "alice"}),
            json!({"event": "members_removed", "group_id": g, "members": ["carol"], "by": "alice"}),
            json!({"event": "member_left", "group_id": g, "members": ["bob"], "by": "bob"}),
            json!({"event": "renamed", "group_id": g, "members": [], "by": "alice"}),
            json!({"event": "owner_changed", "group_id": g, "members": ["dave"], "by": "alice"}),
        ]
    );

    // keep (the default): the conversation and its history stay; its members hear why.
    let resp = m
        .api
        .send("dave", Method::DELETE, format!("/im/group/{id}"), None)
        .await;
    assert_eq!(resp.status(), 204);
    eventually("the dismissal reached the conversation", || async {
        m.events(&c.id).len() == 7
    })
    .await;
    assert_eq!(m.events(&c.id)[6]["event"], "dismissed");
    assert_eq!(m.events(&c.id)[6]["by"], "dave");
    let kept = m.cloud.conversation(&c.id).expect("kept");
    assert_eq!(kept.members, c.members);
    assert!(m.cloud.deleted_conversations().is_empty());
}

#[tokio::test]
async fn on_delete_delete_removes_the_conversation() {
    let m = mirrored("mirror-del", false, OnDelete::Delete).await;
    let id = m.create("alice", "short-lived", "bob").await;
    let c = m.wait_in_step(id).await;
    let resp = m
        .api
        .send("alice", Method::DELETE, format!("/im/group/{id}"), None)
        .await;
    assert_eq!(resp.status(), 204);
    eventually("the conversation is deleted", || async {
        m.cloud.conversation(&c.id).is_none()
    })
    .await;
    assert_eq!(m.cloud.deleted_conversations().len(), 1);
    // System messages off: none was sent.
    assert!(m.cloud.messages(&c.id).is_empty());
}

#[tokio::test]
async fn a_linked_conversation_gets_the_groups_members_and_follows_a_moved_link() {
    let m = mirrored("mirror-link", false, OnDelete::Keep).await;
    let existing = m
        .cloud
        .create_conversation_directly("made elsewhere", &["zed"], Value::Null);
    let id = m
        .api
        .create(
            BACKEND,
            json!({"group_name": "linked", "member_client_ids": "alice:bob", "conversation_id": existing}),
        )
        .await;
    eventually(
        "the linked conversation has the group's members",
        || async {
            m.cloud.conversation(&existing).is_some_and(|c| {
                ["alice", "bob", BACKEND]
                    .iter()
                    .all(|x| c.members.contains(*x))
            })
        },
    )
    .await;
    // Linked: no conversation was made for it.
    assert!(m.cloud.conversations_for_group(id).is_empty());
    let other = m
        .cloud
        .create_conversation_directly("another", &[], Value::Null);
    assert_eq!(m.api.link(BACKEND, id, &other).await, 200);
    let members = m.members(id).await;
    eventually("the new link has every member", || async {
        m.cloud
            .conversation(&other)
            .is_some_and(|c| c.members == members)
    })
    .await;
}

#[tokio::test]
async fn an_app_without_mirroring_gets_no_conversation() {
    let api = Api::local("mirror-off").await;
    let id = api
        .create(
            "alice",
            json!({"group_name": "plain", "member_client_ids": "bob"}),
        )
        .await;
    // Give the poller time to see it (it would link a conversation within ~1 s).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let g: Value = api
        .get("alice", format!("/im/group/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(g["conversation_id"], Value::Null);
    assert!(g.get("sync").is_none());
}

#[tokio::test]
async fn fifty_concurrent_writes_converge_while_a_third_of_the_answers_fail() {
    let m = mirrored("mirror-chaos", true, OnDelete::Keep).await;
    let mut groups = Vec::new();
    for g in 0..5 {
        let members: Vec<String> = (0..6).map(|i| format!("g{g}m{i}")).collect();
        groups.push(
            m.create("owner", &format!("chaos{g}"), &members.join(":"))
                .await,
        );
    }
    // Each has its conversation before the storm (so the one deleted in it must keep
    // exactly that one).
    for id in &groups {
        m.wait_in_step(*id).await;
    }
    m.cloud.set_fault_kinds(&FaultKind::ALL);
    m.cloud.set_failure_rate(0.3);
    let writes = (0..50).map(|i| {
        let m = &m;
        let id = groups[i % 5];
        let g = i % 5;
        async move {
            let status = match i / 5 {
                0 | 1 => {
                    let who = format!("g{g}new{i}");
                    m.api
                        .send("owner", Method::POST, format!("/im/group/{id}/member"), Some(json!({"member_client_ids": who})))
                        .await
                        .status()
                }
                2 | 3 => {
                    let who = format!("g{g}m{}", i / 5 - 2);
                    m.api
                        .send("owner", Method::DELETE, format!("/im/group/{id}/member?member_client_ids={who}"), None)
                        .await
                        .status()
                }
                4 => {
                    let who = format!("g{g}m5");
                    m.api
                        .send(&who, Method::DELETE, format!("/im/group/{id}/member?member_client_ids={who}"), None)
                        .await
                        .status()
                }
                5 | 6 => m
                    .api
                    .send("owner", Method::PUT, format!("/im/group/{id}"), Some(json!({"group_name": format!("chaos{g}-{i}")})))
                    .await
                    .status(),
                7 | 8 => m
                    .api
                    .send("owner", Method::POST, "/im/group", Some(json!({"group_name": format!("new{i}"), "member_client_ids": format!("n{i}a:n{i}b")})))
                    .await
                    .status(),
                _ if g == 0 => m
                    .api
                    .send("owner", Method::DELETE, format!("/im/group/{id}"), None)
                    .await
                    .status(),
                _ => m
                    .api
                    .send("owner", Method::POST, format!("/im/group/{id}/member"), Some(json!({"member_client_ids": format!("g{g}late")})))
                    .await
                    .status(),
            };
            // Group 0 is deleted among the writes: the others on it may come after.
            assert!(
                status.is_success() || (g == 0 && status == 404),
                "write {i}: {status}"
            );
        }
    });
    join_all(writes).await;
    let live: Vec<u64> = m.api.store.app_group_ids(&m.api.app.app_id).await.unwrap();
    assert_eq!(
        live.len(),
        5 - 1 + 10,
        "four of the five groups and ten new ones are live"
    );
    for id in &live {
        let c = m.wait_in_step(*id).await;
        assert_eq!(m.cloud.conversations_for_group(*id).len(), 1, "group {id}");
        let meta = m.api.store.group_meta(*id).await.unwrap().unwrap();
        eventually(
            &format!("group {id}'s name reached its conversation"),
            || async {
                m.cloud.conversation(&c.id).unwrap().name.as_deref()
                    == Some(meta.group_name.as_str())
            },
        )
        .await;
    }
    // The dismissed group kept its one conversation.
    assert_eq!(m.cloud.conversations_for_group(groups[0]).len(), 1);
    let failed = m
        .cloud
        .requests()
        .iter()
        .filter(|r| r.fault.is_some())
        .count();
    assert!(failed > 10, "the stand-in failed only {failed} requests");
}

impl Mirrored {
    /// Creates a group between two healthy ones whose every request to the IM cloud fails
    /// with a 500 until the faults are cleared. Returns its id and, once its first record
    /// has been dead-lettered, its lines of the local dead-letter file.
    async fn poisoned_and_dead_lettered(&self) -> (u64, String) {
        let healthy = self.create("alice", "first", "bob").await;
        self.wait_in_step(healthy).await;
        // Group ids come from one counter that other tests use too: poison a range, so
        // that whichever id the next create gets, it is poisoned before its record is read.
        let next = self
            .api
            .store
            .group_meta(healthy)
            .await
            .unwrap()
            .unwrap()
            .group_id
            + 1;
        for id in next..next + 200 {
            self.cloud.fail_always_for_group(id, 500);
        }
        let poisoned = self.create("alice", "poisoned", "bob").await;
        assert!(poisoned < next + 200, "the poisoned range was used up");
        self.cloud.fail_always_only_for_group(poisoned, 500);
        let after = self.create("carol", "after", "dave").await;
        self.wait_in_step(after).await;
        eventually("the poisoned record is dead-lettered", || async {
            !dead_letters_of(poisoned).is_empty()
        })
        .await;
        assert!(self.cloud.conversations_for_group(poisoned).is_empty());
        (poisoned, dead_letters_of(poisoned))
    }
}

#[tokio::test]
async fn a_record_that_always_fails_is_dead_lettered_and_holds_no_other_group_back() {
    let m = mirrored("mirror-poison", false, OnDelete::Keep).await;
    let (poisoned, mine) = m.poisoned_and_dead_lettered().await;
    // Sent back through by the operator once the IM cloud answers again: this group's
    // letters only (the file is shared by every test).
    m.cloud.clear_faults();
    redrive_file(&m, mine).await;
    m.wait_in_step(poisoned).await;
}

/// The lines of the local dead-letter file that carry records of group `id` (whole lines
/// only: the poller may be writing one as we read).
pub(crate) fn dead_letters_of(id: u64) -> String {
    let marker = format!("GROUP#{id}");
    std::fs::read_to_string(env("IM_TEST_SYNC_DEAD_LETTERS"))
        .unwrap_or_default()
        .split_inclusive('\n')
        .filter(|l| l.ends_with('\n') && l.contains(&marker))
        .filter(|l| serde_json::from_str::<Value>(l).is_ok())
        .collect()
}

/// `im-admin sync redrive --file` of `letters`, which must apply them all.
async fn redrive_file(m: &Mirrored, letters: String) {
    let path = std::env::temp_dir().join(format!("{}.jsonl", m.api.app.app_id));
    std::fs::write(&path, letters).unwrap();
    let mut command = admin_command();
    command
        .args([
            "--table",
            &env("IM_TEST_LOCAL_TABLE"),
            "sync",
            "redrive",
            "--file",
        ])
        .arg(&path);
    let (ok, printed) = run_printed(command).await;
    assert!(ok, "{printed}");
    std::fs::remove_file(&path).unwrap();
}

/// Once a record has run out of retries, the group's later records must not overtake it:
/// were one applied, the cursor would pass the dead-lettered record and its redrive would
/// be skipped as done (here: the create's message lost). They are held, dead-lettered
/// behind it, and one redrive applies them all in order.
#[tokio::test]
async fn a_dead_lettered_record_holds_its_groups_later_records_until_it_is_redriven() {
    let m = mirrored("mirror-hold", true, OnDelete::Keep).await;
    let (poisoned, _) = m.poisoned_and_dead_lettered().await;
    // The IM cloud answers again; the create has still not reached it.
    m.cloud.clear_faults();
    let sync = &m.group("alice", poisoned).await["sync"];
    assert_eq!(sync["status"], "held", "{sync}");
    assert!(sync["error"].as_str().unwrap().contains("500"), "{sync}");
    m.add("alice", poisoned, "carol").await;
    m.rename("alice", poisoned, "poisoned-renamed").await;
    // The rename is the group's last record: once it is dead-lettered, so is every one
    // before it (the poller keeps a shard's order).
    eventually("the rename is dead-lettered behind the create", || async {
        dead_letters_of(poisoned).contains("poisoned-renamed")
    })
    .await;
    assert!(
        m.cloud.conversations_for_group(poisoned).is_empty(),
        "a later record went first"
    );
    let letters = dead_letters_of(poisoned);
    assert!(letters.lines().count() >= 5, "{letters}");

    redrive_file(&m, letters).await;
    let c = m.wait_in_step(poisoned).await;
    assert_eq!(c.name.as_deref(), Some("poisoned-renamed"));
    assert_eq!(
        c.members,
        BTreeSet::from(["alice".to_owned(), "bob".to_owned(), "carol".to_owned()])
    );
    let g = json!(poisoned);
    assert_eq!(
        m.events(&c.id),
        [
            json!({"event": "created", "group_id": g, "members": ["alice", "bob"], "by": "alice"}),
            json!({"event": "members_added", "group_id": g, "members": ["carol"], "by": "alice"}),
            json!({"event": "renamed", "group_id": g, "members": [], "by": "alice"}),
        ]
    );
    assert_eq!(m.group("alice", poisoned).await["sync"]["status"], "ok");
}

/// The mirror's handler itself, on a table of its own, given one group's records
/// (`events/sync-conversations.json`: a create, then its two member items) in the
/// batches Lambda and a redrive can give: once the create stopped, the later records
/// wait for it even when they come without it; the create's redrive goes through, and
/// then they do. Records between the cursor and a hold go through; reaching it lifts it.
#[tokio::test]
async fn a_held_groups_later_records_wait_for_the_held_one_in_any_batch() {
    let store = fresh_store("mirror-held").await;
    let key = test_key();
    store
        .create_app("demo-app", &Secret::new(key.as_str()))
        .await
        .unwrap();
    let cloud = ImCloudStandIn::start("demo-app", &key).await;
    let settings = ImCloud::new(
        cloud.url(),
        true,
        true,
        Some(SYSTEM.to_owned()),
        OnDelete::Keep,
    )
    .unwrap();
    store.set_im_cloud("demo-app", &settings).await.unwrap();
    let event: StreamEvent = serde_json::from_value(read_json(
        &repo_root().join("events/sync-conversations.json"),
    ))
    .unwrap();
    // The items the records report, written as the create wrote them.
    for r in &event.records {
        store
            .client()
            .put_item()
            .table_name(store.table())
            .set_item(Some(r.change.new_image.clone().into()))
            .send()
            .await
            .unwrap();
    }
    let group = 1001;
    let seq = |r: &StreamRecord| r.change.sequence_number.clone().unwrap();
    let (create, members) = (event.records[0].clone(), event.records[1..].to_vec());
    // A failing call gives up within a second, not the default 20 s.
    let policy = RetryPolicy {
        attempt_timeout: Duration::from_millis(500),
        budget: Duration::from_secs(1),
        ..RetryPolicy::default()
    };
    let syncer = Syncer::new(store.clone(), Vendor::new(policy).unwrap());
    let handle = |records: Vec<StreamRecord>| {
        let syncer = &syncer;
        async move {
            let mut batch = StreamEvent::default();
            batch.records = records;
            let answer = syncer
                .handle(batch, Instant::now() + Duration::from_secs(30))
                .await;
            answer
                .batch_item_failures
                .into_iter()
                .map(|f| f.item_identifier.unwrap_or_default())
                .collect::<Vec<_>>()
        }
    };
    let held = || async {
        store
            .sync_cursor(group, CloudId::LeanCloud)
            .await
            .unwrap()
            .and_then(|c| c.held)
            .map(|h| h.seq)
    };

    // The create fails: reported, and it holds the group.
    cloud.fail_always_for_group(group, 500);
    assert_eq!(handle(event.records.clone()).await, [seq(&create)]);
    assert_eq!(held().await, Some(padded_sequence(&seq(&create))));
    // Its retries ran out and Lambda moved on: its members' records come alone, and the
    // IM cloud answers again. They wait, without a call.
    cloud.clear_faults();
    let calls = cloud.requests().len();
    assert_eq!(handle(members.clone()).await, [seq(&members[0])]);
    assert_eq!(cloud.requests().len(), calls, "a held record calls nothing");
    assert!(cloud.conversations_for_group(group).is_empty());
    // The create's redrive: the conversation, and its message.
    assert_eq!(handle(vec![create.clone()]).await, Vec::<String>::new());
    let made = cloud.conversations_for_group(group);
    assert_eq!(made.len(), 1);
    assert_eq!(cloud.messages(&made[0].id).len(), 1, "created");
    assert_eq!(held().await, None);
    // Then the members' records go through (nothing left to do for them).
    assert_eq!(handle(members.clone()).await, Vec::<String>::new());
    assert_eq!(cloud.messages(&made[0].id).len(), 1);

    // A hold ahead of the cursor, and a batch of records before it only: applied, the
    // hold kept. The records are the last member's again, at later positions.
    let last = members.last().unwrap().clone();
    let base: u128 = seq(&last).parse().unwrap();
    let at = |n: u128| {
        let mut r = last.clone();
        r.change.sequence_number = Some((base + n).to_string());
        r
    };
    store
        .hold_sync(
            group,
            CloudId::LeanCloud,
            &(base + 2).to_string(),
            "a test's",
        )
        .await
        .unwrap();
    assert_eq!(handle(vec![at(1)]).await, Vec::<String>::new());
    let cursor = store
        .sync_cursor(group, CloudId::LeanCloud)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cursor.seq, padded_sequence(&(base + 1).to_string()));
    assert_eq!(held().await, Some(padded_sequence(&(base + 2).to_string())));
    // A batch past it without it waits; with it, goes through and lifts it.
    assert_eq!(handle(vec![at(3)]).await, [(base + 3).to_string()]);
    assert_eq!(handle(vec![at(2), at(3)]).await, Vec::<String>::new());
    assert_eq!(held().await, None);
    assert_eq!(cloud.conversations_for_group(group).len(), 1);
}

/// `im-admin sync redrive --queue-url` on `queue` (with `extra` arguments): whether it
/// succeeded, and all it printed.
async fn redrive_queue(queue: &SqsStandIn, extra: &[&str]) -> (bool, String) {
    let mut command = admin_command();
    command
        .env("AWS_ENDPOINT_URL_SQS", queue.endpoint())
        // As the local server's (scripts/test.sh): a failing batch fails within seconds.
        .env("IM_SYNC_RETRY_BUDGET_MS", "2500")
        .args(["--table", &env("IM_TEST_LOCAL_TABLE"), "sync", "redrive"])
        .args(["--queue-url", queue.queue_url()])
        .args(extra);
    run_printed(command).await
}

#[tokio::test]
async fn a_batch_from_the_dead_letter_queue_is_read_back_from_the_stream_and_redriven() {
    let m = mirrored("mirror-queue", true, OnDelete::Keep).await;
    let (poisoned, mine) = m.poisoned_and_dead_lettered().await;
    let letter: Value = serde_json::from_str(mine.lines().next().unwrap()).unwrap();
    // What Lambda's on-failure destination sends for a DynamoDB stream batch: where the
    // batch is in the stream (here DynamoDB Local's real shard and sequence numbers, as
    // the local poller gave up on them), not its records.
    let message = json!({
        "requestContext": {
            "requestId": "316aa6d0-8154-xmpl-9af7-85d5f4a6bc81",
            "functionArn": "arn:aws:lambda:us-east-1:000000000000:function:sync-conversations:live",
            "condition": "RetryAttemptsExhausted",
            "approximateInvokeCount": 4
        },
        "responseContext": {"statusCode": 200, "executedVersion": "1", "functionError": "Unhandled"},
        "version": "1.0",
        "timestamp": letter["timestamp"],
        "DDBStreamBatchInfo": letter["DDBStreamBatchInfo"],
    })
    .to_string();
    assert!(message.contains(r#""shardId":"shardId-"#), "{message}");
    let queue = SqsStandIn::start().await;
    let mut printed = String::new();

    // The IM cloud still fails: the batch fails again, and its message stays in the
    // queue, visible for the next run.
    queue.send(&message);
    let (ok, out) = redrive_queue(&queue, &[]).await;
    assert!(!ok, "{out}");
    assert!(out.contains("1 group(s) still failing"), "{out}");
    assert!(out.contains("0 applied and deleted, 1 kept"), "{out}");
    assert_eq!(queue.visible(), std::slice::from_ref(&message));
    printed.push_str(&out);

    // Once it answers: applied, the message deleted.
    m.cloud.clear_faults();
    let (ok, out) = redrive_queue(&queue, &[]).await;
    assert!(ok, "{out}");
    assert!(
        out.contains("1 record(s) applied; deleted from the queue"),
        "{out}"
    );
    assert!(queue.bodies().is_empty());
    let c = m.wait_in_step(poisoned).await;
    assert_eq!(c.name.as_deref(), Some("poisoned"));
    printed.push_str(&out);

    assert_eq!(m.events(&c.id).len(), 1, "one system message: created");

    // Again, on an empty queue and with the same message delivered twice: nothing
    // changes in the IM cloud (the group skips what it applied), the message goes.
    let (ok, out) = redrive_queue(&queue, &[]).await;
    assert!(ok && out.contains("0 message(s)"), "{out}");
    queue.send(&message);
    let (ok, out) = redrive_queue(&queue, &[]).await;
    assert!(ok && out.contains("1 applied and deleted"), "{out}");
    assert!(queue.bodies().is_empty());
    assert_eq!(m.cloud.conversations_for_group(poisoned).len(), 1);
    let now = m.in_step(poisoned).await.expect("still in step");
    assert_eq!((&now.id, &now.name), (&c.id, &c.name));
    assert_eq!(m.events(&c.id).len(), 1, "no second created message");
    printed.push_str(&out);

    // A batch no longer in the stream (its shard trimmed away): kept, and named, unless
    // the operator says to drop it.
    let mut gone: Value = serde_json::from_str(&message).unwrap();
    gone["DDBStreamBatchInfo"]["shardId"] = json!("shardId-00000001000000000000-00000000");
    let gone = gone.to_string();
    queue.send(&gone);
    let (ok, out) = redrive_queue(&queue, &[]).await;
    assert!(!ok, "{out}");
    assert!(
        out.contains("shardId-00000001000000000000-00000000")
            && out.contains("no longer in the stream")
            && out.contains("kept"),
        "{out}"
    );
    assert_eq!(queue.visible(), std::slice::from_ref(&gone));
    let (ok, out) = redrive_queue(&queue, &["--drop-expired"]).await;
    assert!(ok, "{out}");
    assert!(out.contains("1 dropped as expired"), "{out}");
    assert!(queue.bodies().is_empty());
    printed.push_str(&out);

    // Whatever is not such a message is kept too.
    queue.send(r#"{"Records": []}"#);
    let (ok, out) = redrive_queue(&queue, &[]).await;
    assert!(!ok && out.contains("not the on-failure message"), "{out}");
    printed.push_str(&out);

    assert!(
        !printed.contains(&m.api.app.master_key),
        "the key never leaves"
    );
    assert!(!printed.contains("mk-test-"), "no master key at all");
}

#[tokio::test]
async fn reconcile_reports_a_difference_made_behind_the_services_back_and_fix_repairs_it() {
    let m = mirrored("mirror-recon", false, OnDelete::Keep).await;
    let id = m.create("alice", "watched", "bob:carol").await;
    let c = m.wait_in_step(id).await;
    m.cloud.remove_member_directly(&c.id, "bob");
    m.cloud.add_member_directly(&c.id, "mallory");
    let (ok, text) = reconcile(&m, false).await;
    assert!(!ok, "a difference exits 1: {text}");
    assert!(
        text.contains("missing from the conversation: bob"),
        "{text}"
    );
    assert!(
        text.contains("in the conversation but not the group: mallory"),
        "{text}"
    );
    let (ok, all) = reconcile(&m, true).await;
    assert!(ok, "{all}");
    assert!(!all.contains(&m.api.app.master_key), "the key never leaves");
    assert!(m.in_step(id).await.is_some());
    assert!(reconcile(&m, false).await.0, "in step after the fix");
}

/// `im-admin sync reconcile` of the app (`--fix` to repair): whether it succeeded, and
/// all it printed.
async fn reconcile(m: &Mirrored, fix: bool) -> (bool, String) {
    let mut cmd = admin_command();
    cmd.args([
        "--table",
        &env("IM_TEST_LOCAL_TABLE"),
        "sync",
        "reconcile",
        "--app",
        &m.api.app.app_id,
    ]);
    if fix {
        cmd.arg("--fix");
    }
    run_printed(cmd).await
}

/// A hold whose record will not be redriven (its letter lost, or its batch gone from the
/// stream): reconcile names it, and `--fix` repairs the group and lifts the hold, so the
/// group's next changes flow again; a late redrive of the held record changes nothing.
#[tokio::test]
async fn reconcile_fix_lifts_a_hold_whose_record_is_not_redriven() {
    let m = mirrored("mirror-unhold", true, OnDelete::Keep).await;
    let (poisoned, letters) = m.poisoned_and_dead_lettered().await;
    m.cloud.clear_faults();
    let (ok, text) = reconcile(&m, false).await;
    assert!(!ok, "a hold exits 1: {text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with(&format!("group {poisoned}:"))
                && l.contains("no conversation")
                && l.contains("later changes held behind stream record")),
        "{text}"
    );
    let (ok, all) = reconcile(&m, true).await;
    assert!(ok, "{all}");
    m.wait_in_step(poisoned).await;
    assert_eq!(m.group("alice", poisoned).await["sync"]["status"], "ok");
    m.add("alice", poisoned, "carol").await;
    let c = m.wait_in_step(poisoned).await;
    assert!(c.members.contains("carol"), "the next change went through");
    assert!(reconcile(&m, false).await.0, "nothing held, in step");
    eventually("the added member's message", || async {
        !m.events(&c.id).is_empty()
    })
    .await;
    // The repair stood in for the create: redriven late, it posts no "created" after
    // the newer change.
    redrive_file(&m, letters).await;
    let events: Vec<Value> = m
        .events(&c.id)
        .into_iter()
        .map(|e| e["event"].clone())
        .collect();
    assert_eq!(events, ["members_added"]);
}

#[tokio::test]
async fn a_conversation_gone_from_the_im_cloud_marks_the_group_failed_until_a_fix() {
    let m = mirrored("mirror-gone", false, OnDelete::Keep).await;
    let id = m.create("alice", "fragile", "bob").await;
    let c = m.wait_in_step(id).await;
    m.cloud.delete_conversation_directly(&c.id);
    m.add("alice", id, "carol").await;
    eventually("the group is marked failed", || async {
        m.group("alice", id).await["sync"]["status"] == "failed"
    })
    .await;
    let seen = m.group(BACKEND, id).await;
    let error = seen["sync"]["error"].as_str().unwrap().to_owned();
    assert!(error.contains("404"), "{error}");
    assert!(!error.contains(&m.api.app.master_key));
    assert!(
        m.group("bob", id).await.get("sync").is_none(),
        "members do not see it"
    );
    let (ok, printed) = reconcile(&m, true).await;
    assert!(ok, "{printed}");
    let now = m.wait_in_step(id).await;
    assert_ne!(now.id, c.id, "a new conversation");
    assert_eq!(m.group("alice", id).await["sync"]["status"], "ok");
}

/// Conversations a client made and tagged with group ids the service will hand out next
/// (any client can set `attr` on its conversations, and ids are sequential).
fn pre_tag(m: &Mirrored, from: u64, count: u64, members: &[&str]) -> Vec<(u64, String)> {
    (from..from + count)
        .map(|g| {
            let attr = json!({"type": "group", "group_id": g});
            (
                g,
                m.cloud.create_conversation_directly("bait", members, attr),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_conversation_pre_tagged_with_a_future_group_id_is_never_touched() {
    let m = mirrored("mirror-own", false, OnDelete::Delete).await;
    // A victim group whose conversation (linked by the backend) an attacker tagged with
    // the next group ids, and plain bait conversations for the ids after those.
    let next = m.create("alice", "probe", "carol").await + 1;
    let tagged = pre_tag(&m, next, 200, &["victim1", "victim2"]);
    let victim_conversation = tagged[0].1.clone();
    let victim = m
        .api
        .create(
            BACKEND,
            json!({"group_name": "victim", "member_client_ids": "victim1:victim2", "conversation_id": victim_conversation}),
        )
        .await;
    let id = m.create("mallory", "attack", "bob").await;
    assert!(
        (next..next + 200).contains(&id),
        "group {id} fell outside the pre-tagged ids {next}.."
    );
    let c = m.wait_in_step(id).await;
    assert!(
        !tagged.iter().any(|(_, t)| *t == c.id),
        "the mirror took a pre-tagged conversation for group {id}"
    );
    assert_eq!(c.members, BTreeSet::from(["mallory".into(), "bob".into()]));
    // on_delete=delete: only the group's own conversation goes.
    let resp = m
        .api
        .send("mallory", Method::DELETE, format!("/im/group/{id}"), None)
        .await;
    assert_eq!(resp.status(), 204);
    eventually("the group's conversation is deleted", || async {
        m.cloud.conversation(&c.id).is_none()
    })
    .await;
    let deleted: Vec<String> = m
        .cloud
        .deleted_conversations()
        .into_iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(deleted, std::slice::from_ref(&c.id));
    // The victim group's conversation has the victim group's members (the mirror put
    // its creator, the backend, in too); every other bait conversation is as it was.
    let victims = m.members(victim).await;
    assert_eq!(victims.len(), 3, "victim1, victim2, the backend");
    eventually(
        "the victim's conversation has its group's members",
        || async {
            m.cloud
                .conversation(&victim_conversation)
                .is_some_and(|c| c.members == victims)
        },
    )
    .await;
    for (g, t) in &tagged {
        let left = m.cloud.conversation(t).expect("a pre-tagged conversation");
        let expected = if *t == victim_conversation {
            victims.clone()
        } else {
            BTreeSet::from(["victim1".into(), "victim2".into()])
        };
        assert_eq!(
            left.members, expected,
            "the conversation tagged {g} was given other members"
        );
    }
}

#[tokio::test]
async fn reconcile_fix_makes_its_own_conversation_rather_than_take_a_pre_tagged_one() {
    let m = mirrored("mirror-own-fix", false, OnDelete::Keep).await;
    let next = m.create("alice", "probe", "carol").await + 1;
    let tagged = pre_tag(&m, next, 200, &["victim1"]);
    // The IM cloud refuses everything about the next groups for a while: the group is
    // left without a conversation, marked failed, for a reconcile to repair.
    for (g, _) in &tagged {
        m.cloud.fail_always_for_group(*g, 403);
    }
    let id = m.create("alice", "later", "bob").await;
    assert!((next..next + 200).contains(&id));
    eventually("the group is marked failed", || async {
        m.group("alice", id).await["sync"]["status"] == "failed"
    })
    .await;
    m.cloud.clear_faults();
    let (ok, printed) = reconcile(&m, true).await;
    assert!(ok, "{printed}");
    let c = m.wait_in_step(id).await;
    assert!(!tagged.iter().any(|(_, t)| *t == c.id), "{printed}");
    for (_, t) in &tagged {
        let left = m.cloud.conversation(t).unwrap();
        assert_eq!(left.members, BTreeSet::from(["victim1".into()]));
    }
}

#[tokio::test]
async fn an_id_the_im_cloud_refuses_fails_alone_and_later_removals_still_go_through() {
    let m = mirrored("mirror-refused", false, OnDelete::Keep).await;
    let id = m.create("alice", "mixed", "bob:carol").await;
    let c = m.wait_in_step(id).await;
    // Our ids may hold a '.', the vendor's may not (the stand-in follows its rule): one
    // request adds it with a good id, and the next ones kick two members.
    m.add("alice", id, "dave:not.a.vendor.id").await;
    m.remove("alice", id, "bob").await;
    m.remove("alice", id, "carol").await;
    eventually(
        "the kicks and the good add reach the conversation",
        || async {
            m.cloud.conversation(&c.id).is_some_and(|c| {
                c.members == BTreeSet::from(["alice".to_owned(), "dave".to_owned()])
            })
        },
    )
    .await;
    let seen = m.group("alice", id).await;
    assert_eq!(seen["sync"]["status"], "failed");
    let error = seen["sync"]["error"].as_str().unwrap();
    assert!(error.contains("not.a.vendor.id"), "{error}");
    assert!(!error.contains("dave"), "{error}");
    // reconcile names what it cannot repair, and fails.
    let (ok, printed) = reconcile(&m, true).await;
    assert!(!ok, "{printed}");
    assert!(
        printed.contains("not repaired: the IM cloud refused not.a.vendor.id"),
        "{printed}"
    );
}

#[tokio::test]
async fn a_kick_just_before_a_delete_reaches_the_kept_conversation() {
    let m = mirrored("mirror-kick-del", true, OnDelete::Keep).await;
    let id = m.create("alice", "closing", "bob:carol").await;
    let c = m.wait_in_step(id).await;
    m.remove("alice", id, "carol").await;
    let resp = m
        .api
        .send("alice", Method::DELETE, format!("/im/group/{id}"), None)
        .await;
    assert_eq!(resp.status(), 204);
    eventually("the dismissal reached the conversation", || async {
        m.events(&c.id).iter().any(|e| e["event"] == "dismissed")
    })
    .await;
    // The kick is applied; the delete's own member removals are not (keep).
    let kept = m.cloud.conversation(&c.id).unwrap();
    assert_eq!(
        kept.members,
        BTreeSet::from(["alice".to_owned(), "bob".to_owned()])
    );
}

#[tokio::test]
async fn a_deleted_or_moved_groups_conversation_is_closed_to_clients() {
    let m = mirrored("mirror-closed", false, OnDelete::Keep).await;
    let id = m.create("alice", "soon-gone", "bob").await;
    let c = m.wait_in_step(id).await;
    let paths = |conv: &str| {
        [
            format!("invite/{{a}}/bob/{conv}/eve"),
            format!("kick/{{a}}/bob/{conv}/alice"),
            format!("history/{{a}}/bob/{conv}"),
            format!("conversation-block/{{a}}/bob/{conv}/alice"),
            // The open-conversation signature that equals its history signature.
            format!("conversation/{{a}}/bob/{conv}"),
        ]
    };
    assert_eq!(
        m.api
            .sign("bob", &format!("history/{{a}}/bob/{}", c.id))
            .await,
        200
    );
    let resp = m
        .api
        .send("alice", Method::DELETE, format!("/im/group/{id}"), None)
        .await;
    assert_eq!(resp.status(), 204);
    // Under the default IM_UNLINKED_CONVERSATIONS=allow, a stranger (eve) and a former
    // member (bob) alike get nothing on it; the app's backend still does.
    for path in paths(&c.id) {
        assert_eq!(m.api.sign("bob", &path).await, 403, "{path}");
        let eve = path.replace("/bob/", "/eve/");
        assert_eq!(m.api.sign("eve", &eve).await, 403, "{eve}");
        assert_eq!(m.api.sign(BACKEND, &path).await, 200, "{path}");
    }
    // A moved link closes the conversation it left, and opens the new one to members.
    let other = m.create("alice", "moving", "bob").await;
    let first = m.wait_in_step(other).await;
    let second = m
        .cloud
        .create_conversation_directly("second", &[], Value::Null);
    assert_eq!(m.api.link(BACKEND, other, &second).await, 200);
    for path in paths(&first.id) {
        assert_eq!(m.api.sign("bob", &path).await, 403, "{path}");
    }
    let history = format!("history/{{a}}/bob/{second}");
    assert_eq!(m.api.sign("bob", &history).await, 200);
    // The backend may link the closed conversation again: then it is that group's
    // (within the link cache's time, IM_LINK_CACHE_SECONDS, 10 s by default).
    assert_eq!(m.api.link(BACKEND, other, &first.id).await, 200);
    let history = format!("history/{{a}}/bob/{}", first.id);
    let linked_at = Instant::now();
    while m.api.sign("bob", &history).await != 200 {
        assert!(linked_at.elapsed() < Duration::from_secs(12), "{history}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn finishing_a_half_done_delete_is_the_owners_or_the_backends_and_announces_it_once() {
    let m = mirrored("mirror-finish", true, OnDelete::Keep).await;
    let id = m.create("alice", "interrupted", "bob").await;
    let c = m.wait_in_step(id).await;
    // What a crash right after the owner's delete marked the group leaves behind.
    let dismissed =
        json!({"event": "dismissed", "by": "alice", "members": [], "at": "2026-12-01T00:00:00Z"});
    let change = serde_dynamo::to_attribute_value(&dismissed).unwrap();
    change_group_item(&m.api.store, id, |u| {
        u.update_expression("SET #s = :d, last_change = :c")
            .expression_attribute_names("#s", "status")
            .expression_attribute_values(":d", AttributeValue::S("deleting".into()))
            .expression_attribute_values(":c", change)
    })
    .await;
    eventually("the dismissal reached the conversation", || async {
        m.events(&c.id).iter().any(|e| e["event"] == "dismissed")
    })
    .await;
    // A member cannot finish it; the backend can, and it stays alice's dismissal.
    let resp = m
        .api
        .send("bob", Method::DELETE, format!("/im/group/{id}"), None)
        .await;
    assert_eq!(resp.status(), 404);
    assert!(m.api.store.group_meta(id).await.unwrap().is_some());
    let resp = m
        .api
        .send(BACKEND, Method::DELETE, format!("/im/group/{id}"), None)
        .await;
    assert_eq!(resp.status(), 404);
    eventually("the group is gone", || async {
        m.api.store.group_meta(id).await.unwrap().is_none()
    })
    .await;
    // A later change of the group's conversation would come after: wait for the
    // mirror to pass the group's last records, then count.
    let marker = m.create("alice", "after", "bob").await;
    m.wait_in_step(marker).await;
    let dismissals: Vec<Value> = m
        .events(&c.id)
        .into_iter()
        .filter(|e| e["event"] == "dismissed")
        .collect();
    assert_eq!(dismissals.len(), 1, "{dismissals:?}");
    assert_eq!(dismissals[0]["by"], "alice");
}

/// Conversations brought in by `im-admin import leancloud` are in the IM cloud already:
/// the mirror links them only. It makes no conversation, changes no member and posts no
/// message for the import (a group small enough for one transaction, and one written in
/// steps), reconcile finds them in step, and the groups' later changes reach them as any
/// group's do.
#[tokio::test]
async fn an_imported_group_is_never_made_again_changed_or_announced() {
    let m = mirrored("mirror-import", true, OnDelete::Keep).await;
    let large: Vec<String> = (0..120).map(|i| format!("u{i:03}")).collect();
    let large_refs: Vec<&str> = large.iter().map(String::as_str).collect();
    let attr = json!({"type": "group"});
    let small = m
        .cloud
        .create_conversation_directly("imported", &["amy", "bob"], attr.clone());
    let big = m
        .cloud
        .create_conversation_directly("imported, large", &large_refs, attr.clone());
    // The vendor's export of them (`_Conversation` records as its console writes them).
    let export =
        std::env::temp_dir().join(format!("{}.jsonl", im_e2e::stack::unique("mirror-import")));
    let records: Vec<String> = [
        (&small, "imported", vec!["amy", "bob"]),
        (&big, "imported, large", large_refs.clone()),
    ]
    .iter()
    .map(|(id, name, m)| {
        json!({"objectId": id, "name": name, "m": m, "c": m[0], "attr": attr, "tr": false})
            .to_string()
    })
    .collect();
    std::fs::write(&export, records.join("\n")).unwrap();
    let before = m.cloud.requests().len();
    let mut cmd = admin_command();
    cmd.args([
        "--table",
        &env("IM_TEST_LOCAL_TABLE"),
        "import",
        "leancloud",
        "--app",
        &m.api.app.app_id,
    ])
    .args(["--file", export.to_str().unwrap()]);
    let (ok, text) = run_printed(cmd).await;
    assert!(ok, "{text}");
    assert!(text.contains("imported           2"), "{text}");
    let small_group = match m
        .api
        .store
        .conversation_group(&m.api.app.app_id, &small)
        .await
        .unwrap()
    {
        Some(im_shared::model::ConversationClaim::Group(g)) => g,
        other => panic!("{other:?}"),
    };
    // A group made after the import, and in step: the poller has read the stream past
    // the import's records; then a little longer for the other groups' shards.
    let fence = m.create("alice", "after the import", "bob").await;
    m.wait_in_step(fence).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let touched: Vec<_> = m.cloud.requests()[before..]
        .iter()
        .filter(|r| r.path.contains(&small) || r.path.contains(&big))
        .cloned()
        .collect();
    assert!(touched.is_empty(), "{touched:#?}");
    assert!(m.cloud.messages(&small).is_empty() && m.cloud.messages(&big).is_empty());
    // Only the fence's conversation was made.
    assert_eq!(m.cloud.conversations().len(), 3);
    assert!(m.in_step(small_group).await.is_some());
    let (ok, text) = reconcile(&m, false).await;
    assert!(ok, "imported groups are in step: {text}");

    // Later changes are mirrored as any group's.
    m.add("amy", small_group, "carol").await;
    eventually("the add reached the conversation", || async {
        m.cloud
            .conversation(&small)
            .is_some_and(|c| c.members.contains("carol"))
    })
    .await;
    eventually("one message, the add's", || async {
        m.events(&small).len() == 1
    })
    .await;
    assert_eq!(m.events(&small)[0]["event"], "members_added");
}
