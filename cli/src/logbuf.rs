//! Log lines written to stderr in batches. At full load a node logs some 130,000 job-log
//! lines a second; one `write` each cost the leader a tenth of its CPU in the kernel
//! (docs/observability.md, "What watching costs"). Lines gather in a buffer that is written
//! out when it holds 64 KiB, every 100 ms, at once for a warning or an error, and as the
//! process ends. A line is never split: each goes into the buffer whole. What a SIGKILL
//! catches in the buffer (at most the last 100 ms of info lines) is lost with the process.

use std::io::{self, Write};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;

/// Past this many bytes the buffer is written out at once.
const FLUSH_AT: usize = 64 * 1024;

/// The longest an info line waits in the buffer.
const FLUSH_EVERY: Duration = Duration::from_millis(100);

/// The batched log writer; clones share one buffer.
pub struct Batched<W> {
    shared: Arc<Mutex<Buffer<W>>>,
}

impl<W> Clone for Batched<W> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

struct Buffer<W> {
    lines: Vec<u8>,
    out: W,
}

impl<W: Write> Buffer<W> {
    fn flush(&mut self) {
        if self.lines.is_empty() {
            return;
        }
        // A log that cannot be written has nowhere to say so; the lines are dropped rather
        // than kept to grow without bound.
        let _ = self.out.write_all(&self.lines);
        let _ = self.out.flush();
        self.lines.clear();
    }
}

impl<W: Write + Send + 'static> Batched<W> {
    /// Batches what is logged into `out`, with a thread that writes it out every 100 ms.
    pub fn start(out: W) -> Self {
        let batched = Self {
            shared: Arc::new(Mutex::new(Buffer {
                lines: Vec::with_capacity(FLUSH_AT * 2),
                out,
            })),
        };
        let ticking = batched.clone();
        let flusher = std::thread::Builder::new()
            .name("log-flush".to_owned())
            .spawn(move || loop {
                std::thread::sleep(FLUSH_EVERY);
                ticking.flush();
            });
        if let Err(e) = flusher {
            // Without the thread lines still go out as the buffer fills and at exit.
            eprintln!("warning: could not start the log-flush thread: {e}");
        }
        batched
    }
}

impl<W: Write> Batched<W> {
    /// Writes out what the buffer holds.
    pub fn flush(&self) {
        self.lock().flush();
    }

    fn lock(&self) -> MutexGuard<'_, Buffer<W>> {
        // A panic while a line was appended leaves at worst a partial line; keep logging.
        self.shared
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// One event's writes; a warning or an error is written out at once.
pub struct Line<'a, W> {
    batched: &'a Batched<W>,
    urgent: bool,
}

impl<W: Write> Write for Line<'_, W> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let mut buffer = self.batched.lock();
        buffer.lines.extend_from_slice(bytes);
        if self.urgent || buffer.lines.len() >= FLUSH_AT {
            buffer.flush();
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a, W: Write + 'a> MakeWriter<'a> for Batched<W> {
    type Writer = Line<'a, W>;

    fn make_writer(&'a self) -> Self::Writer {
        Line {
            batched: self,
            urgent: true,
        }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Self::Writer {
        Line {
            batched: self,
            urgent: *meta.level() <= Level::WARN,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt;

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<Vec<u8>>>>);

    impl Write for Sink {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0.lock().expect("sink").push(bytes.to_vec());
            Ok(bytes.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Sink {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().expect("sink").concat()).expect("utf-8")
        }

        fn writes(&self) -> usize {
            self.0.lock().expect("sink").len()
        }
    }

    #[test]
    fn info_lines_wait_for_a_flush_warnings_do_not_and_a_full_buffer_goes_out() {
        let sink = Sink::default();
        // No thread: flushes happen only where the test says.
        let batched = Batched {
            shared: Arc::new(Mutex::new(Buffer {
                lines: Vec::new(),
                out: sink.clone(),
            })),
        };
        let layer = tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_writer(batched.clone());
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!("first");
            tracing::info!("second");
            assert_eq!(sink.writes(), 0, "info lines wait");
            batched.flush();
            assert_eq!(sink.writes(), 1, "one write for both");
            assert!(sink.text().contains("first") && sink.text().contains("second"));

            tracing::info!("third");
            tracing::warn!("fourth");
            assert_eq!(
                sink.writes(),
                2,
                "a warning goes out at once, with what waited"
            );
            let text = sink.text();
            assert!(text.find("third") < text.find("fourth"), "{text}");

            let long = "x".repeat(1000);
            let mut lines = 0;
            while sink.writes() == 2 {
                tracing::info!("{long}");
                lines += 1;
                assert!(lines <= FLUSH_AT / 1000 + 1, "a full buffer goes out");
            }
            assert!(lines >= FLUSH_AT / 1100, "out after {lines} lines");
            assert!(sink.text().ends_with('\n'), "only whole lines go out");
        });
        batched.flush();
        assert_eq!(sink.writes(), 3, "nothing was left");
    }
}
