//! Waveform peaks: min/max pairs over the whole duration, in the audiowaveform JSON layout that peaks.js and
//! wavesurfer.js read (`{"version":2,"channels":1,"sample_rate","samples_per_pixel","bits":8,"length","data"}`).
//!
//! Samples arrive as a stream of unknown length (headers lie, VBR MP3s have none), so min/max are first kept per
//! block of samples; when the block list grows past a cap, neighbours are merged and the block size doubles.
//! At the end the blocks are grouped into the wanted number of buckets. Memory stays bounded for a 4-hour file.

use serde_json::json;

/// Most blocks kept before neighbours are merged.
const MAX_BLOCKS: usize = 1 << 16;

/// The running min/max accumulator.
#[derive(Debug, Clone)]
pub struct Peaks {
    sample_rate: u32,
    block: u64,
    filled: u64,
    current: (f32, f32),
    blocks: Vec<(f32, f32)>,
    total: u64,
}

impl Peaks {
    /// An accumulator for mono samples at `sample_rate`.
    pub fn new(sample_rate: u32) -> Self {
        Peaks {
            sample_rate: sample_rate.max(1),
            block: 16,
            filled: 0,
            current: (0.0, 0.0),
            blocks: Vec::new(),
            total: 0,
        }
    }

    /// Adds mono float samples.
    pub fn push(&mut self, samples: &[f32]) {
        for &s in samples {
            let s = if s.is_finite() {
                s.clamp(-1.0, 1.0)
            } else {
                0.0
            };
            if self.filled == 0 {
                self.current = (s, s);
            } else {
                self.current = (self.current.0.min(s), self.current.1.max(s));
            }
            self.filled += 1;
            self.total += 1;
            if self.filled == self.block {
                self.close_block();
            }
        }
    }

    /// Seconds of audio seen.
    pub fn seconds(&self) -> f64 {
        self.total as f64 / f64::from(self.sample_rate)
    }

    fn close_block(&mut self) {
        self.blocks.push(self.current);
        self.filled = 0;
        if self.blocks.len() >= MAX_BLOCKS {
            self.blocks = self
                .blocks
                .chunks(2)
                .map(|c| c.iter().fold(c[0], |a, b| (a.0.min(b.0), a.1.max(b.1))))
                .collect();
            self.block *= 2;
        }
    }

    /// The JSON document with `buckets` min/max pairs (fewer for very short audio), 8-bit values.
    pub fn finish(mut self, buckets: u32) -> serde_json::Value {
        if self.filled > 0 {
            self.blocks.push(self.current);
        }
        let n = self.blocks.len();
        let length = (buckets as usize).min(n).max(usize::from(n > 0));
        let mut data = Vec::with_capacity(2 * length);
        for i in 0..length {
            let (a, b) = (
                i * n / length,
                ((i + 1) * n / length).max(i * n / length + 1),
            );
            let (lo, hi) = self.blocks[a..b.min(n)]
                .iter()
                .fold((f32::MAX, f32::MIN), |acc, x| {
                    (acc.0.min(x.0), acc.1.max(x.1))
                });
            data.push((lo * 127.0).round() as i32);
            data.push((hi * 127.0).round() as i32);
        }
        let per_pixel = if length > 0 {
            self.total.div_ceil(length as u64)
        } else {
            0
        };
        json!({
            "version": 2,
            "channels": 1,
            "sample_rate": self.sample_rate,
            "samples_per_pixel": per_pixel,
            "bits": 8,
            "length": length,
            "duration_seconds": (self.seconds() * 1000.0).round() / 1000.0,
            "data": data,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_follow_the_envelope_and_memory_stays_bounded() {
        let mut p = Peaks::new(8000);
        // 200 s of a ramp from silence to full scale: far more blocks than the cap.
        let n = 8000 * 200;
        let samples: Vec<f32> = (0..n)
            .map(|i| (i as f32 / n as f32) * if i % 2 == 0 { 1.0 } else { -1.0 })
            .collect();
        p.push(&samples);
        assert!(p.blocks.len() < MAX_BLOCKS);
        let doc = p.finish(1000);
        assert_eq!(doc["length"], 1000);
        let data = doc["data"].as_array().unwrap();
        assert_eq!(data.len(), 2000);
        let first_max = data[1].as_i64().unwrap();
        let last_max = data[1999].as_i64().unwrap();
        assert!(first_max <= 1 && last_max >= 126, "{first_max} {last_max}");
        assert_eq!(doc["duration_seconds"], 200.0);
    }

    #[test]
    fn short_audio_gives_fewer_buckets() {
        let mut p = Peaks::new(8000);
        p.push(&[0.5; 100]);
        let doc = p.finish(1000);
        assert!(doc["length"].as_u64().unwrap() <= 1000);
        assert_eq!(Peaks::new(1).finish(1000)["length"], 0);
    }
}
