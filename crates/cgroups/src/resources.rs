//! linux.resources -> the cgroup files to write, in the order that works.
//! Everything is checked while planning, before the first write, so bad
//! input changes nothing.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    LinuxBlockIo, LinuxCpu, LinuxHugepageLimit, LinuxMemory, LinuxNetwork, LinuxResources,
    LinuxThrottleDevice,
};

use crate::cgroup::{read_file, write_file, Cgroup, Side};
use crate::devices::{device_policy, device_rules};
use crate::error::{Error, Result};

/// One planned write. `verify` reads the file back afterwards, for files
/// where the kernel silently clamps (cpu.shares).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Write {
    pub path: PathBuf,
    pub value: String,
    pub verify: bool,
}

impl Cgroup {
    /// Writes the limits of `r`. Values of 0 (or absent) leave a limit
    /// alone, as in runc. The whole request is checked first; a write the
    /// kernel refuses stops there with an error naming the file and value.
    pub fn apply(&self, r: &LinuxResources) -> Result<()> {
        let writes = self.plan(r)?;
        let device_program = match r.devices() {
            Some(list) if self.needs_device_program() => Some(device_policy(list)?),
            _ => None,
        };
        for w in writes {
            write_file(&w.path, &w.value)?;
            if w.verify {
                let actual = read_file(&w.path)?;
                if actual.trim() != w.value {
                    return Err(Error::ValueNotApplied {
                        path: w.path,
                        value: w.value,
                        actual: actual.trim().to_owned(),
                    });
                }
            }
        }
        if let Some(policy) = device_program {
            self.apply_device_program(&policy)?;
        }
        Ok(())
    }

    pub(crate) fn plan(&self, r: &LinuxResources) -> Result<Vec<Write>> {
        let mut plan = Plan::default();
        if let Some(cpu) = r.cpu() {
            self.plan_cpuset(cpu, &mut plan)?;
            self.plan_cpu(cpu, &mut plan)?;
        }
        if let Some(memory) = r.memory() {
            self.plan_memory(memory, &mut plan)?;
        }
        if let Some(pids) = r.pids() {
            let limit = pids.limit();
            match self.side("pids") {
                Some(Side::V1(dir) | Side::V2(dir)) => {
                    let value = if limit > 0 {
                        limit.to_string()
                    } else {
                        "max".into()
                    };
                    plan.push(dir, "pids.max", value);
                }
                None if limit > 0 => return Err(unavailable("pids", "pids.limit")),
                None => {}
            }
        }
        if let Some(blkio) = r.block_io() {
            self.plan_blkio(blkio, &mut plan)?;
        }
        if let Some(limits) = r.hugepage_limits() {
            self.plan_hugetlb(limits, &mut plan)?;
        }
        if let Some(devices) = r.devices() {
            let rules = device_rules(devices)?;
            match self.side("devices") {
                Some(Side::V1(dir)) => {
                    plan.push(dir, "devices.deny", "a".into());
                    for rule in rules {
                        let file = if rule.allow {
                            "devices.allow"
                        } else {
                            "devices.deny"
                        };
                        plan.push(dir, file, rule.to_string());
                    }
                }
                // cgroup2 devices are an eBPF program, attached by `apply`.
                _ if self.needs_device_program() => {}
                _ if rules.is_empty() => {}
                _ => return Err(unavailable("devices", "devices")),
            }
        }
        if let Some(network) = r.network() {
            self.plan_network(network, &mut plan)?;
        }
        if let Some(rdma) = r.rdma().as_ref().filter(|m| !m.is_empty()) {
            let dir = match self.side("rdma") {
                Some(Side::V1(dir) | Side::V2(dir)) => dir,
                None => return Err(unavailable("rdma", "rdma")),
            };
            let mut devices: Vec<_> = rdma.iter().collect();
            devices.sort_by(|a, b| a.0.cmp(b.0));
            for (device, limit) in devices {
                let mut line = device.clone();
                if let Some(n) = limit.hca_handles() {
                    line.push_str(&format!(" hca_handle={n}"));
                }
                if let Some(n) = limit.hca_objects() {
                    line.push_str(&format!(" hca_object={n}"));
                }
                plan.push(dir, "rdma.max", line);
            }
        }
        if let Some(unified) = r.unified().as_ref().filter(|m| !m.is_empty()) {
            let Some(v2) = &self.v2 else {
                return Err(unavailable("cgroup2", "unified"));
            };
            let mut keys: Vec<_> = unified.iter().collect();
            keys.sort_by(|a, b| a.0.cmp(b.0));
            for (key, value) in keys {
                if key.is_empty() || key.contains('/') || key.starts_with('.') || !key.contains('.')
                {
                    return Err(Error::InvalidValue {
                        resource: "unified",
                        value: key.clone(),
                        reason: "expected a cgroup2 file name such as memory.high",
                    });
                }
                if !v2.dir.join(key).exists() {
                    let controller = key.split('.').next().unwrap_or(key);
                    return Err(unavailable(controller, &format!("unified {key}")));
                }
                plan.push(&v2.dir, key, value.clone());
            }
        }
        Ok(plan.writes)
    }

