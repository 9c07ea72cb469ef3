#![forbid(unsafe_code)]
//! berth-cgroups: the cgroup layer of Berth's OCI runtime, for cgroup v1,
//! v2 and hybrid hosts (runc's cgroupfs driver is the reference).
//!
//! ```text
//! pub fn detect() -> Result<Layout>                 // from /proc/self/{mountinfo,cgroup}
//! Layout::parse(mountinfo: &str, proc_cgroup: &str) -> Result<Layout>  // same from text (tests)
//! Cgroup::new(&Layout, cgroups_path: Option<&str>, container_id: &str) -> Result<Cgroup>
//! Cgroup::create(&self) -> Result<()>              // mkdir -p everywhere, cpuset from parent
//! Cgroup::apply(&self, &LinuxResources) -> Result<()>  // checked first, then written in order
//! Cgroup::add_process(&self, pid: i32) -> Result<()>
//! Cgroup::pids(&self) -> Result<Vec<i32>>          // recursive, all hierarchies
//! Cgroup::freeze / thaw(&self) -> Result<()>; is_frozen(&self) -> Result<bool>
//! Cgroup::kill_all(&self, signal: i32) -> Result<()>
//! Cgroup::stats(&self) -> Result<Stats>            // runc `events --stats` "data" shape
//! Cgroup::delete(&self) -> Result<()>              // deepest first, EBUSY retried, gone is Ok
//! Cgroup::paths(&self) -> BTreeMap<String, PathBuf> // "memory" -> dir, "" -> cgroup2 dir
//! Cgroup::container_view(&self) -> ContainerView   // what /sys/fs/cgroup shows inside
//! Cgroup::needs_device_program(&self) -> bool      // true: enforce devices with eBPF on cgroup2
//! device_rules(&[LinuxDeviceCgroup]) -> Result<Vec<DeviceRule>>
//! device_policy(&[LinuxDeviceCgroup]) -> Result<DevicePolicy>  // default + last-match-wins rules
//! device_program(&DevicePolicy) -> Vec<BpfInsn>   // the policy as a cgroup2 eBPF device program
//! install_device_program(dir: &Path, &DevicePolicy) -> Result<()>  // load, attach, detach the old
//! Cgroup::apply_device_program(&self, &DevicePolicy) -> Result<()> // the same on this cgroup's v2 dir
//! ```
//!
//! A controller's files are written where the host has it: in its v1
//! hierarchy, else in the cgroup2 hierarchy (on hybrid hosts hugetlb often
//! lives there). See [`Cgroup::new`] for how linux.cgroupsPath is resolved
//! (an empty path is the container id relative to the caller's cgroup, as
//! runc's cgroupfs driver does). Like runc, `create` enables the available
//! controllers in the cgroup2 ancestors' cgroup.subtree_control and leaves
//! them enabled; `delete` removes only this cgroup's directories.

mod cgroup;
mod device_program;
mod devices;
mod error;
mod layout;
mod resources;
mod stats;
#[cfg(test)]
mod tests;

pub use berth_sys::bpf::BpfInsn;
pub use cgroup::{Cgroup, ContainerView, SelfJoin, ViewMount};
pub use device_program::{device_program, install_device_program, DEVICE_PROGRAM_LICENSE};
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
