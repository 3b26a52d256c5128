#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("store: {0}")]
    Database(#[from] sqlx::Error),
    #[error("store migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("store location {0:?} is neither a sqlite:// nor a postgres:// URL")]
    BadUrl(String),
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
