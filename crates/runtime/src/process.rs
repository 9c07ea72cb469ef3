//! The last steps before the container's program runs, shared by the init
//! process and `exec`: rlimits, user and groups, capabilities, no_new_privs,
//! seccomp, working directory, fd hygiene and execve.

use std::ffi::CString;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::sys::resource::{setrlimit, Resource};
use nix::unistd::{Gid, Uid};
use oci_spec::runtime::{PosixRlimitType, Process, Spec};

use crate::error::{Context, Error, Result};

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Everything needed for execve, resolved inside the container before the
/// runtime reports success, so "not found" errors surface at create/exec time.
pub struct PreparedExec {
    pub path: CString,
    pub args: Vec<CString>,
    pub env: Vec<CString>,
    /// Compiled before the runtime reports success: compiling takes
    /// milliseconds, which must not stretch the gap between `start` and the
    /// program running (a signal sent in that gap would be lost).
    pub seccomp: Option<berth_sys::seccomp::SeccompProgram>,
    /// Where the seccomp listener goes when the profile notifies.
    pub seccomp_agent: Option<SeccompAgent>,
    /// Stay as the container's pid 1 (reaping zombies, forwarding signals)
    /// and run the program as its child: annotation [`INIT_ANNOTATION`].
    pub init: bool,
}

/// Annotation that asks for the built-in init (`docker run --init`).
pub const INIT_ANNOTATION: &str = "run.berth.init";

/// The agent at `linux.seccomp.listenerPath`: a socket the runtime connected
/// on the host, and the state message sent with the listener fd (the OCI
/// spec's container process state).
pub struct SeccompAgent {
    pub socket: std::os::fd::OwnedFd,
    pub message: Vec<u8>,
}

/// Connects to the seccomp agent named by the profile, when there is one.
/// Runs in the runtime (host namespaces) before anything is forked.
pub fn connect_seccomp_agent(spec: &Spec) -> Result<Option<std::os::fd::OwnedFd>> {
    let Some(seccomp) = spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) else {
        return Ok(None);
    };
    let notifies = seccomp
        .syscalls()
        .iter()
        .flatten()
        .any(|s| s.action() == oci_spec::runtime::LinuxSeccompAction::ScmpActNotify);
    match seccomp.listener_path() {
        Some(path) => {
            let stream = std::os::unix::net::UnixStream::connect(path)
                .context(|| format!("connect to the seccomp agent at {}", path.display()))?;
            Ok(Some(stream.into()))
        }
        None if notifies => Err(Error::InvalidConfig(
            "seccomp: SCMP_ACT_NOTIFY needs linux.seccomp.listenerPath (the agent that answers)"
                .into(),
        )),
        None => Ok(None),
    }
}

/// The message an agent gets with the listener fd.
pub fn seccomp_agent_message(spec: &Spec, state: &crate::state::HookState) -> Result<Vec<u8>> {
    let metadata = spec
        .linux()
        .as_ref()
        .and_then(|l| l.seccomp().as_ref())
        .and_then(|s| s.listener_metadata().clone())
        .unwrap_or_default();
    serde_json::to_vec(&serde_json::json!({
        "ociVersion": crate::state::OCI_VERSION,
        "fds": ["seccompFd"],
        "pid": state.pid,
        "metadata": metadata,
        "state": state,
    }))
    .map_err(|e| Error::Init(e.to_string()))
}

/// Loads the filter and hands its listener, if any, to the agent.
fn load_seccomp(prepared: &PreparedExec) -> Result<()> {
    let Some(program) = &prepared.seccomp else {
        return Ok(());
    };
    let listener = program
        .load()
        .map_err(|e| Error::Init(format!("load seccomp filter: {e}")))?;
    if let (Some(fd), Some(agent)) = (listener, &prepared.seccomp_agent) {
        berth_sys::socket::send_with_fds(&agent.socket, &agent.message, &[&fd])
            .context(|| "send the seccomp listener to the agent".to_string())?;
    }
    Ok(())
}

fn cstring(s: &str, what: &str) -> Result<CString> {
    CString::new(s).map_err(|_| Error::InvalidConfig(format!("{what} {s:?} contains a NUL byte")))
}

/// Compiles the spec's seccomp profile, if any. Done once, in the runtime
/// before it forks: bad profiles fail before anything is created, and the
/// forked processes inherit the compiled program.
pub fn compile_seccomp(spec: &Spec) -> Result<Option<berth_sys::seccomp::SeccompProgram>> {
    match spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) {
        Some(profile) => {
            Ok(Some(berth_sys::seccomp::compile(profile).map_err(|e| {
                Error::InvalidConfig(format!("seccomp: {e}"))
            })?))
        }
        None => Ok(None),
    }
}

