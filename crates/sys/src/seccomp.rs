//! OCI seccomp profiles (`linux.seccomp`) compiled to a classic-BPF program, and
//! Docker's default profile.
//!
//! `compile` validates the whole profile and asks libseccomp for the BPF program
//! in the parent, where allocating is fine. `load` is then a single seccomp(2)
//! call that does not allocate, so it may run in a child forked from a
//! multithreaded process, right before exec.

use std::collections::BTreeSet;
use std::io::{Read, Seek, SeekFrom};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};
use nix::errno::Errno;
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompArgBuilder,
    LinuxSeccompFilterFlag, LinuxSeccompOperator, LinuxSyscall,
};

/// The kernel's limit on the length of one classic-BPF program (BPF_MAXINSNS).
const MAX_INSTRUCTIONS: usize = 4096;
/// Syscalls take at most six arguments.
const MAX_ARG_INDEX: usize = 5;
/// The data field of a seccomp return value is 16 bits wide.
const MAX_RET_DATA: u32 = 0xffff;

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("seccomp: defaultAction SCMP_ACT_NOTIFY is not allowed: every syscall, including the ones that hand the listener to the agent, would wait for that agent")]
    NotifyAsDefaultAction,
    #[error("seccomp: SCMP_ACT_NOTIFY is not allowed for syscall `{0}`: the runtime itself needs it after the filter is loaded")]
    NotifyOnRuntimeSyscall(String),
    #[error("seccomp: errnoRet is only valid with SCMP_ACT_ERRNO or SCMP_ACT_TRACE, but syscalls [{names}] use {action}")]
    ErrnoRetWithoutErrno { names: String, action: String },
    #[error("seccomp: {what} {value} is out of range (at most {MAX_RET_DATA})")]
    ReturnValueOutOfRange { what: String, value: u32 },
    #[error("seccomp: syscall entry [{names}] has an empty syscall name")]
    EmptySyscallName { names: String },
    #[error("seccomp: argument index {index} on syscall `{name}` is out of range (0 to {MAX_ARG_INDEX})")]
    ArgIndexOutOfRange { name: String, index: usize },
    #[error("seccomp: architecture {arch} is not supported by the system libseccomp: {source}")]
    UnsupportedArch {
        arch: String,
        #[source]
        source: libseccomp::error::SeccompError,
    },
    #[error("seccomp: libseccomp could not {what}: {source}")]
    Library {
        what: String,
        #[source]
        source: libseccomp::error::SeccompError,
    },
    #[error("seccomp: could not read back the compiled program: {0}")]
    Export(#[source] std::io::Error),
    #[error("seccomp: the compiled program has {0} instructions, the kernel accepts at most {MAX_INSTRUCTIONS}")]
    ProgramTooLarge(usize),
    #[error("seccomp: loading the filter needs no_new_privs or CAP_SYS_ADMIN (EACCES)")]
    NeedsNoNewPrivileges,
    #[error("seccomp: thread {0} could not be given the filter (SECCOMP_FILTER_FLAG_TSYNC)")]
    ThreadNotSynchronised(libc::pid_t),
    #[error("seccomp: the kernel refused the filter (flags {flags:#x}): {errno}")]
    Load { flags: libc::c_ulong, errno: Errno },
}

/// A validated profile compiled to BPF, ready to be loaded with [`SeccompProgram::load`].
#[derive(Debug, Clone)]
pub struct SeccompProgram {
    instructions: Vec<libc::sock_filter>,
    flags: libc::c_ulong,
    allowed: BTreeSet<String>,
    skipped: BTreeSet<String>,
}

/// Syscalls the runtime still makes between loading the filter and exec
/// (reporting over the sync socket); a NOTIFY on them would deadlock.
const RUNTIME_SYSCALLS: &[&str] = &["write"];

/// Validates `profile` and compiles it for the architectures it names (plus the
/// native one). Syscall names libseccomp does not know are skipped, as runc does,
/// so one profile serves several architectures and kernel versions.
pub fn compile(profile: &LinuxSeccomp) -> Result<SeccompProgram, SeccompError> {
    let default_action = scmp_action(
        profile.default_action(),
        profile.default_errno_ret(),
        "defaultErrnoRet",
    )?;
    if default_action == ScmpAction::Notify {
        return Err(SeccompError::NotifyAsDefaultAction);
    }
    let flags = filter_flags(profile.flags().as_deref().unwrap_or_default());

    let mut ctx =
        ScmpFilterContext::new(default_action).map_err(|source| SeccompError::Library {
            what: "create a filter".into(),
            source,
        })?;
    for arch in profile.architectures().as_deref().unwrap_or_default() {
        add_arch(&mut ctx, *arch)?;
    }

    let mut uses_notify = false;
    let mut allowed = BTreeSet::new();
    let mut skipped = BTreeSet::new();
    for entry in profile.syscalls().as_deref().unwrap_or_default() {
        let action = syscall_action(entry)?;
        let conditions = conditions(entry)?;
        let repeats_an_arg = repeats_an_arg(entry);
        for name in entry.names() {
            if name.is_empty() {
                return Err(SeccompError::EmptySyscallName {
                    names: entry.names().join(", "),
                });
            }
            if action == ScmpAction::Notify && RUNTIME_SYSCALLS.contains(&name.as_str()) {
                return Err(SeccompError::NotifyOnRuntimeSyscall(name.clone()));
            }
            if action == ScmpAction::Allow {
                allowed.insert(name.clone());
            }
            // libseccomp refuses rules whose action is the default one; they change nothing.
            if action == default_action {
                continue;
            }
            let Ok(syscall) = ScmpSyscall::from_name(name) else {
                skipped.insert(name.clone());
                continue;
            };
            uses_notify |= action == ScmpAction::Notify;
            add_rules(&mut ctx, action, syscall, name, &conditions, repeats_an_arg)?;
        }
    }

    let instructions = export(&ctx)?;
    let mut flags = flags;
    if uses_notify {
        flags |= libc::SECCOMP_FILTER_FLAG_NEW_LISTENER;
        if flags & libc::SECCOMP_FILTER_FLAG_TSYNC != 0 {
            // TSYNC reports a failing thread id in the return value, which is also
            // where the listener fd comes back; TSYNC_ESRCH makes that unambiguous.
            flags |= libc::SECCOMP_FILTER_FLAG_TSYNC_ESRCH;
        }
    }
    Ok(SeccompProgram {
        instructions,
        flags,
        allowed,
        skipped,
    })
}

