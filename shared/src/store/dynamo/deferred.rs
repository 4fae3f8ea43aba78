//! Records the IM cloud mirror put aside while an app was over its IM cloud's quota, so
//! that its shard goes on with every other app's records instead of retrying one app's
//! 429s (`im-sync`'s `mirror.rs` decides when; this is what it writes).
//!
//! The invariants:
//! - a group with deferred records in a cloud is held there (its `SYNC` item's `held`,
//!   with `deferred`), written in the same transaction as the records: the stream's later
//!   records of the group are deferred behind them, never applied before them;
//! - only a drain applies deferred records, and only one at a time per group and cloud
//!   (its lease on the group's index entry);
//! - a drain ends the deferral (the hold and the index entry, in one transaction) only if
//!   no record was deferred since it read them (the entry's `version`).

use aws_sdk_dynamodb::types::{Delete, Put, TransactWriteItem, Update};

use super::expr::UpdateExpr;
use super::layout::*;
use super::sync::padded_sequence;
use super::{build_err, is_condition_failure, query_items, sdk_err, DynamoStore, TxOutcome};
use crate::model::{CloudId, SyncStatus};
use crate::store::StoreError;

/// A group whose deferred records a drain may apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deferral {
    pub cloud: CloudId,
    pub group_id: u64,
    pub app_id: String,
    /// Epoch milliseconds.
    pub due: u64,
    pub version: u64,
}

/// Deferred records of one batch: the JSON the mirror wrote, and the last record's
/// sequence number (padded).
#[derive(Debug, Clone)]
pub struct Deferred {
    pub records: String,
    pub last: String,
    key: Item,
}

/// Epoch milliseconds now.
pub fn epoch_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

fn num(item: &Item, k: &str) -> Option<u64> {
    item.get(k)?.as_n().ok()?.parse().ok()
}

fn deferral_from(item: &Item) -> Option<Deferral> {
    let sk = item.get(SK)?.as_s().ok()?;
    let (cloud, group) = sk.split_once('#')?;
    Some(Deferral {
        cloud: CloudId::parse(cloud)?,
        group_id: group.parse().ok()?,
        app_id: item.get("app_id")?.as_s().ok()?.clone(),
        due: num(item, "due").unwrap_or_default(),
        version: num(item, "version").unwrap_or_default(),
    })
}

impl DynamoStore {
    /// Puts the group's records `first..=last` (raw sequence numbers; `records` their
    /// JSON) aside in `cloud`, holds the group at `first` with `why` (unless its deferral
    /// holds it already, at an earlier record), and lists it for a drain at `due` (epoch
    /// ms). One transaction: `Refused` when the group's cursor has passed `first` (the
    /// records were applied) or an earlier record holds it outside a deferral.
    #[allow(clippy::too_many_arguments)]
    pub async fn defer_records(
        &self,
        group_id: u64,
        cloud: CloudId,
        app_id: &str,
        first: &str,
        last: &str,
        records: String,
        why: &str,
        due: u64,
    ) -> Result<(), StoreError> {
        let first = padded_sequence(first);
        let mut item = deferred_key(group_id, cloud, &first);
        item.insert("records".into(), s(records));
        item.insert("last".into(), s(padded_sequence(last)));
        item.insert("app_id".into(), s(app_id));
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .build()
            .map_err(build_err)?;
        // The hold: a deferral's own stays where it is (at its first record); a group
        // held by nothing, or by this record's own earlier stop, is held here.
        let hold = Update::builder()
            .table_name(&self.table)
            .set_key(Some(super::sync::sync_key(group_id, cloud)))
            .update_expression(
                UpdateExpr::new()
                    .set("#held = if_not_exists(#deferred, :seq)")
                    .set("#deferred = if_not_exists(#deferred, :seq)")
                    .set("#held_why = :why")
                    .set("#held_at = :now")
                    .set("#status = if_not_exists(#status, :ok)")
                    .set("#at = if_not_exists(#at, :now)")
                    .text(),
            )
            .condition_expression(
                "(attribute_not_exists(seq) OR seq < :seq) AND \
                 (attribute_exists(#deferred) OR attribute_not_exists(#held) OR #held >= :seq)",
            )
            .expression_attribute_names("#held", "held")
            .expression_attribute_names("#held_why", "held_why")
            .expression_attribute_names("#held_at", "held_at")
            .expression_attribute_names("#deferred", "deferred")
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#at", "at")
            .expression_attribute_values(":seq", s(first.as_str()))
            .expression_attribute_values(":why", s(why))
            .expression_attribute_values(":now", s(now_rfc3339()))
            .expression_attribute_values(":ok", s(SyncStatus::Ok.as_str()))
            .build()
            .map_err(build_err)?;
        let index = Update::builder()
            .table_name(&self.table)
            .set_key(Some(deferral_key(group_id, cloud)))
            .update_expression(
                UpdateExpr::new()
                    .set("app_id = :app")
                    .set("due = :due")
                    .set("version = if_not_exists(version, :zero) + :one")
                    .text(),
            )
            .expression_attribute_values(":app", s(app_id))
            .expression_attribute_values(":due", number(due))
            .expression_attribute_values(":zero", number(0))
            .expression_attribute_values(":one", number(1))
            .build()
            .map_err(build_err)?;
        let items = vec![
            TransactWriteItem::builder().put(put).build(),
            TransactWriteItem::builder().update(hold).build(),
            TransactWriteItem::builder().update(index).build(),
        ];
        match self.transact(items).await? {
            TxOutcome::Done => Ok(()),
            // The records were applied, or an earlier record holds the group, meanwhile.
            TxOutcome::Refused(_) => Err(StoreError::Contention),
        }
    }

