//! `docker push`: upload the layer and config blobs the registry lacks,
//! `max-concurrent-uploads` layers at a time (a blob the registry has is
//! skipped after a HEAD; one it has in another repository that an image
//! here came from is mounted with `?mount=&from=`; a small one goes in one
//! PUT, a big one in PATCH chunks with Content-Range), then PUT a manifest
//! built from the config and the layer blobs berthd keeps (Docker schema
//! 2; OCI when a layer is zstd) and record the repo digest. A layer that
//! fails on the registry's side (connection, 5xx) is tried again. An image
//! pushed as it was pulled goes with the manifest it was pulled with,
//! byte for byte; one pulled through an index goes with the whole index
//! when every platform it lists is here (each platform's blobs and
//! manifest, then the index under the tag).

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;

use berth_content::Digest;
use berth_image::manifest::media_type;
use berth_image::{
    Compression, Descriptor, ImageConfig, LoadedLayer, Manifest, ManifestKind, Platform, Reference,
};

use super::pull::{config_platform, is_platform_image, platform_matches, ATTEMPTS, BACKOFF};
use super::{Body, Credentials, Registry, RegistrySettings, Status, TransferLimits};
use crate::error::{Error, Result};
use crate::images::{ImageService, PushSource};

/// Blobs larger than this go up in PATCH chunks of this size.
const CHUNK_SIZE: u64 = 16 << 20;

/// Reports bytes read every 512 KiB.
struct Counted<'a, R> {
    inner: R,
    done: u64,
    reported: u64,
    report: &'a mut dyn FnMut(u64),
}

impl<R: Read> Read for Counted<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.done += n as u64;
        if n == 0 || self.done - self.reported >= 512 << 10 {
            self.reported = self.done;
            (self.report)(self.done);
        }
        Ok(n)
    }
}

fn short(d: &Digest) -> String {
    d.hex().get(..12).unwrap_or_default().to_string()
}

/// The push API's `platform` (API 1.46 and later): an OCI platform as
/// JSON, `{"os":"linux","architecture":"arm64"}`, as the docker CLI sends
/// `docker push --platform`.
pub fn parse_platform_json(text: &str) -> Result<Platform> {
    let platform: Platform = serde_json::from_str(text)
        .map_err(|e| Error::InvalidArgument(format!("failed to parse platform {text:?}: {e}")))?;
    if platform.os.is_empty() || platform.architecture.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "platform {text:?}: both OS and Architecture must be provided"
        )));
    }
    Ok(platform.normalized())
}

/// What a push sends under the tag: one image's manifest, or every
/// platform's manifest by digest and then the index (the bytes it was
/// pulled with).
enum Plan {
    Single {
        image: Box<PushSource>,
        /// Why not the index the image came from.
        note: Option<String>,
    },
    Index {
        platforms: Vec<PushSource>,
        bytes: Vec<u8>,
        media_type: String,
        digest: Digest,
    },
}

impl Plan {
    fn single(image: PushSource, note: Option<String>) -> Plan {
        Plan::Single {
            image: Box::new(image),
            note,
        }
    }

    fn images(&self) -> Vec<&PushSource> {
        match self {
            Plan::Single { image, .. } => vec![image],
            Plan::Index { platforms, .. } => platforms.iter().collect(),
        }
    }
}

/// The index `source` was pulled through, as kept here: its bytes, media
/// type and entries.
fn kept_index(
    images: &ImageService,
    source: &PushSource,
) -> Option<(Digest, Vec<u8>, String, Vec<Descriptor>)> {
    let digest = source.kept.as_ref()?.index_digest.clone()?;
    let bytes = images.kept_blob(&digest)?;
    let ManifestKind::Index(index) = berth_image::parse_manifest(&bytes, None).ok()? else {
        return None;
    };
    let media_type = index
        .media_type
        .clone()
        .unwrap_or_else(|| media_type::OCI_INDEX.to_string());
    Some((digest, bytes, media_type, index.manifests))
}

