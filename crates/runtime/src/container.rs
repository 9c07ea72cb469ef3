//! Container lifecycle as runc drives it: create (fork, namespaces, rootfs,
//! wait on the exec fifo), start, state, kill, pause/resume and delete.
//!
//! Process tree of `create`: the runtime forks a first child that joins or
//! unshares namespaces (asking the runtime to write id maps for a new user
//! namespace), which forks the container's init (pid 1 in a new pid
//! namespace) and exits. Init builds the rootfs, reports ready and blocks
//! opening the exec fifo until `start` opens its other end.

use std::collections::BTreeMap;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use nix::sched::CloneFlags;
use nix::sys::signal::Signal;
use nix::sys::stat::Mode;
use nix::unistd::Pid;
use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::config::{load_bundle, Bundle};
use crate::error::{Context, Error, Result};
use crate::rootfs::{CgroupMountEntry, CgroupView, RootfsContext};
use crate::state::{self, ContainerState, Status, EXEC_FIFO};
use crate::sync::{channel_pair, Channel, Msg};

/// The longest the runtime waits for the next message from the first
/// child or init during create (each step, hooks in init included).
const CREATE_MESSAGE_TIMEOUT: Duration = Duration::from_secs(120);

pub struct CreateOptions<'a> {
    pub root: &'a Path,
    pub id: &'a str,
    pub bundle: &'a Path,
    pub pid_file: Option<&'a Path>,
    pub console_socket: Option<&'a Path>,
    pub no_pivot: bool,
    pub preserve_fds: i32,
    /// The container process's stdin, stdout and stderr when they are not
    /// the caller's own 0, 1 and 2 (a monitor that embeds the runtime).
    pub stdio: Option<[BorrowedFd<'a>; 3]>,
    /// A directory of compiled seccomp programs to reuse
    /// ([`crate::process::compile_seccomp_cached`]).
    pub seccomp_cache: Option<&'a Path>,
}

pub struct Created {
    pub state: ContainerState,
    /// The pty master when the process has a terminal and no console socket
    /// was given (foreground `run` copies it to its own stdio).
    pub console: Option<OwnedFd>,
}

pub(crate) fn cgroup_of(cgroups_path: Option<&str>, id: &str) -> Result<berth_cgroups::Cgroup> {
    let layout = berth_cgroups::detect()?;
    Ok(berth_cgroups::Cgroup::new(&layout, cgroups_path, id)?)
}

/// What /sys/fs/cgroup shows: for a mount of type "cgroup" the v1
/// hierarchies (on a hybrid host the cgroup2 side is left out, as runc does:
/// programs inside pick v1 or v2 by what they find there), or the cgroup2
/// directory on a pure v2 host; for "cgroup2" the cgroup2 directory alone.
fn cgroup_view(cg: &berth_cgroups::Cgroup) -> CgroupView {
    let view = cg.container_view();
    let entry = |m: &berth_cgroups::ViewMount| CgroupMountEntry {
        name: m.name.clone(),
        host_dir: m.host_dir.clone(),
    };
    let has_v1 = view.mounts.iter().any(|m| m.fstype == "cgroup");
    CgroupView {
        entries: view
            .mounts
            .iter()
            .filter(|m| !has_v1 || m.fstype == "cgroup")
            .map(entry)
            .collect(),
        symlinks: view.symlinks,
        unified: view
            .mounts
            .iter()
            .find(|m| m.fstype == "cgroup2")
            .map(|m| m.host_dir.clone()),
    }
}

/// Undoes a failed create: kills what was started, removes the cgroup and the
/// state directory.
struct CreateGuard {
    dir: PathBuf,
    cgroup: Option<berth_cgroups::Cgroup>,
    pids: Vec<i32>,
    armed: bool,
}

