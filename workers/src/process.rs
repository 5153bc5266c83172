//! The entry point of media work: sniff the content, pick the pipeline for its kind, report.

use std::fs::File;
use std::io::Read;
use std::panic::{self, AssertUnwindSafe};
use std::path::Path;

use mediafleet_proto::{ErrorCode, MediaKind, Profile};

use crate::sniff::{sniff, Sniffed, SNIFF_LEN};
use crate::{audio, image, video, Control, Limits, MediaError, Report};

/// Turns `input` into the renditions of `profile`, written into `out_dir` as `{name}.{ext}` (replacing files of
/// the same name). Never panics on bad input: every failure is a `failed` report with a code.
pub fn process(input: &Path, profile: &Profile, limits: &Limits, out_dir: &Path) -> Report {
    process_with(input, profile, limits, out_dir, &Control::new())
}

/// [`process`] with progress reports and a cancel flag (long video work). A cancelled run ends `failed` with
/// `timeout` and leaves no partial output files.
pub fn process_with(
    input: &Path,
    profile: &Profile,
    limits: &Limits,
    out_dir: &Path,
    control: &Control,
) -> Report {
    let sniffed = match read_head(input) {
        Ok(head) => match sniff(&head) {
            Some(s) => s,
            None if head.is_empty() => return unsupported(None, "the file is empty"),
            None => {
                return unsupported(
                    None,
                    "the content is not an image, video or audio format we recognise",
                )
            }
        },
        Err(e) => {
            return Report::failed(
                None,
                MediaError::new(
                    ErrorCode::Internal,
                    format!("could not read the original: {e}"),
                ),
            )
        }
    };
    let result = panic::catch_unwind(AssertUnwindSafe(|| {
        by_kind(input, &sniffed, profile, limits, out_dir, control)
    }));
    let result = result.unwrap_or_else(|payload| {
        Err(MediaError::new(
            ErrorCode::Internal,
            format!(
                "media work panicked: {}",
                image::decode::panic_message(&*payload)
            ),
        ))
    });
    match result {
        Ok(report) => report,
        Err(e) => {
            let mut report = Report::failed(Some(sniffed.kind), e);
            report
                .metadata
                .insert("format".into(), sniffed.format.into());
            report
                .metadata
                .insert("content_type".into(), sniffed.mime.into());
            report
        }
    }
}

fn by_kind(
    input: &Path,
    sniffed: &Sniffed,
    profile: &Profile,
    limits: &Limits,
    out_dir: &Path,
    control: &Control,
) -> Result<Report, MediaError> {
    match sniffed.kind {
        MediaKind::Image => {
            let mut report = image::pipeline::run(input, profile, limits, out_dir)?;
            report
                .metadata
                .insert("content_type".into(), sniffed.mime.into());
            Ok(report)
        }
        MediaKind::Video | MediaKind::Audio => {
            let bytes = std::fs::metadata(input).map(|m| m.len()).unwrap_or(0);
            if bytes > limits.video_bytes {
                return Err(MediaError::new(
                    ErrorCode::TooLargeBytes,
                    format!(
                        "the file is {bytes} bytes; the limit is {}",
                        limits.video_bytes
                    ),
                ));
            }
            let mut report = match sniffed.kind {
                MediaKind::Video => video::run(input, profile, limits, out_dir, control)?,
                _ => audio::run(input, profile, limits, out_dir, control)?,
            };
            report
                .metadata
                .insert("content_type".into(), sniffed.mime.into());
            report
                .metadata
                .insert("format".into(), sniffed.format.into());
            Ok(report)
        }
    }
}

fn read_head(input: &Path) -> std::io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(SNIFF_LEN);
    File::open(input)?
        .take(SNIFF_LEN as u64)
        .read_to_end(&mut head)?;
    Ok(head)
}

fn unsupported(kind: Option<MediaKind>, message: &str) -> Report {
    Report::failed(kind, MediaError::new(ErrorCode::UnsupportedFormat, message))
}
