//! The image pipeline: plan every rendition, decode once (a JPEG shrunk on load as far as the largest rendition
//! allows, and resampled to it as it streams out of the decoder), render largest-first, encode, write, hash.

use std::path::Path;

use image::GenericImageView;
use mediafleet_proto::{Fit, MediaKind, OutputFormat, Profile, RenditionSpec};
use serde_json::{Map, Value};

use super::cascade::{largest_first, Cascade, HEADROOM};
use super::decode::{decode, AvifDecoder, Decoded, Request, Source};
use super::resize::{plan, Target};
use super::{anim, crop, encode, hash};
use crate::output::{self, Output};
use crate::{Limits, MediaError, Report};

/// Runs the image renditions of `profile` on `input`, writing them into `out_dir`.
pub fn run(
    input: &Path,
    profile: &Profile,
    limits: &Limits,
    out_dir: &Path,
    avif: Option<AvifDecoder>,
) -> Result<Report, MediaError> {
    let placeholder = placeholder_spec();
    let need = |w: u32, h: u32| {
        profile
            .image
            .iter()
            .chain(std::iter::once(&placeholder))
            .map(|s| needed(&plan(w, h, s)))
            .fold((1.0f64, 1.0f64), |a, b| (a.0.max(b.0), a.1.max(b.1)))
    };
    let master_for = |w: u32, h: u32| master(w, h, &profile.image, &placeholder);
    let decoded = decode(
        input,
        &Request {
            limits,
            keep_gps: profile.keep_gps,
            need: &need,
            master: &master_for,
            avif,
        },
    )?;
    let metadata = metadata(&decoded);
    let (w, h) = decoded.full;
    let (format, has_alpha, frames) = (decoded.format, decoded.has_alpha, decoded.frames);
    let mut cascade = Cascade::new(decoded.image, has_alpha);

    let targets: Vec<Target> = profile
        .image
        .iter()
        .map(|s| {
            let mut t = plan(w, h, s);
            if s.fit == Fit::Cover {
                t.crop = crop::place(cascade.base(), t.crop[2], t.crop[3], s.crop);
            }
            t
        })
        .collect();
    let mut renditions = vec![None; targets.len()];
    for i in largest_first(&targets) {
        let spec = &profile.image[i];
        let format_out = if spec.png_if_alpha && has_alpha {
            OutputFormat::Png
        } else {
            spec.format
        };
        let animated = match format {
            Source::Image(f) if spec.animated && frames > 1 && format_out == OutputFormat::Webp => {
                Some(f)
            }
            _ => None,
        };
        let (bytes, size) = if let Some(format) = animated {
            let t = &targets[i];
            let bytes = anim::webp(input, format, t, spec.quality, cascade.scaler())?;
            (bytes, (t.width, t.height))
        } else {
            let img = cascade.render(&targets[i])?;
            let bytes = encode::encode(&img, format_out, spec.quality, spec.speed)?;
            (bytes, img.dimensions())
        };
        renditions[i] = Some(output::write(
            out_dir,
            describe(spec, format_out, size),
            &bytes,
        )?);
    }

    let small = cascade.render(&plan(w, h, &placeholder))?.into_rgba8();
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

/// The smallest source (in original-frame pixels) `t` can be made from with headroom: its crop region must
/// still be [`HEADROOM`]× the output on both sides.
fn needed(t: &Target) -> (f64, f64) {
    (
        HEADROOM * f64::from(t.width) / t.crop[2],
        HEADROOM * f64::from(t.height) / t.crop[3],
    )
}

/// The full-frame size every rendition of an upright `w`×`h` original can be made from, for the JPEG decoder
/// to resample to as it streams: the largest full-frame rendition itself when every other one (and the
/// placeholder) still has [`HEADROOM`] there, so the largest is made in one resample straight from the decoder;
/// otherwise the smallest full frame with headroom for all; `None` when that is the original size.
fn master(w: u32, h: u32, specs: &[RenditionSpec], placeholder: &RenditionSpec) -> Option<Target> {
    let targets: Vec<Target> = specs
        .iter()
        .chain(std::iter::once(placeholder))
        .map(|s| plan(w, h, s))
        .collect();
    let largest = (0..targets.len())
        .filter(|&i| targets[i].is_full_frame())
        .max_by_key(|&i| u64::from(targets[i].width) * u64::from(targets[i].height));
    if let Some(i) = largest {
        let l = targets[i];
        let rest = max_need(
            targets
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, t)| t),
        );
        if f64::from(l.width) >= rest.0 && f64::from(l.height) >= rest.1 {
            return Some(l);
        }
    }
    let (nw, nh) = max_need(targets.iter());
    let scale = (nw / f64::from(w.max(1))).max(nh / f64::from(h.max(1)));
    (scale < 1.0).then(|| Target::full_frame(f64::from(w) * scale, f64::from(h) * scale))
}

