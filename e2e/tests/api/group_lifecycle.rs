//! Group writes beyond the seed API, over HTTP against the local server: conditional
//! writes (`If-Match`), ownership transfer, idempotent creation and conversation links,
//! each also under concurrent requests.

use aws_sdk_dynamodb::types::AttributeValue;
use futures::future::join_all;
use im_e2e::http::{Api, BACKEND};
use im_e2e::openapi::Checked;
use im_e2e::signatures::verify_signature_response;
use im_e2e::stack::{now_secs, unique};
use reqwest::Method;
use serde_json::{json, Value};

/// The group as `client` sees it, and its ETag.
async fn group(api: &Api, client: &str, id: u64) -> (Value, String) {
    let resp = api.get(client, format!("/im/group/{id}")).await;
    assert_eq!(resp.status(), 200);
    let etag = resp.headers()["etag"].to_str().unwrap().to_owned();
    (resp.json().await.unwrap(), etag)
}

/// The ids of `client`'s groups.
async fn groups_of(api: &Api, client: &str) -> Vec<u64> {
    let resp = api
        .get(client, format!("/im/user/{client}/groups?limit=100"))
        .await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    body["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["group_id"].as_u64().unwrap())
        .collect()
}

/// The status and the error body's `code`.
async fn status_code(resp: Checked) -> (u16, u64) {
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap_or_default();
    (status, body["code"].as_u64().unwrap_or_default())
}

// --- If-Match ----------------------------------------------------------------------------

#[tokio::test]
async fn if_match_makes_update_and_delete_conditional() {
    let api = Api::local("ifmatch-app").await;
    let id = api
        .create(
            "owner",
            json!({"group_name": "g", "member_client_ids": "plain"}),
        )
        .await;
    let path = format!("/im/group/{id}");
    let put = |etag: &str, name: &str| {
        api.req("owner", Method::PUT, &path)
            .header("if-match", etag)
            .json(&json!({"group_name": name}))
            .send()
    };
    let (_, etag) = group(&api, "owner", id).await;

    let resp = put(&etag, "first").await;
    assert_eq!(resp.status(), 200);
    let fresh = resp.headers()["etag"].to_str().unwrap().to_owned();
    assert_ne!(fresh, etag);

    // The old ETag no longer matches: 412, and the group keeps the first change.
    let (status, code) = status_code(put(&etag, "second").await).await;
    assert_eq!((status, code), (412, 1012));
    // Weak ETags never match (If-Match compares strongly); unknown ones neither.
    let weak = format!("W/{fresh}");
    for tag in [weak.as_str(), "\"nope\"", "\"0\""] {
        assert_eq!(put(tag, "x").await.status(), 412, "{tag}");
    }
    assert_eq!(group(&api, "owner", id).await.0["group_name"], "first");
    // A list naming the current ETag matches, and so does `*`.
    let listed = format!("\"999\", {fresh}");
    assert_eq!(put(&listed, "listed").await.status(), 200);
    assert_eq!(put("*", "star").await.status(), 200);
    // Not an ETag at all: 400.
    for bad in ["3", "\"3", "W/3"] {
        assert_eq!(put(bad, "x").await.status(), 400, "{bad}");
    }

    // Who may not write gets 403 or 404 whatever the ETag says.
    let stale = |client: &'static str| {
        api.req(client, Method::PUT, &path)
            .header("if-match", "\"1\"")
            .json(&json!({"group_name": "x"}))
            .send()
    };
    assert_eq!(stale("plain").await.status(), 403);
    assert_eq!(stale("stranger").await.status(), 404);

    // DELETE: a stale ETag leaves the group; the current one deletes it.
    let (_, current) = group(&api, "owner", id).await;
    let delete = |etag: String| {
        api.req("owner", Method::DELETE, &path)
            .header("if-match", etag)
            .send()
    };
    let (status, code) = status_code(delete(etag.clone()).await).await;
    assert_eq!((status, code), (412, 1012));
    assert_eq!(api.get("owner", &path).await.status(), 200);
    assert_eq!(delete(current).await.status(), 204);
    assert_eq!(api.get("owner", &path).await.status(), 404);
}

