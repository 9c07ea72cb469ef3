//! Container log drivers. The shim writes through a [`LogWriter`]; the daemon
//! reads back (tail, since/until, follow) with [`read_logs`]. Synchronous: the
//! shim has no async runtime.
//!
//! Drivers, as dockerd's: `json-file` (the default, also for an empty driver
//! name; dockerd's exact file format, see `json_file.rs`), `local` (Berth's
//! own record encoding, see `local.rs`), `none`, `syslog` and `journald`
//! (write only). Berth differs from dockerd in one default: json-file without
//! `max-size` keeps [`DEFAULT_MAX_FILE`] files of [`DEFAULT_MAX_SIZE`]
//! instead of growing without bound (`max-size=-1` opts out); see
//! [`effective_opts`]. The journald driver sends to
//! `/run/systemd/journal/socket`, or to the path in the environment variable
//! `BERTH_JOURNAL_SOCKET` when that is set.
#![forbid(unsafe_code)]

mod journald;
mod json_file;
mod local;
mod options;
mod reader;
mod rotate;
mod syslog;
mod tag;
mod timefmt;

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::SystemTime;

use options::{check_known, invalid, FileLimits};
use reader::Format;
use rotate::RotatingFile;

/// json-file's `max-size` when none is given (dockerd: unlimited). Docker's
/// decimal units: 20,000,000 bytes.
pub const DEFAULT_MAX_SIZE: &str = "20m";
/// json-file's `max-file` when `max-size` is not given (dockerd: 1).
pub const DEFAULT_MAX_FILE: &str = "5";

/// Which output stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Stdout,
    Stderr,
}

/// `--log-driver` and `--log-opt`, after the daemon's defaults were merged in.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LogConfig {
    /// json-file, local, none, syslog, journald.
    pub driver: String,
    pub opts: BTreeMap<String, String>,
}

/// What a driver may need to know about the container (tag templates,
/// `labels`/`env` options, where file drivers keep their files).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct LogContext {
    /// 64 hex characters.
    pub container_id: String,
    /// Without Docker's leading `/`.
    pub container_name: String,
    /// As the user gave it (e.g. `busybox:latest`).
    pub image_name: String,
    /// `sha256:…`.
    pub image_id: String,
    pub labels: BTreeMap<String, String>,
    /// `KEY=value` as the container sees it.
    pub env: Vec<String>,
    /// The container's directory under the data-root (`containers/<id>`);
    /// json-file writes `<dir>/<id>-json.log`, local `<dir>/local-logs/container.log`.
    pub dir: PathBuf,
    /// Daemon name for the `{{.DaemonName}}` tag field.
    pub daemon_name: String,
}

/// One log entry: a line with its newline, or a partial line (no newline; the
/// writer got more than a buffer's worth without one).
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub stream: Stream,
    pub line: Vec<u8>,
    pub time: SystemTime,
    /// Extra attributes (`labels`/`env` log options), shown by `logs --details`.
    pub attrs: BTreeMap<String, String>,
}

/// A driver's write side.
pub trait LogWriter: Send {
    fn write(&mut self, message: &Message) -> Result<()>;
    /// Flushes and closes; called once when the container's output ends.
    fn close(&mut self) -> Result<()>;
}

/// What `docker logs` asks for.
#[derive(Debug, Clone, Default)]
pub struct ReadOptions {
    pub stdout: bool,
    pub stderr: bool,
    /// Last N lines only (`--tail N`); None for all.
    pub tail: Option<usize>,
    pub since: Option<SystemTime>,
    pub until: Option<SystemTime>,
    /// Keep waiting for new lines (`-f`) until `stop` is set or `until` passes.
    pub follow: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("unknown log driver {0:?}")]
    UnknownDriver(String),
    #[error("unknown log opt '{opt}' for {driver} log driver")]
    UnknownOption { driver: String, opt: String },
    #[error("invalid value {value:?} for log opt '{opt}': {reason}")]
    InvalidOption {
        opt: String,
        value: String,
        reason: String,
    },
    #[error("configured logging driver does not support reading")]
    ReadingUnsupported,
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T> = std::result::Result<T, Error>;

