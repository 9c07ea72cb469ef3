//! Unit tests on fake cgroup trees in a temporary directory: layouts are
//! parsed from made-up mountinfo text whose mount points live there.

use std::fs;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxResources};
use tempfile::TempDir;

use crate::resources::Write;
use crate::*;

const HYBRID_CGROUP: &str = "9:name=systemd:/\n8:pids:/\n7:blkio:/\n6:freezer:/\n\
5:devices:/\n4:memory:/process_api/abc\n3:cpuset:/\n2:cpuacct:/\n1:cpu:/\n0::/svc/runner\n";

fn mount_line(id: u32, mount_point: &Path, fstype: &str, options: &str) -> String {
    format!(
        "{id} 31 0:{id} / {} rw,relatime - {fstype} {fstype} {options}\n",
        mount_point.display()
    )
}

/// This host's shape: separate cpu and cpuacct, name=systemd, and hugetlb
/// only on the cgroup2 side.
fn fake_hybrid() -> (TempDir, Layout) {
    let tmp = TempDir::new().expect("tempdir");
    let root = tmp.path();
    let mut mountinfo = String::from("31 23 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n");
    let v1 = [
        ("cpu", "rw,cpu"),
        ("cpuacct", "rw,cpuacct"),
        ("cpuset", "rw,cpuset"),
        ("memory", "rw,memory"),
        ("devices", "rw,devices"),
        ("freezer", "rw,freezer"),
        ("blkio", "rw,blkio"),
        ("pids", "rw,pids"),
        ("systemd", "rw,xattr,release_agent=/x,name=systemd"),
    ];
    for (i, (dir, options)) in v1.iter().enumerate() {
        fs::create_dir(root.join(dir)).expect("mkdir");
        mountinfo.push_str(&mount_line(
            32 + i as u32,
            &root.join(dir),
            "cgroup",
            options,
        ));
    }
    fs::create_dir(root.join("unified")).expect("mkdir");
    fs::write(root.join("unified/cgroup.controllers"), "hugetlb\n").expect("write");
    mountinfo.push_str(&mount_line(41, &root.join("unified"), "cgroup2", "rw"));
    let layout = Layout::parse(&mountinfo, HYBRID_CGROUP).expect("parse");
    (tmp, layout)
}

fn fake_v2() -> (TempDir, Layout) {
    let tmp = TempDir::new().expect("tempdir");
    let root = tmp.path().join("cgroup");
    fs::create_dir(&root).expect("mkdir");
    fs::write(
        root.join("cgroup.controllers"),
        "cpuset cpu io memory hugetlb pids rdma\n",
    )
    .expect("write");
    let mountinfo = mount_line(30, &root, "cgroup2", "rw,nsdelegate");
    let layout = Layout::parse(&mountinfo, "0::/user.slice/session-1.scope\n").expect("parse");
    (tmp, layout)
}

fn resources(json: &str) -> LinuxResources {
    serde_json::from_str(json).expect("resources json")
}

fn put(dir: &Path, file: &str, value: &str) {
    fs::create_dir_all(dir).expect("mkdir");
    fs::write(dir.join(file), value).expect("write");
}

fn get(dir: &Path, file: &str) -> String {
    fs::read_to_string(dir.join(file))
        .expect("read")
        .trim()
        .to_owned()
}

