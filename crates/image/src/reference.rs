//! Image references in Docker's grammar and normalization:
//! `busybox` is `docker.io/library/busybox`, shown back in the familiar (short) form
//! the docker CLI prints, with Docker's error messages for bad input.

use std::fmt;

use crate::digest::Digest;
use crate::error::{ImageError, Result};

pub const DEFAULT_DOMAIN: &str = "docker.io";
pub const DEFAULT_TAG: &str = "latest";
const LEGACY_DEFAULT_DOMAIN: &str = "index.docker.io";
const OFFICIAL_REPO_PREFIX: &str = "library/";
const NAME_MAX: usize = 255;
const TAG_MAX: usize = 128;

/// A fully normalized reference: always has a domain; tag and digest are optional.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    domain: String,
    path: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl Reference {
    /// Parses a reference as the docker CLI takes it (`busybox`, `a/b:tag`,
    /// `localhost:5000/a@sha256:…`) and normalizes it, without adding a tag.
    pub fn parse_normalized(input: &str) -> Result<Reference> {
        if input.len() == 64
            && input
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Err(ImageError::ReferenceIsHexId {
                input: input.to_string(),
            });
        }
        let (mut domain, mut remainder) = split_docker_domain(input);
        if domain == LEGACY_DEFAULT_DOMAIN {
            domain = DEFAULT_DOMAIN;
        }
        let prefixed;
        if domain == DEFAULT_DOMAIN && !remainder.contains('/') {
            prefixed = format!("{OFFICIAL_REPO_PREFIX}{remainder}");
            remainder = &prefixed;
        }
        let remote_name = remainder.split(':').next().unwrap_or(remainder);
        if remote_name.to_lowercase() != remote_name {
            return Err(ImageError::ReferenceNotLowercase {
                input: input.to_string(),
            });
        }
        match parse_parts(domain, remainder, input)? {
            Some(reference) => Ok(reference),
            None if parse_parts(domain, &remainder.to_lowercase(), input)?.is_some() => {
                Err(ImageError::ReferenceNotLowercase {
                    input: input.to_string(),
                })
            }
            None => Err(ImageError::InvalidReferenceFormat {
                input: input.to_string(),
            }),
        }
    }

    /// Like [`Reference::parse_normalized`], then adds the `latest` tag when the
    /// reference has neither tag nor digest (what `docker pull`/`tag`/`save` do).
    pub fn parse_normalized_tagged(input: &str) -> Result<Reference> {
        Ok(Reference::parse_normalized(input)?.with_default_tag())
    }

    /// Adds `latest` when there is neither tag nor digest.
    pub fn with_default_tag(mut self) -> Reference {
        if self.tag.is_none() && self.digest.is_none() {
            self.tag = Some(DEFAULT_TAG.to_string());
        }
        self
    }

    /// The same repository with another tag (and no digest).
    pub fn with_tag(&self, tag: &str) -> Result<Reference> {
        if !is_tag(tag) {
            return Err(ImageError::InvalidReferenceFormat {
                input: tag.to_string(),
            });
        }
        Ok(Reference {
            domain: self.domain.clone(),
            path: self.path.clone(),
            tag: Some(tag.to_string()),
            digest: None,
        })
    }

    /// The same repository with a digest instead of a tag (`name@sha256:…`).
    pub fn with_digest(&self, digest: Digest) -> Reference {
        Reference {
            domain: self.domain.clone(),
            path: self.path.clone(),
            tag: None,
            digest: Some(digest),
        }
    }

    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The repository path inside the domain (`library/busybox`).
    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// The full repository name: `docker.io/library/busybox`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// The repository name as docker shows it: `busybox`, `user/app`, `localhost:5000/a/b`.
    pub fn familiar_name(&self) -> String {
        if self.domain != DEFAULT_DOMAIN {
            return self.name();
        }
        match self.path.strip_prefix(OFFICIAL_REPO_PREFIX) {
            Some(rest) if !rest.contains('/') => rest.to_string(),
            _ => self.path.clone(),
        }
    }

    /// The whole reference as docker shows it: `busybox:latest`, `a/b@sha256:…`.
    pub fn familiar(&self) -> String {
        let mut s = self.familiar_name();
        self.push_tag_and_digest(&mut s);
        s
    }

    fn push_tag_and_digest(&self, s: &mut String) {
        if let Some(tag) = &self.tag {
            s.push(':');
            s.push_str(tag);
        }
        if let Some(digest) = &self.digest {
            s.push('@');
            s.push_str(digest.as_ref());
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = self.name();
        self.push_tag_and_digest(&mut s);
        f.write_str(&s)
    }
}

impl std::str::FromStr for Reference {
    type Err = ImageError;
    fn from_str(s: &str) -> Result<Reference> {
        Reference::parse_normalized(s)
    }
}

