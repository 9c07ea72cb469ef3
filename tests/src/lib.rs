#![forbid(unsafe_code)]
//! Fixtures for the root integration tests: a busybox root filesystem made from
//! the host's static busybox, OCI bundles around it, and guards that always clean up.
//!
//! Every runtime invocation is bounded by a timeout, so a hung runtime fails a
//! test instead of hanging CI, and every guard undoes what it made on `Drop`,
//! also when the test panics.

pub mod berthd;
pub mod dockerd;
pub mod fake_registry;
pub mod host;

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tempfile::TempDir;

/// The static busybox the fixtures are made from (Debian's `busybox-static`).
pub const BUSYBOX: &str = "/bin/busybox";

/// The longest a single runtime invocation may take before the test fails,
/// unless `$BERTH_TEST_TIMEOUT` (seconds) says otherwise.
pub const RUNTIME_TIMEOUT: Duration = Duration::from_secs(30);

/// The longest the cleanup of one container may wait for the runtime.
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(10);

/// [`RUNTIME_TIMEOUT`], or `$BERTH_TEST_TIMEOUT` seconds when set.
pub fn runtime_timeout() -> Duration {
    std::env::var("BERTH_TEST_TIMEOUT")
        .ok()
        .and_then(|s| s.parse().ok())
        .map(Duration::from_secs)
        .unwrap_or(RUNTIME_TIMEOUT)
}

/// Docker's default capability set (SECURITY.md), in the order moby lists them.
pub const DEFAULT_CAPABILITIES: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// `CapEff` in /proc/self/status for [`DEFAULT_CAPABILITIES`].
pub const DEFAULT_CAP_MASK: &str = "00000000a80425fb";

/// Paths hidden from the container by default (SECURITY.md).
pub const DEFAULT_MASKED_PATHS: [&str; 12] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Paths mounted read-only in the container by default (SECURITY.md).
pub const DEFAULT_READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Writes a minimal busybox root filesystem into `rootfs`: `/bin/busybox`, a
/// symlink per applet, and the files an image usually has (`/etc/passwd`, `/etc/group`).
pub fn make_busybox_rootfs(rootfs: &Path) -> std::io::Result<()> {
    let bin = rootfs.join("bin");
    std::fs::create_dir_all(&bin)?;
    for dir in [
        "etc", "tmp", "proc", "sys", "dev", "root", "home", "var", "usr/bin",
    ] {
        std::fs::create_dir_all(rootfs.join(dir))?;
    }
    std::fs::copy(BUSYBOX, bin.join("busybox"))?;
    let out = Command::new(BUSYBOX).arg("--list").output()?;
    if !out.status.success() {
        return Err(std::io::Error::other("busybox --list failed"));
    }
    for applet in String::from_utf8_lossy(&out.stdout).lines() {
        let applet = applet.trim();
        if applet.is_empty() || applet == "busybox" {
            continue;
        }
        let link = bin.join(applet);
        if !link.exists() {
            std::os::unix::fs::symlink("busybox", &link)?;
        }
    }
    std::fs::write(
        rootfs.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\ndaemon:x:1:1:daemon:/usr/sbin:/bin/false\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    )?;
    std::fs::write(
        rootfs.join("etc/group"),
        "root:x:0:\ndaemon:x:1:\ntty:x:5:\nnogroup:x:65534:\n",
    )?;
    Ok(())
}

/// [`make_busybox_rootfs`] as `dir/rootfs.tar`, for `docker import`; the
/// directory it was made from is removed again. Returns the tar's path.
#[track_caller]
pub fn make_busybox_rootfs_tar(dir: &Path) -> PathBuf {
    let rootfs = dir.join("rootfs");
    make_busybox_rootfs(&rootfs).expect("make busybox rootfs");
    let tar = dir.join("rootfs.tar");
    let mut command = Command::new("tar");
    command.arg("-C").arg(&rootfs).arg("-cf").arg(&tar).arg(".");
    let out = output_with_timeout(&mut command, host::CLI_TIMEOUT)
        .unwrap_or_else(|e| panic!("tar of the busybox rootfs: {e}"));
    host::assert_success(&out, "tar of the busybox rootfs");
    std::fs::remove_dir_all(&rootfs).expect("remove the busybox rootfs");
    tar
}

