//! `docker pull`: resolve the manifest (an index picks linux/<host arch>),
//! fetch the config and the missing layer blobs, each verified against its
//! digest while it streams into the content store, then store the image.

use std::io::Write;

use berth_content::Digest;
use berth_image::manifest::media_type;
use berth_image::{
    Compression, ImageConfig, LoadedImage, LoadedLayer, Manifest, ManifestKind, Platform, Reference,
};

use super::{Body, Credentials, Registry, RegistrySettings, Status};
use crate::error::{Error, Result};
use crate::images::{ImageService, Progress};

const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";
const MANIFEST_LIMIT: u64 = 4 << 20;
const CONFIG_LIMIT: u64 = 8 << 20;

/// A manifest found in the registry, ready to be fetched.
pub struct ResolvedPull {
    registry: Registry,
    reference: Reference,
    manifest_digest: Digest,
    manifest: Manifest,
}

impl std::fmt::Debug for ResolvedPull {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResolvedPull")
            .field("reference", &self.reference)
            .field("manifest_digest", &self.manifest_digest)
            .finish_non_exhaustive()
    }
}

fn image_error(e: berth_image::ImageError) -> Error {
    Error::InvalidArgument(e.to_string())
}

/// Finds the image manifest `reference` names (a tag defaults to `latest`),
/// on the registry's mirrors first, in order: a mirror that fails or lacks
/// the manifest passes the pull on, the origin answers last. Errors here
/// come before any output, so the API can answer with a status.
pub fn resolve(
    settings: &RegistrySettings,
    reference: &Reference,
    credentials: Option<&Credentials>,
) -> Result<ResolvedPull> {
    let reference = if reference.tag().is_none() && reference.digest().is_none() {
        reference.clone().with_default_tag()
    } else {
        reference.clone()
    };
    for mirror in settings.mirrors_of(reference.domain()) {
        match Registry::open_mirror(settings, mirror, reference.path())
            .and_then(|registry| resolve_at(registry, reference.clone()))
        {
            Ok(resolved) => return Ok(resolved),
            Err(e) => tracing::info!(
                "pull of {} from mirror {}: {e}; trying the next source",
                reference.familiar(),
                mirror.url
            ),
        }
    }
    let registry = Registry::open(
        settings,
        reference.domain(),
        credentials,
        reference.path(),
        "pull",
    )?;
    resolve_at(registry, reference)
}

/// [`resolve`] on one registry.
fn resolve_at(registry: Registry, reference: Reference) -> Result<ResolvedPull> {
    let wanted = match (reference.digest(), reference.tag()) {
        (Some(d), _) => d.to_string(),
        (None, Some(t)) => t.to_string(),
        (None, None) => "latest".to_string(),
    };
    let (bytes, declared, digest) = fetch_manifest(&registry, &reference, &wanted)?;
    let kind = berth_image::parse_manifest(&bytes, declared.as_deref()).map_err(|e| match e {
        berth_image::ImageError::Schema1Manifest { .. } => Error::InvalidArgument(format!(
            "{}: the registry serves a Docker schema 1 manifest, which berthd does not pull (push the image again with a current client)",
            reference.familiar()
        )),
        other => image_error(other),
    })?;
    let (manifest, manifest_digest) = match kind {
        ManifestKind::Manifest(m) => (*m, digest),
        ManifestKind::Index(index) => {
            let chosen = berth_image::choose_platform(&index.manifests, &Platform::host())
                .map_err(image_error)?;
            let (bytes, declared, digest) =
                fetch_manifest(&registry, &reference, chosen.digest.as_str())?;
            match berth_image::parse_manifest(&bytes, declared.as_deref()).map_err(image_error)? {
                ManifestKind::Manifest(m) => (*m, digest),
                ManifestKind::Index(_) => {
                    return Err(Error::InvalidArgument(format!(
                        "{}: index entry {} is another index",
                        reference.familiar(),
                        chosen.digest
                    )))
                }
            }
        }
    };
    if manifest.config.size > CONFIG_LIMIT {
        return Err(Error::InvalidArgument(format!(
            "{}: image config of {} bytes is too large",
            reference.familiar(),
            manifest.config.size
        )));
    }
    for layer in &manifest.layers {
        if !media_type::is_layer(&layer.media_type) {
            return Err(Error::InvalidArgument(format!(
                "{}: layer {} has unsupported media type {}",
                reference.familiar(),
                layer.digest,
                layer.media_type
            )));
        }
    }
    Ok(ResolvedPull {
        registry,
        reference,
        manifest_digest,
        manifest,
    })
}

