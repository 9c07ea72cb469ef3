//! `docker cp`, `docker export` and the layer of `docker commit`, on a
//! container's mounted root. A path from the user is resolved inside the
//! root with openat2(RESOLVE_IN_ROOT); trees are walked from directory fds,
//! one component at a time, never following a symlink and never crossing
//! into another mount. A container that swaps a directory for a symlink
//! while it is read can't make the daemon read or write a host file
//! (docker's CVE-2018-15664).
//!
//! Paths follow dockerd's rules (`archive.PreserveTrailingDotOrSeparator`,
//! `container.ResolvePath`/`StatPath`, `archive.TarResourceRebase`): the
//! directory part is resolved with symlinks followed inside the root, the
//! last element is taken as it is unless the path ends in `/` or `/.`.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat2, readlinkat, AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{fstat, fstatat, FileStat, Mode, SFlag};
use tar::{EntryType, Header};

use crate::changes::{Change, ChangeKind};
use crate::error::{Error, Result};
use crate::inroot::{file_type, list_dir, open_dir_beneath};
use crate::unpack::WHITEOUT_PREFIX;

/// The one xattr dockerd carries in the archives of `docker cp`, `export`
/// and `commit`.
const CAPABILITY_XATTR: &str = "security.capability";
/// Symlinks followed while resolving one path, as Go's `FollowSymlinkInScope`.
const MAX_SYMLINKS: usize = 255;
/// tar's header fields for names; longer ones go in PAX records.
const TAR_NAME_MAX: usize = 100;

/// What `HEAD /containers/{id}/archive` reports about a path
/// (`X-Docker-Container-Path-Stat`), before Go's encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathStat {
    /// Go's `filepath.Base` of the requested path (`/` for the root).
    pub name: String,
    pub size: i64,
    /// `st_mode`: file type and permission bits.
    pub mode: u32,
    pub mtime: i64,
    pub mtime_nsec: i64,
    /// For a symlink, its target fully resolved inside the root, as an
    /// absolute path in the container; empty otherwise.
    pub link_target: String,
}

impl PathStat {
    pub fn is_dir(&self) -> bool {
        self.mode & SFlag::S_IFMT.bits() == SFlag::S_IFDIR.bits()
    }
}

/// A container's root directory, open; every operation stays inside it,
/// or inside a host directory bound into the container for a path below
/// that bind's destination.
#[derive(Debug)]
pub struct ContainerRoot {
    root: OwnedFd,
    /// (destination components, source) of each bind.
    binds: Vec<(Vec<Vec<u8>>, OwnedFd)>,
}

/// A path as the user gave it, cleaned the way dockerd cleans it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct UserPath {
    /// Components of the cleaned absolute path (no `.`, `..` or empty ones).
    comps: Vec<Vec<u8>>,
    /// It ended in `/.` (or was `.`): the directory itself, contents
    /// archived under `.`.
    dot: bool,
    /// It ended in `/`: the last element is followed if it is a symlink.
    slash: bool,
}

impl UserPath {
    fn parse(path: &str) -> UserPath {
        let mut comps: Vec<Vec<u8>> = Vec::new();
        for c in path.as_bytes().split(|b| *b == b'/') {
            match c {
                b"" | b"." => {}
                b".." => {
                    comps.pop();
                }
                c => comps.push(c.to_vec()),
            }
        }
        let trimmed = path.trim_end_matches('/');
        let last = trimmed.rsplit('/').next().unwrap_or("");
        // Go's filepath.Base(path) == "." ("" and "." and "x/." and "x/./").
        let dot = path.is_empty() || (!trimmed.is_empty() && last == ".");
        UserPath {
            comps,
            dot,
            slash: path.ends_with('/'),
        }
    }

    /// Go's `filepath.Base` of the cleaned path with its trailing `/.`
    /// kept: the name the stat reports and the archive is rebased to.
    fn base_name(&self) -> String {
        if self.dot {
            return ".".to_string();
        }
        match self.comps.last() {
            Some(c) => String::from_utf8_lossy(c).into_owned(),
            None => "/".to_string(),
        }
    }

    /// The container path without the trailing `/.` or `/`.
    fn display(&self) -> String {
        let mut s = String::new();
        for c in &self.comps {
            s.push('/');
            s.push_str(&String::from_utf8_lossy(c));
        }
        if s.is_empty() {
            s.push('/');
        }
        s
    }

