//! The signing holes, tried as an attacker would, over HTTP: against the local server
//! that `make run` starts (its defaults: history layout `docs`, unlinked conversations
//! `allow`), and against the same router configured with the other settings, served on a
//! free port over the same DynamoDB Local. Every signature a test accepts is checked
//! against Python's HMAC.

use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use im_e2e::http::{Api, BACKEND};
use im_e2e::signatures::assert_signs;
use im_e2e::stack::{admin_command, mark_deleting, serve, test_token_secret, unique};
use im_shared::model::{ImCloud, OnDelete};
use im_shared::store::KeyStore;
use reqwest::Method;
use serde_json::{json, Value};

/// The service with these settings (besides the table), on a free port, with a new app.
async fn configured(prefix: &str, settings: &[(&str, &str)]) -> Api {
    Api::at(serve(settings).await, prefix).await
}

/// A group owned by `owner` with `members`; with `conversation`, linked to it by the
/// app's backend.
async fn group(api: &Api, owner: &str, members: &str, conversation: Option<&str>) -> u64 {
    let id = api
        .create(
            owner,
            json!({"group_name": "g", "member_client_ids": members}),
        )
        .await;
    if let Some(c) = conversation {
        assert_eq!(api.link(BACKEND, id, c).await, 200);
    }
    id
}

/// The group a conversation's link item names, if there is one.
async fn link_item(api: &Api, conversation: &str) -> Option<u64> {
    link_record(api, conversation)
        .await?
        .get("group_id")
        .and_then(|v| v.as_n().ok())
        .map(|n| n.parse().unwrap())
}

/// Whether the conversation's link is a tombstone (its group deleted or moved on).
async fn link_closed(api: &Api, conversation: &str) -> bool {
    link_record(api, conversation)
        .await
        .is_some_and(|i| i.contains_key("closed_at"))
}

/// The conversation's link item, as the table holds it.
async fn link_record(
    api: &Api,
    conversation: &str,
) -> Option<std::collections::HashMap<String, AttributeValue>> {
    api.store
        .client()
        .get_item()
        .table_name(api.store.table())
        .key(
            "pk",
            AttributeValue::S(format!("CONV#{}:{conversation}", api.app.app_id)),
        )
        .key("sk", AttributeValue::S("CONV".into()))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item()
        .cloned()
}

// 1. One message, one meaning -------------------------------------------------------------

#[tokio::test]
async fn a_one_member_open_conversation_on_a_group_takes_membership() {
    let api = Api::local("open-one").await;
    let conv = unique("conv");
    let g = group(&api, "owner", "member", Some(&conv)).await;
    for target in [conv.clone(), g.to_string()] {
        // The same fields as this conversation's history: members only.
        assert_eq!(
            api.sign("outsider", &format!("conversation/{{a}}/outsider/{target}"))
                .await,
            403,
            "{target}"
        );
        assert_eq!(
            api.sign("outsider", &format!("conversion/{{a}}/outsider/{target}"))
                .await,
            403,
            "{target}, the seed spelling"
        );
        assert_eq!(
            api.sign("member", &format!("conversation/{{a}}/member/{target}"))
                .await,
            200
        );
        assert_eq!(
            api.sign(BACKEND, &format!("conversation/{{a}}/outsider/{target}"))
                .await,
            200,
            "the app's backend"
        );
        assert_eq!(
            api.sign("outsider", &format!("history/{{a}}/outsider/{target}"))
                .await,
            403
        );
    }
    // A plain one-to-one chat, and a conversation of several, sign as before.
    assert_eq!(api.sign("alice", "conversation/{a}/alice/bob").await, 200);
    assert_eq!(
        api.sign(
            "outsider",
            &format!("conversation/{{a}}/outsider/{conv}:member")
        )
        .await,
        200
    );
}

