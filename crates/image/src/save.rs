//! Writing images: the `docker save` archive as dockerd 20.10 writes it (config
//! `<hex>.json`, legacy `<v1 id>/{VERSION,json,layer.tar}`, `manifest.json`,
//! `repositories`), and an OCI image layout tarball that also carries a
//! `manifest.json`, so older docker loads it too.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader, Read, Write};

use chrono::DateTime;

use crate::digest::{Digest, HashingReader};
use crate::error::{ImageError, Result};
use crate::layer::{Compression, LayerReader};
use crate::legacy::{go_escape, legacy_layers};
use crate::load::{LoadedImage, LoadedLayer, ANNOTATION_CONTAINERD_NAME, ANNOTATION_REF_NAME};
use crate::manifest::{media_type, Descriptor, Index, Manifest};

enum Body<'a> {
    Bytes(Vec<u8>),
    /// A layer written uncompressed: blob, expected diff_id, uncompressed size.
    Uncompressed(&'a LoadedLayer, u64),
    /// A blob copied as stored, checked against its digest.
    Blob(&'a LoadedLayer),
    Dir,
    Symlink(String),
}

struct Entry<'a> {
    name: String,
    mtime: u64,
    body: Body<'a>,
}

fn created_mtime(image: &LoadedImage) -> u64 {
    image
        .config
        .parsed()
        .created
        .as_deref()
        .and_then(|c| DateTime::parse_from_rfc3339(c).ok())
        .map(|t| t.timestamp().max(0) as u64)
        .unwrap_or(0)
}

/// Uncompressed size of a layer, reading it once if it is compressed (the tar header
/// needs the size before the data).
fn uncompressed_size(layer: &LoadedLayer) -> Result<u64> {
    if layer.compression == Compression::None {
        return Ok(layer.size);
    }
    let reader = LayerReader::open(
        &layer.blob_path,
        Some(layer.diff_id.clone()),
        layer.blob_digest.as_ref(),
        0,
    )?;
    Ok(reader.drain()?.1)
}

/// Writes `images` as `docker save` does, entries in dockerd's (sorted) order.
pub fn write_docker_archive<W: Write>(images: &[LoadedImage], out: W) -> Result<W> {
    let mut entries: BTreeMap<String, Entry> = BTreeMap::new();
    let mut manifest = Vec::new();
    let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    // Layers already written, by chain ID, so a layer shared under another v1 ID
    // becomes a symlink as dockerd makes it.
    let mut by_chain: BTreeMap<Digest, String> = BTreeMap::new();
    for image in images {
        let mtime = created_mtime(image);
        let config_name = format!("{}.json", image.id().hex());
        entries.insert(
            config_name.clone(),
            Entry {
                name: config_name.clone(),
                mtime,
                body: Body::Bytes(image.config.raw().to_vec()),
            },
        );
        let legacy = legacy_layers(&image.config);
        let chain_ids = image.config.chain_ids();
        let mut layer_names = Vec::new();
        for ((v1, layer), chain_id) in legacy.iter().zip(&image.layers).zip(&chain_ids) {
            let dir = v1.id.clone();
            layer_names.push(format!("{dir}/layer.tar"));
            if entries.contains_key(&dir) {
                continue;
            }
            let body = match by_chain.get(chain_id) {
                Some(other) => Body::Symlink(format!("../{other}/layer.tar")),
                None => {
                    by_chain.insert(chain_id.clone(), dir.clone());
                    Body::Uncompressed(layer, uncompressed_size(layer)?)
                }
            };
            let file = |name: &str, body| Entry {
                name: format!("{dir}/{name}"),
                mtime,
                body,
            };
            for e in [
                Entry {
                    name: dir.clone(),
                    mtime,
                    body: Body::Dir,
                },
                file("VERSION", Body::Bytes(b"1.0".to_vec())),
                file("json", Body::Bytes(v1.json.clone())),
                file("layer.tar", body),
            ] {
                entries.insert(e.name.clone(), e);
            }
        }
        if image.layers.len() != legacy.len() {
            return Err(ImageError::LayerCountMismatch {
                image: image.id().to_string(),
                layers: image.layers.len(),
                diff_ids: legacy.len(),
            });
        }
        let tags: Vec<String> = image.repo_tags.iter().map(|r| r.familiar()).collect();
        if let Some(top) = legacy.last() {
            for r in image.repo_tags.iter() {
                if let Some(tag) = r.tag() {
                    repositories
                        .entry(r.familiar_name())
                        .or_default()
                        .insert(tag.to_string(), top.id.clone());
                }
            }
        }
        manifest.push(ManifestEntry {
            config: config_name,
            repo_tags: (!tags.is_empty()).then_some(tags),
            layers: layer_names,
        });
    }
    let mut tail = vec![Entry {
        name: "manifest.json".into(),
        mtime: 0,
        body: Body::Bytes(go_json(&manifest)),
    }];
    if !repositories.is_empty() {
        tail.push(Entry {
            name: "repositories".into(),
            mtime: 0,
            body: Body::Bytes(go_json(&repositories)),
        });
    }
    for e in tail {
        entries.insert(e.name.clone(), e);
    }
    write_entries(entries.into_values(), out)
}

