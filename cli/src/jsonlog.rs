//! `--log-format json`: one JSON object per event, written straight into the log layer's
//! buffer field by field. The lines have the shape of tracing-subscriber's own JSON format
//! (`timestamp`, `level`, the message and the event's fields flattened, `target`), but cost a
//! fraction of it: that formatter collects every field into a map of owned JSON values before
//! it writes one, some fifteen allocations a line, and at full load the job log's three lines
//! per job made that a seventh of the cluster's CPU (docs/observability.md, "What watching
//! costs"). Spans are not printed (the JSON lines never carried them).

use std::fmt::{self, Write};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The event formatter of `--log-format json`.
pub struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        writer.write_str("{\"timestamp\":\"")?;
        SystemTime.format_time(&mut writer)?;
        writer.write_str("\",\"level\":\"")?;
        writer.write_str(meta.level().as_str())?;
        writer.write_char('"')?;
        let mut fields = Fields {
            out: &mut writer,
            result: Ok(()),
        };
        event.record(&mut fields);
        fields.result?;
        writer.write_str(",\"target\":")?;
        string(&mut writer, meta.target())?;
        writer.write_str("}\n")
    }
}

/// Writes each field as `,"name":value`.
struct Fields<'a, 'w> {
    out: &'a mut Writer<'w>,
    result: fmt::Result,
}

impl Fields<'_, '_> {
    fn key(&mut self, field: &Field) -> fmt::Result {
        let name = field.name();
        // Field names are identifiers (dotted at most) but may be any string literal.
        if name.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
            self.out.write_str(",\"")?;
            self.out.write_str(name)?;
            self.out.write_str("\":")
        } else {
            self.out.write_char(',')?;
            string(self.out, name)?;
            self.out.write_char(':')
        }
    }

    fn put(&mut self, field: &Field, value: impl FnOnce(&mut Writer<'_>) -> fmt::Result) {
        if self.result.is_ok() {
            self.result = self.key(field).and_then(|()| value(self.out));
        }
    }
}

impl Visit for Fields<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, |out| string(out, value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, |out| {
            out.write_str(itoa::Buffer::new().format(value))
        });
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, |out| {
            out.write_str(itoa::Buffer::new().format(value))
        });
    }

    fn record_u128(&mut self, field: &Field, value: u128) {
        self.put(field, |out| {
            out.write_str(itoa::Buffer::new().format(value))
        });
    }

    fn record_i128(&mut self, field: &Field, value: i128) {
        self.put(field, |out| {
            out.write_str(itoa::Buffer::new().format(value))
        });
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, |out| {
            out.write_str(if value { "true" } else { "false" })
        });
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        // JSON has no NaN or infinity; those are written as strings.
        if value.is_finite() {
            self.put(field, |out| write!(out, "{value}"));
        } else {
            self.put(field, |out| write!(out, "\"{value}\""));
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, |out| {
            out.write_char('"')?;
            write!(Escaped(&mut *out), "{value}")?;
            out.write_char('"')
        });
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, |out| {
            out.write_char('"')?;
            write!(Escaped(&mut *out), "{value:?}")?;
            out.write_char('"')
        });
    }
}

/// Writes `value` as a JSON string.
fn string(out: &mut impl Write, value: &str) -> fmt::Result {
    out.write_char('"')?;
    Escaped(&mut *out).write_str(value)?;
    out.write_char('"')
}

/// Escapes what passes through for the inside of a JSON string.
struct Escaped<W>(W);

impl<W: Write> Write for Escaped<W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut plain = 0;
        for (at, byte) in s.bytes().enumerate() {
            let escape = match byte {
                b'"' => "\\\"",
                b'\\' => "\\\\",
                b'\n' => "\\n",
                b'\r' => "\\r",
                b'\t' => "\\t",
                0..=0x1f => "",
                _ => continue,
            };
            self.0.write_str(&s[plain..at])?;
            if escape.is_empty() {
                write!(self.0, "\\u{byte:04x}")?;
            } else {
                self.0.write_str(escape)?;
            }
            plain = at + 1;
        }
        self.0.write_str(&s[plain..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::layer::SubscriberExt;

    /// Collects what the layer writes.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Sink {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| io::Error::other("poisoned"))?
                .extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// Each line as written and as parsed.
    fn lines(log: impl FnOnce()) -> Vec<(String, serde_json::Value)> {
        let sink = Sink::default();
        let writer = sink.clone();
        let layer = tracing_subscriber::fmt::layer()
            .event_format(JsonLines)
            .with_writer(move || writer.clone());
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, log);
        let bytes = sink.0.lock().expect("sink").clone();
        String::from_utf8(bytes)
            .expect("utf-8")
            .lines()
            .map(|line| {
                let parsed = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
                (line.to_owned(), parsed)
            })
            .collect()
    }

    #[derive(Debug)]
    #[allow(dead_code)] // read through Debug only
    struct Change {
        enabled: bool,
        note: &'static str,
    }

    #[test]
    fn every_kind_of_field_is_valid_json_with_its_value() {
        let hostile = "quote \" backslash \\ newline \n tab \t bell \u{7} nul \0 é 🦀";
        let none: Option<&str> = None;
        let error = std::io::Error::other("disk \"full\"");
        let lines = lines(|| {
            tracing::info!(
                target: "rota::job",
                event = "enqueued",
                jobId = 7u64,
                delta = -3i64,
                big = u128::MAX,
                ok = true,
                ratio = 0.5f64,
                nan = f64::NAN,
                tenant = hostile,
                workerId = none,
                change = ?Change { enabled: true, note: "a \"b\"" },
                error = &error as &(dyn std::error::Error + 'static),
                "job {}",
                "enqueued"
            );
            tracing::warn!("plain");
        });
        assert_eq!(lines.len(), 2);
        let (raw, line) = &lines[0];
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["target"], "rota::job");
        assert_eq!(line["message"], "job enqueued");
        assert_eq!(line["event"], "enqueued");
        assert_eq!(line["jobId"], 7);
        assert_eq!(line["delta"], -3);
        // Too big for serde_json's numbers: read from the text.
        assert!(raw.contains(&format!(",\"big\":{},", u128::MAX)), "{raw}");
        assert_eq!(line["ok"], true);
        assert_eq!(line["ratio"], 0.5);
        assert_eq!(line["nan"], "NaN");
        assert_eq!(line["tenant"], hostile);
        assert!(line.get("workerId").is_none(), "{line}");
        assert_eq!(
            line["change"],
            "Change { enabled: true, note: \"a \\\"b\\\"\" }"
        );
        assert_eq!(line["error"], "disk \"full\"");
        let stamp = line["timestamp"].as_str().expect("timestamp");
        assert!(
            stamp.len() == 27 && stamp.ends_with('Z') && stamp.as_bytes()[10] == b'T',
            "{stamp}"
        );
        assert_eq!(lines[1].1["level"], "WARN");
        assert_eq!(lines[1].1["message"], "plain");
    }

    #[test]
    fn escaping_leaves_plain_text_alone_and_escapes_every_control_character() {
        for text in ["", "plain", "ünïcödé", "a\u{1f}b", "\u{0}", "end\\"] {
            let mut out = String::new();
            string(&mut out, text).expect("write");
            let back: String = serde_json::from_str(&out).expect(&out);
            assert_eq!(back, text);
            assert!(out[1..out.len() - 1].bytes().all(|b| b >= 0x20), "{out:?}");
        }
    }
}