/// GETs a manifest; returns its bytes, declared media type and digest (the
/// digest is checked when the request named one).
fn fetch_manifest(
    registry: &Registry,
    reference: &Reference,
    wanted: &str,
) -> Result<(Vec<u8>, Option<String>, Digest)> {
    let path = format!("/v2/{}/manifests/{wanted}", reference.path());
    let response = registry.send("GET", &path, &[("Accept", MANIFEST_ACCEPT)], Body::Empty)?;
    match response.status {
        200 => {}
        404 => {
            return Err(Error::NotFound(format!(
                "manifest for {} not found: {}",
                reference.familiar(),
                response.error_text()
            )))
        }
        401 | 403 => {
            return Err(Error::InvalidArgument(format!(
                "pull access denied for {}: {}",
                reference.familiar_name(),
                response.error_text()
            )))
        }
        status => {
            return Err(Error::Internal(format!(
                "registry {} answered {status} for manifest {wanted}: {}",
                reference.domain(),
                response.error_text()
            )))
        }
    }
    let declared = response
        .header("content-type")
        .map(|v| v.split(';').next().unwrap_or("").trim().to_string())
        .filter(|v| !v.is_empty() && v != "application/json");
    let bytes = response.bytes(MANIFEST_LIMIT)?;
    let digest = Digest::sha256_of(&bytes);
    if wanted.starts_with("sha256:") && digest.as_str() != wanted {
        return Err(Error::InvalidArgument(format!(
            "manifest verification failed for {}: got {digest}, expected {wanted}",
            reference.familiar()
        )));
    }
    Ok((bytes, declared, digest))
}

fn short(d: &Digest) -> String {
    d.hex().get(..12).unwrap_or_default().to_string()
}

/// GETs a blob, following one redirect (registries may send blobs elsewhere
/// on the same host).
fn get_blob(
    registry: &Registry,
    reference: &Reference,
    digest: &Digest,
) -> Result<super::Response> {
    let path = format!("/v2/{}/blobs/{digest}", reference.path());
    let mut response = registry.send("GET", &path, &[], Body::Empty)?;
    if matches!(response.status, 301 | 302 | 303 | 307 | 308) {
        if let Some(location) = response.header("location").map(str::to_string) {
            response = registry.send("GET", &location, &[], Body::Empty)?;
        }
    }
    if response.status != 200 {
        return Err(Error::Internal(format!(
            "fetching blob {digest} of {}: {}",
            reference.familiar(),
            response.error_text()
        )));
    }
    Ok(response)
}

/// Fetches what is missing and stores the image, reporting dockerd's
/// progress messages.
pub fn pull(
    images: &ImageService,
    resolved: ResolvedPull,
    progress: &mut dyn FnMut(Status),
) -> Result<()> {
    let ResolvedPull {
        registry,
        reference,
        manifest_digest,
        manifest,
    } = resolved;
    let label = reference
        .tag()
        .map(str::to_string)
        .unwrap_or_else(|| manifest_digest.to_string());
    progress(Status {
        id: Some(label),
        status: format!("Pulling from {}", reference.path()),
        progress: None,
    });

    let config_raw =
        get_blob(&registry, &reference, &manifest.config.digest)?.bytes(CONFIG_LIMIT)?;
    if Digest::sha256_of(&config_raw) != manifest.config.digest {
        return Err(Error::InvalidArgument(format!(
            "image config verification failed for digest {}",
            manifest.config.digest
        )));
    }
    let config = ImageConfig::from_bytes(config_raw).map_err(image_error)?;
    let diff_ids = config.diff_ids().to_vec();
    if diff_ids.len() != manifest.layers.len() {
        return Err(Error::InvalidArgument(format!(
            "{}: the manifest has {} layers, the config {} diff_ids",
            reference.familiar(),
            manifest.layers.len(),
            diff_ids.len()
        )));
    }

    let lease = images.blob_lease();
    let fetched = match fetch_layers(images, &registry, &reference, &manifest, &lease, progress) {
        Ok(fetched) => fetched,
        Err(e) => {
            drop(lease);
            images.discard_unreferenced_blobs();
            return Err(e);
        }
    };

    let layers: Vec<LoadedLayer> = manifest
        .layers
        .iter()
        .zip(&diff_ids)
        .map(|(d, diff_id)| LoadedLayer {
            diff_id: diff_id.clone(),
            blob_digest: d.digest.clone(),
            blob_path: images.blob_path(&d.digest),
            media_type: d.media_type.clone(),
            compression: compression_of(&d.media_type),
            size: d.size,
        })
        .collect();
    let by_diff: Vec<(String, String)> = diff_ids
        .iter()
        .zip(&manifest.layers)
        .map(|(diff, d)| (short(diff), short(&d.digest)))
        .collect();
    let img = LoadedImage {
        config,
        layers,
        repo_tags: Vec::new(),
    };
    let tag = reference.tag().is_some().then(|| reference.clone());
    let repo_digest = Reference::parse_normalized(&reference.name())
        .map_err(image_error)?
        .with_digest(manifest_digest.clone());
    let mut extracting = |p: Progress| {
        if let Progress::Layer { id, current, total } = p {
            let id = by_diff
                .iter()
                .find(|(diff, _)| *diff == id)
                .map_or(id, |(_, blob)| blob.clone());
            progress(Status {
                id: Some(id),
                status: "Extracting".into(),
                progress: Some((current, total)),
            });
        }
    };
    let stored = images.store_pulled(&img, tag.as_ref(), &repo_digest, &mut extracting);
    drop(lease);
    if stored.is_err() {
        images.discard_unreferenced_blobs();
    }
    let updated = stored?;
    for id in &fetched {
        progress(Status::layer(id, "Pull complete"));
    }
    progress(Status::line(format!("Digest: {manifest_digest}")));
    progress(Status::line(if updated {
        format!(
            "Status: Downloaded newer image for {}",
            reference.familiar()
        )
    } else {
        format!("Status: Image is up to date for {}", reference.familiar())
    }));
    Ok(())
}

