//! Storage: the small trait the routes use, and its DynamoDB implementation.
//!
//! One table, keyed `pk`/`sk` (the definition lives once, in `template.yaml`):
//!
//! | item | pk | sk | attributes |
//! | --- | --- | --- | --- |
//! | app | `APP` | app id | `master_key`, `created_at`, `updated_at` |
//! | group-id counter | `COUNTER` | `GROUP_ID` | `next_id` |
//! | group | `GROUP#<id>` | `META` | `group_id`, `group_name`, `status`, `created_at`, `updated_at` |
//! | member | `GROUP#<id>` | `MEMBER#<client id>` | `client_id`, `group_id`, `joined_at`, `gsi1pk` = `CLIENT#<client id>`, `gsi1sk` = `GROUP#<id, 20 digits>` |
//!
//! Every write that touches several items is one transaction that also checks the group
//! item, so a crash or a concurrent request can neither lose a member nor leave half a
//! group behind.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, ConditionCheck, Delete, DeleteRequest, Put, ReturnValue,
    ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update, WriteRequest,
};
use aws_sdk_dynamodb::Client;
use rand::Rng;
use thiserror::Error;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::error::ApiError;
use crate::ids::MemberList;
use crate::secret::Secret;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    #[error("already exists")]
    AlreadyExists,
    /// Other transactions kept winning on the same group; the caller may retry.
    #[error("too many concurrent writes to the same group")]
    Contention,
    #[error("throttled by DynamoDB")]
    Throttled,
    #[error("dynamodb: {0}")]
    Backend(String),
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound => ApiError::NotFound("group"),
            StoreError::AlreadyExists => ApiError::Conflict("already exists".into()),
            StoreError::Contention => {
                ApiError::Conflict("too many concurrent changes to this group; retry".into())
            }
            StoreError::Throttled => ApiError::Unavailable,
            StoreError::Backend(detail) => {
                tracing::error!(error = %detail, "storage failure");
                ApiError::Internal
            }
        }
    }
}

/// A freshly created group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewGroup {
    pub group_id: u64,
    pub group_name: String,
    pub members: MemberList,
}

/// What the routes need from storage; nothing else.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The app's master key, or `None` for an unknown app.
    async fn master_key(&self, app_id: &str) -> Result<Option<Secret>, StoreError>;
    async fn create_group(&self, name: &str, members: &MemberList) -> Result<NewGroup, StoreError>;
    async fn rename_group(&self, group_id: u64, name: &str) -> Result<(), StoreError>;
    async fn delete_group(&self, group_id: u64) -> Result<(), StoreError>;
    /// Adding a client that is already a member keeps its original `joined_at`.
    async fn add_members(&self, group_id: u64, members: &MemberList) -> Result<(), StoreError>;
    async fn remove_members(&self, group_id: u64, members: &MemberList) -> Result<(), StoreError>;
}

// Key layout. Kept private: nothing outside this module builds keys.
const PK: &str = "pk";
const SK: &str = "sk";
const APP_PK: &str = "APP";
const COUNTER_PK: &str = "COUNTER";
const COUNTER_SK: &str = "GROUP_ID";
const META_SK: &str = "META";
const MEMBER_PREFIX: &str = "MEMBER#";
const ACTIVE: &str = "active";
const DELETING: &str = "deleting";
/// The group item exists and is not being deleted.
const GROUP_IS_LIVE: &str = "attribute_exists(pk) AND #status = :active";

fn group_pk(id: u64) -> String {
    format!("GROUP#{id}")
}

fn member_sk(client_id: &str) -> String {
    format!("{MEMBER_PREFIX}{client_id}")
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn key(pk: impl Into<String>, sk: impl Into<String>) -> HashMap<String, AttributeValue> {
    HashMap::from([(PK.to_owned(), s(pk)), (SK.to_owned(), s(sk))])
}

fn now_rfc3339() -> String {
    OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_owned())
}

fn build_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("request build: {e}"))
}

fn is_throttle(code: Option<&str>) -> bool {
    matches!(
        code,
        Some(
            "ProvisionedThroughputExceededException"
                | "RequestLimitExceeded"
                | "ThrottlingException"
        )
    )
}

/// Maps an SDK error; throttling becomes a retryable 503, the rest a logged 500.
fn sdk_err<E, R>(op: &'static str, err: SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    if is_throttle(err.code()) {
        return StoreError::Throttled;
    }
    StoreError::Backend(format!("{op}: {}", DisplayErrorContext(&err)))
}

/// How a cancelled transaction failed, from its per-item reasons.
enum TxOutcome {
    Done,
    /// An item failed its condition (for our transactions: the group item).
    ConditionFailed,
}

