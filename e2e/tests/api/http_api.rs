//! Every route over HTTP against the local server (`im-local`), happy paths and bad
//! input. Signatures are checked against Python's HMAC.

use std::sync::Arc;

use im_e2e::http::{self, created_group};
use im_e2e::openapi::Checked;
use im_e2e::signatures::verify_signature_response;
use im_shared::store::DynamoStore;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// The shared client acting as one client of its app: every request carries that
/// client's token.
#[derive(Clone)]
struct Api {
    server: http::Api,
    store: DynamoStore,
    app: String,
    key: String,
    /// Sent as `Authorization: Bearer ...`.
    token: String,
}

/// A client of the local server, with a new app registered in its table, acting as
/// client `alice`.
async fn api() -> Api {
    let server = http::Api::local("http-app").await;
    Api {
        store: server.store.clone(),
        app: server.app.app_id.clone(),
        key: server.app.master_key.clone(),
        token: server.app.token("alice"),
        server,
    }
}

impl Api {
    /// The same app, acting as `client`.
    fn as_client(&self, client: &str) -> Api {
        Api {
            token: self.server.app.token(client),
            ..self.clone()
        }
    }

    /// The same app, acting as its backend (`role: admin`).
    fn as_app_admin(&self) -> Api {
        Api {
            token: self.server.app.admin_token("backend"),
            ..self.clone()
        }
    }

    /// Every response is checked against openapi.yaml before a test sees it.
    async fn send(&self, method: Method, path: &str, body: Option<Value>) -> Checked {
        self.server
            .request(method, path)
            .bearer(&self.token)
            .send_json(body)
            .await
    }

    async fn raw(&self, method: Method, path: &str, content_type: &str, body: &str) -> Checked {
        self.server
            .request(method, path)
            .bearer(&self.token)
            .body(content_type, body)
            .send()
            .await
    }

    async fn get(&self, path: &str) -> Checked {
        self.send(Method::GET, path, None).await
    }

    async fn create(&self, name: &str, members: &str) -> u64 {
        let body = json!({"group_name": name, "member_client_ids": members});
        created_group(self.send(Method::POST, "/im/group", Some(body)).await).await
    }
}

/// Asserts the error status and the one JSON error shape, and returns `msg`.
async fn error(resp: Checked, status: u16, request: &str) -> String {
    assert_eq!(resp.status().as_u16(), status, "for {request}");
    assert_eq!(
        resp.headers()["content-type"].to_str().unwrap(),
        "application/json"
    );
    let body: Value = resp.json().await.unwrap();
    let obj = body.as_object().unwrap();
    assert_eq!(obj.len(), 3, "{body}");
    assert!(body["code"].as_u64().unwrap() >= 1000, "{body}");
    assert_eq!(body["request"], request, "{body}");
    body["msg"].as_str().unwrap().to_owned()
}

async fn ok_json(resp: Checked, status: u16) -> Value {
    assert_eq!(resp.status().as_u16(), status);
    resp.json().await.unwrap()
}

// --- signatures --------------------------------------------------------------------

#[tokio::test]
async fn login_signature_verifies_and_is_not_cacheable() {
    let api = api().await;
    let resp = api
        .get(&format!("/signature/login/{}/alice", api.app))
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["app_id"], api.app.as_str());
    assert_eq!(body["client_id"], "alice");
    assert!(body.get("sorted_member_ids").is_none());
    assert_eq!(body.as_object().unwrap().len(), 5);
    verify_signature_response(&body, &api.key);
    // A fresh nonce every time.
    let again: Value = api
        .get(&format!("/signature/login/{}/alice", api.app))
        .await
        .json()
        .await
        .unwrap();
    assert_ne!(body["nonce"], again["nonce"]);
}

#[tokio::test]
async fn path_segments_are_signed_after_url_decoding() {
    let api = api().await.as_app_admin();
    let body = ok_json(
        api.get(&format!("/signature/login/{}/al%20ice%E4%B8%AD+x", api.app))
            .await,
        200,
    )
    .await;
    assert_eq!(body["client_id"], "al ice中+x");
    verify_signature_response(&body, &api.key);
}

