//! The learned tagger for names, places, organisations, street addresses and the other entity
//! kinds that have no checksum: an averaged perceptron over hashed token features, decoded
//! greedily left to right under BIO constraints. Small (a few MB of i16 weights), fast (no
//! allocation per token beyond the token list), and trained by `portcullis train pii`.

use super::{Candidate, EntityType};
use portcullis_core::hash::fnv1a;
use std::ops::Range;
use std::sync::OnceLock;

/// The entity kinds the tagger labels; the others have exact recognisers.
pub const TYPES: [EntityType; 9] = [
    EntityType::Person,
    EntityType::Location,
    EntityType::Organization,
    EntityType::Address,
    EntityType::Date,
    EntityType::Title,
    EntityType::Nrp,
    EntityType::Age,
    EntityType::Postcode,
];

/// Longest entity (in tokens, punctuation included) per type of [`TYPES`]: a tagger that
/// runs on past these is lost ("lorem lorem lorem …" is not one long name).
const MAX_TOKENS: [usize; 9] = [8, 10, 12, 40, 12, 8, 4, 3, 4];

/// Tags: `O`, then `B-T`, `I-T` for each of [`TYPES`].
pub const NT: usize = 1 + 2 * TYPES.len();

const O: usize = 0;
fn b_tag(t: usize) -> usize {
    1 + 2 * t
}
fn i_tag(t: usize) -> usize {
    2 + 2 * t
}
fn tag_type(tag: usize) -> Option<usize> {
    (tag > 0).then(|| (tag - 1) / 2)
}
fn is_inside(tag: usize) -> bool {
    tag > 0 && tag.is_multiple_of(2)
}

/// The tag index of a span's first token (`begin`) or later token.
pub fn tag_for(entity: EntityType, begin: bool) -> Option<usize> {
    let t = TYPES.iter().position(|x| *x == entity)?;
    Some(if begin { b_tag(t) } else { i_tag(t) })
}

/// A token: a word (letters/digits, with inner apostrophes or hyphens) or one other character.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub span: Range<usize>,
}

/// Splits text into tokens; whitespace is dropped except newlines, which are kept as tokens
/// because line breaks separate fields ("Name: …\nPhone: …").
pub fn tokenize(text: &str) -> Vec<Token> {
    let mut out = Vec::with_capacity(text.len() / 5 + 1);
    let mut it = text.char_indices().peekable();
    while let Some((i, c)) = it.next() {
        if c.is_alphanumeric() {
            let mut end = i + c.len_utf8();
            while let Some(&(j, d)) = it.peek() {
                let joiner = matches!(d, '\'' | '-' | '’' | '_')
                    && text[j + d.len_utf8()..]
                        .chars()
                        .next()
                        .is_some_and(char::is_alphanumeric);
                if d.is_alphanumeric() || joiner {
                    end = j + d.len_utf8();
                    it.next();
                } else {
                    break;
                }
            }
            out.push(Token { span: i..end });
        } else if c == '\n' || !c.is_whitespace() {
            out.push(Token {
                span: i..i + c.len_utf8(),
            });
        }
    }
    out
}

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

/// Builds the lexicon from tokenised training texts and their gold tags.
pub fn lexicon<'a>(examples: impl Iterator<Item = (&'a str, &'a [Token], &'a [usize])>) -> Lexicon {
    let mut lex = Lexicon::default();
    for (text, toks, gold) in examples {
        for (t, g) in toks.iter().zip(gold) {
            let w = &text[t.span.clone()];
            if !w.chars().any(char::is_alphanumeric) {
                continue;
            }
            let lower = fnv1a(w.to_lowercase().as_bytes());
            let mut bits = tag_type(*g).map_or(0, |ty| 1u16 << ty);
            if *g == O && w.chars().all(|c| !c.is_uppercase()) {
                bits |= COMMON;
            }
            *lex.entry(lower).or_default() |= bits;
        }
    }
    lex.retain(|_, b| *b != 0);
    lex
}

