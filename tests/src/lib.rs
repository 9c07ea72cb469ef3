#![forbid(unsafe_code)]
//! Fixtures for the root integration tests: a busybox root filesystem made from
//! the host's static busybox, OCI bundles around it, and guards that always clean up.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The static busybox the fixtures are made from (Debian's `busybox-static`).
pub const BUSYBOX: &str = "/bin/busybox";

/// Writes a minimal busybox root filesystem into `rootfs`: `/bin/busybox`, a
/// symlink per applet, and the files an image usually has (`/etc/passwd`, `/etc/group`).
pub fn make_busybox_rootfs(rootfs: &Path) -> std::io::Result<()> {
    let bin = rootfs.join("bin");
    std::fs::create_dir_all(&bin)?;
    for dir in ["etc", "tmp", "proc", "sys", "dev", "root", "home", "var", "usr/bin"] {
        std::fs::create_dir_all(rootfs.join(dir))?;
    }
    std::fs::copy(BUSYBOX, bin.join("busybox"))?;
    let out = Command::new(BUSYBOX).arg("--list").output()?;
    if !out.status.success() {
        return Err(std::io::Error::other("busybox --list failed"));
    }
    for applet in String::from_utf8_lossy(&out.stdout).lines() {
        let applet = applet.trim();
        if applet.is_empty() || applet == "busybox" {
            continue;
        }
        let link = bin.join(applet);
        if !link.exists() {
            std::os::unix::fs::symlink("busybox", &link)?;
        }
    }
    std::fs::write(
        rootfs.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\ndaemon:x:1:1:daemon:/usr/sbin:/bin/false\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    )?;
    std::fs::write(
        rootfs.join("etc/group"),
        "root:x:0:\ndaemon:x:1:\ntty:x:5:\nnogroup:x:65534:\n",
    )?;
    Ok(())
}

/// Path of a binary built by this workspace (`target/<profile>/<name>`).
pub fn workspace_binary(name: &str) -> PathBuf {
    let mut dir = std::env::current_exe().expect("test binary path");
    // target/<profile>/deps/<test-binary> -> target/<profile>/<name>
    dir.pop();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir.join(name)
}
