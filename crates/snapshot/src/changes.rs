//! `docker diff`: what a container changed against its image's layers, as
//! dockerd's naive diff (`archive.ChangesDirs`) reports it: a path is added
//! when the image lacks it, deleted when the container removed it, and
//! modified when its type, mode, owner or device differ, or for a
//! non-directory its size or mtime, or its file capabilities; a directory
//! with changes below is reported modified. With overlay only the upper
//! directory is walked (whiteouts are deletions; below an opaque directory
//! everything of the image is compared); with vfs the whole copy is.
//!
//! Every walk goes through directory fds (no symlink followed, no mount
//! crossed) and keeps its own stack, so a hostile tree can neither lead it
//! out nor overflow the thread's stack.

use std::collections::{BTreeSet, HashSet};
use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat2, AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{fstatat, FileStat, SFlag};

use crate::error::{Error, Result};
use crate::inroot::{fd_child_path, file_type, list_dir, open_dir, open_dir_beneath};
use crate::store::{Driver, SnapshotStore};
use crate::unpack::OVERLAY_OPAQUE_XATTR;

const CAPABILITY_XATTR: &str = "security.capability";

/// Docker's change kinds, with its numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Modified = 0,
    Added = 1,
    Deleted = 2,
}

/// One line of `docker diff`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Absolute path in the container.
    pub path: String,
    pub kind: ChangeKind,
}

fn is_whiteout(st: &FileStat) -> bool {
    file_type(st) == SFlag::S_IFCHR && st.st_rdev == 0
}

fn is_dir(st: &FileStat) -> bool {
    file_type(st) == SFlag::S_IFDIR
}

/// Opens the directory `name` below `dir` for listing.
fn open_subdir(dir: BorrowedFd<'_>, name: &OsStr) -> nix::Result<OwnedFd> {
    openat2(
        dir,
        name,
        OpenHow::new()
            .flags(OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC)
            .resolve(
                ResolveFlag::RESOLVE_BENEATH
                    | ResolveFlag::RESOLVE_NO_SYMLINKS
                    | ResolveFlag::RESOLVE_NO_XDEV,
            ),
    )
}

fn lstat(dir: BorrowedFd<'_>, name: &OsStr) -> Result<Option<FileStat>> {
    match fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(st)),
        Err(Errno::ENOENT) => Ok(None),
        Err(e) => Err(Error::io(
            format!("inspecting {}", name.to_string_lossy()),
            e,
        )),
    }
}

fn opaque(dir: BorrowedFd<'_>) -> bool {
    let Ok(fd) = dir.try_clone_to_owned() else {
        return false;
    };
    let file = std::fs::File::from(fd);
    matches!(xattr::FileExt::get_xattr(&file, OVERLAY_OPAQUE_XATTR), Ok(Some(v)) if v == b"y")
}

fn capability(dir: BorrowedFd<'_>, name: &OsStr) -> Option<Vec<u8>> {
    xattr::get(fd_child_path(dir, name), CAPABILITY_XATTR)
        .ok()
        .flatten()
}

/// Go's `sameFsTimeSpec`: equal, or the same second with one side
/// lacking nanoseconds (a filesystem or archive that keeps none).
fn same_time(a: &FileStat, b: &FileStat) -> bool {
    a.st_mtime == b.st_mtime
        && (a.st_mtime_nsec == b.st_mtime_nsec || a.st_mtime_nsec == 0 || b.st_mtime_nsec == 0)
}

/// dockerd's `statDifferent`.
fn stat_different(old: &FileStat, new: &FileStat) -> bool {
    old.st_mode != new.st_mode
        || old.st_uid != new.st_uid
        || old.st_gid != new.st_gid
        || old.st_rdev != new.st_rdev
        || (!is_dir(old) && (!same_time(old, new) || old.st_size != new.st_size))
}

/// The image's layers seen as one tree, topmost first; with `whiteouts`
/// (overlay layer dirs) a char 0/0 device hides a name below and an opaque
/// directory hides everything below it.
struct LowerView {
    layers: Vec<OwnedFd>,
    whiteouts: bool,
}

