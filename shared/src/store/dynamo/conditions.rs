//! Conditional writes of a group item, and telling why DynamoDB refused one: the
//! caller may not (403), the group is gone or hidden (404), or only an `If-Match`
//! version stood in the way (412).

use aws_sdk_dynamodb::types::{
    ConditionCheck, ReturnValue, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update,
};

use super::expr::{Expr, UpdateExpr};
use super::layout::*;
use super::{build_err, is_condition_failure, sdk_err, DynamoStore};
use crate::model::{Caller, GroupMeta};
use crate::store::StoreError;

/// An `If-Match` on a write: the versions it accepts, and who may make the write (a
/// caller who may not gets 403/404 as without the header, never 412).
#[derive(Clone, Copy)]
pub(super) struct Precondition<'a> {
    pub(super) versions: &'a [u64],
    pub(super) may: fn(&GroupMeta, &Caller) -> bool,
}

impl Precondition<'_> {
    /// `Stale` when the refused write was the caller's to make and only the version
    /// stood in its way.
    pub(super) fn stale(&self, caller: &Caller, old: Option<&Item>) -> Option<StoreError> {
        let meta = old.and_then(meta_from_item)?;
        let visible = meta.live && meta.app_id == caller.app_id && (self.may)(&meta, caller);
        (visible && !self.versions.contains(&meta.version)).then_some(StoreError::Stale {
            current: meta.version,
        })
    }
}

impl DynamoStore {
    /// A transaction item that only checks the group item against `cond`.
    pub(super) fn check_meta(
        &self,
        group_id: u64,
        cond: &Expr,
    ) -> Result<TransactWriteItem, StoreError> {
        let check = ConditionCheck::builder()
            .table_name(&self.table)
            .set_key(Some(meta_key(group_id)))
            .condition_expression(cond.text())
            .set_expression_attribute_names(Some(cond.names().clone()))
            .set_expression_attribute_values(Some(cond.values().clone()))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(build_err)?;
        Ok(TransactWriteItem::builder().condition_check(check).build())
    }

    /// A transaction item that updates the group item with `update`, if `cond` holds.
    pub(super) fn update_meta(
        &self,
        group_id: u64,
        update: &UpdateExpr,
        cond: &Expr,
    ) -> Result<TransactWriteItem, StoreError> {
        let (names, values) = update.placeholders_with(cond);
        let u = Update::builder()
            .table_name(&self.table)
            .set_key(Some(meta_key(group_id)))
            .update_expression(update.text())
            .condition_expression(cond.text())
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(build_err)?;
        Ok(TransactWriteItem::builder().update(u).build())
    }

    /// A transaction item that checks `client_id` is a member.
    pub(super) fn check_member(
        &self,
        group_id: u64,
        client_id: &str,
    ) -> Result<TransactWriteItem, StoreError> {
        let check = ConditionCheck::builder()
            .table_name(&self.table)
            .set_key(Some(key(group_pk(group_id), member_sk(client_id))))
            // A member item a big add is still writing (or whose mark is not yet
            // removed, see `bulk`) is not taken as a member by any write.
            .condition_expression("attribute_exists(sk) AND attribute_not_exists(#p)")
            .expression_attribute_names("#p", PENDING)
            .build()
            .map_err(build_err)?;
        Ok(TransactWriteItem::builder().condition_check(check).build())
    }

    /// Runs a conditional update of the group item alone; returns the item as it was
    /// (`ReturnValue::AllOld`) or became (`AllNew`).
    pub(super) async fn update_meta_alone(
        &self,
        caller: &Caller,
        group_id: u64,
        update: &UpdateExpr,
        cond: &Expr,
        returning: ReturnValue,
        precondition: Option<Precondition<'_>>,
    ) -> Result<Option<Item>, StoreError> {
        let (names, values) = update.placeholders_with(cond);
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(meta_key(group_id)))
            .update_expression(update.text())
            .condition_expression(cond.text())
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
            .return_values(returning)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(out) => Ok(out.attributes),
            Err(e) if is_condition_failure(&e) => {
                let old = e
                    .as_service_error()
                    .and_then(|se| match se {
                        aws_sdk_dynamodb::operation::update_item::UpdateItemError::ConditionalCheckFailedException(c) => c.item.clone(),
                        _ => None,
                    });
                if let Some(stale) = precondition.and_then(|p| p.stale(caller, old.as_ref())) {
                    return Err(stale);
                }
                Err(self.refusal(caller, group_id, old).await)
            }
            Err(e) => Err(sdk_err("UpdateItem(group)", e)),
        }
    }

    /// Why a guarded write to a group was refused, from the group item as it was: a
    /// group that is gone, another app's, or one the caller is not a member of is
    /// `NotFound`; a member who may not do this gets `Forbidden`.
    pub(super) async fn refusal(
        &self,
        caller: &Caller,
        group_id: u64,
        old: Option<Item>,
    ) -> StoreError {
        let Some(meta) = old.as_ref().and_then(meta_from_item) else {
            return StoreError::NotFound;
        };
        if !meta.live || meta.app_id != caller.app_id {
            return StoreError::NotFound;
        }
        if caller.app_admin || meta.manages(&caller.client_id) {
            return StoreError::Forbidden;
        }
        match self
            .is_member(group_id, &caller.client_id, &meta.pending_adds)
            .await
        {
            Ok(true) => StoreError::Forbidden,
            Ok(false) => StoreError::NotFound,
            Err(e) => e,
        }
    }

    /// Maps a refused group transaction: the group item at index 0 gets `refusal`; a
    /// refused caller check (index 1 when present) means the caller is not a member.
    pub(super) async fn refused(
        &self,
        caller: &Caller,
        group_id: u64,
        refused: Vec<(usize, Option<Item>)>,
    ) -> StoreError {
        match refused.into_iter().next() {
            Some((0, old)) => self.refusal(caller, group_id, old).await,
            _ => StoreError::NotFound,
        }
    }
}
