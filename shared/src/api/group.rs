//! The group routes: authenticate, parse and validate here; who may do what is enforced
//! by the store as a condition of each write ([`crate::store::Store`]). Every route
//! writes one audit line, whatever its outcome.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{json, path_params, AppState};
use crate::body::{self, LimitedBody, MemberIds};
use crate::error::ApiError;
use crate::ids::{check_id, parse_group_id, MemberList};
use crate::store::{
    Caller, GroupMeta, GroupPatch, GroupSpec, Idempotency, DEFAULT_MAX_MEMBERS, MAX_MAX_MEMBERS,
};

#[derive(Debug, Deserialize)]
pub struct GroupPath {
    group_id: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    group_name: String,
    #[serde(default)]
    member_client_ids: MemberIds,
    #[serde(default)]
    avatar_url: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    conversation_id: Option<String>,
    #[serde(default)]
    max_members: Option<Count>,
}

/// A whole number, as a JSON number or (from a form) a decimal string.
#[derive(Debug, Deserialize)]
#[serde(untagged, expecting = "a whole number")]
enum Count {
    Number(u64),
    Text(String),
}

impl Count {
    fn value(&self) -> Option<u64> {
        match self {
            Count::Number(n) => Some(*n),
            Count::Text(t) => t.trim().parse().ok(),
        }
    }
}

/// A partial update: only the fields given change.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateBody {
    #[serde(default)]
    group_name: Option<String>,
    #[serde(default)]
    avatar_url: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    conversation_id: Option<String>,
}

/// A group as every read and update returns it.
#[derive(Debug, Serialize)]
struct GroupView {
    group_id: u64,
    group_name: String,
    owner: String,
    admins: Vec<String>,
    member_count: u64,
    max_members: u64,
    conversation_id: Option<String>,
    avatar_url: Option<String>,
    description: Option<String>,
    created_at: String,
    updated_at: String,
}

/// The group with its version as a strong ETag.
fn group_response(status: StatusCode, meta: GroupMeta) -> Response {
    let etag = format!("\"{}\"", meta.version);
    let view = GroupView {
        group_id: meta.group_id,
        group_name: meta.group_name,
        owner: meta.owner,
        admins: meta.admins.into_iter().collect(),
        member_count: meta.member_count,
        max_members: meta.max_members,
        conversation_id: meta.conversation_id,
        avatar_url: meta.avatar_url,
        description: meta.description,
        created_at: meta.created_at,
        updated_at: meta.updated_at,
    };
    let mut resp = json(status, &view);
    if let Ok(v) = axum::http::HeaderValue::from_str(&etag) {
        resp.headers_mut().insert(axum::http::header::ETAG, v);
    }
    resp
}

/// An absolute http(s) URL with a host, as clients will load it; kept as given.
fn avatar_url(raw: &str) -> Result<String, ApiError> {
    let ok_scheme = raw.starts_with("https://") || raw.starts_with("http://");
    let parses = || url::Url::parse(raw).is_ok_and(|u| u.host_str().is_some_and(|h| !h.is_empty()));
    if !ok_scheme
        || raw.len() > 2048
        || raw.chars().any(|c| c.is_control() || c.is_whitespace())
        || !parses()
    {
        return Err(ApiError::bad(
            "avatar_url must be an absolute http(s) URL with a host, of at most 2048 bytes",
        ));
    }
    Ok(raw.to_owned())
}

fn description(raw: &str) -> Result<String, ApiError> {
    if raw.chars().count() > 1000
        || raw
            .chars()
            .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(ApiError::bad(
            "description must be at most 1000 characters, without control characters",
        ));
    }
    Ok(raw.to_owned())
}

