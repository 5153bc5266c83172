//! The one routing table: which job class (queue) a job goes to, as a function of its kind, its stage and the
//! media's kind. Every producer calls [`class_for`]; the worker records the class it took a job from with the
//! job's attempt, so nothing has to invert this table (the scaler counts open attempts by that class).

use mediafleet_proto::{JobKind, Lane, MediaKind, Stage};

/// The class of a job. `media` is the kind of the media the job is about, where the producer knows it.
///
/// - `media.process`: images on `image`; a video's short `poster` stage on `image` and its long `transcode`
///   stage on `video`; audio (one stage) on `video`.
/// - `media.validate` (a direct upload's check) on `image`; `cache.warm` on `cache`; `notify.webhook` on
///   `notify`.
pub fn class_for(kind: JobKind, stage: Option<Stage>, media: Option<MediaKind>) -> &'static str {
    match (kind, stage, media) {
        (JobKind::MediaProcess, Some(Stage::Transcode), _) => "video",
        (JobKind::MediaProcess, Some(Stage::Poster), _) => "image",
        (JobKind::MediaProcess, None, Some(MediaKind::Audio)) => "video",
        (JobKind::MediaProcess, None, _) => "image",
        (JobKind::MediaValidate, ..) => "image",
        (JobKind::CacheWarm, ..) => "cache",
        (JobKind::NotifyWebhook, ..) => "notify",
    }
}

/// The queue of a job in `lane`: the class itself for live work, its bulk lane (`image-bulk`) for bulk work.
pub fn queue_for(
    kind: JobKind,
    stage: Option<Stage>,
    media: Option<MediaKind>,
    lane: Lane,
) -> String {
    in_lane(class_for(kind, stage, media), lane)
}

/// `class` in `lane`: `image` → `image` (live) or `image-bulk` (bulk). A class already in its bulk lane
/// stays there.
pub fn in_lane(class: &str, lane: Lane) -> String {
    match lane {
        Lane::Live => class.to_owned(),
        Lane::Bulk if class.ends_with(Lane::BULK_SUFFIX) => class.to_owned(),
        Lane::Bulk => format!("{class}{}", Lane::BULK_SUFFIX),
    }
}

/// The live class and lane of a queue name: `image-bulk` → (`image`, bulk), `image` → (`image`, live).
pub fn lane_of(queue: &str) -> (&str, Lane) {
    match queue.strip_suffix(Lane::BULK_SUFFIX) {
        Some(live) if !live.is_empty() => (live, Lane::Bulk),
        _ => (queue, Lane::Live),
    }
}

/// The class an attempt recorded without its class (a worker older than migration 0005) most likely ran on:
/// the class of the kind's first stage. Exact for every kind but `media.process` of audio and of a video's
/// transcode stage, which the recorded class replaces.
pub fn legacy_class_of_kind(kind: &str) -> &'static str {
    match JobKind::parse(kind) {
        Some(k) => class_for(k, None, None),
        None => "image",
    }
}

/// Every job a producer of this build can enqueue, as (kind, stage, media kind), for tests that check a
/// consumer of the table against it. The match makes a new kind a compile error here until it is listed.
pub fn every_route() -> Vec<(JobKind, Option<Stage>, Option<MediaKind>)> {
    let mut v = Vec::new();
    for kind in [
        JobKind::MediaProcess,
        JobKind::MediaValidate,
        JobKind::CacheWarm,
        JobKind::NotifyWebhook,
    ] {
        match kind {
            JobKind::MediaProcess => {
                v.push((kind, None, Some(MediaKind::Image)));
                v.push((kind, None, Some(MediaKind::Audio)));
                v.push((kind, Some(Stage::Poster), Some(MediaKind::Video)));
                v.push((kind, Some(Stage::Transcode), Some(MediaKind::Video)));
            }
            JobKind::MediaValidate | JobKind::CacheWarm | JobKind::NotifyWebhook => {
                v.push((kind, None, None))
            }
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lanes_round_trip() {
        for (kind, stage, media) in every_route() {
            let live = class_for(kind, stage, media);
            let bulk = queue_for(kind, stage, media, Lane::Bulk);
            assert_eq!(bulk, format!("{live}-bulk"));
            assert_eq!(lane_of(&bulk), (live, Lane::Bulk));
            assert_eq!(lane_of(live), (live, Lane::Live));
            assert_eq!(in_lane(&bulk, Lane::Bulk), bulk, "a bulk queue stays bulk");
            assert_eq!(queue_for(kind, stage, media, Lane::Live), live);
        }
        assert_eq!(lane_of("-bulk"), ("-bulk", Lane::Live));
    }

    #[test]
    fn the_table() {
        let got: Vec<(&str, Option<Stage>, &str)> = every_route()
            .into_iter()
            .map(|(k, s, m)| (k.as_str(), s, class_for(k, s, m)))
            .collect();
        assert_eq!(
            got,
            [
                ("media.process", None, "image"),
                ("media.process", None, "video"),
                ("media.process", Some(Stage::Poster), "image"),
                ("media.process", Some(Stage::Transcode), "video"),
                ("media.validate", None, "image"),
                ("cache.warm", None, "cache"),
                ("notify.webhook", None, "notify"),
            ]
        );
    }
}
