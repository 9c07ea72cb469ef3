//! Inode flags (`chattr`): the one Berth sets.

use std::os::fd::AsRawFd;

/// `FS_TOPDIR_FL` (`chattr +T`), from linux/fs.h.
const FS_TOPDIR_FL: libc::c_int = 0x0002_0000;

/// Marks directory `dir` as the top of a directory hierarchy (`chattr +T`):
/// ext2/3/4 then place each new subdirectory in a block group of their own
/// choosing (the Orlov allocator spreads them) instead of beside its
/// siblings. A snapshot store's layers are unrelated trees; spread out, a
/// new layer's files do not land among the inodes a just-removed layer
/// freed, which ext4 without a journal scans past on every file it creates.
/// Filesystems without the flag answer an error, which callers may ignore.
pub fn mark_top_dir(dir: &std::fs::File) -> std::io::Result<()> {
    let fd = dir.as_raw_fd();
    let mut flags: libc::c_int = 0;
    // SAFETY: FS_IOC_GETFLAGS writes one int through the pointer, which is
    // valid for the duration of the call.
    if unsafe { libc::ioctl(fd, libc::FS_IOC_GETFLAGS, &mut flags) } == -1 {
        return Err(std::io::Error::last_os_error());
    }
    if flags & FS_TOPDIR_FL != 0 {
        return Ok(());
    }
    flags |= FS_TOPDIR_FL;
    // SAFETY: FS_IOC_SETFLAGS reads one int through the pointer.
    if unsafe { libc::ioctl(fd, libc::FS_IOC_SETFLAGS, &flags) } == -1 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Whether `dir` carries the flag [`mark_top_dir`] sets.
pub fn is_top_dir(dir: &std::fs::File) -> std::io::Result<bool> {
    let mut flags: libc::c_int = 0;
    // SAFETY: as in mark_top_dir.
    if unsafe { libc::ioctl(dir.as_raw_fd(), libc::FS_IOC_GETFLAGS, &mut flags) } == -1 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(flags & FS_TOPDIR_FL != 0)
}