    fn plan_cpuset(&self, cpu: &LinuxCpu, plan: &mut Plan) -> Result<()> {
        for (file, value) in [("cpuset.cpus", cpu.cpus()), ("cpuset.mems", cpu.mems())] {
            let Some(value) = value.as_deref().filter(|v| !v.trim().is_empty()) else {
                continue;
            };
            if !value
                .chars()
                .all(|c| c.is_ascii_digit() || c == ',' || c == '-')
            {
                return Err(Error::InvalidValue {
                    resource: if file == "cpuset.cpus" {
                        "cpu.cpus"
                    } else {
                        "cpu.mems"
                    },
                    value: value.to_owned(),
                    reason: "expected a list such as 0-3,5",
                });
            }
            match self.side("cpuset") {
                Some(Side::V1(dir) | Side::V2(dir)) => plan.push(dir, file, value.to_owned()),
                None => return Err(unavailable("cpuset", file)),
            }
        }
        Ok(())
    }

    fn plan_cpu(&self, cpu: &LinuxCpu, plan: &mut Plan) -> Result<()> {
        let shares = cpu.shares().unwrap_or(0);
        let quota = cpu.quota().unwrap_or(0);
        let period = cpu.period().unwrap_or(0);
        let rt_runtime = cpu.realtime_runtime().unwrap_or(0);
        let rt_period = cpu.realtime_period().unwrap_or(0);
        if quota < -1 {
            return Err(Error::InvalidValue {
                resource: "cpu.quota",
                value: quota.to_string(),
                reason: "expected -1 (unlimited) or a positive number of microseconds",
            });
        }
        let wanted = shares != 0
            || quota != 0
            || period != 0
            || rt_runtime != 0
            || rt_period != 0
            || cpu.burst().is_some()
            || cpu.idle().is_some();
        if !wanted {
            return Ok(());
        }
        match self.side("cpu") {
            Some(Side::V1(dir)) => {
                if shares != 0 {
                    plan.push_verified(dir, "cpu.shares", shares.to_string());
                }
                if period != 0 {
                    plan.push(dir, "cpu.cfs_period_us", period.to_string());
                }
                if quota != 0 {
                    plan.push(dir, "cpu.cfs_quota_us", quota.to_string());
                }
                if let Some(burst) = cpu.burst() {
                    plan.push(dir, "cpu.cfs_burst_us", burst.to_string());
                }
                if rt_period != 0 {
                    plan.push(dir, "cpu.rt_period_us", rt_period.to_string());
                }
                if rt_runtime != 0 {
                    plan.push(dir, "cpu.rt_runtime_us", rt_runtime.to_string());
                }
                if let Some(idle) = cpu.idle() {
                    plan.push(dir, "cpu.idle", idle.to_string());
                }
            }
            Some(Side::V2(dir)) => {
                if rt_runtime != 0 || rt_period != 0 {
                    return Err(Error::InvalidValue {
                        resource: "cpu.realtimeRuntime",
                        value: rt_runtime.to_string(),
                        reason: "realtime scheduling limits do not exist on cgroup v2",
                    });
                }
                if shares != 0 {
                    plan.push(dir, "cpu.weight", shares_to_weight(shares).to_string());
                }
                if quota != 0 || period != 0 {
                    let mut value = if quota > 0 {
                        quota.to_string()
                    } else {
                        "max".to_owned()
                    };
                    if period != 0 {
                        value.push_str(&format!(" {period}"));
                    }
                    plan.push(dir, "cpu.max", value);
                }
                if let Some(burst) = cpu.burst() {
                    plan.push(dir, "cpu.max.burst", burst.to_string());
                }
                if let Some(idle) = cpu.idle() {
                    plan.push(dir, "cpu.idle", idle.to_string());
                }
            }
            None => return Err(unavailable("cpu", "cpu")),
        }
        Ok(())
    }

