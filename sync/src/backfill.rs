//! `im-admin sync backfill`: brings every live group of an app into a cloud added after
//! the groups were made (the mirror makes a group in a cloud only when a change of it
//! comes down the stream).
//!
//! Resumable by construction: a group is done once its id in the cloud is in its sync
//! state (`SYNC#tencent`'s `remote_id`), written right after the create, so a run stopped
//! anywhere (a crash, Ctrl-C) is finished by the next, which skips what is done. A create
//! whose answer was lost is recognised by the cloud (10025) and taken over. Every call
//! waits for the app's pacer, shared with the mirror in the same process, so a backfill
//! never calls faster than the app's `max_calls_per_second`.

use std::sync::atomic::{AtomicBool, Ordering};

use futures::StreamExt;
use im_shared::model::CloudId;
use im_shared::store::StoreError;

use crate::clouds::tencent::Tencent;
use crate::clouds::{RunState, StepError};
use crate::Syncer;

/// Groups brought over at once: enough to keep the pacer's rate busy while each waits
/// for its answers.
const PARALLEL_GROUPS: usize = 32;

/// What became of one group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Made in the cloud now (or taken over from an earlier run's lost answer).
    Created { remote_id: String },
    /// Its sync state names its id in the cloud already.
    AlreadyThere,
    /// Not a live group of the app any more.
    Gone,
    /// The cloud refused it, or could not be reached within the retry budget; the group
    /// is marked failed in that cloud (a later run, or reconcile --fix, tries again).
    Failed { why: String },
}

#[derive(Debug, thiserror::Error)]
pub enum BackfillError {
    #[error("app {0} has no {1} settings (im-admin app im-cloud set --provider {1})")]
    NoCloud(String, &'static str),
    #[error("a backfill into {0} is not needed: the mirror makes each conversation when the group changes")]
    NotSupported(&'static str),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The totals a run reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    pub created: usize,
    pub already_there: usize,
    pub gone: usize,
    pub failed: usize,
    /// Groups not started because the run was stopped.
    pub not_started: usize,
}

impl Syncer {
    /// The live groups of `app_id`, in id order (what a backfill goes through).
    pub async fn backfill_groups(&self, app_id: &str) -> Result<Vec<u64>, StoreError> {
        self.store().app_group_ids(app_id).await
    }

    /// Brings `groups` of `app_id` into `cloud`, calling `progress` once per group as it
    /// ends; stops starting groups once `stop` is set (Ctrl-C), and lets those started
    /// finish.
    pub async fn backfill(
        &self,
        app_id: &str,
        cloud: CloudId,
        groups: &[u64],
        stop: &AtomicBool,
        mut progress: impl FnMut(u64, &Outcome),
    ) -> Result<Summary, BackfillError> {
        if cloud != CloudId::Tencent {
            return Err(BackfillError::NotSupported(cloud.as_str()));
        }
        let target = self
            .store()
            .mirror_target(app_id)
            .await?
            .and_then(|t| t.tencent)
            .ok_or_else(|| BackfillError::NoCloud(app_id.to_owned(), cloud.as_str()))?;
        let (settings, key) = &target;
        let tencent = Tencent::new(self.vendor(), self.pacers(), settings, key, app_id);
        let mut summary = Summary::default();
        let mut outcomes = futures::stream::iter(groups.iter().copied())
            .map(|group_id| {
                let tencent = &tencent;
                async move {
                    if stop.load(Ordering::Relaxed) {
                        return (group_id, None);
                    }
                    let outcome = self.backfill_group(tencent, app_id, group_id).await;
                    (group_id, Some(outcome))
                }
            })
            .buffer_unordered(PARALLEL_GROUPS);
        while let Some((group_id, outcome)) = outcomes.next().await {
            let outcome = match outcome {
                None => {
                    summary.not_started += 1;
                    continue;
                }
                Some(Ok(o)) => o,
                Some(Err(e)) => return Err(e.into()),
            };
            match &outcome {
                Outcome::Created { .. } => summary.created += 1,
                Outcome::AlreadyThere => summary.already_there += 1,
                Outcome::Gone => summary.gone += 1,
                Outcome::Failed { .. } => summary.failed += 1,
            }
            progress(group_id, &outcome);
        }
        Ok(summary)
    }

    async fn backfill_group(
        &self,
        tencent: &Tencent<'_>,
        app_id: &str,
        group_id: u64,
    ) -> Result<Outcome, StoreError> {
        let store = self.store();
        let cursor = store.sync_cursor(group_id, CloudId::Tencent).await?;
        if cursor
            .as_ref()
            .is_some_and(|c| c.report.remote_id.is_some())
        {
            return Ok(Outcome::AlreadyThere);
        }
        let Some(meta) = store
            .group_meta(group_id)
            .await?
            .filter(|m| m.live && m.app_id == app_id)
        else {
            return Ok(Outcome::Gone);
        };
        let members = store.group_members(group_id).await?;
        let mut run = RunState::for_operator(store, app_id, group_id, None);
        match tencent.create(&mut run, &meta, &members).await {
            Ok(remote_id) => {
                if let Some(why) = &run.sticky {
                    store
                        .mark_sync_failed(group_id, CloudId::Tencent, why, run.note.as_deref())
                        .await?;
                    return Ok(Outcome::Failed { why: why.clone() });
                }
                if let Some(note) = &run.note {
                    store.note_sync(group_id, CloudId::Tencent, note).await?;
                }
                Ok(Outcome::Created { remote_id })
            }
            Err(StepError::Store(e)) => Err(e),
            Err(e) => {
                let why = e.to_string();
                store
                    .mark_sync_failed(group_id, CloudId::Tencent, &why, run.note.as_deref())
                    .await?;
                Ok(Outcome::Failed { why })
            }
        }
    }
}
