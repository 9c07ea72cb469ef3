//! Usage counters in the shape of the "data" object of runc's
//! `events --stats`, read from whichever hierarchy holds each controller.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::Path;

use serde::Serialize;

use crate::cgroup::{read_file, Cgroup, Side};
use crate::error::{Error, Result};

/// Clock ticks per second in cpuacct.stat (USER_HZ, 100 on every Linux ABI).
const USER_HZ: u64 = 100;

fn is_zero(v: &u64) -> bool {
    *v == 0
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    pub cpu: CpuStats,
    pub memory: MemoryStats,
    pub pids: PidsStats,
    pub blkio: BlkioStats,
    /// Keyed by page size ("2MB", "1GB").
    pub hugetlb: BTreeMap<String, HugetlbStats>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CpuStats {
    pub usage: CpuUsage,
    pub throttling: Throttling,
}

/// Nanoseconds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CpuUsage {
    #[serde(skip_serializing_if = "is_zero")]
    pub total: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub percpu: Vec<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub percpu_kernel: Vec<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub percpu_user: Vec<u64>,
    pub kernel: u64,
    pub user: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Throttling {
    #[serde(skip_serializing_if = "is_zero")]
    pub periods: u64,
    #[serde(rename = "throttledPeriods", skip_serializing_if = "is_zero")]
    pub throttled_periods: u64,
    /// Nanoseconds.
    #[serde(rename = "throttledTime", skip_serializing_if = "is_zero")]
    pub throttled_time: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct MemoryStats {
    #[serde(skip_serializing_if = "is_zero")]
    pub cache: u64,
    pub usage: MemoryEntry,
    /// Memory plus swap, as v1's memsw counters (cgroup2 values are summed to match).
    pub swap: MemoryEntry,
    pub kernel: MemoryEntry,
    #[serde(rename = "kernelTCP")]
    pub kernel_tcp: MemoryEntry,
    /// memory.stat as read.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub raw: BTreeMap<String, u64>,
}

/// Bytes; a limit of u64::MAX-ish means unlimited, as the kernel reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct MemoryEntry {
    pub limit: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub usage: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub max: u64,
    pub failcnt: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PidsStats {
    #[serde(skip_serializing_if = "is_zero")]
    pub current: u64,
    /// 0 when unlimited.
    #[serde(skip_serializing_if = "is_zero")]
    pub limit: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct BlkioStats {
    #[serde(
        rename = "ioServiceBytesRecursive",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub io_service_bytes_recursive: Vec<BlkioEntry>,
    #[serde(rename = "ioServicedRecursive", skip_serializing_if = "Vec::is_empty")]
    pub io_serviced_recursive: Vec<BlkioEntry>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct BlkioEntry {
    #[serde(skip_serializing_if = "is_zero")]
    pub major: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub minor: u64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub op: String,
    #[serde(skip_serializing_if = "is_zero")]
    pub value: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct HugetlbStats {
    #[serde(skip_serializing_if = "is_zero")]
    pub usage: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub max: u64,
    pub failcnt: u64,
}

impl Cgroup {
    /// Current usage counters. A controller the host lacks leaves its part
    /// zero; a cgroup that does not exist is an error.
    pub fn stats(&self) -> Result<Stats> {
        if let Some(dir) = self
            .v1
            .first()
            .map(|d| &d.dir)
            .or(self.v2.as_ref().map(|d| &d.dir))
        {
            fs::metadata(dir).map_err(|source| Error::Read {
                path: dir.clone(),
                source,
            })?;
        }
        let mut stats = Stats::default();
        self.cpu_stats(&mut stats.cpu)?;
        self.memory_stats(&mut stats.memory)?;
        match self.side("pids") {
            Some(Side::V1(dir) | Side::V2(dir)) => {
                stats.pids.current = read_u64(&dir.join("pids.current"))?.unwrap_or(0);
                stats.pids.limit = read_u64(&dir.join("pids.max"))?
                    .filter(|l| *l != u64::MAX)
                    .unwrap_or(0);
            }
            None => {}
        }
        self.blkio_stats(&mut stats.blkio)?;
        self.hugetlb_stats(&mut stats.hugetlb)?;
        Ok(stats)
    }

    fn cpu_stats(&self, cpu: &mut CpuStats) -> Result<()> {
        if let Some(Side::V1(dir)) = self.side("cpuacct") {
            let ns_per_tick = 1_000_000_000 / USER_HZ;
            cpu.usage.total = read_u64(&dir.join("cpuacct.usage"))?.unwrap_or(0);
            cpu.usage.percpu = read_list(&dir.join("cpuacct.usage_percpu"))?;
            cpu.usage.percpu_user = read_list(&dir.join("cpuacct.usage_percpu_user"))?;
            cpu.usage.percpu_kernel = read_list(&dir.join("cpuacct.usage_percpu_sys"))?;
            let stat = read_keyed(&dir.join("cpuacct.stat"))?;
            cpu.usage.user = stat.get("user").copied().unwrap_or(0) * ns_per_tick;
            cpu.usage.kernel = stat.get("system").copied().unwrap_or(0) * ns_per_tick;
        }
        match self.side("cpu") {
            Some(Side::V1(dir)) => {
                let stat = read_keyed(&dir.join("cpu.stat"))?;
                cpu.throttling = Throttling {
                    periods: stat.get("nr_periods").copied().unwrap_or(0),
                    throttled_periods: stat.get("nr_throttled").copied().unwrap_or(0),
                    throttled_time: stat.get("throttled_time").copied().unwrap_or(0),
                };
            }
            _ => {
                // cgroup2's cpu.stat is a core file: it has usage even
                // without the cpu controller.
                let Some(v2) = &self.v2 else { return Ok(()) };
                if self.side("cpuacct").is_some() {
                    return Ok(());
                }
                let stat = read_keyed(&v2.dir.join("cpu.stat"))?;
                let get = |k: &str| stat.get(k).copied().unwrap_or(0);
                cpu.usage.total = get("usage_usec") * 1000;
                cpu.usage.user = get("user_usec") * 1000;
                cpu.usage.kernel = get("system_usec") * 1000;
                cpu.throttling = Throttling {
                    periods: get("nr_periods"),
                    throttled_periods: get("nr_throttled"),
                    throttled_time: get("throttled_usec") * 1000,
                };
            }
        }
        Ok(())
    }

    fn memory_stats(&self, memory: &mut MemoryStats) -> Result<()> {
        match self.side("memory") {
            Some(Side::V1(dir)) => {
                let entry = |prefix: &str| -> Result<MemoryEntry> {
                    let file = |name: &str| dir.join(format!("{prefix}.{name}"));
                    Ok(MemoryEntry {
                        limit: read_u64(&file("limit_in_bytes"))?.unwrap_or(0),
                        usage: read_u64(&file("usage_in_bytes"))?.unwrap_or(0),
                        max: read_u64(&file("max_usage_in_bytes"))?.unwrap_or(0),
                        failcnt: read_u64(&file("failcnt"))?.unwrap_or(0),
                    })
                };
                memory.usage = entry("memory")?;
                memory.swap = entry("memory.memsw")?;
                memory.kernel = entry("memory.kmem")?;
                memory.kernel_tcp = entry("memory.kmem.tcp")?;
                memory.raw = read_keyed(&dir.join("memory.stat"))?;
                memory.cache = memory.raw.get("cache").copied().unwrap_or(0);
            }
            Some(Side::V2(dir)) => {
                let events = read_keyed(&dir.join("memory.events"))?;
                memory.usage = MemoryEntry {
                    limit: read_u64(&dir.join("memory.max"))?.unwrap_or(0),
                    usage: read_u64(&dir.join("memory.current"))?.unwrap_or(0),
                    max: read_u64(&dir.join("memory.peak"))?.unwrap_or(0),
                    failcnt: events.get("max").copied().unwrap_or(0),
                };
                let swap_usage = read_u64(&dir.join("memory.swap.current"))?.unwrap_or(0);
                let swap_limit = read_u64(&dir.join("memory.swap.max"))?.unwrap_or(0);
                memory.swap = MemoryEntry {
                    limit: swap_limit.saturating_add(memory.usage.limit),
                    usage: swap_usage + memory.usage.usage,
                    max: 0,
                    failcnt: 0,
                };
                memory.raw = read_keyed(&dir.join("memory.stat"))?;
                memory.cache = memory.raw.get("file").copied().unwrap_or(0);
            }
            None => {}
        }
        Ok(())
    }

    fn blkio_stats(&self, blkio: &mut BlkioStats) -> Result<()> {
        match self.side("blkio").or_else(|| self.side("io")) {
            Some(Side::V1(dir)) => {
                // CFQ's counters when it exists, else BFQ's, else the throttle layer's.
                let prefix = ["blkio", "blkio.bfq", "blkio.throttle"]
                    .into_iter()
                    .find(|p| dir.join(format!("{p}.io_serviced_recursive")).exists())
                    .unwrap_or("blkio.throttle");
                blkio.io_service_bytes_recursive =
                    read_blkio_v1(&dir.join(format!("{prefix}.io_service_bytes_recursive")))?;
                blkio.io_serviced_recursive =
                    read_blkio_v1(&dir.join(format!("{prefix}.io_serviced_recursive")))?;
            }
            Some(Side::V2(dir)) => {
                let Some(text) = read_optional(&dir.join("io.stat"))? else {
                    return Ok(());
                };
                for line in text.lines() {
                    let mut fields = line.split_whitespace();
                    let Some((major, minor)) = fields.next().and_then(parse_device) else {
                        continue;
                    };
                    for field in fields {
                        let Some((key, value)) = field.split_once('=') else {
                            continue;
                        };
                        let Ok(value) = value.parse() else { continue };
                        let (list, op) = match key {
                            "rbytes" => (&mut blkio.io_service_bytes_recursive, "Read"),
                            "wbytes" => (&mut blkio.io_service_bytes_recursive, "Write"),
                            "rios" => (&mut blkio.io_serviced_recursive, "Read"),
                            "wios" => (&mut blkio.io_serviced_recursive, "Write"),
                            _ => continue,
                        };
                        list.push(BlkioEntry {
                            major,
                            minor,
                            op: op.into(),
                            value,
                        });
                    }
                }
            }
            None => {}
        }
        Ok(())
    }

    fn hugetlb_stats(&self, out: &mut BTreeMap<String, HugetlbStats>) -> Result<()> {
        let (dir, v1) = match self.side("hugetlb") {
            Some(Side::V1(dir)) => (dir, true),
            Some(Side::V2(dir)) => (dir, false),
            None => return Ok(()),
        };
        let Ok(entries) = fs::read_dir(dir) else {
            return Ok(());
        };
        let limit_suffix = if v1 { ".limit_in_bytes" } else { ".max" };
        let sizes: Vec<String> = entries
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter_map(|n| {
                let size = n.strip_prefix("hugetlb.")?.strip_suffix(limit_suffix)?;
                (!size.contains('.')).then(|| size.to_owned())
            })
            .collect();
        for size in sizes {
            let file = |name: &str| dir.join(format!("hugetlb.{size}.{name}"));
            let stats = if v1 {
                HugetlbStats {
                    usage: read_u64(&file("usage_in_bytes"))?.unwrap_or(0),
                    max: read_u64(&file("max_usage_in_bytes"))?.unwrap_or(0),
                    failcnt: read_u64(&file("failcnt"))?.unwrap_or(0),
                }
            } else {
                HugetlbStats {
                    usage: read_u64(&file("current"))?.unwrap_or(0),
                    max: 0,
                    failcnt: read_keyed(&file("events"))?
                        .get("max")
                        .copied()
                        .unwrap_or(0),
                }
            };
            out.insert(size, stats);
        }
        Ok(())
    }
}

/// The file's content, or None if the kernel does not have it.
fn read_optional(path: &Path) -> Result<Option<String>> {
    match read_file(path) {
        Ok(s) => Ok(Some(s)),
        Err(Error::Read { source, .. }) if source.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// A single number; "max" is u64::MAX.
fn read_u64(path: &Path) -> Result<Option<u64>> {
    let Some(text) = read_optional(path)? else {
        return Ok(None);
    };
    let text = text.trim();
    if text == "max" {
        return Ok(Some(u64::MAX));
    }
    text.parse().map(Some).map_err(|_| Error::Parse {
        file: path.to_path_buf(),
        line: text.to_owned(),
    })
}

/// Space-separated numbers on one line (cpuacct.usage_percpu).
fn read_list(path: &Path) -> Result<Vec<u64>> {
    let Some(text) = read_optional(path)? else {
        return Ok(Vec::new());
    };
    text.split_whitespace()
        .map(|n| {
            n.parse().map_err(|_| Error::Parse {
                file: path.to_path_buf(),
                line: text.trim().to_owned(),
            })
        })
        .collect()
}

/// `key value` lines (memory.stat, cpu.stat, *.events); lines whose value is
/// not a number are skipped.
fn read_keyed(path: &Path) -> Result<BTreeMap<String, u64>> {
    let Some(text) = read_optional(path)? else {
        return Ok(BTreeMap::new());
    };
    Ok(text
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_owned(), v.trim().parse().ok()?))
        })
        .collect())
}

fn parse_device(s: &str) -> Option<(u64, u64)> {
    let (major, minor) = s.split_once(':')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// `8:0 Read 4096` lines; the `Total` summary lines are left out.
fn read_blkio_v1(path: &Path) -> Result<Vec<BlkioEntry>> {
    let Some(text) = read_optional(path)? else {
        return Ok(Vec::new());
    };
    Ok(text
        .lines()
        .filter_map(|l| {
            let mut fields = l.split_whitespace();
            let (major, minor) = parse_device(fields.next()?)?;
            let op = fields.next()?;
            let value = fields.next()?.parse().ok()?;
            Some(BlkioEntry {
                major,
                minor,
                op: op.to_owned(),
                value,
            })
        })
        .collect())
}
