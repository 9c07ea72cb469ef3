//! linux.resources and linux.devices from a HostConfig: memory, CPU,
//! blkio, pids, rlimits, `--device`, `--device-cgroup-rule`, and every
//! host device for `--privileged`, as dockerd computes them.

use std::path::{Path, PathBuf};

use bollard_stubs::models::{DeviceMapping, HostConfig, ThrottleDevice};
use nix::sys::stat::{lstat, major, minor, stat, FileStat, SFlag};
use oci_spec::runtime::{
    LinuxBlockIo, LinuxCpu, LinuxDevice, LinuxDeviceCgroup, LinuxDeviceType, LinuxMemory,
    LinuxPids, LinuxResources, LinuxThrottleDevice, LinuxThrottleDeviceBuilder,
    LinuxWeightDeviceBuilder, PosixRlimit, PosixRlimitBuilder, PosixRlimitType,
};

use super::defaults::{device_rule, device_rules};
use super::{oci_err, SpecError};

/// `--cpus`: the CFS period dockerd pairs with NanoCpus (100 ms).
const NANO_CPUS_PERIOD: u64 = 100_000;

pub(crate) fn linux_resources(hc: &HostConfig) -> Result<LinuxResources, SpecError> {
    let mut r = LinuxResources::default();
    r.set_memory(memory(hc));
    r.set_cpu(cpu(hc)?);
    r.set_block_io(Some(block_io(hc)?));
    r.set_pids(match hc.pids_limit {
        Some(limit) if limit > 0 => {
            let mut p = LinuxPids::default();
            p.set_limit(limit);
            Some(p)
        }
        // 0 and -1 mean unlimited; the API drops them (no pids limit at all).
        _ => None,
    });
    Ok(r)
}

fn memory(hc: &HostConfig) -> Option<LinuxMemory> {
    let mut m = LinuxMemory::default();
    let limit = hc.memory.filter(|v| *v > 0);
    m.set_limit(limit);
    m.set_reservation(hc.memory_reservation.filter(|v| *v > 0));
    // dockerd's default swap is twice the memory limit; -1 is unlimited.
    let swap = match (hc.memory_swap.unwrap_or(0), limit) {
        (0, Some(limit)) => Some(limit.saturating_mul(2)),
        (s, _) if s > 0 => Some(s),
        _ => None,
    };
    m.set_swap(swap);
    m.set_swappiness(
        hc.memory_swappiness
            .filter(|s| (0..=100).contains(s))
            .map(|s| s as u64),
    );
    m.set_disable_oom_killer(Some(hc.oom_kill_disable.unwrap_or(false)));
    Some(m)
}

fn cpu(hc: &HostConfig) -> Result<Option<LinuxCpu>, SpecError> {
    let mut c = LinuxCpu::default();
    match hc.cpu_shares.unwrap_or(0) {
        0 => {}
        s if s < 0 => {
            return Err(SpecError::InvalidResources(format!(
                "invalid CPU shares ({s}): value must be a positive integer"
            )))
        }
        s => {
            c.set_shares(Some(s as u64));
        }
    }
    if let Some(cpus) = hc.cpuset_cpus.as_deref().filter(|s| !s.is_empty()) {
        c.set_cpus(Some(cpus.to_string()));
    }
    if let Some(mems) = hc.cpuset_mems.as_deref().filter(|s| !s.is_empty()) {
        c.set_mems(Some(mems.to_string()));
    }
    if let Some(nano) = hc.nano_cpus.filter(|n| *n > 0) {
        c.set_period(Some(NANO_CPUS_PERIOD));
        c.set_quota(Some(
            (i128::from(nano) * i128::from(NANO_CPUS_PERIOD) / 1_000_000_000) as i64,
        ));
    }
    if let Some(period) = hc.cpu_period.filter(|p| *p != 0) {
        c.set_period(Some(period as u64));
    }
    if let Some(quota) = hc.cpu_quota.filter(|q| *q != 0) {
        c.set_quota(Some(quota));
    }
    if let Some(period) = hc.cpu_realtime_period.filter(|p| *p != 0) {
        c.set_realtime_period(Some(period as u64));
    }
    if let Some(runtime) = hc.cpu_realtime_runtime.filter(|r| *r != 0) {
        c.set_realtime_runtime(Some(runtime));
    }
    Ok((c != LinuxCpu::default()).then_some(c))
}

