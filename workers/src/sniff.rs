//! Content sniffing: what an original is, decided from its first bytes, never from its name.
//!
//! The API calls [`sniff`] on the first few KiB of an upload to answer 415 early, and [`crate::process`] calls it
//! again on the stored file, so it must be cheap and must not trust anything but magic bytes. The `infer` crate
//! covers most formats; ISO-BMFF (`ftyp`) brands, BMP and MPEG-TS are checked here because `infer` is either too
//! coarse (it cannot tell HEIC from AVIF from M4A reliably) or too loose (any text starting with `BM` is a "BMP").

use mediafleet_proto::MediaKind;

/// A recognised format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sniffed {
    /// Image, video or audio.
    pub kind: MediaKind,
    /// Short format name (`jpeg`, `png`, `heic`, `mp4`, `mp3`, …).
    pub format: &'static str,
    /// MIME type (`image/jpeg`, `video/mp4`, …).
    pub mime: &'static str,
}

impl Sniffed {
    const fn new(kind: MediaKind, format: &'static str, mime: &'static str) -> Self {
        Sniffed { kind, format, mime }
    }
}

/// How many leading bytes [`sniff`] needs to see for every format it knows.
pub const SNIFF_LEN: usize = 4096;

/// Recognises image, video and audio content from its leading bytes (give it at least [`SNIFF_LEN`] when the
/// file is that long). Empty input, text and formats we neither decode nor plan to decode give `None`.
pub fn sniff(head: &[u8]) -> Option<Sniffed> {
    // Only the first SNIFF_LEN bytes count, so a caller that reads a longer head (the api reads 8 KiB) reaches
    // the same verdict as one that reads SNIFF_LEN (the worker and its sandbox).
    let head = &head[..head.len().min(SNIFF_LEN)];
    if head.len() < 4 {
        return None;
    }
    if let Some(s) = iso_bmff(head) {
        return Some(s);
    }
    if is_bmp(head) {
        return Some(Sniffed::new(MediaKind::Image, "bmp", "image/bmp"));
    }
    if is_mpeg_ts(head) {
        return Some(Sniffed::new(MediaKind::Video, "ts", "video/mp2t"));
    }
    let t = infer::get(head)?;
    match t.matcher_type() {
        infer::MatcherType::Image => image(t.mime_type()),
        infer::MatcherType::Video => {
            Some(Sniffed::new(MediaKind::Video, t.extension(), t.mime_type()))
        }
        // MIDI is a score, not sound we can transcode.
        infer::MatcherType::Audio if t.mime_type() != "audio/midi" => {
            Some(Sniffed::new(MediaKind::Audio, t.extension(), t.mime_type()))
        }
        _ => None,
    }
}

/// The still-image formats we report; other `infer` image types (PSD, ICO, raw camera files, JPEG XL) are not
/// media this pipeline handles, so the upload is refused up front.
fn image(mime: &'static str) -> Option<Sniffed> {
    let format = match mime {
        "image/jpeg" => "jpeg",
        "image/png" => "png",
        "image/gif" => "gif",
        "image/webp" => "webp",
        "image/tiff" => "tiff",
        "image/avif" => "avif",
        "image/heif" => "heif",
        _ => return None,
    };
    Some(Sniffed::new(MediaKind::Image, format, mime))
}

/// ISO base media files (`....ftyp` + brands): HEIF/HEIC, AVIF, MP4, MOV, 3GP, M4A.
fn iso_bmff(head: &[u8]) -> Option<Sniffed> {
    if head.len() < 12 || &head[4..8] != b"ftyp" {
        return None;
    }
    let size = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
    let end = size.clamp(12, head.len());
    let major = &head[8..12];
    // Compatible brands follow the 4-byte minor version.
    let compatible: Vec<&[u8]> = head.get(16..end).unwrap_or(&[]).chunks_exact(4).collect();
    let has = |b: &[u8]| major == b || compatible.contains(&b);
    let image = |f, m| Some(Sniffed::new(MediaKind::Image, f, m));
    if major == b"avif"
        || major == b"avis"
        || ((major == b"mif1" || major == b"msf1") && has(b"avif"))
    {
        return image("avif", "image/avif");
    }
    match major {
        b"heic" | b"heix" | b"heim" | b"heis" | b"hevc" | b"hevx" => image("heic", "image/heic"),
        b"mif1" | b"msf1" => image("heif", "image/heif"),
        b"M4A " | b"M4B " | b"M4P " | b"F4A " => {
            Some(Sniffed::new(MediaKind::Audio, "m4a", "audio/mp4"))
        }
        b"qt  " => Some(Sniffed::new(MediaKind::Video, "mov", "video/quicktime")),
        [b'3', b'g', ..] => Some(Sniffed::new(MediaKind::Video, "3gp", "video/3gpp")),
        // A brand is four printable bytes; anything else is not an ftyp box at all.
        b if b.iter().all(|c| c.is_ascii_graphic() || *c == b' ') => {
            Some(Sniffed::new(MediaKind::Video, "mp4", "video/mp4"))
        }
        _ => None,
    }
}

