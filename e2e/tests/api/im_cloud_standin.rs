//! The IM cloud stand-in (`im_e2e::im_cloud`) against the vendor's documented contract,
//! over HTTP, needing no service: the two headers, the conversation, member and message
//! endpoints and their answers, refusals of shapes the documentation does not allow, and
//! each injected fault, including an answer lost after the change was made.

use std::time::Duration;

use futures::future::join_all;
use im_e2e::im_cloud::{Fault, FaultKind, FaultTiming, ImCloudStandIn};
use im_e2e::stack::{test_key, unique};
use reqwest::Method;
use serde_json::{json, Value};

const CONVERSATIONS: &str = "/1.2/rtm/conversations";
/// Well formed, but no conversation has it.
const MISSING: &str = "0123456789abcdef01234567";

/// A stand-in, and a client that sends the app's credentials.
struct Cloud {
    standin: ImCloudStandIn,
    http: reqwest::Client,
    app_id: String,
    master_key: String,
}

impl Cloud {
    async fn start() -> Self {
        Self::with_timeout(Duration::from_secs(10)).await
    }

    async fn with_timeout(timeout: Duration) -> Self {
        let app_id = unique("app");
        let master_key = test_key();
        Self {
            standin: ImCloudStandIn::start(&app_id, &master_key).await,
            http: im_e2e::http::client_builder()
                .timeout(timeout)
                .build()
                .unwrap(),
            app_id,
            master_key,
        }
    }

    fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.standin.url()))
            .header("X-LC-Id", &self.app_id)
            .header("X-LC-Key", format!("{},master", self.master_key))
    }

    /// Sends `body` as JSON (when there is one); the status and the JSON answer.
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self.request(method, path);
        if let Some(body) = body {
            request = request.json(&body);
        }
        answer(request.send().await.unwrap()).await
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.call(Method::GET, path, None).await
    }

    /// A conversation for group `group_id` with `members`; its id.
    async fn create(&self, group_id: u64, members: &[&str]) -> String {
        let (status, created) = self
            .call(
                Method::POST,
                CONVERSATIONS,
                Some(json!({"name": format!("group {group_id}"), "m": members,
                            "attr": {"type": "group", "group_id": group_id}})),
            )
            .await;
        assert_eq!(status, 201, "{created}");
        created["objectId"].as_str().unwrap().to_string()
    }

    /// The `results` of a query with this `where`.
    async fn query(&self, filter: Value) -> Vec<Value> {
        let (status, found) = self
            .call(
                Method::GET,
                &format!("{CONVERSATIONS}?where={}", encode(&filter.to_string())),
                None,
            )
            .await;
        assert_eq!(status, 200, "{found}");
        found["results"].as_array().unwrap().clone()
    }

    async fn members(&self, id: &str) -> Value {
        let (status, members) = self.get(&format!("{CONVERSATIONS}/{id}/members")).await;
        assert_eq!(status, 200, "{members}");
        members["result"].clone()
    }
}

