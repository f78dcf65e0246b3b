//! Server-sent events, split as they arrive: the upstream's byte chunks are cut at event
//! boundaries so each event can be judged and forwarded the moment it is complete. The
//! upstream is not trusted: line ends may be LF, CRLF or CR alone (as the SSE grammar allows),
//! the buffer is scanned once per byte however the chunks fall, and an event larger than the
//! cap is an error rather than a reason to buffer without end.

use bytes::{Bytes, BytesMut};

/// The largest event accepted from the upstream (bytes).
pub const MAX_EVENT: usize = 1024 * 1024;

/// The upstream sent something that is not a stream of bounded events.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the upstream sent an event over {MAX_EVENT} bytes")]
pub struct EventTooLarge;

/// Accumulates bytes and yields whole events (without their terminating blank line), each
/// with its lines joined by `\n`.
#[derive(Debug, Default)]
pub struct EventSplitter {
    buf: BytesMut,
    /// How far `buf` has been scanned for a boundary.
    scanned: usize,
    /// The last boundary ended with a CR: a LF arriving next belongs to it.
    after_cr: bool,
}

impl EventSplitter {
    /// Adds a chunk; returns the events it completed.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<Bytes>, EventTooLarge> {
        // Only the very next byte can be the LF of that CR: whatever it is, the wait is over.
        let chunk = match (std::mem::take(&mut self.after_cr), chunk.first()) {
            (true, Some(b'\n')) => &chunk[1..],
            (true, None) => {
                self.after_cr = true;
                chunk
            }
            _ => chunk,
        };
        self.buf.extend_from_slice(chunk);
        let mut out = Vec::new();
        while let Some((end, sep)) = find_boundary(&self.buf, self.scanned) {
            let event = self.buf.split_to(end).freeze();
            let separator = self.buf.split_to(sep);
            self.after_cr = self.buf.is_empty() && separator.last() == Some(&b'\r');
            self.scanned = 0;
            out.push(normalise_lines(event));
        }
        // A boundary (at most CRLF CRLF) may have begun in the last bytes: rescan those only.
        self.scanned = self.buf.len().saturating_sub(4);
        if self.buf.len() > MAX_EVENT {
            return Err(EventTooLarge);
        }
        Ok(out)
    }

    /// Whatever is left when the stream ends (an event without its blank line).
    pub fn finish(&mut self) -> Option<Bytes> {
        let rest = self.buf.split().freeze();
        self.scanned = 0;
        (!rest.iter().all(u8::is_ascii_whitespace)).then(|| normalise_lines(rest))
    }
}

/// The end of the first event at or after `from` and the length of its separator: a blank
/// line, whichever of LF, CRLF or CR ends each line.
fn find_boundary(b: &[u8], from: usize) -> Option<(usize, usize)> {
    let mut i = from;
    while i < b.len() {
        let first = match b[i] {
            b'\n' => 1,
            b'\r' if b.get(i + 1) == Some(&b'\n') => 2,
            b'\r' if i + 1 < b.len() => 1,
            // A CR at the very end: wait for the next byte to know whether LF follows.
            b'\r' => return None,
            _ => {
                i += 1;
                continue;
            }
        };
        let j = i + first;
        let second = match b.get(j) {
            Some(b'\n') => 1,
            Some(b'\r') if b.get(j + 1) == Some(&b'\n') => 2,
            // A CR alone, or the CR of a CRLF whose LF has not arrived: a line end either way,
            // so the blank line is complete (a LF that follows is skipped, see `after_cr`).
            Some(b'\r') => 1,
            None => return None,
            Some(_) => 0,
        };
        if second > 0 {
            return Some((i, first + second));
        }
        i = j;
    }
    None
}

