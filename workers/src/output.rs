//! Writing rendition files into the output directory.

use std::fs;
use std::io::Write;
use std::path::Path;

use mediafleet_proto::ErrorCode;
use sha2::{Digest, Sha256};

use crate::{MediaError, Rendition};

/// What one rendition file holds, before it is written.
#[derive(Debug, Clone)]
pub struct Output<'a> {
    /// Rendition name (`thumb`).
    pub name: &'a str,
    /// File name inside the output directory (`thumb.webp`).
    pub file: String,
    /// MIME type.
    pub content_type: &'a str,
    /// Pixel size, when it has one.
    pub size: Option<(u32, u32)>,
    /// Playing time, for audio and video.
    pub duration_seconds: Option<f64>,
}

/// Writes `bytes` as `out_dir/{output.file}`, replacing any file of that name atomically (a temporary file in the
/// same directory, then a rename), and describes it as a [`Rendition`] with its SHA-256.
pub fn write(out_dir: &Path, output: Output<'_>, bytes: &[u8]) -> Result<Rendition, MediaError> {
    let fail = |what: &str, e: std::io::Error| {
        MediaError::new(
            ErrorCode::Internal,
            format!("could not {what} {}: {e}", output.file),
        )
    };
    fs::create_dir_all(out_dir).map_err(|e| fail("create the directory for", e))?;
    let path = out_dir.join(&output.file);
    let tmp = out_dir.join(format!(".{}.partial", output.file));
    let mut f = fs::File::create(&tmp).map_err(|e| fail("create", e))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(|e| fail("write", e))?;
    drop(f);
    fs::rename(&tmp, &path).map_err(|e| fail("replace", e))?;
    Ok(Rendition {
        name: output.name.to_string(),
        file: output.file,
        content_type: output.content_type.to_string(),
        width: output.size.map(|s| s.0),
        height: output.size.map(|s| s.1),
        bytes: bytes.len() as u64,
        duration_seconds: output.duration_seconds,
        sha256: hex::encode(Sha256::digest(bytes)),
    })
}
