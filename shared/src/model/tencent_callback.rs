//! Tencent Cloud IM's callbacks (its webhook) as pure rules: whether a call is Tencent's
//! ([`authenticate`]: the `Sign`, the `RequestTime` window, the `SdkAppid`), what it says
//! ([`parse_event`]), and what this service answers or does for it ([`plan`]). The HTTP
//! layer (`api::tencent_callback`) gathers the facts, runs the one write a plan names and
//! renders the [`Answer`]. The contract is `../shared/notes/tencent-im.md`, "Callbacks".
//!
//! Tencent has no per-operation signature: its clients act on groups directly, and a
//! "before" callback is the app's only say. So every doubt refuses: an unauthenticated
//! call, an event we cannot read, a storage failure. (On a time-out or an answer it cannot
//! read Tencent lets the action proceed, which is why every answer is HTTP 200 with a
//! body that refuses, never an error status.)

use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::ids::MemberList;
use super::reserved::ReservedIds;
use super::secret::Secret;
use super::tencent_cloud::TencentCloud;

/// How far `RequestTime` may be from now, either way.
pub const MAX_SKEW_SECONDS: u64 = 60;

/// What `OptPlatform` says of an action the app's backend made through the REST API.
pub const REST_PLATFORM: &str = "RESTAPI";

/// The `ErrorCode` that refuses a "before" event (the caller gets 10016).
pub const REFUSE: u32 = 1;

pub const BEFORE_CREATE: &str = "Group.CallbackBeforeCreateGroup";
pub const BEFORE_INVITE: &str = "Group.CallbackBeforeInviteJoinGroup";
pub const BEFORE_APPLY: &str = "Group.CallbackBeforeApplyJoinGroup";
pub const AFTER_MEMBER_EXIT: &str = "Group.CallbackAfterMemberExit";
pub const AFTER_GROUP_DESTROYED: &str = "Group.CallbackAfterGroupDestroyed";

/// The query parameters of one callback, as Tencent sends them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CallbackQuery {
    pub sdk_app_id: String,
    pub command: String,
    pub opt_platform: String,
    pub sign: Option<String>,
    pub request_time: Option<String>,
}

/// Why a call is refused before anything is read or written. `Display` is the reason for
/// the log; none holds the token or the `Sign`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the app has no Tencent settings or no callback token")]
    NotConfigured,
    #[error("query parameter {0} is missing")]
    Missing(&'static str),
    #[error("query parameter {0} is given more than once")]
    Repeated(String),
    #[error("Sign does not match the callback token")]
    BadSign,
    #[error("RequestTime is not a Unix time")]
    BadTime,
    #[error("RequestTime is {0} s from now (at most {MAX_SKEW_SECONDS} s)")]
    Stale(u64),
    #[error("SdkAppid {0:?} is not the app's")]
    ForeignApp(String),
    #[error("CallbackCommand in the body differs from the query's")]
    CommandMismatch,
    #[error("the body is not the event's JSON: {0}")]
    Malformed(String),
}

/// The query from its decoded pairs. A parameter given twice is refused: which one a
/// signature covers would be a guess.
pub fn parse_query<'a>(
    pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<CallbackQuery, Refusal> {
    let mut q = CallbackQuery::default();
    let mut seen: Vec<&str> = Vec::new();
    for (name, value) in pairs {
        let slot = match name {
            "SdkAppid" => &mut q.sdk_app_id,
            "CallbackCommand" => &mut q.command,
            "OptPlatform" => &mut q.opt_platform,
            "Sign" => q.sign.get_or_insert_with(String::new),
            "RequestTime" => q.request_time.get_or_insert_with(String::new),
            // contenttype, ClientIP and whatever Tencent adds later: not ours to judge.
            _ => continue,
        };
        if seen.contains(&name) {
            return Err(Refusal::Repeated(name.to_owned()));
        }
        seen.push(name);
        value.clone_into(slot);
    }
    if q.sdk_app_id.is_empty() {
        return Err(Refusal::Missing("SdkAppid"));
    }
    if q.command.is_empty() {
        return Err(Refusal::Missing("CallbackCommand"));
    }
    Ok(q)
}

