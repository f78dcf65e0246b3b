//! What a client is told about its limits: the `x-ratelimit-*` headers and `Retry-After`.
//!
//! Every duration a client reads is rounded **up** (to the millisecond, or to the second where
//! the format has no fractions), so a client that waits exactly as long as it was told is
//! admitted: 60.5 s is `Retry-After: 61` and `1m1s`, never `60` and `1m0s`.

use crate::limiter::Kind;
use std::time::Duration;

/// The state of the tightest request and token windows, for `x-ratelimit-*` headers.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Headroom {
    /// The request window with the least room (`-requests` headers).
    pub requests: Option<Room>,
    /// The token window with the least room (`-tokens` headers).
    pub tokens: Option<Room>,
}

/// One window's limit, what is left, and when it is whole again (OpenAI's `reset`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Room {
    /// The configured limit.
    pub limit: u64,
    /// What is left now.
    pub remaining: u64,
    /// Time until the window holds no usage at all.
    pub reset: Duration,
}

impl Headroom {
    pub(crate) fn note(&mut self, kind: Kind, room: Room) {
        let slot = match kind {
            Kind::Requests => &mut self.requests,
            Kind::Tokens => &mut self.tokens,
            Kind::Parallel => return,
        };
        let tighter = slot.is_none_or(|r| room.remaining < r.remaining);
        if tighter {
            *slot = Some(room);
        }
    }

    /// OpenAI-style headers (`x-ratelimit-limit-requests`, `…-remaining-…`, `…-reset-…`, and the
    /// `-tokens` triple), for whichever windows exist; resets rounded up.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let mut h = Vec::new();
        if let Some(r) = self.requests {
            h.push(("x-ratelimit-limit-requests", r.limit.to_string()));
            h.push(("x-ratelimit-remaining-requests", r.remaining.to_string()));
            h.push(("x-ratelimit-reset-requests", openai_duration(r.reset)));
        }
        if let Some(r) = self.tokens {
            h.push(("x-ratelimit-limit-tokens", r.limit.to_string()));
            h.push(("x-ratelimit-remaining-tokens", r.remaining.to_string()));
            h.push(("x-ratelimit-reset-tokens", openai_duration(r.reset)));
        }
        h
    }
}

/// Whole milliseconds in `d`, rounded up (a client must not retry a fraction too early).
pub fn ceil_millis(d: Duration) -> u128 {
    let nanos = d.as_nanos();
    nanos.div_ceil(1_000_000)
}

/// `Retry-After` in whole seconds: `d` rounded up, at least 1 (0 would invite a busy loop).
pub fn retry_after_secs(d: Duration) -> u64 {
    let up = d.as_secs().saturating_add(u64::from(d.subsec_nanos() > 0));
    up.max(1)
}

/// `Retry-After` and `retry-after-ms` for a refusal that frees up after `d` (both rounded up).
pub fn retry_headers(d: Duration) -> Vec<(&'static str, String)> {
    vec![
        ("retry-after", retry_after_secs(d).to_string()),
        ("retry-after-ms", ceil_millis(d).max(1).to_string()),
    ]
}

/// A duration as OpenAI writes it in reset headers: `250ms`, `6.5s`, `1m30s`, `2h5m0s`;
/// rounded up to the millisecond below a minute and to the second from a minute on.
pub fn openai_duration(d: Duration) -> String {
    let ms = ceil_millis(d);
    if ms < 1_000 {
        return format!("{ms}ms");
    }
    if ms < 60_000 {
        let (s, frac) = (ms / 1_000, ms % 1_000);
        if frac == 0 {
            return format!("{s}s");
        }
        let frac = format!("{frac:03}");
        return format!("{s}.{}s", frac.trim_end_matches('0'));
    }
    let total = ms.div_ceil(1_000);
    let (h, m, s) = (total / 3600, (total % 3600) / 60, total % 60);
    if h > 0 {
        format!("{h}h{m}m{s}s")
    } else {
        format!("{m}m{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_durations_read_like_openai() {
        assert_eq!(openai_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(openai_duration(Duration::from_millis(6_500)), "6.5s");
        assert_eq!(openai_duration(Duration::from_secs(6)), "6s");
        assert_eq!(openai_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(openai_duration(Duration::from_secs(7_500)), "2h5m0s");
        assert_eq!(openai_duration(Duration::ZERO), "0ms");
    }

    #[test]
    fn reset_durations_round_up() {
        // 60.9 s and 60.5 s are 61 s, not "1m0s".
        assert_eq!(openai_duration(Duration::from_millis(60_900)), "1m1s");
        assert_eq!(openai_duration(Duration::from_millis(60_500)), "1m1s");
        assert_eq!(openai_duration(Duration::from_millis(60_001)), "1m1s");
        assert_eq!(openai_duration(Duration::from_secs(60)), "1m0s");
        // Fractions of a millisecond round up too, across every unit boundary.
        assert_eq!(openai_duration(Duration::from_micros(250_100)), "251ms");
        assert_eq!(openai_duration(Duration::from_micros(999_001)), "1s");
        assert_eq!(openai_duration(Duration::from_micros(6_000_400)), "6.001s");
        assert_eq!(openai_duration(Duration::from_micros(59_999_600)), "1m0s");
        assert_eq!(openai_duration(Duration::from_nanos(1)), "1ms");
        assert_eq!(openai_duration(Duration::from_millis(3_599_001)), "1h0m0s");
        assert!(!openai_duration(Duration::MAX).is_empty());
    }

    #[test]
    fn retry_after_rounds_up_and_is_never_zero() {
        assert_eq!(retry_after_secs(Duration::from_millis(60_500)), 61);
        assert_eq!(retry_after_secs(Duration::from_millis(60_000)), 60);
        assert_eq!(retry_after_secs(Duration::from_nanos(60_000_000_001)), 61);
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::MAX), u64::MAX);
        let h = retry_headers(Duration::from_micros(1_500_500));
        assert_eq!(
            h,
            [
                ("retry-after", "2".to_owned()),
                ("retry-after-ms", "1501".to_owned())
            ]
        );
    }

    #[test]
    fn headers_round_resets_up() {
        let room = |reset| Room {
            limit: 10,
            remaining: 3,
            reset,
        };
        let h = Headroom {
            requests: Some(room(Duration::from_millis(60_500))),
            tokens: Some(room(Duration::from_micros(1_200))),
        };
        let h = h.headers();
        assert!(h.contains(&("x-ratelimit-reset-requests", "1m1s".to_owned())));
        assert!(h.contains(&("x-ratelimit-reset-tokens", "2ms".to_owned())));
    }
}
