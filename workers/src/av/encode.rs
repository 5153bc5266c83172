//! Encoders, configured as the `ffmpeg` CLI configures them for
//! `-c:v libx264 -preset veryfast -crf 23 -pix_fmt yuv420p -profile:v high -c:a aac -b:a 128k`:
//! `threads=auto` on both, so our overhead over the CLI is the glue, not the codec settings.

use ffmpeg::codec::{self, encoder};
use ffmpeg::format::Pixel;
use ffmpeg::{Dictionary, Rational};
use ffmpeg_next as ffmpeg;

use super::failed;
use crate::MediaError;

/// What one H.264 encode is.
#[derive(Debug, Clone, PartialEq)]
pub struct H264 {
    /// Output width (even).
    pub width: u32,
    /// Output height (even).
    pub height: u32,
    /// Time base of the frames fed in (the filter sink's).
    pub time_base: Rational,
    /// Nominal frame rate (rate control and the HLS `FRAME-RATE`); timestamps stay the source's.
    pub rate: Rational,
    /// x264 CRF.
    pub crf: u8,
    /// x264 preset.
    pub preset: String,
    /// Whether the container wants SPS/PPS out of band (MP4 alone: yes; MPEG-TS segments: no).
    pub global_header: bool,
    /// Tag the output as BT.709 (after a tone map).
    pub bt709: bool,
}

/// Opens libx264 with `threads=auto`.
pub fn h264(spec: &H264) -> Result<encoder::Video, MediaError> {
    let codec = encoder::find_by_name("libx264")
        .ok_or_else(|| super::internal("this FFmpeg has no libx264 encoder"))?;
    let mut ctx = codec::Context::new_with_codec(codec);
    if spec.global_header {
        // `set_flags` replaces the flags, and libx264's codec defaults set `+cgop`: keep it, or x264 writes
        // open GOPs (segments that do not decode alone, and not what the CLI makes).
        ctx.set_flags(codec::Flags::GLOBAL_HEADER | codec::Flags::CLOSED_GOP);
    }
    let mut enc = ctx.encoder().video().map_err(failed("libx264"))?;
    enc.set_width(spec.width);
    enc.set_height(spec.height);
    enc.set_format(Pixel::YUV420P);
    enc.set_time_base(spec.time_base);
    enc.set_frame_rate(Some(spec.rate));
    enc.set_aspect_ratio(Rational(1, 1));
    if spec.bt709 {
        enc.set_colorspace(ffmpeg::color::Space::BT709);
        enc.set_color_primaries(ffmpeg::color::Primaries::BT709);
        enc.set_color_transfer_characteristic(ffmpeg::color::TransferCharacteristic::BT709);
        enc.set_color_range(ffmpeg::color::Range::MPEG);
    }
    let mut opts = Dictionary::new();
    opts.set("preset", &spec.preset);
    opts.set("crf", &spec.crf.to_string());
    opts.set("profile", "high");
    opts.set("threads", "auto");
    enc.open_with(opts).map_err(failed("libx264 did not open"))
}

/// Opens FFmpeg's native AAC encoder (LC) at `bitrate`.
pub fn aac(
    rate: u32,
    channels: u16,
    bitrate: u32,
    global_header: bool,
) -> Result<encoder::Audio, MediaError> {
    let codec = encoder::find(codec::Id::AAC)
        .ok_or_else(|| super::internal("this FFmpeg has no AAC encoder"))?;
    let mut ctx = codec::Context::new_with_codec(codec);
    if global_header {
        ctx.set_flags(codec::Flags::GLOBAL_HEADER);
    }
    let mut enc = ctx.encoder().audio().map_err(failed("aac"))?;
    let layout = if channels == 1 {
        ffmpeg::ChannelLayout::MONO
    } else {
        ffmpeg::ChannelLayout::STEREO
    };
    enc.set_rate(rate as i32);
    enc.set_channel_layout(layout);
    enc.set_channels(layout.channels());
    enc.set_format(ffmpeg::format::Sample::F32(
        ffmpeg::format::sample::Type::Planar,
    ));
    enc.set_bit_rate(bitrate as usize);
    enc.set_time_base(Rational(1, rate as i32));
    let mut opts = Dictionary::new();
    opts.set("threads", "auto");
    enc.open_with(opts).map_err(failed("aac did not open"))
}

/// The AAC encoder's sample rate for a source rate: the source's when AAC has it, else 48 kHz.
pub fn aac_rate(source: u32) -> u32 {
    const RATES: [u32; 9] = [
        96_000, 88_200, 64_000, 48_000, 44_100, 32_000, 24_000, 22_050, 16_000,
    ];
    if RATES.contains(&source) {
        source
    } else {
        48_000
    }
}

/// `avc1.PPCCLL` for an HLS `CODECS` attribute, from the SPS in an Annex B packet.
pub fn avc1_codec_string(packet: &[u8]) -> Option<String> {
    let mut i = 0;
    while i + 4 < packet.len() {
        if packet[i] == 0 && packet[i + 1] == 0 && packet[i + 2] == 1 {
            let nal = packet[i + 3];
            if nal & 0x1f == 7 && i + 6 < packet.len() {
                return Some(format!(
                    "avc1.{:02x}{:02x}{:02x}",
                    packet[i + 4],
                    packet[i + 5],
                    packet[i + 6]
                ));
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codec_string_from_sps() {
        let pkt = [
            0, 0, 0, 1, 0x09, 0xf0, 0, 0, 0, 1, 0x67, 0x64, 0x00, 0x1f, 0xac,
        ];
        assert_eq!(avc1_codec_string(&pkt).as_deref(), Some("avc1.64001f"));
        assert_eq!(avc1_codec_string(&[0, 0, 1, 0x65, 1, 2, 3]), None);
        assert_eq!(aac_rate(44_100), 44_100);
        assert_eq!(aac_rate(11_025), 48_000);
    }
}
