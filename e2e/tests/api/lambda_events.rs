//! Every function binary under the Lambda runtime emulator (`cargo lambda watch`,
//! started twice by `make test`: once per authentication mode), invoked with every
//! `events/` file exactly as `sam local invoke -e events/<file>.json` would send it.

use im_e2e::lambda::{at_path, body, client_path, demo_app, event_file, invoke, replay, Data};
use im_e2e::repo::{read_json, repo_root};
use im_e2e::signatures::verify_signature_response;
use im_e2e::stack::env;
use im_shared::routes::{Function, ROUTES};
use serde_json::Value;

/// One test per emulator: the replay must see a fresh table, so nothing else may run
/// against that emulator's table at the same time.
#[tokio::test]
async fn token_mode_events_then_bad_input() {
    let (store, key) = demo_app(&env("IM_TEST_LAMBDA_TABLE")).await;
    let port = env("IM_TEST_LAMBDA_PORT");
    replay("events", &store, &key, |route, path| {
        invoke(&port, route.function.name(), Data::File(path))
    })
    .await;
    fresh_callback_through_the_lambda_path(&port, "events");
    bad_input_through_the_lambda_path();
    decoded_paths_answer_as_the_local_server_does(&key).await;
}

#[tokio::test]
async fn authorizer_mode_events_then_key_cases() {
    let (store, key) = demo_app(&env("IM_TEST_AUTHZ_TABLE")).await;
    let port = env("IM_TEST_AUTHZ_PORT");
    replay("events/authorizer", &store, &key, |route, path| {
        invoke(&port, route.function.name(), Data::File(path))
    })
    .await;
    fresh_callback_through_the_lambda_path(&port, "events/authorizer");
    authorizer_mode_key_cases().await;
}