/// Path of a binary built by this workspace (`target/<profile>/<name>`).
pub fn workspace_binary(name: &str) -> PathBuf {
    let mut dir = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/<test-binary> -> target/<profile>/<name>
    dir.pop();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir.join(name)
}

/// A name no other test, test binary or earlier run uses at the same time:
/// `berth-test-<pid>-<counter>`. Used for container ids and cgroup paths.
pub fn unique_name() -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    format!(
        "berth-test-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Runs `command` with stdin closed and stdout/stderr captured in anonymous
/// files (not pipes: a container that inherits them must not keep the reader
/// waiting). Kills the child, which this function started, after `timeout`.
pub fn output_with_timeout(command: &mut Command, timeout: Duration) -> std::io::Result<Output> {
    let mut stdout = tempfile::tempfile()?;
    let mut stderr = tempfile::tempfile()?;
    let mut child = command
        .stdin(Stdio::null())
        .stdout(stdout.try_clone()?)
        .stderr(stderr.try_clone()?)
        .spawn()?;
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("{command:?} did not finish within {timeout:?}"),
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Ok(Output {
        status,
        stdout: read_all(&mut stdout)?,
        stderr: read_all(&mut stderr)?,
    })
}

fn read_all(file: &mut File) -> std::io::Result<Vec<u8>> {
    let mut data = Vec::new();
    file.seek(SeekFrom::Start(0))?;
    file.read_to_end(&mut data)?;
    Ok(data)
}

/// The path of [`Runtime::under_test`], for engines (dockerd, podman) that are
/// handed the runtime by path; it must exist.
pub fn runtime_under_test() -> PathBuf {
    let path = Runtime::under_test().path;
    assert!(
        path.is_file(),
        "runtime under test {} does not exist: build it with `cargo build -p berth-runtime` \
         or point BERTH_RUNTIME at a runtime binary",
        path.display()
    );
    path
}

/// An OCI runtime binary driven through runc's command line.
#[derive(Debug, Clone)]
pub struct Runtime {
    path: PathBuf,
}

impl Runtime {
    pub fn new(path: impl Into<PathBuf>) -> Runtime {
        Runtime { path: path.into() }
    }

    /// The runtime everything is compared with: `$BERTH_REFERENCE_RUNTIME`, or
    /// Debian's `runc`.
    pub fn reference() -> Runtime {
        match std::env::var_os("BERTH_REFERENCE_RUNTIME") {
            Some(path) => Runtime::new(path),
            None => Runtime::new("/usr/sbin/runc"),
        }
    }

    /// The runtime under test: `$BERTH_RUNTIME`, or the workspace's `berth-runtime`.
    pub fn under_test() -> Runtime {
        match std::env::var_os("BERTH_RUNTIME") {
            Some(path) => Runtime::new(path),
            None => Runtime::new(workspace_binary("berth-runtime")),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A command for this runtime with its state under `root`.
    pub fn command(&self, root: &Path) -> Command {
        let mut command = Command::new(&self.path);
        command.arg("--root").arg(root);
        command
    }
}

impl std::fmt::Display for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.path.display())
    }
}

