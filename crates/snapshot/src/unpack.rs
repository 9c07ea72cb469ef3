//! Applies one uncompressed layer tar onto a directory. Every entry is
//! placed through `inroot`, so a hostile layer cannot write outside the
//! directory; the tar stream is hashed while read to give the diff_id.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{openat, AtFlags, OFlag};
use nix::sys::stat::{
    fchmod, fchmodat, futimens, makedev, mkdirat, mknodat, utimensat, FchmodatFlags, Mode, SFlag,
    UtimensatFlags,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchown, fchownat, linkat, symlinkat, Gid, Uid};
use sha2::{Digest, Sha256};
use tar::EntryType;
use xattr::FileExt;

use crate::error::{Error, Result};
use crate::inroot::{
    clean_components, fd_child_path, file_type, join, list_dir, lstat_at, open_dir, remove_all_at,
    walk_dirs, NameError, WalkError,
};

/// Prefix of a whiteout entry: `.wh.<name>` deletes `<name>` from lower layers.
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// Entry marking its directory opaque: lower layers' content of it is hidden.
pub const OPAQUE_WHITEOUT: &str = ".wh..wh..opq";
/// Prefix of the metadata names some tools put in layers (`.wh..wh.plnk`, …).
const WHITEOUT_META_PREFIX: &str = ".wh..wh.";
/// The xattr overlayfs reads to tell an opaque directory.
pub const OVERLAY_OPAQUE_XATTR: &str = "trusted.overlay.opaque";
/// overlayfs keeps its own state in these; a layer must not smuggle them in.
pub(crate) const OVERLAY_XATTR_PREFIX: &str = "trusted.overlay.";
const PAX_XATTR_PREFIX: &str = "SCHILY.xattr.";

/// How whiteouts in the layer are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhiteoutForm {
    /// Into an empty overlay upper/diff directory: `.wh.<name>` becomes a
    /// char 0/0 device `<name>`, an opaque marker the xattr
    /// `trusted.overlay.opaque=y` on its directory.
    Overlay,
    /// Onto a directory holding the layers below (vfs): `.wh.<name>` deletes
    /// `<name>`, an opaque marker empties its directory except for what
    /// this same layer put there.
    Apply,
}

/// Options for [`unpack_layer`].
#[derive(Debug, Clone, Copy)]
pub struct UnpackOptions {
    pub whiteouts: WhiteoutForm,
}

/// What [`unpack_layer`] read and wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnpackStats {
    /// `sha256:<hex>` of the uncompressed tar stream, as read to its end.
    pub diff_id: String,
    /// Length of the uncompressed tar stream.
    pub tar_bytes: u64,
    /// Number of archive entries (whiteouts included).
    pub entries: u64,
    /// Bytes of regular file content written.
    pub file_bytes: u64,
}

/// Counts and hashes everything read through it.
struct DigestReader<R> {
    inner: R,
    hasher: Sha256,
    bytes: u64,
}

impl<R: Read> Read for DigestReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

/// Applies the uncompressed layer tar `reader` onto `dest` (which must
/// exist). Entries are refused, and unpacking stops, when their name is
/// absolute or has `..`, when a parent is a symlink, or when a hard link
/// points outside `dest`. The stream is read to its end so that the
/// returned diff_id covers all of it.
pub fn unpack_layer<R: Read>(reader: R, dest: &Path, opts: &UnpackOptions) -> Result<UnpackStats> {
    let root = open_dir(dest).map_err(|e| {
        Error::io(
            format!("opening the unpack directory {}", dest.display()),
            e,
        )
    })?;
    let mut hashing = DigestReader {
        inner: reader,
        hasher: Sha256::new(),
        bytes: 0,
    };
    let mut unpacker = Unpacker {
        root,
        form: opts.whiteouts,
        dir_times: Vec::new(),
        this_layer: HashSet::new(),
        entries: 0,
        file_bytes: 0,
        buf: Vec::new(),
    };
    {
        let mut archive = tar::Archive::new(&mut hashing);
        let entries = archive
            .entries()
            .map_err(|source| Error::Archive { source })?;
        for entry in entries {
            let mut entry = entry.map_err(|source| Error::Archive { source })?;
            unpacker.apply_entry(&mut entry)?;
        }
    }
    io::copy(&mut hashing, &mut io::sink()).map_err(|source| Error::Archive { source })?;
    unpacker.set_dir_times()?;
    Ok(UnpackStats {
        diff_id: format!("sha256:{}", hex::encode(hashing.hasher.finalize())),
        tar_bytes: hashing.bytes,
        entries: unpacker.entries,
        file_bytes: unpacker.file_bytes,
    })
}

