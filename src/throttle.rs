//! The window of Dynatrace calls in flight, one per environment (docs/design.md §5,
//! `ROTATION_CONCURRENCY`).
//!
//! Dynatrace sheds load with `429`, usually without rate headers. Every call to an
//! environment holds a slot of that environment's window while its request is on the wire
//! (never while it sleeps in back-off, and never during Vault or Secrets Manager work), so
//! all rotations of a run share the environment's capacity. The window adapts like TCP's
//! congestion window (additive increase, multiplicative decrease): it starts at the
//! configured maximum, halves on a `429` (at most once per window's worth of calls, so one
//! burst of rejections counts once), and grows back by about one slot per window of
//! successful calls. A `Retry-After` pauses every call to the environment until then.
//!
//! The windows live in the Dynatrace client, which outlives invocations: a window that has
//! seen no `429` for [`RESTORE_AFTER`] starts the next calls at the maximum again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::deadline::Deadline;

/// A window shrunk by a `429` is restored to its maximum when no `429` was seen for this long.
pub const RESTORE_AFTER: Duration = Duration::from_secs(60);

/// The windows of every environment the client has called, by normalised environment URL.
#[derive(Debug)]
pub struct Windows {
    max: usize,
    by_env: Mutex<HashMap<String, Arc<Window>>>,
}

impl Windows {
    /// Windows of at most `max` calls in flight (at least 1).
    pub fn new(max: usize) -> Self {
        Self {
            max: max.max(1),
            by_env: Mutex::default(),
        }
    }

    /// The most calls in flight per environment.
    pub fn max(&self) -> usize {
        self.max
    }

    /// The window of `env` (created on first use).
    pub fn of(&self, env: &str) -> Arc<Window> {
        let mut map = self.by_env.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(env.to_owned())
            .or_insert_with(|| Arc::new(Window::new(self.max)))
            .clone()
    }
}

/// One environment's window: a semaphore of `max` permits, some of them withheld while the
/// window is shrunk.
#[derive(Debug)]
pub struct Window {
    permits: Arc<Semaphore>,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    max: usize,
    /// The window, `1 ..= max`.
    limit: usize,
    /// Successful answers since the window last grew: it grows by one when they reach it.
    credit: usize,
    /// Permits taken out of circulation while the window is below `max`.
    withheld: Vec<OwnedSemaphorePermit>,
    /// Permits still to withhold as calls in flight finish (the window shrank below the
    /// number of calls in flight).
    debt: usize,
    /// Bumped at every cut: a `429` answering a call sent before the last cut does not cut
    /// again.
    epoch: u64,
    /// No call before this instant (`Retry-After`).
    paused_until: Option<Instant>,
    /// The last `429`.
    last_cut: Option<Instant>,
}

impl State {
    /// Slots usable now: `max` less those withheld or owed.
    fn effective(&self) -> usize {
        self.max - self.withheld.len() - self.debt
    }
}

/// Why no slot was given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoSlot {
    /// The environment asked for a pause (`Retry-After`) that outlasts the invocation.
    Paused,
    /// Every slot stayed busy until the invocation's deadline.
    Busy,
}

/// A slot of a window, held for one request; returned when dropped.
#[derive(Debug)]
pub struct Slot {
    window: Arc<Window>,
    permit: Option<OwnedSemaphorePermit>,
    epoch: u64,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let Some(permit) = self.permit.take() else {
            return;
        };
        let mut state = self.window.lock();
        if state.debt > 0 {
            state.debt -= 1;
            state.withheld.push(permit);
        }
    }
}

