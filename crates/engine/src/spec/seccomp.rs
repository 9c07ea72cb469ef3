//! linux.seccomp: Docker's default profile (Berth's own table of it lives in
//! `berth_sys::seccomp`, next to the compiler that loads it), none for
//! `--privileged` or `seccomp=unconfined`, or a profile in Docker's JSON
//! format as the docker CLI sends it (`seccomp=<file content>`), with its
//! per-architecture, per-capability and minimum-kernel conditions applied.

use std::path::PathBuf;

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag, LinuxSyscall,
};
use serde::Deserialize;

use super::SpecError;

/// How many distinct syscall names Docker's default profile allows whatever
/// the container's capabilities and without argument conditions: the 361
/// names of the main block, process_vm_readv, process_vm_writev and ptrace
/// (kernel ≥ 4.8), and the architecture's own (arch_prctl and modify_ldt on
/// x86_64; six ARM calls on aarch64). A change to the profile changes this.
#[cfg(not(target_arch = "aarch64"))]
pub const DEFAULT_SECCOMP_ALLOWED_SYSCALLS: usize = 366;
#[cfg(target_arch = "aarch64")]
pub const DEFAULT_SECCOMP_ALLOWED_SYSCALLS: usize = 370;

/// Docker's default profile for a container whose bounding set is
/// `capabilities`: CAP_SYS_ADMIN unlocks mount, unshare, setns, clone with
/// namespace flags and clone3; CAP_SYS_PTRACE kcmp, pidfd_getfd, …
pub fn default_seccomp_profile(capabilities: &[String]) -> LinuxSeccomp {
    berth_sys::seccomp::default_docker_profile_for(capabilities)
}

