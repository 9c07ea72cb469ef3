//! dockerd's defaults for every container (moby `oci/defaults.go`): the
//! mounts, masked and read-only paths, device cgroup rules and environment.

use bollard_stubs::models::HostConfig;
use oci_spec::runtime::{Box as ConsoleBox, BoxBuilder, LinuxDeviceCgroup, LinuxDeviceType, Mount};

/// PATH when the image and the request set none.
pub const DEFAULT_PATH_ENV: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Size of the /dev/shm tmpfs when ShmSize is 0 (dockerd's default-shm-size).
pub const DEFAULT_SHM_SIZE: i64 = 64 * 1024 * 1024;

pub(crate) const MASKED_PATHS: &[&str] = &[
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
];

pub(crate) const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// The default masked paths plus the host's per-CPU thermal_throttle
/// directories (they leak host activity, as /proc/interrupts does).
pub(crate) fn masked_paths(thermal_throttle: &[String]) -> Vec<String> {
    MASKED_PATHS
        .iter()
        .map(|p| p.to_string())
        .chain(thermal_throttle.iter().cloned())
        .collect()
}

pub(crate) fn mount(destination: &str, typ: &str, source: &str, options: &[&str]) -> Mount {
    let mut m = Mount::default();
    m.set_destination(destination.into());
    m.set_typ(Some(typ.to_string()));
    m.set_source(Some(source.into()));
    m.set_options(Some(options.iter().map(|o| o.to_string()).collect()));
    m
}

/// /proc, /dev, /dev/pts, /sys, /sys/fs/cgroup, /dev/mqueue and /dev/shm
/// (whose size the caller appends).
pub(crate) fn mounts() -> Vec<Mount> {
    vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", "ro"],
        ),
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["ro", "nosuid", "noexec", "nodev"],
        ),
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777"],
        ),
    ]
}

pub(crate) fn device_rule(
    allow: bool,
    typ: Option<LinuxDeviceType>,
    major: Option<i64>,
    minor: Option<i64>,
    access: &str,
) -> LinuxDeviceCgroup {
    let mut rule = LinuxDeviceCgroup::default();
    rule.set_allow(allow);
    rule.set_typ(typ);
    rule.set_major(major);
    rule.set_minor(minor);
    rule.set_access(Some(access.to_string()));
    rule
}

/// Device cgroup rules of every unprivileged container: dockerd's (deny
/// all, then null, zero, urandom, random, tty, console; /dev/fuse denied),
/// then the ones runc adds on its own and dockerd relies on (mknod of any
/// node, full, ptmx, the ptys, tun), so the spec gives the same access under
/// any runtime.
pub(crate) fn device_rules() -> Vec<LinuxDeviceCgroup> {
    use LinuxDeviceType::C;
    let allow =
        |major: i64, minor: Option<i64>| device_rule(true, Some(C), Some(major), minor, "rwm");
    vec![
        device_rule(false, None, None, None, "rwm"),
        allow(1, Some(5)),
        allow(1, Some(3)),
        allow(1, Some(9)),
        allow(1, Some(8)),
        allow(5, Some(0)),
        allow(5, Some(1)),
        device_rule(false, Some(C), Some(10), Some(229), "rwm"),
        device_rule(true, Some(C), None, None, "m"),
        device_rule(true, Some(LinuxDeviceType::B), None, None, "m"),
        allow(1, Some(7)),
        allow(5, Some(2)),
        allow(136, None),
        allow(10, Some(200)),
    ]
}

/// dockerd's CreateDaemonEnvironment: PATH, HOSTNAME and (with a tty) TERM,
/// overridden by the config's variables; `KEY` without `=` removes KEY.
pub(crate) fn environment(hostname: &str, tty: bool, config_env: &[String]) -> Vec<String> {
    let mut env = vec![
        format!("PATH={DEFAULT_PATH_ENV}"),
        format!("HOSTNAME={hostname}"),
    ];
    if tty {
        env.push("TERM=xterm".to_string());
    }
    let defaults = env.len();
    let mut removed = vec![false; defaults];
    let key_of = |e: &str| {
        e.split_once('=')
            .map_or(e.to_string(), |(k, _)| k.to_string())
    };
    for value in config_env {
        let key = key_of(value);
        let slot = env[..defaults].iter().position(|e| key_of(e) == key);
        match (value.contains('='), slot) {
            (false, Some(i)) => removed[i] = true,
            (false, None) => {}
            (true, Some(i)) => {
                env[i] = value.clone();
                removed[i] = false;
            }
            (true, None) => env.push(value.clone()),
        }
    }
    env.into_iter()
        .enumerate()
        .filter(|(i, _)| !removed.get(*i).copied().unwrap_or(false))
        .map(|(_, e)| e)
        .collect()
}

/// process.consoleSize from HostConfig.ConsoleSize `[height, width]`, when set.
pub(crate) fn console_size(hc: &HostConfig) -> Option<ConsoleBox> {
    let size = hc.console_size.as_deref()?;
    let (height, width) = (*size.first()?, *size.get(1)?);
    if height == 0 && width == 0 {
        return None;
    }
    BoxBuilder::default()
        .height(height as u64)
        .width(width as u64)
        .build()
        .ok()
}

/// Parses a kernel CPU list such as `0-3,8,10-11`.
pub(crate) fn cpu_list(list: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for part in list.split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.trim().parse::<u32>(), b.trim().parse::<u32>()) {
                    out.extend(a..=b.min(a.saturating_add(4096)));
                }
            }
            None => out.extend(part.trim().parse::<u32>().ok()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_overrides_and_removes_like_dockerd() {
        let env = environment(
            "abc",
            true,
            &[
                "PATH=/bin".to_string(),
                "TERM".to_string(),
                "A=1".to_string(),
                "A=2".to_string(),
            ],
        );
        assert_eq!(env, ["PATH=/bin", "HOSTNAME=abc", "A=1", "A=2"]);
        assert_eq!(
            environment("h", false, &[]),
            [format!("PATH={DEFAULT_PATH_ENV}"), "HOSTNAME=h".to_string()]
        );
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(cpu_list("0-1"), [0, 1]);
        assert_eq!(cpu_list("0,2-3,7"), [0, 2, 3, 7]);
        assert!(cpu_list("").is_empty());
    }
}