/// The configuration of a fresh bundle: runc-like defaults with Docker's
/// capabilities, masked and read-only paths, and the cgroup at `cgroups_path`.
pub fn default_config(cgroups_path: &str) -> Value {
    let caps: Vec<&str> = DEFAULT_CAPABILITIES.to_vec();
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": { "uid": 0, "gid": 0 },
            "args": ["sh"],
            "env": [
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "TERM=xterm"
            ],
            "cwd": "/",
            "capabilities": {
                "bounding": caps,
                "effective": caps,
                "inheritable": caps,
                "permitted": caps
            },
            "noNewPrivileges": true
        },
        "root": { "path": "rootfs", "readonly": false },
        "hostname": "berth",
        "mounts": [
            { "destination": "/proc", "type": "proc", "source": "proc",
              "options": ["nosuid", "noexec", "nodev"] },
            { "destination": "/dev", "type": "tmpfs", "source": "tmpfs",
              "options": ["nosuid", "strictatime", "mode=755", "size=65536k"] },
            { "destination": "/dev/pts", "type": "devpts", "source": "devpts",
              "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"] },
            { "destination": "/dev/shm", "type": "tmpfs", "source": "shm",
              "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"] },
            { "destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
              "options": ["nosuid", "noexec", "nodev"] },
            { "destination": "/sys", "type": "sysfs", "source": "sysfs",
              "options": ["nosuid", "noexec", "nodev", "ro"] },
            { "destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
              "options": ["nosuid", "noexec", "nodev", "relatime", "ro"] }
        ],
        "linux": {
            "cgroupsPath": cgroups_path,
            "resources": {
                "devices": [
                    { "allow": false, "access": "rwm" },
                    { "allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm" },
                    { "allow": true, "type": "c", "major": 1, "minor": 5, "access": "rwm" },
                    { "allow": true, "type": "c", "major": 1, "minor": 7, "access": "rwm" },
                    { "allow": true, "type": "c", "major": 1, "minor": 8, "access": "rwm" },
                    { "allow": true, "type": "c", "major": 1, "minor": 9, "access": "rwm" },
                    { "allow": true, "type": "c", "major": 5, "minor": 0, "access": "rwm" },
                    { "allow": true, "type": "c", "major": 5, "minor": 1, "access": "rwm" },
                    { "allow": true, "type": "c", "major": 5, "minor": 2, "access": "rwm" },
                    { "allow": true, "type": "c", "major": 136, "access": "rwm" },
                    { "allow": true, "type": "c", "access": "m" },
                    { "allow": true, "type": "b", "access": "m" }
                ]
            },
            "namespaces": [
                { "type": "pid" },
                { "type": "network" },
                { "type": "ipc" },
                { "type": "uts" },
                { "type": "mount" }
            ],
            "maskedPaths": DEFAULT_MASKED_PATHS.to_vec(),
            "readonlyPaths": DEFAULT_READONLY_PATHS.to_vec()
        }
    })
}

/// An OCI bundle in its own temporary directory: a busybox rootfs and a
/// `config.json` built from [`default_config`] and the builder methods.
///
/// The cgroup path is unique to the bundle. On `Drop`, processes left in that
/// cgroup are killed, the cgroup directories removed, mounts left under the
/// bundle detached, and then the directory is removed (kept if a mount could
/// not be detached, so nothing outside the bundle is ever deleted).
pub struct Bundle {
    dir: Option<TempDir>,
    cgroup_name: String,
    config: Value,
}

