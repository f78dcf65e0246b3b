//! Why a training or evaluation command failed: one error for every detector's lab, so the
//! gateway's `train` and `eval` commands report the same failures the same way.

use std::fmt;
use std::path::Path;

/// Why a lab command failed.
#[derive(Debug)]
pub enum LabError {
    /// A data file could not be read, or a line of it could not be parsed.
    Data { path: String, message: String },
    /// The weights could not be written.
    Write {
        path: String,
        source: std::io::Error,
    },
    /// A set whose licence forbids shipping weights trained on it was passed to `train`.
    Licence(String),
    /// Nothing to train on; the message says which sets to pass.
    Empty(&'static str),
}

impl LabError {
    /// A problem with the data file at `path`.
    pub fn data(path: &Path, message: impl Into<String>) -> LabError {
        LabError::Data {
            path: path.display().to_string(),
            message: message.into(),
        }
    }
}

// Written out rather than derived: the crate has no dependencies.
impl fmt::Display for LabError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LabError::Data { path, message } => write!(f, "cannot read {path}: {message}"),
            LabError::Write { path, source } => write!(f, "cannot write {path}: {source}"),
            LabError::Licence(message) => f.write_str(message),
            LabError::Empty(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for LabError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LabError::Write { source, .. } => Some(source),
            _ => None,
        }
    }
}
