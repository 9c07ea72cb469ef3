//! `docker cp` into a container: a tar stream extracted into a directory of
//! its root. The stream is spooled and checked whole first (a tar, not
//! truncated, every name relative and without `..`, nothing written through
//! a symlink or over an entry of the other kind when that is refused), so
//! bad input changes nothing; then it is written entry by entry through fds
//! below the directory, never following a symlink. Unlike a layer, `.wh.`
//! names are ordinary files here, as in dockerd's `archive.Untar`.

use std::cell::Cell;
use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use nix::errno::Errno;
use nix::fcntl::{openat, AtFlags, OFlag};
use nix::sys::stat::{fstatat, futimens, makedev, mkdirat, mknodat, Mode, SFlag};
use nix::sys::time::TimeSpec;
use nix::unistd::{linkat, symlinkat};
use tar::EntryType;

use crate::archive::ExtractDir;
use crate::compress::decompress;
use crate::error::{Error, Result};
use crate::inroot::{
    clean_components, file_type, join, open_dir_beneath, walk_dirs, NameError, WalkError,
};
use crate::unpack::{read_meta, replace_slot, set_child_meta, set_fd_meta, Meta};

/// How [`ExtractDir::extract`] writes.
#[derive(Debug, Clone, Copy, Default)]
pub struct ExtractOptions {
    /// Refuse to replace a directory with a non-directory or the reverse
    /// (`noOverwriteDirNonDir`, which the docker CLI always sets).
    pub no_overwrite_dir_non_dir: bool,
    /// Owner of everything written (`copyUIDGID`); else the archive's.
    pub owner: Option<(u32, u32)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Dir,
    Symlink,
    Other,
}

fn kind_of(st: &nix::sys::stat::FileStat) -> Kind {
    match file_type(st) {
        SFlag::S_IFDIR => Kind::Dir,
        SFlag::S_IFLNK => Kind::Symlink,
        _ => Kind::Other,
    }
}

/// Notes that reading hit the end of the data: a tar that ends there
/// instead of at its end-of-archive blocks, or fails there, was cut short.
struct EofWatch<'a, R> {
    inner: R,
    eof: &'a Cell<bool>,
}

impl<R: Read> Read for EofWatch<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            self.eof.set(true);
        }
        Ok(n)
    }
}

fn invalid(reason: impl Into<String>) -> Error {
    Error::InvalidArchive {
        reason: reason.into(),
    }
}

fn refuse(entry: &str, reason: impl Into<String>) -> Error {
    Error::ArchiveEntry {
        entry: entry.to_owned(),
        reason: reason.into(),
    }
}

fn name_error(entry: &str, e: NameError) -> Error {
    refuse(
        entry,
        match e {
            NameError::Absolute => "has an absolute name; entries must be relative to the directory they are extracted to",
            NameError::DotDot => "has a `..` component and would leave the directory it is extracted to",
            NameError::Nul => "has a NUL byte in its name",
        },
    )
}

/// Entry kinds that carry metadata for the next entry, not a file.
fn is_meta_entry(kind: EntryType) -> bool {
    matches!(
        kind,
        EntryType::XGlobalHeader
            | EntryType::XHeader
            | EntryType::GNULongName
            | EntryType::GNULongLink
    )
}

fn is_regular(kind: EntryType) -> bool {
    matches!(
        kind,
        EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse
    )
}

/// Old tars mark directories by a trailing slash on a regular entry.
fn is_dir_entry(kind: EntryType, raw: &[u8]) -> bool {
    kind == EntryType::Directory || (kind == EntryType::Regular && raw.ends_with(b"/"))
}

/// Copies the (decompressed) request body into an unnamed file in
/// `spool_dir`.
fn spool<R: Read>(reader: R, spool_dir: &Path) -> Result<(File, u64)> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let path = spool_dir.join(format!(
        "cp-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(OFlag::O_CLOEXEC.bits())
        .open(&path)
        .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
    let _ = std::fs::remove_file(&path);
    let mut stream =
        decompress(reader).map_err(|e| invalid(format!("reading the request body: {e}")))?;
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(invalid(format!("reading the request body: {e}"))),
        };
        file.write_all(&buf[..n])
            .map_err(|e| Error::io("spooling the archive".into(), e))?;
        total += n as u64;
    }
    file.rewind()
        .map_err(|e| Error::io("spooling the archive".into(), e))?;
    Ok((file, total))
}

