//! The file drivers' write side: append each record to the current file with
//! one write, and rotate as dockerd does when the next record would take the
//! file past max-size (`log` → `log.1` → `log.2` …, the oldest dropped, at
//! most max-file files in all; rotated files gzip-compressed in the
//! background when asked).

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::SystemTime;

use flate2::{Compression, GzBuilder};
use nix::fcntl::{Flock, FlockArg};

use crate::options::FileLimits;
use crate::reader::Format;
use crate::timefmt::Rfc3339Nano;

/// dockerd's mode for log files.
const FILE_MODE: u32 = 0o640;

/// `.<base name>.lock` beside the log: the writer holds it exclusively
/// while it renames files, readers shared while they list and open them, so
/// a reader in another process never sees names half shifted. Hidden, so
/// log shippers globbing `*.log` skip it.
pub(crate) fn lock_path(base: &Path) -> PathBuf {
    let name = base.file_name().map(|n| n.to_string_lossy().into_owned());
    base.with_file_name(format!(".{}.lock", name.unwrap_or_default()))
}

/// Takes the rotation lock (blocking). None when it cannot be had (no
/// directory, a read-only one): the lock narrows races, nothing depends on
/// it for correctness, so going on without it beats failing.
pub(crate) fn lock(base: &Path, exclusive: bool) -> Option<Flock<File>> {
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(FILE_MODE)
        .open(lock_path(base))
        .ok()?;
    let arg = if exclusive {
        FlockArg::LockExclusive
    } else {
        FlockArg::LockShared
    };
    Flock::lock(file, arg).ok()
}

/// A rotated file's name: `<base>.<index>` or `<base>.<index>.gz`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rotated {
    pub index: u32,
    pub gz: bool,
    pub path: PathBuf,
}

pub(crate) fn with_suffix(base: &Path, suffix: &str) -> PathBuf {
    let mut name = base.as_os_str().to_os_string();
    name.push(suffix);
    PathBuf::from(name)
}

pub(crate) fn rotated_path(base: &Path, index: u32, gz: bool) -> PathBuf {
    with_suffix(base, &format!(".{index}{}", if gz { ".gz" } else { "" }))
}

/// What a name in the log directory is, relative to `base`.
enum Kind {
    Rotated(u32, bool),
    /// A compression in progress (or abandoned by a crash).
    Partial,
}

fn classify(base_name: &str, name: &str) -> Option<Kind> {
    let rest = name.strip_prefix(base_name)?.strip_prefix('.')?;
    let (digits, suffix) = rest.split_at(rest.find('.').unwrap_or(rest.len()));
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let index: u32 = digits.parse().ok()?;
    match suffix {
        "" => Some(Kind::Rotated(index, false)),
        ".gz" => Some(Kind::Rotated(index, true)),
        ".gz.tmp" => Some(Kind::Partial),
        _ => None,
    }
}

/// Every rotated file and leftover partial compression of `base`.
fn scan(base: &Path) -> io::Result<(Vec<Rotated>, Vec<PathBuf>)> {
    let (Some(dir), Some(base_name)) = (base.parent(), base.file_name().and_then(|n| n.to_str()))
    else {
        return Ok((Vec::new(), Vec::new()));
    };
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((Vec::new(), Vec::new())),
        Err(e) => return Err(e),
    };
    let mut rotated = Vec::new();
    let mut partial = Vec::new();
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        match classify(base_name, name) {
            Some(Kind::Rotated(index, gz)) => rotated.push(Rotated {
                index,
                gz,
                path: entry.path(),
            }),
            Some(Kind::Partial) => partial.push(entry.path()),
            None => {}
        }
    }
    Ok((rotated, partial))
}

/// The rotated files to read, oldest (highest index) first; when an index
/// has both forms (a compression just finished), the plain one.
pub(crate) fn list_rotated(base: &Path) -> io::Result<Vec<Rotated>> {
    let (mut rotated, _) = scan(base)?;
    rotated.sort_by_key(|r| (std::cmp::Reverse(r.index), r.gz));
    rotated.dedup_by_key(|r| r.index);
    Ok(rotated)
}

/// Every rotated file, in both forms where both exist.
pub(crate) fn list_all_rotated(base: &Path) -> io::Result<Vec<Rotated>> {
    scan(base).map(|(rotated, _)| rotated)
}

/// The current file, every rotated file and leftovers: what disk usage and
/// removal cover.
pub(crate) fn all_files(base: &Path) -> io::Result<Vec<PathBuf>> {
    let (rotated, partial) = scan(base)?;
    let mut files: Vec<PathBuf> = rotated.into_iter().map(|r| r.path).collect();
    files.extend(partial);
    files.push(base.to_path_buf());
    files.push(lock_path(base));
    Ok(files)
}