/// Linking a conversation hands its group's rules to the conversation's signatures (who
/// may kick, who may read history), so only the app's backend may set or move it: a
/// client could otherwise claim a one-to-one chat or another group's conversation.
fn conversation_id(state: &AppState, caller: &Caller, raw: &str) -> Result<String, ApiError> {
    check_id("conversation_id", raw, state.config.limits.max_id_chars)?;
    if !caller.app_admin {
        return Err(ApiError::Forbidden);
    }
    Ok(raw.to_owned())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MembersBody {
    /// The API's first version lists `group_id` among the parameters (openapi.yaml keeps
    /// it); accepted when it agrees with the path.
    #[serde(default)]
    group_id: Option<Value>,
    member_client_ids: MemberIds,
}

#[derive(Debug, Serialize)]
struct GroupCreated {
    group_id: u64,
    group_name: String,
    owner: String,
    member_client_ids: String,
}

#[derive(Debug, Serialize)]
struct MembersChanged {
    group_id: u64,
    member_client_ids: String,
}

/// One audit line per mutating request: who, what, which group, which members, outcome.
/// It never holds a token, a key or a body.
struct Audit<'a> {
    caller: &'a Caller,
    action: &'static str,
    group_id: Option<u64>,
    members: String,
}

impl<'a> Audit<'a> {
    fn new(caller: &'a Caller, action: &'static str) -> Self {
        Self {
            caller,
            action,
            group_id: None,
            members: String::new(),
        }
    }

    fn finish(self, result: Result<Response, ApiError>) -> Result<Response, ApiError> {
        let status = match &result {
            Ok(resp) => resp.status(),
            Err(e) => e.status(),
        };
        let outcome = match status.as_u16() {
            200..=299 => "ok",
            403 => "denied",
            404 => "not_found",
            409 => "conflict",
            400..=499 => "rejected",
            _ => "error",
        };
        tracing::info!(
            audit = self.action,
            app_id = %self.caller.app_id,
            caller = %self.caller.client_id,
            app_admin = self.caller.app_admin,
            group_id = self.group_id,
            members = %self.members,
            outcome,
            status = status.as_u16(),
            "audit"
        );
        result
    }
}

fn group_name(state: &AppState, raw: &str) -> Result<String, ApiError> {
    let max = state.config.limits.max_name_chars;
    if raw.trim().is_empty() {
        return Err(ApiError::bad("group_name must not be empty"));
    }
    if raw.chars().count() > max {
        return Err(ApiError::bad(format!(
            "group_name is longer than {max} characters"
        )));
    }
    if raw.chars().any(char::is_control) {
        return Err(ApiError::bad(
            "group_name must not contain control characters",
        ));
    }
    Ok(raw.to_owned())
}

fn members(state: &AppState, ids: &MemberIds) -> Result<MemberList, ApiError> {
    let limits = &state.config.limits;
    let max = limits.max_group_members_per_request;
    let list = ids.normalize(usize::MAX, limits.max_id_chars)?;
    if list.len() > max {
        // Each request is one DynamoDB transaction, all or nothing; a larger list would
        // not fit in one.
        return Err(ApiError::bad(format!(
            "member_client_ids may list at most {max} client ids per request (each request is one atomic transaction); split the list"
        )));
    }
    Ok(list)
}

fn group_id(path: Result<Path<GroupPath>, PathRejection>) -> Result<u64, ApiError> {
    parse_group_id(&path_params(path)?.group_id)
}

/// Members from a body, checking a `group_id` repeated there against the path.
fn members_body(state: &AppState, id: u64, body: MembersBody) -> Result<MemberList, ApiError> {
    if let Some(given) = &body.group_id {
        let same = match given {
            Value::Number(n) => n.as_u64() == Some(id),
            Value::String(s) => parse_group_id(s).ok() == Some(id),
            _ => false,
        };
        if !same {
            return Err(ApiError::bad("group_id in the body differs from the path"));
        }
    }
    let list = members(state, &body.member_client_ids)?;
    if list.is_empty() {
        return Err(ApiError::bad(
            "member_client_ids must name at least one client",
        ));
    }
    Ok(list)
}

pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    LimitedBody(raw): LimitedBody,
) -> Result<Response, ApiError> {
    let mut audit = Audit::new(&caller, "group.create");
    let result = async {
        let body: CreateBody = body::parse(&headers, &raw)?;
        let max_members = match &body.max_members {
            None => DEFAULT_MAX_MEMBERS,
            Some(c) => c
                .value()
                .filter(|n| (1..=MAX_MAX_MEMBERS).contains(n))
                .ok_or_else(|| {
                    ApiError::bad(format!("max_members must be from 1 to {MAX_MAX_MEMBERS}"))
                })?,
        };
        let spec = GroupSpec {
            name: group_name(&state, &body.group_name)?,
            members: members(&state, &body.member_client_ids)?,
            avatar_url: body.avatar_url.as_deref().map(avatar_url).transpose()?,
            description: body.description.as_deref().map(description).transpose()?,
            conversation_id: body
                .conversation_id
                .as_deref()
                .map(|c| conversation_id(&state, &caller, c))
                .transpose()?,
            max_members,
        };
        audit.members = spec.members.joined();
        let with_owner =
            spec.members.len() as u64 + u64::from(!spec.members.ids().contains(&caller.client_id));
        if with_owner > max_members {
            return Err(ApiError::bad(format!(
                "{with_owner} members (with the owner) do not fit in max_members {max_members}"
            )));
        }
        let idempotency = idempotency(&headers, &spec)?;
        let created = state
            .store
            .create_group(&caller, &spec, idempotency.as_ref())
            .await?;
        let group = created.group;
        audit.group_id = Some(group.group_id);
        let mut resp = json(
            StatusCode::CREATED,
            &GroupCreated {
                group_id: group.group_id,
                group_name: group.group_name,
                owner: group.owner,
                member_client_ids: group.members.joined(),
            },
        );
        if created.replayed {
            resp.headers_mut().insert(
                IDEMPOTENT_REPLAYED,
                axum::http::HeaderValue::from_static("true"),
            );
        }
        Ok(resp)
    }
    .await;
    audit.finish(result)
}

pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<GroupPath>, PathRejection>,
    headers: HeaderMap,
    LimitedBody(raw): LimitedBody,
) -> Result<Response, ApiError> {
    let mut audit = Audit::new(&caller, "group.update");
    let result = async {
        let id = group_id(path)?;
        audit.group_id = Some(id);
        let body: UpdateBody = body::parse(&headers, &raw)?;
        let patch = GroupPatch {
            name: body
                .group_name
                .as_deref()
                .map(|n| group_name(&state, n))
                .transpose()?,
            avatar_url: body.avatar_url.as_deref().map(avatar_url).transpose()?,
            description: body.description.as_deref().map(description).transpose()?,
            conversation_id: body
                .conversation_id
                .as_deref()
                .map(|c| conversation_id(&state, &caller, c))
                .transpose()?,
        };
        if patch.name.is_none()
            && patch.avatar_url.is_none()
            && patch.description.is_none()
            && patch.conversation_id.is_none()
        {
            return Err(ApiError::bad("nothing to update"));
        }
        let versions = if_match(&headers)?;
        let meta = state
            .store
            .update_group(&caller, id, &patch, versions.as_deref())
            .await?;
        Ok(group_response(StatusCode::OK, meta))
    }
    .await;
    audit.finish(result)
}

pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<GroupPath>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let mut audit = Audit::new(&caller, "group.delete");
    let result = async {
        let id = group_id(path)?;
        audit.group_id = Some(id);
        let versions = if_match(&headers)?;
        state
            .store
            .delete_group(&caller, id, versions.as_deref())
            .await?;
        Ok(StatusCode::NO_CONTENT.into_response())
    }
    .await;
    audit.finish(result)
}

/// Members come in the body or, since some HTTP clients cannot send a body with DELETE,
/// in the query string.
fn members_body_or_query(
    state: &AppState,
    id: u64,
    query: Option<String>,
    headers: &HeaderMap,
    raw: &[u8],
) -> Result<MemberList, ApiError> {
    let parsed: MembersBody = if raw.iter().all(u8::is_ascii_whitespace) {
        body::parse_form(query.unwrap_or_default().as_bytes())?
    } else {
        body::parse(headers, raw)?
    };
    members_body(state, id, parsed)
}

/// What a member-list route does with its list.
#[derive(Clone, Copy)]
enum MembersOp {
    Add,
    Remove,
    GrantAdmin,
    RevokeAdmin,
}

impl MembersOp {
    fn audit(self) -> &'static str {
        match self {
            MembersOp::Add => "group.add_members",
            MembersOp::Remove => "group.remove_members",
            MembersOp::GrantAdmin => "group.grant_admins",
            MembersOp::RevokeAdmin => "group.revoke_admins",
        }
    }

    /// The DELETE routes: the list may come in the query string; they answer 204.
    fn removes(self) -> bool {
        matches!(self, MembersOp::Remove | MembersOp::RevokeAdmin)
    }
}