/// What the archive will find and leave at each path it touches, to
/// check it whole before writing anything.
struct Plan<'a> {
    root: BorrowedFd<'a>,
    dest: &'a str,
    opts: ExtractOptions,
    kinds: HashMap<Vec<u8>, Option<Kind>>,
}

impl Plan<'_> {
    fn key(comps: &[&OsStr]) -> Vec<u8> {
        join(comps).into_os_string().into_encoded_bytes()
    }

    fn container_path(&self, comps: &[&OsStr]) -> String {
        let rel = join(comps);
        let dest = self.dest.trim_end_matches('/');
        format!("{dest}/{}", rel.to_string_lossy())
    }

    /// The kind at `comps` now (as left by earlier entries, or on disk).
    /// Parents must have been checked to be directories.
    fn kind_at(&mut self, comps: &[&OsStr]) -> Result<Option<Kind>> {
        let key = Plan::key(comps);
        if let Some(k) = self.kinds.get(&key) {
            return Ok(*k);
        }
        let (name, parents) = comps.split_last().ok_or_else(|| invalid("an empty name"))?;
        let kind = match open_dir_beneath(self.root, &join(parents)) {
            Ok(parent) => match fstatat(&parent, *name, AtFlags::AT_SYMLINK_NOFOLLOW) {
                Ok(st) => Some(kind_of(&st)),
                Err(Errno::ENOENT) => None,
                Err(e) => {
                    return Err(Error::io(
                        format!("inspecting {}", self.container_path(comps)),
                        e,
                    ))
                }
            },
            Err(Errno::ENOENT) => None,
            Err(e) => {
                return Err(Error::io(
                    format!("inspecting {}", self.container_path(parents)),
                    e,
                ))
            }
        };
        self.kinds.insert(key, kind);
        Ok(kind)
    }

    fn set(&mut self, comps: &[&OsStr], kind: Kind) {
        let key = Plan::key(comps);
        if self.kinds.get(&key) == Some(&Some(Kind::Dir)) && kind != Kind::Dir {
            // Whatever was below the replaced directory goes with it.
            let mut below = key.clone();
            below.push(b'/');
            self.kinds.retain(|k, _| !k.starts_with(&below));
        }
        self.kinds.insert(key, Some(kind));
    }

    /// Checks that every parent is (or will be) a directory, not a symlink.
    fn check_parents(&mut self, comps: &[&OsStr], display: &str) -> Result<()> {
        for i in 0..comps.len().saturating_sub(1) {
            match self.kind_at(&comps[..=i])? {
                Some(Kind::Dir) => {}
                None => self.set(&comps[..=i], Kind::Dir),
                Some(Kind::Symlink) => {
                    return Err(refuse(
                        display,
                        format!(
                            "would be written through the symlink {}; nothing is written through symlinks",
                            self.container_path(&comps[..=i])
                        ),
                    ))
                }
                Some(Kind::Other) => {
                    return Err(refuse(
                        display,
                        format!("needs {} to be a directory, but it is not", self.container_path(&comps[..=i])),
                    ))
                }
            }
        }
        Ok(())
    }

    fn check<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<()> {
        let kind = entry.header().entry_type();
        let raw = entry.path_bytes().into_owned();
        let display = String::from_utf8_lossy(&raw).into_owned();
        let comps = clean_components(&raw).map_err(|e| name_error(&display, e))?;
        // Owner, mode, times and PAX records must parse, so that writing
        // does not stop half way on them.
        read_meta(entry, &display).map_err(|e| invalid(e.to_string()))?;
        let is_dir = is_dir_entry(kind, &raw);
        let new_kind = match kind {
            _ if is_dir => Kind::Dir,
            EntryType::Symlink => Kind::Symlink,
            EntryType::Link | EntryType::Char | EntryType::Block | EntryType::Fifo => Kind::Other,
            k if is_regular(k) => Kind::Other,
            other => {
                return Err(refuse(
                    &display,
                    format!("has the unsupported tar type {other:?}"),
                ))
            }
        };
        if comps.is_empty() {
            if is_dir {
                return Ok(());
            }
            return Err(refuse(
                &display,
                "names the directory it is extracted to but is not a directory",
            ));
        }
        self.check_parents(&comps, &display)?;
        let existing = self.kind_at(&comps)?;
        if self.opts.no_overwrite_dir_non_dir {
            match (existing, new_kind) {
                (Some(Kind::Dir), k) if k != Kind::Dir => {
                    return Err(refuse(
                        &display,
                        format!(
                            "cannot overwrite directory {:?} with non-directory",
                            self.container_path(&comps)
                        ),
                    ))
                }
                (Some(k), Kind::Dir) if k != Kind::Dir => {
                    return Err(refuse(
                        &display,
                        format!(
                            "cannot overwrite non-directory {:?} with directory",
                            self.container_path(&comps)
                        ),
                    ))
                }
                _ => {}
            }
        }
        match kind {
            EntryType::Symlink if entry.link_name_bytes().is_none() => {
                return Err(refuse(&display, "is a symlink without a target"))
            }
            EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| refuse(&display, "is a hard link without a target"))?;
                let outside = || {
                    refuse(
                        &display,
                        "is a hard link to a file outside the directory it is extracted to",
                    )
                };
                let tcomps = clean_components(&target).map_err(|_| outside())?;
                if tcomps.is_empty() {
                    return Err(outside());
                }
                self.check_parents(&tcomps, &display)?;
                match self.kind_at(&tcomps)? {
                    Some(Kind::Dir) => {
                        return Err(refuse(&display, "is a hard link to a directory"))
                    }
                    None if tcomps != comps => {
                        return Err(refuse(
                            &display,
                            "is a hard link to a file that does not exist",
                        ))
                    }
                    _ => {}
                }
            }
            _ => {}
        }
        self.set(&comps, new_kind);
        Ok(())
    }
}

