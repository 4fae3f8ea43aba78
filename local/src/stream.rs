//! The table's stream, read locally the way Lambda's event source mapping reads it on AWS,
//! so that `make run` and `make test` hand the same records, in the same event shape and
//! with the same retry rules, to the same handler as the `sync-conversations` function.
//!
//! What it copies from the mapping (see template.yaml):
//! - one reader per shard, records in order, a child shard only once its parent is done;
//! - the mapping's filter ([`group_and_member_items`], shared with the redrive) applied
//!   before any invocation, and records it drops checkpointed at once;
//! - batches of up to [`PollerSettings::batch_size`] records of one shard, one at a time;
//! - `ReportBatchItemFailures`: a batch is retried from its lowest failed sequence number,
//!   the records before it checkpointed. An answer naming a record that is not in the
//!   batch, a handler error, a panic or a time-out fail the whole batch;
//! - `BisectBatchOnFunctionError`: a whole-batch failure splits the batch in two without
//!   using up a retry; once the records the bisection covered are behind, batches are
//!   full-size again;
//! - `MaximumRetryAttempts`: a record that fails first in `1 + maximum_retry_attempts`
//!   tries is discarded to the on-failure destination, here a JSON-lines file (one line
//!   per record, with the destination's `DDBStreamBatchInfo` and, since nothing here
//!   keeps the stream for 24 hours, the record itself), and the shard goes on. When the
//!   handler named the record, only it is discarded (bisecting would come down to it);
//!   a record that fails the whole batch on its own is discarded after bisection reached
//!   it. Without bisection the rest of the failing batch goes with it, as on AWS.
//!
//! Where it starts: a shard with a saved checkpoint resumes after it; any other shard is
//! read from `TRIM_HORIZON` (the default), so that what was written before the poller
//! started (the table's first items, writes made while im-local was stopped) is not lost.
//! The handler makes a replay harmless; `LATEST` would drop those records instead.
//!
//! Logs carry shard ids, sequence numbers, keys and counts, never item images.

use std::cmp::Ordering;
use std::collections::{BTreeMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_dynamodbstreams::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_dynamodbstreams::types::{self as ddbs, ShardIteratorType};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

pub use aws_lambda_events::event::dynamodb::{Event as StreamEvent, EventRecord};
pub use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
pub use im_sync::stream::{compare_sequence_numbers, group_and_member_items, lambda_record};
use im_sync::stream::{sequence_number as seq, string_key as key, BatchInfo};

/// What a handler may fail with; `lambda_runtime::Error` and `anyhow::Error` convert.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The function the records go to, as Lambda invokes it: a batch in, the failed records'
/// sequence numbers out (`batch_item_failures`). An `Err`, like a panic or a time-out,
/// fails the whole batch.
#[async_trait]
pub trait StreamHandler: Send + Sync + 'static {
    async fn handle(&self, event: StreamEvent) -> Result<DynamoDbEventResponse, BoxError>;
}

#[async_trait]
impl<F, Fut> StreamHandler for F
where
    F: Fn(StreamEvent) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<DynamoDbEventResponse, BoxError>> + Send + 'static,
{
    async fn handle(&self, event: StreamEvent) -> Result<DynamoDbEventResponse, BoxError> {
        self(event).await
    }
}

/// Where a shard without a checkpoint starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartingPosition {
    TrimHorizon,
    /// Only for the shards open when the poller starts; shards found later are read from
    /// their start, since everything in them is newer.
    Latest,
}

/// The event source mapping's settings, and where the local stand-ins for its state go.
#[derive(Clone, Debug)]
pub struct PollerSettings {
    /// `BatchSize` (at most this many records of one shard per invocation).
    pub batch_size: usize,
    /// `MaximumRetryAttempts`.
    pub maximum_retry_attempts: u32,
    /// `BisectBatchOnFunctionError`.
    pub bisect_batch_on_function_error: bool,
    pub starting_position: StartingPosition,
    /// The function's time-out: an invocation still running then fails its batch.
    pub function_timeout: Duration,
    /// The pause after a read that found nothing. Lambda polls 4 times a second; a
    /// local run can afford to poll faster and keep the write-to-mirror lag low.
    pub idle_poll: Duration,
    /// The first pause before retrying a failed batch, doubled at each retry up to
    /// `retry_backoff_max`.
    pub retry_backoff: Duration,
    pub retry_backoff_max: Duration,
    /// How often the stream is described to find new shards.
    pub shard_discovery: Duration,
    /// The on-failure destination: a JSON-lines file, appended to.
    pub dead_letter_path: PathBuf,
    /// Where each shard's checkpoint is kept across restarts; `None` keeps none (a table
    /// in memory starts empty anyway).
    pub checkpoint_path: Option<PathBuf>,
    /// The mapping's filter criteria.
    pub filter: fn(&EventRecord) -> bool,
}

impl PollerSettings {
    /// The settings of the `sync-conversations` mapping, dead letters in `dead_letter_path`.
    pub fn new(dead_letter_path: impl Into<PathBuf>) -> Self {
        Self {
            batch_size: 100,
            maximum_retry_attempts: 10,
            bisect_batch_on_function_error: true,
            starting_position: StartingPosition::TrimHorizon,
            function_timeout: Duration::from_secs(60),
            idle_poll: Duration::from_millis(100),
            retry_backoff: Duration::from_millis(200),
            retry_backoff_max: Duration::from_secs(5),
            shard_discovery: Duration::from_secs(1),
            dead_letter_path: dead_letter_path.into(),
            checkpoint_path: None,
            filter: group_and_member_items,
        }
    }
}

