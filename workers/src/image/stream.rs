//! Streaming Lanczos3 downscale of 8-bit RGB: rows go in top to bottom as the decoder produces them, and only a
//! window of horizontally resampled rows (as wide as the output) is ever held, never the whole source frame.
//!
//! Separable, like every Lanczos resampler: each input row is first resampled horizontally into a ring buffer of
//! `f32` rows; an output row is made by the vertical pass as soon as the last input row it needs has arrived.
//! In linear light, the input is decoded from sRGB through a table before the horizontal pass and encoded back
//! after the vertical one, so the whole resample happens on linear values (as `resize::Scaler` does).

use image::RgbImage;

/// Lanczos3 support in source pixels at scale 1.
const SUPPORT: f64 = 3.0;
/// Entries of the linear → sRGB table (14 bits: finer than one 8-bit step everywhere on the curve).
const ENCODE_STEPS: usize = 1 << 14;

/// Filter taps of one axis: for output `i`, `len[i]` weights starting at input `start[i]`, stored at
/// `coeffs[i * stride..]`.
struct Taps {
    start: Vec<usize>,
    len: Vec<usize>,
    stride: usize,
    coeffs: Vec<f32>,
}

impl Taps {
    /// Taps resampling `input` samples to `output` (Pillow's formulation: centres at `(i + 0.5) · scale`, the
    /// kernel widened by the scale when shrinking, weights normalised to sum 1).
    fn new(input: usize, output: usize) -> Self {
        let scale = input as f64 / output as f64;
        let filter_scale = scale.max(1.0);
        let support = SUPPORT * filter_scale;
        let stride = (support.ceil() as usize) * 2 + 1;
        let mut taps = Taps {
            start: Vec::with_capacity(output),
            len: Vec::with_capacity(output),
            stride,
            coeffs: vec![0.0; output * stride],
        };
        for i in 0..output {
            let centre = (i as f64 + 0.5) * scale;
            let lo = ((centre - support + 0.5).floor().max(0.0)) as usize;
            let hi = ((centre + support + 0.5).floor() as usize)
                .min(input)
                .max(lo + 1);
            let n = (hi - lo).min(stride);
            let w = &mut taps.coeffs[i * stride..i * stride + n];
            let mut sum = 0.0;
            for (k, c) in w.iter_mut().enumerate() {
                let v = lanczos3(((lo + k) as f64 - centre + 0.5) / filter_scale);
                *c = v as f32;
                sum += v;
            }
            if sum != 0.0 {
                for c in w.iter_mut() {
                    *c = (f64::from(*c) / sum) as f32;
                }
            }
            taps.start.push(lo);
            taps.len.push(n);
        }
        taps
    }

    fn weights(&self, i: usize) -> &[f32] {
        &self.coeffs[i * self.stride..i * self.stride + self.len[i]]
    }

    /// The widest window.
    fn max_len(&self) -> usize {
        self.len.iter().copied().max().unwrap_or(1)
    }
}

fn lanczos3(x: f64) -> f64 {
    fn sinc(x: f64) -> f64 {
        if x == 0.0 {
            1.0
        } else {
            let px = std::f64::consts::PI * x;
            px.sin() / px
        }
    }
    if x.abs() < SUPPORT {
        sinc(x) * sinc(x / SUPPORT)
    } else {
        0.0
    }
}

/// A streaming `in_w`×`in_h` → `out_w`×`out_h` RGB resampler. Feed every input row in order with
/// [`Shrinker::push`], then take the image with [`Shrinker::finish`].
pub struct Shrinker {
    in_w: usize,
    in_h: usize,
    out_w: usize,
    horizontal: Taps,
    vertical: Taps,
    /// u8 → working value (sRGB decode in linear light, `v / 255` otherwise).
    decode: [f32; 256],
    /// Working value → u8, in linear light.
    encode: Option<Vec<u8>>,
    /// The current input row in working values.
    row: Vec<f32>,
    /// Horizontally resampled rows, input row `y` at slot `y % slots`.
    ring: Vec<f32>,
    slots: usize,
    acc: Vec<f32>,
    next_in: usize,
    next_out: usize,
    out: RgbImage,
}

impl Shrinker {
    /// A resampler from `in_w`×`in_h` to `out_w`×`out_h` (every side ≥ 1), in linear light when `linear`.
    pub fn new(in_w: u32, in_h: u32, out_w: u32, out_h: u32, linear: bool) -> Self {
        let (iw, ih, ow, oh) = (in_w as usize, in_h as usize, out_w as usize, out_h as usize);
        let horizontal = Taps::new(iw.max(1), ow.max(1));
        let vertical = Taps::new(ih.max(1), oh.max(1));
        let slots = vertical.max_len() + 1;
        let mut decode = [0f32; 256];
        for (v, d) in decode.iter_mut().enumerate() {
            let s = v as f64 / 255.0;
            *d = if linear { srgb_to_linear(s) } else { s } as f32;
        }
        let encode = linear.then(|| {
            (0..ENCODE_STEPS)
                .map(|i| {
                    let l = i as f64 / (ENCODE_STEPS - 1) as f64;
                    (linear_to_srgb(l) * 255.0).round().clamp(0.0, 255.0) as u8
                })
                .collect()
        });
        Shrinker {
            in_w: iw,
            in_h: ih,
            out_w: ow,
            horizontal,
            vertical,
            decode,
            encode,
            row: vec![0.0; iw * 3],
            ring: vec![0.0; slots * ow * 3],
            slots,
            acc: vec![0.0; ow * 3],
            next_in: 0,
            next_out: 0,
            out: RgbImage::new(out_w.max(1), out_h.max(1)),
        }
    }