impl Drop for CreateGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        for pid in &self.pids {
            let _ = nix::sys::signal::kill(Pid::from_raw(*pid), Signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(Pid::from_raw(*pid), None);
        }
        if let Some(cg) = &self.cgroup {
            let _ = cg.kill_all(libc::SIGKILL);
            wait_cgroup_empty(cg, Duration::from_secs(5));
            let _ = cg.delete();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn wait_cgroup_empty(cg: &berth_cgroups::Cgroup, timeout: Duration) {
    let start = Instant::now();
    while start.elapsed() < timeout {
        match cg.pids() {
            Ok(p) if !p.is_empty() => std::thread::sleep(Duration::from_millis(10)),
            _ => return,
        }
    }
}

pub fn create(opts: &CreateOptions) -> Result<Created> {
    state::validate_id(opts.id)?;
    let bundle = load_bundle(opts.bundle)?;
    let spec = &bundle.spec;
    let linux = spec
        .linux()
        .as_ref()
        .ok_or_else(|| Error::InvalidConfig("linux section is missing".into()))?;
    if !linux
        .namespaces()
        .iter()
        .flatten()
        .any(|n| n.typ() == LinuxNamespaceType::Mount)
    {
        return Err(Error::InvalidConfig("a mount namespace is required".into()));
    }
    let terminal = spec
        .process()
        .as_ref()
        .and_then(|p| p.terminal())
        .unwrap_or(false);
    if let Some(sock) = opts.console_socket {
        if !terminal {
            return Err(Error::InvalidConfig(
                "--console-socket given but process.terminal is false".into(),
            ));
        }
        if !sock.exists() {
            return Err(Error::InvalidConfig(format!(
                "console socket {} does not exist",
                sock.display()
            )));
        }
    }
    let seccomp = crate::process::compile_seccomp_cached(spec, opts.seccomp_cache)?;

    std::fs::create_dir_all(opts.root)
        .context(|| format!("create root {}", opts.root.display()))?;
    let _ = std::fs::set_permissions(opts.root, std::fs::Permissions::from_mode(0o700));
    let dir = state::container_dir(opts.root, opts.id);
    match std::fs::create_dir(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(Error::Exists(opts.id.to_string()))
        }
        Err(e) => return Err(e).context(|| format!("create {}", dir.display())),
    }
    let cgroups_path = linux
        .cgroups_path()
        .as_ref()
        .map(|p| p.to_string_lossy().into_owned());
    let mut guard = CreateGuard {
        dir: dir.clone(),
        cgroup: None,
        pids: Vec::new(),
        armed: true,
    };
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o711))
        .context(|| format!("chmod {}", dir.display()))?;
    let fifo = dir.join(EXEC_FIFO);
    nix::unistd::mkfifo(&fifo, Mode::from_bits_truncate(0o600))
        .context(|| format!("mkfifo {}", fifo.display()))?;
    // World-writable so init can still open it after switching to the container's user.
    std::fs::set_permissions(&fifo, std::fs::Permissions::from_mode(0o622))
        .context(|| format!("chmod {}", fifo.display()))?;

    let cgroup = cgroup_of(cgroups_path.as_deref(), opts.id)?;
    // From here on the guard removes the cgroup too.
    guard.cgroup = Some(cgroup.clone());
    cgroup.create()?;
    let resources = with_default_device_rules(linux);
    cgroup.apply(&resources)?;

    let mut st = ContainerState {
        id: opts.id.to_string(),
        pid: 0,
        pid_start_time: 0,
        bundle: bundle.dir.clone(),
        rootfs: bundle.rootfs.clone(),
        created: state::now_rfc3339(),
        owner: String::new(),
        annotations: spec
            .annotations()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect::<BTreeMap<_, _>>(),
        cgroups_path,
        started: false,
        hooks: spec.hooks().clone(),
    };

    // Opened here, as host root: in a user namespace init could not reach it
    // through the state directory.
    let fifo_fd = nix::fcntl::open(&fifo, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty())
        .context(|| format!("open {}", fifo.display()))?;
    let agent = crate::process::connect_seccomp_agent(spec)?;
    let (parent_chan, child_chan) = channel_pair()?;
    // A child that hangs (a mount that never returns, a first child gone
    // without a word while init waits) fails the create instead of
    // holding its caller forever.
    parent_chan.set_receive_timeout(CREATE_MESSAGE_TIMEOUT)?;
    let view = cgroup_view(&cgroup);
    // Init enters its cgroup without the global lock a pid written to
    // cgroup.procs takes (see Cgroup::self_join), except where the cgroup
    // is its namespace's root (the first child is placed before it
    // unshares) or a user namespace might not reach the files.
    let in_userns = linux
        .namespaces()
        .iter()
        .flatten()
        .any(|n| n.typ() == LinuxNamespaceType::User);
    let join = (!in_userns && !new_cgroupns(&bundle.spec))
        .then(|| cgroup.self_join().ok())
        .flatten();
    let stage1 = match berth_sys::process::fork().context(|| "fork".to_string())? {
        berth_sys::process::Forked::Child => {
            drop(parent_chan);
            let code = match install_stdio(opts.stdio).and_then(|()| {
                first_child(
                    &child_chan,
                    &bundle,
                    &InitInputs {
                        fifo: &fifo_fd,
                        agent: agent.as_ref(),
                        seccomp: seccomp.as_ref(),
                        cgroups: &view,
                        join: join.as_ref(),
                    },
                    opts,
                )
            }) {
                Ok(()) => 0,
                Err(e) => {
                    let _ = child_chan.send(&Msg::Failed(e.to_string()));
                    1
                }
            };
            std::process::exit(code);
        }
        berth_sys::process::Forked::Parent(pid) => pid,
    };
    drop(child_chan);
    drop(fifo_fd);
    drop(join);
    guard.pids.push(stage1.as_raw());
    let console = drive_create(
        &parent_chan,
        &bundle,
        &cgroup,
        stage1,
        opts,
        &mut st,
        &mut guard,
    )?;

    st.pid_start_time = state::process_start_time(st.pid)
        .map(|(t, _)| t)
        .ok_or_else(|| Error::Init("container init exited during create".into()))?;
    st.save(opts.root)?;
    if let Some(pid_file) = opts.pid_file {
        write_pid_file(pid_file, st.pid)?;
    }
    guard.armed = false;
    Ok(Created { state: st, console })
}

