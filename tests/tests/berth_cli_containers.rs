#![forbid(unsafe_code)]
//! The `berth` CLI's container commands next to the docker CLI, both against
//! one Debian dockerd: `run` (output, exit codes, stdin, a tty), `ps`,
//! `logs`, `stop`/`kill`/`wait`/`rm`, `exec`, `rename`, `inspect` and
//! `container prune` must print what docker prints and exit as it exits, up
//! to ages, IDs and names that differ between two runs. One test drives
//! berthd with the berth CLI alone.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use berth_tests::berthd::Berthd;
use berth_tests::dockerd::Dockerd;
use berth_tests::host::{describe, output_in_terminal, text, DockerApi, CLI_TIMEOUT};
use berth_tests::{
    make_busybox_rootfs_tar, output_with_timeout, wait_until, workspace_binary, SETTLE,
};
use serde_json::Value;

/// One daemon at a time: two cores run them side by side badly.
static ONE_DAEMON: Mutex<()> = Mutex::new(());

/// The image every test runs: the busybox rootfs, imported with a shell as CMD.
const IMAGE: &str = "cli-test/busybox";

fn berth_cli() -> PathBuf {
    let path = workspace_binary("berth");
    assert!(
        path.is_file(),
        "{} does not exist: build it with `cargo build -p berth-cli`",
        path.display()
    );
    path
}

fn one_daemon() -> MutexGuard<'static, ()> {
    ONE_DAEMON.lock().unwrap_or_else(|e| e.into_inner())
}

/// Imports the busybox rootfs as [`IMAGE`] through `daemon`.
fn import_busybox(daemon: &impl DockerApi) {
    let dir = tempfile::tempdir().expect("tempdir");
    let tar = make_busybox_rootfs_tar(dir.path());
    daemon.docker_ok(&[
        "import",
        "--change",
        r#"CMD ["/bin/sh"]"#,
        &tar.to_string_lossy(),
        IMAGE,
    ]);
}

/// Both CLIs against one dockerd with [`IMAGE`], the only daemon of this
/// test binary while it lives.
struct Clis {
    dockerd: Dockerd,
    _one_at_a_time: MutexGuard<'static, ()>,
}

impl Clis {
    fn start() -> Clis {
        let one_at_a_time = one_daemon();
        let clis = Clis {
            dockerd: Dockerd::start(),
            _one_at_a_time: one_at_a_time,
        };
        import_busybox(&clis.dockerd);
        clis
    }

    #[track_caller]
    fn docker(&self, args: &[&str]) -> Output {
        self.dockerd.docker(args)
    }

    #[track_caller]
    fn docker_ok(&self, args: &[&str]) -> String {
        self.dockerd.docker_ok(args)
    }

    fn berth_command(&self) -> Command {
        self.dockerd.cli_command(&berth_cli())
    }

    fn berth(&self, args: &[&str]) -> Output {
        let mut command = self.berth_command();
        command.args(args);
        output_with_timeout(&mut command, CLI_TIMEOUT).expect("run berth")
    }

    #[track_caller]
    fn berth_ok(&self, args: &[&str]) -> String {
        let out = self.berth(args);
        assert!(out.status.success(), "berth {args:?}: {}", describe(&out));
        text(&out.stdout)
    }

    /// Both CLIs with `args`, stdout and stderr compared after `normalize`
    /// (docker's own name turned into berth's first); the exit codes equal.
    #[track_caller]
    fn compare_with(&self, args: &[&str], normalize: fn(&str) -> String) -> Output {
        let docker = self.docker(args);
        let berth = self.berth(args);
        assert_same(args, &docker, &berth, normalize);
        berth
    }

    #[track_caller]
    fn compare(&self, args: &[&str]) -> Output {
        self.compare_with(args, |s| s.to_owned())
    }

    /// `args` with `{}` replaced by `docker_name` for docker and by
    /// `berth_name` for berth: the same command on each CLI's own container,
    /// outputs compared with the names masked.
    #[track_caller]
    fn compare_pair(&self, args: &[&str], docker_name: &str, berth_name: &str) -> Output {
        let with =
            |name: &str| -> Vec<String> { args.iter().map(|a| a.replace("{}", name)).collect() };
        let docker_args = with(docker_name);
        let berth_args = with(berth_name);
        let docker = self.docker(&docker_args.iter().map(String::as_str).collect::<Vec<_>>());
        let berth = self.berth(&berth_args.iter().map(String::as_str).collect::<Vec<_>>());
        let mask = |out: &Output, name: &str| Output {
            status: out.status,
            stdout: text(&out.stdout).replace(name, "<name>").into_bytes(),
            stderr: text(&out.stderr).replace(name, "<name>").into_bytes(),
        };
        assert_same(
            args,
            &mask(&docker, docker_name),
            &mask(&berth, berth_name),
            |s| s.to_owned(),
        );
        berth
    }