#[tokio::test]
async fn history_signs_the_docs_layout_by_default_and_demo_when_set() {
    let docs = Api::local("hist-docs").await;
    let demo = configured("hist-demo", &[("IM_HISTORY_SIGNATURE_FORMAT", "demo")]).await;
    for (api, layout) in [
        (&docs, "{a}:{c}:conv-1:{nonce}:{ts}"),
        (&demo, "{a}:{c}:conv-1:{ts}:{nonce}"),
    ] {
        let a = &api.app.app_id;
        let resp = api
            .get("carol", &format!("/signature/history/{a}/carol/conv-1"))
            .await;
        assert_eq!(resp.status(), 200);
        let body: Value = resp.json().await.unwrap();
        let layout = layout.replace("{a}", a).replace("{c}", "carol");
        assert_signs(&body, &api.app.master_key, &layout);
        assert_eq!(body["action"], "history");
    }
}

// 2. Group ids are not up for grabs ---------------------------------------------------------

#[tokio::test]
async fn a_numeric_conversation_id_is_its_group_whatever_a_link_says() {
    let api = Api::local("numeric").await;
    let victim = group(&api, "victim-owner", "victim-member", None).await;
    let mine = group(&api, "mallory", "", None).await;
    let path = |id: u64| format!("/im/group/{id}");
    // Nobody, not even the backend, links another group's id as a conversation.
    for (id, status) in [(mine, 409), (victim, 200)] {
        let resp = api
            .send(
                BACKEND,
                Method::PUT,
                &path(id),
                Some(json!({"conversation_id": victim.to_string()})),
            )
            .await;
        assert_eq!(resp.status(), status, "group {id} linking {victim}");
        if status == 409 {
            let body: Value = resp.json().await.unwrap();
            assert!(body["msg"].as_str().unwrap().contains("group id"), "{body}");
        }
    }
    let resp = api
        .send(
            BACKEND,
            Method::POST,
            "/im/group",
            Some(json!({"group_name": "x", "conversation_id": victim.to_string()})),
        )
        .await;
    assert_eq!(resp.status(), 409);
    // A link made before this rule (written here straight into the table) that points the
    // victim's id at mallory's group changes nothing: the id is the victim's group.
    api.store
        .client()
        .put_item()
        .table_name(api.store.table())
        .item(
            "pk",
            AttributeValue::S(format!("CONV#{}:{victim}", api.app.app_id)),
        )
        .item("sk", AttributeValue::S("CONV".into()))
        .item("group_id", AttributeValue::N(mine.to_string()))
        .send()
        .await
        .unwrap();
    for op in [
        format!("kick/{{a}}/mallory/{victim}/victim-member"),
        format!("history/{{a}}/mallory/{victim}"),
        format!("conversation-block/{{a}}/mallory/{victim}/victim-member"),
    ] {
        assert_eq!(api.sign("mallory", &op).await, 403, "{op}");
    }
    assert_eq!(
        api.sign(
            "victim-member",
            &format!("history/{{a}}/victim-member/{victim}")
        )
        .await,
        200
    );
}

// 3. Linking a conversation is a privilege --------------------------------------------------

