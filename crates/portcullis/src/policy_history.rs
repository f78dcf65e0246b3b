//! Policy history: every change of a guard's mode or rollout share is recorded in the store —
//! when, from what, to what, how (`promote`, `demote`, `reload (SIGHUP)`, `reload (admin API)`,
//! `start`) and by whom — so that the compliance report can say since when a guard enforces
//! for whom. A change is compared with the store's latest record of the guard, so replicas
//! that reload the same file after one another (or after `promote` recorded it) add nothing.

use crate::config::Config;
use crate::review::promote::guard_names;
use portcullis_core::{Mode, Rollout, RolloutBy};
use portcullis_store::{PolicyEvent, Store, StoreError};

/// The `from` of a change nothing was recorded before.
pub const UNRECORDED: &str = "unrecorded";

/// A guard's policy as the history writes it: off, monitor, enforce, or enforce for a share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuardState {
    /// Enforce, monitor or off.
    pub mode: Mode,
    /// With `mode = enforce` only: the share enforced, monitor for the rest.
    pub rollout: Option<Rollout>,
}

impl GuardState {
    /// As stored: `off`, `monitor`, `enforce`, `enforce 10% by user`.
    pub fn text(&self) -> String {
        match (self.mode, self.rollout) {
            (Mode::Enforce, Some(r)) => format!("enforce {}% by {}", r.percent, by_name(r.by)),
            (m, _) => m.as_str().to_owned(),
        }
    }

    /// The state `text` wrote, if it is one.
    pub fn parse(s: &str) -> Option<GuardState> {
        let plain = |mode| {
            Some(GuardState {
                mode,
                rollout: None,
            })
        };
        match s {
            "off" => plain(Mode::Off),
            "monitor" => plain(Mode::Monitor),
            "enforce" => plain(Mode::Enforce),
            _ => {
                let rest = s.strip_prefix("enforce ")?;
                let (percent, by) = rest.split_once("% by ")?;
                let by = match by {
                    "key" => RolloutBy::Key,
                    "user" => RolloutBy::User,
                    _ => return None,
                };
                Some(GuardState {
                    mode: Mode::Enforce,
                    rollout: Some(Rollout::new(percent.parse().ok()?, by)),
                })
            }
        }
    }

    /// For people: `enforced for 10 % of users (monitored for the rest)`.
    pub fn describe(&self) -> String {
        match (self.mode, self.rollout) {
            (Mode::Enforce, Some(r)) if r.percent < 100 => format!(
                "enforced for {} % of {}s (monitored for the rest)",
                r.percent,
                by_name(r.by)
            ),
            (Mode::Enforce, _) => "enforced for 100 %".into(),
            (Mode::Monitor, _) => "monitored (never blocks)".into(),
            (Mode::Off, _) => "off".into(),
        }
    }

    /// Released to part of the traffic, or watched without blocking: a limited release.
    pub fn staged(&self) -> bool {
        self.mode == Mode::Monitor
            || (self.mode == Mode::Enforce && self.rollout.is_some_and(|r| r.percent < 100))
    }
}

fn by_name(by: RolloutBy) -> &'static str {
    match by {
        RolloutBy::Key => "key",
        RolloutBy::User => "user",
    }
}

/// The mode and rollout of `guard`'s section, whatever the pipeline says.
fn section(c: &Config, guard: &str) -> Option<(Mode, Option<Rollout>)> {
    macro_rules! s {
        ($x:expr) => {
            Some(($x.mode, $x.rollout))
        };
    }
    match guard {
        "unicode" => s!(c.unicode),
        "size" => s!(c.size),
        "params" => s!(c.params),
        "pii" => s!(c.pii),
        "injection" => s!(c.injection),
        "spotlight" => s!(c.spotlight),
        "canary" => s!(c.canary),
        "moderation" => s!(c.moderation),
        "grounding" => s!(c.grounding),
        "links" => s!(c.output.links),
        "system_prompt" => s!(c.output.system_prompt),
        _ => None,
    }
}

/// What `guard` does under `c`: off when no pipeline runs it, else its section's mode.
pub fn state_of(c: &Config, guard: &str) -> GuardState {
    let runs =
        c.pipeline.input.iter().any(|g| g == guard) || c.pipeline.output.iter().any(|g| g == guard);
    match section(c, guard) {
        Some((mode, rollout)) if runs && mode != Mode::Off => GuardState {
            mode,
            rollout: rollout.filter(|_| mode == Mode::Enforce),
        },
        _ => GuardState {
            mode: Mode::Off,
            rollout: None,
        },
    }
}

/// How and by whom a change is made.
#[derive(Debug, Clone, Copy)]
pub struct Change<'a> {
    /// `promote`, `demote`, `reload (SIGHUP)`, `reload (admin API)`, `start`.
    pub how: &'a str,
    /// The operator's login, or the replica that reloaded.
    pub who: &'a str,
    /// When, in Unix milliseconds.
    pub now_ms: i64,
}

/// Records what changed for each of `guards` between `old` (what this process served; `None`
/// at start) and `new`, unless the store's history already says `new`. At start, with no
/// history for a guard, only a staged guard (monitor, or a share) is recorded. Returns what it
/// kept.
pub async fn record_changes(
    store: &Store,
    guards: &[&str],
    old: Option<&Config>,
    new: &Config,
    change: Change<'_>,
) -> Result<Vec<PolicyEvent>, StoreError> {
    let latest = store.latest_policy_events().await?;
    let mut kept = Vec::new();
    for &guard in guards {
        let to = state_of(new, guard);
        let recorded = latest.get(guard).map(|e| e.to.clone());
        if recorded.as_deref() == Some(to.text().as_str()) {
            continue;
        }
        let before = old.map(|o| state_of(o, guard)).filter(|b| *b != to);
        let from = match (before, &recorded) {
            (Some(b), _) => b.text(),
            (None, Some(r)) => r.clone(),
            (None, None) if old.is_none() && to.staged() => UNRECORDED.to_owned(),
            (None, None) => continue,
        };
        let e = PolicyEvent {
            time_ms: change.now_ms,
            guard: guard.to_owned(),
            from,
            to: to.text(),
            how: change.how.to_owned(),
            who: change.who.to_owned(),
        };
        store.record_policy_event(&e).await?;
        kept.push(e);
    }
    Ok(kept)
}

