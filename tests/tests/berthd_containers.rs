#![forbid(unsafe_code)]
//! Containers through the real docker CLI against berthd: run (attached,
//! detached, with stdin), exit codes as docker reports them, logs, stop,
//! kill, wait, rm, names, restart policies, and live restore after
//! `kill -9 berthd`. Each test starts its own berthd on private directories
//! with its own cgroup parent; the guard removes every container process,
//! mount and file.

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use berth_tests::berthd::Berthd;
use berth_tests::host::{describe, mounts_under, text, DockerApi, CLI_TIMEOUT};
use berth_tests::{make_busybox_rootfs_tar, output_with_timeout};

/// berthd with the busybox image imported as `busybox:latest`.
fn daemon() -> Berthd {
    let berthd = Berthd::start();
    let work = tempfile::tempdir().expect("tempdir");
    let tar = make_busybox_rootfs_tar(work.path());
    berthd.docker_ok(&["import", &tar.to_string_lossy(), "busybox:latest"]);
    berthd
}

fn status(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

/// Polls `check` until it holds or `within` passes.
fn wait_until(within: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    check()
}

fn inspect(berthd: &Berthd, name: &str, format: &str) -> String {
    berthd
        .docker_ok(&["inspect", "-f", format, name])
        .trim()
        .to_string()
}

/// `docker ps -a --filter <filter>`: the names, sorted, space-separated.
fn filtered_names(berthd: &Berthd, filter: &str) -> String {
    let out = berthd.docker_ok(&["ps", "-a", "--filter", filter, "--format", "{{.Names}}"]);
    let mut names: Vec<&str> = out.lines().collect();
    names.sort_unstable();
    names.join(" ")
}

/// `tar -tv` of `docker export <name>`.
fn export_listing(berthd: &Berthd, name: &str) -> String {
    let mut export = berthd.docker_command();
    export.args(["export", name]);
    let out = output_with_timeout(&mut export, CLI_TIMEOUT).expect("docker export");
    assert_eq!(status(&out), 0, "{}", describe(&out));
    let work = tempfile::tempdir().expect("tempdir");
    let tar = work.path().join("export.tar");
    std::fs::write(&tar, &out.stdout).expect("write the export");
    let listing = Command::new("tar")
        .arg("-tvf")
        .arg(&tar)
        .output()
        .expect("tar -t");
    text(&listing.stdout)
}

#[test]
fn run_prints_output_and_returns_the_exit_code() {
    let berthd = daemon();
    let out = berthd.docker(&["run", "--rm", "busybox", "echo", "hello from berth"]);
    assert_eq!(status(&out), 0, "{}", describe(&out));
    assert_eq!(text(&out.stdout), "hello from berth\n");

    let out = berthd.docker(&[
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        "echo to-out; echo to-err >&2; exit 3",
    ]);
    assert_eq!(status(&out), 3, "{}", describe(&out));
    assert_eq!(text(&out.stdout), "to-out\n");
    assert!(text(&out.stderr).contains("to-err"), "{}", describe(&out));

    // docker's own exit codes: 127 command not found, 126 not executable.
    let out = berthd.docker(&["run", "--rm", "busybox", "no-such-command"]);
    assert_eq!(status(&out), 127, "{}", describe(&out));
    assert!(
        text(&out.stderr).contains("executable file not found"),
        "{}",
        describe(&out)
    );
    let out = berthd.docker(&["run", "--rm", "busybox", "/etc/passwd"]);
    assert_eq!(status(&out), 126, "{}", describe(&out));

    // --rm removed every one of them.
    assert!(wait_until(Duration::from_secs(10), || berthd
        .docker_ok(&["ps", "-aq"])
        .trim()
        .is_empty()));
    // No rootfs stays mounted.
    assert!(wait_until(Duration::from_secs(10), || mounts_under(
        &berthd.data_root()
    )
    .is_empty()));
}

#[test]
fn rm_container_that_cannot_start_reports_the_error_once() {
    let berthd = daemon();
    // The CLI waits for the removal of a --rm container; dockerd ends that
    // wait without the start's error, which the CLI would log again.
    for args in [
        &["run", "--rm", "busybox", "no-such-command"][..],
        &["run", "--rm", "-u", "nosuchuser", "busybox", "true"][..],
    ] {
        let out = berthd.docker(args);
        assert_ne!(status(&out), 0, "{}", describe(&out));
        let stderr = text(&out.stderr);
        assert_eq!(
            stderr.matches("Error response from daemon").count(),
            1,
            "{}",
            describe(&out)
        );
        assert!(
            !stderr.contains("Error waiting for container"),
            "{}",
            describe(&out)
        );
    }
}

#[test]
fn ps_filters_name_by_pattern_and_ancestor_by_reference() {
    let berthd = daemon();
    for name in ["web-1", "web-2", "db"] {
        berthd.docker_ok(&["create", "--name", name, "busybox", "true"]);
    }
    let names = |filter: &str| filtered_names(&berthd, filter);
    assert_eq!(names("name=web"), "web-1 web-2");
    assert_eq!(names("name=^web-1$"), "web-1");
    assert_eq!(names("name=^/db"), "db");
    assert_eq!(names("name=web-[2-9]"), "web-2");
    assert_eq!(names("ancestor=busybox"), "db web-1 web-2");
    assert_eq!(names("ancestor=busybox:latest"), "db web-1 web-2");
    assert_eq!(
        names("ancestor=docker.io/library/busybox:latest"),
        "db web-1 web-2"
    );
    assert_eq!(names("ancestor=no-such-image"), "");
    assert_eq!(names("is-task=false"), "db web-1 web-2");
    assert_eq!(names("is-task=true"), "");
}

#[test]
fn ps_and_inspect_size_include_the_image() {
    let berthd = daemon();
    berthd.docker_ok(&["create", "--name", "sized", "busybox", "true"]);
    // The docker CLI shows `(virtual …)` when SizeRootFs is there.
    let size = berthd.docker_ok(&["ps", "-a", "-s", "--format", "{{.Size}}"]);
    assert!(size.starts_with("0B (virtual "), "{size}");
    let sizes = berthd.docker_ok(&[
        "inspect",
        "-s",
        "-f",
        "{{.SizeRw}} {{.SizeRootFs}}",
        "sized",
    ]);
    let sizes = sizes.trim();
    let root_fs: u64 = sizes
        .split_once(' ')
        .and_then(|(_, r)| r.parse().ok())
        .unwrap_or_else(|| panic!("SizeRootFs in {sizes:?}"));
    assert!(root_fs > 1_000_000, "{sizes}");
}

#[test]
fn create_refuses_a_cpuset_the_host_lacks() {
    let berthd = daemon();
    let out = berthd.docker(&["run", "--rm", "--cpuset-cpus", "4095", "busybox", "true"]);
    assert_eq!(status(&out), 125, "{}", describe(&out));
    assert!(
        text(&out.stderr)
            .contains("Requested CPUs are not available - requested 4095, available: "),
        "{}",
        describe(&out)
    );
    assert_eq!(berthd.docker_ok(&["ps", "-aq"]).trim(), "");
}

#[test]
fn containers_get_dockerenv_and_mtab_as_with_dockerd() {
    let berthd = daemon();
    let out = berthd.docker_ok(&[
        "run",
        "--name",
        "plain",
        "busybox",
        "sh",
        "-c",
        "stat -c '%a %s' /.dockerenv; readlink /etc/mtab",
    ]);
    assert_eq!(out, "755 0\n/proc/mounts\n");
    // Not changes of the container: diff shows nothing, as with dockerd.
    assert_eq!(berthd.docker_ok(&["diff", "plain"]), "");
    let listing = export_listing(&berthd, "plain");
    assert!(
        listing.contains(" .dockerenv") || listing.contains(" ./.dockerenv"),
        "{listing}"
    );
    assert!(listing.contains("etc/mtab -> /proc/mounts"), "{listing}");
    // A container never started has them too, as dockerd's init layer
    // gives them at create.
    berthd.docker_ok(&["create", "--name", "fresh", "busybox", "true"]);
    let listing = export_listing(&berthd, "fresh");
    assert!(listing.contains("etc/mtab -> /proc/mounts"), "{listing}");
    assert!(listing.contains(".dockerenv"), "{listing}");
    assert_eq!(berthd.docker_ok(&["diff", "fresh"]), "");
}

#[test]
fn ps_shows_the_network_a_container_is_on() {
    let berthd = daemon();
    berthd.docker_ok(&["create", "--name", "on-none", "busybox", "true"]);
    berthd.docker_ok(&[
        "create",
        "--name",
        "on-host",
        "--network",
        "host",
        "busybox",
        "true",
    ]);
    let out = berthd.docker_ok(&["ps", "-a", "--format", "{{.Names}} {{.Networks}}"]);
    let mut lines: Vec<&str> = out.lines().collect();
    lines.sort();
    assert_eq!(lines, ["on-host host", "on-none none"]);
}

#[test]
fn stdin_reaches_the_container() {
    let berthd = daemon();
    let mut command = berthd.docker_command();
    command
        .args([
            "run",
            "--rm",
            "-i",
            "busybox",
            "sh",
            "-c",
            "tr a-z A-Z; echo done",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("docker run -i");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"shout this\n")
        .expect("write stdin");
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(text(&out.stdout), "SHOUT THIS\ndone\n");
}

#[test]
fn detached_container_logs_stop_and_remove() {
    let berthd = daemon();
    let id = berthd
        .docker_ok(&[
            "run",
            "-d",
            "--name",
            "web",
            "busybox",
            "sh",
            "-c",
            "echo started; echo oops >&2; exec sleep 1000",
        ])
        .trim()
        .to_string();
    assert_eq!(id.len(), 64, "{id}");
    let ps = berthd.docker_ok(&["ps", "--format", "{{.Names}} {{.Image}} {{.Status}}"]);
    assert!(ps.starts_with("web busybox Up "), "{ps}");
    assert_eq!(inspect(&berthd, "web", "{{.State.Running}}"), "true");
    assert_eq!(inspect(&berthd, &id[..12], "{{.Name}}"), "/web");

    assert!(wait_until(Duration::from_secs(10), || {
        let out = berthd.docker(&["logs", "web"]);
        text(&out.stdout) == "started\n" && text(&out.stderr) == "oops\n"
    }));
    // The two lines come from two pipes: either may be last.
    let out = berthd.docker(&["logs", "--tail", "2", "-t", "web"]);
    assert!(
        text(&out.stderr).ends_with("Z oops\n") && text(&out.stdout).ends_with("Z started\n"),
        "{}",
        describe(&out)
    );

    // Removing a running container needs -f.
    let out = berthd.docker(&["rm", "web"]);
    assert_ne!(status(&out), 0);
    assert!(
        text(&out.stderr).contains("container is running"),
        "{}",
        describe(&out)
    );

    let started = Instant::now();
    berthd.docker_ok(&["stop", "-t", "1", "web"]);
    assert!(started.elapsed() < Duration::from_secs(15));
    // sleep as pid 1 ignores SIGTERM: killed after the timeout.
    assert_eq!(inspect(&berthd, "web", "{{.State.ExitCode}}"), "137");
    assert_eq!(inspect(&berthd, "web", "{{.State.Status}}"), "exited");
    let ps = berthd.docker_ok(&["ps", "-a", "--format", "{{.Status}}"]);
    assert!(ps.starts_with("Exited (137) "), "{ps}");
    assert!(berthd.docker_ok(&["ps", "-q"]).trim().is_empty());

    // Logs survive the stop; the name is taken until rm.
    assert_eq!(text(&berthd.docker(&["logs", "web"]).stdout), "started\n");
    // `docker create` exits 1 on a daemon error (`run` exits 125).
    let out = berthd.docker(&["create", "--name", "web", "busybox", "true"]);
    assert_eq!(status(&out), 1, "{}", describe(&out));
    assert!(
        text(&out.stderr).contains("is already in use"),
        "{}",
        describe(&out)
    );
    berthd.docker_ok(&["rm", "web"]);
    let out = berthd.docker(&["inspect", "web"]);
    assert_ne!(status(&out), 0);
    assert!(text(&out.stderr).contains("No such"), "{}", describe(&out));
    assert!(mounts_under(&berthd.data_root()).is_empty());
}

#[test]
fn kill_wait_start_again_and_force_remove() {
    let berthd = daemon();
    let id = berthd
        .docker_ok(&["run", "-d", "busybox", "sleep", "1000"])
        .trim()
        .to_string();
    let mut wait = berthd.docker_command();
    wait.args(["wait", &id]);
    let waiter = std::thread::spawn(move || output_with_timeout(&mut wait, CLI_TIMEOUT));
    std::thread::sleep(Duration::from_millis(300));
    berthd.docker_ok(&["kill", &id]);
    let out = waiter.join().expect("waiter").expect("docker wait");
    assert_eq!(text(&out.stdout).trim(), "137", "{}", describe(&out));

    // Killing a stopped container is a conflict, as with dockerd.
    let out = berthd.docker(&["kill", &id]);
    assert_ne!(status(&out), 0);
    assert!(
        text(&out.stderr).contains("is not running"),
        "{}",
        describe(&out)
    );

    // Start again: a second run of the same container.
    berthd.docker_ok(&["start", &id]);
    assert_eq!(inspect(&berthd, &id, "{{.State.Status}}"), "running");
    let pid = inspect(&berthd, &id, "{{.State.Pid}}");
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    berthd.docker_ok(&["rm", "-f", &id]);
    assert!(wait_until(Duration::from_secs(5), || {
        !std::path::Path::new(&format!("/proc/{pid}")).exists()
    }));
    assert!(berthd.docker_ok(&["ps", "-aq"]).trim().is_empty());
}

#[test]
fn restart_policy_on_failure_retries_then_gives_up() {
    let berthd = daemon();
    berthd.docker_ok(&[
        "run",
        "-d",
        "--name",
        "flaky",
        "--restart",
        "on-failure:2",
        "busybox",
        "sh",
        "-c",
        "exit 4",
    ]);
    assert!(
        wait_until(Duration::from_secs(20), || {
            inspect(&berthd, "flaky", "{{.RestartCount}} {{.State.Status}}") == "2 exited"
        }),
        "{}",
        inspect(&berthd, "flaky", "{{.RestartCount}} {{.State.Status}}")
    );
    assert_eq!(inspect(&berthd, "flaky", "{{.State.ExitCode}}"), "4");
    assert_eq!(
        inspect(&berthd, "flaky", "{{.HostConfig.RestartPolicy.Name}}"),
        "on-failure"
    );
}

#[test]
fn containers_outlive_a_daemon_crash() {
    let mut berthd = daemon();
    berthd.docker_ok(&[
        "run",
        "-d",
        "--name",
        "counter",
        "busybox",
        "sh",
        "-c",
        "i=0; while true; do echo line $i; i=$((i+1)); sleep 0.1; done",
    ]);
    berthd.docker_ok(&[
        "run",
        "-d",
        "--name",
        "quitter",
        "busybox",
        "sh",
        "-c",
        "sleep 1; exit 7",
    ]);
    // One that fails while the daemon is down, with a policy to restart.
    berthd.docker_ok(&[
        "run",
        "-d",
        "--name",
        "phoenix",
        "--restart",
        "on-failure",
        "busybox",
        "sh",
        "-c",
        "test -f /tmp/again && exec sleep 1000; touch /tmp/again; sleep 1; exit 3",
    ]);
    let pid = inspect(&berthd, "counter", "{{.State.Pid}}");
    berthd.kill9();
    // While the daemon is down the container runs on and its log grows.
    let log_lines = || {
        let logs = std::fs::read_dir(berthd.data_root().join("containers"))
            .expect("containers dir")
            .flatten()
            .map(|e| e.path())
            .filter_map(|dir| {
                let id = dir.file_name()?.to_string_lossy().into_owned();
                std::fs::read_to_string(dir.join(format!("{id}-json.log"))).ok()
            })
            .collect::<Vec<_>>();
        logs.iter()
            .map(|l| l.matches("line ").count())
            .max()
            .unwrap_or(0)
    };
    let before = log_lines();
    std::thread::sleep(Duration::from_secs(2));
    assert!(log_lines() > before, "the log stopped growing");
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());

    berthd.spawn();
    assert_eq!(inspect(&berthd, "counter", "{{.State.Status}}"), "running");
    assert_eq!(inspect(&berthd, "counter", "{{.State.Pid}}"), pid);
    // The one that exited meanwhile shows its real exit code.
    assert!(wait_until(Duration::from_secs(10), || inspect(
        &berthd,
        "quitter",
        "{{.State.Status}} {{.State.ExitCode}}"
    ) == "exited 7"));
    let logs = text(&berthd.docker(&["logs", "--tail", "2", "counter"]).stdout);
    assert_eq!(logs.lines().count(), 2, "{logs}");
    // The policy fired for the one that failed meanwhile.
    assert!(
        wait_until(Duration::from_secs(10), || inspect(
            &berthd,
            "phoenix",
            "{{.State.Status}} {{.RestartCount}}"
        ) == "running 1"),
        "{}",
        inspect(&berthd, "phoenix", "{{json .State}} {{.RestartCount}}")
    );
    // exec, logs -f and attach reach the reattached shim.
    assert_eq!(
        berthd.docker_ok(&["exec", "counter", "echo", "still here"]),
        "still here\n"
    );
    let mut follow = berthd.docker_command();
    follow.args(["logs", "-f", "--tail", "1", "counter"]);
    let mut attach = berthd.docker_command();
    attach.args(["attach", "--no-stdin", "counter"]);
    let followers: Vec<_> = [follow, attach]
        .into_iter()
        .map(|mut c| std::thread::spawn(move || output_with_timeout(&mut c, CLI_TIMEOUT)))
        .collect();
    std::thread::sleep(Duration::from_secs(2));
    berthd.docker_ok(&["stop", "-t", "1", "counter"]);
    for f in followers {
        let out = f.join().expect("thread").expect("docker");
        assert!(text(&out.stdout).lines().count() >= 2, "{}", describe(&out));
        assert!(
            text(&out.stdout).lines().all(|l| l.starts_with("line ")),
            "{}",
            describe(&out)
        );
    }
    assert_eq!(inspect(&berthd, "counter", "{{.State.Status}}"), "exited");
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
}

#[test]
fn bad_create_requests_are_refused() {
    let berthd = daemon();
    let out = berthd.docker(&["create", "--name", "bad name", "busybox", "true"]);
    assert_eq!(status(&out), 1);
    assert!(
        text(&out.stderr).contains("Invalid container name"),
        "{}",
        describe(&out)
    );
    let out = berthd.docker(&["run", "--restart", "sometimes", "busybox", "true"]);
    assert_eq!(status(&out), 125, "{}", describe(&out));
    let out = berthd.docker(&["run", "--log-opt", "max-size=lots", "busybox", "true"]);
    assert_eq!(status(&out), 125, "{}", describe(&out));
    assert!(text(&out.stderr).contains("max-size"), "{}", describe(&out));
    // CPUs the host lacks are refused at create, as dockerd does.
    let out = berthd.docker(&["run", "--cpuset-cpus", "0,999", "busybox", "true"]);
    assert_eq!(status(&out), 125, "{}", describe(&out));
    assert!(
        text(&out.stderr)
            .contains("Requested CPUs are not available - requested 0,999, available: 0"),
        "{}",
        describe(&out)
    );
    let out = berthd.docker(&["run", "--stop-signal", "SIGNOPE", "busybox", "true"]);
    assert_eq!(status(&out), 125, "{}", describe(&out));
    assert!(
        text(&out.stderr).contains("Invalid signal: SIGNOPE"),
        "{}",
        describe(&out)
    );
    // Nothing was created by any of them.
    assert!(berthd.docker_ok(&["ps", "-aq"]).trim().is_empty());
    // Garbage JSON straight to the API.
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--unix-socket",
        ])
        .arg(berthd.socket())
        .args([
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "-d",
            "{\"Image\": 5}",
            "http://berth/containers/create",
        ])
        .output()
        .expect("curl");
    assert_eq!(text(&out.stdout), "400");
    assert!(berthd.docker_ok(&["ps", "-aq"]).trim().is_empty());
}

