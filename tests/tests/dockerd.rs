#![forbid(unsafe_code)]
//! Debian's dockerd, started by each test on private directories, drives the
//! runtime under test registered as `--add-runtime berth=<path>`, and the real
//! docker CLI checks what a user would see. `BERTH_RUNTIME` names the runtime
//! binary (default: this workspace's `berth-runtime`), so the suite can be
//! validated against runc.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::unistd::Pid;

use berth_tests::host::{
    assert_success, describe, drain, remove_cgroup_subtree, shell_quote, stop_process, text,
    unmount_under,
};

const DOCKERD: &str = "/usr/sbin/dockerd";
const IMAGE: &str = "berth-test-busybox:latest";
const COMMAND_TIMEOUT: Duration = Duration::from_secs(90);
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

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

fn runtime_under_test() -> PathBuf {
    let path = std::env::var_os("BERTH_RUNTIME")
        .map(PathBuf::from)
        .unwrap_or_else(|| berth_tests::workspace_binary("berth-runtime"));
    assert!(
        path.is_file(),
        "runtime under test {} does not exist: build it with `cargo build -p berth-runtime` \
         or point BERTH_RUNTIME at a runtime binary",
        path.display()
    );
    path
}

fn docker_cli() -> PathBuf {
    ["/usr/local/bin/docker", "/usr/bin/docker"]
        .into_iter()
        .map(PathBuf::from)
        .find(|path| path.is_file())
        .expect("no docker CLI in /usr/local/bin or /usr/bin (package docker.io)")
}

/// Runs `cmd` to completion with null stdin, killing it (by its PID) if it
/// takes longer than `timeout`. Never panics, so `Drop` can use it.
fn output_within(mut cmd: Command, timeout: Duration) -> Result<Output, String> {
    let description = format!("{cmd:?}");
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {description}: {e}"))?;
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{description} did not finish within {timeout:?}"));
            }
            Err(e) => return Err(format!("waiting for {description}: {e}")),
        }
    };
    Ok(Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    })
}

#[track_caller]
/// Runs `command` under `script`, which gives it a pty for its terminal the
/// way a user's shell does, so `run -it` gets a real one.
fn output_in_terminal(command: &Command) -> Result<Output, String> {
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
    output_within(script, COMMAND_TIMEOUT)
}

