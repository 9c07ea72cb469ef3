//! The store: blob lookup, listing, deletion, garbage collection, leases and
//! the clean-up of the ingest area when a store is opened.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use sha2::{Digest as _, Sha256};

use crate::error::io_error;
use crate::writer::{RefGuard, Writer};
use crate::{Digest, Error, Result};

/// Prefix of one-shot ingest files; the rest is `<pid>-<sequence>`.
pub(crate) const TEMP_PREFIX: &str = "tmp-";
/// Prefix of resumable ingest directories; the rest is sha256(ref name).
pub(crate) const REF_PREFIX: &str = "ref-";
pub(crate) const REF_DATA: &str = "data";
pub(crate) const REF_NAME: &str = "ref";

/// How a store treats what it finds in `ingest/` when it is opened.
#[derive(Debug, Clone)]
pub struct OpenOptions {
    /// Resumable partials not written to for this long are removed. One-shot
    /// temp files of this process older than this are removed too (their
    /// writer is gone unless it has been writing for that long).
    pub stale_after: Duration,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            stale_after: Duration::from_secs(24 * 60 * 60),
        }
    }
}

/// What [`ContentStore::cleanup_ingest`] removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CleanupReport {
    /// One-shot temp files removed.
    pub temp_files: usize,
    /// Names of resumable ingests removed for being stale.
    pub resumable: Vec<String>,
}

/// A committed blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobInfo {
    pub digest: Digest,
    pub size: u64,
}

/// A resumable ingest found in `ingest/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestStatus {
    pub ref_name: String,
    /// Bytes written so far; a resumed writer continues from here.
    pub offset: u64,
    pub updated_at: SystemTime,
}

/// What [`ContentStore::gc`] removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GcReport {
    pub removed: Vec<Digest>,
    pub bytes_freed: u64,
}

pub(crate) struct Inner {
    pub(crate) blobs: PathBuf,
    pub(crate) ingest: PathBuf,
    /// gc and delete hold it exclusively; a commit holds it shared from the
    /// "does the blob exist" check until its digest is pinned, so a blob a
    /// commit reported is never removed before the lease sees it.
    pub(crate) gc_lock: RwLock<()>,
    /// Digests pinned by live leases, with the number of leases pinning each.
    leases: Mutex<HashMap<Digest, usize>>,
    /// Resumable refs with a live writer in this process.
    pub(crate) active_refs: Mutex<HashSet<String>>,
    pub(crate) next_temp: AtomicU64,
}

impl Inner {
    pub(crate) fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.blobs.join(digest.hex())
    }

    pub(crate) fn ref_dir(&self, ref_name: &str) -> PathBuf {
        let hash = hex::encode(Sha256::digest(ref_name.as_bytes()));
        self.ingest.join(format!("{REF_PREFIX}{hash}"))
    }

    pub(crate) fn leases(&self) -> MutexGuard<'_, HashMap<Digest, usize>> {
        // The map holds plain counters: a panic elsewhere cannot leave it half-updated.
        self.leases.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn active_refs(&self) -> MutexGuard<'_, HashSet<String>> {
        self.active_refs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn is_leased(&self, digest: &Digest) -> bool {
        self.leases().contains_key(digest)
    }
}

/// A content-addressed blob store rooted at one directory.
///
/// Cheap to clone; clones share leases and ingest locks. Open one store per
/// root per process: locks on resumable ingests and leases are in-process
/// (the daemon's data-root lock keeps other processes out).
#[derive(Clone)]
pub struct ContentStore {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for ContentStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContentStore")
            .field("blobs", &self.inner.blobs)
            .finish_non_exhaustive()
    }
}

impl ContentStore {
    /// Opens (creating if needed) the store at `root` with default
    /// [`OpenOptions`], cleaning up `ingest/` as [`ContentStore::cleanup_ingest`] says.
    pub fn open(root: impl AsRef<Path>) -> Result<ContentStore> {
        Self::open_with(root, &OpenOptions::default())
    }