impl ExtractDir {
    /// Extracts the tar (plain, gzip or zstd) `reader` into this directory.
    /// The whole stream is spooled under `spool_dir` and checked before
    /// anything is written. Returns the number of entries written.
    pub fn extract<R: Read>(
        &self,
        reader: R,
        spool_dir: &Path,
        opts: &ExtractOptions,
    ) -> Result<u64> {
        let (mut file, len) = spool(reader, spool_dir)?;
        if len == 0 {
            return Err(invalid("the request body is empty"));
        }
        let mut plan = Plan {
            root: self.dir.as_fd(),
            dest: &self.path,
            opts: *opts,
            kinds: HashMap::new(),
        };
        {
            let eof = Cell::new(false);
            let bad = |e: io::Error| {
                if eof.get() {
                    invalid(format!("it is cut short ({e})"))
                } else {
                    invalid(e.to_string())
                }
            };
            let mut archive = tar::Archive::new(EofWatch {
                inner: BufReader::new(&file),
                eof: &eof,
            });
            let entries = archive.entries().map_err(bad)?;
            for entry in entries {
                let mut entry = entry.map_err(bad)?;
                if is_meta_entry(entry.header().entry_type()) {
                    continue;
                }
                plan.check(&mut entry)?;
                io::copy(&mut entry, &mut io::sink()).map_err(bad)?;
            }
            if eof.get() {
                return Err(invalid(
                    "it is cut short: it ends without the end-of-archive blocks",
                ));
            }
        }
        file.rewind()
            .map_err(|e| Error::io("reading the spooled archive".into(), e))?;
        let mut writer = Writer {
            root: self.dir.as_fd(),
            owner: opts.owner,
            dir_times: Vec::new(),
            entries: 0,
        };
        let mut archive = tar::Archive::new(BufReader::new(&file));
        let entries = archive.entries().map_err(|e| invalid(e.to_string()))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| invalid(e.to_string()))?;
            if is_meta_entry(entry.header().entry_type()) {
                continue;
            }
            writer.apply(&mut entry)?;
        }
        writer.set_dir_times()?;
        Ok(writer.entries)
    }
}

struct Writer<'a> {
    root: BorrowedFd<'a>,
    owner: Option<(u32, u32)>,
    dir_times: Vec<(Vec<std::ffi::OsString>, TimeSpec)>,
    entries: u64,
}

