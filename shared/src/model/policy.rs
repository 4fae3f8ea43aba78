//! Who may have which signature: the rules of the signature routes as pure functions, so
//! that each can be read, and tested, without a table. `api/signature.rs` gathers the
//! facts (the caller, the group a conversation belongs to, the caller's standing in it)
//! and asks [`judge`].
//!
//! A conversation is a group's when its id reads as a group id of the app (a positive
//! integer: the group with that id, whatever any link says), or when a group has linked
//! it as its `conversation_id` (only the app's backend links conversations). Any other
//! conversation is *unlinked*: the service knows nothing of who belongs to it, and
//! [`UnlinkedConversations`] says who may have signatures on it.
//!
//! A linked conversation stays *closed* once its group is deleted or has moved to another
//! conversation (the link leaves a tombstone): its members may still be in it, so it
//! never falls back to the unlinked rule, and only the app's backend gets signatures on
//! it.

use super::group::{GroupStatus, Standing};
use super::ids::{parse_group_id, MemberList};

/// What the link table says of a conversation id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConversationClaim {
    /// The group whose conversation it is.
    Group(u64),
    /// It was a group's; that group is deleted or moved on (a tombstone).
    Closed,
}

/// Who gets invite, kick, history and conversation-block signatures on a conversation that
/// no group of the app claims (neither a group's linked `conversation_id` nor a group id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UnlinkedConversations {
    /// Any client of the app, for itself: one-to-one chats and conversations the app
    /// manages elsewhere keep working, but the service vouches for nothing about them.
    #[default]
    Allow,
    /// Only the app's backend (`role: admin`): every conversation a client may act on
    /// must be a group's.
    Deny,
}

/// What a caller must be in the conversation's group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupRule {
    /// Any member (invite or join, history).
    Member,
    /// The owner or a group admin (kick, conversation-block and -unblock).
    Manager,
}

/// The group check one signature request needs, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Check<'a> {
    /// The conversation the signature acts on.
    pub conversation_id: &'a str,
    pub rule: GroupRule,
    /// Whether [`UnlinkedConversations`] governs an unlinked conversation. It does not for
    /// an open-conversation request, which on an unlinked id is a one-to-one chat.
    pub unlinked_policy: bool,
    /// The signature acts on the members it lists (kick, conversation-block, -unblock):
    /// listing the group's owner takes the owner or the app's backend.
    pub acts_on_members: bool,
}

/// How the conversation of a [`Check`] is found: a group id names its group outright;
/// anything else needs the link table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    GroupId(u64),
    Link,
}

pub fn lookup(conversation_id: &str) -> Lookup {
    match parse_group_id(conversation_id) {
        Ok(id) => Lookup::GroupId(id),
        Err(_) => Lookup::Link,
    }
}

/// Why a request is refused; the route answers 403 for every one of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// The caller lacks the standing the rule asks for in the group.
    NotAllowed,
    /// Only the owner (or the app's backend) may have a signature that names the owner.
    NamesTheOwner,
    /// The group is being deleted: nobody but the app's backend acts on it any more.
    Deleting,
    /// `IM_UNLINKED_CONVERSATIONS=deny` and no group claims the conversation.
    Unlinked,
    /// The conversation was a group's, and that group is gone or moved on.
    Closed,
}

/// The decision for a client (never the app's backend, who may have every signature of
/// its app) on `check`, given what the conversation turned out to be: `group` is `None`
/// when no group claims it (a group id of no group of the app counts as unclaimed), and
/// [`GroupStatus::Closed`] when a group's link to it is closed.
pub fn judge(
    check: &Check<'_>,
    members: &MemberList,
    group: Option<&GroupStatus>,
    unlinked: UnlinkedConversations,
) -> Result<(), Denied> {
    let standing = match group {
        None | Some(GroupStatus::Absent) => {
            return match (check.unlinked_policy, unlinked) {
                (true, UnlinkedConversations::Deny) => Err(Denied::Unlinked),
                _ => Ok(()),
            }
        }
        Some(GroupStatus::Closed) => return Err(Denied::Closed),
        Some(GroupStatus::Deleting) => return Err(Denied::Deleting),
        Some(GroupStatus::Live(standing)) => standing,
    };
    if !allowed(check.rule, standing) {
        return Err(Denied::NotAllowed);
    }
    if check.acts_on_members && !standing.owner && members.ids().contains(&standing.owner_id) {
        return Err(Denied::NamesTheOwner);
    }
    Ok(())
}

