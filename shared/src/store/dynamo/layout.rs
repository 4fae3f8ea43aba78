//! The table's items and keys: the one place that builds a key. One table, keyed
//! `pk`/`sk` (its definition lives once, in `template.yaml`):
//!
//! | item | pk | sk | attributes |
//! | --- | --- | --- | --- |
//! | app | `APP` | app id | `master_key`, `token_keys` (how many token keys were ever added), `im_cloud` (map: `server`, `mirroring`, `system_messages`, `system_client`, `on_delete`), `tencent` (map: `server`, `sdk_app_id`, `admin_identifier`, `group_type`, `mirroring`, `system_messages`, `on_delete`, `max_calls_per_second`, `usersig_expire`, `group_id_prefix`), `tencent_key` (Tencent's secret key, beside the map, never in it), `created_at`, `updated_at`; a removed app keeps only `removed_at` (a tombstone: the id is never registered again, since the app's groups and links stay in the table) |
//! | reserved client ids | `RESERVED` | app id | `leancloud` (the app's system client), `tencent` (its App admin): written with the settings that name them, in one transaction; read by the group functions, which refuse them as members (they cannot read the app item, which holds the master key; see [`crate::model::ReservedIds`]) |
//! | token secret | `TOKEN_KEY` | key id (`kid`) | `app_id`, `secret`, `status` (active, retired), `created_at` |
//! | group-id counter | `COUNTER` | `GROUP_ID` | `next_id` |
//! | import floor | `COUNTER` | `IMPORT_FLOOR#<app id>` | `floor`: the counter's value when the app's first `im-admin import` began (an id kept from an export must be above it: below it, any id may have been a group's), kept so that a re-run judges ids as the first run did |
//! | group | `GROUP#<id>` | `META` | `group_id`, `app_id`, `group_name`, `owner`, `admins` (string set), `status` (active, deleting, importing: an import is writing its members; creating: a create of more members than one transaction takes is writing them; no reader takes either as live), `member_count`, `max_members`, `places_left` (`max_members` − `member_count`, kept with every add and removal so that an add's condition can check room without a read), `version`, `avatar_url`, `description`, `conversation_id`, `pending_conversation` (a `creating` group's conversation id, which becomes `conversation_id` when it goes live), `pending_add_<token>` (one per big add under way: the places it reserved; see `store::dynamo::bulk`), `mirrored_conversation` (the conversation the IM cloud mirror made and linked, if it did), `last_change` (map: `event`, `by`, `members`, `at`: the change the write made, for the IM cloud mirror's messages; `imported` for the import's own writes, which the mirror neither mirrors nor announces), `created_at`, `updated_at` |
//! | group sync state, one per IM cloud | `GROUP#<id>` | `SYNC` (LeanCloud's), `SYNC#tencent` (see [`sync_sk`]) | `seq` (the last stream record applied, 40 digits), `status` (ok, failed), `error`, `at`, `held`/`held_why`/`held_at` (the first record not applied after a try stopped, which the group's later records wait for), `dismissed` (true once the group's dismissal reached the IM cloud), `creation_marker` (a random value written before the mirror's create call and put in the conversation's `attr.mirror_marker`: how a try whose answer was lost recognises its own conversation), `remote_id` (the group's id in a cloud whose ids the mirror picks: Tencent's), `note` (what the mirror changed on the way, e.g. a name cut to the cloud's limit), `expires_at` once the group is gone |
//! | member | `GROUP#<id>` | `MEMBER#<client id>` | `client_id`, `group_id`, `joined_at`, `gsi1pk` = `CLIENT#<app id>:<client id>`, `gsi1sk` = `GROUP#<id, 20 digits>` (index `gsi1`: a client's groups, in id order), `via` = `import` on a member the import wrote (the IM cloud has it already: the mirror skips its insert), `pending` = the token of the big add that wrote it (not a member while the group item has `pending_add_<token>`; removed once the add is committed) |
//! | conversation link | `CONV#<app id>:<conversation id>` | `CONV` | `group_id`: the one group whose conversation this is; `closed_at` once that group is deleted or moved to another conversation (a tombstone: only the app's backend gets signatures on it, until a group links it again); `importing` = a group id while an import brings that group in (without `group_id`, or beside a tombstone's: readers see the conversation as it was until the import makes the group live) |
//! | deferred records | `DEFER#<group id>` | `<cloud>#<first record, 40 digits>` | `records` (the mirror's records of one batch, JSON), `last` (the last of them, 40 digits), `app_id`: records the mirror put aside while the app was over its IM cloud's quota, applied in order by the next drain (see `store::dynamo::deferred`) |
//! | deferral index | `DEFERRED` | `<cloud>#<group id>` | `app_id`, `due` (epoch ms: when the drain may apply the group's deferred records), `version` (one more at each deferral: a drain ends the deferral only if none came meanwhile), `lease_until` (epoch ms: a drain is applying them) |
//! | idempotency record | `IDEM#<app id>:<client id>:<key>` | `IDEM` | `fingerprint`, the created group's `group_id`, `group_name`, `owner`, `member_client_ids`, `expires_at` (epoch seconds: the table's TTL attribute) |
//!
//! Ids never contain `:` (see [`crate::model::ids::check_id`]), so these keys cannot collide.
//!
//! What other crates read of a key (the stream's filter and records, the tests) is public
//! here: they never spell one themselves.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::model::{Caller, GroupMeta, DEFAULT_MAX_MEMBERS};

