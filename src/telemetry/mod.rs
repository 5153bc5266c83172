//! Logging: structured `tracing` to stderr, always, so stdout stays clean for JSON output; and, with the
//! `otlp` feature and a collector named in the environment, the same spans exported over OTLP/HTTP.

use tracing_subscriber::layer::{Layered, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

#[cfg(feature = "otlp")]
pub mod otlp;

/// Installs the global subscriber without span export (the media child, benchmarks). `RUST_LOG` filters
/// (default `info`); `MEDIAFLEET_LOG_FORMAT=json` switches to JSON lines for log shippers.
pub fn init() {
    let _ = registry().try_init();
}

/// What [`init_exporting`] started; dropping it flushes the spans not yet exported.
#[must_use = "dropping it flushes and stops span export"]
pub struct Telemetry {
    #[cfg(feature = "otlp")]
    exporter: Option<otlp::Exporter>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        #[cfg(feature = "otlp")]
        if let Some(exporter) = self.exporter.take() {
            exporter.shutdown();
        }
    }
}

/// Installs the global subscriber, with span export over OTLP/HTTP when the binary has the `otlp` feature and
/// `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set. Exports run on `rt`.
pub fn init_exporting(rt: &tokio::runtime::Handle) -> Telemetry {
    #[cfg(feature = "otlp")]
    {
        if otlp::configured() {
            match otlp::Exporter::start(rt) {
                Ok((exporter, tracer)) => {
                    let spans = tracing_opentelemetry::layer().with_tracer(tracer);
                    let _ = registry().with(spans).try_init();
                    return Telemetry {
                        exporter: Some(exporter),
                    };
                }
                Err(e) => {
                    init();
                    tracing::error!(error = %e, "OTLP span export is off: the exporter cannot start");
                    return Telemetry { exporter: None };
                }
            }
        }
    }
    let _ = rt;
    init();
    Telemetry {
        #[cfg(feature = "otlp")]
        exporter: None,
    }
}

/// Text or JSON log lines.
type Lines = Box<dyn Layer<Registry> + Send + Sync>;

/// The log lines layer (text or JSON) over the registry, filtered by `RUST_LOG`.
fn registry() -> Layered<EnvFilter, Layered<Lines, Registry>> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("MEDIAFLEET_LOG_FORMAT").is_ok_and(|f| f == "json");
    let lines = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let lines = if json {
        lines.json().boxed()
    } else {
        lines.boxed()
    };
    tracing_subscriber::registry().with(lines).with(filter)
}
