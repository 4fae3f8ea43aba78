//! `im-admin sync reconcile`: compares each group's members with its conversation's and
//! reports, or repairs, every difference, whatever made it (a change behind the
//! service's back, a record that went to the dead-letter queue, a group marked failed).

use std::fmt;

use im_shared::model::SyncStatus;
use im_shared::store::dynamo::MirrorLink;
use im_shared::store::StoreError;

use crate::mirror::new_marker;
use crate::vendor::{AppApi, Refusal, VendorError};
use crate::Syncer;

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("app {0} has no IM cloud settings (im-admin app im-cloud set)")]
    NoSettings(String),
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
    pub group_id: u64,
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
        if let Some(c) = &self.conversation {
            write!(f, " (conversation {c})")?;
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
    /// Reconciles one group of `app_id`, or all of its live groups.
    pub async fn reconcile(
        &self,
        app_id: &str,
        group: Option<u64>,
        fix: bool,
    ) -> Result<Vec<GroupReport>, ReconcileError> {
        let (cloud, key) = self
            .store()
            .mirror_target(app_id)
            .await?
            .ok_or_else(|| ReconcileError::NoSettings(app_id.to_owned()))?;
        let api = self.vendor().app(cloud.server(), app_id, &key);
        let ids = match group {
            Some(id) => vec![id],
            None => self.store().app_group_ids(app_id).await?,
        };
        let mut reports = Vec::with_capacity(ids.len());
        for id in ids {
            reports.push(self.reconcile_group(&api, app_id, id, fix).await?);
        }
        Ok(reports)
    }

    async fn reconcile_group(
        &self,
        api: &AppApi<'_>,
        app_id: &str,
        group_id: u64,
        fix: bool,
    ) -> Result<GroupReport, ReconcileError> {
        let store = self.store();
        let cursor = store.sync_cursor(group_id).await?;
        let failed = cursor
            .as_ref()
            .filter(|c| c.report.status == SyncStatus::Failed)
            .map(|c| c.report.error.clone().unwrap_or_default());
        let hold = cursor.and_then(|c| c.held.filter(|h| c.seq < h.seq));
        let held = hold.as_ref().map(|h| {
            format!(
                "stream record {} ({})",
                h.seq.trim_start_matches('0'),
                h.why
            )
        });
        let mut report = GroupReport {
            group_id,
            conversation: None,
            finding: Finding::InStep,
            failed,
            held,
            fixed: None,
            refused: Vec::new(),
        };
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
                    .clear_sync_failure(group_id, hold.as_ref().map(|h| h.seq.as_str()))
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
