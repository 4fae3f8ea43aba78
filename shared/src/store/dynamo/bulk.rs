//! Creates and adds of more members than one transaction takes (a request of more than
//! [`TRANSACTION_MEMBER_CAP`] ids), all or nothing, the way `im-admin import` brings a
//! big group in (`import`'s module doc): nothing a reader sees changes until one final
//! write of the group item.
//!
//! A big create:
//! 1. one transaction: the group item with `status = creating` (no reader takes it as
//!    live: every route's `live_in_app`, the member-groups listing, the signature rules
//!    want `active`), its conversation kept aside as `pending_conversation` (so the mirror
//!    sees no conversation until it is live), the conversation's link marked
//!    `importing = <group id>` without a `group_id` (as the import does: the signature
//!    rules still see the conversation as it was), and the idempotency record;
//! 2. the member items, by BatchWriteItem: members of a group that is not live are
//!    listed nowhere;
//! 3. one transaction: the group `active` with its `conversation_id` and `last_change`,
//!    and the link's `group_id` set.
//!
//! A crash after 1 leaves a group nobody sees; a retry with the same `Idempotency-Key`
//! finds the record (its condition refuses the retry's own first step), and finishes the
//! group from it (the record holds every member).
//!
//! A big add to a live group:
//! 1. the reserve, one transaction with the add's own conditions (the group live in the
//!    caller's app, the caller a member, places left for every new member): the group item
//!    takes `pending_add_<token>` = the places reserved, and `places_left` goes down by
//!    them, so two big adds together never pass `max_members`;
//! 2. the member items, each carrying `pending = <token>`, written in transactions of up
//!    to 100 conditional puts (none overwrites a member item another request wrote
//!    meanwhile). Every reader of members takes an item whose token is still on the group
//!    item as absent ([`member_counts`]), and every membership condition of a write
//!    wants no `pending` at all ([`super::conditions`]);
//! 3. the commit, one conditional update of the group item: `pending_add_<token>` removed,
//!    `member_count` up by the members written, the places not used given back, and
//!    `last_change` naming them (which is what the mirror adds to the IM cloud: it skips
//!    the inserts of pending members). From this write on, every reader sees them all;
//! 4. the marks removed from the member items, so that the write conditions see them
//!    too. A writer whose membership condition meets a mark left by a stopped step 4
//!    removes it first ([`DynamoStore::settle_marks`]).
//!
//! The token is the request's own (a hash of the app, the caller and the ids), so a
//! retry of the same add after a crash finds its reservation and finishes it.

use std::collections::BTreeSet;

use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem, Update};
use sha2::{Digest, Sha256};

use super::expr::{Expr, UpdateExpr};
use super::layout::*;
use super::{build_err, is_condition_failure, sdk_err, DynamoStore, TxOutcome};
use crate::config::TRANSACTION_MEMBER_CAP;
use crate::model::{Caller, ChangeEvent, Created, GroupSpec, Idempotency, MemberList, NewGroup};
use crate::store::StoreError;

/// A transaction's item limit.
const TX_ITEMS: usize = 100;
/// Keys in one BatchGetItem.
const GET_ITEMS: usize = 100;

/// Whether a create or add of `ids` takes the big path (more than one transaction).
pub(super) fn is_big(ids: usize) -> bool {
    ids > TRANSACTION_MEMBER_CAP
}

/// The token of a big add: the same request (app, caller, ids) has the same one.
pub(super) fn add_token(caller: &Caller, members: &MemberList) -> String {
    let digest = Sha256::digest(
        format!(
            "{}\n{}\n{}",
            caller.app_id,
            caller.client_id,
            members.joined()
        )
        .as_bytes(),
    );
    hex::encode(&digest[..16])
}

/// Where a big add's first steps left it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BigAdd {
    /// Every id is a member already: nothing to commit.
    Nothing,
    /// `places` reserved, these member items written with the token: to commit.
    Written { places: u64, written: Vec<String> },
}

/// What a big add's read found about one requested id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    /// No member item.
    Absent,
    /// A member (perhaps still marked by a committed add).
    Member,
    /// Written by this add (its token).
    Ours,
    /// Written by another big add that has not committed.
    OtherPending,
}

