//! Tencent Cloud IM: each group is a Tencent group whose id the mirror derives from ours
//! (the app's prefix, then the decimal id), so clients know one id and a retried create
//! is idempotent: 10025 means an earlier try of ours made it (go on and set its members),
//! 10021 that someone else owns the id (the group fails in this cloud with that reason,
//! and nothing of theirs is touched). The mirror acts on a Tencent group only once its
//! own create (or that 10025) recorded the id in the group's `SYNC#tencent` item.
//!
//! Accounts are imported before they own or join; members go in the chunks the API takes
//! (100 on create, 300 per add, 100 per removal), removals first; names over 30 bytes are
//! cut on a character boundary, and the sync state says so.

pub mod api;

use std::collections::BTreeSet;

use async_trait::async_trait;
use im_shared::model::{CloudId, GroupMeta, OnDelete, Secret, TencentCloud, TencentGroupType};
use serde_json::{json, Value};

use super::{Provider, RunState, StepError};
use crate::message;
use crate::pacing::Pacers;
use crate::records::{self, GroupImage, Record};
use crate::vendor::{Refusal, Vendor, VendorError};
use api::{cut_name, TencentApi, CREATE_MEMBERS_PER_CALL, GROUP_ID_OURS, GROUP_ID_TAKEN};

/// The longest group name Tencent takes, in UTF-8 bytes.
pub const MAX_NAME_BYTES: usize = 30;

pub struct Tencent<'a> {
    api: TencentApi<'a>,
    settings: &'a TencentCloud,
}

impl<'a> Tencent<'a> {
    pub fn new(
        vendor: &'a Vendor,
        pacers: &'a Pacers,
        settings: &'a TencentCloud,
        key: &'a Secret,
        app_id: &str,
    ) -> Self {
        let pacer = pacers.for_app(CloudId::Tencent, app_id, settings.max_calls_per_second());
        Self {
            api: TencentApi::new(vendor, settings, key, pacer),
            settings,
        }
    }

