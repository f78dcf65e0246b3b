//! Nationalities, religious and political groups (Presidio's NRP): a closed class of words,
//! so a word list written from general knowledge (not from any data set) finds them.

use super::context::WordTable;
use super::{Candidate, EntityType};
use std::sync::OnceLock;

/// Lower-case nationality and demonym adjectives, religions and political groups, sorted.
const WORDS: &[&str] = &[
    "afghan",
    "african",
    "albanian",
    "algerian",
    "american",
    "andorran",
    "angolan",
    "arab",
    "arabian",
    "argentine",
    "argentinian",
    "armenian",
    "asian",
    "atheist",
    "australian",
    "austrian",
    "azerbaijani",
    "bahraini",
    "bangladeshi",
    "barbadian",
    "basque",
    "belarusian",
    "belgian",
    "bolivian",
    "bosnian",
    "brazilian",
    "british",
    "buddhist",
    "bulgarian",
    "burmese",
    "cambodian",
    "cameroonian",
    "canadian",
    "catalan",
    "catholic",
    "chechen",
    "chilean",
    "chinese",
    "christian",
    "colombian",
    "communist",
    "congolese",
    "conservative",
    "croatian",
    "cuban",
    "cypriot",
    "czech",
    "danish",
    "democrat",
    "democratic",
    "dominican",
    "dutch",
    "ecuadorian",
    "egyptian",
    "emirati",
    "english",
    "eritrean",
    "estonian",
    "ethiopian",
    "european",
    "evangelical",
    "fijian",
    "filipino",
    "finnish",
    "flemish",
    "french",
    "georgian",
    "german",
    "ghanaian",
    "greek",
    "greenlander",
    "guatemalan",
    "haitian",
    "hindu",
    "hispanic",
    "honduran",
    "hungarian",
    "icelandic",
    "indian",
    "indonesian",
    "iranian",
    "iraqi",
    "irish",
    "islamic",
    "israeli",
    "italian",
    "ivorian",
    "jamaican",
    "japanese",
    "jewish",
    "jordanian",
    "kazakh",
    "kenyan",
    "korean",
    "kosovar",
    "kurdish",
    "kuwaiti",
    "kyrgyz",
    "laotian",
    "latin",
    "latino",
    "latvian",
    "lebanese",
    "liberal",
    "liberian",
    "libyan",
    "lithuanian",
    "luxembourgish",
    "macedonian",
    "malagasy",
    "malaysian",
    "maltese",
    "maori",
    "mexican",
    "moldovan",
    "mongolian",
    "montenegrin",
    "mormon",
    "moroccan",
    "mozambican",
    "muslim",
    "namibian",
    "nepalese",
    "nigerian",
    "nordic",
    "norwegian",
    "omani",
    "orthodox",
    "pakistani",
    "palestinian",
    "panamanian",
    "paraguayan",
    "persian",
    "peruvian",
    "polish",
    "portuguese",
    "protestant",
    "qatari",
    "republican",
    "romanian",
    "russian",
    "rwandan",
    "samoan",
    "saudi",
    "scandinavian",
    "scottish",
    "senegalese",
    "serbian",
    "shia",
    "sikh",
    "singaporean",
    "slovak",
    "slovakian",
    "slovenian",
    "socialist",
    "somali",
    "spanish",
    "sudanese",
    "sunni",
    "swedish",
    "swiss",
    "syrian",
    "taiwanese",
    "tajik",
    "tanzanian",
    "thai",
    "tibetan",
    "tunisian",
    "turkish",
    "turkmen",
    "ugandan",
    "ukrainian",
    "uruguayan",
    "uzbek",
    "venezuelan",
    "vietnamese",
    "welsh",
    "yemeni",
    "zambian",
    "zimbabwean",
];

fn table() -> &'static WordTable {
    static T: OnceLock<WordTable> = OnceLock::new();
    T.get_or_init(|| WordTable::new(WORDS.iter().map(|w| (*w, 1))))
}

/// Finds capitalised words from the list.
pub(crate) fn find(text: &str, out: &mut Vec<Candidate>) {
    let t = table();
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if !b[i].is_ascii_uppercase() || (i > 0 && b[i - 1].is_ascii_alphanumeric()) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && b[i].is_ascii_alphabetic() {
            i += 1;
        }
        let word = &b[start..i];
        // "Czech Republic", "American Express": followed by a capitalised word, the adjective
        // is part of a name, which the tagger judges whole.
        let in_name = b.get(i) == Some(&b' ') && b.get(i + 1).is_some_and(u8::is_ascii_uppercase);
        if word.len() >= 3
            && (i == b.len() || !b[i].is_ascii_digit())
            && !in_name
            && t.get(word) != 0
        {
            out.push(Candidate {
                entity: EntityType::Nrp,
                span: start..i,
                score: 0.6,
                recognizer: "nrp_words",
                priority: 2,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_is_sorted_for_binary_search() {
        assert!(WORDS.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(table().0.len(), WORDS.len(), "every word fits 16 bytes");
    }

    #[test]
    fn capitalised_list_words_only() {
        let mut v = Vec::new();
        find("A Swedish firm, a swedish one, and Danishes", &mut v);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].span, 2..9);
    }

    #[test]
    fn an_adjective_inside_a_name_is_left_to_the_tagger() {
        let mut v = Vec::new();
        find(
            "She moved to the Czech Republic to work for American Express.",
            &mut v,
        );
        assert!(v.is_empty());
        find("Her colleague is Czech.", &mut v);
        assert_eq!(v.len(), 1);
    }
}