#[tokio::test]
async fn only_the_backend_links_a_conversation_and_a_refusal_writes_nothing() {
    let api = Api::local("link-priv").await;
    // A one-to-one chat's conversation, and another group's not yet linked.
    let chat = unique("chat");
    let resp = api
        .send(
            "mallory",
            Method::POST,
            "/im/group",
            Some(json!({"group_name": "mine", "conversation_id": chat})),
        )
        .await;
    assert_eq!(resp.status(), 403);
    assert_eq!(link_item(&api, &chat).await, None, "no link was written");
    let groups = api.get("mallory", "/im/user/mallory/groups").await;
    let groups: Value = groups.json().await.unwrap();
    assert_eq!(groups["groups"], json!([]), "no group was written");

    let g = group(&api, "mallory", "friend", None).await;
    let before = api.get("mallory", &format!("/im/group/{g}")).await;
    let etag = before.headers()["etag"].clone();
    let resp = api
        .send(
            "mallory",
            Method::PUT,
            &format!("/im/group/{g}"),
            Some(json!({"conversation_id": chat, "group_name": "renamed"})),
        )
        .await;
    assert_eq!(resp.status(), 403);
    let after = api.get("mallory", &format!("/im/group/{g}")).await;
    assert_eq!(after.headers()["etag"], etag, "the group did not change");
    let after: Value = after.json().await.unwrap();
    assert_eq!(after["conversation_id"], Value::Null);
    assert_eq!(after["group_name"], "g");
    assert_eq!(link_item(&api, &chat).await, None);

    // The backend links it; a client asking for the same conversation hears 403, never
    // the 409 that would tell it the conversation is taken.
    let other = group(&api, "bob", "", Some(&chat)).await;
    assert_eq!(link_item(&api, &chat).await, Some(other));
    assert_eq!(api.link("mallory", g, &chat).await, 403);
    assert_eq!(api.link(BACKEND, g, &chat).await, 409);
    assert_eq!(
        api.sign("mallory", &format!("kick/{{a}}/mallory/{chat}/bob"))
            .await,
        403
    );
}

// 4. Unlinked conversations follow a stated policy -------------------------------------------

#[tokio::test]
async fn unlinked_conversations_allow_any_client_by_default() {
    let api = Api::local("unlinked-allow").await;
    let free = unique("free");
    for op in [
        "invite",
        "kick",
        "conversation-block",
        "conversation-unblock",
    ] {
        assert_eq!(
            api.sign("alice", &format!("{op}/{{a}}/alice/{free}/bob"))
                .await,
            200,
            "{op}"
        );
    }
    assert_eq!(
        api.sign("alice", &format!("history/{{a}}/alice/{free}"))
            .await,
        200
    );
}

#[tokio::test]
async fn unlinked_conversations_deny_clients_when_set() {
    // Links are trusted for a second, so that the moved link below counts soon.
    let api = configured(
        "unlinked-deny",
        &[
            ("IM_UNLINKED_CONVERSATIONS", "deny"),
            ("IM_LINK_CACHE_SECONDS", "1"),
        ],
    )
    .await;
    let free = unique("free");
    for op in [
        "invite",
        "kick",
        "conversation-block",
        "conversation-unblock",
    ] {
        let path = format!("{op}/{{a}}/alice/{free}/bob");
        assert_eq!(api.sign("alice", &path).await, 403, "{op}");
        assert_eq!(api.sign(BACKEND, &path).await, 200, "{op}, the backend");
    }
    assert_eq!(
        api.sign("alice", &format!("history/{{a}}/alice/{free}"))
            .await,
        403
    );
    assert_eq!(
        api.sign(BACKEND, &format!("history/{{a}}/alice/{free}"))
            .await,
        200
    );
    // One-to-one chats, logins and a client's own blocks are no group's matter.
    assert_eq!(api.sign("alice", "conversation/{a}/alice/bob").await, 200);
    assert_eq!(api.sign("alice", "login/{a}/alice").await, 200);
    assert_eq!(
        api.sign("alice", &format!("block/{{a}}/alice/{free}"))
            .await,
        200
    );
    // A group's conversation follows the group's rules.
    let conv = unique("conv");
    let g = group(&api, "owner", "member", Some(&conv)).await;
    assert_eq!(
        api.sign("member", &format!("history/{{a}}/member/{conv}"))
            .await,
        200
    );
    assert_eq!(
        api.sign("member", &format!("history/{{a}}/member/{g}"))
            .await,
        200
    );
    // (A kick names only ids the group no longer holds: sdk_rules.rs.)
    assert_eq!(
        api.sign("owner", &format!("kick/{{a}}/owner/{conv}/former"))
            .await,
        200
    );
    // A link that moved away leaves the old conversation unlinked: denied (once the
    // cached link has run out).
    let moved = unique("conv");
    assert_eq!(api.link(BACKEND, g, &moved).await, 200);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        api.sign("member", &format!("history/{{a}}/member/{conv}"))
            .await,
        403
    );
    assert_eq!(
        api.sign("member", &format!("history/{{a}}/member/{moved}"))
            .await,
        200
    );
    // So does a deleted group's.
    let resp = api
        .send("owner", Method::DELETE, &format!("/im/group/{g}"), None)
        .await;
    assert_eq!(resp.status(), 204);
    assert_eq!(
        api.sign("member", &format!("history/{{a}}/member/{moved}"))
            .await,
        403
    );
    assert_eq!(
        api.sign("member", &format!("history/{{a}}/member/{g}"))
            .await,
        403
    );
}

