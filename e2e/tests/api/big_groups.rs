//! Creates and adds of more members than one DynamoDB transaction takes, over HTTP on the
//! local server: whole or not at all, the member limit exact under concurrent big adds, a
//! create stopped after its first step finished by a retry with its `Idempotency-Key`,
//! and the mirror bringing every member to the IM cloud stand-in.

use std::collections::BTreeSet;

use futures::future::join_all;
use im_e2e::http::{Api, BACKEND};
use im_e2e::stack::unique;
use im_shared::model::{Caller, GroupSpec, Idempotency, MemberList, OnDelete};
use im_shared::store::dynamo::BigAdd;
use reqwest::Method;
use serde_json::{json, Value};

use crate::mirror::{eventually, mirrored};

/// `n` fresh client ids starting with `prefix`.
fn ids(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i:04}")).collect()
}

/// Every member of group `id` as `client` lists them, page by page (100 a page).
async fn listed(api: &Api, client: &str, id: u64) -> (u16, BTreeSet<String>) {
    let mut seen = BTreeSet::new();
    let mut next: Option<String> = None;
    loop {
        let path = match &next {
            Some(c) => format!("/im/group/{id}/member?limit=100&cursor={c}"),
            None => format!("/im/group/{id}/member?limit=100"),
        };
        let resp = api.get(client, &path).await;
        let status = resp.status().as_u16();
        if status != 200 {
            return (status, seen);
        }
        let page: Value = resp.json().await.unwrap();
        for m in page["members"].as_array().unwrap() {
            seen.insert(m["client_id"].as_str().unwrap().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(c) => next = Some(c.to_owned()),
            None => return (200, seen),
        }
    }
}

/// The group's `member_count` as `client` reads it.
async fn count(api: &Api, client: &str, id: u64) -> u64 {
    let resp = api.get(client, format!("/im/group/{id}")).await;
    assert_eq!(resp.status(), 200);
    resp.json::<Value>().await.unwrap()["member_count"]
        .as_u64()
        .unwrap()
}

/// Whether group `id` is among `client`'s groups.
async fn in_groups_of(api: &Api, client: &str, id: u64) -> bool {
    let resp = api
        .get(client, format!("/im/user/{client}/groups?limit=100"))
        .await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    body["groups"]
        .as_array()
        .unwrap()
        .iter()
        .any(|g| g["group_id"].as_u64() == Some(id))
}

async fn add(api: &Api, by: &str, id: u64, members: &[String]) -> (u16, Value) {
    let resp = api
        .send(
            by,
            Method::POST,
            format!("/im/group/{id}/member"),
            Some(json!({ "member_client_ids": members })),
        )
        .await;
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or_default())
}

#[tokio::test]
async fn a_300_member_create_appears_whole() {
    let api = Api::local("big-create").await;
    let members = ids("m", 299);
    let resp = api
        .send(
            "owner",
            Method::POST,
            "/im/group",
            Some(json!({"group_name": "big", "member_client_ids": members})),
        )
        .await;
    assert_eq!(resp.status(), 201);
    let body: Value = resp.json().await.unwrap();
    let id = body["group_id"].as_u64().unwrap();
    assert_eq!(
        body["member_client_ids"]
            .as_str()
            .unwrap()
            .split(':')
            .count(),
        300
    );
    assert_eq!(count(&api, "owner", id).await, 300);
    let (status, seen) = listed(&api, "m-0150", id).await;
    assert_eq!(status, 200);
    let mut want: BTreeSet<String> = members.iter().cloned().collect();
    want.insert("owner".into());
    assert_eq!(seen, want);
    // Every member may act in it: the last one listed lists it among its groups, and
    // adds someone (the add's own condition wants it a member).
    assert!(in_groups_of(&api, "m-0298", id).await);
    assert_eq!(add(&api, "m-0298", id, &["late".into()]).await.0, 201);
    assert_eq!(count(&api, "owner", id).await, 301);
    // 2,000 ids of 64 characters fit in one request (the body limit holds them).
    let long: Vec<String> = (0..1999).map(|i| format!("{i:064}")).collect();
    let resp = api
        .send(
            "owner",
            Method::POST,
            "/im/group",
            Some(json!({"group_name": "bigger", "member_client_ids": long, "max_members": 2000})),
        )
        .await;
    assert_eq!(resp.status(), 201);
    let id = resp.json::<Value>().await.unwrap()["group_id"]
        .as_u64()
        .unwrap();
    assert_eq!(count(&api, "owner", id).await, 2000);
}

