//! `group_open_http_svc`: the group commands of the notes' table, with their limits
//! (counted in UTF-8 bytes) and the group layer's codes.
//!
//! Chosen where the notes are silent (the strict reading, so that a client that works
//! here works against Tencent):
//! - every account a call names must exist (10019), and the whole call fails; that
//!   includes `delete_group_member`, where removing a member who is not there (but
//!   exists) is OK;
//! - the owner cannot be removed by `delete_group_member` (10004: the call asks what
//!   cannot be done; change the owner or destroy the group instead), nor have its role
//!   changed by `modify_group_member_info` (10004);
//! - a new owner, or a member whose role changes, must be a member (10004);
//! - a create whose members (the owner included) exceed `MaxMemberCount` fails with
//!   10038, an add that would overfill the group with 10014, and nothing is added;
//! - `add_group_member` answers `Result` 0 for a member the app's "before invite"
//!   callback refused ([`crate::tencent::TencentStandIn::refuse_joins_of`]), 1 added, 2
//!   already a member (3, awaiting confirmation, never: every invite is accepted here);
//! - `get_group_info` always answers each group's `MemberList` with roles (Tencent's
//!   answer without a `ResponseFilter`); a `ResponseFilter` is accepted and does not
//!   narrow the answer, so a client must not rely on a field being left out;
//! - `get_group_member_info` without `Limit` answers 100 members (the most it may ask
//!   for), so that a client pages;
//! - Types are `Private`, `Public`, `ChatRoom`, `AVChatRoom`, `Community`; the SDK's
//!   names `Work` and `Meeting` are refused (*unconfirmed* in the notes whether REST
//!   takes them);
//! - a destroyed group's id may be created again (as a new group);
//! - `Introduction` at most 240 bytes and `FaceUrl` 100, `Notification` 300 (Tencent's
//!   `create_group` page; not in the notes).

use std::collections::{BTreeMap, BTreeSet};

use rand::distr::{Alphanumeric, SampleString};
use serde_json::{json, Map, Value};

use super::body::{is_user_id, Body, Fail};
use super::rest::Answer;
use super::store::{Role, Stored, TencentGroup};
use super::Inner;

pub(super) const BAD_PARAMETER: u32 = 10004;
pub(super) const TOO_MANY_ACCOUNTS: u32 = 10005;
pub(super) const GROUP_GONE: u32 = 10010;
pub(super) const GROUP_FULL: u32 = 10014;
pub(super) const NO_SUCH_USER: u32 = 10019;
pub(super) const ID_TAKEN: u32 = 10021;
pub(super) const ID_YOURS: u32 = 10025;
pub(super) const MEMBER_LIMIT: u32 = 10038;

const MAX_NAME_BYTES: usize = 30;
const MAX_GROUP_ID_BYTES: usize = 48;
const MAX_INTRODUCTION_BYTES: usize = 240;
const MAX_NOTIFICATION_BYTES: usize = 300;
const MAX_FACE_URL_BYTES: usize = 100;
const MAX_CREATE_MEMBERS: usize = 100;
const MAX_ADD_MEMBERS: usize = 300;
const MAX_DELETE_MEMBERS: usize = 100;
const MAX_INFO_GROUPS: usize = 50;
const MAX_MEMBER_PAGE: u64 = 100;
/// Tencent's own ids for groups made without `GroupId`.
const GENERATED_PREFIX: &str = "@TGS#";
const APPLY_JOIN_OPTIONS: [&str; 3] = ["FreeAccess", "NeedPermission", "DisableApply"];

/// The types, each with its most members (the stand-in's reading of the Pro edition's
/// limits, *unconfirmed*) and its `ApplyJoinOption` when the create gives none.
const TYPES: [(&str, u32, &str); 5] = [
    ("Private", 200, "DisableApply"),
    ("Public", 2000, "NeedPermission"),
    ("ChatRoom", 6000, "FreeAccess"),
    ("AVChatRoom", u32::MAX, "FreeAccess"),
    ("Community", 100_000, "NeedPermission"),
];

