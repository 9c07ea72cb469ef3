//! Facts about the host and the engine that `docker version` and
//! `docker info` show.

use std::path::Path;

use crate::error::{Error, Result};

pub const API_VERSION: &str = "1.50";
pub const MIN_API_VERSION: &str = "1.24";
pub const ENGINE_VERSION: &str = env!("CARGO_PKG_VERSION");

/// A stable id for this engine, kept in the data root (dockerd's `ID` in `info`).
pub fn engine_id(data_root: &Path) -> Result<String> {
    let path = data_root.join("engine-id");
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => return Ok(id.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(format!("read {}", path.display()), e)),
    }
    let random = std::fs::read("/proc/sys/kernel/random/uuid")
        .map_err(|e| Error::io("read a random uuid", e))?;
    let id = String::from_utf8_lossy(&random).trim().to_string();
    let tmp = data_root.join(".engine-id.tmp");
    std::fs::write(&tmp, &id).map_err(|e| Error::io(format!("write {}", tmp.display()), e))?;
    std::fs::rename(&tmp, &path).map_err(|e| Error::io(format!("write {}", path.display()), e))?;
    Ok(id)
}

/// Host facts for `info`.
#[derive(Debug, Clone)]
pub struct HostInfo {
    pub hostname: String,
    pub kernel_version: String,
    pub operating_system: String,
    pub architecture: String,
    pub ncpu: i64,
    pub mem_total: i64,
    pub cgroup_version: &'static str,
}

pub fn host_info() -> HostInfo {
    let uts = nix::sys::utsname::uname().ok();
    let field = |f: fn(&nix::sys::utsname::UtsName) -> &std::ffi::OsStr| {
        uts.as_ref()
            .map(|u| f(u).to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let os_release = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    let operating_system = os_release
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_else(|| "Linux".to_string());
    let mem_total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<i64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or_default();
    let cgroup_version = if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        "2"
    } else {
        "1"
    };
    HostInfo {
        hostname: field(|u| u.nodename()),
        kernel_version: field(|u| u.release()),
        operating_system,
        architecture: field(|u| u.machine()),
        ncpu: std::thread::available_parallelism()
            .map(|n| n.get() as i64)
            .unwrap_or(1),
        mem_total,
        cgroup_version,
    }
}

/// Go's GOARCH name for the host architecture, as Docker reports it.
pub fn go_arch(machine: &str) -> &str {
    match machine {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "armv7l" => "arm",
        "i686" | "i386" => "386",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_id_is_stable_across_opens() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = engine_id(dir.path()).expect("id");
        let b = engine_id(dir.path()).expect("id again");
        assert_eq!(a, b);
        assert_eq!(a.len(), 36);
    }

    #[test]
    fn host_info_reads_this_machine() {
        let h = host_info();
        assert!(h.ncpu >= 1);
        assert!(h.mem_total > 0);
        assert!(!h.kernel_version.is_empty());
    }
}
