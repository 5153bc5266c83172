//! Output sizes: fit a box, never upscale, keep the aspect ratio, even dimensions for 4:2:0.

/// Fits `(w, h)` (display size) into a box whose short side is `short` and long side is `long`, oriented like
/// the source (a portrait phone clip fits 720×1280, not 1280×720). Never upscales. Both sides come out even
/// and at least 2, as yuv420p needs.
pub fn fit(w: u32, h: u32, short: u32, long: u32) -> (u32, u32) {
    let (bw, bh) = if w >= h { (long, short) } else { (short, long) };
    fit_box(w, h, bw, bh, true)
}

/// Fits `(w, h)` inside `bw × bh`, never upscaling; `even` rounds both sides to the nearest even number that
/// stays inside the source and the box (1920×1080 into 854×480 gives 854×480, as `scale=-2:480` does).
pub fn fit_box(w: u32, h: u32, bw: u32, bh: u32, even: bool) -> (u32, u32) {
    let (w, h) = (w.max(1), h.max(1));
    let scale = (f64::from(bw) / f64::from(w))
        .min(f64::from(bh) / f64::from(h))
        .min(1.0);
    let side = |x: u32, limit: u32| {
        let exact = f64::from(x) * scale;
        if !even {
            return (exact.round() as u32).clamp(1, limit.max(1));
        }
        let mut v = 2 * (exact / 2.0).round() as u32;
        if v > x.min(limit) {
            v -= 2;
        }
        v.max(2)
    };
    (side(w, bw), side(h, bh))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boxes_follow_orientation_and_never_upscale() {
        assert_eq!(fit(1920, 1080, 720, 1280), (1280, 720));
        assert_eq!(fit(1080, 1920, 720, 1280), (720, 1280));
        assert_eq!(fit(640, 360, 720, 1280), (640, 360));
        assert_eq!(fit(321, 241, 720, 1280), (320, 240));
        assert_eq!(fit(3840, 1600, 720, 1280), (1280, 534));
        assert_eq!(fit(1920, 1080, 480, 854), (854, 480));
        assert_eq!(fit(1, 1, 720, 1280), (2, 2));
    }
}
