//! Audio decode → filter → AAC encode, shared by `audio.m4a`, `mp4-720` and the HLS ladder (one AAC encode
//! feeds every muxer that wants audio), with an optional mono tap for waveform peaks.

use ffmpeg::{frame, Packet, Rational};
use ffmpeg_next as ffmpeg;

use super::peaks::Peaks;
use crate::av::encode::{aac, aac_rate};
use crate::av::graph::{self, AudioOut, Graph};
use crate::av::mux::Muxer;
use crate::av::probe::AudioStream;
use crate::av::{corrupt, failed};
use crate::MediaError;

/// One audio stream on its way to AAC (and peaks).
pub struct AacChain {
    /// The input stream index this chain takes packets from.
    pub index: usize,
    dec: ffmpeg::decoder::Audio,
    graph: Graph,
    enc: Option<ffmpeg::encoder::Audio>,
    peaks: Option<Peaks>,
    decoded: frame::Audio,
    filtered: frame::Audio,
    /// Samples fed to the encoder so far (its timestamps).
    samples: i64,
    /// Decoded frames so far.
    pub frames: u64,
}

impl AacChain {
    /// Opens the decoder, the graph and (when `bitrate` is set) the AAC encoder for `a`.
    pub fn new(
        stream: &ffmpeg::format::stream::Stream,
        a: &AudioStream,
        bitrate: Option<u32>,
        peaks: Option<Peaks>,
    ) -> Result<Self, MediaError> {
        let ctx = ffmpeg::codec::Context::from_parameters(stream.parameters())
            .map_err(corrupt("the audio stream parameters are invalid"))?;
        let mut dec = ctx.decoder();
        dec.set_packet_time_base(stream.time_base());
        let dec = dec
            .audio()
            .map_err(corrupt("the audio decoder does not open"))?;
        let rate = aac_rate(dec.rate().max(1));
        let channels = if dec.channels() == 1 { 1 } else { 2 };
        let mut outs = Vec::new();
        if bitrate.is_some() {
            outs.push(AudioOut::Aac { rate, channels });
        }
        if peaks.is_some() {
            outs.push(AudioOut::Mono);
        }
        let mut graph = graph::audio(a, &dec, &outs)?;
        let enc = match bitrate {
            Some(b) => {
                let enc = aac(rate, channels, b, true)?;
                graph.set_frame_size(0, enc.frame_size().max(1));
                Some(enc)
            }
            None => None,
        };
        Ok(AacChain {
            index: a.index,
            dec,
            graph,
            enc,
            peaks,
            decoded: frame::Audio::empty(),
            filtered: frame::Audio::empty(),
            samples: 0,
            frames: 0,
        })
    }

    /// The AAC encoder (to add its stream to muxers).
    pub fn encoder(&self) -> Option<&ffmpeg::encoder::Audio> {
        self.enc.as_ref()
    }

    /// Feeds one packet and writes whatever AAC it yields to `muxers`. Undecodable packets are skipped, as
    /// the CLI does; a stream where nothing decodes ends with `frames == 0`.
    pub fn packet(&mut self, pkt: &Packet, muxers: &mut [Muxer]) -> Result<(), MediaError> {
        if self.dec.send_packet(pkt).is_err() {
            return Ok(());
        }
        self.pump(muxers)
    }

    /// Drains decoder, graph and encoder at the end of the input.
    pub fn finish(&mut self, muxers: &mut [Muxer]) -> Result<(), MediaError> {
        let _ = self.dec.send_eof();
        self.pump(muxers)?;
        self.graph.push(None)?;
        self.drain_graph(muxers)?;
        if let Some(enc) = &mut self.enc {
            enc.send_eof().map_err(failed("aac flush"))?;
        }
        self.drain_encoder(muxers)
    }

    /// The peaks, once finished.
    pub fn take_peaks(&mut self) -> Option<Peaks> {
        self.peaks.take()
    }

    /// Seconds of audio encoded (or seen, without an encoder).
    pub fn seconds(&self) -> f64 {
        match &self.enc {
            Some(e) => self.samples as f64 / f64::from(e.rate().max(1)),
            None => self.peaks.as_ref().map_or(0.0, |p| p.seconds()),
        }
    }

    fn pump(&mut self, muxers: &mut [Muxer]) -> Result<(), MediaError> {
        while self.dec.receive_frame(&mut self.decoded).is_ok() {
            self.frames += 1;
            let ts = self.decoded.timestamp();
            self.decoded.set_pts(ts);
            self.graph.push(Some(&self.decoded))?;
            self.drain_graph(muxers)?;
        }
        Ok(())
    }

    fn drain_graph(&mut self, muxers: &mut [Muxer]) -> Result<(), MediaError> {
        let peaks_sink = usize::from(self.enc.is_some());
        if self.peaks.is_some() {
            while self.graph.pull(peaks_sink, &mut self.filtered)? {
                if let Some(p) = &mut self.peaks {
                    p.push(self.filtered.plane::<f32>(0));
                }
            }
        }
        if self.enc.is_none() {
            return Ok(());
        }
        while self.graph.pull(0, &mut self.filtered)? {
            // AAC timestamps count samples: gaps and jitter in the source's timestamps are not carried over.
            self.filtered.set_pts(Some(self.samples));
            self.samples += self.filtered.samples() as i64;
            if let Some(enc) = &mut self.enc {
                enc.send_frame(&self.filtered)
                    .map_err(failed("aac encode"))?;
            }
            self.drain_encoder(muxers)?;
        }
        Ok(())
    }

    fn drain_encoder(&mut self, muxers: &mut [Muxer]) -> Result<(), MediaError> {
        let Some(enc) = &mut self.enc else {
            return Ok(());
        };
        let tb: Rational = enc.time_base();
        let mut pkt = Packet::empty();
        while enc.receive_packet(&mut pkt).is_ok() {
            for m in muxers.iter_mut().filter(|m| m.has_audio()) {
                m.write(&pkt, tb, false)?;
            }
        }
        Ok(())
    }
}
