//! `im-admin sync reconcile`: compares each group's members with its conversation's and
//! reports, or repairs, every difference, whatever made it (a change behind the
//! service's back, a record that went to the dead-letter queue, a group marked failed).

use std::fmt;

use im_shared::model::{CloudId, GroupMeta, SyncStatus};
use im_shared::store::dynamo::MirrorLink;
use im_shared::store::StoreError;

use crate::clouds::tencent::Tencent;
use crate::clouds::{RunState, StepError};
use crate::mirror::new_marker;
use crate::vendor::{AppApi, Refusal, VendorError};
use crate::Syncer;

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("app {0} has no IM cloud settings (im-admin app im-cloud set)")]
    NoSettings(String),
    #[error("app {0} has no {1} settings (im-admin app im-cloud set --provider {1})")]
    NoCloud(String, &'static str),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What one group looked like, and what was done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    InStep,
    NotALiveGroup,
    NoConversation,
    /// The linked conversation does not exist in the IM cloud.
    ConversationGone(String),
    Differs {
        missing: Vec<String>,
        extra: Vec<String>,
    },
    /// The IM cloud could not be asked (or refused); nothing was decided.
    Unreachable(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupReport {
    pub cloud: CloudId,
    pub group_id: u64,
    /// The group's conversation (LeanCloud) or group id (Tencent) in the cloud.
    pub conversation: Option<String>,
    pub finding: Finding,
    /// The group was marked failed (its last error).
    pub failed: Option<String>,
    /// The group's later changes wait for a record that has not reached the IM cloud
    /// (which, and why it stopped).
    pub held: Option<String>,
    /// With `--fix`: the conversation now matches (and names it), but for `refused`.
    pub fixed: Option<String>,
    /// With `--fix`: member ids the IM cloud would not take, with its answer. The group
    /// stays marked failed while any is left: a repair names what it could not do.
    pub refused: Vec<Refusal>,
}

impl GroupReport {
    pub fn in_step(&self) -> bool {
        self.finding == Finding::InStep && self.failed.is_none() && self.held.is_none()
    }
}

impl fmt::Display for GroupReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "group {}", self.group_id)?;
        match (self.cloud, &self.conversation) {
            (CloudId::LeanCloud, Some(c)) => write!(f, " (conversation {c})")?,
            (CloudId::LeanCloud, None) => {}
            (cloud, Some(c)) => write!(f, " in {} (group {c})", cloud.as_str())?,
            (cloud, None) => write!(f, " in {}", cloud.as_str())?,
        }
        match &self.finding {
            Finding::InStep => write!(f, ": members match")?,
            Finding::NotALiveGroup => write!(f, ": not a live group of the app")?,
            Finding::NoConversation => write!(f, ": no conversation")?,
            Finding::ConversationGone(c) => write!(f, ": conversation {c} no longer exists")?,
            Finding::Differs { missing, extra } => {
                write!(f, ": differs")?;
                if !missing.is_empty() {
                    write!(f, "; missing from the conversation: {}", missing.join(", "))?;
                }
                if !extra.is_empty() {
                    write!(
                        f,
                        "; in the conversation but not the group: {}",
                        extra.join(", ")
                    )?;
                }
            }
            Finding::Unreachable(why) => write!(f, ": could not compare ({why})")?,
        }
        if let Some(e) = &self.failed {
            write!(f, "; marked failed: {e}")?;
        }
        if let Some(h) = &self.held {
            write!(f, "; later changes held behind {h}")?;
        }
        if let Some(c) = &self.fixed {
            write!(f, "; fixed: conversation {c} now matches")?;
        }
        for r in &self.refused {
            write!(
                f,
                "; not repaired: the IM cloud refused {} ({})",
                r.client_id, r.why
            )?;
        }
        Ok(())
    }
}

impl Syncer {
    /// Reconciles one group of `app_id`, or all of its live groups, in `cloud`, or in
    /// every cloud the app has settings for (on or off: a cloud turned off is still
    /// compared, so that turning it on again starts from a known state).
    pub async fn reconcile(
        &self,
        app_id: &str,
        group: Option<u64>,
        fix: bool,
        cloud: Option<CloudId>,
    ) -> Result<Vec<GroupReport>, ReconcileError> {
        let target = self
            .store()
            .mirror_target(app_id)
            .await?
            .filter(|t| t.leancloud.is_some() || t.tencent.is_some())
            .ok_or_else(|| ReconcileError::NoSettings(app_id.to_owned()))?;
        let ids = match group {
            Some(id) => vec![id],
            None => self.store().app_group_ids(app_id).await?,
        };
        let clouds: Vec<CloudId> = match cloud {
            Some(c) if !clouds_of(&target).contains(&c) => {
                return Err(ReconcileError::NoCloud(app_id.to_owned(), c.as_str()))
            }
            Some(c) => vec![c],
            None => clouds_of(&target),
        };
        let mut reports = Vec::with_capacity(ids.len());
        for cloud in clouds {
            match cloud {
                CloudId::LeanCloud => {
                    let Some((settings, key)) = &target.leancloud else {
                        continue;
                    };
                    let api = self.vendor().app(settings.server(), app_id, key);
                    for id in &ids {
                        reports.push(self.reconcile_group(&api, app_id, *id, fix).await?);
                    }
                }
                CloudId::Tencent => {
                    let Some((settings, key)) = &target.tencent else {
                        continue;
                    };
                    let tencent = Tencent::new(self.vendor(), self.pacers(), settings, key, app_id);
                    for id in &ids {
                        reports.push(self.reconcile_tencent(&tencent, app_id, *id, fix).await?);
                    }
                }
            }
        }
        Ok(reports)
    }

