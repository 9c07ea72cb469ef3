//! `docker top` (the host's `ps`, cut down to the container's processes),
//! `docker update` (checked like dockerd, applied through the shim to a
//! running container, stored in the HostConfig either way) and
//! `docker container prune`.

use std::collections::BTreeSet;
use std::process::Command;

use berth_cgroups::Layout;
use bollard_stubs::models::{HostConfig, Resources};
use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxPids, LinuxResources};

use super::{ContainerService, Details, RestartPolicy, Status};
use crate::events::Event;
use crate::spec::{check_cpu, check_memory};
use crate::{Error, Result};

/// `--cpus`: the CFS period dockerd pairs with NanoCpus (100 ms).
const NANO_CPUS_PERIOD: u64 = 100_000;

/// `GET /containers/{id}/top`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Top {
    pub titles: Vec<String>,
    pub processes: Vec<Vec<String>>,
}

/// `POST /containers/prune`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerPruneReport {
    pub deleted: Vec<String>,
    pub space_reclaimed: u64,
}

/// An update request: Docker's `UpdateConfig` (Resources and RestartPolicy).
#[derive(Debug, Clone, Default)]
struct UpdateRequest {
    resources: Resources,
    /// None: left as it is (no name given).
    restart: Option<RestartPolicy>,
}

impl ContainerService {
    // ------------------------------------------------------------ top

    /// Runs `ps <ps_args>` (default `-ef`) on the host and keeps the header
    /// and the rows of the container's processes, as dockerd does.
    pub fn top(&self, name: &str, ps_args: &str) -> Result<Top> {
        let ps_args = if ps_args.is_empty() { "-ef" } else { ps_args };
        check_ps_args(ps_args)?;
        let entry = self.lookup(name)?;
        let shim = {
            let inner = entry.inner();
            match inner.state.status {
                Status::Restarting => {
                    return Err(Error::Conflict(format!(
                        "Container {} is restarting, wait until the container is running",
                        entry.id
                    )))
                }
                s if s.is_live() => inner.shim.clone(),
                _ => None,
            }
            .ok_or_else(|| Error::Conflict(format!("container {} is not running", entry.id)))?
        };
        let pids = shim.pids().map_err(super::shim_err)?;
        let args: Vec<&str> = ps_args.split(' ').collect();
        let pid_list: Vec<String> = pids.iter().map(i32::to_string).collect();
        let quick = format!("-q{}", pid_list.join(","));
        let output = match run_ps(&args, Some(&quick)) {
            Ok(out) => out,
            // Some ps options (such as f) do not go with -q: without it.
            Err(_) => run_ps(&args, None)?,
        };
        let top = parse_ps_output(&output, &pids)?;
        self.event(&entry, "top", &[]);
        Ok(top)
    }

    // ------------------------------------------------------------ update

