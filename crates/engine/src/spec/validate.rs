//! Create-time checks with dockerd's messages (moby `daemon/container.go`,
//! `daemon/daemon_unix.go`, `runconfig`, and what runc would refuse at
//! start), and dockerd's create-time defaults for the stored HostConfig.

use bollard_stubs::models::{
    ContainerConfig, HostConfig, HostConfigCgroupnsModeEnum, RestartPolicyNameEnum,
};

use super::caps::normalize_list;
use super::modes::{self, IpcMode, NsMode};
use super::mounts::{check_api_mount, check_tmpfs, clean_path, parse_bind};
use super::resources::{mapping_parts, parse_device_cgroup_rule, ULIMIT_NAMES};
use super::{defaults, seccomp, CgroupMode, SpecError};

/// dockerd's floor for memory limits and reservations (6 MiB).
const MIN_MEMORY: i64 = 6 * 1024 * 1024;
/// Healthcheck durations below 1 ms are refused (nanoseconds).
const MIN_HEALTH_DURATION: i64 = 1_000_000;

/// Checks a create request after [`super::merge_image_config`], before the
/// caller fills in defaults (a hostname, …): the first problem found is
/// returned, worded as dockerd words it where dockerd has a message.
pub fn validate_create(config: &ContainerConfig, hc: &HostConfig) -> Result<(), SpecError> {
    check_config(config)?;
    check_restart_policy(hc)?;
    for m in hc.mounts.iter().flatten() {
        check_api_mount(m)?;
    }
    normalize_list("CapAdd", hc.cap_add.as_deref().unwrap_or_default(), None)?;
    normalize_list("CapDrop", hc.cap_drop.as_deref().unwrap_or_default(), None)?;
    if hc.annotations.iter().flatten().any(|(k, _)| k.is_empty()) {
        return Err(SpecError::InvalidConfig(
            "invalid Annotations: the empty string is not permitted as an annotation key"
                .to_string(),
        ));
    }
    check_resources(hc)?;
    let ipc = modes::ipc_mode(hc)?;
    modes::pid_mode(hc)?;
    if hc.shm_size.unwrap_or(0) < 0 {
        return Err(resources_err("SHM size can not be less than 0"));
    }
    let uts_host = modes::uts_host(hc)?;
    modes::check_userns(hc)?;
    let oom = hc.oom_score_adj.unwrap_or(0);
    if !(-1000..=1000).contains(&oom) {
        return Err(SpecError::InvalidResources(format!(
            "Invalid value {oom}, range for oom score adj is [-1000, 1000]"
        )));
    }
    let net = modes::net_mode(hc)?;
    check_network_conflicts(config, hc, &net, uts_host)?;
    check_sysctls(hc, &net, &ipc, uts_host)?;
    check_devices(hc)?;
    check_mount_points(hc)?;
    let security = parse_security_opts(hc.security_opt.as_deref().unwrap_or_default())?;
    if let Some(profile) = security.seccomp.as_deref() {
        seccomp::for_container(Some(profile), false, &[], (0, 0))?;
    }
    if config.entrypoint.as_deref().unwrap_or_default().is_empty()
        && config.cmd.as_deref().unwrap_or_default().is_empty()
    {
        return Err(SpecError::NoCommand);
    }
    Ok(())
}

/// The defaults dockerd writes into a new container's HostConfig, so that
/// inspect shows what the container runs with: MemorySwap twice Memory,
/// ShmSize 64 MiB, IpcMode `private`, CgroupnsMode from the cgroup layout,
/// OomKillDisable false, MemorySwappiness -1 and PidsLimit ≤ 0 cleared, and
/// NetworkMode `default` (or empty) as `bridge`.
pub fn adapt_host_config(hc: &mut HostConfig, cgroup_mode: CgroupMode) {
    if let Some(memory) = hc.memory.filter(|m| *m > 0) {
        if hc.memory_swap.unwrap_or(0) == 0 {
            hc.memory_swap = Some(memory.saturating_mul(2));
        }
    }
    if hc.shm_size.unwrap_or(0) == 0 {
        hc.shm_size = Some(defaults::DEFAULT_SHM_SIZE);
    }
    if hc.ipc_mode.as_deref().unwrap_or_default().is_empty() {
        hc.ipc_mode = Some("private".to_string());
    }
    if matches!(
        hc.cgroupns_mode,
        None | Some(HostConfigCgroupnsModeEnum::EMPTY)
    ) {
        hc.cgroupns_mode = Some(if cgroup_mode == CgroupMode::V2 {
            HostConfigCgroupnsModeEnum::PRIVATE
        } else {
            HostConfigCgroupnsModeEnum::HOST
        });
    }
    if hc.oom_kill_disable.is_none() {
        hc.oom_kill_disable = Some(false);
    }
    if hc.memory_swappiness == Some(-1) {
        hc.memory_swappiness = None;
    }
    if hc.pids_limit.is_some_and(|p| p <= 0) {
        hc.pids_limit = None;
    }
    if matches!(
        hc.network_mode.as_deref(),
        None | Some("") | Some("default")
    ) {
        hc.network_mode = Some("bridge".to_string());
    }
}