/// Per-token hashes computed once, so each feature is a cheap mix rather than a string hash.
#[derive(Debug, Clone, Copy, Default)]
struct Atoms {
    lower: u64,
    shape: u64,
    pre3: u64,
    suf3: u64,
    suf2: u64,
    /// 1 = first of a sentence or line, 0 otherwise.
    first: u64,
    /// Capitalised or numeric: could start an entity by its looks alone.
    maybe: bool,
    /// A code identifier (`MOCK_VIOLENCE`, `api_key`): never part of a name or place.
    ident: bool,
    /// The word's lexicon bits.
    lex: u64,
    /// Begins with a digit.
    numeric: bool,
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

fn atoms(text: &str, toks: &[Token], lex: &Lexicon) -> Vec<Atoms> {
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
fn mix(template: u64, a: u64, b: u64) -> u32 {
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
fn features(a: &[Atoms], i: usize, prev: usize, prev2: usize, out: &mut [u32; NF]) {
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

/// Weights: an open-addressed table from feature key to one row of tag scores. Keys sit in
/// their own small array so that probing for the many features a model never saw touches no
/// rows; a row is read only on a hit.
#[derive(Debug, Clone)]
pub struct Model {
    /// `(key, index into rows)`; key 0 marks an empty slot.
    keys: Vec<(u32, u32)>,
    rows: Vec<[i16; NT]>,
    mask: usize,
    /// Dequantisation scale (weights are stored as i16).
    pub scale: f32,
    /// Bit set (by word hash) of lower-case words that may begin an entity: the gate that lets
    /// the tagger skip most of prose.
    starters: Vec<u64>,
    /// Number of live slots.
    live: usize,
    /// Word knowledge from the training data (see [`Lexicon`]).
    lexicon: Lexicon,
}

const STARTER_BITS: usize = 1 << 16;
const MAGIC: &[u8; 8] = b"PCNER\x00\x03\x00";

impl Model {
    /// Builds the table from `(key, weights)` pairs and the lower-case words seen in training.
    pub fn from_weights(pairs: &[(u32, [f32; NT])], vocabulary: &[u64], lexicon: Lexicon) -> Model {
        let max = pairs
            .iter()
            .flat_map(|(_, w)| w.iter())
            .fold(0f32, |m, w| m.max(w.abs()))
            .max(1e-9);
        let scale = max / f32::from(i16::MAX);
        let q: Vec<(u32, [i16; NT])> = pairs
            .iter()
            .map(|(k, w)| (*k, w.map(|x| (x / scale).round() as i16)))
            .collect();
        let mut m = Model::from_quantised(&q, scale, vec![0; STARTER_BITS / 64], lexicon);
        for &lower in vocabulary {
            let starts = m
                .row(mix(1, lower, 0))
                .is_some_and(|r| (0..TYPES.len()).any(|t| r[b_tag(t)] > r[O]));
            if starts {
                let bit = (lower as usize) & (STARTER_BITS - 1);
                m.starters[bit / 64] |= 1 << (bit % 64);
            }
        }
        m
    }

    fn from_quantised(
        pairs: &[(u32, [i16; NT])],
        scale: f32,
        starters: Vec<u64>,
        lexicon: Lexicon,
    ) -> Model {
        let cap = (pairs.len() * 2).next_power_of_two().max(16);
        let mut keys = vec![(0u32, 0u32); cap];
        let mut rows = Vec::with_capacity(pairs.len());
        let mask = cap - 1;
        for (k, w) in pairs {
            let mut slot = slot_of(*k, mask);
            while keys[slot].0 != 0 && keys[slot].0 != *k {
                slot = (slot + 1) & mask;
            }
            if keys[slot].0 == *k {
                rows[keys[slot].1 as usize] = *w;
            } else {
                keys[slot] = (*k, rows.len() as u32);
                rows.push(*w);
            }
        }
        Model {
            live: rows.len(),
            keys,
            rows,
            mask,
            scale,
            starters,
            lexicon,
        }
    }

    /// The row for `key`, if the model has one.
    #[inline]
    fn row(&self, key: u32) -> Option<&[i16; NT]> {
        let mut slot = slot_of(key, self.mask);
        loop {
            let (k, i) = self.keys[slot];
            if k == key {
                return self.rows.get(i as usize);
            }
            if k == 0 {
                return None;
            }
            slot = (slot + 1) & self.mask;
        }
    }

    /// Whether a lower-case word (by hash) may begin an entity.
    #[inline]
    fn starter(&self, lower: u64) -> bool {
        let bit = (lower as usize) & (STARTER_BITS - 1);
        self.starters
            .get(bit / 64)
            .is_some_and(|w| w & (1 << (bit % 64)) != 0)
    }

    /// Number of features with weights.
    pub fn len(&self) -> usize {
        self.live
    }

    /// Whether the model is empty (no weights shipped).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The file format: magic, tag count, scale, count, `(key u32, NT × i16)` records, then
    /// the starter-word bit set.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(NT as u32).to_le_bytes());
        out.extend_from_slice(&self.scale.to_le_bytes());
        let mut live: Vec<(u32, &[i16; NT])> = (self.keys.iter())
            .filter(|(k, _)| *k != 0)
            .filter_map(|(k, i)| Some((*k, self.rows.get(*i as usize)?)))
            .collect();
        live.sort_by_key(|(k, _)| *k);
        out.extend_from_slice(&(live.len() as u32).to_le_bytes());
        for (key, row) in live {
            out.extend_from_slice(&key.to_le_bytes());
            for w in row {
                out.extend_from_slice(&w.to_le_bytes());
            }
        }
        for w in &self.starters {
            out.extend_from_slice(&w.to_le_bytes());
        }
        let mut lex: Vec<(&u64, &u16)> = self.lexicon.iter().collect();
        lex.sort();
        out.extend_from_slice(&(lex.len() as u32).to_le_bytes());
        for (k, v) in lex {
            out.extend_from_slice(&k.to_le_bytes());
            out.extend_from_slice(&v.to_le_bytes());
        }
        out
    }

    /// Reads [`Model::to_bytes`]; `None` when the bytes are not a model of this build's shape.
    pub fn from_bytes(b: &[u8]) -> Option<Model> {
        let u32_at = |at: usize| -> Option<u32> {
            Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
        };
        if b.get(..8)? != MAGIC || u32_at(8)? as usize != NT {
            return None;
        }
        let scale = f32::from_bits(u32_at(12)?);
        let n = u32_at(16)? as usize;
        let rec = 4 + 2 * NT;
        let body = b.get(20..20 + n * rec)?;
        let mut pairs = Vec::with_capacity(n);
        for r in body.chunks_exact(rec) {
            let key = u32::from_le_bytes(r[..4].try_into().ok()?);
            let mut w = [0i16; NT];
            for (j, x) in w.iter_mut().enumerate() {
                *x = i16::from_le_bytes(r[4 + 2 * j..6 + 2 * j].try_into().ok()?);
            }
            pairs.push((key, w));
        }
        let at = 20 + n * rec;
        let starters = b
            .get(at..at + STARTER_BITS / 8)?
            .chunks_exact(8)
            .map(|c| c.try_into().map(u64::from_le_bytes))
            .collect::<Result<Vec<u64>, _>>()
            .ok()?;
        let at = at + STARTER_BITS / 8;
        let count = u32_at(at)? as usize;
        let body = b.get(at + 4..at + 4 + count * 10)?;
        if b.len() != at + 4 + count * 10 {
            return None;
        }
        let mut lexicon = Lexicon::with_capacity_and_hasher(count, Default::default());
        for r in body.chunks_exact(10) {
            lexicon.insert(
                u64::from_le_bytes(r[..8].try_into().ok()?),
                u16::from_le_bytes(r[8..].try_into().ok()?),
            );
        }
        Some(Model::from_quantised(&pairs, scale, starters, lexicon))
    }
}

#[inline]
fn slot_of(key: u32, mask: usize) -> usize {
    (key.wrapping_mul(0x9E37_79B9) >> 7) as usize & mask
}

static WEIGHTS: &[u8] = include_bytes!("../model/pii-ner.bin");

/// Tags text with a model.
#[derive(Debug, Clone, Copy)]
pub struct Tagger<'m> {
    model: &'m Model,
}

/// One tagged span, in the tagged text's byte offsets.
#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    pub entity: EntityType,
    pub span: Range<usize>,
    /// Mean per-token margin of the chosen tag, squashed to (0, 1).
    pub confidence: f32,
}

impl Tagger<'static> {
    /// The tagger with the shipped weights.
    pub fn builtin() -> Tagger<'static> {
        static M: OnceLock<Model> = OnceLock::new();
        Tagger {
            model: M.get_or_init(|| {
                Model::from_bytes(WEIGHTS).unwrap_or_else(|| {
                    Model::from_quantised(&[], 1.0, Vec::new(), Lexicon::default())
                })
            }),
        }
    }
}

