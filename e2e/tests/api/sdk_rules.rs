//! What the vendor's SDK (`leancloud-realtime`) asks of the signature routes, over HTTP:
//! member lists in the order it sorts them, and group changes made through the group
//! routes before their signature is asked for (docs/protocol.md, "The SDK and the
//! group"). The kit in `clients/js/` is tested with the real SDK in `js_kit.rs`.

use std::process::Command;

use im_e2e::http::Api;
use im_e2e::signatures::assert_signs;
use im_e2e::stack::unique;
use serde_json::Value;

/// The ids joined in the order Node's default `Array.prototype.sort` gives them: how
/// the SDK orders the member list it signs over and sends. Computed by Node itself, not
/// by our code.
fn node_sorted(ids: &[&str]) -> String {
    let out = Command::new("node")
        .args([
            "-e",
            "process.stdout.write(JSON.parse(process.argv[1]).sort().join(':'))",
            &serde_json::to_string(ids).unwrap(),
        ])
        .output()
        .expect("node (the SDK's runtime) must be installed for these tests");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

async fn signature(api: &Api, client: &str, path: &str) -> (u16, Value) {
    let resp = api
        .get(
            client,
            format!("/signature/{path}").replace("{a}", &api.app.app_id),
        )
        .await;
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Percent-encodes every byte outside the unreserved set, as a client puts an id in a path.
fn url_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn members_are_signed_in_the_order_the_sdk_sorts_them() {
    let api = Api::local("sdk-order").await;
    let conv = unique("conv");
    // 𠮷 is outside the BMP, ｹ and U+E000 in U+E000-U+FFFF: UTF-8 byte order puts 𠮷
    // last, the SDK's order before both.
    let ids = ["ｹ", "𠮷", "bob", "\u{E000}", "李雷", "𠮷x"];
    let sdk_order = node_sorted(&ids);
    assert_eq!(sdk_order, "bob:李雷:𠮷:𠮷x:\u{E000}:ｹ", "Node's order");
    let requested = url_escape(&ids.join(":"));
    for (op, action) in [
        ("invite", "invite"),
        ("kick", "kick"),
        ("conversation-block", "conversation-block-clients"),
    ] {
        let (status, body) = signature(
            &api,
            "alice",
            &format!("{op}/{{a}}/alice/{conv}/{requested}"),
        )
        .await;
        assert_eq!(status, 200, "{op}: {body}");
        assert_eq!(body["sorted_member_ids"], sdk_order.as_str());
        let app = &api.app.app_id;
        assert_signs(
            &body,
            &api.app.master_key,
            &format!("{app}:alice:{conv}:{sdk_order}:{{ts}}:{{nonce}}:{action}"),
        );
    }
    let (status, body) = signature(
        &api,
        "alice",
        &format!("conversation/{{a}}/alice/{requested}"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let app = &api.app.app_id;
    assert_signs(
        &body,
        &api.app.master_key,
        &format!("{app}:alice:{sdk_order}:{{ts}}:{{nonce}}"),
    );
}
