//! The vendor's message quota (`../shared/notes/im-cloud-rest.md`): messages sent through
//! the REST API are counted per app and minute; past the quota every such request is
//! refused with 429 for about a minute. Off unless a test sets it.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

pub(super) struct MessageQuota {
    per_minute: usize,
    /// How long a request over the quota shuts the door (the vendor's "about a minute").
    refusal: Duration,
    sent: VecDeque<Instant>,
    refused_until: Option<Instant>,
}

impl MessageQuota {
    pub(super) fn new(per_minute: usize, refusal: Duration) -> Self {
        Self {
            per_minute,
            refusal,
            sent: VecDeque::new(),
            refused_until: None,
        }
    }

    /// Counts one message; `false` when it is refused (over the quota, or while the door
    /// is shut).
    pub(super) fn admit(&mut self) -> bool {
        let now = Instant::now();
        if self.refused_until.is_some_and(|until| now < until) {
            return false;
        }
        while self
            .sent
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(60))
        {
            self.sent.pop_front();
        }
        if self.sent.len() >= self.per_minute {
            self.refused_until = Some(now + self.refusal);
            return false;
        }
        self.sent.push_back(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn past_the_quota_the_door_stays_shut_for_the_refusal() {
        let mut quota = MessageQuota::new(2, Duration::from_millis(200));
        assert!(quota.admit());
        assert!(quota.admit());
        assert!(!quota.admit());
        std::thread::sleep(Duration::from_millis(250));
        // Open again, but the minute's two are still counted.
        assert!(!quota.admit());
    }
}
