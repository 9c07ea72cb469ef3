//! Writes the changes of a snapshot as a layer tar: from an overlay upper
//! directory (whiteout devices and opaque xattrs turned back into `.wh.`
//! entries) or by comparing a vfs copy with its parent.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::{self, Metadata};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use tar::{EntryType, Header};

use crate::copy::open_nofollow;
use crate::error::{Error, Result};
use crate::unpack::{OPAQUE_WHITEOUT, OVERLAY_OPAQUE_XATTR, OVERLAY_XATTR_PREFIX, WHITEOUT_PREFIX};

pub(crate) struct DiffWriter<W: Write> {
    builder: tar::Builder<W>,
    /// First path written for each hard-linked inode.
    links: HashMap<(u64, u64), PathBuf>,
    entries: u64,
}

fn list_sorted(dir: &Path) -> Result<Vec<OsString>> {
    let mut names = fs::read_dir(dir)
        .and_then(|rd| {
            rd.map(|e| e.map(|e| e.file_name()))
                .collect::<io::Result<Vec<_>>>()
        })
        .map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
    names.sort();
    Ok(names)
}

fn lstat(path: &Path) -> Result<Metadata> {
    fs::symlink_metadata(path).map_err(|e| Error::io(format!("inspecting {}", path.display()), e))
}

/// xattrs to carry in a layer: all but overlayfs' own.
fn layer_xattrs(path: &Path) -> Result<Vec<(String, Vec<u8>)>> {
    let ctx = || format!("reading xattrs of {}", path.display());
    let mut out = Vec::new();
    for name in xattr::list(path).map_err(|e| Error::io(ctx(), e))? {
        let Some(name_str) = name.to_str() else {
            continue;
        };
        if name_str.starts_with(OVERLAY_XATTR_PREFIX) {
            continue;
        }
        if let Some(value) = xattr::get(path, &name).map_err(|e| Error::io(ctx(), e))? {
            out.push((name_str.to_owned(), value));
        }
    }
    out.sort();
    Ok(out)
}

fn is_whiteout_device(md: &Metadata) -> bool {
    md.file_type().is_char_device() && md.rdev() == 0
}

fn is_opaque(path: &Path) -> Result<bool> {
    let v = xattr::get(path, OVERLAY_OPAQUE_XATTR)
        .map_err(|e| Error::io(format!("reading xattrs of {}", path.display()), e))?;
    Ok(v.as_deref() == Some(b"y"))
}

impl<W: Write> DiffWriter<W> {
    pub(crate) fn new(out: W) -> Self {
        let mut builder = tar::Builder::new(out);
        builder.follow_symlinks(false);
        DiffWriter {
            builder,
            links: HashMap::new(),
            entries: 0,
        }
    }

    pub(crate) fn finish(mut self) -> Result<u64> {
        self.builder
            .finish()
            .map_err(|e| Error::io("finishing the diff archive".into(), e))?;
        Ok(self.entries)
    }