    /// One group in Tencent: its members, owner, admins and name against the Tencent
    /// group the mirror made (the id in its sync state); with `fix`, made to match, or
    /// made if it is missing.
    async fn reconcile_tencent(
        &self,
        tencent: &Tencent<'_>,
        app_id: &str,
        group_id: u64,
        fix: bool,
    ) -> Result<GroupReport, ReconcileError> {
        let store = self.store();
        let cursor = store.sync_cursor(group_id, CloudId::Tencent).await?;
        let (mut report, hold) = report_from(CloudId::Tencent, group_id, cursor.as_ref());
        let remote = cursor.and_then(|c| c.report.remote_id);
        report.conversation = remote.clone();
        let Some(meta) = store
            .group_meta(group_id)
            .await?
            .filter(|m| m.live && m.app_id == app_id)
        else {
            report.finding = Finding::NotALiveGroup;
            return Ok(report);
        };
        let members = store.group_members(group_id).await?;
        report.finding = match &remote {
            None => Finding::NoConversation,
            Some(gid) => match tencent.api().members(gid).await {
                Ok(Some(have)) => tencent_finding(&meta, &members, &have),
                Ok(None) => Finding::ConversationGone(gid.clone()),
                Err(e) => Finding::Unreachable(e.to_string()),
            },
        };
        if !fix || report.in_step() || matches!(report.finding, Finding::Unreachable(_)) {
            return Ok(report);
        }
        let mut run = RunState::for_operator(store, app_id, group_id, remote.clone());
        let fixed = match (&report.finding, &remote) {
            (Finding::InStep | Finding::Differs { .. }, Some(gid)) => tencent
                .repair(&mut run, gid, &meta, &members)
                .await
                .map(|refused| (gid.clone(), refused)),
            _ => tencent
                .create(&mut run, &meta, &members)
                .await
                .map(|gid| (gid, Vec::new())),
        };
        match fixed {
            Ok((gid, refused)) if refused.is_empty() && run.sticky.is_none() => {
                store
                    .clear_sync_failure(group_id, CloudId::Tencent, hold.as_deref())
                    .await?;
                report.conversation = Some(gid.clone());
                report.fixed = Some(gid);
            }
            Ok((_, refused)) => report.refused = refused,
            Err(StepError::Store(e)) => return Err(e.into()),
            Err(e) => report.finding = Finding::Unreachable(e.to_string()),
        }
        Ok(report)
    }

    async fn reconcile_group(
        &self,
        api: &AppApi<'_>,
        app_id: &str,
        group_id: u64,
        fix: bool,
    ) -> Result<GroupReport, ReconcileError> {
        let store = self.store();
        let cursor = store.sync_cursor(group_id, CloudId::LeanCloud).await?;
        let (mut report, hold) = report_from(CloudId::LeanCloud, group_id, cursor.as_ref());
        let Some(meta) = store
            .group_meta(group_id)
            .await?
            .filter(|m| m.live && m.app_id == app_id)
        else {
            report.finding = Finding::NotALiveGroup;
            return Ok(report);
        };
        let members = store.group_members(group_id).await?;
        report.conversation = meta.conversation_id.clone();
        report.finding = match &meta.conversation_id {
            None => Finding::NoConversation,
            Some(c) => match api.members(c).await {
                Ok(have) => {
                    let missing: Vec<String> = members
                        .iter()
                        .filter(|m| !have.contains(m))
                        .cloned()
                        .collect();
                    let extra: Vec<String> =
                        have.into_iter().filter(|m| !members.contains(m)).collect();
                    if missing.is_empty() && extra.is_empty() {
                        Finding::InStep
                    } else {
                        Finding::Differs { missing, extra }
                    }
                }
                Err(VendorError::Refused { status: 404, .. }) => {
                    Finding::ConversationGone(c.clone())
                }
                Err(e) => Finding::Unreachable(e.to_string()),
            },
        };
        if !fix || matches!(report.finding, Finding::Unreachable(_)) {
            return Ok(report);
        }
        if report.in_step() {
            return Ok(report);
        }
        match self
            .repair(api, app_id, group_id, &meta, &members, &report.finding)
            .await
        {
            Ok(Some((conversation, refused))) if refused.is_empty() => {
                store
                    .clear_sync_failure(group_id, CloudId::LeanCloud, hold.as_deref())
                    .await?;
                report.fixed = Some(conversation);
            }
            Ok(Some((_, refused))) => report.refused = refused,
            Ok(None) => {}
            Err(e) => report.finding = Finding::Unreachable(e.to_string()),
        }
        Ok(report)
    }

