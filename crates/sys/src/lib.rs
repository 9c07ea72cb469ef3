//! The only crate with `unsafe`: thin, checked wrappers over the Linux calls the
//! runtime needs that `nix` does not offer safely (fork, fd adoption, fd
//! passing, seccomp, capabilities). Everything else uses `nix` directly.

pub mod bpf;
pub mod capabilities;
pub mod fs_flags;
pub mod net;
pub mod process;
pub mod seccomp;
pub mod socket;
pub mod tty;
