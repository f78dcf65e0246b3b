//! Credentials: provider API keys by their documented shapes, private-key PEM blocks, JWTs,
//! passwords in connection strings and `key=value` settings, and high-entropy tokens that sit
//! next to words like key, token or secret.

use super::context::{Ctx, class};
use super::{Candidate, EntityType};
use regex_automata::meta::Regex;
use std::ops::Range;
use std::sync::OnceLock;

/// `(recogniser, pattern)`; earlier wins a tie at the same start.
pub(crate) const PATTERNS: &[(&str, &str)] = &[
    (
        "private_key",
        r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----(?s:.){16,}?-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----",
    ),
    (
        "gcp_service_account",
        r#""type"(?-u:\s)*:(?-u:\s)*"service_account""#,
    ),
    (
        "anthropic_key",
        r"sk-ant-[a-z0-9]{2,8}\d{2}-[A-Za-z0-9_\-]{32,}",
    ),
    (
        "openai_key",
        r"(?-u:\b)sk-(?:proj-|svcacct-|admin-|None-)?[A-Za-z0-9_\-]{20,}",
    ),
    (
        "aws_access_key",
        r"(?-u:\b)(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AROA|ANPA)[A-Z0-9]{16}(?-u:\b)",
    ),
    ("gcp_api_key", r"(?-u:\b)AIza[0-9A-Za-z_\-]{35}"),
    ("azure_storage_key", r"AccountKey=[A-Za-z0-9+/]{40,}={0,2}"),
    (
        "github_token",
        r"(?-u:\b)(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{60,})",
    ),
    ("gitlab_token", r"(?-u:\b)glpat-[A-Za-z0-9_\-]{20,}"),
    ("slack_token", r"(?-u:\b)xox[abposr]-[A-Za-z0-9\-]{10,}"),
    (
        "slack_webhook",
        r"https://hooks\.slack\.com/services/T[A-Za-z0-9]+/B[A-Za-z0-9]+/[A-Za-z0-9]+",
    ),
    (
        "stripe_key",
        r"(?-u:\b)(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,}|(?-u:\b)whsec_[A-Za-z0-9]{24,}",
    ),
    (
        "jwt",
        r"(?-u:\b)eyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}",
    ),
    (
        "url_password",
        r"(?i:[a-z][a-z0-9+.\-]{1,20})://[^\s:/@]+:[^\s@/]+@[A-Za-z0-9.\-]+",
    ),
    (
        "password_setting",
        r#"(?i:pass(?:word|wd)?|pwd|secret|client[_-]?secret|api[_-]?key|access[_-]?key|auth[_-]?token|token|private[_-]?key)["']?\s*[:=]\s*["']?[^\s"',;}{]{6,}"#,
    ),
    ("high_entropy", r"(?-u:\b)[A-Za-z0-9+/_\-]{24,}={0,2}"),
];

const PRIORITY: u8 = 3;

fn regex() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        let pats: Vec<&str> = PATTERNS.iter().map(|(_, p)| *p).collect();
        #[allow(clippy::expect_used)] // the patterns are constants, covered by tests
        Regex::new_many(&pats).expect("secret patterns compile")
    })
}

/// Finds credentials in (normalised) `text`.
pub(crate) fn find(text: &str, out: &mut Vec<Candidate>) {
    let re = regex();
    let mut push = |m: regex_automata::Match| {
        let (name, _) = PATTERNS[m.pattern().as_usize()];
        if let Some((span, score)) = judge(name, text, m.range()) {
            out.push(Candidate {
                entity: EntityType::Secret,
                span,
                score,
                recognizer: name,
                priority: PRIORITY,
            });
        }
    };
    // PEM blocks and service-account JSON span lines: search those texts whole.
    if text.contains("-----BEGIN") || text.contains("service_account") {
        re.find_iter(text).for_each(&mut push);
        return;
    }
    // Everything else is a long unbroken token, or a `key = value` setting.
    for r in long_or_setting_words(text) {
        re.find_iter(regex_automata::Input::new(text).range(r))
            .for_each(&mut push);
    }
}

