//! Windows over a streamed answer: text is held back just long enough for output guards to see
//! a pattern that spans chunks and for split pseudonym placeholders to be restored whole, and
//! released as soon as it is safe — the stream is never buffered whole. While a secret may be
//! arriving (a PEM block opened and not closed, a key-like token reaching the end of the text)
//! its start is held back too, up to [`MAX_SECRET_HOLD`] bytes, so a guard sees it whole.
//!
//! Text lives in lanes, one per choice's content and one per streamed tool call's arguments
//! (the caller numbers them).

use crate::ChatRequest;
use crate::context::Context;
use crate::error::ApiError;
use crate::guard::Window;
use crate::pipeline::Pipeline;
use crate::segment::{Segment, Source};

/// How much already-sent text guards get as context, and how much unsent text is held back.
#[derive(Debug, Clone, Copy)]
pub struct Holdback {
    /// Bytes of already-released text shown to guards as context.
    pub context: usize,
    /// Bytes kept back at the end of the unsent text so a pattern split across chunks is
    /// still whole when a guard sees it.
    pub tail: usize,
}

impl Default for Holdback {
    fn default() -> Self {
        Holdback {
            context: 256,
            tail: 96,
        }
    }
}

/// The longest possible secret held back whole (bytes); a longer run is released in windows.
pub const MAX_SECRET_HOLD: usize = 16 * 1024;

/// Where a secret may be arriving unfinished in `text`: an opened PEM block not yet closed, or
/// a run of key-like characters (at least 16) that reaches the end of the text.
pub fn open_secret(text: &str) -> Option<usize> {
    if let Some(b) = text.rfind("-----BEGIN")
        && !text[b..].contains("-----END")
    {
        return Some(b);
    }
    let keyish = |c: char| c.is_ascii_alphanumeric() || "-_.+/=".contains(c);
    let start = text
        .char_indices()
        .rev()
        .find(|(_, c)| !keyish(*c))
        .map_or(0, |(i, c)| i + c.len_utf8());
    (text.len() - start >= 16).then_some(start)
}

/// The longest unfinished link held back whole (bytes); a longer one is released in windows.
pub const MAX_LINK_HOLD: usize = 2048;

/// Where a link may be arriving unfinished at the end of `text`: a markdown link or image
/// whose `](` came but not its `)`, or a `scheme://` URL that nothing has ended yet. Held back,
/// an output guard judges the link whole (its host and everything the URL carries).
pub fn open_link(text: &str) -> Option<usize> {
    let mut start = None;
    if let Some(at) = text.rfind("](")
        && !text[at..].contains(')')
    {
        let open = text[..at].rfind('[').unwrap_or(at);
        start = Some(if text[..open].ends_with('!') {
            open - 1
        } else {
            open
        });
    }
    if let Some(at) = text.rfind("://") {
        let ended = text[at..]
            .chars()
            .any(|c| c.is_whitespace() || "<>\"'`)]".contains(c));
        if !ended {
            let scheme = text[..at]
                .char_indices()
                .rev()
                .take_while(|(_, c)| c.is_ascii_alphanumeric() || "+-.".contains(*c))
                .last()
                .map_or(at, |(i, _)| i);
            start = Some(start.map_or(scheme, |s: usize| s.min(scheme)));
        }
    }
    start
}

/// One lane's text on its way to the client.
#[derive(Debug, Default, Clone)]
struct Lane {
    /// Released text kept for context (at most `context` bytes).
    sent_tail: String,
    /// Received, not yet released.
    pending: String,
    /// Total bytes released so far.
    released: usize,
}

/// Scans a streamed answer lane by lane; feed it deltas, send what it returns.
#[derive(Debug, Default)]
pub struct StreamScanner {
    lanes: Vec<(usize, Lane)>,
    hold: Holdback,
}

impl StreamScanner {
    /// A scanner with the given holdback.
    pub fn new(hold: Holdback) -> Self {
        StreamScanner {
            lanes: Vec::new(),
            hold,
        }
    }

