//! Runs the OCI runtime through runc's command line: `<runtime> <args…>
//! --root R --log <state_dir>/runtime.log --log-format json <op> …`. A failed
//! call becomes `Error::Runtime` with the runtime's own message (its JSON log
//! first, then its stderr), which the daemon maps to exit codes 126/127.
//!
//! With Berth's own runtime (`SpawnOptions::in_process`), create, start and
//! delete are calls into the runtime library instead, with the same state
//! under the same root (so `berth-runtime state/kill/ps…` and the other
//! operations, which still go through the command line, see the container)
//! and the same error messages as the command line logs.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::WaitStatus;
use nix::unistd::Pid;

use crate::reaper::Reaper;
use crate::{Error, Result, SpawnOptions};

/// The longest one runtime call may take (hooks included) before it is
/// killed and the call fails, unless `BERTH_RUNTIME_TIMEOUT` (whole
/// seconds, inherited from the daemon) says otherwise.
pub(crate) const RUNTIME_TIMEOUT: Duration = Duration::from_secs(120);

/// [`RUNTIME_TIMEOUT`], or the seconds `BERTH_RUNTIME_TIMEOUT` gives (an
/// unreadable or zero value keeps the default).
fn runtime_timeout(setting: Option<&str>) -> Duration {
    setting
        .and_then(|s| s.trim().parse::<u64>().ok())
        .filter(|&secs| secs > 0)
        .map_or(RUNTIME_TIMEOUT, Duration::from_secs)
}

/// The most of the runtime's log or stderr read back for an error message.
const MAX_ERROR_TEXT: u64 = 64 * 1024;

pub(crate) const RUNTIME_LOG: &str = "runtime.log";

/// The stdio a `create` or `exec` hands on to the container's process; the
/// runtime writes its own errors to `stderr` too, so a failed call reads
/// whatever is waiting in `stderr_pipe` (the read end) for its message.
pub(crate) struct ProcessStdio<'a> {
    pub stdin: Stdio,
    pub stdout: Stdio,
    pub stderr: Stdio,
    pub stderr_pipe: Option<&'a File>,
}

pub(crate) struct Runtime {
    /// The runtime's executable as errors name it.
    path: PathBuf,
    /// What is executed: `path`, or the daemon's sealed copy of it.
    program: PathBuf,
    args: Vec<String>,
    root: PathBuf,
    id: String,
    state_dir: PathBuf,
    reaper: Arc<Reaper>,
    in_process: bool,
    seccomp_cache: Option<PathBuf>,
    /// How long one runtime call may take.
    timeout: Duration,
}

impl Runtime {
    pub(crate) fn new(options: &SpawnOptions, reaper: Arc<Reaper>) -> Runtime {
        // Berth's runtime from the daemon's sealed copy, when that is what
        // the inherited fd holds.
        let program = match options.runtime_fd.filter(|_| options.in_process) {
            Some(fd) if berth_runtime::sealed_exe::is_sealed_copy(fd) => {
                PathBuf::from(format!("/proc/self/fd/{fd}"))
            }
            _ => options.runtime.clone(),
        };
        Runtime {
            path: options.runtime.clone(),
            program,
            args: options.runtime_args.clone(),
            root: options.runtime_root.clone(),
            id: options.id.clone(),
            state_dir: options.state_dir.clone(),
            reaper,
            in_process: options.in_process,
            seccomp_cache: options.seccomp_cache.clone(),
            timeout: runtime_timeout(std::env::var("BERTH_RUNTIME_TIMEOUT").ok().as_deref()),
        }
    }

    pub(crate) fn in_process(&self) -> bool {
        self.in_process
    }

