//! What the group routes answer: the JSON views of groups, members and lists.

use axum::http::StatusCode;
use axum::response::Response;
use serde::Serialize;
use std::collections::BTreeMap;

use crate::api::respond::json;
use crate::model::{CloudId, GroupMeta};

/// A group as every read and update returns it.
#[derive(Debug, Serialize)]
pub(super) struct GroupView {
    pub(super) group_id: u64,
    pub(super) group_name: String,
    pub(super) owner: String,
    pub(super) admins: Vec<String>,
    pub(super) member_count: u64,
    pub(super) max_members: u64,
    pub(super) conversation_id: Option<String>,
    pub(super) avatar_url: Option<String>,
    pub(super) description: Option<String>,
    pub(super) created_at: String,
    pub(super) updated_at: String,
    /// The LeanCloud mirror's state, as it was before there was a second IM cloud (the
    /// same as `clouds.leancloud`, without the id): kept for the clients that read it.
    /// Only in a read by the owner, a group admin or the app's backend, once the IM cloud
    /// mirror has touched the group.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) sync: Option<SyncView>,
    /// Each IM cloud's state, by cloud (`leancloud`, `tencent`), under the same rule.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub(super) clouds: BTreeMap<&'static str, CloudView>,
}

#[derive(Debug, Serialize)]
pub(super) struct SyncView {
    pub(super) status: &'static str,
    pub(super) error: Option<String>,
    pub(super) at: String,
}

/// One cloud's state: the `sync` fields, the group's id there (Tencent's group id, or
/// LeanCloud's conversation id), and what the mirror changed on the way.
#[derive(Debug, Serialize)]
pub(super) struct CloudView {
    #[serde(flatten)]
    pub(super) state: SyncView,
    pub(super) id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) note: Option<String>,
}

/// The group with its version as a strong ETag.
pub(super) fn group_response(status: StatusCode, meta: GroupMeta) -> Response {
    let etag = format!("\"{}\"", meta.version);
    let state = |s: &crate::model::SyncReport| SyncView {
        status: s.status.as_str(),
        error: s.error.clone(),
        at: s.at.clone(),
    };
    let sync = meta
        .sync
        .iter()
        .find(|(c, _)| *c == CloudId::LeanCloud)
        .map(|(_, s)| state(s));
    let clouds = meta
        .sync
        .iter()
        .map(|(cloud, s)| {
            let id = match cloud {
                CloudId::LeanCloud => meta.conversation_id.clone(),
                _ => s.remote_id.clone(),
            };
            (
                cloud.as_str(),
                CloudView {
                    state: state(s),
                    id,
                    note: s.note.clone(),
                },
            )
        })
        .collect();
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
        sync,
        clouds,
    };
    let mut resp = json(status, &view);
    if let Ok(v) = axum::http::HeaderValue::from_str(&etag) {
        resp.headers_mut().insert(axum::http::header::ETAG, v);
    }
    resp
}

#[derive(Debug, Serialize)]
pub(super) struct GroupCreated {
    pub(super) group_id: u64,
    pub(super) group_name: String,
    pub(super) owner: String,
    pub(super) member_client_ids: String,
}

#[derive(Debug, Serialize)]
pub(super) struct MembersChanged {
    pub(super) group_id: u64,
    pub(super) member_client_ids: String,
}

#[derive(Debug, Serialize)]
pub(super) struct MemberView {
    pub(super) client_id: String,
    pub(super) role: &'static str,
    pub(super) joined_at: String,
}

#[derive(Debug, Serialize)]
pub(super) struct UserGroupView {
    pub(super) group_id: u64,
    pub(super) group_name: String,
    pub(super) role: &'static str,
    pub(super) member_count: u64,
    /// The group's linked conversation, when it has one: how a client (the SDK kit in
    /// `clients/js`) knows which of its conversations are groups'.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) conversation_id: Option<String>,
}