    pub fn api(&self) -> &TencentApi<'a> {
        &self.api
    }

    /// The name as Tencent takes it, noting a cut in the run's sync state.
    fn name_for(run: &mut RunState<'_>, name: &str) -> String {
        let cut = cut_name(name, MAX_NAME_BYTES);
        if cut.len() < name.len() {
            run.note = Some(format!(
                "the name is cut to {MAX_NAME_BYTES} bytes in Tencent Cloud IM: {cut:?}"
            ));
        }
        cut.to_owned()
    }

    /// Makes the group in Tencent with its owner, admins and members as they are now, or
    /// takes over the one an earlier try made (10025) and sets its members; answers its
    /// id. 10021 (someone else's) is a refusal: nothing of theirs is changed.
    pub async fn create(
        &self,
        run: &mut RunState<'_>,
        meta: &GroupMeta,
        members: &[String],
    ) -> Result<String, StepError> {
        let gid = self.settings.group_id(run.group_id);
        let mut everyone: Vec<String> = members.to_vec();
        if !everyone.contains(&meta.owner) {
            everyone.push(meta.owner.clone());
        }
        let refused = self.api.import_accounts(&everyone).await?;
        if refused.iter().any(|r| r.client_id == meta.owner) {
            return Err(refusal(format!(
                "Tencent Cloud IM could not import the owner {}",
                meta.owner
            )));
        }
        run.note_refused(CloudId::Tencent, &refused);
        let refused_ids: BTreeSet<&str> = refused.iter().map(|r| r.client_id.as_str()).collect();
        let joining: Vec<String> = members
            .iter()
            .filter(|m| **m != meta.owner && !refused_ids.contains(m.as_str()))
            .cloned()
            .collect();
        let (first, rest) = joining.split_at(joining.len().min(CREATE_MEMBERS_PER_CALL));
        let member_list: Vec<Value> = first
            .iter()
            .map(|m| {
                if meta.admins.contains(m) {
                    json!({ "Member_Account": m, "Role": "Admin" })
                } else {
                    json!({ "Member_Account": m })
                }
            })
            .collect();
        let mut body = json!({
            "Type": self.settings.group_type().as_str(),
            "GroupId": gid,
            "Name": Self::name_for(run, &meta.group_name),
            "Owner_Account": meta.owner,
            "MemberList": member_list,
        });
        if self.settings.group_type() == TencentGroupType::Public {
            // Joining goes through this service (its rules, its member limit): nobody
            // applies to Tencent directly.
            body["ApplyJoinOption"] = json!("DisableApply");
        }
        match self.api.call("group_open_http_svc/create_group", &body).await {
            Ok(_) => {
                if !rest.is_empty() {
                    let refused = self.api.add_members(&gid, rest).await?;
                    run.note_refused(CloudId::Tencent, &refused);
                }
                for admin in rest.iter().filter(|m| meta.admins.contains(*m)) {
                    self.api.set_role(&gid, admin, true).await?;
                }
            }
            Err(VendorError::Refused {
                code: Some(GROUP_ID_OURS),
                ..
            }) => {
                // An earlier try's (its answer was lost): its members are as they were.
                run.store.set_remote_id(run.group_id, CloudId::Tencent, &gid).await?;
                self.repair(run, &gid, meta, members).await?;
                return Ok(gid);
            }
            Err(VendorError::Refused {
                code: Some(GROUP_ID_TAKEN),
                ..
            }) => {
                return Err(refusal(format!(
                    "the Tencent group id {gid} is used by someone else (10021); set a group id prefix for the app"
                )))
            }
            Err(e) => return Err(e.into()),
        }
        run.store
            .set_remote_id(run.group_id, CloudId::Tencent, &gid)
            .await?;
        Ok(gid)
    }

    /// Makes the Tencent group's members, owner and admins those of `meta` and `members`:
    /// removals first (nobody keeps access the group took away), then the missing
    /// (imported first), the owner, the roles. Answers the ids Tencent refused.
    pub async fn repair(
        &self,
        run: &mut RunState<'_>,
        gid: &str,
        meta: &GroupMeta,
        members: &[String],
    ) -> Result<Vec<Refusal>, StepError> {
        let Some(have) = self.api.members(gid).await? else {
            return Err(refusal(format!("the Tencent group {gid} is gone")));
        };
        let have_ids: BTreeSet<&str> = have.iter().map(|(m, _)| m.as_str()).collect();
        let want: BTreeSet<&str> = members
            .iter()
            .map(String::as_str)
            .chain([meta.owner.as_str()])
            .collect();
        let extra: Vec<String> = have
            .iter()
            .filter(|(m, role)| !want.contains(m.as_str()) && role != "Owner")
            .map(|(m, _)| m.clone())
            .collect();
        if !extra.is_empty() {
            self.api.remove_members(gid, &extra).await?;
        }
        let missing: Vec<String> = want
            .iter()
            .filter(|m| !have_ids.contains(*m))
            .map(|m| (*m).to_owned())
            .collect();
        let mut refused = Vec::new();
        if !missing.is_empty() {
            refused.extend(self.api.import_accounts(&missing).await?);
            let ok: Vec<String> = missing
                .into_iter()
                .filter(|m| !refused.iter().any(|r| r.client_id == *m))
                .collect();
            refused.extend(self.api.add_members(gid, &ok).await?);
        }
        let owner_now = have.iter().find(|(_, r)| r == "Owner").map(|(m, _)| m);
        if owner_now != Some(&meta.owner) {
            self.api.change_owner(gid, &meta.owner).await?;
        }
        for (m, role) in &have {
            if !want.contains(m.as_str()) || *m == meta.owner {
                continue;
            }
            let admin = meta.admins.contains(m);
            if admin != (role == "Admin") {
                self.api.set_role(gid, m, admin).await?;
            }
        }
        for admin in meta
            .admins
            .iter()
            .filter(|a| !have_ids.contains(a.as_str()))
        {
            if *admin != meta.owner && !refused.iter().any(|r| r.client_id == *admin) {
                self.api.set_role(gid, admin, true).await?;
            }
        }
        let name = Self::name_for(run, &meta.group_name);
        self.api.rename(gid, &name).await?;
        run.note_refused(CloudId::Tencent, &refused);
        Ok(refused)
    }
}