    fn tar_err(rel: &Path) -> impl FnOnce(io::Error) -> Error + '_ {
        move |e| Error::io(format!("writing {} to the diff archive", rel.display()), e)
    }

    fn whiteout(&mut self, rel_dir: &Path, name: &std::ffi::OsStr) -> Result<()> {
        let mut wh = OsString::from(WHITEOUT_PREFIX);
        wh.push(name);
        let rel = rel_dir.join(wh);
        let mut h = Header::new_gnu();
        h.set_entry_type(EntryType::Regular);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_size(0);
        h.set_mtime(0);
        self.builder
            .append_data(&mut h, &rel, io::empty())
            .map_err(Self::tar_err(&rel))?;
        self.entries += 1;
        Ok(())
    }

    /// Writes one entry for the file at `path`, named `rel` in the archive.
    fn entry(&mut self, rel: &Path, path: &Path, md: &Metadata) -> Result<()> {
        let ft = md.file_type();
        let mut h = Header::new_gnu();
        h.set_mode(md.mode() & 0o7777);
        h.set_uid(md.uid().into());
        h.set_gid(md.gid().into());
        h.set_mtime(md.mtime().max(0) as u64);
        h.set_size(0);
        let xattrs = layer_xattrs(path)?;
        if !ft.is_dir() && md.nlink() > 1 {
            let key = (md.dev(), md.ino());
            if let Some(first) = self.links.get(&key).cloned() {
                h.set_entry_type(EntryType::Link);
                self.builder
                    .append_link(&mut h, rel, &first)
                    .map_err(Self::tar_err(rel))?;
                self.entries += 1;
                return Ok(());
            }
            self.links.insert(key, rel.to_path_buf());
        }
        if !xattrs.is_empty() {
            let keys: Vec<(String, &[u8])> = xattrs
                .iter()
                .map(|(k, v)| (format!("SCHILY.xattr.{k}"), v.as_slice()))
                .collect();
            self.builder
                .append_pax_extensions(keys.iter().map(|(k, v)| (k.as_str(), *v)))
                .map_err(Self::tar_err(rel))?;
        }
        if ft.is_dir() {
            h.set_entry_type(EntryType::Directory);
            self.builder
                .append_data(&mut h, rel, io::empty())
                .map_err(Self::tar_err(rel))?;
        } else if ft.is_file() {
            h.set_entry_type(EntryType::Regular);
            h.set_size(md.len());
            let file = open_nofollow(path)
                .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
            // A file that shrinks while read would corrupt the archive; read exactly its size.
            use std::io::Read;
            let mut limited = file.take(md.len());
            self.builder
                .append_data(&mut h, rel, &mut limited)
                .map_err(Self::tar_err(rel))?;
        } else if ft.is_symlink() {
            h.set_entry_type(EntryType::Symlink);
            let target = fs::read_link(path)
                .map_err(|e| Error::io(format!("reading link {}", path.display()), e))?;
            self.builder
                .append_link(&mut h, rel, &target)
                .map_err(Self::tar_err(rel))?;
        } else if ft.is_char_device() || ft.is_block_device() {
            h.set_entry_type(if ft.is_char_device() {
                EntryType::Char
            } else {
                EntryType::Block
            });
            let rdev = md.rdev();
            h.set_device_major(nix::sys::stat::major(rdev) as u32)
                .map_err(Self::tar_err(rel))?;
            h.set_device_minor(nix::sys::stat::minor(rdev) as u32)
                .map_err(Self::tar_err(rel))?;
            self.builder
                .append_data(&mut h, rel, io::empty())
                .map_err(Self::tar_err(rel))?;
        } else if ft.is_fifo() {
            h.set_entry_type(EntryType::Fifo);
            self.builder
                .append_data(&mut h, rel, io::empty())
                .map_err(Self::tar_err(rel))?;
        } else {
            // Sockets have no tar form; other engines skip them too.
            return Ok(());
        }
        self.entries += 1;
        Ok(())
    }

    /// Walks an overlay upper directory.
    pub(crate) fn overlay_upper(&mut self, dir: &Path, rel: &Path) -> Result<()> {
        for name in list_sorted(dir)? {
            let path = dir.join(&name);
            let rel_path = rel.join(&name);
            let md = lstat(&path)?;
            if is_whiteout_device(&md) {
                self.whiteout(rel, &name)?;
                continue;
            }
            self.entry(&rel_path, &path, &md)?;
            if md.is_dir() {
                if is_opaque(&path)? {
                    self.whiteout(
                        &rel_path,
                        std::ffi::OsStr::new(&OPAQUE_WHITEOUT[WHITEOUT_PREFIX.len()..]),
                    )?;
                }
                self.overlay_upper(&path, &rel_path)?;
            }
        }
        Ok(())
    }

    /// Compares `new` with `old` (absent: everything is new).
    pub(crate) fn compare(&mut self, old: Option<&Path>, new: &Path, rel: &Path) -> Result<()> {
        let names = list_sorted(new)?;
        if let Some(old) = old {
            for gone in list_sorted(old)? {
                if names.binary_search(&gone).is_err() {
                    self.whiteout(rel, &gone)?;
                }
            }
        }
        for name in names {
            let path = new.join(&name);
            let rel_path = rel.join(&name);
            let md = lstat(&path)?;
            let old_path = old.map(|o| o.join(&name));
            let old_md = match &old_path {
                Some(p) => match fs::symlink_metadata(p) {
                    Ok(m) => Some(m),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => None,
                    Err(e) => return Err(Error::io(format!("inspecting {}", p.display()), e)),
                },
                None => None,
            };
            let same_type = old_md
                .as_ref()
                .is_some_and(|o| (o.mode() & 0o170000) == (md.mode() & 0o170000));
            let changed = match (&old_md, &old_path) {
                (Some(o), Some(op)) if same_type => differs(op, o, &path, &md)?,
                _ => true,
            };
            if changed {
                self.entry(&rel_path, &path, &md)?;
            }
            if md.is_dir() {
                let below = if same_type { old_path.as_deref() } else { None };
                self.compare(below, &path, &rel_path)?;
            }
        }
        Ok(())
    }
}

/// Whether a file differs from its counterpart in the parent. Like other
/// engines this trusts size and mtime (copies keep mtimes) instead of
/// reading every file's content.
fn differs(old_path: &Path, old: &Metadata, new_path: &Path, new: &Metadata) -> Result<bool> {
    if old.mode() != new.mode()
        || old.uid() != new.uid()
        || old.gid() != new.gid()
        || old.rdev() != new.rdev()
        || old.mtime() != new.mtime()
        || old.mtime_nsec() != new.mtime_nsec()
        || (!new.is_dir() && old.len() != new.len())
    {
        return Ok(true);
    }
    if new.file_type().is_symlink() {
        let a = fs::read_link(old_path)
            .map_err(|e| Error::io(format!("reading link {}", old_path.display()), e))?;
        let b = fs::read_link(new_path)
            .map_err(|e| Error::io(format!("reading link {}", new_path.display()), e))?;
        if a.as_os_str().as_bytes() != b.as_os_str().as_bytes() {
            return Ok(true);
        }
    }
    Ok(layer_xattrs(old_path)? != layer_xattrs(new_path)?)
}
