//! W3C trace context (`traceparent`) from the upload to the worker.
//!
//! The api takes a valid `traceparent` from the request, or starts a trace, and answers with it; every job
//! enqueued while that request runs carries it in its envelope's `trace` map, and a worker running that job
//! runs under it, so the jobs a job enqueues (a video's transcode stage, a cache warm) carry it on, webhooks
//! send it, and the worker's `job` span — every log line of the job, with `MEDIAFLEET_LOG_FORMAT=json` — has
//! its `trace_id`. Each hop gets a fresh parent id under the same trace id.

use rand::RngCore;

tokio::task_local! {
    /// The trace context the current request or job runs under.
    static CURRENT: String;
}

/// The envelope `trace` key and the HTTP header.
pub const TRACEPARENT: &str = "traceparent";

/// `traceparent` when it is a valid version-00 header: 32 lower-case hex digits of trace id (not all zero),
/// 16 of parent id (not all zero), 2 of flags.
pub fn valid(traceparent: &str) -> bool {
    let parts: Vec<&str> = traceparent.trim().split('-').collect();
    let hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    matches!(parts.as_slice(), [v, t, p, f]
        if *v == "00" && hex(t, 32) && hex(p, 16) && hex(f, 2)
            && t.bytes().any(|b| b != b'0') && p.bytes().any(|b| b != b'0'))
}

/// The trace id of a valid `traceparent`.
pub fn trace_id(traceparent: &str) -> Option<&str> {
    valid(traceparent).then(|| &traceparent.trim()[3..35])
}

fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut b);
    if b.iter().all(|&x| x == 0) {
        b[0] = 1;
    }
    hex::encode(b)
}

/// A new trace, sampled.
pub fn start() -> String {
    format!("00-{}-{}-01", random_hex(16), random_hex(8))
}

/// The next hop of `traceparent`: same trace id and flags, a new parent id. When spans are exported (feature
/// `otlp`) and the current span is exported in this trace, the parent id is that span's id, so the next hop's
/// span is its child in the collector.
pub fn next_hop(traceparent: &str) -> String {
    let t = traceparent.trim();
    let parent = exported_span_id(&t[3..35]).unwrap_or_else(|| random_hex(8));
    format!("00-{}-{}-{}", &t[3..35], parent, &t[53..55])
}

#[cfg(feature = "otlp")]
fn exported_span_id(trace_id: &str) -> Option<String> {
    crate::telemetry::otlp::span_id(&tracing::Span::current(), trace_id)
}

#[cfg(not(feature = "otlp"))]
fn exported_span_id(_trace_id: &str) -> Option<String> {
    None
}

/// Parents `span` on `traceparent` for span export (feature `otlp`; otherwise nothing to do).
pub fn link(span: &tracing::Span, traceparent: &str) {
    #[cfg(feature = "otlp")]
    crate::telemetry::otlp::set_parent(span, traceparent);
    let _ = (span, traceparent);
}

/// The request's `traceparent` when valid, else a new trace.
pub fn from_header(value: Option<&str>) -> String {
    match value {
        Some(v) if valid(v) => v.trim().to_owned(),
        _ => start(),
    }
}

/// Runs `f` under `traceparent`.
pub async fn scope<F: std::future::Future>(traceparent: String, f: F) -> F::Output {
    CURRENT.scope(traceparent, f).await
}

/// The trace context the current request or job runs under, if any.
pub fn current() -> Option<String> {
    CURRENT.try_with(Clone::clone).ok()
}

/// Stamps the current trace context (next hop) into an envelope that has none.
pub fn inherit(env: &mut mediafleet_proto::Envelope) {
    if env.trace.contains_key(TRACEPARENT) {
        return;
    }
    if let Some(tp) = current() {
        env.trace.insert(TRACEPARENT.to_owned(), next_hop(&tp));
    }
}

/// The envelope's `traceparent`, when it carries a valid one.
pub fn of(env: &mediafleet_proto::Envelope) -> Option<&str> {
    env.trace
        .get(TRACEPARENT)
        .map(String::as_str)
        .filter(|t| valid(t))
}

/// api middleware: runs the request under its trace context and answers with it.
pub async fn layer(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use tracing::Instrument;

    let tp = from_header(req.headers().get(TRACEPARENT).and_then(|v| v.to_str().ok()));
    let answer = tp.clone();
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or("unmatched", axum::extract::MatchedPath::as_str)
        .to_owned();
    let method = req.method().clone();
    // Probes and scrapes get no span: polled every few seconds, they would be most of what is exported.
    let probe = matches!(route.as_str(), "/healthz" | "/readyz" | "/metrics");
    let span = if probe {
        tracing::Span::none()
    } else {
        tracing::info_span!(
            "request",
            otel.name = %format_args!("{method} {route}"),
            otel.kind = "server",
            http.request.method = %method,
            http.route = %route,
            http.response.status_code = tracing::field::Empty,
            trace_id = trace_id(&tp).unwrap_or_default(),
        )
    };
    link(&span, &tp);
    let mut res = scope(tp, next.run(req)).instrument(span.clone()).await;
    span.record("http.response.status_code", res.status().as_u16());
    if let Ok(v) = axum::http::HeaderValue::from_str(&answer) {
        res.headers_mut().insert(TRACEPARENT, v);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_refuses() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert!(valid(tp));
        assert_eq!(trace_id(tp), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        for bad in [
            "",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        ] {
            assert!(!valid(bad), "{bad}");
        }
        let next = next_hop(tp);
        assert!(valid(&next));
        assert_eq!(trace_id(&next), trace_id(tp));
        assert_ne!(next, tp);
        assert!(valid(&start()));
        assert_eq!(from_header(Some(tp)), tp);
        assert_ne!(from_header(Some("nope")), "nope");
    }
}
