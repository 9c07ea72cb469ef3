//! `docker pull`: resolve the manifest (an index picks the requested
//! platform, or linux/<host arch>, or with Berth's `allPlatforms` every
//! platform's image, pulled one after the other), fetch the config, then
//! download the missing layers in parallel (`max-concurrent-downloads`). Each layer
//! streams into the content store's ingest and, at the same time, through
//! the decompressor into a staging snapshot; a dropped connection resumes
//! with a Range request. Only after its size, digest and diff_id are checked
//! is a layer committed; nothing unverified becomes visible. A blob a
//! mirror fails to serve is fetched from the next mirror or the origin.

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, OnceLock};
use std::time::Duration;

use berth_content::Digest;
use berth_image::manifest::media_type;
use berth_image::{
    Compression, ImageConfig, LoadedImage, LoadedLayer, Manifest, ManifestKind, Platform, Reference,
};

use super::{Body, Credentials, Mirror, Registry, RegistrySettings, Response, Status};
use crate::error::{Error, Result};
use crate::images::{ImageService, Progress, PulledManifest, StagedLayer, StagedLayers};

const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";
const MANIFEST_LIMIT: u64 = 4 << 20;
const CONFIG_LIMIT: u64 = 8 << 20;
/// Tries per blob (the first request and the resumptions), as dockerd.
pub(super) const ATTEMPTS: u32 = 5;
/// The first pause before another try; doubled each time.
pub(super) const BACKOFF: Duration = Duration::from_millis(200);
/// Redirects followed for one blob request.
const MAX_REDIRECTS: usize = 10;
/// Pages of `tags/list` followed for `--all-tags`.
const MAX_TAG_PAGES: usize = 1000;

/// How many layers one pull or push moves at a time (daemon.json
/// `max-concurrent-downloads`, `max-concurrent-uploads`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransferLimits {
    pub downloads: usize,
    pub uploads: usize,
}

impl Default for TransferLimits {
    /// dockerd's defaults.
    fn default() -> Self {
        TransferLimits {
            downloads: 3,
            uploads: 5,
        }
    }
}

/// A manifest found in the registry, ready to be fetched.
pub struct ResolvedPull {
    sources: BlobSources,
    reference: Reference,
    /// What the pulled images are known by: the manifest's digest, or the
    /// index's when they came through one.
    manifest_digest: Digest,
    /// The images to pull, one per platform (several only when every
    /// platform was asked for); the tag ends on the last.
    images: Vec<ResolvedImage>,
}

/// One platform's image manifest of a [`ResolvedPull`].
struct ResolvedImage {
    manifest: Manifest,
    /// The manifest (and index) as the registry sent them, kept with the image.
    pulled: PulledManifest,
    /// The platform asked for with `--platform`.
    platform: Option<Platform>,
}

impl std::fmt::Debug for ResolvedPull {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResolvedPull")
            .field("reference", &self.reference)
            .field("manifest_digest", &self.manifest_digest)
            .finish_non_exhaustive()
    }
}

/// Which image of an index a pull takes.
#[derive(Clone, Copy)]
enum Want<'a> {
    /// `--platform`, or the host's.
    One(Option<&'a Platform>),
    /// Every platform's image (not attestations), the host's last.
    All,
}

fn image_error(e: berth_image::ImageError) -> Error {
    Error::InvalidArgument(e.to_string())
}

/// Parses `--platform`: `os[/arch[/variant]]`, or just an architecture
/// (linux assumed), as dockerd accepts it.
pub fn parse_platform(text: &str) -> Result<Platform> {
    let parts: Vec<&str> = text.trim().split('/').collect();
    let bad = || {
        Error::InvalidArgument(format!(
            "invalid platform {text:?}: expected os/arch[/variant], e.g. linux/arm64/v8"
        ))
    };
    if parts.iter().any(|p| p.is_empty()) {
        return Err(bad());
    }
    let platform = match parts.as_slice() {
        [os @ ("linux" | "windows" | "darwin" | "freebsd")] => {
            Platform::new(os, &Platform::host().architecture, None)
        }
        [arch] => Platform::new("linux", arch, None),
        [os, arch] => Platform::new(os, arch, None),
        [os, arch, variant] => Platform::new(os, arch, Some(variant)),
        _ => return Err(bad()),
    };
    Ok(platform.normalized())
}

/// The platform image config `config` is for, normalized.
pub(super) fn config_platform(config: &ImageConfig) -> Platform {
    let parsed = config.parsed();
    Platform::new(
        parsed.os.as_deref().unwrap_or("linux"),
        parsed.architecture.as_deref().unwrap_or(""),
        parsed.variant.as_deref(),
    )
    .normalized()
}

/// Whether an image for `got` (normalized) is one for `wanted`: the same
/// os and architecture, and the variant when `wanted` names one.
pub(super) fn platform_matches(got: &Platform, wanted: &Platform) -> bool {
    let wanted = wanted.normalized();
    got.os == wanted.os
        && got.architecture == wanted.architecture
        && (wanted.variant.is_none() || got.variant == wanted.variant)
}

/// Finds the image manifest `reference` names (a tag defaults to `latest`),
/// on the registry's mirrors first, in order: a mirror that fails or lacks
/// the manifest passes the pull on, the origin answers last. From an index,
/// the entry for `platform` (default: this host's). Errors here come before
/// any output, so the API can answer with a status.
pub fn resolve(
    settings: &RegistrySettings,
    reference: &Reference,
    credentials: Option<&Credentials>,
    platform: Option<&Platform>,
) -> Result<ResolvedPull> {
    resolve_wanted(settings, reference, credentials, Want::One(platform))
}

/// As [`resolve`], for every platform an index lists (its attestations
/// and entries without a platform left out); the host's platform comes
/// last, so a tag ends on it.
pub fn resolve_all_platforms(
    settings: &RegistrySettings,
    reference: &Reference,
    credentials: Option<&Credentials>,
) -> Result<ResolvedPull> {
    resolve_wanted(settings, reference, credentials, Want::All)
}

