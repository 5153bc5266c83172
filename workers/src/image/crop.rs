//! Where a `cover` rendition's window goes: the centre, the most detailed part (`entropy`) or the part that
//! draws the eye (`attention`), after libvips' smartcrop.
//!
//! The window's size is fixed by [`super::resize::plan`]; only its position along the axis being cropped is
//! chosen. Scoring runs on a copy of at most 128 px per side, so it costs well under a millisecond per
//! candidate position and nothing at all for `centre`.

use image::{DynamicImage, Rgb};
use mediafleet_proto::Crop;

/// Side of the scoring copy.
const SCORE_SIDE: u32 = 128;

/// The crop fractions `[left, top, width, height]` for a window of `cw`×`ch` (fractions of the frame) on
/// `img`, positioned by `mode`.
pub fn place(img: &DynamicImage, cw: f64, ch: f64, mode: Crop) -> [f64; 4] {
    let centre = [(1.0 - cw) / 2.0, (1.0 - ch) / 2.0, cw, ch];
    if mode == Crop::Centre || (cw >= 1.0 && ch >= 1.0) {
        return centre;
    }
    let small = img.thumbnail(SCORE_SIDE, SCORE_SIDE).to_rgb8();
    let (w, h) = small.dimensions();
    if w < 2 || h < 2 {
        return centre;
    }
    let score: Vec<f64> = match mode {
        Crop::Attention => attention(&small),
        _ => Vec::new(),
    };
    // Slide along the cropped axis (the other is full) in 1 px steps of the scoring copy.
    let horizontal = cw < 1.0;
    let (len, win) = if horizontal {
        (w, ((cw * f64::from(w)).round() as u32).clamp(1, w))
    } else {
        (h, ((ch * f64::from(h)).round() as u32).clamp(1, h))
    };
    let mut best = (f64::MIN, (len - win) / 2);
    for pos in 0..=(len - win) {
        let (x0, y0, x1, y1) = if horizontal {
            (pos, 0, pos + win, h)
        } else {
            (0, pos, w, pos + win)
        };
        let s = match mode {
            Crop::Attention => window_sum(&score, w, x0, y0, x1, y1),
            _ => entropy(&small, x0, y0, x1, y1),
        };
        // Prefer the position nearer the centre on (near) ties.
        let off_centre = (f64::from(pos) - f64::from(len - win) / 2.0).abs() * 1e-9;
        if s - off_centre > best.0 {
            best = (s - off_centre, pos);
        }
    }
    let start = f64::from(best.1) / f64::from(len);
    if horizontal {
        [start.min(1.0 - cw), 0.0, cw, ch]
    } else {
        [0.0, start.min(1.0 - ch), cw, ch]
    }
}

fn luma(p: &Rgb<u8>) -> f64 {
    let [r, g, b] = p.0;
    0.299 * f64::from(r) + 0.587 * f64::from(g) + 0.114 * f64::from(b)
}

/// Shannon entropy of the window's luma histogram.
fn entropy(img: &image::RgbImage, x0: u32, y0: u32, x1: u32, y1: u32) -> f64 {
    let mut hist = [0u32; 256];
    for y in y0..y1 {
        for x in x0..x1 {
            hist[luma(img.get_pixel(x, y)).min(255.0) as usize] += 1;
        }
    }
    let n = f64::from((x1 - x0) * (y1 - y0));
    hist.iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum()
}

/// Per-pixel interest: edges (Laplacian of luma), saturation and skin-like hues, as in libvips' `attention`.
fn attention(img: &image::RgbImage) -> Vec<f64> {
    let (w, h) = img.dimensions();
    let l = |x: u32, y: u32| luma(img.get_pixel(x.min(w - 1), y.min(h - 1)));
    let mut out = Vec::with_capacity((w * h) as usize);
    for y in 0..h {
        for x in 0..w {
            let c = l(x, y);
            let edge = (4.0 * c
                - l(x.saturating_sub(1), y)
                - l(x + 1, y)
                - l(x, y.saturating_sub(1))
                - l(x, y + 1))
            .abs();
            let [r, g, b] = img.get_pixel(x, y).0.map(f64::from);
            let (max, min) = (r.max(g).max(b), r.min(g).min(b));
            let saturation = if max > 0.0 { (max - min) / max } else { 0.0 };
            let skin = r > 95.0 && g > 40.0 && b > 20.0 && r > g && r > b && (r - g) > 15.0;
            out.push(edge + 60.0 * saturation + if skin { 80.0 } else { 0.0 });
        }
    }
    out
}

fn window_sum(score: &[f64], w: u32, x0: u32, y0: u32, x1: u32, y1: u32) -> f64 {
    (y0..y1)
        .map(|y| {
            let row = (y * w) as usize;
            score[row + x0 as usize..row + x1 as usize]
                .iter()
                .sum::<f64>()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A flat grey frame with one busy, saturated square on the right.
    fn busy_right() -> DynamicImage {
        let mut img = image::RgbImage::from_pixel(400, 200, Rgb([128, 128, 128]));
        for y in 40..160 {
            for x in 300..390 {
                let v = if (x / 4 + y / 4) % 2 == 0 { 250 } else { 10 };
                img.put_pixel(x, y, Rgb([v, 40, 255 - v]));
            }
        }
        DynamicImage::ImageRgb8(img)
    }

    #[test]
    fn smart_crops_find_the_detail() {
        let img = busy_right();
        assert_eq!(place(&img, 0.5, 1.0, Crop::Centre)[0], 0.25);
        for mode in [Crop::Entropy, Crop::Attention] {
            let [l, t, cw, _] = place(&img, 0.5, 1.0, mode);
            assert!(l + cw > 0.97 && l >= 0.45, "{mode:?}: left {l}");
            assert_eq!(t, 0.0);
        }
    }
}
