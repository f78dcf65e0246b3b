//! Model parameter policy: which models a caller may use, and for each sampling parameter
//! whether it is defaulted, clamped, forced or refused — so a prompt cannot buy itself a
//! hotter, longer or tool-wielding model than policy allows.
//!
//! # Layout
//! - `config`: `[params]` as written ([`ParamsConfig`], [`ParamRule`], the presets), refined
//!   per team, key or route and resolved into a validated [`ParamPolicy`].
//! - `policy`: a resolved [`ParamPolicy`] and the edits or refusal it makes to one request.
//! - `guard`: [`ParamsGuard`], which picks the policy for a request and reports what it did.

mod config;
mod guard;
mod policy;

pub use config::{GOVERNED, OutOfRange, ParamRule, ParamsConfig, Preset};
pub use guard::ParamsGuard;
pub use policy::ParamPolicy;
