//! Applying a stage's edits: text replacements written back to their segments, pseudonyms
//! remembered, parameters set, messages inserted — malformed or overlapping edits skipped.

use crate::chat::ChatRequest;
use crate::context::{Context, GuardRecord};
use crate::guard::Edit;
use crate::segment::{self, Segment};

pub(super) fn apply_input_edits(
    req: &mut ChatRequest,
    segments: &mut [Segment],
    edits: Vec<Edit>,
    ctx: &mut Context,
    record: &mut GuardRecord,
) {
    let touched = apply_text_edits(segments, &edits, 0);
    for i in touched {
        segment::write_request(req, &segments[i]);
    }
    let mut inserts = Vec::new();
    for edit in edits {
        match edit {
            Edit::Replace { .. } => {}
            Edit::Remember {
                placeholder,
                original,
            } => ctx.vault.remember(placeholder, original),
            Edit::SetParam { name, value } => {
                let before = req.param(&name);
                match req.set_param(&name, value.clone()) {
                    Ok(()) => record.changes.push(format!(
                        "{name}: {} -> {}",
                        before.map_or_else(|| "absent".to_owned(), |v| v.to_string()),
                        if value.is_null() {
                            "absent".to_owned()
                        } else {
                            value.to_string()
                        }
                    )),
                    Err(e) => record.error = Some(format!("could not set {e}")),
                }
            }
            Edit::InsertMessage { index, message } => inserts.push((index, message)),
        }
    }
    inserts.sort_by_key(|(i, _)| std::cmp::Reverse(*i));
    for (index, message) in inserts {
        let at = index.min(req.messages.len());
        req.messages.insert(at, message);
        record.changes.push(format!("messages: inserted at {at}"));
    }
}

/// Applies `Replace` edits to segments (byte ranges, at or after `floor`); overlapping or
/// malformed edits are skipped rather than trusted. Returns the segments that changed.
pub(super) fn apply_text_edits(
    segments: &mut [Segment],
    edits: &[Edit],
    floor: usize,
) -> Vec<usize> {
    let mut per_segment: Vec<(usize, std::ops::Range<usize>, &str)> = edits
        .iter()
        .filter_map(|e| match e {
            Edit::Replace {
                segment,
                range,
                with,
            } => Some((*segment, range.clone(), with.as_str())),
            _ => None,
        })
        .collect();
    // Earliest (then longest) edit wins an overlap; then apply from the end backwards so the
    // earlier ranges stay valid.
    per_segment.sort_by(|a, b| (a.0, a.1.start, b.1.end).cmp(&(b.0, b.1.start, a.1.end)));
    let mut kept: Vec<(usize, std::ops::Range<usize>, &str)> = Vec::new();
    for (seg, range, with) in per_segment {
        let Some(s) = segments.get(seg) else {
            continue;
        };
        let valid = range.start <= range.end
            && range.end <= s.text.len()
            && range.start >= floor
            && s.text.is_char_boundary(range.start)
            && s.text.is_char_boundary(range.end);
        let overlaps =
            matches!(kept.last(), Some((ls, lr, _)) if *ls == seg && range.start < lr.end);
        if valid && !overlaps {
            kept.push((seg, range, with));
        }
    }
    let mut touched = Vec::new();
    for (seg, range, with) in kept.into_iter().rev() {
        segments[seg].text.replace_range(range, with);
        if touched.last() != Some(&seg) {
            touched.push(seg);
        }
    }
    touched.reverse();
    touched
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_edits_are_skipped_not_trusted() {
        let mut segs = vec![Segment::free("héllo world", crate::Source::User)];
        let edits = vec![
            Edit::Replace {
                segment: 0,
                range: 0..2,
                with: "X".into(),
            }, // splits 'é'
            Edit::Replace {
                segment: 0,
                range: 7..12,
                with: "W".into(),
            },
            Edit::Replace {
                segment: 0,
                range: 8..10,
                with: "Y".into(),
            }, // overlaps
            Edit::Replace {
                segment: 3,
                range: 0..1,
                with: "Z".into(),
            },
        ];
        let touched = apply_text_edits(&mut segs, &edits, 0);
        assert_eq!(touched, vec![0]);
        assert_eq!(segs[0].text, "héllo W");
    }
}
