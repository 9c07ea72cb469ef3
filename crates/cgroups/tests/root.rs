//! Root tests against the host's real cgroups. Each test makes its own
//! cgroup under a unique name and a guard removes it (and kills its child)
//! even when an assertion fails.

use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicU32, Ordering};

use berth_cgroups::{detect, Cgroup, Layout};
use oci_spec::runtime::LinuxResources;

static NEXT: AtomicU32 = AtomicU32::new(0);

fn host_has_v1_memory() -> bool {
    if Path::new("/sys/fs/cgroup/memory").exists() {
        return true;
    }
    eprintln!(
        "skipped: /sys/fs/cgroup/memory does not exist (these tests target a v1/hybrid host)"
    );
    false
}

fn unique_name() -> String {
    format!(
        "/berth-test-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    )
}

/// Owns a test cgroup and the child in it; cleans both up on drop.
struct Guard {
    cgroup: Cgroup,
    child: Option<Child>,
}

impl Guard {
    fn new(layout: &Layout, path: Option<&str>, id: &str) -> Guard {
        let cgroup = Cgroup::new(layout, path, id).expect("resolve cgroup");
        Guard {
            cgroup,
            child: None,
        }
    }

    fn spawn_sleep(&mut self) -> i32 {
        let child = Command::new("sleep")
            .arg("300")
            .spawn()
            .expect("spawn sleep");
        let pid = child.id() as i32;
        self.child = Some(child);
        pid
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.cgroup.thaw();
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Err(e) = self.cgroup.delete() {
            eprintln!("cleanup failed: {e}");
        }
    }
}

fn resources(json: &str) -> LinuxResources {
    serde_json::from_str(json).expect("resources json")
}

fn read(path: &Path) -> String {
    fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .trim()
        .to_owned()
}

/// The one-letter state in /proc/<pid>/stat.
fn process_state(pid: i32) -> char {
    let stat = read(&Path::new("/proc").join(pid.to_string()).join("stat"));
    let after_comm = stat.rsplit_once(')').expect("stat has comm").1;
    after_comm.trim_start().chars().next().expect("state")
}

/// Whether the process used CPU time between two samples.
fn cpu_ticks(pid: i32) -> u64 {
    let stat = read(&Path::new("/proc").join(pid.to_string()).join("stat"));
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .expect("comm")
        .1
        .split_whitespace()
        .collect();
    // utime and stime are fields 14 and 15; after the comm they are at 11 and 12.
    fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime")
}

#[test]
fn lifecycle_limits_processes_freeze_kill_delete() {
    if !host_has_v1_memory() {
        return;
    }
    let layout = detect().expect("detect");
    let name = unique_name();
    let mut guard = Guard::new(&layout, Some(&name), "lifecycle");
    let cg = guard.cgroup.clone();
    cg.create().expect("create");
    let paths = cg.paths();
    for dir in paths.values() {
        assert!(dir.is_dir(), "{} was not created", dir.display());
    }

    cg.apply(&resources(
        r#"{"memory": {"limit": 33554432}, "pids": {"limit": 10}, "cpu": {"shares": 512}}"#,
    ))
    .expect("apply");
    assert_eq!(
        read(&paths["memory"].join("memory.limit_in_bytes")),
        "33554432"
    );
    assert_eq!(read(&paths["pids"].join("pids.max")), "10");
    assert_eq!(read(&paths["cpu"].join("cpu.shares")), "512");
    // A new cpuset got its cpus and mems from the parent.
    assert!(!read(&paths["cpuset"].join("cpuset.cpus")).is_empty());
    assert!(!read(&paths["cpuset"].join("cpuset.mems")).is_empty());

    // A busy loop, so freezing is visible as CPU time that stops growing.
    let child = Command::new("sh")
        .args(["-c", "while :; do :; done"])
        .spawn()
        .expect("spawn sh");
    let pid = child.id() as i32;
    guard.child = Some(child);
    cg.add_process(pid).expect("add_process");
    for dir in paths.values() {
        let procs = read(&dir.join("cgroup.procs"));
        assert!(
            procs.lines().any(|l| l == pid.to_string()),
            "{pid} not in {}",
            dir.display()
        );
    }
    assert_eq!(cg.pids().expect("pids"), vec![pid]);

    let stats = cg.stats().expect("stats");
    assert_eq!(stats.pids.current, 1);
    assert_eq!(stats.pids.limit, 10);
    assert_eq!(stats.memory.usage.limit, 33554432);
    let json = serde_json::to_value(&stats).expect("serialize");
    assert_eq!(json["pids"]["limit"], 10);
    assert!(json["memory"]["raw"].is_object());
    assert!(json["cpu"]["usage"].is_object());

    cg.freeze().expect("freeze");
    assert!(cg.is_frozen().expect("is_frozen"));
    if let Some(freezer) = paths.get("freezer") {
        assert_eq!(read(&freezer.join("freezer.state")), "FROZEN");
    }
    let before = cpu_ticks(pid);
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(cpu_ticks(pid), before, "a frozen process kept running");
    cg.thaw().expect("thaw");
    assert!(!cg.is_frozen().expect("is_frozen"));
    let before = cpu_ticks(pid);
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(cpu_ticks(pid) > before, "a thawed process does not run");
    assert_eq!(process_state(pid), 'R');

    cg.kill_all(libc_sigkill()).expect("kill_all");
    let status = guard.child.take().expect("child").wait().expect("wait");
    assert_eq!(status.signal(), Some(libc_sigkill()));
    assert!(cg.pids().expect("pids").is_empty());

    cg.delete().expect("delete");
    for dir in paths.values() {
        assert!(!dir.exists(), "{} is left", dir.display());
    }
    cg.delete().expect("deleting twice is fine");
}

fn libc_sigkill() -> i32 {
    nix::sys::signal::Signal::SIGKILL as i32
}

#[test]
fn kill_all_with_sigterm_signals_each_process() {
    if !host_has_v1_memory() {
        return;
    }
    let layout = detect().expect("detect");
    let mut guard = Guard::new(&layout, Some(&unique_name()), "term");
    let cg = guard.cgroup.clone();
    cg.create().expect("create");
    let pid = guard.spawn_sleep();
    cg.add_process(pid).expect("add_process");
    cg.kill_all(nix::sys::signal::Signal::SIGTERM as i32)
        .expect("kill_all");
    let status = guard.child.take().expect("child").wait().expect("wait");
    assert_eq!(
        status.signal(),
        Some(nix::sys::signal::Signal::SIGTERM as i32)
    );
    assert!(
        !cg.is_frozen().expect("is_frozen"),
        "kill_all left the cgroup frozen"
    );
}

#[test]
fn memory_and_swap_raise_and_lower_in_a_working_order() {
    if !host_has_v1_memory() {
        return;
    }
    let layout = detect().expect("detect");
    let guard = Guard::new(&layout, Some(&unique_name()), "swap");
    let cg = &guard.cgroup;
    cg.create().expect("create");
    let dir = cg.paths()["memory"].clone();
    if !dir.join("memory.memsw.limit_in_bytes").exists() {
        eprintln!("skipped: no swap accounting (memory.memsw.limit_in_bytes)");
        return;
    }
    let set = |limit: i64, swap: i64| {
        cg.apply(&resources(&format!(
            r#"{{"memory": {{"limit": {limit}, "swap": {swap}}}}}"#
        )))
        .unwrap_or_else(|e| panic!("limit {limit} swap {swap}: {e}"));
        assert_eq!(read(&dir.join("memory.limit_in_bytes")), limit.to_string());
        assert_eq!(
            read(&dir.join("memory.memsw.limit_in_bytes")),
            swap.to_string()
        );
    };
    set(64 << 20, 128 << 20);
    // Raising both past the old memsw only works memsw first.
    set(256 << 20, 512 << 20);
    // Lowering both below the old memory limit only works memory first.
    set(32 << 20, 48 << 20);
}

#[test]
fn device_rules_reach_the_v1_devices_cgroup() {
    if !host_has_v1_memory() {
        return;
    }
    let layout = detect().expect("detect");
    let guard = Guard::new(&layout, Some(&unique_name()), "devices");
    let cg = &guard.cgroup;
    cg.create().expect("create");
    let Some(dir) = cg.paths().get("devices").cloned() else {
        eprintln!("skipped: no v1 devices hierarchy");
        return;
    };
    cg.apply(&resources(
        r#"{"devices": [
            {"allow": false, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
            {"allow": true, "type": "c", "major": 136, "access": "rw"}
        ]}"#,
    ))
    .expect("apply devices");
    let list = read(&dir.join("devices.list"));
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines, vec!["c 1:3 rwm", "c 136:* rw"]);
}

