//! What the group routes answer: the JSON views of groups, members and lists.

use axum::http::StatusCode;
use axum::response::Response;
use serde::Serialize;

use crate::api::respond::json;
use crate::model::GroupMeta;

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
    /// Only in a read by the owner, a group admin or the app's backend, once the IM cloud
    /// mirror has touched the group.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) sync: Option<SyncView>,
}

#[derive(Debug, Serialize)]
pub(super) struct SyncView {
    pub(super) status: &'static str,
    pub(super) error: Option<String>,
    pub(super) at: String,
}

/// The group with its version as a strong ETag.
pub(super) fn group_response(status: StatusCode, meta: GroupMeta) -> Response {
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
        sync: meta.sync.map(|s| SyncView {
            status: s.status.as_str(),
            error: s.error,
            at: s.at,
        }),
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
}
