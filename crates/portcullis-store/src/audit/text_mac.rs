//! HMAC-SHA256 of what a request said and what it was answered, under the audit secret: the
//! record proves which text passed without keeping it. Anyone holding the secret and a text
//! (the client's copy of its prompt, the answer it received) recomputes the MAC and compares.
//! Without a secret there is no MAC at all — never one under a constant or a random key.
//!
//! Canonical input: for each message in order, `<role> <n>\n<text>\n`, where `<text>` is the
//! message's content as the client sent it (a string as is; an array of parts: the text of
//! its `text` parts joined by `\n`) and `<n>` its length in bytes (UTF-8). Routes without
//! messages use the role `input` for each input string. The output is the answer's text as
//! delivered, with no framing: a complete answer's choices' content in index order, a
//! stream's content deltas in the order they were sent.

use super::ChainKey;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// A running HMAC-SHA256 over text, fed as it passes (a stream's deltas one by one).
#[derive(Clone)]
pub struct TextMac(Hmac<Sha256>);

impl std::fmt::Debug for TextMac {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TextMac(..)")
    }
}

impl TextMac {
    /// A MAC under `key`'s secret; none without one.
    pub fn new(key: &ChainKey) -> Option<TextMac> {
        Hmac::<Sha256>::new_from_slice(key.secret()?)
            .ok()
            .map(TextMac)
    }

    /// Adds `text`.
    pub fn update(&mut self, text: &str) {
        self.0.update(text.as_bytes());
    }

    /// The MAC so far, hex (the running state is kept: more text may follow).
    pub fn hex(&self) -> String {
        hex::encode(self.0.clone().finalize().into_bytes())
    }
}

/// The canonical form of an input made of `(role, text)` messages (see the module docs).
pub fn canonical_input<'a>(messages: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut out = String::new();
    for (role, text) in messages {
        out.push_str(role);
        out.push(' ');
        out.push_str(&text.len().to_string());
        out.push('\n');
        out.push_str(text);
        out.push('\n');
    }
    out
}

/// HMAC-SHA256 (hex) of `text` under `key`; none without a key.
pub fn mac_hex(key: &ChainKey, text: &str) -> Option<String> {
    let mut m = TextMac::new(key)?;
    m.update(text);
    Some(m.hex())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_text_gets_the_same_mac_and_a_verifier_recomputes_it() {
        let key = ChainKey::new(b"0123456789abcdef0123456789abcdef");
        let text = canonical_input([("system", "be brief"), ("user", "héllo\nthere")]);
        assert_eq!(text, "system 8\nbe brief\nuser 12\nhéllo\nthere\n");
        let a = mac_hex(&key, &text).unwrap();
        assert_eq!(a, mac_hex(&key, &text).unwrap(), "deterministic");
        // A verifier with the secret computes plain HMAC-SHA256 over the canonical text.
        let mut v = Hmac::<Sha256>::new_from_slice(b"0123456789abcdef0123456789abcdef").unwrap();
        v.update(text.as_bytes());
        assert_eq!(a, hex::encode(v.finalize().into_bytes()));
        // Fed in pieces (a stream's deltas), the same text gets the same MAC.
        let mut m = TextMac::new(&key).unwrap();
        for piece in ["system 8\nbe", " brief\nuser 12\nhé", "llo\nthere\n"] {
            m.update(piece);
        }
        assert_eq!(m.hex(), a);
        // Moving text between messages changes the canonical form, so the MAC.
        let moved = canonical_input([("system", "be brief\nuser 12"), ("user", "")]);
        assert_ne!(mac_hex(&key, &moved).unwrap(), a);
        // Another key, another MAC; no key, no MAC.
        let other = ChainKey::new(b"another key of thirty-two bytes!");
        assert_ne!(mac_hex(&other, &text).unwrap(), a);
        assert_eq!(mac_hex(&ChainKey::none(), &text), None);
        assert!(TextMac::new(&ChainKey::none()).is_none());
    }
}
