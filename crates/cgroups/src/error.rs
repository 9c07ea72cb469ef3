//! The one error type of the crate. Every variant names the file, controller
//! or value that failed so a caller can act on it without guessing.

use std::io;
use std::path::PathBuf;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No cgroup v1 or v2 filesystem is mounted.
    #[error("no cgroup filesystem found in {mountinfo}")]
    NoCgroupMounts { mountinfo: PathBuf },

    /// A line of mountinfo or `/proc/<pid>/cgroup` did not have the expected shape.
    #[error("cannot parse {file}: {line:?}")]
    Parse { file: PathBuf, line: String },

    /// linux.cgroupsPath cannot be used.
    #[error("invalid cgroupsPath {path:?}: {reason}")]
    InvalidCgroupsPath { path: String, reason: &'static str },

    /// A resource was requested whose controller is not mounted or not enabled.
    #[error("{resource} requested but the {controller} controller is not available")]
    ControllerUnavailable {
        controller: String,
        resource: String,
    },

    /// A resource value is out of range or malformed; nothing was written.
    #[error("invalid {resource} value {value:?}: {reason}")]
    InvalidValue {
        resource: &'static str,
        value: String,
        reason: &'static str,
    },

    /// A linux.resources.devices entry cannot be turned into a device rule.
    #[error("invalid device rule {rule}: {reason}")]
    InvalidDeviceRule { rule: String, reason: &'static str },

    /// The cgroup2 device program could not be loaded or attached.
    #[error("cannot install the device program on {path}: {source}")]
    DeviceProgram {
        path: PathBuf,
        source: berth_sys::bpf::BpfError,
    },

    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },

    #[error("cannot write {value:?} to {path}: {source}")]
    Write {
        path: PathBuf,
        value: String,
        source: io::Error,
    },

    /// The kernel accepted a write but reads back another value (e.g. cpu.shares clamped).
    #[error("{path} reads back {actual:?} after writing {value:?}")]
    ValueNotApplied {
        path: PathBuf,
        value: String,
        actual: String,
    },

    #[error("cannot create {path}: {source}")]
    CreateDir { path: PathBuf, source: io::Error },

    #[error("cannot remove {path}: {source}")]
    RemoveDir { path: PathBuf, source: io::Error },

    /// The freezer did not reach the wanted state in time.
    #[error("{path} did not become {state} in time")]
    FreezeTimeout { path: PathBuf, state: &'static str },

    #[error("cannot send signal {signal} to pid {pid}: {source}")]
    Signal {
        pid: i32,
        signal: i32,
        source: nix::Error,
    },
}
