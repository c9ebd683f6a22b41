//! The library's error type. Every user-facing failure names what went wrong and, where it
//! applies, the file, column and row, so the binary can print it and exit non-zero.

use std::path::PathBuf;

/// Result alias used throughout the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Where a bad value was found: file, column and 0-based row within that file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The input file.
    pub file: PathBuf,
    /// The column name.
    pub column: String,
    /// 0-based row index within the file, when known.
    pub row: Option<u64>,
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: column '{}'", self.file.display(), self.column)?;
        if let Some(r) = self.row {
            write!(f, ", row {r}")?;
        }
        Ok(())
    }
}

/// Everything that can go wrong, grouped by who has to act: the caller (usage), the data
/// (input), the numbers (numerical) or the machine (io).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The command line or API call is inconsistent (bad flag value, bad formula).
    #[error("{0}")]
    Usage(String),
    /// The formula does not parse; `pos` is the 0-based character offset of the offending token.
    #[error("formula error: {msg}\n  {formula}\n  {caret}", caret = caret_at(*.pos))]
    Formula {
        /// What is wrong.
        msg: String,
        /// The formula text as given.
        formula: String,
        /// Character offset of the offending token.
        pos: usize,
    },
    /// A whole input file is unusable (missing, not Parquet, truncated, schema mismatch).
    #[error("{}: {msg}", path.display())]
    File {
        /// The file at fault.
        path: PathBuf,
        /// What is wrong with it.
        msg: String,
    },
    /// A value or column of the input is unusable.
    #[error("{loc}: {msg}")]
    Data {
        /// Where.
        loc: Location,
        /// What is wrong.
        msg: String,
    },
    /// A problem with the input as a whole that no single file or row explains
    /// (e.g. no rows left after filtering).
    #[error("{0}")]
    Input(String),
    /// The chunk cache could not be written or read.
    #[error("cache {}: {msg}", path.display())]
    Cache {
        /// The cache directory or file.
        path: PathBuf,
        /// What went wrong.
        msg: String,
    },
    /// An operating-system I/O failure on a named path.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path being read or written.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A numerical failure (singular system, non-finite result).
    #[error("numerical failure: {0}")]
    Numerical(String),
}

fn caret_at(pos: usize) -> String {
    format!("{}^", " ".repeat(pos))
}

impl Error {
    /// Process exit code for this error class (documented in docs/cli.md):
    /// 2 usage, 3 input data, 4 numerical, 5 I/O or cache.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_) | Error::Formula { .. } => 2,
            Error::File { .. } | Error::Data { .. } | Error::Input(_) => 3,
            Error::Numerical(_) => 4,
            Error::Cache { .. } | Error::Io { .. } => 5,
        }
    }

    /// Shorthand for an [`Error::Io`] on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// Shorthand for an [`Error::Data`].
    pub fn data(file: impl Into<PathBuf>, column: &str, row: Option<u64>, msg: impl Into<String>) -> Self {
        Error::Data {
            loc: Location {
                file: file.into(),
                column: column.to_string(),
                row,
            },
            msg: msg.into(),
        }
    }
}
