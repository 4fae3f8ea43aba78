//! Members and admins of a group (adds and removals keep the count and the limit exact
//! under any concurrency), and the pages of a group's members and a client's groups.

use std::collections::BTreeSet;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, ReturnValue, TransactWriteItem};

use super::expr::{Expr, UpdateExpr};
use super::layout::*;
use super::{build_err, sdk_err, DynamoStore, TxOutcome};
use crate::model::{Caller, ChangeEvent, CloudId, GroupMeta, MemberList, Page};
use crate::store::{GroupStore, MemberStore, StoreError};

impl DynamoStore {
    /// The group item and which of `clients` are members, in one consistent read; with
    /// `with_sync`, the group's sync state too.
    pub(super) async fn meta_and_members(
        &self,
        group_id: u64,
        clients: &[&str],
        with_sync: bool,
    ) -> Result<(Option<GroupMeta>, BTreeSet<String>), StoreError> {
        let (meta, members, _) = self
            .meta_and_members_marked(group_id, clients, with_sync)
            .await?;
        Ok((meta, members))
    }

    /// As [`Self::meta_and_members`], and the member items among them that still carry
    /// the mark of a committed big add (members, whose marks a writer must remove before
    /// its membership conditions see them: `bulk`).
    pub(super) async fn meta_and_members_marked(
        &self,
        group_id: u64,
        clients: &[&str],
        with_sync: bool,
    ) -> Result<(Option<GroupMeta>, BTreeSet<String>, Vec<Item>), StoreError> {
        let mut keys = vec![meta_key(group_id)];
        if with_sync {
            keys.extend(CloudId::ALL.map(|c| super::sync::sync_key(group_id, c)));
        }
        let unique: BTreeSet<&str> = clients.iter().copied().collect();
        keys.extend(unique.iter().map(|c| key(group_pk(group_id), member_sk(c))));
        let items = self.batch_get(keys).await?;
        let sk_of = |i: &Item| {
            i.get(SK)
                .and_then(|v| v.as_s().ok())
                .cloned()
                .unwrap_or_default()
        };
        let sync: Vec<_> = CloudId::ALL
            .into_iter()
            .filter_map(|c| {
                let item = items.iter().find(|i| sk_of(i) == sync_sk(c))?;
                Some((c, super::sync::report_from_item(item)?))
            })
            .collect();
        let meta = items
            .iter()
            .find(|i| sk_of(i) == META_SK)
            .and_then(meta_from_item)
            .map(|m| GroupMeta { sync, ..m });
        // A member item a big add is still writing is not a member yet (without the
        // group item, no mark counts).
        let pending = meta.as_ref().map(|m| m.pending_adds.clone());
        let counts = |i: &Item| match &pending {
            Some(p) => member_counts(i, p),
            None => !i.contains_key(PENDING),
        };
        let members = items
            .iter()
            .filter(|i| counts(i))
            .filter_map(|i| sk_of(i).strip_prefix(MEMBER_PREFIX).map(str::to_owned))
            .collect();
        let marked = items
            .iter()
            .filter(|i| i.contains_key(PENDING) && counts(i))
            .cloned()
            .collect();
        Ok((meta, members, marked))
    }

