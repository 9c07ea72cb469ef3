//! The on-disk store of layer and container snapshots for one driver:
//! `<root>/overlay/<id>/{diff,work,merged}` with short links in
//! `<root>/overlay/l/`, or full copies in `<root>/vfs/<id>/rootfs`. Every
//! snapshot is built in `<id>.tmp` and renamed into place, so a crash leaves
//! only `.tmp` directories, which `open` removes.

use std::fs;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use sha2::{Digest, Sha256};

use crate::copy::{copy_tree, tree_usage};
use crate::diff::DiffWriter;
use crate::error::{Error, Result};
use crate::inroot::open_dir;
use crate::unpack::{unpack_layer, UnpackOptions, UnpackStats, WhiteoutForm};

const META_FILE: &str = "meta";
const LINK_FILE: &str = "link";
const TMP_SUFFIX: &str = ".tmp";
/// overlayfs refuses more lower layers than this.
const OVERLAY_MAX_LOWERS: usize = 500;
/// Mount data must fit in one page, with its NUL.
const MOUNT_DATA_MAX: usize = 4095;
/// Naive diffs (walking the upper dir) are only right without redirects and metacopy.
const OVERLAY_EXTRA_OPTIONS: &str = "index=off,redirect_dir=off,metacopy=off";

/// Storage driver of a [`SnapshotStore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    /// overlayfs: a layer is its own diff, stacked at mount time.
    Overlay,
    /// Plain directories: each snapshot is a full copy of its parent with its layer applied.
    Vfs,
}

impl Driver {
    /// The directory name under the store root, also the name users see.
    pub fn name(self) -> &'static str {
        match self {
            Driver::Overlay => "overlay",
            Driver::Vfs => "vfs",
        }
    }
}

/// What [`detect_driver`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriverProbe {
    pub driver: Driver,
    /// Why overlay could not be used, when the driver is vfs.
    pub fallback_reason: Option<String>,
}

/// Tries an overlay mount in a scratch directory under `root` (so the
/// filesystem that will hold the snapshots is the one tested) and falls
/// back to vfs, saying why.
pub fn detect_driver(root: &Path) -> DriverProbe {
    match probe_overlay(root) {
        Ok(()) => DriverProbe {
            driver: Driver::Overlay,
            fallback_reason: None,
        },
        Err(reason) => DriverProbe {
            driver: Driver::Vfs,
            fallback_reason: Some(reason),
        },
    }
}

fn probe_overlay(root: &Path) -> std::result::Result<(), String> {
    let dir = root.join(format!("overlay-probe{TMP_SUFFIX}"));
    let _ = umount2(&dir.join("merged"), MntFlags::MNT_DETACH);
    let _ = fs::remove_dir_all(&dir);
    let result = (|| {
        for sub in ["lower", "upper", "work", "merged"] {
            fs::create_dir_all(dir.join(sub))
                .map_err(|e| format!("creating {}: {e}", dir.display()))?;
        }
        fs::write(dir.join("lower/probe"), b"")
            .map_err(|e| format!("writing to {}: {e}", dir.display()))?;
        let data = format!(
            "lowerdir={},upperdir={},workdir={},{OVERLAY_EXTRA_OPTIONS}",
            dir.join("lower").display(),
            dir.join("upper").display(),
            dir.join("work").display()
        );
        let merged = dir.join("merged");
        mount(
            Some("overlay"),
            &merged,
            Some("overlay"),
            MsFlags::empty(),
            Some(data.as_str()),
        )
        .map_err(|e| format!("overlay mount failed on {}: {e}", root.display()))?;
        let seen = merged.join("probe").exists();
        let _ = umount2(&merged, MntFlags::MNT_DETACH);
        if seen {
            Ok(())
        } else {
            Err("overlay mounted but did not show its lower layer".to_owned())
        }
    })();
    let _ = fs::remove_dir_all(&dir);
    result
}

/// Whether a snapshot is a read-only layer or a container's writable one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotKind {
    Layer,
    Container,
}

