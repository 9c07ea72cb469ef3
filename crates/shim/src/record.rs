//! The exit record (`<state_dir>/exit.json`) and the timestamps the
//! shim reports.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::ExitStatus;

pub(crate) const EXIT_FILE: &str = "exit.json";

/// Now as RFC 3339 with nanoseconds in UTC, as Docker prints times.
pub(crate) fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// Docker's exit code for a wait status: the exit status, or 128+signal.
pub(crate) fn exit_code(status: nix::sys::wait::WaitStatus) -> i32 {
    use nix::sys::wait::WaitStatus;
    match status {
        WaitStatus::Exited(_, code) => code,
        WaitStatus::Signaled(_, signal, _) => 128 + signal as i32,
        // Only exits are waited for; anything else is not a normal end.
        _ => 255,
    }
}

/// Writes `exit.json` so that a crash of the shim or the daemon at any
/// instant leaves either no file or the whole record: temporary file, then
/// rename. No fsync: the record is for a daemon that restarts while the
/// host stays up (the page cache survives a process crash), and after a
/// power loss the exec-root (tmpfs, as /run) describes no live process.
pub(crate) fn write_exit(state_dir: &Path, exit: &ExitStatus) -> io::Result<()> {
    let tmp = state_dir.join(".exit.json.tmp");
    let data = serde_json::to_vec(exit).map_err(io::Error::other)?;
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(&data)?;
    drop(file);
    std::fs::rename(&tmp, state_dir.join(EXIT_FILE))
}

pub(crate) fn read_exit(state_dir: &Path) -> Option<ExitStatus> {
    let data = std::fs::read(state_dir.join(EXIT_FILE)).ok()?;
    serde_json::from_slice(&data).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::signal::Signal;
    use nix::sys::wait::WaitStatus;
    use nix::unistd::Pid;

    #[test]
    fn exit_record_round_trips() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(read_exit(dir.path()), None);
        let exit = ExitStatus {
            code: 137,
            finished_at: now_rfc3339(),
            oom_killed: false,
        };
        write_exit(dir.path(), &exit).expect("write");
        assert_eq!(read_exit(dir.path()), Some(exit));
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("list")
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names, [EXIT_FILE]);
        std::fs::write(dir.path().join(EXIT_FILE), "{").expect("corrupt");
        assert_eq!(read_exit(dir.path()), None);
    }

    #[test]
    fn exit_codes_are_dockers() {
        let pid = Pid::from_raw(10);
        assert_eq!(exit_code(WaitStatus::Exited(pid, 3)), 3);
        assert_eq!(
            exit_code(WaitStatus::Signaled(pid, Signal::SIGKILL, false)),
            137
        );
        assert_eq!(
            exit_code(WaitStatus::Signaled(pid, Signal::SIGTERM, true)),
            143
        );
    }

    #[test]
    fn timestamps_have_nanoseconds() {
        let now = now_rfc3339();
        assert!(now.ends_with('Z'), "{now}");
        let fraction = now.rsplit_once('.').expect("fraction").1;
        assert_eq!(fraction.len(), 10, "{now}");
    }
}
