//! `--console-socket`: the runtime connects to a socket the shim listens on
//! and sends the pty master with SCM_RIGHTS (runc's protocol).

use std::fs::File;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

/// A listening console socket; the file is removed on drop.
pub(crate) struct ConsoleSocket {
    listener: UnixListener,
    path: PathBuf,
}

impl ConsoleSocket {
    pub(crate) fn bind(path: PathBuf) -> io::Result<ConsoleSocket> {
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let listener = UnixListener::bind(&path)?;
        let socket = ConsoleSocket { listener, path };
        std::fs::set_permissions(&socket.path, std::fs::Permissions::from_mode(0o600))?;
        Ok(socket)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The pty master, once the runtime call that sends it has returned:
    /// its connection and message wait in the socket's queues.
    pub(crate) fn receive(&self) -> io::Result<File> {
        self.listener.set_nonblocking(true)?;
        let (stream, _) = self.listener.accept().map_err(|e| {
            if e.kind() == io::ErrorKind::WouldBlock {
                io::Error::other("the runtime did not send the terminal to the console socket")
            } else {
                e
            }
        })?;
        stream.set_nonblocking(false)?;
        let mut name = [0u8; 4096];
        let (_, mut fds) = berth_sys::socket::recv_with_fds(&stream, &mut name)?;
        if fds.is_empty() {
            return Err(io::Error::other(
                "the runtime sent no file descriptor to the console socket",
            ));
        }
        let master = File::from(fds.swap_remove(0));
        if !nix::unistd::isatty(&master).unwrap_or(false) {
            return Err(io::Error::other(
                "the runtime sent a file that is not a terminal to the console socket",
            ));
        }
        Ok(master)
    }
}

impl Drop for ConsoleSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
