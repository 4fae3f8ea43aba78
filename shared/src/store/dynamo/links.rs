//! Conversation links (`CONV#<app>:<conversation>`: the one group whose conversation it
//! is), and what the signature rules read of a group.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{Delete, Put, TransactWriteItem};

use super::layout::*;
use super::{build_err, sdk_err, DynamoStore};
use crate::model::{GroupStatus, Standing};
use crate::store::{ConversationStore, StoreError};

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
            .condition_expression("attribute_not_exists(pk) OR group_id = :g")
            .expression_attribute_values(":g", number(group_id))
            .build()
            .map_err(build_err)?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    /// Unlinks `conversation_id`, if the group holds it.
    pub(super) fn link_delete(
        &self,
        app_id: &str,
        conversation_id: &str,
        group_id: u64,
    ) -> Result<TransactWriteItem, StoreError> {
        let delete = Delete::builder()
            .table_name(&self.table)
            .set_key(Some(link_key(app_id, conversation_id)))
            .condition_expression("attribute_not_exists(pk) OR group_id = :g")
            .expression_attribute_values(":g", number(group_id))
            .build()
            .map_err(build_err)?;
        Ok(TransactWriteItem::builder().delete(delete).build())
    }
}

#[async_trait]
impl ConversationStore for DynamoStore {
    async fn conversation_group(
        &self,
        app_id: &str,
        conversation_id: &str,
    ) -> Result<Option<u64>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(link_key(app_id, conversation_id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_err("GetItem(conversation link)", e))?;
        Ok(out
            .item()
            .and_then(|i| i.get("group_id"))
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse().ok()))
    }

    async fn standing(
        &self,
        app_id: &str,
        group_id: u64,
        client_id: &str,
    ) -> Result<GroupStatus, StoreError> {
        let (meta, present) = self.meta_and_members(group_id, &[client_id], false).await?;
        Ok(match meta.filter(|m| m.app_id == app_id) {
            None => GroupStatus::Absent,
            Some(m) if !m.live => GroupStatus::Deleting,
            Some(m) => GroupStatus::Live(Standing {
                member: present.contains(client_id),
                owner: m.owner == client_id,
                admin: m.admins.contains(client_id),
                owner_id: m.owner,
            }),
        })
    }
}
