//! Unsafe syscall wrappers.