impl SeccompProgram {
    /// Installs the filter on the calling thread (and, with
    /// SECCOMP_FILTER_FLAG_TSYNC in the profile, on all threads of the process).
    ///
    /// The caller must have set no_new_privs or hold CAP_SYS_ADMIN. Returns the
    /// user-notification listener when the profile uses SCMP_ACT_NOTIFY; the
    /// runtime passes it to the agent at `listenerPath`. Does not allocate, so it
    /// is safe between fork and exec.
    pub fn load(&self) -> Result<Option<OwnedFd>, SeccompError> {
        let program = libc::sock_fprog {
            // compile() checked the length fits.
            len: self.instructions.len() as libc::c_ushort,
            filter: self.instructions.as_ptr().cast_mut(),
        };
        // SAFETY: `program` points into `self.instructions`, which lives across the
        // call; the kernel only reads and copies the program.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER as libc::c_ulong,
                self.flags,
                &program as *const libc::sock_fprog,
            )
        };
        if ret < 0 {
            return Err(match Errno::last() {
                Errno::EACCES => SeccompError::NeedsNoNewPrivileges,
                errno => SeccompError::Load {
                    flags: self.flags,
                    errno,
                },
            });
        }
        if self.flags & libc::SECCOMP_FILTER_FLAG_NEW_LISTENER == 0 {
            // Without a listener, TSYNC reports a thread it could not synchronise
            // by returning that thread's id; the filter was not installed.
            if ret > 0 {
                return Err(SeccompError::ThreadNotSynchronised(ret as libc::pid_t));
            }
            return Ok(None);
        }
        // SAFETY: with SECCOMP_FILTER_FLAG_NEW_LISTENER a successful call returns a
        // new file descriptor that nothing else owns.
        Ok(Some(unsafe { OwnedFd::from_raw_fd(ret as RawFd) }))
    }

    /// How many distinct syscall names the profile allows (SCMP_ACT_ALLOW, with or
    /// without argument conditions), whether or not this kernel knows them.
    pub fn allowed_syscall_count(&self) -> usize {
        self.allowed.len()
    }

    /// Syscall names in the profile that libseccomp does not know for the native
    /// architecture; they got no rule, so the default action applies to them.
    pub fn skipped_syscalls(&self) -> impl Iterator<Item = &str> {
        self.skipped.iter().map(String::as_str)
    }

    /// Length of the BPF program in instructions.
    pub fn instruction_count(&self) -> usize {
        self.instructions.len()
    }

    /// Whether loading returns a user-notification listener.
    pub fn has_listener(&self) -> bool {
        self.flags & libc::SECCOMP_FILTER_FLAG_NEW_LISTENER != 0
    }

    /// The program as bytes, for a cache of compiled profiles ([`SeccompProgram::decode`]):
    /// flags, the instructions, the allowed and the skipped names, little-endian
    /// (for the architecture that made them: a cache key names it).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + self.instructions.len() * 8);
        out.extend_from_slice(&self.flags.to_le_bytes());
        out.extend_from_slice(&(self.instructions.len() as u32).to_le_bytes());
        for insn in &self.instructions {
            out.extend_from_slice(&insn.code.to_le_bytes());
            out.extend_from_slice(&[insn.jt, insn.jf]);
            out.extend_from_slice(&insn.k.to_le_bytes());
        }
        for names in [&self.allowed, &self.skipped] {
            out.extend_from_slice(&(names.len() as u32).to_le_bytes());
            for name in names {
                out.extend_from_slice(&(name.len() as u32).to_le_bytes());
                out.extend_from_slice(name.as_bytes());
            }
        }
        out
    }

    /// A program from [`SeccompProgram::encode`]'s bytes; `None` unless they
    /// are exactly one whole encoding within the kernel's limits.
    pub fn decode(bytes: &[u8]) -> Option<SeccompProgram> {
        let mut input = bytes;
        let mut take = |n: usize| -> Option<&[u8]> {
            let (head, rest) = input.split_at_checked(n)?;
            input = rest;
            Some(head)
        };
        let flags = libc::c_ulong::from_le_bytes(
            take(std::mem::size_of::<libc::c_ulong>())?
                .try_into()
                .ok()?,
        );
        let count = u32::from_le_bytes(take(4)?.try_into().ok()?) as usize;
        if count == 0 || count > MAX_INSTRUCTIONS {
            return None;
        }
        let mut instructions = Vec::with_capacity(count);
        for _ in 0..count {
            let insn = take(8)?;
            instructions.push(libc::sock_filter {
                code: u16::from_le_bytes([insn[0], insn[1]]),
                jt: insn[2],
                jf: insn[3],
                k: u32::from_le_bytes([insn[4], insn[5], insn[6], insn[7]]),
            });
        }
        let mut sets = [BTreeSet::new(), BTreeSet::new()];
        for set in &mut sets {
            let names = u32::from_le_bytes(take(4)?.try_into().ok()?);
            for _ in 0..names {
                let len = u32::from_le_bytes(take(4)?.try_into().ok()?) as usize;
                set.insert(String::from_utf8(take(len)?.to_vec()).ok()?);
            }
        }
        if !input.is_empty() {
            return None;
        }
        let [allowed, skipped] = sets;
        Some(SeccompProgram {
            instructions,
            flags,
            allowed,
            skipped,
        })
    }
}

/// The libseccomp in use, as `major.minor.micro`: a compiled program depends on it.
pub fn library_version() -> String {
    libseccomp::ScmpVersion::current()
        .map(|v| format!("{}.{}.{}", v.major, v.minor, v.micro))
        .unwrap_or_default()
}

