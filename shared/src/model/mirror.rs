//! What the IM cloud mirror (the `im-sync` crate) reads from and writes back to a group:
//! the group's last change, which each group write records in the same write so that the
//! stream carries who did what, and the group's sync state.

/// The changes that reach the group's conversation as a system message. Each group write
/// that makes one records it on the group item (`last_change`), with who did it and the
/// members it concerns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeEvent {
    Created,
    MembersAdded,
    MembersRemoved,
    /// A member removed themself.
    MemberLeft,
    Renamed,
    OwnerChanged,
    Dismissed,
    /// Brought in by `im-admin import` from the IM cloud itself (or from an export of
    /// this service): the conversation has it already, so the mirror neither creates,
    /// renames nor announces anything for it.
    Imported,
}

impl ChangeEvent {
    pub const ALL: [ChangeEvent; 8] = [
        Self::Created,
        Self::MembersAdded,
        Self::MembersRemoved,
        Self::MemberLeft,
        Self::Renamed,
        Self::OwnerChanged,
        Self::Dismissed,
        Self::Imported,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::MembersAdded => "members_added",
            Self::MembersRemoved => "members_removed",
            Self::MemberLeft => "member_left",
            Self::Renamed => "renamed",
            Self::OwnerChanged => "owner_changed",
            Self::Dismissed => "dismissed",
            Self::Imported => "imported",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.as_str() == text)
    }
}

/// The IM clouds a group can be mirrored into. Each keeps its own sync state (its own
/// `SYNC` item), so that a group held or failed in one goes on in the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CloudId {
    LeanCloud,
    Tencent,
}

impl CloudId {
    pub const ALL: [CloudId; 2] = [Self::LeanCloud, Self::Tencent];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::LeanCloud => "leancloud",
            Self::Tencent => "tencent",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == text)
    }
}

/// Whether the group's conversation follows the group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncStatus {
    /// Every change so far reached the conversation.
    Ok,
    /// The IM cloud refused a change for good (a conversation that no longer exists, a
    /// rejected key): later changes wait for `im-admin sync reconcile --fix`.
    Failed,
    /// A change could not reach the IM cloud yet (it ran out of retries, or is being
    /// retried): the group's later changes wait for it, so that none overtakes it. Its
    /// redrive, or `im-admin sync reconcile --fix`, lets them through. Reported only;
    /// stored as a hold beside the status.
    Held,
}

impl SyncStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Failed => "failed",
            Self::Held => "held",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "ok" => Some(Self::Ok),
            "failed" => Some(Self::Failed),
            _ => None,
        }
    }
}

/// The group's sync state as `GET /im/group/{id}` shows it to those who manage it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncReport {
    pub status: SyncStatus,
    /// Why the last change failed (the IM cloud's answer, never a key).
    pub error: Option<String>,
    /// When the state last changed (RFC 3339).
    pub at: String,
    /// The group's own id in that cloud, once the mirror made it there (Tencent's group
    /// id; LeanCloud's conversation id is the group's `conversation_id`).
    pub remote_id: Option<String>,
    /// What the mirror changed on the way, that the group's readers should know (a name
    /// cut to the cloud's byte limit).
    pub note: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_names_read_back() {
        for e in ChangeEvent::ALL {
            assert_eq!(ChangeEvent::parse(e.as_str()), Some(e));
        }
        assert_eq!(ChangeEvent::parse("renamed "), None);
        assert_eq!(SyncStatus::parse("ok"), Some(SyncStatus::Ok));
        assert_eq!(SyncStatus::parse("failed"), Some(SyncStatus::Failed));
        assert_eq!(SyncStatus::parse("OK"), None);
        for c in CloudId::ALL {
            assert_eq!(CloudId::parse(c.as_str()), Some(c));
        }
        assert_eq!(CloudId::parse("Tencent"), None);
    }
}