    /// Creates the container with the runtime library: init gets `stdio`
    /// as its 0, 1 and 2; its pid, and the pty master when the process has
    /// a terminal. The library forks, so the calling process must have no
    /// other thread (see [`single_threaded`]).
    pub(crate) fn create_in_process(
        &self,
        bundle: &Path,
        pid_file: &Path,
        stdio: [BorrowedFd<'_>; 3],
    ) -> Result<(i32, Option<OwnedFd>)> {
        single_threaded()?;
        let created = berth_runtime::container::create(&berth_runtime::container::CreateOptions {
            root: &self.root,
            id: &self.id,
            bundle,
            pid_file: Some(pid_file),
            console_socket: None,
            no_pivot: false,
            preserve_fds: 0,
            stdio: Some(stdio),
            seccomp_cache: self.seccomp_cache.as_deref(),
        })
        .map_err(library_error)?;
        Ok((created.state.pid, created.console))
    }

    fn log_path(&self) -> PathBuf {
        self.state_dir.join(RUNTIME_LOG)
    }

    /// `create --bundle B --pid-file P [--console-socket S] ID`.
    pub(crate) fn create(
        &self,
        bundle: &Path,
        pid_file: &Path,
        console: Option<&Path>,
        stdio: ProcessStdio<'_>,
    ) -> Result<()> {
        let mut args: Vec<OsString> = vec!["create".into(), "--bundle".into(), bundle.into()];
        args.extend(["--pid-file".into(), pid_file.into()]);
        if let Some(console) = console {
            args.extend(["--console-socket".into(), console.into()]);
        }
        args.push(self.id.clone().into());
        self.invoke("create", &args, Some(stdio), None).map(drop)
    }

    /// `exec --process F --pid-file P -d [--console-socket S] ID`.
    pub(crate) fn exec(
        &self,
        process_file: &Path,
        pid_file: &Path,
        console: Option<&Path>,
        stdio: ProcessStdio<'_>,
    ) -> Result<()> {
        let mut args: Vec<OsString> = vec!["exec".into(), "--process".into(), process_file.into()];
        args.extend(["--pid-file".into(), pid_file.into(), "-d".into()]);
        // Berth's runtime reuses the programs its create compiled.
        if let Some(cache) = self.seccomp_cache.as_ref().filter(|_| self.in_process) {
            args.extend(["--seccomp-cache".into(), cache.into()]);
        }
        if let Some(console) = console {
            args.extend(["--console-socket".into(), console.into()]);
        }
        args.push(self.id.clone().into());
        self.invoke("exec", &args, Some(stdio), None).map(drop)
    }

    pub(crate) fn start(&self) -> Result<()> {
        if self.in_process {
            // Poststart hooks are the library's children: not reaped here.
            return self
                .reaper
                .exclusive(|| berth_runtime::container::start(&self.root, &self.id))
                .map(drop)
                .map_err(library_error);
        }
        self.simple(&["start", &self.id])
    }

    pub(crate) fn kill(&self, signal: i32, all: bool) -> Result<()> {
        let signal = signal.to_string();
        if all {
            self.simple(&["kill", "--all", &self.id, &signal])
        } else {
            self.simple(&["kill", &self.id, &signal])
        }
    }

    pub(crate) fn pause(&self) -> Result<()> {
        self.simple(&["pause", &self.id])
    }

    pub(crate) fn resume(&self) -> Result<()> {
        self.simple(&["resume", &self.id])
    }

    pub(crate) fn delete(&self, force: bool) -> Result<()> {
        if self.in_process {
            // Poststop hooks are the library's children: not reaped here.
            return self
                .reaper
                .exclusive(|| berth_runtime::container::delete(&self.root, &self.id, force))
                .map_err(library_error);
        }
        if force {
            self.simple(&["delete", "--force", &self.id])
        } else {
            self.simple(&["delete", &self.id])
        }
    }

    /// `ps --format json ID`: host pids.
    pub(crate) fn ps(&self) -> Result<Vec<i32>> {
        let args = ["ps", "--format", "json", &self.id].map(OsString::from);
        let out = self.invoke("ps", &args, None, None)?;
        serde_json::from_slice(&out).map_err(|e| {
            Error::Runtime(format!(
                "{} ps printed no list of pids ({e}): {}",
                self.path.display(),
                String::from_utf8_lossy(&out).trim()
            ))
        })
    }

    /// `update --resources - ID` with the resources JSON on stdin.
    pub(crate) fn update(&self, resources: &serde_json::Value) -> Result<()> {
        let data = serde_json::to_vec(resources)
            .map_err(|e| Error::Protocol(format!("resources: {e}")))?;
        let args = ["update", "--resources", "-", &self.id].map(OsString::from);
        self.invoke("update", &args, None, Some(&data)).map(drop)
    }

    /// `<op> [flags…] ID` with nothing on stdin and the output captured.
    fn simple(&self, args: &[&str]) -> Result<()> {
        let args: Vec<OsString> = args.iter().map(OsString::from).collect();
        self.invoke(&args[0].to_string_lossy(), &args, None, None)
            .map(drop)
    }

    /// Runs the runtime to completion (bounded by its timeout) and
    /// returns what it printed on stdout.
    fn invoke(
        &self,
        op: &str,
        args: &[OsString],
        stdio: Option<ProcessStdio<'_>>,
        stdin_data: Option<&[u8]>,
    ) -> Result<Vec<u8>> {
        let log_offset = std::fs::metadata(self.log_path()).map_or(0, |m| m.len());
        let mut command = Command::new(&self.program);
        command
            .args(&self.args)
            .arg("--root")
            .arg(&self.root)
            .arg("--log")
            .arg(self.log_path())
            .args(["--log-format", "json"])
            .args(args)
            // The shim's allocator tuning is not the runtime's business.
            .env_remove("MALLOC_ARENA_MAX");
        let spawn_error = |e: io::Error| {
            Error::Runtime(format!(
                "{}: {}",
                self.path.display(),
                io_error_text(&e, &self.path)
            ))
        };
        let mut captured_stdout = None;
        let mut captured_stderr = None;
        let mut stderr_pipe = None;
        match stdio {
            Some(stdio) => {
                command
                    .stdin(stdio.stdin)
                    .stdout(stdio.stdout)
                    .stderr(stdio.stderr);
                stderr_pipe = stdio.stderr_pipe;
            }
            None => {
                let stdin = match stdin_data {
                    Some(data) => {
                        let mut file = self.scratch_file()?;
                        file.write_all(data)
                            .and_then(|()| file.seek(SeekFrom::Start(0)).map(drop))
                            .map_err(|e| Error::io("runtime stdin", e))?;
                        Stdio::from(file)
                    }
                    None => Stdio::null(),
                };
                let out = self.scratch_file()?;
                let err = self.scratch_file()?;
                command
                    .stdin(stdin)
                    .stdout(clone_file(&out)?)
                    .stderr(clone_file(&err)?);
                captured_stdout = Some(out);
                captured_stderr = Some(err);
            }
        }
        let pid = self.reaper.spawn(&mut command).map_err(spawn_error)?;
        // The command holds the parent's copies of the container's pipe
        // ends: close them now, so EOF means the container closed its side.
        drop(command);
        let status = match self.reaper.wait(pid, Some(self.timeout)) {
            Some(status) => status,
            None => {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                self.reaper.wait(pid, None);
                return Err(Error::Runtime(format!(
                    "{} {op} did not finish within {} s",
                    self.path.display(),
                    self.timeout.as_secs()
                )));
            }
        };
        if status == WaitStatus::Exited(Pid::from_raw(pid), 0) {
            let mut out = Vec::new();
            if let Some(mut file) = captured_stdout {
                file.seek(SeekFrom::Start(0))
                    .and_then(|_| file.read_to_end(&mut out))
                    .map_err(|e| Error::io("runtime output", e))?;
            }
            return Ok(out);
        }
        let log = read_from(&self.log_path(), log_offset);
        let mut stderr = Vec::new();
        if let Some(mut file) = captured_stderr {
            let _ = file.seek(SeekFrom::Start(0));
            let _ = file.take(MAX_ERROR_TEXT).read_to_end(&mut stderr);
        }
        if let Some(pipe) = stderr_pipe {
            stderr.extend(read_available(pipe));
        }
        let failure = format!("{} {op} failed: {}", self.path.display(), describe(status));
        Err(Error::Runtime(error_message(&log, &stderr, &failure)))
    }

    /// An unnamed file in the state dir for the runtime's output.
    fn scratch_file(&self) -> Result<File> {
        scratch_file(&self.state_dir).map_err(|e| Error::io("runtime output file", e))
    }
}

/// A library error as the command line logs it (anyhow's `{:#}`: the
/// error and its sources joined by ": "), so messages do not depend on how
/// the runtime ran.
fn library_error(e: berth_runtime::Error) -> Error {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    Error::Runtime(text)
}

/// Refuses to fork from a process with other threads (a lock one of them
/// held would stay locked forever in the child).
fn single_threaded() -> Result<()> {
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| Error::io("read /proc/self/status", e))?;
    let threads = status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse::<u32>().ok());
    if threads != Some(1) {
        return Err(Error::Protocol(format!(
            "the runtime library forks: the shim must have one thread, it has {threads:?}"
        )));
    }
    Ok(())
}

