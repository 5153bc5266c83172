//! JPEG structure, read as a stream: a lenient decoder fills a cut-off scan with grey and reports success, so a
//! half-uploaded photo would become a "ready" image with a grey bottom half. Walking the marker structure to the
//! end-of-image marker is linear, holds a few kilobytes whatever the file size, and tells a complete file from a
//! truncated one; it also counts the scans (a hostile progressive file can have thousands).

use std::io::{self, BufRead};

/// What the walk found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Structure {
    /// The marker structure reaches EOI (`FF D9`).
    pub complete: bool,
    /// Start-of-scan markers seen (1 for baseline files).
    pub scans: u32,
    /// The frame is progressive (SOF2, SOF6, SOF10 or SOF14).
    pub progressive: bool,
}

/// Walks the JPEG in `r` up to EOI, or up to `max_scans + 1` scans (then `complete` is false and the caller
/// refuses the file on the scan count). Bytes after EOI (camera trailers, MPF previews) are not read.
pub fn walk(r: impl BufRead, max_scans: u32) -> io::Result<Structure> {
    let mut s = Structure::default();
    let mut r = Bytes(r);
    if r.byte()? != Some(0xFF) || r.byte()? != Some(0xD8) {
        return Ok(s);
    }
    // After scan data the FF of the next marker has already been consumed.
    let mut at_marker = false;
    loop {
        // Markers are FF xx, possibly after fill bytes (FF FF …); tolerate junk between segments.
        if !at_marker && !r.skip_to_ff()? {
            return Ok(s);
        }
        at_marker = false;
        while r.peek()? == Some(0xFF) {
            r.skip(1)?;
        }
        let Some(marker) = r.byte()? else {
            return Ok(s);
        };
        match marker {
            0xD9 => {
                s.complete = true;
                return Ok(s);
            }
            0x01 | 0xD0..=0xD7 => {}
            _ => {
                let (Some(hi), Some(lo)) = (r.byte()?, r.byte()?) else {
                    return Ok(s);
                };
                let len = usize::from(u16::from_be_bytes([hi, lo]));
                if len < 2 || !r.skip(len - 2)? {
                    return Ok(s);
                }
                if matches!(marker, 0xC2 | 0xC6 | 0xCA | 0xCE) {
                    s.progressive = true;
                }
                if marker == 0xDA {
                    s.scans += 1;
                    if s.scans > max_scans || !r.skip_entropy_data()? {
                        return Ok(s);
                    }
                    at_marker = true;
                }
            }
        }
    }
}

/// A byte cursor over a `BufRead` that skips through its buffer without copying.
struct Bytes<R>(R);

impl<R: BufRead> Bytes<R> {
    fn peek(&mut self) -> io::Result<Option<u8>> {
        Ok(self.0.fill_buf()?.first().copied())
    }

    fn byte(&mut self) -> io::Result<Option<u8>> {
        let b = self.peek()?;
        if b.is_some() {
            self.0.consume(1);
        }
        Ok(b)
    }

    /// Skips `n` bytes; false when the data ends first.
    fn skip(&mut self, mut n: usize) -> io::Result<bool> {
        while n > 0 {
            let available = self.0.fill_buf()?.len();
            if available == 0 {
                return Ok(false);
            }
            let step = available.min(n);
            self.0.consume(step);
            n -= step;
        }
        Ok(true)
    }

    /// Moves to the next `FF` (not consuming it); false when the data ends first.
    fn skip_to_ff(&mut self) -> io::Result<bool> {
        loop {
            let buf = self.0.fill_buf()?;
            if buf.is_empty() {
                return Ok(false);
            }
            match buf.iter().position(|&b| b == 0xFF) {
                Some(p) => {
                    self.0.consume(p);
                    return Ok(true);
                }
                None => {
                    let n = buf.len();
                    self.0.consume(n);
                }
            }
        }
    }

    /// Skips scan data (where `FF 00` is a stuffed byte and `FF D0`–`FF D7` are restart markers) up to the next
    /// real marker, consuming its `FF`; false when the data ends first.
    fn skip_entropy_data(&mut self) -> io::Result<bool> {
        loop {
            if !self.skip_to_ff()? {
                return Ok(false);
            }
            self.0.consume(1);
            match self.peek()? {
                None => return Ok(false),
                Some(0x00 | 0xD0..=0xD7) => self.0.consume(1),
                // Fill byte: the next FF may start the marker.
                Some(0xFF) => {}
                Some(_) => return Ok(true),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(data: &[u8]) -> bool {
        walk(data, 1000).unwrap().complete
    }

    #[test]
    fn complete_and_truncated() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures");
        let photo = std::fs::read(dir.join("photo.jpg")).unwrap();
        assert!(complete(&photo));
        assert!(!complete(&photo[..photo.len() / 2]));
        assert!(!complete(&photo[..photo.len() - 2]));
        let mut trailer = photo.clone();
        trailer.extend_from_slice(b"vendor trailer");
        assert!(complete(&trailer));
        assert!(complete(
            &std::fs::read(dir.join("exif-orientation-6.jpg")).unwrap()
        ));
        assert!(!complete(b"\xFF\xD8"));
        assert!(!complete(b"not a jpeg"));
    }

    #[test]
    fn counts_scans_through_a_small_buffer() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures");
        let open = |name: &str| {
            std::io::BufReader::with_capacity(7, std::fs::File::open(dir.join(name)).unwrap())
        };
        let baseline = walk(open("photo.jpg"), 500).unwrap();
        assert!(baseline.complete && !baseline.progressive);
        assert_eq!(baseline.scans, 1);
        let progressive = walk(open("progressive.jpg"), 500).unwrap();
        assert!(progressive.complete && progressive.progressive);
        assert!(progressive.scans > 1, "{progressive:?}");
        let limited = walk(open("progressive.jpg"), 1).unwrap();
        assert!(!limited.complete);
        assert_eq!(limited.scans, 2);
        assert!(
            !walk(open("truncated-progressive.jpg"), 500)
                .unwrap()
                .complete
        );
    }
}
