//! Idempotency records of creates (`IDEM#<app>:<client>:<key>`), written in the create's
//! own transaction and expired through the table's TTL attribute.

use aws_sdk_dynamodb::types::{Put, TransactWriteItem};

use super::layout::*;
use super::{build_err, sdk_err, DynamoStore};
use crate::model::{Caller, Created, Idempotency, MemberList, NewGroup, IDEMPOTENCY_WINDOW};
use crate::store::StoreError;

impl DynamoStore {
    /// The group an unexpired idempotency record answers with; `KeyReused` when the
    /// record is for another request.
    pub(super) async fn replay(
        &self,
        caller: &Caller,
        idempotency: &Idempotency,
    ) -> Result<Option<Created>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(idempotency_key(caller, &idempotency.key)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_err("GetItem(idempotency)", e))?;
        let Some(item) = out.item() else {
            return Ok(None);
        };
        let text = |k: &str| item.get(k).and_then(|v| v.as_s().ok()).cloned();
        let num = |k: &str| {
            item.get(k)
                .and_then(|v| v.as_n().ok())
                .and_then(|n| n.parse::<u64>().ok())
        };
        // DynamoDB's TTL removes expired items only eventually: an expired one is absent.
        if num("expires_at").unwrap_or_default() <= epoch_now() {
            return Ok(None);
        }
        if text("fingerprint").as_deref() != Some(idempotency.fingerprint.as_str()) {
            return Err(StoreError::KeyReused);
        }
        let members = MemberList::parse_joined(
            "member_client_ids",
            &text("member_client_ids").unwrap_or_default(),
            usize::MAX,
            usize::MAX,
        )
        .map_err(|e| StoreError::Backend(format!("idempotency record: {e}")))?;
        Ok(Some(Created {
            group: NewGroup {
                group_id: num("group_id").unwrap_or_default(),
                group_name: text("group_name").unwrap_or_default(),
                owner: text("owner").unwrap_or_default(),
                members,
            },
            replayed: true,
        }))
    }

    /// The record that answers retries of this create for [`IDEMPOTENCY_WINDOW`]; it
    /// may replace an expired record that TTL has not removed yet.
    pub(super) fn idempotency_put(
        &self,
        caller: &Caller,
        idempotency: &Idempotency,
        group: &NewGroup,
        now: &str,
    ) -> Result<TransactWriteItem, StoreError> {
        let mut item = idempotency_key(caller, &idempotency.key);
        item.insert("fingerprint".into(), s(idempotency.fingerprint.as_str()));
        item.insert("group_id".into(), number(group.group_id));
        item.insert("group_name".into(), s(group.group_name.as_str()));
        item.insert("owner".into(), s(group.owner.as_str()));
        item.insert("member_client_ids".into(), s(group.members.joined()));
        item.insert("created_at".into(), s(now));
        let epoch = epoch_now();
        item.insert(
            "expires_at".into(),
            number(epoch + IDEMPOTENCY_WINDOW.as_secs()),
        );
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk) OR expires_at <= :now")
            .expression_attribute_values(":now", number(epoch))
            .build()
            .map_err(build_err)?;
        Ok(TransactWriteItem::builder().put(put).build())
    }
}