/// Ownership, permissions, times and xattrs of an entry.
pub(crate) struct Meta {
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) mode: Mode,
    pub(crate) mtime: TimeSpec,
    pub(crate) xattrs: Vec<(OsString, Vec<u8>)>,
}

struct Unpacker {
    root: OwnedFd,
    form: WhiteoutForm,
    /// Directory times are set last: writing their content changes them.
    dir_times: Vec<(Vec<OsString>, TimeSpec)>,
    /// Paths written by this layer, which an opaque marker must keep (apply form).
    this_layer: HashSet<Vec<u8>>,
    entries: u64,
    file_bytes: u64,
    /// File contents go through this buffer: `io::copy`'s 8 KiB would make
    /// a 50 MB file 6,400 writes.
    buf: Vec<u8>,
}

/// The copy buffer's size: large writes, few system calls.
const COPY_BUF: usize = 1 << 20;

/// Copies `from` into `to` through `buf`; a read error is a truncated or
/// broken archive, a write error the disk's.
fn copy_file(from: &mut impl Read, to: &mut File, buf: &mut [u8], display: &str) -> Result<u64> {
    let mut total = 0u64;
    loop {
        let n = match from.read(buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(source) => return Err(Error::Archive { source }),
        };
        to.write_all(&buf[..n])
            .map_err(|e| Error::io(format!("writing {display}"), e))?;
        total += n as u64;
    }
}

fn entry_name_error(entry: &str, e: NameError) -> Error {
    match e {
        NameError::Absolute => Error::AbsolutePath {
            entry: entry.to_owned(),
        },
        NameError::DotDot => Error::ParentTraversal {
            entry: entry.to_owned(),
        },
        NameError::Nul => Error::InvalidEntryName {
            entry: entry.to_owned(),
            reason: "it contains a NUL byte",
        },
    }
}

fn join_bytes(comps: &[&OsStr]) -> Vec<u8> {
    join(comps).into_os_string().into_vec()
}

use std::os::unix::ffi::OsStringExt;

impl Unpacker {
    fn apply_entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<()> {
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            EntryType::XGlobalHeader
                | EntryType::XHeader
                | EntryType::GNULongName
                | EntryType::GNULongLink
        ) {
            return Ok(());
        }
        self.entries += 1;
        let raw = entry.path_bytes().into_owned();
        let display = String::from_utf8_lossy(&raw).into_owned();
        let comps = clean_components(&raw).map_err(|e| entry_name_error(&display, e))?;
        let meta = read_meta(entry, &display)?;
        // Old tars mark directories by a trailing slash on a regular entry.
        let is_dir =
            kind == EntryType::Directory || (kind == EntryType::Regular && raw.ends_with(b"/"));

        let Some((name, parent_comps)) = comps.split_last() else {
            if !is_dir {
                return Err(Error::InvalidEntryName {
                    entry: display,
                    reason: "it names the layer root but is not a directory",
                });
            }
            let root = self
                .root
                .try_clone()
                .map_err(|e| Error::io("duplicating the root fd".into(), e))?;
            set_fd_meta(root.as_fd(), &meta, &display)?;
            self.dir_times.push((Vec::new(), meta.mtime));
            return Ok(());
        };
        let name_bytes = name.as_bytes();
        if name_bytes.starts_with(WHITEOUT_PREFIX.as_bytes()) {
            return self.apply_whiteout(parent_comps, name_bytes, &meta, &display);
        }
        if self.form == WhiteoutForm::Apply {
            self.this_layer.insert(join_bytes(&comps));
        }

        let parent = self
            .parent_dir(parent_comps, &display, true)?
            .ok_or_else(|| Error::Io {
                context: format!("creating the parents of {display}"),
                source: io::Error::from(io::ErrorKind::NotFound),
            })?;
        let parent = parent.as_fd();
        let ctx = |what: &str| format!("{what} {display}");

