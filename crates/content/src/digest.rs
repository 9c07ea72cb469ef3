//! Digests as OCI writes them: `<algorithm>:<lowercase hex>`. Only sha256 is
//! stored; sha512 is recognised so that it gets an "unsupported" error rather
//! than "invalid".

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

use crate::Error;

/// A hash algorithm named in a digest string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    Sha256,
}

impl Algorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
        }
    }

    /// Length of the hex encoding of a hash of this algorithm.
    pub fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A validated content digest, `sha256:<64 lowercase hex>`.
///
/// Ordering is the ordering of the string form, so sorted lists of digests
/// read the way `ls blobs/sha256` does.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    // Always "sha256:" followed by 64 lowercase hex characters.
    text: String,
}

const SHA256_PREFIX: &str = "sha256:";

impl Digest {
    /// Parses `sha256:<64 lowercase hex>`.
    pub fn parse(input: &str) -> Result<Digest, Error> {
        let invalid = |reason: &str| Error::InvalidDigest {
            input: input.to_string(),
            reason: reason.to_string(),
        };
        let Some((algorithm, hex)) = input.split_once(':') else {
            return Err(invalid(
                "expected <algorithm>:<hex>, e.g. sha256:<64 hex characters>",
            ));
        };
        match algorithm {
            "sha256" => {}
            "sha384" | "sha512" | "blake3" => {
                return Err(Error::UnsupportedAlgorithm {
                    input: input.to_string(),
                    algorithm: algorithm.to_string(),
                })
            }
            "" => return Err(invalid("the algorithm before ':' is empty")),
            _ => return Err(invalid("unknown algorithm, expected sha256")),
        }
        Self::from_sha256_hex(hex).map_err(|_| {
            invalid(&format!(
                "expected 64 lowercase hex characters after 'sha256:', got {} characters",
                hex.len()
            ))
        })
    }

    /// Builds a digest from the hex part alone (the name of a file under
    /// `blobs/sha256/`).
    pub fn from_sha256_hex(hex: &str) -> Result<Digest, Error> {
        if hex.len() != Algorithm::Sha256.hex_len() || !is_lower_hex(hex) {
            return Err(Error::InvalidDigest {
                input: hex.to_string(),
                reason: "expected 64 lowercase hex characters".to_string(),
            });
        }
        Ok(Digest {
            text: format!("{SHA256_PREFIX}{hex}"),
        })
    }

    /// Builds a digest from a raw 32-byte sha256 hash.
    pub fn from_sha256_bytes(hash: &[u8; 32]) -> Digest {
        Digest {
            text: format!("{SHA256_PREFIX}{}", hex::encode(hash)),
        }
    }

    /// The sha256 digest of `data`.
    pub fn sha256_of(data: &[u8]) -> Digest {
        let hash: [u8; 32] = Sha256::digest(data).into();
        Digest::from_sha256_bytes(&hash)
    }

    pub fn algorithm(&self) -> Algorithm {
        Algorithm::Sha256
    }

    /// The hex part, without `sha256:`.
    pub fn hex(&self) -> &str {
        &self.text[SHA256_PREFIX.len()..]
    }

    /// The first 12 hex characters, as `docker images` shows image IDs.
    pub fn short(&self) -> &str {
        &self.hex()[..12]
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

pub(crate) fn is_lower_hex(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.text)
    }
}

impl FromStr for Digest {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Digest::parse(s)
    }
}

impl AsRef<str> for Digest {
    fn as_ref(&self) -> &str {
        &self.text
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Digest::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn parses_and_displays_sha256() {
        let d = Digest::parse(EMPTY).unwrap();
        assert_eq!(d.to_string(), EMPTY);
        assert_eq!(d.algorithm(), Algorithm::Sha256);
        assert_eq!(d.hex(), &EMPTY[7..]);
        assert_eq!(d.short(), "e3b0c44298fc");
        assert_eq!(Digest::sha256_of(b""), d);
        assert_eq!(EMPTY.parse::<Digest>().unwrap(), d);
    }

    #[test]
    fn rejects_malformed_digests_with_reason() {
        for bad in [
            "",
            "sha256",
            ":abc",
            "md5:abcd",
            "sha256:abc",
            &EMPTY.to_uppercase().replace("SHA256", "sha256"),
            &format!("{EMPTY}0"),
            &EMPTY.replace('e', "g"),
            &format!(" {EMPTY}"),
        ] {
            let err = Digest::parse(bad).unwrap_err();
            assert!(
                matches!(err, Error::InvalidDigest { .. }),
                "{bad:?} gave {err:?}"
            );
            assert!(err.to_string().contains("invalid digest"), "{err}");
        }
    }

    #[test]
    fn sha512_is_recognised_but_unsupported() {
        let input = format!("sha512:{}", "a".repeat(128));
        let err = Digest::parse(&input).unwrap_err();
        assert!(
            matches!(err, Error::UnsupportedAlgorithm { ref algorithm, .. } if algorithm == "sha512")
        );
        assert!(err.to_string().contains("unsupported"), "{err}");
    }

    #[test]
    fn serde_uses_the_string_form() {
        let d = Digest::sha256_of(b"hello");
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(json, format!("\"{d}\""));
        assert_eq!(serde_json::from_str::<Digest>(&json).unwrap(), d);
        let err = serde_json::from_str::<Digest>("\"sha256:nothex\"").unwrap_err();
        assert!(err.to_string().contains("invalid digest"), "{err}");
    }
}
