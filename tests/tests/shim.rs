#![forbid(unsafe_code)]
//! berth-shim driving a busybox container under runc and under berth-runtime:
//! spawn, attach, start, framed output, stdin, exit codes, a tty and its
//! size, execs, kill/pause/resume/update, a failed create that leaves
//! nothing, the exit record after the shim is gone, and a second client.
//!
//! Needs `cargo build -p berth-shim-bin -p berth-runtime-cli` first. Every
//! test cleans up through [`ShimUnderTest`]'s `Drop`: shutdown, then the
//! shim processes by pid, the runtime's state, the directories.

use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use berth_shim::{
    read_frame, AttachOptions, Error, ExecOptions, LogConfig, LogContext, ShimClient, SpawnOptions,
    Stream,
};
use berth_tests::host::{processes_naming, stop_process};
use berth_tests::{
    both, output_with_timeout, unique_name, wait_until, workspace_binary, Bundle, Runtime, SETTLE,
};
use serde_json::{json, Value};

/// How long a test waits for output it expects or for an exit.
const OUTPUT_TIMEOUT: Duration = Duration::from_secs(30);

fn shim_binary() -> PathBuf {
    let path = workspace_binary("berth-shim");
    assert!(
        path.is_file(),
        "{} does not exist: build it with `cargo build -p berth-shim-bin`",
        path.display()
    );
    path
}

/// One shim a test spawned, with its private state dir and runtime root.
struct ShimUnderTest {
    runtime: Runtime,
    id: String,
    state_dir: PathBuf,
    runtime_root: PathBuf,
    work: Option<tempfile::TempDir>,
}