fn resolve_wanted(
    settings: &RegistrySettings,
    reference: &Reference,
    credentials: Option<&Credentials>,
    want: Want<'_>,
) -> Result<ResolvedPull> {
    let reference = if reference.tag().is_none() && reference.digest().is_none() {
        reference.clone().with_default_tag()
    } else {
        reference.clone()
    };
    let mirrors = settings.mirrors_of(reference.domain());
    for (i, mirror) in mirrors.iter().enumerate() {
        let later = mirrors[i + 1..]
            .iter()
            .cloned()
            .map(BlobSource::Mirror)
            .chain([BlobSource::Origin(credentials.cloned())])
            .collect();
        match Registry::open_mirror(settings, mirror, reference.path()).and_then(|registry| {
            let first = (registry, mirror.url.clone());
            let sources = BlobSources::new(settings, &reference, first, later);
            resolve_in(sources, reference.clone(), want)
        }) {
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
    let first = (registry, reference.domain().to_string());
    let sources = BlobSources::new(settings, &reference, first, Vec::new());
    resolve_in(sources, reference, want)
}

/// Whether an index entry is a platform's image (not an attestation or
/// another artifact, which name the `unknown` platform or none).
pub(super) fn is_platform_image(entry: &berth_image::Descriptor) -> bool {
    matches!(
        entry.media_type.as_str(),
        media_type::OCI_MANIFEST | media_type::DOCKER_MANIFEST
    ) && entry
        .platform
        .as_ref()
        .is_some_and(|p| p.os != "unknown" && p.architecture != "unknown")
}

/// A source of blobs after the one that served the manifest.
enum BlobSource {
    Mirror(Mirror),
    /// The registry itself, with the pull's credentials.
    Origin(Option<Credentials>),
}

/// Where a pull's blobs come from: the registry or mirror that served the
/// manifest, then the mirrors after it and the origin, in the order of
/// `registry-mirrors`. Those are opened (pinged, authenticated) only when a
/// blob first needs them, and then shared by the pull's downloads.
struct BlobSources {
    first: Registry,
    /// How logs name `first`: the mirror's URL or the registry's name.
    first_name: String,
    later: Vec<(BlobSource, OnceLock<std::result::Result<Registry, String>>)>,
    settings: RegistrySettings,
    repository: String,
    domain: String,
}

impl BlobSources {
    fn new(
        settings: &RegistrySettings,
        reference: &Reference,
        (first, first_name): (Registry, String),
        later: Vec<BlobSource>,
    ) -> BlobSources {
        BlobSources {
            first,
            first_name,
            later: later.into_iter().map(|s| (s, OnceLock::new())).collect(),
            settings: settings.clone(),
            repository: reference.path().to_string(),
            domain: reference.domain().to_string(),
        }
    }

    /// Source `i` (0: the one that served the manifest), opened; an error
    /// when it cannot be reached or refuses the pull.
    fn get(&self, i: usize) -> std::result::Result<&Registry, String> {
        let Some(i) = i.checked_sub(1) else {
            return Ok(&self.first);
        };
        let (source, opened) = &self.later[i];
        opened
            .get_or_init(|| {
                match source {
                    BlobSource::Mirror(mirror) => {
                        Registry::open_mirror(&self.settings, mirror, &self.repository)
                    }
                    BlobSource::Origin(credentials) => Registry::open(
                        &self.settings,
                        &self.domain,
                        credentials.as_ref(),
                        &self.repository,
                        "pull",
                    ),
                }
                .map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    /// The source after `i` to ask for `digest`, which `i` failed to serve
    /// (`why`), if there is one; logs the move.
    fn next(&self, i: usize, digest: &Digest, why: &str) -> Option<usize> {
        (i < self.later.len()).then(|| {
            let name = |i: usize| match i.checked_sub(1).map(|i| &self.later[i].0) {
                None => self.first_name.clone(),
                Some(BlobSource::Mirror(mirror)) => mirror.url.clone(),
                Some(BlobSource::Origin(_)) => self.domain.clone(),
            };
            tracing::warn!(
                "blob {digest} of {} from {}: {why}; fetching it from {}",
                self.repository,
                name(i),
                name(i + 1)
            );
            i + 1
        })
    }
}

/// [`resolve`] on one registry (the first of `sources`).
fn resolve_in(sources: BlobSources, reference: Reference, want: Want<'_>) -> Result<ResolvedPull> {
    let registry = &sources.first;
    let wanted = match (reference.digest(), reference.tag()) {
        (Some(d), _) => d.to_string(),
        (None, Some(t)) => t.to_string(),
        (None, None) => "latest".to_string(),
    };
    let (bytes, declared, digest) = fetch_manifest(registry, &reference, &wanted)?;
    let kind = parse_manifest(&reference, &bytes, declared.as_deref())?;
    // As dockerd, an image from an index is known by the index's digest
    // (`Digest:` line, RepoDigests), so `name@digest` pulls it again.
    let images = match kind {
        ManifestKind::Manifest(m) => {
            let pulled = PulledManifest {
                // Without either, an OCI manifest (its mediaType is optional).
                media_type: m
                    .media_type
                    .clone()
                    .or(declared)
                    .unwrap_or_else(|| media_type::OCI_MANIFEST.to_string()),
                bytes,
                index: None,
            };
            let platform = match want {
                Want::One(p) => p.cloned(),
                Want::All => None,
            };
            vec![ResolvedImage {
                manifest: *m,
                pulled,
                platform,
            }]
        }
        ManifestKind::Index(index) => {
            let host = Platform::host();
            let entries: Vec<&berth_image::Descriptor> = match want {
                Want::One(platform) => {
                    let chosen = berth_image::choose_platform(&index.manifests, platform.unwrap_or(&host))
                        .map_err(|e| match (e, platform) {
                            (berth_image::ImageError::NoMatchingPlatform { available, .. }, Some(p)) => {
                                Error::NotFound(format!(
                                    "no matching manifest for {p} in the manifest list entries of {} (it has {available})",
                                    reference.familiar()
                                ))
                            }
                            (other, _) => image_error(other),
                        })?;
                    vec![chosen]
                }
                Want::All => {
                    let last = berth_image::choose_platform(&index.manifests, &host)
                        .ok()
                        .map(|d| d.digest.clone());
                    let mut all: Vec<&berth_image::Descriptor> = index
                        .manifests
                        .iter()
                        .filter(|d| is_platform_image(d))
                        .collect();
                    all.sort_by_key(|d| Some(&d.digest) == last.as_ref());
                    if all.is_empty() {
                        return Err(Error::NotFound(format!(
                            "the index of {} lists no platform's image",
                            reference.familiar()
                        )));
                    }
                    all
                }
            };
            let platform = match want {
                Want::One(p) => p.cloned(),
                Want::All => None,
            };
            let mut images = Vec::new();
            for chosen in entries {
                let (entry, entry_type, _) =
                    fetch_manifest(registry, &reference, chosen.digest.as_str())?;
                match parse_manifest(&reference, &entry, entry_type.as_deref())? {
                    ManifestKind::Manifest(m) => {
                        let pulled = PulledManifest {
                            media_type: m
                                .media_type
                                .clone()
                                .or(entry_type)
                                .unwrap_or_else(|| chosen.media_type.clone()),
                            bytes: entry,
                            index: Some(bytes.clone()),
                        };
                        images.push(ResolvedImage {
                            manifest: *m,
                            pulled,
                            platform: platform.clone(),
                        });
                    }
                    ManifestKind::Index(_) => {
                        return Err(Error::InvalidArgument(format!(
                            "{}: index entry {} is another index",
                            reference.familiar(),
                            chosen.digest
                        )))
                    }
                }
            }
            images
        }
    };
    for image in &images {
        let manifest = &image.manifest;
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
    }
    Ok(ResolvedPull {
        sources,
        reference,
        manifest_digest: digest,
        images,
    })
}

fn parse_manifest(
    reference: &Reference,
    bytes: &[u8],
    declared: Option<&str>,
) -> Result<ManifestKind> {
    berth_image::parse_manifest(bytes, declared).map_err(|e| match e {
        berth_image::ImageError::Schema1Manifest { .. } => Error::InvalidArgument(format!(
            "{}: the registry serves a Docker schema 1 manifest, which is not supported (push the image again with a current client)",
            reference.familiar()
        )),
        other => Error::InvalidArgument(format!(
            "{}: the registry sent a manifest that can't be used: {other}",
            reference.familiar()
        )),
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
    let bytes = response.bytes(MANIFEST_LIMIT).map_err(|e| {
        Error::Internal(format!(
            "reading manifest {wanted} of {} from registry {}: {e}",
            reference.familiar_name(),
            reference.domain()
        ))
    })?;
    let digest = Digest::sha256_of(&bytes);
    if wanted.starts_with("sha256:") && digest.as_str() != wanted {
        return Err(Error::InvalidArgument(format!(
            "manifest verification failed for {}: got {digest}, expected {wanted}",
            reference.familiar()
        )));
    }
    Ok((bytes, declared, digest))
}

/// `name` as a repository when it has neither tag nor digest (what the
/// docker CLI sends for `docker pull --all-tags`), else `None`.
pub fn repository_only(name: &str) -> Result<Option<Reference>> {
    let reference = Reference::parse_normalized(name).map_err(image_error)?;
    Ok((reference.tag().is_none() && reference.digest().is_none()).then_some(reference))
}

/// The tags of `reference`'s repository (`docker pull --all-tags`), every
/// page of `tags/list`.
pub fn list_tags(
    settings: &RegistrySettings,
    reference: &Reference,
    credentials: Option<&Credentials>,
) -> Result<Vec<String>> {
    let registry = Registry::open(
        settings,
        reference.domain(),
        credentials,
        reference.path(),
        "pull",
    )?;
    let mut tags = Vec::new();
    let mut next = Some(format!("/v2/{}/tags/list?n=100", reference.path()));
    let mut pages = 0;
    while let Some(path) = next.take() {
        pages += 1;
        if pages > MAX_TAG_PAGES {
            return Err(Error::Internal(format!(
                "registry {}: more than {MAX_TAG_PAGES} pages of tags for {}",
                reference.domain(),
                reference.familiar_name()
            )));
        }
        let response = registry.send("GET", &path, &[], Body::Empty)?;
        match response.status {
            200 => {}
            404 => {
                return Err(Error::NotFound(format!(
                    "repository {} not found: {}",
                    reference.familiar_name(),
                    response.error_text()
                )))
            }
            status => {
                return Err(Error::Internal(format!(
                    "registry {} answered {status} listing the tags of {}: {}",
                    reference.domain(),
                    reference.familiar_name(),
                    response.error_text()
                )))
            }
        }
        next = response.header("link").and_then(next_link);
        #[derive(serde::Deserialize)]
        struct TagList {
            tags: Option<Vec<String>>,
        }
        let body = response.bytes(MANIFEST_LIMIT)?;
        let page: TagList = serde_json::from_slice(&body).map_err(|e| {
            Error::InvalidArgument(format!(
                "registry {}: the tag list of {} is not valid JSON: {e}",
                reference.domain(),
                reference.familiar_name()
            ))
        })?;
        tags.extend(page.tags.unwrap_or_default());
    }
    tags.sort();
    tags.dedup();
    Ok(tags)
}

/// The target of a `Link: <…>; rel="next"` header.
fn next_link(link: &str) -> Option<String> {
    link.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        params.contains("rel=\"next\"").then(|| {
            target
                .trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_string()
        })
    })
}

fn short(d: &Digest) -> String {
    d.hex().get(..12).unwrap_or_default().to_string()
}

/// Why a blob request failed: worth another try, or not.
enum Failure {
    Transient(String),
    Permanent(Error),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Transient(why) => f.write_str(why),
            Failure::Permanent(e) => write!(f, "{e}"),
        }
    }
}

/// GETs a blob from `offset` on (a Range request past 0), following
/// redirects.
fn get_blob(
    registry: &Registry,
    reference: &Reference,
    digest: &Digest,
    offset: u64,
) -> std::result::Result<Response, Failure> {
    let mut target = format!("/v2/{}/blobs/{digest}", reference.path());
    let range = format!("bytes={offset}-");
    let headers: Vec<(&str, &str)> = if offset > 0 {
        vec![("Range", range.as_str())]
    } else {
        Vec::new()
    };
    // A redirect to another host (a CDN) goes there without credentials.
    let mut elsewhere: Option<Registry> = None;
    for _ in 0..=MAX_REDIRECTS {
        let response = elsewhere
            .as_ref()
            .unwrap_or(registry)
            .send("GET", &target, &headers, Body::Empty)
            .map_err(|e| Failure::Transient(e.to_string()))?;
        match response.status {
            200 | 206 => return Ok(response),
            301 | 302 | 303 | 307 | 308 => match response.header("location") {
                Some(location) => {
                    if let Some((https, authority)) = url_origin(location) {
                        elsewhere = if authority == registry.host {
                            None
                        } else {
                            Some(
                                Registry::at(&registry.settings, authority, https, None).map_err(
                                    |e| {
                                        Failure::Permanent(Error::InvalidArgument(format!(
                                    "registry {} redirected blob {digest} to {location}: {e}",
                                    reference.domain()
                                )))
                                    },
                                )?,
                            )
                        };
                    }
                    target = location.to_string();
                }
                None => {
                    return Err(Failure::Permanent(Error::Internal(format!(
                        "registry {} redirected blob {digest} without a Location",
                        reference.domain()
                    ))))
                }
            },
            404 => {
                return Err(Failure::Permanent(Error::NotFound(format!(
                    "blob {digest} of {} not found: {}",
                    reference.familiar(),
                    response.error_text()
                ))))
            }
            401 | 403 => {
                return Err(Failure::Permanent(Error::InvalidArgument(format!(
                    "pull access denied for {}: {}",
                    reference.familiar_name(),
                    response.error_text()
                ))))
            }
            status if status >= 500 || status == 429 => {
                return Err(Failure::Transient(format!(
                    "registry {} answered {status} for blob {digest}: {}",
                    reference.domain(),
                    response.error_text()
                )))
            }
            status => {
                return Err(Failure::Permanent(Error::Internal(format!(
                    "registry {} answered {status} for blob {digest}: {}",
                    reference.domain(),
                    response.error_text()
                ))))
            }
        }
    }
    Err(Failure::Permanent(Error::Internal(format!(
        "registry {} redirected blob {digest} more than {MAX_REDIRECTS} times (a redirect loop?)",
        reference.domain()
    ))))
}

/// `(is https, host[:port])` of an absolute http(s) URL.
fn url_origin(url: &str) -> Option<(bool, &str)> {
    let (https, rest) = if let Some(rest) = url.strip_prefix("https://") {
        (true, rest)
    } else {
        (false, url.strip_prefix("http://")?)
    };
    let authority = rest.split(['/', '?']).next().unwrap_or(rest);
    (!authority.is_empty()).then_some((https, authority))
}

/// GETs a small blob (the config) whole, with the same retries as layers
/// and the same moves from a failing mirror to the next source.
fn get_small_blob(
    sources: &BlobSources,
    reference: &Reference,
    digest: &Digest,
    limit: u64,
) -> Result<Vec<u8>> {
    let mut last = String::new();
    let mut source = 0;
    let mut attempt = 0;
    while attempt < ATTEMPTS {
        let failure = match sources.get(source) {
            Err(e) => Failure::Permanent(Error::Internal(e)),
            Ok(registry) => match get_blob(registry, reference, digest, 0) {
                Ok(response) => match response.bytes(limit) {
                    Ok(bytes) => return Ok(bytes),
                    Err(e) => Failure::Transient(e.to_string()),
                },
                Err(failure) => failure,
            },
        };
        if let Some(next) = sources.next(source, digest, &failure.to_string()) {
            source = next;
            attempt = 0;
            continue;
        }
        match failure {
            Failure::Permanent(e) => return Err(e),
            Failure::Transient(e) => last = e,
        }
        attempt += 1;
        if attempt < ATTEMPTS {
            std::thread::sleep(BACKOFF * 2u32.pow(attempt - 1));
        }
    }
    Err(Error::Internal(format!(
        "fetching blob {digest} of {}: {last} (gave up after {ATTEMPTS} tries)",
        reference.familiar()
    )))
}

/// One layer's download: reading it yields the blob's bytes, which are
/// also written to the content store's ingest (`writer`) as they pass. A
/// dropped or stalled connection is resumed from the bytes received with a
/// Range request, a few times with back-off.
struct BlobDownload<'a> {
    sources: &'a BlobSources,
    /// Which of `sources` the blob comes from now.
    source: usize,
    reference: &'a Reference,
    digest: &'a Digest,
    size: u64,
    id: String,
    response: Option<Response>,
    writer: berth_content::Writer,
    attempts: u32,
    reported: u64,
    /// Bytes to drop from a response that ignored the Range.
    skip: u64,
    /// Why reading failed, in the engine's terms.
    failure: Option<Error>,
    status: mpsc::Sender<Status>,
    cancel: &'a AtomicBool,
}

impl BlobDownload<'_> {
    fn done(&self) -> u64 {
        self.writer.offset()
    }

    fn fail(&mut self, e: Error) -> std::io::Error {
        let message = e.to_string();
        self.failure = Some(e);
        std::io::Error::other(message)
    }

    /// (Re)connects from what has been received; `why` is the previous failure.
    fn connect(&mut self, why: Option<String>) -> std::io::Result<()> {
        let mut last = why;
        loop {
            if self.cancel.load(Ordering::Relaxed) {
                return Err(self.fail(Error::Internal("pull cancelled".into())));
            }
            if self.attempts >= ATTEMPTS {
                // A mirror that keeps cutting the body short passes the
                // blob on too.
                let why = format!(
                    "{} (gave up after {ATTEMPTS} tries)",
                    last.as_deref().unwrap_or_default()
                );
                if let Some(next) = self.sources.next(self.source, self.digest, &why) {
                    self.source = next;
                    self.attempts = 0;
                    continue;
                }
                let e = Error::Internal(format!(
                    "downloading layer {} of {}: {} (gave up after {ATTEMPTS} tries, {} of {} bytes received)",
                    self.digest,
                    self.reference.familiar(),
                    last.unwrap_or_default(),
                    self.done(),
                    self.size
                ));
                return Err(self.fail(e));
            }
            if self.attempts > 0 {
                let pause = BACKOFF * 2u32.pow(self.attempts - 1);
                tracing::info!(
                    "layer {}: {} ; trying again from byte {} in {pause:?}",
                    self.digest,
                    last.as_deref().unwrap_or(""),
                    self.done()
                );
                let _ = self.status.send(Status::layer(
                    &self.id,
                    format!("Retrying in {} seconds", pause.as_secs().max(1)),
                ));
                std::thread::sleep(pause);
            }
            self.attempts += 1;
            let offset = self.done();
            let got = self
                .sources
                .get(self.source)
                .map_err(|e| Failure::Permanent(Error::Internal(e)))
                .and_then(|registry| get_blob(registry, self.reference, self.digest, offset));
            // A mirror that fails passes the blob on (from what was
            // received: a blob is the same bytes everywhere).
            let got = match got {
                Err(failure) => {
                    match self
                        .sources
                        .next(self.source, self.digest, &failure.to_string())
                    {
                        Some(next) => {
                            self.source = next;
                            self.attempts = 0;
                            last = Some(failure.to_string());
                            continue;
                        }
                        None => Err(failure),
                    }
                }
                ok => ok,
            };
            match got {
                Ok(response) => {
                    self.skip = 0;
                    if offset > 0 {
                        if response.status == 206 {
                            let start = response
                                .header("content-range")
                                .and_then(|r| r.trim().strip_prefix("bytes "))
                                .and_then(|r| r.split('-').next())
                                .and_then(|s| s.parse::<u64>().ok());
                            if start != Some(offset) {
                                last = Some(format!(
                                    "asked for bytes from {offset}, the registry sent Content-Range {:?}",
                                    response.header("content-range")
                                ));
                                continue;
                            }
                        } else {
                            // The whole blob again: what was received is skipped.
                            self.skip = offset;
                        }
                    }
                    self.response = Some(response);
                    return Ok(());
                }
                Err(Failure::Permanent(e)) => return Err(self.fail(e)),
                Err(Failure::Transient(e)) => last = Some(e),
            }
        }
    }

    /// Reads the blob to its end and returns the writer, ready to be
    /// verified and committed. Each piece read is also sent to `unpack`
    /// while its receiver takes them (an unpacker that stopped early leaves
    /// the rest to be downloaded and hashed here); the unpacker gives the
    /// buffers back through the second channel to be used again.
    fn finish(mut self, mut unpack: Option<ToUnpacker>) -> Result<berth_content::Writer> {
        let mut spare = Vec::new();
        loop {
            let mut buf = match &unpack {
                Some((_, returned)) => returned.try_recv().unwrap_or_default(),
                None => std::mem::take(&mut spare),
            };
            buf.resize(CHUNK, 0);
            match self.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => match &unpack {
                    Some((to, _)) => {
                        buf.truncate(n);
                        if to.send(buf).is_err() {
                            unpack = None;
                        }
                    }
                    None => spare = buf,
                },
                Err(e) => {
                    return Err(self.failure.take().unwrap_or_else(|| {
                        Error::io(format!("download layer {}", self.digest), e)
                    }))
                }
            }
        }
        Ok(self.writer)
    }
}