/// Writes `images` as an OCI image layout tarball (blobs kept as stored).
pub fn write_oci_archive<W: Write>(images: &[LoadedImage], out: W) -> Result<W> {
    let mut blobs: BTreeMap<String, Entry> = BTreeMap::new();
    let mut index_entries = Vec::new();
    let mut docker_manifest = Vec::new();
    for image in images {
        let mtime = created_mtime(image);
        let config_desc = Descriptor::new(
            media_type::OCI_CONFIG,
            image.id().clone(),
            image.config.raw().len() as u64,
        );
        add_blob(
            &mut blobs,
            image.id(),
            mtime,
            Body::Bytes(image.config.raw().to_vec()),
        );
        let mut layers = Vec::new();
        for layer in &image.layers {
            layers.push(Descriptor::new(
                layer.compression.oci_media_type(),
                layer.blob_digest.clone(),
                layer.size,
            ));
            add_blob(&mut blobs, &layer.blob_digest, mtime, Body::Blob(layer));
        }
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(media_type::OCI_MANIFEST.to_string()),
            config: config_desc,
            layers,
            annotations: None,
            other: serde_json::Map::new(),
        };
        let manifest_bytes =
            serde_json::to_vec(&manifest).map_err(|e| ImageError::json("manifest", e))?;
        let manifest_digest = Digest::sha256_of(&manifest_bytes);
        let manifest_size = manifest_bytes.len() as u64;
        add_blob(
            &mut blobs,
            &manifest_digest,
            mtime,
            Body::Bytes(manifest_bytes),
        );
        let mut desc = Descriptor::new(
            media_type::OCI_MANIFEST,
            manifest_digest.clone(),
            manifest_size,
        );
        if image.repo_tags.is_empty() {
            index_entries.push(desc);
        } else {
            for r in &image.repo_tags {
                let mut annotations = BTreeMap::new();
                annotations.insert(ANNOTATION_CONTAINERD_NAME.to_string(), r.to_string());
                if let Some(tag) = r.tag() {
                    annotations.insert(ANNOTATION_REF_NAME.to_string(), tag.to_string());
                }
                desc.annotations = Some(annotations);
                index_entries.push(desc.clone());
            }
        }
        let tags: Vec<String> = image.repo_tags.iter().map(|r| r.familiar()).collect();
        docker_manifest.push(ManifestEntry {
            config: format!("blobs/sha256/{}", image.id().hex()),
            repo_tags: (!tags.is_empty()).then_some(tags),
            layers: image
                .layers
                .iter()
                .map(|l| format!("blobs/sha256/{}", l.blob_digest.hex()))
                .collect(),
        });
    }
    let index = Index {
        schema_version: 2,
        media_type: Some(media_type::OCI_INDEX.to_string()),
        manifests: index_entries,
        annotations: None,
        other: serde_json::Map::new(),
    };
    let mut entries = vec![
        Entry {
            name: "oci-layout".into(),
            mtime: 0,
            body: Body::Bytes(br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec()),
        },
        Entry {
            name: "blobs".into(),
            mtime: 0,
            body: Body::Dir,
        },
        Entry {
            name: "blobs/sha256".into(),
            mtime: 0,
            body: Body::Dir,
        },
    ];
    entries.extend(blobs.into_values());
    entries.push(Entry {
        name: "index.json".into(),
        mtime: 0,
        body: Body::Bytes(
            serde_json::to_vec(&index).map_err(|e| ImageError::json("index.json", e))?,
        ),
    });
    entries.push(Entry {
        name: "manifest.json".into(),
        mtime: 0,
        body: Body::Bytes(go_json(&docker_manifest)),
    });
    write_entries(entries.into_iter(), out)
}

