//! The authorization matrix, over HTTP against the local server: every route, for every
//! kind of caller, answers the expected status. Each case gets a fresh group, owned by
//! `owner`, with `gadmin` (a group admin), `member` and `target` as members.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use im_e2e::http::Api;
use im_e2e::stack::{now_secs, test_key, test_token_secret, unique, TestApp};
use im_shared::model::{Secret, TencentCloud, TencentSpec};
use im_shared::routes::{Route, ROUTES};
use reqwest::Method;
use serde_json::{json, Value};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Who {
    NoToken,
    Malformed,
    Expired,
    WrongSignature,
    AlgNone,
    WrongKid,
    OtherClient,
    Member,
    NonMember,
    GroupAdmin,
    Owner,
    AppAdmin,
}

use Who::*;

const EVERYONE: [Who; 12] = [
    NoToken,
    Malformed,
    Expired,
    WrongSignature,
    AlgNone,
    WrongKid,
    OtherClient,
    Member,
    NonMember,
    GroupAdmin,
    Owner,
    AppAdmin,
];

impl Who {
    /// The client id this caller speaks for.
    fn sub(self) -> &'static str {
        match self {
            OtherClient => "mallory",
            Member => "member",
            NonMember => "outsider",
            GroupAdmin => "gadmin",
            Owner => "owner",
            AppAdmin => "backend",
            _ => "member",
        }
    }

    fn authorization(self, app: &TestApp) -> Option<String> {
        let now = now_secs();
        let b64 = |v: Value| URL_SAFE_NO_PAD.encode(v.to_string());
        let token = match self {
            NoToken => return None,
            Malformed => "not-a-jwt".to_owned(),
            Expired => app.token_with(json!({"sub": "member", "exp": now - 3600})),
            WrongSignature => {
                let other = TestApp {
                    token_secret: test_token_secret(),
                    ..app.clone()
                };
                other.token("member")
            }
            AlgNone => format!(
                "{}.{}.",
                b64(json!({"alg": "none", "typ": "JWT", "kid": app.kid})),
                b64(json!({"sub": "member", "exp": now + 600}))
            ),
            WrongKid => TestApp {
                kid: unique("no-such-kid"),
                ..app.clone()
            }
            .token("member"),
            AppAdmin => app.admin_token("backend"),
            _ => app.token(self.sub()),
        };
        Some(format!("Bearer {token}"))
    }
}

/// The status `who` gets on the route whose event is `event`.
fn expected(event: &str, who: Who) -> u16 {
    // Health is open; Tencent's callbacks take no bearer token and answer 200 whatever
    // it is (a call without Tencent's signature is refused in the body: ActionStatus FAIL).
    if event == "health" || event == "tencent-callback" {
        return 200;
    }
    if matches!(
        who,
        NoToken | Malformed | Expired | WrongSignature | AlgNone | WrongKid
    ) {
        return 401;
    }
    let ok = |status: u16, allowed: &[Who], hidden: &[Who]| {
        if who == AppAdmin || allowed.contains(&who) {
            status
        } else if hidden.contains(&who) {
            404
        } else {
            403
        }
    };
    let non_members = [NonMember, OtherClient];
    match event {
        // Signing for oneself is allowed; OtherClient signs for someone else.
        "login-signature"
        | "usersig-signature"
        | "conversation-signature"
        | "conversation-signature-alt-spelling" => {
            ok(200, &[Member, NonMember, GroupAdmin, Owner], &[])
        }
        "invite-signature" | "invite-signature-join" => ok(200, &[Member, GroupAdmin, Owner], &[]),
        "kick-signature" | "kick-signature-no-members" => ok(200, &[GroupAdmin, Owner], &[]),
        "history-signature" => ok(200, &[Member, GroupAdmin, Owner], &[]),
        // A client blocks a conversation for itself: no group rule.
        "block-signature" | "unblock-signature" => {
            ok(200, &[Member, NonMember, GroupAdmin, Owner], &[])
        }
        "conversation-block-signature" | "conversation-unblock-signature" => {
            ok(200, &[GroupAdmin, Owner], &[])
        }
        "create-group" => ok(
            201,
            &[OtherClient, Member, NonMember, GroupAdmin, Owner],
            &[],
        ),
        "update-group" => ok(200, &[GroupAdmin, Owner], &non_members),
        "get-group" | "list-members" => ok(200, &[Member, GroupAdmin, Owner], &non_members),
        // Asking for one's own groups; OtherClient asks for alice's.
        "list-user-groups" => ok(200, &[Member, NonMember, GroupAdmin, Owner], &[]),
        "add-members" => ok(201, &[Member, GroupAdmin, Owner], &non_members),
        "grant-admins" => ok(201, &[Owner], &non_members),
        "revoke-admins" => ok(204, &[Owner], &non_members),
        "remove-members" => ok(204, &[GroupAdmin, Owner], &non_members),
        "delete-group" => ok(204, &[Owner], &non_members),
        "transfer-owner" => ok(200, &[Owner], &non_members),
        other => panic!("no expectation for {other}"),
    }
}