impl Bundle {
    /// A bundle with a busybox rootfs and the default config running `sh`.
    pub fn busybox() -> std::io::Result<Bundle> {
        let dir = tempfile::Builder::new().prefix("berth-bundle-").tempdir()?;
        // The container may run as a non-root or mapped user: it must be able
        // to reach its rootfs through the bundle directory.
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )?;
        make_busybox_rootfs(&dir.path().join("rootfs"))?;
        let cgroup_name = unique_name();
        let config = default_config(&format!("/{cgroup_name}"));
        let bundle = Bundle {
            dir: Some(dir),
            cgroup_name,
            config,
        };
        bundle.write_config()?;
        Ok(bundle)
    }

    pub fn path(&self) -> &Path {
        self.dir.as_ref().expect("bundle directory").path()
    }

    pub fn rootfs(&self) -> PathBuf {
        self.path().join("rootfs")
    }

    pub fn config(&self) -> &Value {
        &self.config
    }

    /// Direct access to the config for changes no builder method covers.
    pub fn config_mut(&mut self) -> &mut Value {
        &mut self.config
    }

    /// Writes `config.json`. Every [`Container`] does this before using the bundle.
    pub fn write_config(&self) -> std::io::Result<()> {
        let text = serde_json::to_vec_pretty(&self.config).map_err(std::io::Error::other)?;
        std::fs::write(self.path().join("config.json"), text)
    }

    /// Sets the value at a JSON pointer (`/process/cwd`), creating objects on the way.
    pub fn set(&mut self, pointer: &str, value: Value) -> &mut Self {
        let mut node = &mut self.config;
        for key in pointer.split('/').skip(1) {
            if !node.is_object() {
                *node = json!({});
            }
            node = node
                .as_object_mut()
                .expect("object")
                .entry(key.to_string())
                .or_insert(Value::Null);
        }
        *node = value;
        self
    }

    /// Removes the value at a JSON pointer, if present.
    pub fn unset(&mut self, pointer: &str) -> &mut Self {
        if let Some((parent, key)) = pointer.rsplit_once('/') {
            if let Some(Value::Object(map)) = self.config.pointer_mut(parent) {
                map.remove(key);
            }
        }
        self
    }

    pub fn oci_version(&mut self, version: &str) -> &mut Self {
        self.set("/ociVersion", json!(version))
    }

    pub fn args(&mut self, args: &[&str]) -> &mut Self {
        self.set("/process/args", json!(args))
    }

    /// Runs `script` with `sh -c`.
    pub fn shell(&mut self, script: &str) -> &mut Self {
        self.args(&["sh", "-c", script])
    }

    /// Replaces the whole environment (`KEY=value` entries).
    pub fn env(&mut self, env: &[&str]) -> &mut Self {
        self.set("/process/env", json!(env))
    }

    pub fn cwd(&mut self, cwd: &str) -> &mut Self {
        self.set("/process/cwd", json!(cwd))
    }

    pub fn hostname(&mut self, hostname: &str) -> &mut Self {
        self.set("/hostname", json!(hostname))
    }

    pub fn user(&mut self, uid: u32, gid: u32, additional_gids: &[u32]) -> &mut Self {
        self.set(
            "/process/user",
            json!({ "uid": uid, "gid": gid, "additionalGids": additional_gids }),
        )
    }

    /// Sets the bounding, effective, inheritable and permitted sets to `caps`
    /// and clears the ambient set.
    pub fn capabilities(&mut self, caps: &[&str]) -> &mut Self {
        self.set(
            "/process/capabilities",
            json!({ "bounding": caps, "effective": caps, "inheritable": caps, "permitted": caps }),
        )
    }

    pub fn ambient_capabilities(&mut self, caps: &[&str]) -> &mut Self {
        self.set("/process/capabilities/ambient", json!(caps))
    }

    pub fn no_new_privileges(&mut self, on: bool) -> &mut Self {
        self.set("/process/noNewPrivileges", json!(on))
    }

    /// Adds a process rlimit such as `RLIMIT_NOFILE`.
    pub fn rlimit(&mut self, kind: &str, soft: u64, hard: u64) -> &mut Self {
        let entry = json!({ "type": kind, "soft": soft, "hard": hard });
        match self.config.pointer_mut("/process/rlimits") {
            Some(Value::Array(list)) => list.push(entry),
            _ => {
                self.set("/process/rlimits", json!([entry]));
            }
        }
        self
    }

    pub fn readonly_root(&mut self, readonly: bool) -> &mut Self {
        self.set("/root/readonly", json!(readonly))
    }

    /// Sets the rootfs path as written in config.json (relative to the bundle or absolute).
    pub fn root_path(&mut self, path: &str) -> &mut Self {
        self.set("/root/path", json!(path))
    }

    pub fn memory_limit(&mut self, bytes: i64) -> &mut Self {
        self.set("/linux/resources/memory", json!({ "limit": bytes }))
    }

    pub fn pids_limit(&mut self, limit: i64) -> &mut Self {
        self.set("/linux/resources/pids", json!({ "limit": limit }))
    }

    /// The cgroup name used as `linux.cgroupsPath` (`/<name>`).
    pub fn cgroup_name(&self) -> &str {
        &self.cgroup_name
    }

    /// Adds a namespace to create (`user`, `cgroup`, …) or, with `path`, to join.
    pub fn add_namespace(&mut self, kind: &str, path: Option<&str>) -> &mut Self {
        self.remove_namespace(kind);
        let entry = match path {
            Some(path) => json!({ "type": kind, "path": path }),
            None => json!({ "type": kind }),
        };
        if let Some(Value::Array(list)) = self.config.pointer_mut("/linux/namespaces") {
            list.push(entry);
        }
        self
    }

    pub fn remove_namespace(&mut self, kind: &str) -> &mut Self {
        if let Some(Value::Array(list)) = self.config.pointer_mut("/linux/namespaces") {
            list.retain(|ns| ns["type"] != kind);
        }
        self
    }

    /// Adds a user namespace mapping `size` ids from 0 in the container to
    /// `host_id` on the host, for both uids and gids.
    pub fn user_namespace(&mut self, host_id: u32, size: u32) -> &mut Self {
        self.add_namespace("user", None);
        let mapping = json!([{ "containerID": 0, "hostID": host_id, "size": size }]);
        self.set("/linux/uidMappings", mapping.clone());
        self.set("/linux/gidMappings", mapping)
    }

    /// Sets `linux.seccomp` (an OCI seccomp object).
    pub fn seccomp(&mut self, profile: Value) -> &mut Self {
        self.set("/linux/seccomp", profile)
    }

    pub fn add_mount(
        &mut self,
        destination: &str,
        kind: &str,
        source: &str,
        options: &[&str],
    ) -> &mut Self {
        let entry = json!({ "destination": destination, "type": kind, "source": source, "options": options });
        if let Some(Value::Array(list)) = self.config.pointer_mut("/mounts") {
            list.push(entry);
        }
        self
    }

    pub fn remove_mount(&mut self, destination: &str) -> &mut Self {
        if let Some(Value::Array(list)) = self.config.pointer_mut("/mounts") {
            list.retain(|m| m["destination"] != destination);
        }
        self
    }

    pub fn masked_paths(&mut self, paths: &[&str]) -> &mut Self {
        self.set("/linux/maskedPaths", json!(paths))
    }

    pub fn readonly_paths(&mut self, paths: &[&str]) -> &mut Self {
        self.set("/linux/readonlyPaths", json!(paths))
    }

    /// The cgroup directories of this bundle that exist now, in every
    /// hierarchy (v1 controllers, the hybrid unified tree, or a pure v2 root).
    pub fn cgroup_dirs(&self) -> Vec<PathBuf> {
        cgroup_dirs_named(&self.cgroup_name)
    }
}

