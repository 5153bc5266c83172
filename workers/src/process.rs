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
    process_using(input, profile, limits, out_dir, control, &ALL)
}

/// [`process_with`] for still images only, without anything that needs FFmpeg (AVIF, video, audio answer
/// `unsupported_format`). A binary whose code reaches only this entry point links none of FFmpeg's ~160
/// shared libraries (the linker drops them as unused), which is what makes the `mediafleet-image` child
/// start at a fraction of `mediafleet`'s memory. Use [`needs_ffmpeg`] to choose between them.
pub fn process_still_image(
    input: &Path,
    profile: &Profile,
    limits: &Limits,
    out_dir: &Path,
    control: &Control,
) -> Report {
    process_using(input, profile, limits, out_dir, control, &STILLS)
}

/// Whether content sniffed as `sniffed` needs the FFmpeg pipelines (video, audio, AVIF stills), i.e. the full
/// `mediafleet` binary rather than the lean image child.
pub fn needs_ffmpeg(sniffed: &Sniffed) -> bool {
    sniffed.kind != MediaKind::Image || sniffed.format == "avif"
}

/// Video and audio work: the file, its sniffed kind, and what [`process_with`] passes on.
type AvRunner =
    fn(&Path, &Sniffed, &Profile, &Limits, &Path, &Control) -> Result<Report, MediaError>;

/// The decoders and pipelines a build reaches. Function pointers rather than direct calls, so a binary that
/// only uses [`STILLS`] never references FFmpeg code.
struct Engines {
    avif: Option<image::decode::AvifDecoder>,
    av: Option<AvRunner>,
}

const ALL: Engines = Engines {
    avif: Some(image::avif::decode_checked),
    av: Some(run_av),
};

const STILLS: Engines = Engines {
    avif: None,
    av: None,
};

fn process_using(
    input: &Path,
    profile: &Profile,
    limits: &Limits,
    out_dir: &Path,
    control: &Control,
    engines: &Engines,
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
        by_kind(input, &sniffed, profile, limits, out_dir, control, engines)
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
    engines: &Engines,
) -> Result<Report, MediaError> {
    match (sniffed.kind, engines.av) {
        (MediaKind::Image, _) => {
            let mut report = image::pipeline::run(input, profile, limits, out_dir, engines.avif)?;
            report
                .metadata
                .insert("content_type".into(), sniffed.mime.into());
            Ok(report)
        }
        (_, Some(av)) => av(input, sniffed, profile, limits, out_dir, control),
        (_, None) => Err(MediaError::new(
            ErrorCode::UnsupportedFormat,
            "video and audio are processed with FFmpeg, which this image-only build does not link; run them with `mediafleet process`",
        )),
    }
}

fn run_av(
    input: &Path,
    sniffed: &Sniffed,
    profile: &Profile,
    limits: &Limits,
    out_dir: &Path,
    control: &Control,
) -> Result<Report, MediaError> {
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