/// Stretches around words of 16+ bytes and words holding `=` or `:` (one word back, 48
/// bytes ahead), merged: the only places a credential can be.
fn long_or_setting_words(text: &str) -> Vec<Range<usize>> {
    let b = text.as_bytes();
    let mut out: Vec<Range<usize>> = Vec::new();
    let (mut start, mut prev_start, mut setting) = (0usize, 0usize, false);
    for i in 0..=b.len() {
        let c = b.get(i).copied().unwrap_or(b' ');
        if !c.is_ascii_whitespace() {
            setting |= c == b'=' || c == b':';
            continue;
        }
        if i > start && (i - start >= 16 || setting) {
            let from = if setting { prev_start } else { start };
            let mut to = (i + 48).min(b.len());
            while !text.is_char_boundary(to) {
                to += 1;
            }
            match out.last_mut() {
                Some(last) if from <= last.end => last.end = last.end.max(to),
                _ => out.push(from..to),
            }
        }
        if i > start {
            prev_start = start;
        }
        start = i + 1;
        setting = false;
    }
    out
}

fn judge(name: &str, text: &str, span: Range<usize>) -> Option<(Range<usize>, f32)> {
    let s = &text[span.clone()];
    match name {
        "url_password" => {
            // Only the password: scheme://user:PASSWORD@host
            let after_scheme = s.find("://")? + 3;
            let at = s.rfind('@')?;
            let colon = s[after_scheme..at].find(':')? + after_scheme;
            let pw = &s[colon + 1..at];
            if is_placeholder(pw) {
                return None;
            }
            Some((span.start + colon + 1..span.start + at, 0.9))
        }
        "password_setting" => {
            let sep = s.find([':', '='])?;
            let value = s[sep + 1..].trim_start_matches([' ', '\t', '"', '\'']);
            let start = span.end - value.len();
            // A bracket the value did not open closes the text around it ("[SECRET:…]").
            let value = value.trim_end_matches(|c: char| {
                let open = match c {
                    ')' => '(',
                    ']' => '[',
                    '>' => '<',
                    _ => return false,
                };
                !value.contains(open)
            });
            let span = start..start + value.len();
            if is_placeholder(value) || value.len() < 6 {
                return None;
            }
            let key = s[..sep].to_ascii_lowercase();
            let password = key.contains("pass") || key.contains("pwd");
            let random = entropy(value) >= 3.0 && has_mixed_classes(value);
            (password || random).then_some((span, 0.8))
        }
        "jwt" => {
            let header = s.split('.').next()?;
            jwt_header_ok(header).then_some((span, 0.9))
        }
        "high_entropy" => {
            if entropy(s) < 3.6 || !has_mixed_classes(s) || !Ctx::of(text, &span).near(class::KEY) {
                return None;
            }
            Some((span, 0.7))
        }
        "openai_key" => {
            // Real keys are long and mix cases and digits; "sk-learn-style" words are not keys.
            let body = &s[3..];
            (body.len() >= 20 && has_mixed_classes(body)).then_some((span, 0.95))
        }
        _ => Some((span, 0.95)),
    }
}

/// `password=<password>`, `xxx`, `****`, `${VAR}`: a stand-in, not a credential.
fn is_placeholder(v: &str) -> bool {
    let l = v.to_ascii_lowercase();
    v.starts_with(['<', '$', '{', '[', '%'])
        || v.bytes()
            .all(|b| b == b'*' || b == b'x' || b == b'X' || b == b'.')
        || [
            "password",
            "changeme",
            "example",
            "placeholder",
            "your_",
            "redacted",
            "secret",
        ]
        .iter()
        .any(|w| l == *w || l.starts_with(w) && l.len() < 14)
}

fn has_mixed_classes(s: &str) -> bool {
    let digit = s.bytes().any(|b| b.is_ascii_digit());
    let lower = s.bytes().any(|b| b.is_ascii_lowercase());
    let upper = s.bytes().any(|b| b.is_ascii_uppercase());
    (digit as u8 + lower as u8 + upper as u8) >= 2 && digit
}

