//! Root test of the cgroup2 device program on the host's cgroup2 hierarchy:
//! a process in the cgroup is refused a device the policy denies, replacing
//! the program lifts that, and removing the cgroup frees the programs.

use std::fs;
use std::io::ErrorKind;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use berth_cgroups::{
    detect, device_policy, device_program, install_device_program, Cgroup, DevicePolicy, Layout,
    Mode, V2Hierarchy, DEVICE_PROGRAM_LICENSE,
};
use berth_sys::bpf::{
    load_cgroup_device_program, open_program_by_id, query_cgroup_device_programs, BpfError,
};
use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use oci_spec::runtime::{LinuxDeviceCgroup, LinuxResources};

/// The cgroup2 hierarchy: /sys/fs/cgroup itself on a pure v2 host,
/// /sys/fs/cgroup/unified on a hybrid one.
fn cgroup2_root() -> Option<PathBuf> {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root");
        return None;
    }
    ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.join("cgroup.procs").exists() && p.join("cgroup.subtree_control").exists())
        .or_else(|| {
            eprintln!("skipped: no cgroup2 hierarchy mounted");
            None
        })
}

/// A cgroup2 directory of the test; killing what runs in it and removing it
/// on drop, even when an assertion failed.
struct TestCgroup {
    dir: PathBuf,
    pids: Vec<i32>,
}