#[test]
fn init_reaps_and_forwards_signals() {
    let berthd = daemon();
    // Without --init the command is pid 1; with it, the built-in init is.
    let out = berthd.docker_ok(&["run", "--rm", "busybox", "sh", "-c", "echo $$"]);
    assert_eq!(out.trim(), "1");
    let out = berthd.docker_ok(&["run", "--rm", "--init", "busybox", "sh", "-c", "echo $$"]);
    assert_eq!(out.trim(), "2");
    // It shows as dockerd's init does, naming no host path.
    let out = berthd.docker_ok(&[
        "run",
        "--rm",
        "--init",
        "busybox",
        "sh",
        "-c",
        "cat /proc/1/comm; tr '\\0' ' ' < /proc/1/cmdline",
    ]);
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("docker-init"), "{out}");
    assert_eq!(
        lines.next().map(str::trim_end),
        Some("docker-init --"),
        "{out}"
    );
    // An orphaned grandchild is reaped: no zombie stays behind.
    let out = berthd.docker_ok(&[
        "run",
        "--rm",
        "--init",
        "busybox",
        "sh",
        "-c",
        "(sleep 0.2 &) ; sleep 1; ps -o stat | grep -c Z || true",
    ]);
    assert_eq!(out.trim(), "0", "zombies: {out}");
    // SIGTERM from docker stop reaches the program through the init: sleep
    // dies at once instead of being killed after the timeout.
    berthd.docker_ok(&[
        "run", "-d", "--name", "sleeper", "--init", "busybox", "sleep", "1000",
    ]);
    let started = Instant::now();
    berthd.docker_ok(&["stop", "-t", "20", "sleeper"]);
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(inspect(&berthd, "sleeper", "{{.State.ExitCode}}"), "143");
}

