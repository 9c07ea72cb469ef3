//! The registry's filesystem store. Blobs (manifests included) live once under
//! `blobs/sha256/<xx>/<hex>`; a repository holds links to them under
//! `repositories/<name>/` (`_layers/<hex>`, `_manifests/revisions/<hex>` holding
//! the media type, `_manifests/tags/<tag>` holding the digest). Every file a
//! reader can see is written to a temporary name, fsynced and renamed, so a
//! crash never exposes a partial blob, link or tag.
//!
//! Online garbage collection (`gc.rs`) deletes unreferenced blobs whose mtime
//! is older than its grace period. Every request that lets a client count on
//! a blob (upload, mount, HEAD/GET, a manifest naming it) sets the blob's
//! mtime to now under `blob_lock`, and the collector checks the mtime and
//! deletes under the same lock, so a blob is either gone before the client
//! learns it exists or fresh when the collector looks. (A blob touched less
//! than `fresh_for` ago is left as it is: a push has its grace period less
//! that to put its manifest.)

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use sha2::{Digest as _, Sha256};
use tokio::io::AsyncWriteExt;

use crate::error::{RegistryError, Result};
use crate::names::Digest;

pub struct Storage {
    root: PathBuf,
    blob_lock: Mutex<()>,
    /// A blob whose mtime is within this of now is not touched again: a pull
    /// of a hot blob then costs a `stat`, not an inode write. Garbage
    /// collection keeps a blob for its grace period, so this is a small part
    /// of it (see `Storage::set_grace`).
    fresh_for: Duration,
}

/// A blob a repository holds, ready to be served.
pub struct LinkedBlob {
    pub size: u64,
    /// Open when the caller asked for the content.
    pub file: Option<std::fs::File>,
}

/// A manifest a repository holds.
pub struct StoredManifest {
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
    /// Absent when only the size was asked for (HEAD).
    pub body: Option<Vec<u8>>,
}

impl Storage {
    /// Creates the store's directories under `root`. Upload sessions left by
    /// a previous run stay (`upload.rs` picks them up).
    pub fn open(root: &Path) -> std::io::Result<Storage> {
        for dir in ["blobs/sha256", "repositories", "uploads"] {
            std::fs::create_dir_all(root.join(dir))?;
        }
        Ok(Storage {
            root: root.to_path_buf(),
            blob_lock: Mutex::new(()),
            fresh_for: MAX_FRESH_FOR,
        })
    }

