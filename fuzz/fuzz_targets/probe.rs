//! The probe step (libavformat through ffmpeg-next, only the demuxers in `av::DEMUXERS`): any file opens as
//! media or is refused with an error, never a crash or hang; a probe that opens can be checked against the
//! limits and described as metadata.
#![no_main]

use std::path::PathBuf;
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use mediafleet_workers::av::probe;
use mediafleet_workers::Limits;

static INPUT: LazyLock<PathBuf> = LazyLock::new(|| {
    let dir = std::env::temp_dir().join(format!("mediafleet-fuzz-probe-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("fuzz scratch dir");
    dir.join("input")
});

fuzz_target!(|data: &[u8]| {
    std::fs::write(&*INPUT, data).expect("write the fuzz input");
    let Ok((input, probe)) = probe::open(&INPUT) else {
        return;
    };
    assert_eq!(probe.streams, input.nb_streams() as usize);
    assert!(probe.duration >= 0.0);
    let _ = probe.check(&Limits::default());
    let _ = serde_json::Value::Object(probe.metadata()).to_string();
    if let Some(v) = &probe.video {
        assert!(v.index < probe.streams);
        assert!(
            v.rotation % 90 == 0 && v.rotation < 360,
            "rotation {}",
            v.rotation
        );
        let _ = v.display();
    }
    if let Some(a) = &probe.audio {
        assert!(a.index < probe.streams);
    }
});