fn io_error(context: String, source: io::Error) -> Error {
    Error::Io { context, source }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Driver {
    JsonFile,
    Local,
    None,
    Syslog,
    Journald,
}

fn driver(config: &LogConfig) -> Result<Driver> {
    Ok(match config.driver.as_str() {
        "" | "json-file" => Driver::JsonFile,
        "local" => Driver::Local,
        "none" => Driver::None,
        "syslog" => Driver::Syslog,
        "journald" => Driver::Journald,
        other => return Err(Error::UnknownDriver(other.to_string())),
    })
}

const JSON_FILE_OPTIONS: &[&str] = &[
    "max-file",
    "max-size",
    "compress",
    "labels",
    "labels-regex",
    "env",
    "env-regex",
    "tag",
];
const LOCAL_OPTIONS: &[&str] = &["max-file", "max-size", "compress"];
/// Options dockerd takes for every driver (the delivery mode between the
/// container and the driver), checked here and left out of the driver's own.
const GENERIC_OPTIONS: &[&str] = &["mode", "max-buffer-size"];

/// Checks `mode`/`max-buffer-size` and returns the driver's own options.
fn driver_opts(opts: &BTreeMap<String, String>) -> Result<BTreeMap<String, String>> {
    let mode = opts.get("mode").map_or("", String::as_str);
    if !matches!(mode, "" | "blocking" | "non-blocking") {
        return Err(invalid(
            "mode",
            mode,
            "logging mode not supported: expected blocking or non-blocking",
        ));
    }
    if let Some(size) = opts.get("max-buffer-size") {
        if mode != "non-blocking" {
            return Err(invalid(
                "max-buffer-size",
                size,
                "max-buffer-size is only supported with mode=non-blocking",
            ));
        }
        if options::parse_size(size).is_none() {
            return Err(invalid(
                "max-buffer-size",
                size,
                "expected a size such as 4m",
            ));
        }
    }
    Ok(opts
        .iter()
        .filter(|(k, _)| !GENERIC_OPTIONS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect())
}

/// Checks the driver name and its options before a container is created, so a
/// bad `--log-opt` is refused at `create`, as dockerd does.
pub fn validate(config: &LogConfig) -> Result<()> {
    let driver = driver(config)?;
    if driver == Driver::None {
        // dockerd ignores options given to the none driver.
        return Ok(());
    }
    let opts = driver_opts(&config.opts)?;
    match driver {
        Driver::JsonFile => {
            check_known("json-file", &opts, JSON_FILE_OPTIONS)?;
            options::json_file_limits(&opts)?;
            if let Some(t) = opts.get("tag") {
                tag::check(t)?;
            }
            tag::check_attribute_opts(&opts)
        }
        Driver::Local => {
            check_known("local", &opts, LOCAL_OPTIONS)?;
            options::local_limits(&opts).map(drop)
        }
        Driver::Syslog => syslog::validate(&opts),
        Driver::Journald => journald::validate(&opts),
        Driver::None => Ok(()),
    }
}

/// The options as the driver applies them: for json-file without `max-size`,
/// Berth's caps (`max-size` [`DEFAULT_MAX_SIZE`], `max-file`
/// [`DEFAULT_MAX_FILE`] unless given) are filled in, for the daemon to show
/// (e.g. in `docker inspect`). Other drivers' options come back unchanged.
pub fn effective_opts(config: &LogConfig) -> BTreeMap<String, String> {
    let mut opts = config.opts.clone();
    if matches!(driver(config), Ok(Driver::JsonFile)) && !opts.contains_key("max-size") {
        opts.insert("max-size".to_string(), DEFAULT_MAX_SIZE.to_string());
        opts.entry("max-file".to_string())
            .or_insert_with(|| DEFAULT_MAX_FILE.to_string());
    }
    opts
}

/// Opens the write side of the container's log driver.
pub fn open_writer(config: &LogConfig, ctx: &LogContext) -> Result<Box<dyn LogWriter>> {
    validate(config)?;
    let opts = driver_opts(&config.opts)?;
    Ok(match driver(config)? {
        Driver::JsonFile => {
            let limits = options::json_file_limits(&opts)?;
            let mut attrs = tag::extra_attributes(&opts, ctx, str::to_string)?;
            // json-file has no default tag: only one the user asked for.
            let tag = tag::render(&opts, ctx, "")?;
            if !tag.is_empty() {
                attrs.insert("tag".to_string(), tag);
            }
            let encoder = json_file::Encoder::new(attrs);
            Box::new(FileWriter::open(
                json_file::path(ctx),
                limits,
                Encoding::Json(encoder),
            )?)
        }
        Driver::Local => Box::new(FileWriter::open(
            local::path(ctx),
            options::local_limits(&opts)?,
            Encoding::Local,
        )?),
        Driver::None => Box::new(NoneWriter),
        Driver::Syslog => Box::new(syslog::open(&opts, ctx)?),
        Driver::Journald => Box::new(journald::open(&opts, ctx, &journald::socket_path())?),
    })
}

/// Reads the container's log, calling `sink` for each message in order, oldest
/// first; with `follow`, keeps going (across rotations) until `stop` is set,
/// `until` has passed, or `sink` returns false.
///
/// `tail` counts the messages of the selected streams, from the end of the
/// whole log; `since`/`until` then apply to those (as dockerd applies them).
/// A record cut short by a crash mid-write, or otherwise unreadable, is
/// skipped. Following polls every 100 ms.
pub fn read_logs(
    config: &LogConfig,
    ctx: &LogContext,
    options: &ReadOptions,
    stop: &AtomicBool,
    sink: &mut dyn FnMut(Message) -> bool,
) -> Result<()> {
    match driver(config)? {
        Driver::JsonFile => {
            reader::read(&json_file::path(ctx), Format::JsonFile, options, stop, sink)
        }
        Driver::Local => reader::read(&local::path(ctx), Format::Local, options, stop, sink),
        Driver::None | Driver::Syslog | Driver::Journald => Err(Error::ReadingUnsupported),
    }
}

/// Bytes the container's log files take on disk (for `system df`).
pub fn disk_usage(config: &LogConfig, ctx: &LogContext) -> u64 {
    let base = match driver(config) {
        Ok(Driver::JsonFile) => json_file::path(ctx),
        Ok(Driver::Local) => local::path(ctx),
        _ => return 0,
    };
    rotate::all_files(&base)
        .unwrap_or_default()
        .iter()
        .filter_map(|p| fs::metadata(p).ok())
        .map(|m| m.len())
        .sum()
}

/// Deletes the container's log files (container removal).
pub fn remove_logs(ctx: &LogContext) -> Result<()> {
    let base = json_file::path(ctx);
    let files = rotate::all_files(&base)
        .map_err(|e| io_error(format!("listing log files in {}", ctx.dir.display()), e))?;
    for file in files {
        remove_file(&file)?;
    }
    let dir = local::dir(ctx);
    match fs::remove_dir_all(&dir) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            Err(io_error(format!("removing {}", dir.display()), e))
        }
        _ => Ok(()),
    }
}

