//! The signature routes. Each validates its path, finds the app's master key and signs
//! exactly the values it returns, so the client sends back what was signed.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use serde::{Deserialize, Serialize};

use super::{json, path_params, AppState};
use crate::error::ApiError;
use crate::ids::{check_id, parse_group_id, MemberList};
use crate::signing::{self, Operation};
use crate::store::Caller;

/// Every signature route's parameters; axum has already URL-decoded them.
#[derive(Debug, Deserialize)]
pub struct SignaturePath {
    app_id: String,
    client_id: String,
    conversion_id: Option<String>,
    sorted_member_ids: Option<String>,
}

#[derive(Debug, Serialize)]
struct SignatureResponse<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    action: Option<&'static str>,
    app_id: &'a str,
    client_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    conversion_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sorted_member_ids: Option<String>,
    timestamp: String,
    nonce: String,
    signature: String,
}

#[derive(Clone, Copy)]
enum Kind {
    Login,
    Conversation,
    Invite,
    Kick,
}

/// Who may have this signature: a client signs only for itself, within its own app (the
/// app's backend for anyone in it); on a conversation that is one of our groups, invite
/// (and join) needs a member and kick needs the owner or a group admin.
async fn authorize(
    state: &AppState,
    caller: &Caller,
    p: &SignaturePath,
    kind: Kind,
    conversation_id: &str,
) -> Result<(), ApiError> {
    if caller.app_id != p.app_id || (!caller.app_admin && caller.client_id != p.client_id) {
        return Err(ApiError::Forbidden);
    }
    if caller.app_admin || !matches!(kind, Kind::Invite | Kind::Kick) {
        return Ok(());
    }
    // Group ids are the only conversation ids we know; any other id is a plain
    // conversation the service has no rule for.
    let Ok(group_id) = parse_group_id(conversation_id) else {
        return Ok(());
    };
    let Some(standing) = state
        .store
        .standing(&p.app_id, group_id, &p.client_id)
        .await?
    else {
        return Ok(());
    };
    let allowed = match kind {
        Kind::Invite => standing.member,
        _ => standing.owner || standing.admin,
    };
    if allowed {
        Ok(())
    } else {
        Err(ApiError::Forbidden)
    }
}

async fn sign(
    state: &AppState,
    caller: Caller,
    p: SignaturePath,
    kind: Kind,
) -> Result<Response, ApiError> {
    let limits = &state.config.limits;
    check_id("app_id", &p.app_id, limits.max_id_chars)?;
    check_id("client_id", &p.client_id, limits.max_id_chars)?;
    let members = MemberList::parse_joined(
        "sorted_member_ids",
        p.sorted_member_ids.as_deref().unwrap_or_default(),
        limits.max_signature_members,
        limits.max_id_chars,
    )?;
    let conversation_id = p.conversion_id.as_deref().unwrap_or_default();
    if matches!(kind, Kind::Invite | Kind::Kick) {
        check_id("conversion_id", conversation_id, limits.max_id_chars)?;
    }
    let op = match kind {
        Kind::Login => Operation::Login,
        Kind::Conversation => Operation::StartConversation { members: &members },
        Kind::Invite => Operation::Invite {
            conversation_id,
            members: &members,
        },
        Kind::Kick => Operation::Kick {
            conversation_id,
            members: &members,
        },
    };
    // Validate everything before any lookup: bad input never reaches DynamoDB.
    authorize(state, &caller, &p, kind, conversation_id).await?;
    let key = state.keys.master_key(&p.app_id).await?;
    let signed = signing::sign(
        &key,
        &p.app_id,
        &p.client_id,
        &op,
        state.config.timestamp_unit,
    );
    let body = SignatureResponse {
        action: op.action(),
        app_id: &p.app_id,
        client_id: &p.client_id,
        conversion_id: matches!(kind, Kind::Invite | Kind::Kick).then_some(conversation_id),
        sorted_member_ids: (!matches!(kind, Kind::Login)).then(|| members.joined()),
        timestamp: signed.timestamp,
        nonce: signed.nonce,
        signature: signed.signature,
    };
    let mut resp = json(StatusCode::OK, &body);
    // A signature is single-use material: no cache may keep or replay it.
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

pub async fn login(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<SignaturePath>, PathRejection>,
) -> Result<Response, ApiError> {
    sign(&state, caller, path_params(path)?, Kind::Login).await
}

pub async fn conversation(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<SignaturePath>, PathRejection>,
) -> Result<Response, ApiError> {
    sign(&state, caller, path_params(path)?, Kind::Conversation).await
}

pub async fn invite(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<SignaturePath>, PathRejection>,
) -> Result<Response, ApiError> {
    sign(&state, caller, path_params(path)?, Kind::Invite).await
}

pub async fn kick(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<SignaturePath>, PathRejection>,
) -> Result<Response, ApiError> {
    sign(&state, caller, path_params(path)?, Kind::Kick).await
}
