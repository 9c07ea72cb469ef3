//! The JSON documents the CLI writes: `spec`'s default config.json,
//! `features`, and the process `exec` builds from its flags.

use std::path::Path;

use anyhow::{bail, Context as _, Result};
use oci_spec::runtime::{Process, Spec};
use serde_json::{json, Value};

use crate::{ExecArgs, UpdateArgs};

const MASKED: [&str; 10] = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/sys/firmware",
    "/proc/scsi",
];
const READONLY: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// A config.json like runc's `spec`: a terminal shell as root, few capabilities,
/// read-only root, the usual mounts and namespaces.
pub fn default_spec() -> Value {
    let caps = json!(["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]);
    json!({
        "ociVersion": berth_runtime::state::OCI_VERSION,
        "process": {
            "terminal": true,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
            "cwd": "/",
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": true
        },
        "root": {"path": "rootfs", "readonly": true},
        "hostname": "berth",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
             "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}
        ],
        "linux": {
            "resources": {"devices": [{"allow": false, "access": "rwm"}]},
            "namespaces": [
                {"type": "pid"}, {"type": "network"}, {"type": "ipc"},
                {"type": "uts"}, {"type": "mount"}, {"type": "cgroup"}
            ],
            "maskedPaths": MASKED,
            "readonlyPaths": READONLY
        }
    })
}

pub fn features() -> Value {
    json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": berth_runtime::state::OCI_VERSION,
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": [
            "async", "atime", "bind", "defaults", "dev", "diratime", "dirsync", "exec", "mand",
            "noatime", "nodev", "nodiratime", "noexec", "nomand", "norelatime", "nostrictatime",
            "nosuid", "private", "rbind", "relatime", "remount", "ro", "rprivate", "rshared",
            "rslave", "runbindable", "rw", "shared", "slave", "strictatime", "suid", "sync",
            "tmpcopyup", "unbindable"
        ],
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "time", "user", "uts"],
            "capabilities": berth_sys::capabilities::all_known_caps(),
            "cgroup": {"v1": true, "v2": true, "systemd": false, "systemdUser": false},
            "seccomp": {
                "enabled": true,
                "actions": ["SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS",
                            "SCMP_ACT_KILL_THREAD", "SCMP_ACT_LOG", "SCMP_ACT_NOTIFY", "SCMP_ACT_TRACE", "SCMP_ACT_TRAP"],
                "operators": ["SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_LE", "SCMP_CMP_LT",
                              "SCMP_CMP_MASKED_EQ", "SCMP_CMP_NE"],
                "archs": ["SCMP_ARCH_AARCH64", "SCMP_ARCH_X32", "SCMP_ARCH_X86", "SCMP_ARCH_X86_64"]
            },
            "apparmor": {"enabled": false},
            "selinux": {"enabled": false}
        },
        "annotations": {"org.opencontainers.runc.checkpoint.enabled": "false"}
    })
}

/// The process `exec` runs when given args instead of --process: the
/// container's own process settings, with the flags applied on top.
pub fn process_from_flags(bundle: &Path, a: &ExecArgs) -> Result<Process> {
    if a.command.is_empty() {
        bail!("exec needs a command (or --process)");
    }
    let spec = Spec::load(bundle.join("config.json"))
        .with_context(|| format!("load {}", bundle.join("config.json").display()))?;
    let mut p = spec
        .process()
        .clone()
        .context("config.json has no process")?;
    p.set_args(Some(a.command.clone()));
    p.set_terminal(Some(a.tty));
    p.set_console_size(None);
    let mut env = p.env().clone().unwrap_or_default();
    for kv in &a.env {
        if !kv.contains('=') {
            bail!("invalid --env {kv:?}: expected KEY=VALUE");
        }
        let key = kv.split('=').next().unwrap_or_default();
        env.retain(|e| e.split('=').next() != Some(key));
        env.push(kv.clone());
    }
    p.set_env(Some(env));
    if let Some(cwd) = &a.cwd {
        p.set_cwd(cwd.clone());
    }
    if let Some(user) = &a.user {
        let (uid, gid) = match user.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (user.as_str(), None),
        };
        let uid: u32 = uid
            .parse()
            .with_context(|| format!("invalid --user {user:?}: expected uid[:gid]"))?;
        let gid: u32 = match gid {
            Some(g) => g
                .parse()
                .with_context(|| format!("invalid --user {user:?}: expected uid[:gid]"))?,
            None => 0,
        };
        let mut u = p.user().clone();
        u.set_uid(uid);
        u.set_gid(gid);
        p.set_user(u);
    }
    if !a.additional_gids.is_empty() {
        let mut u = p.user().clone();
        u.set_additional_gids(Some(a.additional_gids.clone()));
        p.set_user(u);
    }
    if a.no_new_privs {
        p.set_no_new_privileges(Some(true));
    }
    if !a.cap.is_empty() {
        let mut caps = p.capabilities().clone().unwrap_or_default();
        for name in &a.cap {
            let cap: oci_spec::runtime::Capability = name
                .trim_start_matches("CAP_")
                .parse()
                .map_err(|_| anyhow::anyhow!("unknown capability {name:?}"))?;
            let add = |set: &Option<oci_spec::runtime::Capabilities>| {
                let mut set = set.clone().unwrap_or_default();
                set.insert(cap);
                Some(set)
            };
            let (b, e, p, i) = (
                add(caps.bounding()),
                add(caps.effective()),
                add(caps.permitted()),
                add(caps.inheritable()),
            );
            caps.set_bounding(b);
            caps.set_effective(e);
            caps.set_permitted(p);
            caps.set_inheritable(i);
        }
        p.set_capabilities(Some(caps));
    }
    Ok(p)
}

