//! JPEG completeness: the decoder (zune-jpeg, lenient) fills a cut-off scan with grey and reports success, so a
//! half-uploaded photo would become a "ready" image with a grey bottom half. Walking the marker structure to the
//! end-of-image marker is linear and allocation-free, and tells a complete file from a truncated one.

/// Whether `data` is a JPEG whose marker structure reaches EOI (`FF D9`). Bytes after EOI (camera trailers,
/// MPF previews) are allowed.
pub fn is_complete(data: &[u8]) -> bool {
    if !data.starts_with(&[0xFF, 0xD8]) {
        return false;
    }
    let mut i = 2;
    loop {
        // Markers are FF xx, possibly after fill bytes (FF FF …); tolerate junk between segments.
        let Some(ff) = find_ff(data, i) else {
            return false;
        };
        i = ff;
        while data.get(i) == Some(&0xFF) {
            i += 1;
        }
        let Some(&marker) = data.get(i) else {
            return false;
        };
        i += 1;
        match marker {
            0xD9 => return true,
            0x01 | 0xD0..=0xD7 => {}
            _ => {
                let Some(len) = segment_len(data, i) else {
                    return false;
                };
                i += len;
                if marker == 0xDA {
                    match skip_entropy_data(data, i) {
                        Some(next) => i = next,
                        None => return false,
                    }
                }
            }
        }
    }
}

fn find_ff(data: &[u8], from: usize) -> Option<usize> {
    data.get(from..)?
        .iter()
        .position(|&b| b == 0xFF)
        .map(|p| from + p)
}

fn segment_len(data: &[u8], at: usize) -> Option<usize> {
    let len = usize::from(u16::from_be_bytes([*data.get(at)?, *data.get(at + 1)?]));
    (len >= 2 && at + len <= data.len()).then_some(len)
}

/// Skips scan data (where `FF 00` is a stuffed byte and `FF D0`–`FF D7` are restart markers) and returns the
/// offset of the next real marker.
fn skip_entropy_data(data: &[u8], mut i: usize) -> Option<usize> {
    loop {
        let ff = find_ff(data, i)?;
        match *data.get(ff + 1)? {
            0x00 | 0xD0..=0xD7 => i = ff + 2,
            0xFF => i = ff + 1,
            _ => return Some(ff),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn complete_and_truncated() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures");
        let photo = std::fs::read(dir.join("photo.jpg")).unwrap();
        assert!(is_complete(&photo));
        assert!(!is_complete(&photo[..photo.len() / 2]));
        assert!(!is_complete(&photo[..photo.len() - 2]));
        let mut trailer = photo.clone();
        trailer.extend_from_slice(b"vendor trailer");
        assert!(is_complete(&trailer));
        assert!(is_complete(
            &std::fs::read(dir.join("exif-orientation-6.jpg")).unwrap()
        ));
        assert!(!is_complete(b"\xFF\xD8"));
    }
}
