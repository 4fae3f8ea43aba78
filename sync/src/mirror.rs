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
use im_shared::model::{ImCloud, OnDelete, Secret, SyncStatus};
use im_shared::store::dynamo::{padded_sequence, MirrorLink, SyncSave};
use im_shared::store::{DynamoStore, StoreError};
use tokio::sync::Mutex;

use crate::message;
use crate::records::{self, Change, GroupImage, Record};
use crate::vendor::{AppApi, Refusal, Vendor, VendorError};
use crate::{DynamoDbEventResponse, StreamEvent};

/// Groups synced at once within one batch.
const PARALLEL_GROUPS: usize = 8;

/// An app's mirror settings and credential, read once per batch.
struct Target {
    cloud: ImCloud,
    key: Secret,
}

type Targets = Mutex<HashMap<String, Option<Arc<Target>>>>;

pub struct Syncer {
    store: DynamoStore,
    vendor: Vendor,
}

/// Why a group's records stopped: retried from `seq` by the next try.
#[derive(Debug)]
struct Stopped {
    seq: String,
    why: String,
    /// `seq` waits behind an earlier record that holds the group already.
    behind: bool,
}

#[derive(Debug)]
enum StepError {
    Vendor(VendorError),
    Store(StoreError),
}

impl From<VendorError> for StepError {
    fn from(e: VendorError) -> Self {
        Self::Vendor(e)
    }
}

impl From<StoreError> for StepError {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

impl std::fmt::Display for StepError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Vendor(e) => e.fmt(f),
            // What a group's sync state shows (GET /im/group/{id}): never the storage
            // error's details (they can name the table's ARN and the account). They go
            // to the log where the step stopped.
            Self::Store(e) => f.write_str(stored_why(e)),
        }
    }
}

/// A storage failure as the sync state tells it.
fn stored_why(e: &StoreError) -> &'static str {
    match e {
        StoreError::Unavailable(_) => "the table could not be reached; the record will be retried",
        _ => "the table refused a read or write; the record will be retried",
    }
}

/// A fresh creation marker (see `DynamoStore::creation_marker`): 128 random bits.
pub(crate) fn new_marker() -> String {
    format!("{:032x}", rand::random::<u128>())
}

