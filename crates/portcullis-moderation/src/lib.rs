//! Moderation for Portcullis: a local classifier that runs offline (trained from public data
//! by `portcullis train moderation`, weights embedded), a provider contract that the gateway
//! implements for an upstream `/v1/moderations`, and the guard that judges requests and
//! answers — streams included — with per-category thresholds, a cache and a fallback.
//!
//! It depends on `portcullis-core`, and on `portcullis-lab` only with the `lab` feature; never
//! on the gateway, the store or the limits. Inference (everything but `lab`) uses no lab code.
//!
//! # Layout
//! - [`classifier`]: a text's features, and the model with its embedded weights.
//! - [`requests`]: curated patterns for plainly harmful requests (the `request` gate's rules).
//! - [`rules`]: curated patterns (threats, dehumanisation) the sets barely hold.
//! - [`explain`]: why the classifier scored a text as it did ([`explain()`](explain::explain)),
//!   for `portcullis scan --explain`; off the hot path.
//! - [`provider`]: the [`Moderator`] contract, and the classifier as a [`LocalModerator`].
//! - [`guard`]: [`ModerationGuard`] and [`ModerationConfig`].
//! - `lab` (feature `lab`): training and evaluation on `../shared/data/moderation/`: the sets,
//!   the fit, the out-of-fold choices, `eval` and `train`.

pub mod classifier;
pub mod explain;
pub mod guard;
#[cfg(feature = "lab")]
pub mod lab;
pub mod provider;
pub mod requests;
pub mod rules;

pub use explain::{Contribution, Explanation, GateExplanation, explain};
pub use guard::{ModerationConfig, ModerationGuard, ProviderKind};
pub use provider::{HARMFUL_REQUEST, LocalModerator, Moderation, Moderator, ProviderError};