#[tokio::test]
async fn conversation_signature_both_spellings_sorted_and_deduplicated() {
    let api = api().await;
    for spelling in ["conversion", "conversation"] {
        let body = ok_json(
            api.get(&format!(
                "/signature/{spelling}/{}/alice/u9:u10:Bob:u9",
                api.app
            ))
            .await,
            200,
        )
        .await;
        assert_eq!(body["sorted_member_ids"], "Bob:u10:u9");
        assert!(body.get("action").is_none());
        verify_signature_response(&body, &api.key);
    }
}

#[tokio::test]
async fn invite_kick_and_join_signatures() {
    let api = api().await;
    for action in ["invite", "kick"] {
        let body = ok_json(
            api.get(&format!(
                "/signature/{action}/{}/alice/conv-7/carol:bob",
                api.app
            ))
            .await,
            200,
        )
        .await;
        assert_eq!(body["action"], action);
        assert_eq!(body["conversion_id"], "conv-7");
        assert_eq!(body["sorted_member_ids"], "bob:carol");
        assert_eq!(body.as_object().unwrap().len(), 8);
        verify_signature_response(&body, &api.key);
    }
    // A join: no member segment, with or without the trailing slash.
    for path in [
        "/signature/invite/{app}/alice/conv-7",
        "/signature/invite/{app}/alice/conv-7/",
    ] {
        let body = ok_json(api.get(&path.replace("{app}", &api.app)).await, 200).await;
        assert_eq!(body["sorted_member_ids"], "");
        verify_signature_response(&body, &api.key);
    }
}

#[tokio::test]
async fn history_and_block_signatures() {
    let api = api().await;
    let a = &api.app;
    let cases = [
        (
            format!("/signature/history/{a}/alice/conv-9"),
            "history",
            None,
        ),
        (
            format!("/signature/block/{a}/alice/conv-9"),
            "client-block-conversations",
            None,
        ),
        (
            format!("/signature/unblock/{a}/alice/conv-9"),
            "client-unblock-conversations",
            None,
        ),
        (
            format!("/signature/conversation-block/{a}/alice/conv-9/zed:bob:zed"),
            "conversation-block-clients",
            Some("bob:zed"),
        ),
        (
            format!("/signature/conversation-unblock/{a}/alice/conv-9/bob"),
            "conversation-unblock-clients",
            Some("bob"),
        ),
    ];
    for (path, action, members) in cases {
        let body = ok_json(api.get(&path).await, 200).await;
        assert_eq!(body["action"], action);
        assert_eq!(body["conversation_id"], "conv-9");
        assert_eq!(
            body.get("sorted_member_ids").and_then(|m| m.as_str()),
            members
        );
        verify_signature_response(&body, &api.key);
    }
    // The conversation id is checked like any id.
    let path = format!("/signature/history/{a}/alice/c%3A1");
    error(api.get(&path).await, 400, &format!("GET {path}")).await;
}

#[tokio::test]
async fn a_removed_app_is_401_and_another_app_is_403() {
    let api = api().await;
    let other = "no-such-app";
    error(
        api.get(&format!("/signature/login/{other}/alice")).await,
        403,
        &format!("GET /signature/login/{other}/alice"),
    )
    .await;
    // Removing the app retires its token keys; a warm process that still holds the key
    // finds no app behind the token: it speaks for nobody (signing_rules.rs checks the
    // retirement once the cache has run out).
    api.store.remove_app(&api.app).await.unwrap();
    let path = format!("/signature/login/{}/alice", api.app);
    let msg = error(api.get(&path).await, 401, &format!("GET {path}")).await;
    assert_eq!(msg, "unauthorized");
}

#[tokio::test]
async fn bad_signature_input_is_400() {
    let api = api().await.as_app_admin();
    let a = &api.app;
    let long = "x".repeat(65);
    let ok64 = "y".repeat(64);
    let many: Vec<String> = (0..101).map(|i| format!("u{i}")).collect();
    let cases = [
        format!("/signature/login/{a}/{long}"),
        format!("/signature/login/{long}/alice"),
        format!("/signature/login/{a}/al%3Aice"),
        format!("/signature/login/{a}/al%07ice"),
        format!("/signature/login/{a}/al%0Aice"),
        format!("/signature/login/{a}/%FF%FE"),
        format!("/signature/conversion/{a}/alice/bob::carol"),
        format!("/signature/conversion/{a}/alice/bob:"),
        format!("/signature/conversion/{a}/alice/{}", many.join(":")),
        format!("/signature/conversion/{a}/alice/bob:{long}"),
        format!("/signature/invite/{a}/alice/{long}/bob"),
        format!("/signature/kick/{a}/alice/conv%3A1/bob"),
    ];
    for path in cases {
        error(api.get(&path).await, 400, &format!("GET {path}")).await;
    }
    // The limits' edges are accepted.
    ok_json(api.get(&format!("/signature/login/{a}/{ok64}")).await, 200).await;
    ok_json(
        api.get(&format!(
            "/signature/conversion/{a}/alice/{}",
            many[..100].join(":")
        ))
        .await,
        200,
    )
    .await;
}