/// Downloads the layers the content store lacks, each verified against its
/// digest and pinned in `lease`; returns the short ids of those fetched.
fn fetch_layers(
    images: &ImageService,
    registry: &Registry,
    reference: &Reference,
    manifest: &Manifest,
    lease: &berth_content::Lease,
    progress: &mut dyn FnMut(Status),
) -> Result<Vec<String>> {
    for layer in &manifest.layers {
        progress(Status::layer(&short(&layer.digest), "Pulling fs layer"));
    }
    let mut fetched = Vec::new();
    for layer in &manifest.layers {
        let id = short(&layer.digest);
        lease.pin(&layer.digest);
        if images.has_blob(&layer.digest) {
            progress(Status::layer(&id, "Already exists"));
            continue;
        }
        let mut response = get_blob(registry, reference, &layer.digest)?;
        let mut writer = images.blob_writer(&layer.digest, layer.size)?;
        let mut buf = vec![0u8; 256 << 10];
        let mut done = 0u64;
        let mut reported = 0u64;
        loop {
            let n = response
                .body()
                .read(&mut buf)
                .map_err(|e| Error::io(format!("download layer {}", layer.digest), e))?;
            if n == 0 {
                break;
            }
            writer
                .write_all(&buf[..n])
                .map_err(|e| Error::io(format!("store layer {}", layer.digest), e))?;
            done += n as u64;
            if done - reported >= 512 << 10 || done == layer.size {
                reported = done;
                progress(Status {
                    id: Some(id.clone()),
                    status: "Downloading".into(),
                    progress: Some((done, layer.size)),
                });
            }
        }
        progress(Status::layer(&id, "Verifying Checksum"));
        writer.commit_pinned(lease).map_err(|e| {
            Error::InvalidArgument(format!(
                "layer {} of {}: {e}",
                layer.digest,
                reference.familiar()
            ))
        })?;
        progress(Status::layer(&id, "Download complete"));
        fetched.push(id);
    }
    Ok(fetched)
}