    /// `docker update`: new resource limits and/or restart policy. Checked
    /// whole first (dockerd's messages); a running container gets the new
    /// limits through its runtime, then the HostConfig and restart policy
    /// are stored, so inspect shows them and the next start uses them.
    /// Returns dockerd's warnings.
    pub fn update(&self, name: &str, body: serde_json::Value) -> Result<Vec<String>> {
        let mut request = parse_update_body(body)?;
        let host = UpdateHost::current()?;
        let warnings = validate_update(&mut request.resources, &host)?;
        let entry = self.lookup(name)?;
        let _ops = entry.ops();
        let (mut updated, shim) = {
            let inner = entry.inner();
            let cannot =
                |why: &str| Error::Conflict(format!("Cannot update container {}: {why}", entry.id));
            if matches!(inner.state.status, Status::Removing | Status::Dead) {
                return Err(cannot(
                    "container is marked for removal and cannot be \"update\"",
                ));
            }
            let mut record = inner.record.clone();
            merge_update(&mut record.host_config, &request.resources).map_err(|m| cannot(&m))?;
            if let Some(policy) = &request.restart {
                if policy.name != "no" && record.host_config.auto_remove == Some(true) {
                    return Err(cannot(
                        "Restart policy cannot be updated because AutoRemove is enabled for the container",
                    ));
                }
                record.restart = policy.clone();
            }
            let shim = inner.shim.clone().filter(|_| inner.state.status.is_live());
            (record, shim)
        };
        if let Some(shim) = shim {
            let resources = update_resources(&request.resources);
            let json = serde_json::to_value(&resources)
                .map_err(|e| Error::Internal(format!("update resources: {e}")))?;
            match shim.update(&json) {
                // Exited meanwhile: the stored limits apply at the next start.
                Ok(()) | Err(berth_shim::Error::NotRunning(_)) => {}
                Err(berth_shim::Error::Runtime(msg)) => {
                    return Err(Error::Internal(format!(
                        "Cannot update container {}: {msg}",
                        entry.id
                    )))
                }
                Err(e) => return Err(super::shim_err(e)),
            }
        }
        {
            let mut inner = entry.inner();
            // The restart count is the monitor's; keep whatever it is now.
            updated.restart_count = inner.record.restart_count;
            let previous = std::mem::replace(&mut inner.record, updated);
            if let Err(e) = self.save_record(&entry, &inner) {
                inner.record = previous;
                return Err(e);
            }
        }
        self.event(&entry, "update", &[]);
        Ok(warnings)
    }

    // ------------------------------------------------------------ prune

    /// `docker container prune`: removes every container that is not
    /// running, paused or restarting, unless `keep` says otherwise
    /// (filters). A container that cannot be removed is skipped.
    pub fn prune(&self, keep: impl Fn(&Details) -> bool) -> Result<ContainerPruneReport> {
        let mut report = ContainerPruneReport::default();
        for d in self.list() {
            let status = d.state.status;
            if status.is_live() || matches!(status, Status::Restarting | Status::Removing) {
                continue;
            }
            if keep(&d) {
                continue;
            }
            let size = self.size_rw(&d.id).unwrap_or(0);
            match self.remove(&d.id, false) {
                Ok(()) => {
                    report.space_reclaimed += size;
                    report.deleted.push(d.id);
                }
                Err(e) => tracing::warn!("failed to prune container {}: {e}", d.id),
            }
        }
        let attrs = std::collections::BTreeMap::from([(
            "reclaimed".to_string(),
            report.space_reclaimed.to_string(),
        )]);
        let mut event = Event::new("container", "prune", "", attrs);
        // dockerd's prune event names no container, so no legacy `id`.
        event.id = None;
        self.events.publish(event);
        Ok(report)
    }
}

// ---------------------------------------------------------------- top

/// dockerd refuses renaming another column to `PID…` (`-o user=PID`): its
/// pattern `\s+([^\s]*)=\s*(PID[^\s]*)`, with the longest key first.
fn check_ps_args(ps_args: &str) -> Result<()> {
    let words: Vec<&str> = ps_args.split_ascii_whitespace().collect();
    for (i, word) in words.iter().enumerate().skip(1) {
        for (at, _) in word
            .match_indices('=')
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
        {
            let (key, value) = (&word[..at], &word[at + 1..]);
            let value = if value.is_empty() {
                words.get(i + 1).copied().unwrap_or("")
            } else {
                value
            };
            if !value.starts_with("PID") {
                continue;
            }
            if key != "pid" {
                return Err(Error::InvalidArgument(format!(
                    "specifying \"{key}={value}\" is not allowed"
                )));
            }
            break;
        }
    }
    Ok(())
}

