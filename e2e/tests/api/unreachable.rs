//! Storage that cannot be reached: every route that needs it answers 503 with
//! `Retry-After` in the one error shape, promptly, never a 500 or a hang; a request
//! without credentials is still a 401 and `/health` a 200; the IM cloud mirror reports
//! its batch for retry. "Unreachable" is real: a
//! closed loopback port (refused) or a loopback listener that never answers (time-outs);
//! nothing stands in for DynamoDB. Each route's request is its `events/` file, as API
//! Gateway received it (the tokens there are valid; their key is in storage).

use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use im_e2e::http::client;
use im_e2e::lambda::event_file;
use im_e2e::openapi::{self, Checked};
use im_e2e::repo::{read_json, repo_root};
use im_e2e::stack::{closed_endpoint, serve_on, silent_endpoint, store_at};
use im_shared::api::{router, AppState};
use im_shared::config::{Config, DynamoBounds};
use im_shared::routes::{Function, Route, ROUTES};
use im_sync::{StreamEvent, Syncer};
use reqwest::Method;
use serde_json::Value;
use tower::ServiceExt;

/// A hang check, not a performance figure: the bound is about 3 s (`DynamoBounds`).
const PROMPT: Duration = Duration::from_secs(10);

/// `route`'s event sent over HTTP to `base` (without its `authorization` header unless
/// `token`): the answer, checked against openapi.yaml, and how long it took.
async fn send(base: &str, route: &Route, token: bool) -> (Checked, Duration) {
    let event = read_json(&event_file("events", route));
    let method = Method::from_bytes(route.method.as_bytes()).unwrap();
    let mut url = format!("{base}{}", event["rawPath"].as_str().unwrap());
    if let Some(query) = event["rawQueryString"].as_str().filter(|q| !q.is_empty()) {
        url = format!("{url}?{query}");
    }
    let mut req = client().request(method.clone(), url);
    for (name, value) in event["headers"].as_object().unwrap() {
        let skip = ["host", "content-length"].contains(&name.as_str())
            || (name == "authorization" && !token);
        if !skip {
            req = req.header(name, value.as_str().unwrap());
        }
    }
    if let Some(body) = event["body"].as_str() {
        req = req.body(body.to_owned());
    }
    let started = Instant::now();
    let resp = openapi::send(&method, req).await;
    (resp, started.elapsed())
}

/// What a route that needs storage must answer when storage is unreachable.
fn assert_unavailable(what: &str, status: u16, retry_after: Option<&str>, body: &Value) {
    assert_eq!(status, 503, "{what}: {body}");
    assert_eq!(retry_after, Some("1"), "{what}");
    assert_eq!(body["code"], 1503, "{what}: {body}");
    assert!(
        body["msg"]
            .as_str()
            .unwrap()
            .starts_with("service_unavailable"),
        "{what}: {body}"
    );
    // The SDK's detail is logged, never returned.
    let text = body.to_string();
    assert!(
        !text.contains("dispatch") && !text.contains("127.0.0.1"),
        "{what}: {body}"
    );
}

/// Every route over HTTP, all at once: 503 with a token, 401 without, health 200.
async fn every_route(base: &str) {
    // Parsed once, before the clock starts: the checks of the answers wait for it.
    openapi::spec();
    let calls = ROUTES.iter().flat_map(|route| {
        [true, false].map(|token| async move {
            let (resp, took) = send(base, route, token).await;
            let what = format!("{} {} (token: {token})", route.method, route.path);
            assert!(took < PROMPT, "{what} took {took:?}");
            let status = resp.status().as_u16();
            let retry_after = resp
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_owned());
            let body: Value = resp.json().await.unwrap();
            match (route.function, token) {
                (Function::Health, _) => assert_eq!(status, 200, "{what}: {body}"),
                // Storage unreachable: refused in the body, never allowed.
                (Function::TencentCallback, _) => {
                    assert_eq!(status, 200, "{what}: {body}");
                    assert_eq!(body["ActionStatus"], "FAIL", "{what}: {body}");
                }
                (_, false) => assert_eq!(status, 401, "{what}: {body}"),
                (_, true) => {
                    assert_unavailable(&what, status, retry_after.as_deref(), &body);
                    let request = body["request"].as_str().unwrap();
                    assert!(
                        request.starts_with(&format!("{} /", route.method)),
                        "{what}"
                    );
                }
            }
        })
    });
    futures::future::join_all(calls).await;
}

#[tokio::test]
async fn refused_connections_answer_503_on_every_route() {
    let base = serve_on(&[], store_at(&closed_endpoint()).await).await;
    every_route(&base).await;
}

#[tokio::test]
async fn a_store_that_never_answers_is_503_within_the_bound_on_every_route() {
    let base = serve_on(&[], store_at(&silent_endpoint().await).await).await;
    every_route(&base).await;
}

