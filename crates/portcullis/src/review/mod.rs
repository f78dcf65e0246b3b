//! Shadow mode that measures itself: reviewers label sampled would-have-blocked verdicts as
//! right or wrong, per-guard counters say how often a monitored guard would block and how
//! often it would be right, and promotion to enforce is refused below a precision floor.
//!
//! - [`stats`]: the per-guard counters and the Wilson interval on labelled precision.
//! - [`queue`]: the unlabelled would-have-blocked verdicts, in a stable random order.
//! - [`http`]: the queue, labels and counters over the admin API.
//! - [`promote`]: rewriting a guard's mode in the config file, and the precision floor.

pub mod http;
pub mod promote;
pub mod queue;
pub mod stats;

use serde::Deserialize;

/// `[review]`: the evidence a guard needs before `portcullis promote` lets it enforce.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReviewConfig {
    /// Lowest labelled precision (right / labelled) a guard may be promoted at, 0–1.
    pub min_precision: f64,
    /// Fewest labels a promotion needs: a precision over three labels proves nothing.
    pub min_labels: u64,
    /// How many days of audit records the counters and the queue look at.
    pub days: u32,
}

impl Default for ReviewConfig {
    fn default() -> Self {
        ReviewConfig {
            min_precision: 0.9,
            min_labels: 20,
            days: 30,
        }
    }
}

impl ReviewConfig {
    /// The setting that cannot be used and why, if one cannot.
    pub fn problem(&self) -> Option<(&'static str, String)> {
        if !(0.0..=1.0).contains(&self.min_precision) {
            return Some((
                "review.min_precision",
                format!(
                    "{} is not a share; use 0 to 1 (0.9 = 90 % of labelled would-blocks right)",
                    self.min_precision
                ),
            ));
        }
        if self.days == 0 {
            return Some(("review.days", "must be at least 1".into()));
        }
        None
    }

    /// The start of the period the counters cover, in Unix milliseconds.
    pub fn since_ms(&self, now_ms: i64) -> i64 {
        now_ms - i64::from(self.days) * 86_400_000
    }
}
