//! The signature routes. Each validates its path, checks that the caller may have the
//! signature, finds the app's master key and signs exactly the values it returns, so the
//! client sends back what was signed.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use serde::{Deserialize, Serialize};

use super::{json, path_params, AppState};
use crate::error::ApiError;
use crate::ids::{check_id, parse_group_id, MemberList};
use crate::signing::{self, Operation};
use crate::store::{Caller, Standing};

/// Every signature route's parameters; axum has already URL-decoded them. The seed
/// routes name the conversation `conversion_id`, the newer ones `conversation_id`.
#[derive(Debug, Deserialize)]
pub struct SignaturePath {
    app_id: String,
    client_id: String,
    conversion_id: Option<String>,
    conversation_id: Option<String>,
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
    conversation_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sorted_member_ids: Option<String>,
    timestamp: String,
    nonce: String,
    signature: String,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Login,
    Conversation,
    Invite,
    Kick,
    History,
    ClientBlock(bool),
    ConversationBlock(bool),
}

impl Kind {
    /// What a client needs to be in a group to have this signature on the group's
    /// conversation; `None`: no group rule applies.
    fn group_rule(self) -> Option<fn(&Standing) -> bool> {
        match self {
            Kind::Invite | Kind::History => Some(|s| s.member),
            Kind::Kick | Kind::ConversationBlock(_) => Some(|s| s.owner || s.admin),
            Kind::Login | Kind::Conversation | Kind::ClientBlock(_) => None,
        }
    }

    fn has_members(self) -> bool {
        matches!(
            self,
            Kind::Conversation | Kind::Invite | Kind::Kick | Kind::ConversationBlock(_)
        )
    }
}

/// Who may have this signature: a client signs only for itself, within its own app (the
/// app's backend for anyone in it); on a conversation that is one of the app's groups,
/// the group's roles apply (see [`Kind::group_rule`]).
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
    let Some(rule) = kind.group_rule().filter(|_| !caller.app_admin) else {
        return Ok(());
    };
    // A conversation is a group's when a group links it (its `conversation_id`), or,
    // for groups used without a conversation of their own, when it is the group id.
    // Any other conversation is one the service has no rule for.
    let linked = state
        .store
        .conversation_group(&p.app_id, conversation_id)
        .await?;
    let Some(group_id) = linked.or_else(|| parse_group_id(conversation_id).ok()) else {
        return Ok(());
    };
    match state
        .store
        .standing(&p.app_id, group_id, &p.client_id)
        .await?
    {
        Some(standing) if !rule(&standing) => Err(ApiError::Forbidden),
        _ => Ok(()),
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
    let (field, conversation_id) = match (&p.conversion_id, &p.conversation_id) {
        (Some(c), _) => ("conversion_id", c.as_str()),
        (None, Some(c)) => ("conversation_id", c.as_str()),
        (None, None) => ("conversation_id", ""),
    };
    let needs_conversation = !matches!(kind, Kind::Login | Kind::Conversation);
    if needs_conversation {
        check_id(field, conversation_id, limits.max_id_chars)?;
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
        Kind::History => Operation::History { conversation_id },
        Kind::ClientBlock(block) => Operation::ClientBlock {
            conversation_id,
            block,
        },
        Kind::ConversationBlock(block) => Operation::ConversationBlock {
            conversation_id,
            members: &members,
            block,
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
    let conversation = needs_conversation.then_some(conversation_id);
    let body = SignatureResponse {
        action: op.response_action(),
        app_id: &p.app_id,
        client_id: &p.client_id,
        conversion_id: conversation.filter(|_| field == "conversion_id"),
        conversation_id: conversation.filter(|_| field == "conversation_id"),
        sorted_member_ids: kind.has_members().then(|| members.joined()),
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

macro_rules! signature_route {
    ($name:ident, $kind:expr) => {
        pub async fn $name(
            State(state): State<AppState>,
            caller: Caller,
            path: Result<Path<SignaturePath>, PathRejection>,
        ) -> Result<Response, ApiError> {
            sign(&state, caller, path_params(path)?, $kind).await
        }
    };
}

signature_route!(login, Kind::Login);
signature_route!(conversation, Kind::Conversation);
signature_route!(invite, Kind::Invite);
signature_route!(kick, Kind::Kick);
signature_route!(history, Kind::History);
signature_route!(block, Kind::ClientBlock(true));
signature_route!(unblock, Kind::ClientBlock(false));
signature_route!(conversation_block, Kind::ConversationBlock(true));
signature_route!(conversation_unblock, Kind::ConversationBlock(false));
