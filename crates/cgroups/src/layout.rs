//! Which cgroup hierarchies are mounted where, read from mountinfo, and which
//! cgroup the calling process is in within each of them.

use std::fs;
use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result};

const MOUNTINFO: &str = "/proc/self/mountinfo";
const PROC_CGROUP: &str = "/proc/self/cgroup";

/// Controllers a cgroup v1 mount can carry. Anything else among the super
/// options of a v1 mount (rw, xattr, release_agent=…) is not a controller.
const V1_CONTROLLERS: &[&str] = &[
    "cpuset",
    "cpu",
    "cpuacct",
    "blkio",
    "memory",
    "devices",
    "freezer",
    "net_cls",
    "perf_event",
    "net_prio",
    "hugetlb",
    "pids",
    "rdma",
    "misc",
    "debug",
];

/// How the host mounts cgroups.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Only cgroup v1 hierarchies.
    V1,
    /// One cgroup2 hierarchy holding every controller.
    V2,
    /// v1 hierarchies for most controllers plus a cgroup2 mount (usually
    /// /sys/fs/cgroup/unified) that may hold the controllers v1 does not.
    Hybrid,
}

/// One mounted cgroup v1 hierarchy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct V1Hierarchy {
    /// Controllers bound to it, e.g. `["cpu", "cpuacct"]`, or `["name=systemd"]`.
    pub controllers: Vec<String>,
    /// Where it is mounted, e.g. /sys/fs/cgroup/memory.
    pub mount_point: PathBuf,
    /// The cgroup shown at the mount point (the mountinfo root field), usually "/".
    pub mount_root: PathBuf,
    /// The calling process's cgroup in this hierarchy, from /proc/self/cgroup.
    pub own_cgroup: PathBuf,
}

/// The mounted cgroup2 hierarchy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct V2Hierarchy {
    /// Controllers listed in cgroup.controllers at the mount point.
    pub controllers: Vec<String>,
    pub mount_point: PathBuf,
    pub mount_root: PathBuf,
    pub own_cgroup: PathBuf,
}

/// Every cgroup hierarchy of the host, as seen by the calling process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    pub mode: Mode,
    pub v1: Vec<V1Hierarchy>,
    pub v2: Option<V2Hierarchy>,
}

/// Reads the layout of the calling process from /proc/self/mountinfo and
/// /proc/self/cgroup.
pub fn detect() -> Result<Layout> {
    let read = |path: &str| {
        fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.into(),
            source,
        })
    };
    Layout::parse(&read(MOUNTINFO)?, &read(PROC_CGROUP)?)
}

impl Layout {
    /// Builds a layout from the text of a mountinfo file and of a
    /// `/proc/<pid>/cgroup` file. Reads `cgroup.controllers` below the cgroup2
    /// mount point, so tests can point mounts at a temporary directory.
    pub fn parse(mountinfo: &str, proc_cgroup: &str) -> Result<Layout> {
        let memberships = parse_proc_cgroup(proc_cgroup)?;
        let mut v1: Vec<V1Hierarchy> = Vec::new();
        let mut v2: Option<V2Hierarchy> = None;
        for line in mountinfo.lines().filter(|l| !l.trim().is_empty()) {
            let mount = parse_mount_line(line).ok_or_else(|| Error::Parse {
                file: MOUNTINFO.into(),
                line: line.to_owned(),
            })?;
            match mount.fstype {
                "cgroup" => {
                    let controllers: Vec<String> = mount
                        .super_options
                        .split(',')
                        .filter(|o| V1_CONTROLLERS.contains(o) || o.starts_with("name="))
                        .map(str::to_owned)
                        .collect();
                    // The same hierarchy may be bind-mounted more than once; the first wins.
                    if controllers.is_empty() || v1.iter().any(|h| h.controllers == controllers) {
                        continue;
                    }
                    let own_cgroup = memberships
                        .iter()
                        .find(|m| !m.controllers.is_empty() && m.controllers == controllers)
                        .map(|m| m.path.clone())
                        .unwrap_or_else(|| PathBuf::from("/"));
                    v1.push(V1Hierarchy {
                        controllers,
                        mount_point: mount.mount_point,
                        mount_root: mount.root,
                        own_cgroup,
                    });
                }
                "cgroup2" if v2.is_none() => {
                    let controllers =
                        fs::read_to_string(mount.mount_point.join("cgroup.controllers"))
                            .map(|s| s.split_whitespace().map(str::to_owned).collect())
                            .unwrap_or_default();
                    let own_cgroup = memberships
                        .iter()
                        .find(|m| m.hierarchy_id == 0 && m.controllers.is_empty())
                        .map(|m| m.path.clone())
                        .unwrap_or_else(|| PathBuf::from("/"));
                    v2 = Some(V2Hierarchy {
                        controllers,
                        mount_point: mount.mount_point,
                        mount_root: mount.root,
                        own_cgroup,
                    });
                }
                _ => {}
            }
        }
        let has_v1_controllers = v1
            .iter()
            .any(|h| h.controllers.iter().any(|c| !c.starts_with("name=")));
        let mode = match (has_v1_controllers, v2.is_some()) {
            (true, true) => Mode::Hybrid,
            (true, false) => Mode::V1,
            (false, true) => Mode::V2,
            (false, false) => {
                return Err(Error::NoCgroupMounts {
                    mountinfo: MOUNTINFO.into(),
                })
            }
        };
        if mode == Mode::V2 {
            // Named v1 hierarchies next to a pure cgroup2 host carry no limits.
            v1.clear();
        }
        Ok(Layout { mode, v1, v2 })
    }

