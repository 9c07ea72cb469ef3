#![forbid(unsafe_code)]
//! A regression test per attack class of SECURITY.md, run against the runtime
//! under test (`$BERTH_RUNTIME`, by default the workspace's `berth-runtime`)
//! and, where runc blocks the attack too, against runc as a reference.
//!
//! Each test asserts what a user would notice: the host file that stays
//! untouched, the error a refused config gets, the handle a container can't open.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use berth_tests::host::text;
use berth_tests::{both, wait_until, SETTLE};
use berth_tests::{
    output_with_timeout, process_alive, run_container, runtime_timeout, unescape_mountinfo,
    unique_name, Bundle, Container, Runtime, DEFAULT_CAPABILITIES,
};
use serde_json::{json, Value};

/// A directory outside every rootfs, standing for "the host".
fn host_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("berth-host-")
        .tempdir()
        .expect("host tempdir")
}

fn dir_entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Mount points in the test's (the host's) mount namespace at or under `dir`.
fn host_mounts_under(dir: &Path) -> Vec<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    info.lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(unescape_mountinfo)
        .filter(|point| Path::new(point).starts_with(dir))
        .collect()
}

/// An exec `--process` file: `args` as root with the default capabilities and
/// an environment without HOME (so the runtime looks the user up in /etc/passwd).
fn process_json(args: &[&str]) -> Value {
    let caps = DEFAULT_CAPABILITIES.to_vec();
    json!({
        "terminal": false,
        "user": { "uid": 0, "gid": 0 },
        "args": args,
        "env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"],
        "cwd": "/",
        "capabilities": {
            "bounding": caps, "effective": caps, "inheritable": caps, "permitted": caps
        },
        "noNewPrivileges": true
    })
}

fn write_process(bundle: &Bundle, name: &str, process: &Value) -> PathBuf {
    let path = bundle.path().join(name);
    std::fs::write(&path, serde_json::to_vec(process).expect("json")).expect("process file");
    path
}

fn sha_like(path: &Path) -> Vec<u8> {
    // The whole content: a change anywhere must show.
    std::fs::read(path).expect("runtime binary")
}

// ---------------------------------------------------------------------------
// Runtime binary overwrite (CVE-2019-5736 class)
// ---------------------------------------------------------------------------

/// The container's init waits for a process it did not start (the runtime's
/// exec helper), which blocks opening the container's /etc/passwd — a FIFO —
/// to look up HOME. While it is held there, the init tries every handle on its
/// /proc/<pid>/exe, then writes to the FIFO to let it go. Deterministic: the
/// runtime process is inside the container, paused, for as long as needed.
const EXE_PROBE: &str = r#"
while :; do
  for p in /proc/[0-9]*; do
    pid=${p#/proc/}
    [ "$pid" = 1 ] && continue
    comm=$(cat $p/comm 2>/dev/null) || continue
    case "$comm" in sh|cat|sleep|readlink|true) continue;; esac
    echo "found $comm"
    if readlink $p/exe >/dev/null 2>&1; then echo exe-link-readable; else echo exe-link-denied; fi
    if (exec 3<$p/exe) 2>/dev/null; then echo exe-open-read; else echo exe-read-denied; fi
    if (exec 3>>$p/exe) 2>/dev/null; then echo exe-open-write; else echo exe-write-denied; fi
    echo "root:x:0:0:root:/root:/bin/sh" > /etc/passwd
    echo done
    exec sleep 1000
  done
done
"#;

