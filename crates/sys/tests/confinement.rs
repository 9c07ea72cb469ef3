//! Loads real seccomp filters and changes real capability sets. Each test runs
//! its body in a fresh copy of this test binary: filters and dropped
//! capabilities cannot be undone, and must not reach the harness's other tests.

use std::fs;
use std::os::fd::AsRawFd;
use std::process::Command;

use berth_sys::capabilities::{self, parse_capability};
use berth_sys::seccomp::{self, compile};
use nix::errno::Errno;
use oci_spec::runtime::{
    Capabilities, LinuxCapabilities, LinuxCapabilitiesBuilder, LinuxSeccomp, LinuxSeccompAction,
    LinuxSeccompArgBuilder, LinuxSeccompOperator, LinuxSyscall, LinuxSyscallBuilder,
};

const CHILD_ENV: &str = "BERTH_SYS_TEST_CHILD";

/// Runs `body` in a child process that executes only the test `name`.
fn isolated(name: &str, body: impl FnOnce()) {
    if std::env::var(CHILD_ENV).as_deref() == Ok(name) {
        body();
        return;
    }
    let exe = std::env::current_exe().expect("path of the test binary");
    let out = Command::new(exe)
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, name)
        .output()
        .expect("start the test binary again");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "child for {name} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn set_no_new_privs() {
    nix::sys::prctl::set_no_new_privs().expect("set no_new_privs");
}

fn rule(names: &[&str], action: LinuxSeccompAction, errno: Option<u32>) -> LinuxSyscall {
    let builder = LinuxSyscallBuilder::default()
        .names(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
        .action(action);
    match errno {
        Some(errno) => builder.errno_ret(errno),
        None => builder,
    }
    .build()
    .expect("syscall rule")
}

fn with_args(mut rule: LinuxSyscall, args: &[(usize, LinuxSeccompOperator, u64)]) -> LinuxSyscall {
    let args = args
        .iter()
        .map(|&(index, op, value)| {
            LinuxSeccompArgBuilder::default()
                .index(index)
                .op(op)
                .value(value)
                .build()
                .expect("argument condition")
        })
        .collect();
    rule.set_args(Some(args));
    rule
}

fn allow_all_but(syscalls: Vec<LinuxSyscall>) -> LinuxSeccomp {
    let mut profile = LinuxSeccomp::default();
    profile.set_default_action(LinuxSeccompAction::ScmpActAllow);
    profile.set_syscalls(Some(syscalls));
    profile
}

/// The errno of a raw syscall, or None when it succeeded.
fn errno_of(ret: libc::c_long) -> Option<Errno> {
    (ret < 0).then(Errno::last)
}

fn getpriority(which: u64, who: u64) -> Option<Errno> {
    // SAFETY: getpriority takes two integers and touches no memory.
    errno_of(unsafe { libc::syscall(libc::SYS_getpriority, which, who) })
}

fn personality(persona: u64) -> Option<Errno> {
    // SAFETY: personality takes an integer; 0xffffffff only queries.
    errno_of(unsafe { libc::syscall(libc::SYS_personality, persona) })
}

/// Runs `call` in a forked, single-threaded child and returns its errno (None on success).
/// `call` must only make raw syscalls: the parent has other threads.
fn errno_in_fork(call: fn() -> libc::c_long) -> Option<Errno> {
    // SAFETY: the child only calls `call` (raw syscalls) and _exit, both
    // async-signal-safe, so forking a multithreaded process is fine.
    match unsafe { nix::unistd::fork() }.expect("fork") {
        nix::unistd::ForkResult::Child => {
            let ret = call();
            let code = if ret < 0 { Errno::last_raw() } else { 0 };
            // SAFETY: _exit ends the child without running the parent's destructors.
            unsafe { libc::_exit(code) }
        }
        nix::unistd::ForkResult::Parent { child } => {
            match nix::sys::wait::waitpid(child, None).expect("wait for child") {
                nix::sys::wait::WaitStatus::Exited(_, 0) => None,
                nix::sys::wait::WaitStatus::Exited(_, code) => Some(Errno::from_raw(code)),
                other => panic!("forked child ended with {other:?}"),
            }
        }
    }
}

fn unshare_user_ns() -> libc::c_long {
    // SAFETY: unshare takes flags only.
    libc::c_long::from(unsafe { libc::unshare(libc::CLONE_NEWUSER) })
}

fn status_field(status: &str, field: &str) -> String {
    status
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("{field} missing from status:\n{status}"))
        .trim()
        .to_string()
}

