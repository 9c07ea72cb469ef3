#![forbid(unsafe_code)]
//! berth-cgroups: the cgroup layer of Berth's OCI runtime, for cgroup v1,
//! v2 and hybrid hosts (runc's cgroupfs driver is the reference).
//!
//! ```text
//! pub fn detect() -> Result<Layout>;          // hierarchies from /proc/self/mountinfo
//! Layout::parse(mountinfo, proc_cgroup) -> Result<Layout>   // same, from text (tests)
//! Cgroup::new(&layout, cgroups_path: Option<&str>, container_id) -> Result<Cgroup>
//! cgroup.create() / apply(&LinuxResources) / add_process(pid) / pids()
//! cgroup.freeze() / thaw() / is_frozen() / kill_all(signal) / stats() / delete()
//! cgroup.paths() -> BTreeMap<String, PathBuf>   // "memory" -> dir, "" -> cgroup2 dir
//! cgroup.container_view() -> ContainerView      // what /sys/fs/cgroup shows inside
//! device_rules(&[LinuxDeviceCgroup]) / device_policy(..)   // for the cgroup2 eBPF program
//! ```
//!
//! A controller's files are written where the host has it: in its v1
//! hierarchy, else in the cgroup2 hierarchy (on hybrid hosts hugetlb often
//! lives there). See [`Cgroup::new`] for how linux.cgroupsPath is resolved.

mod cgroup;
mod devices;
mod error;
mod layout;
mod resources;
mod stats;
#[cfg(test)]
mod tests;

pub use cgroup::{Cgroup, ContainerView, ViewMount};
pub use devices::{
    device_policy, device_rules, DeviceAccess, DeviceKind, DevicePolicy, DeviceRule,
};
pub use error::{Error, Result};
pub use layout::{detect, Layout, Mode, V1Hierarchy, V2Hierarchy};
pub use resources::{blkio_weight_to_io_weight, shares_to_weight, swap_to_v2};
pub use stats::{
    BlkioEntry, BlkioStats, CpuStats, CpuUsage, HugetlbStats, MemoryEntry, MemoryStats, PidsStats,
    Stats, Throttling,
};
