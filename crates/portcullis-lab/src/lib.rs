//! The shared tools of Portcullis's training and evaluation commands (`portcullis train …`,
//! `portcullis eval …`): data-set naming, the L-BFGS solver and steady-state timing. Only the
//! detectors' `lab` features link it, so the gateway built without `lab` ships no trainer.
//!
//! May depend on nothing of Portcullis's own: the detector crates depend on it, not it on them.
//!
//! # Layout
//! - [`dataset_name`]: which set a file holds, for per-set figures and licence checks.
//! - [`lbfgs`]: the minimiser the regressions are solved with.
//! - [`throughput`]: how `eval` times a detector.

pub mod lbfgs;
pub mod throughput;

/// The name of the data set a file holds: its stem, or its folder for `…/<set>/data.jsonl`.
pub fn dataset_name(path: &std::path::Path) -> String {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    if stem != "data" {
        return stem;
    }
    path.parent()
        .and_then(|d| d.file_name())
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or(stem)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_data_file_is_named_by_its_folder_and_others_by_their_stem() {
        let p = std::path::Path::new("../shared/data/xstest/data.jsonl");
        assert_eq!(dataset_name(p), "xstest");
        assert_eq!(
            dataset_name(std::path::Path::new("m/openai_moderation.jsonl")),
            "openai_moderation"
        );
    }
}