#[tokio::test]
async fn concurrent_writes_with_the_same_etag_let_exactly_one_through() {
    let api = Api::local("ifmatch-race").await;
    let id = api
        .create(
            "owner",
            json!({"group_name": "race", "member_client_ids": "adm"}),
        )
        .await;
    let path = format!("/im/group/{id}");
    let (_, etag) = group(&api, "owner", id).await;
    let names: Vec<String> = (0..8).map(|i| format!("name-{i}")).collect();
    let results = join_all(names.iter().map(|name| {
        api.req("owner", Method::PUT, &path)
            .header("if-match", etag.as_str())
            .json(&json!({"group_name": name}))
            .send()
    }))
    .await;
    let mut winners = Vec::new();
    for (name, resp) in names.iter().zip(results) {
        match resp.status().as_u16() {
            200 => winners.push(name.clone()),
            412 => {}
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one write wins: {winners:?}");
    let (group, _) = group(&api, "owner", id).await;
    assert_eq!(group["group_name"], winners[0].as_str());
}

// --- ownership -------------------------------------------------------------------------

#[tokio::test]
async fn the_owner_hands_the_group_to_a_member() {
    let api = Api::local("owner-app").await;
    let id = api
        .create(
            "alice",
            json!({"group_name": "g", "member_client_ids": "bob:carol"}),
        )
        .await;
    let g = format!("/im/group/{id}");
    let owner = format!("{g}/owner");
    let admin = format!("{g}/admin");
    assert_eq!(
        api.send(
            "alice",
            Method::POST,
            &admin,
            Some(json!({"member_client_ids": "bob"}))
        )
        .await
        .status(),
        201
    );

    // Only the owner may hand it over, and only to a member.
    let to = |client: &str| Some(json!({"client_id": client}));
    assert_eq!(
        api.send("bob", Method::POST, &owner, to("bob"))
            .await
            .status(),
        403
    );
    assert_eq!(
        api.send("eve", Method::POST, &owner, to("eve"))
            .await
            .status(),
        404
    );
    let resp = api.send("alice", Method::POST, &owner, to("zed")).await;
    assert_eq!(status_code(resp).await, (409, 1009));
    for bad in [
        json!({"client_id": ""}),
        json!({"client_id": "a:b"}),
        json!({}),
    ] {
        assert_eq!(
            api.send("alice", Method::POST, &owner, Some(bad.clone()))
                .await
                .status()
                .as_u16()
                / 100,
            4,
            "{bad}"
        );
    }
    assert_eq!(group(&api, "alice", id).await.0["owner"], "alice");

    // Bob, a group admin, becomes the owner (and no longer an admin); alice a member.
    let resp = api.send("alice", Method::POST, &owner, to("bob")).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().contains_key("etag"));
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["owner"], "bob");
    assert_eq!(body["admins"], json!([]));
    let members: Value = api
        .get("bob", &format!("{g}/member"))
        .await
        .json()
        .await
        .unwrap();
    let role = |client: &str| {
        members["members"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["client_id"] == client)
            .map(|m| m["role"].as_str().unwrap().to_owned())
    };
    assert_eq!(role("bob").as_deref(), Some("owner"));
    assert_eq!(role("alice").as_deref(), Some("member"));

    // Alice may now leave but not delete; bob may delete.
    assert_eq!(
        api.req("alice", Method::DELETE, &g).send().await.status(),
        403
    );
    assert_eq!(
        api.send(
            "alice",
            Method::DELETE,
            &format!("{g}/member"),
            Some(json!({"member_client_ids": "alice"}))
        )
        .await
        .status(),
        204
    );
    assert_eq!(
        api.req("bob", Method::DELETE, &g).send().await.status(),
        204
    );
}

