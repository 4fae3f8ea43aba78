//! Every function binary under the Lambda runtime emulator (`cargo lambda watch`,
//! started by `make test`), invoked with every `events/` file exactly as
//! `sam local invoke -e events/<file>.json` would send it.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use im_shared::routes::{Route, ROUTES};
use im_shared::secret::Secret;
use im_shared::store::DynamoStore;
use serde_json::Value;

/// `cargo lambda invoke`, the emulator's own client; returns the API Gateway response.
fn invoke(function: &str, data: Data<'_>) -> Value {
    let port = env("IM_TEST_LAMBDA_PORT");
    let mut cmd = Command::new("cargo");
    cmd.args([
        "lambda",
        "invoke",
        function,
        "--invoke-address",
        "127.0.0.1",
    ])
    .args(["--invoke-port", &port, "--output-format", "json"]);
    match data {
        Data::File(path) => cmd.arg("--data-file").arg(path),
        Data::Inline(json) => cmd.args(["--data-ascii", json]),
    };
    let out = cmd.output().expect("cargo lambda invoke");
    assert!(
        out.status.success(),
        "cargo lambda invoke {function} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the invoke output is the function's JSON response")
}

enum Data<'a> {
    File(&'a Path),
    Inline(&'a str),
}

fn body(resp: &Value) -> Value {
    serde_json::from_str(resp["body"].as_str().unwrap_or("null")).unwrap_or(Value::Null)
}

fn event_path(route: &Route) -> std::path::PathBuf {
    repo_root()
        .join("events")
        .join(format!("{}.json", route.event))
}

#[tokio::test]
async fn every_event_file_gets_its_documented_status() {
    // The events use app `demo-app`; the emulator's table is fresh, so the create-group
    // event makes group 1, which the later group events name.
    let store = DynamoStore::new(ddb().await, env("IM_TEST_LAMBDA_TABLE"));
    let key = test_key();
    store
        .create_app("demo-app", &Secret::new(key.clone()))
        .await
        .unwrap();

    for route in ROUTES {
        let path = event_path(route);
        let event: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(
            event["routeKey"],
            format!("{} {}", route.method, route.path),
            "{}",
            path.display()
        );
        let resp = invoke(route.function.name(), Data::File(&path));
        assert_eq!(
            resp["statusCode"], route.status,
            "{} answered {resp}",
            route.event
        );
        let b = body(&resp);
        match route.function.name() {
            name if name.ends_with("-signature") => {
                assert_eq!(resp["headers"]["cache-control"], "no-store");
                verify_signature_response(&b, &key);
            }
            "create-group" => {
                assert_eq!(b["group_id"], 1);
                assert_eq!(b["member_client_ids"], "alice:bob");
            }
            "add-members" => assert_eq!(b["member_client_ids"], "carol:dave"),
            "update-group" => assert_eq!(b["group_name"], "renamed group"),
            _ => {}
        }
        if route.event == "remove-members" {
            assert_eq!(store.group_members(1).await.unwrap(), ["alice", "bob"]);
        }
    }
    // The delete-group event ran last: nothing of group 1 is left.
    assert!(store.group_members(1).await.unwrap().is_empty());
    assert_eq!(store.group_name(1).await.unwrap(), None);
}

/// Variants of the event files with bad input: JSON errors, never a 5xx.
#[test]
fn bad_input_through_the_lambda_path() {
    let read = |name: &str| -> Value {
        serde_json::from_str(
            &std::fs::read_to_string(repo_root().join("events").join(name)).unwrap(),
        )
        .unwrap()
    };
    let with_path = |mut e: Value, path: &str| {
        e["rawPath"] = Value::from(path);
        e["requestContext"]["http"]["path"] = Value::from(path);
        e
    };
    let cases = [
        (
            "login-signature",
            with_path(
                read("login-signature.json"),
                "/signature/login/demo-app/al%3Aice",
            ),
            400,
        ),
        (
            "login-signature",
            with_path(
                read("login-signature.json"),
                "/signature/login/unknown-app/alice",
            ),
            404,
        ),
        (
            "update-group",
            with_path(read("update-group.json"), "/im/group/424242"),
            404,
        ),
        (
            "update-group",
            with_path(read("update-group.json"), "/im/group/abc"),
            400,
        ),
        (
            "create-group",
            {
                let mut e = read("create-group.json");
                e["body"] = Value::from("{\"group_name\": 7}");
                e
            },
            422,
        ),
        (
            "create-group",
            {
                let mut e = read("create-group.json");
                e["headers"]["content-type"] = Value::from("text/csv");
                e
            },
            415,
        ),
        // A route of another function is not this function's: 404, as API Gateway would.
        (
            "login-signature",
            with_path(read("login-signature.json"), "/im/group"),
            404,
        ),
    ];
    for (function, event, status) in cases {
        let resp = invoke(function, Data::Inline(&event.to_string()));
        assert_eq!(resp["statusCode"], status, "{function}: {resp}");
        let b = body(&resp);
        assert!(b["code"].as_u64().is_some() && b["msg"].is_string(), "{b}");
        assert!(b["request"]
            .as_str()
            .unwrap()
            .starts_with(event["requestContext"]["http"]["method"].as_str().unwrap()));
    }
}