/// The four member-list routes: validate the list, make the change, answer 201 with
/// the list (POST) or 204 (DELETE). Who may do it is the store's condition.
async fn members_route(
    state: AppState,
    caller: Caller,
    path: Result<Path<GroupPath>, PathRejection>,
    query: Option<String>,
    headers: HeaderMap,
    raw: &[u8],
    op: MembersOp,
) -> Result<Response, ApiError> {
    let mut audit = Audit::new(&caller, op.audit());
    let result = async {
        let id = group_id(path)?;
        audit.group_id = Some(id);
        let list = if op.removes() {
            members_body_or_query(&state, id, query, &headers, raw)?
        } else {
            members_body(&state, id, body::parse(&headers, raw)?)?
        };
        audit.members = list.joined();
        let store = &state.store;
        match op {
            MembersOp::Add => store.add_members(&caller, id, &list).await?,
            MembersOp::Remove => store.remove_members(&caller, id, &list).await?,
            MembersOp::GrantAdmin => store.set_admins(&caller, id, &list, true).await?,
            MembersOp::RevokeAdmin => store.set_admins(&caller, id, &list, false).await?,
        }
        if op.removes() {
            return Ok(StatusCode::NO_CONTENT.into_response());
        }
        Ok(json(
            StatusCode::CREATED,
            &MembersChanged {
                group_id: id,
                member_client_ids: list.joined(),
            },
        ))
    }
    .await;
    audit.finish(result)
}

macro_rules! members_route {
    ($name:ident, $op:expr) => {
        pub async fn $name(
            State(state): State<AppState>,
            caller: Caller,
            path: Result<Path<GroupPath>, PathRejection>,
            RawQuery(query): RawQuery,
            headers: HeaderMap,
            LimitedBody(raw): LimitedBody,
        ) -> Result<Response, ApiError> {
            members_route(state, caller, path, query, headers, &raw, $op).await
        }
    };
}

members_route!(add_members, MembersOp::Add);
members_route!(remove_members, MembersOp::Remove);
members_route!(grant_admins, MembersOp::GrantAdmin);
members_route!(revoke_admins, MembersOp::RevokeAdmin);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OwnerBody {
    client_id: String,
}

/// The owner hands the group to a member, and becomes a plain member.
pub async fn transfer_owner(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<GroupPath>, PathRejection>,
    headers: HeaderMap,
    LimitedBody(raw): LimitedBody,
) -> Result<Response, ApiError> {
    let mut audit = Audit::new(&caller, "group.transfer_owner");
    let result = async {
        let id = group_id(path)?;
        audit.group_id = Some(id);
        let body: OwnerBody = body::parse(&headers, &raw)?;
        check_id(
            "client_id",
            &body.client_id,
            state.config.limits.max_id_chars,
        )?;
        audit.members = body.client_id.clone();
        let meta = state
            .store
            .transfer_owner(&caller, id, &body.client_id)
            .await?;
        Ok(group_response(StatusCode::OK, meta))
    }
    .await;
    audit.finish(result)
}

// --- preconditions ---------------------------------------------------------------------

const IDEMPOTENT_REPLAYED: axum::http::HeaderName =
    axum::http::HeaderName::from_static("idempotent-replayed");

/// `If-Match`: `None` when absent or `*` (the group as it is now); otherwise the
/// versions its ETags name. If-Match compares strongly (RFC 9110), so a weak or foreign
/// ETag matches no version and the write answers 412.
fn if_match(headers: &HeaderMap) -> Result<Option<Vec<u64>>, ApiError> {
    const MALFORMED: &str = "If-Match must be * or quoted ETags such as \"3\"";
    let mut versions = Vec::new();
    let mut present = false;
    for value in headers.get_all(axum::http::header::IF_MATCH) {
        present = true;
        let value = value.to_str().map_err(|_| ApiError::bad(MALFORMED))?;
        for tag in value.split(',').map(str::trim) {
            if tag == "*" {
                return Ok(None);
            }
            let (weak, quoted) = match tag.strip_prefix("W/") {
                Some(rest) => (true, rest),
                None => (false, tag),
            };
            let opaque = quoted
                .strip_prefix('"')
                .and_then(|q| q.strip_suffix('"'))
                .filter(|q| !q.contains('"'))
                .ok_or_else(|| ApiError::bad(MALFORMED))?;
            if let (false, Ok(v)) = (weak, opaque.parse::<u64>()) {
                versions.push(v);
            }
        }
    }
    if !present {
        return Ok(None);
    }
    versions.sort_unstable();
    versions.dedup();
    if versions.len() > 20 {
        return Err(ApiError::bad("If-Match may name at most 20 ETags"));
    }
    if versions.is_empty() {
        versions.push(0); // no group is ever at version 0: nothing matches
    }
    Ok(Some(versions))
}