impl ShimUnderTest {
    fn new(runtime: &Runtime) -> ShimUnderTest {
        // tempfile makes directories 0700, as the shim requires.
        let work = tempfile::Builder::new()
            .prefix("berth-shim-")
            .tempdir_in("/tmp")
            .expect("work dir");
        let state_dir = work.path().join("state");
        let runtime_root = work.path().join("root");
        std::fs::create_dir(&state_dir).expect("state dir");
        std::fs::create_dir(&runtime_root).expect("runtime root");
        std::fs::set_permissions(
            &state_dir,
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .expect("chmod state dir");
        ShimUnderTest {
            runtime: runtime.clone(),
            id: unique_name(),
            state_dir,
            runtime_root,
            work: Some(work),
        }
    }

    fn options(&self, bundle: &Bundle) -> SpawnOptions {
        SpawnOptions {
            shim_binary: shim_binary(),
            id: self.id.clone(),
            bundle: bundle.path().to_path_buf(),
            state_dir: self.state_dir.clone(),
            // Berth's own runtime runs in the shim, as berthd runs it.
            in_process: self.runtime.path() == workspace_binary("berth-runtime"),
            seccomp_cache: None,
            runtime_fd: None,
            runtime: self.runtime.path().to_path_buf(),
            runtime_args: Vec::new(),
            runtime_root: self.runtime_root.clone(),
            tty: false,
            open_stdin: false,
            stdin_once: false,
            log: LogConfig {
                driver: "none".into(),
                opts: Default::default(),
            },
            log_context: LogContext {
                container_id: self.id.clone(),
                container_name: self.id.clone(),
                dir: self.state_dir.clone(),
                ..Default::default()
            },
        }
    }

    fn spawn(&self, bundle: &Bundle, tweak: impl FnOnce(&mut SpawnOptions)) -> ShimClient {
        bundle.write_config().expect("write config.json");
        let mut options = self.options(bundle);
        tweak(&mut options);
        berth_shim::spawn(&options)
            .unwrap_or_else(|e| panic!("spawn a shim with {}: {e}", self.runtime))
    }

    /// The shim processes serving this state dir: `berth-shim serve <dir>`
    /// (berth-runtime's init, forked from `create`, names the dir too; so
    /// does a created container's init forked by the shim itself, which is
    /// left out as a child of another).
    fn shim_pids(&self) -> Vec<nix::unistd::Pid> {
        let serving: Vec<nix::unistd::Pid> = processes_naming(&self.state_dir)
            .into_iter()
            .filter(|pid| {
                let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
                args.get(1) == Some(&&b"serve"[..])
                    && args.get(2) == Some(&self.state_dir.as_os_str().as_encoded_bytes())
            })
            .collect();
        serving
            .iter()
            .copied()
            .filter(|pid| {
                !serving
                    .iter()
                    .any(|other| parent_of(*pid) == Some(other.as_raw()))
            })
            .collect()
    }

    fn runtime_entries(&self) -> Vec<String> {
        std::fs::read_dir(&self.runtime_root)
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Waits until the shim removed its socket and exited.
    fn wait_gone(&self) -> bool {
        wait_until(SETTLE, || {
            !berth_shim::socket_path(&self.state_dir).exists() && self.shim_pids().is_empty()
        })
    }
}

impl Drop for ShimUnderTest {
    fn drop(&mut self) {
        if berth_shim::socket_path(&self.state_dir).exists() {
            if let Ok(client) = ShimClient::connect(&self.state_dir) {
                let _ = within(Duration::from_secs(20), move || client.shutdown());
            }
        }
        for pid in self.shim_pids() {
            stop_process(pid, Duration::from_secs(2));
        }
        let mut delete = self.runtime.command(&self.runtime_root);
        delete.args(["delete", "--force", &self.id]);
        let _ = output_with_timeout(&mut delete, Duration::from_secs(10));
        self.work.take();
    }
}

/// Runs `f` on a thread; panics if it takes longer than `timeout`.
fn within<T: Send + 'static>(timeout: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(timeout)
        .unwrap_or_else(|_| panic!("no result within {timeout:?}"))
}

fn wait_exit(
    client: &ShimClient,
    exec: Option<&str>,
) -> berth_shim::Result<berth_shim::ExitStatus> {
    let client = client.clone();
    let exec = exec.map(str::to_string);
    within(OUTPUT_TIMEOUT, move || client.wait(exec.as_deref()))
}

fn attach(client: &ShimClient, exec: Option<&str>, stdin: bool) -> UnixStream {
    let stream = client
        .attach(&AttachOptions {
            exec: exec.map(str::to_string),
            stdin,
            stdout: true,
            stderr: true,
        })
        .expect("attach");
    stream
        .set_read_timeout(Some(OUTPUT_TIMEOUT))
        .expect("read timeout");
    stream
}

/// Every frame until the shim ends the stream: (stdout, stderr).
fn read_all_frames(stream: &mut UnixStream) -> (String, String) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    while let Some((kind, data)) = read_frame(stream).expect("a frame or the end") {
        match kind {
            Stream::Stdout => out.extend(data),
            Stream::Stderr => err.extend(data),
        }
    }
    (
        String::from_utf8_lossy(&out).into_owned(),
        String::from_utf8_lossy(&err).into_owned(),
    )
}

/// Reads stdout frames until `want` shows up; everything read.
fn read_until(stream: &mut UnixStream, want: &str) -> String {
    let mut text = String::new();
    while !text.contains(want) {
        match read_frame(stream) {
            Ok(Some((_, data))) => text.push_str(&String::from_utf8_lossy(&data)),
            other => panic!("waiting for {want:?}, got {other:?} after {text:?}"),
        }
    }
    text
}

/// A process object for an exec: the bundle's, with other arguments.
fn exec_process(bundle: &Bundle, args: &[&str]) -> Value {
    let mut process = bundle.config()["process"].clone();
    process["args"] = json!(args);
    process
}

fn parent_of(pid: nix::unistd::Pid) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(") ")?;
    rest.split(' ').nth(1)?.parse().ok()
}

