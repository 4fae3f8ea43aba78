//! Bringing an app's conversations home from the vendor's export (`_Conversation`
//! records, `../shared/notes/leancloud-sunset.md` has their documented shape): what one
//! record says, which records become groups under the operator's rule, each group's
//! owner and id, and the outcome every record ends with. Pure: the readers and the
//! writes live in `im-admin` and the store.

use std::collections::HashSet;
use std::fmt;

use serde::Serialize;
use serde_json::Value;

use super::ids::{check_id, parse_group_id, MemberList};
use super::{ReservedIds, DEFAULT_MAX_MEMBERS, MAX_MAX_MEMBERS};

/// Which conversations become groups (`--groups`). Chat rooms, system conversations and
/// unique (one-to-one) chats never do, whatever the rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GroupRule {
    /// `attr.type == "group"`: what the system this service's API came from wrote.
    #[default]
    Attr,
    /// Every named conversation with members.
    Named,
    /// Every conversation with members.
    AllWithMembers,
}

impl GroupRule {
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "attr" => Some(Self::Attr),
            "named" => Some(Self::Named),
            "all-with-members" => Some(Self::AllWithMembers),
            _ => None,
        }
    }
}

/// The bounds an imported group keeps to: the routes' own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImportLimits {
    pub max_id_chars: usize,
    pub max_name_chars: usize,
    pub max_members: u64,
}

impl Default for ImportLimits {
    fn default() -> Self {
        Self {
            max_id_chars: 64,
            max_name_chars: 128,
            max_members: MAX_MAX_MEMBERS,
        }
    }
}

/// One `_Conversation` record, as far as the import reads it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Conversation {
    pub object_id: String,
    pub name: Option<String>,
    /// Members as listed (`m`), duplicates and all: the owner rule needs the order.
    pub members: Vec<String>,
    pub creator: Option<String>,
    pub transient: bool,
    pub system: bool,
    pub unique: bool,
    pub attr_type: Option<Value>,
    pub attr_group_id: Option<Value>,
    pub created_at: Option<String>,
    /// Where the export was ambiguous, the reading met (see [`Reading`]).
    pub readings: Vec<Reading>,
}

/// A reading of an ambiguous encoding that a record used, named in the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reading {
    /// `createdAt` as `{"__type": "Date", "iso": ...}` rather than a plain string.
    CreatedAtAsDate,
    /// A boolean column (`tr`, `sys`, `unique`) written as the string "true"/"false".
    BooleanAsString,
    /// `unique` absent but a `uniqueId` present: taken as unique.
    UniqueFromUniqueId,
    /// `attr.group_id` written as a string of digits.
    GroupIdAsString,
}

impl Conversation {
    /// Reads one record; the error says why it cannot be read at all.
    pub fn from_json(record: &Value) -> Result<Self, String> {
        let Some(obj) = record.as_object() else {
            return Err("the record is not a JSON object".into());
        };
        let object_id = match obj.get("objectId") {
            Some(Value::String(s)) => s.clone(),
            Some(_) => return Err("objectId is not a string".into()),
            None => return Err("the record has no objectId".into()),
        };
        let mut readings = Vec::new();
        let mut flag = |key: &str| -> Result<Option<bool>, String> {
            match obj.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Bool(b)) => Ok(Some(*b)),
                Some(Value::String(s)) if s == "true" || s == "false" => {
                    if !readings.contains(&Reading::BooleanAsString) {
                        readings.push(Reading::BooleanAsString);
                    }
                    Ok(Some(s == "true"))
                }
                Some(_) => Err(format!("{key} is not a boolean")),
            }
        };
        let transient = flag("tr")?.unwrap_or(false);
        let system = flag("sys")?.unwrap_or(false);
        let unique_flag = flag("unique")?;
        let unique = match unique_flag {
            Some(u) => u,
            None => {
                let by_id = obj
                    .get("uniqueId")
                    .and_then(Value::as_str)
                    .is_some_and(|s| !s.is_empty());
                if by_id {
                    readings.push(Reading::UniqueFromUniqueId);
                }
                by_id
            }
        };
        let name = match obj.get("name") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err("name is not a string".into()),
        };
        let members = match obj.get("m") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| v.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or("m lists something that is not a client id string")?,
            Some(_) => return Err("m is not an array".into()),
        };
        let creator = obj.get("c").and_then(Value::as_str).map(str::to_owned);
        let attr = obj.get("attr").and_then(Value::as_object);
        let created_at = match obj.get("createdAt") {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Object(d)) if d.get("__type").and_then(Value::as_str) == Some("Date") => {
                readings.push(Reading::CreatedAtAsDate);
                d.get("iso").and_then(Value::as_str).map(str::to_owned)
            }
            _ => None,
        };
        Ok(Self {
            object_id,
            name,
            members,
            creator,
            transient,
            system,
            unique,
            attr_type: attr.and_then(|a| a.get("type")).cloned(),
            attr_group_id: attr.and_then(|a| a.get("group_id")).cloned(),
            created_at,
            readings,
        })
    }
}