#[tokio::test]
async fn concurrent_transfers_leave_one_owner() {
    let api = Api::local("owner-race").await;
    let heirs: Vec<String> = (0..6).map(|i| format!("heir{i}")).collect();
    let id = api
        .create(
            "founder",
            json!({"group_name": "g", "member_client_ids": heirs}),
        )
        .await;
    let owner = format!("/im/group/{id}/owner");
    let results = join_all(heirs.iter().map(|h| {
        api.send(
            "founder",
            Method::POST,
            &owner,
            Some(json!({"client_id": h})),
        )
    }))
    .await;
    let statuses: Vec<u16> = results.iter().map(|r| r.status().as_u16()).collect();
    // The first transfer wins; the founder, a plain member by then, is refused the rest.
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 403),
        "{statuses:?}"
    );
    let winner = &heirs[statuses.iter().position(|s| *s == 200).unwrap()];
    assert_eq!(group(&api, "founder", id).await.0["owner"], winner.as_str());
}

// --- Idempotency-Key -------------------------------------------------------------------

#[tokio::test]
async fn a_retried_create_returns_the_first_group() {
    let api = Api::local("idem-app").await;
    let key = unique("key");
    let body = json!({"group_name": "once", "member_client_ids": ["b", "a"]});
    let create = |client: &str, key: &str, body: &Value| {
        api.req(client, Method::POST, "/im/group")
            .header("idempotency-key", key)
            .json(body)
            .send()
    };
    let first = create("alice", &key, &body).await;
    assert_eq!(first.status(), 201);
    assert!(!first.headers().contains_key("idempotent-replayed"));
    let first: Value = first.json().await.unwrap();

    // The same request again, even with the members in another order: the same answer,
    // no new group.
    let same = json!({"group_name": "once", "member_client_ids": "a:b"});
    let again = create("alice", &key, &same).await;
    assert_eq!(again.status(), 201);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.json::<Value>().await.unwrap(), first);
    assert_eq!(
        groups_of(&api, "alice").await,
        [first["group_id"].as_u64().unwrap()]
    );

    // The key with another request: 422, nothing created.
    let other = json!({"group_name": "twice"});
    let (status, code) = status_code(create("alice", &key, &other).await).await;
    assert_eq!((status, code), (422, 1022));
    assert_eq!(groups_of(&api, "alice").await.len(), 1);

    // Keys are per client: bob's identical key is his own.
    let bobs = create("bob", &key, &body).await;
    assert_eq!(bobs.status(), 201);
    assert_ne!(
        bobs.json::<Value>().await.unwrap()["group_id"],
        first["group_id"]
    );

    for bad in ["", &"k".repeat(256), "naïve"] {
        let resp = api
            .req("alice", Method::POST, "/im/group")
            .header("idempotency-key", bad.as_bytes())
            .json(&body)
            .send()
            .await;
        assert_eq!(resp.status(), 400, "{bad:?}");
    }
}