#[test]
fn hugetlb_limit_goes_where_the_host_has_the_controller() {
    if !host_has_v1_memory() {
        return;
    }
    let layout = detect().expect("detect");
    let guard = Guard::new(&layout, Some(&unique_name()), "hugetlb");
    let cg = &guard.cgroup;
    cg.create().expect("create");
    let dir = match (layout.v1_hierarchy("hugetlb"), cg.paths().get("")) {
        (Some(_), _) => cg.paths()["hugetlb"].clone(),
        (None, Some(unified))
            if layout
                .v2
                .as_ref()
                .is_some_and(|v| v.controllers.iter().any(|c| c == "hugetlb")) =>
        {
            unified.clone()
        }
        _ => {
            eprintln!("skipped: no hugetlb controller");
            return;
        }
    };
    let v1 = layout.v1_hierarchy("hugetlb").is_some();
    let file = if v1 {
        "hugetlb.2MB.limit_in_bytes"
    } else {
        "hugetlb.2MB.max"
    };
    if !dir.join(file).exists() {
        eprintln!(
            "skipped: {} missing (no 2MB pages)",
            dir.join(file).display()
        );
        return;
    }
    cg.apply(&resources(
        r#"{"hugepageLimits": [{"pageSize": "2MB", "limit": 8388608}]}"#,
    ))
    .expect("apply hugetlb");
    assert_eq!(read(&dir.join(file)), "8388608");
    let stats = cg.stats().expect("stats");
    assert!(stats.hugetlb.contains_key("2MB"), "{:?}", stats.hugetlb);
}