    /// Adds the next input row (`in_w × 3` bytes of RGB).
    pub fn push(&mut self, rgb: &[u8]) {
        if self.next_in >= self.in_h {
            return;
        }
        for (d, &s) in self.row.iter_mut().zip(rgb) {
            *d = self.decode[usize::from(s)];
        }
        let width = self.out_w * 3;
        let slot = self.next_in % self.slots;
        let dst = &mut self.ring[slot * width..(slot + 1) * width];
        for (x, px) in dst.chunks_exact_mut(3).enumerate() {
            let src = &self.row[self.horizontal.start[x] * 3..];
            let (mut r, mut g, mut b) = (0f32, 0f32, 0f32);
            for (&w, p) in self.horizontal.weights(x).iter().zip(src.chunks_exact(3)) {
                r += w * p[0];
                g += w * p[1];
                b += w * p[2];
            }
            px.copy_from_slice(&[r, g, b]);
        }
        self.next_in += 1;
        while self.next_out < self.vertical.start.len()
            && self.vertical.start[self.next_out] + self.vertical.len[self.next_out] <= self.next_in
        {
            self.emit();
        }
    }

    /// Makes output row `next_out` from the ring.
    fn emit(&mut self) {
        let y = self.next_out;
        let width = self.out_w * 3;
        self.acc.fill(0.0);
        let start = self.vertical.start[y];
        for (k, &w) in self.vertical.weights(y).iter().enumerate() {
            let slot = (start + k) % self.slots;
            let src = &self.ring[slot * width..(slot + 1) * width];
            for (a, &s) in self.acc.iter_mut().zip(src) {
                *a += w * s;
            }
        }
        let out: &mut [u8] = &mut self.out;
        let row = &mut out[y * width..(y + 1) * width];
        match &self.encode {
            Some(table) => {
                let top = (ENCODE_STEPS - 1) as f32;
                for (d, &a) in row.iter_mut().zip(&self.acc) {
                    *d = table[(a.clamp(0.0, 1.0) * top + 0.5) as usize];
                }
            }
            None => {
                for (d, &a) in row.iter_mut().zip(&self.acc) {
                    *d = (a * 255.0 + 0.5).clamp(0.0, 255.0) as u8;
                }
            }
        }
        self.next_out += 1;
    }

    /// The input width in pixels.
    pub fn input_width(&self) -> usize {
        self.in_w
    }

    /// The output, once every input row was pushed (rows not yet made stay black).
    pub fn finish(self) -> RgbImage {
        self.out
    }
}

fn srgb_to_linear(s: f64) -> f64 {
    if s <= 0.040_45 {
        s / 12.92
    } else {
        ((s + 0.055) / 1.055).powf(2.4)
    }
}

fn linear_to_srgb(l: f64) -> f64 {
    if l <= 0.003_130_8 {
        l * 12.92
    } else {
        1.055 * l.powf(1.0 / 2.4) - 0.055
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shrink(img: &RgbImage, w: u32, h: u32, linear: bool) -> RgbImage {
        let mut s = Shrinker::new(img.width(), img.height(), w, h, linear);
        for row in img.as_raw().chunks_exact(img.width() as usize * 3) {
            s.push(row);
        }
        s.finish()
    }

    #[test]
    fn flat_colour_stays_flat() {
        let img = RgbImage::from_pixel(301, 97, image::Rgb([9, 130, 250]));
        for linear in [false, true] {
            let out = shrink(&img, 40, 13, linear);
            assert_eq!(out.dimensions(), (40, 13));
            assert!(
                out.pixels().all(|p| p.0 == [9, 130, 250]),
                "linear={linear}"
            );
        }
    }

    #[test]
    fn linear_light_keeps_fine_bright_detail_bright() {
        // One-pixel black and white stripes: gamma-space averaging gives ~128, linear light ~188.
        let img = RgbImage::from_fn(400, 40, |x, _| image::Rgb([(x % 2 * 255) as u8; 3]));
        let gamma = shrink(&img, 50, 5, false).get_pixel(25, 2).0[0];
        let linear = shrink(&img, 50, 5, true).get_pixel(25, 2).0[0];
        assert!((120..=136).contains(&gamma), "{gamma}");
        assert!((180..=196).contains(&linear), "{linear}");
    }

    #[test]
    fn matches_fast_image_resize_closely() {
        use crate::image::resize::{Scaler, Target};
        let img = RgbImage::from_fn(640, 480, |x, y| {
            image::Rgb([(x % 256) as u8, (y % 256) as u8, ((x * y) % 251) as u8])
        });
        let ours = shrink(&img, 160, 120, false);
        let target = Target {
            width: 160,
            height: 120,
            crop: [0.0, 0.0, 1.0, 1.0],
            linear: Some(false),
        };
        let theirs = Scaler::new()
            .resize(&image::DynamicImage::ImageRgb8(img), &target)
            .unwrap()
            .into_rgb8();
        let diffs: Vec<u8> = ours
            .as_raw()
            .iter()
            .zip(theirs.as_raw())
            .map(|(a, b)| a.abs_diff(*b))
            .collect();
        // fast_image_resize works in fixed point on 8-bit input; the sharpest (x·y mod 251) edges differ by a few.
        let worst = diffs.iter().copied().max().unwrap();
        let mean = diffs.iter().map(|&d| f64::from(d)).sum::<f64>() / diffs.len() as f64;
        assert!(
            worst <= 4 && mean < 0.5,
            "max difference {worst}, mean {mean}"
        );
    }
}
