//! Full copies of a snapshot tree for the vfs driver, keeping owners, modes,
//! times, xattrs, device nodes and hard links. Data goes through
//! copy_file_range (std's `io::copy` on files), so filesystems that can share
//! extents do.

use std::collections::HashMap;
use std::fs::{self, File, Metadata, OpenOptions};
use std::io;
use std::os::unix::fs::{lchown, symlink, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{OFlag, AT_FDCWD};
use nix::sys::stat::{mknod, utimensat, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;

use crate::error::{Error, Result};

/// Copies the tree at `src` to `dst`, which must not exist yet.
pub(crate) fn copy_tree(src: &Path, dst: &Path) -> Result<()> {
    let mut copier = Copier {
        links: HashMap::new(),
        dirs: Vec::new(),
    };
    copier.copy(src, dst)?;
    // Directory times last: filling a directory changes them.
    for (path, md) in copier.dirs.iter().rev() {
        set_times(path, md)?;
    }
    Ok(())
}

struct Copier {
    links: HashMap<(u64, u64), PathBuf>,
    dirs: Vec<(PathBuf, Metadata)>,
}

impl Copier {
    fn copy(&mut self, src: &Path, dst: &Path) -> Result<()> {
        let ctx = |what: &str, p: &Path| format!("{what} {}", p.display());
        let md = fs::symlink_metadata(src).map_err(|e| Error::io(ctx("inspecting", src), e))?;
        let ft = md.file_type();
        if !ft.is_dir() && md.nlink() > 1 {
            if let Some(first) = self.links.get(&(md.dev(), md.ino())) {
                return fs::hard_link(first, dst).map_err(|e| Error::io(ctx("linking", dst), e));
            }
            self.links.insert((md.dev(), md.ino()), dst.to_path_buf());
        }
        if ft.is_dir() {
            fs::create_dir(dst).map_err(|e| Error::io(ctx("creating", dst), e))?;
            copy_meta(src, dst, &md)?;
            let mut names: Vec<_> = fs::read_dir(src)
                .and_then(|rd| {
                    rd.map(|e| e.map(|e| e.file_name()))
                        .collect::<io::Result<Vec<_>>>()
                })
                .map_err(|e| Error::io(ctx("listing", src), e))?;
            names.sort();
            for name in names {
                self.copy(&src.join(&name), &dst.join(&name))?;
            }
            self.dirs.push((dst.to_path_buf(), md));
            return Ok(());
        }
        if ft.is_file() {
            let mut from = OpenOptions::new()
                .read(true)
                .custom_flags(OFlag::O_NOFOLLOW.bits())
                .open(src)
                .map_err(|e| Error::io(ctx("opening", src), e))?;
            let mut to = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(dst)
                .map_err(|e| Error::io(ctx("creating", dst), e))?;
            io::copy(&mut from, &mut to).map_err(|e| Error::io(ctx("copying to", dst), e))?;
        } else if ft.is_symlink() {
            let target = fs::read_link(src).map_err(|e| Error::io(ctx("reading link", src), e))?;
            symlink(target, dst).map_err(|e| Error::io(ctx("creating", dst), e))?;
        } else {
            let kind = SFlag::from_bits_truncate(md.mode() & SFlag::S_IFMT.bits());
            mknod(dst, kind, Mode::empty(), md.rdev())
                .map_err(|e| Error::io(ctx("creating", dst), e))?;
        }
        copy_meta(src, dst, &md)?;
        set_times(dst, &md)
    }
}

/// Owner, then mode (chown clears setuid), then xattrs (chown clears file
/// capabilities).
pub(crate) fn copy_meta(src: &Path, dst: &Path, md: &Metadata) -> Result<()> {
    let ctx = |what: &str| format!("{what} {}", dst.display());
    lchown(dst, Some(md.uid()), Some(md.gid()))
        .map_err(|e| Error::io(ctx("setting the owner of"), e))?;
    if !md.file_type().is_symlink() {
        fs::set_permissions(dst, fs::Permissions::from_mode(md.mode() & 0o7777))
            .map_err(|e| Error::io(ctx("setting the mode of"), e))?;
    }
    let names = xattr::list(src)
        .map_err(|e| Error::io(format!("listing xattrs of {}", src.display()), e))?;
    for name in names {
        let Some(value) = xattr::get(src, &name)
            .map_err(|e| Error::io(format!("reading xattrs of {}", src.display()), e))?
        else {
            continue;
        };
        xattr::set(dst, &name, &value).map_err(|e| {
            Error::io(
                format!(
                    "setting xattr {} on {}",
                    name.to_string_lossy(),
                    dst.display()
                ),
                e,
            )
        })?;
    }
    Ok(())
}

fn set_times(path: &Path, md: &Metadata) -> Result<()> {
    let atime = TimeSpec::new(md.atime(), md.atime_nsec());
    let mtime = TimeSpec::new(md.mtime(), md.mtime_nsec());
    utimensat(
        AT_FDCWD,
        path,
        &atime,
        &mtime,
        UtimensatFlags::NoFollowSymlink,
    )
    .map_err(|e| Error::io(format!("setting times of {}", path.display()), e))
}

/// Bytes a tree holds: regular file and symlink sizes, each hard-linked
/// inode once.
pub(crate) fn tree_usage(path: &Path) -> Result<u64> {
    fn walk(path: &Path, seen: &mut HashMap<(u64, u64), ()>, total: &mut u64) -> Result<()> {
        let md = fs::symlink_metadata(path)
            .map_err(|e| Error::io(format!("inspecting {}", path.display()), e))?;
        if md.is_dir() {
            let entries = fs::read_dir(path)
                .map_err(|e| Error::io(format!("listing {}", path.display()), e))?;
            for entry in entries {
                let entry =
                    entry.map_err(|e| Error::io(format!("listing {}", path.display()), e))?;
                walk(&entry.path(), seen, total)?;
            }
        } else if md.is_file() || md.file_type().is_symlink() {
            if md.nlink() > 1 && seen.insert((md.dev(), md.ino()), ()).is_some() {
                return Ok(());
            }
            *total += md.len();
        }
        Ok(())
    }
    let mut total = 0;
    walk(path, &mut HashMap::new(), &mut total)?;
    Ok(total)
}

/// Opens a file for reading without following a symlink at its name.
pub(crate) fn open_nofollow(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(OFlag::O_NOFOLLOW.bits())
        .open(path)
}