/// Makes the given fds this process's 0, 1 and 2 (copied above 2 first,
/// so a source that is itself 0, 1 or 2 is not overwritten before use).
fn install_stdio(stdio: Option<[BorrowedFd<'_>; 3]>) -> Result<()> {
    let Some(stdio) = stdio else {
        return Ok(());
    };
    let copies = stdio
        .iter()
        .map(|fd| fd.try_clone_to_owned())
        .collect::<std::io::Result<Vec<OwnedFd>>>()
        .context(|| "copy the container's stdio".to_string())?;
    nix::unistd::dup2_stdin(&copies[0]).context(|| "set the container's stdin".to_string())?;
    nix::unistd::dup2_stdout(&copies[1]).context(|| "set the container's stdout".to_string())?;
    nix::unistd::dup2_stderr(&copies[2]).context(|| "set the container's stderr".to_string())?;
    Ok(())
}

/// The config's resources with the device rules every container needs
/// appended, as runc does: mknod of any node, the default devices, the
/// console and ptys, and each device listed in linux.devices.
fn with_default_device_rules(
    linux: &oci_spec::runtime::Linux,
) -> oci_spec::runtime::LinuxResources {
    let mut resources = linux.resources().clone().unwrap_or_default();
    add_default_device_rules(&mut resources, linux);
    resources
}

fn add_default_device_rules(
    resources: &mut oci_spec::runtime::LinuxResources,
    linux: &oci_spec::runtime::Linux,
) {
    use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};
    let rule = |typ, major: Option<i64>, minor: Option<i64>, access: &str| {
        let mut r = LinuxDeviceCgroup::default();
        r.set_allow(true);
        r.set_typ(Some(typ));
        r.set_major(major);
        r.set_minor(minor);
        r.set_access(Some(access.to_string()));
        r
    };
    let mut rules = resources.devices().clone().unwrap_or_default();
    rules.push(rule(LinuxDeviceType::C, None, None, "m"));
    rules.push(rule(LinuxDeviceType::B, None, None, "m"));
    for (major, minor) in [
        (1, 3),
        (1, 5),
        (1, 7),
        (1, 8),
        (1, 9),
        (5, 0),
        (5, 1),
        (5, 2),
    ] {
        rules.push(rule(LinuxDeviceType::C, Some(major), Some(minor), "rwm"));
    }
    rules.push(rule(LinuxDeviceType::C, Some(136), None, "rwm"));
    for d in linux.devices().iter().flatten() {
        let typ = match d.typ() {
            LinuxDeviceType::U => LinuxDeviceType::C,
            other => other,
        };
        rules.push(rule(typ, Some(d.major()), Some(d.minor()), "rwm"));
    }
    resources.set_devices(Some(rules));
}

/// `update`: new resource limits for a created, running or paused container.
/// Device rules, when given, get the same defaults as at create.
pub fn update(root: &Path, id: &str, resources: &oci_spec::runtime::LinuxResources) -> Result<()> {
    let st = ContainerState::load(root, id)?;
    let current = status(root, &st);
    if current == Status::Stopped {
        return Err(Error::WrongState {
            id: id.to_string(),
            status: current.to_string(),
            why: "cannot update a stopped container",
        });
    }
    let mut resources = resources.clone();
    if resources.devices().is_some() {
        let spec = Spec::load(st.bundle.join("config.json")).map_err(|e| Error::Config {
            path: st.bundle.join("config.json"),
            why: e.to_string(),
        })?;
        if let Some(linux) = spec.linux() {
            add_default_device_rules(&mut resources, linux);
        }
    }
    Ok(cgroup_of(st.cgroups_path.as_deref(), id)?.apply(&resources)?)
}