/// Where a download sends its chunks, and where they come back, used.
type ToUnpacker = (mpsc::SyncSender<Vec<u8>>, mpsc::Receiver<Vec<u8>>);

/// Bytes of a layer read from the network at a time.
const CHUNK: usize = 256 << 10;
/// Chunks a layer's download may be ahead of its unpacking.
const READ_AHEAD: usize = 8;

/// The unpacking side of a download: reads the chunks the downloading
/// thread sends; ends where the download ends (or failed, which the
/// downloading thread reports).
struct Chunks {
    received: mpsc::Receiver<Vec<u8>>,
    /// Where used chunks go back to the downloading thread.
    give_back: mpsc::Sender<Vec<u8>>,
    chunk: Vec<u8>,
    at: usize,
}

impl Read for Chunks {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.at == self.chunk.len() {
            match self.received.recv() {
                Ok(chunk) => {
                    let mut used = std::mem::replace(&mut self.chunk, chunk);
                    if used.capacity() > 0 {
                        used.clear();
                        let _ = self.give_back.send(used);
                    }
                    self.at = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len() - self.at);
        buf[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

impl Read for BlobDownload<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if let Some(e) = &self.failure {
            return Err(std::io::Error::other(e.to_string()));
        }
        loop {
            if self.cancel.load(Ordering::Relaxed) {
                return Err(self.fail(Error::Internal("pull cancelled".into())));
            }
            let Some(response) = self.response.as_mut() else {
                self.connect(None)?;
                continue;
            };
            let got = response.body().read(buf);
            match got {
                Ok(0) if self.done() >= self.size => return Ok(0),
                Ok(0) => {
                    let why = format!(
                        "the registry ended the body after {} of {} bytes",
                        self.done(),
                        self.size
                    );
                    self.response = None;
                    self.connect(Some(why))?;
                }
                Ok(n) => {
                    let dropped = (n as u64).min(self.skip) as usize;
                    self.skip -= dropped as u64;
                    if dropped == n {
                        continue;
                    }
                    buf.copy_within(dropped..n, 0);
                    let n = n - dropped;
                    if let Err(e) = self.writer.write_all(&buf[..n]) {
                        let e = Error::InvalidArgument(format!(
                            "layer {} of {}: {e}",
                            self.digest,
                            self.reference.familiar()
                        ));
                        return Err(self.fail(e));
                    }
                    let done = self.done();
                    if done - self.reported >= 512 << 10 || done == self.size {
                        self.reported = done;
                        let _ = self.status.send(Status {
                            id: Some(self.id.clone()),
                            status: "Downloading".into(),
                            progress: Some((done, self.size)),
                        });
                    }
                    return Ok(n);
                }
                Err(e) => {
                    let why = e.to_string();
                    self.response = None;
                    self.connect(Some(why))?;
                }
            }
        }
    }
}

/// Distinct names for staging directories of this process.
static STAGES: AtomicU64 = AtomicU64::new(0);

/// What one pull shares with its download workers.
struct LayerJob<'a> {
    images: &'a ImageService,
    sources: &'a BlobSources,
    reference: &'a Reference,
    manifest: &'a Manifest,
    diff_ids: &'a [Digest],
    chain_ids: &'a [Digest],
    lease: &'a berth_content::Lease,
    cancel: &'a AtomicBool,
}

/// What became of one layer.
enum Fetched {
    /// The content store had the blob (or another pull fetched it).
    Present,
    /// Downloaded and verified; unpacked too when `Some`.
    Downloaded(Option<StagedLayer>),
}

impl LayerJob<'_> {
    /// Downloads layer `i` unless the content store has it; unpacks it
    /// meanwhile when its snapshot can be made now.
    fn fetch(&self, i: usize, status: &mpsc::Sender<Status>) -> Result<Fetched> {
        let layer = &self.manifest.layers[i];
        let id = short(&layer.digest);
        let _claim = self.images.claim_blob(&layer.digest, || {
            let _ = status.send(Status::layer(&id, "Waiting"));
        });
        self.lease.pin(&layer.digest);
        if self.images.has_blob(&layer.digest) {
            let _ = status.send(Status::layer(&id, "Already exists"));
            return Ok(Fetched::Present);
        }
        let chain = &self.chain_ids[i];
        let parent = i.checked_sub(1).map(|p| &self.chain_ids[p]);
        // vfs copies the parent into a new layer, so it must be committed.
        let stage = (self.images.stages_layers_in_parallel()
            || parent.is_none_or(|p| self.images.has_snapshot(p)))
            && !self.images.has_snapshot(chain);
        let writer = self.images.blob_writer(&layer.digest, layer.size)?;
        let download = BlobDownload {
            sources: self.sources,
            source: 0,
            reference: self.reference,
            digest: &layer.digest,
            size: layer.size,
            id: id.clone(),
            response: None,
            writer,
            attempts: 0,
            reported: 0,
            skip: 0,
            failure: None,
            status: status.clone(),
            cancel: self.cancel,
        };
        let mut staged = None;
        let mut unpack_error = None;
        let finished = if stage {
            let name = format!(
                "pull-{}-{}",
                std::process::id(),
                STAGES.fetch_add(1, Ordering::Relaxed)
            );
            let (chunks, received) = mpsc::sync_channel(READ_AHEAD);
            let (give_back, returned) = mpsc::channel();
            // The layer is unpacked on a thread of its own, fed the bytes
            // this one downloads: hashing and writing the blob overlaps with
            // decompressing, hashing and writing its files.
            let (unpacked, finished) = std::thread::scope(|scope| {
                let unpacker = scope.spawn(move || {
                    let chunks = Chunks {
                        received,
                        give_back,
                        chunk: Vec::new(),
                        at: 0,
                    };
                    berth_snapshot::decompress(chunks)
                        .map_err(|e| Error::InvalidArgument(format!("layer {}: {e}", layer.digest)))
                        .and_then(|tar| self.images.stage_layer(chain, parent, &name, tar))
                });
                let finished = download.finish(Some((chunks, returned)));
                let unpacked = unpacker.join().unwrap_or_else(|_| {
                    Err(Error::Internal(format!(
                        "unpacking layer {} panicked",
                        layer.digest
                    )))
                });
                (unpacked, finished)
            });
            match unpacked {
                Ok(s) => staged = Some(s),
                // A download failure explains an unpack failure best (it is
                // returned below); a digest mismatch found below does too.
                Err(e) => {
                    unpack_error = Some(Error::InvalidArgument(format!(
                        "layer {} of {}: {e}",
                        layer.digest,
                        self.reference.familiar()
                    )))
                }
            }
            finished
        } else {
            download.finish(None)
        };
        let abort = |staged: &Option<StagedLayer>| {
            if let Some(s) = staged {
                self.images.abort_staged(chain, &s.name);
            }
        };
        let writer = match finished {
            Ok(w) => w,
            Err(e) => {
                abort(&staged);
                return Err(e);
            }
        };
        let _ = status.send(Status::layer(&id, "Verifying Checksum"));
        if let Err(e) = writer.commit_pinned(self.lease) {
            abort(&staged);
            return Err(Error::InvalidArgument(format!(
                "layer {} of {}: {e}",
                layer.digest,
                self.reference.familiar()
            )));
        }
        if let Some(e) = unpack_error {
            return Err(e);
        }
        let _ = status.send(Status::layer(&id, "Download complete"));
        if let Some(s) = &staged {
            if s.diff_id != self.diff_ids[i] {
                abort(&staged);
                return Err(Error::InvalidArgument(format!(
                    "layer {} of {}: content does not match diff_id {}",
                    layer.digest,
                    self.reference.familiar(),
                    self.diff_ids[i]
                )));
            }
            let _ = status.send(Status {
                id: Some(id.clone()),
                status: "Extracting".into(),
                progress: Some((layer.size, layer.size)),
            });
        }
        Ok(Fetched::Downloaded(staged))
    }
}

