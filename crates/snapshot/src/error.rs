//! The one error type of this crate: a variant per failure a caller may want
//! to tell apart (a hostile layer, a missing snapshot, a snapshot in use).

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong while unpacking, storing, mounting or diffing.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("layer entry {entry:?} has an absolute path; layer entries must be relative to the layer root")]
    AbsolutePath { entry: String },

    #[error("layer entry {entry:?} contains a `..` component and would escape the layer root")]
    ParentTraversal { entry: String },

    #[error("layer entry {entry:?} goes through the symlink {symlink:?}; entries may not be written through symlinks")]
    SymlinkInPath { entry: String, symlink: String },

    #[error("layer entry {entry:?} needs {parent:?} to be a directory, but it is not")]
    ParentNotDirectory { entry: String, parent: String },

    #[error("hard link {entry:?} points to {target:?}, which is outside the layer")]
    HardlinkOutside { entry: String, target: String },

    #[error("hard link {entry:?} points to {target:?}, which does not exist in the layer")]
    HardlinkTargetMissing { entry: String, target: String },

    #[error("layer entry {entry:?} has an invalid name: {reason}")]
    InvalidEntryName { entry: String, reason: &'static str },

    #[error("layer entry {entry:?} has the unsupported tar type {kind}")]
    UnsupportedEntry { entry: String, kind: String },

    #[error("reading the layer archive: {source}")]
    Archive {
        #[source]
        source: io::Error,
    },

    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },

    #[error("invalid snapshot id {id:?}: {reason}")]
    InvalidId { id: String, reason: &'static str },

    #[error("snapshot {id} does not exist")]
    NotFound { id: String },

    #[error("snapshot {id} already exists")]
    AlreadyExists { id: String },

    #[error("snapshot {id} is a {actual}, not a {expected}")]
    WrongKind {
        id: String,
        expected: &'static str,
        actual: &'static str,
    },

    #[error("snapshot {id} is in use by {users:?}")]
    InUse { id: String, users: Vec<String> },

    #[error("snapshot {id} is damaged: {reason}")]
    Corrupt { id: String, reason: String },

    #[error("too many layers to mount ({count}): {reason}")]
    TooManyLayers { count: usize, reason: &'static str },

    #[error("mounting {target}: {source}")]
    Mount {
        target: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("{path}: no such file or directory")]
    PathNotFound { path: String },

    #[error("{path} is not a directory")]
    NotADirectory { path: String },

    #[error("{path} is on another mount, not in the container's root filesystem")]
    OtherMount { path: String },

    #[error("the archive is not a valid tar archive: {reason}")]
    InvalidArchive { reason: String },

    #[error("archive entry {entry:?} {reason}")]
    ArchiveEntry { entry: String, reason: String },
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn io<E: Into<io::Error>>(context: String, e: E) -> Error {
        Error::Io {
            context,
            source: e.into(),
        }
    }
}