fn thread_status() -> String {
    fs::read_to_string("/proc/thread-self/status").expect("read /proc/thread-self/status")
}

/// /proc/self/status of a freshly executed program started by this thread.
fn exec_status() -> String {
    let out = Command::new("cat")
        .arg("/proc/self/status")
        .output()
        .expect("run cat");
    assert!(out.status.success(), "cat failed: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn caps_of(names: &[&str]) -> Capabilities {
    names
        .iter()
        .map(|name| {
            serde_json::from_str(&format!("\"{name}\"")).unwrap_or_else(|e| panic!("{name}: {e}"))
        })
        .collect()
}

fn all_sets(caps: &Capabilities, ambient: Capabilities) -> LinuxCapabilities {
    LinuxCapabilitiesBuilder::default()
        .bounding(caps.clone())
        .permitted(caps.clone())
        .effective(caps.clone())
        .inheritable(caps.clone())
        .ambient(ambient)
        .build()
        .expect("capability sets")
}

#[test]
fn errno_rule_denies_mkdir_and_leaves_other_calls_alone() {
    isolated(
        "errno_rule_denies_mkdir_and_leaves_other_calls_alone",
        || {
            let dir = tempfile::tempdir().expect("tempdir");
            let program = compile(&allow_all_but(vec![rule(
                &["mkdir", "mkdirat"],
                LinuxSeccompAction::ScmpActErrno,
                None,
            )]))
            .expect("compile");
            set_no_new_privs();
            assert!(program.load().expect("load").is_none());

            let err = fs::create_dir(dir.path().join("sub")).expect_err("mkdir must be denied");
            assert_eq!(err.raw_os_error(), Some(libc::EPERM), "{err}");
            fs::write(dir.path().join("file"), b"still works").expect("write a file");
            assert_eq!(
                fs::read(dir.path().join("file")).expect("read it back"),
                b"still works"
            );
            assert!(std::process::id() > 0);
        },
    );
}

#[test]
fn errno_ret_is_honoured() {
    isolated("errno_ret_is_honoured", || {
        let dir = tempfile::tempdir().expect("tempdir");
        let program = compile(&allow_all_but(vec![rule(
            &["mkdir", "mkdirat"],
            LinuxSeccompAction::ScmpActErrno,
            Some(libc::EXDEV as u32),
        )]))
        .expect("compile");
        set_no_new_privs();
        program.load().expect("load");
        let err = fs::create_dir(dir.path().join("sub")).expect_err("mkdir must be denied");
        assert_eq!(err.raw_os_error(), Some(libc::EXDEV), "{err}");
    });
}

#[test]
fn tsync_filters_threads_started_before_the_load() {
    isolated("tsync_filters_threads_started_before_the_load", || {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut profile = allow_all_but(vec![rule(
            &["mkdir", "mkdirat"],
            LinuxSeccompAction::ScmpActErrno,
            None,
        )]);
        profile.set_flags(Some(vec![
            oci_spec::runtime::LinuxSeccompFilterFlag::SeccompFilterFlagTsync,
        ]));
        let program = compile(&profile).expect("compile");
        let (go, wait) = std::sync::mpsc::channel::<()>();
        let target = dir.path().join("from-other-thread");
        let other = std::thread::spawn(move || {
            wait.recv().expect("signal from the loading thread");
            fs::create_dir(target).map_err(|e| e.raw_os_error())
        });
        set_no_new_privs();
        assert!(program.load().expect("load").is_none());
        go.send(()).expect("wake the other thread");
        assert_eq!(other.join().expect("other thread"), Err(Some(libc::EPERM)));
    });
}

#[test]
fn argument_conditions_select_calls() {
    isolated("argument_conditions_select_calls", || {
        use LinuxSeccompOperator::*;
        let profile = allow_all_but(vec![
            // personality is denied unless it only queries (arg0 == 0xffffffff).
            with_args(
                rule(&["personality"], LinuxSeccompAction::ScmpActErrno, None),
                &[(0, ScmpCmpNe, 0xffff_ffff)],
            ),
            // Two arguments in one entry: both must match.
            with_args(
                rule(
                    &["getpriority"],
                    LinuxSeccompAction::ScmpActErrno,
                    Some(libc::EXDEV as u32),
                ),
                &[(0, ScmpCmpEq, 1), (1, ScmpCmpEq, 4242)],
            ),
            // The same argument twice in one entry: either may match.
            with_args(
                rule(
                    &["getpriority"],
                    LinuxSeccompAction::ScmpActErrno,
                    Some(libc::ENOTTY as u32),
                ),
                &[(0, ScmpCmpEq, 7), (0, ScmpCmpEq, 8)],
            ),
        ]);
        let program = compile(&profile).expect("compile");
        set_no_new_privs();
        program.load().expect("load");

        assert_eq!(personality(0xffff_ffff), None);
        assert_eq!(personality(0), Some(Errno::EPERM));

        assert_eq!(getpriority(1, 4242), Some(Errno::EXDEV));
        assert_ne!(getpriority(1, 1), Some(Errno::EXDEV));
        assert_ne!(getpriority(0, 4242), Some(Errno::EXDEV));
        assert_eq!(getpriority(7, 0), Some(Errno::ENOTTY));
        assert_eq!(getpriority(8, 0), Some(Errno::ENOTTY));
        assert_eq!(getpriority(libc::PRIO_PROCESS as u64, 0), None);
    });
}

#[test]
fn notify_hands_calls_to_the_listener() {
    isolated("notify_hands_calls_to_the_listener", || {
        let program = compile(&allow_all_but(vec![rule(
            &["getppid"],
            LinuxSeccompAction::ScmpActNotify,
            None,
        )]))
        .expect("compile");
        // The agent thread starts before the filter exists, so it is not filtered.
        let (send_fd, receive_fd) = std::sync::mpsc::channel::<std::os::fd::OwnedFd>();
        let agent = std::thread::spawn(move || {
            let listener = receive_fd.recv().expect("listener fd");
            let req = libseccomp::ScmpNotifReq::receive(listener.as_raw_fd()).expect("receive");
            let name = req.data.syscall.get_name().expect("syscall name");
            libseccomp::ScmpNotifResp::new_error(
                req.id,
                -libc::EXDEV,
                libseccomp::ScmpNotifRespFlags::empty(),
            )
            .respond(listener.as_raw_fd())
            .expect("respond");
            name
        });
        set_no_new_privs();
        let listener = program.load().expect("load").expect("a listener fd");
        send_fd.send(listener).expect("hand over the listener");
        // SAFETY: getppid takes no arguments.
        let ret = unsafe { libc::syscall(libc::SYS_getppid) };
        assert_eq!(errno_of(ret), Some(Errno::EXDEV));
        assert_eq!(agent.join().expect("agent thread"), "getppid");
    });
}

#[test]
fn docker_profile_confines_a_process_without_sys_admin() {
    isolated(
        "docker_profile_confines_a_process_without_sys_admin",
        || {
            if !is_root() {
                eprintln!("skipped: needs root to drop capabilities");
                return;
            }
            let dir = tempfile::tempdir().expect("tempdir");
            // Without the filter, a single-threaded process may create a user namespace.
            assert_eq!(errno_in_fork(unshare_user_ns), None);

            let defaults = capabilities::default_docker_caps();
            let names: Vec<&str> = defaults.iter().map(String::as_str).collect();
            capabilities::apply(&all_sets(&caps_of(&names), Capabilities::new()))
                .expect("apply default capabilities");
            let program = compile(&seccomp::default_docker_profile()).expect("compile");
            set_no_new_privs();
            program.load().expect("load");

            assert_eq!(errno_in_fork(unshare_user_ns), Some(Errno::EPERM));
            assert_eq!(
                nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS),
                Err(Errno::EPERM)
            );
            let mounted = nix::mount::mount(
                Some("tmpfs"),
                dir.path(),
                Some("tmpfs"),
                nix::mount::MsFlags::empty(),
                None::<&str>,
            );
            assert_eq!(mounted, Err(Errno::EPERM));
            // SAFETY: clone3 with a null argument: the filter answers before the kernel reads it.
            let clone3 = unsafe { libc::syscall(libc::SYS_clone3, std::ptr::null::<u8>(), 0usize) };
            assert_eq!(errno_of(clone3), Some(Errno::ENOSYS));
            // SAFETY: socket takes integers only.
            let vsock = unsafe { libc::socket(libc::AF_VSOCK, libc::SOCK_STREAM, 0) };
            assert_eq!(errno_of(vsock.into()), Some(Errno::EPERM));
            assert_eq!(personality(0x0040_0000), Some(Errno::EPERM));
            assert_eq!(personality(0xffff_ffff), None);

            // Ordinary work goes on: files, sockets, threads, processes.
            fs::write(dir.path().join("file"), b"data").expect("write a file");
            fs::create_dir(dir.path().join("sub")).expect("mkdir");
            std::os::unix::net::UnixDatagram::pair().expect("unix socket pair");
            std::thread::spawn(|| 7).join().expect("thread");
            let out = Command::new("true").status().expect("spawn a process");
            assert!(out.success());
            assert!(!nix::sys::utsname::uname()
                .expect("uname")
                .sysname()
                .is_empty());
        },
    );
}

