//! The small policy guards over what a request may carry: how big it is, which model
//! parameters it may use, and which personal data and credentials may leave (the detectors
//! are in `portcullis-pii`; injection and moderation are crates of their own).
//!
//! It depends on `portcullis-core` and `portcullis-pii` only: no I/O, no gateway, no store.
//!
//! # Layout
//! - [`unicode`]: hidden text (Unicode tag characters) stripped before the model sees it.
//! - [`size`]: body, message and token limits.
//! - [`links`]: links and images in answers that point outside an allow-list (exfiltration).
//! - [`params`]: the model parameter policy (allow-list, clamps, overrides) per team, key, route.
//! - [`pii`]: what happens to each kind of personal data and credential (redact, pseudonymise,
//!   hash, block).

pub mod links;
pub mod params;
pub mod pii;
pub mod size;
pub mod unicode;

pub use links::{LinkAction, LinksConfig, LinksGuard};
pub use params::{ParamPolicy, ParamRule, ParamsConfig, ParamsGuard, Preset};
pub use pii::{PiiAction, PiiConfig, PiiGuard};
pub use size::{SizeConfig, SizeGuard};
pub use unicode::{HiddenAction, UnicodeConfig, UnicodeGuard};

/// A guard's configuration does not make sense; the message names the setting.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);
