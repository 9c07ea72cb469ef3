//! The one error type of the content store.

use std::io;
use std::path::PathBuf;

use crate::Digest;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid digest {input:?}: {reason}")]
    InvalidDigest { input: String, reason: String },

    #[error("unsupported digest algorithm {algorithm:?} in {input:?}: only sha256 is supported")]
    UnsupportedAlgorithm { input: String, algorithm: String },

    #[error("digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch { expected: Digest, actual: Digest },

    #[error("size mismatch: expected {expected} bytes, got {actual}")]
    SizeMismatch { expected: u64, actual: u64 },

    #[error("blob not found: {0}")]
    NotFound(Digest),

    #[error("invalid ingest ref {0:?}: a ref must be a non-empty string")]
    InvalidRef(String),

    #[error("ingest {0:?} is already being written by another writer")]
    IngestLocked(String),

    #[error("blob {0} is held by a lease and cannot be deleted")]
    Leased(Digest),

    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Wraps an `io::Error` with what was being done to which path.
pub(crate) fn io_error(
    action: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io {
        action,
        path,
        source,
    }
}