    /// Sort keys of every member item under the group, live or not.
    pub(super) async fn member_keys(&self, group_id: u64) -> Result<Vec<String>, StoreError> {
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :m)")
            .expression_attribute_values(":pk", s(group_pk(group_id)))
            .expression_attribute_values(":m", s(MEMBER_PREFIX))
            .projection_expression("sk")
            .consistent_read(true)
            .into_paginator()
            .items()
            .send();
        let mut out = Vec::new();
        while let Some(item) = pages.next().await {
            let item = item.map_err(|e| sdk_err("Query(members)", e))?;
            if let Some(sk) = item.get(SK).and_then(|v| v.as_s().ok()) {
                out.push(sk.clone());
            }
        }
        Ok(out)
    }

    /// The current members of a group, in byte order. Member items a big add is still
    /// writing are not among them: when any item carries a mark, the group item tells
    /// which marks are of adds not yet committed (one more read, only then).
    pub async fn group_members(&self, group_id: u64) -> Result<Vec<String>, StoreError> {
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :m)")
            .expression_attribute_values(":pk", s(group_pk(group_id)))
            .expression_attribute_values(":m", s(MEMBER_PREFIX))
            .projection_expression("sk, #p")
            .expression_attribute_names("#p", PENDING)
            .consistent_read(true)
            .into_paginator()
            .items()
            .send();
        let mut items = Vec::new();
        while let Some(item) = pages.next().await {
            items.push(item.map_err(|e| sdk_err("Query(members)", e))?);
        }
        let pending = if items.iter().any(|i| i.contains_key(PENDING)) {
            self.group_meta(group_id)
                .await?
                .map(|m| m.pending_adds)
                .unwrap_or_default()
        } else {
            BTreeSet::new()
        };
        let mut sks: Vec<String> = items
            .iter()
            .filter(|i| member_counts(i, &pending))
            .filter_map(|i| i.get(SK).and_then(|v| v.as_s().ok()).cloned())
            .collect();
        sks.sort();
        Ok(sks
            .into_iter()
            .filter_map(|sk| sk.strip_prefix(MEMBER_PREFIX).map(str::to_owned))
            .collect())
    }
    /// The transaction that adds `new` members: the group item's `places_left` must cover
    /// them. With the group as `read` (a try after a refusal), its count must also still
    /// leave room for them (`member_count` at most `max_members` less them).
    fn add_items(
        &self,
        caller: &Caller,
        group_id: u64,
        new: &[&String],
        read: Option<&GroupMeta>,
    ) -> Result<Vec<TransactWriteItem>, StoreError> {
        let now = now_rfc3339();
        let adding = new.len() as u64;
        let added: Vec<String> = new.iter().map(|id| (*id).clone()).collect();
        let update = UpdateExpr::new()
            .set("updated_at = :now")
            .set("last_change = :change")
            .add("member_count :n")
            .add("version :one")
            .add("places_left :minus")
            .value(":now", s(now.as_str()))
            .value(
                ":change",
                last_change(ChangeEvent::MembersAdded, &caller.client_id, &added, &now),
            )
            .value(":n", AttributeValue::N(adding.to_string()))
            .value(":one", AttributeValue::N("1".into()))
            .value(":minus", AttributeValue::N(format!("-{adding}")));
        let mut cond = Expr::live_in_app(caller);
        if let Some(meta) = read {
            // ...and no big add has reserved the places meanwhile.
            cond = cond.and("member_count <= :cap").value(
                ":cap",
                AttributeValue::N((meta.max_members - adding).to_string()),
            );
        }
        let cond = cond
            .and("places_left >= :n")
            .value(":n", AttributeValue::N(adding.to_string()));
        let mut items = vec![self.update_meta(group_id, &update, &cond)?];
        if !caller.app_admin {
            items.push(self.check_member(group_id, &caller.client_id)?);
        }
        for id in new {
            let put = Put::builder()
                .table_name(&self.table)
                .set_item(Some(member_item(&caller.app_id, group_id, id, &now)))
                .condition_expression("attribute_not_exists(sk)")
                .build()
                .map_err(build_err)?;
            items.push(TransactWriteItem::builder().put(put).build());
        }
        Ok(items)
    }

    /// The transaction that removes `gone` (each must still be a member) under `cond`,
    /// giving their places back to `places_left`.
    fn remove_items(
        &self,
        caller: &Caller,
        group_id: u64,
        cond: &Expr,
        gone: &[String],
        leaving: bool,
    ) -> Result<Vec<TransactWriteItem>, StoreError> {
        // Whoever leaves the group stops being one of its admins.
        let now = now_rfc3339();
        let event = if leaving {
            ChangeEvent::MemberLeft
        } else {
            ChangeEvent::MembersRemoved
        };
        let n = gone.len() as u64;
        let update = UpdateExpr::new()
            .set("updated_at = :now")
            .set("last_change = :change")
            .add("places_left :n")
            .add("member_count :minus")
            .add("version :one")
            .delete("#admins :removed")
            .name("#admins", "admins")
            .value(":now", s(now.as_str()))
            .value(":change", last_change(event, &caller.client_id, gone, &now))
            .value(":minus", AttributeValue::N(format!("-{n}")))
            .value(":one", AttributeValue::N("1".into()))
            .value(":n", AttributeValue::N(n.to_string()))
            .value(":removed", string_set(gone));
        let mut items = vec![self.update_meta(group_id, &update, cond)?];
        for id in gone {
            let delete = Delete::builder()
                .table_name(&self.table)
                .set_key(Some(key(group_pk(group_id), member_sk(id))))
                // Counted once: a member removed meanwhile sends us round again. A
                // member item a big add is writing is no member (see `bulk`).
                .condition_expression("attribute_exists(sk) AND attribute_not_exists(#p)")
                .expression_attribute_names("#p", PENDING)
                .build()
                .map_err(build_err)?;
            items.push(TransactWriteItem::builder().delete(delete).build());
        }
        Ok(items)
    }
}