fn exe_probe_during_exec(runtime: &Runtime) -> String {
    let binary = runtime
        .path()
        .canonicalize()
        .unwrap_or_else(|_| runtime.path().to_path_buf());
    let before = sha_like(&binary);
    let mut bundle = Bundle::busybox().expect("bundle");
    bundle
        .env(&["PATH=/bin:/usr/bin", "HOME=/root"])
        .shell(EXE_PROBE);
    let mut container = Container::new(runtime, &bundle).expect("container");
    let created = container.create();
    assert!(created.status.success(), "{runtime} create: {created:?}");
    assert!(container.start().status.success(), "{runtime} start");
    // Only now: init itself may read /etc/passwd while it is set up.
    let passwd = bundle.rootfs().join("etc/passwd");
    std::fs::remove_file(&passwd).expect("rm passwd");
    nix::unistd::mkfifo(&passwd, nix::sys::stat::Mode::from_bits_truncate(0o644)).expect("mkfifo");
    let process = write_process(&bundle, "exec.json", &process_json(&["true"]));
    let process = process.to_string_lossy().into_owned();
    let execed = container.invoke(&["exec", "--process", &process, container.id()]);
    assert!(
        wait_until(SETTLE, || container.output().0.contains("done")),
        "{runtime}: the probe never saw the exec helper: {:?} exec: {execed:?}",
        container.output()
    );
    assert!(execed.status.success(), "{runtime} exec: {execed:?}");
    assert_eq!(
        sha_like(&binary),
        before,
        "{runtime}: the runtime binary changed"
    );
    container.output().0
}

#[test]
fn exec_helper_exe_is_not_writable_from_the_container() {
    for runtime in both() {
        let seen = exe_probe_during_exec(&runtime);
        assert!(seen.contains("exe-write-denied"), "{runtime}: {seen}");
    }
}

#[test]
fn exec_helper_exe_is_not_reachable_from_the_container() {
    // runc 1.1 hides its binary behind a sealed memfd copy instead; Berth
    // never re-executes itself, so its helper must be non-dumpable while it
    // is inside the container: no link, no read handle to reopen later.
    let runtime = Runtime::under_test();
    let seen = exe_probe_during_exec(&runtime);
    assert!(seen.contains("found "), "{seen}");
    assert!(seen.contains("exe-link-denied"), "{seen}");
    assert!(seen.contains("exe-read-denied"), "{seen}");
    assert!(seen.contains("exe-write-denied"), "{seen}");
}

#[test]
fn created_init_exe_is_not_reachable_from_an_exec() {
    // Between create and start the container's pid 1 is still the runtime,
    // waiting for `start`. A process exec'd into the container then must not
    // get at its binary.
    let runtime = Runtime::under_test();
    let binary = runtime.path().canonicalize().expect("runtime path");
    let before = sha_like(&binary);
    let mut bundle = Bundle::busybox().expect("bundle");
    bundle.args(&["sleep", "1000"]);
    let mut container = Container::new(&runtime, &bundle).expect("container");
    assert!(container.create().status.success(), "create");
    let seen = container.invoke(&[
        "exec",
        container.id(),
        "sh",
        "-c",
        "cat /proc/1/comm; readlink /proc/1/exe && echo link-readable; \
         (exec 3</proc/1/exe) && echo open-read; (exec 3>>/proc/1/exe) && echo open-write; true",
    ]);
    assert!(seen.status.success(), "{seen:?}");
    let out = text(&seen.stdout);
    // pid 1 is not yet the container's program.
    assert!(!out.starts_with("sleep"), "{out}");
    for bad in ["link-readable", "open-read", "open-write"] {
        assert!(!out.contains(bad), "{out}");
    }
    assert_eq!(sha_like(&binary), before);
}

// ---------------------------------------------------------------------------
// Leaked fds and cwd outside the rootfs (CVE-2024-21626 class)
// ---------------------------------------------------------------------------

/// `run` with cwd /proc/self/fd/N for N in 3..20 must fail, with a message.
fn cwd_through_proc_self_fd(runtime: &Runtime) {
    for n in 3..20 {
        let mut bundle = Bundle::busybox().expect("bundle");
        bundle
            .cwd(&format!("/proc/self/fd/{n}"))
            .shell("echo cwd=$(pwd); ls");
        let output = run_container(runtime, &bundle);
        assert!(
            !output.status.success(),
            "{runtime}: cwd /proc/self/fd/{n} ran: {output:?}"
        );
        assert!(
            !text(&output.stdout).contains("cwd="),
            "{runtime}: fd {n}: {output:?}"
        );
        assert!(
            !output.stderr.is_empty(),
            "{runtime}: fd {n}: no error message"
        );
    }
}