impl SnapshotKind {
    fn as_str(self) -> &'static str {
        match self {
            SnapshotKind::Layer => "layer",
            SnapshotKind::Container => "container",
        }
    }
}

/// A snapshot as recorded on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    pub id: String,
    pub kind: SnapshotKind,
    pub parent: Option<String>,
}

/// How to mount a container snapshot, for a runtime that mounts it itself
/// (an OCI `root` or `mounts` entry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountSpec {
    pub fstype: String,
    pub source: PathBuf,
    pub options: Vec<String>,
}

/// Layer and container snapshots of one driver under a root directory.
#[derive(Debug)]
pub struct SnapshotStore {
    dir: PathBuf,
    driver: Driver,
}

/// Snapshot ids become directory names and overlay mount options, so they
/// are limited to characters safe in both: an optional `algo:` prefix
/// (stored as `algo-`) and `[A-Za-z0-9._-]`.
fn dir_name(id: &str) -> Result<String> {
    let bad = |reason| Error::InvalidId {
        id: id.to_owned(),
        reason,
    };
    if id.is_empty() || id.len() > 200 {
        return Err(bad("it must be 1 to 200 characters long"));
    }
    let (algo, rest) = match id.split_once(':') {
        Some((a, r)) => (Some(a), r),
        None => (None, id),
    };
    if let Some(a) = algo {
        if a.is_empty()
            || !a
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        {
            return Err(bad(
                "the part before `:` must be a lowercase algorithm name",
            ));
        }
    }
    if rest.is_empty()
        || !rest.as_bytes()[0].is_ascii_alphanumeric()
        || !rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    {
        return Err(bad(
            "it must start with a letter or digit and hold only letters, digits, `.`, `_` and `-`",
        ));
    }
    if id.ends_with(TMP_SUFFIX) {
        return Err(bad("it may not end in .tmp"));
    }
    Ok(match algo {
        Some(a) => format!("{a}-{rest}"),
        None => rest.to_owned(),
    })
}

fn create_dir(d: &Path) -> Result<()> {
    fs::create_dir(d).map_err(|e| Error::io(format!("creating {}", d.display()), e))
}

fn fsync_dir(dir: &Path) -> Result<()> {
    let fd = open_dir(dir).map_err(|e| Error::io(format!("opening {}", dir.display()), e))?;
    nix::unistd::fsync(&fd).map_err(|e| Error::io(format!("syncing {}", dir.display()), e))
}

/// Whether `path` is a mount point of this mount namespace.
fn is_mount_point(path: &Path) -> Result<bool> {
    let info = fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| Error::io("reading /proc/self/mountinfo".into(), e))?;
    let want = path.to_string_lossy();
    Ok(info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|mp| unescape_mountinfo(mp) == want))
}

/// mountinfo writes space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Overlay mount data for lower dirs (topmost first), or `None` when it does
/// not fit in a page.
fn overlay_data(lowers: &[String], upper: &Path, work: &Path) -> Option<String> {
    let data = format!(
        "lowerdir={},upperdir={},workdir={},{OVERLAY_EXTRA_OPTIONS}",
        lowers.join(":"),
        upper.display(),
        work.display()
    );
    (data.len() <= MOUNT_DATA_MAX).then_some(data)
}

