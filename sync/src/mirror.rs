//! The handler: one batch of stream records in, the groups' conversations brought up to
//! date, and the records that must be retried out.
//!
//! How it stays exactly-once in effect:
//! - the records of one group are applied in stream order, one group at a time, while
//!   different groups go on in parallel;
//! - each group keeps a cursor (its `SYNC` item: the last record applied). A retried
//!   batch skips what the cursor covers, so a member change or a system message is not
//!   made twice; the cursor is saved right after each message, the one effect the vendor
//!   cannot dedupe;
//! - membership changes are set operations at the vendor (adding a member twice changes
//!   nothing), and a create first looks for the conversation an earlier try made: by the
//!   marker the store kept for the group before that create, never by attributes a
//!   client can set. A conversation is changed only once this group's link to it is
//!   written, and only the linked one is ever deleted;
//! - when a record cannot be applied yet, the batch reports it (and Lambda retries it and
//!   everything after it on the shard, which the cursors of other groups then skip);
//!   an answer no retry can fix marks the group `failed` instead, and the group's later
//!   records go on (a refused add never keeps a later kick from the conversation; an id
//!   the vendor refuses fails alone);
//! - a record that stopped also holds its group (`held` in the `SYNC` item): once its
//!   retries run out and Lambda moves on, the group's later records are reported too,
//!   unapplied, until a redrive applies it. Otherwise a later record would move the
//!   cursor past it, and its redrive would be skipped as done (a create's message or a
//!   rename lost, a member change applied out of order).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lambda_events::event::streams::DynamoDbBatchItemFailure;
use futures::StreamExt;
use im_shared::model::{CloudId, SyncStatus};
use im_shared::store::dynamo::{padded_sequence, SyncSave};
use im_shared::store::{DynamoStore, StoreError};
use tokio::sync::Mutex;

use crate::clouds::{self, stored_why, Provider, RunState, SharedTarget, StepError, Target};
use crate::pacing::Pacers;
use crate::records::{self, Change, GroupImage, Record};
use crate::vendor::Vendor;
use crate::{DynamoDbEventResponse, StreamEvent};

/// Groups synced at once within one batch.
const PARALLEL_GROUPS: usize = 8;

type Targets = Mutex<HashMap<String, Option<SharedTarget>>>;

pub struct Syncer {
    store: DynamoStore,
    vendor: Vendor,
    pacers: Pacers,
    /// Only this cloud (an operator's redrive for one cloud), else every one the app
    /// mirrors into.
    only: Option<CloudId>,
}

/// Why a group's records stopped in one cloud: retried from `seq` by the next try.
#[derive(Debug)]
struct Stopped {
    seq: String,
    why: String,
    /// `seq` waits behind an earlier record that holds the group already.
    behind: bool,
}

/// A fresh creation marker (see `DynamoStore::creation_marker`): 128 random bits.
pub(crate) fn new_marker() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// Consecutive records of one group that make one call.
enum Step<'r> {
    Members {
        joined: bool,
        ids: Vec<String>,
        first: &'r str,
        last: &'r str,
    },
    Group {
        old: Option<&'r GroupImage>,
        new: Option<&'r GroupImage>,
        seq: &'r str,
    },
}

impl<'r> Step<'r> {
    fn first(&self) -> &'r str {
        match self {
            Step::Members { first, .. } => first,
            Step::Group { seq, .. } => seq,
        }
    }

    fn last(&self) -> &'r str {
        match self {
            Step::Members { last, .. } => last,
            Step::Group { seq, .. } => seq,
        }
    }
}

fn steps<'r>(records: &[&'r Record]) -> Vec<Step<'r>> {
    let mut out: Vec<Step<'r>> = Vec::new();
    for r in records {
        match &r.change {
            Change::Member {
                client_id, joined, ..
            } => {
                if let Some(Step::Members {
                    joined: j,
                    ids,
                    last,
                    ..
                }) = out.last_mut()
                {
                    if *j == *joined {
                        ids.push(client_id.clone());
                        *last = &r.seq;
                        continue;
                    }
                }
                out.push(Step::Members {
                    joined: *joined,
                    ids: vec![client_id.clone()],
                    first: &r.seq,
                    last: &r.seq,
                });
            }
            Change::Group { old, new } => out.push(Step::Group {
                old: old.as_deref(),
                new: new.as_deref(),
                seq: &r.seq,
            }),
        }
    }
    out
}

