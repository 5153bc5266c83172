//! Signed-URL and webhook-signature checks: `signed_query_ok` (private renditions without an API key) and
//! `webhook::verify` (a receiver's check of `Mediafleet-Signature`) on arbitrary secrets, paths, queries and
//! headers. Neither panics; neither accepts what was not signed for that path/body and time; both accept what
//! was, whatever unrelated query parameters or header parts come with it.
//!
//! Input: `secret \0 path \0 query \0 header \0 body`, missing parts empty; the first two bytes of the body
//! part also pick a clock offset.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mediafleet::api::{sign_rendition, signed_query_ok};
use mediafleet::webhook;

/// The receiver's allowed clock skew in the webhook checks.
const TOLERANCE: i64 = 300;

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(5, |&b| b == 0);
    let mut next = || String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let (secret, path, query, header) = (next(), next(), next(), next());
    let body = next().into_bytes();
    let now = chrono_now();
    let skew = body
        .get(..2)
        .map_or(0, |b| i64::from(i16::from_le_bytes([b[0], b[1]])));

    // Rendition URLs.
    let accepted = signed_query_ok(&secret, &path, Some(&query));
    if accepted {
        // Only a query with an unexpired `expires` and the matching signature passes.
        let expires = last_param(&query, "expires").and_then(|v| v.parse::<i64>().ok());
        let expires = expires.expect("accepted without a parseable `expires`");
        assert!(expires >= now - 1, "accepted an expired query: {query:?}");
        let sig = last_param(&query, "signature").expect("accepted without a `signature`");
        assert_eq!(
            sig.to_ascii_lowercase(),
            sign_rendition(&secret, &path, expires),
            "accepted a signature that is not the path's"
        );
    }
    let expires = now + 60 + skew.abs();
    let good = format!(
        "expires={expires}&signature={}",
        sign_rendition(&secret, &path, expires)
    );
    assert!(signed_query_ok(&secret, &path, Some(&good)));
    let unrelated =
        last_param(&query, "expires").is_none() && last_param(&query, "signature").is_none();
    if unrelated {
        // Other parameters, before or after, change nothing.
        assert!(signed_query_ok(
            &secret,
            &path,
            Some(&format!("{query}&{good}"))
        ));
        assert!(signed_query_ok(
            &secret,
            &path,
            Some(&format!("{good}&{query}"))
        ));
    }
    assert!(!signed_query_ok(&secret, &format!("{path}x"), Some(&good)));
    let stale = now - 1 - skew.abs();
    let old = format!(
        "expires={stale}&signature={}",
        sign_rendition(&secret, &path, stale)
    );
    assert!(!signed_query_ok(&secret, &path, Some(&old)));

    // Webhook signatures: an arbitrary header, then a real one at an offset from the receiver's clock.
    if webhook::verify(&secret, &header, &body, now, TOLERANCE) {
        let t = header
            .split(',')
            .filter_map(|p| p.trim().split_once('='))
            .filter(|(k, _)| *k == "t")
            .last()
            .and_then(|(_, v)| v.parse::<i64>().ok())
            .expect("accepted without a parseable `t`");
        assert!(
            (i128::from(now) - i128::from(t)).abs() <= i128::from(TOLERANCE),
            "accepted t={t} at now={now}: {header:?}"
        );
    }
    let t = now + skew;
    let signed = webhook::signature(&secret, t, &body);
    assert_eq!(
        webhook::verify(&secret, &signed, &body, now, TOLERANCE),
        skew.abs() <= TOLERANCE,
        "{signed} at now={now}"
    );
    if !body.is_empty() {
        let mut other = body.clone();
        other[0] ^= 1;
        assert!(!webhook::verify(&secret, &signed, &other, t, TOLERANCE));
    }
});

/// `expires` and `signature` as `signed_query_ok` reads them: the last occurrence wins.
fn last_param(query: &str, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query.as_bytes())
        .filter(|(k, _)| k == name)
        .last()
        .map(|(_, v)| v.into_owned())
}

fn chrono_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("a clock after 1970")
        .as_secs() as i64
}
