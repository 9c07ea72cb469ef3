//! Starting a shim so that the daemon never parents it: the daemon runs
//! `berth-shim serve <state_dir>` (options as JSON on stdin) through a
//! fork that exits right before the exec (`detach_on_exec`), so the shim is
//! an orphan, adopted by init, from its first instruction; the daemon reads
//! its one-line report ("created" or the error) and is done.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::process::{Command, Stdio};

use crate::protocol::{ErrorReply, Response};
use crate::{Error, Result, ShimClient, SpawnOptions};

/// The shim's own stderr (panics, failures it cannot report to a client).
pub(crate) const SHIM_LOG: &str = "shim.log";

/// The daemon's side: starts the shim and waits for its report.
pub(crate) fn spawn(options: &SpawnOptions) -> Result<ShimClient> {
    check_state_dir(&options.state_dir)?;
    let json =
        serde_json::to_vec(options).map_err(|e| Error::Protocol(format!("spawn options: {e}")))?;
    let log_path = options.state_dir.join(SHIM_LOG);
    let open_log = |create_new: bool| {
        OpenOptions::new()
            .create_new(create_new)
            .append(true)
            .mode(0o600)
            .open(&log_path)
    };
    // A shim that already serves this dir (refused by the new one) keeps its log.
    let (log, created_log) = match open_log(true) {
        Ok(log) => (Ok(log), true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => (open_log(false), false),
        Err(e) => (Err(e), false),
    };
    let log = log.map_err(|e| Error::io(format!("open {}", log_path.display()), e))?;
    let mut command = Command::new(&options.shim_binary);
    command
        .arg("serve")
        .arg(&options.state_dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(log)
        // One malloc arena: the shim's threads mostly sleep, and every
        // extra arena is private memory per container.
        .env("MALLOC_ARENA_MAX", "1");
    if let Some(fd) = options.runtime_fd {
        berth_sys::process::keep_on_exec(&mut command, fd);
    }
    berth_sys::process::detach_on_exec(&mut command);
    let mut middle = command
        .spawn()
        .map_err(|e| Error::io(format!("run {}", options.shim_binary.display()), e))?;
    let (Some(mut stdin), Some(stdout)) = (middle.stdin.take(), middle.stdout.take()) else {
        return Err(Error::Protocol("no pipe to the shim".into()));
    };
    // The process spawn returns is the fork that exited right away.
    let _ = middle.wait();
    // A shim that died early shows up in its report below.
    let _ = stdin.write_all(&json);
    drop(stdin);
    let mut line = Vec::new();
    let read = BufReader::new(stdout)
        .take(crate::protocol::MAX_LINE as u64)
        .read_until(b'\n', &mut line);
    let response = match read {
        Ok(n) if n > 0 && line.ends_with(b"\n") => serde_json::from_slice::<Response>(&line).ok(),
        _ => None,
    };
    match response {
        Some(response) => {
            // A failed spawn leaves nothing; the report carries the error.
            if created_log && matches!(response, Response::Error(_)) {
                let _ = std::fs::remove_file(&log_path);
            }
            response.into_result().map(|_| ShimClient {
                socket: crate::socket_path(&options.state_dir),
            })
        }
        None => Err(Error::Protocol(format!(
            "{} serve ended without a report: {}",
            options.shim_binary.display(),
            tail(&log_path)
        ))),
    }
}

/// The state dir must be the caller's private directory: the socket in it
/// controls the container.
pub(crate) fn check_state_dir(state_dir: &Path) -> Result<()> {
    let invalid = |why: String| {
        Error::io(
            format!("state dir {}", state_dir.display()),
            io::Error::new(io::ErrorKind::InvalidInput, why),
        )
    };
    if !state_dir.is_absolute() {
        return Err(invalid("must be an absolute path".into()));
    }
    let meta = std::fs::symlink_metadata(state_dir)
        .map_err(|e| Error::io(format!("state dir {}", state_dir.display()), e))?;
    if !meta.is_dir() {
        return Err(invalid("is not a directory".into()));
    }
    if meta.mode() & 0o077 != 0 || meta.uid() != nix::unistd::geteuid().as_raw() {
        return Err(invalid(format!(
            "must be owned by uid {} with mode 0700 (it has uid {} and mode {:o})",
            nix::unistd::geteuid(),
            meta.uid(),
            meta.mode() & 0o7777
        )));
    }
    let socket = crate::socket_path(state_dir);
    // sun_path holds 108 bytes with the terminating NUL.
    if socket.as_os_str().len() > 107 {
        return Err(invalid(format!(
            "the socket path {} is longer than 107 bytes",
            socket.display()
        )));
    }
    Ok(())
}

/// The end of the shim's log, for an error message.
fn tail(path: &Path) -> String {
    let mut text = String::new();
    if let Ok(file) = File::open(path) {
        let _ = file.take(1 << 20).read_to_string(&mut text);
    }
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(5)..].join("\n")
}

/// Writes the report line on stdout; the exit code of a shim that failed.
pub(crate) fn report(result: &Result<serde_json::Value>) -> i32 {
    let response = match result {
        Ok(value) => Response::Ok(value.clone()),
        Err(e) => Response::Error(ErrorReply::from(e)),
    };
    let mut stdout = io::stdout().lock();
    let _ = stdout
        .write_all(&response.to_line())
        .and_then(|()| stdout.flush());
    i32::from(result.is_err())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn state_dirs_must_be_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))
            .expect("chmod");
        check_state_dir(dir.path()).expect("0700 is fine");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        assert!(check_state_dir(dir.path()).is_err());
        assert!(check_state_dir(Path::new("relative")).is_err());
        let long = dir.path().join("x".repeat(120));
        std::fs::create_dir(&long).expect("mkdir");
        std::fs::set_permissions(&long, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        assert!(check_state_dir(&long).is_err());
    }
}
