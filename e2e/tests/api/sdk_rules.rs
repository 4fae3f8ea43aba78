//! What the vendor's SDK (`leancloud-realtime`) asks of the signature routes, over HTTP:
//! member lists in the order it sorts them, and group changes made through the group
//! routes before their signature is asked for (docs/protocol.md, "The SDK and the
//! group"). The kit in `clients/js/` is tested with the real SDK in `js_kit.rs`.

use std::process::Command;

use im_e2e::http::{Api, BACKEND};
use im_e2e::signatures::assert_signs;
use im_e2e::stack::unique;
use reqwest::Method;
use serde_json::{json, Value};

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

/// The group's members, as the group route lists them.
async fn members_of(api: &Api, group: u64) -> Vec<String> {
    let resp = api
        .get("owner", format!("/im/group/{group}/member?limit=100"))
        .await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    let mut ids: Vec<String> = body["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["client_id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

async fn change(api: &Api, client: &str, method: Method, group: u64, ids: &str) -> u16 {
    api.send(
        client,
        method,
        format!("/im/group/{group}/member"),
        Some(json!({ "member_client_ids": ids })),
    )
    .await
    .status()
    .as_u16()
}

/// A group `owner` owns, with `member` and the non-BMP `𠮷野`, and its conversation named
/// both ways: by the group's id, and by a conversation the app's backend linked to it.
async fn group_and_conversations(api: &Api) -> (u64, [String; 2]) {
    let g = api
        .create(
            "owner",
            json!({"group_name": "sdk", "member_client_ids": ["member", "𠮷野"]}),
        )
        .await;
    let linked = unique("conv");
    assert_eq!(api.link(BACKEND, g, &linked).await, 200);
    (g, [g.to_string(), linked])
}

#[tokio::test]
async fn an_invite_is_signed_only_once_the_group_holds_every_id() {
    let api = Api::local("sdk-invite").await;
    let (g, convs) = group_and_conversations(&api).await;
    for (i, conv) in convs.iter().enumerate() {
        let newbie = format!("ｹｲ{i}");
        let invite = format!("invite/{{a}}/member/{conv}/{}", url_escape(&newbie));
        assert_eq!(
            api.sign("member", &invite).await,
            403,
            "{conv}: not in the group yet"
        );
        // The signature route changed nothing.
        assert!(!members_of(&api, g).await.contains(&newbie));
        assert_eq!(change(&api, "member", Method::POST, g, &newbie).await, 201);
        assert_eq!(
            api.sign("member", &invite).await,
            200,
            "{conv}: the group holds it"
        );
        // Naming an id already in and one not: refused as a whole.
        let mixed = format!(
            "invite/{{a}}/member/{conv}/{}:stranger",
            url_escape(&newbie)
        );
        assert_eq!(api.sign("member", &mixed).await, 403);
        // A non-member gets no invite, even for members.
        assert_eq!(
            api.sign("outsider", &format!("invite/{{a}}/outsider/{conv}/member"))
                .await,
            403
        );
    }
}

#[tokio::test]
async fn a_kick_is_signed_only_once_the_group_no_longer_holds_the_ids() {
    let api = Api::local("sdk-kick").await;
    let (g, convs) = group_and_conversations(&api).await;
    for (i, conv) in convs.iter().enumerate() {
        let target = format!("李雷{i}");
        assert_eq!(change(&api, "owner", Method::POST, g, &target).await, 201);
        let kick = format!("kick/{{a}}/owner/{conv}/{}", url_escape(&target));
        assert_eq!(
            api.sign("owner", &kick).await,
            403,
            "{conv}: still a member"
        );
        assert!(
            members_of(&api, g).await.contains(&target),
            "no side effect"
        );
        assert_eq!(change(&api, "owner", Method::DELETE, g, &target).await, 204);
        assert_eq!(api.sign("owner", &kick).await, 200, "{conv}: removed first");
        // A plain member kicks nobody else, in the group or not.
        let by_member = format!("kick/{{a}}/member/{conv}/{}", url_escape(&target));
        assert_eq!(api.sign("member", &by_member).await, 403);
        // The owner never leaves, so never gets a kick naming itself.
        assert_eq!(
            api.sign("owner", &format!("kick/{{a}}/owner/{conv}/owner"))
                .await,
            403
        );
    }
}

#[tokio::test]
async fn a_member_quits_by_leaving_the_group_then_kicking_only_itself() {
    let api = Api::local("sdk-quit").await;
    let (g, convs) = group_and_conversations(&api).await;
    let me = "𠮷野";
    let quit = |conv: &str| format!("kick/{{a}}/{}/{conv}/{}", url_escape(me), url_escape(me));
    for conv in &convs {
        assert_eq!(
            api.sign(me, &quit(conv)).await,
            403,
            "{conv}: still a member"
        );
    }
    assert!(members_of(&api, g).await.contains(&me.to_owned()));
    // Any member may leave through the group route...
    assert_eq!(change(&api, me, Method::DELETE, g, me).await, 204);
    assert!(!members_of(&api, g).await.contains(&me.to_owned()));
    for conv in &convs {
        // ...and then gets the kick that takes only itself out of the conversation.
        assert_eq!(api.sign(me, &quit(conv)).await, 200, "{conv}");
        // Not one naming anyone else too.
        let more = format!(
            "kick/{{a}}/{}/{conv}/member:{}",
            url_escape(me),
            url_escape(me)
        );
        assert_eq!(api.sign(me, &more).await, 403, "{conv}");
    }
}

#[tokio::test]
async fn the_sdks_join_is_taken_wherever_our_join_is() {
    let api = Api::local("sdk-join").await;
    let (_, convs) = group_and_conversations(&api).await;
    let unlinked = unique("chat");
    for conv in convs.iter().chain([&unlinked]) {
        for who in ["member", "outsider"] {
            // Ours: an invite of nobody. The SDK's join(): an invite naming the caller.
            let ours = api.sign(who, &format!("invite/{{a}}/{who}/{conv}")).await;
            let sdks = api
                .sign(who, &format!("invite/{{a}}/{who}/{conv}/{who}"))
                .await;
            assert_eq!(sdks, ours, "{who} on {conv}");
            let expected = if who == "outsider" && conv != &unlinked {
                403
            } else {
                200
            };
            assert_eq!(ours, expected, "{who} on {conv}");
        }
    }
}
