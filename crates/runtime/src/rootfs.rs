//! The container's root filesystem, built inside its new mount namespace:
//! the spec's mounts, /dev, pivot_root, masked and read-only paths.
//!
//! Every path that comes from the image is hostile: destinations are resolved
//! inside the rootfs with openat2(RESOLVE_IN_ROOT) and mounts are made onto the
//! resolved fd (`/proc/self/fd/N`), so a symlink in the image can never send a
//! mount to the host.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::{fstat, mknodat, Mode, SFlag};
use nix::sys::statvfs::{fstatvfs, FsFlags};
use nix::unistd::{chdir, fchdir, pivot_root, symlinkat};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType, Mount, Spec};

use crate::error::{Context, Error, Result};

/// A cgroup hierarchy as the container sees it at /sys/fs/cgroup.
#[derive(Debug, Clone)]
pub struct CgroupMountEntry {
    /// Directory name under the mount (`memory`, `cpu,cpuacct`, `unified`), or
    /// empty when the whole mount is this one hierarchy (cgroup v2).
    pub name: String,
    /// The container's cgroup directory on the host.
    pub host_dir: PathBuf,
}

#[derive(Debug, Clone, Default)]
pub struct CgroupView {
    pub entries: Vec<CgroupMountEntry>,
    /// (link name, target) pairs, such as `cpu` -> `cpu,cpuacct`.
    pub symlinks: Vec<(String, String)>,
    /// The container's cgroup2 directory, for a mount of type "cgroup2".
    pub unified: Option<PathBuf>,
}

pub struct RootfsContext<'a> {
    pub spec: &'a Spec,
    pub rootfs: &'a Path,
    pub in_userns: bool,
    pub cgroups: &'a CgroupView,
}

#[derive(Debug, PartialEq)]
struct MountOptions {
    flags: MsFlags,
    clear: MsFlags,
    propagation: Vec<MsFlags>,
    data: Vec<String>,
}

fn parse_options(opts: &[String]) -> Result<MountOptions> {
    let mut o = MountOptions {
        flags: MsFlags::empty(),
        clear: MsFlags::empty(),
        propagation: Vec::new(),
        data: Vec::new(),
    };
    for opt in opts {
        let (set, clear) = match opt.as_str() {
            "defaults" => (MsFlags::empty(), MsFlags::empty()),
            "ro" => (MsFlags::MS_RDONLY, MsFlags::empty()),
            "rw" => (MsFlags::empty(), MsFlags::MS_RDONLY),
            "suid" => (MsFlags::empty(), MsFlags::MS_NOSUID),
            "nosuid" => (MsFlags::MS_NOSUID, MsFlags::empty()),
            "dev" => (MsFlags::empty(), MsFlags::MS_NODEV),
            "nodev" => (MsFlags::MS_NODEV, MsFlags::empty()),
            "exec" => (MsFlags::empty(), MsFlags::MS_NOEXEC),
            "noexec" => (MsFlags::MS_NOEXEC, MsFlags::empty()),
            "sync" => (MsFlags::MS_SYNCHRONOUS, MsFlags::empty()),
            "async" => (MsFlags::empty(), MsFlags::MS_SYNCHRONOUS),
            "dirsync" => (MsFlags::MS_DIRSYNC, MsFlags::empty()),
            "remount" => (MsFlags::MS_REMOUNT, MsFlags::empty()),
            "mand" => (MsFlags::MS_MANDLOCK, MsFlags::empty()),
            "nomand" => (MsFlags::empty(), MsFlags::MS_MANDLOCK),
            "atime" => (MsFlags::empty(), MsFlags::MS_NOATIME),
            "noatime" => (MsFlags::MS_NOATIME, MsFlags::empty()),
            "diratime" => (MsFlags::empty(), MsFlags::MS_NODIRATIME),
            "nodiratime" => (MsFlags::MS_NODIRATIME, MsFlags::empty()),
            "relatime" => (MsFlags::MS_RELATIME, MsFlags::empty()),
            "norelatime" => (MsFlags::empty(), MsFlags::MS_RELATIME),
            "strictatime" => (MsFlags::MS_STRICTATIME, MsFlags::empty()),
            "nostrictatime" => (MsFlags::empty(), MsFlags::MS_STRICTATIME),
            "bind" => (MsFlags::MS_BIND, MsFlags::empty()),
            "rbind" => (MsFlags::MS_BIND | MsFlags::MS_REC, MsFlags::empty()),
            "tmpcopyup" => (MsFlags::empty(), MsFlags::empty()),
            p @ ("private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave"
            | "unbindable" | "runbindable") => {
                o.propagation.push(propagation_flag(p));
                continue;
            }
            unsupported @ ("idmap" | "ridmap" | "rro" | "rrw" | "rnosuid" | "rsuid" | "rnodev"
            | "rdev" | "rnoexec" | "rexec" | "rnoatime" | "ratime") => {
                return Err(Error::InvalidConfig(format!(
                    "mount option {unsupported:?} is not supported by this runtime yet"
                )))
            }
            data => {
                o.data.push(data.to_string());
                continue;
            }
        };
        o.flags.insert(set);
        o.flags.remove(clear);
        o.clear.insert(clear);
    }
    Ok(o)
}