    /// Whether the last element is taken as it is (not followed): when it
    /// names something in a directory rather than the directory itself.
    fn names_an_entry(&self) -> bool {
        !self.dot && !self.slash && !self.comps.is_empty()
    }
}

fn rel_path(comps: &[Vec<u8>]) -> PathBuf {
    let mut p = PathBuf::new();
    for c in comps {
        p.push(OsStr::from_bytes(c));
    }
    p
}

/// `comps` with `.` dropped and `..` applied, never above the root.
fn lexical_comps(comps: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    for c in comps {
        match c.as_slice() {
            b"" | b"." => {}
            b".." => {
                out.pop();
            }
            _ => out.push(c.clone()),
        }
    }
    out
}

fn dot_if_empty(p: &Path) -> &Path {
    if p.as_os_str().is_empty() {
        Path::new(".")
    } else {
        p
    }
}

fn in_root() -> OpenHow {
    OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
        .resolve(
            ResolveFlag::RESOLVE_IN_ROOT
                | ResolveFlag::RESOLVE_NO_MAGICLINKS
                | ResolveFlag::RESOLVE_NO_XDEV,
        )
}

/// One component below `dir`, not followed, on the same mount.
fn child_how(flags: OFlag) -> OpenHow {
    OpenHow::new()
        .flags(flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC)
        .resolve(
            ResolveFlag::RESOLVE_BENEATH
                | ResolveFlag::RESOLVE_NO_SYMLINKS
                | ResolveFlag::RESOLVE_NO_XDEV,
        )
}

/// An `O_PATH` handle on `name` in `dir`; `None` when it is gone or is
/// another mount's root.
fn open_child_path(dir: BorrowedFd<'_>, name: &OsStr) -> nix::Result<Option<OwnedFd>> {
    match openat2(dir, name, child_how(OFlag::O_PATH)) {
        Ok(fd) => Ok(Some(fd)),
        Err(Errno::ENOENT | Errno::EXDEV) => Ok(None),
        Err(e) => Err(e),
    }
}