impl DynamoStore {
    /// The first step of a big create (see the module's doc); `create_group` runs it and
    /// then finishes the group. Public so that a test can stop after it, as a crash would.
    /// Answers the group as created, or as an earlier request with the same key made it
    /// (`replayed`), which may still be `creating`.
    pub async fn begin_big_create(
        &self,
        caller: &Caller,
        spec: &GroupSpec,
        idempotency: Option<&Idempotency>,
    ) -> Result<Created, StoreError> {
        let all = self.with_owner(caller, spec)?;
        let group_id = self.next_group_id().await?;
        self.check_conversation(spec, group_id)?;
        let now = now_rfc3339();
        let mut meta = self.new_meta(caller, spec, group_id, all.len() as u64, &now);
        meta.insert("status".into(), s(CREATING));
        meta.remove("last_change");
        if let Some(conversation) = meta.remove("conversation_id") {
            meta.insert("pending_conversation".into(), conversation);
        }
        let mut items = vec![TransactWriteItem::builder()
            .put(
                Put::builder()
                    .table_name(&self.table)
                    .set_item(Some(meta))
                    .condition_expression("attribute_not_exists(pk)")
                    .build()
                    .map_err(build_err)?,
            )
            .build()];
        let mut link_at = None;
        if let Some(conversation) = &spec.conversation_id {
            let update = Update::builder()
                .table_name(&self.table)
                .set_key(Some(link_key(&caller.app_id, conversation)))
                .update_expression(UpdateExpr::new().set("importing = :g").text())
                // Free (nobody's, or a tombstone), and no other unfinished group's.
                .condition_expression(
                    "(attribute_not_exists(pk) OR attribute_exists(closed_at)) AND attribute_not_exists(importing)",
                )
                .expression_attribute_values(":g", number(group_id))
                .build()
                .map_err(build_err)?;
            items.push(TransactWriteItem::builder().update(update).build());
            link_at = Some(items.len() - 1);
        }
        let group = NewGroup {
            group_id,
            group_name: spec.name.clone(),
            owner: caller.client_id.clone(),
            members: all,
        };
        let mut idempotency_at = None;
        if let Some(idem) = idempotency {
            items.push(self.idempotency_put(caller, idem, &group, &now)?);
            idempotency_at = Some(items.len() - 1);
        }
        let refused = match self.transact(items).await? {
            TxOutcome::Done => {
                return Ok(Created {
                    group,
                    replayed: false,
                })
            }
            TxOutcome::Refused(r) => r,
        };
        let failed = |at: Option<usize>| at.is_some_and(|at| refused.iter().any(|(i, _)| *i == at));
        if let (true, Some(idem)) = (failed(idempotency_at), idempotency) {
            return self
                .replay(caller, idem)
                .await?
                .ok_or(StoreError::Contention);
        }
        if failed(link_at) {
            return Err(StoreError::ConversationTaken);
        }
        Err(StoreError::Backend(format!(
            "group id {group_id} from the counter is already taken"
        )))
    }

    /// A big create, whole: the first step, then the members and the commit; a replayed
    /// create whose group is still `creating` (a try that stopped) is finished here.
    pub(super) async fn create_big(
        &self,
        caller: &Caller,
        spec: &GroupSpec,
        idempotency: Option<&Idempotency>,
    ) -> Result<Created, StoreError> {
        let created = self.begin_big_create(caller, spec, idempotency).await?;
        self.finish_create(&caller.app_id, &created.group).await?;
        Ok(created)
    }