    /// Whether any lane still holds unsent text.
    pub fn has_pending(&self) -> bool {
        self.lanes.iter().any(|(_, l)| !l.pending.is_empty())
    }

    /// The lanes that still hold unsent text, in the order they were opened.
    pub fn pending_lanes(&self) -> Vec<usize> {
        self.lanes
            .iter()
            .filter(|(_, l)| !l.pending.is_empty())
            .map(|(id, _)| *id)
            .collect()
    }

    /// Adds `delta` to lane `index` and returns the text that may be sent now (possibly
    /// empty). `last` flushes everything for this lane. `Err` ends the stream.
    pub async fn push(
        &mut self,
        index: usize,
        delta: &str,
        last: bool,
        pipeline: &Pipeline,
        req: &ChatRequest,
        ctx: &mut Context,
    ) -> Result<String, ApiError> {
        let at = match self.lanes.iter().position(|(id, _)| *id == index) {
            Some(at) => at,
            None => {
                self.lanes.push((index, Lane::default()));
                self.lanes.len() - 1
            }
        };
        let hold = self.hold;
        let lane = &mut self.lanes[at].1;
        lane.pending.push_str(delta);
        if lane.pending.is_empty() {
            return Ok(String::new());
        }
        let guarded = pipeline.inspects_output();
        // Judge only when there is enough new text to be worth it, or at the end.
        if guarded && (last || lane.pending.len() > hold.tail) {
            let mut window = [Segment::free(
                format!("{}{}", lane.sent_tail, lane.pending),
                Source::Output,
            )];
            let w = Window {
                editable_from: lane.sent_tail.len(),
                offset: lane.released - lane.sent_tail.len(),
                last,
                lane: index,
            };
            pipeline.run_output_window(req, &mut window, w, ctx).await?;
            let [seg] = window;
            let text = seg.text;
            lane.pending = text.get(w.editable_from..).unwrap_or_default().to_owned();
        }
        let mut cut = if last {
            lane.pending.len()
        } else if guarded {
            lane.pending.len().saturating_sub(hold.tail)
        } else {
            lane.pending.len()
        };
        while !lane.pending.is_char_boundary(cut) {
            cut -= 1;
        }
        if !last
            && let Some(start) = open_secret(&lane.pending)
            && lane.pending.len() - start <= MAX_SECRET_HOLD
        {
            cut = cut.min(start);
        }
        if !last
            && guarded
            && let Some(start) = open_link(&lane.pending)
            && lane.pending.len() - start <= MAX_LINK_HOLD
        {
            cut = cut.min(start);
        }
        if !last && !ctx.vault.is_empty() {
            // Never release the start of a placeholder without its end: the cut may fall
            // anywhere in the held text, not only at its end.
            cut = cut.min(ctx.vault.safe_prefix(&lane.pending[..cut]));
        }
        if cut == 0 {
            return Ok(String::new());
        }
        let out: String = lane.pending.drain(..cut).collect();
        lane.released += out.len();
        lane.sent_tail.push_str(&out);
        if lane.sent_tail.len() > hold.context {
            let mut from = lane.sent_tail.len() - hold.context;
            while !lane.sent_tail.is_char_boundary(from) {
                from += 1;
            }
            lane.sent_tail.drain(..from);
        }
        Ok(if ctx.vault.is_empty() {
            out
        } else {
            ctx.vault.restore(&out)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::Principal;
    use crate::guard::{Guard, GuardError, Output, Verdict};
    use crate::pipeline::Stage;
    use crate::{ApiError, Edit, Finding};
    use std::sync::Arc;

    struct NoSecrets;

    #[async_trait::async_trait]
    impl Guard for NoSecrets {
        fn name(&self) -> &str {
            "no_secrets"
        }
        async fn check_output(
            &self,
            out: &Output<'_>,
            _ctx: &Context,
        ) -> Result<Verdict, GuardError> {
            let w = out.window.map_or(0, |w| w.editable_from);
            let mut edits = Vec::new();
            for (i, s) in out.segments.iter().enumerate() {
                if s.text.contains("FORBIDDEN") {
                    return Ok(Verdict::block(
                        ApiError::policy("output_blocked", "withheld"),
                        vec![Finding::new("TEST", "no_secrets", 1.0)],
                    ));
                }
                for (at, m) in s.text.match_indices("SECRET") {
                    if at >= w {
                        edits.push(Edit::Replace {
                            segment: i,
                            range: at..at + m.len(),
                            with: "[X]".into(),
                        });
                    }
                }
            }
            Ok(if edits.is_empty() {
                Verdict::allow()
            } else {
                Verdict::transform(edits, vec![])
            })
        }
    }

    /// Flags every `NEEDLE`, placed in its window.
    struct Needles;

    #[async_trait::async_trait]
    impl Guard for Needles {
        fn name(&self) -> &str {
            "needles"
        }
        async fn check_output(
            &self,
            out: &Output<'_>,
            _ctx: &Context,
        ) -> Result<Verdict, GuardError> {
            let found: Vec<Finding> = out.segments[0]
                .text
                .match_indices("NEEDLE")
                .map(|(at, m)| Finding::new("NEEDLE", "needles", 0.5).at(0, at..at + m.len()))
                .collect();
            Ok(if found.is_empty() {
                Verdict::allow()
            } else {
                Verdict::flag(found)
            })
        }
    }

    #[tokio::test]
    async fn a_long_stream_gets_one_verdict_per_guard_with_every_finding_placed_once() {
        let p = Pipeline::new(
            vec![],
            vec![
                Stage::new(Arc::new(Needles)),
                Stage::new(Arc::new(NoSecrets)),
            ],
        );
        let mut ctx = Context::new("r", Principal::default());
        let mut whole = String::new();
        let mut chunks = Vec::new();
        for i in 0..60 {
            let c = if i % 20 == 7 {
                format!("a NEEDLE {i}. ")
            } else {
                format!("word {i} ")
            };
            whole += &c;
            chunks.push(c);
        }
        let chunks: Vec<&str> = chunks.iter().map(String::as_str).collect();
        let out = run(&chunks, &p, &mut ctx).await.unwrap();
        assert_eq!(out, whole);
        assert_eq!(ctx.trace.len(), 2, "{:?}", ctx.trace);
        let needles = &ctx.trace[0];
        assert_eq!(needles.guard, "needles");
        assert!(needles.windows > 10, "{} windows", needles.windows);
        assert_eq!(needles.outcome, crate::Outcome::Flag);
        let spans: Vec<_> = needles
            .findings
            .iter()
            .map(|f| (f.segment, f.span.clone().unwrap()))
            .collect();
        let expected: Vec<_> = whole
            .match_indices("NEEDLE")
            .map(|(at, _)| (Some(0), at..at + 6))
            .collect();
        assert_eq!(
            spans, expected,
            "each needle once, in the stream's coordinates"
        );
        assert_eq!(ctx.trace[1].guard, "no_secrets");
        assert_eq!(ctx.trace[1].outcome, crate::Outcome::Allow);
        assert_eq!(ctx.trace[1].windows, needles.windows);
        // Serialised, the aggregate says how many windows it sums up.
        let v = serde_json::to_value(&ctx.trace[0]).unwrap();
        assert_eq!(v["windows"], needles.windows);
    }

    fn req() -> ChatRequest {
        serde_json::from_str(r#"{"model":"m","messages":[]}"#).unwrap()
    }

    async fn run(
        chunks: &[&str],
        pipeline: &Pipeline,
        ctx: &mut Context,
    ) -> Result<String, ApiError> {
        let mut s = StreamScanner::new(Holdback {
            context: 32,
            tail: 8,
        });
        let r = req();
        let mut out = String::new();
        for (i, c) in chunks.iter().enumerate() {
            out += &s
                .push(0, c, i + 1 == chunks.len(), pipeline, &r, ctx)
                .await?;
        }
        assert!(!s.has_pending());
        Ok(out)
    }

    #[tokio::test]
    async fn a_pattern_split_across_chunks_is_still_edited() {
        let p = Pipeline::new(vec![], vec![Stage::new(Arc::new(NoSecrets))]);
        let mut ctx = Context::new("r", Principal::default());
        let out = run(
            &[
                "the SEC",
                "RET is ",
                "here, and more text follows SE",
                "CRET.",
            ],
            &p,
            &mut ctx,
        )
        .await
        .unwrap();
        assert_eq!(out, "the [X] is here, and more text follows [X].");
    }

    #[tokio::test]
    async fn a_block_ends_the_stream() {
        let p = Pipeline::new(vec![], vec![Stage::new(Arc::new(NoSecrets))]);
        let mut ctx = Context::new("r", Principal::default());
        let err = run(&["fine text ", "FORBID", "DEN"], &p, &mut ctx)
            .await
            .unwrap_err();
        assert_eq!(err.status, 403);
    }

    #[tokio::test]
    async fn split_placeholders_are_restored_whole_without_guards() {
        let p = Pipeline::default();
        let mut ctx = Context::new("r", Principal::default());
        ctx.vault
            .remember("[EMAIL_1]".into(), "ann@example.com".into());
        let mut s = StreamScanner::default();
        let r = req();
        let a = s
            .push(0, "write to [EMA", false, &p, &r, &mut ctx)
            .await
            .unwrap();
        assert_eq!(a, "write to ");
        let b = s
            .push(0, "IL_1] today", false, &p, &r, &mut ctx)
            .await
            .unwrap();
        assert_eq!(b, "ann@example.com today");
        let c = s.push(0, "", true, &p, &r, &mut ctx).await.unwrap();
        assert_eq!(c, "");
    }

    #[tokio::test]
    async fn a_holdback_cut_inside_a_placeholder_waits_for_its_end() {
        let p = Pipeline::new(vec![], vec![Stage::new(Arc::new(NoSecrets))]);
        let mut ctx = Context::new("r", Principal::default());
        ctx.vault.remember("[PERSON_1]".into(), "Jane Roe".into());
        let mut s = StreamScanner::new(Holdback {
            context: 16,
            tail: 8,
        });
        let r = req();
        let text = "Hi [PERSON_1], your order [PERSON_1] shipped today, thanks.";
        let mut got = String::new();
        for piece in text.as_bytes().chunks(3) {
            let piece = std::str::from_utf8(piece).unwrap();
            let out = s.push(0, piece, false, &p, &r, &mut ctx).await.unwrap();
            assert!(!out.contains('['), "released half a placeholder: {out:?}");
            got.push_str(&out);
        }
        got.push_str(&s.push(0, "", true, &p, &r, &mut ctx).await.unwrap());
        assert_eq!(
            got,
            "Hi Jane Roe, your order Jane Roe shipped today, thanks."
        );
    }

    #[test]
    fn open_secrets_are_found_where_they_start() {
        assert_eq!(
            open_secret("key: -----BEGIN RSA PRIVATE KEY-----\nMIIE"),
            Some(5)
        );
        assert_eq!(
            open_secret("-----BEGIN X-----\nab\n-----END X-----\nok"),
            None,
            "a closed block is not open"
        );
        assert_eq!(open_secret("token eyJhbGciOiJIUzI1NiJ9.eyJzdWIi"), Some(6));
        assert_eq!(open_secret("an ordinary sentence of prose"), None);
    }

    #[tokio::test]
    async fn a_long_secret_is_held_until_it_closes_and_then_seen_whole() {
        let p = Pipeline::new(vec![], vec![Stage::new(Arc::new(NoSecrets))]);
        let mut ctx = Context::new("r", Principal::default());
        let mut s = StreamScanner::new(Holdback {
            context: 32,
            tail: 8,
        });
        let r = req();
        let body = "A".repeat(3000);
        let pem = format!("-----BEGIN SECRET KEY-----\n{body}\n-----END SECRET KEY-----\n");
        let text = format!("here it is: {pem}done.");
        let mut out = String::new();
        let mut pushed = String::new();
        for piece in text.as_bytes().chunks(40) {
            let piece = std::str::from_utf8(piece).unwrap();
            pushed.push_str(piece);
            let got = s.push(0, piece, false, &p, &r, &mut ctx).await.unwrap();
            if !pushed.contains("-----END") {
                assert!(
                    !got.contains('A'),
                    "released part of the open block: {got:?}"
                );
            }
            out.push_str(&got);
        }
        out.push_str(&s.push(0, "", true, &p, &r, &mut ctx).await.unwrap());
        assert!(
            out.starts_with("here it is: -----BEGIN [X] KEY-----"),
            "the guard saw it whole"
        );
        assert!(out.ends_with("-----END [X] KEY-----\ndone."));
    }

    #[test]
    fn open_links_are_found_where_they_start() {
        assert_eq!(open_link("see ![x](https://evil.test/?q=ab"), Some(4));
        assert_eq!(open_link("see [doc](https://ex"), Some(4));
        assert_eq!(open_link("go to https://evil.test/abc"), Some(6));
        assert_eq!(open_link("see ![x](https://a.test/) and more"), None);
        assert_eq!(open_link("go to https://a.test/x now"), None);
        assert_eq!(open_link("plain prose, no links"), None);
    }

    #[tokio::test]
    async fn an_unfinished_link_is_held_until_it_ends() {
        let p = Pipeline::new(vec![], vec![Stage::new(Arc::new(NoSecrets))]);
        let mut ctx = Context::new("r", Principal::default());
        let mut s = StreamScanner::new(Holdback {
            context: 16,
            tail: 8,
        });
        let r = req();
        let url = format!("![x](https://evil.test/?q={})", "a".repeat(300));
        let text = format!("Here you are: {url} done.");
        let mut pushed = String::new();
        for piece in text.as_bytes().chunks(7) {
            let piece = std::str::from_utf8(piece).unwrap();
            pushed.push_str(piece);
            let got = s.push(0, piece, false, &p, &r, &mut ctx).await.unwrap();
            if !pushed.contains(')') {
                assert!(!got.contains("!["), "released an open link: {got:?}");
            }
        }
    }

    #[tokio::test]
    async fn lanes_are_independent_and_listed_while_pending() {
        let p = Pipeline::new(vec![], vec![Stage::new(Arc::new(NoSecrets))]);
        let mut ctx = Context::new("r", Principal::default());
        let mut s = StreamScanner::new(Holdback {
            context: 16,
            tail: 8,
        });
        let r = req();
        s.push(0, "ab", false, &p, &r, &mut ctx).await.unwrap();
        s.push(1025, "{\"x\":", false, &p, &r, &mut ctx)
            .await
            .unwrap();
        assert_eq!(s.pending_lanes(), vec![0, 1025]);
        assert_eq!(
            s.push(1025, "", true, &p, &r, &mut ctx).await.unwrap(),
            "{\"x\":"
        );
        assert_eq!(s.pending_lanes(), vec![0]);
    }

    #[tokio::test]
    async fn unguarded_text_passes_at_once() {
        let p = Pipeline::default();
        let mut ctx = Context::new("r", Principal::default());
        let mut s = StreamScanner::default();
        let r = req();
        assert_eq!(
            s.push(0, "héllo", false, &p, &r, &mut ctx).await.unwrap(),
            "héllo"
        );
        assert_eq!(
            s.push(1, "two", false, &p, &r, &mut ctx).await.unwrap(),
            "two"
        );
    }
}
