//! Guards over what a request may carry: how big it is, which model parameters it may use,
//! and which personal data and credentials may leave (the detectors are in
//! `portcullis-pii`). Injection and moderation live in their own crates.

pub mod params;
pub mod pii;
pub mod size;

pub use params::{ParamPolicy, ParamRule, ParamsConfig, ParamsGuard, Preset};
pub use pii::{PiiAction, PiiConfig, PiiGuard};
pub use size::{SizeConfig, SizeGuard};

/// A guard's configuration does not make sense; the message names the setting.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);
