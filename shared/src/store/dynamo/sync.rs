//! What the IM cloud mirror (`im-sync`) reads and writes: the app's IM cloud settings and
//! master key together, a group's sync state (how far the stream has been applied, and
//! whether the IM cloud refused a change for good), and the write-back of a conversation
//! the mirror created for a group.

use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};

use super::expr::{Expr, UpdateExpr};
use super::layout::*;
use super::{build_err, is_condition_failure, sdk_err, DynamoStore, TxOutcome};
use crate::model::Caller;
use crate::model::{CloudId, ImCloud, Secret, SyncReport, SyncStatus, TencentCloud};
use crate::store::{CloudStateStore, StoreError};

/// Stream sequence numbers are decimal strings of 21 to 40 digits; padded to 40, their
/// byte order is their numeric order, so a condition can compare them.
pub fn padded_sequence(seq: &str) -> String {
    format!("{seq:0>40}")
}

/// A group's sync state as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncCursor {
    /// The last stream record applied, padded (see [`padded_sequence`]); empty when
    /// none was.
    pub seq: String,
    pub report: SyncReport,
    /// The first record a try stopped at, while it is not applied: the group's later
    /// records wait for it (see [`DynamoStore::hold_sync`]).
    pub held: Option<Hold>,
    /// The group's dismissal was applied: later member removals are its delete's own.
    pub dismissed: bool,
}

/// A record the group's later records wait for.
/// What a saved cursor records besides its position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncSave<'a> {
    pub status: SyncStatus,
    /// The error a failed status shows (the IM cloud's words).
    pub error: Option<&'a str>,
    /// The group is gone: its state expires after a day.
    pub group_gone: bool,
    /// Lifts the group's hold (the cursor is at or past it).
    pub release: bool,
    /// The group's dismissal was applied.
    pub dismissed: bool,
    /// What the mirror changed on the way (kept until another note replaces it).
    pub note: Option<&'a str>,
}

impl SyncSave<'_> {
    /// In step, nothing else to record.
    pub const OK: SyncSave<'static> = SyncSave {
        status: SyncStatus::Ok,
        error: None,
        group_gone: false,
        release: false,
        dismissed: false,
        note: None,
    };
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    /// Padded (see [`padded_sequence`]).
    pub seq: String,
    /// Why its last try stopped.
    pub why: String,
    /// The record and the group's later ones are deferred (`store::dynamo::deferred`):
    /// only a drain applies them.
    pub deferred: bool,
}

/// An app's IM clouds, as the mirror reads them: each cloud's settings with its key.
pub struct MirrorTarget {
    pub leancloud: Option<(ImCloud, Secret)>,
    pub tencent: Option<(TencentCloud, Secret)>,
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

pub(super) fn sync_key(group_id: u64, cloud: CloudId) -> Item {
    key(group_pk(group_id), sync_sk(cloud))
}

/// The state as `GET /im/group/{id}` reports it: a group waiting for a record that has
/// not reached the IM cloud is `held`, with why that record stopped.
pub(super) fn report_from_item(item: &Item) -> Option<SyncReport> {
    let text = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
    let stored = stored_report(item)?;
    Some(match (stored.status, text(HELD)) {
        (SyncStatus::Ok, Some(_)) => SyncReport {
            status: SyncStatus::Held,
            error: text(HELD_WHY),
            at: text(HELD_AT).unwrap_or(stored.at),
            ..stored
        },
        _ => stored,
    })
}

/// The state as stored (a hold not folded in).
fn stored_report(item: &Item) -> Option<SyncReport> {
    let text = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
    Some(SyncReport {
        status: SyncStatus::parse(&text("status")?)?,
        error: text("error"),
        at: text("at").unwrap_or_default(),
        remote_id: text(REMOTE_ID),
        note: text(NOTE),
    })
}

/// The attributes of a hold: the record, why it stopped, and when.
const HELD: &str = "held";
const CREATION_MARKER: &str = "creation_marker";
const REMOTE_ID: &str = "remote_id";
const NOTE: &str = "note";
const DISMISSED: &str = "dismissed";
const HELD_WHY: &str = "held_why";
const HELD_AT: &str = "held_at";
/// What lifts a hold: the attributes an update removes.
const REMOVE_HOLD: &str = "#held, #held_why, #held_at";

impl DynamoStore {
    /// The app's IM clouds' settings and credentials (LeanCloud's master key, Tencent's
    /// secret key), in one read; `None` for an unknown app. A cloud without settings (or
    /// without its key) is `None` in it.
    pub async fn mirror_target(&self, app_id: &str) -> Result<Option<MirrorTarget>, StoreError> {
        let item = match self
            .app_item(app_id, "im_cloud, master_key, tencent, tencent_key")
            .await
        {
            Ok(item) => item,
            Err(StoreError::NotFound) => return Ok(None),
            Err(e) => return Err(e),
        };
        let leancloud = match item.get("master_key").and_then(|v| v.as_s().ok()) {
            Some(key) => {
                Self::im_cloud_from(app_id, &item)?.map(|cloud| (cloud, Secret::new(key.as_str())))
            }
            None => None,
        };
        let tencent = match Self::tencent_key_from(&item) {
            Some(key) => Self::tencent_from(app_id, &item)?.map(|cloud| (cloud, key)),
            None => None,
        };
        Ok(Some(MirrorTarget { leancloud, tencent }))
    }

