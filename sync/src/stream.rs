//! The table's stream as Lambda's event source mapping sees it, for the two readers that
//! are not Lambda (feature `stream-reader`): the local server's poller, and
//! `im-admin sync redrive`, which reads back a batch that the mapping's on-failure
//! message only points at. Both hand [`Syncer::handle`](crate::Syncer::handle) what the
//! mapping would: records in Lambda's event shape ([`lambda_record`]), through the
//! mapping's filter ([`group_and_member_items`]).

use std::cmp::Ordering;

use aws_lambda_events::event::dynamodb::{EventRecord, StreamRecord, StreamViewType, UserIdentity};
use aws_sdk_dynamodbstreams::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodbstreams::types::{self as ddbs, ShardIteratorType};
use im_shared::store::dynamo::layout::{GROUP_PREFIX, MEMBER_PREFIX, META_SK, PK, SK};
use serde::{Deserialize, Serialize};

/// The mapping's filter (template.yaml's `FilterCriteria`): group items (`GROUP#<id>` /
/// `META`) and member items (`GROUP#<id>` / `MEMBER#<client id>`); not a group's sync
/// state, apps, keys or idempotency records.
pub fn group_and_member_items(record: &EventRecord) -> bool {
    match (string_key(record, PK), string_key(record, SK)) {
        (Some(pk), Some(sk)) => {
            pk.starts_with(GROUP_PREFIX) && (sk == META_SK || sk.starts_with(MEMBER_PREFIX))
        }
        _ => false,
    }
}

/// The record's key attribute `name`, when it is a string.
pub fn string_key<'a>(record: &'a EventRecord, name: &str) -> Option<&'a str> {
    match record.change.keys.get(name) {
        Some(serde_dynamo::AttributeValue::S(s)) => Some(s),
        _ => None,
    }
}

/// The record's sequence number ("" for none, which no stream makes).
pub fn sequence_number(record: &EventRecord) -> &str {
    record.change.sequence_number.as_deref().unwrap_or_default()
}

/// Sequence numbers are decimal strings of any length; compare them as numbers.
pub fn compare_sequence_numbers(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.trim_start_matches('0'), b.trim_start_matches('0'));
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

/// A stream record in the shape Lambda hands to the function. `None` for a record
/// without a sequence number, which no stream makes.
pub fn lambda_record(record: ddbs::Record, stream_arn: &str, region: &str) -> Option<EventRecord> {
    let change = record.dynamodb?;
    change.sequence_number.as_ref()?;
    let mut out = StreamRecord::default();
    out.approximate_creation_date_time = change
        .approximate_creation_date_time
        .and_then(|t| chrono::DateTime::from_timestamp(t.secs(), t.subsec_nanos()))
        .unwrap_or_default();
    out.keys = change.keys.unwrap_or_default().into();
    out.new_image = change.new_image.unwrap_or_default().into();
    out.old_image = change.old_image.unwrap_or_default().into();
    out.sequence_number = change.sequence_number;
    out.size_bytes = change.size_bytes.unwrap_or_default();
    out.stream_view_type = change.stream_view_type.map(|v| match v {
        ddbs::StreamViewType::KeysOnly => StreamViewType::KeysOnly,
        ddbs::StreamViewType::NewImage => StreamViewType::NewImage,
        ddbs::StreamViewType::OldImage => StreamViewType::OldImage,
        _ => StreamViewType::NewAndOldImages,
    });
    let mut event = EventRecord::default();
    // DynamoDB Local names its region "ddblocal"; the function sees the configured one,
    // as on AWS, where it is the table's.
    event.aws_region = region.to_owned();
    event.change = out;
    event.event_id = record.event_id.unwrap_or_default();
    event.event_name = record
        .event_name
        .map(|n| n.as_str().to_owned())
        .unwrap_or_default();
    event.event_source = Some("aws:dynamodb".into());
    event.event_version = Some("1.1".into());
    event.event_source_arn = Some(stream_arn.to_owned());
    // Time-to-live deletions say who made them.
    event.user_identity = record.user_identity.map(|i| {
        let mut identity = UserIdentity::default();
        identity.type_ = i.r#type.unwrap_or_default();
        identity.principal_id = i.principal_id.unwrap_or_default();
        identity
    });
    Some(event)
}

/// Where a discarded batch is in the stream: the `DDBStreamBatchInfo` of Lambda's
/// on-failure message for a DynamoDB stream source, which carries no record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchInfo {
    pub shard_id: String,
    pub start_sequence_number: String,
    pub end_sequence_number: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approximate_arrival_of_first_record: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approximate_arrival_of_last_record: Option<String>,
    pub batch_size: u64,
    pub stream_arn: String,
}

impl std::fmt::Display for BatchInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} record(s) {}..{} of shard {}",
            self.batch_size, self.start_sequence_number, self.end_sequence_number, self.shard_id
        )
    }
}

