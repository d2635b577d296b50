//! One error type for the crate. The bindings map each variant to one Python
//! exception class, so the variant says *which kind* of failure, and the
//! message names the argument (or tensor, or config key) and what was expected.

use std::fmt;

#[derive(Debug, Clone, PartialEq)]
pub enum Error {
    /// A bad argument value or shape (Python `ValueError`).
    Value(String),
    /// Malformed or mismatched weights or config (Python `tr.CheckpointError`).
    Checkpoint(String),
    /// A file could not be read or written (Python `OSError`/`FileNotFoundError`).
    Io {
        path: String,
        kind: std::io::ErrorKind,
        message: String,
    },
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn value(msg: impl Into<String>) -> Self {
        Error::Value(msg.into())
    }
    pub fn checkpoint(msg: impl Into<String>) -> Self {
        Error::Checkpoint(msg.into())
    }
    pub fn io(path: impl fmt::Display, err: &std::io::Error) -> Self {
        Error::Io {
            path: path.to_string(),
            kind: err.kind(),
            message: err.to_string(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Value(m) | Error::Checkpoint(m) => f.write_str(m),
            Error::Io { path, message, .. } => write!(f, "{path}: {message}"),
        }
    }
}

impl std::error::Error for Error {}