#[test]
fn tty_and_exec() {
    let berthd = daemon();
    let mut command = berthd.docker_command();
    command.args(["run", "--rm", "-t", "busybox", "sh", "-c", "tty; exit 6"]);
    let out = berth_tests::host::output_in_terminal(&command, CLI_TIMEOUT).expect("docker run -t");
    assert_eq!(status(&out), 6, "{}", describe(&out));
    assert!(
        text(&out.stdout).contains("/dev/pts/0"),
        "{}",
        describe(&out)
    );

    berthd.docker_ok(&[
        "run", "-d", "--name", "box", "-e", "BASE=1", "busybox", "sleep", "1000",
    ]);
    let out = berthd.docker_ok(&["exec", "box", "sh", "-c", "echo $BASE $$"]);
    assert_eq!(out.split_whitespace().next(), Some("1"), "{out}");
    let out = berthd.docker(&["exec", "box", "sh", "-c", "echo err >&2; exit 5"]);
    assert_eq!(status(&out), 5, "{}", describe(&out));
    assert_eq!(text(&out.stderr), "err\n");
    let out = berthd.docker_ok(&[
        "exec",
        "-e",
        "X=y",
        "-w",
        "/tmp",
        "-u",
        "65534:65534",
        "box",
        "sh",
        "-c",
        "echo $X $(pwd) $(id -u)",
    ]);
    assert_eq!(out.trim(), "y /tmp 65534");
    let out = berthd.docker(&["exec", "box", "no-such-command"]);
    assert_eq!(status(&out), 127, "{}", describe(&out));
    let mut command = berthd.docker_command();
    command
        .args(["exec", "-i", "box", "tr", "a-z", "A-Z"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("docker exec -i");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"quiet\n")
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    assert_eq!(text(&out.stdout), "QUIET\n", "{}", describe(&out));
    let mut command = berthd.docker_command();
    command.args(["exec", "-t", "box", "tty"]);
    let out = berth_tests::host::output_in_terminal(&command, CLI_TIMEOUT).expect("docker exec -t");
    assert!(
        text(&out.stdout).contains("/dev/pts/"),
        "{}",
        describe(&out)
    );
    // Exec into a stopped container is refused.
    berthd.docker_ok(&["kill", "box"]);
    let out = berthd.docker(&["exec", "box", "true"]);
    assert_ne!(status(&out), 0);
    assert!(
        text(&out.stderr).contains("is not running"),
        "{}",
        describe(&out)
    );
}

#[test]
fn pause_rename_restart_and_events() {
    let berthd = daemon();
    let since = berthd_now(&berthd);
    berthd.docker_ok(&["run", "-d", "--name", "one", "busybox", "sleep", "1000"]);
    berthd.docker_ok(&["pause", "one"]);
    assert_eq!(inspect(&berthd, "one", "{{.State.Status}}"), "paused");
    let ps = berthd.docker_ok(&["ps", "--format", "{{.Status}}"]);
    assert!(ps.trim_end().ends_with("(Paused)"), "{ps}");
    let out = berthd.docker(&["pause", "one"]);
    assert_ne!(status(&out), 0);
    berthd.docker_ok(&["unpause", "one"]);
    berthd.docker_ok(&["rename", "one", "two"]);
    assert_eq!(inspect(&berthd, "two", "{{.Name}}"), "/two");
    let pid = inspect(&berthd, "two", "{{.State.Pid}}");
    berthd.docker_ok(&["restart", "-t", "0", "two"]);
    assert_eq!(inspect(&berthd, "two", "{{.State.Status}}"), "running");
    assert_ne!(inspect(&berthd, "two", "{{.State.Pid}}"), pid);
    berthd.docker_ok(&["rm", "-f", "two"]);
    let until = berthd_now(&berthd);
    let events = berthd.docker_ok(&[
        "events",
        "--since",
        &since,
        "--until",
        &until,
        "--filter",
        "type=container",
        "--format",
        "{{.Action}}",
    ]);
    let actions: Vec<&str> = events.lines().collect();
    for wanted in [
        "create", "start", "pause", "unpause", "rename", "kill", "die", "stop", "restart",
        "destroy",
    ] {
        assert!(
            actions.contains(&wanted),
            "{wanted} missing from {actions:?}"
        );
    }
}

/// The daemon's clock as `docker events --since` takes it.
fn berthd_now(_berthd: &Berthd) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock");
    format!("{}.{:09}", now.as_secs(), now.subsec_nanos())
}

