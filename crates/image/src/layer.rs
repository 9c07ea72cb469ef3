//! Layer blobs: compression told by magic bytes, and a reader that yields the
//! uncompressed tar stream and checks its diff_id when the stream ends.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;

use crate::digest::{Digest, HashingReader};
use crate::error::{ImageError, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// Detects the compression of a blob from its first bytes. bzip2 and xz are
    /// recognised only to be refused with a clear error.
    pub fn detect(head: &[u8], name: &str) -> Result<Compression> {
        if head.starts_with(&[0x1f, 0x8b]) {
            Ok(Compression::Gzip)
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Ok(Compression::Zstd)
        } else if head.starts_with(b"BZh") {
            Err(ImageError::UnsupportedCompression {
                name: name.to_string(),
                compression: "bzip2",
            })
        } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
            Err(ImageError::UnsupportedCompression {
                name: name.to_string(),
                compression: "xz",
            })
        } else {
            Ok(Compression::None)
        }
    }

    /// The OCI layer media type for a blob compressed this way.
    pub fn oci_media_type(self) -> &'static str {
        use crate::manifest::media_type::*;
        match self {
            Compression::None => OCI_LAYER_TAR,
            Compression::Gzip => OCI_LAYER_GZIP,
            Compression::Zstd => OCI_LAYER_ZSTD,
        }
    }
}

/// Wraps a possibly compressed blob so that reads yield the uncompressed stream.
pub fn decompress<'a, R: Read + 'a>(
    reader: R,
    name: &str,
) -> Result<(Compression, Box<dyn Read + 'a>)> {
    let mut buffered = BufReader::new(reader);
    let head = buffered.fill_buf().map_err(ImageError::Read)?.to_vec();
    let compression = Compression::detect(&head, name)?;
    let out: Box<dyn Read + 'a> = match compression {
        Compression::None => Box::new(buffered),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(buffered)),
        Compression::Zstd => {
            Box::new(zstd::stream::read::Decoder::with_buffer(buffered).map_err(ImageError::Read)?)
        }
    };
    Ok((compression, out))
}

/// The uncompressed tar stream of a layer. At end of stream the sha256 of what was
/// read is compared with the expected diff_id; a mismatch is an `InvalidData` error
/// wrapping [`ImageError::DiffIdMismatch`].
pub struct LayerReader<'a> {
    inner: HashingReader<Box<dyn Read + 'a>>,
    expected: Option<Digest>,
    image: String,
    index: usize,
    compression: Compression,
    checked: bool,
}

impl<'a> LayerReader<'a> {
    /// Opens layer `index` of `image` (both only for messages) from a blob reader.
    pub fn new<R: Read + 'a>(
        blob: R,
        expected: Option<Digest>,
        image: &str,
        index: usize,
    ) -> Result<LayerReader<'a>> {
        let (compression, inner) = decompress(blob, image)?;
        Ok(LayerReader {
            inner: HashingReader::new(inner),
            expected,
            image: image.to_string(),
            index,
            compression,
            checked: false,
        })
    }

    pub fn open(
        path: &Path,
        expected: Option<Digest>,
        image: &str,
        index: usize,
    ) -> Result<LayerReader<'static>> {
        let file = File::open(path).map_err(|e| ImageError::io("opening layer", path, e))?;
        LayerReader::new(file, expected, image, index)
    }

    pub fn compression(&self) -> Compression {
        self.compression
    }

    /// Reads to the end (verifying), returning the diff_id and uncompressed size.
    pub fn drain(mut self) -> Result<(Digest, u64)> {
        io::copy(&mut self, &mut io::sink()).map_err(into_image_error)?;
        let LayerReader { inner, .. } = self;
        Ok(inner.finish())
    }
}

impl Read for LayerReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() && !self.checked {
            self.checked = true;
            if let Some(expected) = &self.expected {
                let actual = self.inner.digest();
                if &actual != expected {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        ImageError::DiffIdMismatch {
                            image: self.image.clone(),
                            index: self.index,
                            expected: expected.clone(),
                            actual,
                        },
                    ));
                }
            }
        }
        Ok(n)
    }
}

/// Turns an I/O error from a [`LayerReader`] back into the crate error it carries.
pub fn into_image_error(e: io::Error) -> ImageError {
    if e.get_ref().is_some_and(|inner| inner.is::<ImageError>()) {
        if let Some(inner) = e.into_inner() {
            return match inner.downcast::<ImageError>() {
                Ok(image_error) => *image_error,
                Err(other) => ImageError::Read(io::Error::other(other)),
            };
        }
        return ImageError::Read(io::Error::other("layer read failed"));
    }
    ImageError::Read(e)
}