impl<'m> Tagger<'m> {
    /// A tagger over `model` (training and evaluation use their own).
    pub fn new(model: &'m Model) -> Self {
        Tagger { model }
    }

    /// The tag sequence for `tokens` (greedy, BIO-constrained), with each tag's margin.
    fn decode(&self, text: &str, toks: &[Token]) -> Vec<(usize, f32)> {
        let a = atoms(text, toks, &self.model.lexicon);
        // In text written all in lower case, capitals say nothing: every word is a candidate.
        let letters = text.bytes().filter(u8::is_ascii_alphabetic).count();
        let upper = text.bytes().filter(u8::is_ascii_uppercase).count();
        let gate = upper * 50 >= letters;
        let mut tags: Vec<(usize, i32)> = Vec::with_capacity(toks.len());
        let mut f = [0u32; NF];
        for i in 0..toks.len() {
            let prev = if i > 0 { tags[i - 1].0 } else { O };
            let prev2 = if i > 1 { tags[i - 2].0 } else { O };
            // Outside an entity, a lower-case word starts one only if the model has learnt
            // that word as an entity word (in all-lower-case text: unless it is an ordinary
            // word); everything else is `O` without scoring (most of prose), which is what
            // makes the tagger cheap.
            // A word the data knows only as an ordinary word begins nothing at the start of a
            // sentence ("Compare …", "Brainstorm …") or in lower case.
            let ordinary = a[i].lex == u64::from(COMMON) && (a[i].first == 1 || !a[i].maybe);
            let closed =
                prev == O && (ordinary || !a[i].maybe && gate && !self.model.starter(a[i].lower));
            if a[i].ident || closed {
                tags.push((O, 0));
                continue;
            }
            features(&a, i, prev, prev2, &mut f);
            let mut s = [0i32; NT];
            for k in f {
                if let Some(row) = self.model.row(k) {
                    for (acc, w) in s.iter_mut().zip(row) {
                        *acc += i32::from(*w);
                    }
                }
            }
            // Entities have a plausible length: a run that has reached it must end here.
            let run = tags
                .iter()
                .rev()
                .take_while(|(t, _)| tag_type(*t) == tag_type(prev) && *t != O)
                .count();
            if let Some(ty) = tag_type(prev)
                && run >= MAX_TOKENS[ty]
            {
                s[i_tag(ty)] = i32::MIN / 2;
            }
            tags.push(best_allowed(&s, prev, a[i].numeric));
        }
        tags.into_iter()
            .map(|(t, m)| (t, m as f32 * self.model.scale))
            .collect()
    }