impl SnapshotStore {
    /// Opens (creating if needed) the store of `driver` under `root`, and
    /// removes what a crash left half-done: `.tmp` snapshots and short
    /// links to nothing.
    pub fn open(root: &Path, driver: Driver) -> Result<SnapshotStore> {
        let dir = root.join(driver.name());
        fs::create_dir_all(&dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        let dir = fs::canonicalize(&dir)
            .map_err(|e| Error::io(format!("resolving {}", dir.display()), e))?;
        if driver == Driver::Overlay {
            let s = dir.to_string_lossy();
            if s.contains([',', ':', '\\']) {
                return Err(Error::Io {
                    context: format!("using {s} for overlay snapshots"),
                    source: std::io::Error::new(
                        std::io::ErrorKind::InvalidInput,
                        "the path may not contain `,`, `:` or `\\` (they separate overlay mount options)",
                    ),
                });
            }
            for sub in ["l", "empty"] {
                fs::create_dir_all(dir.join(sub))
                    .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
            }
        }
        // Each snapshot in a block group of its own choosing (see
        // mark_top_dir); only a hint, so a filesystem without it is fine.
        if let Ok(top) = fs::File::open(&dir) {
            let _ = berth_sys::fs_flags::mark_top_dir(&top);
        }
        let store = SnapshotStore { dir, driver };
        store.remove_leftovers()?;
        Ok(store)
    }

    fn remove_leftovers(&self) -> Result<()> {
        for entry in fs::read_dir(&self.dir)
            .map_err(|e| Error::io(format!("listing {}", self.dir.display()), e))?
        {
            let entry =
                entry.map_err(|e| Error::io(format!("listing {}", self.dir.display()), e))?;
            if entry.file_name().to_string_lossy().ends_with(TMP_SUFFIX) {
                let p = entry.path();
                fs::remove_dir_all(&p)
                    .map_err(|e| Error::io(format!("removing leftover {}", p.display()), e))?;
            }
        }
        if self.driver == Driver::Overlay {
            let links = self.dir.join("l");
            for entry in fs::read_dir(&links)
                .map_err(|e| Error::io(format!("listing {}", links.display()), e))?
            {
                let entry =
                    entry.map_err(|e| Error::io(format!("listing {}", links.display()), e))?;
                if !entry.path().exists() {
                    let _ = fs::remove_file(entry.path());
                }
            }
        }
        Ok(())
    }

    pub fn driver(&self) -> Driver {
        self.driver
    }

    /// The directory holding this driver's snapshots.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn snap_dir(&self, id: &str) -> Result<PathBuf> {
        Ok(self.dir.join(dir_name(id)?))
    }

    fn tmp_dir(&self, id: &str) -> Result<PathBuf> {
        Ok(self.dir.join(format!("{}{TMP_SUFFIX}", dir_name(id)?)))
    }

    /// The writable content directory inside a snapshot directory.
    fn content_dir(&self, snap: &Path) -> PathBuf {
        snap.join(match self.driver {
            Driver::Overlay => "diff",
            Driver::Vfs => "rootfs",
        })
    }

    pub fn exists(&self, id: &str) -> bool {
        self.snap_dir(id).is_ok_and(|d| d.join(META_FILE).exists())
    }

    /// The recorded kind and parent of a snapshot.
    pub fn info(&self, id: &str) -> Result<SnapshotInfo> {
        let dir = self.snap_dir(id)?;
        read_meta(&dir.join(META_FILE), id)
    }