    /// Steps 2 and 3 of a big create, if the group is still `creating`: every member
    /// item (a stopped try wrote some of the same list: puts of the same items), then
    /// the group live and its link set, in one transaction.
    pub(super) async fn finish_create(
        &self,
        app_id: &str,
        group: &NewGroup,
    ) -> Result<(), StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(meta_key(group.group_id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_err("GetItem(group)", e))?;
        let Some(item) = out.item() else {
            return Ok(()); // deleted since, as any group may be: the create stands
        };
        let text = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
        if text("status").as_deref() != Some(CREATING) {
            return Ok(()); // finished already (or being deleted)
        }
        let conversation = text("pending_conversation");
        let now = now_rfc3339();
        let puts = group
            .members
            .ids()
            .iter()
            .map(|m| member_item(app_id, group.group_id, m, &now))
            .collect();
        self.batch_put(puts).await?;
        let mut update = UpdateExpr::new();
        if let Some(c) = &conversation {
            update = update
                .set("conversation_id = :conversation")
                .value(":conversation", s(c.as_str()));
        }
        let update = update
            .set("#status = :active")
            .set("updated_at = :now")
            .set("last_change = :change")
            .remove("pending_conversation")
            .name("#status", "status")
            .value(":active", s(ACTIVE))
            .value(":now", s(now.as_str()))
            .value(
                ":change",
                last_change(
                    ChangeEvent::Created,
                    &group.owner,
                    group.members.ids(),
                    &now,
                ),
            );
        let cond = Expr::new("#status = :creating AND #app = :app")
            .name("#status", "status")
            .name("#app", "app_id")
            .value(":creating", s(CREATING))
            .value(":app", s(app_id));
        let mut items = vec![self.update_meta(group.group_id, &update, &cond)?];
        if let Some(c) = &conversation {
            let link = Update::builder()
                .table_name(&self.table)
                .set_key(Some(link_key(app_id, c)))
                .update_expression(
                    UpdateExpr::new()
                        .set("group_id = :g")
                        .remove("importing")
                        .remove("closed_at")
                        .text(),
                )
                .condition_expression("importing = :g")
                .expression_attribute_values(":g", number(group.group_id))
                .build()
                .map_err(build_err)?;
            items.push(TransactWriteItem::builder().update(link).build());
        }
        match self.transact(items).await? {
            TxOutcome::Done => Ok(()),
            // A concurrent retry finished it first.
            TxOutcome::Refused(_) => match self.group_meta(group.group_id).await? {
                Some(m) if m.live => Ok(()),
                _ => Err(StoreError::Contention),
            },
        }
    }

    /// The group item and the member items of `clients` (raw, with their marks), in
    /// consistent reads of up to 100 keys.
    async fn meta_and_member_items(
        &self,
        group_id: u64,
        clients: &[&str],
    ) -> Result<(Option<crate::model::GroupMeta>, Vec<Item>), StoreError> {
        let unique: BTreeSet<&str> = clients.iter().copied().collect();
        let keys: Vec<Item> = unique
            .iter()
            .map(|c| key(group_pk(group_id), member_sk(c)))
            .collect();
        let mut meta = None;
        let mut members = Vec::new();
        let mut first = true;
        for chunk in keys.chunks(GET_ITEMS - 1) {
            let mut want = chunk.to_vec();
            if first {
                want.push(meta_key(group_id));
            }
            for item in self.batch_get(want).await? {
                if item.get(SK).and_then(|v| v.as_s().ok()).map(String::as_str) == Some(META_SK) {
                    meta = meta_from_item(&item);
                } else {
                    members.push(item);
                }
            }
            first = false;
        }
        Ok((meta, members))
    }

    /// A big add (see the module's doc).
    pub(super) async fn add_big(
        &self,
        caller: &Caller,
        group_id: u64,
        members: &MemberList,
    ) -> Result<(), StoreError> {
        match self.begin_big_add(caller, group_id, members).await? {
            BigAdd::Nothing => Ok(()),
            BigAdd::Written { places, written } => {
                let token = add_token(caller, members);
                self.commit_add(caller, group_id, &token, places, &written)
                    .await
            }
        }
    }