/// `ps <args> [-q<pids>]`: its stdout, or the first line of its stderr.
fn run_ps(args: &[&str], quick: Option<&str>) -> Result<Vec<u8>> {
    let mut command = Command::new("ps");
    command.args(args).args(quick);
    let out = command
        .output()
        .map_err(|e| Error::io("run ps".to_string(), e))?;
    if out.status.success() {
        return Ok(out.stdout);
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let first = stderr.lines().next().unwrap_or("").trim();
    Err(Error::InvalidArgument(if first.is_empty() {
        format!("ps: {}", out.status)
    } else {
        first.to_string()
    }))
}

/// Fields split on ASCII whitespace only, as dockerd does.
fn fields_ascii(line: &str) -> Vec<String> {
    line.split([' ', '\t', '\n', '\x0c', '\r'])
        .filter(|f| !f.is_empty())
        .map(str::to_string)
        .collect()
}

/// Keeps the rows whose PID is one of `pids` (and the thread rows, PID `-`,
/// that follow one); the last column takes the rest of the line.
fn parse_ps_output(output: &[u8], pids: &[i32]) -> Result<Top> {
    let text = String::from_utf8_lossy(output);
    let mut lines = text.split('\n');
    let titles = fields_ascii(lines.next().unwrap_or(""));
    let pid_index = titles
        .iter()
        .position(|t| t == "PID")
        .ok_or_else(|| Error::InvalidArgument("Couldn't find PID field in ps output".into()))?;
    let mut processes = Vec::new();
    let mut after_ours = false;
    let mut push = |fields: Vec<String>| {
        let keep = titles.len().saturating_sub(1).min(fields.len());
        let mut row: Vec<String> = fields[..keep].to_vec();
        row.push(fields[keep..].join(" "));
        processes.push(row);
    };
    for line in lines.filter(|l| !l.is_empty()) {
        let fields = fields_ascii(line);
        let Some(pid) = fields.get(pid_index) else {
            continue;
        };
        if pid == "-" {
            if after_ours {
                push(fields);
            }
            continue;
        }
        let pid: i32 = pid
            .parse()
            .map_err(|_| Error::Internal(format!("Unexpected pid '{pid}' in ps output")))?;
        after_ours = pids.contains(&pid);
        if after_ours {
            push(fields);
        }
    }
    Ok(Top { titles, processes })
}

// ---------------------------------------------------------------- update

/// Takes `RestartPolicy` out first: Berth knows a policy name
/// (`on-unhealthy`) bollard's model does not.
fn parse_update_body(body: serde_json::Value) -> Result<UpdateRequest> {
    let serde_json::Value::Object(mut body) = body else {
        return Err(Error::InvalidArgument(
            "invalid JSON: the update config must be an object".to_string(),
        ));
    };
    let restart = match body.remove("RestartPolicy") {
        Some(serde_json::Value::Object(r)) => {
            let name = r.get("Name").and_then(|v| v.as_str()).unwrap_or("");
            let count = r
                .get("MaximumRetryCount")
                .and_then(|v| v.as_i64())
                .unwrap_or(0);
            if name.is_empty() {
                None
            } else {
                Some(RestartPolicy::parse(name, count).map_err(Error::InvalidArgument)?)
            }
        }
        None | Some(serde_json::Value::Null) => None,
        Some(_) => {
            return Err(Error::InvalidArgument(
                "invalid JSON: RestartPolicy must be an object".to_string(),
            ))
        }
    };
    let resources: Resources = serde_json::from_value(serde_json::Value::Object(body))
        .map_err(|e| Error::InvalidArgument(format!("invalid JSON in the update config: {e}")))?;
    Ok(UpdateRequest { resources, restart })
}

/// What the update checks read from the host.
struct UpdateHost {
    cpus: i64,
    /// The kernel limits memory+swap (v1 memsw files; always on cgroup2).
    swap_limit: bool,
    /// The root cpuset's CPUs and memory nodes, `None` if unknown.
    cpuset_cpus: Option<BTreeSet<u32>>,
    cpuset_mems: Option<BTreeSet<u32>>,
}

impl UpdateHost {
    fn current() -> Result<UpdateHost> {
        let layout = berth_cgroups::detect()
            .map_err(|e| Error::Internal(format!("detecting the cgroup layout: {e}")))?;
        Ok(UpdateHost::from_layout(&layout))
    }

    fn from_layout(layout: &Layout) -> UpdateHost {
        let read_list = |path: std::path::PathBuf| {
            std::fs::read_to_string(path)
                .ok()
                .and_then(|s| parse_uint_list(s.trim()))
        };
        let swap_limit = match layout.v1_hierarchy("memory") {
            Some(m) => m.mount_point.join("memory.memsw.limit_in_bytes").exists(),
            None => layout.v2.is_some(),
        };
        // The CPUs and memory nodes of the root cpuset, as dockerd's sysinfo.
        let (cpus, mems) = match (layout.v1_hierarchy("cpuset"), &layout.v2) {
            (Some(h), _) => (
                h.mount_point.join("cpuset.cpus"),
                h.mount_point.join("cpuset.mems"),
            ),
            (None, Some(v2)) => (
                v2.mount_point.join("cpuset.cpus.effective"),
                v2.mount_point.join("cpuset.mems.effective"),
            ),
            (None, None) => Default::default(),
        };
        UpdateHost {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()) as i64,
            swap_limit,
            cpuset_cpus: read_list(cpus),
            cpuset_mems: read_list(mems),
        }
    }
}