        match kind {
            _ if is_dir => {
                let existing =
                    lstat_at(parent, name).map_err(|e| Error::io(ctx("inspecting"), e))?;
                match existing {
                    Some(st) if file_type(&st) == SFlag::S_IFDIR => {}
                    Some(_) => {
                        remove_all_at(parent, name).map_err(|e| Error::io(ctx("replacing"), e))?;
                        mkdirat(parent, *name, Mode::from_bits_truncate(0o700))
                            .map_err(|e| Error::io(ctx("creating directory"), e))?;
                    }
                    None => mkdirat(parent, *name, Mode::from_bits_truncate(0o700))
                        .map_err(|e| Error::io(ctx("creating directory"), e))?,
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
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
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
                if self.buf.is_empty() {
                    self.buf = vec![0; COPY_BUF];
                }
                self.file_bytes += copy_file(entry, &mut file, &mut self.buf, &display)?;
                set_fd_meta(file.as_fd(), &meta, &display)?;
                futimens(&file, &meta.mtime, &meta.mtime)
                    .map_err(|e| Error::io(ctx("setting times of"), e))?;
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| Error::InvalidEntryName {
                        entry: display.clone(),
                        reason: "it is a symlink without a target",
                    })?;
                replace_slot(parent, name, &display)?;
                symlinkat(OsStr::from_bytes(&target), parent, *name)
                    .map_err(|e| Error::io(ctx("creating symlink"), e))?;
                set_child_meta(parent, name, &meta, &display, false)?;
            }
            EntryType::Link => self.hardlink(entry, &comps, parent, &display)?,
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
                return Err(Error::UnsupportedEntry {
                    entry: display,
                    kind: format!("{other:?}"),
                })
            }
        }
        Ok(())
    }

    fn parent_dir(&self, comps: &[&OsStr], entry: &str, create: bool) -> Result<Option<OwnedFd>> {
        walk_dirs(self.root.as_fd(), comps, create).map_err(|e| match e {
            WalkError::Symlink(i) => Error::SymlinkInPath {
                entry: entry.to_owned(),
                symlink: join(&comps[..=i]).to_string_lossy().into_owned(),
            },
            WalkError::NotDir(i) => Error::ParentNotDirectory {
                entry: entry.to_owned(),
                parent: join(&comps[..=i]).to_string_lossy().into_owned(),
            },
            WalkError::Sys(e) => Error::io(format!("opening the parent directory of {entry}"), e),
        })
    }

    fn hardlink<R: Read>(
        &mut self,
        entry: &tar::Entry<'_, R>,
        comps: &[&OsStr],
        parent: BorrowedFd<'_>,
        display: &str,
    ) -> Result<()> {
        let raw = entry
            .link_name_bytes()
            .ok_or_else(|| Error::InvalidEntryName {
                entry: display.to_owned(),
                reason: "it is a hard link without a target",
            })?;
        let target_display = String::from_utf8_lossy(&raw).into_owned();
        let outside = || Error::HardlinkOutside {
            entry: display.to_owned(),
            target: target_display.clone(),
        };
        let missing = || Error::HardlinkTargetMissing {
            entry: display.to_owned(),
            target: target_display.clone(),
        };
        let target = clean_components(&raw).map_err(|_| outside())?;
        let Some((tname, tparent_comps)) = target.split_last() else {
            return Err(outside());
        };
        if target.as_slice() == comps {
            return Ok(());
        }
        let tparent = match walk_dirs(self.root.as_fd(), tparent_comps, false) {
            Ok(Some(fd)) => fd,
            Ok(None) | Err(WalkError::NotDir(_)) => return Err(missing()),
            Err(WalkError::Symlink(_)) => return Err(outside()),
            Err(WalkError::Sys(e)) => {
                return Err(Error::io(format!("resolving the target of {display}"), e))
            }
        };
        match lstat_at(tparent.as_fd(), tname) {
            Ok(Some(_)) => {}
            Ok(None) => return Err(missing()),
            Err(e) => return Err(Error::io(format!("resolving the target of {display}"), e)),
        }
        let (name, _) = comps.split_last().ok_or_else(outside)?;
        replace_slot(parent, name, display)?;
        linkat(tparent.as_fd(), *tname, parent, *name, AtFlags::empty())
            .map_err(|e| Error::io(format!("creating hard link {display}"), e))
    }

    fn apply_whiteout(
        &mut self,
        parent_comps: &[&OsStr],
        name: &[u8],
        meta: &Meta,
        display: &str,
    ) -> Result<()> {
        let is_opaque = name == OPAQUE_WHITEOUT.as_bytes();
        if !is_opaque && name.starts_with(WHITEOUT_META_PREFIX.as_bytes()) {
            return Ok(());
        }
        let target = OsStr::from_bytes(&name[WHITEOUT_PREFIX.len()..]);
        if !is_opaque && matches!(target.as_bytes(), b"" | b"." | b"..") {
            return Err(Error::InvalidEntryName {
                entry: display.to_owned(),
                reason: "a whiteout must name an entry",
            });
        }
        let create = self.form == WhiteoutForm::Overlay;
        let Some(parent) = self.parent_dir(parent_comps, display, create)? else {
            // Nothing below to hide.
            return Ok(());
        };
        let parent = parent.as_fd();
        match (self.form, is_opaque) {
            (WhiteoutForm::Overlay, true) => {
                let dir = File::from(
                    parent
                        .try_clone_to_owned()
                        .map_err(|e| Error::io("duplicating an fd".into(), e))?,
                );
                dir.set_xattr(OVERLAY_OPAQUE_XATTR, b"y")
                    .map_err(|e| Error::io(format!("marking the directory of {display} opaque"), e))
            }
            (WhiteoutForm::Overlay, false) => {
                replace_slot(parent, target, display)?;
                mknodat(parent, target, SFlag::S_IFCHR, Mode::empty(), makedev(0, 0))
                    .map_err(|e| Error::io(format!("creating whiteout {display}"), e))?;
                fchownat(
                    parent,
                    target,
                    Some(Uid::from_raw(meta.uid)),
                    Some(Gid::from_raw(meta.gid)),
                    AtFlags::AT_SYMLINK_NOFOLLOW,
                )
                .map_err(|e| Error::io(format!("setting the owner of whiteout {display}"), e))
            }
            (WhiteoutForm::Apply, true) => {
                let prefix = join_bytes(parent_comps);
                let children = list_dir(parent)
                    .map_err(|e| Error::io(format!("listing the directory of {display}"), e))?;
                for child in children {
                    let mut path = prefix.clone();
                    if !path.is_empty() {
                        path.push(b'/');
                    }
                    path.extend_from_slice(child.as_bytes());
                    if !self.this_layer.contains(&path) {
                        remove_all_at(parent, &child).map_err(|e| {
                            Error::io(format!("applying opaque marker {display}"), e)
                        })?;
                    }
                }
                Ok(())
            }
            (WhiteoutForm::Apply, false) => remove_all_at(parent, target)
                .map_err(|e| Error::io(format!("applying whiteout {display}"), e)),
        }
    }

    fn set_dir_times(&self) -> Result<()> {
        for (comps, mtime) in self.dir_times.iter().rev() {
            let comps: Vec<&OsStr> = comps.iter().map(|c| c.as_os_str()).collect();
            // A directory replaced or whited out later in the layer is skipped.
            let Ok(Some(dir)) = walk_dirs(self.root.as_fd(), &comps, false) else {
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

/// Makes room for a non-directory entry: whatever has its name goes, as
/// other engines do (a directory with everything below it).
pub(crate) fn replace_slot(parent: BorrowedFd<'_>, name: &OsStr, display: &str) -> Result<()> {
    remove_all_at(parent, name).map_err(|e| Error::io(format!("replacing {display}"), e))
}

pub(crate) fn read_meta<R: Read>(entry: &mut tar::Entry<'_, R>, display: &str) -> Result<Meta> {
    let header = entry.header();
    let bad = |what: &str, e: io::Error| Error::Archive {
        source: io::Error::new(e.kind(), format!("entry {display}: bad {what}: {e}")),
    };
    let mut uid = header.uid().map_err(|e| bad("uid", e))?;
    let mut gid = header.gid().map_err(|e| bad("gid", e))?;
    let mode = header.mode().map_err(|e| bad("mode", e))?;
    let mut mtime = TimeSpec::new(header.mtime().map_err(|e| bad("mtime", e))? as i64, 0);
    let mut xattrs = Vec::new();
    if let Some(pax) = entry
        .pax_extensions()
        .map_err(|source| Error::Archive { source })?
    {
        for ext in pax {
            let ext = ext.map_err(|source| Error::Archive { source })?;
            let Ok(key) = ext.key() else { continue };
            if let Some(name) = key.strip_prefix(PAX_XATTR_PREFIX) {
                if !name.starts_with(OVERLAY_XATTR_PREFIX) {
                    xattrs.push((OsString::from(name), ext.value_bytes().to_vec()));
                }
                continue;
            }
            let value = ext.value().unwrap_or("");
            match key {
                "uid" => {
                    uid = value
                        .parse()
                        .map_err(|_| bad("PAX uid", io::ErrorKind::InvalidData.into()))?
                }
                "gid" => {
                    gid = value
                        .parse()
                        .map_err(|_| bad("PAX gid", io::ErrorKind::InvalidData.into()))?
                }
                "mtime" => {
                    mtime = parse_pax_time(value)
                        .ok_or_else(|| bad("PAX mtime", io::ErrorKind::InvalidData.into()))?
                }
                _ => {}
            }
        }
    }
    let id = |v: u64, what: &str| {
        u32::try_from(v).map_err(|_| bad(what, io::ErrorKind::InvalidData.into()))
    };
    Ok(Meta {
        uid: id(uid, "uid")?,
        gid: id(gid, "gid")?,
        mode: Mode::from_bits_truncate(mode & 0o7777),
        mtime,
        xattrs,
    })
}

/// Parses a PAX time, `<seconds>[.<fraction>]`.
fn parse_pax_time(value: &str) -> Option<TimeSpec> {
    let (secs, frac) = value.split_once('.').unwrap_or((value, ""));
    let secs: i64 = secs.parse().ok()?;
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut digits: String = frac.chars().take(9).collect();
    while digits.len() < 9 {
        digits.push('0');
    }
    let nanos: i64 = digits.parse().ok()?;
    // "-1.5" means 1.5 s before the epoch.
    Some(if value.starts_with('-') && nanos > 0 {
        TimeSpec::new(secs - 1, 1_000_000_000 - nanos)
    } else {
        TimeSpec::new(secs, nanos)
    })
}

fn ignorable_xattr_error(e: &io::Error) -> bool {
    // Filesystems without xattr support (or without a namespace) get the
    // file without the xattr, as other engines do.
    e.raw_os_error() == Some(Errno::EOPNOTSUPP as i32)
}

/// Owner, mode and xattrs through an open fd. Owner first: chown clears
/// setuid bits and file capabilities, which are then set again.
pub(crate) fn set_fd_meta(fd: BorrowedFd<'_>, meta: &Meta, display: &str) -> Result<()> {
    fchown(
        fd,
        Some(Uid::from_raw(meta.uid)),
        Some(Gid::from_raw(meta.gid)),
    )
    .map_err(|e| Error::io(format!("setting the owner of {display}"), e))?;
    fchmod(fd, meta.mode).map_err(|e| Error::io(format!("setting the mode of {display}"), e))?;
    if !meta.xattrs.is_empty() {
        let file = File::from(
            fd.try_clone_to_owned()
                .map_err(|e| Error::io("duplicating an fd".into(), e))?,
        );
        for (name, value) in &meta.xattrs {
            if let Err(e) = file.set_xattr(name, value) {
                if !ignorable_xattr_error(&e) {
                    return Err(Error::io(
                        format!("setting xattr {} on {display}", name.to_string_lossy()),
                        e,
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Owner, mode, xattrs and times of a symlink or device node, by name in its parent.
pub(crate) fn set_child_meta(
    parent: BorrowedFd<'_>,
    name: &OsStr,
    meta: &Meta,
    display: &str,
    chmod: bool,
) -> Result<()> {
    fchownat(
        parent,
        name,
        Some(Uid::from_raw(meta.uid)),
        Some(Gid::from_raw(meta.gid)),
        AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .map_err(|e| Error::io(format!("setting the owner of {display}"), e))?;
    if chmod {
        // Only device nodes and fifos get here; the name was just created by
        // mknodat in a directory opened without following symlinks.
        fchmodat(parent, name, meta.mode, FchmodatFlags::FollowSymlink)
            .map_err(|e| Error::io(format!("setting the mode of {display}"), e))?;
    }
    if !meta.xattrs.is_empty() {
        let path = fd_child_path(parent, name);
        for (xname, value) in &meta.xattrs {
            if let Err(e) = xattr::set(&path, xname, value) {
                if !ignorable_xattr_error(&e) {
                    return Err(Error::io(
                        format!("setting xattr {} on {display}", xname.to_string_lossy()),
                        e,
                    ));
                }
            }
        }
    }
    utimensat(
        parent,
        name,
        &meta.mtime,
        &meta.mtime,
        UtimensatFlags::NoFollowSymlink,
    )
    .map_err(|e| Error::io(format!("setting times of {display}"), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_times_parse() {
        let t = parse_pax_time("1700000000.5").expect("time");
        assert_eq!((t.tv_sec(), t.tv_nsec()), (1_700_000_000, 500_000_000));
        let t = parse_pax_time("12").expect("time");
        assert_eq!((t.tv_sec(), t.tv_nsec()), (12, 0));
        let t = parse_pax_time("1.0000000019").expect("time");
        assert_eq!((t.tv_sec(), t.tv_nsec()), (1, 1));
        assert!(parse_pax_time("x").is_none());
        assert!(parse_pax_time("1.x").is_none());
    }
}