#[test]
fn cwd_through_proc_self_fd_is_refused() {
    cwd_through_proc_self_fd(&Runtime::under_test());
}

#[test]
fn cwd_through_proc_self_fd_is_refused_by_runc_too() {
    cwd_through_proc_self_fd(&Runtime::reference());
}

fn fd_names(listing: &str) -> BTreeSet<String> {
    listing.split_whitespace().map(str::to_string).collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

#[test]
fn run_leaks_no_runtime_fd() {
    for runtime in both() {
        let mut bundle = Bundle::busybox().expect("bundle");
        bundle.args(&["ls", "/proc/self/fd"]);
        let output = run_container(&runtime, &bundle);
        assert!(output.status.success(), "{runtime}: {output:?}");
        // 3 is the directory ls is reading.
        assert_eq!(
            fd_names(&text(&output.stdout)),
            set(&["0", "1", "2", "3"]),
            "{runtime}"
        );
    }
}

#[test]
fn exec_leaks_no_runtime_fd() {
    for runtime in both() {
        let mut bundle = Bundle::busybox().expect("bundle");
        bundle.args(&["sleep", "1000"]);
        let mut container = Container::new(&runtime, &bundle).expect("container");
        assert!(container.create().status.success(), "{runtime} create");
        assert!(container.start().status.success(), "{runtime} start");
        let output = container.invoke(&["exec", container.id(), "ls", "/proc/self/fd"]);
        assert!(output.status.success(), "{runtime}: {output:?}");
        assert_eq!(
            fd_names(&text(&output.stdout)),
            set(&["0", "1", "2", "3"]),
            "{runtime}"
        );
        // The init, started by create, has only its stdio too.
        let pid = container.pid().expect("pid");
        let fds = dir_entries(Path::new(&format!("/proc/{pid}/fd")));
        assert_eq!(fds, ["0", "1", "2"], "{runtime}: init fds");
    }
}

#[test]
fn exec_cwd_through_proc_self_fd_is_refused() {
    for runtime in both() {
        let mut bundle = Bundle::busybox().expect("bundle");
        bundle.args(&["sleep", "1000"]);
        let mut container = Container::new(&runtime, &bundle).expect("container");
        assert!(container.create().status.success(), "{runtime} create");
        assert!(container.start().status.success(), "{runtime} start");
        for n in 3..20 {
            let cwd = format!("/proc/self/fd/{n}");
            let output = container.invoke(&[
                "exec",
                "--cwd",
                &cwd,
                container.id(),
                "sh",
                "-c",
                "echo cwd=$(pwd)",
            ]);
            assert!(
                !output.status.success() && !text(&output.stdout).contains("cwd="),
                "{runtime}: exec --cwd {cwd}: {output:?}"
            );
        }
    }
}

/// `run --preserve-fds 2` from a shell holding fds 3, 4 and 5 open.
fn preserved_fds(runtime: &Runtime) -> Output {
    let mut bundle = Bundle::busybox().expect("bundle");
    bundle.shell("cat <&3; cat <&4; echo fds $(ls /proc/self/fd)");
    let files = host_dir();
    for (name, content) in [("a", "three\n"), ("b", "four\n"), ("c", "five\n")] {
        std::fs::write(files.path().join(name), content).expect("file");
    }
    let container = Container::new(runtime, &bundle).expect("container");
    let script = r#"exec 3<"$1" 4<"$2" 5<"$3"; shift 3; exec "$@""#;
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(script)
        .arg("sh")
        .arg(files.path().join("a"))
        .arg(files.path().join("b"))
        .arg(files.path().join("c"))
        .arg(runtime.path())
        .arg("--root")
        .arg(container.root())
        .args(["run", "--preserve-fds", "2", "--bundle"])
        .arg(bundle.path())
        .arg(container.id());
    output_with_timeout(&mut command, runtime_timeout()).expect("run")
}

#[test]
fn preserve_fds_passes_exactly_the_fds_asked_for() {
    for runtime in both() {
        let output = preserved_fds(&runtime);
        assert!(output.status.success(), "{runtime}: {output:?}");
        // ls's own directory fd is 5: fd 5 of the caller was not passed.
        assert_eq!(
            text(&output.stdout),
            "three\nfour\nfds 0 1 2 3 4 5\n",
            "{runtime}: {output:?}"
        );
    }
}

// ---------------------------------------------------------------------------
// Mount destinations and image paths through symlinks (CVE-2021-30465 class)
// ---------------------------------------------------------------------------

/// A rootfs where /etc/evil is a symlink to a host directory; tmpfs and bind
/// mounts at /etc/evil/x and /etc/evil/y. Returns the container's output.
/// With `target_in_rootfs`, the symlink's target also exists inside the rootfs.
fn mount_through_symlink(runtime: &Runtime, target_in_rootfs: bool) -> Output {
    let host = host_dir();
    let source = host_dir();
    std::fs::write(source.path().join("marker"), "bound\n").expect("marker");
    std::fs::set_permissions(source.path(), PermissionsExt::from_mode(0o755)).expect("chmod");
    let mut bundle = Bundle::busybox().expect("bundle");
    std::os::unix::fs::symlink(host.path(), bundle.rootfs().join("etc/evil")).expect("symlink");
    if target_in_rootfs {
        let inside = host.path().strip_prefix("/").expect("absolute");
        std::fs::create_dir_all(bundle.rootfs().join(inside)).expect("target in rootfs");
    }
    let source_path = source.path().to_string_lossy().into_owned();
    bundle
        .add_mount("/etc/evil/x", "tmpfs", "tmpfs", &["size=1m"])
        .add_mount("/etc/evil/y", "bind", &source_path, &["rbind", "ro"])
        .shell(
            "cat /etc/evil/y/marker; grep -c ' /etc/evil/' /proc/self/mountinfo; \
             mounts=$(grep -c \" $(readlink /etc/evil)/[xy] \" /proc/self/mountinfo); \
             echo in-root=$mounts",
        );
    let mut container = Container::new(runtime, &bundle).expect("container");
    let created = container.create();
    // While the container exists, with its mounts made, the host shows nothing.
    assert_eq!(
        dir_entries(host.path()),
        Vec::<String>::new(),
        "{runtime}: host dir touched"
    );
    assert_eq!(
        host_mounts_under(host.path()),
        Vec::<String>::new(),
        "{runtime}"
    );
    if !created.status.success() {
        return created;
    }
    assert!(container.start().status.success(), "{runtime} start");
    assert!(container.wait_for_status("stopped", SETTLE), "{runtime}");
    assert_eq!(dir_entries(host.path()), Vec::<String>::new(), "{runtime}");
    let (stdout, stderr) = container.output();
    Output {
        status: created.status,
        stdout: stdout.into_bytes(),
        stderr: stderr.into_bytes(),
    }
}

#[test]
fn mount_destination_symlink_stays_in_rootfs() {
    for runtime in both() {
        let output = mount_through_symlink(&runtime, true);
        assert!(output.status.success(), "{runtime}: {output:?}");
        // Both mounts landed at the symlink's target inside the rootfs.
        assert_eq!(
            text(&output.stdout),
            "bound\n0\nin-root=2\n",
            "{runtime}: {output:?}"
        );
    }
}

#[test]
fn mount_destination_symlink_to_missing_dir_never_touches_host() {
    // Whether the runtime creates the target inside the rootfs or refuses,
    // the host directory stays empty and unmounted (asserted inside).
    for runtime in both() {
        mount_through_symlink(&runtime, false);
    }
}

#[test]
fn mount_destination_symlink_to_missing_dir_is_created_in_rootfs() {
    // Images often have such links (/var/run -> /run with /run empty); runc
    // creates the target inside the rootfs. The host stays untouched either way
    // (checked inside mount_through_symlink).
    for runtime in both() {
        let output = mount_through_symlink(&runtime, false);
        assert!(output.status.success(), "{runtime}: {output:?}");
        // Both mounts landed at the symlink's target inside the rootfs.
        assert_eq!(
            text(&output.stdout),
            "bound\n0\nin-root=2\n",
            "{runtime}: {output:?}"
        );
    }
}

#[test]
fn dev_symlink_in_image_creates_nothing_on_host() {
    // runc 1.1 creates the /dev symlinks and ptmx in the symlink's host
    // target: this is a Berth-only requirement.
    let runtime = Runtime::under_test();
    let host = host_dir();
    let mut bundle = Bundle::busybox().expect("bundle");
    let dev = bundle.rootfs().join("dev");
    std::fs::remove_dir(&dev).expect("rm dev");
    std::os::unix::fs::symlink(host.path(), &dev).expect("symlink");
    bundle.set(
        "/linux/devices",
        json!([{ "path": "/dev/mynull", "type": "c", "major": 1, "minor": 3,
                 "fileMode": 438, "uid": 0, "gid": 0 }]),
    );
    bundle.shell("ls /dev >/dev/null; echo ran");
    let mut container = Container::new(&runtime, &bundle).expect("container");
    let created = container.create();
    assert_eq!(
        dir_entries(host.path()),
        Vec::<String>::new(),
        "{runtime}: host dir got files: {created:?}"
    );
    assert_eq!(host_mounts_under(host.path()), Vec::<String>::new());
    if created.status.success() {
        assert!(container.start().status.success(), "{runtime} start");
        assert!(container.wait_for_status("stopped", SETTLE), "{runtime}");
    }
    drop(container);
    assert_eq!(dir_entries(host.path()), Vec::<String>::new(), "{runtime}");
}

// ---------------------------------------------------------------------------
// Masked paths (CVE-2025-31133 class)
// ---------------------------------------------------------------------------

#[test]
fn masked_proc_files_are_empty() {
    for runtime in both() {
        let mut bundle = Bundle::busybox().expect("bundle");
        bundle.shell(
            "for p in /proc/kcore /proc/keys /proc/timer_list /proc/sched_debug /proc/interrupts; do \
               [ -e $p ] && echo $p=$(cat $p 2>/dev/null | wc -c); \
             done; true",
        );
        let output = run_container(&runtime, &bundle);
        assert!(output.status.success(), "{runtime}: {output:?}");
        // Only what the host has can be masked; the kernel here may lack some.
        let expected: String = [
            "/proc/kcore",
            "/proc/keys",
            "/proc/timer_list",
            "/proc/sched_debug",
            "/proc/interrupts",
        ]
        .iter()
        .filter(|p| Path::new(p).exists())
        .map(|p| format!("{p}=0\n"))
        .collect();
        assert!(!expected.is_empty());
        assert_eq!(text(&output.stdout), expected, "{runtime}: {output:?}");
    }
}

#[test]
fn masked_path_symlink_does_not_mask_host() {
    for runtime in both() {
        let host = host_dir();
        std::fs::write(host.path().join("secret"), "host-data\n").expect("secret");
        let mut bundle = Bundle::busybox().expect("bundle");
        std::os::unix::fs::symlink(host.path(), bundle.rootfs().join("etc/masklink"))
            .expect("symlink");
        std::fs::write(bundle.rootfs().join("etc/inside"), "inside\n").expect("inside");
        bundle
            .masked_paths(&["/etc/masklink", "/etc/inside", "/proc/kcore"])
            .args(&["sleep", "1000"]);
        let mut container = Container::new(&runtime, &bundle).expect("container");
        let created = container.create();
        assert!(created.status.success(), "{runtime}: {created:?}");
        assert_eq!(host_mounts_under(host.path()), Vec::<String>::new());
        assert_eq!(
            std::fs::read_to_string(host.path().join("secret")).expect("secret"),
            "host-data\n"
        );
        let seen = container.invoke(&[
            "exec",
            container.id(),
            "sh",
            "-c",
            "echo inside=$(cat /etc/inside | wc -c)",
        ]);
        assert_eq!(text(&seen.stdout), "inside=0\n", "{runtime}: {seen:?}");
        assert_eq!(
            dir_entries(host.path()),
            ["secret"],
            "{runtime}: host dir changed"
        );
    }
}

#[test]
fn mask_source_symlinked_dev_null_is_not_followed() {
    // An image that brings its own /dev (no tmpfs over it) with /dev/null a
    // symlink to a procfs file: a runtime that binds "/dev/null" over masked
    // paths by name would expose that file, writable, at every masked path.
    // Nothing is written here: core_pattern is global to the host.
    let runtime = Runtime::under_test();
    let mut bundle = Bundle::busybox().expect("bundle");
    bundle.remove_mount("/dev");
    for dir in ["dev/pts", "dev/shm", "dev/mqueue"] {
        std::fs::create_dir_all(bundle.rootfs().join(dir)).expect("dev dir");
    }
    std::os::unix::fs::symlink(
        "/proc/sys/kernel/core_pattern",
        bundle.rootfs().join("dev/null"),
    )
    .expect("symlink");
    bundle.shell(
        "echo timer=$(cat /proc/timer_list 2>/dev/null | wc -c); \
         grep ' /proc/timer_list ' /proc/self/mountinfo | sed 's/.* - //' | cut -d' ' -f1",
    );
    let output = run_container(&runtime, &bundle);
    if output.status.success() {
        // Masked by the real null device or an empty tmpfs, not by procfs.
        let out = text(&output.stdout);
        assert!(out.starts_with("timer=0\n"), "{out}");
        assert!(!out.lines().any(|l| l == "proc"), "{out}");
    } else {
        // Failing closed is fine, with a message naming the culprit.
        assert!(text(&output.stderr).contains("/dev/null"), "{output:?}");
    }
}

// ---------------------------------------------------------------------------
// procfs writes (CVE-2025-52881 class)
// ---------------------------------------------------------------------------

#[test]
fn sysctl_applies_inside_only() {
    let path = "/proc/sys/net/ipv4/ip_forward";
    let host_before = std::fs::read_to_string(path).expect("host sysctl");
    let wanted = if host_before.trim() == "1" { "0" } else { "1" };
    for runtime in both() {
        let mut bundle = Bundle::busybox().expect("bundle");
        bundle
            .set("/linux/sysctl", json!({ "net.ipv4.ip_forward": wanted }))
            .args(&["sleep", "1000"]);
        let mut container = Container::new(&runtime, &bundle).expect("container");
        let created = container.create();
        assert!(created.status.success(), "{runtime}: {created:?}");
        let seen = container.invoke(&["exec", container.id(), "cat", path]);
        assert_eq!(text(&seen.stdout).trim(), wanted, "{runtime}: {seen:?}");
        assert_eq!(
            std::fs::read_to_string(path).expect("host sysctl"),
            host_before,
            "{runtime}: host value changed"
        );
    }
}

// ---------------------------------------------------------------------------
// No abstract sockets (CVE-2020-15257 class)
// ---------------------------------------------------------------------------

/// Socket inodes held open by process `pid`.
fn socket_inodes(pid: i32) -> BTreeSet<String> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| std::fs::read_link(e.path()).ok())
                .filter_map(|l| {
                    let l = l.to_string_lossy().into_owned();
                    l.strip_prefix("socket:[")
                        .and_then(|s| s.strip_suffix(']'))
                        .map(str::to_string)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Abstract sockets in /proc/net/unix text (inode, name) whose inode is in
/// `inodes` or whose name mentions `word`.
fn suspicious_abstract(unix: &str, inodes: &BTreeSet<String>, word: &str) -> Vec<String> {
    unix.lines()
        .skip(1)
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let Some(name) = fields.get(7) else {
                return false;
            };
            name.starts_with('@')
                && (inodes.contains(fields[6]) || name.contains(word) || name.contains("berth"))
        })
        .map(str::to_string)
        .collect()
}