/// The request for `route` by `who` on group `g`.
fn request(route: &Route, app: &TestApp, who: Who, g: u64) -> (Method, String, Option<Value>) {
    let a = &app.app_id;
    // OtherClient signs for alice; everyone else for itself.
    let client = if who == OtherClient {
        "alice"
    } else {
        who.sub()
    };
    let path = match route.event {
        "login-signature" => format!("/signature/login/{a}/{client}"),
        "usersig-signature" => format!("/signature/usersig/{a}/{client}"),
        "conversation-signature" => format!("/signature/conversion/{a}/{client}/x:y"),
        "conversation-signature-alt-spelling" => {
            format!("/signature/conversation/{a}/{client}/x:y")
        }
        // An invite is signed only for ids the group already holds, and a kick only for
        // ids it no longer holds (docs/protocol.md): `target` is a member, `gone` is not.
        "invite-signature" => format!("/signature/invite/{a}/{client}/{g}/target"),
        "invite-signature-join" => format!("/signature/invite/{a}/{client}/{g}"),
        "kick-signature" => format!("/signature/kick/{a}/{client}/{g}/gone"),
        "kick-signature-no-members" => format!("/signature/kick/{a}/{client}/{g}"),
        "history-signature" => format!("/signature/history/{a}/{client}/{g}"),
        "block-signature" => format!("/signature/block/{a}/{client}/{g}"),
        "unblock-signature" => format!("/signature/unblock/{a}/{client}/{g}"),
        "conversation-block-signature" => {
            format!("/signature/conversation-block/{a}/{client}/{g}/target")
        }
        "conversation-unblock-signature" => {
            format!("/signature/conversation-unblock/{a}/{client}/{g}/target")
        }
        "create-group" => "/im/group".to_owned(),
        "update-group" | "delete-group" | "get-group" => format!("/im/group/{g}"),
        "list-members" => format!("/im/group/{g}/member?limit=2"),
        "list-user-groups" => format!("/im/user/{client}/groups"),
        "add-members" | "remove-members" => format!("/im/group/{g}/member"),
        "grant-admins" | "revoke-admins" => format!("/im/group/{g}/admin"),
        "transfer-owner" => format!("/im/group/{g}/owner"),
        "health" => "/health".to_owned(),
        "tencent-callback" => format!("/im-cloud/tencent/callback/{a}"),
        other => panic!("no request for {other}"),
    };
    let body = match route.event {
        "create-group" => Some(json!({"group_name": "new", "member_client_ids": "x"})),
        "update-group" => Some(json!({"group_name": "renamed"})),
        "add-members" => Some(json!({"member_client_ids": "newbie"})),
        "remove-members" => Some(json!({"member_client_ids": "target"})),
        "grant-admins" => Some(json!({"member_client_ids": "target"})),
        "revoke-admins" => Some(json!({"member_client_ids": "gadmin"})),
        "transfer-owner" => Some(json!({"client_id": "target"})),
        _ => None,
    };
    (
        Method::from_bytes(route.method.as_bytes()).unwrap(),
        path,
        body,
    )
}

/// The local server, with a new app in its table.
struct Fixture {
    api: Api,
}