fn scmp_action(
    action: LinuxSeccompAction,
    errno_ret: Option<u32>,
    what: &str,
) -> Result<ScmpAction, SeccompError> {
    let ret_data = |default: u32| match errno_ret {
        Some(value) if value > MAX_RET_DATA => Err(SeccompError::ReturnValueOutOfRange {
            what: what.to_string(),
            value,
        }),
        Some(value) => Ok(value),
        None => Ok(default),
    };
    Ok(match action {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            ScmpAction::KillThread
        }
        LinuxSeccompAction::ScmpActKillProcess => ScmpAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => ScmpAction::Trap,
        // Both fit in 16 bits after ret_data's check.
        LinuxSeccompAction::ScmpActErrno => ScmpAction::Errno(ret_data(libc::EPERM as u32)? as i32),
        LinuxSeccompAction::ScmpActTrace => ScmpAction::Trace(ret_data(libc::EPERM as u32)? as u16),
        LinuxSeccompAction::ScmpActAllow => ScmpAction::Allow,
        LinuxSeccompAction::ScmpActLog => ScmpAction::Log,
        LinuxSeccompAction::ScmpActNotify => ScmpAction::Notify,
    })
}

fn syscall_action(entry: &LinuxSyscall) -> Result<ScmpAction, SeccompError> {
    let takes_ret = matches!(
        entry.action(),
        LinuxSeccompAction::ScmpActErrno | LinuxSeccompAction::ScmpActTrace
    );
    if entry.errno_ret().is_some() && !takes_ret {
        return Err(SeccompError::ErrnoRetWithoutErrno {
            names: entry.names().join(", "),
            action: entry.action().to_string(),
        });
    }
    let what = format!("errnoRet of [{}]", entry.names().join(", "));
    scmp_action(entry.action(), entry.errno_ret(), &what)
}

fn filter_flags(flags: &[LinuxSeccompFilterFlag]) -> libc::c_ulong {
    flags.iter().fold(0, |acc, flag| {
        acc | match flag {
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => libc::SECCOMP_FILTER_FLAG_TSYNC,
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => libc::SECCOMP_FILTER_FLAG_LOG,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => {
                libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW
            }
            LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => {
                libc::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV
            }
        }
    })
}

fn add_arch(ctx: &mut ScmpFilterContext, arch: Arch) -> Result<(), SeccompError> {
    let scmp = match arch {
        Arch::ScmpArchNative => ScmpArch::native(),
        Arch::ScmpArchX86 => ScmpArch::X86,
        Arch::ScmpArchX86_64 => ScmpArch::X8664,
        Arch::ScmpArchX32 => ScmpArch::X32,
        Arch::ScmpArchArm => ScmpArch::Arm,
        Arch::ScmpArchAarch64 => ScmpArch::Aarch64,
        Arch::ScmpArchMips => ScmpArch::Mips,
        Arch::ScmpArchMips64 => ScmpArch::Mips64,
        Arch::ScmpArchMips64n32 => ScmpArch::Mips64N32,
        Arch::ScmpArchMipsel => ScmpArch::Mipsel,
        Arch::ScmpArchMipsel64 => ScmpArch::Mipsel64,
        Arch::ScmpArchMipsel64n32 => ScmpArch::Mipsel64N32,
        Arch::ScmpArchPpc => ScmpArch::Ppc,
        Arch::ScmpArchPpc64 => ScmpArch::Ppc64,
        Arch::ScmpArchPpc64le => ScmpArch::Ppc64Le,
        Arch::ScmpArchS390 => ScmpArch::S390,
        Arch::ScmpArchS390x => ScmpArch::S390X,
        Arch::ScmpArchParisc => ScmpArch::Parisc,
        Arch::ScmpArchParisc64 => ScmpArch::Parisc64,
        Arch::ScmpArchRiscv64 => ScmpArch::Riscv64,
        Arch::ScmpArchLoongarch64 => ScmpArch::Loongarch64,
        Arch::ScmpArchM68k => ScmpArch::M68k,
        Arch::ScmpArchSh => ScmpArch::Sh,
        Arch::ScmpArchSheb => ScmpArch::Sheb,
    };
    let unsupported = |source| SeccompError::UnsupportedArch {
        arch: arch.to_string(),
        source,
    };
    if !ctx.is_arch_present(scmp).map_err(unsupported)? {
        ctx.add_arch(scmp).map_err(unsupported)?;
    }
    Ok(())
}

fn conditions(entry: &LinuxSyscall) -> Result<Vec<ScmpArgCompare>, SeccompError> {
    let args: &[LinuxSeccompArg] = entry.args().as_deref().unwrap_or_default();
    args.iter()
        .map(|arg| {
            if arg.index() > MAX_ARG_INDEX {
                return Err(SeccompError::ArgIndexOutOfRange {
                    name: entry.names().join(", "),
                    index: arg.index(),
                });
            }
            // For MASKED_EQ the spec puts the mask in `value` and the datum in `valueTwo`.
            let (op, datum) = match arg.op() {
                LinuxSeccompOperator::ScmpCmpNe => (ScmpCompareOp::NotEqual, arg.value()),
                LinuxSeccompOperator::ScmpCmpLt => (ScmpCompareOp::Less, arg.value()),
                LinuxSeccompOperator::ScmpCmpLe => (ScmpCompareOp::LessOrEqual, arg.value()),
                LinuxSeccompOperator::ScmpCmpEq => (ScmpCompareOp::Equal, arg.value()),
                LinuxSeccompOperator::ScmpCmpGe => (ScmpCompareOp::GreaterEqual, arg.value()),
                LinuxSeccompOperator::ScmpCmpGt => (ScmpCompareOp::Greater, arg.value()),
                LinuxSeccompOperator::ScmpCmpMaskedEq => (
                    ScmpCompareOp::MaskedEqual(arg.value()),
                    arg.value_two().unwrap_or(0),
                ),
            };
            // In range: checked against MAX_ARG_INDEX above.
            Ok(ScmpArgCompare::new(arg.index() as u32, op, datum))
        })
        .collect()
}

fn repeats_an_arg(entry: &LinuxSyscall) -> bool {
    let mut indexes: Vec<usize> = entry
        .args()
        .iter()
        .flatten()
        .map(|arg| arg.index())
        .collect();
    indexes.sort_unstable();
    indexes.windows(2).any(|pair| pair[0] == pair[1])
}

