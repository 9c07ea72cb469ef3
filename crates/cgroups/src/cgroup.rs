//! One container's cgroup across every hierarchy of the host: where its
//! directories are, creating and removing them, moving processes in,
//! freezing and signalling what runs inside.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::error::{Error, Result};
use crate::layout::{host_dir, Layout, Mode};

const FREEZE_TIMEOUT: Duration = Duration::from_secs(10);
const RMDIR_ATTEMPTS: u32 = 8;

/// The directory of this cgroup in one v1 hierarchy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct V1Dir {
    pub controllers: Vec<String>,
    pub mount_point: PathBuf,
    pub dir: PathBuf,
}

/// The directory of this cgroup in the cgroup2 hierarchy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct V2Dir {
    /// Controllers available at the root of the hierarchy.
    pub controllers: Vec<String>,
    pub mount_point: PathBuf,
    pub dir: PathBuf,
}

/// Where a controller's files for this cgroup live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Side<'a> {
    V1(&'a Path),
    V2(&'a Path),
}

/// One container's cgroup: a directory in every v1 hierarchy and/or in the
/// cgroup2 hierarchy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cgroup {
    pub(crate) mode: Mode,
    pub(crate) v1: Vec<V1Dir>,
    pub(crate) v2: Option<V2Dir>,
}

/// Open files through which a new process joins a [`Cgroup`] itself (see
/// [`Cgroup::self_join`]).
#[derive(Debug)]
pub struct SelfJoin {
    v1_tasks: Vec<std::os::fd::OwnedFd>,
    v2_dir: Option<std::os::fd::OwnedFd>,
}

impl SelfJoin {
    /// The cgroup2 directory, for a child born in it (`CLONE_INTO_CGROUP`).
    pub fn v2_dir(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        use std::os::fd::AsFd;
        self.v2_dir.as_ref().map(|fd| fd.as_fd())
    }

    /// Moves the calling thread into the cgroup in every v1 hierarchy. Only
    /// a single-threaded process moves whole this way.
    pub fn join_v1(&self) -> io::Result<()> {
        for fd in &self.v1_tasks {
            let n = nix::unistd::write(fd, b"0")?;
            if n != 1 {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "short write to tasks",
                ));
            }
        }
        Ok(())
    }
}

/// What a container sees at /sys/fs/cgroup when its config asks for a mount
/// of type "cgroup".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerView {
    /// One mount per hierarchy, in layout order.
    pub mounts: Vec<ViewMount>,
    /// `(link name, target)` below /sys/fs/cgroup, e.g. `("cpu", "cpu,cpuacct")`,
    /// for controllers of a combined v1 hierarchy.
    pub symlinks: Vec<(String, String)>,
}

/// One cgroup mount inside the container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ViewMount {
    /// Directory name below /sys/fs/cgroup ("memory", "cpu,cpuacct",
    /// "systemd", "unified"); empty for a pure cgroup2 host, where the mount
    /// is /sys/fs/cgroup itself.
    pub name: String,
    /// This cgroup's directory on the host, to bind-mount.
    pub host_dir: PathBuf,
    /// "cgroup" or "cgroup2".
    pub fstype: &'static str,
    /// The mount's controllers ("memory", "name=systemd"); empty for cgroup2.
    pub controllers: Vec<String>,
}