    pub fn open_with(root: impl AsRef<Path>, options: &OpenOptions) -> Result<ContentStore> {
        let root = root.as_ref();
        let blobs = root.join("blobs").join("sha256");
        let ingest = root.join("ingest");
        for dir in [&blobs, &ingest] {
            fs::create_dir_all(dir).map_err(io_error("create directory", dir))?;
        }
        let store = ContentStore {
            inner: Arc::new(Inner {
                blobs,
                ingest,
                gc_lock: RwLock::new(()),
                leases: Mutex::new(HashMap::new()),
                active_refs: Mutex::new(HashSet::new()),
                next_temp: AtomicU64::new(0),
            }),
        };
        store.cleanup_ingest(options.stale_after)?;
        Ok(store)
    }

    /// Removes leftovers of writers that are gone. The rule:
    /// - a one-shot temp file of another process is removed (only one process
    ///   owns a root, so its writer died with it);
    /// - a one-shot temp file of this process is removed once it is older than
    ///   `stale_after` (its pid may be a reused one of a dead process);
    /// - a resumable ingest is kept, so it can be continued after a restart,
    ///   unless no writer holds it and it was not written for `stale_after`.
    ///
    /// Anything else in `ingest/` is left alone. Called by `open`; the daemon
    /// may also call it periodically.
    pub fn cleanup_ingest(&self, stale_after: Duration) -> Result<CleanupReport> {
        let ingest = &self.inner.ingest;
        let own_pid = std::process::id().to_string();
        let now = SystemTime::now();
        let is_stale = |path: &Path| -> bool {
            fs::symlink_metadata(path)
                .and_then(|m| m.modified())
                .map(|t| now.duration_since(t).unwrap_or_default() >= stale_after)
                .unwrap_or(false)
        };
        let mut report = CleanupReport::default();
        let entries = fs::read_dir(ingest).map_err(io_error("read directory", ingest))?;
        for entry in entries {
            let entry = entry.map_err(io_error("read directory", ingest))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let path = entry.path();
            if let Some(rest) = name.strip_prefix(TEMP_PREFIX) {
                let pid = rest.split('-').next().unwrap_or_default();
                if pid != own_pid || is_stale(&path) {
                    remove_file_if_present(&path)?;
                    report.temp_files += 1;
                }
            } else if name.starts_with(REF_PREFIX) {
                let ref_name = fs::read_to_string(path.join(REF_NAME)).unwrap_or_default();
                let data = path.join(REF_DATA);
                let stale = if data.exists() {
                    is_stale(&data)
                } else {
                    is_stale(&path)
                };
                // Held across the removal so no writer can take the ref meanwhile.
                let active = self.inner.active_refs();
                if stale && !active.contains(&ref_name) {
                    fs::remove_dir_all(&path).map_err(io_error("remove", &path))?;
                    report.resumable.push(ref_name);
                }
            }
        }
        Ok(report)
    }