impl TestCgroup {
    fn new(root: &Path) -> TestCgroup {
        let dir = root.join(format!("berth-devtest-{}", std::process::id()));
        fs::create_dir(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        TestCgroup {
            dir,
            pids: Vec::new(),
        }
    }

    fn run(&mut self, script: &str) -> (String, String) {
        run_in(&self.dir, script, &mut self.pids)
    }

    fn programs(&self) -> Vec<u32> {
        programs(&self.dir)
    }
}

/// Runs `script` in a shell that first moves itself into the cgroup2 dir
/// `dir`, so every device it opens afterwards is checked by the cgroup's
/// program; records the shell's pid in `pids` for the guard.
fn run_in(dir: &Path, script: &str, pids: &mut Vec<i32>) -> (String, String) {
    let procs = dir.join("cgroup.procs");
    let child = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "echo $$ > '{}' || exit 99; {script}",
            procs.display()
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sh");
    pids.push(child.id() as i32);
    let out = child.wait_with_output().expect("wait for sh");
    assert_ne!(out.status.code(), Some(99), "sh could not join the cgroup");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Ids of the device programs attached directly to the cgroup2 dir `dir`.
fn programs(dir: &Path) -> Vec<u32> {
    let dir = fs::File::open(dir).expect("open cgroup dir");
    query_cgroup_device_programs(dir.as_fd()).expect("query programs")
}

/// A `Cgroup` of the test, killed and deleted on drop.
struct CgroupGuard {
    cgroup: Cgroup,
    pids: Vec<i32>,
}

impl Drop for CgroupGuard {
    fn drop(&mut self) {
        for &pid in &self.pids {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        let _ = self.cgroup.kill_all(Signal::SIGKILL as i32);
        if let Err(e) = self.cgroup.delete() {
            eprintln!("cleanup: {e}");
        }
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        for &pid in &self.pids {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        let _ = fs::write(self.dir.join("cgroup.kill"), "1");
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match fs::remove_dir(&self.dir) {
                Ok(()) => return,
                Err(e) if e.kind() == ErrorKind::NotFound => return,
                Err(e)
                    if Instant::now() < deadline
                        && e.raw_os_error() == Some(Errno::EBUSY as i32) =>
                {
                    sleep(Duration::from_millis(20));
                }
                Err(e) => {
                    eprintln!("cleanup: cannot remove {}: {e}", self.dir.display());
                    return;
                }
            }
        }
    }
}

fn policy(json: &str) -> DevicePolicy {
    let list: Vec<LinuxDeviceCgroup> = serde_json::from_str(json).expect("device list json");
    device_policy(&list).expect("device policy")
}

const SCRIPT: &str = "head -c 1 /dev/zero | wc -c | grep -qx 1 && echo zero-ok; \
                      echo x > /dev/null && echo null-ok || echo null-denied";

#[test]
fn device_program_denies_replaces_and_is_freed_with_the_cgroup() {
    let Some(root) = cgroup2_root() else {
        return;
    };
    let mut cgroup = TestCgroup::new(&root);

    // Deny all; allow /dev/null and /dev/zero; then deny /dev/null again
    // (the last matching rule wins).
    let strict = policy(
        r#"[{"allow": false, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 5, "access": "rwm"},
            {"allow": false, "type": "c", "major": 1, "minor": 3, "access": "rwm"}]"#,
    );
    install_device_program(&cgroup.dir, &strict).expect("install strict program");
    let first = cgroup.programs();
    assert_eq!(
        first.len(),
        1,
        "programs after the first install: {first:?}"
    );

    let (out, err) = cgroup.run(SCRIPT);
    assert_eq!(out, "zero-ok\nnull-denied\n", "stderr: {err}");
    assert!(err.contains("Operation not permitted"), "stderr: {err}");

    // Updating the limits replaces the program: /dev/null is writable again
    // and only the new program stays attached.
    install_device_program(&cgroup.dir, &policy(r#"[{"allow": true}]"#))
        .expect("install allow-all program");
    let second = cgroup.programs();
    assert_eq!(second.len(), 1, "programs after replacing: {second:?}");
    assert_ne!(second, first);
    let (out, err) = cgroup.run(SCRIPT);
    assert_eq!(out, "zero-ok\nnull-ok\n", "stderr: {err}");

    // Installing again on the same cgroup still leaves exactly one program.
    install_device_program(&cgroup.dir, &strict).expect("install strict program again");
    let third = cgroup.programs();
    assert_eq!(
        third.len(),
        1,
        "programs after the third install: {third:?}"
    );
    let (out, _) = cgroup.run(SCRIPT);
    assert_eq!(out, "zero-ok\nnull-denied\n");

    // The detached programs are gone already; the attached one goes with the cgroup.
    drop(cgroup);
    for id in first.into_iter().chain(second).chain(third) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match open_program_by_id(id) {
                Err(BpfError::OpenById {
                    errno: Errno::ENOENT,
                    ..
                }) => break,
                Ok(_) if Instant::now() < deadline => sleep(Duration::from_millis(50)),
                other => panic!("program {id} still loaded: {other:?}"),
            }
        }
    }
}

/// The kernel's verifier accepts every shape of program the generator emits.
#[test]
fn kernel_verifier_accepts_generated_programs() {
    if cgroup2_root().is_none() {
        return;
    }
    for json in [
        "[]",
        r#"[{"allow": true}]"#,
        DOCKER_DEFAULT,
        r#"[{"allow": true}, {"allow": false, "type": "b", "major": 8, "access": "w"},
            {"allow": false, "type": "c", "major": 4294967295, "minor": 2147483648, "access": "rm"}]"#,
    ] {
        let program = device_program(&policy(json));
        if let Err(e) = load_cgroup_device_program(&program, DEVICE_PROGRAM_LICENSE) {
            panic!("{json}: {e}");
        }
    }
}

const DOCKER_DEFAULT: &str = r#"[
    {"allow": false, "access": "rwm"},
    {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
    {"allow": true, "type": "c", "major": 1, "minor": 5, "access": "rwm"},
    {"allow": true, "type": "c", "major": 1, "minor": 7, "access": "rwm"},
    {"allow": true, "type": "c", "major": 1, "minor": 8, "access": "rwm"},
    {"allow": true, "type": "c", "major": 1, "minor": 9, "access": "rwm"},
    {"allow": true, "type": "c", "major": 5, "minor": 0, "access": "rwm"},
    {"allow": true, "type": "c", "major": 5, "minor": 1, "access": "rwm"},
    {"allow": true, "type": "c", "major": 5, "minor": 2, "access": "rwm"},
    {"allow": true, "type": "c", "major": 136, "access": "rwm"},
    {"allow": true, "type": "c", "access": "m"},
    {"allow": true, "type": "b", "access": "m"}
]"#;

fn resources(devices: &str) -> LinuxResources {
    serde_json::from_str(&format!(r#"{{"devices": {devices}}}"#)).expect("resources json")
}

/// On a pure cgroup2 layout `Cgroup::apply` enforces linux.resources.devices
/// with a device program (here the host's cgroup2 hierarchy seen alone).
#[test]
fn apply_on_a_cgroup2_only_layout_attaches_the_program() {
    let Some(root) = cgroup2_root() else {
        return;
    };
    let host = detect().expect("detect");
    let controllers = host.v2.map(|h| h.controllers).unwrap_or_default();
    let layout = Layout {
        mode: Mode::V2,
        v1: Vec::new(),
        v2: Some(V2Hierarchy {
            controllers,
            mount_point: root.clone(),
            mount_root: PathBuf::from("/"),
            own_cgroup: PathBuf::from("/"),
        }),
    };
    let name = format!("/berth-devtest-apply-{}", std::process::id());
    let cgroup = Cgroup::new(&layout, Some(&name), "apply").expect("resolve cgroup");
    assert!(cgroup.needs_device_program());
    let mut guard = CgroupGuard {
        cgroup,
        pids: Vec::new(),
    };
    guard.cgroup.create().expect("create");
    let dir = guard.cgroup.paths()[""].clone();
    let deny_null = r#"[{"allow": true}, {"allow": false, "type": "c", "major": 1, "minor": 3}]"#;
    guard
        .cgroup
        .apply(&resources(deny_null))
        .expect("apply devices");
    assert_eq!(programs(&dir).len(), 1);
    let (out, err) = run_in(&dir, SCRIPT, &mut guard.pids);
    assert_eq!(out, "zero-ok\nnull-denied\n", "stderr: {err}");

    // An update replaces the program instead of stacking another one.
    guard
        .cgroup
        .apply(&resources(r#"[{"allow": true}]"#))
        .expect("apply update");
    assert_eq!(programs(&dir).len(), 1);
    let (out, err) = run_in(&dir, SCRIPT, &mut guard.pids);
    assert_eq!(out, "zero-ok\nnull-ok\n", "stderr: {err}");

    // A resources update without devices leaves the program alone.
    guard
        .cgroup
        .apply(&LinuxResources::default())
        .expect("apply nothing");
    assert_eq!(programs(&dir).len(), 1);
}

/// On a hybrid host `apply` writes the v1 devices cgroup; the runtime may
/// add the same policy as a program on the cgroup2 side.
#[test]
fn hybrid_cgroup_takes_a_program_on_its_cgroup2_dir() {
    if cgroup2_root().is_none() {
        return;
    }
    let layout = detect().expect("detect");
    if layout.mode != Mode::Hybrid {
        eprintln!("skipped: not a hybrid host");
        return;
    }
    let name = format!("/berth-devtest-hybrid-{}", std::process::id());
    let guard = CgroupGuard {
        cgroup: Cgroup::new(&layout, Some(&name), "hybrid").expect("resolve cgroup"),
        pids: Vec::new(),
    };
    guard.cgroup.create().expect("create");
    guard
        .cgroup
        .apply_device_program(&policy(DOCKER_DEFAULT))
        .expect("apply device program");
    assert_eq!(programs(&guard.cgroup.paths()[""]).len(), 1);
}