#[test]
fn relative_path_lands_under_own_cgroup() {
    if !host_has_v1_memory() {
        return;
    }
    let layout = detect().expect("detect");
    let id = format!("berth-test-rel-{}", std::process::id());
    let guard = Guard::new(&layout, None, &id);
    let cg = &guard.cgroup;
    let memory = layout.v1_hierarchy("memory").expect("memory hierarchy");
    let own = memory.own_cgroup.strip_prefix("/").expect("absolute");
    assert_eq!(cg.paths()["memory"], memory.mount_point.join(own).join(&id));
    cg.create().expect("create");
    assert!(cg.paths()["memory"].is_dir());
}

#[test]
fn bad_limit_is_refused_naming_file_and_value() {
    if !host_has_v1_memory() {
        return;
    }
    let layout = detect().expect("detect");
    let guard = Guard::new(&layout, Some(&unique_name()), "bad");
    let cg = &guard.cgroup;
    cg.create().expect("create");
    let err = cg
        .apply(&resources(r#"{"cpu": {"cpus": "999"}}"#))
        .expect_err("cpu 999 does not exist");
    let msg = err.to_string();
    assert!(msg.contains("cpuset.cpus") && msg.contains("999"), "{msg}");
}

/// Kills and reaps a forked pid when dropped.
struct Reap(nix::unistd::Pid);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(self.0, nix::sys::signal::Signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(self.0, None);
    }
}

#[test]
fn a_child_is_born_in_the_cgroup_and_joins_v1_itself() {
    if !host_has_v1_memory() {
        return;
    }
    let layout = detect().expect("layout");
    let name = unique_name();
    let guard = Guard::new(&layout, Some(&name), "selfjoin");
    guard.cgroup.create().expect("create");
    let join = guard.cgroup.self_join().expect("self_join");
    let forked = match join.v2_dir() {
        Some(dir) => berth_sys::process::fork_into_cgroup(dir).expect("clone3 into the cgroup"),
        None => berth_sys::process::fork().expect("fork"),
    };
    let pid = match forked {
        berth_sys::process::Forked::Child => {
            // Only raw system calls here: the test process has threads.
            if join.join_v1().is_err() {
                std::process::exit(1);
            }
            loop {
                nix::unistd::pause();
            }
        }
        berth_sys::process::Forked::Parent(pid) => pid,
    };
    let reap = Reap(pid);
    // Every line of /proc/<pid>/cgroup names the test cgroup once the
    // child wrote "0" to each v1 `tasks` file; cgroup2 from its birth.
    let inside = || {
        let text = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
        let ours = lines.iter().filter(|l| l.ends_with(&name)).count();
        (ours, lines.len(), text)
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while inside().0 < inside().1 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let (ours, all, text) = inside();
    assert!(all > 1, "{text}");
    assert_eq!(ours, all, "{text}");
    assert_eq!(guard.cgroup.pids().expect("pids"), vec![pid.as_raw()]);
    drop(reap);
}
