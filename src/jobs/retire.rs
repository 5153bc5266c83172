//! Deleting the renditions a reprocess replaced, once the new ones are committed.
//!
//! Keys are content-derived (`storage::keys::rendition`), so a rendition that came out the same keeps its key
//! and is left alone. One whose content changed, or that the new profile no longer makes, is deleted: a
//! single file by its key, a multi-file rendition (`hls`) by its whole version directory (the playlists and
//! every segment). This runs after the DB commit, so no reader is ever pointed at a deleted object by the
//! database; a failure here only leaks objects, and is logged.

use std::collections::HashSet;

use tracing::{info, warn};

use super::JobContext;
use crate::db::RenditionRow;
use crate::storage::keys;

/// Deletes the objects of every rendition in `old` whose key is not among `new`'s.
pub async fn retire_replaced(
    ctx: &JobContext,
    id: &str,
    old: &[RenditionRow],
    new: &[RenditionRow],
) {
    let kept: HashSet<&str> = new.iter().map(|r| r.key.as_str()).collect();
    for r in old.iter().filter(|r| !kept.contains(r.key.as_str())) {
        // The rendition's version directory, and never anything wider: only when the key lies inside it.
        let dir = Some(keys::rendition_dir(&ctx.prefix, id, &r.name, &r.sha256))
            .filter(|d| !r.sha256.is_empty() && r.key.starts_with(d.as_str()));
        let result = match dir {
            Some(dir) => ctx.store.delete_prefix(&dir).await,
            None => ctx.store.delete(&r.key).await,
        };
        match result {
            Ok(()) => {
                info!(media_id = %id, rendition = %r.name, key = %r.key, "replaced rendition deleted")
            }
            Err(e) => warn!(media_id = %id, rendition = %r.name, key = %r.key, error = %e,
                "could not delete a replaced rendition; its objects are left behind"),
        }
    }
}