    /// Steps 1 and 2 of a big add (the reservation, the marked member items), or of its
    /// retry (which finds the reservation and writes what is missing). `add_members` then
    /// commits; public so that a test can stop before the commit, as a crash would.
    pub async fn begin_big_add(
        &self,
        caller: &Caller,
        group_id: u64,
        members: &MemberList,
    ) -> Result<BigAdd, StoreError> {
        let token = add_token(caller, members);
        let attr = pending_add_attr(&token);
        for _ in 0..8 {
            let mut clients: Vec<&str> = members.ids().iter().map(String::as_str).collect();
            clients.push(&caller.client_id);
            let (meta, items) = self.meta_and_member_items(group_id, &clients).await?;
            let pending = meta
                .as_ref()
                .map(|m| m.pending_adds.clone())
                .unwrap_or_default();
            let seen = |id: &str| -> Seen {
                let Some(item) = items.iter().find(|i| {
                    i.get("client_id")
                        .and_then(|v| v.as_s().ok())
                        .map(String::as_str)
                        == Some(id)
                }) else {
                    return Seen::Absent;
                };
                match item.get(PENDING).and_then(|v| v.as_s().ok()) {
                    Some(t) if *t == token && pending.contains(t) => Seen::Ours,
                    Some(t) if pending.contains(t) => Seen::OtherPending,
                    _ => Seen::Member,
                }
            };
            let caller_member = seen(&caller.client_id) == Seen::Member;
            let meta = Self::visible(meta, caller, caller_member)?;
            let reserved = meta.pending_adds.contains(&token);
            if !reserved {
                // A try of this same add that committed but stopped before its marks were
                // removed: they are members; remove the marks, and nothing is left to add.
                self.settle_marks(group_id, &meta.pending_adds, &items)
                    .await?;
            }
            if members
                .ids()
                .iter()
                .any(|id| seen(id) == Seen::OtherPending)
            {
                // Another big add is bringing some of them in: it decides; ask again.
                return Err(StoreError::Contention);
            }
            let mut ours: Vec<&String> = Vec::new();
            let mut new: Vec<&String> = Vec::new();
            for id in members.ids() {
                match seen(id) {
                    Seen::Ours => ours.push(id),
                    Seen::Absent => new.push(id),
                    Seen::Member | Seen::OtherPending => {}
                }
            }
            let places = if reserved {
                self.reserved_places(group_id, &attr).await?
            } else {
                if new.is_empty() {
                    return Ok(BigAdd::Nothing); // all members already
                }
                let adding = new.len() as u64;
                if meta.member_count + adding > meta.max_members || adding > meta.places_left {
                    return Err(StoreError::Full {
                        count: meta.member_count,
                        max: meta.max_members,
                        adding,
                    });
                }
                match self.reserve(caller, group_id, &attr, adding).await? {
                    TxOutcome::Done => {}
                    // Another add took the places since the read: full, as the group
                    // item says.
                    TxOutcome::Refused(r) => {
                        let old = r.into_iter().find(|(i, _)| *i == 0).and_then(|(_, o)| o);
                        if let Some(m) = old.as_ref().and_then(meta_from_item).filter(|m| {
                            m.live && m.app_id == caller.app_id && m.places_left < adding
                        }) {
                            return Err(StoreError::Full {
                                count: m.member_count,
                                max: m.max_members,
                                adding,
                            });
                        }
                        continue; // changed otherwise: read again and decide again
                    }
                }
                adding
            };
            // A retry finds only what is still to write; never more than was reserved
            // (someone removed since the reserve is not added on top of it).
            new.truncate((places as usize).saturating_sub(ours.len()));
            let mut written = self.put_pending(caller, group_id, &token, &new).await?;
            written.extend(ours.into_iter().cloned());
            written.sort();
            return Ok(BigAdd::Written { places, written });
        }
        Err(StoreError::Contention)
    }

