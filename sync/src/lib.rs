//! Mirrors groups into each app's IM cloud (the vendor's realtime REST API 1.2): the
//! table's stream records in, conversation changes and system messages out. The
//! `sync-conversations` function runs [`Syncer::handle`] on AWS; the local server runs
//! the same handler on DynamoDB Local's stream.
//!
//! - [`records`]: what a stream record means (pure);
//! - [`mirror`]: the handler, its ordering and exactly-once rules, per group and per
//!   cloud;
//! - [`clouds`]: the IM clouds, each a provider: how a step reaches LeanCloud
//!   ([`clouds::leancloud`]) or Tencent Cloud IM ([`clouds::tencent`]);
//! - [`vendor`]: the HTTP client every cloud shares, and LeanCloud's REST calls, retries
//!   and back-off;
//! - [`pacing`]: each app's call rate into each cloud;
//! - [`backfill`]: every existing group of an app brought into a newly added cloud;
//! - [`message`]: the system messages;
//! - [`stream`] (feature `stream-reader`): the stream read as Lambda's mapping reads it,
//!   for the local poller and `im-admin sync redrive`.

pub mod backfill;
pub mod clouds;
pub mod message;
pub mod mirror;
pub mod pacing;
pub mod reconcile;
pub mod records;
#[cfg(feature = "stream-reader")]
pub mod stream;
pub mod vendor;

use std::time::Duration;

pub use aws_lambda_events::event::dynamodb::{Event as StreamEvent, EventRecord as StreamRecord};
pub use aws_lambda_events::event::streams::DynamoDbEventResponse;
pub use mirror::Syncer;

use im_shared::config::ConfigError;
use im_shared::store::DynamoStore;
use vendor::{RetryPolicy, Vendor};

/// Why the sync function could not start.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("{0} is not set")]
    Missing(&'static str),
    #[error("{0} must be a whole number of milliseconds")]
    NotMillis(&'static str),
    #[error("the HTTP client could not be built: {0}")]
    Http(String),
    #[error(transparent)]
    Config(#[from] ConfigError),
}

fn millis(name: &'static str, default: Duration) -> Result<Duration, SetupError> {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse::<u64>()
            .map(Duration::from_millis)
            .map_err(|_| SetupError::NotMillis(name)),
        Err(_) => Ok(default),
    }
}

/// The retry policy from the environment: `IM_SYNC_ATTEMPT_TIMEOUT_MS` (one HTTP
/// attempt), `IM_SYNC_RETRY_BUDGET_MS` (all attempts of one call) and
/// `IM_SYNC_RATE_LIMIT_PAUSE_MS` (how long a 429 without `Retry-After` pauses an app:
/// the vendor's minute by default).
pub fn policy_from_env() -> Result<RetryPolicy, SetupError> {
    let default = RetryPolicy::default();
    Ok(RetryPolicy {
        attempt_timeout: millis("IM_SYNC_ATTEMPT_TIMEOUT_MS", default.attempt_timeout)?,
        budget: millis("IM_SYNC_RETRY_BUDGET_MS", default.budget)?,
        rate_limit_pause: millis("IM_SYNC_RATE_LIMIT_PAUSE_MS", default.rate_limit_pause)?,
        ..default
    })
}

impl Syncer {
    /// The table (`TABLE_NAME`) and a DynamoDB client from the standard environment, and
    /// the HTTP client: built once at init, reused warm.
    pub async fn from_env() -> Result<Self, SetupError> {
        let table = std::env::var("TABLE_NAME").map_err(|_| SetupError::Missing("TABLE_NAME"))?;
        let client = DynamoStore::client_from_env().await?;
        Self::with_client(DynamoStore::new(client, table))
    }

    pub fn with_client(store: DynamoStore) -> Result<Self, SetupError> {
        let vendor =
            Vendor::new(policy_from_env()?).map_err(|e| SetupError::Http(e.to_string()))?;
        Ok(Self::new(store, vendor))
    }
}
