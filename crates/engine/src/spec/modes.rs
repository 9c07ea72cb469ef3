//! The namespace modes of a HostConfig (`--pid`, `--ipc`, `--uts`,
//! `--userns`, `--network`, `--cgroupns`), read once with dockerd's rules.

use bollard_stubs::models::{HostConfig, HostConfigCgroupnsModeEnum};

use super::{CgroupMode, SpecError};

/// A namespace the container gets for itself, shares with the host, or
/// joins from another container.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum NsMode<'a> {
    Private,
    Host,
    Container(&'a str),
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum IpcMode<'a> {
    /// Also the default (`""`), as dockerd's default-ipc-mode.
    Private,
    Shareable,
    /// A namespace of its own without /dev/shm.
    None,
    Host,
    Container(&'a str),
}

fn invalid(what: &'static str, value: &str) -> SpecError {
    SpecError::InvalidNamespaceMode {
        what,
        value: value.to_string(),
    }
}

/// `container:<name|id>` with a non-empty name.
fn container_of(mode: &str) -> Option<&str> {
    mode.strip_prefix("container:").filter(|id| !id.is_empty())
}

pub(crate) fn pid_mode(hc: &HostConfig) -> Result<NsMode<'_>, SpecError> {
    match hc.pid_mode.as_deref().unwrap_or_default() {
        "" => Ok(NsMode::Private),
        "host" => Ok(NsMode::Host),
        other => container_of(other)
            .map(NsMode::Container)
            .ok_or_else(|| invalid("PID", other)),
    }
}

pub(crate) fn ipc_mode(hc: &HostConfig) -> Result<IpcMode<'_>, SpecError> {
    match hc.ipc_mode.as_deref().unwrap_or_default() {
        "" | "private" => Ok(IpcMode::Private),
        "shareable" => Ok(IpcMode::Shareable),
        "none" => Ok(IpcMode::None),
        "host" => Ok(IpcMode::Host),
        other => container_of(other)
            .map(IpcMode::Container)
            .ok_or_else(|| invalid("IPC", other)),
    }
}

/// `--uts host` shares the host's UTS namespace.
pub(crate) fn uts_host(hc: &HostConfig) -> Result<bool, SpecError> {
    match hc.uts_mode.as_deref().unwrap_or_default() {
        "" => Ok(false),
        "host" => Ok(true),
        other => Err(invalid("UTS", other)),
    }
}

/// No user namespace by default, as dockerd without userns-remap; only
/// `host` (the same thing) is accepted besides.
pub(crate) fn check_userns(hc: &HostConfig) -> Result<(), SpecError> {
    match hc.userns_mode.as_deref().unwrap_or_default() {
        "" | "host" => Ok(()),
        other => Err(invalid("USER", other)),
    }
}

/// `none`, `bridge`, `default` and user-defined networks get a network
/// namespace of their own; `host` none; `container:<id>` joins.
pub(crate) fn net_mode(hc: &HostConfig) -> Result<NsMode<'_>, SpecError> {
    match hc.network_mode.as_deref().unwrap_or_default() {
        "host" => Ok(NsMode::Host),
        "container" => Err(invalid_container_network()),
        other if other.starts_with("container:") => container_of(other)
            .map(NsMode::Container)
            .ok_or_else(invalid_container_network),
        _ => Ok(NsMode::Private),
    }
}

fn invalid_container_network() -> SpecError {
    SpecError::InvalidNamespaceMode {
        what: "network",
        value: "invalid container format container:<name|id>".to_string(),
    }
}

/// Whether the container gets its own cgroup namespace: as asked, else only
/// on a pure cgroup v2 host (dockerd's default-cgroupns-mode).
pub(crate) fn cgroupns_private(hc: &HostConfig, layout: CgroupMode) -> bool {
    match hc.cgroupns_mode {
        Some(HostConfigCgroupnsModeEnum::PRIVATE) => true,
        Some(HostConfigCgroupnsModeEnum::HOST) => false,
        _ => layout == CgroupMode::V2,
    }
}
