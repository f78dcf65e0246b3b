//! Curated patterns for abuse the training sets barely hold: a threat of violence made to the
//! reader, a group of people called vermin, a call to exterminate one. OpenAI's set has almost
//! no such rows, so a learned weight cannot find them; each family matched adds a fixed logit
//! to the `content` gate, as the injection rules do. They match word sequences (the
//! classifier's folded, lower-cased [`words`](crate::classifier::words)), not substrings.

/// Logit added to the `content` gate per family matched.
pub const RULE_WEIGHT: f32 = 2.0;

/// What the rules add to the `content` gate for a text's (lower-cased) `words`.
pub fn logit(words: &[String]) -> f32 {
    RULE_WEIGHT * families(words).len() as f32
}

/// People named as a group: the subject of dehumanising or exterminating talk. Not animals,
/// pests or diseases, so "rats are vermin" and "weeds should be eradicated" match nothing.
const GROUPS: &[&str] = &[
    "africans",
    "arabs",
    "asians",
    "atheists",
    "blacks",
    "catholics",
    "chinese",
    "christians",
    "democrats",
    "disabled",
    "feminists",
    "foreigners",
    "gays",
    "gypsies",
    "hindus",
    "hispanics",
    "homosexuals",
    "immigrants",
    "indians",
    "jews",
    "latinos",
    "lesbians",
    "liberals",
    "mexicans",
    "migrants",
    "muslims",
    "people",
    "refugees",
    "republicans",
    "sikhs",
    "trans",
    "whites",
    "women",
    "men",
];

/// Pronouns that name people already mentioned: enough for the strongest words only.
const PRONOUNS: &[&str] = &["they", "them", "those", "these"];

/// Words that deny people their humanity whatever the subject.
const STRONG: &[&str] = &[
    "subhuman",
    "subhumans",
    "vermin",
    "untermenschen",
    "cockroaches",
    "roaches",
    "mongrels",
    "savages",
];

/// Words that dehumanise when said of a group of people (and are ordinary of animals).
const WEAK: &[&str] = &[
    "animals",
    "apes",
    "monkeys",
    "rats",
    "pigs",
    "dogs",
    "beasts",
    "parasites",
    "insects",
    "plague",
    "disease",
    "cancer",
    "filth",
    "scum",
    "trash",
    "garbage",
];

const COPULA: &[&str] = &["are", "is", "r", "were"];

/// Passive outcomes of a call to exterminate ("… should be gassed"), said of any people.
const EXTERMINATED: &[&str] = &[
    "exterminated",
    "gassed",
    "eradicated",
    "lynched",
    "slaughtered",
    "culled",
];

/// Outcomes that also end debates about punishment ("people who … should be executed"), so
/// they count only of a named group.
const KILLED: &[&str] = &["killed", "shot", "hanged", "executed"];

const OUGHT: &[&str] = &[
    "should", "must", "deserve", "deserves", "ought", "need", "needs",
];

/// Calls that take a group as their object ("kill all …", "gas the …").
const CALLS: &[&str] = &[
    "exterminate",
    "gas",
    "kill",
    "lynch",
    "slaughter",
    "eradicate",
];

/// Violence done to a person.
const VIOLENCE: &[&str] = &[
    "kill",
    "murder",
    "hurt",
    "shoot",
    "stab",
    "rape",
    "strangle",
    "choke",
    "slaughter",
    "behead",
    "torture",
    "burn",
    "butcher",
];

/// What makes a first-person statement about the future: "I will", "I'm going to".
const WILL: &[&str] = &["will", "i'll", "we'll", "gonna", "going", "shall"];

fn is(w: &str, set: &[&str]) -> bool {
    set.contains(&w)
}

/// The families matched by `words` (lower-cased, in order), each named once.
pub fn families(words: &[String]) -> Vec<&'static str> {
    let w: Vec<&str> = words.iter().map(String::as_str).collect();
    let mut out = Vec::new();
    if dehumanising(&w) {
        out.push("dehumanisation");
    }
    if exterminating(&w) {
        out.push("extermination");
    }
    if threatening(&w) {
        out.push("threat");
    }
    out
}

