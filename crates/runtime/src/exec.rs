//! `exec`: a new process in a running container. A first child joins the
//! container's cgroup and every namespace of its init that differs from the
//! runtime's own, then forks the process (so it lands in the pid namespace),
//! which sets itself up like init does and executes.

use std::os::fd::OwnedFd;
use std::path::Path;

use nix::fcntl::OFlag;
use nix::sched::CloneFlags;
use nix::sys::stat::Mode;
use oci_spec::runtime::{Process, Spec};

use crate::container::{cgroup_of, send_console, status, write_pid_file};
use crate::error::{Context, Error, Result};
use crate::state::{ContainerState, Status};
use crate::sync::{channel_pair, Channel, Msg};

pub struct ExecOptions<'a> {
    pub root: &'a Path,
    pub id: &'a str,
    pub process: Process,
    pub pid_file: Option<&'a Path>,
    pub console_socket: Option<&'a Path>,
    pub preserve_fds: i32,
    /// Where compiled seccomp programs are kept between runs (see
    /// `process::compile_seccomp_cached`); `None` compiles every time.
    pub seccomp_cache: Option<&'a Path>,
}

pub struct Execed {
    pub pid: i32,
    /// The pty master when the process has a terminal and no console socket.
    pub console: Option<OwnedFd>,
}

const NAMESPACES: [(&str, CloneFlags); 8] = [
    ("user", CloneFlags::CLONE_NEWUSER),
    ("ipc", CloneFlags::CLONE_NEWIPC),
    ("uts", CloneFlags::CLONE_NEWUTS),
    ("net", CloneFlags::CLONE_NEWNET),
    ("pid", CloneFlags::CLONE_NEWPID),
    ("time", CloneFlags::from_bits_retain(libc::CLONE_NEWTIME)),
    ("cgroup", CloneFlags::CLONE_NEWCGROUP),
    ("mnt", CloneFlags::CLONE_NEWNS),
];

fn same_ns(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.ino() == y.ino() && x.dev() == y.dev(),
        _ => false,
    }
}

