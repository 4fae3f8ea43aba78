//! Tencent Cloud IM's callbacks end to end: the Tencent stand-in (`im_e2e::tencent`)
//! calls the local server's `POST /im-cloud/tencent/callback/{app_id}` for the events the
//! notes document, signed with its own implementation of the callback authentication,
//! for its clients' actions and for the mirror's own REST calls (`OptPlatform=RESTAPI`).
//! Every answer is checked against openapi.yaml; the table is read through the group
//! routes. Only loopback servers: the stand-in and the local server.

use std::collections::BTreeSet;

use futures::future::join_all;
use im_e2e::http::{Api, BACKEND};
use im_e2e::tencent::{CallbackLogged, CallbackTarget, Tamper, TencentStandIn};
use im_shared::model::{Secret, TencentCloud, TencentSpec};
use reqwest::Method;
use serde_json::{json, Value};

use crate::mirror::eventually;

const SDK_APP_ID: u64 = 1_400_000_321;
const ADMIN: &str = "administrator";
const INVITE: &str = "Group.CallbackBeforeInviteJoinGroup";
const EXIT: &str = "Group.CallbackAfterMemberExit";
const DESTROYED: &str = "Group.CallbackAfterGroupDestroyed";

/// An app on the local server whose Tencent stand-in calls its callback endpoint.
struct Hooked {
    api: Api,
    tencent: TencentStandIn,
}

fn secret(prefix: &str) -> String {
    format!("{prefix}-{:032x}", rand::random::<u128>())
}

async fn hooked(prefix: &str, mirroring: bool, client_creates: bool) -> Hooked {
    let api = Api::local(prefix).await;
    let key = secret("tencent-key");
    // With the suite's marker: make test finds it in any service log.
    let token = secret("mk-test-callback-token");
    let tencent = TencentStandIn::start(SDK_APP_ID, &key, &[ADMIN]);
    // The stand-in is on loopback: the mirror calls nothing else.
    let mut spec = TencentSpec::new(tencent.url(), SDK_APP_ID, ADMIN);
    spec.mirroring = mirroring;
    spec.client_creates = client_creates;
    let app_id = api.app.app_id.clone();
    api.store
        .set_tencent(
            &app_id,
            &TencentCloud::new(spec).unwrap(),
            Some(&Secret::new(key)),
        )
        .await
        .unwrap();
    api.store
        .set_tencent_callback_token(&app_id, &Secret::new(token.clone()))
        .await
        .unwrap();
    tencent.set_callback(CallbackTarget {
        url: format!("{}/im-cloud/tencent/callback/{app_id}", api.base),
        token,
    });
    Hooked { api, tencent }
}

impl Hooked {
    async fn create(&self, owner: &str, members: &str, max_members: u64) -> u64 {
        self.api
            .create(
                owner,
                json!({"group_name": "hooked", "member_client_ids": members, "max_members": max_members}),
            )
            .await
    }

    /// The group's members, through `GET /im/group/{id}/member` (as the app's backend).
    async fn members(&self, id: u64) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut path = format!("/im/group/{id}/member?limit=100");
            if let Some(c) = &cursor {
                path.push_str(&format!("&cursor={c}"));
            }
            let resp = self.api.get(BACKEND, path).await;
            assert_eq!(resp.status(), 200);
            let page: Value = resp.json().await.unwrap();
            for m in page["members"].as_array().unwrap() {
                out.insert(m["client_id"].as_str().unwrap().to_owned());
            }
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => return out,
            }
        }
    }

    async fn group(&self, id: u64) -> Value {
        self.group_and_etag(id).await.0
    }

    /// The group and its ETag (its version: any write to the group changes it).
    async fn group_and_etag(&self, id: u64) -> (Value, String) {
        let resp = self.api.get(BACKEND, format!("/im/group/{id}")).await;
        assert_eq!(resp.status(), 200);
        let etag = resp.headers()["etag"].to_str().unwrap().to_owned();
        (resp.json().await.unwrap(), etag)
    }

    async fn etag(&self, id: u64) -> String {
        self.group_and_etag(id).await.1
    }

    fn invite_body(&self, group: &str, operator: &str, members: &[&str]) -> Vec<u8> {
        let list: Vec<Value> = members
            .iter()
            .map(|m| json!({"Member_Account": m}))
            .collect();
        json!({"CallbackCommand": INVITE, "GroupId": group, "Type": "Public",
               "Operator_Account": operator, "DestinationMembers": list})
        .to_string()
        .into_bytes()
    }

    fn exit_body(&self, group: &str, member: &str) -> Vec<u8> {
        json!({"CallbackCommand": EXIT, "GroupId": group, "Type": "Public", "ExitType": "Quit",
               "Operator_Account": member, "ExitMemberList": [{"Member_Account": member}]})
        .to_string()
        .into_bytes()
    }

    /// The REST-side callbacks seen so far for `command`.
    fn rest_callbacks(&self, command: &str) -> Vec<CallbackLogged> {
        self.tencent
            .callbacks()
            .into_iter()
            .filter(|c| c.command == command && c.opt_platform == "RESTAPI")
            .collect()
    }
}

