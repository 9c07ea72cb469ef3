//! eBPF device programs for cgroup2: loading a BPF_PROG_TYPE_CGROUP_DEVICE
//! program, attaching it to a cgroup directory, and replacing the programs
//! attached there before (attach the new one first, then detach the old ones,
//! so the cgroup is never without a device policy).
//!
//! The attr structs below are the prefixes of the kernel's `union bpf_attr`
//! that each command reads; the kernel zero-fills what a shorter attr lacks.

use std::ffi::CString;
use std::mem::size_of;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use nix::errno::Errno;

const BPF_PROG_LOAD: u32 = 5;
const BPF_PROG_ATTACH: u32 = 8;
const BPF_PROG_DETACH: u32 = 9;
const BPF_PROG_GET_FD_BY_ID: u32 = 13;
const BPF_OBJ_GET_INFO_BY_FD: u32 = 15;
const BPF_PROG_QUERY: u32 = 16;

const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 1 << 1;

/// Shown by `bpftool prog` next to the program id.
const PROGRAM_NAME: &[u8] = b"berth_devices";
/// Verifier log buffers tried after a failed load, smallest first.
const LOG_SIZES: [usize; 3] = [64 << 10, 1 << 20, 16 << 20];
/// Programs we expect at most on one cgroup; the query asks again if more.
const QUERY_CAPACITY: usize = 16;

/// One eBPF instruction in the kernel's `struct bpf_insn` layout:
/// opcode, destination and source register (4 bits each), offset, immediate.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BpfInsn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

impl BpfInsn {
    /// `dst` and `src` are register numbers 0..=10; higher bits are dropped.
    pub const fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> BpfInsn {
        // The C bitfield puts dst_reg in the low nibble on little-endian
        // targets and in the high nibble on big-endian ones.
        let regs = if cfg!(target_endian = "little") {
            (dst & 0xf) | (src << 4)
        } else {
            (dst << 4) | (src & 0xf)
        };
        BpfInsn {
            code,
            regs,
            off,
            imm,
        }
    }

    pub const fn code(&self) -> u8 {
        self.code
    }

    pub const fn dst(&self) -> u8 {
        if cfg!(target_endian = "little") {
            self.regs & 0xf
        } else {
            self.regs >> 4
        }
    }

    pub const fn src(&self) -> u8 {
        if cfg!(target_endian = "little") {
            self.regs >> 4
        } else {
            self.regs & 0xf
        }
    }

    pub const fn off(&self) -> i16 {
        self.off
    }

