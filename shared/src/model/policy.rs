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
//!
//! On a group's conversation the group and the conversation stay one: an invite or kick
//! signature is given only for a change the table already holds (an invite names only
//! members, a kick only ids that are no members any more), so a client (the kit in
//! `clients/js/`) makes the change through the group route first, with its conditional
//! write, and the signature routes never write. A member leaves through the group route
//! and then gets the kick naming only itself (docs/protocol.md says why that is safe).

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
    /// Any member (history, the one-member open-conversation).
    Member,
    /// The owner or a group admin (conversation-block and -unblock).
    Manager,
    /// Invite (an empty list: a join): any member, and every id it names is a member
    /// already. So the SDK's `join()`, an invite naming only the caller, is taken wherever
    /// the empty-list join is: from members.
    Invite,
    /// Kick: every id it names is no member any more; the caller is the owner or a group
    /// admin, or the list names only the caller (a member that has left: `quit()`).
    Kick,
}

/// The group check one signature request needs, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Check<'a> {
    /// The client the signature is for.
    pub caller: &'a str,
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
    /// An invite names an id that is no member of the group yet (add it through the group
    /// route first), or a kick names one that still is (remove it first).
    NotInTheTable,
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
    let only_itself = matches!(members.ids(), [only] if only == check.caller);
    if !allowed(check.rule, standing, only_itself) {
        return Err(Denied::NotAllowed);
    }
    if check.acts_on_members && !standing.owner && members.ids().contains(&standing.owner_id) {
        return Err(Denied::NamesTheOwner);
    }
    let held = |id: &String| standing.named_members.contains(id);
    let in_the_table = match check.rule {
        GroupRule::Invite => members.ids().iter().all(held),
        GroupRule::Kick => !members.ids().iter().any(held),
        GroupRule::Member | GroupRule::Manager => true,
    };
    if !in_the_table {
        return Err(Denied::NotInTheTable);
    }
    Ok(())
}