    /// The group's deferred records in `cloud`, oldest first.
    pub async fn deferred_records(
        &self,
        group_id: u64,
        cloud: CloudId,
    ) -> Result<Vec<Deferred>, StoreError> {
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :cloud)")
            .expression_attribute_values(":pk", s(deferred_pk(group_id)))
            .expression_attribute_values(":cloud", s(format!("{}#", cloud.as_str())))
            .consistent_read(true);
        let items = query_items("Query(deferred)", query, usize::MAX).await?;
        Ok(items
            .iter()
            .filter_map(|item| {
                let text = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
                Some(Deferred {
                    records: text("records")?,
                    last: text("last")?,
                    key: key(deferred_pk(group_id), text(SK)?),
                })
            })
            .collect())
    }

    /// Up to `limit` groups whose deferred records are due at `now` (epoch ms) and that
    /// no drain is applying.
    pub async fn due_deferrals(&self, now: u64, limit: usize) -> Result<Vec<Deferral>, StoreError> {
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk")
            .filter_expression(
                "due <= :now AND (attribute_not_exists(lease_until) OR lease_until < :now)",
            )
            .expression_attribute_values(":pk", s(DEFERRED_PK))
            .expression_attribute_values(":now", number(now));
        let items = query_items("Query(deferrals)", query, limit).await?;
        Ok(items.iter().filter_map(deferral_from).collect())
    }

    /// Takes the group's deferral for a drain until `until` (epoch ms): its entry as
    /// leased, or `None` when another drain holds it or it is gone.
    pub async fn lease_deferral(
        &self,
        group_id: u64,
        cloud: CloudId,
        now: u64,
        until: u64,
    ) -> Result<Option<Deferral>, StoreError> {
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(deferral_key(group_id, cloud)))
            .update_expression(UpdateExpr::new().set("lease_until = :until").text())
            .condition_expression(
                "attribute_exists(pk) AND (attribute_not_exists(lease_until) OR lease_until < :now)",
            )
            .expression_attribute_values(":until", number(until))
            .expression_attribute_values(":now", number(now))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew)
            .send()
            .await;
        match out {
            Ok(out) => Ok(out.attributes().and_then(deferral_from)),
            Err(e) if is_condition_failure(&e) => Ok(None),
            Err(e) => Err(sdk_err("UpdateItem(deferral lease)", e)),
        }
    }

    /// Gives the drain's lease back, the deferral due again at `due` (epoch ms).
    pub async fn postpone_deferral(
        &self,
        group_id: u64,
        cloud: CloudId,
        due: u64,
    ) -> Result<(), StoreError> {
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(deferral_key(group_id, cloud)))
            .update_expression(
                UpdateExpr::new()
                    .set("due = :due")
                    .remove("lease_until")
                    .text(),
            )
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":due", number(due))
            .send()
            .await;
        match out {
            Ok(_) => Ok(()),
            Err(e) if is_condition_failure(&e) => Ok(()),
            Err(e) => Err(sdk_err("UpdateItem(deferral due)", e)),
        }
    }

    /// Deletes deferred records a drain has applied.
    pub async fn drop_deferred(&self, applied: &[Deferred]) -> Result<(), StoreError> {
        self.batch_delete(applied.iter().map(|d| d.key.clone()).collect())
            .await
    }

    /// Ends the group's deferral in `cloud` (its hold and its index entry) if nothing was
    /// deferred since the drain read version `version`; `false` otherwise (the drain
    /// goes on with what came).
    pub async fn finish_deferral(
        &self,
        group_id: u64,
        cloud: CloudId,
        version: u64,
    ) -> Result<bool, StoreError> {
        let index = Delete::builder()
            .table_name(&self.table)
            .set_key(Some(deferral_key(group_id, cloud)))
            .condition_expression("version = :v")
            .expression_attribute_values(":v", number(version))
            .build()
            .map_err(build_err)?;
        let release = Update::builder()
            .table_name(&self.table)
            .set_key(Some(super::sync::sync_key(group_id, cloud)))
            .update_expression(
                UpdateExpr::new()
                    .remove("#held")
                    .remove("#held_why")
                    .remove("#held_at")
                    .remove("#deferred")
                    .text(),
            )
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_names("#held", "held")
            .expression_attribute_names("#held_why", "held_why")
            .expression_attribute_names("#held_at", "held_at")
            .expression_attribute_names("#deferred", "deferred")
            .build()
            .map_err(build_err)?;
        let items = vec![
            TransactWriteItem::builder().delete(index).build(),
            TransactWriteItem::builder().update(release).build(),
        ];
        match self.transact(items).await? {
            TxOutcome::Done => Ok(true),
            TxOutcome::Refused(_) => Ok(false),
        }
    }

    /// The group's deferral entry in `cloud`, if it has one.
    pub async fn deferral(
        &self,
        group_id: u64,
        cloud: CloudId,
    ) -> Result<Option<Deferral>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(deferral_key(group_id, cloud)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_err("GetItem(deferral)", e))?;
        Ok(out.item().and_then(deferral_from))
    }
}