fn resources_err(msg: &str) -> SpecError {
    SpecError::InvalidResources(msg.to_string())
}

fn check_config(config: &ContainerConfig) -> Result<(), SpecError> {
    let invalid = |m: String| Err(SpecError::InvalidConfig(m));
    if let Some(wd) = config.working_dir.as_deref().filter(|w| !w.is_empty()) {
        if !wd.starts_with('/') {
            return invalid(format!(
                "the working directory '{wd}' is invalid, it needs to be an absolute path"
            ));
        }
    }
    if let Some(sig) = config.stop_signal.as_deref().filter(|s| !s.is_empty()) {
        if !valid_signal(sig) {
            return invalid(format!("Invalid signal: {sig}"));
        }
    }
    for var in config.env.iter().flatten() {
        if var.split('=').next().unwrap_or_default().is_empty() {
            return invalid(format!("invalid environment variable: {var}"));
        }
    }
    if let Some(h) = &config.healthcheck {
        let short = |d: Option<i64>| d.is_some_and(|d| d != 0 && d < MIN_HEALTH_DURATION);
        for (name, value) in [
            ("Interval", h.interval),
            ("Timeout", h.timeout),
            ("StartPeriod", h.start_period),
            ("StartInterval", h.start_interval),
        ] {
            if short(value) {
                return invalid(format!("{name} in Healthcheck cannot be less than 1ms"));
            }
        }
        if h.retries.unwrap_or(0) < 0 {
            return invalid("Retries in Healthcheck cannot be negative".to_string());
        }
    }
    Ok(())
}

/// A signal number (not 0) or name, with or without SIG, any case;
/// RTMIN+n and RTMAX-n too.
fn valid_signal(sig: &str) -> bool {
    if let Ok(n) = sig.parse::<i64>() {
        return n != 0;
    }
    let upper = sig.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    if matches!(name, "CLD" | "POLL" | "IOT" | "RTMIN" | "RTMAX") {
        return true;
    }
    let rt = |prefix: &str| {
        name.strip_prefix(prefix)
            .and_then(|n| n.parse::<u8>().ok())
            .is_some_and(|n| (1..=15).contains(&n))
    };
    if rt("RTMIN+") || rt("RTMAX-") {
        return true;
    }
    format!("SIG{name}")
        .parse::<nix::sys::signal::Signal>()
        .is_ok()
}

fn check_restart_policy(hc: &HostConfig) -> Result<(), SpecError> {
    let Some(policy) = &hc.restart_policy else {
        return Ok(());
    };
    let name = policy.name.unwrap_or(RestartPolicyNameEnum::EMPTY);
    let retries = policy.maximum_retry_count.unwrap_or(0);
    let invalid = |m: &str| Err(SpecError::InvalidRestartPolicy(m.to_string()));
    match name {
        RestartPolicyNameEnum::ON_FAILURE if retries < 0 => {
            return invalid("invalid restart policy: maximum retry count cannot be negative")
        }
        RestartPolicyNameEnum::ON_FAILURE | RestartPolicyNameEnum::EMPTY => {}
        _ if retries < 0 => return invalid(
            "invalid restart policy: maximum retry count can only be used with 'on-failure' and cannot be negative",
        ),
        _ if retries != 0 => return invalid(
            "invalid restart policy: maximum retry count can only be used with 'on-failure'",
        ),
        _ => {}
    }
    let none = matches!(
        name,
        RestartPolicyNameEnum::EMPTY | RestartPolicyNameEnum::NO
    );
    if hc.auto_remove.unwrap_or(false) && !none {
        return invalid("can't create 'AutoRemove' container with restart policy");
    }
    Ok(())
}