async fn answer(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn encode(raw: &str) -> String {
    url::form_urlencoded::byte_serialize(raw.as_bytes()).collect()
}

fn ids(results: &[Value]) -> Vec<&str> {
    results
        .iter()
        .map(|c| c["objectId"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn serves_on_loopback_without_a_trailing_slash() {
    let cloud = Cloud::start().await;
    let url = cloud.standin.url();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    assert!(!url.ends_with('/'), "{url}");
}

#[tokio::test]
async fn both_headers_are_required_exactly() {
    let cloud = Cloud::start().await;
    assert_eq!(cloud.get(CONVERSATIONS).await.0, 200);
    let key = &cloud.master_key;
    let wrong = [
        (Some(unique("other-app")), Some(format!("{key},master"))),
        (Some(cloud.app_id.clone()), Some(key.clone())),
        (Some(cloud.app_id.clone()), Some(format!("{key}x,master"))),
        (Some(cloud.app_id.clone()), Some(format!("{key},Master"))),
        (Some(cloud.app_id.clone()), None),
        (None, Some(format!("{key},master"))),
        (None, None),
    ];
    for (id, key) in wrong {
        let mut request = cloud
            .http
            .get(format!("{}{CONVERSATIONS}", cloud.standin.url()));
        if let Some(id) = &id {
            request = request.header("X-LC-Id", id);
        }
        if let Some(key) = &key {
            request = request.header("X-LC-Key", key);
        }
        let (status, body) = answer(request.send().await.unwrap()).await;
        assert_eq!(status, 401, "{id:?} {key:?}");
        assert_eq!(body, json!({"code": 401, "error": "Unauthorized."}));
    }
    // The same header twice is not "exactly": a proxy that adds one must not pass.
    let (status, _) = answer(
        cloud
            .request(Method::GET, CONVERSATIONS)
            .header("X-LC-Id", &cloud.app_id)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 401);
    // A wrong key is refused before anything else, unknown paths included.
    let (status, _) = answer(
        cloud
            .http
            .get(format!("{}/1.2/rtm/nothing", cloud.standin.url()))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn a_created_conversation_is_found_by_its_group_id() {
    let cloud = Cloud::start().await;
    let (status, created) = cloud
        .call(
            Method::POST,
            CONVERSATIONS,
            Some(json!({"name": "group 7", "m": ["bob", "alice"],
                        "attr": {"type": "group", "group_id": 7}})),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["objectId"].as_str().unwrap();
    assert_eq!(id.len(), 24, "{id}");
    assert!(id
        .chars()
        .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
    let created_at = created["createdAt"].as_str().unwrap();
    assert!(
        created_at.len() == 24 && created_at.ends_with('Z') && &created_at[19..20] == ".",
        "{created_at}"
    );
    assert_eq!(created["name"], "group 7");
    assert_eq!(created["m"], json!(["alice", "bob"]));
    assert_eq!(created["attr"], json!({"type": "group", "group_id": 7}));
    let other = cloud.create(8, &["carol"]).await;

    let found = cloud.query(json!({"attr.group_id": 7})).await;
    assert_eq!(ids(&found), [id]);
    assert_eq!(found[0]["m"], json!(["alice", "bob"]));
    assert_eq!(found[0]["name"], "group 7");
    assert_eq!(found[0]["createdAt"], created_at);
    assert!(found[0]["updatedAt"].is_string());
    assert_eq!(ids(&cloud.query(json!({"attr.group_id": 7.0})).await), [id]);
    assert!(cloud.query(json!({"attr.group_id": 9})).await.is_empty());
    assert_eq!(
        ids(&cloud.query(json!({"objectId": other})).await),
        [&other]
    );
    assert_eq!(ids(&cloud.query(json!({"m": "alice"})).await), [id]);
    assert_eq!(
        ids(&cloud.query(json!({"attr.type": "group"})).await),
        [id, &other]
    );
    assert_eq!(
        ids(&cloud.query(json!({"attr.group_id": {"$in": [8, 9]}})).await),
        [&other]
    );

    let page = |query: &str| format!("{CONVERSATIONS}?{query}");
    let (_, second) = cloud.get(&page("skip=1&limit=1")).await;
    assert_eq!(ids(second["results"].as_array().unwrap()), [&other]);
    let (_, first) = cloud.get(&page("limit=1")).await;
    assert_eq!(ids(first["results"].as_array().unwrap()), [id]);

    let mirrored = cloud.standin.conversations_for_group(7);
    assert_eq!(mirrored.len(), 1);
    assert_eq!(mirrored[0].id, id);
    assert_eq!(mirrored[0].name.as_deref(), Some("group 7"));
    assert_eq!(
        mirrored[0].members.iter().collect::<Vec<_>>(),
        ["alice", "bob"]
    );
    assert_eq!(mirrored[0].group_id(), Some(7));
    assert_eq!(cloud.standin.conversations().len(), 2);
}

#[tokio::test]
async fn unique_creates_find_the_conversation_of_the_same_members() {
    let cloud = Cloud::start().await;
    let body = json!({"name": "pair", "m": ["alice", "bob"], "unique": true});
    let (first, a) = cloud
        .call(Method::POST, CONVERSATIONS, Some(body.clone()))
        .await;
    let (again, b) = cloud.call(Method::POST, CONVERSATIONS, Some(body)).await;
    assert_eq!((first, again), (201, 200));
    assert_eq!(a["objectId"], b["objectId"]);
    assert_eq!(cloud.standin.conversations().len(), 1);
}

#[tokio::test]
async fn an_update_changes_fields_and_a_delete_removes_the_conversation() {
    let cloud = Cloud::start().await;
    let id = cloud.create(7, &["alice"]).await;
    let (status, updated) = cloud
        .call(
            Method::PUT,
            &format!("{CONVERSATIONS}/{id}"),
            Some(json!({"name": "renamed", "attr": {"type": "group", "group_id": 7, "v": 2}})),
        )
        .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["objectId"], id.as_str());
    assert!(updated["updatedAt"].is_string());
    let conversation = cloud.standin.conversation(&id).unwrap();
    assert_eq!(conversation.name.as_deref(), Some("renamed"));
    assert_eq!(conversation.attr["v"], 2);
    assert_eq!(conversation.members.len(), 1);

    let (status, deleted) = cloud
        .call(Method::DELETE, &format!("{CONVERSATIONS}/{id}"), None)
        .await;
    assert_eq!((status, deleted), (200, json!({})));
    assert!(cloud.standin.conversation(&id).is_none());
    assert!(cloud.standin.conversations_for_group(7).is_empty());
    assert_eq!(cloud.standin.deleted_conversations()[0].id, id);
    let (status, again) = cloud
        .call(Method::DELETE, &format!("{CONVERSATIONS}/{id}"), None)
        .await;
    assert_eq!(status, 404);
    assert_eq!(again["code"], 4303);
}

#[tokio::test]
async fn members_are_a_set() {
    let cloud = Cloud::start().await;
    let id = cloud.create(7, &["alice"]).await;
    let path = format!("{CONVERSATIONS}/{id}/members");
    let change = |method: Method, clients: Value| {
        cloud.call(method, &path, Some(json!({"client_ids": clients})))
    };

    let (status, added) = change(Method::POST, json!(["alice", "bob"])).await;
    assert_eq!(status, 200, "{added}");
    assert_eq!(added["objectId"], id.as_str());
    assert!(added["updatedAt"].is_string());
    // Adding a member already there, or removing one not there, is no error.
    assert_eq!(change(Method::POST, json!(["bob", "bob"])).await.0, 200);
    assert_eq!(cloud.members(&id).await, json!(["alice", "bob"]));
    assert_eq!(change(Method::DELETE, json!(["carol"])).await.0, 200);
    assert_eq!(change(Method::DELETE, json!(["alice"])).await.0, 200);
    assert_eq!(cloud.members(&id).await, json!(["bob"]));
    let conversation = cloud.standin.conversation(&id).unwrap();
    assert_eq!(conversation.members.iter().collect::<Vec<_>>(), ["bob"]);
}

#[tokio::test]
async fn a_message_is_stored_as_sent() {
    let cloud = Cloud::start().await;
    let id = cloud.create(7, &["alice"]).await;
    let typed = json!({"_lctype": 1, "_lctext": "bob joined",
                       "_lcattrs": {"event": "members_added", "group_id": 7, "members": ["bob"]}});
    let path = format!("{CONVERSATIONS}/{id}/messages");
    let (status, sent) = cloud
        .call(
            Method::POST,
            &path,
            Some(json!({"from_client": "system", "message": typed.to_string(), "no_sync": true})),
        )
        .await;
    assert_eq!(status, 200, "{sent}");
    assert!(sent["msg-id"].as_str().is_some_and(|m| !m.is_empty()));
    assert!(sent["timestamp"].as_u64().is_some());
    // A message at the 5 KB limit, from a client that is not a member: the REST send
    // does not check membership.
    let largest = "x".repeat(5 * 1024);
    let (status, _) = cloud
        .call(
            Method::POST,
            &path,
            Some(json!({"from_client": "someone-else", "message": largest})),
        )
        .await;
    assert_eq!(status, 200);

    let messages = cloud.standin.messages(&id);
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[0].from_client, "system");
    assert_eq!(messages[0].message, typed);
    assert_eq!(messages[0].raw, typed.to_string());
    assert_eq!(messages[0].msg_id, sent["msg-id"].as_str().unwrap());
    assert_eq!(messages[0].options["no_sync"], true);
    assert_eq!(messages[1].message, Value::Null);
    assert_eq!(messages[1].raw, largest);

    let (status, history) = cloud.get(&path).await;
    assert_eq!(status, 200);
    let history = history.as_array().unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(history[1]["data"], typed.to_string());
    assert_eq!(history[1]["from"], "system");
    assert_eq!(history[1]["conv-id"], id.as_str());
}

/// A request the stand-in must refuse with 400, and the code of its answer.
#[derive(Debug)]
struct Refused {
    method: Method,
    path: String,
    body: Option<String>,
    content_type: Option<&'static str>,
    code: u32,
}

fn with_type(
    method: &Method,
    path: &str,
    body: Option<&str>,
    content_type: Option<&'static str>,
    code: u32,
) -> Refused {
    Refused {
        method: method.clone(),
        path: path.to_string(),
        body: body.map(str::to_string),
        content_type,
        code,
    }
}

/// Sent as `application/json`.
fn as_json(method: &Method, path: &str, body: &str, code: u32) -> Refused {
    with_type(method, path, Some(body), Some("application/json"), code)
}

fn get(path: &str, code: u32) -> Refused {
    with_type(&Method::GET, path, None, None, code)
}

#[tokio::test]
async fn shapes_the_documentation_does_not_allow_are_refused() {
    let cloud = Cloud::start().await;
    let id = cloud.create(7, &["alice"]).await;
    let conversation = format!("{CONVERSATIONS}/{id}");
    let members = format!("{conversation}/members");
    let messages = format!("{conversation}/messages");
    let long = "x".repeat(5 * 1024 + 1);
    let too_long = format!(r#"{{"from_client":"sys","message":"{long}"}}"#);
    let id_65 = format!(r#"{{"m":["{}"]}}"#, "a".repeat(65));
    let (post, put, delete) = (Method::POST, Method::PUT, Method::DELETE);
    let query = |q: &str| format!("{CONVERSATIONS}?{q}");
    let cases = [
        as_json(&post, CONVERSATIONS, "{", 107),
        as_json(&post, CONVERSATIONS, "[1]", 107),
        with_type(&post, CONVERSATIONS, Some(r#"{"name":"x"}"#), None, 1),
        with_type(
            &post,
            CONVERSATIONS,
            Some(r#"{"name":"x"}"#),
            Some("text/plain"),
            1,
        ),
        as_json(&post, CONVERSATIONS, r#"{"m":"alice"}"#, 1),
        as_json(&post, CONVERSATIONS, r#"{"m":["alice",3]}"#, 1),
        as_json(&post, CONVERSATIONS, r#"{"m":["1st"]}"#, 1),
        as_json(&post, CONVERSATIONS, r#"{"m":["a b"]}"#, 1),
        as_json(&post, CONVERSATIONS, &id_65, 1),
        as_json(&post, CONVERSATIONS, r#"{"name":5}"#, 1),
        as_json(&post, CONVERSATIONS, r#"{"attr":[1]}"#, 1),
        as_json(&post, CONVERSATIONS, r#"{"objectId":"x"}"#, 1),
        as_json(&post, CONVERSATIONS, r#"{"bad-key":1}"#, 105),
        as_json(&post, CONVERSATIONS, r#"{"attr":{"a.b":1}}"#, 121),
        as_json(
            &post,
            CONVERSATIONS,
            r#"{"attr":{"n":{"__op":"Increment"}}}"#,
            1,
        ),
        as_json(&post, CONVERSATIONS, r#"{"unique":"yes"}"#, 1),
        as_json(&put, &conversation, r#"{"m":["alice"]}"#, 1),
        as_json(&put, &conversation, "name", 107),
        as_json(&put, &conversation, r#"{"updatedAt":"now"}"#, 1),
        as_json(&post, &members, "{}", 1),
        as_json(&post, &members, r#"{"client_ids":[]}"#, 1),
        as_json(&post, &members, r#"{"client_ids":"bob"}"#, 1),
        as_json(&post, &members, r#"{"client_ids":[1]}"#, 1),
        as_json(
            &post,
            &members,
            r#"{"client_ids":["bob"],"role":"Member"}"#,
            1,
        ),
        as_json(&post, &members, r#"{"m":["bob"]}"#, 1),
        with_type(&delete, &members, None, None, 1),
        with_type(
            &delete,
            &members,
            Some(r#"{"client_ids":["alice"]}"#),
            None,
            1,
        ),
        as_json(&post, &messages, r#"{"message":"hi"}"#, 1),
        as_json(&post, &messages, r#"{"from_client":"sys"}"#, 1),
        as_json(
            &post,
            &messages,
            r#"{"from_client":"sys","message":{"_lctype":-1}}"#,
            1,
        ),
        as_json(&post, &messages, &too_long, 1),
        as_json(
            &post,
            &messages,
            r#"{"from_client":"sys","message":"m","priority":"now"}"#,
            1,
        ),
        as_json(
            &post,
            &messages,
            r#"{"from_client":"sys","message":"m","to":"bob"}"#,
            1,
        ),
        as_json(
            &post,
            &messages,
            r#"{"from_client":"sys","message":"m","transient":1}"#,
            1,
        ),
        get(&query("where=notjson"), 107),
        get(&query(&format!("where={}", encode(r#"{"$or":[]}"#))), 1),
        get(
            &query(&format!("where={}", encode(r#"{"m":{"$all":["a"]}}"#))),
            1,
        ),
        get(&query("limit=1001"), 1),
        get(&query("limit=-1"), 1),
        get(&query("order=-createdAt"), 1),
        get(&query("limit=1&limit=2"), 1),
        get(&format!("{messages}?msgid=x"), 1),
    ];
    let requests_before = cloud.standin.requests().len();
    for case in cases {
        let mut request = cloud.request(case.method.clone(), &case.path);
        if let Some(content_type) = case.content_type {
            request = request.header("Content-Type", content_type);
        }
        if let Some(body) = &case.body {
            request = request.body(body.clone());
        }
        let (status, answer) = answer(request.send().await.unwrap()).await;
        let what = format!("{case:?}: {answer}");
        assert_eq!(status, 400, "{what}");
        assert!(answer["error"].is_string(), "{what}");
        assert_eq!(answer["code"], case.code, "{what}");
    }
    let refused = &cloud.standin.requests()[requests_before..];
    assert!(refused.iter().all(|r| !r.applied && r.status == Some(400)));
    let unchanged = cloud.standin.conversation(&id).unwrap();
    assert_eq!(unchanged.name.as_deref(), Some("group 7"));
    assert_eq!(unchanged.members.iter().collect::<Vec<_>>(), ["alice"]);
    assert_eq!(cloud.standin.conversations().len(), 1);
    assert!(cloud.standin.messages(&id).is_empty());
}

#[tokio::test]
async fn requests_about_an_unknown_conversation_answer_404() {
    let cloud = Cloud::start().await;
    let conversation = format!("{CONVERSATIONS}/{MISSING}");
    let members = format!("{conversation}/members");
    let messages = format!("{conversation}/messages");
    let clients = json!({"client_ids": ["alice"]});
    let message = json!({"from_client": "system", "message": "hi"});
    let cases = [
        (
            Method::PUT,
            conversation.clone(),
            Some(json!({"name": "x"})),
        ),
        (Method::DELETE, conversation, None),
        (Method::GET, members.clone(), None),
        (Method::POST, members.clone(), Some(clients.clone())),
        (Method::DELETE, members, Some(clients)),
        (Method::POST, messages.clone(), Some(message)),
        (Method::GET, messages, None),
    ];
    for (method, path, body) in cases {
        let (status, answer) = cloud.call(method.clone(), &path, body).await;
        assert_eq!(status, 404, "{method} {path}");
        assert_eq!(
            answer,
            json!({"code": 4303, "error": "CONVERSATION_NOT_FOUND"}),
            "{method} {path}"
        );
    }
    assert!(cloud.standin.messages(MISSING).is_empty());
}

#[tokio::test]
async fn unknown_paths_answer_404_and_wrong_methods_405() {
    let cloud = Cloud::start().await;
    let id = cloud.create(7, &["alice"]).await;
    for path in [
        "/1.2/rtm/conversation".to_string(),
        "/1.1/rtm/conversations".into(),
        format!("{CONVERSATIONS}/"),
        format!("{CONVERSATIONS}/{id}/"),
        format!("{CONVERSATIONS}/{id}/mutes"),
        format!("{CONVERSATIONS}/{id}/members/alice"),
        "/".into(),
    ] {
        let (status, answer) = cloud.get(&path).await;
        assert_eq!(status, 404, "{path}");
        assert!(
            answer["code"].is_u64() && answer["error"].is_string(),
            "{answer}"
        );
    }
    for (method, path) in [
        (Method::GET, format!("{CONVERSATIONS}/{id}")),
        (Method::POST, format!("{CONVERSATIONS}/{id}")),
        (Method::PATCH, CONVERSATIONS.to_string()),
        (Method::DELETE, CONVERSATIONS.to_string()),
        (Method::PUT, format!("{CONVERSATIONS}/{id}/members")),
        (Method::DELETE, format!("{CONVERSATIONS}/{id}/messages")),
    ] {
        let (status, answer) = cloud.call(method.clone(), &path, None).await;
        assert_eq!(status, 405, "{method} {path}");
        assert!(
            answer["code"].is_u64() && answer["error"].is_string(),
            "{answer}"
        );
    }
    assert!(cloud.standin.conversation(&id).is_some());
}

#[tokio::test]
async fn changes_behind_the_services_back_are_visible_through_the_api() {
    let cloud = Cloud::start().await;
    let id = cloud.create(7, &["alice", "bob"]).await;
    cloud.standin.add_member_directly(&id, "carol");
    cloud.standin.remove_member_directly(&id, "alice");
    assert_eq!(cloud.members(&id).await, json!(["bob", "carol"]));

    let outside =
        cloud
            .standin
            .create_conversation_directly("outside", &["dave"], json!({"group_id": 12}));
    assert_eq!(
        ids(&cloud.query(json!({"attr.group_id": 12})).await),
        [&outside]
    );
    cloud.standin.delete_conversation_directly(&outside);
    assert!(cloud.query(json!({"attr.group_id": 12})).await.is_empty());
}

#[tokio::test]
async fn client_ids_follow_the_vendors_form_unless_relaxed() {
    let cloud = Cloud::start().await;
    let body = json!({"name": "x", "m": ["42", "with space"]});
    let (status, _) = cloud
        .call(Method::POST, CONVERSATIONS, Some(body.clone()))
        .await;
    assert_eq!(status, 400);
    cloud.standin.accept_any_client_ids(true);
    let (status, _) = cloud.call(Method::POST, CONVERSATIONS, Some(body)).await;
    assert_eq!(status, 201);
}

#[tokio::test]
async fn each_fault_kind_reaches_the_client() {
    let cloud = Cloud::with_timeout(Duration::from_millis(300)).await;
    cloud.standin.set_slow_delay(Duration::from_millis(1500));

    cloud
        .standin
        .inject_next(Fault::before(FaultKind::TooManyRequests));
    let (status, body) = cloud.get(CONVERSATIONS).await;
    assert_eq!(status, 429);
    assert_eq!(body, json!({"code": 429, "error": "Too many requests."}));

    cloud
        .standin
        .inject_next(Fault::before(FaultKind::ServerError));
    let (status, body) = cloud.get(CONVERSATIONS).await;
    assert_eq!(status, 500);
    assert_eq!(
        body,
        json!({"code": 1, "error": "Internal server error. No information available."})
    );

    cloud.standin.inject_next(Fault::before(FaultKind::Slow));
    let slow = cloud.request(Method::GET, CONVERSATIONS).send().await;
    assert!(slow.as_ref().is_err_and(|e| e.is_timeout()), "{slow:?}");

    cloud.standin.inject_next(Fault::before(FaultKind::Drop));
    let dropped = cloud.request(Method::GET, CONVERSATIONS).send().await;
    let error = dropped.expect_err("a dropped connection has no answer");
    assert!(!error.is_timeout(), "{error:?}");
    assert!(error.status().is_none(), "{error:?}");

    assert_eq!(cloud.get(CONVERSATIONS).await.0, 200);
    let log = cloud.standin.requests();
    let faults: Vec<_> = log.iter().map(|r| r.fault.map(|f| f.kind)).collect();
    assert_eq!(
        faults,
        [
            Some(FaultKind::TooManyRequests),
            Some(FaultKind::ServerError),
            Some(FaultKind::Slow),
            Some(FaultKind::Drop),
            None
        ]
    );
    assert_eq!(log[0].status, Some(429));
    assert_eq!(log[1].status, Some(500));
    assert_eq!(log[3].status, None);
    assert_eq!(log[4].status, Some(200));
}

#[tokio::test]
async fn a_change_whose_answer_is_lost_is_made_and_one_refused_is_not() {
    let cloud = Cloud::with_timeout(Duration::from_millis(300)).await;
    cloud.standin.set_slow_delay(Duration::from_millis(1500));
    let create = |group_id: u64| {
        cloud
            .request(Method::POST, CONVERSATIONS)
            .json(&json!({"name": "g", "m": ["alice"], "attr": {"type": "group", "group_id": group_id}}))
            .send()
    };
    let kinds = [FaultKind::ServerError, FaultKind::Slow, FaultKind::Drop];
    for (n, kind) in kinds.into_iter().enumerate() {
        let (lost, refused) = (100 + n as u64, 200 + n as u64);

        cloud.standin.inject_next(Fault::after(kind));
        let outcome = create(lost).await;
        assert!(
            outcome
                .as_ref()
                .map_or(true, |r| r.status().is_server_error()),
            "{kind:?}: {outcome:?}"
        );
        // The client cannot tell from the failure; asking tells it the create happened.
        assert_eq!(
            cloud.query(json!({"attr.group_id": lost})).await.len(),
            1,
            "{kind:?}"
        );

        cloud.standin.inject_next(Fault::before(kind));
        let outcome = create(refused).await;
        assert!(
            outcome
                .as_ref()
                .map_or(true, |r| r.status().is_server_error()),
            "{kind:?}: {outcome:?}"
        );
        assert!(
            cloud
                .query(json!({"attr.group_id": refused}))
                .await
                .is_empty(),
            "{kind:?}"
        );
    }
    let faulted: Vec<_> = cloud
        .standin
        .requests()
        .into_iter()
        .filter_map(|r| r.fault.map(|f| (f.timing, r.applied)))
        .collect();
    assert_eq!(faulted.len(), 6);
    assert!(faulted
        .iter()
        .all(|(timing, applied)| *applied == (*timing == FaultTiming::AfterChange)));

    // The same for a member change.
    let id = cloud.create(300, &["alice"]).await;
    cloud.standin.inject_next(Fault::after(FaultKind::Drop));
    let lost = cloud
        .request(Method::POST, &format!("{CONVERSATIONS}/{id}/members"))
        .json(&json!({"client_ids": ["bob"]}))
        .send()
        .await;
    assert!(lost.is_err());
    assert_eq!(cloud.members(&id).await, json!(["alice", "bob"]));
}

#[tokio::test]
async fn a_failure_rate_mixes_every_kind_of_fault() {
    // A time-out far above a loaded machine's answer time, and a slow answer far above that.
    let cloud = Cloud::with_timeout(Duration::from_secs(1)).await;
    cloud.standin.set_slow_delay(Duration::from_secs(3));
    cloud.standin.set_failure_rate(0.5);
    let outcomes =
        join_all((0..200).map(|_| cloud.request(Method::GET, CONVERSATIONS).send())).await;
    let failed = outcomes
        .iter()
        .filter(|o| o.as_ref().map_or(true, |r| !r.status().is_success()))
        .count();

    let log = cloud.standin.requests();
    assert_eq!(log.len(), 200);
    let faults: Vec<Fault> = log.iter().filter_map(|r| r.fault).collect();
    assert_eq!(failed, faults.len(), "every fault, and only a fault, fails");
    assert!(
        (60..=140).contains(&faults.len()),
        "{} of 200",
        faults.len()
    );
    for kind in FaultKind::ALL {
        assert!(faults.iter().any(|f| f.kind == kind), "no {kind:?}");
    }
    for timing in [FaultTiming::BeforeChange, FaultTiming::AfterChange] {
        assert!(faults.iter().any(|f| f.timing == timing), "no {timing:?}");
    }
    assert!(faults
        .iter()
        .filter(|f| f.kind == FaultKind::TooManyRequests)
        .all(|f| f.timing == FaultTiming::BeforeChange));

    cloud.standin.set_fault_kinds(&[FaultKind::ServerError]);
    let (status, _) = loop {
        let answer = cloud.get(CONVERSATIONS).await;
        if answer.0 != 200 {
            break answer;
        }
    };
    assert_eq!(status, 500);

    cloud.standin.clear_faults();
    for _ in 0..20 {
        assert_eq!(cloud.get(CONVERSATIONS).await.0, 200);
    }
}

#[tokio::test]
async fn a_poisoned_group_or_conversation_fails_until_cleared() {
    let cloud = Cloud::start().await;
    let before = cloud.create(11, &["alice"]).await;
    cloud.standin.fail_always_for_group(9, 500);
    cloud.standin.fail_always_for_group(11, 500);
    let create_9 = json!({"name": "g9", "m": ["alice"], "attr": {"type": "group", "group_id": 9}});
    for _ in 0..3 {
        let (status, body) = cloud
            .call(Method::POST, CONVERSATIONS, Some(create_9.clone()))
            .await;
        assert_eq!(status, 500, "{body}");
    }
    assert!(cloud.standin.conversations_for_group(9).is_empty());
    let query_9 = format!(
        "{CONVERSATIONS}?where={}",
        encode(&json!({"attr.group_id": 9}).to_string())
    );
    assert_eq!(cloud.get(&query_9).await.0, 500);
    // A conversation that already exists is poisoned with its group.
    let (status, _) = cloud
        .call(
            Method::PUT,
            &format!("{CONVERSATIONS}/{before}"),
            Some(json!({"name": "x"})),
        )
        .await;
    assert_eq!(status, 500);

    let other = cloud.create(10, &["alice"]).await;
    cloud.standin.fail_always_for_conversation(&other, 404);
    let (status, body) = cloud
        .call(
            Method::POST,
            &format!("{CONVERSATIONS}/{other}/members"),
            Some(json!({"client_ids": ["bob"]})),
        )
        .await;
    assert_eq!((status, body["code"].clone()), (404, json!(4303)));
    assert_eq!(
        cloud.standin.conversation(&other).unwrap().members.len(),
        1,
        "refused before the change"
    );

    cloud.standin.clear_faults();
    let (status, _) = cloud
        .call(Method::POST, CONVERSATIONS, Some(create_9))
        .await;
    assert_eq!(status, 201);
    assert_eq!(cloud.members(&other).await, json!(["alice"]));
}
