//! Writing rendition files into the output directory.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

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

/// A file or directory an encoder is writing inside the output directory under a hidden temporary name. It
/// becomes the rendition on [`Partial::commit`]; dropped uncommitted (an error, a cancel), it is removed, so a
/// failed or cancelled job leaves no half-written output behind.
#[derive(Debug)]
pub struct Partial {
    tmp: PathBuf,
    is_dir: bool,
    done: bool,
}

impl Partial {
    /// A temporary file for `out_dir/{file}`.
    pub fn file(out_dir: &Path, file: &str) -> Result<Self, MediaError> {
        fs::create_dir_all(out_dir).map_err(|e| io_fail("create the output directory", e))?;
        let tmp = out_dir.join(format!(".{file}.partial"));
        let _ = fs::remove_file(&tmp);
        Ok(Partial {
            tmp,
            is_dir: false,
            done: false,
        })
    }

    /// A temporary directory for `out_dir/{dir}/`.
    pub fn dir(out_dir: &Path, dir: &str) -> Result<Self, MediaError> {
        let tmp = out_dir.join(format!(".{dir}.partial"));
        let _ = fs::remove_dir_all(&tmp);
        fs::create_dir_all(&tmp).map_err(|e| io_fail("create a scratch directory", e))?;
        Ok(Partial {
            tmp,
            is_dir: true,
            done: false,
        })
    }

    /// Where the encoder writes.
    pub fn path(&self) -> &Path {
        &self.tmp
    }

    /// Moves the file (or directory) into place as `out_dir/{output.file}` (for a directory, the first path
    /// component of `output.file`) and describes it. A directory's hash covers every file in it, so its
    /// storage key changes when any segment does; its byte count is the sum of its files.
    pub fn commit(mut self, out_dir: &Path, output: Output<'_>) -> Result<Rendition, MediaError> {
        let (bytes, sha256) = if self.is_dir {
            let name = output.file.split('/').next().unwrap_or(&output.file);
            let dest = out_dir.join(name);
            let _ = fs::remove_dir_all(&dest);
            let summary = dir_digest(&self.tmp)?;
            fs::rename(&self.tmp, &dest)
                .map_err(|e| io_fail("move the rendition into place", e))?;
            summary
        } else {
            let summary = file_digest(&self.tmp)?;
            fs::rename(&self.tmp, out_dir.join(&output.file))
                .map_err(|e| io_fail("move the rendition into place", e))?;
            summary
        };
        self.done = true;
        Ok(Rendition {
            name: output.name.to_string(),
            file: output.file,
            content_type: output.content_type.to_string(),
            width: output.size.map(|s| s.0),
            height: output.size.map(|s| s.1),
            bytes,
            duration_seconds: output.duration_seconds,
            sha256,
        })
    }
}

impl Drop for Partial {
    fn drop(&mut self) {
        if !self.done {
            if self.is_dir {
                let _ = fs::remove_dir_all(&self.tmp);
            } else {
                let _ = fs::remove_file(&self.tmp);
            }
        }
    }
}

fn io_fail(what: &str, e: std::io::Error) -> MediaError {
    MediaError::new(ErrorCode::Internal, format!("could not {what}: {e}"))
}

/// Size and hex SHA-256 of a file, read in chunks (video files do not fit in memory).
pub fn file_digest(path: &Path) -> Result<(u64, String), MediaError> {
    let mut f = fs::File::open(path).map_err(|e| io_fail("read an output", e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = std::io::Read::read(&mut f, &mut buf).map_err(|e| io_fail("read an output", e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    Ok((total, hex::encode(hasher.finalize())))
}

/// Every file under `dir`, as paths relative to it, sorted.
pub fn list_files(dir: &Path) -> Result<Vec<PathBuf>, MediaError> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let entries = fs::read_dir(dir.join(&rel)).map_err(|e| io_fail("list an output", e))?;
        for entry in entries {
            let entry = entry.map_err(|e| io_fail("list an output", e))?;
            let path = rel.join(entry.file_name());
            if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

fn dir_digest(dir: &Path) -> Result<(u64, String), MediaError> {
    let mut hasher = Sha256::new();
    let mut total = 0;
    for rel in list_files(dir)? {
        let (bytes, sha) = file_digest(&dir.join(&rel))?;
        total += bytes;
        hasher.update(rel.to_string_lossy().as_bytes());
        hasher.update(b"\0");
        hasher.update(sha.as_bytes());
        hasher.update(b"\n");
    }
    Ok((total, hex::encode(hasher.finalize())))
}

/// The content type of a file inside a directory rendition (HLS playlists and segments), by extension.
pub fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next() {
        Some("m3u8") => "application/vnd.apple.mpegurl",
        Some("ts") => "video/mp2t",
        Some("m4s" | "mp4") => "video/mp4",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    }
}