#[test]
fn docker_profile_default_errno_ret_is_honoured() {
    isolated("docker_profile_default_errno_ret_is_honoured", || {
        let mut profile = seccomp::default_docker_profile();
        profile.set_default_errno_ret(Some(libc::EXDEV as u32));
        let program = compile(&profile).expect("compile");
        set_no_new_privs();
        program.load().expect("load");
        assert_eq!(
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS),
            Err(Errno::EXDEV)
        );
    });
}

#[test]
fn default_caps_give_dockers_cap_eff() {
    isolated("default_caps_give_dockers_cap_eff", || {
        if !is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let defaults = capabilities::default_docker_caps();
        let names: Vec<&str> = defaults.iter().map(String::as_str).collect();
        let applied =
            capabilities::apply(&all_sets(&caps_of(&names), Capabilities::new())).expect("apply");
        assert!(applied.skipped.is_empty(), "{:?}", applied.skipped);

        let status = thread_status();
        for field in ["CapEff", "CapPrm", "CapInh", "CapBnd"] {
            assert_eq!(status_field(&status, field), "00000000a80425fb", "{field}");
        }
        assert_eq!(status_field(&status, "CapAmb"), "0000000000000000");
        let status = exec_status();
        assert_eq!(status_field(&status, "CapEff"), "00000000a80425fb");
        assert_eq!(status_field(&status, "CapBnd"), "00000000a80425fb");
    });
}

