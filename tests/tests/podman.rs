#![forbid(unsafe_code)]
//! Debian's podman runs containers with the runtime under test
//! (`podman --runtime <path> --cgroup-manager cgroupfs`), on private storage
//! and run directories. `BERTH_RUNTIME` names the runtime binary (default:
//! this workspace's `berth-runtime`), so the suite can be validated against runc.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use berth_tests::host::{
    assert_success, describe, drain, output_in_terminal, private_dir, processes_naming,
    remove_cgroup_subtree, remove_private_dir, stop_process, text,
};
use berth_tests::runtime_under_test;

const PODMAN: &str = "/usr/bin/podman";
const IMAGE: &str = "localhost/berth-test-busybox:latest";
const COMMAND_TIMEOUT: Duration = Duration::from_secs(90);

/// Root here lacks CAP_SYS_RESOURCE, so podman's default rlimits (nofile
/// 1048576, nproc from the host's hard limit) cannot be set by any runtime;
/// every container gets limits that can.
const ULIMITS: [&str; 4] = [
    "--ulimit",
    "nofile=20000:20000",
    "--ulimit",
    "nproc=32768:32768",
];

/// Host paths podman and the runtime create whatever their flags say: the
/// image blob-info cache, netavark's run directory, and the runtime's default
/// state root (podman 4 passes no `--root` to the runtime, and drops
/// `--runtime-flag root=` on `delete`). Those that did not exist before the
/// first guard of this test binary are removed, if empty, after the last.
const HOST_PATHS: [&str; 7] = [
    "/var/lib/containers/cache/blob-info-cache-v1.boltdb",
    "/var/lib/containers/cache",
    "/var/lib/containers",
    "/run/containers/networks",
    "/run/containers",
    "/run/runc",
    "/run/berth-runtime",
];

struct HostPaths {
    live_guards: usize,
    created_by_tests: Vec<&'static str>,
}

static HOST: Mutex<HostPaths> = Mutex::new(HostPaths {
    live_guards: 0,
    created_by_tests: Vec::new(),
});

/// Runs `cmd` to completion with `input` (or nothing) on its stdin, killing it
/// (by its PID) if it takes longer than `timeout`. Never panics, so `Drop` can use it.
fn output_within(
    mut cmd: Command,
    input: Option<&[u8]>,
    timeout: Duration,
) -> Result<Output, String> {
    let description = format!("{cmd:?}");
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {description}: {e}"))?;
    if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
        let input = input.to_vec();
        // Closing stdin after the input is what ends e.g. `cat`.
        std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
    }
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

/// Private storage, run and temp directories for podman, an imported busybox
/// image, and a cgroup parent of its own. Dropping it removes every
/// container, process, mount, cgroup and directory the tests made.
struct Podman {
    dir: PathBuf,
    runtime: PathBuf,
    cgroup_parent: String,
}

impl Podman {
    fn new() -> Podman {
        assert!(
            Path::new(PODMAN).is_file(),
            "{PODMAN} is missing: install Debian's podman package (the README's test command does)"
        );
        let runtime = runtime_under_test();
        let dir = private_dir("berth-podman-");
        let name = dir
            .file_name()
            .and_then(|name| name.to_str())
            .expect("tempdir name is UTF-8")
            .to_owned();
        {
            let mut host = HOST.lock().unwrap_or_else(|e| e.into_inner());
            if host.live_guards == 0 {
                host.created_by_tests = HOST_PATHS
                    .into_iter()
                    .filter(|path| !Path::new(path).exists())
                    .collect();
            }
            host.live_guards += 1;
        }
        let podman = Podman {
            dir,
            runtime,
            cgroup_parent: format!("/{name}"),
        };
        // Private configuration files keep the host's out of the picture.
        std::fs::write(podman.dir.join("containers.conf"), "").expect("write containers.conf");
        let storage = format!(
            "[storage]\ndriver = \"vfs\"\nrunroot = \"{}\"\ngraphroot = \"{}\"\n",
            podman.dir.join("runroot").display(),
            podman.dir.join("root").display()
        );
        std::fs::write(podman.dir.join("storage.conf"), storage).expect("write storage.conf");
        std::fs::create_dir(podman.dir.join("tmp")).expect("create podman's TMPDIR");
        podman.import_busybox();
        podman
    }