pub fn propagation_flag(name: &str) -> MsFlags {
    match name {
        "private" => MsFlags::MS_PRIVATE,
        "rprivate" => MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        "shared" => MsFlags::MS_SHARED,
        "rshared" => MsFlags::MS_SHARED | MsFlags::MS_REC,
        "slave" => MsFlags::MS_SLAVE,
        "unbindable" => MsFlags::MS_UNBINDABLE,
        "runbindable" => MsFlags::MS_UNBINDABLE | MsFlags::MS_REC,
        _ => MsFlags::MS_SLAVE | MsFlags::MS_REC,
    }
}

/// What to create when a destination is missing.
#[derive(Clone, Copy, PartialEq)]
pub enum Create {
    Nothing,
    Dir,
    File,
}

fn fd_path(fd: &impl AsRawFd) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

fn in_root_how(flags: OFlag) -> OpenHow {
    OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS)
}

/// Opens `path` (absolute, as seen inside the container) under `root` without
/// ever leaving it, creating the missing parts if asked to. Returns an O_PATH fd.
pub fn open_in_root(root: &OwnedFd, path: &Path, create: Create) -> Result<OwnedFd> {
    open_in_root_depth(root, path, create, 0)
}

/// Symlinks followed while creating a missing destination, as the kernel's limit.
const MAX_LINKS: u32 = 40;

fn open_in_root_depth(root: &OwnedFd, path: &Path, create: Create, depth: u32) -> Result<OwnedFd> {
    let rel = relative(path);
    let rel_str = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel.as_path()
    };
    match openat2(root, rel_str, in_root_how(OFlag::O_PATH)) {
        Ok(fd) => return Ok(fd),
        Err(Errno::ENOENT) if create != Create::Nothing => {}
        Err(e) => return Err(e).context(|| format!("resolve {} in rootfs", path.display())),
    }
    if depth > MAX_LINKS {
        return Err(Error::Init(format!(
            "too many symlinks while creating {} in rootfs",
            path.display()
        )));
    }
    let (Some(parent), Some(name)) = (rel.parent(), rel.file_name()) else {
        return Err(Error::Init(format!("cannot create {}", path.display())));
    };
    let parent_abs = Path::new("/").join(parent);
    let parent_fd = open_in_root_depth(root, &parent_abs, Create::Dir, depth + 1)?;
    if !is_dir(&parent_fd) {
        return Err(Error::Init(format!(
            "{} is not a directory in the rootfs",
            parent.display()
        )));
    }
    let made = match create {
        Create::Dir => nix::sys::stat::mkdirat(&parent_fd, name, Mode::from_bits_truncate(0o755)),
        _ => nix::fcntl::openat(
            &parent_fd,
            name,
            OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_WRONLY | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o644),
        )
        .map(drop),
    };
    match made {
        Ok(()) => {}
        Err(Errno::EEXIST) => {
            // A dangling symlink: create its target, resolved inside the root.
            if let Ok(target) = nix::fcntl::readlinkat(&parent_fd, name) {
                let target = Path::new(&target);
                let inside = if target.is_absolute() {
                    target.to_path_buf()
                } else {
                    parent_abs.join(target)
                };
                return open_in_root_depth(root, &inside, create, depth + 1);
            }
        }
        Err(e) => return Err(e).context(|| format!("create {} in rootfs", path.display())),
    }
    openat2(root, rel_str, in_root_how(OFlag::O_PATH))
        .context(|| format!("resolve {} in rootfs", path.display()))
}