#[async_trait]
impl MemberStore for DynamoStore {
    async fn add_members(
        &self,
        caller: &Caller,
        group_id: u64,
        members: &MemberList,
    ) -> Result<(), StoreError> {
        // The common case in one round trip: write as if every member were new and there
        // were room. The transaction's conditions are the whole rule (the group live in the
        // caller's app, the caller a member, `places_left` for all, no member item yet), so
        // a refusal only means that something is not as assumed: then read, and decide.
        if super::bulk::is_big(members.len()) {
            // More than one transaction takes: reserved, written, then committed.
            return self.add_big(caller, group_id, members).await;
        }
        let all: Vec<&String> = members.ids().iter().collect();
        if let TxOutcome::Done = self
            .transact(self.add_items(caller, group_id, &all, None)?)
            .await?
        {
            return Ok(());
        }
        for _ in 0..8 {
            let mut clients: Vec<&str> = members.ids().iter().map(String::as_str).collect();
            clients.push(&caller.client_id);
            let (meta, present, marked) = self
                .meta_and_members_marked(group_id, &clients, false)
                .await?;
            let meta = Self::visible(meta, caller, present.contains(&caller.client_id))?;
            if !marked.is_empty() {
                self.settle_marks(group_id, &meta.pending_adds, &marked)
                    .await?;
            }
            let new: Vec<&String> = members
                .ids()
                .iter()
                .filter(|id| !present.contains(*id))
                .collect();
            if new.is_empty() {
                return Ok(()); // all members already: nothing to write
            }
            let adding = new.len() as u64;
            // The room counts the places big adds under way have reserved.
            if meta.member_count + adding > meta.max_members || adding > meta.places_left {
                return Err(StoreError::Full {
                    count: meta.member_count,
                    max: meta.max_members,
                    adding,
                });
            }
            match self
                .transact(self.add_items(caller, group_id, &new, Some(&meta))?)
                .await?
            {
                TxOutcome::Done => return Ok(()),
                // Something changed since the read (a concurrent add or removal, the
                // group deleted): read again and decide again.
                TxOutcome::Refused(_) => continue,
            }
        }
        Err(StoreError::Contention)
    }

    async fn remove_members(
        &self,
        caller: &Caller,
        group_id: u64,
        members: &MemberList,
    ) -> Result<(), StoreError> {
        let ids = members.ids();
        let leaving = !caller.app_admin && ids.len() == 1 && ids[0] == caller.client_id;
        let mut cond = Expr::live_in_app(caller);
        if !leaving {
            cond = cond.managed_by(caller);
        }
        // Never the owner: an owner hands the group over or deletes it.
        let cond = cond.owner_not_in(ids);
        // As for adds: first as if every one of them were a member (one round trip), and
        // only when DynamoDB refuses, read to answer exactly or to remove who is there.
        if let TxOutcome::Done = self
            .transact(self.remove_items(caller, group_id, &cond, ids, leaving)?)
            .await?
        {
            return Ok(());
        }
        for _ in 0..8 {
            let clients: Vec<&str> = ids.iter().map(String::as_str).collect();
            let (meta, present, marked) = self
                .meta_and_members_marked(group_id, &clients, false)
                .await?;
            if let (Some(m), false) = (&meta, marked.is_empty()) {
                self.settle_marks(group_id, &m.pending_adds, &marked)
                    .await?;
            }
            if leaving && meta.as_ref().is_some_and(|m| m.live) && present.is_empty() {
                return Err(StoreError::NotFound); // not a member: nothing to leave
            }
            let gone: Vec<String> = ids
                .iter()
                .filter(|id| present.contains(*id))
                .cloned()
                .collect();
            let items = match &meta {
                Some(_) if !gone.is_empty() => {
                    self.remove_items(caller, group_id, &cond, &gone, leaving)?
                }
                // Nobody to remove: still answer as the write would have (404, 403).
                _ => vec![self.check_meta(group_id, &cond)?],
            };
            match self.transact(items).await? {
                TxOutcome::Done => return Ok(()),
                TxOutcome::Refused(r) if r.iter().any(|(i, _)| *i == 0) => {
                    return Err(self.refused(caller, group_id, r).await)
                }
                TxOutcome::Refused(_) => continue,
            }
        }
        Err(StoreError::Contention)
    }