    /// The v1 hierarchy that carries `controller` ("memory", "name=systemd", …).
    pub fn v1_hierarchy(&self, controller: &str) -> Option<&V1Hierarchy> {
        self.v1
            .iter()
            .find(|h| h.controllers.iter().any(|c| c == controller))
    }
}

struct Mount<'a> {
    root: PathBuf,
    mount_point: PathBuf,
    fstype: &'a str,
    super_options: &'a str,
}

/// `36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue`
fn parse_mount_line(line: &str) -> Option<Mount<'_>> {
    let (left, right) = line.split_once(" - ")?;
    let mut left = left.split(' ');
    let root = unescape(left.nth(3)?);
    let mount_point = unescape(left.next()?);
    let mut right = right.split(' ');
    let fstype = right.next()?;
    let _source = right.next()?;
    let super_options = right.next().unwrap_or("");
    Some(Mount {
        root: root.into(),
        mount_point: mount_point.into(),
        fstype,
        super_options,
    })
}

/// mountinfo escapes space, tab, newline and backslash as \ooo.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() {
            let digits = std::str::from_utf8(&bytes[i + 1..i + 4]).unwrap_or("");
            if let Ok(v) = u8::from_str_radix(digits, 8) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

struct Membership {
    hierarchy_id: u32,
    controllers: Vec<String>,
    path: PathBuf,
}

/// `4:memory:/user.slice` and `0::/init.scope`.
fn parse_proc_cgroup(text: &str) -> Result<Vec<Membership>> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let bad = || Error::Parse {
                file: PROC_CGROUP.into(),
                line: line.to_owned(),
            };
            let mut parts = line.splitn(3, ':');
            let hierarchy_id = parts.next().and_then(|s| s.parse().ok()).ok_or_else(bad)?;
            let controllers = parts
                .next()
                .ok_or_else(bad)?
                .split(',')
                .filter(|c| !c.is_empty())
                .map(str::to_owned)
                .collect();
            let path = parts.next().ok_or_else(bad)?;
            Ok(Membership {
                hierarchy_id,
                controllers,
                path: path.into(),
            })
        })
        .collect()
}

/// The host directory of `cgroup` (a path as seen in `/proc/<pid>/cgroup`) in a
/// hierarchy mounted at `mount_point` whose mount shows `mount_root`.
pub(crate) fn host_dir(mount_point: &Path, mount_root: &Path, cgroup: &Path) -> PathBuf {
    let inner = cgroup.strip_prefix(mount_root).unwrap_or(cgroup);
    let mut dir = mount_point.to_path_buf();
    for c in inner.components() {
        if let Component::Normal(name) = c {
            dir.push(name);
        }
    }
    dir
}
