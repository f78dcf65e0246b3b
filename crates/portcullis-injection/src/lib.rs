//! Prompt-injection and jailbreak defences for Portcullis: detection that sees through
//! disguises (normalisation, decoded payloads), named rules for the known attack families
//! plus a learned classifier trained by `portcullis train injection` (weights embedded),
//! spotlighting of untrusted text behind per-request boundaries, and canary tokens.
//!
//! It depends on `portcullis-core`, and on `portcullis-lab` only with the `lab` feature; never
//! on the gateway, the store or the limits. Inference (everything but `lab`) uses no lab code.
//!
//! # Layout
//! - [`normalize`]: folding disguises, decoding hidden payloads (and Morse code).
//! - [`rules`]: the attack families as patterns.
//! - [`detector`]: one calibrated score per text: features, the stacking layer, how a document
//!   is cut, every reading of a text, the embedded model.
//! - [`guard`]: [`InjectionGuard`], [`SpotlightGuard`], [`CanaryGuard`], a file each, with
//!   their configs.
//! - `lab` (feature `lab`): training and evaluation on `../shared/data/`: the sets, the fit,
//!   the out-of-fold calibration, `eval` and `train`.

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
pub use guard::{LeakAction, LeakConfig, SystemPromptLeakGuard};
