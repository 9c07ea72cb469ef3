//! The distribution API's endpoints. Repository names contain slashes, so the
//! path after `/v2/` is split here rather than by the router; each handler
//! parses its input, calls the store, and returns a `RegistryError` that
//! `error.rs` maps to the spec's status code and body.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use futures_util::stream;

use crate::auth::Htpasswd;
use crate::error::{RegistryError, Result};
use crate::names::{check_name, Digest, Reference};
use crate::storage::{sha256_digest, Storage};
use crate::token::{Actions, Grant, Needed, Refusal, TokenAnswer, TokenAuth, TokenRequest};
use crate::upload::{random_id, Upload, Uploads};

/// Manifests larger than this are refused unless configured otherwise
/// (registry:2 uses the same limit).
pub const MANIFEST_LIMIT: usize = 4 * 1024 * 1024;
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const DIGEST_HEADER: &str = "docker-content-digest";
const UPLOAD_UUID_HEADER: &str = "docker-upload-uuid";

/// Who may use the registry.
pub enum Access {
    Open,
    /// Every request needs an htpasswd user's basic credentials.
    Basic(Htpasswd),
    /// Every request needs a bearer token with the scope it needs.
    Token(Box<TokenAuth>),
}

/// The most a client may upload.
pub struct Limits {
    pub manifest_bytes: usize,
    /// One blob, over all its chunks (`None`: no limit).
    pub blob_bytes: Option<u64>,
}

pub struct Registry {
    storage: Arc<Storage>,
    uploads: Arc<Uploads>,
    access: Access,
    tls: bool,
    limits: Limits,
}

impl Registry {
    pub fn new(
        storage: Arc<Storage>,
        uploads: Arc<Uploads>,
        access: Access,
        tls: bool,
        limits: Limits,
    ) -> Registry {
        Registry {
            storage,
            uploads,
            access,
            tls,
            limits,
        }
    }

    /// Refuses an upload at `offset` whose request says (Content-Length)
    /// it brings more than the blob limit allows, before reading it.
    fn check_declared_size(&self, offset: u64, headers: &HeaderMap) -> Result<()> {
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        match (self.limits.blob_bytes, declared) {
            (Some(limit), Some(length)) if offset.saturating_add(length) > limit => {
                Err(RegistryError::BlobTooLarge(limit))
            }
            _ => Ok(()),
        }
    }
}

pub fn router(registry: Arc<Registry>) -> Router {
    Router::new().fallback(dispatch).with_state(registry)
}

/// The endpoint a `/v2/…` path names.
enum Endpoint<'a> {
    Base,
    Catalog,
    Tags(&'a str),
    Manifest(&'a str, &'a str),
    Blob(&'a str, &'a str),
    UploadStart(&'a str),
    Upload(&'a str, &'a str),
    Referrers(&'a str, &'a str),
}

fn endpoint(path: &str) -> Option<Endpoint<'_>> {
    let rest = path.strip_prefix("/v2")?;
    if rest.is_empty() || rest == "/" {
        return Some(Endpoint::Base);
    }
    let rest = rest.strip_prefix('/')?;
    if rest == "_catalog" {
        return Some(Endpoint::Catalog);
    }
    if let Some(name) = rest.strip_suffix("/tags/list") {
        return Some(Endpoint::Tags(name));
    }
    if let Some(name) = rest.strip_suffix("/blobs/uploads/") {
        return Some(Endpoint::UploadStart(name));
    }
    let (head, last) = rest.rsplit_once('/')?;
    let (name, kind) = head.rsplit_once('/')?;
    match kind {
        "manifests" => Some(Endpoint::Manifest(name, last)),
        "referrers" => Some(Endpoint::Referrers(name, last)),
        "blobs" => Some(Endpoint::Blob(name, last)),
        "uploads" => name
            .strip_suffix("/blobs")
            .map(|name| Endpoint::Upload(name, last)),
        _ => None,
    }
}

async fn dispatch(State(registry): State<Arc<Registry>>, request: Request) -> Response {
    let result = handle(&registry, request).await;
    let mut response = result.unwrap_or_else(IntoResponse::into_response);
    response.headers_mut().insert(
        "docker-distribution-api-version",
        HeaderValue::from_static("registry/2.0"),
    );
    response
}

