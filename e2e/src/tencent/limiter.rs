//! Tencent's rate limit: so many calls a second per API (per command) per app, 200 by
//! default and 100 for `multiaccount_import` (notes, "Rate limits").
//!
//! Tencent does not say how it counts a second; the stand-in counts a sliding window (the
//! calls answered in the last second), the strict reading: a client that keeps under the
//! limit in every window keeps under it in every fixed second too, and not the other way
//! round. Only calls let through count; a refused call does not use up the window.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

pub(super) const DEFAULT_PER_SECOND: u32 = 200;
/// The command with a lower documented limit, and that limit.
pub(super) const MULTIACCOUNT_IMPORT: &str = "im_open_login_svc/multiaccount_import";
pub(super) const MULTIACCOUNT_IMPORT_PER_SECOND: u32 = 100;

const WINDOW: Duration = Duration::from_secs(1);

pub(super) struct Limiter {
    /// The limit of a command not in `per_command`.
    default: u32,
    per_command: HashMap<String, u32>,
    recent: HashMap<String, VecDeque<Instant>>,
    pub refused: usize,
}

impl Default for Limiter {
    fn default() -> Self {
        Self {
            default: DEFAULT_PER_SECOND,
            per_command: HashMap::from([(
                MULTIACCOUNT_IMPORT.to_string(),
                MULTIACCOUNT_IMPORT_PER_SECOND,
            )]),
            recent: HashMap::new(),
            refused: 0,
        }
    }
}

impl Limiter {
    /// Every command `per_second`, but `multiaccount_import` half that (at least 1), the
    /// documented ratio: `set_all(200)` gives the documented limits back.
    pub fn set_all(&mut self, per_second: u32) {
        assert!(per_second > 0, "a rate limit is at least 1 call a second");
        self.default = per_second;
        self.per_command =
            HashMap::from([(MULTIACCOUNT_IMPORT.to_string(), (per_second / 2).max(1))]);
    }

    pub fn set(&mut self, command: &str, per_second: u32) {
        assert!(per_second > 0, "a rate limit is at least 1 call a second");
        self.per_command.insert(command.to_string(), per_second);
    }

    /// Whether a call of `command` now is within the limit; counts it if so, and the
    /// refusal if not.
    pub fn admit(&mut self, command: &str) -> bool {
        let limit = self
            .per_command
            .get(command)
            .copied()
            .unwrap_or(self.default) as usize;
        let now = Instant::now();
        let recent = self.recent.entry(command.to_string()).or_default();
        while recent
            .front()
            .is_some_and(|t| now.duration_since(*t) >= WINDOW)
        {
            recent.pop_front();
        }
        if recent.len() < limit {
            recent.push_back(now);
            true
        } else {
            self.refused += 1;
            false
        }
    }
}
