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
//! - an app over its IM cloud's quota (a 429 that outlasts a call's retries, or more
//!   system messages than its `max_messages_per_minute`) never holds the shard: the
//!   group's records from the one that stopped on are deferred (written aside, the group
//!   held, in one transaction; `store::dynamo::deferred`) and the batch goes on. The
//!   app cools down (no calls to it) for the pause the cloud asked for; its groups'
//!   later records queue behind the deferred ones, and [`Syncer::drain`] applies them,
//!   in order, once the pause is over (a schedule on AWS, a timer in the local server).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lambda_events::event::streams::DynamoDbBatchItemFailure;
use futures::StreamExt;
use im_shared::model::{CloudId, SyncStatus};
use im_shared::store::dynamo::{epoch_ms, padded_sequence, Deferral, SyncCursor, SyncSave};
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
    /// The cloud is rate-limiting the app for this long: the records are deferred.
    pause: Option<Duration>,
}

impl Stopped {
    fn at(seq: &str, why: String) -> Self {
        Self {
            seq: seq.to_owned(),
            why,
            behind: false,
            pause: None,
        }
    }
}

/// How soon a drain tries again after a stop that was not a rate limit.
const DRAIN_RETRY: Duration = Duration::from_secs(30);
/// How many groups a drain takes on at once, at most.
const DRAIN_GROUPS: usize = 100;

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
        /// The members of a big add's commit, applied before the commit's own group
        /// step: done only once that step is (the cursor stays before the record).
        commit: bool,
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

    /// Whether the cursor may move past this step's records once it is applied.
    fn closes(&self) -> bool {
        !matches!(self, Step::Members { commit: true, .. })
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
                    commit: false,
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
                    commit: false,
                });
            }
            Change::Group { old, new } => {
                if let Some(ids) = records::bulk_added(old.as_deref(), new.as_deref()) {
                    // A big add's commit: its members join here, before its message.
                    out.push(Step::Members {
                        joined: true,
                        ids: ids.to_vec(),
                        first: &r.seq,
                        last: &r.seq,
                        commit: true,
                    });
                }
                out.push(Step::Group {
                    old: old.as_deref(),
                    new: new.as_deref(),
                    seq: &r.seq,
                })
            }
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
            Err(e) => return Some(Stopped::at(&first.seq, logged(group_id, e))),
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
        let cursor = self
            .store
            .sync_cursor(group_id, cloud)
            .await
            .map_err(|e| Stopped::at(&first.seq, logged(group_id, e)))?;
        // A retried batch: skip what was applied already.
        let mut pending = unapplied(records, cursor.as_ref());
        if pending.is_empty() {
            return Ok(());
        }
        // The group's records wait in its deferral: these go behind them.
        if let Some(h) = cursor
            .as_ref()
            .and_then(|c| c.held.as_ref())
            .filter(|h| h.deferred)
        {
            let why = h.why.clone();
            return self
                .defer(cloud, app_id, group_id, &pending, &why, Duration::ZERO)
                .await;
        }
        // The app is cooling down after a 429: no call, the records wait for the drain.
        if let Some(left) = self.pacers.cooling(cloud, app_id) {
            let why = format!(
                "deferred: the IM cloud is rate-limiting the app for {} s more",
                left.as_secs().max(1)
            );
            return self
                .defer(cloud, app_id, group_id, &pending, &why, left)
                .await;
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
                    behind: true,
                    ..Stopped::at(
                        &next.seq,
                        format!(
                            "held behind record {} of the group, which has not reached the IM cloud",
                            h.trim_start_matches('0')
                        ),
                    )
                };
                pending.truncate(split);
                if pending.is_empty() {
                    return Err(behind);
                }
                waiting = Some(behind);
            }
        }
        let mut run = GroupRun::new(
            provider.as_mut(),
            &self.store,
            app_id,
            group_id,
            cursor,
            held,
        );
        if let Err(stopped) = run.apply(&pending, deadline).await {
            let Some(pause) = stopped.pause else {
                return Err(stopped);
            };
            // Over the quota: this record and the rest wait for the drain, and the
            // batch goes on with the other groups.
            self.pacers.cool_down(cloud, app_id, pause);
            let from = padded_sequence(&stopped.seq);
            let rest: Vec<&Record> = pending
                .iter()
                .copied()
                .filter(|r| padded_sequence(&r.seq) >= from)
                .collect();
            let why = format!("deferred: {}", stopped.why);
            self.defer(cloud, app_id, group_id, &rest, &why, pause)
                .await?;
        }
        match waiting {
            Some(w) => Err(w),
            None => Ok(()),
        }
    }

    /// Puts `records` aside for the drain, due after `pause`; the group is held until
    /// the drain has applied them. When that cannot be written, the records are retried
    /// as any other that stopped.
    async fn defer(
        &self,
        cloud: CloudId,
        app_id: &str,
        group_id: u64,
        records: &[&Record],
        why: &str,
        pause: Duration,
    ) -> Result<(), Stopped> {
        let (Some(first), Some(last)) = (records.first(), records.last()) else {
            return Ok(());
        };
        let json =
            serde_json::to_string(records).map_err(|e| Stopped::at(&first.seq, e.to_string()))?;
        let due = epoch_ms() + pause.as_millis() as u64;
        tracing::info!(
            group_id,
            cloud = cloud.as_str(),
            records = records.len(),
            pause_ms = pause.as_millis() as u64,
            "records deferred: the app is over its IM cloud quota"
        );
        self.store
            .defer_records(
                group_id, cloud, app_id, &first.seq, &last.seq, json, why, due,
            )
            .await
            .map_err(|e| Stopped::at(&first.seq, logged(group_id, e)))
    }

    /// Applies the deferred records that are due, group by group in stream order, until
    /// `deadline`; answers how many groups it brought up to date. Run on a schedule (the
    /// sync function's scheduled event; a timer in the local server): the stream's own
    /// batches never wait for it.
    pub async fn drain(&self, deadline: Instant) -> usize {
        let due = match self.store.due_deferrals(epoch_ms(), DRAIN_GROUPS).await {
            Ok(due) => due,
            Err(e) => {
                tracing::warn!(error = %e, "reading the deferred groups failed");
                return 0;
            }
        };
        let targets: Targets = Mutex::new(HashMap::new());
        futures::stream::iter(due)
            .map(|d| {
                let targets = &targets;
                async move { self.drain_group(d, targets, deadline).await }
            })
            .buffer_unordered(PARALLEL_GROUPS)
            .filter(|done| futures::future::ready(*done))
            .count()
            .await
    }

    /// One group's deferred records in one cloud, under the drain's lease.
    async fn drain_group(&self, d: Deferral, targets: &Targets, deadline: Instant) -> bool {
        let Deferral {
            cloud,
            group_id,
            ref app_id,
            ..
        } = d;
        if self.only.is_some_and(|o| o != cloud) {
            return false;
        }
        let now = epoch_ms();
        let lease = deadline.saturating_duration_since(Instant::now()) + DEADLINE_MARGIN;
        let mut entry = match self
            .store
            .lease_deferral(group_id, cloud, now, now + lease.as_millis() as u64)
            .await
        {
            Ok(Some(entry)) => entry,
            Ok(None) => return false,
            Err(e) => {
                tracing::warn!(group_id, error = %e, "leasing a deferred group failed");
                return false;
            }
        };
        let later = |pause: Duration| async move {
            let due = epoch_ms() + pause.as_millis() as u64;
            if let Err(e) = self.store.postpone_deferral(group_id, cloud, due).await {
                tracing::warn!(group_id, error = %e, "postponing a deferred group failed");
            }
            false
        };
        if let Some(left) = self.pacers.cooling(cloud, app_id) {
            return later(left).await;
        }
        // Records deferred while the drain ran are taken in turn, a few rounds at most.
        for _ in 0..4 {
            match self
                .drain_round(cloud, app_id, group_id, targets, deadline)
                .await
            {
                Ok(()) => {}
                Err(stopped) => {
                    if let Some(pause) = stopped.pause {
                        self.pacers.cool_down(cloud, app_id, pause);
                    }
                    tracing::info!(group_id, cloud = cloud.as_str(), why = %stopped.why, "deferred records stopped again; the drain tries later");
                    return later(stopped.pause.unwrap_or(DRAIN_RETRY)).await;
                }
            }
            match self
                .store
                .finish_deferral(group_id, cloud, entry.version)
                .await
            {
                Ok(true) => return true,
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(group_id, error = %e, "ending a deferral failed");
                    return later(DRAIN_RETRY).await;
                }
            }
            entry = match self.store.deferral(group_id, cloud).await {
                Ok(Some(entry)) => entry,
                Ok(None) => return true,
                Err(e) => {
                    tracing::warn!(group_id, error = %e, "reading a deferral failed");
                    return later(DRAIN_RETRY).await;
                }
            };
        }
        later(Duration::ZERO).await
    }

    /// Applies every record deferred for the group in `cloud` now, then deletes them.
    async fn drain_round(
        &self,
        cloud: CloudId,
        app_id: &str,
        group_id: u64,
        targets: &Targets,
        deadline: Instant,
    ) -> Result<(), Stopped> {
        let gone = |why: &str| Stopped {
            pause: Some(DRAIN_RETRY),
            ..Stopped::at("0", why.to_owned())
        };
        let stored = self
            .store
            .deferred_records(group_id, cloud)
            .await
            .map_err(|e| Stopped::at("0", logged(group_id, e)))?;
        let mut records: Vec<Record> = Vec::new();
        for d in &stored {
            match serde_json::from_str::<Vec<Record>>(&d.records) {
                Ok(batch) => records.extend(batch),
                // Written by this code; unreadable only if a later version changed the
                // shape: skipped loudly rather than retried forever.
                Err(e) => {
                    tracing::error!(group_id, error = %e, "deferred records unreadable; skipped")
                }
            }
        }
        records.sort_by_key(|r| padded_sequence(&r.seq));
        records.dedup_by(|a, b| a.seq == b.seq);
        let cursor = self
            .store
            .sync_cursor(group_id, cloud)
            .await
            .map_err(|e| Stopped::at("0", logged(group_id, e)))?;
        let pending = unapplied(&records, cursor.as_ref());
        if !pending.is_empty() {
            let target = self
                .target(app_id, targets)
                .await
                .map_err(|e| Stopped::at(&pending[0].seq, logged(group_id, e)))?
                .ok_or_else(|| gone("the app is gone"))?;
            if !target.mirrored().contains(&cloud) {
                // Turned off: the state stays, and a reconcile catches up once it is on.
                return Err(gone("the IM cloud is turned off for the app"));
            }
            let mut provider = clouds::provider(cloud, &target, &self.vendor, &self.pacers, app_id)
                .ok_or_else(|| gone("the app has no settings for the IM cloud"))?;
            // No release on the way: the deferral's end lifts the hold, once every
            // deferred record is applied.
            GroupRun::new(
                provider.as_mut(),
                &self.store,
                app_id,
                group_id,
                cursor,
                None,
            )
            .apply(&pending, deadline)
            .await?;
        }
        if let Err(e) = self.store.drop_deferred(&stored).await {
            tracing::warn!(group_id, error = %e, "deleting applied deferred records failed; the cursor skips them");
        }
        Ok(())
    }
}

