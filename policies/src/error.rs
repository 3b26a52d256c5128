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
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