/// `0-3,5` style lists of CPUs or memory nodes.
fn valid_uint_list(list: &str) -> bool {
    !list.is_empty()
        && list.split(',').all(|part| {
            let num = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
            match part.split_once('-') {
                Some((a, b)) => num(a) && num(b) && a.parse::<u64>().ok() <= b.parse::<u64>().ok(),
                None => num(part),
            }
        })
}

#[cfg(test)]
#[test]
fn lists_within_what_the_host_has() {
    assert!(list_within("0", "0-1"));
    assert!(list_within("0-1", "0-1"));
    assert!(list_within("1,3-4", "0-1,3-7"));
    assert!(!list_within("2", "0-1"));
    assert!(!list_within("1-2", "0-1"));
    assert!(!list_within("0-4000000000", "0-1"));
    assert!(!list_within("0", "garbage"));
}

/// Whether every number of `list` (`0-2,5`, valid) is in `available` (the
/// same form); an unreadable `available` holds nothing.
fn list_within(list: &str, available: &str) -> bool {
    let ranges = |l: &str| -> Option<Vec<(u64, u64)>> {
        l.split(',')
            .map(|part| match part.split_once('-') {
                Some((a, b)) => Some((a.trim().parse().ok()?, b.trim().parse().ok()?)),
                None => part.trim().parse().ok().map(|n| (n, n)),
            })
            .collect()
    };
    let (Some(wanted), Some(have)) = (ranges(list), ranges(available)) else {
        return false;
    };
    // No host has anywhere near 65536 CPUs or nodes.
    wanted.iter().all(|&(from, to)| {
        to.saturating_sub(from) < 1 << 16
            && (from..=to).all(|n| have.iter().any(|&(lo, hi)| (lo..=hi).contains(&n)))
    })
}

/// dockerd's memory checks that create and update share: limit, swap and
/// reservation against each other.
pub(crate) fn check_memory(memory: i64, swap: i64, reservation: i64) -> Result<(), String> {
    if memory != 0 && memory < MIN_MEMORY {
        return Err("Minimum memory limit allowed is 6MB".into());
    }
    if swap < -1 {
        return Err(format!(
            "invalid memory swap limit {swap}: -1 (unlimited) is the only negative value"
        ));
    }
    if memory > 0 && swap > 0 && swap < memory {
        return Err(
            "Minimum memoryswap limit should be larger than memory limit, see usage".into(),
        );
    }
    if reservation < 0 {
        return Err(format!(
            "invalid memory reservation {reservation}: must not be negative"
        ));
    }
    if reservation > 0 && reservation < MIN_MEMORY {
        return Err("Minimum memory reservation allowed is 6MB".into());
    }
    if memory > 0 && reservation > 0 && memory < reservation {
        return Err(
            "Minimum memory limit can not be less than memory reservation limit, see usage".into(),
        );
    }
    Ok(())
}

/// dockerd's CPU checks that create and update share, `cpus` being the
/// host's CPU count.
pub(crate) fn check_cpu(
    nano: i64,
    period: i64,
    quota: i64,
    shares: i64,
    cpus: i64,
) -> Result<(), String> {
    if nano > 0 && period > 0 {
        return Err("Conflicting options: Nano CPUs and CPU Period cannot both be set".into());
    }
    if nano > 0 && quota > 0 {
        return Err("Conflicting options: Nano CPUs and CPU Quota cannot both be set".into());
    }
    if nano < 0 || nano > cpus * 1_000_000_000 {
        return Err(format!(
            "range of CPUs is from 0.01 to {cpus}.00, as there are only {cpus} CPUs available"
        ));
    }
    if shares < 0 {
        return Err(format!(
            "invalid CPU shares ({shares}): value must be a positive integer"
        ));
    }
    if period != 0 && !(1000..=1_000_000).contains(&period) {
        return Err(
            "CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)"
                .into(),
        );
    }
    if quota > 0 && quota < 1000 {
        return Err("CPU cfs quota can not be less than 1ms (i.e. 1000)".into());
    }
    if quota < -1 {
        return Err(format!(
            "invalid CPU quota {quota}: -1 (unlimited) is the only negative value"
        ));
    }
    Ok(())
}