pub const PK: &str = "pk";
pub const SK: &str = "sk";
pub(super) const APP_PK: &str = "APP";
/// On an app item: the app was removed (the item is its tombstone).
pub(super) const REMOVED_AT: &str = "removed_at";
pub(super) const TOKEN_KEY_PK: &str = "TOKEN_KEY";
pub(super) const RESERVED_PK: &str = "RESERVED";
pub(super) const COUNTER_PK: &str = "COUNTER";
pub(super) const COUNTER_SK: &str = "GROUP_ID";
/// The sort key of a group item (its partition is the group's, [`group_pk`]).
pub const META_SK: &str = "META";
pub(super) const LINK_SK: &str = "CONV";
pub(super) const IDEM_SK: &str = "IDEM";
/// A member item's sort key: this, then the client id.
pub const MEMBER_PREFIX: &str = "MEMBER#";
/// A group's partition key (its group item, member items and sync state): this, then the
/// group id.
pub const GROUP_PREFIX: &str = "GROUP#";
/// The member items' index: a client's groups.
pub(super) const GSI1: &str = "gsi1";
/// The index's partition key, on member items: [`member_gsi1pk`].
pub(super) const GSI1PK: &str = "gsi1pk";
/// The index's sort key, on member items: [`member_gsi1sk`].
pub(super) const GSI1SK: &str = "gsi1sk";
const CLIENT_PREFIX: &str = "CLIENT#";
pub(super) const SYNC_SK: &str = "SYNC";
pub(super) const ACTIVE: &str = "active";
pub(super) const DELETING: &str = "deleting";
/// A group created with more members than one transaction takes, while its member items
/// are written: no reader takes it as live (`store::dynamo::bulk`).
pub(super) const CREATING: &str = "creating";
/// On a group item, one attribute per big add under way (`pending_add_<token>` = the
/// places it reserved): top-level attributes, so that a reserve can set one with a
/// condition on it alone.
pub(super) const PENDING_ADD_PREFIX: &str = "pending_add_";

pub(super) fn pending_add_attr(token: &str) -> String {
    format!("{PENDING_ADD_PREFIX}{token}")
}
/// On a member item: the big add that wrote it (a member only once its token has left
/// the group item's `pending_adds`).
pub(super) const PENDING: &str = "pending";

/// Whether a member item (as read, with its `pending` attribute) is a member of the
/// group as read: one a big add is still writing is not.
pub(super) fn member_counts(
    item: &Item,
    pending_adds: &std::collections::BTreeSet<String>,
) -> bool {
    match item.get(PENDING).and_then(|v| v.as_s().ok()) {
        Some(token) => !pending_adds.contains(token),
        None => true,
    }
}
pub(super) const RETIRED: &str = "retired";
pub type Item = HashMap<String, AttributeValue>;

/// The sort key of a group's sync state in `cloud`. LeanCloud's keeps the key it had
/// before there was a second cloud.
pub(super) fn sync_sk(cloud: crate::model::CloudId) -> String {
    match cloud {
        crate::model::CloudId::LeanCloud => SYNC_SK.to_owned(),
        other => format!("{SYNC_SK}#{}", other.as_str()),
    }
}