#[test]
fn logs_follow_ends_with_the_container() {
    let berthd = daemon();
    berthd.docker_ok(&[
        "run",
        "-d",
        "--name",
        "talker",
        "busybox",
        "sh",
        "-c",
        "for i in 1 2 3; do echo n$i; sleep 0.5; done",
    ]);
    let out = berthd.docker(&["logs", "-f", "talker"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(text(&out.stdout), "n1\nn2\nn3\n");
}

#[test]
fn runc_from_add_runtime_runs_containers() {
    let berthd = Berthd::builder()
        .args(["--add-runtime", "runc=/usr/sbin/runc"])
        .start();
    let work = tempfile::tempdir().expect("tempdir");
    let tar = make_busybox_rootfs_tar(work.path());
    berthd.docker_ok(&["import", &tar.to_string_lossy(), "busybox:latest"]);
    let out = berthd.docker(&[
        "run",
        "--rm",
        "--runtime",
        "runc",
        "busybox",
        "sh",
        "-c",
        "grep CapEff /proc/self/status; exit 9",
    ]);
    assert_eq!(status(&out), 9, "{}", describe(&out));
    assert!(
        text(&out.stdout).contains("00000000a80425fb"),
        "{}",
        describe(&out)
    );
    let out = berthd.docker(&["run", "--rm", "--runtime", "nope", "busybox", "true"]);
    assert_eq!(status(&out), 125);
    assert!(
        text(&out.stderr).contains("unknown or invalid runtime name"),
        "{}",
        describe(&out)
    );
}

#[test]
fn healthchecks_report_status_and_on_unhealthy_restarts() {
    let berthd = daemon();
    let since = berthd_now(&berthd);
    berthd.docker_ok(&[
        "run",
        "-d",
        "--name",
        "checked",
        "--health-cmd",
        "test -f /tmp/ok && echo fine",
        "--health-interval",
        "300ms",
        "--health-retries",
        "2",
        "busybox",
        "sh",
        "-c",
        "touch /tmp/ok; exec sleep 1000",
    ]);
    assert!(
        wait_until(Duration::from_secs(15), || inspect(
            &berthd,
            "checked",
            "{{.State.Health.Status}}"
        ) == "healthy"),
        "{}",
        inspect(&berthd, "checked", "{{json .State.Health}}")
    );
    let ps = berthd.docker_ok(&[
        "ps",
        "--filter",
        "health=healthy",
        "--format",
        "{{.Names}} {{.Status}}",
    ]);
    assert!(
        ps.starts_with("checked Up ") && ps.trim_end().ends_with("(healthy)"),
        "{ps}"
    );
    assert_eq!(
        inspect(&berthd, "checked", "{{(index .State.Health.Log 0).Output}}"),
        "fine"
    );
    berthd.docker_ok(&["exec", "checked", "rm", "/tmp/ok"]);
    assert!(wait_until(Duration::from_secs(15), || inspect(
        &berthd,
        "checked",
        "{{.State.Health.Status}}"
    ) == "unhealthy"));
    let events = berthd.docker_ok(&[
        "events",
        "--since",
        &since,
        "--until",
        &berthd_now(&berthd),
        "--filter",
        "event=health_status",
        "--format",
        "{{.Action}}",
    ]);
    assert!(events.contains("health_status: healthy"), "{events}");
    assert!(events.contains("health_status: unhealthy"), "{events}");

    // Berth's on-unhealthy policy restarts such a container.
    berthd.docker_ok(&[
        "run",
        "-d",
        "--name",
        "healer",
        "--restart",
        "on-unhealthy",
        "--health-cmd",
        "test -f /tmp/ok",
        "--health-interval",
        "300ms",
        "--health-retries",
        "1",
        "busybox",
        "sh",
        "-c",
        "sleep 1000",
    ]);
    assert!(
        wait_until(Duration::from_secs(20), || {
            inspect(&berthd, "healer", "{{.RestartCount}}")
                .parse::<u32>()
                .is_ok_and(|n| n >= 1)
        }),
        "{}",
        inspect(&berthd, "healer", "{{.RestartCount}} {{json .State}}")
    );
    assert_eq!(
        inspect(&berthd, "healer", "{{.HostConfig.RestartPolicy.Name}}"),
        "on-unhealthy"
    );
}

#[test]
fn images_in_use_are_kept() {
    let berthd = daemon();
    berthd.docker_ok(&["create", "--name", "user", "busybox", "true"]);
    let out = berthd.docker(&["rmi", "busybox"]);
    assert_ne!(status(&out), 0);
    assert!(
        text(&out.stderr).contains("(must force)"),
        "{}",
        describe(&out)
    );
    let out = berthd.docker(&["image", "prune", "-a", "-f"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(!berthd.docker_ok(&["images", "-q"]).trim().is_empty());
    // Forced: the name goes, the image stays for the container.
    let out = berthd.docker_ok(&["rmi", "-f", "busybox"]);
    assert!(out.contains("Untagged: busybox:latest"), "{out}");
    assert!(!out.contains("Deleted:"), "{out}");
    assert!(!berthd.docker_ok(&["images", "-aq"]).trim().is_empty());
    berthd.docker_ok(&["start", "-a", "user"]);
    berthd.docker_ok(&["rm", "user"]);
    berthd.docker_ok(&["image", "prune", "-f"]);
    assert!(berthd.docker_ok(&["images", "-aq"]).trim().is_empty());
}

/// Processes in the daemon's containers' cgroups, on every hierarchy.
fn container_processes(berthd: &Berthd) -> Vec<String> {
    berth_tests::host::cgroup_hierarchies()
        .iter()
        .flat_map(|h| berth_tests::host::cgroup_tree(&h.join(berthd.cgroup_parent())))
        .flat_map(|cg| {
            std::fs::read_to_string(cg.join("cgroup.procs"))
                .unwrap_or_default()
                .lines()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Container cgroups left under the daemon's parent, on every hierarchy.
fn container_cgroups(berthd: &Berthd) -> Vec<std::path::PathBuf> {
    berth_tests::host::cgroup_hierarchies()
        .iter()
        .flat_map(|h| {
            let parent = h.join(berthd.cgroup_parent());
            berth_tests::host::cgroup_tree(&parent)
                .into_iter()
                .filter(move |c| *c != parent)
        })
        .collect()
}

/// Entries in a directory (none when it is missing).
fn entries(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn fifty_parallel_runs_leave_nothing_behind() {
    let berthd = daemon();
    let runs: Vec<_> = (0..50)
        .map(|i| {
            let mut command = berthd.docker_command();
            command.args([
                "run",
                "--rm",
                "busybox",
                "sh",
                "-c",
                &format!("echo run{i}"),
            ]);
            std::thread::spawn(move || output_with_timeout(&mut command, CLI_TIMEOUT))
        })
        .collect();
    for (i, run) in runs.into_iter().enumerate() {
        let out = run.join().expect("thread").expect("docker run");
        assert!(out.status.success(), "run {i}: {}", describe(&out));
        assert_eq!(text(&out.stdout), format!("run{i}\n"));
    }
    assert!(wait_until(Duration::from_secs(20), || berthd
        .docker_ok(&["ps", "-aq"])
        .trim()
        .is_empty()));
    // The host, not only the API: no mount, cgroup, process or state dir.
    assert!(mounts_under(&berthd.data_root()).is_empty());
    assert!(
        container_cgroups(&berthd).is_empty(),
        "{:?}",
        container_cgroups(&berthd)
    );
    assert!(container_processes(&berthd).is_empty());
    assert!(entries(&berthd.data_root().join("containers")).is_empty());
    let exec = berthd.data_root().with_file_name("exec");
    assert!(
        entries(&exec.join("c")).is_empty(),
        "{:?}",
        entries(&exec.join("c"))
    );
    // Shims exit right after their container is removed.
    let daemon = berthd.pid();
    let leftover = || {
        let mut p = berth_tests::host::processes_naming(&exec);
        p.retain(|p| Some(*p) != daemon);
        p
    };
    assert!(
        wait_until(Duration::from_secs(5), || leftover().is_empty()),
        "{:?}",
        leftover()
            .iter()
            .map(|p| std::fs::read_to_string(format!("/proc/{p}/cmdline")).unwrap_or_default())
            .collect::<Vec<_>>()
    );
}

#[test]
fn failed_create_and_start_leave_nothing_behind() {
    let berthd = daemon();
    let out = berthd.docker(&["run", "--cap-add", "NOT_A_CAP", "busybox", "true"]);
    assert_eq!(status(&out), 125, "{}", describe(&out));
    let out = berthd.docker(&["run", "--memory", "-5", "busybox", "true"]);
    assert_ne!(status(&out), 0, "{}", describe(&out));
    let out = berthd.docker(&["kill", "-s", "SIGNOPE", "nothing"]);
    assert_ne!(status(&out), 0, "{}", describe(&out));
    assert!(berthd.docker_ok(&["ps", "-aq"]).trim().is_empty());
    assert!(entries(&berthd.data_root().join("containers")).is_empty());
    // A start that fails (a missing device, as dockerd checks it at start;
    // no such command) leaves the container created but nothing running or
    // mounted.
    let out = berthd.docker(&[
        "run",
        "--name",
        "nodev",
        "--device",
        "/dev/does-not-exist",
        "busybox",
        "true",
    ]);
    // 127, as the docker CLI makes of dockerd's "no such file or directory".
    assert_eq!(status(&out), 127, "{}", describe(&out));
    assert!(
        text(&out.stderr)
            .contains("adding custom device \"/dev/does-not-exist\": no such file or directory"),
        "{}",
        describe(&out)
    );
    berthd.docker_ok(&["rm", "nodev"]);
    // A failed `run --rm` reports its error once, as with dockerd (the
    // removed container's wait carries no error for the CLI to repeat).
    for args in [
        &["run", "--rm", "busybox", "no-such-command"][..],
        &[
            "run",
            "--rm",
            "--device",
            "/dev/does-not-exist",
            "busybox",
            "true",
        ],
    ] {
        let out = berthd.docker(args);
        assert_eq!(status(&out), 127, "{}", describe(&out));
        assert!(
            !text(&out.stderr).contains("Error waiting for container"),
            "{}",
            describe(&out)
        );
    }
    let out = berthd.docker(&["run", "--name", "broken", "busybox", "no-such-command"]);
    assert_eq!(status(&out), 127, "{}", describe(&out));
    assert!(mounts_under(&berthd.data_root()).is_empty());
    assert!(container_processes(&berthd).is_empty());
    berthd.docker_ok(&["rm", "broken"]);
    assert!(
        container_cgroups(&berthd).is_empty(),
        "{:?}",
        container_cgroups(&berthd)
    );
    let exec = berthd.data_root().with_file_name("exec");
    assert!(entries(&exec.join("c")).is_empty());
}

#[test]
fn daemon_shutdown_stops_containers_and_removes_rm_ones() {
    let mut berthd = daemon();
    berthd.docker_ok(&[
        "run", "-d", "--rm", "--name", "temp", "busybox", "sleep", "1000",
    ]);
    berthd.docker_ok(&[
        "run",
        "-d",
        "--name",
        "keeper",
        "--restart",
        "always",
        "busybox",
        "sh",
        "-c",
        "trap 'exit 0' TERM; while :; do sleep 0.1; done",
    ]);
    berthd.docker_ok(&[
        "run",
        "-d",
        "--name",
        "plain",
        "busybox",
        "sh",
        "-c",
        "trap 'exit 0' TERM; touch /tmp/ready; while :; do sleep 0.1; done",
    ]);
    // The trap is set before the daemon goes down.
    assert!(wait_until(Duration::from_secs(10), || berthd
        .docker(&["exec", "plain", "test", "-f", "/tmp/ready"])
        .status
        .success()));
    let status = berthd.terminate();
    assert!(status.success(), "{status:?}");
    // Nothing of the containers runs or is mounted once berthd is gone.
    assert!(container_processes(&berthd).is_empty());
    assert!(mounts_under(&berthd.data_root()).is_empty());
    // Shims exit within moments of their container's removal.
    let exec = berthd.data_root().with_file_name("exec");
    assert!(wait_until(Duration::from_secs(5), || {
        berth_tests::host::processes_naming(&exec).is_empty()
    }));
    berthd.spawn();
    let names = berthd.docker_ok(&["ps", "-a", "--format", "{{.Names}}"]);
    assert!(!names.contains("temp"), "{names}");
    // `always` comes back with the daemon; a plain one stays exited.
    assert!(wait_until(Duration::from_secs(10), || inspect(
        &berthd,
        "keeper",
        "{{.State.Status}}"
    ) == "running"));
    assert_eq!(
        inspect(&berthd, "plain", "{{.State.Status}} {{.State.ExitCode}}"),
        "exited 0"
    );
}

#[test]
fn info_and_disk_usage_count_containers_and_logs() {
    let berthd = daemon();
    berthd.docker_ok(&["run", "-d", "--name", "up", "busybox", "sleep", "1000"]);
    berthd.docker_ok(&[
        "run",
        "--name",
        "chatty",
        "busybox",
        "sh",
        "-c",
        "seq 1 20000",
    ]);
    let info = berthd.docker_ok(&["info", "--format", "{{.Containers}} {{.ContainersRunning}} {{.ContainersStopped}} {{.DefaultRuntime}} {{.LoggingDriver}}"]);
    assert_eq!(info.trim(), "2 1 1 berth json-file");
    // The missing default network is said plainly.
    let out = berthd.docker(&["info"]);
    assert!(
        text(&out.stderr).contains("--network none by default")
            || text(&out.stdout).contains("--network none by default"),
        "{}",
        describe(&out)
    );
    // `system df` counts the log (about 20000 JSON lines of ~60 bytes).
    let size = berthd.docker_ok(&[
        "system",
        "df",
        "--format",
        "{{.Type}} {{.TotalCount}} {{.Size}}",
    ]);
    let line = size
        .lines()
        .find(|l| l.starts_with("Containers "))
        .unwrap_or_default()
        .to_string();
    assert!(line.starts_with("Containers 2 "), "{size}");
    let shown = line.split_whitespace().nth(2).unwrap_or_default();
    assert!(shown.ends_with("MB") || shown.ends_with("kB"), "{line}");
    let json: serde_json::Value =
        serde_json::from_str(&berthd.curl("/system/df")).expect("df json");
    assert!(
        json["LogsSize"].as_u64().unwrap_or(0) > 1_000_000,
        "{}",
        json["LogsSize"]
    );
}

#[test]
fn attach_detach_and_start_attached() {
    let berthd = daemon();
    // start -a -i: the created container's output and stdin go through.
    berthd.docker_ok(&[
        "create",
        "-i",
        "--name",
        "echoer",
        "busybox",
        "sh",
        "-c",
        "read line; echo got $line; exit 4",
    ]);
    let mut command = berthd.docker_command();
    command
        .args(["start", "-a", "-i", "echoer"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("docker start -a -i");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"hello\n")
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    assert_eq!(status(&out), 4, "{}", describe(&out));
    assert_eq!(text(&out.stdout), "got hello\n");

    // attach to a running tty container, then detach with ctrl-p ctrl-q:
    // the container keeps running.
    berthd.docker_ok(&["run", "-d", "-it", "--name", "shell", "busybox", "sh"]);
    let mut command = berthd.docker_command();
    command.args(["attach", "shell"]);
    let line: Vec<String> = std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|a| berth_tests::host::shell_quote(&a.to_string_lossy()))
        .collect();
    // Type a command, then the detach sequence, through a terminal.
    let script = format!(
        "(sleep 1; printf 'echo marker-$((40+2))\\r'; sleep 1; printf '\\020\\021'; sleep 2) | script -q -c {} /dev/null",
        berth_tests::host::shell_quote(&line.join(" "))
    );
    let mut sh = Command::new("sh");
    sh.arg("-c").arg(script);
    for (k, v) in command.get_envs() {
        if let Some(v) = v {
            sh.env(k, v);
        } else {
            sh.env_remove(k);
        }
    }
    let out = output_with_timeout(&mut sh, CLI_TIMEOUT).expect("attach");
    assert!(
        text(&out.stdout).contains("marker-42"),
        "{}",
        describe(&out)
    );
    assert!(
        text(&out.stdout).contains("read escape sequence"),
        "{}",
        describe(&out)
    );
    assert_eq!(inspect(&berthd, "shell", "{{.State.Status}}"), "running");
    assert!(wait_until(Duration::from_secs(5), || {
        let events = berthd.docker_ok(&[
            "events",
            "--since",
            "0",
            "--until",
            &berthd_now(&berthd),
            "--filter",
            "container=shell",
            "--format",
            "{{.Action}}",
        ]);
        events.contains("attach") && events.contains("detach")
    }));
    let out = berthd.docker(&["attach", "--detach-keys", "ctrl-x", "nosuch"]);
    assert_ne!(status(&out), 0);
    assert!(
        text(&out.stderr).contains("No such container"),
        "{}",
        describe(&out)
    );
}

/// Log files of a container under the daemon's data-root.
fn log_files(berthd: &Berthd, id: &str) -> Vec<String> {
    let mut files = entries(&berthd.data_root().join("containers").join(id));
    files.retain(|f| f.contains("json.log") && !f.starts_with('.'));
    files.sort();
    files
}

#[test]
fn log_drivers_and_rotation() {
    let berthd = daemon();
    // json-file with rotation: at most max-file files of about max-size.
    let id = berthd
        .docker_ok(&[
            "run",
            "-d",
            "--log-opt",
            "max-size=10k",
            "--log-opt",
            "max-file=3",
            "busybox",
            "sh",
            "-c",
            "seq 1 5000",
        ])
        .trim()
        .to_string();
    berthd.docker_ok(&["wait", &id]);
    let files = log_files(&berthd, &id);
    assert_eq!(files.len(), 3, "{files:?}");
    let logs = text(&berthd.docker(&["logs", &id]).stdout);
    assert!(
        logs.ends_with("4999\n5000\n"),
        "{}",
        &logs[logs.len().saturating_sub(50)..]
    );
    assert!(!logs.starts_with("1\n"), "rotated lines are gone");
    // Without options the default is capped too.
    let id = berthd
        .docker_ok(&["create", "busybox", "true"])
        .trim()
        .to_string();
    assert_eq!(
        inspect(&berthd, &id, "{{.HostConfig.LogConfig.Type}}"),
        "json-file"
    );

    // local keeps the lines and reads them back.
    let out = berthd.docker_ok(&[
        "run",
        "--name",
        "loc",
        "--log-driver",
        "local",
        "busybox",
        "sh",
        "-c",
        "echo one; echo two >&2",
    ]);
    assert_eq!(out, "one\n");
    let out = berthd.docker(&["logs", "loc"]);
    assert_eq!(text(&out.stdout), "one\n");
    assert_eq!(text(&out.stderr), "two\n");
    // none: nothing to read, as dockerd says.
    berthd.docker_ok(&[
        "run",
        "--name",
        "quiet",
        "--log-driver",
        "none",
        "busybox",
        "echo",
        "x",
    ]);
    let out = berthd.docker(&["logs", "quiet"]);
    assert_ne!(status(&out), 0);
    assert!(
        text(&out.stderr).contains("does not support reading"),
        "{}",
        describe(&out)
    );
    // syslog to a local datagram socket the test owns.
    let dir = tempfile::tempdir().expect("tempdir");
    let socket_path = dir.path().join("log.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).expect("bind");
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let address = format!("unixgram://{}", socket_path.display());
    berthd.docker_ok(&[
        "run",
        "--rm",
        "--log-driver",
        "syslog",
        "--log-opt",
        &format!("syslog-address={address}"),
        "--log-opt",
        "tag=berth-{{.Name}}",
        "--name",
        "sys",
        "busybox",
        "echo",
        "to syslog",
    ]);
    let mut buf = [0u8; 4096];
    let n = socket.recv(&mut buf).expect("a syslog datagram");
    let datagram = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(datagram.contains("berth-sys"), "{datagram}");
    assert!(datagram.contains("to syslog"), "{datagram}");
}

#[test]
fn daemon_wide_log_defaults() {
    let berthd = Berthd::builder()
        .args(["--log-driver", "local", "--log-opt", "max-size=1m"])
        .start();
    let work = tempfile::tempdir().expect("tempdir");
    let tar = make_busybox_rootfs_tar(work.path());
    berthd.docker_ok(&["import", &tar.to_string_lossy(), "busybox:latest"]);
    berthd.docker_ok(&["run", "--name", "dd", "busybox", "echo", "hi"]);
    assert_eq!(
        inspect(&berthd, "dd", "{{.HostConfig.LogConfig.Type}}"),
        "local"
    );
    assert_eq!(text(&berthd.docker(&["logs", "dd"]).stdout), "hi\n");
    let info = berthd.docker_ok(&["info", "--format", "{{.LoggingDriver}}"]);
    assert_eq!(info.trim(), "local");
}

#[test]
fn oom_and_exec_events() {
    let berthd = daemon();
    let since = berthd_now(&berthd);
    let out = berthd.docker(&[
        "run",
        "--name",
        "hog",
        "--memory",
        "8m",
        "--memory-swap",
        "8m",
        "busybox",
        "sh",
        "-c",
        "a=$(head -c 100000000 /dev/zero | tr '\\0' x); echo survived",
    ]);
    assert_eq!(status(&out), 137, "{}", describe(&out));
    assert_eq!(inspect(&berthd, "hog", "{{.State.OOMKilled}}"), "true");
    berthd.docker_ok(&["run", "-d", "--name", "ex", "busybox", "sleep", "1000"]);
    berthd.docker_ok(&["exec", "ex", "sh", "-c", "exit 0"]);
    let events = berthd.docker_ok(&[
        "events",
        "--since",
        &since,
        "--until",
        &berthd_now(&berthd),
        "--filter",
        "type=container",
        "--format",
        "{{.Actor.Attributes.name}} {{.Action}}",
    ]);
    for wanted in [
        "hog oom",
        "hog die",
        "ex exec_create: sh -c exit 0",
        "ex exec_start: sh -c exit 0",
        "ex exec_die",
    ] {
        assert!(
            events.lines().any(|l| l == wanted),
            "{wanted:?} missing from:\n{events}"
        );
    }
}

#[test]
fn containers_named_like_routes_can_be_removed() {
    let berthd = daemon();
    for name in ["json", "create", "stats", "prune"] {
        berthd.docker_ok(&["create", "--name", name, "busybox", "true"]);
        assert_eq!(inspect(&berthd, name, "{{.Name}}"), format!("/{name}"));
        berthd.docker_ok(&["rm", name]);
    }
    assert!(berthd.docker_ok(&["ps", "-aq"]).trim().is_empty());
}

#[test]
fn a_missing_working_dir_is_created() {
    let berthd = daemon();
    let out = berthd.docker_ok(&["run", "--rm", "-w", "/srv/app/data", "busybox", "pwd"]);
    assert_eq!(out, "/srv/app/data\n");
}

/// `curl` on berthd's socket with a JSON body: status line and raw body.
fn curl_post(berthd: &Berthd, path: &str, body: &str) -> (u16, Vec<u8>) {
    let mut command = Command::new("curl");
    command
        .args(["-s", "-o", "-", "-w", "\n%{http_code}", "-X", "POST"])
        .args(["-H", "Content-Type: application/json", "-d", body])
        .arg("--unix-socket")
        .arg(berthd.socket())
        .arg(format!("http://berth{path}"));
    let out = output_with_timeout(&mut command, CLI_TIMEOUT).expect("run curl");
    let split = out
        .stdout
        .iter()
        .rposition(|&b| b == b'\n')
        .expect("curl printed the status");
    let code = String::from_utf8_lossy(&out.stdout[split + 1..])
        .trim()
        .parse()
        .expect("status code");
    (code, out.stdout[..split].to_vec())
}

/// Splits a multiplexed stream into (stream, payload) frames.
fn frames(mut raw: &[u8]) -> Vec<(u8, String)> {
    let mut out = Vec::new();
    while raw.len() >= 8 {
        let len = u32::from_be_bytes([raw[4], raw[5], raw[6], raw[7]]) as usize;
        let payload = &raw[8..8 + len.min(raw.len() - 8)];
        out.push((raw[0], String::from_utf8_lossy(payload).into_owned()));
        raw = &raw[8 + payload.len()..];
    }
    out
}

#[test]
fn exec_and_attach_without_an_upgrade_stream_the_output_as_the_body() {
    // Plain HTTP clients (curl) don't ask to hijack the connection: dockerd
    // answers 200 and streams the output, framed, as the body.
    let berthd = daemon();
    berthd.docker_ok(&["run", "-d", "--name", "plain", "busybox", "sleep", "60"]);
    let (code, body) = curl_post(
        &berthd,
        "/containers/plain/exec",
        r#"{"AttachStdout":true,"AttachStderr":true,"Cmd":["sh","-c","echo out; echo err >&2"]}"#,
    );
    assert_eq!(code, 201, "{}", String::from_utf8_lossy(&body));
    let id: serde_json::Value = serde_json::from_slice(&body).expect("exec create JSON");
    let id = id["Id"].as_str().expect("exec id").to_string();
    let (code, body) = curl_post(&berthd, &format!("/exec/{id}/start"), r#"{"Detach":false}"#);
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    let mut got = frames(&body);
    got.sort();
    assert_eq!(
        got,
        vec![(1, "out\n".to_string()), (2, "err\n".to_string())],
        "{}",
        String::from_utf8_lossy(&body)
    );
    let inspect = berthd.curl(&format!("/exec/{id}/json"));
    assert!(inspect.contains(r#""ExitCode":0"#), "{inspect}");

    // attach to a created container, then start it: its output is the body.
    berthd.docker_ok(&[
        "create",
        "--name",
        "talker",
        "busybox",
        "sh",
        "-c",
        "sleep 1; echo hi",
    ]);
    let socket = berthd.socket();
    let attach = std::thread::spawn(move || {
        let mut command = Command::new("curl");
        command
            .args(["-s", "-o", "-", "-X", "POST", "--unix-socket"])
            .arg(socket)
            .arg("http://berth/containers/talker/attach?stream=1&stdout=1&stderr=1");
        output_with_timeout(&mut command, CLI_TIMEOUT).expect("run curl")
    });
    std::thread::sleep(Duration::from_millis(500));
    berthd.docker_ok(&["start", "talker"]);
    let out = attach.join().expect("attach thread");
    assert_eq!(frames(&out.stdout), vec![(1, "hi\n".to_string())]);
    berthd.docker_ok(&["rm", "-f", "plain", "talker"]);
}

/// The superblock options of what is mounted at `dir` (the last field of its
/// mountinfo line), or None when nothing is.
fn super_options(dir: &std::path::Path) -> Option<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    info.lines()
        .filter(|line| line.split(' ').nth(4) == Some(&*dir.to_string_lossy()))
        .filter_map(|line| line.rsplit(' ').next().map(str::to_owned))
        .next_back()
}

#[test]
fn rm_containers_skip_the_sync_and_force_remove_cleanly() {
    let berthd = daemon();
    let merged = |id: &str| {
        berthd
            .data_root()
            .join(format!("snapshots/overlay/container-{id}/merged"))
    };
    let volatile = |id: &str| {
        let options = super_options(&merged(id)).unwrap_or_else(|| panic!("{id} not mounted"));
        // Newer kernels show it as `fsync=volatile`.
        options
            .split(',')
            .any(|o| o == "volatile" || o == "fsync=volatile")
    };
    let kept = berthd.docker_ok(&["run", "-d", "busybox", "sleep", "60"]);
    let kept = kept.trim();
    let removed = berthd.docker_ok(&["run", "-d", "--rm", "busybox", "sleep", "60"]);
    let removed = removed.trim();
    // A `--rm` container's writable layer is thrown away: overlay need not
    // sync it (nor the whole filesystem when it is unmounted). A container
    // that stays keeps a durable layer.
    assert!(volatile(removed), "{:?}", super_options(&merged(removed)));
    assert!(!volatile(kept), "{:?}", super_options(&merged(kept)));
    let out = berthd.docker(&["exec", removed, "sh", "-c", "echo data > /f && cat /f"]);
    assert_eq!(text(&out.stdout), "data\n", "{}", describe(&out));
    // Mounted again after a restart (overlay leaves a marker that refuses
    // the next mount unless it is cleared).
    berthd.docker_ok(&["restart", "-t", "0", removed]);
    assert_eq!(inspect(&berthd, removed, "{{.State.Running}}"), "true");
    assert!(volatile(removed));

    // `docker rm -f` of a running `--rm` container succeeds every time,
    // though the container's own removal races it, as with dockerd.
    let mut ids = vec![removed.to_string()];
    for _ in 0..5 {
        let id = berthd.docker_ok(&["run", "-d", "--rm", "busybox", "sleep", "60"]);
        ids.push(id.trim().to_string());
    }
    for id in &ids {
        let out = berthd.docker(&["rm", "-f", id]);
        assert_eq!(status(&out), 0, "rm -f {id}: {}", describe(&out));
        assert_eq!(text(&out.stdout).trim(), id.as_str());
    }
    assert_eq!(berthd.docker_ok(&["ps", "-aq", "--no-trunc"]).trim(), kept);
    berthd.docker_ok(&["rm", "-f", kept]);
    assert!(mounts_under(&berthd.data_root()).is_empty());
}

#[test]
fn exec_processes_join_the_cgroups_and_seccomp_filter_of_the_container() {
    let berthd = daemon();
    let id = berthd.docker_ok(&["run", "-d", "busybox", "sleep", "60"]);
    let id = id.trim();
    let init = berthd.docker_ok(&["exec", id, "cat", "/proc/1/cgroup"]);
    assert!(init.lines().count() > 1, "{init}");
    // Several times: each exec enters the cgroups on its own.
    for _ in 0..3 {
        let exec = berthd.docker_ok(&["exec", id, "cat", "/proc/self/cgroup"]);
        assert_eq!(exec, init);
    }
    // The container's seccomp filter applies to exec'd processes (compiled
    // once, reused from the exec-root's cache).
    let init_filter = berthd.docker_ok(&["exec", id, "grep", "^Seccomp", "/proc/1/status"]);
    assert!(init_filter.contains("Seccomp:\t2"), "{init_filter}");
    for _ in 0..2 {
        let filter = berthd.docker_ok(&["exec", id, "grep", "^Seccomp", "/proc/self/status"]);
        assert_eq!(filter, init_filter);
    }
    // Nothing of the shim's reaches the processes: not its copy of the
    // runtime, not any other fd (3 is ls's own listing).
    let fds = berthd.docker_ok(&["exec", id, "ls", "/proc/self/fd"]);
    assert_eq!(
        fds.split_whitespace().collect::<Vec<_>>(),
        ["0", "1", "2", "3"]
    );
    let fds = berthd.docker_ok(&["exec", id, "ls", "/proc/1/fd"]);
    assert_eq!(fds.split_whitespace().collect::<Vec<_>>(), ["0", "1", "2"]);
    // Seen from the host too: the exec'd process is listed in the
    // container's cgroup of every hierarchy.
    berthd.docker_ok(&["exec", "-d", id, "sleep", "61"]);
    let listed = wait_until(Duration::from_secs(5), || {
        berth_tests::host::cgroup_hierarchies().iter().all(|h| {
            let procs = h.join(berthd.cgroup_parent()).join(id).join("cgroup.procs");
            std::fs::read_to_string(procs).is_ok_and(|p| p.lines().count() == 2)
        })
    });
    assert!(listed);
    berthd.docker_ok(&["rm", "-f", id]);
}

#[test]
fn predefined_networks_no_volumes_and_system_prune() {
    let berthd = daemon();
    let ls = berthd.docker_ok(&[
        "network",
        "ls",
        "--format",
        "{{.Name}} {{.Driver}} {{.Scope}}",
    ]);
    assert_eq!(ls, "host host local\nnone null local\n");
    let id = berthd.docker_ok(&["run", "-d", "--network", "none", "busybox", "sleep", "60"]);
    let id = id.trim();
    // The network lists its running containers; the container names the
    // network's ID, the same in both.
    let members = berthd.docker_ok(&[
        "network",
        "inspect",
        "-f",
        "{{range $id, $c := .Containers}}{{$id}} {{end}}{{.Id}}",
        "none",
    ]);
    let network = inspect(&berthd, id, "{{.NetworkSettings.Networks.none.NetworkID}}");
    assert_eq!(members.trim(), format!("{id} {network}"));
    assert_eq!(network.len(), 64);
    let short = berthd.docker_ok(&["network", "ls", "-q", "--filter", "driver=null"]);
    assert_eq!(short.trim(), &network[..12]);

    // What does not exist here is refused with a reason, changing nothing.
    let refused = |args: &[&str], reason: &str| {
        let out = berthd.docker(args);
        assert_ne!(status(&out), 0, "{args:?}");
        assert!(text(&out.stderr).contains(reason), "{}", describe(&out));
    };
    refused(
        &["network", "rm", "host"],
        "host is a pre-defined network and cannot be removed",
    );
    refused(
        &["network", "create", "mine"],
        "no user-defined networks yet",
    );
    // Several times: the refusal must come after the request body is read
    // (the client once saw a broken pipe instead).
    for _ in 0..10 {
        refused(&["volume", "create", "v"], "no named volumes yet");
    }
    refused(
        &["network", "ls", "--filter", "colour=blue"],
        "invalid filter 'colour'",
    );
    assert_eq!(berthd.docker_ok(&["volume", "ls", "-q"]), "");

    // Ports asked for on the default network are not published here: the
    // docker CLI shows the daemon's warning (as dockerd's for host mode).
    let out = berthd.docker(&["create", "-p", "8080:80", "busybox", "true"]);
    assert_eq!(status(&out), 0, "{}", describe(&out));
    assert!(
        text(&out.stderr)
            .contains("WARNING: Published ports are discarded: berthd has no bridge network yet"),
        "{}",
        describe(&out)
    );
    berthd.docker_ok(&["rm", text(&out.stdout).trim()]);
    let out = berthd.docker(&["create", "--network", "host", "-P", "busybox", "true"]);
    assert!(
        text(&out.stderr).contains("Published ports are discarded when using host network mode"),
        "{}",
        describe(&out)
    );
    berthd.docker_ok(&["rm", text(&out.stdout).trim()]);

    // docker system prune: the stopped container goes, the running one stays.
    let stopped = berthd.docker_ok(&["create", "busybox", "true"]);
    let out = berthd.docker(&["system", "prune", "-f"]);
    assert_eq!(status(&out), 0, "{}", describe(&out));
    assert!(
        text(&out.stdout).contains(stopped.trim()),
        "{}",
        describe(&out)
    );
    assert_eq!(berthd.docker_ok(&["ps", "-aq", "--no-trunc"]).trim(), id);
    berthd.docker_ok(&["rm", "-f", id]);
}

#[test]
fn a_runtime_that_hangs_in_create_is_killed_after_the_timeout() {
    let work = tempfile::tempdir().expect("tempdir");
    // A runtime whose create never returns (as one stuck in a hook would);
    // it records its pid, and cleans up like runc when asked to delete.
    let pid_file = work.path().join("hung.pid");
    let script = work.path().join("hang-runtime");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nfor a; do [ \"$a\" = create ] && echo $$ > {} && exec sleep 600; done\n\
             case \" $* \" in *\" delete \"*) exit 0 ;; esac\necho 'container does not exist' >&2\nexit 1\n",
            pid_file.display()
        ),
    )
    .expect("write the runtime");
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod the runtime");
    let berthd = Berthd::builder()
        .env("BERTH_RUNTIME_TIMEOUT", "2")
        .args([
            "--add-runtime".to_string(),
            format!("hang={}", script.display()),
        ])
        .start();
    let tar = make_busybox_rootfs_tar(work.path());
    berthd.docker_ok(&["import", &tar.to_string_lossy(), "busybox:latest"]);

    let started = Instant::now();
    let out = berthd.docker(&[
        "run",
        "--name",
        "stuck",
        "--runtime",
        "hang",
        "busybox",
        "true",
    ]);
    let took = started.elapsed();
    assert_ne!(status(&out), 0, "{}", describe(&out));
    assert!(
        text(&out.stderr).contains("create did not finish within 2 s"),
        "{}",
        describe(&out)
    );
    assert!(took < Duration::from_secs(60), "the run took {took:?}");
    let pid = std::fs::read_to_string(&pid_file).expect("the runtime ran create");
    let pid = pid.trim();
    assert!(
        wait_until(Duration::from_secs(5), || !std::path::Path::new(&format!(
            "/proc/{pid}"
        ))
        .exists()),
        "the hung runtime (pid {pid}) is still there"
    );
    // The container stays created, as after any failed start, and goes
    // with nothing left of it.
    assert_eq!(inspect(&berthd, "stuck", "{{.State.Status}}"), "created");
    berthd.docker_ok(&["rm", "stuck"]);
    assert!(mounts_under(&berthd.data_root()).is_empty());
    assert!(container_processes(&berthd).is_empty());
    assert!(
        container_cgroups(&berthd).is_empty(),
        "{:?}",
        container_cgroups(&berthd)
    );
    let exec = berthd.data_root().with_file_name("exec");
    assert!(entries(&exec.join("c")).is_empty());
}

#[test]
fn restart_policies_at_daemon_start_follow_dockerd() {
    let mut berthd = daemon();
    let run = |name: &str, policy: &str, script: &str| {
        berthd.docker_ok(&[
            "run",
            "-d",
            "--name",
            name,
            "--restart",
            policy,
            "--stop-timeout",
            "1",
            "busybox",
            "sh",
            "-c",
            script,
        ]);
    };
    let sleeper = "touch /tmp/ready; exec sleep 1000";
    run("always-stopped", "always", sleeper);
    run("failure-stopped", "on-failure", sleeper);
    run(
        "failure-clean",
        "on-failure",
        "trap 'exit 0' TERM; touch /tmp/ready; while :; do sleep 0.1; done",
    );
    run("unless-stopped", "unless-stopped", sleeper);
    run("always-running", "always", sleeper);
    run("failure-running", "on-failure", sleeper);
    for name in [
        "always-stopped",
        "failure-stopped",
        "failure-clean",
        "unless-stopped",
    ] {
        assert!(
            wait_until(Duration::from_secs(10), || berthd
                .docker(&["exec", name, "test", "-f", "/tmp/ready"])
                .status
                .success()),
            "{name} did not start"
        );
    }
    berthd.docker_ok(&[
        "stop",
        "always-stopped",
        "failure-stopped",
        "failure-clean",
        "unless-stopped",
    ]);
    assert_eq!(
        inspect(&berthd, "failure-stopped", "{{.State.ExitCode}}"),
        "137"
    );
    assert_eq!(
        inspect(&berthd, "failure-clean", "{{.State.ExitCode}}"),
        "0"
    );
    // A user's stop holds all four down while the daemon runs.
    std::thread::sleep(Duration::from_millis(500));
    for name in ["always-stopped", "failure-stopped", "unless-stopped"] {
        assert_eq!(
            inspect(&berthd, name, "{{.State.Status}}"),
            "exited",
            "{name}"
        );
    }
    let status = berthd.terminate();
    assert!(status.success(), "{status:?}");
    berthd.spawn();
    // At daemon start, as dockerd: `always` comes back even after a user's
    // stop, `on-failure` after any failed exit (a user's stop or the
    // daemon's shutdown killed them), `unless-stopped` only if no user
    // stopped it, and `on-failure` not after a clean exit.
    for name in [
        "always-stopped",
        "failure-stopped",
        "always-running",
        "failure-running",
    ] {
        assert!(
            wait_until(Duration::from_secs(10), || inspect(
                &berthd,
                name,
                "{{.State.Status}}"
            ) == "running"),
            "{name}: {}",
            inspect(&berthd, name, "{{.State.Status}} {{.State.ExitCode}}")
        );
    }
    assert_eq!(
        inspect(
            &berthd,
            "unless-stopped",
            "{{.State.Status}} {{.State.ExitCode}}"
        ),
        "exited 137"
    );
    assert_eq!(
        inspect(
            &berthd,
            "failure-clean",
            "{{.State.Status}} {{.State.ExitCode}}"
        ),
        "exited 0"
    );
    // A restart at daemon start is not a retry.
    assert_eq!(
        inspect(&berthd, "failure-stopped", "{{.RestartCount}}"),
        "0"
    );
}

#[test]
fn a_missing_bind_source_is_made_for_v_but_not_for_mount() {
    let berthd = daemon();
    let work = tempfile::tempdir().expect("tempdir");
    let made = work.path().join("new/data");
    let out = berthd.docker(&[
        "run",
        "--rm",
        "-v",
        &format!("{}:/data", made.display()),
        "busybox",
        "sh",
        "-c",
        "echo kept > /data/file",
    ]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(
        std::fs::read_to_string(made.join("file")).expect("the file the container wrote"),
        "kept\n"
    );
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&made).expect("made").permissions(),
    );
    assert_eq!(mode & 0o7777, 0o755);
    let missing = work.path().join("absent");
    let out = berthd.docker(&[
        "run",
        "--rm",
        "--mount",
        &format!("type=bind,source={},target=/data", missing.display()),
        "busybox",
        "true",
    ]);
    assert_eq!(status(&out), 125, "{}", describe(&out));
    assert!(
        text(&out.stderr).contains("bind source path does not exist"),
        "{}",
        describe(&out)
    );
    assert!(!missing.exists());
}

#[test]
fn joining_the_namespaces_of_other_containers_by_name() {
    let berthd = daemon();
    // pid and ipc: the other container must exist at create, as dockerd
    // checks; network: at start.
    for flag in ["--pid", "--ipc"] {
        let out = berthd.docker(&["create", flag, "container:nonexistent", "busybox", "true"]);
        assert_eq!(status(&out), 1, "{}", describe(&out));
        assert!(
            text(&out.stderr).contains("No such container: nonexistent"),
            "{}",
            describe(&out)
        );
    }
    berthd.docker_ok(&[
        "create",
        "--name",
        "late",
        "--network",
        "container:nonexistent",
        "busybox",
        "true",
    ]);
    let out = berthd.docker(&["start", "late"]);
    assert_ne!(status(&out), 0, "{}", describe(&out));
    assert!(
        text(&out.stderr).contains("No such container: nonexistent"),
        "{}",
        describe(&out)
    );
    // Starting looks the other container up by name among all of them,
    // this one included: the daemon goes on answering.
    berthd.docker_ok(&[
        "run",
        "-d",
        "--name",
        "host-of-ns",
        "--ipc",
        "shareable",
        "busybox",
        "sleep",
        "1000",
    ]);
    for _ in 0..5 {
        let out = berthd.docker(&[
            "run",
            "--rm",
            "--pid",
            "container:host-of-ns",
            "--ipc",
            "container:host-of-ns",
            "--network",
            "container:host-of-ns",
            "busybox",
            "sh",
            "-c",
            "ps -o comm | grep -c sleep",
        ]);
        assert!(out.status.success(), "{}", describe(&out));
        assert_eq!(text(&out.stdout).trim(), "1", "{}", describe(&out));
    }
    // The IPC namespace comes with its /dev/shm: what one writes, the
    // other reads; a private one can't be joined, as with dockerd.
    berthd.docker_ok(&[
        "exec",
        "host-of-ns",
        "sh",
        "-c",
        "echo shared > /dev/shm/note",
    ]);
    let out = berthd.docker(&[
        "run",
        "--rm",
        "--ipc",
        "container:host-of-ns",
        "busybox",
        "sh",
        "-c",
        "cat /dev/shm/note; grep ' /dev/shm ' /proc/mounts | grep -c tmpfs",
    ]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(text(&out.stdout), "shared\n1\n", "{}", describe(&out));
    berthd.docker_ok(&[
        "run",
        "-d",
        "--name",
        "private-ipc",
        "busybox",
        "sleep",
        "1000",
    ]);
    let out = berthd.docker(&[
        "run",
        "--rm",
        "--ipc",
        "container:private-ipc",
        "busybox",
        "true",
    ]);
    assert_eq!(status(&out), 125, "{}", describe(&out));
    assert!(
        text(&out.stderr).contains("non-shareable IPC"),
        "{}",
        describe(&out)
    );
    let names = berthd.docker_ok(&["ps", "-a", "--format", "{{.Names}}"]);
    assert!(
        names.contains("host-of-ns") && names.contains("late"),
        "{names}"
    );
    // Its /dev/shm goes when it stops.
    let shm = berthd.data_root().join("containers");
    assert_eq!(
        mounts_under(&shm)
            .iter()
            .filter(|m| m.ends_with("shm"))
            .count(),
        1,
        "{:?}",
        mounts_under(&shm)
    );
    berthd.docker_ok(&["stop", "-t", "0", "host-of-ns"]);
    assert!(
        !mounts_under(&shm).iter().any(|m| m.ends_with("shm")),
        "{:?}",
        mounts_under(&shm)
    );
    let out = berthd.docker(&["start", "late"]);
    assert_ne!(status(&out), 0, "{}", describe(&out));
    berthd.docker_ok(&["ps"]);
}

#[test]
fn ps_filters_by_exposed_and_published_ports() {
    let berthd = daemon();
    berthd.docker_ok(&[
        "create", "--name", "web", "--expose", "80", "busybox", "true",
    ]);
    berthd.docker_ok(&[
        "create", "--name", "dns", "--expose", "53/udp", "busybox", "true",
    ]);
    // Published on the default network: kept in the container's
    // configuration (with a warning that the ports are discarded).
    berthd.docker_ok(&[
        "create", "--name", "pub", "-p", "8080:80", "busybox", "true",
    ]);
    berthd.docker_ok(&["create", "--name", "bare", "busybox", "true"]);
    let names = |filter: &str| filtered_names(&berthd, filter);
    assert_eq!(names("expose=80"), "pub web");
    assert_eq!(names("expose=80/tcp"), "pub web");
    assert_eq!(names("expose=53"), "");
    assert_eq!(names("expose=53/udp"), "dns");
    assert_eq!(names("expose=50-60/udp"), "dns");
    assert_eq!(names("publish=80"), "pub");
    assert_eq!(names("publish=8080"), "");
    let out = berthd.docker(&["ps", "-a", "--filter", "publish=0.0.0.0:80"]);
    assert_ne!(status(&out), 0, "{}", describe(&out));
    assert!(
        text(&out.stderr).contains("filter for 'publish' should not contain ':'"),
        "{}",
        describe(&out)
    );
}

#[test]
fn inspect_shows_the_masked_and_read_only_paths() {
    let berthd = daemon();
    berthd.docker_ok(&["create", "--name", "plain", "busybox", "true"]);
    berthd.docker_ok(&[
        "create",
        "--name",
        "root",
        "--privileged",
        "busybox",
        "true",
    ]);
    berthd.docker_ok(&[
        "create",
        "--name",
        "open",
        "--security-opt",
        "systempaths=unconfined",
        "busybox",
        "true",
    ]);
    let paths = |name: &str| {
        inspect(
            &berthd,
            name,
            "{{json .HostConfig.MaskedPaths}} {{json .HostConfig.ReadonlyPaths}}",
        )
    };
    // The defaults dockerd fills in at create, which the container gets.
    let plain = paths("plain");
    assert!(
        plain.contains("\"/proc/kcore\"") && plain.contains("\"/proc/sysrq-trigger\""),
        "{plain}"
    );
    assert_eq!(paths("root"), "null null");
    assert_eq!(paths("open"), "[] []");
    let out = berthd.docker_ok(&[
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        "wc -c < /proc/timer_list; grep ' /proc/sys ' /proc/mounts | grep -c ' ro,'",
    ]);
    assert_eq!(out, "0\n1\n");
}

#[test]
fn volumes_are_refused_at_create_and_volume_paths_exist() {
    let berthd = daemon();
    // Named volumes are not implemented yet: refused at create, with a
    // clear reason, and nothing is created.
    for args in [
        &["run", "--rm", "-v", "myvol:/x", "busybox", "true"][..],
        &[
            "create",
            "--mount",
            "type=volume,source=v2,target=/y",
            "busybox",
            "true",
        ],
    ] {
        let out = berthd.docker(args);
        assert_ne!(status(&out), 0, "{}", describe(&out));
        assert!(
            text(&out.stderr).contains("volumes are not supported yet"),
            "{}",
            describe(&out)
        );
    }
    assert_eq!(berthd.docker_ok(&["ps", "-aq"]).trim(), "");
    // A VOLUME path (of the image, or `-v /path`) exists and is writable.
    let out = berthd.docker_ok(&[
        "run",
        "--rm",
        "-v",
        "/scratch/deep",
        "busybox",
        "sh",
        "-c",
        "touch /scratch/deep/f && echo writable",
    ]);
    assert_eq!(out, "writable\n");
}