    /// The places a reservation of this add holds (a retry's: the group item says).
    async fn reserved_places(&self, group_id: u64, attr: &str) -> Result<u64, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(meta_key(group_id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_err("GetItem(group)", e))?;
        Ok(out
            .item()
            .and_then(|i| i.get(attr))
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse().ok())
            .unwrap_or_default())
    }

    /// Step 1 of a big add: under the add's own conditions, `places` reserved for this
    /// token; refused, with the group item as it was, when a condition fails (the places
    /// taken since the read, the group gone).
    async fn reserve(
        &self,
        caller: &Caller,
        group_id: u64,
        attr: &str,
        places: u64,
    ) -> Result<TxOutcome, StoreError> {
        let now = now_rfc3339();
        let update = UpdateExpr::new()
            .set("#pa = :places")
            .set("updated_at = :now")
            .set("places_left = places_left - :places")
            .name("#pa", attr)
            .value(":places", number(places))
            .value(":now", s(now.as_str()));
        // Room for all of them, by `places_left`.
        let cond = Expr::live_in_app(caller)
            .and("attribute_not_exists(#pa)")
            .and("places_left >= :places")
            .name("#pa", attr)
            .value(":places", number(places));
        let mut items = vec![self.update_meta(group_id, &update, &cond)?];
        if !caller.app_admin {
            items.push(self.check_member(group_id, &caller.client_id)?);
        }
        self.transact(items).await
    }

    /// Step 2 of a big add: member items carrying the token, in transactions of
    /// conditional puts. An item another request wrote meanwhile is left alone (its
    /// request counted it); answers the ids written.
    async fn put_pending(
        &self,
        caller: &Caller,
        group_id: u64,
        token: &str,
        ids: &[&String],
    ) -> Result<Vec<String>, StoreError> {
        let now = now_rfc3339();
        let mut written = Vec::new();
        for chunk in ids.chunks(TX_ITEMS) {
            let mut todo: Vec<&String> = chunk.to_vec();
            while !todo.is_empty() {
                let mut items = Vec::new();
                for id in &todo {
                    let mut item = member_item(&caller.app_id, group_id, id, &now);
                    item.insert(PENDING.into(), s(token));
                    let put = Put::builder()
                        .table_name(&self.table)
                        .set_item(Some(item))
                        .condition_expression("attribute_not_exists(sk) OR #p = :t")
                        .expression_attribute_names("#p", PENDING)
                        .expression_attribute_values(":t", s(token))
                        .build()
                        .map_err(build_err)?;
                    items.push(TransactWriteItem::builder().put(put).build());
                }
                match self.transact(items).await? {
                    TxOutcome::Done => {
                        written.extend(todo.iter().map(|id| (*id).clone()));
                        todo.clear();
                    }
                    TxOutcome::Refused(r) => {
                        let taken: BTreeSet<usize> = r.iter().map(|(i, _)| *i).collect();
                        todo = todo
                            .into_iter()
                            .enumerate()
                            .filter(|(i, _)| !taken.contains(i))
                            .map(|(_, id)| id)
                            .collect();
                    }
                }
            }
        }
        Ok(written)
    }

    /// Steps 3 and 4 of a big add: the commit (one conditional write of the group item),
    /// then the marks removed.
    async fn commit_add(
        &self,
        caller: &Caller,
        group_id: u64,
        token: &str,
        places: u64,
        written: &[String],
    ) -> Result<(), StoreError> {
        let attr = pending_add_attr(token);
        let now = now_rfc3339();
        let count = written.len() as u64;
        let mut update = UpdateExpr::new();
        if count > 0 {
            let mut change =
                last_change(ChangeEvent::MembersAdded, &caller.client_id, written, &now);
            if let AttributeValue::M(m) = &mut change {
                // The mirror adds these members at this write (it skipped their inserts).
                m.insert("bulk".into(), AttributeValue::Bool(true));
            }
            update = update
                .set("updated_at = :now")
                .set("last_change = :change")
                .add("member_count :count")
                .add("version :one")
                .value(":now", s(now.as_str()))
                .value(":change", change)
                .value(":count", number(count))
                .value(":one", number(1));
        }
        // Nothing written (all added meanwhile by others): only the places given back.
        let update = update
            .add("places_left :back")
            .remove("#pa")
            .name("#pa", attr.as_str())
            .value(":back", number(places.saturating_sub(count)));
        let cond = Expr::new("attribute_exists(#pa) AND #status = :active")
            .name("#pa", attr.as_str())
            .name("#status", "status")
            .value(":active", s(ACTIVE));
        let (names, values) = update.placeholders_with(&cond);
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(meta_key(group_id)))
            .update_expression(update.text())
            .condition_expression(cond.text())
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
            .send()
            .await;
        match out {
            Ok(_) => {}
            Err(e) if is_condition_failure(&e) => {
                let meta = self.group_meta(group_id).await?;
                match meta {
                    // A concurrent try of this same add committed it.
                    Some(m) if m.live && !m.pending_adds.contains(token) => {}
                    // Deleted meanwhile: its member items go with it (the delete may have
                    // run before these were written).
                    _ => {
                        let keys = written
                            .iter()
                            .map(|m| key(group_pk(group_id), member_sk(m)))
                            .collect();
                        self.batch_delete(keys).await?;
                        return Err(StoreError::NotFound);
                    }
                }
            }
            Err(e) => return Err(sdk_err("UpdateItem(commit add)", e)),
        }
        self.unmark(group_id, token, written).await
    }

    /// Removes the marks of a committed add from its member items, in transactions of
    /// up to 100 updates; an item removed since is left removed.
    async fn unmark(&self, group_id: u64, token: &str, ids: &[String]) -> Result<(), StoreError> {
        for chunk in ids.chunks(TX_ITEMS) {
            let mut todo: Vec<&String> = chunk.iter().collect();
            while !todo.is_empty() {
                let mut items = Vec::new();
                for id in &todo {
                    let update = Update::builder()
                        .table_name(&self.table)
                        .set_key(Some(key(group_pk(group_id), member_sk(id))))
                        .update_expression(UpdateExpr::new().remove("#p").text())
                        .condition_expression("#p = :t")
                        .expression_attribute_names("#p", PENDING)
                        .expression_attribute_values(":t", s(token))
                        .build()
                        .map_err(build_err)?;
                    items.push(TransactWriteItem::builder().update(update).build());
                }
                match self.transact(items).await? {
                    TxOutcome::Done => todo.clear(),
                    TxOutcome::Refused(r) => {
                        let gone: BTreeSet<usize> = r.iter().map(|(i, _)| *i).collect();
                        todo = todo
                            .into_iter()
                            .enumerate()
                            .filter(|(i, _)| !gone.contains(i))
                            .map(|(_, id)| id)
                            .collect();
                    }
                }
            }
        }
        Ok(())
    }

    /// Removes the marks of committed adds (tokens no longer in `pending`) from `items`:
    /// they are members, and the write conditions must see them as such.
    pub(super) async fn settle_marks(
        &self,
        group_id: u64,
        pending: &BTreeSet<String>,
        items: &[Item],
    ) -> Result<bool, StoreError> {
        let mut by_token: std::collections::BTreeMap<String, Vec<String>> = Default::default();
        for item in items {
            let text = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
            if let (Some(t), Some(id)) = (text(PENDING), text("client_id")) {
                if !pending.contains(&t) {
                    by_token.entry(t).or_default().push(id);
                }
            }
        }
        let any = !by_token.is_empty();
        for (token, ids) in by_token {
            self.unmark(group_id, &token, &ids).await?;
        }
        Ok(any)
    }

    /// Settles the marks (see [`Self::settle_marks`]) of `clients`' member items.
    pub(super) async fn settle_members(
        &self,
        group_id: u64,
        clients: &[&str],
    ) -> Result<bool, StoreError> {
        let (meta, items) = self.meta_and_member_items(group_id, clients).await?;
        let pending = meta.map(|m| m.pending_adds).unwrap_or_default();
        self.settle_marks(group_id, &pending, &items).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(client: &str) -> Caller {
        Caller {
            app_id: "app".into(),
            client_id: client.into(),
            app_admin: false,
        }
    }

    #[test]
    fn the_same_add_has_the_same_token_and_another_another() {
        let list =
            |ids: &[&str]| MemberList::from_ids("m", ids.iter().copied(), usize::MAX, 64).unwrap();
        let a = add_token(&caller("amy"), &list(&["b", "c"]));
        assert_eq!(a, add_token(&caller("amy"), &list(&["c", "b"])));
        assert_ne!(a, add_token(&caller("bob"), &list(&["b", "c"])));
        assert_ne!(a, add_token(&caller("amy"), &list(&["b", "d"])));
        assert_eq!(a.len(), 32);
        assert!(is_big(TRANSACTION_MEMBER_CAP + 1) && !is_big(TRANSACTION_MEMBER_CAP));
    }
}
