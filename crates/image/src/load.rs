//! Reading image archives from a stream: `docker save` archives (manifest.json,
//! with the legacy `repositories` file for tags) and OCI image layouts (index.json).
//! Entries are spooled to the caller's directory as they come, because dockerd writes
//! layers before manifest.json; everything is resolved and verified afterwards.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::config::ImageConfig;
use crate::digest::{Digest, HashingWriter};
use crate::error::{ImageError, Result};
use crate::layer::{decompress, Compression};
use crate::manifest::{choose_platform, media_type, parse_manifest, Index, ManifestKind, Platform};
use crate::reference::Reference;

/// An image read from an archive or made by import, ready for the daemon to store.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadedImage {
    pub config: ImageConfig,
    pub layers: Vec<LoadedLayer>,
    pub repo_tags: Vec<Reference>,
}

impl LoadedImage {
    /// The image ID (`sha256:` + config digest), as dockerd reports it.
    pub fn id(&self) -> &Digest {
        self.config.digest()
    }
}

/// One layer blob in the spool directory.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadedLayer {
    /// sha256 of the uncompressed tar, verified against the config's rootfs.diff_ids.
    pub diff_id: Digest,
    /// sha256 of the blob as stored (compressed or not).
    pub blob_digest: Digest,
    pub blob_path: PathBuf,
    pub media_type: String,
    pub compression: Compression,
    /// Size of the blob as stored.
    pub size: u64,
}

/// Annotation dockerd (25+) and containerd put on index entries: the full image name.
pub const ANNOTATION_CONTAINERD_NAME: &str = "io.containerd.image.name";
/// The OCI annotation for a tag (skopeo writes only the tag, others the full name).
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";

#[derive(Clone, Debug)]
struct Spooled {
    digest: Digest,
    size: u64,
    path: PathBuf,
}

/// The archive's files: regular files spooled by content, symlinks as names.
struct Spool {
    files: BTreeMap<String, Spooled>,
    links: BTreeMap<String, String>,
}

impl Spool {
    fn resolve(&self, what: &str, name: &str) -> Result<&Spooled> {
        let missing = || ImageError::MissingArchiveFile {
            what: what.to_string(),
            name: name.to_string(),
        };
        let mut current = clean_name(name).map_err(|_| missing())?;
        for _ in 0..16 {
            if let Some(f) = self.files.get(&current) {
                return Ok(f);
            }
            match self.links.get(&current) {
                Some(target) => current = target.clone(),
                None => return Err(missing()),
            }
        }
        Err(missing())
    }

    fn contains(&self, name: &str) -> bool {
        self.files.contains_key(name) || self.links.contains_key(name)
    }

    fn read_json<T: for<'de> Deserialize<'de>>(&self, what: &str, name: &str) -> Result<T> {
        let bytes = self.read(what, name)?;
        serde_json::from_slice(&bytes).map_err(|e| ImageError::json(name, e))
    }

    fn read(&self, what: &str, name: &str) -> Result<Vec<u8>> {
        let f = self.resolve(what, name)?;
        fs::read(&f.path).map_err(|e| ImageError::io("reading spooled", &f.path, e))
    }
}

/// Reads a `docker save` archive or an OCI layout tarball from `reader`, spooling blobs
/// into `spool_dir` (named by their sha256). On error the caller removes `spool_dir`.
pub fn load_archive<R: Read>(reader: R, spool_dir: &Path) -> Result<Vec<LoadedImage>> {
    let spool = spool_entries(reader, spool_dir)?;
    if spool.contains("manifest.json") {
        load_docker(&spool)
    } else if spool.contains("index.json") {
        load_oci(&spool, &Platform::host())
    } else {
        Err(ImageError::UnknownArchiveFormat)
    }
}

/// Normalizes an entry name (`./a//b` → `a/b`); absolute names and `..` are refused.
fn clean_name(raw: &str) -> Result<String> {
    let traversal = || ImageError::PathTraversal {
        name: raw.to_string(),
    };
    if raw.starts_with('/') {
        return Err(traversal());
    }
    let mut parts = Vec::new();
    for part in raw.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(traversal()),
            p => parts.push(p),
        }
    }
    Ok(parts.join("/"))
}

/// Resolves a symlink target relative to the link's directory, inside the archive.
fn link_target(link: &str, target: &str) -> Result<String> {
    let traversal = || ImageError::PathTraversal {
        name: format!("{link} -> {target}"),
    };
    if target.starts_with('/') {
        return Err(traversal());
    }
    let mut parts: Vec<&str> = link.split('/').collect();
    parts.pop();
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop().ok_or_else(traversal)?;
            }
            p => parts.push(p),
        }
    }
    Ok(parts.join("/"))
}