/// `BM`, then reserved zero bytes, then a known DIB header size: text that starts with "BM" is not a bitmap.
fn is_bmp(head: &[u8]) -> bool {
    if head.len() < 18 || &head[..2] != b"BM" || head[6..10] != [0, 0, 0, 0] {
        return false;
    }
    let dib = u32::from_le_bytes([head[14], head[15], head[16], head[17]]);
    matches!(dib, 12 | 16 | 40 | 52 | 56 | 64 | 108 | 124)
}

/// MPEG transport stream: a 0x47 sync byte every 188 bytes.
fn is_mpeg_ts(head: &[u8]) -> bool {
    head.len() > 2 * 188 && head[0] == 0x47 && head[188] == 0x47 && head[376] == 0x47
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ftyp(major: &[u8; 4], compat: &[&[u8; 4]]) -> Vec<u8> {
        let size = 16 + 4 * compat.len();
        let mut v = (size as u32).to_be_bytes().to_vec();
        v.extend_from_slice(b"ftyp");
        v.extend_from_slice(major);
        v.extend_from_slice(&[0, 0, 0, 0]);
        for c in compat {
            v.extend_from_slice(*c);
        }
        v.resize(64, 0);
        v
    }

    #[test]
    fn brands_decide_iso_bmff_formats() {
        let f = |m, c: &[&[u8; 4]]| sniff(&ftyp(m, c)).map(|s| (s.kind, s.format));
        assert_eq!(f(b"avif", &[b"mif1"]), Some((MediaKind::Image, "avif")));
        assert_eq!(
            f(b"mif1", &[b"avif", b"miaf"]),
            Some((MediaKind::Image, "avif"))
        );
        assert_eq!(f(b"heic", &[b"mif1"]), Some((MediaKind::Image, "heic")));
        assert_eq!(f(b"mif1", &[b"heic"]), Some((MediaKind::Image, "heif")));
        assert_eq!(f(b"isom", &[b"mp41"]), Some((MediaKind::Video, "mp4")));
        assert_eq!(f(b"qt  ", &[]), Some((MediaKind::Video, "mov")));
        assert_eq!(f(b"M4A ", &[b"isom"]), Some((MediaKind::Audio, "m4a")));
    }

    /// Found by the `sniff` fuzz target (fuzz/regressions/sniff/ftyp-brand-past-head.bin): an `ftyp` box whose
    /// size runs past SNIFF_LEN, with the `avif` brand beyond it, was AVIF to the api (which sniffs 8 KiB) and
    /// HEIF to the worker (4 KiB). Only the first SNIFF_LEN bytes count now.
    #[test]
    fn only_the_first_sniff_len_bytes_count() {
        let mut v = ftyp(b"msf1", &[]);
        v[..4].copy_from_slice(&0x2d_0025u32.to_be_bytes());
        v.resize(SNIFF_LEN + 40, 0);
        v[SNIFF_LEN + 36..].copy_from_slice(b"avif");
        assert_eq!(sniff(&v), sniff(&v[..SNIFF_LEN]));
        assert_eq!(sniff(&v).map(|s| s.format), Some("heif"));
    }

    #[test]
    fn magic_bytes_not_text() {
        assert_eq!(sniff(b""), None);
        assert_eq!(
            sniff(b"BMW is a car, not a bitmap, and this is text."),
            None
        );
        assert_eq!(sniff(b"hello world, this is just text\n"), None);
        assert_eq!(
            sniff(b"\xff\xd8\xff\xe0\0\x10JFIF\0").map(|s| s.mime),
            Some("image/jpeg")
        );
        assert_eq!(
            sniff(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR").map(|s| s.format),
            Some("png")
        );
        assert_eq!(sniff(b"GIF89a\x01\0\x01\0").map(|s| s.format), Some("gif"));
        assert_eq!(
            sniff(b"RIFF\0\0\0\0WEBPVP8 ").map(|s| s.format),
            Some("webp")
        );
        assert_eq!(
            sniff(b"ID3\x04\0\0\0\0\0\0").map(|s| s.kind),
            Some(MediaKind::Audio)
        );
        let mut bmp = b"BM\x46\0\0\0\0\0\0\0\x36\0\0\0\x28\0\0\0".to_vec();
        bmp.resize(70, 0);
        assert_eq!(sniff(&bmp).map(|s| s.mime), Some("image/bmp"));
    }
}