/// What the lower tree holds at a path.
struct Found {
    stat: FileStat,
    /// For a directory: the layers whose copy of it shows, topmost first.
    dir_layers: Vec<usize>,
    /// The layer the entry itself comes from.
    layer: usize,
}

impl LowerView {
    fn open(dirs: &[PathBuf], whiteouts: bool) -> Result<LowerView> {
        let layers = dirs
            .iter()
            .map(|d| open_dir(d).map_err(|e| Error::io(format!("opening {}", d.display()), e)))
            .collect::<Result<Vec<_>>>()?;
        Ok(LowerView { layers, whiteouts })
    }

    fn dir_in(&self, layer: usize, comps: &[&OsStr]) -> Option<OwnedFd> {
        let rel: PathBuf = comps.iter().collect();
        open_dir_beneath(self.layers[layer].as_fd(), &rel).ok()
    }

    /// The layers showing the root, down to the first opaque one.
    fn root_layers(&self) -> Vec<usize> {
        let mut out = Vec::new();
        for (i, l) in self.layers.iter().enumerate() {
            out.push(i);
            if self.whiteouts && opaque(l.as_fd()) {
                break;
            }
        }
        out
    }

    fn lookup(&self, comps: &[&OsStr]) -> Result<Option<Found>> {
        let mut active = self.root_layers();
        let mut found: Option<Found> = None;
        for depth in 0..comps.len() {
            let name = comps[depth];
            let mut here: Option<Found> = None;
            for &l in &active {
                let Some(parent) = self.dir_in(l, &comps[..depth]) else {
                    continue;
                };
                let Some(st) = lstat(parent.as_fd(), name)? else {
                    continue;
                };
                if self.whiteouts && is_whiteout(&st) {
                    break;
                }
                match &mut here {
                    None => {
                        let dir = is_dir(&st);
                        here = Some(Found {
                            stat: st,
                            dir_layers: Vec::new(),
                            layer: l,
                        });
                        if !dir {
                            break;
                        }
                    }
                    // A non-directory below a directory is hidden by it.
                    Some(_) if !is_dir(&st) => break,
                    Some(_) => {}
                }
                if let Some(h) = &mut here {
                    h.dir_layers.push(l);
                }
                if self.whiteouts {
                    if let Ok(sub) = open_subdir(parent.as_fd(), name) {
                        if opaque(sub.as_fd()) {
                            break;
                        }
                    }
                }
            }
            let Some(h) = here else {
                return Ok(None);
            };
            if depth + 1 < comps.len() && !is_dir(&h.stat) {
                return Ok(None);
            }
            active = h.dir_layers.clone();
            found = Some(h);
        }
        Ok(found)
    }

    /// Names in the directory at `comps` (which the caller found there).
    fn children(&self, comps: &[&OsStr], layers: &[usize]) -> Result<Vec<OsString>> {
        let mut seen: BTreeSet<Vec<u8>> = BTreeSet::new();
        let mut hidden: HashSet<Vec<u8>> = HashSet::new();
        for &l in layers {
            let Some(dir) = self.dir_in(l, comps) else {
                continue;
            };
            let names =
                list_dir(dir.as_fd()).map_err(|e| Error::io("listing an image layer".into(), e))?;
            for name in names {
                let key = name.as_bytes().to_vec();
                if seen.contains(&key) || hidden.contains(&key) {
                    continue;
                }
                if self.whiteouts && lstat(dir.as_fd(), &name)?.is_some_and(|st| is_whiteout(&st)) {
                    hidden.insert(key);
                } else {
                    seen.insert(key);
                }
            }
        }
        Ok(seen
            .into_iter()
            .map(|k| OsStr::from_bytes(&k).to_os_string())
            .collect())
    }

    fn capability(&self, found: &Found, comps: &[&OsStr]) -> Option<Vec<u8>> {
        let (name, parents) = comps.split_last()?;
        let dir = self.dir_in(found.layer, parents)?;
        capability(dir.as_fd(), name)
    }
}

/// One directory being compared.
struct Frame {
    dir: OwnedFd,
    comps: Vec<OsString>,
    names: Vec<OsString>,
    next: usize,
    /// Compare every name of both sides, not only what the upper dir holds.
    full: bool,
    /// Where its changes start in the list.
    start: usize,
    /// Already listed itself (added or modified).
    listed: bool,
    /// Added, and holding a `skip` path: unlisted again when nothing but
    /// skipped mount points turns up below it (dockerd's init layer holds
    /// such a directory, e.g. `/etc` of an image without one).
    holds_skipped: bool,
}