fn device_numbers(path: &str) -> Result<(i64, i64), SpecError> {
    let st = stat(path)
        .map_err(|e| SpecError::InvalidResources(format!("stat {path}: {}", e.desc())))?;
    Ok((major(st.st_rdev) as i64, minor(st.st_rdev) as i64))
}

fn throttles(list: Option<&Vec<ThrottleDevice>>) -> Result<Vec<LinuxThrottleDevice>, SpecError> {
    list.into_iter()
        .flatten()
        .map(|d| {
            let path = d.path.as_deref().unwrap_or_default();
            let (maj, min) = device_numbers(path)?;
            let rate = u64::try_from(d.rate.unwrap_or(0)).map_err(|_| {
                SpecError::InvalidResources(format!(
                    "invalid rate for device {path}: must not be negative"
                ))
            })?;
            LinuxThrottleDeviceBuilder::default()
                .major(maj)
                .minor(min)
                .rate(rate)
                .build()
                .map_err(oci_err)
        })
        .collect()
}

fn block_io(hc: &HostConfig) -> Result<LinuxBlockIo, SpecError> {
    let mut b = LinuxBlockIo::default();
    if let Some(w) = hc.blkio_weight.filter(|w| *w != 0) {
        b.set_weight(Some(w));
    }
    let weights = hc
        .blkio_weight_device
        .iter()
        .flatten()
        .map(|d| {
            let path = d.path.as_deref().unwrap_or_default();
            let (maj, min) = device_numbers(path)?;
            let mut w = LinuxWeightDeviceBuilder::default().major(maj).minor(min);
            if let Some(weight) = d.weight.and_then(|w| u16::try_from(w).ok()) {
                w = w.weight(weight);
            }
            w.build().map_err(oci_err)
        })
        .collect::<Result<Vec<_>, SpecError>>()?;
    let some = |v: Vec<LinuxThrottleDevice>| (!v.is_empty()).then_some(v);
    b.set_weight_device((!weights.is_empty()).then_some(weights));
    b.set_throttle_read_bps_device(some(throttles(hc.blkio_device_read_bps.as_ref())?));
    b.set_throttle_write_bps_device(some(throttles(hc.blkio_device_write_bps.as_ref())?));
    b.set_throttle_read_iops_device(some(throttles(hc.blkio_device_read_iops.as_ref())?));
    b.set_throttle_write_iops_device(some(throttles(hc.blkio_device_write_iops.as_ref())?));
    Ok(b)
}

/// Names `--ulimit` accepts (go-units).
pub(crate) const ULIMIT_NAMES: &[&str] = &[
    "core",
    "cpu",
    "data",
    "fsize",
    "locks",
    "memlock",
    "msgqueue",
    "nice",
    "nofile",
    "nproc",
    "rss",
    "rtprio",
    "rttime",
    "sigpending",
    "stack",
];