/// The largest [`needed`] size over `targets`, per side.
fn max_need<'a>(targets: impl Iterator<Item = &'a Target>) -> (f64, f64) {
    targets
        .map(needed)
        .fold((1.0f64, 1.0f64), |a, b| (a.0.max(b.0), a.1.max(b.1)))
}

fn describe(spec: &RenditionSpec, format: OutputFormat, (w, h): (u32, u32)) -> Output<'_> {
    Output {
        name: &spec.name,
        file: format!("{}.{}", spec.name, format.extension()),
        content_type: format.content_type(),
        size: Some((w, h)),
        duration_seconds: None,
    }
}

/// The ≤ 100×100 copy the placeholder hashes are computed from.
fn placeholder_spec() -> RenditionSpec {
    RenditionSpec::new(
        "placeholder",
        hash::MAX_SIDE,
        hash::MAX_SIDE,
        OutputFormat::Png,
    )
}

fn metadata(d: &Decoded) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("width".into(), d.full.0.into());
    m.insert("height".into(), d.full.1.into());
    m.insert("format".into(), d.format.name().into());
    m.insert("orientation".into(), d.orientation.into());
    m.insert("has_alpha".into(), d.has_alpha.into());
    m.insert("animated".into(), (d.frames > 1).into());
    m.insert("frames".into(), d.frames.into());
    m.insert("icc_converted".into(), d.icc_converted.into());
    m.insert("decode_shrink".into(), d.shrink.into());
    m.extend(d.exif.clone());
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use mediafleet_proto::Crop;

    #[test]
    fn master_is_the_largest_full_frame_rendition_when_the_rest_fit() {
        let specs = [
            RenditionSpec::new("thumb", 256, 256, OutputFormat::Webp),
            RenditionSpec::new("preview", 1280, 1280, OutputFormat::Jpeg),
        ];
        let m = master(13334, 7500, &specs, &placeholder_spec()).unwrap();
        assert_eq!(
            (m.width, m.height, m.crop),
            (1280, 720, [0.0, 0.0, 1.0, 1.0])
        );
        // A source no larger than the preview: nothing to resample while decoding.
        let m = master(1000, 800, &specs, &placeholder_spec()).unwrap();
        assert_eq!((m.width, m.height), (1000, 800));
    }

    #[test]
    fn master_falls_back_to_the_smallest_frame_with_headroom() {
        // A big square cover crop from a 16:9 frame needs more than the 1280×720 preview offers.
        let specs = [
            RenditionSpec::new("preview", 1280, 1280, OutputFormat::Jpeg),
            RenditionSpec {
                fit: Fit::Cover,
                crop: Crop::Centre,
                ..RenditionSpec::new("square", 600, 600, OutputFormat::Jpeg)
            },
        ];
        let m = master(13334, 7500, &specs, &placeholder_spec()).unwrap();
        // The preview's own need (2 × 1280 wide) and the square's (2 × 600 of a 0.5625-wide crop → 2133 wide).
        assert_eq!((m.width, m.height), (2560, 1440));
        assert!(master(2000, 1125, &specs, &placeholder_spec()).is_none());
    }
}
