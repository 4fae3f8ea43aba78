//! Tencent Cloud IM's callback endpoint for one app: `POST /im-cloud/tencent/callback/{app_id}`.
//! No bearer token (Tencent cannot send one): the call is Tencent's when its callback
//! authentication checks out (`model::tencent_callback::authenticate`). The rules are
//! `model::tencent_callback`; this gathers the facts (the app's settings, token and
//! reserved ids, cached), runs the one write a plan names, through the same store calls
//! (and so the same conditional writes) as the group routes, and answers.
//!
//! Every answer is HTTP 200 with Tencent's body: on an error status or no answer Tencent
//! lets a "before" event proceed, so a refusal must be a body that refuses. A call that is
//! not Tencent's, or that we cannot read or serve, touches nothing and is refused; the
//! reason goes to the log, never the token or the `Sign` (the query is not logged).

use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use super::error::ApiError;
use super::extract::body::LimitedBody;
use super::extract::path_params;
use super::respond::json;
use super::state::AppState;
use crate::model::ids::check_id;
use crate::model::tencent_callback::{
    authenticate, parse_event, parse_query, plan, Answer, Plan, PlanLimits, Refusal,
};
use crate::model::{Caller, CloudId, MemberList};
use crate::store::StoreError;

#[derive(Debug, Deserialize)]
pub struct CallbackPath {
    app_id: String,
}

/// Why a call was refused, for the log: authentication and parsing ([`Refusal`]) or the
/// request around it.
fn refused(app_id: &str, command: &str, reason: &dyn std::fmt::Display) -> Response {
    tracing::warn!(app_id, command, reason = %reason, "tencent callback refused");
    json(StatusCode::OK, &Answer::failed())
}

pub async fn callback(
    State(state): State<AppState>,
    path: Result<Path<CallbackPath>, PathRejection>,
    RawQuery(query): RawQuery,
    body: Result<LimitedBody, ApiError>,
) -> Result<Response, ApiError> {
    let app_id = match path_params(path) {
        Ok(p) => p.app_id,
        Err(e) => return Ok(refused("-", "-", &e)),
    };
    if let Err(e) = check_id("app_id", &app_id, state.config.limits.max_id_chars) {
        return Ok(refused("-", "-", &e));
    }
    let raw_query = query.unwrap_or_default();
    let pairs: Vec<(String, String)> = match serde_urlencoded::from_str(&raw_query) {
        Ok(p) => p,
        Err(e) => return Ok(refused(&app_id, "-", &e)),
    };
    let q = match parse_query(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))) {
        Ok(q) => q,
        Err(e) => return Ok(refused(&app_id, "-", &e)),
    };
    // Logged as given only once it is one of Tencent's command names' characters.
    let command = if q
        .command
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_')
        && q.command.len() <= 64
    {
        q.command.as_str()
    } else {
        "-"
    };
    let tencent = match state.keys.tencent_key(&app_id).await {
        Ok(Some(t)) => t,
        Ok(None) => return Ok(refused(&app_id, command, &Refusal::NotConfigured)),
        Err(e) => return Ok(refused(&app_id, command, &e)),
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let settings = &tencent.settings;
    if let Err(e) = authenticate(settings, tencent.callback_token.as_ref(), &q, now) {
        return Ok(refused(&app_id, command, &e));
    }
    let raw = match body {
        Ok(LimitedBody(raw)) => raw,
        Err(e) => return Ok(refused(&app_id, command, &e)),
    };
    let event = match parse_event(&q.command, &raw) {
        Ok(e) => e,
        Err(e) => return Ok(refused(&app_id, command, &e)),
    };
    let reserved = match state.keys.reserved_ids(&app_id).await {
        Ok(r) => r,
        Err(e) => return Ok(refused(&app_id, command, &e)),
    };
    let limits = PlanLimits {
        max_id_chars: state.config.limits.max_id_chars,
        max_members_per_request: state.config.limits.max_group_members_per_request,
    };
    let answer = match plan(settings, &reserved, &q.opt_platform, &event, limits) {
        Plan::Answer(a) => a,
        Plan::Add {
            group_id,
            operator,
            members,
            mut refused,
        } => {
            let caller = Caller {
                app_id: app_id.clone(),
                client_id: operator,
                app_admin: false,
            };
            // Our table first: the members join in Tencent only once they are ours.
            match state.store.add_members(&caller, group_id, &members).await {
                Ok(()) => Answer::invite(refused, true, "refused by the app's rules"),
                Err(e) => {
                    tracing::info!(app_id, command, group_id, caller = %caller.client_id,
                        members = %members.joined(), reason = %e, "tencent callback: add refused");
                    refused.extend(members.ids().iter().cloned());
                    Answer::invite(refused, false, add_refusal(&e))
                }
            }
        }
        Plan::Leave { group_id, members } => leave(&state, &app_id, group_id, &members).await,
        Plan::MarkDestroyed { group_id } => {
            let why = "the group was destroyed in Tencent, not through this service \
                       (sync reconcile --fix recreates it)";
            match state
                .store
                .mark_cloud_failed(&app_id, group_id, CloudId::Tencent, why)
                .await
            {
                Ok(marked) => {
                    tracing::info!(
                        app_id,
                        command,
                        group_id,
                        marked,
                        "tencent callback: destroyed"
                    );
                    Answer::ok()
                }
                Err(e) => return Ok(refused(&app_id, command, &e)),
            }
        }
    };
    tracing::info!(
        app_id,
        command,
        error_code = answer.error_code,
        refused = answer.refused_members.as_ref().map_or(0, Vec::len),
        "tencent callback"
    );
    Ok(json(StatusCode::OK, &answer))
}

/// What the client's SDK is told (`ErrorInfo`) when the add route's write refuses.
fn add_refusal(e: &StoreError) -> &'static str {
    match e {
        StoreError::NotFound | StoreError::Forbidden => {
            "only members of the group may add members (the app's rules)"
        }
        StoreError::Full { .. } => "the group is full",
        StoreError::Invalid(_) => "refused by the app's rules",
        _ => "the app's service could not record the change; try again",
    }
}

/// Each member that left in Tencent leaves our group as through the leave route (itself
/// as the caller, so the same conditional write); one no member any more is already
/// where Tencent is. An owner cannot leave by our rules: its exit is reported as the
/// group's Tencent sync state failed.
async fn leave(state: &AppState, app_id: &str, group_id: u64, members: &[String]) -> Answer {
    let max_chars = state.config.limits.max_id_chars;
    for member in members {
        let Ok(list) = MemberList::from_ids("member", [member.as_str()], 1, max_chars) else {
            continue; // an id our table cannot hold is no member of ours
        };
        let caller = Caller {
            app_id: app_id.to_owned(),
            client_id: member.clone(),
            app_admin: false,
        };
        match state.store.remove_members(&caller, group_id, &list).await {
            Ok(()) | Err(StoreError::NotFound) => {}
            Err(StoreError::Forbidden) => {
                let why = format!(
                    "the owner {member} left the group in Tencent; by our rules an owner hands \
                     the group over first (transfer the owner, then sync reconcile --fix)"
                );
                if let Err(e) = state
                    .store
                    .mark_cloud_failed(app_id, group_id, CloudId::Tencent, &why)
                    .await
                {
                    tracing::warn!(app_id, group_id, reason = %e, "tencent callback: owner exit not recorded");
                    return Answer::failed();
                }
            }
            Err(e) => {
                tracing::warn!(app_id, group_id, member = %member, reason = %e,
                    "tencent callback: exit not recorded");
                return Answer::failed();
            }
        }
    }
    Answer::ok()
}
