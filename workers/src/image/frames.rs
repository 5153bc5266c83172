//! Frame counts from container structure, without decoding pixels.
//!
//! GIF: walk the blocks and count image descriptors (LZW data is skipped, not inflated). APNG: the `acTL` chunk
//! declares the count. WebP: count `ANMF` chunks when the `VP8X` header says "animated". Everything else is one
//! frame. A truncated file simply yields the frames seen so far; the decoder reports the damage.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;

use image::ImageFormat;

/// Frames in the file at `path`: ≥ 1 for animations, 1 for stills and formats without animation.
pub fn count(path: &Path, format: ImageFormat) -> io::Result<u64> {
    let mut r = BufReader::new(File::open(path)?);
    let n = match format {
        ImageFormat::Gif => gif(&mut r),
        ImageFormat::Png => apng(&mut r),
        ImageFormat::WebP => webp(&mut r),
        _ => Ok(1),
    };
    match n {
        Ok(n) => Ok(n.max(1)),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(1),
        Err(e) => Err(e),
    }
}

fn read_array<const N: usize>(r: &mut impl Read) -> io::Result<[u8; N]> {
    let mut b = [0; N];
    r.read_exact(&mut b)?;
    Ok(b)
}

fn skip(r: &mut BufReader<File>, n: i64) -> io::Result<()> {
    r.seek_relative(n)
}

fn gif(r: &mut BufReader<File>) -> io::Result<u64> {
    let header: [u8; 13] = read_array(r)?;
    if header[10] & 0x80 != 0 {
        skip(r, 3 << ((header[10] & 7) + 1))?;
    }
    let mut frames = 0;
    loop {
        let Ok([block]) = read_array::<1>(r) else {
            return Ok(frames);
        };
        match block {
            0x21 => {
                read_array::<1>(r)?;
                skip_sub_blocks(r)?;
            }
            0x2C => {
                let desc: [u8; 9] = read_array(r)?;
                if desc[8] & 0x80 != 0 {
                    skip(r, 3 << ((desc[8] & 7) + 1))?;
                }
                read_array::<1>(r)?; // LZW minimum code size
                skip_sub_blocks(r)?;
                frames += 1;
            }
            _ => return Ok(frames), // 0x3B trailer, or garbage after the last frame
        }
    }
}

fn skip_sub_blocks(r: &mut BufReader<File>) -> io::Result<()> {
    loop {
        let [len] = read_array::<1>(r)?;
        if len == 0 {
            return Ok(());
        }
        // Sub-blocks are tiny; consume through the buffer rather than seeking.
        let mut left = usize::from(len);
        while left > 0 {
            let available = r.fill_buf()?.len();
            if available == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            let n = available.min(left);
            r.consume(n);
            left -= n;
        }
    }
}

fn apng(r: &mut BufReader<File>) -> io::Result<u64> {
    skip(r, 8)?; // signature
    loop {
        let len = u32::from_be_bytes(read_array(r)?);
        let kind: [u8; 4] = read_array(r)?;
        match &kind {
            b"acTL" => return Ok(u64::from(u32::from_be_bytes(read_array(r)?))),
            b"IDAT" | b"IEND" => return Ok(1),
            _ => skip(r, i64::from(len) + 4)?,
        }
    }
}

fn webp(r: &mut BufReader<File>) -> io::Result<u64> {
    let riff: [u8; 12] = read_array(r)?;
    if &riff[..4] != b"RIFF" || &riff[8..] != b"WEBP" {
        return Ok(1);
    }
    let mut frames = 0;
    let mut animated = false;
    let mut first = true;
    while let Ok(head) = read_array::<8>(r) {
        let len = i64::from(u32::from_le_bytes([head[4], head[5], head[6], head[7]]));
        let padded = len + (len & 1);
        if first && &head[..4] == b"VP8X" {
            let [flags] = read_array::<1>(r)?;
            animated = flags & 0x02 != 0;
            skip(r, (padded - 1).max(0))?;
        } else {
            frames += u64::from(&head[..4] == b"ANMF");
            skip(r, padded)?;
        }
        if first && !animated {
            return Ok(1);
        }
        first = false;
    }
    Ok(frames)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fixtures")
            .join(name)
    }

    #[test]
    fn counts_animation_frames() {
        assert_eq!(
            count(&fixture("animated.gif"), ImageFormat::Gif).unwrap(),
            4
        );
        assert_eq!(
            count(&fixture("animated.webp"), ImageFormat::WebP).unwrap(),
            4
        );
        assert_eq!(
            count(&fixture("lossless.webp"), ImageFormat::WebP).unwrap(),
            1
        );
        assert_eq!(count(&fixture("alpha.png"), ImageFormat::Png).unwrap(), 1);
        assert_eq!(count(&fixture("photo.jpg"), ImageFormat::Jpeg).unwrap(), 1);
    }
}