#[tokio::test]
async fn deleted_conversations_stay_closed_and_a_group_being_deleted_refuses() {
    let api = Api::local("unlinked-life").await;
    let conv = unique("conv");
    let g = group(&api, "owner", "member", Some(&conv)).await;
    let history = |who: &'static str, c: String| {
        let api = api.clone();
        async move { api.sign(who, &format!("history/{{a}}/{who}/{c}")).await }
    };
    assert_eq!(history("outsider", conv.clone()).await, 403);
    // Half-deleted (the first step of a delete marks the group; a crash may stop there):
    // its conversation is not free yet, and nobody but the backend has signatures on it.
    mark_deleting(&api.store, g).await;
    for c in [conv.clone(), g.to_string()] {
        assert_eq!(history("outsider", c.clone()).await, 403, "{c}");
        assert_eq!(history("member", c.clone()).await, 403, "{c}");
        assert_eq!(
            api.sign(BACKEND, &format!("history/{{a}}/member/{c}"))
                .await,
            200
        );
    }
    // The delete finishes (404 for the caller: it had already been deleted). The link
    // stays as a tombstone: the conversation may still hold the group's members, so
    // under the default policy it does not become anyone's to sign for; only the
    // backend's. The group's id, naming no group now, is any other id.
    let resp = api
        .send("owner", Method::DELETE, &format!("/im/group/{g}"), None)
        .await;
    assert_eq!(resp.status(), 404);
    assert_eq!(
        link_item(&api, &conv).await,
        Some(g),
        "the tombstone keeps its group"
    );
    assert!(link_closed(&api, &conv).await);
    assert_eq!(history("outsider", conv.clone()).await, 403);
    assert_eq!(history("member", conv.clone()).await, 403);
    assert_eq!(
        api.sign(BACKEND, &format!("history/{{a}}/member/{conv}"))
            .await,
        200
    );
    assert_eq!(history("outsider", g.to_string()).await, 200);
}

// 5. Never the owner ---------------------------------------------------------------------

#[tokio::test]
async fn only_the_owner_and_the_backend_name_the_owner_in_a_kick_or_block() {
    let api = Api::local("never-owner").await;
    let conv = unique("conv");
    let g = group(&api, "owner", "admin1:member", Some(&conv)).await;
    let resp = api
        .send(
            "owner",
            Method::POST,
            &format!("/im/group/{g}/admin"),
            Some(json!({"member_client_ids": "admin1"})),
        )
        .await;
    assert_eq!(resp.status(), 201);
    for c in [conv.clone(), g.to_string()] {
        // A kick names only ids the group no longer holds (sdk_rules.rs): `gone` never
        // was a member, and the owner always is, so even the owner's own list naming the
        // owner is refused; the backend's is not.
        let naming_owner = format!("kick/{{a}}/admin1/{c}/gone:owner");
        assert_eq!(api.sign("admin1", &naming_owner).await, 403, "kick {c}");
        assert_eq!(
            api.sign("admin1", &format!("kick/{{a}}/admin1/{c}/gone"))
                .await,
            200,
            "kick {c}: an admin may kick an id the group no longer holds"
        );
        assert_eq!(
            api.sign("owner", &format!("kick/{{a}}/owner/{c}/gone:owner"))
                .await,
            403
        );
        assert_eq!(api.sign(BACKEND, &naming_owner).await, 200);
        for op in ["conversation-block", "conversation-unblock"] {
            let naming_owner = format!("{op}/{{a}}/admin1/{c}/member:owner");
            assert_eq!(api.sign("admin1", &naming_owner).await, 403, "{op} {c}");
            assert_eq!(
                api.sign("admin1", &format!("{op}/{{a}}/admin1/{c}/member"))
                    .await,
                200,
                "{op} {c}: an admin may act on a plain member"
            );
            assert_eq!(
                api.sign("owner", &format!("{op}/{{a}}/owner/{c}/member:owner"))
                    .await,
                200
            );
            assert_eq!(api.sign(BACKEND, &naming_owner).await, 200);
        }
    }
}