impl Writer<'_> {
    fn parent(&self, comps: &[&OsStr], display: &str) -> Result<OwnedFd> {
        match walk_dirs(self.root, comps, true) {
            Ok(Some(fd)) => Ok(fd),
            Ok(None) => Err(refuse(display, "its parent directory could not be created")),
            Err(WalkError::Symlink(i)) => Err(refuse(
                display,
                format!(
                    "would be written through the symlink {}",
                    join(&comps[..=i]).display()
                ),
            )),
            Err(WalkError::NotDir(i)) => Err(refuse(
                display,
                format!(
                    "needs {} to be a directory, but it is not",
                    join(&comps[..=i]).display()
                ),
            )),
            Err(WalkError::Sys(e)) => Err(Error::io(
                format!("opening the parent directory of {display}"),
                e,
            )),
        }
    }

    fn apply<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<()> {
        let kind = entry.header().entry_type();
        let raw = entry.path_bytes().into_owned();
        let display = String::from_utf8_lossy(&raw).into_owned();
        let comps = clean_components(&raw).map_err(|e| name_error(&display, e))?;
        let Some((name, parent_comps)) = comps.split_last() else {
            // The directory itself: kept as it is, as dockerd does.
            return Ok(());
        };
        let mut meta: Meta = read_meta(entry, &display)?;
        if let Some((uid, gid)) = self.owner {
            meta.uid = uid;
            meta.gid = gid;
        }
        let parent = self.parent(parent_comps, &display)?;
        let parent = parent.as_fd();
        let ctx = |what: &str| format!("{what} {display}");
        self.entries += 1;
        match kind {
            _ if is_dir_entry(kind, &raw) => {
                match fstatat(parent, *name, AtFlags::AT_SYMLINK_NOFOLLOW) {
                    Ok(st) if file_type(&st) == SFlag::S_IFDIR => {}
                    Ok(_) => {
                        replace_slot(parent, name, &display)?;
                        mkdirat(parent, *name, Mode::from_bits_truncate(0o700))
                            .map_err(|e| Error::io(ctx("creating directory"), e))?;
                    }
                    Err(Errno::ENOENT) => mkdirat(parent, *name, Mode::from_bits_truncate(0o700))
                        .map_err(|e| Error::io(ctx("creating directory"), e))?,
                    Err(e) => return Err(Error::io(ctx("inspecting"), e)),
                }
                let dir = openat(
                    parent,
                    *name,
                    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| Error::io(ctx("opening directory"), e))?;
                set_fd_meta(dir.as_fd(), &meta, &display)?;
                self.dir_times
                    .push((comps.iter().map(|c| c.to_os_string()).collect(), meta.mtime));
            }
            k if is_regular(k) => {
                replace_slot(parent, name, &display)?;
                let fd = openat(
                    parent,
                    *name,
                    OFlag::O_WRONLY
                        | OFlag::O_CREAT
                        | OFlag::O_EXCL
                        | OFlag::O_NOFOLLOW
                        | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(0o600),
                )
                .map_err(|e| Error::io(ctx("creating"), e))?;
                let mut file = File::from(fd);
                io::copy(entry, &mut file).map_err(|e| Error::io(ctx("writing"), e))?;
                set_fd_meta(file.as_fd(), &meta, &display)?;
                futimens(&file, &meta.mtime, &meta.mtime)
                    .map_err(|e| Error::io(ctx("setting times of"), e))?;
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| refuse(&display, "is a symlink without a target"))?;
                replace_slot(parent, name, &display)?;
                symlinkat(OsStr::from_bytes(&target), parent, *name)
                    .map_err(|e| Error::io(ctx("creating symlink"), e))?;
                set_child_meta(parent, name, &meta, &display, false)?;
            }
            EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| refuse(&display, "is a hard link without a target"))?;
                let tcomps = clean_components(&target).map_err(|e| name_error(&display, e))?;
                let Some((tname, tparents)) = tcomps.split_last() else {
                    return Err(refuse(
                        &display,
                        "is a hard link to the directory it is extracted to",
                    ));
                };
                if tcomps == comps {
                    return Ok(());
                }
                let tparent = self.parent(tparents, &display)?;
                replace_slot(parent, name, &display)?;
                linkat(tparent.as_fd(), *tname, parent, *name, AtFlags::empty())
                    .map_err(|e| Error::io(ctx("creating hard link"), e))?;
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let (sflag, dev) = match kind {
                    EntryType::Fifo => (SFlag::S_IFIFO, 0),
                    _ => {
                        let major = entry.header().device_major().ok().flatten().unwrap_or(0);
                        let minor = entry.header().device_minor().ok().flatten().unwrap_or(0);
                        let sflag = if kind == EntryType::Char {
                            SFlag::S_IFCHR
                        } else {
                            SFlag::S_IFBLK
                        };
                        (sflag, makedev(major.into(), minor.into()))
                    }
                };
                replace_slot(parent, name, &display)?;
                mknodat(parent, *name, sflag, Mode::empty(), dev)
                    .map_err(|e| Error::io(ctx("creating device node"), e))?;
                set_child_meta(parent, name, &meta, &display, true)?;
            }
            other => {
                return Err(refuse(
                    &display,
                    format!("has the unsupported tar type {other:?}"),
                ))
            }
        }
        Ok(())
    }

    /// Directory times last: writing their content changed them.
    fn set_dir_times(&self) -> Result<()> {
        for (comps, mtime) in self.dir_times.iter().rev() {
            let comps: Vec<&OsStr> = comps.iter().map(|c| c.as_os_str()).collect();
            let Ok(Some(dir)) = walk_dirs(self.root, &comps, false) else {
                continue;
            };
            futimens(&dir, mtime, mtime).map_err(|e| {
                Error::io(
                    format!("setting times of directory {}", join(&comps).display()),
                    e,
                )
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::ContainerRoot;
    use std::os::unix::fs::{symlink, MetadataExt};

    fn tar_of(entries: &[(&str, EntryType, &[u8], Option<&str>)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, kind, data, link) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_mode(if *kind == EntryType::Directory {
                0o755
            } else {
                0o644
            });
            h.set_size(data.len() as u64);
            h.set_mtime(1_000_000_000);
            h.set_uid(1234);
            h.set_gid(4321);
            {
                let raw = &mut h.as_old_mut().name;
                raw[..name.len()].copy_from_slice(name.as_bytes());
            }
            if let Some(l) = link {
                let raw = &mut h.as_old_mut().linkname;
                raw[..l.len()].copy_from_slice(l.as_bytes());
            }
            h.set_cksum();
            b.append(&h, *data).expect("append");
        }
        b.into_inner().expect("tar")
    }

    struct Fixture {
        host: tempfile::TempDir,
        root: tempfile::TempDir,
        spool: tempfile::TempDir,
    }

    fn fixture() -> Fixture {
        let f = Fixture {
            host: tempfile::tempdir().expect("tmp"),
            root: tempfile::tempdir().expect("tmp"),
            spool: tempfile::tempdir().expect("tmp"),
        };
        std::fs::create_dir(f.root.path().join("tmp")).expect("mkdir");
        symlink(f.host.path(), f.root.path().join("tmp/hostdir")).expect("link");
        f
    }

    fn put(f: &Fixture, dir: &str, tar: &[u8], opts: ExtractOptions) -> Result<u64> {
        let r = ContainerRoot::open(f.root.path()).expect("open");
        r.extract_dir(dir)?.extract(tar, f.spool.path(), &opts)
    }

    fn listing(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .expect("read_dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn extracts_files_dirs_links_with_owner_and_times() {
        let f = fixture();
        let tar = tar_of(&[
            ("./", EntryType::Directory, b"", None),
            ("d/", EntryType::Directory, b"", None),
            ("d/f", EntryType::Regular, b"hello", None),
            ("d/.wh.x", EntryType::Regular, b"", None),
            ("d/l", EntryType::Symlink, b"", Some("/etc/shadow")),
            ("d/h", EntryType::Link, b"", Some("d/f")),
        ]);
        assert_eq!(
            put(&f, "/tmp", &tar, ExtractOptions::default()).expect("extract"),
            5
        );
        let d = f.root.path().join("tmp/d");
        assert_eq!(std::fs::read_to_string(d.join("f")).expect("read"), "hello");
        assert!(d.join(".wh.x").is_file());
        assert_eq!(
            std::fs::read_link(d.join("l"))
                .expect("link")
                .to_string_lossy(),
            "/etc/shadow"
        );
        let md = std::fs::metadata(d.join("f")).expect("md");
        assert_eq!(
            (md.uid(), md.gid(), md.mtime(), md.nlink()),
            (1234, 4321, 1_000_000_000, 2)
        );
        assert_eq!(std::fs::metadata(&d).expect("md").mtime(), 1_000_000_000);

        let opts = ExtractOptions {
            owner: Some((7, 8)),
            ..Default::default()
        };
        put(
            &f,
            "/tmp/d",
            &tar_of(&[("g", EntryType::Regular, b"x", None)]),
            opts,
        )
        .expect("extract");
        let md = std::fs::metadata(d.join("g")).expect("md");
        assert_eq!((md.uid(), md.gid()), (7, 8));
    }

    #[test]
    fn nothing_leaves_the_directory() {
        let f = fixture();
        let bad: Vec<Vec<u8>> = vec![
            tar_of(&[("/abs", EntryType::Regular, b"x", None)]),
            tar_of(&[("a/../../x", EntryType::Regular, b"x", None)]),
            tar_of(&[("hostdir/x", EntryType::Regular, b"x", None)]),
            tar_of(&[
                ("l", EntryType::Symlink, b"", Some("/")),
                ("l/x", EntryType::Regular, b"x", None),
            ]),
            tar_of(&[("h", EntryType::Link, b"", Some("../../etc/passwd"))]),
            tar_of(&[("h", EntryType::Link, b"", Some("hostdir/f"))]),
            b"not a tar at all".to_vec(),
            Vec::new(),
        ];
        for tar in bad {
            let e = put(&f, "/tmp", &tar, ExtractOptions::default());
            assert!(
                e.is_err(),
                "accepted {:?}",
                String::from_utf8_lossy(&tar[..tar.len().min(40)])
            );
        }
        // Through a symlinked destination: resolved inside the root, where
        // the host's directory does not exist.
        let e = put(
            &f,
            "/tmp/hostdir",
            &tar_of(&[("x", EntryType::Regular, b"x", None)]),
            ExtractOptions::default(),
        );
        assert!(matches!(e, Err(Error::PathNotFound { .. })), "{e:?}");
        assert!(listing(f.host.path()).is_empty());
        assert_eq!(listing(&f.root.path().join("tmp")), ["hostdir"]);
    }

    #[test]
    fn bad_archives_change_nothing() {
        let f = fixture();
        let good = tar_of(&[
            ("a/", EntryType::Directory, b"", None),
            ("a/x", EntryType::Regular, &[7u8; 3000], None),
            ("b", EntryType::Regular, b"b", None),
        ]);
        // Cut inside the data of a/x, then at a block boundary after it.
        for cut in [1100, 512 * 8] {
            let e = put(&f, "/tmp", &good[..cut], ExtractOptions::default());
            assert!(
                matches!(e, Err(Error::InvalidArchive { .. })),
                "cut {cut}: {e:?}"
            );
        }
        // A refused entry at the end.
        let mut late = good[..good.len() - 1024].to_vec();
        late.extend(tar_of(&[("/etc/x", EntryType::Regular, b"x", None)]));
        assert!(put(&f, "/tmp", &late, ExtractOptions::default()).is_err());
        assert_eq!(listing(&f.root.path().join("tmp")), ["hostdir"]);

        put(&f, "/tmp", &good, ExtractOptions::default()).expect("extract");
        let strict = ExtractOptions {
            no_overwrite_dir_non_dir: true,
            ..Default::default()
        };
        let e = put(
            &f,
            "/tmp",
            &tar_of(&[("a", EntryType::Regular, b"x", None)]),
            strict,
        );
        assert!(
            e.as_ref()
                .is_err_and(|e| e.to_string().contains("cannot overwrite directory")),
            "{e:?}"
        );
        let e = put(
            &f,
            "/tmp",
            &tar_of(&[("b/", EntryType::Directory, b"", None)]),
            strict,
        );
        assert!(
            e.as_ref()
                .is_err_and(|e| e.to_string().contains("cannot overwrite non-directory")),
            "{e:?}"
        );
        assert!(f.root.path().join("tmp/a/x").is_file());
        // Without the flag a directory is replaced, as dockerd does.
        put(
            &f,
            "/tmp",
            &tar_of(&[("a", EntryType::Regular, b"x", None)]),
            ExtractOptions::default(),
        )
        .expect("replace");
        assert!(f.root.path().join("tmp/a").is_file());
    }

    #[test]
    fn destination_must_be_a_directory() {
        let f = fixture();
        std::fs::write(f.root.path().join("tmp/file"), "x").expect("write");
        let r = ContainerRoot::open(f.root.path()).expect("open");
        assert!(matches!(
            r.extract_dir("/tmp/file"),
            Err(Error::NotADirectory { .. })
        ));
        assert!(matches!(
            r.extract_dir("/nope"),
            Err(Error::PathNotFound { .. })
        ));
        assert_eq!(r.extract_dir("/tmp/").expect("dir").path, "/tmp");
    }
}
