//! What `portcullis eval moderation --data FILE…` prints, without building the gateway.
//! `cargo run --release -p portcullis-moderation --example moderation_eval -- FILE…`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

fn main() {
    let data: Vec<std::path::PathBuf> = std::env::args_os().skip(1).map(Into::into).collect();
    println!("{}", portcullis_moderation::lab::eval(&data).unwrap());
}
