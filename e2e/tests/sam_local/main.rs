//! The functions under SAM CLI's own emulators: `sam local invoke` with every event file
//! in both authentication modes, and `sam local start-api` (SAM's API Gateway emulator
//! builds each event from a real HTTP request: an independent client of our router).
//! What is real here: the SAM CLI and its API emulator, the runtime interface emulator
//! it ships, Docker, and the arm64 binaries of `sam build`; the base image may be a
//! stand-in (scripts/sam-base-image.sh).
//!
//! `make test` runs this binary after `sam build` (scripts/sam-local.sh), which starts
//! nothing when no Docker engine answers, and sets:
//! - `IM_TEST_SAM_IMAGE`: the base image;
//! - `IM_TEST_SAM_HOST`: this machine's address as the containers see it;
//! - `IM_TEST_SAM_DDB_PORT` and the `IM_TEST_SAM_*_TABLE`s: DynamoDB Local, with the
//!   events' app and token key registered (the `reachable_*` tests, which it runs only
//!   when its probe found that a container can open a connection to DynamoDB Local),
//!   which is the port of scripts/sam-local.sh's bridge forwarder when
//!   `IM_TEST_SAM_BRIDGE_FORWARD=1` (DynamoDB Local itself listens on 127.0.0.1 only).
//!
//! The tests are `#[ignore]`d so that the workspace's `cargo test`, which runs before
//! `sam build`, leaves them to that step (`--ignored`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use im_e2e::http::client;
use im_e2e::lambda::{body, demo_app, event_file, replay};
use im_e2e::net::own_non_loopback_addresses;
use im_e2e::openapi;
use im_e2e::repo::{read_json, repo_root};
use im_e2e::sam::{invoke, Auth, Settings, StartApi, TempFile};
use im_e2e::stack::env;
use im_shared::routes::{Route, ROUTES};
use reqwest::Method;
use serde_json::{json, Value};

/// At most this many `sam local invoke`s at once (each is a container under emulation).
const PARALLEL: usize = 3;

/// DynamoDB at a port of this machine where nothing listens: unreachable storage. Here a
/// container's connection attempts go unanswered (they hang, they are not refused), so
/// this exercises the client's time-outs; where containers can connect, it is refused.
fn unreachable(auth: Auth) -> Settings {
    let closed = std::net::TcpListener::bind("0.0.0.0:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    Settings {
        endpoint: format!("http://{}:{closed}", env("IM_TEST_SAM_HOST")),
        table: "im-sam-unreachable".into(),
        auth,
    }
}

fn reachable(auth: Auth) -> Settings {
    Settings {
        endpoint: format!(
            "http://{}:{}",
            env("IM_TEST_SAM_HOST"),
            env("IM_TEST_SAM_DDB_PORT")
        ),
        table: match auth {
            Auth::Tokens => env("IM_TEST_SAM_TABLE"),
            Auth::Authorizer => env("IM_TEST_SAM_AUTHZ_TABLE"),
        },
        auth,
    }
}

/// The containers' way to DynamoDB Local (scripts/sam-local.sh's bridge forwarder) is
/// theirs alone. From this machine, loopback and its own addresses find no listener
/// (refused); the bridge's gateway address, which the kernel counts as the bridge's own
/// even for a connection from the host, is closed unanswered (the peer is not on the
/// bridge's subnet). That containers do get through is the probe's 200 and the
/// `reachable_*` tests. Named so that it runs with the unreachable-storage suites too.
#[test]
#[ignore = "run by make test after sam build (scripts/sam-local.sh)"]
fn unreachable_bridge_forwarder_from_any_other_interface() {
    use std::io::{Read, Write};
    if std::env::var("IM_TEST_SAM_BRIDGE_FORWARD").as_deref() != Ok("1") {
        eprintln!("no bridge forwarder in this run (IM_SAM_HOST set, or no Docker bridge)");
        return;
    }
    let port: u16 = env("IM_TEST_SAM_DDB_PORT").parse().unwrap();
    let mut addresses = own_non_loopback_addresses();
    addresses.push(std::net::Ipv4Addr::LOCALHOST.into());
    for ip in addresses {
        let tried =
            std::net::TcpStream::connect_timeout(&(ip, port).into(), Duration::from_secs(3));
        match tried {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {}
            Ok(mut stream) => {
                stream
                    .set_read_timeout(Some(Duration::from_secs(10)))
                    .unwrap();
                let _ = stream.write_all(b"GET / HTTP/1.0\r\n\r\n");
                let mut answer = Vec::new();
                let read = stream.read_to_end(&mut answer);
                assert!(
                    answer.is_empty()
                        && read.as_ref().map_or_else(
                            |e| e.kind() != std::io::ErrorKind::WouldBlock
                                && e.kind() != std::io::ErrorKind::TimedOut,
                            |_| true
                        ),
                    "the bridge forwarder at {ip}:{port} answered this machine: {read:?} {}",
                    String::from_utf8_lossy(&answer)
                );
            }
            Err(e) => panic!("the bridge forwarder at {ip}:{port}: {e} (expected: refused)"),
        }
    }
}