#[tokio::test]
async fn a_big_create_links_its_conversation_when_it_goes_live() {
    let api = Api::local("big-link").await;
    let conversation = unique("conv");
    let body = |name: &str, prefix: &str| json!({"group_name": name, "member_client_ids": ids(prefix, 120), "conversation_id": conversation});
    let resp = api
        .send(
            BACKEND,
            Method::POST,
            "/im/group",
            Some(body("linked", "l")),
        )
        .await;
    assert_eq!(resp.status(), 201);
    let id = resp.json::<Value>().await.unwrap()["group_id"]
        .as_u64()
        .unwrap();
    let seen: Value = api
        .get(BACKEND, format!("/im/group/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(seen["conversation_id"], conversation.as_str());
    assert_eq!(seen["member_count"], 121);
    // The conversation is the group's: its members get signatures on it, others not.
    let path = |client: &str| format!("history/{{a}}/{client}/{conversation}");
    assert_eq!(api.sign("l-0100", &path("l-0100")).await, 200);
    assert_eq!(api.sign("stranger", &path("stranger")).await, 403);
    // Another big create on the same conversation: 409, and nothing of it anywhere.
    let resp = api
        .send(BACKEND, Method::POST, "/im/group", Some(body("again", "k")))
        .await;
    assert_eq!(resp.status(), 409);
    let resp = api.get("k-0001", "/im/user/k-0001/groups?limit=100").await;
    assert_eq!(resp.json::<Value>().await.unwrap()["groups"], json!([]));
    assert_eq!(api.sign("k-0001", &path("k-0001")).await, 403);
}

#[tokio::test]
async fn an_add_of_200_appears_whole_to_every_reader() {
    let api = Api::local("big-add").await;
    let id = api
        .create(
            "owner",
            json!({"group_name": "g", "member_client_ids": "a:b"}),
        )
        .await;
    let new = ids("n", 200);
    // Readers throughout the add: the count and the member list are before or after,
    // never in between.
    let done = std::sync::atomic::AtomicBool::new(false);
    let readers = async {
        let mut counts = BTreeSet::new();
        let mut sizes = BTreeSet::new();
        while !done.load(std::sync::atomic::Ordering::SeqCst) {
            counts.insert(count(&api, "a", id).await);
            let resp = api
                .get("a", format!("/im/group/{id}/member?limit=100"))
                .await;
            let page: Value = resp.json().await.unwrap();
            // The first page (by id: a, b, then the n-*): none of the new members
            // before, the first 98 of them after; never some.
            let news = page["members"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|m| m["client_id"].as_str().unwrap().starts_with("n-"))
                .count();
            sizes.insert(news);
        }
        (counts, sizes)
    };
    let adding = async {
        let out = add(&api, "a", id, &new).await;
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        out
    };
    let ((counts, sizes), (status, body)) = tokio::join!(readers, adding);
    assert_eq!(status, 201, "{body}");
    assert!(counts.iter().all(|c| [3, 203].contains(c)), "{counts:?}");
    assert!(sizes.iter().all(|s| [0, 98].contains(s)), "{sizes:?}");
    assert_eq!(count(&api, "owner", id).await, 203);
    let (_, seen) = listed(&api, "owner", id).await;
    assert_eq!(seen.len(), 203);
    assert!(new.iter().all(|n| seen.contains(n)));
    assert!(in_groups_of(&api, "n-0199", id).await);
    // The same add again changes nothing; one of them may be made owner at once (its
    // member item is a member's to every write condition).
    assert_eq!(add(&api, "a", id, &new).await.0, 201);
    assert_eq!(count(&api, "owner", id).await, 203);
    let resp = api
        .send(
            "owner",
            Method::POST,
            format!("/im/group/{id}/owner"),
            Some(json!({"client_id": "n-0007"})),
        )
        .await;
    assert_eq!(resp.status(), 200);
    // And a removal of one of them counts exactly.
    let resp = api
        .send(
            "n-0007",
            Method::DELETE,
            format!("/im/group/{id}/member?member_client_ids=n-0100"),
            None,
        )
        .await;
    assert_eq!(resp.status(), 204);
    assert_eq!(count(&api, "owner", id).await, 202);
}

#[tokio::test]
async fn a_create_or_add_past_max_members_is_refused_and_writes_nothing() {
    let api = Api::local("big-full").await;
    let resp = api
        .send(
            "owner",
            Method::POST,
            "/im/group",
            Some(
                json!({"group_name": "x", "member_client_ids": ids("c", 200), "max_members": 150}),
            ),
        )
        .await;
    assert_eq!(resp.status(), 400);
    let resp = api.get("c-0001", "/im/user/c-0001/groups?limit=100").await;
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["groups"], json!([]));

    let id = api
        .create(
            "owner",
            json!({"group_name": "g", "member_client_ids": "a:b", "max_members": 250}),
        )
        .await;
    let (status, body) = add(&api, "a", id, &ids("d", 248)).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(count(&api, "owner", id).await, 3);
    let (_, seen) = listed(&api, "owner", id).await;
    assert_eq!(seen.len(), 3);
    assert!(!in_groups_of(&api, "d-0000", id).await);
    // Nothing was reserved either: exactly the room left still fits.
    assert_eq!(add(&api, "a", id, &ids("d", 247)).await.0, 201);
    assert_eq!(count(&api, "owner", id).await, 250);
    assert_eq!(add(&api, "a", id, &["one-more".into()]).await.0, 409);
    // More ids than any group may have: 400 before anything is read.
    assert_eq!(add(&api, "a", id, &ids("e", 5001)).await.0, 400);
}

#[tokio::test]
async fn two_concurrent_big_adds_past_the_limit_let_exactly_one_through() {
    let api = Api::local("big-race").await;
    for round in 0..3 {
        let id = api
            .create(
                "owner",
                json!({"group_name": "race", "member_client_ids": "a", "max_members": 300}),
            )
            .await;
        let first = ids(&format!("x{round}"), 200);
        let second = ids(&format!("y{round}"), 200);
        let (one, two) = tokio::join!(add(&api, "a", id, &first), add(&api, "owner", id, &second));
        let mut statuses = [one.0, two.0];
        statuses.sort();
        assert_eq!(statuses, [201, 409], "{one:?} {two:?}");
        let winner = if one.0 == 201 { &first } else { &second };
        assert_eq!(count(&api, "owner", id).await, 202);
        let (_, seen) = listed(&api, "owner", id).await;
        assert_eq!(seen.len(), 202);
        assert!(winner.iter().all(|w| seen.contains(w)));
        // The loser's places were never taken: the room left is exactly 98.
        assert_eq!(
            add(&api, "a", id, &ids(&format!("z{round}"), 99)).await.0,
            409
        );
        assert_eq!(
            add(&api, "a", id, &ids(&format!("z{round}"), 98)).await.0,
            201
        );
        assert_eq!(count(&api, "owner", id).await, 300);
    }
    // Many small adds racing a big one: never past the limit, the count exact.
    let id = api
        .create(
            "owner",
            json!({"group_name": "mixed", "member_client_ids": "a", "max_members": 250}),
        )
        .await;
    let big = ids("big", 200);
    let smalls = ids("small", 60);
    let small_adds = join_all(
        smalls
            .iter()
            .map(|s| add(&api, "a", id, std::slice::from_ref(s))),
    );
    let (big_out, small_outs) = tokio::join!(add(&api, "owner", id, &big), small_adds);
    let smalls_in = small_outs.iter().filter(|(s, _)| *s == 201).count() as u64;
    assert!(
        small_outs.iter().all(|(s, _)| [201, 409].contains(s)),
        "{small_outs:?}"
    );
    let big_in = if big_out.0 == 201 { 200 } else { 0 };
    assert!([201, 409].contains(&big_out.0), "{big_out:?}");
    let total = count(&api, "owner", id).await;
    assert_eq!(total, 2 + smalls_in + big_in);
    assert!(total <= 250);
    assert_eq!(listed(&api, "owner", id).await.1.len() as u64, total);
}

#[tokio::test]
async fn a_big_create_stopped_after_its_first_step_is_finished_by_its_retry() {
    let api = Api::local("big-crash").await;
    let key = unique("key");
    let members = ids("r", 150);
    let body = json!({"group_name": "half", "member_client_ids": members.join(":")});
    // What the route would have written before a crash: the first step alone, through
    // the store, with the request's own idempotency record.
    let spec = GroupSpec {
        name: "half".into(),
        members: MemberList::from_ids(
            "member_client_ids",
            members.iter().map(String::as_str),
            usize::MAX,
            64,
        )
        .unwrap(),
        max_members: im_shared::model::DEFAULT_MAX_MEMBERS,
        ..GroupSpec::default()
    };
    let caller = Caller {
        app_id: api.app.app_id.clone(),
        client_id: "owner".into(),
        app_admin: false,
    };
    let begun = api
        .store
        .begin_big_create(&caller, &spec, Some(&Idempotency::of_create(&key, &spec)))
        .await
        .unwrap();
    let id = begun.group.group_id;
    // Nobody sees it: not its owner, not a member's listing.
    assert_eq!(
        api.get("owner", format!("/im/group/{id}")).await.status(),
        404
    );
    assert_eq!(listed(&api, "owner", id).await.0, 404);
    assert!(!in_groups_of(&api, "owner", id).await);
    assert_eq!(add(&api, "owner", id, &["x".into()]).await.0, 404);

    // The client retries with the same key: the same group, finished.
    let resp = api
        .req("owner", Method::POST, "/im/group")
        .header("idempotency-key", &key)
        .json(&body)
        .send()
        .await;
    assert_eq!(resp.status(), 201);
    assert_eq!(resp.headers()["idempotent-replayed"], "true");
    let answer: Value = resp.json().await.unwrap();
    assert_eq!(answer["group_id"].as_u64(), Some(id));
    assert_eq!(count(&api, "owner", id).await, 151);
    let (status, seen) = listed(&api, "r-0042", id).await;
    assert_eq!((status, seen.len()), (200, 151));
    assert!(in_groups_of(&api, "r-0149", id).await);
    // And again: the same answer, nothing more.
    let resp = api
        .req("owner", Method::POST, "/im/group")
        .header("idempotency-key", &key)
        .json(&body)
        .send()
        .await;
    assert_eq!(resp.status(), 201);
    assert_eq!(count(&api, "owner", id).await, 151);
}

#[tokio::test]
async fn big_groups_reach_the_im_cloud_with_every_member() {
    let m = mirrored("big-mirror", true, OnDelete::Keep).await;
    let members = ids("p", 299).join(":");
    let id = m.create("alice", "big", &members).await;
    let c = m.wait_in_step(id).await;
    assert_eq!(c.members.len(), 300);
    let more = ids("q", 200);
    assert_eq!(add(&m.api, "alice", id, &more).await.0, 201);
    eventually("the big add reached the conversation", || async {
        m.cloud
            .conversation(&c.id)
            .is_some_and(|c| c.members.len() == 500)
    })
    .await;
    let c = m.wait_in_step(id).await;
    assert!(more.iter().all(|q| c.members.contains(q)));
    eventually("both messages were posted", || async {
        m.events(&c.id).len() == 2
    })
    .await;
    let events = m.events(&c.id);
    assert_eq!(events[0]["event"], "created");
    assert_eq!(events[1]["event"], "members_added");
    assert_eq!(events[1]["by"], "alice");
}

#[tokio::test]
async fn a_big_add_stopped_before_its_commit_is_invisible_and_finished_by_its_retry() {
    let api = Api::local("big-add-crash").await;
    let id = api
        .create(
            "owner",
            json!({"group_name": "g", "member_client_ids": "a", "max_members": 300}),
        )
        .await;
    let new = ids("s", 150);
    let list = MemberList::from_ids(
        "member_client_ids",
        new.iter().map(String::as_str),
        usize::MAX,
        64,
    )
    .unwrap();
    let caller = Caller {
        app_id: api.app.app_id.clone(),
        client_id: "a".into(),
        app_admin: false,
    };
    // What the route would have done before a crash: the reservation and every member
    // item, through the store, without the commit.
    let begun = api.store.begin_big_add(&caller, id, &list).await.unwrap();
    assert!(matches!(begun, BigAdd::Written { places: 150, ref written } if written.len() == 150));
    // No reader sees any of them: the count, the listing, a member's groups, the
    // signature rules (a conversation signature on the group wants a member), and no
    // write takes one as a member.
    assert_eq!(count(&api, "owner", id).await, 2);
    assert_eq!(listed(&api, "owner", id).await.1.len(), 2);
    assert!(!in_groups_of(&api, "s-0010", id).await);
    assert_eq!(
        api.get("s-0010", format!("/im/group/{id}")).await.status(),
        404
    );
    let sign = |client: &str| format!("conversation/{{a}}/{client}/{id}");
    assert_eq!(api.sign("s-0010", &sign("s-0010")).await, 403);
    assert_eq!(api.sign("a", &sign("a")).await, 200);
    assert_eq!(add(&api, "s-0010", id, &["x".into()]).await.0, 404);
    let resp = api
        .send(
            "owner",
            Method::POST,
            format!("/im/group/{id}/owner"),
            Some(json!({"client_id": "s-0010"})),
        )
        .await;
    assert_eq!(resp.status(), 409);
    // Its places are taken meanwhile: 148 left of 298, so 149 more do not fit.
    assert_eq!(add(&api, "owner", id, &ids("t", 149)).await.0, 409);

    // The same add again, through the route: finished, counted once.
    let (status, body) = add(&api, "a", id, &new).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(count(&api, "owner", id).await, 152);
    let (_, seen) = listed(&api, "owner", id).await;
    assert_eq!(seen.len(), 152);
    assert!(in_groups_of(&api, "s-0010", id).await);
    assert_eq!(api.sign("s-0010", &sign("s-0010")).await, 200);
    // Exactly the room that is left: 148.
    assert_eq!(add(&api, "owner", id, &ids("t", 149)).await.0, 409);
    assert_eq!(add(&api, "owner", id, &ids("t", 148)).await.0, 201);
    assert_eq!(count(&api, "owner", id).await, 300);
}
