//! Apps (master keys) and token-signing secrets: written by the admin command and the
//! local server only (no function may write these items), read by every function.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem, Update};

use super::expr::{Expr, UpdateExpr};
use super::layout::*;
use super::{build_err, is_condition_failure, sdk_err, DynamoStore, TxOutcome};

use crate::model::{
    AppKey, ImCloud, OnDelete, ReservedIds, Secret, TencentCloud, TencentGroupType, TencentKey,
    TencentSpec, TokenKey,
};

/// An app item that exists and was not removed.
const LIVE_APP: &str = "attribute_exists(pk) AND attribute_not_exists(removed_at)";
use crate::store::{KeyStore, StoreError};

impl DynamoStore {
    /// Registers a new app; `AlreadyExists` if the id is taken, `AppRemoved` if an app
    /// that was removed had it (its groups and links are still in the table, and a new
    /// app must not inherit them).
    pub async fn create_app(&self, app_id: &str, master_key: &Secret) -> Result<(), StoreError> {
        let now = now_rfc3339();
        let mut item = key(APP_PK, app_id);
        item.insert("master_key".into(), s(master_key.expose()));
        item.insert("created_at".into(), s(now.clone()));
        item.insert("updated_at".into(), s(now));
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if is_condition_failure(&e) => match self.app_item(app_id, "created_at").await {
                Err(StoreError::NotFound) => Err(StoreError::AppRemoved),
                _ => Err(StoreError::AlreadyExists),
            },
            Err(e) => Err(sdk_err("PutItem(app)", e)),
        }
    }

    /// Replaces an existing app's master key; `NotFound` for an unknown app.
    pub async fn rotate_app(&self, app_id: &str, master_key: &Secret) -> Result<(), StoreError> {
        self.set_on_app(app_id, "master_key", s(master_key.expose()))
            .await
    }

    /// The app item's `attributes` (a projection), read consistently; `NotFound` for an
    /// unknown or removed app. Never the master key unless asked for by name.
    pub(super) async fn app_item(
        &self,
        app_id: &str,
        attributes: &str,
    ) -> Result<Item, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(APP_PK, app_id)))
            .projection_expression(format!("pk, {REMOVED_AT}, {attributes}"))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_err("GetItem(app)", e))?;
        out.item()
            .filter(|item| !item.contains_key(REMOVED_AT))
            .cloned()
            .ok_or(StoreError::NotFound)
    }

    /// Sets one attribute of an existing app item (and `updated_at`); `NotFound` for an
    /// unknown app.
    async fn set_on_app(
        &self,
        app_id: &str,
        attribute: &'static str,
        value: AttributeValue,
    ) -> Result<(), StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(APP_PK, app_id)))
            .update_expression(
                UpdateExpr::new()
                    .set("#a = :v")
                    .set("updated_at = :now")
                    .text(),
            )
            .condition_expression(LIVE_APP)
            .expression_attribute_names("#a", attribute)
            .expression_attribute_values(":v", value)
            .expression_attribute_values(":now", s(now_rfc3339()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if is_condition_failure(&e) => Err(StoreError::NotFound),
            Err(e) => Err(sdk_err("UpdateItem(app)", e)),
        }
    }

    /// Writes an app's settings (`app`, an update of its item) and, in the same
    /// transaction, the client id they reserve in `cloud` (an attribute of the app's
    /// `RESERVED` item: its system client or App admin; `None` removes it). `false` when
    /// `app`'s condition failed.
    async fn set_settings(
        &self,
        app_id: &str,
        app: Update,
        cloud: &'static str,
        reserved: Option<&str>,
    ) -> Result<bool, StoreError> {
        let reserve = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(RESERVED_PK, app_id)))
            .expression_attribute_names("#cloud", cloud);
        let reserve = match reserved {
            Some(id) => reserve
                .update_expression(UpdateExpr::new().set("#cloud = :id").text())
                .expression_attribute_values(":id", s(id)),
            None => reserve.update_expression(UpdateExpr::new().remove("#cloud").text()),
        };
        let items = vec![
            TransactWriteItem::builder().update(app).build(),
            TransactWriteItem::builder()
                .update(reserve.build().map_err(build_err)?)
                .build(),
        ];
        Ok(matches!(self.transact(items).await?, TxOutcome::Done))
    }

    /// Removes an app (its item becomes a tombstone: no key, no settings, `removed_at`,
    /// so the id is never registered again for an app that would inherit the groups and
    /// links left in the table) and, in the same transaction, retires every token secret that
    /// speaks for it: no token of a removed app verifies again (warm functions stop
    /// within `IM_APP_CACHE_SECONDS`, as for `retire`). The app item counts the keys ever
    /// added to it (`token_keys`), and the delete holds only at the count read, so a key
    /// added meanwhile is not left active: the removal reads again and retries.
    pub async fn remove_app(&self, app_id: &str) -> Result<(), StoreError> {
        // DynamoDB takes 100 actions per transaction: the app item and 99 keys. Keys
        // beyond that are retired first, on their own (retiring early is always safe).
        const KEYS_PER_TRANSACTION: usize = 99;
        for _ in 0..8 {
            let item = self.app_item(app_id, "token_keys").await?;
            let count = item.get("token_keys").and_then(|v| v.as_n().ok()).cloned();
            let mut kids: Vec<String> = self
                .query_partition(
                    TOKEN_KEY_PK,
                    "sk, app_id, #status",
                    &[("#status", "status")],
                )
                .await?
                .iter()
                .filter(|i| {
                    i.get("app_id")
                        .and_then(|v| v.as_s().ok())
                        .map(String::as_str)
                        == Some(app_id)
                        && i.get("status")
                            .and_then(|v| v.as_s().ok())
                            .map(String::as_str)
                            == Some(ACTIVE)
                })
                .filter_map(|i| i.get(SK).and_then(|v| v.as_s().ok()).cloned())
                .collect();
            let early = kids.len().saturating_sub(KEYS_PER_TRANSACTION);
            for kid in kids.drain(..early) {
                self.retire_token_key(&kid).await?;
            }
            let unchanged = match &count {
                Some(n) => Expr::new("attribute_exists(pk) AND token_keys = :n")
                    .value(":n", AttributeValue::N(n.clone())),
                None => Expr::new("attribute_exists(pk) AND attribute_not_exists(token_keys)"),
            }
            .and(&format!("attribute_not_exists({REMOVED_AT})"));
            let now = now_rfc3339();
            let update = UpdateExpr::new()
                .set(&format!("{REMOVED_AT} = :now"))
                .set("updated_at = :now")
                .remove("master_key")
                .remove("im_cloud")
                .remove("tencent")
                .remove("tencent_key")
                .remove("tencent_callback_token")
                .value(":now", s(now.as_str()));
            // No names: neither expression has any.
            let (_, values) = update.placeholders_with(&unchanged);
            let tombstone = Update::builder()
                .table_name(&self.table)
                .set_key(Some(key(APP_PK, app_id)))
                .update_expression(update.text())
                .condition_expression(unchanged.text())
                .set_expression_attribute_values(Some(values))
                .build()
                .map_err(build_err)?;
            let mut items = vec![TransactWriteItem::builder().update(tombstone).build()];
            for kid in &kids {
                items.push(self.retire_item(kid, app_id, &now)?);
            }
            match self.transact(items).await? {
                TxOutcome::Done => return Ok(()),
                // A key was added (or the app removed) since the read: read again.
                TxOutcome::Refused(_) => continue,
            }
        }
        Err(StoreError::Contention)
    }

    /// Retires the token secret `kid`, on condition that it is `app_id`'s.
    pub(super) fn retire_item(
        &self,
        kid: &str,
        app_id: &str,
        now: &str,
    ) -> Result<TransactWriteItem, StoreError> {
        let update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(TOKEN_KEY_PK, kid)))
            .update_expression(
                UpdateExpr::new()
                    .set("#status = :retired")
                    .set("retired_at = :now")
                    .text(),
            )
            .condition_expression("app_id = :app")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":retired", s(RETIRED))
            .expression_attribute_values(":now", s(now))
            .expression_attribute_values(":app", s(app_id))
            .build()
            .map_err(build_err)?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    /// Sets an existing app's IM cloud settings (`NotFound` for an unknown app). They are
    /// kept on the app item, beside the master key that is their credential.
    pub async fn set_im_cloud(&self, app_id: &str, settings: &ImCloud) -> Result<(), StoreError> {
        let mut map = HashMap::from([
            ("server".to_owned(), s(settings.server())),
            (
                "mirroring".to_owned(),
                AttributeValue::Bool(settings.mirroring()),
            ),
            (
                "system_messages".to_owned(),
                AttributeValue::Bool(settings.system_messages()),
            ),
            ("on_delete".to_owned(), s(settings.on_delete().as_str())),
            (
                "max_messages_per_minute".to_owned(),
                number(settings.messages_per_minute().into()),
            ),
        ]);
        if let Some(client) = settings.system_client() {
            map.insert("system_client".to_owned(), s(client));
        }
        let app = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(APP_PK, app_id)))
            .update_expression(
                UpdateExpr::new()
                    .set("im_cloud = :m")
                    .set("updated_at = :now")
                    .text(),
            )
            .condition_expression(LIVE_APP)
            .expression_attribute_values(":m", AttributeValue::M(map))
            .expression_attribute_values(":now", s(now_rfc3339()))
            .build()
            .map_err(build_err)?;
        match self
            .set_settings(app_id, app, "leancloud", settings.system_client())
            .await?
        {
            true => Ok(()),
            false => Err(StoreError::NotFound),
        }
    }

    /// An app's IM cloud settings: `NotFound` for an unknown app, `None` when it has none.
    pub async fn im_cloud(&self, app_id: &str) -> Result<Option<ImCloud>, StoreError> {
        let item = self.app_item(app_id, "im_cloud").await?;
        Self::im_cloud_from(app_id, &item)
    }

    /// The `im_cloud` settings of an app item, if it has them.
    pub(super) fn im_cloud_from(app_id: &str, item: &Item) -> Result<Option<ImCloud>, StoreError> {
        let Some(map) = item.get("im_cloud").and_then(|v| v.as_m().ok()) else {
            return Ok(None);
        };
        let text = |k: &str| map.get(k).and_then(|v| v.as_s().ok()).cloned();
        let flag = |k: &str| map.get(k).and_then(|v| v.as_bool().ok()).copied();
        let corrupt = |why: String| StoreError::Backend(format!("app {app_id} im_cloud: {why}"));
        let on_delete = OnDelete::parse(&text("on_delete").unwrap_or_default())
            .map_err(|e| corrupt(e.to_string()))?;
        ImCloud::new(
            &text("server").unwrap_or_default(),
            flag("mirroring").unwrap_or_default(),
            flag("system_messages").unwrap_or_default(),
            text("system_client"),
            on_delete,
        )
        .and_then(|cloud| {
            // Settings written before the quota existed have the default.
            match map
                .get("max_messages_per_minute")
                .and_then(|v| v.as_n().ok())
                .and_then(|v| v.parse::<u32>().ok())
            {
                Some(per_minute) => cloud.with_messages_per_minute(per_minute),
                None => Ok(cloud),
            }
        })
        .map(Some)
        .map_err(|e| corrupt(e.to_string()))
    }

    /// Sets an existing app's Tencent Cloud IM settings (`NotFound` for an unknown app)
    /// and, with `key`, its secret key. The first set needs the key (`KeyNeeded`
    /// otherwise); a later one without it keeps the stored key. The key is its own
    /// attribute, like the master key, so that no read of the settings carries it.
    pub async fn set_tencent(
        &self,
        app_id: &str,
        settings: &TencentCloud,
        secret_key: Option<&Secret>,
    ) -> Result<(), StoreError> {
        let n = |v: u64| AttributeValue::N(v.to_string());
        let map = HashMap::from([
            ("server".to_owned(), s(settings.server())),
            ("sdk_app_id".to_owned(), n(settings.sdk_app_id())),
            (
                "admin_identifier".to_owned(),
                s(settings.admin_identifier()),
            ),
            ("group_type".to_owned(), s(settings.group_type().as_str())),
            (
                "mirroring".to_owned(),
                AttributeValue::Bool(settings.mirroring()),
            ),
            (
                "system_messages".to_owned(),
                AttributeValue::Bool(settings.system_messages()),
            ),
            ("on_delete".to_owned(), s(settings.on_delete().as_str())),
            (
                "max_calls_per_second".to_owned(),
                n(settings.max_calls_per_second().into()),
            ),
            ("usersig_expire".to_owned(), n(settings.usersig_expire())),
            ("group_id_prefix".to_owned(), s(settings.group_id_prefix())),
            (
                "client_creates".to_owned(),
                AttributeValue::Bool(settings.client_creates()),
            ),
        ]);
        let update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(APP_PK, app_id)))
            .expression_attribute_values(":m", AttributeValue::M(map))
            .expression_attribute_values(":now", s(now_rfc3339()));
        let update = match secret_key {
            Some(secret) => update
                .update_expression(
                    UpdateExpr::new()
                        .set("tencent = :m")
                        .set("tencent_key = :k")
                        .set("updated_at = :now")
                        .text(),
                )
                .condition_expression(LIVE_APP)
                .expression_attribute_values(":k", s(secret.expose())),
            // Without a key, only an app that has one already.
            None => update
                .update_expression(
                    UpdateExpr::new()
                        .set("tencent = :m")
                        .set("updated_at = :now")
                        .text(),
                )
                .condition_expression(format!("{LIVE_APP} AND attribute_exists(tencent_key)")),
        };
        let app = update.build().map_err(build_err)?;
        let admin = Some(settings.admin_identifier());
        match self.set_settings(app_id, app, "tencent", admin).await? {
            true => Ok(()),
            false => match self.app_item(app_id, "pk").await {
                Ok(_) => Err(StoreError::KeyNeeded),
                Err(other) => Err(other),
            },
        }
    }

    /// Sets the token Tencent's callback authentication signs with
    /// (`crate::model::tencent_callback`), for an app with Tencent settings (`KeyNeeded`
    /// for an app without them, `NotFound` for no app). Its own attribute, like the
    /// secret key, so that no read of the settings carries it.
    pub async fn set_tencent_callback_token(
        &self,
        app_id: &str,
        token: &Secret,
    ) -> Result<(), StoreError> {
        let update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(APP_PK, app_id)))
            .update_expression(
                UpdateExpr::new()
                    .set("tencent_callback_token = :t")
                    .set("updated_at = :now")
                    .text(),
            )
            .condition_expression(format!("{LIVE_APP} AND attribute_exists(tencent)"))
            .expression_attribute_values(":t", s(token.expose()))
            .expression_attribute_values(":now", s(now_rfc3339()))
            .build()
            .map_err(build_err)?;
        let items = vec![TransactWriteItem::builder().update(update).build()];
        match self.transact(items).await? {
            TxOutcome::Done => Ok(()),
            TxOutcome::Refused(_) => match self.app_item(app_id, "pk").await {
                Ok(_) => Err(StoreError::KeyNeeded),
                Err(other) => Err(other),
            },
        }
    }

    /// An app's Tencent Cloud IM settings: `NotFound` for an unknown app, `None` when it
    /// has none. Never the key.
    pub async fn tencent_cloud(&self, app_id: &str) -> Result<Option<TencentCloud>, StoreError> {
        let item = self.app_item(app_id, "tencent").await?;
        Self::tencent_from(app_id, &item)
    }

    /// The `tencent` settings of an app item, if it has them.
    pub(super) fn tencent_from(
        app_id: &str,
        item: &Item,
    ) -> Result<Option<TencentCloud>, StoreError> {
        let Some(map) = item.get("tencent").and_then(|v| v.as_m().ok()) else {
            return Ok(None);
        };
        let corrupt = |why: String| StoreError::Backend(format!("app {app_id} tencent: {why}"));
        let text = |k: &str| map.get(k).and_then(|v| v.as_s().ok()).cloned();
        let flag = |k: &str| map.get(k).and_then(|v| v.as_bool().ok()).copied();
        let number = |k: &str| {
            map.get(k)
                .and_then(|v| v.as_n().ok())
                .and_then(|n| n.parse::<u64>().ok())
                .ok_or_else(|| corrupt(format!("{k} is not a number")))
        };
        let mut spec = TencentSpec::new(
            &text("server").unwrap_or_default(),
            number("sdk_app_id")?,
            &text("admin_identifier").unwrap_or_default(),
        );
        spec.group_type = TencentGroupType::parse(&text("group_type").unwrap_or_default())
            .map_err(|e| corrupt(e.to_string()))?;
        spec.mirroring = flag("mirroring").unwrap_or_default();
        spec.system_messages = flag("system_messages").unwrap_or_default();
        spec.on_delete = OnDelete::parse(&text("on_delete").unwrap_or_default())
            .map_err(|e| corrupt(e.to_string()))?;
        spec.max_calls_per_second = u32::try_from(number("max_calls_per_second")?)
            .map_err(|_| corrupt("max_calls_per_second is out of range".into()))?;
        spec.usersig_expire = number("usersig_expire")?;
        spec.group_id_prefix = text("group_id_prefix").unwrap_or_default();
        // Settings written before the setting existed: off, the safe reading.
        spec.client_creates = flag("client_creates").unwrap_or_default();
        TencentCloud::new(spec)
            .map(Some)
            .map_err(|e| corrupt(e.to_string()))
    }

    /// The Tencent secret key an app item holds, if it has one.
    pub(super) fn tencent_key_from(item: &Item) -> Option<Secret> {
        item.get("tencent_key")
            .and_then(|v| v.as_s().ok())
            .map(|k| Secret::new(k.as_str()))
    }

    /// App ids only (not removed ones): keys never leave the table through this.
    pub async fn list_apps(&self) -> Result<Vec<String>, StoreError> {
        Ok(self
            .query_partition(APP_PK, &format!("sk, {REMOVED_AT}"), &[])
            .await?
            .into_iter()
            .filter(|item| !item.contains_key(REMOVED_AT))
            .filter_map(|item| item.get(SK).and_then(|v| v.as_s().ok()).cloned())
            .collect())
    }

    pub(super) async fn query_partition(
        &self,
        pk: &str,
        projection: &str,
        names: &[(&str, &str)],
    ) -> Result<Vec<Item>, StoreError> {
        let mut query = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s(pk))
            .projection_expression(projection);
        for (placeholder, name) in names {
            query = query.expression_attribute_names(*placeholder, *name);
        }
        super::query_items("Query", query, usize::MAX).await
    }

    /// Adds a token-signing secret for an existing app. `NotFound` for an unknown app,
    /// `AlreadyExists` for a key id in use (key ids are never reused, even retired ones).
    pub async fn create_token_key(
        &self,
        kid: &str,
        app_id: &str,
        secret: &Secret,
    ) -> Result<(), StoreError> {
        self.put_token_key(kid, app_id, secret, true).await
    }

    /// Sets `kid` to `secret` for `app_id`, whatever it was: for the development setup of
    /// the local server only (operators use `create_token_key`, whose ids are never reused).
    pub async fn upsert_token_key(
        &self,
        kid: &str,
        app_id: &str,
        secret: &Secret,
    ) -> Result<(), StoreError> {
        self.put_token_key(kid, app_id, secret, false).await
    }

    pub(super) async fn put_token_key(
        &self,
        kid: &str,
        app_id: &str,
        secret: &Secret,
        only_new: bool,
    ) -> Result<(), StoreError> {
        let mut item = key(TOKEN_KEY_PK, kid);
        item.insert("app_id".into(), s(app_id));
        item.insert("secret".into(), s(secret.expose()));
        item.insert("status".into(), s(ACTIVE));
        item.insert("created_at".into(), s(now_rfc3339()));
        // Counted on the app item, in the same transaction: `remove_app` holds its delete
        // at the count it read, so no key can be added unseen while an app is removed.
        let app_exists = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(APP_PK, app_id)))
            .update_expression(UpdateExpr::new().add("token_keys :one").text())
            .condition_expression("attribute_exists(pk) AND attribute_not_exists(removed_at)")
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .build()
            .map_err(build_err)?;
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .set_condition_expression(only_new.then(|| "attribute_not_exists(pk)".to_owned()))
            .build()
            .map_err(build_err)?;
        let items = vec![
            TransactWriteItem::builder().update(app_exists).build(),
            TransactWriteItem::builder().put(put).build(),
        ];
        match self.transact(items).await? {
            TxOutcome::Done => Ok(()),
            TxOutcome::Refused(r) if r.iter().any(|(i, _)| *i == 0) => Err(StoreError::NotFound),
            TxOutcome::Refused(_) => Err(StoreError::AlreadyExists),
        }
    }

    /// Stops a token secret from verifying anything; the id stays taken.
    pub async fn retire_token_key(&self, kid: &str) -> Result<(), StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(TOKEN_KEY_PK, kid)))
            .update_expression(
                UpdateExpr::new()
                    .set("#status = :retired")
                    .set("retired_at = :now")
                    .text(),
            )
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":retired", s(RETIRED))
            .expression_attribute_values(":now", s(now_rfc3339()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if is_condition_failure(&e) => Err(StoreError::NotFound),
            Err(e) => Err(sdk_err("UpdateItem(token key)", e)),
        }
    }

    /// `(kid, app_id, status)` of every token secret; never the secrets.
    pub async fn list_token_keys(&self) -> Result<Vec<(String, String, String)>, StoreError> {
        let text = |item: &Item, k: &str| {
            item.get(k)
                .and_then(|v| v.as_s().ok())
                .cloned()
                .unwrap_or_default()
        };
        Ok(self
            .query_partition(
                TOKEN_KEY_PK,
                "sk, app_id, #status",
                &[("#status", "status")],
            )
            .await?
            .iter()
            .map(|item| (text(item, SK), text(item, "app_id"), text(item, "status")))
            .collect())
    }
}

