//! Debian's dockerd with its own containerd on private directories under one
//! tempdir, for tests that compare with it or drive a runtime through it.
//! Dropping the guard removes every container, process, mount, cgroup and
//! directory the daemon made.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::unistd::Pid;

use crate::host::{
    ping, private_dir, processes_naming, remove_cgroup_subtree, remove_private_dir, stop_process,
    text, DockerApi, STARTUP_TIMEOUT,
};

const DOCKERD: &str = "/usr/sbin/dockerd";

/// dockerd and its containerd create these host directories whatever their
/// flags say (plugin discovery, shim sockets). Those that did not exist before
/// the first daemon of this test binary are removed, if empty, after the last.
const HOST_RUNTIME_DIRS: [&str; 4] = [
    "/run/containerd/s",
    "/run/containerd",
    "/run/docker/plugins",
    "/run/docker",
];

struct HostDirs {
    live_daemons: usize,
    created_by_tests: Vec<&'static str>,
}

static HOST_DIRS: Mutex<HostDirs> = Mutex::new(HostDirs {
    live_daemons: 0,
    created_by_tests: Vec::new(),
});

fn host_dirs() -> std::sync::MutexGuard<'static, HostDirs> {
    HOST_DIRS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Options for [`Dockerd`]: flags beyond the private directories, no
/// networking and a cgroup parent of its own.
#[derive(Debug, Default)]
pub struct DockerdBuilder {
    args: Vec<String>,
}

impl DockerdBuilder {
    /// One more daemon flag, e.g. `--add-runtime=berth=<path>`.
    pub fn arg(mut self, arg: impl Into<String>) -> DockerdBuilder {
        self.args.push(arg.into());
        self
    }

    /// Starts dockerd and waits until it answers `/_ping`.
    #[track_caller]
    pub fn start(self) -> Dockerd {
        let dir = private_dir("berth-dockerd-");
        let name = dir
            .file_name()
            .and_then(|name| name.to_str())
            .expect("tempdir name is UTF-8")
            .to_owned();
        let config = dir.join("daemon.json");
        // Without this dockerd writes its trust key to /etc/docker/key.json.
        let settings = serde_json::json!({ "deprecated-key-path": dir.join("key.json") });
        std::fs::write(&config, settings.to_string()).expect("write daemon.json");
        let log = std::fs::File::create(dir.join("dockerd.log")).expect("create dockerd.log");
        let socket = dir.join("docker.sock");
        // A cgroup parent named after the private directory, so that cleanup
        // finds exactly the cgroups this daemon's containers got.
        let cgroup_parent = format!("/{name}");

        {
            let mut host = host_dirs();
            if host.live_daemons == 0 {
                host.created_by_tests = HOST_RUNTIME_DIRS
                    .into_iter()
                    .filter(|dir| !Path::new(dir).exists())
                    .collect();
            }
            host.live_daemons += 1;
        }
        let mut command = Command::new(DOCKERD);
        command
            .arg("--config-file")
            .arg(&config)
            .arg("--data-root")
            .arg(dir.join("data"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("--pidfile")
            .arg(dir.join("dockerd.pid"))
            .arg("--host")
            .arg(format!("unix://{}", socket.display()))
            .args([
                "--bridge=none",
                "--iptables=false",
                "--ip6tables=false",
                "--ip-forward=false",
                "--ip-masq=false",
                "--userland-proxy=false",
                "--exec-opt=native.cgroupdriver=cgroupfs",
            ])
            .arg(format!("--cgroup-parent={cgroup_parent}"))
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup dockerd.log"))
            .stderr(log);
        let daemon = match command.spawn() {
            Ok(daemon) => daemon,
            Err(e) => {
                host_dirs().live_daemons -= 1;
                remove_private_dir(&dir);
                panic!("cannot start {DOCKERD} (package docker.io): {e}");
            }
        };
        let mut dockerd = Dockerd {
            dir,
            daemon,
            socket,
            cgroup_parent,
        };
        dockerd.wait_until_ready();
        dockerd
    }
}

/// A running dockerd; see the module documentation.
pub struct Dockerd {
    dir: PathBuf,
    daemon: Child,
    socket: PathBuf,
    cgroup_parent: String,
}

impl Dockerd {
    /// A dockerd with no flags beyond the defaults of [`DockerdBuilder`].
    #[track_caller]
    pub fn start() -> Dockerd {
        Dockerd::builder().start()
    }

    pub fn builder() -> DockerdBuilder {
        DockerdBuilder::default()
    }

    /// The `--cgroup-parent` of this daemon's containers, e.g. `/berth-dockerd-x1y2`.
    pub fn cgroup_parent(&self) -> &str {
        &self.cgroup_parent
    }

    /// On failure the guard, dropped by the panic, cleans up.
    #[track_caller]
    fn wait_until_ready(&mut self) {
        let started = Instant::now();
        while !ping(&self.socket) {
            if let Ok(Some(status)) = self.daemon.try_wait() {
                panic!(
                    "dockerd exited with {status} during startup; its log:\n{}",
                    self.log()
                );
            }
            assert!(
                started.elapsed() < STARTUP_TIMEOUT,
                "dockerd did not answer /_ping within {STARTUP_TIMEOUT:?}; its log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn containerd_pid(&self) -> Option<Pid> {
        let pidfile = self.dir.join("exec/containerd/containerd.pid");
        let pid = std::fs::read_to_string(pidfile).ok()?.trim().parse().ok()?;
        Some(Pid::from_raw(pid))
    }
}

impl DockerApi for Dockerd {
    fn name(&self) -> &str {
        "dockerd"
    }

    fn dir(&self) -> &Path {
        &self.dir
    }

    fn socket(&self) -> PathBuf {
        self.socket.clone()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("dockerd.log")).unwrap_or_default()
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        // Through the daemon first, so the runtime deletes its own state,
        // cgroups and mounts the way it would for a user.
        if let Ok(out) = self.try_docker(&["ps", "--all", "--quiet"]) {
            let listed = text(&out.stdout);
            let ids: Vec<&str> = listed.split_whitespace().collect();
            if !ids.is_empty() {
                let mut args = vec!["rm", "--force"];
                args.extend(ids);
                if let Err(e) = self.try_docker(&args) {
                    eprintln!("cleanup: docker rm: {e}");
                }
            }
        }
        let mut started_by_daemon = processes_naming(&self.dir);
        started_by_daemon.extend(self.containerd_pid());

        let daemon = Pid::from_raw(self.daemon.id() as i32);
        stop_process(daemon, Duration::from_secs(20));
        let _ = self.daemon.wait();
        for pid in started_by_daemon {
            if pid != daemon {
                stop_process(pid, Duration::from_secs(10));
            }
        }
        for pid in processes_naming(&self.dir) {
            stop_process(pid, Duration::ZERO);
        }
        remove_cgroup_subtree(&self.cgroup_parent);
        remove_private_dir(&self.dir);

        let mut host = host_dirs();
        host.live_daemons -= 1;
        if host.live_daemons == 0 {
            for dir in host.created_by_tests.drain(..) {
                // Only empty directories go; anything else is someone's.
                let _ = std::fs::remove_dir(dir);
            }
        }
    }
}