async fn handle(registry: &Registry, request: Request) -> Result<Response> {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let query: HashMap<String, String> = request
        .uri()
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let origin = format!(
        "{}://{}",
        if registry.tls { "https" } else { "http" },
        request
            .headers()
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("localhost")
    );
    if let Access::Token(token) = &registry.access {
        if path == token.path() {
            return token_endpoint(token, request, authorization).await;
        }
    }
    let endpoint = endpoint(&path).ok_or(RegistryError::NotFound)?;
    if let Endpoint::Tags(name)
    | Endpoint::Manifest(name, _)
    | Endpoint::Blob(name, _)
    | Endpoint::UploadStart(name)
    | Endpoint::Upload(name, _)
    | Endpoint::Referrers(name, _) = endpoint
    {
        check_name(name)?;
    }
    let authorization = authorization.as_deref();
    let mut mount_from_allowed = true;
    match &registry.access {
        Access::Open => {}
        Access::Basic(htpasswd) => {
            if htpasswd.user(authorization).await.is_none() {
                return Err(RegistryError::Unauthorized {
                    challenge: "Basic realm=\"berth-registry\"".into(),
                });
            }
        }
        Access::Token(token) => {
            let needed = needed(&endpoint, &method);
            token
                .authorize(authorization, &needed, &origin)
                .map_err(|refusal| match refusal {
                    Refusal::Unauthenticated(challenge) => {
                        RegistryError::Unauthorized { challenge }
                    }
                    Refusal::InsufficientScope(challenge) => RegistryError::Denied { challenge },
                })?;
            if let Some(from) = query.get("from") {
                mount_from_allowed = token.may_pull(authorization, from, &origin);
            }
        }
    }
    let (parts, body) = request.into_parts();
    let headers = parts.headers;
    let store = &registry.storage;
    match (endpoint, method) {
        (Endpoint::Base, Method::GET | Method::HEAD) => Ok(empty(StatusCode::OK)),
        (Endpoint::Catalog, Method::GET) => {
            let names = store.repositories().await?;
            let (page, link) = paginate(names, &query, "/v2/_catalog");
            json_response(serde_json::json!({ "repositories": page }), link)
        }
        (Endpoint::Tags(name), Method::GET) => {
            if !store.repo_exists(name).await {
                return Err(RegistryError::NameUnknown(name.to_owned()));
            }
            let tags = store.tags(name).await?;
            let (page, link) = paginate(tags, &query, &format!("/v2/{name}/tags/list"));
            json_response(serde_json::json!({ "name": name, "tags": page }), link)
        }
        (Endpoint::Manifest(name, reference), method @ (Method::GET | Method::HEAD)) => {
            get_manifest(store, name, reference, method == Method::HEAD).await
        }
        (Endpoint::Manifest(name, reference), Method::PUT) => {
            put_manifest(
                store,
                name,
                reference,
                &headers,
                body,
                registry.limits.manifest_bytes,
            )
            .await
        }
        (Endpoint::Manifest(name, reference), Method::DELETE) => {
            let deleted = match Reference::parse(reference)? {
                Reference::Tag(tag) => store.delete_tag(name, &tag).await?,
                Reference::Digest(digest) => store.delete_manifest(name, &digest).await?,
            };
            if deleted {
                Ok(empty(StatusCode::ACCEPTED))
            } else {
                Err(RegistryError::ManifestUnknown(reference.to_owned()))
            }
        }
        (Endpoint::Blob(name, digest), method @ (Method::GET | Method::HEAD)) => {
            get_blob(
                store,
                name,
                &Digest::parse(digest)?,
                &headers,
                method == Method::HEAD,
            )
            .await
        }
        (Endpoint::Blob(name, digest), Method::DELETE) => {
            store.unlink_layer(name, &Digest::parse(digest)?).await?;
            Ok(empty(StatusCode::ACCEPTED))
        }
        (Endpoint::UploadStart(name), Method::POST) => {
            start_upload(registry, name, &query, &headers, mount_from_allowed, body).await
        }
        (Endpoint::Upload(name, id), Method::GET) => {
            let session = session(registry, name, id).await?;
            let guard = session.lock().await;
            let upload = guard
                .as_ref()
                .ok_or_else(|| RegistryError::UploadUnknown(id.to_owned()))?;
            Ok(upload_response(
                StatusCode::NO_CONTENT,
                name,
                id,
                upload.offset,
            ))
        }
        (Endpoint::Upload(name, id), Method::PATCH) => {
            patch_upload(registry, name, id, &headers, body).await
        }
        (Endpoint::Upload(name, id), Method::PUT) => {
            finish_upload(registry, name, id, &query, &headers, body).await
        }
        (Endpoint::Upload(name, id), Method::DELETE) => {
            let session = session(registry, name, id).await?;
            let upload = session.lock().await.take();
            registry.uploads.remove(id);
            match upload {
                Some(upload) => {
                    upload.discard().await;
                    Ok(empty(StatusCode::NO_CONTENT))
                }
                None => Err(RegistryError::UploadUnknown(id.to_owned())),
            }
        }
        (Endpoint::Referrers(name, digest), Method::GET) => {
            referrers(store, name, &Digest::parse(digest)?, &query).await
        }
        _ => Err(RegistryError::MethodNotAllowed),
    }
}