fn compression_of(media_type: &str) -> Compression {
    if media_type.ends_with("zstd") {
        Compression::Zstd
    } else if media_type.ends_with("gzip") {
        Compression::Gzip
    } else {
        Compression::None
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::io::{BufRead, BufReader};
    use std::net::TcpListener;
    use std::sync::Arc;

    use super::*;
    use crate::events::EventBus;

    /// Path → status, content type, body.
    type Routes = HashMap<String, (u16, String, Vec<u8>)>;

    /// A registry that answers GETs from a fixed table, one connection each.
    fn serve(routes: Routes) -> String {
        serve_with_token(routes, None)
    }

    /// With `token`, `/v2/` challenges for a bearer token that `/token`
    /// hands out and every other path requires.
    fn serve_with_token(routes: Routes, token: Option<&'static str>) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let host = listener.local_addr().expect("addr").to_string();
        let realm = format!("http://{host}/token");
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut first = String::new();
                let _ = reader.read_line(&mut first);
                let mut line = String::new();
                let mut authorization = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    if let Some((k, v)) = line.split_once(':') {
                        if k.eq_ignore_ascii_case("authorization") {
                            authorization = v.trim().to_string();
                        }
                    }
                    line.clear();
                }
                let target = first.split_whitespace().nth(1).unwrap_or("").to_string();
                let path = target.split('?').next().unwrap_or("").to_string();
                let mut extra = String::new();
                let (status, ctype, body) = match token {
                    Some(t) if path == "/token" => (
                        200,
                        "application/json".to_string(),
                        format!(r#"{{"token":"{t}"}}"#).into_bytes(),
                    ),
                    Some(t) if authorization != format!("Bearer {t}") => {
                        extra = format!(
                            "WWW-Authenticate: Bearer realm=\"{realm}\",service=\"fake\"\r\n"
                        );
                        (401, "application/json".into(), br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#.to_vec())
                    }
                    _ => routes.get(&path).cloned().unwrap_or((
                        404,
                        "application/json".into(),
                        br#"{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown to registry"}]}"#
                            .to_vec(),
                    )),
                };
                let head = format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: {ctype}\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes());
                let _ = stream.write_all(&body);
            }
        });
        host
    }

    /// An image of one empty-tar layer; returns routes, the config digest
    /// and the manifest digest. `served_layer` replaces the layer's bytes,
    /// `diff_id` the config's diff_id.
    fn image_routes(
        repo: &str,
        served_layer: Option<Vec<u8>>,
        diff_id: Option<Digest>,
    ) -> (Routes, Digest, Digest) {
        let layer = vec![0u8; 1024];
        let layer_digest = Digest::sha256_of(&layer);
        let diff_id = diff_id.unwrap_or_else(|| layer_digest.clone());
        let host = Platform::host();
        let config = format!(
            r#"{{"architecture":"{}","os":"linux","rootfs":{{"type":"layers","diff_ids":["{diff_id}"]}},"config":{{}}}}"#,
            host.architecture
        )
        .into_bytes();
        let config_digest = Digest::sha256_of(&config);
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"{}","digest":"{config_digest}","size":{}}},"layers":[{{"mediaType":"{}","digest":"{layer_digest}","size":1024}}]}}"#,
            media_type::DOCKER_MANIFEST,
            media_type::DOCKER_CONFIG,
            config.len(),
            media_type::DOCKER_LAYER_TAR
        )
        .into_bytes();
        let manifest_digest = Digest::sha256_of(&manifest);
        let mut routes = HashMap::new();
        routes.insert(
            format!("/v2/{repo}/manifests/1"),
            (200, media_type::DOCKER_MANIFEST.to_string(), manifest),
        );
        routes.insert(
            format!("/v2/{repo}/blobs/{config_digest}"),
            (200, "application/octet-stream".into(), config),
        );
        routes.insert(
            format!("/v2/{repo}/blobs/{layer_digest}"),
            (
                200,
                "application/octet-stream".into(),
                served_layer.unwrap_or(layer),
            ),
        );
        (routes, config_digest, manifest_digest)
    }

    fn service(dir: &std::path::Path) -> ImageService {
        ImageService::open(dir, Some("vfs"), Arc::new(EventBus::new(16))).expect("open images")
    }

    fn reference(host: &str, rest: &str) -> Reference {
        Reference::parse_normalized(&format!("{host}/{rest}")).expect("reference")
    }

    #[test]
    fn pulls_tags_and_records_the_repo_digest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let images = service(dir.path());
        let (routes, config_digest, manifest_digest) = image_routes("t/ok", None, None);
        let host = serve(routes);
        let resolved = resolve(
            &RegistrySettings::default(),
            &reference(&host, "t/ok:1"),
            None,
        )
        .expect("resolve");
        let mut lines = Vec::new();
        pull(&images, resolved, &mut |s| lines.push(s.status)).expect("pull");
        let (id, _) = images.resolve(&format!("{host}/t/ok:1")).expect("tagged");
        assert_eq!(id, config_digest);
        let details = images.list().expect("list");
        assert_eq!(
            details[0].repo_digests,
            vec![format!("{host}/t/ok@{manifest_digest}")]
        );
        assert!(
            lines.contains(&format!("Digest: {manifest_digest}")),
            "{lines:?}"
        );
    }

    #[test]
    fn an_index_resolves_to_the_host_platform() {
        let dir = tempfile::tempdir().expect("tempdir");
        let images = service(dir.path());
        let (mut routes, config_digest, manifest_digest) = image_routes("t/idx", None, None);
        let (_, _, manifest) = routes
            .remove("/v2/t/idx/manifests/1")
            .expect("manifest route");
        let host_platform = Platform::host();
        let index = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[{{"mediaType":"{}","digest":"sha256:{}","size":10,"platform":{{"architecture":"s390x","os":"linux"}}}},{{"mediaType":"{}","digest":"{manifest_digest}","size":{},"platform":{{"architecture":"{}","os":"linux"}}}}]}}"#,
            media_type::OCI_INDEX,
            media_type::OCI_MANIFEST,
            "0".repeat(64),
            media_type::DOCKER_MANIFEST,
            manifest.len(),
            host_platform.architecture
        );
        routes.insert(
            format!("/v2/t/idx/manifests/{manifest_digest}"),
            (200, media_type::DOCKER_MANIFEST.to_string(), manifest),
        );
        routes.insert(
            "/v2/t/idx/manifests/1".to_string(),
            (200, media_type::OCI_INDEX.to_string(), index.into_bytes()),
        );
        let host = serve(routes);
        let resolved = resolve(
            &RegistrySettings::default(),
            &reference(&host, "t/idx:1"),
            None,
        )
        .expect("resolve");
        pull(&images, resolved, &mut |_| {}).expect("pull");
        let (id, _) = images.resolve(&format!("{host}/t/idx:1")).expect("tagged");
        assert_eq!(id, config_digest);
    }

    #[test]
    fn a_layer_that_does_not_match_its_digest_stores_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let images = service(dir.path());
        let mut tampered = vec![0u8; 1024];
        tampered[0] = b'x';
        let (routes, _, _) = image_routes("t/bad", Some(tampered), None);
        let host = serve(routes);
        let resolved = resolve(
            &RegistrySettings::default(),
            &reference(&host, "t/bad:1"),
            None,
        )
        .expect("resolve");
        let err = pull(&images, resolved, &mut |_| {}).expect_err("tampered layer");
        assert!(err.to_string().contains("digest"), "{err}");
        assert!(images.list().expect("list").is_empty());
    }

    #[test]
    fn a_layer_that_does_not_unpack_to_its_diff_id_leaves_no_blob() {
        let dir = tempfile::tempdir().expect("tempdir");
        let images = service(dir.path());
        let layer_digest = Digest::sha256_of(&[0u8; 1024]);
        let (routes, _, _) =
            image_routes("t/diff", None, Some(Digest::sha256_of(b"something else")));
        let host = serve(routes);
        let resolved = resolve(
            &RegistrySettings::default(),
            &reference(&host, "t/diff:1"),
            None,
        )
        .expect("resolve");
        let err = pull(&images, resolved, &mut |_| {}).expect_err("wrong diff_id");
        assert!(err.to_string().contains("diff_id"), "{err}");
        assert!(images.list().expect("list").is_empty());
        assert!(
            !images.has_blob(&layer_digest),
            "the fetched layer was kept"
        );
    }

    #[test]
    fn unknown_manifests_and_schema1_are_refused() {
        let mut routes = HashMap::new();
        routes.insert(
            "/v2/t/old/manifests/1".to_string(),
            (
                200,
                media_type::DOCKER_SCHEMA1_SIGNED.to_string(),
                br#"{"schemaVersion":1,"name":"t/old","tag":"1","fsLayers":[]}"#.to_vec(),
            ),
        );
        routes.insert(
            "/v2/t/none/manifests/1".to_string(),
            (
                404,
                "application/json".into(),
                br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#
                    .to_vec(),
            ),
        );
        let host = serve(routes);
        let err = resolve(
            &RegistrySettings::default(),
            &reference(&host, "t/none:1"),
            None,
        )
        .expect_err("missing");
        assert!(matches!(err, Error::NotFound(_)), "{err:?}");
        assert_eq!(
            err.to_string(),
            format!("manifest for {host}/t/none:1 not found: manifest unknown: manifest unknown")
        );
        let err = resolve(
            &RegistrySettings::default(),
            &reference(&host, "t/old:1"),
            None,
        )
        .expect_err("schema 1");
        assert!(err.to_string().contains("schema 1"), "{err}");
    }

    #[test]
    fn bearer_tokens_are_fetched_from_the_realm() {
        let dir = tempfile::tempdir().expect("tempdir");
        let images = service(dir.path());
        let (routes, config_digest, _) = image_routes("t/tok", None, None);
        let host = serve_with_token(routes, Some("s3cret-token"));
        let resolved = resolve(
            &RegistrySettings::default(),
            &reference(&host, "t/tok:1"),
            None,
        )
        .expect("resolve");
        pull(&images, resolved, &mut |_| {}).expect("pull");
        let (id, _) = images.resolve(&format!("{host}/t/tok:1")).expect("tagged");
        assert_eq!(id, config_digest);
    }
}