#[test]
fn no_abstract_socket_reachable_from_host_network_container() {
    let runtime = Runtime::under_test();
    let mut bundle = Bundle::busybox().expect("bundle");
    bundle.remove_namespace("network").args(&["sleep", "1000"]);
    let mut container = Container::new(&runtime, &bundle).expect("container");
    assert!(container.create().status.success(), "create");
    let pid = container.pid().expect("pid");
    for phase in ["created", "running"] {
        if phase == "running" {
            assert!(container.start().status.success(), "start");
        }
        let inodes = socket_inodes(pid);
        let seen = container.invoke(&["exec", container.id(), "cat", "/proc/net/unix"]);
        assert!(seen.status.success(), "{phase}: {seen:?}");
        let bad = suspicious_abstract(&text(&seen.stdout), &inodes, container.id());
        assert_eq!(bad, Vec::<String>::new(), "{phase}");
        let host = std::fs::read_to_string("/proc/net/unix").expect("host unix sockets");
        let bad = suspicious_abstract(&host, &inodes, container.id());
        assert_eq!(bad, Vec::<String>::new(), "{phase} (host view)");
    }
}

// ---------------------------------------------------------------------------
// cgroup v1 release_agent (CVE-2022-0492)
// ---------------------------------------------------------------------------

#[test]
fn cgroup_escape_is_blocked() {
    // Docker's profile refuses these without CAP_SYS_ADMIN; a short
    // allow-by-default profile denying them has the same effect here.
    let profile = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            { "names": ["unshare", "mount", "umount2"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1 }
        ]
    });
    for runtime in both() {
        let mut bundle = Bundle::busybox().expect("bundle");
        bundle.seccomp(profile.clone()).shell(
            "unshare -m true 2>/dev/null; echo unshare=$?; \
             mkdir -p /tmp/cg; mount -t cgroup -o memory cgroup /tmp/cg 2>/dev/null; echo mount=$?; \
             n=0; for f in /sys/fs/cgroup/*/release_agent /sys/fs/cgroup/release_agent; do \
               [ -e $f ] || continue; (echo /evil > $f) 2>/dev/null && n=$((n+1)); \
             done; echo agents-written=$n",
        );
        let output = run_container(&runtime, &bundle);
        let out = text(&output.stdout);
        for line in ["unshare=1", "mount=1", "agents-written=0"] {
            assert!(out.lines().any(|l| l == line), "{runtime}: {output:?}");
        }
    }
}