    fn plan_memory(&self, m: &LinuxMemory, plan: &mut Plan) -> Result<()> {
        let limit = m.limit().unwrap_or(0);
        let reservation = m.reservation().unwrap_or(0);
        let swap = m.swap().unwrap_or(0);
        for (resource, value) in [
            ("memory.limit", limit),
            ("memory.reservation", reservation),
            ("memory.swap", swap),
        ] {
            if value < -1 {
                return Err(Error::InvalidValue {
                    resource,
                    value: value.to_string(),
                    reason: "expected -1 (unlimited) or a number of bytes",
                });
            }
        }
        if limit > 0 && swap > 0 && swap < limit {
            return Err(Error::InvalidValue {
                resource: "memory.swap",
                value: swap.to_string(),
                reason: "memory+swap must not be lower than the memory limit",
            });
        }
        if let Some(s) = m.swappiness().filter(|s| *s > 100) {
            return Err(Error::InvalidValue {
                resource: "memory.swappiness",
                value: s.to_string(),
                reason: "expected 0 to 100",
            });
        }
        let oom_disable = m.disable_oom_killer() == Some(true);
        // Kernel memory limits are ignored: kernels since 5.16 have no such knob.
        let wanted =
            limit != 0 || reservation != 0 || swap != 0 || oom_disable || m.swappiness().is_some();
        if !wanted {
            return Ok(());
        }
        match self.side("memory") {
            Some(Side::V1(dir)) => {
                let memsw = dir.join("memory.memsw.limit_in_bytes");
                let swap = if limit == -1 && swap == 0 && memsw.exists() {
                    -1
                } else {
                    swap
                };
                let swap_first = if limit != 0 && swap != 0 {
                    // memsw must stay >= memory at every moment: raise memsw
                    // before memory, lower memory before memsw.
                    let path = dir.join("memory.limit_in_bytes");
                    let current = read_file(&path)?;
                    let current: u64 = current.trim().parse().map_err(|_| Error::Parse {
                        file: path,
                        line: current.clone(),
                    })?;
                    swap == -1 || current < swap as u64
                } else {
                    false
                };
                let mut pair = [
                    (limit, "memory.limit_in_bytes"),
                    (swap, "memory.memsw.limit_in_bytes"),
                ];
                if swap_first {
                    pair.reverse();
                }
                for (value, file) in pair {
                    if value != 0 {
                        plan.push(dir, file, value.to_string());
                    }
                }
                if reservation != 0 {
                    plan.push(dir, "memory.soft_limit_in_bytes", reservation.to_string());
                }
                if oom_disable {
                    plan.push(dir, "memory.oom_control", "1".into());
                }
                if let Some(s) = m.swappiness() {
                    plan.push(dir, "memory.swappiness", s.to_string());
                }
            }
            // cgroup2 has no swappiness or OOM-killer switch; runc ignores both there.
            Some(Side::V2(dir)) => {
                let swap_v2 = swap_to_v2(swap, limit)?;
                let mut value = limit_to_v2(swap_v2);
                if value.is_empty() && swap > 0 {
                    // memory and memory+swap equal: no swap at all.
                    value = "0".into();
                }
                if !value.is_empty() {
                    let exists = dir.join("memory.swap.max").exists();
                    // Without swap accounting, "no limit" and "no swap" already hold.
                    if exists || (value != "max" && value != "0") {
                        plan.push(dir, "memory.swap.max", value);
                    }
                }
                if limit != 0 {
                    plan.push(dir, "memory.max", limit_to_v2(limit));
                }
                if reservation != 0 {
                    plan.push(dir, "memory.low", limit_to_v2(reservation));
                }
            }
            None => return Err(unavailable("memory", "memory")),
        }
        Ok(())
    }