/// Shannon entropy in bits per character.
pub(crate) fn entropy(s: &str) -> f32 {
    let mut counts = [0u32; 256];
    for b in s.bytes() {
        counts[b as usize] += 1;
    }
    let n = s.len() as f32;
    counts
        .iter()
        .filter(|c| **c > 0)
        .map(|c| {
            let p = *c as f32 / n;
            -p * p.log2()
        })
        .sum()
}

/// A JWT's first part decodes to a JSON header naming an algorithm.
fn jwt_header_ok(b64: &str) -> bool {
    let mut bits = 0u32;
    let mut nbits = 0;
    let mut out = Vec::with_capacity(b64.len());
    for c in b64.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' | b'+' => 62,
            b'_' | b'/' => 63,
            _ => return false,
        };
        bits = (bits << 6) | u32::from(v);
        nbits += 6;
        if nbits >= 8 {
            nbits -= 8;
            out.push((bits >> nbits) as u8);
        }
    }
    String::from_utf8(out).is_ok_and(|h| h.contains("\"alg\"") || h.contains("\"typ\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(text: &str) -> Vec<(&'static str, String)> {
        let mut v = Vec::new();
        find(text, &mut v);
        v.into_iter()
            .map(|c| (c.recognizer, text[c.span].to_owned()))
            .collect()
    }

    #[test]
    fn every_pattern_compiles() {
        let _ = regex();
    }

    #[test]
    fn provider_keys() {
        let cases = [
            ("openai_key", "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z"),
            (
                "anthropic_key",
                "sk-ant-api03-AbCdEf0123456789AbCdEf0123456789AbCdEf0123456789xyz",
            ),
            ("aws_access_key", "AKIAIOSFODNN7EXAMPLE"),
            ("gcp_api_key", "AIzaSyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q"),
            ("github_token", "ghp_ABCdef0123456789ABCdef0123456789ABCd"),
            ("gitlab_token", "glpat-AbCdEf0123456789xYz1"),
            (
                "slack_token",
                "xoxb-123456789012-1234567890123-AbCdEfGhIjKl",
            ),
            ("stripe_key", "sk_live_4eC39HqLyjWDarjtT1zdp7dc"),
        ];
        for (want, key) in cases {
            let got = names(&format!("use {key} please"));
            assert_eq!(got, vec![(want, key.to_owned())], "{want}");
        }
    }

    #[test]
    fn pem_blocks_jwts_and_gcp_json() {
        let pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA7\nabc\n-----END RSA PRIVATE KEY-----";
        assert_eq!(names(pem)[0].0, "private_key");
        let jwt = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";
        assert_eq!(names(&format!("Bearer {jwt}"))[0].0, "jwt");
        let gcp = r#"{"type": "service_account", "project_id": "p"}"#;
        assert_eq!(names(gcp)[0].0, "gcp_service_account");
    }

    #[test]
    fn passwords_in_urls_and_settings_only_the_value() {
        let got = names("postgres://app:S3cr3t-pw@db.internal:5432/prod");
        assert_eq!(got, vec![("url_password", "S3cr3t-pw".to_owned())]);
        let got = names("DB_PASSWORD=hunter2hunter");
        assert_eq!(got, vec![("password_setting", "hunter2hunter".to_owned())]);
        assert!(names("password=<your password>").is_empty());
        let key = "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z";
        let got = names(&format!("keep [SECRET:{key}] safe"));
        assert_eq!(
            got,
            vec![("password_setting", key.to_owned())],
            "the bracket stays"
        );
        assert!(names("postgres://user:${PW}@host/db").is_empty());
    }

    #[test]
    fn high_entropy_needs_a_key_word() {
        let tok = "q8Zr2Lx0Vn4Tb7Wk1Pm9Hs3Jd6Fy5Gc";
        assert_eq!(names(&format!("auth token {tok}"))[0].0, "high_entropy");
        assert!(names(&format!("the hash was {tok}")).is_empty());
        assert!(names("supercalifragilisticexpialidocious words").is_empty());
    }
}
