//! What every Portcullis crate shares: the OpenAI chat types, the guard contract, the pipeline
//! that runs guards in order, stream windows, text normalisation and token counting — so a Rust
//! program can embed the same checks the gateway runs.
//!
//! It may depend on no other Portcullis crate and does no I/O: no sockets, no SQL, no files.
//! Detectors (`portcullis-pii`, `portcullis-injection`, `portcullis-moderation`) build on it.
//!
//! # Layout
//! - [`chat`]: the request types, typed where the gateway governs and pass-through elsewhere.
//! - [`segment`]: every piece of text in a request or answer, with where it lives.
//! - [`guard`]: the [`Guard`] trait, [`Verdict`], [`Edit`].
//! - [`pipeline`]: [`Pipeline`] and [`Stage`]: order, mode, failure policy, applying edits.
//! - [`documents`]: retrieved documents a request carries (the `portcullis` extension).
//! - [`context`]: the per-request [`Context`]: principal, nonce, pseudonym vault, trace.
//! - [`stream`]: windows over a streamed answer, so output guards can act before text is sent.
//! - [`text`]: normalisation shared by detectors. [`tokens`]: real token counts.
//! - [`hash`]: stable hashing the learned detectors share (feature hashing, data splits).
//! - [`finding`]: [`Finding`], what a guard saw and where.
//! - [`error`]: [`ApiError`], the OpenAI-shaped error every refusal becomes.

pub mod chat;
pub mod context;
pub mod documents;
pub mod error;
pub mod finding;
pub mod guard;
pub mod hash;
pub mod pipeline;
pub mod segment;
pub mod stream;

pub mod text;
pub mod tokens;

pub use chat::{ChatRequest, Content, Message, Role, Usage};
pub use context::{Context, Direction, GuardRecord, Outcome, Principal, Vault};
pub use error::ApiError;
pub use finding::Finding;
pub use guard::{Action, Edit, Guard, GuardError, Input, Output, Verdict, Window};
pub use pipeline::{FailureMode, Mode, Pipeline, Rollout, RolloutBy, Stage};
pub use segment::{Location, Segment, Source};
pub use stream::{Holdback, StreamScanner, open_link};
