//! Prompt-injection and jailbreak defences for Portcullis: detection that sees through
//! disguises (normalisation, decoded payloads), named rules for the known attack families
//! plus a learned classifier trained by `portcullis train injection` (weights embedded),
//! spotlighting of untrusted text behind per-request boundaries, and canary tokens.
//!
//! # Layout
//! - [`normalize`]: folding disguises, decoding hidden payloads.
//! - [`rules`]: the attack families as patterns. [`detector`]: the model and one score per text.
//! - [`guard`]: [`InjectionGuard`], [`SpotlightGuard`], [`CanaryGuard`] and their configs.
//! - [`lab`]: training and evaluation on `../shared/data/`.

pub mod detector;
pub mod guard;
#[cfg(feature = "lab")]
pub mod lab;
pub mod normalize;
pub mod rules;

pub use detector::{Detector, Score};
pub use guard::{
    CanaryConfig, CanaryGuard, ConfigError, InjectionConfig, InjectionGuard, OnAttack,
    SourcePolicy, SpotlightConfig, SpotlightGuard, SpotlightMode,
};
