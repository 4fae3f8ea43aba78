//! The stand-in's memory: the app's accounts, its groups with their members and roles,
//! the groups destroyed, and the system notifications sent.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

/// A member's role, as `get_group_member_info` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    Owner,
    Admin,
    Member,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "Owner",
            Role::Admin => "Admin",
            Role::Member => "Member",
        }
    }
}

/// A group as the stand-in holds it, for a test to look at.
#[derive(Debug, Clone, PartialEq)]
pub struct TencentGroup {
    pub id: String,
    /// `Private`, `Public`, `ChatRoom`, `AVChatRoom` or `Community`.
    pub group_type: String,
    pub name: String,
    /// `None` for a group created without `Owner_Account` (Tencent's "no owner").
    pub owner: Option<String>,
    /// Every member with its role, the owner included (as `Owner`).
    pub members: BTreeMap<String, Role>,
    /// `FreeAccess`, `NeedPermission` or `DisableApply`.
    pub apply_join_option: String,
    pub introduction: String,
    /// The group's notice (`Notification`).
    pub notification: String,
    pub face_url: String,
    pub max_member_count: u32,
    /// The `AppDefinedData` of the create (`Null` when none).
    pub app_defined_data: Value,
    /// Made by this app's admin through REST `create_group`; false for a group a client
    /// made ([`crate::tencent::TencentStandIn::create_foreign_group`]).
    pub created_by_admin: bool,
}

impl TencentGroup {
    pub fn admins(&self) -> BTreeSet<String> {
        self.with_role(Role::Admin)
    }

    pub fn member_ids(&self) -> BTreeSet<String> {
        self.members.keys().cloned().collect()
    }

    fn with_role(&self, role: Role) -> BTreeSet<String> {
        self.members
            .iter()
            .filter(|(_, r)| **r == role)
            .map(|(m, _)| m.clone())
            .collect()
    }
}

/// One `send_group_system_notification`.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    pub content: String,
    /// `ToMembers_Account`; `None` when absent or empty (everyone).
    pub to: Option<Vec<String>>,
}

/// A stored group: the snapshot, plus the order members joined (the member list's order).
pub(super) struct Stored {
    pub group: TencentGroup,
    pub join_order: BTreeMap<String, u64>,
    pub created: u64,
}

#[derive(Default)]
pub(super) struct Store {
    pub accounts: BTreeSet<String>,
    pub groups: BTreeMap<String, Stored>,
    pub destroyed: Vec<TencentGroup>,
    pub notifications: BTreeMap<String, Vec<Notification>>,
    seq: u64,
}

impl Store {
    pub fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// Stores a new group; `join_order` is the order its members joined (each member
    /// once, as in `group.members`): the owner, then the create's `MemberList` as given.
    pub fn insert(&mut self, group: TencentGroup, join_order: &[&str]) {
        debug_assert_eq!(join_order.len(), group.members.len());
        let created = self.next_seq();
        let join_order = join_order
            .iter()
            .map(|member| (member.to_string(), self.next_seq()))
            .collect();
        self.groups.insert(
            group.id.clone(),
            Stored {
                group,
                join_order,
                created,
            },
        );
    }

    pub fn add_member(&mut self, group_id: &str, member: &str, role: Role) -> bool {
        let seq = self.next_seq();
        let Some(stored) = self.groups.get_mut(group_id) else {
            return false;
        };
        if stored.group.members.contains_key(member) {
            return false;
        }
        stored.group.members.insert(member.to_string(), role);
        stored.join_order.insert(member.to_string(), seq);
        true
    }

    pub fn remove_member(&mut self, group_id: &str, member: &str) -> bool {
        let Some(stored) = self.groups.get_mut(group_id) else {
            return false;
        };
        stored.join_order.remove(member);
        if stored.group.owner.as_deref() == Some(member) {
            stored.group.owner = None;
        }
        stored.group.members.remove(member).is_some()
    }

    pub fn destroy(&mut self, group_id: &str) -> bool {
        match self.groups.remove(group_id) {
            Some(stored) => {
                self.destroyed.push(stored.group);
                true
            }
            None => false,
        }
    }

    /// The members in join order (the owner, who joins on create, first).
    pub fn members_in_order(&self, group_id: &str) -> Option<Vec<(String, Role)>> {
        let stored = self.groups.get(group_id)?;
        let mut members: Vec<(String, Role)> = stored
            .group
            .members
            .iter()
            .map(|(m, r)| (m.clone(), *r))
            .collect();
        members.sort_by_key(|(m, _)| stored.join_order.get(m).copied().unwrap_or(u64::MAX));
        Some(members)
    }

    /// The live groups, oldest first.
    pub fn groups_in_order(&self) -> Vec<TencentGroup> {
        let mut all: Vec<&Stored> = self.groups.values().collect();
        all.sort_by_key(|s| s.created);
        all.into_iter().map(|s| s.group.clone()).collect()
    }
}
