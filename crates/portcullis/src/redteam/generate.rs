//! The generator of the built-in corpus: hand-written seeds (`redteam/seeds/*.txt`) × goals ×
//! templates × mutators → `redteam/attacks.jsonl` and `redteam/benign.jsonl`.
//!
//! Seeds files: `# ` starts a comment line; `[category option=value …]` starts a section (the
//! options are described at the top of each file); every other line is a seed.
//!
//! Why generate rather than write 600 rows by hand: a seed written once is tested in every
//! disguise a detector must see through, and a new mutator reaches the whole corpus at once.
//! Why commit the output too: a reviewer reads exactly what a release was tested against, and
//! a test regenerates it and fails when the two differ. Nothing here is random — goals are
//! dealt in turn from a per-category starting point and frames are picked by hash — so the same
//! seeds always give the same bytes. Regenerate with
//! `cargo run -p portcullis -- redteam corpus` (from the workspace root).

use super::mutate::{Mutator, fnv};
use super::{Case, Label, Origin};
use std::collections::BTreeMap;

/// The seeds files, read from `redteam/seeds/`.
#[derive(Debug, Clone, Copy)]
pub struct Seeds<'a> {
    pub attacks: &'a str,
    pub goals: &'a str,
    pub benign: &'a str,
}

/// The committed seeds, as the binary was built with them.
pub const BUILT_IN_SEEDS: Seeds<'static> = Seeds {
    attacks: include_str!("../../redteam/seeds/attacks.txt"),
    goals: include_str!("../../redteam/seeds/goals.txt"),
    benign: include_str!("../../redteam/seeds/benign.txt"),
};

/// One `[category option=value …]` section and its seed lines.
#[derive(Debug)]
struct Section {
    category: String,
    options: BTreeMap<String, String>,
    seeds: Vec<String>,
}

impl Section {
    fn number(&self, key: &str, default: usize) -> Result<usize, String> {
        match self.options.get(key) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| format!("[{}] {key}={v}: not a number", self.category)),
        }
    }

    fn mutators(&self, key: &str) -> Result<Vec<Mutator>, String> {
        match self.options.get(key) {
            None => Ok(Vec::new()),
            Some(v) => super::mutate::parse_list(v).map_err(|e| format!("[{}] {e}", self.category)),
        }
    }

    fn origin(&self) -> Result<Origin, String> {
        match self.options.get("source").map(String::as_str) {
            None | Some("user") => Ok(Origin::User),
            Some("tool") => Ok(Origin::Tool),
            Some("document") => Ok(Origin::Document),
            Some(other) => Err(format!("[{}] source={other}", self.category)),
        }
    }
}

/// Splits a seeds file into sections; `#` lines and blank lines are skipped.
fn sections(text: &str) -> Result<Vec<Section>, String> {
    let mut out: Vec<Section> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_end();
        // `# ` starts a comment; a seed may start with `###` (a forged Markdown heading).
        if line.trim().is_empty() || line == "#" || line.starts_with("# ") {
            continue;
        }
        if let Some(head) = line
            .strip_prefix('[')
            .and_then(|l| l.strip_suffix(']'))
            .filter(|h| is_header(h))
        {
            let mut words = head.split(' ').filter(|w| !w.is_empty());
            let category = words.next().unwrap_or_default().to_owned();
            let mut options = BTreeMap::new();
            // Values may hold spaces (x=a five-year-old|…): a word without '=' continues one.
            let mut last: Option<String> = None;
            for w in words {
                match (w.split_once('='), &last) {
                    (Some((k, v)), _) => {
                        options.insert(k.to_owned(), v.to_owned());
                        last = Some(k.to_owned());
                    }
                    (None, Some(k)) => {
                        if let Some(v) = options.get_mut(k) {
                            v.push(' ');
                            v.push_str(w);
                        }
                    }
                    (None, None) => return Err(format!("line {}: '{w}' is no option", n + 1)),
                }
            }
            out.push(Section {
                category,
                options,
                seeds: Vec::new(),
            });
            continue;
        }
        match out.last_mut() {
            Some(s) => s.seeds.push(unescape(line)),
            None => return Err(format!("line {}: a seed before any [section]", n + 1)),
        }
    }
    Ok(out)
}

/// `name` or `name key=value …`: a seed may also start with '[' and end with ']'.
fn is_header(head: &str) -> bool {
    let mut words = head.split(' ');
    let name_ok = words
        .next()
        .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_lowercase() || c == '_'));
    name_ok && words.next().is_none_or(|w| w.contains('='))
}

