//! Fault injection, as in the LeanCloud stand-in (`crate::im_cloud`, whose
//! [`FaultTiming`] this shares): failures at random at a set rate, failures queued for a
//! test that wants one in particular, and groups whose calls fail forever with a code.
//!
//! Tencent answers its own failures with HTTP 200 and a `FAIL` body; what is in front of
//! it (a gateway, the network) fails with a 5xx, a time-out or a closed connection. The
//! kinds cover both, since a client must retry all of them.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use rand::seq::IndexedRandom;
use rand::Rng;

pub use crate::im_cloud::FaultTiming;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultKind {
    /// `FAIL` with 60007, the REST layer's "calls over the limit". Always before the
    /// change: a limiter refuses at the door.
    RestRateLimit,
    /// `FAIL` with 10023, the group layer's "calls over the limit". Before the change.
    GroupRateLimit,
    /// `FAIL` with 10002, the group layer's "internal error, retry".
    Internal,
    /// HTTP 500 with no JSON body.
    Status500,
    /// HTTP 502 (a gateway's answer), no JSON body.
    Status502,
    /// No answer within the slow delay (set it past the client's time-out), then the
    /// connection closed; after the change, the change is made and answered late.
    Slow,
    /// The connection is closed without an answer.
    Drop,
}

impl FaultKind {
    pub const ALL: [FaultKind; 7] = [
        FaultKind::RestRateLimit,
        FaultKind::GroupRateLimit,
        FaultKind::Internal,
        FaultKind::Status500,
        FaultKind::Status502,
        FaultKind::Slow,
        FaultKind::Drop,
    ];

    /// A rate limit refuses the call: it never comes after the change.
    pub fn refuses_only(self) -> bool {
        matches!(self, FaultKind::RestRateLimit | FaultKind::GroupRateLimit)
    }
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

    /// Panics for a rate limit, which never comes after a change.
    pub fn after(kind: FaultKind) -> Self {
        assert!(
            !kind.refuses_only(),
            "{kind:?} refuses the call: it cannot come after the change"
        );
        Self {
            kind,
            timing: FaultTiming::AfterChange,
        }
    }
}

/// Tencent's server-side time-out is 3 s; a client waits about that long, so a slow
/// answer by default comes later than any client the tests use would wait.
const DEFAULT_SLOW_DELAY: Duration = Duration::from_secs(10);

pub(super) struct Faults {
    rate: f64,
    kinds: Vec<FaultKind>,
    pub slow_delay: Duration,
    queued: VecDeque<Fault>,
    poisoned_groups: HashMap<String, u32>,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            rate: 0.0,
            kinds: FaultKind::ALL.to_vec(),
            slow_delay: DEFAULT_SLOW_DELAY,
            queued: VecDeque::new(),
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

    pub fn poison_group(&mut self, group_id: &str, code: u32) {
        assert_ne!(code, 0, "a poisoned group fails with a nonzero ErrorCode");
        self.poisoned_groups.insert(group_id.to_string(), code);
    }

    /// Everything but the slow delay, which describes the clients rather than a fault.
    pub fn clear(&mut self) {
        *self = Self {
            slow_delay: self.slow_delay,
            ..Self::default()
        };
    }

    /// The fault for the next call: a queued one first, else one at random at the rate.
    pub fn pick(&mut self) -> Option<Fault> {
        if let Some(fault) = self.queued.pop_front() {
            return Some(fault);
        }
        let mut rng = rand::rng();
        if self.rate == 0.0 || !rng.random_bool(self.rate) {
            return None;
        }
        let kind = *self.kinds.choose(&mut rng)?;
        Some(if kind.refuses_only() || rng.random_bool(0.5) {
            Fault::before(kind)
        } else {
            Fault::after(kind)
        })
    }

    /// The code a poisoned group fails with.
    pub fn poisoned(&self, group_id: &str) -> Option<u32> {
        self.poisoned_groups.get(group_id).copied()
    }
}
