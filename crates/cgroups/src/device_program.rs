//! The cgroup2 device controller: a [`DevicePolicy`] compiled to an eBPF
//! BPF_PROG_TYPE_CGROUP_DEVICE program, and installing it on a cgroup2
//! directory in place of the program a previous apply left there.

use std::fs::File;
use std::os::fd::AsFd;
use std::path::Path;

use berth_sys::bpf::{load_cgroup_device_program, replace_cgroup_device_programs, BpfInsn};

use crate::cgroup::Cgroup;
use crate::devices::{DeviceAccess, DeviceKind, DevicePolicy, DeviceRule};
use crate::error::{Error, Result};

/// The license the kernel records for the program (it calls no GPL-only helper).
pub const DEVICE_PROGRAM_LICENSE: &str = "Apache-2.0";

// `struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor; }`:
// access_type is (access << 16) | type.
const CTX_ACCESS_TYPE: i16 = 0;
const CTX_MAJOR: i16 = 4;
const CTX_MINOR: i16 = 8;
const DEV_BLOCK: i32 = 1;
const DEV_CHAR: i32 = 2;
const ACC_MKNOD: i32 = 1;
const ACC_READ: i32 = 2;
const ACC_WRITE: i32 = 4;
const ACC_ALL: i32 = ACC_MKNOD | ACC_READ | ACC_WRITE;

/// The opcodes the generator emits: class (LDX 0x01, ALU 0x04, JMP 0x05,
/// ALU64 0x07) | operation | source (an immediate is 0x00, a register 0x08).
pub(crate) mod op {
    /// r_dst = *(u32 *)(r_src + off): LDX | MEM 0x60 | W 0x00
    pub const LDX_W: u8 = 0x61;
    /// w_dst = w_src (upper 32 bits cleared): ALU | MOV 0xb0 | X
    pub const MOV32_X: u8 = 0xbc;
    /// w_dst = imm (upper 32 bits cleared): ALU | MOV | K
    pub const MOV32_K: u8 = 0xb4;
    /// w_dst &= imm: ALU | AND 0x50 | K
    pub const AND32_K: u8 = 0x54;
    /// w_dst >>= imm: ALU | RSH 0x70 | K
    pub const RSH32_K: u8 = 0x74;
    /// r_dst = imm (sign-extended): ALU64 | MOV | K
    pub const MOV64_K: u8 = 0xb7;
    /// if r_dst != imm (sign-extended) goto pc + 1 + off: JMP | JNE 0x50 | K
    pub const JNE_K: u8 = 0x55;
    /// if r_dst != r_src goto pc + 1 + off: JMP | JNE | X
    pub const JNE_X: u8 = 0x5d;
    /// return r0: JMP | EXIT 0x90
    pub const EXIT: u8 = 0x95;
}

// Registers: r1 holds the context on entry and is scratch afterwards.
const R0: u8 = 0;
const R1: u8 = 1;
const ACCESS: u8 = 2;
const TYPE: u8 = 3;
const MAJOR: u8 = 4;
const MINOR: u8 = 5;

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> BpfInsn {
    BpfInsn::new(code, dst, src, off, imm)
}

/// One test of a rule; a failed test jumps to the next rule.
enum Check {
    /// `reg` must equal `value`.
    Equals { reg: u8, value: u32 },
    /// The requested access bits must all be in `allowed`.
    AccessWithin { allowed: i32 },
}

impl Check {
    fn len(&self) -> usize {
        match self {
            // Values above i32::MAX cannot be a sign-extended immediate;
            // they go through a zero-extending 32-bit move into r1 first.
            Check::Equals { value, .. } if *value > i32::MAX as u32 => 2,
            Check::Equals { .. } => 1,
            Check::AccessWithin { .. } => 3,
        }
    }

    /// Emits the test; `skip` is how many instructions after it start the next rule.
    fn emit(&self, skip: usize, out: &mut Vec<BpfInsn>) {
        let off = |own_len: usize| {
            i16::try_from(skip + own_len - 1).expect("a rule block is a handful of instructions")
        };
        match *self {
            Check::Equals { reg, value } if value > i32::MAX as u32 => {
                out.push(insn(op::MOV32_K, R1, 0, 0, value as i32));
                out.push(insn(op::JNE_X, reg, R1, off(1), 0));
            }
            Check::Equals { reg, value } => {
                out.push(insn(op::JNE_K, reg, 0, off(1), value as i32));
            }
            Check::AccessWithin { allowed } => {
                out.push(insn(op::MOV32_X, R1, ACCESS, 0, 0));
                out.push(insn(op::AND32_K, R1, 0, 0, !allowed & ACC_ALL));
                out.push(insn(op::JNE_K, R1, 0, off(1), 0));
            }
        }
    }
}

