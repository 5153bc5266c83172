//! The image pipeline: decode once, render every rendition largest-first, encode, write, hash.

use std::path::Path;

use image::GenericImageView;
use mediafleet_proto::{Fit, MediaKind, OutputFormat, Profile, RenditionSpec};
use serde_json::{Map, Value};

use super::cascade::{largest_first, Cascade};
use super::decode::{decode, format_name, Decoded};
use super::resize::{plan, Target};
use super::{encode, exif, hash};
use crate::output::{self, Output};
use crate::{Limits, MediaError, Report};

/// Runs the image renditions of `profile` on `input`, writing them into `out_dir`.
pub fn run(
    input: &Path,
    profile: &Profile,
    limits: &Limits,
    out_dir: &Path,
) -> Result<Report, MediaError> {
    let decoded = decode(input, limits)?;
    let mut metadata = metadata(&decoded);
    if matches!(
        format_name(decoded.format),
        "jpeg" | "tiff" | "webp" | "png"
    ) {
        metadata.extend(exif::camera(input));
    }
    let mut cascade = Cascade::new(decoded.image, decoded.has_alpha);
    let (w, h) = cascade.base().dimensions();

    let targets: Vec<Target> = profile.image.iter().map(|s| plan(w, h, s)).collect();
    let mut renditions = vec![None; targets.len()];
    for i in largest_first(&targets) {
        let spec = &profile.image[i];
        let img = cascade.render(&targets[i])?;
        let bytes = encode::encode(&img, spec.format, spec.quality)?;
        renditions[i] = Some(output::write(
            out_dir,
            describe(spec, img.dimensions()),
            &bytes,
        )?);
    }

    let small = cascade
        .render(&plan(w, h, &placeholder_spec()))?
        .into_rgba8();
    Ok(Report {
        kind: Some(MediaKind::Image),
        status: "ready".into(),
        error: None,
        metadata,
        blurhash: hash::blurhash(&small),
        thumbhash: hash::thumbhash(&small),
        renditions: renditions.into_iter().flatten().collect(),
    })
}

fn describe(spec: &RenditionSpec, (w, h): (u32, u32)) -> Output<'_> {
    Output {
        name: &spec.name,
        file: format!("{}.{}", spec.name, spec.format.extension()),
        content_type: spec.format.content_type(),
        size: Some((w, h)),
        duration_seconds: None,
    }
}

/// The ≤ 100×100 copy the placeholder hashes are computed from.
fn placeholder_spec() -> RenditionSpec {
    RenditionSpec {
        name: "placeholder".into(),
        max_width: hash::MAX_SIDE,
        max_height: hash::MAX_SIDE,
        format: OutputFormat::Png,
        quality: 100,
        fit: Fit::Contain,
        upscale: false,
    }
}

fn metadata(d: &Decoded) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("width".into(), d.image.width().into());
    m.insert("height".into(), d.image.height().into());
    m.insert("format".into(), format_name(d.format).into());
    m.insert("orientation".into(), d.orientation.into());
    m.insert("has_alpha".into(), d.has_alpha.into());
    m.insert("animated".into(), (d.frames > 1).into());
    m.insert("frames".into(), d.frames.into());
    m
}