pub fn write_pid_file(path: &Path, pid: i32) -> Result<()> {
    let tmp = path.with_extension("berth-tmp");
    std::fs::write(&tmp, pid.to_string()).context(|| format!("write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).context(|| format!("write pid file {}", path.display()))
}

/// The runtime's side of create: places the container in its cgroup, writes
/// id maps, runs runtime-namespace hooks, relays the console, until init is ready.
///
/// Joining a cgroup v1 hierarchy waits for an RCU grace period (the first
/// write to cgroup.procs after a quiet moment takes 8-18 ms here), so it is
/// not done on the first child, which waits: init is placed once its pid is
/// known, while it builds the rootfs (and, without hooks, goes on to its
/// last step), and before it is let past the runtime hooks or create
/// returns (nothing of the container runs before). Only a new cgroup
/// namespace needs the first child placed first (it takes its root from the
/// cgroup the unsharing process is in).
/// Whether the config asks for a new cgroup namespace.
fn new_cgroupns(spec: &Spec) -> bool {
    spec.linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .is_some_and(|ns| {
            ns.iter()
                .any(|n| n.typ() == LinuxNamespaceType::Cgroup && n.path().is_none())
        })
}

fn drive_create(
    chan: &Channel,
    bundle: &Bundle,
    cgroup: &berth_cgroups::Cgroup,
    stage1: Pid,
    opts: &CreateOptions,
    st: &mut ContainerState,
    guard: &mut CreateGuard,
) -> Result<Option<OwnedFd>> {
    let place_init = if new_cgroupns(&bundle.spec) {
        cgroup.add_process(stage1.as_raw())?;
        None
    } else {
        Some(cgroup)
    };
    chan.send(&Msg::Proceed)?;
    let mut console = None;
    loop {
        let (msg, mut fds) = receive(chan)?;
        // The first child and init share the channel: a first child that
        // is slow to report init's pid (a busy host) lets init's messages
        // come first. Hooks and the state need the pid: wait for it.
        if st.pid == 0 && matches!(msg, Msg::RuntimeHooks | Msg::Ready) {
            match receive(chan)?.0 {
                Msg::Pid(pid) => init_pid_known(st, guard, stage1, pid, place_init)?,
                Msg::PlacedPid(pid) => init_pid_known(st, guard, stage1, pid, None)?,
                Msg::Failed(why) => return Err(Error::Init(why)),
                other => {
                    return Err(Error::Init(format!(
                        "unexpected message {other:?} before init's pid"
                    )))
                }
            }
        }
        match msg {
            Msg::IdMapRequest(pid) => {
                write_id_maps(&bundle.spec, pid)?;
                chan.send(&Msg::Proceed)?;
            }
            Msg::Pid(pid) => init_pid_known(st, guard, stage1, pid, place_init)?,
            Msg::PlacedPid(pid) => init_pid_known(st, guard, stage1, pid, None)?,
            Msg::RuntimeHooks => {
                let hooks = bundle.spec.hooks().as_ref();
                let json = serde_json::to_vec(&st.hook_state(Status::Creating))
                    .map_err(|e| Error::Init(e.to_string()))?;
                let result = crate::hooks::run_hooks(
                    "prestart",
                    hooks.and_then(|h| h.prestart().as_ref()),
                    &json,
                )
                .and_then(|_| {
                    crate::hooks::run_hooks(
                        "createRuntime",
                        hooks.and_then(|h| h.create_runtime().as_ref()),
                        &json,
                    )
                });
                match result {
                    Ok(()) => chan.send(&Msg::Proceed)?,
                    Err(e) => {
                        let _ = chan.send(&Msg::Failed(e.to_string()));
                        return Err(e);
                    }
                }
            }
            Msg::Console => {
                let Some(master) = fds.pop() else {
                    return Err(Error::Init("console message without a pty".into()));
                };
                match opts.console_socket {
                    Some(path) => send_console(path, &master)?,
                    None => console = Some(master),
                }
            }
            Msg::Ready => return Ok(console),
            Msg::Failed(why) => return Err(Error::Init(why)),
            Msg::Proceed => return Err(Error::Init("unexpected message from init".into())),
        }
    }
}

/// The next message from the first child or init.
fn receive(chan: &Channel) -> Result<(Msg, Vec<OwnedFd>)> {
    chan.recv()?
        .ok_or_else(|| Error::Init("container init exited before it was ready".into()))
}

/// The first child reported init's pid and exits: reap it, and place init
/// in `cgroup` when the first child was not.
fn init_pid_known(
    st: &mut ContainerState,
    guard: &mut CreateGuard,
    stage1: Pid,
    pid: i32,
    cgroup: Option<&berth_cgroups::Cgroup>,
) -> Result<()> {
    st.pid = pid;
    guard.pids.push(pid);
    let _ = nix::sys::wait::waitpid(stage1, None);
    if let Some(cgroup) = cgroup {
        cgroup.add_process(pid)?;
    }
    Ok(())
}

/// Sends the pty master to the console socket as runc does: SCM_RIGHTS with
/// the pty's name as payload.
pub fn send_console(path: &Path, master: &OwnedFd) -> Result<()> {
    let sock = std::os::unix::net::UnixStream::connect(path)
        .context(|| format!("connect to console socket {}", path.display()))?;
    berth_sys::socket::send_with_fds(&sock, b"/dev/ptmx", &[master])
        .context(|| format!("send pty to {}", path.display()))?;
    Ok(())
}

fn write_id_maps(spec: &Spec, pid: i32) -> Result<()> {
    let linux = spec.linux().as_ref();
    let fmt = |maps: Option<&Vec<oci_spec::runtime::LinuxIdMapping>>| {
        maps.into_iter()
            .flatten()
            .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
            .collect::<String>()
    };
    let uid = fmt(linux.and_then(|l| l.uid_mappings().as_ref()));
    let gid = fmt(linux.and_then(|l| l.gid_mappings().as_ref()));
    if !uid.is_empty() {
        std::fs::write(format!("/proc/{pid}/uid_map"), &uid)
            .context(|| format!("write uid_map {uid:?}"))?;
    }
    if !gid.is_empty() {
        std::fs::write(format!("/proc/{pid}/gid_map"), &gid)
            .context(|| format!("write gid_map {gid:?}"))?;
    }
    Ok(())
}

const NS_ORDER: [(LinuxNamespaceType, CloneFlags); 8] = [
    (LinuxNamespaceType::User, CloneFlags::CLONE_NEWUSER),
    (LinuxNamespaceType::Ipc, CloneFlags::CLONE_NEWIPC),
    (LinuxNamespaceType::Uts, CloneFlags::CLONE_NEWUTS),
    (LinuxNamespaceType::Network, CloneFlags::CLONE_NEWNET),
    (LinuxNamespaceType::Pid, CloneFlags::CLONE_NEWPID),
    (
        LinuxNamespaceType::Time,
        CloneFlags::from_bits_retain(libc::CLONE_NEWTIME),
    ),
    (LinuxNamespaceType::Cgroup, CloneFlags::CLONE_NEWCGROUP),
    (LinuxNamespaceType::Mount, CloneFlags::CLONE_NEWNS),
];

/// First child: join namespaces given by path, create the others, fork init.
fn first_child(
    chan: &Channel,
    bundle: &Bundle,
    inputs: &InitInputs,
    opts: &CreateOptions,
) -> Result<()> {
    chan.wait_proceed()?;
    let spec = &bundle.spec;
    let namespaces: Vec<_> = spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().clone())
        .unwrap_or_default();
    // Open every namespace path first: joining the mount namespace changes what paths mean.
    let mut joins = Vec::new();
    for (typ, flag) in NS_ORDER {
        if let Some(ns) = namespaces.iter().find(|n| n.typ() == typ) {
            if let Some(path) = ns.path() {
                let fd = nix::fcntl::open(path, OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())
                    .context(|| format!("open namespace {}", path.display()))?;
                joins.push((flag, fd, path.clone()));
            }
        }
    }
    nix::sys::prctl::set_dumpable(false).context(|| "PR_SET_DUMPABLE".to_string())?;
    for (flag, fd, path) in &joins {
        nix::sched::setns(fd, *flag).context(|| format!("join namespace {}", path.display()))?;
    }
    let new_ns = |t: LinuxNamespaceType| {
        namespaces
            .iter()
            .any(|n| n.typ() == t && n.path().is_none())
    };
    let in_userns = namespaces
        .iter()
        .any(|n| n.typ() == LinuxNamespaceType::User);
    if new_ns(LinuxNamespaceType::User) {
        nix::sched::unshare(CloneFlags::CLONE_NEWUSER)
            .context(|| "unshare user namespace".to_string())?;
        chan.send(&Msg::IdMapRequest(std::process::id() as i32))?;
        chan.wait_proceed()?;
    }
    if in_userns {
        let root_uid = nix::unistd::Uid::from_raw(0);
        let root_gid = nix::unistd::Gid::from_raw(0);
        nix::unistd::setresgid(root_gid, root_gid, root_gid)
            .context(|| "become root in the user namespace (gid)".to_string())?;
        nix::unistd::setresuid(root_uid, root_uid, root_uid)
            .context(|| "become root in the user namespace (uid)".to_string())?;
    }
    let mut flags = CloneFlags::empty();
    for (typ, flag) in NS_ORDER {
        if typ != LinuxNamespaceType::User && new_ns(typ) {
            flags |= flag;
        }
    }
    nix::sched::unshare(flags).context(|| format!("unshare namespaces {flags:?}"))?;
    if new_ns(LinuxNamespaceType::Time) {
        write_time_offsets(spec)?;
    }
    // Init joins the v1 hierarchies itself, first thing (init, below).
    let (forked, placed) = fork_joining(inputs.join, "fork init")?;
    match forked {
        berth_sys::process::Forked::Parent(pid) => {
            chan.send(&if placed {
                Msg::PlacedPid(pid.as_raw())
            } else {
                Msg::Pid(pid.as_raw())
            })?;
            Ok(())
        }
        berth_sys::process::Forked::Child => {
            let err = match init(chan, bundle, inputs, opts, in_userns) {
                Ok(never) => match never {},
                Err(e) => e,
            };
            // Before Ready the runtime reports the error; after it, stderr is all we have.
            if chan.send(&Msg::Failed(err.to_string())).is_err() {
                eprintln!("berth-runtime init: {err}");
            }
            std::process::exit(127);
        }
    }
}

/// Forks a child that enters the cgroup `join` opened without anyone
/// writing its pid to cgroup.procs: born in the cgroup2 directory where
/// clone3 allows it; the child then joins each v1 hierarchy itself
/// ([`SelfJoin::join_v1`](berth_cgroups::SelfJoin::join_v1)). Returns the
/// fork's side and whether the child is placed that way (else the parent
/// writes its pid, as without `join`).
pub(crate) fn fork_joining(
    join: Option<&berth_cgroups::SelfJoin>,
    what: &str,
) -> Result<(berth_sys::process::Forked, bool)> {
    let plain = || berth_sys::process::fork().context(|| what.to_string());
    Ok(match join.map(|j| j.v2_dir()) {
        None => (plain()?, false),
        Some(None) => (plain()?, true),
        Some(Some(dir)) => match berth_sys::process::fork_into_cgroup(dir) {
            Ok(forked) => (forked, true),
            Err(_) => (plain()?, false),
        },
    })
}

fn write_time_offsets(spec: &Spec) -> Result<()> {
    let Some(offsets) = spec
        .linux()
        .as_ref()
        .and_then(|l| l.time_offsets().as_ref())
    else {
        return Ok(());
    };
    let mut text = String::new();
    for (clock, off) in offsets {
        text.push_str(&format!(
            "{clock} {} {}\n",
            off.secs().unwrap_or(0),
            off.nanosecs().unwrap_or(0)
        ));
    }
    std::fs::write("/proc/self/timens_offsets", text).context(|| "write timens_offsets".to_string())
}

/// What the runtime prepared for init before forking: the exec fifo it
/// opened, the seccomp agent it connected to, the compiled filter, and the
/// cgroup directories the container sees.
struct InitInputs<'a> {
    fifo: &'a OwnedFd,
    agent: Option<&'a OwnedFd>,
    seccomp: Option<&'a berth_sys::seccomp::SeccompProgram>,
    cgroups: &'a CgroupView,
    /// Set when init places itself in its cgroup.
    join: Option<&'a berth_cgroups::SelfJoin>,
}