    /// Every committed snapshot.
    pub fn list(&self) -> Result<Vec<SnapshotInfo>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir)
            .map_err(|e| Error::io(format!("listing {}", self.dir.display()), e))?
        {
            let entry =
                entry.map_err(|e| Error::io(format!("listing {}", self.dir.display()), e))?;
            let meta = entry.path().join(META_FILE);
            if meta.exists() && !entry.file_name().to_string_lossy().ends_with(TMP_SUFFIX) {
                out.push(read_meta(&meta, &entry.file_name().to_string_lossy())?);
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    fn expect_kind(&self, id: &str, kind: SnapshotKind) -> Result<SnapshotInfo> {
        if !self.exists(id) {
            return Err(Error::NotFound { id: id.to_owned() });
        }
        let info = self.info(id)?;
        if info.kind != kind {
            return Err(Error::WrongKind {
                id: id.to_owned(),
                expected: kind.as_str(),
                actual: info.kind.as_str(),
            });
        }
        Ok(info)
    }

    /// Starts a layer: returns the empty (overlay) or parent-filled (vfs)
    /// directory to unpack into, inside `<id>.tmp`. Finish with
    /// [`commit_layer`](Self::commit_layer) or [`abort_layer`](Self::abort_layer).
    pub fn prepare_layer(&self, id: &str, parent: Option<&str>) -> Result<PathBuf> {
        self.prepare(id, parent, SnapshotKind::Layer)
    }

    fn prepare(&self, id: &str, parent: Option<&str>, kind: SnapshotKind) -> Result<PathBuf> {
        if self.exists(id) {
            return Err(Error::AlreadyExists { id: id.to_owned() });
        }
        if let Some(p) = parent {
            self.expect_kind(p, SnapshotKind::Layer)?;
        }
        let tmp = self.tmp_dir(id)?;
        self.prepare_in(&tmp, id, parent, kind)
    }

    /// Fills `tmp` as a new snapshot `id` (meta, content dir; vfs copies the
    /// parent) and returns its content dir.
    fn prepare_in(
        &self,
        tmp: &Path,
        id: &str,
        parent: Option<&str>,
        kind: SnapshotKind,
    ) -> Result<PathBuf> {
        if tmp.exists() {
            fs::remove_dir_all(tmp)
                .map_err(|e| Error::io(format!("removing stale {}", tmp.display()), e))?;
        }
        create_dir(tmp)?;
        let content = self.content_dir(tmp);
        match (self.driver, parent) {
            (Driver::Vfs, Some(p)) => copy_tree(&self.content_dir(&self.snap_dir(p)?), &content)?,
            _ => create_dir(&content)?,
        }
        if kind == SnapshotKind::Container {
            create_dir(&tmp.join("merged"))?;
            if self.driver == Driver::Overlay {
                create_dir(&tmp.join("work"))?;
            }
        }
        let meta = format!(
            "kind={}\nid={id}\nparent={}\n",
            kind.as_str(),
            parent.unwrap_or("")
        );
        fs::write(tmp.join(META_FILE), meta)
            .map_err(|e| Error::io(format!("writing {}", tmp.display()), e))?;
        Ok(content)
    }

    /// Makes a prepared layer permanent: its data is synced, then
    /// `<id>.tmp` is renamed to `<id>`.
    pub fn commit_layer(&self, id: &str) -> Result<()> {
        let tmp = self.tmp_dir(id)?;
        self.commit_from(&tmp, id)
    }

    fn commit_from(&self, tmp: &Path, id: &str) -> Result<()> {
        if !tmp.join(META_FILE).exists() {
            return Err(Error::NotFound { id: id.to_owned() });
        }
        let name = dir_name(id)?;
        if self.driver == Driver::Overlay {
            let short = short_name(&name);
            fs::write(tmp.join(LINK_FILE), &short)
                .map_err(|e| Error::io(format!("writing {}", tmp.display()), e))?;
            let link = self.dir.join("l").join(&short);
            let _ = fs::remove_file(&link);
            std::os::unix::fs::symlink(format!("../{name}/diff"), &link)
                .map_err(|e| Error::io(format!("creating {}", link.display()), e))?;
        }
        let fd = open_dir(tmp).map_err(|e| Error::io(format!("opening {}", tmp.display()), e))?;
        nix::unistd::syncfs(&fd).map_err(|e| Error::io(format!("syncing {}", tmp.display()), e))?;
        drop(fd);
        fs::rename(tmp, self.dir.join(&name))
            .map_err(|e| Error::io(format!("committing {}", tmp.display()), e))?;
        fsync_dir(&self.dir)
    }

    /// Drops a prepared layer that will not be committed.
    pub fn abort_layer(&self, id: &str) -> Result<()> {
        let tmp = self.tmp_dir(id)?;
        match fs::remove_dir_all(&tmp) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(format!("removing {}", tmp.display()), e)),
        }
    }

    /// Where a staged layer is unpacked: `<id>-<stage>.tmp`, private to one
    /// stager (so two pulls of the same layer never share a directory), and
    /// removed by `open` like any `.tmp`.
    fn staging_dir(&self, id: &str, stage: &str) -> Result<PathBuf> {
        if stage.is_empty()
            || !stage
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(Error::InvalidId {
                id: stage.to_owned(),
                reason: "a stage name holds only letters, digits and `-`",
            });
        }
        Ok(self
            .dir
            .join(format!("{}-{stage}{TMP_SUFFIX}", dir_name(id)?)))
    }

    /// Unpacks the uncompressed layer tar `reader` for snapshot `id` into a
    /// staging directory of its own, without committing it: the caller
    /// checks what it read (digests) first, then calls
    /// [`commit_staged`](Self::commit_staged) or
    /// [`abort_staged`](Self::abort_staged). An overlay layer does not need
    /// its parent to exist yet, so layers can be staged in parallel; a vfs
    /// layer copies its parent, which must be committed.
    pub fn stage_layer<R: Read>(
        &self,
        id: &str,
        parent: Option<&str>,
        stage: &str,
        reader: R,
    ) -> Result<UnpackStats> {
        let tmp = self.staging_dir(id, stage)?;
        if self.driver == Driver::Vfs {
            if let Some(p) = parent {
                self.expect_kind(p, SnapshotKind::Layer)?;
            }
        }
        if tmp.exists() {
            fs::remove_dir_all(&tmp)
                .map_err(|e| Error::io(format!("removing stale {}", tmp.display()), e))?;
        }
        let result = self
            .prepare_in(&tmp, id, parent, SnapshotKind::Layer)
            .and_then(|dest| unpack_layer(reader, &dest, &self.unpack_options()));
        if result.is_err() {
            let _ = self.abort_staged(id, stage);
        }
        result
    }

    /// Commits a staged layer once its parent is committed. When another
    /// stager committed `id` meanwhile, this one's copy is dropped.
    pub fn commit_staged(&self, id: &str, parent: Option<&str>, stage: &str) -> Result<()> {
        let tmp = self.staging_dir(id, stage)?;
        if self.exists(id) {
            return self.abort_staged(id, stage);
        }
        if let Some(p) = parent {
            self.expect_kind(p, SnapshotKind::Layer)?;
        }
        self.commit_from(&tmp, id)
    }

    /// Drops a staged layer.
    pub fn abort_staged(&self, id: &str, stage: &str) -> Result<()> {
        let tmp = self.staging_dir(id, stage)?;
        match fs::remove_dir_all(&tmp) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(format!("removing {}", tmp.display()), e)),
        }
    }

    fn unpack_options(&self) -> UnpackOptions {
        UnpackOptions {
            whiteouts: match self.driver {
                Driver::Overlay => WhiteoutForm::Overlay,
                Driver::Vfs => WhiteoutForm::Apply,
            },
        }
    }

    /// Prepares, unpacks the uncompressed layer tar `reader` in this
    /// driver's whiteout form, and commits; nothing stays behind on error.
    pub fn apply_layer<R: Read>(
        &self,
        id: &str,
        parent: Option<&str>,
        reader: R,
    ) -> Result<UnpackStats> {
        let dest = self.prepare_layer(id, parent)?;
        let result = unpack_layer(reader, &dest, &self.unpack_options()).and_then(|stats| {
            self.commit_layer(id)?;
            Ok(stats)
        });
        if result.is_err() {
            let _ = self.abort_layer(id);
        }
        result
    }

    /// The content directory of a committed snapshot: the overlay diff
    /// (upper dir for a container) or the vfs full copy.
    pub fn content_path(&self, id: &str) -> Result<PathBuf> {
        if !self.exists(id) {
            return Err(Error::NotFound { id: id.to_owned() });
        }
        Ok(self.content_dir(&self.snap_dir(id)?))
    }

    fn users_of(&self, id: &str) -> Result<Vec<String>> {
        Ok(self
            .list()?
            .into_iter()
            .filter(|s| s.parent.as_deref() == Some(id))
            .map(|s| s.id)
            .collect())
    }

    fn remove_snapshot(&self, id: &str) -> Result<()> {
        let dir = self.snap_dir(id)?;
        // Renamed first so a crash mid-removal leaves a `.tmp` that `open` finishes.
        let doomed = self
            .dir
            .join(format!("{}.removing{TMP_SUFFIX}", dir_name(id)?));
        fs::rename(&dir, &doomed)
            .map_err(|e| Error::io(format!("removing {}", dir.display()), e))?;
        fsync_dir(&self.dir)?;
        fs::remove_dir_all(&doomed)
            .map_err(|e| Error::io(format!("removing {}", doomed.display()), e))
    }

    /// Removes a layer that no other snapshot has as parent.
    pub fn remove_layer(&self, id: &str) -> Result<()> {
        self.expect_kind(id, SnapshotKind::Layer)?;
        let users = self.users_of(id)?;
        if !users.is_empty() {
            return Err(Error::InUse {
                id: id.to_owned(),
                users,
            });
        }
        let dir = self.snap_dir(id)?;
        if let Ok(short) = fs::read_to_string(dir.join(LINK_FILE)) {
            let _ = fs::remove_file(self.dir.join("l").join(short.trim()));
        }
        self.remove_snapshot(id)
    }

    /// Creates a container's writable snapshot on top of layer `parent`.
    pub fn create_container(&self, key: &str, parent: Option<&str>) -> Result<()> {
        self.prepare(key, parent, SnapshotKind::Container)?;
        let tmp = self.tmp_dir(key)?;
        let dir = self.snap_dir(key)?;
        fs::rename(&tmp, &dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        fsync_dir(&self.dir)
    }

    /// Layer content dirs of the parent chain, topmost first.
    fn chain(&self, parent: Option<&str>) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let mut next = parent.map(str::to_owned);
        while let Some(id) = next {
            if out.len() > OVERLAY_MAX_LOWERS {
                return Err(Error::TooManyLayers {
                    count: out.len(),
                    reason: "overlayfs stacks at most 500 layers",
                });
            }
            let info = self.expect_kind(&id, SnapshotKind::Layer)?;
            out.push(dir_name(&id)?);
            next = info.parent;
        }
        Ok(out)
    }

    /// Overlay mount data for `info`'s chain: full paths when they fit in a
    /// page, else the short links; with `links_fd` (an open `l/` directory)
    /// as a last resort `/proc/self/fd/<n>/<link>`, which only the mounting
    /// process can use.
    fn overlay_mount_data(&self, info: &SnapshotInfo, links_fd: Option<i32>) -> Result<String> {
        let snap = self.snap_dir(&info.id)?;
        let (upper, work) = (snap.join("diff"), snap.join("work"));
        let chain = self.chain(info.parent.as_deref())?;
        if chain.is_empty() {
            let empty = vec![self.dir.join("empty").to_string_lossy().into_owned()];
            return overlay_data(&empty, &upper, &work).ok_or(Error::TooManyLayers {
                count: 0,
                reason: "the store path is too long for overlay mount options",
            });
        }
        let full: Vec<String> = chain
            .iter()
            .map(|n| self.dir.join(n).join("diff").to_string_lossy().into_owned())
            .collect();
        if let Some(d) = overlay_data(&full, &upper, &work) {
            return Ok(d);
        }
        let shorts = chain
            .iter()
            .map(|n| {
                fs::read_to_string(self.dir.join(n).join(LINK_FILE))
                    .map(|s| s.trim().to_owned())
                    .map_err(|e| Error::Corrupt {
                        id: n.clone(),
                        reason: format!("its short link name cannot be read: {e}"),
                    })
            })
            .collect::<Result<Vec<_>>>()?;
        let linked: Vec<String> = shorts
            .iter()
            .map(|s| self.dir.join("l").join(s).to_string_lossy().into_owned())
            .collect();
        if let Some(d) = overlay_data(&linked, &upper, &work) {
            return Ok(d);
        }
        if let Some(fd) = links_fd {
            let by_fd: Vec<String> = shorts
                .iter()
                .map(|s| format!("/proc/self/fd/{fd}/{s}"))
                .collect();
            if let Some(d) = overlay_data(&by_fd, &upper, &work) {
                return Ok(d);
            }
        }
        Err(Error::TooManyLayers {
            count: chain.len(),
            reason: "the lower directories do not fit in overlay's one-page mount options",
        })
    }

    /// How to mount container `key`, for a runtime that mounts it itself.
    pub fn mount_spec(&self, key: &str) -> Result<MountSpec> {
        let info = self.expect_kind(key, SnapshotKind::Container)?;
        let snap = self.snap_dir(key)?;
        Ok(match self.driver {
            Driver::Overlay => MountSpec {
                fstype: "overlay".to_owned(),
                source: PathBuf::from("overlay"),
                options: self
                    .overlay_mount_data(&info, None)?
                    .split(',')
                    .map(str::to_owned)
                    .collect(),
            },
            Driver::Vfs => MountSpec {
                fstype: "bind".to_owned(),
                source: snap.join("rootfs"),
                options: vec!["rbind".to_owned(), "rw".to_owned()],
            },
        })
    }

    /// Mounts container `key` at `<key>/merged` (if not mounted yet) and
    /// returns that path.
    pub fn mount_container(&self, key: &str) -> Result<PathBuf> {
        self.mount_container_as(key, false)
    }

    /// As [`mount_container`](Self::mount_container), for a container whose
    /// writable layer is thrown away when it exits (`--rm`): overlay is
    /// mounted `volatile`, so neither writes nor the unmount wait for the
    /// upper filesystem to sync (a plain overlay unmount syncs the whole
    /// filesystem under the data-root). A kernel without `volatile` gets a
    /// plain mount.
    pub fn mount_container_volatile(&self, key: &str) -> Result<PathBuf> {
        self.mount_container_as(key, true)
    }

    fn mount_container_as(&self, key: &str, volatile: bool) -> Result<PathBuf> {
        let info = self.expect_kind(key, SnapshotKind::Container)?;
        let snap = self.snap_dir(key)?;
        let merged = snap.join("merged");
        if is_mount_point(&merged)? {
            return Ok(merged);
        }
        let mount_err = |e: Errno| Error::Mount {
            target: merged.clone(),
            source: e.into(),
        };
        match self.driver {
            Driver::Overlay => {
                let links = open_dir(&self.dir.join("l")).map_err(|e| {
                    Error::io(format!("opening {}", self.dir.join("l").display()), e)
                })?;
                let data = self.overlay_mount_data(&info, Some(links.as_raw_fd()))?;
                // A volatile mount leaves this marker, and overlay refuses
                // the next mount while it exists. Only this store mounts the
                // snapshot and it is not mounted now: the last mount ended.
                let _ = fs::remove_dir_all(snap.join("work/work/incompat/volatile"));
                let overlay = |data: &str| {
                    mount(
                        Some("overlay"),
                        &merged,
                        Some("overlay"),
                        MsFlags::empty(),
                        Some(data),
                    )
                };
                let volatile_data = volatile
                    .then(|| format!("{data},volatile"))
                    .filter(|d| d.len() <= MOUNT_DATA_MAX);
                match volatile_data {
                    // EINVAL: a kernel older than 5.10 does not know it.
                    Some(d) => overlay(&d).or_else(|e| match e {
                        Errno::EINVAL => overlay(&data),
                        e => Err(e),
                    }),
                    None => overlay(&data),
                }
                .map_err(mount_err)?;
            }
            Driver::Vfs => {
                mount(
                    Some(&snap.join("rootfs")),
                    &merged,
                    None::<&str>,
                    MsFlags::MS_BIND | MsFlags::MS_REC,
                    None::<&str>,
                )
                .map_err(mount_err)?;
            }
        }
        Ok(merged)
    }

    /// Unmounts container `key`; not mounted is not an error.
    pub fn unmount_container(&self, key: &str) -> Result<()> {
        self.expect_kind(key, SnapshotKind::Container)?;
        let merged = self.snap_dir(key)?.join("merged");
        while is_mount_point(&merged)? {
            match umount2(&merged, MntFlags::MNT_DETACH) {
                Ok(()) | Err(Errno::EINVAL) => {}
                Err(e) => {
                    return Err(Error::Mount {
                        target: merged,
                        source: e.into(),
                    })
                }
            }
        }
        Ok(())
    }

    /// Unmounts and removes container `key`.
    pub fn remove_container(&self, key: &str) -> Result<()> {
        self.unmount_container(key)?;
        self.remove_snapshot(key)
    }

    /// Bytes held by the snapshot's own content (the layer's diff for
    /// overlay, the full copy for vfs).
    pub fn usage(&self, id: &str) -> Result<u64> {
        tree_usage(&self.content_path(id)?)
    }

    /// Writes the changes of snapshot `id` against its parent as a layer
    /// tar to `out`, returning the number of entries. Works for containers
    /// (docker commit/export/diff) and layers alike.
    pub fn write_diff<W: Write>(&self, id: &str, out: W) -> Result<u64> {
        let info = self
            .info(id)
            .map_err(|_| Error::NotFound { id: id.to_owned() })?;
        let content = self.content_path(id)?;
        let mut writer = DiffWriter::new(out);
        match self.driver {
            Driver::Overlay => writer.overlay_upper(&content, Path::new(""))?,
            Driver::Vfs => {
                let parent = info
                    .parent
                    .as_deref()
                    .map(|p| self.content_path(p))
                    .transpose()?;
                writer.compare(parent.as_deref(), &content, Path::new(""))?;
            }
        }
        writer.finish()
    }
}