impl StepError {
    fn permanent(&self) -> bool {
        matches!(self, Self::Vendor(e) if e.is_permanent())
    }
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
        Self { store, vendor }
    }

    pub fn store(&self) -> &DynamoStore {
        &self.store
    }

    pub fn vendor(&self) -> &Vendor {
        &self.vendor
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
                async move {
                    let stopped = self
                        .sync_group(group_id, &records, targets, deadline)
                        .await
                        .err()?;
                    tracing::warn!(group_id, seq = %stopped.seq, why = %stopped.why, "group sync stopped; its records will be retried");
                    if !stopped.behind {
                        // The group's later records wait for this one, wherever it goes
                        // (a retry, or the dead letters and a redrive).
                        if let Err(e) = self.store.hold_sync(group_id, &stopped.seq, &stopped.why).await {
                            tracing::warn!(group_id, error = %e, "holding the group's later records failed");
                        }
                    }
                    Some(stopped)
                }
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

    async fn target(
        &self,
        app_id: &str,
        targets: &Targets,
    ) -> Result<Option<Arc<Target>>, StoreError> {
        let mut known = targets.lock().await;
        if let Some(t) = known.get(app_id) {
            return Ok(t.clone());
        }
        let t = self
            .store
            .mirror_target(app_id)
            .await?
            .map(|(cloud, key)| Arc::new(Target { cloud, key }));
        known.insert(app_id.to_owned(), t.clone());
        Ok(t)
    }

    async fn sync_group(
        &self,
        group_id: u64,
        records: &[Record],
        targets: &Targets,
        deadline: Instant,
    ) -> Result<(), Stopped> {
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
            .sync_cursor(group_id)
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
        let Some(first) = pending.first() else {
            return Ok(());
        };
        let Some(app_id) = pending.iter().find_map(|r| r.app_id()) else {
            return Ok(());
        };
        let target = self
            .target(app_id, targets)
            .await
            .map_err(|e| stop(&first.seq, logged(group_id, e)))?;
        let Some(target) = target.filter(|t| t.cloud.mirroring()) else {
            return Ok(());
        };
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
            store: &self.store,
            api: self.vendor.app(target.cloud.server(), app_id, &target.key),
            cloud: &target.cloud,
            app_id,
            group_id,
            conversation: None,
            live: false,
            gone: false,
            rebuilt: false,
            dismissed: cursor.as_ref().is_some_and(|c| c.dismissed),
            sticky: cursor
                .filter(|c| c.report.status == SyncStatus::Failed)
                .map(|c| c.report.error.unwrap_or_default()),
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

/// One group's records in one batch.
struct GroupRun<'a> {
    store: &'a DynamoStore,
    api: AppApi<'a>,
    cloud: &'a ImCloud,
    app_id: &'a str,
    group_id: u64,
    /// The group's conversation now.
    conversation: Option<String>,
    /// The group is live now (not being deleted, not gone).
    live: bool,
    gone: bool,
    /// The conversation was made (or repaired) from the group's members as read after
    /// every pending record was written: their member changes are in it already.
    rebuilt: bool,
    /// A failure no retry could fix, kept until a reconcile clears it.
    sticky: Option<String>,
    /// The record the group's later ones wait for (padded), if any: saving the cursor at
    /// or past it lets them through.
    held: Option<String>,
    /// The group's dismissal has been applied (in this run, or an earlier one): the
    /// member removals after it are the delete's own, which the conversation does not
    /// follow. Removals before it (a kick just before the delete) are applied.
    dismissed: bool,
}

impl GroupRun<'_> {
    async fn apply(&mut self, pending: &[&Record], deadline: Instant) -> Result<(), Stopped> {
        let first = pending[0].seq.as_str();
        let last = pending[pending.len() - 1].seq.as_str();
        let stop = |seq: &str, why: String| Stopped {
            seq: seq.to_owned(),
            why,
            behind: false,
        };
        let now = self
            .store
            .group_meta(self.group_id)
            .await
            .map_err(|e| stop(first, logged(self.group_id, e)))?
            .filter(|m| m.app_id == self.app_id);
        self.gone = now.is_none();
        self.live = now.as_ref().is_some_and(|m| m.live);
        self.conversation = match &now {
            Some(m) => m.conversation_id.clone(),
            // Deleted meanwhile: the conversation it had, as its records tell (the kicks
            // before its dismissal still reach it).
            None => pending.iter().find_map(|r| match &r.change {
                Change::Group { old, new } => old
                    .as_ref()
                    .and_then(|g| g.conversation_id.clone())
                    .or_else(|| new.as_ref().and_then(|g| g.conversation_id.clone())),
                Change::Member { .. } => None,
            }),
        };
        // A group the import brought in is in the IM cloud already: never made again.
        let imported = pending.iter().any(|r| match &r.change {
            Change::Group { old, new } => records::imports(old.as_deref(), new.as_deref()),
            Change::Member { .. } => false,
        });
        if let (true, None, Some(group), false) = (self.live, &self.conversation, &now, imported) {
            if let Err(e) = self.make_conversation(&group.group_name).await {
                return self.failed(e, first, last).await;
            }
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
                    tracing::warn!(group_id = self.group_id, error = %e, "the IM cloud refused a change for good; the group is marked failed");
                    self.sticky = Some(e.to_string());
                    done = Some(step.last());
                }
                Err(e) => {
                    if let StepError::Store(s) = &e {
                        tracing::warn!(group_id = self.group_id, error = %s, "storage failed while syncing a group");
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
        let (status, error) = match &self.sticky {
            Some(e) => (SyncStatus::Failed, Some(e.as_str())),
            None => (SyncStatus::Ok, None),
        };
        let release = self
            .held
            .as_ref()
            .is_some_and(|h| padded_sequence(seq) >= *h);
        if let Err(e) = self
            .store
            .save_sync(
                self.group_id,
                seq,
                &SyncSave {
                    status,
                    error,
                    group_gone: self.gone,
                    release,
                    dismissed: self.dismissed,
                },
            )
            .await
        {
            tracing::warn!(group_id = self.group_id, error = %e, "saving the sync cursor failed");
        }
    }

    /// Ends the run on `e`: a permanent refusal marks the group failed and moves past
    /// every pending record; anything else is retried from `at`.
    async fn failed(&mut self, e: StepError, at: &str, last: &str) -> Result<(), Stopped> {
        if !e.permanent() {
            return Err(Stopped {
                seq: at.to_owned(),
                why: e.to_string(),
                behind: false,
            });
        }
        tracing::warn!(group_id = self.group_id, error = %e, "the IM cloud refused a change for good; the group is marked failed");
        self.sticky = Some(e.to_string());
        self.save(Some(last)).await;
        Ok(())
    }

    /// Gives a live group without a conversation one: an earlier try's (found by the
    /// marker this service wrote before that try's create), or a new one, with the
    /// group's members as they are now; then links it. A conversation is changed (its
    /// members set) only once its link to this group is written.
    async fn make_conversation(&mut self, name: &str) -> Result<(), StepError> {
        let marker = self
            .store
            .creation_marker(self.group_id, &new_marker())
            .await?;
        let members = self.store.group_members(self.group_id).await?;
        let (id, made) = self
            .api
            .ensure_group_conversation(self.group_id, &marker, name, &members)
            .await?;
        match self
            .store
            .link_mirrored(self.app_id, self.group_id, &id)
            .await?
        {
            MirrorLink::Linked => {
                if !made {
                    // An earlier try's, linked now: its members are as they were then.
                    let repair = self.api.set_members(&id, &members).await?;
                    self.note_refused(&repair.refused);
                }
                self.conversation = Some(id);
                self.rebuilt = true;
            }
            MirrorLink::AlreadyLinked(other) => {
                // The backend linked one meanwhile; the link's own record brings the
                // members there. Ours (made now, or found by our marker) is nobody's:
                // remove it.
                if other != id {
                    self.api.delete_conversation(&id).await?;
                }
                self.conversation = Some(other);
            }
            MirrorLink::GroupGone => {
                self.live = false;
                self.conversation = Some(id);
            }
            MirrorLink::Taken => {
                return Err(StepError::Vendor(VendorError::Refused {
                    status: 409,
                    code: None,
                    message: format!("conversation {id} is linked to another group of the app"),
                }))
            }
        }
        Ok(())
    }

    /// Member ids the IM cloud would not take: the group is marked failed, naming them
    /// (a reconcile names them again), while every other id went through.
    fn note_refused(&mut self, refused: &[Refusal]) {
        if refused.is_empty() {
            return;
        }
        let ids: Vec<&str> = refused.iter().map(|r| r.client_id.as_str()).collect();
        tracing::warn!(group_id = self.group_id, refused = ?ids, "the IM cloud refused member ids");
        self.sticky = Some(format!(
            "the IM cloud refused member {}: {}",
            ids.join(", "),
            refused[0].why
        ));
    }

    /// Applies one step; answers whether it posted a message.
    async fn step(&mut self, step: &Step<'_>) -> Result<bool, StepError> {
        match step {
            Step::Members { joined, ids, .. } => {
                // A group being deleted loses its member items with it, after its
                // dismissal: with `keep`, its conversation keeps them; with `delete`, it
                // goes as a whole. The changes before the dismissal are applied, whether
                // or not the group is still there when they are read.
                if self.dismissed || self.rebuilt {
                    return Ok(false);
                }
                if let Some(conversation) = self.conversation.clone() {
                    let refused = self.api.change_members(&conversation, ids, *joined).await?;
                    self.note_refused(&refused);
                }
                Ok(false)
            }
            Step::Group { old, new, .. } => self.group_step(*old, *new).await,
        }
    }

    async fn group_step(
        &mut self,
        old: Option<&GroupImage>,
        new: Option<&GroupImage>,
    ) -> Result<bool, StepError> {
        if records::imports(old, new) {
            // The import's own write: the conversation has the group as written, so
            // nothing is renamed, moved or announced.
            return Ok(false);
        }
        // The conversation the group had at the time of the change.
        let then = new
            .and_then(|g| g.conversation_id.clone())
            .or_else(|| old.and_then(|g| g.conversation_id.clone()))
            .or_else(|| self.conversation.clone());
        if let (Some(o), Some(n)) = (old, new) {
            // The backend moved the link: the new conversation gets every member. (The
            // mirror's own write-back of a conversation it made is not a move.)
            let moved = n.conversation_id.is_some()
                && n.conversation_id != o.conversation_id
                && n.conversation_id != n.mirrored_conversation;
            if moved && self.live && !self.rebuilt && n.conversation_id == self.conversation {
                let members = self.store.group_members(self.group_id).await?;
                if let Some(c) = self.conversation.clone() {
                    let refused = self.api.change_members(&c, &members, true).await?;
                    self.note_refused(&refused);
                }
            }
            if n.live() && n.group_name != o.group_name && self.live {
                if let Some(c) = &self.conversation {
                    self.api.rename(c, &n.group_name).await?;
                }
            }
        }
        let mut posted = false;
        let change = new.and_then(|g| g.last_change.as_ref());
        let before = old.and_then(|g| g.last_change.as_ref());
        if let (true, Some(change), Some(conversation), Some(from)) = (
            self.cloud.system_messages(),
            change.filter(|c| Some(*c) != before),
            &then,
            self.cloud.system_client(),
        ) {
            let name = new.map(|g| g.group_name.as_str()).unwrap_or_default();
            let text = message::for_change(self.group_id, name, change);
            self.api.send_message(conversation, from, &text).await?;
            posted = true;
        }
        let dismissed = match (old, new) {
            (Some(o), Some(n)) => o.live() && !n.live(),
            (Some(o), None) => o.live(),
            _ => false,
        };
        if dismissed && self.cloud.on_delete() == OnDelete::Delete {
            // Only the conversation the group had: never one found by its attributes,
            // which any client can set.
            if let Some(c) = &then {
                self.api.delete_conversation(c).await?;
            }
        }
        if dismissed {
            self.dismissed = true;
        }
        Ok(posted)
    }
}

/// The margin kept before an invocation's deadline.
pub const DEADLINE_MARGIN: Duration = Duration::from_secs(10);
