//! What the IM cloud mirror (`im-sync`) reads and writes: the app's IM cloud settings and
//! master key together, a group's sync state (how far the stream has been applied, and
//! whether the IM cloud refused a change for good), and the write-back of a conversation
//! the mirror created for a group.

use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};

use super::expr::Expr;
use super::layout::*;
use super::{build_err, is_condition_failure, sdk_err, DynamoStore, TxOutcome};
use crate::model::{ImCloud, Secret, SyncReport, SyncStatus};
use crate::store::StoreError;

/// Stream sequence numbers are decimal strings of 21 to 40 digits; padded to 40, their
/// byte order is their numeric order, so a condition can compare them.
pub fn padded_sequence(seq: &str) -> String {
    format!("{seq:0>40}")
}

/// A group's sync state as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncCursor {
    /// The last stream record applied, padded (see [`padded_sequence`]).
    pub seq: String,
    pub report: SyncReport,
}

/// How writing back a conversation the mirror made for a group ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MirrorLink {
    /// The group now names it, and its link is written.
    Linked,
    /// The group already names a conversation (an earlier try's, or the backend's).
    AlreadyLinked(String),
    /// The group is gone or being deleted.
    GroupGone,
    /// Another group of the app holds the conversation.
    Taken,
}

pub(super) fn sync_key(group_id: u64) -> Item {
    key(group_pk(group_id), SYNC_SK)
}

pub(super) fn report_from_item(item: &Item) -> Option<SyncReport> {
    let text = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
    Some(SyncReport {
        status: SyncStatus::parse(&text("status")?)?,
        error: text("error"),
        at: text("at").unwrap_or_default(),
    })
}

impl DynamoStore {
    /// The app's IM cloud settings and its master key, in one read; `None` for an
    /// unknown app or one without settings.
    pub async fn mirror_target(
        &self,
        app_id: &str,
    ) -> Result<Option<(ImCloud, Secret)>, StoreError> {
        let item = match self.app_item(app_id, "im_cloud, master_key").await {
            Ok(item) => item,
            Err(StoreError::NotFound) => return Ok(None),
            Err(e) => return Err(e),
        };
        let Some(key) = item.get("master_key").and_then(|v| v.as_s().ok()) else {
            return Ok(None);
        };
        Ok(Self::im_cloud_from(app_id, &item)?.map(|cloud| (cloud, Secret::new(key.as_str()))))
    }

    /// The group's sync state, read consistently.
    pub async fn sync_cursor(&self, group_id: u64) -> Result<Option<SyncCursor>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(sync_key(group_id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_err("GetItem(sync)", e))?;
        Ok(out.item().and_then(|item| {
            Some(SyncCursor {
                seq: item.get("seq")?.as_s().ok()?.clone(),
                report: report_from_item(item)?,
            })
        }))
    }