/// Decides what a push of `source` (the image `reference` names) sends:
/// with `platform`, that platform's image alone (this image or another
/// platform of the index it came from); else the whole index when every
/// manifest it lists is here, or this image's manifest with a note saying
/// which platforms kept the index back.
fn plan(
    images: &ImageService,
    reference: &Reference,
    source: PushSource,
    platform: Option<&Platform>,
) -> Result<Plan> {
    let index = kept_index(images, &source);
    if let Some(wanted) = platform {
        if platform_matches(&config_platform(&source.config), wanted) {
            return Ok(Plan::single(source, None));
        }
        let mut here = vec![config_platform(&source.config).to_string()];
        for entry in index.iter().flat_map(|(_, _, _, entries)| entries) {
            if let Some(image) = images.image_keeping(&entry.digest) {
                let got = config_platform(&image.config);
                if platform_matches(&got, wanted) {
                    return Ok(Plan::single(image, None));
                }
                here.push(got.to_string());
            }
        }
        here.sort();
        here.dedup();
        return Err(Error::NotFound(format!(
            "image {} has no {} image here to push (here: {})",
            reference.familiar(),
            wanted.normalized(),
            here.join(", ")
        )));
    }
    let Some((digest, bytes, media_type, entries)) = index else {
        return Ok(Plan::single(source, None));
    };
    let mut platforms = Vec::new();
    // Platforms a pull could add, and entries no pull keeps (attestations,
    // other artifacts, nested indexes).
    let mut missing = Vec::new();
    let mut not_kept = 0;
    for entry in &entries {
        match images.image_keeping(&entry.digest) {
            Some(image) => platforms.push(image),
            None => match &entry.platform {
                Some(p) if is_platform_image(entry) => missing.push(p.normalized().to_string()),
                _ => not_kept += 1,
            },
        }
    }
    if missing.is_empty() && not_kept == 0 && !platforms.is_empty() {
        return Ok(Plan::Index {
            platforms,
            bytes,
            media_type,
            digest,
        });
    }
    let mut why = Vec::new();
    if !missing.is_empty() {
        why.push(format!(
            "{} {} not here (docker pull --platform adds a platform)",
            missing.join(", "),
            if missing.len() == 1 { "is" } else { "are" }
        ));
    }
    if not_kept > 0 {
        why.push(format!(
            "it lists {not_kept} {} no pull keeps (attestations or other artifacts)",
            if not_kept == 1 { "entry" } else { "entries" }
        ));
    }
    let note = format!(
        "The image index {digest} that {} was pulled with was not pushed: {}; pushed the {} manifest only",
        reference.familiar(),
        why.join("; "),
        config_platform(&source.config)
    );
    Ok(Plan::single(source, Some(note)))
}

/// What [`push`] of `reference` for `platform` would refuse before it
/// sends anything (no such image, no such platform here), so the API can
/// answer with a status instead of a stream.
pub fn check_push(
    images: &ImageService,
    reference: &Reference,
    platform: Option<&Platform>,
) -> Result<()> {
    for reference in references_to_push(images, reference)? {
        let source = images.push_source(&reference)?;
        plan(images, &reference, source, platform)?;
    }
    Ok(())
}

/// The tags a push of `reference` sends: that tag, or, for a bare
/// repository name, every tag of it here (as dockerd; `docker push -a`).
fn references_to_push(images: &ImageService, reference: &Reference) -> Result<Vec<Reference>> {
    if reference.tag().is_some() {
        return Ok(vec![reference.clone()]);
    }
    if reference.digest().is_some() {
        return Ok(vec![reference.clone().with_default_tag()]);
    }
    let tags = images.repository_tags(reference)?;
    if tags.is_empty() {
        return Err(Error::NotFound(format!(
            "An image does not exist locally with the tag: {}",
            reference.familiar_name()
        )));
    }
    Ok(tags)
}

/// Pushes the local image `reference` (a tag; every tag of the repository
/// here when none is given) to its registry (never to a mirror). With
/// `platform`, only that platform's image of the index it was pulled with.
pub fn push(
    settings: &RegistrySettings,
    images: &ImageService,
    reference: &Reference,
    platform: Option<&Platform>,
    credentials: Option<&Credentials>,
    limits: &TransferLimits,
    progress: &mut dyn FnMut(Status),
) -> Result<()> {
    let references = references_to_push(images, reference)?;
    // One line for the repository, however many tags go (as dockerd).
    progress(Status::line(format!(
        "The push refers to repository [{}]",
        reference.familiar_name()
    )));
    for reference in &references {
        push_tag(
            settings,
            images,
            reference,
            platform,
            credentials,
            limits,
            progress,
        )?;
    }
    Ok(())
}