    pub const fn imm(&self) -> i32 {
        self.imm
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BpfError {
    #[error("bpf: the program license {0:?} contains a NUL byte")]
    InvalidLicense(String),
    #[error("bpf: the program has {0} instructions, more than the kernel can be asked to load")]
    ProgramTooLarge(usize),
    /// `log` is the verifier's explanation, empty if the kernel gave none
    /// (e.g. EPERM without CAP_SYS_ADMIN or CAP_BPF).
    #[error("bpf: the kernel refused the device program ({errno}){}", verifier_log(.log))]
    Load { errno: Errno, log: String },
    #[error("bpf: cannot attach the device program to the cgroup: {0}")]
    Attach(Errno),
    #[error("bpf: cannot list the device programs attached to the cgroup: {0}")]
    Query(Errno),
    #[error("bpf: cannot open program {id}: {errno}")]
    OpenById { id: u32, errno: Errno },
    #[error("bpf: cannot detach device program {id} from the cgroup: {errno}")]
    Detach { id: u32, errno: Errno },
    #[error("bpf: cannot read a program's id: {0}")]
    Info(Errno),
}

pub type Result<T, E = BpfError> = std::result::Result<T, E>;

fn verifier_log(log: &str) -> String {
    if log.is_empty() {
        String::new()
    } else {
        format!("; verifier log:\n{log}")
    }
}

#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// BPF_PROG_ATTACH and BPF_PROG_DETACH.
#[repr(C)]
#[derive(Default)]
struct AttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

#[repr(C)]
#[derive(Default)]
struct QueryAttr {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
    _pad: u32,
}

#[repr(C)]
#[derive(Default)]
struct GetFdByIdAttr {
    prog_id: u32,
    next_id: u32,
    open_flags: u32,
}

#[repr(C)]
#[derive(Default)]
struct InfoAttr {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

/// The first fields of `struct bpf_prog_info`.
#[repr(C)]
#[derive(Default)]
struct ProgInfo {
    prog_type: u32,
    id: u32,
    tag: [u8; 8],
}

/// Calls bpf(2) with `cmd` and `attr`, returning the syscall's result.
///
/// # Safety
/// `attr` must be the attr layout `cmd` expects, and every pointer stored in
/// it must be valid for the access the kernel makes during the call.
unsafe fn bpf<T>(cmd: u32, attr: &mut T) -> Result<libc::c_long, Errno> {
    // SAFETY: the caller guarantees attr matches cmd and its pointers are
    // valid; attr itself is a live, initialised value of size_of::<T>() bytes.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd as libc::c_long,
            attr as *mut T,
            size_of::<T>(),
        )
    };
    Errno::result(ret)
}

/// A file descriptor number the kernel gave us, as u32 for an attr field.
fn fd_field(fd: BorrowedFd<'_>) -> u32 {
    fd.as_raw_fd() as u32
}

/// Loads `insns` as a BPF_PROG_TYPE_CGROUP_DEVICE program. If the kernel
/// refuses it, loads it again with the verifier log on and returns that log
/// in the error. The returned descriptor is close-on-exec.
pub fn load_cgroup_device_program(insns: &[BpfInsn], license: &str) -> Result<OwnedFd> {
    let license_c =
        CString::new(license).map_err(|_| BpfError::InvalidLicense(license.to_owned()))?;
    let insn_cnt =
        u32::try_from(insns.len()).map_err(|_| BpfError::ProgramTooLarge(insns.len()))?;
    let mut prog_name = [0u8; 16];
    prog_name[..PROGRAM_NAME.len()].copy_from_slice(PROGRAM_NAME);
    let attr = |log: Option<&mut Vec<u8>>| {
        let (log_level, log_size, log_buf) = match log {
            Some(buf) => (1, buf.len() as u32, buf.as_mut_ptr() as u64),
            None => (0, 0, 0),
        };
        ProgLoadAttr {
            prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
            insn_cnt,
            insns: insns.as_ptr() as u64,
            license: license_c.as_ptr() as u64,
            log_level,
            log_size,
            log_buf,
            prog_name,
            expected_attach_type: BPF_CGROUP_DEVICE,
            ..ProgLoadAttr::default()
        }
    };
    let mut first = attr(None);
    // SAFETY: a BPF_PROG_LOAD attr; insns and license_c outlive the call, and
    // insn_cnt is the number of BpfInsn (the kernel's struct layout) at insns.
    let errno = match unsafe { bpf(BPF_PROG_LOAD, &mut first) } {
        Ok(fd) => return Ok(adopt_fd(fd)),
        Err(errno) => errno,
    };
    for size in LOG_SIZES {
        let mut log = vec![0u8; size];
        let mut again = attr(Some(&mut log));
        // SAFETY: as above; log_buf points at log.len() writable bytes that
        // outlive the call.
        match unsafe { bpf(BPF_PROG_LOAD, &mut again) } {
            // Loading may succeed with the log on (e.g. a transient ENOMEM).
            Ok(fd) => return Ok(adopt_fd(fd)),
            Err(Errno::ENOSPC) if size != LOG_SIZES[LOG_SIZES.len() - 1] => continue,
            Err(_) => {
                let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
                let log = String::from_utf8_lossy(&log[..end]).trim_end().to_owned();
                return Err(BpfError::Load { errno, log });
            }
        }
    }
    Err(BpfError::Load {
        errno,
        log: String::new(),
    })
}

/// Takes ownership of a descriptor bpf(2) just returned.
fn adopt_fd(fd: libc::c_long) -> OwnedFd {
    // SAFETY: bpf(2) returned this descriptor to us just now (a non-negative
    // fd, as Errno::result let it through); nothing else owns it.
    unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) }
}

/// Attaches `prog` to the cgroup2 directory `cgroup` with BPF_F_ALLOW_MULTI,
/// next to the programs already there (a device access must pass them all).
pub fn attach_cgroup_device_program(cgroup: BorrowedFd<'_>, prog: BorrowedFd<'_>) -> Result<()> {
    let mut attr = AttachAttr {
        target_fd: fd_field(cgroup),
        attach_bpf_fd: fd_field(prog),
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
        ..AttachAttr::default()
    };
    // SAFETY: a BPF_PROG_ATTACH attr without pointers.
    unsafe { bpf(BPF_PROG_ATTACH, &mut attr) }
        .map(drop)
        .map_err(BpfError::Attach)
}

/// The ids of the device programs attached directly to `cgroup` (not those
/// inherited from its ancestors), in the order they run.
pub fn query_cgroup_device_programs(cgroup: BorrowedFd<'_>) -> Result<Vec<u32>> {
    let mut ids = vec![0u32; QUERY_CAPACITY];
    loop {
        let mut attr = QueryAttr {
            target_fd: fd_field(cgroup),
            attach_type: BPF_CGROUP_DEVICE,
            prog_ids: ids.as_mut_ptr() as u64,
            prog_cnt: ids.len() as u32,
            ..QueryAttr::default()
        };
        // SAFETY: a BPF_PROG_QUERY attr; prog_ids points at prog_cnt writable
        // u32s that outlive the call.
        match unsafe { bpf(BPF_PROG_QUERY, &mut attr) } {
            Ok(_) => {
                ids.truncate(attr.prog_cnt as usize);
                return Ok(ids);
            }
            // prog_cnt now holds how many there are; ask again with room for them.
            Err(Errno::ENOSPC) if attr.prog_cnt as usize > ids.len() => {
                ids = vec![0u32; attr.prog_cnt as usize];
            }
            Err(errno) => return Err(BpfError::Query(errno)),
        }
    }
}