fn container_path(comps: &[&OsStr]) -> String {
    let mut s = String::new();
    for c in comps {
        s.push('/');
        s.push_str(&c.to_string_lossy());
    }
    s
}

fn union_sorted(mut a: Vec<OsString>, b: Vec<OsString>) -> Vec<OsString> {
    a.extend(b);
    a.sort_by(|x, y| x.as_bytes().cmp(y.as_bytes()));
    a.dedup();
    a
}

/// Compares the tree at `new` (an overlay upper dir when `overlay`, else
/// a full copy) with `old`. `skip` names paths that a runtime creates as
/// mount points (dockerd keeps those in an init layer): left out when the
/// image lacks them and they are empty.
fn compare(new: &Path, old: &LowerView, overlay: bool, skip: &[&str]) -> Result<Vec<Change>> {
    let root = open_dir(new).map_err(|e| Error::io(format!("opening {}", new.display()), e))?;
    let mut changes: Vec<Change> = Vec::new();
    let full = !overlay || opaque(root.as_fd());
    let mut names =
        list_dir(root.as_fd()).map_err(|e| Error::io(format!("listing {}", new.display()), e))?;
    if full {
        names = union_sorted(names, old.children(&[], &old.root_layers())?);
    } else {
        names = union_sorted(names, Vec::new());
    }
    let mut stack = vec![Frame {
        dir: root,
        comps: Vec::new(),
        names,
        next: 0,
        full,
        start: 0,
        listed: true,
        holds_skipped: false,
    }];
    while let Some(top) = stack.last_mut() {
        let Some(name) = top.names.get(top.next).cloned() else {
            let done = stack.pop();
            if let Some(f) = done {
                if f.holds_skipped && changes.len() == f.start {
                    changes.pop();
                    continue;
                }
                if changes.len() > f.start && !f.listed {
                    let comps: Vec<&OsStr> = f.comps.iter().map(|c| c.as_os_str()).collect();
                    changes.insert(
                        f.start,
                        Change {
                            path: container_path(&comps),
                            kind: ChangeKind::Modified,
                        },
                    );
                }
            }
            continue;
        };
        top.next += 1;
        let full = top.full;
        let mut comps: Vec<OsString> = top.comps.clone();
        comps.push(name.clone());
        let comp_refs: Vec<&OsStr> = comps.iter().map(|c| c.as_os_str()).collect();
        let path = container_path(&comp_refs);
        let dir = top.dir.as_fd();
        let new_st = lstat(dir, &name)?.filter(|st| !(overlay && is_whiteout(st)));
        let old_found = old.lookup(&comp_refs)?;
        let (new_st, old_found) = match (new_st, old_found) {
            (None, None) => continue,
            (None, Some(_)) => {
                changes.push(Change {
                    path,
                    kind: ChangeKind::Deleted,
                });
                continue;
            }
            (Some(n), None) => {
                // Directories, empty files and the /etc/mtab symlink, as
                // the runtime or the engine make them.
                let placeholder = is_dir(&n)
                    || (file_type(&n) == SFlag::S_IFREG && n.st_size == 0)
                    || (file_type(&n) == SFlag::S_IFLNK
                        && nix::fcntl::readlinkat(dir, name.as_os_str())
                            .is_ok_and(|t| t == crate::inroot::MTAB_TARGET));
                if placeholder && skip.contains(&path.as_str()) {
                    continue;
                }
                changes.push(Change {
                    path,
                    kind: ChangeKind::Added,
                });
                (n, None)
            }
            (Some(n), Some(o)) => {
                let mut differs = stat_different(&o.stat, &n);
                if !differs && file_type(&n) == SFlag::S_IFREG {
                    differs = capability(dir, &name) != old.capability(&o, &comp_refs);
                }
                if differs {
                    changes.push(Change {
                        path,
                        kind: ChangeKind::Modified,
                    });
                }
                (n, Some(o))
            }
        };
        if !is_dir(&new_st) {
            continue;
        }
        let sub = match open_subdir(dir, &name) {
            Ok(fd) => fd,
            // Gone, or another mount: nothing of it is in the layer.
            Err(Errno::ENOENT | Errno::EXDEV | Errno::ELOOP | Errno::ENOTDIR) => continue,
            Err(e) => {
                return Err(Error::io(
                    format!("opening {}", container_path(&comp_refs)),
                    e,
                ))
            }
        };
        let listed = changes
            .last()
            .is_some_and(|c| c.path == container_path(&comp_refs));
        let here = container_path(&comp_refs);
        let holds_skipped = listed
            && old_found.is_none()
            && skip.iter().any(|s| {
                s.strip_prefix(here.as_str())
                    .is_some_and(|r| r.starts_with('/'))
            });
        let old_dir = old_found.as_ref().filter(|o| is_dir(&o.stat));
        let sub_full = full || !overlay || old_dir.is_none() || opaque(sub.as_fd());
        let mut names = list_dir(sub.as_fd())
            .map_err(|e| Error::io(format!("listing {}", container_path(&comp_refs)), e))?;
        names = match (sub_full, old_dir) {
            (true, Some(o)) => union_sorted(names, old.children(&comp_refs, &o.dir_layers)?),
            _ => union_sorted(names, Vec::new()),
        };
        let start = changes.len();
        stack.push(Frame {
            dir: sub,
            comps,
            names,
            next: 0,
            full: sub_full,
            start,
            listed,
            holds_skipped,
        });
    }
    Ok(changes)
}

