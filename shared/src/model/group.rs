//! Groups as the service sees them: what a create or update asks for, what a read gives
//! back, and the pure rules about who may change one (the store states the same rules
//! as conditions of its writes; these read them back to tell a 412 from a 403).

use std::collections::BTreeSet;
use std::time::Duration;

use super::caller::Caller;
use super::ids::MemberList;

/// Member limit of a group created without one.
pub const DEFAULT_MAX_MEMBERS: u64 = 500;
/// The largest member limit a group may have.
pub const MAX_MAX_MEMBERS: u64 = 5000;

/// What a group is created with.
#[derive(Debug, Clone, Default)]
pub struct GroupSpec {
    pub name: String,
    pub members: MemberList,
    pub avatar_url: Option<String>,
    pub description: Option<String>,
    pub conversation_id: Option<String>,
    pub max_members: u64,
}

/// A partial update of a group's settings: `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct GroupPatch {
    pub name: Option<String>,
    pub avatar_url: Option<String>,
    pub description: Option<String>,
    pub conversation_id: Option<String>,
}

/// A freshly created group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewGroup {
    pub group_id: u64,
    pub group_name: String,
    pub owner: String,
    pub members: MemberList,
}

/// A create's `Idempotency-Key` (scoped to the calling client) and a fingerprint of the
/// request, so that a retry can be told from another request under the same key.
#[derive(Debug, Clone)]
pub struct Idempotency {
    pub key: String,
    pub fingerprint: String,
}

impl Idempotency {
    /// `key` for a create of `spec`, with a fingerprint of the request as validated (so
    /// the same request in another member order or encoding is still the same request).
    pub fn of_create(key: &str, spec: &GroupSpec) -> Self {
        use sha2::{Digest, Sha256};
        let request = serde_json::json!([
            spec.name,
            spec.members.joined(),
            spec.avatar_url,
            spec.description,
            spec.conversation_id,
            spec.max_members,
        ]);
        Self {
            key: key.to_owned(),
            fingerprint: hex::encode(Sha256::digest(request.to_string().as_bytes())),
        }
    }
}

/// How long a create's idempotency record answers retries.
pub const IDEMPOTENCY_WINDOW: Duration = Duration::from_secs(24 * 60 * 60);

/// The outcome of a create: the group, and whether it was created earlier under the
/// same idempotency key (nothing was written this time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    pub group: NewGroup,
    pub replayed: bool,
}

/// One page of a listing, and where the next one starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T, C> {
    pub items: Vec<T>,
    pub next: Option<C>,
}

/// A client's standing in a live group, and who owns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Standing {
    pub member: bool,
    pub owner: bool,
    pub admin: bool,
    /// The group's owner, whom kick and conversation-block signatures must not name
    /// unless the owner asks.
    pub owner_id: String,
    /// Which of the ids a signature names are members of the group now: an invite or
    /// kick is signed only for a change the table already holds (`super::policy`).
    pub named_members: BTreeSet<String>,
}

/// What a group id means to a signature rule, for one app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupStatus {
    /// No group of this app has the id: never created, another app's, or deleted.
    Absent,
    /// Being deleted: gone for its members, but its conversation is not free yet.
    Deleting,
    /// A conversation whose group's link to it is closed (the group deleted, or moved to
    /// another conversation): it was a group's, so it is no client's to act on.
    Closed,
    Live(Standing),
}

/// The group item, as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMeta {
    pub group_id: u64,
    pub app_id: String,
    pub group_name: String,
    pub owner: String,
    pub admins: BTreeSet<String>,
    pub live: bool,
    pub member_count: u64,
    pub max_members: u64,
    /// Grows with every change: the group's ETag.
    pub version: u64,
    pub avatar_url: Option<String>,
    pub description: Option<String>,
    pub conversation_id: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    /// The mirror's state in each IM cloud it has touched the group in (`im-sync`), when
    /// the group's reader asked for it; in [`super::CloudId`] order.
    pub sync: Vec<(super::CloudId, super::SyncReport)>,
    /// Tokens of big adds (more members than one transaction takes) whose places are
    /// reserved and whose member items are being written: member items carrying one of
    /// these are not members yet (see `store::dynamo::bulk`).
    pub pending_adds: BTreeSet<String>,
    /// How many members may still be added: `max_members` less the members and the
    /// places big adds have reserved.
    pub places_left: u64,
}

impl GroupMeta {
    /// `client_id`'s role: owner, admin or member (for a client known to be a member).
    pub fn role_of(&self, client_id: &str) -> &'static str {
        if self.owner == client_id {
            "owner"
        } else if self.admins.contains(client_id) {
            "admin"
        } else {
            "member"
        }
    }

    pub fn manages(&self, client_id: &str) -> bool {
        self.owner == client_id || self.admins.contains(client_id)
    }

    /// The group after `patch` was written over this version of it at `now`.
    pub fn patched(mut self, patch: &GroupPatch, now: &str) -> Self {
        if let Some(name) = &patch.name {
            self.group_name = name.clone();
        }
        for (field, value) in [
            (&mut self.avatar_url, &patch.avatar_url),
            (&mut self.description, &patch.description),
            (&mut self.conversation_id, &patch.conversation_id),
        ] {
            if value.is_some() {
                field.clone_from(value);
            }
        }
        self.version += 1;
        self.updated_at = now.to_owned();
        self
    }

    /// The caller may change the group's settings (owner, group admin, app admin).
    pub fn managed_by(&self, caller: &Caller) -> bool {
        caller.app_admin || self.manages(&caller.client_id)
    }

    /// The caller may delete the group or hand it over (owner, app admin).
    pub fn owned_by(&self, caller: &Caller) -> bool {
        caller.app_admin || self.owner == caller.client_id
    }
}