/// Counters and state for tests and benchmarks.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PollerStatus {
    /// Shards being read now.
    pub shards_reading: usize,
    pub records_read: u64,
    /// Dropped by the filter.
    pub records_filtered_out: u64,
    /// Checkpointed after the handler took them.
    pub records_delivered: u64,
    pub records_dead_lettered: u64,
    /// Read, passed the filter, not yet checkpointed.
    pub records_pending: u64,
    pub invocations: u64,
    pub failed_invocations: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Waiting,
    Reading,
    Done,
}

#[derive(Debug)]
struct ShardState {
    parent: Option<String>,
    phase: Phase,
    pending: usize,
    /// When the last read that found nothing new, with nothing left to hand over, began.
    idle_since: Option<Instant>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ShardCheckpoint {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sequence_number: Option<String>,
    #[serde(default)]
    done: bool,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Checkpoints {
    stream_arn: String,
    shards: BTreeMap<String, ShardCheckpoint>,
}

#[derive(Default)]
struct State {
    shards: BTreeMap<String, ShardState>,
    /// When the last complete look for new shards began.
    discovered_at: Option<Instant>,
    checkpoints: Checkpoints,
    status: PollerStatus,
}

struct Ctx {
    streams: aws_sdk_dynamodbstreams::Client,
    stream_arn: String,
    region: String,
    settings: PollerSettings,
    handler: Arc<dyn StreamHandler>,
    state: Mutex<State>,
    /// Held while writing the checkpoint file, so that an older snapshot never
    /// overwrites a newer one.
    checkpoint_file: Mutex<()>,
    dead_letters: Mutex<Option<File>>,
    /// Wakes the shard discovery when a shard is done, so its children start at once.
    shard_done: Notify,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere while holding the lock leaves counters, not invariants, behind.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The running poller. Dropping it stops it.
pub struct StreamPoller {
    ctx: Arc<Ctx>,
    task: JoinHandle<()>,
}

impl Drop for StreamPoller {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl StreamPoller {
    /// Finds `table`'s stream and starts reading it in the background, handing batches
    /// to `handler`. Fails when the table has no stream.
    pub async fn start(
        sdk: &SdkConfig,
        table: &str,
        settings: PollerSettings,
        handler: Arc<dyn StreamHandler>,
    ) -> Result<Self> {
        anyhow::ensure!(settings.batch_size > 0, "batch size must be at least 1");
        let ddb = aws_sdk_dynamodb::Client::new(sdk);
        let described = ddb
            .describe_table()
            .table_name(table)
            .send()
            .await
            .map_err(|e| anyhow!(aws_sdk_dynamodb::error::DisplayErrorContext(e).to_string()))
            .with_context(|| format!("describing table {table}"))?;
        let stream_arn = described
            .table
            .and_then(|t| t.latest_stream_arn)
            .with_context(|| format!("table {table} has no stream"))?;
        let mut checkpoints = match &settings.checkpoint_path {
            Some(path) => load_checkpoints(path)?,
            None => Checkpoints::default(),
        };
        // A table made anew has a new stream: the old positions mean nothing there.
        if checkpoints.stream_arn != stream_arn {
            checkpoints = Checkpoints {
                stream_arn: stream_arn.clone(),
                shards: BTreeMap::new(),
            };
        }
        let ctx = Arc::new(Ctx {
            streams: aws_sdk_dynamodbstreams::Client::new(sdk),
            stream_arn,
            region: sdk
                .region()
                .map(|r| r.to_string())
                .unwrap_or_else(|| "us-east-1".into()),
            settings,
            handler,
            state: Mutex::new(State {
                checkpoints,
                ..State::default()
            }),
            checkpoint_file: Mutex::new(()),
            dead_letters: Mutex::new(None),
            shard_done: Notify::new(),
        });
        let task = tokio::spawn(discover_shards(ctx.clone()));
        tracing::info!(
            stream_arn = %ctx.stream_arn,
            dead_letters = %ctx.settings.dead_letter_path.display(),
            "stream poller started"
        );
        Ok(Self { ctx, task })
    }

    pub fn stream_arn(&self) -> &str {
        &self.ctx.stream_arn
    }

    pub fn dead_letter_path(&self) -> &Path {
        &self.ctx.settings.dead_letter_path
    }

    pub fn status(&self) -> PollerStatus {
        let state = lock(&self.ctx.state);
        let mut status = state.status.clone();
        status.shards_reading = state
            .shards
            .values()
            .filter(|s| s.phase == Phase::Reading)
            .count();
        status.records_pending = state.shards.values().map(|s| s.pending as u64).sum();
        status
    }

    /// Waits until everything written before this call has been handed over (or
    /// dead-lettered): the shards were looked up again since, and each shard being read
    /// has since found nothing new with nothing left to hand over. False on time-out.
    pub async fn wait_drained(&self, timeout: Duration) -> bool {
        let since = Instant::now();
        let deadline = since + timeout;
        loop {
            if self.drained_since(since) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn drained_since(&self, since: Instant) -> bool {
        let state = lock(&self.ctx.state);
        state.discovered_at.is_some_and(|t| t >= since)
            && state.shards.values().all(|s| match s.phase {
                Phase::Done => true,
                Phase::Waiting => false,
                Phase::Reading => s.pending == 0 && s.idle_since.is_some_and(|t| t >= since),
            })
    }

    /// Stops reading. An invocation under way runs to its end, but its answer is ignored
    /// and its records are not checkpointed.
    pub async fn stop(self) {
        self.task.abort();
    }
}

fn load_checkpoints(path: &Path) -> Result<Checkpoints> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text)
            .with_context(|| format!("{} is not a stream checkpoint file", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Checkpoints::default()),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Looks for new shards now and then, and starts a reader for each shard whose parent is
/// done (or gone), so that the changes of one item are handed over in order.
async fn discover_shards(ctx: Arc<Ctx>) {
    let mut readers = tokio::task::JoinSet::new();
    let mut first = true;
    loop {
        let started = Instant::now();
        match describe_shards(&ctx).await {
            Ok(shards) => {
                let to_start = {
                    let mut state = lock(&ctx.state);
                    let to_start =
                        plan_readers(&mut state, &shards, first, ctx.settings.starting_position);
                    // Readers started now count as not drained until their first read.
                    state.discovered_at = Some(started);
                    to_start
                };
                for (id, start) in to_start {
                    tracing::info!(shard = %id, start = ?start, "reading stream shard");
                    readers.spawn(ShardReader::new(ctx.clone(), id, start).run());
                }
                first = false;
            }
            Err(e) => tracing::warn!(error = %e, "describing the stream failed; trying again"),
        }
        tokio::select! {
            _ = tokio::time::sleep(ctx.settings.shard_discovery) => {}
            _ = ctx.shard_done.notified() => {}
            Some(_) = readers.join_next(), if !readers.is_empty() => {}
        }
    }
}

/// Registers the shards not seen before and picks those to start reading now: a shard
/// whose parent is done or gone (so that an item's changes stay in order), from its
/// checkpoint, else from the starting position. Marks them as being read.
fn plan_readers(
    state: &mut State,
    shards: &[ddbs::Shard],
    first: bool,
    starting_position: StartingPosition,
) -> Vec<(String, Start)> {
    let latest = first && starting_position == StartingPosition::Latest;
    for shard in shards {
        let Some(id) = shard.shard_id() else { continue };
        if state.shards.contains_key(id) {
            continue;
        }
        let closed = shard
            .sequence_number_range()
            .and_then(|r| r.ending_sequence_number())
            .is_some();
        // LATEST skips what is already closed at start.
        let done = state.checkpoints.shards.get(id).is_some_and(|c| c.done) || (latest && closed);
        state.shards.insert(
            id.to_owned(),
            ShardState {
                parent: shard.parent_shard_id().map(str::to_owned),
                phase: if done { Phase::Done } else { Phase::Waiting },
                pending: 0,
                idle_since: None,
            },
        );
    }
    let ready: Vec<String> = state
        .shards
        .iter()
        .filter(|(_, s)| s.phase == Phase::Waiting)
        .filter(|(_, s)| match &s.parent {
            None => true,
            Some(p) => state.shards.get(p).is_none_or(|p| p.phase == Phase::Done),
        })
        .map(|(id, _)| id.clone())
        .collect();
    ready
        .into_iter()
        .map(|id| {
            let checkpoint = state
                .checkpoints
                .shards
                .get(&id)
                .and_then(|c| c.sequence_number.clone());
            let start = match checkpoint {
                Some(seq) => Start::After(seq),
                None if latest => Start::Latest,
                None => Start::TrimHorizon,
            };
            if let Some(s) = state.shards.get_mut(&id) {
                s.phase = Phase::Reading;
            }
            (id, start)
        })
        .collect()
}

async fn describe_shards(ctx: &Ctx) -> Result<Vec<ddbs::Shard>> {
    let mut shards = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let out = ctx
            .streams
            .describe_stream()
            .stream_arn(&ctx.stream_arn)
            .set_exclusive_start_shard_id(after.clone())
            .send()
            .await
            .map_err(|e| anyhow!(DisplayErrorContext(e).to_string()))?;
        let description = out
            .stream_description
            .context("DescribeStream: no description")?;
        after = description.last_evaluated_shard_id.clone();
        shards.extend(description.shards.unwrap_or_default());
        if after.is_none() {
            return Ok(shards);
        }
    }
}

#[derive(Clone, Debug)]
enum Start {
    TrimHorizon,
    Latest,
    After(String),
}

/// How an invocation went.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Success,
    /// The handler named failed records; the first of them is at this index.
    Partial(usize),
    Failed(Failure),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
enum Failure {
    /// The handler named this record as failed.
    Reported,
    Error,
    Panic,
    Timeout,
    /// The answer named a record that is not in the batch (or none at all).
    InvalidResponse,
}

/// What Lambda makes of the handler's answer.
fn classify(response: &DynamoDbEventResponse, batch: &[EventRecord]) -> Outcome {
    let mut first: Option<usize> = None;
    for failure in &response.batch_item_failures {
        let Some(id) = failure
            .item_identifier
            .as_deref()
            .filter(|id| !id.is_empty())
        else {
            return Outcome::Failed(Failure::InvalidResponse);
        };
        let Some(index) = batch.iter().position(|r| seq(r) == id) else {
            return Outcome::Failed(Failure::InvalidResponse);
        };
        first = Some(first.map_or(index, |f| f.min(index)));
    }
    match first {
        None => Outcome::Success,
        Some(index) => Outcome::Partial(index),
    }
}

/// The retries of the record at the front of the shard.
#[derive(Debug)]
struct Retry {
    /// The record the failures are counted for.
    first: Option<String>,
    /// Failed tries of `first` that count towards `maximum_retry_attempts`.
    tries: u32,
    backoff: Duration,
    /// The batch size now: smaller while a bisected batch is being worked through.
    window: usize,
    /// The last record of the batches bisected so far: past it, batches are full again.
    bisected_until: Option<String>,
}

struct ShardReader {
    ctx: Arc<Ctx>,
    shard_id: String,
    iterator: Option<String>,
    /// Where to get a new iterator if the one held expires.
    resume: Start,
    /// The last record read from the shard, handed over or not.
    last_read: Option<String>,
    pending: VecDeque<EventRecord>,
    retry: Retry,
}

impl ShardReader {
    fn new(ctx: Arc<Ctx>, shard_id: String, start: Start) -> Self {
        let retry = Retry {
            first: None,
            tries: 0,
            backoff: ctx.settings.retry_backoff,
            window: ctx.settings.batch_size,
            bisected_until: None,
        };
        Self {
            ctx,
            shard_id,
            iterator: None,
            resume: start,
            last_read: None,
            pending: VecDeque::new(),
            retry,
        }
    }

    async fn run(mut self) {
        let mut open = true;
        loop {
            if open && self.iterator.is_none() {
                match self.get_iterator().await {
                    Ok(Some(it)) => self.iterator = Some(it),
                    Ok(None) => open = false,
                    Err(e) => {
                        tracing::warn!(shard = %self.shard_id, error = %e, "getting a shard iterator failed; trying again");
                        tokio::time::sleep(self.ctx.settings.retry_backoff_max).await;
                        continue;
                    }
                }
            }
            if let Some(iterator) = self.iterator.take() {
                if self.pending.len() < self.ctx.settings.batch_size {
                    match self.read(iterator).await {
                        Ok(next) => {
                            open = next.is_some();
                            self.iterator = next;
                        }
                        Err(e) if e.code() == Some("ExpiredIteratorException") => {
                            tracing::info!(shard = %self.shard_id, "shard iterator expired; getting a new one");
                        }
                        Err(e) => {
                            tracing::warn!(shard = %self.shard_id, error = %DisplayErrorContext(&e), "reading the shard failed; trying again");
                            tokio::time::sleep(self.ctx.settings.retry_backoff_max).await;
                            continue;
                        }
                    }
                } else {
                    self.iterator = Some(iterator);
                }
            }
            if self.pending.is_empty() {
                if !open {
                    self.finish();
                    return;
                }
                tokio::time::sleep(self.ctx.settings.idle_poll).await;
                continue;
            }
            self.handle_one_batch().await;
        }
    }

    async fn get_iterator(&self) -> Result<Option<String>> {
        let request = |kind: ShardIteratorType, after: Option<String>| {
            self.ctx
                .streams
                .get_shard_iterator()
                .stream_arn(&self.ctx.stream_arn)
                .shard_id(&self.shard_id)
                .shard_iterator_type(kind)
                .set_sequence_number(after)
                .send()
        };
        let result = match &self.resume {
            Start::TrimHorizon => request(ShardIteratorType::TrimHorizon, None).await,
            Start::Latest => request(ShardIteratorType::Latest, None).await,
            Start::After(seq) => {
                match request(ShardIteratorType::AfterSequenceNumber, Some(seq.clone())).await {
                    // The checkpoint is older than what the stream keeps: read all it has.
                    Err(e) if e.code() == Some("TrimmedDataAccessException") => {
                        tracing::warn!(shard = %self.shard_id, sequence_number = %seq, "checkpoint trimmed from the stream; reading from the oldest record");
                        request(ShardIteratorType::TrimHorizon, None).await
                    }
                    other => other,
                }
            }
        };
        match result {
            Ok(out) => Ok(out.shard_iterator),
            // The shard is gone (trimmed): nothing to read.
            Err(e) if e.code() == Some("ResourceNotFoundException") => Ok(None),
            Err(e) => Err(anyhow!(DisplayErrorContext(e).to_string())),
        }
    }

    /// One GetRecords: queues what passes the filter. Returns the next iterator (`None`
    /// once a closed shard is read to its end).
    async fn read(
        &mut self,
        iterator: String,
    ) -> Result<
        Option<String>,
        aws_sdk_dynamodbstreams::error::SdkError<
            aws_sdk_dynamodbstreams::operation::get_records::GetRecordsError,
        >,
    > {
        let started = Instant::now();
        let out = self
            .ctx
            .streams
            .get_records()
            .shard_iterator(iterator)
            .send()
            .await?;
        let records = out.records.unwrap_or_default();
        let (mut read, mut filtered) = (0u64, 0u64);
        for record in records {
            let Some(record) = lambda_record(record, &self.ctx.stream_arn, &self.ctx.region) else {
                continue;
            };
            read += 1;
            let seq = seq(&record).to_owned();
            if (self.ctx.settings.filter)(&record) {
                self.pending.push_back(record);
            } else {
                filtered += 1;
            }
            self.resume = Start::After(seq.clone());
            self.last_read = Some(seq);
        }
        if self.pending.is_empty() {
            // Everything read was filtered out: checkpoint past it.
            if read > 0 {
                self.checkpoint(self.last_read.clone());
            }
        }
        let mut state = lock(&self.ctx.state);
        state.status.records_read += read;
        state.status.records_filtered_out += filtered;
        if let Some(shard) = state.shards.get_mut(&self.shard_id) {
            shard.pending = self.pending.len();
            if read == 0 && self.pending.is_empty() {
                shard.idle_since = Some(started);
            }
        }
        Ok(out.next_shard_iterator)
    }

    /// Saves the shard's position after `seq` (if a checkpoint file is kept).
    fn checkpoint(&self, seq: Option<String>) {
        let snapshot = {
            let mut state = lock(&self.ctx.state);
            let entry = state
                .checkpoints
                .shards
                .entry(self.shard_id.clone())
                .or_default();
            if seq.is_some() {
                entry.sequence_number = seq;
            }
            if let Some(shard) = state.shards.get_mut(&self.shard_id) {
                shard.pending = self.pending.len();
            }
            self.ctx
                .settings
                .checkpoint_path
                .is_some()
                .then(|| state.checkpoints.clone())
        };
        if let (Some(path), Some(snapshot)) = (&self.ctx.settings.checkpoint_path, snapshot) {
            let _guard = lock(&self.ctx.checkpoint_file);
            if let Err(e) = write_checkpoints(path, &snapshot) {
                tracing::warn!(path = %path.display(), error = %e, "saving the stream checkpoint failed");
            }
        }
    }

    fn finish(&self) {
        {
            let mut state = lock(&self.ctx.state);
            state
                .checkpoints
                .shards
                .entry(self.shard_id.clone())
                .or_default()
                .done = true;
            if let Some(shard) = state.shards.get_mut(&self.shard_id) {
                shard.phase = Phase::Done;
                shard.pending = 0;
            }
        }
        self.checkpoint(None);
        tracing::info!(shard = %self.shard_id, "stream shard read to its end");
        self.ctx.shard_done.notify_one();
    }

    /// Hands the next batch over, and moves on, retries or discards as the mapping would.
    async fn handle_one_batch(&mut self) {
        let size = self.retry.window.min(self.pending.len());
        let batch: Vec<EventRecord> = self.pending.iter().take(size).cloned().collect();
        let outcome = self.invoke(&batch).await;
        {
            let mut state = lock(&self.ctx.state);
            state.status.invocations += 1;
            if outcome != Outcome::Success {
                state.status.failed_invocations += 1;
            }
        }
        let (done, failure) = match outcome {
            Outcome::Success => (size, None),
            Outcome::Partial(index) => (index, Some(Failure::Reported)),
            Outcome::Failed(failure) => (0, Some(failure)),
        };
        self.take_delivered(done);
        let Some(failure) = failure else {
            self.retry.first = None;
            self.retry.tries = 0;
            self.retry.backoff = self.ctx.settings.retry_backoff;
            return;
        };
        let first = seq(&self.pending[0]).to_owned();
        let batch_left = size - done;
        if self.retry.first.as_deref() != Some(first.as_str()) {
            self.retry.first = Some(first.clone());
            self.retry.tries = 0;
            self.retry.backoff = self.ctx.settings.retry_backoff;
        }
        if failure != Failure::Reported
            && self.ctx.settings.bisect_batch_on_function_error
            && batch_left > 1
        {
            let last = seq(&self.pending[batch_left - 1]).to_owned();
            if self
                .retry
                .bisected_until
                .as_deref()
                .is_none_or(|until| compare_sequence_numbers(&last, until) == Ordering::Greater)
            {
                self.retry.bisected_until = Some(last);
            }
            self.retry.window = batch_left.div_ceil(2);
            tracing::warn!(
                shard = %self.shard_id,
                first_sequence_number = %first,
                batch_size = batch_left,
                failure = ?failure,
                new_batch_size = self.retry.window,
                "batch failed; bisecting it"
            );
            self.back_off().await;
            return;
        }
        self.retry.tries += 1;
        if self.retry.tries <= self.ctx.settings.maximum_retry_attempts {
            tracing::warn!(
                shard = %self.shard_id,
                first_sequence_number = %first,
                batch_size = batch_left,
                failure = ?failure,
                attempt = self.retry.tries,
                maximum_retry_attempts = self.ctx.settings.maximum_retry_attempts,
                "batch failed; retrying from its first failed record"
            );
            self.back_off().await;
            return;
        }
        // Retries exhausted. Bisecting a batch whose failed record the handler named comes
        // down to that record alone; without bisection the whole rest goes, as on AWS.
        let discard =
            if failure == Failure::Reported && self.ctx.settings.bisect_batch_on_function_error {
                1
            } else {
                batch_left
            };
        let tries = self.retry.tries;
        let mut last = None;
        for _ in 0..discard {
            if let Some(record) = self.pending.pop_front() {
                self.dead_letter(&record, failure, tries);
                last = Some(seq(&record).to_owned());
            }
        }
        let position = if self.pending.is_empty() {
            self.last_read.clone()
        } else {
            last
        };
        self.checkpoint(position);
        self.retry = Retry {
            first: None,
            tries: 0,
            backoff: self.ctx.settings.retry_backoff,
            window: self.ctx.settings.batch_size,
            bisected_until: None,
        };
    }

    /// Drops the first `count` pending records, which the handler took.
    fn take_delivered(&mut self, count: usize) {
        if count == 0 {
            return;
        }
        let mut last = None;
        for _ in 0..count {
            last = self.pending.pop_front().map(|r| seq(&r).to_owned());
        }
        {
            let mut state = lock(&self.ctx.state);
            state.status.records_delivered += count as u64;
        }
        if let Some(until) = &self.retry.bisected_until {
            let past = self
                .pending
                .front()
                .is_none_or(|r| compare_sequence_numbers(seq(r), until) == Ordering::Greater);
            if past {
                self.retry.window = self.ctx.settings.batch_size;
                self.retry.bisected_until = None;
            }
        }
        // With nothing left pending, the position is the last record read, which may be
        // a filtered one after the batch.
        let position = if self.pending.is_empty() {
            self.last_read.clone()
        } else {
            last
        };
        self.checkpoint(position);
    }

    async fn back_off(&mut self) {
        tokio::time::sleep(self.retry.backoff).await;
        self.retry.backoff = (self.retry.backoff * 2).min(self.ctx.settings.retry_backoff_max);
    }

    async fn invoke(&self, batch: &[EventRecord]) -> Outcome {
        let mut event = StreamEvent::default();
        event.records = batch.to_vec();
        let handler = self.ctx.handler.clone();
        let mut task = tokio::spawn(async move { handler.handle(event).await });
        match tokio::time::timeout(self.ctx.settings.function_timeout, &mut task).await {
            Err(_) => {
                task.abort();
                Outcome::Failed(Failure::Timeout)
            }
            Ok(Err(_)) => Outcome::Failed(Failure::Panic),
            Ok(Ok(Err(_))) => Outcome::Failed(Failure::Error),
            Ok(Ok(Ok(response))) => classify(&response, batch),
        }
    }

    /// Appends one record to the dead-letter file, in the shape of Lambda's on-failure
    /// destination message plus the record.
    fn dead_letter(&self, record: &EventRecord, failure: Failure, tries: u32) {
        let line = dead_letter_line(
            record,
            &self.shard_id,
            &self.ctx.stream_arn,
            failure,
            tries,
            chrono::Utc::now(),
        );
        tracing::error!(
            shard = %self.shard_id,
            sequence_number = %seq(record),
            pk = key(record, "pk").unwrap_or_default(),
            sk = key(record, "sk").unwrap_or_default(),
            failure = ?failure,
            tries,
            dead_letters = %self.ctx.settings.dead_letter_path.display(),
            "retries exhausted; record dead-lettered"
        );
        {
            let mut state = lock(&self.ctx.state);
            state.status.records_dead_lettered += 1;
        }
        let mut file = lock(&self.ctx.dead_letters);
        let written = (|| -> std::io::Result<()> {
            if file.is_none() {
                if let Some(dir) = self.ctx.settings.dead_letter_path.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                *file = Some(
                    OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&self.ctx.settings.dead_letter_path)?,
                );
            }
            let f = file.as_mut().expect("opened above");
            // One write of the whole line: a reader never sees it without its newline.
            f.write_all(format!("{line}\n").as_bytes())?;
            f.flush()
        })();
        if let Err(e) = written {
            tracing::error!(path = %self.ctx.settings.dead_letter_path.display(), error = %e, "writing the dead-letter file failed; the record is lost");
        }
    }
}

fn rfc3339(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn dead_letter_line(
    record: &EventRecord,
    shard_id: &str,
    stream_arn: &str,
    failure: Failure,
    tries: u32,
    now: chrono::DateTime<chrono::Utc>,
) -> serde_json::Value {
    let arrival = rfc3339(record.change.approximate_creation_date_time);
    let mut response = json!({"statusCode": 200, "executedVersion": "$LATEST"});
    if failure != Failure::Reported {
        response["functionError"] = json!("Unhandled");
    }
    json!({
        "requestContext": {
            "condition": "RetryAttemptsExhausted",
            "approximateInvokeCount": tries,
        },
        "responseContext": response,
        "version": "1.0",
        "timestamp": rfc3339(now),
        "DDBStreamBatchInfo": BatchInfo {
            shard_id: shard_id.to_owned(),
            start_sequence_number: seq(record).to_owned(),
            end_sequence_number: seq(record).to_owned(),
            approximate_arrival_of_first_record: Some(arrival.clone()),
            approximate_arrival_of_last_record: Some(arrival),
            batch_size: 1,
            stream_arn: stream_arn.to_owned(),
        },
        "failure": failure,
        "record": record,
    })
}

fn write_checkpoints(path: &Path, checkpoints: &Checkpoints) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(checkpoints)?)?;
    std::fs::rename(tmp, path)
}

#[cfg(test)]
mod tests {
    //! The mapping's rules on made-up batches, without DynamoDB: the reader's queue is
    //! filled by hand and the handler follows a script.

    use std::collections::{HashMap, HashSet};

    use super::*;

    fn record(n: u64, pk: &str, sk: &str) -> EventRecord {
        let keys: HashMap<String, serde_dynamo::AttributeValue> = [
            ("pk".to_owned(), serde_dynamo::AttributeValue::S(pk.into())),
            ("sk".to_owned(), serde_dynamo::AttributeValue::S(sk.into())),
        ]
        .into();
        let mut r = EventRecord::default();
        r.change.keys = keys.into();
        r.change.sequence_number = Some(format!("{n:021}"));
        r.event_name = "INSERT".into();
        r
    }

    fn response(failed: &[&str]) -> DynamoDbEventResponse {
        let mut r = DynamoDbEventResponse::default();
        r.batch_item_failures = failed
            .iter()
            .map(|id| {
                let mut f = DynamoDbBatchItemFailure::default();
                f.item_identifier = Some((*id).to_owned());
                f
            })
            .collect();
        r
    }

    /// A handler that fails records on purpose and remembers every batch it was given.
    #[derive(Default)]
    struct Script {
        /// Reported failed this many times, then taken.
        flaky: Mutex<HashMap<u64, u32>>,
        /// Always reported failed.
        poison: HashSet<u64>,
        /// The handler panics when the batch holds one of these.
        panic_on: HashSet<u64>,
        /// The handler answers with an error when the batch holds one of these.
        error_on: HashSet<u64>,
        /// The handler outlives its time-out when the batch holds one of these.
        hang_on: HashSet<u64>,
        /// Answers naming a record that is not in the batch.
        invalid: bool,
        batches: Mutex<Vec<Vec<u64>>>,
        /// What each batch's invocation took (all of it, or the part before the first
        /// failure).
        taken: Mutex<Vec<Vec<u64>>>,
    }

    fn n(r: &EventRecord) -> u64 {
        seq(r).parse().unwrap()
    }

    #[async_trait]
    impl StreamHandler for Arc<Script> {
        async fn handle(&self, event: StreamEvent) -> Result<DynamoDbEventResponse, BoxError> {
            let ids: Vec<u64> = event.records.iter().map(n).collect();
            lock(&self.batches).push(ids.clone());
            if ids.iter().any(|i| self.panic_on.contains(i)) {
                panic!("a record this handler cannot take");
            }
            if ids.iter().any(|i| self.error_on.contains(i)) {
                return Err("a record this handler cannot take".into());
            }
            if ids.iter().any(|i| self.hang_on.contains(i)) {
                tokio::time::sleep(Duration::from_secs(3600)).await;
            }
            if self.invalid {
                return Ok(response(&["999"]));
            }
            let mut failed = Vec::new();
            let mut flaky = lock(&self.flaky);
            for r in &event.records {
                let i = n(r);
                let left = flaky.get_mut(&i).filter(|left| **left > 0);
                if self.poison.contains(&i) || left.is_some() {
                    if let Some(left) = left {
                        *left -= 1;
                    }
                    failed.push(seq(r).to_owned());
                }
            }
            let first_failed = failed
                .iter()
                .map(|s| s.parse::<u64>().unwrap())
                .min()
                .unwrap_or(u64::MAX);
            lock(&self.taken).push(ids.into_iter().filter(|i| *i < first_failed).collect());
            let failed: Vec<&str> = failed.iter().map(String::as_str).collect();
            Ok(response(&failed))
        }
    }

    fn settings(dir: &Path) -> PollerSettings {
        let mut s = PollerSettings::new(dir.join("dead-letters.jsonl"));
        s.batch_size = 8;
        s.maximum_retry_attempts = 2;
        s.retry_backoff = Duration::from_millis(1);
        s.retry_backoff_max = Duration::from_millis(4);
        s.function_timeout = Duration::from_millis(200);
        s
    }

    fn temp_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "im-local-stream-{}-{}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Runs `count` records (1..=count, group 1's member items) through a reader with
    /// `script` as the handler, to the end. Returns the dead-letter lines.
    async fn run(
        script: &Arc<Script>,
        count: u64,
        settings: PollerSettings,
    ) -> Vec<serde_json::Value> {
        let streams = aws_sdk_dynamodbstreams::Client::from_conf(
            aws_sdk_dynamodbstreams::Config::builder()
                .behavior_version_latest()
                .region(aws_config::Region::new("us-east-1"))
                .build(),
        );
        let dead_letters = settings.dead_letter_path.clone();
        let ctx = Arc::new(Ctx {
            streams,
            stream_arn: "arn:aws:dynamodb:ddblocal:000000000000:table/t/stream/x".into(),
            region: "us-east-1".into(),
            settings,
            handler: Arc::new(script.clone()),
            state: Mutex::new(State::default()),
            checkpoint_file: Mutex::new(()),
            dead_letters: Mutex::new(None),
            shard_done: Notify::new(),
        });
        let mut reader = ShardReader::new(ctx, "shardId-1".into(), Start::TrimHorizon);
        reader.pending = (1..=count)
            .map(|i| record(i, "GROUP#1", &format!("MEMBER#{i}")))
            .collect();
        reader.last_read = Some(format!("{count:021}"));
        let mut invocations = 0;
        while !reader.pending.is_empty() {
            reader.handle_one_batch().await;
            invocations += 1;
            assert!(invocations < 200, "the reader does not move on");
        }
        let lines = match std::fs::read_to_string(&dead_letters) {
            Ok(text) => text
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect(),
            Err(_) => Vec::new(),
        };
        if let Some(dir) = dead_letters.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
        lines
    }

    fn dead_lettered(lines: &[serde_json::Value]) -> Vec<u64> {
        lines
            .iter()
            .map(|l| {
                l["DDBStreamBatchInfo"]["startSequenceNumber"]
                    .as_str()
                    .unwrap()
                    .parse()
                    .unwrap()
            })
            .collect()
    }

    /// Each record taken once, in order, except `missing`.
    fn assert_taken_once_in_order(script: &Script, count: u64, missing: &[u64]) {
        let taken: Vec<u64> = lock(&script.taken).iter().flatten().copied().collect();
        let expected: Vec<u64> = (1..=count).filter(|i| !missing.contains(i)).collect();
        assert_eq!(taken, expected);
    }

    #[tokio::test]
    async fn a_reported_failure_is_retried_from_it_and_the_records_before_it_are_not() {
        let script = Arc::new(Script {
            flaky: Mutex::new([(3, 2)].into()),
            ..Script::default()
        });
        let lines = run(&script, 5, settings(&temp_dir())).await;
        assert!(lines.is_empty());
        assert_eq!(
            *lock(&script.batches),
            vec![vec![1, 2, 3, 4, 5], vec![3, 4, 5], vec![3, 4, 5]]
        );
        assert_taken_once_in_order(&script, 5, &[]);
    }

    #[tokio::test]
    async fn a_record_always_reported_failed_is_dead_lettered_after_its_retries() {
        let script = Arc::new(Script {
            poison: [3].into(),
            ..Script::default()
        });
        let lines = run(&script, 5, settings(&temp_dir())).await;
        // One try and two retries, then the records after it go on.
        assert_eq!(
            *lock(&script.batches),
            vec![
                vec![1, 2, 3, 4, 5],
                vec![3, 4, 5],
                vec![3, 4, 5],
                vec![4, 5]
            ]
        );
        assert_eq!(dead_lettered(&lines), vec![3]);
        let line = &lines[0];
        assert_eq!(
            line["requestContext"]["condition"],
            "RetryAttemptsExhausted"
        );
        assert_eq!(line["requestContext"]["approximateInvokeCount"], 3);
        assert_eq!(line["DDBStreamBatchInfo"]["batchSize"], 1);
        assert_eq!(line["DDBStreamBatchInfo"]["shardId"], "shardId-1");
        assert_eq!(line["failure"], "reported");
        assert_eq!(line["record"]["dynamodb"]["Keys"]["sk"]["S"], "MEMBER#3");
        assert!(line["responseContext"].get("functionError").is_none());
        assert_taken_once_in_order(&script, 5, &[3]);
    }

    #[tokio::test]
    async fn a_panicking_record_is_isolated_by_bisection_then_dead_lettered() {
        let script = Arc::new(Script {
            panic_on: [6].into(),
            ..Script::default()
        });
        let lines = run(&script, 10, settings(&temp_dir())).await;
        assert_eq!(dead_lettered(&lines), vec![6]);
        assert_eq!(lines[0]["failure"], "panic");
        assert_eq!(lines[0]["responseContext"]["functionError"], "Unhandled");
        let batches = lock(&script.batches).clone();
        // Halves until the record is alone; splitting costs no retry, so it is then
        // tried 1 + 2 times; afterwards batches are full-size again.
        assert_eq!(
            batches,
            vec![
                vec![1, 2, 3, 4, 5, 6, 7, 8],
                vec![1, 2, 3, 4],
                vec![5, 6, 7, 8],
                vec![5, 6],
                vec![5],
                vec![6],
                vec![6],
                vec![6],
                vec![7, 8, 9, 10],
            ]
        );
        assert_taken_once_in_order(&script, 10, &[6]);
    }

    #[tokio::test]
    async fn without_bisection_a_failing_batch_is_dead_lettered_whole() {
        let script = Arc::new(Script {
            error_on: [2].into(),
            ..Script::default()
        });
        let mut s = settings(&temp_dir());
        s.bisect_batch_on_function_error = false;
        s.batch_size = 3;
        let lines = run(&script, 4, s).await;
        assert_eq!(dead_lettered(&lines), vec![1, 2, 3]);
        assert_eq!(lines[0]["failure"], "error");
        assert_eq!(
            *lock(&script.batches),
            vec![vec![1, 2, 3], vec![1, 2, 3], vec![1, 2, 3], vec![4]]
        );
    }

    #[tokio::test]
    async fn an_answer_naming_a_record_not_in_the_batch_fails_it_whole() {
        let script = Arc::new(Script {
            invalid: true,
            ..Script::default()
        });
        let mut s = settings(&temp_dir());
        s.maximum_retry_attempts = 0;
        let lines = run(&script, 2, s).await;
        assert_eq!(dead_lettered(&lines), vec![1, 2]);
        assert_eq!(lines[0]["failure"], "invalid-response");
        assert_eq!(*lock(&script.batches), vec![vec![1, 2], vec![1], vec![2]]);
    }

    #[tokio::test]
    async fn an_invocation_past_the_time_out_fails_its_batch() {
        let script = Arc::new(Script {
            hang_on: [1].into(),
            ..Script::default()
        });
        let mut s = settings(&temp_dir());
        s.maximum_retry_attempts = 0;
        s.function_timeout = Duration::from_millis(20);
        let lines = run(&script, 2, s).await;
        assert_eq!(dead_lettered(&lines), vec![1]);
        assert_eq!(lines[0]["failure"], "timeout");
        assert_taken_once_in_order(&script, 2, &[1]);
    }

    fn shard(id: &str, parent: Option<&str>, closed: bool) -> ddbs::Shard {
        let mut range = ddbs::SequenceNumberRange::builder().starting_sequence_number("1");
        if closed {
            range = range.ending_sequence_number("9");
        }
        ddbs::Shard::builder()
            .shard_id(id)
            .set_parent_shard_id(parent.map(str::to_owned))
            .sequence_number_range(range.build())
            .build()
    }

    fn ids(plan: &[(String, Start)]) -> Vec<&str> {
        plan.iter().map(|(id, _)| id.as_str()).collect()
    }

    #[test]
    fn a_child_shard_is_read_once_its_parent_is_done() {
        let mut state = State::default();
        let shards = [
            shard("a", None, true),
            shard("b", Some("a"), false),
            // Its parent was trimmed away: nothing to wait for.
            shard("c", Some("gone"), false),
        ];
        let plan = plan_readers(&mut state, &shards, true, StartingPosition::TrimHorizon);
        assert_eq!(ids(&plan), vec!["a", "c"]);
        assert!(plan.iter().all(|(_, s)| matches!(s, Start::TrimHorizon)));
        // Nothing new while "a" is being read.
        assert!(plan_readers(&mut state, &shards, false, StartingPosition::TrimHorizon).is_empty());
        state.shards.get_mut("a").unwrap().phase = Phase::Done;
        state.checkpoints.shards.insert(
            "b".into(),
            ShardCheckpoint {
                sequence_number: Some("5".into()),
                done: false,
            },
        );
        let plan = plan_readers(&mut state, &shards, false, StartingPosition::TrimHorizon);
        assert_eq!(ids(&plan), vec!["b"]);
        assert!(matches!(&plan[0].1, Start::After(s) if s == "5"));
    }

    #[test]
    fn latest_skips_closed_shards_at_start_but_reads_later_ones_from_their_start() {
        let mut state = State::default();
        let plan = plan_readers(
            &mut state,
            &[shard("a", None, true), shard("b", Some("a"), false)],
            true,
            StartingPosition::Latest,
        );
        assert_eq!(ids(&plan), vec!["b"]);
        assert!(matches!(plan[0].1, Start::Latest));
        state.shards.get_mut("b").unwrap().phase = Phase::Done;
        let plan = plan_readers(
            &mut state,
            &[shard("c", Some("b"), false)],
            false,
            StartingPosition::Latest,
        );
        assert_eq!(ids(&plan), vec!["c"]);
        assert!(matches!(plan[0].1, Start::TrimHorizon));
    }
}