// --- groups ------------------------------------------------------------------------

#[tokio::test]
async fn create_group_json_and_form() {
    let api = api().await;
    let body = ok_json(
        api.send(
            Method::POST,
            "/im/group",
            Some(json!({"group_name": "666", "member_client_ids": "o12:u232:p23"})),
        )
        .await,
        201,
    )
    .await;
    let id = body["group_id"]
        .as_u64()
        .expect("group_id is a JSON integer");
    assert_eq!(body["group_name"], "666");
    assert_eq!(body["owner"], "alice");
    assert_eq!(
        body["member_client_ids"], "alice:o12:p23:u232",
        "the creator is a member"
    );
    assert_eq!(
        api.store.group_members(id).await.unwrap(),
        ["alice", "o12", "p23", "u232"]
    );

    let body = ok_json(
        api.raw(
            Method::POST,
            "/im/group",
            "application/x-www-form-urlencoded",
            "group_name=%E7%BE%A4&member_client_ids=b%3Aa",
        )
        .await,
        201,
    )
    .await;
    assert_eq!(body["group_name"], "群");
    assert_eq!(body["member_client_ids"], "a:alice:b");
    assert!(
        body["group_id"].as_u64().unwrap() > id,
        "ids grow and are never reused"
    );

    let body = ok_json(
        api.send(
            Method::POST,
            "/im/group",
            Some(json!({"group_name": "arr", "member_client_ids": ["z", "y"]})),
        )
        .await,
        201,
    )
    .await;
    assert_eq!(body["member_client_ids"], "alice:y:z");
}

#[tokio::test]
async fn rename_add_remove_delete() {
    let api = api().await;
    let id = api.create("team", "alice:bob").await;
    let g = format!("/im/group/{id}");

    let body = ok_json(
        api.send(Method::PUT, &g, Some(json!({"group_name": "g123"})))
            .await,
        200,
    )
    .await;
    assert_eq!(body["group_name"], "g123", "the full group comes back");
    assert_eq!(body["group_id"], id);
    assert_eq!(
        api.store.group_meta(id).await.unwrap().unwrap().group_name,
        "g123"
    );

    let member = format!("{g}/member");
    let body = ok_json(
        api.raw(
            Method::POST,
            &member,
            "application/x-www-form-urlencoded",
            &format!("member_client_ids=775%3A667&group_id={id}"),
        )
        .await,
        201,
    )
    .await;
    assert_eq!(
        body,
        json!({"group_id": id, "member_client_ids": "667:775"})
    );
    // Already members: not an error.
    ok_json(
        api.send(
            Method::POST,
            &member,
            Some(json!({"member_client_ids": "alice:667", "group_id": id})),
        )
        .await,
        201,
    )
    .await;
    assert_eq!(
        api.store.group_members(id).await.unwrap(),
        ["667", "775", "alice", "bob"]
    );

    // Remove with a body, then with the query string.
    let r = api
        .send(
            Method::DELETE,
            &member,
            Some(json!({"member_client_ids": ["667"]})),
        )
        .await;
    assert_eq!(r.status(), 204);
    let r = api
        .send(
            Method::DELETE,
            &format!("{member}?member_client_ids=775%3Abob"),
            None,
        )
        .await;
    assert_eq!(r.status(), 204);
    assert_eq!(api.store.group_members(id).await.unwrap(), ["alice"]);

    let r = api.send(Method::DELETE, &g, None).await;
    assert_eq!(r.status(), 204);
    assert!(r.text().await.unwrap().is_empty());
    // Gone from every group route.
    error(
        api.send(Method::DELETE, &g, None).await,
        404,
        &format!("DELETE {g}"),
    )
    .await;
    error(
        api.send(Method::PUT, &g, Some(json!({"group_name": "x"})))
            .await,
        404,
        &format!("PUT {g}"),
    )
    .await;
    error(
        api.send(
            Method::POST,
            &member,
            Some(json!({"member_client_ids": "x"})),
        )
        .await,
        404,
        &format!("POST {member}"),
    )
    .await;
    error(
        api.send(
            Method::DELETE,
            &member,
            Some(json!({"member_client_ids": "alice"})),
        )
        .await,
        404,
        &format!("DELETE {member}"),
    )
    .await;
    assert!(api.store.group_members(id).await.unwrap().is_empty());
}