fn check_resources(hc: &HostConfig) -> Result<(), SpecError> {
    let fail = |m: String| Err(SpecError::InvalidResources(m));
    let memory = hc.memory.unwrap_or(0);
    let swap = hc.memory_swap.unwrap_or(0);
    let reservation = hc.memory_reservation.unwrap_or(0);
    check_memory(memory, swap, reservation).map_err(SpecError::InvalidResources)?;
    if memory == 0 && swap > 0 {
        return fail(
            "You should always set the Memory limit when using Memoryswap limit, see usage".into(),
        );
    }
    if let Some(s) = hc.memory_swappiness.filter(|s| *s != -1) {
        if !(0..=100).contains(&s) {
            return fail(format!(
                "Invalid value: {s}, valid memory swappiness range is 0-100"
            ));
        }
    }

    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as i64;
    check_cpu(
        hc.nano_cpus.unwrap_or(0),
        hc.cpu_period.unwrap_or(0),
        hc.cpu_quota.unwrap_or(0),
        hc.cpu_shares.unwrap_or(0),
        cpus,
    )
    .map_err(SpecError::InvalidResources)?;
    let rt_period = hc.cpu_realtime_period.unwrap_or(0);
    let rt_runtime = hc.cpu_realtime_runtime.unwrap_or(0);
    if rt_period < 0 || rt_runtime < -1 {
        return fail("invalid CPU real-time period or runtime: must not be negative".into());
    }
    if rt_period != 0 && rt_runtime != 0 && rt_runtime > rt_period {
        return fail("cpu real-time runtime cannot be higher than cpu real-time period".into());
    }
    for (what, list, online, missing) in [
        (
            "cpuset cpus",
            hc.cpuset_cpus.as_deref(),
            "/sys/devices/system/cpu/online",
            "Requested CPUs are not available",
        ),
        (
            "cpuset mems",
            hc.cpuset_mems.as_deref(),
            "/sys/devices/system/node/online",
            "Requested memory nodes are not available",
        ),
    ] {
        if let Some(list) = list.filter(|l| !l.is_empty()) {
            if !valid_uint_list(list) {
                return fail(format!(
                    "Invalid value {list} for {what}: invalid format: {list}"
                ));
            }
            // As dockerd, at create: what the host doesn't have (a host
            // without NUMA nodes listed has node 0).
            let available = std::fs::read_to_string(online)
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|_| "0".to_string());
            if !list_within(list, &available) {
                return fail(format!(
                    "{missing} - requested {list}, available: {available}"
                ));
            }
        }
    }

    if let Some(w) = hc.blkio_weight.filter(|w| *w != 0) {
        if !(10..=1000).contains(&w) {
            return fail("Range of blkio weight is from 10 to 1000".into());
        }
    }
    for d in hc.blkio_weight_device.iter().flatten() {
        let w = d.weight.unwrap_or(0);
        if !(10..=1000).contains(&w) {
            return fail(format!(
                "invalid weight for device {}: {w} (the range is 10 to 1000)",
                d.path.as_deref().unwrap_or_default()
            ));
        }
    }
    for list in [
        &hc.blkio_device_read_bps,
        &hc.blkio_device_write_bps,
        &hc.blkio_device_read_iops,
        &hc.blkio_device_write_iops,
    ] {
        for d in list.iter().flatten() {
            if d.rate.unwrap_or(0) < 0 {
                return fail(format!(
                    "invalid rate for device {}: must not be negative",
                    d.path.as_deref().unwrap_or_default()
                ));
            }
        }
    }
    if hc.io_maximum_bandwidth.unwrap_or(0) != 0 || hc.io_maximum_iops.unwrap_or(0) != 0 {
        return fail(
            "Invalid QoS settings: linux does not support Maximum IO Bandwidth or Maximum IO IOps"
                .into(),
        );
    }

    for u in hc.ulimits.iter().flatten() {
        let name = u.name.as_deref().unwrap_or_default();
        if !ULIMIT_NAMES.contains(&name) {
            return fail(format!("invalid ulimit type: {name}"));
        }
        let (soft, hard) = (u.soft.unwrap_or(0), u.hard.unwrap_or(0));
        if soft > hard {
            return fail(format!(
                "ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}"
            ));
        }
    }
    Ok(())
}