/// Tencent's callback signature: lowercase hex of SHA-256 over the token then the
/// `RequestTime` as sent (a plain hash of the concatenation, not an HMAC).
pub fn sign(token: &Secret, request_time: &str) -> String {
    let mut h = Sha256::new();
    h.update(token.expose().as_bytes());
    h.update(request_time.as_bytes());
    hex::encode(h.finalize())
}

/// Whether `q` is Tencent's call for this app at `now` (Unix seconds): a token is set,
/// `Sign` is [`sign`] of it (compared in constant time), `RequestTime` is within
/// [`MAX_SKEW_SECONDS`] of now and `SdkAppid` is the app's.
pub fn authenticate(
    settings: &TencentCloud,
    token: Option<&Secret>,
    q: &CallbackQuery,
    now: u64,
) -> Result<(), Refusal> {
    let token = token.ok_or(Refusal::NotConfigured)?;
    let given = q.sign.as_deref().ok_or(Refusal::Missing("Sign"))?;
    let time = q
        .request_time
        .as_deref()
        .ok_or(Refusal::Missing("RequestTime"))?;
    let expected = sign(token, time);
    if !bool::from(
        given
            .to_ascii_lowercase()
            .as_bytes()
            .ct_eq(expected.as_bytes()),
    ) {
        return Err(Refusal::BadSign);
    }
    // Only digits: `+5`, ` 5` or `5.0` would be one time with several signed spellings.
    if time.is_empty() || time.len() > 19 || !time.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Refusal::BadTime);
    }
    let at: u64 = time.parse().map_err(|_| Refusal::BadTime)?;
    let skew = now.abs_diff(at);
    if skew > MAX_SKEW_SECONDS {
        return Err(Refusal::Stale(skew));
    }
    if q.sdk_app_id != settings.sdk_app_id().to_string() {
        // Named in the log only as the number it should be: anything else could be
        // anything the caller chose.
        let shown = if q.sdk_app_id.len() <= 20 && q.sdk_app_id.bytes().all(|b| b.is_ascii_digit())
        {
            q.sdk_app_id.clone()
        } else {
            "(not a number)".to_owned()
        };
        return Err(Refusal::ForeignApp(shown));
    }
    Ok(())
}

/// One callback's content: the events this service acts on, and every other one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    BeforeCreate {
        operator: String,
        owner: String,
    },
    BeforeInvite {
        group_id: String,
        operator: String,
        members: Vec<String>,
    },
    BeforeApply {
        group_id: String,
        requestor: String,
    },
    /// `ExitType` is `Quit` (the member left), `Kicked` (someone removed it) or `Dismiss`.
    AfterMemberExit {
        group_id: String,
        operator: String,
        members: Vec<String>,
    },
    AfterGroupDestroyed {
        group_id: String,
    },
    /// Acknowledged and ignored (after-events we do not record, events we do not know).
    Other,
}

fn text(body: &Value, field: &str) -> Result<String, Refusal> {
    match body.get(field) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        _ => Err(Refusal::Malformed(format!(
            "{field} is not a non-empty string"
        ))),
    }
}

/// `[{"Member_Account": "bob"}, ...]`.
fn accounts(body: &Value, field: &str) -> Result<Vec<String>, Refusal> {
    let bad = || Refusal::Malformed(format!("{field} is not a list of {{\"Member_Account\"}}"));
    let list = body.get(field).and_then(Value::as_array).ok_or_else(bad)?;
    list.iter()
        .map(|m| text(m, "Member_Account").map_err(|_| bad()))
        .collect()
}

