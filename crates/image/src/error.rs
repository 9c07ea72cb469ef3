//! The crate's one error type: a variant per failure a caller may want to tell apart,
//! each with a message that names the input and what was expected.

use std::path::PathBuf;

use crate::digest::Digest;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The reference does not follow Docker's grammar.
    #[error("invalid reference format")]
    InvalidReferenceFormat { input: String },
    /// The repository part of the reference has upper-case letters.
    #[error("invalid reference format: repository name must be lowercase")]
    ReferenceNotLowercase { input: String },
    #[error("invalid reference format: repository name must not be more than 255 characters")]
    ReferenceNameTooLong { input: String },
    #[error("invalid repository name ({input}), cannot specify 64-byte hexadecimal strings")]
    ReferenceIsHexId { input: String },
    #[error("invalid digest {input:?}: {reason}")]
    InvalidDigest { input: String, reason: &'static str },

    #[error("unsupported media type {media_type:?} for {what}")]
    UnsupportedMediaType {
        media_type: String,
        what: &'static str,
    },
    #[error("image manifest schema 1 ({media_type}) is not supported; convert the image to schema 2 or OCI first")]
    Schema1Manifest { media_type: String },
    #[error("no image in the index matches platform {platform}; available: {available}")]
    NoMatchingPlatform { platform: String, available: String },

    #[error("invalid JSON in {what}: {source}")]
    InvalidJson {
        what: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("invalid image config: {reason}")]
    InvalidConfig { reason: String },

    #[error("archive entry {name:?} escapes the archive root")]
    PathTraversal { name: String },
    #[error("archive is truncated or corrupt: {reason}")]
    CorruptArchive { reason: String },
    #[error("{what} names {name:?}, which is not in the archive")]
    MissingArchiveFile { what: String, name: String },
    #[error("archive has neither manifest.json nor an OCI index.json")]
    UnknownArchiveFormat,
    #[error("blob {name:?} has digest {actual}, expected {expected}")]
    DigestMismatch {
        name: String,
        expected: Digest,
        actual: Digest,
    },
    #[error("layer {index} of image {image}: uncompressed content has digest {actual}, config's rootfs.diff_ids says {expected}")]
    DiffIdMismatch {
        image: String,
        index: usize,
        expected: Digest,
        actual: Digest,
    },
    #[error("image {image} has {layers} layers but its config lists {diff_ids} diff_ids")]
    LayerCountMismatch {
        image: String,
        layers: usize,
        diff_ids: usize,
    },
    #[error("layer {name:?} is compressed with {compression}, which is not supported (gzip, zstd or uncompressed tar)")]
    UnsupportedCompression {
        name: String,
        compression: &'static str,
    },
    #[error("layer {name:?} is not a valid tar stream: {reason}")]
    CorruptLayer { name: String, reason: String },

    #[error("{instruction} is not a valid change command")]
    InvalidChangeCommand { instruction: String },
    #[error("invalid change {change:?}: {reason}")]
    InvalidChange { change: String, reason: String },

    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("reading the archive: {0}")]
    Read(#[source] std::io::Error),
    #[error("writing the archive: {0}")]
    Write(#[source] std::io::Error),
}

impl ImageError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        ImageError::Io {
            action,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn json(what: impl Into<String>, source: serde_json::Error) -> Self {
        ImageError::InvalidJson {
            what: what.into(),
            source,
        }
    }
}

pub type Result<T, E = ImageError> = std::result::Result<T, E>;