    /// A writer for a new blob. `expected` and `expected_size`, when given, are
    /// checked by [`Writer::commit`]; writing past `expected_size` fails at once.
    pub fn writer(&self, expected: Option<&Digest>, expected_size: Option<u64>) -> Result<Writer> {
        let n = self.inner.next_temp.fetch_add(1, Ordering::Relaxed);
        let path = self
            .inner
            .ingest
            .join(format!("{TEMP_PREFIX}{}-{n}", std::process::id()));
        let file = File::options()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io_error("create", &path))?;
        Ok(Writer::new(
            self.inner.clone(),
            file,
            path,
            None,
            Sha256::new(),
            0,
            expected.cloned(),
            expected_size,
        ))
    }

    /// A writer whose bytes survive the writer being dropped, the process
    /// dying, and the store being reopened: calling this again with the same
    /// `ref_name` continues at [`Writer::offset`]. The bytes already there are
    /// re-hashed on resume. A partial longer than `expected_size` cannot be the
    /// expected blob and is started over. Only one writer per ref at a time.
    pub fn writer_resumable(
        &self,
        ref_name: &str,
        expected: Option<&Digest>,
        expected_size: Option<u64>,
    ) -> Result<Writer> {
        if ref_name.is_empty() {
            return Err(Error::InvalidRef(ref_name.to_string()));
        }
        let guard = RefGuard::acquire(self.inner.clone(), ref_name)?;
        let dir = self.inner.ref_dir(ref_name);
        fs::create_dir_all(&dir).map_err(io_error("create directory", &dir))?;
        let name_path = dir.join(REF_NAME);
        fs::write(&name_path, ref_name).map_err(io_error("write", &name_path))?;
        let path = dir.join(REF_DATA);
        let mut file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_error("open", &path))?;
        let mut hasher = Sha256::new();
        let mut offset = hash_into(&mut file, &mut hasher).map_err(io_error("read", &path))?;
        if expected_size.is_some_and(|size| offset > size) {
            file.set_len(0).map_err(io_error("truncate", &path))?;
            hasher = Sha256::new();
            offset = 0;
        }
        // Reading left the cursor at the end; appends continue from there.
        Ok(Writer::new(
            self.inner.clone(),
            file,
            path,
            Some(guard),
            hasher,
            offset,
            expected.cloned(),
            expected_size,
        ))
    }

    /// Resumable ingests present in `ingest/`.
    pub fn ingests(&self) -> Result<Vec<IngestStatus>> {
        let ingest = &self.inner.ingest;
        let mut out = Vec::new();
        for entry in fs::read_dir(ingest).map_err(io_error("read directory", ingest))? {
            let entry = entry.map_err(io_error("read directory", ingest))?;
            if !entry.file_name().to_string_lossy().starts_with(REF_PREFIX) {
                continue;
            }
            let dir = entry.path();
            let (Ok(ref_name), Ok(meta)) = (
                fs::read_to_string(dir.join(REF_NAME)),
                fs::metadata(dir.join(REF_DATA)),
            ) else {
                continue;
            };
            out.push(IngestStatus {
                ref_name,
                offset: meta.len(),
                updated_at: meta
                    .modified()
                    .map_err(io_error("stat", dir.join(REF_DATA)))?,
            });
        }
        out.sort_by(|a, b| a.ref_name.cmp(&b.ref_name));
        Ok(out)
    }

    /// Drops a resumable ingest's partial bytes. Returns whether there was one.
    pub fn abort_ingest(&self, ref_name: &str) -> Result<bool> {
        let _guard = RefGuard::acquire(self.inner.clone(), ref_name)?;
        let dir = self.inner.ref_dir(ref_name);
        match fs::remove_dir_all(&dir) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_error("remove", &dir)(e)),
        }
    }

    /// Stores `data` and returns its digest (a no-op if already present).
    pub fn put_bytes(&self, data: &[u8]) -> Result<Digest> {
        self.put(data, None)
    }

    /// Takes a file the caller wrote and hashed itself (such as a spooled
    /// archive entry) into the store by renaming it, when it is on the same
    /// filesystem; otherwise it is copied and verified like any ingest. The
    /// blob is pinned in `lease`. `digest` must be the sha256 of the file's
    /// bytes as the caller computed them while writing it.
    pub fn adopt_file(&self, path: &Path, digest: &Digest, lease: &Lease) -> Result<()> {
        lease.pin(digest);
        let target = self.inner.blob_path(digest);
        {
            let _gc = self
                .inner
                .gc_lock
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            if target.is_file() {
                return Ok(());
            }
            let file = File::open(path).map_err(io_error("open", path))?;
            file.sync_all().map_err(io_error("sync", path))?;
            match fs::rename(path, &target) {
                Ok(()) => return sync_dir(&self.inner.blobs),
                Err(e) if e.kind() == std::io::ErrorKind::CrossesDevices => {}
                Err(e) => return Err(io_error("rename into blobs", path)(e)),
            }
        }
        let mut source = File::open(path).map_err(io_error("open", path))?;
        let size = source.metadata().map_err(io_error("stat", path))?.len();
        let mut writer = self.writer(Some(digest), Some(size))?;
        std::io::copy(&mut source, &mut writer).map_err(io_error("copy", path))?;
        writer.commit_pinned(lease)?;
        Ok(())
    }

    /// Like [`ContentStore::put_bytes`], pinning the blob in `lease` before
    /// a concurrent gc could see it.
    pub fn put_bytes_pinned(&self, data: &[u8], lease: &Lease) -> Result<Digest> {
        self.put(data, Some(lease))
    }

    fn put(&self, data: &[u8], lease: Option<&Lease>) -> Result<Digest> {
        let mut writer = self.writer(None, Some(data.len() as u64))?;
        writer
            .write_all(data)
            .map_err(io_error("write", writer.path().to_path_buf()))?;
        match lease {
            Some(lease) => writer.commit_pinned(lease),
            None => writer.commit(),
        }
    }

    /// Opens a committed blob for reading.
    /// Where a committed blob lives, for readers that need a path (archive
    /// writers). The file exists only once the blob is committed.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.inner.blob_path(digest)
    }

    pub fn open_blob(&self, digest: &Digest) -> Result<File> {
        let path = self.inner.blob_path(digest);
        File::open(&path).map_err(|e| not_found_or(e, digest, "open", &path))
    }

    /// Reads a whole blob (manifests, configs: small documents).
    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>> {
        let path = self.inner.blob_path(digest);
        fs::read(&path).map_err(|e| not_found_or(e, digest, "read", &path))
    }

    /// Whether the blob is committed. An unreadable store reads as "absent".
    pub fn exists(&self, digest: &Digest) -> bool {
        self.inner.blob_path(digest).is_file()
    }

    pub fn size(&self, digest: &Digest) -> Result<u64> {
        let path = self.inner.blob_path(digest);
        fs::metadata(&path)
            .map(|m| m.len())
            .map_err(|e| not_found_or(e, digest, "stat", &path))
    }

    /// Re-hashes a committed blob: what a start-up check runs to find damage
    /// the filesystem let through.
    pub fn verify(&self, digest: &Digest) -> Result<()> {
        let path = self.inner.blob_path(digest);
        let mut file = File::open(&path).map_err(|e| not_found_or(e, digest, "open", &path))?;
        let mut hasher = Sha256::new();
        hash_into(&mut file, &mut hasher).map_err(io_error("read", &path))?;
        let actual = Digest::from_sha256_bytes(&hasher.finalize().into());
        if &actual != digest {
            return Err(Error::DigestMismatch {
                expected: digest.clone(),
                actual,
            });
        }
        Ok(())
    }

    /// Removes a blob. Returns whether it was there. Refused for a leased blob.
    pub fn delete(&self, digest: &Digest) -> Result<bool> {
        let _gc = self
            .inner
            .gc_lock
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if self.inner.is_leased(digest) {
            return Err(Error::Leased(digest.clone()));
        }
        let path = self.inner.blob_path(digest);
        let removed = remove_file_if_present(&path)?;
        if removed {
            sync_dir(&self.inner.blobs)?;
        }
        Ok(removed)
    }

    /// The committed blobs, in directory order. Files under `blobs/sha256`
    /// whose name is not a digest are skipped.
    pub fn list(&self) -> Result<Blobs> {
        let dir = &self.inner.blobs;
        let entries = fs::read_dir(dir).map_err(io_error("read directory", dir))?;
        Ok(Blobs {
            dir: dir.clone(),
            entries,
        })
    }

    /// Sum of the sizes of all committed blobs.
    pub fn total_size(&self) -> Result<u64> {
        let mut total = 0;
        for blob in self.list()? {
            total += blob?.size;
        }
        Ok(total)
    }

    /// A new, empty lease. Digests pinned in it are skipped by gc and refused
    /// by delete until the lease is dropped.
    pub fn lease(&self) -> Lease {
        Lease {
            inner: self.inner.clone(),
            pinned: Mutex::new(HashSet::new()),
        }
    }

    /// Removes every committed blob that is neither in `keep` nor pinned by a
    /// lease.
    ///
    /// The race rule: ingests in progress live in `ingest/` and are never
    /// touched. A blob committed while gc runs waits for gc to finish (commits
    /// and gc exclude each other) and then exists; but the caller's `keep` set
    /// was computed before, so a blob that is not yet referenced must be
    /// pinned by a [`Lease`] until the reference is recorded: commit with
    /// [`Writer::commit_pinned`], or pin an existing blob and then check
    /// [`ContentStore::exists`].
    pub fn gc(&self, keep: &HashSet<Digest>) -> Result<GcReport> {
        let _gc = self
            .inner
            .gc_lock
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let mut report = GcReport::default();
        for blob in self.list()? {
            let blob = blob?;
            if keep.contains(&blob.digest) || self.inner.is_leased(&blob.digest) {
                continue;
            }
            if remove_file_if_present(&self.inner.blob_path(&blob.digest))? {
                report.bytes_freed += blob.size;
                report.removed.push(blob.digest);
            }
        }
        if !report.removed.is_empty() {
            sync_dir(&self.inner.blobs)?;
        }
        report.removed.sort();
        Ok(report)
    }
}

