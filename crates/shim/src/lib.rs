//! berth-shim: one small synchronous process per container. It creates the
//! container with Berth's runtime library in-process, or runs another OCI
//! runtime by runc's command line, holds the container's stdio or pty, writes
//! the log, reaps, records the exit status (atomically), and serves the daemon
//! over a UNIX socket under the exec-root. The daemon is never its parent.
//!
//! Process model: [`spawn`] runs `berth-shim serve <state_dir>` with the
//! options as JSON on its stdin, through a fork that exits right before the
//! exec, so the shim is reparented to init from the start. The shim calls
//! `setsid()`, becomes a child subreaper, creates the container (before it
//! starts any thread: the runtime library forks), reports "created" or the
//! error on stdout, and serves `<state_dir>/shim.sock` until the container
//! has exited and the last client is gone (see [`LINGER`]).
//!
//! Files in the state dir: `shim.sock` (0600, removed when the shim exits),
//! `shim.log` (the shim's own diagnostics), `runtime.log` (the runtime's
//! `--log`, JSON), `init.pid`, `exit.json` (written atomically once the
//! container exited), and while they are in use `console.sock`,
//! `exec-<n>.json`, `exec-<n>.pid`, `exec-<n>.sock`.
#![forbid(unsafe_code)]

mod client;
mod console;
mod container_log;
mod launch;
mod oom;
mod protocol;
mod reaper;
mod record;
mod runtime;
mod server;
mod stdio;

use std::path::{Path, PathBuf};

pub use berth_logs::{LogConfig, LogContext, Stream};
pub use client::ShimClient;
pub use protocol::read_frame;

/// How long a shim stays after its container exited and its last client
/// connection closed, unless `shutdown` ends it earlier. A daemon that was
/// down at that moment finds the status in `exit.json` ([`recorded_exit`]).
pub const LINGER: std::time::Duration = std::time::Duration::from_secs(2);

/// Everything a shim needs to run one container.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SpawnOptions {
    /// The `berth-shim` executable.
    pub shim_binary: PathBuf,
    /// Container id: 1 to 128 characters of `[A-Za-z0-9_.-]` (Berth uses 64 hex).
    pub id: String,
    /// OCI bundle (config.json; root.path absolute).
    pub bundle: PathBuf,
    /// The shim's own directory under the exec-root: socket, pid file,
    /// exit file. Created 0700 by the caller; the socket path
    /// (`<state_dir>/shim.sock`) must fit in 107 bytes.
    pub state_dir: PathBuf,
    /// OCI runtime executable with runc's command line.
    pub runtime: PathBuf,
    /// The runtime is Berth's own: create, start and delete run in the shim
    /// through the runtime library (no runtime process; `runtime` is still
    /// run for kill, pause, exec, ps and update, on the same `runtime_root`).
    #[serde(default)]
    pub in_process: bool,
    /// With `in_process`: a directory (the caller's, 0700) where compiled
    /// seccomp programs are kept for the next container with the same profile.
    #[serde(default)]
    pub seccomp_cache: Option<PathBuf>,
    /// With `in_process`: an fd the shim inherits holding a sealed copy of
    /// the runtime binary (`berth_runtime::sealed_exe::sealed_copy`); the
    /// shim runs the runtime from it, so the runtime need not copy itself
    /// before each exec.
    #[serde(default)]
    pub runtime_fd: Option<i32>,
    /// Extra global arguments for the runtime (daemon.json `runtimeArgs`).
    pub runtime_args: Vec<String>,
    /// The runtime's `--root`.
    pub runtime_root: PathBuf,
    /// The container's process has a pty (config.json `process.terminal`
    /// must agree).
    pub tty: bool,
    /// Keep the container's stdin open for attach (`-i`).
    pub open_stdin: bool,
    /// Close the container's stdin when an attached client ends its input
    /// (not with a tty, as dockerd).
    pub stdin_once: bool,
    pub log: LogConfig,
    pub log_context: LogContext,
}

/// How a container (or exec) process ended, as recorded by the shim.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ExitStatus {
    /// 128+signal when killed by a signal, as docker reports.
    pub code: i32,
    /// RFC 3339 with nanoseconds.
    pub finished_at: String,
    /// The container's memory cgroup counted an OOM kill (always false for execs).
    pub oom_killed: bool,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ShimState {
    /// Host pid of the container's init.
    pub pid: i32,
    /// created, running, paused, stopped.
    pub status: String,
    pub started_at: Option<String>,
    pub exit: Option<ExitStatus>,
}

/// What an attach asks for.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AttachOptions {
    /// None: the container's main process; Some(id): an exec.
    pub exec: Option<String>,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
}

/// An exec request: the process runs inside the container with stdio the shim holds.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ExecOptions {
    /// 1 to 128 characters of `[A-Za-z0-9_.-]`.
    pub exec_id: String,
    /// OCI runtime-spec `process` object; the shim sets `terminal` from `tty`.
    pub process: serde_json::Value,
    pub tty: bool,
    /// Give the process a stdin for attached clients; it is closed when a
    /// client ends its input (not with a tty).
    pub stdin: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The runtime refused (its own message, e.g. `exec: "foo": executable file not found in $PATH`).
    #[error("{0}")]
    Runtime(String),
    /// The shim is gone (socket missing or refusing, or it closed the
    /// connection without an answer; the string is then the state dir's last
    /// component, the container id in Berth's layout), or the container
    /// exited and the request needs it running (kill, pause, exec…; the
    /// string is the container id).
    #[error("shim for container {0} is not running")]
    NotRunning(String),
    #[error("no such exec: {0}")]
    NoSuchExec(String),
    /// A malformed request or answer, or a request the shim's state does not
    /// allow (e.g. an exec id used twice).
    #[error("shim protocol: {0}")]
    Protocol(String),
    /// The log driver could not be opened; nothing was created.
    #[error("failed to initialize logging driver: {0}")]
    Log(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

/// Starts a shim for a container and returns once the runtime has *created*
/// it (process waiting at the exec fifo), or with the runtime's error (then
/// no process, runtime state or socket is left). The shim detaches (new
/// session; the daemon is not its parent). The caller must not be a child
/// subreaper, or the shim would be reparented to it.
pub fn spawn(options: &SpawnOptions) -> Result<ShimClient> {
    launch::spawn(options)
}

/// The shim's socket in a state dir.
pub fn socket_path(state_dir: &Path) -> PathBuf {
    state_dir.join("shim.sock")
}

/// The exit status the shim recorded in a state dir, if the
/// container exited; read when the shim is gone (daemon restart).
pub fn recorded_exit(state_dir: &Path) -> Option<ExitStatus> {
    record::read_exit(state_dir)
}

/// Entry point of the `berth-shim` binary; returns the exit code.
pub fn main() -> i32 {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    match args.get(1).and_then(|a| a.to_str()) {
        Some("serve") if args.len() == 3 => server::serve(Path::new(&args[2])),
        Some("--version") => {
            println!("berth-shim {}", env!("CARGO_PKG_VERSION"));
            0
        }
        _ => {
            eprintln!(
                "usage: berth-shim serve <state dir>  (started by berthd with the options as JSON on stdin)"
            );
            2
        }
    }
}
