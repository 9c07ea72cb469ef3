//! Layer blobs arrive gzip- or zstd-compressed or plain; the compression is
//! told by the first bytes, not by the media type, since registries and
//! archives get media types wrong.

use std::io::{self, BufRead, BufReader, Read};

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// The compression of a layer blob, as told by its magic bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// Tells the compression of a stream from its first bytes without consuming them.
pub fn detect_compression<R: BufRead>(reader: &mut R) -> io::Result<Compression> {
    let head = reader.fill_buf()?;
    Ok(if head.starts_with(&GZIP_MAGIC) {
        Compression::Gzip
    } else if head.starts_with(&ZSTD_MAGIC) {
        Compression::Zstd
    } else {
        Compression::None
    })
}

/// Wraps `reader` in the decompressor its magic bytes call for (gzip, zstd
/// or none), so the result reads the uncompressed tar stream. `reader` is
/// read 256 KiB at a time, so it needs no buffer of its own.
pub fn decompress<'a, R: Read + 'a>(reader: R) -> io::Result<Box<dyn Read + 'a>> {
    let mut reader = BufReader::with_capacity(256 * 1024, reader);
    Ok(match detect_compression(&mut reader)? {
        // MultiGzDecoder: some tools write a layer as several gzip members.
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(reader)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(reader)?),
        Compression::None => Box::new(reader),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn roundtrip(compressed: Vec<u8>, plain: &[u8]) {
        let mut out = Vec::new();
        decompress(&compressed[..])
            .and_then(|mut r| r.read_to_end(&mut out))
            .expect("decompress");
        assert_eq!(out, plain);
    }

    #[test]
    fn plain_gzip_and_zstd_are_told_apart() {
        let plain = b"hello layer".repeat(1000);
        roundtrip(plain.clone(), &plain);

        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&plain).expect("gzip");
        roundtrip(gz.finish().expect("gzip"), &plain);

        let zst = zstd::encode_all(&plain[..], 1).expect("zstd");
        roundtrip(zst, &plain);
    }

    #[test]
    fn short_and_empty_streams_are_plain() {
        roundtrip(Vec::new(), b"");
        roundtrip(vec![0x1f], &[0x1f]);
    }
}
