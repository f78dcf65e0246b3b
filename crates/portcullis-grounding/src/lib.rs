//! Groundedness for RAG: does the answer say only what the retrieved documents say?
//!
//! An answer is split into claims (sentences, with byte spans, [`claims`]); each claim's key
//! items — numbers, dates, quantities, quoted strings, URLs and capitalised names — must
//! appear in the documents, and its content words and word pairs should ([`terms`],
//! [`support`]). The scores are plain features combined by fixed rules: no weights, no model,
//! no I/O, a few microseconds per answer. [`GroundingGuard`] applies a policy to them.
//!
//! The evaluation (`portcullis eval grounding`) is behind the `lab` feature.

pub mod claims;
pub mod guard;
pub mod support;
pub mod terms;

#[cfg(feature = "lab")]
pub mod lab;

pub use claims::{Claim, split_claims};
pub use guard::{GroundingAction, GroundingConfig, GroundingGuard};
pub use support::{ClaimSupport, Documents, Report, check};
