//! The few EXIF facts worth keeping: camera make and model, and when the picture was taken.
//!
//! GPS and every other tag are deliberately not read: outputs never carry metadata, and the report only says
//! what a gallery would show. Missing or malformed EXIF is not an error; the fields are simply absent.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use exif::{In, Tag, Value};
use serde_json::{Map, Value as Json};

/// Camera facts from the EXIF block of `path`, as report metadata: `camera_make`, `camera_model` and
/// `captured_at` (ISO 8601, with the offset when the file records one).
pub fn camera(path: &Path) -> Map<String, Json> {
    let mut out = Map::new();
    let Ok(file) = File::open(path) else {
        return out;
    };
    let Ok(exif) = exif::Reader::new().read_from_container(&mut BufReader::new(file)) else {
        return out;
    };
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
    out
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
}