/// Why a record is not a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    ChatRoom,
    System,
    Unique,
    NotAGroupByTheRule,
    NoMembers,
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::ChatRoom => "a chat room (tr)",
            Self::System => "a system conversation (sys)",
            Self::Unique => "a unique (one-to-one) conversation",
            Self::NotAGroupByTheRule => "not a group by the --groups rule",
            Self::NoMembers => "no members (m)",
        })
    }
}

/// A conversation that becomes a group, checked against every rule of ours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportGroup {
    pub conversation_id: String,
    pub name: String,
    pub owner: String,
    pub members: MemberList,
    /// The id the old API's clients know it by (`attr.group_id`), if it is one of ours.
    pub wanted_id: Option<u64>,
    pub max_members: u64,
    /// The vendor's `createdAt`, when it reads as a time.
    pub created_at: Option<String>,
    /// What the report should say beside the outcome (an owner chosen, an id not kept).
    pub notes: Vec<String>,
}

/// What the rules make of one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Group(ImportGroup),
    Skip(SkipReason),
    Refuse(String),
}

/// [`judge`] after leaving out of the members the ids the app reserves (its system
/// client, its Tencent App admin: see [`ReservedIds`]), which no group has as members;
/// the group's notes say which were left out. A creator left out is no owner: the owner
/// rule picks the earliest-listed member left.
pub fn judge_for_app(
    c: &Conversation,
    rule: GroupRule,
    limits: &ImportLimits,
    reserved: &ReservedIds,
) -> Verdict {
    if !c.members.iter().any(|m| reserved.contains(m)) {
        return judge(c, rule, limits);
    }
    let mut kept = c.clone();
    kept.members.retain(|m| !reserved.contains(m));
    let mut left_out: Vec<&String> = c.members.iter().filter(|m| reserved.contains(m)).collect();
    left_out.dedup();
    match judge(&kept, rule, limits) {
        Verdict::Group(mut g) => {
            g.notes.extend(left_out.iter().map(|id| {
                format!("member {id} left out: it is the app's IM cloud system client (or App admin), never a group's member")
            }));
            Verdict::Group(g)
        }
        other => other,
    }
}

