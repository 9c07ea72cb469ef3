//! Capability sets: Docker's 14 defaults tweaked by `--cap-add`/`--cap-drop`
//! (`ALL`, with or without `CAP_`, any case), `--privileged` = everything
//! the daemon holds.

use bollard_stubs::models::HostConfig;
use oci_spec::runtime::{Capabilities, Capability};

use berth_sys::capabilities::{all_known_caps, default_docker_caps, parse_capability};

use super::SpecError;

const ALL: &str = "ALL";

/// `chown`, `Cap_Chown` → `CAP_CHOWN`; `all` → `ALL`.
pub(crate) fn normalize(name: &str) -> String {
    let upper = name.trim().to_ascii_uppercase();
    if upper == ALL || upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    }
}

/// Normalizes a CapAdd/CapDrop list; names the kernel ABI does not have are
/// refused (`unknown capability: "CAP_FOO"`), and with `host` given, so are
/// the ones the daemon does not hold, as dockerd 28 does.
pub(crate) fn normalize_list(
    which: &'static str,
    names: &[String],
    host: Option<&[String]>,
) -> Result<Vec<String>, SpecError> {
    let known = all_known_caps();
    names
        .iter()
        .map(|name| {
            let cap = normalize(name);
            if cap == ALL {
                return Ok(cap);
            }
            if !known.contains(&cap) {
                return Err(SpecError::InvalidCapability {
                    which,
                    why: format!("unknown capability: {cap:?}"),
                });
            }
            if host.is_some_and(|host| !host.contains(&cap)) {
                return Err(SpecError::InvalidCapability {
                    which,
                    why: format!(
                        "capability not supported by your kernel or not available in the current environment: {cap:?}"
                    ),
                });
            }
            Ok(cap)
        })
        .collect()
}

/// The container's capability list (bounding set), in a stable order.
pub(crate) fn container_capabilities(
    hc: &HostConfig,
    host: &[String],
) -> Result<Vec<String>, SpecError> {
    if hc.privileged.unwrap_or(false) {
        return Ok(host.to_vec());
    }
    let adds = normalize_list(
        "CapAdd",
        hc.cap_add.as_deref().unwrap_or_default(),
        Some(host),
    )?;
    let drops = normalize_list(
        "CapDrop",
        hc.cap_drop.as_deref().unwrap_or_default(),
        Some(host),
    )?;
    let mut caps: Vec<String> = if adds.iter().any(|c| c == ALL) {
        host.iter()
            .filter(|c| !drops.contains(c))
            .cloned()
            .collect()
    } else if drops.iter().any(|c| c == ALL) {
        adds
    } else {
        let mut caps: Vec<String> = default_docker_caps()
            .into_iter()
            .filter(|c| !drops.contains(c))
            .collect();
        caps.extend(adds);
        caps
    };
    let mut seen = std::collections::BTreeSet::new();
    caps.retain(|c| seen.insert(c.clone()));
    Ok(caps)
}

/// The set as oci-spec values; names oci-spec does not know (newer than it)
/// are left out.
pub(crate) fn to_oci(names: &[String]) -> Capabilities {
    names
        .iter()
        .filter_map(|name| serde_json::from_value::<Capability>(name.clone().into()).ok())
        .collect()
}

/// `CAP_` names of the bits set in a capability mask, lowest bit first;
/// bits this build does not know are left out.
pub fn capability_names_from_mask(mask: u64) -> Vec<String> {
    all_known_caps()
        .into_iter()
        .filter(|name| {
            parse_capability(name)
                .map(|cap| cap.index() < 64 && mask & (1u64 << cap.index()) != 0)
                .unwrap_or(false)
        })
        .collect()
}

/// The capabilities a process may pass on, from /proc/<pid>/status text:
/// its bounding set intersected with its effective set.
pub fn capabilities_from_status(status: &str) -> Vec<String> {
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            .unwrap_or(0)
    };
    capability_names_from_mask(field("CapBnd:") & field("CapEff:"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_masks_name_the_capabilities() {
        // This machine's root: everything up to CAP_CHECKPOINT_RESTORE but
        // CAP_SYS_RESOURCE (bit 24).
        let status = "Name:\tx\nCapInh:\t0000000000000000\nCapPrm:\t000001fffeffffff\n\
                      CapEff:\t000001fffeffffff\nCapBnd:\t000001fffeffffff\nCapAmb:\t0000000000000000\n";
        let caps = capabilities_from_status(status);
        assert_eq!(caps.len(), 40);
        assert!(!caps.contains(&"CAP_SYS_RESOURCE".to_string()));
        assert!(caps.contains(&"CAP_CHECKPOINT_RESTORE".to_string()));
        assert_eq!(caps[0], "CAP_CHOWN");
        // Docker's default CapEff names exactly its 14 defaults.
        let mut defaults = capability_names_from_mask(0xa80425fb);
        let mut expected = default_docker_caps();
        defaults.sort();
        expected.sort();
        assert_eq!(defaults, expected);
    }

    #[test]
    fn names_are_normalized() {
        assert_eq!(normalize("net_admin"), "CAP_NET_ADMIN");
        assert_eq!(normalize("Cap_Chown"), "CAP_CHOWN");
        assert_eq!(normalize("all"), "ALL");
    }
}
