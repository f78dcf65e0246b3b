//! The learned tagger for names, places, organisations, street addresses and the other entity
//! kinds that have no checksum: an averaged perceptron over hashed token features, decoded
//! greedily left to right under BIO constraints. Small (a few MB of i16 weights), fast (no
//! allocation per token beyond the token list), and trained by `portcullis train pii`.
//!
//! # Layout
//! - `tags`: the tag set (`O`, `B-T`, `I-T` for each of [`TYPES`]).
//! - `tokens`: words and punctuation, the units that are tagged.
//! - `lexicon`: what the training data says about each lower-case word.
//! - `features`: per-token hashes and the feature keys of one token.
//! - `model`: the weight table and its file format.
//! - `shape`: what a tagged span must look like to be kept (a postcode has digits, a name a
//!   capital in cased text), and its edges trimmed to the value.
//! - `tagger`: greedy BIO decoding and the spans it yields; the shipped weights.
//! - `train` (feature `lab`): gold tags, the lexicon builder and the averaged perceptron.

mod features;
mod lexicon;
mod model;
pub(crate) mod shape;
mod tagger;
mod tags;
mod tokens;
#[cfg(feature = "lab")]
mod train;

pub use features::NF;
pub use lexicon::{COMMON, Lexicon, PreHashed};
pub use model::Model;
pub use tagger::{Span, Tagger};
pub use tags::{NT, TYPES, tag_for};
pub use tokens::{Token, tokenize};
#[cfg(feature = "lab")]
pub use train::{Trainer, gold_tags, lexicon};
