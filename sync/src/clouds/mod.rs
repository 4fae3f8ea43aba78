//! The IM clouds a group is mirrored into, each a [`Provider`] behind one interface: the
//! mirror's engine (`mirror.rs`) keeps the order, the cursors, the holds and the failed
//! states, per group and per cloud; a provider only says how one step reaches its cloud.
//!
//! Adding a cloud is a module here: its settings in `im_shared::model`, a `CloudId`, a
//! provider, and a line in [`providers`].

pub mod leancloud;
pub mod tencent;

use std::sync::Arc;

use async_trait::async_trait;
use im_shared::model::{CloudId, GroupMeta, ImCloud, Secret, TencentCloud};
use im_shared::store::{DynamoStore, StoreError};

use crate::pacing::Pacers;
use crate::records::{GroupImage, Record};
use crate::vendor::{Refusal, Vendor, VendorError};

/// An app's clouds, their settings and credentials, read once per batch.
#[derive(Default)]
pub struct Target {
    pub leancloud: Option<(ImCloud, Secret)>,
    pub tencent: Option<(TencentCloud, Secret)>,
}

impl Target {
    /// The clouds the app mirrors into now (a cloud turned off keeps its state, but gets
    /// no calls).
    pub fn mirrored(&self) -> Vec<CloudId> {
        let mut out = Vec::new();
        if self.leancloud.as_ref().is_some_and(|(c, _)| c.mirroring()) {
            out.push(CloudId::LeanCloud);
        }
        if self.tencent.as_ref().is_some_and(|(c, _)| c.mirroring()) {
            out.push(CloudId::Tencent);
        }
        out
    }

    /// Every cloud the app has settings for, on or off.
    pub fn configured(&self) -> Vec<CloudId> {
        let mut out = Vec::new();
        if self.leancloud.is_some() {
            out.push(CloudId::LeanCloud);
        }
        if self.tencent.is_some() {
            out.push(CloudId::Tencent);
        }
        out
    }
}

/// What every cloud's step needs to know of the run, and may change.
pub struct RunState<'a> {
    pub store: &'a DynamoStore,
    pub app_id: &'a str,
    pub group_id: u64,
    /// The group is live now (not being deleted, not gone).
    pub live: bool,
    pub gone: bool,
    /// The cloud's group was made (or repaired) from the group's members as read after
    /// every pending record was written: their member changes are in it already.
    pub rebuilt: bool,
    /// The group's dismissal has been applied (in this run, or an earlier one): the
    /// member removals after it are the delete's own, which the cloud does not follow.
    pub dismissed: bool,
    /// A failure no retry could fix, kept until a reconcile clears it.
    pub sticky: Option<String>,
    /// What the mirror changed on the way (a name cut to the cloud's limit).
    pub note: Option<String>,
    /// The group's id in the cloud, as the cursor knew it (clouds whose ids the mirror
    /// picks: Tencent's).
    pub remote_id: Option<String>,
}

impl<'a> RunState<'a> {
    /// The state of an operator's run on one live group (a backfill, a reconcile), outside
    /// the stream's order.
    pub fn for_operator(
        store: &'a DynamoStore,
        app_id: &'a str,
        group_id: u64,
        remote_id: Option<String>,
    ) -> Self {
        Self {
            store,
            app_id,
            group_id,
            live: true,
            gone: false,
            rebuilt: false,
            dismissed: false,
            sticky: None,
            note: None,
            remote_id,
        }
    }

    /// Member ids the cloud would not take: the group is marked failed, naming them (a
    /// reconcile names them again), while every other id went through.
    pub fn note_refused(&mut self, cloud: CloudId, refused: &[Refusal]) {
        if refused.is_empty() {
            return;
        }
        let ids: Vec<&str> = refused.iter().map(|r| r.client_id.as_str()).collect();
        tracing::warn!(group_id = self.group_id, cloud = cloud.as_str(), refused = ?ids, "the IM cloud refused member ids");
        self.sticky = Some(format!(
            "the IM cloud refused member {}: {}",
            ids.join(", "),
            refused[0].why
        ));
    }
}