#[test]
fn output_is_framed_and_the_exit_is_recorded() {
    for runtime in both() {
        let mut bundle = Bundle::busybox().expect("bundle");
        bundle.shell("echo out; echo err >&2; exit 3");
        let shim = ShimUnderTest::new(&runtime);
        let client = shim.spawn(&bundle, |_| {});

        let pids = shim.shim_pids();
        assert_eq!(pids.len(), 1, "{runtime}: one shim process: {pids:?}");
        let parent = parent_of(pids[0]);
        assert_ne!(
            parent,
            Some(std::process::id() as i32),
            "{runtime}: the shim must not be the spawner's child"
        );
        let state = client.state().expect("state");
        assert_eq!(state.status, "created", "{runtime}");
        assert!(state.pid > 0);

        let mut stream = attach(&client, None, false);
        let started = client.start().expect("start");
        assert!(started.started_at.is_some());
        let (out, err) = read_all_frames(&mut stream);
        assert_eq!(out, "out\n", "{runtime}: stdout");
        assert_eq!(err, "err\n", "{runtime}: stderr");

        let exit = wait_exit(&client, None).expect("wait");
        assert_eq!(exit.code, 3, "{runtime}");
        assert!(!exit.oom_killed);
        assert!(exit.finished_at.ends_with('Z'), "{}", exit.finished_at);
        let state = client.state().expect("state after exit");
        assert_eq!(state.status, "stopped");
        assert_eq!(state.exit.as_ref(), Some(&exit));
        assert!(
            shim.runtime_entries().is_empty(),
            "{runtime}: the runtime's state is deleted after the exit: {:?}",
            shim.runtime_entries()
        );

        // Without shutdown the shim goes by itself once no client is left.
        drop(client);
        assert!(shim.wait_gone(), "{runtime}: the shim lingers");
        assert_eq!(berth_shim::recorded_exit(&shim.state_dir), Some(exit));
        assert!(matches!(
            ShimClient::connect(&shim.state_dir),
            Err(Error::NotRunning(_))
        ));
    }
}

#[test]
fn stdin_reaches_the_container_and_eof_closes_it() {
    for runtime in both() {
        let mut bundle = Bundle::busybox().expect("bundle");
        bundle.args(&["cat"]);
        let shim = ShimUnderTest::new(&runtime);
        let client = shim.spawn(&bundle, |o| {
            o.open_stdin = true;
            o.stdin_once = true;
        });
        let mut stream = attach(&client, None, true);
        client.start().expect("start");
        stream.write_all(b"hello\nworld\n").expect("stdin");
        assert_eq!(read_until(&mut stream, "world\n"), "hello\nworld\n");
        stream.shutdown(Shutdown::Write).expect("end of input");
        let (rest, _) = read_all_frames(&mut stream);
        assert_eq!(rest, "", "{runtime}");
        let exit = wait_exit(&client, None).expect("wait");
        assert_eq!(exit.code, 0, "{runtime}: cat ends at EOF");
        client.shutdown().expect("shutdown");
        assert!(shim.wait_gone(), "{runtime}: the shim exits after shutdown");
    }
}

#[test]
fn without_stdin_once_stdin_stays_open_for_the_next_client() {
    for runtime in both() {
        let mut bundle = Bundle::busybox().expect("bundle");
        bundle.args(&["cat"]);
        let shim = ShimUnderTest::new(&runtime);
        let client = shim.spawn(&bundle, |o| o.open_stdin = true);
        let mut first = attach(&client, None, true);
        client.start().expect("start");
        first.write_all(b"first\n").expect("stdin");
        assert_eq!(read_until(&mut first, "first\n"), "first\n");
        first.shutdown(Shutdown::Write).expect("end of input");
        let mut second = attach(&client, None, true);
        second.write_all(b"second\n").expect("stdin");
        assert_eq!(read_until(&mut second, "second\n"), "second\n", "{runtime}");
        assert_eq!(read_until(&mut first, "second\n"), "second\n", "{runtime}");
        client.kill(9, false).expect("kill");
        assert_eq!(wait_exit(&client, None).expect("wait").code, 137);
    }
}