/// Processes whose command line names `dir`: with a unique private directory
/// these are exactly the containerd and shims the daemon under test started.
fn processes_naming(dir: &Path) -> Vec<Pid> {
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

/// A dockerd with its own containerd, on private directories under one
/// tempdir, with the runtime under test registered as `berth`. Dropping it
/// removes every container, process, mount, cgroup and directory it made.
struct Dockerd {
    dir: PathBuf,
    daemon: Child,
    socket: PathBuf,
    cgroup_parent: String,
    docker: PathBuf,
}

impl Dockerd {
    fn start() -> Dockerd {
        let runtime = runtime_under_test();
        let docker = docker_cli();
        let dir = tempfile::Builder::new()
            .prefix("berth-dockerd-")
            .tempdir_in("/tmp")
            .expect("create a tempdir under /tmp")
            .keep();
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

        {
            let mut host = HOST_DIRS.lock().unwrap_or_else(|e| e.into_inner());
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
            .arg(format!("--cgroup-parent=/{name}"))
            .arg(format!("--add-runtime=berth={}", runtime.display()))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup dockerd.log"))
            .stderr(log);
        let daemon = match command.spawn() {
            Ok(daemon) => daemon,
            Err(e) => {
                HOST_DIRS
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .live_daemons -= 1;
                let _ = std::fs::remove_dir_all(&dir);
                panic!("cannot start {DOCKERD} (package docker.io): {e}");
            }
        };
        let mut dockerd = Dockerd {
            dir,
            daemon,
            socket,
            cgroup_parent: format!("/{name}"),
            docker,
        };
        dockerd.wait_until_ready();
        dockerd.import_busybox();
        dockerd
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("dockerd.log")).unwrap_or_default()
    }

    fn ping(&self) -> bool {
        let Ok(mut stream) = UnixStream::connect(&self.socket) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        if stream
            .write_all(b"GET /_ping HTTP/1.0\r\nHost: dockerd\r\n\r\n")
            .is_err()
        {
            return false;
        }
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response);
        response.starts_with("HTTP/1.0 200") && response.ends_with("OK")
    }

    fn wait_until_ready(&mut self) {
        let started = Instant::now();
        while !self.ping() {
            if let Ok(Some(status)) = self.daemon.try_wait() {
                panic!(
                    "dockerd exited with {status} during startup; its log:\n{}",
                    self.log()
                );
            }
            if started.elapsed() > STARTUP_TIMEOUT {
                panic!(
                    "dockerd did not answer /_ping within {STARTUP_TIMEOUT:?}; its log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("dockerd answered /_ping after {:?}", started.elapsed());
        // The CLI speaks a newer API than this dockerd; it must negotiate down.
        let version = self.docker(&["version", "--format", "{{.Server.APIVersion}}"]);
        let version = assert_success(&version, "docker version");
        assert!(!version.trim().is_empty(), "no server API version");
        let out = self.docker(&["info", "--format", "{{json .Runtimes.berth}}"]);
        let registered = assert_success(&out, "docker info");
        let runtime = runtime_under_test();
        assert!(
            registered.contains(&*runtime.to_string_lossy()),
            "runtime `berth` is not {}: {registered}",
            runtime.display()
        );
    }

    fn import_busybox(&self) {
        let image = self.dir.join("image");
        let rootfs = image.join("rootfs");
        berth_tests::make_busybox_rootfs(&rootfs).expect("make busybox rootfs");
        let tar = image.join("rootfs.tar");
        let mut command = Command::new("tar");
        command.arg("-C").arg(&rootfs).arg("-cf").arg(&tar).arg(".");
        let out = output_within(command, COMMAND_TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
        assert_success(&out, "tar of the busybox rootfs");
        let tar = tar.to_str().expect("tar path is UTF-8");
        let out = self.docker(&["import", "--change", r#"CMD ["/bin/sh"]"#, tar, IMAGE]);
        assert_success(&out, "docker import");
    }

    /// The docker CLI against this daemon only: no host config or environment.
    fn docker_command(&self) -> Command {
        let mut command = Command::new(&self.docker);
        command
            .env_remove("DOCKER_HOST")
            .env_remove("DOCKER_API_VERSION")
            .env_remove("DOCKER_CONTEXT")
            .env_remove("DOCKER_TLS_VERIFY")
            .env_remove("DOCKER_CERT_PATH")
            .env("DOCKER_CONFIG", self.dir.join("cli"))
            .arg("--host")
            .arg(format!("unix://{}", self.socket.display()));
        command
    }

    fn try_docker(&self, args: &[&str]) -> Result<Output, String> {
        let mut command = self.docker_command();
        command.args(args);
        output_within(command, COMMAND_TIMEOUT)
    }

    #[track_caller]
    fn docker(&self, args: &[&str]) -> Output {
        self.try_docker(args)
            .unwrap_or_else(|e| panic!("{e}\ndockerd log:\n{}", self.log()))
    }

    /// `docker run --runtime berth` with `flags`, then the image and `command`.
    #[track_caller]
    fn run(&self, flags: &[&str], command: &[&str]) -> Output {
        let mut args = vec!["run", "--runtime", "berth", "--network", "none"];
        args.extend_from_slice(flags);
        args.push(IMAGE);
        args.extend_from_slice(command);
        self.docker(&args)
    }

    /// `docker run -it --rm --runtime berth` of `sh -c command` in a terminal.
    #[track_caller]
    fn run_in_terminal(&self, command: &str) -> Output {
        let mut docker = self.docker_command();
        docker.args([
            "run",
            "-it",
            "--rm",
            "--runtime",
            "berth",
            "--network",
            "none",
        ]);
        docker.args([IMAGE, "sh", "-c", command]);
        output_in_terminal(&docker).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Starts a detached container running `command`; returns its full id.
    #[track_caller]
    fn run_detached(&self, flags: &[&str], command: &[&str]) -> String {
        let mut all = vec!["-d"];
        all.extend_from_slice(flags);
        let out = self.run(&all, command);
        assert_success(&out, "docker run -d").trim().to_owned()
    }

    #[track_caller]
    fn inspect(&self, container: &str, format: &str) -> String {
        let out = self.docker(&["inspect", "--format", format, container]);
        assert_success(&out, "docker inspect").trim().to_owned()
    }

    /// The container's cgroup directory in the v1 `controller` hierarchy.
    fn cgroup_dir(&self, controller: &str, container: &str) -> PathBuf {
        Path::new("/sys/fs/cgroup")
            .join(controller)
            .join(self.cgroup_parent.trim_start_matches('/'))
            .join(container)
    }

    fn containerd_pid(&self) -> Option<Pid> {
        let pidfile = self.dir.join("exec/containerd/containerd.pid");
        let pid = std::fs::read_to_string(pidfile).ok()?.trim().parse().ok()?;
        Some(Pid::from_raw(pid))
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
                    eprintln!("cleanup: {e}");
                }
            }
        }
        let containerd = self.containerd_pid();
        let mut started_by_daemon = processes_naming(&self.dir);
        started_by_daemon.extend(containerd);

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

        let left = unmount_under(&self.dir);
        if left.is_empty() {
            if let Err(e) = std::fs::remove_dir_all(&self.dir) {
                eprintln!("cleanup: remove {}: {e}", self.dir.display());
            }
        } else {
            eprintln!(
                "cleanup: leaving {} in place, still mounted: {left:?}",
                self.dir.display()
            );
        }

        let mut host = HOST_DIRS.lock().unwrap_or_else(|e| e.into_inner());
        host.live_daemons -= 1;
        if host.live_daemons == 0 {
            for dir in host.created_by_tests.drain(..) {
                // Only empty directories go; anything else is someone's.
                let _ = std::fs::remove_dir(dir);
            }
        }
    }
}

#[test]
fn exit_code_and_tty() {
    let dockerd = Dockerd::start();

    let out = dockerd.run(&["--rm"], &["sh", "-c", "echo out; exit 7"]);
    assert_eq!(out.status.code(), Some(7), "{}", describe(&out));
    assert_eq!(text(&out.stdout), "out\n");

    let out = dockerd.run_in_terminal("tty; exit 0");
    assert!(out.status.success(), "run -it: {}", describe(&out));
    assert!(
        text(&out.stdout).contains("/dev/pts/0"),
        "tty inside `run -it` is not /dev/pts/0: {}",
        describe(&out)
    );
    let out = dockerd.run_in_terminal("test -t 0 && test -t 1 && exit 5");
    assert_eq!(
        out.status.code(),
        Some(5),
        "run -it exit code: {}",
        describe(&out)
    );
}

#[test]
fn detached_exec_logs_pause() {
    let dockerd = Dockerd::start();
    let id = dockerd.run_detached(&[], &["sh", "-c", "echo hello-from-log; exec sleep 1000"]);
    assert_eq!(dockerd.inspect(&id, "{{.State.Running}}"), "true");

    let out = dockerd.docker(&["exec", &id, "sh", "-c", "echo from-exec; exit 3"]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "exec exit code: {}",
        describe(&out)
    );
    assert_eq!(text(&out.stdout), "from-exec\n");

    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = dockerd.docker(&["logs", &id]);
        if assert_success(&out, "docker logs").contains("hello-from-log") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "logs never showed the output: {}",
            describe(&out)
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    assert_success(&dockerd.docker(&["pause", &id]), "docker pause");
    assert_eq!(
        dockerd.inspect(&id, "{{.State.Paused}} {{.State.Status}}"),
        "true paused"
    );
    let freezer = dockerd.cgroup_dir("freezer", &id).join("freezer.state");
    let state = std::fs::read_to_string(&freezer)
        .unwrap_or_else(|e| panic!("read {}: {e}", freezer.display()));
    assert_eq!(state.trim(), "FROZEN");

    assert_success(&dockerd.docker(&["unpause", &id]), "docker unpause");
    assert_eq!(
        dockerd.inspect(&id, "{{.State.Paused}} {{.State.Status}}"),
        "false running"
    );
    let out = dockerd.docker(&["exec", &id, "echo", "after-unpause"]);
    assert_eq!(
        assert_success(&out, "exec after unpause"),
        "after-unpause\n"
    );

    assert_success(&dockerd.docker(&["rm", "--force", &id]), "docker rm -f");
}

#[test]
fn stop_and_kill() {
    let dockerd = Dockerd::start();

    // With docker-init as PID 1, SIGTERM reaches sleep and ends it at once.
    let id = dockerd.run_detached(&["--init"], &["sleep", "1000"]);
    let started = Instant::now();
    assert_success(
        &dockerd.docker(&["stop", "--time", "20", &id]),
        "docker stop",
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "stop of a container that honours SIGTERM took {:?}",
        started.elapsed()
    );
    assert_eq!(
        dockerd.inspect(&id, "{{.State.Running}} {{.State.ExitCode}}"),
        "false 143"
    );

    // sleep as PID 1 ignores SIGTERM: stop must fall back to SIGKILL.
    let id = dockerd.run_detached(&[], &["sleep", "1000"]);
    let started = Instant::now();
    assert_success(
        &dockerd.docker(&["stop", "--time", "1", &id]),
        "docker stop",
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "stop --time 1 took {:?}",
        started.elapsed()
    );
    assert_eq!(
        dockerd.inspect(&id, "{{.State.Running}} {{.State.ExitCode}}"),
        "false 137"
    );

    let id = dockerd.run_detached(&[], &["sleep", "1000"]);
    assert_success(
        &dockerd.docker(&["kill", "--signal", "KILL", &id]),
        "docker kill",
    );
    let out = dockerd.docker(&["wait", &id]);
    assert_eq!(assert_success(&out, "docker wait").trim(), "137");
    assert_eq!(
        dockerd.inspect(&id, "{{.State.Running}} {{.State.ExitCode}}"),
        "false 137"
    );
}

#[test]
fn memory_and_pids_limits() {
    let dockerd = Dockerd::start();
    let limit = "67108864";

    let id = dockerd.run_detached(&["--memory", "64m"], &["sleep", "1000"]);
    let host_file = dockerd
        .cgroup_dir("memory", &id)
        .join("memory.limit_in_bytes");
    let on_host = std::fs::read_to_string(&host_file)
        .unwrap_or_else(|e| panic!("read {}: {e}", host_file.display()));
    assert_eq!(on_host.trim(), limit, "limit in the host's cgroup");
    let out = dockerd.docker(&[
        "exec",
        &id,
        "cat",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
    ]);
    assert_eq!(assert_success(&out, "read the limit inside").trim(), limit);
    assert_success(&dockerd.docker(&["rm", "--force", &id]), "docker rm -f");

    // The shell holds the whole 100 MB string in memory; 64 MB is not enough.
    let allocate = r#"x=$(head -c 100000000 /dev/zero | tr "\0" a); echo survived"#;
    let out = dockerd.run(
        &["--name", "oom", "--memory", "64m"],
        &["sh", "-c", allocate],
    );
    assert_eq!(
        out.status.code(),
        Some(137),
        "over the memory limit: {}",
        describe(&out)
    );
    assert!(
        !text(&out.stdout).contains("survived"),
        "{}",
        describe(&out)
    );
    assert_eq!(dockerd.inspect("oom", "{{.State.OOMKilled}}"), "true");
    let out = dockerd.run(&["--rm", "--memory", "512m"], &["sh", "-c", allocate]);
    assert_eq!(
        assert_success(&out, "allocation under the limit").trim(),
        "survived"
    );

    let fork_many = "cat /sys/fs/cgroup/pids/pids.max; \
                     for i in $(seq 1 20); do sleep 30 & done; echo all-forked";
    let out = dockerd.run(&["--rm", "--pids-limit", "10"], &["sh", "-c", fork_many]);
    let stdout = text(&out.stdout);
    assert!(
        stdout.starts_with("10\n"),
        "pids.max inside: {}",
        describe(&out)
    );
    assert!(
        !stdout.contains("all-forked"),
        "forked past the limit: {}",
        describe(&out)
    );
    assert!(text(&out.stderr).contains("fork"), "{}", describe(&out));
    let out = dockerd.run(&["--rm"], &["sh", "-c", fork_many]);
    assert_eq!(
        assert_success(&out, "forking without a limit"),
        "max\nall-forked\n"
    );
}

#[test]
fn security_options() {
    let dockerd = Dockerd::start();

    let out = dockerd.run(&["--rm", "--read-only"], &["sh", "-c", "touch /file"]);
    assert!(
        !out.status.success(),
        "wrote to a read-only rootfs: {}",
        describe(&out)
    );
    assert!(
        text(&out.stderr).contains("Read-only file system"),
        "{}",
        describe(&out)
    );
    let out = dockerd.run(
        &["--rm", "--read-only", "--tmpfs", "/tmp"],
        &["sh", "-c", "touch /tmp/file && echo written"],
    );
    assert_eq!(
        assert_success(&out, "write to a tmpfs on a read-only rootfs"),
        "written\n"
    );

    let capabilities = "grep -E '^Cap(Inh|Prm|Eff|Bnd|Amb)' /proc/self/status";
    let out = dockerd.run(&["--rm"], &["sh", "-c", capabilities]);
    let default = assert_success(&out, "default capabilities");
    assert!(
        default.contains("CapEff:\t00000000a80425fb"),
        "default set: {default}"
    );
    let out = dockerd.run(&["--rm", "--cap-drop", "ALL"], &["sh", "-c", capabilities]);
    let dropped = assert_success(&out, "capabilities after --cap-drop ALL");
    assert_eq!(dropped.lines().count(), 5, "{dropped}");
    for line in dropped.lines() {
        assert!(line.ends_with("\t0000000000000000"), "not empty: {line}");
    }

    let out = dockerd.run(&["--rm", "--user", "1000:1000"], &["id"]);
    assert_eq!(
        assert_success(&out, "id").trim(),
        "uid=1000 gid=1000 groups=1000"
    );

    let out = dockerd.run(
        &["--rm", "--ulimit", "nofile=1024:2048"],
        &["sh", "-c", "ulimit -n; ulimit -Hn"],
    );
    assert_eq!(assert_success(&out, "ulimit"), "1024\n2048\n");
}

#[test]
fn update_changes_limits_of_a_running_container() {
    let dockerd = Dockerd::start();
    let id = dockerd.run_detached(
        &["--memory", "64m", "--pids-limit", "20"],
        &["sleep", "1000"],
    );
    assert_success(
        &dockerd.docker(&[
            "update",
            "--memory",
            "128m",
            "--memory-swap",
            "256m",
            "--pids-limit",
            "30",
            &id,
        ]),
        "docker update",
    );
    let out = dockerd.docker(&[
        "exec",
        &id,
        "cat",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
        "/sys/fs/cgroup/pids/pids.max",
    ]);
    assert_eq!(
        assert_success(&out, "read the limits inside"),
        "134217728\n30\n",
        "limits after update"
    );
    assert_eq!(dockerd.inspect(&id, "{{.HostConfig.Memory}}"), "134217728");
    assert_success(&dockerd.docker(&["rm", "--force", &id]), "docker rm -f");
}
