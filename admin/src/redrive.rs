//! `im-admin sync redrive`: what the mirror gave up on, sent back through the same handler
//! as the `sync-conversations` function's ([`Syncer::handle`]). Safe to repeat: each group
//! skips the records it applied already.
//!
//! Two sources:
//! - the local server's dead-letter file, whose lines carry the records;
//! - on AWS, the event source mapping's on-failure queue (SQS). Its messages only point
//!   into the stream (`DDBStreamBatchInfo`: shard and sequence numbers), so each batch is
//!   read back from DynamoDB Streams, which keeps records 24 hours. A message is deleted
//!   once its whole batch applied, and kept otherwise: the queue's alarm goes on showing it.

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use aws_config::SdkConfig;
use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::Message;
use im_shared::store::dynamo::padded_sequence;
use im_sync::stream::{read_batch, OnFailureMessage, ReadError};
use im_sync::{StreamEvent, Syncer};

/// How long one batch may take in the mirror, its IM cloud calls and their retries.
const BATCH_TIME: Duration = Duration::from_secs(300);

/// How long a received message stays hidden from other readers. Longer than a batch may
/// take; messages kept are made visible again as soon as the run ends.
const VISIBILITY_SECONDS: i32 = 900;

/// Sends `records` (stream records in Lambda's shape) through the mirror; returns the
/// sequence numbers of the records whose groups still fail (empty: all applied).
async fn apply(syncer: &Syncer, records: Vec<serde_json::Value>) -> Result<Vec<String>> {
    let event: StreamEvent = serde_json::from_value(serde_json::json!({ "Records": records }))
        .context("the dead letters' records are not stream records")?;
    let answer = syncer.handle(event, Instant::now() + BATCH_TIME).await;
    Ok(answer
        .batch_item_failures
        .into_iter()
        .map(|f| f.item_identifier.unwrap_or_else(|| "?".into()))
        .collect())
}

/// The local server's dead-letter file: JSON lines, each with its `record`, in order.
pub async fn from_file(syncer: &Syncer, file: &Path) -> Result<()> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let mut records = Vec::new();
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let letter: serde_json::Value =
            serde_json::from_str(line).with_context(|| format!("line {} is not JSON", n + 1))?;
        records.push(letter["record"].clone());
    }
    let count = records.len();
    let failing = apply(syncer, records).await?;
    let failed = failing.len();
    println!("{count} record(s) sent through the mirror; {failed} group(s) still failing");
    for seq in &failing {
        println!("still failing from record {seq}");
    }
    if failed > 0 {
        anyhow::bail!("{failed} group(s) still fail: see the service's log, or reconcile");
    }
    Ok(())
}

/// What became of one queue message.
enum Verdict {
    Applied(usize),
    /// Groups still failing, from these records on.
    Failing(Vec<String>),
    /// Its records left the stream.
    Expired(ReadError),
    /// Not a DynamoDB stream batch's on-failure message, or the stream could not be read.
    Unusable(String),
}

/// What a queue redrive did, message by message.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub received: usize,
    /// Whole batch applied; deleted.
    pub applied: usize,
    /// Kept in the queue: still failing, expired (without --drop-expired) or unusable.
    pub kept: usize,
    /// Expired and deleted (--drop-expired).
    pub dropped: usize,
}

/// The mapping's on-failure queue at `queue_url`: every message in it, once.
pub struct QueueRedrive<'a> {
    syncer: &'a Syncer,
    sqs: aws_sdk_sqs::Client,
    streams: aws_sdk_dynamodbstreams::Client,
    /// The region stream records carry, as Lambda's would.
    region: String,
    queue_url: String,
    /// Delete messages whose records left the stream (their groups then need reconcile).
    drop_expired: bool,
}

impl<'a> QueueRedrive<'a> {
    pub fn new(syncer: &'a Syncer, sdk: &SdkConfig, queue_url: &str, drop_expired: bool) -> Self {
        Self {
            syncer,
            sqs: aws_sdk_sqs::Client::new(sdk),
            streams: aws_sdk_dynamodbstreams::Client::new(sdk),
            region: sdk
                .region()
                .map(|r| r.to_string())
                .unwrap_or_else(|| "us-east-1".into()),
            queue_url: queue_url.to_owned(),
            drop_expired,
        }
    }