/// A function's init whose warm-up met a silent store (bounded at 1.5 s, as
/// `im_shared::lambda` does) leaves nothing its first request waits on: that request pays
/// its own bound once, not the warm-up's too.
#[tokio::test]
async fn the_first_request_after_a_failed_warm_up_pays_only_its_own_bound() {
    let store = store_at(&silent_endpoint().await).await;
    let started = Instant::now();
    store.warm_up(Duration::from_millis(1500)).await;
    assert!(started.elapsed() < Duration::from_secs(3));
    let base = serve_on(&[], store).await;
    let login = ROUTES
        .iter()
        .find(|r| r.event == "login-signature")
        .unwrap();
    let (resp, took) = send(&base, login, true).await;
    assert_eq!(resp.status(), 503);
    let bound = DynamoBounds::default().operation_timeout;
    assert!(took < bound + Duration::from_secs(1), "took {took:?}");
}

/// The authorizer mode (API Gateway verified the token; its claims arrive in the request
/// context): the router in-process, fed each `events/authorizer/` event as the Lambda
/// runtime hands it over.
#[tokio::test]
async fn authorizer_mode_routes_answer_503() {
    let settings = [
        ("IM_AUTH_MODE", "authorizer"),
        ("IM_AUTH_APP_ID", "demo-app"),
        ("IM_AUTH_ADMIN_CLAIM", "groups"),
        ("IM_AUTH_ADMIN_VALUE", "im-admin"),
    ];
    let config = Config::from_lookup(|name| match name {
        "TABLE_NAME" => Some("im-unreachable".to_owned()),
        other => settings
            .iter()
            .find(|(k, _)| *k == other)
            .map(|(_, v)| v.to_string()),
    })
    .unwrap();
    let store = store_at(&closed_endpoint()).await;
    let service = router(AppState::new(config, Arc::new(store)), Function::ALL);
    for route in ROUTES {
        let mut event = read_json(&event_file("events/authorizer", route));
        for claims in [true, false] {
            if !claims {
                let context = event["requestContext"].as_object_mut().unwrap();
                context.remove("authorizer");
            }
            let what = format!("{} {} (claims: {claims})", route.method, route.path);
            let req = lambda_http::request::from_str(&event.to_string()).unwrap();
            let started = Instant::now();
            let resp = service
                .clone()
                .oneshot(req.map(axum::body::Body::new))
                .await
                .unwrap();
            assert!(started.elapsed() < PROMPT, "{what}");
            let (parts, body) = resp.into_parts();
            let body =
                String::from_utf8(body.collect().await.unwrap().to_bytes().to_vec()).unwrap();
            let headers: serde_json::Map<String, Value> = parts
                .headers
                .iter()
                .map(|(k, v)| (k.to_string(), Value::from(v.to_str().unwrap())))
                .collect();
            // As the function would answer API Gateway, checked against openapi.yaml.
            let answer = serde_json::json!({
                "statusCode": parts.status.as_u16(),
                "headers": headers,
                "body": body,
            });
            openapi::check_lambda(&event, &answer);
            let status = parts.status.as_u16();
            let body: Value = serde_json::from_str(&body).unwrap();
            match (route.function, claims) {
                (Function::Health, _) => assert_eq!(status, 200, "{what}"),
                (Function::TencentCallback, _) => {
                    assert_eq!(status, 200, "{what}");
                    assert_eq!(body["ActionStatus"], "FAIL", "{what}: {body}");
                }
                (_, false) => assert_eq!(status, 401, "{what}: {body}"),
                (_, true) => assert_unavailable(
                    &what,
                    status,
                    parts
                        .headers
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok()),
                    &body,
                ),
            }
        }
    }
}

/// The mirror (`sync-conversations`, and im-local's stream poller, which runs the same
/// handler): unreachable storage is a failure Lambda retries, never a group marked
/// failed. The batch names its group's first record, so Lambda retries it and everything
/// after it; the group's cursor could not even be read, let alone written `failed`.
#[tokio::test]
async fn the_mirror_reports_its_batch_for_retry() {
    let syncer = Syncer::with_client(store_at(&closed_endpoint()).await).unwrap();
    let event: StreamEvent = serde_json::from_value(read_json(
        &repo_root().join("events/sync-conversations.json"),
    ))
    .unwrap();
    let first = event.records[0].change.sequence_number.clone().unwrap();
    let started = Instant::now();
    let response = syncer
        .handle(event, Instant::now() + Duration::from_secs(30))
        .await;
    let retried: Vec<_> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone().unwrap_or_default())
        .collect();
    assert_eq!(retried, [first]);
    assert!(started.elapsed() < PROMPT);
}
