//! Each app's call rate into each cloud: the mirror never sends an app's calls faster than
//! the app's setting (Tencent's `max_calls_per_second`), whatever the number of groups it
//! syncs at once. One limiter per app and cloud, kept for the life of the process (a warm
//! Lambda instance, the local server, an operator's backfill).
//!
//! A 429 that outlasts a call's retries starts the app's cool-down in that cloud: until
//! it ends the mirror sends the app nothing and defers its records (`mirror.rs`), so
//! that one app over its quota never holds other apps' records behind it.
//!
//! It paces this process only: on AWS each stream shard has its own invocation, so an app
//! whose groups span several shards gets the setting per shard (the template keeps the
//! mapping's parallelization at 1, and Tencent's own limit is 200/s per API, above the
//! default 100/s).

use std::collections::HashMap;
use std::hash::Hash;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use im_shared::model::CloudId;

/// A limiter, and the quota it was made for.
type Paced = (Quota, Arc<DefaultDirectRateLimiter>);

/// The longest a call waits for its turn in the app's pace; a longer wait defers the
/// group's records instead, so that a batch is never held by one app's backlog.
pub const MAX_INLINE_WAIT: Duration = Duration::from_secs(1);

#[derive(Default)]
pub struct Pacers {
    limiters: Mutex<HashMap<(CloudId, String), Paced>>,
    /// LeanCloud's system messages, per app (its quota counts messages, per minute).
    messages: Mutex<HashMap<String, Paced>>,
    /// Until when an app gets no calls in a cloud (after a 429).
    cooling: Mutex<HashMap<(CloudId, String), Instant>>,
}

impl Pacers {
    /// The limiter of `app_id` in `cloud` at `per_second` (a changed setting starts a new
    /// one).
    pub fn for_app(
        &self,
        cloud: CloudId,
        app_id: &str,
        per_second: u32,
    ) -> Arc<DefaultDirectRateLimiter> {
        let rate = NonZeroU32::new(per_second).unwrap_or(NonZeroU32::MIN);
        shared_limiter(
            &self.limiters,
            (cloud, app_id.to_owned()),
            Quota::per_second(rate),
        )
    }

    /// Waits for the app's next system message slot at `per_minute`; `Err(wait)` when the
    /// wait would exceed [`MAX_INLINE_WAIT`] (the slot is not taken).
    pub async fn message_slot(&self, app_id: &str, per_minute: u32) -> Result<(), Duration> {
        let rate = NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN);
        let limiter = shared_limiter(&self.messages, app_id.to_owned(), Quota::per_minute(rate));
        loop {
            match limiter.check() {
                Ok(()) => return Ok(()),
                Err(not_until) => {
                    let wait = not_until.wait_time_from(DefaultClock::default().now());
                    if wait > MAX_INLINE_WAIT {
                        return Err(wait);
                    }
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// The app gets no calls in `cloud` for `pause`.
    pub fn cool_down(&self, cloud: CloudId, app_id: &str, pause: Duration) {
        let until = Instant::now() + pause;
        let mut map = self.cooling.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = map.entry((cloud, app_id.to_owned())).or_insert(until);
        *entry = (*entry).max(until);
    }

    /// What is left of the app's cool-down in `cloud`, if it has one.
    pub fn cooling(&self, cloud: CloudId, app_id: &str) -> Option<Duration> {
        let mut map = self.cooling.lock().unwrap_or_else(PoisonError::into_inner);
        let key = (cloud, app_id.to_owned());
        let left = map.get(&key)?.checked_duration_since(Instant::now());
        if left.is_none() {
            map.remove(&key);
        }
        left.filter(|d| !d.is_zero())
    }
}

/// The limiter kept under `key` for `quota`; a changed quota (a changed setting) starts a
/// new one. A steady rate with no burst above one call: a burst of a second's (or a
/// minute's) calls at once is what a rate-limited cloud counts against the next one too.
fn shared_limiter<K: Hash + Eq>(
    map: &Mutex<HashMap<K, Paced>>,
    key: K,
    quota: Quota,
) -> Arc<DefaultDirectRateLimiter> {
    let quota = quota.allow_burst(NonZeroU32::MIN);
    let mut map = map.lock().unwrap_or_else(PoisonError::into_inner);
    let entry = map
        .entry(key)
        .or_insert_with(|| (quota, Arc::new(RateLimiter::direct(quota))));
    if entry.0 != quota {
        *entry = (quota, Arc::new(RateLimiter::direct(quota)));
    }
    entry.1.clone()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[tokio::test]
    async fn calls_are_spread_at_the_rate() {
        let pacers = Pacers::default();
        let limiter = pacers.for_app(CloudId::Tencent, "app", 50);
        let started = Instant::now();
        for _ in 0..11 {
            limiter.until_ready().await;
        }
        // 11 calls at 50/s: the first at once, then one every 20 ms.
        assert!(
            started.elapsed().as_millis() >= 190,
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn a_message_slot_further_off_than_a_second_is_not_waited_for() {
        let pacers = Pacers::default();
        // 30 a minute: one every 2 s.
        assert_eq!(pacers.message_slot("app", 30).await, Ok(()));
        let wait = pacers.message_slot("app", 30).await.unwrap_err();
        assert!(
            wait > MAX_INLINE_WAIT && wait <= Duration::from_secs(2),
            "{wait:?}"
        );
        // Another app has its own pace.
        assert_eq!(pacers.message_slot("other", 30).await, Ok(()));
        // 120 a minute: the next slot is 0.5 s off, which is waited for.
        let started = Instant::now();
        assert_eq!(pacers.message_slot("fast", 120).await, Ok(()));
        assert_eq!(pacers.message_slot("fast", 120).await, Ok(()));
        assert!(started.elapsed() >= Duration::from_millis(400));
    }

    #[test]
    fn a_cool_down_is_per_app_and_cloud_and_ends() {
        let pacers = Pacers::default();
        assert_eq!(pacers.cooling(CloudId::LeanCloud, "a"), None);
        pacers.cool_down(CloudId::LeanCloud, "a", Duration::from_secs(60));
        assert!(pacers.cooling(CloudId::LeanCloud, "a").unwrap() > Duration::from_secs(59));
        assert_eq!(pacers.cooling(CloudId::LeanCloud, "b"), None);
        assert_eq!(pacers.cooling(CloudId::Tencent, "a"), None);
        // A shorter pause never shortens one that runs.
        pacers.cool_down(CloudId::LeanCloud, "a", Duration::from_secs(1));
        assert!(pacers.cooling(CloudId::LeanCloud, "a").unwrap() > Duration::from_secs(59));
        pacers.cool_down(CloudId::Tencent, "c", Duration::ZERO);
        assert_eq!(pacers.cooling(CloudId::Tencent, "c"), None);
    }

    #[test]
    fn one_limiter_per_app_and_cloud() {
        let pacers = Pacers::default();
        let a = pacers.for_app(CloudId::Tencent, "a", 10);
        assert!(Arc::ptr_eq(&a, &pacers.for_app(CloudId::Tencent, "a", 10)));
        assert!(!Arc::ptr_eq(&a, &pacers.for_app(CloudId::Tencent, "b", 10)));
        assert!(!Arc::ptr_eq(
            &a,
            &pacers.for_app(CloudId::LeanCloud, "a", 10)
        ));
        assert!(!Arc::ptr_eq(&a, &pacers.for_app(CloudId::Tencent, "a", 20)));
    }
}
