//! linux.resources.devices as normalized rules: the lines written to a v1
//! devices cgroup, and the policy a cgroup2 eBPF device program enforces.

use std::fmt;

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

use crate::error::{Error, Result};

/// Which device nodes a rule matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DeviceKind {
    /// Character and block devices.
    All,
    Char,
    Block,
}

/// What a rule allows or denies: read, write, mknod.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DeviceAccess {
    pub read: bool,
    pub write: bool,
    pub mknod: bool,
}

impl DeviceAccess {
    pub const ALL: DeviceAccess = DeviceAccess {
        read: true,
        write: true,
        mknod: true,
    };
}

/// One checked device rule. `None` for major or minor is the wildcard `*`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DeviceRule {
    pub allow: bool,
    pub kind: DeviceKind,
    pub major: Option<u32>,
    pub minor: Option<u32>,
    pub access: DeviceAccess,
}

impl DeviceRule {
    /// Whether this rule matches every device with every access, i.e. it
    /// resets the whole policy to allow-all or deny-all.
    pub fn is_catch_all(&self) -> bool {
        self.kind == DeviceKind::All
            && self.major.is_none()
            && self.minor.is_none()
            && self.access == DeviceAccess::ALL
    }
}

/// The v1 devices.allow / devices.deny line: `c 1:3 rwm`, `a *:* rwm`.
impl fmt::Display for DeviceRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            DeviceKind::All => 'a',
            DeviceKind::Char => 'c',
            DeviceKind::Block => 'b',
        };
        let num = |n: Option<u32>| n.map_or_else(|| "*".to_owned(), |n| n.to_string());
        let mut access = String::new();
        for (on, c) in [
            (self.access.read, 'r'),
            (self.access.write, 'w'),
            (self.access.mknod, 'm'),
        ] {
            if on {
                access.push(c);
            }
        }
        write!(f, "{kind} {}:{} {access}", num(self.major), num(self.minor))
    }
}

/// The device policy a cgroup2 eBPF program enforces: the last rule that
/// matches a device access decides; if none matches, `default_allow` does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DevicePolicy {
    pub default_allow: bool,
    pub rules: Vec<DeviceRule>,
}

/// Checks and normalizes `list` in order: a missing type is `a`, `u` is a
/// character device, a missing access is `rwm`, a negative major/minor is the
/// wildcard, and type `a` always matches every number. FIFOs (`p`) are not
/// device-cgroup devices and are refused.
pub fn device_rules(list: &[LinuxDeviceCgroup]) -> Result<Vec<DeviceRule>> {
    list.iter().map(device_rule).collect()
}

/// Turns `list` into the policy it describes, starting from deny-all (as the
/// v1 code writes `devices.deny a` first): everything up to and including the
/// last catch-all rule is folded into the default.
pub fn device_policy(list: &[LinuxDeviceCgroup]) -> Result<DevicePolicy> {
    let rules = device_rules(list)?;
    let (default_allow, rest) = match rules.iter().rposition(DeviceRule::is_catch_all) {
        Some(i) => (rules[i].allow, rules[i + 1..].to_vec()),
        None => (false, rules),
    };
    Ok(DevicePolicy {
        default_allow,
        rules: rest,
    })
}

fn device_rule(d: &LinuxDeviceCgroup) -> Result<DeviceRule> {
    let describe = || {
        format!(
            "{{allow: {}, type: {}, major: {:?}, minor: {:?}, access: {:?}}}",
            d.allow(),
            d.typ().unwrap_or_default().as_str(),
            d.major(),
            d.minor(),
            d.access()
        )
    };
    let invalid = |reason| Error::InvalidDeviceRule {
        rule: describe(),
        reason,
    };
    let kind = match d.typ().unwrap_or(LinuxDeviceType::A) {
        LinuxDeviceType::A => DeviceKind::All,
        LinuxDeviceType::C | LinuxDeviceType::U => DeviceKind::Char,
        LinuxDeviceType::B => DeviceKind::Block,
        LinuxDeviceType::P => return Err(invalid("FIFOs are not controlled by the device cgroup")),
    };
    let number = |n: Option<i64>| -> Result<Option<u32>> {
        match n {
            None => Ok(None),
            Some(n) if n < 0 => Ok(None),
            Some(n) => u32::try_from(n)
                .map(Some)
                .map_err(|_| invalid("device number out of range")),
        }
    };
    let (major, minor) = if kind == DeviceKind::All {
        (None, None)
    } else {
        (number(d.major())?, number(d.minor())?)
    };
    let access = match d.access().as_deref() {
        None => DeviceAccess::ALL,
        Some("") => return Err(invalid("access is empty (expected letters of \"rwm\")")),
        Some(letters) => {
            let mut access = DeviceAccess {
                read: false,
                write: false,
                mknod: false,
            };
            for c in letters.chars() {
                match c {
                    'r' => access.read = true,
                    'w' => access.write = true,
                    'm' => access.mknod = true,
                    _ => return Err(invalid("access may only contain r, w and m")),
                }
            }
            access
        }
    };
    Ok(DeviceRule {
        allow: d.allow(),
        kind,
        major,
        minor,
        access,
    })
}
