//! Training and evaluation on the PII span sets in `../shared/data/` — the code behind
//! `portcullis train pii` and `portcullis eval pii`.
//!
//! Data types are Presidio's names; [`MAPPING`] maps them to ours. A predicted span counts
//! when it overlaps a gold span of the same (mapped) type; predictions of types a file never
//! annotates are not scored against it (a set without e-mail labels says nothing about
//! e-mails). Training is deterministic; `train` first reports template-grouped out-of-fold
//! figures (the honest estimate), then fits the shipped model on everything.
//!
//! # Layout
//! - `data`: reading the span sets and prose sets; Presidio's type names.
//! - `scoring`: precision, recall and F1 per data type.
//! - `eval`: `portcullis eval pii`.
//! - `train`: `portcullis train pii` (out-of-fold figures, then the shipped model).

mod data;
mod eval;
mod scoring;
mod train;

pub use data::{Example, MAPPING, load, ours};
pub use eval::eval;
pub use portcullis_lab::LabError;
pub use scoring::Scorer;
pub use train::train;

/// Why [`load`] found nothing to train or score on.
const NO_PII_ROWS: &str =
    "no PII rows found: pass the PII span sets (presidio_synth_v2, presidio_generated_large)";