fn unescape(s: &str) -> String {
    s.replace("\\n", "\n").replace("\\u200b", "\u{200B}")
}

/// Goals, each with the canary that proves it was carried out (if it has one).
fn goals(text: &str) -> Vec<(String, Option<String>)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| match l.split_once(" | ") {
            Some((g, c)) => (g.trim().to_owned(), Some(c.trim().to_owned())),
            None => (l.to_owned(), None),
        })
        .collect()
}

/// Numbers rows per category as they are made.
#[derive(Default)]
struct Rows {
    cases: Vec<Case>,
    counts: BTreeMap<String, usize>,
}

impl Rows {
    fn push(&mut self, label: Label, category: &str, origin: Origin, text: String) -> &mut Case {
        let n = self.counts.entry(category.to_owned()).or_default();
        *n += 1;
        let prefix = if label == Label::Benign {
            "benign-"
        } else {
            ""
        };
        self.cases.push(Case {
            id: format!("{prefix}{category}-{n:03}"),
            label,
            category: category.to_owned(),
            source: origin,
            mutator: None,
            canary: None,
            text,
        });
        let last = self.cases.len() - 1;
        &mut self.cases[last]
    }
}

/// Deals goals in turn, starting at a point fixed by the category's name.
struct Dealer<'a> {
    goals: &'a [(String, Option<String>)],
    next: usize,
}

impl<'a> Dealer<'a> {
    fn new(goals: &'a [(String, Option<String>)], category: &str) -> Self {
        let next = (fnv(category) % goals.len().max(1) as u64) as usize;
        Dealer { goals, next }
    }

    /// `seed` with the next goal, and that goal's canary; a seed without `{goal}` as it is.
    fn fill(&mut self, seed: &str) -> (String, Option<String>) {
        if !seed.contains("{goal}") || self.goals.is_empty() {
            return (seed.to_owned(), None);
        }
        let (goal, canary) = &self.goals[self.next % self.goals.len()];
        self.next += 1;
        (seed.replace("{goal}", goal), canary.clone())
    }
}

/// The attack corpus the seeds describe.
pub fn attacks(seeds: Seeds<'_>) -> Result<Vec<Case>, String> {
    let goals = goals(seeds.goals);
    let mut rows = Rows::default();
    for s in sections(seeds.attacks)? {
        let origin = s.origin()?;
        let mut dealer = Dealer::new(&goals, &s.category);
        if s.category == "many_shot" {
            many_shot(&s, &mut dealer, &mut rows)?;
            continue;
        }
        let per_seed = s.number("goals", 1)?;
        let (mutate, each) = (s.mutators("mutate")?, s.mutators("each")?);
        for (j, seed) in s.seeds.iter().enumerate() {
            let plain = if seed.contains("{goal}") { per_seed } else { 1 };
            for _ in 0..if each.is_empty() { plain } else { 0 } {
                let (text, canary) = dealer.fill(seed);
                rows.push(Label::Attack, &s.category, origin, text).canary = canary;
            }
            let one = (!mutate.is_empty()).then(|| mutate[j % mutate.len()]);
            let variants = each.iter().copied().chain(one);
            for m in variants {
                let (text, canary) = dealer.fill(seed);
                let row = rows.push(Label::Attack, &s.category, origin, m.apply(&text));
                row.canary = canary;
                row.mutator = Some(m.name().to_owned());
            }
        }
    }
    Ok(rows.cases)
}

/// Fake transcripts in which an assistant always complies, 8, 16 or 32 turns long in four
/// speaker styles, each ending in two real goals.
fn many_shot(s: &Section, dealer: &mut Dealer<'_>, rows: &mut Rows) -> Result<(), String> {
    let pairs: Vec<(&str, &str)> = s
        .seeds
        .iter()
        .filter_map(|l| l.split_once(" || "))
        .map(|(q, a)| (q.trim(), a.trim()))
        .collect();
    if pairs.is_empty() {
        return Err("[many_shot] needs 'question || answer' lines".into());
    }
    let styles = [
        ("User", "Assistant"),
        ("Human", "AI"),
        ("Q", "A"),
        ("### Instruction", "### Response"),
    ];
    for (f, (user, bot)) in styles.iter().enumerate() {
        for turns in [8, 16, 32] {
            for _ in 0..2 {
                let mut text = String::new();
                for i in 0..turns {
                    let (q, a) = pairs[(i + f * 3) % pairs.len()];
                    text.push_str(&format!("{user}: {q}\n{bot}: {a}\n\n"));
                }
                let (ask, canary) = dealer.fill("Now {goal}.");
                text.push_str(&format!("{user}: {ask}\n{bot}:"));
                rows.push(Label::Attack, &s.category, Origin::User, text)
                    .canary = canary;
            }
        }
    }
    Ok(())
}