    fn import_busybox(&self) {
        let image = self.dir.join("image");
        std::fs::create_dir(&image).expect("create the image directory");
        let tar = berth_tests::make_busybox_rootfs_tar(&image);
        let tar = tar.to_str().expect("tar path is UTF-8");
        let out = self.podman(&["import", "--change", r#"CMD ["/bin/sh"]"#, tar, IMAGE]);
        assert_success(&out, "podman import");
    }

    /// podman on this guard's directories with the runtime under test.
    fn podman_command(&self) -> Command {
        let mut command = Command::new(PODMAN);
        command
            .env_remove("CONTAINER_HOST")
            .env_remove("CONTAINER_CONNECTION")
            .env("CONTAINERS_CONF", self.dir.join("containers.conf"))
            .env("CONTAINERS_STORAGE_CONF", self.dir.join("storage.conf"))
            .env("TMPDIR", self.dir.join("tmp"))
            .arg("--root")
            .arg(self.dir.join("root"))
            .arg("--runroot")
            .arg(self.dir.join("runroot"))
            .arg("--tmpdir")
            .arg(self.dir.join("libpod"))
            .arg("--network-config-dir")
            .arg(self.dir.join("networks"))
            .args([
                "--storage-driver",
                "vfs",
                "--cgroup-manager",
                "cgroupfs",
                "--events-backend",
                "file",
            ])
            .arg("--runtime")
            .arg(&self.runtime);
        command
    }

    fn try_podman(&self, args: &[&str], input: Option<&[u8]>) -> Result<Output, String> {
        let mut command = self.podman_command();
        command.args(args);
        output_within(command, input, COMMAND_TIMEOUT)
    }

    #[track_caller]
    fn podman(&self, args: &[&str]) -> Output {
        self.try_podman(args, None)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// The flags every container of these tests gets, then `flags`.
    fn run_args<'a>(&'a self, flags: &[&'a str]) -> Vec<&'a str> {
        let mut args = vec!["run", "--network", "none", "--cgroup-parent"];
        args.push(&self.cgroup_parent);
        args.extend(ULIMITS);
        args.extend_from_slice(flags);
        args
    }

    /// `podman run` with `flags`, then the image and `command`.
    #[track_caller]
    fn run(&self, flags: &[&str], command: &[&str]) -> Output {
        let mut args = self.run_args(flags);
        args.push(IMAGE);
        args.extend_from_slice(command);
        self.podman(&args)
    }

    #[track_caller]
    fn inspect(&self, container: &str, format: &str) -> String {
        let out = self.podman(&["inspect", "--format", format, container]);
        assert_success(&out, "podman inspect").trim().to_owned()
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        // Through podman first, so the runtime deletes its own state,
        // cgroups and mounts the way it would for a user.
        if let Err(e) = self.try_podman(&["rm", "--all", "--force", "--time", "1"], None) {
            eprintln!("cleanup: {e}");
        }
        for pid in processes_naming(&self.dir) {
            stop_process(pid, Duration::from_secs(5));
        }
        remove_cgroup_subtree(&self.cgroup_parent);

        remove_private_dir(&self.dir);

        let mut host = HOST.lock().unwrap_or_else(|e| e.into_inner());
        host.live_guards -= 1;
        if host.live_guards == 0 {
            for path in host.created_by_tests.drain(..) {
                let path = Path::new(path);
                // Only what the tests created, and only empty directories.
                let _ = if path.is_dir() {
                    std::fs::remove_dir(path)
                } else {
                    std::fs::remove_file(path)
                };
            }
        }
    }
}

#[test]
fn run_rm_output_and_exit_code() {
    let podman = Podman::new();

    let out = podman.run(&["--rm"], &["sh", "-c", "echo out; echo err >&2; exit 7"]);
    assert_eq!(out.status.code(), Some(7), "{}", describe(&out));
    assert_eq!(text(&out.stdout), "out\n");
    assert!(text(&out.stderr).contains("err\n"), "{}", describe(&out));

    let mut args = podman.run_args(&["--rm", "--interactive"]);
    args.extend([IMAGE, "cat"]);
    let out = podman
        .try_podman(&args, Some(b"through stdin\n"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(assert_success(&out, "run -i cat"), "through stdin\n");

    let mut command = podman.podman_command();
    let mut args = podman.run_args(&["--rm", "-it"]);
    // podman 4.3 with conmon 2.1 drops a terminal's last output when the
    // container exits right after writing it (about one run in five, with
    // runc too); the pause keeps that race out of this check.
    args.extend([IMAGE, "sh", "-c", "tty; sleep 0.5; exit 4"]);
    command.args(&args);
    let out = output_in_terminal(&command, COMMAND_TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.status.code(), Some(4), "run -it: {}", describe(&out));
    assert!(
        text(&out.stdout).contains("/dev/pts/0"),
        "tty inside `run -it` is not /dev/pts/0: {}",
        describe(&out)
    );
}

#[test]
fn detached_exec_pause_stop() {
    let podman = Podman::new();
    let out = podman.run(&["-d"], &["sleep", "1000"]);
    let id = assert_success(&out, "podman run -d").trim().to_owned();
    assert_eq!(podman.inspect(&id, "{{.State.Status}}"), "running");

    let out = podman.podman(&["exec", &id, "sh", "-c", "echo from-exec; exit 3"]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "exec exit code: {}",
        describe(&out)
    );
    assert_eq!(text(&out.stdout), "from-exec\n");

    assert_success(&podman.podman(&["pause", &id]), "podman pause");
    assert_eq!(podman.inspect(&id, "{{.State.Status}}"), "paused");
    assert_success(&podman.podman(&["unpause", &id]), "podman unpause");
    assert_eq!(podman.inspect(&id, "{{.State.Status}}"), "running");
    let out = podman.podman(&["exec", &id, "echo", "after-unpause"]);
    assert_eq!(
        assert_success(&out, "exec after unpause"),
        "after-unpause\n"
    );

    // sleep as PID 1 ignores SIGTERM: stop must fall back to SIGKILL.
    let started = Instant::now();
    assert_success(&podman.podman(&["stop", "--time", "1", &id]), "podman stop");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "stop --time 1 took {:?}",
        started.elapsed()
    );
    assert_eq!(
        podman.inspect(&id, "{{.State.Status}} {{.State.ExitCode}}"),
        "exited 137"
    );
    assert_success(&podman.podman(&["rm", &id]), "podman rm");
}

#[test]
fn limits_user_and_capabilities() {
    let podman = Podman::new();
    let script = "id; cat /sys/fs/cgroup/memory/memory.limit_in_bytes \
                  /sys/fs/cgroup/pids/pids.max; ulimit -n; ulimit -Hn; \
                  grep CapEff /proc/self/status; touch /file";
    let out = podman.run(
        &[
            "--rm",
            "--memory",
            "64m",
            "--pids-limit",
            "10",
            "--user",
            "1000:1000",
            "--cap-drop",
            "ALL",
            "--read-only",
        ],
        &["sh", "-c", script],
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "touch / must fail: {}",
        describe(&out)
    );
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    // podman adds a passwd entry for a numeric user, so `id` may name it.
    let id = lines.first().copied().unwrap_or_default();
    assert!(
        id.starts_with("uid=1000") && id.contains(" gid=1000"),
        "{}",
        describe(&out)
    );
    assert_eq!(
        lines.get(1..),
        Some(
            &[
                "67108864",
                "10",
                "20000",
                "20000",
                "CapEff:\t0000000000000000"
            ][..]
        ),
        "{}",
        describe(&out)
    );
    assert!(
        text(&out.stderr).contains("Read-only file system"),
        "{}",
        describe(&out)
    );
}