/// `0-3,5`: the numbers it names, or None if malformed (an empty list is
/// an empty set).
fn parse_uint_list(list: &str) -> Option<BTreeSet<u32>> {
    let mut out = BTreeSet::new();
    if list.is_empty() {
        return Some(out);
    }
    for part in list.split(',') {
        let num = |s: &str| -> Option<u32> {
            (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .then(|| s.parse().ok())
                .flatten()
        };
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (num(a)?, num(b)?);
                if a > b {
                    return None;
                }
                out.extend(a..=b);
            }
            None => {
                out.insert(num(part)?);
            }
        }
    }
    Some(out)
}

/// dockerd's checks of an update's resources (`verifyPlatformContainerResources`
/// with `update` set), its messages; may set MemorySwap to -1 with a warning
/// as dockerd does on a host without swap accounting.
fn validate_update(r: &mut Resources, host: &UpdateHost) -> Result<Vec<String>> {
    let fail = |m: String| Err(Error::InvalidArgument(m));
    let mut warnings = Vec::new();
    let memory = r.memory.unwrap_or(0);
    if memory > 0 && r.memory_swap.unwrap_or(0) != -1 && !host.swap_limit {
        warnings.push("Your kernel does not support swap limit capabilities or the cgroup is not mounted. Memory limited without swap.".to_string());
        r.memory_swap = Some(-1);
    }
    let invalid = |m: String| Error::InvalidArgument(m);
    check_memory(
        memory,
        r.memory_swap.unwrap_or(0),
        r.memory_reservation.unwrap_or(0),
    )
    .map_err(invalid)?;
    check_cpu(
        r.nano_cpus.unwrap_or(0),
        r.cpu_period.unwrap_or(0),
        r.cpu_quota.unwrap_or(0),
        r.cpu_shares.unwrap_or(0),
        host.cpus,
    )
    .map_err(invalid)?;
    for (what, list, available) in [
        ("cpus", r.cpuset_cpus.as_deref(), &host.cpuset_cpus),
        ("mems", r.cpuset_mems.as_deref(), &host.cpuset_mems),
    ] {
        let Some(list) = list.filter(|l| !l.is_empty()) else {
            continue;
        };
        let Some(wanted) = parse_uint_list(list) else {
            return fail(format!(
                "Invalid value {list} for cpuset {what}: invalid format: {list}"
            ));
        };
        if let Some(available) = available {
            if !wanted.is_subset(available) {
                let (kind, shown) = if what == "cpus" {
                    ("CPUs", list_text(available))
                } else {
                    ("memory nodes", list_text(available))
                };
                return fail(format!(
                    "Requested {kind} are not available - requested {list}, available: {shown}"
                ));
            }
        }
    }
    if let Some(w) = r.blkio_weight.filter(|w| *w != 0) {
        if !(10..=1000).contains(&w) {
            return fail("Range of blkio weight is from 10 to 1000".into());
        }
    }
    if r.io_maximum_bandwidth.unwrap_or(0) != 0 || r.io_maximum_iops.unwrap_or(0) != 0 {
        return fail(
            "Invalid QoS settings: linux does not support Maximum IO Bandwidth or Maximum IO IOps"
                .into(),
        );
    }
    Ok(warnings)
}

