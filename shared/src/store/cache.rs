//! Master keys by app id and token secrets by key id, cached in the warm function so that
//! an app or key seen in the last minute costs no DynamoDB call.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mini_moka::sync::Cache;

use super::{KeyStore, StoreError};
use crate::model::{Secret, TokenKey};

/// Bounded so that a flood of random ids cannot grow memory without limit.
const MAX_CACHED: u64 = 10_000;

/// Misses are cached too, so that probing random ids costs DynamoDB at most one read per
/// id per few seconds; briefly, so that a newly registered app or key works at once.
const MISS_TTL: Duration = Duration::from_secs(5);

type Ttl<V> = Cache<String, (Option<V>, Instant)>;

fn ttl_cache<V: Clone + Send + Sync + 'static>(ttl: Duration) -> Ttl<V> {
    Cache::builder()
        .max_capacity(MAX_CACHED)
        .time_to_live(ttl)
        .build()
}

async fn cached<V, F>(cache: &Ttl<V>, id: &str, load: F) -> Result<Option<V>, StoreError>
where
    V: Clone + Send + Sync + 'static,
    F: std::future::Future<Output = Result<Option<V>, StoreError>>,
{
    if let Some((hit, at)) = cache.get(&id.to_owned()) {
        if hit.is_some() || at.elapsed() < MISS_TTL {
            return Ok(hit);
        }
    }
    let found = load.await?;
    cache.insert(id.to_owned(), (found.clone(), Instant::now()));
    Ok(found)
}

#[derive(Clone)]
pub struct Keys {
    store: Arc<dyn KeyStore>,
    master: Ttl<Secret>,
    tokens: Ttl<TokenKey>,
}

impl Keys {
    pub fn new(store: Arc<dyn KeyStore>, ttl: Duration) -> Self {
        Self {
            store,
            master: ttl_cache(ttl),
            tokens: ttl_cache(ttl),
        }
    }

    /// The app's master key, if the app exists.
    pub async fn master_key(&self, app_id: &str) -> Result<Option<Secret>, StoreError> {
        cached(&self.master, app_id, self.store.master_key(app_id)).await
    }

    /// The active token secret named `kid`, if there is one.
    pub async fn token_key(&self, kid: &str) -> Result<Option<TokenKey>, StoreError> {
        cached(&self.tokens, kid, self.store.token_key(kid)).await
    }
}
