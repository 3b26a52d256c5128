#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The department database cannot be reached (→ 503).
    #[error("source {source_name} unavailable: {detail}")]
    Unavailable { source_name: String, detail: String },
    /// The statement ran past its timeout (→ 504).
    #[error("source {source_name} did not answer within {ms} ms")]
    Timeout { source_name: String, ms: u64 },
    /// The query or its result is not acceptable (→ 502: the catalog and source disagree).
    #[error("source {source_name}: {detail}")]
    Query { source_name: String, detail: String },
    #[error("{0}")]
    Generate(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
