//! The stand-in's side of Tencent's callbacks (notes, "Callbacks"): with a callback URL
//! and token configured, it POSTs the documented events to the app's endpoint, signed
//! with its own implementation of the callback authentication (`Sign` = hex(SHA-256(token
//! + RequestTime)), made here with `sha2`, never with the service's code):
//! - before a REST `create_group` / `add_group_member`, the "before" event, with
//!   `OptPlatform=RESTAPI` and the calling admin as operator; a refusal (`ErrorCode` not
//!   0) fails the REST call with 10016, and `RefusedMembers_Account` are not added
//!   (`Result` 0);
//! - after a REST `delete_group_member` / `destroy_group` that changed something, the
//!   "after" event, sent as Tencent does, without waiting for the REST answer;
//! - a client's own actions through the SDK ([`crate::tencent::TencentStandIn`]'s
//!   `client_*` methods): the "before" event decides, the change follows.
//!
//! Every call and its answer are logged for the tests ([`CallbackLogged`]); never the
//! token or the `Sign`.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// Where the stand-in sends callbacks, and the token it signs them with.
#[derive(Clone)]
pub struct CallbackTarget {
    /// The full URL, `.../im-cloud/tencent/callback/<app_id>` (loopback only).
    pub url: String,
    pub token: String,
}

/// How a callback is spoiled, for the authentication tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Tamper {
    #[default]
    None,
    /// The `Sign` of another token.
    WrongToken,
    /// No `Sign` and no `RequestTime` (callback authentication off in the console).
    Unsigned,
    /// `RequestTime` this many seconds from now (signed for it).
    Skewed(i64),
    /// Another `SdkAppid` (signed with the right token).
    SdkAppid(u64),
}

/// One callback the stand-in sent, and the endpoint's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct CallbackLogged {
    pub command: String,
    pub opt_platform: String,
    pub group_id: Option<String>,
    /// The HTTP status, or `None` when none came.
    pub status: Option<u16>,
    /// The answer's JSON (`Null` when it was not JSON).
    pub answer: Value,
}

impl CallbackLogged {
    /// Whether the answer allows the event: HTTP 200, `ActionStatus` OK, `ErrorCode` 0.
    /// Anything else refuses (the stand-in's strict reading; Tencent lets an event through
    /// on a time-out, which the service must never rely on).
    pub fn allows(&self) -> bool {
        self.status == Some(200)
            && self.answer["ActionStatus"] == "OK"
            && self.answer["ErrorCode"] == 0
    }