/// `(file name, value)` of each planned write, in order.
fn planned(cg: &Cgroup, r: &LinuxResources) -> Vec<(String, String)> {
    cg.plan(r)
        .expect("plan")
        .into_iter()
        .map(|Write { path, value, .. }| {
            let name = path
                .file_name()
                .expect("file")
                .to_string_lossy()
                .into_owned();
            (name, value)
        })
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[test]
fn hybrid_layout_from_mountinfo() {
    let (tmp, layout) = fake_hybrid();
    assert_eq!(layout.mode, Mode::Hybrid);
    assert_eq!(layout.v1.len(), 9);
    assert_eq!(
        layout.v1_hierarchy("cpu").expect("cpu").controllers,
        ["cpu"]
    );
    assert_eq!(
        layout.v1_hierarchy("cpuacct").expect("cpuacct").controllers,
        ["cpuacct"]
    );
    let systemd = layout.v1_hierarchy("name=systemd").expect("systemd");
    assert_eq!(systemd.mount_point, tmp.path().join("systemd"));
    let memory = layout.v1_hierarchy("memory").expect("memory");
    assert_eq!(memory.own_cgroup, PathBuf::from("/process_api/abc"));
    let v2 = layout.v2.as_ref().expect("v2");
    assert_eq!(v2.controllers, ["hugetlb"]);
    assert_eq!(v2.own_cgroup, PathBuf::from("/svc/runner"));
}

#[test]
fn pure_v1_with_combined_cpu_cpuacct_and_pure_v2() {
    let mountinfo = "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n\
                     35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n";
    let layout = Layout::parse(mountinfo, "2:cpu,cpuacct:/a\n1:memory:/b\n").expect("parse");
    assert_eq!(layout.mode, Mode::V1);
    assert!(layout.v2.is_none());
    let cpu = layout.v1_hierarchy("cpuacct").expect("cpuacct");
    assert_eq!(cpu.controllers, ["cpu", "cpuacct"]);
    assert_eq!(cpu.own_cgroup, PathBuf::from("/a"));

    let (_tmp, v2) = fake_v2();
    assert_eq!(v2.mode, Mode::V2);
    assert!(v2.v1.is_empty());
    assert!(v2
        .v2
        .expect("v2")
        .controllers
        .contains(&"memory".to_owned()));
}

#[test]
fn mountinfo_octal_escapes_and_garbage() {
    let line = "32 31 0:29 / /sys/fs/cgroup/my\\040cpu rw - cgroup cgroup rw,cpu\n";
    let layout = Layout::parse(line, "1:cpu:/\n").expect("parse");
    assert_eq!(
        layout.v1[0].mount_point,
        PathBuf::from("/sys/fs/cgroup/my cpu")
    );
    assert!(matches!(
        Layout::parse("nonsense\n", ""),
        Err(Error::Parse { .. })
    ));
    assert!(matches!(
        Layout::parse("1 2 0:1 / /proc rw - proc proc rw\n", ""),
        Err(Error::NoCgroupMounts { .. })
    ));
}

#[test]
fn cgroups_path_absolute_relative_and_empty() {
    let (tmp, layout) = fake_hybrid();
    let root = tmp.path();

    let abs = Cgroup::new(&layout, Some("/docker/abc"), "abc").expect("abs");
    assert_eq!(abs.paths()["memory"], root.join("memory/docker/abc"));
    assert_eq!(abs.paths()["name=systemd"], root.join("systemd/docker/abc"));
    assert_eq!(abs.paths()[""], root.join("unified/docker/abc"));

    // Relative: below the own cgroup on v1, below its parent on cgroup2.
    let rel = Cgroup::new(&layout, Some("pod/abc"), "abc").expect("rel");
    assert_eq!(
        rel.paths()["memory"],
        root.join("memory/process_api/abc/pod/abc")
    );
    assert_eq!(rel.paths()["cpu"], root.join("cpu/pod/abc"));
    assert_eq!(rel.paths()[""], root.join("unified/svc/pod/abc"));

    // Empty or absent: runc's cgroupfs driver uses the container id, relative.
    for path in [None, Some("")] {
        let cg = Cgroup::new(&layout, path, "c1").expect("default");
        assert_eq!(cg.paths()["memory"], root.join("memory/process_api/abc/c1"));
        assert_eq!(cg.paths()["pids"], root.join("pids/c1"));
    }

    // `..` never climbs out of the hierarchy.
    let up = Cgroup::new(&layout, Some("/../../etc//x/."), "x").expect("clean");
    assert_eq!(up.paths()["memory"], root.join("memory/etc/x"));

    for bad in ["/", "/..", "system.slice:docker:abc"] {
        assert!(
            matches!(
                Cgroup::new(&layout, Some(bad), "x"),
                Err(Error::InvalidCgroupsPath { .. })
            ),
            "{bad} accepted"
        );
    }
    assert!(Cgroup::new(&layout, None, "a/b").is_err());
    assert!(Cgroup::new(&layout, None, "").is_err());
}

#[test]
fn create_makes_every_dir_and_fills_cpuset_from_parent() {
    let (tmp, layout) = fake_hybrid();
    put(&tmp.path().join("cpuset"), "cpuset.cpus", "0-3\n");
    put(&tmp.path().join("cpuset"), "cpuset.mems", "0\n");
    let cg = Cgroup::new(&layout, Some("/a/b"), "b").expect("new");
    cg.create().expect("create");
    for dir in cg.paths().values() {
        assert!(dir.is_dir(), "{}", dir.display());
    }
    assert_eq!(get(&tmp.path().join("cpuset/a"), "cpuset.cpus"), "0-3");
    assert_eq!(get(&tmp.path().join("cpuset/a/b"), "cpuset.mems"), "0");
    // cgroup2 ancestors hand their controllers down.
    assert_eq!(
        get(&tmp.path().join("unified"), "cgroup.subtree_control"),
        "+hugetlb"
    );
}

#[test]
fn v1_limits_file_names_and_values() {
    let (tmp, layout) = fake_hybrid();
    put(&tmp.path().join("cpuset"), "cpuset.cpus", "0-3\n");
    put(&tmp.path().join("cpuset"), "cpuset.mems", "0\n");
    let cg = Cgroup::new(&layout, Some("/c"), "c").expect("new");
    cg.create().expect("create");
    let paths = cg.paths();
    put(
        &paths["memory"],
        "memory.limit_in_bytes",
        "9223372036854771712\n",
    );
    put(
        &paths["memory"],
        "memory.memsw.limit_in_bytes",
        "9223372036854771712\n",
    );
    put(&paths["blkio"], "blkio.bfq.weight", "100\n");
    let r = resources(
        r#"{
        "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0-1", "mems": "0"},
        "memory": {"limit": 33554432, "reservation": 16777216, "kernel": 1000,
                   "swappiness": 10, "disableOOMKiller": true},
        "pids": {"limit": -1},
        "blockIO": {"weight": 300,
                    "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1048576}],
                    "throttleWriteIOPSDevice": [{"major": 8, "minor": 16, "rate": 100}]}
    }"#,
    );
    assert_eq!(
        planned(&cg, &r),
        pairs(&[
            ("cpuset.cpus", "0-1"),
            ("cpuset.mems", "0"),
            ("cpu.shares", "512"),
            ("cpu.cfs_period_us", "100000"),
            ("cpu.cfs_quota_us", "50000"),
            ("memory.limit_in_bytes", "33554432"),
            ("memory.soft_limit_in_bytes", "16777216"),
            ("memory.oom_control", "1"),
            ("memory.swappiness", "10"),
            ("pids.max", "max"),
            ("blkio.bfq.weight", "300"),
            ("blkio.throttle.read_bps_device", "8:0 1048576"),
            ("blkio.throttle.write_iops_device", "8:16 100"),
        ])
    );
    cg.apply(&r).expect("apply");
    assert_eq!(get(&paths["cpu"], "cpu.shares"), "512");
    assert_eq!(get(&paths["memory"], "memory.limit_in_bytes"), "33554432");
    assert_eq!(get(&paths["pids"], "pids.max"), "max");
    // kernel memory is ignored: no file written.
    assert!(!paths["memory"].join("memory.kmem.limit_in_bytes").exists());
}

