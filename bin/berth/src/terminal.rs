//! The local terminal: raw mode while a container's tty has our keyboard,
//! and the window size a container's tty is resized to.

use std::io::IsTerminal;
use std::os::fd::AsFd;

use rustix::termios::{tcgetattr, tcgetwinsize, tcsetattr, OptionalActions, Termios};

/// Rows and columns of the terminal behind `fd`; `None` when it is not one
/// or reports no size.
pub fn size(fd: impl AsFd) -> Option<(u16, u16)> {
    let size = tcgetwinsize(fd).ok()?;
    (size.ws_row != 0 || size.ws_col != 0).then_some((size.ws_row, size.ws_col))
}

/// Stdin in raw mode (no echo, no line editing, no signals from keys: every
/// byte goes to the container) until dropped.
pub struct RawMode {
    saved: Termios,
}

impl RawMode {
    /// Raw mode on stdin if it is a terminal; `None` otherwise.
    pub fn enable() -> Result<Option<RawMode>, String> {
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            return Ok(None);
        }
        let saved = tcgetattr(stdin.as_fd())
            .map_err(|e| format!("unable to set IO streams as raw terminal: {e}"))?;
        let mut raw = saved.clone();
        raw.make_raw();
        tcsetattr(stdin.as_fd(), OptionalActions::Now, &raw)
            .map_err(|e| format!("unable to set IO streams as raw terminal: {e}"))?;
        Ok(Some(RawMode { saved }))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = tcsetattr(std::io::stdin().as_fd(), OptionalActions::Now, &self.saved);
    }
}
