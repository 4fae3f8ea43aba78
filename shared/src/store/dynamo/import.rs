//! The import's writes (`im-admin import`): a group brought in whole or not at all, found
//! again by its conversation on a re-run, and brought up to date through conditional
//! writes on its version; and the id counter kept above every id the import keeps.
//!
//! A group small enough for one transaction (its item, its link and its members) is one
//! transaction; new ones of conversations the app has no link for go several to a
//! transaction (`import_packs`, `import_new_pack`), each with its own conditions, so that
//! an export of 10,000 conversations costs ~0.13 calls a group, not 2.5
//! (docs/decisions/0010-import-packed-transactions.md; `make bench` measures it in
//! BENCHMARKS.md). A larger one is written in three steps, none of which shows a reader
//! anything until the last:
//! 1. one transaction: the group item with `status = importing` (no reader takes it as
//!    live: `meta_from_item`'s `live`, the member-groups listing, the signature rules and
//!    every route's `live_in_app` condition all want `active`), and the conversation's
//!    link item marked `importing = <group id>` without a `group_id` (the signature rules
//!    read only `group_id` and `closed_at`, so the conversation stays as it was: unlinked,
//!    or a tombstone);
//! 2. the members, by BatchWriteItem (25 a call, unprocessed items retried): member items
//!    of a group that is not live are listed nowhere;
//! 3. one transaction: the group `active` and the link's `group_id` set.
//!
//! A crash anywhere leaves the `importing` mark on the link, by which a re-run finds the
//! group and finishes it.

use std::collections::BTreeSet;

use aws_sdk_dynamodb::types::{Delete, Put, PutRequest, TransactWriteItem, Update, WriteRequest};

use super::expr::UpdateExpr;
use super::layout::*;
use super::{build_err, is_condition_failure, sdk_err, DynamoStore, TxOutcome};
use crate::model::{ChangeEvent, GroupMeta, MemberList};
use crate::store::StoreError;

/// The group item's status while an import writes its members.
const IMPORTING: &str = "importing";
/// On a conversation link: the group an unfinished import is bringing in for it.
const IMPORTING_LINK: &str = "importing";
/// On a member item the import wrote: the IM cloud has that member already
/// (`im-sync`'s records skip its insert).
pub const VIA: &str = "via";
pub const VIA_IMPORT: &str = "import";
/// Who `last_change` says made an imported group's change.
const BY: &str = "im-admin import";
/// A transaction's item limit.
const TX_ITEMS: usize = 100;

/// A group as the import writes it.
#[derive(Debug, Clone)]
pub struct ImportedGroup<'a> {
    pub app_id: &'a str,
    pub group_id: u64,
    pub name: &'a str,
    pub owner: &'a str,
    pub admins: &'a [String],
    pub members: &'a MemberList,
    pub max_members: u64,
    pub avatar_url: Option<&'a str>,
    pub description: Option<&'a str>,
    pub conversation_id: Option<&'a str>,
    /// Kept from the source when given (the vendor's `createdAt`, an export's times).
    pub created_at: Option<&'a str>,
    pub updated_at: Option<&'a str>,
}

/// What the table already holds for a conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Existing {
    /// Nothing live: the import may bring the group in.
    Nothing,
    /// An import stopped half-way bringing in this group: finish it.
    Unfinished(u64),
    /// A live group of the app is linked to it.
    Live(Box<GroupMeta>),
    /// A group that is being deleted still holds it.
    Busy(u64),
}

/// How a write ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Written {
    Imported,
    Updated,
    Unchanged,
    /// The group id is another group's (or was).
    IdTaken,
    /// Another group (or another import) holds the conversation.
    ConversationTaken,
}

fn import_floor_key(app_id: &str) -> Item {
    key(COUNTER_PK, format!("IMPORT_FLOOR#{app_id}"))
}

