//! A container's persistent state under the runtime root (`<root>/<id>/state.json`),
//! the way `state` reports it, and how the live status is derived from the
//! init process and the cgroup.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Context, Error, Result};

pub const OCI_VERSION: &str = "1.2.0";
const STATE_FILE: &str = "state.json";
pub const EXEC_FIFO: &str = "exec.fifo";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Creating,
    Created,
    Running,
    Paused,
    Stopped,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        })
    }
}

/// What is kept on disk for a container between runtime invocations.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerState {
    pub id: String,
    pub pid: i32,
    /// Start time of the init process (field 22 of /proc/<pid>/stat), so a
    /// recycled pid is never mistaken for the container.
    pub pid_start_time: u64,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub created: String,
    #[serde(default)]
    pub owner: String,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// cgroupsPath as given in config.json (None when absent).
    pub cgroups_path: Option<String>,
    /// Set once `start` has run; distinguishes "created" from "running".
    #[serde(default)]
    pub started: bool,
    /// The config's hooks, kept for poststart and poststop.
    #[serde(default)]
    pub hooks: Option<oci_spec::runtime::Hooks>,
}

/// The JSON `state` prints (runc's shape).
#[derive(Debug, Serialize)]
pub struct StateReport<'a> {
    #[serde(rename = "ociVersion")]
    pub oci_version: &'static str,
    pub id: &'a str,
    pub pid: i32,
    pub status: Status,
    pub bundle: &'a Path,
    pub rootfs: &'a Path,
    pub created: &'a str,
    pub owner: &'a str,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: &'a BTreeMap<String, String>,
}

/// The state JSON given to hooks on stdin (the runtime spec's shape).
#[derive(Debug, Serialize)]
pub struct HookState<'a> {
    #[serde(rename = "ociVersion")]
    pub oci_version: &'static str,
    pub id: &'a str,
    pub status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    pub bundle: &'a Path,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: &'a BTreeMap<String, String>,
}

/// Checks a container id the way runc does: not empty, no path separators or
/// dot-only names, only `[A-Za-z0-9_+.-]`.
pub fn validate_id(id: &str) -> Result<()> {
    let bad = |why| {
        Err(Error::InvalidId {
            id: id.to_string(),
            why,
        })
    };
    if id.is_empty() {
        return bad("must not be empty");
    }
    if id == "." || id == ".." {
        return bad("must not be . or ..");
    }
    if id.len() > 1024 {
        return bad("longer than 1024 bytes");
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'+' | b'-' | b'.'))
    {
        return bad("only letters, digits, '_', '+', '-' and '.' are allowed");
    }
    Ok(())
}

pub fn container_dir(root: &Path, id: &str) -> PathBuf {
    root.join(id)
}

impl ContainerState {
    pub fn load(root: &Path, id: &str) -> Result<ContainerState> {
        validate_id(id)?;
        let path = container_dir(root, id).join(STATE_FILE);
        let data = match std::fs::read(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotFound(id.to_string()))
            }
            Err(e) => return Err(e).context(|| format!("read {}", path.display())),
        };
        serde_json::from_slice(&data).map_err(|e| Error::Config {
            path,
            why: e.to_string(),
        })
    }

    /// Writes state.json atomically (temp file, rename). No fsync, as runc:
    /// the state describes live processes, which a power loss ends too
    /// (the root is meant to be on tmpfs); a crashed caller leaves the old
    /// or the new file, never a torn one.
    pub fn save(&self, root: &Path) -> Result<()> {
        let dir = container_dir(root, &self.id);
        let tmp = dir.join(".state.json.tmp");
        let data = serde_json::to_vec(self).map_err(|e| Error::Init(e.to_string()))?;
        std::fs::write(&tmp, data).context(|| format!("write {}", tmp.display()))?;
        std::fs::rename(&tmp, dir.join(STATE_FILE)).context(|| format!("rename {}", tmp.display()))
    }

    pub fn dir(&self, root: &Path) -> PathBuf {
        container_dir(root, &self.id)
    }

    /// True while the recorded init process still exists (and is not a zombie).
    pub fn init_alive(&self) -> bool {
        match process_start_time(self.pid) {
            Some((start, state)) => start == self.pid_start_time && state != 'Z' && state != 'X',
            None => false,
        }
    }

    pub fn report<'a>(&'a self, status: Status) -> StateReport<'a> {
        StateReport {
            oci_version: OCI_VERSION,
            id: &self.id,
            pid: if status == Status::Stopped {
                0
            } else {
                self.pid
            },
            status,
            bundle: &self.bundle,
            rootfs: &self.rootfs,
            created: &self.created,
            owner: &self.owner,
            annotations: &self.annotations,
        }
    }

    pub fn hook_state(&self, status: Status) -> HookState<'_> {
        HookState {
            oci_version: OCI_VERSION,
            id: &self.id,
            status,
            pid: (status != Status::Stopped).then_some(self.pid),
            bundle: &self.bundle,
            annotations: &self.annotations,
        }
    }
}

/// Start time (clock ticks since boot) and state letter of a process, from /proc.
pub fn process_start_time(pid: i32) -> Option<(u64, char)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let state = fields.first()?.chars().next()?;
    let start = fields.get(19)?.parse().ok()?;
    Some((start, state))
}

pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_with_path_parts_are_refused() {
        for bad in ["", ".", "..", "a/b", "../x", "a b", "x\0"] {
            assert!(validate_id(bad).is_err(), "{bad:?} accepted");
        }
        for good in ["abc", "a.b-c_d+e", "0123456789abcdef"] {
            assert!(validate_id(good).is_ok(), "{good:?} refused");
        }
    }

    #[test]
    fn start_time_of_self_is_readable() {
        let (start, state) = process_start_time(std::process::id() as i32).expect("own stat");
        assert!(start > 0);
        assert!(state == 'R' || state == 'S');
    }
}
