//! `docker stats`: one sample of a container's cgroup counters in dockerd's
//! JSON shape (v1 or v2 keys, as dockerd gives them per cgroup version) with
//! the host's CPU time from /proc/stat; and one sample of every running
//! container at once for Berth's `GET /containers/stats`. Samples hold no
//! state: the API pairs consecutive ones (`precpu_stats`) for streams.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use berth_cgroups::{Cgroup, Layout, Mode};
use bollard_stubs::models::HostConfig;
use serde::Serialize;

use super::{record, ContainerService, Entry};
use crate::{Error, Result};

/// Clock ticks per second in /proc/stat (USER_HZ, 100 on every Linux ABI).
const USER_HZ: u64 = 100;

/// memory_stats.stats keys dockerd gives on cgroup v1 (containerd's v1
/// metrics), in its order; a key the kernel lacks is 0.
const V1_MEMORY_KEYS: &[&str] = &[
    "cache",
    "rss",
    "rss_huge",
    "mapped_file",
    "dirty",
    "writeback",
    "pgpgin",
    "pgpgout",
    "pgfault",
    "pgmajfault",
    "inactive_anon",
    "active_anon",
    "inactive_file",
    "active_file",
    "unevictable",
    "hierarchical_memory_limit",
    "hierarchical_memsw_limit",
    "total_cache",
    "total_rss",
    "total_rss_huge",
    "total_mapped_file",
    "total_dirty",
    "total_writeback",
    "total_pgpgin",
    "total_pgpgout",
    "total_pgfault",
    "total_pgmajfault",
    "total_inactive_anon",
    "total_active_anon",
    "total_inactive_file",
    "total_active_file",
    "total_unevictable",
];

/// memory_stats.stats keys dockerd gives on cgroup v2.
const V2_MEMORY_KEYS: &[&str] = &[
    "anon",
    "file",
    "kernel_stack",
    "slab",
    "sock",
    "shmem",
    "file_mapped",
    "file_dirty",
    "file_writeback",
    "anon_thp",
    "inactive_anon",
    "active_anon",
    "inactive_file",
    "active_file",
    "unevictable",
    "slab_reclaimable",
    "slab_unreclaimable",
    "pgfault",
    "pgmajfault",
    "workingset_refault",
    "workingset_activate",
    "workingset_nodereclaim",
    "pgrefill",
    "pgscan",
    "pgsteal",
    "pgactivate",
    "pgdeactivate",
    "pglazyfree",
    "pglazyfreed",
    "thp_fault_alloc",
    "thp_collapse_alloc",
];

fn is_zero(v: &u64) -> bool {
    *v == 0
}

fn is_zero_u32(v: &u32) -> bool {
    *v == 0
}

/// One `GET /containers/{id}/stats` object, field for field as dockerd
/// encodes it (Go's `omitempty` where dockerd has it). `networks` is left
/// out: Berth's containers have no network of their own yet (network
/// `none` has none in dockerd either).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ContainerStats {
    pub read: String,
    pub preread: String,
    pub pids_stats: PidsStats,
    pub blkio_stats: BlkioStats,
    pub num_procs: u32,
    pub storage_stats: StorageStats,
    pub cpu_stats: CpuStats,
    pub precpu_stats: CpuStats,
    pub memory_stats: MemoryStats,
    pub name: String,
    pub id: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PidsStats {
    #[serde(skip_serializing_if = "is_zero")]
    pub current: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub limit: u64,
}

/// `null` lists are what dockerd sends for counters it does not have.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct BlkioStats {
    pub io_service_bytes_recursive: Option<Vec<BlkioStatEntry>>,
    pub io_serviced_recursive: Option<Vec<BlkioStatEntry>>,
    pub io_queue_recursive: Option<Vec<BlkioStatEntry>>,
    pub io_service_time_recursive: Option<Vec<BlkioStatEntry>>,
    pub io_wait_time_recursive: Option<Vec<BlkioStatEntry>>,
    pub io_merged_recursive: Option<Vec<BlkioStatEntry>>,
    pub io_time_recursive: Option<Vec<BlkioStatEntry>>,
    pub sectors_recursive: Option<Vec<BlkioStatEntry>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BlkioStatEntry {
    pub major: u64,
    pub minor: u64,
    pub op: String,
    pub value: u64,
}

