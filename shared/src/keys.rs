//! Master keys by app id, cached in the warm function so that signing an app seen in
//! the last minute costs no DynamoDB call.

use std::sync::Arc;
use std::time::Duration;

use mini_moka::sync::Cache;

use crate::error::ApiError;
use crate::secret::Secret;
use crate::store::Store;

/// Bounded so that a flood of random app ids cannot grow memory without limit.
const MAX_CACHED_APPS: u64 = 10_000;

#[derive(Clone)]
pub struct MasterKeys {
    store: Arc<dyn Store>,
    // Unknown apps are cached too (as `None`), so that probing random ids costs
    // DynamoDB at most one read per id per TTL.
    cache: Cache<String, Option<Secret>>,
}

impl MasterKeys {
    pub fn new(store: Arc<dyn Store>, ttl: Duration) -> Self {
        Self {
            store,
            cache: Cache::builder()
                .max_capacity(MAX_CACHED_APPS)
                .time_to_live(ttl)
                .build(),
        }
    }

    /// The app's master key; 404 for an unknown app.
    pub async fn get(&self, app_id: &str) -> Result<Secret, ApiError> {
        let cached = match self.cache.get(&app_id.to_owned()) {
            Some(hit) => hit,
            None => {
                let found = self.store.master_key(app_id).await?;
                self.cache.insert(app_id.to_owned(), found.clone());
                found
            }
        };
        cached.ok_or(ApiError::NotFound("app"))
    }
}
