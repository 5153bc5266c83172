//! The HLS ladder: which rungs a source gets, where their files go, and the master playlist.
//!
//! Layout under the output directory (one rendition, `hls`, whose file is `hls/master.m3u8`):
//! `hls/master.m3u8`, `hls/{1080p,720p,480p}/index.m3u8`, `hls/{rung}/seg_0000.ts`, …
//! The master's `BANDWIDTH` is each variant's peak segment bit rate (what the HLS spec asks for) and
//! `AVERAGE-BANDWIDTH` its mean, both measured from the segments written, not guessed from settings.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;

use mediafleet_proto::{ErrorCode, HlsSpec};

use super::size::fit;
use crate::MediaError;

/// One rung of this source's ladder.
#[derive(Debug, Clone, PartialEq)]
pub struct Rung {
    /// Directory name (`720p`).
    pub name: String,
    /// Output size.
    pub size: (u32, u32),
}

/// Rungs at or below the source (by short side), largest first. A source smaller than every rung gets one
/// rung at its own size.
pub fn rungs(display: (u32, u32), spec: &HlsSpec) -> Vec<Rung> {
    let (w, h) = display;
    let short = w.min(h);
    let mut out: Vec<Rung> = Vec::new();
    for r in &spec.rungs {
        if r.short_side > short {
            continue;
        }
        let size = fit(w, h, r.short_side, r.long_side);
        if out.iter().all(|x| x.size != size) {
            out.push(Rung {
                name: format!("{}p", r.short_side),
                size,
            });
        }
    }
    if out.is_empty() {
        let size = fit(w, h, short.max(2), w.max(h).max(2));
        out.push(Rung {
            name: format!("{}p", size.0.min(size.1)),
            size,
        });
    }
    out
}

/// Writes `hls_dir/master.m3u8` for `rungs` (whose variants are already written), with `codecs[i]` the
/// `avc1…` string of rung `i`.
pub fn write_master(
    hls_dir: &Path,
    rungs: &[Rung],
    codecs: &[String],
    audio: bool,
    fps: f64,
) -> Result<(), MediaError> {
    let mut m = String::from("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-INDEPENDENT-SEGMENTS\n");
    for (r, codec) in rungs.iter().zip(codecs) {
        let (peak, average) = measure(&hls_dir.join(&r.name))?;
        let codecs = if audio {
            format!("{codec},mp4a.40.2")
        } else {
            codec.clone()
        };
        let _ = write!(
            m,
            "#EXT-X-STREAM-INF:BANDWIDTH={peak},AVERAGE-BANDWIDTH={average},RESOLUTION={}x{},CODECS=\"{codecs}\"",
            r.size.0, r.size.1
        );
        if fps > 0.0 {
            let _ = write!(m, ",FRAME-RATE={fps:.3}");
        }
        let _ = write!(m, "\n{}/index.m3u8\n", r.name);
    }
    fs::write(hls_dir.join("master.m3u8"), m).map_err(|e| {
        MediaError::new(
            ErrorCode::Internal,
            format!("could not write the master playlist: {e}"),
        )
    })
}

/// Peak and average bit rate of a variant, from its playlist's `#EXTINF` durations and segment sizes.
fn measure(variant: &Path) -> Result<(u64, u64), MediaError> {
    let text = fs::read_to_string(variant.join("index.m3u8")).map_err(|e| {
        MediaError::new(
            ErrorCode::Internal,
            format!("a variant playlist is missing: {e}"),
        )
    })?;
    let (mut peak, mut bytes, mut seconds) = (0f64, 0u64, 0f64);
    let mut duration = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("#EXTINF:") {
            duration = rest
                .split(',')
                .next()
                .and_then(|d| d.trim().parse::<f64>().ok());
        } else if !line.starts_with('#') && !line.trim().is_empty() {
            let size = fs::metadata(variant.join(line.trim()))
                .map(|m| m.len())
                .unwrap_or(0);
            let d = duration.take().unwrap_or(0.0).max(0.001);
            peak = peak.max(size as f64 * 8.0 / d);
            bytes += size;
            seconds += d;
        }
    }
    let average = if seconds > 0.0 {
        bytes as f64 * 8.0 / seconds
    } else {
        0.0
    };
    Ok((peak.ceil() as u64, average.ceil() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_rungs_at_or_below_the_source() {
        let spec = HlsSpec::default();
        let names = |d| {
            rungs(d, &spec)
                .into_iter()
                .map(|r| r.name)
                .collect::<Vec<_>>()
        };
        assert_eq!(names((1920, 1080)), ["1080p", "720p", "480p"]);
        assert_eq!(names((1280, 720)), ["720p", "480p"]);
        assert_eq!(names((720, 1280)), ["720p", "480p"]);
        assert_eq!(names((640, 360)), ["360p"]);
        assert_eq!(rungs((1920, 1080), &spec)[2].size, (854, 480));
    }
}
