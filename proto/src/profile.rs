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
}

impl OutputFormat {
    /// File extension.
    pub fn extension(self) -> &'static str {
        match self {
            OutputFormat::Jpeg => "jpg",
            OutputFormat::Webp => "webp",
            OutputFormat::Png => "png",
        }
    }

    /// MIME type.
    pub fn content_type(self) -> &'static str {
        match self {
            OutputFormat::Jpeg => "image/jpeg",
            OutputFormat::Webp => "image/webp",
            OutputFormat::Png => "image/png",
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
    /// Fill the box, cropping the centre.
    Cover,
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
}

fn default_quality() -> u8 {
    82
}

/// The renditions made for each media kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Image renditions.
    #[serde(default)]
    pub image: Vec<RenditionSpec>,
}

/// Profiles by name.
pub type Profiles = BTreeMap<String, Profile>;

impl Profile {
    /// The `default` profile: `thumb` (256 px WebP) and `preview` (1280 px JPEG) for images.
    pub fn default_profile() -> Self {
        Profile {
            image: vec![
                RenditionSpec {
                    name: "thumb".into(),
                    max_width: 256,
                    max_height: 256,
                    format: OutputFormat::Webp,
                    quality: 80,
                    fit: Fit::Contain,
                    upscale: false,
                },
                RenditionSpec {
                    name: "preview".into(),
                    max_width: 1280,
                    max_height: 1280,
                    format: OutputFormat::Jpeg,
                    quality: 82,
                    fit: Fit::Contain,
                    upscale: false,
                },
            ],
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
