//! `docker push`: upload the layer and config blobs the registry lacks
//! (monolithic POST + PUT), then PUT a manifest built from the config and
//! the layer blobs berthd keeps (Docker schema 2; OCI when a layer is zstd).

use std::io::Read;

use berth_content::Digest;
use berth_image::manifest::media_type;
use berth_image::{Compression, Descriptor, Manifest, Reference};

use super::{Body, Credentials, Registry, RegistrySettings, Status};
use crate::error::{Error, Result};
use crate::images::ImageService;

/// Reports bytes read every `step` bytes.
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

/// Pushes the local image `reference` (a tag; `latest` when none is given)
/// to its registry (never to a mirror).
pub fn push(
    settings: &RegistrySettings,
    images: &ImageService,
    reference: &Reference,
    credentials: Option<&Credentials>,
    progress: &mut dyn FnMut(Status),
) -> Result<()> {
    let reference = if reference.tag().is_none() {
        reference.clone().with_default_tag()
    } else {
        reference.clone()
    };
    let tag = reference.tag().unwrap_or("latest").to_string();
    let (config, layers) = images.push_source(&reference)?;
    let registry = Registry::open(
        settings,
        reference.domain(),
        credentials,
        reference.path(),
        "pull,push",
    )?;
    progress(Status::line(format!(
        "The push refers to repository [{}]",
        reference.familiar_name()
    )));
    let ids: Vec<String> = layers.iter().map(|l| short(&l.diff_id)).collect();
    for id in ids.iter().rev() {
        progress(Status::layer(id, "Preparing"));
    }
    for (layer, id) in layers.iter().zip(&ids).rev() {
        if blob_exists(&registry, &reference, &layer.blob_digest)? {
            progress(Status::layer(id, "Layer already exists"));
            continue;
        }
        let file = std::fs::File::open(&layer.blob_path)
            .map_err(|e| Error::io(format!("open layer blob {}", layer.blob_digest), e))?;
        let total = layer.size;
        let mut report = |done: u64| {
            progress(Status {
                id: Some(id.clone()),
                status: "Pushing".into(),
                progress: Some((done, total)),
            })
        };
        let mut counted = Counted {
            inner: file,
            done: 0,
            reported: 0,
            report: &mut report,
        };
        upload(
            &registry,
            &reference,
            &layer.blob_digest,
            Body::Reader(&mut counted, total),
        )?;
        progress(Status::layer(id, "Pushed"));
    }
    let config_digest = config.digest().clone();
    if !blob_exists(&registry, &reference, &config_digest)? {
        upload(
            &registry,
            &reference,
            &config_digest,
            Body::Bytes(config.raw()),
        )?;
    }

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
            config_digest,
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
    let content_type = manifest.media_type.clone().unwrap_or_default();
    let path = format!("/v2/{}/manifests/{tag}", reference.path());
    let response = registry.send(
        "PUT",
        &path,
        &[("Content-Type", content_type.as_str())],
        Body::Bytes(&body),
    )?;
    if response.status != 201 && response.status != 200 {
        return Err(Error::Internal(format!(
            "registry {} refused the manifest of {}: {}",
            reference.domain(),
            reference.familiar(),
            response.error_text()
        )));
    }
    let digest = Digest::sha256_of(&body);
    progress(Status::line(format!(
        "{tag}: digest: {digest} size: {}",
        body.len()
    )));
    Ok(())
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

fn upload(
    registry: &Registry,
    reference: &Reference,
    digest: &Digest,
    body: Body<'_>,
) -> Result<()> {
    let start = format!("/v2/{}/blobs/uploads/", reference.path());
    let response = registry.send("POST", &start, &[], Body::Empty)?;
    if response.status != 202 {
        return Err(Error::Internal(format!(
            "registry {} refused an upload to {}: {}",
            reference.domain(),
            reference.familiar_name(),
            response.error_text()
        )));
    }
    let location = response
        .header("location")
        .map(str::to_string)
        .ok_or_else(|| {
            Error::Internal(format!(
                "registry {} started an upload without a Location",
                reference.domain()
            ))
        })?;
    let separator = if location.contains('?') { '&' } else { '?' };
    let target = format!("{location}{separator}digest={digest}");
    let response = registry.send(
        "PUT",
        &target,
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