/// A short, stable name for a layer's link in `l/`.
fn short_name(dir_name: &str) -> String {
    hex::encode(&Sha256::digest(dir_name.as_bytes())[..10])
}

fn read_meta(path: &Path, id: &str) -> Result<SnapshotInfo> {
    let text = fs::read_to_string(path).map_err(|e| Error::Corrupt {
        id: id.to_owned(),
        reason: format!("its metadata cannot be read: {e}"),
    })?;
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
            .map(str::to_owned)
    };
    let kind = match field("kind").as_deref() {
        Some("layer") => SnapshotKind::Layer,
        Some("container") => SnapshotKind::Container,
        _ => {
            return Err(Error::Corrupt {
                id: id.to_owned(),
                reason: "its metadata has no valid kind".to_owned(),
            })
        }
    };
    Ok(SnapshotInfo {
        id: field("id").unwrap_or_else(|| id.to_owned()),
        kind,
        parent: field("parent").filter(|p| !p.is_empty()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_map_to_safe_directory_names() {
        assert_eq!(dir_name("sha256:abc123").expect("id"), "sha256-abc123");
        assert_eq!(dir_name("container_1.rw").expect("id"), "container_1.rw");
        for bad in [
            "", "../x", "a/b", "a,b", "a:b:c", ":x", "SHA:x", ".hidden", "x.tmp", "a b",
        ] {
            assert!(
                matches!(dir_name(bad), Err(Error::InvalidId { .. })),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn mountinfo_escapes_are_decoded() {
        assert_eq!(unescape_mountinfo("/a\\040b\\134c"), "/a b\\c");
        assert_eq!(unescape_mountinfo("/plain"), "/plain");
        assert_eq!(unescape_mountinfo("/end\\04"), "/end\\04");
    }

    #[test]
    fn mount_data_is_refused_past_a_page() {
        let lowers: Vec<String> = (0..200)
            .map(|i| format!("/some/long/path/to/layer/{i:04}/diff"))
            .collect();
        assert!(overlay_data(&lowers, Path::new("/u"), Path::new("/w")).is_none());
        assert!(overlay_data(&lowers[..10], Path::new("/u"), Path::new("/w")).is_some());
    }
}