fn check_network_conflicts(
    config: &ContainerConfig,
    hc: &HostConfig,
    net: &NsMode,
    uts_host: bool,
) -> Result<(), SpecError> {
    let conflict = |m: &str| Err(SpecError::Conflict(m.to_string()));
    let hostname = config.hostname.as_deref().unwrap_or_default();
    let links = hc.links.as_ref().is_some_and(|l| !l.is_empty());
    if let NsMode::Container(_) = net {
        if !hostname.is_empty() {
            return conflict("hostname and the network mode");
        }
        if links {
            return conflict("container type network can't be used with links. This would result in undefined behavior");
        }
        if hc.dns.as_ref().is_some_and(|d| !d.is_empty()) {
            return conflict("dns and the network mode");
        }
        if hc.extra_hosts.as_ref().is_some_and(|h| !h.is_empty()) {
            return conflict("custom host-to-IP mapping and the network mode");
        }
        if hc.port_bindings.as_ref().is_some_and(|p| !p.is_empty())
            || hc.publish_all_ports.unwrap_or(false)
        {
            return conflict("port publishing and the container type network mode");
        }
    }
    if uts_host && !hostname.is_empty() {
        return conflict("hostname and the UTS mode");
    }
    if uts_host && !config.domainname.as_deref().unwrap_or_default().is_empty() {
        return conflict("domainname and the UTS mode");
    }
    if *net == NsMode::Host && links {
        return conflict("host type networking can't be used with links. This would result in undefined behavior");
    }
    Ok(())
}

/// runc's rules: IPC sysctls need a private IPC namespace, net.* a network
/// namespace that is not the host's, kernel.domainname a private UTS
/// namespace; nothing else is namespaced.
fn check_sysctls(
    hc: &HostConfig,
    net: &NsMode,
    ipc: &IpcMode,
    uts_host: bool,
) -> Result<(), SpecError> {
    const IPC: &[&str] = &[
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    ];
    let mut names: Vec<&String> = hc.sysctls.iter().flatten().map(|(k, _)| k).collect();
    names.sort();
    for name in names {
        let fail = |why: &str| Err(SpecError::InvalidSysctl(format!("sysctl {name:?} {why}")));
        if IPC.contains(&name.as_str()) || name.starts_with("fs.mqueue.") {
            if *ipc == IpcMode::Host {
                return fail("is not allowed in the hosts ipc namespace");
            }
            continue;
        }
        if name.starts_with("net.") {
            if *net == NsMode::Host {
                return fail("not allowed in host network namespace");
            }
            continue;
        }
        if !uts_host && name == "kernel.domainname" {
            continue;
        }
        if !uts_host && name == "kernel.hostname" {
            return fail("is not allowed as it conflicts with the OCI \"hostname\" field");
        }
        return fail("is not in a separate kernel namespace");
    }
    Ok(())
}

fn check_devices(hc: &HostConfig) -> Result<(), SpecError> {
    for m in hc.devices.iter().flatten() {
        let (host, container, perms) = mapping_parts(m);
        let spec = format!("{host}:{container}:{perms}");
        let fail = |why: String| {
            Err(SpecError::InvalidDevice(format!(
                "invalid device mapping {spec:?}: {why}"
            )))
        };
        if !host.starts_with('/') {
            return fail(format!("{host:?} is not an absolute path"));
        }
        if !container.starts_with('/') {
            return fail(format!("{container:?} is not an absolute path"));
        }
        if perms.len() > 3 || !perms.bytes().all(|b| b"rwm".contains(&b)) {
            return fail(format!(
                "bad mode specified: {perms} (use a combination of r, w and m)"
            ));
        }
    }
    for rule in hc.device_cgroup_rules.iter().flatten() {
        parse_device_cgroup_rule(rule)?;
    }
    Ok(())
}

/// `-v`, `--mount` and `--tmpfs` each parse, and no destination is used twice.
fn check_mount_points(hc: &HostConfig) -> Result<(), SpecError> {
    let mut seen = std::collections::BTreeSet::new();
    let mut add = |dest: String| {
        if seen.insert(dest.clone()) {
            Ok(())
        } else {
            Err(SpecError::DuplicateMount(dest))
        }
    };
    for raw in hc.binds.iter().flatten() {
        add(parse_bind(raw)?.destination)?;
    }
    for m in hc.mounts.iter().flatten() {
        add(clean_path(m.target.as_deref().unwrap_or_default()))?;
    }
    let mut tmpfs: Vec<_> = hc.tmpfs.iter().flatten().collect();
    tmpfs.sort();
    for (dest, data) in tmpfs {
        check_tmpfs(dest, data)?;
        add(clean_path(dest))?;
    }
    Ok(())
}