fn corrupt(e: impl std::fmt::Display) -> ImageError {
    ImageError::CorruptArchive {
        reason: e.to_string(),
    }
}

fn spool_entries<R: Read>(reader: R, spool_dir: &Path) -> Result<Spool> {
    fs::create_dir_all(spool_dir)
        .map_err(|e| ImageError::io("creating spool directory", spool_dir, e))?;
    let mut archive = tar::Archive::new(reader);
    let mut spool = Spool {
        files: BTreeMap::new(),
        links: BTreeMap::new(),
    };
    let mut seen_any = false;
    for (n, entry) in archive.entries().map_err(corrupt)?.enumerate() {
        let mut entry = entry.map_err(corrupt)?;
        seen_any = true;
        let raw = String::from_utf8(entry.path_bytes().into_owned())
            .map_err(|_| corrupt("entry name is not UTF-8"))?;
        let name = clean_name(&raw)?;
        match entry.header().entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let tmp = spool_dir.join(format!("ingest-{n}"));
                let file = File::create(&tmp).map_err(|e| ImageError::io("creating", &tmp, e))?;
                let mut writer = HashingWriter::new(io::BufWriter::with_capacity(1 << 20, file));
                io::copy(&mut entry, &mut writer).map_err(|e| match e.kind() {
                    io::ErrorKind::UnexpectedEof => corrupt(format!("entry {name:?} is cut short")),
                    _ => corrupt(format!("entry {name:?}: {e}")),
                })?;
                let (buf, digest, size) = writer.finish();
                buf.into_inner()
                    .map_err(|e| ImageError::io("writing", &tmp, e.into_error()))?
                    .flush()
                    .map_err(|e| ImageError::io("writing", &tmp, e))?;
                let path = spool_dir.join(digest.hex());
                fs::rename(&tmp, &path).map_err(|e| ImageError::io("renaming", &tmp, e))?;
                spool.files.insert(name, Spooled { digest, size, path });
            }
            tar::EntryType::Symlink | tar::EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .ok_or_else(|| corrupt(format!("link {name:?} has no target")))?;
                let resolved = if entry.header().entry_type() == tar::EntryType::Link {
                    clean_name(&target)?
                } else {
                    link_target(&name, &target)?
                };
                spool.links.insert(name, resolved);
            }
            _ => {}
        }
    }
    if !seen_any {
        return Err(corrupt("the archive is empty"));
    }
    Ok(spool)
}

/// Reads a layer blob once: detects compression, checks it is a tar stream, and
/// computes its diff_id.
/// The compression and diff_id of a spooled layer. An uncompressed layer's
/// diff_id is its blob digest, already computed while spooling: it is not
/// read again (its tar structure is checked when it is unpacked).
fn inspect_layer(path: &Path, name: &str, blob_digest: &Digest) -> Result<(Compression, Digest)> {
    let mut file = File::open(path).map_err(|e| ImageError::io("opening", path, e))?;
    let mut head = [0u8; 8];
    let mut got = 0;
    while got < head.len() {
        match file.read(&mut head[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(ImageError::io("reading", path, e)),
        }
    }
    if Compression::detect(&head[..got], name)? == Compression::None {
        return Ok((Compression::None, blob_digest.clone()));
    }
    let file = File::open(path).map_err(|e| ImageError::io("opening", path, e))?;
    let (compression, stream) = decompress(BufReader::new(file), name)?;
    let bad = |e: io::Error| ImageError::CorruptLayer {
        name: name.to_string(),
        reason: e.to_string(),
    };
    let hashing = crate::digest::HashingReader::new(stream);
    let mut archive = tar::Archive::new(hashing);
    for entry in archive.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        io::copy(&mut entry, &mut io::sink()).map_err(bad)?;
    }
    let mut hashing = archive.into_inner();
    io::copy(&mut hashing, &mut io::sink()).map_err(bad)?;
    Ok((compression, hashing.finish().0))
}

fn layer_media_type(compression: Compression) -> &'static str {
    match compression {
        Compression::None => media_type::DOCKER_LAYER_TAR,
        Compression::Gzip => media_type::DOCKER_LAYER_GZIP,
        Compression::Zstd => media_type::OCI_LAYER_ZSTD,
    }
}

fn check_layers(config: &ImageConfig, layers: &[LoadedLayer]) -> Result<()> {
    let image = config.digest().to_string();
    if layers.len() != config.diff_ids().len() {
        return Err(ImageError::LayerCountMismatch {
            image,
            layers: layers.len(),
            diff_ids: config.diff_ids().len(),
        });
    }
    for (index, (layer, expected)) in layers.iter().zip(config.diff_ids()).enumerate() {
        if &layer.diff_id != expected {
            return Err(ImageError::DiffIdMismatch {
                image,
                index,
                expected: expected.clone(),
                actual: layer.diff_id.clone(),
            });
        }
    }
    Ok(())
}