/// The event in `body` for the query's `command`. The body's own `CallbackCommand`, when
/// it has one, must be the same: the signature covers the query only.
pub fn parse_event(command: &str, body: &[u8]) -> Result<Event, Refusal> {
    let body: Value =
        serde_json::from_slice(body).map_err(|e| Refusal::Malformed(e.to_string()))?;
    if !body.is_object() {
        return Err(Refusal::Malformed("not a JSON object".into()));
    }
    match body.get("CallbackCommand") {
        None => {}
        Some(Value::String(c)) if c == command => {}
        Some(_) => return Err(Refusal::CommandMismatch),
    }
    Ok(match command {
        BEFORE_CREATE => Event::BeforeCreate {
            operator: text(&body, "Operator_Account")?,
            owner: text(&body, "Owner_Account").unwrap_or_default(),
        },
        BEFORE_INVITE => Event::BeforeInvite {
            group_id: text(&body, "GroupId")?,
            operator: text(&body, "Operator_Account")?,
            members: accounts(&body, "DestinationMembers")?,
        },
        BEFORE_APPLY => Event::BeforeApply {
            group_id: text(&body, "GroupId")?,
            requestor: text(&body, "Requestor_Account")?,
        },
        // Field names *unconfirmed* in the notes; these are the vendor page's.
        AFTER_MEMBER_EXIT => Event::AfterMemberExit {
            group_id: text(&body, "GroupId")?,
            operator: text(&body, "Operator_Account").unwrap_or_default(),
            members: accounts(&body, "ExitMemberList")?,
        },
        AFTER_GROUP_DESTROYED => Event::AfterGroupDestroyed {
            group_id: text(&body, "GroupId")?,
        },
        _ => Event::Other,
    })
}

/// The answer Tencent reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Answer {
    #[serde(rename = "ActionStatus")]
    pub action_status: &'static str,
    #[serde(rename = "ErrorCode")]
    pub error_code: u32,
    #[serde(rename = "ErrorInfo")]
    pub error_info: String,
    /// For an invite: the members refused (the others join).
    #[serde(
        rename = "RefusedMembers_Account",
        skip_serializing_if = "Option::is_none"
    )]
    pub refused_members: Option<Vec<String>>,
}

impl Answer {
    /// Allowed (or, for an after-event, received).
    pub fn ok() -> Self {
        Self {
            action_status: "OK",
            error_code: 0,
            error_info: String::new(),
            refused_members: None,
        }
    }

    /// The event read and refused by our rules; `info` reaches the client.
    pub fn refuse(info: impl Into<String>) -> Self {
        Self {
            error_code: REFUSE,
            error_info: info.into(),
            ..Self::ok()
        }
    }

    /// The call itself refused (not authenticated, unreadable, storage failed): it is
    /// not processed, and a "before" event does not happen. The reason stays in our log.
    pub fn failed() -> Self {
        Self {
            action_status: "FAIL",
            error_code: REFUSE,
            error_info: "refused by the app's callback".into(),
            refused_members: None,
        }
    }

    /// An invite: `refused` are named; with none allowed, the whole invite is refused.
    pub fn invite(refused: Vec<String>, any_allowed: bool, info: &str) -> Self {
        if refused.is_empty() {
            return Self::ok();
        }
        let mut a = if any_allowed {
            Self::ok()
        } else {
            Self::refuse(info)
        };
        if any_allowed {
            a.error_info = info.to_owned();
        }
        a.refused_members = Some(refused);
        a
    }
}

/// What to do for one authenticated event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Answer now; nothing to read or write.
    Answer(Answer),
    /// Add `members` to our group as `operator` would through the add route (the same
    /// conditional write): allow them if it holds, refuse them if not. `refused` are
    /// refused by name whatever the write does.
    Add {
        group_id: u64,
        operator: String,
        members: MemberList,
        refused: Vec<String>,
    },
    /// Each of `members` leaves our group as through the leave route.
    Leave { group_id: u64, members: Vec<String> },
    /// Our group's Tencent group is gone: mark its Tencent sync state failed.
    MarkDestroyed { group_id: u64 },
}