/// `--security-opt`s this engine acts on.
#[derive(Debug, Default)]
pub(crate) struct SecurityOpts {
    pub no_new_privileges: bool,
    /// `unconfined`, `builtin`, or a profile's JSON.
    pub seccomp: Option<String>,
    pub writable_cgroups: Option<bool>,
    /// `systempaths=unconfined`: no masked or read-only paths.
    pub unconfined_system_paths: bool,
}

/// Go's strconv.ParseBool.
fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// dockerd's parseSecurityOpt; `label=` and `apparmor=` are accepted and
/// have no effect (no SELinux or AppArmor here).
pub(crate) fn parse_security_opts(opts: &[String]) -> Result<SecurityOpts, SpecError> {
    let mut out = SecurityOpts::default();
    for opt in opts {
        match opt.as_str() {
            "no-new-privileges" => {
                out.no_new_privileges = true;
                continue;
            }
            "writable-cgroups" => {
                out.writable_cgroups = Some(true);
                continue;
            }
            "disable" => continue,
            _ => {}
        }
        let split = if opt.contains('=') {
            opt.split_once('=')
        } else {
            opt.split_once(':')
        };
        let Some((key, value)) = split else {
            return Err(SpecError::InvalidSecurityOpt(format!(
                "invalid --security-opt 1: {opt:?}"
            )));
        };
        let invalid =
            || SpecError::InvalidSecurityOpt(format!("invalid --security-opt 2: {opt:?}"));
        match key {
            "label" | "apparmor" => {}
            "seccomp" => out.seccomp = Some(value.to_string()),
            "no-new-privileges" => out.no_new_privileges = parse_bool(value).ok_or_else(invalid)?,
            "writable-cgroups" => {
                out.writable_cgroups = Some(parse_bool(value).ok_or_else(invalid)?)
            }
            "systempaths" if value == "unconfined" => out.unconfined_system_paths = true,
            _ => return Err(invalid()),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the docker CLI 28 sends for `docker run busybox sh`.
    pub(crate) const BUSYBOX_SH: &str = include_str!("testdata/busybox_sh.json");

    fn request() -> (ContainerConfig, HostConfig) {
        let mut v: serde_json::Value = serde_json::from_str(BUSYBOX_SH).expect("fixture");
        let hc = serde_json::from_value(v["HostConfig"].take()).expect("host config");
        (serde_json::from_value(v).expect("config"), hc)
    }

    type Change = Box<dyn FnOnce(&mut ContainerConfig, &mut HostConfig)>;

    fn err_with(f: impl FnOnce(&mut ContainerConfig, &mut HostConfig)) -> String {
        let (mut c, mut hc) = request();
        f(&mut c, &mut hc);
        validate_create(&c, &hc)
            .expect_err("must be refused")
            .to_string()
    }

    #[test]
    fn the_cli_default_request_passes() {
        let (c, hc) = request();
        validate_create(&c, &hc).expect("valid");
    }

    #[test]
    fn messages_match_dockerd() {
        let cases: Vec<(Change, &str)> = vec![
            (Box::new(|c, _| c.cmd = None), "no command specified"),
            (Box::new(|_, h| h.memory = Some(4 << 20)), "Minimum memory limit allowed is 6MB"),
            (
                Box::new(|_, h| {
                    h.memory = Some(64 << 20);
                    h.memory_swap = Some(32 << 20);
                }),
                "Minimum memoryswap limit should be larger than memory limit, see usage",
            ),
            (
                Box::new(|_, h| h.memory_swap = Some(64 << 20)),
                "You should always set the Memory limit when using Memoryswap limit, see usage",
            ),
            (
                Box::new(|_, h| h.memory_swappiness = Some(101)),
                "Invalid value: 101, valid memory swappiness range is 0-100",
            ),
            (
                Box::new(|_, h| {
                    h.nano_cpus = Some(500_000_000);
                    h.cpu_quota = Some(50_000);
                }),
                "Conflicting options: Nano CPUs and CPU Quota cannot both be set",
            ),
            (
                Box::new(|_, h| {
                    h.nano_cpus = Some(500_000_000);
                    h.cpu_period = Some(50_000);
                }),
                "Conflicting options: Nano CPUs and CPU Period cannot both be set",
            ),
            (
                Box::new(|_, h| h.cpu_period = Some(10)),
                "CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)",
            ),
            (
                Box::new(|_, h| h.cpu_quota = Some(10)),
                "CPU cfs quota can not be less than 1ms (i.e. 1000)",
            ),
            (
                Box::new(|_, h| h.cpu_shares = Some(-2)),
                "invalid CPU shares (-2): value must be a positive integer",
            ),
            (Box::new(|_, h| h.blkio_weight = Some(5)), "Range of blkio weight is from 10 to 1000"),
            (Box::new(|_, h| h.pid_mode = Some("bogus".into())), "invalid PID mode: bogus"),
            (Box::new(|_, h| h.ipc_mode = Some("bogus".into())), "invalid IPC mode: bogus"),
            (Box::new(|_, h| h.uts_mode = Some("bogus".into())), "invalid UTS mode: bogus"),
            (Box::new(|_, h| h.userns_mode = Some("bogus".into())), "invalid USER mode: bogus"),
            (
                Box::new(|_, h| h.network_mode = Some("container:".into())),
                "invalid network mode: invalid container format container:<name|id>",
            ),
            (Box::new(|_, h| h.shm_size = Some(-1)), "SHM size can not be less than 0"),
            (
                Box::new(|_, h| h.oom_score_adj = Some(1001)),
                "Invalid value 1001, range for oom score adj is [-1000, 1000]",
            ),
            (
                Box::new(|_, h| {
                    h.restart_policy = serde_json::from_str(
                        r#"{"Name":"always","MaximumRetryCount":3}"#,
                    )
                    .ok()
                }),
                "invalid restart policy: maximum retry count can only be used with 'on-failure'",
            ),
            (
                Box::new(|_, h| {
                    h.restart_policy = serde_json::from_str(
                        r#"{"Name":"on-failure","MaximumRetryCount":-1}"#,
                    )
                    .ok()
                }),
                "invalid restart policy: maximum retry count cannot be negative",
            ),
            (
                Box::new(|_, h| {
                    h.auto_remove = Some(true);
                    h.restart_policy =
                        serde_json::from_str(r#"{"Name":"always"}"#).ok();
                }),
                "can't create 'AutoRemove' container with restart policy",
            ),
            (
                Box::new(|c, _| c.working_dir = Some("rel".into())),
                "the working directory 'rel' is invalid, it needs to be an absolute path",
            ),
            (Box::new(|c, _| c.env = Some(vec!["=x".into()])), "invalid environment variable: =x"),
            (Box::new(|c, _| c.stop_signal = Some("SIGFOO".into())), "Invalid signal: SIGFOO"),
            (
                Box::new(|_, h| h.cap_add = Some(vec!["FOO".into()])),
                "invalid CapAdd: unknown capability: \"CAP_FOO\"",
            ),
            (
                Box::new(|_, h| h.cap_drop = Some(vec!["cap_bar".into()])),
                "invalid CapDrop: unknown capability: \"CAP_BAR\"",
            ),
            (
                Box::new(|_, h| {
                    h.network_mode = Some("host".into());
                    h.sysctls = Some([("net.ipv4.ip_forward".into(), "1".into())].into());
                }),
                "sysctl \"net.ipv4.ip_forward\" not allowed in host network namespace",
            ),
            (
                Box::new(|_, h| {
                    h.ipc_mode = Some("host".into());
                    h.sysctls = Some([("kernel.shmmax".into(), "1".into())].into());
                }),
                "sysctl \"kernel.shmmax\" is not allowed in the hosts ipc namespace",
            ),
            (
                Box::new(|_, h| h.sysctls = Some([("vm.swappiness".into(), "1".into())].into())),
                "sysctl \"vm.swappiness\" is not in a separate kernel namespace",
            ),
            (
                Box::new(|_, h| {
                    h.devices = serde_json::from_str(
                        r#"[{"PathOnHost":"/dev/null","PathInContainer":"/dev/x","CgroupPermissions":"rwx"}]"#,
                    )
                    .ok()
                }),
                "invalid device mapping \"/dev/null:/dev/x:rwx\": bad mode specified: rwx (use a combination of r, w and m)",
            ),
            (
                Box::new(|_, h| h.device_cgroup_rules = Some(vec!["c 1:3 rwq".into()])),
                "invalid device cgroup rule format: 'c 1:3 rwq'",
            ),
            (
                Box::new(|_, h| h.tmpfs = Some([("/run".into(), "foo".into())].into())),
                "invalid tmpfs option [\"foo\"]",
            ),
            (
                Box::new(|_, h| h.tmpfs = Some([("run".into(), "".into())].into())),
                "invalid mount path: 'run' mount path must be absolute",
            ),
            (
                Box::new(|_, h| h.binds = Some(vec!["/tmp:data".into()])),
                "invalid volume specification: '/tmp:data': invalid mount config for type \"bind\": invalid mount path: 'data' mount path must be absolute",
            ),
            (
                Box::new(|_, h| h.binds = Some(vec!["/tmp:/data:rq".into()])),
                "invalid mode: rq",
            ),
            (
                Box::new(|_, h| h.binds = Some(vec!["/tmp".into(), "/a:/tmp".into()])),
                "Duplicate mount point: /tmp",
            ),
            (
                Box::new(|_, h| {
                    h.mounts = serde_json::from_str(
                        r#"[{"Type":"bind","Source":"/nonexistent-berth","Target":"/x"}]"#,
                    )
                    .ok()
                }),
                "invalid mount config for type \"bind\": bind source path does not exist: /nonexistent-berth",
            ),
            (
                Box::new(|_, h| h.security_opt = Some(vec!["bogus=1".into()])),
                "invalid --security-opt 2: \"bogus=1\"",
            ),
            (
                Box::new(|_, h| h.security_opt = Some(vec!["bogus".into()])),
                "invalid --security-opt 1: \"bogus\"",
            ),
            (
                Box::new(|_, h| h.ulimits = serde_json::from_str(r#"[{"Name":"nofile","Soft":10,"Hard":5}]"#).ok()),
                "ulimit soft limit must be less than or equal to hard limit: 10 > 5",
            ),
            (
                Box::new(|c, h| {
                    c.hostname = Some("x".into());
                    h.uts_mode = Some("host".into());
                }),
                "conflicting options: hostname and the UTS mode",
            ),
        ];
        for (i, (change, want)) in cases.into_iter().enumerate() {
            assert_eq!(err_with(change), want, "case {i}");
        }
        assert!(
            err_with(|_, h| h.cpuset_cpus = Some("0,4096".into()))
                .starts_with("Requested CPUs are not available - requested 0,4096, available: 0"),
            "{}",
            err_with(|_, h| h.cpuset_cpus = Some("0,4096".into()))
        );
        assert!(
            err_with(|_, h| h.security_opt = Some(vec!["seccomp={".into()]))
                .starts_with("Decoding seccomp profile failed")
        );
    }

    #[test]
    fn valid_variants_pass() {
        let (mut c, mut hc) = request();
        c.stop_signal = Some("rtmin+3".into());
        hc.security_opt = Some(vec![
            "no-new-privileges:true".into(),
            "seccomp=unconfined".into(),
            "label=disable".into(),
            "apparmor=unconfined".into(),
            "systempaths=unconfined".into(),
        ]);
        hc.sysctls = Some(
            [
                ("net.core.somaxconn".to_string(), "1024".to_string()),
                ("kernel.shmmax".to_string(), "1".to_string()),
                ("fs.mqueue.msg_max".to_string(), "10".to_string()),
                ("kernel.domainname".to_string(), "x".to_string()),
            ]
            .into(),
        );
        hc.cap_add = Some(vec!["all".into(), "net_admin".into()]);
        hc.binds = Some(vec!["/tmp:/data:ro,z".into(), "vol:/v".into()]);
        hc.tmpfs = Some([("/run".to_string(), "size=1m,exec".to_string())].into());
        // Every host has CPU 0.
        hc.cpuset_cpus = Some("0,0-0".into());
        hc.memory = Some(64 << 20);
        hc.memory_swap = Some(-1);
        validate_create(&c, &hc).expect("valid");
    }

    #[test]
    fn adapt_fills_dockerd_defaults() {
        let (_, mut hc) = request();
        hc.memory = Some(64 << 20);
        adapt_host_config(&mut hc, CgroupMode::Hybrid);
        assert_eq!(hc.memory_swap, Some(128 << 20));
        assert_eq!(hc.shm_size, Some(64 << 20));
        assert_eq!(hc.ipc_mode.as_deref(), Some("private"));
        assert_eq!(hc.cgroupns_mode, Some(HostConfigCgroupnsModeEnum::HOST));
        assert_eq!(hc.memory_swappiness, None);
        assert_eq!(hc.pids_limit, None);
        assert_eq!(hc.network_mode.as_deref(), Some("bridge"));
        let (_, mut hc) = request();
        adapt_host_config(&mut hc, CgroupMode::V2);
        assert_eq!(hc.cgroupns_mode, Some(HostConfigCgroupnsModeEnum::PRIVATE));
    }
}