#[tokio::test]
async fn unknown_group_is_404_on_every_group_route() {
    let api = api().await;
    let g = "/im/group/987654321";
    error(
        api.send(Method::PUT, g, Some(json!({"group_name": "x"})))
            .await,
        404,
        &format!("PUT {g}"),
    )
    .await;
    error(
        api.send(Method::DELETE, g, None).await,
        404,
        &format!("DELETE {g}"),
    )
    .await;
    let m = format!("{g}/member");
    error(
        api.send(Method::POST, &m, Some(json!({"member_client_ids": "x"})))
            .await,
        404,
        &format!("POST {m}"),
    )
    .await;
    error(
        api.send(Method::DELETE, &m, Some(json!({"member_client_ids": "x"})))
            .await,
        404,
        &format!("DELETE {m}"),
    )
    .await;
}

#[tokio::test]
async fn bad_group_input() {
    let api = api().await;
    let id = api.create("t", "a").await;
    let g = format!("/im/group/{id}");
    let m = format!("{g}/member");
    // Removals are one transaction (96 at most); creates and adds take up to the largest
    // max_members, and a create must fit its own (500 by default, with the owner).
    let too_many: Vec<String> = (0..97).map(|i| format!("u{i}")).collect();
    let over_any_group: Vec<String> = (0..5001).map(|i| format!("u{i}")).collect();
    let over_default: Vec<String> = (0..500).map(|i| format!("u{i}")).collect();
    let cases: Vec<(Method, String, &str, String, u16)> = vec![
        // 400: values
        (Method::POST, "/im/group".into(), "application/json", json!({"group_name": ""}).to_string(), 400),
        (Method::POST, "/im/group".into(), "application/json", json!({"group_name": "   "}).to_string(), 400),
        (Method::POST, "/im/group".into(), "application/json", json!({"group_name": "x".repeat(129)}).to_string(), 400),
        (Method::POST, "/im/group".into(), "application/json", json!({"group_name": "a\u{1}b"}).to_string(), 400),
        (Method::POST, "/im/group".into(), "application/json", json!({"group_name": "g", "member_client_ids": "a:b:c:d".replace('d', &"d".repeat(65))}).to_string(), 400),
        (Method::POST, "/im/group".into(), "application/json", json!({"group_name": "g", "member_client_ids": over_any_group.join(":")}).to_string(), 400),
        (Method::POST, "/im/group".into(), "application/json", json!({"group_name": "g", "member_client_ids": over_default.join(":")}).to_string(), 400),
        (Method::POST, m.clone(), "application/json", json!({"member_client_ids": over_any_group}).to_string(), 400),
        (Method::DELETE, m.clone(), "application/json", json!({"member_client_ids": too_many}).to_string(), 400),
        (Method::POST, "/im/group".into(), "application/json", json!({"group_name": "g", "member_client_ids": ["a:b"]}).to_string(), 400),
        (Method::POST, "/im/group".into(), "application/json", "{not json".into(), 400),
        (Method::POST, m.clone(), "application/json", json!({"member_client_ids": ""}).to_string(), 400),
        (Method::POST, m.clone(), "application/json", json!({"member_client_ids": "a::b"}).to_string(), 400),
        (Method::POST, m.clone(), "application/json", json!({"member_client_ids": "a", "group_id": id + 1}).to_string(), 400),
        (Method::PUT, "/im/group/abc".into(), "application/json", json!({"group_name": "x"}).to_string(), 400),
        (Method::PUT, "/im/group/0".into(), "application/json", json!({"group_name": "x"}).to_string(), 400),
        (Method::DELETE, "/im/group/-1".into(), "application/json", String::new(), 400),
        (Method::DELETE, m.clone(), "application/json", String::new(), 422),
        // 415, 422
        (Method::POST, "/im/group".into(), "text/plain", "group_name=x".into(), 415),
        (Method::PUT, g.clone(), "application/xml", "<x/>".into(), 415),
        (Method::POST, "/im/group".into(), "application/json", json!({"name": "x"}).to_string(), 422),
        (Method::POST, "/im/group".into(), "application/json", json!({"group_name": 5}).to_string(), 422),
        (Method::POST, "/im/group".into(), "application/json", json!(["g"]).to_string(), 422),
        (Method::POST, m.clone(), "application/json", json!({"member_client_ids": 3}).to_string(), 422),
        (Method::POST, m.clone(), "application/x-www-form-urlencoded", "members=a".into(), 422),
        // 413
        (Method::POST, "/im/group".into(), "application/json", json!({"group_name": "x".repeat(385 * 1024)}).to_string(), 413),
    ];
    for (method, path, ct, body, status) in cases {
        let request = format!("{method} {path}");
        let resp = api.raw(method, &path, ct, &body).await;
        error(resp, status, &request).await;
    }
    // None of it changed the group.
    assert_eq!(api.store.group_members(id).await.unwrap(), ["a", "alice"]);
    assert_eq!(
        api.store.group_meta(id).await.unwrap().unwrap().group_name,
        "t"
    );
}

