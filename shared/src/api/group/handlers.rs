//! The group route handlers, one per function; each validates its input, asks the
//! store (which enforces who may), and answers with a view.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::audit::Audit;
use super::input::*;
use super::paging::{cursor, paging, CURSOR_GROUP, CURSOR_MEMBER};
use super::precondition::{idempotency, if_match, IDEMPOTENT_REPLAYED};
use super::view::*;
use crate::api::error::ApiError;
use crate::api::extract::body::{self, LimitedBody};
use crate::api::extract::path_params;
use crate::api::respond::json;
use crate::api::state::AppState;
use crate::model::ids::{check_id, parse_group_id};
use crate::model::{Caller, GroupPatch, GroupSpec, DEFAULT_MAX_MEMBERS, MAX_MAX_MEMBERS};

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
            members: members(&state, &body.member_client_ids, Bound::Group)?,
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
        // The owner is a member too.
        let ids = spec.members.ids().iter().map(String::as_str);
        state
            .keys
            .reserved_ids(&caller.app_id)
            .await?
            .check_members(ids.chain([caller.client_id.as_str()]))?;
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
            let bound = match op {
                MembersOp::Add => Bound::Group,
                _ => Bound::Transaction,
            };
            members_body(&state, id, body::parse(&headers, raw)?, bound)?
        };
        audit.members = list.joined();
        let store = &state.store;
        match op {
            MembersOp::Add => {
                let ids = list.ids().iter().map(String::as_str);
                state
                    .keys
                    .reserved_ids(&caller.app_id)
                    .await?
                    .check_members(ids)?;
                store.add_members(&caller, id, &list).await?
            }
            MembersOp::Remove => store.remove_members(&caller, id, &list).await?,
            MembersOp::GrantAdmin => {
                let max = state.config.limits.max_admins;
                store.set_admins(&caller, id, &list, Some(max)).await?
            }
            MembersOp::RevokeAdmin => store.set_admins(&caller, id, &list, None).await?,
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

pub async fn get_group(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<GroupPath>, PathRejection>,
) -> Result<Response, ApiError> {
    let id = group_id(path)?;
    let mut meta = state.store.group_for(&caller, id).await?;
    // The mirror's state is for those who can act on it (reconcile, relink).
    if !meta.managed_by(&caller) {
        meta.sync.clear();
    }
    Ok(group_response(StatusCode::OK, meta))
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
            conversation_id: g.conversation_id,
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