/// Existing cgroup directories called `name` directly under a hierarchy root.
pub fn cgroup_dirs_named(name: &str) -> Vec<PathBuf> {
    let base = Path::new("/sys/fs/cgroup");
    let mut dirs = vec![base.join(name)];
    if let Ok(entries) = std::fs::read_dir(base) {
        for entry in entries.flatten() {
            dirs.push(entry.path().join(name));
        }
    }
    dirs.retain(|dir| dir.is_dir());
    dirs
}

/// Kills the processes left in `dir` (a cgroup this fixture owns), thawing it
/// first if frozen, and removes the directory.
fn remove_cgroup(dir: &Path) {
    let freezer = dir.join("freezer.state");
    if freezer.exists() {
        let _ = std::fs::write(&freezer, "THAWED");
    }
    let freeze = dir.join("cgroup.freeze");
    if freeze.exists() {
        let _ = std::fs::write(&freeze, "0");
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        let pids: Vec<i32> = procs
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect();
        if pids.is_empty() || Instant::now() >= deadline {
            break;
        }
        for pid in pids {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = std::fs::remove_dir(dir);
}

/// Mount points under `dir` in this process's mount namespace, deepest last.
fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    info.lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|field| PathBuf::from(unescape_mountinfo(field)))
        .filter(|point| point.starts_with(dir))
        .collect()
}