    /// The group's sync state in `cloud`, read consistently.
    pub async fn sync_cursor(
        &self,
        group_id: u64,
        cloud: CloudId,
    ) -> Result<Option<SyncCursor>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(sync_key(group_id, cloud)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_err("GetItem(sync)", e))?;
        Ok(out.item().and_then(|item| {
            let text = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
            Some(SyncCursor {
                seq: text("seq").unwrap_or_default(),
                report: stored_report(item)?,
                held: text(HELD).map(|seq| Hold {
                    seq,
                    why: text(HELD_WHY).unwrap_or_default(),
                    deferred: item.contains_key("deferred"),
                }),
                dismissed: item.get(DISMISSED).and_then(|v| v.as_bool().ok()) == Some(&true),
            })
        }))
    }

    /// Records that the stream was applied up to `seq` (a raw sequence number), as
    /// `saved` says. Never moves
    /// the cursor back: a slower, concurrent try that lost the race leaves the state as
    /// the faster one wrote it. A gone group's state expires after a day, once no retry
    /// of its records can arrive.
    pub async fn save_sync(
        &self,
        group_id: u64,
        cloud: CloudId,
        seq: &str,
        saved: &SyncSave<'_>,
    ) -> Result<(), StoreError> {
        let SyncSave {
            status,
            error,
            group_gone,
            release,
            dismissed,
            note,
        } = *saved;
        // An update that creates the item when needed: the function may update group
        // items but put none (template.yaml).
        let mut update = UpdateExpr::new()
            .set("seq = :seq")
            .set("#status = :status")
            .set("#at = :now");
        let mut values = vec![
            (":seq", s(padded_sequence(seq))),
            (":status", s(status.as_str())),
        ];
        if let Some(e) = error {
            update = update.set("#error = :error");
            values.push((":error", s(e)));
        }
        if let Some(n) = note {
            update = update.set("#note = :note");
            values.push((":note", s(n)));
        }
        if dismissed {
            update = update.set("#dismissed = :dismissed");
            values.push((":dismissed", AttributeValue::Bool(true)));
        }
        if group_gone {
            update = update.set("expires_at = :expires");
            values.push((":expires", number(epoch_now() + 24 * 60 * 60)));
        }
        if error.is_none() {
            update = update.remove("#error");
        }
        if release {
            update = update.remove(REMOVE_HOLD);
        }
        self.update_sync(
            group_id,
            cloud,
            &update,
            "attribute_not_exists(seq) OR seq <= :seq",
            values,
        )
        .await
        .map(drop)
    }

