//! The few EXIF facts worth keeping: orientation, camera make and model, when the picture was taken, and (only
//! when the profile asks) where.
//!
//! Outputs never carry metadata; the report only says what a gallery would show. A JPEG whose EXIF block is
//! malformed is refused as `corrupt_media`: it is treated as hostile input. In other containers EXIF is
//! optional decoration, so a missing or unreadable block simply leaves the fields out.

use std::io::{BufRead, Cursor, Seek};

use exif::{Exif, In, Tag, Value};
use mediafleet_proto::ErrorCode;
use serde_json::{Map, Value as Json};

use crate::MediaError;

/// Parsed EXIF of an original, `None` when it has none.
pub fn read(data: &[u8]) -> Option<Result<Exif, exif::Error>> {
    match exif::Reader::new().read_from_container(&mut Cursor::new(data)) {
        Err(exif::Error::NotFound(_)) => None,
        other => Some(other),
    }
}

/// The EXIF of a PNG, WebP or TIFF container; absent and unreadable blocks are both `None`.
pub fn read_from(mut r: impl BufRead + Seek) -> Option<Exif> {
    exif::Reader::new().read_from_container(&mut r).ok()
}

/// EXIF from raw TIFF data (a HEIF `Exif` item after its offset); unreadable data is `None`.
pub fn read_tiff(tiff: Vec<u8>) -> Option<Exif> {
    exif::Reader::new().read_raw(tiff).ok()
}

/// The EXIF of a JPEG from the TIFF body of its APP1 `Exif` segment: absent is fine, malformed is
/// `corrupt_media`.
pub fn read_jpeg(body: Option<Vec<u8>>) -> Result<Option<Exif>, MediaError> {
    match body.map(|b| exif::Reader::new().read_raw(b)) {
        None => Ok(None),
        Some(Ok(e)) => Ok(Some(e)),
        Some(Err(e)) => Err(MediaError::new(
            ErrorCode::CorruptMedia,
            format!("the JPEG's EXIF block is malformed: {e}"),
        )),
    }
}

/// EXIF orientation, 1–8 (1 when absent or out of range).
pub fn orientation(exif: &Exif) -> u8 {
    exif.get_field(Tag::Orientation, In::PRIMARY)
        .and_then(|f| f.value.get_uint(0))
        .filter(|o| (1..=8).contains(o))
        .map_or(1, |o| o as u8)
}

/// Camera facts as report metadata: `camera_make`, `camera_model`, `captured_at` (ISO 8601, with the offset
/// when the file records one) and, when `keep_gps`, `gps_latitude`/`gps_longitude` (signed degrees) and
/// `gps_altitude` (metres).
pub fn facts(exif: &Exif, keep_gps: bool) -> Map<String, Json> {
    let mut out = Map::new();
    let text = |tag| {
        exif.get_field(tag, In::PRIMARY)
            .and_then(|f| ascii(&f.value))
    };
    if let Some(make) = text(Tag::Make) {
        out.insert("camera_make".into(), make.into());
    }
    if let Some(model) = text(Tag::Model) {
        out.insert("camera_model".into(), model.into());
    }
    if let Some(at) =
        text(Tag::DateTimeOriginal).and_then(|t| iso8601(&t, text(Tag::OffsetTimeOriginal)))
    {
        out.insert("captured_at".into(), at.into());
    }
    if keep_gps {
        let coord = |tag, reference, negative: &str| {
            let v = degrees(&exif.get_field(tag, In::PRIMARY)?.value)?;
            let sign = if text(reference).as_deref() == Some(negative) {
                -1.0
            } else {
                1.0
            };
            Some(sign * v)
        };
        if let (Some(lat), Some(lon)) = (
            coord(Tag::GPSLatitude, Tag::GPSLatitudeRef, "S"),
            coord(Tag::GPSLongitude, Tag::GPSLongitudeRef, "W"),
        ) {
            out.insert("gps_latitude".into(), lat.into());
            out.insert("gps_longitude".into(), lon.into());
            if let Some(Value::Rational(r)) = exif
                .get_field(Tag::GPSAltitude, In::PRIMARY)
                .map(|f| &f.value)
            {
                if let Some(alt) = r.first().filter(|r| r.denom != 0) {
                    out.insert("gps_altitude".into(), alt.to_f64().into());
                }
            }
        }
    }
    out
}

/// Degrees, minutes, seconds → decimal degrees.
fn degrees(v: &Value) -> Option<f64> {
    let Value::Rational(parts) = v else {
        return None;
    };
    if parts.len() < 3 || parts.iter().any(|r| r.denom == 0) {
        return None;
    }
    let d = parts[0].to_f64() + parts[1].to_f64() / 60.0 + parts[2].to_f64() / 3600.0;
    (d.is_finite() && d <= 180.0).then_some((d * 1e7).round() / 1e7)
}

fn ascii(v: &Value) -> Option<String> {
    let Value::Ascii(parts) = v else { return None };
    let s = String::from_utf8_lossy(parts.first()?);
    let s = s.trim_matches(|c: char| c == '\0' || c.is_whitespace());
    (!s.is_empty()).then(|| s.to_string())
}

/// `2024:05:17 10:30:00` (+ `+02:00`) → `2024-05-17T10:30:00+02:00`.
fn iso8601(datetime: &str, offset: Option<String>) -> Option<String> {
    let d = exif::DateTime::from_ascii(datetime.as_bytes()).ok()?;
    let mut s = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        d.year, d.month, d.day, d.hour, d.minute, d.second
    );
    if let Some(off) = offset.filter(|o| o.len() == 6 && (o.starts_with('+') || o.starts_with('-')))
    {
        s.push_str(&off);
    }
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_capture_time() {
        assert_eq!(
            iso8601("2024:05:17 10:30:00", None).as_deref(),
            Some("2024-05-17T10:30:00")
        );
        assert_eq!(
            iso8601("2024:05:17 10:30:00", Some("+02:00".into())).as_deref(),
            Some("2024-05-17T10:30:00+02:00")
        );
        assert_eq!(iso8601("    :  :     :  :  ", None), None);
    }

    #[test]
    fn gps_only_on_request() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures");
        let data = std::fs::read(dir.join("gps.jpg")).unwrap();
        let exif = read(&data).unwrap().unwrap();
        assert!(!facts(&exif, false).contains_key("gps_latitude"));
        let with = facts(&exif, true);
        let lat = with["gps_latitude"].as_f64().unwrap();
        let lon = with["gps_longitude"].as_f64().unwrap();
        assert!((lat - 52.370_138_9).abs() < 1e-6, "{lat}");
        assert!((lon - 4.891_736_1).abs() < 1e-6, "{lon}");
    }
}