    /// Opens an existing store without creating anything (offline gc).
    pub fn open_existing(root: &Path) -> std::io::Result<Storage> {
        for dir in ["blobs/sha256", "repositories"] {
            if !root.join(dir).is_dir() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("no {dir} directory: not a registry root"),
                ));
            }
        }
        Ok(Storage {
            root: root.to_path_buf(),
            blob_lock: Mutex::new(()),
            fresh_for: MAX_FRESH_FOR,
        })
    }

    /// Blobs touched within a quarter of the collector's grace period (at
    /// most a minute) are not touched again.
    pub fn set_grace(&mut self, grace: Duration) {
        self.fresh_for = (grace / 4).min(MAX_FRESH_FOR);
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Held while a blob's existence and mtime are checked and changed
    /// together (by requests and by the collector).
    pub fn lock_blobs(&self) -> MutexGuard<'_, ()> {
        self.blob_lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Marks a blob as in use now; false when it is not in the store.
    pub fn touch_blob(&self, digest: &Digest) -> bool {
        let _guard = self.lock_blobs();
        self.touch_if_stale(&self.blob_path(digest), None).is_some()
    }

    /// [`touch`] unless the file's mtime is within `fresh_for` of now; its
    /// metadata, or none when it is not there. Call under `blob_lock`.
    fn touch_if_stale(
        &self,
        path: &Path,
        file: Option<&std::fs::File>,
    ) -> Option<std::fs::Metadata> {
        let meta = match file {
            Some(file) => file.metadata(),
            None => std::fs::metadata(path),
        }
        .ok()?;
        let fresh = meta
            .modified()
            .ok()
            .and_then(|m| SystemTime::now().duration_since(m).ok())
            .is_some_and(|age| age < self.fresh_for);
        if fresh {
            return Some(meta);
        }
        let touched = match file {
            Some(file) => file.set_modified(SystemTime::now()).is_ok(),
            None => touch(path),
        };
        touched.then_some(meta)
    }

    /// In one trip to a blocking thread: whether the repository holds the
    /// blob (as a layer or a manifest), its size, and with `open` the file.
    /// The blob is marked as in use.
    pub async fn linked_blob(
        self: &Arc<Self>,
        name: &str,
        digest: &Digest,
        open: bool,
    ) -> Result<Option<LinkedBlob>> {
        let store = self.clone();
        let (name, digest) = (name.to_owned(), digest.clone());
        blocking(move || {
            let linked = store.layer_link(&name, &digest).exists()
                || store.revision_link(&name, &digest).exists();
            if !linked {
                return Ok(None);
            }
            let path = store.blob_path(&digest);
            let _guard = store.lock_blobs();
            let file = if open {
                match std::fs::File::open(&path) {
                    Ok(file) => Some(file),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                    Err(e) => return Err(e.into()),
                }
            } else {
                None
            };
            Ok(store
                .touch_if_stale(&path, file.as_ref())
                .map(|meta| LinkedBlob {
                    size: meta.len(),
                    file,
                }))
        })
        .await
    }

    /// In one trip to a blocking thread: the manifest a tag or digest names
    /// in the repository, with its body unless `head`.
    pub async fn stored_manifest(
        self: &Arc<Self>,
        name: &str,
        reference_text: &str,
        head: bool,
    ) -> Result<StoredManifest> {
        let reference = crate::names::Reference::parse(reference_text)?;
        let store = self.clone();
        let name = name.to_owned();
        let reference_text = reference_text.to_owned();
        blocking(move || {
            let unknown = || RegistryError::ManifestUnknown(reference_text.clone());
            let digest = match &reference {
                crate::names::Reference::Digest(digest) => digest.clone(),
                crate::names::Reference::Tag(tag) => {
                    match std::fs::read_to_string(store.tag_path(&name, tag)) {
                        Ok(text) => Digest::parse(text.trim()).map_err(|_| unknown())?,
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(unknown()),
                        Err(e) => return Err(e.into()),
                    }
                }
            };
            let media_type = match std::fs::read_to_string(store.revision_link(&name, &digest)) {
                Ok(media_type) => media_type,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(unknown()),
                Err(e) => return Err(e.into()),
            };
            let path = store.blob_path(&digest);
            let (size, body) = if head {
                (std::fs::metadata(&path)?.len(), None)
            } else {
                let body = std::fs::read(&path)?;
                (body.len() as u64, Some(body))
            };
            Ok(StoredManifest {
                digest,
                media_type,
                size,
                body,
            })
        })
        .await
    }

    /// Where the tests put ingest files.
    #[cfg(test)]
    pub fn upload_path(&self, id: &str) -> PathBuf {
        self.root.join("uploads").join(id)
    }

    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        let hex = digest.hex();
        self.root.join("blobs/sha256").join(&hex[..2]).join(hex)
    }

    fn repo_dir(&self, name: &str) -> PathBuf {
        self.root.join("repositories").join(name)
    }

    fn layer_link(&self, name: &str, digest: &Digest) -> PathBuf {
        self.repo_dir(name).join("_layers").join(digest.hex())
    }

    fn revision_link(&self, name: &str, digest: &Digest) -> PathBuf {
        self.repo_dir(name)
            .join("_manifests/revisions")
            .join(digest.hex())
    }

    fn tag_path(&self, name: &str, tag: &str) -> PathBuf {
        self.repo_dir(name).join("_manifests/tags").join(tag)
    }

    /// Moves a verified, fsynced ingest file into the blob store (dropping it
    /// when the blob is already there).
    pub async fn commit_blob(&self, ingest: &Path, digest: &Digest) -> Result<()> {
        let target = self.blob_path(digest);
        let parent = target.parent().expect("blob path has a parent");
        tokio::fs::create_dir_all(parent).await?;
        let renamed = {
            let _guard = self.lock_blobs();
            if touch(&target) {
                false
            } else {
                std::fs::rename(ingest, &target)?;
                // The ingest file's mtime is its creation; the blob is new now.
                touch(&target);
                true
            }
        };
        if renamed {
            sync_dir(parent).await
        } else {
            tokio::fs::remove_file(ingest).await?;
            Ok(())
        }
    }

    /// Stores `data` as a blob whose digest the caller computed.
    async fn put_small_blob(&self, data: &[u8], digest: &Digest) -> Result<()> {
        let target = self.blob_path(digest);
        if self.touch_blob(digest) {
            return Ok(());
        }
        write_atomically(&target, data).await
    }

    /// Whether the repository holds the blob; one it holds is marked as in
    /// use, since the client may now count on it.
    pub async fn has_layer(&self, name: &str, digest: &Digest) -> Result<bool> {
        Ok(tokio::fs::try_exists(self.layer_link(name, digest)).await? && self.touch_blob(digest))
    }

    pub async fn link_layer(&self, name: &str, digest: &Digest) -> Result<()> {
        write_atomically(&self.layer_link(name, digest), b"").await
    }

    /// Removes the repository's link to a blob; the blob itself stays until
    /// garbage collection finds nothing referring to it.
    pub async fn unlink_layer(&self, name: &str, digest: &Digest) -> Result<()> {
        match tokio::fs::remove_file(self.layer_link(name, digest)).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(RegistryError::BlobUnknown(digest.to_string()))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Whether the repository holds (or held) a manifest or a blob; a
    /// directory that only parents other repositories is not one.
    pub async fn repo_exists(&self, name: &str) -> bool {
        let dir = self.repo_dir(name);
        for part in ["_manifests", "_layers"] {
            if tokio::fs::try_exists(dir.join(part)).await.unwrap_or(false) {
                return true;
            }
        }
        false
    }

    /// The media type of a manifest in the repository, if it has one.
    pub async fn manifest_media_type(&self, name: &str, digest: &Digest) -> Result<Option<String>> {
        match tokio::fs::read_to_string(self.revision_link(name, digest)).await {
            Ok(media_type) => Ok(Some(media_type)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn read_manifest(&self, name: &str, digest: &Digest) -> Result<(String, Vec<u8>)> {
        let media_type = self
            .manifest_media_type(name, digest)
            .await?
            .ok_or_else(|| RegistryError::ManifestUnknown(digest.to_string()))?;
        let body = tokio::fs::read(self.blob_path(digest)).await?;
        Ok((media_type, body))
    }

    /// Stores a verified manifest: the blob first, then the revision link, then
    /// the tag, so that every name a reader can resolve points at full content.
    pub async fn put_manifest(
        &self,
        name: &str,
        digest: &Digest,
        media_type: &str,
        body: &[u8],
        tag: Option<&str>,
    ) -> Result<()> {
        self.put_small_blob(body, digest).await?;
        // Under the blob lock: the collector may be removing an old link to
        // this manifest (`gc --delete-untagged`), and must see this one fresh.
        write_atomically_under(
            &self.revision_link(name, digest),
            media_type.as_bytes(),
            Some(&self.blob_lock),
        )
        .await?;
        if let Some(tag) = tag {
            write_atomically(&self.tag_path(name, tag), digest.to_string().as_bytes()).await?;
        }
        Ok(())
    }

    pub async fn resolve_tag(&self, name: &str, tag: &str) -> Result<Option<Digest>> {
        match tokio::fs::read_to_string(self.tag_path(name, tag)).await {
            Ok(text) => Ok(Digest::parse(text.trim()).ok()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn delete_tag(&self, name: &str, tag: &str) -> Result<bool> {
        match tokio::fs::remove_file(self.tag_path(name, tag)).await {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes a manifest from the repository with every tag pointing at it.
    pub async fn delete_manifest(&self, name: &str, digest: &Digest) -> Result<bool> {
        for tag in self.tags(name).await? {
            if self.resolve_tag(name, &tag).await?.as_ref() == Some(digest) {
                self.delete_tag(name, &tag).await?;
            }
        }
        match tokio::fs::remove_file(self.revision_link(name, digest)).await {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// The repository's tags, sorted.
    pub async fn tags(&self, name: &str) -> Result<Vec<String>> {
        list_dir(&self.repo_dir(name).join("_manifests/tags")).await
    }

    /// Digests of the repository's manifests.
    pub async fn manifests(&self, name: &str) -> Result<Vec<Digest>> {
        let hexes = list_dir(&self.repo_dir(name).join("_manifests/revisions")).await?;
        Ok(hexes
            .iter()
            .filter_map(|hex| Digest::parse(&format!("sha256:{hex}")).ok())
            .collect())
    }

    /// Names of every repository holding a manifest or a blob, sorted.
    pub async fn repositories(&self) -> Result<Vec<String>> {
        let root = self.root.join("repositories");
        let mut names = Vec::new();
        let mut pending = vec![root.clone()];
        while let Some(dir) = pending.pop() {
            let mut entries = tokio::fs::read_dir(&dir).await?;
            let mut is_repo = false;
            while let Some(entry) = entries.next_entry().await? {
                let file_name = entry.file_name();
                let file_name = file_name.to_string_lossy();
                if file_name == "_manifests" || file_name == "_layers" {
                    is_repo = true;
                } else if entry.file_type().await?.is_dir() {
                    pending.push(entry.path());
                }
            }
            if is_repo {
                if let Ok(name) = dir.strip_prefix(&root) {
                    names.push(name.to_string_lossy().into_owned());
                }
            }
        }
        names.sort();
        Ok(names)
    }
}

/// A minute: far below any sensible grace period, far above the time
/// between the requests of one pull.
const MAX_FRESH_FOR: Duration = Duration::from_secs(60);

/// Runs `work` on tokio's blocking threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))?
}

/// File names in `dir`, sorted; none when it does not exist. Temporary files
/// (`.tmp-…`) are left out.
async fn list_dir(dir: &Path) -> Result<Vec<String>> {
    let mut entries = match tokio::fs::read_dir(dir).await {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut names = Vec::new();
    while let Some(entry) = entries.next_entry().await? {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with(".tmp-") {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// Writes `data` to `.tmp-<name>` beside `path`, fsyncs it, renames it over
/// `path` and fsyncs the directory.
async fn write_atomically(path: &Path, data: &[u8]) -> Result<()> {
    write_atomically_under(path, data, None).await
}

/// [`write_atomically`], renaming while holding `lock`.
async fn write_atomically_under(path: &Path, data: &[u8], lock: Option<&Mutex<()>>) -> Result<()> {
    let parent = path.parent().expect("store paths have a parent");
    tokio::fs::create_dir_all(parent).await?;
    let file_name = path
        .file_name()
        .expect("store paths have a file name")
        .to_string_lossy();
    let tmp = parent.join(format!(".tmp-{}-{file_name}", crate::upload::random_id()));
    let mut file = tokio::fs::File::create(&tmp).await?;
    let written = async {
        file.write_all(data).await?;
        file.sync_all().await
    }
    .await;
    if let Err(e) = written {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(e.into());
    }
    let renamed = match lock {
        Some(lock) => {
            let _guard = lock
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            std::fs::rename(&tmp, path)
        }
        None => tokio::fs::rename(&tmp, path).await,
    };
    if let Err(e) = renamed {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(e.into());
    }
    sync_dir(parent).await
}

/// Sets a file's mtime to now; false when it does not exist.
fn touch(path: &Path) -> bool {
    std::fs::File::open(path)
        .and_then(|file| file.set_modified(SystemTime::now()))
        .is_ok()
}

async fn sync_dir(dir: &Path) -> Result<()> {
    tokio::fs::File::open(dir).await?.sync_all().await?;
    Ok(())
}

pub fn sha256_digest(data: &[u8]) -> Digest {
    Digest::from_hasher(Sha256::new_with_prefix(data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn manifests_tags_and_links_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Storage::open(dir.path()).expect("open store");
        let body = br#"{"schemaVersion":2}"#;
        let digest = sha256_digest(body);
        store
            .put_manifest("a/b", &digest, "application/x-test", body, Some("t"))
            .await
            .expect("put manifest");
        assert_eq!(
            store.resolve_tag("a/b", "t").await.ok(),
            Some(Some(digest.clone()))
        );
        let (media_type, stored) = store.read_manifest("a/b", &digest).await.expect("read");
        assert_eq!(
            (media_type.as_str(), stored.as_slice()),
            ("application/x-test", &body[..])
        );
        assert!(store.repo_exists("a/b").await);
        assert!(!store.repo_exists("a").await);
        assert_eq!(store.repositories().await.expect("list"), ["a/b"]);
        assert!(store.delete_manifest("a/b", &digest).await.expect("delete"));
        assert_eq!(store.tags("a/b").await.expect("tags"), Vec::<String>::new());
    }

    #[tokio::test]
    async fn committed_blobs_leave_no_ingest_file_behind() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Storage::open(dir.path()).expect("open store");
        let digest = sha256_digest(b"data");
        for _ in 0..2 {
            let ingest = store.upload_path(&crate::upload::random_id());
            std::fs::write(&ingest, b"data").expect("write ingest");
            store.commit_blob(&ingest, &digest).await.expect("commit");
            assert!(!ingest.exists());
        }
        store.link_layer("r", &digest).await.expect("link");
        assert!(store.has_layer("r", &digest).await.expect("has layer"));
        let store = Arc::new(store);
        let blob = store.linked_blob("r", &digest, true).await.expect("blob");
        assert_eq!(blob.map(|b| (b.size, b.file.is_some())), Some((4, true)));
        assert!(store
            .linked_blob("other", &digest, false)
            .await
            .expect("blob")
            .is_none());
        store.unlink_layer("r", &digest).await.expect("unlink");
        assert!(!store.has_layer("r", &digest).await.expect("has layer"));
    }
}