/// A size such as `64m`, `1g`, `1024` or `-1`.
fn parse_size(flag: &str, s: &str) -> Result<i64> {
    if s == "-1" {
        return Ok(-1);
    }
    let lower = s.to_ascii_lowercase();
    let (num, mult) = match lower.trim_end_matches('b').chars().last() {
        Some('k') => (&lower[..lower.trim_end_matches('b').len() - 1], 1i64 << 10),
        Some('m') => (&lower[..lower.trim_end_matches('b').len() - 1], 1 << 20),
        Some('g') => (&lower[..lower.trim_end_matches('b').len() - 1], 1 << 30),
        _ => (lower.trim_end_matches('b'), 1),
    };
    num.parse::<i64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .with_context(|| format!("invalid --{flag} {s:?}: expected a size like 64m or 1g"))
}

/// The resources `update` applies: the JSON given with --resources, with the
/// individual flags on top.
pub fn resources_from_update(a: &UpdateArgs) -> Result<oci_spec::runtime::LinuxResources> {
    use oci_spec::runtime::{LinuxPids, LinuxResources};
    let mut r: LinuxResources = match &a.resources {
        Some(p) if p.as_os_str() == "-" => {
            serde_json::from_reader(std::io::stdin()).context("invalid resources JSON on stdin")?
        }
        Some(p) => {
            let data = std::fs::read(p).with_context(|| format!("read {}", p.display()))?;
            serde_json::from_slice(&data)
                .with_context(|| format!("invalid resources JSON in {}", p.display()))?
        }
        None => LinuxResources::default(),
    };
    if a.memory.is_some() || a.memory_reservation.is_some() || a.memory_swap.is_some() {
        let mut m = r.memory().unwrap_or_default();
        if let Some(v) = &a.memory {
            m.set_limit(Some(parse_size("memory", v)?));
        }
        if let Some(v) = &a.memory_reservation {
            m.set_reservation(Some(parse_size("memory-reservation", v)?));
        }
        if let Some(v) = &a.memory_swap {
            m.set_swap(Some(parse_size("memory-swap", v)?));
        }
        r.set_memory(Some(m));
    }
    if a.cpu_period.is_some()
        || a.cpu_quota.is_some()
        || a.cpu_share.is_some()
        || a.cpuset_cpus.is_some()
        || a.cpuset_mems.is_some()
    {
        let mut c = r.cpu().clone().unwrap_or_default();
        if a.cpu_period.is_some() {
            c.set_period(a.cpu_period);
        }
        if a.cpu_quota.is_some() {
            c.set_quota(a.cpu_quota);
        }
        if a.cpu_share.is_some() {
            c.set_shares(a.cpu_share);
        }
        if a.cpuset_cpus.is_some() {
            c.set_cpus(a.cpuset_cpus.clone());
        }
        if a.cpuset_mems.is_some() {
            c.set_mems(a.cpuset_mems.clone());
        }
        r.set_cpu(Some(c));
    }
    if let Some(limit) = a.pids_limit {
        let mut p = LinuxPids::default();
        p.set_limit(limit);
        r.set_pids(Some(p));
    }
    if let Some(w) = a.blkio_weight {
        let mut b = r.block_io().clone().unwrap_or_default();
        b.set_weight(Some(w));
        r.set_block_io(Some(b));
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_like_runc() {
        assert_eq!(parse_size("memory", "64m").expect("64m"), 64 << 20);
        assert_eq!(parse_size("memory", "1G").expect("1G"), 1 << 30);
        assert_eq!(parse_size("memory", "1024").expect("1024"), 1024);
        assert_eq!(parse_size("memory", "-1").expect("-1"), -1);
        let err = parse_size("memory", "lots").expect_err("bad size");
        assert!(err.to_string().contains("--memory"));
    }
}
