//! The foreground of `run` and `exec`: reap as subreaper, relay signals to
//! the container's process, copy the terminal both ways, return its status.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use anyhow::{Context as _, Result};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::termios;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

const RELAYED: [Signal; 8] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
    Signal::SIGCHLD,
];

/// Restores the host terminal's mode when dropped.
struct RawMode {
    saved: Option<termios::Termios>,
}

impl RawMode {
    fn enable() -> RawMode {
        let stdin = std::io::stdin();
        let Ok(saved) = termios::tcgetattr(&stdin) else {
            return RawMode { saved: None };
        };
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        let _ = termios::tcsetattr(&stdin, termios::SetArg::TCSANOW, &raw);
        RawMode { saved: Some(saved) }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(saved) = &self.saved {
            let _ = termios::tcsetattr(std::io::stdin(), termios::SetArg::TCSANOW, saved);
        }
    }
}

fn reap(target: Pid) -> Option<u8> {
    loop {
        match waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) if pid == target => return Some(code as u8),
            Ok(WaitStatus::Signaled(pid, sig, _)) if pid == target => {
                return Some(128u8.wrapping_add(sig as u8))
            }
            Ok(WaitStatus::StillAlive) | Err(_) => return None,
            Ok(_) => continue,
        }
    }
}

fn copy(from: impl AsFd, to: impl AsFd) -> bool {
    let mut buf = [0u8; 8192];
    match nix::unistd::read(&from, &mut buf) {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            let mut off = 0;
            while off < n {
                match nix::unistd::write(&to, &buf[off..n]) {
                    Ok(w) => off += w,
                    Err(nix::errno::Errno::EINTR) => {}
                    Err(_) => return false,
                }
            }
            true
        }
    }
}

pub fn wait_foreground(pid: i32, console: Option<OwnedFd>) -> Result<u8> {
    let target = Pid::from_raw(pid);
    let mut mask = SigSet::empty();
    for s in RELAYED {
        mask.add(s);
    }
    mask.thread_block().context("block signals")?;
    let sfd = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC).context("signalfd")?;
    let _raw = console.as_ref().map(|_| RawMode::enable());
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    if let Some(master) = &console {
        if let Ok((rows, cols)) = berth_sys::tty::window_size(&stdin) {
            let _ = berth_sys::tty::set_window_size(master, rows, cols);
        }
    }
    let mut stdin_open = console.is_some();
    let mut master_open = console.is_some();
    loop {
        if let Some(code) = reap(target) {
            if let (Some(master), true) = (&console, master_open) {
                // Drain what the process wrote before it exited.
                let mut fds = [PollFd::new(master.as_fd(), PollFlags::POLLIN)];
                while poll(&mut fds, PollTimeout::ZERO).unwrap_or(0) > 0
                    && fds[0]
                        .revents()
                        .is_some_and(|r| r.contains(PollFlags::POLLIN))
                    && copy(master, &stdout)
                {}
            }
            return Ok(code);
        }
        let mut fds = vec![PollFd::new(sfd.as_fd(), PollFlags::POLLIN)];
        if let Some(master) = &console {
            if master_open {
                fds.push(PollFd::new(master.as_fd(), PollFlags::POLLIN));
            }
            if stdin_open {
                fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
            }
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e).context("poll"),
        }
        let ready: Vec<(i32, bool)> = fds
            .iter()
            .map(|f| {
                (
                    f.as_fd().as_raw_fd(),
                    f.revents().is_some_and(|r| !r.is_empty()),
                )
            })
            .collect();
        drop(fds);
        for (fd, is_ready) in ready {
            if !is_ready {
                continue;
            }
            if fd == sfd.as_fd().as_raw_fd() {
                if let Ok(Some(info)) = sfd.read_signal() {
                    let Ok(sig) = Signal::try_from(info.ssi_signo as i32) else {
                        continue;
                    };
                    match sig {
                        Signal::SIGCHLD => {}
                        Signal::SIGWINCH => {
                            if let (Some(master), Ok((r, c))) =
                                (&console, berth_sys::tty::window_size(&stdin))
                            {
                                let _ = berth_sys::tty::set_window_size(master, r, c);
                            }
                        }
                        other => {
                            let _ = nix::sys::signal::kill(target, other);
                        }
                    }
                }
            } else if let Some(master) = &console {
                if fd == master.as_raw_fd() {
                    master_open = copy(master, &stdout);
                } else if fd == stdin.as_raw_fd() {
                    stdin_open = copy(&stdin, master);
                }
            }
        }
    }
}
