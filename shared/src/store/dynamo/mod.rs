//! The DynamoDB implementation of the store: one table, whose items and keys
//! [`layout`] lists. Every write that touches several items is one transaction, and
//! every rule about who may write (owner, group admin, member) is a condition of that
//! same write, so no concurrent request can slip between a check and the change it
//! guards (`conditions`). By concern: `groups`, `members`, `links` (conversation links and the
//! facts the signature rules read), `idempotency`, `admin` (apps and token keys).

mod admin;
pub mod client;
mod conditions;
mod expr;
mod groups;
mod idempotency;
pub mod layout;
mod links;
mod members;
mod sync;

use std::time::Duration;

use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{DeleteRequest, KeysAndAttributes, TransactWriteItem, WriteRequest};
use aws_sdk_dynamodb::Client;
use rand::Rng;

pub use self::sync::{padded_sequence, MirrorLink, SyncCursor};

use self::layout::Item;
use super::StoreError;

/// How a transaction ended.
pub(super) enum TxOutcome {
    Done,
    /// These items (by index) failed their conditions; the group item, when it is among
    /// them, comes back as it was.
    Refused(Vec<(usize, Option<Item>)>),
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
    /// connection answers with an error instead of hanging the request. Its HTTPS client
    /// trusts only Amazon's root CAs, compiled in ([`client`]), unless the endpoint is
    /// plain http or `IM_DYNAMODB_TRUST=system`.
    pub async fn client_from_env() -> Client {
        let timeouts = aws_config::timeout::TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(3))
            .operation_attempt_timeout(Duration::from_secs(5))
            .operation_timeout(Duration::from_secs(12))
            .build();
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .http_client(client::http_client(client::Trust::from_env()))
            .timeout_config(timeouts);
        if let Some(endpoint) = client::endpoint_override(|name| std::env::var(name).ok()) {
            loader = loader.endpoint_url(endpoint);
        }
        Client::new(&loader.load().await)
    }

    /// Opens the connection to DynamoDB during a function's init, where the CPU is, so
    /// that the first request finds it in the pool: one GetItem of a token key that
    /// cannot exist (every function that reads the table may read `TOKEN_KEY` items),
    /// bounded by `limit`. Any error is logged at debug and ignored: the first request
    /// then meets it again and answers with the service's usual error.
    pub async fn warm_up(&self, limit: Duration) {
        let started = std::time::Instant::now();
        let call = self
            .client
            .get_item()
            .table_name(&self.table)
            // Key ids never contain `:` (`model::ids::check_id`): no such item exists.
            .set_key(Some(layout::key(layout::TOKEN_KEY_PK, "init:warm-up")))
            .projection_expression(layout::PK)
            .send();
        match tokio::time::timeout(limit, call).await {
            Ok(Ok(_)) => tracing::debug!(
                elapsed_ms = started.elapsed().as_millis() as u64,
                "DynamoDB connection opened at init"
            ),
            Ok(Err(err)) => tracing::debug!(
                error = %DisplayErrorContext(&err),
                "DynamoDB warm-up call failed; ignored"
            ),
            Err(_) => tracing::debug!(
                limit_ms = limit.as_millis() as u64,
                "DynamoDB warm-up call timed out; ignored"
            ),
        }
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
    pub(super) async fn transact(
        &self,
        items: Vec<TransactWriteItem>,
    ) -> Result<TxOutcome, StoreError> {
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
                    let refused: Vec<(usize, Option<Item>)> = reasons
                        .iter()
                        .enumerate()
                        .filter(|(_, r)| r.code() == Some("ConditionalCheckFailed"))
                        .map(|(i, r)| (i, r.item().cloned()))
                        .collect();
                    if !refused.is_empty() {
                        return Ok(TxOutcome::Refused(refused));
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
                tracing::debug!(attempt, wait_ms = wait, "transaction conflict, retrying");
                crate::metrics::dynamo_retry("TransactWriteItems");
                tokio::time::sleep(Duration::from_millis(wait)).await;
            }
        }
        Err(StoreError::Contention)
    }

    /// Reads up to 100 items by key, consistently, asking again for what DynamoDB leaves
    /// unprocessed under load.
    pub(super) async fn batch_get(&self, keys: Vec<Item>) -> Result<Vec<Item>, StoreError> {
        let mut found = Vec::new();
        if keys.is_empty() {
            return Ok(found);
        }
        let mut wanted = Some(
            KeysAndAttributes::builder()
                .set_keys(Some(keys))
                .consistent_read(true)
                .build()
                .map_err(build_err)?,
        );
        for attempt in 0..8u32 {
            let Some(keys) = wanted.take() else { break };
            if attempt > 0 {
                crate::metrics::dynamo_retry("BatchGetItem");
                tokio::time::sleep(Duration::from_millis(10 << attempt)).await;
            }
            let out = self
                .client
                .batch_get_item()
                .request_items(&self.table, keys)
                .send()
                .await
                .map_err(|e| sdk_err("BatchGetItem", e))?;
            if let Some(items) = out.responses().and_then(|r| r.get(&self.table)) {
                found.extend(items.iter().cloned());
            }
            wanted = out
                .unprocessed_keys()
                .and_then(|u| u.get(&self.table))
                .filter(|k| !k.keys().is_empty())
                .cloned();
        }
        if wanted.is_some() {
            return Err(StoreError::Throttled);
        }
        Ok(found)
    }

    /// Deletes items 25 at a time, retrying what DynamoDB leaves unprocessed.
    pub(super) async fn batch_delete(&self, keys: Vec<Item>) -> Result<(), StoreError> {
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
}

pub(super) fn build_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("request build: {e}"))
}

pub(super) fn is_throttle(code: Option<&str>) -> bool {
    matches!(
        code,
        Some(
            "ProvisionedThroughputExceededException"
                | "RequestLimitExceeded"
                | "ThrottlingException"
        )
    )
}

pub(super) fn is_condition_failure<E: ProvideErrorMetadata, R>(err: &SdkError<E, R>) -> bool {
    err.code() == Some("ConditionalCheckFailedException")
}

/// Maps an SDK error; throttling becomes a retryable 503, the rest a logged 500.
pub(super) fn sdk_err<E, R>(op: &'static str, err: SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    if is_throttle(err.code()) {
        return StoreError::Throttled;
    }
    StoreError::Backend(format!("{op}: {}", DisplayErrorContext(&err)))
}