/// Windows only in dockerd; always `{}` on Linux.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StorageStats {}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CpuStats {
    pub cpu_usage: CpuUsage,
    /// Nanoseconds of CPU time of the whole host (all CPUs), from /proc/stat.
    #[serde(skip_serializing_if = "is_zero")]
    pub system_cpu_usage: u64,
    #[serde(skip_serializing_if = "is_zero_u32")]
    pub online_cpus: u32,
    pub throttling_data: ThrottlingData,
}

/// Nanoseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CpuUsage {
    pub total_usage: u64,
    /// cgroup v1 only.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub percpu_usage: Vec<u64>,
    pub usage_in_kernelmode: u64,
    pub usage_in_usermode: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ThrottlingData {
    pub periods: u64,
    pub throttled_periods: u64,
    /// Nanoseconds.
    pub throttled_time: u64,
}

/// Bytes. `limit` is the machine's memory when the cgroup has none.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct MemoryStats {
    #[serde(skip_serializing_if = "is_zero")]
    pub usage: u64,
    /// cgroup v1 only.
    #[serde(skip_serializing_if = "is_zero")]
    pub max_usage: u64,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub stats: BTreeMap<String, u64>,
    /// v1: memory.failcnt; v2: the `oom` count of memory.events.
    #[serde(skip_serializing_if = "is_zero")]
    pub failcnt: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub limit: u64,
}

impl ContainerStats {
    /// What dockerd answers for a container that does not run: zeros, and
    /// its name and id.
    fn empty(name: &str, id: &str) -> ContainerStats {
        ContainerStats {
            read: record::ZERO_TIME.to_string(),
            preread: record::ZERO_TIME.to_string(),
            pids_stats: PidsStats::default(),
            blkio_stats: BlkioStats::default(),
            num_procs: 0,
            storage_stats: StorageStats::default(),
            cpu_stats: CpuStats::default(),
            precpu_stats: CpuStats::default(),
            memory_stats: MemoryStats::default(),
            name: format!("/{name}"),
            id: id.to_string(),
        }
    }

    /// Whether this sample came from a running container (an empty one has
    /// the zero time).
    pub fn is_sampled(&self) -> bool {
        self.read != record::ZERO_TIME
    }

    /// Makes `previous` the sample this one is compared with (`precpu_stats`
    /// and `preread`), as dockerd's streams do.
    pub fn follow(&mut self, previous: &ContainerStats) {
        self.precpu_stats = previous.cpu_stats.clone();
        self.preread = previous.read.clone();
    }
}

/// What samples need from the host, read once per daemon.
struct HostView {
    layout: Layout,
    /// MemTotal in bytes: the limit shown for containers without one.
    machine_memory: u64,
}

fn host_view() -> Result<&'static HostView> {
    static VIEW: OnceLock<HostView> = OnceLock::new();
    if let Some(view) = VIEW.get() {
        return Ok(view);
    }
    let layout = berth_cgroups::detect()
        .map_err(|e| Error::Internal(format!("detecting the cgroup layout: {e}")))?;
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let view = HostView {
        layout,
        machine_memory: mem_total(&meminfo),
    };
    Ok(VIEW.get_or_init(|| view))
}

/// `MemTotal:  24684092 kB` in bytes; 0 if absent.
fn mem_total(meminfo: &str) -> u64 {
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// The host's CPU time and CPU count, as dockerd reads them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SystemCpu {
    /// Nanoseconds: user+nice+system+idle+iowait+irq+softirq of the `cpu` line.
    usage: u64,
    /// Number of `cpuN` lines.
    online: u32,
}

fn system_cpu() -> Result<SystemCpu> {
    let text = std::fs::read_to_string("/proc/stat")
        .map_err(|e| Error::io("read /proc/stat".to_string(), e))?;
    parse_proc_stat(&text)
        .ok_or_else(|| Error::Internal("/proc/stat has no usable `cpu` line".to_string()))
}

