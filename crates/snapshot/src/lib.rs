#![forbid(unsafe_code)]
//! Layer snapshots: unpack layers safely (whiteouts, opaque dirs), overlayfs with vfs fallback.
//!
//! [`unpack_layer`] applies a layer tar onto a directory without letting any
//! entry land outside it; [`SnapshotStore`] keeps committed layers and
//! container snapshots on disk, mounts them, and writes their diffs;
//! [`ContainerRoot`] reads and writes a mounted container root for
//! `docker cp`, `export` and `commit`, and [`SnapshotStore::changes`] lists
//! what a container changed (`docker diff`).

mod archive;
mod changes;
mod compress;
mod copy;
mod diff;
mod error;
mod extract;
mod inroot;
pub use inroot::{ensure_dir_in_root, ensure_init_files, MTAB_TARGET};
mod store;
mod unpack;

pub use archive::{ContainerRoot, ExtractDir, PathArchive, PathStat};
pub use changes::{Change, ChangeKind};
pub use extract::ExtractOptions;

pub use compress::{decompress, detect_compression, Compression};
pub use error::{Error, Result};
pub use store::{
    detect_driver, Driver, DriverProbe, MountSpec, SnapshotInfo, SnapshotKind, SnapshotStore,
};
pub use unpack::{
    unpack_layer, UnpackOptions, UnpackStats, WhiteoutForm, OPAQUE_WHITEOUT, OVERLAY_OPAQUE_XATTR,
    WHITEOUT_PREFIX,
};