    async fn set_admins(
        &self,
        caller: &Caller,
        group_id: u64,
        members: &MemberList,
        grant: Option<usize>,
    ) -> Result<(), StoreError> {
        let ids = members.ids();
        let cond = Expr::live_in_app(caller).owned_by(caller).owner_not_in(ids);
        let Some(max_admins) = grant else {
            let update = UpdateExpr::new()
                .delete("#admins :ids")
                .add("version :one")
                .name("#admins", "admins")
                .value(":ids", string_set(ids))
                .value(":one", AttributeValue::N("1".into()));
            return self
                .update_meta_alone(caller, group_id, &update, &cond, ReturnValue::None, None)
                .await
                .map(|_| ());
        };
        // The admins live on the group item, read by every signature check on the group:
        // their number is bounded, as a condition of the write. The first try assumes
        // every id is a new admin; refused near the bound, the group as it was tells how
        // many are new, and the write is tried again at that version.
        let mut room = max_admins
            .checked_sub(ids.len())
            .ok_or(StoreError::TooManyAdmins {
                max: max_admins as u64,
            })?;
        let mut seen_version = None;
        let mut settled = false;
        for _ in 0..8 {
            let mut guard = cond
                .clone()
                .and("(attribute_not_exists(#admins) OR size(#admins) <= :room)")
                .name("#admins", "admins")
                .value(":room", number(room as u64));
            if let Some(v) = seen_version {
                guard = guard
                    .and("#version = :seen")
                    .name("#version", "version")
                    .value(":seen", number(v));
            }
            match self.grant_admins(group_id, ids, &guard).await? {
                Granted::Done => return Ok(()),
                Granted::NotMembers(missing) => {
                    // Members a big add brought in may still carry its mark: once.
                    let ids: Vec<&str> = missing.iter().map(String::as_str).collect();
                    if settled || !self.settle_members(group_id, &ids).await? {
                        return Err(StoreError::NotMembers(missing));
                    }
                    settled = true;
                }
                Granted::Refused(old) => {
                    let meta = old.as_ref().and_then(meta_from_item);
                    let Some(m) = meta.filter(|m| {
                        m.live
                            && m.app_id == caller.app_id
                            && m.owned_by(caller)
                            && !ids.contains(&m.owner)
                    }) else {
                        return Err(self.refusal(caller, group_id, old).await);
                    };
                    let new = ids.iter().filter(|id| !m.admins.contains(*id)).count();
                    if m.admins.len() + new > max_admins {
                        return Err(StoreError::TooManyAdmins {
                            max: max_admins as u64,
                        });
                    }
                    room = max_admins - new;
                    seen_version = Some(m.version);
                }
            }
        }
        Err(StoreError::Contention)
    }

