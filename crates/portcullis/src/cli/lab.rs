//! `portcullis eval` and `portcullis train` for the detectors: their training and evaluation
//! code is linked only with the `lab` feature (on by default; off in a deployed gateway).

use std::path::PathBuf;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[cfg(feature = "lab")]
const DETECTORS: &str = "pii, injection or moderation";

/// Scores a detector on labelled data and prints its metrics as one JSON line.
#[cfg(feature = "lab")]
pub fn eval(detector: &str, data: &[PathBuf]) -> Result<(), BoxError> {
    let report = match detector {
        "moderation" => portcullis_moderation::lab::eval(data)?,
        "injection" => portcullis_injection::lab::eval(data)?,
        "pii" => portcullis_pii::lab::eval(data)?,
        other => return Err(format!("unknown detector '{other}'; try {DETECTORS}").into()),
    };
    println!("{report}");
    Ok(())
}

/// Scores the groundedness check on RAG sets: one JSON line per set (with its figures within
/// quartiles of answer length), then the contract's summary as the last line.
#[cfg(feature = "lab")]
pub fn eval_grounding(
    data: &[PathBuf],
    predictions: Option<&std::path::Path>,
) -> Result<(), BoxError> {
    let e = portcullis_grounding::lab::eval(data, predictions)?;
    for set in &e.per_set {
        println!("{set}");
    }
    println!("{}", e.summary);
    Ok(())
}

/// Retrains a detector's committed weights from labelled data.
#[cfg(feature = "lab")]
pub fn train(detector: &str, data: &[PathBuf], out: Option<PathBuf>) -> Result<(), BoxError> {
    let summary = match detector {
        "moderation" => {
            let out =
                out.unwrap_or_else(|| "crates/portcullis-moderation/model/moderation.bin".into());
            portcullis_moderation::lab::train(data, &out)?
        }
        "injection" => {
            let out =
                out.unwrap_or_else(|| "crates/portcullis-injection/model/injection.bin".into());
            portcullis_injection::lab::train(data, &out)?
        }
        "pii" => {
            let out = out.unwrap_or_else(|| "crates/portcullis-pii/model/pii-ner.bin".into());
            portcullis_pii::lab::train(data, &out)?
        }
        other => return Err(format!("unknown detector '{other}'; try {DETECTORS}").into()),
    };
    println!("{summary}");
    Ok(())
}

/// Without the `lab` feature the commands say how to get them.
#[cfg(not(feature = "lab"))]
pub fn eval(detector: &str, _data: &[PathBuf]) -> Result<(), BoxError> {
    Err(without_lab("eval", detector))
}

/// Without the `lab` feature the commands say how to get them.
#[cfg(not(feature = "lab"))]
pub fn eval_grounding(
    _data: &[PathBuf],
    _predictions: Option<&std::path::Path>,
) -> Result<(), BoxError> {
    Err(without_lab("eval", "grounding"))
}

/// Without the `lab` feature the commands say how to get them.
#[cfg(not(feature = "lab"))]
pub fn train(detector: &str, _data: &[PathBuf], _out: Option<PathBuf>) -> Result<(), BoxError> {
    Err(without_lab("train", detector))
}

#[cfg(not(feature = "lab"))]
fn without_lab(command: &str, detector: &str) -> BoxError {
    format!(
        "this portcullis was built without the detectors' training and evaluation code (the \
         `lab` feature); run `cargo run --release --features lab -- {command} {detector} …`"
    )
    .into()
}
