//! The poster: one frame near `at` (10 %) of the duration. The demuxer seeks to the keyframe at or before
//! that time, and frames are decoded forward to it, so a poster in a 2-hour film costs one GOP of decoding,
//! not an hour. The frame goes through the same rotation and tone-mapping chain as the video renditions.

use std::path::Path;

use ffmpeg::{frame, Packet};
use ffmpeg_next as ffmpeg;
use image::RgbImage;
use mediafleet_proto::{ErrorCode, PosterSpec};

use super::size::fit_box;
use crate::av::probe::{Probe, VideoStream};
use crate::av::{auto_threads, corrupt, graph, seconds};
use crate::{Control, MediaError};

/// Decodes the poster frame as RGB, rotated, tone-mapped and fitted into `spec.max_side`.
pub fn grab(
    input: &Path,
    probe: &Probe,
    v: &VideoStream,
    spec: &PosterSpec,
    control: &Control,
) -> Result<RgbImage, MediaError> {
    let mut ictx = crate::av::open_input(input).map_err(corrupt("the file does not open"))?;
    let target = probe.start + probe.duration.max(0.0) * spec.at.clamp(0.0, 1.0);
    let ist = ictx
        .stream(v.index)
        .ok_or_else(|| crate::av::internal("the video stream vanished"))?;
    let tb = ist.time_base();
    let mut ctx = ffmpeg::codec::Context::from_parameters(ist.parameters())
        .map_err(corrupt("the video stream parameters are invalid"))?;
    auto_threads(&mut ctx);
    let mut dec = ctx.decoder();
    dec.set_packet_time_base(tb);
    let mut dec = dec
        .video()
        .map_err(corrupt("the video decoder does not open"))?;
    if target > 0.0 {
        let ts = (target * f64::from(ffmpeg::ffi::AV_TIME_BASE)) as i64;
        // Not seekable (or a broken index): decode from the start instead.
        if ictx.seek(ts, ..ts).is_err() {
            let _ = ictx.seek(0, ..0);
        }
    }
    // Half a frame of slack: the frame shown at `target` is the one that starts just before it.
    let slack = if v.fps > 0.0 { 0.5 / v.fps } else { 0.02 };
    let mut picked: Option<frame::Video> = None;
    let mut f = frame::Video::empty();
    let mut done = false;
    while !done {
        control.check()?;
        let mut pkt = Packet::empty();
        match pkt.read(&mut ictx) {
            Ok(()) => {}
            Err(ffmpeg::Error::InvalidData) => continue,
            Err(_) => break,
        }
        if pkt.stream() != v.index {
            continue;
        }
        let _ = dec.send_packet(&pkt);
        while dec.receive_frame(&mut f).is_ok() {
            let t = f.timestamp().map(|ts| seconds(ts, tb)).unwrap_or(target);
            let reached = t + slack >= target;
            picked = Some(std::mem::replace(&mut f, frame::Video::empty()));
            if reached {
                done = true;
                break;
            }
        }
    }
    if !done {
        let _ = dec.send_eof();
        while dec.receive_frame(&mut f).is_ok() {
            picked = Some(std::mem::replace(&mut f, frame::Video::empty()));
        }
    }
    let mut frame = picked
        .ok_or_else(|| MediaError::new(ErrorCode::CorruptMedia, "no frame of the video decodes"))?;
    let (w, h) = v.display();
    let size = fit_box(w, h, spec.max_side, spec.max_side, false);
    let mut g = graph::still(v, tb, size)?;
    let ts = frame.timestamp();
    frame.set_pts(ts);
    g.push(Some(&frame))?;
    g.push(None)?;
    let mut rgb = frame::Video::empty();
    if !g.pull(0, &mut rgb)? {
        return Err(crate::av::internal("the poster filter gave no picture"));
    }
    to_image(&rgb)
}

fn to_image(rgb: &frame::Video) -> Result<RgbImage, MediaError> {
    let (w, h) = (rgb.width(), rgb.height());
    let stride = rgb.stride(0);
    let data = rgb.data(0);
    let row = w as usize * 3;
    let mut packed = Vec::with_capacity(row * h as usize);
    for y in 0..h as usize {
        packed.extend_from_slice(&data[y * stride..y * stride + row]);
    }
    RgbImage::from_raw(w, h, packed)
        .ok_or_else(|| crate::av::internal("the poster frame has the wrong size"))
}