    async fn members_page(
        &self,
        caller: &Caller,
        group_id: u64,
        limit: u32,
        after: Option<&str>,
    ) -> Result<(GroupMeta, Page<(String, String), String>), StoreError> {
        let meta = self.group_for(caller, group_id).await?;
        let mut query = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :m)")
            .expression_attribute_values(":pk", s(group_pk(group_id)))
            .expression_attribute_values(":m", s(MEMBER_PREFIX))
            .projection_expression("sk, joined_at, #p")
            .expression_attribute_names("#p", PENDING)
            .consistent_read(true)
            .limit(limit as i32);
        if let Some(after) = after {
            // The partition always comes from the group asked for: a cursor can only move
            // within it, never into another group.
            query = query.set_exclusive_start_key(Some(key(group_pk(group_id), member_sk(after))));
        }
        let out = query
            .send()
            .await
            .map_err(|e| sdk_err("Query(members page)", e))?;
        let text = |i: &Item, k: &str| {
            i.get(k)
                .and_then(|v| v.as_s().ok())
                .cloned()
                .unwrap_or_default()
        };
        let items: Vec<(String, String)> = out
            .items()
            .iter()
            // Not yet members: the items of a big add that has not committed.
            .filter(|i| member_counts(i, &meta.pending_adds))
            .filter_map(|i| {
                let id = text(i, SK).strip_prefix(MEMBER_PREFIX)?.to_owned();
                Some((id, text(i, "joined_at")))
            })
            .collect();
        let next = out
            .last_evaluated_key()
            .and_then(|k| k.get(SK))
            .and_then(|v| v.as_s().ok())
            .and_then(|sk| sk.strip_prefix(MEMBER_PREFIX))
            .map(str::to_owned);
        Ok((meta, Page { items, next }))
    }

    async fn client_groups(
        &self,
        caller: &Caller,
        client_id: &str,
        limit: u32,
        after: Option<u64>,
    ) -> Result<Page<GroupMeta, u64>, StoreError> {
        let gsi1pk = member_gsi1pk(&caller.app_id, client_id);
        let mut query = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(GSI1)
            .key_condition_expression("#gsi1pk = :c")
            .expression_attribute_names("#gsi1pk", GSI1PK)
            .expression_attribute_values(":c", s(gsi1pk.as_str()))
            .limit(limit as i32);
        if let Some(g) = after {
            let mut start = key(group_pk(g), member_sk(client_id));
            start.insert(GSI1PK.into(), s(gsi1pk.as_str()));
            start.insert(GSI1SK.into(), s(member_gsi1sk(g)));
            query = query.set_exclusive_start_key(Some(start));
        }
        let out = query
            .send()
            .await
            .map_err(|e| sdk_err("Query(client groups)", e))?;
        let group_of = |i: &Item| {
            i.get(GSI1SK)
                .and_then(|v| v.as_s().ok())
                .and_then(|g| group_of_member_gsi1sk(g))
        };
        let ids: Vec<u64> = out.items().iter().filter_map(group_of).collect();
        let metas = self
            .batch_get(ids.iter().map(|g| meta_key(*g)).collect())
            .await?;
        let mut groups: Vec<GroupMeta> = metas
            .iter()
            .filter_map(meta_from_item)
            // The index is eventually consistent and deletes finish in steps: only live
            // groups of this app count.
            .filter(|m| m.live && m.app_id == caller.app_id)
            .collect();
        // The index holds keys only: in a group with a big add under way, the client's
        // member item tells whether it is one of that add's (not a member yet).
        let busy: Vec<Item> = groups
            .iter()
            .filter(|m| !m.pending_adds.is_empty())
            .map(|m| key(group_pk(m.group_id), member_sk(client_id)))
            .collect();
        if !busy.is_empty() {
            let items = self.batch_get(busy).await?;
            groups.retain(|m| {
                m.pending_adds.is_empty()
                    || items.iter().any(|i| {
                        i.get(PK).and_then(|v| v.as_s().ok()) == Some(&group_pk(m.group_id))
                            && member_counts(i, &m.pending_adds)
                    })
            });
        }
        groups.sort_by_key(|m| m.group_id);
        let next = out
            .last_evaluated_key()
            .and_then(|k| k.get(GSI1SK))
            .and_then(|v| v.as_s().ok())
            .and_then(|g| group_of_member_gsi1sk(g));
        Ok(Page {
            items: groups,
            next,
        })
    }
}

/// How one try of a grant ended.
enum Granted {
    Done,
    /// The group item's condition failed: the item as it was.
    Refused(Option<Item>),
    NotMembers(Vec<String>),
}

impl DynamoStore {
    /// One try of a grant: the group item under `cond`, and each id's membership, in one
    /// transaction (only members can be made admins).
    async fn grant_admins(
        &self,
        group_id: u64,
        ids: &[String],
        cond: &Expr,
    ) -> Result<Granted, StoreError> {
        let update = UpdateExpr::new()
            .add("#admins :ids")
            .add("version :one")
            .name("#admins", "admins")
            .value(":ids", string_set(ids))
            .value(":one", AttributeValue::N("1".into()));
        let mut items = vec![self.update_meta(group_id, &update, cond)?];
        for id in ids {
            items.push(self.check_member(group_id, id)?);
        }
        Ok(match self.transact(items).await? {
            TxOutcome::Done => Granted::Done,
            TxOutcome::Refused(r) => match r.iter().find(|(i, _)| *i == 0) {
                Some((_, old)) => Granted::Refused(old.clone()),
                None => Granted::NotMembers(
                    r.iter()
                        .filter_map(|(i, _)| ids.get(i - 1).cloned())
                        .collect(),
                ),
            },
        })
    }
}