    /// The members an invite's answer refuses by name.
    pub fn refused_members(&self) -> Vec<String> {
        self.answer["RefusedMembers_Account"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// hex(SHA-256(token + request_time)), Tencent's callback `Sign`.
pub fn callback_sign(token: &str, request_time: &str) -> String {
    let mut h = Sha256::new();
    h.update(token.as_bytes());
    h.update(request_time.as_bytes());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

/// The query Tencent sends for `command`, signed unless `tamper` says otherwise.
pub fn callback_query(
    token: &str,
    sdk_app_id: u64,
    command: &str,
    opt_platform: &str,
    tamper: Tamper,
) -> String {
    let app = match tamper {
        Tamper::SdkAppid(other) => other,
        _ => sdk_app_id,
    };
    let mut q = format!(
        "SdkAppid={app}&CallbackCommand={command}&contenttype=json&ClientIP=127.0.0.1&OptPlatform={opt_platform}"
    );
    let time = match tamper {
        Tamper::Skewed(s) => now() + s,
        _ => now(),
    }
    .to_string();
    let sign = match tamper {
        Tamper::Unsigned => return q,
        Tamper::WrongToken => callback_sign(&format!("{token}-not"), &time),
        _ => callback_sign(token, &time),
    };
    q.push_str(&format!("&RequestTime={time}&Sign={sign}"));
    q
}

/// POSTs one callback, `body` as given (any bytes: the malformed-body tests).
pub async fn post_callback(
    target: &CallbackTarget,
    sdk_app_id: u64,
    command: &str,
    opt_platform: &str,
    body: &[u8],
    tamper: Tamper,
) -> CallbackLogged {
    let query = callback_query(&target.token, sdk_app_id, command, opt_platform, tamper);
    let group_id = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|b| b.get("GroupId")?.as_str().map(str::to_owned));
    let req = crate::http::client()
        .post(format!("{}?{query}", target.url))
        .header("content-type", "application/json")
        .body(body.to_vec())
        // Tencent waits 2 s; DynamoDB Local under 150 writes to one group can take longer,
        // and the tests check what was decided, not how fast (the bench does).
        .timeout(std::time::Duration::from_secs(120));
    // Checked against openapi.yaml, as every answer of the service in the tests.
    let resp = crate::openapi::send(&reqwest::Method::POST, req).await;
    let status = Some(resp.status().as_u16());
    let answer = resp.json().await.unwrap_or(Value::Null);
    CallbackLogged {
        command: command.to_owned(),
        opt_platform: opt_platform.to_owned(),
        group_id,
        status,
        answer,
    }
}

/// `[{"Member_Account": id}, ...]`.
pub fn member_accounts<'a>(ids: impl IntoIterator<Item = &'a str>) -> Value {
    Value::Array(
        ids.into_iter()
            .map(|m| json!({"Member_Account": m}))
            .collect(),
    )
}

/// `Group.CallbackAfterGroupDestroyed`'s body for `group`, as it was.
pub fn destroyed_body(group: &super::TencentGroup) -> Value {
    json!({
        "CallbackCommand": "Group.CallbackAfterGroupDestroyed",
        "GroupId": group.id,
        "Type": group.group_type,
        "Owner_Account": group.owner.clone().unwrap_or_default(),
        "Name": group.name,
        "MemberList": member_accounts(group.members.keys().map(String::as_str)),
    })
}

/// The "before" event an admin's REST call triggers (Tencent asks the app about its own
/// backend's changes too, `OptPlatform=RESTAPI`), if the call is one that does.
pub(super) fn before_event(
    command: &str,
    operator: &str,
    body: &Value,
) -> Option<(&'static str, Value)> {
    match command {
        "group_open_http_svc/create_group" => Some((
            "Group.CallbackBeforeCreateGroup",
            json!({
                "CallbackCommand": "Group.CallbackBeforeCreateGroup",
                "Operator_Account": operator,
                "Owner_Account": body.get("Owner_Account").cloned().unwrap_or(Value::Null),
                "Type": body.get("Type").cloned().unwrap_or(Value::Null),
                "Name": body.get("Name").cloned().unwrap_or(Value::Null),
                "CreateGroupNum": 0,
                "MemberList": body.get("MemberList").cloned().unwrap_or(json!([])),
            }),
        )),
        "group_open_http_svc/add_group_member" => Some((
            "Group.CallbackBeforeInviteJoinGroup",
            json!({
                "CallbackCommand": "Group.CallbackBeforeInviteJoinGroup",
                "GroupId": body.get("GroupId")?.as_str()?,
                "Type": "Public",
                "Operator_Account": operator,
                "DestinationMembers": body.get("MemberList")?.clone(),
            }),
        )),
        _ => None,
    }
}

/// The "after" event an admin's REST call that changed something triggers, if any;
/// `destroyed` is the group as it was before a `destroy_group`.
pub(super) fn after_event(
    command: &str,
    operator: &str,
    body: &Value,
    destroyed: Option<&super::TencentGroup>,
) -> Option<(&'static str, Value)> {
    match command {
        "group_open_http_svc/delete_group_member" => {
            let gone = body.get("MemberToDel_Account")?.as_array()?;
            Some((
                "Group.CallbackAfterMemberExit",
                json!({
                    "CallbackCommand": "Group.CallbackAfterMemberExit",
                    "GroupId": body.get("GroupId")?.as_str()?,
                    "Type": "Public",
                    "ExitType": "Kicked",
                    "Operator_Account": operator,
                    "ExitMemberList": member_accounts(gone.iter().filter_map(Value::as_str)),
                }),
            ))
        }
        "group_open_http_svc/destroy_group" => Some((
            "Group.CallbackAfterGroupDestroyed",
            destroyed_body(destroyed?),
        )),
        _ => None,
    }
}

/// `OptPlatform` for a change made through the REST API.
pub const REST_PLATFORM: &str = "RESTAPI";