/// Conditions on different arguments of one entry must all hold (one rule). A
/// filter cannot test one argument twice in a rule, so when an entry does, each
/// condition becomes its own rule and any of them matching is enough; runc reads
/// profiles the same way.
fn add_rules(
    ctx: &mut ScmpFilterContext,
    action: ScmpAction,
    syscall: ScmpSyscall,
    name: &str,
    conditions: &[ScmpArgCompare],
    repeats_an_arg: bool,
) -> Result<(), SeccompError> {
    let failed = |source| SeccompError::Library {
        what: format!("add a rule for syscall `{name}`"),
        source,
    };
    if repeats_an_arg {
        for condition in conditions {
            ctx.add_rule_conditional(action, syscall, std::slice::from_ref(condition))
                .map_err(failed)?;
        }
    } else {
        ctx.add_rule_conditional(action, syscall, conditions)
            .map_err(failed)?;
    }
    Ok(())
}

fn export(ctx: &ScmpFilterContext) -> Result<Vec<libc::sock_filter>, SeccompError> {
    let memfd =
        nix::sys::memfd::memfd_create(c"berth-seccomp", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
            .map_err(|errno| SeccompError::Export(errno.into()))?;
    ctx.export_bpf(&memfd)
        .map_err(|source| SeccompError::Library {
            what: "generate the BPF program".into(),
            source,
        })?;
    let mut file = std::fs::File::from(memfd);
    let mut bytes = Vec::new();
    file.seek(SeekFrom::Start(0))
        .and_then(|_| file.read_to_end(&mut bytes))
        .map_err(SeccompError::Export)?;

    const INSN: usize = std::mem::size_of::<libc::sock_filter>();
    if bytes.len() % INSN != 0 {
        return Err(SeccompError::Export(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "{} bytes is not a whole number of instructions",
                bytes.len()
            ),
        )));
    }
    let instructions: Vec<libc::sock_filter> = bytes
        .chunks_exact(INSN)
        .map(|raw| libc::sock_filter {
            code: u16::from_ne_bytes([raw[0], raw[1]]),
            jt: raw[2],
            jf: raw[3],
            k: u32::from_ne_bytes([raw[4], raw[5], raw[6], raw[7]]),
        })
        .collect();
    if instructions.len() > MAX_INSTRUCTIONS {
        return Err(SeccompError::ProgramTooLarge(instructions.len()));
    }
    Ok(instructions)
}

// Docker's default profile, as in moby's profiles/seccomp/default.json
// (moby/profiles/seccomp v0.2.3). Blocks gated on other architectures
// (ppc64le, s390, riscv64) are left out: Berth builds for x86_64 and aarch64.

/// Allowed for every container.
#[rustfmt::skip]
const DOCKER_ALLOWED: &[&str] = &[
    "accept", "accept4", "access", "adjtimex", "alarm",
    "bind", "brk",
    "cachestat", "capget", "capset", "chdir", "chmod", "chown", "chown32", "clock_adjtime",
    "clock_adjtime64", "clock_getres", "clock_getres_time64", "clock_gettime",
    "clock_gettime64", "clock_nanosleep", "clock_nanosleep_time64", "close", "close_range",
    "connect", "copy_file_range", "creat",
    "dup", "dup2", "dup3",
    "epoll_create", "epoll_create1", "epoll_ctl", "epoll_ctl_old", "epoll_pwait",
    "epoll_pwait2", "epoll_wait", "epoll_wait_old", "eventfd", "eventfd2", "execve", "execveat",
    "exit", "exit_group",
    "faccessat", "faccessat2", "fadvise64", "fadvise64_64", "fallocate", "fanotify_mark",
    "fchdir", "fchmod", "fchmodat", "fchmodat2", "fchown", "fchown32", "fchownat", "fcntl",
    "fcntl64", "fdatasync", "fgetxattr", "flistxattr", "flock", "fork", "fremovexattr",
    "fsetxattr", "fstat", "fstat64", "fstatat64", "fstatfs", "fstatfs64", "fsync", "ftruncate",
    "ftruncate64", "futex", "futex_requeue", "futex_time64", "futex_wait", "futex_waitv",
    "futex_wake", "futimesat",
    "getcpu", "getcwd", "getdents", "getdents64", "getegid", "getegid32", "geteuid",
    "geteuid32", "getgid", "getgid32", "getgroups", "getgroups32", "getitimer", "getpeername",
    "getpgid", "getpgrp", "getpid", "getppid", "getpriority", "getrandom", "getresgid",
    "getresgid32", "getresuid", "getresuid32", "getrlimit", "get_robust_list", "getrusage",
    "getsid", "getsockname", "getsockopt", "get_thread_area", "gettid", "gettimeofday",
    "getuid", "getuid32", "getxattr", "getxattrat",
    "inotify_add_watch", "inotify_init", "inotify_init1", "inotify_rm_watch", "io_cancel",
    "ioctl", "io_destroy", "io_getevents", "io_pgetevents", "io_pgetevents_time64",
    "ioprio_get", "ioprio_set", "io_setup", "io_submit", "ipc",
    "kill",
    "landlock_add_rule", "landlock_create_ruleset", "landlock_restrict_self", "lchown",
    "lchown32", "lgetxattr", "link", "linkat", "listen", "listmount", "listxattr",
    "listxattrat", "llistxattr", "_llseek", "lremovexattr", "lseek", "lsetxattr", "lstat",
    "lstat64",
    "madvise", "map_shadow_stack", "membarrier", "memfd_create", "memfd_secret", "mincore",
    "mkdir", "mkdirat", "mknod", "mknodat", "mlock", "mlock2", "mlockall", "mmap", "mmap2",
    "mprotect", "mq_getsetattr", "mq_notify", "mq_open", "mq_timedreceive",
    "mq_timedreceive_time64", "mq_timedsend", "mq_timedsend_time64", "mq_unlink", "mremap",
    "mseal", "msgctl", "msgget", "msgrcv", "msgsnd", "msync", "munlock", "munlockall", "munmap",
    "name_to_handle_at", "nanosleep", "newfstatat", "_newselect",
    "open", "openat", "openat2",
    "pause", "pidfd_open", "pidfd_send_signal", "pipe", "pipe2", "pkey_alloc", "pkey_free",
    "pkey_mprotect", "poll", "ppoll", "ppoll_time64", "prctl", "pread64", "preadv", "preadv2",
    "prlimit64", "process_mrelease", "pselect6", "pselect6_time64", "pwrite64", "pwritev",
    "pwritev2",
    "read", "readahead", "readlink", "readlinkat", "readv", "recv", "recvfrom", "recvmmsg",
    "recvmmsg_time64", "recvmsg", "remap_file_pages", "removexattr", "removexattrat", "rename",
    "renameat", "renameat2", "restart_syscall", "riscv_hwprobe", "rmdir", "rseq",
    "rt_sigaction", "rt_sigpending", "rt_sigprocmask", "rt_sigqueueinfo", "rt_sigreturn",
    "rt_sigsuspend", "rt_sigtimedwait", "rt_sigtimedwait_time64", "rt_tgsigqueueinfo",
    "sched_getaffinity", "sched_getattr", "sched_getparam", "sched_get_priority_max",
    "sched_get_priority_min", "sched_getscheduler", "sched_rr_get_interval",
    "sched_rr_get_interval_time64", "sched_setaffinity", "sched_setattr", "sched_setparam",
    "sched_setscheduler", "sched_yield", "seccomp", "select", "semctl", "semget", "semop",
    "semtimedop", "semtimedop_time64", "send", "sendfile", "sendfile64", "sendmmsg", "sendmsg",
    "sendto", "setfsgid", "setfsgid32", "setfsuid", "setfsuid32", "setgid", "setgid32",
    "setgroups", "setgroups32", "setitimer", "setpgid", "setpriority", "setregid", "setregid32",
    "setresgid", "setresgid32", "setresuid", "setresuid32", "setreuid", "setreuid32",
    "setrlimit", "set_robust_list", "setsid", "setsockopt", "set_thread_area",
    "set_tid_address", "setuid", "setuid32", "setxattr", "setxattrat", "shmat", "shmctl",
    "shmdt", "shmget", "shutdown", "sigaltstack", "signalfd", "signalfd4", "sigprocmask",
    "sigreturn", "socketcall", "socketpair", "splice", "stat", "stat64", "statfs", "statfs64",
    "statmount", "statx", "symlink", "symlinkat", "sync", "sync_file_range", "syncfs",
    "sysinfo",
    "tee", "tgkill", "time", "timer_create", "timer_delete", "timer_getoverrun",
    "timer_gettime", "timer_gettime64", "timer_settime", "timer_settime64", "timerfd_create",
    "timerfd_gettime", "timerfd_gettime64", "timerfd_settime", "timerfd_settime64", "times",
    "tkill", "truncate", "truncate64",
    "ugetrlimit", "umask", "uname", "unlink", "unlinkat", "uretprobe", "utime", "utimensat",
    "utimensat_time64", "utimes",
    "vfork", "vmsplice",
    "wait4", "waitid", "waitpid", "write", "writev",
];

