//! Protection of the runtime binary (the /proc/self/exe class of attack):
//! before a command that enters a container, the runtime re-executes itself
//! from a sealed in-memory copy. A container process that reaches
//! /proc/<pid>/exe of a runtime process then finds a memfd that can't be
//! written, never the binary on the host.

use std::ffi::CString;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::fcntl::{FcntlArg, SealFlag};
use nix::sys::memfd::{memfd_create, MFdFlags};

use crate::error::{Context, Error, Result};

const MEMFD_NAME: &str = "berth-runtime-sealed";

/// What the copy can no longer have done to it: written, grown, shrunk or
/// unsealed.
const SEALS: SealFlag = SealFlag::F_SEAL_SEAL
    .union(SealFlag::F_SEAL_SHRINK)
    .union(SealFlag::F_SEAL_GROW)
    .union(SealFlag::F_SEAL_WRITE);

/// True when this process already runs from the sealed copy.
pub fn is_sealed() -> bool {
    names_sealed_copy("/proc/self/exe")
}

/// Whether the magic link `link` (/proc/…/exe or /proc/…/fd/N) names a
/// memfd with the sealed copy's name.
fn names_sealed_copy(link: &str) -> bool {
    std::fs::read_link(link).is_ok_and(|p| {
        p.to_string_lossy()
            .starts_with(&format!("/memfd:{MEMFD_NAME}"))
    })
}

/// A sealed in-memory copy of the runtime binary at `path` (close-on-exec).
/// A process executed from it (`/proc/self/fd/<fd>`) counts as sealed and
/// does not copy itself again: berthd makes one and every shim runs the
/// runtime from it, which saves each `docker exec` the copy.
pub fn sealed_copy(path: &Path) -> Result<OwnedFd> {
    let memfd = memfd_create(
        MEMFD_NAME,
        MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING,
    )
    .context(|| "memfd_create".to_string())?;
    let mut exe = std::fs::File::open(path).context(|| format!("open {}", path.display()))?;
    let mut copy = std::fs::File::from(memfd);
    std::io::copy(&mut exe, &mut copy).context(|| "copy the runtime binary".to_string())?;
    nix::fcntl::fcntl(&copy, FcntlArg::F_ADD_SEALS(SEALS))
        .context(|| "seal the runtime copy".to_string())?;
    Ok(OwnedFd::from(copy))
}

/// Whether `fd` of this process is a copy [`sealed_copy`] made: a memfd of
/// that name that can no longer be written, grown or shrunk.
pub fn is_sealed_copy(fd: i32) -> bool {
    let path = format!("/proc/self/fd/{fd}");
    let named = names_sealed_copy(&path);
    let sealed = || {
        let file = std::fs::File::open(&path).ok()?;
        let seals = nix::fcntl::fcntl(&file, FcntlArg::F_GET_SEALS).ok()?;
        let seals = SealFlag::from_bits_truncate(seals);
        Some(seals.contains(SEALS))
    };
    named && sealed().unwrap_or(false)
}

/// Re-executes the current command from a sealed copy of the binary; returns
/// only when already sealed.
pub fn reexec_sealed() -> Result<()> {
    if is_sealed() {
        return Ok(());
    }
    let copy = sealed_copy(Path::new("/proc/self/exe"))?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsRawFd;

    #[test]
    fn a_sealed_copy_is_recognised_and_cannot_be_written() {
        let copy = sealed_copy(Path::new("/bin/sh")).expect("sealed copy");
        assert!(is_sealed_copy(copy.as_raw_fd()));
        assert_eq!(
            std::fs::read(format!("/proc/self/fd/{}", copy.as_raw_fd())).expect("read"),
            std::fs::read("/bin/sh").expect("read /bin/sh")
        );
        let mut file = std::fs::File::from(copy.try_clone().expect("dup"));
        assert!(file.write_all(b"x").is_err(), "a sealed copy took a write");

        // The same name without the seals, or a plain file, is not one.
        let unsealed = memfd_create(MEMFD_NAME, MFdFlags::MFD_CLOEXEC).expect("memfd");
        assert!(!is_sealed_copy(unsealed.as_raw_fd()));
        let plain = std::fs::File::open("/bin/sh").expect("open");
        assert!(!is_sealed_copy(plain.as_raw_fd()));
    }
}
