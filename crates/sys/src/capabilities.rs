//! The five capability sets of a container process (OCI `process.capabilities`).
//!
//! Order in the runtime: `set_keep_caps(true)`, setgid/setgroups/setuid,
//! `apply`, `set_keep_caps(false)`, exec. `apply` first raises the effective set
//! to whatever is still permitted, so it works after a switch to a non-root user
//! as long as the permitted set was kept.

use std::collections::BTreeSet;
use std::str::FromStr;

pub use caps::Capability;
use nix::errno::Errno;
use oci_spec::runtime::{Capabilities, LinuxCapabilities};

#[derive(Debug, thiserror::Error)]
pub enum CapError {
    #[error("unknown capability `{0}` (expected a name such as CAP_CHOWN)")]
    Unknown(String),
    #[error("capabilities: {call} failed: {errno}")]
    Syscall { call: &'static str, errno: Errno },
    #[error(
        "capabilities: cannot reduce the bounding set without CAP_SETPCAP in the permitted set"
    )]
    CannotDropBounding,
}

/// What `apply` could not grant: capabilities this kernel lacks or the calling
/// process does not hold itself (SECURITY.md: privileged grants what exists).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct AppliedCaps {
    pub skipped: BTreeSet<String>,
}

/// Docker's 14 default capabilities (moby `oci/caps/defaults.go`), as named in an OCI config.
const DOCKER_DEFAULT_CAPS: &[Capability] = &[
    Capability::CAP_CHOWN,
    Capability::CAP_DAC_OVERRIDE,
    Capability::CAP_FSETID,
    Capability::CAP_FOWNER,
    Capability::CAP_MKNOD,
    Capability::CAP_NET_RAW,
    Capability::CAP_SETGID,
    Capability::CAP_SETUID,
    Capability::CAP_SETFCAP,
    Capability::CAP_SETPCAP,
    Capability::CAP_NET_BIND_SERVICE,
    Capability::CAP_SYS_CHROOT,
    Capability::CAP_KILL,
    Capability::CAP_AUDIT_WRITE,
];

/// Parses `CAP_CHOWN`, `chown` or `Cap_Chown`.
pub fn parse_capability(name: &str) -> Result<Capability, CapError> {
    let upper = name.trim().to_ascii_uppercase();
    let full = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    Capability::from_str(&full).map_err(|_| CapError::Unknown(name.to_string()))
}

pub fn default_docker_caps() -> Vec<String> {
    DOCKER_DEFAULT_CAPS
        .iter()
        .map(Capability::to_string)
        .collect()
}

/// Every capability this crate knows, lowest number first; what `--privileged`
/// asks for (the kernel may lack the newest ones; `apply` skips those).
pub fn all_known_caps() -> Vec<String> {
    let mut all: Vec<Capability> = caps::all().into_iter().collect();
    all.sort_by_key(Capability::index);
    all.iter().map(Capability::to_string).collect()
}

/// Sets or clears PR_SET_KEEPCAPS, which keeps the permitted set across a
/// setuid from root to another user.
pub fn set_keep_caps(keep: bool) -> Result<(), CapError> {
    // SAFETY: PR_SET_KEEPCAPS takes an integer and touches no memory of ours.
    let ret = unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, libc::c_ulong::from(keep), 0, 0, 0) };
    check(ret, "prctl(PR_SET_KEEPCAPS)")
}

/// Sets bounding, permitted, effective, inheritable and ambient sets of the
/// calling thread to `wanted` (a missing set means empty). Capabilities the
/// kernel does not have, or that the process does not hold, are skipped and
/// reported; nothing is ever granted beyond what the process already has.
pub fn apply(wanted: &LinuxCapabilities) -> Result<AppliedCaps, CapError> {
    let want = |set: &Option<Capabilities>| -> Result<u64, CapError> {
        set.iter()
            .flatten()
            .map(|cap| parse_capability(&cap.to_string()).map(|cap| cap.bitmask()))
            .try_fold(0, |mask, bit| Ok(mask | bit?))
    };
    let want_bounding = want(wanted.bounding())?;
    let want_permitted = want(wanted.permitted())?;
    let want_effective = want(wanted.effective())?;
    let want_inheritable = want(wanted.inheritable())?;
    let want_ambient = want(wanted.ambient())?;

    let kernel = kernel_caps_mask();
    let old = capget()?;
    let old_bounding = bounding_mask(kernel);

    // Raise effective to the whole permitted set so CAP_SETPCAP, if still
    // permitted, is usable for the bounding drops (after a setuid to a non-root
    // user the kernel cleared effective).
    capset(SetMasks {
        effective: old.permitted,
        ..old
    })?;

    let new_bounding = old_bounding & want_bounding;
    let to_drop = old_bounding & !want_bounding;
    if to_drop != 0 && old.permitted & Capability::CAP_SETPCAP.bitmask() == 0 {
        return Err(CapError::CannotDropBounding);
    }
    for cap in bits(to_drop) {
        // SAFETY: PR_CAPBSET_DROP takes a capability number and touches no memory of ours.
        let ret = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(cap), 0, 0, 0) };
        check(ret, "prctl(PR_CAPBSET_DROP)")?;
    }

    // The kernel allows new inheritable bits only from the old inheritable set
    // plus the bounding set (with CAP_SETPCAP) or the permitted set (without).
    let inheritable_source = if old.permitted & Capability::CAP_SETPCAP.bitmask() != 0 {
        new_bounding
    } else {
        new_bounding & old.permitted
    };
    let permitted = want_permitted & old.permitted;
    let new = SetMasks {
        permitted,
        effective: want_effective & permitted,
        inheritable: want_inheritable & (old.inheritable | inheritable_source),
    };
    capset(new)?;

    let ambient = want_ambient & new.permitted & new.inheritable;
    // SAFETY: PR_CAP_AMBIENT takes integers and touches no memory of ours.
    let ret = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    check(ret, "prctl(PR_CAP_AMBIENT_CLEAR_ALL)")?;
    for cap in bits(ambient) {
        // SAFETY: as above; the capability is in permitted and inheritable.
        let ret = unsafe {
            libc::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
                libc::c_ulong::from(cap),
                0,
                0,
            )
        };
        check(ret, "prctl(PR_CAP_AMBIENT_RAISE)")?;
    }

    let missing = (want_bounding & !new_bounding)
        | (want_permitted & !new.permitted)
        | (want_effective & !new.effective)
        | (want_inheritable & !new.inheritable)
        | (want_ambient & !ambient);
    Ok(AppliedCaps {
        skipped: bits(missing).map(cap_name).collect(),
    })
}