fn parse_proc_stat(text: &str) -> Option<SystemCpu> {
    let mut usage = None;
    let mut online = 0;
    // The cpu lines come first, as glibc assumes too.
    for line in text.lines().take_while(|l| l.starts_with("cpu")) {
        let mut fields = line.split_whitespace();
        let label = fields.next()?;
        if label == "cpu" {
            let ticks: Vec<u64> = fields
                .take(7)
                .map(|f| f.parse().ok())
                .collect::<Option<_>>()?;
            if ticks.len() < 7 {
                return None;
            }
            usage = Some(ticks.iter().sum::<u64>() * (1_000_000_000 / USER_HZ));
        } else if label[3..].bytes().all(|b| b.is_ascii_digit()) {
            online += 1;
        }
    }
    Some(SystemCpu {
        usage: usage?,
        online,
    })
}

/// The container's linux.cgroupsPath: `/<cgroup parent>/<id>`, the parent
/// being `--cgroup-parent` or the daemon's. Must stay what `spawn_shim`
/// gives the runtime.
pub(super) fn cgroups_path(default_parent: &str, host_config: &HostConfig, id: &str) -> String {
    let parent = match host_config.cgroup_parent.as_deref() {
        Some(p) if !p.is_empty() => p,
        _ => default_parent,
    };
    format!("/{}/{id}", parent.trim_matches('/'))
}

/// The counters dockerd shows, read from `cgroup`; `v2` picks dockerd's
/// cgroup v2 shape (containerd's v2 metrics), else the v1 one (also on
/// hybrid hosts).
fn read_counters(
    cgroup: &Cgroup,
    v2: bool,
    machine_memory: u64,
) -> Result<Counters, berth_cgroups::Error> {
    let stats = cgroup.stats()?;
    let mut out = Counters {
        pids: PidsStats {
            current: stats.pids.current,
            limit: stats.pids.limit,
        },
        cpu: CpuStats {
            cpu_usage: CpuUsage {
                total_usage: stats.cpu.usage.total,
                percpu_usage: if v2 {
                    Vec::new()
                } else {
                    stats.cpu.usage.percpu.clone()
                },
                usage_in_kernelmode: stats.cpu.usage.kernel,
                usage_in_usermode: stats.cpu.usage.user,
            },
            system_cpu_usage: 0,
            online_cpus: 0,
            throttling_data: ThrottlingData {
                periods: stats.cpu.throttling.periods,
                throttled_periods: stats.cpu.throttling.throttled_periods,
                throttled_time: stats.cpu.throttling.throttled_time,
            },
        },
        ..Counters::default()
    };
    let entries = |list: &[berth_cgroups::BlkioEntry], lowercase: bool| -> Vec<BlkioStatEntry> {
        list.iter()
            .map(|e| BlkioStatEntry {
                major: e.major,
                minor: e.minor,
                op: if lowercase {
                    e.op.to_ascii_lowercase()
                } else {
                    e.op.clone()
                },
                value: e.value,
            })
            .collect()
    };
    let memory = &stats.memory;
    let keys = if v2 { V2_MEMORY_KEYS } else { V1_MEMORY_KEYS };
    out.memory = MemoryStats {
        usage: memory.usage.usage,
        max_usage: if v2 { 0 } else { memory.usage.max },
        stats: keys
            .iter()
            .map(|k| ((*k).to_string(), memory.raw.get(*k).copied().unwrap_or(0)))
            .collect(),
        failcnt: if v2 { 0 } else { memory.usage.failcnt },
        limit: memory.usage.limit,
    };
    if machine_memory > 0 && out.memory.limit > machine_memory {
        out.memory.limit = machine_memory;
    }
    if v2 {
        // dockerd: bytes only, as "read"/"write"; a list only if io.stat has a device.
        let bytes = entries(&stats.blkio.io_service_bytes_recursive, true);
        out.blkio.io_service_bytes_recursive = (!bytes.is_empty()).then_some(bytes);
        if let Some(dir) = cgroup.paths().get("") {
            out.memory.failcnt = oom_events(&dir.join("memory.events"));
        }
    } else {
        out.blkio = BlkioStats {
            io_service_bytes_recursive: Some(entries(
                &stats.blkio.io_service_bytes_recursive,
                false,
            )),
            io_serviced_recursive: Some(entries(&stats.blkio.io_serviced_recursive, false)),
            io_queue_recursive: Some(Vec::new()),
            io_service_time_recursive: Some(Vec::new()),
            io_wait_time_recursive: Some(Vec::new()),
            io_merged_recursive: Some(Vec::new()),
            io_time_recursive: Some(Vec::new()),
            sectors_recursive: Some(Vec::new()),
        };
    }
    Ok(out)
}