/// `Idempotency-Key` on create, with a fingerprint of the request as validated (so the
/// same request in another member order or encoding is still the same request).
fn idempotency(headers: &HeaderMap, spec: &GroupSpec) -> Result<Option<Idempotency>, ApiError> {
    use sha2::{Digest, Sha256};
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .filter(|k| (1..=255).contains(&k.len()) && k.bytes().all(|b| (0x20..=0x7e).contains(&b)))
        .ok_or_else(|| {
            ApiError::bad("Idempotency-Key must be 1 to 255 printable ASCII characters")
        })?;
    let request = serde_json::json!([
        spec.name,
        spec.members.joined(),
        spec.avatar_url,
        spec.description,
        spec.conversation_id,
        spec.max_members,
    ]);
    let fingerprint = hex::encode(Sha256::digest(request.to_string().as_bytes()));
    Ok(Some(Idempotency {
        key: key.to_owned(),
        fingerprint,
    }))
}

// --- reads ---------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
pub struct UserPath {
    client_id: String,
}

/// `?limit=&cursor=`: limit 1..=100 (default 50); the cursor is the opaque
/// `next_cursor` of the previous page.
struct Paging {
    limit: u32,
    cursor: Option<String>,
}

const CURSOR_MEMBER: &str = "m:";
const CURSOR_GROUP: &str = "g:";

fn paging(query: Option<String>, kind: &str) -> Result<Paging, ApiError> {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(query.as_deref().unwrap_or_default())
            .map_err(|_| ApiError::bad("the query string is not valid url-encoded text"))?;
    let mut limit = 50;
    let mut cursor = None;
    for (k, v) in pairs {
        match k.as_str() {
            "limit" => {
                limit = v
                    .parse::<u32>()
                    .ok()
                    .filter(|n| (1..=100).contains(n))
                    .ok_or_else(|| ApiError::bad("limit must be a whole number from 1 to 100"))?
            }
            "cursor" => {
                let decoded = URL_SAFE_NO_PAD
                    .decode(v.as_bytes())
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .and_then(|c| c.strip_prefix(kind).map(str::to_owned))
                    .filter(|c| !c.is_empty())
                    .ok_or_else(|| ApiError::bad("cursor is not a cursor this listing returned"))?;
                cursor = Some(decoded);
            }
            _ => {}
        }
    }
    Ok(Paging { limit, cursor })
}

fn cursor(kind: &str, value: Option<String>) -> Option<String> {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    value.map(|v| URL_SAFE_NO_PAD.encode(format!("{kind}{v}")))
}

pub async fn get_group(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<GroupPath>, PathRejection>,
) -> Result<Response, ApiError> {
    let id = group_id(path)?;
    let meta = state.store.group_for(&caller, id).await?;
    Ok(group_response(StatusCode::OK, meta))
}

#[derive(Debug, Serialize)]
struct MemberView {
    client_id: String,
    role: &'static str,
    joined_at: String,
}

pub async fn list_members(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<GroupPath>, PathRejection>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let id = group_id(path)?;
    let page = paging(query, CURSOR_MEMBER)?;
    // A cursor is a member id; one no member could have would make DynamoDB refuse the
    // start key (over 1 KiB it is a ValidationException), so it is refused here.
    if let Some(after) = &page.cursor {
        check_id("cursor", after, state.config.limits.max_id_chars)
            .map_err(|_| ApiError::bad("cursor is not a cursor this listing returned"))?;
    }
    let (meta, members) = state
        .store
        .members_page(&caller, id, page.limit, page.cursor.as_deref())
        .await?;
    let list: Vec<MemberView> = members
        .items
        .into_iter()
        .map(|(client_id, joined_at)| MemberView {
            role: meta.role_of(&client_id),
            client_id,
            joined_at,
        })
        .collect();
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({"members": list, "next_cursor": cursor(CURSOR_MEMBER, members.next)}),
    ))
}

