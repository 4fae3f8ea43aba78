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
use crate::ids::{parse_group_id, MemberList};
use crate::store::Caller;

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
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RenameBody {
    group_name: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MembersBody {
    /// The seed document lists `group_id` among the parameters; accepted when it agrees
    /// with the path.
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
struct GroupRenamed {
    group_name: String,
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
    ids.normalize(limits.max_group_members_per_request, limits.max_id_chars)
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
        let name = group_name(&state, &body.group_name)?;
        let list = members(&state, &body.member_client_ids)?;
        audit.members = list.joined();
        let group = state.store.create_group(&caller, &name, &list).await?;
        audit.group_id = Some(group.group_id);
        Ok(json(
            StatusCode::CREATED,
            &GroupCreated {
                group_id: group.group_id,
                group_name: group.group_name,
                owner: group.owner,
                member_client_ids: group.members.joined(),
            },
        ))
    }
    .await;
    audit.finish(result)
}

pub async fn rename(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<GroupPath>, PathRejection>,
    headers: HeaderMap,
    LimitedBody(raw): LimitedBody,
) -> Result<Response, ApiError> {
    let mut audit = Audit::new(&caller, "group.rename");
    let result = async {
        let id = group_id(path)?;
        audit.group_id = Some(id);
        let body: RenameBody = body::parse(&headers, &raw)?;
        let name = group_name(&state, &body.group_name)?;
        state.store.rename_group(&caller, id, &name).await?;
        Ok(json(StatusCode::OK, &GroupRenamed { group_name: name }))
    }
    .await;
    audit.finish(result)
}

pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<GroupPath>, PathRejection>,
) -> Result<Response, ApiError> {
    let mut audit = Audit::new(&caller, "group.delete");
    let result = async {
        let id = group_id(path)?;
        audit.group_id = Some(id);
        state.store.delete_group(&caller, id).await?;
        Ok(StatusCode::NO_CONTENT.into_response())
    }
    .await;
    audit.finish(result)
}

pub async fn add_members(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<GroupPath>, PathRejection>,
    headers: HeaderMap,
    LimitedBody(raw): LimitedBody,
) -> Result<Response, ApiError> {
    let mut audit = Audit::new(&caller, "group.add_members");
    let result = async {
        let id = group_id(path)?;
        audit.group_id = Some(id);
        let list = members_body(&state, id, body::parse(&headers, &raw)?)?;
        audit.members = list.joined();
        state.store.add_members(&caller, id, &list).await?;
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

pub async fn remove_members(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<GroupPath>, PathRejection>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    LimitedBody(raw): LimitedBody,
) -> Result<Response, ApiError> {
    let mut audit = Audit::new(&caller, "group.remove_members");
    let result = async {
        let id = group_id(path)?;
        audit.group_id = Some(id);
        let list = members_body_or_query(&state, id, query, &headers, &raw)?;
        audit.members = list.joined();
        state.store.remove_members(&caller, id, &list).await?;
        Ok(StatusCode::NO_CONTENT.into_response())
    }
    .await;
    audit.finish(result)
}

pub async fn grant_admins(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<GroupPath>, PathRejection>,
    headers: HeaderMap,
    LimitedBody(raw): LimitedBody,
) -> Result<Response, ApiError> {
    let mut audit = Audit::new(&caller, "group.grant_admins");
    let result = async {
        let id = group_id(path)?;
        audit.group_id = Some(id);
        let list = members_body(&state, id, body::parse(&headers, &raw)?)?;
        audit.members = list.joined();
        state.store.set_admins(&caller, id, &list, true).await?;
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

pub async fn revoke_admins(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<GroupPath>, PathRejection>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    LimitedBody(raw): LimitedBody,
) -> Result<Response, ApiError> {
    let mut audit = Audit::new(&caller, "group.revoke_admins");
    let result = async {
        let id = group_id(path)?;
        audit.group_id = Some(id);
        let list = members_body_or_query(&state, id, query, &headers, &raw)?;
        audit.members = list.joined();
        state.store.set_admins(&caller, id, &list, false).await?;
        Ok(StatusCode::NO_CONTENT.into_response())
    }
    .await;
    audit.finish(result)
}