/// Decides one record under `rule`.
pub fn judge(c: &Conversation, rule: GroupRule, limits: &ImportLimits) -> Verdict {
    if c.transient {
        return Verdict::Skip(SkipReason::ChatRoom);
    }
    if c.system {
        return Verdict::Skip(SkipReason::System);
    }
    if c.unique {
        return Verdict::Skip(SkipReason::Unique);
    }
    let named = c.name.as_deref().is_some_and(|n| !n.trim().is_empty());
    let is_group = match rule {
        GroupRule::Attr => c.attr_type.as_ref().and_then(Value::as_str) == Some("group"),
        GroupRule::Named => named && !c.members.is_empty(),
        GroupRule::AllWithMembers => !c.members.is_empty(),
    };
    if !is_group {
        return Verdict::Skip(SkipReason::NotAGroupByTheRule);
    }
    if c.members.is_empty() {
        return Verdict::Skip(SkipReason::NoMembers);
    }
    if let Err(e) = check_id("objectId", &c.object_id, limits.max_id_chars) {
        return Verdict::Refuse(e.to_string());
    }
    if parse_group_id(&c.object_id).is_ok() {
        // Such an id names the group of that number's conversation (`model::policy`).
        return Verdict::Refuse(format!(
            "objectId {} reads as a group id, which only that group's conversation may be",
            c.object_id
        ));
    }
    let name = match &c.name {
        Some(n) if named => n.clone(),
        _ => return Verdict::Refuse("the conversation has no name, and a group needs one".into()),
    };
    if name.chars().count() > limits.max_name_chars {
        return Verdict::Refuse(format!(
            "name is longer than {} characters",
            limits.max_name_chars
        ));
    }
    if name.chars().any(char::is_control) {
        return Verdict::Refuse("name contains control characters".into());
    }
    let members = match MemberList::from_ids(
        "m",
        c.members.iter().map(String::as_str),
        usize::MAX,
        limits.max_id_chars,
    ) {
        Ok(m) => m,
        Err(e) => return Verdict::Refuse(e.to_string()),
    };
    if members.len() as u64 > limits.max_members {
        return Verdict::Refuse(format!(
            "{} members, more than a group may have ({})",
            members.len(),
            limits.max_members
        ));
    }
    let mut notes = Vec::new();
    let owner = owner_of(c.creator.as_deref(), &c.members, &mut notes);
    let mut readings = c.readings.clone();
    let wanted_id = wanted_id(c.attr_group_id.as_ref(), &mut notes, &mut readings);
    notes.extend(readings.iter().map(|r| {
        format!(
            "read as {}",
            serde_json::to_value(r)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default()
        )
    }));
    Verdict::Group(ImportGroup {
        conversation_id: c.object_id.clone(),
        name,
        owner,
        max_members: DEFAULT_MAX_MEMBERS.max(members.len() as u64),
        members,
        wanted_id,
        created_at: c.created_at.clone().filter(|t| looks_like_a_time(t)),
        notes,
    })
}

/// The owner: the creator while still a member, otherwise the earliest-listed member
/// (said in `notes`). `listed` is not empty.
pub fn owner_of(creator: Option<&str>, listed: &[String], notes: &mut Vec<String>) -> String {
    if let Some(c) = creator.filter(|c| listed.iter().any(|m| m == c)) {
        return c.to_owned();
    }
    let first = listed[0].clone();
    notes.push(match creator {
        Some(c) => format!("creator {c} is no longer a member: owner is {first}, listed first"),
        None => format!("no creator (c): owner is {first}, listed first"),
    });
    first
}

/// `attr.group_id` when it is a group id in our one spelling (a JSON integer, or a
/// string of digits, which is noted as a reading).
fn wanted_id(
    raw: Option<&Value>,
    notes: &mut Vec<String>,
    readings: &mut Vec<Reading>,
) -> Option<u64> {
    let raw = raw?;
    let parsed = match raw {
        Value::Number(n) => n.as_u64().and_then(|n| parse_group_id(&n.to_string()).ok()),
        Value::String(s) => {
            let id = parse_group_id(s).ok();
            if id.is_some() {
                readings.push(Reading::GroupIdAsString);
            }
            id
        }
        _ => None,
    };
    if parsed.is_none() {
        notes.push(format!(
            "attr.group_id {raw} is not a positive integer group id: a new id"
        ));
    }
    parsed
}

/// RFC 3339 as the vendor writes it (`2019-12-09T08:12:49.475Z`), checked loosely: a
/// date, a `T`, and a zone; anything else is not kept.
fn looks_like_a_time(t: &str) -> bool {
    time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).is_ok()
}

/// The group id a group gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdChoice {
    /// `attr.group_id`, kept.
    Keep(u64),
    /// A new id from the counter; `taken` when an `attr.group_id` was there but not free.
    New { taken: Option<u64> },
}

/// Keeps the wanted id when it was never issued (above `floor`, the counter's value
/// when the import began, below which any id may have been a group's) and no earlier
/// record of this run kept it.
pub fn choose_id(wanted: Option<u64>, floor: u64, kept: &mut HashSet<u64>) -> IdChoice {
    match wanted {
        Some(id) if id > floor && kept.insert(id) => IdChoice::Keep(id),
        Some(id) => IdChoice::New { taken: Some(id) },
        None => IdChoice::New { taken: None },
    }
}

/// How a record ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Imported,
    Updated,
    Unchanged,
    Skipped,
    Refused,
}

