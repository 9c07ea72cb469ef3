//! The engine's errors: a variant per kind of failure the API maps to a
//! status code (not found, conflict, invalid input, refused credentials,
//! internal).

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    InvalidArgument(String),
    /// A registry refused the credentials.
    #[error("{0}")]
    Unauthorized(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Internal(String),
    /// The runtime could not start the container's process (Docker maps the
    /// message to exit codes 126/127).
    #[error("{0}")]
    StartFailed(String),
}

impl Error {
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            what: what.into(),
            source,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
