//! Helpers for the root tests: hand-made layer tars (including hostile
//! names the tar crate refuses to write), tree manifests to compare
//! directories, and a scratch directory that unmounts and removes whatever
//! a test left, even when it fails.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use tar::{EntryType, Header};

pub fn is_root() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    eprintln!("skipped: needs root");
    false
}

/// A scratch directory; on drop every mount below it is detached first.
pub struct Scratch {
    pub dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Scratch {
        Scratch {
            dir: tempfile::Builder::new()
                .prefix("berth-snapshot-test")
                .tempdir()
                .expect("tempdir"),
        }
    }

    /// A scratch directory whose path is long, for mount option limits.
    pub fn with_long_path(len: usize) -> Scratch {
        let s = Scratch::new();
        let mut p = s.path().to_path_buf();
        while p.as_os_str().len() < len {
            p.push("padding-padding-padding-padding");
        }
        fs::create_dir_all(&p).expect("long dir");
        s
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The deepest directory created by `with_long_path` (or the root).
    pub fn deepest(&self) -> PathBuf {
        let mut p = self.path().to_path_buf();
        while let Ok(mut rd) = fs::read_dir(&p) {
            match rd.find_map(|e| {
                e.ok()
                    .filter(|e| e.file_name() == "padding-padding-padding-padding")
            }) {
                Some(e) => p = e.path(),
                None => break,
            }
        }
        p
    }

    pub fn sub(&self, name: &str) -> PathBuf {
        let p = self.path().join(name);
        fs::create_dir_all(&p).expect("subdir");
        p
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let root = self.path().to_string_lossy().into_owned();
        let info = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut mounts: Vec<&str> = info
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|m| m.starts_with(&root))
            .collect();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in mounts {
            let _ = nix::mount::umount2(m, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

/// Builds layer tars entry by entry.
pub struct LayerTar {
    builder: tar::Builder<Vec<u8>>,
    pub mtime: u64,
}

impl LayerTar {
    pub fn new() -> LayerTar {
        LayerTar {
            builder: tar::Builder::new(Vec::new()),
            mtime: 1_600_000_000,
        }
    }

    /// Appends an entry with `name` written as is (no checks, no cleaning).
    #[allow(clippy::too_many_arguments)]
    pub fn raw(
        &mut self,
        name: &str,
        kind: EntryType,
        mode: u32,
        owner: (u64, u64),
        link: Option<&str>,
        data: &[u8],
        xattrs: &[(&str, &[u8])],
    ) -> &mut Self {
        if !xattrs.is_empty() {
            let keys: Vec<(String, &[u8])> = xattrs
                .iter()
                .map(|(k, v)| (format!("SCHILY.xattr.{k}"), *v))
                .collect();
            self.builder
                .append_pax_extensions(keys.iter().map(|(k, v)| (k.as_str(), *v)))
                .expect("pax");
        }
        let mut h = Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(owner.0);
        h.set_gid(owner.1);
        h.set_mtime(self.mtime);
        h.set_size(data.len() as u64);
        if name.len() < 100 {
            h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        } else {
            // Long names go through the GNU extension the tar crate writes.
            self.builder
                .append_data(&mut h.clone(), name, data)
                .expect("long name");
            return self;
        }
        if let Some(l) = link {
            h.as_old_mut().linkname[..l.len()].copy_from_slice(l.as_bytes());
        }
        h.set_cksum();
        self.builder.append(&h, data).expect("append");
        self
    }

    pub fn dir(&mut self, name: &str, mode: u32) -> &mut Self {
        self.raw(name, EntryType::Directory, mode, (0, 0), None, b"", &[])
    }

    pub fn file(&mut self, name: &str, data: &[u8]) -> &mut Self {
        self.raw(name, EntryType::Regular, 0o644, (0, 0), None, data, &[])
    }

    pub fn symlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.raw(
            name,
            EntryType::Symlink,
            0o777,
            (0, 0),
            Some(target),
            b"",
            &[],
        )
    }

    pub fn hardlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.raw(name, EntryType::Link, 0o644, (0, 0), Some(target), b"", &[])
    }

    pub fn device(&mut self, name: &str, kind: EntryType, major: u32, minor: u32) -> &mut Self {
        let mut h = Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(0o660);
        h.set_uid(0);
        h.set_gid(6);
        h.set_mtime(self.mtime);
        h.set_size(0);
        h.set_device_major(major).expect("major");
        h.set_device_minor(minor).expect("minor");
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_cksum();
        self.builder.append(&h, &b""[..]).expect("append");
        self
    }

    pub fn finish(self) -> Vec<u8> {
        self.builder.into_inner().expect("finish")
    }
}

/// One line per path below `root` (root itself left out): type, mode,
/// owner, size, content digest, link target, device, xattrs (overlay's
/// own left out) and, for non-directories, the mtime.
pub fn manifest(root: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        let mut names: Vec<_> = fs::read_dir(dir)
            .expect("read_dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        names.sort();
        for name in names {
            let p = dir.join(&name);
            let md = fs::symlink_metadata(&p).expect("lstat");
            let ft = md.file_type();
            let kind = if ft.is_dir() {
                "dir"
            } else if ft.is_file() {
                "file"
            } else if ft.is_symlink() {
                "symlink"
            } else if ft.is_char_device() {
                "char"
            } else if ft.is_block_device() {
                "block"
            } else if ft.is_fifo() {
                "fifo"
            } else {
                "other"
            };
            let content = if ft.is_file() {
                let mut data = Vec::new();
                fs::File::open(&p)
                    .expect("open")
                    .read_to_end(&mut data)
                    .expect("read");
                String::from_utf8_lossy(&data).into_owned()
            } else if ft.is_symlink() {
                fs::read_link(&p)
                    .expect("readlink")
                    .to_string_lossy()
                    .into_owned()
            } else {
                String::new()
            };
            let mut xattrs: Vec<String> = xattr::list(&p)
                .expect("xattrs")
                .filter(|n| !n.to_string_lossy().starts_with("trusted.overlay."))
                .map(|n| {
                    let v = xattr::get(&p, &n).expect("xattr").unwrap_or_default();
                    format!("{}={}", n.to_string_lossy(), String::from_utf8_lossy(&v))
                })
                .collect();
            xattrs.sort();
            let mtime = md.mtime();
            let rel = p
                .strip_prefix(root)
                .expect("prefix")
                .to_string_lossy()
                .into_owned();
            out.insert(
                rel,
                format!(
                    "{kind} {:o} {}:{} size={} rdev={} mtime={mtime} [{content}] {xattrs:?}",
                    md.mode() & 0o7777,
                    md.uid(),
                    md.gid(),
                    if ft.is_file() { md.len() } else { 0 },
                    md.rdev(),
                ),
            );
            if ft.is_dir() {
                walk(root, &p, out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// Like [`manifest`] but without directory mtimes.
pub fn manifest_no_dir_times(root: &Path) -> BTreeMap<String, String> {
    let mut m = manifest(root);
    for v in m.values_mut() {
        if v.starts_with("dir ") {
            if let Some(i) = v.find("mtime=") {
                let end = v[i..].find(' ').map_or(v.len(), |e| i + e);
                v.replace_range(i..end, "mtime=-");
            }
        }
    }
    m
}

/// Asserts two manifests are equal, showing only the differing paths.
pub fn assert_same_tree(a: &BTreeMap<String, String>, b: &BTreeMap<String, String>) {
    let mut diffs = Vec::new();
    for k in a.keys().chain(b.keys()) {
        if a.get(k) != b.get(k) && !diffs.iter().any(|(p, _, _)| p == k) {
            diffs.push((k.clone(), a.get(k).cloned(), b.get(k).cloned()));
        }
    }
    assert!(diffs.is_empty(), "trees differ:\n{diffs:#?}");
}
