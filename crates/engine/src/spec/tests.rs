//! build_spec against dockerd's defaults and each flag, from the request the
//! docker CLI 28 sends for `docker run busybox sh` (testdata/busybox_sh.json).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use bollard_stubs::models::{ContainerConfig, HostConfig, HostConfigCgroupnsModeEnum};
use oci_spec::runtime::{
    LinuxDeviceCgroup, LinuxDeviceType, LinuxNamespaceType, LinuxSeccompAction, Mount, Spec,
};

use super::*;

const ID: &str = "4f1c2e0d9b8a7c6e5f4d3c2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a29";
const CLI_REQUEST: &str = include_str!("testdata/busybox_sh.json");

const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n";
const GROUP: &str = "root:x:0:\nwheel:x:10:root\naudio:x:29:app\napp:x:1000:\n";

/// Docker's 14 defaults as a sorted list.
fn docker_defaults() -> Vec<String> {
    let mut caps = berth_sys::capabilities::default_docker_caps();
    caps.sort();
    caps
}

/// A host like this machine: every capability but CAP_SYS_RESOURCE, hybrid cgroups.
fn host() -> HostFacts {
    HostFacts {
        capabilities: capability_names_from_mask(0x1ff_feff_ffff),
        cgroup_mode: CgroupMode::Hybrid,
        thermal_throttle_paths: Vec::new(),
        kernel_version: (6, 1),
    }
}

struct Fixture {
    dir: tempfile::TempDir,
    config: ContainerConfig,
    host_config: HostConfig,
    host: HostFacts,
    namespaces: NamespacePaths,
    volumes: Vec<VolumeMount>,
    shm: Option<PathBuf>,
    init: Option<PathBuf>,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("rootfs/etc")).expect("rootfs");
        std::fs::create_dir_all(dir.path().join("container")).expect("container dir");
        std::fs::write(dir.path().join("rootfs/etc/passwd"), PASSWD).expect("passwd");
        std::fs::write(dir.path().join("rootfs/etc/group"), GROUP).expect("group");
        let mut v: serde_json::Value = serde_json::from_str(CLI_REQUEST).expect("fixture");
        let host_config = serde_json::from_value(v["HostConfig"].take()).expect("host config");
        let config = serde_json::from_value(v).expect("config");
        Fixture {
            dir,
            config,
            host_config,
            host: host(),
            namespaces: NamespacePaths::default(),
            volumes: Vec::new(),
            shm: None,
            init: None,
        }
    }

    fn rootfs(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }

    fn container_dir(&self) -> PathBuf {
        self.dir.path().join("container")
    }

    fn try_build(&self) -> Result<Spec, SpecError> {
        let rootfs = self.rootfs();
        let container_dir = self.container_dir();
        build_spec(&SpecInput {
            id: ID,
            config: &self.config,
            host_config: &self.host_config,
            rootfs: &rootfs,
            container_dir: &container_dir,
            shm_source: self.shm.as_deref(),
            cgroups_path: &format!("/berth/{ID}"),
            namespace_paths: &self.namespaces,
            volumes: &self.volumes,
            init: self.init.as_deref(),
            host: &self.host,
        })
    }

    fn build(&self) -> Spec {
        self.try_build().expect("spec")
    }

    fn with(f: impl FnOnce(&mut Fixture)) -> Spec {
        let mut fx = Fixture::new();
        f(&mut fx);
        fx.build()
    }
}

fn sorted_caps(set: &Option<oci_spec::runtime::Capabilities>) -> Vec<String> {
    let mut names: Vec<String> = set
        .iter()
        .flatten()
        .map(|c| {
            serde_json::to_value(c)
                .expect("cap")
                .as_str()
                .expect("name")
                .to_string()
        })
        .collect();
    names.sort();
    names
}

fn find_mount<'a>(spec: &'a Spec, dest: &str) -> Option<&'a Mount> {
    spec.mounts()
        .iter()
        .flatten()
        .find(|m| m.destination() == Path::new(dest))
}

fn options(spec: &Spec, dest: &str) -> Vec<String> {
    find_mount(spec, dest)
        .unwrap_or_else(|| panic!("no mount at {dest}"))
        .options()
        .clone()
        .unwrap_or_default()
}

fn namespaces(spec: &Spec) -> Vec<(LinuxNamespaceType, Option<PathBuf>)> {
    spec.linux()
        .as_ref()
        .and_then(|l| l.namespaces().clone())
        .unwrap_or_default()
        .iter()
        .map(|n| (n.typ(), n.path().clone()))
        .collect()
}

fn linux(spec: &Spec) -> &oci_spec::runtime::Linux {
    spec.linux().as_ref().expect("linux")
}

fn resources(spec: &Spec) -> &oci_spec::runtime::LinuxResources {
    linux(spec).resources().as_ref().expect("resources")
}

fn process(spec: &Spec) -> &oci_spec::runtime::Process {
    spec.process().as_ref().expect("process")
}