fn clone_file(file: &File) -> Result<File> {
    file.try_clone()
        .map_err(|e| Error::io("runtime output file", e))
}

/// An unnamed temporary file in `dir` (O_TMPFILE), or on a filesystem
/// without it a named one removed right away.
pub(crate) fn scratch_file(dir: &Path) -> io::Result<File> {
    let unnamed = OpenOptions::new()
        .read(true)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_TMPFILE)
        .open(dir);
    match unnamed {
        Ok(file) => Ok(file),
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::EOPNOTSUPP) | Some(libc::EISDIR)
            ) =>
        {
            static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let path = dir.join(format!(".scratch-{}-{n}", std::process::id()));
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)?;
            std::fs::remove_file(&path)?;
            Ok(file)
        }
        Err(e) => Err(e),
    }
}

fn describe(status: WaitStatus) -> String {
    match status {
        WaitStatus::Exited(_, code) => format!("exit status {code}"),
        WaitStatus::Signaled(_, signal, _) => format!("killed by {signal}"),
        other => format!("{other:?}"),
    }
}

/// "no such file" for a missing runtime names the runtime, as the daemon
/// must not mistake it for the container's missing executable.
fn io_error_text(e: &io::Error, path: &Path) -> String {
    if e.kind() == io::ErrorKind::NotFound {
        format!("OCI runtime {} not found", path.display())
    } else {
        e.to_string()
    }
}