#[test]
fn sys_fs_cgroup_is_read_only() {
    // runc 1.1 leaves that tmpfs writable too; SECURITY.md asks for it read-only.
    let runtime = Runtime::under_test();
    let mut bundle = Bundle::busybox().expect("bundle");
    bundle.shell(
        "touch /sys/fs/cgroup/x 2>/dev/null; echo touch=$?; \
         mkdir /sys/fs/cgroup/d 2>/dev/null; echo mkdir=$?; \
         grep ' /sys/fs/cgroup ' /proc/self/mountinfo | cut -d' ' -f6 | cut -d, -f1",
    );
    let output = run_container(&runtime, &bundle);
    assert_eq!(text(&output.stdout), "touch=1\nmkdir=1\nro\n", "{output:?}");
}

// ---------------------------------------------------------------------------
// Bad input (issue 3): a clear error, and nothing left behind
// ---------------------------------------------------------------------------

/// Processes whose cgroup or command line mentions `word`.
fn processes_mentioning(word: &str) -> Vec<i32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cgroup = std::fs::read_to_string(entry.path().join("cgroup")).unwrap_or_default();
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if (cgroup.contains(word) || text(&cmdline).contains(word)) && process_alive(pid) {
            pids.push(pid);
        }
    }
    pids
}

/// Host mount points mentioning `word` (the bundle path or container id).
fn host_mounts_mentioning(word: &str) -> Vec<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    info.lines()
        .filter(|line| line.contains(word))
        .map(str::to_string)
        .collect()
}

