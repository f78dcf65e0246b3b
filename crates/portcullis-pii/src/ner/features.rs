//! Features: per-token hashes computed once, and the hashed feature keys of one token in
//! its context (neighbouring words, shapes, affixes, lexicon bits, previous tags).

use super::lexicon::Lexicon;
use super::tokens::Token;
use portcullis_core::hash::fnv1a;

/// Per-token hashes computed once, so each feature is a cheap mix rather than a string hash.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Atoms {
    pub(super) lower: u64,
    shape: u64,
    pre3: u64,
    suf3: u64,
    suf2: u64,
    /// 1 = first of a sentence or line, 0 otherwise.
    pub(super) first: u64,
    /// Capitalised or numeric: could start an entity by its looks alone.
    pub(super) maybe: bool,
    /// A code identifier (`MOCK_VIOLENCE`, `api_key`): never part of a name or place.
    pub(super) ident: bool,
    /// The word's lexicon bits.
    pub(super) lex: u64,
    /// Begins with a digit.
    pub(super) numeric: bool,
}

fn shape_of(w: &str) -> u64 {
    // Xxxx → "Xx", 1234 → "d", A12 → "Xd"; runs collapse so names of any length share a shape.
    let mut buf = [0u8; 8];
    let mut n = 0;
    let mut last = 0u8;
    for c in w.chars() {
        let k = if c.is_uppercase() {
            b'X'
        } else if c.is_lowercase() {
            b'x'
        } else if c.is_ascii_digit() {
            b'd'
        } else {
            c as u8 | 0x80
        };
        if k != last && n < buf.len() {
            buf[n] = k;
            n += 1;
            last = k;
        }
    }
    fnv1a(&buf[..n]) ^ ((w.chars().count().min(12) as u64) << 56)
}

pub(super) fn atoms(text: &str, toks: &[Token], lex: &Lexicon) -> Vec<Atoms> {
    let mut out = Vec::with_capacity(toks.len());
    let mut lower = String::new();
    for (k, t) in toks.iter().enumerate() {
        let w = &text[t.span.clone()];
        let lb: &[u8] = if w.is_ascii() {
            // ASCII words (nearly all) are lower-cased into a stack buffer.
            let mut buf = [0u8; 32];
            if w.len() <= buf.len() {
                for (d, s) in buf.iter_mut().zip(w.bytes()) {
                    *d = s.to_ascii_lowercase();
                }
                let n = w.len();
                out.push(atoms_of(w, &buf[..n], k, text, toks, lex));
                continue;
            }
            lower.clear();
            lower.push_str(&w.to_ascii_lowercase());
            lower.as_bytes()
        } else {
            lower.clear();
            for c in w.chars() {
                lower.extend(c.to_lowercase());
            }
            lower.as_bytes()
        };
        let lb = lb.to_vec();
        out.push(atoms_of(w, &lb, k, text, toks, lex));
    }
    out
}

fn atoms_of(w: &str, lower: &[u8], k: usize, text: &str, toks: &[Token], lex: &Lexicon) -> Atoms {
    // Prefix and suffix cut at character boundaries (continuation bytes are 0b10xxxxxx).
    let boundary = |i: usize| i == 0 || i >= lower.len() || (lower[i] & 0xC0) != 0x80;
    let mut pre = 3.min(lower.len());
    while !boundary(pre) {
        pre += 1;
    }
    let from_end = |n: usize| {
        let mut i = lower.len().saturating_sub(n);
        while !boundary(i) {
            i -= 1;
        }
        i
    };
    let first = k == 0 || {
        let p = &text[toks[k - 1].span.clone()];
        matches!(p, "." | "!" | "?" | "\n" | ":" | "\"" | "(" | "-")
    };
    let lower_hash = fnv1a(lower);
    Atoms {
        lex: u64::from(lex.get(&lower_hash).copied().unwrap_or(0)),
        lower: lower_hash,
        shape: shape_of(w),
        pre3: fnv1a(&lower[..pre]),
        suf3: fnv1a(&lower[from_end(3)..]),
        suf2: fnv1a(&lower[from_end(2)..]),
        first: u64::from(first),
        maybe: w
            .bytes()
            .any(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
            || !w.is_ascii() && w.chars().any(char::is_uppercase),
        ident: w.contains('_'),
        numeric: w.starts_with(|c: char| c.is_ascii_digit()),
    }
}

#[inline]
pub(super) fn mix(template: u64, a: u64, b: u64) -> u32 {
    let mut h = template.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(a);
    h = (h ^ (h >> 29)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    h = h.wrapping_add(b.wrapping_mul(0x94D0_49BB_1331_11EB));
    h ^= h >> 32;
    // 0 marks an empty slot in the table.
    (h as u32) | 1
}

const PAD: Atoms = Atoms {
    lower: 0x5EED,
    shape: 0x5EED,
    pre3: 0x5EED,
    suf3: 0x5EED,
    suf2: 0x5EED,
    first: 2,
    maybe: false,
    ident: false,
    lex: 0xFFFF_0000,
    numeric: false,
};

/// Number of features per token.
pub const NF: usize = 26;

/// The feature keys of token `i`, given the two previous tags.
pub(super) fn features(a: &[Atoms], i: usize, prev: usize, prev2: usize, out: &mut [u32; NF]) {
    let at = |k: isize| -> Atoms {
        let j = i as isize + k;
        if j < 0 || j as usize >= a.len() {
            PAD
        } else {
            a[j as usize]
        }
    };
    let (c, p1, p2, n1, n2) = (at(0), at(-1), at(-2), at(1), at(2));
    let (pt, pt2) = (prev as u64, prev2 as u64);
    *out = [
        mix(0, 0, 0),
        mix(1, c.lower, 0),
        mix(2, p1.lower, 0),
        mix(3, n1.lower, 0),
        mix(4, p2.lower, 0),
        mix(5, n2.lower, 0),
        mix(6, c.shape, 0),
        mix(7, p1.shape, 0),
        mix(8, n1.shape, 0),
        mix(9, c.pre3, 0),
        mix(10, c.suf3, 0),
        mix(11, c.suf2, 0),
        mix(12, pt, 0),
        mix(13, pt, c.lower),
        mix(14, pt, pt2 + 100),
        mix(15, p1.lower, c.lower),
        mix(16, c.lower, n1.lower),
        mix(17, p1.shape ^ n1.shape.rotate_left(7), c.shape),
        mix(18, c.first, c.shape),
        mix(19, pt, c.shape),
        mix(20, p1.lower, c.shape),
        mix(21, c.shape, n1.lower),
        mix(22, c.lex, 0),
        mix(23, p1.lex, c.lex),
        mix(24, c.lex, n1.lex),
        mix(25, c.lex | c.first << 20, c.shape),
    ];
}