fn allowed(rule: GroupRule, s: &Standing, only_itself: bool) -> bool {
    match rule {
        GroupRule::Member | GroupRule::Invite => s.member,
        GroupRule::Manager => s.owner || s.admin,
        // A kick naming only the caller needs no standing: it can only take the caller out
        // of the conversation, and once the table no longer holds it (checked next) that
        // is where the group already is.
        GroupRule::Kick => s.owner || s.admin || only_itself,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(s: &str) -> MemberList {
        MemberList::parse_joined("m", s, 100, 64).unwrap()
    }

    fn live(member: bool, owner: bool, admin: bool) -> GroupStatus {
        live_with(member, owner, admin, &[])
    }

    /// As [`live`], with `named` the listed ids the table holds as members.
    fn live_with(member: bool, owner: bool, admin: bool, named: &[&str]) -> GroupStatus {
        GroupStatus::Live(Standing {
            member,
            owner,
            admin,
            owner_id: if owner { "me" } else { "boss" }.into(),
            named_members: named.iter().map(|s| s.to_string()).collect(),
        })
    }

    fn check(rule: GroupRule, unlinked_policy: bool, acts_on_members: bool) -> Check<'static> {
        Check {
            caller: "me",
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
        // (The conversation-block rule; a kick naming the owner is also one naming a member.)
        let admin = live(true, false, true);
        assert_eq!(
            judge(&kick, &members("boss:x"), Some(&admin), ALLOW),
            Err(Denied::NamesTheOwner)
        );
        assert_eq!(judge(&kick, &members("x"), Some(&admin), ALLOW), Ok(()));
        let owner = live(true, true, false);
        assert_eq!(judge(&kick, &members("me:x"), Some(&owner), ALLOW), Ok(()));
        // Invite and history do not act against the listed members.
        let invite = check(GroupRule::Invite, true, false);
        assert_eq!(
            judge(
                &invite,
                &members("boss"),
                Some(&live_with(true, false, false, &["boss"])),
                ALLOW
            ),
            Ok(())
        );
    }

    #[test]
    fn an_invite_names_only_members_already_in_the_table() {
        let invite = check(GroupRule::Invite, true, false);
        let member_with = |named: &[&str]| live_with(true, false, false, named);
        // Our join (no ids) and the SDK's join (only the caller): from members only.
        for join in [members(""), members("me")] {
            assert_eq!(
                judge(&invite, &join, Some(&member_with(&["me"])), ALLOW),
                Ok(())
            );
            assert_eq!(
                judge(&invite, &join, Some(&live(false, false, false)), ALLOW),
                Err(Denied::NotAllowed),
                "a non-member's join stays refused"
            );
        }
        // Added through the group route first: signed.
        assert_eq!(
            judge(
                &invite,
                &members("x:y"),
                Some(&member_with(&["x", "y"])),
                ALLOW
            ),
            Ok(())
        );
        // Not added yet (or the add was refused): not signed.
        assert_eq!(
            judge(&invite, &members("x:y"), Some(&member_with(&["x"])), ALLOW),
            Err(Denied::NotInTheTable)
        );
        // The owner too must go through the group.
        assert_eq!(
            judge(
                &invite,
                &members("z"),
                Some(&live(true, true, false)),
                ALLOW
            ),
            Err(Denied::NotInTheTable)
        );
    }

    #[test]
    fn a_kick_names_only_ids_the_table_no_longer_holds() {
        let kick = check(GroupRule::Kick, true, true);
        let admin = |named: &[&str]| live_with(true, false, true, named);
        // Removed through the group route first: signed.
        assert_eq!(
            judge(&kick, &members("x"), Some(&admin(&[])), ALLOW),
            Ok(())
        );
        // Still a member: not signed, for the owner either.
        assert_eq!(
            judge(&kick, &members("x"), Some(&admin(&["x"])), ALLOW),
            Err(Denied::NotInTheTable)
        );
        assert_eq!(
            judge(
                &kick,
                &members("x"),
                Some(&live_with(true, true, false, &["x"])),
                ALLOW
            ),
            Err(Denied::NotInTheTable)
        );
        // A plain member kicks nobody else, in the table or not.
        let plain = live_with(true, false, false, &[]);
        assert_eq!(
            judge(&kick, &members("x"), Some(&plain), ALLOW),
            Err(Denied::NotAllowed)
        );
        assert_eq!(
            judge(&kick, &members("me:x"), Some(&plain), ALLOW),
            Err(Denied::NotAllowed)
        );
        // quit(): the caller left through the group route, then the kick naming only
        // itself; before it left, no.
        let left = live(false, false, false);
        assert_eq!(judge(&kick, &members("me"), Some(&left), ALLOW), Ok(()));
        assert_eq!(
            judge(
                &kick,
                &members("me"),
                Some(&live_with(true, false, false, &["me"])),
                ALLOW
            ),
            Err(Denied::NotInTheTable)
        );
        // The owner cannot leave (the group route refuses it), so never a self-kick.
        assert_eq!(
            judge(
                &kick,
                &members("me"),
                Some(&live_with(true, true, false, &["me"])),
                ALLOW
            ),
            Err(Denied::NotInTheTable)
        );
        // An empty kick (the route without the member segment): managers, as before.
        assert_eq!(judge(&kick, &members(""), Some(&admin(&[])), ALLOW), Ok(()));
        assert_eq!(
            judge(&kick, &members(""), Some(&plain), ALLOW),
            Err(Denied::NotAllowed)
        );
    }

    #[test]
    fn a_group_being_deleted_refuses_everyone() {
        for rule in [
            GroupRule::Member,
            GroupRule::Manager,
            GroupRule::Invite,
            GroupRule::Kick,
        ] {
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
        for rule in [
            GroupRule::Member,
            GroupRule::Manager,
            GroupRule::Invite,
            GroupRule::Kick,
        ] {
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
