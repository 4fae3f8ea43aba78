//! What a warm function keeps between requests, so that the common request costs the
//! fewest DynamoDB round trips: master keys (and Tencent keys) by app id and token secrets by key id
//! ([`Keys`], for `IM_APP_CACHE_SECONDS`), and which group a conversation is ([`Links`],
//! for `IM_LINK_CACHE_SECONDS`). Each is bounded in size and age: a retired key, a
//! removed app or a moved link stops counting within its time everywhere.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mini_moka::sync::{Cache, ConcurrentCacheExt};

use super::{ConversationStore, KeyStore, StoreError};
use crate::model::{AppKey, ConversationClaim, ReservedIds, TencentKey, TokenKey};

/// Bounded so that a flood of random ids cannot grow memory without limit.
const MAX_CACHED: u64 = 10_000;

/// Misses are cached too, so that probing random ids costs DynamoDB at most one read per
/// id per few seconds; briefly, so that a newly registered app or key, or a new link,
/// counts at once.
const MISS_TTL: Duration = Duration::from_secs(5);

/// A value (or its absence) and when it was read.
type Ttl<V> = Cache<String, (Option<V>, Instant)>;

fn ttl_cache<V: Clone + Send + Sync + 'static>(ttl: Duration, capacity: u64) -> Ttl<V> {
    Cache::builder()
        .max_capacity(capacity)
        .time_to_live(ttl)
        .build()
}

/// The cached answer for `id`, if there is one still good: a hit for the cache's whole
/// time, a miss for at most [`MISS_TTL`].
fn fresh<V: Clone + Send + Sync + 'static>(cache: &Ttl<V>, id: &str) -> Option<Option<V>> {
    let (value, at) = cache.get(&id.to_owned())?;
    (value.is_some() || at.elapsed() < MISS_TTL).then_some(value)
}

fn keep<V: Clone + Send + Sync + 'static>(cache: &Ttl<V>, id: &str, value: &Option<V>) {
    cache.insert(id.to_owned(), (value.clone(), Instant::now()));
}

async fn cached<V, F>(cache: &Ttl<V>, id: &str, load: F) -> Result<Option<V>, StoreError>
where
    V: Clone + Send + Sync + 'static,
    F: std::future::Future<Output = Result<Option<V>, StoreError>>,
{
    if let Some(hit) = fresh(cache, id) {
        return Ok(hit);
    }
    let found = load.await?;
    keep(cache, id, &found);
    Ok(found)
}

#[derive(Clone)]
pub struct Keys {
    store: Arc<dyn KeyStore>,
    master: Ttl<AppKey>,
    tokens: Ttl<TokenKey>,
    tencent: Ttl<TencentKey>,
    reserved: Ttl<ReservedIds>,
}

impl Keys {
    pub fn new(store: Arc<dyn KeyStore>, ttl: Duration) -> Self {
        Self::with_capacity(store, ttl, MAX_CACHED)
    }

    /// [`Keys::new`] holding at most `capacity` ids of each kind.
    pub fn with_capacity(store: Arc<dyn KeyStore>, ttl: Duration, capacity: u64) -> Self {
        Self {
            store,
            master: ttl_cache(ttl, capacity),
            tokens: ttl_cache(ttl, capacity),
            tencent: ttl_cache(ttl, capacity),
            reserved: ttl_cache(ttl, capacity),
        }
    }

    /// The app's master key, if the app exists.
    pub async fn master_key(&self, app_id: &str) -> Result<Option<AppKey>, StoreError> {
        cached(&self.master, app_id, self.store.master_key(app_id)).await
    }

    /// The app's Tencent settings and secret key, if it has them: kept like the master
    /// key (a changed key or setting counts within the cache's time; an app without
    /// them, within [`MISS_TTL`], so newly set ones count at once).
    pub async fn tencent_key(&self, app_id: &str) -> Result<Option<TencentKey>, StoreError> {
        cached(&self.tencent, app_id, self.store.tencent_key(app_id)).await
    }

    /// The client ids the app's IM cloud settings reserve. An app reserving none is
    /// kept as a miss (at most [`MISS_TTL`]), so that an id an operator reserves counts
    /// within seconds: `im-admin` checks it is no member first.
    pub async fn reserved_ids(&self, app_id: &str) -> Result<ReservedIds, StoreError> {
        let load = async {
            let ids = self.store.reserved_ids(app_id).await?;
            Ok((ids != ReservedIds::default()).then_some(ids))
        };
        Ok(cached(&self.reserved, app_id, load)
            .await?
            .unwrap_or_default())
    }

    /// The active token secret named `kid`, if there is one.
    pub async fn token_key(&self, kid: &str) -> Result<Option<TokenKey>, StoreError> {
        cached(&self.tokens, kid, self.store.token_key(kid)).await
    }

    /// [`Keys::token_key`] for a request that will also need `app_id`'s master key (a
    /// signature): when neither is cached, both are read in one round trip, and the master
    /// key waits in its cache for the handler. The app id is the one the request names,
    /// not yet checked against the token: a mismatch is refused later all the same.
    pub async fn token_key_for_app(
        &self,
        kid: &str,
        app_id: &str,
    ) -> Result<Option<TokenKey>, StoreError> {
        if let Some(hit) = fresh(&self.tokens, kid) {
            return Ok(hit);
        }
        if fresh(&self.master, app_id).is_some() {
            return self.token_key(kid).await;
        }
        let (token, master) = self.store.token_and_master_key(kid, app_id).await?;
        keep(&self.tokens, kid, &token);
        keep(&self.master, app_id, &master);
        Ok(token)
    }

    /// How many ids each cache holds (after pending evictions), for tests of the bound.
    pub fn held(&self) -> (u64, u64) {
        self.master.sync();
        self.tokens.sync();
        (self.master.entry_count(), self.tokens.entry_count())
    }
}

/// Which group a conversation is: links change only when a group is created with one,
/// re-linked or deleted, all rare next to signatures on them.
#[derive(Clone)]
pub struct Links {
    store: Arc<dyn ConversationStore>,
    groups: Ttl<ConversationClaim>,
}

impl Links {
    pub fn new(store: Arc<dyn ConversationStore>, ttl: Duration) -> Self {
        Self::with_capacity(store, ttl, MAX_CACHED)
    }

    /// [`Links::new`] holding at most `capacity` conversations.
    pub fn with_capacity(store: Arc<dyn ConversationStore>, ttl: Duration, capacity: u64) -> Self {
        Self {
            store,
            groups: ttl_cache(ttl, capacity),
        }
    }

    /// The group whose conversation `conversation_id` is, in `app_id`, as it was at most
    /// the cache's time ago (a conversation with no group: at most [`MISS_TTL`] ago).
    pub async fn conversation_group(
        &self,
        app_id: &str,
        conversation_id: &str,
    ) -> Result<Option<ConversationClaim>, StoreError> {
        // Unambiguous: app ids hold no ':' (crate::model::ids).
        let id = format!("{app_id}:{conversation_id}");
        cached(
            &self.groups,
            &id,
            self.store.conversation_group(app_id, conversation_id),
        )
        .await
    }

    /// How many conversations the cache holds (after pending evictions).
    pub fn held(&self) -> u64 {
        self.groups.sync();
        self.groups.entry_count()
    }
}
