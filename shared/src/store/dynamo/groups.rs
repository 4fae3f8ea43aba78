//! Groups as a whole: create (with its members, link and idempotency record in one
//! transaction), update, delete, hand over, read.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, Put, ReturnValue, TransactWriteItem};

use super::conditions::Precondition;
use super::expr::{Expr, UpdateExpr};
use super::layout::*;
use super::{build_err, is_condition_failure, sdk_err, DynamoStore, TxOutcome};
use crate::model::ids::conversation_may_link;
use crate::model::{
    Caller, ChangeEvent, Created, GroupMeta, GroupPatch, GroupSpec, Idempotency, MemberList,
    NewGroup,
};
use crate::store::{GroupStore, StoreError};

impl DynamoStore {
    /// The live group of the caller's app, if the caller may see it.
    pub(super) fn visible(
        meta: Option<GroupMeta>,
        caller: &Caller,
        caller_is_member: bool,
    ) -> Result<GroupMeta, StoreError> {
        match meta {
            Some(m)
                if m.live
                    && m.app_id == caller.app_id
                    && (caller.app_admin || caller_is_member) =>
            {
                Ok(m)
            }
            _ => Err(StoreError::NotFound),
        }
    }

    /// Whether `client_id` is a member, for a group whose big adds under way are
    /// `pending` (their member items are not members yet).
    pub(super) async fn is_member(
        &self,
        group_id: u64,
        client_id: &str,
        pending: &std::collections::BTreeSet<String>,
    ) -> Result<bool, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(group_pk(group_id), member_sk(client_id))))
            .projection_expression("sk, #p")
            .expression_attribute_names("#p", PENDING)
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_err("GetItem(member)", e))?;
        Ok(out.item().is_some_and(|i| member_counts(i, pending)))
    }

    pub(super) async fn next_group_id(&self) -> Result<u64, StoreError> {
        self.advance_counter(1).await
    }

    /// Moves the id counter on by `by` and returns its new value: the ids
    /// `value - by + 1 ..= value` are the caller's.
    pub(super) async fn advance_counter(&self, by: u64) -> Result<u64, StoreError> {
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(COUNTER_PK, COUNTER_SK)))
            .update_expression(UpdateExpr::new().add("next_id :by").text())
            .expression_attribute_values(":by", AttributeValue::N(by.to_string()))
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await
            .map_err(|e| sdk_err("UpdateItem(counter)", e))?;
        out.attributes()
            .and_then(|a| a.get("next_id"))
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse::<u64>().ok())
            .ok_or_else(|| StoreError::Backend("group id counter returned no number".into()))
    }

    /// The group item, if there is one (live or being deleted).
    pub async fn group_meta(&self, group_id: u64) -> Result<Option<GroupMeta>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(meta_key(group_id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_err("GetItem(group)", e))?;
        Ok(out.item().and_then(meta_from_item))
    }

    /// The members of a create: those asked for and the owner, within the group's limit.
    pub(super) fn with_owner(
        &self,
        caller: &Caller,
        spec: &GroupSpec,
    ) -> Result<MemberList, StoreError> {
        let all = MemberList::from_ids(
            "member_client_ids",
            spec.members
                .ids()
                .iter()
                .map(String::as_str)
                .chain([caller.client_id.as_str()]),
            usize::MAX,
            usize::MAX,
        )
        .map_err(|e| StoreError::Backend(e.to_string()))?;
        let count = all.len() as u64;
        if count > spec.max_members {
            return Err(StoreError::Full {
                count: 0,
                max: spec.max_members,
                adding: count,
            });
        }
        Ok(all)
    }

    pub(super) fn check_conversation(
        &self,
        spec: &GroupSpec,
        group_id: u64,
    ) -> Result<(), StoreError> {
        if let Some(conversation) = &spec.conversation_id {
            if !conversation_may_link(conversation, group_id) {
                return Err(StoreError::ConversationIsAGroupId(conversation.clone()));
            }
        }
        Ok(())
    }

    /// A new group's item, live, without `last_change`.
    pub(super) fn new_meta(
        &self,
        caller: &Caller,
        spec: &GroupSpec,
        group_id: u64,
        count: u64,
        now: &str,
    ) -> Item {
        let mut meta = meta_key(group_id);
        meta.insert("group_id".into(), AttributeValue::N(group_id.to_string()));
        meta.insert("app_id".into(), s(caller.app_id.as_str()));
        meta.insert("group_name".into(), s(spec.name.as_str()));
        meta.insert("owner".into(), s(caller.client_id.as_str()));
        meta.insert("status".into(), s(ACTIVE));
        meta.insert("member_count".into(), AttributeValue::N(count.to_string()));
        meta.insert(
            "max_members".into(),
            AttributeValue::N(spec.max_members.to_string()),
        );
        // Places left, which an add's condition can compare with the members it adds.
        meta.insert(
            "places_left".into(),
            AttributeValue::N((spec.max_members - count).to_string()),
        );
        meta.insert("version".into(), AttributeValue::N("1".into()));
        for (name, value) in [
            ("avatar_url", &spec.avatar_url),
            ("description", &spec.description),
            ("conversation_id", &spec.conversation_id),
        ] {
            if let Some(v) = value {
                meta.insert(name.into(), s(v.as_str()));
            }
        }
        meta.insert("created_at".into(), s(now));
        meta.insert("updated_at".into(), s(now));
        meta
    }
}