#[tokio::test]
async fn health_is_open_and_everything_else_needs_a_token() {
    let api = api().await;
    let resp = api.server.request(Method::GET, "/health").send().await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<Value>().await.unwrap(), json!({"status": "ok"}));
    let path = format!("/signature/login/{}/alice", api.app);
    let resp = api.server.request(Method::GET, &path).send().await;
    assert_eq!(resp.headers()["www-authenticate"], "Bearer realm=\"im\"");
    error(resp, 401, &format!("GET {path}")).await;
}

#[tokio::test]
async fn unknown_routes_and_methods() {
    let api = api().await;
    error(api.get("/nope").await, 404, "GET /nope").await;
    error(
        api.get("/signature/login/a").await,
        404,
        "GET /signature/login/a",
    )
    .await;
    error(
        api.send(Method::PATCH, "/im/group/1", None).await,
        405,
        "PATCH /im/group/1",
    )
    .await;
    error(api.get("/im/group").await, 405, "GET /im/group").await;
    error(
        api.send(Method::POST, "/signature/login/a/b", None).await,
        405,
        "POST /signature/login/a/b",
    )
    .await;
}

#[tokio::test]
async fn concurrent_member_requests_on_one_group_lose_nothing() {
    let api = Arc::new(api().await);
    let leaving: Vec<String> = (0..20).map(|i| format!("leave{i:02}")).collect();
    let id = api.create("busy", &leaving.join(":")).await;
    let member = format!("/im/group/{id}/member");
    let mut tasks = Vec::new();
    for i in 0..20 {
        let (api, member) = (api.clone(), member.clone());
        tasks.push(tokio::spawn(async move {
            api.send(
                Method::POST,
                &member,
                Some(json!({"member_client_ids": format!("join{i:02}")})),
            )
            .await
            .status()
        }));
    }
    for who in leaving {
        // Half are removed by the owner, half leave by themselves.
        let api = Arc::new(if who.ends_with(['0', '2', '4', '6', '8']) {
            api.as_client(&who)
        } else {
            (*api).clone()
        });
        let member = member.clone();
        tasks.push(tokio::spawn(async move {
            api.send(
                Method::DELETE,
                &format!("{member}?member_client_ids={who}"),
                None,
            )
            .await
            .status()
        }));
    }
    for t in futures::future::join_all(tasks).await {
        let status = t.unwrap();
        assert!(
            status == StatusCode::CREATED || status == StatusCode::NO_CONTENT,
            "{status}"
        );
    }
    let mut expected: Vec<String> = (0..20).map(|i| format!("join{i:02}")).collect();
    expected.insert(0, "alice".into());
    assert_eq!(api.store.group_members(id).await.unwrap(), expected);
}