    /// Entity spans in `text`, trimmed of punctuation at their edges.
    pub fn spans(&self, text: &str) -> Vec<Span> {
        let toks = tokenize(text);
        let tags = self.decode(text, &toks);
        let mut spans = spans_of(&toks, &tags);
        for s in &mut spans {
            let t = &text[s.span.clone()];
            let lead = t.len() - t.trim_start_matches(|c: char| !c.is_alphanumeric()).len();
            let kept = t[lead..]
                .trim_end_matches(|c: char| c.is_whitespace() || ",;:([{<\"'`".contains(c))
                .len();
            s.span = s.span.start + lead..s.span.start + lead + kept;
        }
        spans.retain(|s| !s.span.is_empty());
        spans
    }

    /// Adds the tagger's spans to a scan's candidates.
    pub(crate) fn find(&self, text: &str, out: &mut Vec<Candidate>) {
        if self.model.is_empty() {
            return;
        }
        for s in self.spans(text) {
            out.push(Candidate {
                entity: s.entity,
                span: s.span,
                score: s.confidence,
                recognizer: "ner",
                priority: 1,
            });
        }
    }
}

/// The best tag that may follow `prev` (an `I-T` only continues a `T`), and its margin over
/// the runner-up.
fn best_allowed<T: Copy + PartialOrd + std::ops::Sub<Output = T> + Default>(
    s: &[T; NT],
    prev: usize,
    numeric: bool,
) -> (usize, T) {
    // Names of people, places, organisations, titles and nationalities do not begin with a
    // digit; house numbers, dates, ages and postcodes do.
    let wordy = |t: usize| {
        tag_type(t).is_some_and(|ty| {
            matches!(
                TYPES[ty],
                EntityType::Person
                    | EntityType::Location
                    | EntityType::Organization
                    | EntityType::Title
                    | EntityType::Nrp
            )
        })
    };
    let allowed = |t: usize| {
        (!is_inside(t) || tag_type(prev) == tag_type(t) && prev != O)
            && !(numeric && !is_inside(t) && wordy(t))
    };
    let mut best = O;
    let mut second: Option<T> = None;
    for t in 1..NT {
        if !allowed(t) {
            continue;
        }
        if s[t] > s[best] {
            second = Some(second.map_or(s[best], |x| if s[best] > x { s[best] } else { x }));
            best = t;
        } else if second.is_none_or(|x| s[t] > x) {
            second = Some(s[t]);
        }
    }
    let margin = second.map_or(T::default(), |x| s[best] - x);
    (best, margin)
}

