//! The only place that reaps. The shim is a child subreaper: the runtime's
//! processes, the container's init and every exec'd process end up as its
//! children, and all their exits go through one thread here.
//!
//! Children are started with [`Reaper::spawn`], which holds the lock while
//! `Command::spawn` runs: std reaps a child itself when its exec fails, so
//! the reaper only peeks (`waitid(WNOWAIT)`) and reaps under the lock.
//! Processes the shim learns about by pid file (init, execs) may exit before
//! their pid is known; their statuses wait in a short list of unclaimed exits.

use std::collections::{HashMap, VecDeque};
use std::process::Command;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::wait::{waitid, waitpid, Id, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

/// Exits nobody asked for are kept this long (as a count) for a later claim.
const UNCLAIMED_KEPT: usize = 256;

pub(crate) struct Reaper {
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Default)]
struct State {
    /// The reaper thread was started.
    running: bool,
    /// Bumped by every spawn, so the reaper thread knows children may exist.
    spawns: u64,
    /// Bumped by every reaped exit; [`Reaper::mark`] hands it out.
    reaped: u64,
    /// Pids someone waits for, with their status once reaped.
    waited: HashMap<i32, Option<WaitStatus>>,
    /// (pid, status, reaped sequence number) of exits nobody waited for.
    unclaimed: VecDeque<(i32, WaitStatus, u64)>,
}

impl Reaper {
    /// A reaper whose thread is not running yet: until [`Reaper::start`],
    /// the process stays single-threaded (the runtime library forks) and
    /// exits wait as zombies.
    pub(crate) fn new() -> Arc<Reaper> {
        Arc::new(Reaper {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
        })
    }

    /// Starts the reaper thread (once). Call after becoming a child subreaper.
    pub(crate) fn start(self: &Arc<Self>) -> std::io::Result<()> {
        let mut state = self.lock();
        if state.running {
            return Ok(());
        }
        let thread_reaper = self.clone();
        std::thread::Builder::new()
            .name("reaper".into())
            .stack_size(crate::server::THREAD_STACK)
            .spawn(move || thread_reaper.run())?;
        state.running = true;
        Ok(())
    }

    /// Runs `f` while no exit is reaped here, for a library call that waits
    /// for children of its own (the runtime's hooks): their exits stay
    /// theirs, as with [`Reaper::spawn`].
    pub(crate) fn exclusive<R>(&self, f: impl FnOnce() -> R) -> R {
        let _state = self.lock();
        f()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Spawns `command` and registers its pid for [`Reaper::wait`]. Never
    /// call `wait` on the returned `Child`: its status comes from here.
    pub(crate) fn spawn(&self, command: &mut Command) -> std::io::Result<i32> {
        let mut state = self.lock();
        let child = command.spawn()?;
        let pid = child.id() as i32;
        state.waited.insert(pid, None);
        state.spawns += 1;
        self.changed.notify_all();
        Ok(pid)
    }

    /// A point in the sequence of exits: [`Reaper::watch`] with it accepts
    /// only exits reaped after it (a pid reused later cannot match).
    pub(crate) fn mark(&self) -> u64 {
        self.lock().reaped
    }

    /// Registers a pid learned from a pid file (a descendant that was
    /// reparented to the shim) for [`Reaper::wait`].
    pub(crate) fn watch(&self, pid: i32, since: u64) {
        let mut state = self.lock();
        let found = state
            .unclaimed
            .iter()
            .position(|&(p, _, seq)| p == pid && seq >= since);
        let status = found
            .and_then(|index| state.unclaimed.remove(index))
            .map(|(_, status, _)| status);
        state.waited.insert(pid, status);
    }

    /// Blocks until a registered pid exited, then forgets it. `None` after
    /// `timeout` (the pid stays registered) or for an unregistered pid.
    pub(crate) fn wait(&self, pid: i32, timeout: Option<Duration>) -> Option<WaitStatus> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut state = self.lock();
        loop {
            match state.waited.get(&pid) {
                None => return None,
                Some(Some(status)) => {
                    let status = *status;
                    state.waited.remove(&pid);
                    return Some(status);
                }
                Some(None) => {}
            }
            state = match deadline {
                None => self.changed.wait(state).unwrap_or_else(|e| e.into_inner()),
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return None;
                    }
                    self.changed
                        .wait_timeout(state, left)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
        }
    }

    fn run(&self) {
        loop {
            let spawns = self.lock().spawns;
            match waitid(Id::All, WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT) {
                Ok(peeked) => {
                    let Some(pid) = peeked.pid() else { continue };
                    let mut state = self.lock();
                    // A spawn that saw its exec fail reaped the child itself
                    // while we waited for the lock: then nothing is there.
                    if let Ok(status) = waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
                        if status != WaitStatus::StillAlive {
                            Self::record(&mut state, pid, status);
                            self.changed.notify_all();
                        }
                    }
                }
                Err(Errno::ECHILD) => {
                    let mut state = self.lock();
                    while state.spawns == spawns {
                        state = self.changed.wait(state).unwrap_or_else(|e| e.into_inner());
                    }
                }
                Err(Errno::EINTR) => {}
                Err(e) => {
                    eprintln!("berth-shim: waitid: {e}");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }

    fn record(state: &mut State, pid: Pid, status: WaitStatus) {
        let seq = state.reaped;
        state.reaped += 1;
        match state.waited.get_mut(&pid.as_raw()) {
            Some(slot) => *slot = Some(status),
            None => {
                if state.unclaimed.len() >= UNCLAIMED_KEPT {
                    state.unclaimed.pop_front();
                }
                state.unclaimed.push_back((pid.as_raw(), status, seq));
            }
        }
    }
}