/// `0-3,5` from a set, as the kernel prints cpuset lists.
fn list_text(set: &BTreeSet<u32>) -> String {
    let mut parts = Vec::new();
    let mut iter = set.iter().copied().peekable();
    while let Some(start) = iter.next() {
        let mut end = start;
        while iter.peek() == Some(&(end + 1)) {
            end += 1;
            iter.next();
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
    }
    parts.join(",")
}

/// dockerd's `UpdateContainer`: the request's non-zero values replace the
/// stored ones, after its conflict checks against what is stored.
fn merge_update(hc: &mut HostConfig, r: &Resources) -> std::result::Result<(), String> {
    let set = |v: Option<i64>| v.filter(|v| *v != 0);
    let stored = |v: Option<i64>| v.unwrap_or(0);
    if set(r.nano_cpus).is_some_and(|n| n > 0) {
        if stored(hc.cpu_period) > 0 {
            return Err("Conflicting options: Nano CPUs cannot be updated as CPU Period has already been set".into());
        }
        if stored(hc.cpu_quota) > 0 {
            return Err("Conflicting options: Nano CPUs cannot be updated as CPU Quota has already been set".into());
        }
    }
    if stored(hc.nano_cpus) > 0 {
        if r.cpu_period.unwrap_or(0) > 0 {
            return Err("Conflicting options: CPU Period cannot be updated as NanoCPUs has already been set".into());
        }
        if r.cpu_quota.unwrap_or(0) > 0 {
            return Err(
                "Conflicting options: CPU Quota cannot be updated as NanoCPUs has already been set"
                    .into(),
            );
        }
    }
    if let Some(memory) = set(r.memory) {
        if memory > stored(hc.memory_swap) && r.memory_swap.unwrap_or(0) == 0 {
            return Err("Memory limit should be smaller than already set memoryswap limit, update the memoryswap at the same time".into());
        }
        hc.memory = Some(memory);
    }
    if let Some(w) = r.blkio_weight.filter(|w| *w != 0) {
        hc.blkio_weight = Some(w);
    }
    for (dst, src) in [
        (&mut hc.cpu_shares, r.cpu_shares),
        (&mut hc.nano_cpus, r.nano_cpus),
        (&mut hc.cpu_period, r.cpu_period),
        (&mut hc.cpu_quota, r.cpu_quota),
        (&mut hc.memory_swap, r.memory_swap),
        (&mut hc.memory_reservation, r.memory_reservation),
        (&mut hc.cpu_realtime_period, r.cpu_realtime_period),
        (&mut hc.cpu_realtime_runtime, r.cpu_realtime_runtime),
    ] {
        if let Some(v) = set(src) {
            *dst = Some(v);
        }
    }
    for (dst, src) in [
        (&mut hc.cpuset_cpus, &r.cpuset_cpus),
        (&mut hc.cpuset_mems, &r.cpuset_mems),
    ] {
        if let Some(v) = src.as_ref().filter(|v| !v.is_empty()) {
            *dst = Some(v.clone());
        }
    }
    if let Some(limit) = r.pids_limit {
        // 0 and -1 both mean unlimited; stored as no limit, as at create.
        hc.pids_limit = (limit > 0).then_some(limit);
    }
    Ok(())
}

/// The OCI resources for the runtime's `update`, from the request alone
/// (dockerd's `toContainerdResources`): what is 0 or absent is left as the
/// cgroup has it.
fn update_resources(r: &Resources) -> LinuxResources {
    let mut out = LinuxResources::default();
    if let Some(w) = r.blkio_weight.filter(|w| *w != 0) {
        let mut b = LinuxBlockIo::default();
        b.set_weight(Some(w));
        out.set_block_io(Some(b));
    }
    let mut cpu = LinuxCpu::default();
    cpu.set_cpus(r.cpuset_cpus.clone().filter(|c| !c.is_empty()));
    cpu.set_mems(r.cpuset_mems.clone().filter(|m| !m.is_empty()));
    if let Some(shares) = r.cpu_shares.filter(|s| *s > 0) {
        cpu.set_shares(Some(shares as u64));
    }
    let nano = r.nano_cpus.unwrap_or(0);
    let (mut period, mut quota) = (0u64, 0i64);
    if nano != 0 {
        period = NANO_CPUS_PERIOD;
        quota = (i128::from(nano) * i128::from(NANO_CPUS_PERIOD) / 1_000_000_000) as i64;
    }
    if quota == 0 {
        quota = r.cpu_quota.unwrap_or(0);
    }
    if period == 0 {
        period = r.cpu_period.unwrap_or(0).max(0) as u64;
    }
    cpu.set_period((period != 0).then_some(period));
    cpu.set_quota((quota != 0).then_some(quota));
    cpu.set_realtime_period(r.cpu_realtime_period.filter(|p| *p > 0).map(|p| p as u64));
    cpu.set_realtime_runtime(r.cpu_realtime_runtime.filter(|r| *r != 0));
    if cpu != LinuxCpu::default() {
        out.set_cpu(Some(cpu));
    }
    let nonzero = |v: Option<i64>| v.filter(|v| *v != 0);
    let (limit, reservation, swap) = (
        nonzero(r.memory),
        nonzero(r.memory_reservation),
        nonzero(r.memory_swap),
    );
    if limit.is_some() || reservation.is_some() || swap.is_some() {
        let mut m = LinuxMemory::default();
        m.set_limit(limit);
        m.set_reservation(reservation);
        m.set_swap(swap);
        out.set_memory(Some(m));
    }
    if let Some(limit) = r.pids_limit {
        let mut p = LinuxPids::default();
        // runc (and berth-runtime) need -1 to lift a limit.
        p.set_limit(if limit > 0 { limit } else { -1 });
        out.set_pids(Some(p));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> UpdateHost {
        UpdateHost {
            cpus: 2,
            swap_limit: true,
            cpuset_cpus: parse_uint_list("0-1"),
            cpuset_mems: parse_uint_list("0"),
        }
    }

    fn resources(json: serde_json::Value) -> Resources {
        parse_update_body(json).expect("parses").resources
    }

    fn refused(json: serde_json::Value) -> String {
        let mut r = resources(json);
        validate_update(&mut r, &host())
            .expect_err("refused")
            .to_string()
    }

    #[test]
    fn update_values_checked_with_dockerds_messages() {
        assert_eq!(
            refused(serde_json::json!({"Memory": 4 << 20})),
            "Minimum memory limit allowed is 6MB"
        );
        assert_eq!(
            refused(serde_json::json!({"Memory": 300 << 20, "MemorySwap": 200 << 20})),
            "Minimum memoryswap limit should be larger than memory limit, see usage"
        );
        assert_eq!(
            refused(serde_json::json!({"NanoCpus": 500_000_000, "CpuQuota": 50_000})),
            "Conflicting options: Nano CPUs and CPU Quota cannot both be set"
        );
        assert_eq!(
            refused(serde_json::json!({"NanoCpus": 3_000_000_000i64})),
            "range of CPUs is from 0.01 to 2.00, as there are only 2 CPUs available"
        );
        assert_eq!(
            refused(serde_json::json!({"CpuPeriod": 10})),
            "CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)"
        );
        assert_eq!(
            refused(serde_json::json!({"BlkioWeight": 5})),
            "Range of blkio weight is from 10 to 1000"
        );
        assert_eq!(
            refused(serde_json::json!({"CpusetCpus": "1-x"})),
            "Invalid value 1-x for cpuset cpus: invalid format: 1-x"
        );
        assert_eq!(
            refused(serde_json::json!({"CpusetCpus": "0,5"})),
            "Requested CPUs are not available - requested 0,5, available: 0-1"
        );
        // Swap alone is fine on update (not at create).
        let mut r = resources(serde_json::json!({"MemorySwap": 256 << 20}));
        assert!(validate_update(&mut r, &host()).expect("ok").is_empty());
    }

    #[test]
    fn no_swap_accounting_limits_memory_without_swap() {
        let mut r = resources(serde_json::json!({"Memory": 64 << 20}));
        let mut h = host();
        h.swap_limit = false;
        let warnings = validate_update(&mut r, &h).expect("ok");
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert_eq!(r.memory_swap, Some(-1));
    }

    #[test]
    fn restart_policies_in_update_bodies() {
        let r = parse_update_body(
            serde_json::json!({"RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 3}}),
        )
        .expect("ok");
        assert_eq!(
            r.restart,
            Some(RestartPolicy {
                name: "on-failure".into(),
                maximum_retry_count: 3
            })
        );
        let r = parse_update_body(serde_json::json!({"RestartPolicy": {"Name": "on-unhealthy"}}))
            .expect("ok");
        assert_eq!(r.restart.map(|p| p.name), Some("on-unhealthy".to_string()));
        // No name: left alone.
        let r = parse_update_body(
            serde_json::json!({"Memory": 0, "RestartPolicy": {"Name": "", "MaximumRetryCount": 0}}),
        )
        .expect("ok");
        assert_eq!(r.restart, None);
        let e = parse_update_body(
            serde_json::json!({"RestartPolicy": {"Name": "always", "MaximumRetryCount": 2}}),
        )
        .expect_err("refused")
        .to_string();
        assert!(
            e.contains("maximum retry count can only be used with 'on-failure'"),
            "{e}"
        );
    }

    #[test]
    fn merged_like_dockerds_update_container() {
        let mut hc = HostConfig {
            memory: Some(64 << 20),
            memory_swap: Some(128 << 20),
            nano_cpus: Some(1_000_000_000),
            pids_limit: Some(10),
            ..Default::default()
        };
        let e = merge_update(
            &mut hc,
            &resources(serde_json::json!({"Memory": 256 << 20})),
        )
        .expect_err("over the stored swap");
        assert_eq!(e, "Memory limit should be smaller than already set memoryswap limit, update the memoryswap at the same time");
        let e = merge_update(
            &mut hc,
            &resources(serde_json::json!({"CpuPeriod": 50_000})),
        )
        .expect_err("period with nano");
        assert_eq!(
            e,
            "Conflicting options: CPU Period cannot be updated as NanoCPUs has already been set"
        );
        assert_eq!(
            hc.memory,
            Some(64 << 20),
            "a refused update changes nothing"
        );

        merge_update(
            &mut hc,
            &resources(serde_json::json!({
                "Memory": 128 << 20, "MemorySwap": 256 << 20, "NanoCpus": 500_000_000,
                "CpuShares": 0, "CpusetCpus": "", "PidsLimit": 20, "BlkioWeight": 0,
            })),
        )
        .expect("merged");
        assert_eq!(hc.memory, Some(128 << 20));
        assert_eq!(hc.memory_swap, Some(256 << 20));
        assert_eq!(hc.nano_cpus, Some(500_000_000));
        assert_eq!(hc.pids_limit, Some(20));
        assert_eq!(hc.cpu_shares, None);
        merge_update(&mut hc, &resources(serde_json::json!({"PidsLimit": -1}))).expect("merged");
        assert_eq!(hc.pids_limit, None);
    }

    #[test]
    fn runtime_resources_from_the_request_only() {
        let r = update_resources(&resources(serde_json::json!({
            "Memory": 128 << 20, "MemorySwap": 256 << 20, "NanoCpus": 500_000_000,
            "PidsLimit": 20, "CpuShares": 0, "CpusetCpus": "", "BlkioWeight": 0,
        })));
        let json = serde_json::to_value(&r).expect("json");
        assert_eq!(json["memory"]["limit"], 128 << 20);
        assert_eq!(json["memory"]["swap"], 256 << 20);
        assert!(json["memory"].get("reservation").is_none());
        assert_eq!(json["cpu"]["period"], 100_000);
        assert_eq!(json["cpu"]["quota"], 50_000);
        assert!(json["cpu"].get("cpus").is_none());
        assert!(json["cpu"].get("shares").is_none());
        assert_eq!(json["pids"]["limit"], 20);
        assert!(json.get("blockIO").is_none());

        let r = update_resources(&resources(serde_json::json!({"PidsLimit": 0})));
        assert_eq!(serde_json::to_value(&r).expect("json")["pids"]["limit"], -1);
        let r = update_resources(&resources(serde_json::json!({"BlkioWeight": 300})));
        let json = serde_json::to_value(&r).expect("json");
        assert_eq!(json["blockIO"]["weight"], 300);
        assert!(json.get("cpu").is_none() && json.get("memory").is_none());
    }

    #[test]
    fn ps_output_cut_to_the_containers_processes() {
        let out = b"UID        PID  PPID  C STIME TTY          TIME CMD\n\
root         1     0  0 14:51 ?        00:00:46 /sbin/init splash\n\
root       100     1  0 14:52 ?        00:00:00 sleep 1000\n\
root       101   100  0 14:52 ?        00:00:00 sh -c while :; do :; done\n";
        let top = parse_ps_output(out, &[100, 101]).expect("parsed");
        assert_eq!(
            top.titles,
            ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
        );
        assert_eq!(top.processes.len(), 2);
        assert_eq!(top.processes[0][1], "100");
        assert_eq!(top.processes[0][7], "sleep 1000");
        assert_eq!(top.processes[1][7], "sh -c while :; do :; done");

        // Thread rows (`-m`) follow their process.
        let out = b"  PID TTY      STAT   TIME COMMAND\n  100 ?        -      0:00 sleep\n    - -        S      0:00 -\n  200 ?        -      0:00 other\n    - -        S      0:00 -\n";
        let top = parse_ps_output(out, &[100]).expect("parsed");
        assert_eq!(top.processes.len(), 2);
        assert_eq!(top.processes[1][0], "-");

        let e = parse_ps_output(b"COMMAND\nsleep\n", &[1]).expect_err("no PID");
        assert_eq!(e.to_string(), "Couldn't find PID field in ps output");
    }

    #[test]
    fn ps_args_renaming_the_pid_column_are_refused() {
        assert!(check_ps_args("-ef").is_ok());
        assert!(check_ps_args("-o pid=PID,comm").is_ok());
        let e = check_ps_args("-o user=PID").expect_err("refused");
        assert_eq!(e.to_string(), "specifying \"user=PID\" is not allowed");
    }

    #[test]
    fn uint_lists() {
        assert_eq!(
            parse_uint_list("0-2,5").map(|s| s.into_iter().collect::<Vec<_>>()),
            Some(vec![0, 1, 2, 5])
        );
        assert_eq!(parse_uint_list("2-1"), None);
        assert_eq!(parse_uint_list("a"), None);
        assert_eq!(
            list_text(&parse_uint_list("0-3,5,7-8").expect("list")),
            "0-3,5,7-8"
        );
    }
}
