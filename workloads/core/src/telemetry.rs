//! Structured logs: one JSON object per line on stdout.
//!
//! Each line carries `timestamp`, `level`, `service`, `target` and `message`,
//! the event's own fields (`error`, `project_id`, ...) and the fields of every
//! enclosing span flattened in (so a request span's `request_id` and
//! `project_id` appear on every line logged while serving that request).
//!
//! Settings: `LOG_LEVEL` (an `EnvFilter` directive, default `info`) and
//! `LOG_FORMAT` (`json`, the default, or `text` for humans).

use std::fmt;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::{FormatEvent, FormatFields, JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormattedFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;

use crate::config::{ConfigError, Env};
use crate::timestamp::format_ms;

/// Log settings read from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// `LOG_LEVEL`, an `EnvFilter` directive such as `info` or `info,rdkafka=warn`.
    pub level: String,
    /// `LOG_FORMAT`: `json` (default) or `text`.
    pub json: bool,
}

impl LogConfig {
    pub fn from_env(env: &Env<'_>) -> Result<Self, ConfigError> {
        let level = env.string("LOG_LEVEL", "info")?;
        EnvFilter::try_new(&level).map_err(|e| ConfigError::Invalid {
            var: "LOG_LEVEL".into(),
            value: level.clone(),
            reason: e.to_string(),
        })?;
        let json = env.one_of("LOG_FORMAT", "json", &["json", "text"])? == "json";
        Ok(Self { level, json })
    }
}

/// Installs the global subscriber for `service`, writing to stdout.
///
/// Returns an error if a global subscriber is already installed.
pub fn init(service: &'static str, config: &LogConfig) -> Result<(), TelemetryError> {
    init_with_writer(service, config, std::io::stdout)
}

/// Like [`init`] with a chosen writer (tests capture the output).
pub fn init_with_writer<W>(
    service: &'static str,
    config: &LogConfig,
    writer: W,
) -> Result<(), TelemetryError>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter =
        EnvFilter::try_new(&config.level).map_err(|e| TelemetryError::Filter(e.to_string()))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    let result = if config.json {
        builder
            .fmt_fields(JsonFields::new())
            .event_format(JsonLines { service })
            .try_init()
    } else {
        builder.try_init()
    };
    result.map_err(|e| TelemetryError::AlreadyInstalled(e.to_string()))
}

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("invalid log filter: {0}")]
    Filter(String),
    #[error("a global log subscriber is already installed: {0}")]
    AlreadyInstalled(String),
}

/// The JSON line format described in the module docs.
#[derive(Debug, Clone, Copy)]
pub struct JsonLines {
    pub service: &'static str,
}

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut line = Map::new();
        line.insert(
            "timestamp".into(),
            Value::String(format_ms(&chrono::Utc::now())),
        );
        line.insert(
            "level".into(),
            Value::String(meta.level().as_str().to_ascii_lowercase()),
        );
        line.insert("service".into(), Value::String(self.service.to_owned()));
        line.insert("target".into(), Value::String(meta.target().to_owned()));
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let extensions = span.extensions();
                if let Some(fields) = extensions.get::<FormattedFields<N>>()
                    && let Ok(Value::Object(map)) = serde_json::from_str::<Value>(&fields.fields)
                {
                    line.extend(map);
                }
            }
        }
        event.record(&mut JsonVisitor(&mut line));
        let text = serde_json::to_string(&Value::Object(line)).map_err(|_| fmt::Error)?;
        writeln!(writer, "{text}")
    }
}

struct JsonVisitor<'a>(&'a mut Map<String, Value>);

impl Visit for JsonVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0
            .insert(field.name().to_owned(), Value::String(value.to_owned()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0
            .insert(field.name().to_owned(), Value::String(value.to_string()));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().to_owned(), Value::String(format!("{value:?}")));
    }
}

/// Log output kept in memory (a [`MakeWriter`] for [`init_with_writer`]),
/// for tests that read what was logged.
#[derive(Clone, Default)]
pub struct MemoryLog(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl MemoryLog {
    /// Everything written so far.
    pub fn text(&self) -> String {
        let bytes = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl std::io::Write for MemoryLog {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for MemoryLog {
    type Writer = MemoryLog;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn capture(f: impl FnOnce()) -> Vec<Value> {
        let buffer = MemoryLog::default();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(EnvFilter::new("debug"))
            .with_writer(buffer.clone())
            .fmt_fields(JsonFields::new())
            .event_format(JsonLines { service: "capture" })
            .finish();
        tracing::subscriber::with_default(subscriber, f);
        buffer
            .text()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn lines_carry_service_level_message_and_fields() {
        let lines = capture(|| {
            let err = std::io::Error::other("broker down");
            tracing::warn!(error = %err, partition = 3u64, "produce failed");
        });
        assert_eq!(lines.len(), 1);
        let l = &lines[0];
        assert_eq!(l["service"], "capture");
        assert_eq!(l["level"], "warn");
        assert_eq!(l["message"], "produce failed");
        assert_eq!(l["error"], "broker down");
        assert_eq!(l["partition"], 3);
        assert!(l["timestamp"].as_str().unwrap().ends_with('Z'));
    }

    #[test]
    fn span_fields_are_flattened_into_each_line() {
        let lines = capture(|| {
            let span = tracing::info_span!("request", request_id = "r-1", project_id = 42u64);
            let _g = span.enter();
            tracing::info!("accepted");
            let inner = tracing::info_span!("produce", topic = "events");
            let _g2 = inner.enter();
            tracing::debug!(count = 2u64, "sent");
        });
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["request_id"], "r-1");
        assert_eq!(lines[0]["project_id"], 42);
        assert_eq!(lines[1]["request_id"], "r-1");
        assert_eq!(lines[1]["topic"], "events");
        assert_eq!(lines[1]["count"], 2);
    }

    #[test]
    fn config_validates_level_and_format() {
        let ok = [("LOG_LEVEL", "info,rdkafka=warn"), ("LOG_FORMAT", "text")];
        let cfg = LogConfig::from_env(&Env::new(&ok)).unwrap();
        assert!(!cfg.json);
        let bad = [("LOG_LEVEL", "info,=[")];
        assert_eq!(
            LogConfig::from_env(&Env::new(&bad)).unwrap_err().var(),
            "LOG_LEVEL"
        );
        let bad = [("LOG_FORMAT", "xml")];
        assert_eq!(
            LogConfig::from_env(&Env::new(&bad)).unwrap_err().var(),
            "LOG_FORMAT"
        );
    }
}