/// [`push`] of one tag.
fn push_tag(
    settings: &RegistrySettings,
    images: &ImageService,
    reference: &Reference,
    platform: Option<&Platform>,
    credentials: Option<&Credentials>,
    limits: &TransferLimits,
    progress: &mut dyn FnMut(Status),
) -> Result<()> {
    let reference = reference.clone();
    let tag = reference.tag().unwrap_or("latest").to_string();
    let source = images.push_source(&reference)?;
    // Where the index came from holds every blob it names: a mount source.
    let index_repos = source
        .kept
        .as_ref()
        .and_then(|k| k.index_digest.as_ref())
        .map(|d| images.repositories_of_digest(d, reference.domain()))
        .unwrap_or_default();
    let tagged = source.id.clone();
    let plan = plan(images, &reference, source, platform)?;

    // Each layer once, base layers of each platform first.
    let mut seen = HashSet::new();
    let layers: Vec<&LoadedLayer> = plan
        .images()
        .into_iter()
        .flat_map(|image| image.layers.iter())
        .filter(|l| seen.insert(l.blob_digest.clone()))
        .collect();
    let sources: HashMap<Digest, Vec<String>> = layers
        .iter()
        .map(|l| {
            let mut from = images.mount_sources(&l.blob_digest, reference.domain());
            from.extend(index_repos.iter().cloned());
            from.sort();
            from.dedup();
            from.retain(|f| f != reference.path());
            (l.blob_digest.clone(), from)
        })
        .collect();
    let mut mount_from: Vec<String> = sources.values().flatten().cloned().collect();
    mount_from.sort();
    mount_from.dedup();
    let registry = Registry::open_for_push(
        settings,
        reference.domain(),
        credentials,
        reference.path(),
        &mount_from,
    )?;
    push_layers(
        &PushJob {
            registry: &registry,
            reference: &reference,
            sources: &sources,
            cancel: AtomicBool::new(false),
        },
        &layers,
        limits.uploads.max(1),
        progress,
    )?;
    for image in plan.images() {
        push_config(&registry, &reference, &image.config)?;
    }

    let name = Reference::parse_normalized(&reference.name()).ok();
    let record = |image: &PushSource, digest: &Digest| {
        if let Some(name) = &name {
            if let Err(e) =
                images.record_pushed(&image.id, &name.clone().with_digest(digest.clone()))
            {
                tracing::warn!("recording the repo digest of {}: {e}", reference.familiar());
            }
        }
    };
    let (digest, size) = match &plan {
        Plan::Single { image, note } => {
            // The manifest the image was pulled with, unchanged, when it
            // names exactly what was pushed (its digest stays the
            // source's); else one built from the config and the layers,
            // as dockerd does.
            let (body, content_type) = match &image.kept {
                Some(kept) => (kept.bytes.clone(), kept.media_type.clone()),
                None => built_manifest(&image.config, &image.layers)?,
            };
            put_manifest(&registry, &reference, &tag, &body, &content_type)?;
            let digest = Digest::sha256_of(&body);
            record(image, &digest);
            if let Some(note) = note {
                progress(Status::line(note.clone()));
            }
            (digest, body.len())
        }
        Plan::Index {
            platforms,
            bytes,
            media_type,
            digest,
        } => {
            for image in platforms {
                let Some(kept) = &image.kept else { continue };
                put_manifest(
                    &registry,
                    &reference,
                    kept.digest.as_str(),
                    &kept.bytes,
                    &kept.media_type,
                )?;
            }
            put_manifest(&registry, &reference, &tag, bytes, media_type)?;
            // The tagged image is known there by the index's digest (as a
            // pull through the index records it), the others by their own.
            for image in platforms {
                match &image.kept {
                    _ if image.id == tagged => record(image, digest),
                    Some(kept) => record(image, &kept.digest),
                    None => {}
                }
            }
            (digest.clone(), bytes.len())
        }
    };
    progress(Status::line(format!(
        "{tag}: digest: {digest} size: {size}"
    )));
    Ok(())
}