fn remove_file(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            Err(io_error(format!("removing {}", path.display()), e))
        }
        _ => Ok(()),
    }
}

enum Encoding {
    Json(json_file::Encoder),
    Local,
}

/// json-file and local: encode into a reused buffer, one write per message.
struct FileWriter {
    file: RotatingFile,
    encoding: Encoding,
    buf: Vec<u8>,
    path: PathBuf,
}

impl FileWriter {
    fn open(path: PathBuf, limits: FileLimits, encoding: Encoding) -> Result<FileWriter> {
        let format = match encoding {
            Encoding::Json(_) => Format::JsonFile,
            Encoding::Local => Format::Local,
        };
        let file = RotatingFile::open(&path, limits, format)
            .map_err(|e| io_error(format!("opening log file {}", path.display()), e))?;
        Ok(FileWriter {
            file,
            encoding,
            buf: Vec::with_capacity(4096),
            path,
        })
    }
}

impl LogWriter for FileWriter {
    fn write(&mut self, message: &Message) -> Result<()> {
        self.buf.clear();
        match &mut self.encoding {
            Encoding::Json(encoder) => encoder.encode(message, &mut self.buf),
            Encoding::Local => local::encode(message, &mut self.buf),
        }
        let result = self.file.write_record(&self.buf, message.time);
        if self.buf.capacity() > 1 << 20 {
            // One huge line must not pin its buffer for the container's life.
            self.buf = Vec::with_capacity(4096);
        }
        result.map_err(|e| io_error(format!("writing log file {}", self.path.display()), e))
    }

    fn close(&mut self) -> Result<()> {
        self.file.close();
        Ok(())
    }
}

struct NoneWriter;

impl LogWriter for NoneWriter {
    fn write(&mut self, _message: &Message) -> Result<()> {
        Ok(())
    }

    fn close(&mut self) -> Result<()> {
        Ok(())
    }
}

// Tests unwrap freely: a panic is how a test fails.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