impl Cgroup {
    /// Resolves the cgroup's directory in every hierarchy of `layout`.
    /// Does not touch the filesystem.
    ///
    /// * absolute `cgroups_path`: below the root of each hierarchy;
    /// * relative: below the caller's own cgroup in each v1 hierarchy, and
    ///   below the parent of the caller's own cgroup in the cgroup2 hierarchy
    ///   (the caller's own cgroup usually has processes, so it could not hand
    ///   controllers down to a child);
    /// * empty or `None`: the relative path `<container_id>`, as runc's
    ///   cgroupfs driver does (it sets the cgroup name to the container id).
    ///
    /// `.` and `..` are resolved lexically and never climb above the start
    /// point. systemd-style `slice:prefix:name` paths are refused.
    pub fn new(layout: &Layout, cgroups_path: Option<&str>, container_id: &str) -> Result<Cgroup> {
        let path = match cgroups_path.filter(|p| !p.is_empty()) {
            Some(p) => p,
            None => {
                if container_id.is_empty()
                    || container_id.contains('/')
                    || container_id == "."
                    || container_id == ".."
                {
                    return Err(Error::InvalidCgroupsPath {
                        path: container_id.to_owned(),
                        reason: "the container id cannot name a cgroup",
                    });
                }
                container_id
            }
        };
        if !path.contains('/') && path.matches(':').count() == 2 {
            return Err(Error::InvalidCgroupsPath {
                path: path.to_owned(),
                reason: "systemd slice:prefix:name paths need the systemd cgroup driver",
            });
        }
        let absolute = path.starts_with('/');
        let inner = clean_path(path);
        if inner.as_os_str().is_empty() {
            return Err(Error::InvalidCgroupsPath {
                path: path.to_owned(),
                reason: "it names the root of the hierarchy",
            });
        }
        let v1 = layout
            .v1
            .iter()
            .map(|h| {
                let base = if absolute {
                    h.mount_point.clone()
                } else {
                    host_dir(&h.mount_point, &h.mount_root, &h.own_cgroup)
                };
                V1Dir {
                    controllers: h.controllers.clone(),
                    mount_point: h.mount_point.clone(),
                    dir: base.join(&inner),
                }
            })
            .collect();
        let v2 = layout.v2.as_ref().map(|h| {
            let base = if absolute {
                h.mount_point.clone()
            } else {
                let parent = h.own_cgroup.parent().unwrap_or(Path::new("/"));
                host_dir(&h.mount_point, &h.mount_root, parent)
            };
            V2Dir {
                controllers: h.controllers.clone(),
                mount_point: h.mount_point.clone(),
                dir: base.join(&inner),
            }
        });
        Ok(Cgroup {
            mode: layout.mode,
            v1,
            v2,
        })
    }