/// process.rlimits from `--ulimit` (none by default: the runtime's own limits
/// are inherited, as with dockerd). -1 is RLIM_INFINITY.
pub(crate) fn rlimits(hc: &HostConfig) -> Result<Option<Vec<PosixRlimit>>, SpecError> {
    let list = hc.ulimits.as_deref().unwrap_or_default();
    if list.is_empty() {
        return Ok(None);
    }
    list.iter()
        .map(|u| {
            let name = u.name.as_deref().unwrap_or_default();
            let typ: PosixRlimitType =
                serde_json::from_value(format!("RLIMIT_{}", name.to_ascii_uppercase()).into())
                    .map_err(|_| {
                        SpecError::InvalidResources(format!("invalid ulimit type: {name}"))
                    })?;
            PosixRlimitBuilder::default()
                .typ(typ)
                .soft(u.soft.unwrap_or(0) as u64)
                .hard(u.hard.unwrap_or(0) as u64)
                .build()
                .map_err(oci_err)
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// linux.devices and the device cgroup rules.
pub(crate) fn devices(
    hc: &HostConfig,
) -> Result<(Vec<LinuxDevice>, Vec<LinuxDeviceCgroup>), SpecError> {
    let mappings = hc.devices.as_deref().unwrap_or_default();
    if hc.privileged.unwrap_or(false) {
        let mut devs = host_devices(Path::new("/dev"))?;
        for m in mappings {
            let (host, container, _) = mapping_parts(m);
            // Already there through the host's /dev.
            if host == container {
                continue;
            }
            devs.extend(devices_from_path(host, container, "rwm")?.0);
        }
        return Ok((devs, vec![device_rule(true, None, None, None, "rwm")]));
    }
    let mut devs = Vec::new();
    let mut rules = device_rules();
    for m in mappings {
        let (host, container, perms) = mapping_parts(m);
        let (d, r) = devices_from_path(host, container, perms)?;
        devs.extend(d);
        rules.extend(r);
    }
    for rule in hc.device_cgroup_rules.iter().flatten() {
        rules.push(parse_device_cgroup_rule(rule)?);
    }
    Ok((devs, rules))
}

/// (host path, container path, cgroup permissions), with the docker CLI's
/// defaults for the parts left out.
pub(crate) fn mapping_parts(m: &DeviceMapping) -> (&str, &str, &str) {
    let host = m.path_on_host.as_deref().unwrap_or_default();
    let container = m
        .path_in_container
        .as_deref()
        .filter(|p| !p.is_empty())
        .unwrap_or(host);
    let perms = m
        .cgroup_permissions
        .as_deref()
        .filter(|p| !p.is_empty())
        .unwrap_or("rwm");
    (host, container, perms)
}

/// `a|b|c major|*:minor|* [rwm]{1,3}`.
pub(crate) fn parse_device_cgroup_rule(rule: &str) -> Result<LinuxDeviceCgroup, SpecError> {
    let bad = || SpecError::InvalidDeviceCgroupRule(rule.to_string());
    let parts: Vec<&str> = rule.split(' ').collect();
    let [typ, numbers, access] = parts.as_slice() else {
        return Err(bad());
    };
    let typ = match *typ {
        "a" => LinuxDeviceType::A,
        "b" => LinuxDeviceType::B,
        "c" => LinuxDeviceType::C,
        _ => return Err(bad()),
    };
    let (maj, min) = numbers.split_once(':').ok_or_else(bad)?;
    // `*` is a wildcard: no number in the OCI rule (dockerd writes -1, which
    // runtimes read the same way).
    let number = |n: &str| -> Result<Option<i64>, SpecError> {
        match n {
            "*" => Ok(None),
            n if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
                n.parse().map(Some).map_err(|_| bad())
            }
            _ => Err(bad()),
        }
    };
    let (maj, min) = (number(maj)?, number(min)?);
    if access.is_empty() || access.len() > 3 || !access.bytes().all(|b| b"rwm".contains(&b)) {
        return Err(bad());
    }
    Ok(device_rule(true, Some(typ), maj, min, access))
}

/// The LinuxDevice at `container_path` for a node with this stat, or
/// `None` when it is not a device node.
fn device_at(container_path: &Path, st: &FileStat) -> Option<LinuxDevice> {
    let typ = match SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT {
        SFlag::S_IFCHR => LinuxDeviceType::C,
        SFlag::S_IFBLK => LinuxDeviceType::B,
        SFlag::S_IFIFO => LinuxDeviceType::P,
        _ => return None,
    };
    let mut d = LinuxDevice::default();
    d.set_path(container_path.to_path_buf());
    d.set_typ(typ);
    d.set_major(major(st.st_rdev) as i64);
    d.set_minor(minor(st.st_rdev) as i64);
    d.set_file_mode(Some(st.st_mode & !SFlag::S_IFMT.bits()));
    d.set_uid(Some(st.st_uid));
    d.set_gid(Some(st.st_gid));
    Some(d)
}

fn cgroup_rule_for(d: &LinuxDevice, perms: &str) -> Option<LinuxDeviceCgroup> {
    // A FIFO is not a device the cgroup controls.
    (d.typ() != LinuxDeviceType::P)
        .then(|| device_rule(true, Some(d.typ()), Some(d.major()), Some(d.minor()), perms))
}

/// `--device host[:container[:perms]]`: a device node (a symlink to one is
/// followed), or a directory whose device nodes are all added.
pub(crate) fn devices_from_path(
    host: &str,
    container: &str,
    perms: &str,
) -> Result<(Vec<LinuxDevice>, Vec<LinuxDeviceCgroup>), SpecError> {
    let gather = |why: &str| {
        SpecError::InvalidDevice(format!(
            "error gathering device information while adding custom device {host:?}: {why}"
        ))
    };
    let mut resolved = PathBuf::from(host);
    if lstat(host)
        .is_ok_and(|st| SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFLNK)
    {
        if let Ok(target) = std::fs::canonicalize(host) {
            resolved = target;
        }
    }
    // Go's wording of the errno ("no such file or directory"), which the
    // docker CLI turns into exit code 127 as it does with dockerd.
    let st = lstat(&resolved).map_err(|e| gather(&e.desc().to_lowercase()))?;
    if let Some(d) = device_at(Path::new(container), &st) {
        let rules = cgroup_rule_for(&d, perms).into_iter().collect();
        return Ok((vec![d], rules));
    }
    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFDIR {
        return Err(gather("not a device node"));
    }
    let mut devs = Vec::new();
    walk_devices(&resolved, Path::new(container), &mut devs, &[]);
    if devs.is_empty() {
        return Err(gather("not a device node"));
    }
    let rules = devs
        .iter()
        .filter_map(|d| cgroup_rule_for(d, perms))
        .collect();
    Ok((devs, rules))
}

/// Device nodes below `dir` (symlinks not followed), placed below `container`.
fn walk_devices(dir: &Path, container: &Path, out: &mut Vec<LinuxDevice>, skip_dirs: &[&str]) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name();
        let path = entry.path();
        let target = container.join(&name);
        let Ok(st) = lstat(&path) else { continue };
        if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR {
            if !skip_dirs.iter().any(|s| name == *s) {
                walk_devices(&path, &target, out, skip_dirs);
            }
            continue;
        }
        out.extend(device_at(&target, &st));
    }
}