/// Undoes the octal escapes (`\040` for space) of /proc/self/mountinfo fields.
pub fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() {
            let digits = std::str::from_utf8(&bytes[i + 1..i + 4]).unwrap_or_default();
            if let Ok(code) = u8::from_str_radix(digits, 8) {
                out.push(code);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Drop for Bundle {
    fn drop(&mut self) {
        for dir in self.cgroup_dirs() {
            remove_cgroup(&dir);
        }
        let Some(dir) = self.dir.take() else { return };
        for point in mounts_under(dir.path()).iter().rev() {
            let _ = nix::mount::umount2(point, nix::mount::MntFlags::MNT_DETACH);
        }
        if !mounts_under(dir.path()).is_empty() {
            // Removing the tree now could reach through a mount into the host.
            let kept = dir.keep();
            eprintln!("bundle {} keeps a mount; left in place", kept.display());
        }
    }
}

/// One container id under one runtime, with its own `--root` state directory.
///
/// On `Drop` it runs `<runtime> --root R delete --force ID` (bounded by the
/// timeout), kills the container's init if it is still alive, and removes
/// the state directory.
pub struct Container<'r> {
    runtime: &'r Runtime,
    id: String,
    bundle: PathBuf,
    work: Option<TempDir>,
    stdio: Option<(File, File)>,
    pid: Option<i32>,
}

impl<'r> Container<'r> {
    /// A container with a unique id for `bundle` (whose config is written now).
    pub fn new(runtime: &'r Runtime, bundle: &Bundle) -> std::io::Result<Container<'r>> {
        Container::with_id(runtime, bundle, &unique_name())
    }

    /// A container with the id given, which may be invalid on purpose.
    pub fn with_id(
        runtime: &'r Runtime,
        bundle: &Bundle,
        id: &str,
    ) -> std::io::Result<Container<'r>> {
        bundle.write_config()?;
        let work = tempfile::Builder::new().prefix("berth-state-").tempdir()?;
        std::fs::create_dir(work.path().join("root"))?;
        Ok(Container {
            runtime,
            id: id.to_string(),
            bundle: bundle.path().to_path_buf(),
            work: Some(work),
            stdio: None,
            pid: None,
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn runtime(&self) -> &Runtime {
        self.runtime
    }

    /// The `--root` directory of this container's runtime.
    pub fn root(&self) -> PathBuf {
        self.work
            .as_ref()
            .expect("state directory")
            .path()
            .join("root")
    }

    /// Entries in the `--root` directory (a failed create must leave none).
    pub fn root_entries(&self) -> Vec<String> {
        std::fs::read_dir(self.root())
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// `<runtime> --root R <args>`, not yet run.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = self.runtime.command(&self.root());
        command.args(args);
        command
    }

    /// Runs the runtime with `args`, output captured, bounded by [`runtime_timeout`].
    /// Panics on timeout so the test fails instead of hanging.
    pub fn invoke(&self, args: &[&str]) -> Output {
        let mut command = self.command(args);
        match output_with_timeout(&mut command, runtime_timeout()) {
            Ok(output) => output,
            Err(err) => panic!("{} {args:?}: {err}", self.runtime),
        }
    }

    /// `run --bundle B ID` in the foreground; the container's output is captured.
    pub fn run(&self) -> Output {
        let bundle = self.bundle.to_string_lossy().into_owned();
        let id = self.id.clone();
        self.invoke(&["run", "--bundle", &bundle, &id])
    }

    /// `create --bundle B --pid-file P ID`. The container's stdout and stderr
    /// go to files read by [`Container::output`]; the returned output holds
    /// what the runtime printed itself.
    pub fn create(&mut self) -> Output {
        let work = self.work.as_ref().expect("state directory").path();
        let pid_file = work.join("pid");
        let stdout = tempfile::tempfile().expect("stdout file");
        let stderr = tempfile::tempfile().expect("stderr file");
        let mut command = self.command(&["create", "--bundle"]);
        command
            .arg(&self.bundle)
            .arg("--pid-file")
            .arg(&pid_file)
            .arg(&self.id)
            .stdin(Stdio::null())
            .stdout(stdout.try_clone().expect("stdout file"))
            .stderr(stderr.try_clone().expect("stderr file"));
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e}", self.runtime));
        let status = wait_child(&mut child, runtime_timeout())
            .unwrap_or_else(|e| panic!("{} create: {e}", self.runtime));
        self.pid = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|text| text.trim().parse().ok());
        self.stdio = Some((stdout, stderr));
        let (out, err) = self.output();
        Output {
            status,
            stdout: out.into_bytes(),
            stderr: err.into_bytes(),
        }
    }

    /// What was written so far to the stdout and stderr given at `create`.
    pub fn output(&mut self) -> (String, String) {
        match self.stdio.as_mut() {
            Some((out, err)) => (
                String::from_utf8_lossy(&read_all(out).unwrap_or_default()).into_owned(),
                String::from_utf8_lossy(&read_all(err).unwrap_or_default()).into_owned(),
            ),
            None => (String::new(), String::new()),
        }
    }

    /// The pid written to `--pid-file` by `create`.
    pub fn pid(&self) -> Option<i32> {
        self.pid
    }

    pub fn start(&self) -> Output {
        self.invoke(&["start", &self.id])
    }

    pub fn kill(&self, signal: &str) -> Output {
        self.invoke(&["kill", &self.id, signal])
    }

    pub fn delete(&self, force: bool) -> Output {
        if force {
            self.invoke(&["delete", "--force", &self.id])
        } else {
            self.invoke(&["delete", &self.id])
        }
    }

    pub fn pause(&self) -> Output {
        self.invoke(&["pause", &self.id])
    }

    pub fn resume(&self) -> Output {
        self.invoke(&["resume", &self.id])
    }

    /// The `state` JSON, or `None` when the runtime fails or prints no JSON.
    pub fn state(&self) -> Option<Value> {
        let output = self.invoke(&["state", &self.id]);
        if !output.status.success() {
            return None;
        }
        serde_json::from_slice(&output.stdout).ok()
    }

    /// The `status` field of `state`, if any.
    pub fn status(&self) -> Option<String> {
        self.state()
            .and_then(|s| s["status"].as_str().map(str::to_string))
    }

    /// Polls `state` until the status is `want`; false after `timeout`.
    pub fn wait_for_status(&self, want: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.status().as_deref() == Some(want) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `ps --format json ID`: the host pids in the container, if the runtime answers.
    pub fn ps(&self) -> Option<Vec<i64>> {
        let output = self.invoke(&["ps", "--format", "json", &self.id]);
        if !output.status.success() {
            return None;
        }
        let value: Value = serde_json::from_slice(&output.stdout).ok()?;
        value.as_array()?.iter().map(Value::as_i64).collect()
    }
}

fn wait_child(child: &mut std::process::Child, timeout: Duration) -> std::io::Result<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no exit within {timeout:?}"),
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// True when `pid` names a live (not zombie) process.
pub fn process_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(") ")
            .map(|(_, rest)| !rest.starts_with('Z') && !rest.starts_with('X'))
            .unwrap_or(false),
        Err(_) => false,
    }
}

impl Drop for Container<'_> {
    fn drop(&mut self) {
        let Some(work) = self.work.as_ref() else {
            return;
        };
        if work.path().join("root").exists() {
            let timeout = runtime_timeout().min(CLEANUP_TIMEOUT);
            let mut command = self.command(&["delete", "--force", &self.id]);
            let deleted = output_with_timeout(&mut command, timeout);
            if deleted.is_ok_and(|o| !o.status.success()) {
                // A paused container may refuse a forced delete; thaw and retry.
                let mut command = self.command(&["resume", &self.id]);
                let _ = output_with_timeout(&mut command, timeout);
                let mut command = self.command(&["delete", "--force", &self.id]);
                let _ = output_with_timeout(&mut command, timeout);
            }
        }
        if let Some(pid) = self.pid {
            // The init this container's create started; only it, never by name.
            if process_alive(pid) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        self.work.take();
    }
}

/// Runs `bundle` in the foreground under `runtime` (`run --bundle B ID`, a
/// fresh id and state root, no tty) and returns the exit status and the
/// container's stdout and stderr. Panics if the runtime does not finish
/// within [`runtime_timeout`].
pub fn run_container(runtime: &Runtime, bundle: &Bundle) -> Output {
    let container = Container::new(runtime, bundle)
        .unwrap_or_else(|e| panic!("preparing a container for {runtime}: {e}"));
    container.run()
}

/// One line of /proc/self/mountinfo reduced to what two runtimes must agree on.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct MountSummary {
    pub mount_point: String,
    pub fs_type: String,
    /// The per-mount flags (ro/rw, nosuid, nodev, noexec) and the superblock
    /// options that a config sets (mode, size, gid, ptmxmode, newinstance), sorted.
    pub options: Vec<String>,
}

