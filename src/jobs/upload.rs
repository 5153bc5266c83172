//! Storing a report's renditions under content-derived keys. A single-file rendition is one object; a
//! directory rendition (the `hls` ladder, whose file is `hls/master.m3u8`) is every file under that directory,
//! under one prefix, so `…/renditions/hls/{path}` finds playlists and segments beside the master.

use std::path::Path;

use futures::{StreamExt, TryStreamExt};
use mediafleet_workers::output::{content_type, list_files};
use mediafleet_workers::Rendition;

use super::{JobContext, JobError};
use crate::db::RenditionRow;
use crate::storage::keys;

/// Segment uploads in flight at once.
const PARALLEL_PUTS: usize = 8;

/// Puts every rendition of `renditions` (files in `out_dir`) and returns their rows.
pub async fn store_renditions(
    ctx: &JobContext,
    id: &str,
    renditions: &[Rendition],
    out_dir: &Path,
) -> Result<Vec<RenditionRow>, JobError> {
    let mut rows = Vec::with_capacity(renditions.len());
    for r in renditions {
        let key = keys::rendition(&ctx.prefix, id, &r.name, &r.sha256, &r.file);
        if let Some((dir, main)) = r.file.split_once('/') {
            let prefix = key.strip_suffix(main).unwrap_or(&key).to_owned();
            let root = out_dir.join(dir);
            let files = list_files(&root).map_err(JobError::Permanent)?;
            // The main playlist goes last: once it exists, everything it points at does.
            let (main_files, rest): (Vec<_>, Vec<_>) =
                files.into_iter().partition(|f| f.to_string_lossy() == main);
            futures::stream::iter(rest.into_iter().map(|f| {
                let rel = f.to_string_lossy().into_owned();
                let (key, path) = (format!("{prefix}{rel}"), root.join(&f));
                async move {
                    ctx.store
                        .put_if_absent(&key, &path, content_type(&rel))
                        .await
                        .map_err(JobError::from)
                }
            }))
            .buffer_unordered(PARALLEL_PUTS)
            .try_collect::<Vec<_>>()
            .await?;
            for f in main_files {
                let rel = f.to_string_lossy().into_owned();
                ctx.store
                    .put_if_absent(&format!("{prefix}{rel}"), &root.join(&f), &r.content_type)
                    .await?;
            }
        } else {
            ctx.store
                .put_if_absent(&key, &out_dir.join(&r.file), &r.content_type)
                .await?;
        }
        rows.push(RenditionRow {
            media_id: id.to_owned(),
            name: r.name.clone(),
            key,
            content_type: r.content_type.clone(),
            width: r.width.map(i64::from),
            height: r.height.map(i64::from),
            bytes: i64::try_from(r.bytes).unwrap_or(i64::MAX),
            duration_seconds: r.duration_seconds,
            sha256: r.sha256.clone(),
        });
    }
    Ok(rows)
}