/// The container's init, pid 1 of its pid namespace: everything up to the
/// exec fifo, then the user's program.
fn init(
    chan: &Channel,
    bundle: &Bundle,
    inputs: &InitInputs,
    opts: &CreateOptions,
    in_userns: bool,
) -> Result<std::convert::Infallible> {
    if let Some(join) = inputs.join {
        join.join_v1()
            .context(|| "join the container's cgroup".to_string())?;
    }
    let fifo_fd = inputs.fifo;
    let spec = &bundle.spec;
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| Error::InvalidConfig("process is missing".into()))?;
    nix::unistd::setsid().context(|| "setsid".to_string())?;
    nix::sys::stat::umask(Mode::empty());
    // Hooks get the pid as the runtime sees it; the host's /proc still
    // answers until pivot_root.
    let host_pid = std::fs::read_link("/proc/self")
        .ok()
        .and_then(|p| p.to_str().and_then(|s| s.parse::<i32>().ok()))
        .unwrap_or(std::process::id() as i32);
    let new_uts = spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .is_some_and(|ns| ns.iter().any(|n| n.typ() == LinuxNamespaceType::Uts));
    if new_uts {
        if let Some(h) = spec.hostname().as_deref().filter(|h| !h.is_empty()) {
            nix::unistd::sethostname(h).context(|| format!("set hostname {h:?}"))?;
        }
        if let Some(d) = spec.domainname().as_deref().filter(|d| !d.is_empty()) {
            berth_sys::process::set_domainname(d).context(|| format!("set domainname {d:?}"))?;
        }
    }
    crate::rootfs::prepare(&RootfsContext {
        spec,
        rootfs: &bundle.rootfs,
        in_userns,
        cgroups: inputs.cgroups,
    })?;
    // The runtime answers once its hooks ran and init is in the cgroup
    // (see drive_create; init usually placed itself, first thing). Without
    // hooks that wait is not needed: nothing runs before `start`, which
    // comes after create has placed init, and where the runtime writes
    // init's pid, init goes on meanwhile.
    let hooks_before_pivot = spec.hooks().as_ref().is_some_and(|h| {
        h.prestart().is_some() || h.create_runtime().is_some() || h.create_container().is_some()
    });
    if hooks_before_pivot {
        chan.send(&Msg::RuntimeHooks)?;
        chan.wait_proceed()?;
    }
    if let Some(hooks) = spec
        .hooks()
        .as_ref()
        .and_then(|h| h.create_container().as_ref())
    {
        let st = hook_state_json(bundle, opts.id, Status::Creating, host_pid)?;
        crate::hooks::run_hooks("createContainer", Some(hooks), &st)?;
    }
    if opts.no_pivot {
        crate::rootfs::move_root(&bundle.rootfs)?;
    } else {
        crate::rootfs::pivot(&bundle.rootfs)?;
    }
    crate::rootfs::apply_sysctls(spec)?;
    crate::rootfs::finalize(spec)?;
    if process.terminal().unwrap_or(false) {
        let master = crate::tty::setup_container_console(process)?;
        chan.send_with_fds(&Msg::Console, &[&master])?;
    }
    crate::process::apply_rlimits(process)?;
    crate::process::apply_oom_score_adj(process)?;
    if let Some(p) = spec.linux().as_ref().and_then(|l| l.personality().as_ref()) {
        crate::tty::apply_personality(p)?;
    }
    let mut prepared = crate::process::prepare_exec(process, inputs.seccomp.cloned())?;
    prepared.init = spec
        .annotations()
        .as_ref()
        .and_then(|a| a.get(crate::process::INIT_ANNOTATION))
        .is_some_and(|v| v == "true");
    if let Some(socket) = inputs.agent {
        let annotations = annotations_of(spec);
        let state = state::HookState {
            oci_version: state::OCI_VERSION,
            id: opts.id,
            status: Status::Creating,
            pid: Some(host_pid),
            bundle: &bundle.dir,
            annotations: &annotations,
        };
        prepared.seccomp_agent = Some(crate::process::SeccompAgent {
            socket: socket
                .try_clone()
                .context(|| "dup the seccomp agent socket".to_string())?,
            message: crate::process::seccomp_agent_message(spec, &state)?,
        });
    }
    chan.send(&Msg::Ready)?;
    // The runtime exits after Ready; from here errors go to the container's stderr.
    let fifo_write = nix::fcntl::open(
        crate::rootfs::as_fd_path(&fifo_fd).as_str(),
        OFlag::O_WRONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .context(|| "open exec fifo for writing".to_string())?;
    // `start` is under way (it opened the fifo): startContainer hooks run
    // now, and only then does `start` read its byte and go on to the
    // poststart hooks, so the two kinds never overlap.
    if let Some(hooks) = spec
        .hooks()
        .as_ref()
        .and_then(|h| h.start_container().as_ref())
    {
        let st = hook_state_json(bundle, opts.id, Status::Created, host_pid)?;
        crate::hooks::run_hooks("startContainer", Some(hooks), &st)?;
    }
    nix::unistd::write(&fifo_write, b"0").context(|| "write exec fifo".to_string())?;
    drop(fifo_write);
    crate::process::finish_and_exec(process, &prepared, opts.preserve_fds)
}