#[test]
fn a_client_that_does_not_read_does_not_hold_up_the_container() {
    let runtime = Runtime::under_test();
    let mut bundle = Bundle::busybox().expect("bundle");
    // 32 MiB: far beyond the socket buffers and the shim's budget per client.
    bundle.shell("head -c 33554432 /dev/zero; echo done >&2");
    let shim = ShimUnderTest::new(&runtime);
    let client = shim.spawn(&bundle, |_| {});
    let stalled = attach(&client, None, false);
    let mut reader = attach(&client, None, false);
    client.start().expect("start");
    let reading = std::thread::spawn(move || read_all_frames(&mut reader));
    assert_eq!(wait_exit(&client, None).expect("wait").code, 0);
    let (out, err) = reading.join().expect("reader");
    assert_eq!(out.len(), 33554432, "the reading client got everything");
    assert_eq!(err, "done\n");
    drop(stalled);
}

#[test]
fn control_requests_and_a_killed_container() {
    for runtime in both() {
        let mut bundle = Bundle::busybox().expect("bundle");
        bundle.args(&["sleep", "1000"]);
        let shim = ShimUnderTest::new(&runtime);
        let client = shim.spawn(&bundle, |_| {});
        let started = client.start().expect("start");
        assert_eq!(started.status, "running");

        let pids = client.pids().expect("pids");
        assert!(
            pids.contains(&started.pid),
            "{runtime}: {pids:?} lacks init {}",
            started.pid
        );
        client.pause().expect("pause");
        assert_eq!(client.state().expect("state").status, "paused");
        client.resume().expect("resume");
        assert_eq!(client.state().expect("state").status, "running");
        client
            .update(&json!({ "pids": { "limit": 50 } }))
            .expect("update");
        let limit = bundle
            .cgroup_dirs()
            .iter()
            .map(|dir| dir.join("pids.max"))
            .find(|file| file.exists())
            .and_then(|file| std::fs::read_to_string(file).ok());
        assert_eq!(limit.as_deref().map(str::trim), Some("50"), "{runtime}");

        // A second client while the first one waits.
        let second = ShimClient::connect(&shim.state_dir).expect("connect");
        let waiter = {
            let second = second.clone();
            std::thread::spawn(move || second.wait(None))
        };
        assert!(matches!(client.kill(0, false), Err(Error::Protocol(_))));
        client.kill(9, false).expect("kill");
        let exit = wait_exit(&client, None).expect("wait");
        assert_eq!(exit.code, 137, "{runtime}: SIGKILL");
        let other = waiter.join().expect("waiter").expect("second wait");
        assert_eq!(other, exit);
        assert!(
            matches!(client.kill(9, false), Err(Error::NotRunning(_))),
            "kill after exit"
        );
        client.shutdown().expect("shutdown");
        assert!(shim.wait_gone());
        assert_eq!(
            berth_shim::recorded_exit(&shim.state_dir).map(|e| e.code),
            Some(137)
        );
    }
}

#[test]
fn garbage_gets_an_error_and_the_shim_lives_on() {
    let runtime = Runtime::under_test();
    let mut bundle = Bundle::busybox().expect("bundle");
    bundle.args(&["sleep", "1000"]);
    let shim = ShimUnderTest::new(&runtime);
    let client = shim.spawn(&bundle, |_| {});
    let socket = berth_shim::socket_path(&shim.state_dir);
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&socket).expect("socket").permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "socket mode {mode:o}");
    for garbage in [
        &b"garbage\n"[..],
        b"{\"op\":\"fly\"}\n",
        b"{\"op\":\"kill\",\"signal\":\"nine\",\"all\":false}\n",
        b"\x00\xff\n",
    ] {
        let mut stream = UnixStream::connect(&socket).expect("connect");
        stream.write_all(garbage).expect("send");
        let mut answer = String::new();
        stream.read_to_string(&mut answer).expect("answer");
        assert!(answer.starts_with("{\"error\""), "{garbage:?}: {answer}");
    }
    // A second shim for the same state dir is refused; the first one goes on.
    match berth_shim::spawn(&shim.options(&bundle)) {
        Err(Error::Protocol(msg)) => assert!(msg.contains("already"), "{msg}"),
        other => panic!("a second shim: {other:?}"),
    }
    assert!(shim.state_dir.join("shim.log").exists());
    // A connection that just closes.
    drop(UnixStream::connect(&socket).expect("connect"));
    assert!(matches!(
        client.wait(Some("no-such-exec")),
        Err(Error::NoSuchExec(_))
    ));
    assert_eq!(client.state().expect("state").status, "created");
    // Shutting down a container that never started kills it.
    client.shutdown().expect("shutdown");
    assert!(shim.wait_gone());
    assert_eq!(
        berth_shim::recorded_exit(&shim.state_dir).map(|e| e.code),
        Some(137)
    );
    assert!(shim.runtime_entries().is_empty());
}