/// Docker allows these from kernel 4.8 on, where ptrace can no longer be used to
/// skip seccomp checks. Berth needs a newer kernel anyway, so they are always in.
const DOCKER_ALLOWED_SINCE_4_8: &[&str] = &["process_vm_readv", "process_vm_writev", "ptrace"];

/// Allowed on the architecture Berth is built for.
#[cfg(target_arch = "x86_64")]
const DOCKER_ALLOWED_FOR_ARCH: &[&str] = &["arch_prctl", "modify_ldt"];
#[cfg(target_arch = "aarch64")]
const DOCKER_ALLOWED_FOR_ARCH: &[&str] = &[
    "arm_fadvise64_64",
    "arm_sync_file_range",
    "sync_file_range2",
    "breakpoint",
    "cacheflush",
    "set_tls",
];
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const DOCKER_ALLOWED_FOR_ARCH: &[&str] = &[];

#[cfg(target_arch = "x86_64")]
const DOCKER_ARCHITECTURES: &[Arch] = &[Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32];
#[cfg(target_arch = "aarch64")]
const DOCKER_ARCHITECTURES: &[Arch] = &[Arch::ScmpArchAarch64, Arch::ScmpArchArm];
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const DOCKER_ARCHITECTURES: &[Arch] = &[Arch::ScmpArchNative];

/// Allowed only when the container holds the capability.
const DOCKER_CAP_GATED: &[(&str, &[&str])] = &[
    ("CAP_DAC_READ_SEARCH", &["open_by_handle_at"]),
    (
        "CAP_SYS_ADMIN",
        &[
            "bpf",
            "clone",
            "clone3",
            "fanotify_init",
            "fsconfig",
            "fsmount",
            "fsopen",
            "fspick",
            "lookup_dcookie",
            "lsm_get_self_attr",
            "lsm_list_modules",
            "lsm_set_self_attr",
            "mount",
            "mount_setattr",
            "move_mount",
            "open_tree",
            "perf_event_open",
            "quotactl",
            "quotactl_fd",
            "setdomainname",
            "sethostname",
            "setns",
            "syslog",
            "umount",
            "umount2",
            "unshare",
        ],
    ),
    ("CAP_SYS_BOOT", &["reboot"]),
    ("CAP_SYS_CHROOT", &["chroot"]),
    (
        "CAP_SYS_MODULE",
        &["delete_module", "init_module", "finit_module"],
    ),
    ("CAP_SYS_PACCT", &["acct"]),
    (
        "CAP_SYS_PTRACE",
        &[
            "kcmp",
            "pidfd_getfd",
            "process_madvise",
            "process_vm_readv",
            "process_vm_writev",
            "ptrace",
        ],
    ),
    ("CAP_SYS_RAWIO", &["iopl", "ioperm"]),
    (
        "CAP_SYS_TIME",
        &["settimeofday", "stime", "clock_settime", "clock_settime64"],
    ),
    ("CAP_SYS_TTY_CONFIG", &["vhangup"]),
    (
        "CAP_SYS_NICE",
        &[
            "get_mempolicy",
            "mbind",
            "set_mempolicy",
            "set_mempolicy_home_node",
        ],
    ),
    ("CAP_SYSLOG", &["syslog"]),
    ("CAP_BPF", &["bpf"]),
    ("CAP_PERFMON", &["perf_event_open"]),
];

