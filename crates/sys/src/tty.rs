//! Terminal ioctls the runtime needs on a pty: window size and making a pty
//! the controlling terminal of the container's session.

use std::os::fd::{AsFd, AsRawFd};

use nix::errno::Errno;

/// Sets rows and columns of the terminal behind `fd`.
pub fn set_window_size(fd: impl AsFd, rows: u16, cols: u16) -> Result<(), Errno> {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize struct that lives for the whole call.
    let rc = unsafe { libc::ioctl(fd.as_fd().as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    Errno::result(rc).map(drop)
}

/// Makes the terminal behind `fd` the controlling terminal of the calling
/// session leader.
pub fn set_controlling_terminal(fd: impl AsFd) -> Result<(), Errno> {
    // SAFETY: TIOCSCTTY takes an integer argument (0: don't steal from another session).
    let rc = unsafe { libc::ioctl(fd.as_fd().as_raw_fd(), libc::TIOCSCTTY, 0) };
    Errno::result(rc).map(drop)
}

/// Rows and columns of the terminal behind `fd`.
pub fn window_size(fd: impl AsFd) -> Result<(u16, u16), Errno> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes a winsize struct into memory we own for the call.
    let rc = unsafe { libc::ioctl(fd.as_fd().as_raw_fd(), libc::TIOCGWINSZ, &mut ws) };
    Errno::result(rc).map(|_| (ws.ws_row, ws.ws_col))
}
