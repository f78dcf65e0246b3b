//! `injection_eval FILE…`: what `portcullis eval injection --data FILE…` prints, without building the
//! gateway. `cargo run --release -p portcullis-injection --example injection_eval -- ../shared/data/xstest/data.jsonl`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

fn main() {
    let paths: Vec<std::path::PathBuf> = std::env::args_os().skip(1).map(Into::into).collect();
    if paths.is_empty() {
        panic!("usage: eval FILE.jsonl…");
    }
    match portcullis_injection::lab::eval(&paths) {
        Ok(v) => println!("{v}"),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