/// "<group> are (all|just|nothing but)… <word>": STRONG words after a group or a pronoun, WEAK
/// ones after a group.
fn dehumanising(w: &[&str]) -> bool {
    w.iter().enumerate().any(|(i, s)| {
        let group = is(s, GROUPS);
        if !(group || is(s, PRONOUNS)) {
            return false;
        }
        // The copula within the next three words, the noun within three after it.
        let Some(c) = (i + 1..(i + 4).min(w.len())).find(|&j| is(w[j], COPULA)) else {
            return false;
        };
        w[c + 1..(c + 4).min(w.len())]
            .iter()
            .any(|x| is(x, STRONG) || (group && is(x, WEAK)))
    })
}

/// "<group> should (all) be gassed", "kill all <group>", "death to <group>".
fn exterminating(w: &[&str]) -> bool {
    let span = |from: usize, to: usize| &w[from.min(w.len())..to.min(w.len())];
    let named = |x: &&str| is(x, GROUPS) && *x != "people";
    w.iter().enumerate().any(|(i, s)| {
        if is(s, OUGHT) {
            // People before, within six words, and the outcome within four after.
            let (before, after) = (span(i.saturating_sub(6), i), span(i + 1, i + 5));
            (before.iter().any(|x| is(x, GROUPS)) && after.iter().any(|x| is(x, EXTERMINATED)))
                || (before.iter().any(named) && after.iter().any(|x| is(x, KILLED)))
        } else if is(s, CALLS) || (*s == "death" && w.get(i + 1) == Some(&"to")) {
            span(i + 1, i + 4).iter().any(named)
        } else {
            false
        }
    })
}

/// "I will / I'm going to … <violence> you": violence promised to the reader. "Shoot you a
/// message" and "kill this bug" are not.
fn threatening(w: &[&str]) -> bool {
    w.iter().enumerate().any(|(i, s)| {
        let first_person = matches!(*s, "i" | "we" | "i'm" | "we're" | "i'll" | "we'll");
        if !first_person {
            return false;
        }
        // A word of intent right after ("will", "am going", "gonna", or the contraction itself).
        let intent = matches!(*s, "i'll" | "we'll")
            || w[i + 1..(i + 3).min(w.len())].iter().any(|x| is(x, WILL));
        if !intent {
            return false;
        }
        (i + 1..(i + 11).min(w.len())).any(|j| {
            is(w[j], VIOLENCE)
                && w[j + 1..(j + 4).min(w.len())]
                    .iter()
                    .enumerate()
                    .any(|(k, x)| {
                        matches!(*x, "you" | "u" | "ya" | "your")
                            && !matches!(w.get(j + 2 + k).copied(), Some("a" | "an" | "some"))
                    })
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classifier::words;

    fn fam(t: &str) -> Vec<&'static str> {
        families(&words(t))
    }

    #[test]
    fn the_families_are_recognised() {
        assert_eq!(
            fam("all of those people are subhuman vermin and should be exterminated"),
            ["dehumanisation", "extermination"]
        );
        assert_eq!(
            fam("Immigrants are nothing but parasites"),
            ["dehumanisation"]
        );
        assert_eq!(fam("They are vermin, all of them."), ["dehumanisation"]);
        assert_eq!(fam("Kill all the jews"), ["extermination"]);
        assert_eq!(
            fam("I am going to find where you live and hurt you"),
            ["threat"]
        );
        assert_eq!(fam("I'll kill you and your family"), ["threat"]);
        assert_eq!(fam("We will burn your house down"), ["threat"]);
    }

    #[test]
    fn ordinary_texts_match_nothing() {
        for t in [
            "Rats are vermin and carry disease.",
            "Ticks are parasites that feed on blood.",
            "Alcoholism is a disease, not a moral failing.",
            "Weeds should be eradicated before planting.",
            "They are animals, not plants: whales breathe air.",
            "I'm going to kill this bug in my code.",
            "I'll shoot you a message tomorrow.",
            "How do I kill a Python process that hangs?",
            "Those people are wonderful neighbours.",
            "Death to the old server, long live the new one!",
            "Those termites should be exterminated quickly.",
            "Do you think people who commit murder should be executed?",
        ] {
            assert!(fam(t).is_empty(), "{t}: {:?}", fam(t));
        }
    }
}
