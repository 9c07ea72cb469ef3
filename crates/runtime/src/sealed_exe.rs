//! Protection of the runtime binary (the /proc/self/exe class of attack):
//! before a command that enters a container, the runtime re-executes itself
//! from a sealed in-memory copy. A container process that reaches
//! /proc/<pid>/exe of a runtime process then finds a memfd that can't be
//! written, never the binary on the host.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;

use nix::fcntl::{FcntlArg, SealFlag};
use nix::sys::memfd::{memfd_create, MFdFlags};

use crate::error::{Context, Error, Result};

const MEMFD_NAME: &str = "berth-runtime-sealed";

/// True when this process already runs from the sealed copy.
pub fn is_sealed() -> bool {
    std::fs::read_link("/proc/self/exe")
        .map(|p| {
            p.to_string_lossy()
                .starts_with(&format!("/memfd:{MEMFD_NAME}"))
        })
        .unwrap_or(false)
}

/// Re-executes the current command from a sealed copy of the binary; returns
/// only when already sealed.
pub fn reexec_sealed() -> Result<()> {
    if is_sealed() {
        return Ok(());
    }
    let memfd = memfd_create(
        MEMFD_NAME,
        MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING,
    )
    .context(|| "memfd_create".to_string())?;
    let mut exe =
        std::fs::File::open("/proc/self/exe").context(|| "open /proc/self/exe".to_string())?;
    let mut copy = std::fs::File::from(memfd);
    std::io::copy(&mut exe, &mut copy).context(|| "copy the runtime binary".to_string())?;
    nix::fcntl::fcntl(
        &copy,
        FcntlArg::F_ADD_SEALS(
            SealFlag::F_SEAL_SEAL
                | SealFlag::F_SEAL_SHRINK
                | SealFlag::F_SEAL_GROW
                | SealFlag::F_SEAL_WRITE,
        ),
    )
    .context(|| "seal the runtime copy".to_string())?;
    let args: Vec<CString> = std::env::args_os()
        .map(|a| CString::new(a.as_bytes()))
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| Error::Init("argument with a NUL byte".into()))?;
    let env: Vec<CString> = std::env::vars_os()
        .map(|(k, v)| {
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            CString::new(kv)
        })
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| Error::Init("environment variable with a NUL byte".into()))?;
    nix::unistd::fexecve(&copy, &args, &env)
        .context(|| "re-execute the sealed runtime".to_string())?;
    Ok(())
}