impl Syncer {
    pub fn new(store: DynamoStore, vendor: Vendor) -> Self {
        Self {
            store,
            vendor,
            pacers: Pacers::default(),
            only: None,
        }
    }

    /// Applies records in `cloud` only (`None`: every cloud).
    pub fn only(self, cloud: Option<CloudId>) -> Self {
        Self {
            only: cloud,
            ..self
        }
    }

    pub fn store(&self) -> &DynamoStore {
        &self.store
    }

    pub fn vendor(&self) -> &Vendor {
        &self.vendor
    }

    pub fn pacers(&self) -> &Pacers {
        &self.pacers
    }

    /// Applies a batch; what it answers names the records to retry. Work stops being
    /// started at `deadline` (the invocation's, less a margin), and what is left is
    /// reported for retry rather than cut off by a time-out.
    pub async fn handle(&self, event: StreamEvent, deadline: Instant) -> DynamoDbEventResponse {
        let mut groups: BTreeMap<u64, Vec<Record>> = BTreeMap::new();
        for raw in &event.records {
            match records::read(raw) {
                Ok(r) => groups.entry(r.group_id).or_default().push(r),
                Err(skip) => tracing::debug!(event_id = %raw.event_id, ?skip, "record skipped"),
            }
        }
        let targets: Targets = Mutex::new(HashMap::new());
        let stopped: Vec<Stopped> = futures::stream::iter(groups)
            .map(|(group_id, records)| {
                let targets = &targets;
                async move { self.sync_group(group_id, &records, targets, deadline).await }
            })
            .buffer_unordered(PARALLEL_GROUPS)
            .filter_map(|s| async move { s })
            .collect()
            .await;
        let mut response = DynamoDbEventResponse::default();
        for s in stopped {
            let mut failure = DynamoDbBatchItemFailure::default();
            failure.item_identifier = Some(s.seq);
            response.batch_item_failures.push(failure);
        }
        response
    }

    /// The app's clouds, read once per batch.
    pub(crate) async fn target(
        &self,
        app_id: &str,
        targets: &Targets,
    ) -> Result<Option<SharedTarget>, StoreError> {
        let mut known = targets.lock().await;
        if let Some(t) = known.get(app_id) {
            return Ok(t.clone());
        }
        let t = self.store.mirror_target(app_id).await?.map(|t| {
            Arc::new(Target {
                leancloud: t.leancloud,
                tencent: t.tencent,
            })
        });
        known.insert(app_id.to_owned(), t.clone());
        Ok(t)
    }

    /// Applies one group's records in every cloud the app mirrors into, each on its own
    /// cursor; answers the earliest record a cloud stopped at (the one Lambda retries
    /// from), having held the group in that cloud.
    async fn sync_group(
        &self,
        group_id: u64,
        records: &[Record],
        targets: &Targets,
        deadline: Instant,
    ) -> Option<Stopped> {
        let first = records.first()?;
        let app_id = records.iter().find_map(|r| r.app_id())?;
        let target = match self.target(app_id, targets).await {
            Ok(t) => t?,
            Err(e) => {
                return Some(Stopped {
                    seq: first.seq.clone(),
                    why: logged(group_id, e),
                    behind: false,
                })
            }
        };
        let mut earliest: Option<Stopped> = None;
        for cloud in target
            .mirrored()
            .into_iter()
            .filter(|c| self.only.is_none_or(|o| o == *c))
        {
            let Some(provider) =
                clouds::provider(cloud, &target, &self.vendor, &self.pacers, app_id)
            else {
                continue;
            };
            let Err(stopped) = self
                .sync_in(provider, app_id, group_id, records, deadline)
                .await
            else {
                continue;
            };
            tracing::warn!(group_id, cloud = cloud.as_str(), seq = %stopped.seq, why = %stopped.why, "group sync stopped; its records will be retried");
            if !stopped.behind {
                // The group's later records wait for this one in this cloud, wherever it
                // goes (a retry, or the dead letters and a redrive).
                if let Err(e) = self
                    .store
                    .hold_sync(group_id, cloud, &stopped.seq, &stopped.why)
                    .await
                {
                    tracing::warn!(group_id, error = %e, "holding the group's later records failed");
                }
            }
            let earlier = earliest
                .as_ref()
                .is_none_or(|e| padded_sequence(&stopped.seq) < padded_sequence(&e.seq));
            if earlier {
                earliest = Some(stopped);
            }
        }
        earliest
    }