/// A manifest for `config` and `layers` (Docker schema 2; OCI when a layer
/// is zstd) and its media type.
fn built_manifest(config: &ImageConfig, layers: &[LoadedLayer]) -> Result<(Vec<u8>, String)> {
    let oci = layers.iter().any(|l| l.compression == Compression::Zstd);
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(
            if oci {
                media_type::OCI_MANIFEST
            } else {
                media_type::DOCKER_MANIFEST
            }
            .to_string(),
        ),
        config: Descriptor::new(
            if oci {
                media_type::OCI_CONFIG
            } else {
                media_type::DOCKER_CONFIG
            },
            config.digest().clone(),
            config.raw().len() as u64,
        ),
        layers: layers
            .iter()
            .map(|l| {
                let mt = match (oci, l.compression) {
                    (true, c) => c.oci_media_type(),
                    (false, Compression::Gzip) => media_type::DOCKER_LAYER_GZIP,
                    (false, _) => media_type::DOCKER_LAYER_TAR,
                };
                Descriptor::new(mt, l.blob_digest.clone(), l.size)
            })
            .collect(),
        annotations: None,
        other: serde_json::Map::new(),
    };
    let body = serde_json::to_vec_pretty(&manifest)
        .map_err(|e| Error::Internal(format!("encode manifest: {e}")))?;
    Ok((body, manifest.media_type.unwrap_or_default()))
}

/// Pushes `layers` (base layers first), `parallel` at a time, top layer
/// first as dockerd lists them; the first failure stops the others.
fn push_layers(
    job: &PushJob<'_>,
    layers: &[&LoadedLayer],
    parallel: usize,
    progress: &mut dyn FnMut(Status),
) -> Result<()> {
    let ids: Vec<String> = layers.iter().map(|l| short(&l.diff_id)).collect();
    for id in ids.iter().rev() {
        progress(Status::layer(id, "Preparing"));
    }
    for id in ids.iter().rev().skip(parallel) {
        progress(Status::layer(id, "Waiting"));
    }
    let order: Vec<usize> = (0..layers.len()).rev().collect();
    let next = AtomicUsize::new(0);
    let (sender, receiver) = mpsc::channel::<Status>();
    let failures: Vec<Error> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..parallel.min(order.len()))
            .map(|_| {
                let sender = sender.clone();
                let (order, next, ids) = (&order, &next, &ids);
                scope.spawn(move || {
                    let mut failures = Vec::new();
                    loop {
                        let n = next.fetch_add(1, Ordering::Relaxed);
                        let Some(&i) = order.get(n) else { break };
                        if job.cancel.load(Ordering::Relaxed) {
                            break;
                        }
                        if let Err(e) = job.push_layer(layers[i], &ids[i], &sender) {
                            job.cancel.store(true, Ordering::Relaxed);
                            failures.push(e);
                        }
                    }
                    failures
                })
            })
            .collect();
        drop(sender);
        for status in receiver {
            progress(status);
        }
        workers
            .into_iter()
            .flat_map(|w| {
                w.join()
                    .unwrap_or_else(|_| vec![Error::Internal("an upload worker panicked".into())])
            })
            .collect()
    });
    match failures.into_iter().next() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Uploads an image's config blob unless the registry has it.
fn push_config(registry: &Registry, reference: &Reference, config: &ImageConfig) -> Result<()> {
    let digest = config.digest();
    if blob_exists(registry, reference, digest)? {
        return Ok(());
    }
    let location = new_upload(registry, reference)?;
    upload_monolithic(
        registry,
        reference,
        &location,
        digest,
        Body::Bytes(config.raw()),
    )
}

/// PUTs a manifest (or index) `body` under `name` (a tag or its digest).
fn put_manifest(
    registry: &Registry,
    reference: &Reference,
    name: &str,
    body: &[u8],
    content_type: &str,
) -> Result<()> {
    let path = format!("/v2/{}/manifests/{name}", reference.path());
    let response = registry.send(
        "PUT",
        &path,
        &[("Content-Type", content_type)],
        Body::Bytes(body),
    )?;
    if response.status != 201 && response.status != 200 {
        return Err(Error::Internal(format!(
            "registry {} refused the manifest of {}: {}",
            reference.domain(),
            reference.familiar(),
            response.error_text()
        )));
    }
    Ok(())
}

