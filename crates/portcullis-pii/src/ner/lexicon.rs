//! The lexicon: what the training data says about each lower-case word, shipped inside the
//! model.

/// What the training data says about a lower-case word: bit `t` = seen inside an entity of
/// `TYPES[t]`; [`COMMON`] = seen written in lower case in running text (an ordinary word).
/// Keys are already FNV hashes, so the map only mixes them rather than SipHashing again.
pub type Lexicon = std::collections::HashMap<u64, u16, std::hash::BuildHasherDefault<PreHashed>>;

/// A hasher for keys that are hashes already.
#[derive(Default)]
pub struct PreHashed(u64);

impl std::hash::Hasher for PreHashed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0100_0000_01B3);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (n ^ (n >> 31)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// Lexicon bit for ordinary words.
pub const COMMON: u16 = 1 << 15;