    /// `args` run by `program` ("docker" or "berth") with `input` on stdin.
    fn with_stdin(&self, program: &str, args: &[&str], input: &[u8]) -> Output {
        let mut command = if program == "docker" {
            self.dockerd.docker_command()
        } else {
            self.berth_command()
        };
        command.args(args);
        output_with_stdin(&mut command, input)
    }
}

#[track_caller]
fn assert_same(args: &[&str], docker: &Output, berth: &Output, normalize: fn(&str) -> String) {
    let what = format!(
        "{args:?}\n--- docker: {}\n--- berth: {}",
        describe(docker),
        describe(berth)
    );
    assert_eq!(
        docker.status.code(),
        berth.status.code(),
        "exit codes of {what}"
    );
    assert_eq!(
        normalize(&as_berth(&text(&docker.stdout))),
        normalize(&as_berth(&text(&berth.stdout))),
        "stdout of {what}"
    );
    assert_eq!(
        normalize(&as_berth(&text(&docker.stderr))),
        normalize(&as_berth(&text(&berth.stderr))),
        "stderr of {what}"
    );
}

/// Docker's messages that name the program (`docker: …`, `Run 'docker run
/// --help'`) as berth words them.
fn as_berth(output: &str) -> String {
    output
        .lines()
        .map(|line| {
            let line = match line.strip_prefix("docker: ") {
                Some(rest) => format!("berth: {rest}"),
                None => line.to_owned(),
            };
            line.replace("Run 'docker ", "Run 'berth ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Runs `command` with `input` on its stdin (then closed), stdout and
/// stderr captured; killed after [`CLI_TIMEOUT`].
fn output_with_stdin(command: &mut Command, input: &[u8]) -> Output {
    let mut stdout = tempfile::tempfile().expect("tempfile");
    let mut stderr = tempfile::tempfile().expect("tempfile");
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(stdout.try_clone().expect("dup"))
        .stderr(stderr.try_clone().expect("dup"))
        .spawn()
        .expect("spawn the CLI");
    let mut stdin = child.stdin.take().expect("stdin pipe");
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let deadline = Instant::now() + CLI_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the CLI") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{command:?} did not finish within {CLI_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let _ = writer.join();
    let read = |file: &mut std::fs::File| {
        use std::io::{Read, Seek, SeekFrom};
        let mut data = Vec::new();
        file.seek(SeekFrom::Start(0)).expect("seek");
        file.read_to_end(&mut data).expect("read");
        data
    };
    Output {
        status,
        stdout: read(&mut stdout),
        stderr: read(&mut stderr),
    }
}

/// True for the words of a duration docker prints ("3", "seconds").
fn duration_words(words: &[&str]) -> Option<usize> {
    let unit = |w: &str| {
        ["second", "minute", "hour", "day", "week", "month", "year"]
            .iter()
            .any(|u| w.starts_with(u))
    };
    match words {
        ["Less", "than", "a", second, ..] if second.starts_with("second") => Some(4),
        ["About", "a", minute, ..] if minute.starts_with("minute") => Some(3),
        ["About", "an", hour, ..] if hour.starts_with("hour") => Some(3),
        [n, u, ..] if n.parse::<u32>().is_ok() && unit(u) => Some(2),
        _ => None,
    }
}

/// Durations ("Up 3 seconds", "2 minutes ago", also inside JSON) as `<t>`.
fn without_durations(output: &str) -> String {
    output
        .lines()
        .map(|line| {
            let line = line.replace("\":\"", "\":\" ");
            let words: Vec<&str> = line.split(' ').collect();
            let mut out: Vec<String> = Vec::new();
            let mut i = 0;
            while i < words.len() {
                match duration_words(&words[i..]) {
                    Some(len) => {
                        // Keep what follows the unit in the same word (`seconds",`).
                        let last = words[i + len - 1];
                        let rest = last.trim_start_matches(|c: char| c.is_alphabetic());
                        out.push(format!("<t>{rest}"));
                        i += len;
                    }
                    None => {
                        out.push(words[i].to_owned());
                        i += 1;
                    }
                }
            }
            out.join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A table compared cell by cell: durations masked, columns separated by one
/// tab whatever their width (a wider age widens a column).
fn table_cells(output: &str) -> String {
    without_durations(output)
        .lines()
        .map(|line| {
            line.split("  ")
                .map(str::trim)
                .filter(|cell| !cell.is_empty())
                .collect::<Vec<_>>()
                .join("\t")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn is_full_id(line: &str) -> bool {
    line.len() == 64 && line.chars().all(|c| c.is_ascii_hexdigit())
}

#[test]
fn masks_hide_only_durations() {
    assert_eq!(
        table_cells("ID   STATUS         NAMES\nabc  Up 3 seconds   one\n"),
        table_cells("ID   STATUS                     NAMES\nabc  Up Less than a second   one\n"),
    );
    assert_eq!(
        without_durations(
            r#"{"RunningFor":"About a minute ago","Status":"Exited (3) 2 seconds ago"}"#
        ),
        r#"{"RunningFor":" <t> ago","Status":" Exited (3) <t> ago"}"#
    );
    assert_ne!(
        table_cells("a  Up 3 seconds"),
        table_cells("a  Exited (0) 3 seconds ago")
    );
    assert_eq!(
        as_berth("docker: Error response from daemon: x\n\nRun 'docker run --help' for more information\n"),
        "berth: Error response from daemon: x\n\nRun 'berth run --help' for more information"
    );
}

#[test]
fn run_output_exit_codes_and_stdin_match_docker() {
    let clis = Clis::start();

    for args in [
        &[
            "run",
            "--rm",
            "--network",
            "none",
            IMAGE,
            "echo",
            "hello",
            "world",
        ][..],
        &[
            "run",
            "--rm",
            "--network",
            "none",
            IMAGE,
            "sh",
            "-c",
            "echo out; echo err >&2; exit 3",
        ],
        &[
            "container",
            "run",
            "--rm",
            "--network",
            "none",
            "-e",
            "A=1",
            "-w",
            "/tmp",
            "-u",
            "1:1",
            "-h",
            "box",
            IMAGE,
            "sh",
            "-c",
            "echo $A $(pwd) $(id -u):$(id -g) $(hostname)",
        ],
        &[
            "run",
            "--rm",
            "--network",
            "none",
            "--entrypoint",
            "/bin/echo",
            IMAGE,
            "-n",
            "from",
            "entrypoint",
        ],
        // 127: the command does not exist; 126: it cannot be executed.
        &["run", "--rm", "--network", "none", IMAGE, "no-such-command"],
        &["run", "--rm", "--network", "none", IMAGE, "/etc/passwd"],
        // 125: the daemon or the command line refuses.
        &["run", "--rm", "--restart", "always", IMAGE, "true"],
        &["run", "--network", "no-such-network", IMAGE, "true"],
        &["run", "-d", "-a", "stdout", IMAGE, "true"],
        // A tty needs a terminal on stdin.
        &["run", "-it", "--rm", IMAGE, "true"],
    ] {
        clis.compare(args);
    }
    let out = clis.compare(&[
        "run",
        "--rm",
        "--network",
        "none",
        IMAGE,
        "sh",
        "-c",
        "exit 3",
    ]);
    assert_eq!(out.status.code(), Some(3));
    let out = clis.compare(&["run", "--rm", "--network", "none", IMAGE, "no-such-command"]);
    assert_eq!(out.status.code(), Some(127), "{}", describe(&out));
    assert!(
        text(&out.stderr).starts_with("berth: Error response from daemon: "),
        "{}",
        describe(&out)
    );

    // A missing image: docker's message, then the daemon's pull error, 125.
    let out = clis.compare(&[
        "run",
        "--rm",
        "--network",
        "none",
        "cli-test/no-such-image:v1",
        "true",
    ]);
    assert_eq!(out.status.code(), Some(125), "{}", describe(&out));
    assert!(
        text(&out.stderr).starts_with("Unable to find image 'cli-test/no-such-image:v1' locally\n"),
        "{}",
        describe(&out)
    );

    // stdin with -i, closed at its end; without -i the container reads nothing.
    let input = b"first line\nsecond line\n";
    for args in [
        &[
            "run",
            "-i",
            "--rm",
            "--network",
            "none",
            IMAGE,
            "sh",
            "-c",
            "cat; echo done",
        ][..],
        &[
            "run",
            "--interactive",
            "--rm",
            "--network",
            "none",
            IMAGE,
            "wc",
            "-l",
        ],
        &["run", "--rm", "--network", "none", IMAGE, "cat"],
    ] {
        let docker = clis.with_stdin("docker", args, input);
        let berth = clis.with_stdin("berth", args, input);
        assert_same(args, &docker, &berth, |s| s.to_owned());
    }
    let out = clis.with_stdin(
        "berth",
        &[
            "run",
            "-i",
            "--rm",
            "--network",
            "none",
            IMAGE,
            "sh",
            "-c",
            "cat; exit 4",
        ],
        input,
    );
    assert_eq!(out.status.code(), Some(4), "{}", describe(&out));
    assert_eq!(text(&out.stdout), "first line\nsecond line\n");

    // With a tty: one stream, \r\n line ends, the exit code.
    let mut command = clis.berth_command();
    command.args([
        "run",
        "-it",
        "--rm",
        "--network",
        "none",
        IMAGE,
        "sh",
        "-c",
        "tty; echo in-a-tty; exit 3",
    ]);
    let out = output_in_terminal(&command, CLI_TIMEOUT).expect("run berth in a terminal");
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    let shown = text(&out.stdout);
    assert!(
        shown.contains("/dev/pts/0\r\nin-a-tty\r\n"),
        "{}",
        describe(&out)
    );

    // Nothing was left behind by --rm; the runs on a missing network stay created.
    assert_eq!(
        clis.berth_ok(&["ps", "-a", "--format", "{{.Status}} {{.Networks}}"]),
        "Created no-such-network\nCreated no-such-network\n"
    );
}

#[test]
fn detached_containers_are_listed_like_docker() {
    let clis = Clis::start();
    let id = clis.berth_ok(&[
        "run",
        "-d",
        "--name",
        "cli-one",
        "--network",
        "none",
        "-l",
        "purpose=cli",
        IMAGE,
        "sh",
        "-c",
        "echo one; sleep 600",
    ]);
    assert!(
        is_full_id(id.trim_end_matches('\n')) && id.ends_with('\n'),
        "{id:?}"
    );
    let docker_id = clis.docker_ok(&[
        "run",
        "-d",
        "--name",
        "cli-two",
        "--network",
        "none",
        IMAGE,
        "sh",
        "-c",
        "exit 2",
    ]);
    assert!(is_full_id(docker_id.trim()), "{docker_id:?}");
    clis.berth_ok(&[
        "create",
        "--name",
        "cli-three",
        "--network",
        "none",
        IMAGE,
        "true",
    ]);
    assert!(wait_until(SETTLE, || {
        clis.docker_ok(&["ps", "-aq", "--filter", "status=exited"])
            .trim()
            != ""
    }));

    for args in [
        &["ps"][..],
        &["ps", "-a"],
        &["ps", "-q"],
        &["ps", "-aq", "--no-trunc"],
        &["ps", "-a", "--no-trunc"],
        &["container", "ls", "-a", "-s"],
        &["container", "list", "-n", "2"],
        &["container", "ps", "-l", "-q"],
        &[
            "ps",
            "-a",
            "--format",
            "table {{.Names}}\\t{{.Status}}\\t{{.State}}\\t{{.Labels}}",
        ],
        &[
            "ps",
            "-a",
            "--format",
            "{{.ID}} {{.Names}} {{.Command}} {{.Image}} {{.Networks}} {{.Mounts}}",
        ],
        &["ps", "-a", "--format", "json"],
        &["ps", "-a", "--format", "{{json .}}"],
        &["ps", "-a", "--format", "raw"],
        &["ps", "-q", "--format", "{{.Names}}"],
        &["ps", "-a", "--filter", "name=cli-one"],
        &[
            "ps",
            "-a",
            "-f",
            "status=exited",
            "--format",
            "{{.Names}} {{.Status}}",
        ],
        &["ps", "-a", "-f", "label=purpose=cli", "-q"],
        &["ps", "-a", "--filter", "exited=2"],
        &["ps", "--filter", "bogus=1"],
    ] {
        clis.compare_with(args, table_cells);
    }
    let ps = clis.berth_ok(&[
        "ps",
        "--format",
        "{{.ID}}|{{.Names}}|{{.Command}}|{{.Status}}",
    ]);
    assert_eq!(
        ps.trim().split('|').take(3).collect::<Vec<_>>(),
        [&id[..12], "cli-one", "\"sh -c 'echo one; sl…\""],
        "{ps}"
    );
    let header = clis.berth_ok(&["ps"]);
    assert!(header.starts_with("CONTAINER ID   IMAGE   "), "{header}");
}

#[test]
fn logs_match_docker() {
    let clis = Clis::start();
    clis.berth_ok(&[
        "run",
        "-d",
        "--name",
        "talker",
        "--network",
        "none",
        IMAGE,
        "sh",
        "-c",
        "echo out-1; echo err-1 >&2; echo out-2; echo err-2 >&2; echo out-3; sleep 600",
    ]);
    clis.berth_ok(&[
        "run",
        "-d",
        "-t",
        "--name",
        "tty-talker",
        "--network",
        "none",
        IMAGE,
        "sh",
        "-c",
        "echo tty-1; echo tty-2 >&2; sleep 600",
    ]);
    clis.berth_ok(&[
        "run",
        "--name",
        "done",
        "--network",
        "none",
        IMAGE,
        "sh",
        "-c",
        "echo finished",
    ]);
    assert!(wait_until(SETTLE, || {
        clis.berth_ok(&["logs", "talker"]).contains("out-3")
            && clis.berth_ok(&["logs", "tty-talker"]).contains("tty-2")
    }));
    for args in [
        &["logs", "talker"][..],
        &["container", "logs", "--tail", "1", "talker"],
        &["logs", "-n", "2", "talker"],
        &["logs", "-n", "0", "talker"],
        &["logs", "-t", "talker"],
        &["logs", "--tail", "1", "--timestamps", "talker"],
        &["logs", "--since", "1h", "talker"],
        &["logs", "--until", "1h", "talker"],
        &["logs", "--details", "talker"],
        &["logs", "tty-talker"],
        &["logs", "-f", "done"],
        &["logs", "no-such-container"],
        &["logs", "--since", "yesterday", "talker"],
    ] {
        clis.compare(args);
    }
    let out = clis.berth(&["logs", "talker"]);
    assert_eq!(text(&out.stdout), "out-1\nout-2\nout-3\n");
    assert_eq!(text(&out.stderr), "err-1\nerr-2\n");
    // A tty has one stream.
    assert_eq!(clis.berth_ok(&["logs", "tty-talker"]), "tty-1\r\ntty-2\r\n");
}

#[test]
fn stop_kill_wait_exec_and_remove_match_docker() {
    let clis = Clis::start();
    let start = |name: &str, script: &str| {
        clis.docker_ok(&[
            "run",
            "-d",
            "--name",
            name,
            "--network",
            "none",
            IMAGE,
            "sh",
            "-c",
            script,
        ]);
    };
    // sleep as pid 1 ignores SIGTERM: stop waits, then kills (137).
    for name in ["stop-d", "stop-b", "kill-d", "kill-b", "pause-d", "pause-b"] {
        start(name, "sleep 600");
    }
    let trap = "trap 'exit 7' TERM; while :; do sleep 0.1; done";
    for name in ["term-d", "term-b"] {
        start(name, trap);
    }
    start("exec-target", "sleep 600");

    let out = clis.compare_pair(&["stop", "-t", "1", "{}"], "stop-d", "stop-b");
    assert_eq!(text(&out.stdout), "stop-b\n");
    clis.compare_pair(&["wait", "{}"], "stop-d", "stop-b");
    assert_eq!(clis.berth_ok(&["wait", "stop-b"]), "137\n");
    clis.compare_pair(&["kill", "{}"], "kill-d", "kill-b");
    clis.compare_pair(&["container", "wait", "{}"], "kill-d", "kill-b");
    // Time for the shells to set their traps.
    std::thread::sleep(Duration::from_millis(500));
    clis.compare_pair(&["kill", "-s", "TERM", "{}"], "term-d", "term-b");
    clis.compare_pair(&["wait", "{}"], "term-d", "term-b");
    assert_eq!(clis.berth_ok(&["wait", "term-b"]), "7\n");
    clis.compare_pair(&["pause", "{}"], "pause-d", "pause-b");
    clis.compare_pair(
        &[
            "ps",
            "--filter",
            "name={}",
            "--format",
            "{{.Names}} {{.State}}",
        ],
        "pause-d",
        "pause-b",
    );
    clis.compare_pair(&["unpause", "{}"], "pause-d", "pause-b");
    clis.compare_pair(&["restart", "-t", "1", "{}"], "pause-d", "pause-b");

    // After the exits: the same `ps -a` rows, ages masked.
    clis.compare_with(&["ps", "-a"], table_cells);
    clis.compare_with(
        &[
            "ps",
            "-a",
            "--filter",
            "exited=137",
            "--format",
            "{{.Names}}\t{{.Status}}",
        ],
        table_cells,
    );

    // exec: output, exit code, environment, directory, stdin, detached.
    for args in [
        &[
            "exec",
            "exec-target",
            "sh",
            "-c",
            "echo out; echo err >&2; exit 4",
        ][..],
        &[
            "exec",
            "-e",
            "X=1",
            "-w",
            "/tmp",
            "-u",
            "1",
            "exec-target",
            "sh",
            "-c",
            "echo $X $(pwd) $(id -u)",
        ],
        &["container", "exec", "exec-target", "no-such-command"],
        &["exec", "no-such-container", "true"],
        &["exec", "stop-b", "true"],
        &["exec", "-it", "exec-target", "true"],
        &["top", "exec-target"],
        &["top", "exec-target", "-o", "pid,comm"],
        &["port", "exec-target"],
        &["port", "exec-target", "80"],
        &["update", "exec-target"],
        &[
            "update",
            "--cpu-shares",
            "512",
            "--pids-limit",
            "100",
            "exec-target",
        ],
    ] {
        clis.compare(args);
    }
    for program in ["docker", "berth"] {
        let out = clis.with_stdin(
            program,
            &["exec", "-i", "exec-target", "sh", "-c", "cat; exit 5"],
            b"piped\n",
        );
        assert_eq!(out.status.code(), Some(5), "{program}: {}", describe(&out));
        assert_eq!(text(&out.stdout), "piped\n", "{program}");
    }
    assert_eq!(
        clis.berth_ok(&["exec", "-d", "exec-target", "touch", "/tmp/detached"]),
        ""
    );
    assert!(wait_until(SETTLE, || clis
        .docker(&["exec", "exec-target", "test", "-e", "/tmp/detached"])
        .status
        .success()));

    // Errors: the same messages and exit codes.
    for args in [
        &["stop", "no-such-container"][..],
        &["kill", "no-such-container", "other-missing"],
        &["wait", "no-such-container"],
        &["rm", "no-such-container"],
        &["rm", "-f", "no-such-container"],
        &["rm", "exec-target"],
        &["start", "no-such-container"],
        &["pause", "stop-b"],
        &["restart", "no-such-container"],
        &["rename", "no-such-container", "x"],
    ] {
        clis.compare(args);
    }
    let out = clis.compare_pair(&["rm", "-f", "{}"], "kill-d", "kill-b");
    assert_eq!(text(&out.stdout), "kill-b\n");
    clis.compare_pair(
        &["container", "rm", "--force", "--volumes", "{}"],
        "pause-d",
        "pause-b",
    );
    clis.compare_pair(&["rm", "{}"], "stop-d", "stop-b");
    assert!(!clis
        .berth_ok(&["ps", "-aq", "--filter", "name=stop-b"])
        .contains(char::is_alphanumeric));
}

#[test]
fn rename_inspect_and_prune_match_docker() {
    let clis = Clis::start();
    let flags = [
        "--network",
        "none",
        "-e",
        "A=1",
        "-l",
        "purpose=cli",
        "--label",
        "empty",
        "--restart",
        "on-failure:3",
        "--stop-timeout",
        "5",
        "--stop-signal",
        "SIGINT",
        "-m",
        "64m",
        "--memory-swap",
        "-1",
        "--cpus",
        "0.5",
        "--cpu-shares",
        "100",
        "--pids-limit",
        "100",
        "--ulimit",
        "nofile=100:200",
        "--cap-add",
        "net_admin",
        "--cap-drop",
        "CHOWN",
        "--security-opt",
        "no-new-privileges",
        "--read-only",
        "--tmpfs",
        "/run:size=1m",
        "-v",
        "/tmp:/host-tmp:ro",
        "--mount",
        "type=tmpfs,target=/scratch,tmpfs-size=1m",
        "--init",
        "--health-cmd",
        "true",
        "--health-interval",
        "30s",
        "--health-retries",
        "2",
        "-w",
        "/tmp",
        "-u",
        "0:0",
        "--hostname",
        "box",
        "--entrypoint",
        "/bin/sh",
        "--sysctl",
        "net.ipv4.ip_forward=1",
        "--device",
        "/dev/null:/dev/other-null:r",
        "--shm-size",
        "1m",
        "--group-add",
        "10",
        "--oom-kill-disable",
        "--ipc",
        "private",
        "--log-driver",
        "json-file",
        "--log-opt",
        "max-size=1m",
        "-i",
        "-t",
    ];
    let create = |program: &str, name: &str| {
        let mut args = vec!["create", "--name", name];
        args.extend(flags);
        args.extend([IMAGE, "-c", "exit 0"]);
        let out = if program == "docker" {
            clis.docker(&args)
        } else {
            clis.berth(&args)
        };
        assert!(out.status.success(), "{program} create: {}", describe(&out));
    };
    create("docker", "made-by-docker");
    create("berth", "made-by-berth");

    // The daemon stored the same container for the same flags.
    let field = |name: &str, format: &str| -> Value {
        let out = clis.docker_ok(&["inspect", "--format", format, name]);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{format} of {name}: {e}: {out}"))
    };
    for format in [
        "{{json .HostConfig}}",
        "{{json .Config.Env}}",
        "{{json .Config.Labels}}",
        "{{json .Config.Cmd}}",
        "{{json .Config.Entrypoint}}",
        "{{json .Config.Healthcheck}}",
        "{{json .Config.Volumes}}",
        "{{json .Config.StopSignal}}",
        "{{json .Config.StopTimeout}}",
        "{{json .Config.User}}",
        "{{json .Config.WorkingDir}}",
        "{{json .Config.Tty}}",
        "{{json .Config.OpenStdin}}",
        "{{json .Config.StdinOnce}}",
        "{{json .Config.Hostname}}",
        "{{json .NetworkSettings.Networks}}",
    ] {
        assert_eq!(
            field("made-by-docker", format),
            field("made-by-berth", format),
            "{format}"
        );
    }
    let mounts = |name: &str| {
        let Value::Array(mut mounts) = field(name, "{{json .Mounts}}") else {
            panic!("no mounts for {name}")
        };
        mounts.sort_by_key(|m| m["Destination"].to_string());
        mounts
    };
    assert_eq!(mounts("made-by-docker"), mounts("made-by-berth"));

    // rename, then inspect the same container with both CLIs (one without
    // several mounts: the daemon lists those in any order).
    assert_eq!(clis.berth_ok(&["rename", "made-by-berth", "renamed"]), "");
    clis.compare(&["container", "rename", "made-by-berth", "again"]);
    clis.compare(&["rename", "renamed", "made-by-docker"]);
    clis.berth_ok(&[
        "create",
        "--name",
        "plain",
        "--network",
        "none",
        "-e",
        "A=1",
        "-l",
        "purpose=cli",
        "--restart",
        "on-failure:3",
        IMAGE,
        "sh",
        "-c",
        "exit 0",
    ]);
    clis.berth_ok(&["rename", "plain", "plain-renamed"]);
    let status_format = "{{.Name}} {{.State.Status}} {{json .Config.Cmd}} {{.HostConfig.RestartPolicy.Name}} {{index .Config.Labels \"purpose\"}}";
    for args in [
        &["inspect", "plain-renamed"][..],
        &["container", "inspect", "plain-renamed", IMAGE],
        &["inspect", "plain-renamed", IMAGE],
        &["inspect", "--format", "json", "plain-renamed"],
        &["inspect", "-f", status_format, "renamed"],
        &[
            "container",
            "inspect",
            "--size",
            "-f",
            "{{.Name}} {{.SizeRw}}",
            "renamed",
        ],
        &[
            "inspect",
            "--type",
            "container",
            "-f",
            "{{.Name}}",
            "renamed",
        ],
        &["inspect", "-f", "{{.Id}}", IMAGE],
        &["inspect", "--type", "image", "-f", "{{.Id}}", "renamed"],
        &["inspect", "no-such-object"],
        &["inspect", "-f", "{{.Name}}", "no-such-object", "renamed"],
        &["container", "inspect", "no-such-container"],
    ] {
        clis.compare(args);
    }

    // prune: the stopped containers go, the report is docker's.
    clis.docker_ok(&[
        "rm",
        "--force",
        "renamed",
        "made-by-docker",
        "plain-renamed",
    ]);
    let prune = |program: &str| -> String {
        for name in ["prune-a", "prune-b"] {
            clis.docker_ok(&["run", "--name", name, "--network", "none", IMAGE, "true"]);
        }
        let args = ["container", "prune", "--force"];
        let out = if program == "docker" {
            clis.docker_ok(&args)
        } else {
            clis.berth_ok(&args)
        };
        assert_eq!(
            clis.docker_ok(&["ps", "-aq"]),
            "",
            "{program} pruned everything"
        );
        out.lines()
            .map(|line| if is_full_id(line) { "<id>" } else { line })
            .collect::<Vec<_>>()
            .join("\n")
    };
    let docker_report = prune("docker");
    let berth_report = prune("berth");
    assert_eq!(docker_report, berth_report);
    assert!(
        berth_report.starts_with("Deleted Containers:\n<id>\n"),
        "{berth_report}"
    );
    assert!(
        berth_report.ends_with("\n\nTotal reclaimed space: 0B"),
        "{berth_report}"
    );
    clis.compare(&["container", "prune", "-f", "--filter", "until=1h"]);
}

/// The berth CLI alone against berthd: run (with stdin), ps, logs, exec, stop and rm.
#[test]
fn berth_runs_containers_on_berthd() {
    let _one_at_a_time = one_daemon();
    let berthd = Berthd::start();
    import_busybox(&berthd);
    let berth = |args: &[&str]| {
        let mut command = berthd.cli_command(&berth_cli());
        command.args(args);
        output_with_timeout(&mut command, CLI_TIMEOUT).expect("run berth")
    };
    let ok = |args: &[&str]| {
        let out = berth(args);
        assert!(
            out.status.success(),
            "berth {args:?}: {}\nberthd log:\n{}",
            describe(&out),
            berthd.log()
        );
        text(&out.stdout)
    };

    let out = berth(&[
        "run",
        "--rm",
        IMAGE,
        "sh",
        "-c",
        "echo hello; echo oops >&2; exit 3",
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    assert_eq!(text(&out.stdout), "hello\n");
    assert_eq!(text(&out.stderr), "oops\n");
    let out = berth(&["run", "--rm", IMAGE, "no-such-command"]);
    assert_eq!(out.status.code(), Some(127), "{}", describe(&out));
    let mut command = berthd.cli_command(&berth_cli());
    command.args(["run", "-i", "--rm", IMAGE, "sh", "-c", "cat; exit 2"]);
    let out = output_with_stdin(&mut command, b"piped in\n");
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert_eq!(text(&out.stdout), "piped in\n");

    let id = ok(&[
        "run",
        "-d",
        "--name",
        "sleeper",
        IMAGE,
        "sh",
        "-c",
        "echo started; sleep 600",
    ]);
    assert!(is_full_id(id.trim()), "{id:?}");
    let listed = ok(&["ps", "--format", "{{.ID}} {{.Names}} {{.State}}"]);
    assert_eq!(listed, format!("{} sleeper running\n", &id[..12]));
    let table = ok(&["ps"]);
    assert!(table.starts_with("CONTAINER ID   IMAGE"), "{table}");
    assert!(
        table
            .lines()
            .nth(1)
            .is_some_and(|row| row.starts_with(&id[..12]) && row.ends_with(" sleeper")),
        "{table}"
    );
    assert!(wait_until(SETTLE, || ok(&["logs", "sleeper"]) == "started\n"));
    let out = berth(&["exec", "sleeper", "sh", "-c", "echo in-exec; exit 6"]);
    assert_eq!(out.status.code(), Some(6), "{}", describe(&out));
    assert_eq!(text(&out.stdout), "in-exec\n");
    assert_eq!(ok(&["stop", "-t", "1", "sleeper"]), "sleeper\n");
    assert_eq!(ok(&["wait", "sleeper"]), "137\n");
    let listed = ok(&["ps", "-a", "--format", "{{.Names}} {{.State}}"]);
    assert_eq!(listed, "sleeper exited\n");
    assert_eq!(ok(&["rm", "sleeper"]), "sleeper\n");
    assert_eq!(ok(&["ps", "-aq"]), "");
}
