//! The multipart reader of `POST /v1/uploads` (axum's `Multipart` with our text-field cap, unknown-field
//! refusal, one `file` part and the 64 KiB preamble guard), run over an in-memory body. Any body is read or
//! refused with a 400, never a panic or hang; text fields that pass are within the cap; and the verdict does
//! not depend on how the body is cut into chunks on the wire.
#![no_main]

use std::sync::LazyLock;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use mediafleet::api::read_upload_form;

/// `TEXT_FIELD_MAX` in src/api/uploads.rs.
const TEXT_FIELD_MAX: usize = 4096;

const CONTENT_TYPE: &str = "multipart/form-data; boundary=XyZ";

static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread runtime")
});

fuzz_target!(|data: &[u8]| {
    // The first byte picks the chunk size (1..=256 bytes); the rest is the body.
    let Some((&cut, body)) = data.split_first() else {
        return;
    };
    let size = usize::from(cut) + 1;
    let chunked = body.chunks(size).map(Bytes::copy_from_slice).collect();
    let one = vec![Bytes::copy_from_slice(body)];
    let (chunked, whole) = RUNTIME.block_on(async {
        (
            read_upload_form(CONTENT_TYPE, chunked).await,
            read_upload_form(CONTENT_TYPE, one).await,
        )
    });
    match (&chunked, &whole) {
        (Ok(a), Ok(b)) => {
            assert_eq!(a, b, "the form read differently in {size}-byte chunks");
            for text in [&a.profile, &a.external_id, &a.callback_url]
                .into_iter()
                .flatten()
            {
                assert!(
                    text.len() <= TEXT_FIELD_MAX,
                    "a {}-byte text field",
                    text.len()
                );
            }
        }
        (Err(a), Err(b)) => {
            assert_eq!(a.status, b.status);
            assert_eq!(a.status.as_u16(), 400, "{}", a.message);
        }
        _ => panic!(
            "in {size}-byte chunks the form gives {:?}; in one chunk {:?}",
            chunked.as_ref().map_err(|e| &e.message),
            whole.as_ref().map_err(|e| &e.message)
        ),
    }
});
