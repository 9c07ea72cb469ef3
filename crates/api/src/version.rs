//! API version negotiation: `/v1.xx/...` paths are checked against the
//! supported range (with dockerd's messages) and rewritten to unversioned
//! paths before routing; the version travels in a request extension.

use axum::extract::Request;
use axum::http::Uri;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

pub const MIN_API_VERSION: &str = "1.24";
pub const MAX_API_VERSION: &str = "1.50";

/// The API version a request asked for (the newest when unversioned).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ApiVersion(pub u32, pub u32);

impl ApiVersion {
    pub fn parse(s: &str) -> Option<ApiVersion> {
        let (major, minor) = s.split_once('.')?;
        Some(ApiVersion(major.parse().ok()?, minor.parse().ok()?))
    }
}

impl std::fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.0, self.1)
    }
}

/// Splits `/v1.41/images/json` into (`1.41`, `/images/json`).
fn split_version(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix("/v")?;
    let end = rest.find('/').unwrap_or(rest.len());
    let (version, tail) = rest.split_at(end);
    if version.is_empty() || !version.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return None;
    }
    Some((version, if tail.is_empty() { "/" } else { tail }))
}

pub async fn strip_version(mut req: Request, next: Next) -> Response {
    let max = ApiVersion::parse(MAX_API_VERSION).unwrap_or(ApiVersion(1, 50));
    let min = ApiVersion::parse(MIN_API_VERSION).unwrap_or(ApiVersion(1, 24));
    let path = req.uri().path().to_string();
    let mut version = max;
    if let Some((v, tail)) = split_version(&path) {
        let Some(parsed) = ApiVersion::parse(v) else {
            return ApiError::bad_request(format!("invalid API version {v:?}")).into_response();
        };
        if parsed > max {
            return ApiError::bad_request(format!(
                "client version {v} is too new. Maximum supported API version is {MAX_API_VERSION}"
            ))
            .into_response();
        }
        if parsed < min {
            return ApiError::bad_request(format!(
                "client version {v} is too old. Minimum supported API version is {MIN_API_VERSION}, please upgrade your client to a newer version"
            ))
            .into_response();
        }
        version = parsed;
        let new_uri = match req.uri().query() {
            Some(q) => format!("{tail}?{q}"),
            None => tail.to_string(),
        };
        match new_uri.parse::<Uri>() {
            Ok(uri) => *req.uri_mut() = uri,
            Err(_) => return ApiError::bad_request("invalid request path").into_response(),
        }
    }
    req.extensions_mut().insert(version);
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versioned_paths_split() {
        assert_eq!(
            split_version("/v1.41/images/json"),
            Some(("1.41", "/images/json"))
        );
        assert_eq!(split_version("/v1.50/_ping"), Some(("1.50", "/_ping")));
        assert_eq!(split_version("/version"), None);
        assert_eq!(split_version("/volumes"), None);
    }

    #[test]
    fn versions_order_numerically() {
        let v = |s| ApiVersion::parse(s).expect("version");
        assert!(v("1.9") < v("1.24"));
        assert!(v("1.50") > v("1.41"));
        assert_eq!(v("1.41").to_string(), "1.41");
    }
}
