//! Helpers for tests that drive whole engines (dockerd, podman, berthd):
//! output capture, the docker CLI against one daemon, stopping processes by
//! PID, and removing the mounts and cgroups such an engine leaves behind.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use nix::mount::{umount2, MntFlags};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag};
use nix::unistd::Pid;

use crate::{output_with_timeout, unescape_mountinfo};

/// The longest one docker (or berth) CLI command may take.
pub const CLI_TIMEOUT: Duration = Duration::from_secs(120);

/// The longest a daemon may take to answer its first `/_ping`.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

pub fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut buf);
        }
        buf
    })
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

pub fn describe(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    )
}

pub fn assert_success(out: &Output, what: &str) -> String {
    assert!(out.status.success(), "{what} failed: {}", describe(out));
    text(&out.stdout)
}

/// The docker CLI: docker 28 from /usr/local/bin if installed, else Debian's.
pub fn docker_cli() -> PathBuf {
    ["/usr/local/bin/docker", "/usr/bin/docker"]
        .into_iter()
        .map(PathBuf::from)
        .find(|path| path.is_file())
        .expect("no docker CLI in /usr/local/bin or /usr/bin (package docker.io)")
}

/// `program` (the docker CLI, or the berth CLI that speaks like it) against
/// the daemon at `socket` only: no host config or environment, the classic
/// builder, times in UTC.
pub fn cli_command(program: &Path, socket: &Path, config_dir: &Path) -> Command {
    let mut command = Command::new(program);
    command
        .env_remove("DOCKER_HOST")
        .env_remove("BERTH_HOST")
        .env_remove("DOCKER_API_VERSION")
        .env_remove("DOCKER_CONTEXT")
        .env_remove("DOCKER_TLS_VERIFY")
        .env_remove("DOCKER_CERT_PATH")
        .env("DOCKER_CONFIG", config_dir)
        .env("DOCKER_BUILDKIT", "0")
        .env("TZ", "UTC")
        .arg("--host")
        .arg(format!("unix://{}", socket.display()));
    command
}

/// A daemon a test started, as the docker CLI reaches it.
pub trait DockerApi {
    /// "dockerd" or "berthd", for messages.
    fn name(&self) -> &str;
    /// The private directory the daemon and its clients keep their files in.
    fn dir(&self) -> &Path;
    fn socket(&self) -> PathBuf;
    fn log(&self) -> String;

    /// `program` against this daemon, with its own client config directory.
    fn cli_command(&self, program: &Path) -> Command {
        cli_command(program, &self.socket(), &self.dir().join("cli"))
    }

    fn docker_command(&self) -> Command {
        self.cli_command(&docker_cli())
    }

    /// `docker <args>` within [`CLI_TIMEOUT`]. Never panics, so `Drop` can use it.
    fn try_docker(&self, args: &[&str]) -> std::io::Result<Output> {
        output_with_timeout(self.docker_command().args(args), CLI_TIMEOUT)
    }

    #[track_caller]
    fn docker(&self, args: &[&str]) -> Output {
        self.try_docker(args).unwrap_or_else(|e| {
            panic!("docker {args:?}: {e}\n{} log:\n{}", self.name(), self.log())
        })
    }

    /// `docker <args>`, which must succeed; its stdout.
    #[track_caller]
    fn docker_ok(&self, args: &[&str]) -> String {
        let out = self.docker(args);
        assert!(
            out.status.success(),
            "{} docker {args:?}: {}",
            self.name(),
            describe(&out)
        );
        text(&out.stdout)
    }
}

/// Whether the Engine API on `socket` answers `GET /_ping` with 200.
pub fn ping(socket: &Path) -> bool {
    let Ok(mut stream) = UnixStream::connect(socket) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    if stream
        .write_all(b"GET /_ping HTTP/1.0\r\nHost: daemon\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.starts_with("HTTP/1.0 200") || response.starts_with("HTTP/1.1 200")
}

/// Runs `command` under `script`, which gives it a pty for its terminal the
/// way a user's shell does, so `run -it` gets a real one.
pub fn output_in_terminal(command: &Command, timeout: Duration) -> std::io::Result<Output> {
    let line: Vec<String> = std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|arg| shell_quote(&arg.to_string_lossy()))
        .collect();
    let mut script = Command::new("script");
    script
        .args(["--quiet", "--return", "--command"])
        .arg(line.join(" "))
        .arg("/dev/null");
    for (key, value) in command.get_envs() {
        match value {
            Some(value) => script.env(key, value),
            None => script.env_remove(key),
        };
    }
    output_with_timeout(&mut script, timeout)
}