    /// One group's records in one cloud.
    async fn sync_in(
        &self,
        mut provider: Box<dyn Provider + '_>,
        app_id: &str,
        group_id: u64,
        records: &[Record],
        deadline: Instant,
    ) -> Result<(), Stopped> {
        let cloud = provider.cloud();
        let Some(first) = records.first() else {
            return Ok(());
        };
        let stop = |seq: &str, why: String| Stopped {
            seq: seq.to_owned(),
            why,
            behind: false,
        };
        let cursor = self
            .store
            .sync_cursor(group_id, cloud)
            .await
            .map_err(|e| stop(&first.seq, logged(group_id, e)))?;
        // A retried batch: skip what was applied already.
        let mut pending: Vec<&Record> = records
            .iter()
            .filter(|r| {
                cursor
                    .as_ref()
                    .is_none_or(|c| padded_sequence(&r.seq) > c.seq)
            })
            .collect();
        if pending.is_empty() {
            return Ok(());
        }
        // A record of this group that a try stopped at and that is not applied yet: it
        // goes first. Without it in this batch (it ran out of retries, and waits for a
        // redrive), only what comes before it may be applied; the rest is reported, to be
        // retried and then dead-lettered behind it.
        let held = cursor
            .as_ref()
            .and_then(|c| c.held.as_ref().filter(|h| c.seq < h.seq))
            .map(|h| h.seq.clone());
        let mut waiting = None;
        if let Some(h) = held
            .as_ref()
            .filter(|h| !pending.iter().any(|r| padded_sequence(&r.seq) == **h))
        {
            let split = pending.partition_point(|r| padded_sequence(&r.seq) < *h);
            if let Some(next) = pending.get(split) {
                let behind = Stopped {
                    seq: next.seq.clone(),
                    why: format!(
                        "held behind record {} of the group, which has not reached the IM cloud",
                        h.trim_start_matches('0')
                    ),
                    behind: true,
                };
                pending.truncate(split);
                if pending.is_empty() {
                    return Err(behind);
                }
                waiting = Some(behind);
            }
        }
        let mut run = GroupRun {
            provider: provider.as_mut(),
            cloud,
            state: RunState {
                store: &self.store,
                app_id,
                group_id,
                live: false,
                gone: false,
                rebuilt: false,
                dismissed: cursor.as_ref().is_some_and(|c| c.dismissed),
                sticky: cursor
                    .as_ref()
                    .filter(|c| c.report.status == SyncStatus::Failed)
                    .map(|c| c.report.error.clone().unwrap_or_default()),
                note: None,
                remote_id: cursor.and_then(|c| c.report.remote_id),
            },
            held,
        };
        run.apply(&pending, deadline).await?;
        match waiting {
            Some(w) => Err(w),
            None => Ok(()),
        }
    }
}

/// A storage error's details to the log, its words for the sync state.
fn logged(group_id: u64, e: StoreError) -> String {
    tracing::warn!(group_id, error = %e, "storage failed while syncing a group");
    stored_why(&e).to_owned()
}

/// One group's records in one batch, in one cloud.
struct GroupRun<'a, 'p> {
    provider: &'p mut (dyn Provider + 'a),
    cloud: CloudId,
    state: RunState<'a>,
    /// The record the group's later ones wait for (padded), if any: saving the cursor at
    /// or past it lets them through.
    held: Option<String>,
}

