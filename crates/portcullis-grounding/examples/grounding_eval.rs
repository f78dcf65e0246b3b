//! `portcullis eval grounding` without the gateway, for timing in a release build:
//! `cargo run --release -p portcullis-grounding --features lab --example grounding_eval -- FILE.jsonl…`

fn main() -> Result<(), portcullis_grounding::lab::LabError> {
    let paths: Vec<std::path::PathBuf> = std::env::args_os().skip(1).map(Into::into).collect();
    let e = portcullis_grounding::lab::eval(&paths, None)?;
    for set in &e.per_set {
        println!("{set}");
    }
    println!("{}", e.summary);
    Ok(())
}