fn remove_if_present(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn open_current(base: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(FILE_MODE)
        .open(base)
}

/// The current log file and its rotation state.
#[derive(Debug)]
pub(crate) struct RotatingFile {
    base: PathBuf,
    file: File,
    size: u64,
    limits: FileLimits,
    /// The background compression of `<base>.1`, joined before the next
    /// rotation touches the rotated files.
    compressor: Option<JoinHandle<()>>,
    last_time: Option<SystemTime>,
}

impl RotatingFile {
    /// Opens (creating) the current file for appending. A record torn by a
    /// crash mid-write is cut off so the next one starts on a boundary.
    pub(crate) fn open(base: &Path, limits: FileLimits, format: Format) -> io::Result<Self> {
        if let Some(dir) = base.parent() {
            // Logs can hold secrets: a directory made here is the owner's.
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)?;
        }
        let file = open_current(base)?;
        let len = file.metadata()?.len();
        let end = format.valid_end(&file, len)?;
        if end < len {
            file.set_len(end)?;
        }
        Ok(RotatingFile {
            base: base.to_path_buf(),
            file,
            size: end,
            limits,
            compressor: None,
            last_time: None,
        })
    }

    /// Appends one whole record (one write, so readers see it at once).
    pub(crate) fn write_record(&mut self, record: &[u8], time: SystemTime) -> io::Result<()> {
        let len = record.len() as u64;
        if let Some(max) = self.limits.max_size {
            if self.size > 0 && self.size.saturating_add(len) > max {
                self.rotate()?;
            }
        }
        if let Err(e) = (&self.file).write_all(record) {
            // A short write (disk full) would glue the next record to a torn
            // one: cut it off.
            let _ = self.file.set_len(self.size);
            return Err(e);
        }
        self.size += len;
        self.last_time = Some(time);
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.wait_for_compressor();
        let _lock = lock(&self.base, true);
        let max_file = self.limits.max_file;
        if max_file >= 2 {
            let (mut rotated, partial) = scan(&self.base)?;
            for path in partial {
                remove_if_present(&path)?;
            }
            rotated.sort_by_key(|r| std::cmp::Reverse(r.index));
            for r in rotated {
                if r.index >= max_file - 1 {
                    remove_if_present(&r.path)?;
                } else {
                    fs::rename(&r.path, rotated_path(&self.base, r.index + 1, r.gz))?;
                }
            }
            match fs::rename(&self.base, rotated_path(&self.base, 1, false)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        } else {
            remove_if_present(&self.base)?;
        }
        let file = open_current(&self.base)?;
        // Empty even if the rename above could not move an old file away.
        file.set_len(0)?;
        self.file = file;
        self.size = 0;
        if self.limits.compress && max_file >= 2 {
            let plain = rotated_path(&self.base, 1, false);
            let last_time = self.last_time;
            // A failed compression leaves the plain file, which readers
            // take as well; nothing is lost.
            self.compressor = Some(std::thread::spawn(move || {
                let _ = compress(&plain, last_time);
            }));
        }
        Ok(())
    }

    fn wait_for_compressor(&mut self) {
        if let Some(handle) = self.compressor.take() {
            let _ = handle.join();
        }
    }

    /// Waits for a compression in progress; the file itself holds nothing
    /// unwritten.
    pub(crate) fn close(&mut self) {
        self.wait_for_compressor();
    }
}

/// Compresses `<name>` into `<name>.gz` (through `<name>.gz.tmp`, so a
/// reader never opens half a gzip file), then removes `<name>`. The gzip
/// header's extra field holds `{"lastTime":…}` as dockerd writes it, so a
/// reader with `since` can skip the file without inflating it.
fn compress(plain: &Path, last_time: Option<SystemTime>) -> io::Result<()> {
    let gz = with_suffix(plain, ".gz");
    let tmp = with_suffix(plain, ".gz.tmp");
    let result = (|| {
        let mut input = File::open(plain)?;
        let output = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(FILE_MODE)
            .open(&tmp)?;
        let mut builder = GzBuilder::new();
        if let Some(t) = last_time {
            let mut extra = b"{\"lastTime\":\"".to_vec();
            Rfc3339Nano::default().push(&mut extra, t);
            extra.extend_from_slice(b"\"}");
            builder = builder.extra(extra);
        }
        let mut encoder = builder.write(BufWriter::new(output), Compression::default());
        io::copy(&mut input, &mut encoder)?;
        encoder.finish()?.flush()?;
        fs::rename(&tmp, &gz)
    })();
    match result {
        Ok(()) => remove_if_present(plain),
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// The `lastTime` a compressed file's header records, if any.
pub(crate) fn gz_last_time(header_extra: Option<&[u8]>) -> Option<SystemTime> {
    #[derive(serde::Deserialize)]
    struct Extra {
        #[serde(rename = "lastTime")]
        last_time: String,
    }
    let extra: Extra = serde_json::from_slice(header_extra?).ok()?;
    crate::timefmt::parse_rfc3339(&extra.last_time)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn rotated_names_are_recognised_and_ordered_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("c-json.log");
        for name in [
            "c-json.log",
            "c-json.log.1",
            "c-json.log.1.gz",
            "c-json.log.2.gz",
            "c-json.log.10",
            "c-json.log.3.gz.tmp",
            "c-json.log.x",
            "c-json.logs.1",
            "other.log.1",
        ] {
            fs::write(dir.path().join(name), b"").unwrap();
        }
        let listed: Vec<(u32, bool)> = list_rotated(&base)
            .unwrap()
            .into_iter()
            .map(|r| (r.index, r.gz))
            .collect();
        assert_eq!(listed, vec![(10, false), (2, true), (1, false)]);
        let mut all: Vec<String> = all_files(&base)
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        all.sort();
        assert_eq!(
            all,
            [
                ".c-json.log.lock",
                "c-json.log",
                "c-json.log.1",
                "c-json.log.1.gz",
                "c-json.log.10",
                "c-json.log.2.gz",
                "c-json.log.3.gz.tmp"
            ]
        );
    }
}