/// A readable handle on what the `O_PATH` handle `fd` names (the same
/// inode: reopened through /proc/self/fd, never by name).
fn reopen(fd: BorrowedFd<'_>, flags: OFlag) -> nix::Result<OwnedFd> {
    nix::fcntl::open(
        Path::new(&format!("/proc/self/fd/{}", fd.as_raw_fd())),
        flags | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

fn not_found(path: &UserPath) -> Error {
    Error::PathNotFound {
        path: path.display(),
    }
}

/// What a user path names, opened.
struct Located {
    /// `O_PATH` handle on the entry (a symlink itself when not followed).
    fd: OwnedFd,
    stat: FileStat,
}

impl ContainerRoot {
    /// Opens the mounted root of a container.
    pub fn open(root: &Path) -> Result<ContainerRoot> {
        let root = nix::fcntl::open(
            root,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Error::io(format!("opening the container root {}", root.display()), e))?;
        Ok(ContainerRoot {
            root,
            binds: Vec::new(),
        })
    }

    /// Adds a bind: paths below `destination` (an absolute container path)
    /// are looked up in `source` (a host directory or file), as the
    /// container sees them. The longest matching destination wins.
    pub fn with_bind(mut self, destination: &str, source: &Path) -> Result<ContainerRoot> {
        let fd = nix::fcntl::open(source, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty())
            .map_err(|e| Error::io(format!("opening the bind source {}", source.display()), e))?;
        self.binds
            .push((lexical_comps(&UserPath::parse(destination).comps), fd));
        Ok(self)
    }

    /// The bind `comps` lie in (the longest destination that is a prefix of
    /// them, compared after `.` and `..` are applied), with the rest.
    fn bind_for(&self, comps: &[Vec<u8>]) -> Option<(BorrowedFd<'_>, Vec<Vec<u8>>)> {
        let clean = lexical_comps(comps);
        self.binds
            .iter()
            .filter(|(dest, _)| clean.starts_with(dest))
            .max_by_key(|(dest, _)| dest.len())
            .map(|(dest, fd)| (fd.as_fd(), clean[dest.len()..].to_vec()))
    }

    /// Resolves `comps` inside the root with every symlink followed.
    fn resolve(&self, comps: &[Vec<u8>], path: &UserPath) -> Result<OwnedFd> {
        let (base, rel) = match self.bind_for(comps) {
            Some((fd, rest)) if rest.is_empty() => {
                return fd
                    .try_clone_to_owned()
                    .map_err(|e| Error::io(format!("opening {}", path.display()), e));
            }
            Some((fd, rest)) => (fd, rel_path(&rest)),
            None => (self.root.as_fd(), rel_path(comps)),
        };
        match openat2(base, dot_if_empty(&rel), in_root()) {
            Ok(fd) => Ok(fd),
            Err(Errno::ENOENT | Errno::ENOTDIR) => Err(not_found(path)),
            Err(Errno::EXDEV) => Err(Error::OtherMount {
                path: path.display(),
            }),
            Err(e) => Err(Error::io(format!("resolving {}", path.display()), e)),
        }
    }

    fn locate(&self, path: &UserPath) -> Result<Located> {
        let bind_root = self
            .bind_for(&path.comps)
            .is_some_and(|(_, rest)| rest.is_empty());
        let fd = if bind_root {
            // A bind's own root, named by its mount point.
            self.resolve(&path.comps, path)?
        } else if path.names_an_entry() {
            let (name, dir) = path.comps.split_last().ok_or_else(|| not_found(path))?;
            let dir = self.resolve(dir, path)?;
            match open_child_path(dir.as_fd(), OsStr::from_bytes(name)) {
                Ok(Some(fd)) => fd,
                Ok(None) | Err(Errno::ENOTDIR) => return Err(not_found(path)),
                Err(e) => return Err(Error::io(format!("opening {}", path.display()), e)),
            }
        } else {
            let fd = self.resolve(&path.comps, path)?;
            let st =
                fstat(&fd).map_err(|e| Error::io(format!("inspecting {}", path.display()), e))?;
            if file_type(&st) != SFlag::S_IFDIR {
                return Err(not_found(path));
            }
            fd
        };
        let stat =
            fstat(&fd).map_err(|e| Error::io(format!("inspecting {}", path.display()), e))?;
        Ok(Located { fd, stat })
    }

    fn path_stat(&self, path: &UserPath, located: &Located) -> Result<PathStat> {
        let link_target = if file_type(&located.stat) == SFlag::S_IFLNK {
            self.follow_in_scope(&path.comps)?
        } else {
            String::new()
        };
        Ok(PathStat {
            name: path.base_name(),
            size: located.stat.st_size,
            mode: located.stat.st_mode,
            mtime: located.stat.st_mtime,
            mtime_nsec: located.stat.st_mtime_nsec,
            link_target,
        })
    }

    /// `HEAD /containers/{id}/archive?path=`.
    pub fn stat(&self, path: &str) -> Result<PathStat> {
        let path = UserPath::parse(path);
        let located = self.locate(&path)?;
        self.path_stat(&path, &located)
    }

    /// `GET /containers/{id}/archive?path=`: resolves the path now (so a
    /// missing one is an error before anything is sent) and returns its
    /// stat and the archive to write.
    pub fn archive(&self, path: &str) -> Result<(PathStat, PathArchive)> {
        let path = UserPath::parse(path);
        let located = self.locate(&path)?;
        let stat = self.path_stat(&path, &located)?;
        // dockerd rebases the entries to the base name of the request; the
        // root's entries start with `/`.
        let rebase = match path.base_name().as_str() {
            "/" => Vec::new(),
            name => name.as_bytes().to_vec(),
        };
        Ok((
            stat,
            PathArchive {
                located,
                rebase,
                top: true,
            },
        ))
    }

    /// `docker export`: the whole root, names relative, no entry for the
    /// root itself.
    pub fn export<W: Write>(&self, out: W) -> Result<()> {
        let fd = self
            .root
            .try_clone()
            .map_err(|e| Error::io("opening the container root".into(), e))?;
        let stat = fstat(&fd).map_err(|e| Error::io("inspecting the container root".into(), e))?;
        PathArchive {
            located: Located { fd, stat },
            rebase: Vec::new(),
            top: false,
        }
        .write_to(out)
    }

    /// Symlinks in `comps` resolved inside the root, as far as they exist
    /// (Go's `symlink.FollowSymlinkInScope`), as an absolute container path.
    fn follow_in_scope(&self, comps: &[Vec<u8>]) -> Result<String> {
        let mut pending: std::collections::VecDeque<Vec<u8>> = comps.iter().cloned().collect();
        let mut resolved: Vec<Vec<u8>> = Vec::new();
        let mut links = 0;
        while let Some(c) = pending.pop_front() {
            match c.as_slice() {
                b"" | b"." => continue,
                b".." => {
                    resolved.pop();
                    continue;
                }
                _ => {}
            }
            let parent = match open_dir_beneath(self.root.as_fd(), &rel_path(&resolved)) {
                Ok(fd) => fd,
                // Below something missing or not a directory: the rest
                // stays as written.
                Err(_) => {
                    resolved.push(c);
                    continue;
                }
            };
            let name = OsStr::from_bytes(&c);
            match fstatat(&parent, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
                Ok(st) if file_type(&st) == SFlag::S_IFLNK => {
                    links += 1;
                    if links > MAX_SYMLINKS {
                        return Err(Error::io(
                            format!("resolving {}", display_comps(comps)),
                            Errno::ELOOP,
                        ));
                    }
                    let target = readlinkat(&parent, name).map_err(|e| {
                        Error::io(format!("reading link {}", display_comps(comps)), e)
                    })?;
                    let target = target.as_bytes();
                    if target.first() == Some(&b'/') {
                        resolved.clear();
                    }
                    for t in target.split(|b| *b == b'/').rev() {
                        pending.push_front(t.to_vec());
                    }
                }
                _ => resolved.push(c),
            }
        }
        Ok(display_comps(&resolved))
    }

    /// `PUT /containers/{id}/archive?path=`: the directory to extract into,
    /// with every symlink followed inside the root (the last one too, as
    /// dockerd does, so a symlink to a directory works).
    pub fn extract_dir(&self, dir: &str) -> Result<ExtractDir> {
        let path = UserPath::parse(dir);
        let fd = self.resolve(&path.comps, &path)?;
        let st = fstat(&fd).map_err(|e| Error::io(format!("inspecting {}", path.display()), e))?;
        if file_type(&st) != SFlag::S_IFDIR {
            return Err(Error::NotADirectory {
                path: path.display(),
            });
        }
        let dir = reopen(fd.as_fd(), OFlag::O_RDONLY | OFlag::O_DIRECTORY)
            .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
        Ok(ExtractDir {
            dir,
            path: self.follow_in_scope(&path.comps)?,
        })
    }

    /// The layer of `docker commit`: every change as a tar entry (deleted
    /// paths as `.wh.` whiteouts), sorted by path, as dockerd's
    /// `archive.ExportChanges`. Returns the number of entries written.
    pub fn write_changes<W: Write>(&self, changes: &[Change], out: W) -> Result<u64> {
        let mut sorted: Vec<&Change> = changes.iter().collect();
        sorted.sort_by(|a, b| a.path.as_bytes().cmp(b.path.as_bytes()));
        let mut writer = TarWriter::new(out);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        for change in sorted {
            let comps: Vec<&[u8]> = change
                .path
                .as_bytes()
                .split(|b| *b == b'/')
                .filter(|c| !c.is_empty())
                .collect();
            let Some((name, parents)) = comps.split_last() else {
                continue;
            };
            let parent_rel: PathBuf = parents.iter().map(|c| OsStr::from_bytes(c)).collect();
            let prefix = parent_rel.as_os_str().as_bytes().to_vec();
            if change.kind == ChangeKind::Deleted {
                let mut wh = prefix.clone();
                if !wh.is_empty() {
                    wh.push(b'/');
                }
                wh.extend_from_slice(WHITEOUT_PREFIX.as_bytes());
                wh.extend_from_slice(name);
                writer.whiteout(&wh, now)?;
                continue;
            }
            // A path the container removed or changed since the diff was
            // taken is left out, as dockerd does.
            let parent = match open_dir_beneath(self.root.as_fd(), &parent_rel) {
                Ok(fd) => fd,
                Err(Errno::ENOENT | Errno::ENOTDIR | Errno::ELOOP | Errno::EXDEV) => continue,
                Err(e) => {
                    return Err(Error::io(
                        format!("opening the parent of {}", change.path),
                        e,
                    ))
                }
            };
            let fd = match open_child_path(parent.as_fd(), OsStr::from_bytes(name)) {
                Ok(Some(fd)) => fd,
                Ok(None) => continue,
                Err(e) => return Err(Error::io(format!("opening {}", change.path), e)),
            };
            let stat =
                fstat(&fd).map_err(|e| Error::io(format!("inspecting {}", change.path), e))?;
            let mut tar_name = prefix;
            if !tar_name.is_empty() {
                tar_name.push(b'/');
            }
            tar_name.extend_from_slice(name);
            writer.entry(&tar_name, fd.as_fd(), &stat)?;
        }
        writer.finish()
    }
}

fn display_comps<C: AsRef<[u8]>>(comps: &[C]) -> String {
    let mut s = String::new();
    for c in comps {
        s.push('/');
        s.push_str(&String::from_utf8_lossy(c.as_ref()));
    }
    if s.is_empty() {
        s.push('/');
    }
    s
}

/// A resolved path waiting to be written as a tar stream.
pub struct PathArchive {
    located: Located,
    /// First element of every entry name (empty: names start with `/`).
    rebase: Vec<u8>,
    /// Whether the resolved entry itself is in the archive.
    top: bool,
}

/// One directory being walked: its entries, sorted, and the next to take.
struct Frame {
    dir: OwnedFd,
    prefix: Vec<u8>,
    names: Vec<OsString>,
    next: usize,
}

fn sorted_names(dir: BorrowedFd<'_>) -> nix::Result<Vec<OsString>> {
    let mut names = list_dir(dir)?;
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    Ok(names)
}

impl PathArchive {
    /// Writes the archive: the entry and, for a directory, everything below
    /// it in name order, without following symlinks or entering mounts.
    /// Entries that disappear while being read are left out.
    pub fn write_to<W: Write>(self, out: W) -> Result<()> {
        let mut writer = TarWriter::new(out);
        let Located { fd, stat } = self.located;
        if self.top {
            writer.entry(&self.rebase, fd.as_fd(), &stat)?;
        }
        if file_type(&stat) != SFlag::S_IFDIR {
            writer.finish()?;
            return Ok(());
        }
        let dir = reopen(fd.as_fd(), OFlag::O_RDONLY | OFlag::O_DIRECTORY)
            .map_err(|e| Error::io("opening a directory to archive".into(), e))?;
        let names =
            sorted_names(dir.as_fd()).map_err(|e| Error::io("listing a directory".into(), e))?;
        let mut stack = vec![Frame {
            dir,
            prefix: self.rebase,
            names,
            next: 0,
        }];
        // The root of `export` has no name: its children's names start
        // without a slash.
        let relative = !self.top;
        while let Some(top) = stack.last_mut() {
            let Some(name) = top.names.get(top.next).cloned() else {
                stack.pop();
                continue;
            };
            top.next += 1;
            let mut entry_name = top.prefix.clone();
            if !(relative && top.prefix.is_empty()) {
                entry_name.push(b'/');
            }
            entry_name.extend_from_slice(name.as_bytes());
            let parent = top.dir.as_fd();
            let Some(child) = open_child_path(parent, &name).map_err(|e| {
                Error::io(
                    format!("opening {}", String::from_utf8_lossy(&entry_name)),
                    e,
                )
            })?
            else {
                continue;
            };
            let st = fstat(&child).map_err(|e| Error::io("inspecting an entry".into(), e))?;
            writer.entry(&entry_name, child.as_fd(), &st)?;
            if file_type(&st) == SFlag::S_IFDIR {
                let dir = match reopen(child.as_fd(), OFlag::O_RDONLY | OFlag::O_DIRECTORY) {
                    Ok(d) => d,
                    Err(Errno::ENOENT) => continue,
                    Err(e) => return Err(Error::io("opening a directory to archive".into(), e)),
                };
                let names = sorted_names(dir.as_fd())
                    .map_err(|e| Error::io("listing a directory".into(), e))?;
                stack.push(Frame {
                    dir,
                    prefix: entry_name,
                    names,
                    next: 0,
                });
            }
        }
        writer.finish()?;
        Ok(())
    }
}

/// The directory a `PUT` extracts into (see [`crate::extract`]).
#[derive(Debug)]
pub struct ExtractDir {
    pub(crate) dir: OwnedFd,
    /// Its path in the container, symlinks resolved.
    pub path: String,
}

/// Writes tar entries from open handles, as Go's `archive/tar` in PAX
/// format: long names and link targets in PAX records, times in seconds,
/// hard links to the first name of an inode.
struct TarWriter<W: Write> {
    builder: tar::Builder<W>,
    links: HashMap<(u64, u64), Vec<u8>>,
    entries: u64,
}

/// Reads exactly `left` bytes: the file's, then zeros if it shrank while
/// being read (a running container may be writing it).
struct ExactReader<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for ExactReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let mut n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            buf[..want].fill(0);
            n = want;
        }
        self.left -= n as u64;
        Ok(n)
    }
}