/// [`compile_seccomp`] through `cache`, a directory of compiled programs
/// named by the profile, libseccomp's version and the architecture:
/// containers with the same profile (most of them: Docker's default) skip
/// libseccomp, which takes milliseconds. A missing or unreadable entry is
/// compiled and written (temporary file, rename). The directory must be the
/// caller's own (created 0700): a program read from it is loaded as is.
pub fn compile_seccomp_cached(
    spec: &Spec,
    cache: Option<&Path>,
) -> Result<Option<berth_sys::seccomp::SeccompProgram>> {
    use sha2::Digest;
    let profile = spec.linux().as_ref().and_then(|l| l.seccomp().as_ref());
    let (Some(dir), Some(profile)) = (cache, profile) else {
        return compile_seccomp(spec);
    };
    let json =
        serde_json::to_vec(profile).map_err(|e| Error::InvalidConfig(format!("seccomp: {e}")))?;
    let mut key = sha2::Sha256::new();
    for part in [
        b"berth-seccomp-1".as_slice(),
        berth_sys::seccomp::library_version().as_bytes(),
        std::env::consts::ARCH.as_bytes(),
        &json,
    ] {
        key.update((part.len() as u64).to_le_bytes());
        key.update(part);
    }
    let name = hex::encode(key.finalize());
    let path = dir.join(&name);
    if let Some(program) = std::fs::read(&path)
        .ok()
        .and_then(|bytes| berth_sys::seccomp::SeccompProgram::decode(&bytes))
    {
        return Ok(Some(program));
    }
    let program = compile_seccomp(spec)?;
    if let Some(program) = &program {
        // A cache that cannot be written only costs the next container time.
        let _ = std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .and_then(|()| {
                let tmp = dir.join(format!(".{name}.{}", std::process::id()));
                std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(0o600)
                    .open(&tmp)
                    .and_then(|mut file| file.write_all(&program.encode()))?;
                std::fs::rename(&tmp, &path)
            });
        prune_seccomp_cache(dir, SECCOMP_CACHE_KEPT);
    }
    Ok(program)
}

/// Compiled programs the cache keeps: a few profiles are the common case;
/// every `--security-opt seccomp=<file>` with other contents adds one.
const SECCOMP_CACHE_KEPT: usize = 64;

/// Removes the least recently written entries of the seccomp cache beyond
/// `keep` (run after a miss, so rarely). Errors only cost a later miss.
pub fn prune_seccomp_cache(dir: &Path, keep: usize) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut files: Vec<(std::time::SystemTime, PathBuf)> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    if files.len() <= keep {
        return;
    }
    files.sort();
    let excess = files.len() - keep;
    for (_, path) in files.into_iter().take(excess) {
        let _ = std::fs::remove_file(path);
    }
}

/// Finds the program and builds argv/envp. Must run with the container's root
/// as `/` (after pivot_root or setns into its mount namespace).
pub fn prepare_exec(
    process: &Process,
    seccomp: Option<berth_sys::seccomp::SeccompProgram>,
) -> Result<PreparedExec> {
    let args = process.args().as_deref().unwrap_or_default();
    let Some(arg0) = args.first() else {
        return Err(Error::InvalidConfig(
            "process.args must not be empty".into(),
        ));
    };
    let mut env: Vec<String> = process.env().clone().unwrap_or_default();
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        let home = home_of(process.user().uid()).unwrap_or_else(|| "/".to_string());
        env.push(format!("HOME={home}"));
    }
    let path_var = env
        .iter()
        .rev()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH)
        .to_string();
    let program = find_executable(arg0, &path_var, process.cwd())?;
    Ok(PreparedExec {
        seccomp,
        seccomp_agent: None,
        init: false,
        path: CString::new(program.as_os_str().as_bytes())
            .map_err(|_| Error::InvalidConfig(format!("bad program path {program:?}")))?,
        args: args
            .iter()
            .map(|a| cstring(a, "argument"))
            .collect::<Result<_>>()?,
        env: env
            .iter()
            .map(|e| cstring(e, "environment variable"))
            .collect::<Result<_>>()?,
    })
}

fn home_of(uid: u32) -> Option<String> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        (f.len() >= 6 && f[2].parse::<u32>().ok() == Some(uid)).then(|| f[5].to_string())
    })
}