fn allowed(rule: GroupRule, s: &Standing) -> bool {
    match rule {
        GroupRule::Member => s.member,
        GroupRule::Manager => s.owner || s.admin,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(s: &str) -> MemberList {
        MemberList::parse_joined("m", s, 100, 64).unwrap()
    }

    fn live(member: bool, owner: bool, admin: bool) -> GroupStatus {
        GroupStatus::Live(Standing {
            member,
            owner,
            admin,
            owner_id: if owner { "me" } else { "boss" }.into(),
        })
    }

    fn check(rule: GroupRule, unlinked_policy: bool, acts_on_members: bool) -> Check<'static> {
        Check {
            conversation_id: "c",
            rule,
            unlinked_policy,
            acts_on_members,
        }
    }

    const ALLOW: UnlinkedConversations = UnlinkedConversations::Allow;
    const DENY: UnlinkedConversations = UnlinkedConversations::Deny;

    #[test]
    fn group_ids_are_looked_up_directly() {
        assert_eq!(lookup("42"), Lookup::GroupId(42));
        assert_eq!(lookup("conv-42"), Lookup::Link);
        assert_eq!(lookup("0"), Lookup::Link);
    }

    #[test]
    fn members_and_managers() {
        let none = members("");
        let member = check(GroupRule::Member, true, false);
        let manager = check(GroupRule::Manager, true, true);
        assert_eq!(
            judge(&member, &none, Some(&live(true, false, false)), ALLOW),
            Ok(())
        );
        assert_eq!(
            judge(&member, &none, Some(&live(false, false, false)), ALLOW),
            Err(Denied::NotAllowed)
        );
        assert_eq!(
            judge(&manager, &none, Some(&live(true, false, false)), ALLOW),
            Err(Denied::NotAllowed)
        );
        assert_eq!(
            judge(&manager, &none, Some(&live(true, false, true)), ALLOW),
            Ok(())
        );
        assert_eq!(
            judge(&manager, &none, Some(&live(true, true, false)), ALLOW),
            Ok(())
        );
    }

    #[test]
    fn only_the_owner_names_the_owner() {
        let kick = check(GroupRule::Manager, true, true);
        let admin = live(true, false, true);
        assert_eq!(
            judge(&kick, &members("boss:x"), Some(&admin), ALLOW),
            Err(Denied::NamesTheOwner)
        );
        assert_eq!(judge(&kick, &members("x"), Some(&admin), ALLOW), Ok(()));
        let owner = live(true, true, false);
        assert_eq!(judge(&kick, &members("me:x"), Some(&owner), ALLOW), Ok(()));
        // Invite and history do not act against the listed members.
        let invite = check(GroupRule::Member, true, false);
        assert_eq!(
            judge(
                &invite,
                &members("boss"),
                Some(&live(true, false, false)),
                ALLOW
            ),
            Ok(())
        );
    }

    #[test]
    fn a_group_being_deleted_refuses_everyone() {
        for rule in [GroupRule::Member, GroupRule::Manager] {
            for policy in [ALLOW, DENY] {
                assert_eq!(
                    judge(
                        &check(rule, true, false),
                        &members(""),
                        Some(&GroupStatus::Deleting),
                        policy
                    ),
                    Err(Denied::Deleting)
                );
            }
        }
    }

    #[test]
    fn unlinked_conversations_follow_the_policy() {
        let history = check(GroupRule::Member, true, false);
        for unlinked in [None, Some(&GroupStatus::Absent)] {
            assert_eq!(judge(&history, &members(""), unlinked, ALLOW), Ok(()));
            assert_eq!(
                judge(&history, &members(""), unlinked, DENY),
                Err(Denied::Unlinked)
            );
            // A one-to-one open-conversation is not a group matter under either policy.
            let open = check(GroupRule::Member, false, false);
            assert_eq!(judge(&open, &members("bob"), unlinked, DENY), Ok(()));
        }
    }

    #[test]
    fn a_closed_conversation_refuses_every_client_under_either_policy() {
        // A deleted group's conversation (or the one a group moved from) may still hold
        // its members: no client gets an invite, kick, history or block signature on it,
        // nor the open-conversation signature that equals its history signature.
        for rule in [GroupRule::Member, GroupRule::Manager] {
            for unlinked_policy in [true, false] {
                for policy in [ALLOW, DENY] {
                    assert_eq!(
                        judge(
                            &check(rule, unlinked_policy, false),
                            &members(""),
                            Some(&GroupStatus::Closed),
                            policy
                        ),
                        Err(Denied::Closed)
                    );
                }
            }
        }
    }
}