fn set_raw_name(field: &mut [u8; TAR_NAME_MAX], name: &[u8]) {
    field.fill(0);
    let n = name.len().min(TAR_NAME_MAX);
    field[..n].copy_from_slice(&name[..n]);
}

impl<W: Write> TarWriter<W> {
    fn new(out: W) -> TarWriter<W> {
        TarWriter {
            builder: tar::Builder::new(out),
            links: HashMap::new(),
            entries: 0,
        }
    }

    fn finish(mut self) -> Result<u64> {
        self.builder
            .finish()
            .map_err(|e| Error::io("finishing the archive".into(), e))?;
        Ok(self.entries)
    }

    fn append(
        &mut self,
        mut header: Header,
        name: &[u8],
        link: Option<&[u8]>,
        xattrs: &[(String, Vec<u8>)],
        data: &mut dyn Read,
    ) -> Result<()> {
        let display = String::from_utf8_lossy(name).into_owned();
        let err = |e: io::Error| Error::io(format!("writing {display} to the archive"), e);
        let mut pax: Vec<(&str, &[u8])> = Vec::new();
        if name.len() > TAR_NAME_MAX {
            pax.push(("path", name));
        }
        if let Some(l) = link.filter(|l| l.len() > TAR_NAME_MAX) {
            pax.push(("linkpath", l));
        }
        let keys: Vec<String> = xattrs
            .iter()
            .map(|(k, _)| format!("SCHILY.xattr.{k}"))
            .collect();
        for (k, (_, v)) in keys.iter().zip(xattrs) {
            pax.push((k.as_str(), v.as_slice()));
        }
        if !pax.is_empty() {
            self.builder.append_pax_extensions(pax).map_err(err)?;
        }
        set_raw_name(&mut header.as_old_mut().name, name);
        if let Some(l) = link {
            set_raw_name(&mut header.as_old_mut().linkname, l);
        }
        header.set_cksum();
        self.builder.append(&header, data).map_err(err)?;
        self.entries += 1;
        Ok(())
    }

