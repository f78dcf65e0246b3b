//! The weight table: feature key to one row of tag scores, quantised to i16, and its file
//! format (`model/pii-ner.bin`).

use super::lexicon::Lexicon;
use super::tags::NT;
#[cfg(feature = "lab")]
use super::{
    features::mix,
    tags::{O, TYPES, b_tag},
};

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
    pub(super) lexicon: Lexicon,
}

const STARTER_BITS: usize = 1 << 16;
const MAGIC: &[u8; 8] = b"PCNER\x00\x03\x00";

impl Model {
    /// Builds the table from `(key, weights)` pairs and the lower-case words seen in training.
    #[cfg(feature = "lab")]
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

    pub(super) fn from_quantised(
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
    pub(super) fn row(&self, key: u32) -> Option<&[i16; NT]> {
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
    pub(super) fn starter(&self, lower: u64) -> bool {
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
    #[cfg(feature = "lab")]
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

    /// Reads what `to_bytes` (feature `lab`) writes; `None` when the bytes are not a model of
    /// this build's shape.
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