/// Records, at start or after a reload, how every guard's policy changed (see
/// [`record_changes`]); a store that cannot take it is logged, not fatal: the policy serves.
pub async fn record_served(
    store: &Store,
    old: Option<&Config>,
    new: &Config,
    how: &str,
    who: &str,
) {
    let change = Change {
        how,
        who,
        now_ms: portcullis_store::now_ms(),
    };
    match record_changes(store, &guard_names(), old, new, change).await {
        Ok(kept) => {
            for e in kept {
                tracing::info!(guard = %e.guard, from = %e.from, to = %e.to, how, "policy change recorded");
            }
        }
        Err(e) => tracing::warn!(error = %e, how, "policy change not recorded in the store"),
    }
}

/// Who runs this command, for the history: the login name, or `unknown`.
pub fn operator() -> String {
    ["USER", "LOGNAME", "USERNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|s| !s.trim().is_empty()))
        .unwrap_or_else(|| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        Config::parse(text, "gw.toml").unwrap()
    }

    #[test]
    fn states_round_trip_and_say_what_they_mean() {
        for s in [
            "off",
            "monitor",
            "enforce",
            "enforce 10% by user",
            "enforce 0% by key",
        ] {
            assert_eq!(GuardState::parse(s).unwrap().text(), s);
        }
        assert_eq!(GuardState::parse("enforce 10% by team"), None);
        assert_eq!(GuardState::parse("sometimes"), None);
        let ten = GuardState::parse("enforce 10% by user").unwrap();
        assert_eq!(
            ten.describe(),
            "enforced for 10 % of users (monitored for the rest)"
        );
        assert!(ten.staged());
        assert!(GuardState::parse("monitor").unwrap().staged());
        assert!(!GuardState::parse("enforce").unwrap().staged());
        assert!(!GuardState::parse("enforce 100% by key").unwrap().staged());
    }

    #[test]
    fn a_guard_no_pipeline_runs_is_off() {
        let c = config(
            "[pipeline]\ninput = [\"size\", \"moderation\"]\noutput = []\n[moderation]\nrollout = 10\nrollout_by = \"user\"\n[size]\nmode = \"monitor\"\n",
        );
        assert_eq!(state_of(&c, "moderation").text(), "enforce 10% by user");
        assert_eq!(state_of(&c, "size").text(), "monitor");
        assert_eq!(state_of(&c, "injection").text(), "off");
    }

    #[tokio::test]
    async fn changes_are_recorded_once_whoever_sees_them_first() {
        let dir = tempfile::tempdir().unwrap();
        let store = portcullis_store::open(&format!("sqlite://{}/s.db", dir.path().display()))
            .await
            .unwrap();
        let v1 = config("[moderation]\nrollout = 10\nrollout_by = \"user\"\n");
        // A start with no history records only the staged guard.
        let all = guard_names();
        let at = |how, who, now_ms| Change { how, who, now_ms };
        let kept = record_changes(&store, &all, None, &v1, at("start", "replica a", 1_000))
            .await
            .unwrap();
        assert_eq!(kept.len(), 1, "{kept:?}");
        assert_eq!(
            (
                kept[0].guard.as_str(),
                kept[0].from.as_str(),
                kept[0].to.as_str()
            ),
            ("moderation", UNRECORDED, "enforce 10% by user")
        );
        // A second replica starting on the same file adds nothing.
        assert!(
            record_changes(&store, &all, None, &v1, at("start", "replica b", 1_500))
                .await
                .unwrap()
                .is_empty()
        );
        // A reload to 100 % is recorded from what was served, once.
        let v2 = config("[injection]\nmode = \"monitor\"\n");
        let hup = at("reload (SIGHUP)", "replica a", 2_000);
        let kept = record_changes(&store, &all, Some(&v1), &v2, hup)
            .await
            .unwrap();
        let got: Vec<(&str, &str, &str)> = kept
            .iter()
            .map(|e| (e.guard.as_str(), e.from.as_str(), e.to.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("injection", "enforce", "monitor"),
                ("moderation", "enforce 10% by user", "enforce")
            ]
        );
        assert!(
            record_changes(
                &store,
                &all,
                Some(&v1),
                &v2,
                at("reload (SIGHUP)", "replica b", 2_100)
            )
            .await
            .unwrap()
            .is_empty()
        );
        // Only the guards asked about: a promotion records its own guard, nothing else.
        let v3 = config("[injection]\nmode = \"enforce\"\n[pii]\nmode = \"monitor\"\n");
        let kept = record_changes(
            &store,
            &["injection"],
            Some(&v2),
            &v3,
            at("promote", "ana", 3_000),
        )
        .await
        .unwrap();
        assert_eq!(kept.len(), 1);
        assert_eq!(
            (kept[0].from.as_str(), kept[0].to.as_str()),
            ("monitor", "enforce")
        );
        let history = store.policy_events(0, 100).await.unwrap();
        assert_eq!(history.len(), 4);
        assert_eq!(
            (history[2].how.as_str(), history[3].who.as_str()),
            ("reload (SIGHUP)", "ana")
        );
    }
}