impl GroupRun<'_, '_> {
    async fn apply(&mut self, pending: &[&Record], deadline: Instant) -> Result<(), Stopped> {
        let first = pending[0].seq.as_str();
        let last = pending[pending.len() - 1].seq.as_str();
        let group_id = self.state.group_id;
        let stop = |seq: &str, why: String| Stopped {
            seq: seq.to_owned(),
            why,
            behind: false,
        };
        let now = self
            .state
            .store
            .group_meta(group_id)
            .await
            .map_err(|e| stop(first, logged(group_id, e)))?
            .filter(|m| m.app_id == self.state.app_id);
        self.state.gone = now.is_none();
        self.state.live = now.as_ref().is_some_and(|m| m.live);
        if let Err(e) = self
            .provider
            .prepare(&mut self.state, now.as_ref(), pending)
            .await
        {
            return self.failed(e, first, last).await;
        }
        let mut done: Option<&str> = None;
        // Where the cursor was last saved in this run: the end saves only what is newer.
        let mut saved: Option<&str> = None;
        for step in steps(pending) {
            if Instant::now() >= deadline {
                self.save(done).await;
                return Err(stop(step.first(), "out of time in this invocation".into()));
            }
            match self.step(&step).await {
                Ok(posted) => {
                    done = Some(step.last());
                    if posted {
                        // A message cannot be deduped by the vendor: move the cursor
                        // past it before anything else can fail.
                        self.save(done).await;
                        saved = done;
                    }
                }
                Err(e) if e.permanent() => {
                    // Refused for good: this step fails alone (the group is marked
                    // failed until a reconcile), and the records after it go on: a refused
                    // add or rename must not keep a later kick from the conversation.
                    tracing::warn!(group_id, cloud = self.cloud.as_str(), error = %e, "the IM cloud refused a change for good; the group is marked failed");
                    self.state.sticky = Some(e.to_string());
                    done = Some(step.last());
                }
                Err(e) => {
                    if let StepError::Store(s) = &e {
                        tracing::warn!(group_id, error = %s, "storage failed while syncing a group");
                    }
                    self.save(done).await;
                    return Err(stop(step.first(), e.to_string()));
                }
            }
        }
        if done != saved {
            self.save(done).await;
        }
        Ok(())
    }

    /// Saves the cursor at `done`; a failed save only means a retry redoes set
    /// operations, so it is logged, not fatal.
    async fn save(&self, done: Option<&str>) {
        let Some(seq) = done else { return };
        let state = &self.state;
        let (status, error) = match &state.sticky {
            Some(e) => (SyncStatus::Failed, Some(e.as_str())),
            None => (SyncStatus::Ok, None),
        };
        let release = self
            .held
            .as_ref()
            .is_some_and(|h| padded_sequence(seq) >= *h);
        if let Err(e) = state
            .store
            .save_sync(
                state.group_id,
                self.cloud,
                seq,
                &SyncSave {
                    status,
                    error,
                    group_gone: state.gone,
                    release,
                    dismissed: state.dismissed,
                    note: state.note.as_deref(),
                },
            )
            .await
        {
            tracing::warn!(group_id = state.group_id, error = %e, "saving the sync cursor failed");
        }
    }

    /// Ends the run on `e`: a permanent refusal marks the group failed and moves past
    /// every pending record; anything else is retried from `at`.
    async fn failed(&mut self, e: StepError, at: &str, last: &str) -> Result<(), Stopped> {
        if !e.permanent() {
            if let StepError::Store(s) = &e {
                tracing::warn!(group_id = self.state.group_id, error = %s, "storage failed while syncing a group");
            }
            return Err(Stopped {
                seq: at.to_owned(),
                why: e.to_string(),
                behind: false,
            });
        }
        tracing::warn!(group_id = self.state.group_id, cloud = self.cloud.as_str(), error = %e, "the IM cloud refused a change for good; the group is marked failed");
        self.state.sticky = Some(e.to_string());
        self.save(Some(last)).await;
        Ok(())
    }

    /// Applies one step; answers whether it posted a message.
    async fn step(&mut self, step: &Step<'_>) -> Result<bool, StepError> {
        match step {
            Step::Members { joined, ids, .. } => {
                // A group being deleted loses its member items with it, after its
                // dismissal: with `keep`, its cloud group keeps them; with `delete`, it
                // goes as a whole. The changes before the dismissal are applied, whether
                // or not the group is still there when they are read. A group made in
                // this run has every member already.
                if self.state.dismissed || self.state.rebuilt {
                    return Ok(false);
                }
                self.provider
                    .members(&mut self.state, ids, *joined)
                    .await
                    .map(|()| false)
            }
            Step::Group { old, new, .. } => {
                let posted = self.provider.group(&mut self.state, *old, *new).await?;
                if clouds::dismissal(*old, *new) {
                    self.state.dismissed = true;
                }
                Ok(posted)
            }
        }
    }
}

/// The margin kept before an invocation's deadline.
pub const DEADLINE_MARGIN: Duration = Duration::from_secs(10);