/// Parses mountinfo text into sorted summaries. Mount ids, parents, device
/// numbers, sources and the root within the source are dropped: they differ
/// legitimately between two runtimes and two runs.
pub fn summarize_mountinfo(text: &str) -> Vec<MountSummary> {
    const MOUNT_FLAGS: [&str; 5] = ["ro", "rw", "nosuid", "nodev", "noexec"];
    const SUPER_KEYS: [&str; 6] = ["mode", "size", "gid", "uid", "ptmxmode", "newinstance"];
    let mut mounts = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(sep) = fields.iter().position(|f| *f == "-") else {
            continue;
        };
        if fields.len() < 6 || fields.len() < sep + 4 {
            continue;
        }
        let mut options: Vec<String> = fields[5]
            .split(',')
            .filter(|o| MOUNT_FLAGS.contains(o))
            .map(str::to_string)
            .collect();
        for option in fields[sep + 3].split(',') {
            let key = option.split('=').next().unwrap_or_default();
            if SUPER_KEYS.contains(&key) {
                options.push(option.to_string());
            }
        }
        options.sort();
        options.dedup();
        mounts.push(MountSummary {
            mount_point: unescape_mountinfo(fields[4]),
            fs_type: fields[sep + 1].to_string(),
            options,
        });
    }
    mounts.sort();
    mounts
}

