//! OTLP/HTTP span export (feature `otlp`).
//!
//! Configured by the standard OpenTelemetry environment: `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`), `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_SERVICE_NAME` (default
//! `mediafleet`), `OTEL_RESOURCE_ATTRIBUTES` and the batch processor's `OTEL_BSP_*`. The protocol is
//! `http/protobuf`. Spans are the `tracing` spans at the `RUST_LOG` level: the api's `request` span and the
//! worker's `job` span, each parented on the W3C trace context of `crate::trace`, so an upload's request span
//! is the parent of its jobs' spans in the collector.
//!
//! The SDK's batch processor exports from its own thread through a blocking executor. Our HTTP client is the
//! reqwest 0.12 client the rest of the crate uses, so each export is spawned onto the process's tokio
//! runtime and awaited from that thread: no second HTTP client or TLS stack is built for the feature.

use std::collections::HashMap;
use std::time::Duration;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_http::{HttpClient, HttpError};
use opentelemetry_otlp::WithHttpConfig;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// How long one export may take (`OTEL_EXPORTER_OTLP_TIMEOUT` also bounds it, inside the SDK).
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether the environment names a collector.
pub fn configured() -> bool {
    [
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    ]
    .iter()
    .any(|k| std::env::var(k).is_ok_and(|v| !v.trim().is_empty()))
}

/// The running exporter.
pub struct Exporter {
    provider: SdkTracerProvider,
}

impl Exporter {
    /// Builds the exporter and its tracer; exports run on `rt`.
    pub fn start(rt: &tokio::runtime::Handle) -> Result<(Self, SdkTracer), String> {
        let http = reqwest::Client::builder()
            .timeout(EXPORT_TIMEOUT)
            .build()
            .map_err(|e| e.to_string())?;
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(OnRuntime {
                http,
                rt: rt.clone(),
            })
            .build()
            .map_err(|e| e.to_string())?;
        let mut resource = Resource::builder();
        if std::env::var("OTEL_SERVICE_NAME").is_err() {
            resource = resource.with_service_name("mediafleet");
        }
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource.build())
            .build();
        let tracer = provider.tracer("mediafleet");
        Ok((Self { provider }, tracer))
    }

    /// Exports what is still buffered and stops.
    pub fn shutdown(self) {
        if let Err(e) = self.provider.shutdown() {
            eprintln!("OTLP span export: shutdown: {e}");
        }
    }
}

/// The crate's reqwest client, run on the tokio runtime whatever thread calls it.
#[derive(Debug)]
struct OnRuntime {
    http: reqwest::Client,
    rt: tokio::runtime::Handle,
}

#[async_trait::async_trait]
impl HttpClient for OnRuntime {
    async fn send_bytes(
        &self,
        request: http::Request<bytes::Bytes>,
    ) -> Result<http::Response<bytes::Bytes>, HttpError> {
        let http = self.http.clone();
        let (parts, body) = request.into_parts();
        let sent = self.rt.spawn(async move {
            let res = http
                .request(parts.method, parts.uri.to_string())
                .headers(parts.headers)
                .body(body)
                .send()
                .await?;
            let status = res.status();
            let headers = res.headers().clone();
            let body = res.bytes().await?;
            let mut answer = http::Response::new(body);
            *answer.status_mut() = status;
            *answer.headers_mut() = headers;
            Ok::<_, HttpError>(answer)
        });
        sent.await?
    }
}

/// Parents `span` on `traceparent` (a no-op when spans are not exported).
pub fn set_parent(span: &tracing::Span, traceparent: &str) {
    let carrier = HashMap::from([(crate::trace::TRACEPARENT.to_owned(), traceparent.to_owned())]);
    let _ = span.set_parent(TraceContextPropagator::new().extract(&carrier));
}

/// The exported span id of `span` within trace `trace_id`, when it has one.
pub fn span_id(span: &tracing::Span, trace_id: &str) -> Option<String> {
    let cx = span.context();
    let otel = cx.span();
    let sc = otel.span_context();
    (sc.is_valid() && sc.trace_id().to_string() == trace_id).then(|| sc.span_id().to_string())
}