    /// Makes the group's conversation match it; answers the conversation and the ids the
    /// IM cloud refused, or `None` when the group moved on meanwhile (run reconcile
    /// again). Like the mirror, it changes a conversation only once this group's link to
    /// it is written: one it makes is found again by the group's creation marker, never
    /// by attributes a client can set.
    async fn repair(
        &self,
        api: &AppApi<'_>,
        app_id: &str,
        group_id: u64,
        meta: &im_shared::model::GroupMeta,
        members: &[String],
        finding: &Finding,
    ) -> Result<Option<(String, Vec<Refusal>)>, VendorError> {
        let store = self.store();
        let unavailable = |e: StoreError| VendorError::Unavailable(e.to_string());
        match finding {
            Finding::InStep | Finding::Differs { .. } => {
                let Some(c) = &meta.conversation_id else {
                    return Ok(None);
                };
                let repair = api.set_members(c, members).await?;
                Ok(Some((c.clone(), repair.refused)))
            }
            Finding::NoConversation | Finding::ConversationGone(_) => {
                let marker = store
                    .creation_marker(group_id, &new_marker())
                    .await
                    .map_err(unavailable)?;
                let (id, made) = api
                    .ensure_group_conversation(group_id, &marker, &meta.group_name, members)
                    .await?;
                let linked = match &meta.conversation_id {
                    None => {
                        store
                            .link_mirrored(app_id, group_id, &id)
                            .await
                            .map_err(unavailable)?
                            == MirrorLink::Linked
                    }
                    Some(old) => store
                        .relink_mirrored(app_id, group_id, old, &id)
                        .await
                        .map_err(unavailable)?,
                };
                if !linked {
                    // Left unlinked and untouched: the next reconcile finds it by the
                    // marker, or the backend's link stands.
                    return Ok(None);
                }
                let refused = if made {
                    Vec::new()
                } else {
                    api.set_members(&id, members).await?.refused
                };
                Ok(Some((id, refused)))
            }
            Finding::NotALiveGroup | Finding::Unreachable(_) => Ok(None),
        }
    }
}

/// A report's start from the group's sync state in `cloud`: failed, held (and the hold's
/// record, padded).
fn report_from(
    cloud: CloudId,
    group_id: u64,
    cursor: Option<&im_shared::store::dynamo::SyncCursor>,
) -> (GroupReport, Option<String>) {
    let failed = cursor
        .filter(|c| c.report.status == SyncStatus::Failed)
        .map(|c| c.report.error.clone().unwrap_or_default());
    let hold = cursor.and_then(|c| c.held.clone().filter(|h| c.seq < h.seq));
    let held = hold.as_ref().map(|h| {
        format!(
            "stream record {} ({})",
            h.seq.trim_start_matches('0'),
            h.why
        )
    });
    let report = GroupReport {
        cloud,
        group_id,
        conversation: None,
        finding: Finding::InStep,
        failed,
        held,
        fixed: None,
        refused: Vec::new(),
    };
    (report, hold.map(|h| h.seq))
}

/// How a Tencent group differs from ours: members (the owner counted as one), and the
/// owner's and admins' roles (a wrong role counts as the member missing in that role).
fn tencent_finding(meta: &GroupMeta, members: &[String], have: &[(String, String)]) -> Finding {
    let role_of = |m: &str| {
        if m == meta.owner {
            "Owner"
        } else if meta.admins.contains(m) {
            "Admin"
        } else {
            "Member"
        }
    };
    let mut want: Vec<String> = members.to_vec();
    if !want.contains(&meta.owner) {
        want.push(meta.owner.clone());
    }
    let missing: Vec<String> = want
        .iter()
        .filter(|m| !have.iter().any(|(h, r)| h == *m && r == role_of(m)))
        .cloned()
        .collect();
    let extra: Vec<String> = have
        .iter()
        .filter(|(h, _)| !want.contains(h))
        .map(|(h, _)| h.clone())
        .collect();
    if missing.is_empty() && extra.is_empty() {
        Finding::InStep
    } else {
        Finding::Differs { missing, extra }
    }
}

fn clouds_of(target: &im_shared::store::dynamo::MirrorTarget) -> Vec<CloudId> {
    let mut out = Vec::new();
    if target.leancloud.is_some() {
        out.push(CloudId::LeanCloud);
    }
    if target.tencent.is_some() {
        out.push(CloudId::Tencent);
    }
    out
}
