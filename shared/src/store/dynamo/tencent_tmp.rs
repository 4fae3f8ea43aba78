//! Temporary: the Tencent settings reader, until the settings branch merges.
use super::layout::*;
use super::DynamoStore;
use crate::model::{OnDelete, Secret, TencentCloud, TencentGroupType, TencentSpec};
use crate::store::StoreError;

impl DynamoStore {
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
}