impl Fixture {
    async fn send(
        &self,
        who: Who,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self.api.request(method, path);
        if let Some(auth) = who.authorization(&self.api.app) {
            req = req.header("authorization", auth);
        }
        // Checked against openapi.yaml before anything else looks at it.
        let resp = req.send_json(body).await;
        let status = resp.status().as_u16();
        if status == 401 {
            assert_eq!(resp.headers()["www-authenticate"], "Bearer realm=\"im\"");
        }
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// A fresh group: owner, gadmin (admin), member, target.
    async fn group(&self) -> u64 {
        let (status, body) = self
            .send(
                Owner,
                Method::POST,
                "/im/group",
                Some(json!({"group_name": "m", "member_client_ids": "gadmin:member:target"})),
            )
            .await;
        assert_eq!(status, 201);
        let g = body["group_id"].as_u64().unwrap();
        let (status, _) = self
            .send(
                Owner,
                Method::POST,
                &format!("/im/group/{g}/admin"),
                Some(json!({"member_client_ids": "gadmin"})),
            )
            .await;
        assert_eq!(status, 201);
        g
    }
}

/// The app has Tencent settings too, for the UserSig route (its REST admin, `im-admin`,
/// is none of the matrix's callers; mirroring into Tencent off).
async fn fixture() -> Fixture {
    let api = Api::local("matrix-app").await;
    let mut spec = TencentSpec::new(
        "https://adminapisgp.im.qcloud.com",
        1_400_000_000,
        "im-admin",
    );
    // UserSigs only: the local server's stream must not try to reach Tencent.
    spec.mirroring = false;
    let tencent = TencentCloud::new(spec).unwrap();
    api.store
        .set_tencent(&api.app.app_id, &tencent, Some(&Secret::new(test_key())))
        .await
        .unwrap();
    Fixture { api }
}

#[tokio::test]
async fn every_route_for_every_kind_of_caller() {
    let f = fixture().await;
    let mut wrong = Vec::new();
    let mut cases = 0;
    for route in ROUTES {
        for who in EVERYONE {
            let g = f.group().await;
            let (method, path, body) = request(route, &f.api.app, who, g);
            let (status, reply) = f.send(who, method.clone(), &path, body).await;
            let want = expected(route.event, who);
            cases += 1;
            if status != want {
                wrong.push(format!(
                    "{method} {path} as {who:?}: {status}, expected {want} ({reply})"
                ));
            }
            // 401, 403 and 404 say nothing about which check failed.
            if matches!(status, 401 | 403) {
                assert_eq!(
                    reply["msg"],
                    if status == 401 {
                        "unauthorized"
                    } else {
                        "forbidden"
                    }
                );
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {cases} cases wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    assert_eq!(cases, ROUTES.len() * EVERYONE.len());
}

#[tokio::test]
async fn leaving_and_the_owner() {
    let f = fixture().await;
    let g = f.group().await;
    let member = format!("/im/group/{g}/member");
    let only = |id: &str| Some(json!({"member_client_ids": id}));
    // A member may leave; an admin may not remove the owner; the owner may not leave.
    assert_eq!(
        f.send(Member, Method::DELETE, &member, only("member"))
            .await
            .0,
        204
    );
    assert_eq!(
        f.send(Member, Method::DELETE, &member, only("member"))
            .await
            .0,
        404,
        "gone"
    );
    assert_eq!(
        f.send(GroupAdmin, Method::DELETE, &member, only("owner"))
            .await
            .0,
        403
    );
    assert_eq!(
        f.send(Owner, Method::DELETE, &member, only("owner"))
            .await
            .0,
        403
    );
    assert_eq!(
        f.send(AppAdmin, Method::DELETE, &member, only("owner:target"))
            .await
            .0,
        403
    );
    // A member removing others (not itself) is refused.
    assert_eq!(
        f.send(Member, Method::DELETE, &member, only("target"))
            .await
            .0,
        404,
        "no longer a member"
    );
    let admin = format!("/im/group/{g}/admin");
    assert_eq!(
        f.send(Owner, Method::POST, &admin, only("stranger"))
            .await
            .0,
        409,
        "only members become admins"
    );
    // Another app's caller sees nothing, even its admin.
    let other = Fixture {
        api: Api::local("other-app").await,
    };
    assert_eq!(
        other
            .send(
                AppAdmin,
                Method::PUT,
                &format!("/im/group/{g}"),
                Some(json!({"group_name": "x"}))
            )
            .await
            .0,
        404
    );
}