/// What an endpoint needs from a bearer token.
fn needed(endpoint: &Endpoint<'_>, method: &Method) -> Needed {
    let on = |name: &str, actions| Needed::Repository(name.to_owned(), actions);
    match endpoint {
        Endpoint::Base => Needed::Login,
        Endpoint::Catalog => Needed::Catalog,
        Endpoint::Manifest(name, _) | Endpoint::Blob(name, _) if method == Method::DELETE => {
            on(name, Actions::DELETE)
        }
        Endpoint::Manifest(name, _) if method == Method::PUT => on(name, Actions::PUSH),
        Endpoint::UploadStart(name) | Endpoint::Upload(name, _) => on(name, Actions::PUSH),
        Endpoint::Tags(name)
        | Endpoint::Manifest(name, _)
        | Endpoint::Blob(name, _)
        | Endpoint::Referrers(name, _) => on(name, Actions::PULL),
    }
}

/// The most a token request form may hold.
const TOKEN_FORM_LIMIT: usize = 64 * 1024;

/// The token endpoint: `GET <path>?service=…&scope=…` with optional basic
/// credentials, or an OAuth2 `POST` of a form with `grant_type=password`
/// (`username`, `password`) or `grant_type=refresh_token`
/// (`refresh_token`), `client_id`, `service`, space-separated `scope` and
/// `access_type=offline` for a refresh token.
async fn token_endpoint(
    token: &TokenAuth,
    request: Request,
    authorization: Option<String>,
) -> Result<Response> {
    let method = request.method().clone();
    let query = request.uri().query().unwrap_or_default().to_owned();
    let form = match method {
        Method::GET => query.into_bytes(),
        Method::POST => {
            let content_type = request
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            if !content_type.starts_with("application/x-www-form-urlencoded") {
                return Err(RegistryError::TokenRequestInvalid(format!(
                    "expected a form (application/x-www-form-urlencoded), got {content_type:?}"
                )));
            }
            axum::body::to_bytes(request.into_body(), TOKEN_FORM_LIMIT)
                .await
                .map_err(|e| RegistryError::TokenRequestInvalid(format!("form: {e}")))?
                .to_vec()
        }
        _ => return Err(RegistryError::MethodNotAllowed),
    };
    let pairs: Vec<(String, String)> = form_urlencoded::parse(&form).into_owned().collect();
    let value = |key: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    };
    let missing = |key: &str| RegistryError::TokenRequestInvalid(format!("{key} is missing"));
    let (grant, offline) = if method == Method::GET {
        (
            Grant::Basic(authorization.as_deref()),
            value("offline_token") == Some("true"),
        )
    } else {
        value("client_id").ok_or_else(|| missing("client_id"))?;
        let grant = match value("grant_type") {
            Some("password") => Grant::Password {
                username: value("username").ok_or_else(|| missing("username"))?,
                password: pairs
                    .iter()
                    .find(|(k, _)| k == "password")
                    .map(|(_, v)| v.as_str())
                    .ok_or_else(|| missing("password"))?,
            },
            Some("refresh_token") => {
                Grant::Refresh(value("refresh_token").ok_or_else(|| missing("refresh_token"))?)
            }
            Some(other) => {
                return Err(RegistryError::TokenGrantUnsupported(format!(
                    "unsupported grant_type {other:?}: expected password or refresh_token"
                )))
            }
            None => return Err(missing("grant_type")),
        };
        (grant, value("access_type") == Some("offline"))
    };
    let request = TokenRequest {
        grant,
        service: value("service"),
        scopes: pairs
            .iter()
            .filter(|(k, _)| k == "scope")
            .map(|(_, v)| v.as_str())
            .collect(),
        offline,
    };
    match token.issue(request).await {
        TokenAnswer::Issued(body) => json_response(body, None),
        TokenAnswer::BadCredentials => Err(RegistryError::Unauthorized {
            challenge: "Basic realm=\"berth-registry\"".into(),
        }),
        TokenAnswer::BadRefreshToken => Err(RegistryError::TokenGrantInvalid(
            "refresh_token is not valid (expired, revoked or for another service)".into(),
        )),
        TokenAnswer::UnknownService(service) => Err(RegistryError::ServiceUnknown(service)),
    }
}

