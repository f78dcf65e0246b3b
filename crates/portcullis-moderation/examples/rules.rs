//! How often each curated rule family matches flagged and clean rows of moderation sets:
//! `cargo run --release -p portcullis-moderation --features lab --example rules -- FILE…`
//! prints `{set: {family: [flagged rows, clean rows]}}` for the `content` gate's rules and
//! the `request` gate's ([`requests`](portcullis_moderation::requests)).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use portcullis_moderation::{classifier::words, lab::load, requests, rules::families};
use std::collections::BTreeMap;

fn main() {
    let data: Vec<std::path::PathBuf> = std::env::args_os().skip(1).map(Into::into).collect();
    let mut counts: BTreeMap<String, BTreeMap<&str, [usize; 2]>> = BTreeMap::new();
    for e in load(&data).unwrap() {
        let found = families(&words(&e.text))
            .into_iter()
            .chain(requests::families_of(&e.text));
        for f in found {
            counts
                .entry(e.dataset.clone())
                .or_default()
                .entry(f)
                .or_default()[usize::from(e.label == 0)] += 1;
        }
    }
    println!("{}", serde_json::to_string(&counts).unwrap());
}