/// A new directory under /tmp named `<prefix><random>`, which the caller
/// removes with [`remove_private_dir`].
pub fn private_dir(prefix: &str) -> PathBuf {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in("/tmp")
        .expect("create a tempdir under /tmp")
        .keep()
}

/// Unmounts and removes `dir`, leaving it (and saying so) if something stays mounted.
pub fn remove_private_dir(dir: &Path) {
    let left = unmount_under(dir);
    if !left.is_empty() {
        eprintln!(
            "cleanup: leaving {} in place, still mounted: {left:?}",
            dir.display()
        );
        return;
    }
    if let Err(e) = std::fs::remove_dir_all(dir) {
        eprintln!("cleanup: remove {}: {e}", dir.display());
    }
}

/// The lines of `output` in sorted order: for listings whose order is not
/// part of what is compared.
pub fn sorted_lines(output: &str) -> String {
    let mut lines: Vec<&str> = output.lines().collect();
    lines.sort();
    lines.join("\n")
}

/// Seconds since the epoch, as `--since` and `--until` take them.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// Wraps `arg` in single quotes for `sh -c`.
pub fn shell_quote(arg: &str) -> String {
    format!("'{}'", arg.replace('\'', r"'\''"))
}

/// Mount points at or below `dir` in this mount namespace, deepest first.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    // Later lines are mounted on top of earlier ones: unmount in reverse order.
    let mut mounts: Vec<PathBuf> = info
        .lines()
        .rev()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|field| PathBuf::from(unescape_mountinfo(field)))
        .filter(|mount_point| mount_point.starts_with(dir))
        .collect();
    mounts.sort_by_key(|mount_point| std::cmp::Reverse(mount_point.components().count()));
    mounts
}

/// Lazily unmounts everything at or below `dir`; returns what is still mounted.
pub fn unmount_under(dir: &Path) -> Vec<PathBuf> {
    for _ in 0..5 {
        let mounts = mounts_under(dir);
        if mounts.is_empty() {
            break;
        }
        for mount_point in mounts {
            if let Err(e) = umount2(&mount_point, MntFlags::MNT_DETACH) {
                eprintln!("cleanup: umount {}: {e}", mount_point.display());
            }
        }
    }
    mounts_under(dir)
}

/// True once `pid` has exited (reaping it if it is our child).
pub fn has_exited(pid: Pid) -> bool {
    let _ = waitpid(pid, Some(WaitPidFlag::WNOHANG));
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name: "pid (comm) S ...".
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z') || rest.starts_with('X')),
        Err(_) => true,
    }
}

/// SIGTERM, then SIGKILL after `grace`, for a process we identified by PID.
pub fn stop_process(pid: Pid, grace: Duration) {
    if has_exited(pid) {
        return;
    }
    let _ = kill(pid, Signal::SIGTERM);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if has_exited(pid) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = kill(pid, Signal::SIGKILL);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !has_exited(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The cgroup v1 hierarchies and the cgroup2 mount of this host.
pub fn cgroup_hierarchies() -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir("/sys/fs/cgroup") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|entry| entry.file_type().is_ok_and(|kind| kind.is_dir()))
        .map(|entry| entry.path())
        .collect()
}

/// Every cgroup directory at or below `dir`, children before parents.
pub fn cgroup_tree(dir: &Path) -> Vec<PathBuf> {
    let mut tree = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
                tree.extend(cgroup_tree(&entry.path()));
            }
        }
    }
    if dir.is_dir() {
        tree.push(dir.to_path_buf());
    }
    tree
}

/// Kills whatever is left in the cgroup subtree `parent` and removes it.
pub fn remove_cgroup_subtree(parent: &str) {
    let relative = parent.trim_start_matches('/');
    for hierarchy in cgroup_hierarchies() {
        let tree = cgroup_tree(&hierarchy.join(relative));
        for cgroup in &tree {
            let procs = std::fs::read_to_string(cgroup.join("cgroup.procs")).unwrap_or_default();
            for pid in procs.lines().filter_map(|line| line.trim().parse().ok()) {
                stop_process(Pid::from_raw(pid), Duration::ZERO);
            }
        }
        for cgroup in tree {
            if let Err(e) = std::fs::remove_dir(&cgroup) {
                eprintln!("cleanup: rmdir {}: {e}", cgroup.display());
            }
        }
    }
}

/// Processes (other than this one) whose command line names `dir`: with a
/// unique private directory, exactly those an engine under test started.
pub fn processes_naming(dir: &Path) -> Vec<Pid> {
    let own = std::process::id();
    let needle = dir.as_os_str().as_encoded_bytes();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid as u32 != own)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|cmdline| cmdline.windows(needle.len()).any(|w| w == needle))
        })
        .map(Pid::from_raw)
        .collect()
}
