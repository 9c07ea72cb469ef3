//! Whether the kernel's OOM killer struck in the container's memory cgroup
//! (docker's `OOMKilled`): the `oom_kill` counter of cgroup v1
//! `memory.oom_control` or cgroup v2 `memory.events`, read when the
//! container was created and again when its init exited.

use std::path::{Path, PathBuf};

pub(crate) struct OomCounter {
    file: PathBuf,
    at_create: u64,
}

impl OomCounter {
    /// The counter of the memory cgroup `pid` is in; None when it cannot be
    /// found (no memory controller, a kernel without `oom_kill`).
    pub(crate) fn find(pid: i32) -> Option<OomCounter> {
        let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
        let file = counter_file(&cgroups, &mountinfo)?;
        let at_create = read_count(&file)?;
        Some(OomCounter { file, at_create })
    }

    /// True when the counter grew since create. Call before the runtime
    /// deletes the cgroup.
    pub(crate) fn fired(&self) -> bool {
        read_count(&self.file).is_some_and(|now| now > self.at_create)
    }
}

fn read_count(file: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(file).ok()?;
    oom_kill_count(&text)
}

/// The `oom_kill N` line of memory.oom_control or memory.events.
fn oom_kill_count(text: &str) -> Option<u64> {
    text.lines()
        .filter_map(|line| line.split_once(' '))
        .find(|(key, _)| *key == "oom_kill")
        .and_then(|(_, value)| value.trim().parse().ok())
}

/// The counter file for a process with `/proc/<pid>/cgroup` text `cgroups`:
/// the v1 memory hierarchy when there is one (hybrid hosts), else the v2 tree.
fn counter_file(cgroups: &str, mountinfo: &str) -> Option<PathBuf> {
    let mut v2_path = None;
    for line in cgroups.lines() {
        let mut fields = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if controllers.split(',').any(|c| c == "memory") {
            let (root, mount_point) = mount_of(mountinfo, |fs, options| {
                fs == "cgroup" && options.split(',').any(|o| o == "memory")
            })?;
            return Some(join_cgroup(&mount_point, &root, path).join("memory.oom_control"));
        }
        if controllers.is_empty() {
            v2_path = Some(path.to_string());
        }
    }
    let path = v2_path?;
    let (root, mount_point) = mount_of(mountinfo, |fs, _| fs == "cgroup2")?;
    Some(join_cgroup(&mount_point, &root, &path).join("memory.events"))
}

/// (root within the filesystem, mount point) of the first mount whose
/// filesystem type and super options match.
fn mount_of(mountinfo: &str, wanted: impl Fn(&str, &str) -> bool) -> Option<(String, PathBuf)> {
    mountinfo.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(' ').collect();
        let sep = fields.iter().position(|f| *f == "-")?;
        let fs = fields.get(sep + 1)?;
        let options = fields.get(sep + 3)?;
        if !wanted(fs, options) {
            return None;
        }
        Some((fields.get(3)?.to_string(), PathBuf::from(fields.get(4)?)))
    })
}

fn join_cgroup(mount_point: &Path, root: &str, path: &str) -> PathBuf {
    let relative = path
        .strip_prefix(root)
        .unwrap_or(path)
        .trim_start_matches('/');
    mount_point.join(relative)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
25 1 0:22 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
26 25 0:23 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
30 25 0:27 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:14 - cgroup cgroup rw,memory
";

    #[test]
    fn hybrid_hosts_use_the_v1_memory_controller() {
        let cgroups = "12:pids:/c1\n4:memory:/c1\n0::/c1\n";
        assert_eq!(
            counter_file(cgroups, MOUNTINFO),
            Some(PathBuf::from("/sys/fs/cgroup/memory/c1/memory.oom_control"))
        );
    }

    #[test]
    fn unified_hosts_use_memory_events() {
        let mountinfo = "26 1 0:23 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(
            counter_file("0::/system.slice/c1\n", mountinfo),
            Some(PathBuf::from(
                "/sys/fs/cgroup/system.slice/c1/memory.events"
            ))
        );
    }

    #[test]
    fn counts_are_read_from_either_file() {
        assert_eq!(
            oom_kill_count("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n"),
            Some(2)
        );
        assert_eq!(
            oom_kill_count("low 0\nhigh 0\nmax 0\noom 1\noom_kill 1\n"),
            Some(1)
        );
        assert_eq!(oom_kill_count("oom 1\n"), None);
    }
}