/// The `Cap*` lines of a /proc/<pid>/status text, as (name, hex mask).
pub fn capability_lines(status: &str) -> Vec<(String, String)> {
    status
        .lines()
        .filter(|l| l.starts_with("Cap"))
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect()
}

/// How long a container may take to get somewhere (ready, stopped, gone):
/// only a failing test waits this long, so it is sized for a loaded machine.
pub const SETTLE: Duration = Duration::from_secs(30);

/// Polls `done` every 20 ms until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The reference runtime (runc) and the one under test, in that order.
pub fn both() -> [Runtime; 2] {
    [Runtime::reference(), Runtime::under_test()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_summary_keeps_flags_and_config_options() {
        let text = "22 1 0:21 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw\n\
                    23 1 0:22 / /dev rw,nosuid - tmpfs tmpfs rw,size=65536k,mode=755,inode64\n\
                    24 1 0:23 /null /my\\040dir ro,relatime - devtmpfs udev rw,size=1k\n";
        let mounts = summarize_mountinfo(text);
        assert_eq!(mounts.len(), 3);
        assert_eq!(mounts[0].mount_point, "/dev");
        assert_eq!(
            mounts[0].options,
            ["mode=755", "nosuid", "rw", "size=65536k"]
        );
        assert_eq!(mounts[1].mount_point, "/my dir");
        assert_eq!(mounts[2].options, ["nodev", "noexec", "nosuid", "rw"]);
    }

    #[test]
    fn bundle_builder_edits_config() {
        let mut bundle = Bundle::busybox().expect("bundle");
        bundle
            .shell("exit 3")
            .hostname("h")
            .user(1000, 1000, &[10])
            .user_namespace(100000, 65536)
            .memory_limit(1 << 26)
            .rlimit("RLIMIT_NOFILE", 10, 20);
        let config = bundle.config();
        assert_eq!(config["process"]["args"][2], "exit 3");
        assert_eq!(config["linux"]["uidMappings"][0]["hostID"], 100000);
        assert_eq!(config["linux"]["resources"]["memory"]["limit"], 1 << 26);
        assert!(config["linux"]["namespaces"]
            .as_array()
            .expect("namespaces")
            .iter()
            .any(|ns| ns["type"] == "user"));
        bundle.write_config().expect("write");
        let written: Value = serde_json::from_slice(
            &std::fs::read(bundle.path().join("config.json")).expect("read"),
        )
        .expect("json");
        assert_eq!(&written, bundle.config());
        assert!(bundle.rootfs().join("bin/sh").exists());
        let path = bundle.path().to_path_buf();
        drop(bundle);
        assert!(!path.exists());
    }

    #[test]
    fn unique_names_differ() {
        assert_ne!(unique_name(), unique_name());
    }
}