/// Fetches what is missing and stores the image, reporting dockerd's
/// progress messages.
pub fn pull(
    images: &ImageService,
    resolved: ResolvedPull,
    limits: &TransferLimits,
    progress: &mut dyn FnMut(Status),
) -> Result<()> {
    let familiar = resolved.reference.familiar();
    let updated = pull_resolved(images, resolved, limits, progress)?;
    progress(Status::line(if updated {
        format!("Status: Downloaded newer image for {familiar}")
    } else {
        format!("Status: Image is up to date for {familiar}")
    }));
    Ok(())
}

/// `docker pull --all-tags`: every tag of the repository (`tags`, from
/// [`list_tags`]), one after the other, with one status line at the end
/// as dockerd.
#[allow(clippy::too_many_arguments)]
pub fn pull_all_tags(
    settings: &RegistrySettings,
    images: &ImageService,
    repository: &Reference,
    tags: Vec<String>,
    credentials: Option<&Credentials>,
    platform: Option<&Platform>,
    limits: &TransferLimits,
    progress: &mut dyn FnMut(Status),
) -> Result<()> {
    if tags.is_empty() {
        return Err(Error::NotFound(format!(
            "repository {} has no tags",
            repository.familiar_name()
        )));
    }
    let mut updated = false;
    for tag in tags {
        let reference = Reference::parse_normalized(&format!("{}:{tag}", repository.name()))
            .map_err(image_error)?;
        let resolved = resolve(settings, &reference, credentials, platform)?;
        updated |= pull_resolved(images, resolved, limits, progress)?;
    }
    let name = repository.familiar_name();
    progress(Status::line(if updated {
        format!("Status: Downloaded newer image for {name}")
    } else {
        format!("Status: Image is up to date for {name}")
    }));
    Ok(())
}