/// The authorization matrix's key cases through the binaries, with the claims API
/// Gateway's JWT authorizer would pass (the emulator runs with `IM_AUTH_APP_ID=demo-app`,
/// `IM_AUTH_ADMIN_CLAIM=groups`, `IM_AUTH_ADMIN_VALUE=im-admin`).
async fn authorizer_mode_key_cases() {
    let port = env("IM_TEST_AUTHZ_PORT");
    let call = |name: &str, claims: Option<Value>, path: &str, body: Option<Value>| -> u64 {
        let route = ROUTES.iter().find(|r| r.event == name).unwrap();
        let mut e = read_json(&event_file("events/authorizer", route));
        at_path(&mut e, path);
        match claims {
            Some(c) => e["requestContext"]["authorizer"]["jwt"]["claims"] = c,
            None => {
                e["requestContext"]
                    .as_object_mut()
                    .unwrap()
                    .remove("authorizer");
            }
        }
        if let Some(b) = body {
            e["body"] = Value::from(b.to_string());
            e["headers"]["content-type"] = Value::from("application/json");
        }
        let resp = invoke(&port, route.function.name(), Data::Inline(&e.to_string()));
        resp["statusCode"].as_u64().unwrap()
    };
    let who = |sub: &str| Some(serde_json::json!({"sub": sub}));
    let admin = Some(serde_json::json!({"sub": "backend", "groups": "[im-admin other]"}));

    let login = "/signature/login/demo-app/alice";
    assert_eq!(call("login-signature", None, login, None), 401);
    assert_eq!(call("login-signature", who("mallory"), login, None), 403);
    assert_eq!(call("login-signature", who("alice"), login, None), 200);
    assert_eq!(call("login-signature", admin.clone(), login, None), 200);
    // The admin claim counts as a whole value or a list's element, never a word in text.
    let prose = Some(serde_json::json!({"sub": "mallory", "groups": "not im-admin, really"}));
    assert_eq!(call("login-signature", prose, login, None), 403);
    let json_list = Some(serde_json::json!({"sub": "backend", "groups": r#"["x","im-admin"]"#}));
    assert_eq!(call("login-signature", json_list, login, None), 200);
    assert_eq!(call("health", None, "/health", None), 200);

    // The UserSig under the same rules, and never for the Tencent app's REST admin
    // (`demo_app` names it `im-admin`) nor `administrator`, the backend included.
    let usersig = |client: &str| format!("/signature/usersig/demo-app/{client}");
    assert_eq!(
        call("usersig-signature", None, &usersig("alice"), None),
        401
    );
    assert_eq!(
        call("usersig-signature", who("mallory"), &usersig("alice"), None),
        403
    );
    assert_eq!(
        call("usersig-signature", who("alice"), &usersig("alice"), None),
        200
    );
    assert_eq!(
        call("usersig-signature", admin.clone(), &usersig("bob"), None),
        200
    );
    for admin_account in ["im-admin", "administrator"] {
        assert_eq!(
            call(
                "usersig-signature",
                admin.clone(),
                &usersig(admin_account),
                None
            ),
            403
        );
        assert_eq!(
            call(
                "usersig-signature",
                who(admin_account),
                &usersig(admin_account),
                None
            ),
            403
        );
    }
    assert_eq!(
        call(
            "usersig-signature",
            admin.clone(),
            &usersig(&"x".repeat(33)),
            None
        ),
        400
    );

    // A group owned by owner1, with member1; outsider is in neither.
    let created = invoke(
        &port,
        "create-group",
        Data::Inline(&{
            let mut e = read_json(&event_file(
                "events/authorizer",
                ROUTES.iter().find(|r| r.event == "create-group").unwrap(),
            ));
            e["requestContext"]["authorizer"]["jwt"]["claims"] =
                serde_json::json!({"sub": "owner1"});
            e["body"] = Value::from(
                serde_json::json!({"group_name": "m", "member_client_ids": "member1"}).to_string(),
            );
            e.to_string()
        }),
    );
    assert_eq!(created["statusCode"], 201);
    let g = body(&created)["group_id"].as_u64().unwrap();
    let rename = format!("/im/group/{g}");
    let name = Some(serde_json::json!({"group_name": "n"}));
    assert_eq!(call("update-group", None, &rename, name.clone()), 401);
    assert_eq!(
        call("update-group", who("outsider"), &rename, name.clone()),
        404
    );
    assert_eq!(
        call("update-group", who("member1"), &rename, name.clone()),
        403
    );
    assert_eq!(
        call("update-group", who("owner1"), &rename, name.clone()),
        200
    );
    assert_eq!(call("update-group", admin.clone(), &rename, name), 200);
    let members = format!("/im/group/{g}/member");
    let add = Some(serde_json::json!({"member_client_ids": "x1"}));
    assert_eq!(
        call("add-members", who("outsider"), &members, add.clone()),
        404
    );
    assert_eq!(call("add-members", who("member1"), &members, add), 201);
    let invite = |client: &str| format!("/signature/invite/demo-app/{client}/{g}");
    assert_eq!(
        call(
            "invite-signature-join",
            who("outsider"),
            &invite("outsider"),
            None
        ),
        403
    );
    assert_eq!(
        call(
            "invite-signature-join",
            who("member1"),
            &invite("member1"),
            None
        ),
        200
    );
    let kick = format!("/signature/kick/demo-app/member1/{g}/x1");
    assert_eq!(call("kick-signature", who("member1"), &kick, None), 403);
    let delete = format!("/im/group/{g}");
    assert_eq!(call("delete-group", who("member1"), &delete, None), 403);
    assert_eq!(call("delete-group", who("owner1"), &delete, None), 204);
}

/// `events/tencent-callback.json` signed now (with the stand-in's own `Sign`, for the
/// events' callback token): authenticated, and a client's create refused by our rule
/// (`ActionStatus` OK, `ErrorCode` 1); the same query with another token's `Sign`, the
/// call refused (`FAIL`).
fn fresh_callback_through_the_lambda_path(port: &str, dir: &str) {
    use im_e2e::tencent::callback::callback_query;
    let route = ROUTES
        .iter()
        .find(|r| r.event == "tencent-callback")
        .unwrap();
    for (tamper, status, code) in [
        (im_e2e::tencent::Tamper::None, "OK", 1),
        (im_e2e::tencent::Tamper::WrongToken, "FAIL", 1),
    ] {
        let mut e = read_json(&event_file(dir, route));
        let query = callback_query(
            im_e2e::lambda::DEMO_CALLBACK_TOKEN,
            im_e2e::lambda::DEMO_SDK_APP_ID,
            "Group.CallbackBeforeCreateGroup",
            "iOS",
            tamper,
        );
        let params: serde_json::Map<String, Value> = query
            .split('&')
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| (k.to_owned(), Value::from(v)))
            .collect();
        e["rawQueryString"] = Value::from(query);
        e["queryStringParameters"] = Value::Object(params);
        let resp = invoke(port, route.function.name(), Data::Inline(&e.to_string()));
        assert_eq!(resp["statusCode"], 200, "{resp}");
        let b = body(&resp);
        assert_eq!(b["ActionStatus"], status, "{tamper:?}: {b}");
        assert_eq!(b["ErrorCode"], code, "{tamper:?}: {b}");
    }
}

/// Variants of the event files with bad input: JSON errors, never a 5xx.
fn bad_input_through_the_lambda_path() {
    let port = env("IM_TEST_LAMBDA_PORT");
    let read_event = |name: &str| read_json(&repo_root().join("events").join(name));
    let with_path = |mut e: Value, path: &str| {
        at_path(&mut e, path);
        e
    };
    let cases = [
        (
            "login-signature",
            with_path(
                read_event("login-signature.json"),
                "/signature/login/demo-app/al:ice",
            ),
            400,
        ),
        (
            "login-signature",
            with_path(
                read_event("login-signature.json"),
                "/signature/login/demo-app/bob",
            ),
            403,
        ),
        (
            "update-group",
            with_path(read_event("update-group.json"), "/im/group/424242"),
            404,
        ),
        (
            "update-group",
            with_path(read_event("update-group.json"), "/im/group/abc"),
            400,
        ),
        (
            "create-group",
            {
                let mut e = read_event("create-group.json");
                e["body"] = Value::from("{\"group_name\": 7}");
                e
            },
            422,
        ),
        (
            "create-group",
            {
                let mut e = read_event("create-group.json");
                e["headers"]["content-type"] = Value::from("text/csv");
                e
            },
            415,
        ),
        (
            "create-group",
            {
                let mut e = read_event("create-group.json");
                e["headers"]["authorization"] = Value::from("Bearer not.a.token");
                e
            },
            401,
        ),
        // A route of another function is not this function's: 404, as API Gateway would.
        (
            "login-signature",
            with_path(read_event("login-signature.json"), "/im/group"),
            404,
        ),
    ];
    for (function, event, status) in cases {
        let resp = invoke(&port, function, Data::Inline(&event.to_string()));
        assert_eq!(resp["statusCode"], status, "{function}: {resp}");
        let b = body(&resp);
        assert!(b["code"].as_u64().is_some() && b["msg"].is_string(), "{b}");
        assert!(b["request"]
            .as_str()
            .unwrap()
            .starts_with(event["requestContext"]["http"]["method"].as_str().unwrap()));
    }
}

/// `events/decoded/`: requests whose ids hold what an HTTP API decodes before the
/// function sees it (`rawPath` and `pathParameters` percent-decoded), each through its
/// function binary and, as the client sent it (percent-encoded), through the local
/// server: the same status, the same signed ids, the same error. Ids a path cannot carry
/// intact (`/`, `?`, `#`, `%`) are a 400 in both, never another route or a truncated id.
async fn decoded_paths_answer_as_the_local_server_does(key: &str) {
    let expected: &[(&str, u16)] = &[
        // Members `李 雷` and `bob`: signed as sent, sorted (UTF-16 order).
        ("conversation-signature-non-ascii", 200),
        // Members `ｹ`, `𠮷` (outside the BMP) and `bob`: signed in the order the vendor's
        // SDK sorts them (UTF-16 code units), `bob:𠮷:ｹ`, not byte order `bob:ｹ:𠮷`.
        ("invite-signature-non-bmp", 200),
        // A client's `%2541` arrives as `%41`: decoded again it would be signed as `A`.
        ("conversation-signature-percent", 400),
        // A kick on conversation `x/y` (`x%2Fy`), not a kick on `x` naming `y`.
        ("kick-signature-slash", 400),
        // `conv-1%3Fadmin=true` and `conv-1%23x`: not conversation `conv-1`.
        ("history-signature-question-mark", 400),
        ("history-signature-hash", 400),
    ];
    let dir = repo_root().join("events/decoded");
    let files: std::collections::BTreeSet<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| p.file_stem().unwrap().to_str().unwrap().to_owned())
        .collect();
    let listed = expected.iter().map(|(n, _)| (*n).to_owned()).collect();
    assert_eq!(
        files, listed,
        "every events/decoded file has its expected answer here"
    );

    let port = env("IM_TEST_LAMBDA_PORT");
    let local = im_e2e::http::Api::local("decoded").await;
    // Every file is tried, and every disagreement reported at the end.
    let mut wrong = Vec::new();
    for (name, status) in expected {
        let path = dir.join(format!("{name}.json"));
        let event = read_json(&path);
        let route = ROUTES
            .iter()
            .find(|r| event["routeKey"] == format!("{} {}", r.method, r.path))
            .unwrap_or_else(|| panic!("{name}: no route has its routeKey"));
        let resp = invoke(&port, route.function.name(), Data::File(&path));
        let on_lambda = body(&resp);
        let sent =
            client_path(&event).replacen("/demo-app/", &format!("/{}/", local.app.app_id), 1);
        let answer = local.get("alice", &sent).await;
        let local_status = answer.status().as_u16();
        let on_local: Value = answer.json().await.unwrap();
        if resp["statusCode"] != *status || local_status != *status {
            wrong.push(format!(
                "{name}: Lambda {} {on_lambda}, local ({sent}) {local_status} {on_local}, expected {status}",
                resp["statusCode"]
            ));
            continue;
        }
        if *status == 200 {
            verify_signature_response(&on_lambda, key);
            if *name == "conversation-signature-non-ascii" {
                assert_eq!(on_lambda["sorted_member_ids"], "bob:李 雷");
            }
            if *name == "invite-signature-non-bmp" {
                assert_eq!(on_lambda["sorted_member_ids"], "bob:𠮷:ｹ");
            }
            for field in [
                "client_id",
                "sorted_member_ids",
                "conversion_id",
                "conversation_id",
            ] {
                assert_eq!(on_lambda.get(field), on_local.get(field), "{name}: {field}");
            }
        } else {
            assert_eq!(on_lambda["code"], on_local["code"], "{name}");
            assert_eq!(on_lambda["msg"], on_local["msg"], "{name}");
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// The stream batch of `events/sync-conversations.json` (a group created with two
/// members) through the `sync-conversations` binary under the emulator: with the items
/// the batch reports written to the table first, as the write that made them would, and
/// `demo-app` mirrored into a stand-in of its IM cloud, the group gets its conversation
/// and one message. The same batch again changes nothing: its records are behind the
/// group's cursor.
#[tokio::test]
async fn the_stream_event_mirrors_its_group_under_the_emulator() {
    use aws_sdk_dynamodb::types::AttributeValue;
    use im_e2e::im_cloud::ImCloudStandIn;
    use im_shared::model::{ImCloud, OnDelete};
    use std::collections::HashMap;

    let (store, key) = demo_app(&env("IM_TEST_LAMBDA_TABLE")).await;
    let path = repo_root().join("events/sync-conversations.json");
    let event = read_json(&path);
    let mut group_id = 0;
    for record in event["Records"].as_array().unwrap() {
        let image: serde_dynamo::Item =
            serde_json::from_value(record["dynamodb"]["NewImage"].clone()).unwrap();
        let item: HashMap<String, AttributeValue> = image.into();
        if let Some(AttributeValue::N(id)) = item.get("group_id") {
            group_id = id.parse().unwrap();
        }
        store
            .client()
            .put_item()
            .table_name(store.table())
            .set_item(Some(item))
            .send()
            .await
            .unwrap();
    }
    let cloud = ImCloudStandIn::start("demo-app", &key).await;
    store
        .set_im_cloud(
            "demo-app",
            &ImCloud::new(
                cloud.url(),
                true,
                true,
                Some("imsystem".into()),
                OnDelete::Keep,
            )
            .unwrap(),
        )
        .await
        .unwrap();
    let port = env("IM_TEST_LAMBDA_PORT");
    // The invoke blocks its thread; the stand-in must go on answering meanwhile.
    let invoke = |port: String, path: std::path::PathBuf| async move {
        tokio::task::spawn_blocking(move || {
            im_e2e::lambda::invoke_event(&port, "sync-conversations", &path)
        })
        .await
        .unwrap()
    };
    let answer = invoke(port.clone(), path.clone()).await;
    assert_eq!(answer, serde_json::json!({"batchItemFailures": []}));
    let made = cloud.conversations_for_group(group_id);
    assert_eq!(made.len(), 1, "{:?}", cloud.requests());
    let members: Vec<&str> = made[0].members.iter().map(String::as_str).collect();
    assert_eq!(members, ["alice", "bob"]);
    let meta = store.group_meta(group_id).await.unwrap().unwrap();
    assert_eq!(meta.conversation_id.as_deref(), Some(made[0].id.as_str()));
    assert_eq!(cloud.messages(&made[0].id).len(), 1);
    let before = cloud.requests().len();
    let again = invoke(port, path).await;
    assert_eq!(again, serde_json::json!({"batchItemFailures": []}));
    assert_eq!(
        cloud.requests().len(),
        before,
        "a replayed batch calls nothing"
    );
}

/// Every function binary whose DynamoDB cannot be reached (the third emulator: a closed
/// loopback port, and a warm-up at init that fails first): each `events/` request
/// answers 503 with `Retry-After` in the one error shape, promptly; without its token
/// 401; health 200.
#[test]
fn unreachable_storage_answers_503_through_every_function() {
    let port = env("IM_TEST_UNREACHABLE_LAMBDA_PORT");
    for route in ROUTES {
        let path = event_file("events", route);
        let what = format!("{} {}", route.method, route.path);
        let started = std::time::Instant::now();
        let resp = invoke(&port, route.function.name(), Data::File(&path));
        // A hang check (with the emulator's own overhead), not a performance figure.
        let took = started.elapsed();
        assert!(
            took < std::time::Duration::from_secs(10),
            "{what} took {took:?}"
        );
        let b = body(&resp);
        if route.function == Function::Health {
            assert_eq!(resp["statusCode"], 200, "{what}: {resp}");
            continue;
        }
        // Refused in the body: the settings and token cannot be read.
        if route.function == Function::TencentCallback {
            assert_eq!(resp["statusCode"], 200, "{what}: {resp}");
            assert_eq!(b["ActionStatus"], "FAIL", "{what}: {resp}");
            continue;
        }
        assert_eq!(resp["statusCode"], 503, "{what}: {resp}");
        assert_eq!(resp["headers"]["retry-after"], "1", "{what}: {resp}");
        assert_eq!(b["code"], 1503, "{what}: {resp}");
        assert!(b["msg"]
            .as_str()
            .unwrap()
            .starts_with("service_unavailable"));

        let mut event = read_json(&path);
        event["headers"]
            .as_object_mut()
            .unwrap()
            .remove("authorization");
        let resp = invoke(
            &port,
            route.function.name(),
            Data::Inline(&event.to_string()),
        );
        assert_eq!(resp["statusCode"], 401, "{what} without a token: {resp}");
    }
}

/// `events/sync-conversations.json` made an app's own (the emulator's table is shared):
/// a fresh app, a fresh group id, the event rewritten for them in a file of its own, and
/// its items written to the table first, as the write that made the records would.
async fn own_stream_event(
    store: &im_shared::store::DynamoStore,
    prefix: &str,
) -> (im_e2e::stack::TestApp, u64, std::path::PathBuf) {
    use aws_sdk_dynamodb::types::AttributeValue;
    use std::collections::HashMap;

    let app = im_e2e::stack::TestApp::register(store, prefix).await;
    let group_id: u64 = 5_000_000 + rand::random::<u32>() as u64 % 1_000_000;
    let text = std::fs::read_to_string(repo_root().join("events/sync-conversations.json"))
        .unwrap()
        .replace("demo-app", &app.app_id)
        .replace(
            "GROUP#00000000000000001001",
            &format!("GROUP#{group_id:020}"),
        )
        .replace("GROUP#1001", &format!("GROUP#{group_id}"))
        .replace("\"1001\"", &format!("\"{group_id}\""));
    let path = std::env::temp_dir().join(format!("sync-{prefix}-{group_id}.json"));
    std::fs::write(&path, &text).unwrap();
    let event: Value = serde_json::from_str(&text).unwrap();
    for record in event["Records"].as_array().unwrap() {
        let image: serde_dynamo::Item =
            serde_json::from_value(record["dynamodb"]["NewImage"].clone()).unwrap();
        let item: HashMap<String, AttributeValue> = image.into();
        store
            .client()
            .put_item()
            .table_name(store.table())
            .set_item(Some(item))
            .send()
            .await
            .unwrap();
    }
    (app, group_id, path)
}

/// A LeanCloud stand-in for `app`, set as its IM cloud: mirroring and system messages
/// on, sent as `imsystem`.
async fn leancloud_stand_in(
    store: &im_shared::store::DynamoStore,
    app: &im_e2e::stack::TestApp,
) -> im_e2e::im_cloud::ImCloudStandIn {
    use im_shared::model::{ImCloud, OnDelete};
    let cloud = im_e2e::im_cloud::ImCloudStandIn::start(&app.app_id, &app.master_key).await;
    let settings = ImCloud::new(
        cloud.url(),
        true,
        true,
        Some("imsystem".into()),
        OnDelete::Keep,
    )
    .unwrap();
    store.set_im_cloud(&app.app_id, &settings).await.unwrap();
    cloud
}

/// Invokes `sync-conversations` under the emulator with the event in `path`, on a
/// blocking thread: the stand-ins must go on answering meanwhile.
async fn invoke_sync(path: &std::path::Path) -> Value {
    let (port, path) = (env("IM_TEST_LAMBDA_PORT"), path.to_owned());
    tokio::task::spawn_blocking(move || {
        im_e2e::lambda::invoke_event(&port, "sync-conversations", &path)
    })
    .await
    .unwrap()
}

/// The same stream batch for an app of its own that mirrors into both clouds (stand-ins of
/// LeanCloud's and Tencent's REST APIs), under the emulator: the group reaches each, and
/// the same batch again changes nothing in either (each cloud's cursor covers it).
#[tokio::test]
async fn the_stream_event_mirrors_its_group_into_both_clouds_under_the_emulator() {
    use im_e2e::tencent::TencentStandIn;
    use im_shared::model::{Secret, TencentCloud, TencentSpec};
    use std::collections::BTreeSet;

    let store =
        im_shared::store::DynamoStore::new(im_e2e::stack::ddb().await, env("IM_TEST_LAMBDA_TABLE"));
    let (app, group_id, path) = own_stream_event(&store, "both-clouds").await;
    let leancloud = leancloud_stand_in(&store, &app).await;
    let tencent_key = im_e2e::stack::test_key();
    let tencent = TencentStandIn::start(1_400_000_321, &tencent_key, &["administrator"]);
    let mut spec = TencentSpec::new(tencent.url(), 1_400_000_321, "administrator");
    spec.system_messages = true;
    store
        .set_tencent(
            &app.app_id,
            &TencentCloud::new(spec).unwrap(),
            Some(&Secret::new(tencent_key)),
        )
        .await
        .unwrap();
    let answer = invoke_sync(&path).await;
    assert_eq!(answer, serde_json::json!({"batchItemFailures": []}));
    let made = leancloud.conversations_for_group(group_id);
    assert_eq!(made.len(), 1, "{:?}", leancloud.requests());
    let both: BTreeSet<String> = ["alice", "bob"].map(String::from).into();
    assert_eq!(made[0].members, both);
    assert_eq!(leancloud.messages(&made[0].id).len(), 1);
    let group = tencent
        .group(&group_id.to_string())
        .unwrap_or_else(|| panic!("no Tencent group: {:?}", tencent.requests()));
    assert_eq!(group.member_ids(), both);
    assert_eq!(group.owner.as_deref(), Some("alice"));
    assert_eq!(tencent.notifications(&group_id.to_string()).len(), 1);

    let calls = (leancloud.requests().len(), tencent.requests().len());
    let again = invoke_sync(&path).await;
    assert_eq!(again, serde_json::json!({"batchItemFailures": []}));
    assert_eq!(
        (leancloud.requests().len(), tencent.requests().len()),
        calls,
        "the same batch again called a cloud"
    );
    let _ = std::fs::remove_file(path);
}

/// The scheduled event drains what a stream event deferred, under the emulator. The app's
/// IM cloud refuses every message with 429 (its quota used up): the stream event creates
/// the conversation, defers the group's message and reports no failure, so the shard goes
/// on; the group shows `held` "deferred:". The quota lifts; once the app's pause is over
/// (`scripts/test.sh` gives this emulator 2 s, and a call 3 s of retries), the scheduled
/// event (`events/schedule/sync-conversations.json`) posts the message, once, and ends the
/// deferral; the same event again calls nothing for the group.
#[tokio::test]
async fn the_scheduled_event_drains_what_a_stream_event_deferred_under_the_emulator() {
    use im_shared::model::CloudId;
    use std::time::{Duration, Instant};

    let store =
        im_shared::store::DynamoStore::new(im_e2e::stack::ddb().await, env("IM_TEST_LAMBDA_TABLE"));
    let (app, group_id, path) = own_stream_event(&store, "drained").await;
    let cloud = leancloud_stand_in(&store, &app).await;
    cloud.set_message_quota(Some((0, Duration::from_secs(3600))));

    let answer = invoke_sync(&path).await;
    assert_eq!(answer, serde_json::json!({"batchItemFailures": []}));
    let made = cloud.conversations_for_group(group_id);
    assert_eq!(made.len(), 1, "{:?}", cloud.requests());
    assert!(cloud.messages(&made[0].id).is_empty());
    assert!(cloud.messages_refused() > 0);
    let sync = store
        .sync_cursor(group_id, CloudId::LeanCloud)
        .await
        .unwrap()
        .unwrap();
    let held = sync.held.expect("the group is held");
    assert!(
        held.deferred && held.why.starts_with("deferred:"),
        "{held:?}"
    );
    let entry = store
        .deferral(group_id, CloudId::LeanCloud)
        .await
        .unwrap()
        .expect("listed for a drain");
    assert_eq!(entry.app_id, app.app_id);

    cloud.set_message_quota(None);
    let drain = repo_root().join("events/schedule/sync-conversations.json");
    // The app's pause (and so the entry's due time) ends within seconds; a drain before
    // then answers 0 and leaves the deferral in place.
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let answer = invoke_sync(&drain).await;
        assert!(answer["drained"].is_u64(), "{answer}");
        if store
            .deferral(group_id, CloudId::LeanCloud)
            .await
            .unwrap()
            .is_none()
        {
            break;
        }
        assert!(Instant::now() < until, "never drained: {answer}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(
        cloud.messages(&made[0].id).len(),
        1,
        "{:?}",
        cloud.requests()
    );
    let sync = store
        .sync_cursor(group_id, CloudId::LeanCloud)
        .await
        .unwrap()
        .unwrap();
    assert!(sync.held.is_none(), "{:?}", sync.held);
    assert_eq!(cloud.conversations_for_group(group_id).len(), 1);

    let calls = cloud.requests().len();
    let again = invoke_sync(&drain).await;
    assert!(again["drained"].is_u64(), "{again}");
    let stream_again = invoke_sync(&path).await;
    assert_eq!(stream_again, serde_json::json!({"batchItemFailures": []}));
    assert_eq!(
        cloud.requests().len(),
        calls,
        "a second drain or the batch again called the cloud"
    );
    let _ = std::fs::remove_file(path);
}