// 6. Small holes ---------------------------------------------------------------------------

/// IM cloud settings for the app that post system messages as `client` (mirroring off).
async fn with_system_client(api: &Api, client: &str) {
    let settings = ImCloud::new(
        "https://im.example.com",
        false,
        true,
        Some(client.to_owned()),
        OnDelete::Keep,
    )
    .unwrap();
    api.store
        .set_im_cloud(&api.app.app_id, &settings)
        .await
        .unwrap();
}

/// `by` adds `members` to group `id` (`POST .../member`).
async fn add_members(api: &Api, by: &str, id: u64, members: &str) -> im_e2e::openapi::Checked {
    api.send(
        by,
        Method::POST,
        format!("/im/group/{id}/member"),
        Some(json!({ "member_client_ids": members })),
    )
    .await
}

#[tokio::test]
async fn nobody_gets_a_login_signature_for_the_apps_system_client() {
    let api = Api::local("system-login").await;
    with_system_client(&api, "imsystem").await;
    // Its own token (one the backend should never have minted), and the backend: 403.
    assert_eq!(api.sign("imsystem", "login/{a}/imsystem").await, 403);
    assert_eq!(api.sign(BACKEND, "login/{a}/imsystem").await, 403);
    // Any other client logs in as before.
    assert_eq!(api.sign("imsystem2", "login/{a}/imsystem2").await, 200);
    assert_eq!(api.sign(BACKEND, "login/{a}/bob").await, 200);
}

/// The ids that speak for the service (the system client, Tencent's App admin) are
/// never members: a create naming one, a create by one (the owner is a member), and an
/// add of one are each a 400 that names the rule, and nothing is written.
#[tokio::test]
async fn the_apps_system_client_and_tencent_admin_are_never_members() {
    use im_shared::model::{Secret, TencentCloud, TencentSpec};
    let api = Api::local("system-member").await;
    with_system_client(&api, "imsystem").await;
    // Mirroring off: nothing here may call out.
    let mut spec = TencentSpec::new("https://adminapisgp.im.qcloud.com", 1_400_000_999, "tadmin");
    spec.mirroring = false;
    api.store
        .set_tencent(
            &api.app.app_id,
            &TencentCloud::new(spec).unwrap(),
            Some(&Secret::new(im_e2e::stack::test_key())),
        )
        .await
        .unwrap();
    let refused = |resp: im_e2e::openapi::Checked, what: &'static str| async move {
        assert_eq!(resp.status(), 400, "{what}");
        let body: Value = resp.json().await.unwrap();
        assert!(
            body["msg"]
                .as_str()
                .unwrap_or_default()
                .contains("is reserved"),
            "{what}: {body}"
        );
    };
    for (by, members) in [
        ("alice", "bob:imsystem"),
        ("alice", "tadmin"),
        (BACKEND, "imsystem"),
        ("imsystem", "bob"),
        ("tadmin", "bob"),
    ] {
        let body = json!({"group_name": "g", "member_client_ids": members});
        let resp = api.send(by, Method::POST, "/im/group", Some(body)).await;
        refused(resp, "a create").await;
    }
    let id = api
        .create(
            "alice",
            json!({"group_name": "g", "member_client_ids": "bob"}),
        )
        .await;
    for (by, members) in [("alice", "carol:imsystem"), (BACKEND, "tadmin")] {
        let resp = add_members(&api, by, id, members).await;
        refused(resp, "an add").await;
    }
    let mut members = api.store.group_members(id).await.unwrap();
    members.sort();
    assert_eq!(members, ["alice", "bob"]);
    // Near names are ids like any other.
    let resp = add_members(&api, "alice", id, "imsystem2:TADMIN").await;
    assert_eq!(resp.status(), 201);
}