/// Docker's rule: the first component is a domain only when it looks like one
/// (has a `.` or `:`, is `localhost`, or has upper-case letters).
fn split_docker_domain(name: &str) -> (&str, &str) {
    match name.find('/') {
        Some(i) => {
            let first = &name[..i];
            if first.contains(['.', ':']) || first == "localhost" || first.to_lowercase() != first {
                (first, &name[i + 1..])
            } else {
                (DEFAULT_DOMAIN, name)
            }
        }
        None => (DEFAULT_DOMAIN, name),
    }
}

/// `Ok(None)` when the text does not match the grammar; `Err` for a grammatical
/// reference with an unusable digest or an over-long name.
fn parse_parts(domain: &str, remainder: &str, input: &str) -> Result<Option<Reference>> {
    if !is_domain(domain) {
        return Ok(None);
    }
    let (before_digest, digest) = match remainder.split_once('@') {
        Some((a, d)) => (a, Some(d)),
        None => (remainder, None),
    };
    let (path, tag) = match before_digest.rsplit_once(':') {
        Some((p, t)) => (p, Some(t)),
        None => (before_digest, None),
    };
    if !path.split('/').all(is_path_component) {
        return Ok(None);
    }
    if let Some(t) = tag {
        if !is_tag(t) {
            return Ok(None);
        }
    }
    let digest = match digest {
        Some(d) if !is_digest_grammar(d) => return Ok(None),
        Some(d) => Some(crate::digest::parse(d)?),
        None => None,
    };
    if domain.len() + 1 + path.len() > NAME_MAX {
        return Err(ImageError::ReferenceNameTooLong {
            input: input.to_string(),
        });
    }
    Ok(Some(Reference {
        domain: domain.to_string(),
        path: path.to_string(),
        tag: tag.map(str::to_string),
        digest,
    }))
}

fn is_domain(s: &str) -> bool {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let Some((ipv6, after)) = rest.split_once(']') else {
            return false;
        };
        if ipv6.is_empty()
            || !ipv6
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return false;
        }
        match after {
            "" => return true,
            a => match a.strip_prefix(':') {
                Some(port) => return is_port(port),
                None => return false,
            },
        }
    } else {
        match s.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    if let Some(p) = port {
        if !is_port(p) {
            return false;
        }
    }
    !host.is_empty() && host.split('.').all(is_domain_component)
}

fn is_port(p: &str) -> bool {
    !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())
}

fn is_domain_component(c: &str) -> bool {
    let b = c.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|&x| x.is_ascii_alphanumeric() || x == b'-')
}

/// `[a-z0-9]+` runs joined by `.`, `_`, `__` or one or more `-`.
fn is_path_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

fn is_tag(t: &str) -> bool {
    let b = t.as_bytes();
    let word = |x: u8| x.is_ascii_alphanumeric() || x == b'_';
    !b.is_empty()
        && b.len() <= TAG_MAX
        && word(b[0])
        && b.iter().all(|&x| word(x) || x == b'.' || x == b'-')
}