/// A content-addressed name (`blobs/sha256/<hex>`) must hold what it names.
fn check_addressed(name: &str, blob: &Spooled) -> Result<()> {
    if let Some(hex) = name.strip_prefix("blobs/sha256/") {
        let expected = crate::digest::from_sha256_hex(hex)?;
        if expected != blob.digest {
            return Err(ImageError::DigestMismatch {
                name: name.to_string(),
                expected,
                actual: blob.digest.clone(),
            });
        }
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ArchiveManifestEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

fn load_docker(spool: &Spool) -> Result<Vec<LoadedImage>> {
    let entries: Vec<ArchiveManifestEntry> = spool.read_json("manifest.json", "manifest.json")?;
    // Legacy `repositories`: repository → tag → top layer v1 ID; used for images
    // whose manifest.json entry has no RepoTags.
    let legacy: BTreeMap<String, BTreeMap<String, String>> = if spool.contains("repositories") {
        spool.read_json("repositories", "repositories")?
    } else {
        BTreeMap::new()
    };
    let mut images = Vec::with_capacity(entries.len());
    let mut layer_cache: BTreeMap<Digest, (Compression, Digest)> = BTreeMap::new();
    for entry in entries {
        let config_blob = spool.resolve("manifest.json", &entry.config)?;
        check_addressed(&entry.config, config_blob)?;
        let config = ImageConfig::from_bytes(spool.read("manifest.json", &entry.config)?)?;
        let mut layers = Vec::with_capacity(entry.layers.len());
        for name in &entry.layers {
            let blob = spool.resolve("manifest.json", name)?;
            check_addressed(name, blob)?;
            let (compression, diff_id) = match layer_cache.get(&blob.digest) {
                Some(known) => known.clone(),
                None => {
                    let found = inspect_layer(&blob.path, name, &blob.digest)?;
                    layer_cache.insert(blob.digest.clone(), found.clone());
                    found
                }
            };
            layers.push(LoadedLayer {
                diff_id,
                blob_digest: blob.digest.clone(),
                blob_path: blob.path.clone(),
                media_type: layer_media_type(compression).to_string(),
                compression,
                size: blob.size,
            });
        }
        check_layers(&config, &layers)?;
        let mut repo_tags = Vec::new();
        for tag in entry.repo_tags.unwrap_or_default() {
            repo_tags.push(Reference::parse_normalized_tagged(&tag)?);
        }
        if repo_tags.is_empty() {
            let top = entry
                .layers
                .last()
                .and_then(|l| clean_name(l).ok())
                .and_then(|l| l.strip_suffix("/layer.tar").map(str::to_string));
            for (repo, tags) in &legacy {
                for (tag, id) in tags {
                    if Some(id) == top.as_ref() {
                        let r = Reference::parse_normalized(repo)?.with_tag(tag)?;
                        repo_tags.push(r);
                    }
                }
            }
        }
        images.push(LoadedImage {
            config,
            layers,
            repo_tags,
        });
    }
    Ok(images)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OciLayoutFile {
    image_layout_version: String,
}

fn load_oci(spool: &Spool, platform: &Platform) -> Result<Vec<LoadedImage>> {
    let layout: OciLayoutFile = spool.read_json("OCI layout", "oci-layout")?;
    if layout.image_layout_version != "1.0.0" {
        return Err(ImageError::UnsupportedMediaType {
            media_type: format!("imageLayoutVersion {}", layout.image_layout_version),
            what: "an OCI layout",
        });
    }
    let index_bytes = spool.read("OCI layout", "index.json")?;
    let index: Index = match parse_manifest(&index_bytes, Some(media_type::OCI_INDEX))? {
        ManifestKind::Index(i) => i,
        ManifestKind::Manifest(_) => {
            return Err(ImageError::UnsupportedMediaType {
                media_type: "image manifest".to_string(),
                what: "index.json",
            })
        }
    };
    // Entries naming the same manifest are one image with several tags.
    let mut images: Vec<LoadedImage> = Vec::new();
    let mut by_manifest: BTreeMap<Digest, usize> = BTreeMap::new();
    // The image spec says entries of a media type one does not know are ignored;
    // an index left with no image is refused, naming what was skipped.
    let mut skipped: Vec<&str> = Vec::new();
    for desc in &index.manifests {
        if !is_manifest_type(&desc.media_type) {
            skipped.push(&desc.media_type);
            continue;
        }
        let tag = oci_tag(desc)?;
        if let Some(&i) = by_manifest.get(&desc.digest) {
            if let Some(t) = tag {
                if !images[i].repo_tags.contains(&t) {
                    images[i].repo_tags.push(t);
                }
            }
            continue;
        }
        let mut image = load_oci_manifest(spool, desc, platform, 0)?;
        image.repo_tags.extend(tag);
        by_manifest.insert(desc.digest.clone(), images.len());
        images.push(image);
    }
    if images.is_empty() && !skipped.is_empty() {
        return Err(ImageError::UnsupportedMediaType {
            media_type: skipped.join(", "),
            what: "an entry of index.json",
        });
    }
    Ok(images)
}

/// Media types an index entry may have: manifests and indexes (schema 1
/// included, so that it gets its own error).
fn is_manifest_type(mt: &str) -> bool {
    [
        media_type::OCI_MANIFEST,
        media_type::OCI_INDEX,
        media_type::DOCKER_MANIFEST,
        media_type::DOCKER_MANIFEST_LIST,
        media_type::DOCKER_SCHEMA1,
        media_type::DOCKER_SCHEMA1_SIGNED,
    ]
    .contains(&mt)
}

/// The image name of an index entry: containerd's full name, or a ref.name that is a
/// full reference. A bare tag (skopeo's form) names no repository, so no tag.
fn oci_tag(desc: &crate::manifest::Descriptor) -> Result<Option<Reference>> {
    if let Some(name) = desc.annotation(ANNOTATION_CONTAINERD_NAME) {
        return Ok(Some(Reference::parse_normalized_tagged(name)?));
    }
    match desc.annotation(ANNOTATION_REF_NAME) {
        Some(name) if name.contains(['/', ':', '@']) => {
            Ok(Reference::parse_normalized_tagged(name).ok())
        }
        _ => Ok(None),
    }
}

fn blob_name(digest: &Digest) -> String {
    format!("blobs/{}/{}", digest.algorithm().as_str(), digest.hex())
}

fn verified_blob<'a>(
    spool: &'a Spool,
    what: &str,
    desc: &crate::manifest::Descriptor,
) -> Result<&'a Spooled> {
    let name = blob_name(&desc.digest);
    let blob = spool.resolve(what, &name)?;
    if blob.digest != desc.digest {
        return Err(ImageError::DigestMismatch {
            name,
            expected: desc.digest.clone(),
            actual: blob.digest.clone(),
        });
    }
    Ok(blob)
}

fn load_oci_manifest(
    spool: &Spool,
    desc: &crate::manifest::Descriptor,
    platform: &Platform,
    depth: usize,
) -> Result<LoadedImage> {
    let blob = verified_blob(spool, "index.json", desc)?;
    let bytes =
        fs::read(&blob.path).map_err(|e| ImageError::io("reading spooled", &blob.path, e))?;
    match parse_manifest(&bytes, Some(&desc.media_type))? {
        ManifestKind::Index(index) if depth < 4 => {
            let chosen = choose_platform(&index.manifests, platform)?;
            load_oci_manifest(spool, chosen, platform, depth + 1)
        }
        ManifestKind::Index(_) => Err(corrupt("indexes nested too deep")),
        ManifestKind::Manifest(manifest) => {
            let config_blob = verified_blob(spool, "image manifest", &manifest.config)?;
            let raw = fs::read(&config_blob.path)
                .map_err(|e| ImageError::io("reading spooled", &config_blob.path, e))?;
            let config = ImageConfig::from_bytes(raw)?;
            let mut layers = Vec::with_capacity(manifest.layers.len());
            for layer in &manifest.layers {
                let blob = verified_blob(spool, "image manifest", layer)?;
                let (compression, diff_id) =
                    inspect_layer(&blob.path, &blob_name(&layer.digest), &blob.digest)?;
                layers.push(LoadedLayer {
                    diff_id,
                    blob_digest: blob.digest.clone(),
                    blob_path: blob.path.clone(),
                    media_type: layer.media_type.clone(),
                    compression,
                    size: blob.size,
                });
            }
            check_layers(&config, &layers)?;
            Ok(LoadedImage {
                config,
                layers,
                repo_tags: Vec::new(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_names_are_cleaned_and_traversal_refused() {
        assert_eq!(clean_name("./a//b/./c").expect("ok"), "a/b/c");
        for bad in ["../x", "a/../../x", "/etc/passwd", "a/.."] {
            assert!(
                matches!(clean_name(bad), Err(ImageError::PathTraversal { .. })),
                "{bad}"
            );
        }
        assert_eq!(
            link_target("a/layer.tar", "../b/layer.tar").expect("ok"),
            "b/layer.tar"
        );
        assert!(matches!(
            link_target("a/layer.tar", "../../x"),
            Err(ImageError::PathTraversal { .. })
        ));
        assert!(matches!(
            link_target("a/layer.tar", "/x"),
            Err(ImageError::PathTraversal { .. })
        ));
    }
}