    /// Records that the stream was applied up to `seq` (a raw sequence number), with
    /// `status`. Never moves the cursor back: a slower, concurrent try that lost the race
    /// leaves the state as the faster one wrote it. A gone group's state expires after a
    /// day, once no retry of its records can arrive.
    pub async fn save_sync(
        &self,
        group_id: u64,
        seq: &str,
        status: SyncStatus,
        error: Option<&str>,
        group_gone: bool,
    ) -> Result<(), StoreError> {
        // An update that creates the item when needed: the function may update group
        // items but put none (template.yaml).
        let mut sets = vec!["seq = :seq", "#status = :status", "#at = :now"];
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(sync_key(group_id)))
            .condition_expression("attribute_not_exists(seq) OR seq <= :seq")
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#at", "at")
            .expression_attribute_names("#error", "error")
            .expression_attribute_values(":seq", s(padded_sequence(seq)))
            .expression_attribute_values(":status", s(status.as_str()))
            .expression_attribute_values(":now", s(now_rfc3339()));
        if let Some(e) = error {
            sets.push("#error = :error");
            update = update.expression_attribute_values(":error", s(e));
        }
        if group_gone {
            sets.push("expires_at = :expires");
            update =
                update.expression_attribute_values(":expires", number(epoch_now() + 24 * 60 * 60));
        }
        let remove = if error.is_none() {
            " REMOVE #error"
        } else {
            ""
        };
        let result = update
            .update_expression(format!("SET {}{remove}", sets.join(", ")))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if is_condition_failure(&e) => Ok(()),
            Err(e) => Err(sdk_err("UpdateItem(sync)", e)),
        }
    }

    /// Writes back a conversation the mirror created for a group: the group names it
    /// (a new version: its representation changed) and its link is written, in one
    /// transaction, under the same rules as any link. Only a live group that names no
    /// conversation yet takes it.
    pub async fn link_mirrored(
        &self,
        app_id: &str,
        group_id: u64,
        conversation_id: &str,
    ) -> Result<MirrorLink, StoreError> {
        // `mirrored_conversation` tells the stream record of this write from a link the
        // backend set: the mirror has nothing to do for its own.
        let update =
            Expr::new("SET conversation_id = :c, mirrored_conversation = :c ADD version :one")
                .value(":c", s(conversation_id))
                .value(":one", AttributeValue::N("1".into()));
        let cond = Expr::new(
            "attribute_exists(pk) AND #app = :app AND #status = :active AND attribute_not_exists(conversation_id)",
        )
        .name("#app", "app_id")
        .name("#status", "status")
        .value(":app", s(app_id))
        .value(":active", s(ACTIVE));
        let mut link = link_key(app_id, conversation_id);
        link.insert("group_id".into(), number(group_id));
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(link))
            .condition_expression("attribute_not_exists(pk) OR group_id = :g")
            .expression_attribute_values(":g", number(group_id))
            .build()
            .map_err(build_err)?;
        let items = vec![
            self.update_meta(group_id, &update, &cond)?,
            TransactWriteItem::builder().put(put).build(),
        ];
        let refused = match self.transact(items).await? {
            TxOutcome::Done => return Ok(MirrorLink::Linked),
            TxOutcome::Refused(r) => r,
        };
        if refused.iter().any(|(i, _)| *i == 0) {
            return Ok(match self.group_meta(group_id).await? {
                Some(m) if m.live && m.app_id == app_id => match m.conversation_id {
                    Some(c) => MirrorLink::AlreadyLinked(c),
                    // Live and unlinked, yet refused: changed between the two reads.
                    None => return Err(StoreError::Contention),
                },
                _ => MirrorLink::GroupGone,
            });
        }
        Ok(MirrorLink::Taken)
    }

    /// The live groups of an app, by id. A Scan: for the operator's reconcile only (no
    /// function may Scan), since groups are keyed by id, not by app.
    pub async fn app_group_ids(&self, app_id: &str) -> Result<Vec<u64>, StoreError> {
        let mut pages = self
            .client
            .scan()
            .table_name(&self.table)
            .filter_expression("sk = :meta AND #app = :app AND #status = :active")
            .expression_attribute_names("#app", "app_id")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":meta", s(META_SK))
            .expression_attribute_values(":app", s(app_id))
            .expression_attribute_values(":active", s(ACTIVE))
            .projection_expression("group_id")
            .consistent_read(true)
            .into_paginator()
            .items()
            .send();
        let mut ids = Vec::new();
        while let Some(item) = pages.next().await {
            let item = item.map_err(|e| sdk_err("Scan(groups)", e))?;
            if let Some(id) = item
                .get("group_id")
                .and_then(|v| v.as_n().ok())
                .and_then(|n| n.parse().ok())
            {
                ids.push(id);
            }
        }
        ids.sort_unstable();
        Ok(ids)
    }

    /// Moves a group from a conversation that no longer exists to one the mirror made:
    /// the group (still naming `old`), the old link's removal and the new link, in one
    /// transaction. False when the group moved on meanwhile.
    pub async fn relink_mirrored(
        &self,
        app_id: &str,
        group_id: u64,
        old: &str,
        new: &str,
    ) -> Result<bool, StoreError> {
        let update =
            Expr::new("SET conversation_id = :new, mirrored_conversation = :new ADD version :one")
                .value(":new", s(new))
                .value(":one", AttributeValue::N("1".into()));
        let cond = Expr::new("#app = :app AND #status = :active AND conversation_id = :old")
            .name("#app", "app_id")
            .name("#status", "status")
            .value(":app", s(app_id))
            .value(":active", s(ACTIVE))
            .value(":old", s(old));
        let items = vec![
            self.update_meta(group_id, &update, &cond)?,
            self.link_delete(app_id, old, group_id)?,
            self.link_put(app_id, new, group_id)?,
        ];
        Ok(matches!(self.transact(items).await?, TxOutcome::Done))
    }

    /// Clears a group's failed state once a reconcile repaired it.
    pub async fn clear_sync_failure(&self, group_id: u64) -> Result<(), StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(sync_key(group_id)))
            .update_expression("SET #status = :ok, #at = :now REMOVE #error")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#at", "at")
            .expression_attribute_names("#error", "error")
            .expression_attribute_values(":ok", s(SyncStatus::Ok.as_str()))
            .expression_attribute_values(":now", s(now_rfc3339()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if is_condition_failure(&e) => Ok(()),
            Err(e) => Err(sdk_err("UpdateItem(sync)", e)),
        }
    }
}
