//! What every handler shares: configuration, storage and the key caches, built once per
//! process (a function's init, or the local server's start) and reused warm.

use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::store::{DynamoStore, Keys, Links, Store};

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Arc<dyn Store>,
    pub keys: Keys,
    pub links: Links,
}

impl AppState {
    pub fn new(config: Config, store: Arc<dyn Store>) -> Self {
        let keys = Keys::new(store.clone(), config.app_cache_ttl);
        let links = Links::new(store.clone(), config.link_cache_ttl);
        Self {
            config: Arc::new(config),
            store,
            keys,
            links,
        }
    }

    /// The state for `config`: a DynamoDB client made as it says, then, with `warm_up`,
    /// a connection to DynamoDB opened within that time ([`DynamoStore::warm_up`]), so
    /// that the first request finds it ready. Done once at init and reused by every warm
    /// invocation.
    pub async fn from_config(config: Config, warm_up: Option<Duration>) -> Self {
        let client = DynamoStore::client_for(&config.dynamodb_target, &config.dynamodb).await;
        let store = DynamoStore::new(client, config.table_name.clone());
        if let Some(limit) = warm_up {
            store.warm_up(limit).await;
        }
        Self::new(config, Arc::new(store))
    }
}
