//! The runtime's one error type: a variant per failure a caller may handle,
//! each with a message that names the input and what was expected.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid container id {id:?}: {why}")]
    InvalidId { id: String, why: &'static str },
    #[error("container with id {0:?} already exists")]
    Exists(String),
    #[error("container {0:?} does not exist")]
    NotFound(String),
    #[error("cannot read {path}: {why}")]
    Config { path: PathBuf, why: String },
    #[error("invalid config: {0}")]
    InvalidConfig(String),
    #[error("container {id} is {status}: {why}")]
    WrongState {
        id: String,
        status: String,
        why: &'static str,
    },
    #[error("{what}: {errno}")]
    Sys {
        what: String,
        errno: nix::errno::Errno,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("cgroup: {0}")]
    Cgroup(String),
    #[error("{0}")]
    Init(String),
    #[error("{hook} hook {path}: {why}")]
    Hook {
        hook: &'static str,
        path: PathBuf,
        why: String,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<berth_cgroups::Error> for Error {
    fn from(e: berth_cgroups::Error) -> Error {
        Error::Cgroup(e.to_string())
    }
}

/// Attaches a description of the operation to an errno or io error.
pub trait Context<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> Context<T> for std::result::Result<T, nix::errno::Errno> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|errno| Error::Sys {
            what: what(),
            errno,
        })
    }
}

impl<T> Context<T> for std::result::Result<T, std::io::Error> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Io {
            what: what(),
            source,
        })
    }
}
