//! The entry point of media work.

use std::path::Path;

use mediafleet_proto::Profile;

use crate::{Limits, Report};

/// Turns `input` into the renditions of `profile`, written into `out_dir`. Never panics on bad input: every
/// failure is a `failed` report with a code.
pub fn process(input: &Path, profile: &Profile, limits: &Limits, out_dir: &Path) -> Report {
    let _ = (input, profile, limits, out_dir);
    Report::failed(
        None,
        crate::MediaError::new(mediafleet_proto::ErrorCode::Internal, "being written"),
    )
}
