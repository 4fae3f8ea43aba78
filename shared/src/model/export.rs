//! The open format an app's groups leave in (`im-admin export`) and come back from
//! (`im-admin import groups`): one JSON object per line and group, its fields in a fixed
//! order, so the same groups always give the same bytes. `docs/export.schema.json` is
//! its JSON Schema; a change of shape is a new [`SCHEMA_VERSION`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::ids::{check_id, conversation_may_link, parse_group_id, MemberList};
use super::import::ImportLimits;
use super::Invalid;

/// The format's version, in every line.
pub const SCHEMA_VERSION: u32 = 1;

/// The IM clouds a group can be linked to, by the name a line gives them.
pub const LEANCLOUD: &str = "leancloud";
pub const TENCENT: &str = "tencent";

/// One live group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupLine {
    pub schema_version: u32,
    pub group_id: u64,
    pub name: String,
    pub owner: String,
    /// Byte order.
    pub admins: Vec<String>,
    /// Byte order; the owner and the admins among them.
    pub members: Vec<String>,
    pub max_members: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub avatar_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The group's conversation in each IM cloud it is linked in, by cloud
    /// ([`LEANCLOUD`] today; [`TENCENT`] once groups are linked there).
    pub conversations: BTreeMap<String, String>,
    pub created_at: String,
    pub updated_at: String,
}

/// A line, checked against the rules every group keeps; members and admins in their
/// normal form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedLine {
    pub line: GroupLine,
    pub members: MemberList,
    pub admins: MemberList,
}

impl GroupLine {
    /// Checks a line read back: every id by our id rules, the owner and admins members,
    /// the limits, and a conversation only in the clouds this service links.
    pub fn check(self, limits: &ImportLimits) -> Result<CheckedLine, Invalid> {
        if self.schema_version != SCHEMA_VERSION {
            return Err(Invalid::new(format!(
                "schema_version {} is not {SCHEMA_VERSION}",
                self.schema_version
            )));
        }
        parse_group_id(&self.group_id.to_string())?;
        if self.name.trim().is_empty()
            || self.name.chars().count() > limits.max_name_chars
            || self.name.chars().any(char::is_control)
        {
            return Err(Invalid::new(format!(
                "name must be 1 to {} characters, without control characters",
                limits.max_name_chars
            )));
        }
        let ids = |field: &str, list: &[String]| {
            MemberList::from_ids(
                field,
                list.iter().map(String::as_str),
                usize::MAX,
                limits.max_id_chars,
            )
        };
        let members = ids("members", &self.members)?;
        let admins = ids("admins", &self.admins)?;
        check_id("owner", &self.owner, limits.max_id_chars)?;
        if !members.ids().contains(&self.owner) {
            return Err(Invalid::new("the owner is not among the members"));
        }
        if admins
            .ids()
            .iter()
            .any(|a| *a == self.owner || !members.ids().contains(a))
        {
            return Err(Invalid::new(
                "every admin must be a member other than the owner",
            ));
        }
        if self.max_members < members.len() as u64 || self.max_members > limits.max_members {
            return Err(Invalid::new(format!(
                "max_members must be between the member count and {}",
                limits.max_members
            )));
        }
        for (cloud, conversation) in &self.conversations {
            if cloud != LEANCLOUD {
                return Err(Invalid::new(format!(
                    "conversations.{cloud}: this service links groups in {LEANCLOUD} only"
                )));
            }
            check_id("conversations.leancloud", conversation, limits.max_id_chars)?;
            if !conversation_may_link(conversation, self.group_id) {
                return Err(Invalid::new("the conversation id is another group's id"));
            }
        }
        for t in [&self.created_at, &self.updated_at] {
            if time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                .is_err()
            {
                return Err(Invalid::new(format!("{t:?} is not an RFC 3339 time")));
            }
        }
        Ok(CheckedLine {
            line: self,
            members,
            admins,
        })
    }

    /// The conversation linked in LeanCloud, if any.
    pub fn leancloud(&self) -> Option<&str> {
        self.conversations.get(LEANCLOUD).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn line() -> serde_json::Value {
        json!({"schema_version": 1, "group_id": 7, "name": "Team", "owner": "amy",
            "admins": ["bob"], "members": ["amy", "bob", "cy"], "max_members": 500,
            "conversations": {"leancloud": "5dee02017c4cc935c85c93de"},
            "created_at": "2020-01-01T00:00:00.000Z", "updated_at": "2026-12-01T00:00:00Z"})
    }

    fn check(v: serde_json::Value) -> Result<CheckedLine, String> {
        serde_json::from_value::<GroupLine>(v)
            .map_err(|e| e.to_string())?
            .check(&ImportLimits::default())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn a_line_writes_its_fields_in_one_order_and_reads_back() {
        let parsed: GroupLine = serde_json::from_value(line()).unwrap();
        let text = serde_json::to_string(&parsed).unwrap();
        assert!(text.starts_with(r#"{"schema_version":1,"group_id":7,"name":"Team","owner":"amy","admins":["bob"],"members":["amy","bob","cy"],"max_members":500,"conversations":{"leancloud":"#), "{text}");
        let again: GroupLine = serde_json::from_str(&text).unwrap();
        assert_eq!(again, parsed);
        assert!(check(line()).is_ok());
    }

    #[test]
    fn lines_that_break_a_rule_are_refused() {
        let with = |k: &str, v: serde_json::Value| {
            let mut l = line();
            l[k] = v;
            l
        };
        for (bad, why) in [
            (with("schema_version", json!(2)), "schema_version"),
            (with("group_id", json!(0)), "group_id"),
            (with("owner", json!("zed")), "owner is not among"),
            (with("admins", json!(["amy"])), "every admin"),
            (with("admins", json!(["zed"])), "every admin"),
            (with("members", json!(["amy", "a:b"])), "':'"),
            (with("max_members", json!(2)), "max_members"),
            (with("max_members", json!(5001)), "max_members"),
            (with("name", json!("")), "name"),
            (
                with("conversations", json!({"tencent": "x"})),
                "leancloud only",
            ),
            (
                with("conversations", json!({"leancloud": "8"})),
                "another group's id",
            ),
            (with("created_at", json!("yesterday")), "RFC 3339"),
            (with("extra", json!(1)), "unknown field"),
        ] {
            let e = check(bad.clone()).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
        assert!(check(with("conversations", json!({"leancloud": "7"}))).is_ok());
    }
}
