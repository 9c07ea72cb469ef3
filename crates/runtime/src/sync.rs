//! Messages between the runtime (parent) and the processes it forks, over a
//! SOCK_SEQPACKET socketpair: each message is one JSON document, optionally
//! carrying fds.

use std::os::fd::{AsFd, OwnedFd};

use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use serde::{Deserialize, Serialize};

use crate::error::{Context, Error, Result};

#[derive(Debug, Serialize, Deserialize)]
pub enum Msg {
    /// Child → parent: please write uid_map/gid_map for this pid.
    IdMapRequest(i32),
    /// Parent → child: go on.
    Proceed,
    /// First child → parent: the container process (host pid).
    Pid(i32),
    /// First child → parent: the container process (host pid), which was
    /// born in the cgroup or joins it itself (no write of its pid needed).
    PlacedPid(i32),
    /// Init → parent: run prestart and createRuntime hooks now (only sent
    /// when the config has hooks that run before pivot_root).
    RuntimeHooks,
    /// Child → parent: here is the pty master (attached fd).
    Console,
    /// Init → parent: setup complete, waiting for `start`.
    Ready,
    /// Child → parent: setup failed.
    Failed(String),
}

pub struct Channel {
    fd: OwnedFd,
}

pub fn channel_pair() -> Result<(Channel, Channel)> {
    let (a, b) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .context(|| "socketpair".to_string())?;
    Ok((Channel { fd: a }, Channel { fd: b }))
}

impl Channel {
    pub fn send(&self, msg: &Msg) -> Result<()> {
        self.send_with_fds(msg, &[])
    }

    pub fn send_with_fds(&self, msg: &Msg, fds: &[&dyn AsFd]) -> Result<()> {
        let data = serde_json::to_vec(msg).map_err(|e| Error::Init(e.to_string()))?;
        berth_sys::socket::send_with_fds(&self.fd, &data, fds)
            .context(|| "send to runtime".to_string())?;
        Ok(())
    }

    /// Makes [`Channel::recv`] fail when nothing comes for `timeout`.
    pub fn set_receive_timeout(&self, timeout: std::time::Duration) -> Result<()> {
        let tv = nix::sys::time::TimeVal::new(
            timeout.as_secs() as nix::sys::time::time_t,
            timeout.subsec_micros() as nix::sys::time::suseconds_t,
        );
        nix::sys::socket::setsockopt(&self.fd, nix::sys::socket::sockopt::ReceiveTimeout, &tv)
            .context(|| "set the receive timeout of the sync socket".to_string())
    }

    /// Receives the next message; `None` when the other side closed.
    pub fn recv(&self) -> Result<Option<(Msg, Vec<OwnedFd>)>> {
        let mut buf = vec![0u8; 64 * 1024];
        let (n, fds) = loop {
            match berth_sys::socket::recv_with_fds(&self.fd, &mut buf) {
                Err(nix::errno::Errno::EINTR) => continue,
                Err(nix::errno::Errno::EAGAIN) => {
                    return Err(Error::Init(
                        "the container's processes sent nothing within the timeout".into(),
                    ))
                }
                other => break other.context(|| "receive from child".to_string())?,
            }
        };
        if n == 0 {
            return Ok(None);
        }
        let msg = serde_json::from_slice(&buf[..n])
            .map_err(|e| Error::Init(format!("bad message from child: {e}")))?;
        Ok(Some((msg, fds)))
    }

    /// Receives and insists on `Proceed`.
    pub fn wait_proceed(&self) -> Result<()> {
        match self.recv()? {
            Some((Msg::Proceed, _)) => Ok(()),
            Some((Msg::Failed(why), _)) => Err(Error::Init(why)),
            other => Err(Error::Init(format!("unexpected message {other:?}"))),
        }
    }
}