/// Lambda's on-failure message, as far as a redrive needs it.
#[derive(Clone, Debug, Deserialize)]
pub struct OnFailureMessage {
    #[serde(rename = "DDBStreamBatchInfo")]
    pub batch: BatchInfo,
}

/// Why a batch could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Trimmed: DynamoDB Streams keeps records 24 hours (then the shard goes too).
    #[error("its records are no longer in the stream (DynamoDB Streams keeps them 24 hours): {0}")]
    Gone(String),
    #[error("the shard has no record after {after}, short of the batch's end")]
    Incomplete { after: String },
    #[error("reading the stream failed: {0}")]
    Stream(String),
}

impl<E: ProvideErrorMetadata + std::error::Error + 'static> From<SdkError<E>> for ReadError {
    fn from(e: SdkError<E>) -> Self {
        match e.code() {
            Some("TrimmedDataAccessException" | "ResourceNotFoundException") => {
                Self::Gone(e.message().unwrap_or("trimmed").to_owned())
            }
            _ => Self::Stream(DisplayErrorContext(e).to_string()),
        }
    }
}

/// Reads when a shard answers with nothing: an open shard's iterator goes on forever.
const MAX_EMPTY_READS: u32 = 10;

/// Reads `batch` back from the stream, as the mapping handed it to the function: its
/// records from the start to the end sequence number, in order, in Lambda's shape,
/// through the mapping's filter. A batch whose first record has been trimmed is
/// [`ReadError::Gone`].
pub async fn read_batch(
    streams: &aws_sdk_dynamodbstreams::Client,
    batch: &BatchInfo,
    region: &str,
) -> Result<Vec<EventRecord>, ReadError> {
    let iterator_from = |kind: ShardIteratorType, seq: &str| {
        streams
            .get_shard_iterator()
            .stream_arn(&batch.stream_arn)
            .shard_id(&batch.shard_id)
            .shard_iterator_type(kind)
            .sequence_number(seq)
            .send()
    };
    let mut iterator = iterator_from(
        ShardIteratorType::AtSequenceNumber,
        &batch.start_sequence_number,
    )
    .await?
    .shard_iterator;
    let mut last: Option<String> = None;
    let mut records = Vec::new();
    let mut empty_reads = 0;
    while let Some(it) = iterator.take() {
        let out = match streams.get_records().shard_iterator(it).send().await {
            // Iterators last 15 minutes: a new one goes on after the last record read.
            Err(e) if e.code() == Some("ExpiredIteratorException") => {
                iterator = match &last {
                    Some(seq) => iterator_from(ShardIteratorType::AfterSequenceNumber, seq),
                    None => iterator_from(
                        ShardIteratorType::AtSequenceNumber,
                        &batch.start_sequence_number,
                    ),
                }
                .await?
                .shard_iterator;
                continue;
            }
            other => other?,
        };
        let read = out.records.unwrap_or_default();
        empty_reads = if read.is_empty() { empty_reads + 1 } else { 0 };
        for record in read {
            let Some(record) = lambda_record(record, &batch.stream_arn, region) else {
                continue;
            };
            let seq = sequence_number(&record).to_owned();
            // The stream starts later than the batch: its first records were trimmed.
            if last.is_none()
                && compare_sequence_numbers(&seq, &batch.start_sequence_number) != Ordering::Equal
            {
                return Err(ReadError::Gone(format!(
                    "the shard's first record now is {seq}"
                )));
            }
            match compare_sequence_numbers(&seq, &batch.end_sequence_number) {
                Ordering::Greater => return Ok(records),
                end => {
                    if group_and_member_items(&record) {
                        records.push(record);
                    }
                    if end == Ordering::Equal {
                        return Ok(records);
                    }
                }
            }
            last = Some(seq);
        }
        if empty_reads >= MAX_EMPTY_READS {
            break;
        }
        iterator = out.next_shard_iterator;
    }
    Err(ReadError::Incomplete {
        after: last.unwrap_or_else(|| batch.start_sequence_number.clone()),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use aws_lambda_events::event::dynamodb::Event as StreamEvent;
    use serde_json::json;

    use super::*;

    fn record(pk: &str, sk: &str) -> EventRecord {
        let mut r = EventRecord::default();
        r.change.keys = HashMap::from([
            ("pk".to_owned(), serde_dynamo::AttributeValue::S(pk.into())),
            ("sk".to_owned(), serde_dynamo::AttributeValue::S(sk.into())),
        ])
        .into();
        r
    }

    #[test]
    fn the_filter_passes_group_and_member_items_only() {
        let passes = |pk, sk| group_and_member_items(&record(pk, sk));
        assert!(passes("GROUP#1", "META"));
        assert!(passes("GROUP#1", "MEMBER#alice"));
        assert!(!passes("GROUP#1", "SYNC"));
        assert!(!passes("APP#dev", "META"));
        assert!(!passes("TOKEN_KEY#k", "META"));
        assert!(!passes("IDEMPOTENCY#x", "MEMBER#a"));
    }

    #[test]
    fn sequence_numbers_compare_as_numbers() {
        assert_eq!(compare_sequence_numbers("9", "10"), Ordering::Less);
        assert_eq!(
            compare_sequence_numbers("000000000000000000010", "9"),
            Ordering::Greater
        );
        assert_eq!(compare_sequence_numbers("0042", "42"), Ordering::Equal);
    }

    #[test]
    fn the_on_failure_message_of_the_lambda_documentation_parses() {
        let message = json!({
            "requestContext": {"requestId": "316aa6d0-8154-xmpl-9af7-85d5f4a6bc81",
                "functionArn": "arn:aws:lambda:us-east-2:123456789012:function:myfunction",
                "condition": "RetryAttemptsExhausted", "approximateInvokeCount": 1},
            "responseContext": {"statusCode": 200, "executedVersion": "$LATEST",
                "functionError": "Unhandled"},
            "version": "1.0",
            "timestamp": "2019-11-14T00:38:06.021Z",
            "DDBStreamBatchInfo": {
                "shardId": "shardId-00000001573689847184-864758bb",
                "startSequenceNumber": "800000000003126276362",
                "endSequenceNumber": "800000000003126276362",
                "approximateArrivalOfFirstRecord": "2019-11-14T00:38:04Z",
                "approximateArrivalOfLastRecord": "2019-11-14T00:38:05Z",
                "batchSize": 1,
                "streamArn": "arn:aws:dynamodb:us-east-2:123456789012:table/mytable/stream/2019-11-14T00:04:06.388"
            }
        });
        let parsed: OnFailureMessage = serde_json::from_value(message.clone()).unwrap();
        assert_eq!(
            parsed.batch.to_string(),
            "1 record(s) 800000000003126276362..800000000003126276362 of shard shardId-00000001573689847184-864758bb"
        );
        // What the local poller writes is the same shape.
        assert_eq!(
            serde_json::to_value(&parsed.batch).unwrap(),
            message["DDBStreamBatchInfo"]
        );
    }

    #[test]
    fn stream_records_become_lambda_records() {
        use aws_sdk_dynamodbstreams::types::{AttributeValue as Av, OperationType};
        let image = |v: &str| {
            HashMap::from([
                ("pk".to_owned(), Av::S("GROUP#7".into())),
                ("sk".to_owned(), Av::S("META".into())),
                ("group_name".to_owned(), Av::S(v.into())),
                ("version".to_owned(), Av::N("2".into())),
            ])
        };
        let record = ddbs::Record::builder()
            .event_id("e1")
            .event_name(OperationType::Modify)
            .event_version("1.1")
            .event_source("aws:dynamodb")
            .aws_region("ddblocal")
            .dynamodb(
                ddbs::StreamRecord::builder()
                    .approximate_creation_date_time(
                        aws_sdk_dynamodbstreams::primitives::DateTime::from_secs(1_795_709_820),
                    )
                    .set_keys(Some(HashMap::from([
                        ("pk".to_owned(), Av::S("GROUP#7".into())),
                        ("sk".to_owned(), Av::S("META".into())),
                    ])))
                    .set_new_image(Some(image("new")))
                    .set_old_image(Some(image("old")))
                    .sequence_number("000000000000000000003")
                    .size_bytes(51)
                    .stream_view_type(ddbs::StreamViewType::NewAndOldImages)
                    .build(),
            )
            .build();
        let arn = "arn:aws:dynamodb:ddblocal:000000000000:table/t/stream/x";
        let event = lambda_record(record, arn, "us-east-1").unwrap();
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(json["eventID"], "e1");
        assert_eq!(json["eventName"], "MODIFY");
        assert_eq!(json["eventVersion"], "1.1");
        assert_eq!(json["eventSource"], "aws:dynamodb");
        assert_eq!(json["eventSourceARN"], arn);
        assert_eq!(json["awsRegion"], "us-east-1");
        let d = &json["dynamodb"];
        assert_eq!(d["ApproximateCreationDateTime"], 1_795_709_820.0);
        assert_eq!(d["Keys"]["pk"]["S"], "GROUP#7");
        assert_eq!(d["NewImage"]["group_name"]["S"], "new");
        assert_eq!(d["OldImage"]["group_name"]["S"], "old");
        assert_eq!(d["NewImage"]["version"]["N"], "2");
        assert_eq!(d["SequenceNumber"], "000000000000000000003");
        assert_eq!(d["SizeBytes"], 51);
        assert_eq!(d["StreamViewType"], "NEW_AND_OLD_IMAGES");
        // What the function's runtime parses is what was built.
        let back: StreamEvent = serde_json::from_value(json!({"Records": [json]})).unwrap();
        assert_eq!(back.records[0], event);
    }
}
