//! The container's terminal (a pty made inside its own devpts, checked to be
//! one) and its execution domain (personality).

use std::os::fd::{AsFd, OwnedFd};

use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use oci_spec::runtime::{LinuxPersonality, LinuxPersonalityDomain, Process};

use crate::error::{Context, Error, Result};

const DEVPTS_SUPER_MAGIC: i64 = 0x1cd1;

fn check_devpts(fd: impl AsFd, what: &str) -> Result<()> {
    let fs = nix::sys::statfs::fstatfs(fd).context(|| format!("statfs {what}"))?;
    if fs.filesystem_type().0 as i64 != DEVPTS_SUPER_MAGIC {
        return Err(Error::Init(format!("{what} is not on a devpts filesystem")));
    }
    Ok(())
}

/// Makes a pty in the container's /dev/pts, makes its slave the stdio and
/// controlling terminal of the calling process (and /dev/console), and
/// returns the master for the runtime to hand to the console socket.
pub fn setup_container_console(process: &Process) -> Result<OwnedFd> {
    make_console(process, true)
}

/// As for init, but /dev/console stays the init's.
pub fn setup_container_console_for_exec(process: &Process) -> Result<OwnedFd> {
    make_console(process, false)
}

fn make_console(process: &Process, bind_console: bool) -> Result<OwnedFd> {
    let master = nix::pty::posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .context(|| "open /dev/ptmx".to_string())?;
    check_devpts(&master, "/dev/ptmx")?;
    nix::pty::grantpt(&master).context(|| "grantpt".to_string())?;
    nix::pty::unlockpt(&master).context(|| "unlockpt".to_string())?;
    let name = nix::pty::ptsname_r(&master).context(|| "ptsname".to_string())?;
    let slave = nix::fcntl::open(
        name.as_str(),
        OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .context(|| format!("open {name}"))?;
    check_devpts(&slave, &name)?;
    if let Some(size) = process.console_size() {
        berth_sys::tty::set_window_size(&slave, size.height() as u16, size.width() as u16)
            .context(|| "set console size".to_string())?;
    }
    // /dev/console is the pty, as in runc; best effort when /dev is not ours.
    let console = std::path::Path::new("/dev/console");
    if bind_console && !console.exists() {
        let _ = std::fs::File::create(console);
    }
    if bind_console && console.exists() {
        nix::mount::mount(
            Some(name.as_str()),
            console,
            None::<&str>,
            nix::mount::MsFlags::MS_BIND,
            None::<&str>,
        )
        .context(|| "bind the pty on /dev/console".to_string())?;
    }
    nix::unistd::dup2_stdin(&slave).context(|| "dup pty to stdin".to_string())?;
    nix::unistd::dup2_stdout(&slave).context(|| "dup pty to stdout".to_string())?;
    nix::unistd::dup2_stderr(&slave).context(|| "dup pty to stderr".to_string())?;
    berth_sys::tty::set_controlling_terminal(std::io::stdin())
        .context(|| "make the pty the controlling terminal".to_string())?;
    Ok(master.into())
}

pub fn apply_personality(p: &LinuxPersonality) -> Result<()> {
    use nix::sys::personality::Persona;
    let mut persona = nix::sys::personality::get().context(|| "get personality".to_string())?;
    match p.domain() {
        LinuxPersonalityDomain::PerLinux => {}
        LinuxPersonalityDomain::PerLinux32 => {
            return Err(Error::InvalidConfig(
                "personality LINUX32 is not supported by this runtime".into(),
            ))
        }
    }
    if let Some(flags) = p.flags() {
        for f in flags {
            match f.as_str() {
                "ADDR_NO_RANDOMIZE" => persona |= Persona::ADDR_NO_RANDOMIZE,
                other => {
                    return Err(Error::InvalidConfig(format!(
                        "personality flag {other:?} is not supported"
                    )))
                }
            }
        }
    }
    nix::sys::personality::set(persona).context(|| "set personality".to_string())?;
    Ok(())
}