/// The records the group's cursor does not cover yet, in their order: what a retried
/// batch or a drain still has to apply.
fn unapplied<'r>(records: &'r [Record], cursor: Option<&SyncCursor>) -> Vec<&'r Record> {
    records
        .iter()
        .filter(|r| cursor.is_none_or(|c| padded_sequence(&r.seq) > c.seq))
        .collect()
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

impl<'a, 'p> GroupRun<'a, 'p> {
    /// A run from the group's stored state.
    fn new(
        provider: &'p mut (dyn Provider + 'a),
        store: &'a DynamoStore,
        app_id: &'a str,
        group_id: u64,
        cursor: Option<SyncCursor>,
        held: Option<String>,
    ) -> Self {
        Self {
            cloud: provider.cloud(),
            provider,
            state: RunState {
                store,
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
        }
    }

    async fn apply(&mut self, pending: &[&Record], deadline: Instant) -> Result<(), Stopped> {
        let first = pending[0].seq.as_str();
        let last = pending[pending.len() - 1].seq.as_str();
        let group_id = self.state.group_id;
        let stop = |seq: &str, e: &StepError| Stopped {
            pause: e.rate_limited(),
            ..Stopped::at(seq, e.to_string())
        };
        let now = self
            .state
            .store
            .group_meta(group_id)
            .await
            .map_err(|e| Stopped::at(first, logged(group_id, e)))?
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
                return Err(Stopped::at(
                    step.first(),
                    "out of time in this invocation".into(),
                ));
            }
            match self.step(&step).await {
                Ok(_) if !step.closes() => {}
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
                    if step.closes() {
                        done = Some(step.last());
                    }
                }
                Err(e) => {
                    if let StepError::Store(s) = &e {
                        tracing::warn!(group_id, error = %s, "storage failed while syncing a group");
                    }
                    self.save(done).await;
                    return Err(stop(step.first(), &e));
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
                pause: e.rate_limited(),
                ..Stopped::at(at, e.to_string())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::LastChange;

    fn image(event: &str, members: &[&str], bulk: bool) -> Box<GroupImage> {
        Box::new(GroupImage {
            app_id: "app".into(),
            group_name: "g".into(),
            owner: "amy".into(),
            admins: Vec::new(),
            status: "active".into(),
            conversation_id: Some("c".into()),
            mirrored_conversation: None,
            last_change: Some(LastChange {
                event: event.into(),
                by: "amy".into(),
                members: members.iter().map(|m| (*m).to_owned()).collect(),
                at: format!("{event}-at"),
                bulk,
            }),
        })
    }

    fn record(seq: &str, change: Change) -> Record {
        Record {
            seq: seq.into(),
            group_id: 7,
            change,
        }
    }

    #[test]
    fn a_big_adds_commit_adds_its_members_before_its_own_step_and_moves_no_cursor() {
        let joined = |id: &str| Change::Member {
            client_id: id.into(),
            joined: true,
            app_id: Some("app".into()),
        };
        let records = [
            record("1", joined("bob")),
            record(
                "2",
                Change::Group {
                    old: Some(image("created", &[], false)),
                    new: Some(image("members_added", &["cy", "dan"], true)),
                },
            ),
            record("3", joined("eve")),
        ];
        let refs: Vec<&Record> = records.iter().collect();
        let steps = steps(&refs);
        let shape: Vec<(bool, Vec<String>, &str, bool)> = steps
            .iter()
            .map(|s| match s {
                Step::Members { ids, last, .. } => (true, ids.clone(), *last, s.closes()),
                Step::Group { seq, .. } => (false, Vec::new(), *seq, s.closes()),
            })
            .collect();
        let ids = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            shape,
            [
                (true, ids(&["bob"]), "1", true),
                // The commit's members: not merged with the inserts around them, and
                // done only with the commit's own step.
                (true, ids(&["cy", "dan"]), "2", false),
                (false, Vec::new(), "2", true),
                (true, ids(&["eve"]), "3", true),
            ]
        );
    }
}