/// The limits a plan keeps to (the group routes' own).
#[derive(Debug, Clone, Copy)]
pub struct PlanLimits {
    pub max_id_chars: usize,
    pub max_members_per_request: usize,
}

/// The decision for `event` under `settings` (`opt_platform` as the query said): our own
/// mirror's REST calls (the app's admin, `OptPlatform=RESTAPI`) are allowed as they are,
/// they follow our table; a client's create is refused unless the app allows
/// Tencent-only groups; on one of our groups, a client's invite or join is the add route's
/// write as that client (only what our rules let it add), its exit the leave route's.
pub fn plan(
    settings: &TencentCloud,
    reserved: &ReservedIds,
    opt_platform: &str,
    event: &Event,
    limits: PlanLimits,
) -> Plan {
    let ours =
        |operator: &str| opt_platform == REST_PLATFORM && settings.is_admin_account(operator);
    let not_ours = || {
        if settings.client_creates() {
            Plan::Answer(Answer::ok())
        } else {
            // An id in no form we give out: no group of ours, and no Tencent-only group
            // should exist either.
            Plan::Answer(Answer::refuse("not a group of this app"))
        }
    };
    match event {
        Event::BeforeCreate { operator, .. } if ours(operator) => Plan::Answer(Answer::ok()),
        Event::BeforeCreate { .. } if settings.client_creates() => Plan::Answer(Answer::ok()),
        Event::BeforeCreate { .. } => Plan::Answer(Answer::refuse(
            "groups are created through the app's service",
        )),
        Event::BeforeInvite { operator, .. } if ours(operator) => Plan::Answer(Answer::ok()),
        Event::BeforeInvite {
            group_id,
            operator,
            members,
        } => match settings.our_group_id(group_id) {
            None => not_ours(),
            Some(id) => add_plan(settings, reserved, id, operator, members, limits),
        },
        Event::BeforeApply { requestor, .. } if ours(requestor) => Plan::Answer(Answer::ok()),
        // A join is the requestor adding itself: our add rule takes a member only.
        Event::BeforeApply {
            group_id,
            requestor,
        } => match settings.our_group_id(group_id) {
            None => not_ours(),
            Some(id) => add_plan(
                settings,
                reserved,
                id,
                requestor,
                std::slice::from_ref(requestor),
                limits,
            ),
        },
        // Our own removals are in our table already (and the member may be back since).
        Event::AfterMemberExit { operator, .. } if ours(operator) => Plan::Answer(Answer::ok()),
        Event::AfterMemberExit {
            group_id, members, ..
        } => match settings.our_group_id(group_id) {
            Some(id) => Plan::Leave {
                group_id: id,
                members: members.clone(),
            },
            None => Plan::Answer(Answer::ok()),
        },
        // Whoever destroyed it: the store marks it only while our group is live (our own
        // delete leaves none).
        Event::AfterGroupDestroyed { group_id } => match settings.our_group_id(group_id) {
            Some(id) => Plan::MarkDestroyed { group_id: id },
            None => Plan::Answer(Answer::ok()),
        },
        Event::Other => Plan::Answer(Answer::ok()),
    }
}