fn annotations_of(spec: &Spec) -> BTreeMap<String, String> {
    spec.annotations()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect()
}

fn hook_state_json(bundle: &Bundle, id: &str, status: Status, pid: i32) -> Result<Vec<u8>> {
    let annotations = annotations_of(&bundle.spec);
    let st = state::HookState {
        oci_version: state::OCI_VERSION,
        id,
        status,
        pid: Some(pid),
        bundle: &bundle.dir,
        annotations: &annotations,
    };
    serde_json::to_vec(&st).map_err(|e| Error::Init(e.to_string()))
}

/// The live status of a container.
pub fn status(root: &Path, st: &ContainerState) -> Status {
    if !st.init_alive() {
        return Status::Stopped;
    }
    if !st.started && st.dir(root).join(EXEC_FIFO).exists() {
        return Status::Created;
    }
    if cgroup_of(st.cgroups_path.as_deref(), &st.id)
        .and_then(|cg| Ok(cg.is_frozen()?))
        .unwrap_or(false)
    {
        return Status::Paused;
    }
    Status::Running
}

pub fn start(root: &Path, id: &str) -> Result<ContainerState> {
    let mut st = ContainerState::load(root, id)?;
    let current = status(root, &st);
    if current != Status::Created {
        return Err(Error::WrongState {
            id: id.to_string(),
            status: current.to_string(),
            why: "cannot start a container that is not in the created state",
        });
    }
    let fifo = st.dir(root).join(EXEC_FIFO);
    let fd = nix::fcntl::open(
        &fifo,
        OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .context(|| format!("open {}", fifo.display()))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut buf = [0u8; 1];
        match nix::unistd::read(&fd, &mut buf) {
            Ok(1) => break,
            Ok(_) | Err(nix::errno::Errno::EAGAIN) => {
                if !st.init_alive() {
                    return Err(Error::Init("container init exited before start".into()));
                }
                if Instant::now() > deadline {
                    return Err(Error::Init("container init did not answer start".into()));
                }
                let pfd = nix::poll::PollFd::new(
                    std::os::fd::AsFd::as_fd(&fd),
                    nix::poll::PollFlags::POLLIN,
                );
                let _ = nix::poll::poll(&mut [pfd], nix::poll::PollTimeout::from(50u16));
            }
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e).context(|| format!("read {}", fifo.display())),
        }
    }
    let _ = std::fs::remove_file(&fifo);
    st.started = true;
    if let Err(e) = st.save(root) {
        // A short-lived process may have exited and been deleted (by its
        // monitor's `delete --force`) before this save: it did start.
        if !st.dir(root).exists() {
            return Ok(st);
        }
        return Err(e);
    }
    if let Some(hooks) = st.hooks.as_ref().and_then(|h| h.poststart().as_ref()) {
        let json = serde_json::to_vec(&st.hook_state(Status::Running))
            .map_err(|e| Error::Init(e.to_string()))?;
        // The spec says a failing poststart hook is only a warning.
        if let Err(e) = crate::hooks::run_hooks("poststart", Some(hooks), &json) {
            eprintln!("warning: {e}");
        }
    }
    Ok(st)
}

