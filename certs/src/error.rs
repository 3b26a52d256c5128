use std::path::PathBuf;

/// Everything that can go wrong in the trust layer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    BadFile { path: PathBuf, reason: String },
    #[error("certificate generation failed: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("TLS configuration: {0}")]
    Tls(String),
    #[error("invalid identity: {0}")]
    Identity(String),
    #[error("invalid key: {0}")]
    Key(String),
    #[error("signature verification failed: {0}")]
    Signature(String),
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
    pub(crate) fn bad_file(path: impl Into<PathBuf>, reason: impl ToString) -> Self {
        Error::BadFile {
            path: path.into(),
            reason: reason.to_string(),
        }
    }
}
