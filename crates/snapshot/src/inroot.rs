//! File operations confined to a directory tree: names are cleaned, parents are
//! opened with openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS) so no symlink and
//! no `..` can lead a write out of the tree, and everything else is done
//! relative to the parent's file descriptor.

use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::AtFlags;
use nix::fcntl::{openat, openat2, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{fstatat, mkdirat, FileStat, Mode, SFlag};
use nix::unistd::{unlinkat, UnlinkatFlags};

/// Why an entry name was refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum NameError {
    Absolute,
    DotDot,
    Nul,
}

/// Splits an archive name into its components, dropping empty and `.` ones.
/// Absolute names and `..` anywhere are refused rather than rewritten: a
/// layer that carries them was not made by a well-behaved tool.
pub(crate) fn clean_components(raw: &[u8]) -> Result<Vec<&OsStr>, NameError> {
    if raw.contains(&0) {
        return Err(NameError::Nul);
    }
    if raw.first() == Some(&b'/') {
        return Err(NameError::Absolute);
    }
    let mut out = Vec::new();
    for comp in raw.split(|b| *b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => return Err(NameError::DotDot),
            c => out.push(OsStr::from_bytes(c)),
        }
    }
    Ok(out)
}

/// Joins components with `/` into one relative path.
pub(crate) fn join(comps: &[&OsStr]) -> PathBuf {
    let mut p = PathBuf::new();
    for c in comps {
        p.push(c);
    }
    p
}

/// Opens a directory for reading (so its fd can also be used for fchown,
/// futimens and fsetxattr).
pub(crate) fn open_dir(path: &Path) -> nix::Result<OwnedFd> {
    nix::fcntl::open(
        path,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

fn beneath() -> OpenHow {
    OpenHow::new()
        .flags(OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW)
        .resolve(
            ResolveFlag::RESOLVE_BENEATH
                | ResolveFlag::RESOLVE_NO_SYMLINKS
                | ResolveFlag::RESOLVE_NO_MAGICLINKS,
        )
}

/// Opens the directory `rel` below `dir`, never following a symlink or
/// leaving `dir`.
pub(crate) fn open_dir_beneath(dir: BorrowedFd<'_>, rel: &Path) -> nix::Result<OwnedFd> {
    if rel.as_os_str().is_empty() {
        return openat2(dir, ".", beneath());
    }
    openat2(dir, rel, beneath())
}

/// Why a directory path inside the tree could not be opened.
#[derive(Debug)]
pub(crate) enum WalkError {
    /// The component at this index is a symlink.
    Symlink(usize),
    /// The component at this index exists but is not a directory.
    NotDir(usize),
    Sys(Errno),
}

/// Opens the directory named by `comps` inside `root`. Missing directories
/// are created (mode 0755, as other engines do) when `create` is set, else
/// `Ok(None)` is returned.
pub(crate) fn walk_dirs(
    root: BorrowedFd<'_>,
    comps: &[&OsStr],
    create: bool,
) -> Result<Option<OwnedFd>, WalkError> {
    match open_dir_beneath(root, &join(comps)) {
        Ok(fd) => return Ok(Some(fd)),
        Err(Errno::ENOENT | Errno::ELOOP | Errno::ENOTDIR | Errno::EXDEV) => {}
        Err(e) => return Err(WalkError::Sys(e)),
    }
    // Slow path: one component at a time, to create what is missing and to
    // name the component that is in the way.
    let mut cur = open_dir_beneath(root, Path::new("")).map_err(WalkError::Sys)?;
    for (i, comp) in comps.iter().enumerate() {
        match fstatat(&cur, *comp, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Err(Errno::ENOENT) if create => {
                match mkdirat(&cur, *comp, Mode::from_bits_truncate(0o755)) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(e) => return Err(WalkError::Sys(e)),
                }
            }
            Err(Errno::ENOENT) => return Ok(None),
            Err(e) => return Err(WalkError::Sys(e)),
            Ok(st) if file_type(&st) == SFlag::S_IFLNK => return Err(WalkError::Symlink(i)),
            Ok(st) if file_type(&st) != SFlag::S_IFDIR => return Err(WalkError::NotDir(i)),
            Ok(_) => {}
        }
        cur = match open_dir_beneath(cur.as_fd(), Path::new(comp)) {
            Ok(fd) => fd,
            Err(Errno::ELOOP) => return Err(WalkError::Symlink(i)),
            Err(Errno::ENOTDIR) => return Err(WalkError::NotDir(i)),
            Err(e) => return Err(WalkError::Sys(e)),
        };
    }
    Ok(Some(cur))
}

pub(crate) fn file_type(st: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits())
}