/// `path` without its root and with `.` removed; `..` is kept for openat2 to
/// clamp at the root.
fn relative(path: &Path) -> PathBuf {
    path.components()
        .filter(|c| matches!(c, Component::Normal(_) | Component::ParentDir))
        .collect()
}

fn open_dir(path: &Path) -> Result<OwnedFd> {
    nix::fcntl::open(
        path,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .context(|| format!("open {}", path.display()))
}

fn is_dir(fd: &OwnedFd) -> bool {
    fstat(fd)
        .map(|s| SFlag::from_bits_truncate(s.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR)
        .unwrap_or(false)
}

/// Flags a remount must keep (the kernel refuses to clear locked flags in a
/// user namespace, and dropping nosuid/nodev/noexec silently would weaken a mount).
fn locked_flags(fd: &OwnedFd) -> MsFlags {
    let Ok(st) = fstatvfs(fd) else {
        return MsFlags::empty();
    };
    let f = st.flags();
    let mut out = MsFlags::empty();
    for (sf, mf) in [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ] {
        if f.contains(sf) {
            out |= mf;
        }
    }
    out
}

/// Everything before pivot_root: propagation, the rootfs bind, the spec's
/// mounts and /dev. Returns true when /dev was set up by us (a tmpfs).
pub fn prepare(ctx: &RootfsContext) -> Result<()> {
    let linux = ctx.spec.linux().as_ref();
    let propagation = linux
        .and_then(|l| l.rootfs_propagation().as_deref())
        .map(propagation_flag)
        .unwrap_or(MsFlags::MS_SLAVE | MsFlags::MS_REC);
    mount(None::<&str>, "/", None::<&str>, propagation, None::<&str>)
        .context(|| "set propagation of /".to_string())?;
    mount(
        Some(ctx.rootfs),
        ctx.rootfs,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .context(|| format!("bind mount rootfs {}", ctx.rootfs.display()))?;
    let root = open_dir(ctx.rootfs)?;
    let mut dev_is_tmpfs = false;
    for m in ctx.spec.mounts().iter().flatten() {
        mount_entry(ctx, &root, m)?;
        if m.destination() == Path::new("/dev") && m.typ().as_deref() == Some("tmpfs") {
            dev_is_tmpfs = true;
        }
    }
    if dev_is_tmpfs {
        create_devices(ctx, &root)?;
    }
    // Make a shared/slave rootfs propagation apply to the rootfs mount too.
    if linux
        .and_then(|l| l.rootfs_propagation().as_deref())
        .is_some_and(|p| p.contains("shared"))
    {
        mount(
            None::<&str>,
            ctx.rootfs,
            None::<&str>,
            MsFlags::MS_SHARED,
            None::<&str>,
        )
        .context(|| "make rootfs shared".to_string())?;
    }
    Ok(())
}

fn mount_entry(ctx: &RootfsContext, root: &OwnedFd, m: &Mount) -> Result<()> {
    let dest = m.destination();
    let opts = parse_options(m.options().as_deref().unwrap_or(&[]))?;
    let typ = m.typ().as_deref().unwrap_or("");
    let is_bind = typ == "bind" || opts.flags.contains(MsFlags::MS_BIND);
    if typ == "cgroup" || typ == "cgroup2" {
        return mount_cgroups(ctx, root, dest, &opts, typ == "cgroup2");
    }
    let data = opts.data.join(",");
    let data = (!data.is_empty()).then_some(data);
    if is_bind {
        let source = m
            .source()
            .as_ref()
            .ok_or_else(|| Error::InvalidConfig(format!("bind mount {dest:?} has no source")))?;
        let meta = std::fs::metadata(source)
            .map_err(|e| Error::InvalidConfig(format!("bind mount source {source:?}: {e}")))?;
        let target = open_in_root(
            root,
            dest,
            if meta.is_dir() {
                Create::Dir
            } else {
                Create::File
            },
        )?;
        let bind_flags = MsFlags::MS_BIND | (opts.flags & MsFlags::MS_REC);
        mount(
            Some(source),
            fd_path(&target).as_str(),
            None::<&str>,
            bind_flags,
            None::<&str>,
        )
        .context(|| format!("bind mount {} on {}", source.display(), dest.display()))?;
        let extra = opts.flags - (MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_REMOUNT);
        if !extra.is_empty() {
            let mounted = open_in_root(root, dest, Create::Nothing)?;
            let keep = if ctx.in_userns {
                locked_flags(&mounted) - opts.clear
            } else {
                MsFlags::empty()
            };
            mount(
                None::<&str>,
                fd_path(&mounted).as_str(),
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REMOUNT | extra | keep,
                None::<&str>,
            )
            .context(|| format!("remount {} with {:?}", dest.display(), extra))?;
        }
    } else {
        let target = open_in_root(root, dest, Create::Dir)?;
        let source = m
            .source()
            .as_ref()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| typ.to_string());
        let result = mount(
            Some(source.as_str()),
            fd_path(&target).as_str(),
            Some(typ),
            opts.flags,
            data.as_deref(),
        );
        match result {
            Ok(()) => {}
            // sysfs can't be mounted when the network namespace is not ours
            // (user namespace without a new netns): bind the host's instead.
            Err(Errno::EPERM) if typ == "sysfs" && ctx.in_userns => {
                mount(
                    Some("/sys"),
                    fd_path(&target).as_str(),
                    None::<&str>,
                    MsFlags::MS_BIND | MsFlags::MS_REC,
                    None::<&str>,
                )
                .context(|| format!("bind /sys on {}", dest.display()))?;
            }
            Err(e) => {
                return Err(e).context(|| {
                    format!(
                        "mount {typ} {source} on {} ({:?})",
                        dest.display(),
                        opts.data
                    )
                })
            }
        }
    }
    if !opts.propagation.is_empty() {
        let mounted = open_in_root(root, dest, Create::Nothing)?;
        for p in &opts.propagation {
            mount(
                None::<&str>,
                fd_path(&mounted).as_str(),
                None::<&str>,
                *p,
                None::<&str>,
            )
            .context(|| format!("set propagation of {}", dest.display()))?;
        }
    }
    Ok(())
}

/// /sys/fs/cgroup: on v1 a tmpfs with one read-only bind per hierarchy (the
/// container's own cgroup), on v2 the container's cgroup directory.
fn mount_cgroups(
    ctx: &RootfsContext,
    root: &OwnedFd,
    dest: &Path,
    opts: &MountOptions,
    cgroup2_only: bool,
) -> Result<()> {
    let flags = opts.flags
        & (MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC);
    let bind = |src: &Path, dest: &Path| -> Result<()> {
        let target = open_in_root(root, dest, Create::Dir)?;
        mount(
            Some(src),
            fd_path(&target).as_str(),
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .context(|| format!("bind {} on {}", src.display(), dest.display()))?;
        let mounted = open_in_root(root, dest, Create::Nothing)?;
        mount(
            None::<&str>,
            fd_path(&mounted).as_str(),
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | flags | locked_flags(&mounted),
            None::<&str>,
        )
        .context(|| format!("remount {}", dest.display()))
    };
    if cgroup2_only {
        return match &ctx.cgroups.unified {
            Some(dir) => bind(dir, dest),
            None => Err(Error::InvalidConfig(format!(
                "mount of type cgroup2 at {}: this host has no cgroup2 hierarchy",
                dest.display()
            ))),
        };
    }
    if let [only] = ctx.cgroups.entries.as_slice() {
        if only.name.is_empty() {
            return bind(&only.host_dir, dest);
        }
    }
    let target = open_in_root(root, dest, Create::Dir)?;
    mount(
        Some("tmpfs"),
        fd_path(&target).as_str(),
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("mode=755"),
    )
    .context(|| format!("mount tmpfs on {}", dest.display()))?;
    for entry in &ctx.cgroups.entries {
        bind(&entry.host_dir, &dest.join(&entry.name))?;
    }
    let dir = open_in_root(root, dest, Create::Nothing)?;
    for (link, target) in &ctx.cgroups.symlinks {
        match symlinkat(target.as_str(), &dir, link.as_str()) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => return Err(e).context(|| format!("symlink {link} in {}", dest.display())),
        }
    }
    // The tmpfs holding the hierarchies is read-only too when the mount asks
    // for it (runc 1.1 leaves it writable).
    if flags.contains(MsFlags::MS_RDONLY) {
        mount(
            None::<&str>,
            fd_path(&dir).as_str(),
            None::<&str>,
            MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY | locked_flags(&dir),
            None::<&str>,
        )
        .context(|| format!("remount {} read-only", dest.display()))?;
    }
    Ok(())
}

struct DeviceNode {
    path: PathBuf,
    kind: LinuxDeviceType,
    major: u64,
    minor: u64,
    mode: u32,
    uid: u32,
    gid: u32,
}

fn default_devices() -> Vec<DeviceNode> {
    [
        ("/dev/null", 1, 3),
        ("/dev/zero", 1, 5),
        ("/dev/full", 1, 7),
        ("/dev/random", 1, 8),
        ("/dev/urandom", 1, 9),
        ("/dev/tty", 5, 0),
    ]
    .into_iter()
    .map(|(p, major, minor)| DeviceNode {
        path: p.into(),
        kind: LinuxDeviceType::C,
        major,
        minor,
        mode: 0o666,
        uid: 0,
        gid: 0,
    })
    .collect()
}

fn spec_device(d: &LinuxDevice) -> DeviceNode {
    DeviceNode {
        path: d.path().clone(),
        kind: d.typ(),
        major: d.major() as u64,
        minor: d.minor() as u64,
        mode: d.file_mode().unwrap_or(0o666) & 0o7777,
        uid: d.uid().unwrap_or(0),
        gid: d.gid().unwrap_or(0),
    }
}

fn create_devices(ctx: &RootfsContext, root: &OwnedFd) -> Result<()> {
    let mut devices: Vec<DeviceNode> = ctx
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.devices().as_ref())
        .into_iter()
        .flatten()
        .map(spec_device)
        .collect();
    for d in default_devices() {
        if !devices.iter().any(|x| x.path == d.path) {
            devices.push(d);
        }
    }
    for d in &devices {
        create_device(ctx, root, d)?;
    }
    let dev = open_in_root(root, Path::new("/dev"), Create::Dir)?;
    let mut links = vec![
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
    ];
    if Path::new("/proc/kcore").exists() {
        links.push(("core", "/proc/kcore"));
    }
    for (name, target) in links {
        match symlinkat(target, &dev, name) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => return Err(e).context(|| format!("symlink /dev/{name}")),
        }
    }
    Ok(())
}