fn access_bits(a: DeviceAccess) -> i32 {
    let mut bits = 0;
    if a.mknod {
        bits |= ACC_MKNOD;
    }
    if a.read {
        bits |= ACC_READ;
    }
    if a.write {
        bits |= ACC_WRITE;
    }
    bits
}

fn checks(rule: &DeviceRule) -> Vec<Check> {
    let mut checks = Vec::new();
    match rule.kind {
        DeviceKind::All => {}
        DeviceKind::Char => checks.push(Check::Equals {
            reg: TYPE,
            value: DEV_CHAR as u32,
        }),
        DeviceKind::Block => checks.push(Check::Equals {
            reg: TYPE,
            value: DEV_BLOCK as u32,
        }),
    }
    let allowed = access_bits(rule.access);
    if allowed != ACC_ALL {
        checks.push(Check::AccessWithin { allowed });
    }
    if let Some(major) = rule.major {
        checks.push(Check::Equals {
            reg: MAJOR,
            value: major,
        });
    }
    if let Some(minor) = rule.minor {
        checks.push(Check::Equals {
            reg: MINOR,
            value: minor,
        });
    }
    checks
}

fn emit_return(allow: bool, out: &mut Vec<BpfInsn>) {
    out.push(insn(op::MOV64_K, R0, 0, 0, i32::from(allow)));
    out.push(insn(op::EXIT, 0, 0, 0, 0));
}

/// Compiles `policy` to a device program: it returns 1 (allow) or 0 (deny)
/// as the last rule that matches the access decides, else as the default
/// does. A rule matches when the device type and numbers match and every
/// requested access bit is among the rule's (as runc's filter does, so an
/// `rw` request needs one rule with both `r` and `w`).
pub fn device_program(policy: &DevicePolicy) -> Vec<BpfInsn> {
    let mut out = vec![
        insn(op::LDX_W, ACCESS, R1, CTX_ACCESS_TYPE, 0),
        insn(op::MOV32_X, TYPE, ACCESS, 0, 0),
        insn(op::AND32_K, TYPE, 0, 0, 0xffff),
        insn(op::RSH32_K, ACCESS, 0, 0, 16),
        insn(op::LDX_W, MAJOR, R1, CTX_MAJOR, 0),
        insn(op::LDX_W, MINOR, R1, CTX_MINOR, 0),
    ];
    // The last matching rule wins: test rules from the last one back.
    for rule in policy.rules.iter().rev() {
        let checks = checks(rule);
        // A rule that matches everything decides alone; earlier rules and the
        // default are unreachable, which the verifier refuses.
        if checks.is_empty() {
            emit_return(rule.allow, &mut out);
            return out;
        }
        let mut rest: usize = checks.iter().map(Check::len).sum::<usize>() + 2;
        for check in &checks {
            rest -= check.len();
            check.emit(rest, &mut out);
        }
        emit_return(rule.allow, &mut out);
    }
    emit_return(policy.default_allow, &mut out);
    out
}

/// Compiles `policy`, loads it and makes it the only device program attached
/// directly to the cgroup2 directory `dir` (programs attached there before,
/// e.g. by an earlier apply, are detached after the new one is in place).
pub fn install_device_program(dir: &Path, policy: &DevicePolicy) -> Result<()> {
    let failed = |source| Error::DeviceProgram {
        path: dir.to_path_buf(),
        source,
    };
    let cgroup = File::open(dir).map_err(|source| Error::Read {
        path: dir.to_path_buf(),
        source,
    })?;
    let prog = load_cgroup_device_program(&device_program(policy), DEVICE_PROGRAM_LICENSE)
        .map_err(failed)?;
    replace_cgroup_device_programs(cgroup.as_fd(), prog.as_fd()).map_err(failed)
}