pub fn kill(root: &Path, id: &str, signal: Signal, all: bool) -> Result<()> {
    let st = ContainerState::load(root, id)?;
    let current = status(root, &st);
    if current == Status::Stopped {
        return Err(Error::WrongState {
            id: id.to_string(),
            status: current.to_string(),
            why: "container not running",
        });
    }
    if all {
        let cg = cgroup_of(st.cgroups_path.as_deref(), id)?;
        Ok(cg.kill_all(signal as i32)?)
    } else {
        nix::sys::signal::kill(Pid::from_raw(st.pid), signal)
            .context(|| format!("send {signal} to {}", st.pid))
    }
}

/// Loads a container that must be in `wanted` state, with its cgroup.
fn load_in(
    root: &Path,
    id: &str,
    wanted: Status,
    why: &'static str,
) -> Result<(ContainerState, berth_cgroups::Cgroup)> {
    let st = ContainerState::load(root, id)?;
    let current = status(root, &st);
    if current != wanted {
        return Err(Error::WrongState {
            id: id.to_string(),
            status: current.to_string(),
            why,
        });
    }
    let cg = cgroup_of(st.cgroups_path.as_deref(), id)?;
    Ok((st, cg))
}

pub fn pause(root: &Path, id: &str) -> Result<()> {
    let (_, cg) = load_in(root, id, Status::Running, "container not running")?;
    Ok(cg.freeze()?)
}

