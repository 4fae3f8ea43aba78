//! `im-admin export`: every live group of an app, one JSON line each
//! (`model::export::GroupLine`, `docs/export.schema.json`), in group-id order, streaming
//! (16 groups read at a time, none held longer than it takes to write its line).

use std::io::Write;

use anyhow::Result;
use futures::StreamExt;
use im_shared::model::export::{GroupLine, LEANCLOUD, SCHEMA_VERSION};
use im_shared::store::DynamoStore;

/// Writes the app's groups to `out`; answers how many.
pub async fn export(store: &DynamoStore, app: &str, out: &mut dyn Write) -> Result<u64> {
    let mut written = 0;
    // The ids only (8 bytes a group), so that the lines come in one order whatever the
    // table's scan order: the same groups give the same bytes. Groups are read 16 at a
    // time, and written in id order.
    let ids = store.app_group_ids(app).await?;
    let mut lines = futures::stream::iter(ids)
        .map(|id| line(store, app, id))
        .buffered(16);
    while let Some(line) = lines.next().await {
        // Deleted between the scan and this read: not in the export.
        let Some(line) = line? else { continue };
        serde_json::to_writer(&mut *out, &line)?;
        out.write_all(b"\n")?;
        written += 1;
    }
    out.flush()?;
    Ok(written)
}

/// The line of group `id`, if it is still a live group of the app.
async fn line(store: &DynamoStore, app: &str, id: u64) -> Result<Option<GroupLine>> {
    let Some(meta) = store
        .group_meta(id)
        .await?
        .filter(|m| m.live && m.app_id == app)
    else {
        return Ok(None);
    };
    let members = store.group_members(id).await?;
    Ok(Some(GroupLine {
        schema_version: SCHEMA_VERSION,
        group_id: meta.group_id,
        name: meta.group_name,
        owner: meta.owner,
        admins: meta.admins.into_iter().collect(),
        members,
        max_members: meta.max_members,
        avatar_url: meta.avatar_url,
        description: meta.description,
        conversations: meta
            .conversation_id
            .map(|c| (LEANCLOUD.to_owned(), c))
            .into_iter()
            .collect(),
        created_at: meta.created_at,
        updated_at: meta.updated_at,
    }))
}