/// The profile for `--security-opt seccomp=<value>` (`None` = not given).
pub(crate) fn for_container(
    option: Option<&str>,
    privileged: bool,
    capabilities: &[String],
    kernel: (u32, u32),
) -> Result<Option<LinuxSeccomp>, SpecError> {
    match option {
        Some("unconfined") => Ok(None),
        None | Some("") if privileged => Ok(None),
        None | Some("") | Some("builtin") => Ok(Some(default_seccomp_profile(capabilities))),
        Some(json) => from_docker_json(json, capabilities, kernel).map(Some),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DockerProfile {
    default_action: LinuxSeccompAction,
    #[serde(default)]
    default_errno_ret: Option<u32>,
    #[serde(default)]
    architectures: Option<Vec<Arch>>,
    #[serde(default)]
    arch_map: Option<Vec<ArchMap>>,
    #[serde(default)]
    syscalls: Option<Vec<DockerSyscall>>,
    #[serde(default)]
    flags: Option<Vec<LinuxSeccompFilterFlag>>,
    #[serde(default)]
    listener_path: Option<PathBuf>,
    #[serde(default)]
    listener_metadata: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ArchMap {
    architecture: Arch,
    #[serde(default)]
    sub_architectures: Option<Vec<Arch>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DockerSyscall {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    names: Option<Vec<String>>,
    action: LinuxSeccompAction,
    #[serde(default)]
    errno_ret: Option<u32>,
    #[serde(default)]
    args: Option<Vec<LinuxSeccompArg>>,
    #[serde(default)]
    includes: Option<Filter>,
    #[serde(default)]
    excludes: Option<Filter>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Filter {
    #[serde(default)]
    caps: Option<Vec<String>>,
    #[serde(default)]
    arches: Option<Vec<String>>,
    #[serde(default)]
    min_kernel: Option<String>,
}

/// Go's GOARCH for this build, the name Docker profiles use in `arches`.
const GO_ARCH: &str = if cfg!(target_arch = "aarch64") {
    "arm64"
} else if cfg!(target_arch = "x86") {
    "386"
} else {
    "amd64"
};

const NATIVE_ARCH: Arch = if cfg!(target_arch = "aarch64") {
    Arch::ScmpArchAarch64
} else {
    Arch::ScmpArchX86_64
};

/// `6.18.44-foo` → (6, 18).
pub(crate) fn parse_kernel_version(v: &str) -> Option<(u32, u32)> {
    let mut parts = v.split('.');
    let num = |p: Option<&str>| -> Option<u32> {
        let p = p?;
        let end = p.find(|c: char| !c.is_ascii_digit()).unwrap_or(p.len());
        p[..end].parse().ok()
    };
    Some((num(parts.next())?, num(parts.next())?))
}

fn kernel_at_least(min: &str, kernel: (u32, u32)) -> Result<bool, SpecError> {
    let want = parse_kernel_version(min).ok_or_else(|| {
        SpecError::InvalidSeccompProfile(format!("invalid kernel version: {min}"))
    })?;
    Ok(kernel >= want)
}

fn from_docker_json(
    json: &str,
    capabilities: &[String],
    kernel: (u32, u32),
) -> Result<LinuxSeccomp, SpecError> {
    let bad = |why: String| SpecError::InvalidSeccompProfile(why);
    let profile: DockerProfile = serde_json::from_str(json)
        .map_err(|e| bad(format!("Decoding seccomp profile failed: {e}")))?;
    let mut out = LinuxSeccomp::default();
    out.set_default_action(profile.default_action);
    out.set_default_errno_ret(profile.default_errno_ret);
    out.set_flags(profile.flags);
    out.set_listener_path(profile.listener_path);
    out.set_listener_metadata(profile.listener_metadata);

    let legacy = profile.architectures.unwrap_or_default();
    let arch_map = profile.arch_map.unwrap_or_default();
    if !legacy.is_empty() && !arch_map.is_empty() {
        return Err(bad("both 'architectures' and 'archMap' are specified in the seccomp profile, use either 'architectures' or 'archMap'".to_string()));
    }
    let mut arches = legacy;
    for entry in arch_map {
        if entry.architecture == NATIVE_ARCH {
            arches.push(entry.architecture);
            arches.extend(entry.sub_architectures.unwrap_or_default());
        }
    }
    out.set_architectures((!arches.is_empty()).then_some(arches));

    let has_cap = |c: &String| capabilities.contains(c);
    let mut syscalls = Vec::new();
    for call in profile.syscalls.unwrap_or_default() {
        let names = match (call.name, call.names) {
            (Some(n), Some(list)) if !n.is_empty() && !list.is_empty() => {
                return Err(bad("use 'name' or 'names',but not both".to_string()))
            }
            (Some(n), _) if !n.is_empty() => vec![n],
            (_, list) => list.unwrap_or_default(),
        };
        let ex = call.excludes.unwrap_or_default();
        if ex.arches.iter().flatten().any(|a| a == GO_ARCH)
            || ex.caps.iter().flatten().any(has_cap)
            || ex
                .min_kernel
                .as_deref()
                .map(|m| kernel_at_least(m, kernel))
                .transpose()?
                .unwrap_or(false)
        {
            continue;
        }
        let inc = call.includes.unwrap_or_default();
        let arches = inc.arches.unwrap_or_default();
        if (!arches.is_empty() && !arches.iter().any(|a| a == GO_ARCH))
            || !inc.caps.iter().flatten().all(has_cap)
            || !inc
                .min_kernel
                .as_deref()
                .map(|m| kernel_at_least(m, kernel))
                .transpose()?
                .unwrap_or(true)
        {
            continue;
        }
        let mut entry = LinuxSyscall::default();
        entry.set_names(names);
        entry.set_action(call.action);
        entry.set_errno_ret(call.errno_ret);
        entry.set_args(call.args.filter(|a| !a.is_empty()));
        syscalls.push(entry);
    }
    out.set_syscalls(Some(syscalls));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use oci_spec::runtime::LinuxSeccompOperator;

    use super::*;

    fn entries<'a>(p: &'a LinuxSeccomp, name: &str) -> Vec<&'a LinuxSyscall> {
        p.syscalls()
            .iter()
            .flatten()
            .filter(|s| s.names().iter().any(|n| n == name))
            .collect()
    }

    fn unconditional(p: &LinuxSeccomp) -> BTreeSet<String> {
        p.syscalls()
            .iter()
            .flatten()
            .filter(|s| s.action() == LinuxSeccompAction::ScmpActAllow && s.args().is_none())
            .flat_map(|s| s.names().clone())
            .collect()
    }

    #[test]
    fn allowed_syscall_count_is_pinned() {
        let p = default_seccomp_profile(&[]);
        assert_eq!(unconditional(&p).len(), DEFAULT_SECCOMP_ALLOWED_SYSCALLS);
        assert_eq!(p.default_action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(p.default_errno_ret(), Some(1));
        #[cfg(target_arch = "x86_64")]
        assert_eq!(
            p.architectures().clone().unwrap_or_default(),
            [Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32]
        );
    }

    #[test]
    fn argument_filters() {
        let p = default_seccomp_profile(&berth_sys::capabilities::default_docker_caps());
        let mut personas: Vec<u64> = entries(&p, "personality")
            .iter()
            .map(|s| {
                let args = s.args().clone().unwrap_or_default();
                assert_eq!(args.len(), 1);
                assert_eq!(args[0].op(), LinuxSeccompOperator::ScmpCmpEq);
                args[0].value()
            })
            .collect();
        personas.sort();
        assert_eq!(personas, [0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff]);

        let clone = entries(&p, "clone");
        assert_eq!(clone.len(), 1);
        let args = clone[0].args().clone().unwrap_or_default();
        assert_eq!(args[0].op(), LinuxSeccompOperator::ScmpCmpMaskedEq);
        assert_eq!(
            (args[0].value(), args[0].value_two()),
            (0x7E02_0000, Some(0))
        );
        let clone3 = entries(&p, "clone3");
        assert_eq!(clone3.len(), 1);
        assert_eq!(clone3[0].action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(clone3[0].errno_ret(), Some(nix::libc::ENOSYS as u32));

        // AF_VSOCK (40) matches none of the socket rules, so socket(40, …) is refused.
        let socket = entries(&p, "socket");
        assert!(!socket.is_empty());
        let allows = |family: u64| {
            socket.iter().any(|s| {
                s.args().iter().flatten().all(|a| match a.op() {
                    LinuxSeccompOperator::ScmpCmpEq => family == a.value(),
                    LinuxSeccompOperator::ScmpCmpNe => family != a.value(),
                    LinuxSeccompOperator::ScmpCmpLt => family < a.value(),
                    LinuxSeccompOperator::ScmpCmpGt => family > a.value(),
                    _ => false,
                })
            })
        };
        assert!(!allows(40));
        assert!(allows(1) && allows(2) && allows(10) && allows(16));
        for gated in [
            "mount",
            "umount2",
            "unshare",
            "setns",
            "reboot",
            "init_module",
            "bpf",
        ] {
            assert!(!unconditional(&p).contains(gated), "{gated}");
        }
        assert!(unconditional(&p).contains("chroot"));
    }

    #[test]
    fn capabilities_unlock_their_groups() {
        let mut caps = berth_sys::capabilities::default_docker_caps();
        caps.push("CAP_SYS_ADMIN".to_string());
        caps.push("CAP_SYS_PTRACE".to_string());
        let p = default_seccomp_profile(&caps);
        let allowed = unconditional(&p);
        for name in [
            "mount", "umount2", "unshare", "setns", "clone", "clone3", "kcmp",
        ] {
            assert!(allowed.contains(name), "{name}");
        }
        assert!(entries(&p, "clone3")
            .iter()
            .all(|s| s.action() == LinuxSeccompAction::ScmpActAllow));
    }

    #[test]
    fn privileged_and_unconfined_get_none() {
        let caps = berth_sys::capabilities::default_docker_caps();
        assert!(for_container(Some("unconfined"), false, &caps, (6, 1))
            .expect("u")
            .is_none());
        assert!(for_container(None, true, &caps, (6, 1))
            .expect("p")
            .is_none());
        assert!(for_container(None, false, &caps, (6, 1))
            .expect("d")
            .is_some());
        assert!(for_container(Some("builtin"), false, &caps, (6, 1))
            .expect("b")
            .is_some());
    }

    #[test]
    fn docker_format_profiles_apply_their_conditions() {
        let json = format!(
            r#"{{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":1,
            "archMap":[{{"architecture":"SCMP_ARCH_X86_64","subArchitectures":["SCMP_ARCH_X86"]}},
                       {{"architecture":"SCMP_ARCH_AARCH64","subArchitectures":["SCMP_ARCH_ARM"]}}],
            "syscalls":[
              {{"names":["read","write"],"action":"SCMP_ACT_ALLOW","args":[],"comment":"","includes":{{}},"excludes":{{}}}},
              {{"name":"ptrace","action":"SCMP_ACT_ALLOW","includes":{{"minKernel":"4.8"}}}},
              {{"names":["future"],"action":"SCMP_ACT_ALLOW","includes":{{"minKernel":"99.0"}}}},
              {{"names":["mount"],"action":"SCMP_ACT_ALLOW","includes":{{"caps":["CAP_SYS_ADMIN"]}}}},
              {{"names":["clone"],"action":"SCMP_ACT_ALLOW","excludes":{{"caps":["CAP_SYS_ADMIN"]}},
                "args":[{{"index":0,"value":2114060288,"valueTwo":0,"op":"SCMP_CMP_MASKED_EQ"}}]}},
              {{"names":["native_only"],"action":"SCMP_ACT_ALLOW","includes":{{"arches":["{GO_ARCH}"]}}}},
              {{"names":["s390_only"],"action":"SCMP_ACT_ALLOW","includes":{{"arches":["s390x"]}}}}
            ]}}"#
        );
        let caps = berth_sys::capabilities::default_docker_caps();
        let p = for_container(Some(&json), false, &caps, (6, 1))
            .expect("profile")
            .expect("some");
        let names: Vec<String> = p
            .syscalls()
            .iter()
            .flatten()
            .flat_map(|s| s.names().clone())
            .collect();
        assert_eq!(names, ["read", "write", "ptrace", "clone", "native_only"]);
        assert_eq!(p.architectures().as_ref().map(Vec::len), Some(2));
        let mut admin = caps.clone();
        admin.push("CAP_SYS_ADMIN".into());
        let p = from_docker_json(&json, &admin, (6, 1)).expect("admin");
        let names: Vec<String> = p
            .syscalls()
            .iter()
            .flatten()
            .flat_map(|s| s.names().clone())
            .collect();
        assert!(names.contains(&"mount".to_string()) && !names.contains(&"clone".to_string()));
        // A privileged container still gets a profile it names.
        assert!(for_container(Some(&json), true, &caps, (6, 1))
            .expect("p")
            .is_some());
    }

    #[test]
    fn bad_profiles_are_named() {
        let err = from_docker_json("{", &[], (6, 1))
            .expect_err("json")
            .to_string();
        assert!(
            err.starts_with("Decoding seccomp profile failed: "),
            "{err}"
        );
        let both = r#"{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_X86"],
            "archMap":[{"architecture":"SCMP_ARCH_X86_64"}]}"#;
        assert!(from_docker_json(both, &[], (6, 1))
            .expect_err("both")
            .to_string()
            .starts_with("both 'architectures' and 'archMap'"));
        assert_eq!(parse_kernel_version("6.18.44-fc-v657"), Some((6, 18)));
        assert_eq!(parse_kernel_version("4"), None);
    }
}
