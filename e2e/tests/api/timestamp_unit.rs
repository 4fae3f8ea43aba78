//! `IM_TIMESTAMP_UNIT=milliseconds`: the service as `make run` builds it (the same
//! router, configured from settings, on DynamoDB Local), served over HTTP on a free
//! port, signs with millisecond timestamps, and the signatures verify against Python's
//! HMAC over exactly the timestamp returned.

use im_e2e::signatures::assert_signs;
use im_e2e::stack::{local_store, now_secs, serve, TestApp};
use serde_json::Value;

#[tokio::test]
async fn milliseconds_are_signed_and_returned() {
    let app = TestApp::register(&local_store().await, "ms-app").await;
    let base = serve(&[("IM_TIMESTAMP_UNIT", "milliseconds")]).await;

    let a = &app.app_id;
    let http = im_e2e::http::client();
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
        let millis: u64 = ts.parse().unwrap();
        assert!(
            millis.abs_diff(now_secs() * 1000) < 120_000,
            "{ts} is not now in milliseconds"
        );
        assert_signs(&body, &app.master_key, &message.replace("{a}", a));
    }
}