fn is_executable(p: &Path) -> std::result::Result<(), nix::errno::Errno> {
    let meta = std::fs::metadata(p)
        .map_err(|e| nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::ENOENT)))?;
    if meta.is_dir() {
        return Err(nix::errno::Errno::EACCES);
    }
    nix::unistd::access(p, nix::unistd::AccessFlags::X_OK)
}

/// Looks the program up the way exec(3p) would in the container, with the
/// messages runc gives (docker maps them to exit codes 127 and 126).
pub fn find_executable(arg0: &str, path_var: &str, cwd: &Path) -> Result<PathBuf> {
    let not_found = || {
        Error::Init(format!(
            "exec: \"{arg0}\": executable file not found in $PATH"
        ))
    };
    let check = |p: PathBuf| -> Result<PathBuf> {
        match is_executable(&p) {
            Ok(()) => Ok(p),
            Err(nix::errno::Errno::ENOENT) | Err(nix::errno::Errno::ENOTDIR) => Err(Error::Init(
                format!("exec: \"{arg0}\": stat {arg0}: no such file or directory"),
            )),
            Err(_) => Err(Error::Init(format!("exec: \"{arg0}\": permission denied"))),
        }
    };
    if arg0.contains('/') {
        let p = Path::new(arg0);
        return check(if p.is_absolute() {
            p.to_path_buf()
        } else {
            cwd.join(p)
        });
    }
    let mut denied = false;
    for dir in path_var.split(':').filter(|d| !d.is_empty()) {
        let candidate = Path::new(dir).join(arg0);
        match is_executable(&candidate) {
            Ok(()) => return Ok(candidate),
            Err(nix::errno::Errno::EACCES) if candidate.exists() => denied = true,
            Err(_) => {}
        }
    }
    if denied {
        return Err(Error::Init(format!("exec: \"{arg0}\": permission denied")));
    }
    Err(not_found())
}

fn resource_of(t: PosixRlimitType) -> Resource {
    match t {
        PosixRlimitType::RlimitCpu => Resource::RLIMIT_CPU,
        PosixRlimitType::RlimitFsize => Resource::RLIMIT_FSIZE,
        PosixRlimitType::RlimitData => Resource::RLIMIT_DATA,
        PosixRlimitType::RlimitStack => Resource::RLIMIT_STACK,
        PosixRlimitType::RlimitCore => Resource::RLIMIT_CORE,
        PosixRlimitType::RlimitRss => Resource::RLIMIT_RSS,
        PosixRlimitType::RlimitNproc => Resource::RLIMIT_NPROC,
        PosixRlimitType::RlimitNofile => Resource::RLIMIT_NOFILE,
        PosixRlimitType::RlimitMemlock => Resource::RLIMIT_MEMLOCK,
        PosixRlimitType::RlimitAs => Resource::RLIMIT_AS,
        PosixRlimitType::RlimitLocks => Resource::RLIMIT_LOCKS,
        PosixRlimitType::RlimitSigpending => Resource::RLIMIT_SIGPENDING,
        PosixRlimitType::RlimitMsgqueue => Resource::RLIMIT_MSGQUEUE,
        PosixRlimitType::RlimitNice => Resource::RLIMIT_NICE,
        PosixRlimitType::RlimitRtprio => Resource::RLIMIT_RTPRIO,
        PosixRlimitType::RlimitRttime => Resource::RLIMIT_RTTIME,
    }
}

pub fn apply_rlimits(process: &Process) -> Result<()> {
    for r in process.rlimits().iter().flatten() {
        if r.soft() > r.hard() {
            return Err(Error::InvalidConfig(format!(
                "rlimit {}: soft limit {} is above hard limit {}",
                r.typ(),
                r.soft(),
                r.hard()
            )));
        }
        setrlimit(resource_of(r.typ()), r.soft(), r.hard()).context(|| {
            format!(
                "set rlimit {} to {}:{} (raising a hard limit needs CAP_SYS_RESOURCE)",
                r.typ(),
                r.soft(),
                r.hard()
            )
        })?;
    }
    Ok(())
}

pub fn apply_oom_score_adj(process: &Process) -> Result<()> {
    if let Some(adj) = process.oom_score_adj() {
        crate::rootfs::write_proc(
            &format!("{}/oom_score_adj", std::process::id()),
            &adj.to_string(),
        )?;
    }
    Ok(())
}