    /// One update of the group's sync item in `cloud`, conditional unless `condition` is
    /// empty; answers whether it was made (a refused condition is no error). The placeholders of the item's attributes
    /// (`#status`, `#at`, `#error`, `#held`, `#held_why`, `#held_at`) and `:now` are
    /// filled in as far as the expressions use them.
    async fn update_sync(
        &self,
        group_id: u64,
        cloud: CloudId,
        update: &UpdateExpr,
        condition: &str,
        values: Vec<(&str, AttributeValue)>,
    ) -> Result<bool, StoreError> {
        let update = update.text();
        let update = update.as_str();
        const NAMES: [(&str, &str); 9] = [
            ("#dismissed", DISMISSED),
            ("#note", NOTE),
            ("#remote_id", REMOTE_ID),
            ("#status", "status"),
            ("#at", "at"),
            ("#error", "error"),
            ("#held_why", HELD_WHY),
            ("#held_at", HELD_AT),
            ("#held", HELD),
        ];
        let used = |p: &str| {
            // `#held` is a prefix of the others: match it as a whole word.
            [update, condition].iter().any(|text| {
                text.match_indices(p).any(|(i, _)| {
                    !text[i + p.len()..].starts_with(|c: char| c == '_' || c.is_alphanumeric())
                })
            })
        };
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(sync_key(group_id, cloud)))
            .update_expression(update);
        if !condition.is_empty() {
            request = request.condition_expression(condition);
        }
        for (placeholder, name) in NAMES {
            if used(placeholder) {
                request = request.expression_attribute_names(placeholder, name);
            }
        }
        if used(":now") {
            request = request.expression_attribute_values(":now", s(now_rfc3339()));
        }
        for (placeholder, value) in values {
            request = request.expression_attribute_values(placeholder, value);
        }
        match request.send().await {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failure(&e) => Ok(false),
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
        let update = UpdateExpr::new()
            .set("conversation_id = :c")
            .set("mirrored_conversation = :c")
            .add("version :one")
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
            .condition_expression(super::links::LINK_FREE)
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
        let update = UpdateExpr::new()
            .set("conversation_id = :new")
            .set("mirrored_conversation = :new")
            .add("version :one")
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
            self.link_close(app_id, old, group_id)?,
            self.link_put(app_id, new, group_id)?,
        ];
        Ok(matches!(self.transact(items).await?, TxOutcome::Done))
    }

    /// Marks the group's record `seq` (raw) as not applied, because of `why`: until it is
    /// (a retry, or a redrive of its dead letter), the mirror applies none of the group's
    /// later records, so that they cannot overtake it (a member change applied before an
    /// earlier one, a create's message skipped because a later record moved the cursor
    /// past it). Only the earliest such record holds, and only while the cursor is before
    /// it.
    pub async fn hold_sync(
        &self,
        group_id: u64,
        cloud: CloudId,
        seq: &str,
        why: &str,
    ) -> Result<(), StoreError> {
        self.update_sync(
            group_id,
            cloud,
            &UpdateExpr::new()
                .set("#held = :seq")
                .set("#held_why = :why")
                .set("#held_at = :now")
                .set("#status = if_not_exists(#status, :ok)")
                .set("#at = if_not_exists(#at, :now)"),
            "(attribute_not_exists(seq) OR seq < :seq) AND (attribute_not_exists(#held) OR #held >= :seq)",
            vec![
                (":seq", s(padded_sequence(seq))),
                (":why", s(why)),
                (":ok", s(SyncStatus::Ok.as_str())),
            ],
        )
        .await
        .map(drop)
    }

    /// The marker of the conversation the mirror makes for `group_id`: `candidate`, or
    /// the one an earlier try stored (kept in the group's `SYNC` item, written before the
    /// create call). The create puts it in the conversation's attributes, so a try whose
    /// answer was lost finds its own conversation by it. Clients can set any attribute
    /// (a `group_id` included) on conversations they make, but cannot know this value, so
    /// a conversation they pre-tag is never taken for ours. (LeanCloud's: a cloud whose
    /// group ids the mirror picks itself needs none.)
    pub async fn creation_marker(
        &self,
        group_id: u64,
        candidate: &str,
    ) -> Result<String, StoreError> {
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(sync_key(group_id, CloudId::LeanCloud)))
            .update_expression(
                UpdateExpr::new()
                    .set("#marker = if_not_exists(#marker, :marker)")
                    .text(),
            )
            .expression_attribute_names("#marker", CREATION_MARKER)
            .expression_attribute_values(":marker", s(candidate))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew)
            .send()
            .await
            .map_err(|e| sdk_err("UpdateItem(sync marker)", e))?;
        out.attributes()
            .and_then(|a| a.get(CREATION_MARKER))
            .and_then(|v| v.as_s().ok())
            .cloned()
            .ok_or_else(|| StoreError::Backend("the sync item kept no creation marker".into()))
    }

    /// Records the group's id in `cloud` once the mirror made the group there (or found
    /// that an earlier try had): later tries go on from it instead of creating it again.
    pub async fn set_remote_id(
        &self,
        group_id: u64,
        cloud: CloudId,
        remote_id: &str,
    ) -> Result<(), StoreError> {
        self.update_sync(
            group_id,
            cloud,
            &UpdateExpr::new()
                .set("#remote_id = :id")
                .set("#status = if_not_exists(#status, :ok)")
                .set("#at = if_not_exists(#at, :now)"),
            "",
            vec![(":id", s(remote_id)), (":ok", s(SyncStatus::Ok.as_str()))],
        )
        .await
        .map(drop)
    }

    /// Marks the group failed in `cloud` outside the stream's order (an operator's
    /// backfill): the cursor stays where it is.
    pub async fn mark_sync_failed(
        &self,
        group_id: u64,
        cloud: CloudId,
        why: &str,
        note: Option<&str>,
    ) -> Result<(), StoreError> {
        let mut update = UpdateExpr::new()
            .set("#status = :failed")
            .set("#error = :why")
            .set("#at = :now");
        let mut values = vec![
            (":failed", s(SyncStatus::Failed.as_str())),
            (":why", s(why)),
        ];
        if let Some(n) = note {
            update = update.set("#note = :note");
            values.push((":note", s(n)));
        }
        self.update_sync(group_id, cloud, &update, "", values)
            .await
            .map(drop)
    }

    /// Records what the mirror changed on the way (a name cut to the cloud's limit).
    pub async fn note_sync(
        &self,
        group_id: u64,
        cloud: CloudId,
        note: &str,
    ) -> Result<(), StoreError> {
        self.update_sync(
            group_id,
            cloud,
            &UpdateExpr::new().set("#note = :note"),
            "",
            vec![(":note", s(note))],
        )
        .await
        .map(drop)
    }

    /// Clears a group's failed state, and its hold, once a reconcile repaired it (what
    /// the held records would have done is in the conversation now). `held`, the hold
    /// the reconcile saw (padded), also moves the cursor to it: the repair stands in for
    /// that record, so a later redrive of it is skipped rather than applied over the
    /// group's newer changes.
    pub async fn clear_sync_failure(
        &self,
        group_id: u64,
        cloud: CloudId,
        held: Option<&str>,
    ) -> Result<(), StoreError> {
        let ok = || (":ok", s(SyncStatus::Ok.as_str()));
        if let Some(h) = held {
            let moved = self
                .update_sync(
                    group_id,
                    cloud,
                    &UpdateExpr::new()
                        .set("seq = :held")
                        .set("#status = :ok")
                        .set("#at = :now")
                        .remove("#error")
                        .remove(REMOVE_HOLD),
                    "#held = :held AND (attribute_not_exists(seq) OR seq < :held)",
                    vec![(":held", s(h)), ok()],
                )
                .await?;
            // Otherwise it was applied meanwhile, or another record holds now: clear as
            // without one.
            if moved {
                return Ok(());
            }
        }
        self.update_sync(
            group_id,
            cloud,
            &UpdateExpr::new()
                .set("#status = :ok")
                .set("#at = :now")
                .remove("#error")
                .remove(REMOVE_HOLD),
            "attribute_exists(pk)",
            vec![ok()],
        )
        .await
        .map(drop)
    }
}