impl Outcome {
    pub const ALL: [Outcome; 5] = [
        Self::Imported,
        Self::Updated,
        Self::Unchanged,
        Self::Skipped,
        Self::Refused,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Imported => "imported",
            Self::Updated => "updated",
            Self::Unchanged => "unchanged",
            Self::Skipped => "skipped",
            Self::Refused => "refused",
        }
    }
}

/// One line of the import's JSON-lines report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReportLine {
    /// Where the record was: the file (and the member of a `.tar.gz`) and its line.
    pub source: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conversation_id: Option<String>,
    pub outcome: Outcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_id: Option<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// The counts of each outcome.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally([u64; 5]);

impl Tally {
    pub fn add(&mut self, o: Outcome) {
        self.0[o as usize] += 1;
    }

    pub fn count(&self, o: Outcome) -> u64 {
        self.0[o as usize]
    }

    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }
}

impl fmt::Display for Tally {
    /// The summary table the command prints.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{:<10} {:>9}", "outcome", "records")?;
        for o in Outcome::ALL {
            writeln!(f, "{:<10} {:>9}", o.as_str(), self.count(o))?;
        }
        write!(f, "{:<10} {:>9}", "total", self.total())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn conv(v: Value) -> Conversation {
        Conversation::from_json(&v).unwrap()
    }

