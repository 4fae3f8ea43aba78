//! `GET /signature/usersig/{app_id}/{client_id}` over HTTP on the local server: every
//! UserSig it gives is checked in Python against Tencent's own library (tls-sig-api-v2,
//! its clock pinned to our `TLS.time`) and an independent decode-and-recompute; and the
//! refusals: no Tencent settings, ids Tencent cannot take, other callers, the REST admin.

use std::collections::BTreeMap;

use im_e2e::calls::serve_counted;
use im_e2e::http::{Api, BACKEND};
use im_e2e::signatures::{usersig_verifies, verify_usersig_response};
use im_e2e::stack::test_key;
use im_shared::model::{Secret, TencentCloud, TencentSpec};
use reqwest::Method;
use serde_json::Value;

/// Gives the app Tencent settings (`sdk_app_id`, REST admin `im-admin`, UserSigs valid
/// `expire` seconds, mirroring off) and a new key; answers the key.
async fn with_tencent(api: &Api, sdk_app_id: u64, expire: u64) -> String {
    let mut spec = TencentSpec::new("https://adminapisgp.im.qcloud.com", sdk_app_id, "im-admin");
    spec.usersig_expire = expire;
    // UserSigs only: the local server's stream must not try to reach Tencent.
    spec.mirroring = false;
    let key = test_key();
    api.store
        .set_tencent(
            &api.app.app_id,
            &TencentCloud::new(spec).unwrap(),
            Some(&Secret::new(key.clone())),
        )
        .await
        .unwrap();
    key
}

/// `client`'s request for `whom`'s UserSig: the status and the body.
async fn usersig(api: &Api, client: &str, whom: &str) -> (u16, Value) {
    let resp = api
        .get(
            client,
            format!("/signature/usersig/{}/{whom}", api.app.app_id),
        )
        .await;
    let status = resp.status().as_u16();
    if status == 200 {
        assert_eq!(resp.headers()["cache-control"], "no-store");
    }
    (status, resp.json().await.unwrap())
}

#[tokio::test]
async fn a_usersig_is_the_one_tencents_library_makes() {
    let api = Api::local("usersig").await;
    let key = with_tencent(&api, 1_400_000_123, 3_600).await;
    let (status, body) = usersig(&api, "alice", "alice").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["app_id"], api.app.app_id.as_str());
    assert_eq!(body["client_id"], "alice");
    let object = verify_usersig_response(&body, &key, 1_400_000_123, 3_600);
    assert_eq!(object["TLS.identifier"], "alice");
    let user_sig = body["user_sig"].as_str().unwrap();
    assert!(usersig_verifies(user_sig, &key, 1_400_000_123));
    // Another key, or another Tencent app, does not verify it.
    assert!(!usersig_verifies(user_sig, &test_key(), 1_400_000_123));
    assert!(!usersig_verifies(user_sig, &key, 1_400_000_124));

    // The backend gets anyone's, printable ASCII up to 32 bytes, spaces included.
    for whom in ["bob", "a b~!", &"x".repeat(32)] {
        let (status, body) = usersig(&api, BACKEND, whom).await;
        assert_eq!(status, 200, "{whom:?}: {body}");
        assert_eq!(body["client_id"], whom);
        verify_usersig_response(&body, &key, 1_400_000_123, 3_600);
    }

    // Another app with its own Tencent app: its UserSigs are its own, and not this one's.
    let other = Api::local("usersig-other").await;
    let other_key = with_tencent(&other, 1_400_000_999, 86_400).await;
    let (status, body) = usersig(&other, "alice", "alice").await;
    assert_eq!(status, 200);
    verify_usersig_response(&body, &other_key, 1_400_000_999, 86_400);
    let theirs = body["user_sig"].as_str().unwrap();
    assert!(!usersig_verifies(theirs, &key, 1_400_000_123));
    assert!(!usersig_verifies(theirs, &other_key, 1_400_000_123));
}

#[tokio::test]
async fn usersigs_are_refused_as_the_login_signature_is_and_never_for_the_rest_admin() {
    // An app without Tencent settings: 404, with its own code.
    let bare = Api::local("usersig-none").await;
    let (status, body) = usersig(&bare, "alice", "alice").await;
    assert_eq!((status, body["code"].as_u64()), (404, Some(1043)), "{body}");
    assert_eq!(body["msg"], "tencent_settings_not_found");

    let api = Api::local("usersig-rules").await;
    with_tencent(&api, 1_400_000_321, 86_400).await;
    let path = format!("/signature/usersig/{}/alice", api.app.app_id);
    // No token, another client's, another app's.
    assert_eq!(api.request(Method::GET, &path).send().await.status(), 401);
    assert_eq!(usersig(&api, "mallory", "alice").await.0, 403);
    let (status, _) = usersig(&bare, "alice", "alice").await;
    assert_eq!(status, 404);
    let foreign = bare
        .request(Method::GET, &path)
        .bearer(&bare.app.admin_token(BACKEND))
        .send()
        .await;
    assert_eq!(foreign.status(), 403);
    // Ids Tencent cannot take: a clear 400, before any key is read.
    for (whom, why) in [
        ("x".repeat(33), "1 to 32 bytes"),
        ("李雷".to_owned(), "printable ASCII"),
        ("é".to_owned(), "printable ASCII"),
    ] {
        let (status, body) = usersig(&api, BACKEND, &whom).await;
        assert_eq!(status, 400, "{whom:?}: {body}");
        let msg = body["msg"].as_str().unwrap();
        assert!(msg.contains("client_id") && msg.contains(why), "{msg}");
    }
    // The REST admin (this app's, and `administrator`, which every Tencent app has): the
    // backend cannot have its UserSig, nor can a token minted for it.
    for admin in ["im-admin", "administrator"] {
        assert_eq!(usersig(&api, BACKEND, admin).await.0, 403, "{admin}");
        assert_eq!(usersig(&api, admin, admin).await.0, 403, "{admin}");
    }
    // Anyone else as before.
    assert_eq!(usersig(&api, "im-admin2", "im-admin2").await.0, 200);
}

/// On a server whose caches start empty, as a new Lambda sandbox's do: a caller's first
/// UserSig reads the token secret and then the app's Tencent settings and key, one GetItem
/// each, and never batches the app item (which would carry the master key) with the
/// token; a warm one reads nothing.
#[tokio::test]
async fn a_usersig_reads_the_tencent_key_alone_and_then_from_its_cache() {
    let (base, calls) = serve_counted(&[]).await;
    let api = Api::at(base, "usersig-calls").await;
    let key = with_tencent(&api, 1_400_000_777, 86_400).await;
    calls.take();
    let (status, body) = usersig(&api, "alice", "alice").await;
    assert_eq!(status, 200, "{body}");
    verify_usersig_response(&body, &key, 1_400_000_777, 86_400);
    assert_eq!(
        calls.counted(),
        BTreeMap::from([("GetItem".to_owned(), 2)]),
        "the token secret, then the app's Tencent settings"
    );
    assert_eq!(usersig(&api, "alice", "alice").await.0, 200);
    assert_eq!(usersig(&api, BACKEND, "bob").await.0, 200);
    assert_eq!(calls.counted(), BTreeMap::new(), "warm: from the caches");
}
