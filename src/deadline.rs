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

#[cfg(test)]
mod tests {
    use super::*;

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