/// Runs `job` on every item, [`PARALLEL`] at a time; the results in the items' order.
fn in_parallel<T: Sync, R: Send>(items: &[T], job: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let mut results: Vec<Option<R>> = (0..items.len()).map(|_| None).collect();
    for (chunk, out) in items.chunks(PARALLEL).zip(results.chunks_mut(PARALLEL)) {
        std::thread::scope(|s| {
            for (item, slot) in chunk.iter().zip(out.iter_mut()) {
                let job = &job;
                s.spawn(move || *slot = Some(job(item)));
            }
        });
    }
    results.into_iter().map(Option::unwrap).collect()
}

/// An event of `events/` changed by `edit`, in a temporary file removed when the
/// returned value is dropped.
fn edited_event(file: &str, edit: impl FnOnce(&mut Value)) -> TempFile {
    let mut event = read_json(&repo_root().join("events").join(file));
    edit(&mut event);
    TempFile::with(&event.to_string())
}

/// Our error shape: a JSON body with `code`, `msg` and the `request` it answers.
fn assert_our_error(resp: &Value, what: &str) {
    let b = body(resp);
    assert!(
        b["code"].as_u64().is_some() && b["msg"].is_string() && b["request"].is_string(),
        "{what}: not our JSON error: {resp}"
    );
}

fn header<'a>(resp: &'a Value, name: &str) -> Option<&'a str> {
    resp["headers"][name].as_str()
}