/// A refusal of the mirror's own (no vendor answer to pass on).
fn refusal(message: String) -> StepError {
    StepError::Vendor(VendorError::Refused {
        status: 409,
        code: None,
        message,
    })
}

#[async_trait]
impl Provider for Tencent<'_> {
    fn cloud(&self) -> CloudId {
        CloudId::Tencent
    }

    async fn prepare(
        &mut self,
        run: &mut RunState<'_>,
        now: Option<&GroupMeta>,
        _pending: &[&Record],
    ) -> Result<(), StepError> {
        if let (true, None, Some(meta)) = (run.live, &run.remote_id, now) {
            let members = run.store.group_members(run.group_id).await?;
            let gid = self.create(run, meta, &members).await?;
            run.remote_id = Some(gid);
            run.rebuilt = true;
        }
        Ok(())
    }

    async fn members(
        &mut self,
        run: &mut RunState<'_>,
        ids: &[String],
        joined: bool,
    ) -> Result<(), StepError> {
        let Some(gid) = run.remote_id.clone() else {
            return Ok(());
        };
        if joined {
            let mut refused = self.api.import_accounts(ids).await?;
            let ok: Vec<String> = ids
                .iter()
                .filter(|m| !refused.iter().any(|r| r.client_id == **m))
                .cloned()
                .collect();
            refused.extend(self.api.add_members(&gid, &ok).await?);
            run.note_refused(CloudId::Tencent, &refused);
        } else {
            self.api.remove_members(&gid, ids).await?;
        }
        Ok(())
    }

    async fn group(
        &mut self,
        run: &mut RunState<'_>,
        old: Option<&GroupImage>,
        new: Option<&GroupImage>,
    ) -> Result<bool, StepError> {
        let Some(gid) = run.remote_id.clone() else {
            return Ok(false);
        };
        if let (Some(o), Some(n), true) = (old, new, run.live) {
            if n.live() && n.group_name != o.group_name {
                let name = Self::name_for(run, &n.group_name);
                self.api.rename(&gid, &name).await?;
            }
            // A group made in this run has its owner and admins as of now already; the
            // older records' would take it back through states that may no longer hold.
            if n.live() && !run.rebuilt {
                if n.owner != o.owner && !n.owner.is_empty() {
                    let refused = self
                        .api
                        .import_accounts(std::slice::from_ref(&n.owner))
                        .await?;
                    if !refused.is_empty() {
                        return Err(refusal(format!(
                            "Tencent Cloud IM could not import the new owner {}",
                            n.owner
                        )));
                    }
                    self.api.change_owner(&gid, &n.owner).await?;
                }
                let before: BTreeSet<&String> = o.admins.iter().collect();
                let after: BTreeSet<&String> = n.admins.iter().collect();
                for granted in after.difference(&before) {
                    if **granted != n.owner {
                        self.api.set_role(&gid, granted, true).await?;
                    }
                }
                for revoked in before.difference(&after) {
                    // A former admin who is the owner now has the owner's role.
                    if **revoked != n.owner {
                        self.api.set_role(&gid, revoked, false).await?;
                    }
                }
            }
        }
        let mut posted = false;
        // The import's own write is announced nowhere (its group was made in LeanCloud,
        // and in Tencent it is made as it is now, in `prepare`).
        let imported = records::imports(old, new);
        if let (true, Some(change), false) = (
            self.settings.system_messages(),
            super::new_change(old, new),
            imported,
        ) {
            let name = new.map(|g| g.group_name.as_str()).unwrap_or_default();
            let content = message::notification_for_change(run.group_id, name, change);
            self.api.notify(&gid, &content).await?;
            posted = true;
        }
        if super::dismissal(old, new) && self.settings.on_delete() == OnDelete::Delete {
            self.api.destroy(&gid).await?;
        }
        Ok(posted)
    }
}
