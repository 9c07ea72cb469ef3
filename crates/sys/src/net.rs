//! Network interface flags: bringing up the loopback interface of a
//! container's new network namespace (dockerd does the same for
//! `--network none`; the OCI runtime leaves it down).

use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use nix::errno::Errno;
use nix::sched::CloneFlags;
use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};

/// Sets `lo` up in the network namespace `netns` (an open
/// `/proc/<pid>/ns/net`). Runs on a short-lived thread of its own, so the
/// caller's threads stay in their namespace.
pub fn loopback_up(netns: BorrowedFd<'_>) -> Result<(), Errno> {
    let netns = netns.try_clone_to_owned().map_err(|_| Errno::EBADF)?;
    std::thread::scope(|scope| {
        scope
            .spawn(move || -> Result<(), Errno> {
                nix::sched::setns(&netns, CloneFlags::CLONE_NEWNET)?;
                let sock = socket(
                    AddressFamily::Inet,
                    SockType::Datagram,
                    SockFlag::SOCK_CLOEXEC,
                    None,
                )?;
                // SAFETY: ifreq is plain old data; all-zero is a valid value.
                let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
                for (dst, src) in ifr.ifr_name.iter_mut().zip(b"lo\0") {
                    *dst = *src as libc::c_char;
                }
                let fd = sock.as_fd().as_raw_fd();
                // SAFETY: SIOCGIFFLAGS fills ifr_ifru.ifru_flags of the ifreq we own.
                Errno::result(unsafe { libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut ifr) })?;
                // SAFETY: the flags member was just written by the kernel.
                unsafe {
                    ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
                }
                // SAFETY: SIOCSIFFLAGS reads the name and flags of the ifreq we own.
                Errno::result(unsafe { libc::ioctl(fd, libc::SIOCSIFFLAGS, &ifr) })?;
                Ok(())
            })
            .join()
            .unwrap_or(Err(Errno::EIO))
    })
}