/// Every function with every event file, in both modes, DynamoDB unreachable: `health`
/// answers 200, every other route 503 with `Retry-After` in our JSON error shape (never a
/// time-out, a hang or a 500), the stream function reports its batch for a retry; and the
/// requests that need no storage (no token, a malformed token, `alg: none`) answer 401
/// as in production.
#[test]
#[ignore = "run by make test after sam build (scripts/sam-local.sh)"]
fn unreachable_storage_every_event_under_sam_local_invoke() {
    let mut cases: Vec<(Auth, &'static str, PathBuf, Option<u16>)> = Vec::new();
    for auth in [Auth::Tokens, Auth::Authorizer] {
        for route in ROUTES {
            // Tencent's callbacks refuse in the body (200) what they cannot check.
            let status = if ["health", "tencent-callback"].contains(&route.event) {
                200
            } else {
                503
            };
            cases.push((
                auth,
                route.function.name(),
                event_file(auth.events(), route),
                Some(status),
            ));
        }
    }
    // The stream batch: no HTTP status, a retry of its group's first record.
    let stream = repo_root().join("events/sync-conversations.json");
    cases.push((Auth::Tokens, "sync-conversations", stream.clone(), None));
    let b64 = |v: Value| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let alg_none = format!(
        "Bearer {}.{}.",
        b64(json!({"alg": "none", "typ": "JWT", "kid": "events-fixture"})),
        b64(json!({"sub": "alice", "exp": 4102444800u64}))
    );
    let mut edited_files = Vec::new();
    for authorization in [None, Some("Bearer not.a.token".to_owned()), Some(alg_none)] {
        let edited = edited_event("login-signature.json", |e| {
            let headers = e["headers"].as_object_mut().unwrap();
            headers.remove("authorization");
            if let Some(a) = authorization {
                headers.insert("authorization".into(), Value::from(a));
            }
        });
        cases.push((
            Auth::Tokens,
            "login-signature",
            edited.path().to_owned(),
            Some(401),
        ));
        edited_files.push(edited);
    }

    // The first invoke alone: SAM builds its emulation image on the base image once.
    let first = &cases[..1];
    let rest = &cases[1..];
    let run = |(auth, function, path, _): &(Auth, &'static str, PathBuf, Option<u16>)| {
        invoke(&unreachable(*auth), function, path)
    };
    let mut results = in_parallel(first, run);
    results.extend(in_parallel(rest, run));

    let mut slowest = Duration::ZERO;
    for ((auth, function, path, status), invoked) in cases.iter().zip(&results) {
        let what = format!("{auth:?} {function} {}", path.display());
        let resp = &invoked.answer;
        slowest = slowest.max(invoked.took);
        match status {
            Some(status) => {
                assert_eq!(resp["statusCode"], *status, "{what}: {resp}");
                match status {
                    200 => {}
                    503 => {
                        assert_our_error(resp, &what);
                        let retry = header(resp, "retry-after")
                            .and_then(|s| s.parse::<u64>().ok())
                            .unwrap_or_else(|| panic!("{what}: no Retry-After: {resp}"));
                        assert!((1..=60).contains(&retry), "{what}: Retry-After {retry}");
                    }
                    _ => {
                        assert_our_error(resp, &what);
                        assert!(header(resp, "www-authenticate").is_some(), "{what}: {resp}");
                    }
                }
            }
            None => {
                let first = read_json(path)["Records"][0]["dynamodb"]["SequenceNumber"].clone();
                assert_eq!(
                    *resp,
                    json!({"batchItemFailures": [{"itemIdentifier": first}]}),
                    "{what}"
                );
            }
        }
    }
    println!(
        "{} sam local invokes with DynamoDB unreachable; the slowest took {:.1} s (container start and emulated init included)",
        cases.len(),
        slowest.as_secs_f64()
    );
}

/// A concrete path of `route`, with ids that must be URL-encoded.
fn path_of(route: &Route) -> String {
    route
        .path
        .replace("{app_id}", "demo-app")
        .replace("{client_id}", "al%20ice%C3%A9")
        .replace("{sorted_member_ids}", "bob%3Acarol")
        .replace("{conversion_id}", "conv%207")
        .replace("{conversation_id}", "conv%207")
        .replace("{group_id}", "7")
}

/// Sends `method path` through SAM's API emulator, checked against openapi.yaml; the
/// answer as a Lambda response would carry it.
async fn http(
    api: &StartApi,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Value {
    let method = Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = client().request(method.clone(), format!("{}{path}", api.url));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if let Some(b) = body {
        req = req.body(b.to_owned());
    }
    let answer = openapi::send(&method, req.timeout(Duration::from_secs(60))).await;
    let headers: serde_json::Map<String, Value> = answer
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                Value::from(v.to_str().unwrap_or_default()),
            )
        })
        .collect();
    let status = answer.status().as_u16();
    let text = answer.text().await.unwrap();
    json!({"statusCode": status, "headers": headers, "body": text})
}

