//! `portcullis promote` / `demote`: a guard's mode switched between monitor and enforce by
//! rewriting its `mode` line in the config file — comments and everything else kept — after
//! checking the shadow evidence against `[review]`'s floor. The running gateway then picks
//! the file up through its ordinary reload (SIGHUP or `POST /admin/reload`).

use super::ReviewConfig;
use super::stats::GuardStats;
use crate::config::{Config, ConfigError, INPUT_GUARDS, OUTPUT_GUARDS};
use portcullis_core::Mode;
use std::path::Path;

/// Why a promotion or demotion did not happen; the file is unchanged.
#[derive(Debug, thiserror::Error)]
pub enum PromoteError {
    #[error("no guard named '{0}'; guards: {list}", list = guard_names().join(", "))]
    UnknownGuard(String),
    #[error(
        "'{guard}' has {labelled} labelled would-blocks; promotion needs review.min_labels = {needed}. Label more with 'portcullis review next --guard {guard}', or pass --force"
    )]
    TooFewLabels {
        guard: String,
        labelled: u64,
        needed: u64,
    },
    #[error(
        "'{guard}' labelled precision is {precision:.3} ({right} right of {labelled}, 95 % interval {lo:.3}–{hi:.3}), below review.min_precision = {floor}; enforcing it would refuse legitimate requests. Tune the guard, or pass --force"
    )]
    BelowFloor {
        guard: String,
        precision: f64,
        right: u64,
        labelled: u64,
        lo: f64,
        hi: f64,
        floor: f64,
    },
    #[error("{0}")]
    Settings(String),
    #[error("the rewritten file would not load, so it was not written: {0}")]
    Invalid(ConfigError),
    #[error(
        "could not set {guard}.mode in {path} (is the section written inline?); edit it by hand"
    )]
    NotRewritable { guard: String, path: String },
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

/// Every guard with a section.
pub fn guard_names() -> Vec<&'static str> {
    let mut v: Vec<&str> = INPUT_GUARDS.to_vec();
    v.extend(OUTPUT_GUARDS.iter().filter(|g| !INPUT_GUARDS.contains(g)));
    v
}

/// The configured mode of `guard`'s section.
pub fn section_mode(c: &Config, guard: &str) -> Option<Mode> {
    Some(match guard {
        "unicode" => c.unicode.mode,
        "size" => c.size.mode,
        "params" => c.params.mode,
        "pii" => c.pii.mode,
        "injection" => c.injection.mode,
        "spotlight" => c.spotlight.mode,
        "canary" => c.canary.mode,
        "moderation" => c.moderation.mode,
        "grounding" => c.grounding.mode,
        _ => return None,
    })
}

/// Whether `stats` clear the `[review]` floor for promoting `guard`.
pub fn check_floor(
    guard: &str,
    stats: Option<&GuardStats>,
    review: &ReviewConfig,
) -> Result<(), PromoteError> {
    if let Some((key, problem)) = review.problem() {
        return Err(PromoteError::Settings(format!("{key}: {problem}")));
    }
    let empty = GuardStats::default();
    let s = stats.unwrap_or(&empty);
    if s.labelled() < review.min_labels.max(1) {
        return Err(PromoteError::TooFewLabels {
            guard: guard.to_owned(),
            labelled: s.labelled(),
            needed: review.min_labels.max(1),
        });
    }
    let precision = s.precision().unwrap_or(0.0);
    if precision < review.min_precision {
        let (lo, hi) = s.precision_interval().unwrap_or((0.0, 1.0));
        return Err(PromoteError::BelowFloor {
            guard: guard.to_owned(),
            precision,
            right: s.right,
            labelled: s.labelled(),
            lo,
            hi,
            floor: review.min_precision,
        });
    }
    Ok(())
}

/// `text` with `guard`'s `mode` set to `mode`: the line replaced in its `[guard]` table, added
/// under the header when the table has none, or a new table appended when the file has none.
pub fn set_mode(text: &str, guard: &str, mode: Mode) -> String {
    let line = format!("mode = \"{}\"\n", mode.as_str());
    let header = format!("[{guard}]");
    let mut lines: Vec<String> = text.split_inclusive('\n').map(str::to_owned).collect();
    let bare = |l: &str| l.split('#').next().unwrap_or_default().trim().to_owned();
    let Some(at) = lines.iter().position(|l| bare(l) == header) else {
        let mut out = text.to_owned();
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(&format!("\n{header}\n{line}"));
        return out;
    };
    let end = lines[at + 1..]
        .iter()
        .position(|l| bare(l).starts_with('['))
        .map_or(lines.len(), |i| at + 1 + i);
    let existing = (at + 1..end).find(|&i| {
        let b = bare(&lines[i]);
        b.strip_prefix("mode")
            .is_some_and(|rest| rest.trim_start().starts_with('='))
    });
    match existing {
        Some(i) => lines[i] = line,
        None => {
            if !lines[at].ends_with('\n') {
                lines[at].push('\n');
            }
            lines.insert(at + 1, line);
        }
    }
    lines.concat()
}