/// Starts the process; the caller reaps it (it is a child of a subreaper, or
/// of whoever adopts it when the runtime exits with --detach).
pub fn exec(opts: ExecOptions) -> Result<Execed> {
    let st = ContainerState::load(opts.root, opts.id)?;
    let current = status(opts.root, &st);
    if !matches!(current, Status::Running | Status::Created) {
        return Err(Error::WrongState {
            id: opts.id.to_string(),
            status: current.to_string(),
            why: "cannot exec in a container that is not running",
        });
    }
    let spec = Spec::load(st.bundle.join("config.json")).map_err(|e| Error::Config {
        path: st.bundle.join("config.json"),
        why: e.to_string(),
    })?;
    if !opts.process.cwd().is_absolute() {
        return Err(Error::InvalidConfig(format!(
            "process.cwd {:?} must be an absolute path",
            opts.process.cwd()
        )));
    }
    if opts.process.args().as_ref().is_none_or(|a| a.is_empty()) {
        return Err(Error::InvalidConfig(
            "process.args must not be empty".into(),
        ));
    }
    let terminal = opts.process.terminal().unwrap_or(false);
    if opts.console_socket.is_some() && !terminal {
        return Err(Error::InvalidConfig(
            "--console-socket given but the process has no terminal".into(),
        ));
    }
    let cgroup = cgroup_of(st.cgroups_path.as_deref(), opts.id)?;
    // Open the namespaces now: after joining the mount namespace /proc is the container's.
    let mut joins = Vec::new();
    for (name, flag) in NAMESPACES {
        let theirs = format!("/proc/{}/ns/{name}", st.pid);
        let ours = format!("/proc/self/ns/{name}");
        if Path::new(&theirs).exists() && !same_ns(Path::new(&theirs), Path::new(&ours)) {
            let fd = nix::fcntl::open(
                theirs.as_str(),
                OFlag::O_RDONLY | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .context(|| format!("open {theirs}"))?;
            joins.push((flag, fd, name));
        }
    }
    let seccomp = crate::process::compile_seccomp_cached(&spec, opts.seccomp_cache)?;
    let agent = match crate::process::connect_seccomp_agent(&spec)? {
        Some(socket) => Some(crate::process::SeccompAgent {
            socket,
            message: crate::process::seccomp_agent_message(&spec, &st.hook_state(Status::Running))?,
        }),
        None => None,
    };
    let (parent, child) = channel_pair()?;
    // The first child enters the container's cgroup without a pid written
    // to cgroup.procs (see Cgroup::self_join): born in the cgroup2 dir,
    // joining each v1 hierarchy itself.
    let join = cgroup.self_join().ok();
    let (forked, placed) = crate::container::fork_joining(join.as_ref(), "fork")?;
    let first = match forked {
        berth_sys::process::Forked::Child => {
            drop(parent);
            let joined = match &join {
                Some(join) => join
                    .join_v1()
                    .context(|| "join the container's cgroup".to_string()),
                None => Ok(()),
            };
            let code = match joined
                .and_then(|()| first_child(&child, &opts, &joins, agent.as_ref(), seccomp.as_ref()))
            {
                Ok(()) => 0,
                Err(e) => {
                    let _ = child.send(&Msg::Failed(e.to_string()));
                    1
                }
            };
            std::process::exit(code);
        }
        berth_sys::process::Forked::Parent(pid) => pid,
    };
    drop(child);
    drop(joins);
    let kill_first = |e: Error| {
        let _ = nix::sys::signal::kill(first, nix::sys::signal::Signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(first, None);
        e
    };
    drop(join);
    if !placed {
        cgroup
            .add_process(first.as_raw())
            .map_err(|e| kill_first(e.into()))?;
    }
    parent.send(&Msg::Proceed).map_err(kill_first)?;
    let mut pid = None;
    let mut console = None;
    loop {
        let Some((msg, mut fds)) = parent.recv()? else {
            break;
        };
        match msg {
            Msg::Pid(p) => {
                pid = Some(p);
                let _ = nix::sys::wait::waitpid(first, None);
            }
            Msg::Console => {
                let master = fds
                    .pop()
                    .ok_or_else(|| Error::Init("console message without a pty".into()))?;
                match opts.console_socket {
                    Some(path) => send_console(path, &master)?,
                    None => console = Some(master),
                }
            }
            Msg::Failed(why) => {
                if let Some(p) = pid {
                    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(p), None);
                }
                let _ = nix::sys::wait::waitpid(first, None);
                return Err(Error::Init(why));
            }
            other => return Err(Error::Init(format!("unexpected message {other:?}"))),
        }
    }
    // The channel closes on exec (close-on-exec), which is how success is known.
    let pid = pid.ok_or_else(|| Error::Init("exec process exited before it started".into()))?;
    if let Some(pid_file) = opts.pid_file {
        write_pid_file(pid_file, pid)?;
    }
    Ok(Execed { pid, console })
}

fn first_child(
    chan: &Channel,
    opts: &ExecOptions,
    joins: &[(CloneFlags, OwnedFd, &str)],
    agent: Option<&crate::process::SeccompAgent>,
    seccomp: Option<&berth_sys::seccomp::SeccompProgram>,
) -> Result<()> {
    chan.wait_proceed()?;
    // Not dumpable: a container process can't open our /proc/<pid>/exe (the
    // runtime binary on the host) while we are inside its namespaces.
    nix::sys::prctl::set_dumpable(false).context(|| "PR_SET_DUMPABLE".to_string())?;
    for (flag, fd, name) in joins {
        nix::sched::setns(fd, *flag)
            .context(|| format!("join the container's {name} namespace"))?;
    }
    match berth_sys::process::fork().context(|| "fork".to_string())? {
        berth_sys::process::Forked::Parent(pid) => chan.send(&Msg::Pid(pid.as_raw())),
        berth_sys::process::Forked::Child => {
            let err = match exec_process(chan, &opts.process, opts.preserve_fds, agent, seccomp) {
                Ok(never) => match never {},
                Err(e) => e,
            };
            let _ = chan.send(&Msg::Failed(err.to_string()));
            std::process::exit(127);
        }
    }
}

fn exec_process(
    chan: &Channel,
    process: &Process,
    preserve_fds: i32,
    agent: Option<&crate::process::SeccompAgent>,
    seccomp: Option<&berth_sys::seccomp::SeccompProgram>,
) -> Result<std::convert::Infallible> {
    if process.terminal().unwrap_or(false) {
        nix::unistd::setsid().context(|| "setsid".to_string())?;
        let master = crate::tty::setup_container_console_for_exec(process)?;
        chan.send_with_fds(&Msg::Console, &[&master])?;
    }
    crate::process::apply_rlimits(process)?;
    crate::process::apply_oom_score_adj(process)?;
    let mut prepared = crate::process::prepare_exec(process, seccomp.cloned())?;
    if let Some(a) = agent {
        prepared.seccomp_agent = Some(crate::process::SeccompAgent {
            socket: a
                .socket
                .try_clone()
                .context(|| "dup the seccomp agent socket".to_string())?,
            message: a.message.clone(),
        });
    }
    crate::process::finish_and_exec(process, &prepared, preserve_fds)
}
