//! Messages with file descriptors over UNIX sockets (SCM_RIGHTS): the pty
//! master to `--console-socket`, the seccomp listener, parent/child sync.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

use nix::errno::Errno;
use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};

/// Sends `data` with the given fds attached.
pub fn send_with_fds(sock: impl AsFd, data: &[u8], fds: &[&dyn AsFd]) -> Result<usize, Errno> {
    let raw: Vec<i32> = fds.iter().map(|f| f.as_fd().as_raw_fd()).collect();
    let iov = [IoSlice::new(data)];
    let cmsgs: Vec<ControlMessage> = if raw.is_empty() {
        Vec::new()
    } else {
        vec![ControlMessage::ScmRights(&raw)]
    };
    sendmsg::<()>(
        sock.as_fd().as_raw_fd(),
        &iov,
        &cmsgs,
        MsgFlags::empty(),
        None,
    )
}

/// Receives one message of at most `buf.len()` bytes and the fds that came with it.
pub fn recv_with_fds(sock: impl AsFd, buf: &mut [u8]) -> Result<(usize, Vec<OwnedFd>), Errno> {
    let mut cmsg = nix::cmsg_space!([i32; 8]);
    let mut iov = [IoSliceMut::new(buf)];
    let msg = recvmsg::<()>(
        sock.as_fd().as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    let mut fds = Vec::new();
    for c in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(list) = c {
            for fd in list {
                // SAFETY: the kernel just installed these fds in this process for us.
                fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
    }
    Ok((msg.bytes, fds))
}