/// The `oom` line of a cgroup2 memory.events file (0 if absent).
fn oom_events(path: &Path) -> u64 {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("oom "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

fn cgroup_err(e: berth_cgroups::Error) -> Error {
    Error::Internal(format!("reading the container's cgroup: {e}"))
}

/// A cgroup directory that is gone: the container stopped meanwhile.
fn is_gone(e: &berth_cgroups::Error) -> bool {
    matches!(e, berth_cgroups::Error::Read { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
}

#[derive(Debug, Default)]
struct Counters {
    pids: PidsStats,
    blkio: BlkioStats,
    cpu: CpuStats,
    memory: MemoryStats,
}

impl ContainerService {
    /// One sample of the container's usage, with no `precpu_stats`; zeros
    /// (and its name and id) when it does not run.
    pub fn stats(&self, name: &str) -> Result<ContainerStats> {
        let entry = self.lookup(name)?;
        let host = host_view()?;
        self.sample(&entry, host, None)
    }

    /// One sample of every running or paused container, newest first:
    /// /proc/stat read once, each cgroup read once, no waiting. A container
    /// whose cgroup cannot be read is left out (and logged).
    pub fn stats_all(&self) -> Result<Vec<ContainerStats>> {
        let host = host_view()?;
        let system = system_cpu()?;
        let mut entries: Vec<(i64, Arc<Entry>)> = self
            .entries()
            .values()
            .filter_map(|e| {
                let inner = e.inner();
                inner
                    .state
                    .status
                    .is_live()
                    .then(|| (inner.created_nanos, e.clone()))
            })
            .collect();
        entries.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.id.cmp(&b.1.id)));
        let mut out = Vec::with_capacity(entries.len());
        for (_, entry) in entries {
            match self.sample(&entry, host, Some(system)) {
                Ok(stats) if stats.is_sampled() => out.push(stats),
                // Stopped between the listing and the read.
                Ok(_) => {}
                // One unreadable cgroup does not hide the others.
                Err(e) => tracing::warn!("stats of container {}: {e}", entry.id),
            }
        }
        Ok(out)
    }

    fn sample(
        &self,
        entry: &Entry,
        host: &HostView,
        system: Option<SystemCpu>,
    ) -> Result<ContainerStats> {
        let (name, live, path) = {
            let inner = entry.inner();
            (
                inner.name.clone(),
                inner.state.status.is_live(),
                cgroups_path(
                    &self.settings.cgroup_parent,
                    &inner.record.host_config,
                    &entry.id,
                ),
            )
        };
        let mut stats = ContainerStats::empty(&name, &entry.id);
        if !live {
            return Ok(stats);
        }
        let cgroup = Cgroup::new(&host.layout, Some(&path), &entry.id).map_err(cgroup_err)?;
        let v2 = host.layout.mode == Mode::V2;
        let counters = match read_counters(&cgroup, v2, host.machine_memory) {
            Ok(c) => c,
            // The cgroup of a container that stopped meanwhile.
            Err(e) if is_gone(&e) => return Ok(stats),
            Err(e) => return Err(cgroup_err(e)),
        };
        // Sampled right after the cgroup, as dockerd does, so the two
        // deltas the CPU % comes from cover the same time.
        let system = match system {
            Some(s) => s,
            None => system_cpu()?,
        };
        stats.read = record::now_rfc3339();
        stats.pids_stats = counters.pids;
        stats.blkio_stats = counters.blkio;
        stats.cpu_stats = counters.cpu;
        stats.cpu_stats.system_cpu_usage = system.usage;
        stats.cpu_stats.online_cpus = system.online;
        stats.memory_stats = counters.memory;
        Ok(stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn write(dir: &Path, name: &str, content: &str) {
        fs::create_dir_all(dir).expect("mkdir");
        fs::write(dir.join(name), content).expect("write");
    }

    /// A cgroup2-only host mounted at `root`, and the cgroup `/parent/c1`.
    fn v2_tree(root: &Path) -> (Cgroup, std::path::PathBuf) {
        write(root, "cgroup.controllers", "cpuset cpu io memory pids\n");
        let mountinfo = format!(
            "30 25 0:26 / {} rw,nosuid - cgroup2 cgroup2 rw\n",
            root.display()
        );
        let layout = Layout::parse(&mountinfo, "0::/\n").expect("layout");
        assert_eq!(layout.mode, Mode::V2);
        let cgroup = Cgroup::new(&layout, Some("/parent/c1"), "c1").expect("cgroup");
        (cgroup, root.join("parent/c1"))
    }

    #[test]
    fn cgroup_v2_counters_in_dockerds_v2_shape() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (cgroup, dir) = v2_tree(tmp.path());
        write(
            &dir,
            "cpu.stat",
            "usage_usec 2500\nuser_usec 2000\nsystem_usec 500\nnr_periods 7\nnr_throttled 2\nthrottled_usec 30\n",
        );
        write(&dir, "memory.current", "10485760\n");
        write(&dir, "memory.max", "max\n");
        write(&dir, "memory.peak", "20000000\n");
        write(
            &dir,
            "memory.stat",
            "anon 4096\nfile 8192\ninactive_file 1024\nactive_file 2048\nshmem 0\nzswap 5\n",
        );
        write(
            &dir,
            "memory.events",
            "low 0\nhigh 0\nmax 9\noom 3\noom_kill 1\n",
        );
        write(&dir, "pids.current", "4\n");
        write(&dir, "pids.max", "20\n");
        write(
            &dir,
            "io.stat",
            "8:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n",
        );

        let c = read_counters(&cgroup, true, 1 << 30).expect("counters");
        assert_eq!(c.cpu.cpu_usage.total_usage, 2_500_000);
        assert_eq!(c.cpu.cpu_usage.usage_in_usermode, 2_000_000);
        assert_eq!(c.cpu.cpu_usage.usage_in_kernelmode, 500_000);
        assert!(c.cpu.cpu_usage.percpu_usage.is_empty());
        assert_eq!(
            c.cpu.throttling_data,
            ThrottlingData {
                periods: 7,
                throttled_periods: 2,
                throttled_time: 30_000
            }
        );
        assert_eq!(c.memory.usage, 10_485_760);
        // Unlimited: the machine's memory; no max_usage on v2.
        assert_eq!(c.memory.limit, 1 << 30);
        assert_eq!(c.memory.max_usage, 0);
        // dockerd's failcnt on v2 is the oom count.
        assert_eq!(c.memory.failcnt, 3);
        assert_eq!(c.memory.stats.len(), V2_MEMORY_KEYS.len());
        assert_eq!(c.memory.stats["inactive_file"], 1024);
        assert_eq!(c.memory.stats["file"], 8192);
        assert_eq!(c.memory.stats["pgfault"], 0);
        assert!(!c.memory.stats.contains_key("zswap"));
        assert!(!c.memory.stats.contains_key("total_inactive_file"));
        assert_eq!(
            c.pids,
            PidsStats {
                current: 4,
                limit: 20
            }
        );
        let json = serde_json::to_value(&c.blkio).expect("json");
        assert_eq!(
            json["io_service_bytes_recursive"],
            serde_json::json!([
                {"major": 8, "minor": 0, "op": "read", "value": 4096},
                {"major": 8, "minor": 0, "op": "write", "value": 8192},
            ])
        );
        assert!(json["io_serviced_recursive"].is_null());
    }

    #[test]
    fn cgroup_v2_limits_below_the_machine_memory_are_kept() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (cgroup, dir) = v2_tree(tmp.path());
        write(&dir, "memory.max", "67108864\n");
        write(&dir, "memory.current", "1000\n");
        write(&dir, "pids.max", "max\n");
        let c = read_counters(&cgroup, true, 1 << 34).expect("counters");
        assert_eq!(c.memory.limit, 64 << 20);
        assert_eq!(c.pids.limit, 0);
        // No io.stat device: dockerd's list is null.
        assert_eq!(c.blkio.io_service_bytes_recursive, None);
    }

    #[test]
    fn cgroup_v1_counters_in_dockerds_v1_shape() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path();
        let mut mountinfo = String::new();
        for (i, (dir, opts)) in [
            ("cpu,cpuacct", "rw,cpu,cpuacct"),
            ("memory", "rw,memory"),
            ("pids", "rw,pids"),
            ("blkio", "rw,blkio"),
        ]
        .iter()
        .enumerate()
        {
            fs::create_dir_all(root.join(dir)).expect("mkdir");
            mountinfo.push_str(&format!(
                "{} 25 0:{} / {} rw - cgroup cgroup {opts}\n",
                40 + i,
                30 + i,
                root.join(dir).display()
            ));
        }
        let layout = Layout::parse(&mountinfo, "").expect("layout");
        assert_eq!(layout.mode, Mode::V1);
        let cgroup = Cgroup::new(&layout, Some("/parent/c1"), "c1").expect("cgroup");
        let cpu = root.join("cpu,cpuacct/parent/c1");
        write(&cpu, "cpuacct.usage", "3000000000\n");
        write(&cpu, "cpuacct.usage_percpu", "1000000000 2000000000\n");
        write(&cpu, "cpuacct.stat", "user 250\nsystem 50\n");
        write(
            &cpu,
            "cpu.stat",
            "nr_periods 3\nnr_throttled 1\nthrottled_time 99\n",
        );
        let mem = root.join("memory/parent/c1");
        write(&mem, "memory.usage_in_bytes", "5242880\n");
        write(&mem, "memory.max_usage_in_bytes", "6291456\n");
        write(&mem, "memory.limit_in_bytes", "67108864\n");
        write(&mem, "memory.failcnt", "2\n");
        write(
            &mem,
            "memory.stat",
            "cache 4096\nrss 8192\nshmem 0\ntotal_inactive_file 1048576\ntotal_rss 8192\n",
        );
        let pids = root.join("pids/parent/c1");
        write(&pids, "pids.current", "2\n");
        write(&pids, "pids.max", "max\n");
        let blkio = root.join("blkio/parent/c1");
        write(
            &blkio,
            "blkio.throttle.io_service_bytes_recursive",
            "8:0 Read 4096\n8:0 Write 512\n8:0 Total 4608\nTotal 4608\n",
        );
        write(
            &blkio,
            "blkio.throttle.io_serviced_recursive",
            "8:0 Read 1\n8:0 Write 1\n",
        );

        let c = read_counters(&cgroup, false, 1 << 34).expect("counters");
        assert_eq!(c.cpu.cpu_usage.total_usage, 3_000_000_000);
        assert_eq!(
            c.cpu.cpu_usage.percpu_usage,
            vec![1_000_000_000, 2_000_000_000]
        );
        assert_eq!(c.cpu.cpu_usage.usage_in_usermode, 2_500_000_000);
        assert_eq!(c.cpu.cpu_usage.usage_in_kernelmode, 500_000_000);
        assert_eq!(c.cpu.throttling_data.throttled_time, 99);
        assert_eq!(c.memory.usage, 5 << 20);
        assert_eq!(c.memory.max_usage, 6 << 20);
        assert_eq!(c.memory.limit, 64 << 20);
        assert_eq!(c.memory.failcnt, 2);
        assert_eq!(c.memory.stats.len(), V1_MEMORY_KEYS.len());
        assert_eq!(c.memory.stats["total_inactive_file"], 1_048_576);
        assert_eq!(c.memory.stats["cache"], 4096);
        assert!(!c.memory.stats.contains_key("shmem"));
        assert_eq!(
            c.pids,
            PidsStats {
                current: 2,
                limit: 0
            }
        );
        let json = serde_json::to_value(&c.blkio).expect("json");
        assert_eq!(
            json["io_service_bytes_recursive"],
            serde_json::json!([
                {"major": 8, "minor": 0, "op": "Read", "value": 4096},
                {"major": 8, "minor": 0, "op": "Write", "value": 512},
                {"major": 8, "minor": 0, "op": "Total", "value": 4608},
            ])
        );
        assert_eq!(json["sectors_recursive"], serde_json::json!([]));
    }

    #[test]
    fn unlimited_v1_memory_shows_the_machine_memory() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().join("memory");
        fs::create_dir_all(&root).expect("mkdir");
        let mountinfo = format!(
            "40 25 0:30 / {} rw - cgroup cgroup rw,memory\n",
            root.display()
        );
        let layout = Layout::parse(&mountinfo, "").expect("layout");
        let cgroup = Cgroup::new(&layout, Some("/p/c"), "c").expect("cgroup");
        write(
            &root.join("p/c"),
            "memory.limit_in_bytes",
            "9223372036854771712\n",
        );
        let c = read_counters(&cgroup, false, 8 << 30).expect("counters");
        assert_eq!(c.memory.limit, 8 << 30);
    }

    #[test]
    fn a_missing_cgroup_is_told_apart() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (cgroup, _) = v2_tree(tmp.path());
        let e = cgroup.stats().expect_err("no such cgroup");
        assert!(is_gone(&e), "{e}");
    }

    #[test]
    fn proc_stat_as_dockerd_reads_it() {
        let text = "cpu  694848 3380 466604 1055198 12988 0 3092 198 0 0\n\
                    cpu0 341891 1701 219818 549313 4448 0 203 99 0 0\n\
                    cpu1 352956 1679 246786 505884 8539 0 2888 99 0 0\n\
                    intr 1 2 3\nctxt 5\n";
        let s = parse_proc_stat(text).expect("parsed");
        let ticks = 694848 + 3380 + 466604 + 1055198 + 12988 + 3092;
        assert_eq!(s.usage, ticks * 10_000_000);
        assert_eq!(s.online, 2);
        assert_eq!(parse_proc_stat("intr 1\n"), None);
        assert_eq!(parse_proc_stat("cpu 1 2\n"), None);
    }

    #[test]
    fn meminfo_total_in_bytes() {
        assert_eq!(
            mem_total("MemTotal:       24684092 kB\nMemFree: 1 kB\n"),
            24_684_092 * 1024
        );
        assert_eq!(mem_total(""), 0);
    }

    #[test]
    fn cgroups_path_as_spawn_shim_gives_it() {
        let mut hc = HostConfig::default();
        assert_eq!(cgroups_path("berth", &hc, "abc"), "/berth/abc");
        hc.cgroup_parent = Some("/my/parent/".to_string());
        assert_eq!(cgroups_path("berth", &hc, "abc"), "/my/parent/abc");
    }

    #[test]
    fn a_stopped_container_is_all_zeros_as_dockerd_sends_it() {
        let s = ContainerStats::empty("web", "abc");
        assert!(!s.is_sampled());
        let json = serde_json::to_value(&s).expect("json");
        assert_eq!(json["name"], "/web");
        assert_eq!(json["read"], "0001-01-01T00:00:00Z");
        assert_eq!(json["memory_stats"], serde_json::json!({}));
        assert_eq!(json["pids_stats"], serde_json::json!({}));
        assert_eq!(json["storage_stats"], serde_json::json!({}));
        assert!(json["blkio_stats"]["io_service_bytes_recursive"].is_null());
        assert_eq!(
            json["cpu_stats"],
            serde_json::json!({
                "cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
                "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0},
            })
        );
        assert!(json.get("networks").is_none());
    }
}
