//! The local moderation classifier: one-vs-rest logistic regression over IDF-weighted,
//! length-normalised hashed word uni/bi-grams, character 3- to 5-grams within words (robust to
//! misspellings and not English-only) and a profanity-lexicon feature, plus the curated
//! [`rules`](crate::rules) on the `content` gate and [`requests`](crate::requests) on the
//! `request` gate. A text of several sentences is judged whole
//! and sentence by sentence. Weights are trained by `portcullis train moderation` and
//! embedded; inference is allocation-light and well under a millisecond per message.
//!
//! # Layout
//! - `features`: a text's [`words`], its hashed [`features`] and its [`sentences`].
//! - `model`: the heads ([`HEADS`]), the [`Model`], its [`Scores`] and its embedded format.

mod features;
mod model;

pub use features::{DIMS, features, named_features, sentences, words};
pub use model::{FIRST_CATEGORY, GATES, HEADS, Model, POLICY, Scores, gates, rule_logits};