#[derive(Clone, Debug)]
pub struct DynamoStore {
    client: Client,
    table: String,
}

impl DynamoStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    /// A client configured from the standard AWS environment (region, credentials,
    /// `AWS_ENDPOINT_URL_DYNAMODB` for DynamoDB Local), with timeouts so that a stuck
    /// connection answers with an error instead of hanging the request.
    pub async fn client_from_env() -> Client {
        let timeouts = aws_config::timeout::TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(3))
            .operation_attempt_timeout(Duration::from_secs(5))
            .operation_timeout(Duration::from_secs(12))
            .build();
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .timeout_config(timeouts)
            .load()
            .await;
        Client::new(&config)
    }

    /// A client for DynamoDB Local at `endpoint`: a fixed region and placeholder
    /// credentials, which DynamoDB Local accepts and never checks.
    pub async fn local_client(endpoint: &str) -> Client {
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
                "local",
                "local",
                None,
                None,
                "dynamodb-local",
            ))
            .endpoint_url(endpoint)
            .load()
            .await;
        Client::new(&config)
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// Runs a transaction, retrying the cancellations caused by other transactions on the
    /// same items (jittered exponential back-off). Condition failures are returned, not
    /// retried.
    async fn transact(&self, items: Vec<TransactWriteItem>) -> Result<TxOutcome, StoreError> {
        const ATTEMPTS: u32 = 12;
        for attempt in 0..ATTEMPTS {
            let result = self
                .client
                .transact_write_items()
                .set_transact_items(Some(items.clone()))
                .send()
                .await;
            let err = match result {
                Ok(_) => return Ok(TxOutcome::Done),
                Err(err) => err,
            };
            let conflict = match err.as_service_error() {
                Some(TransactWriteItemsError::TransactionCanceledException(e)) => {
                    let reasons = e.cancellation_reasons();
                    if reasons
                        .iter()
                        .any(|r| r.code() == Some("ConditionalCheckFailed"))
                    {
                        return Ok(TxOutcome::ConditionFailed);
                    }
                    if reasons.iter().any(|r| is_throttle(r.code())) {
                        return Err(StoreError::Throttled);
                    }
                    reasons
                        .iter()
                        .any(|r| r.code() == Some("TransactionConflict"))
                }
                Some(TransactWriteItemsError::TransactionInProgressException(_)) => true,
                _ => false,
            };
            if !conflict {
                return Err(sdk_err("TransactWriteItems", err));
            }
            if attempt + 1 < ATTEMPTS {
                let cap = 10u64 << attempt.min(6);
                let wait = rand::rng().random_range(cap / 2..=cap);
                tokio::time::sleep(Duration::from_millis(wait)).await;
            }
        }
        Err(StoreError::Contention)
    }

    fn live_group_check(&self, group_id: u64) -> Result<TransactWriteItem, StoreError> {
        let check = ConditionCheck::builder()
            .table_name(&self.table)
            .set_key(Some(key(group_pk(group_id), META_SK)))
            .condition_expression(GROUP_IS_LIVE)
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":active", s(ACTIVE))
            .build()
            .map_err(build_err)?;
        Ok(TransactWriteItem::builder().condition_check(check).build())
    }

    fn member_item(group_id: u64, client_id: &str, now: &str) -> HashMap<String, AttributeValue> {
        let mut item = key(group_pk(group_id), member_sk(client_id));
        item.insert("client_id".into(), s(client_id));
        item.insert("group_id".into(), AttributeValue::N(group_id.to_string()));
        item.insert("joined_at".into(), s(now));
        item.insert("gsi1pk".into(), s(format!("CLIENT#{client_id}")));
        item.insert("gsi1sk".into(), s(format!("GROUP#{group_id:020}")));
        item
    }

    async fn next_group_id(&self) -> Result<u64, StoreError> {
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(COUNTER_PK, COUNTER_SK)))
            .update_expression("ADD next_id :one")
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
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

    /// The current members of a live group, in byte order.
    pub async fn group_members(&self, group_id: u64) -> Result<Vec<String>, StoreError> {
        let mut sks = self.member_keys(group_id).await?;
        sks.sort();
        Ok(sks
            .into_iter()
            .filter_map(|sk| sk.strip_prefix(MEMBER_PREFIX).map(str::to_owned))
            .collect())
    }

    /// The group's name, if the group exists and is live.
    pub async fn group_name(&self, group_id: u64) -> Result<Option<String>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(group_pk(group_id), META_SK)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_err("GetItem(group)", e))?;
        Ok(out.item().and_then(|item| {
            let live = item.get("status").and_then(|v| v.as_s().ok()) == Some(&ACTIVE.to_owned());
            live.then(|| item.get("group_name")?.as_s().ok().cloned())
                .flatten()
        }))
    }

    /// Sort keys of every member item under the group, live or not.
    async fn member_keys(&self, group_id: u64) -> Result<Vec<String>, StoreError> {
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

    /// Deletes items 25 at a time, retrying what DynamoDB leaves unprocessed.
    async fn batch_delete(
        &self,
        keys: Vec<HashMap<String, AttributeValue>>,
    ) -> Result<(), StoreError> {
        for chunk in keys.chunks(25) {
            let mut requests: Vec<WriteRequest> = chunk
                .iter()
                .map(|k| {
                    DeleteRequest::builder()
                        .set_key(Some(k.clone()))
                        .build()
                        .map(|d| WriteRequest::builder().delete_request(d).build())
                        .map_err(build_err)
                })
                .collect::<Result<_, _>>()?;
            let mut attempt = 0u32;
            while !requests.is_empty() {
                if attempt > 0 {
                    tokio::time::sleep(Duration::from_millis(20 << attempt.min(6))).await;
                }
                if attempt == 10 {
                    return Err(StoreError::Backend(
                        "batch delete kept being throttled".into(),
                    ));
                }
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, requests)
                    .send()
                    .await
                    .map_err(|e| sdk_err("BatchWriteItem", e))?;
                requests = out
                    .unprocessed_items()
                    .and_then(|m| m.get(&self.table))
                    .cloned()
                    .unwrap_or_default();
                attempt += 1;
            }
        }
        Ok(())
    }

    // --- apps (used by the admin command and the local server) ------------------------

    /// Registers a new app; `AlreadyExists` if the id is taken.
    pub async fn create_app(&self, app_id: &str, master_key: &Secret) -> Result<(), StoreError> {
        let now = now_rfc3339();
        let mut item = key(APP_PK, app_id);
        item.insert("master_key".into(), s(master_key.expose()));
        item.insert("created_at".into(), s(now.clone()));
        item.insert("updated_at".into(), s(now));
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("ConditionalCheckFailedException") => {
                Err(StoreError::AlreadyExists)
            }
            Err(e) => Err(sdk_err("PutItem(app)", e)),
        }
    }

    /// Replaces an existing app's master key; `NotFound` for an unknown app.
    pub async fn rotate_app(&self, app_id: &str, master_key: &Secret) -> Result<(), StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(APP_PK, app_id)))
            .update_expression("SET master_key = :k, updated_at = :now")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":k", s(master_key.expose()))
            .expression_attribute_values(":now", s(now_rfc3339()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("ConditionalCheckFailedException") => {
                Err(StoreError::NotFound)
            }
            Err(e) => Err(sdk_err("UpdateItem(app)", e)),
        }
    }

    pub async fn remove_app(&self, app_id: &str) -> Result<(), StoreError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(APP_PK, app_id)))
            .condition_expression("attribute_exists(pk)")
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("ConditionalCheckFailedException") => {
                Err(StoreError::NotFound)
            }
            Err(e) => Err(sdk_err("DeleteItem(app)", e)),
        }
    }

    /// App ids only: keys never leave the table through this.
    pub async fn list_apps(&self) -> Result<Vec<String>, StoreError> {
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s(APP_PK))
            .projection_expression("sk")
            .into_paginator()
            .items()
            .send();
        let mut ids = Vec::new();
        while let Some(item) = pages.next().await {
            let item = item.map_err(|e| sdk_err("Query(apps)", e))?;
            if let Some(id) = item.get(SK).and_then(|v| v.as_s().ok()) {
                ids.push(id.clone());
            }
        }
        Ok(ids)
    }
}