fn add_blob<'a>(
    blobs: &mut BTreeMap<String, Entry<'a>>,
    digest: &Digest,
    mtime: u64,
    body: Body<'a>,
) {
    let name = format!("blobs/sha256/{}", digest.hex());
    blobs
        .entry(name.clone())
        .or_insert(Entry { name, mtime, body });
}

/// One `manifest.json` entry, fields in dockerd's order.
#[derive(serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct ManifestEntry {
    config: String,
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// JSON as Go's `json.Encoder` writes it: HTML-safe escaping and a newline.
fn go_json<T: serde::Serialize>(value: &T) -> Vec<u8> {
    let mut text = go_escape(&serde_json::to_string(value).unwrap_or_default());
    text.push('\n');
    text.into_bytes()
}

fn write_entries<'a, W: Write>(entries: impl Iterator<Item = Entry<'a>>, out: W) -> Result<W> {
    let mut builder = tar::Builder::new(out);
    for entry in entries {
        let mut header = tar::Header::new_ustar();
        header.set_mtime(entry.mtime);
        header.set_uid(0);
        header.set_gid(0);
        header.set_username("root").map_err(ImageError::Write)?;
        header.set_groupname("root").map_err(ImageError::Write)?;
        match entry.body {
            Body::Dir => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(0o755);
                header.set_size(0);
                builder
                    .append_data(&mut header, format!("{}/", entry.name), io::empty())
                    .map_err(ImageError::Write)?;
            }
            Body::Symlink(target) => {
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_mode(0o777);
                header.set_size(0);
                builder
                    .append_link(&mut header, &entry.name, &target)
                    .map_err(ImageError::Write)?;
            }
            Body::Bytes(bytes) => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(0o644);
                header.set_size(bytes.len() as u64);
                builder
                    .append_data(&mut header, &entry.name, &bytes[..])
                    .map_err(ImageError::Write)?;
            }
            Body::Uncompressed(layer, size) => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(0o644);
                header.set_size(size);
                let reader = LayerReader::open(
                    &layer.blob_path,
                    Some(layer.diff_id.clone()),
                    layer.blob_digest.as_ref(),
                    0,
                )?;
                append_checked(&mut builder, &mut header, &entry.name, reader)?;
            }
            Body::Blob(layer) => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(0o644);
                header.set_size(layer.size);
                let file = File::open(&layer.blob_path)
                    .map_err(|e| ImageError::io("opening", &layer.blob_path, e))?;
                let checked = DigestCheck {
                    inner: HashingReader::new(BufReader::new(file)),
                    expected: layer.blob_digest.clone(),
                    done: false,
                };
                append_checked(&mut builder, &mut header, &entry.name, checked)?;
            }
        }
    }
    builder.into_inner().map_err(ImageError::Write)
}

fn append_checked<W: Write, R: Read>(
    builder: &mut tar::Builder<W>,
    header: &mut tar::Header,
    name: &str,
    reader: R,
) -> Result<()> {
    builder
        .append_data(header, name, reader)
        .map_err(crate::layer::into_image_error)
        .map_err(|e| match e {
            ImageError::Read(io) => ImageError::Write(io),
            other => other,
        })
}

/// Copies a stored blob and fails at its end if it no longer has its digest.
struct DigestCheck<R> {
    inner: HashingReader<R>,
    expected: Digest,
    done: bool,
}

impl<R: Read> Read for DigestCheck<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() && !self.done {
            self.done = true;
            let actual = self.inner.digest();
            if actual != self.expected {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    ImageError::DigestMismatch {
                        name: self.expected.to_string(),
                        expected: self.expected.clone(),
                        actual,
                    },
                ));
            }
        }
        Ok(n)
    }
}
