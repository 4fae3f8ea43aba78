//! The DynamoDB implementation of the store: one table, whose items and keys
//! [`layout`] lists. Every write that touches several items is one transaction, and
//! every rule about who may write (owner, group admin, member) is a condition of that
//! same write, so no concurrent request can slip between a check and the change it
//! guards (`conditions`). By concern: `groups`, `members`, `links` (conversation links and the
//! facts the signature rules read), `idempotency`, `admin` (apps and token keys), `import`
//! (groups brought in whole by `im-admin import`).

mod admin;
mod bulk;
pub mod client;
mod conditions;
pub mod deferred;
mod expr;
mod groups;
mod idempotency;
pub mod import;
pub mod layout;
mod links;
mod members;
mod sync;

use std::time::Duration;

use aws_config::retry::ErrorKind;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{DeleteRequest, KeysAndAttributes, TransactWriteItem, WriteRequest};
use aws_sdk_dynamodb::Client;
use rand::Rng;

pub use self::bulk::BigAdd;
pub use self::deferred::{epoch_ms, Deferral, Deferred};
pub use self::import::{Existing, ImportedGroup, Written};
pub use self::sync::{padded_sequence, Hold, MirrorLink, MirrorTarget, SyncCursor, SyncSave};

use self::layout::Item;
use super::StoreError;
use crate::config::{ConfigError, DynamoBounds, DynamoTarget};

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

    /// The service's client: `target`'s endpoint and trust, waiting no longer than
    /// `bounds` say, so that storage that cannot be reached is an error within seconds,
    /// never a hung request. Its HTTPS client trusts only Amazon's root CAs, compiled in,
    /// unless the endpoint is plain http or `IM_DYNAMODB_TRUST=system`; its credentials
    /// and region come from the environment as the SDK reads them ([`client`] says how
    /// that is done without the SDK's config loader on Lambda).
    pub async fn client_for(target: &DynamoTarget, bounds: &DynamoBounds) -> Client {
        let http = client::http_client(target.trust);
        if let Some(config) = client::config_from_lambda_env(target, bounds, http.clone(), |name| {
            std::env::var(name).ok()
        }) {
            return Client::from_conf(config);
        }
        let mut loader = client::loader(bounds).http_client(http);
        if let Some(endpoint) = &target.endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        Client::new(&loader.load().await)
    }

    /// [`DynamoStore::client_for`] with both settings read from the environment (the
    /// operator's CLI and the stream function, which read nothing else of [`Config`](crate::config::Config)).
    pub async fn client_from_env() -> Result<Client, ConfigError> {
        Ok(Self::client_for(&DynamoTarget::from_env()?, &DynamoBounds::from_env()?).await)
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

    /// A client for DynamoDB Local at `endpoint` ([`DynamoStore::local_config`]).
    pub async fn local_client(endpoint: &str, bounds: &DynamoBounds) -> Client {
        Client::new(&Self::local_config(endpoint, bounds).await)
    }

    /// The SDK configuration for DynamoDB Local (and its stream) at `endpoint`: a fixed
    /// region and placeholder credentials, which DynamoDB Local accepts and never checks
    /// (so nothing probes for real ones), and the functions' `bounds`.
    pub async fn local_config(endpoint: &str, bounds: &DynamoBounds) -> aws_config::SdkConfig {
        client::loader(bounds)
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
            .await
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
                        return Err(StoreError::Unavailable(
                            "TransactWriteItems: an item was throttled".into(),
                        ));
                    }
                    if let Some(r) = reasons.iter().find(|r| invalid(r.code())) {
                        return Err(StoreError::Invalid(format!(
                            "TransactWriteItems: {}",
                            r.message().unwrap_or("an item is invalid")
                        )));
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
            return Err(StoreError::Unavailable(
                "BatchGetItem: keys kept coming back unprocessed".into(),
            ));
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
                    return Err(StoreError::Unavailable(
                        "BatchWriteItem: items kept coming back unprocessed".into(),
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

/// The items a query matches, through the SDK's paginator, oldest key first; at most
/// `limit` of them (reading no page past the one that reaches it).
pub(super) async fn query_items(
    op: &'static str,
    query: aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder,
    limit: usize,
) -> Result<Vec<Item>, StoreError> {
    let mut pages = query.into_paginator().items().send();
    let mut items = Vec::new();
    while items.len() < limit {
        match pages.next().await {
            Some(item) => items.push(item.map_err(|e| sdk_err(op, e))?),
            None => break,
        }
    }
    Ok(items)
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

/// Maps an SDK error (what the SDK returns once its own retries are spent): DynamoDB not
/// reached, not answering in time, throttling or failing on its side is
/// [`StoreError::Unavailable`] (a 503 the caller may retry); anything else, a request we
/// built wrong or an answer we cannot read, is a bug to look at ([`StoreError::Backend`],
/// a 500). The detail goes to the log, never to the caller.
pub(super) fn sdk_err<E>(op: &'static str, err: SdkError<E, HttpResponse>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let detail = format!("{op}: {}", DisplayErrorContext(&err));
    if unavailable(&err) {
        StoreError::Unavailable(detail)
    } else if invalid(err.code()) {
        StoreError::Invalid(detail)
    } else {
        StoreError::Backend(detail)
    }
}

/// DynamoDB refused the request as invalid (`ValidationException`, or a transaction item
/// cancelled with `ValidationError`): what the request would write is more than DynamoDB
/// takes (an item past 400 KB above all). Every input is bounded well below that, so
/// this is a request to refuse with a 400, never a 500 that a caller could cause on
/// demand (and that would trip the canary's alarm).
fn invalid(code: Option<&str>) -> bool {
    matches!(code, Some("ValidationException" | "ValidationError"))
}

fn unavailable<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> bool {
    match err {
        // The operation or an attempt ran out of time.
        SdkError::TimeoutError(_) => true,
        // Connection refused or reset, DNS, a connect time-out, a connection closed
        // mid-answer. Not `user` (a request the client refused to send) nor `other`
        // without a transient kind (no credentials, a signing failure): those are ours.
        SdkError::DispatchFailure(e) => {
            e.is_io() || e.is_timeout() || e.as_other() == Some(ErrorKind::TransientError)
        }
        // An answer, from DynamoDB or something in front of it, saying it cannot serve
        // now: throttling (a 400 with its code) or any 5xx.
        SdkError::ServiceError(e) => {
            is_throttle(err.code())
                || matches!(
                    err.code(),
                    Some("InternalServerError" | "ServiceUnavailable")
                )
                || e.raw().status().is_server_error()
        }
        SdkError::ResponseError(e) => e.raw().status().is_server_error(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::error::{ConnectorError, ErrorMetadata};
    use aws_sdk_dynamodb::operation::get_item::GetItemError;
    use aws_sdk_dynamodb::types::error::ProvisionedThroughputExceededException;
    use aws_smithy_types::body::SdkBody;

    type GetItemSdkError = SdkError<GetItemError, HttpResponse>;
    const UNAVAILABLE: bool = true;
    const OURS: bool = false;

    fn raw(status: u16) -> HttpResponse {
        HttpResponse::new(status.try_into().unwrap(), SdkBody::empty())
    }

    /// DynamoDB's answer `code` with `status`, as the SDK parses it.
    fn answered(code: &str, status: u16) -> GetItemSdkError {
        let meta = ErrorMetadata::builder().code(code).message("m").build();
        SdkError::service_error(GetItemError::generic(meta), raw(status))
    }

    fn dispatch(err: ConnectorError) -> GetItemSdkError {
        SdkError::dispatch_failure(err)
    }

    fn e(msg: &str) -> aws_sdk_dynamodb::error::BoxError {
        msg.into()
    }

    fn unavailable(err: GetItemSdkError) -> bool {
        match sdk_err("GetItem", err) {
            StoreError::Unavailable(detail) => {
                assert!(detail.starts_with("GetItem: "), "{detail}");
                true
            }
            StoreError::Backend(_) | StoreError::Invalid(_) => false,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn storage_that_cannot_serve_now_is_unavailable_and_our_mistakes_are_not() {
        let typed_throttle = SdkError::service_error(
            GetItemError::ProvisionedThroughputExceededException(
                ProvisionedThroughputExceededException::builder()
                    .message("m")
                    .meta(
                        ErrorMetadata::builder()
                            .code("ProvisionedThroughputExceededException")
                            .build(),
                    )
                    .build(),
            ),
            raw(400),
        );
        let transient = Some(ErrorKind::TransientError);
        // One row a case, as a table reads.
        #[rustfmt::skip]
        let cases: Vec<(&str, bool, GetItemSdkError)> = vec![
            ("a time-out", UNAVAILABLE, SdkError::timeout_error("timed out")),
            ("refused, reset, DNS", UNAVAILABLE, dispatch(ConnectorError::io(e("refused")))),
            ("connect time-out", UNAVAILABLE, dispatch(ConnectorError::timeout(e("slow")))),
            ("closed mid-answer", UNAVAILABLE, dispatch(ConnectorError::other(e("cut"), transient))),
            ("provisioned throughput", UNAVAILABLE, typed_throttle),
            ("request limit", UNAVAILABLE, answered("RequestLimitExceeded", 400)),
            ("throttling", UNAVAILABLE, answered("ThrottlingException", 400)),
            ("DynamoDB's own failure", UNAVAILABLE, answered("InternalServerError", 500)),
            ("unavailable", UNAVAILABLE, answered("ServiceUnavailable", 503)),
            ("any 5xx, whatever its code", UNAVAILABLE, answered("SomethingNew", 502)),
            ("a proxy's 5xx page", UNAVAILABLE, SdkError::response_error("not JSON", raw(504))),
            // Ours: a request we built or sent wrong, an answer we cannot read.
            ("cannot be built", OURS, SdkError::construction_failure("bad input")),
            ("refused by the client", OURS, dispatch(ConnectorError::user(e("bad URI")))),
            ("no credentials", OURS, dispatch(ConnectorError::other(e("no credentials"), None))),
            ("a malformed request", OURS, answered("ValidationException", 400)),
            ("no such table", OURS, answered("ResourceNotFoundException", 400)),
            ("a surprise condition", OURS, answered("ConditionalCheckFailedException", 400)),
            ("an unreadable 200", OURS, SdkError::response_error("unreadable", raw(200))),
        ];
        for (what, expected, err) in cases {
            assert_eq!(unavailable(err), expected, "{what}");
        }
    }

    #[test]
    fn a_write_dynamodb_finds_invalid_is_the_requests_fault() {
        let e = sdk_err("UpdateItem(group)", answered("ValidationException", 400));
        assert!(matches!(e, StoreError::Invalid(_)), "{e:?}");
        let e = sdk_err("GetItem", answered("ResourceNotFoundException", 400));
        assert!(matches!(e, StoreError::Backend(_)), "{e:?}");
        assert!(invalid(Some("ValidationError")));
        assert!(!invalid(Some("ConditionalCheckFailed")));
    }
}