/// `personality` values Docker lets through: PER_LINUX, PER_LINUX32,
/// UNAME26, UNAME26|PER_LINUX32, and 0xffffffff (query only).
const DOCKER_PERSONALITIES: &[u64] = &[0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff];

/// Socket families Docker denies: AF_ALG (38) and AF_VSOCK (40).
const AF_ALG: u64 = 38;
const AF_VSOCK: u64 = 40;

/// clone(2) flags that create namespaces: NEWNS, NEWCGROUP, NEWUTS, NEWIPC,
/// NEWUSER, NEWPID, NEWNET (0x7E020000).
const CLONE_NAMESPACE_FLAGS: u64 = 0x7E02_0000;

/// Docker's default profile for a container with Docker's 14 default capabilities.
pub fn default_docker_profile() -> LinuxSeccomp {
    let caps = crate::capabilities::default_docker_caps();
    default_docker_profile_for(&caps)
}

/// Docker's default profile for a container whose bounding set is `caps`
/// (names as in the OCI config, with or without the `CAP_` prefix).
pub fn default_docker_profile_for(caps: &[String]) -> LinuxSeccomp {
    let held: BTreeSet<String> = caps.iter().map(|cap| canonical_cap_name(cap)).collect();
    let has_sys_admin = held.contains("CAP_SYS_ADMIN");

    let mut syscalls = vec![
        allow(DOCKER_ALLOWED),
        allow(DOCKER_ALLOWED_SINCE_4_8),
        allow_if("socket", 0, LinuxSeccompOperator::ScmpCmpLt, AF_ALG),
        allow_if("socket", 0, LinuxSeccompOperator::ScmpCmpEq, AF_ALG + 1),
        allow_if("socket", 0, LinuxSeccompOperator::ScmpCmpGt, AF_VSOCK),
    ];
    syscalls.extend(
        DOCKER_PERSONALITIES
            .iter()
            .map(|&persona| allow_if("personality", 0, LinuxSeccompOperator::ScmpCmpEq, persona)),
    );
    if !DOCKER_ALLOWED_FOR_ARCH.is_empty() {
        syscalls.push(allow(DOCKER_ALLOWED_FOR_ARCH));
    }
    syscalls.extend(
        DOCKER_CAP_GATED
            .iter()
            .filter(|(cap, _)| held.contains(*cap))
            .map(|(_, names)| allow(names)),
    );
    if !has_sys_admin {
        // Allowed only when (flags & CLONE_NAMESPACE_FLAGS) == 0.
        let mut clone = allow(&["clone"]);
        clone.set_args(Some(vec![arg(
            0,
            LinuxSeccompOperator::ScmpCmpMaskedEq,
            CLONE_NAMESPACE_FLAGS,
            Some(0),
        )]));
        syscalls.push(clone);
        // clone3 passes its flags in memory, out of a filter's reach: make callers
        // fall back to clone, whose flags the rule above can check.
        let mut clone3 = LinuxSyscall::default();
        clone3.set_names(vec!["clone3".to_string()]);
        clone3.set_action(LinuxSeccompAction::ScmpActErrno);
        clone3.set_errno_ret(Some(libc::ENOSYS as u32));
        syscalls.push(clone3);
    }

    let mut profile = LinuxSeccomp::default();
    profile.set_default_action(LinuxSeccompAction::ScmpActErrno);
    profile.set_default_errno_ret(Some(libc::EPERM as u32));
    profile.set_architectures(Some(DOCKER_ARCHITECTURES.to_vec()));
    profile.set_syscalls(Some(syscalls));
    profile
}

fn canonical_cap_name(name: &str) -> String {
    let upper = name.trim().to_ascii_uppercase();
    if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    }
}

fn allow(names: &[&str]) -> LinuxSyscall {
    let mut entry = LinuxSyscall::default();
    entry.set_names(names.iter().map(|name| name.to_string()).collect());
    entry.set_action(LinuxSeccompAction::ScmpActAllow);
    entry
}

fn allow_if(name: &str, index: usize, op: LinuxSeccompOperator, value: u64) -> LinuxSyscall {
    let mut entry = allow(&[name]);
    entry.set_args(Some(vec![arg(index, op, value, None)]));
    entry
}