    fn plan_blkio(&self, b: &LinuxBlockIo, plan: &mut Plan) -> Result<()> {
        let weight = b.weight().filter(|w| *w != 0);
        let leaf_weight = b.leaf_weight().filter(|w| *w != 0);
        let weight_devices = b.weight_device().as_deref().unwrap_or_default();
        let throttles: [(&str, &str, &[LinuxThrottleDevice]); 4] = [
            (
                "blkio.throttle.read_bps_device",
                "rbps",
                b.throttle_read_bps_device().as_deref().unwrap_or_default(),
            ),
            (
                "blkio.throttle.write_bps_device",
                "wbps",
                b.throttle_write_bps_device().as_deref().unwrap_or_default(),
            ),
            (
                "blkio.throttle.read_iops_device",
                "riops",
                b.throttle_read_iops_device().as_deref().unwrap_or_default(),
            ),
            (
                "blkio.throttle.write_iops_device",
                "wiops",
                b.throttle_write_iops_device()
                    .as_deref()
                    .unwrap_or_default(),
            ),
        ];
        let wanted = weight.is_some()
            || leaf_weight.is_some()
            || !weight_devices.is_empty()
            || throttles.iter().any(|t| !t.2.is_empty());
        if !wanted {
            return Ok(());
        }
        let device = |major: i64, minor: i64| -> Result<String> {
            if major < 0 || minor < 0 {
                return Err(Error::InvalidValue {
                    resource: "blockIO device",
                    value: format!("{major}:{minor}"),
                    reason: "expected non-negative major and minor numbers",
                });
            }
            Ok(format!("{major}:{minor}"))
        };
        match self.side("blkio").or_else(|| self.side("io")) {
            Some(Side::V1(dir)) => {
                // Kernels without CFQ only have BFQ's weight files.
                let bfq =
                    !dir.join("blkio.weight").exists() && dir.join("blkio.bfq.weight").exists();
                let (weight_file, weight_device_file) = if bfq {
                    ("blkio.bfq.weight", "blkio.bfq.weight_device")
                } else {
                    ("blkio.weight", "blkio.weight_device")
                };
                if let Some(w) = weight {
                    plan.push(dir, weight_file, w.to_string());
                }
                if let Some(w) = leaf_weight {
                    plan.push(dir, "blkio.leaf_weight", w.to_string());
                }
                for wd in weight_devices {
                    let dev = device(wd.major(), wd.minor())?;
                    if let Some(w) = wd.weight() {
                        plan.push(dir, weight_device_file, format!("{dev} {w}"));
                    }
                    if let Some(w) = wd.leaf_weight() {
                        plan.push(dir, "blkio.leaf_weight_device", format!("{dev} {w}"));
                    }
                }
                for (file, _, list) in throttles {
                    for t in list {
                        plan.push(
                            dir,
                            file,
                            format!("{} {}", device(t.major(), t.minor())?, t.rate()),
                        );
                    }
                }
            }
            // cgroup2 has no leaf weights; runc ignores them there.
            Some(Side::V2(dir)) => {
                let bfq = dir.join("io.bfq.weight").exists();
                let to_v2 = |w: u16| -> Result<String> {
                    if bfq {
                        Ok(w.to_string())
                    } else {
                        blkio_weight_to_io_weight(w).map(|w| w.to_string())
                    }
                };
                let weight_file = if bfq { "io.bfq.weight" } else { "io.weight" };
                if let Some(w) = weight {
                    plan.push(dir, weight_file, to_v2(w)?);
                }
                for wd in weight_devices {
                    if let Some(w) = wd.weight() {
                        let dev = device(wd.major(), wd.minor())?;
                        plan.push(dir, weight_file, format!("{dev} {}", to_v2(w)?));
                    }
                }
                for (_, key, list) in throttles {
                    for t in list {
                        let dev = device(t.major(), t.minor())?;
                        plan.push(dir, "io.max", format!("{dev} {key}={}", t.rate()));
                    }
                }
            }
            None => return Err(unavailable("blkio", "blockIO")),
        }
        Ok(())
    }

