//! Sliding windows counted in slices: the arithmetic both backends share.
//!
//! A window of length `W` is cut into `n` slices of `g` ms (`W = n·g`). Usage charged at time
//! `t` lands in slice `⌊t/g⌋` and keeps counting until slice `⌊t/g⌋ + n + 1` begins, i.e. for at
//! least `W` and at most `W + g`. At any instant the counted slices therefore cover every
//! charge of the last `W`, so **no trailing window of length `W` ever holds more than the
//! limit** (a leaky bucket or GCRA with a full burst allows up to twice that). The price of
//! exactness is a refusal that may last up to one slice longer than strictly needed.
//! There are no calendar edges: slices are fixed-width ticks of the clock, not hours of a day.

use std::time::Duration;

/// How a window is cut into slices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Slicing {
    /// Slice width in ms.
    pub g_ms: i64,
    /// Slices per window.
    pub n: i64,
}

impl Slicing {
    /// The slice that time `t_ms` falls in.
    pub fn slice(self, t_ms: i64) -> i64 {
        t_ms.div_euclid(self.g_ms)
    }

    /// The oldest slice still counted at `now`.
    pub fn low(self, now: i64) -> i64 {
        self.slice(now) - self.n
    }

    /// When slice `i` stops counting.
    pub fn expires_at(self, i: i64) -> i64 {
        (i + self.n + 1) * self.g_ms
    }

    /// The time until the newest used slice `latest` stops counting: the window is whole again.
    pub fn reset(self, latest: Option<i64>, now: i64) -> Duration {
        latest.map_or(Duration::ZERO, |i| ms(self.expires_at(i) - now))
    }
}

/// Milliseconds as a duration, negative clamped to zero.
pub(crate) fn ms(v: i64) -> Duration {
    Duration::from_millis(v.max(0) as u64)
}

/// How long until `cost` more fits under `cap`, given the counted `slices` (any order) that sum
/// to `used`; `None` when it can never fit (`cost > cap`).
pub(crate) fn wait_for(
    s: Slicing,
    slices: &[(i64, u64)],
    used: u64,
    cap: u64,
    cost: u64,
    now: i64,
) -> Option<Duration> {
    if cost > cap {
        return None;
    }
    if used.saturating_add(cost) <= cap {
        return Some(Duration::ZERO);
    }
    let mut sorted: Vec<(i64, u64)> = slices.to_vec();
    sorted.sort_unstable();
    let mut left = used;
    for (i, amount) in &sorted {
        left = left.saturating_sub(*amount);
        if left.saturating_add(cost) <= cap {
            return Some(ms(s.expires_at(*i) - now));
        }
    }
    // Usage not attributed to any slice (cannot happen with consistent state): wait a window.
    Some(ms(s.n * s.g_ms + s.g_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Slicing = Slicing { g_ms: 1000, n: 60 };

    #[test]
    fn a_charge_counts_for_at_least_a_window_and_at_most_one_slice_more() {
        // Charged at t = 10.5 s (slice 10): counted until slice 71 starts at 71 s.
        assert_eq!(S.slice(10_500), 10);
        assert_eq!(S.expires_at(10), 71_000);
        assert!(S.expires_at(S.slice(10_500)) - 10_500 >= 60_000);
        assert!(S.expires_at(S.slice(10_999)) - 10_999 <= 61_000);
        assert_eq!(S.low(70_999), 10);
        assert_eq!(S.low(71_000), 11);
    }

    #[test]
    fn waiting_frees_the_oldest_slices_first() {
        let slices = [(12, 300), (10, 500), (11, 200)];
        // 1000 used of 1000; 400 more need slices 10 (500) to expire: at 71 s.
        assert_eq!(
            wait_for(S, &slices, 1000, 1000, 400, 60_000),
            Some(Duration::from_secs(11))
        );
        // 600 more need slices 10 and 11 gone: at 72 s.
        assert_eq!(
            wait_for(S, &slices, 1000, 1000, 600, 60_000),
            Some(Duration::from_secs(12))
        );
        assert_eq!(
            wait_for(S, &slices, 700, 1000, 300, 60_000),
            Some(Duration::ZERO)
        );
        assert_eq!(wait_for(S, &slices, 1000, 1000, 1001, 60_000), None);
    }

    #[test]
    fn reset_is_when_the_newest_slice_leaves() {
        assert_eq!(S.reset(None, 5), Duration::ZERO);
        assert_eq!(S.reset(Some(12), 60_000), Duration::from_secs(13));
        assert_eq!(S.reset(Some(0), 600_000), Duration::ZERO);
    }
}
