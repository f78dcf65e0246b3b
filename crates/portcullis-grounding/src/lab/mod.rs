//! Evaluation of the groundedness check on the RAG sets in `../shared/data/` — the code behind
//! `portcullis eval grounding`. Nothing is trained: the check has no weights.
//!
//! # Layout
//! - `data`: the sets' rows as [`Record`]s (character spans turned into byte ranges).
//! - `evaluate`: [`eval`], the contract's metrics, per-set figures within bands of equal
//!   answer length, and the predictions file.

mod data;
mod evaluate;

pub use data::{Record, load};
pub use evaluate::{Evaluation, eval, evaluate};
pub use portcullis_lab::LabError;