#[test]
fn a_state_dir_serves_the_next_run_too() {
    let runtime = Runtime::under_test();
    let mut bundle = Bundle::busybox().expect("bundle");
    bundle.shell("exit 7");
    let shim = ShimUnderTest::new(&runtime);
    let client = shim.spawn(&bundle, |_| {});
    client.start().expect("start");
    assert_eq!(wait_exit(&client, None).expect("wait").code, 7);
    client.shutdown().expect("shutdown");
    assert!(shim.wait_gone());
    assert_eq!(
        berth_shim::recorded_exit(&shim.state_dir).map(|e| e.code),
        Some(7)
    );

    // A restart: same id, same dirs; the old exit record goes.
    bundle.shell("echo again; exit 8");
    let client = shim.spawn(&bundle, |_| {});
    assert_eq!(berth_shim::recorded_exit(&shim.state_dir), None);
    let mut stream = attach(&client, None, false);
    client.start().expect("start");
    assert_eq!(read_all_frames(&mut stream).0, "again\n");
    assert_eq!(wait_exit(&client, None).expect("wait").code, 8);
}

#[test]
fn an_oom_kill_is_recorded() {
    let runtime = Runtime::under_test();
    let mut bundle = Bundle::busybox().expect("bundle");
    // The shell keeps 256 MB of output in a variable; the limit is 32 MiB.
    bundle
        .memory_limit(32 << 20)
        .shell("x=$(head -c 268435456 /dev/zero | tr '\\0' a); echo survived");
    let shim = ShimUnderTest::new(&runtime);
    let client = shim.spawn(&bundle, |_| {});
    client.start().expect("start");
    let exit = wait_exit(&client, None).expect("wait");
    assert_eq!((exit.code, exit.oom_killed), (137, true), "{exit:?}");
}

#[test]
fn a_missing_executable_fails_spawn_and_leaves_nothing() {
    for runtime in both() {
        let mut bundle = Bundle::busybox().expect("bundle");
        bundle.args(&["no-such-program"]);
        bundle.write_config().expect("config");
        let shim = ShimUnderTest::new(&runtime);
        let result = berth_shim::spawn(&shim.options(&bundle));
        match result {
            Err(Error::Runtime(msg)) => assert!(
                msg.contains("executable file not found"),
                "{runtime}: {msg}"
            ),
            other => panic!("{runtime}: expected a runtime error, got {other:?}"),
        }
        assert!(
            shim.wait_gone(),
            "{runtime}: shim processes left: {:?}",
            shim.shim_pids()
        );
        assert!(
            shim.runtime_entries().is_empty(),
            "{runtime}: runtime state left: {:?}",
            shim.runtime_entries()
        );
        let left: Vec<_> = std::fs::read_dir(&shim.state_dir)
            .expect("state dir")
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert!(left.is_empty(), "{runtime}: files left: {left:?}");
        assert!(
            wait_until(SETTLE, || bundle.cgroup_dirs().is_empty()),
            "{runtime}: cgroups left: {:?}",
            bundle.cgroup_dirs()
        );
    }
}