pub(super) fn handle(
    inner: &mut Inner,
    command: &str,
    fields: &Map<String, Value>,
) -> Result<Answer, Fail> {
    match command {
        "create_group" => create(inner, fields),
        "add_group_member" => add_members(inner, fields),
        "delete_group_member" => delete_members(inner, fields),
        "modify_group_base_info" => modify_base_info(inner, fields),
        "change_group_owner" => change_owner(inner, fields),
        "modify_group_member_info" => modify_member(inner, fields),
        "destroy_group" => destroy(inner, fields),
        "get_group_info" => info(inner, fields),
        "get_group_member_info" => member_info(inner, fields),
        "send_group_system_notification" => notify(inner, fields),
        other => unreachable!("{other} is not a group command"),
    }
}

fn body<'a>(fields: &'a Map<String, Value>, known: &[&str]) -> Result<Body<'a>, Fail> {
    Body::new(fields, BAD_PARAMETER, known)
}

/// Each of `ids` a valid user id that exists; the first that does not fails the call.
fn accounts_exist<'a>(
    inner: &Inner,
    body: &Body,
    ids: impl IntoIterator<Item = &'a str>,
) -> Result<(), Fail> {
    for id in ids {
        if !is_user_id(id) {
            return Err(body.bad(format!(
                "{id:?} is not a user id (printable ASCII, 1 to 32 bytes)"
            )));
        }
        if !inner.store.accounts.contains(id) {
            return Err(Fail::new(
                NO_SUCH_USER,
                format!("{id} does not exist: import it first"),
            ));
        }
    }
    Ok(())
}

/// The live group a call names by `GroupId`.
fn group_of<'a>(inner: &'a mut Inner, body: &Body) -> Result<&'a mut Stored, Fail> {
    let id = body.required_string("GroupId")?;
    inner.store.groups.get_mut(id).ok_or_else(|| {
        Fail::new(
            GROUP_GONE,
            format!("group {id} does not exist or was destroyed"),
        )
    })
}

fn silence(body: &Body) -> Result<(), Fail> {
    body.integer("Silence", 0, 1).map(drop)
}

