//! Content sniffing: any leading bytes give an answer without a panic, the answer is self-consistent, and it
//! depends only on the first `SNIFF_LEN` bytes (the api sniffs a longer head than the worker does, and both
//! must reach the same verdict).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mediafleet_proto::MediaKind;
use mediafleet_workers::needs_ffmpeg;
use mediafleet_workers::sniff::{sniff, SNIFF_LEN};

fuzz_target!(|data: &[u8]| {
    let verdict = sniff(data);
    if let Some(s) = verdict {
        assert!(!s.format.is_empty());
        let family = match s.kind {
            MediaKind::Image => "image/",
            MediaKind::Video => "video/",
            MediaKind::Audio => "audio/",
        };
        assert!(
            s.mime.starts_with(family),
            "{:?} has mime {} for kind {:?}",
            s.format,
            s.mime,
            s.kind
        );
        // The lean image child never gets work that needs FFmpeg, and images other than AVIF never need it.
        assert_eq!(
            needs_ffmpeg(&s),
            s.kind != MediaKind::Image || s.format == "avif"
        );
    }
    if data.len() > SNIFF_LEN {
        let head = sniff(&data[..SNIFF_LEN]);
        assert_eq!(
            head,
            verdict,
            "the verdict on the first {SNIFF_LEN} bytes differs from the verdict on {} bytes",
            data.len()
        );
    }
});
