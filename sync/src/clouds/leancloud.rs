//! LeanCloud (REST API 1.2): each group is a conversation of the app, whose id the vendor
//! picks. The service owns a conversation once the group's link to it is written: one it
//! made is found again by the creation marker it wrote before the create, never by
//! attributes a client can set; only the linked conversation is ever changed or deleted.

use async_trait::async_trait;
use im_shared::model::{CloudId, GroupMeta, ImCloud, OnDelete, Secret};
use im_shared::store::dynamo::MirrorLink;

use super::{Provider, RunState, StepError};
use crate::message;
use crate::mirror::new_marker;
use crate::pacing::Pacers;
use crate::records::{self, Change, GroupImage, Record};
use crate::vendor::{AppApi, Vendor, VendorError};

pub struct LeanCloud<'a> {
    api: AppApi<'a>,
    pacers: &'a Pacers,
    app_id: &'a str,
    settings: &'a ImCloud,
    /// The group's conversation now.
    conversation: Option<String>,
}

impl<'a> LeanCloud<'a> {
    pub fn new(
        vendor: &'a Vendor,
        pacers: &'a Pacers,
        settings: &'a ImCloud,
        key: &'a Secret,
        app_id: &'a str,
    ) -> Self {
        Self {
            api: vendor.app(settings.server(), app_id, key),
            pacers,
            app_id,
            settings,
            conversation: None,
        }
    }

    /// Gives a live group without a conversation one: an earlier try's (found by the
    /// marker this service wrote before that try's create), or a new one, with the
    /// group's members as they are now; then links it. A conversation is changed (its
    /// members set) only once its link to this group is written.
    async fn make_conversation(
        &mut self,
        run: &mut RunState<'_>,
        name: &str,
    ) -> Result<(), StepError> {
        let marker = run
            .store
            .creation_marker(run.group_id, &new_marker())
            .await?;
        let members = run.store.group_members(run.group_id).await?;
        let (id, made) = self
            .api
            .ensure_group_conversation(run.group_id, &marker, name, &members)
            .await?;
        match run
            .store
            .link_mirrored(run.app_id, run.group_id, &id)
            .await?
        {
            MirrorLink::Linked => {
                if !made {
                    // An earlier try's, linked now: its members are as they were then.
                    let repair = self.api.set_members(&id, &members).await?;
                    run.note_refused(CloudId::LeanCloud, &repair.refused);
                }
                self.conversation = Some(id);
                run.rebuilt = true;
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
                run.live = false;
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
}

#[async_trait]
impl Provider for LeanCloud<'_> {
    fn cloud(&self) -> CloudId {
        CloudId::LeanCloud
    }

    async fn prepare(
        &mut self,
        run: &mut RunState<'_>,
        now: Option<&GroupMeta>,
        pending: &[&Record],
    ) -> Result<(), StepError> {
        self.conversation = match now {
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
        // A group the import brought in is in LeanCloud already: never made again.
        let imported = pending.iter().any(|r| match &r.change {
            Change::Group { old, new } => records::imports(old.as_deref(), new.as_deref()),
            Change::Member { .. } => false,
        });
        if let (true, None, Some(group), false) = (run.live, &self.conversation, now, imported) {
            self.make_conversation(run, &group.group_name).await?;
        }
        Ok(())
    }

    async fn members(
        &mut self,
        run: &mut RunState<'_>,
        ids: &[String],
        joined: bool,
    ) -> Result<(), StepError> {
        if let Some(conversation) = self.conversation.clone() {
            let refused = self.api.change_members(&conversation, ids, joined).await?;
            run.note_refused(CloudId::LeanCloud, &refused);
        }
        Ok(())
    }

    async fn group(
        &mut self,
        run: &mut RunState<'_>,
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
            if moved && run.live && !run.rebuilt && n.conversation_id == self.conversation {
                let members = run.store.group_members(run.group_id).await?;
                if let Some(c) = self.conversation.clone() {
                    let refused = self.api.change_members(&c, &members, true).await?;
                    run.note_refused(CloudId::LeanCloud, &refused);
                }
            }
            if n.live() && n.group_name != o.group_name && run.live {
                if let Some(c) = &self.conversation {
                    self.api.rename(c, &n.group_name).await?;
                }
            }
        }
        let mut posted = false;
        if let (true, Some(change), Some(conversation), Some(from)) = (
            self.settings.system_messages(),
            super::new_change(old, new),
            &then,
            self.settings.system_client(),
        ) {
            let name = new.map(|g| g.group_name.as_str()).unwrap_or_default();
            let text = message::for_change(run.group_id, name, change);
            // The vendor's quota counts messages: keep under the app's, and past it
            // defer rather than wait (or be refused with a 429 for a minute).
            let per_minute = self.settings.messages_per_minute();
            self.pacers
                .message_slot(self.app_id, per_minute)
                .await
                .map_err(|wait| VendorError::RateLimited {
                    what: format!("the app's {per_minute} system messages a minute are used up"),
                    retry_after: wait,
                })?;
            self.api.send_message(conversation, from, &text).await?;
            posted = true;
        }
        if super::dismissal(old, new) && self.settings.on_delete() == OnDelete::Delete {
            // Only the conversation the group had: never one found by its attributes,
            // which any client can set.
            if let Some(c) = &then {
                self.api.delete_conversation(c).await?;
            }
        }
        Ok(posted)
    }
}
