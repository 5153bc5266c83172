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
///
/// Images use `image`. Videos use `video` plus the `image` rendition named `thumb`, which is made from the
/// poster. Audio uses `audio`. A TOML profile that leaves `video` or `audio` out gets their defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Image renditions.
    #[serde(default)]
    pub image: Vec<RenditionSpec>,
    /// Record the GPS position from EXIF in the media's metadata (default: never). Outputs never carry it.
    #[serde(default)]
    pub keep_gps: bool,
    /// Video renditions (`poster`, `mp4-720`, `hls`).
    #[serde(default)]
    pub video: VideoProfile,
    /// Audio renditions (`audio`, `peaks`).
    #[serde(default)]
    pub audio: AudioProfile,
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
            video: VideoProfile::default(),
            audio: AudioProfile::default(),
        }
    }

    /// Built-in profiles: `default`, and `streaming`, which adds the `hls` ladder for videos.
    pub fn builtin() -> Profiles {
        let mut p = Profiles::new();
        p.insert("default".into(), Profile::default_profile());
        let mut streaming = Profile::default_profile();
        streaming.video.hls = Some(HlsSpec::default());
        p.insert("streaming".into(), streaming);
        p
    }

    /// Keeps only the named renditions (for `process --only`, and for splitting a video job into its short
    /// and long parts).
    pub fn only(mut self, names: &[String]) -> Self {
        if names.is_empty() {
            return self;
        }
        let keep = |n: &str| names.iter().any(|x| x == n);
        self.image.retain(|r| keep(&r.name));
        if !keep(POSTER) {
            self.video.poster_written = false;
        }
        if !keep(POSTER) && !keep("thumb") {
            self.video.poster = None;
        }
        if !keep(MP4_720) {
            self.video.mp4 = None;
        }
        if !keep(HLS) {
            self.video.hls = None;
        }
        if !keep(AUDIO) {
            self.audio.audio = None;
        }
        if !keep(PEAKS) {
            self.audio.peaks = None;
        }
        self
    }
}

/// Name of the video poster rendition (`poster.jpg`).
pub const POSTER: &str = "poster";
/// Name of the H.264/AAC MP4 rendition (`mp4-720.mp4`).
pub const MP4_720: &str = "mp4-720";
/// Name of the HLS ladder rendition (`hls/master.m3u8`).
pub const HLS: &str = "hls";
/// Name of the AAC audio rendition (`audio.m4a`).
pub const AUDIO: &str = "audio";
/// Name of the waveform peaks rendition (`peaks.json`).
pub const PEAKS: &str = "peaks";

/// Video renditions. `None` turns one off.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VideoProfile {
    /// The `poster` still (the `thumb` image rendition is made from it).
    #[serde(default = "some_default")]
    pub poster: Option<PosterSpec>,
    /// Whether `poster.jpg` itself is written (false when only `thumb` is wanted from it).
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub poster_written: bool,
    /// The `mp4-720` rendition.
    #[serde(default = "some_default")]
    pub mp4: Option<Mp4Spec>,
    /// The `hls` ladder (the `streaming` profile turns it on).
    #[serde(default)]
    pub hls: Option<HlsSpec>,
}

impl Default for VideoProfile {
    fn default() -> Self {
        VideoProfile {
            poster: Some(PosterSpec::default()),
            poster_written: true,
            mp4: Some(Mp4Spec::default()),
            hls: None,
        }
    }
}

/// The poster still.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PosterSpec {
    /// Where in the video, as a fraction of its duration (0.1 = 10 %).
    pub at: f64,
    /// Longest side in pixels (never upscaled).
    pub max_side: u32,
    /// JPEG quality, 1–100.
    pub quality: u8,
}

impl Default for PosterSpec {
    fn default() -> Self {
        PosterSpec {
            at: 0.1,
            max_side: 1920,
            quality: 85,
        }
    }
}

/// The H.264 + AAC MP4 rendition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Mp4Spec {
    /// Largest short side (720 for landscape 1280×720 and portrait 720×1280).
    pub short_side: u32,
    /// Largest long side.
    pub long_side: u32,
    /// x264 constant rate factor.
    pub crf: u8,
    /// x264 preset.
    pub preset: String,
    /// AAC bit rate in bits per second.
    pub audio_bitrate: u32,
    /// Copy the streams instead of re-encoding when the source is already H.264 High/Main/Baseline yuv420p +
    /// AAC, inside the box and not rotated.
    pub remux: bool,
}

impl Default for Mp4Spec {
    fn default() -> Self {
        Mp4Spec {
            short_side: 720,
            long_side: 1280,
            crf: 23,
            preset: "veryfast".into(),
            audio_bitrate: 128_000,
            remux: true,
        }
    }
}

/// One rung of the HLS ladder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rung {
    /// Largest short side (1080, 720, 480).
    pub short_side: u32,
    /// Largest long side.
    pub long_side: u32,
}

/// The HLS ladder: one decode, one encoder per rung at or below the source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HlsSpec {
    /// Rungs, largest first.
    pub rungs: Vec<Rung>,
    /// Target segment length in seconds (keyframes are placed so segments cut there).
    pub segment_seconds: u32,
    /// x264 constant rate factor.
    pub crf: u8,
    /// x264 preset.
    pub preset: String,
    /// AAC bit rate in bits per second.
    pub audio_bitrate: u32,
}

impl Default for HlsSpec {
    fn default() -> Self {
        let rung = |short_side, long_side| Rung {
            short_side,
            long_side,
        };
        HlsSpec {
            rungs: vec![rung(1080, 1920), rung(720, 1280), rung(480, 854)],
            segment_seconds: 6,
            crf: 23,
            preset: "veryfast".into(),
            audio_bitrate: 128_000,
        }
    }
}

/// Audio renditions. `None` turns one off.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AudioProfile {
    /// The `audio` rendition: AAC in M4A.
    #[serde(default = "some_default")]
    pub audio: Option<AudioSpec>,
    /// The `peaks` rendition: a waveform for UIs.
    #[serde(default = "some_default")]
    pub peaks: Option<PeaksSpec>,
}

impl Default for AudioProfile {
    fn default() -> Self {
        AudioProfile {
            audio: Some(AudioSpec::default()),
            peaks: Some(PeaksSpec::default()),
        }
    }
}

/// AAC in M4A.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AudioSpec {
    /// AAC bit rate in bits per second.
    pub bitrate: u32,
}

impl Default for AudioSpec {
    fn default() -> Self {
        AudioSpec { bitrate: 128_000 }
    }
}

/// Waveform peaks (the audiowaveform JSON layout that peaks.js and wavesurfer read).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PeaksSpec {
    /// Number of min/max pairs over the whole duration.
    pub buckets: u32,
}

impl Default for PeaksSpec {
    fn default() -> Self {
        PeaksSpec { buckets: 1000 }
    }
}

fn some_default<T: Default>() -> Option<T> {
    Some(T::default())
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}