fn empty(status: StatusCode) -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(0));
    response
}

fn header_value(value: &str) -> HeaderValue {
    HeaderValue::from_str(value).unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn json_response(value: serde_json::Value, link: Option<String>) -> Result<Response> {
    let mut response = axum::Json(value).into_response();
    if let Some(link) = link {
        response
            .headers_mut()
            .insert(header::LINK, header_value(&link));
    }
    Ok(response)
}

/// One page of `items` (sorted) after `last`, at most `n` long, and the `Link`
/// header to the next page when there is one.
fn paginate(
    items: Vec<String>,
    query: &HashMap<String, String>,
    path: &str,
) -> (Vec<String>, Option<String>) {
    let mut items: Vec<String> = match query.get("last") {
        Some(last) => items.into_iter().filter(|i| i > last).collect(),
        None => items,
    };
    let Some(n) = query.get("n").and_then(|n| n.parse::<usize>().ok()) else {
        return (items, None);
    };
    if items.len() <= n {
        return (items, None);
    }
    items.truncate(n);
    let link = items.last().map(|last| {
        let query: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("n", &n.to_string())
            .append_pair("last", last)
            .finish();
        format!("<{path}?{query}>; rel=\"next\"")
    });
    (items, link)
}

/// The bytes one read of a blob file hands to the response. Reads happen on
/// a thread of their own (no hop per read), so chunks can be small enough to
/// stay in the CPU's cache between the read and the socket write; 256 KiB
/// served loopback pulls faster than 1 MiB.
const BLOB_CHUNK: usize = 256 << 10;
/// Chunks read ahead of the socket (2 MiB).
const READ_AHEAD: usize = 8;

/// `length` bytes of `file` from `start`, read on a blocking thread a few
/// chunks ahead of what the connection has sent, so disk (or page cache)
/// reads and socket writes overlap. The thread stops when the response is
/// dropped (the client went away).
fn read_ahead(
    mut file: std::fs::File,
    start: u64,
    length: u64,
) -> impl futures_util::Stream<Item = std::io::Result<bytes::Bytes>> {
    use std::io::{Read as _, Seek as _};
    let (tx, rx) = tokio::sync::mpsc::channel(READ_AHEAD);
    tokio::task::spawn_blocking(move || {
        if let Err(e) = file.seek(std::io::SeekFrom::Start(start)) {
            let _ = tx.blocking_send(Err(e));
            return;
        }
        let mut left = length;
        while left > 0 {
            let want = left.min(BLOB_CHUNK as u64);
            // Read into spare capacity: no zeroing of a buffer about to be
            // overwritten.
            let mut buf = Vec::with_capacity(want as usize);
            let chunk = match (&mut file).take(want).read_to_end(&mut buf) {
                Ok(0) => Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "blob shorter than its size",
                )),
                Ok(n) => {
                    left -= n as u64;
                    Ok(bytes::Bytes::from(buf))
                }
                Err(e) => Err(e),
            };
            let failed = chunk.is_err();
            if tx.blocking_send(chunk).is_err() || failed {
                return;
            }
        }
    });
    stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    })
}

