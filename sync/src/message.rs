//! The system message a group change posts to its conversation: LeanCloud's typed
//! message JSON (`_lctype`, `_lctext`, `_lcattrs`), whose attributes carry the event, the
//! group, the members concerned and who did it, so that apps can render it their way; and
//! Tencent's system notification, the same fields in one JSON object.

use serde_json::{json, Value};

use crate::records::LastChange;

/// The vendor's limit on one message.
const MAX_MESSAGE_BYTES: usize = 5 * 1024;
/// `_lctype` of a plain text message.
const TEXT: i64 = -1;

/// The message text for a change of `group_id` (named `group_name` after it).
pub fn for_change(group_id: u64, group_name: &str, change: &LastChange) -> String {
    let typed = |text: &str, attrs: Value| {
        json!({ "_lctype": TEXT, "_lctext": text, "_lcattrs": attrs }).to_string()
    };
    within(MAX_MESSAGE_BYTES, group_id, group_name, change, typed)
}

/// Tencent's group system notification for a change: one JSON object with the same
/// event fields as LeanCloud's message attributes, and the text beside them.
pub fn notification_for_change(group_id: u64, group_name: &str, change: &LastChange) -> String {
    let flat = |text: &str, mut attrs: Value| {
        attrs["text"] = json!(text);
        attrs.to_string()
    };
    within(MAX_NOTIFICATION_BYTES, group_id, group_name, change, flat)
}

/// Tencent documents no limit on a system notification's `Content`; one like LeanCloud's
/// keeps it within any.
const MAX_NOTIFICATION_BYTES: usize = MAX_MESSAGE_BYTES;

/// The change's text and event fields, put in `shape`, within `max` bytes.
fn within(
    max: usize,
    group_id: u64,
    group_name: &str,
    change: &LastChange,
    shape: impl Fn(&str, Value) -> String,
) -> String {
    let members = change.members.join(", ");
    let text = match change.event.as_str() {
        "created" => format!("{} created the group {group_name}", change.by),
        "members_added" => format!("{} added {members}", change.by),
        "members_removed" => format!("{} removed {members}", change.by),
        "member_left" => format!("{} left the group", change.by),
        "renamed" => format!("{} renamed the group to {group_name}", change.by),
        "owner_changed" => format!("{} handed the group over to {members}", change.by),
        "dismissed" => format!("{} dismissed the group", change.by),
        other => format!("{} changed the group ({other})", change.by),
    };
    let message = |text: &str, members: Value, truncated: bool| {
        let mut attrs = json!({
            "event": change.event,
            "group_id": group_id,
            "members": members,
            "by": change.by,
        });
        if truncated {
            attrs["members_truncated"] = json!(true);
            attrs["member_count"] = json!(change.members.len());
        }
        shape(text, attrs)
    };
    let full = message(&text, json!(change.members), false);
    if full.len() <= max {
        return full;
    }
    // 96 members of 64 characters do not fit: keep the event, say how many, name none.
    let short = match change.event.as_str() {
        "members_added" => format!("{} added {} members", change.by, change.members.len()),
        "members_removed" => format!("{} removed {} members", change.by, change.members.len()),
        _ => format!("{} changed the group", change.by),
    };
    message(&short, json!([]), true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(event: &str, members: Vec<String>) -> LastChange {
        LastChange {
            event: event.into(),
            by: "alice".into(),
            members,
            at: "2026-11-26T00:00:00Z".into(),
            bulk: false,
        }
    }

    #[test]
    fn a_message_carries_event_group_members_and_actor() {
        let m: Value = serde_json::from_str(&for_change(
            42,
            "crew",
            &change("members_added", vec!["bob".into(), "carol".into()]),
        ))
        .unwrap();
        assert_eq!(m["_lctype"], -1);
        assert_eq!(m["_lctext"], "alice added bob, carol");
        assert_eq!(
            m["_lcattrs"],
            json!({"event": "members_added", "group_id": 42, "members": ["bob", "carol"], "by": "alice"})
        );
    }

    #[test]
    fn a_long_member_list_is_cut_to_fit_the_vendors_limit() {
        let many: Vec<String> = (0..96).map(|i| format!("{i:064}")).collect();
        let text = for_change(1, "g", &change("members_removed", many));
        assert!(text.len() <= MAX_MESSAGE_BYTES, "{}", text.len());
        let m: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(m["_lcattrs"]["member_count"], 96);
        assert_eq!(m["_lcattrs"]["members_truncated"], true);
        assert_eq!(m["_lctext"], "alice removed 96 members");
    }

    #[test]
    fn a_notification_carries_the_same_fields_beside_its_text() {
        let n: Value = serde_json::from_str(&notification_for_change(
            42,
            "crew",
            &change("members_added", vec!["bob".into(), "carol".into()]),
        ))
        .unwrap();
        assert_eq!(
            n,
            json!({"event": "members_added", "group_id": 42, "members": ["bob", "carol"], "by": "alice", "text": "alice added bob, carol"})
        );
    }
}