impl Cgroup {
    /// Enforces `policy` with a device program on this cgroup's cgroup2
    /// directory. [`Cgroup::apply`] does this itself when
    /// [`Cgroup::needs_device_program`]; on a hybrid host, whose v1 devices
    /// hierarchy `apply` writes instead, a caller may call this as well so
    /// the cgroup2 side enforces the same policy (the kernel checks both).
    pub fn apply_device_program(&self, policy: &DevicePolicy) -> Result<()> {
        match &self.v2 {
            Some(v2) => install_device_program(&v2.dir, policy),
            None => Err(Error::ControllerUnavailable {
                controller: "cgroup2".into(),
                resource: "device program".into(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::device_policy;
    use oci_spec::runtime::LinuxDeviceCgroup;

    /// Runs `prog` on a device access the way the kernel would, for the
    /// instructions the generator emits; panics on anything else, on a jump
    /// out of the program, on a read of an unset register, or on a loop.
    fn run(prog: &[BpfInsn], kind: i32, access: i32, major: u32, minor: u32) -> u64 {
        let ctx = [((access as u32) << 16) | kind as u32, major, minor];
        let mut regs: [Option<u64>; 11] = [None; 11];
        // r1 points at the context; model the pointer as a marker value.
        const CTX: u64 = 0xc0de_0000;
        regs[1] = Some(CTX);
        let mut pc = 0usize;
        for _ in 0..=prog.len() {
            let i = prog
                .get(pc)
                .unwrap_or_else(|| panic!("pc {pc} left the program"));
            let (dst, src) = (i.dst() as usize, i.src() as usize);
            let at = pc;
            let get = |regs: &[Option<u64>; 11], r: usize| {
                regs[r].unwrap_or_else(|| panic!("r{r} read unset at pc {at}"))
            };
            let imm = i.imm();
            let value = match i.code() {
                op::LDX_W => {
                    assert_eq!(get(&regs, src), CTX, "load from a non-context register");
                    let off = usize::try_from(i.off()).expect("negative offset");
                    assert!(off % 4 == 0 && off < 12, "bad context offset {off}");
                    u64::from(ctx[off / 4])
                }
                op::MOV32_X => get(&regs, src) & 0xffff_ffff,
                op::MOV32_K => u64::from(imm as u32),
                op::AND32_K => u64::from(get(&regs, dst) as u32 & imm as u32),
                op::RSH32_K => u64::from(get(&regs, dst) as u32 >> imm),
                op::MOV64_K => i64::from(imm) as u64,
                op::JNE_K | op::JNE_X => {
                    let rhs = if i.code() == op::JNE_K {
                        i64::from(imm) as u64
                    } else {
                        get(&regs, src)
                    };
                    assert!(i.off() >= 0, "backward jump at pc {pc}");
                    let taken = get(&regs, dst) != rhs;
                    pc += 1;
                    if taken {
                        pc += i.off() as usize;
                    }
                    continue;
                }
                op::EXIT => return get(&regs, 0),
                other => panic!("unexpected opcode {other:#x} at pc {pc}"),
            };
            regs[dst] = Some(value);
            pc += 1;
        }
        panic!("program did not exit");
    }

    /// Every instruction is reachable and control never leaves the program:
    /// the verifier refuses dead code and jumps or fall-through past the end.
    fn assert_all_reachable(prog: &[BpfInsn]) {
        let mut seen = vec![false; prog.len()];
        let mut todo = vec![0usize];
        while let Some(pc) = todo.pop() {
            assert!(
                pc < prog.len(),
                "control reaches {pc}, past the program's end"
            );
            if seen[pc] {
                continue;
            }
            seen[pc] = true;
            match prog[pc].code() {
                op::EXIT => {}
                op::JNE_K | op::JNE_X => {
                    todo.push(pc + 1);
                    todo.push(pc + 1 + prog[pc].off() as usize);
                }
                _ => todo.push(pc + 1),
            }
        }
        let dead: Vec<usize> = (0..prog.len()).filter(|&pc| !seen[pc]).collect();
        assert!(dead.is_empty(), "unreachable instructions {dead:?}");
    }

    /// The policy's meaning, written directly.
    fn expected(policy: &DevicePolicy, kind: i32, access: i32, major: u32, minor: u32) -> bool {
        policy
            .rules
            .iter()
            .rev()
            .find(|r| {
                let kind_ok = match r.kind {
                    DeviceKind::All => true,
                    DeviceKind::Char => kind == DEV_CHAR,
                    DeviceKind::Block => kind == DEV_BLOCK,
                };
                kind_ok
                    && access & !access_bits(r.access) == 0
                    && r.major.is_none_or(|m| m == major)
                    && r.minor.is_none_or(|m| m == minor)
            })
            .map_or(policy.default_allow, |r| r.allow)
    }

    fn policy(json: &str) -> DevicePolicy {
        let list: Vec<LinuxDeviceCgroup> = serde_json::from_str(json).expect("device list json");
        device_policy(&list).expect("policy")
    }

    fn allowed(prog: &[BpfInsn], kind: char, access: &str, major: u32, minor: u32) -> bool {
        let kind = match kind {
            'c' => DEV_CHAR,
            'b' => DEV_BLOCK,
            _ => panic!("kind {kind}"),
        };
        let mut bits = 0;
        for c in access.chars() {
            bits |= match c {
                'r' => ACC_READ,
                'w' => ACC_WRITE,
                'm' => ACC_MKNOD,
                _ => panic!("access {access}"),
            };
        }
        match run(prog, kind, bits, major, minor) {
            0 => false,
            1 => true,
            other => panic!("program returned {other}"),
        }
    }

    const DOCKER_DEFAULT: &str = r#"[
        {"allow": false, "access": "rwm"},
        {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
        {"allow": true, "type": "c", "major": 1, "minor": 5, "access": "rwm"},
        {"allow": true, "type": "c", "major": 1, "minor": 7, "access": "rwm"},
        {"allow": true, "type": "c", "major": 1, "minor": 8, "access": "rwm"},
        {"allow": true, "type": "c", "major": 1, "minor": 9, "access": "rwm"},
        {"allow": true, "type": "c", "major": 5, "minor": 0, "access": "rwm"},
        {"allow": true, "type": "c", "major": 5, "minor": 1, "access": "rwm"},
        {"allow": true, "type": "c", "major": 5, "minor": 2, "access": "rwm"},
        {"allow": true, "type": "c", "major": 136, "access": "rwm"},
        {"allow": true, "type": "c", "access": "m"},
        {"allow": true, "type": "b", "access": "m"}
    ]"#;

    #[test]
    fn docker_default_rules() {
        let prog = device_program(&policy(DOCKER_DEFAULT));
        assert_all_reachable(&prog);
        let table: &[(char, &str, u32, u32, bool)] = &[
            ('c', "rw", 1, 3, true),   // /dev/null
            ('c', "r", 1, 5, true),    // /dev/zero
            ('c', "rw", 1, 9, true),   // /dev/urandom
            ('c', "rw", 5, 0, true),   // /dev/tty
            ('c', "rw", 5, 2, true),   // /dev/ptmx
            ('c', "rw", 136, 4, true), // /dev/pts/4
            ('c', "rwm", 136, 0, true),
            ('c', "r", 1, 1, false), // /dev/mem
            ('c', "w", 1, 2, false), // /dev/kmem
            ('c', "r", 5, 3, false),
            ('c', "rw", 4, 1, false), // /dev/tty1
            ('c', "m", 4, 1, true),   // mknod of anything
            ('b', "m", 8, 0, true),
            ('b', "r", 8, 0, false), // /dev/sda
            ('b', "rw", 1, 3, false),
            ('c', "rm", 10, 200, false), // /dev/net/tun
            ('c', "rw", 137, 0, false),
        ];
        for &(kind, access, major, minor, want) in table {
            assert_eq!(
                allowed(&prog, kind, access, major, minor),
                want,
                "{kind} {major}:{minor} {access}"
            );
        }
    }

    #[test]
    fn table_of_policies_and_requests() {
        let cases: &[(&str, char, &str, u32, u32, bool)] = &[
            // Nothing listed: deny all, as v1's "devices.deny a".
            ("[]", 'c', "r", 1, 3, false),
            // Allow all, then deny one node.
            (
                r#"[{"allow": true}, {"allow": false, "type": "c", "major": 1, "minor": 3}]"#,
                'c',
                "w",
                1,
                3,
                false,
            ),
            (
                r#"[{"allow": true}, {"allow": false, "type": "c", "major": 1, "minor": 3}]"#,
                'c',
                "w",
                1,
                5,
                true,
            ),
            (
                r#"[{"allow": true}, {"allow": false, "type": "c", "major": 1, "minor": 3}]"#,
                'b',
                "w",
                1,
                3,
                true,
            ),
            // Later rules override earlier ones, both ways.
            (
                r#"[{"allow": true, "type": "c", "major": 1, "minor": 3},
                    {"allow": false, "type": "c", "major": 1, "minor": 3}]"#,
                'c',
                "r",
                1,
                3,
                false,
            ),
            (
                r#"[{"allow": false, "type": "c", "major": 1},
                    {"allow": true, "type": "c", "major": 1, "minor": 3}]"#,
                'c',
                "r",
                1,
                3,
                true,
            ),
            // A deny-all in the middle resets what came before it.
            (
                r#"[{"allow": true, "type": "c", "major": 1, "minor": 3},
                    {"allow": false},
                    {"allow": true, "type": "c", "major": 1, "minor": 5}]"#,
                'c',
                "r",
                1,
                3,
                false,
            ),
            // Access is a subset test: "r" is within "rw", "rw" is not within "r".
            (
                r#"[{"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rw"}]"#,
                'c',
                "r",
                1,
                3,
                true,
            ),
            (
                r#"[{"allow": true, "type": "c", "major": 1, "minor": 3, "access": "r"}]"#,
                'c',
                "rw",
                1,
                3,
                false,
            ),
            (
                r#"[{"allow": true, "type": "c", "major": 1, "minor": 3, "access": "r"},
                    {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "w"}]"#,
                'c',
                "rw",
                1,
                3,
                false,
            ),
            // A deny whose access does not cover the request does not match.
            (
                r#"[{"allow": true}, {"allow": false, "type": "c", "major": 1, "minor": 3, "access": "w"}]"#,
                'c',
                "r",
                1,
                3,
                true,
            ),
            // Wildcard minor, wildcard type with numbers.
            (
                r#"[{"allow": true, "type": "b", "major": 8, "access": "r"}]"#,
                'b',
                "r",
                8,
                17,
                true,
            ),
            (
                r#"[{"allow": true, "type": "a", "major": 8, "minor": 0, "access": "r"}]"#,
                'c',
                "r",
                99,
                99,
                true,
            ),
            // Numbers above i32::MAX compare as unsigned 32-bit values.
            (
                r#"[{"allow": true, "type": "c", "major": 4294967295, "minor": 2147483648}]"#,
                'c',
                "r",
                4_294_967_295,
                2_147_483_648,
                true,
            ),
            (
                r#"[{"allow": true, "type": "c", "major": 4294967295}]"#,
                'c',
                "r",
                2_147_483_647,
                0,
                false,
            ),
        ];
        for &(json, kind, access, major, minor, want) in cases {
            let prog = device_program(&policy(json));
            assert_all_reachable(&prog);
            assert_eq!(
                allowed(&prog, kind, access, major, minor),
                want,
                "{json}: {kind} {major}:{minor} {access}"
            );
        }
    }

    /// Every request over a grid of policies gives what the policy means.
    #[test]
    fn program_agrees_with_the_policy_everywhere() {
        let access_sets = [
            DeviceAccess {
                read: true,
                write: false,
                mknod: false,
            },
            DeviceAccess {
                read: true,
                write: true,
                mknod: false,
            },
            DeviceAccess {
                read: false,
                write: false,
                mknod: true,
            },
            DeviceAccess::ALL,
        ];
        let kinds = [DeviceKind::All, DeviceKind::Char, DeviceKind::Block];
        let numbers = [None, Some(0), Some(1), Some(3_000_000_000)];
        let mut rules = Vec::new();
        for (n, &kind) in kinds.iter().enumerate() {
            for (m, &major) in numbers.iter().enumerate() {
                for (k, &minor) in numbers.iter().enumerate() {
                    let access = access_sets[(n + m + k) % access_sets.len()];
                    rules.push(DeviceRule {
                        allow: (n + m * 3 + k) % 2 == 0,
                        kind,
                        major,
                        minor,
                        access,
                    });
                }
            }
        }
        let values = [0u32, 1, 2, 3_000_000_000];
        // Sliding windows of the rule list, with both defaults.
        for start in 0..rules.len() {
            for len in [1usize, 2, 5, 12] {
                for default_allow in [false, true] {
                    let policy = DevicePolicy {
                        default_allow,
                        rules: rules
                            .iter()
                            .cycle()
                            .skip(start)
                            .take(len)
                            .copied()
                            .collect(),
                    };
                    let prog = device_program(&policy);
                    assert_all_reachable(&prog);
                    for kind in [DEV_BLOCK, DEV_CHAR] {
                        for access in 1..=ACC_ALL {
                            for major in values {
                                for minor in values {
                                    let got = run(&prog, kind, access, major, minor);
                                    let want = expected(&policy, kind, access, major, minor);
                                    assert_eq!(
                                        got,
                                        u64::from(want),
                                        "{policy:?}: type {kind} access {access} {major}:{minor}"
                                    );
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn a_rule_matching_everything_ends_the_program() {
        let policy = DevicePolicy {
            default_allow: false,
            rules: vec![
                DeviceRule {
                    allow: false,
                    kind: DeviceKind::Char,
                    major: Some(1),
                    minor: Some(3),
                    access: DeviceAccess::ALL,
                },
                DeviceRule {
                    allow: true,
                    kind: DeviceKind::All,
                    major: None,
                    minor: None,
                    access: DeviceAccess::ALL,
                },
            ],
        };
        let prog = device_program(&policy);
        assert_all_reachable(&prog);
        assert!(allowed(&prog, 'c', "rw", 1, 3));
        // Header, then the catch-all's return: nothing else.
        assert_eq!(prog.len(), 8);
    }
}