fn rule(r: &LinuxDeviceCgroup) -> String {
    let n = |v: Option<i64>| v.map_or("*".to_string(), |v| v.to_string());
    format!(
        "{} {} {}:{} {}",
        if r.allow() { "allow" } else { "deny" },
        r.typ().map_or("a".to_string(), |t| t.as_str().to_string()),
        n(r.major()),
        n(r.minor()),
        r.access().clone().unwrap_or_default()
    )
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn busybox_sh_gets_dockerds_defaults() {
    let spec = Fixture::new().build();
    let p = process(&spec);

    // Capabilities: the 14 defaults in bounding, effective and permitted, no
    // inheritable or ambient (CapEff 00000000a80425fb).
    let caps = p.capabilities().as_ref().expect("caps");
    assert_eq!(sorted_caps(caps.bounding()), docker_defaults());
    assert_eq!(sorted_caps(caps.effective()), docker_defaults());
    assert_eq!(sorted_caps(caps.permitted()), docker_defaults());
    assert!(caps.inheritable().is_none() && caps.ambient().is_none());
    let mask: u64 = caps
        .effective()
        .iter()
        .flatten()
        .map(|c| {
            let name = serde_json::to_value(c).expect("cap");
            let cap = berth_sys::capabilities::parse_capability(name.as_str().expect("str"))
                .expect("known");
            1u64 << cap.index()
        })
        .sum();
    assert_eq!(format!("{mask:016x}"), "00000000a80425fb");

    // Process.
    assert_eq!(p.args().clone().unwrap_or_default(), ["sh"]);
    assert_eq!(p.cwd(), Path::new("/"));
    assert_eq!(
        p.env().clone().unwrap_or_default(),
        [
            format!("PATH={DEFAULT_PATH_ENV}"),
            format!("HOSTNAME={}", &ID[..12])
        ]
    );
    assert_eq!(p.terminal(), Some(false));
    assert_eq!((p.user().uid(), p.user().gid()), (0, 0));
    assert_eq!(p.user().additional_gids().clone(), Some(vec![0, 10]));
    assert_eq!(p.oom_score_adj(), Some(0));
    assert_eq!(p.no_new_privileges(), None);
    assert!(p.rlimits().is_none());
    assert!(p.console_size().is_none());
    assert_eq!(spec.hostname().as_deref(), Some(&ID[..12]));

    // Mounts, with dockerd's options, then the /etc files.
    let mounts: Vec<(String, String, String, Vec<String>)> = spec
        .mounts()
        .iter()
        .flatten()
        .map(|m| {
            (
                m.destination().display().to_string(),
                m.typ().clone().unwrap_or_default(),
                m.source()
                    .as_ref()
                    .map(|s| s.display().to_string())
                    .unwrap_or_default(),
                m.options().clone().unwrap_or_default(),
            )
        })
        .collect();
    let expected: Vec<(&str, &str, &str, Vec<&str>)> = vec![
        ("/proc", "proc", "proc", vec!["nosuid", "noexec", "nodev"]),
        (
            "/dev",
            "tmpfs",
            "tmpfs",
            vec!["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        (
            "/dev/pts",
            "devpts",
            "devpts",
            vec![
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        (
            "/sys",
            "sysfs",
            "sysfs",
            vec!["nosuid", "noexec", "nodev", "ro"],
        ),
        (
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            vec!["ro", "nosuid", "noexec", "nodev"],
        ),
        (
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            vec!["nosuid", "noexec", "nodev"],
        ),
        (
            "/dev/shm",
            "tmpfs",
            "shm",
            vec!["nosuid", "noexec", "nodev", "mode=1777", "size=67108864"],
        ),
    ];
    for (i, (dest, typ, src, opts)) in expected.iter().enumerate() {
        assert_eq!(mounts[i].0, *dest);
        assert_eq!(mounts[i].1, *typ, "{dest}");
        assert_eq!(mounts[i].2, *src, "{dest}");
        assert_eq!(mounts[i].3, strings(opts), "{dest}");
    }
    let etc: Vec<&str> = mounts[7..].iter().map(|m| m.0.as_str()).collect();
    assert_eq!(etc, ["/etc/resolv.conf", "/etc/hostname", "/etc/hosts"]);
    for m in &mounts[7..] {
        assert_eq!(m.1, "bind");
        assert!(
            m.2.ends_with(&format!("container/{}", &m.0["/etc/".len()..])),
            "{m:?}"
        );
        assert_eq!(m.3, ["rbind", "rprivate"]);
    }
    assert_eq!(mounts.len(), 10);

    // Masked and read-only paths.
    let l = linux(&spec);
    assert_eq!(
        l.masked_paths().clone().unwrap_or_default(),
        strings(&[
            "/proc/asound",
            "/proc/acpi",
            "/proc/interrupts",
            "/proc/kcore",
            "/proc/keys",
            "/proc/latency_stats",
            "/proc/timer_list",
            "/proc/timer_stats",
            "/proc/sched_debug",
            "/proc/scsi",
            "/sys/firmware",
            "/sys/devices/virtual/powercap",
        ])
    );
    assert_eq!(
        l.readonly_paths().clone().unwrap_or_default(),
        strings(&[
            "/proc/bus",
            "/proc/fs",
            "/proc/irq",
            "/proc/sys",
            "/proc/sysrq-trigger"
        ])
    );

    // Namespaces: mount, network, uts, pid, ipc; no cgroup namespace on a
    // hybrid host, no user namespace.
    assert_eq!(
        namespaces(&spec),
        [
            (LinuxNamespaceType::Mount, None),
            (LinuxNamespaceType::Network, None),
            (LinuxNamespaceType::Uts, None),
            (LinuxNamespaceType::Pid, None),
            (LinuxNamespaceType::Ipc, None),
        ]
    );

    // Devices: none created beyond the runtime's defaults; the cgroup rules.
    assert!(l.devices().clone().unwrap_or_default().is_empty());
    let rules: Vec<String> = resources(&spec)
        .devices()
        .iter()
        .flatten()
        .map(rule)
        .collect();
    assert_eq!(
        rules,
        [
            "deny a *:* rwm",
            "allow c 1:5 rwm",
            "allow c 1:3 rwm",
            "allow c 1:9 rwm",
            "allow c 1:8 rwm",
            "allow c 5:0 rwm",
            "allow c 5:1 rwm",
            "deny c 10:229 rwm",
            "allow c *:* m",
            "allow b *:* m",
            "allow c 1:7 rwm",
            "allow c 5:2 rwm",
            "allow c 136:* rwm",
            "allow c 10:200 rwm",
        ]
    );

    // Resources: dockerd's empty blkio and OOM-killer flag, nothing else.
    let r = resources(&spec);
    let mem = r.memory().as_ref().expect("memory");
    assert_eq!(mem.disable_oom_killer(), Some(false));
    assert_eq!(
        (mem.limit(), mem.swap(), mem.swappiness()),
        (None, None, None)
    );
    assert!(r.cpu().is_none());
    assert!(r.pids().is_none());
    assert_eq!(r.block_io().clone(), Some(Default::default()));

    // Sysctls for a network namespace of its own.
    let sysctl = l.sysctl().clone().unwrap_or_default();
    assert_eq!(sysctl.len(), 2);
    assert_eq!(sysctl["net.ipv4.ping_group_range"], "0 2147483647");
    assert_eq!(sysctl["net.ipv4.ip_unprivileged_port_start"], "0");

    // Seccomp: Docker's default for the default capabilities.
    let seccomp = l.seccomp().as_ref().expect("seccomp");
    assert_eq!(seccomp.default_action(), LinuxSeccompAction::ScmpActErrno);
    assert_eq!(
        *seccomp,
        default_seccomp_profile(&berth_sys::capabilities::default_docker_caps())
    );

    assert_eq!(
        l.cgroups_path().as_deref(),
        Some(Path::new(&format!("/berth/{ID}")))
    );
    assert!(l.rootfs_propagation().is_none());
    assert_eq!(spec.root().as_ref().map(|r| r.readonly()), Some(None));
    assert!(spec.annotations().is_none());
}

#[test]
fn spec_round_trips_and_the_runtime_accepts_it() {
    let mut fx = Fixture::new();
    fx.host_config.binds = Some(vec!["/tmp:/data:ro".into()]);
    fx.host_config.cap_add = Some(vec!["SYS_ADMIN".into()]);
    fx.host_config.memory = Some(64 << 20);
    fx.config.tty = Some(true);
    let spec = fx.build();
    let json = serde_json::to_string(&spec).expect("serialize");
    let back: Spec = serde_json::from_str(&json).expect("deserialize");
    assert_eq!(back, spec);
    // The way the runtime reads it: from config.json, then its own checks.
    let bundle = fx.dir.path();
    std::fs::write(bundle.join("config.json"), &json).expect("config.json");
    let loaded = berth_runtime::config::load_bundle(bundle).expect("runtime accepts the spec");
    assert_eq!(
        loaded.rootfs,
        std::fs::canonicalize(fx.rootfs()).expect("canon")
    );
    // And its seccomp profile compiles to a filter.
    let seccomp = linux(&spec).seccomp().clone().expect("seccomp");
    let program = berth_sys::seccomp::compile(&seccomp).expect("compiles");
    assert!(program.allowed_syscall_count() > DEFAULT_SECCOMP_ALLOWED_SYSCALLS);
}

#[test]
fn privileged_gets_everything_the_host_has() {
    let spec = Fixture::with(|fx| fx.host_config.privileged = Some(true));
    let caps = process(&spec).capabilities().clone().expect("caps");
    let mut host = host().capabilities;
    host.sort();
    assert_eq!(sorted_caps(caps.bounding()), host);
    assert_eq!(sorted_caps(caps.effective()), host);
    assert!(!host.contains(&"CAP_SYS_RESOURCE".to_string()));
    let l = linux(&spec);
    assert!(l.seccomp().is_none());
    assert_eq!(l.masked_paths().clone(), Some(vec![]));
    assert_eq!(l.readonly_paths().clone(), Some(vec![]));
    assert_eq!(options(&spec, "/sys"), ["nosuid", "noexec", "nodev"]);
    assert_eq!(
        options(&spec, "/sys/fs/cgroup"),
        ["nosuid", "noexec", "nodev"]
    );
    let rules: Vec<String> = resources(&spec)
        .devices()
        .iter()
        .flatten()
        .map(rule)
        .collect();
    assert_eq!(rules, ["allow a *:* rwm"]);
    let devs = l.devices().clone().unwrap_or_default();
    assert!(devs.iter().any(|d| d.path() == Path::new("/dev/null")));
}

fn caps_with(add: &[&str], drop: &[&str]) -> Result<Vec<String>, SpecError> {
    let mut fx = Fixture::new();
    fx.host_config.cap_add = Some(strings(add));
    fx.host_config.cap_drop = Some(strings(drop));
    let spec = fx.try_build()?;
    let caps = process(&spec).capabilities().clone().expect("caps");
    Ok(sorted_caps(caps.bounding()))
}

#[test]
fn cap_add_and_drop() {
    let caps = caps_with(&["net_admin", "CAP_SYS_PTRACE"], &["chown", "Cap_Kill"]).expect("caps");
    assert!(caps.contains(&"CAP_NET_ADMIN".to_string()));
    assert!(caps.contains(&"CAP_SYS_PTRACE".to_string()));
    assert!(!caps.contains(&"CAP_CHOWN".to_string()));
    assert!(!caps.contains(&"CAP_KILL".to_string()));
    assert_eq!(caps.len(), 14);

    assert_eq!(
        caps_with(&["net_raw"], &["ALL"]).expect("drop all"),
        ["CAP_NET_RAW"]
    );
    let all = caps_with(&["all"], &["mknod"]).expect("add all");
    assert_eq!(all.len(), host().capabilities.len() - 1);
    assert!(!all.contains(&"CAP_MKNOD".to_string()));
    assert!(caps_with(&[], &["all"]).expect("none").is_empty());

    let err = caps_with(&["bogus"], &[]).expect_err("unknown").to_string();
    assert_eq!(err, "invalid CapAdd: unknown capability: \"CAP_BOGUS\"");
    let err = caps_with(&["SYS_RESOURCE"], &[])
        .expect_err("unavailable")
        .to_string();
    assert_eq!(
        err,
        "invalid CapAdd: capability not supported by your kernel or not available in the current environment: \"CAP_SYS_RESOURCE\""
    );
}

#[test]
fn cap_sys_admin_unlocks_mount_in_seccomp() {
    let spec = Fixture::with(|fx| fx.host_config.cap_add = Some(vec!["CAP_SYS_ADMIN".into()]));
    let seccomp = linux(&spec).seccomp().clone().expect("seccomp");
    let allowed: BTreeSet<String> = seccomp
        .syscalls()
        .iter()
        .flatten()
        .filter(|s| s.action() == LinuxSeccompAction::ScmpActAllow && s.args().is_none())
        .flat_map(|s| s.names().clone())
        .collect();
    for name in ["mount", "umount2", "unshare", "setns", "clone"] {
        assert!(allowed.contains(name), "{name}");
    }
    let spec =
        Fixture::with(|fx| fx.host_config.security_opt = Some(vec!["seccomp=unconfined".into()]));
    assert!(linux(&spec).seccomp().is_none());
}

#[test]
fn non_root_user_keeps_only_the_bounding_set() {
    let spec = Fixture::with(|fx| {
        fx.config.user = Some("app".into());
        fx.host_config.group_add = Some(vec!["wheel".into(), "4242".into()]);
    });
    let p = process(&spec);
    assert_eq!((p.user().uid(), p.user().gid()), (1000, 1000));
    assert_eq!(
        p.user().additional_gids().clone(),
        Some(vec![1000, 29, 10, 4242])
    );
    let caps = p.capabilities().clone().expect("caps");
    assert_eq!(sorted_caps(caps.bounding()), docker_defaults());
    assert!(caps.effective().is_none() && caps.permitted().is_none());

    let mut fx = Fixture::new();
    fx.config.user = Some("foo".into());
    assert_eq!(
        fx.try_build().expect_err("unknown user").to_string(),
        "unable to find user foo: no matching entries in passwd file"
    );
}

#[test]
fn symlinked_passwd_out_of_the_rootfs_is_not_read() {
    let mut fx = Fixture::new();
    let outside = fx.dir.path().join("host-passwd");
    std::fs::write(&outside, "foo:x:4321:4321::/:/bin/sh\n").expect("host file");
    std::fs::remove_file(fx.rootfs().join("etc/passwd")).expect("rm");
    std::os::unix::fs::symlink(&outside, fx.rootfs().join("etc/passwd")).expect("symlink");
    fx.config.user = Some("foo".into());
    assert_eq!(
        fx.try_build().expect_err("host user").to_string(),
        "unable to find user foo: no matching entries in passwd file"
    );
}

#[test]
fn resource_flags() {
    let spec = Fixture::with(|fx| {
        let h = &mut fx.host_config;
        h.memory = Some(64 << 20);
        h.memory_reservation = Some(32 << 20);
        h.memory_swappiness = Some(10);
        h.oom_kill_disable = Some(true);
        h.nano_cpus = Some(1_500_000_000);
        h.cpu_shares = Some(512);
        h.cpuset_cpus = Some("0-1".into());
        h.cpuset_mems = Some("0".into());
        h.pids_limit = Some(100);
        h.blkio_weight = Some(300);
        h.blkio_device_read_bps =
            serde_json::from_str(r#"[{"Path":"/dev/null","Rate":1048576}]"#).ok();
        h.blkio_weight_device = serde_json::from_str(r#"[{"Path":"/dev/zero","Weight":200}]"#).ok();
        h.ulimits = serde_json::from_str(
            r#"[{"Name":"nofile","Soft":100,"Hard":200},{"Name":"core","Soft":-1,"Hard":-1}]"#,
        )
        .ok();
        h.oom_score_adj = Some(-500);
    });
    let r = resources(&spec);
    let m = r.memory().as_ref().expect("memory");
    assert_eq!(m.limit(), Some(64 << 20));
    assert_eq!(m.swap(), Some(128 << 20), "default swap is twice the limit");
    assert_eq!(m.reservation(), Some(32 << 20));
    assert_eq!(m.swappiness(), Some(10));
    assert_eq!(m.disable_oom_killer(), Some(true));
    let c = r.cpu().as_ref().expect("cpu");
    assert_eq!((c.period(), c.quota()), (Some(100_000), Some(150_000)));
    assert_eq!(c.shares(), Some(512));
    assert_eq!(
        (c.cpus().as_deref(), c.mems().as_deref()),
        (Some("0-1"), Some("0"))
    );
    assert_eq!(r.pids().as_ref().map(|p| p.limit()), Some(100));
    let b = r.block_io().as_ref().expect("blkio");
    assert_eq!(b.weight(), Some(300));
    let bps = b.throttle_read_bps_device().clone().expect("bps");
    assert_eq!(
        (bps[0].major(), bps[0].minor(), bps[0].rate()),
        (1, 3, 1 << 20)
    );
    let w = b.weight_device().clone().expect("weight device");
    assert_eq!(
        (w[0].major(), w[0].minor(), w[0].weight()),
        (1, 5, Some(200))
    );
    let rl = process(&spec).rlimits().clone().expect("rlimits");
    assert_eq!(
        serde_json::to_value(&rl).expect("json"),
        serde_json::json!([
            {"type": "RLIMIT_NOFILE", "soft": 100, "hard": 200},
            {"type": "RLIMIT_CORE", "soft": u64::MAX, "hard": u64::MAX}
        ])
    );
    assert_eq!(process(&spec).oom_score_adj(), Some(-500));

    // --memory-swap -1: unlimited; explicit period/quota; pids -1 and 0: none.
    let spec = Fixture::with(|fx| {
        let h = &mut fx.host_config;
        h.memory = Some(64 << 20);
        h.memory_swap = Some(-1);
        h.cpu_period = Some(50_000);
        h.cpu_quota = Some(25_000);
        h.pids_limit = Some(-1);
    });
    let r = resources(&spec);
    assert_eq!(r.memory().as_ref().and_then(|m| m.swap()), None);
    let c = r.cpu().as_ref().expect("cpu");
    assert_eq!((c.period(), c.quota()), (Some(50_000), Some(25_000)));
    assert!(r.pids().is_none());

    let mut fx = Fixture::new();
    fx.host_config.blkio_device_write_iops =
        serde_json::from_str(r#"[{"Path":"/dev/nonexistent-disk","Rate":10}]"#).ok();
    assert_eq!(
        fx.try_build().expect_err("missing device").to_string(),
        "stat /dev/nonexistent-disk: No such file or directory"
    );
}

#[test]
fn namespace_modes() {
    // host pid/ipc/uts/net: those namespaces are not created.
    let spec = Fixture::with(|fx| {
        let h = &mut fx.host_config;
        h.pid_mode = Some("host".into());
        h.ipc_mode = Some("host".into());
        h.uts_mode = Some("host".into());
        h.network_mode = Some("host".into());
    });
    assert_eq!(namespaces(&spec), [(LinuxNamespaceType::Mount, None)]);
    assert!(spec.hostname().is_none());
    assert!(linux(&spec).sysctl().clone().unwrap_or_default().is_empty());
    let shm = find_mount(&spec, "/dev/shm").expect("host shm");
    assert_eq!(shm.source().as_deref(), Some(Path::new("/dev/shm")));
    assert_eq!(options(&spec, "/dev/shm"), ["rbind", "rprivate"]);

    // container:<id> joins by path.
    let spec = Fixture::with(|fx| {
        let h = &mut fx.host_config;
        h.pid_mode = Some("container:other".into());
        h.ipc_mode = Some("container:other".into());
        h.network_mode = Some("container:other".into());
        fx.namespaces = NamespacePaths {
            pid: Some("/proc/42/ns/pid".into()),
            ipc: Some("/proc/42/ns/ipc".into()),
            net: Some("/proc/42/ns/net".into()),
        };
        fx.shm = Some("/var/lib/berth/containers/other/mounts/shm".into());
    });
    assert_eq!(
        namespaces(&spec),
        [
            (LinuxNamespaceType::Mount, None),
            (LinuxNamespaceType::Network, Some("/proc/42/ns/net".into())),
            (LinuxNamespaceType::Uts, None),
            (LinuxNamespaceType::Pid, Some("/proc/42/ns/pid".into())),
            (LinuxNamespaceType::Ipc, Some("/proc/42/ns/ipc".into())),
        ]
    );
    assert!(!linux(&spec)
        .sysctl()
        .clone()
        .unwrap_or_default()
        .contains_key("net.ipv4.ping_group_range"));
    assert_eq!(
        find_mount(&spec, "/dev/shm").and_then(|m| m.source().clone()),
        Some("/var/lib/berth/containers/other/mounts/shm".into())
    );

    let mut fx = Fixture::new();
    fx.host_config.pid_mode = Some("container:other".into());
    assert_eq!(
        fx.try_build().expect_err("no path").to_string(),
        "cannot join the pid namespace of container other: its namespace path was not given"
    );

    // --ipc none: no /dev/shm; shareable with the caller's tmpfs.
    let spec = Fixture::with(|fx| fx.host_config.ipc_mode = Some("none".into()));
    assert!(find_mount(&spec, "/dev/shm").is_none());
    assert!(namespaces(&spec).contains(&(LinuxNamespaceType::Ipc, None)));
    let spec = Fixture::with(|fx| {
        fx.host_config.ipc_mode = Some("shareable".into());
        fx.shm = Some("/run/shm-x".into());
    });
    assert_eq!(
        find_mount(&spec, "/dev/shm").and_then(|m| m.source().clone()),
        Some("/run/shm-x".into())
    );
    // --shm-size on the private tmpfs.
    let spec = Fixture::with(|fx| fx.host_config.shm_size = Some(1 << 30));
    assert!(options(&spec, "/dev/shm").contains(&"size=1073741824".to_string()));

    // Network none: a namespace of its own.
    let spec = Fixture::with(|fx| fx.host_config.network_mode = Some("none".into()));
    assert!(namespaces(&spec).contains(&(LinuxNamespaceType::Network, None)));

    // cgroup namespaces: private on v2 by default, on request elsewhere.
    let spec = Fixture::with(|fx| fx.host.cgroup_mode = CgroupMode::V2);
    assert!(namespaces(&spec).contains(&(LinuxNamespaceType::Cgroup, None)));
    let spec = Fixture::with(|fx| {
        fx.host_config.cgroupns_mode = Some(HostConfigCgroupnsModeEnum::PRIVATE)
    });
    assert!(namespaces(&spec).contains(&(LinuxNamespaceType::Cgroup, None)));
    let spec = Fixture::with(|fx| {
        fx.host.cgroup_mode = CgroupMode::V2;
        fx.host_config.cgroupns_mode = Some(HostConfigCgroupnsModeEnum::HOST);
    });
    assert!(!namespaces(&spec)
        .iter()
        .any(|(t, _)| *t == LinuxNamespaceType::Cgroup));

    // --userns host is the default; nothing else is accepted.
    let spec = Fixture::with(|fx| fx.host_config.userns_mode = Some("host".into()));
    assert!(!namespaces(&spec)
        .iter()
        .any(|(t, _)| *t == LinuxNamespaceType::User));
}

#[test]
fn binds_tmpfs_and_read_only_root() {
    let mut fx = Fixture::new();
    let h = &mut fx.host_config;
    h.binds = Some(vec![
        "/tmp:/data:ro,rslave".into(),
        "/srv/a:/deep/er/path:z".into(),
        "cache:/var/cache".into(),
        "/run/x:/etc/hosts".into(),
    ]);
    h.mounts = serde_json::from_str(
        r#"[{"Type":"bind","Source":"/tmp","Target":"/b","ReadOnly":true,"BindOptions":{"Propagation":"shared"}},
            {"Type":"bind","Source":"/tmp","Target":"/nr","BindOptions":{"NonRecursive":true}},
            {"Type":"tmpfs","Target":"/t","TmpfsOptions":{"SizeBytes":1048576,"Mode":448}},
            {"Type":"volume","Source":"named","Target":"/named"}]"#,
    )
    .ok();
    h.tmpfs = Some([("/run".to_string(), "size=1m".to_string())].into());
    h.readonly_rootfs = Some(true);
    fx.volumes = vec![
        VolumeMount {
            destination: "/var/cache".into(),
            source: "/vols/cache/_data".into(),
        },
        VolumeMount {
            destination: "/named".into(),
            source: "/vols/named/_data".into(),
        },
        VolumeMount {
            destination: "/image-volume".into(),
            source: "/vols/anon/_data".into(),
        },
    ];
    let spec = fx.build();
    assert_eq!(options(&spec, "/data"), ["rbind", "ro", "rslave"]);
    assert_eq!(options(&spec, "/deep/er/path"), ["rbind", "rprivate"]);
    assert_eq!(options(&spec, "/var/cache"), ["rbind"]);
    assert_eq!(
        find_mount(&spec, "/var/cache").and_then(|m| m.source().clone()),
        Some("/vols/cache/_data".into())
    );
    assert_eq!(options(&spec, "/named"), ["rbind"]);
    assert_eq!(options(&spec, "/image-volume"), ["rbind"]);
    assert_eq!(options(&spec, "/b"), ["rbind", "ro", "shared"]);
    assert_eq!(options(&spec, "/nr"), ["bind", "rprivate"]);
    assert_eq!(
        options(&spec, "/t"),
        ["noexec", "nosuid", "nodev", "rprivate", "mode=700", "size=1m"]
    );
    assert_eq!(
        options(&spec, "/run"),
        ["noexec", "nosuid", "nodev", "rprivate", "size=1m"]
    );
    // The user's /etc/hosts replaces the engine's.
    assert_eq!(
        find_mount(&spec, "/etc/hosts").and_then(|m| m.source().clone()),
        Some("/run/x".into())
    );
    // --read-only: root and /etc files read-only, /proc, /dev… untouched.
    assert_eq!(spec.root().as_ref().and_then(|r| r.readonly()), Some(true));
    assert_eq!(
        options(&spec, "/etc/resolv.conf"),
        ["rbind", "ro", "rprivate"]
    );
    assert_eq!(options(&spec, "/proc"), ["nosuid", "noexec", "nodev"]);
    assert!(!options(&spec, "/dev/shm").contains(&"ro".to_string()));
    // A shared bind makes the root propagation shared.
    assert_eq!(linux(&spec).rootfs_propagation().as_deref(), Some("shared"));
    // User mounts come after the defaults, shallower first.
    let dests: Vec<String> = spec
        .mounts()
        .iter()
        .flatten()
        .map(|m| m.destination().display().to_string())
        .collect();
    let pos = |d: &str| dests.iter().position(|x| x == d).expect(d);
    assert!(pos("/data") > pos("/dev/shm"));
    assert!(pos("/deep/er/path") > pos("/var/cache"));

    // A named volume nobody resolved is an error.
    let mut fx = Fixture::new();
    fx.host_config.binds = Some(vec!["vol:/v".into()]);
    assert_eq!(
        fx.try_build().expect_err("unresolved").to_string(),
        "volume for /v was not resolved to a host path"
    );

    // A user mount at /dev replaces every default under it.
    let spec = Fixture::with(|fx| fx.host_config.binds = Some(vec!["/dev:/dev".into()]));
    for gone in ["/dev/pts", "/dev/shm", "/dev/mqueue"] {
        assert!(find_mount(&spec, gone).is_none(), "{gone}");
    }
    assert_eq!(options(&spec, "/dev"), ["rbind", "rprivate"]);
}

#[test]
fn devices_and_rules() {
    let spec = Fixture::with(|fx| {
        fx.host_config.devices = serde_json::from_str(
            r#"[{"PathOnHost":"/dev/null","PathInContainer":"/dev/mynull","CgroupPermissions":"rw"}]"#,
        )
        .ok();
        fx.host_config.device_cgroup_rules = Some(vec!["c 42:* rmw".into()]);
    });
    let devs = linux(&spec).devices().clone().unwrap_or_default();
    assert_eq!(devs.len(), 1);
    assert_eq!(devs[0].path(), Path::new("/dev/mynull"));
    assert_eq!(
        (devs[0].typ(), devs[0].major(), devs[0].minor()),
        (LinuxDeviceType::C, 1, 3)
    );
    let rules: Vec<String> = resources(&spec)
        .devices()
        .iter()
        .flatten()
        .map(rule)
        .collect();
    assert_eq!(
        &rules[rules.len() - 2..],
        ["allow c 1:3 rw", "allow c 42:* rmw"]
    );
}

#[test]
fn process_details() {
    let spec = Fixture::with(|fx| {
        fx.config.tty = Some(true);
        fx.config.env = Some(vec!["FOO=bar".into(), "PATH=/custom".into()]);
        fx.config.entrypoint = Some(vec!["/bin/entry".into()]);
        fx.config.cmd = Some(vec!["a".into(), "b".into()]);
        fx.config.working_dir = Some("/work".into());
        fx.config.hostname = Some("web".into());
        fx.config.domainname = Some("example.org".into());
        fx.host_config.console_size = Some(vec![40, 120]);
        fx.host_config.security_opt = Some(vec!["no-new-privileges".into()]);
        fx.host_config.sysctls =
            Some([("net.core.somaxconn".to_string(), "1024".to_string())].into());
        fx.host_config.annotations = Some([("org.example/a".to_string(), "1".to_string())].into());
    });
    let p = process(&spec);
    assert_eq!(
        p.args().clone().unwrap_or_default(),
        ["/bin/entry", "a", "b"]
    );
    assert_eq!(
        p.env().clone().unwrap_or_default(),
        ["PATH=/custom", "HOSTNAME=web", "TERM=xterm", "FOO=bar"]
    );
    assert_eq!(p.cwd(), Path::new("/work"));
    assert_eq!(p.terminal(), Some(true));
    let size = p.console_size().expect("console size");
    assert_eq!((size.height(), size.width()), (40, 120));
    assert_eq!(p.no_new_privileges(), Some(true));
    assert_eq!(spec.hostname().as_deref(), Some("web"));
    let sysctl = linux(&spec).sysctl().clone().unwrap_or_default();
    assert_eq!(sysctl["kernel.domainname"], "example.org");
    assert_eq!(sysctl["net.core.somaxconn"], "1024");
    assert_eq!(
        spec.annotations().clone().unwrap_or_default()["org.example/a"],
        "1"
    );

    // systempaths=unconfined and explicit lists.
    let spec = Fixture::with(|fx| {
        fx.host_config.security_opt = Some(vec!["systempaths=unconfined".into()])
    });
    assert_eq!(linux(&spec).masked_paths().clone(), Some(vec![]));
    let spec = Fixture::with(|fx| {
        fx.host_config.masked_paths = Some(vec!["/proc/x".into()]);
        fx.host_config.readonly_paths = Some(vec![]);
    });
    assert_eq!(
        linux(&spec).masked_paths().clone(),
        Some(vec!["/proc/x".to_string()])
    );
    assert_eq!(linux(&spec).readonly_paths().clone(), Some(vec![]));
    // Host thermal_throttle paths are masked as dockerd 28 does.
    let spec = Fixture::with(|fx| {
        fx.host.thermal_throttle_paths =
            vec!["/sys/devices/system/cpu/cpu0/thermal_throttle".into()]
    });
    assert!(linux(&spec)
        .masked_paths()
        .iter()
        .flatten()
        .any(|p| p.ends_with("cpu0/thermal_throttle")));
}

#[test]
fn init_runs_as_pid_1() {
    let spec = Fixture::with(|fx| {
        fx.host_config.init = Some(true);
        fx.init = Some("/usr/libexec/berth/berth-init".into());
    });
    assert_eq!(
        process(&spec).args().clone().unwrap_or_default(),
        [INIT_PATH_IN_CONTAINER, "--", "sh"]
    );
    let m = find_mount(&spec, INIT_PATH_IN_CONTAINER).expect("init mount");
    assert_eq!(m.options().clone().unwrap_or_default(), ["bind", "ro"]);
    // Not in another pid namespace.
    let spec = Fixture::with(|fx| {
        fx.host_config.pid_mode = Some("host".into());
        fx.init = Some("/usr/libexec/berth/berth-init".into());
    });
    assert_eq!(process(&spec).args().clone().unwrap_or_default(), ["sh"]);
    // Nor when the request turns it off.
    let spec = Fixture::with(|fx| {
        fx.host_config.init = Some(false);
        fx.init = Some("/usr/libexec/berth/berth-init".into());
    });
    assert_eq!(process(&spec).args().clone().unwrap_or_default(), ["sh"]);
    assert!(find_mount(&spec, INIT_PATH_IN_CONTAINER).is_none());
    let mut fx = Fixture::new();
    fx.host_config.init = Some(true);
    assert!(matches!(fx.try_build(), Err(SpecError::InitUnavailable)));
}

#[test]
fn host_facts_probe_reads_this_host() {
    let facts = HostFacts::probe().expect("probe");
    assert!(facts.capabilities.iter().all(|c| c.starts_with("CAP_")));
    assert!(facts.kernel_version >= (4, 8));
    assert_eq!(HostFacts::current().expect("current"), &facts);
    assert_eq!(host_capabilities(), facts.capabilities);
}

#[test]
fn exec_users_resolve_in_the_rootfs() {
    let fx = Fixture::new();
    let user = resolve_user(&fx.rootfs(), "app", &["wheel".to_string()]).expect("app");
    assert_eq!(
        serde_json::to_value(&user).expect("json"),
        serde_json::json!({"uid": 1000, "gid": 1000, "additionalGids": [1000, 29, 10]})
    );
    assert!(resolve_user(&fx.rootfs(), "nobody-here", &[]).is_err());
}
