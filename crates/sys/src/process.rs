//! Process-level calls that need `unsafe`: fork, the domain name, and fd
//! hygiene before a container's process is executed.

use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::unistd::Pid;

/// Which side of a fork the caller is on.
pub enum Forked {
    Parent(Pid),
    Child,
}

/// Forks the calling process.
///
/// Only call this from a single-threaded process: the runtime CLI never starts
/// threads, and the shim creates containers before it starts any, which is
/// what makes the child's use of the allocator sound.
pub fn fork() -> Result<Forked, Errno> {
    // SAFETY: the runtime binary is single-threaded (no thread is ever spawned),
    // so the child inherits no lock held by another thread.
    match unsafe { nix::unistd::fork() }? {
        nix::unistd::ForkResult::Parent { child } => Ok(Forked::Parent(child)),
        nix::unistd::ForkResult::Child => Ok(Forked::Child),
    }
}

/// As [`fork`], with the child born in the cgroup2 directory `cgroup`
/// (clone3 with `CLONE_INTO_CGROUP`), so nobody writes its pid to
/// `cgroup.procs`. Fails (ENOSYS, EINVAL, EOPNOTSUPP…) where the kernel or
/// the directory does not allow it; the caller then forks plainly.
///
/// The same rule as [`fork`]: single-threaded callers only.
pub fn fork_into_cgroup(cgroup: std::os::fd::BorrowedFd<'_>) -> Result<Forked, Errno> {
    use std::os::fd::AsRawFd;
    // struct clone_args, up to `cgroup` (CLONE_ARGS_SIZE_VER2).
    #[repr(C)]
    #[derive(Default)]
    struct CloneArgs {
        flags: u64,
        pidfd: u64,
        child_tid: u64,
        parent_tid: u64,
        exit_signal: u64,
        stack: u64,
        stack_size: u64,
        tls: u64,
        set_tid: u64,
        set_tid_size: u64,
        cgroup: u64,
    }
    const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;
    let args = CloneArgs {
        flags: CLONE_INTO_CGROUP,
        exit_signal: libc::SIGCHLD as u64,
        cgroup: cgroup.as_raw_fd() as u64,
        ..CloneArgs::default()
    };
    // SAFETY: a clone without CLONE_VM or a new stack is a fork: the child
    // gets a copy of the address space and returns here on its own copy of
    // the stack. The caller is single-threaded (as for `fork`), so no lock
    // is held by a thread the child lacks; glibc's atfork handlers do not
    // run, and none matter to a process that holds no other thread's locks.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    match ret {
        -1 => Err(Errno::last()),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(Pid::from_raw(pid as i32))),
    }
}

/// Keeps `fd` open in the program `command` runs (clears its close-on-exec
/// flag in the child only; the caller's fd is unchanged).
pub fn keep_on_exec(command: &mut std::process::Command, fd: RawFd) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the hook runs in the child between fork and exec and makes one
    // async-signal-safe call (fcntl) on the child's own fd table.
    unsafe {
        command.pre_exec(move || {
            if libc::fcntl(fd, libc::F_SETFD, 0) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Makes the program `command` runs an orphan: in the forked child, right
/// before exec, it forks once more and the middle process exits at once, so
/// the program runs in a grandchild that init (or the nearest child
/// subreaper) adopts. The `Child` that `spawn` then returns is the middle
/// process: wait for it to reap it. A failed exec is still reported by
/// `spawn` (the grandchild holds the error pipe).
pub fn detach_on_exec(command: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the hook runs in the child between fork and exec and makes only
    // async-signal-safe calls: a raw clone without CLONE_VM (a fork that runs
    // no atfork handlers, as the child of a multithreaded process must) and
    // _exit. The grandchild goes straight on to exec.
    unsafe {
        command.pre_exec(|| {
            let flags = libc::SIGCHLD as libc::c_ulong;
            match libc::syscall(libc::SYS_clone, flags, 0usize, 0usize, 0usize, 0usize) {
                -1 => Err(std::io::Error::last_os_error()),
                0 => Ok(()),
                _ => libc::_exit(0),
            }
        });
    }
}

/// Sets the NIS domain name of the current UTS namespace.
pub fn set_domainname(name: &str) -> Result<(), Errno> {
    // SAFETY: the pointer and length describe `name`'s bytes, which outlive the call.
    let rc = unsafe { libc::setdomainname(name.as_ptr().cast(), name.len()) };
    Errno::result(rc).map(drop)
}

/// Sets the disposition of every signal back to the default, as a program
/// expects to start: the runtime's processes ignore SIGPIPE (every Rust
/// program does) and may inherit more ignored signals from whoever started
/// them, and exec keeps what is ignored.
pub fn reset_signal_dispositions() {
    // The kernel's struct sigaction with every field zero: SIG_DFL, no
    // flags, empty mask. Made through the raw call, as the C library
    // refuses the real-time signals it reserves for itself (32, 33), which
    // a caller may still have left ignored.
    let default = [0u64; 4];
    for signal in 1..=64 {
        if signal == libc::SIGKILL || signal == libc::SIGSTOP {
            continue;
        }
        // SAFETY: `default` outlives the call and is at least as large as
        // the kernel's struct sigaction; no old action is asked for; the
        // mask size is the kernel's (8 bytes). A refused signal number
        // changes nothing.
        unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                signal,
                default.as_ptr(),
                std::ptr::null_mut::<libc::c_void>(),
                8usize,
            );
        }
    }
}

/// Gives the free memory of the C allocator's heap back to the kernel
/// (malloc_trim): for a long-lived process after a burst of allocations.
pub fn release_free_heap() {
    // SAFETY: malloc_trim only returns free pages of the allocator's own
    // heap; it takes the allocator's lock like any malloc call.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Marks every fd from `first` upwards close-on-exec, so nothing of the
/// runtime leaks into the container's process.
pub fn cloexec_from(first: RawFd) -> Result<(), Errno> {
    let first = u32::try_from(first).map_err(|_| Errno::EBADF)?;
    // SAFETY: close_range only changes flags of fds of this process.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    Errno::result(rc).map(drop)
}

/// Takes ownership of an fd number inherited from the caller (`--preserve-fds`,
/// `LISTEN_FDS`), after checking it is open.
pub fn adopt_fd(fd: RawFd) -> Result<OwnedFd, Errno> {
    nix::fcntl::fcntl(
        // SAFETY: a borrowed fd used only for this F_GETFD probe.
        unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) },
        nix::fcntl::FcntlArg::F_GETFD,
    )?;
    // SAFETY: the fd is open (checked above) and the caller hands it over.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}
