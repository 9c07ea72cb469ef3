//! Loading and validating a bundle's config.json before anything on the host
//! is touched, so bad input changes nothing.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::error::{Error, Result};

/// A validated bundle: its spec and the absolute rootfs path.
pub struct Bundle {
    pub dir: PathBuf,
    pub spec: Spec,
    pub rootfs: PathBuf,
}

pub fn load_bundle(dir: &Path) -> Result<Bundle> {
    let dir = std::fs::canonicalize(dir).map_err(|e| Error::Config {
        path: dir.to_path_buf(),
        why: format!("bundle directory: {e}"),
    })?;
    let path = dir.join("config.json");
    let data = std::fs::read(&path).map_err(|e| Error::Config {
        path: path.clone(),
        why: e.to_string(),
    })?;
    // Errors name the offending field (`hostname: invalid type …`), not only
    // its line and column.
    let mut de = serde_json::Deserializer::from_slice(&data);
    let spec: Spec = serde_path_to_error::deserialize(&mut de).map_err(|e| Error::Config {
        path: path.clone(),
        why: match e.path().to_string().as_str() {
            "." | "" => e.inner().to_string(),
            field => format!("{field}: {}", e.inner()),
        },
    })?;
    let rootfs = validate(&dir, &spec)?;
    Ok(Bundle { dir, spec, rootfs })
}

/// Checks everything the runtime relies on; returns the absolute rootfs path.
pub fn validate(bundle: &Path, spec: &Spec) -> Result<PathBuf> {
    let invalid = |m: String| Err(Error::InvalidConfig(m));
    let version = spec.version();
    let mut parts = version.split('.');
    if parts.next() != Some("1") || parts.next().and_then(|m| m.parse::<u32>().ok()).is_none() {
        return invalid(format!(
            "unsupported ociVersion {version:?}: this runtime implements 1.x"
        ));
    }
    let Some(root) = spec.root() else {
        return invalid("root is missing".into());
    };
    let rootfs = if root.path().is_absolute() {
        root.path().clone()
    } else {
        bundle.join(root.path())
    };
    match std::fs::metadata(&rootfs) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return invalid(format!("root.path {} is not a directory", rootfs.display())),
        Err(e) => return invalid(format!("root.path {}: {e}", rootfs.display())),
    }
    let rootfs = std::fs::canonicalize(&rootfs).map_err(|e| Error::Config {
        path: rootfs.clone(),
        why: e.to_string(),
    })?;
    if rootfs == Path::new("/") {
        return invalid("root.path must not be the host's /".into());
    }
    if let Some(process) = spec.process() {
        if !process.cwd().is_absolute() {
            return invalid(format!(
                "process.cwd {:?} must be an absolute path",
                process.cwd()
            ));
        }
        if process.args().as_ref().is_none_or(|a| a.is_empty()) {
            return invalid("process.args must not be empty".into());
        }
    } else {
        return invalid("process is missing".into());
    }
    for m in spec.mounts().iter().flatten() {
        if !m.destination().is_absolute() {
            return invalid(format!(
                "mount destination {:?} is not an absolute path",
                m.destination()
            ));
        }
        if m.destination()
            .components()
            .any(|c| c == std::path::Component::ParentDir)
        {
            return invalid(format!(
                "mount destination {:?} contains '..'",
                m.destination()
            ));
        }
    }
    let Some(linux) = spec.linux() else {
        return invalid("linux section is missing".into());
    };
    let mut seen = Vec::new();
    for ns in linux.namespaces().iter().flatten() {
        if seen.contains(&ns.typ()) {
            return invalid(format!("namespace {} listed twice", ns.typ()));
        }
        seen.push(ns.typ());
        if let Some(p) = ns.path() {
            if !p.is_absolute() {
                return invalid(format!(
                    "namespace {} path {:?} is not absolute",
                    ns.typ(),
                    p
                ));
            }
            if !p.exists() {
                return invalid(format!(
                    "namespace {} path {:?} does not exist",
                    ns.typ(),
                    p
                ));
            }
        }
    }
    let has_userns = seen.contains(&LinuxNamespaceType::User);
    let maps = linux.uid_mappings().as_ref().is_some_and(|m| !m.is_empty())
        || linux.gid_mappings().as_ref().is_some_and(|m| !m.is_empty());
    if maps && !has_userns {
        return invalid("uidMappings/gidMappings given without a user namespace".into());
    }
    if linux.sysctl().as_ref().is_some_and(|s| !s.is_empty())
        && linux
            .sysctl()
            .iter()
            .flatten()
            .any(|(k, _)| k.contains("..") || k.starts_with('/'))
    {
        return invalid("sysctl names must not contain '..' or start with '/'".into());
    }
    for dev in linux.devices().iter().flatten() {
        if !dev.path().starts_with("/dev") {
            return invalid(format!("device path {:?} is not under /dev", dev.path()));
        }
    }
    if let Some(hostname) = spec.hostname() {
        if !hostname.is_empty() && !seen.contains(&LinuxNamespaceType::Uts) {
            return invalid("hostname needs a new UTS namespace".into());
        }
    }
    Ok(rootfs)
}
