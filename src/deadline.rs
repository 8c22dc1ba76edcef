//! The time budget of one invocation. Retries and back-off stop early enough for the
//! function to report a clear error instead of being killed by the Lambda timeout.

use std::time::Duration;

use tokio::time::Instant;

/// Time kept in reserve at the end of an invocation to report errors and clean up.
const RESERVE: Duration = Duration::from_millis(1500);

/// When the invocation must be done (`None`: no limit, as in some tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline(Option<Instant>);

impl Deadline {
    /// No limit.
    pub fn none() -> Self {
        Self(None)
    }

    /// A deadline `d` from now.
    pub fn after(d: Duration) -> Self {
        Self(Some(Instant::now() + d))
    }

    /// The deadline from the Lambda context (milliseconds since the epoch).
    pub fn from_epoch_millis(ms: u64) -> Self {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        if ms == 0 {
            return Self::none();
        }
        // `cargo lambda watch` sends the function timeout itself (e.g. 600000) instead of an
        // epoch time; no real deadline lies before 2001, so read such a value as a budget.
        if ms < 1_000_000_000_000 {
            return Self::after(Duration::from_millis(ms));
        }
        Self(Some(
            Instant::now() + Duration::from_millis(ms.saturating_sub(now_ms)),
        ))
    }

    /// The instant itself (for clients that take a raw deadline).
    pub fn instant(&self) -> Option<Instant> {
        self.0
    }

    /// The instant work must stop at: the deadline less the reserve, so that a request that
    /// hangs until then still leaves time to report a summary, emit metrics and clean up.
    pub fn work_until(&self) -> Option<Instant> {
        self.0.map(|at| {
            at.checked_sub(RESERVE)
                .filter(|t| *t > Instant::now())
                .unwrap_or_else(Instant::now)
        })
    }

    /// Time left before the reserve, `None` when unlimited.
    pub fn remaining(&self) -> Option<Duration> {
        self.0.map(|at| {
            at.saturating_duration_since(Instant::now())
                .saturating_sub(RESERVE)
        })
    }

    /// Whether waiting `wait` (and then doing a little work) still fits.
    pub fn allows(&self, wait: Duration) -> bool {
        self.remaining().is_none_or(|left| left > wait)
    }

    /// Caps a per-request timeout to the time left (at least 100 ms).
    pub fn cap(&self, timeout: Duration) -> Duration {
        self.remaining()
            .map(|left| left.min(timeout).max(Duration::from_millis(100)))
            .unwrap_or(timeout)
    }
}

/// Reads a `Retry-After` header value: delta-seconds (`120`) or an HTTP date
/// (`Wed, 21 Oct 2026 07:28:00 GMT`, a date in the past meaning "now"). `None` when it is
/// neither, so the caller falls back to its own back-off.
pub fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = jiff::fmt::rfc2822::DateTimeParser::new()
        .parse_timestamp(v)
        .ok()?;
    let wait = at
        .as_millisecond()
        .saturating_sub(jiff::Timestamp::now().as_millisecond());
    Some(Duration::from_millis(wait.max(0) as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after(" 3 "), Some(Duration::from_secs(3)));
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(Duration::ZERO)
        );
        let later = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(90);
        let header = jiff::fmt::rfc2822::DateTimePrinter::new()
            .timestamp_to_rfc9110_string(&later)
            .unwrap();
        let wait = parse_retry_after(&header).unwrap();
        assert!(
            wait > Duration::from_secs(85) && wait <= Duration::from_secs(90),
            "{wait:?}"
        );
        assert_eq!(parse_retry_after("soon"), None);
        assert_eq!(parse_retry_after("-5"), None);
    }

    #[test]
    fn epoch_and_relative_deadlines() {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let abs = Deadline::from_epoch_millis(now_ms + 60_000)
            .remaining()
            .unwrap();
        assert!(
            abs > Duration::from_secs(55) && abs <= Duration::from_secs(60),
            "{abs:?}"
        );
        let rel = Deadline::from_epoch_millis(600_000).remaining().unwrap();
        assert!(rel > Duration::from_secs(590), "{rel:?}");
        assert_eq!(Deadline::from_epoch_millis(0), Deadline::none());
        assert!(
            Deadline::from_epoch_millis(now_ms - 1)
                .remaining()
                .unwrap()
                .is_zero()
        );
        assert!(Deadline::none().allows(Duration::from_secs(3600)));
    }
}