fn arg(
    index: usize,
    op: LinuxSeccompOperator,
    value: u64,
    value_two: Option<u64>,
) -> LinuxSeccompArg {
    let builder = LinuxSeccompArgBuilder::default()
        .index(index)
        .op(op)
        .value(value);
    let builder = match value_two {
        Some(value_two) => builder.value_two(value_two),
        None => builder,
    };
    builder
        .build()
        .expect("every field of LinuxSeccompArg has a default")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(names: &[&str], action: LinuxSeccompAction) -> LinuxSyscall {
        let mut entry = LinuxSyscall::default();
        entry.set_names(names.iter().map(|name| name.to_string()).collect());
        entry.set_action(action);
        entry
    }

    fn profile(default: LinuxSeccompAction, syscalls: Vec<LinuxSyscall>) -> LinuxSeccomp {
        let mut profile = LinuxSeccomp::default();
        profile.set_default_action(default);
        profile.set_syscalls(Some(syscalls));
        profile
    }

    fn compile_err(profile: &LinuxSeccomp) -> String {
        match compile(profile) {
            Ok(_) => panic!("profile should not compile: {profile:?}"),
            Err(err) => err.to_string(),
        }
    }

    #[test]
    fn docker_profile_allows_the_pinned_number_of_syscalls() {
        // Docker's default.json (moby/profiles/seccomp v0.2.3) for a container with
        // the 14 default capabilities: 361 names in the unconditional block, 3 from
        // the kernel >= 4.8 block (process_vm_readv, process_vm_writev, ptrace),
        // socket and personality (argument filtered), clone (namespace flags masked,
        // no CAP_SYS_ADMIN), chroot (CAP_SYS_CHROOT), plus the architecture block:
        // arch_prctl and modify_ldt on x86_64, six ARM calls on aarch64.
        let expected = if cfg!(target_arch = "aarch64") {
            374
        } else {
            370
        };
        assert_eq!(DOCKER_ALLOWED.len(), 361);
        let program = compile(&default_docker_profile()).expect("docker profile compiles");
        assert_eq!(program.allowed_syscall_count(), expected);
        assert!(program.instruction_count() <= MAX_INSTRUCTIONS);
        assert!(!program.has_listener());
    }

    #[test]
    fn docker_allowlist_has_no_duplicates() {
        let unique: BTreeSet<_> = DOCKER_ALLOWED.iter().collect();
        assert_eq!(unique.len(), DOCKER_ALLOWED.len());
    }

    #[test]
    fn docker_profile_shape() {
        let profile = default_docker_profile();
        assert_eq!(profile.default_action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(profile.default_errno_ret(), Some(libc::EPERM as u32));
        let syscalls = profile.syscalls().clone().unwrap_or_default();
        let named = |name: &str| -> Vec<LinuxSyscall> {
            syscalls
                .iter()
                .filter(|s| s.names().iter().any(|n| n == name))
                .cloned()
                .collect()
        };
        for gated in [
            "mount",
            "umount2",
            "unshare",
            "setns",
            "init_module",
            "reboot",
            "bpf",
        ] {
            assert!(
                named(gated)
                    .iter()
                    .all(|s| s.action() != LinuxSeccompAction::ScmpActAllow),
                "{gated} must not be allowed without its capability"
            );
        }
        assert_eq!(
            named("chroot").len(),
            1,
            "CAP_SYS_CHROOT is a default capability"
        );
        let clone = named("clone");
        assert_eq!(clone.len(), 1);
        let clone_args = clone[0].args().clone().unwrap_or_default();
        assert_eq!(clone_args.len(), 1);
        assert_eq!(clone_args[0].op(), LinuxSeccompOperator::ScmpCmpMaskedEq);
        assert_eq!(clone_args[0].value(), 0x7E02_0000);
        assert_eq!(clone_args[0].value_two(), Some(0));
        let clone3 = named("clone3");
        assert_eq!(clone3.len(), 1);
        assert_eq!(clone3[0].action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(clone3[0].errno_ret(), Some(libc::ENOSYS as u32));
        assert_eq!(named("personality").len(), 5);
        assert_eq!(named("socket").len(), 3);
    }

    #[test]
    fn capabilities_add_their_syscall_groups() {
        let mut caps = crate::capabilities::default_docker_caps();
        caps.push("sys_admin".to_string());
        caps.push("CAP_SYS_PTRACE".to_string());
        let profile = default_docker_profile_for(&caps);
        let allowed: BTreeSet<String> = profile
            .syscalls()
            .clone()
            .unwrap_or_default()
            .iter()
            .filter(|s| s.action() == LinuxSeccompAction::ScmpActAllow && s.args().is_none())
            .flat_map(|s| s.names().clone())
            .collect();
        for name in [
            "mount",
            "umount2",
            "unshare",
            "setns",
            "clone",
            "clone3",
            "kcmp",
            "pidfd_getfd",
        ] {
            assert!(allowed.contains(name), "{name} should be allowed");
        }
        let clone3_denied = profile
            .syscalls()
            .clone()
            .unwrap_or_default()
            .iter()
            .any(|s| s.action() == LinuxSeccompAction::ScmpActErrno);
        assert!(
            !clone3_denied,
            "with CAP_SYS_ADMIN clone3 is not answered with ENOSYS"
        );
        compile(&profile).expect("profile with every group compiles");

        let every_cap: Vec<String> = DOCKER_CAP_GATED
            .iter()
            .map(|(cap, _)| cap.to_string())
            .collect();
        compile(&default_docker_profile_for(&every_cap)).expect("overlapping groups compile");
    }

    #[test]
    fn notify_as_default_action_is_refused() {
        let err = compile_err(&profile(LinuxSeccompAction::ScmpActNotify, vec![]));
        assert!(err.contains("SCMP_ACT_NOTIFY"), "{err}");
    }

    #[test]
    fn notify_on_write_is_refused() {
        let p = profile(
            LinuxSeccompAction::ScmpActAllow,
            vec![entry(&["read", "write"], LinuxSeccompAction::ScmpActNotify)],
        );
        let err = compile_err(&p);
        assert!(err.contains("`write`"), "{err}");
    }

    #[test]
    fn notify_asks_for_a_listener() {
        let p = profile(
            LinuxSeccompAction::ScmpActAllow,
            vec![entry(&["mkdirat"], LinuxSeccompAction::ScmpActNotify)],
        );
        assert!(compile(&p).expect("compiles").has_listener());
    }

    #[test]
    fn errno_ret_on_allow_is_refused() {
        let mut e = entry(&["getpid"], LinuxSeccompAction::ScmpActAllow);
        e.set_errno_ret(Some(1));
        let err = compile_err(&profile(LinuxSeccompAction::ScmpActErrno, vec![e]));
        assert!(
            err.contains("getpid") && err.contains("SCMP_ACT_ALLOW"),
            "{err}"
        );
    }

    #[test]
    fn errno_ret_out_of_range_is_refused() {
        let mut e = entry(&["mkdir"], LinuxSeccompAction::ScmpActErrno);
        e.set_errno_ret(Some(0x1_0000));
        let err = compile_err(&profile(LinuxSeccompAction::ScmpActAllow, vec![e]));
        assert!(err.contains("65536") && err.contains("mkdir"), "{err}");

        let mut p = profile(LinuxSeccompAction::ScmpActErrno, vec![]);
        p.set_default_errno_ret(Some(70_000));
        let err = compile_err(&p);
        assert!(
            err.contains("defaultErrnoRet") && err.contains("70000"),
            "{err}"
        );
    }

    #[test]
    fn argument_index_out_of_range_is_refused() {
        let mut e = entry(&["personality"], LinuxSeccompAction::ScmpActAllow);
        e.set_args(Some(vec![arg(6, LinuxSeccompOperator::ScmpCmpEq, 0, None)]));
        let err = compile_err(&profile(LinuxSeccompAction::ScmpActErrno, vec![e]));
        assert!(
            err.contains("index 6") && err.contains("personality"),
            "{err}"
        );
    }

    #[test]
    fn empty_syscall_name_is_refused() {
        let e = entry(&["getpid", ""], LinuxSeccompAction::ScmpActAllow);
        let err = compile_err(&profile(LinuxSeccompAction::ScmpActErrno, vec![e]));
        assert!(err.contains("empty syscall name"), "{err}");
    }

    #[test]
    fn a_program_round_trips_through_its_encoding() {
        let e = entry(
            &["getpid", "no_such_syscall"],
            LinuxSeccompAction::ScmpActErrno,
        );
        let program =
            compile(&profile(LinuxSeccompAction::ScmpActAllow, vec![e])).expect("compiles");
        let bytes = program.encode();
        let back = SeccompProgram::decode(&bytes).expect("decodes");
        assert_eq!(back.encode(), bytes);
        assert_eq!(back.instruction_count(), program.instruction_count());
        assert_eq!(
            back.skipped_syscalls().collect::<Vec<_>>(),
            ["no_such_syscall"]
        );
        assert!(SeccompProgram::decode(&bytes[..bytes.len() - 1]).is_none());
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(SeccompProgram::decode(&longer).is_none());
        assert!(SeccompProgram::decode(b"").is_none());
    }

    #[test]
    fn unknown_syscalls_are_skipped() {
        let e = entry(
            &["getpid", "no_such_syscall"],
            LinuxSeccompAction::ScmpActErrno,
        );
        let program =
            compile(&profile(LinuxSeccompAction::ScmpActAllow, vec![e])).expect("compiles");
        assert_eq!(
            program.skipped_syscalls().collect::<Vec<_>>(),
            ["no_such_syscall"]
        );
    }

    #[test]
    fn every_action_and_operator_compiles() {
        let actions = [
            LinuxSeccompAction::ScmpActKill,
            LinuxSeccompAction::ScmpActKillThread,
            LinuxSeccompAction::ScmpActKillProcess,
            LinuxSeccompAction::ScmpActTrap,
            LinuxSeccompAction::ScmpActErrno,
            LinuxSeccompAction::ScmpActTrace,
            LinuxSeccompAction::ScmpActLog,
            LinuxSeccompAction::ScmpActNotify,
        ];
        let ops = [
            LinuxSeccompOperator::ScmpCmpNe,
            LinuxSeccompOperator::ScmpCmpLt,
            LinuxSeccompOperator::ScmpCmpLe,
            LinuxSeccompOperator::ScmpCmpEq,
            LinuxSeccompOperator::ScmpCmpGe,
            LinuxSeccompOperator::ScmpCmpGt,
            LinuxSeccompOperator::ScmpCmpMaskedEq,
        ];
        let names = [
            "getpriority",
            "setpriority",
            "getpgid",
            "setpgid",
            "getsid",
            "kill",
            "tgkill",
            "ioprio_get",
        ];
        let syscalls = actions
            .iter()
            .zip(names)
            .zip(ops.iter().cycle())
            .map(|((action, name), op)| {
                let mut e = entry(&[name], *action);
                e.set_args(Some(vec![
                    arg(0, *op, 7, Some(3)),
                    arg(1, LinuxSeccompOperator::ScmpCmpNe, 1, None),
                ]));
                e
            })
            .collect();
        let mut p = profile(LinuxSeccompAction::ScmpActAllow, syscalls);
        p.set_architectures(Some(vec![
            Arch::ScmpArchNative,
            Arch::ScmpArchX86_64,
            Arch::ScmpArchX86,
            Arch::ScmpArchX32,
            Arch::ScmpArchAarch64,
        ]));
        p.set_flags(Some(vec![
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync,
            LinuxSeccompFilterFlag::SeccompFilterFlagLog,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow,
            LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv,
        ]));
        let program = compile(&p).expect("compiles");
        assert!(program.has_listener());
        assert!(program.flags & libc::SECCOMP_FILTER_FLAG_TSYNC_ESRCH != 0);
        assert!(program.flags & libc::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV != 0);
    }

    #[test]
    fn architecture_the_library_lacks_is_named() {
        let version = libseccomp::ScmpVersion::current().expect("libseccomp version");
        let mut p = profile(LinuxSeccompAction::ScmpActAllow, vec![]);
        p.set_architectures(Some(vec![Arch::ScmpArchLoongarch64]));
        if (version.major, version.minor) < (2, 6) {
            // LoongArch support arrived in libseccomp 2.6.
            let err = compile_err(&p);
            assert!(err.contains("SCMP_ARCH_LOONGARCH64"), "{err}");
        } else {
            compile(&p).expect("libseccomp 2.6 knows LoongArch");
        }
    }

    #[test]
    fn program_can_be_built_in_one_thread_and_loaded_in_another() {
        fn send_and_sync<T: Send + Sync>() {}
        send_and_sync::<SeccompProgram>();
    }

    #[test]
    fn unknown_names_in_json_are_refused_by_name() {
        // Unknown actions, operators, architectures and flags never reach compile():
        // the typed profile refuses them while parsing, naming the bad value.
        let cases = [
            (
                r#"{"defaultAction":"SCMP_ACT_EXPLODE"}"#,
                "SCMP_ACT_EXPLODE",
            ),
            (
                r#"{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_VAX"]}"#,
                "SCMP_ARCH_VAX",
            ),
            (
                r#"{"defaultAction":"SCMP_ACT_ALLOW","flags":["SECCOMP_FILTER_FLAG_NOPE"]}"#,
                "SECCOMP_FILTER_FLAG_NOPE",
            ),
            (
                r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["kill"],"action":"SCMP_ACT_ERRNO","args":[{"index":0,"value":1,"op":"SCMP_CMP_ABOUT"}]}]}"#,
                "SCMP_CMP_ABOUT",
            ),
        ];
        for (json, bad) in cases {
            let err = serde_json::from_str::<LinuxSeccomp>(json)
                .expect_err(json)
                .to_string();
            assert!(err.contains(bad), "{err}");
        }
    }
}
