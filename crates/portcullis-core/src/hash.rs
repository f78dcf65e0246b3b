//! Small, stable, non-cryptographic hashing shared by the learned detectors: feature hashing
//! and deterministic data splits must give the same numbers on every machine and every build,
//! which `std`'s randomised hasher does not.

const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const PRIME: u64 = 0x100_0000_01b3;

/// FNV-1a of `bytes`.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    Fnv::new().bytes(bytes).finish()
}

/// FNV-1a over several parts, with a separator after each, so `("ab", "c")` and `("a", "bc")`
/// hash differently (feature names are built from parts).
pub fn fnv1a_parts(parts: &[&[u8]]) -> u64 {
    parts
        .iter()
        .fold(Fnv::new(), |h, p| h.bytes(p).end_part())
        .finish()
}

/// [`fnv1a_parts`] fed piece by piece, so hashes that share a prefix hash it once (a word's
/// 3-, 4- and 5-grams from one position).
#[derive(Debug, Clone, Copy)]
pub struct Fnv(u64);

impl Fnv {
    /// The state before any part.
    pub const fn new() -> Fnv {
        Fnv(OFFSET)
    }

    /// Feeds bytes of the current part (`const`, so a fixed prefix can be a constant).
    pub const fn bytes(self, bytes: &[u8]) -> Fnv {
        let mut h = self.0;
        let mut i = 0;
        while i < bytes.len() {
            h = (h ^ bytes[i] as u64).wrapping_mul(PRIME);
            i += 1;
        }
        Fnv(h)
    }

    /// Ends the current part (the separator).
    pub const fn end_part(self) -> Fnv {
        Fnv((self.0 ^ 0xff).wrapping_mul(PRIME))
    }

    /// The hash so far.
    pub const fn finish(self) -> u64 {
        self.0
    }
}

impl Default for Fnv {
    fn default() -> Fnv {
        Fnv::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_hash_as_the_parts_do() {
        let word = "ab\u{e9}cd";
        let direct = fnv1a_parts(&[b"c", word.as_bytes()]);
        let prefix = Fnv::new().bytes(b"c").end_part();
        let fed = word.chars().fold(prefix, |h, c| {
            h.bytes(c.encode_utf8(&mut [0; 4]).as_bytes())
        });
        assert_eq!(fed.end_part().finish(), direct);
        assert_ne!(fed.finish(), direct);
    }

    #[test]
    fn known_values_and_separated_parts() {
        assert_eq!(fnv1a(b""), OFFSET);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_ne!(fnv1a_parts(&[b"ab", b"c"]), fnv1a_parts(&[b"a", b"bc"]));
    }
}
