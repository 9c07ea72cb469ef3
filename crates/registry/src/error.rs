//! The registry's one error type, and its mapping to the distribution spec's
//! error codes, HTTP status codes and JSON error body, in one table.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("invalid repository name {0:?}: expected lowercase path components matching [a-z0-9]+((.|_|__|-+)[a-z0-9]+)* separated by /")]
    NameInvalid(String),
    #[error("repository name {0:?} not known to registry")]
    NameUnknown(String),
    #[error("invalid tag or digest {0:?}: expected a tag matching [a-zA-Z0-9_][a-zA-Z0-9._-]{{0,127}} or sha256:<64 hex digits>")]
    ReferenceInvalid(String),
    #[error("invalid digest {0:?}: expected sha256:<64 lowercase hex digits>")]
    DigestMalformed(String),
    #[error("provided digest {expected} did not match uploaded content ({actual})")]
    DigestMismatch { expected: String, actual: String },
    #[error("blob {0} unknown to registry")]
    BlobUnknown(String),
    #[error("blob upload {0} unknown to registry")]
    UploadUnknown(String),
    #[error("blob upload invalid: {0}")]
    UploadInvalid(String),
    #[error(
        "requested range not satisfiable: upload is at offset {offset}, Content-Range {range:?}"
    )]
    RangeInvalid { offset: u64, range: String },
    #[error("requested range not satisfiable: the blob has {size} bytes; one range bytes=<start>-[<end>] is supported")]
    BlobRangeInvalid { size: u64 },
    #[error("manifest {0} unknown to registry")]
    ManifestUnknown(String),
    #[error("manifest invalid: {0}")]
    ManifestInvalid(String),
    #[error("manifest references {0}, which is not in this repository")]
    ManifestBlobUnknown(String),
    #[error("manifest is larger than the limit of {0} bytes")]
    ManifestTooLarge(usize),
    #[error("blob upload is larger than the limit of {0} bytes; the upload was discarded")]
    BlobTooLarge(u64),
    /// `challenge` is the `WWW-Authenticate` value sent with the 401.
    #[error("authentication required")]
    Unauthorized { challenge: String },
    /// A valid token without the scope needed; `challenge` names the scope.
    #[error("requested access to the resource is denied")]
    Denied { challenge: String },
    #[error("no tokens are issued for service {0:?}")]
    ServiceUnknown(String),
    #[error("token request: {0}")]
    TokenRequestInvalid(String),
    #[error("token request: {0}")]
    TokenGrantInvalid(String),
    #[error("token request: {0}")]
    TokenGrantUnsupported(String),
    #[error("no such endpoint")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("storage: {0}")]
    Io(#[from] std::io::Error),
}

impl RegistryError {
    /// The spec's error code and the status it is sent with.
    fn code_and_status(&self) -> (&'static str, StatusCode) {
        use RegistryError::*;
        match self {
            NameInvalid(_) => ("NAME_INVALID", StatusCode::BAD_REQUEST),
            NameUnknown(_) => ("NAME_UNKNOWN", StatusCode::NOT_FOUND),
            ReferenceInvalid(_) => ("TAG_INVALID", StatusCode::BAD_REQUEST),
            DigestMalformed(_) | DigestMismatch { .. } => {
                ("DIGEST_INVALID", StatusCode::BAD_REQUEST)
            }
            BlobUnknown(_) => ("BLOB_UNKNOWN", StatusCode::NOT_FOUND),
            UploadUnknown(_) => ("BLOB_UPLOAD_UNKNOWN", StatusCode::NOT_FOUND),
            UploadInvalid(_) => ("BLOB_UPLOAD_INVALID", StatusCode::BAD_REQUEST),
            RangeInvalid { .. } => ("BLOB_UPLOAD_INVALID", StatusCode::RANGE_NOT_SATISFIABLE),
            BlobRangeInvalid { .. } => ("UNSUPPORTED", StatusCode::RANGE_NOT_SATISFIABLE),
            ManifestUnknown(_) => ("MANIFEST_UNKNOWN", StatusCode::NOT_FOUND),
            ManifestInvalid(_) => ("MANIFEST_INVALID", StatusCode::BAD_REQUEST),
            ManifestBlobUnknown(_) => ("MANIFEST_BLOB_UNKNOWN", StatusCode::BAD_REQUEST),
            ManifestTooLarge(_) => ("MANIFEST_INVALID", StatusCode::PAYLOAD_TOO_LARGE),
            BlobTooLarge(_) => ("SIZE_INVALID", StatusCode::PAYLOAD_TOO_LARGE),
            Unauthorized { .. } => ("UNAUTHORIZED", StatusCode::UNAUTHORIZED),
            Denied { .. } => ("DENIED", StatusCode::FORBIDDEN),
            ServiceUnknown(_)
            | TokenRequestInvalid(_)
            | TokenGrantInvalid(_)
            | TokenGrantUnsupported(_) => ("UNSUPPORTED", StatusCode::BAD_REQUEST),
            NotFound => ("UNSUPPORTED", StatusCode::NOT_FOUND),
            MethodNotAllowed => ("UNSUPPORTED", StatusCode::METHOD_NOT_ALLOWED),
            Io(_) => ("UNKNOWN", StatusCode::INTERNAL_SERVER_ERROR),
        }
    }
}

impl IntoResponse for RegistryError {
    fn into_response(self) -> Response {
        let (code, status) = self.code_and_status();
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!("{self}");
        }
        let detail = match &self {
            RegistryError::BlobUnknown(d)
            | RegistryError::ManifestBlobUnknown(d)
            | RegistryError::ManifestUnknown(d) => serde_json::json!({ "digest": d }),
            RegistryError::NameUnknown(n) | RegistryError::NameInvalid(n) => {
                serde_json::json!({ "name": n })
            }
            _ => serde_json::Value::Null,
        };
        let mut body = serde_json::json!({
            "errors": [{ "code": code, "message": self.to_string(), "detail": detail }]
        });
        // The token endpoint also answers as an OAuth 2 server does
        // (RFC 6749, 5.2), for clients that read that form.
        let oauth = match &self {
            RegistryError::TokenRequestInvalid(_) | RegistryError::ServiceUnknown(_) => {
                Some("invalid_request")
            }
            RegistryError::TokenGrantInvalid(_) => Some("invalid_grant"),
            RegistryError::TokenGrantUnsupported(_) => Some("unsupported_grant_type"),
            _ => None,
        };
        if let Some(error) = oauth {
            body["error"] = error.into();
            body["error_description"] = self.to_string().into();
        }
        let mut response = (status, axum::Json(body)).into_response();
        if let RegistryError::Unauthorized { challenge } | RegistryError::Denied { challenge } =
            &self
        {
            if let Ok(value) = HeaderValue::from_str(challenge) {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, value);
            }
        }
        response
    }
}

pub type Result<T, E = RegistryError> = std::result::Result<T, E>;
