//! What the group routes accept: path parameters and bodies, and the validators that
//! turn them into the model's types (a 400 says which rule was broken).

use axum::extract::rejection::PathRejection;
use axum::extract::Path;
use axum::http::HeaderMap;
use serde::Deserialize;
use serde_json::Value;

use crate::api::error::ApiError;
use crate::api::extract::body::{self, MemberIds};
use crate::api::extract::path_params;
use crate::api::state::AppState;
use crate::model::ids::{check_id, parse_group_id};
use crate::model::{Caller, MemberList, MAX_MAX_MEMBERS};

#[derive(Debug, Deserialize)]
pub struct GroupPath {
    pub(super) group_id: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateBody {
    pub(super) group_name: String,
    #[serde(default)]
    pub(super) member_client_ids: MemberIds,
    #[serde(default)]
    pub(super) avatar_url: Option<String>,
    #[serde(default)]
    pub(super) description: Option<String>,
    #[serde(default)]
    pub(super) conversation_id: Option<String>,
    #[serde(default)]
    pub(super) max_members: Option<Count>,
}

/// A whole number, as a JSON number or (from a form) a decimal string.
#[derive(Debug, Deserialize)]
#[serde(untagged, expecting = "a whole number")]
pub(super) enum Count {
    Number(u64),
    Text(String),
}

impl Count {
    pub(super) fn value(&self) -> Option<u64> {
        match self {
            Count::Number(n) => Some(*n),
            Count::Text(t) => t.trim().parse().ok(),
        }
    }
}

/// A partial update: only the fields given change.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct UpdateBody {
    #[serde(default)]
    pub(super) group_name: Option<String>,
    #[serde(default)]
    pub(super) avatar_url: Option<String>,
    #[serde(default)]
    pub(super) description: Option<String>,
    #[serde(default)]
    pub(super) conversation_id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MembersBody {
    /// The API's first version lists `group_id` among the parameters (openapi.yaml keeps
    /// it); accepted when it agrees with the path.
    #[serde(default)]
    pub(super) group_id: Option<Value>,
    pub(super) member_client_ids: MemberIds,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct OwnerBody {
    pub(super) client_id: String,
}

#[derive(Debug, Deserialize)]
pub struct UserPath {
    pub(super) client_id: String,
}

/// An absolute http(s) URL with a host, as clients will load it; kept as given.
pub(super) fn avatar_url(raw: &str) -> Result<String, ApiError> {
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

pub(super) fn description(raw: &str) -> Result<String, ApiError> {
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
pub(super) fn conversation_id(
    state: &AppState,
    caller: &Caller,
    raw: &str,
) -> Result<String, ApiError> {
    check_id("conversation_id", raw, state.config.limits.max_id_chars)?;
    if !caller.app_admin {
        return Err(ApiError::Forbidden);
    }
    Ok(raw.to_owned())
}

pub(super) fn group_name(state: &AppState, raw: &str) -> Result<String, ApiError> {
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

/// How many ids one request may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Bound {
    /// A create or add: as many as a group may have (the group's own `max_members`
    /// decides, in the store); more than one transaction takes go in steps, all or
    /// nothing (`store::dynamo::bulk`).
    Group,
    /// A removal or an admin change: one DynamoDB transaction.
    Transaction,
}

pub(super) fn members(
    state: &AppState,
    ids: &MemberIds,
    bound: Bound,
) -> Result<MemberList, ApiError> {
    let limits = &state.config.limits;
    let list = ids.normalize(usize::MAX, limits.max_id_chars)?;
    match bound {
        Bound::Group if list.len() as u64 > MAX_MAX_MEMBERS => Err(ApiError::bad(format!(
            "member_client_ids may list at most {MAX_MAX_MEMBERS} client ids (the largest max_members a group may have)"
        ))),
        Bound::Transaction if list.len() > limits.max_group_members_per_request => {
            let max = limits.max_group_members_per_request;
            // Each such request is one DynamoDB transaction, all or nothing; a larger
            // list would not fit in one.
            Err(ApiError::bad(format!(
                "member_client_ids may list at most {max} client ids per request (each request is one atomic transaction); split the list"
            )))
        }
        _ => Ok(list),
    }
}

pub(super) fn group_id(path: Result<Path<GroupPath>, PathRejection>) -> Result<u64, ApiError> {
    Ok(parse_group_id(&path_params(path)?.group_id)?)
}

/// Members from a body, checking a `group_id` repeated there against the path.
pub(super) fn members_body(
    state: &AppState,
    id: u64,
    body: MembersBody,
    bound: Bound,
) -> Result<MemberList, ApiError> {
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
    let list = members(state, &body.member_client_ids, bound)?;
    if list.is_empty() {
        return Err(ApiError::bad(
            "member_client_ids must name at least one client",
        ));
    }
    Ok(list)
}

/// Members come in the body or, since some HTTP clients cannot send a body with DELETE,
/// in the query string.
pub(super) fn members_body_or_query(
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
    members_body(state, id, parsed, Bound::Transaction)
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