/// `im-admin` refuses to reserve an id (as the system client, or as Tencent's App admin)
/// while it is a member of one of the app's groups, and writes nothing; once the member
/// has left, the same command reserves it.
#[tokio::test]
async fn im_admin_refuses_to_reserve_a_member() {
    let api = Api::local("reserve-member").await;
    let id = api
        .create(
            "alice",
            json!({"group_name": "g", "member_client_ids": "carol"}),
        )
        .await;
    let key_file = std::env::temp_dir().join(unique("tencent-key"));
    std::fs::write(&key_file, im_e2e::stack::test_key()).unwrap();
    let table = im_e2e::stack::env("IM_TEST_LOCAL_TABLE");
    let app = api.app.app_id.clone();
    let leancloud = [
        "app",
        "im-cloud",
        "set",
        &app,
        "--server",
        "https://im.example.com",
        "--system-messages",
        "on",
        "--system-client",
        "carol",
        "--mirroring",
        "off",
    ];
    let key = key_file.to_str().unwrap();
    let tencent = [
        "app",
        "im-cloud",
        "set",
        &app,
        "--provider",
        "tencent",
        "--server",
        "https://adminapisgp.im.qcloud.com",
        "--mirroring",
        "off",
        "--sdk-app-id",
        "1400000999",
        "--admin-identifier",
        "carol",
        "--key-file",
        key,
    ];
    let run = |args: &[&str]| {
        admin_command()
            .args(["--table", &table])
            .args(args)
            .output()
            .unwrap()
    };
    for args in [&leancloud[..], &tencent[..]] {
        let out = run(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(err.contains(&format!("member of group {id}")), "{err}");
    }
    assert_eq!(api.store.im_cloud(&app).await.unwrap(), None);
    assert_eq!(api.store.tencent_cloud(&app).await.unwrap(), None);

    let resp = api
        .send(
            "carol",
            Method::DELETE,
            format!("/im/group/{id}/member"),
            Some(json!({ "member_client_ids": "carol" })),
        )
        .await;
    assert_eq!(resp.status(), 204);
    for args in [&leancloud[..], &tencent[..]] {
        let out = run(args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The local server kept "none reserved" from the first create, for at most 5 s.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let back = add_members(&api, "alice", id, "carol").await;
    assert_eq!(back.status(), 400);
    let _ = std::fs::remove_file(key_file);
}

#[tokio::test]
async fn malformed_member_cursors_are_400() {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    let api = Api::local("cursor").await;
    let g = group(&api, "owner", "a:b:c", None).await;
    for inner in [
        "x".repeat(2000),
        "x".repeat(65),
        "a:b".to_owned(),
        "a\u{1}".to_owned(),
    ] {
        let cursor = URL_SAFE_NO_PAD.encode(format!("m:{inner}"));
        let resp = api
            .get("owner", &format!("/im/group/{g}/member?cursor={cursor}"))
            .await;
        assert_eq!(resp.status(), 400, "{} chars", inner.len());
    }
    // A cursor the listing returned still works.
    let page: Value = api
        .get("owner", &format!("/im/group/{g}/member?limit=2"))
        .await
        .json()
        .await
        .unwrap();
    let cursor = page["next_cursor"].as_str().unwrap();
    let resp = api
        .get(
            "owner",
            &format!("/im/group/{g}/member?limit=2&cursor={cursor}"),
        )
        .await;
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn an_undecodable_percent_escape_is_400_not_signed_literally() {
    let api = Api::local("escapes").await;
    for path in [
        "history/{a}/alice/%ZZ",
        "history/{a}/alice/x%",
        "login/{a}/al%G1ce",
    ] {
        assert_eq!(api.sign("alice", path).await, 400, "{path}");
    }
    // `%25ZZ` is the id `%ZZ`, which holds a `%`: refused too, as every id with a `%` is
    // (docs/protocol.md), so neither spelling is signed.
    let resp = api
        .get(
            "alice",
            &format!("/signature/history/{}/alice/%25ZZ", api.app.app_id),
        )
        .await;
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["msg"]
            .as_str()
            .unwrap()
            .contains("must not contain '%'"),
        "{body}"
    );
}

#[tokio::test]
async fn removing_an_app_retires_its_token_keys_and_its_tokens_stop() {
    // A short cache, so that a warm process's copy of the key runs out within the test.
    let api = configured("removed", &[("IM_APP_CACHE_SECONDS", "1")]).await;
    let second_kid = unique("kid");
    api.store
        .create_token_key(
            &second_kid,
            &api.app.app_id,
            &im_shared::model::Secret::new(test_token_secret()),
        )
        .await
        .unwrap();
    let g = group(&api, "alice", "", None).await;
    assert_eq!(api.sign("alice", "login/{a}/alice").await, 200);
    // The operator removes the app with the command they would use.
    let out = admin_command()
        .args([
            "--table",
            api.store.table(),
            "app",
            "remove",
            &api.app.app_id,
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let keys = api.store.list_token_keys().await.unwrap();
    for kid in [&api.app.kid, &second_kid] {
        let (_, app, status) = keys.iter().find(|(k, _, _)| k == kid).unwrap();
        assert_eq!(
            (app.as_str(), status.as_str()),
            (api.app.app_id.as_str(), "retired")
        );
    }
    assert!(api.store.token_key(&api.app.kid).await.unwrap().is_none());
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(api.sign("alice", "login/{a}/alice").await, 401);
    assert_eq!(
        api.get("alice", &format!("/im/group/{g}")).await.status(),
        401
    );
    // No key can be added to the removed app.
    assert!(api
        .store
        .create_token_key(
            &unique("kid"),
            &api.app.app_id,
            &im_shared::model::Secret::new(test_token_secret())
        )
        .await
        .is_err());
}

#[tokio::test]
async fn a_moved_link_stops_counting_within_the_link_cache_time() {
    // A warm function trusts a link it has read for IM_LINK_CACHE_SECONDS.
    let api = configured("moved-link", &[("IM_LINK_CACHE_SECONDS", "2")]).await;
    let conversation = unique("conv");
    // carol is in both groups: an invite names only members (sdk_rules.rs).
    let alices = group(&api, "alice", "carol", Some(&conversation)).await;
    let bobs = group(&api, "bob", "carol", None).await;
    let alice_invites = format!("invite/{{a}}/alice/{conversation}/carol");
    let bob_invites = format!("invite/{{a}}/bob/{conversation}/carol");
    assert_eq!(api.sign("alice", &alice_invites).await, 200);
    assert_eq!(api.sign("bob", &bob_invites).await, 403);

    // The app's backend moves the conversation from alice's group to bob's.
    assert_eq!(api.link(BACKEND, alices, &unique("elsewhere")).await, 200);
    assert_eq!(api.link(BACKEND, bobs, &conversation).await, 200);
    assert_eq!(link_item(&api, &conversation).await, Some(bobs));
    // Until the cached link runs out, the old group's rule still answers (this is the
    // staleness the setting allows, and shows the cache is used)...
    assert_eq!(api.sign("alice", &alice_invites).await, 200);
    // ...and after it, only the new group's.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(api.sign("alice", &alice_invites).await, 403);
    assert_eq!(api.sign("bob", &bob_invites).await, 200);
}