impl DynamoStore {
    /// The counter's value before the app's first import began (kept, so that a re-run
    /// after a crash judges ids as the first run did), with the counter raised to at least
    /// `highest`, so that no route is ever issued an id the import keeps. With `dry_run`,
    /// nothing is written: the floor the import would use.
    pub async fn import_floor(
        &self,
        app_id: &str,
        highest: u64,
        dry_run: bool,
    ) -> Result<u64, StoreError> {
        let read = |k: Item, attr: &'static str| async move {
            let out = self
                .client
                .get_item()
                .table_name(&self.table)
                .set_key(Some(k))
                .consistent_read(true)
                .send()
                .await
                .map_err(|e| sdk_err("GetItem(counter)", e))?;
            Ok::<_, StoreError>(
                out.item()
                    .and_then(|i| i.get(attr))
                    .and_then(|v| v.as_n().ok())
                    .and_then(|n| n.parse::<u64>().ok()),
            )
        };
        let floor = match read(import_floor_key(app_id), "floor").await? {
            Some(f) => f,
            None => {
                let now = read(key(COUNTER_PK, COUNTER_SK), "next_id")
                    .await?
                    .unwrap_or(0);
                if dry_run {
                    return Ok(now);
                }
                let mut item = import_floor_key(app_id);
                item.insert("floor".into(), number(now));
                let put = self
                    .client
                    .put_item()
                    .table_name(&self.table)
                    .set_item(Some(item))
                    .condition_expression("attribute_not_exists(pk)")
                    .send()
                    .await;
                match put {
                    Ok(_) => now,
                    Err(e) if is_condition_failure(&e) => read(import_floor_key(app_id), "floor")
                        .await?
                        .unwrap_or(now),
                    Err(e) => return Err(sdk_err("PutItem(import floor)", e)),
                }
            }
        };
        if !dry_run && highest > 0 {
            self.raise_counter(highest).await?;
        }
        Ok(floor)
    }

    /// Makes the counter at least `to`, so that the next id it issues is above it.
    pub async fn raise_counter(&self, to: u64) -> Result<(), StoreError> {
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(COUNTER_PK, COUNTER_SK)))
            .update_expression(UpdateExpr::new().set("next_id = :to").text())
            .condition_expression("attribute_not_exists(next_id) OR next_id < :to")
            .expression_attribute_values(":to", number(to))
            .send()
            .await;
        match out {
            Ok(_) => Ok(()),
            Err(e) if is_condition_failure(&e) => Ok(()),
            Err(e) => Err(sdk_err("UpdateItem(counter)", e)),
        }
    }

    /// A fresh group id, as a create takes one.
    pub async fn new_group_id(&self) -> Result<u64, StoreError> {
        self.next_group_id().await
    }

    /// What the table holds for the app's `conversation_id`.
    pub async fn import_existing(
        &self,
        app_id: &str,
        conversation_id: &str,
    ) -> Result<Existing, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(link_key(app_id, conversation_id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_err("GetItem(conversation link)", e))?;
        let Some(item) = out.item() else {
            return Ok(Existing::Nothing);
        };
        let n = |k: &str| {
            item.get(k)
                .and_then(|v| v.as_n().ok())
                .and_then(|n| n.parse::<u64>().ok())
        };
        if let Some(g) = n(IMPORTING_LINK) {
            return Ok(Existing::Unfinished(g));
        }
        match (n("group_id"), item.contains_key("closed_at")) {
            (Some(g), false) => self.existing_group(app_id, g).await,
            _ => Ok(Existing::Nothing),
        }
    }

    /// What the table holds under a group id, for an import of this service's own export.
    pub async fn existing_group(
        &self,
        app_id: &str,
        group_id: u64,
    ) -> Result<Existing, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(meta_key(group_id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_err("GetItem(group)", e))?;
        let Some(item) = out.item() else {
            return Ok(Existing::Nothing);
        };
        let importing = item
            .get("status")
            .and_then(|v| v.as_s().ok())
            .map(String::as_str)
            == Some(IMPORTING);
        Ok(match meta_from_item(item) {
            Some(m) if m.app_id == app_id && m.live => Existing::Live(Box::new(m)),
            Some(m) if m.app_id == app_id && importing => Existing::Unfinished(group_id),
            _ => Existing::Busy(group_id),
        })
    }

    /// `n` fresh group ids at once (one counter update), as creates take them one by one.
    pub async fn new_group_ids(&self, n: u64) -> Result<std::ops::RangeInclusive<u64>, StoreError> {
        let last = self.advance_counter(n.max(1)).await?;
        Ok(last + 1 - n.max(1)..=last)
    }

    /// Of these conversations, the ones the app has no link item for at all (never linked,
    /// never imported): a new group can be written for each without reading anything
    /// else. Up to 100 at a time.
    pub async fn import_unlinked(
        &self,
        app_id: &str,
        conversation_ids: &[&str],
    ) -> Result<BTreeSet<String>, StoreError> {
        let keys: Vec<Item> = conversation_ids
            .iter()
            .map(|c| link_key(app_id, c))
            .collect();
        let pk = |item: &Item| item.get(PK).and_then(|v| v.as_s().ok()).cloned();
        let found: BTreeSet<String> = self
            .batch_get(keys.clone())
            .await?
            .iter()
            .filter_map(pk)
            .collect();
        Ok(conversation_ids
            .iter()
            .zip(&keys)
            .filter(|(_, k)| pk(k).is_none_or(|p| !found.contains(&p)))
            .map(|(c, _)| (*c).to_owned())
            .collect())
    }

    /// Whether [`DynamoStore::import_new_pack`] takes `g`: a group whose items fit in
    /// one transaction.
    pub fn import_fits_a_transaction(g: &ImportedGroup<'_>) -> bool {
        g.members.len() + 2 <= TX_ITEMS
    }

    /// Splits `groups` (in order) into packs whose items fit one transaction, for
    /// [`DynamoStore::import_new_pack`]. Every group must [fit a transaction] itself.
    ///
    /// [fit a transaction]: DynamoStore::import_fits_a_transaction
    pub fn import_packs(groups: &[ImportedGroup<'_>]) -> Vec<std::ops::Range<usize>> {
        let mut packs: Vec<std::ops::Range<usize>> = Vec::new();
        let mut size = 0;
        for (i, g) in groups.iter().enumerate() {
            let n = g.members.len() + 2;
            match packs.last_mut() {
                Some(pack) if size + n <= TX_ITEMS => {
                    pack.end = i + 1;
                    size += n;
                }
                _ => {
                    packs.push(i..i + 1);
                    size = n;
                }
            }
        }
        packs
    }

    /// Brings small new groups in with one transaction (a pack of
    /// [`DynamoStore::import_packs`]): each exactly as [`DynamoStore::import_new`]
    /// writes it, with the same conditions, so each is whole or absent. When a group's
    /// condition fails the transaction is cancelled whole; that group is left out, and
    /// the rest is written again. The answer is one `Written` per group, in order. One
    /// call writes ~9 groups of 8 members, where `import_new` would make 9.
    pub async fn import_new_pack(
        &self,
        groups: &[ImportedGroup<'_>],
    ) -> Result<Vec<Written>, StoreError> {
        if groups.iter().map(|g| g.members.len() + 2).sum::<usize>() > TX_ITEMS {
            return Err(StoreError::Invalid(
                "the groups have more items than one transaction takes".into(),
            ));
        }
        let now = now_rfc3339();
        let mut answers = vec![Written::Imported; groups.len()];
        let mut pack: Vec<usize> = (0..groups.len()).collect();
        while !pack.is_empty() {
            // Which group each item is of, and whether it is that group's own item.
            let mut owner: Vec<(usize, bool)> = Vec::new();
            let mut items = Vec::new();
            for &i in &pack {
                let its = self.new_group_items(&groups[i], true, &now)?;
                owner.extend((0..its.len()).map(|k| (i, k == 0)));
                items.extend(its);
            }
            match self.transact(items).await? {
                TxOutcome::Done => break,
                TxOutcome::Refused(refused) => {
                    for (at, _) in refused {
                        let (i, group_item) = owner[at];
                        if group_item {
                            answers[i] = Written::IdTaken;
                        } else if answers[i] != Written::IdTaken {
                            answers[i] = Written::ConversationTaken;
                        }
                    }
                    pack.retain(|&i| answers[i] == Written::Imported);
                }
            }
        }
        Ok(answers)
    }

    /// Brings a new group in, whole (see the module's doc).
    pub async fn import_new(&self, g: &ImportedGroup<'_>) -> Result<Written, StoreError> {
        let now = now_rfc3339();
        let small = Self::import_fits_a_transaction(g);
        let items = self.new_group_items(g, small, &now)?;
        match self.transact(items).await? {
            TxOutcome::Done => {}
            TxOutcome::Refused(r) if r.iter().any(|(i, _)| *i == 0) => return Ok(Written::IdTaken),
            TxOutcome::Refused(_) => return Ok(Written::ConversationTaken),
        }
        if !small {
            self.import_finish(g).await?;
        }
        Ok(Written::Imported)
    }

    /// A new group's first transaction: its item first (the id's condition), then its
    /// link, then (when `small`) its members.
    fn new_group_items(
        &self,
        g: &ImportedGroup<'_>,
        small: bool,
        now: &str,
    ) -> Result<Vec<TransactWriteItem>, StoreError> {
        let status = if small { ACTIVE } else { IMPORTING };
        let mut items = vec![TransactWriteItem::builder()
            .put(
                Put::builder()
                    .table_name(&self.table)
                    .set_item(Some(self.imported_meta(g, status, now)))
                    // Ids are never reused: not over any group, even one being deleted.
                    .condition_expression("attribute_not_exists(pk)")
                    .build()
                    .map_err(build_err)?,
            )
            .build()];
        if let Some(conversation) = g.conversation_id {
            let set = if small {
                UpdateExpr::new().set("group_id = :g").remove("closed_at")
            } else {
                UpdateExpr::new().set("importing = :g")
            };
            let update = Update::builder()
                .table_name(&self.table)
                .set_key(Some(link_key(g.app_id, conversation)))
                .update_expression(set.text())
                // Free: nobody's, or a tombstone; and no other import's.
                .condition_expression(
                    "(attribute_not_exists(pk) OR attribute_exists(closed_at)) AND attribute_not_exists(importing)",
                )
                .expression_attribute_values(":g", number(g.group_id))
                .build()
                .map_err(build_err)?;
            items.push(TransactWriteItem::builder().update(update).build());
        }
        if small {
            for id in g.members.ids() {
                let put = Put::builder()
                    .table_name(&self.table)
                    .set_item(Some(imported_member(g.app_id, g.group_id, id, now)))
                    .build()
                    .map_err(build_err)?;
                items.push(TransactWriteItem::builder().put(put).build());
            }
        }
        Ok(items)
    }

    /// Finishes a group an import left `importing`: its members exactly `g.members`
    /// (those of a stopped try that are not among them removed), then live.
    pub async fn import_finish(&self, g: &ImportedGroup<'_>) -> Result<(), StoreError> {
        let now = now_rfc3339();
        let present: BTreeSet<String> = self
            .member_keys(g.group_id)
            .await?
            .into_iter()
            .filter_map(|sk| sk.strip_prefix(MEMBER_PREFIX).map(str::to_owned))
            .collect();
        let wanted: BTreeSet<&String> = g.members.ids().iter().collect();
        let extra: Vec<Item> = present
            .iter()
            .filter(|p| !wanted.contains(p))
            .map(|p| key(group_pk(g.group_id), member_sk(p)))
            .collect();
        self.batch_delete(extra).await?;
        let puts: Vec<Item> = g
            .members
            .ids()
            .iter()
            .filter(|m| !present.contains(*m))
            .map(|m| imported_member(g.app_id, g.group_id, m, &now))
            .collect();
        self.batch_put(puts).await?;
        let count = g.members.len() as u64;
        let live = Update::builder()
            .table_name(&self.table)
            .set_key(Some(meta_key(g.group_id)))
            .update_expression(
                UpdateExpr::new()
                    .set("#status = :active")
                    .set("group_name = :name")
                    .set("#owner = :owner")
                    .set("member_count = :count")
                    .set("places_left = :left")
                    .set("max_members = :max")
                    .set("last_change = :change")
                    .text(),
            )
            .condition_expression("#status = :importing AND app_id = :app")
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":active", s(ACTIVE))
            .expression_attribute_values(":importing", s(IMPORTING))
            .expression_attribute_values(":app", s(g.app_id))
            .expression_attribute_values(":name", s(g.name))
            .expression_attribute_values(":owner", s(g.owner))
            .expression_attribute_values(":count", number(count))
            .expression_attribute_values(":left", number(g.max_members - count))
            .expression_attribute_values(":max", number(g.max_members))
            // A fresh `at`: the mirror sees this write as the import's own change.
            .expression_attribute_values(
                ":change",
                last_change(ChangeEvent::Imported, BY, &[], &now),
            )
            .build()
            .map_err(build_err)?;
        let mut items = vec![TransactWriteItem::builder().update(live).build()];
        if let Some(conversation) = g.conversation_id {
            let link = Update::builder()
                .table_name(&self.table)
                .set_key(Some(link_key(g.app_id, conversation)))
                .update_expression(
                    UpdateExpr::new()
                        .set("group_id = :g")
                        .remove("importing")
                        .remove("closed_at")
                        .text(),
                )
                .condition_expression("importing = :g")
                .expression_attribute_values(":g", number(g.group_id))
                .build()
                .map_err(build_err)?;
            items.push(TransactWriteItem::builder().update(link).build());
        }
        match self.transact(items).await? {
            TxOutcome::Done => Ok(()),
            TxOutcome::Refused(_) => Err(StoreError::Backend(format!(
                "group {} is no longer the unfinished import it was",
                g.group_id
            ))),
        }
    }

    /// Brings a live group up to date with `g` (name, members), through writes that hold
    /// only at the version read, as the routes' do: a concurrent change sends it round
    /// again, from a fresh read. The owner is never removed (a group keeps its owner
    /// until it is handed over); larger changes go in transactions of at most 100 items,
    /// each at the version the one before left.
    pub async fn import_update(
        &self,
        g: &ImportedGroup<'_>,
    ) -> Result<(Written, Vec<String>), StoreError> {
        for _ in 0..8 {
            let Some(meta) = self.group_meta(g.group_id).await?.filter(|m| m.live) else {
                return Err(StoreError::NotFound);
            };
            let present: BTreeSet<String> =
                self.group_members(g.group_id).await?.into_iter().collect();
            let wanted: BTreeSet<&String> = g.members.ids().iter().collect();
            let mut notes = Vec::new();
            let gone: Vec<String> = present
                .iter()
                .filter(|p| !wanted.contains(p))
                .filter(|p| {
                    let owner = **p == meta.owner;
                    if owner {
                        notes.push(format!("owner {p} is not in the export's members: kept"));
                    }
                    !owner
                })
                .cloned()
                .collect();
            let new: Vec<String> = wanted
                .iter()
                .filter(|w| !present.contains(**w))
                .map(|w| (*w).clone())
                .collect();
            let rename = meta.group_name != g.name;
            if !rename && gone.is_empty() && new.is_empty() {
                return Ok((Written::Unchanged, notes));
            }
            let after = present.len() as u64 + new.len() as u64 - gone.len() as u64;
            let max = meta.max_members.max(after);
            let mut version = meta.version;
            let mut stale = false;
            let mut count = present.len() as u64;
            // Removals first: the count in between never passes the limit.
            let changes: Vec<(String, bool)> = gone
                .into_iter()
                .map(|m| (m, false))
                .chain(new.into_iter().map(|m| (m, true)))
                .collect();
            let mut chunks: Vec<&[(String, bool)]> = changes.chunks(TX_ITEMS - 1).collect();
            if chunks.is_empty() {
                chunks.push(&[]);
            }
            for chunk in chunks {
                let now = now_rfc3339();
                let delta: i64 = chunk.iter().map(|(_, add)| if *add { 1 } else { -1 }).sum();
                count = (count as i64 + delta) as u64;
                let removed: Vec<String> = chunk
                    .iter()
                    .filter(|(_, a)| !a)
                    .map(|(m, _)| m.clone())
                    .collect();
                let mut expr = UpdateExpr::new()
                    .set("group_name = :name")
                    .set("updated_at = :now")
                    .set("last_change = :change")
                    .set("member_count = :count")
                    .set("places_left = :left")
                    .set("max_members = :max")
                    .add("version :one");
                if !removed.is_empty() {
                    expr = expr.delete("#admins :removed");
                }
                let mut update = Update::builder()
                    .table_name(&self.table)
                    .set_key(Some(meta_key(g.group_id)))
                    .update_expression(expr.text())
                    .condition_expression("#status = :active AND app_id = :app AND version = :seen")
                    .expression_attribute_names("#status", "status")
                    .expression_attribute_values(":active", s(ACTIVE))
                    .expression_attribute_values(":app", s(g.app_id))
                    .expression_attribute_values(":seen", number(version))
                    .expression_attribute_values(":name", s(g.name))
                    .expression_attribute_values(":now", s(now.as_str()))
                    .expression_attribute_values(
                        ":change",
                        last_change(ChangeEvent::Imported, BY, &[], &now),
                    )
                    .expression_attribute_values(":count", number(count))
                    .expression_attribute_values(":left", number(max - count))
                    .expression_attribute_values(":max", number(max))
                    .expression_attribute_values(":one", number(1));
                if !removed.is_empty() {
                    update = update
                        .expression_attribute_names("#admins", "admins")
                        .expression_attribute_values(":removed", string_set(&removed));
                }
                let mut items = vec![TransactWriteItem::builder()
                    .update(update.build().map_err(build_err)?)
                    .build()];
                for (m, add) in chunk {
                    let item = if *add {
                        let put = Put::builder()
                            .table_name(&self.table)
                            .set_item(Some(imported_member(g.app_id, g.group_id, m, &now)))
                            .condition_expression("attribute_not_exists(sk)")
                            .build()
                            .map_err(build_err)?;
                        TransactWriteItem::builder().put(put).build()
                    } else {
                        let delete = Delete::builder()
                            .table_name(&self.table)
                            .set_key(Some(key(group_pk(g.group_id), member_sk(m))))
                            .condition_expression("attribute_exists(sk)")
                            .build()
                            .map_err(build_err)?;
                        TransactWriteItem::builder().delete(delete).build()
                    };
                    items.push(item);
                }
                match self.transact(items).await? {
                    TxOutcome::Done => version += 1,
                    TxOutcome::Refused(_) => {
                        stale = true;
                        break;
                    }
                }
            }
            if !stale {
                return Ok((Written::Updated, notes));
            }
            // A route changed the group meanwhile: read again and decide again.
        }
        Err(StoreError::Contention)
    }

    fn imported_meta(&self, g: &ImportedGroup<'_>, status: &str, now: &str) -> Item {
        let count = g.members.len() as u64;
        let mut meta = meta_key(g.group_id);
        meta.insert("group_id".into(), number(g.group_id));
        meta.insert("app_id".into(), s(g.app_id));
        meta.insert("group_name".into(), s(g.name));
        meta.insert("owner".into(), s(g.owner));
        if !g.admins.is_empty() {
            meta.insert("admins".into(), string_set(g.admins));
        }
        meta.insert("status".into(), s(status));
        meta.insert("member_count".into(), number(count));
        meta.insert("max_members".into(), number(g.max_members));
        meta.insert("places_left".into(), number(g.max_members - count));
        meta.insert("version".into(), number(1));
        for (name, value) in [
            ("avatar_url", g.avatar_url),
            ("description", g.description),
            ("conversation_id", g.conversation_id),
        ] {
            if let Some(v) = value {
                meta.insert(name.into(), s(v));
            }
        }
        meta.insert(
            "last_change".into(),
            last_change(ChangeEvent::Imported, BY, &[], now),
        );
        meta.insert("created_at".into(), s(g.created_at.unwrap_or(now)));
        meta.insert("updated_at".into(), s(g.updated_at.unwrap_or(now)));
        meta
    }

    /// Writes items 25 at a time, retrying what DynamoDB leaves unprocessed.
    pub(super) async fn batch_put(&self, items: Vec<Item>) -> Result<(), StoreError> {
        for chunk in items.chunks(25) {
            let mut requests: Vec<WriteRequest> = chunk
                .iter()
                .map(|i| {
                    PutRequest::builder()
                        .set_item(Some(i.clone()))
                        .build()
                        .map(|p| WriteRequest::builder().put_request(p).build())
                        .map_err(build_err)
                })
                .collect::<Result<_, _>>()?;
            let mut attempt = 0u32;
            while !requests.is_empty() {
                if attempt > 0 {
                    crate::metrics::dynamo_retry("BatchWriteItem");
                    tokio::time::sleep(std::time::Duration::from_millis(20 << attempt.min(6)))
                        .await;
                }
                if attempt == 10 {
                    return Err(StoreError::Unavailable(
                        "BatchWriteItem: items kept coming back unprocessed".into(),
                    ));
                }
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, requests)
                    .send()
                    .await
                    .map_err(|e| sdk_err("BatchWriteItem", e))?;
                requests = out
                    .unprocessed_items()
                    .and_then(|m| m.get(&self.table))
                    .cloned()
                    .unwrap_or_default();
                attempt += 1;
            }
        }
        Ok(())
    }
}

/// A member item the import writes: marked, so the mirror knows the IM cloud has it.
fn imported_member(app_id: &str, group_id: u64, client_id: &str, now: &str) -> Item {
    let mut item = member_item(app_id, group_id, client_id, now);
    item.insert(VIA.into(), s(VIA_IMPORT));
    item
}