#[test]
fn v1_memory_and_swap_order_follows_the_current_limit() {
    let (_tmp, layout) = fake_hybrid();
    let cg = Cgroup::new(&layout, Some("/c"), "c").expect("new");
    let dir = cg.paths()["memory"].clone();
    put(&dir, "memory.memsw.limit_in_bytes", "0");
    let r = resources(r#"{"memory": {"limit": 268435456, "swap": 536870912}}"#);

    // Raising (current 64M < new memsw): memsw first.
    put(&dir, "memory.limit_in_bytes", "67108864");
    assert_eq!(
        planned(&cg, &r),
        pairs(&[
            ("memory.memsw.limit_in_bytes", "536870912"),
            ("memory.limit_in_bytes", "268435456"),
        ])
    );
    // Lowering (current 1G >= new memsw): memory first.
    put(&dir, "memory.limit_in_bytes", "1073741824");
    assert_eq!(
        planned(&cg, &r),
        pairs(&[
            ("memory.limit_in_bytes", "268435456"),
            ("memory.memsw.limit_in_bytes", "536870912"),
        ])
    );
    // Unlimited memory with no swap setting makes swap unlimited too, memsw first.
    let r = resources(r#"{"memory": {"limit": -1}}"#);
    assert_eq!(
        planned(&cg, &r),
        pairs(&[
            ("memory.memsw.limit_in_bytes", "-1"),
            ("memory.limit_in_bytes", "-1"),
        ])
    );
}

#[test]
fn v1_devices_deny_all_then_rules_in_order() {
    let (_tmp, layout) = fake_hybrid();
    let cg = Cgroup::new(&layout, Some("/c"), "c").expect("new");
    let r = resources(
        r#"{"devices": [
        {"allow": false, "access": "rwm"},
        {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
        {"allow": true, "type": "c", "major": 136, "access": "rw"},
        {"allow": false, "type": "b", "major": 8, "minor": -1, "access": "m"}
    ]}"#,
    );
    assert_eq!(
        planned(&cg, &r),
        pairs(&[
            ("devices.deny", "a"),
            ("devices.deny", "a *:* rwm"),
            ("devices.allow", "c 1:3 rwm"),
            ("devices.allow", "c 136:* rw"),
            ("devices.deny", "b 8:* m"),
        ])
    );
    assert!(!cg.needs_device_program());
}

#[test]
fn hybrid_puts_hugetlb_on_cgroup2_and_refuses_unknown_sizes() {
    let (_tmp, layout) = fake_hybrid();
    let cg = Cgroup::new(&layout, Some("/c"), "c").expect("new");
    let unified = cg.paths()[""].clone();
    put(&unified, "hugetlb.2MB.max", "max");
    put(&unified, "hugetlb.2MB.rsvd.max", "max");
    let r = resources(r#"{"hugepageLimits": [{"pageSize": "2MB", "limit": 8388608}]}"#);
    assert_eq!(
        planned(&cg, &r),
        pairs(&[
            ("hugetlb.2MB.max", "8388608"),
            ("hugetlb.2MB.rsvd.max", "8388608")
        ])
    );
    let r = resources(r#"{"hugepageLimits": [{"pageSize": "64KB", "limit": 1}]}"#);
    assert!(matches!(cg.plan(&r), Err(Error::InvalidValue { .. })));
    let r = resources(r#"{"hugepageLimits": [{"pageSize": "2 MB", "limit": 1}]}"#);
    assert!(matches!(cg.plan(&r), Err(Error::InvalidValue { .. })));
}

#[test]
fn unified_map_needs_cgroup2_and_an_existing_file() {
    let mountinfo = "35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n";
    let v1 = Layout::parse(mountinfo, "1:memory:/\n").expect("parse");
    let cg = Cgroup::new(&v1, Some("/c"), "c").expect("new");
    let r = resources(r#"{"unified": {"memory.high": "1000000"}}"#);
    assert!(matches!(
        cg.plan(&r),
        Err(Error::ControllerUnavailable { .. })
    ));

    let (_tmp, layout) = fake_v2();
    let cg = Cgroup::new(&layout, Some("/c"), "c").expect("new");
    put(&cg.paths()[""], "memory.high", "max");
    assert_eq!(planned(&cg, &r), pairs(&[("memory.high", "1000000")]));
    for key in ["../memory.high", "memoryhigh", "io.latency"] {
        let r = resources(&format!(r#"{{"unified": {{"{key}": "1"}}}}"#));
        assert!(cg.plan(&r).is_err(), "{key} accepted");
    }
}

#[test]
fn v2_limits_file_names_and_conversions() {
    let (_tmp, layout) = fake_v2();
    let cg = Cgroup::new(&layout, Some("/c"), "c").expect("new");
    let dir = cg.paths()[""].clone();
    put(&dir, "memory.swap.max", "max");
    put(&dir, "hugetlb.1GB.max", "max");
    let r = resources(
        r#"{
        "cpu": {"shares": 1024, "quota": 50000, "period": 100000},
        "memory": {"limit": 33554432, "swap": 67108864, "reservation": 1048576,
                   "swappiness": 60, "disableOOMKiller": true},
        "pids": {"limit": 0},
        "blockIO": {"weight": 500, "leafWeight": 200,
                    "weightDevice": [{"major": 8, "minor": 0, "weight": 10}],
                    "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1000}],
                    "throttleWriteBpsDevice": [{"major": 8, "minor": 0, "rate": 2000}],
                    "throttleReadIOPSDevice": [{"major": 8, "minor": 0, "rate": 30}],
                    "throttleWriteIOPSDevice": [{"major": 8, "minor": 0, "rate": 40}]},
        "hugepageLimits": [{"pageSize": "1GB", "limit": -1}],
        "devices": [{"allow": false, "access": "rwm"}]
    }"#,
    );
    assert_eq!(
        planned(&cg, &r),
        pairs(&[
            ("cpu.weight", "39"),
            ("cpu.max", "50000 100000"),
            ("memory.swap.max", "33554432"),
            ("memory.max", "33554432"),
            ("memory.low", "1048576"),
            ("pids.max", "max"),
            ("io.weight", "4950"),
            ("io.weight", "8:0 1"),
            ("io.max", "8:0 rbps=1000"),
            ("io.max", "8:0 wbps=2000"),
            ("io.max", "8:0 riops=30"),
            ("io.max", "8:0 wiops=40"),
            ("hugetlb.1GB.max", "max"),
        ])
    );
    assert!(cg.needs_device_program());

    // Unlimited quota keeps the period; memory equal to memory+swap means no swap.
    let r = resources(
        r#"{"cpu": {"quota": -1, "period": 20000}, "memory": {"limit": 1048576, "swap": 1048576}}"#,
    );
    assert_eq!(
        planned(&cg, &r),
        pairs(&[
            ("cpu.max", "max 20000"),
            ("memory.swap.max", "0"),
            ("memory.max", "1048576"),
        ])
    );
    let r = resources(r#"{"cpu": {"realtimeRuntime": 1000}}"#);
    assert!(matches!(cg.plan(&r), Err(Error::InvalidValue { .. })));
}

#[test]
fn conversions_match_runc() {
    assert_eq!(shares_to_weight(0), 0);
    assert_eq!(shares_to_weight(2), 1);
    assert_eq!(shares_to_weight(1024), 39);
    assert_eq!(shares_to_weight(262144), 10000);
    assert_eq!(blkio_weight_to_io_weight(10).expect("10"), 1);
    assert_eq!(blkio_weight_to_io_weight(1000).expect("1000"), 10000);
    assert!(blkio_weight_to_io_weight(5).is_err());
    assert_eq!(swap_to_v2(0, -1).expect("unlimited"), -1);
    assert_eq!(swap_to_v2(-1, 100).expect("max"), -1);
    assert_eq!(swap_to_v2(0, 100).expect("unset"), 0);
    assert_eq!(swap_to_v2(300, 100).expect("diff"), 200);
    assert!(swap_to_v2(50, 100).is_err());
    assert!(swap_to_v2(50, 0).is_err());
}

#[test]
fn bad_values_are_refused_before_any_write() {
    let (_tmp, layout) = fake_hybrid();
    let cg = Cgroup::new(&layout, Some("/c"), "c").expect("new");
    let dir = cg.paths()["memory"].clone();
    put(&dir, "memory.limit_in_bytes", "9223372036854771712");
    let cases = [
        r#"{"memory": {"limit": 1048576, "swappiness": 200}}"#,
        r#"{"memory": {"limit": -5}}"#,
        r#"{"memory": {"limit": 2097152, "swap": 1048576}}"#,
        r#"{"memory": {"limit": 1048576}, "cpu": {"cpus": "0;rm"}}"#,
        r#"{"memory": {"limit": 1048576}, "devices": [{"allow": true, "access": "rwx"}]}"#,
        r#"{"memory": {"limit": 1048576}, "devices": [{"allow": true, "type": "p"}]}"#,
    ];
    for json in cases {
        let err = cg.apply(&resources(json)).expect_err(json);
        assert!(
            matches!(
                err,
                Error::InvalidValue { .. } | Error::InvalidDeviceRule { .. }
            ),
            "{json}: {err}"
        );
        assert_eq!(
            get(&dir, "memory.limit_in_bytes"),
            "9223372036854771712",
            "{json}"
        );
    }
}

#[test]
fn write_errors_name_file_and_value() {
    let (_tmp, layout) = fake_hybrid();
    let cg = Cgroup::new(&layout, Some("/missing"), "c").expect("new");
    let err = cg
        .apply(&resources(r#"{"pids": {"limit": 5}}"#))
        .expect_err("no dir");
    match err {
        Error::Write { path, value, .. } => {
            assert!(path.ends_with("missing/pids.max"), "{}", path.display());
            assert_eq!(value, "5");
        }
        other => panic!("unexpected {other}"),
    }
}

#[test]
fn device_rules_normalize_and_fold_into_a_policy() {
    let list: Vec<LinuxDeviceCgroup> = serde_json::from_str(
        r#"[
        {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
        {"allow": false},
        {"allow": true, "type": "u", "major": 5, "minor": -1},
        {"allow": true, "type": "a", "major": 7, "minor": 7, "access": "r"}
    ]"#,
    )
    .expect("json");
    let rules = device_rules(&list).expect("rules");
    let lines: Vec<String> = rules.iter().map(ToString::to_string).collect();
    assert_eq!(lines, ["c 1:3 rwm", "a *:* rwm", "c 5:* rwm", "a *:* r"]);
    let policy = device_policy(&list).expect("policy");
    assert!(!policy.default_allow);
    assert_eq!(policy.rules, rules[2..].to_vec());
    assert_eq!(
        policy.rules[0],
        DeviceRule {
            allow: true,
            kind: DeviceKind::Char,
            major: Some(5),
            minor: None,
            access: DeviceAccess::ALL,
        }
    );
    let privileged: Vec<LinuxDeviceCgroup> =
        serde_json::from_str(r#"[{"allow": false}, {"allow": true, "access": "rwm"}]"#)
            .expect("json");
    let policy = device_policy(&privileged).expect("policy");
    assert!(policy.default_allow);
    assert!(policy.rules.is_empty());
}

#[test]
fn container_view_hybrid_v1_combined_and_v2() {
    let (tmp, layout) = fake_hybrid();
    let cg = Cgroup::new(&layout, Some("/c"), "c").expect("new");
    let view = cg.container_view();
    let names: Vec<&str> = view.mounts.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids", "systemd",
            "unified"
        ]
    );
    assert!(view.symlinks.is_empty());
    let systemd = &view.mounts[8];
    assert_eq!(systemd.controllers, ["name=systemd"]);
    assert_eq!(systemd.host_dir, tmp.path().join("systemd/c"));
    assert_eq!(view.mounts[9].fstype, "cgroup2");

    let mountinfo = "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n\
                     33 31 0:30 / /sys/fs/cgroup/net_cls,net_prio rw - cgroup cgroup rw,net_cls,net_prio\n";
    let v1 = Layout::parse(mountinfo, "").expect("parse");
    let view = Cgroup::new(&v1, Some("/c"), "c")
        .expect("new")
        .container_view();
    assert_eq!(view.mounts[0].name, "cpu,cpuacct");
    assert_eq!(
        view.mounts[0].host_dir,
        PathBuf::from("/sys/fs/cgroup/cpu,cpuacct/c")
    );
    assert_eq!(
        view.symlinks,
        [
            ("cpu".to_owned(), "cpu,cpuacct".to_owned()),
            ("cpuacct".to_owned(), "cpu,cpuacct".to_owned()),
            ("net_cls".to_owned(), "net_cls,net_prio".to_owned()),
            ("net_prio".to_owned(), "net_cls,net_prio".to_owned()),
        ]
    );

    let (tmp, v2) = fake_v2();
    let view = Cgroup::new(&v2, Some("/c"), "c")
        .expect("new")
        .container_view();
    assert_eq!(view.mounts.len(), 1);
    assert_eq!(view.mounts[0].name, "");
    assert_eq!(view.mounts[0].host_dir, tmp.path().join("cgroup/c"));
}

#[test]
fn stats_v1_in_runc_shape() {
    let (_tmp, layout) = fake_hybrid();
    let cg = Cgroup::new(&layout, Some("/c"), "c").expect("new");
    let p = cg.paths();
    put(&p["cpuacct"], "cpuacct.usage", "5000\n");
    put(&p["cpuacct"], "cpuacct.usage_percpu", "3000 2000 \n");
    put(&p["cpuacct"], "cpuacct.stat", "user 2\nsystem 1\n");
    put(
        &p["cpu"],
        "cpu.stat",
        "nr_periods 10\nnr_throttled 2\nthrottled_time 999\n",
    );
    put(&p["memory"], "memory.usage_in_bytes", "4096\n");
    put(&p["memory"], "memory.limit_in_bytes", "33554432\n");
    put(&p["memory"], "memory.failcnt", "0\n");
    put(&p["memory"], "memory.stat", "cache 8192\nrss 4096\n");
    put(&p["pids"], "pids.current", "3\n");
    put(&p["pids"], "pids.max", "max\n");
    put(
        &p["blkio"],
        "blkio.throttle.io_service_bytes_recursive",
        "8:0 Read 100\n8:0 Write 20\nTotal 120\n",
    );
    put(&p[""], "hugetlb.2MB.max", "max\n");
    put(&p[""], "hugetlb.2MB.current", "2097152\n");
    put(&p[""], "hugetlb.2MB.events", "max 4\n");
    let stats = cg.stats().expect("stats");
    assert_eq!(stats.cpu.usage.user, 20_000_000);
    assert_eq!(stats.hugetlb["2MB"].failcnt, 4);
    let json = serde_json::to_value(&stats).expect("json");
    assert_eq!(
        json["cpu"],
        serde_json::json!({"usage": {"total": 5000, "percpu": [3000, 2000], "kernel": 10_000_000, "user": 20_000_000},
                           "throttling": {"periods": 10, "throttledPeriods": 2, "throttledTime": 999}})
    );
    assert_eq!(json["memory"]["cache"], 8192);
    assert_eq!(
        json["memory"]["usage"],
        serde_json::json!({"limit": 33554432, "usage": 4096, "failcnt": 0})
    );
    assert_eq!(json["memory"]["raw"]["rss"], 4096);
    assert_eq!(json["pids"], serde_json::json!({"current": 3}));
    assert_eq!(
        json["blkio"]["ioServiceBytesRecursive"],
        serde_json::json!([{"major": 8, "op": "Read", "value": 100}, {"major": 8, "op": "Write", "value": 20}])
    );
    assert_eq!(
        json["hugetlb"]["2MB"],
        serde_json::json!({"usage": 2097152, "failcnt": 4})
    );
}

#[test]
fn stats_v2_and_missing_cgroup() {
    let (_tmp, layout) = fake_v2();
    let cg = Cgroup::new(&layout, Some("/c"), "c").expect("new");
    assert!(matches!(cg.stats(), Err(Error::Read { .. })));
    let dir = cg.paths()[""].clone();
    put(
        &dir,
        "cpu.stat",
        "usage_usec 7\nuser_usec 4\nsystem_usec 3\nnr_periods 0\n",
    );
    put(&dir, "memory.current", "1000\n");
    put(&dir, "memory.max", "max\n");
    put(&dir, "memory.swap.current", "24\n");
    put(&dir, "memory.stat", "anon 10\nfile 20\n");
    put(&dir, "pids.current", "2\n");
    put(&dir, "pids.max", "10\n");
    put(
        &dir,
        "io.stat",
        "8:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=0 dios=0\n",
    );
    let stats = cg.stats().expect("stats");
    assert_eq!(stats.cpu.usage.total, 7000);
    assert_eq!(stats.cpu.usage.kernel, 3000);
    assert_eq!(stats.memory.usage.usage, 1000);
    assert_eq!(stats.memory.usage.limit, u64::MAX);
    assert_eq!(stats.memory.swap.usage, 1024);
    assert_eq!(stats.memory.cache, 20);
    assert_eq!((stats.pids.current, stats.pids.limit), (2, 10));
    assert_eq!(stats.blkio.io_serviced_recursive.len(), 2);
    assert_eq!(stats.blkio.io_service_bytes_recursive[1].value, 2);
}

#[test]
fn freeze_v2_and_paths_on_fake_tree() {
    let (_tmp, layout) = fake_v2();
    let cg = Cgroup::new(&layout, Some("/c"), "c").expect("new");
    let dir = cg.paths()[""].clone();
    // A fake tree that already reports frozen: freeze writes and returns.
    put(&dir, "cgroup.events", "populated 0\nfrozen 1\n");
    cg.freeze().expect("freeze");
    assert_eq!(get(&dir, "cgroup.freeze"), "1");
    assert!(cg.is_frozen().expect("is_frozen"));
    put(&dir, "cgroup.procs", "12\n40\n");
    put(&dir.join("sub"), "cgroup.procs", "7\n12\n");
    assert_eq!(cg.pids().expect("pids"), [7, 12, 40]);
    assert_eq!(cg.paths().len(), 1);
}