/// Iterator over committed blobs, from [`ContentStore::list`].
pub struct Blobs {
    dir: PathBuf,
    entries: fs::ReadDir,
}

impl Iterator for Blobs {
    type Item = Result<BlobInfo>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let entry = match self.entries.next()? {
                Ok(entry) => entry,
                Err(e) => return Some(Err(io_error("read directory", &self.dir)(e))),
            };
            let Some(digest) = entry
                .file_name()
                .to_str()
                .and_then(|name| Digest::from_sha256_hex(name).ok())
            else {
                continue;
            };
            match entry.metadata() {
                Ok(meta) if meta.is_file() => {
                    return Some(Ok(BlobInfo {
                        digest,
                        size: meta.len(),
                    }))
                }
                Ok(_) => continue,
                // Deleted between readdir and stat.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Some(Err(io_error("stat", entry.path())(e))),
            }
        }
    }
}

/// Pins digests against gc and delete until dropped. In-process only.
pub struct Lease {
    inner: Arc<Inner>,
    pinned: Mutex<HashSet<Digest>>,
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("pinned", &self.pinned())
            .finish()
    }
}

impl Lease {
    /// Pins `digest` (whether or not the blob exists yet). Pinning twice in
    /// the same lease is the same as once.
    pub fn pin(&self, digest: &Digest) {
        let mut pinned = self.pinned.lock().unwrap_or_else(PoisonError::into_inner);
        if pinned.insert(digest.clone()) {
            *self.inner.leases().entry(digest.clone()).or_insert(0) += 1;
        }
    }

    /// The digests this lease pins, sorted.
    pub fn pinned(&self) -> Vec<Digest> {
        let pinned = self.pinned.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out: Vec<Digest> = pinned.iter().cloned().collect();
        out.sort();
        out
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let pinned = self
            .pinned
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        let mut leases = self.inner.leases();
        for digest in pinned.drain() {
            if let Some(count) = leases.get_mut(&digest) {
                *count -= 1;
                if *count == 0 {
                    leases.remove(&digest);
                }
            }
        }
    }
}

/// Feeds everything readable from `reader` into `hasher`; returns the byte count.
pub(crate) fn hash_into(reader: &mut impl Read, hasher: &mut Sha256) -> io::Result<u64> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        match reader.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => {
                hasher.update(&buf[..n]);
                total += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error("sync directory", dir))
}

pub(crate) fn remove_file_if_present(path: &Path) -> Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_error("remove", path)(e)),
    }
}

fn not_found_or(e: io::Error, digest: &Digest, action: &'static str, path: &Path) -> Error {
    if e.kind() == io::ErrorKind::NotFound {
        Error::NotFound(digest.clone())
    } else {
        io_error(action, path)(e)
    }
}
