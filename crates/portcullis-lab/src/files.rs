//! Reading the labelled sets and writing trained weights, with failures as [`LabError`]s that
//! name the file (and the line).

use crate::LabError;
use std::fmt::Display;
use std::path::Path;

/// The text of the data file at `path`.
pub fn read(path: &Path) -> Result<String, LabError> {
    std::fs::read_to_string(path).map_err(|e| LabError::data(path, e.to_string()))
}

/// The non-blank lines of `text` (the JSON-lines file at `path`), each parsed by `parse`,
/// with their index (from 0); a line that does not parse is an error naming its number.
pub fn rows<'a, T, E: Display>(
    path: &'a Path,
    text: &'a str,
    parse: impl Fn(&'a str) -> Result<T, E> + 'a,
) -> impl Iterator<Item = Result<(usize, T), LabError>> + 'a {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(move |(i, line)| {
            parse(line)
                .map(|row| (i, row))
                .map_err(|e| LabError::data(path, format!("line {}: {e}", i + 1)))
        })
}

/// Writes trained weights to `out`.
pub fn write(out: &Path, bytes: &[u8]) -> Result<(), LabError> {
    std::fs::write(out, bytes).map_err(|source| LabError::Write {
        path: out.display().to_string(),
        source,
    })
}
