//! Undoing the disguises attackers put on instructions before anything judges them: hidden
//! and bidi characters, compatibility forms, look-alike letters, leetspeak, spaced-out or
//! punctuation-split letters, stretched letters — and hidden payloads in base64, hex,
//! URL-encoding, ROT13, `\uXXXX` escapes or reversed text, decoded to a bounded depth.
//!
//! # Layout
//! - `fold`: [`fold`], which undoes the character-level disguises.
//! - `decode`: [`readings`], the hidden payloads, and [`rot13`] and [`reversed`] text.
//! - `morse`: Morse code, one of the payloads.

mod decode;
mod fold;
mod morse;

pub use decode::{readings, reversed, rot13};
pub use fold::fold;
