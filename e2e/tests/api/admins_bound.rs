//! A group's admins are bounded (`IM_MAX_ADMINS`), exactly and under concurrent grants,
//! and a write DynamoDB refuses as too large is a 400 with the JSON error, never a 500.

use futures::future::join_all;
use im_e2e::http::Api;
use im_e2e::stack::serve;
use reqwest::Method;
use serde_json::{json, Value};

async fn configured(prefix: &str, settings: &[(&str, &str)]) -> Api {
    Api::at(serve(settings).await, prefix).await
}

async fn grant(api: &Api, id: u64, ids: &str) -> (u16, Value) {
    let resp = api
        .send(
            "owner",
            Method::POST,
            format!("/im/group/{id}/admin"),
            Some(json!({ "member_client_ids": ids })),
        )
        .await;
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn admins(api: &Api, id: u64) -> Vec<String> {
    let resp = api.get("owner", format!("/im/group/{id}")).await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    let mut ids: Vec<String> = body["admins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn a_grant_past_the_admin_bound_is_refused_and_one_within_it_is_not() {
    let api = configured("admins-max", &[("IM_MAX_ADMINS", "3")]).await;
    let id = api
        .create(
            "owner",
            json!({"group_name": "g", "member_client_ids": "a:b:c:d:e"}),
        )
        .await;
    assert_eq!(grant(&api, id, "a:b").await.0, 201);
    let (status, body) = grant(&api, id, "c:d").await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["msg"].as_str().unwrap().contains("at most 3 admins"),
        "{body}"
    );
    assert_eq!(admins(&api, id).await, ["a", "b"], "nobody was granted");
    // Exact, not "every id is new": a and b are admins already, c makes three.
    assert_eq!(grant(&api, id, "a:b:c").await.0, 201);
    assert_eq!(admins(&api, id).await, ["a", "b", "c"]);
    assert_eq!(grant(&api, id, "d").await.0, 409);
    // A revoke makes room again.
    let resp = api
        .send(
            "owner",
            Method::DELETE,
            format!("/im/group/{id}/admin?member_client_ids=a"),
            None,
        )
        .await;
    assert_eq!(resp.status(), 204);
    assert_eq!(grant(&api, id, "d").await.0, 201);
}

#[tokio::test]
async fn concurrent_grants_never_pass_the_admin_bound() {
    let api = configured("admins-race", &[("IM_MAX_ADMINS", "3")]).await;
    let members: Vec<String> = (0..12).map(|i| format!("m{i}")).collect();
    let id = api
        .create(
            "owner",
            json!({"group_name": "g", "member_client_ids": members.join(":")}),
        )
        .await;
    let statuses: Vec<u16> = join_all(members.iter().map(|m| grant(&api, id, m)))
        .await
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        3,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == 201 || *s == 409),
        "{statuses:?}"
    );
    assert_eq!(admins(&api, id).await.len(), 3);
}

#[tokio::test]
async fn a_write_past_dynamodbs_item_size_is_a_400_not_a_500() {
    // Settings that let one group item outgrow DynamoDB's 400 KB: 1,000 admins of
    // 1,000-byte ids. The defaults (100 admins of 64) keep it under 7 KB.
    let api = configured(
        "admins-size",
        &[
            ("IM_MAX_ADMINS", "1000"),
            ("IM_MAX_ID_CHARS", "1000"),
            ("IM_MAX_BODY_BYTES", "1048576"),
        ],
    )
    .await;
    let id = api
        .create(
            "owner",
            json!({"group_name": "big", "member_client_ids": "x"}),
        )
        .await;
    let mut last = (0, Value::Null);
    for batch in 0..6 {
        let ids: Vec<String> = (0..90)
            .map(|i| format!("{batch:02}{i:02}{}", "y".repeat(996)))
            .collect();
        let joined = ids.join(":");
        let resp = api
            .send(
                "owner",
                Method::POST,
                format!("/im/group/{id}/member"),
                Some(json!({ "member_client_ids": joined })),
            )
            .await;
        assert_eq!(resp.status(), 201, "members are items of their own");
        last = grant(&api, id, &joined).await;
        if last.0 != 201 {
            break;
        }
    }
    assert_eq!(last.0, 400, "{}", last.1);
    assert!(
        last.1["msg"].as_str().unwrap().contains("larger"),
        "{}",
        last.1
    );
    // The group is as the last grant that went through left it: whole batches only.
    let meta = api.store.group_meta(id).await.unwrap().unwrap();
    assert!(meta.admins.len() % 90 == 0 && !meta.admins.is_empty());
}