#[async_trait]
impl Store for DynamoStore {
    async fn master_key(&self, app_id: &str) -> Result<Option<Secret>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(APP_PK, app_id)))
            .projection_expression("master_key")
            .send()
            .await
            .map_err(|e| sdk_err("GetItem(app)", e))?;
        Ok(out
            .item()
            .and_then(|item| item.get("master_key"))
            .and_then(|v| v.as_s().ok())
            .map(|k| Secret::new(k.as_str())))
    }

    async fn create_group(&self, name: &str, members: &MemberList) -> Result<NewGroup, StoreError> {
        // Two round trips: the id must be known before the items that carry it are written.
        let group_id = self.next_group_id().await?;
        let now = now_rfc3339();
        let mut meta = key(group_pk(group_id), META_SK);
        meta.insert("group_id".into(), AttributeValue::N(group_id.to_string()));
        meta.insert("group_name".into(), s(name));
        meta.insert("status".into(), s(ACTIVE));
        meta.insert("created_at".into(), s(now.clone()));
        meta.insert("updated_at".into(), s(now.clone()));
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
        for id in members.ids() {
            let put = Put::builder()
                .table_name(&self.table)
                .set_item(Some(Self::member_item(group_id, id, &now)))
                .build()
                .map_err(build_err)?;
            items.push(TransactWriteItem::builder().put(put).build());
        }
        match self.transact(items).await? {
            TxOutcome::Done => Ok(NewGroup {
                group_id,
                group_name: name.to_owned(),
                members: members.clone(),
            }),
            TxOutcome::ConditionFailed => Err(StoreError::Backend(format!(
                "group id {group_id} from the counter is already taken"
            ))),
        }
    }

    async fn rename_group(&self, group_id: u64, name: &str) -> Result<(), StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(group_pk(group_id), META_SK)))
            .update_expression("SET group_name = :name, updated_at = :now")
            .condition_expression(GROUP_IS_LIVE)
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":active", s(ACTIVE))
            .expression_attribute_values(":name", s(name))
            .expression_attribute_values(":now", s(now_rfc3339()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("ConditionalCheckFailedException") => {
                Err(StoreError::NotFound)
            }
            Err(e) => Err(sdk_err("UpdateItem(group)", e)),
        }
    }

    async fn delete_group(&self, group_id: u64) -> Result<(), StoreError> {
        // 1. Mark the group as being deleted: from here on every read and write treats it
        //    as gone. A group already marked (a delete that crashed half-way) is finished
        //    below, but still answers NotFound: for the caller it was already deleted.
        let marked = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(group_pk(group_id), META_SK)))
            .update_expression("SET #status = :deleting, updated_at = :now")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":deleting", s(DELETING))
            .expression_attribute_values(":now", s(now_rfc3339()))
            .return_values(ReturnValue::AllOld)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        let was_live = match marked {
            Ok(out) => {
                out.attributes()
                    .and_then(|a| a.get("status"))
                    .and_then(|v| v.as_s().ok())
                    .map(String::as_str)
                    == Some(ACTIVE)
            }
            Err(e) if e.code() == Some("ConditionalCheckFailedException") => {
                return Err(StoreError::NotFound)
            }
            Err(e) => return Err(sdk_err("UpdateItem(group delete)", e)),
        };
        // 2. Remove every member item, then the group item itself.
        let member_keys = self
            .member_keys(group_id)
            .await?
            .into_iter()
            .map(|sk| key(group_pk(group_id), sk))
            .collect();
        self.batch_delete(member_keys).await?;
        self.client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(key(group_pk(group_id), META_SK)))
            .send()
            .await
            .map_err(|e| sdk_err("DeleteItem(group)", e))?;
        if was_live {
            Ok(())
        } else {
            Err(StoreError::NotFound)
        }
    }

    async fn add_members(&self, group_id: u64, members: &MemberList) -> Result<(), StoreError> {
        let now = now_rfc3339();
        let mut items = vec![self.live_group_check(group_id)?];
        for id in members.ids() {
            let item = Self::member_item(group_id, id, &now);
            // An upsert that keeps the first joined_at: re-adding a member is not an error.
            let update = Update::builder()
                .table_name(&self.table)
                .set_key(Some(key(group_pk(group_id), member_sk(id))))
                .update_expression(
                    "SET client_id = :c, group_id = :g, gsi1pk = :gp, gsi1sk = :gs, \
                     joined_at = if_not_exists(joined_at, :now)",
                )
                .expression_attribute_values(":c", item["client_id"].clone())
                .expression_attribute_values(":g", item["group_id"].clone())
                .expression_attribute_values(":gp", item["gsi1pk"].clone())
                .expression_attribute_values(":gs", item["gsi1sk"].clone())
                .expression_attribute_values(":now", s(now.clone()))
                .build()
                .map_err(build_err)?;
            items.push(TransactWriteItem::builder().update(update).build());
        }
        match self.transact(items).await? {
            TxOutcome::Done => Ok(()),
            TxOutcome::ConditionFailed => Err(StoreError::NotFound),
        }
    }

    async fn remove_members(&self, group_id: u64, members: &MemberList) -> Result<(), StoreError> {
        let mut items = vec![self.live_group_check(group_id)?];
        for id in members.ids() {
            let delete = Delete::builder()
                .table_name(&self.table)
                .set_key(Some(key(group_pk(group_id), member_sk(id))))
                .build()
                .map_err(build_err)?;
            items.push(TransactWriteItem::builder().delete(delete).build());
        }
        match self.transact(items).await? {
            TxOutcome::Done => Ok(()),
            TxOutcome::ConditionFailed => Err(StoreError::NotFound),
        }
    }
}