/// Opens the loaded program with id `id` (needs CAP_SYS_ADMIN). ENOENT in
/// the error means the kernel has freed it.
pub fn open_program_by_id(id: u32) -> Result<OwnedFd> {
    let mut attr = GetFdByIdAttr {
        prog_id: id,
        ..GetFdByIdAttr::default()
    };
    // SAFETY: a BPF_PROG_GET_FD_BY_ID attr without pointers.
    unsafe { bpf(BPF_PROG_GET_FD_BY_ID, &mut attr) }
        .map(adopt_fd)
        .map_err(|errno| BpfError::OpenById { id, errno })
}

/// The kernel's id of the loaded program `prog`.
pub fn program_id(prog: BorrowedFd<'_>) -> Result<u32> {
    let mut info = ProgInfo::default();
    let mut attr = InfoAttr {
        bpf_fd: fd_field(prog),
        info_len: size_of::<ProgInfo>() as u32,
        info: &mut info as *mut ProgInfo as u64,
    };
    // SAFETY: a BPF_OBJ_GET_INFO_BY_FD attr; info points at info_len
    // writable bytes that outlive the call.
    unsafe { bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr) }.map_err(BpfError::Info)?;
    Ok(info.id)
}

/// Detaches the device program with id `id` from `cgroup`. A program that is
/// no longer attached (or no longer exists) is not an error.
pub fn detach_cgroup_device_program(cgroup: BorrowedFd<'_>, id: u32) -> Result<()> {
    let prog = match open_program_by_id(id) {
        Ok(fd) => fd,
        Err(BpfError::OpenById {
            errno: Errno::ENOENT,
            ..
        }) => return Ok(()),
        Err(e) => return Err(e),
    };
    let mut attr = AttachAttr {
        target_fd: fd_field(cgroup),
        attach_bpf_fd: fd_field(prog.as_fd()),
        attach_type: BPF_CGROUP_DEVICE,
        ..AttachAttr::default()
    };
    // SAFETY: a BPF_PROG_DETACH attr without pointers.
    match unsafe { bpf(BPF_PROG_DETACH, &mut attr) } {
        Ok(_) | Err(Errno::ENOENT) => Ok(()),
        Err(errno) => Err(BpfError::Detach { id, errno }),
    }
}

/// Makes `prog` the only device program attached directly to `cgroup`:
/// attaches it, then detaches every program that was there before. In
/// between both apply, which is stricter than either, never looser.
pub fn replace_cgroup_device_programs(cgroup: BorrowedFd<'_>, prog: BorrowedFd<'_>) -> Result<()> {
    let old = query_cgroup_device_programs(cgroup)?;
    let new = program_id(prog)?;
    if !old.contains(&new) {
        attach_cgroup_device_program(cgroup, prog)?;
    }
    for id in old.into_iter().filter(|&id| id != new) {
        detach_cgroup_device_program(cgroup, id)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attr_layouts_match_the_kernel() {
        assert_eq!(size_of::<BpfInsn>(), 8);
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, log_buf), 32);
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, prog_name), 48);
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, expected_attach_type), 68);
        assert_eq!(std::mem::offset_of!(QueryAttr, prog_ids), 16);
        assert_eq!(std::mem::offset_of!(QueryAttr, prog_cnt), 24);
        assert_eq!(std::mem::offset_of!(InfoAttr, info), 8);
        assert_eq!(std::mem::offset_of!(ProgInfo, id), 4);
    }

    #[test]
    fn insn_registers_round_trip() {
        let insn = BpfInsn::new(0x61, 2, 1, 8, -5);
        assert_eq!(
            (insn.code(), insn.dst(), insn.src(), insn.off(), insn.imm()),
            (0x61, 2, 1, 8, -5)
        );
    }

    #[test]
    fn license_with_nul_is_refused_before_any_syscall() {
        let err = load_cgroup_device_program(&[], "GPL\0").expect_err("accepted");
        assert!(matches!(err, BpfError::InvalidLicense(_)), "{err}");
    }

    #[test]
    fn verifier_log_reaches_the_error() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: loading BPF programs needs root");
            return;
        }
        // r0 is never set before exit: the verifier refuses and says why.
        let err = load_cgroup_device_program(&[BpfInsn::new(0x95, 0, 0, 0, 0)], "Apache-2.0")
            .expect_err("loaded a program that reads an unset r0");
        match err {
            BpfError::Load { errno, log } => {
                assert_eq!(errno, Errno::EACCES);
                assert!(log.contains("R0 !read_ok"), "log: {log}");
            }
            other => panic!("unexpected error: {other}"),
        }
    }
}
