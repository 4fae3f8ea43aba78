//! A function binary under the Lambda runtime emulator (`cargo lambda watch`, started by
//! `make test` on the port a test passes), invoked with an API Gateway event as
//! `sam local invoke -e events/<file>.json` would send it.

use std::path::{Path, PathBuf};
use std::process::Command;

use im_shared::model::{Secret, TencentCloud, TencentSpec};
use im_shared::routes::{Route, ROUTES};
use im_shared::store::{DynamoStore, KeyStore};
use serde_json::Value;

use crate::openapi;
use crate::repo::{read_json, repo_root};
use crate::signatures::{verify_signature_response, verify_usersig_response};
use crate::stack::{ddb, env};

/// The event to invoke a function with.
pub enum Data<'a> {
    /// An event file.
    File(&'a Path),
    /// An event, as JSON text.
    Inline(&'a str),
}

/// `cargo lambda invoke`, the emulator's own client; returns the API Gateway response,
/// checked against openapi.yaml.
pub fn invoke(port: &str, function: &str, data: Data<'_>) -> Value {
    let mut cmd = Command::new("cargo");
    cmd.args([
        "lambda",
        "invoke",
        function,
        "--invoke-address",
        "127.0.0.1",
    ])
    .args(["--invoke-port", port, "--output-format", "json"]);
    let event: Value = match data {
        Data::File(path) => {
            cmd.arg("--data-file").arg(path);
            read_json(path)
        }
        Data::Inline(json) => {
            cmd.args(["--data-ascii", json]);
            serde_json::from_str(json).expect("the inline event is JSON")
        }
    };
    let out = cmd.output().expect("cargo lambda invoke");
    assert!(
        out.status.success(),
        "cargo lambda invoke {function} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let resp: Value = serde_json::from_slice(&out.stdout)
        .expect("the invoke output is the function's JSON response");
    // Every response is checked against openapi.yaml before a test sees it.
    openapi::check_lambda(&event, &resp);
    resp
}

/// `cargo lambda invoke` with an event that is not an API Gateway request (a stream
/// batch): the function's own JSON answer, unchecked.
pub fn invoke_event(port: &str, function: &str, file: &Path) -> Value {
    let out = Command::new("cargo")
        .args([
            "lambda",
            "invoke",
            function,
            "--invoke-address",
            "127.0.0.1",
        ])
        .args([
            "--invoke-port",
            port,
            "--output-format",
            "json",
            "--data-file",
        ])
        .arg(file)
        .output()
        .expect("cargo lambda invoke");
    assert!(
        out.status.success(),
        "cargo lambda invoke {function} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the invoke output is the function's JSON answer")
}

/// Points `event` at `path`, written as an HTTP API delivers it: already percent-decoded,
/// in `rawPath` and in `pathParameters`, read off `path` along the event's route. A path
/// that route does not match gets a route key of its own without parameters, as API
/// Gateway would send a request for that literal path.
pub fn at_path(event: &mut Value, path: &str) {
    event["rawPath"] = Value::from(path);
    event["requestContext"]["http"]["path"] = Value::from(path);
    let key = event["routeKey"]
        .as_str()
        .expect("the event's routeKey")
        .to_owned();
    let (method, template) = key.split_once(' ').expect("a route key: METHOD /path");
    let (t, p): (Vec<&str>, Vec<&str>) = (template.split('/').collect(), path.split('/').collect());
    let mut params = serde_json::Map::new();
    let fits = t.len() == p.len()
        && t.iter().zip(&p).all(|(t, p)| {
            match t.strip_prefix('{').and_then(|n| n.strip_suffix('}')) {
                Some(name) => {
                    params.insert(name.to_owned(), Value::from(*p));
                    true
                }
                None => t == p,
            }
        });
    let e = event.as_object_mut().unwrap();
    if !fits {
        let own = Value::from(format!("{method} {path}"));
        e.insert("routeKey".into(), own.clone());
        e["requestContext"]["routeKey"] = own;
        e.remove("pathParameters");
    } else if params.is_empty() {
        e.remove("pathParameters");
    } else {
        e.insert("pathParameters".into(), Value::Object(params));
    }
}

/// The path a client sends for `event` (an HTTP API event: route key and decoded
/// `pathParameters`): the route's template with each parameter percent-encoded, every
/// byte but the unreserved ones escaped.
pub fn client_path(event: &Value) -> String {
    let key = event["routeKey"].as_str().expect("the event's routeKey");
    let (_, template) = key.split_once(' ').expect("a route key: METHOD /path");
    template
        .split('/')
        .map(
            |segment| match segment.strip_prefix('{').and_then(|n| n.strip_suffix('}')) {
                Some(name) => {
                    let value = event["pathParameters"][name]
                        .as_str()
                        .expect("the parameter");
                    value
                        .bytes()
                        .map(|b| match b {
                            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                                char::from(b).to_string()
                            }
                            _ => format!("%{b:02X}"),
                        })
                        .collect()
                }
                None => segment.to_owned(),
            },
        )
        .collect::<Vec<String>>()
        .join("/")
}

/// The JSON body of a function's response (`null` when there is none).
pub fn body(resp: &Value) -> Value {
    serde_json::from_str(resp["body"].as_str().unwrap_or("null")).unwrap_or(Value::Null)
}

/// The event file of `route` in `dir` (`events` or `events/authorizer`).
pub fn event_file(dir: &str, route: &Route) -> PathBuf {
    repo_root().join(dir).join(format!("{}.json", route.event))
}

/// Replays every event of `dir` (`events` or `events/authorizer`) in route-list order
/// through `invoke` (an emulator: cargo lambda's or SAM's), and checks each answer: the
/// documented status, signatures against an independent HMAC with the app's master
/// `key`, and what each group write left in `store`. The table must be fresh, so that
/// the create-group event makes group 1, which the later group events name.
pub async fn replay(
    dir: &str,
    store: &DynamoStore,
    key: &str,
    invoke: impl Fn(&Route, &Path) -> Value,
) {
    for route in ROUTES {
        let path = event_file(dir, route);
        let event = read_json(&path);
        assert_eq!(
            event["routeKey"],
            format!("{} {}", route.method, route.path),
            "{}",
            path.display()
        );
        let resp = invoke(route, &path);
        assert_eq!(
            resp["statusCode"], route.status,
            "{dir}/{} answered {resp}",
            route.event
        );
        let b = body(&resp);
        match route.function.name() {
            "usersig-signature" => {
                assert_eq!(resp["headers"]["cache-control"], "no-store");
                let tencent = store.tencent_key("demo-app").await.unwrap().unwrap();
                verify_usersig_response(
                    &b,
                    tencent.key.expose(),
                    tencent.settings.sdk_app_id(),
                    tencent.settings.usersig_expire(),
                );
            }
            name if name.ends_with("-signature") => {
                assert_eq!(resp["headers"]["cache-control"], "no-store");
                verify_signature_response(&b, key);
            }
            "create-group" => {
                assert_eq!(b["group_id"], 1);
                assert_eq!(b["owner"], "alice");
                assert_eq!(b["member_client_ids"], "alice:bob");
            }
            "add-members" => assert_eq!(b["member_client_ids"], "carol:dave"),
            // Signed for its fixed RequestTime, long past by now: refused, nothing read
            // beyond the app's settings.
            "tencent-callback" => {
                assert_eq!(b["ActionStatus"], "FAIL", "{b}");
                assert_eq!(b["ErrorCode"], 1, "{b}");
            }
            "update-group" => assert_eq!(b["group_name"], "renamed group"),
            "grant-admins" => {
                let admins = store.group_meta(1).await.unwrap().unwrap().admins;
                assert_eq!(admins.into_iter().collect::<Vec<_>>(), ["bob"]);
            }
            "revoke-admins" => assert!(store
                .group_meta(1)
                .await
                .unwrap()
                .unwrap()
                .admins
                .is_empty()),
            "remove-members" => assert_eq!(store.group_members(1).await.unwrap(), ["alice", "bob"]),
            "transfer-owner" => {
                assert_eq!(b["owner"], "bob");
                assert!(resp["headers"]["etag"].as_str().is_some(), "{resp}");
            }
            _ => {}
        }
    }
    // The delete-group event ran last among the group events: nothing of group 1 is left.
    assert!(store.group_members(1).await.unwrap().is_empty());
    assert_eq!(store.group_meta(1).await.unwrap(), None);
}

/// The Tencent `SDKAppID` the events' app has in the emulators' tables.
pub const DEMO_SDK_APP_ID: u64 = 1_400_000_001;
/// Its Tencent secret key: a fixture of local tables only, like `events/fixture-token-secret`
/// (with the test secrets' marker, which `make test` searches the service logs for).
const DEMO_TENCENT_KEY: &str = "mk-test-events-fixture-tencent-key-0123456789abcdef";
/// Its Tencent callback token, which `events/tencent-callback.json`'s `Sign` is made with
/// (a fixture of local tables only).
pub const DEMO_CALLBACK_TOKEN: &str = "mk-test-events-fixture-callback-token";

/// An emulator's table (cargo lambda's or SAM's), where `make test` registered `demo-app` (the events' app)
/// with the admin command, and the master key it gave it.
///
/// It also gives `demo-app` Tencent settings (the UserSig event's), always the same, so
/// that the tests sharing an emulator's table may each set them.
pub async fn demo_app(table: &str) -> (DynamoStore, String) {
    let store = DynamoStore::new(ddb().await, table);
    let mut spec = TencentSpec::new(
        "https://adminapisgp.im.qcloud.com",
        DEMO_SDK_APP_ID,
        "im-admin",
    );
    // For the UserSig event only: the sync event's groups are mirrored into stand-ins,
    // never into a real domain (lambda_events.rs gives that test an app of its own).
    spec.mirroring = false;
    let tencent = TencentCloud::new(spec).unwrap();
    store
        .set_tencent("demo-app", &tencent, Some(&Secret::new(DEMO_TENCENT_KEY)))
        .await
        .unwrap();
    store
        .set_tencent_callback_token("demo-app", &Secret::new(DEMO_CALLBACK_TOKEN))
        .await
        .unwrap();
    let key = std::fs::read_to_string(env("IM_TEST_DEMO_KEY_FILE")).unwrap();
    (store, key.trim().to_owned())
}
