//! The one error type of the metadata store.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no such {kind}: {id}")]
    NotFound { kind: &'static str, id: String },

    #[error("{kind} id prefix {prefix:?} is ambiguous: it matches {matches} {kind}s")]
    Ambiguous {
        kind: &'static str,
        prefix: String,
        matches: usize,
    },

    #[error("conflict: {0}")]
    Conflict(String),

    #[error("invalid {what} {input:?}: {reason}")]
    InvalidInput {
        what: &'static str,
        input: String,
        reason: String,
    },

    #[error("metadata store is corrupt: {0}")]
    Corrupt(String),

    #[error(
        "metadata database has schema version {found}, newer than the {known} this berth knows; \
         run a newer berth or restore a backup"
    )]
    SchemaTooNew { found: u64, known: u64 },

    #[error("schema migration to version {version} failed: {source}")]
    Migration {
        version: usize,
        #[source]
        source: rusqlite::Error,
    },

    #[error("open metadata database {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },

    #[error("sqlite: {0}")]
    Sqlite(rusqlite::Error),
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        match e {
            // A row the schema allows but the code cannot read: bad digests, bad JSON.
            rusqlite::Error::FromSqlConversionFailure(..)
            | rusqlite::Error::InvalidColumnType(..)
            | rusqlite::Error::IntegralValueOutOfRange(..) => Error::Corrupt(e.to_string()),
            e => Error::Sqlite(e),
        }
    }
}

pub(crate) fn not_found(kind: &'static str, id: impl ToString) -> Error {
    Error::NotFound {
        kind,
        id: id.to_string(),
    }
}