#[test]
fn a_tty_container_gets_its_size() {
    for runtime in both() {
        let mut bundle = Bundle::busybox().expect("bundle");
        bundle
            .set("/process/terminal", json!(true))
            .shell("stty size; read line; stty size; echo \"got $line\"");
        let shim = ShimUnderTest::new(&runtime);
        let client = shim.spawn(&bundle, |o| {
            o.tty = true;
            o.open_stdin = true;
        });
        let mut stream = attach(&client, None, true);
        client.resize(None, 100, 30).expect("resize before start");
        client.start().expect("start");
        read_until(&mut stream, "30 100");
        client.resize(None, 120, 40).expect("resize");
        stream.write_all(b"hi\r").expect("stdin");
        let text = read_until(&mut stream, "got hi");
        assert!(text.contains("40 120"), "{runtime}: {text:?}");
        let exit = wait_exit(&client, None).expect("wait");
        assert_eq!(exit.code, 0, "{runtime}");
    }
}

#[test]
fn execs_run_with_their_own_stdio() {
    for runtime in both() {
        let mut bundle = Bundle::busybox().expect("bundle");
        bundle.args(&["sleep", "1000"]);
        let shim = ShimUnderTest::new(&runtime);
        let client = shim.spawn(&bundle, |_| {});
        client.start().expect("start");

        // Plain pipes, output on both streams, an exit code.
        let plain = ExecOptions {
            exec_id: "plain".into(),
            process: exec_process(
                &bundle,
                &[
                    "sh",
                    "-c",
                    "read line; echo \"out $line\"; echo err >&2; exit 5",
                ],
            ),
            tty: false,
            stdin: true,
        };
        client.exec_create(&plain).expect("exec create");
        let mut stream = attach(&client, Some("plain"), true);
        stream.write_all(b"in\n").expect("stdin");
        let pid = client.exec_start("plain").expect("exec start");
        assert!(pid > 0);
        let (out, err) = read_all_frames(&mut stream);
        assert_eq!(
            (out.as_str(), err.as_str()),
            ("out in\n", "err\n"),
            "{runtime}"
        );
        assert_eq!(wait_exit(&client, Some("plain")).expect("wait").code, 5);
        assert!(client.exec_start("plain").is_err(), "started twice");

        // A tty sized before it starts, and several execs at once.
        let sized = ExecOptions {
            exec_id: "sized".into(),
            process: exec_process(&bundle, &["stty", "size"]),
            tty: true,
            stdin: false,
        };
        let sleeper = ExecOptions {
            exec_id: "sleeper".into(),
            process: exec_process(&bundle, &["sleep", "1000"]),
            tty: false,
            stdin: false,
        };
        client.exec_create(&sleeper).expect("exec create");
        client.exec_start("sleeper").expect("exec start");
        client.exec_create(&sized).expect("exec create");
        let mut stream = attach(&client, Some("sized"), false);
        client.resize(Some("sized"), 90, 33).expect("resize");
        client.exec_start("sized").expect("exec start");
        let (out, _) = read_all_frames(&mut stream);
        assert_eq!(out.trim(), "33 90", "{runtime}");
        assert_eq!(wait_exit(&client, Some("sized")).expect("wait").code, 0);

        // The runtime's error for a missing program, kept for wait.
        let missing = ExecOptions {
            exec_id: "missing".into(),
            process: exec_process(&bundle, &["no-such-program"]),
            tty: false,
            stdin: false,
        };
        client.exec_create(&missing).expect("exec create");
        match client.exec_start("missing") {
            Err(Error::Runtime(msg)) => {
                assert!(
                    msg.contains("executable file not found"),
                    "{runtime}: {msg}"
                )
            }
            other => panic!("{runtime}: expected a runtime error, got {other:?}"),
        }
        assert!(matches!(
            client.wait(Some("missing")),
            Err(Error::Runtime(_))
        ));
        assert!(matches!(
            client.exec_create(&missing),
            Err(Error::Protocol(_))
        ));

        // The container's end takes the running exec with it, and ends one
        // that never started.
        let never = ExecOptions {
            exec_id: "never".into(),
            ..sleeper.clone()
        };
        client.exec_create(&never).expect("exec create");
        client.kill(9, false).expect("kill");
        assert_eq!(wait_exit(&client, None).expect("wait").code, 137);
        assert_eq!(
            wait_exit(&client, Some("sleeper")).expect("exec wait").code,
            137
        );
        assert!(matches!(
            wait_exit(&client, Some("never")),
            Err(Error::Runtime(_))
        ));
        assert!(matches!(
            client.exec_start("never"),
            Err(Error::Protocol(_))
        ));
    }
}