fn create(inner: &mut Inner, fields: &Map<String, Value>) -> Result<Answer, Fail> {
    let body = body(
        fields,
        &[
            "Type",
            "Name",
            "GroupId",
            "Owner_Account",
            "MemberList",
            "Introduction",
            "Notification",
            "FaceUrl",
            "MaxMemberCount",
            "ApplyJoinOption",
            "AppDefinedData",
        ],
    )?;
    let group_type = body.required_string("Type")?;
    let &(_, cap, default_apply) = TYPES
        .iter()
        .find(|(t, _, _)| *t == group_type)
        .ok_or_else(|| body.bad(format!("Type {group_type:?} is not one of Private, Public, ChatRoom, AVChatRoom, Community")))?;
    let name = body
        .bounded_string("Name", MAX_NAME_BYTES)?
        .ok_or_else(|| body.bad("Name is required"))?;
    if name.is_empty() {
        return Err(body.bad("Name must not be empty"));
    }
    let id = match body.string("GroupId")? {
        Some(id) => {
            check_group_id(&body, id)?;
            id.to_string()
        }
        None => format!(
            "{GENERATED_PREFIX}2{}",
            Alphanumeric.sample_string(&mut rand::rng(), 9)
        ),
    };
    let owner = body.string("Owner_Account")?;
    let introduction = body.bounded_string("Introduction", MAX_INTRODUCTION_BYTES)?;
    let notification = body.bounded_string("Notification", MAX_NOTIFICATION_BYTES)?;
    let face_url = body.bounded_string("FaceUrl", MAX_FACE_URL_BYTES)?;
    let max = body
        .integer("MaxMemberCount", 1, u64::from(cap))?
        .map_or(cap, |n| n as u32);
    let apply = apply_join_option(&body)?.unwrap_or(default_apply);
    let app_defined = match body.get("AppDefinedData") {
        None => Value::Null,
        Some(data @ Value::Array(items)) if items.iter().all(is_key_value) => data.clone(),
        Some(_) => {
            return Err(body.bad("AppDefinedData must be an array of {\"Key\", \"Value\"} objects"))
        }
    };
    let mut members = Vec::new();
    for item in body
        .array("MemberList", MAX_CREATE_MEMBERS, TOO_MANY_ACCOUNTS)?
        .unwrap_or(&[])
    {
        members.push(create_member(&body, item)?);
    }
    accounts_exist(
        inner,
        &body,
        owner.into_iter().chain(members.iter().map(|(m, _)| *m)),
    )?;
    if let Some(existing) = inner.store.groups.get(&id) {
        return Err(if existing.group.created_by_admin {
            Fail::new(
                ID_YOURS,
                format!("group {id} exists: this app's admin created it"),
            )
        } else {
            Fail::new(ID_TAKEN, format!("group id {id} is used by someone else"))
        });
    }
    // The owner joins first; a member listed twice (or the owner listed) joins once.
    let mut roles = BTreeMap::new();
    let mut join_order = Vec::new();
    for (member, role) in owner.map(|o| (o, Role::Owner)).into_iter().chain(members) {
        if !roles.contains_key(member) {
            roles.insert(member.to_string(), role);
            join_order.push(member);
        }
    }
    if roles.len() as u64 > u64::from(max) {
        return Err(Fail::new(
            MEMBER_LIMIT,
            format!(
                "{} members are over the group's MaxMemberCount {max}",
                roles.len()
            ),
        ));
    }
    inner.store.insert(
        TencentGroup {
            id: id.clone(),
            group_type: group_type.to_string(),
            name: name.to_string(),
            owner: owner.map(str::to_string),
            members: roles,
            apply_join_option: apply.to_string(),
            introduction: introduction.unwrap_or("").to_string(),
            notification: notification.unwrap_or("").to_string(),
            face_url: face_url.unwrap_or("").to_string(),
            max_member_count: max,
            app_defined_data: app_defined,
            created_by_admin: true,
        },
        &join_order,
    );
    let mut answer = Map::new();
    answer.insert("GroupId".into(), json!(id));
    Ok(Answer::ok(answer, true))
}

/// A custom group id (notes): printable ASCII, 1 to 48 bytes, not starting with `@TGS#`.
pub(super) fn check_group_id(body: &Body, id: &str) -> Result<(), Fail> {
    if id.is_empty() || id.len() > MAX_GROUP_ID_BYTES {
        return Err(body.bad(format!("GroupId must be 1 to {MAX_GROUP_ID_BYTES} bytes")));
    }
    if !id.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
        return Err(body.bad("GroupId must be printable ASCII"));
    }
    if id.starts_with(GENERATED_PREFIX) {
        return Err(body.bad(format!(
            "a custom GroupId must not start with {GENERATED_PREFIX}"
        )));
    }
    Ok(())
}

fn is_key_value(item: &Value) -> bool {
    item.as_object().is_some_and(|o| {
        o.len() == 2
            && o.get("Key").is_some_and(Value::is_string)
            && o.get("Value").is_some_and(Value::is_string)
    })
}

fn apply_join_option<'a>(body: &Body<'a>) -> Result<Option<&'a str>, Fail> {
    match body.string("ApplyJoinOption")? {
        Some(option) if !APPLY_JOIN_OPTIONS.contains(&option) => Err(body.bad(format!(
            "ApplyJoinOption must be one of {}",
            APPLY_JOIN_OPTIONS.join(", ")
        ))),
        other => Ok(other),
    }
}

