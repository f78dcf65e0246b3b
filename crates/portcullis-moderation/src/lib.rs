//! Moderation for Portcullis: a local classifier that runs offline (trained from public data
//! by `portcullis train moderation`, weights embedded), a provider contract that the gateway
//! implements for an upstream `/v1/moderations`, and the guard that judges requests and
//! answers — streams included — with per-category thresholds, a cache and a fallback.
//!
//! # Layout
//! - [`classifier`]: features, the model, its embedded weights.
//! - [`guard`]: [`ModerationGuard`], [`ModerationConfig`], the [`Moderator`] contract.
//! - [`lab`]: training and evaluation on `../shared/data/moderation/`.
//! - [`rules`]: curated patterns (threats, dehumanisation) the sets barely hold.

pub mod classifier;
pub mod guard;
#[cfg(feature = "lab")]
pub mod lab;
pub mod rules;

pub use guard::{
    LocalModerator, Moderation, ModerationConfig, ModerationGuard, Moderator, ProviderError,
    ProviderKind,
};