#[tokio::test]
async fn concurrent_retries_create_one_group() {
    let api = Api::local("idem-race").await;
    let key = unique("key");
    let results = join_all((0..8).map(|_| {
        api.req("carol", Method::POST, "/im/group")
            .header("idempotency-key", key.as_str())
            .json(&json!({"group_name": "raced"}))
            .send()
    }))
    .await;
    let mut ids = Vec::new();
    for resp in results {
        let resp = resp;
        assert_eq!(resp.status(), 201);
        ids.push(resp.json::<Value>().await.unwrap()["group_id"].clone());
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert_eq!(groups_of(&api, "carol").await.len(), 1);
}

#[tokio::test]
async fn idempotency_records_expire_through_dynamodb_ttl() {
    let api = Api::local("idem-ttl").await;
    let client = api.store.client();
    let table = api.store.table();
    let ttl = client
        .describe_time_to_live()
        .table_name(table)
        .send()
        .await
        .unwrap();
    let spec = ttl.time_to_live_description().unwrap();
    assert_eq!(spec.attribute_name(), Some("expires_at"));

    let key = unique("key");
    let create = |name: &str| {
        api.req("dora", Method::POST, "/im/group")
            .header("idempotency-key", key.as_str())
            .json(&json!({"group_name": name}))
            .send()
    };
    assert_eq!(create("first").await.status(), 201);
    let record_key = [
        ("pk", format!("IDEM#{}:dora:{key}", api.app.app_id)),
        ("sk", "IDEM".to_owned()),
    ]
    .map(|(k, v)| (k.to_owned(), AttributeValue::S(v)));
    let record = client
        .get_item()
        .table_name(table)
        .set_key(Some(record_key.clone().into()))
        .send()
        .await
        .unwrap();
    let expires: u64 = record.item().unwrap()["expires_at"]
        .as_n()
        .unwrap()
        .parse()
        .unwrap();
    let day = 24 * 60 * 60;
    assert!(expires.abs_diff(now_secs() + day) < 120, "{expires}");

    // A day later (the record's expiry moved into the past, as TTL would see it), the
    // key is free again even before DynamoDB removes the record.
    client
        .update_item()
        .table_name(table)
        .set_key(Some(record_key.into()))
        .update_expression("SET expires_at = :past")
        .expression_attribute_values(":past", AttributeValue::N((now_secs() - 1).to_string()))
        .send()
        .await
        .unwrap();
    let resp = create("second").await;
    assert_eq!(resp.status(), 201);
    assert!(!resp.headers().contains_key("idempotent-replayed"));
    assert_eq!(groups_of(&api, "dora").await.len(), 2);
}

// --- conversation links ----------------------------------------------------------------

#[tokio::test]
async fn a_conversation_belongs_to_one_group_and_its_rules_apply() {
    let api = Api::local("conv-app").await;
    let conv = unique("conv");
    let first = api
        .create(
            "owner",
            json!({"group_name": "a", "member_client_ids": "member"}),
        )
        .await;
    // Only the app's backend links conversations (the owner may not, see signing_rules.rs).
    assert_eq!(api.link(BACKEND, first, &conv).await, 200);
    // Another group cannot take the same conversation, on create or update.
    let resp = api
        .send(
            BACKEND,
            Method::POST,
            "/im/group",
            Some(json!({"group_name": "b", "conversation_id": conv})),
        )
        .await;
    assert_eq!(status_code(resp).await, (409, 1009));
    let second = api.create("other", json!({"group_name": "b"})).await;
    assert_eq!(api.link(BACKEND, second, &conv).await, 409);

    // The group's rules apply to the linked conversation's signatures.
    let a = api.app.app_id.clone();
    let kick = |client: &'static str| {
        api.get(
            client,
            format!("/signature/kick/{a}/{client}/{conv}/victim"),
        )
    };
    assert_eq!(kick("member").await.status(), 403);
    assert_eq!(kick("outsider").await.status(), 403);
    let resp = kick("owner").await;
    assert_eq!(resp.status(), 200);
    verify_signature_response(&resp.json().await.unwrap(), &api.app.master_key);
    let history =
        |client: &'static str| api.get(client, format!("/signature/history/{a}/{client}/{conv}"));
    assert_eq!(history("member").await.status(), 200);
    assert_eq!(history("outsider").await.status(), 403);

    // Moving the first group to another conversation frees the old one.
    let moved = unique("conv");
    assert_eq!(api.link(BACKEND, first, &moved).await, 200);
    assert_eq!(api.link(BACKEND, second, &conv).await, 200);
    // A warm server trusts a link it has read for IM_LINK_CACHE_SECONDS (10 by default):
    // within that, and never after, the first group's owner loses the kick.
    let moved_at = std::time::Instant::now();
    while kick("owner").await.status() == 200 {
        assert!(
            moved_at.elapsed() < std::time::Duration::from_secs(11),
            "conv is the second group's now"
        );
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    assert_eq!(
        kick("owner").await.status(),
        403,
        "conv is the second group's now"
    );
    // Deleting a group frees its conversation.
    assert_eq!(
        api.req("owner", Method::DELETE, &format!("/im/group/{first}"))
            .send()
            .await
            .status(),
        204
    );
    api.create(
        BACKEND,
        json!({"group_name": "c", "conversation_id": moved}),
    )
    .await;
}

#[tokio::test]
async fn concurrent_claims_on_one_conversation_give_it_to_one_group() {
    let api = Api::local("conv-race").await;
    let conv = unique("conv");
    let results = join_all((0..6).map(|_| {
        api.send(
            BACKEND,
            Method::POST,
            "/im/group",
            Some(json!({"group_name": "g", "conversation_id": conv})),
        )
    }))
    .await;
    let statuses: Vec<u16> = results.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 409).count(),
        5,
        "{statuses:?}"
    );
}