/// `{"Member_Account", "Role"?: "Admin"}`.
fn create_member<'a>(body: &Body, item: &'a Value) -> Result<(&'a str, Role), Fail> {
    let bad = || body.bad("MemberList must be objects {\"Member_Account\", \"Role\"?: \"Admin\"}");
    let object = item.as_object().ok_or_else(bad)?;
    if object.keys().any(|k| k != "Member_Account" && k != "Role") {
        return Err(bad());
    }
    let member = object
        .get("Member_Account")
        .and_then(Value::as_str)
        .ok_or_else(bad)?;
    let role = match object.get("Role") {
        None => Role::Member,
        Some(Value::String(role)) if role == "Admin" => Role::Admin,
        Some(_) => return Err(bad()),
    };
    Ok((member, role))
}

fn add_members(inner: &mut Inner, fields: &Map<String, Value>) -> Result<Answer, Fail> {
    let body = body(fields, &["GroupId", "MemberList", "Silence"])?;
    silence(&body)?;
    let list = body.required_array("MemberList", MAX_ADD_MEMBERS, TOO_MANY_ACCOUNTS)?;
    let mut members = Vec::with_capacity(list.len());
    for item in list {
        let member = item
            .as_object()
            .filter(|o| o.len() == 1)
            .and_then(|o| o.get("Member_Account"))
            .and_then(Value::as_str)
            .ok_or_else(|| body.bad("MemberList must be objects {\"Member_Account\"}"))?;
        members.push(member);
    }
    let group_id = group_of(inner, &body)?.group.id.clone();
    accounts_exist(inner, &body, members.iter().copied())?;
    let group = &inner.store.groups[&group_id].group;
    let joining: BTreeSet<&str> = members
        .iter()
        .copied()
        .filter(|m| !group.members.contains_key(*m) && !inner.refuses_join(m))
        .collect();
    if (group.members.len() + joining.len()) as u64 > u64::from(group.max_member_count) {
        return Err(Fail::new(
            GROUP_FULL,
            format!(
                "group {group_id} is full ({} of {})",
                group.members.len(),
                group.max_member_count
            ),
        ));
    }
    let mut results = Vec::with_capacity(members.len());
    let mut applied = false;
    for member in members {
        let result = if inner.refuses_join(member) {
            0
        } else if inner.store.add_member(&group_id, member, Role::Member) {
            applied = true;
            1
        } else {
            2
        };
        results.push(json!({"Member_Account": member, "Result": result}));
    }
    let mut answer = Map::new();
    answer.insert("MemberList".into(), Value::Array(results));
    Ok(Answer::ok(answer, applied))
}

fn delete_members(inner: &mut Inner, fields: &Map<String, Value>) -> Result<Answer, Fail> {
    let body = body(
        fields,
        &["GroupId", "MemberToDel_Account", "Silence", "Reason"],
    )?;
    silence(&body)?;
    body.string("Reason")?;
    let members = body
        .strings("MemberToDel_Account", MAX_DELETE_MEMBERS, TOO_MANY_ACCOUNTS)?
        .filter(|m| !m.is_empty())
        .ok_or_else(|| body.bad("MemberToDel_Account is required, with at least one account"))?;
    let stored = group_of(inner, &body)?;
    if let Some(owner) = stored.group.owner.as_deref() {
        if members.contains(&owner) {
            return Err(body.bad(format!(
                "{owner} owns the group and cannot be removed: change the owner first"
            )));
        }
    }
    let group_id = stored.group.id.clone();
    accounts_exist(inner, &body, members.iter().copied())?;
    let mut applied = false;
    for member in members {
        applied |= inner.store.remove_member(&group_id, member);
    }
    Ok(Answer::ok(Map::new(), applied))
}