    fn group(v: Value) -> ImportGroup {
        match judge(&conv(v), GroupRule::Attr, &ImportLimits::default()) {
            Verdict::Group(g) => g,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_vendors_sample_record_reads_and_is_a_unique_chat() {
        // The record from the vendor's SDK tests (the notes quote it).
        let c = conv(
            json!({"unique":true,"updatedAt":"2020-01-21T14:22:48.642Z","name":"TestConv1579603439430","objectId":"5dee02017c4cc935c85c93de","m":["T8","William"],"tr":false,"createdAt":"2019-12-09T08:12:49.475Z","c":"T8","uniqueId":"61e52ce97f2b93050655a1c83371b070","mu":[],"attr":{"alias":"TestConv1575943063325","type":4,"ts":1579603439430i64}}),
        );
        assert_eq!(c.object_id, "5dee02017c4cc935c85c93de");
        assert_eq!(c.members, ["T8", "William"]);
        assert_eq!(c.creator.as_deref(), Some("T8"));
        assert!(c.unique && !c.transient && !c.system);
        assert!(c.readings.is_empty());
        for rule in [GroupRule::Attr, GroupRule::Named, GroupRule::AllWithMembers] {
            assert_eq!(
                judge(&c, rule, &ImportLimits::default()),
                Verdict::Skip(SkipReason::Unique)
            );
        }
    }

    #[test]
    fn records_that_cannot_be_read_say_why() {
        for (v, why) in [
            (json!([1]), "not a JSON object"),
            (json!({"name": "x"}), "no objectId"),
            (json!({"objectId": 7}), "objectId is not a string"),
            (json!({"objectId": "a", "m": "bob"}), "m is not an array"),
            (
                json!({"objectId": "a", "m": ["bob", 3]}),
                "m lists something",
            ),
            (json!({"objectId": "a", "tr": 1}), "tr is not a boolean"),
        ] {
            let e = Conversation::from_json(&v).unwrap_err();
            assert!(e.contains(why), "{v}: {e}");
        }
    }

    #[test]
    fn the_rule_picks_groups_and_never_rooms_system_or_unique_chats() {
        let base = json!({"objectId": "c1", "name": "Team", "m": ["a", "b"], "c": "a"});
        let with = |extra: Value| {
            let mut v = base.clone();
            v.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            conv(v)
        };
        let l = ImportLimits::default();
        let attr_group = with(json!({"attr": {"type": "group"}}));
        let plain = with(json!({}));
        let unnamed = with(json!({"name": null}));
        assert!(matches!(
            judge(&attr_group, GroupRule::Attr, &l),
            Verdict::Group(_)
        ));
        assert_eq!(
            judge(&plain, GroupRule::Attr, &l),
            Verdict::Skip(SkipReason::NotAGroupByTheRule)
        );
        assert!(matches!(
            judge(&plain, GroupRule::Named, &l),
            Verdict::Group(_)
        ));
        assert_eq!(
            judge(&unnamed, GroupRule::Named, &l),
            Verdict::Skip(SkipReason::NotAGroupByTheRule)
        );
        // A group by the rule, but without a name: refused, since a group needs one.
        assert!(matches!(
            judge(&unnamed, GroupRule::AllWithMembers, &l),
            Verdict::Refuse(_)
        ));
        for (extra, why) in [
            (json!({"tr": true}), SkipReason::ChatRoom),
            (json!({"sys": true}), SkipReason::System),
            (json!({"unique": true}), SkipReason::Unique),
            (json!({"uniqueId": "abc"}), SkipReason::Unique),
        ] {
            let mut v = extra.clone();
            v["attr"] = json!({"type": "group"});
            let c = with(v);
            for rule in [GroupRule::Attr, GroupRule::Named, GroupRule::AllWithMembers] {
                assert_eq!(judge(&c, rule, &l), Verdict::Skip(why), "{extra}");
            }
        }
        let empty = with(json!({"m": [], "attr": {"type": "group"}}));
        assert_eq!(
            judge(&empty, GroupRule::Attr, &l),
            Verdict::Skip(SkipReason::NoMembers)
        );
        assert_eq!(
            judge(&empty, GroupRule::AllWithMembers, &l),
            Verdict::Skip(SkipReason::NotAGroupByTheRule)
        );
        assert_eq!(
            GroupRule::parse("all-with-members"),
            Some(GroupRule::AllWithMembers)
        );
        assert_eq!(GroupRule::parse("all"), None);
    }

    #[test]
    fn the_creator_owns_it_while_a_member_else_the_earliest_listed_member() {
        let g = group(
            json!({"objectId": "c1", "name": "T", "m": ["zed", "amy", "c"], "c": "c", "attr": {"type": "group"}}),
        );
        assert_eq!(g.owner, "c");
        assert!(g.notes.is_empty(), "{:?}", g.notes);
        let g = group(
            json!({"objectId": "c1", "name": "T", "m": ["zed", "amy"], "c": "gone", "attr": {"type": "group"}}),
        );
        // Listed first, not first in byte order.
        assert_eq!(g.owner, "zed");
        assert_eq!(g.members.ids(), ["amy", "zed"]);
        assert!(
            g.notes[0].contains("creator gone is no longer a member"),
            "{:?}",
            g.notes
        );
        let g =
            group(json!({"objectId": "c1", "name": "T", "m": ["amy"], "attr": {"type": "group"}}));
        assert_eq!(g.owner, "amy");
        assert!(g.notes[0].starts_with("no creator"));
    }

    #[test]
    fn reserved_ids_are_left_out_of_an_imported_groups_members() {
        let reserved = ReservedIds::new(["imsystem".to_owned()]);
        let l = ImportLimits::default();
        let c = conv(json!({
            "objectId": "c1", "name": "g", "m": ["imsystem", "bob", "carol"], "c": "imsystem",
            "attr": {"type": "group"}
        }));
        let Verdict::Group(g) = judge_for_app(&c, GroupRule::Attr, &l, &reserved) else {
            panic!("not a group");
        };
        assert_eq!(g.members.joined(), "bob:carol");
        assert_eq!(g.owner, "bob");
        assert!(
            g.notes
                .iter()
                .any(|n| n.contains("member imsystem left out")),
            "{:?}",
            g.notes
        );
        // Only reserved members: nothing to import.
        let only = conv(
            json!({"objectId": "c2", "name": "g", "m": ["imsystem"], "attr": {"type": "group"}}),
        );
        assert_eq!(
            judge_for_app(&only, GroupRule::Attr, &l, &reserved),
            Verdict::Skip(SkipReason::NoMembers)
        );
        // Without reserved members, the same as judge.
        let plain =
            conv(json!({"objectId": "c3", "name": "g", "m": ["bob"], "attr": {"type": "group"}}));
        assert_eq!(
            judge_for_app(&plain, GroupRule::Attr, &l, &reserved),
            judge(&plain, GroupRule::Attr, &l)
        );
    }

    #[test]
    fn ids_that_break_our_rules_are_refused() {
        let l = ImportLimits::default();
        let refused = |v: Value| match judge(&conv(v.clone()), GroupRule::Attr, &l) {
            Verdict::Refuse(why) => why,
            other => panic!("{v}: {other:?}"),
        };
        let a = |id: &str, m: Value| json!({"objectId": id, "name": "T", "m": m, "attr": {"type": "group"}});
        assert!(refused(a("a:b", json!(["x"]))).contains("':'"));
        assert!(refused(a(&"c".repeat(200), json!(["x"]))).contains("longer than 64"));
        assert!(refused(a("c1", json!(["x:y"]))).contains("':'"));
        assert!(refused(a("c1", json!([""]))).contains("empty"));
        assert!(refused(a("c1", json!(["a/b"]))).contains("'/'"));
        assert!(refused(a("42", json!(["x"]))).contains("reads as a group id"));
        let long = json!({"objectId": "c1", "name": "n".repeat(129), "m": ["x"], "attr": {"type": "group"}});
        assert!(refused(long).contains("longer than 128"));
        let ok = json!({"objectId": "c1", "name": "é".repeat(128), "m": ["x"], "attr": {"type": "group"}});
        assert!(matches!(
            judge(&conv(ok), GroupRule::Attr, &l),
            Verdict::Group(_)
        ));
        let many: Vec<String> = (0..5001).map(|i| format!("u{i}")).collect();
        assert!(refused(a("c1", json!(many))).contains("5001 members"));
        let fits: Vec<String> = (0..5000).map(|i| format!("u{i}")).collect();
        let g = group(a("c1", json!(fits)));
        assert_eq!((g.members.len(), g.max_members), (5000, 5000));
        assert_eq!(group(a("c1", json!(["x", "x", "y"]))).max_members, 500);
    }

    #[test]
    fn attr_group_id_is_wanted_only_in_our_form() {
        let with = |id: Value| {
            group(
                json!({"objectId": "c1", "name": "T", "m": ["x"], "attr": {"type": "group", "group_id": id}}),
            )
        };
        assert_eq!(with(json!(42)).wanted_id, Some(42));
        let s = with(json!("42"));
        assert_eq!(s.wanted_id, Some(42));
        assert!(
            s.notes.iter().any(|n| n == "read as group_id_as_string"),
            "{:?}",
            s.notes
        );
        for bad in [
            json!(0),
            json!(-3),
            json!(4.5),
            json!("042"),
            json!(9007199254740992u64),
            json!({"x": 1}),
        ] {
            let g = with(bad.clone());
            assert_eq!(g.wanted_id, None, "{bad}");
            assert!(g.notes.iter().any(|n| n.contains("a new id")), "{bad}");
        }
    }

    #[test]
    fn an_id_is_kept_once_and_only_above_the_counter() {
        let mut kept = HashSet::new();
        assert_eq!(choose_id(Some(50), 10, &mut kept), IdChoice::Keep(50));
        assert_eq!(
            choose_id(Some(50), 10, &mut kept),
            IdChoice::New { taken: Some(50) }
        );
        assert_eq!(
            choose_id(Some(10), 10, &mut kept),
            IdChoice::New { taken: Some(10) }
        );
        assert_eq!(
            choose_id(None, 10, &mut kept),
            IdChoice::New { taken: None }
        );
    }

    #[test]
    fn ambiguous_encodings_are_read_both_ways_and_named() {
        let c = conv(
            json!({"objectId": "c1", "tr": "false", "createdAt": {"__type": "Date", "iso": "2020-01-01T00:00:00.000Z"}}),
        );
        assert_eq!(c.created_at.as_deref(), Some("2020-01-01T00:00:00.000Z"));
        assert_eq!(
            c.readings,
            [Reading::BooleanAsString, Reading::CreatedAtAsDate]
        );
        let g = group(
            json!({"objectId": "c1", "name": "T", "m": ["x"], "attr": {"type": "group"}, "createdAt": "not a time"}),
        );
        assert_eq!(g.created_at, None);
    }

    #[test]
    fn the_tally_counts_and_prints_every_outcome() {
        let mut t = Tally::default();
        for o in [Outcome::Imported, Outcome::Imported, Outcome::Refused] {
            t.add(o);
        }
        assert_eq!((t.count(Outcome::Imported), t.total()), (2, 3));
        let table = t.to_string();
        assert!(
            table.contains("imported           2") && table.ends_with("total              3"),
            "{table}"
        );
    }
}