pub(super) const DEFERRED_PK: &str = "DEFERRED";

/// A group's deferred records in `cloud`, from the record `first` (padded) on.
pub(super) fn deferred_key(group_id: u64, cloud: crate::model::CloudId, first: &str) -> Item {
    key(deferred_pk(group_id), format!("{}#{first}", cloud.as_str()))
}

pub(super) fn deferred_pk(group_id: u64) -> String {
    format!("DEFER#{group_id}")
}

/// The deferral index's entry for a group in `cloud`.
pub(super) fn deferral_key(group_id: u64, cloud: crate::model::CloudId) -> Item {
    key(DEFERRED_PK, format!("{}#{group_id}", cloud.as_str()))
}

pub fn group_pk(id: u64) -> String {
    format!("{GROUP_PREFIX}{id}")
}

/// The group id of a group's partition key ([`group_pk`]); `None` for any other key.
pub fn group_of_pk(pk: &str) -> Option<u64> {
    pk.strip_prefix(GROUP_PREFIX)?.parse().ok()
}

/// A member item's index partition key: the client, within its app.
pub(super) fn member_gsi1pk(app_id: &str, client_id: &str) -> String {
    format!("{CLIENT_PREFIX}{app_id}:{client_id}")
}

/// The app of a member item's index partition key ([`member_gsi1pk`]; ids never
/// contain `:`).
pub fn app_of_member_gsi1pk(gsi1pk: &str) -> Option<&str> {
    let (app_id, _client) = gsi1pk.strip_prefix(CLIENT_PREFIX)?.split_once(':')?;
    Some(app_id)
}

/// A member item's index sort key: its group's id, padded to 20 digits so that the
/// index orders a client's groups by id.
pub(super) fn member_gsi1sk(group_id: u64) -> String {
    format!("{GROUP_PREFIX}{group_id:020}")
}

/// The group id of a member item's index sort key ([`member_gsi1sk`]).
pub(super) fn group_of_member_gsi1sk(gsi1sk: &str) -> Option<u64> {
    gsi1sk.strip_prefix(GROUP_PREFIX)?.parse().ok()
}

pub fn member_sk(client_id: &str) -> String {
    format!("{MEMBER_PREFIX}{client_id}")
}

pub(super) fn link_key(app_id: &str, conversation_id: &str) -> Item {
    key(format!("CONV#{app_id}:{conversation_id}"), LINK_SK)
}

pub(super) fn idempotency_key(caller: &Caller, key_text: &str) -> Item {
    key(
        format!("IDEM#{}:{}:{key_text}", caller.app_id, caller.client_id),
        IDEM_SK,
    )
}

pub(super) fn number(n: u64) -> AttributeValue {
    AttributeValue::N(n.to_string())
}

pub(super) fn epoch_now() -> u64 {
    OffsetDateTime::now_utc().unix_timestamp().max(0) as u64
}

pub(super) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub fn key(pk: impl Into<String>, sk: impl Into<String>) -> Item {
    HashMap::from([(PK.to_owned(), s(pk)), (SK.to_owned(), s(sk))])
}

pub(super) fn now_rfc3339() -> String {
    OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_owned())
}

/// The `last_change` a group write records: the event, who made it, the members it
/// concerns, and when (which also makes two equal changes in a row differ).
pub(super) fn last_change(
    event: crate::model::ChangeEvent,
    by: &str,
    members: &[String],
    now: &str,
) -> AttributeValue {
    AttributeValue::M(HashMap::from([
        ("event".to_owned(), s(event.as_str())),
        ("by".to_owned(), s(by)),
        (
            "members".to_owned(),
            AttributeValue::L(members.iter().map(|m| s(m.as_str())).collect()),
        ),
        ("at".to_owned(), s(now)),
    ]))
}

pub(super) fn string_set(ids: &[String]) -> AttributeValue {
    AttributeValue::Ss(ids.to_vec())
}

/// The group item's key.
pub fn meta_key(group_id: u64) -> Item {
    key(group_pk(group_id), META_SK)
}

pub(super) fn member_item(app_id: &str, group_id: u64, client_id: &str, now: &str) -> Item {
    let mut item = key(group_pk(group_id), member_sk(client_id));
    item.insert("client_id".into(), s(client_id));
    item.insert("group_id".into(), AttributeValue::N(group_id.to_string()));
    item.insert("joined_at".into(), s(now));
    item.insert(GSI1PK.into(), s(member_gsi1pk(app_id, client_id)));
    item.insert(GSI1SK.into(), s(member_gsi1sk(group_id)));
    item
}

