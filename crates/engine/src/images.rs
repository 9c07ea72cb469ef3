//! Images: load, import, save, list, inspect, history, tag, remove, prune and
//! disk usage, over the content store (blobs), snapshots (unpacked layers)
//! and the metadata store (what exists and how it is named).
//!
//! Order of writes, so a crash at any point leaves a consistent store: blobs
//! and snapshots first (each committed atomically), then one metadata
//! transaction that makes the image visible. What a crash leaves behind
//! unreferenced (blobs, snapshot dirs, spool files) is removed by `repair`
//! at the next start.

use std::collections::{BTreeMap, HashSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use berth_content::{ContentStore, Digest};
use berth_image::{ImageConfig, LoadedImage, LoadedLayer, Reference};
use berth_metadata::{Image, ImageLayer, ImageManifest, MetadataStore, NewImage, Snapshot};
use berth_snapshot::{Driver, SnapshotStore};

use crate::error::{Error, Result};
use crate::events::{Event, EventBus};

pub struct ImageService {
    content: ContentStore,
    snapshots: SnapshotStore,
    meta: Mutex<MetadataStore>,
    tmp: PathBuf,
    events: Arc<EventBus>,
    /// Serializes loads and removals: both decide from what exists.
    write_lock: Mutex<()>,
    driver: Driver,
    /// Blobs pulls are downloading now (see `claim_blob`).
    fetching: (Mutex<HashSet<Digest>>, std::sync::Condvar),
}

/// What a long operation reports while it runs.
#[derive(Debug, Clone, PartialEq)]
pub enum Progress {
    /// Bytes of a layer processed so far (`id` is the layer's short id).
    Layer {
        id: String,
        current: u64,
        total: u64,
    },
    /// A line of output (`Loaded image: busybox:latest`).
    Line(String),
}

/// Counts bytes read and reports them every `step` bytes.
struct CountingReader<'a, R> {
    inner: R,
    read: u64,
    reported: u64,
    step: u64,
    report: &'a mut dyn FnMut(u64),
}

impl<R: Read> Read for CountingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if n == 0 || self.read - self.reported >= self.step {
            self.reported = self.read;
            (self.report)(self.read);
        }
        Ok(n)
    }
}

/// One line of `docker rmi` output.
#[derive(Debug, Clone, PartialEq)]
pub enum Removed {
    Untagged(String),
    Deleted(String),
}

#[derive(Debug, Clone, Default)]
pub struct PruneReport {
    pub removed: Vec<Removed>,
    pub space_reclaimed: u64,
}

/// An image with what `inspect` needs besides its metadata row.
pub struct ImageDetails {
    pub image: Image,
    pub config: ImageConfig,
    /// Where the top layer lives (`docker inspect` GraphDriver.Data): for
    /// overlay2 the LowerDir/UpperDir/WorkDir/MergedDir dockerd reports.
    pub graph_driver_data: Option<BTreeMap<String, String>>,
}

/// One row of `docker history`.
#[derive(Debug, Clone)]
pub struct HistoryEntry {
    pub id: String,
    pub created: i64,
    pub created_by: String,
    pub tags: Vec<String>,
    pub size: u64,
    pub comment: String,
}

fn meta_err(e: berth_metadata::Error) -> Error {
    match e {
        berth_metadata::Error::NotFound { .. } => Error::NotFound(e.to_string()),
        berth_metadata::Error::Ambiguous { .. } | berth_metadata::Error::InvalidInput { .. } => {
            Error::InvalidArgument(e.to_string())
        }
        berth_metadata::Error::Conflict { .. } => Error::Conflict(e.to_string()),
        other => Error::Internal(format!("metadata: {other}")),
    }
}

impl From<berth_metadata::Error> for Error {
    fn from(e: berth_metadata::Error) -> Error {
        meta_err(e)
    }
}

fn content_err(e: berth_content::Error) -> Error {
    Error::Internal(format!("content store: {e}"))
}

/// Container snapshots live next to layers as `container:<id>`.
fn rootfs_key(id: &str) -> String {
    format!("container:{id}")
}

fn snapshot_err(e: berth_snapshot::Error) -> Error {
    Error::Internal(format!("snapshots: {e}"))
}

fn image_err(e: berth_image::ImageError) -> Error {
    use berth_image::ImageError as E;
    match e {
        E::Io { .. } | E::Read { .. } | E::Write { .. } => Error::Internal(e.to_string()),
        other => Error::InvalidArgument(other.to_string()),
    }
}

/// Docker's `invalid reference format` errors for user-given names.
pub fn parse_reference(name: &str) -> Result<Reference> {
    Reference::parse_normalized_tagged(name).map_err(|e| Error::InvalidArgument(e.to_string()))
}

/// [`parse_reference`] without the `latest` tag added: a push of a bare
/// repository name sends every tag of it.
pub fn parse_push_reference(name: &str) -> Result<Reference> {
    Reference::parse_normalized(name).map_err(|e| Error::InvalidArgument(e.to_string()))
}

/// `sha256:<64 hex>` for a full image id given with or without the prefix.
fn full_id(name: &str) -> Option<String> {
    let hex = name.strip_prefix("sha256:").unwrap_or(name);
    (hex.len() == 64 && is_hex_id(hex)).then(|| format!("sha256:{hex}"))
}

/// Whether `name` names image `id` by id (dockerd's `isImageIDPrefix`).
fn is_id_prefix(id: &Digest, name: &str) -> bool {
    id.as_str().starts_with(name) || id.hex().starts_with(name)
}

/// dockerd's `isSingleReference`: at most one tag, and every reference in
/// the repository of that tag (or of the only digest).
fn is_single_reference(refs: &[Reference]) -> bool {
    if refs.len() <= 1 {
        return refs.len() == 1;
    }
    let mut tags = refs.iter().filter(|r| r.digest().is_none());
    let single = match (tags.next(), tags.next()) {
        (_, Some(_)) => return false,
        (Some(tag), None) => tag,
        (None, None) => &refs[0],
    };
    let digest_repos: HashSet<String> = refs
        .iter()
        .filter(|r| r.digest().is_some())
        .map(|r| r.name())
        .collect();
    digest_repos.len() == 1 && digest_repos.contains(&single.name())
}