async fn get_blob(
    store: &Arc<Storage>,
    name: &str,
    digest: &Digest,
    request_headers: &HeaderMap,
    head: bool,
) -> Result<Response> {
    let blob = store
        .linked_blob(name, digest, !head)
        .await?
        .ok_or_else(|| RegistryError::BlobUnknown(digest.to_string()))?;
    let size = blob.size;
    let range = request_headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(|v| byte_range(v, size).ok_or(RegistryError::BlobRangeInvalid { size }))
        .transpose()?;
    let (start, length) = range.map_or((0, size), |(start, end)| (start, end - start + 1));
    let body = match blob.file {
        Some(file) if length > 0 => Body::from_stream(read_ahead(file, start, length)),
        _ => Body::empty(),
    };
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(DIGEST_HEADER, header_value(&digest.to_string()));
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    // A blob never changes: caches in between may keep it (as registry:2 says).
    headers.insert(header::ETAG, header_value(&format!("\"{digest}\"")));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=31536000"),
    );
    if let Some((start, end)) = range {
        headers.insert(
            header::CONTENT_RANGE,
            header_value(&format!("bytes {start}-{end}/{size}")),
        );
        *response.status_mut() = StatusCode::PARTIAL_CONTENT;
    }
    Ok(response)
}

/// One `Range: bytes=<start>-[<end>]` within a blob of `size` bytes, as the
/// inclusive pair it names; multiple and suffix ranges are not supported.
fn byte_range(value: &str, size: u64) -> Option<(u64, u64)> {
    let (start, end) = value.trim().strip_prefix("bytes=")?.split_once('-')?;
    let start: u64 = start.parse().ok()?;
    let end: u64 = if end.is_empty() {
        size.checked_sub(1)?
    } else {
        end.parse::<u64>().ok()?.min(size.checked_sub(1)?)
    };
    (start <= end).then_some((start, end))
}

async fn get_manifest(
    store: &Arc<Storage>,
    name: &str,
    reference: &str,
    head: bool,
) -> Result<Response> {
    let manifest = store.stored_manifest(name, reference, head).await?;
    let mut response = Response::new(match manifest.body {
        Some(body) => Body::from(body),
        None => Body::empty(),
    });
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, header_value(&manifest.media_type));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(manifest.size));
    headers.insert(DIGEST_HEADER, header_value(&manifest.digest.to_string()));
    // The manifest's digest names its bytes, as registry:2 tags them.
    headers.insert(
        header::ETAG,
        header_value(&format!("\"{}\"", manifest.digest)),
    );
    Ok(response)
}

async fn put_manifest(
    store: &Storage,
    name: &str,
    reference: &str,
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<Response> {
    let reference = Reference::parse(reference)?;
    let body = axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| RegistryError::ManifestTooLarge(limit))?;
    let digest = sha256_digest(&body);
    if let Reference::Digest(expected) = &reference {
        if expected != &digest {
            return Err(RegistryError::DigestMismatch {
                expected: expected.to_string(),
                actual: digest.to_string(),
            });
        }
    }
    let manifest: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| RegistryError::ManifestInvalid(format!("not JSON: {e}")))?;
    if manifest["schemaVersion"] != 2 {
        return Err(RegistryError::ManifestInvalid(
            "only schemaVersion 2 manifests (OCI, Docker schema 2) are supported".into(),
        ));
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or(v).trim().to_owned())
        .filter(|v| !v.is_empty());
    // The spec: a `mediaType` field wins, and a Content-Type contradicting it is an error.
    let media_type = match (manifest["mediaType"].as_str(), content_type) {
        (Some(field), Some(header)) if field != header => {
            return Err(RegistryError::ManifestInvalid(format!(
                "mediaType {field} does not match Content-Type {header}"
            )))
        }
        (Some(field), _) => field.to_owned(),
        (None, Some(header)) => header,
        (None, None) if manifest.get("manifests").is_some() => OCI_INDEX.to_owned(),
        (None, None) => OCI_MANIFEST.to_owned(),
    };
    check_references(store, name, &manifest).await?;
    let tag = match &reference {
        Reference::Tag(tag) => Some(tag.as_str()),
        Reference::Digest(_) => None,
    };
    store
        .put_manifest(name, &digest, &media_type, &body, tag)
        .await?;
    let mut response = empty(StatusCode::CREATED);
    let out = response.headers_mut();
    out.insert(
        header::LOCATION,
        header_value(&format!("/v2/{name}/manifests/{digest}")),
    );
    out.insert(DIGEST_HEADER, header_value(&digest.to_string()));
    if let Some(subject) = manifest["subject"]["digest"].as_str() {
        out.insert("oci-subject", header_value(subject));
    }
    Ok(response)
}

