//! Content digests (`sha256:<hex>`), parsed and validated as the OCI image spec
//! defines them, and a reader that hashes what passes through it.
//!
//! This is the seam to `berth-content`: once its `Digest` lands, this type converts
//! to and from it through the `algorithm:hex` string form.

use std::io::{self, Read, Write};

use sha2::{Digest as _, Sha256};

use crate::error::{ImageError, Result};

pub use berth_content::Digest;

/// Parses a digest, with the error this crate reports for bad input.
pub fn parse(input: &str) -> Result<Digest> {
    Digest::parse(input).map_err(|e| ImageError::InvalidDigest {
        input: input.to_string(),
        reason: match e {
            berth_content::Error::UnsupportedAlgorithm { .. } => "unsupported digest algorithm",
            _ => "invalid digest (expected sha256:<64 lowercase hex digits>)",
        },
    })
}

/// A sha256 digest from its hex form.
pub fn from_sha256_hex(hex: &str) -> Result<Digest> {
    parse(&format!("sha256:{hex}"))
}

/// Hashes (sha256) and counts the bytes read through it.
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    /// The digest and length of everything read so far.
    pub fn finish(self) -> (Digest, u64) {
        (
            Digest::from_sha256_bytes(&self.hasher.finalize().into()),
            self.count,
        )
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// The digest of everything read so far, without ending the stream.
    pub fn digest(&self) -> Digest {
        Digest::from_sha256_bytes(&self.hasher.clone().finalize().into())
    }

    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

/// Hashes (sha256) and counts the bytes written through it.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    count: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    pub fn finish(self) -> (W, Digest, u64) {
        (
            self.inner,
            Digest::from_sha256_bytes(&self.hasher.finalize().into()),
            self.count,
        )
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_displays_sha256() {
        let s = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let d = parse(s).expect("valid digest");
        assert_eq!(d.to_string(), s);
        assert_eq!(Digest::sha256_of(b""), d);
    }

    #[test]
    fn rejects_bad_digests() {
        for (input, reason) in [
            ("e3b0c442", "invalid digest"),
            ("md5:d41d8cd98f00b204e9800998ecf8427e", "invalid digest"),
            ("sha512:abc", "unsupported digest algorithm"),
            ("sha256:abc", "invalid digest"),
            (
                "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
                "invalid digest",
            ),
        ] {
            match parse(input) {
                Err(ImageError::InvalidDigest { reason: r, .. }) => {
                    assert!(r.starts_with(reason), "{input}: {r}")
                }
                other => panic!("{input}: {other:?}"),
            }
        }
    }

    #[test]
    fn hashing_reader_counts_and_hashes() {
        let mut r = HashingReader::new(&b"hello"[..]);
        let mut out = Vec::new();
        r.read_to_end(&mut out).expect("read");
        let (d, n) = r.finish();
        assert_eq!(n, 5);
        assert_eq!(d, Digest::sha256_of(b"hello"));
    }
}
