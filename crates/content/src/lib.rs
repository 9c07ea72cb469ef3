#![forbid(unsafe_code)]
//! Content-addressed blob store: ingest, verify digest, commit atomically, GC by references.
//!
//! Layout under the store root (the daemon uses `<data-root>/content`):
//!
//! ```text
//! blobs/sha256/<hex>          complete, verified blobs only
//! ingest/tmp-<pid>-<n>        one-shot writers (removed when dropped)
//! ingest/ref-<sha256(ref)>/   resumable writers: `data` (the bytes so far) and `ref` (the name)
//! ```
//!
//! A blob appears under `blobs/` only by a rename from `ingest/` after its size
//! and digest were checked and its bytes fsynced, so a crash at any instant
//! leaves either no blob or the whole blob. What the store does not know is who
//! references a blob: the caller passes that set to [`ContentStore::gc`], and
//! protects blobs it is about to reference with a [`Lease`].

mod digest;
mod error;
mod store;
mod writer;

pub use digest::{Algorithm, Digest};
pub use error::Error;
pub use store::{
    BlobInfo, Blobs, CleanupReport, ContentStore, GcReport, IngestStatus, Lease, OpenOptions,
};
pub use writer::Writer;

pub type Result<T, E = Error> = std::result::Result<T, E>;

// Tests unwrap freely: a panic is how a test fails.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