fn spans_of(toks: &[Token], tags: &[(usize, f32)]) -> Vec<Span> {
    let mut out: Vec<Span> = Vec::new();
    let mut open: Option<(usize, Range<usize>, f32, usize)> = None;
    let close = |o: Option<(usize, Range<usize>, f32, usize)>, out: &mut Vec<Span>| {
        if let Some((t, span, m, n)) = o {
            let mean = m / n as f32;
            out.push(Span {
                entity: TYPES[t],
                span,
                confidence: 1.0 / (1.0 + (-(mean + 1.0)).exp()),
            });
        }
    };
    for (tok, (tag, margin)) in toks.iter().zip(tags) {
        match tag_type(*tag) {
            Some(t) if is_inside(*tag) => {
                if let Some(o) = open.as_mut() {
                    o.1.end = tok.span.end;
                    o.2 += margin;
                    o.3 += 1;
                } else {
                    open = Some((t, tok.span.clone(), *margin, 1));
                }
            }
            Some(t) => {
                close(open.take(), &mut out);
                open = Some((t, tok.span.clone(), *margin, 1));
            }
            None => close(open.take(), &mut out),
        }
    }
    close(open, &mut out);
    out
}

/// Averaged-perceptron training (the code behind `portcullis train pii`).
#[derive(Debug)]
pub struct Trainer {
    weights: std::collections::HashMap<u32, Acc>,
    step: u64,
    /// Hashes of the lower-case words seen, for the starter-word gate.
    vocabulary: std::collections::HashSet<u64>,
    lexicon: Lexicon,
}

#[derive(Debug, Clone)]
struct Acc {
    w: [f32; NT],
    total: [f32; NT],
    stamp: [u64; NT],
}

impl Trainer {
    /// A trainer whose features may consult `lexicon` (built from the same training data).
    pub fn new(lexicon: Lexicon) -> Self {
        Trainer {
            weights: std::collections::HashMap::new(),
            step: 0,
            vocabulary: std::collections::HashSet::new(),
            lexicon,
        }
    }

    /// One pass over one example: decode with current weights, update where wrong. `lexicon`
    /// is what the features may know about this example's words — built without it, so
    /// the model learns how far the lexicon reaches on unseen text (the shipped lexicon is
    /// the trainer's own).
    pub fn learn(&mut self, text: &str, toks: &[Token], gold: &[usize], lexicon: &Lexicon) {
        self.learn_where(text, toks, gold, lexicon, |_| true);
    }

    /// Ordinary prose with no annotations: every word is taken to be outside an entity except
    /// capitalised words inside a sentence (they may be names nobody labelled), which are not
    /// learned from. This is what teaches the tagger that "Summarize …" starts no name.
    pub fn learn_prose(&mut self, text: &str, toks: &[Token], lexicon: &Lexicon) {
        let a = atoms(text, toks, lexicon);
        let gold = vec![O; toks.len()];
        self.learn_where(text, toks, &gold, lexicon, |i| {
            !a[i].maybe || a[i].first == 1
        });
    }

    fn learn_where(
        &mut self,
        text: &str,
        toks: &[Token],
        gold: &[usize],
        lexicon: &Lexicon,
        trusted: impl Fn(usize) -> bool,
    ) {
        let a = atoms(text, toks, lexicon);
        self.vocabulary
            .extend(a.iter().filter(|x| !x.maybe).map(|x| x.lower));
        let mut f = [0u32; NF];
        let mut prev = O;
        let mut prev2 = O;
        for (i, &truth) in gold.iter().enumerate().take(toks.len()) {
            self.step += 1;
            features(&a, i, prev, prev2, &mut f);
            let mut s = [0f32; NT];
            for k in f {
                if let Some(acc) = self.weights.get(&k) {
                    for (x, w) in s.iter_mut().zip(acc.w) {
                        *x += w;
                    }
                }
            }
            let (guess, _) = best_allowed(&s, prev, a[i].numeric);
            if guess != truth && trusted(i) {
                for k in f {
                    let e = self.weights.entry(k).or_insert_with(|| Acc {
                        w: [0.0; NT],
                        total: [0.0; NT],
                        stamp: [0; NT],
                    });
                    for (t, d) in [(truth, 1.0f32), (guess, -1.0)] {
                        e.total[t] += (self.step - e.stamp[t]) as f32 * e.w[t];
                        e.stamp[t] = self.step;
                        e.w[t] += d;
                    }
                }
            }
            prev2 = prev;
            prev = guess;
        }
    }

