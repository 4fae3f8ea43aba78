//! How many DynamoDB round trips each request costs, counted on the service's own SDK
//! client (`im_e2e::calls`) against DynamoDB Local, on a server whose caches start empty
//! as a new Lambda sandbox's do. It prints its table (`cargo test -p im-e2e --test api
//! round_trips -- --nocapture`, under `make test`'s services); the one that decided these
//! paths is in docs/decisions/0002-fewest-dynamodb-round-trips.md.

use std::collections::BTreeMap;

use im_e2e::calls::{serve_counted, Calls};
use im_e2e::http::{created_group, Api, BACKEND};
use im_e2e::stack::unique;
use reqwest::Method;
use serde_json::json;

struct Ledger {
    calls: Calls,
    rows: Vec<(&'static str, BTreeMap<String, usize>, usize)>,
}

impl Ledger {
    /// The calls made since the last entry, under `what`, with the most it may take.
    fn entry(&mut self, what: &'static str, at_most: usize) {
        self.rows.push((what, self.calls.counted(), at_most));
    }

    fn check(self) {
        let mut failures = Vec::new();
        println!("| request | DynamoDB calls | round trips | at most |");
        println!("| --- | --- | ---: | ---: |");
        for (what, ops, at_most) in &self.rows {
            let total: usize = ops.values().sum();
            let list: Vec<String> = ops.iter().map(|(op, n)| format!("{n} {op}")).collect();
            let list = if list.is_empty() {
                "none".to_owned()
            } else {
                list.join(", ")
            };
            println!("| {what} | {list} | {total} | {at_most} |");
            if total > *at_most {
                failures.push(format!(
                    "{what}: {total} round trips ({list}), at most {at_most}"
                ));
            }
        }
        assert!(failures.is_empty(), "{failures:#?}");
    }
}

#[tokio::test]
async fn each_request_takes_the_fewest_round_trips() {
    let (base, calls) = serve_counted(&[]).await;
    let api = Api::at(base, "round-trips").await;
    calls.take(); // nothing the set-up did counts
    let mut ledger = Ledger {
        calls,
        rows: Vec::new(),
    };

    assert_eq!(api.sign("alice", "login/{a}/alice").await, 200);
    ledger.entry(
        "a caller's first request (login: token key and master key)",
        1,
    );
    assert_eq!(api.sign("alice", "login/{a}/alice").await, 200);
    ledger.entry("a warm login signature", 0);

    let body = json!({"group_name": "g", "member_client_ids": ["bob"]});
    let group = api.create("alice", body.clone()).await;
    // The ids the app reserves (never members) are read once, then cached with the
    // app's keys; the counter, then the one transaction.
    ledger.entry("create (the app's reserved ids not yet cached)", 3);
    let resp = api
        .req("alice", Method::POST, "/im/group")
        .header("idempotency-key", unique("key"))
        .json(&body)
        .send()
        .await;
    created_group(resp).await;
    // Its reserved ids come from the cache, unless DynamoDB Local took the 5 s that an
    // app reserving none is cached for (then one read more).
    ledger.entry("create with an Idempotency-Key", 3);

    let conversation = unique("conv");
    assert_eq!(api.link(BACKEND, group, &conversation).await, 200);
    // An update that sets a conversation reads the group's old one first, to unlink it.
    ledger.entry("link a conversation (the app's backend, PUT)", 2);

    // Signed only for a change the table holds: bob is in the group, carol is not.
    let invite = format!("invite/{{a}}/alice/{conversation}/bob");
    assert_eq!(api.sign("alice", &invite).await, 200);
    ledger.entry("invite on a group's conversation, link not yet cached", 2);
    assert_eq!(api.sign("alice", &invite).await, 200);
    ledger.entry("a warm invite on a group's conversation", 1);
    let kick = format!("kick/{{a}}/alice/{conversation}/carol");
    assert_eq!(api.sign("alice", &kick).await, 200);
    ledger.entry("a warm kick on a group's conversation", 1);
    let history = format!("history/{{a}}/bob/{conversation}");
    assert_eq!(api.sign("bob", &history).await, 200);
    ledger.entry("a warm history signature on a group's conversation", 1);

    let members = format!("/im/group/{group}/member");
    let add = |ids: serde_json::Value| {
        api.send(
            "alice",
            Method::POST,
            &members,
            Some(json!({ "member_client_ids": ids })),
        )
    };
    assert_eq!(add(json!(["carol", "dave"])).await.status(), 201);
    ledger.entry("add members", 1);
    let remove = |ids: serde_json::Value| {
        api.send(
            "alice",
            Method::DELETE,
            &members,
            Some(json!({ "member_client_ids": ids })),
        )
    };
    assert_eq!(remove(json!(["dave"])).await.status(), 204);
    ledger.entry("remove members", 1);
    assert_eq!(
        api.send(
            "carol",
            Method::DELETE,
            &members,
            Some(json!({ "member_client_ids": ["carol"] }))
        )
        .await
        .status(),
        204
    );
    ledger.entry("leave (a member removes itself)", 1);

    let path = format!("/im/group/{group}");
    let rename = api
        .send(
            "alice",
            Method::PUT,
            &path,
            Some(json!({"group_name": "renamed"})),
        )
        .await;
    assert_eq!(rename.status(), 200);
    ledger.entry("rename", 1);
    assert_eq!(api.get("bob", &path).await.status(), 200);
    ledger.entry("read a group", 1);
    assert_eq!(
        api.send("alice", Method::DELETE, &path, None)
            .await
            .status(),
        204
    );
    // Mark it deleted, list its members, delete them and its link, then the group item:
    // the steps that let a crashed delete be finished by the next one.
    ledger.entry("delete a group (with its link and 2 members)", 5);
    ledger.check();
}
