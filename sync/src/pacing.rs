//! Each app's call rate into each cloud: the mirror never sends an app's calls faster than
//! the app's setting (Tencent's `max_calls_per_second`), whatever the number of groups it
//! syncs at once. One limiter per app and cloud, kept for the life of the process (a warm
//! Lambda instance, the local server, an operator's backfill).
//!
//! It paces this process only: on AWS each stream shard has its own invocation, so an app
//! whose groups span several shards gets the setting per shard (the template keeps the
//! mapping's parallelization at 1, and Tencent's own limit is 200/s per API, above the
//! default 100/s).

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, PoisonError};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use im_shared::model::CloudId;

/// A limiter, and the rate it was made for.
type Paced = (u32, Arc<DefaultDirectRateLimiter>);

#[derive(Default)]
pub struct Pacers {
    limiters: Mutex<HashMap<(CloudId, String), Paced>>,
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
        let mut map = self.limiters.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = map
            .entry((cloud, app_id.to_owned()))
            .or_insert_with(|| (rate.get(), Arc::new(limiter(rate))));
        if entry.0 != rate.get() {
            *entry = (rate.get(), Arc::new(limiter(rate)));
        }
        entry.1.clone()
    }
}

/// A steady rate with no burst above one call: a burst of `per_second` calls at once is
/// what a rate-limited cloud counts against the next second too.
fn limiter(rate: NonZeroU32) -> DefaultDirectRateLimiter {
    RateLimiter::direct(Quota::per_second(rate).allow_burst(NonZeroU32::MIN))
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