fn refused_call(c: &CallbackLogged) {
    assert_eq!(c.status, Some(200), "{c:?}");
    assert_eq!(c.answer["ActionStatus"], "FAIL", "{c:?}");
    assert_eq!(c.answer["ErrorCode"], 1, "{c:?}");
    assert!(!c.allows());
}

#[tokio::test]
async fn calls_that_are_not_tencent_s_are_refused_and_touch_nothing() {
    let h = hooked("cb-auth", false, false).await;
    let id = h.create("alice", "bob", 500).await;
    let group = id.to_string();
    let before = h.etag(id).await;
    let invite = h.invite_body(&group, "bob", &["eve"]);
    let quit = h.exit_body(&group, "bob");
    for tamper in [
        Tamper::WrongToken,
        Tamper::Unsigned,
        Tamper::Skewed(-61 - 5),
        Tamper::Skewed(120),
        Tamper::SdkAppid(SDK_APP_ID + 1),
    ] {
        for (command, body) in [(INVITE, &invite), (EXIT, &quit)] {
            let c = h
                .tencent
                .send_callback(command, "Android", body, tamper)
                .await;
            refused_call(&c);
        }
    }
    // Malformed bodies, with a good signature: refused, nothing read or written.
    for (command, body) in [
        (INVITE, b"not json".to_vec()),
        (INVITE, b"[]".to_vec()),
        (INVITE, br#"{"GroupId": 1, "Operator_Account": "bob"}"#.to_vec()),
        (EXIT, br#"{"GroupId": "1", "ExitMemberList": "bob"}"#.to_vec()),
        (
            EXIT,
            json!({"CallbackCommand": INVITE, "GroupId": group, "ExitMemberList": [{"Member_Account": "bob"}]})
                .to_string()
                .into_bytes(),
        ),
    ] {
        let c = h
            .tencent
            .send_callback(command, "Android", &body, Tamper::None)
            .await;
        refused_call(&c);
    }
    // No app, or an app without a callback token: refused too.
    let no_token = Api::local("cb-no-token").await;
    let spec = TencentSpec::new(h.tencent.url(), SDK_APP_ID, ADMIN);
    no_token
        .store
        .set_tencent(
            &no_token.app.app_id,
            &TencentCloud::new(spec).unwrap(),
            Some(&Secret::new(secret("k"))),
        )
        .await
        .unwrap();
    for app in ["no-such-app-cb", no_token.app.app_id.as_str()] {
        let req = im_e2e::http::client()
            .post(format!(
                "{}/im-cloud/tencent/callback/{app}?SdkAppid={SDK_APP_ID}&CallbackCommand={INVITE}",
                h.api.base
            ))
            .body(invite.clone());
        let resp = im_e2e::openapi::send(&Method::POST, req).await;
        assert_eq!(resp.status(), 200);
        let b: Value = resp.json().await.unwrap();
        assert_eq!(b["ActionStatus"], "FAIL", "{app}: {b}");
    }
    assert_eq!(
        h.members(id).await,
        BTreeSet::from(["alice".into(), "bob".into()])
    );
    assert_eq!(h.etag(id).await, before);

    // Within the minute, signed: taken (the same invite, so the table changes).
    let c = h
        .tencent
        .send_callback(INVITE, "Android", &invite, Tamper::Skewed(-30))
        .await;
    assert!(c.allows(), "{c:?}");
    assert!(h.members(id).await.contains("eve"));
}

#[tokio::test]
async fn a_client_s_invite_adds_only_whom_our_rules_let_it_add() {
    let h = hooked("cb-invite", true, false).await;
    let id = h.create("alice", "bob", 4).await;
    let group = id.to_string();
    eventually("the Tencent group exists", || async {
        h.tencent.group(&group).is_some()
    })
    .await;
    // Our own create came back through the endpoint, and was allowed.
    let creates = h.rest_callbacks("Group.CallbackBeforeCreateGroup");
    assert!(creates.iter().all(CallbackLogged::allows), "{creates:?}");
    assert!(!creates.is_empty());

    // A stranger may add nobody (only members add): refused by name, nowhere added.
    let c = h
        .tencent
        .client_invite("Android", &group, "mallory", &["eve"])
        .await;
    assert_eq!(c.answer["ErrorCode"], 1, "{c:?}");
    assert_eq!(c.refused_members(), ["eve"]);
    assert!(!h.members(id).await.contains("eve"));
    assert!(!h.tencent.group(&group).unwrap().members.contains_key("eve"));

    // A member adds carol; the App admin is refused by name (never a member).
    let c = h
        .tencent
        .client_invite("iOS", &group, "bob", &["carol", ADMIN])
        .await;
    assert!(c.allows(), "{c:?}");
    assert_eq!(c.refused_members(), [ADMIN]);
    assert!(h.members(id).await.contains("carol"), "our table first");
    let t = h.tencent.group(&group).unwrap();
    assert!(t.members.contains_key("carol") && !t.members.contains_key(ADMIN));
    let version = h.etag(id).await;

    // A replay changes nothing twice.
    let again = h
        .tencent
        .client_invite("iOS", &group, "bob", &["carol"])
        .await;
    assert!(again.allows(), "{again:?}");
    assert_eq!(h.etag(id).await, version);

    // The member limit holds: four places, three taken; two more are refused by name.
    let full = h
        .tencent
        .client_invite("iOS", &group, "bob", &["dan", "erin"])
        .await;
    assert_eq!(full.answer["ErrorCode"], 1, "{full:?}");
    assert_eq!(full.refused_members(), ["dan", "erin"]);
    assert_eq!(h.group(id).await["member_count"], 3);

    // The mirror's own add (a route add) comes back as RESTAPI, and is allowed.
    let status = h
        .api
        .send(
            "alice",
            Method::POST,
            format!("/im/group/{id}/member"),
            Some(json!({"member_client_ids": "frank"})),
        )
        .await
        .status();
    assert_eq!(status, 201);
    eventually("frank reaches the Tencent group", || async {
        h.tencent
            .group(&group)
            .unwrap()
            .members
            .contains_key("frank")
    })
    .await;
    let adds = h.rest_callbacks(INVITE);
    assert!(
        !adds.is_empty() && adds.iter().all(CallbackLogged::allows),
        "{adds:?}"
    );

    // A join request: the requestor is no member, so our rules take it not.
    let apply = json!({"CallbackCommand": "Group.CallbackBeforeApplyJoinGroup",
        "GroupId": group, "Type": "Public", "Requestor_Account": "gina"});
    let c = h
        .tencent
        .send_callback(
            "Group.CallbackBeforeApplyJoinGroup",
            "Web",
            apply.to_string().as_bytes(),
            Tamper::None,
        )
        .await;
    assert_eq!(c.answer["ErrorCode"], 1, "{c:?}");
    assert!(!h.members(id).await.contains("gina"));
}

#[tokio::test]
async fn a_member_s_quit_in_tencent_leaves_the_group_here() {
    let h = hooked("cb-quit", true, false).await;
    let id = h.create("alice", "bob:carol", 500).await;
    let group = id.to_string();
    eventually("the Tencent group has everyone", || async {
        h.tencent
            .group(&group)
            .is_some_and(|g| g.members.len() == 3)
    })
    .await;
    let c = h.tencent.client_quit("Android", &group, "bob").await;
    assert!(c.allows(), "{c:?}");
    assert_eq!(
        h.members(id).await,
        BTreeSet::from(["alice".into(), "carol".into()])
    );
    let version = h.etag(id).await;
    // Replayed: nothing changes twice.
    let body = h.exit_body(&group, "bob");
    let again = h
        .tencent
        .send_callback(EXIT, "Android", &body, Tamper::None)
        .await;
    assert!(again.allows(), "{again:?}");
    assert_eq!(h.etag(id).await, version);

    // The mirror's own removal comes back as RESTAPI and is ignored: carol, removed by
    // the route and added again, stays.
    for (method, status) in [(Method::DELETE, 204), (Method::POST, 201)] {
        let resp = h
            .api
            .send(
                "alice",
                method,
                format!("/im/group/{id}/member"),
                Some(json!({"member_client_ids": "carol"})),
            )
            .await;
        assert_eq!(resp.status(), status);
    }
    eventually("the mirror's removal came back", || async {
        !h.rest_callbacks(EXIT).is_empty()
    })
    .await;
    assert!(h.members(id).await.contains("carol"));

    // The owner cannot leave by our rules: it stays, and the Tencent state says why.
    let c = h.tencent.client_quit("iOS", &group, "alice").await;
    assert!(c.allows(), "{c:?}");
    assert!(h.members(id).await.contains("alice"));
    let g = h.group(id).await;
    assert_eq!(g["owner"], "alice");
    assert_eq!(g["clouds"]["tencent"]["status"], "failed", "{g}");
    assert!(
        g["clouds"]["tencent"]["error"]
            .as_str()
            .unwrap()
            .contains("owner alice left"),
        "{g}"
    );
}

#[tokio::test]
async fn creates_are_refused_unless_the_app_allows_tencent_only_groups() {
    let closed = hooked("cb-create", false, false).await;
    let c = closed
        .tencent
        .client_create("iOS", "made-in-sdk", "alice")
        .await;
    assert_eq!(c.answer["ErrorCode"], 1, "{c:?}");
    assert!(closed.tencent.group("made-in-sdk").is_none());
    let open = hooked("cb-create-open", false, true).await;
    let c = open
        .tencent
        .client_create("iOS", "made-in-sdk", "alice")
        .await;
    assert!(c.allows(), "{c:?}");
    assert!(open.tencent.group("made-in-sdk").is_some());
    // Never one of ours: its invites are Tencent's business alone.
    let c = open
        .tencent
        .client_invite("iOS", "made-in-sdk", "alice", &["bob"])
        .await;
    assert!(c.allows(), "{c:?}");
    // ... where the closed app refuses an invite into a group that is none of its own.
    closed.tencent.create_foreign_group("foreign", "alice");
    let c = closed
        .tencent
        .client_invite("iOS", "foreign", "alice", &["bob"])
        .await;
    assert_eq!(c.answer["ErrorCode"], 1, "{c:?}");
}

#[tokio::test]
async fn a_group_destroyed_in_tencent_marks_its_tencent_state_failed() {
    let h = hooked("cb-destroy", true, false).await;
    let id = h.create("alice", "bob", 500).await;
    let group = id.to_string();
    eventually("the Tencent group exists", || async {
        h.tencent.group(&group).is_some()
    })
    .await;
    eventually("the Tencent state is ok", || async {
        h.group(id).await["clouds"]["tencent"]["status"] == "ok"
    })
    .await;
    let gone = h.tencent.destroy_group_in_console(&group).await;
    assert!(gone.allows(), "{gone:?}");
    let g = h.group(id).await;
    let state = g["clouds"]["tencent"].clone();
    assert_eq!(state["status"], "failed", "{g}");
    assert!(state["error"]
        .as_str()
        .unwrap()
        .contains("destroyed in Tencent"));
    assert_eq!(h.members(id).await.len(), 2, "our group stays");
    // Replayed: the state stays as it was (not even its time changes).
    let body = json!({"CallbackCommand": DESTROYED, "GroupId": group, "Type": "Public",
        "Owner_Account": "alice", "Name": "hooked", "MemberList": []});
    let again = h
        .tencent
        .send_callback(DESTROYED, "Web", body.to_string().as_bytes(), Tamper::None)
        .await;
    assert!(again.allows());
    assert_eq!(h.group(id).await["clouds"]["tencent"], state);

    // `sync reconcile --fix` recreates it (its create comes back through the endpoint as
    // the mirror's own, and is allowed), and the state is ok again.
    let mut fix = im_e2e::stack::admin_command();
    fix.arg("--table")
        .arg(im_e2e::stack::env("IM_TEST_LOCAL_TABLE"))
        .args([
            "sync",
            "reconcile",
            "--app",
            &h.api.app.app_id,
            "--group",
            &group,
        ])
        .args(["--cloud", "tencent", "--fix"]);
    let (ok, printed) = crate::mirror::run_printed(fix).await;
    assert!(ok, "{printed}");
    let back = h.tencent.group(&group).expect("recreated");
    assert_eq!(back.member_ids().len(), 2, "{printed}");
    assert_eq!(h.group(id).await["clouds"]["tencent"]["status"], "ok");

    // Our own delete (on_delete keep: nothing destroyed) leaves no mark; a destroy the
    // mirror makes for a deleted group is none of the callback's business either.
    let other = h.create("alice", "bob", 500).await;
    let resp = h
        .api
        .send("alice", Method::DELETE, format!("/im/group/{other}"), None)
        .await;
    assert_eq!(resp.status(), 204);
    let body = json!({"CallbackCommand": DESTROYED, "GroupId": other.to_string()});
    let c = h
        .tencent
        .send_callback(
            DESTROYED,
            "RESTAPI",
            body.to_string().as_bytes(),
            Tamper::None,
        )
        .await;
    assert!(c.allows(), "{c:?}");
}

/// 100 callbacks (invites and exits) and 50 route adds, all at once on one group: every
/// change an answer reports is in the table, and nothing else.
#[tokio::test]
async fn concurrent_callbacks_and_route_calls_lose_no_update() {
    let h = hooked("cb-race", false, false).await;
    let leaving: Vec<String> = (0..40).map(|i| format!("q{i}")).collect();
    let id = h.create("alice", &leaving.join(":"), 500).await;
    let group = id.to_string();
    let invited: Vec<String> = (0..60).map(|i| format!("c{i}")).collect();
    let added: Vec<String> = (0..50).map(|i| format!("r{i}")).collect();
    let invites = invited.iter().map(|m| {
        let body = h.invite_body(&group, "alice", &[m.as_str()]);
        let h = &h;
        async move {
            let c = h
                .tencent
                .send_callback(INVITE, "iOS", &body, Tamper::None)
                .await;
            (m.clone(), c.allows())
        }
    });
    let exits = leaving.iter().map(|m| {
        let body = h.exit_body(&group, m);
        let h = &h;
        async move {
            let c = h
                .tencent
                .send_callback(EXIT, "iOS", &body, Tamper::None)
                .await;
            (m.clone(), c.allows())
        }
    });
    let adds = added.iter().map(|m| {
        let h = &h;
        async move {
            let resp = h
                .api
                .send(
                    "alice",
                    Method::POST,
                    format!("/im/group/{id}/member"),
                    Some(json!({"member_client_ids": m})),
                )
                .await;
            (m.clone(), resp.status() == 201)
        }
    });
    let (invites, exits, adds) = futures::join!(join_all(invites), join_all(exits), join_all(adds));
    let mut expected: BTreeSet<String> = BTreeSet::from(["alice".into()]);
    expected.extend(invites.iter().filter(|(_, ok)| *ok).map(|(m, _)| m.clone()));
    expected.extend(adds.iter().filter(|(_, ok)| *ok).map(|(m, _)| m.clone()));
    // An exit refused (storage busy) leaves its member in.
    expected.extend(exits.iter().filter(|(_, ok)| !*ok).map(|(m, _)| m.clone()));
    let ok = |v: &[(String, bool)]| v.iter().filter(|(_, ok)| *ok).count();
    assert!(ok(&invites) > 0 && ok(&exits) > 0 && ok(&adds) > 0);
    let members = h.members(id).await;
    assert_eq!(members, expected);
    assert_eq!(h.group(id).await["member_count"], members.len());
    println!(
        "concurrent: {}/60 invites, {}/40 exits, {}/50 adds",
        ok(&invites),
        ok(&exits),
        ok(&adds)
    );
}