fn cap_name(bit: u8) -> String {
    caps::all()
        .into_iter()
        .find(|cap| cap.index() == bit)
        .map_or_else(|| format!("capability {bit}"), |cap| cap.to_string())
}

fn bits(mask: u64) -> impl Iterator<Item = u8> {
    (0..64u8).filter(move |bit| mask & (1 << bit) != 0)
}

fn check(ret: libc::c_int, call: &'static str) -> Result<(), CapError> {
    if ret < 0 {
        Err(CapError::Syscall {
            call,
            errno: Errno::last(),
        })
    } else {
        Ok(())
    }
}

/// Capabilities this kernel knows: PR_CAPBSET_READ fails with EINVAL past the last one.
fn kernel_caps_mask() -> u64 {
    let mut mask = 0;
    for cap in 0..64u8 {
        // SAFETY: PR_CAPBSET_READ takes a capability number and touches no memory of ours.
        let ret = unsafe { libc::prctl(libc::PR_CAPBSET_READ, libc::c_ulong::from(cap), 0, 0, 0) };
        if ret < 0 {
            break;
        }
        mask |= 1 << cap;
    }
    mask
}

fn bounding_mask(kernel: u64) -> u64 {
    bits(kernel)
        .filter(|&cap| {
            // SAFETY: as in kernel_caps_mask.
            let ret =
                unsafe { libc::prctl(libc::PR_CAPBSET_READ, libc::c_ulong::from(cap), 0, 0, 0) };
            ret == 1
        })
        .fold(0, |mask, cap| mask | 1 << cap)
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapUserHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Default, Clone, Copy)]
struct CapUserData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

#[derive(Debug, Clone, Copy)]
struct SetMasks {
    permitted: u64,
    effective: u64,
    inheritable: u64,
}

fn capget() -> Result<SetMasks, CapError> {
    let mut header = CapUserHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [CapUserData::default(); 2];
    // SAFETY: version 3 makes the kernel write exactly two CapUserData, which `data` holds.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_capget,
            &mut header as *mut CapUserHeader,
            data.as_mut_ptr(),
        )
    };
    check(ret as libc::c_int, "capget")?;
    let join = |low: u32, high: u32| u64::from(low) | u64::from(high) << 32;
    Ok(SetMasks {
        permitted: join(data[0].permitted, data[1].permitted),
        effective: join(data[0].effective, data[1].effective),
        inheritable: join(data[0].inheritable, data[1].inheritable),
    })
}

fn capset(masks: SetMasks) -> Result<(), CapError> {
    let mut header = CapUserHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    // Truncation splits each 64-bit mask into its two 32-bit halves.
    let data = [
        CapUserData {
            effective: masks.effective as u32,
            permitted: masks.permitted as u32,
            inheritable: masks.inheritable as u32,
        },
        CapUserData {
            effective: (masks.effective >> 32) as u32,
            permitted: (masks.permitted >> 32) as u32,
            inheritable: (masks.inheritable >> 32) as u32,
        },
    ];
    // SAFETY: version 3 makes the kernel read exactly two CapUserData from `data`.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_capset,
            &mut header as *mut CapUserHeader,
            data.as_ptr(),
        )
    };
    check(ret as libc::c_int, "capset")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_with_or_without_prefix() {
        for name in ["CAP_CHOWN", "chown", "Cap_Chown", " CHOWN "] {
            assert_eq!(parse_capability(name).expect(name), Capability::CAP_CHOWN);
        }
        assert_eq!(
            parse_capability("cap_sys_admin").expect("sys_admin"),
            Capability::CAP_SYS_ADMIN
        );
    }

    #[test]
    fn unknown_name_is_named_in_the_error() {
        let err = parse_capability("CAP_FLY").expect_err("no such capability");
        assert!(err.to_string().contains("CAP_FLY"), "{err}");
        assert!(parse_capability("").is_err());
    }

    #[test]
    fn docker_defaults_make_the_known_mask() {
        let caps = default_docker_caps();
        assert_eq!(caps.len(), 14);
        let mask = caps
            .iter()
            .map(|name| parse_capability(name).expect(name).bitmask())
            .fold(0, |mask, bit| mask | bit);
        // CapEff of a default Docker container in /proc/self/status.
        assert_eq!(mask, 0xa804_25fb);
    }

    #[test]
    fn all_known_caps_are_ordered_and_parse() {
        let all = all_known_caps();
        assert_eq!(all.first().map(String::as_str), Some("CAP_CHOWN"));
        assert!(all.len() >= 41, "{all:?}");
        for name in &all {
            parse_capability(name).expect(name);
        }
        // Every name an OCI config can carry maps to one of ours.
        for name in &all {
            let oci: oci_spec::runtime::Capability =
                serde_json::from_str(&format!("\"{name}\"")).expect(name);
            assert_eq!(
                parse_capability(&oci.to_string()).expect(name).to_string(),
                *name
            );
        }
    }
}