/// Every documented route through `sam local start-api` without a token reaches our
/// function and answers our 401 with `WWW-Authenticate` (ids URL-encoded, both
/// spellings, the join with and without its trailing slash); with the events' token and
/// DynamoDB unreachable, 503 with `Retry-After`; `/health` 200; an undocumented path
/// never reaches a function.
#[tokio::test]
#[ignore = "run by make test after sam build (scripts/sam-local.sh)"]
async fn unreachable_storage_every_route_under_sam_local_start_api() {
    let api = StartApi::start(&unreachable(Auth::Tokens));
    let mut paths: Vec<(&'static str, String)> = ROUTES
        .iter()
        .filter(|r| r.event != "health" && r.event != "tencent-callback")
        .map(|r| (r.method, path_of(r)))
        .collect();
    paths.push(("GET", "/signature/invite/demo-app/alice/conv-7/".to_owned()));
    for (method, path) in &paths {
        let resp = http(&api, method, path, &[], None).await;
        let what = format!("{method} {path}");
        assert_eq!(resp["statusCode"], 401, "{what}: {resp}\n{}", api.log());
        assert_our_error(&resp, &what);
        assert!(
            header(&resp, "www-authenticate").is_some_and(|h| h.starts_with("Bearer")),
            "{what}: {resp}"
        );
    }
    let token = read_json(&repo_root().join("events/login-signature.json"))["headers"]
        ["authorization"]
        .as_str()
        .unwrap()
        .to_owned();
    let resp = http(
        &api,
        "GET",
        "/signature/login/demo-app/alice",
        &[("authorization", &token)],
        None,
    )
    .await;
    assert_eq!(resp["statusCode"], 503, "{resp}");
    assert!(header(&resp, "retry-after").is_some(), "{resp}");
    assert_eq!(
        http(&api, "GET", "/health", &[], None).await["statusCode"],
        200
    );
    // Tencent's callbacks reach their function without a token, and refuse in the body
    // what they cannot check (here: storage unreachable).
    let resp = http(
        &api,
        "POST",
        "/im-cloud/tencent/callback/demo-app?SdkAppid=1&CallbackCommand=Group.CallbackBeforeCreateGroup",
        &[("content-type", "application/json")],
        Some("{}"),
    )
    .await;
    assert_eq!(resp["statusCode"], 200, "{resp}");
    assert!(
        resp["body"]
            .as_str()
            .unwrap_or_default()
            .contains("\"FAIL\""),
        "{resp}"
    );

    // Not a route of the template: SAM answers itself, our functions never see it.
    for path in ["/signature/unknown/demo-app/alice", "/im/groups", "/"] {
        let resp = client()
            .get(format!("{}{path}", api.url))
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        assert!(status == 404 || status == 403, "{path}: {status} {text}");
        assert!(
            !text.contains("\"request\""),
            "{path} reached a function: {text}"
        );
    }
    println!("{} routes through sam local start-api", paths.len() + 3);
}

/// Where containers reach DynamoDB Local: every event of both modes through
/// `sam local invoke`, with the statuses, signatures (against an independent HMAC) and
/// table contents the cargo lambda suite checks.
#[tokio::test]
#[ignore = "run by make test when its probe finds containers reach DynamoDB Local"]
async fn reachable_storage_every_event_under_sam_local_invoke() {
    for auth in [Auth::Tokens, Auth::Authorizer] {
        let settings = reachable(auth);
        let (store, key) = demo_app(&settings.table).await;
        replay(auth.events(), &store, &key, |route, path| {
            invoke(&settings, route.function.name(), path).answer
        })
        .await;
    }
}

/// Where containers reach DynamoDB Local: the events replayed as HTTP requests through
/// `sam local start-api` (tokens mode, a table of its own), with the full checks.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "run by make test when its probe finds containers reach DynamoDB Local"]
async fn reachable_storage_every_route_under_sam_local_start_api() {
    let settings = Settings {
        table: env("IM_TEST_SAM_API_TABLE"),
        ..reachable(Auth::Tokens)
    };
    let (store, key) = demo_app(&settings.table).await;
    let api = StartApi::start(&settings);
    let handle = tokio::runtime::Handle::current();
    replay("events", &store, &key, |_route: &Route, path: &Path| {
        let event = read_json(path);
        let mut target = event["rawPath"].as_str().unwrap().to_owned();
        if let Some(q) = event["rawQueryString"].as_str().filter(|q| !q.is_empty()) {
            target = format!("{target}?{q}");
        }
        let headers: Vec<(String, String)> = event["headers"]
            .as_object()
            .into_iter()
            .flatten()
            // What the HTTP client sets itself.
            .filter(|(k, _)| !matches!(k.as_str(), "host" | "content-length"))
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
            .collect();
        let headers: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let method = event["requestContext"]["http"]["method"].as_str().unwrap();
        tokio::task::block_in_place(|| {
            handle.block_on(http(
                &api,
                method,
                &target,
                &headers,
                event["body"].as_str(),
            ))
        })
    })
    .await;
}
