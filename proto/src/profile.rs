//! Renditions and profiles.
//!
//! A rendition is one named output; a profile is the set of renditions made for a media kind. The defaults
//! follow the design contract; a TOML `[profiles.NAME]` table can replace or add profiles.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Output encoding of an image rendition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    /// Baseline JPEG; alpha is flattened onto white.
    Jpeg,
    /// Lossy WebP (libwebp).
    Webp,
    /// PNG, for renditions that must keep alpha.
    Png,
    /// AVIF (rav1e through ravif); `speed` on the rendition trades time for size.
    Avif,
}

impl OutputFormat {
    /// File extension.
    pub fn extension(self) -> &'static str {
        match self {
            OutputFormat::Jpeg => "jpg",
            OutputFormat::Webp => "webp",
            OutputFormat::Png => "png",
            OutputFormat::Avif => "avif",
        }
    }

    /// MIME type.
    pub fn content_type(self) -> &'static str {
        match self {
            OutputFormat::Jpeg => "image/jpeg",
            OutputFormat::Webp => "image/webp",
            OutputFormat::Png => "image/png",
            OutputFormat::Avif => "image/avif",
        }
    }
}

/// How the image fits the box.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Fit {
    /// Scale to fit inside the box, keeping the aspect ratio.
    #[default]
    Contain,
    /// Fill the box, cropping the part `crop` picks (the centre by default).
    Cover,
}

/// Which part of the frame a `cover` rendition keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Crop {
    /// The centre of the frame.
    #[default]
    Centre,
    /// The window with the most detail (highest luma-histogram entropy), as libvips' `entropy`.
    Entropy,
    /// The window that draws the eye most: edges, saturated colour and skin tones, as libvips' `attention`.
    Attention,
}

/// One image rendition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenditionSpec {
    /// Fixed rendition name (`thumb`, `preview`, …).
    pub name: String,
    /// Longest allowed width in pixels.
    pub max_width: u32,
    /// Longest allowed height in pixels.
    pub max_height: u32,
    /// Output encoding.
    pub format: OutputFormat,
    /// Encoder quality, 1–100.
    #[serde(default = "default_quality")]
    pub quality: u8,
    /// Fit mode.
    #[serde(default)]
    pub fit: Fit,
    /// Whether a smaller source may be enlarged (default: never).
    #[serde(default)]
    pub upscale: bool,
    /// For `fit = "cover"`: which part of the frame to keep (`centre`, `entropy`, `attention`).
    #[serde(default)]
    pub crop: Crop,
    /// AVIF encoder speed, 1 (slowest, smallest) to 10 (fastest); ignored by other formats.
    #[serde(default = "default_speed")]
    pub speed: u8,
    /// Write PNG instead of `format` when the source has alpha, so transparency survives a JPEG rendition.
    #[serde(default)]
    pub png_if_alpha: bool,
    /// For an animated source and `format = "webp"`: keep every frame (an animated WebP). Otherwise, and by
    /// default, the rendition is a still of the first frame.
    #[serde(default)]
    pub animated: bool,
    /// Resample in linear light. Unset: automatic (linear when the rendition shrinks its source 3× or more, where
    /// averaging in gamma space visibly darkens fine bright detail).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub linear: Option<bool>,
}

impl RenditionSpec {
    /// A `contain` rendition with the default quality and every optional behaviour off.
    pub fn new(name: &str, max_width: u32, max_height: u32, format: OutputFormat) -> Self {
        RenditionSpec {
            name: name.into(),
            max_width,
            max_height,
            format,
            quality: default_quality(),
            fit: Fit::Contain,
            upscale: false,
            crop: Crop::Centre,
            speed: default_speed(),
            png_if_alpha: false,
            animated: false,
            linear: None,
        }
    }
}

fn default_quality() -> u8 {
    82
}

fn default_speed() -> u8 {
    6
}

/// The renditions made for each media kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Image renditions.
    #[serde(default)]
    pub image: Vec<RenditionSpec>,
    /// Record the GPS position from EXIF in the media's metadata (default: never). Outputs never carry it.
    #[serde(default)]
    pub keep_gps: bool,
}

/// Profiles by name.
pub type Profiles = BTreeMap<String, Profile>;

impl Profile {
    /// The `default` profile: `thumb` (256 px WebP) and `preview` (1280 px JPEG) for images.
    pub fn default_profile() -> Self {
        Profile {
            image: vec![
                RenditionSpec {
                    quality: 80,
                    ..RenditionSpec::new("thumb", 256, 256, OutputFormat::Webp)
                },
                RenditionSpec {
                    quality: 82,
                    ..RenditionSpec::new("preview", 1280, 1280, OutputFormat::Jpeg)
                },
            ],
            keep_gps: false,
        }
    }

    /// Built-in profiles: `default` and `streaming` (the same image renditions).
    pub fn builtin() -> Profiles {
        let mut p = Profiles::new();
        p.insert("default".into(), Profile::default_profile());
        p.insert("streaming".into(), Profile::default_profile());
        p
    }

    /// Keeps only the named renditions (for `process --only`).
    pub fn only(mut self, names: &[String]) -> Self {
        if !names.is_empty() {
            self.image.retain(|r| names.contains(&r.name));
        }
        self
    }
}