/// Rewrites `path` so `guard` runs in `mode`, after checking that the result loads and says
/// what was asked; written to a temporary file and renamed, so a reload never reads half a
/// file. Returns the mode the guard had.
pub fn rewrite(path: &Path, guard: &str, mode: Mode) -> Result<Mode, PromoteError> {
    if !guard_names().contains(&guard) {
        return Err(PromoteError::UnknownGuard(guard.to_owned()));
    }
    let shown = path.display().to_string();
    let old_text = std::fs::read_to_string(path).map_err(|source| PromoteError::Write {
        path: shown.clone(),
        source,
    })?;
    let before = Config::parse(&old_text, &shown).map_err(PromoteError::Invalid)?;
    let was = section_mode(&before, guard).unwrap_or_default();
    let new_text = set_mode(&old_text, guard, mode);
    let after = Config::parse(&new_text, &shown).map_err(PromoteError::Invalid)?;
    if section_mode(&after, guard) != Some(mode) {
        return Err(PromoteError::NotRewritable {
            guard: guard.to_owned(),
            path: shown,
        });
    }
    let tmp = path.with_extension("toml.portcullis-tmp");
    let write = |source| PromoteError::Write {
        path: shown.clone(),
        source,
    };
    std::fs::write(&tmp, new_text).map_err(write)?;
    std::fs::rename(&tmp, path).map_err(write)?;
    Ok(was)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_mode_replaces_adds_or_appends_and_keeps_the_rest() {
        let text = "# policy\n[injection]\nmode = \"monitor\"  # trying it\nthreshold = 0.8\n\n[pii]\nmode = \"monitor\"\n";
        let out = set_mode(text, "injection", Mode::Enforce);
        assert_eq!(
            out,
            "# policy\n[injection]\nmode = \"enforce\"\nthreshold = 0.8\n\n[pii]\nmode = \"monitor\"\n"
        );
        let out = set_mode(
            "[injection]\nthreshold = 0.8\n[injection.x]\nmode = 1\n",
            "injection",
            Mode::Monitor,
        );
        assert_eq!(
            out,
            "[injection]\nmode = \"monitor\"\nthreshold = 0.8\n[injection.x]\nmode = 1\n"
        );
        let out = set_mode("[server]\nlisten = \"x\"", "pii", Mode::Monitor);
        assert_eq!(
            out,
            "[server]\nlisten = \"x\"\n\n[pii]\nmode = \"monitor\"\n"
        );
        // `moderation_x = …` or a sub-table's mode is not the section's mode.
        let out = set_mode("[canary]\nmodes = 2\n", "canary", Mode::Enforce);
        assert_eq!(out, "[canary]\nmode = \"enforce\"\nmodes = 2\n");
    }

    #[test]
    fn rewrite_checks_the_result_and_refuses_what_would_not_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gw.toml");
        std::fs::write(&path, "[injection]\nmode = \"monitor\"\n").unwrap();
        assert_eq!(
            rewrite(&path, "injection", Mode::Enforce).unwrap(),
            Mode::Monitor
        );
        let c = Config::load(Some(&path)).unwrap();
        assert_eq!(c.injection.mode, Mode::Enforce);
        // Demoting a guard under a rollout would leave `rollout` on a monitor: refused, unchanged.
        let rolled = "[injection]\nrollout = 10\n";
        std::fs::write(&path, rolled).unwrap();
        let e = rewrite(&path, "injection", Mode::Monitor).unwrap_err();
        assert!(matches!(e, PromoteError::Invalid(_)), "{e}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), rolled);
        assert!(matches!(
            rewrite(&path, "nosuch", Mode::Enforce),
            Err(PromoteError::UnknownGuard(_))
        ));
        std::fs::write(&path, "injection = { mode = \"monitor\" }\n").unwrap();
        assert!(rewrite(&path, "injection", Mode::Enforce).is_err());
    }

    fn stats(right: u64, wrong: u64) -> GuardStats {
        GuardStats {
            guard: "injection".into(),
            right,
            wrong,
            ..GuardStats::default()
        }
    }

    #[test]
    fn the_floor_needs_enough_labels_and_enough_precision() {
        let review = ReviewConfig {
            min_precision: 0.9,
            min_labels: 20,
            days: 30,
        };
        let e = check_floor("injection", Some(&stats(10, 0)), &review).unwrap_err();
        assert!(
            matches!(e, PromoteError::TooFewLabels { labelled: 10, .. }),
            "{e}"
        );
        assert!(matches!(
            check_floor("injection", None, &review),
            Err(PromoteError::TooFewLabels { labelled: 0, .. })
        ));
        let e = check_floor("injection", Some(&stats(17, 3)), &review).unwrap_err();
        assert!(
            e.to_string().contains("0.850") && e.to_string().contains("--force"),
            "{e}"
        );
        assert!(check_floor("injection", Some(&stats(18, 2)), &review).is_ok());
        let bad = ReviewConfig {
            min_precision: 90.0,
            ..review
        };
        assert!(matches!(
            check_floor("injection", Some(&stats(18, 2)), &bad),
            Err(PromoteError::Settings(_))
        ));
    }
}