/// The event with every line ending made `\n`.
fn normalise_lines(event: Bytes) -> Bytes {
    if !event.contains(&b'\r') {
        return event;
    }
    let mut out = Vec::with_capacity(event.len());
    let mut i = 0;
    while i < event.len() {
        match event[i] {
            b'\r' => {
                out.push(b'\n');
                if event.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    Bytes::from(out)
}

/// The `data:` payload of an event (joined when it spans lines), if any. `Err` when the event
/// is not UTF-8.
pub fn data_of(event: &[u8]) -> Result<Option<String>, std::str::Utf8Error> {
    let text = std::str::from_utf8(event)?;
    let mut data: Option<String> = None;
    for line in text.split('\n') {
        if let Some(rest) = line.strip_prefix("data:") {
            let rest = rest.strip_prefix(' ').unwrap_or(rest);
            match &mut data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(rest);
                }
                None => data = Some(rest.to_owned()),
            }
        }
    }
    Ok(data)
}

/// An event carrying `data` as one line.
pub fn event(data: &str) -> Bytes {
    Bytes::from(format!("data: {data}\n\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push(s: &mut EventSplitter, chunk: &[u8]) -> Vec<Bytes> {
        s.push(chunk).unwrap()
    }

    #[test]
    fn events_split_across_chunks_come_out_whole() {
        let mut s = EventSplitter::default();
        assert!(push(&mut s, b"data: {\"a\"").is_empty());
        let evs = push(&mut s, b":1}\n\ndata: [DONE]\n\n");
        assert_eq!(evs.len(), 2);
        assert_eq!(data_of(&evs[0]).unwrap().unwrap(), "{\"a\":1}");
        assert_eq!(data_of(&evs[1]).unwrap().unwrap(), "[DONE]");
        assert!(s.finish().is_none());
    }

    #[test]
    fn crlf_and_comments_and_multiline_data() {
        let mut s = EventSplitter::default();
        let evs = push(&mut s, b": keep-alive\r\n\r\ndata: a\ndata: b\n\n");
        assert_eq!(evs.len(), 2);
        assert_eq!(data_of(&evs[0]).unwrap(), None);
        assert_eq!(data_of(&evs[1]).unwrap().unwrap(), "a\nb");
        push(&mut s, b"data: tail");
        assert_eq!(&s.finish().unwrap()[..], b"data: tail");
    }

    #[test]
    fn cr_alone_ends_lines_and_events_even_split_between_chunks() {
        let mut s = EventSplitter::default();
        let evs = push(&mut s, b"data: a\r\rdata: b\r");
        assert_eq!(evs.len(), 1);
        assert_eq!(data_of(&evs[0]).unwrap().unwrap(), "a");
        // The CR at the end of the last chunk may start a CRLF: the boundary waits for it.
        let evs = push(&mut s, b"\n\r\n");
        assert_eq!(evs.len(), 1);
        assert_eq!(data_of(&evs[0]).unwrap().unwrap(), "b");
    }

    #[test]
    fn one_byte_at_a_time_gives_the_same_events() {
        let stream = b"data: {\"x\":1}\r\n\r\n: c\n\ndata: y\rdata: z\r\r";
        let mut whole = EventSplitter::default();
        let expected = push(&mut whole, stream);
        let mut s = EventSplitter::default();
        let mut got = Vec::new();
        for b in stream {
            got.extend(push(&mut s, &[*b]));
        }
        assert_eq!(got, expected);
        assert_eq!(got.len(), 3);
    }

    #[test]
    fn only_the_byte_right_after_a_cr_can_be_its_lf() {
        // Found by fuzzing (fuzz/corpus/sse/lf_after_cr_chunk): the LF completing a CRLF came
        // alone in its chunk, and the LF starting the next chunk was dropped as well, so the
        // events depended on where TCP cut the bytes.
        let stream = b"x\r\n\r\r\n\r\n\nda\r\n\r";
        let mut whole = EventSplitter::default();
        let mut expected = push(&mut whole, stream);
        expected.extend(whole.finish());
        let mut cut = EventSplitter::default();
        let mut got = Vec::new();
        for chunk in [&stream[..7], &stream[7..8], &b""[..], &stream[8..]] {
            got.extend(push(&mut cut, chunk));
        }
        got.extend(cut.finish());
        assert_eq!(got, expected);
    }

    #[test]
    fn an_endless_event_is_an_error_and_bad_utf8_is_reported() {
        let mut s = EventSplitter::default();
        let chunk = vec![b'x'; 64 * 1024];
        let mut failed = false;
        for _ in 0..20 {
            if s.push(&chunk).is_err() {
                failed = true;
                break;
            }
        }
        assert!(failed);
        assert!(data_of(b"data: \xff\xfe").is_err());
    }
}