/// What one push shares with its upload workers.
struct PushJob<'a> {
    registry: &'a Registry,
    reference: &'a Reference,
    /// Per layer blob, the repositories of this registry to mount it from.
    sources: &'a HashMap<Digest, Vec<String>>,
    /// Set by the first failure: the other workers start nothing new.
    cancel: AtomicBool,
}

impl PushJob<'_> {
    /// Pushes one layer; a failure the registry may get over (a dropped
    /// connection, a 5xx) starts the layer again, a few times with back-off.
    fn push_layer(
        &self,
        layer: &LoadedLayer,
        id: &str,
        status: &mpsc::Sender<Status>,
    ) -> Result<()> {
        let mut attempt = 1;
        loop {
            match self.try_push_layer(layer, id, status) {
                Err(Error::Internal(e))
                    if attempt < ATTEMPTS && !self.cancel.load(Ordering::Relaxed) =>
                {
                    let pause = BACKOFF * 2u32.pow(attempt - 1);
                    tracing::info!(
                        "pushing layer {}: {e}; again in {pause:?}",
                        layer.blob_digest
                    );
                    let _ = status.send(Status::layer(
                        id,
                        format!("Retrying in {} seconds", pause.as_secs().max(1)),
                    ));
                    std::thread::sleep(pause);
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    fn try_push_layer(
        &self,
        layer: &LoadedLayer,
        id: &str,
        status: &mpsc::Sender<Status>,
    ) -> Result<()> {
        let (registry, reference) = (self.registry, self.reference);
        let digest = &layer.blob_digest;
        if blob_exists(registry, reference, digest)? {
            let _ = status.send(Status::layer(id, "Layer already exists"));
            return Ok(());
        }
        // A registry that can't mount answers with a plain upload session.
        let source = self
            .sources
            .get(digest)
            .and_then(|from| from.first())
            .cloned();
        let location = match source {
            Some(from) => match start_upload(registry, reference, Some((digest, &from))) {
                Ok(Upload::Mounted) => {
                    // The repository's path on the registry, as dockerd
                    // shows it (`library/busybox`, `team/app`).
                    let _ = status.send(Status::layer(id, format!("Mounted from {from}")));
                    return Ok(());
                }
                Ok(Upload::Started(at)) => at,
                // A registry that refuses the mount (e.g. no pull access
                // to `from`) may still take an upload.
                Err(e) => {
                    tracing::info!("mounting {digest} from {from}: {e}; uploading it instead");
                    new_upload(registry, reference)?
                }
            },
            None => new_upload(registry, reference)?,
        };
        let file = std::fs::File::open(&layer.blob_path)
            .map_err(|e| Error::io(format!("open layer blob {digest}"), e))?;
        let total = layer.size;
        let mut report = |done: u64| {
            let _ = status.send(Status {
                id: Some(id.to_string()),
                status: "Pushing".into(),
                progress: Some((done, total)),
            });
        };
        let mut counted = Counted {
            inner: file,
            done: 0,
            reported: 0,
            report: &mut report,
        };
        if total > CHUNK_SIZE {
            upload_chunked(registry, reference, location, digest, &mut counted, total)?;
        } else {
            upload_monolithic(
                registry,
                reference,
                &location,
                digest,
                Body::Reader(&mut counted, total),
            )?;
        }
        let _ = status.send(Status::layer(id, "Pushed"));
        Ok(())
    }
}

fn blob_exists(registry: &Registry, reference: &Reference, digest: &Digest) -> Result<bool> {
    let path = format!("/v2/{}/blobs/{digest}", reference.path());
    let response = registry.send("HEAD", &path, &[], Body::Empty)?;
    match response.status {
        200 => Ok(true),
        404 => Ok(false),
        401 | 403 => Err(Error::InvalidArgument(format!(
            "push access denied for {}: authentication required",
            reference.familiar_name()
        ))),
        status => Err(Error::Internal(format!(
            "registry {} answered {status} for blob {digest}",
            reference.domain()
        ))),
    }
}

/// What POST `/blobs/uploads/` gave.
enum Upload {
    /// The blob was mounted from another repository; nothing to send.
    Mounted,
    /// An upload session at this location.
    Started(String),
}

/// Starts an upload session; with `mount`, asks the registry to mount the
/// blob from another repository first.
fn start_upload(
    registry: &Registry,
    reference: &Reference,
    mount: Option<(&Digest, &str)>,
) -> Result<Upload> {
    let mut start = format!("/v2/{}/blobs/uploads/", reference.path());
    if let Some((digest, from)) = mount {
        start.push_str(&format!("?mount={digest}&from={from}"));
    }
    let response = registry.send("POST", &start, &[], Body::Empty)?;
    match response.status {
        201 if mount.is_some() => return Ok(Upload::Mounted),
        202 => {}
        _ => {
            return Err(Error::Internal(format!(
                "registry {} refused an upload to {}: {}",
                reference.domain(),
                reference.familiar_name(),
                response.error_text()
            )))
        }
    }
    response
        .header("location")
        .map(|l| Upload::Started(l.to_string()))
        .ok_or_else(|| {
            Error::Internal(format!(
                "registry {} started an upload without a Location",
                reference.domain()
            ))
        })
}

/// Starts a plain upload session; returns its location.
fn new_upload(registry: &Registry, reference: &Reference) -> Result<String> {
    match start_upload(registry, reference, None)? {
        Upload::Started(location) => Ok(location),
        Upload::Mounted => Err(Error::Internal(format!(
            "registry {} answered a plain upload with a mount",
            reference.domain()
        ))),
    }
}

/// `location` with `digest=` added to its query.
fn with_digest(location: &str, digest: &Digest) -> String {
    let separator = if location.contains('?') { '&' } else { '?' };
    format!("{location}{separator}digest={digest}")
}

/// The whole blob in one PUT.
fn upload_monolithic(
    registry: &Registry,
    reference: &Reference,
    location: &str,
    digest: &Digest,
    body: Body<'_>,
) -> Result<()> {
    let response = registry.send(
        "PUT",
        &with_digest(location, digest),
        &[("Content-Type", "application/octet-stream")],
        body,
    )?;
    if response.status != 201 {
        return Err(Error::Internal(format!(
            "registry {} refused blob {digest}: {}",
            reference.domain(),
            response.error_text()
        )));
    }
    Ok(())
}

/// The blob in PATCH chunks of `CHUNK_SIZE` (each with its Content-Range,
/// each answer giving the next location), then a PUT that closes it.
fn upload_chunked(
    registry: &Registry,
    reference: &Reference,
    mut location: String,
    digest: &Digest,
    reader: &mut dyn Read,
    total: u64,
) -> Result<()> {
    let mut offset = 0u64;
    while offset < total {
        let len = CHUNK_SIZE.min(total - offset);
        let range = format!("{}-{}", offset, offset + len - 1);
        let mut chunk = reader.take(len);
        let response = registry.send(
            "PATCH",
            &location,
            &[
                ("Content-Type", "application/octet-stream"),
                ("Content-Range", range.as_str()),
            ],
            Body::Reader(&mut chunk, len),
        )?;
        if response.status != 202 {
            return Err(Error::Internal(format!(
                "registry {} refused bytes {range} of blob {digest}: {}",
                reference.domain(),
                response.error_text()
            )));
        }
        if let Some(next) = response.header("location") {
            location = next.to_string();
        }
        offset += len;
    }
    upload_monolithic(registry, reference, &location, digest, Body::Empty)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_push_platform_is_oci_platform_json() {
        let p = parse_platform_json(r#"{"architecture":"aarch64","os":"linux","variant":"v8"}"#)
            .expect("arm64");
        assert_eq!(p.to_string(), "linux/arm64");
        let p = parse_platform_json(r#"{"architecture":"arm","os":"linux"}"#).expect("arm");
        assert_eq!(p.to_string(), "linux/arm/v7");
        for bad in [
            "linux/arm64",
            r#"{"os":"linux"}"#,
            r#"{"os":"","architecture":"amd64"}"#,
        ] {
            assert!(
                matches!(parse_platform_json(bad), Err(Error::InvalidArgument(_))),
                "{bad}"
            );
        }
    }
}
