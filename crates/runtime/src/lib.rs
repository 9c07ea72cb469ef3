#![forbid(unsafe_code)]
//! The OCI runtime library: turns a bundle into a running, confined container.

pub mod config;
pub mod container;
pub mod error;
pub mod exec;
pub mod hooks;
pub mod process;
pub mod rootfs;
pub mod sealed_exe;
pub mod state;
pub mod sync;
pub mod tty;

pub use error::{Error, Result};
