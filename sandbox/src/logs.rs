//! Capture of `tracing` output, to assert what is (and is not) logged.

use std::io;
use std::sync::{Arc, Mutex};

use tracing::subscriber::DefaultGuard;
use tracing_subscriber::EnvFilter;

/// Everything logged on the current thread while its guard lives, as JSON lines (the format the
/// Lambda uses with `AWS_LAMBDA_LOG_FORMAT=JSON`), including span fields.
///
/// The subscriber is thread-local (`tracing::subscriber::set_default`): use a current-thread
/// runtime (`#[tokio::test]`), since events on other threads are not captured.
#[derive(Clone, Debug, Default)]
pub struct LogCapture {
    buffer: Arc<Mutex<Vec<u8>>>,
}

/// Writer appending to the shared buffer.
struct CaptureWriter(Arc<Mutex<Vec<u8>>>);

impl io::Write for CaptureWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl LogCapture {
    /// Captures every level (`trace` and up) on this thread until the guard is dropped.
    pub fn install() -> (DefaultGuard, LogCapture) {
        Self::install_with_filter("trace")
    }

    /// Captures what the `EnvFilter` directives `filter` (e.g. `"info,dynatrace_token_rotator=trace"`)
    /// let through, on this thread until the guard is dropped.
    ///
    /// # Panics
    /// When `filter` is not a valid directive list.
    pub fn install_with_filter(filter: &str) -> (DefaultGuard, LogCapture) {
        let capture = LogCapture::default();
        let buffer = capture.buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .with_env_filter(EnvFilter::try_new(filter).expect("valid log filter"))
            .with_writer(move || CaptureWriter(buffer.clone()))
            .finish();
        let guard = tracing::subscriber::set_default(subscriber);
        (guard, capture)
    }

    /// Everything captured so far.
    pub fn text(&self) -> String {
        let buffer = self.buffer.lock().unwrap_or_else(|e| e.into_inner());
        String::from_utf8_lossy(&buffer).into_owned()
    }

    /// The captured lines parsed as JSON (lines that are not JSON are skipped).
    pub fn lines(&self) -> Vec<serde_json::Value> {
        self.text()
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    /// Whether `needle` occurs anywhere in the captured text.
    pub fn contains(&self, needle: &str) -> bool {
        self.text().contains(needle)
    }

    /// Forgets what was captured so far.
    pub fn clear(&self) {
        self.buffer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }
}
