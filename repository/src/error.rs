#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("store: {0}")]
    Database(#[from] sqlx::Error),
    /// From the plain SQLite connections of [`crate::store::Readers`].
    #[error("store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("store migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("store location {0:?} is neither a sqlite:// nor a postgres:// URL")]
    BadUrl(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    /// The log moved on under this node (another gateway node appended).
    #[error("audit log conflict: {0}")]
    Conflict(String),
    /// The audit log cannot take entries now (a batch commit failed).
    #[error("audit log unavailable: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Crypto(#[from] paotui_certs::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