/// lstat of `name` in `dir`; `None` when it does not exist.
pub(crate) fn lstat_at(dir: BorrowedFd<'_>, name: &OsStr) -> nix::Result<Option<FileStat>> {
    match fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(st)),
        Err(Errno::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Names in a directory, without `.` and `..`.
pub(crate) fn list_dir(dir: BorrowedFd<'_>) -> nix::Result<Vec<OsString>> {
    let fd = open_dir_beneath(dir, Path::new(""))?;
    let mut d = Dir::from_fd(fd)?;
    let mut names = Vec::new();
    for ent in d.iter() {
        let ent = ent?;
        let name = ent.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(OsStr::from_bytes(name).to_owned());
        }
    }
    Ok(names)
}

/// Removes `name` in `dir` and, if it is a directory, everything below it,
/// without following symlinks. A missing name is not an error.
pub(crate) fn remove_all_at(dir: BorrowedFd<'_>, name: &OsStr) -> nix::Result<()> {
    match unlinkat(dir, name, UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => return Ok(()),
        Err(Errno::EISDIR) => {}
        Err(e) => return Err(e),
    }
    let sub = openat(
        dir,
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    for child in list_dir(sub.as_fd())? {
        remove_all_at(sub.as_fd(), &child)?;
    }
    drop(sub);
    match unlinkat(dir, name, UnlinkatFlags::RemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => Ok(()),
        Err(e) => Err(e),
    }
}

/// A path naming `name` inside the directory open as `dir`, for the calls
/// that only take paths (lsetxattr). The fd is followed, `name` is not.
pub(crate) fn fd_child_path(dir: BorrowedFd<'_>, name: &OsStr) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd())).join(name)
}

/// Creates directory `path` (absolute, as seen inside the root) and its
/// missing parents under `root` (mode 0755), never following a symlink out
/// of it; a symlinked component is left for the runtime, which resolves it
/// inside the root. Used for a working directory the image lacks, which
/// dockerd creates at start.
pub fn ensure_dir_in_root(root: &Path, path: &str) -> std::io::Result<()> {
    let relative = path.trim_start_matches('/');
    let comps = clean_components(relative.as_bytes())
        .map_err(|_| std::io::Error::other(format!("invalid path {path:?}")))?;
    let root_fd = open_dir(root)?;
    match walk_dirs(root_fd.as_fd(), &comps, true) {
        Ok(_) | Err(WalkError::Symlink(_)) => Ok(()),
        Err(WalkError::NotDir(i)) => Err(std::io::Error::other(format!(
            "mkdir {path}: {} is not a directory",
            join(&comps[..=i]).display()
        ))),
        Err(WalkError::Sys(e)) => Err(e.into()),
    }
}

/// Target of the `/etc/mtab` symlink [`ensure_init_files`] makes.
pub const MTAB_TARGET: &str = "/proc/mounts";

/// The files dockerd's init layer gives every container, where the image
/// lacks them: an empty `/.dockerenv` (mode 0755, how programs tell they
/// run in a container) and `/etc/mtab` as a symlink to `/proc/mounts`
/// (`/etc` is made when missing; a symlinked `/etc` is left alone).
pub fn ensure_init_files(root: &Path) -> std::io::Result<()> {
    let root_fd = open_dir(root)?;
    match openat(
        &root_fd,
        ".dockerenv",
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o755),
    ) {
        Ok(fd) => nix::sys::stat::fchmod(&fd, Mode::from_bits_truncate(0o755))?,
        Err(Errno::EEXIST) => {}
        Err(e) => return Err(e.into()),
    }
    let etc = match walk_dirs(root_fd.as_fd(), &[OsStr::new("etc")], true) {
        Ok(Some(fd)) => fd,
        Ok(None) | Err(WalkError::Symlink(_) | WalkError::NotDir(_)) => return Ok(()),
        Err(WalkError::Sys(e)) => return Err(e.into()),
    };
    match nix::unistd::symlinkat(MTAB_TARGET, &etc, "mtab") {
        Ok(()) | Err(Errno::EEXIST) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(raw: &str) -> Result<Vec<String>, NameError> {
        clean_components(raw.as_bytes())
            .map(|v| v.iter().map(|c| c.to_string_lossy().into_owned()).collect())
    }

    #[test]
    fn names_are_cleaned_or_refused() {
        assert_eq!(
            names("./usr//bin/./sh").expect("clean"),
            ["usr", "bin", "sh"]
        );
        assert_eq!(names("./").expect("clean"), Vec::<String>::new());
        assert_eq!(names("dir/").expect("clean"), ["dir"]);
        assert_eq!(names("/etc/passwd"), Err(NameError::Absolute));
        assert_eq!(names("../x"), Err(NameError::DotDot));
        assert_eq!(names("a/../../x"), Err(NameError::DotDot));
        assert_eq!(names("a/.."), Err(NameError::DotDot));
        assert_eq!(clean_components(b"a\0b"), Err(NameError::Nul));
        assert_eq!(names("..a/b..").expect("clean"), ["..a", "b.."]);
    }
}
