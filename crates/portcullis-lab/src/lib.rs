//! The shared tools of Portcullis's training and evaluation commands (`portcullis train …`,
//! `portcullis eval …`): reading the data sets and writing weights, licence checks, the
//! reported metrics, the L-BFGS solver and steady-state timing. Only the detectors' `lab`
//! features link it, so the gateway built without `lab` ships no trainer.
//!
//! May depend on nothing of Portcullis's own (and has no dependencies at all): the detector
//! crates depend on it, not it on them.
//!
//! # Layout
//! - [`LabError`]: why a lab command failed. [`files`]: reading sets, writing weights.
//! - [`dataset_name`]: which set a file holds, for per-set figures and licence checks.
//! - [`licence`]: which sets and rows may train shipped weights.
//! - [`metrics`]: precision, recall, F1, ROC AUC, recall at a false-positive rate, AUPRC.
//! - [`lbfgs`]: the minimiser the regressions are solved with.
//! - [`throughput`]: how `eval` times a detector.

mod error;
pub mod files;
pub mod lbfgs;
pub mod licence;
pub mod metrics;
pub mod throughput;

pub use error::LabError;

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
