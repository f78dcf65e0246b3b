//! Server-sent events, split as they arrive: the upstream's byte chunks are cut at event
//! boundaries so each event can be judged and forwarded the moment it is complete.

use bytes::{Bytes, BytesMut};

/// Accumulates bytes and yields whole events (without their terminating blank line).
#[derive(Debug, Default)]
pub struct EventSplitter {
    buf: BytesMut,
}

impl EventSplitter {
    /// Adds a chunk; returns the events it completed.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<Bytes> {
        self.buf.extend_from_slice(chunk);
        let mut out = Vec::new();
        while let Some((end, sep)) = find_boundary(&self.buf) {
            let event = self.buf.split_to(end).freeze();
            let _ = self.buf.split_to(sep);
            out.push(event);
        }
        out
    }

    /// Whatever is left when the stream ends (an event without its blank line).
    pub fn finish(&mut self) -> Option<Bytes> {
        let rest = self.buf.split().freeze();
        (!rest.iter().all(u8::is_ascii_whitespace)).then_some(rest)
    }
}

fn find_boundary(b: &[u8]) -> Option<(usize, usize)> {
    let mut i = 0;
    while i + 1 < b.len() {
        if b[i] == b'\n' {
            if b[i + 1] == b'\n' {
                return Some((i, 2));
            }
            if b[i + 1] == b'\r' && b.get(i + 2) == Some(&b'\n') {
                return Some((i, 3));
            }
        }
        i += 1;
    }
    None
}

/// The `data:` payload of an event (joined when it spans lines), if any.
pub fn data_of(event: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(event).ok()?;
    let mut data: Option<String> = None;
    for line in text.lines() {
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
    data
}

/// An event carrying `data` as one line.
pub fn event(data: &str) -> Bytes {
    Bytes::from(format!("data: {data}\n\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_across_chunks_come_out_whole() {
        let mut s = EventSplitter::default();
        assert!(s.push(b"data: {\"a\"").is_empty());
        let evs = s.push(b":1}\n\ndata: [DONE]\n\n");
        assert_eq!(evs.len(), 2);
        assert_eq!(data_of(&evs[0]).unwrap(), "{\"a\":1}");
        assert_eq!(data_of(&evs[1]).unwrap(), "[DONE]");
        assert!(s.finish().is_none());
    }

    #[test]
    fn crlf_and_comments_and_multiline_data() {
        let mut s = EventSplitter::default();
        let evs = s.push(b": keep-alive\r\n\r\ndata: a\ndata: b\n\n");
        assert_eq!(evs.len(), 2);
        assert_eq!(data_of(&evs[0]), None);
        assert_eq!(data_of(&evs[1]).unwrap(), "a\nb");
        s.push(b"data: tail");
        assert_eq!(&s.finish().unwrap()[..], b"data: tail");
    }
}