fn is_hex_id(name: &str) -> bool {
    let hex = name.strip_prefix("sha256:").unwrap_or(name);
    !hex.is_empty()
        && hex.len() <= 64
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Removes a temporary directory when dropped.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl ImageService {
    pub fn open(
        data_root: &Path,
        storage_driver: Option<&str>,
        events: Arc<EventBus>,
    ) -> Result<ImageService> {
        let content = ContentStore::open(data_root.join("content")).map_err(content_err)?;
        let snap_root = data_root.join("snapshots");
        std::fs::create_dir_all(&snap_root)
            .map_err(|e| Error::io(format!("create {}", snap_root.display()), e))?;
        let driver = match storage_driver {
            Some("vfs") => Driver::Vfs,
            Some("overlay2") => {
                let probe = berth_snapshot::detect_driver(&snap_root);
                if let Some(why) = probe.fallback_reason {
                    return Err(Error::InvalidArgument(format!(
                        "storage driver overlay2 is not usable here: {why}"
                    )));
                }
                Driver::Overlay
            }
            Some(other) => {
                return Err(Error::InvalidArgument(format!(
                    "unsupported storage driver {other:?}: use overlay2 or vfs"
                )))
            }
            None => {
                let probe = berth_snapshot::detect_driver(&snap_root);
                if let Some(why) = &probe.fallback_reason {
                    tracing::warn!("overlay2 can't be used ({why}); falling back to vfs");
                }
                probe.driver
            }
        };
        let snapshots = SnapshotStore::open(&snap_root, driver).map_err(snapshot_err)?;
        let meta = MetadataStore::open(data_root.join("berth.db"))?;
        let tmp = data_root.join("tmp");
        // Spool files of loads a crash interrupted.
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp)
            .map_err(|e| Error::io(format!("create {}", tmp.display()), e))?;
        let service = ImageService {
            content,
            snapshots,
            meta: Mutex::new(meta),
            tmp,
            events,
            write_lock: Mutex::new(()),
            driver,
            fetching: (Mutex::new(HashSet::new()), std::sync::Condvar::new()),
        };
        service.repair()?;
        Ok(service)
    }

    /// `overlay2` or `vfs`, as `docker info` names the driver.
    pub fn driver_name(&self) -> &'static str {
        match self.driver {
            Driver::Overlay => "overlay2",
            Driver::Vfs => "vfs",
        }
    }

    /// The layer blobs kept for a stored image (save and push read them),
    /// with their size and compression.
    fn stored_layers(&self, id: &Digest, image: &Image) -> Result<Vec<LoadedLayer>> {
        image
            .layers
            .iter()
            .map(|l| {
                let blob = l.blob_digest.clone().ok_or_else(|| {
                    Error::Internal(format!("layer {} of {id} has no blob", l.diff_id))
                })?;
                let path = self.content.blob_path(&blob);
                let size = std::fs::metadata(&path)
                    .map_err(|e| Error::io(format!("layer blob {blob}"), e))?
                    .len();
                let mut head = [0u8; 8];
                let n = std::fs::File::open(&path)
                    .and_then(|mut f| f.read(&mut head))
                    .map_err(|e| Error::io(format!("layer blob {blob}"), e))?;
                Ok(LoadedLayer {
                    diff_id: l.diff_id.clone(),
                    blob_digest: blob,
                    blob_path: path,
                    media_type: String::new(),
                    compression: berth_image::Compression::detect(&head[..n], "")
                        .map_err(image_err)?,
                    size,
                })
            })
            .collect()
    }

    pub(crate) fn meta(&self) -> std::sync::MutexGuard<'_, MetadataStore> {
        self.meta.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A container's writable snapshot on top of image `image`'s layers.
    pub(crate) fn create_rootfs(&self, key: &str, image: &Digest) -> Result<()> {
        let config = self.config_of(image)?;
        let top = config.chain_ids().last().map(|c| c.to_string());
        self.snapshots
            .create_container(&rootfs_key(key), top.as_deref())
            .map_err(snapshot_err)
    }

    /// Mounts a container's rootfs and returns where.
    pub(crate) fn mount_rootfs(&self, key: &str) -> Result<PathBuf> {
        self.snapshots
            .mount_container(&rootfs_key(key))
            .map_err(snapshot_err)
    }

    /// The rootfs of a container removed when it exits: nothing in its
    /// writable layer needs to reach the disk (see
    /// `SnapshotStore::mount_container_volatile`).
    pub(crate) fn mount_rootfs_volatile(&self, key: &str) -> Result<PathBuf> {
        self.snapshots
            .mount_container_volatile(&rootfs_key(key))
            .map_err(snapshot_err)
    }

    pub(crate) fn unmount_rootfs(&self, key: &str) -> Result<()> {
        self.snapshots
            .unmount_container(&rootfs_key(key))
            .map_err(snapshot_err)
    }

    /// Unmounts and removes a container's snapshot; a missing one is fine.
    pub(crate) fn remove_rootfs(&self, key: &str) -> Result<()> {
        let key = rootfs_key(key);
        if !self.snapshots.exists(&key) {
            return Ok(());
        }
        self.snapshots.remove_container(&key).map_err(snapshot_err)
    }

    /// Keys of every container snapshot on disk (repair after a crash).
    pub(crate) fn rootfs_keys(&self) -> Result<Vec<String>> {
        Ok(self
            .snapshots
            .list()
            .map_err(snapshot_err)?
            .into_iter()
            .filter(|s| s.kind == berth_snapshot::SnapshotKind::Container)
            .filter_map(|s| s.id.strip_prefix("container:").map(str::to_owned))
            .collect())
    }

    /// Bytes a container's writable layer holds.
    pub(crate) fn rootfs_usage(&self, key: &str) -> Result<u64> {
        self.snapshots.usage(&rootfs_key(key)).map_err(snapshot_err)
    }

    /// Makes disk agree with the metadata after a crash: snapshot directories
    /// and blobs nothing refers to are removed.
    fn repair(&self) -> Result<()> {
        self.remove_unused_snapshots()?;
        self.collect_garbage()?;
        Ok(())
    }

    /// Removes layer snapshots no image uses: rows left by an interrupted or
    /// failed load, and directories the metadata does not know. Leaves go
    /// first, so each removal is allowed.
    fn remove_unused_snapshots(&self) -> Result<()> {
        // First the directories the metadata never heard of (a crash between
        // committing a layer and recording it). They can only sit on top of
        // known layers, never below one; a parent is refused while its child
        // exists, so retry until nothing more goes.
        let known: HashSet<String> = self
            .meta()
            .read(|tx| tx.list_snapshots())?
            .into_iter()
            .map(|s| s.key)
            .collect();
        let mut unknown: Vec<String> = self
            .snapshots
            .list()
            .map_err(snapshot_err)?
            .into_iter()
            .filter(|s| s.kind == berth_snapshot::SnapshotKind::Layer && !known.contains(&s.id))
            .map(|s| s.id)
            .collect();
        while !unknown.is_empty() {
            let before = unknown.len();
            unknown.retain(|id| self.snapshots.remove_layer(id).is_err());
            if unknown.len() == before {
                return Err(Error::Internal(format!(
                    "snapshots {unknown:?} are not known and can't be removed"
                )));
            }
        }
        // Then recorded layers no image uses, leaves first.
        loop {
            let (snapshots, used) = self.meta().read(|tx| -> Result<_> {
                let used: HashSet<Digest> = tx
                    .list_images()?
                    .into_iter()
                    .flat_map(|img| img.layers.into_iter().map(|l| l.chain_id))
                    .collect();
                Ok((tx.list_snapshots()?, used))
            })?;
            let parents: HashSet<&Digest> =
                snapshots.iter().filter_map(|s| s.parent.as_ref()).collect();
            let leaves: Vec<&Snapshot> = snapshots
                .iter()
                .filter(|s| !used.contains(&s.chain_id) && !parents.contains(&s.chain_id))
                .collect();
            if leaves.is_empty() {
                return Ok(());
            }
            for snap in leaves {
                tracing::info!("removing layer {} no image uses", snap.chain_id);
                if self.snapshots.exists(&snap.key) {
                    self.snapshots
                        .remove_layer(&snap.key)
                        .map_err(snapshot_err)?;
                }
                self.meta().transaction(|tx| -> Result<Snapshot> {
                    Ok(tx.delete_snapshot(&snap.chain_id)?)
                })?;
            }
        }
    }

    /// Deletes blobs no image refers to.
    fn collect_garbage(&self) -> Result<u64> {
        let keep: HashSet<Digest> = self
            .meta()
            .list_images()?
            .into_iter()
            .flat_map(|img| {
                let mut d: Vec<Digest> = img
                    .layers
                    .iter()
                    .filter_map(|l| l.blob_digest.clone())
                    .collect();
                d.push(img.id.clone());
                d
            })
            .collect();
        let manifests = self
            .meta()
            .read(|tx| -> Result<_> { Ok(tx.manifest_blobs()?) })?;
        let keep: HashSet<Digest> = keep.into_iter().chain(manifests).collect();
        let report = self.content.gc(&keep).map_err(content_err)?;
        Ok(report.bytes_freed)
    }

    /// An image event as dockerd logs it: the image's labels plus `name`
    /// (the tag for `tag`, the image id for every other action).
    fn publish(&self, action: &str, id: &Digest, name: &str, labels: &BTreeMap<String, String>) {
        let mut attrs = labels.clone();
        attrs.insert("name".to_string(), name.to_string());
        self.events
            .publish(Event::new("image", action, id.as_str(), attrs));
    }

    /// Labels of an image for its events (none once it is deleted).
    fn labels_of(&self, id: &Digest) -> BTreeMap<String, String> {
        self.meta()
            .get_image(id)
            .map(|i| i.labels)
            .unwrap_or_default()
    }

    /// Finds an image the way dockerd does: a full id (`sha256:` optional)
    /// is only an id; anything else must be a valid reference, looked up as
    /// a tag (`latest` added) or digest first, then as an unambiguous id
    /// prefix. Errors carry dockerd's messages (`No such image: x:latest`,
    /// `invalid reference format…`). Returns the id and, when found by
    /// reference, the normalized reference.
    pub fn resolve(&self, name: &str) -> Result<(Digest, Option<Reference>)> {
        use berth_metadata::Error as M;
        let meta = self.meta();
        if let Some(full) = full_id(name) {
            return match meta.resolve_id(&full) {
                Ok(id) => Ok((id, None)),
                Err(M::NotFound { .. }) => Err(Error::NotFound(format!("No such image: {full}"))),
                Err(e) => Err(e.into()),
            };
        }
        let reference = Reference::parse_normalized(name)
            .map_err(|e| Error::InvalidArgument(e.to_string()))?
            .with_default_tag();
        match meta.resolve_reference(&reference.to_string()) {
            Ok(id) => return Ok((id, Some(reference))),
            Err(M::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        if is_hex_id(name) {
            match meta.resolve_id(name) {
                Ok(id) => return Ok((id, None)),
                Err(M::NotFound { .. } | M::Ambiguous { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::NotFound(format!(
            "No such image: {}",
            reference.familiar()
        )))
    }

    pub fn list(&self) -> Result<Vec<Image>> {
        Ok(self.meta().list_images()?)
    }

    pub fn config_of(&self, id: &Digest) -> Result<ImageConfig> {
        let raw = self.content.read_blob(id).map_err(content_err)?;
        ImageConfig::from_bytes(raw)
            .map_err(|e| Error::Internal(format!("stored config of {id}: {e}")))
    }

    pub fn inspect(&self, name: &str) -> Result<ImageDetails> {
        let (id, _) = self.resolve(name)?;
        let image = self.meta().get_image(&id)?;
        let config = self.config_of(&id)?;
        let graph_driver_data = self.graph_driver_data(&image);
        Ok(ImageDetails {
            image,
            config,
            graph_driver_data,
        })
    }

    fn graph_driver_data(&self, image: &Image) -> Option<BTreeMap<String, String>> {
        if self.driver != Driver::Overlay {
            return None;
        }
        let mut dirs: Vec<PathBuf> = image
            .layers
            .iter()
            .filter_map(|l| self.snapshots.content_path(l.chain_id.as_ref()).ok())
            .collect();
        let upper = dirs.pop()?;
        let layer_dir = upper.parent()?.to_path_buf();
        let mut data = BTreeMap::new();
        if !dirs.is_empty() {
            dirs.reverse();
            let lower: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
            data.insert("LowerDir".to_string(), lower.join(":"));
        }
        data.insert(
            "MergedDir".to_string(),
            layer_dir.join("merged").display().to_string(),
        );
        data.insert("UpperDir".to_string(), upper.display().to_string());
        data.insert(
            "WorkDir".to_string(),
            layer_dir.join("work").display().to_string(),
        );
        Some(data)
    }

    pub fn history(&self, name: &str) -> Result<Vec<HistoryEntry>> {
        let details = self.inspect(name)?;
        let parsed = details.config.parsed();
        let mut layer_sizes = details.image.layers.iter().map(|l| l.size);
        let mut entries: Vec<HistoryEntry> = Vec::new();
        for h in &parsed.history {
            let size = if h.empty_layer {
                0
            } else {
                layer_sizes.next().unwrap_or(0)
            };
            entries.push(HistoryEntry {
                id: "<missing>".to_string(),
                created: h
                    .created
                    .as_deref()
                    .and_then(|c| chrono::DateTime::parse_from_rfc3339(c).ok())
                    .map(|t| t.timestamp())
                    .unwrap_or(0),
                created_by: h.created_by.clone().unwrap_or_default(),
                tags: Vec::new(),
                size,
                comment: h.comment.clone().unwrap_or_default(),
            });
        }
        if entries.is_empty() {
            for l in &details.image.layers {
                entries.push(HistoryEntry {
                    id: "<missing>".to_string(),
                    created: 0,
                    created_by: String::new(),
                    tags: Vec::new(),
                    size: l.size,
                    comment: String::new(),
                });
            }
        }
        entries.reverse();
        if let Some(top) = entries.first_mut() {
            top.id = details.image.id.to_string();
            top.tags = details
                .image
                .tags
                .iter()
                .filter_map(|t| Reference::parse_normalized(t).ok())
                .map(|r| r.familiar())
                .collect();
        }
        Ok(entries)
    }

    /// Stores a loaded or imported image: blobs, snapshots, then the metadata
    /// row with its tags in one transaction. Returns what the tags replaced.
    fn store(
        &self,
        img: &LoadedImage,
        tags: &[Reference],
        counts_as_tagging: bool,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<Vec<(Reference, Digest)>> {
        self.store_with(
            img,
            tags,
            counts_as_tagging,
            &StagedLayers::new(),
            &|_| Ok(()),
            progress,
        )
    }

    /// `store`, committing the layers a pull already unpacked (`staged`)
    /// instead of unpacking them from their blobs, and writing `also` in
    /// the transaction that makes the image visible.
    fn store_with(
        &self,
        img: &LoadedImage,
        tags: &[Reference],
        counts_as_tagging: bool,
        staged: &StagedLayers,
        also: &dyn Fn(&berth_metadata::Tx<'_>) -> Result<()>,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<Vec<(Reference, Digest)>> {
        let result = self.store_steps(img, tags, counts_as_tagging, staged, also, progress);
        if result.is_err() {
            // Undo what the failed load stored: layers no image uses, blobs
            // nothing refers to.
            if let Err(e) = self
                .remove_unused_snapshots()
                .and_then(|_| self.collect_garbage())
            {
                tracing::error!("cleaning up after a failed load: {e}");
            }
        }
        result
    }

    fn store_steps(
        &self,
        img: &LoadedImage,
        tags: &[Reference],
        counts_as_tagging: bool,
        staged: &StagedLayers,
        also: &dyn Fn(&berth_metadata::Tx<'_>) -> Result<()>,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<Vec<(Reference, Digest)>> {
        let id = img.id().clone();
        let lease = self.content.lease();
        self.content
            .put_bytes_pinned(img.config.raw(), &lease)
            .map_err(content_err)?;
        let chain_ids = img.config.chain_ids();
        let mut layers = Vec::new();
        let mut parent: Option<Digest> = None;
        for (i, layer) in img.layers.iter().enumerate() {
            let chain = chain_ids.get(i).cloned().ok_or_else(|| {
                Error::InvalidArgument(format!("image {id} has more layers than diff_ids"))
            })?;
            self.store_blob(layer, &lease)?;
            let size = match staged.get(&chain) {
                Some(stage) => self.commit_staged(&id, i, layer, &chain, parent.as_ref(), stage)?,
                None => self.ensure_snapshot(&id, i, layer, &chain, parent.as_ref(), progress)?,
            };
            layers.push(ImageLayer {
                diff_id: layer.diff_id.clone(),
                chain_id: chain.clone(),
                blob_digest: Some(layer.blob_digest.clone()),
                size,
            });
            parent = Some(chain);
        }
        let parsed = img.config.parsed();
        let new = NewImage {
            id: id.clone(),
            manifest_digest: None,
            created: parsed.created.clone(),
            os: parsed.os.clone().unwrap_or_else(|| "linux".into()),
            architecture: parsed.architecture.clone().unwrap_or_default(),
            variant: parsed.variant.clone(),
            labels: parsed
                .config
                .as_ref()
                .and_then(|c| c.labels.clone())
                .unwrap_or_default()
                .into_iter()
                .collect(),
            parent_id: None,
            layers,
        };
        let replaced = self
            .meta()
            .transaction(|tx| -> Result<Vec<(Reference, Digest)>> {
                tx.insert_image(&new)?;
                let tagged_at = tx.get_image(&id)?.last_tagged_at;
                let mut replaced = Vec::new();
                for t in tags {
                    if let Some(old) = tx.tag(&t.to_string(), &id)? {
                        if old != id {
                            replaced.push((t.clone(), old));
                        }
                    }
                }
                if !counts_as_tagging {
                    tx.set_last_tagged_at(&id, tagged_at)?;
                }
                also(tx)?;
                Ok(replaced)
            })?;
        Ok(replaced)
    }

    /// Moves a spooled layer blob into the content store (a rename: the
    /// spool and the store share the data root's filesystem, and the blob was
    /// hashed while it was spooled).
    fn store_blob(&self, layer: &LoadedLayer, lease: &berth_content::Lease) -> Result<()> {
        if self.content.exists(&layer.blob_digest) {
            lease.pin(&layer.blob_digest);
            return Ok(());
        }
        self.content
            .adopt_file(&layer.blob_path, &layer.blob_digest, lease)
            .map_err(content_err)
    }

    /// Unpacks a layer into its snapshot unless it already exists; returns
    /// the layer's size (bytes of its files, as dockerd counts it).
    fn ensure_snapshot(
        &self,
        id: &Digest,
        index: usize,
        layer: &LoadedLayer,
        chain: &Digest,
        parent: Option<&Digest>,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<u64> {
        let key = chain.to_string();
        if let Ok(snap) = self.meta().read(|tx| tx.get_snapshot(chain)) {
            if self.snapshots.exists(&key) {
                return Ok(snap.size);
            }
        }
        if self.snapshots.exists(&key) {
            // Left by an interrupted load: not trusted, made again.
            self.snapshots.remove_layer(&key).map_err(snapshot_err)?;
        }
        let blob_path = self.content.blob_path(&layer.blob_digest);
        let file = std::fs::File::open(&blob_path)
            .map_err(|e| Error::io(format!("open {}", blob_path.display()), e))?;
        let short = layer
            .diff_id
            .hex()
            .get(..12)
            .unwrap_or_default()
            .to_string();
        let total = layer.size;
        let mut report = |current: u64| {
            progress(Progress::Layer {
                id: short.clone(),
                current,
                total,
            })
        };
        let counted = CountingReader {
            inner: file,
            read: 0,
            reported: 0,
            step: 1 << 20,
            report: &mut report,
        };
        // Decompressed only: unpacking hashes the stream and the diff_id is
        // checked against that below, so it is read and hashed once.
        let reader =
            berth_snapshot::decompress(std::io::BufReader::with_capacity(1 << 20, counted))
                .map_err(|e| Error::InvalidArgument(format!("layer {index} of image {id}: {e}")))?;
        let parent_key = parent.map(|p| p.to_string());
        let stats = self
            .snapshots
            .apply_layer(&key, parent_key.as_deref(), reader)
            .map_err(|e| match e {
                berth_snapshot::Error::Io { .. } | berth_snapshot::Error::Mount { .. } => {
                    snapshot_err(e)
                }
                other => Error::InvalidArgument(format!("layer {index} of image {id}: {other}")),
            })?;
        if stats.diff_id != layer.diff_id.to_string() {
            let _ = self.snapshots.remove_layer(&key);
            return Err(Error::InvalidArgument(format!(
                "layer {index} of image {id}: content does not match diff_id {}",
                layer.diff_id
            )));
        }
        self.record_snapshot(chain, parent, &key, stats.file_bytes)
    }

    /// Commits a layer a pull unpacked while it downloaded (its blob
    /// digest and diff_id were checked then) unless the snapshot exists
    /// already; returns the layer's size as `ensure_snapshot` does.
    fn commit_staged(
        &self,
        id: &Digest,
        index: usize,
        layer: &LoadedLayer,
        chain: &Digest,
        parent: Option<&Digest>,
        stage: &StagedLayer,
    ) -> Result<u64> {
        let key = chain.to_string();
        if let Ok(snap) = self.meta().read(|tx| tx.get_snapshot(chain)) {
            if self.snapshots.exists(&key) {
                let _ = self.snapshots.abort_staged(&key, &stage.name);
                return Ok(snap.size);
            }
        }
        if stage.diff_id != layer.diff_id {
            let _ = self.snapshots.abort_staged(&key, &stage.name);
            return Err(Error::InvalidArgument(format!(
                "layer {index} of image {id}: content does not match diff_id {}",
                layer.diff_id
            )));
        }
        if self.snapshots.exists(&key) {
            // Left by an interrupted load: not trusted, replaced.
            self.snapshots.remove_layer(&key).map_err(snapshot_err)?;
        }
        let parent_key = parent.map(|p| p.to_string());
        self.snapshots
            .commit_staged(&key, parent_key.as_deref(), &stage.name)
            .map_err(snapshot_err)?;
        self.record_snapshot(chain, parent, &key, stage.file_bytes)
    }

    /// Lists a committed layer snapshot in the metadata with its size:
    /// dockerd's overlay2 counts what the layer's directory holds (symlinks
    /// included, hard links once), its vfs driver the file bytes unpacked.
    fn record_snapshot(
        &self,
        chain: &Digest,
        parent: Option<&Digest>,
        key: &str,
        file_bytes: u64,
    ) -> Result<u64> {
        let size = match self.driver {
            Driver::Overlay => self.snapshots.usage(key).map_err(snapshot_err)?,
            Driver::Vfs => file_bytes,
        };
        self.meta().transaction(|tx| -> Result<()> {
            tx.insert_snapshot(&Snapshot {
                chain_id: chain.clone(),
                parent: parent.cloned(),
                key: key.to_string(),
                size,
                created_at: berth_metadata::now_nanos(),
            })?;
            Ok(())
        })?;
        Ok(size)
    }

    fn spool(&self, what: &str) -> Result<TempDir> {
        let dir = self.tmp.join(format!(
            "{what}-{}-{}",
            std::process::id(),
            berth_metadata::now_nanos()
        ));
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
        Ok(TempDir(dir))
    }

    /// `docker load`: a docker-archive or OCI layout tarball, reporting
    /// layer progress and the lines docker prints (`Loaded image: …`).
    pub fn load(&self, reader: impl Read, progress: &mut dyn FnMut(Progress)) -> Result<()> {
        let spool = self.spool("load")?;
        let images = berth_image::load_archive(reader, &spool.0).map_err(image_err)?;
        let _guard = self.write_lock.lock().unwrap_or_else(|p| p.into_inner());
        // As dockerd: tags set by a load are not `tag` events, and a tag
        // moved away from another image is no `untag` event.
        for img in &images {
            let replaced = self.store(img, &img.repo_tags, false, progress)?;
            if img.repo_tags.is_empty() {
                progress(Progress::Line(format!("Loaded image ID: {}", img.id())));
            }
            for t in &img.repo_tags {
                if let Some((_, old)) = replaced.iter().find(|(r, _)| r == t) {
                    progress(Progress::Line(format!(
                        "The image {} already exists, renaming the old one with ID {} to empty string",
                        t.familiar(),
                        old
                    )));
                }
                progress(Progress::Line(format!("Loaded image: {}", t.familiar())));
            }
        }
        for img in &images {
            let labels = self.labels_of(img.id());
            self.publish("load", img.id(), img.id().as_str(), &labels);
        }
        Ok(())
    }

    /// `docker import`: a rootfs tarball becomes a one-layer image.
    pub fn import(
        &self,
        reader: impl Read,
        tag: Option<Reference>,
        changes: Vec<String>,
        message: Option<String>,
    ) -> Result<Digest> {
        let spool = self.spool("import")?;
        let mut opts = berth_image::ImportOptions::new(berth_image::Platform::host());
        opts.changes = changes;
        opts.message = message;
        opts.docker_version = Some(crate::system::ENGINE_VERSION.to_string());
        opts.repo_tag = tag.clone();
        let img = berth_image::import_rootfs(reader, &spool.0, &opts).map_err(image_err)?;
        let _guard = self.write_lock.lock().unwrap_or_else(|p| p.into_inner());
        let tags: Vec<Reference> = tag.into_iter().collect();
        self.store(&img, &tags, true, &mut |_| {})?;
        let labels = self.labels_of(img.id());
        for t in &tags {
            self.publish("tag", img.id(), &t.familiar(), &labels);
        }
        self.publish("import", img.id(), img.id().as_str(), &labels);
        Ok(img.id().clone())
    }

    /// `docker tag SOURCE TARGET`.
    pub fn tag(&self, source: &str, target: &str) -> Result<()> {
        let (id, _) = self.resolve(source)?;
        let reference = parse_reference(target)?;
        if reference.digest().is_some() {
            return Err(Error::InvalidArgument(format!(
                "refusing to create a tag with a digest reference: {target}"
            )));
        }
        let _guard = self.write_lock.lock().unwrap_or_else(|p| p.into_inner());
        // A tag taken from another image is no `untag` event in dockerd.
        self.meta().tag(&reference.to_string(), &id)?;
        let labels = self.labels_of(&id);
        self.publish("tag", &id, &reference.familiar(), &labels);
        Ok(())
    }

    /// `docker rmi`, with dockerd's rules: a reference only untags while
    /// the image keeps other names (a tag's digests in its repository go
    /// with the repository's last tag); an id deletes, which needs `force`
    /// when the image is named in several repositories.
    pub fn remove(&self, name: &str, force: bool) -> Result<Vec<Removed>> {
        self.remove_in_use(name, force, &|_| Vec::new())
    }

    /// `remove`, with dockerd's rules for images containers use:
    /// `users(id)` lists (container id, running) of the containers made from it.
    pub fn remove_in_use(
        &self,
        name: &str,
        force: bool,
        users: &dyn Fn(&Digest) -> Vec<(String, bool)>,
    ) -> Result<Vec<Removed>> {
        let _guard = self.write_lock.lock().unwrap_or_else(|p| p.into_inner());
        let (id, by_ref) = self.resolve(name)?;
        let image = self.meta().get_image(&id)?;
        let refs: Vec<Reference> = image
            .tags
            .iter()
            .chain(image.repo_digests.iter())
            .filter_map(|t| Reference::parse_normalized(t).ok())
            .collect();
        let used_by = users(&id);
        let short = |s: &str| s.chars().take(12).collect::<String>();
        match by_ref.filter(|_| !is_id_prefix(&id, name)) {
            Some(reference) => {
                let last_name = refs.iter().all(|r| {
                    *r == reference || r.name() == reference.name() && r.digest().is_some()
                });
                if let Some((container, _)) = used_by.first().filter(|_| last_name && !force) {
                    return Err(Error::Conflict(format!(
                        "conflict: unable to remove repository reference \"{name}\" (must force) - container {} is using its referenced image {}",
                        short(container),
                        short(id.hex())
                    )));
                }
                self.unname(&reference)?;
                self.publish("untag", &id, id.as_str(), &image.labels);
                let mut out = vec![Removed::Untagged(reference.familiar())];
                let mut remaining: Vec<Reference> =
                    refs.into_iter().filter(|r| *r != reference).collect();
                let repo_keeps_a_tag = remaining
                    .iter()
                    .any(|r| r.digest().is_none() && r.name() == reference.name());
                if reference.digest().is_none() && !repo_keeps_a_tag {
                    let (digests, others): (Vec<_>, Vec<_>) = remaining
                        .into_iter()
                        .partition(|r| r.name() == reference.name());
                    for r in digests {
                        self.unname(&r)?;
                        out.push(Removed::Untagged(r.familiar()));
                    }
                    remaining = others;
                }
                if remaining.is_empty() && used_by.is_empty() {
                    out.extend(self.delete_one(&id, &image.labels)?);
                }
                Ok(out)
            }
            None => {
                if let Some((container, running)) = used_by.first() {
                    if *running || !force {
                        return Err(Error::Conflict(format!(
                            "conflict: unable to delete {} ({}) - image is being used by {} container {}",
                            short(id.hex()),
                            if *running { "cannot be forced" } else { "must be forced" },
                            if *running { "running" } else { "stopped" },
                            short(container)
                        )));
                    }
                    // Forced with stopped containers: the names go, the
                    // image stays for them.
                    let mut out = Vec::new();
                    for r in refs {
                        self.unname(&r)?;
                        out.push(Removed::Untagged(r.familiar()));
                    }
                    return Ok(out);
                }
                if !force && refs.len() > 1 && !is_single_reference(&refs) {
                    return Err(Error::Conflict(format!(
                        "conflict: unable to delete {} (must be forced) - image is referenced in multiple repositories",
                        &id.hex()[..12]
                    )));
                }
                self.delete_one(&id, &image.labels)
            }
        }
    }

    /// Removes one tag or digest reference.
    fn unname(&self, reference: &Reference) -> Result<()> {
        let key = reference.to_string();
        if reference.digest().is_some() {
            self.meta()
                .transaction(|tx| -> Result<Digest> { Ok(tx.remove_repo_digest(&key)?) })?;
        } else {
            self.meta().untag(&key)?;
        }
        Ok(())
    }

    /// [`ImageService::delete`] of a single image, with its blobs collected.
    fn delete_one(&self, id: &Digest, labels: &BTreeMap<String, String>) -> Result<Vec<Removed>> {
        let (removed, _) = self.delete(id, labels)?;
        self.collect_garbage()?;
        Ok(removed)
    }

    /// Removes an image with all its names, and its layers no other image
    /// uses. Returns the lines and the bytes freed. The caller collects the
    /// blobs this leaves unreferenced (once, however many images it deletes).
    fn delete(
        &self,
        id: &Digest,
        labels: &BTreeMap<String, String>,
    ) -> Result<(Vec<Removed>, u64)> {
        let deleted = self.meta().delete_image(id, true)?;
        let mut removed = Vec::new();
        // dockerd lists references sorted by their full name.
        let mut names: Vec<&String> = deleted
            .untagged
            .iter()
            .chain(deleted.repo_digests.iter())
            .collect();
        names.sort();
        for t in names {
            let familiar = Reference::parse_normalized(t)
                .map(|r| r.familiar())
                .unwrap_or_else(|_| t.clone());
            self.publish("untag", id, id.as_str(), labels);
            removed.push(Removed::Untagged(familiar));
        }
        removed.push(Removed::Deleted(id.to_string()));
        self.publish("delete", id, id.as_str(), &BTreeMap::new());
        let mut freed = 0;
        for layer in deleted.layers.iter().rev() {
            let unused = self
                .meta()
                .read(|tx| tx.images_using_chain(&layer.chain_id))?
                .is_empty();
            if !unused {
                break;
            }
            let snap = self
                .meta()
                .transaction(|tx| -> Result<Snapshot> { Ok(tx.delete_snapshot(&layer.chain_id)?) });
            match snap {
                Ok(snap) => {
                    freed += snap.size;
                    self.snapshots
                        .remove_layer(&snap.key)
                        .map_err(snapshot_err)?;
                    removed.push(Removed::Deleted(layer.chain_id.to_string()));
                }
                // Still a parent of another image's snapshot.
                Err(Error::Conflict(_)) => break,
                Err(e) => return Err(e),
            }
        }
        Ok((removed, freed))
    }

    /// `docker image prune`: dangling images, or with `all` every image
    /// (no container uses images yet). `keep` decides per image (filters).
    pub fn prune(&self, all: bool, keep: impl Fn(&Image) -> bool) -> Result<PruneReport> {
        let _guard = self.write_lock.lock().unwrap_or_else(|p| p.into_inner());
        let images = self.meta().list_images()?;
        let mut report = PruneReport::default();
        for img in images {
            let dangling = img.tags.is_empty();
            if !(all || dangling) || keep(&img) {
                continue;
            }
            if self.meta().read(|tx| tx.children(&img.id))?.is_empty() {
                let (removed, freed) = self.delete(&img.id, &img.labels)?;
                report.removed.extend(removed);
                report.space_reclaimed += freed;
            }
        }
        if !report.removed.is_empty() {
            self.collect_garbage()?;
            let attrs =
                BTreeMap::from([("reclaimed".to_string(), report.space_reclaimed.to_string())]);
            let mut event = Event::new("image", "prune", "", attrs);
            // dockerd's prune event has no image, so no legacy `id` either.
            event.id = None;
            self.events.publish(event);
        }
        Ok(report)
    }

    /// The images `docker save` names, as dockerd reads them: an id; a
    /// repository alone means all its tags; `name:tag` or `name@digest`
    /// must exist (`reference does not exist`).
    pub fn resolve_for_save(&self, names: &[String]) -> Result<Vec<(Digest, Option<Reference>)>> {
        use berth_metadata::Error as M;
        let mut out = Vec::new();
        let by_id = |name: &str| -> Result<Digest> {
            match self.meta().resolve_id(name) {
                Ok(id) => Ok(id),
                Err(M::NotFound { .. } | M::Ambiguous { .. } | M::InvalidInput { .. }) => {
                    Err(Error::NotFound(format!("No such image: {name}")))
                }
                Err(e) => Err(e.into()),
            }
        };
        for name in names {
            if let Some(full) = full_id(name) {
                out.push((by_id(&full)?, None));
                continue;
            }
            let reference = Reference::parse_normalized(name)
                .map_err(|e| Error::InvalidArgument(e.to_string()))?;
            if reference.familiar_name() == "sha256" {
                out.push((by_id(name)?, None));
                continue;
            }
            if reference.tag().is_none() && reference.digest().is_none() {
                let mut found = Vec::new();
                for image in self.meta().list_images()? {
                    for t in &image.tags {
                        match Reference::parse_normalized(t) {
                            Ok(r) if r.name() == reference.name() => {
                                found.push((t.clone(), image.id.clone(), r))
                            }
                            _ => {}
                        }
                    }
                }
                if found.is_empty() {
                    out.push((by_id(name)?, None));
                }
                found.sort_by(|a, b| a.0.cmp(&b.0));
                out.extend(found.into_iter().map(|(_, id, r)| (id, Some(r))));
                continue;
            }
            match self.meta().resolve_reference(&reference.to_string()) {
                Ok(id) => out.push((id, Some(reference))),
                Err(M::NotFound { .. }) => {
                    return Err(Error::NotFound("reference does not exist".to_string()))
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(out)
    }

    /// `docker save`: the named images as an OCI image layout that also
    /// carries docker's manifest.json (as dockerd 25+ writes), so dockerd,
    /// skopeo and umoci all read it.
    pub fn save(&self, names: &[String], out: impl Write) -> Result<()> {
        let mut order: Vec<Digest> = Vec::new();
        let mut tags: BTreeMap<Digest, Vec<Reference>> = BTreeMap::new();
        for (id, reference) in self.resolve_for_save(names)? {
            if !order.contains(&id) {
                order.push(id.clone());
            }
            if let Some(r) = reference.filter(|r| r.digest().is_none()) {
                let list = tags.entry(id).or_default();
                if !list.contains(&r) {
                    list.push(r);
                }
            }
        }
        let mut images = Vec::new();
        for id in &order {
            let image = self.meta().get_image(id)?;
            let config = self.config_of(id)?;
            let layers = self.stored_layers(id, &image)?;
            images.push(LoadedImage {
                config,
                layers,
                repo_tags: tags.remove(id).unwrap_or_default(),
            });
        }
        berth_image::write_oci_archive(&images, out).map_err(image_err)?;
        for img in &images {
            let labels = self.labels_of(img.id());
            self.publish("save", img.id(), img.id().as_str(), &labels);
        }
        Ok(())
    }

    /// Bytes of all layer snapshots (`docker system df` LayersSize).
    pub fn layers_size(&self) -> Result<u64> {
        Ok(self
            .meta()
            .read(|tx| tx.list_snapshots())?
            .iter()
            .map(|s| s.size)
            .sum())
    }

    // ------------------------------------------------------------------
    // Containers' files: `docker diff` and `docker commit` (the rest of
    // `cp`, `export` and `commit` is in containers/archive.rs).

    /// Where request bodies are spooled (`<data-root>/tmp`, emptied at start).
    pub(crate) fn spool_dir(&self) -> &Path {
        &self.tmp
    }

    /// What container `key` changed against its image (`docker diff`);
    /// `skip` names the mount points the runtime creates.
    pub(crate) fn rootfs_changes(
        &self,
        key: &str,
        skip: &[&str],
    ) -> Result<Vec<berth_snapshot::Change>> {
        self.snapshots
            .changes(&rootfs_key(key), skip)
            .map_err(snapshot_err)
    }

    /// `docker commit`: `changes` (read from the container's mounted
    /// `root`) become one more layer on top of the image's, unless there
    /// are none; the config is dockerd's for a commit. Stored like a load
    /// (blobs, snapshot, then one metadata transaction). Returns the id.
    pub(crate) fn commit_rootfs(
        &self,
        root: &berth_snapshot::ContainerRoot,
        changes: &[berth_snapshot::Change],
        spec: &CommitSpec,
    ) -> Result<Digest> {
        use berth_image::digest::HashingWriter;
        let spool = self.spool("commit")?;
        let tmp = spool.0.join("layer.tar");
        let file = std::fs::File::create(&tmp)
            .map_err(|e| Error::io(format!("create {}", tmp.display()), e))?;
        let mut writer = HashingWriter::new(std::io::BufWriter::new(file));
        let entries = root
            .write_changes(changes, &mut writer)
            .map_err(snapshot_err)?;
        let (buf, diff_id, size) = writer.finish();
        buf.into_inner()
            .map_err(|e| Error::io(format!("write {}", tmp.display()), e.into_error()))?
            .sync_all()
            .map_err(|e| Error::io(format!("write {}", tmp.display()), e))?;
        let empty = entries == 0;
        let blob_path = spool.0.join(diff_id.hex());
        std::fs::rename(&tmp, &blob_path)
            .map_err(|e| Error::io(format!("rename {}", tmp.display()), e))?;

        let parent = self.config_of(&spec.image)?;
        let image = self.meta().get_image(&spec.image)?;
        let config = commit_config(&parent, spec, (!empty).then_some(&diff_id))?;
        let mut layers = image
            .layers
            .iter()
            .map(|l| {
                let blob = l.blob_digest.clone().ok_or_else(|| {
                    Error::Internal(format!("layer {} of {} has no blob", l.diff_id, spec.image))
                })?;
                Ok(LoadedLayer {
                    diff_id: l.diff_id.clone(),
                    blob_path: self.content.blob_path(&blob),
                    blob_digest: blob,
                    media_type: berth_image::manifest::media_type::DOCKER_LAYER_TAR.to_string(),
                    compression: berth_image::Compression::None,
                    size: l.size,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        if !empty {
            layers.push(LoadedLayer {
                diff_id: diff_id.clone(),
                blob_digest: diff_id,
                blob_path,
                media_type: berth_image::manifest::media_type::DOCKER_LAYER_TAR.to_string(),
                compression: berth_image::Compression::None,
                size,
            });
        }
        let tags: Vec<Reference> = spec.tag.iter().cloned().collect();
        let img = LoadedImage {
            config,
            layers,
            repo_tags: tags.clone(),
        };
        let _guard = self.write_lock.lock().unwrap_or_else(|p| p.into_inner());
        self.store(&img, &tags, true, &mut |_| {})?;
        let labels = self.labels_of(img.id());
        for t in &tags {
            self.publish("tag", img.id(), &t.familiar(), &labels);
        }
        Ok(img.id().clone())
    }

    // ---- Registry pulls and pushes (crate::registry_client) ----

    /// A lease for blobs fetched from a registry until the image refers to them.
    pub(crate) fn blob_lease(&self) -> berth_content::Lease {
        self.content.lease()
    }

    pub(crate) fn has_blob(&self, digest: &Digest) -> bool {
        self.content.exists(digest)
    }

    /// Whether image `id` is here.
    pub(crate) fn has_image(&self, id: &Digest) -> bool {
        self.meta().resolve_id(id.as_str()).is_ok()
    }

    pub(crate) fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.content.blob_path(digest)
    }

    /// A content store writer that refuses to commit unless the bytes have
    /// `digest` and `size`.
    pub(crate) fn blob_writer(&self, digest: &Digest, size: u64) -> Result<berth_content::Writer> {
        self.content
            .writer(Some(digest), Some(size))
            .map_err(content_err)
    }

    /// Waits until no other pull of this daemon downloads `digest`, then
    /// holds it until the claim is dropped: two pulls of images sharing a
    /// layer fetch it once. `on_wait` runs when it has to wait.
    pub(crate) fn claim_blob(&self, digest: &Digest, on_wait: impl FnOnce()) -> BlobClaim<'_> {
        let mut fetching = self.fetching.0.lock().unwrap_or_else(|p| p.into_inner());
        let mut on_wait = Some(on_wait);
        while fetching.contains(digest) {
            if let Some(f) = on_wait.take() {
                f();
            }
            fetching = self
                .fetching
                .1
                .wait(fetching)
                .unwrap_or_else(|p| p.into_inner());
        }
        fetching.insert(digest.clone());
        BlobClaim {
            service: self,
            digest: digest.clone(),
        }
    }

    /// Whether layers can be unpacked before their parent is committed
    /// (overlay2: each layer is its own directory).
    pub(crate) fn stages_layers_in_parallel(&self) -> bool {
        self.driver == Driver::Overlay
    }

    /// Whether the snapshot of `chain` is committed and recorded.
    pub(crate) fn has_snapshot(&self, chain: &Digest) -> bool {
        self.meta().read(|tx| tx.get_snapshot(chain)).is_ok()
            && self.snapshots.exists(chain.as_ref())
    }

    /// Unpacks the uncompressed layer `tar` of snapshot `chain` into a
    /// staging directory named `stage`, not yet visible; `store_pulled`
    /// commits it. Returns the diff_id of what was read and the file bytes.
    pub(crate) fn stage_layer(
        &self,
        chain: &Digest,
        parent: Option<&Digest>,
        stage: &str,
        tar: impl Read,
    ) -> Result<StagedLayer> {
        let parent_key = parent.map(|p| p.to_string());
        let stats = self
            .snapshots
            .stage_layer(chain.as_ref(), parent_key.as_deref(), stage, tar)
            .map_err(|e| match e {
                berth_snapshot::Error::Io { .. } | berth_snapshot::Error::Mount { .. } => {
                    snapshot_err(e)
                }
                other => Error::InvalidArgument(other.to_string()),
            })?;
        let diff_id = Digest::parse(&stats.diff_id).map_err(|e| {
            Error::Internal(format!(
                "unpacking computed a bad diff_id {}: {e}",
                stats.diff_id
            ))
        })?;
        Ok(StagedLayer {
            name: stage.to_string(),
            diff_id,
            file_bytes: stats.file_bytes,
        })
    }

    /// Drops a staged layer that will not be committed.
    pub(crate) fn abort_staged(&self, chain: &Digest, stage: &str) {
        if let Err(e) = self.snapshots.abort_staged(chain.as_ref(), stage) {
            tracing::warn!("removing staged layer {chain}: {e}");
        }
    }

    /// Stores a pulled image whose blobs are already in the content store
    /// (pinned by the caller's lease) as `load` does, committing the layers
    /// the pull staged, then points `tag` and `repo_digest` at it. Returns
    /// false when `tag` already named it.
    pub(crate) fn store_pulled(
        &self,
        img: &LoadedImage,
        tag: Option<&Reference>,
        repo_digest: &Reference,
        manifest: &PulledManifest,
        staged: &StagedLayers,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<bool> {
        let _guard = self.write_lock.lock().unwrap_or_else(|p| p.into_inner());
        let id = img.id().clone();
        let before = tag.and_then(|t| self.meta().resolve_reference(&t.to_string()).ok());
        let tags: Vec<Reference> = tag.into_iter().cloned().collect();
        // The manifest (and index) as the registry sent them, so a push of
        // the image sends the same bytes (the same digest). Recorded with
        // the repo digest in the transaction that adds the image.
        let lease = self.content.lease();
        let kept = ImageManifest {
            digest: self
                .content
                .put_bytes_pinned(&manifest.bytes, &lease)
                .map_err(content_err)?,
            media_type: manifest.media_type.clone(),
            index_digest: manifest
                .index
                .as_deref()
                .map(|index| self.content.put_bytes_pinned(index, &lease))
                .transpose()
                .map_err(content_err)?,
        };
        let repo_digest_text = repo_digest.to_string();
        self.store_with(
            img,
            &tags,
            false,
            staged,
            &|tx| {
                tx.add_repo_digest(&repo_digest_text, &id)?;
                tx.add_image_manifest(&id, &kept)?;
                Ok(())
            },
            progress,
        )?;
        let labels = self.labels_of(&id);
        let name = tag.unwrap_or(repo_digest).familiar();
        self.publish("pull", &id, &name, &labels);
        Ok(before.as_ref() != Some(&id))
    }

    /// After a failed pull (its lease dropped): removes the blobs it fetched
    /// that no image refers to.
    pub(crate) fn discard_unreferenced_blobs(&self) {
        let _guard = self.write_lock.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = self.collect_garbage() {
            tracing::error!("cleaning up after a failed pull: {e}");
        }
    }

    /// Repositories on registry `domain` that held an image with layer
    /// `blob` (from the images' repo digests): a push can mount the blob
    /// from there instead of uploading it.
    pub(crate) fn mount_sources(&self, blob: &Digest, domain: &str) -> Vec<String> {
        let Ok(images) = self.meta().list_images() else {
            return Vec::new();
        };
        let mut out: Vec<String> = images
            .iter()
            .filter(|img| {
                img.layers
                    .iter()
                    .any(|l| l.blob_digest.as_ref() == Some(blob))
            })
            .flat_map(|img| img.repo_digests.iter())
            .filter_map(|r| Reference::parse_normalized(r).ok())
            .filter(|r| r.domain() == domain)
            .map(|r| r.path().to_string())
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// Repositories on registry `domain` an image here was pulled from as
    /// `digest` (its repo digests), e.g. where an index came from: the
    /// registry has every blob it names there.
    pub(crate) fn repositories_of_digest(&self, digest: &Digest, domain: &str) -> Vec<String> {
        let Ok(images) = self.meta().list_images() else {
            return Vec::new();
        };
        let mut out: Vec<String> = images
            .iter()
            .flat_map(|img| img.repo_digests.iter())
            .filter_map(|r| Reference::parse_normalized(r).ok())
            .filter(|r| r.domain() == domain && r.digest() == Some(digest))
            .map(|r| r.path().to_string())
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// Every tag here of `reference`'s repository (`name:tag`), sorted: what
    /// a push without a tag sends, as dockerd.
    pub fn repository_tags(&self, reference: &Reference) -> Result<Vec<Reference>> {
        let name = reference.name();
        let mut tags: Vec<Reference> = self
            .meta()
            .list_images()?
            .iter()
            .flat_map(|img| img.tags.iter())
            .filter_map(|t| Reference::parse_normalized(t).ok())
            .filter(|t| t.name() == name && t.tag().is_some())
            .collect();
        tags.sort_by_key(|t| t.to_string());
        tags.dedup_by_key(|t| t.to_string());
        Ok(tags)
    }

    /// After a push: `repo_digest` names image `id`, as dockerd records it.
    pub(crate) fn record_pushed(&self, id: &Digest, repo_digest: &Reference) -> Result<()> {
        let _guard = self.write_lock.lock().unwrap_or_else(|p| p.into_inner());
        self.meta().transaction(|tx| -> Result<()> {
            tx.add_repo_digest(&repo_digest.to_string(), id)?;
            Ok(())
        })
    }

    /// The local image `reference` names, as a push sends it.
    pub(crate) fn push_source(&self, reference: &Reference) -> Result<PushSource> {
        let id = self
            .meta()
            .resolve_reference(&reference.to_string())
            .map_err(|e| match e {
                berth_metadata::Error::NotFound { .. } => Error::NotFound(format!(
                    "An image does not exist locally with the tag: {}",
                    reference.familiar_name()
                )),
                other => other.into(),
            })?;
        let (config, layers) = self.push_blobs(&id)?;
        let kept = self
            .meta()
            .read(|tx| -> Result<_> { Ok(tx.image_manifests(&id)?) })
            .unwrap_or_default()
            .into_iter()
            .find_map(|m| self.kept_manifest(&id, &layers, m));
        Ok(PushSource {
            id,
            config,
            layers,
            kept,
        })
    }

    /// A local image that keeps manifest `digest` (it was pulled with it)
    /// and has every blob it names, so a push can send that manifest as it
    /// is; `None` when there is none.
    pub(crate) fn image_keeping(&self, digest: &Digest) -> Option<PushSource> {
        let keeping = self
            .meta()
            .read(|tx| -> Result<_> { Ok(tx.images_keeping_manifest(digest)?) })
            .ok()?;
        keeping.into_iter().find_map(|(id, m)| {
            let (config, layers) = self.push_blobs(&id).ok()?;
            let kept = self.kept_manifest(&id, &layers, m)?;
            Some(PushSource {
                id,
                config,
                layers,
                kept: Some(kept),
            })
        })
    }

    /// A kept manifest or index blob, checked against its digest.
    pub(crate) fn kept_blob(&self, digest: &Digest) -> Option<Vec<u8>> {
        let bytes = self.content.read_blob(digest).ok()?;
        (Digest::sha256_of(&bytes) == *digest).then_some(bytes)
    }

    /// The config and layer blobs of image `id`.
    fn push_blobs(&self, id: &Digest) -> Result<(ImageConfig, Vec<LoadedLayer>)> {
        let image = self.meta().get_image(id)?;
        let config = self.config_of(id)?;
        let layers = self.stored_layers(id, &image)?;
        Ok((config, layers))
    }

    /// Manifest `m` image `id` was pulled with, if it names exactly its
    /// config and the layer blobs kept here (a push can send it as it is);
    /// `None` when it does not, or can't be read.
    fn kept_manifest(
        &self,
        id: &Digest,
        layers: &[LoadedLayer],
        m: ImageManifest,
    ) -> Option<KeptManifest> {
        let bytes = self.kept_blob(&m.digest)?;
        let parsed = match berth_image::parse_manifest(&bytes, Some(&m.media_type)).ok()? {
            berth_image::ManifestKind::Manifest(parsed) => parsed,
            berth_image::ManifestKind::Index(_) => return None,
        };
        let same = parsed.config.digest == *id
            && parsed.layers.len() == layers.len()
            && parsed
                .layers
                .iter()
                .zip(layers)
                .all(|(d, l)| d.digest == l.blob_digest && d.size == l.size);
        same.then_some(KeptManifest {
            bytes,
            media_type: m.media_type,
            digest: m.digest,
            index_digest: m.index_digest,
        })
    }
}

/// A local image as a push sends it.
pub(crate) struct PushSource {
    pub(crate) id: Digest,
    pub(crate) config: ImageConfig,
    /// Its layer blobs, base first.
    pub(crate) layers: Vec<LoadedLayer>,
    /// The newest manifest it was pulled with that a push can send unchanged.
    pub(crate) kept: Option<KeptManifest>,
}

/// A manifest an image was pulled with, as the registry sent it.
pub(crate) struct KeptManifest {
    pub(crate) bytes: Vec<u8>,
    pub(crate) media_type: String,
    pub(crate) digest: Digest,
    /// The index it was chosen from, when it came through one.
    pub(crate) index_digest: Option<Digest>,
}

/// A manifest as a registry sent it (the image manifest a pull used, and
/// the index it was chosen from).
#[derive(Debug, Clone)]
pub(crate) struct PulledManifest {
    pub(crate) bytes: Vec<u8>,
    pub(crate) media_type: String,
    pub(crate) index: Option<Vec<u8>>,
}

/// A layer a pull unpacked while downloading it, waiting to be committed.
#[derive(Debug, Clone)]
pub(crate) struct StagedLayer {
    /// The staging directory's name (unique to the pull).
    pub(crate) name: String,
    pub(crate) diff_id: Digest,
    pub(crate) file_bytes: u64,
}

/// Staged layers by chain id.
pub(crate) type StagedLayers = std::collections::HashMap<Digest, StagedLayer>;

/// A pull's hold on a blob it downloads (see `ImageService::claim_blob`).
pub(crate) struct BlobClaim<'a> {
    service: &'a ImageService,
    digest: Digest,
}

impl Drop for BlobClaim<'_> {
    fn drop(&mut self) {
        let mut fetching = self
            .service
            .fetching
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        fetching.remove(&self.digest);
        self.service.fetching.1.notify_all();
    }
}

/// What `docker commit` records besides the layer.
pub(crate) struct CommitSpec {
    /// The container's image, the new one's parent.
    pub(crate) image: Digest,
    pub(crate) container_id: String,
    /// The container's own config (`container_config`).
    pub(crate) container_config: serde_json::Value,
    /// The new image's config (`config`).
    pub(crate) config: serde_json::Value,
    pub(crate) author: String,
    pub(crate) comment: String,
    /// The container's command, for the history entry.
    pub(crate) created_by: String,
    pub(crate) tag: Option<Reference>,
}

/// Now as Go's `time.Time` marshals it (RFC 3339, nanoseconds without
/// trailing zeros, `Z`).
fn go_now() -> String {
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    match now.strip_suffix('Z').and_then(|t| t.split_once('.')) {
        Some((secs, frac)) => {
            let frac = frac.trim_end_matches('0');
            if frac.is_empty() {
                format!("{secs}Z")
            } else {
                format!("{secs}.{frac}Z")
            }
        }
        None => now,
    }
}

/// The config of a committed image, as dockerd writes it: the parent's
/// platform, layers and history plus one entry, the container's config as
/// `container_config`, the new `config`. `layer`: the new layer's diff id,
/// `None` for a commit without changes (an empty-layer history entry).
fn commit_config(
    parent: &ImageConfig,
    spec: &CommitSpec,
    layer: Option<&Digest>,
) -> Result<ImageConfig> {
    use serde_json::{json, Value};
    let parsed = parent.parsed();
    let created = go_now();
    let mut history: Vec<Value> = parsed
        .history
        .iter()
        .map(|h| serde_json::to_value(h).unwrap_or(Value::Null))
        .collect();
    let mut entry = serde_json::Map::new();
    entry.insert("created".into(), json!(created));
    if !spec.author.is_empty() {
        entry.insert("author".into(), json!(spec.author));
    }
    entry.insert("created_by".into(), json!(spec.created_by));
    if !spec.comment.is_empty() {
        entry.insert("comment".into(), json!(spec.comment));
    }
    if layer.is_none() {
        entry.insert("empty_layer".into(), json!(true));
    }
    history.push(Value::Object(entry));
    let mut diff_ids: Vec<String> = parsed
        .rootfs
        .diff_ids
        .iter()
        .map(|d| d.to_string())
        .collect();
    diff_ids.extend(layer.map(|d| d.to_string()));
    let mut top = serde_json::Map::new();
    top.insert(
        "architecture".into(),
        json!(parsed.architecture.clone().unwrap_or_default()),
    );
    if !spec.author.is_empty() {
        top.insert("author".into(), json!(spec.author));
    }
    // dockerd keeps the message in the history entry only and shows it
    // from there; here it is also where `inspect` reads it.
    if !spec.comment.is_empty() {
        top.insert("comment".into(), json!(spec.comment));
    }
    top.insert("config".into(), spec.config.clone());
    top.insert("container".into(), json!(spec.container_id));
    top.insert("container_config".into(), spec.container_config.clone());
    top.insert("created".into(), json!(created));
    top.insert(
        "docker_version".into(),
        json!(crate::system::ENGINE_VERSION),
    );
    top.insert("history".into(), Value::Array(history));
    top.insert(
        "os".into(),
        json!(parsed.os.clone().unwrap_or_else(|| "linux".to_string())),
    );
    if let Some(v) = &parsed.os_version {
        top.insert("os.version".into(), json!(v));
    }
    top.insert(
        "rootfs".into(),
        json!({"type": "layers", "diff_ids": diff_ids}),
    );
    if let Some(v) = &parsed.variant {
        top.insert("variant".into(), json!(v));
    }
    let raw = serde_json::to_vec(&Value::Object(top))
        .map_err(|e| Error::Internal(format!("image config: {e}")))?;
    ImageConfig::from_bytes(raw).map_err(image_err)
}
