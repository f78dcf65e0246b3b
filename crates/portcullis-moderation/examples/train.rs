//! Trains and evaluates the local classifier (what `portcullis train|eval moderation` do).
//! `cargo run --release -p portcullis-moderation --example train -- OUT FILE…`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

fn main() {
    let args: Vec<std::path::PathBuf> = std::env::args_os().skip(1).map(Into::into).collect();
    let (out, data) = args.split_first().expect("usage: train OUT FILE…");
    let summary = portcullis_moderation::lab::train(data, out).unwrap();
    println!("{summary}");
}