fn modify_base_info(inner: &mut Inner, fields: &Map<String, Value>) -> Result<Answer, Fail> {
    let body = body(
        fields,
        &[
            "GroupId",
            "Name",
            "Introduction",
            "Notification",
            "FaceUrl",
            "MaxMemberNum",
            "ApplyJoinOption",
        ],
    )?;
    let name = body.bounded_string("Name", MAX_NAME_BYTES)?;
    if name == Some("") {
        return Err(body.bad("Name must not be empty"));
    }
    let introduction = body.bounded_string("Introduction", MAX_INTRODUCTION_BYTES)?;
    let notification = body.bounded_string("Notification", MAX_NOTIFICATION_BYTES)?;
    let face_url = body.bounded_string("FaceUrl", MAX_FACE_URL_BYTES)?;
    let apply = apply_join_option(&body)?;
    let max = body.integer("MaxMemberNum", 1, u64::from(u32::MAX))?;
    let group = &mut group_of(inner, &body)?.group;
    let before = group.clone();
    if let Some(max) = max {
        let cap = TYPES
            .iter()
            .find(|(t, _, _)| *t == group.group_type)
            .map_or(u32::MAX, |t| t.1);
        if max > u64::from(cap) || max < group.members.len() as u64 {
            return Err(body.bad(format!(
                "MaxMemberNum must be from the group's {} members to its type's {cap}",
                group.members.len()
            )));
        }
        group.max_member_count = max as u32;
    }
    let set = |field: &mut String, value: Option<&str>| {
        if let Some(value) = value {
            *field = value.to_string();
        }
    };
    set(&mut group.name, name);
    set(&mut group.introduction, introduction);
    set(&mut group.notification, notification);
    set(&mut group.face_url, face_url);
    set(&mut group.apply_join_option, apply);
    let applied = *group != before;
    Ok(Answer::ok(Map::new(), applied))
}

fn change_owner(inner: &mut Inner, fields: &Map<String, Value>) -> Result<Answer, Fail> {
    let body = body(fields, &["GroupId", "NewOwner_Account"])?;
    let new_owner = body.required_string("NewOwner_Account")?;
    group_of(inner, &body)?; // a gone group (10010) before an unknown account (10019)
    accounts_exist(inner, &body, [new_owner])?;
    let group = &mut group_of(inner, &body)?.group;
    if !group.members.contains_key(new_owner) {
        return Err(body.bad(format!(
            "{new_owner} is not a member: the new owner must be one"
        )));
    }
    if group.owner.as_deref() == Some(new_owner) {
        return Ok(Answer::ok(Map::new(), false));
    }
    if let Some(old) = group.owner.take() {
        group.members.insert(old, Role::Member);
    }
    group.members.insert(new_owner.to_string(), Role::Owner);
    group.owner = Some(new_owner.to_string());
    Ok(Answer::ok(Map::new(), true))
}

fn modify_member(inner: &mut Inner, fields: &Map<String, Value>) -> Result<Answer, Fail> {
    let body = body(fields, &["GroupId", "Member_Account", "Role"])?;
    let member = body.required_string("Member_Account")?;
    let role = match body.required_string("Role")? {
        "Admin" => Role::Admin,
        "Member" => Role::Member,
        _ => return Err(body.bad("Role must be Admin or Member")),
    };
    group_of(inner, &body)?; // a gone group (10010) before an unknown account (10019)
    accounts_exist(inner, &body, [member])?;
    let group = &mut group_of(inner, &body)?.group;
    match group.members.get_mut(member) {
        None => Err(body.bad(format!("{member} is not a member"))),
        Some(Role::Owner) => {
            Err(body.bad(format!("{member} owns the group: its role cannot change")))
        }
        Some(current) => {
            let applied = *current != role;
            *current = role;
            Ok(Answer::ok(Map::new(), applied))
        }
    }
}

fn destroy(inner: &mut Inner, fields: &Map<String, Value>) -> Result<Answer, Fail> {
    let body = body(fields, &["GroupId"])?;
    let id = group_of(inner, &body)?.group.id.clone();
    inner.store.destroy(&id);
    Ok(Answer::ok(Map::new(), true))
}