/// Groups, gid and uid of the process, keeping capabilities across the switch.
pub fn switch_user(process: &Process) -> Result<()> {
    let user = process.user();
    let gid = Gid::from_raw(user.gid());
    let uid = Uid::from_raw(user.uid());
    let groups: Vec<Gid> = user
        .additional_gids()
        .iter()
        .flatten()
        .map(|g| Gid::from_raw(*g))
        .collect();
    // setgroups is denied in user namespaces that wrote "deny"; only fail
    // when groups were actually asked for.
    match nix::unistd::setgroups(&groups) {
        Ok(()) => {}
        Err(nix::errno::Errno::EPERM) if groups.is_empty() => {}
        Err(e) => return Err(e).context(|| format!("setgroups {groups:?}")),
    }
    nix::sys::prctl::set_keepcaps(true).context(|| "PR_SET_KEEPCAPS".to_string())?;
    nix::unistd::setresgid(gid, gid, gid).context(|| format!("setgid {gid}"))?;
    nix::unistd::setresuid(uid, uid, uid).context(|| format!("setuid {uid}"))?;
    Ok(())
}

/// The working directory, which must end up inside the container's root: a
/// cwd reached through a leaked fd would be outside it.
pub fn enter_cwd(process: &Process) -> Result<()> {
    let cwd = process.cwd();
    nix::unistd::chdir(cwd).context(|| format!("chdir to cwd {:?} set in config.json", cwd))?;
    match nix::unistd::getcwd() {
        Ok(p) if p.is_absolute() => Ok(()),
        _ => Err(Error::Init(format!(
            "cwd {cwd:?} is outside the container's root filesystem"
        ))),
    }
}

/// The final sequence, in the order that keeps each step possible: seccomp
/// without no_new_privs (needs CAP_SYS_ADMIN), user switch keeping
/// capabilities, the five capability sets, no_new_privs, seccomp with it, exec.
pub fn finish_and_exec(
    process: &Process,
    prepared: &PreparedExec,
    preserve_fds: i32,
) -> Result<std::convert::Infallible> {
    let nnp = process.no_new_privileges().unwrap_or(false);
    enter_cwd(process)?;
    if !nnp {
        load_seccomp(prepared)?;
    }
    switch_user(process)?;
    let wanted = process.capabilities().clone().unwrap_or_default();
    berth_sys::capabilities::apply(&wanted)
        .map_err(|e| Error::Init(format!("capabilities: {e}")))?;
    nix::sys::prctl::set_keepcaps(false).context(|| "PR_SET_KEEPCAPS".to_string())?;
    if let Some(mask) = process.user().umask() {
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(mask));
    } else {
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
    }
    berth_sys::process::cloexec_from(3 + preserve_fds).context(|| "close fds".to_string())?;
    if nnp {
        nix::sys::prctl::set_no_new_privs().context(|| "PR_SET_NO_NEW_PRIVS".to_string())?;
        load_seccomp(prepared)?;
    }
    // The runtime's ignored signals (SIGPIPE at least) are not the program's.
    berth_sys::process::reset_signal_dispositions();
    if prepared.init {
        run_as_init()?;
    }
    nix::unistd::execve(&prepared.path, &prepared.args, &prepared.env)
        .context(|| format!("exec {:?}", prepared.path))
}

/// The built-in init: forks the program and stays as pid 1 with the same
/// credentials, capabilities and seccomp filter, forwarding every signal it
/// gets to the program and reaping every zombie, until the program exits;
/// then exits the same way. Returns only in the child, which goes on to exec.
fn run_as_init() -> Result<()> {
    use nix::sys::signal::{SigSet, SigmaskHow, Signal};
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    let all = SigSet::all();
    let mut previous = SigSet::empty();
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&all), Some(&mut previous))
        .context(|| "block signals for init".to_string())?;
    let child = match berth_sys::process::fork().context(|| "fork the program".to_string())? {
        berth_sys::process::Forked::Child => {
            nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&previous), None)
                .context(|| "unblock signals".to_string())?;
            return Ok(());
        }
        berth_sys::process::Forked::Parent(pid) => pid,
    };
    retitle_as_init();
    loop {
        let signal = all.wait().unwrap_or(Signal::SIGCHLD);
        if signal != Signal::SIGCHLD {
            let _ = nix::sys::signal::kill(child, signal);
            continue;
        }
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) if pid == child => std::process::exit(code),
                Ok(WaitStatus::Signaled(pid, sig, _)) if pid == child => {
                    std::process::exit(128 + sig as i32)
                }
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => {}
            }
        }
    }
}