#[async_trait]
impl GroupStore for DynamoStore {
    async fn create_group(
        &self,
        caller: &Caller,
        spec: &GroupSpec,
        idempotency: Option<&Idempotency>,
    ) -> Result<Created, StoreError> {
        if super::bulk::is_big(spec.members.len()) {
            // More members than one transaction takes: in steps, all or nothing.
            let created = self.create_big(caller, spec, idempotency).await?;
            return Ok(created);
        }
        // A retry with the same Idempotency-Key is found by the transaction below (its
        // record's condition fails) rather than by a read first: the first try, by far the
        // common case, costs two round trips, a retry three and a group id left unused.
        let all = self.with_owner(caller, spec)?;
        // Two round trips: the id must be known before the items that carry it are written.
        let group_id = self.next_group_id().await?;
        self.check_conversation(spec, group_id)?;
        let now = now_rfc3339();
        let meta = self.new_meta(caller, spec, group_id, all.len() as u64, &now);
        let mut meta = meta;
        meta.insert(
            "last_change".into(),
            last_change(ChangeEvent::Created, &caller.client_id, all.ids(), &now),
        );
        let mut items = vec![TransactWriteItem::builder()
            .put(
                Put::builder()
                    .table_name(&self.table)
                    .set_item(Some(meta))
                    // Ids are never reused: refuse to overwrite, even a deleted group.
                    .condition_expression("attribute_not_exists(pk)")
                    .build()
                    .map_err(build_err)?,
            )
            .build()];
        for id in all.ids() {
            let put = Put::builder()
                .table_name(&self.table)
                .set_item(Some(member_item(&caller.app_id, group_id, id, &now)))
                .build()
                .map_err(build_err)?;
            items.push(TransactWriteItem::builder().put(put).build());
        }
        let group = NewGroup {
            group_id,
            group_name: spec.name.clone(),
            owner: caller.client_id.clone(),
            members: all,
        };
        // The link and the idempotency record commit with the group or not at all.
        let mut link_at = None;
        if let Some(conversation) = &spec.conversation_id {
            items.push(self.link_put(&caller.app_id, conversation, group_id)?);
            link_at = Some(items.len() - 1);
        }
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
            // A concurrent request with the same key won; answer as it did.
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

    async fn update_group(
        &self,
        caller: &Caller,
        group_id: u64,
        patch: &GroupPatch,
        if_match: Option<&[u64]>,
    ) -> Result<GroupMeta, StoreError> {
        if let Some(conversation) = &patch.conversation_id {
            if !conversation_may_link(conversation, group_id) {
                return Err(StoreError::ConversationIsAGroupId(conversation.clone()));
            }
        }
        let now = now_rfc3339();
        let mut update = UpdateExpr::new()
            .set("updated_at = :now")
            .add("version :one")
            .value(":now", s(now.as_str()))
            .value(":one", AttributeValue::N("1".into()));
        for (attr, value) in [
            ("group_name", &patch.name),
            ("avatar_url", &patch.avatar_url),
            ("description", &patch.description),
            ("conversation_id", &patch.conversation_id),
        ] {
            if let Some(v) = value {
                update = update
                    .set(&format!("{attr} = :{attr}"))
                    .value(&format!(":{attr}"), s(v.as_str()));
            }
        }
        if patch.name.is_some() {
            update = update.set("last_change = :change").value(
                ":change",
                last_change(ChangeEvent::Renamed, &caller.client_id, &[], &now),
            );
        }
        let mut cond = Expr::live_in_app(caller).managed_by(caller);
        let precondition = if_match.map(|versions| Precondition {
            versions,
            may: GroupMeta::managed_by,
        });
        if let Some(versions) = if_match {
            cond = cond.version_in(versions);
        }
        let Some(conversation) = &patch.conversation_id else {
            let new = self
                .update_meta_alone(
                    caller,
                    group_id,
                    &update,
                    &cond,
                    ReturnValue::AllNew,
                    precondition,
                )
                .await?;
            return new
                .as_ref()
                .and_then(meta_from_item)
                .ok_or_else(|| StoreError::Backend("update returned no group".into()));
        };
        // A new conversation moves the link: read the group to learn the old one, then
        // write the group (at the version read), the new link and the old link's removal
        // in one transaction.
        for _ in 0..8 {
            let seen = self
                .group_meta(group_id)
                .await?
                .ok_or(StoreError::NotFound)?;
            let guard = cond
                .clone()
                .and("#version = :seen")
                .name("#version", "version")
                .value(":seen", number(seen.version));
            let mut items = vec![self.update_meta(group_id, &update, &guard)?];
            if seen.conversation_id.as_deref() != Some(conversation.as_str()) {
                items.push(self.link_put(&caller.app_id, conversation, group_id)?);
                if let Some(old) = &seen.conversation_id {
                    items.push(self.link_close(&caller.app_id, old, group_id)?);
                }
            }
            let refused = match self.transact(items).await? {
                // The write held only at the version read, so the group is now exactly
                // what was read with the patch applied: no need to read it again.
                TxOutcome::Done => return Ok(seen.patched(patch, &now)),
                TxOutcome::Refused(r) => r,
            };
            if let Some((_, old)) = refused.iter().find(|(i, _)| *i == 0) {
                if let Some(stale) = precondition.and_then(|p| p.stale(caller, old.as_ref())) {
                    return Err(stale);
                }
                let moved_on = old
                    .as_ref()
                    .and_then(meta_from_item)
                    .is_some_and(|m| m.live && m.managed_by(caller) && m.version != seen.version);
                if !moved_on {
                    return Err(self.refusal(caller, group_id, old.clone()).await);
                }
            } else if refused.iter().any(|(i, _)| *i == 1) {
                return Err(StoreError::ConversationTaken);
            }
            // Changed since the read: read again.
        }
        Err(StoreError::Contention)
    }

    async fn delete_group(
        &self,
        caller: &Caller,
        group_id: u64,
        if_match: Option<&[u64]>,
    ) -> Result<(), StoreError> {
        // 1. Mark the group as being deleted: from here on every read and write treats it
        //    as gone. A group already marked (a delete that crashed half-way) is finished
        //    below, by its owner or the app's backend only, but answers NotFound: it was
        //    already deleted.
        let now = now_rfc3339();
        let update = UpdateExpr::new()
            .set("#status = :deleting")
            .set("updated_at = :now")
            .set("last_change = :change")
            .name("#status", "status")
            .value(":deleting", s(DELETING))
            .value(":now", s(now.as_str()))
            .value(
                ":change",
                last_change(ChangeEvent::Dismissed, &caller.client_id, &[], &now),
            );
        let mut allowed = Expr::live_in_app(caller).owned_by(caller);
        if let Some(versions) = if_match {
            allowed = allowed.version_in(versions);
        }
        let precondition = if_match.map(|versions| Precondition {
            versions,
            may: GroupMeta::owned_by,
        });
        let marked = self
            .update_meta_alone(
                caller,
                group_id,
                &update,
                &allowed,
                ReturnValue::AllOld,
                precondition,
            )
            .await;
        let old = match marked {
            Ok(old) => old,
            Err(StoreError::NotFound) => {
                // Perhaps a delete that stopped half-way. Finishing it keeps its
                // `last_change`: it was dismissed by whoever dismissed it, and the mirror
                // announces it once.
                let touch = UpdateExpr::new()
                    .set("updated_at = :now")
                    .value(":now", s(now.as_str()));
                let half_done =
                    Expr::new("attribute_exists(pk) AND #app = :app AND #status = :deleting")
                        .name("#app", "app_id")
                        .name("#status", "status")
                        .value(":app", s(caller.app_id.as_str()))
                        .value(":deleting", s(DELETING))
                        .owned_by(caller);
                self.update_meta_alone(
                    caller,
                    group_id,
                    &touch,
                    &half_done,
                    ReturnValue::AllOld,
                    None,
                )
                .await?
            }
            Err(e) => return Err(e),
        }
        .as_ref()
        .and_then(meta_from_item);
        let was_live = old.as_ref().is_some_and(|m| m.live);
        // 2. Remove every member item, then the group item itself.
        let member_keys = self
            .member_keys(group_id)
            .await?
            .into_iter()
            .map(|sk| key(group_pk(group_id), sk))
            .collect();
        self.batch_delete(member_keys).await?;
        if let Some(conversation) = old.as_ref().and_then(|m| m.conversation_id.as_deref()) {
            // The link becomes a tombstone (see `link_close`): the conversation keeps
            // the group's members, so it stays closed to clients.
            let close = self
                .client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(link_key(&caller.app_id, conversation)))
                .update_expression(
                    UpdateExpr::new()
                        .set("closed_at = if_not_exists(closed_at, :now)")
                        .text(),
                )
                .condition_expression("group_id = :g")
                .expression_attribute_values(":g", number(group_id))
                .expression_attribute_values(":now", s(now.as_str()))
                .send()
                .await;
            match close {
                // Refused: the link is gone, or another group's by now; it stays.
                Err(e) if !is_condition_failure(&e) => {
                    return Err(sdk_err("UpdateItem(conversation link)", e))
                }
                _ => {}
            }
        }
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(meta_key(group_id)))
            .send()
            .await
            .map_err(|e| sdk_err("DeleteItem(group)", e))?;
        if was_live {
            Ok(())
        } else {
            Err(StoreError::NotFound)
        }
    }

    async fn transfer_owner(
        &self,
        caller: &Caller,
        group_id: u64,
        new_owner: &str,
    ) -> Result<GroupMeta, StoreError> {
        // The new owner must be a member, checked in the same transaction; an owner is
        // never also listed as a group admin.
        let now = now_rfc3339();
        let update = UpdateExpr::new()
            .set("#owner = :new_owner")
            .set("updated_at = :now")
            .set("last_change = :change")
            .add("version :one")
            .delete("#admins :new_owner_set")
            .name("#owner", "owner")
            .name("#admins", "admins")
            .value(":new_owner", s(new_owner))
            .value(":new_owner_set", string_set(&[new_owner.to_owned()]))
            .value(":now", s(now.as_str()))
            .value(
                ":change",
                last_change(
                    ChangeEvent::OwnerChanged,
                    &caller.client_id,
                    &[new_owner.to_owned()],
                    &now,
                ),
            )
            .value(":one", AttributeValue::N("1".into()));
        let cond = Expr::live_in_app(caller).owned_by(caller);
        for settled in [false, true] {
            let items = vec![
                self.update_meta(group_id, &update, &cond)?,
                self.check_member(group_id, new_owner)?,
            ];
            match self.transact(items).await? {
                TxOutcome::Done => {
                    return self.group_meta(group_id).await?.ok_or(StoreError::NotFound)
                }
                TxOutcome::Refused(r) if r.iter().any(|(i, _)| *i == 0) => {
                    return Err(self.refused(caller, group_id, r).await)
                }
                // A member a big add brought in whose mark is still on its item is a
                // member: remove the mark and try once more.
                TxOutcome::Refused(_)
                    if !settled && self.settle_members(group_id, &[new_owner]).await? => {}
                TxOutcome::Refused(_) => break,
            }
        }
        Err(StoreError::NotMembers(vec![new_owner.to_owned()]))
    }

    async fn group_for(&self, caller: &Caller, group_id: u64) -> Result<GroupMeta, StoreError> {
        let (meta, present) = self
            .meta_and_members(group_id, &[&caller.client_id], true)
            .await?;
        Self::visible(meta, caller, present.contains(&caller.client_id))
    }
}