fn read_from(path: &Path, offset: u64) -> Vec<u8> {
    let mut data = Vec::new();
    if let Ok(mut file) = File::open(path) {
        if file.seek(SeekFrom::Start(offset)).is_ok() {
            let _ = file.take(MAX_ERROR_TEXT).read_to_end(&mut data);
        }
    }
    data
}

/// What a pipe holds right now, without waiting for its writers to close.
fn read_available(pipe: &File) -> Vec<u8> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let mut data = Vec::new();
    if fcntl(pipe.as_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).is_err() {
        return data;
    }
    let mut buf = [0u8; 4096];
    let mut reader = pipe;
    while (data.len() as u64) < MAX_ERROR_TEXT {
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => data.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    data
}

/// The runtime's own words for a failure: the last error in its JSON log
/// (runc and berth-runtime log `{"level":"error","msg":…}`), else its
/// stderr, else the last line of a log in another format, else `fallback`.
pub(crate) fn error_message(log: &[u8], stderr: &[u8], fallback: &str) -> String {
    let log = String::from_utf8_lossy(log);
    let mut last_error = None;
    let mut last_line = None;
    for line in log.lines().map(str::trim).filter(|l| !l.is_empty()) {
        last_line = Some(line);
        let Ok(entry) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let level = entry.get("level").and_then(|l| l.as_str()).unwrap_or("");
        if matches!(level, "error" | "fatal" | "panic") {
            if let Some(msg) = entry.get("msg").and_then(|m| m.as_str()) {
                last_error = Some(msg.to_string());
            }
        }
    }
    if let Some(msg) = last_error {
        return msg;
    }
    let stderr = String::from_utf8_lossy(stderr);
    let stderr = stderr.trim();
    if !stderr.is_empty() {
        return stderr.to_string();
    }
    if let Some(line) = last_line.filter(|l| !l.starts_with('{')) {
        return line.to_string();
    }
    fallback.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_timeout_comes_from_the_environment_when_it_reads() {
        assert_eq!(runtime_timeout(None), RUNTIME_TIMEOUT);
        assert_eq!(runtime_timeout(Some("7")), Duration::from_secs(7));
        assert_eq!(runtime_timeout(Some(" 3\n")), Duration::from_secs(3));
        assert_eq!(runtime_timeout(Some("0")), RUNTIME_TIMEOUT);
        assert_eq!(runtime_timeout(Some("soon")), RUNTIME_TIMEOUT);
        assert_eq!(runtime_timeout(Some("-4")), RUNTIME_TIMEOUT);
    }

    #[test]
    fn the_last_logged_error_wins() {
        let log = br#"{"level":"warning","msg":"cgroup busy","time":"t"}
{"level":"error","msg":"runc create failed: unable to start container process: exec: \"nope\": executable file not found in $PATH","time":"t"}
"#;
        assert_eq!(
            error_message(log, b"noise on stderr", "fallback"),
            "runc create failed: unable to start container process: exec: \"nope\": executable file not found in $PATH"
        );
    }

    #[test]
    fn stderr_when_the_log_has_no_error() {
        let log = br#"{"level":"info","msg":"hello","time":"t"}"#;
        assert_eq!(
            error_message(log, b"\nberth-runtime: permission denied\n", "fallback"),
            "berth-runtime: permission denied"
        );
        assert_eq!(
            error_message(b"", b"", "runc start failed"),
            "runc start failed"
        );
        assert_eq!(
            error_message(b"time=\"t\" level=error msg=\"boom\"\n", b"", "x"),
            "time=\"t\" level=error msg=\"boom\""
        );
    }

    #[test]
    fn scratch_files_have_no_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut file = scratch_file(dir.path()).expect("scratch");
        file.write_all(b"x").expect("write");
        assert_eq!(std::fs::read_dir(dir.path()).expect("list").count(), 0);
    }
}