impl Window {
    fn new(max: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(max)),
            state: Mutex::new(State {
                max,
                limit: max,
                credit: 0,
                withheld: Vec::new(),
                debt: 0,
                epoch: 0,
                paused_until: None,
                last_cut: None,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Calls that may be in flight now.
    pub fn size(&self) -> usize {
        self.lock().effective()
    }

    /// Waits for a pause to end and a slot to be free, within `deadline`.
    pub async fn acquire(self: &Arc<Self>, deadline: Deadline) -> Result<Slot, NoSlot> {
        loop {
            let paused = {
                let mut state = self.lock();
                if state.effective() < state.max
                    && state.last_cut.is_some_and(|t| t.elapsed() >= RESTORE_AFTER)
                {
                    state.limit = state.max;
                    state.debt = 0;
                    state.withheld.clear();
                }
                state
                    .paused_until
                    .map(|t| t.saturating_duration_since(Instant::now()))
                    .filter(|d| !d.is_zero())
            };
            let Some(wait) = paused else { break };
            if !deadline.allows(wait) {
                return Err(NoSlot::Paused);
            }
            tokio::time::sleep(wait).await;
        }
        let acquire = self.permits.clone().acquire_owned();
        let permit = match deadline.remaining() {
            None => acquire.await,
            Some(left) => tokio::time::timeout(left, acquire)
                .await
                .map_err(|_| NoSlot::Busy)?,
        }
        .map_err(|_| NoSlot::Busy)?;
        let slot = Slot {
            window: self.clone(),
            permit: Some(permit),
            epoch: self.lock().epoch,
        };
        // A pause that began while this call queued for its slot applies to it too.
        let paused = self
            .lock()
            .paused_until
            .map(|t| t.saturating_duration_since(Instant::now()))
            .filter(|d| !d.is_zero());
        if let Some(wait) = paused {
            if !deadline.allows(wait) {
                return Err(NoSlot::Paused);
            }
            tokio::time::sleep(wait).await;
        }
        Ok(slot)
    }

    /// A call answered without throttling: grow by one slot per window of such answers.
    pub fn succeeded(&self) {
        let mut state = self.lock();
        if state.limit >= state.max {
            return;
        }
        state.credit += 1;
        if state.credit < state.limit {
            return;
        }
        state.credit = 0;
        state.limit = (state.limit + 1).min(state.max);
        let target = state.limit;
        while state.effective() < target {
            if state.debt > 0 {
                state.debt -= 1;
            } else if let Some(permit) = state.withheld.pop() {
                drop(permit);
            } else {
                break;
            }
        }
    }

    /// A call of `slot` was answered `429`: halve the window (once per window of calls) and
    /// pause every call until `retry_after`, when the answer gave one.
    pub fn throttled(&self, slot: &Slot, retry_after: Option<Duration>) {
        let mut state = self.lock();
        if let Some(d) = retry_after {
            let until = Instant::now() + d;
            if state.paused_until.is_none_or(|t| t < until) {
                state.paused_until = Some(until);
            }
        }
        // A quiet minute is counted from the last 429, not the last cut.
        state.last_cut = Some(Instant::now());
        if slot.epoch != state.epoch {
            return;
        }
        state.epoch += 1;
        let target = (state.limit / 2).max(1);
        state.limit = target;
        state.credit = 0;
        while state.effective() > target {
            match self.permits.clone().try_acquire_owned() {
                Ok(permit) => state.withheld.push(permit),
                Err(_) => state.debt += 1,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_window_halves_once_per_burst_and_grows_back_by_one_per_window() {
        let windows = Windows::new(8);
        let w = windows.of("https://a.example");
        assert!(Arc::ptr_eq(&w, &windows.of("https://a.example")));
        assert!(!Arc::ptr_eq(&w, &windows.of("https://b.example")));
        let mut slots = Vec::new();
        for _ in 0..8 {
            slots.push(w.acquire(Deadline::none()).await.unwrap());
        }
        // A ninth call waits: it gets nothing before a short deadline.
        let busy = w.acquire(Deadline::after(Duration::from_millis(30))).await;
        assert_eq!(busy.unwrap_err(), NoSlot::Busy);
        // Three 429s of the same burst cut once: 8 -> 4.
        for s in &slots[..3] {
            w.throttled(s, None);
        }
        assert_eq!(w.size(), 4);
        // All eight still in flight: the cut is owed and paid as they return.
        slots.clear();
        assert_eq!(w.permits.available_permits(), 4);
        // A call sent after the cut that is throttled cuts again: 4 -> 2.
        let s = w.acquire(Deadline::none()).await.unwrap();
        w.throttled(&s, None);
        drop(s);
        assert_eq!(w.size(), 2);
        assert_eq!(w.permits.available_permits(), 2);
        // Growth: one slot per window of successes (2 answers at size 2, 3 at size 3).
        w.succeeded();
        assert_eq!(w.size(), 2);
        w.succeeded();
        assert_eq!(w.size(), 3);
        for _ in 0..3 {
            w.succeeded();
        }
        assert_eq!(w.size(), 4);
        for _ in 0..100 {
            w.succeeded();
        }
        assert_eq!(w.size(), 8, "never past the maximum");
        assert_eq!(w.permits.available_permits(), 8);
        // Never below one slot.
        for _ in 0..10 {
            let s = w.acquire(Deadline::none()).await.unwrap();
            w.throttled(&s, None);
        }
        assert_eq!(w.size(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_queued_for_its_slot_waits_out_a_pause_that_began_meanwhile() {
        let w = Windows::new(1).of("https://a.example");
        let held = w.acquire(Deadline::none()).await.unwrap();
        let queued = tokio::spawn({
            let w = w.clone();
            async move {
                let s = w.acquire(Deadline::none()).await.unwrap();
                (Instant::now(), s)
            }
        });
        tokio::task::yield_now().await;
        let throttled_at = Instant::now();
        w.throttled(&held, Some(Duration::from_secs(5)));
        drop(held);
        let (sent_at, _slot) = queued.await.unwrap();
        assert!(sent_at.duration_since(throttled_at) >= Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_pauses_every_call_and_an_idle_window_is_restored() {
        let w = Windows::new(4).of("https://a.example");
        let s = w.acquire(Deadline::none()).await.unwrap();
        w.throttled(&s, Some(Duration::from_secs(2)));
        drop(s);
        assert_eq!(w.size(), 2);
        // The pause outlasts a 1 s deadline: refused at once.
        let short = w.acquire(Deadline::after(Duration::from_secs(1))).await;
        assert_eq!(short.unwrap_err(), NoSlot::Paused);
        let started = Instant::now();
        let s = w.acquire(Deadline::none()).await.unwrap();
        assert!(started.elapsed() >= Duration::from_secs(2));
        drop(s);
        tokio::time::advance(RESTORE_AFTER).await;
        let _s = w.acquire(Deadline::none()).await.unwrap();
        assert_eq!(w.size(), 4, "restored after a quiet minute");
    }
}