    fn whiteout(&mut self, name: &[u8], mtime: u64) -> Result<()> {
        let mut h = Header::new_ustar();
        h.set_entry_type(EntryType::Regular);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_size(0);
        h.set_mtime(mtime);
        self.append(h, name, None, &[], &mut io::empty())
    }

    /// One entry for the file `fd` (an `O_PATH` handle) with stat `st`.
    fn entry(&mut self, name: &[u8], fd: BorrowedFd<'_>, st: &FileStat) -> Result<()> {
        let kind = file_type(st);
        let mut name = name.to_vec();
        if kind == SFlag::S_IFDIR && name.last() != Some(&b'/') {
            name.push(b'/');
        }
        let display = String::from_utf8_lossy(&name).into_owned();
        let mut h = Header::new_ustar();
        h.set_mode(st.st_mode & 0o7777);
        h.set_uid(u64::from(st.st_uid));
        h.set_gid(u64::from(st.st_gid));
        h.set_mtime(st.st_mtime.max(0) as u64);
        h.set_size(0);
        if kind != SFlag::S_IFDIR && st.st_nlink > 1 {
            let key = (st.st_dev, st.st_ino);
            if let Some(first) = self.links.get(&key).cloned() {
                h.set_entry_type(EntryType::Link);
                return self.append(h, &name, Some(&first), &[], &mut io::empty());
            }
            self.links.insert(key, name.clone());
        }
        match kind {
            SFlag::S_IFDIR => {
                h.set_entry_type(EntryType::Directory);
                self.append(h, &name, None, &[], &mut io::empty())
            }
            SFlag::S_IFREG => {
                let file = match reopen(fd, OFlag::O_RDONLY | OFlag::O_NONBLOCK) {
                    Ok(f) => File::from(f),
                    Err(Errno::ENOENT) => return Ok(()),
                    Err(e) => return Err(Error::io(format!("opening {display}"), e)),
                };
                let size = st.st_size.max(0) as u64;
                h.set_entry_type(EntryType::Regular);
                h.set_size(size);
                let xattrs = match xattr::FileExt::get_xattr(&file, CAPABILITY_XATTR) {
                    Ok(Some(v)) => vec![(CAPABILITY_XATTR.to_string(), v)],
                    _ => Vec::new(),
                };
                let mut data = ExactReader {
                    inner: file,
                    left: size,
                };
                self.append(h, &name, None, &xattrs, &mut data)
            }
            SFlag::S_IFLNK => {
                let target = match readlinkat(fd, "") {
                    Ok(t) => t,
                    Err(Errno::ENOENT) => return Ok(()),
                    Err(e) => return Err(Error::io(format!("reading link {display}"), e)),
                };
                h.set_entry_type(EntryType::Symlink);
                self.append(h, &name, Some(target.as_bytes()), &[], &mut io::empty())
            }
            SFlag::S_IFCHR | SFlag::S_IFBLK | SFlag::S_IFIFO => {
                h.set_entry_type(match kind {
                    SFlag::S_IFCHR => EntryType::Char,
                    SFlag::S_IFBLK => EntryType::Block,
                    _ => EntryType::Fifo,
                });
                if kind != SFlag::S_IFIFO {
                    let err = |e| Error::io(format!("writing {display} to the archive"), e);
                    h.set_device_major(nix::sys::stat::major(st.st_rdev) as u32)
                        .map_err(err)?;
                    h.set_device_minor(nix::sys::stat::minor(st.st_rdev) as u32)
                        .map_err(err)?;
                }
                self.append(h, &name, None, &[], &mut io::empty())
            }
            // Sockets have no tar form; dockerd skips them too.
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn user_paths_are_cleaned_as_dockerd_does() {
        let p = UserPath::parse("/tmp/d/");
        assert_eq!(
            (p.display(), p.base_name(), p.dot, p.slash),
            ("/tmp/d".into(), "d".into(), false, true)
        );
        let p = UserPath::parse("/tmp/d/.");
        assert_eq!(
            (p.base_name(), p.dot, p.names_an_entry()),
            (".".into(), true, false)
        );
        let p = UserPath::parse("tmp//../etc/./passwd");
        assert_eq!(
            (p.display(), p.base_name(), p.names_an_entry()),
            ("/etc/passwd".into(), "passwd".into(), true)
        );
        let p = UserPath::parse("/");
        assert_eq!(
            (p.display(), p.base_name(), p.names_an_entry()),
            ("/".into(), "/".into(), false)
        );
        let p = UserPath::parse("../../..");
        assert_eq!((p.display(), p.base_name()), ("/".into(), "/".into()));
        assert!(UserPath::parse(".").dot);
        assert!(UserPath::parse("x/./").dot);
    }

    fn tar_names(bytes: &[u8]) -> Vec<String> {
        let mut archive = tar::Archive::new(bytes);
        archive
            .entries()
            .expect("entries")
            .map(|e| {
                let e = e.expect("entry");
                String::from_utf8_lossy(&e.path_bytes()).into_owned()
            })
            .collect()
    }

    #[test]
    fn symlinks_resolve_inside_the_root_only() {
        let host = tempfile::tempdir().expect("tmp");
        std::fs::write(host.path().join("secret"), "host").expect("write");
        let root = tempfile::tempdir().expect("tmp");
        std::fs::create_dir(root.path().join("etc")).expect("mkdir");
        std::fs::write(root.path().join("etc/passwd"), "container").expect("write");
        symlink(host.path().join("secret"), root.path().join("abs")).expect("link");
        symlink("../../../../etc/passwd", root.path().join("up")).expect("link");
        symlink(host.path(), root.path().join("hostdir")).expect("link");
        let r = ContainerRoot::open(root.path()).expect("open");

        let st = r.stat("/up").expect("stat");
        assert_eq!(st.link_target, "/etc/passwd");
        let st = r.stat("/abs").expect("stat");
        assert_eq!(st.link_target, host.path().join("secret").to_string_lossy());
        // Through the link: the container's path, which does not exist.
        assert!(matches!(r.stat("/abs/"), Err(Error::PathNotFound { .. })));
        assert!(matches!(
            r.stat("/hostdir/secret"),
            Err(Error::PathNotFound { .. })
        ));
        assert!(matches!(
            r.archive("/hostdir/secret"),
            Err(Error::PathNotFound { .. })
        ));
        // The link itself is archived, not what it points to.
        let (_, a) = r.archive("/up").expect("archive");
        let mut out = Vec::new();
        a.write_to(&mut out).expect("write");
        assert_eq!(tar_names(&out), ["up"]);
        assert!(matches!(
            r.extract_dir("/hostdir"),
            Err(Error::PathNotFound { .. })
        ));
    }

    #[test]
    fn archives_are_rebased_like_dockerds() {
        let root = tempfile::tempdir().expect("tmp");
        std::fs::create_dir_all(root.path().join("tmp/d/sub")).expect("mkdir");
        std::fs::write(root.path().join("tmp/d/f"), "x").expect("write");
        symlink("/tmp/d", root.path().join("dlnk")).expect("link");
        let r = ContainerRoot::open(root.path()).expect("open");
        let names = |p: &str| {
            let (_, a) = r.archive(p).expect("archive");
            let mut out = Vec::new();
            a.write_to(&mut out).expect("write");
            tar_names(&out)
        };
        assert_eq!(names("/tmp/d"), ["d/", "d/f", "d/sub/"]);
        assert_eq!(names("/tmp/d/"), ["d/", "d/f", "d/sub/"]);
        assert_eq!(names("/tmp/d/."), ["./", "./f", "./sub/"]);
        assert_eq!(names("/dlnk"), ["dlnk"]);
        assert_eq!(names("/dlnk/"), ["dlnk/", "dlnk/f", "dlnk/sub/"]);
        let (st, _) = r.archive("/dlnk/").expect("archive");
        assert!(st.is_dir());
        assert_eq!(st.name, "dlnk");
        let mut out = Vec::new();
        r.export(&mut out).expect("export");
        assert_eq!(
            tar_names(&out),
            ["dlnk", "tmp/", "tmp/d/", "tmp/d/f", "tmp/d/sub/"]
        );
    }

    #[test]
    fn changes_become_a_layer_that_unpacks() {
        let root = tempfile::tempdir().expect("tmp");
        std::fs::create_dir(root.path().join("dir")).expect("mkdir");
        std::fs::write(root.path().join("dir/new"), "n").expect("write");
        std::fs::hard_link(root.path().join("dir/new"), root.path().join("twin")).expect("link");
        let change = |path: &str, kind| Change {
            path: path.to_string(),
            kind,
        };
        let changes = [
            change("/twin", ChangeKind::Added),
            change("/dir/new", ChangeKind::Added),
            change("/dir", ChangeKind::Modified),
            change("/gone", ChangeKind::Deleted),
            change("/vanished", ChangeKind::Added),
        ];
        let r = ContainerRoot::open(root.path()).expect("open");
        let mut out = Vec::new();
        assert_eq!(r.write_changes(&changes, &mut out).expect("write"), 4);
        assert_eq!(tar_names(&out), ["dir/", "dir/new", ".wh.gone", "twin"]);
        let lower = tempfile::tempdir().expect("tmp");
        std::fs::write(lower.path().join("gone"), "g").expect("write");
        let opts = crate::UnpackOptions {
            whiteouts: crate::WhiteoutForm::Apply,
        };
        crate::unpack_layer(&out[..], lower.path(), &opts).expect("unpack");
        assert!(!lower.path().join("gone").exists());
        assert_eq!(
            std::fs::read_to_string(lower.path().join("twin")).expect("read"),
            "n"
        );
    }

    #[test]
    fn long_names_survive() {
        let root = tempfile::tempdir().expect("tmp");
        let long = "n".repeat(150);
        std::fs::create_dir(root.path().join(&long)).expect("mkdir");
        std::fs::write(root.path().join(&long).join("f"), "x").expect("write");
        symlink("t".repeat(120), root.path().join(&long).join("l")).expect("link");
        let r = ContainerRoot::open(root.path()).expect("open");
        let (_, a) = r.archive(&format!("/{long}")).expect("archive");
        let mut out = Vec::new();
        a.write_to(&mut out).expect("write");
        let mut archive = tar::Archive::new(&out[..]);
        let entries: Vec<(String, Option<String>)> = archive
            .entries()
            .expect("entries")
            .map(|e| {
                let e = e.expect("entry");
                (
                    String::from_utf8_lossy(&e.path_bytes()).into_owned(),
                    e.link_name_bytes()
                        .map(|l| String::from_utf8_lossy(&l).into_owned()),
                )
            })
            .collect();
        assert_eq!(entries[0].0, format!("{long}/"));
        assert_eq!(entries[1].0, format!("{long}/f"));
        assert_eq!(entries[2], (format!("{long}/l"), Some("t".repeat(120))));
    }
}
