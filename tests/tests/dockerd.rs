#![forbid(unsafe_code)]
//! Debian's dockerd, started by each test on private directories, drives the
//! runtime under test registered as `--add-runtime berth=<path>`, and the real
//! docker CLI checks what a user would see. `BERTH_RUNTIME` names the runtime
//! binary (default: this workspace's `berth-runtime`), so the suite can be
//! validated against runc.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use berth_tests::dockerd::Dockerd;
use berth_tests::host::{
    assert_success, describe, output_in_terminal, text, DockerApi, CLI_TIMEOUT,
};
use berth_tests::{make_busybox_rootfs_tar, runtime_under_test};

const IMAGE: &str = "berth-test-busybox:latest";

/// A dockerd with the runtime under test registered as `berth` and a
/// busybox image imported; dropping it removes everything it made.
struct RuntimeDockerd {
    dockerd: Dockerd,
}

impl RuntimeDockerd {
    fn start() -> RuntimeDockerd {
        let runtime = runtime_under_test();
        let dockerd = Dockerd::builder()
            .arg(format!("--add-runtime=berth={}", runtime.display()))
            .start();
        let dockerd = RuntimeDockerd { dockerd };
        dockerd.check_registration(&runtime);
        dockerd.import_busybox();
        dockerd
    }

    fn check_registration(&self, runtime: &Path) {
        // The CLI speaks a newer API than this dockerd; it must negotiate down.
        let version = self.docker(&["version", "--format", "{{.Server.APIVersion}}"]);
        let version = assert_success(&version, "docker version");
        assert!(!version.trim().is_empty(), "no server API version");
        let out = self.docker(&["info", "--format", "{{json .Runtimes.berth}}"]);
        let registered = assert_success(&out, "docker info");
        assert!(
            registered.contains(&*runtime.to_string_lossy()),
            "runtime `berth` is not {}: {registered}",
            runtime.display()
        );
    }

    fn import_busybox(&self) {
        let image = self.dockerd.dir().join("image");
        std::fs::create_dir(&image).expect("create the image directory");
        let tar = make_busybox_rootfs_tar(&image);
        let tar = tar.to_str().expect("tar path is UTF-8");
        let out = self.docker(&["import", "--change", r#"CMD ["/bin/sh"]"#, tar, IMAGE]);
        assert_success(&out, "docker import");
    }

    #[track_caller]
    fn docker(&self, args: &[&str]) -> Output {
        self.dockerd.docker(args)
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
        let mut docker = self.dockerd.docker_command();
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
        output_in_terminal(&docker, CLI_TIMEOUT).unwrap_or_else(|e| panic!("{e}"))
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
            .join(self.dockerd.cgroup_parent().trim_start_matches('/'))
            .join(container)
    }
}

#[test]
fn exit_code_and_tty() {
    let dockerd = RuntimeDockerd::start();

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
    let dockerd = RuntimeDockerd::start();
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

    let deadline = Instant::now() + Duration::from_secs(30);
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
    let dockerd = RuntimeDockerd::start();

    // With docker-init as PID 1, SIGTERM reaches sleep and ends it at once.
    let id = dockerd.run_detached(&["--init"], &["sleep", "1000"]);
    // docker-init must have its signal handling in place (and sleep must
    // run) before the stop, or a SIGTERM to pid 1 is ignored; on a loaded
    // host that takes a moment.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !dockerd
        .docker(&["exec", &id, "pidof", "sleep"])
        .status
        .success()
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(50));
    }
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
    let dockerd = RuntimeDockerd::start();
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
    let dockerd = RuntimeDockerd::start();

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
    let dockerd = RuntimeDockerd::start();
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
