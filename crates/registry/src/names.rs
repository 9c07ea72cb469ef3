//! Repository names, tags and digests as the distribution spec defines them,
//! checked before anything touches the store (names become paths).

use std::sync::LazyLock;

use regex::Regex;
use sha2::{Digest as _, Sha256};

use crate::error::{RegistryError, Result};

static NAME: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*$")
        .expect("valid name regex")
});
static TAG: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$").expect("valid tag regex"));

/// Longest repository name the spec asks registries to accept at least.
const MAX_NAME: usize = 255;

pub fn check_name(name: &str) -> Result<()> {
    if name.len() <= MAX_NAME && NAME.is_match(name) {
        Ok(())
    } else {
        Err(RegistryError::NameInvalid(name.to_owned()))
    }
}

pub fn check_tag(tag: &str) -> Result<()> {
    if TAG.is_match(tag) {
        Ok(())
    } else {
        Err(RegistryError::ReferenceInvalid(tag.to_owned()))
    }
}

/// A sha256 digest, the only algorithm this registry stores.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Digest {
    hex: String,
}

impl Digest {
    pub fn parse(text: &str) -> Result<Digest> {
        match text.strip_prefix("sha256:") {
            Some(hex)
                if hex.len() == 64
                    && hex
                        .bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) =>
            {
                Ok(Digest {
                    hex: hex.to_owned(),
                })
            }
            _ => Err(RegistryError::DigestMalformed(text.to_owned())),
        }
    }

    pub fn from_hasher(hasher: Sha256) -> Digest {
        Digest {
            hex: hex::encode(hasher.finalize()),
        }
    }

    pub fn hex(&self) -> &str {
        &self.hex
    }
}

impl std::fmt::Display for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

/// What a manifest request names: a tag or a digest.
#[derive(Clone)]
pub enum Reference {
    Tag(String),
    Digest(Digest),
}

impl Reference {
    pub fn parse(text: &str) -> Result<Reference> {
        if text.contains(':') {
            Digest::parse(text).map(Reference::Digest)
        } else {
            check_tag(text)?;
            Ok(Reference::Tag(text.to_owned()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_spec() {
        for good in ["x", "x/y", "library/busy-box", "a.b_c/d__e", "a0/b-1/c.2"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in [
            "", "X", "x/", "/x", "x//y", "x/../y", "-x", "x-", "x/.y", "a b",
        ] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn references_are_tags_or_sha256_digests() {
        assert!(matches!(Reference::parse("latest"), Ok(Reference::Tag(_))));
        assert!(matches!(
            Reference::parse(&format!("sha256:{}", "a".repeat(64))),
            Ok(Reference::Digest(_))
        ));
        for bad in [".x", "sha256:abc", "md5:00", &"t".repeat(129), "a/b"] {
            assert!(Reference::parse(bad).is_err(), "{bad}");
        }
    }
}
