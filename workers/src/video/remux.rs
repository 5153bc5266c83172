//! `mp4-720` by stream copy: when the source already is H.264 yuv420p (+ AAC or no audio), inside the box and
//! not rotated, re-encoding would only lose quality and time (Mastodon makes the same call). The streams are
//! copied into a new MP4 with the index at the front.

use std::path::Path;

use ffmpeg::format::Pixel;
use ffmpeg::Packet;
use ffmpeg_next as ffmpeg;
use mediafleet_proto::Mp4Spec;

use super::size::fit;
use crate::av::corrupt;
use crate::av::mux::{Kind, Muxer};
use crate::av::probe::{Probe, VideoStream};
use crate::{Control, MediaError};

/// Whether `mp4-720` can be a stream copy of this source.
pub fn compatible(probe: &Probe, v: &VideoStream, spec: &Mp4Spec) -> bool {
    let (w, h) = v.display();
    let square = v.sar.numerator() <= 0
        || v.sar.numerator() == v.sar.denominator()
        || v.sar.denominator() <= 0;
    spec.remux
        && v.codec == "h264"
        && v.pix_fmt == Pixel::YUV420P
        && v.rotation == 0
        && v.hdr.is_none()
        && square
        && fit(w, h, spec.short_side, spec.long_side) == (w, h)
        && probe.audio.as_ref().is_none_or(|a| a.codec == "aac")
}

/// Copies the video (and AAC audio) packets of `input` into an MP4 at `out`.
pub fn run(
    input: &Path,
    probe: &Probe,
    v: &VideoStream,
    out: &Path,
    control: &Control,
) -> Result<(), MediaError> {
    let mut ictx = crate::av::open_input(input).map_err(corrupt("the file does not open"))?;
    let audio = probe.audio.as_ref().map(|a| a.index);
    let mut mux = Muxer::create(out, Kind::Mp4)?;
    let mut bases = vec![ffmpeg::Rational(1, 1); ictx.nb_streams() as usize];
    for s in ictx.streams() {
        bases[s.index()] = s.time_base();
        if s.index() == v.index {
            mux.add_copy(s.parameters(), s.time_base(), true)?;
        } else if Some(s.index()) == audio {
            mux.add_copy(s.parameters(), s.time_base(), false)?;
        }
    }
    mux.start()?;
    let total = probe.duration.max(1e-3);
    let mut copied = 0u64;
    loop {
        control.check()?;
        let mut pkt = Packet::empty();
        match pkt.read(&mut ictx) {
            Ok(()) => {}
            Err(ffmpeg::Error::Eof) => break,
            Err(ffmpeg::Error::InvalidData) => continue,
            Err(_) => break,
        }
        let i = pkt.stream();
        if i == v.index {
            if let Some(pts) = pkt.pts() {
                control.progress(crate::av::seconds(pts, bases[i]) / total);
            }
            mux.write(&pkt, bases[i], true)?;
            copied += 1;
        } else if Some(i) == audio {
            mux.write(&pkt, bases[i], false)?;
        }
    }
    if copied == 0 {
        return Err(MediaError::new(
            mediafleet_proto::ErrorCode::CorruptMedia,
            "the video stream has no packets",
        ));
    }
    mux.finish()
}