/// Splits the invited into those the add route could take (valid ids, not reserved) and
/// those refused by name.
fn add_plan(
    settings: &TencentCloud,
    reserved: &ReservedIds,
    group_id: u64,
    operator: &str,
    invited: &[String],
    limits: PlanLimits,
) -> Plan {
    let mut refused = Vec::new();
    let mut fine = Vec::new();
    for id in invited {
        let valid = MemberList::from_ids("member", [id.as_str()], 1, limits.max_id_chars).is_ok();
        if !valid || reserved.contains(id) || settings.is_admin_account(id) {
            refused.push(id.clone());
        } else {
            fine.push(id.as_str());
        }
    }
    let operator_ok = super::ids::check_id("operator", operator, limits.max_id_chars).is_ok();
    let members =
        MemberList::from_ids("member", fine, usize::MAX, limits.max_id_chars).unwrap_or_default();
    if !operator_ok || members.len() > limits.max_members_per_request {
        refused.extend(members.ids().iter().cloned());
        return Plan::Answer(Answer::invite(refused, false, "refused by the app's rules"));
    }
    if members.is_empty() {
        return Plan::Answer(Answer::invite(refused, false, "refused by the app's rules"));
    }
    Plan::Add {
        group_id,
        operator: operator.to_owned(),
        members,
        refused,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::TencentSpec;

    fn settings(prefix: &str, client_creates: bool) -> TencentCloud {
        let mut spec = TencentSpec::new("https://adminapisgp.im.qcloud.com", 1_400_000_001, "ops");
        spec.group_id_prefix = prefix.into();
        spec.client_creates = client_creates;
        TencentCloud::new(spec).unwrap()
    }

    const LIMITS: PlanLimits = PlanLimits {
        max_id_chars: 64,
        max_members_per_request: 3,
    };

    fn query(sign: &str, time: &str, app: &str) -> CallbackQuery {
        CallbackQuery {
            sdk_app_id: app.into(),
            command: BEFORE_CREATE.into(),
            opt_platform: "iOS".into(),
            sign: Some(sign.into()),
            request_time: Some(time.into()),
        }
    }

    #[test]
    fn sign_is_plain_sha256_of_token_then_time() {
        // Tencent's documented example (../shared/notes/tencent-im.md).
        assert_eq!(
            sign(&Secret::new("xxxxyyyy"), "1669872112"),
            "17773bc39a671d7b9aa835458704d2a6db81360a5940292b587d6d760d484061"
        );
        // python3 -c "import hashlib;print(hashlib.sha256(('cb-t0ken-测试'+'1700000000').encode()).hexdigest())"
        assert_eq!(
            sign(&Secret::new("cb-t0ken-测试"), "1700000000"),
            "211c88ddbbd56481bd0047f343cb04fa87bd5cf26410e24e03d3a01762f5585d"
        );
    }

    #[test]
    fn authentication_needs_token_sign_window_and_app() {
        let s = settings("", false);
        let token = Secret::new("xxxxyyyy");
        let good = "17773bc39a671d7b9aa835458704d2a6db81360a5940292b587d6d760d484061";
        let t = 1_669_872_112;
        let q = query(good, "1669872112", "1400000001");
        assert_eq!(authenticate(&s, Some(&token), &q, t), Ok(()));
        assert_eq!(authenticate(&s, Some(&token), &q, t + 60), Ok(()));
        assert_eq!(authenticate(&s, Some(&token), &q, t - 60), Ok(()));
        let upper = query(&good.to_uppercase(), "1669872112", "1400000001");
        assert_eq!(authenticate(&s, Some(&token), &upper, t), Ok(()));
        assert_eq!(
            authenticate(&s, Some(&token), &q, t + 61),
            Err(Refusal::Stale(61))
        );
        assert_eq!(
            authenticate(&s, Some(&token), &q, t - 61),
            Err(Refusal::Stale(61))
        );
        assert_eq!(authenticate(&s, None, &q, t), Err(Refusal::NotConfigured));
        let other = Secret::new("xxxxyyyz");
        assert_eq!(authenticate(&s, Some(&other), &q, t), Err(Refusal::BadSign));
        let bad = query(&good.replace('1', "2"), "1669872112", "1400000001");
        assert_eq!(
            authenticate(&s, Some(&token), &bad, t),
            Err(Refusal::BadSign)
        );
        // The Sign covers the time: another time with the same Sign fails.
        let moved = query(good, "1669872113", "1400000001");
        assert_eq!(
            authenticate(&s, Some(&token), &moved, t),
            Err(Refusal::BadSign)
        );
        let foreign = query(good, "1669872112", "1400000002");
        assert_eq!(
            authenticate(&s, Some(&token), &foreign, t),
            Err(Refusal::ForeignApp("1400000002".into()))
        );
        let odd_app = query(good, "1669872112", "14\n00");
        assert_eq!(
            authenticate(&s, Some(&token), &odd_app, t),
            Err(Refusal::ForeignApp("(not a number)".into()))
        );
        let mut unsigned = q.clone();
        unsigned.sign = None;
        assert_eq!(
            authenticate(&s, Some(&token), &unsigned, t),
            Err(Refusal::Missing("Sign"))
        );
        let mut untimed = q.clone();
        untimed.request_time = None;
        assert_eq!(
            authenticate(&s, Some(&token), &untimed, t),
            Err(Refusal::Missing("RequestTime"))
        );
        // A signed time that is not plain digits.
        let odd = Secret::new("k");
        let plus = query(&sign(&odd, "+1669872112"), "+1669872112", "1400000001");
        assert_eq!(
            authenticate(&s, Some(&odd), &plus, t),
            Err(Refusal::BadTime)
        );
        // No reason shows the token or the Sign.
        for r in [Refusal::BadSign, Refusal::Stale(61), Refusal::NotConfigured] {
            let text = r.to_string();
            assert!(!text.contains("xxxxyyyy") && !text.contains(good), "{text}");
        }
    }

    #[test]
    fn queries_parse_and_refuse_repeats() {
        let q = parse_query([
            ("SdkAppid", "1400000001"),
            ("CallbackCommand", BEFORE_INVITE),
            ("contenttype", "json"),
            ("ClientIP", "10.0.0.1"),
            ("OptPlatform", "RESTAPI"),
            ("Sign", "ab"),
            ("RequestTime", "5"),
        ])
        .unwrap();
        assert_eq!(q.command, BEFORE_INVITE);
        assert_eq!(q.opt_platform, "RESTAPI");
        assert_eq!(q.sign.as_deref(), Some("ab"));
        assert_eq!(q.request_time.as_deref(), Some("5"));
        assert_eq!(
            parse_query([
                ("SdkAppid", "1"),
                ("SdkAppid", "2"),
                ("CallbackCommand", "x")
            ]),
            Err(Refusal::Repeated("SdkAppid".into()))
        );
        assert_eq!(
            parse_query([("CallbackCommand", "x")]),
            Err(Refusal::Missing("SdkAppid"))
        );
        assert_eq!(
            parse_query([("SdkAppid", "1")]),
            Err(Refusal::Missing("CallbackCommand"))
        );
    }

    #[test]
    fn event_bodies_parse() {
        let invite = br#"{"CallbackCommand": "Group.CallbackBeforeInviteJoinGroup",
            "GroupId": "g-7", "Type": "Public", "Operator_Account": "alice",
            "DestinationMembers": [{"Member_Account": "bob"}, {"Member_Account": "carol"}]}"#;
        assert_eq!(
            parse_event(BEFORE_INVITE, invite),
            Ok(Event::BeforeInvite {
                group_id: "g-7".into(),
                operator: "alice".into(),
                members: vec!["bob".into(), "carol".into()],
            })
        );
        let exit = br#"{"GroupId": "7", "ExitType": "Quit", "Operator_Account": "bob",
            "ExitMemberList": [{"Member_Account": "bob"}]}"#;
        assert_eq!(
            parse_event(AFTER_MEMBER_EXIT, exit),
            Ok(Event::AfterMemberExit {
                group_id: "7".into(),
                operator: "bob".into(),
                members: vec!["bob".into()],
            })
        );
        let apply = br#"{"GroupId": "7", "Requestor_Account": "dan"}"#;
        assert!(matches!(
            parse_event(BEFORE_APPLY, apply),
            Ok(Event::BeforeApply { .. })
        ));
        let create = br#"{"Operator_Account": "dan", "Owner_Account": "dan", "Type": "Public",
            "Name": "x", "MemberList": []}"#;
        assert!(matches!(
            parse_event(BEFORE_CREATE, create),
            Ok(Event::BeforeCreate { .. })
        ));
        assert_eq!(
            parse_event(AFTER_GROUP_DESTROYED, br#"{"GroupId": "7"}"#),
            Ok(Event::AfterGroupDestroyed {
                group_id: "7".into()
            })
        );
        assert_eq!(
            parse_event("Group.CallbackAfterGroupInfoChanged", b"{}"),
            Ok(Event::Other)
        );
        for (command, bad) in [
            (BEFORE_INVITE, &b"not json"[..]),
            (BEFORE_INVITE, b"[1]"),
            (BEFORE_INVITE, br#"{"GroupId": "7", "Operator_Account": "a"}"#),
            (
                BEFORE_INVITE,
                br#"{"GroupId": 7, "Operator_Account": "a", "DestinationMembers": []}"#,
            ),
            (
                BEFORE_INVITE,
                br#"{"GroupId": "7", "Operator_Account": "a", "DestinationMembers": [{"Member_Account": 3}]}"#,
            ),
            (AFTER_MEMBER_EXIT, br#"{"GroupId": "7"}"#),
            (BEFORE_APPLY, br#"{"GroupId": "", "Requestor_Account": "a"}"#),
        ] {
            assert!(
                matches!(parse_event(command, bad), Err(Refusal::Malformed(_))),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(
            parse_event(
                BEFORE_APPLY,
                br#"{"CallbackCommand": "Group.CallbackBeforeCreateGroup"}"#
            ),
            Err(Refusal::CommandMismatch)
        );
    }

    fn invite(group: &str, operator: &str, members: &[&str]) -> Event {
        Event::BeforeInvite {
            group_id: group.into(),
            operator: operator.into(),
            members: members.iter().map(|m| m.to_string()).collect(),
        }
    }

    fn list(ids: &[&str]) -> MemberList {
        MemberList::from_ids("m", ids.iter().copied(), 100, 64).unwrap()
    }

    #[test]
    fn creates_are_ours_or_allowed_by_the_setting() {
        let none = ReservedIds::default();
        let create = |op: &str| Event::BeforeCreate {
            operator: op.into(),
            owner: op.into(),
        };
        let off = settings("", false);
        let on = settings("", true);
        assert_eq!(
            plan(&off, &none, "RESTAPI", &create("ops"), LIMITS),
            Plan::Answer(Answer::ok())
        );
        assert_eq!(
            plan(&off, &none, "RESTAPI", &create("administrator"), LIMITS),
            Plan::Answer(Answer::ok())
        );
        // The admin's name from a client platform is a client, not our mirror.
        for (platform, op) in [("iOS", "ops"), ("RESTAPI", "alice"), ("Web", "alice")] {
            let Plan::Answer(a) = plan(&off, &none, platform, &create(op), LIMITS) else {
                panic!("no answer")
            };
            assert_eq!(a.error_code, REFUSE, "{platform} {op}");
        }
        assert_eq!(
            plan(&on, &none, "Web", &create("alice"), LIMITS),
            Plan::Answer(Answer::ok())
        );
    }

    #[test]
    fn invites_and_joins_are_the_add_route_s_write() {
        let reserved = ReservedIds::new(["sys".to_owned()]);
        let s = settings("g-", false);
        assert_eq!(
            plan(
                &s,
                &reserved,
                "RESTAPI",
                &invite("g-7", "ops", &["x"]),
                LIMITS
            ),
            Plan::Answer(Answer::ok())
        );
        assert_eq!(
            plan(
                &s,
                &reserved,
                "Android",
                &invite("g-7", "alice", &["bob", "sys", "a:b", "ops"]),
                LIMITS
            ),
            Plan::Add {
                group_id: 7,
                operator: "alice".into(),
                members: list(&["bob"]),
                refused: vec!["sys".into(), "a:b".into(), "ops".into()],
            }
        );
        let Plan::Answer(a) = plan(
            &s,
            &reserved,
            "Android",
            &invite("g-7", "alice", &["sys"]),
            LIMITS,
        ) else {
            panic!()
        };
        assert_eq!(
            (a.error_code, a.refused_members),
            (REFUSE, Some(vec!["sys".into()]))
        );
        // More than one transaction takes: the whole invite, by name.
        let Plan::Answer(a) = plan(
            &s,
            &reserved,
            "Web",
            &invite("g-7", "alice", &["a", "b", "c", "d"]),
            LIMITS,
        ) else {
            panic!()
        };
        assert_eq!(a.error_code, REFUSE);
        assert_eq!(a.refused_members.map(|r| r.len()), Some(4));
        // Not an id of ours: refused unless Tencent-only groups are allowed.
        let Plan::Answer(a) = plan(
            &s,
            &reserved,
            "Web",
            &invite("@TGS#abc", "alice", &["b"]),
            LIMITS,
        ) else {
            panic!()
        };
        assert_eq!(a.error_code, REFUSE);
        let open = settings("g-", true);
        assert_eq!(
            plan(
                &open,
                &reserved,
                "Web",
                &invite("@TGS#abc", "alice", &["b"]),
                LIMITS
            ),
            Plan::Answer(Answer::ok())
        );
        // A join: the requestor adding itself.
        let apply = Event::BeforeApply {
            group_id: "g-9".into(),
            requestor: "dan".into(),
        };
        assert_eq!(
            plan(&s, &reserved, "iOS", &apply, LIMITS),
            Plan::Add {
                group_id: 9,
                operator: "dan".into(),
                members: list(&["dan"]),
                refused: vec![],
            }
        );
    }

    #[test]
    fn exits_and_destroys_are_recorded_unless_ours() {
        let none = ReservedIds::default();
        let s = settings("", false);
        let exit = |op: &str| Event::AfterMemberExit {
            group_id: "7".into(),
            operator: op.into(),
            members: vec!["bob".into()],
        };
        assert_eq!(
            plan(&s, &none, "iOS", &exit("bob"), LIMITS),
            Plan::Leave {
                group_id: 7,
                members: vec!["bob".into()]
            }
        );
        assert_eq!(
            plan(&s, &none, "RESTAPI", &exit("ops"), LIMITS),
            Plan::Answer(Answer::ok())
        );
        let gone = Event::AfterGroupDestroyed {
            group_id: "7".into(),
        };
        assert_eq!(
            plan(&s, &none, "RESTAPI", &gone, LIMITS),
            Plan::MarkDestroyed { group_id: 7 }
        );
        let foreign = Event::AfterGroupDestroyed {
            group_id: "@TGS#x".into(),
        };
        assert_eq!(
            plan(&s, &none, "Web", &foreign, LIMITS),
            Plan::Answer(Answer::ok())
        );
        assert_eq!(
            plan(&s, &none, "Web", &Event::Other, LIMITS),
            Plan::Answer(Answer::ok())
        );
    }

    #[test]
    fn answers_render_as_tencent_reads_them() {
        let text = |a: &Answer| serde_json::to_string(a).unwrap();
        assert_eq!(
            text(&Answer::ok()),
            r#"{"ActionStatus":"OK","ErrorCode":0,"ErrorInfo":""}"#
        );
        assert_eq!(
            text(&Answer::invite(vec!["x".into()], true, "no")),
            r#"{"ActionStatus":"OK","ErrorCode":0,"ErrorInfo":"no","RefusedMembers_Account":["x"]}"#
        );
        assert_eq!(
            text(&Answer::invite(vec!["x".into()], false, "no")),
            r#"{"ActionStatus":"OK","ErrorCode":1,"ErrorInfo":"no","RefusedMembers_Account":["x"]}"#
        );
        assert_eq!(Answer::failed().action_status, "FAIL");
        assert_eq!(Answer::failed().error_code, REFUSE);
    }
}