pub fn resume(root: &Path, id: &str) -> Result<()> {
    let (_, cg) = load_in(root, id, Status::Paused, "container not paused")?;
    Ok(cg.thaw()?)
}

pub fn pids(root: &Path, id: &str) -> Result<Vec<i32>> {
    let st = ContainerState::load(root, id)?;
    Ok(cgroup_of(st.cgroups_path.as_deref(), id)?.pids()?)
}

pub fn stats(root: &Path, id: &str) -> Result<serde_json::Value> {
    let st = ContainerState::load(root, id)?;
    let stats = cgroup_of(st.cgroups_path.as_deref(), id)?.stats()?;
    serde_json::to_value(stats).map_err(|e| Error::Init(e.to_string()))
}

pub fn delete(root: &Path, id: &str, force: bool) -> Result<()> {
    let st = match ContainerState::load(root, id) {
        Ok(st) => st,
        Err(Error::NotFound(_)) => {
            // A create that died before writing state.json may have left its directory.
            let dir = state::container_dir(root, id);
            if state::validate_id(id).is_ok() && dir.is_dir() {
                let _ = std::fs::remove_dir_all(&dir);
            }
            return if force {
                Ok(())
            } else {
                Err(Error::NotFound(id.to_string()))
            };
        }
        Err(e) => return Err(e),
    };
    let current = status(root, &st);
    let cg = cgroup_of(st.cgroups_path.as_deref(), id)?;
    match current {
        Status::Stopped | Status::Created => {}
        Status::Running | Status::Paused | Status::Creating if !force => {
            return Err(Error::WrongState {
                id: id.to_string(),
                status: current.to_string(),
                why: "cannot delete a container that is not stopped (use --force)",
            })
        }
        _ => {}
    }
    if current != Status::Stopped {
        let _ = nix::sys::signal::kill(Pid::from_raw(st.pid), Signal::SIGKILL);
        let _ = cg.kill_all(libc::SIGKILL);
        if current == Status::Paused {
            let _ = cg.thaw();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while st.init_alive() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let _ = cg.kill_all(libc::SIGKILL);
    wait_cgroup_empty(&cg, Duration::from_secs(5));
    cg.delete()?;
    if let Some(hooks) = st.hooks.as_ref().and_then(|h| h.poststop().as_ref()) {
        let json = serde_json::to_vec(&st.hook_state(Status::Stopped))
            .map_err(|e| Error::Init(e.to_string()))?;
        if let Err(e) = crate::hooks::run_hooks("poststop", Some(hooks), &json) {
            eprintln!("warning: {e}");
        }
    }
    std::fs::remove_dir_all(st.dir(root)).context(|| format!("remove {}", st.dir(root).display()))
}

/// Every container under `root`, with its live status.
pub fn list(root: &Path) -> Result<Vec<(ContainerState, Status)>> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e).context(|| format!("read {}", root.display())),
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Ok(st) = ContainerState::load(root, &name) {
            let s = status(root, &st);
            out.push((st, s));
        }
    }
    out.sort_by(|a, b| a.0.created.cmp(&b.0.created));
    Ok(out)
}
