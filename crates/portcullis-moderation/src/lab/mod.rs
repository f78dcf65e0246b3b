//! Training and evaluation of the local classifier on `../shared/data/moderation/` — the code
//! behind `portcullis train moderation` and `portcullis eval moderation`.
//!
//! Training is deterministic and uses only sets whose licences allow shipped weights (see
//! SOURCES.md). Out-of-fold scores (folds by a hash of the text) choose the sentence offset,
//! the policy head's weight, each gate's cut and the flagged threshold.
//!
//! # Layout
//! - `data`: the sets' rows as [`Example`]s, which sets may train, what each head learns.
//! - `fit`: the heads, by L2-regularised logistic regression over IDF-weighted features.
//! - `calibrate`: what is chosen on out-of-fold scores: offset, weight, cuts, threshold.
//! - `evaluate`: [`eval`] and [`evaluate()`], the contract's metrics on labelled sets.
//! - `ordinary`: ordinary requests the project composes itself, clean rows for the `request`
//!   gate.
//! - `train`: [`train()`], the whole training command, with its out-of-fold figures.

mod calibrate;
mod data;
mod evaluate;
mod fit;
mod ordinary;
mod train;

pub use data::{Example, NOT_TRAINABLE, load};
pub use evaluate::{eval, evaluate};
pub use fit::fit;
pub use ordinary::{ORDINARY_SET, generate as ordinary};
pub use portcullis_lab::LabError;
pub use train::train;

/// An example of set `t` with `label` and categories `cats`.
#[cfg(test)]
fn ex(text: &str, label: u8, cats: &[&str]) -> Example {
    Example {
        text: text.into(),
        label,
        categories: cats.iter().map(|c| c.to_string()).collect(),
        dataset: "t".into(),
        source: String::new(),
    }
}