/// The built-in init's name and command line as the container sees them
/// (`ps`, /proc/1/cmdline): `docker-init --`, as dockerd's init shows,
/// instead of the shim's, which names host paths. The command line is
/// rewritten where the kernel reads it, through /proc/self/mem; what does
/// not fit is left as it was, and failures leave it all as it was.
fn retitle_as_init() {
    let _ = nix::sys::prctl::set_name(c"docker-init");
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return;
    };
    // After the name in parentheses come fields 3 (state) onwards;
    // arg_start and arg_end are fields 48 and 49.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return;
    };
    let field = |n: usize| {
        rest.split_whitespace()
            .nth(n - 3)
            .and_then(|f| f.parse::<u64>().ok())
    };
    let (Some(start), Some(end)) = (field(48), field(49)) else {
        return;
    };
    let Some(title) = init_title(end.saturating_sub(start)) else {
        return;
    };
    if let Ok(mem) = std::fs::OpenOptions::new()
        .write(true)
        .open("/proc/self/mem")
    {
        let _ = std::os::unix::fs::FileExt::write_all_at(&mem, &title, start);
    }
}

/// `docker-init --` as NUL-separated arguments, padded with NULs to `len`
/// bytes (the room the original arguments took); none when it can't fit.
fn init_title(len: u64) -> Option<Vec<u8>> {
    let mut title = b"docker-init\0--\0".to_vec();
    let len = usize::try_from(len).ok()?;
    if len < title.len() {
        return None;
    }
    title.resize(len, 0);
    Some(title)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_init_title_fills_the_room_of_the_old_arguments() {
        assert_eq!(super::init_title(5), None);
        assert_eq!(
            super::init_title(15).as_deref(),
            Some(&b"docker-init\0--\0"[..])
        );
        let padded = super::init_title(40).expect("fits");
        assert_eq!(padded.len(), 40);
        assert!(padded.starts_with(b"docker-init\0--\0\0"));
        assert!(padded[15..].iter().all(|&b| b == 0));
    }

    use super::*;

    #[test]
    fn seccomp_programs_are_cached_by_profile() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = dir.path().join("seccomp");
        let mut spec = Spec::default();
        let mut linux = spec.linux().clone().unwrap_or_default();
        linux.set_seccomp(Some(berth_sys::seccomp::default_docker_profile()));
        spec.set_linux(Some(linux));
        let fresh = compile_seccomp(&spec).expect("compile").expect("a program");
        let first = compile_seccomp_cached(&spec, Some(&cache))
            .expect("compile")
            .expect("a program");
        assert_eq!(first.encode(), fresh.encode());
        let entries: Vec<_> = std::fs::read_dir(&cache)
            .expect("cache dir")
            .flatten()
            .map(|e| e.path())
            .collect();
        assert_eq!(entries.len(), 1, "{entries:?}");
        // A damaged entry is compiled again and replaced.
        std::fs::write(&entries[0], b"junk").expect("damage");
        let again = compile_seccomp_cached(&spec, Some(&cache))
            .expect("compile")
            .expect("a program");
        assert_eq!(again.encode(), fresh.encode());
        assert_eq!(std::fs::read(&entries[0]).expect("entry"), fresh.encode());
    }

    #[test]
    fn executables_are_found_in_path_with_runc_messages() {
        assert_eq!(
            find_executable("sh", "/nonexistent:/bin", Path::new("/")).expect("sh"),
            PathBuf::from("/bin/sh")
        );
        let err = find_executable("no-such-program", "/bin", Path::new("/")).expect_err("missing");
        assert!(err
            .to_string()
            .contains("executable file not found in $PATH"));
        let dir = tempfile::tempdir().expect("tempdir");
        let plain = dir.path().join("plain");
        std::fs::write(&plain, "data").expect("write");
        std::fs::set_permissions(&plain, std::os::unix::fs::PermissionsExt::from_mode(0o644))
            .expect("chmod");
        let err = find_executable(plain.to_str().expect("utf-8"), "/bin", Path::new("/"))
            .expect_err("not executable");
        assert!(err.to_string().contains("permission denied"), "{err}");
    }

    #[test]
    fn the_seccomp_cache_keeps_the_newest_entries() {
        let dir = tempfile::tempdir().expect("tempdir");
        let base =
            std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        for i in 0..10u64 {
            let path = dir.path().join(format!("entry{i}"));
            let file = std::fs::File::create(&path).expect("create");
            file.set_modified(base + std::time::Duration::from_secs(i))
                .expect("mtime");
        }
        prune_seccomp_cache(dir.path(), 10);
        assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 10);
        prune_seccomp_cache(dir.path(), 7);
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .expect("dir")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        let want: Vec<String> = (3..10).map(|i| format!("entry{i}")).collect();
        assert_eq!(left, want);
    }
}
