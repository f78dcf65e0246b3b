//! Staged rollout: a guard enforced for a stable share of principals and monitored for the
//! rest, so a new policy meets real traffic a few callers at a time.

use super::stage::Mode;
use crate::context::Principal;
use crate::hash::Fnv;
use serde::{Deserialize, Serialize};

/// Which identity a rollout share is drawn over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RolloutBy {
    /// Each gateway key is in or out on its own.
    #[default]
    Key,
    /// Every key of a user (or a service key's named end user) shares the user's draw.
    User,
}

/// Enforce for `percent` % of principals, monitor for the rest; who is in is fixed by a hash
/// of the guard's name and the principal's id, so it holds across requests and restarts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rollout {
    /// Share of principals the guard enforces for, 0–100.
    pub percent: u8,
    /// The identity the share is drawn over.
    pub by: RolloutBy,
}

/// Buckets a principal falls into; a percent is `percent * 100` of them.
const BUCKETS: u64 = 10_000;

impl Rollout {
    /// A rollout over `by` at `percent` (values above 100 mean everyone).
    pub fn new(percent: u8, by: RolloutBy) -> Self {
        Rollout {
            percent: percent.min(100),
            by,
        }
    }

    /// The id the share is drawn over for `p`.
    pub fn subject<'a>(&self, p: &'a Principal) -> &'a str {
        match self.by {
            RolloutBy::Key => &p.key_id,
            RolloutBy::User => p.end_user.as_deref().unwrap_or(&p.user),
        }
    }

    /// Whether `guard` enforces for the principal whose id (key or user) is `subject`. The
    /// guard's name keys the hash so two guards at 10 % do not land on the same callers.
    pub fn enforces(&self, guard: &str, subject: &str) -> bool {
        let by: &[u8] = match self.by {
            RolloutBy::Key => b"key",
            RolloutBy::User => b"user",
        };
        let h = Fnv::new()
            .bytes(b"portcullis-rollout")
            .end_part()
            .bytes(guard.as_bytes())
            .end_part()
            .bytes(by)
            .end_part()
            .bytes(subject.as_bytes())
            .end_part()
            .finish();
        // FNV's low bits mix poorly for short inputs; fold the high half in before bucketing.
        (h ^ (h >> 32)) % BUCKETS < u64::from(self.percent) * (BUCKETS / 100)
    }

    /// The mode an enforcing stage of `guard` runs in for `p`.
    pub fn mode_for(&self, guard: &str, p: &Principal) -> Mode {
        if self.enforces(guard, self.subject(p)) {
            Mode::Enforce
        } else {
            Mode::Monitor
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn share(r: &Rollout, guard: &str, n: usize) -> usize {
        (0..n)
            .filter(|i| r.enforces(guard, &format!("key_{i:05}")))
            .count()
    }

    #[test]
    fn thirty_percent_of_a_thousand_principals_within_tolerance() {
        let r = Rollout::new(30, RolloutBy::Key);
        let n = share(&r, "injection", 1000);
        assert!((250..=350).contains(&n), "30 % of 1000 gave {n}");
        let n = share(&r, "injection", 20_000);
        assert!((5_700..=6_300).contains(&n), "30 % of 20000 gave {n}");
    }

    #[test]
    fn the_draw_is_stable_and_a_fixed_function_of_its_inputs() {
        let r = Rollout::new(30, RolloutBy::Key);
        let first: Vec<bool> = (0..500)
            .map(|i| r.enforces("injection", &format!("k{i}")))
            .collect();
        let again: Vec<bool> = (0..500)
            .map(|i| r.enforces("injection", &format!("k{i}")))
            .collect();
        assert_eq!(first, again);
        // Pinned values: a change to the hash would silently reshuffle who is enforced after
        // an upgrade; this fails instead.
        let pinned: Vec<usize> = (0..40)
            .filter(|i| r.enforces("injection", &format!("k{i}")))
            .collect();
        assert_eq!(pinned, PINNED.to_vec());
    }

    const PINNED: [usize; 12] = [0, 15, 24, 26, 29, 31, 33, 34, 35, 36, 38, 39];

    #[test]
    fn shares_nest_and_the_ends_are_all_or_nothing() {
        let ids: Vec<String> = (0..2000).map(|i| format!("u{i}")).collect();
        let at = |p: u8| -> Vec<bool> {
            let r = Rollout::new(p, RolloutBy::User);
            ids.iter().map(|id| r.enforces("pii", id)).collect()
        };
        let (ten, fifty) = (at(10), at(50));
        assert!(
            ten.iter().zip(&fifty).all(|(a, b)| !a || *b),
            "raising the share keeps everyone already enforced"
        );
        assert!(at(0).iter().all(|e| !e));
        assert!(at(100).iter().all(|e| *e));
    }

    #[test]
    fn guards_draw_independently_and_users_share_their_draw() {
        let r = Rollout::new(50, RolloutBy::Key);
        let differ = (0..1000)
            .filter(|i| {
                let id = format!("k{i}");
                r.enforces("injection", &id) != r.enforces("pii", &id)
            })
            .count();
        assert!(differ > 300, "guards drew the same callers: {differ}");
        let by_user = Rollout::new(50, RolloutBy::User);
        let p = |key: &str| Principal {
            key_id: key.into(),
            user: "ann".into(),
            ..Principal::default()
        };
        let modes: Vec<Mode> = (0..20)
            .map(|i| by_user.mode_for("injection", &p(&format!("k{i}"))))
            .collect();
        assert!(modes.iter().all(|m| *m == modes[0]), "{modes:?}");
        let service = Principal {
            end_user: Some("bob".into()),
            ..p("svc")
        };
        assert_eq!(by_user.subject(&service), "bob");
    }
}
