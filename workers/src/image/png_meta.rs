//! PNG metadata bombs, caught before the decoder sees the file.
//!
//! Three PNG chunk types carry zlib streams that are not pixels: `iCCP` (the ICC profile), `zTXt` and a
//! compressed `iTXt` (text). zlib reaches about 1000:1 on repeated bytes, so a 300 KiB file can hold an ICC
//! chunk that inflates to 300 MiB, and a PNG decoder inflates `iCCP` whole while it reads the header — before
//! any pixel limit can act. [`check`] walks the chunk list (headers only; `IDAT` is skipped with a seek) and
//! inflates each metadata stream into a counting sink that stops one byte past the budget, so the cost of a bomb
//! is the budget's worth of inflate work and no allocation beyond one chunk's compressed bytes.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use flate2::read::ZlibDecoder;
use mediafleet_proto::ErrorCode;

use crate::MediaError;

const SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n'];

/// Inflated bytes of every compressed metadata chunk in the PNG at `path`, checked against `budget` (in total).
/// `Ok` for files that are not PNG or whose chunk list ends early: the decoder reports those.
pub fn check(path: &Path, budget: u64) -> Result<(), MediaError> {
    let file = File::open(path).map_err(io_error)?;
    let len = file.metadata().map_err(io_error)?.len();
    check_reader(BufReader::new(file), len, budget)
}

fn check_reader<R: Read + Seek>(mut r: R, len: u64, budget: u64) -> Result<(), MediaError> {
    let mut sig = [0u8; 8];
    if r.read_exact(&mut sig).is_err() || sig != SIGNATURE {
        return Ok(());
    }
    let mut pos = 8u64;
    let mut inflated = 0u64;
    loop {
        let mut head = [0u8; 8];
        if r.read_exact(&mut head).is_err() {
            return Ok(());
        }
        let size = u64::from(u32::from_be_bytes([head[0], head[1], head[2], head[3]]));
        let kind = [head[4], head[5], head[6], head[7]];
        pos += 8;
        // A chunk claiming more than the file holds: the decoder will call it truncated.
        if size + 4 > len.saturating_sub(pos) {
            return Ok(());
        }
        match &kind {
            b"iCCP" | b"zTXt" | b"iTXt" => {
                let mut data = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
                (&mut r)
                    .take(size)
                    .read_to_end(&mut data)
                    .map_err(io_error)?;
                r.seek(SeekFrom::Current(4)).map_err(io_error)?; // CRC
                if let Some(stream) = compressed_part(&kind, &data) {
                    let left = budget.saturating_sub(inflated);
                    let n = io::copy(
                        &mut ZlibDecoder::new(stream).take(left.saturating_add(1)),
                        &mut io::sink(),
                    )
                    // A broken stream inflates no further; the decoder reports it if it matters.
                    .unwrap_or(0);
                    inflated += n;
                    if inflated > budget {
                        return Err(MediaError::new(
                            ErrorCode::TooLargeBytes,
                            format!(
                                "the PNG's compressed metadata ({} chunk) inflates past the {budget}-byte \
                                 metadata limit; nothing was decoded",
                                String::from_utf8_lossy(&kind)
                            ),
                        ));
                    }
                }
            }
            b"IEND" => return Ok(()),
            _ => {
                r.seek(SeekFrom::Current(
                    i64::try_from(size + 4).unwrap_or(i64::MAX),
                ))
                .map_err(io_error)?;
            }
        }
        pos += size + 4;
    }
}

/// The zlib stream inside a metadata chunk's data, when it has one.
fn compressed_part<'a>(kind: &[u8; 4], data: &'a [u8]) -> Option<&'a [u8]> {
    // keyword NUL …
    let nul = data.iter().position(|&b| b == 0)?;
    let rest = &data[nul + 1..];
    match kind {
        // compression method, stream
        b"iCCP" | b"zTXt" => rest.get(1..),
        // compression flag, method, language NUL, translated keyword NUL, text
        b"iTXt" => {
            if *rest.first()? != 1 {
                return None;
            }
            let rest = rest.get(2..)?;
            let lang = rest.iter().position(|&b| b == 0)?;
            let rest = &rest[lang + 1..];
            let tk = rest.iter().position(|&b| b == 0)?;
            Some(&rest[tk + 1..])
        }
        _ => None,
    }
}

fn io_error(e: io::Error) -> MediaError {
    MediaError::new(ErrorCode::Internal, format!("reading the original: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::write::ZlibEncoder;
    use flate2::{Compression, Crc};
    use std::io::{Cursor, Write};

    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend_from_slice(&u32::try_from(data.len()).unwrap().to_be_bytes());
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        let mut crc = Crc::new();
        crc.update(kind);
        crc.update(data);
        out.extend_from_slice(&crc.sum().to_be_bytes());
    }

    fn zlib_zeros(n: usize) -> Vec<u8> {
        let mut e = ZlibEncoder::new(Vec::new(), Compression::best());
        let block = vec![0u8; 1 << 20];
        let mut left = n;
        while left > 0 {
            let k = left.min(block.len());
            e.write_all(&block[..k]).unwrap();
            left -= k;
        }
        e.finish().unwrap()
    }

    fn png_with(kind: &[u8; 4], head: &[u8], inflated: usize) -> Vec<u8> {
        let mut out = SIGNATURE.to_vec();
        chunk(&mut out, b"IHDR", &[0, 0, 0, 1, 0, 0, 0, 1, 8, 2, 0, 0, 0]);
        let mut data = head.to_vec();
        data.extend(zlib_zeros(inflated));
        chunk(&mut out, kind, &data);
        chunk(&mut out, b"IDAT", &zlib_zeros(4));
        chunk(&mut out, b"IEND", &[]);
        out
    }

    fn run(png: &[u8], budget: u64) -> Result<(), MediaError> {
        check_reader(Cursor::new(png), png.len() as u64, budget)
    }

    #[test]
    fn every_compressed_metadata_chunk_is_capped() {
        for (kind, head) in [
            (b"iCCP", &b"icc\0\0"[..]),
            (b"zTXt", &b"Comment\0\0"[..]),
            (b"iTXt", &b"XML:com.adobe.xmp\0\x01\0en\0\0"[..]),
        ] {
            let bomb = png_with(kind, head, 64 << 20);
            assert!(bomb.len() < 200 << 10, "a small file: {}", bomb.len());
            let err = run(&bomb, 8 << 20).unwrap_err();
            assert_eq!(err.code, ErrorCode::TooLargeBytes, "{kind:?}");
            assert!(err.message.contains(std::str::from_utf8(kind).unwrap()));
            // Under the budget it passes.
            run(&png_with(kind, head, 1 << 20), 8 << 20).unwrap();
        }
    }

    #[test]
    fn uncompressed_itxt_truncations_and_non_png_pass() {
        run(&png_with(b"iTXt", b"k\0\0\0\0\0", 1 << 20), 1024).unwrap();
        let bomb = png_with(b"iCCP", b"icc\0\0", 1 << 20);
        for cut in [0, 7, 8, 20, 40, bomb.len() - 5] {
            let _ = run(&bomb[..cut], 1 << 10);
        }
        run(b"GIF89a", 0).unwrap();
    }
}
