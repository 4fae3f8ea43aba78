//! `IM_TIMESTAMP_UNIT=milliseconds`: the service as `make run` builds it (the same
//! router, configured from settings, on DynamoDB Local), served over HTTP on a free
//! port, signs with millisecond timestamps, and the signatures verify against Python's
//! HMAC over exactly the timestamp returned.

mod common;

use std::sync::Arc;

use common::*;
use im_shared::api::{router, AppState};
use im_shared::config::Config;
use im_shared::routes::Function;
use im_shared::store::DynamoStore;
use serde_json::Value;

#[tokio::test]
async fn milliseconds_are_signed_and_returned() {
    let table = env("IM_TEST_LOCAL_TABLE");
    let store = DynamoStore::new(ddb().await, table.clone());
    let app = TestApp::register(&store, "ms-app").await;
    let config = Config::from_lookup(|name| match name {
        "TABLE_NAME" => Some(table.clone()),
        "IM_TIMESTAMP_UNIT" => Some("milliseconds".into()),
        _ => None,
    })
    .unwrap();
    let service = router(AppState::new(config, Arc::new(store)), &Function::ALL);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, service).await.unwrap() });

    let a = &app.app_id;
    let http = reqwest::Client::new();
    for (path, message) in [
        (
            format!("/signature/login/{a}/alice"),
            "{a}:alice::{ts}:{nonce}",
        ),
        (
            format!("/signature/history/{a}/alice/conv-1"),
            "{a}:alice:conv-1:{nonce}:{ts}",
        ),
    ] {
        let body: Value = http
            .get(format!("{base}{path}"))
            .bearer_auth(app.token("alice"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let ts = body["timestamp"].as_str().unwrap();
        let nonce = body["nonce"].as_str().unwrap();
        let millis: u64 = ts.parse().unwrap();
        assert!(
            millis.abs_diff(now_secs() * 1000) < 120_000,
            "{ts} is not now in milliseconds"
        );
        let message = message
            .replace("{a}", a)
            .replace("{ts}", ts)
            .replace("{nonce}", nonce);
        assert_eq!(
            body["signature"].as_str().unwrap(),
            python_hmac_sha1(&app.master_key, &message),
            "{path}: {body}"
        );
    }
}