    /// The averaged weights as a model, keeping the `keep` features with the most weight
    /// (the long tail barely moves a decision and costs cache misses on every token).
    pub fn finish(&self, keep: usize) -> Model {
        let step = self.step.max(1);
        let mut pairs: Vec<(u32, [f32; NT])> = Vec::with_capacity(self.weights.len());
        for (k, e) in &self.weights {
            let avg: [f32; NT] = std::array::from_fn(|t| {
                (e.total[t] + (step - e.stamp[t]) as f32 * e.w[t]) / step as f32
            });
            pairs.push((*k, avg));
        }
        let mass = |w: &[f32; NT]| w.iter().map(|x| x.abs()).sum::<f32>();
        pairs.sort_by(|a, b| mass(&b.1).total_cmp(&mass(&a.1)).then(a.0.cmp(&b.0)));
        pairs.truncate(keep);
        pairs.sort_by_key(|p| p.0);
        let mut vocabulary: Vec<u64> = self.vocabulary.iter().copied().collect();
        vocabulary.sort_unstable();
        Model::from_weights(&pairs, &vocabulary, self.lexicon.clone())
    }
}

/// Gold tags for `toks` from entity spans (byte ranges), for training.
pub fn gold_tags(toks: &[Token], spans: &[(EntityType, Range<usize>)]) -> Vec<usize> {
    let mut tags = vec![O; toks.len()];
    for (e, r) in spans {
        let mut first = true;
        for (i, t) in toks.iter().enumerate() {
            if t.span.start < r.end && r.start < t.span.end {
                if let Some(tag) = tag_for(*e, first) {
                    tags[i] = tag;
                }
                first = false;
            }
        }
    }
    tags
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_keep_inner_apostrophes_and_hyphens() {
        let t = "O'Brien-Smith lives at 5 Rue d'Alsace.\nMr. X MOCK_SAY";
        let words: Vec<&str> = tokenize(t).iter().map(|k| &t[k.span.clone()]).collect();
        assert_eq!(
            words,
            vec![
                "O'Brien-Smith",
                "lives",
                "at",
                "5",
                "Rue",
                "d'Alsace",
                ".",
                "\n",
                "Mr",
                ".",
                "X",
                "MOCK_SAY"
            ]
        );
    }

    #[test]
    fn bio_constraint_forbids_orphan_inside_tags() {
        let mut s = [0i32; NT];
        s[i_tag(0)] = 10;
        s[b_tag(1)] = 5;
        assert_eq!(best_allowed(&s, O, false).0, b_tag(1));
        assert_eq!(best_allowed(&s, b_tag(0), false).0, i_tag(0));
        assert_eq!(
            best_allowed(&s, O, true).0,
            O,
            "no location starts with a digit"
        );
    }

    #[test]
    fn a_trained_model_round_trips_and_learns_a_pattern() {
        let data = [
            ("My name is Alice Smith", vec![(EntityType::Person, 11..22)]),
            ("My name is Bob Jones", vec![(EntityType::Person, 11..20)]),
            ("I live in Paris", vec![(EntityType::Location, 10..15)]),
            ("I live in Oslo", vec![(EntityType::Location, 10..14)]),
        ];
        let prepared: Vec<(&str, Vec<Token>, Vec<usize>)> = data
            .iter()
            .map(|(text, spans)| {
                let toks = tokenize(text);
                let gold = gold_tags(&toks, spans);
                (*text, toks, gold)
            })
            .collect();
        let mut tr = Trainer::new(lexicon(
            prepared
                .iter()
                .map(|(t, k, g)| (*t, k.as_slice(), g.as_slice())),
        ));
        let none = Lexicon::default();
        for _ in 0..5 {
            for (text, spans) in &data {
                let toks = tokenize(text);
                tr.learn(text, &toks, &gold_tags(&toks, spans), &none);
            }
        }
        let m = Model::from_bytes(&tr.finish(usize::MAX).to_bytes()).expect("round trip");
        let spans = Tagger::new(&m).spans("My name is Carol Smith");
        assert_eq!(spans.len(), 1);
        assert_eq!(spans[0].entity, EntityType::Person);
        assert_eq!(spans[0].span, 11..22);
    }

    #[test]
    fn the_shipped_model_loads() {
        assert!(!Tagger::builtin().model.is_empty());
    }
}
