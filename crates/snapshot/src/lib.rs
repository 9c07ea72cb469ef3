#![forbid(unsafe_code)]
//! Layer snapshots: unpack layers safely (whiteouts, opaque dirs), overlayfs with vfs fallback
