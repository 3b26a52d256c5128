/// Errors of the policy layer. Messages never repeat a personal identifier.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    InvalidId(String),
    #[error("{file}:{line}:{column}: {message}")]
    Catalog {
        file: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{0}")]
    InvalidParam(String),
    /// A license request or document that does not fit its type.
    #[error("{0}")]
    InvalidLicense(String),
    /// A policy file or schema that does not parse or validate (`file:line: …`), or a
    /// decision that could not be evaluated.
    #[error("{0}")]
    Policy(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