#[derive(Debug)]
struct Refusal {
    code: Option<i32>,
    stderr: String,
    root_left: Vec<String>,
    cgroups_left: usize,
    mounts_left: Vec<String>,
    processes_left: Vec<i32>,
}

fn create_refused(runtime: &Runtime, bundle: &Bundle, id: &str) -> Refusal {
    let mut container = Container::with_id(runtime, bundle, id).expect("container");
    let output = container.create();
    let bundle_path = bundle.path().to_string_lossy().into_owned();
    let mut mounts_left = host_mounts_mentioning(&bundle_path);
    mounts_left.extend(host_mounts_mentioning(bundle.cgroup_name()));
    let mut processes_left = processes_mentioning(bundle.cgroup_name());
    processes_left.extend(processes_mentioning(&bundle_path));
    Refusal {
        code: output.status.code(),
        stderr: text(&output.stderr),
        root_left: container.root_entries(),
        cgroups_left: bundle.cgroup_dirs().len(),
        mounts_left,
        processes_left,
    }
}

/// Asserts the runtime under test refuses the bundle made by `setup` with an
/// error mentioning one of `keywords` (case-insensitive) and leaves nothing.
fn refused_cleanly(setup: impl Fn(&mut Bundle), id: Option<&str>, keywords: &[&str]) {
    let runtime = Runtime::under_test();
    let mut bundle = Bundle::busybox().expect("bundle");
    setup(&mut bundle);
    let id = id.map_or_else(unique_name, str::to_string);
    let refusal = create_refused(&runtime, &bundle, &id);
    let stderr = refusal.stderr.to_lowercase();
    assert!(
        refusal.code.is_some_and(|c| c != 0),
        "{runtime}: {refusal:?}"
    );
    assert!(
        keywords.iter().any(|k| stderr.contains(&k.to_lowercase())),
        "{runtime}: stderr names none of {keywords:?}: {refusal:?}"
    );
    assert!(refusal.root_left.is_empty(), "{refusal:?}");
    assert_eq!(refusal.cgroups_left, 0, "{refusal:?}");
    assert!(refusal.mounts_left.is_empty(), "{refusal:?}");
    assert!(refusal.processes_left.is_empty(), "{refusal:?}");
}