#[test]
fn the_shim_outlives_a_killed_client_and_keeps_serving() {
    let runtime = Runtime::under_test();
    let mut bundle = Bundle::busybox().expect("bundle");
    bundle.shell("read line; echo \"late $line\"");
    let shim = ShimUnderTest::new(&runtime);
    let client = shim.spawn(&bundle, |o| o.open_stdin = true);
    // An attached client that vanishes without a word.
    drop(attach(&client, None, true));
    client.start().expect("start");
    let mut stream = attach(&client, None, true);
    stream.write_all(b"x\n").expect("stdin");
    assert_eq!(read_until(&mut stream, "late x\n"), "late x\n");
    assert_eq!(wait_exit(&client, None).expect("wait").code, 0);
    // A client that comes after the exit gets an empty stream.
    match client.attach(&AttachOptions {
        exec: None,
        stdin: false,
        stdout: true,
        stderr: true,
    }) {
        Ok(mut late) => assert_eq!(read_all_frames(&mut late), (String::new(), String::new())),
        Err(Error::NotRunning(_)) => {}
        Err(e) => panic!("attach after exit: {e}"),
    }
}

#[test]
fn json_file_log_gets_every_line() {
    let runtime = Runtime::under_test();
    let mut bundle = Bundle::busybox().expect("bundle");
    bundle.shell(
        "echo one; echo two >&2; head -c 40000 /dev/zero | tr '\\0' x; echo; printf 'no newline'",
    );
    let shim = ShimUnderTest::new(&runtime);
    bundle.write_config().expect("config");
    let mut options = shim.options(&bundle);
    options.log.driver = "json-file".into();
    let client = berth_shim::spawn(&options).expect("spawn with json-file");
    client.start().expect("start");
    assert_eq!(wait_exit(&client, None).expect("wait").code, 0);
    let log = shim.state_dir.join(format!("{}-json.log", shim.id));
    let text = std::fs::read_to_string(&log).expect("json-file log");
    let entries: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let mut got: Vec<(String, String)> = entries
        .iter()
        .map(|e| {
            (
                e["stream"].as_str().unwrap_or_default().to_string(),
                e["log"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    got.sort();
    let x = |n: usize| "x".repeat(n);
    let mut want = vec![
        ("stderr".to_string(), "two\n".to_string()),
        ("stdout".to_string(), "no newline".to_string()),
        ("stdout".to_string(), "one\n".to_string()),
        // A long line in dockerd's 16 KiB partial messages.
        ("stdout".to_string(), x(16384)),
        ("stdout".to_string(), x(16384)),
        ("stdout".to_string(), x(40000 - 2 * 16384) + "\n"),
    ];
    want.sort();
    assert_eq!(got, want);
}

#[test]
fn connect_needs_a_running_shim() {
    let dir = tempfile::tempdir().expect("tempdir");
    assert!(matches!(
        ShimClient::connect(dir.path()),
        Err(Error::NotRunning(_))
    ));
    assert_eq!(berth_shim::recorded_exit(dir.path()), None);
    // A stale socket file nobody listens on.
    drop(
        std::os::unix::net::UnixListener::bind(berth_shim::socket_path(dir.path())).expect("bind"),
    );
    assert!(matches!(
        ShimClient::connect(dir.path()),
        Err(Error::NotRunning(_))
    ));
}