fn create_device(ctx: &RootfsContext, root: &OwnedFd, d: &DeviceNode) -> Result<()> {
    let (Some(parent), Some(name)) = (d.path.parent(), d.path.file_name()) else {
        return Err(Error::InvalidConfig(format!(
            "bad device path {:?}",
            d.path
        )));
    };
    let parent_fd = open_in_root(root, parent, Create::Dir)?;
    if ctx.in_userns {
        // mknod is not allowed in a user namespace: bind the host's node.
        let target = open_in_root(root, &d.path, Create::File)?;
        return mount(
            Some(&d.path),
            fd_path(&target).as_str(),
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .context(|| format!("bind device {}", d.path.display()));
    }
    let kind = match d.kind {
        LinuxDeviceType::C | LinuxDeviceType::U => SFlag::S_IFCHR,
        LinuxDeviceType::B => SFlag::S_IFBLK,
        LinuxDeviceType::P => SFlag::S_IFIFO,
        LinuxDeviceType::A => {
            return Err(Error::InvalidConfig(format!(
                "device {:?} has type 'a', which is only valid in cgroup rules",
                d.path
            )))
        }
    };
    match mknodat(
        &parent_fd,
        name,
        kind,
        Mode::from_bits_truncate(d.mode),
        nix::sys::stat::makedev(d.major, d.minor),
    ) {
        Ok(()) => {}
        Err(Errno::EEXIST) => {
            // Replace whatever the image had there (a file, or a symlink out of the rootfs).
            nix::unistd::unlinkat(&parent_fd, name, nix::unistd::UnlinkatFlags::NoRemoveDir)
                .context(|| format!("replace {}", d.path.display()))?;
            mknodat(
                &parent_fd,
                name,
                kind,
                Mode::from_bits_truncate(d.mode),
                nix::sys::stat::makedev(d.major, d.minor),
            )
            .context(|| format!("mknod {}", d.path.display()))?;
        }
        Err(e) => return Err(e).context(|| format!("mknod {}", d.path.display())),
    }
    nix::unistd::fchownat(
        &parent_fd,
        name,
        Some(d.uid.into()),
        Some(d.gid.into()),
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .context(|| format!("chown {}", d.path.display()))?;
    nix::sys::stat::fchmodat(
        &parent_fd,
        name,
        Mode::from_bits_truncate(d.mode),
        nix::sys::stat::FchmodatFlags::FollowSymlink,
    )
    .context(|| format!("chmod {}", d.path.display()))
}

/// Switches the root to `rootfs` with pivot_root and detaches the old root.
pub fn pivot(rootfs: &Path) -> Result<()> {
    let old = nix::fcntl::open(
        "/",
        OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .context(|| "open /".to_string())?;
    let new = nix::fcntl::open(
        rootfs,
        OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .context(|| format!("open {}", rootfs.display()))?;
    fchdir(&new).context(|| "chdir to rootfs".to_string())?;
    pivot_root(".", ".").context(|| "pivot_root".to_string())?;
    fchdir(&old).context(|| "chdir to old root".to_string())?;
    mount(
        None::<&str>,
        ".",
        None::<&str>,
        MsFlags::MS_SLAVE | MsFlags::MS_REC,
        None::<&str>,
    )
    .context(|| "make old root slave".to_string())?;
    umount2(".", MntFlags::MNT_DETACH).context(|| "detach old root".to_string())?;
    chdir("/").context(|| "chdir /".to_string())
}

/// `--no-pivot`: move the rootfs over / and chroot into it.
pub fn move_root(rootfs: &Path) -> Result<()> {
    chdir(rootfs).context(|| format!("chdir {}", rootfs.display()))?;
    mount(
        Some(rootfs),
        "/",
        None::<&str>,
        MsFlags::MS_MOVE,
        None::<&str>,
    )
    .context(|| "move rootfs to /".to_string())?;
    nix::unistd::chroot(".").context(|| "chroot".to_string())?;
    chdir("/").context(|| "chdir /".to_string())
}

/// After pivot: masked paths, read-only paths and a read-only root.
pub fn finalize(spec: &Spec) -> Result<()> {
    let root = open_dir(Path::new("/"))?;
    if let Some(linux) = spec.linux() {
        let null = verified_dev_null()?;
        for p in linux.masked_paths().iter().flatten() {
            mask_path(&root, Path::new(p), &null)?;
        }
        for p in linux.readonly_paths().iter().flatten() {
            readonly_path(&root, Path::new(p))?;
        }
    }
    if spec
        .root()
        .as_ref()
        .is_some_and(|r| r.readonly() == Some(true))
    {
        mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | locked_flags(&root),
            None::<&str>,
        )
        .context(|| "remount / read-only".to_string())?;
    }
    Ok(())
}

/// /dev/null as the source of masks, checked by fd to be the real char 1:3
/// (a symlink or a planted file there would turn a mask into a rw bind).
fn verified_dev_null() -> Result<OwnedFd> {
    let fd = nix::fcntl::open(
        "/dev/null",
        OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .context(|| "open /dev/null".to_string())?;
    let st = fstat(&fd).context(|| "stat /dev/null".to_string())?;
    let is_char = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFCHR;
    if !is_char || st.st_rdev != nix::sys::stat::makedev(1, 3) {
        return Err(Error::Init(
            "/dev/null in the container is not the null device; refusing to mask with it".into(),
        ));
    }
    Ok(fd)
}

fn mask_path(root: &OwnedFd, path: &Path, null: &OwnedFd) -> Result<()> {
    let target = match open_in_root(root, path, Create::Nothing) {
        Ok(fd) => fd,
        Err(Error::Sys {
            errno: Errno::ENOENT,
            ..
        }) => return Ok(()),
        Err(e) => return Err(e),
    };
    if is_dir(&target) {
        mount(
            Some("tmpfs"),
            fd_path(&target).as_str(),
            Some("tmpfs"),
            MsFlags::MS_RDONLY,
            None::<&str>,
        )
    } else {
        mount(
            Some(fd_path(null).as_str()),
            fd_path(&target).as_str(),
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
    }
    .context(|| format!("mask {}", path.display()))
}

fn readonly_path(root: &OwnedFd, path: &Path) -> Result<()> {
    let target = match open_in_root(root, path, Create::Nothing) {
        Ok(fd) => fd,
        Err(Error::Sys {
            errno: Errno::ENOENT,
            ..
        }) => return Ok(()),
        Err(e) => return Err(e),
    };
    let p = fd_path(&target);
    mount(
        Some(p.as_str()),
        p.as_str(),
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .context(|| format!("bind {} read-only", path.display()))?;
    let mounted = open_in_root(root, path, Create::Nothing)?;
    mount(
        None::<&str>,
        fd_path(&mounted).as_str(),
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | locked_flags(&mounted),
        None::<&str>,
    )
    .context(|| format!("remount {} read-only", path.display()))
}

/// Writes a value under /proc through a handle checked to be procfs, with no
/// mount crossed on the way (a container can't redirect the write).
pub fn write_proc(rel: &str, value: &str) -> Result<()> {
    let proc_fd = nix::fcntl::open(
        "/proc",
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .context(|| "open /proc".to_string())?;
    let fs = nix::sys::statfs::fstatfs(&proc_fd).context(|| "statfs /proc".to_string())?;
    if fs.filesystem_type() != nix::sys::statfs::PROC_SUPER_MAGIC {
        return Err(Error::Init("/proc is not procfs".into()));
    }
    let how = OpenHow::new()
        .flags(OFlag::O_WRONLY | OFlag::O_CLOEXEC)
        .resolve(
            ResolveFlag::RESOLVE_BENEATH
                | ResolveFlag::RESOLVE_NO_MAGICLINKS
                | ResolveFlag::RESOLVE_NO_XDEV
                | ResolveFlag::RESOLVE_NO_SYMLINKS,
        );
    let fd = openat2(&proc_fd, rel, how).context(|| format!("open /proc/{rel}"))?;
    nix::unistd::write(&fd, value.as_bytes()).context(|| format!("write /proc/{rel}"))?;
    Ok(())
}

/// Sets the spec's sysctls through /proc/sys.
pub fn apply_sysctls(spec: &Spec) -> Result<()> {
    let Some(sysctls) = spec.linux().as_ref().and_then(|l| l.sysctl().as_ref()) else {
        return Ok(());
    };
    for (key, value) in sysctls {
        write_proc(&format!("sys/{}", key.replace('.', "/")), value)?;
    }
    Ok(())
}

pub fn as_fd_path(fd: &impl AsFd) -> String {
    format!("/proc/self/fd/{}", fd.as_fd().as_raw_fd())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(list: &[&str]) -> MountOptions {
        parse_options(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>()).expect("options")
    }

    #[test]
    fn mount_options_split_into_flags_propagation_and_data() {
        let o = opts(&[
            "nosuid",
            "noexec",
            "rbind",
            "rslave",
            "mode=755",
            "size=65536k",
        ]);
        assert_eq!(
            o.flags,
            MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC | MsFlags::MS_BIND | MsFlags::MS_REC
        );
        assert_eq!(o.propagation, vec![MsFlags::MS_SLAVE | MsFlags::MS_REC]);
        assert_eq!(o.data, vec!["mode=755", "size=65536k"]);
    }

    #[test]
    fn later_options_override_earlier_ones() {
        assert!(opts(&["ro", "rw"]).flags.is_empty());
        assert_eq!(opts(&["rw", "ro"]).flags, MsFlags::MS_RDONLY);
    }

    #[test]
    fn unsupported_recursive_options_are_refused() {
        let err = parse_options(&["rro".to_string()]).expect_err("rro");
        assert!(err.to_string().contains("rro"));
    }

    #[test]
    fn open_in_root_never_leaves_the_root() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("etc")).expect("mkdir");
        // A symlink pointing at the host's /tmp: must resolve inside the root.
        std::os::unix::fs::symlink("/outside", root.join("etc/escape")).expect("symlink");
        std::os::unix::fs::symlink("../../../../outside", root.join("dotdot")).expect("symlink");
        let root_fd = open_dir(&root).expect("root fd");
        open_in_root(&root_fd, Path::new("/etc/escape/x"), Create::Dir).expect("created");
        assert!(root.join("outside/x").is_dir(), "created inside the root");
        open_in_root(&root_fd, Path::new("/dotdot/y"), Create::File).expect("created");
        assert!(root.join("outside/y").is_file());
        assert!(!Path::new("/outside").exists());
    }
}