    /// Receives until the queue has nothing new, handles each message in stream order,
    /// then makes the messages kept visible again. Errs on a queue that cannot be read or
    /// written; a batch that fails is counted in the tally, not an error.
    pub async fn run(&self) -> Result<Tally> {
        let mut tally = Tally::default();
        let mut seen = HashSet::new();
        // Receipt handles of the messages to leave in the queue.
        let mut release = Vec::new();
        let mut messages = Vec::new();
        loop {
            let received = self
                .sqs
                .receive_message()
                .queue_url(&self.queue_url)
                .max_number_of_messages(10)
                // Long polling asks every SQS server, so an empty answer means empty.
                .wait_time_seconds(1)
                .visibility_timeout(VISIBILITY_SECONDS)
                .send()
                .await
                .map_err(|e| anyhow::anyhow!("{}", DisplayErrorContext(e)))
                .context("receiving from the dead-letter queue")?
                .messages
                .unwrap_or_default();
            let mut fresh = 0;
            for message in received {
                let handle = message.receipt_handle.clone().unwrap_or_default();
                // SQS may deliver a message twice: a second copy is left for the next run.
                if !seen.insert(message.message_id.clone().unwrap_or_default()) {
                    release.push(handle);
                    continue;
                }
                fresh += 1;
                messages.push(message);
            }
            if fresh == 0 {
                break;
            }
        }
        // SQS keeps no order, and a group's records wait behind its earliest one that
        // failed: its batch goes first, or the later ones would fail again (and be kept).
        messages.sort_by_cached_key(|m| {
            serde_json::from_str::<OnFailureMessage>(m.body().unwrap_or_default())
                .map(|m| padded_sequence(&m.batch.start_sequence_number))
                .unwrap_or_else(|_| "~".into())
        });
        for message in messages {
            tally.received += 1;
            let handle = message.receipt_handle.clone().unwrap_or_default();
            if self.handle(&message, &mut tally).await? {
                self.sqs
                    .delete_message()
                    .queue_url(&self.queue_url)
                    .receipt_handle(handle)
                    .send()
                    .await
                    .map_err(|e| anyhow::anyhow!("{}", DisplayErrorContext(e)))
                    .context("deleting a redriven message from the queue")?;
            } else {
                release.push(handle);
            }
        }
        for handle in release {
            // Left hidden, it would only come back after VISIBILITY_SECONDS.
            if let Err(e) = self
                .sqs
                .change_message_visibility()
                .queue_url(&self.queue_url)
                .receipt_handle(handle)
                .visibility_timeout(0)
                .send()
                .await
            {
                eprintln!(
                    "im-admin: a kept message stays hidden for up to {VISIBILITY_SECONDS} s: {}",
                    DisplayErrorContext(e)
                );
            }
        }
        Ok(tally)
    }

    /// Handles one message and says it; true when it is to be deleted.
    async fn handle(&self, message: &Message, tally: &mut Tally) -> Result<bool> {
        let id = message.message_id.as_deref().unwrap_or("?");
        let parsed = serde_json::from_str::<OnFailureMessage>(message.body().unwrap_or_default());
        let (batch, verdict) = match parsed {
            Err(e) => (
                None,
                Verdict::Unusable(format!(
                    "not the on-failure message of a DynamoDB stream batch ({e})"
                )),
            ),
            Ok(OnFailureMessage { batch }) => {
                let verdict = match read_batch(&self.streams, &batch, &self.region).await {
                    Ok(records) => {
                        let count = records.len();
                        let records = records
                            .iter()
                            .map(serde_json::to_value)
                            .collect::<Result<_, _>>()?;
                        match apply(self.syncer, records).await? {
                            failing if failing.is_empty() => Verdict::Applied(count),
                            failing => Verdict::Failing(failing),
                        }
                    }
                    Err(e @ ReadError::Gone(_)) => Verdict::Expired(e),
                    Err(e) => Verdict::Unusable(e.to_string()),
                };
                (Some(batch), verdict)
            }
        };
        let what = match &batch {
            Some(b) => format!("message {id} ({b})"),
            None => format!("message {id}"),
        };
        let delete = match verdict {
            Verdict::Applied(count) => {
                tally.applied += 1;
                println!("{what}: {count} record(s) applied; deleted from the queue");
                true
            }
            Verdict::Failing(from) => {
                tally.kept += 1;
                println!(
                    "{what}: {} group(s) still failing, from record(s) {}; kept",
                    from.len(),
                    from.join(", ")
                );
                false
            }
            Verdict::Expired(e) if self.drop_expired => {
                tally.dropped += 1;
                println!(
                    "{what}: {e}; deleted (--drop-expired): repair its groups with `sync reconcile --fix`"
                );
                true
            }
            Verdict::Expired(e) => {
                tally.kept += 1;
                println!(
                    "{what}: {e}; kept (repair its groups with `sync reconcile --fix`, then \
                     redrive with --drop-expired to delete it)"
                );
                false
            }
            Verdict::Unusable(why) => {
                tally.kept += 1;
                println!("{what}: {why}; kept");
                false
            }
        };
        Ok(delete)
    }
}