#[tokio::test]
async fn read_a_group_its_members_and_my_groups() {
    let api = api().await;
    let body = ok_json(
        api.send(
            Method::POST,
            "/im/group",
            Some(json!({
                "group_name": "readers",
                "member_client_ids": ["bob", "carol", "dave"],
                "avatar_url": "https://cdn.example.com/a.png",
                "description": "line one\nline two",
                "max_members": 5
            })),
        )
        .await,
        201,
    )
    .await;
    let id = body["group_id"].as_u64().unwrap();
    let g = format!("/im/group/{id}");
    // Only the app's backend links a conversation (signing_rules.rs tests who may not).
    ok_json(
        api.as_app_admin()
            .send(
                Method::PUT,
                &g,
                Some(json!({"conversation_id": "conv-readers"})),
            )
            .await,
        200,
    )
    .await;
    let resp = api.as_client("bob").get(&g).await;
    assert_eq!(resp.status(), 200);
    let etag = resp.headers()["etag"].to_str().unwrap().to_owned();
    let group: Value = resp.json().await.unwrap();
    assert_eq!(group["owner"], "alice");
    assert_eq!(group["member_count"], 4);
    assert_eq!(group["max_members"], 5);
    assert_eq!(group["admins"], json!([]));
    assert_eq!(group["conversation_id"], "conv-readers");
    assert_eq!(group["avatar_url"], "https://cdn.example.com/a.png");
    assert_eq!(group["description"], "line one\nline two");
    for t in ["created_at", "updated_at"] {
        let v = group[t].as_str().unwrap();
        assert!(v.ends_with('Z') && v.contains('T'), "{t}: {v}");
    }
    // Partial update: only the fields given change, the version (ETag) moves on.
    let resp = api
        .send(Method::PUT, &g, Some(json!({"description": "new"})))
        .await;
    assert_ne!(resp.headers()["etag"].to_str().unwrap(), etag);
    let updated: Value = resp.json().await.unwrap();
    assert_eq!(updated["description"], "new");
    assert_eq!(updated["group_name"], "readers");
    error(
        api.send(Method::PUT, &g, Some(json!({}))).await,
        400,
        &format!("PUT {g}"),
    )
    .await;

    // Members, two at a time, with roles.
    let mut seen = Vec::new();
    let mut next: Option<String> = None;
    loop {
        let path = match &next {
            Some(c) => format!("{g}/member?limit=2&cursor={c}"),
            None => format!("{g}/member?limit=2"),
        };
        let page = ok_json(api.get(&path).await, 200).await;
        for m in page["members"].as_array().unwrap() {
            seen.push(format!(
                "{}={}",
                m["client_id"].as_str().unwrap(),
                m["role"].as_str().unwrap()
            ));
            assert!(m["joined_at"].is_string());
        }
        match page["next_cursor"].as_str() {
            Some(c) => next = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(
        seen,
        ["alice=owner", "bob=member", "carol=member", "dave=member"]
    );
    // The error's `request` names the path, not the query.
    for query in ["cursor=not-a-cursor", "limit=101", "limit=0"] {
        let bad = format!("{g}/member?{query}");
        error(api.get(&bad).await, 400, &format!("GET {g}/member")).await;
    }
    // Non-members learn nothing.
    error(
        api.as_client("mallory").get(&g).await,
        404,
        &format!("GET {g}"),
    )
    .await;

    // The member limit: one more fits, two more do not (and add nobody).
    let member = format!("{g}/member");
    let msg = error(
        api.send(
            Method::POST,
            &member,
            Some(json!({"member_client_ids": "e1:e2"})),
        )
        .await,
        409,
        &format!("POST {member}"),
    )
    .await;
    assert!(msg.contains("4 of at most 5"), "{msg}");
    ok_json(
        api.send(
            Method::POST,
            &member,
            Some(json!({"member_client_ids": "e1"})),
        )
        .await,
        201,
    )
    .await;
    let too_big = json!({"group_name": "x", "member_client_ids": "a:b", "max_members": 2});
    error(
        api.send(Method::POST, "/im/group", Some(too_big)).await,
        400,
        "POST /im/group",
    )
    .await;
    let over = json!({"group_name": "x", "max_members": 5001});
    error(
        api.send(Method::POST, "/im/group", Some(over)).await,
        400,
        "POST /im/group",
    )
    .await;

    // My groups; only I (or the app's backend) may ask.
    let mine = ok_json(
        api.as_client("carol").get("/im/user/carol/groups").await,
        200,
    )
    .await;
    assert_eq!(
        mine["groups"],
        json!([{"group_id": id, "group_name": "readers", "role": "member", "member_count": 5,
            "conversation_id": "conv-readers"}])
    );
    assert_eq!(mine["next_cursor"], Value::Null);
    error(
        api.get("/im/user/carol/groups").await,
        403,
        "GET /im/user/carol/groups",
    )
    .await;
    ok_json(api.as_app_admin().get("/im/user/carol/groups").await, 200).await;
}

/// Ids a path through an API Gateway HTTP API cannot carry intact, sent as `%2F`, `%3F`,
/// `%23` and `%25`: a 400 in the one error shape from every route that takes an id in its
/// path, and from the group writes that take one in their body. The Lambda path refuses
/// them the same way (`lambda_events`'s `events/decoded/`), where API Gateway has
/// already decoded them.
#[tokio::test]
async fn ids_a_path_cannot_carry_are_refused_by_every_route() {
    let api = api().await;
    let group = api.create("escapes", "bob").await;
    let valid = |name: &str| match name {
        "app_id" => api.app.clone(),
        "client_id" => "alice".to_owned(),
        "group_id" => group.to_string(),
        "sorted_member_ids" => "bob".to_owned(),
        _ => "conv-1".to_owned(),
    };
    let refused = |resp: Checked, what: String, c: Option<char>| async move {
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{what}");
        let b: Value = resp.json().await.unwrap();
        assert_eq!(b["code"], 1000, "{what}: {b}");
        if let Some(c) = c {
            let msg = b["msg"].as_str().unwrap();
            assert!(
                msg.contains(&format!("must not contain '{c}'")),
                "{what}: {msg}"
            );
        }
    };
    let mut rows = 0;
    for route in im_shared::routes::ROUTES {
        let names: Vec<&str> = route
            .path
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
            .collect();
        for &name in &names {
            for (escape, c) in [("%2F", '/'), ("%3F", '?'), ("%23", '#'), ("%25", '%')] {
                let mut path = route.path.to_owned();
                for &n in &names {
                    let value = if n == name {
                        format!("a{escape}41")
                    } else {
                        valid(n)
                    };
                    path = path.replace(&format!("{{{n}}}"), &value);
                }
                let method = Method::from_bytes(route.method.as_bytes()).unwrap();
                let body = (route.method != "GET").then(|| json!({}));
                let resp = api.send(method, &path, body).await;
                // Tencent's callbacks refuse in the body, as for every call they cannot
                // take (an error status would let Tencent's "before" event proceed).
                if route.function == im_shared::routes::Function::TencentCallback {
                    assert_eq!(resp.status(), StatusCode::OK, "{path}");
                    let b: Value = resp.json().await.unwrap();
                    assert_eq!(b["ActionStatus"], "FAIL", "{path}: {b}");
                    rows += 1;
                    continue;
                }
                // A group id is digits only, refused with its own message.
                let c = (name != "group_id").then_some(c);
                refused(resp, format!("{} {path}", route.method), c).await;
                rows += 1;
            }
        }
    }
    assert!(rows > 60, "{rows} rows");

    let members = format!("/im/group/{group}/member");
    let bodies = [
        (
            Method::POST,
            "/im/group".to_owned(),
            json!({"group_name": "g", "member_client_ids": "bob:a/b"}),
            '/',
        ),
        (
            Method::POST,
            members.clone(),
            json!({"member_client_ids": "a?b"}),
            '?',
        ),
        (
            Method::DELETE,
            members,
            json!({"member_client_ids": ["bob", "a#b"]}),
            '#',
        ),
        (
            Method::POST,
            format!("/im/group/{group}/admin"),
            json!({"member_client_ids": "a%41"}),
            '%',
        ),
        (
            Method::POST,
            format!("/im/group/{group}/owner"),
            json!({"client_id": "b/ob"}),
            '/',
        ),
        (
            Method::PUT,
            format!("/im/group/{group}"),
            json!({"conversation_id": "c?d"}),
            '?',
        ),
    ];
    for (method, path, body, c) in bodies {
        let what = format!("{method} {path} {body}");
        refused(api.send(method, &path, Some(body)).await, what, Some(c)).await;
    }
    // Nothing of that reached the group.
    let page: Value = api
        .get(&format!("/im/group/{group}/member"))
        .await
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = page["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["client_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["alice", "bob"], "{page}");
}
