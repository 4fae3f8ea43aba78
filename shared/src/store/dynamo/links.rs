//! Conversation links (`CONV#<app>:<conversation>`: the one group whose conversation it
//! is), and what the signature rules read of a group.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{Put, TransactWriteItem, Update};

use super::expr::UpdateExpr;
use super::layout::*;
use super::{build_err, sdk_err, DynamoStore};
use crate::model::{ConversationClaim, GroupStatus, Standing};
use crate::store::{ConversationStore, StoreError};

/// Who may take a conversation id as its link: nobody holds it, the group holds it
/// already, or its last group let it go (a tombstone: the backend may link it again).
pub(super) const LINK_FREE: &str =
    "attribute_not_exists(pk) OR group_id = :g OR attribute_exists(closed_at)";

impl DynamoStore {
    /// Links `conversation_id` to the group, unless another group holds it.
    pub(super) fn link_put(
        &self,
        app_id: &str,
        conversation_id: &str,
        group_id: u64,
    ) -> Result<TransactWriteItem, StoreError> {
        let mut item = link_key(app_id, conversation_id);
        item.insert("group_id".into(), number(group_id));
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(LINK_FREE)
            .expression_attribute_values(":g", number(group_id))
            .build()
            .map_err(build_err)?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    /// Unlinks `conversation_id`, if the group holds it, leaving a tombstone: the
    /// conversation was a group's, and its members may still be in it, so it never
    /// becomes "unlinked" (where any client may get signatures on it). Only the app's
    /// backend gets signatures on it, until the backend links it again.
    pub(super) fn link_close(
        &self,
        app_id: &str,
        conversation_id: &str,
        group_id: u64,
    ) -> Result<TransactWriteItem, StoreError> {
        let update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(link_key(app_id, conversation_id)))
            .update_expression(
                UpdateExpr::new()
                    .set("closed_at = if_not_exists(closed_at, :now)")
                    .text(),
            )
            .condition_expression("attribute_not_exists(pk) OR group_id = :g")
            .expression_attribute_values(":g", number(group_id))
            .expression_attribute_values(":now", s(now_rfc3339()))
            .build()
            .map_err(build_err)?;
        Ok(TransactWriteItem::builder().update(update).build())
    }
}

#[async_trait]
impl ConversationStore for DynamoStore {
    async fn conversation_group(
        &self,
        app_id: &str,
        conversation_id: &str,
    ) -> Result<Option<ConversationClaim>, StoreError> {
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
            return Ok(None);
        };
        if item.contains_key("closed_at") {
            return Ok(Some(ConversationClaim::Closed));
        }
        Ok(item
            .get("group_id")
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse().ok())
            .map(ConversationClaim::Group))
    }

    async fn standing(
        &self,
        app_id: &str,
        group_id: u64,
        client_id: &str,
        named: &[&str],
    ) -> Result<GroupStatus, StoreError> {
        // One BatchGetItem takes at most 100 keys: the group item, the caller and 98
        // named ids in the first; the rest (a list of up to IM_MAX_SIGNATURE_MEMBERS) after.
        let rest: Vec<&str> = named.iter().copied().filter(|n| *n != client_id).collect();
        let (first, later) = rest.split_at(rest.len().min(98));
        let mut clients = vec![client_id];
        clients.extend_from_slice(first);
        let (meta, mut present) = self.meta_and_members(group_id, &clients, false).await?;
        let Some(m) = meta.filter(|m| m.app_id == app_id) else {
            return Ok(GroupStatus::Absent);
        };
        if !m.live {
            return Ok(GroupStatus::Deleting);
        }
        for chunk in later.chunks(99) {
            present.extend(self.meta_and_members(group_id, chunk, false).await?.1);
        }
        Ok(GroupStatus::Live(Standing {
            member: present.contains(client_id),
            owner: m.owner == client_id,
            admin: m.admins.contains(client_id),
            named_members: named
                .iter()
                .filter(|n| present.contains(**n))
                .map(|n| n.to_string())
                .collect(),
            owner_id: m.owner,
        }))
    }
}