#[test]
fn bad_input_hostname_of_wrong_type() {
    refused_cleanly(
        |b| {
            b.set("/hostname", json!(5));
        },
        None,
        &["hostname"],
    );
}

#[test]
fn bad_input_oci_version_0_9() {
    refused_cleanly(
        |b| {
            b.oci_version("0.9");
        },
        None,
        &["ociVersion"],
    );
}

#[test]
fn bad_input_unknown_namespace_type() {
    refused_cleanly(
        |b| {
            b.add_namespace("foo", None);
        },
        None,
        &["foo"],
    );
}

#[test]
fn bad_input_relative_mount_destination() {
    refused_cleanly(
        |b| {
            b.add_mount("relative/dir", "tmpfs", "tmpfs", &["nosuid"]);
        },
        None,
        &["relative/dir"],
    );
}

#[test]
fn bad_input_missing_rootfs() {
    refused_cleanly(
        |b| {
            b.root_path("no-such-rootfs");
        },
        None,
        &["no-such-rootfs"],
    );
}

#[test]
fn bad_input_id_with_slash() {
    refused_cleanly(|_| {}, Some("berth-test/escape"), &["id"]);
}

#[test]
fn bad_input_id_dot_dot() {
    refused_cleanly(|_| {}, Some(".."), &["id"]);
}

#[test]
fn bad_input_duplicate_id() {
    let runtime = Runtime::under_test();
    let mut first_bundle = Bundle::busybox().expect("bundle");
    first_bundle.args(&["sleep", "1000"]);
    let mut first = Container::new(&runtime, &first_bundle).expect("container");
    assert!(first.create().status.success(), "create");
    let second = Bundle::busybox().expect("bundle");
    second.write_config().expect("config");
    let output = first.invoke(&[
        "create",
        "--bundle",
        &second.path().to_string_lossy(),
        first.id(),
    ]);
    assert!(!output.status.success(), "{output:?}");
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("exists") && stderr.contains(first.id()),
        "{stderr}"
    );
    assert_eq!(second.cgroup_dirs().len(), 0);
    assert!(processes_mentioning(second.cgroup_name()).is_empty());
    assert!(host_mounts_mentioning(&second.path().to_string_lossy()).is_empty());
    assert_eq!(first.root_entries(), [first.id()]);
    assert_eq!(first.status().as_deref(), Some("created"));
    assert!(process_alive(first.pid().expect("pid")));
}