impl SnapshotStore {
    /// The changes of container snapshot `id` against the layers below it,
    /// in path order. `skip`: see [`compare`].
    pub fn changes(&self, id: &str, skip: &[&str]) -> Result<Vec<Change>> {
        let info = self.info(id)?;
        let new = self.content_path(id)?;
        let mut lowers = Vec::new();
        let mut next = info.parent;
        while let Some(parent) = next {
            lowers.push(self.content_path(&parent)?);
            if self.driver() == Driver::Vfs {
                // A vfs layer is a full copy of everything below it.
                break;
            }
            next = self.info(&parent)?.parent;
        }
        let overlay = self.driver() == Driver::Overlay;
        compare(&new, &LowerView::open(&lowers, overlay)?, overlay, skip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn kinds(changes: &[Change]) -> Vec<String> {
        changes
            .iter()
            .map(|c| {
                let k = match c.kind {
                    ChangeKind::Modified => "C",
                    ChangeKind::Added => "A",
                    ChangeKind::Deleted => "D",
                };
                format!("{k} {}", c.path)
            })
            .collect()
    }

    /// A vfs-like comparison: a full copy against its parent.
    #[test]
    fn full_copies_compare_like_changes_dirs() {
        let old = tempfile::tempdir().expect("tmp");
        let new = tempfile::tempdir().expect("tmp");
        for d in [old.path(), new.path()] {
            for sub in ["etc", "bin", "home/u", "tmp"] {
                std::fs::create_dir_all(d.join(sub)).expect("mkdir");
            }
            std::fs::write(d.join("etc/passwd"), "root").expect("write");
            std::fs::write(d.join("bin/ls"), "ls").expect("write");
            std::fs::write(d.join("bin/sh"), "sh").expect("write");
        }
        let same = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        for d in [old.path(), new.path()] {
            for f in ["etc/passwd", "bin/ls", "bin/sh"] {
                std::fs::File::options()
                    .write(true)
                    .open(d.join(f))
                    .and_then(|f| f.set_modified(same))
                    .expect("times");
            }
        }
        std::fs::write(new.path().join("etc/passwd"), "root\nx").expect("write");
        std::fs::remove_file(new.path().join("bin/ls")).expect("rm");
        std::fs::remove_dir_all(new.path().join("home/u")).expect("rm");
        std::fs::create_dir_all(new.path().join("tmp/d/sub")).expect("mkdir");
        symlink("/etc/passwd", new.path().join("lnk")).expect("link");
        // A runtime's mount point, and an empty file like it.
        std::fs::write(new.path().join("etc/hosts"), "").expect("write");
        let lower = LowerView::open(&[old.path().to_path_buf()], false).expect("open");
        let changes = compare(new.path(), &lower, false, &["/etc/hosts"]).expect("compare");
        assert_eq!(
            kinds(&changes),
            [
                "C /bin",
                "D /bin/ls",
                "C /etc",
                "C /etc/passwd",
                "C /home",
                "D /home/u",
                "A /lnk",
                "C /tmp",
                "A /tmp/d",
                "A /tmp/d/sub",
            ]
        );
    }

    /// A directory the image lacks that holds only skipped mount points
    /// (`/etc` of an image without one) is not a change, as with dockerd,
    /// whose init layer holds it; with anything else in it, it is.
    #[test]
    fn added_dirs_of_mount_points_alone_are_no_change() {
        let old = tempfile::tempdir().expect("tmp");
        let new = tempfile::tempdir().expect("tmp");
        std::fs::create_dir_all(old.path().join("bin")).expect("mkdir");
        std::fs::create_dir_all(new.path().join("bin")).expect("mkdir");
        let same = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        for d in [old.path(), new.path()] {
            std::fs::File::open(d.join("bin"))
                .and_then(|f| f.set_modified(same))
                .expect("times");
        }
        std::fs::create_dir_all(new.path().join("etc")).expect("mkdir");
        std::fs::write(new.path().join("etc/hosts"), "").expect("write");
        std::fs::write(new.path().join("etc/hostname"), "").expect("write");
        std::fs::create_dir_all(new.path().join("run")).expect("mkdir");
        std::fs::write(new.path().join("run/secret"), "").expect("write");
        std::fs::write(new.path().join("run/data"), "x").expect("write");
        let lower = LowerView::open(&[old.path().to_path_buf()], false).expect("open");
        let skip = ["/etc/hosts", "/etc/hostname", "/run/secret"];
        let changes = compare(new.path(), &lower, false, &skip).expect("compare");
        assert_eq!(kinds(&changes), ["A /run", "A /run/data"]);
    }

    /// Overlay: only the upper dir is walked; whiteouts and opaque dirs.
    #[test]
    fn overlay_upper_against_layers() {
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("skipped: whiteouts need root (mknod, trusted xattrs)");
            return;
        }
        let lower1 = tempfile::tempdir().expect("tmp");
        let lower2 = tempfile::tempdir().expect("tmp");
        let upper = tempfile::tempdir().expect("tmp");
        std::fs::create_dir_all(lower1.path().join("etc")).expect("mkdir");
        std::fs::write(lower1.path().join("etc/a"), "a").expect("write");
        std::fs::create_dir_all(lower1.path().join("opq/old")).expect("mkdir");
        std::fs::create_dir_all(lower2.path().join("etc")).expect("mkdir");
        std::fs::write(lower2.path().join("etc/b"), "b").expect("write");
        // Layer 2 (on top) deletes etc/a.
        nix::sys::stat::mknod(
            &lower2.path().join("etc/a"),
            SFlag::S_IFCHR,
            nix::sys::stat::Mode::empty(),
            0,
        )
        .expect("whiteout");
        // The container: deletes etc/b, re-creates opq opaque with a new file.
        std::fs::create_dir_all(upper.path().join("etc")).expect("mkdir");
        nix::sys::stat::mknod(
            &upper.path().join("etc/b"),
            SFlag::S_IFCHR,
            nix::sys::stat::Mode::empty(),
            0,
        )
        .expect("whiteout");
        std::fs::create_dir_all(upper.path().join("opq")).expect("mkdir");
        xattr::set(upper.path().join("opq"), OVERLAY_OPAQUE_XATTR, b"y").expect("opaque");
        std::fs::write(upper.path().join("opq/new"), "n").expect("write");
        let lower = LowerView::open(
            &[lower2.path().to_path_buf(), lower1.path().to_path_buf()],
            true,
        )
        .expect("open");
        assert!(lower
            .lookup(&[OsStr::new("etc"), OsStr::new("a")])
            .expect("lookup")
            .is_none());
        let changes = compare(upper.path(), &lower, true, &[]).expect("compare");
        assert_eq!(
            kinds(&changes),
            ["C /etc", "D /etc/b", "C /opq", "A /opq/new", "D /opq/old"]
        );
    }
}