    fn plan_hugetlb(&self, limits: &[LinuxHugepageLimit], plan: &mut Plan) -> Result<()> {
        for l in limits {
            let size = l.page_size();
            let digits = size.trim_end_matches(|c: char| c.is_ascii_alphabetic());
            let unit = &size[digits.len()..];
            if digits.is_empty()
                || !digits.chars().all(|c| c.is_ascii_digit())
                || !["KB", "MB", "GB", "TB", "PB"].contains(&unit)
            {
                return Err(Error::InvalidValue {
                    resource: "hugepageLimits.pageSize",
                    value: size.clone(),
                    reason: "expected a size such as 2MB or 1GB",
                });
            }
            if l.limit() < -1 {
                return Err(Error::InvalidValue {
                    resource: "hugepageLimits.limit",
                    value: l.limit().to_string(),
                    reason: "expected -1 (unlimited) or a number of bytes",
                });
            }
            let (dir, file, value) = match self.side("hugetlb") {
                Some(Side::V1(dir)) => (
                    dir,
                    format!("hugetlb.{size}.limit_in_bytes"),
                    l.limit().to_string(),
                ),
                Some(Side::V2(dir)) => (dir, format!("hugetlb.{size}.max"), limit_to_v2(l.limit())),
                None => return Err(unavailable("hugetlb", &format!("hugepageLimits {size}"))),
            };
            if !dir.join(&file).exists() {
                return Err(Error::InvalidValue {
                    resource: "hugepageLimits.pageSize",
                    value: size.clone(),
                    reason: "the kernel has no huge pages of this size",
                });
            }
            plan.push(dir, &file, value.clone());
            let rsvd = format!("hugetlb.{size}.rsvd.max");
            if matches!(self.side("hugetlb"), Some(Side::V2(_))) && dir.join(&rsvd).exists() {
                plan.push(dir, &rsvd, value);
            }
        }
        Ok(())
    }

    fn plan_network(&self, n: &LinuxNetwork, plan: &mut Plan) -> Result<()> {
        if let Some(class_id) = n.class_id() {
            match self.side("net_cls") {
                Some(Side::V1(dir)) => plan.push(dir, "net_cls.classid", class_id.to_string()),
                _ => return Err(unavailable("net_cls", "network.classID")),
            }
        }
        for p in n.priorities().as_deref().unwrap_or_default() {
            match self.side("net_prio") {
                Some(Side::V1(dir)) => plan.push(
                    dir,
                    "net_prio.ifpriomap",
                    format!("{} {}", p.name(), p.priority()),
                ),
                _ => return Err(unavailable("net_prio", "network.priorities")),
            }
        }
        Ok(())
    }
}

#[derive(Default)]
struct Plan {
    writes: Vec<Write>,
}

impl Plan {
    fn push(&mut self, dir: &Path, file: &str, value: String) {
        self.writes.push(Write {
            path: dir.join(file),
            value,
            verify: false,
        });
    }

    fn push_verified(&mut self, dir: &Path, file: &str, value: String) {
        self.writes.push(Write {
            path: dir.join(file),
            value,
            verify: true,
        });
    }
}

fn unavailable(controller: &str, resource: &str) -> Error {
    Error::ControllerUnavailable {
        controller: controller.to_owned(),
        resource: resource.to_owned(),
    }
}

/// cpu.shares (2..262144, default 1024) -> cpu.weight (1..10000, default
/// 100), the same linear map runc uses.
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    1 + (shares.saturating_sub(2) * 9999) / 262142
}

/// blkio.weight (10..1000) -> io.weight (1..10000), as runc maps it.
pub fn blkio_weight_to_io_weight(weight: u16) -> Result<u64> {
    if !(10..=1000).contains(&weight) {
        return Err(Error::InvalidValue {
            resource: "blockIO.weight",
            value: weight.to_string(),
            reason: "expected 10 to 1000",
        });
    }
    Ok(1 + (u64::from(weight) - 10) * 9999 / 990)
}

/// OCI memory+swap -> cgroup2 memory.swap.max (swap alone), as runc does:
/// 0 leaves it alone, -1 is unlimited, and an unlimited memory limit with no
/// swap setting means unlimited swap too.
pub fn swap_to_v2(swap: i64, limit: i64) -> Result<i64> {
    if limit == -1 && swap == 0 {
        return Ok(-1);
    }
    if swap == -1 || swap == 0 {
        return Ok(swap);
    }
    if limit <= 0 {
        return Err(Error::InvalidValue {
            resource: "memory.swap",
            value: swap.to_string(),
            reason: "a swap limit needs a memory limit",
        });
    }
    if swap < limit {
        return Err(Error::InvalidValue {
            resource: "memory.swap",
            value: swap.to_string(),
            reason: "memory+swap must not be lower than the memory limit",
        });
    }
    Ok(swap - limit)
}

/// 0 -> "" (leave alone), -1 -> "max", else the number.
fn limit_to_v2(value: i64) -> String {
    match value {
        0 => String::new(),
        -1 => "max".into(),
        v => v.to_string(),
    }
}