    /// Where `controller`'s files live: the v1 hierarchy that carries it, else
    /// the cgroup2 hierarchy if it lists the controller.
    pub(crate) fn side(&self, controller: &str) -> Option<Side<'_>> {
        if let Some(d) = self
            .v1
            .iter()
            .find(|d| d.controllers.iter().any(|c| c == controller))
        {
            return Some(Side::V1(&d.dir));
        }
        self.v2
            .as_ref()
            .filter(|d| d.controllers.iter().any(|c| c == controller))
            .map(|d| Side::V2(&d.dir))
    }

    /// Whether device rules must be enforced by a cgroup2 eBPF program
    /// (attached to the cgroup2 directory) because no v1 devices hierarchy exists.
    pub fn needs_device_program(&self) -> bool {
        self.v2.is_some() && !matches!(self.side("devices"), Some(Side::V1(_)))
    }

    fn dirs(&self) -> impl Iterator<Item = &Path> {
        self.v1
            .iter()
            .map(|d| d.dir.as_path())
            .chain(self.v2.iter().map(|d| d.dir.as_path()))
    }

    /// Creates the directory in every hierarchy (with missing parents). On v1
    /// each new cpuset level gets cpuset.cpus/mems from its parent, since an
    /// empty cpuset refuses processes. On cgroup2 every ancestor hands down
    /// the controllers it has. On failure, directories made here are removed.
    pub fn create(&self) -> Result<()> {
        let mut made = Vec::new();
        let result = self.create_recording(&mut made);
        if result.is_err() {
            for dir in made.iter().rev() {
                let _ = fs::remove_dir(dir);
            }
        }
        result
    }

    fn create_recording(&self, made: &mut Vec<PathBuf>) -> Result<()> {
        for d in &self.v1 {
            let cpuset = d.controllers.iter().any(|c| c == "cpuset");
            for level in levels_below(&d.mount_point, &d.dir) {
                make_dir(&level, made)?;
                if cpuset {
                    inherit_cpuset(&level)?;
                }
            }
        }
        if let Some(d) = &self.v2 {
            let levels = levels_below(&d.mount_point, &d.dir);
            let mut parent = d.mount_point.clone();
            for level in levels {
                delegate_controllers(&parent);
                make_dir(&level, made)?;
                parent = level;
            }
        }
        Ok(())
    }

    /// Moves `pid` into this cgroup in every hierarchy.
    pub fn add_process(&self, pid: i32) -> Result<()> {
        for dir in self.dirs() {
            write_file(&dir.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }

    /// What a new process needs to enter this cgroup without writing its
    /// pid to `cgroup.procs`. Such a write takes the kernel's global
    /// threadgroup lock, which waits for an RCU grace period (10–20 ms)
    /// whenever no other migration happened just before: on a quiet host,
    /// every container start. A single thread moving itself (`0` written
    /// to a v1 `tasks` file) skips that lock, and on cgroup2 a child can be
    /// born in the cgroup (clone3 `CLONE_INTO_CGROUP`). Opened here, by the
    /// caller that may write these files; used in the new process.
    pub fn self_join(&self) -> Result<SelfJoin> {
        let v1_tasks = self
            .v1
            .iter()
            .map(|d| {
                let path = d.dir.join("tasks");
                fs::OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map(std::os::fd::OwnedFd::from)
                    .map_err(|source| Error::Write {
                        path,
                        value: "0".to_owned(),
                        source,
                    })
            })
            .collect::<Result<Vec<_>>>()?;
        let v2_dir = match &self.v2 {
            Some(d) => Some(
                fs::File::open(&d.dir)
                    .map(std::os::fd::OwnedFd::from)
                    .map_err(|source| Error::Read {
                        path: d.dir.clone(),
                        source,
                    })?,
            ),
            None => None,
        };
        Ok(SelfJoin { v1_tasks, v2_dir })
    }

    /// Every process in this cgroup or its descendants, in any hierarchy,
    /// sorted and without duplicates.
    pub fn pids(&self) -> Result<Vec<i32>> {
        let mut pids = BTreeSet::new();
        for dir in self.dirs() {
            for sub in subtree(dir)? {
                let path = sub.join("cgroup.procs");
                for line in read_file(&path)?.lines() {
                    let pid = line.trim().parse().map_err(|_| Error::Parse {
                        file: path.clone(),
                        line: line.to_owned(),
                    })?;
                    pids.insert(pid);
                }
            }
        }
        Ok(pids.into_iter().collect())
    }

    /// The freezer's state file: v1 freezer.state if that hierarchy is
    /// mounted, else cgroup2's cgroup.freeze (a core file, no controller needed).
    fn freezer(&self) -> Result<Freezer<'_>> {
        if let Some(Side::V1(dir)) = self.side("freezer") {
            return Ok(Freezer::V1(dir));
        }
        match &self.v2 {
            Some(d) => Ok(Freezer::V2(&d.dir)),
            None => Err(Error::ControllerUnavailable {
                controller: "freezer".into(),
                resource: "freeze".into(),
            }),
        }
    }

    /// Freezes every process and waits until the kernel reports FROZEN.
    /// If that does not happen in time, thaws again and fails.
    pub fn freeze(&self) -> Result<()> {
        let freezer = self.freezer()?;
        let result = freezer.set(true);
        if result.is_err() {
            let _ = freezer.set(false);
        }
        result
    }

    /// Thaws every process and waits until the kernel reports THAWED.
    pub fn thaw(&self) -> Result<()> {
        self.freezer()?.set(false)
    }

    /// Whether the cgroup is (completely) frozen.
    pub fn is_frozen(&self) -> Result<bool> {
        self.freezer()?.is_frozen()
    }

    /// Sends `signal` to every process. SIGKILL goes through cgroup2's
    /// cgroup.kill when the kernel has it, which also catches processes that
    /// fork meanwhile; otherwise the cgroup is frozen (if a freezer exists),
    /// each process signalled, and thawed again so nothing forks in between.
    /// Processes that are already gone are not an error.
    pub fn kill_all(&self, signal: i32) -> Result<()> {
        let sig = Signal::try_from(signal).map_err(|source| Error::Signal {
            pid: 0,
            signal,
            source,
        })?;
        if sig == Signal::SIGKILL {
            if let Some(d) = &self.v2 {
                let file = d.dir.join("cgroup.kill");
                if file.exists() {
                    write_file(&file, "1")?;
                    // cgroup.kill does not reach processes that joined only
                    // v1 hierarchies; signal those below.
                    if self.v1.is_empty() {
                        return Ok(());
                    }
                }
            }
        }
        // Nothing to signal (the usual case when a stopped container is
        // deleted): skip the freeze and thaw round trip.
        if self.pids()?.is_empty() {
            return Ok(());
        }
        let frozen = self.freezer().is_ok() && self.freeze().is_ok();
        let result = self.signal_each(sig);
        if frozen {
            self.thaw()?;
        }
        result
    }

    fn signal_each(&self, sig: Signal) -> Result<()> {
        for pid in self.pids()? {
            match kill(Pid::from_raw(pid), sig) {
                Ok(()) | Err(nix::Error::ESRCH) => {}
                Err(source) => {
                    return Err(Error::Signal {
                        pid,
                        signal: sig as i32,
                        source,
                    })
                }
            }
        }
        Ok(())
    }

    /// Removes the directory (and any sub-cgroups, deepest first) in every
    /// hierarchy. Retries briefly while the kernel still reports EBUSY for a
    /// cgroup whose last process just exited. Already gone is fine.
    pub fn delete(&self) -> Result<()> {
        let mut first_error = None;
        for dir in self.dirs() {
            let result = subtree(dir)
                .and_then(|levels| levels.iter().rev().try_for_each(|level| remove_dir(level)));
            match result {
                Err(Error::Read { source, .. }) if source.kind() == io::ErrorKind::NotFound => {}
                Err(e) if first_error.is_none() => first_error = Some(e),
                _ => {}
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Controller name -> host directory, as runc records it in its state:
    /// every v1 controller (including "name=systemd") and "" for the cgroup2
    /// directory.
    pub fn paths(&self) -> BTreeMap<String, PathBuf> {
        let mut paths = BTreeMap::new();
        for d in &self.v1 {
            for c in &d.controllers {
                paths.insert(c.clone(), d.dir.clone());
            }
        }
        if let Some(d) = &self.v2 {
            paths.insert(String::new(), d.dir.clone());
        }
        paths
    }

    /// What the container should see at /sys/fs/cgroup: on v1 (and hybrid)
    /// one mount per hierarchy named as on the host, with symlinks from each
    /// controller of a combined hierarchy to its directory, plus "unified"
    /// on a hybrid host; on cgroup2 a single mount of this cgroup's directory.
    pub fn container_view(&self) -> ContainerView {
        let mut mounts = Vec::new();
        let mut symlinks = Vec::new();
        let mut taken = BTreeSet::new();
        if self.mode == Mode::V2 {
            if let Some(d) = &self.v2 {
                mounts.push(ViewMount {
                    name: String::new(),
                    host_dir: d.dir.clone(),
                    fstype: "cgroup2",
                    controllers: Vec::new(),
                });
            }
            return ContainerView { mounts, symlinks };
        }
        for d in &self.v1 {
            let name = mount_name(&d.mount_point);
            taken.insert(name.clone());
            mounts.push(ViewMount {
                name,
                host_dir: d.dir.clone(),
                fstype: "cgroup",
                controllers: d.controllers.clone(),
            });
        }
        for d in &self.v1 {
            let target = mount_name(&d.mount_point);
            for c in d.controllers.iter().filter(|c| !c.starts_with("name=")) {
                if taken.insert(c.clone()) {
                    symlinks.push((c.clone(), target.clone()));
                }
            }
        }
        if let Some(d) = &self.v2 {
            let name = mount_name(&d.mount_point);
            let name = if taken.contains(&name) {
                "unified".to_owned()
            } else {
                name
            };
            mounts.push(ViewMount {
                name,
                host_dir: d.dir.clone(),
                fstype: "cgroup2",
                controllers: Vec::new(),
            });
        }
        ContainerView { mounts, symlinks }
    }
}

enum Freezer<'a> {
    V1(&'a Path),
    V2(&'a Path),
}

impl Freezer<'_> {
    fn is_frozen(&self) -> Result<bool> {
        match self {
            Freezer::V1(dir) => Ok(read_file(&dir.join("freezer.state"))?.trim() == "FROZEN"),
            Freezer::V2(dir) => {
                let events = read_file(&dir.join("cgroup.events"))?;
                Ok(events.lines().any(|l| l.trim() == "frozen 1"))
            }
        }
    }

    fn set(&self, frozen: bool) -> Result<()> {
        let (file, value, state) = match (self, frozen) {
            (Freezer::V1(dir), true) => (dir.join("freezer.state"), "FROZEN", "FROZEN"),
            (Freezer::V1(dir), false) => (dir.join("freezer.state"), "THAWED", "THAWED"),
            (Freezer::V2(dir), true) => (dir.join("cgroup.freeze"), "1", "frozen"),
            (Freezer::V2(dir), false) => (dir.join("cgroup.freeze"), "0", "thawed"),
        };
        let start = Instant::now();
        let mut attempt = 0u32;
        let mut next_write = 0u32;
        loop {
            // v1 can stay in FREEZING while a task sits in an uninterruptible
            // sleep; writing the state again retries the freeze.
            if attempt == next_write {
                write_file(&file, value)?;
                next_write += 10;
            }
            if self.is_frozen()? == frozen {
                return Ok(());
            }
            if start.elapsed() > FREEZE_TIMEOUT {
                return Err(Error::FreezeTimeout { path: file, state });
            }
            attempt += 1;
            sleep(Duration::from_millis(if attempt < 10 { 1 } else { 10 }));
        }
    }
}

/// The name the mount point of a hierarchy has below its parent.
fn mount_name(mount_point: &Path) -> String {
    mount_point
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// `path` without `.`, `..` or repeated slashes, relative, never above its start.
fn clean_path(path: &str) -> PathBuf {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts.iter().collect()
}

/// Each directory from just below `top` down to `dir`, outermost first.
fn levels_below(top: &Path, dir: &Path) -> Vec<PathBuf> {
    let mut levels: Vec<PathBuf> = dir
        .ancestors()
        .take_while(|a| *a != top && a.starts_with(top))
        .map(Path::to_path_buf)
        .collect();
    levels.reverse();
    levels
}

fn make_dir(dir: &Path, made: &mut Vec<PathBuf>) -> Result<()> {
    match fs::create_dir(dir) {
        Ok(()) => {
            made.push(dir.to_path_buf());
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(source) => Err(Error::CreateDir {
            path: dir.to_path_buf(),
            source,
        }),
    }
}

/// A v1 cpuset whose cpus or mems are empty cannot take processes; copy them
/// from the parent, as the kernel does not.
fn inherit_cpuset(dir: &Path) -> Result<()> {
    let Some(parent) = dir.parent() else {
        return Ok(());
    };
    for file in ["cpuset.cpus", "cpuset.mems"] {
        let own = dir.join(file);
        let current = match fs::read_to_string(&own) {
            Ok(s) => s,
            // Only a test tree lacks the file; the kernel always has it.
            Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
            Err(source) => return Err(Error::Read { path: own, source }),
        };
        if current.trim().is_empty() {
            let value = read_file(&parent.join(file))?;
            write_file(&own, value.trim())?;
        }
    }
    Ok(())
}

/// Enables in `dir`'s cgroup.subtree_control every controller `dir` has.
/// Failures are ignored (a cgroup with processes cannot delegate): a limit
/// that needs a missing controller fails later naming its file.
fn delegate_controllers(dir: &Path) {
    let Ok(available) = fs::read_to_string(dir.join("cgroup.controllers")) else {
        return;
    };
    let wanted: Vec<String> = available
        .split_whitespace()
        .map(|c| format!("+{c}"))
        .collect();
    if wanted.is_empty() {
        return;
    }
    let file = dir.join("cgroup.subtree_control");
    if fs::write(&file, wanted.join(" ")).is_err() {
        for c in &wanted {
            let _ = fs::write(&file, c);
        }
    }
}

/// `dir` and every directory below it, parents before children.
fn subtree(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut all = vec![dir.to_path_buf()];
    let mut i = 0;
    while i < all.len() {
        let entries = fs::read_dir(&all[i]).map_err(|source| Error::Read {
            path: all[i].clone(),
            source,
        })?;
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                all.push(entry.path());
            }
        }
        i += 1;
    }
    Ok(all)
}

fn remove_dir(dir: &Path) -> Result<()> {
    let mut delay = Duration::from_millis(10);
    for attempt in 1..=RMDIR_ATTEMPTS {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e)
                if e.raw_os_error() == Some(nix::errno::Errno::EBUSY as i32)
                    && attempt < RMDIR_ATTEMPTS =>
            {
                sleep(delay);
                delay = (delay * 2).min(Duration::from_millis(200));
            }
            Err(source) => {
                return Err(Error::RemoveDir {
                    path: dir.to_path_buf(),
                    source,
                })
            }
        }
    }
    Ok(())
}

pub(crate) fn read_file(path: &Path) -> Result<String> {
    fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })
}

pub(crate) fn write_file(path: &Path, value: &str) -> Result<()> {
    fs::write(path, value).map_err(|source| Error::Write {
        path: path.to_path_buf(),
        value: value.to_owned(),
        source,
    })
}