/// `algorithm:hex` with algorithm components `[A-Za-z][A-Za-z0-9]*` joined by `+._-`
/// and at least 32 hex characters.
fn is_digest_grammar(d: &str) -> bool {
    let Some((alg, hex)) = d.split_once(':') else {
        return false;
    };
    let alg_ok = alg.split(['+', '.', '_', '-']).all(|c| {
        let b = c.as_bytes();
        !b.is_empty() && b[0].is_ascii_alphabetic() && b.iter().all(|x| x.is_ascii_alphanumeric())
    });
    alg_ok && hex.len() >= 32 && hex.bytes().all(|x| x.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn full(s: &str) -> String {
        Reference::parse_normalized_tagged(s)
            .unwrap_or_else(|e| panic!("{s}: {e}"))
            .to_string()
    }

    #[test]
    fn normalizes_like_docker() {
        let cases = [
            ("busybox", "docker.io/library/busybox:latest"),
            ("busybox:1.36", "docker.io/library/busybox:1.36"),
            ("library/busybox", "docker.io/library/busybox:latest"),
            ("docker.io/busybox", "docker.io/library/busybox:latest"),
            (
                "index.docker.io/busybox",
                "docker.io/library/busybox:latest",
            ),
            ("user/app", "docker.io/user/app:latest"),
            ("user/app/sub:v1", "docker.io/user/app/sub:v1"),
            ("localhost/app", "localhost/app:latest"),
            ("localhost:5000/a/b:tag", "localhost:5000/a/b:tag"),
            ("quay.io/org/img:v1.2_3-x", "quay.io/org/img:v1.2_3-x"),
            ("[::1]:5000/img", "[::1]:5000/img:latest"),
            (
                "a.b-c__d_e.f--g",
                "docker.io/library/a.b-c__d_e.f--g:latest",
            ),
            ("127.0.0.1:5000/x", "127.0.0.1:5000/x:latest"),
            ("Example.com/x", "Example.com/x:latest"),
        ];
        for (input, want) in cases {
            assert_eq!(full(input), want, "{input}");
        }
    }

    #[test]
    fn digests_and_tags_together() {
        let r = Reference::parse_normalized_tagged(&format!("busybox@{D}")).expect("valid");
        assert_eq!(r.tag(), None);
        assert_eq!(r.digest().map(|d| d.to_string()), Some(D.to_string()));
        assert_eq!(r.to_string(), format!("docker.io/library/busybox@{D}"));
        assert_eq!(r.familiar(), format!("busybox@{D}"));

        let r = Reference::parse_normalized(&format!("localhost:5000/a:v1@{D}")).expect("valid");
        assert_eq!(r.domain(), "localhost:5000");
        assert_eq!(r.path(), "a");
        assert_eq!(r.tag(), Some("v1"));
        assert_eq!(r.familiar(), format!("localhost:5000/a:v1@{D}"));
    }

    #[test]
    fn familiar_form_as_docker_shows_it() {
        let cases = [
            ("busybox", "busybox:latest", "busybox"),
            ("docker.io/library/busybox:1", "busybox:1", "busybox"),
            ("user/app", "user/app:latest", "user/app"),
            ("library/a/b", "library/a/b:latest", "library/a/b"),
            (
                "localhost:5000/a/b:tag",
                "localhost:5000/a/b:tag",
                "localhost:5000/a/b",
            ),
            (
                "quay.io/library/x",
                "quay.io/library/x:latest",
                "quay.io/library/x",
            ),
        ];
        for (input, familiar, name) in cases {
            let r = Reference::parse_normalized_tagged(input).expect("valid");
            assert_eq!(r.familiar(), familiar, "{input}");
            assert_eq!(r.familiar_name(), name, "{input}");
        }
    }

    #[test]
    fn no_default_tag_unless_asked() {
        let r = Reference::parse_normalized("busybox").expect("valid");
        assert_eq!(r.tag(), None);
        assert_eq!(r.to_string(), "docker.io/library/busybox");
        assert_eq!(r.with_tag("x").expect("tag").familiar(), "busybox:x");
    }

    #[test]
    fn rejects_bad_references_with_dockers_messages() {
        let invalid = [
            "",
            ":",
            "busybox:",
            "-busybox",
            "busybox-",
            "bus..box",
            "a//b",
            "/a",
            "a/",
            "busy box",
            "busybox:ta g",
            "busybox:-tag",
            "busybox@sha256:abc",
            "localhost:port/x",
            "exa_mple.com:5000/x",
            "-example.com/x",
            "a@b@c",
            "busybox:tag:tag",
            "[::1/x",
        ];
        for input in invalid {
            match Reference::parse_normalized(input) {
                Err(e @ ImageError::InvalidReferenceFormat { .. }) => {
                    assert_eq!(e.to_string(), "invalid reference format", "{input}")
                }
                other => panic!("{input:?}: {other:?}"),
            }
        }
        for input in [
            "Busybox",
            "user/App",
            "localhost:5000/Ab:tag",
            "busyBox:latest",
        ] {
            match Reference::parse_normalized(input) {
                Err(e @ ImageError::ReferenceNotLowercase { .. }) => assert_eq!(
                    e.to_string(),
                    "invalid reference format: repository name must be lowercase"
                ),
                other => panic!("{input:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn tag_length_limit_is_128() {
        let ok = format!("busybox:{}", "a".repeat(128));
        assert!(Reference::parse_normalized(&ok).is_ok());
        let long = format!("busybox:{}", "a".repeat(129));
        assert!(matches!(
            Reference::parse_normalized(&long),
            Err(ImageError::InvalidReferenceFormat { .. })
        ));
        assert!(Reference::parse_normalized("busybox")
            .expect("valid")
            .with_tag(&"t".repeat(129))
            .is_err());
    }

    #[test]
    fn name_length_limit_is_255() {
        let long = format!("a/{}", "b".repeat(260));
        assert!(matches!(
            Reference::parse_normalized(&long),
            Err(ImageError::ReferenceNameTooLong { .. })
        ));
    }

    #[test]
    fn hex_ids_are_not_repository_names() {
        let id = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert!(matches!(
            Reference::parse_normalized(id),
            Err(ImageError::ReferenceIsHexId { .. })
        ));
        // A 64-hex tag is fine, and so is a shorter hex name.
        assert!(Reference::parse_normalized(&format!("busybox:{id}")).is_ok());
        assert!(Reference::parse_normalized("e3b0c442").is_ok());
    }

    #[test]
    fn unsupported_digest_algorithm() {
        let r = Reference::parse_normalized(
            "busybox@md5:d41d8cd98f00b204e9800998ecf8427ed41d8cd98f00b204e9800998ecf8427e",
        );
        assert!(matches!(r, Err(ImageError::InvalidDigest { .. })), "{r:?}");
    }
}