#[test]
fn ambient_caps_reach_a_non_root_program() {
    isolated("ambient_caps_reach_a_non_root_program", || {
        if !is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let kept = caps_of(&["CAP_CHOWN", "CAP_NET_BIND_SERVICE"]);
        capabilities::set_keep_caps(true).expect("keep caps");
        let nobody_group = nix::unistd::Gid::from_raw(65534);
        nix::unistd::setgroups(&[]).expect("setgroups");
        nix::unistd::setresgid(nobody_group, nobody_group, nobody_group).expect("setresgid");
        let nobody = nix::unistd::Uid::from_raw(65534);
        nix::unistd::setresuid(nobody, nobody, nobody).expect("setresuid");
        let mut sets = all_sets(&kept, kept.clone());
        let defaults = capabilities::default_docker_caps();
        let names: Vec<&str> = defaults.iter().map(String::as_str).collect();
        sets.set_bounding(Some(caps_of(&names)));
        let applied = capabilities::apply(&sets).expect("apply");
        assert!(applied.skipped.is_empty(), "{:?}", applied.skipped);
        capabilities::set_keep_caps(false).expect("clear keep caps");

        // CAP_CHOWN is bit 0, CAP_NET_BIND_SERVICE bit 10.
        let status = exec_status();
        assert!(
            status_field(&status, "Uid").starts_with("65534"),
            "{status}"
        );
        assert_eq!(status_field(&status, "CapAmb"), "0000000000000401");
        assert_eq!(status_field(&status, "CapEff"), "0000000000000401");
        assert_eq!(status_field(&status, "CapBnd"), "00000000a80425fb");
    });
}

#[test]
fn privileged_grants_what_exists() {
    isolated("privileged_grants_what_exists", || {
        if !is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let before = u64::from_str_radix(&status_field(&thread_status(), "CapBnd"), 16)
            .expect("CapBnd is hex");
        let all = capabilities::all_known_caps();
        let names: Vec<&str> = all.iter().map(String::as_str).collect();
        let applied = capabilities::apply(&all_sets(&caps_of(&names), Capabilities::new()))
            .expect("privileged apply must not fail on missing capabilities");
        for name in &applied.skipped {
            let bit = parse_capability(name).expect(name).bitmask();
            assert_eq!(before & bit, 0, "{name} was held but skipped");
        }
        let status = thread_status();
        assert_eq!(
            u64::from_str_radix(&status_field(&status, "CapEff"), 16).expect("hex"),
            before
        );
    });
}