/// Every blob a manifest names (config, layers) must be in the repository, and
/// every manifest an index names must be too. A `subject` need not exist yet.
async fn check_references(store: &Storage, name: &str, manifest: &serde_json::Value) -> Result<()> {
    let descriptors = |key: &str| -> Vec<serde_json::Value> {
        manifest[key].as_array().cloned().unwrap_or_default()
    };
    let mut blobs: Vec<serde_json::Value> = descriptors("layers");
    if manifest.get("config").is_some() {
        blobs.push(manifest["config"].clone());
    }
    for descriptor in &blobs {
        // Foreign layers (Windows base images) live elsewhere by design.
        if descriptor.get("urls").is_some() {
            continue;
        }
        let digest = descriptor_digest(descriptor)?;
        if !store.has_layer(name, &digest).await? {
            return Err(RegistryError::ManifestBlobUnknown(digest.to_string()));
        }
    }
    for descriptor in descriptors("manifests") {
        let digest = descriptor_digest(&descriptor)?;
        if store.manifest_media_type(name, &digest).await?.is_none() || !store.touch_blob(&digest) {
            return Err(RegistryError::ManifestBlobUnknown(digest.to_string()));
        }
    }
    Ok(())
}

fn descriptor_digest(descriptor: &serde_json::Value) -> Result<Digest> {
    let text = descriptor["digest"]
        .as_str()
        .ok_or_else(|| RegistryError::ManifestInvalid("a descriptor has no digest".into()))?;
    Digest::parse(text)
}

async fn referrers(
    store: &Storage,
    name: &str,
    subject: &Digest,
    query: &HashMap<String, String>,
) -> Result<Response> {
    let filter = query.get("artifactType");
    let mut found = Vec::new();
    for digest in store.manifests(name).await? {
        let Ok((media_type, body)) = store.read_manifest(name, &digest).await else {
            continue;
        };
        let Ok(manifest) = serde_json::from_slice::<serde_json::Value>(&body) else {
            continue;
        };
        if manifest["subject"]["digest"].as_str() != Some(&subject.to_string()) {
            continue;
        }
        let artifact_type = manifest["artifactType"]
            .as_str()
            .or_else(|| manifest["config"]["mediaType"].as_str());
        if filter.is_some_and(|f| Some(f.as_str()) != artifact_type) {
            continue;
        }
        let mut descriptor = serde_json::json!({
            "mediaType": media_type,
            "digest": digest.to_string(),
            "size": body.len(),
        });
        if let Some(artifact_type) = artifact_type {
            descriptor["artifactType"] = artifact_type.into();
        }
        if let Some(annotations) = manifest.get("annotations") {
            descriptor["annotations"] = annotations.clone();
        }
        found.push(descriptor);
    }
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": found,
    });
    let mut response = axum::Json(index).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(OCI_INDEX));
    if filter.is_some() {
        headers.insert(
            "oci-filters-applied",
            HeaderValue::from_static("artifactType"),
        );
    }
    Ok(response)
}

fn upload_response(status: StatusCode, name: &str, id: &str, offset: u64) -> Response {
    let mut response = empty(status);
    let headers = response.headers_mut();
    headers.insert(
        header::LOCATION,
        header_value(&format!("/v2/{name}/blobs/uploads/{id}")),
    );
    headers.insert(UPLOAD_UUID_HEADER, header_value(id));
    // The spec's inclusive range of bytes received; `0-0` before the first.
    let end = offset.saturating_sub(1);
    headers.insert(header::RANGE, header_value(&format!("0-{end}")));
    response
}