#[derive(Debug)]
pub enum StepError {
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

impl StepError {
    pub fn permanent(&self) -> bool {
        matches!(self, Self::Vendor(e) if e.is_permanent())
    }

    /// How long the cloud is rate-limiting the app, when it is.
    pub fn rate_limited(&self) -> Option<std::time::Duration> {
        match self {
            Self::Vendor(e) => e.rate_limited(),
            Self::Store(_) => None,
        }
    }
}

/// A storage failure as the sync state tells it.
pub fn stored_why(e: &StoreError) -> &'static str {
    match e {
        StoreError::Unavailable(_) => "the table could not be reached; the record will be retried",
        _ => "the table refused a read or write; the record will be retried",
    }
}

/// How one cloud follows a group. Each call is one step of the group's records, applied
/// in stream order; an error that [`StepError::permanent`] calls permanent fails only its
/// step (the group is marked failed in this cloud), any other stops the group's run in
/// this cloud to be retried.
#[async_trait]
pub trait Provider: Send + Sync {
    fn cloud(&self) -> CloudId;

    /// Before the run's steps: what the cloud's group is now (`now`: the group as read
    /// after every pending record was written; `None` once it is gone), and for a live
    /// group that has none in the cloud yet, making it, with every member as of now
    /// (then `run.rebuilt`).
    async fn prepare(
        &mut self,
        run: &mut RunState<'_>,
        now: Option<&GroupMeta>,
        pending: &[&Record],
    ) -> Result<(), StepError>;

    /// Members joined (`joined`) or left.
    async fn members(
        &mut self,
        run: &mut RunState<'_>,
        ids: &[String],
        joined: bool,
    ) -> Result<(), StepError>;

    /// The group item changed from `old` to `new`; answers whether it posted a message
    /// (which no cloud can dedupe: the cursor is saved right after it).
    async fn group(
        &mut self,
        run: &mut RunState<'_>,
        old: Option<&GroupImage>,
        new: Option<&GroupImage>,
    ) -> Result<bool, StepError>;
}

/// The providers of `cloud` for one app, or `None` when the app has no such settings.
pub fn provider<'a>(
    cloud: CloudId,
    target: &'a Target,
    vendor: &'a Vendor,
    pacers: &'a Pacers,
    app_id: &'a str,
) -> Option<Box<dyn Provider + 'a>> {
    match cloud {
        CloudId::LeanCloud => {
            let (settings, key) = target.leancloud.as_ref()?;
            Some(Box::new(leancloud::LeanCloud::new(
                vendor, pacers, settings, key, app_id,
            )))
        }
        CloudId::Tencent => {
            let (settings, key) = target.tencent.as_ref()?;
            Some(Box::new(tencent::Tencent::new(
                vendor, pacers, settings, key, app_id,
            )))
        }
    }
}

/// An app's target, shared by the groups of one batch.
pub type SharedTarget = Arc<Target>;

/// The change the write from `old` to `new` recorded, if it recorded one (a write that
/// leaves `last_change` as it was, such as the mirror's own write-back, made none).
pub fn new_change<'g>(
    old: Option<&GroupImage>,
    new: Option<&'g GroupImage>,
) -> Option<&'g crate::records::LastChange> {
    let before = old.and_then(|g| g.last_change.as_ref());
    new.and_then(|g| g.last_change.as_ref())
        .filter(|c| Some(*c) != before)
}

/// The change from `old` to `new` dismisses the group.
pub fn dismissal(old: Option<&GroupImage>, new: Option<&GroupImage>) -> bool {
    match (old, new) {
        (Some(o), Some(n)) => o.live() && !n.live(),
        (Some(o), None) => o.live(),
        _ => false,
    }
}