/// Pulls each image of `resolved` in turn; returns whether the tag now
/// names another image.
fn pull_resolved(
    images: &ImageService,
    resolved: ResolvedPull,
    limits: &TransferLimits,
    progress: &mut dyn FnMut(Status),
) -> Result<bool> {
    let ResolvedPull {
        sources,
        reference,
        manifest_digest,
        images: resolved,
    } = resolved;
    let mut updated = false;
    for image in resolved {
        updated |= pull_one(
            images,
            &sources,
            &reference,
            &manifest_digest,
            image,
            limits,
            progress,
        )?;
    }
    Ok(updated)
}

/// One manifest's pull; returns whether the tag now names another image.
fn pull_one(
    images: &ImageService,
    sources: &BlobSources,
    reference: &Reference,
    manifest_digest: &Digest,
    image: ResolvedImage,
    limits: &TransferLimits,
    progress: &mut dyn FnMut(Status),
) -> Result<bool> {
    let ResolvedImage {
        manifest,
        pulled,
        platform,
    } = image;
    // dockerd's label: the tag, or the whole reference pulled by digest.
    let label = match (reference.tag(), reference.digest()) {
        (Some(tag), _) => tag.to_string(),
        (None, Some(_)) => reference.to_string(),
        (None, None) => manifest_digest.to_string(),
    };
    progress(Status {
        id: Some(label),
        status: format!("Pulling from {}", reference.path()),
        progress: None,
    });

    let config_raw = get_small_blob(sources, reference, &manifest.config.digest, CONFIG_LIMIT)?;
    if Digest::sha256_of(&config_raw) != manifest.config.digest {
        return Err(Error::InvalidArgument(format!(
            "image config verification failed for digest {}",
            manifest.config.digest
        )));
    }
    let config = ImageConfig::from_bytes(config_raw).map_err(image_error)?;
    if let Some(wanted) = &platform {
        let got = config_platform(&config);
        if !platform_matches(&got, wanted) {
            return Err(Error::NotFound(format!(
                "image with reference {} was found but does not provide the specified platform ({}): it is {got}",
                reference.familiar(),
                wanted.normalized()
            )));
        }
    }
    let diff_ids = config.diff_ids().to_vec();
    if diff_ids.len() != manifest.layers.len() {
        return Err(Error::InvalidArgument(format!(
            "{}: the manifest has {} layers, the config {} diff_ids",
            reference.familiar(),
            manifest.layers.len(),
            diff_ids.len()
        )));
    }
    let chain_ids = config.chain_ids();

    let lease = images.blob_lease();
    let mut staged = StagedLayers::new();
    // dockerd lists no layers of an image it already has.
    let known = images.has_image(config.digest());
    let fetched = fetch_layers(
        &LayerJob {
            images,
            sources,
            reference,
            manifest: &manifest,
            diff_ids: &diff_ids,
            chain_ids: &chain_ids,
            lease: &lease,
            cancel: &AtomicBool::new(false),
        },
        limits.downloads.max(1),
        &mut staged,
        &mut |status: Status| {
            if !(known && status.status == "Already exists") {
                progress(status);
            }
        },
    );
    let abort_staged = |staged: &StagedLayers| {
        for (chain, s) in staged {
            images.abort_staged(chain, &s.name);
        }
    };
    let fetched = match fetched {
        Ok(fetched) => fetched,
        Err(e) => {
            abort_staged(&staged);
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
    let stored = images.store_pulled(
        &img,
        tag.as_ref(),
        &repo_digest,
        &pulled,
        &staged,
        &mut extracting,
    );
    abort_staged(&staged);
    drop(lease);
    if stored.is_err() {
        images.discard_unreferenced_blobs();
    }
    let updated = stored?;
    for id in &fetched {
        progress(Status::layer(id, "Pull complete"));
    }
    progress(Status::line(format!("Digest: {manifest_digest}")));
    Ok(updated)
}

/// Downloads the layers the content store lacks, `parallel` at a time,
/// each verified against its digest and pinned in `job.lease`; fills
/// `staged` with the layers unpacked on the way and returns the short ids
/// of those fetched. The first failure stops the others.
fn fetch_layers(
    job: &LayerJob<'_>,
    parallel: usize,
    staged: &mut StagedLayers,
    progress: &mut dyn FnMut(Status),
) -> Result<Vec<String>> {
    let layers = &job.manifest.layers;
    let mut todo = Vec::new();
    for (i, layer) in layers.iter().enumerate() {
        let id = short(&layer.digest);
        if job.images.has_blob(&layer.digest) {
            job.lease.pin(&layer.digest);
            if job.images.has_blob(&layer.digest) {
                progress(Status::layer(&id, "Already exists"));
                continue;
            }
        }
        progress(Status::layer(&id, "Pulling fs layer"));
        todo.push(i);
    }
    for &i in todo.iter().skip(parallel) {
        progress(Status::layer(&short(&layers[i].digest), "Waiting"));
    }
    let next = AtomicUsize::new(0);
    let (sender, receiver) = mpsc::channel::<Status>();
    let results = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..parallel.min(todo.len()))
            .map(|_| {
                let sender = sender.clone();
                let (todo, next) = (&todo, &next);
                scope.spawn(move || {
                    let mut out = Vec::new();
                    loop {
                        let n = next.fetch_add(1, Ordering::Relaxed);
                        let Some(&i) = todo.get(n) else { break };
                        if job.cancel.load(Ordering::Relaxed) {
                            break;
                        }
                        let result = job.fetch(i, &sender);
                        if result.is_err() {
                            job.cancel.store(true, Ordering::Relaxed);
                        }
                        out.push((i, result));
                    }
                    out
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
                w.join().unwrap_or_else(|_| {
                    vec![(
                        usize::MAX,
                        Err(Error::Internal("a download worker panicked".into())),
                    )]
                })
            })
            .collect::<Vec<_>>()
    });
    let mut first_error = None;
    let mut fetched = Vec::new();
    let mut results = results;
    results.sort_by_key(|(i, _)| *i);
    for (i, result) in results {
        match result {
            Ok(Fetched::Present) => {}
            Ok(Fetched::Downloaded(stage)) => {
                fetched.push(short(&layers[i].digest));
                if let Some(s) = stage {
                    staged.insert(job.chain_ids[i].clone(), s);
                }
            }
            // The first failure is the cause; the others were cancelled.
            Err(e) => {
                let cancelled = e.to_string().contains("pull cancelled");
                match &first_error {
                    None => first_error = Some(e),
                    Some(prev) if prev.to_string().contains("pull cancelled") && !cancelled => {
                        first_error = Some(e)
                    }
                    Some(_) => {}
                }
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(fetched),
    }
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

    /// [`resolve`] of `host/rest` with default settings, no credentials
    /// and the host's platform.
    fn resolve_on(host: &str, rest: &str) -> Result<ResolvedPull> {
        resolve(
            &RegistrySettings::default(),
            &reference(host, rest),
            None,
            None,
        )
    }

    fn reference(host: &str, rest: &str) -> Reference {
        Reference::parse_normalized(&format!("{host}/{rest}")).expect("reference")
    }

    #[test]
    fn platforms_parse_as_dockerd_takes_them() {
        let p = parse_platform("linux/arm64/v8").expect("arm64");
        assert_eq!(p.to_string(), "linux/arm64");
        assert_eq!(
            parse_platform("linux/arm/v6").expect("arm").to_string(),
            "linux/arm/v6"
        );
        assert_eq!(
            parse_platform("s390x").expect("arch").to_string(),
            "linux/s390x"
        );
        assert!(parse_platform("linux//v7").is_err());
        assert!(parse_platform("a/b/c/d").is_err());
    }

    #[test]
    fn redirect_origins_are_split_from_their_path() {
        assert_eq!(
            url_origin("https://cdn.example/blobs/x?sig=1"),
            Some((true, "cdn.example"))
        );
        assert_eq!(
            url_origin("http://127.0.0.1:5001/b"),
            Some((false, "127.0.0.1:5001"))
        );
        assert_eq!(url_origin("/v2/r/blobs/x"), None);
    }

    #[test]
    fn the_next_tags_page_comes_from_the_link_header() {
        assert_eq!(
            next_link(r#"</v2/r/tags/list?n=2&last=b>; rel="next""#).as_deref(),
            Some("/v2/r/tags/list?n=2&last=b")
        );
        assert_eq!(next_link(r#"</x>; rel="prev""#), None);
    }

    #[test]
    fn pulls_tags_and_records_the_repo_digest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let images = service(dir.path());
        let (routes, config_digest, manifest_digest) = image_routes("t/ok", None, None);
        let host = serve(routes);
        let resolved = resolve_on(&host, "t/ok:1").expect("resolve");
        let mut lines = Vec::new();
        pull(&images, resolved, &TransferLimits::default(), &mut |s| {
            lines.push(s.status)
        })
        .expect("pull");
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
        let index_digest = Digest::sha256_of(index.as_bytes());
        routes.insert(
            "/v2/t/idx/manifests/1".to_string(),
            (200, media_type::OCI_INDEX.to_string(), index.into_bytes()),
        );
        let host = serve(routes);
        let resolved = resolve_on(&host, "t/idx:1").expect("resolve");
        let mut lines = Vec::new();
        pull(&images, resolved, &TransferLimits::default(), &mut |s| {
            lines.push(s.status)
        })
        .expect("pull");
        let (id, _) = images.resolve(&format!("{host}/t/idx:1")).expect("tagged");
        assert_eq!(id, config_digest);
        assert!(
            lines.contains(&format!("Digest: {index_digest}")),
            "{lines:?}"
        );
        assert_eq!(
            images.list().expect("list")[0].repo_digests,
            vec![format!("{host}/t/idx@{index_digest}")]
        );
    }

    #[test]
    fn a_layer_that_does_not_match_its_digest_stores_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let images = service(dir.path());
        let mut tampered = vec![0u8; 1024];
        tampered[0] = b'x';
        let (routes, _, _) = image_routes("t/bad", Some(tampered), None);
        let host = serve(routes);
        let resolved = resolve_on(&host, "t/bad:1").expect("resolve");
        let err = pull(&images, resolved, &TransferLimits::default(), &mut |_| {})
            .expect_err("tampered layer");
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
        let resolved = resolve_on(&host, "t/diff:1").expect("resolve");
        let err = pull(&images, resolved, &TransferLimits::default(), &mut |_| {})
            .expect_err("wrong diff_id");
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
        let err = resolve_on(&host, "t/none:1").expect_err("missing");
        assert!(matches!(err, Error::NotFound(_)), "{err:?}");
        assert_eq!(
            err.to_string(),
            format!("manifest for {host}/t/none:1 not found: manifest unknown: manifest unknown")
        );
        let err = resolve_on(&host, "t/old:1").expect_err("schema 1");
        assert!(err.to_string().contains("schema 1"), "{err}");
    }

    #[test]
    fn bearer_tokens_are_fetched_from_the_realm() {
        let dir = tempfile::tempdir().expect("tempdir");
        let images = service(dir.path());
        let (routes, config_digest, _) = image_routes("t/tok", None, None);
        let host = serve_with_token(routes, Some("s3cret-token"));
        let resolved = resolve_on(&host, "t/tok:1").expect("resolve");
        pull(&images, resolved, &TransferLimits::default(), &mut |_| {}).expect("pull");
        let (id, _) = images.resolve(&format!("{host}/t/tok:1")).expect("tagged");
        assert_eq!(id, config_digest);
    }
}