#[async_trait]
impl KeyStore for DynamoStore {
    async fn reserved_ids(&self, app_id: &str) -> Result<ReservedIds, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(RESERVED_PK, app_id)))
            .send()
            .await
            .map_err(|e| sdk_err("GetItem(reserved)", e))?;
        let ids = out.item().into_iter().flat_map(|item| {
            ["leancloud", "tencent"]
                .into_iter()
                .filter_map(|cloud| item.get(cloud).and_then(|v| v.as_s().ok()).cloned())
        });
        Ok(ReservedIds::new(ids))
    }

    async fn master_key(&self, app_id: &str) -> Result<Option<AppKey>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(APP_PK, app_id)))
            .projection_expression("master_key, im_cloud.system_client")
            .send()
            .await
            .map_err(|e| sdk_err("GetItem(app)", e))?;
        Ok(out.item().and_then(master_key_of))
    }

    async fn tencent_key(&self, app_id: &str) -> Result<Option<TencentKey>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(APP_PK, app_id)))
            .projection_expression("tencent, tencent_key, tencent_callback_token")
            .send()
            .await
            .map_err(|e| sdk_err("GetItem(app)", e))?;
        let Some(item) = out.item() else {
            return Ok(None);
        };
        let settings = Self::tencent_from(app_id, item)?;
        let callback_token = item
            .get("tencent_callback_token")
            .and_then(|v| v.as_s().ok())
            .map(|t| Secret::new(t.as_str()));
        Ok(settings
            .zip(Self::tencent_key_from(item))
            .map(|(settings, key)| TencentKey {
                settings,
                key,
                callback_token,
            }))
    }

    async fn token_key(&self, kid: &str) -> Result<Option<TokenKey>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(TOKEN_KEY_PK, kid)))
            .send()
            .await
            .map_err(|e| sdk_err("GetItem(token key)", e))?;
        Ok(out.item().and_then(token_key_of))
    }

    async fn token_and_master_key(
        &self,
        kid: &str,
        app_id: &str,
    ) -> Result<(Option<TokenKey>, Option<AppKey>), StoreError> {
        let items = self
            .batch_get(vec![key(TOKEN_KEY_PK, kid), key(APP_PK, app_id)])
            .await?;
        let in_partition = |pk: &str| {
            items
                .iter()
                .find(|i| i.get(PK).and_then(|v| v.as_s().ok()).map(String::as_str) == Some(pk))
        };
        Ok((
            in_partition(TOKEN_KEY_PK).and_then(token_key_of),
            in_partition(APP_PK).and_then(master_key_of),
        ))
    }
}

/// The master key an app item holds, with its IM cloud's system client.
fn master_key_of(item: &Item) -> Option<AppKey> {
    let master = item
        .get("master_key")
        .and_then(|v| v.as_s().ok())
        .map(|k| Secret::new(k.as_str()))?;
    let system_client = item
        .get("im_cloud")
        .and_then(|v| v.as_m().ok())
        .and_then(|m| m.get("system_client"))
        .and_then(|v| v.as_s().ok())
        .cloned();
    Some(AppKey {
        master,
        system_client,
    })
}

/// The secret a token key item holds, while it is active.
fn token_key_of(item: &Item) -> Option<TokenKey> {
    let text = |k: &str| item.get(k).and_then(|v| v.as_s().ok());
    if text("status").map(String::as_str) != Some(ACTIVE) {
        return None;
    }
    match (text("app_id"), text("secret")) {
        (Some(app_id), Some(secret)) => Some(TokenKey {
            app_id: app_id.clone(),
            secret: Secret::new(secret.as_str()),
        }),
        _ => None,
    }
}
