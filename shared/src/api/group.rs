//! The group routes: parse and validate here, write through [`crate::store::Store`].

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
    member_client_ids: String,
}

#[derive(Debug, Serialize)]
struct GroupRenamed {
    group_name: String,
}

#[derive(Debug, Serialize)]
struct MembersAdded {
    group_id: u64,
    member_client_ids: String,
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
    headers: HeaderMap,
    LimitedBody(raw): LimitedBody,
) -> Result<Response, ApiError> {
    let body: CreateBody = body::parse(&headers, &raw)?;
    let name = group_name(&state, &body.group_name)?;
    let members = members(&state, &body.member_client_ids)?;
    let group = state.store.create_group(&name, &members).await?;
    tracing::info!(
        audit = "group.create",
        group_id = group.group_id,
        members = members.len(),
        "group created"
    );
    Ok(json(
        StatusCode::CREATED,
        &GroupCreated {
            group_id: group.group_id,
            group_name: group.group_name,
            member_client_ids: group.members.joined(),
        },
    ))
}

pub async fn rename(
    State(state): State<AppState>,
    path: Result<Path<GroupPath>, PathRejection>,
    headers: HeaderMap,
    LimitedBody(raw): LimitedBody,
) -> Result<Response, ApiError> {
    let id = group_id(path)?;
    let body: RenameBody = body::parse(&headers, &raw)?;
    let name = group_name(&state, &body.group_name)?;
    state.store.rename_group(id, &name).await?;
    tracing::info!(audit = "group.rename", group_id = id, "group renamed");
    Ok(json(StatusCode::OK, &GroupRenamed { group_name: name }))
}

pub async fn delete(
    State(state): State<AppState>,
    path: Result<Path<GroupPath>, PathRejection>,
) -> Result<Response, ApiError> {
    let id = group_id(path)?;
    state.store.delete_group(id).await?;
    tracing::info!(audit = "group.delete", group_id = id, "group deleted");
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn add_members(
    State(state): State<AppState>,
    path: Result<Path<GroupPath>, PathRejection>,
    headers: HeaderMap,
    LimitedBody(raw): LimitedBody,
) -> Result<Response, ApiError> {
    let id = group_id(path)?;
    let list = members_body(&state, id, body::parse(&headers, &raw)?)?;
    state.store.add_members(id, &list).await?;
    tracing::info!(
        audit = "group.add_members",
        group_id = id,
        members = list.len(),
        "members added"
    );
    Ok(json(
        StatusCode::CREATED,
        &MembersAdded {
            group_id: id,
            member_client_ids: list.joined(),
        },
    ))
}

/// Members come in the body or, since some HTTP clients cannot send a body with DELETE,
/// in the query string.
pub async fn remove_members(
    State(state): State<AppState>,
    path: Result<Path<GroupPath>, PathRejection>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    LimitedBody(raw): LimitedBody,
) -> Result<Response, ApiError> {
    let id = group_id(path)?;
    let parsed: MembersBody = if raw.iter().all(u8::is_ascii_whitespace) {
        body::parse_form(query.unwrap_or_default().as_bytes())?
    } else {
        body::parse(&headers, &raw)?
    };
    let list = members_body(&state, id, parsed)?;
    state.store.remove_members(id, &list).await?;
    tracing::info!(
        audit = "group.remove_members",
        group_id = id,
        members = list.len(),
        "members removed"
    );
    Ok(StatusCode::NO_CONTENT.into_response())
}
