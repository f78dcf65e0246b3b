//! How often each curated rule family matches flagged and clean rows of moderation sets:
//! `cargo run --release -p portcullis-moderation --example rules -- FILE…` prints
//! `{family: [flagged rows, clean rows]}`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use portcullis_moderation::{classifier::words, lab::load, rules::families};

fn main() {
    let data: Vec<std::path::PathBuf> = std::env::args_os().skip(1).map(Into::into).collect();
    let mut counts: std::collections::BTreeMap<&str, [usize; 2]> = Default::default();
    for e in load(&data).unwrap() {
        for f in families(&words(&e.text)) {
            counts.entry(f).or_default()[usize::from(e.label == 0)] += 1;
        }
    }
    println!("{}", serde_json::to_string(&counts).unwrap());
}