/// A group item as read back; `None` for anything that is not one.
pub(super) fn meta_from_item(item: &HashMap<String, AttributeValue>) -> Option<GroupMeta> {
    let text = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
    let number = |k: &str| {
        item.get(k)
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse::<u64>().ok())
    };
    Some(GroupMeta {
        group_id: number("group_id").unwrap_or_default(),
        app_id: text("app_id")?,
        group_name: text("group_name").unwrap_or_default(),
        owner: text("owner").unwrap_or_default(),
        admins: item
            .get("admins")
            .and_then(|v| v.as_ss().ok())
            .map(|v| v.iter().cloned().collect())
            .unwrap_or_default(),
        live: text("status").as_deref() == Some(ACTIVE),
        member_count: number("member_count").unwrap_or_default(),
        max_members: number("max_members").unwrap_or(DEFAULT_MAX_MEMBERS),
        version: number("version").unwrap_or_default(),
        avatar_url: text("avatar_url"),
        description: text("description"),
        conversation_id: text("conversation_id"),
        created_at: text("created_at").unwrap_or_default(),
        updated_at: text("updated_at").unwrap_or_default(),
        sync: Vec::new(),
        places_left: number("places_left").unwrap_or_default(),
        pending_adds: item
            .keys()
            .filter_map(|k| k.strip_prefix(PENDING_ADD_PREFIX).map(str::to_owned))
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn a_member_item_of_a_big_add_counts_once_its_token_left_the_group_item() {
        let mut item = member_item("app", 7, "bob", "2026-12-02T00:00:00Z");
        let none = BTreeSet::new();
        let pending = BTreeSet::from(["t1".to_owned()]);
        assert!(member_counts(&item, &none) && member_counts(&item, &pending));
        item.insert(PENDING.into(), s("t1"));
        assert!(!member_counts(&item, &pending), "its add is under way");
        assert!(member_counts(&item, &none), "its add committed");
        assert!(member_counts(&item, &BTreeSet::from(["t2".to_owned()])));
    }

    #[test]
    fn the_keys_read_back_what_they_were_built_of() {
        let item = member_item("app-1", 7, "bob", "2026-12-02T00:00:00Z");
        let text = |k: &str| item[k].as_s().unwrap().as_str();
        assert_eq!((text(PK), text(SK)), ("GROUP#7", "MEMBER#bob"));
        assert_eq!(group_of_pk(text(PK)), Some(7));
        assert_eq!(text(SK).strip_prefix(MEMBER_PREFIX), Some("bob"));
        assert_eq!(text(GSI1PK), "CLIENT#app-1:bob");
        assert_eq!(app_of_member_gsi1pk(text(GSI1PK)), Some("app-1"));
        assert_eq!(text(GSI1SK), "GROUP#00000000000000000007");
        assert_eq!(group_of_member_gsi1sk(text(GSI1SK)), Some(7));
        assert_eq!(meta_key(7)[SK].as_s().unwrap(), META_SK);
        for not_a_group in ["APP", "GROUP#", "GROUP#x", "CONV#a:b", "DEFER#7"] {
            assert_eq!(group_of_pk(not_a_group), None, "{not_a_group}");
        }
        assert_eq!(app_of_member_gsi1pk("CLIENT#app-1"), None);
    }

    #[test]
    fn a_group_item_tells_its_adds_under_way_and_its_room() {
        let mut item = meta_key(7);
        for (k, v) in [("app_id", s("app")), ("status", s(ACTIVE))] {
            item.insert(k.into(), v);
        }
        item.insert("member_count".into(), number(10));
        item.insert("max_members".into(), number(50));
        item.insert("places_left".into(), number(40));
        let m = meta_from_item(&item).unwrap();
        assert_eq!(m.places_left, 40);
        assert!(m.pending_adds.is_empty());
        item.insert("places_left".into(), number(15));
        item.insert(pending_add_attr("t1"), number(25));
        let m = meta_from_item(&item).unwrap();
        assert_eq!(m.places_left, 15, "25 places are reserved");
        assert_eq!(m.pending_adds, BTreeSet::from(["t1".to_owned()]));
    }
}