fn blob_created(name: &str, digest: &Digest) -> Response {
    let mut response = empty(StatusCode::CREATED);
    let headers = response.headers_mut();
    headers.insert(
        header::LOCATION,
        header_value(&format!("/v2/{name}/blobs/{digest}")),
    );
    headers.insert(DIGEST_HEADER, header_value(&digest.to_string()));
    response
}

/// A new upload, or a cross-repository mount when `from` holds the blob and
/// the client may pull from it (else the mount falls back to an upload, as
/// the spec asks).
async fn start_upload(
    registry: &Registry,
    name: &str,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
    mount_from_allowed: bool,
    body: Body,
) -> Result<Response> {
    let store = &registry.storage;
    if let (Some(mount), Some(from), true) =
        (query.get("mount"), query.get("from"), mount_from_allowed)
    {
        let digest = Digest::parse(mount)?;
        if check_name(from).is_ok() && store.has_layer(from, &digest).await? {
            store.link_layer(name, &digest).await?;
            return Ok(blob_created(name, &digest));
        }
    }
    let id = random_id();
    if let Some(expected) = query.get("digest") {
        let expected = Digest::parse(expected)?;
        registry.check_declared_size(0, headers)?;
        let mut upload = Upload::create(registry.uploads.dir(), &id, name).await?;
        if let Err(e) = upload.append(body, registry.limits.blob_bytes).await {
            upload.discard().await;
            return Err(e);
        }
        upload.finish(store, &expected).await?;
        store.link_layer(name, &expected).await?;
        return Ok(blob_created(name, &expected));
    }
    let upload = Upload::create(registry.uploads.dir(), &id, name).await?;
    registry.uploads.insert(id.clone(), upload);
    Ok(upload_response(StatusCode::ACCEPTED, name, &id, 0))
}

async fn session(
    registry: &Registry,
    name: &str,
    id: &str,
) -> Result<Arc<tokio::sync::Mutex<Option<Upload>>>> {
    let session = registry
        .uploads
        .get(id)
        .ok_or_else(|| RegistryError::UploadUnknown(id.to_owned()))?;
    let same_repo = session
        .lock()
        .await
        .as_ref()
        .is_some_and(|upload| upload.repo == name);
    if same_repo {
        Ok(session)
    } else {
        Err(RegistryError::UploadUnknown(id.to_owned()))
    }
}

/// `Content-Range: <start>-<end>` (inclusive), as the spec's chunked upload sends it.
fn content_range(headers: &HeaderMap) -> Result<Option<(u64, u64, String)>> {
    let Some(value) = headers.get(header::CONTENT_RANGE) else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or_default().to_owned();
    let trimmed = text
        .trim()
        .trim_start_matches("bytes ")
        .trim_start_matches("bytes=");
    let parsed = trimmed
        .split_once('-')
        .and_then(|(start, end)| Some((start.parse().ok()?, end.parse().ok()?)));
    match parsed {
        Some((start, end)) if start <= end => Ok(Some((start, end, text))),
        _ => Err(RegistryError::RangeInvalid {
            offset: 0,
            range: text,
        }),
    }
}

