//! Fault injection: failures at random at a set rate, failures queued for a test that
//! wants one in particular, and "poisoned" conversations and groups whose requests fail
//! forever.
//!
//! A fault happens either before the request's change (the request is refused: nothing
//! changed) or after it (the change is made and the answer is lost), because the client
//! must tell "did my create happen?" apart by asking, not by guessing from the failure.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use rand::seq::IndexedRandom;
use rand::Rng;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultKind {
    /// 429 with the vendor's rate-limit body. Always before the change: the vendor refuses
    /// a request over the limit at the door.
    TooManyRequests,
    /// 500 with the vendor's internal-error body.
    ServerError,
    /// No answer within the slow delay (longer than the client's time-out), then the
    /// connection is closed. A slow fault after the change makes the change first and then
    /// answers late; one before it never makes the change, since no client could tell a
    /// change landing after its time-out from a duplicate.
    Slow,
    /// The connection is closed without an answer.
    Drop,
}

impl FaultKind {
    pub const ALL: [FaultKind; 4] = [
        FaultKind::TooManyRequests,
        FaultKind::ServerError,
        FaultKind::Slow,
        FaultKind::Drop,
    ];
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultTiming {
    /// The request is refused; nothing changes.
    BeforeChange,
    /// The change is made, then the answer is lost.
    AfterChange,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fault {
    pub kind: FaultKind,
    pub timing: FaultTiming,
}

impl Fault {
    pub fn before(kind: FaultKind) -> Self {
        Self {
            kind,
            timing: FaultTiming::BeforeChange,
        }
    }

    /// Panics for [`FaultKind::TooManyRequests`], which never comes after a change.
    pub fn after(kind: FaultKind) -> Self {
        assert_ne!(
            kind,
            FaultKind::TooManyRequests,
            "a 429 refuses the request: it cannot come after the change"
        );
        Self {
            kind,
            timing: FaultTiming::AfterChange,
        }
    }
}

/// Longer than any client time-out the tests use, unless a test sets its own.
const DEFAULT_SLOW_DELAY: Duration = Duration::from_secs(10);

pub(super) struct Faults {
    rate: f64,
    kinds: Vec<FaultKind>,
    pub slow_delay: Duration,
    queued: VecDeque<Fault>,
    poisoned_conversations: HashMap<String, u16>,
    poisoned_groups: HashMap<u64, u16>,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            rate: 0.0,
            kinds: FaultKind::ALL.to_vec(),
            slow_delay: DEFAULT_SLOW_DELAY,
            queued: VecDeque::new(),
            poisoned_conversations: HashMap::new(),
            poisoned_groups: HashMap::new(),
        }
    }
}

impl Faults {
    pub fn set_rate(&mut self, rate: f64) {
        assert!(
            (0.0..=1.0).contains(&rate),
            "a failure rate is within 0..=1"
        );
        self.rate = rate;
    }

    pub fn set_kinds(&mut self, kinds: &[FaultKind]) {
        assert!(!kinds.is_empty(), "at least one kind of fault");
        self.kinds = kinds.to_vec();
    }

    pub fn queue(&mut self, fault: Fault) {
        self.queued.push_back(fault);
    }

    pub fn poison_conversation(&mut self, id: &str, status: u16) {
        check_failure(status);
        self.poisoned_conversations.insert(id.to_string(), status);
    }

    pub fn poison_group(&mut self, group_id: u64, status: u16) {
        check_failure(status);
        self.poisoned_groups.insert(group_id, status);
    }

    /// Everything but the slow delay, which describes the clients rather than a fault.
    pub fn clear(&mut self) {
        *self = Self {
            slow_delay: self.slow_delay,
            ..Self::default()
        };
    }

    /// The fault for the next request: a queued one first, else one at random at the rate.
    pub fn pick(&mut self) -> Option<Fault> {
        if let Some(fault) = self.queued.pop_front() {
            return Some(fault);
        }
        let mut rng = rand::rng();
        if self.rate == 0.0 || !rng.random_bool(self.rate) {
            return None;
        }
        let kind = *self.kinds.choose(&mut rng)?;
        Some(
            if kind == FaultKind::TooManyRequests || rng.random_bool(0.5) {
                Fault::before(kind)
            } else {
                Fault::after(kind)
            },
        )
    }

    /// The status a poisoned conversation or group answers with, if the request concerns one.
    pub fn poisoned(&self, conversation: Option<&str>, group: Option<u64>) -> Option<u16> {
        conversation
            .and_then(|id| self.poisoned_conversations.get(id))
            .or_else(|| group.and_then(|g| self.poisoned_groups.get(&g)))
            .copied()
    }
}

fn check_failure(status: u16) {
    assert!(
        (400..=599).contains(&status),
        "a poisoned id fails with a 4xx or 5xx status, not {status}"
    );
}