#[async_trait::async_trait]
impl CloudStateStore for DynamoStore {
    async fn mark_cloud_failed(
        &self,
        app_id: &str,
        group_id: u64,
        cloud: CloudId,
        why: &str,
    ) -> Result<bool, StoreError> {
        let backend = Caller {
            app_id: app_id.to_owned(),
            client_id: String::new(),
            app_admin: true,
        };
        let live = self.check_meta(group_id, &Expr::live_in_app(&backend))?;
        let update = aws_sdk_dynamodb::types::Update::builder()
            .table_name(&self.table)
            .set_key(Some(sync_key(group_id, cloud)))
            .update_expression(
                UpdateExpr::new()
                    .set("#status = :failed")
                    .set("#error = :why")
                    .set("#at = :now")
                    .text(),
            )
            .condition_expression(
                "attribute_not_exists(#status) OR #status <> :failed \
                 OR attribute_not_exists(#error) OR #error <> :why",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#error", "error")
            .expression_attribute_names("#at", "at")
            .expression_attribute_values(":failed", s(SyncStatus::Failed.as_str()))
            .expression_attribute_values(":why", s(why))
            .expression_attribute_values(":now", s(now_rfc3339()))
            .build()
            .map_err(build_err)?;
        let items = vec![live, TransactWriteItem::builder().update(update).build()];
        Ok(matches!(self.transact(items).await?, TxOutcome::Done))
    }
}
