//! Ingest: a writer hashes what it is given, and `commit` verifies and renames
//! the bytes into `blobs/`.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError};

use sha2::{Digest as _, Sha256};

use crate::error::io_error;
use crate::store::{remove_file_if_present, sync_dir, Inner, Lease};
use crate::{Digest, Error, Result};

/// Holds a resumable ref for one writer; released on drop.
pub(crate) struct RefGuard {
    inner: Arc<Inner>,
    ref_name: String,
}

impl RefGuard {
    pub(crate) fn acquire(inner: Arc<Inner>, ref_name: &str) -> Result<RefGuard> {
        if !inner.active_refs().insert(ref_name.to_string()) {
            return Err(Error::IngestLocked(ref_name.to_string()));
        }
        Ok(RefGuard {
            inner,
            ref_name: ref_name.to_string(),
        })
    }
}

impl Drop for RefGuard {
    fn drop(&mut self) {
        self.inner.active_refs().remove(&self.ref_name);
    }
}

/// An ingest in progress, from [`crate::ContentStore::writer`] or
/// [`crate::ContentStore::writer_resumable`].
///
/// Dropping it without [`Writer::commit`] removes a one-shot writer's bytes
/// and keeps a resumable writer's bytes for a later resume.
pub struct Writer {
    inner: Arc<Inner>,
    file: File,
    path: PathBuf,
    resumable: Option<RefGuard>,
    hasher: Sha256,
    offset: u64,
    expected: Option<Digest>,
    expected_size: Option<u64>,
    finished: bool,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("path", &self.path)
            .field("ref", &self.ref_name())
            .field("offset", &self.offset)
            .field("expected", &self.expected)
            .field("expected_size", &self.expected_size)
            .finish()
    }
}

impl Writer {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        inner: Arc<Inner>,
        file: File,
        path: PathBuf,
        resumable: Option<RefGuard>,
        hasher: Sha256,
        offset: u64,
        expected: Option<Digest>,
        expected_size: Option<u64>,
    ) -> Writer {
        Writer {
            inner,
            file,
            path,
            resumable,
            hasher,
            offset,
            expected,
            expected_size,
            finished: false,
        }
    }

    /// Bytes written so far, including those found on resume.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The ref of a resumable writer.
    pub fn ref_name(&self) -> Option<&str> {
        self.resumable.as_ref().map(|g| g.ref_name.as_str())
    }

    /// Where the bytes are being written (inside `ingest/`).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Verifies size and digest against what was expected, makes the bytes
    /// durable and moves them to `blobs/`. If the blob is already there this
    /// succeeds without touching it. On a mismatch nothing is added and the
    /// ingest's bytes are removed (a resumable ingest starts over next time).
    pub fn commit(self) -> Result<Digest> {
        self.finish(None)
    }

    /// Like [`Writer::commit`], and pins the digest in `lease` before a gc
    /// can run, so the blob stays until the caller has recorded a reference.
    pub fn commit_pinned(self, lease: &Lease) -> Result<Digest> {
        self.finish(Some(lease))
    }

    fn finish(mut self, lease: Option<&Lease>) -> Result<Digest> {
        let actual = Digest::from_sha256_bytes(&self.hasher.clone().finalize().into());
        if let Some(expected) = self.expected_size.filter(|&size| size != self.offset) {
            self.discard();
            return Err(Error::SizeMismatch {
                expected,
                actual: self.offset,
            });
        }
        if let Some(expected) = self.expected.take().filter(|d| d != &actual) {
            self.discard();
            return Err(Error::DigestMismatch { expected, actual });
        }
        self.file.sync_all().map_err(io_error("sync", &self.path))?;

        let target = self.inner.blob_path(&actual);
        let inner = self.inner.clone();
        let _gc = inner.gc_lock.read().unwrap_or_else(PoisonError::into_inner);
        if target.is_file() {
            self.discard();
        } else {
            fs::rename(&self.path, &target).map_err(io_error("rename into blobs", &self.path))?;
            sync_dir(&self.inner.blobs)?;
            self.finished = true;
            if let Some(guard) = &self.resumable {
                // The blob is committed; a leftover name file is removed by
                // the stale-ingest clean-up.
                let _ = fs::remove_dir_all(self.inner.ref_dir(&guard.ref_name));
            }
        }
        if let Some(lease) = lease {
            lease.pin(&actual);
        }
        Ok(actual)
    }

    /// Removes the ingest's bytes; best effort, as this also runs on drop and
    /// after an error that is more useful to report.
    fn discard(&mut self) {
        self.finished = true;
        match &self.resumable {
            Some(guard) => {
                let _ = fs::remove_dir_all(self.inner.ref_dir(&guard.ref_name));
            }
            None => {
                let _ = remove_file_if_present(&self.path);
            }
        }
    }
}

impl Write for Writer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some(size) = self.expected_size {
            if self.offset + buf.len() as u64 > size {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "size mismatch: expected {size} bytes, got at least {}",
                        self.offset + buf.len() as u64
                    ),
                ));
            }
        }
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.offset += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if !self.finished && self.resumable.is_none() {
            self.discard();
        }
    }
}