async fn patch_upload(
    registry: &Registry,
    name: &str,
    id: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response> {
    let session = session(registry, name, id).await?;
    let mut guard = session.lock().await;
    let upload = guard
        .as_mut()
        .ok_or_else(|| RegistryError::UploadUnknown(id.to_owned()))?;
    let range = content_range(headers).map_err(|e| match e {
        RegistryError::RangeInvalid { range, .. } => RegistryError::RangeInvalid {
            offset: upload.offset,
            range,
        },
        other => other,
    })?;
    if let Some((start, _, text)) = &range {
        if *start != upload.offset {
            return Err(RegistryError::RangeInvalid {
                offset: upload.offset,
                range: text.clone(),
            });
        }
    }
    let checked = registry.check_declared_size(upload.offset, headers);
    let added = match checked {
        Ok(()) => upload.append(body, registry.limits.blob_bytes).await,
        Err(e) => Err(e),
    };
    let added = match added {
        Ok(added) => added,
        Err(e @ RegistryError::BlobTooLarge(_)) => {
            // Nothing more may be added, so the session is of no use.
            tracing::warn!("upload {id} to {name}: {e}");
            if let Some(upload) = guard.take() {
                upload.discard().await;
            }
            registry.uploads.remove(id);
            return Err(e);
        }
        Err(e) => {
            tracing::warn!("upload {id}: {e}");
            return Err(e);
        }
    };
    if let Some((start, end, text)) = range {
        if added != end - start + 1 {
            // The session's content no longer matches what the client thinks
            // it sent; it cannot be continued.
            if let Some(upload) = guard.take() {
                upload.discard().await;
            }
            registry.uploads.remove(id);
            return Err(RegistryError::RangeInvalid {
                offset: start + added,
                range: text,
            });
        }
    }
    Ok(upload_response(
        StatusCode::ACCEPTED,
        name,
        id,
        upload.offset,
    ))
}

async fn finish_upload(
    registry: &Registry,
    name: &str,
    id: &str,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response> {
    let expected = Digest::parse(query.get("digest").map(String::as_str).unwrap_or_default())?;
    let session = session(registry, name, id).await?;
    let mut guard = session.lock().await;
    let mut upload = guard
        .take()
        .ok_or_else(|| RegistryError::UploadUnknown(id.to_owned()))?;
    registry.uploads.remove(id);
    let appended = match registry.check_declared_size(upload.offset, headers) {
        Ok(()) => upload.append(body, registry.limits.blob_bytes).await,
        Err(e) => Err(e),
    };
    if let Err(e) = appended {
        upload.discard().await;
        return Err(e);
    }
    upload.finish(&registry.storage, &expected).await?;
    registry.storage.link_layer(name, &expected).await?;
    Ok(blob_created(name, &expected))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_endpoints() {
        assert!(matches!(endpoint("/v2/"), Some(Endpoint::Base)));
        assert!(matches!(endpoint("/v2/_catalog"), Some(Endpoint::Catalog)));
        assert!(matches!(
            endpoint("/v2/a/b/tags/list"),
            Some(Endpoint::Tags("a/b"))
        ));
        assert!(matches!(
            endpoint("/v2/a/b/manifests/latest"),
            Some(Endpoint::Manifest("a/b", "latest"))
        ));
        assert!(matches!(
            endpoint("/v2/a/blobs/uploads/"),
            Some(Endpoint::UploadStart("a"))
        ));
        assert!(matches!(
            endpoint("/v2/a/b/blobs/uploads/123"),
            Some(Endpoint::Upload("a/b", "123"))
        ));
        assert!(matches!(
            endpoint("/v2/a/blobs/sha256:00"),
            Some(Endpoint::Blob("a", "sha256:00"))
        ));
        assert!(matches!(
            endpoint("/v2/a/referrers/sha256:00"),
            Some(Endpoint::Referrers("a", "sha256:00"))
        ));
        assert!(endpoint("/v3/a").is_none());
    }

    #[test]
    fn byte_ranges_stay_within_the_blob() {
        assert_eq!(byte_range("bytes=0-4", 10), Some((0, 4)));
        assert_eq!(byte_range("bytes=5-", 10), Some((5, 9)));
        assert_eq!(byte_range("bytes=5-100", 10), Some((5, 9)));
        assert_eq!(byte_range("bytes=10-", 10), None);
        assert_eq!(byte_range("bytes=-5", 10), None);
        assert_eq!(byte_range("bytes=0-1,3-4", 10), None);
        assert_eq!(byte_range("bytes=0-0", 0), None);
    }

    #[test]
    fn pages_carry_a_link_to_the_next() {
        let items: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let query = HashMap::from([("n".to_owned(), "1".to_owned())]);
        let (page, link) = paginate(items.clone(), &query, "/v2/x/tags/list");
        assert_eq!(page, ["a"]);
        assert_eq!(
            link.as_deref(),
            Some("</v2/x/tags/list?n=1&last=a>; rel=\"next\"")
        );
        let query = HashMap::from([
            ("n".to_owned(), "5".to_owned()),
            ("last".to_owned(), "a".to_owned()),
        ]);
        assert_eq!(
            paginate(items, &query, "/p"),
            (vec!["b".into(), "c".into()], None)
        );
    }
}
