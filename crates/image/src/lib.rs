#![forbid(unsafe_code)]
//! OCI and Docker images: references, manifests, index and platform choice, config,
//! docker-archive and OCI layout, import of a rootfs tarball.
//!
//! No daemon state lives here: readers spool blobs into a directory the caller owns
//! (on the same filesystem as the content store, so adopting a blob is a rename) and
//! return [`LoadedImage`]s; writers stream from blob files the caller names.

pub mod config;
pub mod digest;
pub mod error;
pub mod import;
pub mod layer;
pub mod legacy;
pub mod load;
pub mod manifest;
pub mod reference;
pub mod save;

pub use config::{chain_id, chain_ids, ConfigFile, ContainerConfig, ImageConfig};
pub use digest::Digest;
pub use error::{ImageError, Result};
pub use import::{apply_changes, import_rootfs, ImportOptions};
pub use layer::{Compression, LayerReader};
pub use load::{load_archive, LoadedImage, LoadedLayer};
pub use manifest::{
    choose_platform, parse_manifest, Descriptor, Index, Manifest, ManifestKind, Platform,
};
pub use reference::Reference;
pub use save::{write_docker_archive, write_oci_archive};