fn info(inner: &mut Inner, fields: &Map<String, Value>) -> Result<Answer, Fail> {
    let body = body(fields, &["GroupIdList", "ResponseFilter"])?;
    if body.get("ResponseFilter").is_some_and(|f| !f.is_object()) {
        return Err(body.bad("ResponseFilter must be an object"));
    }
    let ids = body
        .strings("GroupIdList", MAX_INFO_GROUPS, BAD_PARAMETER)?
        .filter(|ids| !ids.is_empty())
        .ok_or_else(|| body.bad("GroupIdList is required, with 1 to 50 group ids"))?;
    let infos: Vec<Value> = ids
        .into_iter()
        .map(|id| {
            if let Some(code) = inner.faults.poisoned(id) {
                return json!({"GroupId": id, "ErrorCode": code, "ErrorInfo": "injected by the stand-in for this group"});
            }
            let (Some(stored), Some(members)) = (inner.store.groups.get(id), inner.store.members_in_order(id)) else {
                return json!({"GroupId": id, "ErrorCode": GROUP_GONE, "ErrorInfo": format!("group {id} does not exist or was destroyed")});
            };
            let g = &stored.group;
            let mut info = json!({
                "GroupId": id, "ErrorCode": 0, "ErrorInfo": "",
                "Type": g.group_type, "Name": g.name, "Introduction": g.introduction,
                "Notification": g.notification, "FaceUrl": g.face_url,
                "Owner_Account": g.owner.as_deref().unwrap_or(""),
                "ApplyJoinOption": g.apply_join_option, "MemberNum": g.members.len(),
                "MaxMemberNum": g.max_member_count,
                "MemberList": members_json(&members),
            });
            if !g.app_defined_data.is_null() {
                info["AppDefinedData"] = g.app_defined_data.clone();
            }
            info
        })
        .collect();
    let mut answer = Map::new();
    answer.insert("GroupInfo".into(), Value::Array(infos));
    Ok(Answer::ok(answer, false))
}

fn members_json(members: &[(String, Role)]) -> Value {
    members
        .iter()
        .map(|(m, r)| json!({"Member_Account": m, "Role": r.as_str()}))
        .collect()
}

fn member_info(inner: &mut Inner, fields: &Map<String, Value>) -> Result<Answer, Fail> {
    let body = body(fields, &["GroupId", "Limit", "Offset"])?;
    let limit = body
        .integer("Limit", 1, MAX_MEMBER_PAGE)?
        .unwrap_or(MAX_MEMBER_PAGE) as usize;
    let offset = body.integer("Offset", 0, u64::from(u32::MAX))?.unwrap_or(0) as usize;
    let id = group_of(inner, &body)?.group.id.clone();
    let members = inner.store.members_in_order(&id).expect("a live group");
    let page: Vec<(String, Role)> = members.iter().skip(offset).take(limit).cloned().collect();
    let mut answer = Map::new();
    answer.insert("MemberNum".into(), json!(members.len()));
    answer.insert("MemberList".into(), members_json(&page));
    Ok(Answer::ok(answer, false))
}

fn notify(inner: &mut Inner, fields: &Map<String, Value>) -> Result<Answer, Fail> {
    let body = body(fields, &["GroupId", "Content", "ToMembers_Account"])?;
    let content = body.required_string("Content")?;
    if content.is_empty() {
        return Err(body.bad("Content must not be empty"));
    }
    let to = body.strings("ToMembers_Account", MAX_ADD_MEMBERS, TOO_MANY_ACCOUNTS)?;
    let id = group_of(inner, &body)?.group.id.clone();
    if let Some(to) = &to {
        accounts_exist(inner, &body, to.iter().copied())?;
    }
    let to = to
        .filter(|to| !to.is_empty())
        .map(|to| to.into_iter().map(str::to_string).collect());
    inner
        .store
        .notifications
        .entry(id)
        .or_default()
        .push(super::store::Notification {
            content: content.to_string(),
            to,
        });
    Ok(Answer::ok(Map::new(), true))
}