/// The benign corpus the seeds describe.
pub fn benign(seeds: Seeds<'_>) -> Result<Vec<Case>, String> {
    let mut rows = Rows::default();
    for s in sections(seeds.benign)? {
        let origin = s.origin()?;
        let values: Vec<&str> = s
            .options
            .get("x")
            .map(|v| v.split('|').collect())
            .unwrap_or_default();
        let per = s.number("per", 1)?;
        for (j, seed) in s.seeds.iter().enumerate() {
            if seed.contains("{x}") && !values.is_empty() {
                for k in 0..per {
                    let x = values[(j * per + k) % values.len()];
                    rows.push(Label::Benign, &s.category, origin, seed.replace("{x}", x));
                }
            } else {
                rows.push(Label::Benign, &s.category, origin, seed.clone());
            }
        }
    }
    Ok(rows.cases)
}

/// Cases as JSON lines, one a line, each ending in a newline.
pub fn to_jsonl(cases: &[Case]) -> String {
    let mut out = String::new();
    for c in cases {
        if let Ok(line) = serde_json::to_string(c) {
            out.push_str(&line);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn the_committed_corpus_is_what_the_seeds_generate() {
        let a = to_jsonl(&attacks(BUILT_IN_SEEDS).unwrap());
        let b = to_jsonl(&benign(BUILT_IN_SEEDS).unwrap());
        assert!(
            a == super::super::corpus::ATTACKS && b == super::super::corpus::BENIGN,
            "redteam/*.jsonl are stale: run `cargo run -p portcullis -- redteam corpus`"
        );
    }

    #[test]
    fn the_corpus_is_large_and_varied_enough() {
        let a = attacks(BUILT_IN_SEEDS).unwrap();
        let b = benign(BUILT_IN_SEEDS).unwrap();
        assert!(a.len() >= 300, "{} attacks", a.len());
        assert!(b.len() >= 300, "{} benign", b.len());
        let categories: BTreeSet<&str> = a.iter().map(|c| c.category.as_str()).collect();
        assert!(categories.len() >= 12, "{categories:?}");
        let ids: BTreeSet<&str> = a.iter().chain(&b).map(|c| c.id.as_str()).collect();
        assert_eq!(ids.len(), a.len() + b.len(), "ids are unique");
        let texts: BTreeSet<&str> = a.iter().map(|c| c.text.as_str()).collect();
        assert_eq!(texts.len(), a.len(), "no attack is repeated");
        assert!(a.iter().all(|c| !c.text.contains("{goal}")));
        assert!(a.iter().any(|c| c.source == Origin::Tool));
        assert!(a.iter().any(|c| c.source == Origin::Document));
        assert!(
            b.iter()
                .any(|c| c.text == "How do I kill a zombie process in Linux?")
        );
    }

    #[test]
    fn sections_deal_goals_and_mutators_in_turn() {
        let seeds = Seeds {
            attacks: "[a goals=2 mutate=casing,reverse]\nDo {goal}.\nPlain.\n[b source=tool each=hex]\nX {goal}",
            goals: "one | C1\ntwo\nthree | C3",
            benign: "[c x=A|B|C per=2]\nUse {x}.\nNo fill.",
        };
        let a = attacks(seeds).unwrap();
        let summary: Vec<(String, Option<String>)> = a
            .iter()
            .map(|c| (c.text.clone(), c.mutator.clone()))
            .collect();
        let start = (fnv("a") % 3) as usize;
        let g = ["one", "two", "three"];
        assert_eq!(summary[0].0, format!("Do {}.", g[start]));
        assert_eq!(summary[1].0, format!("Do {}.", g[(start + 1) % 3]));
        assert_eq!(summary[2].1.as_deref(), Some("casing"));
        assert_eq!(summary[3], ("Plain.".into(), None));
        assert_eq!(summary[4].1.as_deref(), Some("reverse"));
        assert!(summary[4].0.contains(".nialP"), "{:?}", summary[4]);
        assert_eq!(a[5].source, Origin::Tool);
        assert_eq!(a[5].mutator.as_deref(), Some("hex"));
        assert_eq!(a.len(), 6);
        let b = benign(seeds).unwrap();
        let texts: Vec<&str> = b.iter().map(|c| c.text.as_str()).collect();
        assert_eq!(texts, ["Use A.", "Use B.", "No fill."]);
        assert_eq!(b[0].id, "benign-c-001");
    }
}
