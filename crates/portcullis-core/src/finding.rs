//! Findings: what a guard saw, where, how sure it is, and which recogniser saw it.

use serde::Serialize;
use std::ops::Range;

/// One thing a guard found. Findings name types and places, never the sensitive value itself.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    /// What was found: an entity type (`EMAIL_ADDRESS`), an attack family, a category.
    pub kind: String,
    /// The recogniser or rule that found it.
    pub detector: String,
    /// Confidence in [0, 1].
    pub score: f32,
    /// Index of the segment it was found in, when it has a place.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub segment: Option<usize>,
    /// Byte range within that segment's text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub span: Option<Range<usize>>,
    /// Found only after undoing hidden characters, encodings or look-alikes.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub obfuscated: bool,
    /// A short human note (a rule's name, a category) — never the matched secret.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Finding {
    /// A finding with no place (a whole-request judgement).
    pub fn new(kind: impl Into<String>, detector: impl Into<String>, score: f32) -> Self {
        Finding {
            kind: kind.into(),
            detector: detector.into(),
            score,
            segment: None,
            span: None,
            obfuscated: false,
            note: None,
        }
    }

    /// Places the finding in a segment.
    pub fn at(mut self, segment: usize, span: Range<usize>) -> Self {
        self.segment = Some(segment);
        self.span = Some(span);
        self
    }

    /// Places the finding in a segment without a span.
    pub fn in_segment(mut self, segment: usize) -> Self {
        self.segment = Some(segment);
        self
    }

    /// Whether `other` is the same thing found in the same place by the same recogniser
    /// (its score aside).
    pub fn same_place(&self, other: &Finding) -> bool {
        self.kind == other.kind
            && self.detector == other.detector
            && self.segment == other.segment
            && self.span == other.span
            && self.obfuscated == other.obfuscated
            && self.note == other.note
    }

    /// Adds a short note.
    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.note = Some(note.into());
        self
    }

    /// Marks the finding as uncovered from obfuscated text.
    pub fn obfuscated(mut self, yes: bool) -> Self {
        self.obfuscated = yes;
        self
    }
}