#[derive(Debug, Serialize)]
struct UserGroupView {
    group_id: u64,
    group_name: String,
    role: &'static str,
    member_count: u64,
}

pub async fn list_user_groups(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<UserPath>, PathRejection>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let client_id = path_params(path)?.client_id;
    check_id("client_id", &client_id, state.config.limits.max_id_chars)?;
    if !caller.app_admin && caller.client_id != client_id {
        return Err(ApiError::Forbidden);
    }
    let page = paging(query, CURSOR_GROUP)?;
    let after = page
        .cursor
        .map(|c| parse_group_id(&c))
        .transpose()
        .map_err(|_| ApiError::bad("cursor is not a cursor this listing returned"))?;
    let groups = state
        .store
        .client_groups(&caller, &client_id, page.limit, after)
        .await?;
    let list: Vec<UserGroupView> = groups
        .items
        .into_iter()
        .map(|g| UserGroupView {
            group_id: g.group_id,
            role: g.role_of(&client_id),
            group_name: g.group_name,
            member_count: g.member_count,
        })
        .collect();
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({
            "groups": list,
            "next_cursor": cursor(CURSOR_GROUP, groups.next.map(|g| g.to_string())),
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with(name: &'static str, values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(name, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn avatar_urls_are_absolute_http_urls_with_a_host() {
        for ok in [
            "https://cdn.example.com/a.png",
            "http://127.0.0.1:8080/x?y=1#z",
        ] {
            assert_eq!(avatar_url(ok).unwrap(), ok);
        }
        let long = format!("https://e.com/{}", "a".repeat(2048));
        for bad in [
            "http://[",
            "https://",
            "ftp://e.com/a.png",
            "/relative.png",
            "https://e.com/a b.png",
            long.as_str(),
        ] {
            assert!(avatar_url(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn if_match_reads_strong_etags_star_and_lists() {
        assert_eq!(if_match(&HeaderMap::new()).unwrap(), None);
        assert_eq!(if_match(&with("if-match", &["*"])).unwrap(), None);
        assert_eq!(
            if_match(&with("if-match", &["\"7\""])).unwrap(),
            Some(vec![7])
        );
        assert_eq!(
            if_match(&with("if-match", &["\"9\", \"3\"", "\"3\""])).unwrap(),
            Some(vec![3, 9])
        );
        // Weak and foreign tags match nothing: version 0, which no group has.
        for never in ["W/\"7\"", "\"abc\"", "\"\""] {
            assert_eq!(
                if_match(&with("if-match", &[never])).unwrap(),
                Some(vec![0])
            );
        }
        for bad in ["7", "\"7", "W/7", "\"a\"b\"", ""] {
            assert_eq!(
                if_match(&with("if-match", &[bad])).unwrap_err().status(),
                StatusCode::BAD_REQUEST,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn idempotency_keys_are_bounded_and_fingerprints_follow_the_request() {
        let spec = |name: &str| GroupSpec {
            name: name.into(),
            max_members: DEFAULT_MAX_MEMBERS,
            ..GroupSpec::default()
        };
        assert!(idempotency(&HeaderMap::new(), &spec("g"))
            .unwrap()
            .is_none());
        let key = |k: &str| with("idempotency-key", &[k]);
        let a = idempotency(&key("k-1"), &spec("g")).unwrap().unwrap();
        let b = idempotency(&key("k-1"), &spec("g")).unwrap().unwrap();
        let c = idempotency(&key("k-1"), &spec("h")).unwrap().unwrap();
        assert_eq!(a.key, "k-1");
        assert_eq!(a.fingerprint, b.fingerprint);
        assert_ne!(a.fingerprint, c.fingerprint);
        assert_eq!(a.fingerprint.len(), 64);
        for bad in [String::new(), "k".repeat(256), "tab\there".into()] {
            assert!(idempotency(&key(&bad), &spec("g")).is_err(), "{bad:?}");
        }
        assert!(idempotency(&key(&"k".repeat(255)), &spec("g")).is_ok());
    }
}