/// Every device node of the host for `--privileged` (containerd's
/// HostDevices): /dev walked without pts, shm, fd, mqueue and the lxc/udev
/// private dirs; /dev/console and FIFOs left out.
pub(crate) fn host_devices(dev: &Path) -> Result<Vec<LinuxDevice>, SpecError> {
    std::fs::read_dir(dev).map_err(|e| SpecError::io(format!("read {}", dev.display()), e))?;
    let mut devs = Vec::new();
    walk_devices(
        dev,
        Path::new("/dev"),
        &mut devs,
        &["pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev"],
    );
    devs.retain(|d| d.path() != Path::new("/dev/console") && d.typ() != LinuxDeviceType::P);
    Ok(devs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_cgroup_rules_parse() {
        let r = parse_device_cgroup_rule("c 1:3 mr").expect("rule");
        assert_eq!(
            (r.typ(), r.major(), r.minor()),
            (Some(LinuxDeviceType::C), Some(1), Some(3))
        );
        assert_eq!(r.access().as_deref(), Some("mr"));
        let r = parse_device_cgroup_rule("a *:* rwm").expect("all");
        assert_eq!((r.major(), r.minor()), (None, None));
        for bad in [
            "c 1:3",
            "x 1:3 rwm",
            "c 1:3 rwx",
            "c 1 rwm",
            "c -1:3 rwm",
            "c 1:3  rwm",
        ] {
            assert_eq!(
                parse_device_cgroup_rule(bad).expect_err(bad).to_string(),
                format!("invalid device cgroup rule format: '{bad}'")
            );
        }
    }

    #[test]
    fn device_nodes_from_the_host() {
        let (devs, rules) = devices_from_path("/dev/null", "/dev/mynull", "rw").expect("null");
        assert_eq!(devs.len(), 1);
        assert_eq!(devs[0].path(), Path::new("/dev/mynull"));
        assert_eq!(
            (devs[0].typ(), devs[0].major(), devs[0].minor()),
            (LinuxDeviceType::C, 1, 3)
        );
        assert_eq!(devs[0].file_mode(), Some(0o666));
        assert_eq!(rules[0].access().as_deref(), Some("rw"));
        let err = devices_from_path("/etc/hostname", "/x", "rwm").expect_err("file");
        assert_eq!(
            err.to_string(),
            "error gathering device information while adding custom device \"/etc/hostname\": not a device node"
        );
        let err = devices_from_path("/dev/nope", "/x", "rwm").expect_err("missing");
        assert!(
            err.to_string()
                .ends_with("\"/dev/nope\": no such file or directory"),
            "{err}"
        );
    }

    #[test]
    fn privileged_gets_the_host_devices() {
        let devs = host_devices(Path::new("/dev")).expect("host devices");
        let paths: Vec<_> = devs.iter().map(|d| d.path().clone()).collect();
        assert!(paths.contains(&PathBuf::from("/dev/null")));
        assert!(!paths.contains(&PathBuf::from("/dev/console")));
        assert!(!paths.iter().any(|p| p.starts_with("/dev/pts")));
    }
}
