//! The signature routes. Each validates its path, checks that the caller may have the
//! signature, finds the app's master key and signs exactly the values it returns, so the
//! client sends back what was signed.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use serde::{Deserialize, Serialize};

use super::error::ApiError;
use super::extract::path_params;
use super::respond::json;
use super::state::AppState;
use crate::config::AuthMode;
use crate::model::ids::{check_id, MemberList};
use crate::model::policy::{self, Check, GroupRule, Lookup};
use crate::model::signing::{self, Operation};
use crate::model::{Caller, ConversationClaim, GroupStatus};

/// Every signature route's parameters; axum has already URL-decoded them. The routes of
/// the API's first version name the conversation `conversion_id`, the newer ones
/// `conversation_id` (docs/protocol.md).
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
    /// The group check this request needs (see [`crate::model::policy`]); `None`: only the
    /// caller's identity matters.
    fn check<'a>(
        self,
        caller: &'a str,
        conversation_id: &'a str,
        members: &'a MemberList,
    ) -> Option<Check<'a>> {
        let on_conversation = |rule, acts_on_members| Check {
            caller,
            conversation_id,
            rule,
            unlinked_policy: true,
            acts_on_members,
        };
        match self {
            Kind::History => Some(on_conversation(GroupRule::Member, false)),
            Kind::Invite => Some(on_conversation(GroupRule::Invite, false)),
            Kind::Kick => Some(on_conversation(GroupRule::Kick, true)),
            Kind::ConversationBlock(_) => Some(on_conversation(GroupRule::Manager, true)),
            // Opening a conversation with one id that is a group's conversation signs the
            // same fields as that conversation's history (byte for byte in the demo
            // layout): it takes what history takes. On any other id it is a one-to-one
            // chat, which every client may open.
            Kind::Conversation => match members.ids() {
                [only] => Some(Check {
                    caller,
                    conversation_id: only,
                    rule: GroupRule::Member,
                    unlinked_policy: false,
                    acts_on_members: false,
                }),
                _ => None,
            },
            Kind::Login | Kind::ClientBlock(_) => None,
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
/// app's backend for anyone in it, and every signature of its app); on a conversation
/// that is one of the app's groups, the group's rules apply ([`crate::model::policy`]).
async fn authorize(
    state: &AppState,
    caller: &Caller,
    p: &SignaturePath,
    check: Option<Check<'_>>,
    members: &MemberList,
) -> Result<(), ApiError> {
    if caller.app_id != p.app_id || (!caller.app_admin && caller.client_id != p.client_id) {
        return Err(ApiError::Forbidden);
    }
    let Some(check) = check.filter(|_| !caller.app_admin) else {
        return Ok(());
    };
    let lookup = policy::lookup(check.conversation_id);
    let claim = match lookup {
        Lookup::GroupId(id) => Some(ConversationClaim::Group(id)),
        Lookup::Link => {
            state
                .links
                .conversation_group(&p.app_id, check.conversation_id)
                .await?
        }
    };
    let group = match claim {
        Some(ConversationClaim::Group(id)) => {
            let named: Vec<&str> = match check.rule {
                GroupRule::Invite | GroupRule::Kick => {
                    members.ids().iter().map(String::as_str).collect()
                }
                GroupRule::Member | GroupRule::Manager => Vec::new(),
            };
            match state
                .store
                .standing(&p.app_id, id, &p.client_id, &named)
                .await?
            {
                // A link whose group is gone (its tombstone not written yet, or a link
                // older than tombstones): the conversation was that group's.
                GroupStatus::Absent if lookup == Lookup::Link => Some(GroupStatus::Closed),
                status => Some(status),
            }
        }
        Some(ConversationClaim::Closed) => Some(GroupStatus::Closed),
        None => None,
    };
    policy::judge(
        &check,
        members,
        group.as_ref(),
        state.config.unlinked_conversations,
    )
    .map_err(|_| ApiError::Forbidden)
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
        Kind::History => Operation::History {
            conversation_id,
            format: state.config.history_format,
        },
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
    authorize(
        state,
        &caller,
        &p,
        kind.check(&p.client_id, conversation_id, &members),
        &members,
    )
    .await?;
    let key = match state.keys.master_key(&p.app_id).await? {
        Some(key) => key,
        // The caller's token was issued for this app (checked above): with the app gone,
        // the token speaks for nobody.
        None if state.config.auth == AuthMode::Tokens => return Err(ApiError::Unauthorized),
        None => return Err(ApiError::NotFound("app")),
    };
    // The app's system client speaks for the service (the mirror's system messages go
    // out under its id through the REST API): nobody logs in as it, the app's backend
    // included, or its messages could be forged from a client.
    if kind == Kind::Login && key.system_client.as_deref() == Some(p.client_id.as_str()) {
        return Err(ApiError::Forbidden);
    }
    let signed = signing::sign(
        &key.master,
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
